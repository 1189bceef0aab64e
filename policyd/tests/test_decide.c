/*
 * The decision function: every row of the "Decisions" table in
 * docs/policy.md, reasons, paths, zones, exclusions, state, allowlists;
 * the listing of models is test_models.c's.
 */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tailgate_protocol.h"
#include "tg_decide_test.h"


/* a step is chosen: every field of the decision */

static void
test_first_step_chosen(void **state)
{
    tg_fixture   *fx = *state;
    tg_facts      f = F("smart", TG_EP_CHAT);
    tg_decision   d;

    tg_decide(fx->policy, &f, fx->state, &d);

    assert_chosen(&d, "deepseek", "/chat/completions", "ds-chat",
                  "deepseek:chosen");
    assert_string_equal(d.route->name, "smart");
    assert_ptr_equal(d.step, &d.route->steps[0]);
    assert_string_equal(d.upstream, "tg_deepseek");
    assert_string_equal(d.scheme, "https");
    assert_string_equal(d.host, "api.deepseek.com");
    assert_string_equal(d.authorization, "Bearer sk-deep");
    assert_string_equal(d.zone, "external");

    /* a provider without a key: empty authorization, defaults */
    f = F("qwen", TG_EP_CHAT);
    tg_decide(fx->policy, &f, fx->state, &d);

    assert_chosen(&d, "local", "/v1/chat/completions", "qwen",
                  "local:chosen");
    assert_string_equal(d.authorization, "");
    assert_string_equal(d.scheme, "http");
    assert_string_equal(d.host, "tg_local");
    assert_string_equal(d.upstream, "tg_local");
    assert_string_equal(d.zone, "local");

    /* no state at all behaves as "everything up and idle" */
    f = F("smart", TG_EP_CHAT);
    tg_decide(fx->policy, &f, NULL, &d);
    assert_chosen(&d, "deepseek", "/chat/completions", "ds-chat",
                  "deepseek:chosen");
}


static void
test_paths(void **state)
{
    int                 i;
    tg_fixture         *fx = *state;
    tg_facts            f;
    tg_decision         d;
    static const char  *paths[TG_EP_COUNT] = {
        "/v1/chat/completions", "/v1/embeddings", "/v1/audio/speech",
        "/v1/audio/transcriptions", "/v1/responses"
    };

    for (i = 0; i < TG_EP_COUNT; i++) {
        f = F("qwen", (tg_endpoint) i);
        tg_decide(fx->policy, &f, fx->state, &d);
        assert_chosen(&d, "local", paths[i], "qwen", "local:chosen");
    }

    f = F("cloud", TG_EP_RESPONSES);
    tg_decide(fx->policy, &f, fx->state, &d);
    assert_chosen(&d, "openrouter", "/api/v1/responses", "or-x",
                  "deepseek:endpoint openrouter:chosen");
    assert_string_equal(d.authorization, "Bearer sk-or");
    assert_string_equal(d.host, "openrouter.ai");

    f = F("embed", TG_EP_EMBEDDINGS);
    f.tags = tg_private;
    f.ntags = 2;
    tg_decide(fx->policy, &f, fx->state, &d);
    assert_chosen(&d, "lan", "/openai/v1/embeddings", "nomic-lan",
                  "deepseek:endpoint openrouter:zone lan:chosen");
    assert_string_equal(d.zone, "private");
}


/*
 * Responses on a chat provider: by default where it serves chat but not
 * responses, always with translate_responses true, never with false; the
 * path is the chat endpoint's, and a stream's usage is asked for.
 */

static void
test_translate(void **unused)
{
    tg_policy    *p;
    tg_facts      f;
    tg_decision   d;

    (void) unused;

    p = tg_test_policy(
        "{ 'listen': { 'path': '/tmp/tg-decide.sock' },"
        "  'providers': {"
        "    'chatonly': { 'upstream': 'u1', 'zone': 'local',"
        "      'endpoints': ['chat'] },"
        "    'both': { 'upstream': 'u2', 'zone': 'local',"
        "      'endpoints': ['chat', 'responses'] },"
        "    'forced': { 'upstream': 'u3', 'zone': 'local', 'base_path': '',"
        "      'endpoints': ['chat', 'responses'],"
        "      'translate_responses': true },"
        "    'never': { 'upstream': 'u4', 'zone': 'local',"
        "      'endpoints': ['chat'], 'translate_responses': false },"
        "    'passive': { 'upstream': 'u5', 'zone': 'local',"
        "      'endpoints': ['chat'], 'usage': 'passive' },"
        "    'embed': { 'upstream': 'u6', 'zone': 'local',"
        "      'endpoints': ['embeddings'] } },"
        "  'routes': {"
        "    'a': { 'steps': [ { 'provider': 'chatonly', 'model': 'm' } ] },"
        "    'b': { 'steps': [ { 'provider': 'both', 'model': 'm' } ] },"
        "    'c': { 'steps': [ { 'provider': 'forced', 'model': 'm' } ] },"
        "    'd': { 'steps': [ { 'provider': 'never', 'model': 'm' } ] },"
        "    'e': { 'steps': [ { 'provider': 'never', 'model': 'm' },"
        "                      { 'provider': 'chatonly', 'model': 'm2' } ] },"
        "    'f': { 'steps': [ { 'provider': 'passive', 'model': 'm' } ] },"
        "    'g': { 'steps': [ { 'provider': 'embed', 'model': 'm' } ] } } }");

    f = F("a", TG_EP_RESPONSES);
    tg_decide(p, &f, NULL, &d);
    assert_chosen(&d, "chatonly", "/v1/chat/completions", "m",
                  "chatonly:chosen");
    assert_true(d.translate);
    assert_false(d.stream_usage);

    f.stream = true;
    tg_decide(p, &f, NULL, &d);
    assert_true(d.translate);
    assert_true(d.stream_usage);

    /* its chat requests are chat requests */
    f = F("a", TG_EP_CHAT);
    tg_decide(p, &f, NULL, &d);
    assert_chosen(&d, "chatonly", "/v1/chat/completions", "m",
                  "chatonly:chosen");
    assert_false(d.translate);

    /* a provider of both gets its own Responses API */
    f = F("b", TG_EP_RESPONSES);
    tg_decide(p, &f, NULL, &d);
    assert_chosen(&d, "both", "/v1/responses", "m", "both:chosen");
    assert_false(d.translate);

    /* ... unless the policy says to translate */
    f = F("c", TG_EP_RESPONSES);
    tg_decide(p, &f, NULL, &d);
    assert_chosen(&d, "forced", "/chat/completions", "m", "forced:chosen");
    assert_true(d.translate);

    /* never: responses is not its endpoint, the step does not fit */
    f = F("d", TG_EP_RESPONSES);
    tg_decide(p, &f, NULL, &d);
    assert_int_equal(d.status, 404);
    assert_false(d.translate);

    f = F("e", TG_EP_RESPONSES);
    tg_decide(p, &f, NULL, &d);
    assert_chosen(&d, "chatonly", "/v1/chat/completions", "m2",
                  "never:endpoint chatonly:chosen");
    assert_true(d.translate);

    /* a passive provider is not asked for a stream's usage */
    f = F("f", TG_EP_RESPONSES);
    f.stream = true;
    tg_decide(p, &f, NULL, &d);
    assert_true(d.translate);
    assert_false(d.stream_usage);

    /* no chat, nothing to translate to */
    f = F("g", TG_EP_RESPONSES);
    tg_decide(p, &f, NULL, &d);
    assert_int_equal(d.status, 404);

    tg_policy_free(p);
}


