/*
 * Limits: the GCRA window (boundaries, what is left, when it is empty
 * again, corrections), the store's all-or-nothing take, budgets by day and
 * month, admission of decisions for clients, tenants and routes, the
 * lease that carries a hold (tokens corrected by REPORT, slots given back
 * by REPORT, by connection close and by expiry), provider plans and
 * cooldowns in tg_decide(), counters across a reload, and the "limits"
 * block's errors.
 */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "decide.h"
#include "limits_admit.h"
#include "redis_conf.h"
#include "redis_keys.h"
#include "state.h"
#include "tg_test.h"


#define P  TG_LIMIT_PERIOD_MS


/* the window */

static void
test_window_requests(void **unused)
{
    uint64_t   wait;
    tg_window  w;

    (void) unused;

    memset(&w, 0, sizeof(w));

    /* rpm 3: three at once, then one every 20 s */

    assert_int_equal(tg_window_remaining(&w, 3, 1000), 3);
    assert_int_equal(tg_window_reset_ms(&w, 3, 1000), 0);

    for (int i = 0; i < 3; i++) {
        assert_true(tg_window_fits(&w, 3, 1, 1000, &wait));
        assert_int_equal(wait, 0);
        tg_window_charge(&w, 3, 1, 1000);
        assert_int_equal(tg_window_remaining(&w, 3, 1000), 2 - i);
    }

    assert_int_equal(tg_window_reset_ms(&w, 3, 1000), P);

    assert_false(tg_window_fits(&w, 3, 1, 1000, &wait));
    assert_int_equal(wait, P / 3);

    /* one ms before the boundary it still does not fit; at it, it does */

    assert_false(tg_window_fits(&w, 3, 1, 1000 + P / 3 - 1, &wait));
    assert_int_equal(wait, 1);
    assert_int_equal(tg_window_remaining(&w, 3, 1000 + P / 3 - 1), 0);

    assert_true(tg_window_fits(&w, 3, 1, 1000 + P / 3, &wait));
    assert_int_equal(tg_window_remaining(&w, 3, 1000 + P / 3), 1);
    assert_int_equal(tg_window_reset_ms(&w, 3, 1000 + P / 3), 2 * P / 3);

    /* a period later it is empty; much later too, without overflow */

    assert_int_equal(tg_window_level(&w, 3, 1000 + P), 0);
    assert_int_equal(tg_window_remaining(&w, 3, UINT64_MAX / 2), 3);
    assert_int_equal(tg_window_reset_ms(&w, 3, UINT64_MAX / 2), 0);

    /* a clock that went back drains nothing and breaks nothing */

    assert_false(tg_window_fits(&w, 3, 1, 10, &wait));
    assert_int_equal(wait, P / 3);

    /* no limit: everything fits */

    assert_true(tg_window_fits(&w, 0, 1000000, 1000, &wait));
}


static void
test_window_tokens(void **unused)
{
    uint64_t   wait;
    tg_window  w;

    (void) unused;

    memset(&w, 0, sizeof(w));

    /* tpm 1000: an estimate of 600, then what was really used, 100 */

    tg_window_charge(&w, 1000, 600, 0);
    assert_int_equal(tg_window_remaining(&w, 1000, 0), 400);
    assert_true(tg_window_fits(&w, 1000, 400, 0, &wait));
    assert_false(tg_window_fits(&w, 1000, 401, 0, &wait));
    assert_int_equal(wait, 60);         /* one token drains in 60 ms */

    tg_window_charge(&w, 1000, -500, 0);
    assert_int_equal(tg_window_remaining(&w, 1000, 0), 900);
    assert_int_equal(tg_window_reset_ms(&w, 1000, 0), 6000);

    /* more used than estimated: the window owes more than it holds */

    tg_window_charge(&w, 1000, 1500, 0);
    assert_int_equal(tg_window_remaining(&w, 1000, 0), 0);
    assert_false(tg_window_fits(&w, 1000, 1, 0, &wait));
    assert_int_equal(wait, 36060);      /* 1600 - 999 tokens to drain */

    /* a refund never goes below empty */

    tg_window_charge(&w, 1000, -100000, 0);
    assert_int_equal(w.debt, 0);

    /* larger than the whole limit: never */

    assert_false(tg_window_fits(&w, 1000, 1001, 0, &wait));
    assert_int_equal(wait, TG_WAIT_NEVER);

    /* the largest limits and costs do not overflow */

    tg_window_charge(&w, TG_LIMIT_RATE_MAX, UINT32_MAX, 0);
    assert_int_equal(tg_window_remaining(&w, TG_LIMIT_RATE_MAX, 0), 0);
    assert_true(tg_window_level(&w, TG_LIMIT_RATE_MAX, 5000) > 0);
    assert_int_equal(tg_window_level(&w, TG_LIMIT_RATE_MAX, 10000000), 0);
}


static void
test_store_all_or_nothing(void **unused)
{
    tg_counter      *a, *b;
    tg_limit_take    items[2];
    tg_limit_store  *s;

    (void) unused;

    s = tg_limit_store_memory();
    assert_non_null(s);
    s->now_ms = 5000;

    a = s->ops->counter(s, "a", 1);
    b = s->ops->counter(s, "b", 1);
    assert_non_null(a);
    assert_non_null(b);
    assert_ptr_equal(s->ops->counter(s, "a", 1), a);
    assert_int_equal(a->refs, 2);
    s->ops->unref(s, a);

    memset(items, 0, sizeof(items));
    items[0].counter = a;
    items[0].rpm = 10;
    items[0].requests = 1;
    items[0].enforce = true;
    items[1].counter = b;
    items[1].concurrent = 1;
    items[1].enforce = true;

    assert_int_equal(s->ops->take(s, items, 2), SIZE_MAX);
    assert_int_equal(b->in_flight, 1);
    assert_int_equal(tg_window_remaining(&a->requests, 10, 5000), 9);

    /* b is full: a is not charged either */

    assert_int_equal(s->ops->take(s, items, 2), 1);
    assert_int_equal(items[1].refused, TG_LIMIT_CONCURRENT);
    assert_int_equal(tg_window_remaining(&a->requests, 10, 5000), 9);

    /* counted, never refused */

    items[1].enforce = false;
    assert_int_equal(s->ops->take(s, items, 2), SIZE_MAX);
    assert_int_equal(b->in_flight, 2);

    /* the sweep keeps what is held or owed */

    s->ops->release(s, b);
    s->ops->release(s, b);
    s->ops->unref(s, a);
    s->ops->unref(s, b);
    s->ops->sweep(s, NULL, NULL);
    assert_int_equal(s->ops->count(s), 1);      /* a still owes 2 */
    assert_non_null(s->ops->peek(s, "a", 1));
    assert_null(s->ops->peek(s, "b", 1));

    s->now_ms += P;
    s->ops->sweep(s, NULL, NULL);
    assert_int_equal(s->ops->count(s), 0);

    s->ops->free(s);
}


