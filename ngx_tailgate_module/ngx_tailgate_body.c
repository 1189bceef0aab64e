
/*
 * Copyright (C) The Tailgate authors
 *
 * The request body: the scanners read it where nginx put it, and the
 * model rewrite builds a new chain around the old bytes - before the
 * model, the provider's model, after it - so that a 1 MB body is never
 * copied just to change a few bytes.
 *
 * A body in one run of memory is scanned as it is.  Otherwise - chunked
 * pieces, a temporary file - it is read in order, piece by piece: memory
 * as it lies, a file a window (NGX_TAILGATE_BODY_WINDOW) at a time, by
 * nginx's thread pool where the location has "aio threads", else by one
 * bounded pread() per turn of the event loop, and scanned as it comes:
 * nothing of its size is allocated, and the model rewrite references the
 * client's buffers and file.  Each byte is read once - unless a decision
 * needs the body as memory (a step's edits, a translation): only then is
 * it read again, into one buffer (ngx_tailgate_body_load()).
 */


#include "ngx_tailgate_common.h"


#define NGX_TAILGATE_BODY_WINDOW  65536


struct ngx_tailgate_body_reader_s {
    ngx_http_request_t          *request;
    ngx_http_tailgate_ctx_t     *ctx;
    ngx_tailgate_body_done_pt    done;
    ngx_tailgate_scan_error_t    error;

    ngx_chain_t                 *cl;        /* the piece being read */
    off_t                        file_pos;  /* in it, when in a file */
    u_char                      *window;
    ngx_event_t                  next;      /* the next window, posted */
    ngx_file_t                   file;      /* its own thread task */

    /* the sink: the multipart scan, the JSON scan, or a copy (a load) */
    ngx_tailgate_multipart_t    *multipart;
    ngx_tailgate_json_feed_t    *json;
    u_char                      *copy;
    u_char                      *copied;

    unsigned                     busy:1;    /* a read is under way */
    unsigned                     turn:1;    /* the loop came round: read */
    unsigned                     threads:1;
};


static ngx_uint_t ngx_tailgate_body_in_place(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx);
static ngx_int_t ngx_tailgate_body_collect(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx);
static ngx_int_t ngx_tailgate_body_scan(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx, ngx_tailgate_scan_error_t *error);
static ngx_int_t ngx_tailgate_body_start(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx, ngx_uint_t load,
    ngx_tailgate_body_done_pt done, ngx_tailgate_scan_error_t *error);
static ngx_int_t ngx_tailgate_body_read(ngx_tailgate_body_reader_t *rd);
static ngx_int_t ngx_tailgate_body_sink(ngx_tailgate_body_reader_t *rd,
    u_char *p, u_char *end);
static ngx_int_t ngx_tailgate_body_end(ngx_tailgate_body_reader_t *rd);
static void ngx_tailgate_body_resume(ngx_http_request_t *r);
static void ngx_tailgate_body_next(ngx_event_t *ev);
static void ngx_tailgate_body_cleanup(void *data);
#if (NGX_THREADS)
static ngx_int_t ngx_tailgate_body_thread(ngx_thread_task_t *task,
    ngx_file_t *file);
static void ngx_tailgate_body_thread_done(ngx_event_t *ev);
#endif
static ngx_int_t ngx_tailgate_body_splice(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx, off_t from, off_t to, ngx_str_t *token);
static ngx_int_t ngx_tailgate_body_piece(ngx_http_request_t *r,
    ngx_chain_t ***ll, ngx_buf_t *b, off_t skip, off_t n, off_t *len,
    ngx_buf_t **last);
static ngx_int_t ngx_tailgate_body_token(ngx_http_request_t *r,
    ngx_chain_t ***ll, ngx_str_t *token, ngx_buf_t **last);


/*
 * Points ctx->body at the whole body when it is one run of memory.  When
 * nginx kept it in one memory buffer this is free.  The common case is
 * two: what arrived with the headers, then the rest in the body buffer,
 * which client_body_in_single_buffer makes large enough for both (nginx
 * 1.22 sizes it so, but does not join them): the rest moves up and the
 * first part goes before it, in place.  NGX_DECLINED: it is not so
 * (chunked pieces, a temporary file); ctx->body is NULL and ctx->body_len
 * the length.
 */

