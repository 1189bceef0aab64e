/*
 * "routes": { "name": { "steps", "fallback", "queue", "tenants" } }: the
 * names clients ask for as their model, and the providers tried for each,
 * in order, with the edits each step makes to the request.
 */

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "policy_json.h"
#include "tailgate_protocol.h"


static void tg_load_route(tg_loader *ld, void *child, size_t i,
    const char *name, const cJSON *item, const char *path);
static void tg_load_route_tenants(tg_loader *ld, tg_route *rt,
    const cJSON *item, const char *path);
static void tg_load_route_fallback(tg_loader *ld, tg_route *rt,
    const cJSON *item, const char *path);
static void tg_load_route_queue(tg_loader *ld, tg_route *rt,
    const cJSON *item, const char *path);
static void tg_load_step(tg_loader *ld, tg_route *rt, tg_step *st,
    const cJSON *item, const char *path);
static void tg_load_adjust(tg_loader *ld, tg_step *st, const cJSON *item,
    const char *path);
static bool tg_route_name_ok(const char *name, size_t len);
static unsigned tg_load_endpoint_set(tg_loader *ld, const cJSON *v,
    const char *path, const tg_provider *pr);
static void tg_load_route_listing(tg_loader *ld, tg_route *rt,
    const cJSON *item, const char *path);
static void tg_load_route_pattern(tg_loader *ld, tg_route *rt,
    const cJSON *item, const char *path);
static int tg_fallback_on_word(const char *s, unsigned *bits);
static const char *tg_route_name_of(const void *child, size_t *len);


static const char *const  tg_queue_keys[] = {
    "max_length", "max_wait_ms", NULL
};

static const char *const  tg_route_keys[] = {
    "steps", "tenants", "fallback", "queue", "endpoints", "owned_by",
    "context_window", "allow", "deny", "models", "models_from", NULL
};

static const char *const  tg_models_from_keys[] = {
    "url", "refresh_ms", "timeout_ms", "send_key", NULL
};

static const char *const  tg_fallback_on_list =
    "\"never\", \"errors\", \"busy\", \"both\", \"auth\"";

static const char *const  tg_fallback_keys[] = {
    "on", "outcomes", "max_attempts", NULL
};

static const char *const  tg_step_keys[] = {
    "provider", "model", "adjust", "connect_ms", "first_byte_ms", "idle_ms",
    "endpoints", NULL
};

static const char *const  tg_adjust_keys[] = { "when", "drop", "set", NULL };


static const tg_named_kind  tg_routes = {
    "routes", "expected at least one route", tg_route_name_ok,
    "route names are 1 to " TG_STR(TG_ROUTE_NAME_MAX) " bytes without "
    "control characters",
    sizeof(tg_route), tg_load_route, tg_route_name_of
};


void
tg_load_routes(tg_loader *ld, const cJSON *root)
{
    size_t      i, j, n;
    tg_policy  *p = ld->p;
    const tg_route  *rt;

    p->routes = tg_load_named(ld, root, &tg_routes, &p->nroutes,
                              &p->route_table, &p->route_mask);

    /* the pattern routes, the longest prefix first */

    n = 0;

    for (i = 0; p->routes != NULL && i < p->nroutes; i++) {
        n += p->routes[i].pattern;
    }

    if (n == 0) {
        return;
    }

    /* a model a pattern lists is no route of its own: listed once */

    for (i = 0; i < p->nroutes; i++) {
        char  id[TG_ROUTE_NAME_MAX + 1], path[TG_PATH_LEN];

        rt = &p->routes[i];

        for (j = 0; rt->pattern && j < rt->nlisted; j++) {
            snprintf(id, sizeof(id), "%.*s%s", (int) rt->prefix_len,
                     rt->name, rt->listed[j]);

            if (tg_policy_route(p, id, strlen(id)) != NULL) {
                snprintf(path, sizeof(path), "routes.%s.models[%zu]",
                         rt->name, j);
                tg_load_error(ld, path, "a route named \"%s\" exists: it "
                              "is listed as itself", id);
            }
        }
    }

    p->patterns = tg_arena_alloc(&p->arena, n * sizeof(tg_route *));
    if (p->patterns == NULL) {
        ld->oom = true;
        return;
    }

    for (i = 0; i < p->nroutes; i++) {
        rt = &p->routes[i];

        if (!rt->pattern) {
            continue;
        }

        for (j = p->npatterns;
             j > 0 && p->patterns[j - 1]->prefix_len < rt->prefix_len;
             j--)
        {
            p->patterns[j] = p->patterns[j - 1];
        }

        p->patterns[j] = rt;
        p->npatterns++;
    }
}


/*
 * A route named "prefix*": "allow" and "deny", globs of what follows the
 * prefix (openai/ and a star, a star and :free), and "models", the ones
 * /v1/models lists, each of them allowed.
 */

