/*
 * The policy loader: good files, comments, and every kind of error with its
 * exact key path.
 */

#include <grp.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "policy.h"
#include "tailgate_protocol.h"
#include "tg_test.h"


#define TG_GOOD_PROVIDERS                                                     \
    "'providers': {"                                                          \
    "  'local': { 'upstream': 'tailgate_local', 'zone': 'local',"            \
    "    'endpoints': ['chat', 'embeddings', 'speech', 'transcriptions',"    \
    "                  'responses'],"                                         \
    "    'models': ['qwen2.5-7b-instruct', 'nomic-embed-text'] },"            \
    "  'deepseek': { 'upstream': 'tailgate_deepseek', 'scheme': 'https',"    \
    "    'host': 'api.deepseek.com', 'base_path': '',"                        \
    "    'api_key': '${DEEPSEEK_API_KEY}', 'zone': 'external',"              \
    "    'endpoints': ['chat'] } }"

#define TG_GOOD_ROUTES                                                        \
    "'routes': {"                                                             \
    "  'qwen': { 'steps': [ { 'provider': 'local',"                           \
    "                         'model': 'qwen2.5-7b-instruct' } ] },"          \
    "  'smart': { 'steps': [ { 'provider': 'deepseek',"                       \
    "                          'model': 'deepseek-chat' },"                   \
    "                        { 'provider': 'local',"                          \
    "                          'model': 'qwen2.5-7b-instruct' } ] } }"

#define TG_LISTEN  "'listen': { 'path': '/tmp/tg-test.sock' }"

#define TG_GOOD  "{" TG_LISTEN "," TG_GOOD_PROVIDERS "," TG_GOOD_ROUTES "}"

/* a policy with one provider and one route around some changed part */
#define TG_WITH_PROVIDER(p)                                                   \
    "{" TG_LISTEN ", 'providers': { 'p': {" p "} },"                          \
    "'routes': { 'r': { 'steps': [ { 'provider': 'p', 'model': 'm' } ] } } }"

#define TG_MIN_PROVIDER                                                       \
    "'upstream': 'u', 'zone': 'local', 'endpoints': ['chat']"


static void
test_good_policy(void **unused)
{
    tg_policy          *p;
    const tg_route     *rt;
    const tg_provider  *pr;

    (void) unused;

    p = tg_test_policy(TG_GOOD);

    assert_string_equal(p->file, "test.json");
    assert_string_equal(p->listen.path, "/tmp/tg-test.sock");
    assert_int_equal(p->listen.mode, 0660);
    assert_null(p->listen.group);
    assert_int_equal(p->max_frame, 65536);
    assert_int_equal(p->log_level, TG_LOG_INFO);
    assert_int_equal(p->loaded_at, TG_TEST_NOW);

    /* file order */
    assert_int_equal(p->nproviders, 2);
    assert_string_equal(p->providers[0].name, "local");
    assert_string_equal(p->providers[1].name, "deepseek");
    assert_int_equal(p->nroutes, 2);
    assert_string_equal(p->routes[0].name, "qwen");
    assert_string_equal(p->routes[1].name, "smart");

    /* defaults */
    pr = &p->providers[0];
    assert_string_equal(pr->upstream, "tailgate_local");
    assert_string_equal(pr->scheme, "http");
    assert_string_equal(pr->host, "tailgate_local");
    assert_string_equal(pr->base_path, "/v1");
    assert_null(pr->authorization);
    assert_null(pr->api_key_env);
    assert_int_equal(pr->zone, TG_ZONE_LOCAL);
    assert_int_equal(pr->endpoints, 0x1f);
    assert_int_equal(pr->nmodels, 2);
    assert_string_equal(pr->models[1], "nomic-embed-text");
    assert_string_equal(pr->paths[TG_EP_CHAT], "/v1/chat/completions");
    assert_string_equal(pr->paths[TG_EP_EMBEDDINGS], "/v1/embeddings");
    assert_string_equal(pr->paths[TG_EP_SPEECH], "/v1/audio/speech");
    assert_string_equal(pr->paths[TG_EP_TRANSCRIPTIONS],
                        "/v1/audio/transcriptions");
    assert_string_equal(pr->paths[TG_EP_RESPONSES], "/v1/responses");
    assert_int_equal(pr->max_concurrency, 0);

    pr = &p->providers[1];
    assert_string_equal(pr->scheme, "https");
    assert_string_equal(pr->host, "api.deepseek.com");
    assert_string_equal(pr->base_path, "");
    assert_string_equal(pr->paths[TG_EP_CHAT], "/chat/completions");
    assert_string_equal(pr->api_key_env, "DEEPSEEK_API_KEY");
    assert_string_equal(pr->authorization, "Bearer sk-deep");
    assert_int_equal(pr->zone, TG_ZONE_EXTERNAL);
    /* chat only: it serves responses too, translated */
    assert_int_equal(pr->endpoints,
                     TG_EP_BIT(TG_EP_CHAT) | TG_EP_BIT(TG_EP_RESPONSES));
    assert_true(pr->translate_responses);
    assert_string_equal(pr->paths[TG_EP_RESPONSES], "/chat/completions");
    assert_null(pr->models);

    /* look-ups */
    rt = tg_policy_route(p, "smart", 5);
    assert_ptr_equal(rt, &p->routes[1]);
    assert_int_equal(rt->nsteps, 2);
    assert_ptr_equal(rt->steps[0].provider, &p->providers[1]);
    assert_int_equal(rt->steps[0].provider_index, 1);
    assert_string_equal(rt->steps[0].model, "deepseek-chat");
    assert_string_equal(rt->steps[1].model, "qwen2.5-7b-instruct");
    assert_int_equal(rt->endpoints, 0x1f);
    assert_int_equal(rt->private_endpoints, 0x1f);

    assert_null(tg_policy_route(p, "smar", 4));
    assert_null(tg_policy_route(p, "smartx", 6));
    assert_null(tg_policy_route(p, "", 0));
    assert_ptr_equal(tg_policy_provider(p, "local", 5), &p->providers[0]);
    assert_null(tg_policy_provider(p, "openai", 6));

    tg_policy_free(p);
}


static void
test_listen_and_top_level_options(void **unused)
{
    tg_policy  *p;

    (void) unused;

    p = tg_test_policy("{ 'listen': { 'path': '/tmp/x.sock', 'mode': '600',"
                       " 'group': 'root' }, 'max_frame': 4194304,"
                       " 'log_level': 'debug', "
                       TG_GOOD_PROVIDERS "," TG_GOOD_ROUTES "}");

    assert_int_equal(p->listen.mode, 0600);
    assert_string_equal(p->listen.group, "root");
    assert_int_equal(p->listen.gid, 0);
    assert_int_equal(p->max_frame, 4194304);
    assert_int_equal(p->log_level, TG_LOG_DEBUG);

    tg_policy_free(p);
}


