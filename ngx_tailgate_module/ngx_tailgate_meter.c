
/*
 * Copyright (C) The Tailgate authors
 *
 * What a provider's answer used.  The body filter hands every buffer of a
 * proxied answer here on its way to the client; ngx_tailgate_usage.c reads
 * it in place.  Nothing is copied or waited for, with one exception: a chat
 * stream whose usage the gateway asked for (the client did not) carries a
 * usage-only chunk at its end that the client must not see.  Each event of
 * such a stream is passed on as soon as it is known not to be that chunk -
 * in practice at its "choices":[{ - and the bytes of an event not yet known
 * that a read split are kept back (a few hundred bytes, at most
 * NGX_TAILGATE_METER_HOLD) until the next read tells.  The usage-only chunk
 * is cut out of the buffer in place.
 *
 * When the provider says nothing of its usage, the request is recorded
 * with an estimate, marked as one: the prompt at 4 bytes of the request
 * body per token, the output at 4 bytes of the answer's text per token (a
 * stream's deltas as they reached the client; for an answer that is not
 * JSON, its bytes).
 */


#include "ngx_tailgate_meter.h"
#include "ngx_tailgate_usage.h"


#define NGX_TAILGATE_METER_HOLD      4096
#define NGX_TAILGATE_BYTES_PER_TOKEN 4


struct ngx_tailgate_meter_s {
    ngx_tailgate_usage_t         scan;
    ngx_chain_t                 *held;       /* an event not decided yet */
    ngx_chain_t                 *free;
    ngx_chain_t                 *busy;
    off_t                        bytes;      /* of the answer's body */
    unsigned                     read:1;     /* JSON or events, read */
    unsigned                     strip:1;    /* drop the usage-only chunk */
    unsigned                     undecided:1;    /* the current event */
};


static ngx_int_t ngx_tailgate_meter_strip(ngx_http_request_t *r,
    ngx_tailgate_meter_t *m, ngx_chain_t *in, ngx_chain_t **out);
static ngx_int_t ngx_tailgate_meter_link(ngx_http_request_t *r,
    ngx_chain_t ***ll, ngx_buf_t *b);
static ngx_int_t ngx_tailgate_meter_hold(ngx_http_request_t *r,
    ngx_tailgate_meter_t *m, u_char *p, size_t n);
static ngx_uint_t ngx_tailgate_meter_type(ngx_http_request_t *r,
    const char *type, size_t len);
static uint64_t ngx_tailgate_meter_estimate(uint64_t bytes);


void
ngx_tailgate_meter_start(ngx_http_request_t *r, ngx_http_tailgate_ctx_t *ctx)
{
    ngx_uint_t             sse, json, responses;
    ngx_tailgate_meter_t  *m;

    m = ctx->meter;

    if (m == NULL) {
        /* set below, with every attempt's */
        m = ngx_palloc(r->pool, sizeof(ngx_tailgate_meter_t));
        if (m == NULL) {
            return;
        }

        m->free = NULL;
        m->busy = NULL;

        ctx->meter = m;
    }

    /*
     * A new attempt's answer: its own usage, the lists of buffers kept.
     * The reader's state is made anew only for an answer that is read
     * (ngx_tailgate_usage_init()): nothing looks at it otherwise.
     */

    m->held = NULL;
    m->bytes = 0;
    m->read = 0;
    m->strip = 0;
    m->undecided = 0;

    ctx->tokens = NULL;

    if (r->headers_out.status < NGX_HTTP_OK
        || r->headers_out.status >= NGX_HTTP_SPECIAL_RESPONSE
        || r->header_only)
    {
        return;
    }

    /* the gateway asked providers for identity; anything else is opaque */

    if (r->headers_out.content_encoding
        && r->headers_out.content_encoding->value.len
        && !(r->headers_out.content_encoding->value.len == 8
             && ngx_strncasecmp(r->headers_out.content_encoding->value.data,
                                (u_char *) "identity", 8) == 0))
    {
        return;
    }

    sse = ctx->sse;
    json = ngx_tailgate_meter_type(r, "application/json",
                                   sizeof("application/json") - 1);

    if (!sse && !json) {
        return;
    }

    /* a translated answer is a chat answer until the translation */
    responses = (ctx->endpoint->id == NGX_TAILGATE_EP_RESPONSES)
                && !ctx->translate;

    m->read = 1;
    m->strip = sse && ctx->usage_asked
               && ctx->endpoint->id == NGX_TAILGATE_EP_CHAT;
    m->undecided = m->strip;

    ngx_tailgate_usage_init(&m->scan, sse, sse && responses, m->strip);
}


