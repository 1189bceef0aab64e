/*
 * Runtime state: provider records across reloads, lease grant and release
 * by REPORT and by connection close, counters.
 */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "state.h"
#include "tailgate_protocol.h"
#include "tg_test.h"


#define TG_PROVIDER(name, zone)                                               \
    "'" name "': { 'upstream': 'u_" name "', 'zone': '" zone "',"             \
    " 'endpoints': ['chat'] }"

#define TG_ROUTE(name, provider)                                              \
    "'" name "': { 'steps': [ { 'provider': '" provider "', 'model': 'm' } ] }"


static const char  *tg_policy_a =
    "{ 'listen': { 'path': '/x' }, 'providers': {"
    TG_PROVIDER("local", "local") "," TG_PROVIDER("lan", "private") ","
    TG_PROVIDER("cloud", "external") "},"
    "'routes': {" TG_ROUTE("r", "local") "} }";

/* reordered, "lan" gone, "new" added */
static const char  *tg_policy_b =
    "{ 'listen': { 'path': '/x' }, 'providers': {"
    TG_PROVIDER("new", "local") "," TG_PROVIDER("cloud", "external") ","
    TG_PROVIDER("local", "local") "},"
    "'routes': {" TG_ROUTE("r", "local") "} }";


static tg_policy *
policy_with_limits(const char *text, uint32_t local_max, uint32_t cloud_max)
{
    tg_policy    *p;
    tg_provider  *pr;

    p = tg_test_policy(text);

    pr = (tg_provider *) tg_policy_provider(p, "local", 5);
    pr->max_concurrency = local_max;
    pr = (tg_provider *) tg_policy_provider(p, "cloud", 5);
    pr->max_concurrency = cloud_max;

    return p;
}


/* a REPORT without names: 1 when it ended a lease */

static int
report(tg_state *st, uint32_t lease, tg_outcome outcome, uint32_t count)
{
    tg_report  r;

    memset(&r, 0, sizeof(r));
    r.lease = lease;
    r.outcome = outcome;
    r.count = count;

    return tg_state_report(st, &r, 0) != NULL;
}


static void
test_bind(void **unused)
{
    tg_state         *st;
    tg_policy        *a, *b;
    const tg_pstate  *ps;

    (void) unused;

    st = tg_state_new();
    assert_non_null(st);
    assert_null(tg_state_provider(st, 0));
    assert_null(tg_state_provider(NULL, 0));

    a = tg_test_policy(tg_policy_a);
    assert_int_equal(tg_state_bind(st, a), 0);

    assert_int_equal(st->nslots, 3);
    assert_string_equal(tg_state_provider(st, 0)->name, "local");
    assert_string_equal(tg_state_provider(st, 1)->name, "lan");
    assert_string_equal(tg_state_provider(st, 2)->name, "cloud");
    assert_null(tg_state_provider(st, 3));
    assert_true(tg_state_find(st, "lan")->in_policy);

    tg_state_find(st, "cloud")->health = TG_HEALTH_DOWN;
    ps = tg_state_find(st, "cloud");

    /* a reload: records are found by name, never move */
    b = tg_test_policy(tg_policy_b);
    assert_int_equal(tg_state_bind(st, b), 0);
    tg_policy_free(a);

    assert_int_equal(st->nslots, 4);
    assert_string_equal(tg_state_provider(st, 0)->name, "new");
    assert_ptr_equal(tg_state_provider(st, 1), ps);
    assert_int_equal(tg_state_provider(st, 1)->health, TG_HEALTH_DOWN);
    assert_string_equal(tg_state_provider(st, 2)->name, "local");
    assert_false(tg_state_find(st, "lan")->in_policy);
    assert_true(tg_state_find(st, "new")->in_policy);
    assert_null(tg_state_find(st, "nope"));

    tg_policy_free(b);
    tg_state_free(st);
    tg_state_free(NULL);
}