static void
test_listen_path_override(void **unused)
{
    tg_errors        errs;
    tg_policy       *p;
    tg_policy_opts   opts = tg_test_opts();
    const char      *text = "{" TG_GOOD_PROVIDERS "," TG_GOOD_ROUTES "}";
    char            *json, *c;

    (void) unused;

    json = strdup(text);
    for (c = json; *c; c++) {
        if (*c == '\'') {
            *c = '"';
        }
    }

    /* without -s "listen" is required */
    tg_test_refuse(text, &errs);
    tg_test_has_error(&errs, "listen", "missing required key (or give -s "
                      "PATH)");
    assert_int_equal(errs.count, 1);
    tg_errors_free(&errs);

    /* with -s it may be absent */
    opts.listen_path = "/tmp/override.sock";
    tg_errors_init(&errs);
    p = tg_policy_parse("x.json", json, strlen(json), &opts, &errs);
    assert_non_null(p);
    assert_string_equal(p->listen.path, "/tmp/override.sock");
    assert_int_equal(p->listen.mode, 0660);
    tg_policy_free(p);
    free(json);

    /* and it wins over the file's path, the mode still counts */
    json = strdup("{\"listen\": {\"path\": \"/tmp/file.sock\", \"mode\": "
                  "\"0600\"}, \"providers\": {\"p\": {\"upstream\": \"u\", "
                  "\"zone\": \"local\", \"endpoints\": [\"chat\"]}}, "
                  "\"routes\": {\"r\": {\"steps\": [{\"provider\": \"p\", "
                  "\"model\": \"m\"}]}}}");
    p = tg_policy_parse("x.json", json, strlen(json), &opts, &errs);
    assert_non_null(p);
    assert_string_equal(p->listen.path, "/tmp/override.sock");
    assert_int_equal(p->listen.mode, 0600);
    tg_policy_free(p);

    /* a -s path that is too long */
    opts.listen_path = "/tmp/0123456789012345678901234567890123456789012345678"
                       "90123456789012345678901234567890123456789012345678"
                       "9012";
    assert_int_equal(strlen(opts.listen_path), 108);
    p = tg_policy_parse("x.json", json, strlen(json), &opts, &errs);
    assert_null(p);
    tg_test_has_error(&errs, "-s", "expected a socket path of 1 to 107 "
                      "bytes");
    tg_errors_free(&errs);
    free(json);
}


static const tg_test_refusal  refused_listen_errors[] = {
    { "{ 'listen': { 'path': '/tmp/"
      "0123456789012345678901234567890123456789012345678"
      "901234567890123456789012345678901234567890123456789"
      "012',"
      "'mode': 'rw', 'group': 'no-such-group-tg', 'user': 'x' },"
      TG_GOOD_PROVIDERS "," TG_GOOD_ROUTES "}",
      4, {
        { "listen.path", "expected a socket path of 1 to 107 bytes" },
        { "listen.mode", "expected an octal mode string such as \"0660\"" },
        { "listen.group", "no group named \"no-such-group-tg\"" },
        { "listen.user", "unknown key" },
      } },

    { "{ 'listen': { 'mode': '01777' }," TG_GOOD_PROVIDERS ","
      TG_GOOD_ROUTES "}",
      0, {
        { "listen.path", "missing required key" },
        { "listen.mode", "expected an octal mode string such as \"0660\"" },
      } },

    { "{ 'listen': { 'path': '', 'mode': 660 },"
      TG_GOOD_PROVIDERS "," TG_GOOD_ROUTES "}",
      0, {
        { "listen.path", "expected a socket path of 1 to 107 bytes" },
        { "listen.mode", "expected a string" },
      } },

    { "{ 'listen': '/tmp/x.sock'," TG_GOOD_PROVIDERS ","
      TG_GOOD_ROUTES "}",
      0, {
        { "listen", "expected an object" },
      } },

    { "{ 'listen': { 'path': '/x', 'mode': '0800' },"
      TG_GOOD_PROVIDERS "," TG_GOOD_ROUTES "}",
      0, {
        { "listen.mode", "expected an octal mode string such as \"0660\"" },
      } },
};


static void
test_listen_errors(void **unused)
{
    tg_policy  *p;

    (void) unused;

    /* 107 bytes is fine, 108 is not */
    p = tg_test_policy("{ 'listen': { 'path': '/tmp/"
                       "0123456789012345678901234567890123456789012345678"
                       "90123456789012345678901234567890123456789012345678"
                       "901'"
                       "}," TG_GOOD_PROVIDERS "," TG_GOOD_ROUTES "}");
    assert_int_equal(strlen(p->listen.path), 107);
    tg_policy_free(p);

    TG_TEST_REFUSALS(refused_listen_errors);
}


static const tg_test_refusal  refused_top_level_errors[] = {
    { "{" TG_LISTEN ", 'max_frame': 1000, 'log_level': 'loud',"
      "'provider': {}, 'routes': 3 }",
      5, {
        { "max_frame", "expected an integer from 65536 to 4194304" },
        { "log_level",
          "expected one of \"error\", "
          "\"warn\", \"info\", \"debug\"" },
        { "provider", "unknown key" },
        { "providers", "missing required key" },
        { "routes", "expected an object" },
      } },

    { "{" TG_LISTEN ", 'max_frame': 65536.5, 'providers': {},"
      "'routes': {} }",
      0, {
        { "max_frame", "expected an integer from 65536 to 4194304" },
        { "providers", "expected at least one provider" },
        { "routes", "expected at least one route" },
      } },

    { "{" TG_LISTEN ", 'max_frame': '65536', 'providers': [],"
      "'max_frame': 4194305 }",
      0, {
        { "max_frame", "duplicate key" },
        { "max_frame", "expected an integer from 65536 to 4194304" },
        { "providers", "expected an object" },
        { "routes", "missing required key" },
      } },

    { "[" TG_GOOD "]",
      1, {
        { NULL, "expected a JSON object at the top level" },
      } },
};


static void
test_top_level_errors(void **unused)
{
    (void) unused;

    TG_TEST_REFUSALS(refused_top_level_errors);
}


