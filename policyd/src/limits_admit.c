/*
 * Decisions under the limits: which counters a request touches, the 429
 * when one is full, the x-ratelimit-* text, and the hold a lease keeps.
 *
 * A counter's key names its scope and its profile, so that a reload keeps
 * the counters of the profiles that are still there and a client moved
 * to another profile starts afresh in it:
 *   c US profile US client     t US profile US tenant
 *   r US profile US route      p US provider            (US: \037)
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "limits_admit.h"


#define TG_KEY_MAX  TG_LIMIT_KEY_MAX
#define TG_SEP      '\037'

#define TG_SCOPE_CLIENT    0
#define TG_SCOPE_TENANT    1
#define TG_SCOPE_ROUTE     2
#define TG_SCOPE_PROVIDER  3


typedef struct {
    const tg_limit_profile  *profile;   /* NULL: the provider's */
    const char              *name;
    size_t                   len;
} tg_scope;


static int tg_limits_scopes(const tg_policy *policy, const tg_facts *facts,
    const tg_decision *d, tg_scope *sc);
static size_t tg_limit_key(char *buf, int scope, const char *profile,
    const char *name, size_t len);
static void tg_refuse_limit(tg_decision *d, const tg_limit_take *t,
    int scope, const tg_scope *sc, const tg_facts *facts);
static void tg_ratelimit_text(const tg_limit_store *s, tg_decision *d,
    const tg_limit_take *items, const int *scopes, size_t n);


static const char  tg_scope_letter[] = { 'c', 't', 'r', 'p' };


/*
 * The profiles a request meets, by scope (the provider's is its plan, not
 * a profile); -1 when the client's identity names a profile the policy
 * does not have.
 */

static int
tg_limits_scopes(const tg_policy *policy, const tg_facts *facts,
    const tg_decision *d, tg_scope *sc)
{
    const tg_limit_profile  *lp;

    memset(sc, 0, TG_HOLD_PARTS * sizeof(tg_scope));

    if (facts->limit.len != 0) {
        lp = tg_limits_profile(policy, facts->limit.data, facts->limit.len);

        if (lp == NULL) {
            return -1;
        }

    } else {
        lp = policy->limits.default_profile;
    }

    sc[TG_SCOPE_CLIENT].profile = lp;
    sc[TG_SCOPE_CLIENT].name = facts->client.data ? facts->client.data : "";
    sc[TG_SCOPE_CLIENT].len = facts->client.len;

    if (facts->tenant.len != 0) {
        sc[TG_SCOPE_TENANT].profile = tg_limits_tenant(policy,
                                                       facts->tenant.data,
                                                       facts->tenant.len);
        sc[TG_SCOPE_TENANT].name = facts->tenant.data;
        sc[TG_SCOPE_TENANT].len = facts->tenant.len;
    }

    if (policy->limits.routes != NULL && d->route != NULL) {
        sc[TG_SCOPE_ROUTE].profile = policy->limits.routes[d->route->index];
        sc[TG_SCOPE_ROUTE].name = d->route->name;
        sc[TG_SCOPE_ROUTE].len = d->route->name_len;
    }

    return 0;
}


/*
 * A refusal for another reason (no such route, no provider) to a client
 * with limits: its windows as they are, nothing taken.
 */

void
tg_limits_peek(const tg_limit_store *s, const tg_policy *policy,
    const tg_facts *facts, tg_decision *d)
{
    int                      scopes[TG_HOLD_PARTS];
    char                     key[TG_KEY_MAX];
    size_t                   i, n, len;
    tg_scope                 sc[TG_HOLD_PARTS];
    tg_counter               empty[TG_HOLD_PARTS];
    tg_limit_take            items[TG_HOLD_PARTS];
    const tg_counter        *c;
    const tg_limit_profile  *lp;

    d->ratelimit[0] = '\0';

    if (tg_limits_scopes(policy, facts, d, sc) != 0) {
        return;
    }

    memset(empty, 0, sizeof(empty));
    n = 0;

    for (i = 0; i < TG_SCOPE_PROVIDER; i++) {
        lp = sc[i].profile;

        if (lp == NULL) {
            continue;
        }

        len = tg_limit_key(key, (int) i, lp->name, sc[i].name, sc[i].len);
        c = s->ops->peek(s, key, len);

        memset(&items[n], 0, sizeof(tg_limit_take));
        items[n].counter = c != NULL ? (tg_counter *) c : &empty[n];
        items[n].rpm = lp->rpm;
        items[n].tpm = lp->tpm;
        scopes[n++] = (int) i;
    }

    if (n == 0) {
        return;
    }

    d->client_limited = true;
    tg_ratelimit_text(s, d, items, scopes, n);
}


