
/*
 * Copyright (C) The Tailgate authors
 *
 * Outcomes back to policyd, from the log phase.  A request that held a
 * lease, or did not end well, is reported at once: the lease must end now,
 * and policyd's view of a provider's health must not lag.  Plain successes
 * are only counted, per provider and route, and sent as one REPORT with a
 * count every NGX_TAILGATE_REPORT_EVERY: on a busy worker that saves a
 * frame per request and a wakeup of policyd per event loop iteration.
 */


#include "ngx_tailgate_common.h"
#include "ngx_tailgate_ctx.h"


#define NGX_TAILGATE_REPORT_EVERY    250     /* ms */
#define NGX_TAILGATE_TALLIES         32
#define NGX_TAILGATE_TALLY_NAME      64


typedef struct {
    ngx_uint_t                   count;
    uint64_t                     upstream_ms;
    uint64_t                     total_ms;
    size_t                       provider_len;
    size_t                       route_len;
    u_char                       provider[NGX_TAILGATE_TALLY_NAME];
    u_char                       route[NGX_TAILGATE_TALLY_NAME * 4];
} ngx_tailgate_tally_t;


static void ngx_tailgate_report_send(void *peer, ngx_str_t *provider,
    ngx_str_t *route, uint32_t lease, ngx_tailgate_outcome_e outcome,
    ngx_uint_t status, ngx_uint_t count, uint64_t upstream_ms,
    uint64_t total_ms, ngx_log_t *log);
static void ngx_tailgate_report_now(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx, ngx_tailgate_outcome_e outcome,
    ngx_uint_t status, ngx_msec_t upstream_ms, ngx_msec_t total_ms);
static ngx_msec_t ngx_tailgate_report_total_ms(ngx_http_request_t *r);
static void *ngx_tailgate_report_peer(ngx_http_tailgate_ctx_t *ctx);
static ngx_int_t ngx_tailgate_report_count(ngx_http_tailgate_ctx_t *ctx,
    uint64_t upstream_ms, uint64_t total_ms);
static void ngx_tailgate_report_flush(ngx_event_t *ev);


static ngx_tailgate_tally_t  ngx_tailgate_tallies[NGX_TAILGATE_TALLIES];
static ngx_uint_t            ngx_tailgate_ntallies;
static ngx_event_t           ngx_tailgate_report_timer;


void
ngx_tailgate_report_init_worker(ngx_cycle_t *cycle)
{
    ngx_tailgate_report_timer.handler = ngx_tailgate_report_flush;
    ngx_tailgate_report_timer.log = cycle->log;
    ngx_tailgate_report_timer.data = cycle;

    /* a worker that is shutting down sends its counts as it exits */
    ngx_tailgate_report_timer.cancelable = 1;
}


/* before the connections to policyd give their last frames and close */

