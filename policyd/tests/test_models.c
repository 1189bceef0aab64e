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

    /* cJSON wants some room to spare (numbers are printed into 26 bytes) */
    n = tg_models_json(fx->policy, &f, buf, (size_t) full + 64);
    assert_int_equal(n, full);
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
    };

    return cmocka_run_group_tests_name("models", tests, NULL, NULL);
}