static void
test_budget_periods(void **unused)
{
    bool              monthly;
    tg_budget         b;
    tg_limit_profile  lp;
    int64_t           t;

    (void) unused;

    memset(&b, 0, sizeof(b));
    memset(&lp, 0, sizeof(lp));
    lp.budget_day = 5000000;            /* 5.0 micro */
    lp.budget_month = 12000000;         /* 12.0 micro */

    t = 1790000000;                     /* 2026-09-21 14:13:20 UTC */

    tg_budget_spend(&b, 4999999, t);
    assert_int_equal(tg_budget_over(&b, &lp, t, &monthly), 0);

    tg_budget_spend(&b, 1, t);
    assert_int_equal(tg_budget_over(&b, &lp, t, &monthly), 86400 - t % 86400);
    assert_false(monthly);

    /* the next day it is empty again; the month is not */

    t += 86400;
    tg_budget_roll(&b, t);
    assert_int_equal(b.day_spent, 0);
    assert_int_equal(b.month_spent, 5000000);
    tg_budget_spend(&b, 4000000, t);
    t += 86400;
    tg_budget_spend(&b, 3000000, t);
    assert_int_equal(tg_budget_over(&b, &lp, t, &monthly),
                     1790812800 - t);   /* to 2026-10-01 00:00 UTC */
    assert_true(monthly);

    /* a new month */

    t = 1790812800;
    tg_budget_roll(&b, t);
    assert_int_equal(b.month_spent, 0);
    assert_int_equal(tg_budget_over(&b, &lp, t, &monthly), 0);
}


/* admission */

static const char  *tg_limits_policy =
    "{ 'listen': { 'path': '/x' },"
    "  'providers': {"
    "    'plan': { 'upstream': 'u_plan', 'zone': 'external',"
    "              'endpoints': ['chat'], 'rpm': 2, 'tpm': 1000 },"
    "    'local': { 'upstream': 'u_local', 'zone': 'local',"
    "               'endpoints': ['chat'] } },"
    "  'routes': {"
    "    'r': { 'steps': [ { 'provider': 'local', 'model': 'm' } ] },"
    "    'capped': { 'steps': [ { 'provider': 'local', 'model': 'm' } ] },"
    "    'spill': { 'steps': [ { 'provider': 'plan', 'model': 'p' },"
    "                          { 'provider': 'local', 'model': 'm' } ],"
    "               'fallback': { 'on': 'errors' } },"
    "    'only': { 'steps': [ { 'provider': 'plan', 'model': 'p' } ] } },"
    "  'limits': {"
    "    'profiles': {"
    "      'agents': { 'rpm': 3, 'tpm': 1000, 'concurrent': 1 },"
    "      'gold': { 'rpm': 100 },"
    "      'team': { 'rpm': 4 },"
    "      'cheap': { 'budget': { 'day': 1.0 } } },"
    "    'default': 'gold',"
    "    'tenants': { 'acme': 'team' },"
    "    'routes': { 'capped': 'team' } } }";


typedef struct {
    tg_policy  *policy;
    tg_state   *state;
    uint64_t    owner;
} tg_lfx;


static int
lsetup(void **state)
{
    tg_lfx  *fx = calloc(1, sizeof(tg_lfx));

    assert_non_null(fx);
    fx->policy = tg_test_policy(tg_limits_policy);
    fx->state = tg_state_new();
    assert_non_null(fx->state);
    assert_int_equal(tg_state_bind(fx->state, fx->policy), 0);
    fx->state->limits->now_ms = 100000;
    fx->state->limits->wall_s = 1790000000;
    fx->owner = 1;
    *state = fx;

    return 0;
}


static int
lteardown(void **state)
{
    tg_lfx  *fx = *state;

    tg_state_free(fx->state);
    tg_policy_free(fx->policy);
    free(fx);

    return 0;
}


static tg_facts
LF(const char *model, const char *client, const char *limit)
{
    tg_facts  f;

    memset(&f, 0, sizeof(f));
    f.model.data = model;
    f.model.len = strlen(model);
    f.endpoint = TG_EP_CHAT;
    f.attempt = 1;
    f.client.data = client;
    f.client.len = strlen(client);

    if (limit != NULL) {
        f.limit.data = limit;
        f.limit.len = strlen(limit);
    }

    return f;
}


/* decides and admits as answer.c does: the admission's code, the lease */

static int
decide(tg_lfx *fx, const tg_facts *f, tg_decision *d, uint32_t *lease)
{
    int             rc;
    tg_limit_hold  *hold;

    *lease = 0;

    tg_decide(fx->policy, f, fx->state, d);

    if (getenv("TG_DEBUG")) {
        fprintf(stderr, "# %u %s (%s)\n", d->status, d->message, d->reason);
    }

    if (d->status != 200) {
        return -2;
    }

    rc = tg_limits_admit(fx->state->limits, fx->policy, f, d, &hold);

    if (rc == TG_ADMIT_OK) {
        assert_int_equal(tg_state_lease_hold(fx->state, d->provider->index,
                                             fx->owner, 0, hold, lease), 0);
    }

    return rc;
}


static void
report(tg_lfx *fx, uint32_t lease, tg_outcome outcome, bool tokens,
    uint32_t prompt, uint32_t completion)
{
    tg_report  r;

    memset(&r, 0, sizeof(r));
    r.lease = lease;
    r.owner = fx->owner;
    r.outcome = outcome;
    r.count = 1;
    r.tokens = tokens;
    r.prompt_tokens = prompt;
    r.completion_tokens = completion;

    (void) tg_state_report(fx->state, &r, 0);
}


