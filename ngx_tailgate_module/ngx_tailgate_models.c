
/*
 * Copyright (C) The Tailgate authors
 *
 * GET /v1/models and /v1/models/{id}: the routes this client may use, as
 * policyd lists them.  A list that fits one frame is one answer with its
 * Content-Length.  A longer one (a policy of 100k routes) comes in pages:
 * the first page's answer starts a chunked response, each page is sent
 * from one buffer of the request's, and the next page is asked for only
 * when the client has taken the last one - so the worker holds one frame
 * of the list at a time, however long the list and however slow the
 * client.  A page that policyd cannot give after the response started
 * ends it without its last chunk: the client sees a cut body, never a
 * short list.
 */


#include "ngx_tailgate_common.h"
#include "ngx_tailgate_ctx.h"
#include "ngx_tailgate_names.h"
#include "ngx_tailgate_response.h"


#define NGX_TAILGATE_MODELS_FRAME     4096


static ngx_int_t ngx_http_tailgate_models_call(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx);
static void ngx_http_tailgate_models_answered(ngx_tailgate_call_t *call,
    ngx_tailgate_call_result_e result, ngx_tailgate_reply_t *reply);
static ngx_int_t ngx_http_tailgate_models_page(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx, ngx_tailgate_reply_t *reply);
static void ngx_http_tailgate_models_writer(ngx_http_request_t *r);
static ngx_int_t ngx_http_tailgate_models_next(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx);


/* MODELS for this client; NGX_AGAIN while it waits, or NGX_DONE */

ngx_int_t
ngx_http_tailgate_ask_models(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx)
{
    if (ctx->endpoint_rest.len > NGX_TAILGATE_MAX_ROUTE_NAME) {
        return ngx_http_tailgate_finish(r,
                   ngx_tailgate_fail(r, NGX_TAILGATE_ERR_MODEL_NOT_FOUND,
                                     NULL));
    }

    return ngx_http_tailgate_models_call(r, ctx);
}


static ngx_int_t
ngx_http_tailgate_models_call(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx)
{
    u_char                        *frame;
    size_t                         size;
    ngx_uint_t                     i;
    ngx_tailgate_frame_t           f;
    ngx_tailgate_identity_t       *id;
    ngx_http_tailgate_loc_conf_t  *tlcf;
    u_char                         buf[NGX_TAILGATE_MODELS_FRAME];

    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_tailgate_module);
    id = ctx->identity;

    size = sizeof(buf) / 2 + ctx->endpoint_rest.len + ctx->models_cursor.len;

    for (i = 0; i < id->nroutes; i++) {
        size += TG_FIELD_HEADER_SIZE + id->routes[i].len;
    }

    for (i = 0; i < ctx->ntags; i++) {
        size += TG_FIELD_HEADER_SIZE + ctx->tags[i].len;
    }

    frame = buf;

    if (size > sizeof(buf)) {
        frame = ngx_pnalloc(r->pool, size);
        if (frame == NULL) {
            return ngx_http_tailgate_finish(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        }
    }

    ngx_tailgate_frame_init(&f, frame, ngx_max(size, sizeof(buf)),
                            TG_MSG_MODELS);
    ngx_tailgate_frame_str(&f, TG_F_CLIENT, &id->client);

    if (id->tenant.len) {
        ngx_tailgate_frame_str(&f, TG_F_TENANT, &id->tenant);
    }

    for (i = 0; i < ctx->ntags; i++) {
        ngx_tailgate_frame_str(&f, TG_F_TAG, &ctx->tags[i]);
    }

    for (i = 0; i < id->nroutes; i++) {
        ngx_tailgate_frame_str(&f, TG_F_ALLOW_ROUTE, &id->routes[i]);
    }

    if (ctx->endpoint_rest.len) {
        ngx_tailgate_frame_str(&f, TG_F_MODEL, &ctx->endpoint_rest);
    }

    if (ctx->models_cursor.len) {
        ngx_tailgate_frame_str(&f, TG_F_CURSOR, &ctx->models_cursor);
    }

    return ngx_http_tailgate_call(r, ctx, &f, tlcf->timeout,
                                  ngx_http_tailgate_models_answered, NULL);
}


static void
ngx_http_tailgate_models_answered(ngx_tailgate_call_t *call,
    ngx_tailgate_call_result_e result, ngx_tailgate_reply_t *reply)
{
    ngx_int_t                 rc;
    ngx_connection_t         *c;
    ngx_http_request_t       *r;
    ngx_http_tailgate_ctx_t  *ctx;

    ctx = ngx_http_tailgate_wake(call);
    r = ctx->request;
    c = r->connection;

    if (result != NGX_TAILGATE_CALL_OK) {
        if (ctx->models_buf) {
            ngx_log_error(NGX_LOG_ERR, c->log, 0,
                          "tailgate: policyd gave no further page of the "
                          "model list; the answer is cut short");
            rc = NGX_ERROR;

        } else {
            rc = ngx_tailgate_fail(r, NGX_TAILGATE_ERR_POLICY_UNAVAILABLE,
                                   NULL);
        }

    } else {
        rc = ngx_http_tailgate_models_page(r, ctx, reply);
    }

    if (rc != NGX_DONE) {
        (void) ngx_http_tailgate_finish(r, rc);
    }

    ngx_http_run_posted_requests(c);
}


/*
 * A page: the whole answer, the first of several, or the next one.
 * NGX_DONE while more are to come; anything else ends the request.
 */

