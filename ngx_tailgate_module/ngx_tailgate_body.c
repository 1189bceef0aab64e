
/*
 * Copyright (C) The Tailgate authors
 *
 * The request body: one contiguous view of it for the scanners, and the
 * model rewrite.  A rewrite builds a new chain around the old bytes -
 * before the model, the provider's model, after it - so that a 1 MB body
 * is never copied just to change a few bytes.
 */


#include "ngx_tailgate_common.h"


static ngx_uint_t ngx_tailgate_body_in_place(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx);
static ngx_int_t ngx_tailgate_body_collect(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx);


/*
 * Points ctx->body at the whole body.  When nginx kept it in one memory
 * buffer this is free.  The common case is two: what arrived with the
 * headers, then the rest in the body buffer, which client_body_in_single_
 * buffer makes large enough for both (nginx 1.22 sizes it so, but does not
 * join them): the rest moves up and the first part goes before it, in
 * place.  Anything else - chunked pieces, a temporary file - is copied.
 */

static ngx_int_t
ngx_tailgate_body_collect(ngx_http_request_t *r, ngx_http_tailgate_ctx_t *ctx)
{
    off_t         len;
    u_char       *p;
    ssize_t       n;
    ngx_buf_t    *b, *head;
    ngx_uint_t    nmem, nfile;
    ngx_chain_t  *cl;

    ctx->body = (u_char *) "";
    ctx->body_len = 0;

    if (r->request_body == NULL || r->request_body->bufs == NULL) {
        return NGX_OK;
    }

    len = 0;
    nmem = 0;
    nfile = 0;
    head = NULL;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;

        if (b->in_file) {
            len += b->file_last - b->file_pos;
            nfile++;
            continue;
        }

        if (b->last == b->pos) {
            continue;
        }

        len += b->last - b->pos;

        if (nmem++ == 0) {
            head = b;
        }
    }

    if (len == 0) {
        return NGX_OK;
    }

    if (nfile == 0 && nmem == 1) {
        ctx->body = head->pos;
        ctx->body_len = head->last - head->pos;
        return NGX_OK;
    }

    if (nfile == 0 && ngx_tailgate_body_in_place(r, ctx)) {
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
 * The body as one run of memory without copying it, when nginx has it so:
 * the buffers of the chain are pieces of nginx's body buffer in order
 * (the body filters give one for each read), perhaps after a first piece
 * that came with the headers; that piece moves into the room nginx leaves
 * for it at the end of the body buffer (client_body_in_single_buffer), and
 * the rest moves up.  The chain becomes one buffer of the whole body.
 * 0: not so; the caller copies.
 */

static ngx_uint_t
ngx_tailgate_body_in_place(ngx_http_request_t *r, ngx_http_tailgate_ctx_t *ctx)
{
    u_char       *from, *to;
    size_t        head_len;
    ngx_buf_t    *rb, *b, *whole;
    ngx_chain_t  *cl, *first, *last;

    rb = r->request_body->buf;

    if (rb == NULL || !rb->temporary) {
        return 0;
    }

    first = NULL;
    last = NULL;
    head_len = 0;
    from = NULL;
    to = NULL;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;

        if (b->last == b->pos) {
            continue;
        }

        if (b->pos >= rb->start && b->last <= rb->end
            && (to == NULL || b->pos == to))
        {
            if (to == NULL) {
                from = b->pos;
                first = cl;
            }

            to = b->last;
            last = cl;
            continue;
        }

        /* only the first piece may lie elsewhere, before all the others */

        if (to != NULL || head_len) {
            return 0;
        }

        head_len = b->last - b->pos;
    }

    if (to == NULL) {
        return 0;
    }

    if (head_len) {
        if ((size_t) (rb->end - to) < head_len) {
            return 0;
        }

        for (cl = r->request_body->bufs; cl->buf->last == cl->buf->pos;
             cl = cl->next)
        {
            /* void */
        }

        ngx_memmove(from + head_len, from, to - from);
        ngx_memcpy(from, cl->buf->pos, head_len);
        to += head_len;
    }

    whole = first->buf;
    whole->pos = from;
    whole->last = to;

    /* what ends the chain may be an empty buffer after the last piece */

    for (cl = last; cl; cl = cl->next) {
        whole->last_buf |= cl->buf->last_buf;
        whole->last_in_chain |= cl->buf->last_in_chain;
    }

    if (rb->last < to) {
        rb->last = to;
    }

    first->next = NULL;
    r->request_body->bufs = first;

    ctx->body = from;
    ctx->body_len = to - from;

    return 1;
}