static void
test_admit_client(void **state)
{
    uint32_t     lease, l2;
    tg_lfx      *fx = *state;
    tg_facts     f;
    tg_decision  d;

    f = LF("r", "alice", "agents");
    f.prompt_estimate = 300;

    assert_int_equal(decide(fx, &f, &d, &lease), TG_ADMIT_OK);
    assert_int_equal(d.status, 200);
    assert_true(d.client_limited);
    assert_non_null(lease);
    assert_string_equal(d.ratelimit, "3 2 20000 1000 700 18000");

    /* concurrent 1: the next one waits for a slot */

    assert_int_equal(decide(fx, &f, &d, &l2), TG_ADMIT_BUSY);
    assert_int_equal(d.status, 429);
    assert_string_equal(d.error_type, "requests");
    assert_string_equal(d.error_code, "rate_limit_exceeded");
    assert_string_equal(d.message, "Too many requests in flight of this "
                        "client: Limit 1 at once. Please try again when one "
                        "has finished.");
    assert_int_equal(d.retry_after, 1);
    assert_string_equal(d.ratelimit, "3 2 20000 1000 700 18000");

    /* its REPORT: 50 tokens used, not 300; the slot is free */

    report(fx, lease, TG_OUTCOME_OK, true, 20, 30);

    assert_int_equal(decide(fx, &f, &d, &lease), TG_ADMIT_OK);
    assert_string_equal(d.ratelimit, "3 1 40000 1000 650 21000");
    report(fx, lease, TG_OUTCOME_CONNECT_ERROR, false, 0, 0);

    /* the connect error gave its 300 back; rpm 3: the fourth is refused */

    assert_int_equal(decide(fx, &f, &d, &lease), TG_ADMIT_OK);
    assert_string_equal(d.ratelimit, "3 0 60000 1000 650 21000");
    report(fx, lease, TG_OUTCOME_OK, false, 0, 0);    /* estimate stands */

    fx->state->limits->now_ms += 1000;
    assert_int_equal(decide(fx, &f, &d, &lease), TG_ADMIT_REFUSED);
    assert_string_equal(d.error_type, "requests");
    assert_string_equal(d.error_code, "rate_limit_exceeded");
    assert_string_equal(d.message, "Rate limit reached for requests per min "
                        "(RPM) of this client: Limit 3. Please try again in "
                        "19s.");
    assert_int_equal(d.retry_after, 19);
    assert_string_equal(d.ratelimit, "3 0 59000 1000 666 20000");

    /* another client has windows of its own; a later attempt is counted
       but never refused */

    f = LF("r", "bob", "agents");
    assert_int_equal(decide(fx, &f, &d, &lease), TG_ADMIT_OK);
    report(fx, lease, TG_OUTCOME_OK, false, 0, 0);

    f = LF("spill", "alice", "agents");
    f.attempt = 2;
    assert_int_equal(decide(fx, &f, &d, &lease), TG_ADMIT_OK);
    assert_string_equal(d.ratelimit, "3 0 59000 1000 666 20000");

    /* a prompt larger than the whole tpm */

    report(fx, lease, TG_OUTCOME_OK, false, 0, 0);
    f = LF("r", "carol", "agents");
    f.prompt_estimate = 1001;
    assert_int_equal(decide(fx, &f, &d, &lease), TG_ADMIT_REFUSED);
    assert_string_equal(d.error_type, "tokens");
    assert_int_equal(d.retry_after, 60);
    assert_string_equal(d.message, "Request too large for tokens per min "
                        "(TPM) of this client: Limit 1000, Requested 1001. "
                        "The input must be reduced in order to run "
                        "successfully.");
}


/*
 * A client's name of any length makes counters whose every Redis key
 * fits: the slot set's, 6 bytes longer than the hash's, under the longest
 * key_prefix too (a name near the limit once made the take fail).
 */

static void
test_admit_long_name(void **state)
{
    char            name[2001], prefix[TG_REDIS_NAME_MAX + 1];
    char            key[TG_REDIS_KEY_MAX];
    size_t          i, n;
    uint32_t        lease;
    tg_lfx         *fx = *state;
    tg_facts        f;
    tg_decision     d;
    const tg_lease *l;

    memset(prefix, 'p', TG_REDIS_NAME_MAX);
    prefix[TG_REDIS_NAME_MAX] = '\0';

    for (n = TG_LIMIT_KEY_MAX - 20; n <= 2000; n += n < 500 ? 1 : 500) {
        /* each a client of its own, also once cut */
        memset(name, 'x', n);
        name[n] = '\0';
        memcpy(name, &"0123456789"[n % 10], 1);
        memcpy(name + 1, &"0123456789"[n / 10 % 10], 1);
        memcpy(name + 2, &"0123456789"[n / 100 % 10], 1);

        f = LF("r", name, "agents");
        assert_int_equal(decide(fx, &f, &d, &lease), TG_ADMIT_OK);
        l = tg_state_lease(fx->state, lease);
        assert_non_null(l);
        assert_non_null(l->hold);

        for (i = 0; i < l->hold->n; i++) {
            const tg_counter  *c = l->hold->parts[i].counter;

            assert_true(c->key_len <= TG_LIMIT_KEY_MAX);
            assert_true(tg_redis_limit_key(key, sizeof(key), prefix, c->key,
                                           c->key_len) != 0);
            assert_true(tg_redis_slot_key(key, sizeof(key), prefix, c->key,
                                          c->key_len) != 0);
        }

        report(fx, lease, TG_OUTCOME_OK, false, 0, 0);
    }
}


static void
test_admit_tokens(void **state)
{
    uint32_t     lease;
    tg_lfx      *fx = *state;
    tg_facts     f;
    tg_decision  d;

    f = LF("r", "dave", "agents");
    f.prompt_estimate = 800;
    assert_int_equal(decide(fx, &f, &d, &lease), TG_ADMIT_OK);
    report(fx, lease, TG_OUTCOME_OK, true, 800, 100);

    f.prompt_estimate = 200;
    assert_int_equal(decide(fx, &f, &d, &lease), TG_ADMIT_REFUSED);
    assert_string_equal(d.error_type, "tokens");
    assert_string_equal(d.error_code, "rate_limit_exceeded");
    assert_string_equal(d.message, "Rate limit reached for tokens per min "
                        "(TPM) of this client: Limit 1000, Requested 200. "
                        "Please try again in 6s.");
    assert_int_equal(d.retry_after, 6);
    assert_string_equal(d.ratelimit, "3 2 20000 1000 100 54000");
}


