/*
 * What the tests of decide.c share (test_decide.c, test_models.c): one
 * policy with a route of every kind, bound to a fresh state for each test,
 * and facts and checks that read short.  Include after cmocka.h.
 */

#ifndef TG_DECIDE_TEST_H
#define TG_DECIDE_TEST_H

#include <stdlib.h>
#include <string.h>

#include "decide.h"
#include "tg_test.h"


static const char  *tg_policy_text =
    "{ 'listen': { 'path': '/tmp/tg-decide.sock' },"
    "  'providers': {"
    "    'local': { 'upstream': 'tg_local', 'zone': 'local',"
    "      'endpoints': ['chat', 'embeddings', 'speech', 'transcriptions',"
    "                    'responses'],"
    "      'models': ['qwen', 'nomic'] },"
    "    'lan': { 'upstream': 'tg_lan', 'zone': 'private',"
    "      'base_path': '/openai/v1', 'endpoints': ['chat', 'embeddings'] },"
    "    'deepseek': { 'upstream': 'tg_deepseek', 'scheme': 'https',"
    "      'host': 'api.deepseek.com', 'base_path': '',"
    "      'api_key': '${DEEPSEEK_API_KEY}', 'zone': 'external',"
    "      'endpoints': ['chat'], 'translate_responses': false },"
    "    'openrouter': { 'upstream': 'tg_openrouter', 'scheme': 'https',"
    "      'host': 'openrouter.ai', 'base_path': '/api/v1',"
    "      'api_key': '${OPENROUTER_API_KEY}', 'zone': 'external',"
    "      'endpoints': ['chat', 'embeddings', 'responses'] },"
    "    'localchat': { 'upstream': 'tg_localchat', 'zone': 'local',"
    "      'endpoints': ['chat'] } },"
    "  'routes': {"
    "    'qwen': { 'steps': [ { 'provider': 'local', 'model': 'qwen' } ] },"
    "    'smart': { 'steps': [ { 'provider': 'deepseek', 'model': 'ds-chat' },"
    "                          { 'provider': 'local', 'model': 'qwen' } ],"
    "               'fallback': { 'on': 'both' } },"
    "    'cloud': { 'steps': [ { 'provider': 'deepseek', 'model': 'ds-chat' },"
    "                   { 'provider': 'openrouter', 'model': 'or-x' } ] },"
    "    'embed': { 'steps': [ { 'provider': 'deepseek', 'model': 'ds-chat' },"
    "                          { 'provider': 'openrouter', 'model': 'or-emb' },"
    "                          { 'provider': 'lan', 'model': 'nomic-lan' } ] },"
    "    'mixed': { 'steps': [ { 'provider': 'openrouter', 'model': 'or-x' },"
    "                   { 'provider': 'localchat', 'model': 'small' } ] },"
    "    'we\\'ird\\\\</script>\\u0027\\u00e9': { 'steps': ["
    "                          { 'provider': 'local', 'model': 'qwen' } ] }"
    "  } }";


typedef struct {
    tg_policy  *policy;
    tg_state   *state;
} tg_fixture;


static inline tg_str
S(const char *s)
{
    tg_str  v = { s, strlen(s) };
    return v;
}


static inline tg_facts
F(const char *model, tg_endpoint ep)
{
    tg_facts  f;

    memset(&f, 0, sizeof(f));
    f.model = S(model);
    f.endpoint = ep;
    f.attempt = 1;

    return f;
}


static const tg_str  tg_private[] = { { "team:x", 6 }, { "private", 7 } };


static inline int
setup(void **state)
{
    tg_fixture  *fx;

    fx = calloc(1, sizeof(tg_fixture));
    assert_non_null(fx);

    fx->policy = tg_test_policy(tg_policy_text);
    fx->state = tg_state_new();
    assert_non_null(fx->state);
    assert_int_equal(tg_state_bind(fx->state, fx->policy), 0);

    *state = fx;

    return 0;
}


static inline int
teardown(void **state)
{
    tg_fixture  *fx = *state;

    tg_state_free(fx->state);
    tg_policy_free(fx->policy);
    free(fx);

    return 0;
}


static inline void
assert_chosen(const tg_decision *d, const char *provider, const char *path,
    const char *model, const char *reason)
{
    assert_int_equal(d->status, 200);
    assert_non_null(d->provider);
    assert_string_equal(d->provider->name, provider);
    assert_string_equal(d->path, path);
    assert_string_equal(d->provider_model, model);
    assert_string_equal(d->reason, reason);
    assert_null(d->error_type);
    assert_null(d->error_code);
    assert_int_equal(d->retry_after, 0);
}


static inline void
assert_refused(const tg_decision *d, unsigned status, const char *type,
    const char *code, const char *message)
{
    assert_int_equal(d->status, status);
    assert_string_equal(d->error_type, type);
    assert_string_equal(d->error_code, code);
    assert_string_equal(d->message, message);
    assert_null(d->provider);
    assert_int_equal(d->retry_after, status == 503 ? 1 : 0);
}


#endif /* TG_DECIDE_TEST_H */