static ngx_int_t
ngx_http_tailgate_models_page(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx, ngx_tailgate_reply_t *reply)
{
    size_t                         cap;
    ngx_int_t                      rc;
    ngx_uint_t                     last;
    ngx_buf_t                     *b;
    ngx_chain_t                    out;
    ngx_http_tailgate_main_conf_t  *tmcf;

    if (reply->status != NGX_HTTP_OK) {
        if (ctx->models_buf) {
            return NGX_ERROR;
        }

        return ngx_tailgate_send_error(r,
                   (reply->status >= 400 && reply->status <= 599)
                   ? reply->status : NGX_HTTP_SERVICE_UNAVAILABLE,
                   &reply->error_type, &reply->error_code,
                   &reply->error_message);
    }

    /* it fits one frame: as before, with its length */

    if (ctx->models_buf == NULL && reply->next.len == 0) {
        return ngx_tailgate_send_json(r, NGX_HTTP_OK, &reply->body);
    }

    if (reply->next.len > NGX_TAILGATE_MAX_ROUTE_NAME) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "tailgate: policyd sent a model list cursor of %uz "
                      "bytes", reply->next.len);
        return ctx->models_buf ? NGX_ERROR : NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ctx->models_buf == NULL) {
        tmcf = ngx_http_get_module_main_conf(r, ngx_http_tailgate_module);
        cap = ngx_max(tmcf->policyd.buffer_size, reply->body.len);

        b = ngx_create_temp_buf(r->pool, cap);
        ctx->models_cursor.data = ngx_pnalloc(r->pool,
                                              NGX_TAILGATE_MAX_ROUTE_NAME);

        if (b == NULL || ctx->models_cursor.data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ctx->models_buf = b;

        rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) {
            return rc;
        }

        r->headers_out.status = NGX_HTTP_OK;
        r->headers_out.content_length_n = -1;
        ngx_str_set(&r->headers_out.content_type, "application/json");
        r->headers_out.content_type_len = r->headers_out.content_type.len;
        r->headers_out.content_type_lowcase = NULL;

        rc = ngx_http_send_header(r);

        if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
            return rc;
        }
    }

    b = ctx->models_buf;

    if (reply->body.len > (size_t) (b->end - b->start)) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "tailgate: a page of the model list larger than a "
                      "frame");
        return NGX_ERROR;
    }

    /* the last page went already: its buffer is free again */

    b->pos = b->start;
    b->last = ngx_cpymem(b->start, reply->body.data, reply->body.len);
    b->flush = 1;
    b->last_buf = (reply->next.len == 0);
    b->last_in_chain = 1;

    /* the last page has none: memcpy() must not see its NULL */

    ctx->models_cursor.len = reply->next.len;

    if (reply->next.len) {
        ngx_memcpy(ctx->models_cursor.data, reply->next.data,
                   reply->next.len);
    }

    out.buf = b;
    out.next = NULL;

    /* the chunked filter takes last_buf off the buffer for its trailer */
    last = b->last_buf;

    rc = ngx_http_output_filter(r, &out);

    if (rc == NGX_ERROR || last) {
        return rc;
    }

    return ngx_http_tailgate_models_next(r, ctx);
}


/* the next page once the client took this one; NGX_DONE, or an end */

static ngx_int_t
ngx_http_tailgate_models_next(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx)
{
    ngx_int_t                  rc;
    ngx_event_t               *wev;
    ngx_http_core_loc_conf_t  *clcf;

    if (ctx->models_buf->pos != ctx->models_buf->last
        || r->connection->buffered)
    {
        wev = r->connection->write;
        clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

        r->write_event_handler = ngx_http_tailgate_models_writer;

        if (!wev->delayed) {
            ngx_add_timer(wev, clcf->send_timeout);
        }

        if (ngx_handle_write_event(wev, clcf->send_lowat) != NGX_OK) {
            return NGX_ERROR;
        }

        return NGX_DONE;
    }

    rc = ngx_http_tailgate_models_call(r, ctx);

    /* NGX_AGAIN: asked, the request waits; NGX_DONE: it was finished */
    return (rc == NGX_AGAIN) ? NGX_DONE : rc;
}


/* the client reads: what is left of the page goes, then the next is asked */

static void
ngx_http_tailgate_models_writer(ngx_http_request_t *r)
{
    ngx_int_t                 rc;
    ngx_event_t              *wev;
    ngx_http_tailgate_ctx_t  *ctx;

    ctx = ngx_http_tailgate_get_ctx(r);
    wev = r->connection->write;

    if (wev->timedout) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, NGX_ETIMEDOUT,
                      "client timed out");
        r->connection->timedout = 1;
        ngx_http_finalize_request(r, NGX_HTTP_REQUEST_TIME_OUT);
        return;
    }

    if (ctx == NULL || ctx->models_buf == NULL) {
        ngx_http_finalize_request(r, NGX_ERROR);
        return;
    }

    rc = ngx_http_output_filter(r, NULL);

    if (rc == NGX_ERROR) {
        ngx_http_finalize_request(r, rc);
        return;
    }

    if (wev->timer_set && !wev->delayed) {
        ngx_del_timer(wev);
    }

    r->write_event_handler = ngx_http_request_empty_handler;

    rc = ngx_http_tailgate_models_next(r, ctx);

    if (rc != NGX_DONE) {
        (void) ngx_http_tailgate_finish(r, rc);
    }
}