static void
tg_load_route_pattern(tg_loader *ld, tg_route *rt, const cJSON *item,
    const char *path)
{
    int           k, n;
    char          sub[TG_PATH_LEN], one[TG_PATH_LEN];
    size_t        i, len;
    const char  **list, *key;
    const cJSON  *v, *c;

    static const char *const  keys[] = { "allow", "deny", "models" };

    rt->pattern = rt->name_len > 0 && rt->name[rt->name_len - 1] == '*';

    if (strchr(rt->name, '*') != rt->name + rt->name_len - 1
        && strchr(rt->name, '*') != NULL)
    {
        tg_load_error(ld, path, "a route name may hold \"*\" only at its "
                      "end, where it makes a pattern");
        return;
    }

    rt->prefix_len = rt->pattern ? rt->name_len - 1 : rt->name_len;

    for (k = 0; k < 3; k++) {
        key = keys[k];
        v = tg_member(item, key);

        if (v == NULL) {
            continue;
        }

        tg_key_path(sub, path, key);

        if (!rt->pattern) {
            tg_load_error(ld, sub, "only a pattern route (a name ending in "
                          "\"*\") has \"%s\"", key);
            continue;
        }

        n = cJSON_IsArray(v) ? cJSON_GetArraySize(v) : 0;

        if (n == 0) {
            tg_load_error(ld, sub, "expected a non-empty array of %s", k < 2
                          ? "globs of model names (\"*\" for any run of "
                            "characters)"
                          : "model names");
            continue;
        }

        list = tg_arena_alloc(&ld->p->arena, (size_t) n * sizeof(char *));
        if (list == NULL) {
            ld->oom = true;
            return;
        }

        i = 0;
        for (c = v->child; c != NULL; c = c->next, i++) {
            tg_index_path(one, sub, i);

            len = cJSON_IsString(c) ? strlen(c->valuestring) : 0;

            if (len == 0 || rt->prefix_len + len > TG_ROUTE_NAME_MAX
                || tg_has_control(c->valuestring)
                || (k == 2 && strchr(c->valuestring, '*') != NULL))
            {
                tg_load_error(ld, one, "expected %s of 1 to %zu bytes",
                              k < 2 ? "a glob" : "a model name without "
                                                 "\"*\"",
                              TG_ROUTE_NAME_MAX - rt->prefix_len);
                list[i] = "";
                continue;
            }

            list[i] = tg_copy(ld, c->valuestring);
        }

        switch (k) {
        case 0:  rt->allow = list; rt->nallow = i; break;
        case 1:  rt->deny = list; rt->ndeny = i; break;
        default: rt->listed = list; rt->nlisted = i; break;
        }
    }

    /* what it lists, it serves */

    for (i = 0; i < rt->nlisted; i++) {
        if (rt->listed[i][0] != '\0'
            && !tg_route_pattern_allows(rt, rt->listed[i],
                                        strlen(rt->listed[i])))
        {
            tg_key_path(sub, path, "models");
            tg_index_path(one, sub, i);
            tg_load_error(ld, one, "\"%s\" is not let through by the "
                          "route's \"allow\" and \"deny\"",
                          rt->listed[i]);
        }
    }
}


static void tg_load_route_models_from(tg_loader *ld, tg_route *rt,
    const cJSON *item, const char *path);


static void
tg_load_route(tg_loader *ld, void *child, size_t i, const char *name,
    const cJSON *item, const char *path)
{
    int           n;
    char          path_buf[TG_PATH_LEN], step_path[TG_PATH_LEN];
    tg_route     *rt = child;
    const cJSON  *steps, *c;

    rt->index = i;
    rt->name = tg_copy(ld, name);
    rt->name_len = strlen(name);

    if (rt->name == NULL) {
        return;
    }

    if (!cJSON_IsObject(item)) {
        tg_load_error(ld, path, "expected an object");
        return;
    }

    tg_check_keys(ld, item, path, tg_route_keys);

    tg_load_route_tenants(ld, rt, item, path);
    tg_load_route_fallback(ld, rt, item, path);
    tg_load_route_queue(ld, rt, item, path);
    tg_load_route_listing(ld, rt, item, path);
    tg_load_route_pattern(ld, rt, item, path);

    tg_key_path(path_buf, path, "steps");

    steps = tg_member(item, "steps");

    if (steps == NULL) {
        tg_load_error(ld, path_buf, "missing required key");
        return;
    }

    if (!cJSON_IsArray(steps)) {
        tg_load_error(ld, path_buf, "expected an array of steps");
        return;
    }

    n = cJSON_GetArraySize(steps);
    if (n == 0) {
        tg_load_error(ld, path_buf, "expected at least one step");
        return;
    }

    rt->steps = tg_arena_alloc(&ld->p->arena, (size_t) n * sizeof(tg_step));
    if (rt->steps == NULL) {
        ld->oom = true;
        return;
    }

    memset(rt->steps, 0, (size_t) n * sizeof(tg_step));

    for (c = steps->child; c != NULL; c = c->next, rt->nsteps++) {
        tg_index_path(step_path, path_buf, rt->nsteps);
        tg_load_step(ld, rt, &rt->steps[rt->nsteps], c, step_path);
    }

    tg_load_route_models_from(ld, rt, item, path);
}


/*
 * "models_from": { "url", "refresh_ms", "timeout_ms", "send_key" }: a
 * pattern route lists the models its first step's provider says it has.
 * Without "url", that provider's own (scheme, host, base_path and
 * "/models"), which gets its key; another URL gets it only by send_key.
 */