int
tg_limits_admit(tg_limit_store *s, const tg_policy *policy,
    const tg_facts *facts, tg_decision *d, tg_limit_hold **hold)
{
    int                      scopes[TG_HOLD_PARTS];
    char                     key[TG_KEY_MAX];
    bool                     first, own;
    size_t                   i, n, len, refused;
    tg_scope                 sc[TG_HOLD_PARTS];
    tg_limit_hold           *h;
    tg_limit_take            items[TG_HOLD_PARTS], *t;
    const tg_provider       *pr = d->provider;
    const tg_limit_profile  *lp;

    *hold = NULL;

    /* whose limits: the client's profile, its tenant's, the route's */

    if (tg_limits_scopes(policy, facts, d, sc) != 0) {
        /*
         * A name the policy does not know is a key or token made for
         * another policy, or a typo: no limit would be the wrong guess
         * for a client that was meant to have one.
         */
        d->ratelimit[0] = '\0';
        d->status = 403;
        d->error_type = "permission_error";
        d->error_code = "unknown_limit_profile";
        snprintf(d->message, sizeof(d->message), "The limit profile of this "
                 "client is not in the gateway's policy; ask its "
                 "administrator");
        d->retry_after = 0;
        return TG_ADMIT_REFUSED;
    }

    first = facts->attempt <= 1;
    own = s->nodes != 0 && s->away;
    n = 0;

    for (i = 0; i < TG_HOLD_PARTS; i++) {
        lp = sc[i].profile;

        if (i == TG_SCOPE_PROVIDER) {
            if (pr == NULL || (pr->rpm == 0 && pr->tpm == 0)) {
                continue;
            }

            len = tg_limit_key(key, (int) i, NULL, pr->name, pr->name_len);

        } else if (lp == NULL) {
            continue;

        } else {
            len = tg_limit_key(key, (int) i, lp->name, sc[i].name,
                               sc[i].len);
        }

        t = &items[n];
        memset(t, 0, sizeof(*t));

        t->counter = s->ops->counter(s, key, len);
        if (t->counter == NULL) {
            goto failed;
        }

        scopes[n++] = (int) i;

        if (i == TG_SCOPE_PROVIDER) {
            /* tg_decide() passed over a provider that is full: counted */
            t->rpm = own ? tg_limit_share(pr->rpm, s->nodes) : pr->rpm;
            t->tpm = own ? tg_limit_share(pr->tpm, s->nodes) : pr->tpm;
            t->own = own;
            t->requests = 1;
            t->tokens = pr->tpm ? facts->prompt_estimate : 0;
            continue;
        }

        t->own = own;
        t->rpm = own ? tg_limit_share(lp->rpm, s->nodes) : lp->rpm;
        t->tpm = own ? tg_limit_share(lp->tpm, s->nodes) : lp->tpm;
        t->concurrent = own ? tg_limit_share(lp->concurrent, s->nodes)
                            : lp->concurrent;
        t->enforce = first;
        t->requests = first && lp->rpm ? 1 : 0;
        t->tokens = lp->tpm ? facts->prompt_estimate : 0;
        t->budget = lp->budget_day || lp->budget_month ? lp : NULL;
    }

    if (n == 0) {
        return TG_ADMIT_OK;
    }

    for (i = 0; i < n; i++) {
        if (scopes[i] != TG_SCOPE_PROVIDER) {
            d->client_limited = true;
        }
    }

    refused = s->ops->take(s, items, n);

    if (refused != SIZE_MAX) {
        tg_ratelimit_text(s, d, items, scopes, n);
        tg_refuse_limit(d, &items[refused], scopes[refused],
                        &sc[scopes[refused]], facts);

        for (i = 0; i < n; i++) {
            s->ops->unref(s, items[i].counter);
        }

        return items[refused].refused == TG_LIMIT_CONCURRENT
               ? TG_ADMIT_BUSY : TG_ADMIT_REFUSED;
    }

    tg_ratelimit_text(s, d, items, scopes, n);

    h = calloc(1, sizeof(tg_limit_hold));
    if (h == NULL) {
        /* taken, but nothing can give it back: give it back now */
        for (i = 0; i < n; i++) {
            if (items[i].concurrent != 0) {
                s->ops->release(s, items[i].counter);
            }
            s->ops->give_back(s, items[i].counter, items[i].rpm,
                              items[i].requests, items[i].tpm,
                              items[i].tokens, items[i].own);
        }
        goto failed;
    }

    for (i = 0; i < n; i++) {
        h->parts[i].counter = items[i].counter;
        h->parts[i].rpm = items[i].rpm;
        h->parts[i].tpm = items[i].tpm;
        h->parts[i].requests = items[i].rpm ? items[i].requests : 0;
        h->parts[i].tokens = items[i].tpm ? items[i].tokens : 0;
        h->parts[i].enforce = items[i].enforce;
        h->parts[i].own = items[i].own;
        if (items[i].budget != NULL) {
            h->parts[i].budget_day = items[i].budget->budget_day;
            h->parts[i].budget_month = items[i].budget->budget_month;
        }
        h->parts[i].slot = items[i].concurrent != 0;
        h->parts[i].concurrent = items[i].concurrent;
        h->parts[i].budget = items[i].budget != NULL;
    }

    h->n = n;
    *hold = h;

    return TG_ADMIT_OK;

failed:

    while (n > 0) {
        n--;
        if (items[n].counter != NULL) {
            s->ops->unref(s, items[n].counter);
        }
    }

    return TG_ADMIT_ERROR;
}


