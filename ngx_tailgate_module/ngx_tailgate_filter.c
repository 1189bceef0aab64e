
/*
 * Copyright (C) The Tailgate authors
 *
 * Output filters.  The header filter adds CORS headers for an allowed
 * browser origin.  The body filter notes whether a proxied response
 * reached its end: a provider that stops sending after the response
 * started cannot be retried, but it must not be counted as a success.
 */


#include "ngx_http_tailgate_module.h"


static ngx_int_t ngx_tailgate_header_filter(ngx_http_request_t *r);
static ngx_int_t ngx_tailgate_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;


ngx_int_t
ngx_tailgate_filter_init(ngx_conf_t *cf)
{
    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_tailgate_header_filter;

    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_tailgate_body_filter;

    return NGX_OK;
}


static ngx_int_t
ngx_tailgate_header_filter(ngx_http_request_t *r)
{
    ngx_http_tailgate_ctx_t  *ctx;

    if (r == r->main) {
        ctx = ngx_http_tailgate_get_ctx(r);

        if (ctx && ctx->cors_origin.len
            && ngx_tailgate_cors_headers(r, ctx) != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return ngx_http_next_header_filter(r);
}


static ngx_int_t
ngx_tailgate_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    ngx_chain_t              *cl;
    ngx_http_tailgate_ctx_t  *ctx;

    if (in == NULL || r != r->main || r->upstream == NULL) {
        return ngx_http_next_body_filter(r, in);
    }

    ctx = ngx_http_tailgate_get_ctx(r);

    if (ctx && !ctx->response_complete) {
        for (cl = in; cl; cl = cl->next) {
            if (cl->buf->last_buf) {
                ctx->response_complete = 1;
                break;
            }
        }
    }

    return ngx_http_next_body_filter(r, in);
}
