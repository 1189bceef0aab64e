
/*
 * Copyright (C) The Tailgate authors
 *
 * Outcomes and usage back to policyd: one REPORT for every attempt that got
 * a decision.  A request that held a lease, or did not end well, is
 * reported at once: the lease must end now, and policyd's view of a
 * provider's health must not lag.  The REPORTs of plain successes wait in
 * a batch and leave together every NGX_TAILGATE_REPORT_EVERY (or when the
 * batch is full): on a busy worker that saves a wakeup of policyd per event
 * loop iteration, and each request still gets its own record.
 */


#include "ngx_tailgate_common.h"
#include "ngx_tailgate_ctx.h"
#include "ngx_tailgate_meter.h"
#include "ngx_tailgate_siphash.h"

#include <openssl/rand.h>


#define NGX_TAILGATE_REPORT_EVERY    250     /* ms */
#define NGX_TAILGATE_REPORT_BATCH    32768   /* bytes of REPORTs waiting */
#define NGX_TAILGATE_REPORT_FRAME    4096


static void ngx_tailgate_report_now(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx, ngx_tailgate_outcome_e outcome,
    ngx_uint_t status, ngx_msec_t upstream_ms, ngx_tailgate_tokens_t *t);
static void ngx_tailgate_report_facts(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx, ngx_tailgate_frame_t *f);
static ngx_http_variable_value_t *ngx_tailgate_request_id(
    ngx_http_request_t *r, ngx_int_t index);
static ngx_msec_t ngx_tailgate_report_total_ms(ngx_http_request_t *r);
static void ngx_tailgate_report_batch(ngx_tailgate_frame_t *f,
    ngx_log_t *log);
static void ngx_tailgate_report_flush(ngx_event_t *ev);
static ngx_msec_t ngx_tailgate_report_cooldown(ngx_http_request_t *r);
static ngx_int_t ngx_tailgate_duration_ms(ngx_str_t *s, ngx_msec_t *ms);


static u_char       ngx_tailgate_batch[NGX_TAILGATE_REPORT_BATCH];
static size_t       ngx_tailgate_batch_len;
static ngx_event_t  ngx_tailgate_report_timer;


void
ngx_tailgate_report_init_worker(ngx_cycle_t *cycle)
{
    ngx_tailgate_report_timer.handler = ngx_tailgate_report_flush;
    ngx_tailgate_report_timer.log = cycle->log;
    ngx_tailgate_report_timer.data = cycle;

    /* a worker that is shutting down sends its batch as it exits */
    ngx_tailgate_report_timer.cancelable = 1;
}


/* before the connections to policyd give their last frames and close */

void
ngx_tailgate_report_exit_worker(void)
{
    ngx_tailgate_report_flush(&ngx_tailgate_report_timer);
}


ngx_int_t
ngx_http_tailgate_log_handler(ngx_http_request_t *r)
{
    ngx_http_tailgate_ctx_t  *ctx;

    ctx = ngx_http_tailgate_get_ctx(r);

    if (ctx == NULL) {
        return NGX_OK;
    }

    return ngx_tailgate_report(r, ctx);
}


ngx_int_t
ngx_tailgate_report(ngx_http_request_t *r, ngx_http_tailgate_ctx_t *ctx)
{
    ngx_uint_t              status;
    ngx_msec_t              upstream_ms;
    ngx_tailgate_outcome_e  outcome;

    if (ctx->reported || (ctx->provider.len == 0 && ctx->lease.id == 0)) {
        return NGX_OK;
    }

    ctx->reported = 1;

    outcome = ngx_tailgate_outcome(r, ctx, &upstream_ms, &status);
    status = r->err_status ? r->err_status : r->headers_out.status;

    ngx_tailgate_report_now(r, ctx, outcome, status, upstream_ms,
                            ngx_tailgate_meter_tokens(r, ctx));

    return NGX_OK;
}


/*
 * What became of the request's current attempt, from the last upstream
 * state it left (docs/protocol.md lists the outcomes).  *status is what
 * the provider answered, or nginx's 502/504 when it did not.
 */

