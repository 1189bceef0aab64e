
/*
 * Copyright (C) The Tailgate authors
 *
 * $tailgate_* variables: the decision for proxy_pass and proxy_set_header,
 * the identity and the reasons for access logs.
 */


#include "ngx_tailgate_common.h"
#include "ngx_tailgate_ctx.h"
#include "ngx_tailgate_meter.h"


static ngx_int_t ngx_tailgate_variable_str(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_tailgate_variable_identity(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_tailgate_variable_endpoint(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_tailgate_variable_stream(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_tailgate_variable_decision_time(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_tailgate_variable_attempts(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_tailgate_variable_failures(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_tailgate_variable_tokens(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_tailgate_variable_cost(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);


/* a value found: every variable here is computed again for each use */
#define ngx_tailgate_variable_found(v, p, n)                                  \
    (v)->data = (p);                                                          \
    (v)->len = (n);                                                           \
    (v)->valid = 1;                                                           \
    (v)->no_cacheable = 1;                                                    \
    (v)->not_found = 0


#define ngx_tailgate_ctx_str(field)                                           \
    ngx_tailgate_variable_str, offsetof(ngx_http_tailgate_ctx_t, field)


/* the decision may change on fallback: nothing is cached */

static ngx_http_variable_t  ngx_tailgate_variables[] = {

    { ngx_string("tailgate_upstream_url"), NULL,
      ngx_tailgate_ctx_str(upstream_url), NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("tailgate_upstream_host"), NULL,
      ngx_tailgate_ctx_str(upstream_host), NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("tailgate_upstream_authorization"), NULL,
      ngx_tailgate_ctx_str(authorization),
      NGX_HTTP_VAR_NOCACHEABLE|NGX_HTTP_VAR_NOHASH, 0 },

    { ngx_string("tailgate_provider"), NULL,
      ngx_tailgate_ctx_str(provider), NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("tailgate_provider_model"), NULL,
      ngx_tailgate_ctx_str(provider_model), NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("tailgate_route"), NULL,
      ngx_tailgate_ctx_str(route), NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("tailgate_reason"), NULL,
      ngx_tailgate_ctx_str(reason), NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("tailgate_zone"), NULL,
      ngx_tailgate_ctx_str(zone), NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("tailgate_client"), NULL, ngx_tailgate_variable_identity,
      offsetof(ngx_tailgate_identity_t, client), NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("tailgate_tenant"), NULL, ngx_tailgate_variable_identity,
      offsetof(ngx_tailgate_identity_t, tenant), NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("tailgate_auth"), NULL, ngx_tailgate_variable_identity,
      (uintptr_t) -1, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("tailgate_model"), NULL,
      ngx_tailgate_ctx_str(facts.model), NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("tailgate_endpoint"), NULL,
      ngx_tailgate_variable_endpoint, 0, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("tailgate_stream"), NULL,
      ngx_tailgate_variable_stream, 0, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("tailgate_decision_time"), NULL,
      ngx_tailgate_variable_decision_time, 0, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("tailgate_attempts"), NULL,
      ngx_tailgate_variable_attempts, 0, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("tailgate_failures"), NULL,
      ngx_tailgate_variable_failures, 0, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("tailgate_tokens_in"), NULL, ngx_tailgate_variable_tokens,
      offsetof(ngx_tailgate_tokens_t, input), NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("tailgate_tokens_out"), NULL, ngx_tailgate_variable_tokens,
      offsetof(ngx_tailgate_tokens_t, output), NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("tailgate_tokens_cached"), NULL,
      ngx_tailgate_variable_tokens, offsetof(ngx_tailgate_tokens_t, cached),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("tailgate_tokens_estimated"), NULL,
      ngx_tailgate_variable_tokens, (uintptr_t) -1,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("tailgate_cost"), NULL, ngx_tailgate_variable_cost, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


ngx_int_t
ngx_tailgate_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_tailgate_variables; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_tailgate_variable_str(ngx_http_request_t *r, ngx_http_variable_value_t *v,
    uintptr_t data)
{
    ngx_str_t                *s;
    ngx_http_tailgate_ctx_t  *ctx;

    ctx = ngx_http_tailgate_get_ctx(r);

    if (ctx == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    s = (ngx_str_t *) ((u_char *) ctx + data);

    ngx_tailgate_variable_found(v, s->data, s->len);

    return NGX_OK;
}


/*
 * A string of the client's identity; data -1: "key", "jwt", "dpop" (a
 * DPoP-bound token with its proof), "network"
 */

static ngx_int_t
ngx_tailgate_variable_identity(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_str_t                *s;
    ngx_http_tailgate_ctx_t  *ctx;

    ctx = ngx_http_tailgate_get_ctx(r);

    if (ctx == NULL || ctx->identity == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    if (data == (uintptr_t) -1) {
        if (ctx->identity->network) {
            ngx_tailgate_variable_found(v, (u_char *) "network", 7);

        } else if (ctx->identity->jwt && ctx->dpop) {
            ngx_tailgate_variable_found(v, (u_char *) "dpop", 4);

        } else {
            ngx_tailgate_variable_found(v, (u_char *) (ctx->identity->jwt
                                                       ? "jwt" : "key"), 3);
        }

    } else {
        s = (ngx_str_t *) ((u_char *) ctx->identity + data);
        ngx_tailgate_variable_found(v, s->data, s->len);
    }

    return NGX_OK;
}


static ngx_int_t
ngx_tailgate_variable_endpoint(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_tailgate_ctx_t  *ctx;

    ctx = ngx_http_tailgate_get_ctx(r);

    if (ctx == NULL || ctx->endpoint == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    ngx_tailgate_variable_found(v, ctx->endpoint->name.data,
                                ctx->endpoint->name.len);

    return NGX_OK;
}


static ngx_int_t
ngx_tailgate_variable_stream(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_tailgate_ctx_t  *ctx;

    ctx = ngx_http_tailgate_get_ctx(r);

    if (ctx == NULL || ctx->endpoint == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    ngx_tailgate_variable_found(v, (u_char *) (ctx->facts.stream ? "1" : "0"),
                                1);

    return NGX_OK;
}


static ngx_int_t
ngx_tailgate_variable_decision_time(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    u_char                   *p;
    ngx_http_tailgate_ctx_t  *ctx;

    ctx = ngx_http_tailgate_get_ctx(r);

    if (ctx == NULL || ctx->state < NGX_TAILGATE_DECIDED) {
        v->not_found = 1;
        return NGX_OK;
    }

    p = ngx_pnalloc(r->pool, NGX_TIME_T_LEN + 4);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ngx_tailgate_variable_found(v, p,
        ngx_sprintf(p, "%T.%03M", (time_t) ctx->decide_time / 1000,
                    ctx->decide_time % 1000) - p);

    return NGX_OK;
}


/* how many providers were asked: 1, or more after a fallback */

static ngx_int_t
ngx_tailgate_variable_attempts(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    u_char                   *p;
    ngx_http_tailgate_ctx_t  *ctx;

    ctx = ngx_http_tailgate_get_ctx(r);

    if (ctx == NULL || ctx->attempt == 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    p = ngx_pnalloc(r->pool, NGX_INT_T_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ngx_tailgate_variable_found(v, p, ngx_sprintf(p, "%ui", ctx->attempt) - p);

    return NGX_OK;
}


/*
 * The attempts that failed: "local:server_error:500 lan:timeout", and the
 * last one when its stream broke off: "lan:stream_broken".
 */

static ngx_int_t
ngx_tailgate_variable_failures(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    u_char                   *p, *start;
    size_t                    len;
    ngx_uint_t                i, n, broken;
    ngx_tailgate_attempt_t   *a;
    ngx_http_tailgate_ctx_t  *ctx;

    ctx = ngx_http_tailgate_get_ctx(r);

    if (ctx == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    /* the last attempt broke off after its answer had started */
    broken = (ctx->stream_broken || ctx->translate_failed)
             && ctx->provider.len;

    n = ctx->failed ? ctx->failed->nelts : 0;

    if (n == 0 && !broken) {
        v->not_found = 1;
        return NGX_OK;
    }

    a = n ? ctx->failed->elts : NULL;
    len = 0;

    for (i = 0; i < n; i++) {
        len += a[i].provider.len
               + ngx_tailgate_outcomes[a[i].outcome].name.len
               + NGX_INT_T_LEN + 3;
    }

    if (broken) {
        len += ctx->provider.len + 2
               + ngx_tailgate_outcomes[NGX_TAILGATE_OUTCOME_STREAM_BROKEN]
                 .name.len;
    }

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    start = p;

    for (i = 0; i < n; i++) {
        p = ngx_sprintf(p, "%s%V:%V", i ? " " : "", &a[i].provider,
                        &ngx_tailgate_outcomes[a[i].outcome].name);

        if (a[i].status) {
            p = ngx_sprintf(p, ":%ui", a[i].status);
        }
    }

    if (broken) {
        p = ngx_sprintf(p, "%s%V:%V", n ? " " : "", &ctx->provider,
              &ngx_tailgate_outcomes[NGX_TAILGATE_OUTCOME_STREAM_BROKEN].name);
    }

    ngx_tailgate_variable_found(v, start, p - start);

    return NGX_OK;
}


/* the tokens of the request's last attempt; none when nothing was asked */

static ngx_int_t
ngx_tailgate_variable_tokens(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    u_char                   *p;
    uint64_t                  n;
    ngx_tailgate_tokens_t    *t;
    ngx_http_tailgate_ctx_t  *ctx;

    ctx = ngx_http_tailgate_get_ctx(r);
    t = (ctx && ctx->provider.len) ? ngx_tailgate_meter_tokens(r, ctx) : NULL;

    if (t == NULL || !t->known) {
        v->not_found = 1;
        return NGX_OK;
    }

    if (data == (uintptr_t) -1) {
        ngx_tailgate_variable_found(v, (u_char *) (t->estimated ? "1" : "0"),
                                    1);
        return NGX_OK;
    }

    n = *(uint64_t *) ((char *) t + data);

    p = ngx_pnalloc(r->pool, NGX_INT64_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ngx_tailgate_variable_found(v, p, ngx_sprintf(p, "%uL", n) - p);

    return NGX_OK;
}


/*
 * What the request cost in the policy's currency, exactly as policyd
 * records it: the pico-units as a decimal with no trailing zeros.
 */

static ngx_int_t
ngx_tailgate_variable_cost(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    u_char                   *p, *last;
    uint64_t                  pico;
    ngx_tailgate_tokens_t    *t;
    ngx_http_tailgate_ctx_t  *ctx;

    ctx = ngx_http_tailgate_get_ctx(r);
    t = (ctx && ctx->provider.len && ctx->priced)
        ? ngx_tailgate_meter_tokens(r, ctx) : NULL;

    if (t == NULL || !t->known) {
        v->not_found = 1;
        return NGX_OK;
    }

    pico = ngx_tailgate_meter_cost(ctx, t);

    p = ngx_pnalloc(r->pool, NGX_INT64_LEN + 14);
    if (p == NULL) {
        return NGX_ERROR;
    }

    last = ngx_sprintf(p, "%uL.%012uL", pico / 1000000000000ULL,
                       pico % 1000000000000ULL);

    while (last[-1] == '0') {
        last--;
    }

    if (last[-1] == '.') {
        last--;
    }

    ngx_tailgate_variable_found(v, p, last - p);

    return NGX_OK;
}