static const tg_test_refusal  refused_provider_errors[] = {
    /* the example from the brief: a typo */
    { TG_WITH_PROVIDER(TG_MIN_PROVIDER ", 'zonee': 'local'"),
      1, {
        { "providers.p.zonee", "unknown key" },
      } },

    { TG_WITH_PROVIDER("'zone': 'home', 'scheme': 'ftp', "
      "'host': 'a b', 'base_path': 'v1/',"
      "'endpoints': ['chat', 'images', 'chat',"
      " 7], 'models': []"),
      9, {
        { "providers.p.upstream", "missing required key" },
        { "providers.p.zone",
          "expected one of \"local\", \"private\", \"external\"" },
        { "providers.p.scheme", "expected one of \"http\", \"https\"" },
        { "providers.p.host",
          "expected a host name or "
          "address, optionally with \":port\" (at most 255 "
          "bytes)" },
        { "providers.p.base_path",
          "expected \"\" or a "
          "path that starts with \"/\", has no trailing \"/\", "
          "no spaces, \"?\" or \"#\" (at most 256 bytes)" },
        { "providers.p.endpoints[1]",
          "expected one of "
          "\"chat\", \"embeddings\", \"speech\", "
          "\"transcriptions\", \"responses\"" },
        { "providers.p.endpoints[2]", "duplicate \"chat\"" },
        { "providers.p.endpoints[3]",
          "expected one of "
          "\"chat\", \"embeddings\", \"speech\", "
          "\"transcriptions\", \"responses\"" },
        { "providers.p.models",
          "expected at least one "
          "model (leave the key out to accept any model)" },
      } },

    { TG_WITH_PROVIDER("'upstream': 'tail gate', 'zone': 1,"
      "'endpoints': 'chat', 'base_path': '/v1/',"
      "'models': ['m', '', 'm'], "
      "'zone': 'local'"),
      0, {
        { "providers.p.upstream",
          "expected an upstream "
          "name: 1 to 256 letters, digits, \"_\", \".\" or \"-\"" },
        { "providers.p.zone", "expected a string" },
        { "providers.p.zone", "duplicate key" },
        { "providers.p.endpoints", "expected an array of endpoint names" },
        { "providers.p.base_path",
          "expected \"\" or a "
          "path that starts with \"/\", has no trailing \"/\", "
          "no spaces, \"?\" or \"#\" (at most 256 bytes)" },
        { "providers.p.models[1]", "expected a model name of 1 to 256 bytes" },
        { "providers.p.models[2]", "duplicate \"m\"" },
      } },

    { TG_WITH_PROVIDER("'upstream': 'u', 'zone': 'local', "
      "'endpoints': []"),
      0, {
        { "providers.p.endpoints", "expected at least one endpoint" },
      } },

    { "{" TG_LISTEN ", 'providers': { 'p': 'x', 'bad name': {"
      TG_MIN_PROVIDER "}, "
      "'a12345678901234567890123456789012345678901234567890123456"
      "789012345': {" TG_MIN_PROVIDER "} },"
      "'routes': { 'r': { 'steps': [ { 'provider': 'p', "
      "'model': 'm' } ] } } }",
      3, {
        { "providers.p", "expected an object" },
        { "providers.bad name",
          "provider names are 1 to "
          "64 letters, digits, \"_\", \".\" or \"-\"" },
        { "providers.a1234567890123456789012345678901234567"
          "8901234567890123456789012345",
          "provider names are 1 "
          "to 64 letters, digits, \"_\", \".\" or \"-\"" },
      } },

    /* duplicate provider names */
    { "{" TG_LISTEN ", 'providers': { 'p': {" TG_MIN_PROVIDER
      "}, 'p': {" TG_MIN_PROVIDER "} }, 'routes': { 'r': { "
      "'steps': [ { 'provider': 'p', 'model': 'm' } ] } } }",
      1, {
        { "providers.p", "duplicate key" },
      } },

    /* duplicates among others, three of one: each later one, in order */
    { "{" TG_LISTEN ", 'providers': { 'p': {" TG_MIN_PROVIDER "} }, "
      "'routes': { 'b': { 'steps': [ { 'provider': 'p', 'model': 'm' } ] }, "
      "'a': { 'steps': [ { 'provider': 'p', 'model': 'm' } ] }, "
      "'b': { 'steps': [ { 'provider': 'p', 'model': 'm' } ] }, "
      "'c': { 'steps': [ { 'provider': 'p', 'model': 'm' } ] }, "
      "'a': { 'steps': [ { 'provider': 'p', 'model': 'm' } ] }, "
      "'b': { 'steps': [ { 'provider': 'p', 'model': 'm' } ] } } }",
      3, {
        { "routes.b", "duplicate key" },
        { "routes.a", "duplicate key" },
        { "routes.b", "duplicate key" },
      } },

    /* health: bounds, types, and probe settings without a probe */
    { TG_WITH_PROVIDER(TG_MIN_PROVIDER ", 'health': {"
      "'lease_ttl_ms': 10, 'send_key': 1 }"),
      3, {
        { "providers.p.health.lease_ttl_ms",
          "expected an integer from 1000 to 86400000" },
        { "providers.p.health.send_key", "expected true or false" },
        { "providers.p.health.url", "missing: the probe settings need a URL" },
      } },

    { TG_WITH_PROVIDER(TG_MIN_PROVIDER ", 'health': {"
      "'send_key': true }"),
      1, {
        { "providers.p.health.url", "missing: the probe settings need a URL" },
      } },

    /* translation needs a chat endpoint to translate to */
    { TG_WITH_PROVIDER("'upstream': 'u', 'zone': 'local',"
      "'endpoints': ['responses', 'embeddings'], 'translate_responses': true"),
      1, {
        { "providers.p.translate_responses",
          "true needs \"chat\" in \"endpoints\": Responses requests are "
          "translated to chat completions" },
      } },

    { TG_WITH_PROVIDER(TG_MIN_PROVIDER ", 'translate_responses': 'yes'"),
      1, {
        { "providers.p.translate_responses", "expected true or false" },
      } },

    { TG_WITH_PROVIDER(TG_MIN_PROVIDER ", 'translate_responses': null"),
      1, {
        { "providers.p.translate_responses", "expected true or false" },
      } },

    { TG_WITH_PROVIDER(TG_MIN_PROVIDER ", 'translate_responses': true,"
      "'translate_responses': false"),
      0, {
        { "providers.p.translate_responses", "duplicate key" },
      } },
};


static void
test_provider_errors(void **unused)
{
    (void) unused;

    TG_TEST_REFUSALS(refused_provider_errors);

    /* hosts and paths that are fine */
    tg_policy_free(tg_test_policy(TG_WITH_PROVIDER(
        TG_MIN_PROVIDER ", 'host': '[::1]:8080', 'base_path': '/api/v1'")));
    tg_policy_free(tg_test_policy(TG_WITH_PROVIDER(
        TG_MIN_PROVIDER ", 'host': 'my-host.example_1.com:443'")));
}


static const tg_test_refusal  refused_api_key[] = {
    { TG_WITH_PROVIDER(TG_MIN_PROVIDER ", 'api_key': 42"),
      0, {
        { "providers.p.api_key", "expected a string" },
      } },

    { TG_WITH_PROVIDER(TG_MIN_PROVIDER
      ", 'api_key': '${EMPTY_KEY}'"),
      0, {
        { "providers.p.api_key", "environment variable EMPTY_KEY is empty" },
      } },

    { TG_WITH_PROVIDER(TG_MIN_PROVIDER
      ", 'api_key': '${CONTROL_KEY}'"),
      0, {
        { "providers.p.api_key",
          "environment variable "
          "CONTROL_KEY contains control characters" },
      } },
};


static void
test_api_key(void **unused)
{
    tg_errors    errs;
    tg_policy   *p;
    const char  *bad = "expected \"${ENV_VAR}\": the key is read from the "
                       "environment, literal keys are not allowed";

    (void) unused;

    p = tg_test_policy(TG_WITH_PROVIDER(TG_MIN_PROVIDER
                                        ", 'api_key': '${OPENROUTER_API_KEY}'"
                                        ));
    assert_string_equal(p->providers[0].authorization, "Bearer sk-or");
    assert_string_equal(p->providers[0].api_key_env, "OPENROUTER_API_KEY");
    tg_policy_free(p);

    static const char *const  bad_values[] = {
        "sk-literal", "$OPENROUTER_API_KEY", "${}", "${1A}", "${A B}",
        "${OPENROUTER_API_KEY}x", "x${OPENROUTER_API_KEY}", "{A}", "${A",
        "", NULL
    };

    for (const char *const *v = bad_values; *v != NULL; v++) {
        char  text[1024];

        snprintf(text, sizeof(text),
                 TG_WITH_PROVIDER(TG_MIN_PROVIDER ", 'api_key': '%s'"), *v);
        tg_test_refuse(text, &errs);
        tg_test_has_error(&errs, "providers.p.api_key", bad);
        assert_int_equal(errs.count, 1);
        tg_errors_free(&errs);
    }

    TG_TEST_REFUSALS(refused_api_key);
}


static const tg_test_refusal  refused_missing_env_vars_all_reported[] = {
    { "{" TG_LISTEN ", 'providers': {"
      "'a': {" TG_MIN_PROVIDER ", 'api_key': '${MISSING_A}' },"
      "'b': {" TG_MIN_PROVIDER ", 'api_key': '${MISSING_B}' },"
      "'c': {" TG_MIN_PROVIDER ", 'api_key': '${DEEPSEEK_API_KEY}'"
      " },"
      "'d': {" TG_MIN_PROVIDER ", 'api_key': '${MISSING_A}' } },"
      "'routes': { 'r': { 'steps': [ { 'provider': 'a', "
      "'model': 'm' } ] } } }",
      3, {
        { "providers.a.api_key", "environment variable MISSING_A is not set" },
        { "providers.b.api_key", "environment variable MISSING_B is not set" },
        { "providers.d.api_key", "environment variable MISSING_A is not set" },
      } },
};