uint64_t
tg_limits_provider_wait(const tg_limit_store *s, const tg_provider *pr,
    uint32_t tokens)
{
    bool               own;
    char               key[TG_KEY_MAX];
    size_t             len;
    uint32_t           rpm, tpm;
    uint64_t           wait, w;
    const tg_counter  *c;

    /* most decisions: no plan, and no provider cooling down */

    if (pr->rpm == 0 && pr->tpm == 0 && s->now_ms >= s->cool_until_ms) {
        return 0;
    }

    len = tg_limit_key(key, TG_SCOPE_PROVIDER, NULL, pr->name, pr->name_len);

    c = s->ops->peek(s, key, len);
    if (c == NULL) {
        return 0;
    }

    wait = c->cooldown_until_ms > s->now_ms
           ? c->cooldown_until_ms - s->now_ms : 0;

    own = s->nodes != 0 && s->away;
    rpm = own ? tg_limit_share(pr->rpm, s->nodes) : pr->rpm;
    tpm = own ? tg_limit_share(pr->tpm, s->nodes) : pr->tpm;

    if (rpm != 0 && !tg_window_fits(own ? &c->own_requests : &c->requests,
                                    rpm, 1, s->now_ms, &w) && w > wait)
    {
        wait = w;
    }

    if (tpm != 0 && !tg_window_fits(own ? &c->own_tokens : &c->tokens, tpm,
                                    tokens, s->now_ms, &w) && w > wait)
    {
        /* larger than its whole plan: it will never take it */
        wait = w == TG_WAIT_NEVER ? TG_LIMIT_PERIOD_MS : w;
    }

    return wait;
}


void
tg_limits_provider_seen(const tg_limit_store *s, const tg_provider *pr,
    uint64_t now_ms, tg_limits_provider_view *v)
{
    char               key[TG_KEY_MAX];
    size_t             len;
    tg_counter         empty;
    const tg_counter  *c;

    len = tg_limit_key(key, TG_SCOPE_PROVIDER, NULL, pr->name, pr->name_len);

    c = s->ops->peek(s, key, len);

    if (c == NULL) {
        memset(&empty, 0, sizeof(empty));
        c = &empty;
    }

    v->requests_left = tg_window_remaining(&c->requests, pr->rpm, now_ms);
    v->tokens_left = tg_window_remaining(&c->tokens, pr->tpm, now_ms);
    v->cooldown_ms = c->cooldown_until_ms > now_ms
                     ? c->cooldown_until_ms - now_ms : 0;
}


