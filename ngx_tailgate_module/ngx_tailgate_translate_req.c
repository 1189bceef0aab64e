
/*
 * Copyright (C) The Tailgate authors
 *
 * A Responses API request rewritten as a chat completions request, for a
 * provider that serves only the latter (the DECISION says "translate").
 *
 * The new body is a chain of pieces like the model rewrite's: the few
 * bytes of the chat request's own structure, and runs of the client's
 * bytes for every value that means the same in both - texts, arguments,
 * JSON schemas, tool parameters - so that a long conversation is not
 * copied.  Two strings of JSON text joined are one string, which is how
 * the text parts of one message become one chat message's content.
 *
 * Every member is read and either translated, dropped because dropping it
 * changes nothing the client can see (store, include of encrypted
 * reasoning, metadata, prompt_cache_key ...), or refused with a 400 that
 * names it: a request whose meaning the translation would change is not
 * sent.
 */


#include "ngx_tailgate_common.h"
#include "ngx_tailgate_translate.h"


#define NGX_TAILGATE_XREQ_PARAM  160


typedef struct {
    ngx_http_request_t          *request;
    ngx_array_t                 *pieces;     /* ngx_str_t */
    ngx_uint_t                   messages;   /* written so far */
    ngx_uint_t                   assistant;  /* 1 open, 2 in tool_calls */
    ngx_uint_t                   tools;      /* function tools sent */

    /* why the request is refused */
    const char                  *code;
    u_char                       param[NGX_TAILGATE_XREQ_PARAM];
    size_t                       param_len;
    u_char                       message[512];
    size_t                       message_len;
} ngx_tailgate_xreq_t;


/* the top-level members read: each once */
typedef enum {
    NGX_TAILGATE_XM_INPUT = 0,
    NGX_TAILGATE_XM_INSTRUCTIONS,
    NGX_TAILGATE_XM_TOOLS,
    NGX_TAILGATE_XM_TOOL_CHOICE,
    NGX_TAILGATE_XM_PARALLEL,
    NGX_TAILGATE_XM_MAX_OUTPUT,
    NGX_TAILGATE_XM_TEMPERATURE,
    NGX_TAILGATE_XM_TOP_P,
    NGX_TAILGATE_XM_TEXT,
    NGX_TAILGATE_XM_REASONING,
    NGX_TAILGATE_XM_STREAM,
    NGX_TAILGATE_XM_USER,
    NGX_TAILGATE_XM_MODEL,
    NGX_TAILGATE_XM_STORE,
    NGX_TAILGATE_XM_INCLUDE,
    NGX_TAILGATE_XM_PREVIOUS,
    NGX_TAILGATE_XM_CONVERSATION,
    NGX_TAILGATE_XM_METADATA,
    NGX_TAILGATE_XM_CLIENT_METADATA,
    NGX_TAILGATE_XM_SAFETY,
    NGX_TAILGATE_XM_CACHE_KEY,
    NGX_TAILGATE_XM_SERVICE_TIER,
    NGX_TAILGATE_XM_TRUNCATION,
    NGX_TAILGATE_XM_BACKGROUND,
    NGX_TAILGATE_XM_STREAM_OPTIONS,
    NGX_TAILGATE_XM_COUNT
} ngx_tailgate_xreq_member_e;


static ngx_str_t  ngx_tailgate_xreq_names[] = {
    ngx_string("input"),
    ngx_string("instructions"),
    ngx_string("tools"),
    ngx_string("tool_choice"),
    ngx_string("parallel_tool_calls"),
    ngx_string("max_output_tokens"),
    ngx_string("temperature"),
    ngx_string("top_p"),
    ngx_string("text"),
    ngx_string("reasoning"),
    ngx_string("stream"),
    ngx_string("user"),
    ngx_string("model"),
    ngx_string("store"),
    ngx_string("include"),
    ngx_string("previous_response_id"),
    ngx_string("conversation"),
    ngx_string("metadata"),
    ngx_string("client_metadata"),
    ngx_string("safety_identifier"),
    ngx_string("prompt_cache_key"),
    ngx_string("service_tier"),
    ngx_string("truncation"),
    ngx_string("background"),
    ngx_string("stream_options")
};


typedef struct {
    u_char                      *start;
    u_char                      *end;
} ngx_tailgate_xreq_value_t;


static ngx_int_t ngx_tailgate_xreq_members(ngx_tailgate_xreq_t *x,
    u_char *p, u_char *end, ngx_tailgate_xreq_value_t *v);
static ngx_int_t ngx_tailgate_xreq_harmless(ngx_tailgate_xreq_t *x,
    ngx_tailgate_xreq_value_t *v);
static ngx_int_t ngx_tailgate_xreq_input(ngx_tailgate_xreq_t *x,
    ngx_tailgate_xreq_value_t *v);
static ngx_int_t ngx_tailgate_xreq_item(ngx_tailgate_xreq_t *x,
    ngx_uint_t i, u_char *start, u_char *end);
static ngx_int_t ngx_tailgate_xreq_message(ngx_tailgate_xreq_t *x,
    ngx_uint_t i, ngx_str_t *role, u_char *content, u_char *content_end);
static ngx_int_t ngx_tailgate_xreq_parts(ngx_tailgate_xreq_t *x,
    const char *path, ngx_uint_t i, ngx_uint_t images, u_char *p,
    u_char *end, ngx_uint_t *has_image);
static ngx_int_t ngx_tailgate_xreq_call(ngx_tailgate_xreq_t *x,
    ngx_uint_t i, u_char *start, u_char *end);
static ngx_int_t ngx_tailgate_xreq_output(ngx_tailgate_xreq_t *x,
    ngx_uint_t i, u_char *start, u_char *end);
static ngx_int_t ngx_tailgate_xreq_tools(ngx_tailgate_xreq_t *x,
    ngx_tailgate_xreq_value_t *v);
static ngx_int_t ngx_tailgate_xreq_tool_choice(ngx_tailgate_xreq_t *x,
    ngx_tailgate_xreq_value_t *v);
static ngx_int_t ngx_tailgate_xreq_text(ngx_tailgate_xreq_t *x,
    ngx_tailgate_xreq_value_t *v);
static ngx_int_t ngx_tailgate_xreq_reasoning(ngx_tailgate_xreq_t *x,
    ngx_tailgate_xreq_value_t *v);
static void ngx_tailgate_xreq_close(ngx_tailgate_xreq_t *x);
static ngx_int_t ngx_tailgate_xreq_begin(ngx_tailgate_xreq_t *x);
static ngx_int_t ngx_tailgate_xreq_piece(ngx_tailgate_xreq_t *x,
    u_char *start, u_char *end);
static ngx_int_t ngx_tailgate_xreq_inner(ngx_tailgate_xreq_t *x,
    u_char *start, u_char *end);
static ngx_uint_t ngx_tailgate_xreq_which(ngx_tailgate_json_member_t *m,
    const char *const *names, ngx_uint_t n);
static ngx_uint_t ngx_tailgate_xreq_is(ngx_tailgate_json_member_t *m,
    const char *name);
static ngx_uint_t ngx_tailgate_xreq_equals(u_char *start, u_char *end,
    const char *text);
static ngx_int_t ngx_tailgate_xreq_refuse(ngx_tailgate_xreq_t *x,
    const char *code, const char *fmt, ...);
static ngx_int_t ngx_tailgate_xreq_param(ngx_tailgate_xreq_t *x,
    const char *fmt, ...);
static ngx_int_t ngx_tailgate_xreq_twice(ngx_tailgate_xreq_t *x);
static ngx_int_t ngx_tailgate_xreq_unsupported(ngx_tailgate_xreq_t *x);
static ngx_int_t ngx_tailgate_xreq_type(ngx_tailgate_xreq_t *x,
    const char *expected, u_char c);
static ngx_int_t ngx_tailgate_xreq_send(ngx_http_request_t *r,
    ngx_tailgate_xreq_t *x, ngx_int_t *rc);


#define ngx_tailgate_xreq_text_piece(x, text)                                 \
    ngx_tailgate_xreq_piece(x, (u_char *) text,                               \
                            (u_char *) text + sizeof(text) - 1)

#define ngx_tailgate_xreq_null(v)                                             \
    ((v)->start == NULL || *(v)->start == 'n')

/* the member was given, and not as null */
#define ngx_tailgate_xreq_given(v)  (!ngx_tailgate_xreq_null(v))


/*
 * NGX_OK: *body is the chat request; NGX_DECLINED: the client was sent a
 * 400, and *rc is what to finalize the request with; NGX_ERROR: no memory.
 */

