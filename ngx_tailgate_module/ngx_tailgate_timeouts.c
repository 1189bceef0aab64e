
/*
 * Copyright (C) The Tailgate authors
 *
 * An attempt's own timeouts: to connect to the provider (connect_ms), from
 * the request sent to the response's header (first_byte_ms) and between
 * two reads of its body (idle_ms), from the decision, so that a hung local
 * model is a timeout - and a fallback - within seconds while a slow
 * external one keeps the location's ten minutes.
 *
 * nginx takes these times from the upstream's configuration, and
 * proxy_read_timeout takes no variables.  So the location's content
 * handler (proxy_pass) is wrapped: once it has made the upstream, the
 * upstream points at a copy of its configuration with this attempt's
 * times, and the timer nginx armed already (the connect, or the wait for
 * the header of a request sent at once) is armed again with them.  Every
 * later timer nginx arms itself, with the copy's times: a connection
 * retried to another server of the block, the header after a body sent
 * bit by bit, the body's reads once the header filter switched the copy
 * to idle_ms.  Nothing blocks, nothing polls: nginx's own timeouts, with
 * nginx's own handling (a 504, the fallback location's error_page).
 */


#include "ngx_tailgate_common.h"
#include "ngx_tailgate_ctx.h"


static ngx_int_t ngx_tailgate_timeouts_content(ngx_http_request_t *r);


/* the request goes on to the content phase: wrap its handler if need be */

void
ngx_tailgate_timeouts_proxy(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx)
{
    ctx->upstream_conf = NULL;

    if (ctx->connect_ms == 0 && ctx->first_byte_ms == 0
        && ctx->idle_ms == 0)
    {
        return;
    }

    if (r->content_handler == NULL
        || r->content_handler == ngx_tailgate_timeouts_content)
    {
        return;
    }

    ctx->proxy_handler = r->content_handler;
    r->content_handler = ngx_tailgate_timeouts_content;
}


static ngx_int_t
ngx_tailgate_timeouts_content(ngx_http_request_t *r)
{
    ngx_int_t                  rc;
    ngx_uint_t                 attempt;
    ngx_connection_t          *c;
    ngx_http_upstream_t       *u;
    ngx_http_tailgate_ctx_t   *ctx;
    ngx_http_upstream_conf_t  *conf;

    ctx = ngx_http_tailgate_get_ctx(r);

    if (ctx == NULL || ctx->proxy_handler == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    attempt = ctx->attempt;

    rc = ctx->proxy_handler(r);

    /*
     * A connection refused at once may have failed this attempt and sent
     * the request to the fallback location already: then this upstream is
     * done, and the next attempt wraps its own.
     */

    u = r->upstream;

    if (u == NULL || u->conf == NULL || ctx->attempt != attempt
        || ctx->state != NGX_TAILGATE_PROXYING || ctx->upstream_conf)
    {
        return rc;
    }

    conf = ngx_palloc(r->pool, sizeof(ngx_http_upstream_conf_t));
    if (conf == NULL) {
        return rc;
    }

    *conf = *u->conf;
    ctx->read_timeout = u->conf->read_timeout;

    if (ctx->connect_ms) {
        conf->connect_timeout = ctx->connect_ms;
    }

    /* until the header: first_byte_ms, or the location's */

    if (ctx->first_byte_ms) {
        conf->read_timeout = ctx->first_byte_ms;
    }

    u->conf = conf;
    ctx->upstream_conf = conf;

    c = u->peer.connection;

    if (c == NULL) {
        return rc;
    }

    if (!u->request_sent) {
        if (c->write->timer_set && ctx->connect_ms) {
            ngx_add_timer(c->write, ctx->connect_ms);
        }

    } else if (c->read->timer_set && !u->header_sent && ctx->first_byte_ms) {
        ngx_add_timer(c->read, ctx->first_byte_ms);
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "tailgate: attempt timeouts: connect %M, first byte %M, "
                   "idle %M", conf->connect_timeout, conf->read_timeout,
                   ctx->idle_ms);

    return rc;
}


/*
 * From the header filter: the response started.  The reads of its body
 * that nginx times from now on wait idle_ms at most.
 */

void
ngx_tailgate_timeouts_answered(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx)
{
    if (ctx->upstream_conf == NULL || r->upstream == NULL
        || r->upstream->conf != ctx->upstream_conf)
    {
        return;
    }

    /* no idle_ms of its own: the location's, as nginx would */

    ctx->upstream_conf->read_timeout = ctx->idle_ms ? ctx->idle_ms
                                                    : ctx->read_timeout;
}