/*
 * NGX_OK, NGX_DECLINED with *error set for a client error (400),
 * NGX_ERROR for a server error.
 */

ngx_int_t
ngx_tailgate_body_classify(ngx_http_request_t *r, ngx_http_tailgate_ctx_t *ctx,
    ngx_tailgate_scan_error_t *error)
{
    ngx_int_t  rc;

    error->arg = NULL;

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

    return rc;
}


/* the body that goes upstream names the provider's model */

ngx_int_t
ngx_tailgate_body_rewrite_model(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx, ngx_str_t *model)
{
    ngx_str_t  token, pieces[3];

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

    /* before the model, the model, after it */

    pieces[0].data = ctx->body;
    pieces[0].len = ctx->facts.model_start - ctx->body;
    pieces[1] = token;
    pieces[2].data = ctx->facts.model_end;
    pieces[2].len = ctx->body + ctx->body_len - ctx->facts.model_end;

    return ngx_tailgate_body_replace(r, ctx, pieces, 3);
}


/*
 * The body that goes upstream becomes these pieces, in order; they point
 * into the client's body or into the pool, nothing is copied.  The first
 * replacement keeps the client's chain, so that a fallback to a provider
 * that wants the body as it came can have it back.
 */

ngx_int_t
ngx_tailgate_body_replace(ngx_http_request_t *r, ngx_http_tailgate_ctx_t *ctx,
    ngx_str_t *pieces, ngx_uint_t n)
{
    off_t         len;
    ngx_buf_t    *b;
    ngx_uint_t    i, k;
    ngx_chain_t  *cl, **ll;

    if (!ctx->body_replaced) {
        ctx->client_bufs = r->request_body->bufs;
        ctx->client_length = r->headers_in.content_length_n;
        ctx->body_replaced = 1;
    }

    b = ngx_pcalloc(r->pool, n * sizeof(ngx_buf_t));
    cl = ngx_palloc(r->pool, n * sizeof(ngx_chain_t));

    if (b == NULL || cl == NULL) {
        return NGX_ERROR;
    }

    ll = &r->request_body->bufs;
    len = 0;
    k = 0;

    for (i = 0; i < n; i++) {
        if (pieces[i].len == 0) {
            continue;
        }

        /*
         * start is pos: nginx rewinds request bufs to b->start when it sends
         * the body again to the next upstream server
         */

        b[k].start = pieces[i].data;
        b[k].pos = pieces[i].data;
        b[k].last = pieces[i].data + pieces[i].len;
        b[k].end = b[k].last;
        b[k].temporary = 1;

        cl[k].buf = &b[k];
        *ll = &cl[k];
        ll = &cl[k].next;
        len += pieces[i].len;
        k++;
    }

    *ll = NULL;

    if (k) {
        b[k - 1].last_buf = 1;
    }

    r->headers_in.content_length_n = len;

    return NGX_OK;
}


/* the body as the client sent it, after a replacement for another step */

void
ngx_tailgate_body_restore(ngx_http_request_t *r, ngx_http_tailgate_ctx_t *ctx)
{
    if (ctx->body_replaced) {
        r->request_body->bufs = ctx->client_bufs;
        r->headers_in.content_length_n = ctx->client_length;
        ctx->body_replaced = 0;
    }
}
