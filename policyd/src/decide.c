/*
 * The routing decision and the /v1/models listing.
 */

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "decide.h"
#include "limits_admit.h"


static void tg_reason_add(tg_decision *out, size_t *len, const char *provider,
    const char *why);
static bool tg_str_eq(const tg_str *s, const char *c, size_t len);
static void tg_refuse(tg_decision *out, unsigned status, const char *type,
    const char *code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void tg_refuse_provider_limited(tg_decision *out, const tg_route *rt,
    uint64_t wait_ms);


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


/* reasons a step cannot take a request, whatever the provider's state */
#define TG_UNFIT_ENDPOINT   (1u << TG_REASON_ENDPOINT)
#define TG_UNFIT_ZONE       (1u << TG_REASON_ZONE)
#define TG_UNFIT_REGION     (1u << TG_REASON_REGION)
#define TG_UNFIT_CONTEXT    (1u << TG_REASON_CONTEXT)
#define TG_UNFIT_TOOLS      (1u << TG_REASON_TOOLS)
#define TG_UNFIT_STREAMING  (1u << TG_REASON_STREAMING)


#define TG_X(id, word)  word,
static const char *const  tg_reason_words[TG_REASON_COUNT] = {
    TG_REASONS(TG_X)
};
#undef TG_X


const char *
tg_reason_word(tg_reason r)
{
    return (unsigned) r < TG_REASON_COUNT ? tg_reason_words[r] : "unknown";
}


tg_reason
tg_reason_parse(const char *s, size_t len)
{
    return (tg_reason) tg_name_index(tg_reason_words, TG_REASON_COUNT, s, len);
}


/* the prompt of these endpoints is text the provider's context must hold */

static bool
tg_counts_context(tg_endpoint ep)
{
    return ep == TG_EP_CHAT || ep == TG_EP_EMBEDDINGS || ep == TG_EP_RESPONSES;
}


/* every "region:X" tag of the request must be the provider's region */

static bool
tg_region_ok(const tg_facts *facts, const tg_provider *pr)
{
    size_t        i, len;
    const tg_str  *t;

    for (i = 0; i < facts->ntags; i++) {
        t = &facts->tags[i];

        if (t->len < sizeof("region:") - 1
            || memcmp(t->data, "region:", sizeof("region:") - 1) != 0)
        {
            continue;
        }

        if (pr->region == NULL) {
            return false;
        }

        len = strlen(pr->region);

        if (t->len - (sizeof("region:") - 1) != len
            || memcmp(t->data + sizeof("region:") - 1, pr->region, len) != 0)
        {
            return false;
        }
    }

    return true;
}


/* 0 when the step's provider can take the request, else a TG_UNFIT_ bit */

static unsigned
tg_step_unfit(const tg_facts *facts, bool priv, const tg_provider *pr)
{
    if (facts->endpoint >= TG_EP_COUNT
        || (pr->endpoints & TG_EP_BIT(facts->endpoint)) == 0)
    {
        return TG_UNFIT_ENDPOINT;
    }

    if (priv && pr->zone == TG_ZONE_EXTERNAL) {
        return TG_UNFIT_ZONE;
    }

    if (!tg_region_ok(facts, pr)) {
        return TG_UNFIT_REGION;
    }

    if (pr->context_tokens != 0 && tg_counts_context(facts->endpoint)
        && facts->prompt_estimate > pr->context_tokens)
    {
        return TG_UNFIT_CONTEXT;
    }

    if (facts->tools && !pr->tools) {
        return TG_UNFIT_TOOLS;
    }

    if (facts->stream && !pr->streaming) {
        return TG_UNFIT_STREAMING;
    }

    return 0;
}


/* the reason of the lowest TG_UNFIT_ bit: they are the first reasons */

static const char *
tg_unfit_name(unsigned unfit)
{
    unsigned  i;

    for (i = 0; i <= TG_REASON_STREAMING; i++) {
        if (unfit & (1u << i)) {
            return tg_reason_words[i];
        }
    }

    return "unknown";
}


static bool
tg_facts_exclude(const tg_facts *facts, const tg_provider *pr)
{
    size_t  i;

    for (i = 0; i < facts->nexclude; i++) {
        if (tg_str_eq(&facts->exclude[i], pr->name, pr->name_len)) {
            return true;
        }
    }

    return false;
}


/* nothing fits: say why, the most binding reason first */

static void
tg_refuse_unfit(tg_decision *out, const tg_facts *facts, const tg_route *rt,
    unsigned unfit)
{
    if (unfit & TG_UNFIT_ZONE) {
        tg_refuse(out, 403, "permission_error", "privacy_restricted",
                  "Route '%s' has no provider allowed for private requests "
                  "that can serve this request", rt->name);

    } else if (unfit & TG_UNFIT_REGION) {
        tg_refuse(out, 403, "permission_error", "region_restricted",
                  "Route '%s' has no provider in the region this request "
                  "is restricted to", rt->name);

    } else if (unfit & TG_UNFIT_CONTEXT) {
        tg_refuse(out, 400, "invalid_request_error",
                  "context_length_exceeded",
                  "The request (about %u tokens) is larger than any "
                  "provider of route '%s' accepts", facts->prompt_estimate,
                  rt->name);

    } else if (unfit & TG_UNFIT_TOOLS) {
        tg_refuse(out, 400, "invalid_request_error", "tools_not_supported",
                  "No provider of route '%s' supports tools", rt->name);

    } else if (unfit & TG_UNFIT_STREAMING) {
        tg_refuse(out, 400, "invalid_request_error", "stream_not_supported",
                  "No provider of route '%s' supports streaming", rt->name);

    } else {
        tg_refuse(out, 404, "invalid_request_error", "model_not_found",
                  "Route '%s' does not serve this endpoint", rt->name);
    }
}


void
tg_decide(const tg_policy *policy, const tg_facts *facts,
    const tg_state *state, tg_decision *out)
{
    bool                priv, capacity_skipped, transient;
    size_t              i, j, len;
    uint32_t            attempt, max_bytes;
    uint64_t            wait, limited_wait;
    unsigned            ep_bit, unfit, unfit_seen, when;
    const char         *why;
    const tg_step      *st;
    const tg_route     *rt;
    const tg_pstate    *ps;
    const tg_provider  *pr;

    memset(out, 0, sizeof(*out));
    out->authorization = "";
    out->adjust = "";

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

    attempt = facts->attempt ? facts->attempt : 1;

    if (attempt > rt->max_attempts) {
        tg_refuse(out, 503, "server_error", "no_provider_available",
                  "Route '%s' allows no further attempt", rt->name);
        out->retry_after = 1;
        return;
    }

    /*
     * The first step that fits is chosen.  A step that does not fit the
     * request (endpoint, tags, size, features) is passed over whatever the
     * route says: that is choosing, not falling back.  A step whose
     * provider is down or at capacity is passed over only when the route
     * falls back on errors or on busy; otherwise the request fails here.
     */

    len = 0;
    unfit_seen = 0;
    capacity_skipped = false;
    transient = false;
    limited_wait = 0;
    st = NULL;

    for (i = 0; i < rt->nsteps; i++) {
        st = &rt->steps[i];
        pr = st->provider;
        ps = tg_state_provider(state, st->provider_index);

        unfit = tg_step_unfit(facts, priv, pr);
        why = NULL;

        if (unfit) {
            unfit_seen |= unfit;
            why = tg_unfit_name(unfit);

        } else if (tg_facts_exclude(facts, pr)) {
            why = tg_reason_words[TG_REASON_EXCLUDED];
            transient = true;

        } else if (tg_health_unavailable(ps)) {
            why = tg_reason_words[ps->health == TG_HEALTH_STUCK
                                  ? TG_REASON_STUCK : TG_REASON_DOWN];
            tg_reason_add(out, &len, pr->name, why);

            if (!(rt->fallback_on & TG_FALLBACK_ON_ERRORS)) {
                tg_refuse(out, 503, "server_error", "provider_unavailable",
                          "The provider of route '%s' is unavailable; try "
                          "again later", rt->name);
                out->retry_after = 1;
                return;
            }

            transient = true;
            continue;

        } else if (state != NULL && state->limits != NULL
                   && (wait = tg_limits_provider_wait(state->limits, pr,
                                                      facts->prompt_estimate))
                      != 0)
        {
            /*
             * Its own plan is used up, or it asked for time (a 429 with
             * Retry-After): kept off it before it refuses, as a provider
             * that is down or busy is, when the route falls back on
             * either.
             */

            tg_reason_add(out, &len, pr->name,
                          tg_reason_words[TG_REASON_LIMITED]);
            out->provider_limited = true;

            if (limited_wait == 0 || wait < limited_wait) {
                limited_wait = wait;
            }

            if (!(rt->fallback_on
                  & (TG_FALLBACK_ON_ERRORS | TG_FALLBACK_ON_BUSY)))
            {
                tg_refuse_provider_limited(out, rt, limited_wait);
                return;
            }

            transient = true;
            continue;

        } else if (tg_health_at_capacity(ps)
                   || (ps != NULL && ps->queued != 0 && !facts->in_queue))
        {
            /*
             * Those waiting in line go first: a newcomer finds the
             * provider busy, and waits behind them if the route queues.
             */

            out->capacity_limited = true;

            if (rt->queue_max != 0 && !facts->waited
                && ps->queued < rt->queue_max)
            {
                tg_reason_add(out, &len, pr->name,
                              tg_reason_words[TG_REASON_QUEUED]);
                out->status = TG_DECISION_QUEUE;
                out->provider = pr;
                out->step = st;
                out->queue_wait_ms = rt->queue_wait_ms;
                return;
            }

            tg_reason_add(out, &len, pr->name,
                          tg_reason_words[TG_REASON_BUSY]);
            capacity_skipped = true;

            if (!(rt->fallback_on & TG_FALLBACK_ON_BUSY)) {
                tg_refuse(out, 429, "rate_limit_error", "provider_busy",
                          "The provider of route '%s' is busy; try again "
                          "shortly", rt->name);
                out->retry_after = 1;
                return;
            }

            transient = true;
            continue;
        }

        if (why != NULL) {
            tg_reason_add(out, &len, pr->name, why);
            continue;
        }

        break;
    }

    if (i == rt->nsteps) {
        if (limited_wait != 0) {
            tg_refuse_provider_limited(out, rt, limited_wait);

        } else if (transient) {
            tg_refuse(out, 503, "server_error", "no_provider_available",
                      "No provider is available for route '%s'; try again "
                      "later", rt->name);
            out->retry_after = 1;

        } else {
            tg_refuse_unfit(out, facts, rt, unfit_seen);
        }

        return;
    }

    tg_reason_add(out, &len, pr->name, tg_reason_words[TG_REASON_CHOSEN]);

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

    /* usage: the step's prices, and a chat stream's usage asked for */
    out->prices = st->price != NULL ? st->price->text : NULL;
    out->translate = facts->endpoint == TG_EP_RESPONSES
                     && pr->translate_responses;
    out->stream_usage = (facts->endpoint == TG_EP_CHAT || out->translate)
                        && facts->stream && !pr->usage_passive;

    /* multipart uploads are not JSON: nothing to adjust */

    if (facts->endpoint != TG_EP_TRANSCRIPTIONS) {
        when = (facts->tools ? TG_WHEN_TOOLS : 0)
               | (facts->stream ? TG_WHEN_STREAM : 0);

        out->adjust = st->adjust[when] ? st->adjust[when] : "";
    }

    /* worth asking again after a failure only if a later step could serve */

    if ((rt->fallback_on & TG_FALLBACK_ON_ERRORS) && attempt < rt->max_attempts)
    {
        for (j = i + 1; j < rt->nsteps; j++) {
            pr = rt->steps[j].provider;
            ps = tg_state_provider(state, rt->steps[j].provider_index);

            if (tg_step_unfit(facts, priv, pr) == 0
                && !tg_facts_exclude(facts, pr)
                && !tg_health_unavailable(ps))
            {
                out->fallback = rt->fallback_outcomes;
                break;
            }
        }
    }

    /*
     * Reusable for the same facts unless a lease is needed, a step was
     * passed over for being at capacity (that changes with every lease,
     * too often to tell workers), or the size of the prompt made a
     * difference (the loop over every step's context below sees that);
     * then only for bodies that fit every step's context, so that no step
     * would be passed over for size.
     */

    if (st->provider->max_concurrency != 0 || capacity_skipped
        || out->provider_limited)
    {
        out->cache_ms = 0;
        return;
    }

    out->cache_ms = policy->decision_cache_ms;

    if (!tg_counts_context(facts->endpoint)) {
        return;
    }

    max_bytes = 0;

    for (j = 0; j < rt->nsteps; j++) {
        pr = rt->steps[j].provider;

        /* a later step too small for this prompt: not for smaller ones */

        if (pr->context_tokens != 0
            && facts->prompt_estimate > pr->context_tokens)
        {
            out->cache_ms = 0;
            out->cache_max_bytes = 0;
            return;
        }

        if (pr->context_tokens != 0
            && pr->context_tokens <= (UINT32_MAX - 3) / 4
            && (max_bytes == 0 || pr->context_tokens * 4 + 3 < max_bytes))
        {
            max_bytes = pr->context_tokens * 4 + 3;
        }
    }

    out->cache_max_bytes = max_bytes;
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


/* every provider the route could use is over its plan or cooling down */

static void
tg_refuse_provider_limited(tg_decision *out, const tg_route *rt,
    uint64_t wait_ms)
{
    uint64_t  secs = (wait_ms + 999) / 1000;

    tg_refuse(out, 429, "rate_limit_error", "provider_rate_limited",
              "The provider of route '%s' is over its rate limit; try "
              "again in %llus", rt->name, (unsigned long long) secs);

    out->retry_after = secs == 0 ? 1
                       : secs > 86400 ? 86400 : (uint32_t) secs;
}