static void
test_admit_profiles(void **state)
{
    uint32_t     lease;
    tg_lfx      *fx = *state;
    tg_facts     f;
    tg_decision  d;

    /* none named: the default profile */

    f = LF("r", "erin", NULL);
    assert_int_equal(decide(fx, &f, &d, &lease), TG_ADMIT_OK);
    assert_string_equal(d.ratelimit, "100 99 600 - - -");

    /* a name the policy does not have: refused, not let through */

    f = LF("r", "erin", "platinum");
    assert_int_equal(decide(fx, &f, &d, &lease), TG_ADMIT_REFUSED);
    assert_int_equal(d.status, 403);
    assert_string_equal(d.error_type, "permission_error");
    assert_string_equal(d.error_code, "unknown_limit_profile");
    assert_string_equal(d.ratelimit, "");

    /* bytes no profile name has */

    f = LF("r", "erin", "agents");
    f.limit.len = 7;                    /* "agents" and its NUL */
    assert_int_equal(decide(fx, &f, &d, &lease), TG_ADMIT_REFUSED);
    assert_int_equal(d.status, 403);

    /* a tenant's profile counts all its clients together */

    f = LF("r", "frank", NULL);
    f.tenant.data = "acme";
    f.tenant.len = 4;

    for (int i = 0; i < 4; i++) {
        f.client.data = i % 2 ? "frank" : "gina";
        f.client.len = 5 - (i % 2 == 0);
        assert_int_equal(decide(fx, &f, &d, &lease), TG_ADMIT_OK);
    }

    /* the binding window: the tenant's, with less left than the client's */
    assert_string_equal(d.ratelimit, "4 0 60000 - - -");

    assert_int_equal(decide(fx, &f, &d, &lease), TG_ADMIT_REFUSED);
    assert_string_equal(d.message, "Rate limit reached for requests per min "
                        "(RPM) of tenant 'acme': Limit 4. Please try again "
                        "in 15s.");

    /* a route's profile counts every client of the route */

    f = LF("capped", "h1", NULL);
    for (int i = 0; i < 4; i++) {
        f.client.data = i % 2 ? "h1" : "h2";
        assert_int_equal(decide(fx, &f, &d, &lease), TG_ADMIT_OK);
    }
    assert_int_equal(decide(fx, &f, &d, &lease), TG_ADMIT_REFUSED);
    assert_string_equal(d.message, "Rate limit reached for requests per min "
                        "(RPM) of route 'capped': Limit 4. Please try again "
                        "in 15s.");

    /* a refusal for another reason shows the windows, takes nothing */

    f = LF("nope", "h1", NULL);
    tg_decide(fx->policy, &f, fx->state, &d);
    assert_int_equal(d.status, 404);
    tg_limits_peek(fx->state->limits, fx->policy, &f, &d);
    assert_string_equal(d.ratelimit, "100 98 1200 - - -");
    tg_limits_peek(fx->state->limits, fx->policy, &f, &d);
    assert_string_equal(d.ratelimit, "100 98 1200 - - -");

    f = LF("nope", "never-seen", NULL);
    tg_limits_peek(fx->state->limits, fx->policy, &f, &d);
    assert_string_equal(d.ratelimit, "100 100 0 - - -");

    f = LF("nope", "never-seen", "platinum");
    tg_limits_peek(fx->state->limits, fx->policy, &f, &d);
    assert_string_equal(d.ratelimit, "");

    /* none of it for other routes */

    f = LF("r", "h2", NULL);
    assert_int_equal(decide(fx, &f, &d, &lease), TG_ADMIT_OK);
}


static void
test_admit_budget(void **state)
{
    uint32_t     lease;
    tg_lfx      *fx = *state;
    tg_facts     f;
    tg_report    r;
    tg_decision  d;
    const tg_lease *l;

    f = LF("r", "ivan", "cheap");
    assert_int_equal(decide(fx, &f, &d, &lease), TG_ADMIT_OK);
    assert_true(d.client_limited);
    assert_string_equal(d.ratelimit, "- - - - - -");

    /* the cost of its REPORT is spent from the day */

    l = tg_state_lease(fx->state, lease);
    assert_non_null(l);
    tg_limits_spend(fx->state->limits, l->hold, 999999999999ULL);
    report(fx, lease, TG_OUTCOME_OK, true, 1, 1);

    /* the usage accounting sets a REPORT's cost: its lease spends it */

    assert_int_equal(decide(fx, &f, &d, &lease), TG_ADMIT_OK);
    memset(&r, 0, sizeof(r));
    r.lease = lease;
    r.owner = fx->owner;
    r.outcome = TG_OUTCOME_OK;
    r.count = 1;
    r.cost = 1;
    (void) tg_state_report(fx->state, &r, 0);

    assert_int_equal(decide(fx, &f, &d, &lease), TG_ADMIT_REFUSED);
    assert_int_equal(d.status, 429);
    assert_string_equal(d.error_type, "insufficient_quota");
    assert_string_equal(d.error_code, "insufficient_quota");
    assert_int_equal(d.retry_after, 86400 - 1790000000 % 86400);

    /* tomorrow */

    fx->state->limits->wall_s += 86400;
    assert_int_equal(decide(fx, &f, &d, &lease), TG_ADMIT_OK);
}


static void
test_hold_ends(void **state)
{
    uint32_t          lease;
    tg_lfx           *fx = *state;
    tg_facts          f;
    tg_decision       d;
    const tg_counter *c;

    f = LF("r", "jo", "agents");

    /* the connection that held it closed */

    assert_int_equal(decide(fx, &f, &d, &lease), TG_ADMIT_OK);
    c = fx->state->limits->ops->peek(fx->state->limits,
                                     "c\037agents\037jo", 11);
    assert_non_null(c);
    assert_int_equal(c->in_flight, 1);
    assert_int_equal(c->refs, 1);

    assert_int_equal(tg_state_release_owner(fx->state, fx->owner), 1);
    assert_int_equal(c->in_flight, 0);
    assert_int_equal(c->refs, 0);

    /* never reported: its lease expires, and the slot with it */

    assert_int_equal(decide(fx, &f, &d, &lease), TG_ADMIT_OK);
    assert_int_equal(c->in_flight, 1);
    (void) tg_state_evaluate(fx->state, 3600000);
    assert_int_equal(fx->state->leases_expired, 1);
    assert_int_equal(c->in_flight, 0);

    /* a lease for the limits alone: the provider has no max_concurrency */

    assert_int_equal(tg_state_provider(fx->state, 1)->max_concurrency, 0);
}


static void
test_provider_plan(void **state)
{
    uint32_t     lease;
    tg_lfx      *fx = *state;
    tg_facts     f;
    tg_decision  d;

    f = LF("spill", "kim", "gold");
    f.prompt_estimate = 10;

    /* rpm 2: two go to it, the third to the next step */

    for (int i = 0; i < 2; i++) {
        assert_int_equal(decide(fx, &f, &d, &lease), TG_ADMIT_OK);
        assert_string_equal(d.provider->name, "plan");
        report(fx, lease, TG_OUTCOME_OK, true, 10, 0);
    }

    assert_int_equal(decide(fx, &f, &d, &lease), TG_ADMIT_OK);
    assert_string_equal(d.provider->name, "local");
    assert_string_equal(d.reason, "plan:limited local:chosen");
    assert_true(d.provider_limited);
    assert_int_equal(d.cache_ms, 0);

    /* a route with nowhere else to go: 429 until it has room */

    f.model.data = "only";
    f.model.len = 4;
    tg_decide(fx->policy, &f, fx->state, &d);
    assert_int_equal(d.status, 429);
    assert_string_equal(d.error_code, "provider_rate_limited");
    assert_int_equal(d.retry_after, 30);

    fx->state->limits->now_ms += P / 2;
    assert_int_equal(decide(fx, &f, &d, &lease), TG_ADMIT_OK);
    assert_string_equal(d.provider->name, "plan");

    /* its tpm 1000: a prompt that does not fit now goes elsewhere */

    fx->state->limits->now_ms += P;
    f.model.data = "spill";
    f.model.len = 5;
    f.prompt_estimate = 995;
    assert_int_equal(decide(fx, &f, &d, &lease), TG_ADMIT_OK);
    assert_string_equal(d.provider->name, "plan");
    report(fx, lease, TG_OUTCOME_OK, false, 0, 0);
    f.prompt_estimate = 10;
    assert_int_equal(decide(fx, &f, &d, &lease), TG_ADMIT_OK);
    assert_string_equal(d.provider->name, "local");
}


