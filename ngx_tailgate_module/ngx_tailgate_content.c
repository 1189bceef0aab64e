
/*
 * Copyright (C) The Tailgate authors
 *
 * The content handlers of the locations the gateway answers itself:
 * /health, and the error page for failures nginx detects on its own (body
 * too large, provider down).
 */


#include "ngx_tailgate_common.h"
#include "ngx_tailgate_ctx.h"
#include "ngx_tailgate_response.h"


ngx_int_t
ngx_tailgate_health_handler(ngx_http_request_t *r)
{
    ngx_str_t  body;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    if (ngx_tailgate_policyd_up()) {
        ngx_str_set(&body, "{\"status\":\"ok\",\"policyd\":\"up\"}\n");

    } else {
        ngx_str_set(&body, "{\"status\":\"ok\",\"policyd\":\"unreachable\"}\n");
    }

    return ngx_tailgate_send_body(r, NGX_HTTP_OK, body.data, body.len,
                                  "application/json");
}


/*
 * The content handler of the location that error_page sends nginx's own
 * errors to: 413 from client_max_body_size, 502 and 504 from the proxy.
 * Errors that providers send are passed through as they are.
 */

ngx_int_t
ngx_tailgate_error_page_handler(ngx_http_request_t *r)
{
    u_char                   *p;
    ngx_str_t                 named, *message;
    ngx_uint_t                status;
    ngx_tailgate_error_e      err;
    ngx_http_tailgate_ctx_t  *ctx;

    status = r->err_status ? r->err_status : r->headers_out.status;

    err = ngx_tailgate_error_of(status);

    if (status < NGX_HTTP_BAD_REQUEST || status > 599) {
        status = NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    message = NULL;

    ctx = ngx_http_tailgate_get_ctx(r);

    /* the provider's part is over: its lease ends now, not after the log */

    if (ctx) {
        (void) ngx_tailgate_report(r, ctx);
    }

    if (ctx && ctx->provider.len && ctx->explain
        && (status == NGX_HTTP_BAD_GATEWAY
            || status == NGX_HTTP_GATEWAY_TIME_OUT))
    {
        p = ngx_pnalloc(r->pool, ctx->provider.len + 64);
        if (p == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        named.data = p;
        named.len = ngx_sprintf(p, "The provider \"%V\" %s", &ctx->provider,
                                status == NGX_HTTP_BAD_GATEWAY
                                ? "could not be reached."
                                : "did not answer in time.")
                    - p;
        message = &named;
    }

    return ngx_tailgate_error(r, err, status, message);
}
