
/*
 * Copyright (C) The Tailgate authors
 *
 * The module's JSON request scanner (ngx_tailgate_json.c) on a request
 * body, as ngx_tailgate_body_classify() calls it, and what the rest of the
 * module does with a body it accepted:
 *
 *   - ngx_tailgate_json_scan(): the facts point into the body, the model
 *     token is a JSON string there;
 *   - ngx_tailgate_json_members()/member() over the accepted body and every
 *     object in it (request edits): they never fail on it, and they find
 *     "model" where the scanner found it;
 *   - ngx_tailgate_json_quote() of the decoded model (the model rewrite),
 *     scanned back: the same model;
 *   - ngx_tailgate_json_strings() on the same bytes (token claims);
 *   - the body as the model rewrite leaves it: the bytes before the model
 *     token, another model, the bytes after it, scanned again;
 *   - another JSON parser, cJSON, as a provider would read the body: where
 *     it reads the body at all, it must read the model, "stream" and
 *     "tools" the gateway routed on, and find no second "model" in
 *     another letter case.  cJSON keeps keys as C strings: "model\u0000x"
 *     is "model" to it, as to any parser that does.
 */


#include "fuzz_ngx.h"
#include "ngx_tailgate_scan.h"

#include <cjson/cJSON.h>
#include <string.h>


static void fuzz_json_members(u_char *p, u_char *end,
    ngx_tailgate_facts_t *facts, ngx_uint_t depth);
static void fuzz_json_requote(ngx_pool_t *pool, ngx_str_t *model);
static void fuzz_json_rewrite(ngx_pool_t *pool, u_char *p, u_char *end,
    ngx_tailgate_facts_t *facts);
static void fuzz_json_oracle(u_char *p, size_t size,
    ngx_tailgate_facts_t *facts);


int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_ngx_init();
    return 0;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    u_char                *p, *end;
    ngx_int_t              rc;
    ngx_str_t             *s;
    ngx_uint_t             i;
    ngx_pool_t            *pool;
    ngx_array_t           *strings;
    ngx_tailgate_scan_error_t  error;
    ngx_tailgate_facts_t   facts;

    pool = fuzz_ngx_pool();

    /* libFuzzer's copy of the input is exactly size bytes: past it is red */
    p = (u_char *) data;
    end = p + size;

    ngx_memzero(&facts, sizeof(ngx_tailgate_facts_t));
    error.err = NGX_TAILGATE_ERRS;
    error.arg = NULL;

    rc = ngx_tailgate_json_scan(pool, p, end, &facts, &error);

    FUZZ_CHECK(rc == NGX_OK || rc == NGX_DECLINED);

    if (rc == NGX_DECLINED) {
        /* the client is always told why: a row of the error table */
        FUZZ_CHECK(error.err < NGX_TAILGATE_ERRS);

    } else {
        FUZZ_CHECK(facts.model_start >= p && facts.model_end <= end);
        FUZZ_CHECK(facts.model_end - facts.model_start >= 2);
        FUZZ_CHECK(facts.model_start[0] == '"' && facts.model_end[-1] == '"');

        /* decoded, never longer than written */
        FUZZ_CHECK(facts.model.len
                   <= (size_t) (facts.model_end - facts.model_start - 2));

        if (facts.model.data >= p && facts.model.data < end) {
            FUZZ_CHECK(facts.model.data == facts.model_start + 1);
            FUZZ_CHECK(facts.model.len
                       == (size_t) (facts.model_end - facts.model_start - 2));
        }

        fuzz_json_members(p, end, &facts, 0);
        fuzz_json_requote(pool, &facts.model);
        fuzz_json_rewrite(pool, p, end, &facts);
        fuzz_json_oracle(p, size, &facts);
    }

    rc = ngx_tailgate_json_strings(pool, p, end, &strings);

    FUZZ_CHECK(rc == NGX_OK || rc == NGX_ERROR);

    if (rc == NGX_OK) {
        s = strings->elts;

        for (i = 0; i < strings->nelts; i++) {
            FUZZ_CHECK(s[i].len <= size);
        }
    }

    ngx_destroy_pool(pool);

    return 0;
}


/*
 * The object at p (validated by the scan) member by member, as the
 * request edits walk it; objects inside it too, as "key.member" edits do.
 */

static void
fuzz_json_members(u_char *p, u_char *end, ngx_tailgate_facts_t *facts,
    ngx_uint_t depth)
{
    u_char                      *last;
    ngx_int_t                    rc;
    ngx_uint_t                   n, models;
    ngx_tailgate_json_iter_t     it;
    ngx_tailgate_json_member_t   m;

    rc = ngx_tailgate_json_members(&it, p, end);

    if (depth == 0) {
        FUZZ_CHECK(rc == NGX_OK);

    } else if (rc != NGX_OK) {
        FUZZ_CHECK(rc == NGX_DECLINED);
        return;
    }

    last = p;
    models = 0;

    for (n = 0; /* void */; n++) {
        rc = ngx_tailgate_json_member(&it, &m);

        if (rc == NGX_DONE) {
            break;
        }

        /* a validated object has no member that does not parse */
        FUZZ_CHECK(rc == NGX_OK);

        FUZZ_CHECK(m.key_start >= last && m.key_start[0] == '"');
        FUZZ_CHECK(m.value_start > m.key_start);
        FUZZ_CHECK(m.value_end > m.value_start && m.value_end <= end);
        FUZZ_CHECK(m.name_len >= -1
                   && m.name_len <= NGX_TAILGATE_JSON_NAME_MAX);

        /* a name is read up to a NUL, as parsers of C strings read it */
        FUZZ_CHECK(m.name_len <= 0 || memchr(m.name, '\0', m.name_len) == NULL);

        last = m.value_end;

        if (depth == 0 && m.name_len == 5
            && ngx_strncmp(m.name, "model", 5) == 0)
        {
            /* where the scanner saw the model, the edits see it */
            FUZZ_CHECK(m.value_start == facts->model_start);
            FUZZ_CHECK(m.value_end == facts->model_end);
            models++;
        }

        if (depth == 0 && m.name_len == 6
            && ngx_strncmp(m.name, "stream", 6) == 0)
        {
            FUZZ_CHECK(facts->stream
                       == (m.value_end - m.value_start == 4
                           && ngx_strncmp(m.value_start, "true", 4) == 0));
        }

        if (m.value_start[0] == '{' && depth < 4) {
            fuzz_json_members(m.value_start, m.value_end, facts, depth + 1);
        }
    }

    if (depth == 0) {
        FUZZ_CHECK(models <= 1);
    }
}