static void
test_missing_env_vars_all_reported(void **unused)
{
    (void) unused;

    TG_TEST_REFUSALS(refused_missing_env_vars_all_reported);
}


/* "${NAME}" in every string of the policy, not only in the secrets */

#define TG_ENV_POLICY                                                         \
    "{ 'listen': { 'path': '${TG_SOCK}', 'group': '${TG_GROUP}',"            \
    "              'mode': '${NOPE:-0660}' },"                                \
    "  'admin_listen': { 'path': '${TG_SOCK}.admin' },"                       \
    "  'log_level': '${NOPE:-debug}',"                                        \
    "  'providers': { 'p': {"                                                 \
    "    'upstream': '${TG_UPSTREAM}', 'scheme': '${NOPE:-https}',"          \
    "    'host': '${TG_HOST}:443', 'base_path': '${TG_BASE}',"               \
    "    'api_key': '${DEEPSEEK_API_KEY}', 'zone': '${TG_ZONE}',"            \
    "    'endpoints': ['${TG_ALL_ENDPOINTS}'], 'models': ['${TG_MODEL}'],"   \
    "    'region': 'e${NOPE:-u}',"                                            \
    "    'health': { 'url': 'https://${TG_HOST}/health',"                    \
    "                'kind': '${NOPE:-http}' } } },"                          \
    "  'routes': { 'r': {"                                                    \
    "    'steps': [ { 'provider': '${NOPE:-p}', 'model': '${TG_MODEL}',"     \
    "      'adjust': [ { 'set': { 'metadata.via': 'gw ${TG_HOST}',"          \
    "                             'user': '$${TG_HOST}' } } ] } ],"          \
    "    'tenants': [ '${NOPE:-acme}' ] } },"                                 \
    "  'usage': { 'log': '/var/lib/${NOPE:-tailgate}/usage.jsonl' },"        \
    "  'redis': { 'address': '${NOPE:-127.0.0.1}:6379',"                     \
    "             'node_id': '${NOPE:-gw-1}' } }"


static void
test_env_everywhere(void **unused)
{
    tg_policy          *p;
    const tg_route     *rt;
    const tg_provider  *pr;

    (void) unused;

    p = tg_test_policy(TG_ENV_POLICY);

    assert_string_equal(p->listen.path, "/tmp/tg-env.sock");
    assert_string_equal(p->listen.group, "root");
    assert_int_equal(p->listen.mode, 0660);
    assert_string_equal(p->admin.path, "/tmp/tg-env.sock.admin");
    assert_int_equal(p->log_level, TG_LOG_DEBUG);

    pr = &p->providers[0];
    assert_string_equal(pr->upstream, "tg_up");
    assert_string_equal(pr->scheme, "https");
    assert_string_equal(pr->host, "api.example.com:443");
    assert_string_equal(pr->base_path, "/v2");
    assert_string_equal(pr->authorization, "Bearer sk-deep");
    assert_int_equal(pr->zone, TG_ZONE_PRIVATE);
    assert_int_equal(pr->nmodels, 1);
    assert_string_equal(pr->models[0], "qwen-7b");
    assert_string_equal(pr->region, "eu");
    assert_string_equal(pr->health.url, "https://api.example.com/health");

    rt = tg_policy_route(p, "r", 1);
    assert_non_null(rt);
    assert_string_equal(rt->steps[0].model, "qwen-7b");
    assert_int_equal(rt->ntenants, 1);
    assert_string_equal(rt->tenants[0], "acme");

    assert_string_equal(p->usage.log, "/var/lib/tailgate/usage.jsonl");
    assert_string_equal(p->redis.host, "127.0.0.1");
    assert_string_equal(p->redis.node_id, "gw-1");

    tg_policy_free(p);
}


/*
 * Every variable that is missing, wherever its string is, each at its key
 * path, and nothing else: a value whose variable is missing is not judged
 * as it stands ("no group named \"${SOCK_GROUP}\"" would be noise).
 */
static const tg_test_refusal  refused_env_everywhere[] = {
    { "{ 'listen': { 'path': '/run/${RUN_DIR}/p.sock',"
      "              'group': '${SOCK_GROUP}' },"
      "  'providers': { 'p': {"
      "    'upstream': '${UP}', 'host': '${HOST_A}:${PORT_A}',"
      "    'api_key': '${KEY_A}', 'zone': 'local', 'endpoints': ['chat'],"
      "    'models': ['m', '${MODEL_B}'],"
      "    'health': { 'url': 'http://${PROBE}/health' } } },"
      "  'routes': { 'r': { 'steps': [ { 'provider': 'p', 'model': 'm',"
      "    'adjust': [ { 'set': { 'api_key': '${EDIT}' } } ] } ] } },"
      "  'usage': { 'log': '${LOG_DIR}/u.jsonl' },"
      "  'redis': { 'address': '${REDIS_ADDR}', 'password': '${REDIS_PW}' } }",
      12, {
        { "listen.path", "environment variable RUN_DIR is not set" },
        { "listen.group", "environment variable SOCK_GROUP is not set" },
        { "providers.p.upstream", "environment variable UP is not set" },
        { "providers.p.host", "environment variable HOST_A is not set" },
        { "providers.p.host", "environment variable PORT_A is not set" },
        { "providers.p.models[1]", "environment variable MODEL_B is not set" },
        { "providers.p.health.url", "environment variable PROBE is not set" },
        { "routes.r.steps[0].adjust[0].set.api_key",
          "environment variable EDIT is not set" },
        { "usage.log", "environment variable LOG_DIR is not set" },
        { "redis.address", "environment variable REDIS_ADDR is not set" },
        { "providers.p.api_key", "environment variable KEY_A is not set" },
        { "redis.password", "environment variable REDIS_PW is not set" },
      } },

    { TG_WITH_PROVIDER(TG_MIN_PROVIDER ", 'host': '${TG_HOST'"),
      1, {
        { "providers.p.host", "\"${\" at byte 0 is not a reference: expected "
          "${NAME} or ${NAME:-default} (NAME: a letter or \"_\", then "
          "letters, digits or \"_\", at most 128 bytes), or $${ for a "
          "literal ${" },
      } },

    { TG_WITH_PROVIDER(TG_MIN_PROVIDER ", 'host': '${CONTROL_KEY}'"),
      1, {
        { "providers.p.host",
          "environment variable CONTROL_KEY contains control characters" },
      } },

    /* what a value becomes is checked like any other value */
    { TG_WITH_PROVIDER(TG_MIN_PROVIDER ", 'base_path': '${TG_HOST}'"),
      1, {
        { "providers.p.base_path", "expected \"\" or a path that starts with "
          "\"/\", has no trailing \"/\", no spaces, \"?\" or \"#\" (at most "
          "256 bytes)" },
      } },

    { TG_WITH_PROVIDER(TG_MIN_PROVIDER ", 'scheme': '${EMPTY_KEY}'"),
      1, {
        { "providers.p.scheme", "expected one of \"http\", \"https\"" },
      } },

    /* secrets: one reference and nothing else, no default */
    { TG_WITH_PROVIDER(TG_MIN_PROVIDER ", 'api_key': '${NOPE:-sk-x}'"),
      1, {
        { "providers.p.api_key", "expected \"${ENV_VAR}\": the key is read "
          "from the environment, literal keys are not allowed" },
      } },

    { "{" TG_LISTEN ", 'providers': { 'p': {" TG_MIN_PROVIDER "} },"
      "'routes': { 'r': { 'steps': [ { 'provider': 'p', 'model': 'm' } ] } },"
      "'redis': { 'address': '127.0.0.1:6379', "
      "           'password': 'pw-${DEEPSEEK_API_KEY}' } }",
      1, {
        { "redis.password", "expected \"${ENV_VAR}\": the password is read "
          "from the environment, literal ones are not allowed" },
      } },
};


