
/*
 * Copyright (C) The Tailgate authors
 *
 * The request's context, from the access phase to the log phase: made,
 * found again after an internal redirect, parked while policyd is asked,
 * and ended when the module answers itself.
 *
 * An internal redirect (error_page, a named location) clears the module
 * contexts; ours lives on as the data of its pool cleanup, where it is
 * found again (the pattern of nginx's realip module).
 */


#include "ngx_tailgate_common.h"
#include "ngx_tailgate_ctx.h"
#include "ngx_tailgate_response.h"


static void ngx_http_tailgate_cleanup(void *data);


ngx_http_tailgate_ctx_t *
ngx_http_tailgate_ctx_create(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t       *cln;
    ngx_http_tailgate_ctx_t  *ctx;

    cln = ngx_pool_cleanup_add(r->pool, sizeof(ngx_http_tailgate_ctx_t));
    if (cln == NULL) {
        return NULL;
    }

    ctx = cln->data;
    ngx_memzero(ctx, sizeof(ngx_http_tailgate_ctx_t));

    ctx->request = r;

    cln->handler = ngx_http_tailgate_cleanup;
    ngx_http_set_ctx(r, ctx, ngx_http_tailgate_module);

    return ctx;
}


/* after an internal redirect: ngx_http_tailgate_get_ctx() asks here */

ngx_http_tailgate_ctx_t *
ngx_http_tailgate_ctx_find(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t       *cln;
    ngx_http_tailgate_ctx_t  *ctx;

    for (cln = r->pool->cleanup; cln; cln = cln->next) {
        if (cln->handler == ngx_http_tailgate_cleanup) {
            ctx = cln->data;

            if (ctx->request == r) {
                ngx_http_set_ctx(r, ctx, ngx_http_tailgate_module);
                return ctx;
            }
        }
    }

    return NULL;
}


/*
 * Sends the frame and parks the request until handler gets the answer or
 * the timeout: NGX_AGAIN.  NGX_DONE: the request got its error response.
 */

ngx_int_t
ngx_http_tailgate_call(ngx_http_request_t *r, ngx_http_tailgate_ctx_t *ctx,
    ngx_tailgate_frame_t *f, ngx_msec_t timeout,
    ngx_tailgate_call_handler_pt handler, ngx_tailgate_call_part_pt part)
{
    ngx_int_t  rc;

    /* only requests that ask need the call's timer and tree node */

    if (ctx->call == NULL) {
        ctx->call = ngx_pcalloc(r->pool, sizeof(ngx_tailgate_call_t));
        if (ctx->call == NULL) {
            return ngx_http_tailgate_finish(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        }
    }

    ctx->call->handler = handler;
    ctx->call->part = part;
    ctx->call->data = ctx;

    rc = ngx_tailgate_call(ctx->call, f, timeout, r->connection->log);

    if (rc == NGX_ERROR) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "tailgate: the request's facts do not fit in a frame");
        return ngx_http_tailgate_finish(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
    }

    if (rc != NGX_OK) {
        return ngx_http_tailgate_finish(r,
                   ngx_tailgate_fail(r, NGX_TAILGATE_ERR_POLICY_UNAVAILABLE,
                                     NULL));
    }

    ctx->state = NGX_TAILGATE_WAITING;
    ctx->decide_start = ngx_current_msec;

    /* notice a client that goes away while we wait */
    r->read_event_handler = ngx_http_test_reading;
    r->write_event_handler = ngx_http_request_empty_handler;

    return NGX_AGAIN;
}


/* policyd answered, or never will: the parked request is awake again */

ngx_http_tailgate_ctx_t *
ngx_http_tailgate_wake(ngx_tailgate_call_t *call)
{
    ngx_http_tailgate_ctx_t  *ctx;

    ctx = call->data;

    ctx->decide_time = ngx_current_msec - ctx->decide_start;
    ctx->request->read_event_handler = ngx_http_block_reading;

    return ctx;
}


/*
 * The request got its response: finalize it with the output's result
 * (which may be NGX_AGAIN when the client is slow) and stop the phases.
 */

ngx_int_t
ngx_http_tailgate_finish(ngx_http_request_t *r, ngx_int_t rc)
{
    ngx_http_tailgate_ctx_t  *ctx;

    ctx = ngx_http_tailgate_get_ctx(r);

    if (ctx) {
        ctx->state = NGX_TAILGATE_DONE;
    }

    ngx_http_finalize_request(r, rc);

    return NGX_DONE;
}


static void
ngx_http_tailgate_cleanup(void *data)
{
    ngx_http_tailgate_ctx_t  *ctx = data;

    /* a late answer finds no call and gives its lease back */

    if (ctx->call) {
        ngx_tailgate_call_cancel(ctx->call);
    }

    /* never reported (it should have been): policyd's lease_ttl_ms ends it */
    ngx_tailgate_lease_end(&ctx->lease);
}
