/*
 * A provider's health, without sockets: what probe answers mean for each
 * kind of server, and how probes, reports and lease ages move a provider
 * between up, busy, stuck and down (docs/policy.md, "Health").
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
#include "tg_test.h"


static tg_policy *
health_policy(void)
{
    return tg_test_policy("{ 'listen': { 'path': '/x' }, 'providers': {"
        "  'llama': { 'upstream': 'u1', 'zone': 'local', 'endpoints': ['chat'],"
        "    'max_concurrency': 2,"
        "    'health': { 'kind': 'llama.cpp', 'url': 'http://h/health',"
        "                'slots_url': 'http://h/slots', 'down_after': 2,"
        "                'up_after': 2, 'cooldown_ms': 1000,"
        "                'stuck_after_ms': 5000 } },"
        "  'vllm': { 'upstream': 'u2', 'zone': 'local', 'endpoints': ['chat'],"
        "    'health': { 'kind': 'vllm', 'url': 'http://h/metrics' } },"
        "  'oai': { 'upstream': 'u3', 'zone': 'private', 'endpoints': ['chat'],"
        "    'models': ['qwen', 'llama'],"
        "    'health': { 'kind': 'openai', 'url': 'https://h/v1/models' } },"
        "  'ext': { 'upstream': 'u4', 'zone': 'external',"
        "           'endpoints': ['chat'] } },"
        "  'routes': { 'r': { 'steps': [ { 'provider': 'ext',"
        "                                  'model': 'm' } ] } }"
        "}");
}


/* a probe's answer, with its length */
#define BODY(s)  s, strlen(s)


static tg_probe_result
fresh(void)
{
    tg_probe_result  r;

    memset(&r, 0, sizeof(r));
    r.slots_total = -1;
    r.slots_busy = -1;
    r.running = -1;
    r.waiting = -1;

    return r;
}


static void
test_probe_kinds(void **unused)
{
    tg_policy        *p;
    tg_probe_result   r;
    const char       *metrics;

    (void) unused;

    p = health_policy();

    /* llama.cpp: 200 is up, 503 "Loading model" is not, slots say busy */

    r = fresh();
    tg_probe_interpret(&p->providers[0], false, 200,
                       BODY("{\"status\":\"ok\"}"), &r);
    assert_true(r.ok);
    assert_false(r.busy);

    r = fresh();
    tg_probe_interpret(&p->providers[0], false, 503,
                       BODY("{\"error\":{\"message\":"
                            "\"Loading model\"}}"), &r);
    assert_false(r.ok);
    assert_string_equal(r.note, "loading its model");

    r = fresh();
    tg_probe_interpret(&p->providers[0], false, 500, BODY(""), &r);
    assert_false(r.ok);
    assert_string_equal(r.note, "HTTP 500");

    r = fresh();
    r.ok = true;
    tg_probe_interpret(&p->providers[0], true, 200,
                       BODY("[{\"id\":0,\"is_processing\":true},"
                       "{\"id\":1,\"is_processing\":false}]"), &r);
    assert_true(r.ok);
    assert_false(r.busy);
    assert_int_equal(r.slots_total, 2);
    assert_int_equal(r.slots_busy, 1);

    tg_probe_interpret(&p->providers[0], true, 200,
                       BODY("[{\"id\":0,\"state\":1},"
                            "{\"id\":1,\"state\":1}]"), &r);
    assert_true(r.busy);
    assert_int_equal(r.slots_busy, 2);
    assert_string_equal(r.note, "all 2 slots busy");

    /* vLLM: requests waiting mean no capacity */

    metrics = "# HELP x\n"
              "vllm:num_requests_running{model_name=\"a\"} 4.0\n"
              "vllm:num_requests_waiting{model_name=\"a\"} 2.0\n"
              "vllm:num_requests_waiting_time 9\n";
    r = fresh();
    tg_probe_interpret(&p->providers[1], false, 200, metrics,
                       strlen(metrics), &r);
    assert_true(r.ok);
    assert_true(r.busy);
    assert_int_equal(r.running, 4);
    assert_int_equal(r.waiting, 2);

    metrics = "vllm:num_requests_running{model_name=\"a\"} 1\n"
              "vllm:num_requests_waiting{model_name=\"a\"} 0\n";
    r = fresh();
    tg_probe_interpret(&p->providers[1], false, 200, metrics,
                       strlen(metrics), &r);
    assert_true(r.ok);
    assert_false(r.busy);

    /* OpenAI-style: up only when one of its models is loaded */

    r = fresh();
    tg_probe_interpret(&p->providers[2], false, 200,
                       BODY("{\"data\":[{\"id\":\"other\"},"
                            "{\"id\":\"llama\"}]}"), &r);
    assert_true(r.ok);

    r = fresh();
    tg_probe_interpret(&p->providers[2], false, 200,
                       BODY("{\"data\":[{\"id\":\"other\"}]}"), &r);
    assert_false(r.ok);
    assert_string_equal(r.note, "none of its models is loaded");

    r = fresh();
    tg_probe_interpret(&p->providers[2], false, 200, BODY("<html>"), &r);
    assert_false(r.ok);

    tg_policy_free(p);
}