ngx_tailgate_outcome_e
ngx_tailgate_outcome(ngx_http_request_t *r, ngx_http_tailgate_ctx_t *ctx,
    ngx_msec_t *upstream_ms, ngx_uint_t *status)
{
    ngx_uint_t                  n;
    ngx_http_upstream_state_t  *state;

    *upstream_ms = 0;
    *status = 0;

    if (ctx->client_gone
        || r->headers_out.status == NGX_HTTP_CLIENT_CLOSED_REQUEST
        || r->connection->error)
    {
        return NGX_TAILGATE_OUTCOME_CLIENT_ABORT;
    }

    /* earlier attempts of a fallback left their states before ours */

    if (r->upstream_states == NULL || r->upstream_states->nelts <= ctx->states)
    {
        return NGX_TAILGATE_OUTCOME_NOT_SENT;
    }

    n = r->upstream_states->nelts;
    state = r->upstream_states->elts;
    state = &state[n - 1];

    if (state->response_time != (ngx_msec_t) -1) {
        *upstream_ms = state->response_time;
    }

    *status = state->status;

    /*
     * No answer: "timeout" when connected and the provider did not answer
     * in time, "connect_error" when it could not be reached at all (a
     * connect timeout too: a blackholed host is unreachable, not slow).
     */

    if (state->header_time == (ngx_msec_t) -1) {
        return (state->status == NGX_HTTP_GATEWAY_TIME_OUT
                && state->connect_time != (ngx_msec_t) -1)
               ? NGX_TAILGATE_OUTCOME_TIMEOUT
               : NGX_TAILGATE_OUTCOME_CONNECT_ERROR;
    }

    if (state->status < NGX_HTTP_BAD_REQUEST) {

        /* the provider stopped after the response had started */
        if (ctx->stream_broken || ctx->translate_failed
            || (!ctx->response_complete && !r->header_only))
        {
            return NGX_TAILGATE_OUTCOME_STREAM_BROKEN;
        }

        return NGX_TAILGATE_OUTCOME_OK;
    }

    if (state->status == NGX_HTTP_TOO_MANY_REQUESTS) {
        return NGX_TAILGATE_OUTCOME_RATE_LIMITED;
    }

    return (state->status < NGX_HTTP_INTERNAL_SERVER_ERROR)
           ? NGX_TAILGATE_OUTCOME_CLIENT_ERROR
           : NGX_TAILGATE_OUTCOME_SERVER_ERROR;
}


/* a decision the module refused to use: its lease ends now */

void
ngx_tailgate_report_unused(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx, ngx_tailgate_reply_t *reply)
{
    ngx_tailgate_frame_t  f;
    u_char                buf[NGX_TAILGATE_REPORT_FRAME];

    ngx_tailgate_frame_init(&f, buf, sizeof(buf), TG_MSG_REPORT);

    if (reply->lease) {
        ngx_tailgate_frame_u32(&f, TG_F_LEASE, reply->lease);
    }

    ngx_tailgate_frame_str(&f, TG_F_PROVIDER, &reply->provider);
    ngx_tailgate_frame_str(&f, TG_F_ROUTE, &reply->route);
    ngx_tailgate_frame_str(&f, TG_F_OUTCOME,
        &ngx_tailgate_outcomes[NGX_TAILGATE_OUTCOME_NOT_SENT]
                      .name);
    ngx_tailgate_frame_str(&f, TG_F_PROVIDER_MODEL, &reply->provider_model);
    ngx_tailgate_report_facts(r, ctx, &f);
    ngx_tailgate_frame_u32(&f, TG_F_ATTEMPT, (uint32_t) ctx->attempt);
    ngx_tailgate_frame_u32(&f, TG_F_TOTAL_MS,
                           (uint32_t) ngx_tailgate_report_total_ms(r));

    ngx_tailgate_notify_on(ctx->call ? ctx->call->peer : NULL, &f,
                           r->connection->log);
}


/* an attempt that failed and is followed by another: no usage, now */

void
ngx_tailgate_report_attempt(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx, ngx_tailgate_outcome_e outcome,
    ngx_uint_t status, ngx_msec_t upstream_ms)
{
    ngx_tailgate_report_now(r, ctx, outcome, status, upstream_ms, NULL);

    ctx->reported = 1;
}


/*
 * One REPORT for this attempt: at once, on the connection its lease came
 * on, or in the batch of plain successes.
 */

