
/*
 * Copyright (C) The Tailgate authors
 *
 * translate_req: a Responses API request rewritten as a chat completions
 * request (ngx_tailgate_translate_req.c), on a body the module's scanner
 * accepted (ngx_tailgate_json_scan(), as the precontent phase runs it
 * first), for a provider model that needs escaping.
 *
 * Input: one byte of flags (bit 0: ask for a stream's usage), then the
 * body.  Checked besides the sanitizers:
 *   - it is translated or refused, never both, never neither;
 *   - a refusal is a 400 whose body is an OpenAI error (to cJSON): a
 *     message, "invalid_request_error", a param that is a string or null;
 *   - a translation is a JSON object (to cJSON) with the provider model,
 *     a non-empty "messages" array of messages whose roles and fields are
 *     chat's, and no member chat does not know;
 *   - where cJSON reads the request's "input" as a string, the chat
 *     request's last message is the user's, with that text.
 */


#include "fuzz_ngx.h"
#include "ngx_tailgate_common.h"
#include "ngx_tailgate_scan.h"

#include <cjson/cJSON.h>
#include <string.h>


static ngx_uint_t   fuzz_sent;
static ngx_uint_t   fuzz_status;
static ngx_str_t    fuzz_body;


static void fuzz_check_refusal(void);
static void fuzz_check_chat(ngx_str_t *chat, ngx_str_t *model,
    const uint8_t *in, size_t in_len, ngx_uint_t stream_usage);
static void fuzz_check_message(cJSON *m);


/* what the module's response.c does with a refusal: here, kept */

ngx_int_t
ngx_tailgate_send_json(ngx_http_request_t *r, ngx_uint_t status,
    ngx_str_t *body)
{
    fuzz_sent++;
    fuzz_status = status;

    fuzz_body.data = ngx_pnalloc(r->pool, body->len + 1);
    FUZZ_CHECK(fuzz_body.data != NULL);
    ngx_memcpy(fuzz_body.data, body->data, body->len);
    fuzz_body.data[body->len] = '\0';
    fuzz_body.len = body->len;

    return NGX_HTTP_BAD_REQUEST;
}


int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_ngx_init();
    return 0;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    u_char                     *p, *end;
    ngx_int_t                   rc, final;
    ngx_str_t                   model, chat;
    ngx_pool_t                 *pool;
    ngx_connection_t            c;
    ngx_http_request_t          r;
    ngx_tailgate_scan_error_t   error;
    ngx_http_tailgate_ctx_t     ctx;

    if (size < 1) {
        return 0;
    }

    pool = fuzz_ngx_pool();

    /* the body in a buffer of exactly its size, as the scanner sees it */
    p = ngx_pnalloc(pool, size - 1 ? size - 1 : 1);
    FUZZ_CHECK(p != NULL);
    ngx_memcpy(p, data + 1, size - 1);
    end = p + size - 1;

    ngx_memzero(&ctx, sizeof(ngx_http_tailgate_ctx_t));
    error.err = NGX_TAILGATE_ERRS;
    error.arg = NULL;

    if (ngx_tailgate_json_scan(pool, p, end, &ctx.facts, &error) != NGX_OK) {
        ngx_destroy_pool(pool);
        return 0;
    }

    ngx_memzero(&c, sizeof(ngx_connection_t));
    ngx_memzero(&r, sizeof(ngx_http_request_t));
    c.log = &fuzz_ngx_log;
    r.connection = &c;
    r.pool = pool;

    ctx.body = p;
    ctx.body_len = end - p;
    ctx.stream_usage = data[0] & 1;

    ngx_str_set(&model, "provider/\"model\"\n\xe2\x82\xac");

    fuzz_sent = 0;
    final = 0;

    rc = ngx_tailgate_translate_request(&r, &ctx, &model, &chat, &final);

    FUZZ_CHECK(rc == NGX_OK || rc == NGX_DECLINED);

    if (rc == NGX_DECLINED) {
        FUZZ_CHECK(fuzz_sent == 1 && final == NGX_HTTP_BAD_REQUEST);
        fuzz_check_refusal();

    } else {
        FUZZ_CHECK(fuzz_sent == 0);
        fuzz_check_chat(&chat, &model, data + 1, size - 1, ctx.stream_usage
                                                           && ctx.facts.stream);
    }

    ngx_destroy_pool(pool);

    return 0;
}


static void
fuzz_check_refusal(void)
{
    cJSON  *doc, *e, *v;

    FUZZ_CHECK(fuzz_status == NGX_HTTP_BAD_REQUEST);

    doc = cJSON_Parse((char *) fuzz_body.data);

    if (doc == NULL) {
        fprintf(stderr, "fuzz: the refusal is not JSON: %s\n",
                fuzz_body.data);
    }

    FUZZ_CHECK(doc != NULL);

    e = cJSON_GetObjectItemCaseSensitive(doc, "error");
    FUZZ_CHECK(cJSON_IsObject(e));

    v = cJSON_GetObjectItemCaseSensitive(e, "message");
    FUZZ_CHECK(cJSON_IsString(v) && v->valuestring[0] != '\0');

    v = cJSON_GetObjectItemCaseSensitive(e, "type");
    FUZZ_CHECK(cJSON_IsString(v)
               && strcmp(v->valuestring, "invalid_request_error") == 0);

    v = cJSON_GetObjectItemCaseSensitive(e, "param");
    FUZZ_CHECK(cJSON_IsString(v) || cJSON_IsNull(v));

    v = cJSON_GetObjectItemCaseSensitive(e, "code");
    FUZZ_CHECK(cJSON_IsString(v) || cJSON_IsNull(v));

    cJSON_Delete(doc);
}