/* 404: no route has that name, or the client may not use it */

static void
test_unknown_route(void **state)
{
    tg_fixture   *fx = *state;
    tg_facts      f = F("gpt-4o", TG_EP_CHAT);
    tg_decision   d;
    tg_str        allow[] = { { "qwen", 4 }, { "cloud", 5 } };

    tg_decide(fx->policy, &f, fx->state, &d);
    assert_refused(&d, 404, "invalid_request_error", "model_not_found",
                   "No matching route found");
    assert_null(d.route);
    assert_string_equal(d.reason, "");

    /* prefixes and the empty name do not match */
    f = F("smar", TG_EP_CHAT);
    tg_decide(fx->policy, &f, fx->state, &d);
    assert_int_equal(d.status, 404);

    f = F("", TG_EP_CHAT);
    tg_decide(fx->policy, &f, fx->state, &d);
    assert_int_equal(d.status, 404);

    /* not in the allowlist: the same answer, nothing leaks */
    f = F("smart", TG_EP_CHAT);
    f.allow = allow;
    f.nallow = 2;
    tg_decide(fx->policy, &f, fx->state, &d);
    assert_refused(&d, 404, "invalid_request_error", "model_not_found",
                   "No matching route found");
    assert_null(d.route);

    /* in the allowlist */
    f = F("cloud", TG_EP_CHAT);
    f.allow = allow;
    f.nallow = 2;
    tg_decide(fx->policy, &f, fx->state, &d);
    assert_chosen(&d, "deepseek", "/chat/completions", "ds-chat",
                  "deepseek:chosen");
}


/* 404: the route has no step for this endpoint */

static void
test_endpoint_not_served(void **state)
{
    tg_fixture   *fx = *state;
    tg_facts      f = F("cloud", TG_EP_SPEECH);
    tg_decision   d;

    tg_decide(fx->policy, &f, fx->state, &d);
    assert_refused(&d, 404, "invalid_request_error", "model_not_found",
                   "Route 'cloud' does not serve /v1/audio/speech");
    assert_string_equal(d.route->name, "cloud");

    f = F("mixed", TG_EP_TRANSCRIPTIONS);
    tg_decide(fx->policy, &f, fx->state, &d);
    assert_refused(&d, 404, "invalid_request_error", "model_not_found",
                   "Route 'mixed' does not serve /v1/audio/transcriptions");

    /* even when also private: the endpoint is checked first */
    f = F("cloud", TG_EP_SPEECH);
    f.tags = tg_private;
    f.ntags = 2;
    tg_decide(fx->policy, &f, fx->state, &d);
    assert_refused(&d, 404, "invalid_request_error", "model_not_found",
                   "Route 'cloud' does not serve /v1/audio/speech");

    /* an endpoint policyd does not know */
    f = F("qwen", TG_EP_NONE);
    tg_decide(fx->policy, &f, fx->state, &d);
    assert_refused(&d, 404, "invalid_request_error", "model_not_found",
                   "Route 'qwen' does not serve this endpoint");
}


/* 403: private and the route has no local/private step (for it) */

static void
test_private(void **state)
{
    tg_fixture   *fx = *state;
    tg_facts      f;
    tg_decision   d;
    tg_str        other[] = { { "team:x", 6 }, { "Private", 7 },
                              { "private ", 8 } };

    f = F("smart", TG_EP_CHAT);
    f.tags = tg_private;
    f.ntags = 2;
    tg_decide(fx->policy, &f, fx->state, &d);
    assert_chosen(&d, "local", "/v1/chat/completions", "qwen",
                  "deepseek:zone local:chosen");
    assert_string_equal(d.zone, "local");

    f = F("cloud", TG_EP_CHAT);
    f.tags = tg_private;
    f.ntags = 2;
    tg_decide(fx->policy, &f, fx->state, &d);
    assert_refused(&d, 403, "permission_error", "privacy_restricted",
                   "Route 'cloud' has no provider allowed for private "
                   "requests");
    assert_string_equal(d.route->name, "cloud");

    /* a local step that does not serve the endpoint does not count */
    f = F("mixed", TG_EP_EMBEDDINGS);
    f.tags = tg_private;
    f.ntags = 2;
    tg_decide(fx->policy, &f, fx->state, &d);
    assert_refused(&d, 403, "permission_error", "privacy_restricted",
                   "Route 'mixed' has no provider allowed for private "
                   "requests");

    f = F("mixed", TG_EP_CHAT);
    f.tags = tg_private;
    f.ntags = 2;
    tg_decide(fx->policy, &f, fx->state, &d);
    assert_chosen(&d, "localchat", "/v1/chat/completions", "small",
                  "openrouter:zone localchat:chosen");

    /* only the exact tag "private" restricts */
    f = F("cloud", TG_EP_CHAT);
    f.tags = other;
    f.ntags = 3;
    tg_decide(fx->policy, &f, fx->state, &d);
    assert_chosen(&d, "deepseek", "/chat/completions", "ds-chat",
                  "deepseek:chosen");
}