static void
test_provider_cooldown(void **state)
{
    uint32_t     lease;
    tg_lfx      *fx = *state;
    tg_facts     f;
    tg_report    r;
    tg_decision  d;
    tg_pstate   *ps;

    f = LF("spill", "lee", "gold");

    assert_int_equal(decide(fx, &f, &d, &lease), TG_ADMIT_OK);
    assert_string_equal(d.provider->name, "plan");

    /* its 429 asked for 7 s: the next requests go to the next step */

    ps = tg_state_find(fx->state, "plan");
    ps->fail_run = 1;

    memset(&r, 0, sizeof(r));
    r.lease = lease;
    r.owner = fx->owner;
    r.outcome = TG_OUTCOME_RATE_LIMITED;
    r.count = 1;
    r.http_status = 429;
    r.cooldown_ms = 7000;
    (void) tg_state_report(fx->state, &r, 0);

    assert_int_equal(ps->fail_run, 1);      /* not reset by the 429 */

    assert_int_equal(decide(fx, &f, &d, &lease), TG_ADMIT_OK);
    assert_string_equal(d.provider->name, "local");
    assert_string_equal(d.reason, "plan:limited local:chosen");

    f.model.data = "only";
    f.model.len = 4;
    tg_decide(fx->policy, &f, fx->state, &d);
    assert_int_equal(d.status, 429);
    assert_int_equal(d.retry_after, 7);

    /* a shorter wish does not cut the longer one */

    r.lease = 0;
    r.provider = "plan";
    r.cooldown_ms = 1000;
    (void) tg_state_report(fx->state, &r, 0);

    fx->state->limits->now_ms += 6999;
    tg_decide(fx->policy, &f, fx->state, &d);
    assert_int_equal(d.status, 429);
    assert_int_equal(d.retry_after, 1);

    /* it passes: back to it */

    fx->state->limits->now_ms += 1;
    f.model.data = "spill";
    f.model.len = 5;
    assert_int_equal(decide(fx, &f, &d, &lease), TG_ADMIT_OK);
    assert_string_equal(d.provider->name, "plan");

    /* a 429 that said nothing cools nothing (a minute on: rpm 2 again) */

    fx->state->limits->now_ms += P;

    r.cooldown_ms = 0;
    (void) tg_state_report(fx->state, &r, 0);
    assert_int_equal(decide(fx, &f, &d, &lease), TG_ADMIT_OK);
    assert_string_equal(d.provider->name, "plan");
}


static void
test_reload_keeps_counters(void **state)
{
    uint32_t     lease;
    tg_lfx      *fx = *state;
    tg_facts     f;
    tg_policy   *np;
    tg_decision  d;
    tg_limit_store *s = fx->state->limits;

    f = LF("r", "mo", "agents");
    assert_int_equal(decide(fx, &f, &d, &lease), TG_ADMIT_OK);
    report(fx, lease, TG_OUTCOME_OK, false, 0, 0);
    f = LF("r", "mo", "team");
    assert_int_equal(decide(fx, &f, &d, &lease), TG_ADMIT_OK);
    report(fx, lease, TG_OUTCOME_OK, false, 0, 0);
    f = LF("spill", "mo", "gold");
    assert_int_equal(decide(fx, &f, &d, &lease), TG_ADMIT_OK);
    report(fx, lease, TG_OUTCOME_OK, false, 0, 0);

    assert_non_null(s->ops->peek(s, "c\037team\037mo", 9));
    assert_non_null(s->ops->peek(s, "p\037plan", 6));

    /* "team" and the provider "plan" are gone; "agents" stays */

    np = tg_test_policy(
        "{ 'listen': { 'path': '/x' },"
        "  'providers': { 'local': { 'upstream': 'u_local',"
        "    'zone': 'local', 'endpoints': ['chat'] } },"
        "  'routes': { 'r': { 'steps': [ { 'provider': 'local',"
        "    'model': 'm' } ] } },"
        "  'limits': { 'profiles': {"
        "    'agents': { 'rpm': 3, 'tpm': 1000, 'concurrent': 1 } } } }");

    assert_int_equal(tg_state_bind(fx->state, np), 0);
    tg_limits_sweep(s, np);
    tg_policy_free(fx->policy);
    fx->policy = np;

    assert_null(s->ops->peek(s, "c\037team\037mo", 9));
    assert_null(s->ops->peek(s, "p\037plan", 6));
    assert_non_null(s->ops->peek(s, "c\037agents\037mo", 11));

    f = LF("r", "mo", "agents");
    assert_int_equal(decide(fx, &f, &d, &lease), TG_ADMIT_OK);
    assert_string_equal(d.ratelimit, "3 1 40000 1000 1000 0");
}


/* the policy's "limits" */

#define TG_LIM_BASE                                                          \
    "'listen': { 'path': '/x' }, 'providers': { 'p': { 'upstream': 'u',"     \
    " 'zone': 'local', 'endpoints': ['chat'] } }, 'routes': { 'r': {"       \
    " 'steps': [ { 'provider': 'p', 'model': 'm' } ] } }"