static ngx_int_t
ngx_tailgate_body_collect(ngx_http_request_t *r, ngx_http_tailgate_ctx_t *ctx)
{
    off_t         len;
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

    ctx->body = NULL;
    ctx->body_len = (size_t) len;

    return NGX_DECLINED;
}


/*
 * The body as one run of memory without copying it elsewhere, when nginx
 * has it so: the buffers of the chain are pieces of nginx's body buffer in
 * order (the body filters give one for each read, or for each chunk of a
 * chunked body, with the chunk headers between them), perhaps after
 * pieces that came with the headers.  Those move together over the chunk
 * headers, in the buffer they are in; then the ones that came with the
 * headers go into the room nginx leaves at the end of the body buffer
 * (client_body_in_single_buffer, or what the chunk headers took) and the
 * rest moves up.  The chain becomes one buffer of the whole body; nothing
 * is allocated.  0: not so, the body is read in pieces.
 */

static ngx_uint_t
ngx_tailgate_body_in_place(ngx_http_request_t *r, ngx_http_tailgate_ctx_t *ctx)
{
    u_char       *from, *to, *head_from, *head_to, *last;
    size_t        head_len, rest_len, n;
    ngx_buf_t    *rb, *hb, *b, *whole;
    ngx_chain_t  *cl, *first, *tail;

    rb = r->request_body->buf;
    hb = r->header_in;

    if (rb == NULL || !rb->temporary) {
        return 0;
    }

    /* check first, move after: pieces in order, in the two buffers */

    first = NULL;
    tail = NULL;
    head_len = 0;
    rest_len = 0;
    head_from = NULL;
    from = NULL;
    last = NULL;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;

        if (b->in_file) {
            return 0;
        }

        if (b->last == b->pos) {
            continue;
        }

        if (b->pos >= rb->start && b->last <= rb->end) {
            if (from == NULL) {
                from = b->pos;
                first = cl;
                last = NULL;

            } else if (b->pos < last) {
                return 0;
            }

            rest_len += b->last - b->pos;

        } else if (from == NULL && hb && b->pos >= hb->start
                   && b->last <= hb->end && (last == NULL || b->pos >= last))
        {
            if (head_from == NULL) {
                head_from = b->pos;
            }

            head_len += b->last - b->pos;

        } else {
            return 0;
        }

        last = b->last;
        tail = cl;
    }

    if (from == NULL || (size_t) (rb->end - from) < rest_len + head_len) {
        return 0;
    }

    /* the pieces together, each buffer's over its chunk headers */

    to = from;
    head_to = head_from;

    for (cl = r->request_body->bufs; cl != tail->next; cl = cl->next) {
        b = cl->buf;
        n = b->last - b->pos;

        if (n == 0) {
            continue;
        }

        if (b->pos >= rb->start && b->last <= rb->end) {
            ngx_memmove(to, b->pos, n);
            to += n;

        } else {
            ngx_memmove(head_to, b->pos, n);
            head_to += n;
        }
    }

    if (head_len) {
        ngx_memmove(from + head_len, from, rest_len);
        ngx_memcpy(from, head_from, head_len);
        to += head_len;
    }

    whole = first->buf;
    whole->start = from;
    whole->pos = from;
    whole->last = to;

    /* what ends the chain may be an empty buffer after the last piece */

    for (cl = tail; cl; cl = cl->next) {
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
 * NGX_ERROR for a server error; NGX_AGAIN: the body is being read from its
 * file, and done(r, rc) will say the same when it has been.
 */

ngx_int_t
ngx_tailgate_body_classify(ngx_http_request_t *r, ngx_http_tailgate_ctx_t *ctx,
    ngx_tailgate_body_done_pt done, ngx_tailgate_scan_error_t *error)
{
    error->arg = NULL;

    ngx_memzero(&ctx->facts, sizeof(ngx_tailgate_facts_t));

    if (ngx_tailgate_body_collect(r, ctx) == NGX_OK) {
        return ngx_tailgate_body_scan(r, ctx, error);
    }

    if (ctx->endpoint->body != NGX_TAILGATE_BODY_JSON
        && ctx->endpoint->body != NGX_TAILGATE_BODY_MULTIPART)
    {
        return NGX_OK;
    }

    return ngx_tailgate_body_start(r, ctx, 0, done, error);
}


/*
 * The body as one run of memory, for what reads it so: a step's edits
 * (ngx_tailgate_adjust.c) and a Responses request translated to chat
 * (ngx_tailgate_translate_req.c).  A body scanned in pieces is read again
 * into one buffer of its size, without blocking, as it was scanned - only
 * when a decision needs it: a plain request (its model renamed or not)
 * makes no allocation that grows with its body.  NGX_OK: ctx->body is it;
 * NGX_AGAIN: done(r, rc) says when; NGX_ERROR.
 */

ngx_int_t
ngx_tailgate_body_load(ngx_http_request_t *r, ngx_http_tailgate_ctx_t *ctx,
    ngx_tailgate_body_done_pt done)
{
    ngx_tailgate_scan_error_t  error;

    if (ctx->body) {
        return NGX_OK;
    }

    error.arg = NULL;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "tailgate: the body (%uz bytes) is read into memory",
                   ctx->body_len);

    return ngx_tailgate_body_start(r, ctx, 1, done, &error);
}