static void
tg_load_route_models_from(tg_loader *ld, tg_route *rt, const cJSON *item,
    const char *path)
{
    int                 n;
    char                sub[TG_PATH_LEN], one[TG_PATH_LEN], *url;
    size_t              size;
    const char         *host, *at;
    const cJSON        *v;
    const tg_provider  *pr;

    v = tg_member(item, "models_from");
    if (v == NULL) {
        return;
    }

    tg_key_path(sub, path, "models_from");

    if (!rt->pattern) {
        tg_load_error(ld, sub, "only a pattern route (a name ending in "
                      "\"*\") has \"models_from\"");
        return;
    }

    if (!cJSON_IsObject(v)) {
        tg_load_error(ld, sub, "expected an object ({} for the provider's "
                      "own list)");
        return;
    }

    tg_check_keys(ld, v, sub, tg_models_from_keys);

    rt->models_refresh_ms = 3600000;
    rt->models_timeout_ms = 10000;
    (void) tg_member_uint(ld, v, "refresh_ms", sub, 10000, 604800000,
                          &rt->models_refresh_ms);
    (void) tg_member_uint(ld, v, "timeout_ms", sub, 100, 60000,
                          &rt->models_timeout_ms);

    tg_load_url(ld, v, "url", sub, &rt->models_url);

    /* policyd logs the URL of a failed fetch: no credentials in it */

    if (rt->models_url != NULL) {
        host = strstr(rt->models_url, "://") + 3;
        at = strchr(host, '@');

        if (at != NULL && at < host + strcspn(host, "/?#")) {
            tg_key_path(one, sub, "url");
            tg_load_error(ld, one, "a URL with credentials (\"user@\"): "
                          "the provider's key goes with \"send_key\"");
            rt->models_url = NULL;
            return;
        }
    }

    rt->models_send_key = rt->models_url == NULL;
    (void) tg_member_bool(ld, v, "send_key", sub, &rt->models_send_key);

    if (rt->models_url != NULL || tg_member(v, "url") != NULL) {
        return;
    }

    pr = rt->nsteps > 0 ? rt->steps[0].provider : NULL;
    if (pr == NULL) {
        return;                     /* the step's error says why */
    }

    size = strlen(pr->scheme) + sizeof("://") + strlen(pr->host)
           + strlen(pr->base_path) + sizeof("/models");

    url = tg_arena_alloc(&ld->p->arena, size);
    if (url == NULL) {
        ld->oom = true;
        return;
    }

    n = snprintf(url, size, "%s://%s%s/models", pr->scheme, pr->host,
                 pr->base_path);

    if (n < 0 || (size_t) n >= size || (size_t) n > TG_HEALTH_URL_MAX) {
        tg_load_error(ld, sub, "the provider's URL is too long: give "
                      "\"url\"");
        return;
    }

    rt->models_url = url;
}


/*
 * "fallback": { "on": "errors", "outcomes": [...], "max_attempts": 3 }.
 * Absent: "never".  A route falls back only when it says so.
 */

static void
tg_load_route_fallback(tg_loader *ld, tg_route *rt, const cJSON *item,
    const char *path)
{
    int           n;
    char          path_buf[TG_PATH_LEN], sub[TG_PATH_LEN];
    size_t        i;
    uint32_t      max;
    unsigned      bit;
    const cJSON  *fb, *v, *c;

    rt->fallback_on = 0;
    rt->fallback_outcomes = 0;
    rt->max_attempts = 1;

    fb = tg_member(item, "fallback");

    if (fb == NULL) {
        return;
    }

    tg_key_path(path_buf, path, "fallback");

    if (!cJSON_IsObject(fb)) {
        tg_load_error(ld, path_buf, "expected an object with \"on\", "
                      "\"outcomes\" and \"max_attempts\"");
        return;
    }

    tg_check_keys(ld, fb, path_buf, tg_fallback_keys);

    /* "on": one word, or an array of them: ["errors", "auth"] */

    tg_key_path(sub, path_buf, "on");

    v = tg_member(fb, "on");

    if (v == NULL) {
        tg_load_error(ld, sub, "missing required key");

    } else if (cJSON_IsString(v)) {
        if (tg_fallback_on_word(v->valuestring, &bit) != 0) {
            tg_load_error(ld, sub, "expected one of %s, or an array of "
                          "them", tg_fallback_on_list);
        }

        rt->fallback_on = bit;

    } else if (cJSON_IsArray(v) && v->child != NULL) {
        i = 0;
        for (c = v->child; c != NULL; c = c->next, i++) {
            if (!cJSON_IsString(c)
                || tg_fallback_on_word(c->valuestring, &bit) != 0)
            {
                char  item_path[TG_PATH_LEN];

                tg_index_path(item_path, sub, i);
                tg_load_error(ld, item_path, "expected one of %s",
                              tg_fallback_on_list);
                continue;
            }

            rt->fallback_on |= bit;
        }

    } else {
        tg_load_error(ld, sub, "expected one of %s, or a non-empty array of "
                      "them", tg_fallback_on_list);
    }

    /* every failure counts unless the route names some */

#define TG_X(bit, name)  | bit
    rt->fallback_outcomes = 0 TG_FALLBACK_CLASSES(TG_X);
#undef TG_X

    tg_key_path(sub, path_buf, "outcomes");

    v = tg_member(fb, "outcomes");

    if (v != NULL) {
        n = cJSON_IsArray(v) ? cJSON_GetArraySize(v) : 0;

        if (n == 0) {
            tg_load_error(ld, sub, "expected a non-empty array of %s",
                          tg_fallback_class_list);
        } else {
            rt->fallback_outcomes = 0;

            i = 0;
            for (c = v->child; c != NULL; c = c->next, i++) {
                bit = cJSON_IsString(c)
                      ? tg_fallback_class_parse(c->valuestring) : 0;

                if (bit == 0) {
                    char  item_path[TG_PATH_LEN];

                    tg_index_path(item_path, sub, i);
                    tg_load_error(ld, item_path, "expected one of %s",
                                  tg_fallback_class_list);
                    continue;
                }

                rt->fallback_outcomes |= bit;
            }
        }
    }

    /* every step once, unless the route says fewer */

    v = tg_member(item, "steps");
    n = cJSON_IsArray(v) ? cJSON_GetArraySize(v) : 1;
    max = n > 0 ? (uint32_t) n : 1;

    if (tg_member_uint(ld, fb, "max_attempts", path_buf, 1, TG_ATTEMPTS_MAX,
                       &max) == 0)
    {
        max = max < TG_ATTEMPTS_MAX ? max : TG_ATTEMPTS_MAX;
    }

    rt->max_attempts = (rt->fallback_on
                        & (TG_FALLBACK_ON_ERRORS | TG_FALLBACK_ON_AUTH))
                       ? max : 1;

    /*
     * What a failed attempt may be followed after: the outcomes when the
     * route falls back on errors, a provider's refusal of the gateway
     * (401, 402, 403) only when it names "auth".
     */

    if (!(rt->fallback_on & TG_FALLBACK_ON_ERRORS)) {
        rt->fallback_outcomes = 0;
    }

    if (rt->fallback_on & TG_FALLBACK_ON_AUTH) {
        rt->fallback_outcomes |= TG_FALLBACK_AUTH;
    }
}