ngx_int_t
ngx_tailgate_meter_body(ngx_http_request_t *r, ngx_http_tailgate_ctx_t *ctx,
    ngx_chain_t *in, ngx_chain_t **out)
{
    ngx_buf_t                    *b;
    ngx_chain_t                  *cl;
    ngx_tailgate_meter_t         *m;
    ngx_tailgate_usage_signal_e   signal;

    *out = in;
    m = ctx->meter;

    if (m == NULL) {
        return NGX_OK;
    }

    for (cl = in; cl; cl = cl->next) {
        if (ngx_buf_in_memory(cl->buf)) {
            m->bytes += cl->buf->last - cl->buf->pos;
        }
    }

    if (!m->read) {
        return NGX_OK;
    }

    if (m->strip) {
        return ngx_tailgate_meter_strip(r, m, in, out);
    }

    for (cl = in; cl; cl = cl->next) {
        b = cl->buf;

        if (ngx_buf_in_memory(b) && b->last > b->pos) {
            (void) ngx_tailgate_usage_scan(&m->scan, b->pos, b->last,
                                           &signal);
        }
    }

    return NGX_OK;
}


ngx_uint_t
ngx_tailgate_meter_events(ngx_http_tailgate_ctx_t *ctx)
{
    return (ctx->meter && ctx->meter->read) ? ctx->meter->scan.events : 0;
}


/* our own buffers that the client has taken go back to be used again */

void
ngx_tailgate_meter_sent(ngx_http_request_t *r, ngx_http_tailgate_ctx_t *ctx,
    ngx_chain_t *out)
{
    ngx_tailgate_meter_t  *m;

    m = ctx->meter;

    if (m && m->strip) {
        ngx_chain_update_chains(r->pool, &m->free, &m->busy, &out,
                                (ngx_buf_tag_t) &ngx_http_tailgate_module);
    }
}


/*
 * A stream without the usage chunk the gateway asked for.  Bytes are kept
 * where they are, moved down only after a cut; a chain of our own links is
 * made only when something was cut or kept back (the buffers stay the
 * upstream's, and so do its links).
 */

