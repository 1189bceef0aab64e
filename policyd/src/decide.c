/*
 * The routing decision and the /v1/models listing.
 */

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>


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


static bool tg_facts_allow_id(const tg_facts *facts, const tg_route *rt,
    const char *id, size_t id_len);


bool
tg_facts_allow(const tg_facts *facts, const tg_route *rt)
{
    return tg_facts_allow_id(facts, rt, NULL, 0);
}


/*
 * The client may use rt, or, for a pattern route, the model id it asked
 * for (its allowlist may name the pattern or that id).
 */

static bool
tg_facts_allow_id(const tg_facts *facts, const tg_route *rt, const char *id,
    size_t id_len)
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
        if (tg_str_eq(&facts->allow[i], rt->name, rt->name_len)
            || (id != NULL && tg_str_eq(&facts->allow[i], id, id_len)))
        {
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
tg_step_unfit(const tg_facts *facts, bool priv, const tg_step *st)
{
    const tg_provider  *pr = st->provider;

    if (facts->endpoint >= TG_EP_COUNT
        || (st->endpoints & TG_EP_BIT(facts->endpoint)) == 0)
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
    int                 n;
    bool                priv, capacity_skipped, transient;
    size_t              i, j, len, rest_len;
    const char         *rest, *star;
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
    out->drop_headers = "";

    rt = tg_policy_match(policy, facts->model.data, facts->model.len, &rest,
                         &rest_len);

    if (rt == NULL
        || !tg_facts_allow_id(facts, rt, facts->model.data, facts->model.len))
    {
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

        unfit = tg_step_unfit(facts, priv, st);
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

    /* a pattern's step: the rest of the name asked for, where "*" is */

    if (st->model_pattern) {
        star = strchr(st->model, '*');
        n = snprintf(out->model_buf, sizeof(out->model_buf), "%.*s%.*s%s",
                     (int) (star - st->model), st->model, (int) rest_len,
                     rest, star + 1);

        if (n < 0 || (size_t) n >= sizeof(out->model_buf)) {
            memset(out, 0, sizeof(*out));
            out->authorization = "";
            out->adjust = "";
            out->drop_headers = "";
            tg_refuse(out, 404, "invalid_request_error", "model_not_found",
                      "No matching route found");
            return;
        }

        out->provider_model = out->model_buf;
    }
    out->authorization = pr->authorization ? pr->authorization : "";
    out->zone = tg_zone_name(pr->zone);
    out->drop_headers = pr->scrub_headers ? pr->scrub_headers : "";
    out->user_agent = pr->scrub.user_agent;
    out->connect_ms = st->connect_ms;
    out->first_byte_ms = st->first_byte_ms;
    out->idle_ms = st->idle_ms;

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

    if ((rt->fallback_on & (TG_FALLBACK_ON_ERRORS | TG_FALLBACK_ON_AUTH))
        && attempt < rt->max_attempts)
    {
        for (j = i + 1; j < rt->nsteps; j++) {
            pr = rt->steps[j].provider;
            ps = tg_state_provider(state, rt->steps[j].provider_index);

            if (tg_step_unfit(facts, priv, &rt->steps[j]) == 0
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
tg_route_usable(const tg_facts *facts, const tg_route *rt, const char *id,
    size_t id_len)
{
    unsigned  usable;

    if (!tg_facts_allow_id(facts, rt, id, id_len)) {
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


/* s as the inside of a JSON string at p, within end; NULL: no room */

static char *
tg_json_escaped(char *p, char *end, const char *s, size_t len)
{
    size_t          i;
    unsigned char   c;

    for (i = 0; i < len; i++) {
        c = (unsigned char) s[i];

        if (end - p < 6) {
            return NULL;
        }

        if (c == '"' || c == '\\') {
            *p++ = '\\';
            *p++ = (char) c;

        } else if (c < 0x20 || c == 0x7f) {
            p += snprintf(p, 7, "\\u%04x", c);

        } else {
            *p++ = (char) c;
        }
    }

    return p;
}


/*
 * The largest context a request to the route can have: its own
 * "context_window", else the largest context_tokens of its steps when
 * every step has one; 0: not known.
 */

static uint32_t
tg_route_context(const tg_route *rt)
{
    size_t    i;
    uint32_t  max;

    if (rt->context_window != 0) {
        return rt->context_window;
    }

    max = 0;

    for (i = 0; i < rt->nsteps; i++) {
        if (rt->steps[i].provider == NULL
            || rt->steps[i].provider->context_tokens == 0)
        {
            return 0;
        }

        if (rt->steps[i].provider->context_tokens > max) {
            max = rt->steps[i].provider->context_tokens;
        }
    }

    return max;
}


/*
 * {"id":..., "object":"model", "created":T, "owned_by":...,
 * "endpoints":[...], "context_window":N} at p; NULL when it does not fit
 * before end.
 */

static char *
tg_model_object(const tg_policy *policy, const tg_route *rt, unsigned usable,
    const char *rest, char *p, char *end)
{
    int          e, n;
    uint32_t     context;
    const char  *owner, *sep;

    owner = rt->owned_by ? rt->owned_by : "tailgate";

    if (end - p < 16) {
        return NULL;
    }

    memcpy(p, "{\"id\":\"", 7);
    p += 7;

    /* a pattern's model: its prefix, then the model's rest */

    p = tg_json_escaped(p, end, rt->name,
                        rest ? rt->prefix_len : rt->name_len);
    if (p != NULL && rest != NULL) {
        p = tg_json_escaped(p, end, rest, strlen(rest));
    }

    if (p == NULL) {
        return NULL;
    }

    n = snprintf(p, (size_t) (end - p), "\",\"object\":\"model\",\"created\":"
                 "%lld,\"owned_by\":\"", (long long) policy->loaded_at);
    if (n < 0 || n >= end - p) {
        return NULL;
    }

    p = tg_json_escaped(p + n, end, owner, strlen(owner));
    if (p == NULL || end - p < 16) {
        return NULL;
    }

    memcpy(p, "\",\"endpoints\":[", 15);
    p += 15;
    sep = "";

    for (e = 0; e < TG_EP_COUNT; e++) {
        if ((usable & TG_EP_BIT(e)) == 0) {
            continue;
        }

        n = snprintf(p, (size_t) (end - p), "%s\"%s\"", sep,
                     tg_endpoint_name((tg_endpoint) e));
        if (n < 0 || n >= end - p) {
            return NULL;
        }

        p += n;
        sep = ",";
    }

    context = tg_route_context(rt);

    if (context != 0) {
        n = snprintf(p, (size_t) (end - p), "],\"context_window\":%u}",
                     context);
    } else {
        n = snprintf(p, (size_t) (end - p), "]}");
    }

    if (n < 0 || n >= end - p) {
        return NULL;
    }

    return p + n;
}


/*
 * Where a page after the model of id cursor starts: the route (*i) and,
 * in a pattern route, its listed model (*k).  A cursor a reload took away
 * leaves no place to go on from: the list ends.
 */

static void
tg_models_after(const tg_policy *policy, const tg_str *cursor, size_t *i,
    size_t *k)
{
    size_t           j, rest_len;
    const char      *rest;
    const tg_route  *rt;

    *i = policy->nroutes;
    *k = 0;

    rt = tg_policy_match(policy, cursor->data, cursor->len, &rest, &rest_len);

    if (rt == NULL) {
        return;
    }

    if (!rt->pattern) {
        *i = rt->index + 1;
        return;
    }

    for (j = 0; j < rt->nlisted; j++) {
        if (strlen(rt->listed[j]) == rest_len
            && memcmp(rt->listed[j], rest, rest_len) == 0)
        {
            *i = rt->index;
            *k = j + 1;
            return;
        }
    }
}


long
tg_models_page(const tg_policy *policy, const tg_facts *facts,
    const tg_str *cursor, char *buf, size_t size, const tg_route **last,
    const char **last_rest)
{
    char            *p, *end, *q;
    char             id[TG_ROUTE_NAME_MAX + 1];
    size_t           i, k, n, rest_len;
    unsigned         usable;
    const char      *rest;
    const tg_route  *rt;

    *last = NULL;
    *last_rest = NULL;

    if (size < 64) {
        return -1;
    }

    p = buf;
    end = buf + size - 1;      /* room for the NUL */

    /* one model: GET /v1/models/{id} */

    if (facts->model.len) {
        rt = tg_policy_match(policy, facts->model.data, facts->model.len,
                             &rest, &rest_len);

        if (rt == NULL
            || (usable = tg_route_usable(facts, rt, facts->model.data,
                                         facts->model.len)) == 0)
        {
            return TG_MODELS_NOT_FOUND;
        }

        if (rt->pattern) {
            memcpy(id, rest, rest_len);
            id[rest_len] = '\0';
        }

        p = tg_model_object(policy, rt, usable, rt->pattern ? id : NULL, p,
                            end);
        if (p == NULL) {
            return -1;
        }

        *p = '\0';
        return (long) (p - buf);
    }

    i = 0;
    k = 0;

    if (cursor != NULL && cursor->len) {
        tg_models_after(policy, cursor, &i, &k);

    } else {
        memcpy(p, "{\"object\":\"list\",\"data\":[", 25);
        p += 25;
    }

    /* the list's end always fits: two bytes are kept for it */

    end -= 2;

    for ( /* void */ ; i < policy->nroutes; i++, k = 0) {
        rt = &policy->routes[i];

        /* a route by name is one model; a pattern, each one it lists */

        n = rt->pattern ? rt->nlisted : 1;

        for ( /* void */ ; k < n; k++) {
            rest = rt->pattern ? rt->listed[k] : NULL;

            if (rest != NULL) {
                rest_len = strlen(rest);

                if (rest_len == 0) {
                    continue;
                }

                memcpy(id, rt->name, rt->prefix_len);
                memcpy(id + rt->prefix_len, rest, rest_len);
                usable = tg_route_usable(facts, rt, id,
                                         rt->prefix_len + rest_len);

            } else {
                usable = tg_route_usable(facts, rt, NULL, 0);
            }

            if (usable == 0) {
                continue;
            }

            q = p;

            if (*last != NULL || (cursor != NULL && cursor->len)) {
                if (p == end) {
                    goto full;
                }

                *q++ = ',';
            }

            q = tg_model_object(policy, rt, usable, rest, q, end);

            if (q == NULL) {
                goto full;
            }

            p = q;
            *last = rt;
            *last_rest = rest;
        }
    }

    *last = NULL;
    *last_rest = NULL;
    memcpy(p, "]}", 2);
    p += 2;
    *p = '\0';

    return (long) (p - buf);

full:

    if (*last == NULL) {
        /* not even one model fits */
        return -1;
    }

    /* the next page goes on after *last */
    *p = '\0';
    return (long) (p - buf);
}


long
tg_models_json(const tg_policy *policy, const tg_facts *facts, char *buf,
    size_t size)
{
    long             n;
    const char      *rest;
    const tg_route  *last;

    n = tg_models_page(policy, facts, NULL, buf, size, &last, &rest);

    /* the whole list or nothing */
    return (n >= 0 && last != NULL) ? -1 : n;
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
