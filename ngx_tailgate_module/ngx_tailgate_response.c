
/*
 * Copyright (C) The Tailgate authors
 *
 * Responses the gateway writes itself, all JSON: OpenAI-shaped errors
 * {"error":{"message","type","param","code"}}, its own from one table,
 * and bodies it was given.
 * Nothing here knows a request's context: every part of the module may
 * answer with these.
 */


#include "ngx_tailgate_response.h"


static ngx_int_t ngx_tailgate_send_error_param(ngx_http_request_t *r,
    ngx_uint_t status, const ngx_str_t *type, const ngx_str_t *code,
    const ngx_str_t *param, const ngx_str_t *message);
static ngx_int_t ngx_tailgate_error_text(ngx_pool_t *pool,
    const ngx_str_t *type, const ngx_str_t *code, const ngx_str_t *param,
    const ngx_str_t *message, ngx_str_t *body);
static u_char *ngx_tailgate_json_or_null(u_char *p, const ngx_str_t *s);
static ngx_int_t ngx_tailgate_send_header(ngx_http_request_t *r,
    ngx_uint_t status, size_t len, const char *type);


typedef struct {
    ngx_uint_t                   status;
    ngx_str_t                    type;
    ngx_str_t                    code;
    ngx_str_t                    param;
    ngx_str_t                    message;
} ngx_tailgate_error_t;


static const ngx_tailgate_error_t  ngx_tailgate_errors[] = {
#define NGX_TAILGATE_ERROR(id, status, type, code, param, message)            \
    { status, ngx_string(type), ngx_string(code), ngx_string(param),          \
      ngx_string(message) },
    NGX_TAILGATE_ERRORS(NGX_TAILGATE_ERROR)
#undef NGX_TAILGATE_ERROR
};


/*
 * An error of the gateway's own, with its status; 503s say when to come
 * back.  message NULL: the table's.
 */