static const tg_test_refusal  refused_limits[] = {

    { "{" TG_LIM_BASE ", 'limits': [] }", 1, {
        { "limits", "expected an object" },
      } },

    { "{" TG_LIM_BASE ", 'limits': { 'state_file': 'var/limits' } }", 1, {
        { "limits.state_file", "expected an absolute file path" },
      } },

    { "{" TG_LIM_BASE ", 'limits': { 'state_file': 7 } }", 1, {
        { "limits.state_file", "expected a string" },
      } },

    { "{" TG_LIM_BASE ", 'limits': { 'profile': {}, 'profiles': {"
      " 'a b': { 'rpm': 1 }, 'x': {}, 'y': { 'rpm': 0, 'tpm': 1.5,"
      " 'concurrent': 100001, 'burst': 1 }, 'z': 'rpm' } } }", 0, {
        { "limits.profile", "unknown key" },
        { "limits.profiles.a b", "limit profile names are 1 to 64 letters, "
          "digits, \"_\", \"-\", \":\" or \".\"" },
        { "limits.profiles.x", "expected at least one of \"rpm\", \"tpm\", "
          "\"concurrent\", \"budget\"" },
        { "limits.profiles.y.burst", "unknown key" },
        { "limits.profiles.y.rpm", "expected an integer from 1 to "
          "1000000000" },
        { "limits.profiles.y.tpm", "expected an integer from 1 to "
          "1000000000" },
        { "limits.profiles.y.concurrent", "expected an integer from 1 to "
          "100000" },
        { "limits.profiles.z", "expected an object of \"rpm\", \"tpm\", "
          "\"concurrent\" and \"budget\"" },
      } },

    { "{" TG_LIM_BASE ", 'limits': { 'profiles': { 'a': { 'rpm': 1 },"
      " 'a': { 'rpm': 2 }, 'b': { 'budget': { 'day': 0, 'week': 1,"
      " 'month': '5' } }, 'c': { 'budget': {} } },"
      " 'default': 'nope', 'tenants': { 'acme': 'zzz', 'bad tenant': 'a',"
      " 'ok': 7 }, 'routes': { 'r': 'a', 'ghost': 'a', 'r': 'nope' } } }",
      0, {
        { "limits.profiles.a", "duplicate key" },
        { "limits.profiles.b.budget.week", "unknown key" },
        { "limits.profiles.b.budget.day", "expected an amount above 0 and "
          "at most 10000000, in the prices' currency" },
        { "limits.profiles.b.budget.month", "expected an amount above 0 and "
          "at most 10000000, in the prices' currency" },
        { "limits.profiles.c.budget", "expected an object with \"day\", "
          "\"month\" or both" },
        { "limits.default", "no limit profile named \"nope\" in "
          "\"limits.profiles\"" },
        { "limits.tenants.acme", "no limit profile named \"zzz\" in "
          "\"limits.profiles\"" },
        { "limits.tenants.bad tenant", "expected a tenant name of 1 to 64 "
          "letters, digits and \"_-.@:\"" },
        { "limits.tenants.ok", "expected the name of a limit profile of "
          "\"limits.profiles\"" },
        { "limits.routes.r", "duplicate key" },
        { "limits.routes.ghost", "no route named \"ghost\" in \"routes\"" },
      } },

    { "{" TG_LIM_BASE ", 'limits': { 'profiles': [], 'tenants': [],"
      " 'routes': 'r', 'default': 3 } }", 0, {
        { "limits.profiles", "expected an object of limit profiles by "
          "name" },
        { "limits.default", "expected the name of a limit profile of "
          "\"limits.profiles\"" },
        { "limits.tenants", "expected an object: tenant name to limit "
          "profile name" },
        { "limits.routes", "expected an object: route name to limit "
          "profile name" },
      } },

    { "{ 'listen': { 'path': '/x' }, 'providers': { 'p': { 'upstream': 'u',"
      " 'zone': 'local', 'endpoints': ['chat'], 'rpm': 0,"
      " 'tpm': 1000000001 } }, 'routes': { 'r': {"
      " 'steps': [ { 'provider': 'p', 'model': 'm' } ] } } }", 2, {
        { "providers.p.rpm", "expected an integer from 1 to 1000000000" },
        { "providers.p.tpm", "expected an integer from 1 to 1000000000" },
      } },
};


static void
test_limits_policy(void **unused)
{
    tg_policy  *p;
    const tg_limit_profile  *lp;

    (void) unused;

    p = tg_test_policy(tg_limits_policy);

    assert_int_equal(p->limits.nprofiles, 4);
    lp = tg_limits_profile(p, "agents", 6);
    assert_non_null(lp);
    assert_int_equal(lp->rpm, 3);
    assert_int_equal(lp->tpm, 1000);
    assert_int_equal(lp->concurrent, 1);
    assert_ptr_equal(p->limits.default_profile,
                     tg_limits_profile(p, "gold", 4));
    assert_ptr_equal(tg_limits_tenant(p, "acme", 4),
                     tg_limits_profile(p, "team", 4));
    assert_null(tg_limits_tenant(p, "acm", 3));
    assert_ptr_equal(p->limits.routes[tg_policy_route(p, "capped", 6)->index],
                     tg_limits_profile(p, "team", 4));
    assert_null(p->limits.routes[tg_policy_route(p, "r", 1)->index]);
    assert_int_equal(tg_limits_profile(p, "cheap", 5)->budget_day,
                     1000000000000ULL);
    assert_int_equal(tg_policy_provider(p, "plan", 4)->rpm, 2);
    assert_int_equal(tg_policy_provider(p, "plan", 4)->tpm, 1000);
    tg_policy_free(p);

    /* no "limits": nothing is limited */

    p = tg_test_policy("{" TG_LIM_BASE "}");
    assert_int_equal(p->limits.nprofiles, 0);
    assert_null(p->limits.default_profile);
    assert_null(p->limits.routes);
    tg_policy_free(p);

    TG_TEST_REFUSALS(refused_limits);
}


/* several nodes: Redis's view, this node's own at its share, and away */

