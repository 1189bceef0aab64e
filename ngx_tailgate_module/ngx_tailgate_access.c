
/*
 * Copyright (C) The Tailgate authors
 *
 * The access phase: who is asking (ngx_tailgate_auth.c, ngx_tailgate_jwt.c),
 * after a browser's preflight (ngx_tailgate_cors.c), and with which tags.
 * A client that cannot say who it is gets its 401 here.
 */


#include "ngx_tailgate_common.h"
#include "ngx_tailgate_ctx.h"
#include "ngx_tailgate_dpop.h"
#include "ngx_tailgate_names.h"
#include "ngx_tailgate_response.h"


static ngx_int_t ngx_http_tailgate_header_tags(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx);
static ngx_int_t ngx_http_tailgate_add_tags(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx, ngx_str_t *tags, ngx_uint_t n);
static ngx_int_t ngx_http_tailgate_unauthorized(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx, ngx_http_tailgate_loc_conf_t *tlcf,
    ngx_tailgate_auth_e auth);


/*
 * What a client that cannot say who it is learns: "missing", "invalid" or
 * "expired", no more.  RFC 6750: the challenge says "invalid_token", and
 * only "expired" as its description.  A DPoP request (RFC 9449, 7.1), or
 * one where only DPoP will do, is answered in DPoP's terms, with the
 * algorithms a proof may use; "invalid_dpop_proof" when the proof is wrong.
 */

typedef struct {
    ngx_str_t                    challenge;
    ngx_str_t                    dpop_challenge;
    ngx_tailgate_error_e         error;
} ngx_tailgate_auth_failure_t;


#define NGX_TAILGATE_DPOP_CHALLENGE  "DPoP algs=\"" NGX_TAILGATE_DPOP_ALGS "\""


static const ngx_tailgate_auth_failure_t  ngx_tailgate_auth_failures[] = {

    [NGX_TAILGATE_AUTH_MISSING] = {
      ngx_string("Bearer realm=\"tailgate\""),
      ngx_string(NGX_TAILGATE_DPOP_CHALLENGE),
      NGX_TAILGATE_ERR_MISSING_API_KEY },

    [NGX_TAILGATE_AUTH_INVALID] = {
      ngx_string("Bearer realm=\"tailgate\", error=\"invalid_token\""),
      ngx_string(NGX_TAILGATE_DPOP_CHALLENGE ", error=\"invalid_token\""),
      NGX_TAILGATE_ERR_INVALID_API_KEY },

    [NGX_TAILGATE_AUTH_EXPIRED] = {
      ngx_string("Bearer realm=\"tailgate\", error=\"invalid_token\", "
                 "error_description=\"expired\""),
      ngx_string(NGX_TAILGATE_DPOP_CHALLENGE ", error=\"invalid_token\", "
                 "error_description=\"expired\""),
      NGX_TAILGATE_ERR_EXPIRED_API_KEY },

    [NGX_TAILGATE_AUTH_DPOP_INVALID] = {
      ngx_null_string,
      ngx_string(NGX_TAILGATE_DPOP_CHALLENGE
                 ", error=\"invalid_dpop_proof\""),
      NGX_TAILGATE_ERR_INVALID_DPOP_PROOF },

    [NGX_TAILGATE_AUTH_DPOP_REQUIRED] = {
      ngx_null_string,
      ngx_string(NGX_TAILGATE_DPOP_CHALLENGE ", error=\"invalid_token\", "
                 "error_description=\"DPoP is required\""),
      NGX_TAILGATE_ERR_DPOP_REQUIRED }
};


