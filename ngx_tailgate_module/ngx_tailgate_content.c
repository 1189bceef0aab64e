
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


typedef struct {
    ngx_uint_t                   status;
    const char                  *type;
    const char                  *code;
    const char                  *message;
} ngx_tailgate_error_t;


static ngx_tailgate_error_t  ngx_tailgate_errors[] = {

    { NGX_HTTP_BAD_REQUEST, "invalid_request_error", "bad_request",
      "The request could not be understood." },

    { NGX_HTTP_NOT_FOUND, "invalid_request_error", "unknown_url",
      "Unknown request URL." },

    { NGX_HTTP_NOT_ALLOWED, "invalid_request_error", "method_not_allowed",
      "Method not allowed for this URL." },

    { NGX_HTTP_REQUEST_TIME_OUT, "invalid_request_error", "request_timeout",
      "The request body was not received in time." },

    { NGX_HTTP_REQUEST_ENTITY_TOO_LARGE, "invalid_request_error",
      "request_too_large", "The request body is too large." },

    { NGX_HTTP_TOO_MANY_REQUESTS, "rate_limit_error", "rate_limited",
      "Too many requests." },

    { NGX_HTTP_BAD_GATEWAY, "server_error", "provider_unreachable",
      "The provider could not be reached." },

    { NGX_HTTP_SERVICE_UNAVAILABLE, "server_error", "service_unavailable",
      "The service is unavailable." },

    { NGX_HTTP_GATEWAY_TIME_OUT, "server_error", "provider_timeout",
      "The provider did not answer in time." },

    { 0, "server_error", "internal_error",
      "The gateway could not process the request." }
};


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
    ngx_str_t                 message, type, code;
    ngx_uint_t                status, i;
    ngx_tailgate_error_t     *e;
    ngx_http_tailgate_ctx_t  *ctx;

    status = r->err_status ? r->err_status : r->headers_out.status;

    for (i = 0; ngx_tailgate_errors[i].status; i++) {
        if (ngx_tailgate_errors[i].status == status) {
            break;
        }
    }

    e = &ngx_tailgate_errors[i];

    if (status < NGX_HTTP_BAD_REQUEST || status > 599) {
        status = NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    message.data = (u_char *) e->message;
    message.len = ngx_strlen(e->message);

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

        message.data = p;
        message.len = ngx_sprintf(p, "The provider \"%V\" %s", &ctx->provider,
                                  status == NGX_HTTP_BAD_GATEWAY
                                  ? "could not be reached."
                                  : "did not answer in time.")
                      - p;
    }

    type.data = (u_char *) e->type;
    type.len = ngx_strlen(e->type);
    code.data = (u_char *) e->code;
    code.len = ngx_strlen(e->code);

    return ngx_tailgate_send_error(r, status, &type, &code, &message);
}