void
tg_limits_settle(tg_limit_store *s, tg_limit_hold *h, const tg_report *r)
{
    size_t    i;
    uint64_t  used;

    if (h == NULL) {
        return;
    }

    if (r->tokens) {
        used = (uint64_t) r->prompt_tokens + r->completion_tokens;

    } else if (r->outcome == TG_OUTCOME_NOT_SENT
               || r->outcome == TG_OUTCOME_CONNECT_ERROR
               || r->outcome == TG_OUTCOME_SERVER_ERROR
               || r->outcome == TG_OUTCOME_RATE_LIMITED)
    {
        used = 0;                       /* the provider did not take it */

    } else {
        return;                         /* the estimate stands */
    }

    for (i = 0; i < h->n; i++) {
        if (h->parts[i].tpm == 0) {
            continue;
        }

        s->ops->tokens(s, h->parts[i].counter, h->parts[i].tpm,
                       (int64_t) used - (int64_t) h->parts[i].tokens,
                       h->parts[i].own);

        /* settled once: a second REPORT changes nothing */
        h->parts[i].tokens = (uint32_t) (used > UINT32_MAX ? UINT32_MAX
                                                           : used);
    }
}


void
tg_limits_spend(tg_limit_store *s, tg_limit_hold *h, uint64_t cost)
{
    size_t  i;

    if (h == NULL || cost == 0) {
        return;
    }

    for (i = 0; i < h->n; i++) {
        if (h->parts[i].budget) {
            s->ops->spend(s, h->parts[i].counter, cost);
        }
    }
}


bool
tg_limits_shared(const tg_limit_store *s, const tg_limit_hold *h)
{
    size_t  i;

    if (h == NULL || s->nodes == 0) {
        return false;
    }

    for (i = 0; i < h->n; i++) {
        if (h->parts[i].rpm != 0 || h->parts[i].tpm != 0
            || h->parts[i].budget || h->parts[i].slot)
        {
            return true;
        }
    }

    return false;
}


bool
tg_limits_has_slot(const tg_limit_hold *h)
{
    size_t  i;

    for (i = 0; h != NULL && i < h->n; i++) {
        if (h->parts[i].slot) {
            return true;
        }
    }

    return false;
}


void
tg_limits_untake(tg_limit_store *s, tg_limit_hold *h)
{
    size_t  i;

    if (h == NULL) {
        return;
    }

    for (i = 0; i < h->n; i++) {
        s->ops->give_back(s, h->parts[i].counter, h->parts[i].rpm,
                          h->parts[i].requests, h->parts[i].tpm,
                          h->parts[i].tokens, h->parts[i].own);

        /* given back once: a REPORT has nothing left to correct */
        h->parts[i].requests = 0;
        h->parts[i].tokens = 0;
        h->parts[i].tpm = 0;
        h->parts[i].budget = false;
    }
}


void
tg_limits_release(tg_limit_store *s, tg_limit_hold *h)
{
    size_t  i;

    if (h == NULL) {
        return;
    }

    for (i = 0; i < h->n; i++) {
        if (h->parts[i].slot) {
            s->ops->release(s, h->parts[i].counter);
        }

        s->ops->unref(s, h->parts[i].counter);
    }

    free(h);
}


void
tg_limits_cooldown(tg_limit_store *s, const char *provider, uint32_t ms)
{
    char         key[TG_KEY_MAX];
    size_t       len;
    tg_counter  *c;

    len = tg_limit_key(key, TG_SCOPE_PROVIDER, NULL, provider,
                       strlen(provider));

    c = s->ops->counter(s, key, len);
    if (c == NULL) {
        return;
    }

    s->ops->cool(s, c, ms);
    s->ops->unref(s, c);
}


/* the counters a policy still has a use for */