/* a body in one run of memory */

static ngx_int_t
ngx_tailgate_body_scan(ngx_http_request_t *r, ngx_http_tailgate_ctx_t *ctx,
    ngx_tailgate_scan_error_t *error)
{
    ngx_int_t  rc;

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
        ctx->facts.model_from = ctx->facts.model_start - ctx->body;
        ctx->facts.model_to = ctx->facts.model_end - ctx->body;
    }

    return rc;
}


/*
 * A body in pieces: the multipart scan and the JSON scan take them as they
 * come (ngx_tailgate_multipart_feed(), ngx_tailgate_json_feed()), and keep
 * none of them.  load: the pieces are copied into one buffer instead
 * (ngx_tailgate_body_load()).
 */

static ngx_int_t
ngx_tailgate_body_start(ngx_http_request_t *r, ngx_http_tailgate_ctx_t *ctx,
    ngx_uint_t load, ngx_tailgate_body_done_pt done,
    ngx_tailgate_scan_error_t *error)
{
    ngx_int_t                   rc;
    ngx_chain_t                *cl;
    ngx_pool_cleanup_t         *cln;
    ngx_tailgate_body_reader_t *rd;
#if (NGX_THREADS)
    ngx_http_core_loc_conf_t   *clcf;
#endif

    rd = ngx_pcalloc(r->pool, sizeof(ngx_tailgate_body_reader_t));
    if (rd == NULL) {
        return NGX_ERROR;
    }

    rd->request = r;
    rd->ctx = ctx;
    rd->done = done;
    rd->cl = r->request_body->bufs;

    if (!load && ctx->endpoint->body == NGX_TAILGATE_BODY_MULTIPART) {
        rd->multipart = ngx_tailgate_multipart_start(r, &ctx->facts,
                                                     &rd->error, &rc);
        if (rd->multipart == NULL) {
            *error = rd->error;
            return rc;
        }

    } else if (!load) {
        rd->json = ngx_tailgate_json_feed_start(r->pool, &ctx->facts,
                                                &rd->error);
        if (rd->json == NULL) {
            return NGX_ERROR;
        }

    } else {
        rd->copy = ngx_pnalloc(r->pool, ctx->body_len);
        if (rd->copy == NULL) {
            return NGX_ERROR;
        }

        rd->copied = rd->copy;
    }

    for (cl = rd->cl; cl; cl = cl->next) {
        if (cl->buf->in_file) {
            break;
        }
    }

    if (cl) {
        rd->window = ngx_pnalloc(r->pool, NGX_TAILGATE_BODY_WINDOW);
        if (rd->window == NULL) {
            return NGX_ERROR;
        }

        cln = ngx_pool_cleanup_add(r->pool, 0);
        if (cln == NULL) {
            return NGX_ERROR;
        }

        cln->handler = ngx_tailgate_body_cleanup;
        cln->data = rd;

        rd->next.handler = ngx_tailgate_body_next;
        rd->next.data = rd;
        rd->next.log = r->connection->log;

#if (NGX_THREADS)
        clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);
        rd->threads = (clcf->aio == NGX_HTTP_AIO_THREADS);
#endif
    }

    ctx->body_reader = rd;

    rc = ngx_tailgate_body_read(rd);

    if (rc == NGX_AGAIN) {
        r->write_event_handler = ngx_tailgate_body_resume;
        return NGX_AGAIN;
    }

    ctx->body_reader = NULL;
    *error = rd->error;

    return rc;
}


