
/*
 * Copyright (C) The Tailgate authors
 *
 * The end of a provider's response.  The upstream's finalize handler is
 * the one place that learns why a proxied response ended - 0 for a
 * complete one, NGX_ERROR or 502/504 for a provider that broke off - and
 * it runs as soon as the provider is done: the module wraps it for every
 * response that started.
 *
 * The outcome is reported there and then, so that a lease ends when the
 * provider's work does, not when nginx gets round to the log phase (after
 * a lingering close that can take lingering_timeout).
 *
 * Honest streams: when a provider's event stream breaks off after the
 * response started, nginx can only close the connection, and many SSE
 * clients take a closed stream for a finished one.  The gateway ends such
 * a stream with an explicit error event first, in the shape the endpoint's
 * own errors take, so that the client can tell the answer is cut short.
 */


#include "ngx_tailgate_common.h"
#include "ngx_tailgate_ctx.h"
#include "ngx_tailgate_meter.h"


static void ngx_tailgate_stream_finalize(ngx_http_request_t *r, ngx_int_t rc);
static ngx_chain_t *ngx_tailgate_stream_error(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx);


static const char  ngx_tailgate_stream_message[] =
    "The provider's stream broke off before the response was complete.";


/* from the header filter, when a provider's response is about to start */

void
ngx_tailgate_stream_watch(ngx_http_request_t *r, ngx_http_tailgate_ctx_t *ctx)
{
    ngx_str_t            *type;
    ngx_table_elt_t      *enc;
    ngx_http_upstream_t  *u;

    u = r->upstream;
    type = &r->headers_out.content_type;

    if (u == NULL || ctx->upstream_finalize || ctx->provider.len == 0) {
        return;
    }

    ctx->upstream_finalize = u->finalize_request;
    u->finalize_request = ngx_tailgate_stream_finalize;

    /*
     * A provider that compressed its stream although the gateway asked
     * for identity: an error event spliced into it would corrupt it.
     */

    enc = r->headers_out.content_encoding;

    if (enc && enc->value.len
        && !(enc->value.len == sizeof("identity") - 1
             && ngx_strncasecmp(enc->value.data, (u_char *) "identity",
                                sizeof("identity") - 1) == 0))
    {
        return;
    }

    if (!r->header_only
        && r->headers_out.status < NGX_HTTP_SPECIAL_RESPONSE
        && type->len >= sizeof("text/event-stream") - 1
        && ngx_strncasecmp(type->data, (u_char *) "text/event-stream",
                           sizeof("text/event-stream") - 1) == 0)
    {
        ctx->sse = 1;
        ctx->sse_newlines = 2;
    }
}


/*
 * From the body filter: how many line ends the stream has sent last, so
 * that the error event starts on a line of its own and after a blank line.
 */

void
ngx_tailgate_stream_track(ngx_http_tailgate_ctx_t *ctx, ngx_chain_t *in)
{
    u_char       *p;
    ngx_buf_t    *b;
    ngx_uint_t    n;
    ngx_chain_t  *cl;

    for (cl = in; cl; cl = cl->next) {
        b = cl->buf;

        if (!ngx_buf_in_memory(b) || b->last == b->pos) {
            continue;
        }

        n = 0;

        for (p = b->last; p > b->pos; p--) {
            if (p[-1] == '\n') {
                n++;

            } else if (p[-1] != '\r') {
                break;
            }
        }

        ctx->sse_newlines = (p == b->pos) ? ctx->sse_newlines + n : n;
    }
}


