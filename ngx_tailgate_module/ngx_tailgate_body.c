
/*
 * Copyright (C) The Tailgate authors
 *
 * The request body: one contiguous view of it for the scanners, and the
 * model rewrite.  A rewrite builds a new chain around the old bytes -
 * before the model, the provider's model, after it - so that a 1 MB body
 * is never copied just to change a few bytes.
 */


#include "ngx_http_tailgate_module.h"


static ngx_int_t ngx_tailgate_body_collect(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx);
static ngx_int_t ngx_tailgate_body_append(ngx_pool_t *pool,
    ngx_chain_t ***ll, u_char *start, u_char *end);


/*
 * Points ctx->body at the whole body.  When nginx kept it in one memory
 * buffer (client_body_in_single_buffer with a large enough
 * client_body_buffer_size, as conf/tailgate/ sets up) this is free;
 * otherwise the pieces, in memory or in the temporary file, are copied.
 */

static ngx_int_t
ngx_tailgate_body_collect(ngx_http_request_t *r, ngx_http_tailgate_ctx_t *ctx)
{
    off_t         len;
    u_char       *p;
    ssize_t       n;
    ngx_buf_t    *b, *single;
    ngx_chain_t  *cl;

    ctx->body = (u_char *) "";
    ctx->body_len = 0;

    if (r->request_body == NULL || r->request_body->bufs == NULL) {
        return NGX_OK;
    }

    len = 0;
    single = NULL;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;

        if (b->in_file) {
            len += b->file_last - b->file_pos;
            single = (ngx_buf_t *) -1;
            continue;
        }

        if (b->last == b->pos) {
            continue;
        }

        len += b->last - b->pos;
        single = (single == NULL) ? b : (ngx_buf_t *) -1;
    }

    if (single && single != (ngx_buf_t *) -1) {
        ctx->body = single->pos;
        ctx->body_len = single->last - single->pos;
        return NGX_OK;
    }

    if (len == 0) {
        return NGX_OK;
    }

    p = ngx_pnalloc(r->pool, (size_t) len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ctx->body = p;
    ctx->body_len = (size_t) len;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;

        if (!b->in_file) {
            if (b->last != b->pos) {
                p = ngx_cpymem(p, b->pos, b->last - b->pos);
            }

            continue;
        }

        n = ngx_read_file(b->file, p, (size_t) (b->file_last - b->file_pos),
                          b->file_pos);

        if (n != b->file_last - b->file_pos) {
            ngx_log_error(NGX_LOG_CRIT, r->connection->log, ngx_errno,
                          "tailgate: cannot read the request body from "
                          "\"%V\"", &b->file->name);
            return NGX_ERROR;
        }

        p += n;
    }

    return NGX_OK;
}


/*
 * NGX_OK, NGX_DECLINED with *error set for a client error (400),
 * NGX_ERROR for a server error.
 */

ngx_int_t
ngx_tailgate_body_classify(ngx_http_request_t *r, ngx_http_tailgate_ctx_t *ctx,
    const char **error)
{
    ngx_int_t  rc;

    *error = NULL;

    if (ngx_tailgate_body_collect(r, ctx) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_memzero(&ctx->facts, sizeof(ngx_tailgate_facts_t));

    switch (ctx->endpoint->body) {

    case NGX_TAILGATE_BODY_JSON:
        rc = ngx_tailgate_json_scan(r->pool, ctx->body,
                                    ctx->body + ctx->body_len, &ctx->facts,
                                    error);
        break;

    case NGX_TAILGATE_BODY_MULTIPART:
        rc = ngx_tailgate_multipart_scan(r, ctx->body,
                                         ctx->body + ctx->body_len,
                                         &ctx->facts, error);
        break;

    default:
        return NGX_OK;
    }

    if (rc == NGX_OK) {
        return NGX_OK;
    }

    return (*error == NULL) ? NGX_ERROR : NGX_DECLINED;
}


/* the body that goes upstream names the provider's model */

ngx_int_t
ngx_tailgate_body_rewrite_model(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx, ngx_str_t *model)
{
    ngx_str_t     token;
    ngx_chain_t  *head, *cl, **ll;

    if (model->len == 0) {
        return NGX_ERROR;
    }

    if (ctx->endpoint->body == NGX_TAILGATE_BODY_JSON) {
        if (ngx_tailgate_json_quote(r->pool, model, &token) != NGX_OK) {
            return NGX_ERROR;
        }

    } else {
        token = *model;
    }

    head = NULL;
    ll = &head;

    if (ngx_tailgate_body_append(r->pool, &ll, ctx->body,
                                 ctx->facts.model_start) != NGX_OK
        || ngx_tailgate_body_append(r->pool, &ll, token.data,
                                    token.data + token.len) != NGX_OK
        || ngx_tailgate_body_append(r->pool, &ll, ctx->facts.model_end,
                                    ctx->body + ctx->body_len) != NGX_OK)
    {
        return NGX_ERROR;
    }

    for (cl = head; cl->next; cl = cl->next) { /* void */ }

    cl->buf->last_buf = 1;

    r->request_body->bufs = head;
    r->headers_in.content_length_n = ctx->body_len
                                     - (ctx->facts.model_end
                                        - ctx->facts.model_start)
                                     + token.len;

    return NGX_OK;
}


/*
 * Appends a buffer over [start, end) to the chain.
 * Its start is its pos: nginx rewinds request bufs to b->start when it
 * sends the body again to the next upstream server.
 */

static ngx_int_t
ngx_tailgate_body_append(ngx_pool_t *pool, ngx_chain_t ***ll, u_char *start,
    u_char *end)
{
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    if (start == end) {
        return NGX_OK;
    }

    b = ngx_calloc_buf(pool);
    if (b == NULL) {
        return NGX_ERROR;
    }

    cl = ngx_alloc_chain_link(pool);
    if (cl == NULL) {
        return NGX_ERROR;
    }

    b->start = start;
    b->pos = start;
    b->last = end;
    b->end = end;
    b->temporary = 1;

    cl->buf = b;
    cl->next = NULL;

    **ll = cl;
    *ll = &cl->next;

    return NGX_OK;
}