static void
test_probe_states(void **unused)
{
    tg_state         *st;
    tg_policy        *p;
    tg_pstate        *ps;
    tg_probe_result   ok, bad;

    (void) unused;

    p = health_policy();
    st = tg_state_new();
    assert_int_equal(tg_state_bind(st, p), 0);

    ps = tg_state_find(st, "llama");
    assert_int_equal(ps->conf.down_after, 2);

    ok = fresh();
    ok.ok = true;
    bad = fresh();
    snprintf(bad.note, sizeof(bad.note), "Timeout was reached");

    /* one failure is not down; two in a row are */

    tg_health_probed(ps, &bad, 1000);
    assert_int_equal(tg_state_evaluate(st, 1000), 0);
    assert_int_equal(ps->health, TG_HEALTH_UP);

    tg_health_probed(ps, &ok, 2000);
    tg_health_probed(ps, &bad, 3000);
    assert_int_equal(tg_state_evaluate(st, 3000), 0);

    tg_health_probed(ps, &bad, 4000);
    assert_int_equal(tg_state_evaluate(st, 4000), 1);
    assert_int_equal(ps->health, TG_HEALTH_DOWN);
    assert_string_equal(ps->why, "2 probes failed: Timeout was reached");
    assert_true(tg_health_unavailable(ps));

    /* up_after 2: one good probe is not enough */

    tg_health_probed(ps, &ok, 5000);
    assert_int_equal(tg_state_evaluate(st, 5000), 0);
    tg_health_probed(ps, &ok, 6000);
    assert_int_equal(tg_state_evaluate(st, 6000), 1);
    assert_int_equal(ps->health, TG_HEALTH_UP);
    assert_int_equal(ps->health_since_ms, 6000);

    /* the server says its slots are full: busy */

    ok.busy = true;
    tg_health_probed(ps, &ok, 7000);
    assert_int_equal(tg_state_evaluate(st, 7000), 1);
    assert_int_equal(ps->health, TG_HEALTH_BUSY);
    assert_true(tg_health_at_capacity(ps));
    assert_false(tg_health_unavailable(ps));

    tg_state_free(st);
    tg_policy_free(p);
}