static void
test_no_lease_without_max_concurrency(void **unused)
{
    uint32_t    lease;
    tg_state   *st;
    tg_policy  *p;

    (void) unused;

    st = tg_state_new();
    p = tg_test_policy(tg_policy_a);
    assert_int_equal(tg_state_bind(st, p), 0);

    lease = 99;
    assert_int_equal(tg_state_lease_acquire(st, 0, 1, 0, &lease), 0);
    assert_int_equal(lease, 0);
    assert_int_equal(tg_state_provider(st, 0)->in_flight, 0);
    assert_int_equal(st->nleases, 0);

    /* an index that is not bound */
    assert_int_equal(tg_state_lease_acquire(st, 3, 1, 0, &lease), -1);
    assert_int_equal(lease, 0);

    tg_policy_free(p);
    tg_state_free(st);
}


/* a REPORT of lease on connection owner: 1 when it ended a lease */

static int
report_on(tg_state *st, uint64_t owner, uint32_t lease)
{
    tg_report  r;

    memset(&r, 0, sizeof(r));
    r.lease = lease;
    r.owner = owner;
    r.outcome = TG_OUTCOME_OK;
    r.count = 1;

    return tg_state_report(st, &r, 0) != NULL;
}


static void
test_lease_adopt(void **unused)
{
    uint32_t          fresh, again;
    tg_state         *st;
    tg_policy        *p;
    tg_pstate        *local, *cloud;
    const tg_lease   *l;

    (void) unused;

    st = tg_state_new();
    p = policy_with_limits(tg_policy_a, 1, 0);
    assert_int_equal(tg_state_bind(st, p), 0);

    local = tg_state_provider(st, 0);
    cloud = tg_state_find(st, "cloud");

    /* a worker re-announces lease 40 of a policyd before: kept as 40 */

    assert_int_equal(tg_state_lease_adopt(st, local, 7, 500, 40), 0);
    l = tg_state_lease(st, 40);
    assert_non_null(l);
    assert_int_equal(l->owner, 7);
    assert_int_equal(l->granted_ms, 500);
    assert_int_equal(local->in_flight, 1);
    assert_int_equal(st->leases_adopted, 1);

    /* a provider without max_concurrency needs none; nor does lease 0 */

    assert_int_equal(tg_state_lease_adopt(st, cloud, 7, 500, 41), 0);
    assert_null(tg_state_lease(st, 41));
    assert_int_equal(tg_state_lease_adopt(st, local, 7, 500, 0), 0);
    assert_int_equal(st->nleases, 1);

    /* this policyd gave id 1 away; another worker re-announces its own 1 */

    assert_int_equal(tg_state_lease_acquire(st, 0, 8, 600, &fresh), 0);
    assert_int_equal(fresh, 1);
    assert_int_equal(tg_state_lease_adopt(st, local, 9, 700, 1), 0);
    assert_int_equal(local->in_flight, 3);
    assert_int_equal(st->naliases, 1);

    /* its REPORT of 1 on its own connection ends its own lease, not 8's */

    assert_int_equal(report_on(st, 9, 1), 1);
    l = tg_state_lease(st, 1);
    assert_non_null(l);
    assert_int_equal(l->owner, 8);
    assert_int_equal(st->naliases, 0);
    assert_int_equal(local->in_flight, 2);

    /* and 8's REPORT of 1 ends 8's */

    assert_int_equal(report_on(st, 8, 1), 1);
    assert_null(tg_state_lease(st, 1));

    /* an alias goes with its connection */

    assert_int_equal(tg_state_lease_acquire(st, 0, 8, 800, &fresh), 0);
    assert_int_equal(tg_state_lease_adopt(st, local, 9, 900, fresh), 0);
    assert_int_equal(st->naliases, 1);
    assert_int_equal(tg_state_release_owner(st, 9), 1);
    assert_int_equal(st->naliases, 0);
    again = fresh;
    assert_non_null(tg_state_lease(st, again));
    assert_int_equal(tg_state_release_owner(st, 8), 1);
    assert_int_equal(tg_state_release_owner(st, 7), 1);
    assert_int_equal(local->in_flight, 0);
    assert_int_equal(st->nleases, 0);

    tg_policy_free(p);
    tg_state_free(st);
}