static void
ngx_tailgate_report_now(ngx_http_request_t *r, ngx_http_tailgate_ctx_t *ctx,
    ngx_tailgate_outcome_e outcome, ngx_uint_t status, ngx_msec_t upstream_ms,
    ngx_tailgate_tokens_t *t)
{
    ngx_uint_t                  n;
    ngx_tailgate_frame_t        f;
    ngx_http_upstream_state_t  *state;
    u_char                      buf[NGX_TAILGATE_REPORT_FRAME];

    ngx_tailgate_frame_init(&f, buf, sizeof(buf), TG_MSG_REPORT);

    if (ctx->lease.id) {
        ngx_tailgate_frame_u32(&f, TG_F_LEASE, ctx->lease.id);
    }

    ngx_tailgate_frame_str(&f, TG_F_PROVIDER, &ctx->provider);
    ngx_tailgate_frame_str(&f, TG_F_ROUTE, &ctx->route);

    /* the wire says it in words */
    ngx_tailgate_frame_str(&f, TG_F_OUTCOME,
                           &ngx_tailgate_outcomes[outcome].name);

    if (status) {
        ngx_tailgate_frame_u32(&f, TG_F_HTTP_STATUS, (uint32_t) status);
    }

    ngx_tailgate_frame_u32(&f, TG_F_UPSTREAM_MS,
                           (uint32_t) ngx_min(upstream_ms, 0xffffffff));
    ngx_tailgate_frame_u32(&f, TG_F_TOTAL_MS,
                           (uint32_t) ngx_tailgate_report_total_ms(r));

    ngx_tailgate_frame_str(&f, TG_F_PROVIDER_MODEL, &ctx->provider_model);
    ngx_tailgate_report_facts(r, ctx, &f);
    ngx_tailgate_frame_u32(&f, TG_F_ATTEMPT, (uint32_t) ctx->attempt);

    /* a provider that says when to come back: policyd leaves it till then */

    if (outcome == NGX_TAILGATE_OUTCOME_RATE_LIMITED) {
        ngx_tailgate_frame_u32(&f, TG_F_COOLDOWN_MS,
                               (uint32_t) ngx_tailgate_report_cooldown(r));
    }

    /* the first byte of this attempt's answer */

    n = r->upstream_states ? r->upstream_states->nelts : 0;

    if (n > ctx->states) {
        state = r->upstream_states->elts;
        state = &state[n - 1];

        if (state->header_time != (ngx_msec_t) -1) {
            ngx_tailgate_frame_u32(&f, TG_F_TTFB_MS,
                                   (uint32_t) state->header_time);
        }
    }

    if (t && t->known) {
        ngx_tailgate_frame_u32(&f, TG_F_PROMPT_TOKENS,
                               (uint32_t) ngx_min(t->input, 0xffffffff));
        ngx_tailgate_frame_u32(&f, TG_F_COMPLETION_TOKENS,
                               (uint32_t) ngx_min(t->output, 0xffffffff));
        ngx_tailgate_frame_u32(&f, TG_F_TOTAL_TOKENS,
                               (uint32_t) ngx_min(t->total, 0xffffffff));

        if (t->cached) {
            ngx_tailgate_frame_u32(&f, TG_F_CACHED_TOKENS,
                                   (uint32_t) ngx_min(t->cached, 0xffffffff));
        }

        if (t->reasoning) {
            ngx_tailgate_frame_u32(&f, TG_F_REASONING_TOKENS,
                                   (uint32_t) ngx_min(t->reasoning,
                                                      0xffffffff));
        }

        if (t->audio_ms) {
            ngx_tailgate_frame_u32(&f, TG_F_AUDIO_MS,
                                   (uint32_t) ngx_min(t->audio_ms,
                                                      0xffffffff));
        }

        if (t->characters) {
            ngx_tailgate_frame_u32(&f, TG_F_CHARACTERS,
                                   (uint32_t) ngx_min(t->characters,
                                                      0xffffffff));
        }

        if (t->estimated) {
            ngx_tailgate_frame_u8(&f, TG_F_ESTIMATED, 1);
        }

        if (t->model.len) {
            ngx_tailgate_frame_str(&f, TG_F_RESPONSE_MODEL, &t->model);
        }
    }

    if (ctx->lease.id == 0 && outcome == NGX_TAILGATE_OUTCOME_OK) {
        ngx_tailgate_report_batch(&f, r->connection->log);
        return;
    }

    /*
     * A lease, or a failure: now.  Successes first, so that policyd sees
     * them in order, not as failures in a row.
     */

    ngx_tailgate_report_flush(&ngx_tailgate_report_timer);

    ngx_tailgate_notify_on(ctx->lease.peer, &f, r->connection->log);

    ngx_tailgate_lease_end(&ctx->lease);
}


