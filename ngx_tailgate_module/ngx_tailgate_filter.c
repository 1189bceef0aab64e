
/*
 * Copyright (C) The Tailgate authors
 *
 * Output filters.  The header filter says where the request went
 * (X-Tailgate-Provider, -Route, -Attempts), adds CORS headers for an
 * allowed browser origin and watches event streams (ngx_tailgate_stream.c).
 * The body filter notes whether a proxied response reached its end: a
 * provider that stops sending after the response started cannot be
 * retried, but it must not be counted as a success.
 */


#include "ngx_tailgate_common.h"
#include "ngx_tailgate_meter.h"
#include "ngx_tailgate_ctx.h"
#include "ngx_tailgate_response.h"


static ngx_int_t ngx_tailgate_header_filter(ngx_http_request_t *r);
static ngx_int_t ngx_tailgate_explain(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx);
static ngx_int_t ngx_tailgate_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;


ngx_int_t
ngx_tailgate_filter_init(ngx_conf_t *cf)
{
    /* below these: an error page made JSON gets CORS headers too */

    if (ngx_tailgate_special_init(cf) != NGX_OK) {
        return NGX_ERROR;
    }

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

    if (r != r->main) {
        return ngx_http_next_header_filter(r);
    }

    ctx = ngx_http_tailgate_get_ctx(r);

    if (ctx == NULL) {
        return ngx_http_next_header_filter(r);
    }

    if (ctx->explain && ctx->route.len
        && ngx_tailgate_explain(r, ctx) != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ctx->cors_origin.len && ngx_tailgate_cors_headers(r, ctx) != NGX_OK) {
        return NGX_ERROR;
    }

    /* the client's limits, on its answers as on its refusals */

    if (ctx->ratelimit.len && r->upstream
        && ngx_tailgate_ratelimit_headers(r, &ctx->ratelimit) != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* the request went: logs see the client's headers again */
    ngx_tailgate_scrub_restore(r, ctx);

    if (r->upstream && ctx->provider.len) {
        ngx_tailgate_timeouts_answered(r, ctx);
        ngx_tailgate_stream_watch(r, ctx);
        ngx_tailgate_meter_start(r, ctx);
        ngx_tailgate_translate_start(r, ctx);
    }

    return ngx_http_next_header_filter(r);
}


/* where the request went: the last provider asked, of how many */

static ngx_int_t
ngx_tailgate_explain(ngx_http_request_t *r, ngx_http_tailgate_ctx_t *ctx)
{
    u_char      *p;
    ngx_str_t    attempts;
    ngx_uint_t   n;

    static u_char  digits[] = "0123456789";

    n = ngx_max(ctx->attempt, 1);

    if (n < 10) {
        attempts.data = &digits[n];
        attempts.len = 1;

    } else {
        p = ngx_pnalloc(r->pool, NGX_INT_T_LEN);
        if (p == NULL) {
            return NGX_ERROR;
        }

        attempts.data = p;
        attempts.len = ngx_sprintf(p, "%ui", n) - p;
    }

    if (ngx_tailgate_add_header(r, "X-Tailgate-Route", &ctx->route) != NGX_OK
        || (ctx->provider.len
            && ngx_tailgate_add_header(r, "X-Tailgate-Provider",
                                       &ctx->provider)
               != NGX_OK)
        || ngx_tailgate_add_header(r, "X-Tailgate-Attempts", &attempts)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_tailgate_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    ngx_int_t                 rc;
    ngx_chain_t              *cl, *out, *read;
    ngx_http_tailgate_ctx_t  *ctx;

    if (in == NULL || r != r->main || r->upstream == NULL) {
        return ngx_http_next_body_filter(r, in);
    }

    ctx = ngx_http_tailgate_get_ctx(r);

    if (ctx == NULL) {
        return ngx_http_next_body_filter(r, in);
    }

    /* what the gateway writes itself after a break is neither */

    if (ctx->stream_broken) {
        return ngx_http_next_body_filter(r, in);
    }

    if (ngx_tailgate_meter_body(r, ctx, in, &out) != NGX_OK) {
        return NGX_ERROR;
    }

    read = NULL;

    if (ctx->xlat) {
        read = out;

        if (ngx_tailgate_translate_body(r, ctx, read, &out) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    if (ctx->sse) {
        ngx_tailgate_stream_track(ctx, out);
    }

    if (!ctx->response_complete) {
        for (cl = out; cl; cl = cl->next) {
            if (cl->buf->last_buf) {
                ctx->response_complete = 1;
                break;
            }
        }
    }

    rc = ngx_http_next_body_filter(r, out);

    if (ctx->xlat) {
        ngx_tailgate_translate_sent(ctx, out);

        if (read != in) {
            ngx_tailgate_meter_sent(r, ctx, read);
        }

    } else if (out != in) {
        ngx_tailgate_meter_sent(r, ctx, out);
    }

    return rc;
}
