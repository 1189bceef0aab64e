/*
 * The /v1/models listing: every route a client may see, for an endpoint,
 * one model, and a buffer too small; JSON escaping.
 */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <cjson/cJSON.h>

#include "model_list.h"
#include "tg_decide_test.h"


static cJSON *
models(tg_fixture *fx, const tg_facts *f)
{
    long    n;
    char    buf[8192];
    cJSON  *root;

    n = tg_models_json(fx->policy, f, buf, sizeof(buf));
    assert_true(n > 0);
    assert_int_equal((size_t) n, strlen(buf));

    root = cJSON_Parse(buf);
    assert_non_null(root);
    assert_string_equal(cJSON_GetObjectItem(root, "object")->valuestring,
                        "list");

    return root;
}


static void
assert_model(const cJSON *m, const char *id, const char *endpoints)
{
    char          list[256];
    size_t        len;
    const cJSON  *e;

    assert_string_equal(cJSON_GetObjectItem(m, "id")->valuestring, id);
    assert_string_equal(cJSON_GetObjectItem(m, "object")->valuestring,
                        "model");
    assert_string_equal(cJSON_GetObjectItem(m, "owned_by")->valuestring,
                        "tailgate");
    assert_int_equal(cJSON_GetObjectItem(m, "created")->valuedouble,
                     TG_TEST_NOW);

    len = 0;
    list[0] = '\0';
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(m, "endpoints")) {
        len += (size_t) snprintf(list + len, sizeof(list) - len, "%s%s",
                                 len ? "," : "", e->valuestring);
    }

    assert_string_equal(list, endpoints);
}


static void
test_models_all(void **state)
{
    long           n;
    cJSON         *root, *data;
    tg_facts       f = F("", TG_EP_NONE);
    tg_fixture    *fx = *state;
    char           buf[8192];

    root = models(fx, &f);
    data = cJSON_GetObjectItem(root, "data");

    assert_int_equal(cJSON_GetArraySize(data), 6);
    assert_model(cJSON_GetArrayItem(data, 0), "qwen",
                 "chat,embeddings,speech,transcriptions,responses");
    assert_model(cJSON_GetArrayItem(data, 1), "smart",
                 "chat,embeddings,speech,transcriptions,responses");
    assert_model(cJSON_GetArrayItem(data, 2), "cloud",
                 "chat,embeddings,responses");
    assert_model(cJSON_GetArrayItem(data, 3), "embed",
                 "chat,embeddings,responses");
    assert_model(cJSON_GetArrayItem(data, 4), "mixed",
                 "chat,embeddings,responses");

    /* escaping survives a round trip */
    assert_model(cJSON_GetArrayItem(data, 5), "we\"ird\\</script>'\u00e9",
                 "chat,embeddings,speech,transcriptions,responses");

    cJSON_Delete(root);

    /* the raw text: quotes, backslashes and newlines escaped */
    n = tg_models_json(fx->policy, &f, buf, sizeof(buf));
    assert_true(n > 0);
    assert_non_null(strstr(buf, "\"id\":\"we\\\"ird\\\\</script>'"));
    assert_null(strchr(buf, '\n'));
    {
        const char  *start = "{\"object\":\"list\",\"data\":[{\"id\":\"qwen\","
                             "\"object\":\"model\",\"created\":1790000000,"
                             "\"owned_by\":\"tailgate\",\"endpoints\":"
                             "[\"chat\",";

        assert_memory_equal(buf, start, strlen(start));
    }
}


static void
test_models_filtered(void **state)
{
    cJSON         *root, *data;
    tg_facts       f = F("", TG_EP_NONE);
    tg_fixture    *fx = *state;
    tg_str         allow[] = { { "cloud", 5 }, { "mixed", 5 },
                               { "nonexistent", 11 } };

    /* private: only routes with a local/private step, only their endpoints */
    f.tags = tg_private;
    f.ntags = 2;
    root = models(fx, &f);
    data = cJSON_GetObjectItem(root, "data");
    assert_int_equal(cJSON_GetArraySize(data), 5);
    assert_model(cJSON_GetArrayItem(data, 0), "qwen",
                 "chat,embeddings,speech,transcriptions,responses");
    assert_model(cJSON_GetArrayItem(data, 1), "smart",
                 "chat,embeddings,speech,transcriptions,responses");
    /* lan and localchat serve chat only: responses too, translated */
    assert_model(cJSON_GetArrayItem(data, 2), "embed",
                 "chat,embeddings,responses");
    assert_model(cJSON_GetArrayItem(data, 3), "mixed", "chat,responses");
    cJSON_Delete(root);

    /* allowlist */
    f.ntags = 0;
    f.allow = allow;
    f.nallow = 3;
    root = models(fx, &f);
    data = cJSON_GetObjectItem(root, "data");
    assert_int_equal(cJSON_GetArraySize(data), 2);
    assert_model(cJSON_GetArrayItem(data, 0), "cloud",
                 "chat,embeddings,responses");
    assert_model(cJSON_GetArrayItem(data, 1), "mixed",
                 "chat,embeddings,responses");
    cJSON_Delete(root);

    /* both */
    f.tags = tg_private;
    f.ntags = 2;
    root = models(fx, &f);
    data = cJSON_GetObjectItem(root, "data");
    assert_int_equal(cJSON_GetArraySize(data), 1);
    assert_model(cJSON_GetArrayItem(data, 0), "mixed", "chat,responses");
    cJSON_Delete(root);

    /* by endpoint */
    f = F("", TG_EP_SPEECH);
    root = models(fx, &f);
    data = cJSON_GetObjectItem(root, "data");
    assert_int_equal(cJSON_GetArraySize(data), 3);
    assert_model(cJSON_GetArrayItem(data, 0), "qwen",
                 "chat,embeddings,speech,transcriptions,responses");
    cJSON_Delete(root);

    /* nothing left: an empty list */
    f = F("", TG_EP_NONE);
    f.allow = (tg_str[]) { S("gpt-4o") };
    f.nallow = 1;
    root = models(fx, &f);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(root, "data")),
                     0);
    cJSON_Delete(root);
}