static ngx_int_t
ngx_tailgate_meter_strip(ngx_http_request_t *r, ngx_tailgate_meter_t *m,
    ngx_chain_t *in, ngx_chain_t **out)
{
    u_char                       *p, *q, *w, *start, *event, *from;
    ngx_buf_t                    *b, *held;
    ngx_uint_t                    changed;
    ngx_chain_t                  *cl, *head, **ll;
    ngx_tailgate_usage_signal_e   signal;

    head = NULL;
    ll = &head;
    changed = 0;

    for (cl = in; cl; cl = cl->next) {
        b = cl->buf;

        /* what was kept back of the event not decided yet, if anything */

        held = (m->held && m->held->buf->last > m->held->buf->pos)
               ? m->held->buf : NULL;

        if (!ngx_buf_in_memory(b) || b->pos == b->last) {

            /* the answer ends inside an event: it goes as it is */

            if ((b->last_buf || b->last_in_chain) && held) {
                if (ngx_tailgate_meter_link(r, &ll, held) != NGX_OK) {
                    return NGX_ERROR;
                }

                m->held = NULL;
                m->undecided = 0;
                changed = 1;
            }

            if (ngx_tailgate_meter_link(r, &ll, b) != NGX_OK) {
                return NGX_ERROR;
            }

            continue;
        }

        start = b->pos;
        p = b->pos;
        w = b->pos;

        /* where the event not decided yet starts here; NULL: earlier */
        event = (m->undecided && held == NULL) ? w : NULL;

        while (p < b->last) {
            q = ngx_tailgate_usage_scan(&m->scan, p, b->last, &signal);

            if (w != p) {
                ngx_memmove(w, p, q - p);
            }

            w += q - p;
            p = q;

            if (signal == NGX_TAILGATE_USAGE_MORE || !m->undecided) {

                if (signal == NGX_TAILGATE_USAGE_EVENT_END) {
                    m->undecided = 1;
                    event = w;
                }

                continue;
            }

            if (signal == NGX_TAILGATE_USAGE_EVENT_END
                && m->scan.usage_only)
            {
                /* the chunk the client did not ask for: cut out */

                if (event == NULL) {
                    w = start;

                    if (held) {
                        held->pos = held->start;
                        held->last = held->start;
                        held = NULL;
                    }

                } else {
                    w = event;
                }

                changed = 1;

            } else if (held && held->last > held->pos) {

                /* kept: what was kept back goes first */

                if (ngx_tailgate_meter_link(r, &ll, held) != NGX_OK) {
                    return NGX_ERROR;
                }

                m->held = NULL;
                held = NULL;
                changed = 1;
            }

            if (signal == NGX_TAILGATE_USAGE_EVENT_END) {
                m->undecided = 1;
                event = w;

            } else {
                m->undecided = 0;
                event = NULL;
            }
        }

        /*
         * An event that goes on in the next read: its start is kept back,
         * unless the answer ends here or it is too long to be a usage
         * chunk - then it goes as it is.
         */

        if (m->undecided) {
            from = event ? event : start;

            if (!b->last_buf
                && ngx_tailgate_meter_hold(r, m, from, w - from) == NGX_OK)
            {
                w = from;

            } else {
                held = m->held ? m->held->buf : NULL;

                if (held && held->last > held->pos) {
                    if (ngx_tailgate_meter_link(r, &ll, held) != NGX_OK) {
                        return NGX_ERROR;
                    }

                    m->held = NULL;
                    changed = 1;
                }

                m->undecided = 0;
            }
        }

        if (w != b->last) {
            b->last = w;
            changed = 1;
        }

        /*
         * All of it cut or kept back: an empty buffer in memory would stop
         * the writer, but its flush must still go - as a special one (the
         * upstream marks its buffers afresh when it uses them again).
         */

        if (b->pos == b->last) {
            if (!(b->flush || b->last_buf || b->last_in_chain || b->sync)) {
                continue;
            }

            b->memory = 0;
            b->temporary = 0;
            b->mmap = 0;
        }

        if (ngx_tailgate_meter_link(r, &ll, b) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    if (changed) {
        *out = head;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_tailgate_meter_link(ngx_http_request_t *r, ngx_chain_t ***ll,
    ngx_buf_t *b)
{
    ngx_chain_t  *cl;

    cl = ngx_alloc_chain_link(r->pool);
    if (cl == NULL) {
        return NGX_ERROR;
    }

    cl->buf = b;
    cl->next = NULL;

    **ll = cl;
    *ll = &cl->next;

    return NGX_OK;
}


/* NGX_DECLINED: more than NGX_TAILGATE_METER_HOLD would be kept back */

static ngx_int_t
ngx_tailgate_meter_hold(ngx_http_request_t *r, ngx_tailgate_meter_t *m,
    u_char *p, size_t n)
{
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    if (n == 0) {
        return NGX_OK;
    }

    if (m->held == NULL) {
        cl = ngx_chain_get_free_buf(r->pool, &m->free);
        if (cl == NULL) {
            return NGX_DECLINED;
        }

        b = cl->buf;

        if (b->start == NULL) {
            b->start = ngx_palloc(r->pool, NGX_TAILGATE_METER_HOLD);
            if (b->start == NULL) {
                return NGX_DECLINED;
            }

            b->end = b->start + NGX_TAILGATE_METER_HOLD;
            b->temporary = 1;
            b->tag = (ngx_buf_tag_t) &ngx_http_tailgate_module;
        }

        b->pos = b->start;
        b->last = b->start;
        m->held = cl;
    }

    b = m->held->buf;

    if ((size_t) (b->end - b->last) < n) {
        return NGX_DECLINED;
    }

    b->last = ngx_cpymem(b->last, p, n);

    return NGX_OK;
}


static ngx_uint_t
ngx_tailgate_meter_type(ngx_http_request_t *r, const char *type, size_t len)
{
    ngx_str_t  *ct;

    ct = &r->headers_out.content_type;

    if (ct->len < len) {
        return 0;
    }

    /* as providers write it, compared at once; else a byte at a time */

    return ngx_memcmp(ct->data, type, len) == 0
           || ngx_strncasecmp(ct->data, (u_char *) type, len) == 0;
}


ngx_tailgate_tokens_t *
ngx_tailgate_meter_tokens(ngx_http_request_t *r, ngx_http_tailgate_ctx_t *ctx)
{
    ngx_tailgate_meter_t   *m;
    ngx_tailgate_tokens_t  *t;
    ngx_tailgate_usage_t   *u;

    if (ctx->tokens) {
        return ctx->tokens;
    }

    t = ngx_pcalloc(r->pool, sizeof(ngx_tailgate_tokens_t));
    if (t == NULL) {
        return NULL;
    }

    ctx->tokens = t;
    m = ctx->meter;

    /* no answer, or an error of the provider's: nothing was used */

    if (m == NULL || r->headers_out.status < NGX_HTTP_OK
        || r->headers_out.status >= NGX_HTTP_SPECIAL_RESPONSE)
    {
        return t;
    }

    t->known = 1;

    if (ctx->endpoint->id == NGX_TAILGATE_EP_SPEECH) {
        t->characters = ctx->facts.input_start
                        ? ngx_tailgate_json_chars(ctx->facts.input_start,
                                                  ctx->facts.input_end)
                        : ctx->facts.input_chars;   /* scanned in pieces */
        return t;
    }

    u = &m->scan;

    if (m->read && u->found) {
        t->input = u->input;
        t->output = u->output;
        t->cached = ngx_min(u->cached, u->input);
        t->reasoning = ngx_min(u->reasoning, u->output);
        t->audio_ms = u->audio_ms;
        t->total = u->total ? u->total : u->input + u->output;

    } else {
        t->estimated = 1;
        t->input = ngx_tailgate_meter_estimate(ctx->body_len);
        t->output = ngx_tailgate_meter_estimate(m->read ? u->text_bytes
                                                : (uint64_t) m->bytes);
        t->total = t->input + t->output;
    }

    if (m->read && u->model_len) {
        t->model.data = u->model;
        t->model.len = u->model_len;
    }

    return t;
}


static uint64_t
ngx_tailgate_meter_estimate(uint64_t bytes)
{
    return (bytes + NGX_TAILGATE_BYTES_PER_TOKEN - 1)
           / NGX_TAILGATE_BYTES_PER_TOKEN;
}


/*
 * The policy's prices are exact integers in these units, and so is the
 * cost but for audio: per minute, its milliseconds are rounded to the
 * nearest pico-unit, as policyd rounds them.
 */

uint64_t
ngx_tailgate_meter_cost(ngx_http_tailgate_ctx_t *ctx, ngx_tailgate_tokens_t *t)
{
    uint64_t  *price;

    if (!ctx->priced) {
        return 0;
    }

    price = ctx->prices;

    return (t->input - t->cached) * price[NGX_TAILGATE_PRICE_INPUT]
           + t->cached * price[NGX_TAILGATE_PRICE_CACHED]
           + t->output * price[NGX_TAILGATE_PRICE_OUTPUT]
           + t->characters * price[NGX_TAILGATE_PRICE_CHARACTER]
           + (t->audio_ms * price[NGX_TAILGATE_PRICE_MINUTE] * 100 + 3) / 6;
}