ngx_int_t
ngx_http_tailgate_access_handler(ngx_http_request_t *r)
{
    ngx_int_t                      rc;
    const char                    *why;
    ngx_tailgate_auth_e            auth;
    ngx_http_tailgate_ctx_t       *ctx;
    ngx_tailgate_identity_t       *id;
    ngx_http_tailgate_loc_conf_t  *tlcf;

    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_tailgate_module);

    if (!tlcf->enable || r != r->main) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_tailgate_get_ctx(r);

    if (ctx && !ctx->jwks_wait) {
        /* back in a tailgate location after an internal redirect */
        return NGX_OK;
    }

    /* or back from waiting for a key set (ngx_tailgate_jwks.c): again */

    if (ctx == NULL) {
        ctx = ngx_http_tailgate_ctx_create(r);
        if (ctx == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    ctx->jwks_wait = 0;

    /* where the client came in says what it may learn, wherever it goes */
    ctx->explain = tlcf->explain;

    /* browsers ask before they send credentials */

    if (tlcf->cors_origins) {
        rc = ngx_tailgate_cors_preflight(r, ctx, tlcf);

        if (rc != NGX_DECLINED) {
            return ngx_http_tailgate_finish(r, rc);
        }
    }

    /*
     * The client learns only "missing", "invalid" or "expired"; the log
     * says which check failed, for the operator.
     */

    auth = ngx_tailgate_authenticate(r, ctx, tlcf, &why);

    switch (auth) {

    case NGX_TAILGATE_AUTH_OK:
        break;

    case NGX_TAILGATE_AUTH_AGAIN:
        ctx->jwks_wait = 1;
        return NGX_AGAIN;

    case NGX_TAILGATE_AUTH_MISSING:
        ngx_log_error(tlcf->reject_log_level, r->connection->log, 0,
                      "tailgate: no credential sent");

        return ngx_http_tailgate_unauthorized(r, ctx, tlcf, auth);

    case NGX_TAILGATE_AUTH_EXPIRED:
    case NGX_TAILGATE_AUTH_INVALID:
    case NGX_TAILGATE_AUTH_DPOP_INVALID:
    case NGX_TAILGATE_AUTH_DPOP_REQUIRED:
        ngx_log_error(tlcf->reject_log_level, r->connection->log, 0,
                      "tailgate: credential rejected: %s", why);

        return ngx_http_tailgate_unauthorized(r, ctx, tlcf, auth);

    case NGX_TAILGATE_AUTH_DPOP_BUSY:
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "tailgate: DPoP proof refused: %s", why);

        return ngx_http_tailgate_finish(r,
                   ngx_tailgate_fail(r, NGX_TAILGATE_ERR_DPOP_BUSY, NULL));

    default:
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "tailgate: authentication failed: %s", why);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* tags only ever add restrictions: the location's, the client's */

    id = ctx->identity;

    if ((tlcf->ntags
         && ngx_http_tailgate_add_tags(r, ctx, tlcf->tags, tlcf->ntags)
            != NGX_OK)
        || (id->ntags
            && ngx_http_tailgate_add_tags(r, ctx, id->tags, id->ntags)
               != NGX_OK))
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_tailgate_header_tags(r, ctx);
}


/*
 * X-Tailgate-Tags: private, region:eu.  A client may restrict its own
 * request further; there is no way to lift a tag this way, since tags
 * are only ever added.  NGX_OK, or the request got its 400.
 */