ngx_int_t
ngx_tailgate_fail(ngx_http_request_t *r, ngx_tailgate_error_e err,
    const ngx_str_t *message)
{
    ngx_str_t  retry;

    if (ngx_tailgate_errors[err].status == NGX_HTTP_SERVICE_UNAVAILABLE) {
        ngx_str_set(&retry, "1");

        if (ngx_tailgate_add_header(r, "Retry-After", &retry) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    return ngx_tailgate_error(r, err, 0, message);
}


/* the same, the table's message a format for the arguments */

ngx_int_t
ngx_tailgate_failf(ngx_http_request_t *r, ngx_tailgate_error_e err, ...)
{
    u_char                      *p;
    va_list                      args;
    ngx_str_t                    message;
    const ngx_tailgate_error_t  *e;
    u_char                       text[256];

    e = &ngx_tailgate_errors[err];

    va_start(args, err);
    p = ngx_vslprintf(text, text + sizeof(text), (char *) e->message.data,
                      args);
    va_end(args);

    message.data = text;
    message.len = p - text;

    return ngx_tailgate_fail(r, err, &message);
}


/*
 * err's type and code, as they are: no header of its own.  status 0 and
 * message NULL: the table's.
 */

ngx_int_t
ngx_tailgate_error(ngx_http_request_t *r, ngx_tailgate_error_e err,
    ngx_uint_t status, const ngx_str_t *message)
{
    const ngx_tailgate_error_t  *e;

    e = &ngx_tailgate_errors[err];

    return ngx_tailgate_send_error_param(r, status ? status : e->status,
                                         &e->type, &e->code, &e->param,
                                         message ? message : &e->message);
}


/* what the error page says for a status of nginx's own */

ngx_tailgate_error_e
ngx_tailgate_error_of(ngx_uint_t status)
{
    ngx_uint_t  i;

    for (i = 0; i < NGX_TAILGATE_ERR_INTERNAL; i++) {
        if (ngx_tailgate_errors[i].status == status) {
            return (ngx_tailgate_error_e) i;
        }
    }

    return NGX_TAILGATE_ERR_INTERNAL;
}


/* an error in policyd's words: no parameter to name */

ngx_int_t
ngx_tailgate_send_error(ngx_http_request_t *r, ngx_uint_t status,
    const ngx_str_t *type, const ngx_str_t *code, const ngx_str_t *message)
{
    static const ngx_str_t  none = ngx_null_string;

    return ngx_tailgate_send_error_param(r, status, type, code, &none,
                                         message);
}


static ngx_int_t
ngx_tailgate_send_error_param(ngx_http_request_t *r, ngx_uint_t status,
    const ngx_str_t *type, const ngx_str_t *code, const ngx_str_t *param,
    const ngx_str_t *message)
{
    ngx_str_t  body;

    if (ngx_tailgate_error_text(r->pool, type, code, param, message, &body)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_tailgate_send_body(r, status, body.data, body.len,
                                  "application/json");
}


/* the body of err, with the table's message, for someone else to send */

ngx_int_t
ngx_tailgate_error_json(ngx_pool_t *pool, ngx_tailgate_error_e err,
    ngx_str_t *body)
{
    const ngx_tailgate_error_t  *e;

    e = &ngx_tailgate_errors[err];

    return ngx_tailgate_error_text(pool, &e->type, &e->code, &e->param,
                                   &e->message, body);
}


/* code and param: null when empty */

static ngx_int_t
ngx_tailgate_error_text(ngx_pool_t *pool, const ngx_str_t *type,
    const ngx_str_t *code, const ngx_str_t *param, const ngx_str_t *message,
    ngx_str_t *body)
{
    size_t   len;
    u_char  *p;

    len = sizeof("{\"error\":{\"message\":\"\",\"type\":\"\","
                 "\"param\":null,\"code\":null}}\n") - 1
          + message->len + ngx_escape_json(NULL, message->data, message->len)
          + type->len + ngx_escape_json(NULL, type->data, type->len)
          + code->len + ngx_escape_json(NULL, code->data, code->len)
          + param->len + ngx_escape_json(NULL, param->data, param->len);

    body->data = ngx_pnalloc(pool, len);
    if (body->data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(body->data, "{\"error\":{\"message\":\"",
                   sizeof("{\"error\":{\"message\":\"") - 1);
    p = (u_char *) ngx_escape_json(p, message->data, message->len);
    p = ngx_cpymem(p, "\",\"type\":\"", sizeof("\",\"type\":\"") - 1);
    p = (u_char *) ngx_escape_json(p, type->data, type->len);
    p = ngx_cpymem(p, "\",\"param\":", sizeof("\",\"param\":") - 1);
    p = ngx_tailgate_json_or_null(p, param);
    p = ngx_cpymem(p, ",\"code\":", sizeof(",\"code\":") - 1);
    p = ngx_tailgate_json_or_null(p, code);
    p = ngx_cpymem(p, "}}\n", 3);

    body->len = p - body->data;

    return NGX_OK;
}


/* a JSON string, or null for an empty one; room for "null" is counted */

static u_char *
ngx_tailgate_json_or_null(u_char *p, const ngx_str_t *s)
{
    if (s->len == 0) {
        return ngx_cpymem(p, "null", 4);
    }

    *p++ = '"';
    p = (u_char *) ngx_escape_json(p, s->data, s->len);
    *p++ = '"';

    return p;
}


/* a body that lives in a read buffer: copied to the request's pool */

ngx_int_t
ngx_tailgate_send_json(ngx_http_request_t *r, ngx_uint_t status,
    ngx_str_t *body)
{
    u_char  *copy;

    copy = ngx_pnalloc(r->pool, body->len);
    if (copy == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memcpy(copy, body->data, body->len);

    return ngx_tailgate_send_body(r, status, copy, body->len,
                                  "application/json");
}


ngx_int_t
ngx_tailgate_send_body(ngx_http_request_t *r, ngx_uint_t status, u_char *data,
    size_t len, const char *type)
{
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_chain_t   out;

    rc = ngx_tailgate_send_header(r, status, len, type);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->pos = data;
    b->last = data + len;
    b->memory = 1;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


/* a body in pieces that live in the pool: sent as they are, in order */

ngx_int_t
ngx_tailgate_send_pieces(ngx_http_request_t *r, ngx_uint_t status,
    ngx_str_t *pieces, ngx_uint_t n, const char *type)
{
    size_t        len;
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_uint_t    i, k;
    ngx_chain_t  *cl;

    len = 0;

    for (i = 0; i < n; i++) {
        len += pieces[i].len;
    }

    rc = ngx_tailgate_send_header(r, status, len, type);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    b = ngx_pcalloc(r->pool, n * sizeof(ngx_buf_t));
    cl = ngx_palloc(r->pool, n * sizeof(ngx_chain_t));

    if (b == NULL || cl == NULL) {
        return NGX_ERROR;
    }

    k = 0;

    for (i = 0; i < n; i++) {

        /* an empty buffer is an error to nginx unless it is the last */

        if (pieces[i].len == 0 && (k || i + 1 < n)) {
            continue;
        }

        b[k].pos = pieces[i].data;
        b[k].last = pieces[i].data + pieces[i].len;
        b[k].memory = 1;

        cl[k].buf = &b[k];
        cl[k].next = &cl[k + 1];
        k++;
    }

    b[k - 1].last_buf = (r == r->main) ? 1 : 0;
    b[k - 1].last_in_chain = 1;
    cl[k - 1].next = NULL;

    return ngx_http_output_filter(r, cl);
}


static ngx_int_t
ngx_tailgate_send_header(ngx_http_request_t *r, ngx_uint_t status,
    size_t len, const char *type)
{
    ngx_int_t  rc;

    rc = ngx_http_discard_request_body(r);

    if (rc != NGX_OK) {
        return rc;
    }

    r->headers_out.status = status;
    r->headers_out.content_length_n = len;

    r->headers_out.content_type.data = (u_char *) type;
    r->headers_out.content_type.len = ngx_strlen(type);
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;

    return ngx_http_send_header(r);
}


ngx_int_t
ngx_tailgate_add_header_n(ngx_http_request_t *r, const char *name,
    size_t len, const ngx_str_t *value)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    /* lowcase_key, and the "next" of nginx 1.23+, stay zero */
    ngx_memzero(h, sizeof(ngx_table_elt_t));

    h->hash = 1;
    h->key.data = (u_char *) name;
    h->key.len = len;
    h->value = *value;

    return NGX_OK;
}


/*
 * OpenAI's x-ratelimit-* headers from policyd's "REQ LEFT RESET_MS TOK LEFT
 * RESET_MS" (a kind without a limit is "- - -"): what agents read to pace
 * themselves.  Resets are durations as OpenAI writes them: "20ms", "1.5s",
 * "6m0s", "1h2m3s".
 */

ngx_int_t
ngx_tailgate_ratelimit_headers(ngx_http_request_t *r, ngx_str_t *spec)
{
    u_char      *p, *end, *start, *v;
    ngx_int_t    n;
    ngx_str_t    value;
    ngx_uint_t   i;
    uint64_t     ms;

    static const char  *names[] = {
        "x-ratelimit-limit-requests", "x-ratelimit-remaining-requests",
        "x-ratelimit-reset-requests", "x-ratelimit-limit-tokens",
        "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens"
    };

    p = spec->data;
    end = p + spec->len;

    for (i = 0; i < 6; i++) {
        while (p < end && *p == ' ') {
            p++;
        }

        start = p;

        while (p < end && *p != ' ') {
            p++;
        }

        if (p - start == 1 && *start == '-') {
            continue;
        }

        n = (p - start <= 12) ? ngx_atoi(start, p - start) : NGX_ERROR;

        if (n == NGX_ERROR) {
            /* policyd's word is checked like any other: nothing shown */
            return NGX_OK;
        }

        v = ngx_pnalloc(r->pool, NGX_INT64_LEN + 16);
        if (v == NULL) {
            return NGX_ERROR;
        }

        value.data = v;

        if (i % 3 != 2) {
            value.len = ngx_sprintf(v, "%i", n) - v;

        } else {
            ms = (uint64_t) n;

            if (ms < 1000) {
                v = ngx_sprintf(v, "%uLms", ms);

            } else {
                if (ms >= 3600000) {
                    v = ngx_sprintf(v, "%uLh", ms / 3600000);
                }

                if (ms >= 60000) {
                    v = ngx_sprintf(v, "%uLm", ms / 60000 % 60);
                }

                v = ngx_sprintf(v, "%uL", ms / 1000 % 60);

                if (ms % 1000) {
                    v = ngx_sprintf(v, ".%03uL", ms % 1000);

                    while (v[-1] == '0') {
                        v--;
                    }
                }

                *v++ = 's';
            }

            value.len = v - value.data;
        }

        if (ngx_tailgate_add_header(r, names[i], &value) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}
