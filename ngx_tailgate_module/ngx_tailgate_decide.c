
/*
 * Copyright (C) The Tailgate authors
 *
 * The precontent phase: which endpoint, what the body says, and where
 * policyd sends the request.  The body is read with a post handler and the
 * request parked while policyd decides; a DECISION is checked against
 * nginx's own configuration before the $tailgate_* variables see it.
 */


#include "ngx_tailgate_common.h"
#include "ngx_tailgate_ctx.h"
#include "ngx_tailgate_cache.h"
#include "ngx_tailgate_names.h"
#include "ngx_tailgate_response.h"


#define NGX_TAILGATE_DECIDE_FRAME     4096


/* the edit that asks a provider for a chat stream's usage */
static u_char  ngx_http_tailgate_ask_usage[] =
    "set stream_options.include_usage true\n";


static ngx_int_t ngx_http_tailgate_classify(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx);
static void ngx_http_tailgate_body_handler(ngx_http_request_t *r);
static void ngx_http_tailgate_body_scanned(ngx_http_request_t *r,
    ngx_int_t rc, ngx_tailgate_scan_error_t *error);
static ngx_int_t ngx_http_tailgate_ask(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx);
static void ngx_http_tailgate_resume(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx);
static void ngx_http_tailgate_answered(ngx_tailgate_call_t *call,
    ngx_tailgate_call_result_e result, ngx_tailgate_reply_t *reply);
static ngx_int_t ngx_http_tailgate_apply(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx, ngx_tailgate_reply_t *reply);
static void ngx_http_tailgate_body_loaded(ngx_http_request_t *r,
    ngx_int_t rc, ngx_tailgate_scan_error_t *error);
static ngx_int_t ngx_http_tailgate_apply_body(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx);
static ngx_int_t ngx_http_tailgate_translate(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx, ngx_str_t *adjust);
static ngx_int_t ngx_http_tailgate_prices(ngx_str_t *text,
    uint64_t *prices);
static ngx_tailgate_upstream_t *ngx_http_tailgate_check(
    ngx_http_request_t *r, ngx_tailgate_reply_t *reply);
static ngx_int_t ngx_http_tailgate_refuse(ngx_http_request_t *r,
    ngx_tailgate_reply_t *reply);
static ngx_int_t ngx_http_tailgate_header_safe(ngx_str_t *value,
    ngx_uint_t allow_space);
static u_char *ngx_http_tailgate_keep(u_char *p, ngx_str_t *dst,
    ngx_str_t *src);


/*
 * Paths after the base_url's "/v1/".  The endpoints a decision is asked
 * for take JSON, but for the file uploads of transcriptions.
 */