static void
test_env_everywhere_refused(void **unused)
{
    (void) unused;

    TG_TEST_REFUSALS(refused_env_everywhere);
}


static const tg_test_refusal  refused_route_errors[] = {
    { "{" TG_LISTEN "," TG_GOOD_PROVIDERS ", 'routes': {"
      "'smart': { 'steps': ["
      "  { 'provider': 'deepseek', 'model': 'deepseek-chat' },"
      "  { 'provider': 'openai', 'model': 'gpt-4o' },"
      "  { 'provider': 'local', 'model': 'llama3' },"
      "  { 'provider': 'local' },"
      "  { 'model': 'x', 'weight': 2 },"
      "  'local',"
      "  { 'provider': 7, 'model': '' } ] },"
      "'none': { 'steps': [] },"
      "'obj': { 'steps': {} },"
      "'nosteps': { 'fallback': true },"
      "'str': 'qwen' } }",
      13, {
        { "routes.smart.steps[1].provider", "no provider named \"openai\"" },
        { "routes.smart.steps[2].model",
          "\"llama3\" is not in providers.local.models" },
        { "routes.smart.steps[3].model", "missing required key" },
        { "routes.smart.steps[4].provider", "missing required key" },
        { "routes.smart.steps[4].weight", "unknown key" },
        { "routes.smart.steps[5]",
          "expected an object with \"provider\" and \"model\"" },
        { "routes.smart.steps[6].provider", "expected a string" },
        { "routes.smart.steps[6].model",
          "expected a model name of 1 to 256 bytes" },
        { "routes.none.steps", "expected at least one step" },
        { "routes.obj.steps", "expected an array of steps" },
        { "routes.nosteps.fallback",
          "expected an object with \"on\", \"outcomes\" and "
          "\"max_attempts\"" },
        { "routes.nosteps.steps", "missing required key" },
        { "routes.str", "expected an object" },
      } },

    /* duplicate route names */
    { "{" TG_LISTEN "," TG_GOOD_PROVIDERS ", 'routes': {"
      "'qwen': { 'steps': [ { 'provider': 'local', "
      "'model': 'nomic-embed-text' } ] },"
      "'qwen': { 'steps': [ { 'provider': 'local', "
      "'model': 'nomic-embed-text' } ] } } }",
      1, {
        { "routes.qwen", "duplicate key" },
      } },
};


static void
test_route_errors(void **unused)
{
    (void) unused;

    TG_TEST_REFUSALS(refused_route_errors);
}


/* what a provider can take, and a route's fallback rules */

static void
test_fit_and_fallback(void **unused)
{
    tg_errors   errs;
    tg_policy  *p;

    (void) unused;

    p = tg_test_policy("{" TG_LISTEN ", 'providers': {"
        "  'l': { 'upstream': 'u', 'zone': 'local', 'endpoints': ['chat'],"
        "         'region': 'eu-west.1', 'context_tokens': 8192,"
        "         'tools': false, 'streaming': false,"
        "         'max_concurrency': 2 },"
        "  'x': { 'upstream': 'v', 'zone': 'external',"
        "         'endpoints': ['chat'], 'connect_ms': 500,"
        "         'first_byte_ms': 2000 } },"
        "'routes': {"
        "  'a': { 'steps': [ { 'provider': 'l', 'model': 'm' },"
        "                    { 'provider': 'x', 'model': 'm' } ],"
        "         'fallback': { 'on': 'both', 'outcomes': ['429', 'timeout'],"
        "                       'max_attempts': 5 } },"
        "  'b': { 'steps': [ { 'provider': 'l', 'model': 'm' },"
        "                    { 'provider': 'x', 'model': 'm' } ],"
        "         'fallback': { 'on': 'errors' } },"
        "  'c': { 'steps': [ { 'provider': 'l', 'model': 'm' } ],"
        "         'fallback': { 'on': 'busy' } },"
        "  'd': { 'steps': [ { 'provider': 'l', 'model': 'm' } ] },"
        "  'e': { 'steps': [ { 'provider': 'l', 'model': 'm' },"
        "                    { 'provider': 'x', 'model': 'm',"
        "                      'first_byte_ms': 300, 'idle_ms': 7000 } ],"
        "         'fallback': { 'on': ['errors', 'auth'] } },"
        "  'f': { 'steps': [ { 'provider': 'l', 'model': 'm' },"
        "                    { 'provider': 'x', 'model': 'm' } ],"
        "         'fallback': { 'on': ['auth'] } } } }");

    assert_string_equal(p->providers[0].region, "eu-west.1");
    assert_int_equal(p->providers[0].context_tokens, 8192);
    assert_int_equal(p->providers[0].max_concurrency, 2);
    assert_false(p->providers[0].tools);
    assert_false(p->providers[0].streaming);
    assert_null(p->providers[1].region);
    assert_int_equal(p->providers[1].context_tokens, 0);
    assert_true(p->providers[1].tools);
    assert_true(p->providers[1].streaming);

    assert_int_equal(p->routes[0].fallback_on,
                     TG_FALLBACK_ON_ERRORS | TG_FALLBACK_ON_BUSY);
    assert_int_equal(p->routes[0].fallback_outcomes, 0x08 | 0x02);
    assert_int_equal(p->routes[0].max_attempts, 5);

    /* every outcome, every step once */
    assert_int_equal(p->routes[1].fallback_on, TG_FALLBACK_ON_ERRORS);
    assert_int_equal(p->routes[1].fallback_outcomes, 0x0f);
    assert_int_equal(p->routes[1].max_attempts, 2);

    /* busy alone never tries twice */
    assert_int_equal(p->routes[2].fallback_on, TG_FALLBACK_ON_BUSY);
    assert_int_equal(p->routes[2].max_attempts, 1);

    assert_int_equal(p->routes[3].fallback_on, 0);
    assert_int_equal(p->routes[3].max_attempts, 1);

    /* a provider's refusal of the gateway only where the route says */
    assert_int_equal(p->routes[4].fallback_on,
                     TG_FALLBACK_ON_ERRORS | TG_FALLBACK_ON_AUTH);
    assert_int_equal(p->routes[4].fallback_outcomes, 0x0f | TG_FALLBACK_AUTH);
    assert_int_equal(p->routes[4].max_attempts, 2);
    assert_int_equal(p->routes[5].fallback_on, TG_FALLBACK_ON_AUTH);
    assert_int_equal(p->routes[5].fallback_outcomes, TG_FALLBACK_AUTH);
    assert_int_equal(p->routes[5].max_attempts, 2);

    /* timeouts: the step's, else its provider's, else none */
    assert_int_equal(p->providers[0].first_byte_ms, 0);
    assert_int_equal(p->providers[1].connect_ms, 500);
    assert_int_equal(p->providers[1].first_byte_ms, 2000);
    assert_int_equal(p->providers[1].idle_ms, 0);
    assert_int_equal(p->routes[4].steps[0].first_byte_ms, 0);
    assert_int_equal(p->routes[4].steps[1].connect_ms, 500);
    assert_int_equal(p->routes[4].steps[1].first_byte_ms, 300);
    assert_int_equal(p->routes[4].steps[1].idle_ms, 7000);

    tg_policy_free(p);

    tg_test_refuse("{" TG_LISTEN ", 'providers': {"
        "  'l': { 'upstream': 'u', 'zone': 'local', 'endpoints': ['chat'],"
        "         'region': 'EU', 'context_tokens': 0, 'tools': 'no',"
        "         'streaming': 1, 'max_concurrency': 1.5 },"
        "  'm': { 'upstream': 'u', 'zone': 'local', 'endpoints': ['chat'],"
        "         'region': '', 'context_tokens': 100000001,"
        "         'probe': 'x' } },"
        "'routes': {"
        "  'a': { 'steps': [ { 'provider': 'l', 'model': 'm' } ],"
        "         'fallback': { 'on': 'always', 'outcomes': ['500', 5],"
        "                       'max_attempts': 9, 'delay': 1 } },"
        "  'b': { 'steps': [ { 'provider': 'l', 'model': 'm' } ],"
        "         'fallback': { 'outcomes': [] } } } }", &errs);

    tg_test_has_error(&errs, "providers.l.region", "expected a region name "
                      "of 1 to 32 lowercase letters, digits, \"_\", \".\" "
                      "or \"-\"");
    tg_test_has_error(&errs, "providers.l.context_tokens",
                      "expected an integer from 1 to 100000000");
    tg_test_has_error(&errs, "providers.l.tools", "expected true or false");
    tg_test_has_error(&errs, "providers.l.streaming",
                      "expected true or false");
    tg_test_has_error(&errs, "providers.l.max_concurrency",
                      "expected an integer from 1 to 100000");
    tg_test_has_error(&errs, "providers.m.region", "expected a region name "
                      "of 1 to 32 lowercase letters, digits, \"_\", \".\" "
                      "or \"-\"");
    tg_test_has_error(&errs, "providers.m.context_tokens",
                      "expected an integer from 1 to 100000000");
    tg_test_has_error(&errs, "providers.m.probe", "unknown key");
    tg_test_has_error(&errs, "routes.a.fallback.on", "expected one of "
                      "\"never\", \"errors\", \"busy\", \"both\", "
                      "\"auth\", or an array of them");
    tg_test_has_error(&errs, "routes.a.fallback.outcomes[0]", "expected one "
                      "of \"connect_error\", \"timeout\", \"5xx\", \"429\"");
    tg_test_has_error(&errs, "routes.a.fallback.outcomes[1]", "expected one "
                      "of \"connect_error\", \"timeout\", \"5xx\", \"429\"");
    tg_test_has_error(&errs, "routes.a.fallback.max_attempts",
                      "expected an integer from 1 to 8");
    tg_test_has_error(&errs, "routes.a.fallback.delay", "unknown key");
    tg_test_has_error(&errs, "routes.b.fallback.on", "missing required key");
    tg_test_has_error(&errs, "routes.b.fallback.outcomes", "expected a "
                      "non-empty array of \"connect_error\", \"timeout\", "
                      "\"5xx\", \"429\"");
    assert_int_equal(errs.count, 15);
    tg_errors_free(&errs);
}