void
ngx_tailgate_report_exit_worker(void)
{
    if (ngx_tailgate_ntallies) {
        ngx_tailgate_report_flush(&ngx_tailgate_report_timer);
    }
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
    ngx_msec_t              upstream_ms, total_ms;
    ngx_tailgate_outcome_e  outcome;

    if (ctx->reported || (ctx->provider.len == 0 && ctx->lease.id == 0)) {
        return NGX_OK;
    }

    ctx->reported = 1;

    outcome = ngx_tailgate_outcome(r, ctx, &upstream_ms, &status);
    status = r->err_status ? r->err_status : r->headers_out.status;

    total_ms = ngx_tailgate_report_total_ms(r);

    if (ctx->lease.id == 0
        && outcome == NGX_TAILGATE_OUTCOME_OK
        && ngx_tailgate_report_count(ctx, upstream_ms, total_ms) == NGX_OK)
    {
        return NGX_OK;
    }

    ngx_tailgate_report_now(r, ctx, outcome, status, upstream_ms, total_ms);

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
        if (ctx->stream_broken
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
    ngx_tailgate_report_send(ngx_tailgate_report_peer(ctx), &reply->provider,
                             &reply->route, reply->lease,
                             NGX_TAILGATE_OUTCOME_NOT_SENT, 0, 1, 0, 0,
                             r->connection->log);
}


/* an attempt that failed and is followed by another: reported now */

void
ngx_tailgate_report_attempt(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx, ngx_tailgate_outcome_e outcome,
    ngx_uint_t status, ngx_msec_t upstream_ms)
{
    ngx_tailgate_report_now(r, ctx, outcome, status, upstream_ms,
                            ngx_tailgate_report_total_ms(r));

    ctx->reported = 1;
}


/* one REPORT for this attempt, on the connection its lease came on */

static void
ngx_tailgate_report_now(ngx_http_request_t *r, ngx_http_tailgate_ctx_t *ctx,
    ngx_tailgate_outcome_e outcome, ngx_uint_t status, ngx_msec_t upstream_ms,
    ngx_msec_t total_ms)
{
    /*
     * A failure after plain successes: those are counted first, so that
     * policyd sees them in order, not as failures in a row.
     */

    if (ngx_tailgate_ntallies && outcome != NGX_TAILGATE_OUTCOME_OK) {
        ngx_tailgate_report_flush(&ngx_tailgate_report_timer);
    }

    ngx_tailgate_report_send(ctx->lease.peer, &ctx->provider, &ctx->route,
                             ctx->lease.id, outcome, status, 1, upstream_ms,
                             total_ms, r->connection->log);

    ngx_tailgate_lease_end(&ctx->lease);
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
ngx_tailgate_report_send(void *peer, ngx_str_t *provider, ngx_str_t *route,
    uint32_t lease, ngx_tailgate_outcome_e outcome, ngx_uint_t status,
    ngx_uint_t count, uint64_t upstream_ms, uint64_t total_ms, ngx_log_t *log)
{
    ngx_tailgate_frame_t  f;
    u_char                buf[1024];

    ngx_tailgate_frame_init(&f, buf, sizeof(buf), TG_MSG_REPORT);

    if (lease) {
        ngx_tailgate_frame_u32(&f, TG_F_LEASE, lease);
    }

    ngx_tailgate_frame_str(&f, TG_F_PROVIDER, provider);
    ngx_tailgate_frame_str(&f, TG_F_ROUTE, route);

    /* the wire says it in words */
    ngx_tailgate_frame_str(&f, TG_F_OUTCOME,
                           &ngx_tailgate_outcomes[outcome].name);

    if (status) {
        ngx_tailgate_frame_u32(&f, TG_F_HTTP_STATUS, (uint32_t) status);
    }

    if (count != 1) {
        ngx_tailgate_frame_u32(&f, TG_F_COUNT, (uint32_t) count);
    }

    ngx_tailgate_frame_u32(&f, TG_F_UPSTREAM_MS,
                           (uint32_t) ngx_min(upstream_ms, 0xffffffff));
    ngx_tailgate_frame_u32(&f, TG_F_TOTAL_MS,
                           (uint32_t) ngx_min(total_ms, 0xffffffff));

    ngx_tailgate_notify_on(lease ? peer : NULL, &f, log);
}


/* the connection the decision, and so its lease, came on */

static void *
ngx_tailgate_report_peer(ngx_http_tailgate_ctx_t *ctx)
{
    return ctx->call ? ctx->call->peer : NULL;
}


/* NGX_DECLINED: no room for this provider and route, send it alone */

static ngx_int_t
ngx_tailgate_report_count(ngx_http_tailgate_ctx_t *ctx, uint64_t upstream_ms,
    uint64_t total_ms)
{
    ngx_uint_t             i;
    ngx_tailgate_tally_t  *t;

    for (i = 0; i < ngx_tailgate_ntallies; i++) {
        t = &ngx_tailgate_tallies[i];

        if (t->provider_len == ctx->provider.len
            && t->route_len == ctx->route.len
            && ngx_memcmp(t->provider, ctx->provider.data, t->provider_len)
               == 0
            && ngx_memcmp(t->route, ctx->route.data, t->route_len) == 0)
        {
            goto found;
        }
    }

    if (i == NGX_TAILGATE_TALLIES
        || ctx->provider.len > sizeof(t->provider)
        || ctx->route.len > sizeof(t->route))
    {
        return NGX_DECLINED;
    }

    t = &ngx_tailgate_tallies[ngx_tailgate_ntallies++];

    ngx_memzero(t, offsetof(ngx_tailgate_tally_t, provider));
    t->provider_len = ctx->provider.len;
    t->route_len = ctx->route.len;
    ngx_memcpy(t->provider, ctx->provider.data, t->provider_len);
    ngx_memcpy(t->route, ctx->route.data, t->route_len);

    if (!ngx_tailgate_report_timer.timer_set) {
        ngx_add_timer(&ngx_tailgate_report_timer, NGX_TAILGATE_REPORT_EVERY);
    }

found:

    t->count++;
    t->upstream_ms += upstream_ms;
    t->total_ms += total_ms;

    return NGX_OK;
}


static void
ngx_tailgate_report_flush(ngx_event_t *ev)
{
    ngx_str_t              provider, route;
    ngx_uint_t             i;
    ngx_tailgate_tally_t  *t;

    for (i = 0; i < ngx_tailgate_ntallies; i++) {
        t = &ngx_tailgate_tallies[i];

        provider.data = t->provider;
        provider.len = t->provider_len;
        route.data = t->route;
        route.len = t->route_len;

        ngx_tailgate_report_send(NULL, &provider, &route, 0,
                                 NGX_TAILGATE_OUTCOME_OK, 0, t->count,
                                 t->upstream_ms, t->total_ms, ev->log);
    }

    ngx_tailgate_ntallies = 0;
}
