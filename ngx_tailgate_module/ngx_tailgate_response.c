
/*
 * Copyright (C) The Tailgate authors
 *
 * Responses the gateway writes itself, all JSON: OpenAI-shaped errors
 * {"error":{"message","type","param","code"}}, /health, and the error page
 * for failures nginx detects on its own (body too large, provider down).
 */


#include "ngx_http_tailgate_module.h"


typedef struct {
    ngx_uint_t                   status;
    const char                  *type;
    const char                  *code;
    const char                  *message;
} ngx_tailgate_error_t;


static ngx_tailgate_error_t  ngx_tailgate_errors[] = {

    { NGX_HTTP_BAD_REQUEST, "invalid_request_error", "bad_request",
      "The request could not be understood." },

    { NGX_HTTP_NOT_FOUND, "invalid_request_error", "unknown_url",
      "Unknown request URL." },

    { NGX_HTTP_NOT_ALLOWED, "invalid_request_error", "method_not_allowed",
      "Method not allowed for this URL." },

    { NGX_HTTP_REQUEST_TIME_OUT, "invalid_request_error", "request_timeout",
      "The request body was not received in time." },

    { NGX_HTTP_REQUEST_ENTITY_TOO_LARGE, "invalid_request_error",
      "request_too_large", "The request body is too large." },

    { NGX_HTTP_TOO_MANY_REQUESTS, "rate_limit_error", "rate_limited",
      "Too many requests." },

    { NGX_HTTP_BAD_GATEWAY, "server_error", "provider_unreachable",
      "The provider could not be reached." },

    { NGX_HTTP_SERVICE_UNAVAILABLE, "server_error", "service_unavailable",
      "The service is unavailable." },

    { NGX_HTTP_GATEWAY_TIME_OUT, "server_error", "provider_timeout",
      "The provider did not answer in time." },

    { 0, "server_error", "internal_error",
      "The gateway could not process the request." }
};


ngx_int_t
ngx_tailgate_send_error(ngx_http_request_t *r, ngx_uint_t status,
    ngx_str_t *type, ngx_str_t *code, ngx_str_t *message)
{
    size_t   len;
    u_char  *body, *p;

    len = sizeof("{\"error\":{\"message\":\"\",\"type\":\"\","
                 "\"param\":null,\"code\":null}}\n") - 1
          + message->len + ngx_escape_json(NULL, message->data, message->len)
          + type->len + ngx_escape_json(NULL, type->data, type->len)
          + code->len + ngx_escape_json(NULL, code->data, code->len);

    body = ngx_pnalloc(r->pool, len);
    if (body == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_cpymem(body, "{\"error\":{\"message\":\"",
                   sizeof("{\"error\":{\"message\":\"") - 1);
    p = (u_char *) ngx_escape_json(p, message->data, message->len);
    p = ngx_cpymem(p, "\",\"type\":\"", sizeof("\",\"type\":\"") - 1);
    p = (u_char *) ngx_escape_json(p, type->data, type->len);
    p = ngx_cpymem(p, "\",\"param\":null,\"code\":",
                   sizeof("\",\"param\":null,\"code\":") - 1);

    if (code->len) {
        *p++ = '"';
        p = (u_char *) ngx_escape_json(p, code->data, code->len);
        *p++ = '"';

    } else {
        p = ngx_cpymem(p, "null", 4);
    }

    p = ngx_cpymem(p, "}}\n", 3);

    return ngx_tailgate_send_body(r, status, body, p - body,
                                  "application/json");
}


/* the same, from C strings; code may be NULL */

ngx_int_t
ngx_tailgate_send_error_text(ngx_http_request_t *r, ngx_uint_t status,
    const char *type, const char *code, const char *message)
{
    ngx_str_t  t, c, m;

    t.data = (u_char *) type;
    t.len = ngx_strlen(type);
    c.data = (u_char *) code;
    c.len = code ? ngx_strlen(code) : 0;
    m.data = (u_char *) message;
    m.len = ngx_strlen(message);

    return ngx_tailgate_send_error(r, status, &t, &c, &m);
}


ngx_int_t
ngx_tailgate_send_json(ngx_http_request_t *r, ngx_uint_t status,
    ngx_str_t *body)
{
    return ngx_tailgate_send_copy(r, status, body, "application/json");
}


/* a body that lives in a read buffer: copied to the request's pool */

ngx_int_t
ngx_tailgate_send_copy(ngx_http_request_t *r, ngx_uint_t status,
    ngx_str_t *body, const char *type)
{
    u_char  *copy;

    copy = ngx_pnalloc(r->pool, body->len);
    if (copy == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memcpy(copy, body->data, body->len);

    return ngx_tailgate_send_body(r, status, copy, body->len, type);
}


ngx_int_t
ngx_tailgate_send_body(ngx_http_request_t *r, ngx_uint_t status, u_char *data,
    size_t len, const char *type)
{
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_chain_t   out;

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

    rc = ngx_http_send_header(r);

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


ngx_int_t
ngx_tailgate_add_header(ngx_http_request_t *r, const char *name,
    ngx_str_t *value)
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
    h->key.len = ngx_strlen(name);
    h->value = *value;

    return NGX_OK;
}


ngx_int_t
ngx_tailgate_health_handler(ngx_http_request_t *r)
{
    ngx_str_t  body;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    if (ngx_tailgate_policyd_up()) {
        ngx_str_set(&body, "{\"status\":\"ok\",\"policyd\":\"up\"}\n");

    } else {
        ngx_str_set(&body, "{\"status\":\"ok\",\"policyd\":\"unreachable\"}\n");
    }

    return ngx_tailgate_send_body(r, NGX_HTTP_OK, body.data, body.len,
                                  "application/json");
}


/*
 * The content handler of the location that error_page sends nginx's own
 * errors to: 413 from client_max_body_size, 502 and 504 from the proxy.
 * Errors that providers send are passed through as they are.
 */

ngx_int_t
ngx_tailgate_error_page_handler(ngx_http_request_t *r)
{
    u_char                   *p;
    ngx_str_t                 message, type, code;
    ngx_uint_t                status, i;
    ngx_tailgate_error_t     *e;
    ngx_http_tailgate_ctx_t  *ctx;

    status = r->err_status ? r->err_status : r->headers_out.status;

    for (i = 0; ngx_tailgate_errors[i].status; i++) {
        if (ngx_tailgate_errors[i].status == status) {
            break;
        }
    }

    e = &ngx_tailgate_errors[i];

    if (status < NGX_HTTP_BAD_REQUEST || status > 599) {
        status = NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    message.data = (u_char *) e->message;
    message.len = ngx_strlen(e->message);

    ctx = ngx_http_tailgate_get_ctx(r);

    /* the provider's part is over: its lease ends now, not after the log */

    if (ctx) {
        (void) ngx_tailgate_report(r, ctx);
    }

    if (ctx && ctx->provider.len && ctx->explain
        && (status == NGX_HTTP_BAD_GATEWAY
            || status == NGX_HTTP_GATEWAY_TIME_OUT))
    {
        p = ngx_pnalloc(r->pool, ctx->provider.len + 64);
        if (p == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        message.data = p;
        message.len = ngx_sprintf(p, "The provider \"%V\" %s", &ctx->provider,
                                  status == NGX_HTTP_BAD_GATEWAY
                                  ? "could not be reached."
                                  : "did not answer in time.")
                      - p;
    }

    type.data = (u_char *) e->type;
    type.len = ngx_strlen(e->type);
    code.data = (u_char *) e->code;
    code.len = ngx_strlen(e->code);

    return ngx_tailgate_send_error(r, status, &type, &code, &message);
}