/* a step's request edits */

static const tg_test_refusal  refused_adjust_errors[] = {
    { "{" TG_LISTEN ", 'providers': {"
      "  'l': { 'upstream': 'u', 'zone': 'local', 'endpoints': ['chat'] } },"
      "'routes': {"
      "  'a': { 'steps': [ { 'provider': 'l', 'model': 'm', 'adjust': ["
      "    { 'when': 'sometimes', 'drop': ['Model', 'a..b', 'a.b.c', '',"
      "                                     'stream.x', 7, 'x y'] },"
      "    { 'set': { 'model': 'gpt', 'ok': 1 }, 'why': 1 },"
      "    { },"
      "    { 'drop': [], 'set': [] } ] } ] },"
      "  'b': { 'steps': [ { 'provider': 'l', 'model': 'm', 'adjust': ["
      "    { 'when': 'tools', 'drop': ['response_format'] },"
      "    { 'when': 'stream', 'set': { 'response_format.type': 'x' } }"
      "    ] } ] },"
      "  'c': { 'steps': [ { 'provider': 'l', 'model': 'm', 'adjust': ["
      "    { 'set': { 'x.a': 1, 'x.b': 2 }, 'drop': ['x.c'] },"
      "    { 'set': { 'x.a': 3 } } ] } ] },"
      "  'd': { 'steps': [ { 'provider': 'l', 'model': 'm',"
      "                      'adjust': {} } ] } } }",
      16, {
        { "routes.a.steps[0].adjust[0].when",
          "expected one of \"always\", \"tools\", \"stream\"" },
        { "routes.a.steps[0].adjust[0].drop[0]",
          "expected a key or \"key.member\" of letters, digits, "
          "\"_\" and \"-\", not \"model\" or \"stream\"" },
        { "routes.a.steps[0].adjust[0].drop[1]",
          "expected a key or \"key.member\" of letters, digits, "
          "\"_\" and \"-\", not \"model\" or \"stream\"" },
        { "routes.a.steps[0].adjust[0].drop[2]",
          "expected a key or \"key.member\" of letters, digits, "
          "\"_\" and \"-\", not \"model\" or \"stream\"" },
        { "routes.a.steps[0].adjust[0].drop[3]",
          "expected a key or \"key.member\" of letters, digits, "
          "\"_\" and \"-\", not \"model\" or \"stream\"" },
        { "routes.a.steps[0].adjust[0].drop[4]",
          "expected a key or \"key.member\" of letters, digits, "
          "\"_\" and \"-\", not \"model\" or \"stream\"" },
        { "routes.a.steps[0].adjust[0].drop[5]",
          "expected a key or \"key.member\" of letters, digits, "
          "\"_\" and \"-\", not \"model\" or \"stream\"" },
        { "routes.a.steps[0].adjust[0].drop[6]",
          "expected a key or \"key.member\" of letters, digits, "
          "\"_\" and \"-\", not \"model\" or \"stream\"" },
        { "routes.a.steps[0].adjust[1].set.model",
          "expected a key or \"key.member\" of letters, digits, "
          "\"_\" and \"-\", not \"model\" or \"stream\"" },
        { "routes.a.steps[0].adjust[1].why", "unknown key" },
        { "routes.a.steps[0].adjust[2]", "expected \"drop\" or \"set\"" },
        { "routes.a.steps[0].adjust[3].drop",
          "expected a non-empty array of keys" },
        { "routes.a.steps[0].adjust[3].set",
          "expected a non-empty object of key: value" },
        { "routes.b.steps[0].adjust",
          "\"response_format\" and \"response_format.type\" edit "
          "the same key" },
        { "routes.c.steps[0].adjust",
          "\"x.a\" and \"x.a\" edit the same key" },
        { "routes.d.steps[0].adjust",
          "expected a non-empty array of { \"when\", \"drop\", "
          "\"set\" } rules" },
      } },
};


static void
test_adjust_errors(void **unused)
{
    tg_policy  *p;

    (void) unused;

    p = tg_test_policy("{" TG_LISTEN ", 'providers': {"
        "  'l': { 'upstream': 'u', 'zone': 'local', 'endpoints': ['chat'] } },"
        "'routes': {"
        "  'a': { 'steps': [ { 'provider': 'l', 'model': 'm', 'adjust': ["
        "    { 'when': 'always', 'set': { 'metadata.a': 'x\\ny',"
        "                                 'metadata.b': [1, {'c': null}] } },"
        "    { 'drop': ['stream_options.include_obfuscation', 'tools'] } ]"
        "  } ] } } }");

    assert_string_equal(p->routes[0].steps[0].adjust[0],
                        "set metadata.a \"x\\ny\"\n"
                        "set metadata.b [1,{\"c\":null}]\n"
                        "drop stream_options.include_obfuscation\n"
                        "drop tools\n");
    assert_string_equal(p->routes[0].steps[0].adjust[3],
                        p->routes[0].steps[0].adjust[0]);
    tg_policy_free(p);

    TG_TEST_REFUSALS(refused_adjust_errors);
}


