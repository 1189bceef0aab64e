
/*
 * Copyright (C) The Tailgate authors
 *
 * CORS for browser clients.  Nothing is allowed unless tailgate_cors_origins
 * lists the origin (or "*" is given on purpose).  A preflight from an
 * allowed origin is answered without credentials; any other response to an
 * allowed origin, errors included, carries Access-Control-Allow-Origin so
 * that the page can read it.
 */


#include "ngx_tailgate_common.h"
#include "ngx_tailgate_names.h"
#include "ngx_tailgate_response.h"


#define NGX_TAILGATE_CORS_MAX_AGE  "600"


static ngx_table_elt_t *ngx_tailgate_cors_allowed(
    ngx_http_tailgate_loc_conf_t *tlcf, ngx_table_elt_t *origin);


/* what a request may say about CORS, in one walk over its headers */

#define NGX_TAILGATE_CORS_ORIGIN            0
#define NGX_TAILGATE_CORS_REQUEST_METHOD    1
#define NGX_TAILGATE_CORS_REQUEST_HEADERS   2

static ngx_str_t  ngx_tailgate_cors_headers_in[] = {
    ngx_string("origin"),
    ngx_string("access-control-request-method"),
    ngx_string("access-control-request-headers")
};


/* tailgate_cors_origins https://app.example.com ... | "*" */

char *
ngx_tailgate_cors_directive(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_tailgate_loc_conf_t *tlcf = conf;

    u_char      *p, *host;
    ngx_str_t   *value, *origin;
    ngx_uint_t   i;

    if (tlcf->cors_origins != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    tlcf->cors_origins = ngx_array_create(cf->pool, cf->args->nelts - 1,
                                          sizeof(ngx_str_t));
    if (tlcf->cors_origins == NULL) {
        return NGX_CONF_ERROR;
    }

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {

        if (!(value[i].len == 1 && value[i].data[0] == '*')) {

            /* scheme://host[:port], as browsers send it: no path */

            if (value[i].len > 7
                && ngx_strncasecmp(value[i].data, (u_char *) "http://", 7)
                   == 0)
            {
                host = value[i].data + 7;

            } else if (value[i].len > 8
                       && ngx_strncasecmp(value[i].data,
                                          (u_char *) "https://", 8) == 0)
            {
                host = value[i].data + 8;

            } else {
                goto invalid;
            }

            for (p = host; p < value[i].data + value[i].len; p++) {
                if (*p == '/' || *p <= ' ' || *p == 0x7f) {
                    goto invalid;
                }
            }
        }

        origin = ngx_array_push(tlcf->cors_origins);
        if (origin == NULL) {
            return NGX_CONF_ERROR;
        }

        *origin = value[i];
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid origin \"%V\", expected scheme://host[:port] "
                       "or \"*\"", &value[i]);
    return NGX_CONF_ERROR;
}


/*
 * Before authentication.  Remembers an allowed Origin for the response
 * headers; answers a preflight (NGX_DONE).  NGX_DECLINED: go on.
 */

ngx_int_t
ngx_tailgate_cors_preflight(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx, ngx_http_tailgate_loc_conf_t *tlcf)
{
    u_char           *p;
    ngx_str_t         value;
    ngx_table_elt_t  *origin, *headers, *h[3];

    ngx_tailgate_find_headers(&r->headers_in.headers,
                              ngx_tailgate_cors_headers_in, h, 3);

    origin = ngx_tailgate_cors_allowed(tlcf, h[NGX_TAILGATE_CORS_ORIGIN]);

    if (origin) {
        ctx->cors_origin = origin->value;
    }

    if (r->method != NGX_HTTP_OPTIONS
        || h[NGX_TAILGATE_CORS_REQUEST_METHOD] == NULL
        || h[NGX_TAILGATE_CORS_ORIGIN] == NULL)
    {
        return NGX_DECLINED;
    }

    if (origin == NULL) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "tailgate: preflight from an origin not allowed");

        return ngx_tailgate_fail(r, NGX_TAILGATE_ERR_CORS_ORIGIN_NOT_ALLOWED,
                                 NULL);
    }

    ngx_str_set(&value, "GET, POST, OPTIONS");

    if (ngx_tailgate_add_header(r, "Access-Control-Allow-Methods", &value)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    /*
     * SDKs send headers of their own (X-Stainless-*): the ones asked for
     * are allowed, as long as they are header names
     */

    headers = h[NGX_TAILGATE_CORS_REQUEST_HEADERS];

    if (headers && headers->value.len) {
        for (p = headers->value.data;
             p < headers->value.data + headers->value.len;
             p++)
        {
            if (!(ngx_tailgate_is_name_char(*p) || *p == ',' || *p == ' ')) {
                break;
            }
        }

        if (p == headers->value.data + headers->value.len
            && ngx_tailgate_add_header(r, "Access-Control-Allow-Headers",
                                     &headers->value) != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    ngx_str_set(&value, NGX_TAILGATE_CORS_MAX_AGE);

    if (ngx_tailgate_add_header(r, "Access-Control-Max-Age", &value) != NGX_OK)
    {
        return NGX_ERROR;
    }

    (void) ngx_http_discard_request_body(r);

    r->headers_out.status = NGX_HTTP_NO_CONTENT;
    r->headers_out.content_length_n = 0;
    r->header_only = 1;

    return ngx_http_send_header(r);
}


/* for every response to an allowed origin: the header filter calls this */

ngx_int_t
ngx_tailgate_cors_headers(ngx_http_request_t *r, ngx_http_tailgate_ctx_t *ctx)
{
    ngx_str_t  value;

    if (ngx_tailgate_add_header(r, "Access-Control-Allow-Origin",
                              &ctx->cors_origin) != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_str_set(&value, "Origin");

    if (ngx_tailgate_add_header(r, "Vary", &value) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_str_set(&value, "Retry-After, X-Tailgate-Provider, X-Tailgate-Route, "
                        "X-Tailgate-Attempts");

    return ngx_tailgate_add_header(r, "Access-Control-Expose-Headers", &value);
}


/* the Origin header, if tailgate_cors_origins allows it */

static ngx_table_elt_t *
ngx_tailgate_cors_allowed(ngx_http_tailgate_loc_conf_t *tlcf,
    ngx_table_elt_t *origin)
{
    ngx_str_t   *allowed;
    ngx_uint_t   i;

    if (tlcf->cors_origins == NULL || origin == NULL
        || origin->value.len == 0)
    {
        return NULL;
    }

    allowed = tlcf->cors_origins->elts;

    for (i = 0; i < tlcf->cors_origins->nelts; i++) {
        if ((allowed[i].len == 1 && allowed[i].data[0] == '*')
            || (allowed[i].len == origin->value.len
                && ngx_strncasecmp(allowed[i].data, origin->value.data,
                                   origin->value.len) == 0))
        {
            return origin;
        }
    }

    return NULL;
}
