
/*
 * Copyright (C) The Tailgate authors
 *
 * Fallback with nginx's own machinery.  A decision that may be followed by
 * another is proxied in the tailgate_fallback location, whose error_page
 * brings a provider's failure back to the precontent phase before any byte
 * reached the client; then the attempt is reported and, if the route
 * allows it, policyd is asked again.  Otherwise the client learns what was
 * tried.
 */


#include "ngx_tailgate_common.h"
#include "ngx_tailgate_ctx.h"
#include "ngx_tailgate_names.h"
#include "ngx_tailgate_response.h"


static ngx_str_t  ngx_http_tailgate_retry_after = ngx_string("retry-after");


/*
 * The failure class of an attempt, for the decision's fallback bits: the
 * outcome's, and a provider's 401, 402 or 403 - it refused the gateway's
 * key or account, not the client - as "auth".
 */

static ngx_uint_t
ngx_tailgate_fallback_class(ngx_tailgate_outcome_e outcome, ngx_uint_t status)
{
    if (outcome == NGX_TAILGATE_OUTCOME_CLIENT_ERROR
        && status >= NGX_HTTP_UNAUTHORIZED && status <= NGX_HTTP_FORBIDDEN)
    {
        return TG_FALLBACK_AUTH;
    }

    return ngx_tailgate_outcomes[outcome].fallback;
}


/*
 * A decision was applied: on to the content phase, proxy_pass.  A decision
 * that may be followed by another when the provider fails is proxied in
 * the fallback location instead, where nginx hands such failures back to
 * the module (proxy_intercept_errors, error_page) rather than to the
 * client.
 */

ngx_int_t
ngx_http_tailgate_proxy(ngx_http_request_t *r, ngx_http_tailgate_ctx_t *ctx)
{
    ngx_http_tailgate_loc_conf_t  *tlcf;

    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_tailgate_module);

    if (ctx->fallback && !ctx->in_fallback) {

        if (tlcf->fallback.len) {
            ctx->in_fallback = 1;

            ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                           "tailgate: proxying in \"%V\", which may fall "
                           "back", &tlcf->fallback);

            (void) ngx_http_named_location(r, &tlcf->fallback);

            /* named_location() counted a reference of its own */
            ngx_http_finalize_request(r, NGX_DONE);
            return NGX_DONE;
        }

        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "tailgate: route \"%V\" may fall back, but this "
                      "location has no tailgate_fallback: a failure of "
                      "provider \"%V\" is final", &ctx->route,
                      &ctx->provider);

        ctx->fallback = 0;
    }

    /* the upstream states of this attempt come after these */
    ctx->states = r->upstream_states ? r->upstream_states->nelts : 0;
    ctx->state = NGX_TAILGATE_PROXYING;

    ngx_tailgate_timeouts_proxy(r, ctx);

    return NGX_DECLINED;
}


/*
 * The attempt failed before its response started (connect error, timeout,
 * 5xx or 429, intercepted by the fallback location).  It is reported at
 * once, so that its lease ends and policyd learns of the failure; then
 * policyd is asked again with the providers tried so far excluded - if
 * the route allows it for this failure: NGX_OK - or the client learns
 * what was tried.
 */

ngx_int_t
ngx_http_tailgate_retry(ngx_http_request_t *r, ngx_http_tailgate_ctx_t *ctx)
{
    ngx_uint_t               status;
    ngx_msec_t               upstream_ms;
    ngx_tailgate_attempt_t  *a;
    ngx_tailgate_outcome_e   outcome;

    outcome = ngx_tailgate_outcome(r, ctx, &upstream_ms, &status);

    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "tailgate: attempt %ui of route \"%V\" failed: provider "
                  "\"%V\" %V (%ui)", ctx->attempt, &ctx->route,
                  &ctx->provider, &ngx_tailgate_outcomes[outcome].name,
                  status);

    if (ctx->failed == NULL) {
        ctx->failed = ngx_array_create(r->pool, 4,
                                       sizeof(ngx_tailgate_attempt_t));
        if (ctx->failed == NULL) {
            return ngx_http_tailgate_finish(r,
                                            NGX_HTTP_INTERNAL_SERVER_ERROR);
        }
    }

    a = ngx_array_push(ctx->failed);
    if (a == NULL) {
        return ngx_http_tailgate_finish(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
    }

    a->provider = ctx->provider;
    a->outcome = outcome;
    a->status = status;

    ngx_tailgate_report_attempt(r, ctx, outcome, status, upstream_ms);

    /*
     * What nginx copied of the provider's 401 (its challenge) is not the
     * gateway's to send: the client's own key was fine.
     */

    if (r->headers_out.www_authenticate) {
        r->headers_out.www_authenticate->hash = 0;
        r->headers_out.www_authenticate = NULL;
    }

    if (!(ctx->fallback & ngx_tailgate_fallback_class(outcome, status))) {
        return ngx_http_tailgate_finish(r,
                   ngx_http_tailgate_attempts_failed(r, ctx, 0));
    }

    /* the next decision must not come from, or go to, the cache */

    ctx->cache_key.len = 0;
    ctx->state = NGX_TAILGATE_NEW;

    return NGX_OK;
}


