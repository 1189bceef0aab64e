/*
 * The routing decision and the /v1/models listing.
 */

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "decide.h"


static void tg_reason_add(tg_decision *out, size_t *len, const char *provider,
    const char *why);
static bool tg_str_eq(const tg_str *s, const char *c, size_t len);
static void tg_refuse(tg_decision *out, unsigned status, const char *type,
    const char *code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));


bool
tg_facts_private(const tg_facts *facts)
{
    size_t  i;

    for (i = 0; i < facts->ntags; i++) {
        if (tg_str_eq(&facts->tags[i], "private", sizeof("private") - 1)) {
            return true;
        }
    }

    return false;
}


bool
tg_facts_allow(const tg_facts *facts, const tg_route *rt)
{
    size_t  i;

    /* a tenant's route does not exist for anyone else */

    if (rt->ntenants) {
        for (i = 0; i < rt->ntenants; i++) {
            if (tg_str_eq(&facts->tenant, rt->tenants[i],
                          strlen(rt->tenants[i])))
            {
                break;
            }
        }

        if (i == rt->ntenants) {
            return false;
        }
    }

    if (facts->nallow == 0) {
        return true;
    }

    for (i = 0; i < facts->nallow; i++) {
        if (tg_str_eq(&facts->allow[i], rt->name, rt->name_len)) {
            return true;
        }
    }

    return false;
}


void
tg_decide(const tg_policy *policy, const tg_facts *facts,
    const tg_state *state, tg_decision *out)
{
    bool                priv;
    size_t              i, j, len;
    unsigned            ep_bit;
    const char         *why;
    const tg_step      *st;
    const tg_route     *rt;
    const tg_pstate    *ps;
    const tg_provider  *pr;

    memset(out, 0, sizeof(*out));
    out->authorization = "";

    rt = tg_policy_route(policy, facts->model.data, facts->model.len);

    if (rt == NULL || !tg_facts_allow(facts, rt)) {
        tg_refuse(out, 404, "invalid_request_error", "model_not_found",
                  "No matching route found");
        return;
    }

    out->route = rt;

    ep_bit = facts->endpoint < TG_EP_COUNT ? TG_EP_BIT(facts->endpoint) : 0;

    if ((rt->endpoints & ep_bit) == 0) {
        if (facts->endpoint < TG_EP_COUNT) {
            tg_refuse(out, 404, "invalid_request_error", "model_not_found",
                      "Route '%s' does not serve /v1%s", rt->name,
                      tg_endpoint_suffix(facts->endpoint));
        } else {
            tg_refuse(out, 404, "invalid_request_error", "model_not_found",
                      "Route '%s' does not serve this endpoint", rt->name);
        }
        return;
    }

    priv = tg_facts_private(facts);

    if (priv && (rt->private_endpoints & ep_bit) == 0) {
        tg_refuse(out, 403, "permission_error", "privacy_restricted",
                  "Route '%s' has no provider allowed for private requests",
                  rt->name);
        return;
    }

    len = 0;

    for (i = 0; i < rt->nsteps; i++) {
        st = &rt->steps[i];
        pr = st->provider;
        ps = tg_state_provider(state, st->provider_index);

        if ((pr->endpoints & ep_bit) == 0) {
            why = "endpoint";

        } else if (priv && pr->zone == TG_ZONE_EXTERNAL) {
            why = "zone";

        } else {
            for (j = 0; j < facts->nexclude; j++) {
                if (tg_str_eq(&facts->exclude[j], pr->name, pr->name_len)) {
                    break;
                }
            }

            if (j < facts->nexclude) {
                why = "excluded";

            } else if (ps != NULL && ps->down) {
                why = "down";

            } else if (ps != NULL && ps->max_concurrency != 0
                       && ps->in_flight >= ps->max_concurrency)
            {
                why = "busy";

            } else {
                why = NULL;
            }
        }

        if (why != NULL) {
            tg_reason_add(out, &len, pr->name, why);
            continue;
        }

        tg_reason_add(out, &len, pr->name, "chosen");

        out->status = 200;
        out->provider = pr;
        out->step = st;
        out->upstream = pr->upstream;
        out->scheme = pr->scheme;
        out->host = pr->host;
        out->path = pr->paths[facts->endpoint];
        out->provider_model = st->model;
        out->authorization = pr->authorization ? pr->authorization : "";
        out->zone = tg_zone_name(pr->zone);

        /* a provider with leases needs each request to ask */
        out->cache_ms = pr->max_concurrency ? 0 : policy->decision_cache_ms;

        return;
    }

    tg_refuse(out, 503, "server_error", "no_provider_available",
              "No provider is available for route '%s'; try again later",
              rt->name);
    out->retry_after = 1;
}