/* 503: every step that could serve it is excluded (or down, or busy) */

static void
test_excluded(void **state)
{
    tg_fixture   *fx = *state;
    tg_facts      f;
    tg_decision   d;
    tg_str        one[] = { { "deepseek", 8 } };
    tg_str        both[] = { { "local", 5 }, { "deepseek", 8 } };
    tg_str        unrelated[] = { { "deep", 4 }, { "openrouter", 10 } };

    f = F("smart", TG_EP_CHAT);
    f.exclude = one;
    f.nexclude = 1;
    f.attempt = 2;
    tg_decide(fx->policy, &f, fx->state, &d);
    assert_chosen(&d, "local", "/v1/chat/completions", "qwen",
                  "deepseek:excluded local:chosen");

    f.exclude = both;
    f.nexclude = 2;
    tg_decide(fx->policy, &f, fx->state, &d);
    assert_refused(&d, 503, "server_error", "no_provider_available",
                   "No provider is available for route 'smart'; try again "
                   "later");
    assert_string_equal(d.reason, "deepseek:excluded local:excluded");
    assert_string_equal(d.route->name, "smart");

    /* past the route's attempts: refused before any step is looked at */
    f.attempt = 3;
    tg_decide(fx->policy, &f, fx->state, &d);
    assert_refused(&d, 503, "server_error", "no_provider_available",
                   "Route 'smart' allows no further attempt");
    assert_string_equal(d.reason, "");

    /* a route without fallback has one attempt */
    f = F("cloud", TG_EP_CHAT);
    f.exclude = one;
    f.nexclude = 1;
    f.attempt = 2;
    tg_decide(fx->policy, &f, fx->state, &d);
    assert_refused(&d, 503, "server_error", "no_provider_available",
                   "Route 'cloud' allows no further attempt");

    f = F("smart", TG_EP_CHAT);
    f.exclude = unrelated;
    f.nexclude = 2;
    f.attempt = 2;
    tg_decide(fx->policy, &f, fx->state, &d);
    assert_chosen(&d, "deepseek", "/chat/completions", "ds-chat",
                  "deepseek:chosen");

    /* private: the external step is skipped for its zone first */
    f = F("smart", TG_EP_CHAT);
    f.tags = tg_private;
    f.ntags = 2;
    f.exclude = both;
    f.nexclude = 2;
    tg_decide(fx->policy, &f, fx->state, &d);
    assert_int_equal(d.status, 503);
    assert_string_equal(d.reason, "deepseek:zone local:excluded");
}


static void
test_down_and_busy(void **state)
{
    uint32_t      lease;
    tg_fixture   *fx = *state;
    tg_facts      f;
    tg_pstate    *ps;
    tg_decision   d;
    tg_provider  *local;

    ps = tg_state_find(fx->state, "deepseek");
    assert_non_null(ps);
    ps->health = TG_HEALTH_DOWN;

    f = F("smart", TG_EP_CHAT);
    tg_decide(fx->policy, &f, fx->state, &d);
    assert_chosen(&d, "local", "/v1/chat/completions", "qwen",
                  "deepseek:down local:chosen");

    /* local at its limit */
    local = (tg_provider *) tg_policy_provider(fx->policy, "local", 5);
    local->max_concurrency = 1;
    assert_int_equal(tg_state_bind(fx->state, fx->policy), 0);
    assert_int_equal(tg_state_lease_acquire(fx->state, local->index, 7, 0,
                                            &lease), 0);
    assert_int_not_equal(lease, 0);

    tg_decide(fx->policy, &f, fx->state, &d);
    assert_refused(&d, 503, "server_error", "no_provider_available",
                   "No provider is available for route 'smart'; try again "
                   "later");
    assert_string_equal(d.reason, "deepseek:down local:busy");

    /* a released lease frees the slot */
    assert_int_equal(tg_state_lease_release(fx->state, lease), 1);
    tg_decide(fx->policy, &f, fx->state, &d);
    assert_chosen(&d, "local", "/v1/chat/completions", "qwen",
                  "deepseek:down local:chosen");

    ps->health = TG_HEALTH_UP;
    tg_decide(fx->policy, &f, fx->state, &d);
    assert_chosen(&d, "deepseek", "/chat/completions", "ds-chat",
                  "deepseek:chosen");
}


/* a slot that just came free is for the oldest waiter, not a newcomer */

static void
test_queue_goes_first(void **unused)
{
    tg_facts     f;
    tg_state    *st;
    tg_policy   *p;
    tg_pstate   *ps;
    tg_decision  d;

    (void) unused;

    p = tg_test_policy("{ 'listen': { 'path': '/x' }, 'providers': {"
        "  'llama': { 'upstream': 'u1', 'zone': 'local', 'endpoints': ['chat'],"
        "    'max_concurrency': 1 } },"
        "  'routes': { 'line': { 'steps': [ { 'provider': 'llama',"
        "                                     'model': 'm' } ],"
        "                        'queue': { 'max_length': 2 } },"
        "              'now': { 'steps': [ { 'provider': 'llama',"
        "                                    'model': 'm' } ] } } }");
    st = tg_state_new();
    assert_int_equal(tg_state_bind(st, p), 0);

    ps = tg_state_find(st, "llama");
    ps->queued = 1;

    /* free, but one waits: the newcomer queues behind it, or is refused */

    f = F("line", TG_EP_CHAT);
    tg_decide(p, &f, st, &d);
    assert_int_equal(d.status, TG_DECISION_QUEUE);

    f = F("now", TG_EP_CHAT);
    tg_decide(p, &f, st, &d);
    assert_int_equal(d.status, 429);
    assert_string_equal(d.error_code, "provider_busy");
    assert_string_equal(d.reason, "llama:busy");

    /* the waiter itself, decided again from the line, gets the slot */

    f = F("line", TG_EP_CHAT);
    f.in_queue = true;
    tg_decide(p, &f, st, &d);
    assert_int_equal(d.status, 200);
    assert_string_equal(d.provider->name, "llama");

    tg_state_free(st);
    tg_policy_free(p);
}


/* a reason's words, and read back: explain reads them so */