/* on through the pieces; NGX_AGAIN while a window is on its way */

static ngx_int_t
ngx_tailgate_body_read(ngx_tailgate_body_reader_t *rd)
{
    off_t                n;
    ssize_t              got;
    ngx_int_t            rc;
    ngx_buf_t           *b;
    ngx_http_request_t  *r;

    r = rd->request;

    while (rd->cl) {
        b = rd->cl->buf;

        if (!b->in_file) {
            rc = ngx_tailgate_body_sink(rd, b->pos, b->last);
            if (rc != NGX_OK) {
                return rc;
            }

            rd->cl = rd->cl->next;
            rd->file_pos = 0;
            continue;
        }

        if (rd->file_pos < b->file_pos) {
            rd->file_pos = b->file_pos;
        }

        if (rd->file_pos >= b->file_last) {
            rd->cl = rd->cl->next;
            rd->file_pos = 0;
            continue;
        }

        n = ngx_min(b->file_last - rd->file_pos, NGX_TAILGATE_BODY_WINDOW);

#if (NGX_THREADS)
        if (rd->threads) {
            if (rd->file.thread_handler == NULL) {
                rd->file = *b->file;
                rd->file.thread_task = NULL;
                rd->file.thread_handler = ngx_tailgate_body_thread;
                rd->file.thread_ctx = rd;
            }

            got = ngx_thread_read(&rd->file, rd->window, (size_t) n,
                                  rd->file_pos, r->pool);

            if (got == NGX_AGAIN) {
                rd->busy = 1;
                return NGX_AGAIN;
            }

        } else
#endif
        {
            /* a bounded read, and the event loop's turn after it */

            if (rd->turn) {
                rd->turn = 0;

            } else if (rd->file_pos != b->file_pos) {
                rd->busy = 1;
                r->main->blocked++;
                ngx_post_event(&rd->next, &ngx_posted_next_events);
                return NGX_AGAIN;
            }

            got = ngx_read_file(b->file, rd->window, (size_t) n,
                                rd->file_pos);
        }

        if (got != n) {
            ngx_log_error(NGX_LOG_CRIT, r->connection->log, ngx_errno,
                          "tailgate: cannot read the request body from "
                          "\"%V\"", &b->file->name);
            return NGX_ERROR;
        }

        rd->file_pos += n;

        rc = ngx_tailgate_body_sink(rd, rd->window, rd->window + n);
        if (rc != NGX_OK) {
            return rc;
        }
    }

    return ngx_tailgate_body_end(rd);
}


static ngx_int_t
ngx_tailgate_body_sink(ngx_tailgate_body_reader_t *rd, u_char *p, u_char *end)
{
    if (p == end) {
        return NGX_OK;
    }

    if (rd->multipart) {
        return ngx_tailgate_multipart_feed(rd->multipart, p, end);
    }

    if (rd->json) {
        return ngx_tailgate_json_feed(rd->json, p, end);
    }

    if ((size_t) (end - p) > rd->ctx->body_len - (rd->copied - rd->copy)) {
        return NGX_ERROR;
    }

    rd->copied = ngx_cpymem(rd->copied, p, end - p);

    return NGX_OK;
}