/* a word of "on": its TG_FALLBACK_ON_* bits; -1 when it is none */

static int
tg_fallback_on_word(const char *s, unsigned *bits)
{
    *bits = 0;

    if (strcmp(s, "never") == 0) {
        return 0;
    }

    if (strcmp(s, "errors") == 0) {
        *bits = TG_FALLBACK_ON_ERRORS;

    } else if (strcmp(s, "busy") == 0) {
        *bits = TG_FALLBACK_ON_BUSY;

    } else if (strcmp(s, "both") == 0) {
        *bits = TG_FALLBACK_ON_ERRORS | TG_FALLBACK_ON_BUSY;

    } else if (strcmp(s, "auth") == 0) {
        *bits = TG_FALLBACK_ON_AUTH;

    } else {
        return -1;
    }

    return 0;
}


/* "tenants": ["acme", ...]: only clients of these tenants see the route */

static void
tg_load_route_tenants(tg_loader *ld, tg_route *rt, const cJSON *item,
    const char *path)
{
    int           n;
    char          path_buf[TG_PATH_LEN], item_path[TG_PATH_LEN];
    size_t        i, j, len;
    const char   *t;
    const cJSON  *v, *c;

    tg_key_path(path_buf, path, "tenants");

    v = tg_member(item, "tenants");

    if (v == NULL) {
        return;
    }

    n = cJSON_IsArray(v) ? cJSON_GetArraySize(v) : 0;

    if (n == 0) {
        tg_load_error(ld, path_buf, "expected a non-empty array of tenant "
                      "names (leave the key out for every tenant)");
        return;
    }

    rt->tenants = tg_arena_alloc(&ld->p->arena, (size_t) n * sizeof(char *));
    if (rt->tenants == NULL) {
        ld->oom = true;
        return;
    }

    i = 0;
    for (c = v->child; c != NULL; c = c->next, i++) {
        tg_index_path(item_path, path_buf, i);

        t = cJSON_IsString(c) ? c->valuestring : NULL;
        len = t ? strlen(t) : 0;

        for (j = 0; j < len; j++) {
            if (!(isalnum((unsigned char) t[j]) || strchr("_-.@:", t[j]))) {
                break;
            }
        }

        if (len == 0 || len > TG_TENANT_MAX || j < len) {
            tg_load_error(ld, item_path, "expected a tenant name of 1 to %d "
                          "letters, digits and \"_-.@:\"", TG_TENANT_MAX);
            continue;
        }

        rt->tenants[rt->ntenants++] = tg_copy(ld, t);
    }
}