#define NGX_TAILGATE_ENDPOINT(id, name, path)                                 \
    { ngx_string(path), ngx_string(name), NGX_HTTP_POST,                      \
      (NGX_TAILGATE_EP_ ## id == NGX_TAILGATE_EP_TRANSCRIPTIONS)              \
      ? NGX_TAILGATE_BODY_MULTIPART : NGX_TAILGATE_BODY_JSON,                 \
      NGX_TAILGATE_EP_ ## id },

static const ngx_tailgate_endpoint_t  ngx_tailgate_endpoints[] = {

    TG_ENDPOINTS(NGX_TAILGATE_ENDPOINT)

    { ngx_string("models"), ngx_string("models"),
      NGX_HTTP_GET|NGX_HTTP_HEAD, NGX_TAILGATE_BODY_NONE,
      NGX_TAILGATE_EP_MODELS },

    /* models/{id} */
    { ngx_string("models/"), ngx_string("models"),
      NGX_HTTP_GET|NGX_HTTP_HEAD, NGX_TAILGATE_BODY_NONE,
      NGX_TAILGATE_EP_MODEL },

    { ngx_null_string, ngx_null_string, 0, 0, 0 }
};

#undef NGX_TAILGATE_ENDPOINT


ngx_int_t
ngx_http_tailgate_precontent_handler(ngx_http_request_t *r)
{
    ngx_int_t                      rc;
    ngx_http_tailgate_ctx_t       *ctx;
    ngx_http_tailgate_loc_conf_t  *tlcf;

    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_tailgate_module);

    if (!tlcf->enable || r != r->main) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_tailgate_get_ctx(r);

    if (ctx == NULL) {
        return NGX_DECLINED;
    }

    switch (ctx->state) {

    case NGX_TAILGATE_NEW:
        if (tlcf->status) {
            return ngx_http_tailgate_ask_status(r, ctx);
        }
        break;

    case NGX_TAILGATE_WAITING:
        /* parked until policyd answers: nothing else wakes the request */
        return NGX_AGAIN;

    case NGX_TAILGATE_READING:
    case NGX_TAILGATE_DONE:

        /*
         * An internal redirect while the body was read (error_page 413)
         * or after the module answered: the target location serves it.
         */

        return r->internal ? NGX_DECLINED : NGX_AGAIN;

    case NGX_TAILGATE_DECIDED:
        return ngx_http_tailgate_proxy(r, ctx);

    default: /* NGX_TAILGATE_PROXYING */

        /*
         * Back from the fallback location's error_page: the attempt failed
         * before its response started.  Any other redirect is not ours.
         */

        if (!r->internal || !ctx->in_fallback) {
            return NGX_DECLINED;
        }

        rc = ngx_http_tailgate_retry(r, ctx);

        /* NGX_OK: the route allows another attempt */
        return (rc == NGX_OK) ? ngx_http_tailgate_ask(r, ctx) : rc;
    }

    rc = ngx_http_tailgate_classify(r, ctx);

    if (rc != NGX_OK) {
        return rc;
    }

    if (ctx->endpoint->body == NGX_TAILGATE_BODY_NONE) {
        rc = ngx_http_discard_request_body(r);

        if (rc != NGX_OK) {
            return rc;
        }

        /* NGX_AGAIN (parked) or NGX_DONE (answered): the phases stop */
        return ngx_http_tailgate_ask(r, ctx);
    }

    ctx->state = NGX_TAILGATE_READING;

    rc = ngx_http_read_client_request_body(r, ngx_http_tailgate_body_handler);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    ngx_http_finalize_request(r, NGX_DONE);
    return NGX_DONE;
}


/*
 * Which endpoint: the part of the URI after the first "/v1/".  NGX_OK, or
 * NGX_DONE when the request got its error response.
 */

static ngx_int_t
ngx_http_tailgate_classify(ngx_http_request_t *r, ngx_http_tailgate_ctx_t *ctx)
{
    u_char                         *p, *end;
    ngx_str_t                       rest;
    const ngx_tailgate_endpoint_t  *ep;

    end = r->uri.data + r->uri.len;
    ngx_str_null(&rest);

    for (p = r->uri.data; end - p >= 4; p++) {
        p = ngx_strlchr(p, end, '/');

        if (p == NULL || end - p < 4) {
            break;
        }

        if (p[1] == 'v' && p[2] == '1' && p[3] == '/') {
            rest.data = p + 4;
            rest.len = end - rest.data;
            break;
        }
    }

    for (ep = ngx_tailgate_endpoints; ep->path.len; ep++) {

        if (ep->path.data[ep->path.len - 1] == '/') {

            /*
             * models/{id}: the rest, slashes and all ("openrouter/x"), as
             * nginx decoded it ("%2F" too)
             */

            if (rest.len > ep->path.len
                && ngx_strncmp(rest.data, ep->path.data, ep->path.len) == 0)
            {
                ctx->endpoint_rest.data = rest.data + ep->path.len;
                ctx->endpoint_rest.len = rest.len - ep->path.len;
                break;
            }

            continue;
        }

        if (rest.len == ep->path.len
            && ngx_strncmp(rest.data, ep->path.data, rest.len) == 0)
        {
            break;
        }
    }

    if (ep->path.len == 0) {
        return ngx_http_tailgate_finish(r,
                   ngx_tailgate_failf(r, NGX_TAILGATE_ERR_INVALID_URL,
                                      &r->method_name, &r->uri));
    }

    if (!(r->method & ep->method)) {
        ngx_str_set(&rest, "GET");

        if (ep->method == NGX_HTTP_POST) {
            ngx_str_set(&rest, "POST");
        }

        if (ngx_tailgate_add_header(r, "Allow", &rest) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_tailgate_finish(r,
                   ngx_tailgate_failf(r, NGX_TAILGATE_ERR_METHOD_NOT_ALLOWED,
                                      &r->method_name, &r->uri, rest.data));
    }

    ctx->endpoint = ep;

    return NGX_OK;
}


static void
ngx_http_tailgate_body_handler(ngx_http_request_t *r)
{
    ngx_int_t                  rc;
    ngx_http_tailgate_ctx_t   *ctx;
    ngx_tailgate_scan_error_t  error;

    ctx = ngx_http_tailgate_get_ctx(r);

    /* error_page and fallback send the same body again */
    r->preserve_body = 1;

    rc = ngx_tailgate_body_classify(r, ctx, ngx_http_tailgate_body_scanned,
                                    &error);

    if (rc == NGX_AGAIN) {
        /* read from its file: ngx_http_tailgate_body_scanned() goes on */
        return;
    }

    ngx_http_tailgate_body_scanned(r, rc, &error);
}


static void
ngx_http_tailgate_body_scanned(ngx_http_request_t *r, ngx_int_t rc,
    ngx_tailgate_scan_error_t *error)
{
    ngx_http_tailgate_ctx_t  *ctx;

    ctx = ngx_http_tailgate_get_ctx(r);

    if (rc == NGX_DECLINED) {
        (void) ngx_http_tailgate_finish(r,
                   error->arg ? ngx_tailgate_failf(r, error->err, error->arg)
                              : ngx_tailgate_fail(r, error->err, NULL));
        return;
    }

    if (rc != NGX_OK) {
        (void) ngx_http_tailgate_finish(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    if (ngx_http_tailgate_ask(r, ctx) == NGX_DECLINED) {
        /* a cached decision: straight on to the content phase */
        ngx_http_tailgate_resume(r, ctx);
    }
}


static void
ngx_http_tailgate_resume(ngx_http_request_t *r, ngx_http_tailgate_ctx_t *ctx)
{
    ctx->state = NGX_TAILGATE_DECIDED;
    r->write_event_handler = ngx_http_core_run_phases;
    ngx_http_core_run_phases(r);
}


/*
 * Sends DECIDE (or MODELS) and parks the request until the answer or the
 * timeout: NGX_AGAIN.  NGX_DECLINED: decided at once from the cache, go on.
 * NGX_DONE: the request got its final response (an error) and is finalized.
 */

static ngx_int_t
ngx_http_tailgate_ask(ngx_http_request_t *r, ngx_http_tailgate_ctx_t *ctx)
{
    u_char                        *key, *frame;
    size_t                         key_len, size;
    ngx_int_t                      rc;
    ngx_uint_t                     i, type;
    ngx_tailgate_frame_t           f;
    ngx_tailgate_reply_t          *cached;
    ngx_tailgate_attempt_t        *failed;
    ngx_tailgate_identity_t       *id;
    ngx_http_tailgate_loc_conf_t  *tlcf;
    u_char                         buf[NGX_TAILGATE_DECIDE_FRAME];

    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_tailgate_module);

    if (ctx->endpoint->body == NGX_TAILGATE_BODY_NONE) {
        return ngx_http_tailgate_ask_models(r, ctx);
    }

    type = TG_MSG_DECIDE;

    if (ctx->facts.model.len > NGX_TAILGATE_MAX_ROUTE_NAME) {
        return ngx_http_tailgate_finish(r,
                   ngx_tailgate_fail(r, NGX_TAILGATE_ERR_MODEL_NOT_FOUND,
                                     NULL));
    }

    /*
     * Every fact a decision may depend on comes first: those bytes are the
     * cache key.  Body size and attempt follow; policyd bounds the body
     * size a cached decision is good for.
     */

    id = ctx->identity;

    /* a long allowlist, many tags: a larger frame than the usual few hundred */

    size = sizeof(buf) / 2 + ctx->facts.model.len + id->limit.len;

    for (i = 0; i < id->nroutes; i++) {
        size += TG_FIELD_HEADER_SIZE + id->routes[i].len;
    }

    for (i = 0; i < ctx->ntags; i++) {
        size += TG_FIELD_HEADER_SIZE + ctx->tags[i].len;
    }

    if (ctx->failed) {
        failed = ctx->failed->elts;

        for (i = 0; i < ctx->failed->nelts; i++) {
            size += TG_FIELD_HEADER_SIZE + failed[i].provider.len;
        }
    }

    frame = buf;

    if (size > sizeof(buf)) {
        frame = ngx_pnalloc(r->pool, size);
        if (frame == NULL) {
            return ngx_http_tailgate_finish(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        }
    }

    ngx_tailgate_frame_init(&f, frame, ngx_max(size, sizeof(buf)), type);
    ngx_tailgate_frame_str(&f, TG_F_CLIENT, &id->client);

    if (id->tenant.len) {
        ngx_tailgate_frame_str(&f, TG_F_TENANT, &id->tenant);
    }

    if (id->limit.len) {
        ngx_tailgate_frame_str(&f, TG_F_LIMIT, &id->limit);
    }

    for (i = 0; i < ctx->ntags; i++) {
        ngx_tailgate_frame_str(&f, TG_F_TAG, &ctx->tags[i]);
    }

    for (i = 0; i < id->nroutes; i++) {
        ngx_tailgate_frame_str(&f, TG_F_ALLOW_ROUTE, &id->routes[i]);
    }

    ngx_tailgate_frame_str(&f, TG_F_ENDPOINT, &ctx->endpoint->name);
    ngx_tailgate_frame_str(&f, TG_F_MODEL, &ctx->facts.model);
    ngx_tailgate_frame_u8(&f, TG_F_STREAM, ctx->facts.stream);
    ngx_tailgate_frame_u8(&f, TG_F_TOOLS, ctx->facts.tools);

    key = frame + TG_FRAME_HEADER_SIZE;
    key_len = f.pos - key;

    /*
     * A first attempt whose key fits looks in the cache before the rest
     * of the frame is written: a hit sends no frame.  The rest always
     * fits where the key did (size has half of buf to spare).
     */

    cached = (f.overflow || ctx->attempt)
             ? NULL : ngx_tailgate_cache_get(key, key_len, ctx->body_len);

    if (cached) {
        ctx->decide_start = ngx_current_msec;
        ctx->decide_time = 0;

        rc = ngx_http_tailgate_apply(r, ctx, cached);

        if (rc == NGX_AGAIN) {
            /* the body is loaded: ngx_http_tailgate_body_loaded() goes on */
            ctx->from_cache = 1;
            return NGX_AGAIN;
        }

        if (rc != NGX_DECLINED) {
            return ngx_http_tailgate_finish(r, rc);
        }

        ctx->from_cache = 1;

        return NGX_DECLINED;
    }

    ngx_tailgate_frame_u32(&f, TG_F_BODY_BYTES, (uint32_t) ctx->body_len);
    ngx_tailgate_frame_u32(&f, TG_F_PROMPT_ESTIMATE,
                           (uint32_t) (ctx->body_len / 4));
    ngx_tailgate_frame_u32(&f, TG_F_ATTEMPT, (uint32_t) ctx->attempt + 1);

    if (ctx->failed) {
        failed = ctx->failed->elts;

        for (i = 0; i < ctx->failed->nelts; i++) {
            ngx_tailgate_frame_str(&f, TG_F_EXCLUDE, &failed[i].provider);
        }
    }

    if (f.overflow || ctx->attempt) {
        return ngx_http_tailgate_call(r, ctx, &f, tlcf->timeout,
                                  ngx_http_tailgate_answered, NULL);
    }

    /* remembered to cache the answer */

    ctx->cache_key.data = ngx_pnalloc(r->pool, key_len);
    if (ctx->cache_key.data == NULL) {
        return ngx_http_tailgate_finish(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
    }

    ngx_memcpy(ctx->cache_key.data, key, key_len);
    ctx->cache_key.len = key_len;

    return ngx_http_tailgate_call(r, ctx, &f, tlcf->timeout,
                                  ngx_http_tailgate_answered, NULL);
}


static void
ngx_http_tailgate_answered(ngx_tailgate_call_t *call,
    ngx_tailgate_call_result_e result, ngx_tailgate_reply_t *reply)
{
    ngx_int_t                 rc;
    ngx_connection_t         *c;
    ngx_http_request_t       *r;
    ngx_http_tailgate_ctx_t  *ctx;

    ctx = ngx_http_tailgate_wake(call);
    r = ctx->request;
    c = r->connection;

    if (result != NGX_TAILGATE_CALL_OK) {
        rc = ngx_tailgate_fail(r, NGX_TAILGATE_ERR_POLICY_UNAVAILABLE, NULL);

    } else if (reply->status != NGX_HTTP_OK && ctx->failed) {
        /* policyd has no provider left to try after a failure */
        rc = ngx_http_tailgate_attempts_failed(r, ctx, 1);

    } else {
        rc = ngx_http_tailgate_apply(r, ctx, reply);

        if (rc == NGX_DECLINED && ctx->cache_key.len) {
            /* checked by apply: hits need not check it again */
            ngx_tailgate_cache_put(ctx->cache_key.data, ctx->cache_key.len,
                                   reply, c->log);
        }
    }

    if (rc == NGX_DECLINED) {
        ngx_http_tailgate_resume(r, ctx);

    } else if (rc != NGX_AGAIN) {
        /* NGX_AGAIN: ngx_http_tailgate_body_loaded() goes on */
        (void) ngx_http_tailgate_finish(r, rc);
    }

    ngx_http_run_posted_requests(c);
}


/*
 * Takes a DECISION for this request: checks it against nginx's own
 * configuration, keeps it in the context for the $tailgate_* variables and
 * rewrites the body's model.  NGX_DECLINED to go on and proxy, like a
 * phase handler; NGX_AGAIN: the body is being read into memory for the
 * step's edits or a translation, ngx_http_tailgate_body_loaded() goes on;
 * anything else is the request's final status.
 */

static ngx_int_t
ngx_http_tailgate_apply(ngx_http_request_t *r, ngx_http_tailgate_ctx_t *ctx,
    ngx_tailgate_reply_t *reply)
{
    u_char                   *p;
    ngx_int_t                 rc;
    ngx_str_t                 adjust, drop_headers, user_agent;
    ngx_tailgate_upstream_t  *up;

    if (reply->status != NGX_HTTP_OK) {
        return ngx_http_tailgate_refuse(r, reply);
    }

    ctx->attempt++;

    up = reply->checked;

    if (up == NULL) {
        up = ngx_http_tailgate_check(r, reply);

        if (up == NULL) {
            ngx_tailgate_report_unused(r, ctx, reply);

            return ngx_tailgate_fail(r, NGX_TAILGATE_ERR_INVALID_ROUTE, NULL);
        }

        reply->checked = up;
    }

    /* the second guard of privacy, independent of policyd */

    if (ctx->private && !up->private) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "tailgate: policy violation: policyd chose provider "
                      "\"%V\" (upstream \"%V\") for a private request, "
                      "which nginx does not list as private; refused",
                      &reply->provider, &reply->upstream);

        ngx_tailgate_report_unused(r, ctx, reply);

        return ngx_tailgate_fail(r, NGX_TAILGATE_ERR_PRIVACY_VIOLATION, NULL);
    }

    ctx->reported = 0;
    ctx->fallback = reply->fallback;
    ctx->connect_ms = reply->connect_ms;
    ctx->first_byte_ms = reply->first_byte_ms;
    ctx->idle_ms = reply->idle_ms;
    ctx->priced = (ngx_http_tailgate_prices(&reply->prices, ctx->prices)
                   == NGX_OK);

    /*
     * A chat stream's usage comes only when asked for: the gateway asks
     * for it when the client did not (and the provider honours it), and
     * the filter takes the usage-only chunk out again.
     */

    ctx->stream_usage = reply->stream_usage ? 1 : 0;
    ctx->usage_asked = ctx->endpoint->id == NGX_TAILGATE_EP_CHAT
                       && ctx->facts.stream && !ctx->facts.include_usage
                       && reply->stream_usage;

    /* the reply lives in a read buffer or the cache: keep a copy */

    p = ngx_pnalloc(r->pool, reply->provider.len + reply->route.len
                             + reply->upstream.len + reply->host.len
                             + reply->provider_model.len
                             + reply->authorization.len + reply->reason.len
                             + reply->zone.len + reply->adjust.len
                             + reply->ratelimit.len
                             + reply->drop_headers.len
                             + reply->user_agent.len
                             + sizeof(ngx_http_tailgate_ask_usage)
                             + reply->scheme.len + sizeof("://") - 1
                             + reply->upstream.len + reply->path.len);
    if (p == NULL) {
        ngx_tailgate_report_unused(r, ctx, reply);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_http_tailgate_keep(p, &ctx->provider, &reply->provider);

    /* the decision is used: its lease is this request's to give back */

    ngx_tailgate_lease_hold(&ctx->lease, ctx->call ? ctx->call->peer : NULL,
                            reply->lease, &ctx->provider);

    p = ngx_http_tailgate_keep(p, &ctx->route, &reply->route);
    p = ngx_http_tailgate_keep(p, &ctx->upstream_name, &reply->upstream);
    p = ngx_http_tailgate_keep(p, &ctx->upstream_host, &reply->host);
    p = ngx_http_tailgate_keep(p, &ctx->provider_model,
                               &reply->provider_model);
    p = ngx_http_tailgate_keep(p, &ctx->authorization, &reply->authorization);
    p = ngx_http_tailgate_keep(p, &ctx->reason, &reply->reason);
    p = ngx_http_tailgate_keep(p, &ctx->zone, &reply->zone);
    p = ngx_http_tailgate_keep(p, &ctx->ratelimit, &reply->ratelimit);
    p = ngx_http_tailgate_keep(p, &drop_headers, &reply->drop_headers);
    p = ngx_http_tailgate_keep(p, &user_agent, &reply->user_agent);
    p = ngx_http_tailgate_keep(p, &adjust, &reply->adjust);

    if (ctx->usage_asked
        && ngx_strlcasestrn(adjust.data, adjust.data + adjust.len,
                            (u_char *) "stream_options.include_usage",
                            sizeof("stream_options.include_usage") - 2)
           == NULL)
    {
        if (adjust.len && adjust.data[adjust.len - 1] != '\n') {
            *p++ = '\n';
            adjust.len++;
        }

        p = ngx_cpymem(p, ngx_http_tailgate_ask_usage,
                       sizeof(ngx_http_tailgate_ask_usage) - 1);
        adjust.len += sizeof(ngx_http_tailgate_ask_usage) - 1;
    }

    ctx->upstream_url.data = p;
    p = ngx_cpymem(p, reply->scheme.data, reply->scheme.len);
    p = ngx_cpymem(p, "://", sizeof("://") - 1);
    p = ngx_cpymem(p, reply->upstream.data, reply->upstream.len);
    p = ngx_cpymem(p, reply->path.data, reply->path.len);
    ctx->upstream_url.len = p - ctx->upstream_url.data;

    if (ctx->upstream_host.len == 0) {
        ctx->upstream_host = ctx->upstream_name;
    }

    /* what this provider must not learn of the client (a fallback to a
       local one gets every header back) */

    if (ngx_tailgate_scrub_headers(r, ctx, &drop_headers, &user_agent)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_log_debug4(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "tailgate: route \"%V\" -> provider \"%V\" \"%V\" (%V)",
                   &ctx->route, &ctx->provider, &ctx->upstream_url,
                   &ctx->reason);

    /*
     * The body for this provider: its model name, its edits.  A fallback
     * starts again from the client's body.
     */

    ctx->renamed = ctx->provider_model.len != ctx->facts.model.len
                   || ngx_strncmp(ctx->provider_model.data,
                                  ctx->facts.model.data,
                                  ctx->facts.model.len) != 0;

    ngx_tailgate_body_restore(r, ctx);

    ctx->translate = reply->translate
                     && ctx->endpoint->id == NGX_TAILGATE_EP_RESPONSES;

    ctx->adjust = adjust;

    /*
     * A JSON body nginx did not keep in one run of memory was scanned in
     * pieces, and a new model is spliced into its chain; only edits and a
     * translation read the body as memory, and then it is loaded.
     */

    if (ctx->body == NULL && ctx->endpoint->body == NGX_TAILGATE_BODY_JSON
        && (ctx->translate
            || (adjust.len && ngx_tailgate_body_adjust_needed(ctx, &adjust))))
    {
        rc = ngx_tailgate_body_load(r, ctx, ngx_http_tailgate_body_loaded);

        if (rc == NGX_AGAIN) {
            return NGX_AGAIN;
        }

        if (rc != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    return ngx_http_tailgate_apply_body(r, ctx);
}


/* the body of a request whose body was read into memory for its decision */

static void
ngx_http_tailgate_body_loaded(ngx_http_request_t *r, ngx_int_t rc,
    ngx_tailgate_scan_error_t *error)
{
    ngx_http_tailgate_ctx_t  *ctx;

    ctx = ngx_http_tailgate_get_ctx(r);

    rc = (rc == NGX_OK) ? ngx_http_tailgate_apply_body(r, ctx)
                        : NGX_HTTP_INTERNAL_SERVER_ERROR;

    if (rc == NGX_DECLINED) {
        ngx_http_tailgate_resume(r, ctx);

    } else {
        (void) ngx_http_tailgate_finish(r, rc);
    }
}


/* NGX_DECLINED: the body is this provider's; or the request's status */

static ngx_int_t
ngx_http_tailgate_apply_body(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx)
{
    ngx_int_t  rc;
    ngx_str_t  *adjust;

    adjust = &ctx->adjust;

    if (ctx->translate) {
        rc = ngx_http_tailgate_translate(r, ctx, adjust);

        if (rc != NGX_DECLINED) {
            return rc;
        }

    } else if (adjust->len && ctx->endpoint->body == NGX_TAILGATE_BODY_JSON
               && ngx_tailgate_body_adjust_needed(ctx, adjust))
    {
        if (ngx_tailgate_body_adjust(r, ctx,
                                     ctx->renamed ? &ctx->provider_model
                                                  : NULL,
                                     adjust)
            != NGX_OK)
        {
            return ngx_tailgate_fail(r, NGX_TAILGATE_ERR_INVALID_ROUTE, NULL);
        }

    } else if (ctx->renamed
               && ngx_tailgate_body_rewrite_model(r, ctx,
                                                  &ctx->provider_model)
                  != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return NGX_DECLINED;
}


/*
 * A responses request for a provider of chat completions: the body
 * becomes a chat request (the step's edits then apply to that), or the
 * client learns which field cannot be translated.
 */

static ngx_int_t
ngx_http_tailgate_translate(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx, ngx_str_t *adjust)
{
    u_char     *body;
    size_t      body_len;
    ngx_int_t   rc, sent;
    ngx_str_t   chat;

    rc = ngx_tailgate_translate_request(r, ctx, &ctx->provider_model, &chat,
                                        &sent);

    /* the lease is the context's now: the log phase gives it back */

    if (rc == NGX_DECLINED) {
        return sent;
    }

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (adjust->len == 0) {
        return (ngx_tailgate_body_replace(r, ctx, &chat, 1) == NGX_OK)
               ? NGX_DECLINED : NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* the edits read the body that goes: the chat request, for a moment */

    body = ctx->body;
    body_len = ctx->body_len;
    ctx->body = chat.data;
    ctx->body_len = chat.len;

    rc = ngx_tailgate_body_adjust(r, ctx, NULL, adjust);

    ctx->body = body;
    ctx->body_len = body_len;

    if (rc != NGX_OK) {
        return ngx_tailgate_fail(r, NGX_TAILGATE_ERR_INVALID_ROUTE, NULL);
    }

    return NGX_DECLINED;
}


/* "IN CACHED OUT MIN CHARS": five numbers or none; NGX_DECLINED: none */

static ngx_int_t
ngx_http_tailgate_prices(ngx_str_t *text, uint64_t *prices)
{
    u_char      *p, *end, *start;
    ngx_int_t    n;
    ngx_uint_t   i;

    p = text->data;
    end = p + text->len;

    for (i = 0; i < NGX_TAILGATE_PRICES; i++) {
        while (p < end && *p == ' ') {
            p++;
        }

        start = p;

        while (p < end && *p >= '0' && *p <= '9') {
            p++;
        }

        /* a price over a million per token is no price of a provider's */

        n = (p - start <= 12) ? ngx_atoi(start, p - start) : NGX_ERROR;

        if (n == NGX_ERROR) {
            return NGX_DECLINED;
        }

        prices[i] = (uint64_t) n;
    }

    return (p == end) ? NGX_OK : NGX_DECLINED;
}


/*
 * policyd is trusted with choices, not with nginx: the upstream must be an
 * upstream{} block, and the values must be safe in a request line and in
 * headers.  Done once per decision; a cached decision keeps the result.
 */

static ngx_tailgate_upstream_t *
ngx_http_tailgate_check(ngx_http_request_t *r, ngx_tailgate_reply_t *reply)
{
    ngx_tailgate_upstream_t        *up;
    ngx_http_tailgate_main_conf_t  *tmcf;

    tmcf = ngx_http_get_module_main_conf(r, ngx_http_tailgate_module);

    up = ngx_http_tailgate_upstream(tmcf, &reply->upstream);

    if (up == NULL
        || reply->provider.len == 0
        || reply->provider_model.len == 0
        || reply->path.len == 0 || reply->path.data[0] != '/'
        || ngx_http_tailgate_header_safe(&reply->provider, 0) != NGX_OK
        || ngx_http_tailgate_header_safe(&reply->route, 1) != NGX_OK
        || ngx_http_tailgate_header_safe(&reply->zone, 0) != NGX_OK
        || ngx_http_tailgate_header_safe(&reply->path, 0) != NGX_OK
        || ngx_http_tailgate_header_safe(&reply->host, 0) != NGX_OK
        || ngx_http_tailgate_header_safe(&reply->authorization, 1) != NGX_OK
        || ngx_http_tailgate_header_safe(&reply->user_agent, 1) != NGX_OK
        || !((reply->scheme.len == 4
              && ngx_strncmp(reply->scheme.data, "http", 4) == 0)
             || (reply->scheme.len == 5
                 && ngx_strncmp(reply->scheme.data, "https", 5) == 0)))
    {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "tailgate: policyd chose provider \"%V\" with upstream "
                      "\"%V\", which nginx cannot use: no such upstream{} "
                      "block or an invalid scheme, host or path",
                      &reply->provider, &reply->upstream);
        return NULL;
    }

    return up;
}


/* policyd said no: its status and OpenAI error, never its reasons */

static ngx_int_t
ngx_http_tailgate_refuse(ngx_http_request_t *r, ngx_tailgate_reply_t *reply)
{
    u_char     *p;
    ngx_str_t   value;
    ngx_uint_t  status;

    status = reply->status;

    if (status < NGX_HTTP_BAD_REQUEST || status > 599) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "tailgate: policyd answered with status %ui", status);
        status = NGX_HTTP_SERVICE_UNAVAILABLE;
    }

    if (reply->retry_after
        && (status == NGX_HTTP_TOO_MANY_REQUESTS
            || status == NGX_HTTP_SERVICE_UNAVAILABLE))
    {
        p = ngx_pnalloc(r->pool, NGX_INT_T_LEN);
        if (p == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        value.data = p;
        value.len = ngx_sprintf(p, "%ui", reply->retry_after) - p;

        if (ngx_tailgate_add_header(r, "Retry-After", &value) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    if (reply->ratelimit.len
        && ngx_tailgate_ratelimit_headers(r, &reply->ratelimit) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (reply->error_type.len == 0) {
        ngx_str_set(&reply->error_type, "server_error");
    }

    if (reply->error_message.len == 0) {
        ngx_str_set(&reply->error_message, "The request was refused.");
    }

    return ngx_tailgate_send_error(r, status, &reply->error_type,
                                   &reply->error_code, &reply->error_message);
}


ngx_tailgate_upstream_t *
ngx_http_tailgate_upstream(ngx_http_tailgate_main_conf_t *tmcf,
    ngx_str_t *name)
{
    ngx_uint_t                i;
    ngx_tailgate_upstream_t  *up;

    up = tmcf->upstreams.elts;

    for (i = 0; i < tmcf->upstreams.nelts; i++) {
        if (up[i].name.len == name->len
            && ngx_strncasecmp(up[i].name.data, name->data, name->len) == 0)
        {
            return &up[i];
        }
    }

    return NULL;
}


/* no CR, LF or other controls; no spaces either unless allowed */

static ngx_int_t
ngx_http_tailgate_header_safe(ngx_str_t *value, ngx_uint_t allow_space)
{
    u_char  *p, *end;

    end = value->data + value->len;

    for (p = value->data; p < end; p++) {
        if (*p < 0x20 || *p == 0x7f || (*p == ' ' && !allow_space)) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/* copies src to p as dst; returns the end of the copy */

static u_char *
ngx_http_tailgate_keep(u_char *p, ngx_str_t *dst, ngx_str_t *src)
{
    dst->data = p;
    dst->len = src->len;

    /* absent fields have no data at all: memcpy() must not see NULL */
    return src->len ? ngx_cpymem(p, src->data, src->len) : p;
}