/*
 * $request_id, as nginx would make it - 32 hex digits of 128 unpredictable
 * bits - when nothing has asked for it yet: SipHash-128 of a counter under
 * a random key of this worker.  nginx's own takes RAND_bytes() for each
 * request, which in OpenSSL 3 costs more than all of the module's work on
 * a small request; this costs a hash of 16 bytes.  Whatever reads
 * $request_id later (the access log) reads the same value.
 */

static ngx_http_variable_value_t *
ngx_tailgate_request_id(ngx_http_request_t *r, ngx_int_t index)
{
    u_char                      *id;
    uint64_t                     seq[2];
    ngx_http_variable_value_t   *v;
    u_char                       hash[NGX_TAILGATE_SIPHASH_LEN];

    static uint64_t  counter;
    static u_char    key[NGX_TAILGATE_SIPHASH_KEY_LEN];
    static ngx_pid_t keyed_in;

    v = &r->variables[index];

    if (v->valid || v->not_found) {
        return v;
    }

    if (keyed_in != ngx_pid) {
        /* a key for each worker, made in it: a fork shares no key */
        if (RAND_bytes(key, sizeof(key)) != 1) {
            return ngx_http_get_indexed_variable(r, index);
        }

        keyed_in = ngx_pid;
        counter = 0;
    }

    id = ngx_pnalloc(r->pool, 2 * NGX_TAILGATE_SIPHASH_LEN);
    if (id == NULL) {
        return NULL;
    }

    seq[0] = ++counter;
    seq[1] = (uint64_t) ngx_pid;

    ngx_tailgate_siphash128(key, (u_char *) seq, sizeof(seq), hash);
    ngx_hex_dump(id, hash, sizeof(hash));

    v->data = id;
    v->len = 2 * NGX_TAILGATE_SIPHASH_LEN;
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;

    return v;
}


/* whose request it is: the same in every REPORT of it */

static void
ngx_tailgate_report_facts(ngx_http_request_t *r, ngx_http_tailgate_ctx_t *ctx,
    ngx_tailgate_frame_t *f)
{
    ngx_http_variable_value_t      *id;
    ngx_http_tailgate_main_conf_t  *tmcf;

    tmcf = ngx_http_get_module_main_conf(r, ngx_http_tailgate_module);

    id = (tmcf->request_id_var != NGX_ERROR)
         ? ngx_tailgate_request_id(r, tmcf->request_id_var) : NULL;

    if (id && !id->not_found && id->len) {
        ngx_tailgate_frame_str(f, TG_F_REQUEST_ID,
                               &(ngx_str_t) { id->len, id->data });
    }

    if (ctx->identity) {
        ngx_tailgate_frame_str(f, TG_F_CLIENT, &ctx->identity->client);

        if (ctx->identity->tenant.len) {
            ngx_tailgate_frame_str(f, TG_F_TENANT, &ctx->identity->tenant);
        }
    }

    if (ctx->endpoint) {
        ngx_tailgate_frame_str(f, TG_F_ENDPOINT, &ctx->endpoint->name);
    }

    ngx_tailgate_frame_u8(f, TG_F_STREAM, ctx->facts.stream);
}


/* since the request started, never less than 0 */

static ngx_msec_t
ngx_tailgate_report_total_ms(ngx_http_request_t *r)
{
    ngx_time_t      *tp;
    ngx_msec_int_t   ms;

    tp = ngx_timeofday();
    ms = (ngx_msec_int_t) ((tp->sec - r->start_sec) * 1000
                           + (tp->msec - r->start_msec));

    return (ngx_msec_t) ngx_max(ms, 0);
}