static void
test_reason_words(void **unused)
{
    int  r;

    (void) unused;

    for (r = 0; r < TG_REASON_COUNT; r++) {
        assert_int_equal(tg_reason_parse(tg_reason_word((tg_reason) r),
                                         strlen(tg_reason_word((tg_reason) r))),
                         r);
    }

    assert_string_equal(tg_reason_word(TG_REASON_QUEUED), "queued");
    assert_string_equal(tg_reason_word(TG_REASON_COUNT), "unknown");
    assert_int_equal(tg_reason_parse("chose", 5), TG_REASON_COUNT);
    assert_int_equal(tg_reason_parse("", 0), TG_REASON_COUNT);
}


static void
test_reason_truncated(void **unused)
{
    int           i;
    char         *text;
    size_t        len, cap;
    tg_facts      f;
    tg_policy    *p;
    tg_decision   d;

    (void) unused;

    cap = 256 * 1024;
    text = malloc(cap);
    assert_non_null(text);

    len = (size_t) snprintf(text, cap, "{ 'listen': { 'path': '/x' },"
        "'providers': { "
        "'a-provider-with-a-rather-long-name-for-the-reason-text': {"
        "'upstream': 'u', 'zone': 'external', 'endpoints': ['chat'] } },"
        "'routes': { 'long': { 'steps': [");

    for (i = 0; i < 100; i++) {
        len += (size_t) snprintf(text + len, cap - len,
            "%s{ 'provider': "
            "'a-provider-with-a-rather-long-name-for-the-reason-text', "
            "'model': 'm' }", i ? "," : "");
    }

    snprintf(text + len, cap - len, "] } } }");

    p = tg_test_policy(text);
    free(text);

    f = F("long", TG_EP_CHAT);
    f.tags = tg_private;
    f.ntags = 2;
    tg_decide(p, &f, NULL, &d);

    assert_int_equal(d.status, 403);

    f.ntags = 0;
    f.exclude = (tg_str[]) {
        S("a-provider-with-a-rather-long-name-for-the-reason-text") };
    f.nexclude = 1;
    tg_decide(p, &f, NULL, &d);

    assert_int_equal(d.status, 503);
    len = strlen(d.reason);
    assert_true(len < TG_REASON_MAX);
    assert_true(len > TG_REASON_MAX - 100);
    assert_string_equal(d.reason + len - 3, "...");
    assert_memory_equal(d.reason, "a-provider-with-a-rather-long-name-for-"
                        "the-reason-text:excluded a-provider", 70);

    tg_policy_free(p);
}


/* tenants: a route of one tenant does not exist for any other */

static void
test_tenants(void **unused)
{
    long          n;
    char          buf[4096];
    tg_facts      f = F("acme-only", TG_EP_CHAT);
    tg_policy    *p;
    tg_decision   d;

    (void) unused;

    p = tg_test_policy("{ 'listen': { 'path': '/x' },"
        "'providers': { 'l': { 'upstream': 'u', 'zone': 'local',"
        "                      'endpoints': ['chat'] } },"
        "'routes': {"
        "  'acme-only': { 'tenants': ['acme'],"
        "                 'steps': [ { 'provider': 'l', 'model': 'm' } ] },"
        "  'shared': { 'steps': [ { 'provider': 'l', 'model': 'm' } ] } } }");

    f.tenant = S("acme");
    tg_decide(p, &f, NULL, &d);
    assert_int_equal(d.status, 200);

    f.tenant = S("globex");
    tg_decide(p, &f, NULL, &d);
    assert_int_equal(d.status, 404);
    assert_string_equal(d.error_code, "model_not_found");

    f.tenant = (tg_str) { NULL, 0 };
    tg_decide(p, &f, NULL, &d);
    assert_int_equal(d.status, 404);

    /* the model list of another tenant does not name it */
    f = F("", TG_EP_NONE);
    f.tenant = S("globex");
    n = tg_models_json(p, &f, buf, sizeof(buf));
    assert_true(n > 0);
    assert_null(strstr(buf, "acme-only"));
    assert_non_null(strstr(buf, "\"shared\""));

    f.tenant = S("acme");
    n = tg_models_json(p, &f, buf, sizeof(buf));
    assert_non_null(strstr(buf, "\"acme-only\""));

    f = F("acme-only", TG_EP_NONE);
    f.tenant = S("globex");
    assert_int_equal(tg_models_json(p, &f, buf, sizeof(buf)),
                     TG_MODELS_NOT_FOUND);

    tg_policy_free(p);
}


/* a route that does not fall back fails where its first fitting step can't */

static void
test_never_falls_back(void **state)
{
    uint32_t      lease;
    tg_fixture   *fx = *state;
    tg_facts      f;
    tg_pstate    *ps;
    tg_decision   d;
    tg_provider  *pr;

    /* "cloud": deepseek, openrouter; no fallback */
    ps = tg_state_find(fx->state, "deepseek");
    ps->health = TG_HEALTH_DOWN;

    f = F("cloud", TG_EP_CHAT);
    tg_decide(fx->policy, &f, fx->state, &d);
    assert_refused(&d, 503, "server_error", "provider_unavailable",
                   "The provider of route 'cloud' is unavailable; try again "
                   "later");
    assert_string_equal(d.reason, "deepseek:down");

    /* a step that does not fit is passed over all the same: no fallback */
    f = F("cloud", TG_EP_RESPONSES);
    tg_decide(fx->policy, &f, fx->state, &d);
    assert_chosen(&d, "openrouter", "/api/v1/responses", "or-x",
                  "deepseek:endpoint openrouter:chosen");
    assert_int_equal(d.fallback, 0);
    ps->health = TG_HEALTH_UP;

    /* at capacity: 429, come back in a second */
    pr = (tg_provider *) tg_policy_provider(fx->policy, "deepseek", 8);
    pr->max_concurrency = 1;
    assert_int_equal(tg_state_bind(fx->state, fx->policy), 0);
    assert_int_equal(tg_state_lease_acquire(fx->state, pr->index, 7, 0,
                                            &lease), 0);

    f = F("cloud", TG_EP_CHAT);
    tg_decide(fx->policy, &f, fx->state, &d);
    assert_int_equal(d.status, 429);
    assert_string_equal(d.error_type, "rate_limit_error");
    assert_string_equal(d.error_code, "provider_busy");
    assert_int_equal(d.retry_after, 1);
    assert_string_equal(d.reason, "deepseek:busy");

    /* "smart" falls back on busy */
    tg_decide(fx->policy, &(tg_facts) { .model = S("smart"),
                                        .endpoint = TG_EP_CHAT }, fx->state,
              &d);
    assert_chosen(&d, "local", "/v1/chat/completions", "qwen",
                  "deepseek:busy local:chosen");

    /* not reused: deepseek may have room for the next one */
    assert_int_equal(d.cache_ms, 0);
}