static ngx_int_t
ngx_tailgate_body_end(ngx_tailgate_body_reader_t *rd)
{
    ngx_http_tailgate_ctx_t  *ctx;

    ctx = rd->ctx;

    if (rd->multipart) {
        return ngx_tailgate_multipart_finish(rd->multipart);
    }

    if (rd->json) {
        return ngx_tailgate_json_feed_finish(rd->json);
    }

    if ((size_t) (rd->copied - rd->copy) != ctx->body_len) {
        return NGX_ERROR;
    }

    /* loaded for a step's edits or a translation: the facts point into it */

    ctx->body = rd->copy;
    ctx->facts.model_start = ctx->body + ctx->facts.model_from;
    ctx->facts.model_end = ctx->body + ctx->facts.model_to;

    return NGX_OK;
}


/* the request's write handler while its body is read */

static void
ngx_tailgate_body_resume(ngx_http_request_t *r)
{
    ngx_int_t                    rc;
    ngx_http_tailgate_ctx_t     *ctx;
    ngx_tailgate_body_reader_t  *rd;

    ctx = ngx_http_get_module_ctx(r, ngx_http_tailgate_module);

    if (ctx == NULL || ctx->body_reader == NULL) {
        return;
    }

    rd = ctx->body_reader;

    if (rd->busy) {
        /* a write event of the connection: the window is not here yet */
        return;
    }

    rc = ngx_tailgate_body_read(rd);

    if (rc == NGX_AGAIN) {
        return;
    }

    /* read: a later write event is none of the reader's business */

    ctx->body_reader = NULL;
    r->write_event_handler = ngx_http_request_empty_handler;

    rd->done(r, rc, &rd->error);
}


static void
ngx_tailgate_body_next(ngx_event_t *ev)
{
    ngx_connection_t            *c;
    ngx_http_request_t          *r;
    ngx_tailgate_body_reader_t  *rd;

    rd = ev->data;
    r = rd->request;
    c = r->connection;

    ngx_http_set_log_request(c->log, r);

    rd->busy = 0;
    rd->turn = 1;
    r->main->blocked--;

    /* a request that was terminated meanwhile is finalized there */

    r->write_event_handler(r);
    ngx_http_run_posted_requests(c);
}


static void
ngx_tailgate_body_cleanup(void *data)
{
    ngx_tailgate_body_reader_t  *rd = data;

    if (rd->next.posted) {
        ngx_delete_posted_event(&rd->next);
    }
}


#if (NGX_THREADS)

/* nginx's copy filter does the same for a response's file */

static ngx_int_t
ngx_tailgate_body_thread(ngx_thread_task_t *task, ngx_file_t *file)
{
    ngx_str_t                    name;
    ngx_thread_pool_t           *tp;
    ngx_http_request_t          *r;
    ngx_http_core_loc_conf_t    *clcf;
    ngx_tailgate_body_reader_t  *rd;

    rd = file->thread_ctx;
    r = rd->request;

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);
    tp = clcf->thread_pool;

    if (tp == NULL) {
        if (ngx_http_complex_value(r, clcf->thread_pool_value, &name)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        tp = ngx_thread_pool_get((ngx_cycle_t *) ngx_cycle, &name);

        if (tp == NULL) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "tailgate: thread pool \"%V\" not found", &name);
            return NGX_ERROR;
        }
    }

    task->event.data = rd;
    task->event.handler = ngx_tailgate_body_thread_done;

    if (ngx_thread_task_post(tp, task) != NGX_OK) {
        return NGX_ERROR;
    }

    r->main->blocked++;
    r->aio = 1;

    return NGX_OK;
}


static void
ngx_tailgate_body_thread_done(ngx_event_t *ev)
{
    ngx_connection_t            *c;
    ngx_http_request_t          *r;
    ngx_tailgate_body_reader_t  *rd;

    rd = ev->data;
    r = rd->request;
    c = r->connection;

    ngx_http_set_log_request(c->log, r);

    r->main->blocked--;
    r->aio = 0;
    rd->busy = 0;

    r->write_event_handler(r);
    ngx_http_run_posted_requests(c);
}