/* the model as the rewrite writes it, scanned again: the same model */

static void
fuzz_json_requote(ngx_pool_t *pool, ngx_str_t *model)
{
    u_char                *body, *q;
    ngx_int_t              rc;
    ngx_str_t              quoted;
    ngx_tailgate_scan_error_t  error;
    ngx_tailgate_facts_t   facts;

    rc = ngx_tailgate_json_quote(pool, model, &quoted);
    FUZZ_CHECK(rc == NGX_OK);

    FUZZ_CHECK(quoted.len >= model->len + 2);
    FUZZ_CHECK(quoted.data[0] == '"' && quoted.data[quoted.len - 1] == '"');

    body = malloc(quoted.len + sizeof("{\"model\":}") - 1);
    FUZZ_CHECK(body != NULL);

    q = ngx_cpymem(body, "{\"model\":", sizeof("{\"model\":") - 1);
    q = ngx_cpymem(q, quoted.data, quoted.len);
    *q++ = '}';

    ngx_memzero(&facts, sizeof(ngx_tailgate_facts_t));
    error.err = NGX_TAILGATE_ERRS;
    error.arg = NULL;

    rc = ngx_tailgate_json_scan(pool, body, q, &facts, &error);

    FUZZ_CHECK(rc == NGX_OK);
    FUZZ_CHECK(facts.model.len == model->len);
    FUZZ_CHECK(ngx_memcmp(facts.model.data, model->data, model->len) == 0);

    free(body);
}


/* the body with another model, as ngx_tailgate_body_rewrite_model() does */

static void
fuzz_json_rewrite(ngx_pool_t *pool, u_char *p, u_char *end,
    ngx_tailgate_facts_t *facts)
{
    u_char                *body, *q;
    size_t                 len;
    ngx_int_t              rc;
    ngx_str_t              model, quoted;
    ngx_tailgate_scan_error_t  error;
    ngx_tailgate_facts_t   again;

    ngx_str_set(&model, "provider/m\"o\\del\n");

    FUZZ_CHECK(ngx_tailgate_json_quote(pool, &model, &quoted) == NGX_OK);

    len = (facts->model_start - p) + quoted.len + (end - facts->model_end);

    body = malloc(len);
    FUZZ_CHECK(body != NULL);

    q = ngx_cpymem(body, p, facts->model_start - p);
    q = ngx_cpymem(q, quoted.data, quoted.len);
    q = ngx_cpymem(q, facts->model_end, end - facts->model_end);

    ngx_memzero(&again, sizeof(ngx_tailgate_facts_t));
    error.err = NGX_TAILGATE_ERRS;
    error.arg = NULL;

    rc = ngx_tailgate_json_scan(pool, body, q, &again, &error);

    FUZZ_CHECK(rc == NGX_OK);
    FUZZ_CHECK(again.model.len == model.len);
    FUZZ_CHECK(ngx_memcmp(again.model.data, model.data, model.len) == 0);
    FUZZ_CHECK(again.model_start == body + (facts->model_start - p));
    FUZZ_CHECK(again.stream == facts->stream && again.tools == facts->tools);

    free(body);
}


/* what a provider that parses with cJSON reads */

static void
fuzz_json_oracle(u_char *p, size_t size, ngx_tailgate_facts_t *facts)
{
    cJSON  *root, *model, *stream, *tools;

    root = cJSON_ParseWithLengthOpts((const char *) p, size, NULL, 0);

    if (root == NULL) {
        /* cJSON refuses more (broken surrogate pairs, deep nesting) */
        return;
    }

    FUZZ_CHECK(cJSON_IsObject(root));

    model = cJSON_GetObjectItemCaseSensitive(root, "model");

    FUZZ_CHECK(model != NULL && cJSON_IsString(model));

    /* a model with a NUL is the string up to it for cJSON */

    if (memchr(facts->model.data, '\0', facts->model.len) == NULL) {
        FUZZ_CHECK(strlen(model->valuestring) == facts->model.len);
        FUZZ_CHECK(ngx_memcmp(model->valuestring, facts->model.data,
                              facts->model.len) == 0);
    }

    /* no "Model" that a parser matching keys in any case would take */
    FUZZ_CHECK(cJSON_GetObjectItem(root, "model") == model);

    stream = cJSON_GetObjectItemCaseSensitive(root, "stream");
    FUZZ_CHECK(cJSON_GetObjectItem(root, "stream") == stream);
    FUZZ_CHECK(facts->stream == (stream != NULL && cJSON_IsTrue(stream)));

    tools = cJSON_GetObjectItemCaseSensitive(root, "tools");
    FUZZ_CHECK(cJSON_GetObjectItem(root, "tools") == tools);
    FUZZ_CHECK(facts->tools == (tools != NULL && cJSON_IsArray(tools)
                                && cJSON_GetArraySize(tools) > 0));

    cJSON_Delete(root);
}