/* which failures the module may retry, and when it is not worth asking */

static void
test_fallback_mask(void **unused)
{
    tg_facts      f;
    tg_policy    *p;
    tg_decision   d;
    tg_state     *st;
    tg_pstate    *ps;

    (void) unused;

    p = tg_test_policy("{ 'listen': { 'path': '/x' },"
        "'providers': {"
        "  'a': { 'upstream': 'ua', 'zone': 'local', 'endpoints': ['chat'] },"
        "  'b': { 'upstream': 'ub', 'zone': 'private',"
        "         'endpoints': ['chat'] },"
        "  'c': { 'upstream': 'uc', 'zone': 'external',"
        "         'endpoints': ['chat', 'embeddings'] } },"
        "'routes': {"
        "  'three': { 'steps': [ { 'provider': 'a', 'model': 'm' },"
        "                        { 'provider': 'b', 'model': 'm' },"
        "                        { 'provider': 'c', 'model': 'm' } ],"
        "             'fallback': { 'on': 'errors' } },"
        "  'two-of-three': { 'steps': [ { 'provider': 'a', 'model': 'm' },"
        "                        { 'provider': 'b', 'model': 'm' },"
        "                        { 'provider': 'c', 'model': 'm' } ],"
        "             'fallback': { 'on': 'both', 'max_attempts': 2,"
        "                           'outcomes': ['5xx', 'timeout'] } },"
        "  'busy-only': { 'steps': [ { 'provider': 'a', 'model': 'm' },"
        "                        { 'provider': 'c', 'model': 'm' } ],"
        "             'fallback': { 'on': 'busy' } },"
        "  'ext-last': { 'steps': [ { 'provider': 'a', 'model': 'm' },"
        "                        { 'provider': 'c', 'model': 'm' } ],"
        "             'fallback': { 'on': 'errors' } } } }");

    st = tg_state_new();
    assert_int_equal(tg_state_bind(st, p), 0);

    f = F("three", TG_EP_CHAT);
    tg_decide(p, &f, st, &d);
    assert_chosen(&d, "a", "/v1/chat/completions", "m", "a:chosen");
    assert_int_equal(d.fallback, TG_FALLBACK_CONNECT_ERROR
                     | TG_FALLBACK_TIMEOUT | TG_FALLBACK_5XX
                     | TG_FALLBACK_429);
    assert_int_equal(d.route->max_attempts, 3);

    f.attempt = 2;
    f.exclude = (tg_str[]) { S("a") };
    f.nexclude = 1;
    tg_decide(p, &f, st, &d);
    assert_chosen(&d, "b", "/v1/chat/completions", "m",
                  "a:excluded b:chosen");
    assert_int_not_equal(d.fallback, 0);

    f.attempt = 3;
    f.exclude = (tg_str[]) { S("a"), S("b") };
    f.nexclude = 2;
    tg_decide(p, &f, st, &d);
    assert_chosen(&d, "c", "/v1/chat/completions", "m",
                  "a:excluded b:excluded c:chosen");
    assert_int_equal(d.fallback, 0);

    /* the outcomes named, and no more attempts than allowed */
    f = F("two-of-three", TG_EP_CHAT);
    tg_decide(p, &f, st, &d);
    assert_int_equal(d.fallback, TG_FALLBACK_5XX | TG_FALLBACK_TIMEOUT);

    f.attempt = 2;
    f.exclude = (tg_str[]) { S("a") };
    f.nexclude = 1;
    tg_decide(p, &f, st, &d);
    assert_chosen(&d, "b", "/v1/chat/completions", "m",
                  "a:excluded b:chosen");
    assert_int_equal(d.fallback, 0);

    /* busy only: failures are not retried */
    f = F("busy-only", TG_EP_CHAT);
    tg_decide(p, &f, st, &d);
    assert_int_equal(d.fallback, 0);
    assert_int_equal(d.route->max_attempts, 1);

    /* a private request has nowhere to go after a: nothing to retry */
    f = F("ext-last", TG_EP_CHAT);
    f.tags = tg_private;
    f.ntags = 2;
    tg_decide(p, &f, st, &d);
    assert_chosen(&d, "a", "/v1/chat/completions", "m", "a:chosen");
    assert_int_equal(d.fallback, 0);

    f.ntags = 0;
    tg_decide(p, &f, st, &d);
    assert_int_not_equal(d.fallback, 0);

    /* ... nor when the only later step is down */
    ps = tg_state_find(st, "c");
    ps->health = TG_HEALTH_DOWN;
    tg_decide(p, &f, st, &d);
    assert_int_equal(d.fallback, 0);

    tg_state_free(st);
    tg_policy_free(p);
}


/* region:X tags keep a request to providers in X */