static void
test_lease_grant_and_release(void **unused)
{
    uint32_t          l1, l2, l3;
    tg_state         *st;
    tg_policy        *p;
    const tg_lease   *l;
    const tg_pstate  *local;

    (void) unused;

    st = tg_state_new();
    p = policy_with_limits(tg_policy_a, 2, 0);
    assert_int_equal(tg_state_bind(st, p), 0);

    local = tg_state_provider(st, 0);
    assert_int_equal(local->max_concurrency, 2);

    assert_int_equal(tg_state_lease_acquire(st, 0, 10, 1000, &l1), 0);
    assert_int_equal(tg_state_lease_acquire(st, 0, 11, 2000, &l2), 0);
    assert_int_equal(l1, 1);
    assert_int_equal(l2, 2);
    assert_int_equal(local->in_flight, 2);
    assert_int_equal(st->nleases, 2);

    l = tg_state_lease(st, l2);
    assert_non_null(l);
    assert_int_equal(l->owner, 11);
    assert_int_equal(l->granted_ms, 2000);
    assert_ptr_equal(l->provider, local);

    /* the state grants past the limit: the decision checks it (busy) */
    assert_int_equal(tg_state_lease_acquire(st, 0, 10, 0, &l3), 0);
    assert_int_equal(l3, 3);
    assert_int_equal(local->in_flight, 3);

    assert_int_equal(tg_state_lease_release(st, l1), 1);
    assert_int_equal(tg_state_lease_release(st, l1), 0);
    assert_int_equal(tg_state_lease_release(st, 0), 0);
    assert_int_equal(tg_state_lease_release(st, 12345), 0);
    assert_int_equal(local->in_flight, 2);
    assert_null(tg_state_lease(st, l1));

    assert_int_equal(tg_state_lease_release(st, l2), 1);
    assert_int_equal(tg_state_lease_release(st, l3), 1);
    assert_int_equal(local->in_flight, 0);
    assert_int_equal(st->nleases, 0);

    tg_policy_free(p);
    tg_state_free(st);
}


static void
test_release_by_connection(void **unused)
{
    int               i;
    uint32_t          lease, kept;
    tg_state         *st;
    tg_policy        *p;
    const tg_pstate  *local, *cloud;

    (void) unused;

    st = tg_state_new();
    p = policy_with_limits(tg_policy_a, 1000, 1000);
    assert_int_equal(tg_state_bind(st, p), 0);

    local = tg_state_provider(st, 0);
    cloud = tg_state_provider(st, 2);

    /* enough leases to grow the table a few times */
    for (i = 0; i < 600; i++) {
        assert_int_equal(tg_state_lease_acquire(st, i % 2 ? 2 : 0,
                                                i % 3 ? 1 : 2, 0, &lease), 0);
        assert_int_not_equal(lease, 0);
    }

    kept = lease;      /* i = 599: owner 1 */

    assert_int_equal(st->nleases, 600);
    assert_int_equal(local->in_flight, 300);
    assert_int_equal(cloud->in_flight, 300);

    /* owner 2 held every third one */
    assert_int_equal(tg_state_release_owner(st, 2), 200);
    assert_int_equal(st->nleases, 400);
    assert_int_equal(local->in_flight + cloud->in_flight, 400);
    assert_int_equal(st->leases_dropped, 200);
    assert_int_equal(tg_state_release_owner(st, 2), 0);
    assert_int_equal(tg_state_release_owner(st, 3), 0);

    /* a REPORT from another connection still ends a lease of owner 1 */
    assert_int_equal(report(st, kept, TG_OUTCOME_OK, 1), 1);
    assert_int_equal(st->nleases, 399);

    assert_int_equal(tg_state_release_owner(st, 1), 399);
    assert_int_equal(st->nleases, 0);
    assert_int_equal(local->in_flight, 0);
    assert_int_equal(cloud->in_flight, 0);

    tg_policy_free(p);
    tg_state_free(st);
}


