
/*
 * Copyright (C) The Tailgate authors
 */


#ifndef _NGX_TAILGATE_CTX_H_INCLUDED_
#define _NGX_TAILGATE_CTX_H_INCLUDED_


#include "ngx_tailgate_common.h"


ngx_http_tailgate_ctx_t *ngx_http_tailgate_ctx_create(ngx_http_request_t *r);
ngx_http_tailgate_ctx_t *ngx_http_tailgate_ctx_find(ngx_http_request_t *r);
ngx_int_t ngx_http_tailgate_call(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx, ngx_tailgate_frame_t *f,
    ngx_msec_t timeout, ngx_tailgate_call_handler_pt handler,
    ngx_tailgate_call_part_pt part);
ngx_http_tailgate_ctx_t *ngx_http_tailgate_wake(ngx_tailgate_call_t *call);
ngx_int_t ngx_http_tailgate_finish(ngx_http_request_t *r, ngx_int_t rc);


/*
 * The context, also after an internal redirect cleared the module
 * contexts: every filter and variable asks, so the common case is inline.
 */

static ngx_inline ngx_http_tailgate_ctx_t *
ngx_http_tailgate_get_ctx(ngx_http_request_t *r)
{
    ngx_http_tailgate_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_tailgate_module);

    if (ctx || !(r->internal || r->filter_finalize)) {
        return ctx;
    }

    return ngx_http_tailgate_ctx_find(r);
}


#endif /* _NGX_TAILGATE_CTX_H_INCLUDED_ */