static void
test_region(void **unused)
{
    tg_facts      f;
    tg_policy    *p;
    tg_decision   d;

    (void) unused;

    p = tg_test_policy("{ 'listen': { 'path': '/x' },"
        "'providers': {"
        "  'us': { 'upstream': 'u1', 'zone': 'external', 'region': 'us',"
        "          'endpoints': ['chat'] },"
        "  'anywhere': { 'upstream': 'u2', 'zone': 'external',"
        "          'endpoints': ['chat'] },"
        "  'eu': { 'upstream': 'u3', 'zone': 'external', 'region': 'eu',"
        "          'endpoints': ['chat'] } },"
        "'routes': {"
        "  'r': { 'steps': [ { 'provider': 'us', 'model': 'm' },"
        "                    { 'provider': 'anywhere', 'model': 'm' },"
        "                    { 'provider': 'eu', 'model': 'm' } ] },"
        "  'no-eu': { 'steps': [ { 'provider': 'us', 'model': 'm' },"
        "                    { 'provider': 'anywhere', 'model': 'm' } ] } } }");

    f = F("r", TG_EP_CHAT);
    tg_decide(p, &f, NULL, &d);
    assert_chosen(&d, "us", "/v1/chat/completions", "m", "us:chosen");

    f.tags = (tg_str[]) { S("region:eu") };
    f.ntags = 1;
    tg_decide(p, &f, NULL, &d);
    assert_chosen(&d, "eu", "/v1/chat/completions", "m",
                  "us:region anywhere:region eu:chosen");

    /* two regions: no provider is in both */
    f.tags = (tg_str[]) { S("region:eu"), S("region:us") };
    f.ntags = 2;
    tg_decide(p, &f, NULL, &d);
    assert_refused(&d, 403, "permission_error", "region_restricted",
                   "Route 'r' has no provider in the region this request "
                   "is restricted to");

    f = F("no-eu", TG_EP_CHAT);
    f.tags = (tg_str[]) { S("region:eu") };
    f.ntags = 1;
    tg_decide(p, &f, NULL, &d);
    assert_int_equal(d.status, 403);
    assert_string_equal(d.error_code, "region_restricted");
    assert_string_equal(d.reason, "us:region anywhere:region");

    /* "region:" must be a prefix; "region:EU" is another region */
    f.tags = (tg_str[]) { S("xregion:eu"), S("regions:eu") };
    f.ntags = 2;
    tg_decide(p, &f, NULL, &d);
    assert_chosen(&d, "us", "/v1/chat/completions", "m", "us:chosen");

    f = F("r", TG_EP_CHAT);
    f.tags = (tg_str[]) { S("region:EU") };
    f.ntags = 1;
    tg_decide(p, &f, NULL, &d);
    assert_int_equal(d.status, 403);

    tg_policy_free(p);
}


/* context size, tools and streaming: passed over, and cached with care */

static void
test_fit(void **unused)
{
    tg_facts      f;
    tg_policy    *p;
    tg_decision   d;

    (void) unused;

    p = tg_test_policy("{ 'listen': { 'path': '/x' },"
        "'providers': {"
        "  'small': { 'upstream': 'u1', 'zone': 'local',"
        "             'context_tokens': 1000, 'tools': false,"
        "             'endpoints': ['chat', 'transcriptions'] },"
        "  'nostream': { 'upstream': 'u2', 'zone': 'local',"
        "             'streaming': false, 'context_tokens': 8000,"
        "             'endpoints': ['chat'] },"
        "  'big': { 'upstream': 'u3', 'zone': 'external',"
        "           'context_tokens': 128000,"
        "           'endpoints': ['chat', 'transcriptions'] } },"
        "'routes': {"
        "  'r': { 'steps': [ { 'provider': 'small', 'model': 'm' },"
        "                    { 'provider': 'nostream', 'model': 'm' },"
        "                    { 'provider': 'big', 'model': 'm' } ] },"
        "  'local-only': { 'steps': [ { 'provider': 'small', 'model': 'm' },"
        "                    { 'provider': 'nostream', 'model': 'm' } ] },"
        "  'ns': { 'steps': [ { 'provider': 'nostream', 'model': 'm' } ] },"
        "  'bigfirst': { 'steps': [ { 'provider': 'big', 'model': 'm' },"
        "                    { 'provider': 'small', 'model': 'm' } ] } } }");

    f = F("r", TG_EP_CHAT);
    f.prompt_estimate = 1000;
    tg_decide(p, &f, NULL, &d);
    assert_chosen(&d, "small", "/v1/chat/completions", "m", "small:chosen");
    assert_int_equal(d.cache_ms, 1000);
    assert_int_equal(d.cache_max_bytes, 4003);

    f.prompt_estimate = 1001;
    tg_decide(p, &f, NULL, &d);
    assert_chosen(&d, "nostream", "/v1/chat/completions", "m",
                  "small:context nostream:chosen");
    assert_int_equal(d.cache_ms, 0);

    f.prompt_estimate = 100;
    f.tools = true;
    tg_decide(p, &f, NULL, &d);
    assert_chosen(&d, "nostream", "/v1/chat/completions", "m",
                  "small:tools nostream:chosen");
    assert_int_equal(d.cache_ms, 1000);

    f.stream = true;
    tg_decide(p, &f, NULL, &d);
    assert_chosen(&d, "big", "/v1/chat/completions", "m",
                  "small:tools nostream:streaming big:chosen");

    f.tools = false;
    f.prompt_estimate = 200000;
    tg_decide(p, &f, NULL, &d);
    assert_refused(&d, 400, "invalid_request_error",
                   "context_length_exceeded",
                   "The request (about 200000 tokens) is larger than any "
                   "provider of route 'r' accepts");

    f = F("local-only", TG_EP_CHAT);
    f.tools = true;
    f.stream = true;
    tg_decide(p, &f, NULL, &d);
    assert_refused(&d, 400, "invalid_request_error", "tools_not_supported",
                   "No provider of route 'local-only' supports tools");

    f.tools = false;
    f.prompt_estimate = 2000;
    tg_decide(p, &f, NULL, &d);
    assert_int_equal(d.status, 400);
    assert_string_equal(d.error_code, "context_length_exceeded");
    assert_string_equal(d.reason, "small:context nostream:streaming");

    f.prompt_estimate = 0;
    tg_decide(p, &f, NULL, &d);
    assert_chosen(&d, "small", "/v1/chat/completions", "m", "small:chosen");

    f = F("ns", TG_EP_CHAT);
    f.stream = true;
    tg_decide(p, &f, NULL, &d);
    assert_refused(&d, 400, "invalid_request_error", "stream_not_supported",
                   "No provider of route 'ns' supports streaming");

    /* a later step too small for this prompt: not reused for smaller ones */
    f = F("bigfirst", TG_EP_CHAT);
    f.prompt_estimate = 2000;
    tg_decide(p, &f, NULL, &d);
    assert_chosen(&d, "big", "/v1/chat/completions", "m", "big:chosen");
    assert_int_equal(d.cache_ms, 0);

    f.prompt_estimate = 500;
    tg_decide(p, &f, NULL, &d);
    assert_int_equal(d.cache_ms, 1000);
    assert_int_equal(d.cache_max_bytes, 4003);

    /* an upload is not a prompt: its size says nothing about context */
    f = F("r", TG_EP_TRANSCRIPTIONS);
    f.prompt_estimate = 5000000;
    tg_decide(p, &f, NULL, &d);
    assert_chosen(&d, "small", "/v1/audio/transcriptions", "m",
                  "small:chosen");
    assert_int_equal(d.cache_max_bytes, 0);

    tg_policy_free(p);
}