static void
test_leases_survive_reload(void **unused)
{
    uint32_t          lease;
    tg_state         *st;
    tg_policy        *a, *b;
    const tg_pstate  *local;

    (void) unused;

    st = tg_state_new();
    a = policy_with_limits(tg_policy_a, 1, 0);
    assert_int_equal(tg_state_bind(st, a), 0);

    assert_int_equal(tg_state_lease_acquire(st, 0, 5, 0, &lease), 0);
    local = tg_state_provider(st, 0);
    assert_int_equal(local->in_flight, 1);

    /* reload and free the old policy: the lease must not point into it */
    b = policy_with_limits(tg_policy_b, 4, 0);
    assert_int_equal(tg_state_bind(st, b), 0);
    tg_policy_free(a);

    assert_ptr_equal(tg_state_provider(st, 2), local);
    assert_int_equal(local->in_flight, 1);
    assert_int_equal(local->max_concurrency, 4);
    assert_string_equal(tg_state_lease(st, lease)->provider->name, "local");

    assert_int_equal(report(st, lease, TG_OUTCOME_SERVER_ERROR, 1), 1);
    assert_int_equal(local->in_flight, 0);
    assert_int_equal(local->reports[TG_OUTCOME_SERVER_ERROR], 1);

    tg_policy_free(b);
    tg_state_free(st);
}


static void
test_lease_ids_wrap(void **unused)
{
    uint32_t    a, b, c, d;
    tg_state   *st;
    tg_policy  *p;

    (void) unused;

    st = tg_state_new();
    p = policy_with_limits(tg_policy_a, 10, 0);
    assert_int_equal(tg_state_bind(st, p), 0);

    assert_int_equal(tg_state_lease_acquire(st, 0, 1, 0, &a), 0);
    assert_int_equal(a, 1);

    st->next_lease = UINT32_MAX;
    assert_int_equal(tg_state_lease_acquire(st, 0, 1, 0, &b), 0);
    assert_int_equal(b, UINT32_MAX);

    /* 0 is skipped, and so is 1, still held */
    assert_int_equal(tg_state_lease_acquire(st, 0, 1, 0, &c), 0);
    assert_int_equal(c, 2);
    assert_int_equal(tg_state_lease_acquire(st, 0, 1, 0, &d), 0);
    assert_int_equal(d, 3);

    assert_int_equal(tg_state_release_owner(st, 1), 4);

    tg_policy_free(p);
    tg_state_free(st);
}