static void
tg_load_step(tg_loader *ld, tg_route *rt, tg_step *st, const cJSON *item,
    const char *path)
{
    char                path_buf[TG_PATH_LEN];
    size_t              i, len;
    const char         *prov, *model;
    const tg_provider  *pr;

    if (!cJSON_IsObject(item)) {
        tg_load_error(ld, path, "expected an object with \"provider\" and "
                      "\"model\"");
        return;
    }

    tg_check_keys(ld, item, path, tg_step_keys);

    pr = NULL;

    if (tg_member_string(ld, item, "provider", path, true, &prov) == 1) {
        pr = tg_policy_provider(ld->p, prov, strlen(prov));

        if (pr == NULL) {
            tg_key_path(path_buf, path, "provider");
            tg_load_error(ld, path_buf, "no provider named \"%s\"", prov);
        }
    }

    if (tg_member_string(ld, item, "model", path, true, &model) != 1) {
        return;
    }

    tg_key_path(path_buf, path, "model");

    len = strlen(model);
    if (len == 0 || len > TG_MODEL_NAME_MAX || tg_has_control(model)) {
        tg_load_error(ld, path_buf, "expected a model name of 1 to %d bytes",
                      TG_MODEL_NAME_MAX);
        return;
    }

    st->model = tg_copy(ld, model);
    st->model_pattern = strchr(model, '*') != NULL;

    if (st->model_pattern
        && (!rt->pattern || strchr(model, '*') != strrchr(model, '*')))
    {
        tg_load_error(ld, path_buf, "only a step of a pattern route may "
                      "name \"*\" (once) in its model: the rest of the name "
                      "the client asked for");
    }

    if (pr == NULL) {
        return;
    }

    st->provider = pr;
    st->provider_index = pr->index;

    /* a step's own timeouts, else its provider's */

    st->connect_ms = pr->connect_ms;
    st->first_byte_ms = pr->first_byte_ms;
    st->idle_ms = pr->idle_ms;

    (void) tg_member_uint(ld, item, "connect_ms", path, 1, TG_TIMEOUT_MAX,
                          &st->connect_ms);
    (void) tg_member_uint(ld, item, "first_byte_ms", path, 1, TG_TIMEOUT_MAX,
                          &st->first_byte_ms);
    (void) tg_member_uint(ld, item, "idle_ms", path, 1, TG_TIMEOUT_MAX,
                          &st->idle_ms);

    tg_load_adjust(ld, st, item, path);

    /* what the step serves: its provider's, narrowed by the route's and
       its own */

    st->endpoints = pr->endpoints;

    if (rt->only_endpoints) {
        st->endpoints &= rt->only_endpoints;
    }

    if (tg_member(item, "endpoints") != NULL) {
        tg_key_path(path_buf, path, "endpoints");
        st->endpoints &= tg_load_endpoint_set(ld, tg_member(item, "endpoints"),
                                              path_buf, pr);
    }

    if (st->endpoints == 0 && pr->endpoints != 0) {
        tg_load_error(ld, path, "the step serves no endpoint: its provider "
                      "serves none of those the route or step names");
    }

    rt->endpoints |= st->endpoints;

    if (pr->zone != TG_ZONE_EXTERNAL) {
        rt->private_endpoints |= st->endpoints;
    }

    if (pr->models == NULL) {
        return;
    }

    if (st->model_pattern) {
        tg_load_error(ld, path_buf, "provider \"%s\" takes only the models "
                      "it lists: a pattern's step needs one that takes any",
                      pr->name);
        return;
    }

    for (i = 0; i < pr->nmodels; i++) {
        if (strcmp(pr->models[i], model) == 0) {
            return;
        }
    }

    tg_load_error(ld, path_buf, "\"%s\" is not in providers.%s.models", model,
                  pr->name);
}


/*
 * "endpoints": ["embeddings"]: a set of endpoint names, each once; with
 * pr, each one the provider serves.  0 after an error.
 */

static unsigned
tg_load_endpoint_set(tg_loader *ld, const cJSON *v, const char *path,
    const tg_provider *pr)
{
    char          one[TG_PATH_LEN];
    size_t        i;
    unsigned      set, bit;
    tg_endpoint   ep;
    const cJSON  *c;

    if (!cJSON_IsArray(v) || v->child == NULL) {
        tg_load_error(ld, path, "expected a non-empty array of %s",
                      tg_endpoint_list);
        return 0;
    }

    set = 0;
    i = 0;

    for (c = v->child; c != NULL; c = c->next, i++) {
        tg_index_path(one, path, i);

        ep = cJSON_IsString(c) ? tg_endpoint_parse(c->valuestring,
                                                   strlen(c->valuestring))
                               : TG_EP_NONE;

        if (ep == TG_EP_NONE) {
            tg_load_error(ld, one, "expected one of %s", tg_endpoint_list);
            continue;
        }

        bit = TG_EP_BIT(ep);

        if (set & bit) {
            tg_load_error(ld, one, "\"%s\" is listed twice",
                          c->valuestring);
            continue;
        }

        if (pr != NULL && (pr->endpoints & bit) == 0) {
            tg_load_error(ld, one, "provider \"%s\" does not serve \"%s\"",
                          pr->name, c->valuestring);
            continue;
        }

        set |= bit;
    }

    return set;
}


/*
 * How the route shows in /v1/models and what it serves: "endpoints"
 * (every step narrowed to them), "owned_by", "context_window".
 */