static const tg_test_refusal  refused_route_tenants[] = {
    { "{" TG_LISTEN "," TG_GOOD_PROVIDERS ", 'routes': {"
      "'empty': { 'tenants': [],"
      "  'steps': [ { 'provider': 'local',"
      "               'model': 'qwen2.5-7b-instruct' } ] },"
      "'bad': { 'tenants': ['ok', 'not ok', 7],"
      "  'steps': [ { 'provider': 'local',"
      "               'model': 'qwen2.5-7b-instruct' } ] }"
      "} }",
      0, {
        { "routes.empty.tenants",
          "expected a non-empty array of tenant names (leave the "
          "key out for every tenant)" },
        { "routes.bad.tenants[1]",
          "expected a tenant name of 1 to 64 letters, digits and "
          "\"_-.@:\"" },
        { "routes.bad.tenants[2]",
          "expected a tenant name of 1 to 64 letters, digits and "
          "\"_-.@:\"" },
      } },
};


static void
test_route_tenants(void **unused)
{
    tg_policy  *p;

    (void) unused;

    p = tg_test_policy("{" TG_LISTEN "," TG_GOOD_PROVIDERS ", 'routes': {"
                       "'acme': { 'tenants': ['acme', 'globex.eu'],"
                       "  'steps': [ { 'provider': 'local',"
                       "      'model': 'qwen2.5-7b-instruct' } ] } } }");
    assert_int_equal(p->routes[0].ntenants, 2);
    assert_string_equal(p->routes[0].tenants[1], "globex.eu");
    tg_policy_free(p);

    TG_TEST_REFUSALS(refused_route_tenants);
}


static void
test_route_names(void **unused)
{
    char        name[300], text[2048];
    tg_errors   errs;
    tg_policy  *p;

    (void) unused;

    memset(name, 'r', 256);
    name[256] = '\0';

    snprintf(text, sizeof(text), "{" TG_LISTEN "," TG_GOOD_PROVIDERS
             ", 'routes': { '%s': { 'steps': [ { 'provider': 'local', "
             "'model': 'nomic-embed-text' } ] } } }", name);
    p = tg_test_policy(text);
    assert_non_null(tg_policy_route(p, name, 256));
    tg_policy_free(p);

    name[256] = 'r';
    name[257] = '\0';

    snprintf(text, sizeof(text), "{" TG_LISTEN "," TG_GOOD_PROVIDERS
             ", 'routes': { '%s': { 'steps': [ { 'provider': 'local', "
             "'model': 'nomic-embed-text' } ] }, '': { 'steps': [ { "
             "'provider': 'local', 'model': 'nomic-embed-text' } ] } } }",
             name);
    tg_test_refuse(text, &errs);

    snprintf(text, sizeof(text), "routes.%s", name);
    tg_test_has_error(&errs, text, "route names are 1 to 256 bytes without "
                      "control characters");
    tg_test_has_error(&errs, "routes.", "route names are 1 to 256 bytes "
                      "without control characters");
    assert_int_equal(errs.count, 2);
    tg_errors_free(&errs);

    /* any other bytes are fine: dots, spaces, slashes, quotes, UTF-8 */
    p = tg_test_policy("{" TG_LISTEN "," TG_GOOD_PROVIDERS ", 'routes': {"
                       "'org/model v2.5 \\'q\\' \u00e9': { 'steps': [ { "
                       "'provider': 'local', 'model': 'nomic-embed-text' } ] "
                       "} } }");
    assert_non_null(tg_policy_route(p, "org/model v2.5 \"q\" \u00e9",
                                    strlen("org/model v2.5 \"q\" \u00e9")));
    tg_policy_free(p);
}


static void
test_many_routes(void **unused)
{
    int          i;
    char        *text, name[32];
    size_t       len, cap;
    tg_policy   *p;
    const tg_route  *rt;

    (void) unused;

    cap = 1024 * 1024;
    text = malloc(cap);
    assert_non_null(text);

    len = (size_t) snprintf(text, cap, "{" TG_LISTEN "," TG_GOOD_PROVIDERS
                            ", 'routes': {");

    for (i = 0; i < 1000; i++) {
        len += (size_t) snprintf(text + len, cap - len,
                                 "%s'route-%d': { 'steps': [ { 'provider': "
                                 "'deepseek', 'model': 'm%d' } ] }",
                                 i ? "," : "", i, i);
    }

    snprintf(text + len, cap - len, "} }");

    p = tg_test_policy(text);
    free(text);

    assert_int_equal(p->nroutes, 1000);

    for (i = 0; i < 1000; i++) {
        snprintf(name, sizeof(name), "route-%d", i);
        rt = tg_policy_route(p, name, strlen(name));
        assert_non_null(rt);
        assert_int_equal(rt->index, (size_t) i);
        assert_ptr_equal(rt, &p->routes[i]);
    }

    assert_null(tg_policy_route(p, "route-1000", 10));

    tg_policy_free(p);
}


static void
test_comments(void **unused)
{
    tg_policy  *p;

    (void) unused;

    p = tg_test_policy(
        "// a policy\n"
        "{ /* block\n comment */ 'listen': { 'path': '/tmp//x/*y*/.sock' },\n"
        "  'providers': { 'p': { 'upstream': 'u', // trailing\n"
        "    'zone': 'local', 'endpoints': ['chat'], 'base_path': '/a//b',\n"
        "    'models': ['org//m', 'x\\\\', 'q\\'//not a comment'] } },\n"
        "  'routes': { 'r//1': { 'steps': [ { 'provider': 'p', /**/"
        "    'model': 'org//m' } ] } } } // end");

    assert_string_equal(p->listen.path, "/tmp//x/*y*/.sock");
    assert_string_equal(p->providers[0].base_path, "/a//b");
    assert_string_equal(p->providers[0].models[0], "org//m");
    assert_string_equal(p->providers[0].models[1], "x\\");
    assert_string_equal(p->providers[0].models[2], "q\"//not a comment");
    assert_non_null(tg_policy_route(p, "r//1", 4));

    tg_policy_free(p);
}


static void
test_strip_comments(void **unused)
{
    size_t  off;
    char    s1[] = "{\"a//b\": 1} // c\n/* d\ne */ 2";
    char    s2[] = "x /* never closed\n";
    char    s3[] = "\"\\\"/*\" /";
    char    s4[] = "/";

    (void) unused;

    assert_int_equal(tg_json_strip_comments(s1, strlen(s1), &off), 0);
    assert_string_equal(s1, "{\"a//b\": 1}     \n    \n     2");

    assert_int_equal(tg_json_strip_comments(s2, strlen(s2), &off), -1);
    assert_int_equal(off, 2);

    assert_int_equal(tg_json_strip_comments(s3, strlen(s3), &off), 0);
    assert_string_equal(s3, "\"\\\"/*\" /");

    assert_int_equal(tg_json_strip_comments(s4, strlen(s4), &off), 0);
}


static const tg_test_refusal  refused_syntax_errors[] = {
    { "{\n  'listen': {},\n  'providers': { 'x': }\n}",
      1, {
        { "line 3, column 23", "invalid JSON" },
      } },

    { "{\n /* open",
      0, {
        { "line 2, column 2", "unterminated /* comment" },
      } },

    { "",
      0, {
        { "line 1, column 1", "invalid JSON: unexpected end of file" },
      } },

    { "{} {}",
      0, {
        { "line 1, column 4", "invalid JSON" },
      } },

    { "{'a': 1,}",
      1, { } },
};


static void
test_syntax_errors(void **unused)
{
    (void) unused;

    TG_TEST_REFUSALS(refused_syntax_errors);
}