#endif


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

    if (ctx->body == NULL) {
        return ngx_tailgate_body_splice(r, ctx, ctx->facts.model_from,
                                        ctx->facts.model_to, &token);
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


/*
 * The client's chain with the bytes from "from" to "to" (body offsets)
 * replaced by token: the pieces around them reference the client's
 * buffers, in memory or in the temporary file (proxy_pass sends file
 * buffers itself), and only the token is new.
 */

static ngx_int_t
ngx_tailgate_body_splice(ngx_http_request_t *r, ngx_http_tailgate_ctx_t *ctx,
    off_t from, off_t to, ngx_str_t *token)
{
    off_t         at, size, len;
    ngx_buf_t    *b, *last;
    ngx_uint_t    put;
    ngx_chain_t  *cl, **ll, *bufs;

    bufs = r->request_body->bufs;

    if (!ctx->body_replaced) {
        ctx->client_bufs = bufs;
        ctx->client_length = r->headers_in.content_length_n;
        ctx->body_replaced = 1;
    }

    ll = &r->request_body->bufs;
    at = 0;
    len = 0;
    put = 0;
    last = NULL;

    for (cl = bufs; cl; cl = cl->next) {
        b = cl->buf;
        size = b->in_file ? b->file_last - b->file_pos : b->last - b->pos;

        /* what of the buffer is before "from", the token, what is after */

        if (ngx_tailgate_body_piece(r, &ll, b, 0,
                                    ngx_min(at + size, from) - at, &len,
                                    &last)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        if (!put && from <= at + size) {
            if (ngx_tailgate_body_token(r, &ll, token, &last) != NGX_OK) {
                return NGX_ERROR;
            }

            len += token->len;
            put = 1;
        }

        if (to < at + size
            && ngx_tailgate_body_piece(r, &ll, b, ngx_max(at, to) - at,
                                       at + size - ngx_max(at, to), &len,
                                       &last)
               != NGX_OK)
        {
            return NGX_ERROR;
        }

        at += size;
    }

    *ll = NULL;

    if (last) {
        last->last_buf = 1;
    }

    r->headers_in.content_length_n = len;

    return NGX_OK;
}


/* n bytes of the client's buffer b, from "skip" bytes into it */

static ngx_int_t
ngx_tailgate_body_piece(ngx_http_request_t *r, ngx_chain_t ***ll,
    ngx_buf_t *b, off_t skip, off_t n, off_t *len, ngx_buf_t **last)
{
    ngx_buf_t    *nb;
    ngx_chain_t  *cl;

    if (n <= 0) {
        return NGX_OK;
    }

    nb = ngx_calloc_buf(r->pool);
    cl = ngx_alloc_chain_link(r->pool);
    if (nb == NULL || cl == NULL) {
        return NGX_ERROR;
    }

    if (b->in_file) {
        nb->in_file = 1;
        nb->file = b->file;
        nb->file_pos = b->file_pos + skip;
        nb->file_last = nb->file_pos + n;

    } else {
        /* start is pos: nginx rewinds request bufs to b->start */
        nb->start = b->pos + skip;
        nb->pos = nb->start;
        nb->last = nb->pos + n;
        nb->end = nb->last;
        nb->temporary = 1;
    }

    cl->buf = nb;
    **ll = cl;
    *ll = &cl->next;
    *last = nb;
    *len += n;

    return NGX_OK;
}


static ngx_int_t
ngx_tailgate_body_token(ngx_http_request_t *r, ngx_chain_t ***ll,
    ngx_str_t *token, ngx_buf_t **last)
{
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    b = ngx_calloc_buf(r->pool);
    cl = ngx_alloc_chain_link(r->pool);
    if (b == NULL || cl == NULL) {
        return NGX_ERROR;
    }

    b->start = token->data;
    b->pos = token->data;
    b->last = token->data + token->len;
    b->end = b->last;
    b->temporary = 1;

    cl->buf = b;
    **ll = cl;
    *ll = &cl->next;
    *last = b;

    return NGX_OK;
}