static void
tg_load_route_listing(tg_loader *ld, tg_route *rt, const cJSON *item,
    const char *path)
{
    char          sub[TG_PATH_LEN];
    size_t        len;
    const cJSON  *v;

    v = tg_member(item, "endpoints");

    if (v != NULL) {
        tg_key_path(sub, path, "endpoints");
        rt->only_endpoints = tg_load_endpoint_set(ld, v, sub, NULL);

        if (rt->only_endpoints == 0) {
            /* an error was said: nothing else about it */
            rt->only_endpoints = ~0u;
        }
    }

    v = tg_member(item, "owned_by");

    if (v != NULL) {
        tg_key_path(sub, path, "owned_by");
        len = cJSON_IsString(v) ? strlen(v->valuestring) : 0;

        if (len == 0 || len > 64 || tg_has_control(v->valuestring)) {
            tg_load_error(ld, sub, "expected a name of 1 to 64 bytes");
        } else {
            rt->owned_by = tg_copy(ld, v->valuestring);
        }
    }

    (void) tg_member_uint(ld, item, "context_window", path, 1,
                          TG_CONTEXT_TOKENS_MAX, &rt->context_window);
}


/*
 * "queue": { "max_length": 8, "max_wait_ms": 10000 }: a request that finds
 * its step at capacity waits for a slot, in order of arrival, instead of
 * being passed over or refused at once.
 */

static void
tg_load_route_queue(tg_loader *ld, tg_route *rt, const cJSON *item,
    const char *path)
{
    char          path_buf[TG_PATH_LEN];
    const cJSON  *q;

    rt->queue_max = 0;
    rt->queue_wait_ms = 0;

    q = tg_member(item, "queue");

    if (q == NULL) {
        return;
    }

    tg_key_path(path_buf, path, "queue");

    if (!cJSON_IsObject(q)) {
        tg_load_error(ld, path_buf, "expected an object with \"max_length\" "
                      "and \"max_wait_ms\"");
        return;
    }

    tg_check_keys(ld, q, path_buf, tg_queue_keys);

    rt->queue_max = 16;
    rt->queue_wait_ms = 10000;

    (void) tg_member_uint(ld, q, "max_length", path_buf, 1, TG_QUEUE_MAX,
                          &rt->queue_max);
    (void) tg_member_uint(ld, q, "max_wait_ms", path_buf, 1,
                          TG_QUEUE_WAIT_MAX, &rt->queue_wait_ms);
}


/*
 * "adjust": [ { "when": "tools", "drop": ["response_format"] },
 *             { "when": "stream",
 *               "set": { "stream_options.include_usage": true } } ]
 *
 * Edits of the JSON body for this step only.  Each is kept as a line,
 * "drop PATH" or "set PATH JSON", and the lines are joined once per
 * combination of the facts "when" can name, so that a decision picks its
 * text without building anything.  Two edits may share a top-level key only
 * when both edit different members below it: the module applies them in one
 * pass and must never write a key twice.
 */

#define TG_EDITS_MAX  32

typedef struct {
    unsigned     when;
    bool         drop;
    bool         merged;        /* written by the scrub's whole-key set */
    char         path[TG_ADJUST_PATH_MAX * 2 + 2];
    size_t       top_len;       /* bytes of the first segment */
    char        *value;         /* cJSON_PrintUnformatted(), set only */
} tg_edit;


/* one edit the provider's scrub adds, as its line (no "\n") */
typedef struct {
    char         line[TG_ADJUST_MAX];
} tg_scrub_line;


static int tg_scrub_edits(tg_loader *ld, const tg_provider *pr,
    tg_edit *edits, size_t nedits, unsigned w, tg_scrub_line *scrub,
    size_t *n, size_t *size);


static bool
tg_adjust_path_ok(const char *path, size_t *top_len)
{
    size_t       seg, segs;
    const char  *p;

    seg = 0;
    segs = 1;
    *top_len = 0;

    for (p = path; *p != '\0'; p++) {
        if (*p == '.') {
            if (seg == 0 || segs == 2) {
                return false;
            }

            *top_len = (size_t) (p - path);
            segs++;
            seg = 0;
            continue;
        }

        if (!(isalnum((unsigned char) *p) || *p == '_' || *p == '-')
            || ++seg > TG_ADJUST_PATH_MAX)
        {
            return false;
        }
    }

    if (seg == 0) {
        return false;
    }

    if (segs == 1) {
        *top_len = (size_t) (p - path);
    }

    /* the keys the gateway routes on are not the policy's to change */

    return !((*top_len == 5 && strncasecmp(path, "model", 5) == 0)
             || (*top_len == 6 && strncasecmp(path, "stream", 6) == 0));
}