bool
tg_limits_keep(const tg_counter *c, void *arg)
{
    const char       *sep, *name;
    size_t            len;
    const tg_policy  *policy = arg;

    if (c->key_len < 2 || c->key[1] != TG_SEP) {
        return false;
    }

    name = c->key + 2;
    len = c->key_len - 2;

    if (c->key[0] == 'p') {
        return tg_policy_provider(policy, name, len) != NULL;
    }

    sep = memchr(name, TG_SEP, len);

    return sep != NULL
           && tg_limits_profile(policy, name, (size_t) (sep - name)) != NULL;
}


void
tg_limits_sweep(tg_limit_store *s, const tg_policy *policy)
{
    s->ops->sweep(s, tg_limits_keep, (void *) policy);
    s->swept_ms = s->now_ms;
}


/* "c\037agents\037alice"; a name too long for the key is cut */

static size_t
tg_limit_key(char *buf, int scope, const char *profile, const char *name,
    size_t len)
{
    size_t  n, plen;

    n = 0;
    buf[n++] = tg_scope_letter[scope];
    buf[n++] = TG_SEP;

    if (profile != NULL) {
        plen = strlen(profile);
        if (plen > TG_LIMIT_NAME_MAX) {
            plen = TG_LIMIT_NAME_MAX;
        }
        memcpy(buf + n, profile, plen);
        n += plen;
        buf[n++] = TG_SEP;
    }

    if (len > TG_KEY_MAX - n) {
        len = TG_KEY_MAX - n;
    }

    memcpy(buf + n, name, len);

    return n + len;
}


static const char *
tg_scope_text(int scope, const tg_scope *sc, char *buf, size_t size)
{
    switch (scope) {

    case TG_SCOPE_TENANT:
        snprintf(buf, size, "of tenant '%.*s'",
                 (int) (sc->len > 64 ? 64 : sc->len), sc->name);
        break;

    case TG_SCOPE_ROUTE:
        snprintf(buf, size, "of route '%.*s'",
                 (int) (sc->len > 256 ? 256 : sc->len), sc->name);
        break;

    default:
        snprintf(buf, size, "of this client");
    }

    return buf;
}


/* OpenAI's words: type "requests" or "tokens", rate_limit_exceeded */

static void
tg_refuse_limit(tg_decision *d, const tg_limit_take *t, int scope,
    const tg_scope *sc, const tg_facts *facts)
{
    char      whose[320];
    uint64_t  secs;

    tg_scope_text(scope, sc, whose, sizeof(whose));

    secs = t->wait_ms == TG_WAIT_NEVER ? TG_LIMIT_PERIOD_MS / 1000
                                       : (t->wait_ms + 999) / 1000;
    if (secs == 0) {
        secs = 1;
    }

    d->status = 429;
    d->error_code = "rate_limit_exceeded";
    d->retry_after = secs > UINT32_MAX ? UINT32_MAX : (uint32_t) secs;

    switch (t->refused) {

    case TG_LIMIT_TOKENS:
        d->error_type = "tokens";
        snprintf(d->message, sizeof(d->message), "Rate limit reached for "
                 "tokens per min (TPM) %s: Limit %u, Requested %u. Please "
                 "try again in %llus.", whose, t->tpm, t->tokens,
                 (unsigned long long) secs);
        break;

    case TG_LIMIT_TOO_LARGE:
        d->error_type = "tokens";
        snprintf(d->message, sizeof(d->message), "Request too large for "
                 "tokens per min (TPM) %s: Limit %u, Requested %u. The "
                 "input must be reduced in order to run successfully.",
                 whose, t->tpm, facts->prompt_estimate);
        break;

    case TG_LIMIT_CONCURRENT:
        d->error_type = "requests";
        snprintf(d->message, sizeof(d->message), "Too many requests in "
                 "flight %s: Limit %u at once. Please try again when one "
                 "has finished.", whose, t->concurrent);
        d->capacity_limited = true;
        break;

    case TG_LIMIT_BUDGET:
        d->error_type = "insufficient_quota";
        d->error_code = "insufficient_quota";
        snprintf(d->message, sizeof(d->message), "The budget %s is spent "
                 "for this %s. Please try again in %llus.", whose,
                 t->monthly ? "month" : "day",
                 (unsigned long long) secs);
        break;

    default:
        d->error_type = "requests";
        snprintf(d->message, sizeof(d->message), "Rate limit reached for "
                 "requests per min (RPM) %s: Limit %u. Please try again in "
                 "%llus.", whose, t->rpm, (unsigned long long) secs);
    }
}