/* GET /v1/models/{id}: one model object, for this client only */

static void
test_models_one(void **state)
{
    long         n;
    char         buf[8192];
    cJSON       *m;
    tg_facts     f = F("cloud", TG_EP_NONE);
    tg_fixture  *fx = *state;

    n = tg_models_json(fx->policy, &f, buf, sizeof(buf));
    assert_true(n > 0);

    m = cJSON_Parse(buf);
    assert_non_null(m);
    assert_model(m, "cloud", "chat,embeddings,responses");
    cJSON_Delete(m);

    f = F("gpt-4o", TG_EP_NONE);
    assert_int_equal(tg_models_json(fx->policy, &f, buf, sizeof(buf)),
                     TG_MODELS_NOT_FOUND);

    /* a route the allowlist leaves out does not exist for this client */
    f = F("cloud", TG_EP_NONE);
    f.allow = (tg_str[]) { S("qwen") };
    f.nallow = 1;
    assert_int_equal(tg_models_json(fx->policy, &f, buf, sizeof(buf)),
                     TG_MODELS_NOT_FOUND);

    /* nor one without a local/private step, for a private client */
    f = F("cloud", TG_EP_NONE);
    f.tags = tg_private;
    f.ntags = 2;
    assert_int_equal(tg_models_json(fx->policy, &f, buf, sizeof(buf)),
                     TG_MODELS_NOT_FOUND);
}


static void
test_models_buffer_too_small(void **state)
{
    long         n, full;
    char         buf[8192];
    tg_facts     f = F("", TG_EP_NONE);
    tg_fixture  *fx = *state;

    full = tg_models_json(fx->policy, &f, buf, sizeof(buf));
    assert_true(full > 0);

    n = tg_models_json(fx->policy, &f, buf, 100);
    assert_int_equal(n, -1);

    n = tg_models_json(fx->policy, &f, buf, 0);
    assert_int_equal(n, -1);

    /* the list, its NUL and the byte snprintf() wants for its own */
    n = tg_models_json(fx->policy, &f, buf, (size_t) full + 2);
    assert_int_equal(n, full);

    n = tg_models_json(fx->policy, &f, buf, (size_t) full);
    assert_int_equal(n, -1);
}


/*
 * Pages of every size: joined, they are the whole list, each model once,
 * each page ending at a model, a pattern's models listed and paged too.
 */

static void
test_models_pages(void **unused)
{
    long             n, whole_len;
    char             whole[16384], joined[16384], page[16384];
    char             cursor[512];
    size_t           size, len, pages;
    tg_str           c;
    tg_facts         f = F("", TG_EP_NONE);
    tg_policy       *p;
    const char      *rest;
    const tg_route  *last;

    (void) unused;

    p = tg_test_policy("{ 'listen': { 'path': '/x' },"
        "'providers': {"
        "  'l': { 'upstream': 'u1', 'zone': 'local', 'endpoints': ['chat'] } },"
        "'routes': {"
        "  'a': { 'steps': [ { 'provider': 'l', 'model': 'm' } ] },"
        "  'p/*': { 'steps': [ { 'provider': 'l', 'model': 'x/*' } ],"
        "           'models': ['one', 'two', 'three'], 'owned_by': 'o\\\"o' },"
        "  'b': { 'steps': [ { 'provider': 'l', 'model': 'm' } ] },"
        "  'c': { 'steps': [ { 'provider': 'l', 'model': 'm' } ] } } }");

    whole_len = tg_models_json(p, &f, whole, sizeof(whole));
    assert_true(whole_len > 0);
    assert_non_null(strstr(whole, "\"id\":\"p/two\""));
    assert_null(strstr(whole, "\"id\":\"p/*\""));
    assert_non_null(strstr(whole, "\"owned_by\":\"o\\\"o\""));

    for (size = 64; size < (size_t) whole_len + 8; size += 7) {
        len = 0;
        pages = 0;
        c.data = NULL;
        c.len = 0;

        for ( ;; ) {
            n = tg_models_page(p, &f, pages ? &c : NULL, page, size, &last,
                               &rest);

            if (n == -1) {
                /* a page that cannot hold one model: never below ~250 */
                assert_true(size < 300);
                goto next_size;
            }

            assert_true(n > 0);
            assert_true((size_t) n < size);
            memcpy(joined + len, page, (size_t) n);
            len += (size_t) n;
            pages++;

            if (last == NULL) {
                break;
            }

            snprintf(cursor, sizeof(cursor), "%.*s%s",
                     (int) (rest ? last->prefix_len : last->name_len),
                     last->name, rest ? rest : "");
            c.data = cursor;
            c.len = strlen(cursor);
            assert_true(pages < 100);
        }

        joined[len] = '\0';
        assert_string_equal(joined, whole);

    next_size:
        continue;
    }

    /* after a cursor a reload took away: the end */
    c = (tg_str) S("gone");
    n = tg_models_page(p, &f, &c, page, sizeof(page), &last, &rest);
    assert_string_equal(page, "]}");
    assert_null(last);

    /* one model of the pattern, listed or not */
    f = F("p/seven", TG_EP_NONE);
    n = tg_models_page(p, &f, NULL, page, sizeof(page), &last, &rest);
    assert_true(n > 0);
    assert_non_null(strstr(page, "\"id\":\"p/seven\""));

    f = F("p/*", TG_EP_NONE);
    assert_int_equal(tg_models_page(p, &f, NULL, page, sizeof(page), &last,
                                    &rest), TG_MODELS_NOT_FOUND);

    tg_policy_free(p);
}