static void
tg_load_adjust(tg_loader *ld, tg_step *st, const cJSON *item,
    const char *path)
{
    int           n;
    char          path_buf[TG_PATH_LEN], rule_path[TG_PATH_LEN];
    char          sub[TG_PATH_LEN], one[TG_PATH_LEN];
    char         *text;
    size_t        i, j, k, nedits, len, size;
    unsigned      when, w;
    size_t        nscrub;
    tg_edit       edits[TG_EDITS_MAX], *e;
    tg_scrub_line scrub[16];
    const char   *s;
    const cJSON  *v, *rule, *c;

    for (w = 0; w < TG_WHEN_COUNT; w++) {
        st->adjust[w] = "";
    }

    nedits = 0;

    v = tg_member(item, "adjust");

    tg_key_path(path_buf, path, "adjust");

    if (v == NULL && st->provider->scrub.nbody == 0) {
        return;
    }

    n = (v == NULL || cJSON_IsArray(v)) ? cJSON_GetArraySize(v) : 0;

    if (v != NULL && n == 0) {
        tg_load_error(ld, path_buf, "expected a non-empty array of "
                      "{ \"when\", \"drop\", \"set\" } rules");
        return;
    }

    i = 0;
    for (rule = v ? v->child : NULL; rule != NULL; rule = rule->next, i++) {
        tg_index_path(rule_path, path_buf, i);

        if (!cJSON_IsObject(rule)) {
            tg_load_error(ld, rule_path, "expected an object with \"drop\" "
                          "or \"set\", and optionally \"when\"");
            continue;
        }

        tg_check_keys(ld, rule, rule_path, tg_adjust_keys);

        when = 0;

        if (tg_member_string(ld, rule, "when", rule_path, false, &s) == 1) {
            if (strcmp(s, "tools") == 0) {
                when = TG_WHEN_TOOLS;

            } else if (strcmp(s, "stream") == 0) {
                when = TG_WHEN_STREAM;

            } else if (strcmp(s, "always") != 0) {
                tg_key_path(sub, rule_path, "when");
                tg_load_error(ld, sub, "expected one of \"always\", "
                              "\"tools\", \"stream\"");
            }
        }

        if (tg_member(rule, "drop") == NULL && tg_member(rule, "set") == NULL) {
            tg_load_error(ld, rule_path, "expected \"drop\" or \"set\"");
            continue;
        }

        /* "drop": ["key", "a.b"] */

        c = tg_member(rule, "drop");
        tg_key_path(sub, rule_path, "drop");

        if (c != NULL && (!cJSON_IsArray(c) || c->child == NULL)) {
            tg_load_error(ld, sub, "expected a non-empty array of keys");
            c = NULL;
        }

        for (c = c ? c->child : NULL, j = 0; c != NULL; c = c->next, j++) {
            tg_index_path(one, sub, j);

            if (nedits == TG_EDITS_MAX) {
                tg_load_error(ld, one, "more than %d edits in one step",
                              TG_EDITS_MAX);
                break;
            }

            e = &edits[nedits];

            if (!cJSON_IsString(c)
                || strlen(c->valuestring) >= sizeof(e->path)
                || !tg_adjust_path_ok(c->valuestring, &e->top_len))
            {
                tg_load_error(ld, one, "expected a key or \"key.member\" of "
                              "letters, digits, \"_\" and \"-\", not "
                              "\"model\" or \"stream\"");
                continue;
            }

            strcpy(e->path, c->valuestring);
            e->drop = true;
            e->when = when;
            e->value = NULL;
            e->merged = false;
            nedits++;
        }

        /* "set": { "key": JSON, "a.b": JSON } */

        c = tg_member(rule, "set");
        tg_key_path(sub, rule_path, "set");

        if (c != NULL && (!cJSON_IsObject(c) || c->child == NULL)) {
            tg_load_error(ld, sub, "expected a non-empty object of key: "
                          "value");
            c = NULL;
        }

        for (c = c ? c->child : NULL; c != NULL; c = c->next) {
            tg_key_path(one, sub, c->string);

            if (nedits == TG_EDITS_MAX) {
                tg_load_error(ld, one, "more than %d edits in one step",
                              TG_EDITS_MAX);
                break;
            }

            e = &edits[nedits];

            if (strlen(c->string) >= sizeof(e->path)
                || !tg_adjust_path_ok(c->string, &e->top_len))
            {
                tg_load_error(ld, one, "expected a key or \"key.member\" of "
                              "letters, digits, \"_\" and \"-\", not "
                              "\"model\" or \"stream\"");
                continue;
            }

            e->value = cJSON_PrintUnformatted(c);
            if (e->value == NULL) {
                ld->oom = true;
                goto done;
            }

            strcpy(e->path, c->string);
            e->drop = false;
            e->when = when;
            e->merged = false;
            nedits++;
        }
    }

    /* one edit per top-level key, but for sets of different members */

    for (i = 0; i < nedits; i++) {
        for (j = 0; j < i; j++) {
            /* keys match ignoring case in the module: here too */

            if (edits[i].top_len != edits[j].top_len
                || strncasecmp(edits[i].path, edits[j].path,
                               edits[i].top_len) != 0)
            {
                continue;
            }

            if (edits[i].path[edits[i].top_len] == '\0'
                || edits[j].path[edits[j].top_len] == '\0'
                || strcasecmp(edits[i].path, edits[j].path) == 0)
            {
                tg_load_error(ld, path_buf, "\"%s\" and \"%s\" edit the "
                              "same key", edits[j].path, edits[i].path);
                goto done;
            }
        }
    }

    for (w = 0; w < TG_WHEN_COUNT; w++) {
        size = 1;

        for (k = 0; k < nedits; k++) {
            if ((edits[k].when & ~w) == 0) {
                size += sizeof("drop ") + strlen(edits[k].path)
                        + (edits[k].value ? strlen(edits[k].value) + 1 : 0);
            }
        }

        /* the provider's scrub of body fields, with the step's edits */

        if (tg_scrub_edits(ld, st->provider, edits, nedits, w, scrub,
                           &nscrub, &size) != 0)
        {
            goto done;
        }

        if (nscrub + nedits > TG_EDITS_MAX) {
            tg_load_error(ld, path_buf, "more than %d edits in one step with "
                          "the provider's scrub", TG_EDITS_MAX);
            goto done;
        }

        if (size > TG_ADJUST_MAX) {
            tg_load_error(ld, path_buf, "the edits take more than %d bytes",
                          TG_ADJUST_MAX);
            goto done;
        }

        text = tg_arena_alloc(&ld->p->arena, size);
        if (text == NULL) {
            ld->oom = true;
            goto done;
        }

        len = 0;

        for (k = 0; k < nedits; k++) {
            e = &edits[k];

            if ((e->when & ~w) != 0 || e->merged) {
                continue;
            }

            if (e->drop) {
                len += (size_t) snprintf(text + len, size - len, "drop %s\n",
                                         e->path);
            } else {
                len += (size_t) snprintf(text + len, size - len, "set %s %s\n",
                                         e->path, e->value);
            }
        }

        for (k = 0; k < nscrub; k++) {
            len += (size_t) snprintf(text + len, size - len, "%s\n",
                                     scrub[k].line);
        }

        text[len] = '\0';
        st->adjust[w] = text;

        for (k = 0; k < nedits; k++) {
            edits[k].merged = false;
        }
    }

done:

    for (k = 0; k < nedits; k++) {
        cJSON_free(edits[k].value);
    }
}