static void
test_store_shared(void **unused)
{
    char            text[128];
    tg_counter     *c;
    tg_limit_take   t;
    tg_limit_hold   h;
    tg_limit_store *s;

    (void) unused;

    assert_int_equal(tg_limit_share(10, 2), 5);
    assert_int_equal(tg_limit_share(1, 2), 1);       /* never below 1 */
    assert_int_equal(tg_limit_share(3, 1000), 1);
    assert_int_equal(tg_limit_share(0, 2), 0);       /* no limit stays */
    assert_int_equal(tg_limit_share(7, 1), 7);
    assert_int_equal(tg_limit_share(7, 0), 7);
    assert_int_equal(tg_limit_share64(10000000000000ULL, 3),
                     3333333333333ULL);
    assert_int_equal(tg_limit_share64(1, 4), 1);

    s = tg_limit_store_memory();
    assert_non_null(s);
    s->now_ms = 5000;
    s->wall_s = 1764720000;
    s->nodes = 2;

    c = s->ops->counter(s, "c\037p\037x", 5);
    assert_non_null(c);

    /* Redis can be asked: its view at the full limit, own at the share */

    memset(&t, 0, sizeof(t));
    t.counter = c;
    t.rpm = 10;
    t.requests = 1;
    t.enforce = true;

    assert_int_equal(s->ops->take(s, &t, 1), SIZE_MAX);
    assert_int_equal(tg_window_remaining(&c->requests, 10, 5000), 9);
    assert_int_equal(tg_window_remaining(&c->own_requests, 5, 5000), 4);

    /* Redis says every node took 8: learned as of now */

    tg_counter_learn(c, 10, 0, 8 * P, 0, 7000, 9000, 5000, s->wall_s);
    assert_int_equal(tg_window_remaining(&c->requests, 10, 5000), 2);
    assert_int_equal(c->budget.day_spent, 7000);
    assert_int_equal(c->budget.month_spent, 9000);
    assert_int_equal(tg_window_remaining(&c->own_requests, 5, 5000), 4);

    /* away: the own window at the share decides, Redis's is left alone */

    s->away = true;
    t.own = true;
    t.rpm = tg_limit_share(10, s->nodes);

    for (int i = 0; i < 4; i++) {
        assert_int_equal(s->ops->take(s, &t, 1), SIZE_MAX);
    }
    assert_int_equal(s->ops->take(s, &t, 1), 0);
    assert_int_equal(t.refused, TG_LIMIT_REQUESTS);
    assert_true(t.wait_ms > 0);
    assert_int_equal(tg_window_remaining(&c->requests, 10, 5000), 2);

    /* given back (Redis refused what was taken here) */

    s->ops->give_back(s, c, 5, 1, 0, 0, true);
    assert_int_equal(tg_window_remaining(&c->own_requests, 5, 5000), 1);
    s->ops->give_back(s, c, 10, 1, 0, 0, false);
    assert_int_equal(tg_window_remaining(&c->requests, 10, 5000), 3);

    /* a hold's x-ratelimit-* text, and untake that zeroes what it held */

    memset(&h, 0, sizeof(h));
    h.n = 1;
    h.parts[0].counter = c;
    h.parts[0].rpm = 10;
    h.parts[0].requests = 1;
    h.parts[0].tpm = 100;
    h.parts[0].tokens = 40;
    h.parts[0].budget = true;

    tg_limits_hold_text(s, &h, text, sizeof(text));
    assert_string_equal(text, "10 3 42000 100 100 0");

    assert_true(tg_limits_shared(s, &h));
    tg_limits_untake(s, &h);
    assert_int_equal(tg_window_remaining(&c->requests, 10, 5000), 4);
    assert_int_equal(h.parts[0].requests, 0);
    assert_int_equal(h.parts[0].tokens, 0);
    assert_false(h.parts[0].budget);

    /* a budget alone: its share of the amount, from this node's spend */

    memset(&t, 0, sizeof(t));
    t.counter = c;
    t.enforce = true;
    t.own = true;
    {
        tg_limit_profile  lp = { .name = "p", .budget_day = 1000 };

        t.budget = &lp;
        s->ops->spend(s, c, 499);
        assert_int_equal(s->ops->take(s, &t, 1), SIZE_MAX);
        s->ops->spend(s, c, 1);
        assert_int_equal(s->ops->take(s, &t, 1), 0);
        assert_int_equal(t.refused, TG_LIMIT_BUDGET);
        assert_false(t.monthly);

        /* Redis's view (learned, plus the spend) is not consulted */
        t.own = false;
        s->away = false;
        assert_int_equal(c->budget.day_spent, 7500);
        assert_int_equal(s->ops->take(s, &t, 1), 0);
        c->budget.day_spent = 10;
        assert_int_equal(s->ops->take(s, &t, 1), SIZE_MAX);
    }

    /* a store not shared has no own windows to keep */

    s->nodes = 0;
    assert_false(tg_limits_shared(s, &h));

    s->ops->unref(s, c);
    s->ops->free(s);
}


/*
 * concurrent shared through Redis: this node's slots, and what Redis
 * refused with counted for a second, never while Redis is away (then the
 * share decides) nor on a node alone.
 */

static void
test_store_shared_slots(void **unused)
{
    tg_counter     *c;
    tg_limit_take   t;
    tg_limit_hold   h;
    tg_limit_store *s;

    (void) unused;

    s = tg_limit_store_memory();
    assert_non_null(s);
    s->now_ms = 5000;
    s->wall_s = 1764720000;
    s->nodes = 2;

    c = s->ops->counter(s, "c\037p\037x", 5);
    assert_non_null(c);

    memset(&t, 0, sizeof(t));
    t.counter = c;
    t.concurrent = 2;
    t.enforce = true;

    assert_int_equal(s->ops->take(s, &t, 1), SIZE_MAX);
    assert_int_equal(s->ops->take(s, &t, 1), SIZE_MAX);
    assert_int_equal(c->in_flight, 2);
    assert_int_equal(s->ops->take(s, &t, 1), 0);
    assert_int_equal(t.refused, TG_LIMIT_CONCURRENT);
    assert_int_equal(t.wait_ms, 1000);
    s->ops->release(s, c);
    s->ops->release(s, c);
    assert_int_equal(c->in_flight, 0);

    /* Redis refused one: 2 held across the nodes, none of them here */

    tg_counter_learn_slots(c, 2, s->now_ms);
    assert_int_equal(s->ops->take(s, &t, 1), 0);
    assert_int_equal(t.refused, TG_LIMIT_CONCURRENT);

    /* a later attempt is counted, never refused */
    t.enforce = false;
    assert_int_equal(s->ops->take(s, &t, 1), SIZE_MAX);
    s->ops->release(s, c);
    t.enforce = true;

    /* the larger of it and this node's own count decides (Redis's 1 may
       be one of these) */
    tg_counter_learn_slots(c, 1, s->now_ms);
    assert_int_equal(s->ops->take(s, &t, 1), SIZE_MAX);
    assert_int_equal(s->ops->take(s, &t, 1), SIZE_MAX);
    assert_int_equal(s->ops->take(s, &t, 1), 0);
    s->ops->release(s, c);
    s->ops->release(s, c);

    /* a second on, Redis judges again: the learned count is not used */
    tg_counter_learn_slots(c, 2, s->now_ms);
    s->now_ms += TG_LIMIT_SLOTS_SEEN_MS - 1;
    assert_int_equal(s->ops->take(s, &t, 1), 0);
    s->now_ms += 1;
    assert_int_equal(s->ops->take(s, &t, 1), SIZE_MAX);
    s->ops->release(s, c);

    /* away: this node's share (2 of 4 over 2 nodes), Redis's not counted */
    tg_counter_learn_slots(c, 4, s->now_ms);
    s->away = true;
    t.own = true;
    t.concurrent = tg_limit_share(4, s->nodes);
    assert_int_equal(t.concurrent, 2);
    assert_int_equal(s->ops->take(s, &t, 1), SIZE_MAX);
    assert_int_equal(s->ops->take(s, &t, 1), SIZE_MAX);
    assert_int_equal(s->ops->take(s, &t, 1), 0);
    assert_int_equal(t.refused, TG_LIMIT_CONCURRENT);
    s->ops->release(s, c);
    s->ops->release(s, c);
    assert_int_equal(tg_limit_share(1, 2), 1);      /* 1 stays 1 each */

    /* a node alone never learned anything from Redis */
    s->away = false;
    s->nodes = 0;
    t.own = false;
    t.concurrent = 2;
    tg_counter_learn_slots(c, 9, s->now_ms);
    assert_int_equal(s->ops->take(s, &t, 1), SIZE_MAX);
    s->ops->release(s, c);

    /* a hold with a slot alone is shared: Redis takes the slot */

    s->nodes = 2;
    memset(&h, 0, sizeof(h));
    h.n = 1;
    h.parts[0].counter = c;
    assert_false(tg_limits_has_slot(&h));
    assert_false(tg_limits_shared(s, &h));
    h.parts[0].slot = true;
    h.parts[0].concurrent = 2;
    assert_true(tg_limits_has_slot(&h));
    assert_true(tg_limits_shared(s, &h));
    assert_false(tg_limits_has_slot(NULL));
    s->nodes = 0;
    assert_false(tg_limits_shared(s, &h));

    s->ops->unref(s, c);
    s->ops->free(s);
}