/*
 * "LIMIT LEFT RESET_MS" for requests, then tokens: of the window of the
 * client, tenant or route with the least left, "-" for a kind none has.
 */

static void
tg_ratelimit_text(const tg_limit_store *s, tg_decision *d,
    const tg_limit_take *items, const int *scopes, size_t n)
{
    int                 k, len;
    char                part[2][48];
    size_t              i;
    uint32_t            limit, left, best_left;
    uint64_t            reset, best_reset;
    const tg_window    *w;
    const tg_limit_take *t, *best;

    for (k = 0; k < 2; k++) {
        best = NULL;
        best_left = 0;
        best_reset = 0;

        for (i = 0; i < n; i++) {
            t = &items[i];
            limit = k == 0 ? t->rpm : t->tpm;

            if (scopes[i] == TG_SCOPE_PROVIDER || limit == 0) {
                continue;
            }

            if (t->own) {
                w = k == 0 ? &t->counter->own_requests
                           : &t->counter->own_tokens;
            } else {
                w = k == 0 ? &t->counter->requests : &t->counter->tokens;
            }
            left = tg_window_remaining(w, limit, s->now_ms);
            reset = tg_window_reset_ms(w, limit, s->now_ms);

            if (best == NULL || left < best_left
                || (left == best_left && reset > best_reset))
            {
                best = t;
                best_left = left;
                best_reset = reset;
            }
        }

        if (best == NULL) {
            snprintf(part[k], sizeof(part[k]), "- - -");
        } else {
            snprintf(part[k], sizeof(part[k]), "%u %u %llu",
                     k == 0 ? best->rpm : best->tpm, best_left,
                     (unsigned long long) best_reset);
        }
    }

    if (!d->client_limited) {
        d->ratelimit[0] = '\0';
        return;
    }

    len = snprintf(d->ratelimit, sizeof(d->ratelimit), "%s %s", part[0],
                   part[1]);
    (void) len;
}


/*
 * The x-ratelimit-* text of a hold as its counters are now: after Redis
 * said what every node took, the answer carries that, not this node's.
 */

void
tg_limits_hold_text(const tg_limit_store *s, const tg_limit_hold *h,
    char *buf, size_t size)
{
    int               k;
    char              part[2][48];
    size_t            i;
    uint32_t          limit, left, best_left;
    uint64_t          reset, best_reset;
    bool              found;
    const tg_window  *w;
    const tg_counter *c;

    buf[0] = '\0';

    if (h == NULL) {
        return;
    }

    for (k = 0; k < 2; k++) {
        found = false;
        best_left = 0;
        best_reset = 0;
        limit = 0;

        for (i = 0; i < h->n; i++) {
            c = h->parts[i].counter;

            if (c->key[0] == tg_scope_letter[TG_SCOPE_PROVIDER]) {
                continue;
            }

            limit = k == 0 ? h->parts[i].rpm : h->parts[i].tpm;
            if (limit == 0) {
                continue;
            }

            if (h->parts[i].own) {
                w = k == 0 ? &c->own_requests : &c->own_tokens;
            } else {
                w = k == 0 ? &c->requests : &c->tokens;
            }

            left = tg_window_remaining(w, limit, s->now_ms);
            reset = tg_window_reset_ms(w, limit, s->now_ms);

            if (!found || left < best_left
                || (left == best_left && reset > best_reset))
            {
                found = true;
                best_left = left;
                best_reset = reset;
                snprintf(part[k], sizeof(part[k]), "%u %u %llu", limit,
                         left, (unsigned long long) reset);
            }
        }

        if (!found) {
            snprintf(part[k], sizeof(part[k]), "- - -");
        }
    }

    snprintf(buf, size, "%s %s", part[0], part[1]);
}