/* a step's request edits, by what the request has */

static void
test_adjust(void **unused)
{
    tg_facts      f;
    tg_policy    *p;
    tg_decision   d;

    (void) unused;

    p = tg_test_policy("{ 'listen': { 'path': '/x' },"
        "'providers': {"
        "  'l': { 'upstream': 'u1', 'zone': 'local',"
        "         'endpoints': ['chat', 'transcriptions'] },"
        "  'or': { 'upstream': 'u2', 'zone': 'external',"
        "          'endpoints': ['chat'] } },"
        "'routes': {"
        "  'r': { 'steps': [ { 'provider': 'l', 'model': 'm', 'adjust': ["
        "           { 'when': 'tools', 'drop': ['response_format'] },"
        "           { 'when': 'stream', 'set': {"
        "               'stream_options.include_usage': true } },"
        "           { 'drop': ['user'], 'set': { 'seed': 7 } } ] } ] },"
        "  'o': { 'steps': [ { 'provider': 'or', 'model': 'm', 'adjust': ["
        "           { 'drop': ['models', 'provider', 'route'] } ] } ] },"
        "  'plain': { 'steps': [ { 'provider': 'l', 'model': 'm' } ] } } }");

    f = F("r", TG_EP_CHAT);
    tg_decide(p, &f, NULL, &d);
    assert_string_equal(d.adjust, "drop user\nset seed 7\n");

    f.tools = true;
    tg_decide(p, &f, NULL, &d);
    assert_string_equal(d.adjust,
                        "drop response_format\ndrop user\nset seed 7\n");

    f.stream = true;
    tg_decide(p, &f, NULL, &d);
    assert_string_equal(d.adjust,
                        "drop response_format\n"
                        "set stream_options.include_usage true\n"
                        "drop user\nset seed 7\n");

    f.tools = false;
    tg_decide(p, &f, NULL, &d);
    assert_string_equal(d.adjust,
                        "set stream_options.include_usage true\n"
                        "drop user\nset seed 7\n");

    f = F("r", TG_EP_TRANSCRIPTIONS);
    tg_decide(p, &f, NULL, &d);
    assert_string_equal(d.adjust, "");

    f = F("o", TG_EP_CHAT);
    tg_decide(p, &f, NULL, &d);
    assert_string_equal(d.adjust, "drop models\ndrop provider\ndrop route\n"
                        "drop user\ndrop metadata\ndrop client_metadata\n"
                        "drop safety_identifier\n");

    f = F("plain", TG_EP_CHAT);
    tg_decide(p, &f, NULL, &d);
    assert_string_equal(d.adjust, "");

    tg_policy_free(p);
}


/* what external providers do not learn: headers and body fields */