/* a provider's own list (model_list.c) */

static bool
keep_but_free(const char *name, size_t len, void *data)
{
    size_t  *asked = data;

    (*asked)++;

    return !(len >= 5 && memcmp(name + len - 5, ":free", 5) == 0);
}


static void
test_model_list_read(void **unused)
{
    char          why[128];
    size_t        n, asked;
    const char  **names;

    (void) unused;

    /* OpenRouter's shape, with what a list should not have */
    static const char  text[] =
        "{\"data\":[{\"id\":\"openai/gpt-4o\",\"context_length\":128000},"
        "{\"id\":\"a:free\"},{\"id\":\"\"},{\"id\":7},{\"name\":\"x\"},"
        "\"loose\",null,{\"id\":\"star*\"},{\"id\":\"ctl\\u0001\"},"
        "{\"id\":\"nul\\u0000tail\"},{\"id\":\"openai/gpt-4o\"},"
        "{\"id\":\"b\"},{\"id\":\"openai/gpt-4o\"},{\"id\":\"toolongname\"},"
        "{\"id\":\"b\"},{\"id\":\"c\"}],\"object\":\"list\"}";

    asked = 0;
    assert_int_equal(tg_model_list_read(text, sizeof(text) - 1, 10,
                                        keep_but_free, &asked, &names, &n,
                                        why, sizeof(why)), 0);

    /* in the provider's order, each once; "nul\0tail" is read as "nul";
       "toolongname" is longer than 10 */
    assert_int_equal(n, 3);
    assert_string_equal(names[0], "nul");
    assert_string_equal(names[1], "b");
    assert_string_equal(names[2], "c");
    assert_null(strstr(names[0], "openai"));
    free(names);

    /* max_len 20: openai/gpt-4o fits, and is kept first */
    assert_int_equal(tg_model_list_read(text, sizeof(text) - 1, 20,
                                        keep_but_free, &asked, &names, &n,
                                        why, sizeof(why)), 0);
    assert_int_equal(n, 5);
    assert_string_equal(names[0], "openai/gpt-4o");
    assert_string_equal(names[1], "nul");
    assert_string_equal(names[2], "b");
    assert_string_equal(names[3], "toolongname");
    assert_string_equal(names[4], "c");
    free(names);

    /* an empty list is a list */
    assert_int_equal(tg_model_list_read("{\"data\":[]}", 11, 20,
                                        keep_but_free, &asked, &names, &n,
                                        why, sizeof(why)), 0);
    assert_int_equal(n, 0);
    free(names);

    /* not a model list */
    static const char *const  bad[] = {
        "", "[", "null", "[]", "{}", "{\"data\":{}}", "{\"data\":\"x\"}",
        "{\"Data\":[]}", "{\"data\":[]", "\"data\"",
    };

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        why[0] = '\0';
        names = (const char **) &why;
        assert_int_equal(tg_model_list_read(bad[i], strlen(bad[i]), 20,
                                            keep_but_free, &asked, &names,
                                            &n, why, sizeof(why)), -1);
        assert_null(names);
        assert_true(why[0] != '\0');
    }
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_models_all, setup, teardown),
        cmocka_unit_test_setup_teardown(test_models_filtered, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_models_one, setup, teardown),
        cmocka_unit_test_setup_teardown(test_models_buffer_too_small, setup,
                                        teardown),
        cmocka_unit_test(test_models_pages),
        cmocka_unit_test(test_model_list_read),
    };

    return cmocka_run_group_tests_name("models", tests, NULL, NULL);
}