static ngx_int_t
ngx_http_tailgate_header_tags(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx)
{
    u_char                  *p, *end, *start;
    ngx_str_t               *tags;
    ngx_uint_t               n;
    ngx_table_elt_t         *h;
    ngx_tailgate_headers_t   it;

    tags = NULL;
    n = 0;

    ctx->trace.client = NULL;
    ctx->trace.nclient = 0;

    ngx_tailgate_headers_init(&it, &r->headers_in.headers);

    while ((h = ngx_tailgate_headers_next(&it)) != NULL) {

        /* the walk notes the client's traceparent (ngx_tailgate_trace.c) */

        if (h->key.len == sizeof("traceparent") - 1
            && ngx_strncmp(h->lowcase_key, "traceparent",
                           sizeof("traceparent") - 1) == 0)
        {
            ctx->trace.client = ctx->trace.client ? ctx->trace.client : h;
            ctx->trace.nclient++;
            continue;
        }

        if (h->key.len != sizeof("X-Tailgate-Tags") - 1
            || ngx_strncasecmp(h->key.data, (u_char *) "X-Tailgate-Tags",
                               sizeof("X-Tailgate-Tags") - 1) != 0)
        {
            continue;
        }

        p = h->value.data;
        end = p + h->value.len;

        while (p < end) {
            if (*p == ',' || *p == ' ' || *p == '\t') {
                p++;
                continue;
            }

            start = p;

            while (p < end && *p != ',' && *p != ' ' && *p != '\t') {
                p++;
            }

            if (ngx_tailgate_check_name(start, p, 0) != NGX_OK
                || n == NGX_TAILGATE_MAX_TAGS)
            {
                return ngx_http_tailgate_finish(r,
                           ngx_tailgate_fail(r, NGX_TAILGATE_ERR_INVALID_TAGS,
                                             NULL));
            }

            if (tags == NULL) {
                tags = ngx_palloc(r->pool,
                                  NGX_TAILGATE_MAX_TAGS * sizeof(ngx_str_t));
                if (tags == NULL) {
                    return NGX_HTTP_INTERNAL_SERVER_ERROR;
                }
            }

            tags[n].len = p - start;
            tags[n].data = ngx_pnalloc(r->pool, tags[n].len);
            if (tags[n].data == NULL) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            ngx_strlow(tags[n].data, start, tags[n].len);
            n++;
        }
    }

    ctx->trace.client_known = 1;

    if (n && ngx_http_tailgate_add_tags(r, ctx, tags, n) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return NGX_OK;
}


/*
 * Tags only ever add restrictions: from the location, the client's
 * identity, the request.  Up to 16 from each of the three fit; none is
 * dropped.
 */

static ngx_int_t
ngx_http_tailgate_add_tags(ngx_http_request_t *r, ngx_http_tailgate_ctx_t *ctx,
    ngx_str_t *tags, ngx_uint_t n)
{
    ngx_uint_t  i;

    for (i = 0; i < n; i++) {
        if (tags[i].len == 7 && ngx_strncmp(tags[i].data, "private", 7) == 0) {
            ctx->private = 1;
        }
    }

    return ngx_tailgate_tags_union(r->pool, &ctx->tags, &ctx->ntags, tags, n);
}


static ngx_int_t
ngx_http_tailgate_unauthorized(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx, ngx_http_tailgate_loc_conf_t *tlcf,
    ngx_tailgate_auth_e auth)
{
    ngx_int_t                           rc;
    ngx_uint_t                          dpop;
    const ngx_tailgate_auth_failure_t  *f;

    f = &ngx_tailgate_auth_failures[auth];

    /* where DPoP is off, a DPoP client is told what is on: Bearer */

    dpop = (ctx->dpop && tlcf->dpop != NGX_TAILGATE_DPOP_OFF)
           || tlcf->dpop == NGX_TAILGATE_DPOP_REQUIRED
           || f->challenge.len == 0;

    if (dpop) {
        rc = ngx_tailgate_add_header(r, "WWW-Authenticate",
                                     &f->dpop_challenge);

    } else {
        rc = ngx_tailgate_add_header(r, "WWW-Authenticate", &f->challenge);

        /* a bearer client learns that DPoP would do too, where it would */

        if (rc == NGX_OK && tlcf->dpop == NGX_TAILGATE_DPOP_ON) {
            rc = ngx_tailgate_add_header(r, "WWW-Authenticate",
                     &ngx_tailgate_auth_failures[NGX_TAILGATE_AUTH_MISSING]
                         .dpop_challenge);
        }
    }

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_tailgate_finish(r, ngx_tailgate_fail(r, f->error, NULL));
}