static void
fuzz_check_chat(ngx_str_t *chat, ngx_str_t *model, const uint8_t *in,
    size_t in_len, ngx_uint_t stream_usage)
{
    char         *text;
    cJSON        *doc, *v, *m, *last, *req, *input;
    ngx_uint_t    i, known;

    static const char  *members[] = {
        "model", "messages", "parallel_tool_calls", "max_tokens",
        "temperature", "top_p", "stream", "user", "stream_options", "tools",
        "tool_choice", "response_format", "reasoning_effort", NULL
    };

    text = strndup((char *) chat->data, chat->len);
    FUZZ_CHECK(text != NULL);
    doc = cJSON_Parse(text);

    if (doc == NULL || strlen(text) != chat->len) {
        fprintf(stderr, "fuzz: the chat request is not JSON: %s\n", text);
    }

    free(text);
    FUZZ_CHECK(doc != NULL && cJSON_IsObject(doc));

    for (v = doc->child; v; v = v->next) {
        known = 0;

        for (i = 0; members[i]; i++) {
            known |= (strcmp(v->string, members[i]) == 0);
        }

        if (!known) {
            fprintf(stderr, "fuzz: the chat request has \"%s\"\n", v->string);
        }

        FUZZ_CHECK(known);
    }

    v = cJSON_GetObjectItemCaseSensitive(doc, "model");
    FUZZ_CHECK(cJSON_IsString(v) && strlen(v->valuestring) == model->len
               && memcmp(v->valuestring, model->data, model->len) == 0);

    v = cJSON_GetObjectItemCaseSensitive(doc, "stream_options");
    FUZZ_CHECK(stream_usage ? cJSON_IsObject(v) : v == NULL);

    v = cJSON_GetObjectItemCaseSensitive(doc, "messages");
    FUZZ_CHECK(cJSON_IsArray(v) && cJSON_GetArraySize(v) > 0);

    last = NULL;

    cJSON_ArrayForEach(m, v) {
        fuzz_check_message(m);
        last = m;
    }

    /* a string input is the user's last word */

    text = strndup((const char *) in, in_len);
    FUZZ_CHECK(text != NULL);
    req = cJSON_Parse(text);
    free(text);

    input = req ? cJSON_GetObjectItemCaseSensitive(req, "input") : NULL;

    if (cJSON_IsString(input) && memchr(in, 0, in_len) == NULL) {
        v = cJSON_GetObjectItemCaseSensitive(last, "role");
        FUZZ_CHECK(cJSON_IsString(v) && strcmp(v->valuestring, "user") == 0);

        v = cJSON_GetObjectItemCaseSensitive(last, "content");
        FUZZ_CHECK(cJSON_IsString(v)
                   && strcmp(v->valuestring, input->valuestring) == 0);
    }

    cJSON_Delete(req);
    cJSON_Delete(doc);
}


static void
fuzz_check_message(cJSON *m)
{
    cJSON       *role, *content, *calls, *call, *f, *v;
    const char  *r;

    FUZZ_CHECK(cJSON_IsObject(m));

    role = cJSON_GetObjectItemCaseSensitive(m, "role");
    FUZZ_CHECK(cJSON_IsString(role));
    r = role->valuestring;

    FUZZ_CHECK(strcmp(r, "system") == 0 || strcmp(r, "user") == 0
               || strcmp(r, "assistant") == 0 || strcmp(r, "tool") == 0);

    content = cJSON_GetObjectItemCaseSensitive(m, "content");
    calls = cJSON_GetObjectItemCaseSensitive(m, "tool_calls");

    if (strcmp(r, "assistant") == 0) {
        FUZZ_CHECK(cJSON_IsString(content)
                   || (cJSON_IsNull(content) && cJSON_IsArray(calls)));

        if (calls) {
            FUZZ_CHECK(cJSON_IsArray(calls) && cJSON_GetArraySize(calls) > 0);

            cJSON_ArrayForEach(call, calls) {
                v = cJSON_GetObjectItemCaseSensitive(call, "id");
                FUZZ_CHECK(cJSON_IsString(v));
                v = cJSON_GetObjectItemCaseSensitive(call, "type");
                FUZZ_CHECK(cJSON_IsString(v)
                           && strcmp(v->valuestring, "function") == 0);
                f = cJSON_GetObjectItemCaseSensitive(call, "function");
                FUZZ_CHECK(cJSON_IsObject(f));
                FUZZ_CHECK(cJSON_IsString(
                    cJSON_GetObjectItemCaseSensitive(f, "name")));
                FUZZ_CHECK(cJSON_IsString(
                    cJSON_GetObjectItemCaseSensitive(f, "arguments")));
            }
        }

        return;
    }

    FUZZ_CHECK(calls == NULL);

    if (strcmp(r, "tool") == 0) {
        FUZZ_CHECK(cJSON_IsString(
            cJSON_GetObjectItemCaseSensitive(m, "tool_call_id")));
        FUZZ_CHECK(cJSON_IsString(content));
        return;
    }

    /* system and user: a string, or (user) chat's parts */
    FUZZ_CHECK(cJSON_IsString(content)
               || (strcmp(r, "user") == 0 && cJSON_IsArray(content)));
}