/*
 * The drops a provider's scrub adds to a step's edits that apply for
 * facts w, as lines in scrub[] (*n of them; *size grows by their text).
 * A field the step edits itself is the step's: a key it drops or sets
 * whole needs nothing more; a key whose members it edits is set whole
 * instead, to an object of the members it sets (the client's other
 * members go), and those edits are marked merged.  Returns 0, or -1 when
 * the text does not fit.
 */

static int
tg_scrub_edits(tg_loader *ld, const tg_provider *pr, tg_edit *edits,
    size_t nedits, unsigned w, tg_scrub_line *scrub, size_t *n, size_t *size)
{
    int          len;
    size_t       i, k, top, room, sets;
    bool         whole, members;
    tg_edit     *e;
    const char  *f, *dot;
    char        *line;

    *n = 0;

    for (i = 0; i < pr->scrub.nbody; i++) {
        f = pr->scrub.body[i];
        dot = strchr(f, '.');
        top = dot ? (size_t) (dot - f) : strlen(f);

        /* a member of a key the scrub drops whole goes with it */

        if (dot != NULL) {
            for (k = 0; k < pr->scrub.nbody; k++) {
                if (strlen(pr->scrub.body[k]) == top
                    && strncasecmp(pr->scrub.body[k], f, top) == 0)
                {
                    break;
                }
            }

            if (k < pr->scrub.nbody) {
                continue;
            }
        }

        whole = false;
        members = false;
        sets = 0;

        for (k = 0; k < nedits; k++) {
            e = &edits[k];

            if ((e->when & ~w) != 0 || e->top_len != top
                || strncasecmp(e->path, f, top) != 0)
            {
                continue;
            }

            if (e->path[top] == '\0'
                || (dot != NULL && strcasecmp(e->path, f) == 0))
            {
                whole = true;

            } else if (dot == NULL) {
                members = true;
                sets += !e->drop;
            }
        }

        if (whole) {
            continue;
        }

        line = scrub[*n].line;
        room = sizeof(scrub[*n].line);

        if (!members || sets == 0) {
            len = snprintf(line, room, "drop %s", f);

            for (k = 0; k < nedits && members; k++) {
                e = &edits[k];

                if ((e->when & ~w) == 0 && e->top_len == top
                    && strncasecmp(e->path, f, top) == 0)
                {
                    e->merged = true;
                }
            }

        } else {
            /* "set KEY {"member":value,...}" of the step's sets below it */

            len = snprintf(line, room, "set %.*s {", (int) top, f);

            for (k = 0; k < nedits && len >= 0 && (size_t) len < room; k++) {
                e = &edits[k];

                if ((e->when & ~w) != 0 || e->top_len != top
                    || strncasecmp(e->path, f, top) != 0)
                {
                    continue;
                }

                e->merged = true;

                if (e->drop) {
                    continue;
                }

                len += snprintf(line + len, room - (size_t) len, "%s\"%s\":%s",
                                line[len - 1] == '{' ? "" : ",",
                                e->path + top + 1, e->value);
            }

            if (len >= 0 && (size_t) len < room) {
                len += snprintf(line + len, room - (size_t) len, "}");
            }
        }

        if (len < 0 || (size_t) len >= room) {
            tg_load_error(ld, "scrub", "the edits of provider %s's scrub "
                          "take more than %zu bytes", pr->name, room);
            return -1;
        }

        /* the merged edits are no longer written: their bytes go */

        *size += (size_t) len + 1;
        (*n)++;
    }

    return 0;
}


static bool
tg_route_name_ok(const char *name, size_t len)
{
    return len != 0 && len <= TG_ROUTE_NAME_MAX && !tg_has_control(name);
}


static const char *
tg_route_name_of(const void *child, size_t *len)
{
    const tg_route  *rt = child;

    *len = rt->name_len;
    return rt->name;
}