static void
test_passive_and_stuck(void **unused)
{
    uint32_t    lease;
    tg_state   *st;
    tg_policy  *p;
    tg_pstate  *ps;

    (void) unused;

    p = health_policy();
    st = tg_state_new();
    assert_int_equal(tg_state_bind(st, p), 0);

    ps = tg_state_find(st, "llama");

    /* failures in a row, then down until the cooldown ends */

    tg_health_reported(ps, TG_OUTCOME_CONNECT_ERROR, 502, 0, 1, 100);
    tg_health_reported(ps, TG_OUTCOME_OK, 200, 20, 1, 200);
    tg_health_reported(ps, TG_OUTCOME_TIMEOUT, 504, 0, 1, 300);
    assert_int_equal(tg_state_evaluate(st, 300), 0);

    tg_health_reported(ps, TG_OUTCOME_SERVER_ERROR, 500, 40, 1, 400);
    assert_int_equal(tg_state_evaluate(st, 400), 1);
    assert_int_equal(ps->health, TG_HEALTH_DOWN);
    assert_string_equal(ps->why, "2 requests failed in a row; tried again "
                        "in 1000 ms");

    /* the cooldown passes: a request may try; a failure: down again */

    assert_int_equal(tg_state_evaluate(st, 1400), 1);
    assert_int_equal(ps->health, TG_HEALTH_UP);

    tg_health_reported(ps, TG_OUTCOME_TIMEOUT, 504, 0, 1, 1500);
    assert_int_equal(tg_state_evaluate(st, 1500), 1);
    assert_int_equal(ps->health, TG_HEALTH_DOWN);
    assert_int_equal(ps->down_until_ms, 2500);

    /*
     * A 429 is neither a failure nor a success: it does not end a run of
     * failures (nor the down it led to), and is not one either.
     */

    tg_health_reported(ps, TG_OUTCOME_RATE_LIMITED, 429, 5, 1, 1600);
    assert_int_equal(ps->fail_run, 3);
    assert_true(ps->passive_down);
    assert_int_equal(tg_state_evaluate(st, 1600), 0);
    assert_int_equal(ps->health, TG_HEALTH_DOWN);

    /* a success ends it; 429 and 4xx are not the provider failing */

    tg_health_reported(ps, TG_OUTCOME_OK, 200, 30, 1, 2600);
    tg_health_reported(ps, TG_OUTCOME_RATE_LIMITED, 429, 5, 1, 2700);
    tg_health_reported(ps, TG_OUTCOME_CLIENT_ERROR, 400, 5, 1, 2800);
    tg_health_reported(ps, TG_OUTCOME_RATE_LIMITED, 429, 5, 1, 2900);
    assert_int_equal(tg_state_evaluate(st, 2900), 1);
    assert_int_equal(ps->health, TG_HEALTH_UP);

    /* what was seen: counts, recent errors (newest last here), latency */

    assert_int_equal(ps->reports[TG_OUTCOME_TIMEOUT], 2);
    assert_int_equal(ps->reports[TG_OUTCOME_RATE_LIMITED], 3);
    assert_int_equal(ps->nerrors, 7);
    assert_int_equal(ps->errors[(ps->error_pos + TG_RECENT_ERRORS - 1)
                                % TG_RECENT_ERRORS].outcome,
                     TG_OUTCOME_RATE_LIMITED);
    assert_int_equal(tg_health_latency(ps, 50), 5);
    assert_int_equal(tg_health_latency(ps, 100), 40);

    /* a lease held past stuck_after_ms: stuck, and passed over */

    assert_int_equal(tg_state_lease_acquire(st, 0, 1, 10000, &lease), 0);
    assert_int_equal(tg_state_evaluate(st, 14999), 0);
    assert_int_equal(tg_state_evaluate(st, 15000), 1);
    assert_int_equal(ps->health, TG_HEALTH_STUCK);
    assert_true(tg_health_unavailable(ps));
    assert_int_equal(ps->oldest_lease_ms, 5000);

    assert_int_equal(tg_state_lease_release(st, lease), 1);
    assert_int_equal(tg_state_evaluate(st, 15100), 1);
    assert_int_equal(ps->health, TG_HEALTH_UP);

    /* at max_concurrency: at capacity, but no state of its own */

    assert_int_equal(tg_state_lease_acquire(st, 0, 1, 16000, &lease), 0);
    assert_int_equal(tg_state_lease_acquire(st, 0, 1, 16000, &lease), 0);
    assert_true(tg_health_at_capacity(ps));
    assert_int_equal(tg_state_evaluate(st, 16000), 0);
    assert_int_equal(ps->health, TG_HEALTH_UP);

    /* a counted REPORT of plain successes: latency per request */

    ps = tg_state_find(st, "ext");
    tg_health_reported(ps, TG_OUTCOME_OK, 0, 1000, 10, 17000);
    assert_int_equal(ps->reports[TG_OUTCOME_OK], 10);
    assert_int_equal(tg_health_latency(ps, 50), 100);

    tg_state_free(st);
    tg_policy_free(p);
}


