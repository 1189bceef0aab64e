
/*
 * Copyright (C) The Tailgate authors
 *
 * A chat provider's answer to a translated Responses request, on its way
 * to the client: the header filter starts the translation, the body
 * filter hands every buffer to the translator (ngx_tailgate_translate_
 * resp.c) and passes on what it wrote, and a stream that breaks off ends
 * as the Responses API ends a failed response.  The provider's buffers
 * are used up as they are read, so nginx reads on at once: nothing of a
 * stream is held back.
 */


#include "ngx_tailgate_common.h"
#include "ngx_tailgate_translate.h"


/* our buffers, told apart from everyone else's when they come back */
static ngx_uint_t  ngx_tailgate_translate_tag;


static ngx_int_t ngx_tailgate_translate_last(ngx_http_request_t *r,
    ngx_chain_t ***ll, ngx_uint_t last, ngx_uint_t flush);


/* from the header filter, for a provider's answer about to start */

void
ngx_tailgate_translate_start(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx)
{
    ngx_str_t                       id, *type;
    ngx_uint_t                      json;
    ngx_http_variable_value_t      *vv;
    ngx_http_tailgate_main_conf_t  *tmcf;

    ctx->xlat = NULL;

    if (!ctx->translate || r->header_only
        || r->headers_out.status < NGX_HTTP_OK
        || r->headers_out.status >= NGX_HTTP_SPECIAL_RESPONSE)
    {
        /* errors look the same in both APIs: they pass as they are */
        return;
    }

    type = &r->headers_out.content_type;
    json = type->len >= sizeof("application/json") - 1
           && ngx_strncasecmp(type->data, (u_char *) "application/json",
                              sizeof("application/json") - 1) == 0;

    if (!ctx->sse && !json) {
        return;
    }

    tmcf = ngx_http_get_module_main_conf(r, ngx_http_tailgate_module);

    ngx_str_set(&id, "0");

    if (tmcf->request_id_var != NGX_ERROR) {
        vv = ngx_http_get_indexed_variable(r, tmcf->request_id_var);

        if (vv && !vv->not_found && vv->len) {
            id.data = vv->data;
            id.len = vv->len;
        }
    }

    ctx->xlat = ngx_tailgate_xlat_create(r->pool, ctx->sse, &id,
                                         &ctx->facts.model, ngx_time(),
                                         &ngx_tailgate_translate_tag);
    if (ctx->xlat == NULL) {
        ngx_log_error(NGX_LOG_CRIT, r->connection->log, 0,
                      "tailgate: no memory to translate an answer");
        return;
    }

    ngx_http_clear_content_length(r);
    ngx_http_clear_accept_ranges(r);
    ngx_http_clear_etag(r);
}


/* from the body filter: in, the provider's bytes; *out, the client's */

ngx_int_t
ngx_tailgate_translate_body(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx, ngx_chain_t *in, ngx_chain_t **out)
{
    ngx_buf_t     *b;
    ngx_uint_t     last, flush;
    ngx_chain_t   *cl, **ll;

    *out = NULL;
    ll = out;
    last = 0;
    flush = 0;

    for (cl = in; cl; cl = cl->next) {
        b = cl->buf;

        if (ngx_buf_in_memory(b) && b->last > b->pos) {
            if (ngx_tailgate_xlat_feed(ctx->xlat, b->pos, b->last, &ll)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

            b->pos = b->last;
        }

        if (b->in_file) {
            b->file_pos = b->file_last;
        }

        last |= b->last_buf;
        flush |= b->flush;
    }

    if (last && ngx_tailgate_xlat_end(ctx->xlat, &ll) != NGX_OK) {
        return NGX_ERROR;
    }

    if (flush || ctx->sse) {
        for (cl = *out; cl && cl->next; cl = cl->next) { /* void */ }

        if (cl) {
            cl->buf->flush = 1;
        }
    }

    return ngx_tailgate_translate_last(r, &ll, last, flush || ctx->sse);
}


void
ngx_tailgate_translate_sent(ngx_http_tailgate_ctx_t *ctx, ngx_chain_t *out)
{
    if (ctx->xlat) {
        ngx_tailgate_xlat_sent(ctx->xlat, out);
    }
}


/*
 * A translated answer the provider finished but the client is told
 * failed: an error in the stream, no end to it, more than is kept, or a
 * JSON answer that was not one.
 */

ngx_uint_t
ngx_tailgate_translate_failed(ngx_http_tailgate_ctx_t *ctx)
{
    return ctx->xlat && ngx_tailgate_xlat_outcome(ctx->xlat) != NGX_OK;
}


/*
 * A translated answer that broke off: a stream's response.failed and
 * error events, or a JSON answer's failed response, then the end of the
 * body.  *out is NULL when the answer is not translated.
 */

ngx_int_t
ngx_tailgate_translate_broken(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx, const char *message, ngx_chain_t **out)
{
    ngx_chain_t  **ll;

    *out = NULL;

    if (ctx->xlat == NULL) {
        return NGX_OK;
    }

    ll = out;

    if (ngx_tailgate_xlat_fail(ctx->xlat, "stream_broken", message, &ll)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_tailgate_translate_last(r, &ll, 1, 1);
}


/*
 * The chain's end: an event goes out at once (the last of our buffers is
 * flushed, no new one is made for it), and the body's last buffer ends
 * the body.
 */

static ngx_int_t
ngx_tailgate_translate_last(ngx_http_request_t *r, ngx_chain_t ***ll,
    ngx_uint_t last, ngx_uint_t flush)
{
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    if (!last) {
        return NGX_OK;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_ERROR;
    }

    cl = ngx_alloc_chain_link(r->pool);
    if (cl == NULL) {
        return NGX_ERROR;
    }

    if (last) {
        b->last_buf = (r == r->main) ? 1 : 0;
        b->last_in_chain = 1;
    }

    b->flush = flush ? 1 : 0;
    b->sync = 1;

    cl->buf = b;
    cl->next = NULL;
    **ll = cl;
    *ll = &cl->next;

    return NGX_OK;
}