static void
ngx_tailgate_stream_finalize(ngx_http_request_t *r, ngx_int_t rc)
{
    ngx_chain_t              *out;
    ngx_http_upstream_t      *u;
    ngx_http_tailgate_ctx_t  *ctx;

    ctx = ngx_http_tailgate_get_ctx(r);

    if (ctx == NULL) {
        return;
    }

    ctx->upstream_finalize(r, rc);

    u = r->upstream;

    if (rc == NGX_DECLINED) {
        /* not the end: nginx goes on with this upstream */
        return;
    }

    /* how it ended, for the report: done, the client's doing, or broken */

    if (rc == NGX_OK) {
        ctx->response_complete = 1;

        /* a translated stream can be complete and still fail the client */
        ctx->translate_failed = ngx_tailgate_translate_failed(ctx);

    } else if (rc == NGX_DONE || rc == NGX_HTTP_REQUEST_TIME_OUT
               || rc == NGX_HTTP_CLIENT_CLOSED_REQUEST
               || r->connection->error
               || (u->pipe && u->pipe->downstream_error))
    {
        ctx->client_gone = 1;

    } else if (u->header_sent) {
        ctx->stream_broken = 1;
    }

    (void) ngx_tailgate_report(r, ctx);

    if (!ctx->stream_broken || r->header_only
        || (!ctx->sse && ctx->xlat == NULL))
    {
        /* an answer of its own length: cut, it cannot be ended well */
        return;
    }

    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "tailgate: provider \"%V\" broke off its %s after the "
                  "response started; the client gets an error %s",
                  &ctx->provider, ctx->sse ? "event stream" : "answer",
                  ctx->sse ? "event" : "response");

    if (ngx_tailgate_translate_broken(r, ctx, ngx_tailgate_stream_message,
                                      &out)
        != NGX_OK)
    {
        return;
    }

    if (out == NULL) {
        out = ngx_tailgate_stream_error(r, ctx);

        if (out == NULL) {
            return;
        }
    }

    /*
     * The body's end goes with the error (the last chunk of a chunked
     * body, END_STREAM of HTTP/2): the client reads an answer that ended,
     * and ended badly, not a cut connection.  nginx closes the connection
     * next; what the socket takes now counts.
     */

    (void) ngx_http_output_filter(r, out);
}


/*
 * The error events of a stream that broke off, in the endpoint's shape,
 * ending the body.  A Responses stream ends as the API ends a failed
 * response: response.failed, then an error event, numbered after the
 * events that went before.
 */

static ngx_chain_t *
ngx_tailgate_stream_error(ngx_http_request_t *r, ngx_http_tailgate_ctx_t *ctx)
{
    size_t        len;
    u_char       *p;
    ngx_buf_t    *b;
    ngx_uint_t    seq;
    ngx_chain_t  *cl;

    len = sizeof("\n\n") - 1
          + sizeof("event: response.failed\ndata: {\"type\":"
                   "\"response.failed\",\"sequence_number\":,\"response\":"
                   "{\"object\":\"response\",\"status\":\"failed\","
                   "\"error\":{\"code\":\"stream_broken\",\"message\":\"\"}}}"
                   "\n\nevent: error\ndata: {\"type\":\"error\","
                   "\"sequence_number\":,\"code\":\"stream_broken\","
                   "\"message\":\"\",\"param\":null}\n\n") - 1
          + 2 * NGX_INT_T_LEN + 2 * (sizeof(ngx_tailgate_stream_message) - 1)
          + sizeof("data: {\"error\":{\"message\":\"\",\"type\":"
                   "\"server_error\",\"param\":null,\"code\":"
                   "\"stream_broken\"}}\n\n") - 1;

    b = ngx_create_temp_buf(r->pool, len);
    if (b == NULL) {
        return NULL;
    }

    cl = ngx_alloc_chain_link(r->pool);
    if (cl == NULL) {
        return NULL;
    }

    p = b->last;

    if (ctx->sse_newlines < 2) {
        p = ngx_cpymem(p, "\n\n", 2 - ctx->sse_newlines);
    }

    /* the Responses API names its events; Chat Completions sends data */

    if (ctx->endpoint->id == NGX_TAILGATE_EP_RESPONSES) {
        seq = ngx_tailgate_meter_events(ctx);

        p = ngx_sprintf(p, "event: response.failed\ndata: {\"type\":"
                        "\"response.failed\",\"sequence_number\":%ui,"
                        "\"response\":{\"object\":\"response\","
                        "\"status\":\"failed\",\"error\":{\"code\":"
                        "\"stream_broken\",\"message\":\"%s\"}}}\n\n"
                        "event: error\ndata: {\"type\":\"error\","
                        "\"sequence_number\":%ui,\"code\":\"stream_broken\","
                        "\"message\":\"%s\",\"param\":null}\n\n",
                        seq, ngx_tailgate_stream_message, seq + 1,
                        ngx_tailgate_stream_message);

    } else {
        p = ngx_sprintf(p, "data: {\"error\":{\"message\":\"%s\","
                        "\"type\":\"server_error\",\"param\":null,"
                        "\"code\":\"stream_broken\"}}\n\n",
                        ngx_tailgate_stream_message);
    }

    b->last = p;
    b->flush = 1;
    b->last_buf = 1;
    b->last_in_chain = 1;

    cl->buf = b;
    cl->next = NULL;

    return cl;
}
