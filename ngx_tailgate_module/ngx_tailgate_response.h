
/*
 * Copyright (C) The Tailgate authors
 */


#ifndef _NGX_TAILGATE_RESPONSE_H_INCLUDED_
#define _NGX_TAILGATE_RESPONSE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


ngx_int_t ngx_tailgate_send_error(ngx_http_request_t *r, ngx_uint_t status,
    ngx_str_t *type, ngx_str_t *code, ngx_str_t *message);
ngx_int_t ngx_tailgate_send_error_text(ngx_http_request_t *r,
    ngx_uint_t status, const char *type, const char *code,
    const char *message);
ngx_int_t ngx_tailgate_fail(ngx_http_request_t *r, ngx_uint_t status,
    const char *type, const char *code, const char *message);
ngx_int_t ngx_tailgate_send_json(ngx_http_request_t *r, ngx_uint_t status,
    ngx_str_t *body);
ngx_int_t ngx_tailgate_send_copy(ngx_http_request_t *r, ngx_uint_t status,
    ngx_str_t *body, const char *type);
ngx_int_t ngx_tailgate_send_body(ngx_http_request_t *r, ngx_uint_t status,
    u_char *data, size_t len, const char *type);
ngx_int_t ngx_tailgate_add_header(ngx_http_request_t *r, const char *name,
    const ngx_str_t *value);


#endif /* _NGX_TAILGATE_RESPONSE_H_INCLUDED_ */