ngx_int_t
ngx_tailgate_translate_request(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx, ngx_str_t *model, ngx_str_t *body,
    ngx_int_t *rc)
{
    u_char                     *p, *end;
    ngx_str_t                   token, *piece;
    ngx_uint_t                  i;
    ngx_tailgate_xreq_t         x;
    ngx_tailgate_xreq_value_t   v[NGX_TAILGATE_XM_COUNT];

    ngx_memzero(&x, sizeof(ngx_tailgate_xreq_t));
    ngx_memzero(v, sizeof(v));

    x.request = r;
    x.pieces = ngx_array_create(r->pool, 64, sizeof(ngx_str_t));
    if (x.pieces == NULL) {
        return NGX_ERROR;
    }

    p = ctx->body;
    end = ctx->body + ctx->body_len;

    switch (ngx_tailgate_xreq_members(&x, p, end, v)) {
    case NGX_OK:
        break;
    case NGX_DECLINED:
        return ngx_tailgate_xreq_send(r, &x, rc);
    default:
        return NGX_ERROR;
    }

    if (ngx_tailgate_json_quote(r->pool, model, &token) != NGX_OK) {
        return NGX_ERROR;
    }

    /* {"model":M,"messages":[...],...} */

    if (ngx_tailgate_xreq_text_piece(&x, "{\"model\":") != NGX_OK
        || ngx_tailgate_xreq_piece(&x, token.data, token.data + token.len)
           != NGX_OK
        || ngx_tailgate_xreq_text_piece(&x, ",\"messages\":[") != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ngx_tailgate_xreq_given(&v[NGX_TAILGATE_XM_INSTRUCTIONS])) {
        if (*v[NGX_TAILGATE_XM_INSTRUCTIONS].start != '"') {
            ngx_tailgate_xreq_param(&x, "instructions");
            (void) ngx_tailgate_xreq_type(&x, "a string",
                                    *v[NGX_TAILGATE_XM_INSTRUCTIONS].start);
            return ngx_tailgate_xreq_send(r, &x, rc);
        }

        if (ngx_tailgate_xreq_begin(&x) != NGX_OK
            || ngx_tailgate_xreq_text_piece(&x,
                                       "{\"role\":\"system\",\"content\":")
               != NGX_OK
            || ngx_tailgate_xreq_piece(&x,
                                       v[NGX_TAILGATE_XM_INSTRUCTIONS].start,
                                       v[NGX_TAILGATE_XM_INSTRUCTIONS].end)
               != NGX_OK
            || ngx_tailgate_xreq_text_piece(&x, "}") != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    switch (ngx_tailgate_xreq_input(&x, &v[NGX_TAILGATE_XM_INPUT])) {
    case NGX_OK:
        break;
    case NGX_DECLINED:
        return ngx_tailgate_xreq_send(r, &x, rc);
    default:
        return NGX_ERROR;
    }

    ngx_tailgate_xreq_close(&x);

    if (x.messages == 0) {
        ngx_tailgate_xreq_param(&x, "input");
        (void) ngx_tailgate_xreq_refuse(&x, "invalid_value",
                               "Invalid value for 'input': the request "
                               "holds no message to send.");
        return ngx_tailgate_xreq_send(r, &x, rc);
    }

    if (ngx_tailgate_xreq_text_piece(&x, "]") != NGX_OK) {
        return NGX_ERROR;
    }

    switch (ngx_tailgate_xreq_tools(&x, &v[NGX_TAILGATE_XM_TOOLS])) {
    case NGX_OK:
        break;
    case NGX_DECLINED:
        return ngx_tailgate_xreq_send(r, &x, rc);
    default:
        return NGX_ERROR;
    }

    /* the members that keep their name and value */

    for (i = NGX_TAILGATE_XM_PARALLEL; i <= NGX_TAILGATE_XM_USER; i++) {
        static const char  *chat[] = {
            "parallel_tool_calls", "max_tokens", "temperature", "top_p",
            NULL, NULL, "stream", "user"
        };
        static const char  *type[] = {
            "t", "0", "0", "0", NULL, NULL, "t", "\""
        };
        static const char  *expected[] = {
            "a boolean", "an integer", "a number", "a number", NULL, NULL,
            "a boolean", "a string"
        };
        const char  *t, *name;
        u_char       c;

        name = chat[i - NGX_TAILGATE_XM_PARALLEL];

        if (name == NULL || !ngx_tailgate_xreq_given(&v[i])) {
            continue;
        }

        /* chat providers refuse it without tools */
        if (i == NGX_TAILGATE_XM_PARALLEL && x.tools == 0) {
            if (*v[i].start != 't' && *v[i].start != 'f') {
                ngx_tailgate_xreq_param(&x, "parallel_tool_calls");
                (void) ngx_tailgate_xreq_type(&x, "a boolean", *v[i].start);
                return ngx_tailgate_xreq_send(r, &x, rc);
            }

            continue;
        }

        t = type[i - NGX_TAILGATE_XM_PARALLEL];
        c = *v[i].start;

        if ((t[0] == 't' && c != 't' && c != 'f')
            || (t[0] == '"' && c != '"')
            || (t[0] == '0' && c != '-' && (c < '0' || c > '9')))
        {
            ngx_tailgate_xreq_param(&x, "%V", &ngx_tailgate_xreq_names[i]);
            (void) ngx_tailgate_xreq_type(&x,
                                expected[i - NGX_TAILGATE_XM_PARALLEL], c);
            return ngx_tailgate_xreq_send(r, &x, rc);
        }

        if (i == NGX_TAILGATE_XM_MAX_OUTPUT) {
            for (p = v[i].start; p < v[i].end; p++) {
                if (*p < '0' || *p > '9') {
                    break;
                }
            }

            if (p < v[i].end || v[i].end - v[i].start > 10) {
                ngx_tailgate_xreq_param(&x, "max_output_tokens");
                (void) ngx_tailgate_xreq_refuse(&x, "invalid_value",
                               "Invalid value for 'max_output_tokens': "
                               "expected a positive integer.");
                return ngx_tailgate_xreq_send(r, &x, rc);
            }
        }

        piece = ngx_array_push(x.pieces);
        if (piece == NULL) {
            return NGX_ERROR;
        }

        piece->len = ngx_strlen(name) + 4;
        piece->data = ngx_pnalloc(r->pool, piece->len);
        if (piece->data == NULL) {
            return NGX_ERROR;
        }

        ngx_sprintf(piece->data, ",\"%s\":", name);

        if (ngx_tailgate_xreq_piece(&x, v[i].start, v[i].end) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    /*
     * The gateway reads a stream's usage, and response.completed carries
     * it: asked for unless the provider is known not to take the option.
     */

    if (ctx->facts.stream && ctx->stream_usage
        && ngx_tailgate_xreq_text_piece(&x,
                            ",\"stream_options\":{\"include_usage\":true}")
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    switch (ngx_tailgate_xreq_tool_choice(&x, &v[NGX_TAILGATE_XM_TOOL_CHOICE]))
    {
    case NGX_OK:
        break;
    case NGX_DECLINED:
        return ngx_tailgate_xreq_send(r, &x, rc);
    default:
        return NGX_ERROR;
    }

    switch (ngx_tailgate_xreq_text(&x, &v[NGX_TAILGATE_XM_TEXT])) {
    case NGX_OK:
        break;
    case NGX_DECLINED:
        return ngx_tailgate_xreq_send(r, &x, rc);
    default:
        return NGX_ERROR;
    }

    switch (ngx_tailgate_xreq_reasoning(&x, &v[NGX_TAILGATE_XM_REASONING])) {
    case NGX_OK:
        break;
    case NGX_DECLINED:
        return ngx_tailgate_xreq_send(r, &x, rc);
    default:
        return NGX_ERROR;
    }

    if (ngx_tailgate_xreq_text_piece(&x, "}") != NGX_OK) {
        return NGX_ERROR;
    }

    /* one contiguous body: request edits read it, and so does a resend */

    body->len = 0;
    piece = x.pieces->elts;

    for (i = 0; i < x.pieces->nelts; i++) {
        body->len += piece[i].len;
    }

    body->data = ngx_pnalloc(r->pool, body->len);
    if (body->data == NULL) {
        return NGX_ERROR;
    }

    p = body->data;

    for (i = 0; i < x.pieces->nelts; i++) {
        p = ngx_cpymem(p, piece[i].data, piece[i].len);
    }

    return NGX_OK;
}


/* the top-level members into v[], refusing what cannot be translated */

static ngx_int_t
ngx_tailgate_xreq_members(ngx_tailgate_xreq_t *x, u_char *p, u_char *end,
    ngx_tailgate_xreq_value_t *v)
{
    ngx_int_t                    rc;
    ngx_uint_t                   i;
    ngx_tailgate_json_iter_t     it;
    ngx_tailgate_json_member_t   m;

    if (ngx_tailgate_json_members(&it, p, end) != NGX_OK) {
        return NGX_ERROR;
    }

    while ((rc = ngx_tailgate_json_member(&it, &m)) == NGX_OK) {
        for (i = 0; i < NGX_TAILGATE_XM_COUNT; i++) {
            if (m.name_len >= 0
                && (size_t) m.name_len == ngx_tailgate_xreq_names[i].len
                && ngx_strncmp(m.name, ngx_tailgate_xreq_names[i].data,
                               m.name_len) == 0)
            {
                break;
            }
        }

        if (i == NGX_TAILGATE_XM_COUNT) {
            if (m.name_len < 0) {
                ngx_tailgate_xreq_param(x, "(a key of over %d bytes)",
                                        NGX_TAILGATE_JSON_NAME_MAX);
            } else {
                ngx_tailgate_xreq_param(x, "%*s", (size_t) m.name_len,
                                        m.name);
            }

            return ngx_tailgate_xreq_unsupported(x);
        }

        if (v[i].start) {
            ngx_tailgate_xreq_param(x, "%V", &ngx_tailgate_xreq_names[i]);
            return ngx_tailgate_xreq_twice(x);
        }

        v[i].start = m.value_start;
        v[i].end = m.value_end;
    }

    if (rc != NGX_DONE) {
        return NGX_ERROR;
    }

    for (i = NGX_TAILGATE_XM_STORE; i < NGX_TAILGATE_XM_COUNT; i++) {
        if (v[i].start == NULL) {
            continue;
        }

        ngx_tailgate_xreq_param(x, "%V", &ngx_tailgate_xreq_names[i]);

        rc = ngx_tailgate_xreq_harmless(x, &v[i]);

        if (rc != NGX_OK) {
            return rc;
        }
    }

    x->param_len = 0;

    if (v[NGX_TAILGATE_XM_INPUT].start == NULL) {
        ngx_tailgate_xreq_param(x, "input");
        return ngx_tailgate_xreq_refuse(x, "missing_required_parameter",
                                        "Missing required parameter: "
                                        "'input'.");
    }

    return NGX_OK;
}


/*
 * Members that a chat request has no place for: dropped where that
 * changes nothing the client sees, else refused.  x->param names it.
 */

static ngx_int_t
ngx_tailgate_xreq_harmless(ngx_tailgate_xreq_t *x,
    ngx_tailgate_xreq_value_t *v)
{
    u_char                    *s, *e;
    ngx_int_t                  rc;
    ngx_uint_t                 i;
    ngx_tailgate_json_iter_t   it;

    u_char  c = *v->start;

    /* param is the member's own name here */

    if (ngx_tailgate_xreq_equals(x->param, x->param + x->param_len,
                                 "previous_response_id")
        || ngx_tailgate_xreq_equals(x->param, x->param + x->param_len,
                                    "conversation"))
    {
        if (c == 'n') {
            return NGX_OK;
        }

        return ngx_tailgate_xreq_refuse(x, "unsupported_parameter",
                           "Unsupported parameter: '%*s': this route's "
                           "provider serves chat completions, which keep "
                           "no conversation state; send the whole "
                           "conversation in 'input' instead.",
                           x->param_len, x->param);
    }

    if (ngx_tailgate_xreq_equals(x->param, x->param + x->param_len,
                                 "include"))
    {
        if (c == 'n') {
            return NGX_OK;
        }

        if (c != '[') {
            return ngx_tailgate_xreq_type(x, "an array", c);
        }

        if (ngx_tailgate_json_elements(&it, v->start, v->end) != NGX_OK) {
            return NGX_ERROR;
        }

        for (i = 0; /* void */; i++) {
            rc = ngx_tailgate_json_element(&it, &s, &e);

            if (rc == NGX_DONE) {
                return NGX_OK;
            }

            if (rc != NGX_OK) {
                return NGX_ERROR;
            }

            /* encrypted reasoning: a chat provider has none to send */

            if (!ngx_tailgate_xreq_equals(s, e,
                                          "\"reasoning.encrypted_content\""))
            {
                ngx_tailgate_xreq_param(x, "include[%ui]", i);
                return ngx_tailgate_xreq_refuse(x, "unsupported_parameter",
                               "Unsupported value in 'include[%ui]': only "
                               "\"reasoning.encrypted_content\" can be "
                               "translated for this route's chat "
                               "completions provider.", i);
            }
        }
    }

    if (ngx_tailgate_xreq_equals(x->param, x->param + x->param_len,
                                 "store")
        || ngx_tailgate_xreq_equals(x->param, x->param + x->param_len,
                                    "background"))
    {
        if (c != 't' && c != 'f' && c != 'n') {
            return ngx_tailgate_xreq_type(x, "a boolean", c);
        }

        if (c == 't' && x->param[0] == 'b') {
            return ngx_tailgate_xreq_refuse(x, "unsupported_parameter",
                               "Unsupported parameter: 'background': a "
                               "chat completions provider answers while "
                               "the request waits.");
        }

        /* store: the gateway keeps nothing, and no provider is asked to */
        return NGX_OK;
    }

    if (ngx_tailgate_xreq_equals(x->param, x->param + x->param_len,
                                 "truncation"))
    {
        if (c == 'n' || ngx_tailgate_xreq_equals(v->start, v->end,
                                                 "\"disabled\""))
        {
            return NGX_OK;
        }

        return ngx_tailgate_xreq_refuse(x, "unsupported_parameter",
                           "Unsupported value: 'truncation' can only be "
                           "\"disabled\" for this route's chat completions "
                           "provider.");
    }

    if (ngx_tailgate_xreq_equals(x->param, x->param + x->param_len,
                                 "metadata")
        || ngx_tailgate_xreq_equals(x->param, x->param + x->param_len,
                                    "client_metadata")
        || ngx_tailgate_xreq_equals(x->param, x->param + x->param_len,
                                    "stream_options"))
    {
        if (c != '{' && c != 'n') {
            return ngx_tailgate_xreq_type(x, "an object", c);
        }

        return NGX_OK;
    }

    /* safety_identifier, prompt_cache_key, service_tier: hints only */

    if (c != '"' && c != 'n') {
        return ngx_tailgate_xreq_type(x, "a string", c);
    }

    return NGX_OK;
}


static ngx_int_t
ngx_tailgate_xreq_input(ngx_tailgate_xreq_t *x, ngx_tailgate_xreq_value_t *v)
{
    u_char                    *s, *e;
    ngx_int_t                  rc;
    ngx_uint_t                 i;
    ngx_tailgate_json_iter_t   it;

    if (*v->start == '"') {
        if (ngx_tailgate_xreq_begin(x) != NGX_OK
            || ngx_tailgate_xreq_text_piece(x,
                                        "{\"role\":\"user\",\"content\":")
               != NGX_OK
            || ngx_tailgate_xreq_piece(x, v->start, v->end) != NGX_OK
            || ngx_tailgate_xreq_text_piece(x, "}") != NGX_OK)
        {
            return NGX_ERROR;
        }

        return NGX_OK;
    }

    if (*v->start != '[') {
        ngx_tailgate_xreq_param(x, "input");
        return ngx_tailgate_xreq_type(x, "a string or an array", *v->start);
    }

    if (ngx_tailgate_json_elements(&it, v->start, v->end) != NGX_OK) {
        return NGX_ERROR;
    }

    for (i = 0; /* void */; i++) {
        rc = ngx_tailgate_json_element(&it, &s, &e);

        if (rc == NGX_DONE) {
            return NGX_OK;
        }

        if (rc != NGX_OK) {
            return NGX_ERROR;
        }

        rc = ngx_tailgate_xreq_item(x, i, s, e);

        if (rc != NGX_OK) {
            return rc;
        }
    }
}


/* one item of "input": a message, a function call or its output */

static ngx_int_t
ngx_tailgate_xreq_item(ngx_tailgate_xreq_t *x, ngx_uint_t i, u_char *start,
    u_char *end)
{
    u_char                      *type, *type_end, *role, *content,
                                *content_end;
    ngx_int_t                    rc;
    ngx_str_t                    name;
    ngx_tailgate_json_iter_t     it;
    ngx_tailgate_json_member_t   m;

    ngx_str_null(&name);

    if (*start != '{') {
        ngx_tailgate_xreq_param(x, "input[%ui]", i);
        return ngx_tailgate_xreq_type(x, "an object", *start);
    }

    type = NULL;
    type_end = NULL;
    role = NULL;
    content = NULL;
    content_end = NULL;

    if (ngx_tailgate_json_members(&it, start, end) != NGX_OK) {
        return NGX_ERROR;
    }

    /* the type first: it says which members belong */

    while ((rc = ngx_tailgate_json_member(&it, &m)) == NGX_OK) {
        if (ngx_tailgate_xreq_is(&m, "type")) {
            if (type) {
                ngx_tailgate_xreq_param(x, "input[%ui].type", i);
                return ngx_tailgate_xreq_twice(x);
            }

            if (*m.value_start != '"') {
                ngx_tailgate_xreq_param(x, "input[%ui].type", i);
                return ngx_tailgate_xreq_type(x, "a string", *m.value_start);
            }

            type = m.value_start;
            type_end = m.value_end;
        }
    }

    if (rc != NGX_DONE) {
        return NGX_ERROR;
    }

    if (type == NULL || ngx_tailgate_xreq_equals(type, type_end,
                                                 "\"message\""))
    {
        if (ngx_tailgate_json_members(&it, start, end) != NGX_OK) {
            return NGX_ERROR;
        }

        while ((rc = ngx_tailgate_json_member(&it, &m)) == NGX_OK) {
            if (ngx_tailgate_xreq_is(&m, "role")) {
                if (role) {
                    ngx_tailgate_xreq_param(x, "input[%ui].role", i);
                    return ngx_tailgate_xreq_twice(x);
                }

                role = m.value_start;

                if (*role != '"') {
                    ngx_tailgate_xreq_param(x, "input[%ui].role", i);
                    return ngx_tailgate_xreq_type(x, "a string", *role);
                }

                if (ngx_tailgate_xreq_equals(role, m.value_end,
                                             "\"developer\"")
                    || ngx_tailgate_xreq_equals(role, m.value_end,
                                                "\"system\""))
                {
                    ngx_str_set(&name, "system");

                } else if (ngx_tailgate_xreq_equals(role, m.value_end,
                                                    "\"user\""))
                {
                    ngx_str_set(&name, "user");

                } else if (ngx_tailgate_xreq_equals(role, m.value_end,
                                                    "\"assistant\""))
                {
                    ngx_str_set(&name, "assistant");

                } else {
                    ngx_tailgate_xreq_param(x, "input[%ui].role", i);
                    return ngx_tailgate_xreq_refuse(x, "invalid_value",
                               "Invalid value for 'input[%ui].role': "
                               "expected \"user\", \"assistant\", "
                               "\"system\" or \"developer\".", i);
                }

            } else if (ngx_tailgate_xreq_is(&m, "content")) {
                if (content) {
                    ngx_tailgate_xreq_param(x, "input[%ui].content", i);
                    return ngx_tailgate_xreq_twice(x);
                }

                content = m.value_start;
                content_end = m.value_end;

            } else if (!ngx_tailgate_xreq_is(&m, "type")
                       && !ngx_tailgate_xreq_is(&m, "id")
                       && !ngx_tailgate_xreq_is(&m, "status"))
            {
                ngx_tailgate_xreq_param(x, "input[%ui].%*s", i,
                                        (size_t) ngx_max(m.name_len, 0),
                                        m.name);
                return ngx_tailgate_xreq_unsupported(x);
            }
        }

        if (rc != NGX_DONE) {
            return NGX_ERROR;
        }

        if (role == NULL || content == NULL) {
            ngx_tailgate_xreq_param(x, "input[%ui].%s", i,
                                    role ? "content" : "role");
            return ngx_tailgate_xreq_refuse(x, "missing_required_parameter",
                               "Missing required parameter: '%*s'.",
                               x->param_len, x->param);
        }

        return ngx_tailgate_xreq_message(x, i, &name, content, content_end);
    }

    if (ngx_tailgate_xreq_equals(type, type_end, "\"function_call\"")) {
        return ngx_tailgate_xreq_call(x, i, start, end);
    }

    if (ngx_tailgate_xreq_equals(type, type_end, "\"function_call_output\"")) {
        return ngx_tailgate_xreq_output(x, i, start, end);
    }

    /*
     * Reasoning a provider of the Responses API sent earlier: a chat
     * provider neither takes it nor needs it to go on.
     */

    if (ngx_tailgate_xreq_equals(type, type_end, "\"reasoning\"")) {
        return NGX_OK;
    }

    /* a client that trusts the provider to have kept what it answered */

    if (ngx_tailgate_xreq_equals(type, type_end, "\"item_reference\"")) {
        ngx_tailgate_xreq_param(x, "input[%ui].type", i);

        return ngx_tailgate_xreq_refuse(x, "unsupported_parameter",
                           "Unsupported value: 'input[%ui].type' "
                           "\"item_reference\": this route's chat "
                           "completions provider keeps no state, and neither "
                           "does the gateway; send the item itself (the "
                           "Vercel AI SDK does with providerOptions "
                           "{ openai: { store: false } }).", i);
    }

    ngx_tailgate_xreq_param(x, "input[%ui].type", i);

    return ngx_tailgate_xreq_refuse(x, "unsupported_parameter",
                           "Unsupported value: 'input[%ui].type' %*s cannot "
                           "be translated for this route's chat completions "
                           "provider.", i, (size_t) ngx_min(type_end - type,
                                                            64), type);
}


static ngx_int_t
ngx_tailgate_xreq_message(ngx_tailgate_xreq_t *x, ngx_uint_t i,
    ngx_str_t *role, u_char *content, u_char *content_end)
{
    ngx_int_t   rc;
    ngx_uint_t  images, has_image;
    ngx_uint_t  mark;

    images = (role->len == 4);       /* "user" */

    ngx_tailgate_xreq_close(x);

    if (ngx_tailgate_xreq_begin(x) != NGX_OK
        || ngx_tailgate_xreq_text_piece(x, "{\"role\":\"") != NGX_OK
        || ngx_tailgate_xreq_piece(x, role->data, role->data + role->len)
           != NGX_OK
        || ngx_tailgate_xreq_text_piece(x, "\",\"content\":") != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (*content == '"') {
        if (ngx_tailgate_xreq_piece(x, content, content_end) != NGX_OK) {
            return NGX_ERROR;
        }

    } else if (*content == '[') {
        /* text only: one string; with images: chat's parts */

        mark = x->pieces->nelts;
        has_image = 0;

        if (ngx_tailgate_xreq_text_piece(x, "\"") != NGX_OK) {
            return NGX_ERROR;
        }

        rc = ngx_tailgate_xreq_parts(x, "content", i, images, content,
                                     content_end, &has_image);
        if (rc != NGX_OK) {
            return rc;
        }

        if (has_image) {
            x->pieces->nelts = mark;

            if (ngx_tailgate_xreq_text_piece(x, "[") != NGX_OK) {
                return NGX_ERROR;
            }

            rc = ngx_tailgate_xreq_parts(x, "content", i, 2, content,
                                         content_end, &has_image);
            if (rc != NGX_OK) {
                return rc;
            }

            if (ngx_tailgate_xreq_text_piece(x, "]") != NGX_OK) {
                return NGX_ERROR;
            }

        } else if (ngx_tailgate_xreq_text_piece(x, "\"") != NGX_OK) {
            return NGX_ERROR;
        }

    } else {
        ngx_tailgate_xreq_param(x, "input[%ui].content", i);
        return ngx_tailgate_xreq_type(x, "a string or an array", *content);
    }

    if (role->len == 9) {            /* "assistant": tool calls may follow */
        x->assistant = 1;
        return NGX_OK;
    }

    return ngx_tailgate_xreq_text_piece(x, "}");
}


/*
 * The parts of a message's content (or of a function's output).  images:
 * 0 none allowed, 1 allowed (only noted in *has_image, the text joined),
 * 2 written as chat's parts.
 */

static ngx_int_t
ngx_tailgate_xreq_parts(ngx_tailgate_xreq_t *x, const char *path,
    ngx_uint_t i, ngx_uint_t images, u_char *p, u_char *end,
    ngx_uint_t *has_image)
{
    u_char                      *s, *e, *type, *type_end, *text, *text_end,
                                *url, *url_end, *detail, *detail_end;
    ngx_int_t                    rc;
    ngx_uint_t                   j, kind, parts;
    ngx_tailgate_json_iter_t     it, mit;
    ngx_tailgate_json_member_t   m;

    if (ngx_tailgate_json_elements(&it, p, end) != NGX_OK) {
        return NGX_ERROR;
    }

    parts = 0;

    for (j = 0; /* void */; j++) {
        rc = ngx_tailgate_json_element(&it, &s, &e);

        if (rc == NGX_DONE) {
            return NGX_OK;
        }

        if (rc != NGX_OK) {
            return NGX_ERROR;
        }

        if (*s != '{') {
            ngx_tailgate_xreq_param(x, "input[%ui].%s[%ui]", i, path, j);
            return ngx_tailgate_xreq_type(x, "an object", *s);
        }

        type = NULL;
        type_end = NULL;
        text = NULL;
        text_end = NULL;
        url = NULL;
        url_end = NULL;
        detail = NULL;
        detail_end = NULL;

        if (ngx_tailgate_json_members(&mit, s, e) != NGX_OK) {
            return NGX_ERROR;
        }

        while ((rc = ngx_tailgate_json_member(&mit, &m)) == NGX_OK) {
            if (ngx_tailgate_xreq_is(&m, "type")) {
                if (type) {
                    goto twice;
                }

                type = m.value_start;
                type_end = m.value_end;

            } else if (ngx_tailgate_xreq_is(&m, "text")
                       || ngx_tailgate_xreq_is(&m, "refusal"))
            {
                if (text) {
                    goto twice;
                }

                text = m.value_start;
                text_end = m.value_end;

            } else if (ngx_tailgate_xreq_is(&m, "image_url")) {
                if (url) {
                    goto twice;
                }

                url = m.value_start;
                url_end = m.value_end;

            } else if (ngx_tailgate_xreq_is(&m, "detail")) {
                if (detail) {
                    goto twice;
                }

                detail = m.value_start;
                detail_end = m.value_end;

            } else if (!ngx_tailgate_xreq_is(&m, "annotations")
                       && !ngx_tailgate_xreq_is(&m, "logprobs"))
            {
                ngx_tailgate_xreq_param(x, "input[%ui].%s[%ui].%*s", i,
                                        path, j,
                                        (size_t) ngx_max(m.name_len, 0),
                                        m.name);
                return ngx_tailgate_xreq_unsupported(x);
            }
        }

        if (rc != NGX_DONE) {
            return NGX_ERROR;
        }

        if (type == NULL || *type != '"') {
            ngx_tailgate_xreq_param(x, "input[%ui].%s[%ui].type", i, path,
                                    j);

            if (type == NULL) {
                return ngx_tailgate_xreq_refuse(x,
                               "missing_required_parameter",
                               "Missing required parameter: '%*s'.",
                               x->param_len, x->param);
            }

            return ngx_tailgate_xreq_type(x, "a string", *type);
        }

        if (ngx_tailgate_xreq_equals(type, type_end, "\"input_text\"")
            || ngx_tailgate_xreq_equals(type, type_end, "\"output_text\"")
            || ngx_tailgate_xreq_equals(type, type_end, "\"text\"")
            || ngx_tailgate_xreq_equals(type, type_end, "\"refusal\""))
        {
            kind = 0;

        } else if (images
                   && ngx_tailgate_xreq_equals(type, type_end,
                                               "\"input_image\""))
        {
            kind = 1;

        } else {
            ngx_tailgate_xreq_param(x, "input[%ui].%s[%ui].type", i, path,
                                    j);
            return ngx_tailgate_xreq_refuse(x, "unsupported_parameter",
                               "Unsupported value: '%*s' %*s cannot be "
                               "translated for this route's chat "
                               "completions provider.", x->param_len,
                               x->param,
                               (size_t) ngx_min(type_end - type, 64), type);
        }

        if (kind == 0) {
            if (text == NULL || *text != '"') {
                ngx_tailgate_xreq_param(x, "input[%ui].%s[%ui].text", i,
                                        path, j);

                if (text == NULL) {
                    return ngx_tailgate_xreq_refuse(x,
                               "missing_required_parameter",
                               "Missing required parameter: '%*s'.",
                               x->param_len, x->param);
                }

                return ngx_tailgate_xreq_type(x, "a string", *text);
            }

            if (images == 2) {
                if ((parts++ && ngx_tailgate_xreq_text_piece(x, ",")
                                != NGX_OK)
                    || ngx_tailgate_xreq_text_piece(x,
                                          "{\"type\":\"text\",\"text\":")
                       != NGX_OK
                    || ngx_tailgate_xreq_piece(x, text, text_end) != NGX_OK
                    || ngx_tailgate_xreq_text_piece(x, "}") != NGX_OK)
                {
                    return NGX_ERROR;
                }

            } else if (ngx_tailgate_xreq_inner(x, text, text_end) != NGX_OK) {
                return NGX_ERROR;
            }

            continue;
        }

        if (url == NULL || *url != '"') {
            ngx_tailgate_xreq_param(x, "input[%ui].%s[%ui].image_url", i,
                                    path, j);

            if (url == NULL) {
                return ngx_tailgate_xreq_refuse(x, "unsupported_parameter",
                               "Only images given by 'image_url' can be "
                               "translated for this route's chat "
                               "completions provider.");
            }

            return ngx_tailgate_xreq_type(x, "a string", *url);
        }

        if (detail && *detail != '"' && *detail != 'n') {
            ngx_tailgate_xreq_param(x, "input[%ui].%s[%ui].detail", i, path,
                                    j);
            return ngx_tailgate_xreq_type(x, "a string", *detail);
        }

        *has_image = 1;

        if (images != 2) {
            continue;
        }

        if ((parts++ && ngx_tailgate_xreq_text_piece(x, ",") != NGX_OK)
            || ngx_tailgate_xreq_text_piece(x,
                                "{\"type\":\"image_url\",\"image_url\":"
                                "{\"url\":") != NGX_OK
            || ngx_tailgate_xreq_piece(x, url, url_end) != NGX_OK)
        {
            return NGX_ERROR;
        }

        if (detail && *detail == '"'
            && (ngx_tailgate_xreq_text_piece(x, ",\"detail\":") != NGX_OK
                || ngx_tailgate_xreq_piece(x, detail, detail_end) != NGX_OK))
        {
            return NGX_ERROR;
        }

        if (ngx_tailgate_xreq_text_piece(x, "}}") != NGX_OK) {
            return NGX_ERROR;
        }
    }

twice:

    ngx_tailgate_xreq_param(x, "input[%ui].%s[%ui].%*s", i, path, j,
                            (size_t) ngx_max(m.name_len, 0), m.name);

    return ngx_tailgate_xreq_twice(x);
}


/* {"type":"function_call","call_id","name","arguments"}: a tool call */

static ngx_int_t
ngx_tailgate_xreq_call(ngx_tailgate_xreq_t *x, ngx_uint_t i, u_char *start,
    u_char *end)
{
    u_char                      *v[3], *v_end[3];
    ngx_int_t                    rc;
    ngx_uint_t                   k;
    ngx_tailgate_json_iter_t     it;
    ngx_tailgate_json_member_t   m;

    static const char  *names[] = { "call_id", "name", "arguments" };

    v[0] = v[1] = v[2] = NULL;
    v_end[0] = v_end[1] = v_end[2] = NULL;

    if (ngx_tailgate_json_members(&it, start, end) != NGX_OK) {
        return NGX_ERROR;
    }

    while ((rc = ngx_tailgate_json_member(&it, &m)) == NGX_OK) {
        k = ngx_tailgate_xreq_which(&m, names, 3);

        if (k == 3) {
            if (ngx_tailgate_xreq_is(&m, "type")
                || ngx_tailgate_xreq_is(&m, "id")
                || ngx_tailgate_xreq_is(&m, "status"))
            {
                continue;
            }

            ngx_tailgate_xreq_param(x, "input[%ui].%*s", i,
                                    (size_t) ngx_max(m.name_len, 0), m.name);
            return ngx_tailgate_xreq_unsupported(x);
        }

        ngx_tailgate_xreq_param(x, "input[%ui].%s", i, names[k]);

        if (v[k]) {
            return ngx_tailgate_xreq_twice(x);
        }

        if (*m.value_start != '"') {
            return ngx_tailgate_xreq_type(x, "a string", *m.value_start);
        }

        v[k] = m.value_start;
        v_end[k] = m.value_end;
    }

    if (rc != NGX_DONE) {
        return NGX_ERROR;
    }

    for (k = 0; k < 3; k++) {
        if (v[k] == NULL) {
            ngx_tailgate_xreq_param(x, "input[%ui].%s", i, names[k]);
            return ngx_tailgate_xreq_refuse(x, "missing_required_parameter",
                               "Missing required parameter: '%*s'.",
                               x->param_len, x->param);
        }
    }

    /* one assistant message holds the calls that follow its text */

    if (x->assistant == 2) {
        rc = ngx_tailgate_xreq_text_piece(x, ",");

    } else if (x->assistant == 1) {
        rc = ngx_tailgate_xreq_text_piece(x, ",\"tool_calls\":[");

    } else {
        rc = ngx_tailgate_xreq_begin(x);

        if (rc == NGX_OK) {
            rc = ngx_tailgate_xreq_text_piece(x,
                       "{\"role\":\"assistant\",\"content\":null,"
                       "\"tool_calls\":[");
        }
    }

    x->assistant = 2;

    if (rc != NGX_OK
        || ngx_tailgate_xreq_text_piece(x, "{\"id\":") != NGX_OK
        || ngx_tailgate_xreq_piece(x, v[0], v_end[0]) != NGX_OK
        || ngx_tailgate_xreq_text_piece(x, ",\"type\":\"function\","
                                        "\"function\":{\"name\":")
           != NGX_OK
        || ngx_tailgate_xreq_piece(x, v[1], v_end[1]) != NGX_OK
        || ngx_tailgate_xreq_text_piece(x, ",\"arguments\":") != NGX_OK
        || ngx_tailgate_xreq_piece(x, v[2], v_end[2]) != NGX_OK
        || ngx_tailgate_xreq_text_piece(x, "}}") != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* {"type":"function_call_output","call_id","output"}: a tool message */

static ngx_int_t
ngx_tailgate_xreq_output(ngx_tailgate_xreq_t *x, ngx_uint_t i, u_char *start,
    u_char *end)
{
    u_char                      *id, *id_end, *out, *out_end;
    ngx_int_t                    rc;
    ngx_uint_t                   has_image;
    ngx_tailgate_json_iter_t     it;
    ngx_tailgate_json_member_t   m;

    id = NULL;
    id_end = NULL;
    out = NULL;
    out_end = NULL;

    if (ngx_tailgate_json_members(&it, start, end) != NGX_OK) {
        return NGX_ERROR;
    }

    while ((rc = ngx_tailgate_json_member(&it, &m)) == NGX_OK) {
        if (ngx_tailgate_xreq_is(&m, "call_id")) {
            ngx_tailgate_xreq_param(x, "input[%ui].call_id", i);

            if (id) {
                return ngx_tailgate_xreq_twice(x);
            }

            if (*m.value_start != '"') {
                return ngx_tailgate_xreq_type(x, "a string", *m.value_start);
            }

            id = m.value_start;
            id_end = m.value_end;

        } else if (ngx_tailgate_xreq_is(&m, "output")) {
            ngx_tailgate_xreq_param(x, "input[%ui].output", i);

            if (out) {
                return ngx_tailgate_xreq_twice(x);
            }

            if (*m.value_start != '"' && *m.value_start != '[') {
                return ngx_tailgate_xreq_type(x, "a string or an array",
                                              *m.value_start);
            }

            out = m.value_start;
            out_end = m.value_end;

        } else if (!ngx_tailgate_xreq_is(&m, "type")
                   && !ngx_tailgate_xreq_is(&m, "id")
                   && !ngx_tailgate_xreq_is(&m, "status"))
        {
            ngx_tailgate_xreq_param(x, "input[%ui].%*s", i,
                                    (size_t) ngx_max(m.name_len, 0), m.name);
            return ngx_tailgate_xreq_unsupported(x);
        }
    }

    if (rc != NGX_DONE) {
        return NGX_ERROR;
    }

    if (id == NULL || out == NULL) {
        ngx_tailgate_xreq_param(x, "input[%ui].%s", i,
                                id ? "output" : "call_id");
        return ngx_tailgate_xreq_refuse(x, "missing_required_parameter",
                                        "Missing required parameter: "
                                        "'%*s'.", x->param_len, x->param);
    }

    ngx_tailgate_xreq_close(x);

    if (ngx_tailgate_xreq_begin(x) != NGX_OK
        || ngx_tailgate_xreq_text_piece(x, "{\"role\":\"tool\","
                                        "\"tool_call_id\":") != NGX_OK
        || ngx_tailgate_xreq_piece(x, id, id_end) != NGX_OK
        || ngx_tailgate_xreq_text_piece(x, ",\"content\":") != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (*out == '"') {
        if (ngx_tailgate_xreq_piece(x, out, out_end) != NGX_OK) {
            return NGX_ERROR;
        }

    } else {
        has_image = 0;

        if (ngx_tailgate_xreq_text_piece(x, "\"") != NGX_OK) {
            return NGX_ERROR;
        }

        rc = ngx_tailgate_xreq_parts(x, "output", i, 0, out, out_end,
                                     &has_image);
        if (rc != NGX_OK) {
            return rc;
        }

        if (ngx_tailgate_xreq_text_piece(x, "\"") != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return ngx_tailgate_xreq_text_piece(x, "}");
}


/*
 * [{"type":"function","name","description","parameters","strict"}].
 * Tools a chat provider cannot be offered are left out where that only
 * narrows what the model may do: the hosted web search (the provider has
 * none to run) and namespaced groups (a call could not be named back into
 * its namespace).  Any other kind is refused: the client counts on it.
 */

static ngx_int_t
ngx_tailgate_xreq_tools(ngx_tailgate_xreq_t *x, ngx_tailgate_xreq_value_t *v)
{
    u_char                      *s, *e, *val[4], *val_end[4], *type,
                                *type_end;
    ngx_int_t                    rc;
    ngx_uint_t                   i, k, typed, sent;
    ngx_tailgate_json_iter_t     it, mit;
    ngx_tailgate_json_member_t   m;

    static const char  *names[] = {
        "name", "description", "parameters", "strict"
    };
    static const char  *expected[] = {
        "a string", "a string", "an object", "a boolean"
    };
    static const u_char  first[] = { '"', '"', '{', 't' };

    if (ngx_tailgate_xreq_null(v)) {
        return NGX_OK;
    }

    /* the scanner checked that "tools" is an array */

    if (ngx_tailgate_json_elements(&it, v->start, v->end) != NGX_OK) {
        return NGX_ERROR;
    }

    sent = 0;

    for (i = 0; /* void */; i++) {
        rc = ngx_tailgate_json_element(&it, &s, &e);

        if (rc == NGX_DONE) {
            break;
        }

        if (rc != NGX_OK) {
            return NGX_ERROR;
        }

        if (*s != '{') {
            ngx_tailgate_xreq_param(x, "tools[%ui]", i);
            return ngx_tailgate_xreq_type(x, "an object", *s);
        }

        /* the type first: it says which members belong */

        type = NULL;
        type_end = NULL;

        if (ngx_tailgate_json_members(&mit, s, e) != NGX_OK) {
            return NGX_ERROR;
        }

        while ((rc = ngx_tailgate_json_member(&mit, &m)) == NGX_OK) {
            if (!ngx_tailgate_xreq_is(&m, "type")) {
                continue;
            }

            ngx_tailgate_xreq_param(x, "tools[%ui].type", i);

            if (type) {
                return ngx_tailgate_xreq_twice(x);
            }

            if (*m.value_start != '"') {
                return ngx_tailgate_xreq_type(x, "a string", *m.value_start);
            }

            type = m.value_start;
            type_end = m.value_end;
        }

        if (rc != NGX_DONE) {
            return NGX_ERROR;
        }

        if (type == NULL) {
            ngx_tailgate_xreq_param(x, "tools[%ui].type", i);
            return ngx_tailgate_xreq_refuse(x, "missing_required_parameter",
                                            "Missing required parameter: "
                                            "'%*s'.", x->param_len,
                                            x->param);
        }

        if (ngx_tailgate_xreq_equals(type, type_end, "\"web_search\"")
            || ngx_tailgate_xreq_equals(type, type_end,
                                        "\"web_search_preview\"")
            || ngx_tailgate_xreq_equals(type, type_end, "\"namespace\""))
        {
            continue;
        }

        if (!ngx_tailgate_xreq_equals(type, type_end, "\"function\"")) {
            ngx_tailgate_xreq_param(x, "tools[%ui].type", i);
            return ngx_tailgate_xreq_refuse(x, "unsupported_parameter",
                               "Unsupported value: 'tools[%ui].type' %*s: "
                               "only function tools can be translated for "
                               "this route's chat completions provider.", i,
                               (size_t) ngx_min(type_end - type, 64), type);
        }

        ngx_memzero(val, sizeof(val));
        ngx_memzero(val_end, sizeof(val_end));
        typed = 0;

        if (ngx_tailgate_json_members(&mit, s, e) != NGX_OK) {
            return NGX_ERROR;
        }

        while ((rc = ngx_tailgate_json_member(&mit, &m)) == NGX_OK) {
            if (ngx_tailgate_xreq_is(&m, "type")) {
                typed = 1;
                continue;
            }

            k = ngx_tailgate_xreq_which(&m, names, 4);

            if (k == 4) {
                ngx_tailgate_xreq_param(x, "tools[%ui].%*s", i,
                                        (size_t) ngx_max(m.name_len, 0),
                                        m.name);
                return ngx_tailgate_xreq_unsupported(x);
            }

            ngx_tailgate_xreq_param(x, "tools[%ui].%s", i, names[k]);

            if (val[k]) {
                return ngx_tailgate_xreq_twice(x);
            }

            if (*m.value_start == 'n' && k > 0) {
                continue;
            }

            if (!(*m.value_start == first[k]
                  || (first[k] == 't' && *m.value_start == 'f')))
            {
                return ngx_tailgate_xreq_type(x, expected[k],
                                              *m.value_start);
            }

            val[k] = m.value_start;
            val_end[k] = m.value_end;
        }

        if (rc != NGX_DONE) {
            return NGX_ERROR;
        }

        if (!typed || val[0] == NULL) {
            ngx_tailgate_xreq_param(x, "tools[%ui].name", i);
            return ngx_tailgate_xreq_refuse(x, "missing_required_parameter",
                                            "Missing required parameter: "
                                            "'%*s'.", x->param_len,
                                            x->param);
        }

        rc = sent++
             ? ngx_tailgate_xreq_text_piece(x, ",{\"type\":\"function\","
                                              "\"function\":{")
             : ngx_tailgate_xreq_text_piece(x, ",\"tools\":[{\"type\":"
                                              "\"function\","
                                              "\"function\":{");
        if (rc != NGX_OK) {
            return NGX_ERROR;
        }

        for (k = 0; k < 4; k++) {
            if (val[k] == NULL) {
                continue;
            }

            if (ngx_tailgate_xreq_piece(x, (u_char *) (k ? ",\"" : "\""),
                                        (u_char *) (k ? ",\"" : "\"")
                                        + (k ? 2 : 1))
                   != NGX_OK
                || ngx_tailgate_xreq_piece(x, (u_char *) names[k],
                                           (u_char *) names[k]
                                           + ngx_strlen(names[k]))
                   != NGX_OK
                || ngx_tailgate_xreq_text_piece(x, "\":") != NGX_OK
                || ngx_tailgate_xreq_piece(x, val[k], val_end[k]) != NGX_OK)
            {
                return NGX_ERROR;
            }
        }

        if (ngx_tailgate_xreq_text_piece(x, "}}") != NGX_OK) {
            return NGX_ERROR;
        }
    }

    if (sent && ngx_tailgate_xreq_text_piece(x, "]") != NGX_OK) {
        return NGX_ERROR;
    }

    /* no tools left: a tool_choice would name none */

    x->tools = sent;

    return NGX_OK;
}


/* "auto", "none", "required", or {"type":"function","name":N} */

static ngx_int_t
ngx_tailgate_xreq_tool_choice(ngx_tailgate_xreq_t *x,
    ngx_tailgate_xreq_value_t *v)
{
    u_char                      *name, *name_end;
    ngx_int_t                    rc;
    ngx_uint_t                   typed;
    ngx_tailgate_json_iter_t     it;
    ngx_tailgate_json_member_t   m;

    if (ngx_tailgate_xreq_null(v)) {
        return NGX_OK;
    }

    ngx_tailgate_xreq_param(x, "tool_choice");

    if (*v->start == '"') {
        if (!ngx_tailgate_xreq_equals(v->start, v->end, "\"auto\"")
            && !ngx_tailgate_xreq_equals(v->start, v->end, "\"none\"")
            && !ngx_tailgate_xreq_equals(v->start, v->end, "\"required\""))
        {
            return ngx_tailgate_xreq_refuse(x, "invalid_value",
                               "Invalid value for 'tool_choice': expected "
                               "\"auto\", \"none\", \"required\" or a "
                               "function.");
        }

        /* no function tools offered: "auto" and "none" are what is left */

        if (x->tools == 0) {
            if (v->start[1] == 'r') {
                return ngx_tailgate_xreq_refuse(x, "invalid_value",
                               "Invalid value for 'tool_choice': "
                               "\"required\" needs a function tool, and "
                               "this request offers none that this route's "
                               "chat completions provider can be given.");
            }

            return NGX_OK;
        }

        if (ngx_tailgate_xreq_text_piece(x, ",\"tool_choice\":") != NGX_OK
            || ngx_tailgate_xreq_piece(x, v->start, v->end) != NGX_OK)
        {
            return NGX_ERROR;
        }

        return NGX_OK;
    }

    if (*v->start != '{') {
        return ngx_tailgate_xreq_type(x, "a string or an object", *v->start);
    }

    name = NULL;
    name_end = NULL;
    typed = 0;

    if (ngx_tailgate_json_members(&it, v->start, v->end) != NGX_OK) {
        return NGX_ERROR;
    }

    while ((rc = ngx_tailgate_json_member(&it, &m)) == NGX_OK) {
        if (ngx_tailgate_xreq_is(&m, "type") && !typed++
            && ngx_tailgate_xreq_equals(m.value_start, m.value_end,
                                        "\"function\""))
        {
            continue;
        }

        if (ngx_tailgate_xreq_is(&m, "name") && name == NULL
            && *m.value_start == '"')
        {
            name = m.value_start;
            name_end = m.value_end;
            continue;
        }

        return ngx_tailgate_xreq_refuse(x, "unsupported_parameter",
                           "Unsupported value: 'tool_choice' can only be "
                           "\"auto\", \"none\", \"required\" or "
                           "{\"type\":\"function\",\"name\":...} for this "
                           "route's chat completions provider.");
    }

    if (rc != NGX_DONE) {
        return NGX_ERROR;
    }

    if (!typed || name == NULL) {
        return ngx_tailgate_xreq_refuse(x, "invalid_value",
                           "Invalid value for 'tool_choice': a function "
                           "choice needs \"type\" and \"name\".");
    }

    if (x->tools == 0) {
        return ngx_tailgate_xreq_refuse(x, "invalid_value",
                           "Invalid value for 'tool_choice': it names a "
                           "function, and the request offers none that "
                           "this route's chat completions provider can be "
                           "given.");
    }

    if (ngx_tailgate_xreq_text_piece(x, ",\"tool_choice\":{\"type\":"
                                     "\"function\",\"function\":{\"name\":")
           != NGX_OK
        || ngx_tailgate_xreq_piece(x, name, name_end) != NGX_OK
        || ngx_tailgate_xreq_text_piece(x, "}}") != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* text.format: text, json_object, json_schema; text.verbosity: a hint */

static ngx_int_t
ngx_tailgate_xreq_text(ngx_tailgate_xreq_t *x, ngx_tailgate_xreq_value_t *v)
{
    u_char                      *format, *format_end, *type, *type_end,
                                *val[4], *val_end[4];
    ngx_int_t                    rc;
    ngx_uint_t                   k;
    ngx_tailgate_json_iter_t     it;
    ngx_tailgate_json_member_t   m;

    static const char  *names[] = { "name", "schema", "strict",
                                    "description" };
    static const u_char  first[] = { '"', '{', 't', '"' };
    static const char  *expected[] = { "a string", "an object", "a boolean",
                                       "a string" };

    if (ngx_tailgate_xreq_null(v)) {
        return NGX_OK;
    }

    if (*v->start != '{') {
        ngx_tailgate_xreq_param(x, "text");
        return ngx_tailgate_xreq_type(x, "an object", *v->start);
    }

    format = NULL;
    format_end = NULL;

    if (ngx_tailgate_json_members(&it, v->start, v->end) != NGX_OK) {
        return NGX_ERROR;
    }

    while ((rc = ngx_tailgate_json_member(&it, &m)) == NGX_OK) {
        if (ngx_tailgate_xreq_is(&m, "format")) {
            ngx_tailgate_xreq_param(x, "text.format");

            if (format) {
                return ngx_tailgate_xreq_twice(x);
            }

            format = m.value_start;
            format_end = m.value_end;
            continue;
        }

        /* how long the answer should be: a hint a chat provider lacks */

        if (ngx_tailgate_xreq_is(&m, "verbosity")) {
            continue;
        }

        ngx_tailgate_xreq_param(x, "text.%*s",
                                (size_t) ngx_max(m.name_len, 0), m.name);
        return ngx_tailgate_xreq_unsupported(x);
    }

    if (rc != NGX_DONE) {
        return NGX_ERROR;
    }

    if (format == NULL || *format == 'n') {
        return NGX_OK;
    }

    if (*format != '{') {
        return ngx_tailgate_xreq_type(x, "an object", *format);
    }

    type = NULL;
    type_end = NULL;
    ngx_memzero(val, sizeof(val));
    ngx_memzero(val_end, sizeof(val_end));

    if (ngx_tailgate_json_members(&it, format, format_end) != NGX_OK) {
        return NGX_ERROR;
    }

    while ((rc = ngx_tailgate_json_member(&it, &m)) == NGX_OK) {
        if (ngx_tailgate_xreq_is(&m, "type")) {
            ngx_tailgate_xreq_param(x, "text.format.type");

            if (type) {
                return ngx_tailgate_xreq_twice(x);
            }

            if (*m.value_start != '"') {
                return ngx_tailgate_xreq_type(x, "a string", *m.value_start);
            }

            type = m.value_start;
            type_end = m.value_end;
            continue;
        }

        k = ngx_tailgate_xreq_which(&m, names, 4);

        if (k == 4) {
            ngx_tailgate_xreq_param(x, "text.format.%*s",
                                    (size_t) ngx_max(m.name_len, 0), m.name);
            return ngx_tailgate_xreq_unsupported(x);
        }

        ngx_tailgate_xreq_param(x, "text.format.%s", names[k]);

        if (val[k]) {
            return ngx_tailgate_xreq_twice(x);
        }

        if (*m.value_start == 'n' && k > 1) {
            continue;
        }

        if (!(*m.value_start == first[k]
              || (first[k] == 't' && *m.value_start == 'f')))
        {
            return ngx_tailgate_xreq_type(x, expected[k], *m.value_start);
        }

        val[k] = m.value_start;
        val_end[k] = m.value_end;
    }

    if (rc != NGX_DONE) {
        return NGX_ERROR;
    }

    ngx_tailgate_xreq_param(x, "text.format.type");

    if (type == NULL) {
        return ngx_tailgate_xreq_refuse(x, "missing_required_parameter",
                                        "Missing required parameter: "
                                        "'text.format.type'.");
    }

    if (ngx_tailgate_xreq_equals(type, type_end, "\"text\"")) {
        return NGX_OK;
    }

    if (ngx_tailgate_xreq_equals(type, type_end, "\"json_object\"")) {
        return ngx_tailgate_xreq_text_piece(x, ",\"response_format\":"
                                            "{\"type\":\"json_object\"}");
    }

    if (!ngx_tailgate_xreq_equals(type, type_end, "\"json_schema\"")) {
        return ngx_tailgate_xreq_refuse(x, "invalid_value",
                           "Invalid value for 'text.format.type': expected "
                           "\"text\", \"json_object\" or \"json_schema\".");
    }

    if (val[0] == NULL || val[1] == NULL) {
        ngx_tailgate_xreq_param(x, "text.format.%s",
                                val[0] ? "schema" : "name");
        return ngx_tailgate_xreq_refuse(x, "missing_required_parameter",
                                        "Missing required parameter: "
                                        "'%*s'.", x->param_len, x->param);
    }

    if (ngx_tailgate_xreq_text_piece(x, ",\"response_format\":{\"type\":"
                                     "\"json_schema\",\"json_schema\":{")
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    for (k = 0; k < 4; k++) {
        if (val[k] == NULL) {
            continue;
        }

        if (ngx_tailgate_xreq_piece(x, (u_char *) (k ? ",\"" : "\""),
                                    (u_char *) (k ? ",\"" : "\"")
                                    + (k ? 2 : 1)) != NGX_OK
            || ngx_tailgate_xreq_piece(x, (u_char *) names[k],
                                       (u_char *) names[k]
                                       + ngx_strlen(names[k])) != NGX_OK
            || ngx_tailgate_xreq_text_piece(x, "\":") != NGX_OK
            || ngx_tailgate_xreq_piece(x, val[k], val_end[k]) != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return ngx_tailgate_xreq_text_piece(x, "}}");
}


/* reasoning.effort becomes reasoning_effort; a summary is not offered */

static ngx_int_t
ngx_tailgate_xreq_reasoning(ngx_tailgate_xreq_t *x,
    ngx_tailgate_xreq_value_t *v)
{
    u_char                      *effort, *effort_end;
    ngx_int_t                    rc;
    ngx_tailgate_json_iter_t     it;
    ngx_tailgate_json_member_t   m;

    if (ngx_tailgate_xreq_null(v)) {
        return NGX_OK;
    }

    if (*v->start != '{') {
        ngx_tailgate_xreq_param(x, "reasoning");
        return ngx_tailgate_xreq_type(x, "an object", *v->start);
    }

    effort = NULL;
    effort_end = NULL;

    if (ngx_tailgate_json_members(&it, v->start, v->end) != NGX_OK) {
        return NGX_ERROR;
    }

    while ((rc = ngx_tailgate_json_member(&it, &m)) == NGX_OK) {
        if (ngx_tailgate_xreq_is(&m, "effort")) {
            ngx_tailgate_xreq_param(x, "reasoning.effort");

            if (effort) {
                return ngx_tailgate_xreq_twice(x);
            }

            if (*m.value_start != '"' && *m.value_start != 'n') {
                return ngx_tailgate_xreq_type(x, "a string", *m.value_start);
            }

            effort = m.value_start;
            effort_end = m.value_end;
            continue;
        }

        if (ngx_tailgate_xreq_is(&m, "summary")
            || ngx_tailgate_xreq_is(&m, "generate_summary"))
        {
            continue;
        }

        ngx_tailgate_xreq_param(x, "reasoning.%*s",
                                (size_t) ngx_max(m.name_len, 0), m.name);
        return ngx_tailgate_xreq_unsupported(x);
    }

    if (rc != NGX_DONE) {
        return NGX_ERROR;
    }

    if (effort == NULL || *effort == 'n') {
        return NGX_OK;
    }

    if (ngx_tailgate_xreq_text_piece(x, ",\"reasoning_effort\":") != NGX_OK
        || ngx_tailgate_xreq_piece(x, effort, effort_end) != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* an assistant message left open for tool calls is closed */

static void
ngx_tailgate_xreq_close(ngx_tailgate_xreq_t *x)
{
    if (x->assistant == 2) {
        (void) ngx_tailgate_xreq_text_piece(x, "]}");

    } else if (x->assistant == 1) {
        (void) ngx_tailgate_xreq_text_piece(x, "}");
    }

    x->assistant = 0;
}


/* a new message: after a comma unless it is the first */

static ngx_int_t
ngx_tailgate_xreq_begin(ngx_tailgate_xreq_t *x)
{
    ngx_tailgate_xreq_close(x);

    if (x->messages++ == 0) {
        return NGX_OK;
    }

    return ngx_tailgate_xreq_text_piece(x, ",");
}


static ngx_int_t
ngx_tailgate_xreq_piece(ngx_tailgate_xreq_t *x, u_char *start, u_char *end)
{
    ngx_str_t  *piece;

    if (end == start) {
        return NGX_OK;
    }

    piece = ngx_array_push(x->pieces);
    if (piece == NULL) {
        return NGX_ERROR;
    }

    piece->data = start;
    piece->len = end - start;

    return NGX_OK;
}


/* a string's text without its quotes: strings joined are one string */

static ngx_int_t
ngx_tailgate_xreq_inner(ngx_tailgate_xreq_t *x, u_char *start, u_char *end)
{
    return ngx_tailgate_xreq_piece(x, start + 1, end - 1);
}


/* which of names[0 .. n - 1] the member is; n: none of them */

static ngx_uint_t
ngx_tailgate_xreq_which(ngx_tailgate_json_member_t *m,
    const char *const *names, ngx_uint_t n)
{
    ngx_uint_t  k;

    for (k = 0; k < n; k++) {
        if (ngx_tailgate_xreq_is(m, names[k])) {
            break;
        }
    }

    return k;
}


static ngx_uint_t
ngx_tailgate_xreq_is(ngx_tailgate_json_member_t *m, const char *name)
{
    size_t  len;

    len = ngx_strlen(name);

    return m->name_len >= 0 && (size_t) m->name_len == len
           && ngx_strncmp(m->name, name, len) == 0;
}


static ngx_uint_t
ngx_tailgate_xreq_equals(u_char *start, u_char *end, const char *text)
{
    size_t  len;

    len = ngx_strlen(text);

    return (size_t) (end - start) == len
           && ngx_strncmp(start, text, len) == 0;
}


static ngx_int_t
ngx_tailgate_xreq_param(ngx_tailgate_xreq_t *x, const char *fmt, ...)
{
    u_char   *p;
    va_list   args;

    va_start(args, fmt);
    p = ngx_vslprintf(x->param, x->param + sizeof(x->param), fmt, args);
    va_end(args);

    x->param_len = p - x->param;

    return NGX_OK;
}


static ngx_int_t
ngx_tailgate_xreq_refuse(ngx_tailgate_xreq_t *x, const char *code,
    const char *fmt, ...)
{
    u_char   *p;
    va_list   args;

    va_start(args, fmt);
    p = ngx_vslprintf(x->message, x->message + sizeof(x->message), fmt, args);
    va_end(args);

    x->message_len = p - x->message;
    x->code = code;

    return NGX_DECLINED;
}


/* x->param names a member given twice */

static ngx_int_t
ngx_tailgate_xreq_twice(ngx_tailgate_xreq_t *x)
{
    return ngx_tailgate_xreq_refuse(x, "", "The '%*s' parameter appears more "
                                    "than once.", x->param_len, x->param);
}


/* x->param names a member a chat request has no equivalent for */

static ngx_int_t
ngx_tailgate_xreq_unsupported(ngx_tailgate_xreq_t *x)
{
    return ngx_tailgate_xreq_refuse(x, "unsupported_parameter",
                                    "Unsupported parameter: '%*s' cannot be "
                                    "translated for this route's chat "
                                    "completions provider.", x->param_len,
                                    x->param);
}


static ngx_int_t
ngx_tailgate_xreq_type(ngx_tailgate_xreq_t *x, const char *expected, u_char c)
{
    return ngx_tailgate_xreq_refuse(x, "invalid_type",
                                    "Invalid type for '%*s': expected %s, "
                                    "but got %s instead.", x->param_len,
                                    x->param, expected,
                                    ngx_tailgate_json_type(c));
}


/* the OpenAI error: 400, invalid_request_error, the code and the param */

static ngx_int_t
ngx_tailgate_xreq_send(ngx_http_request_t *r, ngx_tailgate_xreq_t *x,
    ngx_int_t *rc)
{
    u_char     *p;
    size_t      len;
    ngx_str_t   body;

    len = sizeof("{\"error\":{\"message\":\"\",\"type\":"
                 "\"invalid_request_error\",\"param\":\"\",\"code\":\"\"}}")
          + ngx_escape_json(NULL, x->message, x->message_len)
          + x->message_len
          + ngx_escape_json(NULL, x->param, x->param_len) + x->param_len
          + (x->code ? ngx_strlen(x->code) : 0) + sizeof("null") * 2;

    body.data = ngx_pnalloc(r->pool, len);
    if (body.data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(body.data, "{\"error\":{\"message\":\"",
                   sizeof("{\"error\":{\"message\":\"") - 1);
    p = (u_char *) ngx_escape_json(p, x->message, x->message_len);
    p = ngx_cpymem(p, "\",\"type\":\"invalid_request_error\",\"param\":",
                   sizeof("\",\"type\":\"invalid_request_error\",\"param\":")
                   - 1);

    if (x->param_len) {
        *p++ = '"';
        p = (u_char *) ngx_escape_json(p, x->param, x->param_len);
        *p++ = '"';

    } else {
        p = ngx_cpymem(p, "null", 4);
    }

    p = ngx_cpymem(p, ",\"code\":", sizeof(",\"code\":") - 1);

    if (x->code && x->code[0]) {
        p = ngx_sprintf(p, "\"%s\"", x->code);

    } else {
        p = ngx_cpymem(p, "null", 4);
    }

    *p++ = '}';
    *p++ = '}';

    body.len = p - body.data;

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "tailgate: responses request refused for translation: "
                  "%*s", x->message_len, x->message);

    *rc = ngx_tailgate_send_json(r, NGX_HTTP_BAD_REQUEST, &body);

    return NGX_DECLINED;
}