static void
ngx_tailgate_report_batch(ngx_tailgate_frame_t *f, ngx_log_t *log)
{
    size_t  len;

    if (ngx_tailgate_frame_finish(f) != NGX_OK) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "tailgate: a report does not fit in a frame, dropped");
        return;
    }

    len = f->pos - f->start;

    if (ngx_tailgate_batch_len + len > sizeof(ngx_tailgate_batch)) {
        ngx_tailgate_report_flush(&ngx_tailgate_report_timer);
    }

    ngx_tailgate_batch_len = ngx_cpymem(ngx_tailgate_batch
                                        + ngx_tailgate_batch_len,
                                        f->start, len)
                             - ngx_tailgate_batch;

    if (!ngx_tailgate_report_timer.timer_set) {
        ngx_add_timer(&ngx_tailgate_report_timer, NGX_TAILGATE_REPORT_EVERY);
    }
}


static void
ngx_tailgate_report_flush(ngx_event_t *ev)
{
    if (ngx_tailgate_batch_len == 0) {
        return;
    }

    ngx_tailgate_notify_frames(ngx_tailgate_batch, ngx_tailgate_batch_len,
                               ev->log);
    ngx_tailgate_batch_len = 0;
}


/*
 * How long a provider that answered 429 asks to be left alone: its
 * Retry-After (seconds or an HTTP date), else the later of its
 * x-ratelimit-reset-requests and -tokens ("1s", "6m0s", "20ms"); 0 when it
 * says nothing.  At most a day: beyond, a provider's word is not trusted.
 */

static ngx_msec_t
ngx_tailgate_report_cooldown(ngx_http_request_t *r)
{
    time_t            t;
    ngx_int_t         n;
    ngx_msec_t        ms, best;
    ngx_uint_t        i;
    ngx_table_elt_t  *h[3];

    static ngx_str_t  names[] = {
        ngx_string("retry-after"),
        ngx_string("x-ratelimit-reset-requests"),
        ngx_string("x-ratelimit-reset-tokens")
    };

    if (r->upstream == NULL) {
        return 0;
    }

    ngx_tailgate_find_headers(&r->upstream->headers_in.headers, names, h, 3);

    best = 0;

    if (h[0] && h[0]->value.len) {
        n = ngx_atoi(h[0]->value.data, h[0]->value.len);

        if (n != NGX_ERROR && n <= 86400) {
            return (ngx_msec_t) n * 1000;
        }

        t = ngx_parse_http_time(h[0]->value.data, h[0]->value.len);

        if (t != NGX_ERROR) {
            return (t > ngx_time()) ? (ngx_msec_t) ngx_min(t - ngx_time(),
                                                           86400) * 1000
                                    : 0;
        }
    }

    for (i = 1; i < 3; i++) {
        if (h[i] && ngx_tailgate_duration_ms(&h[i]->value, &ms) == NGX_OK) {
            best = ngx_max(best, ms);
        }
    }

    return ngx_min(best, 86400000);
}


/* "1h2m3.5s", "20ms", "6m0s", "2" (seconds) */

static ngx_int_t
ngx_tailgate_duration_ms(ngx_str_t *s, ngx_msec_t *ms)
{
    u_char      *p, *end;
    uint64_t     total, whole, frac, scale;

    p = s->data;
    end = p + s->len;
    total = 0;

    if (p == end) {
        return NGX_ERROR;
    }

    while (p < end) {
        whole = 0;
        frac = 0;
        scale = 1;

        if (*p < '0' || *p > '9') {
            return NGX_ERROR;
        }

        while (p < end && *p >= '0' && *p <= '9') {
            whole = whole * 10 + (*p++ - '0');

            if (whole > 1000000000) {
                return NGX_ERROR;
            }
        }

        if (p < end && *p == '.') {
            p++;

            while (p < end && *p >= '0' && *p <= '9') {
                if (scale < 1000) {
                    frac = frac * 10 + (*p - '0');
                    scale *= 10;
                }

                p++;
            }
        }

        if (end - p >= 2 && p[0] == 'm' && p[1] == 's') {
            total += whole;
            p += 2;

        } else if (p < end && *p == 'h') {
            total += whole * 3600000 + frac * 3600000 / scale;
            p++;

        } else if (p < end && *p == 'm') {
            total += whole * 60000 + frac * 60000 / scale;
            p++;

        } else if (p == end || *p == 's') {
            total += whole * 1000 + frac * 1000 / scale;
            p += (p < end);

        } else {
            return NGX_ERROR;
        }
    }

    *ms = (ngx_msec_t) total;

    return NGX_OK;
}