static void
test_load_file(void **unused)
{
    char            *name;
    tg_errors        errs;
    tg_policy       *p;
    tg_policy_opts   opts = tg_test_opts();
    char             text[] = TG_GOOD;
    char            *c;

    (void) unused;

    for (c = text; *c; c++) {
        if (*c == '\'') {
            *c = '"';
        }
    }

    name = tg_test_write_file(text, strlen(text));

    tg_errors_init(&errs);
    p = tg_policy_load(name, &opts, &errs);
    assert_non_null(p);
    assert_string_equal(p->file, name);
    assert_int_equal(p->nroutes, 2);
    tg_policy_free(p);
    unlink(name);
    free(name);

    /* a NUL byte inside */
    name = tg_test_write_file("{\0}", 3);
    p = tg_policy_load(name, &opts, &errs);
    assert_null(p);
    tg_test_has_error(&errs, NULL, "contains a NUL byte; expected JSON text");
    tg_errors_free(&errs);
    unlink(name);
    free(name);

    p = tg_policy_load("/nonexistent/policy.json", &opts, &errs);
    assert_null(p);
    tg_test_has_error(&errs, NULL, "cannot open: No such file or directory");
    tg_errors_free(&errs);

    p = tg_policy_load("/tmp", &opts, &errs);
    assert_null(p);
    tg_test_has_error(&errs, NULL, "cannot read: is a directory");
    tg_errors_free(&errs);

    tg_policy_free(NULL);
}


/* policyd's own runs refuse a policy file that every user may read */

static void
test_private_file(void **unused)
{
    char            *name, want[1024];
    tg_errors        errs;
    tg_policy       *p;
    tg_policy_opts   opts = tg_test_opts();
    char             text[] = TG_GOOD;
    char            *c;

    static const struct {
        mode_t       mode;
        const char  *may;           /* NULL: accepted */
    } modes[] = {
        { 0600, NULL }, { 0640, NULL }, { 0660, NULL }, { 0400, NULL },
        { 0644, "read" }, { 0642, "write" }, { 0646, "read and write" },
        { 0641, "open" }, { 0604, "read" }, { 0666, "read and write" },
    };

    (void) unused;

    for (c = text; *c; c++) {
        if (*c == '\'') {
            *c = '"';
        }
    }

    name = tg_test_write_file(text, strlen(text));
    opts.private_file = true;

    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        assert_int_equal(chmod(name, modes[i].mode), 0);

        tg_errors_init(&errs);
        p = tg_policy_load(name, &opts, &errs);

        if (modes[i].may == NULL) {
            assert_non_null(p);
            assert_int_equal(errs.count, 0);
            tg_policy_free(p);
            continue;
        }

        snprintf(want, sizeof(want), "mode %04o: every user of this machine "
                 "can %s it, and it holds or names secrets; refused. Fix: "
                 "chmod o-rwx %s", (unsigned) modes[i].mode, modes[i].may,
                 name);

        assert_null(p);
        assert_int_equal(errs.count, 1);
        tg_test_has_error(&errs, NULL, want);
        tg_errors_free(&errs);
    }

    /* others' files (explain -c, the tests) are read whatever their mode */

    assert_int_equal(chmod(name, 0644), 0);
    opts.private_file = false;
    tg_errors_init(&errs);
    p = tg_policy_load(name, &opts, &errs);
    assert_non_null(p);
    tg_policy_free(p);

    unlink(name);
    free(name);
}


static void
test_doc_example(void **unused)
{
    tg_errors        errs;
    tg_policy       *p;
    tg_policy_opts   opts = tg_test_opts();

    (void) unused;

    tg_errors_init(&errs);

    p = tg_policy_load(TG_FIXTURES "/example.json", &opts, &errs);

    if (getgrnam("www-data") == NULL) {
        /* the example names the nginx workers' group of Debian */
        assert_null(p);
        tg_test_has_error(&errs, "listen.group",
                          "no group named \"www-data\"");
        assert_int_equal(errs.count, 1);
        tg_errors_free(&errs);
        return;
    }

    assert_non_null(p);
    assert_int_equal(errs.count, 0);
    assert_string_equal(p->listen.path, "/run/tailgate/policyd.sock");
    assert_string_equal(p->listen.group, "www-data");
    assert_int_equal(p->nproviders, 2);
    assert_int_equal(p->nroutes, 2);
    assert_string_equal(p->providers[1].authorization, "Bearer sk-deep");

    tg_policy_free(p);
    tg_errors_free(&errs);
}


static void
test_endpoint_and_zone_names(void **unused)
{
    (void) unused;

    assert_int_equal(tg_endpoint_parse("chat", 4), TG_EP_CHAT);
    assert_int_equal(tg_endpoint_parse("responses", 9), TG_EP_RESPONSES);
    assert_int_equal(tg_endpoint_parse("chats", 5), TG_EP_NONE);
    assert_int_equal(tg_endpoint_parse("cha", 3), TG_EP_NONE);
    assert_int_equal(tg_endpoint_parse("", 0), TG_EP_NONE);
    assert_string_equal(tg_endpoint_name(TG_EP_SPEECH), "speech");
    assert_string_equal(tg_endpoint_name(TG_EP_NONE), "unknown");
    assert_string_equal(tg_endpoint_suffix(TG_EP_TRANSCRIPTIONS),
                        "/audio/transcriptions");
    assert_string_equal(tg_zone_name(TG_ZONE_PRIVATE), "private");
    assert_int_equal(tg_zone_parse("external"), TG_ZONE_EXTERNAL);
    assert_int_equal(tg_zone_parse("extern"), TG_ZONE_COUNT);

    assert_string_equal(tg_fallback_class_name(TG_FALLBACK_5XX), "5xx");
    assert_string_equal(tg_fallback_class_name(TG_FALLBACK_AUTH), "auth");
    assert_null(tg_fallback_class_name(0x20));
    assert_int_equal(tg_fallback_class_parse("auth"), 0);
    assert_int_equal(tg_fallback_class_parse("429"), TG_FALLBACK_429);
    assert_int_equal(tg_fallback_class_parse("4xx"), 0);

    assert_string_equal(tg_endpoint_list, "\"chat\", \"embeddings\", "
                        "\"speech\", \"transcriptions\", \"responses\"");
    assert_string_equal(tg_zone_list,
                        "\"local\", \"private\", \"external\"");
    assert_string_equal(tg_fallback_class_list, "\"connect_error\", "
                        "\"timeout\", \"5xx\", \"429\"");
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_policy),
        cmocka_unit_test(test_listen_and_top_level_options),
        cmocka_unit_test(test_listen_path_override),
        cmocka_unit_test(test_listen_errors),
        cmocka_unit_test(test_top_level_errors),
        cmocka_unit_test(test_provider_errors),
        cmocka_unit_test(test_api_key),
        cmocka_unit_test(test_missing_env_vars_all_reported),
        cmocka_unit_test(test_env_everywhere),
        cmocka_unit_test(test_env_everywhere_refused),
        cmocka_unit_test(test_private_file),
        cmocka_unit_test(test_route_errors),
        cmocka_unit_test(test_route_tenants),
        cmocka_unit_test(test_fit_and_fallback),
        cmocka_unit_test(test_adjust_errors),
        cmocka_unit_test(test_route_names),
        cmocka_unit_test(test_many_routes),
        cmocka_unit_test(test_comments),
        cmocka_unit_test(test_strip_comments),
        cmocka_unit_test(test_syntax_errors),
        cmocka_unit_test(test_load_file),
        cmocka_unit_test(test_doc_example),
        cmocka_unit_test(test_endpoint_and_zone_names),
    };

    return cmocka_run_group_tests_name("policy", tests, NULL, NULL);
}