static void
test_scrub(void **unused)
{
    tg_facts      f;
    tg_policy    *p;
    tg_decision   d;

    (void) unused;

    p = tg_test_policy("{ 'listen': { 'path': '/x' },"
        "'scrub': { 'private': { 'headers': ['cookie'] },"
        "           'external': { 'add_headers': ['x-trace-*'],"
        "                         'keep_headers': ['Originator', 'x-nope'],"
        "                         'add_body': ['prompt_cache_key'] } },"
        "'providers': {"
        "  'l': { 'upstream': 'u1', 'zone': 'local', 'endpoints': ['chat'] },"
        "  'lan': { 'upstream': 'u3', 'zone': 'private',"
        "           'endpoints': ['chat'] },"
        "  'x': { 'upstream': 'u2', 'zone': 'external', 'endpoints': ['chat'],"
        "         'scrub': { 'keep_body': ['client_metadata'],"
        "                    'user_agent': 'gw/1' } },"
        "  'y': { 'upstream': 'u4', 'zone': 'external', 'endpoints': ['chat'],"
        "         'scrub': { 'headers': ['x-stainless-*'], 'body': ['user'],"
        "                    'user_agent': 'ignored' } },"
        "  'z': { 'upstream': 'u5', 'zone': 'external', 'endpoints': ['chat'],"
        "         'scrub': { 'user_agent': null } } },"
        "'routes': {"
        "  'local': { 'steps': [ { 'provider': 'l', 'model': 'm' } ] },"
        "  'lan': { 'steps': [ { 'provider': 'lan', 'model': 'm' } ] },"
        "  'x': { 'steps': [ { 'provider': 'x', 'model': 'm' } ] },"
        "  'y': { 'steps': [ { 'provider': 'y', 'model': 'm' } ] },"
        "  'z': { 'steps': [ { 'provider': 'z', 'model': 'm' } ] },"
        "  'edits': { 'steps': [ { 'provider': 'x', 'model': 'm', 'adjust': ["
        "           { 'drop': ['user'], 'set': { 'metadata.via': 'tg',"
        "                                        'metadata.n': 1 } },"
        "           { 'when': 'stream', 'drop': ['metadata.secret'] },"
        "           { 'when': 'tools', 'set': { 'safety_identifier': 's' } }"
        "           ] } ] },"
        "  'drops': { 'steps': [ { 'provider': 'x', 'model': 'm', 'adjust': ["
        "           { 'drop': ['metadata.secret'] } ] } ] } } }");

    f = F("local", TG_EP_CHAT);
    tg_decide(p, &f, NULL, &d);
    assert_string_equal(d.drop_headers, "");
    assert_null(d.user_agent);
    assert_string_equal(d.adjust, "");

    f = F("lan", TG_EP_CHAT);
    tg_decide(p, &f, NULL, &d);
    assert_string_equal(d.drop_headers, "cookie\n");
    assert_null(d.user_agent);
    assert_string_equal(d.adjust, "");

    /* the default list, narrowed and extended by the zone and provider */

    f = F("x", TG_EP_CHAT);
    tg_decide(p, &f, NULL, &d);
    assert_non_null(strstr(d.drop_headers, "user-agent\n"));
    assert_non_null(strstr(d.drop_headers, "\nx-stainless-*\n"));
    assert_non_null(strstr(d.drop_headers, "\nx-codex-*\n"));
    assert_non_null(strstr(d.drop_headers, "\nsession-id\n"));
    assert_non_null(strstr(d.drop_headers, "\nx-trace-*\n"));
    assert_null(strstr(d.drop_headers, "originator"));
    assert_string_equal(d.user_agent, "gw/1");
    assert_string_equal(d.adjust, "drop user\ndrop metadata\n"
                        "drop safety_identifier\ndrop prompt_cache_key\n");

    /* replaced whole: no User-Agent of its own without dropping the client's */

    f = F("y", TG_EP_CHAT);
    tg_decide(p, &f, NULL, &d);
    assert_string_equal(d.drop_headers, "x-stainless-*\n");
    assert_null(d.user_agent);
    assert_string_equal(d.adjust, "drop user\n");

    f = F("z", TG_EP_CHAT);
    tg_decide(p, &f, NULL, &d);
    assert_non_null(strstr(d.drop_headers, "user-agent\n"));
    assert_null(d.user_agent);

    /*
     * The step's own edits stand: its drop of "user" once, its members of
     * "metadata" set whole (the client's other members go), its set of
     * "safety_identifier" kept where it applies.
     */

    f = F("edits", TG_EP_CHAT);
    tg_decide(p, &f, NULL, &d);
    assert_string_equal(d.adjust, "drop user\n"
                        "set metadata {\"via\":\"tg\",\"n\":1}\n"
                        "drop safety_identifier\ndrop prompt_cache_key\n");

    f.stream = true;
    tg_decide(p, &f, NULL, &d);
    assert_string_equal(d.adjust, "drop user\n"
                        "set metadata {\"via\":\"tg\",\"n\":1}\n"
                        "drop safety_identifier\ndrop prompt_cache_key\n");

    f.stream = false;
    f.tools = true;
    tg_decide(p, &f, NULL, &d);
    assert_string_equal(d.adjust, "drop user\nset safety_identifier \"s\"\n"
                        "set metadata {\"via\":\"tg\",\"n\":1}\n"
                        "drop prompt_cache_key\n");

    /* only drops below a key the scrub drops whole: the key goes */

    f = F("drops", TG_EP_CHAT);
    tg_decide(p, &f, NULL, &d);
    assert_string_equal(d.adjust, "drop user\ndrop metadata\n"
                        "drop safety_identifier\ndrop prompt_cache_key\n");

    tg_policy_free(p);

    /* what a policy may not say */

    {
        tg_errors  errs;

        tg_test_refuse("{ 'listen': { 'path': '/x' },"
            "'scrub': { 'moon': {}, 'external': { 'headers': 'x',"
            "           'add_headers': ['X-Big', 'a b', '*', 'host', ''],"
            "           'body': ['model', 'a..b', 7], 'user_agent': '',"
            "           'extra': 1 } },"
            "'providers': {"
            "  'x': { 'upstream': 'u2', 'zone': 'external',"
            "         'endpoints': ['chat'], 'scrub': [] } },"
            "'routes': { 'x': { 'steps': [ { 'provider': 'x',"
            "                                'model': 'm' } ] } } }", &errs);

        tg_test_has_error(&errs, "scrub.moon", "expected a zone: \"local\", "
                          "\"private\", \"external\"");
        tg_test_has_error(&errs, "scrub.external.extra", "unknown key");
        tg_test_has_error(&errs, "scrub.external.headers", "expected an array "
                          "of header names (letters, digits, \"-\" and \"_\", "
                          "a final \"*\" for a prefix)");
        tg_test_has_error(&errs, "scrub.external.add_headers[1]", "expected a "
                          "header name of 1 to 64 letters, digits, \"-\" and "
                          "\"_\", a final \"*\" for a prefix (not one the "
                          "gateway sets)");
        tg_test_has_error(&errs, "scrub.external.add_headers[2]", "expected a "
                          "header name of 1 to 64 letters, digits, \"-\" and "
                          "\"_\", a final \"*\" for a prefix (not one the "
                          "gateway sets)");
        tg_test_has_error(&errs, "scrub.external.add_headers[3]", "expected a "
                          "header name of 1 to 64 letters, digits, \"-\" and "
                          "\"_\", a final \"*\" for a prefix (not one the "
                          "gateway sets)");
        tg_test_has_error(&errs, "scrub.external.add_headers[4]", "expected a "
                          "header name of 1 to 64 letters, digits, \"-\" and "
                          "\"_\", a final \"*\" for a prefix (not one the "
                          "gateway sets)");
        tg_test_has_error(&errs, "scrub.external.body[0]", "expected a key or "
                          "\"key.member\" of letters, digits, \"_\" and "
                          "\"-\", not \"model\" or \"stream\"");
        tg_test_has_error(&errs, "scrub.external.body[2]", "expected a key or "
                          "\"key.member\" of letters, digits, \"_\" and "
                          "\"-\", not \"model\" or \"stream\"");
        tg_test_has_error(&errs, "scrub.external.user_agent", "expected a "
                          "User-Agent of 1 to 256 bytes without control "
                          "characters, or null for none");
        tg_test_has_error(&errs, "providers.x.scrub", "expected an object "
                          "with \"headers\", \"body\", \"user_agent\", ...");
        tg_errors_free(&errs);
    }
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_first_step_chosen, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_paths, setup, teardown),
        cmocka_unit_test(test_translate),
        cmocka_unit_test_setup_teardown(test_unknown_route, setup, teardown),
        cmocka_unit_test_setup_teardown(test_endpoint_not_served, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_private, setup, teardown),
        cmocka_unit_test_setup_teardown(test_excluded, setup, teardown),
        cmocka_unit_test(test_queue_goes_first),
        cmocka_unit_test_setup_teardown(test_down_and_busy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_never_falls_back, setup,
                                        teardown),
        cmocka_unit_test(test_fallback_mask),
        cmocka_unit_test(test_region),
        cmocka_unit_test(test_fit),
        cmocka_unit_test(test_adjust),
        cmocka_unit_test(test_scrub),
        cmocka_unit_test(test_reason_words),
        cmocka_unit_test(test_reason_truncated),
        cmocka_unit_test(test_tenants),
    };

    return cmocka_run_group_tests_name("decide", tests, NULL, NULL);
}

