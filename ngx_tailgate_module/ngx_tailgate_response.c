
/*
 * Copyright (C) The Tailgate authors
 *
 * Responses the gateway writes itself, all JSON: OpenAI-shaped errors
 * {"error":{"message","type","param","code"}} and bodies it was given.
 * Nothing here knows a request's context: every part of the module may
 * answer with these.
 */


#include "ngx_tailgate_response.h"


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


/* an error of the gateway's own; 503s say when to come back */

ngx_int_t
ngx_tailgate_fail(ngx_http_request_t *r, ngx_uint_t status, const char *type,
    const char *code, const char *message)
{
    ngx_str_t  retry;

    if (status == NGX_HTTP_SERVICE_UNAVAILABLE) {
        ngx_str_set(&retry, "1");

        if (ngx_tailgate_add_header(r, "Retry-After", &retry) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    return ngx_tailgate_send_error_text(r, status, type, code, message);
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
    const ngx_str_t *value)
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