/*
 * A probe that finds the slots full of our own requests says nothing new;
 * more running there than we sent is someone else, and that is busy.
 */

static void
test_probe_busy_with_own_leases(void **unused)
{
    uint32_t          lease;
    tg_state         *st;
    tg_policy        *p;
    tg_pstate        *ps;
    tg_probe_result   full;

    (void) unused;

    p = health_policy();
    st = tg_state_new();
    assert_int_equal(tg_state_bind(st, p), 0);

    ps = tg_state_find(st, "llama");

    full = fresh();
    full.ok = true;
    full.busy = true;
    full.slots_total = 2;
    full.slots_busy = 2;

    /* our two leases fill both slots: not busy, and free when they end */

    assert_int_equal(tg_state_lease_acquire(st, 0, 1, 1000, &lease), 0);
    assert_int_equal(tg_state_lease_acquire(st, 0, 1, 1000, &lease), 0);
    tg_health_probed(ps, &full, 1100);
    assert_int_equal(tg_state_evaluate(st, 1100), 0);
    assert_int_equal(ps->health, TG_HEALTH_UP);

    assert_int_equal(tg_state_lease_release(st, lease), 1);
    assert_false(tg_health_at_capacity(ps));

    /* one of ours, two running: someone else uses the server too */

    tg_health_probed(ps, &full, 1200);
    assert_int_equal(tg_state_evaluate(st, 1200), 1);
    assert_int_equal(ps->health, TG_HEALTH_BUSY);

    /* none of ours: a full server is busy, whatever its counts say */

    assert_int_equal(tg_state_release_owner(st, 1), 1);
    full.slots_busy = 1;
    tg_health_probed(ps, &full, 1300);
    assert_int_equal(tg_state_evaluate(st, 1300), 0);
    assert_int_equal(ps->health, TG_HEALTH_BUSY);

    tg_state_free(st);
    tg_policy_free(p);
}


/* a lease whose REPORT never came ends after lease_ttl_ms */

static void
test_lease_expires(void **unused)
{
    uint32_t    lease;
    tg_state   *st;
    tg_policy  *p;
    tg_pstate  *ps;

    (void) unused;

    p = tg_test_policy("{ 'listen': { 'path': '/x' }, 'providers': {"
        "  'llama': { 'upstream': 'u1', 'zone': 'local', 'endpoints': ['chat'],"
        "    'max_concurrency': 1,"
        "    'health': { 'lease_ttl_ms': 60000 } } },"
        "  'routes': { 'r': { 'steps': [ { 'provider': 'llama',"
        "                                  'model': 'm' } ] } }"
        "}");
    st = tg_state_new();
    assert_int_equal(tg_state_bind(st, p), 0);

    ps = tg_state_find(st, "llama");
    assert_int_equal(ps->conf.lease_ttl_ms, 60000);

    assert_int_equal(tg_state_lease_acquire(st, 0, 1, 1000, &lease), 0);
    assert_true(tg_health_at_capacity(ps));

    (void) tg_state_evaluate(st, 60999);
    assert_int_equal(ps->in_flight, 1);
    assert_int_equal(st->leases_expired, 0);

    (void) tg_state_evaluate(st, 61000);
    assert_int_equal(ps->in_flight, 0);
    assert_int_equal(st->nleases, 0);
    assert_int_equal(st->leases_expired, 1);
    assert_false(tg_health_at_capacity(ps));

    /* its late REPORT finds nothing to end */

    assert_int_equal(tg_state_lease_release(st, lease), 0);

    tg_state_free(st);
    tg_policy_free(p);
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_probe_kinds),
        cmocka_unit_test(test_probe_states),
        cmocka_unit_test(test_passive_and_stuck),
        cmocka_unit_test(test_probe_busy_with_own_leases),
        cmocka_unit_test(test_lease_expires),
    };

    return cmocka_run_group_tests_name("health", tests, NULL, NULL);
}