static void
test_counters(void **unused)
{
    uint32_t    lease;
    tg_state   *st;
    tg_policy  *p;

    (void) unused;

    st = tg_state_new();
    p = policy_with_limits(tg_policy_a, 0, 3);
    assert_int_equal(tg_state_bind(st, p), 0);

    tg_state_count_decision(st, 200, 2, NULL);
    tg_state_count_decision(st, 200, 0, NULL);
    tg_state_count_decision(st, 404, SIZE_MAX, NULL);
    tg_state_count_decision(st, 503, SIZE_MAX, NULL);

    assert_int_equal(st->decisions, 4);
    assert_int_equal(st->refusals, 2);
    assert_int_equal(tg_state_find(st, "cloud")->decisions, 1);
    assert_int_equal(tg_state_find(st, "local")->decisions, 1);

    /* reports with and without a lease */
    assert_int_equal(report(st, 0, TG_OUTCOME_OK, 1), 0);
    assert_int_equal(report(st, 777, TG_OUTCOME_NOT_SENT, 1), 0);
    assert_int_equal(tg_state_lease_acquire(st, 2, 1, 0, &lease), 0);
    assert_int_equal(report(st, lease, TG_OUTCOME_RATE_LIMITED, 1), 1);
    assert_int_equal(report(st, lease, TG_OUTCOME_RATE_LIMITED, 1), 0);
    assert_int_equal(report(st, 0, (tg_outcome) 1000, 1), 0);

    /* a REPORT that counts many plain successes at once */
    assert_int_equal(report(st, 0, TG_OUTCOME_OK, 41), 0);

    assert_int_equal(st->reports[TG_OUTCOME_OK], 42);
    assert_int_equal(st->reports[TG_OUTCOME_NOT_SENT], 1);
    assert_int_equal(st->reports[TG_OUTCOME_RATE_LIMITED], 2);
    assert_int_equal(st->reports[TG_OUTCOME_UNKNOWN], 1);
    assert_int_equal(st->reports_without_lease, 45);
    assert_int_equal(tg_state_find(st, "cloud")->reports
                     [TG_OUTCOME_RATE_LIMITED], 1);

    tg_policy_free(p);
    tg_state_free(st);
}


static void
test_outcomes(void **unused)
{
    int                 i;
    static const char  *names[] = {
        "ok", "client_error", "rate_limited", "server_error",
        "connect_error", "timeout", "client_abort", "stream_broken",
        "not_sent"
    };

    (void) unused;

    for (i = 0; i < 9; i++) {
        assert_int_equal(tg_outcome_parse(names[i], strlen(names[i])), i);
        assert_string_equal(tg_outcome_name((tg_outcome) i), names[i]);
    }

    assert_int_equal(tg_outcome_parse("unknown", 7), TG_OUTCOME_UNKNOWN);
    assert_int_equal(tg_outcome_parse("ok ", 3), TG_OUTCOME_UNKNOWN);
    assert_int_equal(tg_outcome_parse("o", 1), TG_OUTCOME_UNKNOWN);
    assert_int_equal(tg_outcome_parse("", 0), TG_OUTCOME_UNKNOWN);
    assert_string_equal(tg_outcome_name(TG_OUTCOME_COUNT), "unknown");

    /* the failures a route's fallback may follow, by their class */
    assert_int_equal(tg_outcome_fallback(TG_OUTCOME_CONNECT_ERROR),
                     TG_FALLBACK_CONNECT_ERROR);
    assert_int_equal(tg_outcome_fallback(TG_OUTCOME_TIMEOUT),
                     TG_FALLBACK_TIMEOUT);
    assert_int_equal(tg_outcome_fallback(TG_OUTCOME_SERVER_ERROR),
                     TG_FALLBACK_5XX);
    assert_int_equal(tg_outcome_fallback(TG_OUTCOME_RATE_LIMITED),
                     TG_FALLBACK_429);
    assert_int_equal(tg_outcome_fallback(TG_OUTCOME_OK), 0);
    assert_int_equal(tg_outcome_fallback(TG_OUTCOME_STREAM_BROKEN), 0);
    assert_int_equal(tg_outcome_fallback(TG_OUTCOME_UNKNOWN), 0);
    assert_int_equal(tg_outcome_fallback(TG_OUTCOME_COUNT), 0);
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bind),
        cmocka_unit_test(test_no_lease_without_max_concurrency),
        cmocka_unit_test(test_lease_grant_and_release),
        cmocka_unit_test(test_lease_adopt),
        cmocka_unit_test(test_release_by_connection),
        cmocka_unit_test(test_leases_survive_reload),
        cmocka_unit_test(test_lease_ids_wrap),
        cmocka_unit_test(test_counters),
        cmocka_unit_test(test_outcomes),
    };

    return cmocka_run_group_tests_name("state", tests, NULL, NULL);
}