/* what a node took and spent alone, for Redis when it is back */

static void
test_store_reconcile(void **unused)
{
    tg_counter        *c, *quiet;
    tg_limit_take      t;
    tg_limit_store    *s;
    tg_reconcile_part  part;

    (void) unused;

    s = tg_limit_store_memory();
    assert_non_null(s);
    s->now_ms = 5000;
    s->wall_s = 1764720000;             /* 2025-12-03, day 20425 */
    s->nodes = 2;

    c = s->ops->counter(s, "c\037p\037x", 5);
    quiet = s->ops->counter(s, "c\037p\037y", 5);
    assert_non_null(c);
    assert_non_null(quiet);

    /* taken while Redis answered: nothing to send */

    memset(&t, 0, sizeof(t));
    t.counter = c;
    t.rpm = 10;
    t.tpm = 1000;
    t.requests = 1;
    t.tokens = 100;
    t.enforce = true;
    assert_int_equal(s->ops->take(s, &t, 1), SIZE_MAX);
    s->ops->spend(s, c, 5000);
    s->ops->tokens(s, c, 1000, 50, false);
    assert_false(tg_counter_reconcile(c, s->now_ms, s->wall_s, &part));

    /* alone, at the share: three takes, one given back, tokens corrected */

    s->away = true;
    t.own = true;
    t.rpm = tg_limit_share(10, 2);
    t.tpm = tg_limit_share(1000, 2);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(s->ops->take(s, &t, 1), SIZE_MAX);
    }
    s->ops->give_back(s, c, 5, 1, 500, 100, true);
    s->ops->tokens(s, c, 500, -30, true);
    tg_counter_away_spend(c, 2500, s->wall_s);
    tg_counter_away_spend(c, 500, s->wall_s);

    assert_true(tg_counter_reconcile(c, s->now_ms, s->wall_s, &part));
    assert_int_equal(part.rpm, 10);     /* drains at the whole limit */
    assert_int_equal(part.requests_debt, 2 * P);
    assert_int_equal(part.tpm, 1000);
    assert_int_equal(part.tokens_debt, 170 * P);
    assert_int_equal(part.day, 20425);
    assert_int_equal(part.day_spent, 3000);
    assert_int_equal(part.month_spent, 3000);

    /* a counter that took nothing alone sends nothing */

    assert_false(tg_counter_reconcile(quiet, s->now_ms, s->wall_s, &part));

    /* 3 s later: drained as Redis's window would have (10 a minute) */

    assert_true(tg_counter_reconcile(c, s->now_ms + 3000, s->wall_s,
                                     &part));
    assert_int_equal(part.requests_debt, 2 * P - 3000 * 10);
    assert_int_equal(part.tokens_debt, 170 * P - 3000 * 1000);

    /* a minute later the windows owe nothing; the spend stays the day's */

    assert_true(tg_counter_reconcile(c, s->now_ms + P, s->wall_s, &part));
    assert_int_equal(part.rpm, 0);
    assert_int_equal(part.requests_debt, 0);
    assert_int_equal(part.tpm, 0);
    assert_int_equal(part.day_spent, 3000);

    /* the next day: only the month's */

    assert_true(tg_counter_reconcile(c, s->now_ms, s->wall_s + 86400,
                                     &part));
    assert_int_equal(part.day, 20426);
    assert_int_equal(part.day_spent, 0);
    assert_int_equal(part.month_spent, 3000);

    /* the sweep keeps a counter with tallies; sent, they are cleared */

    s->ops->unref(s, c);
    s->ops->unref(s, quiet);
    s->now_ms += 2 * P;
    s->ops->sweep(s, NULL, NULL);
    assert_non_null(s->ops->peek(s, "c\037p\037x", 5));
    assert_null(s->ops->peek(s, "c\037p\037y", 5));

    tg_counter_reconciled(c);
    assert_false(tg_counter_reconcile(c, s->now_ms, s->wall_s, &part));

    s->ops->sweep(s, NULL, NULL);       /* own budget: spent by no one */
    s->ops->free(s);
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_window_requests),
        cmocka_unit_test(test_window_tokens),
        cmocka_unit_test(test_store_all_or_nothing),
        cmocka_unit_test(test_budget_periods),
        cmocka_unit_test(test_store_shared),
        cmocka_unit_test(test_store_shared_slots),
        cmocka_unit_test(test_store_reconcile),
        cmocka_unit_test_setup_teardown(test_admit_client, lsetup, lteardown),
        cmocka_unit_test_setup_teardown(test_admit_long_name, lsetup,
                                        lteardown),
        cmocka_unit_test_setup_teardown(test_admit_tokens, lsetup, lteardown),
        cmocka_unit_test_setup_teardown(test_admit_profiles, lsetup,
                                        lteardown),
        cmocka_unit_test_setup_teardown(test_admit_budget, lsetup, lteardown),
        cmocka_unit_test_setup_teardown(test_hold_ends, lsetup, lteardown),
        cmocka_unit_test_setup_teardown(test_provider_plan, lsetup,
                                        lteardown),
        cmocka_unit_test_setup_teardown(test_provider_cooldown, lsetup,
                                        lteardown),
        cmocka_unit_test_setup_teardown(test_reload_keeps_counters, lsetup,
                                        lteardown),
        cmocka_unit_test(test_limits_policy),
    };

    return cmocka_run_group_tests_name("limits", tests, NULL, NULL);
}