/*
 * Nothing more will be tried.  After one attempt the client gets the
 * provider's failure as an OpenAI error of the same status; after a
 * fallback, 503 with every attempt listed.  Names of providers and
 * outcomes only: never an address, a key or a provider's own message.
 */

ngx_int_t
ngx_http_tailgate_attempts_failed(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx, ngx_uint_t retried)
{
    u_char                  *p, *last;
    size_t                   size;
    ngx_str_t                message, retry;
    ngx_uint_t               i, n, status;
    ngx_table_elt_t         *h;
    const ngx_str_t         *name;
    ngx_tailgate_error_e     err;
    ngx_tailgate_attempt_t  *a;

    a = ctx->failed->elts;
    n = ctx->failed->nelts;

    size = 128 + ctx->route.len + n * (NGX_TAILGATE_MAX_TAG + 64);

    p = ngx_pnalloc(r->pool, size);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    message.data = p;
    last = p + size;

    p = ngx_slprintf(p, last, (n == 1 && !retried)
                              ? "The provider for model '%V' failed"
                              : "Every provider tried for model '%V' failed",
                     &ctx->route);

    for (i = 0; i < n; i++) {

        /* tailgate_explain_headers off: which providers stays inside */

        name = &ngx_tailgate_outcomes[a[i].outcome].name;

        if (ctx->explain) {
            p = ngx_slprintf(p, last, "%s %V (%V", i ? "," : ":",
                             &a[i].provider, name);
        } else {
            p = ngx_slprintf(p, last, "%s attempt %ui (%V", i ? "," : ":",
                             i + 1, name);
        }

        /* connect errors and timeouts have no status of the provider's */

        switch (a[i].outcome) {

        case NGX_TAILGATE_OUTCOME_CLIENT_ERROR:
        case NGX_TAILGATE_OUTCOME_RATE_LIMITED:
        case NGX_TAILGATE_OUTCOME_SERVER_ERROR:
        case NGX_TAILGATE_OUTCOME_STREAM_BROKEN:
            p = ngx_slprintf(p, last, ", HTTP %ui", a[i].status);
            break;

        default:
            break;
        }

        p = ngx_slprintf(p, last, ")");
    }

    p = ngx_slprintf(p, last, ". Try again later.");
    message.len = p - message.data;

    a = &a[n - 1];

    if (n > 1 || retried) {
        status = NGX_HTTP_SERVICE_UNAVAILABLE;
        err = NGX_TAILGATE_ERR_NO_PROVIDER_AVAILABLE;

    } else if (a->outcome == NGX_TAILGATE_OUTCOME_RATE_LIMITED) {
        status = NGX_HTTP_TOO_MANY_REQUESTS;
        err = NGX_TAILGATE_ERR_PROVIDER_RATE_LIMITED;

    } else if (a->outcome == NGX_TAILGATE_OUTCOME_TIMEOUT) {
        status = NGX_HTTP_GATEWAY_TIME_OUT;
        err = NGX_TAILGATE_ERR_PROVIDER_TIMEOUT;

    } else if (a->outcome == NGX_TAILGATE_OUTCOME_SERVER_ERROR
               && a->status >= 500 && a->status <= 599)
    {
        status = a->status;
        err = NGX_TAILGATE_ERR_PROVIDER_ERROR;

    } else if (a->outcome == NGX_TAILGATE_OUTCOME_CLIENT_ERROR) {
        /* it refused the gateway's own key or account: not the client's */
        status = NGX_HTTP_BAD_GATEWAY;
        err = NGX_TAILGATE_ERR_PROVIDER_ERROR;

    } else {
        status = NGX_HTTP_BAD_GATEWAY;
        err = NGX_TAILGATE_ERR_PROVIDER_UNREACHABLE;
    }

    /* when to come back: the provider's own word for a 429, if it gave one */

    if (status == NGX_HTTP_TOO_MANY_REQUESTS
        || status == NGX_HTTP_SERVICE_UNAVAILABLE)
    {
        ngx_str_set(&retry, "1");

        h = (status == NGX_HTTP_TOO_MANY_REQUESTS && r->upstream)
            ? ngx_tailgate_find_header(&r->upstream->headers_in.headers,
                                       &ngx_http_tailgate_retry_after)
            : NULL;

        if (h && h->value.len && h->value.len <= 6
            && ngx_atoi(h->value.data, h->value.len) != NGX_ERROR)
        {
            retry = h->value;
        }

        if (ngx_tailgate_add_header(r, "Retry-After", &retry) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    return ngx_tailgate_error(r, err, status, &message);
}
