
/*
 * Copyright (C) The Tailgate authors
 *
 * tailgate_status: what policyd knows of the providers and routes, relayed
 * to an operator.  A status larger than one frame comes in parts, which
 * are kept until the reply.
 */


#include "ngx_tailgate_common.h"
#include "ngx_tailgate_ctx.h"
#include "ngx_tailgate_response.h"


static void ngx_http_tailgate_status_part(ngx_tailgate_call_t *call,
    ngx_tailgate_reply_t *reply);
static void ngx_http_tailgate_status_answered(ngx_tailgate_call_t *call,
    ngx_tailgate_call_result_e result, ngx_tailgate_reply_t *reply);
static ngx_int_t ngx_http_tailgate_status_send(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx, ngx_tailgate_reply_t *reply);


/*
 * tailgate_status: what policyd knows of the providers and routes, for an
 * operator - a client whose key record or token has the admin role.
 */

ngx_int_t
ngx_http_tailgate_ask_status(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx)
{
    ngx_int_t                      rc;
    ngx_str_t                      format, allow;
    ngx_tailgate_frame_t           f;
    ngx_http_tailgate_loc_conf_t  *tlcf;
    u_char                         buf[128];

    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_tailgate_module);

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        ngx_str_set(&allow, "GET, HEAD");

        if (ngx_tailgate_add_header(r, "Allow", &allow) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_tailgate_finish(r,
                   ngx_tailgate_fail(r, NGX_TAILGATE_ERR_STATUS_METHOD, NULL));
    }

    if (!ctx->identity->admin) {
        ngx_log_error(tlcf->reject_log_level, r->connection->log, 0,
                      "tailgate: client \"%V\" asked for the status "
                      "without the admin role", &ctx->identity->client);

        return ngx_http_tailgate_finish(r,
                   ngx_tailgate_fail(r, NGX_TAILGATE_ERR_ADMIN_REQUIRED, NULL));
    }

    rc = ngx_http_discard_request_body(r);

    if (rc != NGX_OK) {
        return rc;
    }

    ctx->status = 1;

    if (tlcf->status == NGX_TAILGATE_STATUS_PROMETHEUS) {
        ngx_str_set(&format, "prometheus");
    } else {
        ngx_str_set(&format, "json");
    }

    ngx_tailgate_frame_init(&f, buf, sizeof(buf), TG_MSG_STATUS);
    ngx_tailgate_frame_str(&f, TG_F_FORMAT, &format);

    return ngx_http_tailgate_call(r, ctx, &f, tlcf->timeout,
                                  ngx_http_tailgate_status_answered,
                                  ngx_http_tailgate_status_part);
}


/*
 * A status larger than one frame: its parts are kept until the reply, and
 * the reply's own part after them.  Each is copied once, out of the read
 * buffer that the next frame reuses.
 */

static void
ngx_http_tailgate_status_part(ngx_tailgate_call_t *call,
    ngx_tailgate_reply_t *reply)
{
    ngx_str_t                *part;
    ngx_http_request_t       *r;
    ngx_http_tailgate_ctx_t  *ctx;

    ctx = call->data;
    r = ctx->request;

    if (ctx->status_lost) {
        return;
    }

    if (ctx->status_parts == NULL) {
        ctx->status_parts = ngx_array_create(r->pool, 4, sizeof(ngx_str_t));
        if (ctx->status_parts == NULL) {
            ctx->status_lost = 1;
            return;
        }
    }

    part = ngx_array_push(ctx->status_parts);
    if (part == NULL) {
        ctx->status_lost = 1;
        return;
    }

    part->data = ngx_pnalloc(r->pool, reply->body.len);
    if (part->data == NULL) {
        ctx->status_lost = 1;
        return;
    }

    part->len = reply->body.len;

    if (part->len) {
        ngx_memcpy(part->data, reply->body.data, part->len);
    }
}


static void
ngx_http_tailgate_status_answered(ngx_tailgate_call_t *call,
    ngx_tailgate_call_result_e result, ngx_tailgate_reply_t *reply)
{
    ngx_int_t                 rc;
    ngx_connection_t         *c;
    ngx_http_tailgate_ctx_t  *ctx;

    ctx = ngx_http_tailgate_wake(call);
    c = ctx->request->connection;

    if (result == NGX_TAILGATE_CALL_OK) {
        rc = ngx_http_tailgate_status_send(ctx->request, ctx, reply);

    } else {
        rc = ngx_tailgate_fail(ctx->request,
                               NGX_TAILGATE_ERR_POLICY_UNAVAILABLE, NULL);
    }

    (void) ngx_http_tailgate_finish(ctx->request, rc);

    ngx_http_run_posted_requests(c);
}

static ngx_int_t
ngx_http_tailgate_status_send(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx, ngx_tailgate_reply_t *reply)
{
    const char                    *content_type;
    ngx_http_tailgate_loc_conf_t  *tlcf;

    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_tailgate_module);

    if (reply->type != TG_MSG_STATUS_REPLY || reply->status != NGX_HTTP_OK) {
        /* too large even in parts: policyd says where to look */

        return ngx_tailgate_fail(r, NGX_TAILGATE_ERR_STATUS_TOO_LARGE,
                                 reply->error_message.len
                                 ? &reply->error_message : NULL);
    }

    ngx_http_tailgate_status_part(ctx->call, reply);

    if (ctx->status_lost) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    content_type = (tlcf->status == NGX_TAILGATE_STATUS_PROMETHEUS)
                   ? "text/plain; version=0.0.4" : "application/json";

    return ngx_tailgate_send_pieces(r, NGX_HTTP_OK, ctx->status_parts->elts,
                                    ctx->status_parts->nelts, content_type);
}


/* never reached: the precontent phase answers a status request */

ngx_int_t
ngx_http_tailgate_status_handler(ngx_http_request_t *r)
{
    return NGX_HTTP_NOT_FOUND;
}