/*
 * The endpoints of rt this client may use, as a bit set: 0 when the route is
 * not for this client (allowlist, "private" tag, the endpoint asked about).
 */

static unsigned
tg_route_usable(const tg_facts *facts, const tg_route *rt)
{
    unsigned  usable;

    if (!tg_facts_allow(facts, rt)) {
        return 0;
    }

    usable = tg_facts_private(facts) ? rt->private_endpoints : rt->endpoints;

    if (facts->endpoint < TG_EP_COUNT
        && (usable & TG_EP_BIT(facts->endpoint)) == 0)
    {
        return 0;
    }

    return usable;
}


/* {"id":..., "object":"model", ..., "endpoints":[...]} */

static cJSON *
tg_model_object(const tg_policy *policy, const tg_route *rt, unsigned usable)
{
    int     e;
    cJSON  *model, *eps, *s;

    model = cJSON_CreateObject();
    if (model == NULL) {
        return NULL;
    }

    if (cJSON_AddStringToObject(model, "id", rt->name) == NULL
        || cJSON_AddStringToObject(model, "object", "model") == NULL
        || cJSON_AddNumberToObject(model, "created",
                                   (double) policy->loaded_at) == NULL
        || cJSON_AddStringToObject(model, "owned_by", "tailgate") == NULL
        || (eps = cJSON_AddArrayToObject(model, "endpoints")) == NULL)
    {
        goto failed;
    }

    for (e = 0; e < TG_EP_COUNT; e++) {

        if ((usable & TG_EP_BIT(e)) == 0) {
            continue;
        }

        s = cJSON_CreateString(tg_endpoint_name((tg_endpoint) e));
        if (s == NULL) {
            goto failed;
        }

        cJSON_AddItemToArray(eps, s);
    }

    return model;

failed:

    cJSON_Delete(model);

    return NULL;
}


long
tg_models_json(const tg_policy *policy, const tg_facts *facts, char *buf,
    size_t size)
{
    size_t           i;
    cJSON           *root, *data, *model;
    unsigned         usable;
    const tg_route  *rt;

    /* one model: GET /v1/models/{id} */

    if (facts->model.len) {
        rt = tg_policy_route(policy, facts->model.data, facts->model.len);

        if (rt == NULL || (usable = tg_route_usable(facts, rt)) == 0) {
            return TG_MODELS_NOT_FOUND;
        }

        root = tg_model_object(policy, rt, usable);
        if (root == NULL) {
            return -1;
        }

        goto print;
    }

    root = cJSON_CreateObject();
    if (root == NULL) {
        return -1;
    }

    if (cJSON_AddStringToObject(root, "object", "list") == NULL) {
        goto failed;
    }

    data = cJSON_AddArrayToObject(root, "data");
    if (data == NULL) {
        goto failed;
    }

    for (i = 0; i < policy->nroutes; i++) {
        rt = &policy->routes[i];

        usable = tg_route_usable(facts, rt);
        if (usable == 0) {
            continue;
        }

        model = tg_model_object(policy, rt, usable);
        if (model == NULL) {
            goto failed;
        }

        cJSON_AddItemToArray(data, model);
    }

print:

    /* cJSON wants a few spare bytes to be sure it fits */

    if (size < 8 || size - 5 > INT_MAX
        || !cJSON_PrintPreallocated(root, buf, (int) (size - 5), 0))
    {
        goto failed;
    }

    cJSON_Delete(root);

    return (long) strlen(buf);

failed:

    cJSON_Delete(root);

    return -1;
}


static void
tg_reason_add(tg_decision *out, size_t *len, const char *provider,
    const char *why)
{
    int     n;
    size_t  room = sizeof(out->reason) - *len;

    if (*len < sizeof(out->reason) - 1) {
        n = snprintf(out->reason + *len, room, "%s%s:%s", *len ? " " : "",
                     provider, why);

        if (n >= 0 && (size_t) n < room) {
            *len += (size_t) n;
            return;
        }
    }

    /* no room for this step: mark the text as cut, keeping the NUL */

    memcpy(out->reason + sizeof(out->reason) - 4, "...", 4);
    *len = sizeof(out->reason) - 1;
}


static bool
tg_str_eq(const tg_str *s, const char *c, size_t len)
{
    return s->len == len && memcmp(s->data, c, len) == 0;
}


static void
tg_refuse(tg_decision *out, unsigned status, const char *type,
    const char *code, const char *fmt, ...)
{
    va_list  ap;

    out->status = status;
    out->error_type = type;
    out->error_code = code;

    va_start(ap, fmt);
    vsnprintf(out->message, sizeof(out->message), fmt, ap);
    va_end(ap);
}
