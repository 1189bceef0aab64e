
/*
 * Copyright (C) The Tailgate authors
 *
 * ngx_http_tailgate_module: an OpenAI-compatible gateway inside nginx.
 *
 *   ACCESS      authenticate the client (ngx_tailgate_auth.c)
 *   PRECONTENT  read the body, classify it, ask policyd where it goes
 *               (ngx_tailgate_body.c, ngx_tailgate_policy.c), rewrite the
 *               model; proxy_pass $tailgate_upstream_url moves the bytes
 *   LOG         report the outcome to policyd, which ends the lease
 */


#include "ngx_http_tailgate_module.h"


#define NGX_TAILGATE_MAX_ROUTE_NAME   256
#define NGX_TAILGATE_MAX_TAG          64
#define NGX_TAILGATE_DECIDE_FRAME     4096


static ngx_int_t ngx_http_tailgate_access_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_tailgate_precontent_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_tailgate_log_handler(ngx_http_request_t *r);
static void ngx_http_tailgate_body_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_tailgate_add_tags(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx, ngx_str_t *tags, ngx_uint_t n);
static ngx_int_t ngx_http_tailgate_header_tags(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx);
static ngx_int_t ngx_http_tailgate_proxy(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx);
static ngx_int_t ngx_http_tailgate_retry(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx);
static ngx_int_t ngx_http_tailgate_attempts_failed(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx, ngx_uint_t retried);
static ngx_int_t ngx_http_tailgate_classify(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx);
static ngx_int_t ngx_http_tailgate_ask(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx);
static ngx_int_t ngx_http_tailgate_call(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx, ngx_tailgate_frame_t *f, ngx_msec_t timeout);
static void ngx_http_tailgate_resume(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx);
static ngx_int_t ngx_http_tailgate_finish(ngx_http_request_t *r,
    ngx_int_t rc);
static void ngx_http_tailgate_status_part(ngx_tailgate_call_t *call,
    ngx_tailgate_reply_t *reply);
static ngx_int_t ngx_http_tailgate_status_send(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx, ngx_tailgate_reply_t *reply);
static void ngx_http_tailgate_answered(ngx_tailgate_call_t *call,
    ngx_tailgate_call_result_e result, ngx_tailgate_reply_t *reply);
static ngx_int_t ngx_http_tailgate_apply(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx, ngx_tailgate_reply_t *reply);
static ngx_tailgate_upstream_t *ngx_http_tailgate_check(
    ngx_http_request_t *r, ngx_tailgate_reply_t *reply);
static ngx_int_t ngx_http_tailgate_refuse(ngx_http_request_t *r,
    ngx_tailgate_reply_t *reply);
static ngx_int_t ngx_http_tailgate_fail(ngx_http_request_t *r,
    ngx_uint_t status, const char *type, const char *code,
    const char *message);
static ngx_int_t ngx_http_tailgate_unauthorized(ngx_http_request_t *r,
    const char *why, const char *code, const char *message);
static ngx_tailgate_upstream_t *ngx_http_tailgate_upstream(
    ngx_http_tailgate_main_conf_t *tmcf, ngx_str_t *name);
static ngx_int_t ngx_http_tailgate_header_safe(ngx_str_t *value,
    ngx_uint_t allow_space);
static u_char *ngx_http_tailgate_keep(u_char *p, ngx_str_t *dst,
    ngx_str_t *src);
static void ngx_http_tailgate_cleanup(void *data);

static void *ngx_http_tailgate_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_tailgate_init_main_conf(ngx_conf_t *cf, void *conf);
static void *ngx_http_tailgate_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_tailgate_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static ngx_int_t ngx_http_tailgate_preconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_http_tailgate_init(ngx_conf_t *cf);
static ngx_int_t ngx_http_tailgate_check_fallbacks(ngx_conf_t *cf,
    ngx_http_tailgate_main_conf_t *tmcf);
static ngx_int_t ngx_http_tailgate_init_process(ngx_cycle_t *cycle);
static void ngx_http_tailgate_exit_process(ngx_cycle_t *cycle);

static char *ngx_http_tailgate_policyd(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_tailgate_keys(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_tailgate_lru_size(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_tailgate_private_upstream(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_tailgate_tags(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_tailgate_content(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_tailgate_fallback(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_tailgate_status(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_tailgate_status_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_tailgate_ask_status(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx);
static char *ngx_http_tailgate_buffer_bounds(ngx_conf_t *cf, void *post,
    void *data);


static ngx_str_t  ngx_http_tailgate_retry_after = ngx_string("retry-after");


static ngx_conf_num_bounds_t  ngx_http_tailgate_connections_bounds = {
    ngx_conf_check_num_bounds, 1, 64
};


static ngx_conf_post_t  ngx_http_tailgate_buffer_post = {
    ngx_http_tailgate_buffer_bounds
};


static ngx_conf_enum_t  ngx_http_tailgate_log_levels[] = {
    { ngx_string("info"), NGX_LOG_INFO },
    { ngx_string("notice"), NGX_LOG_NOTICE },
    { ngx_string("warn"), NGX_LOG_WARN },
    { ngx_string("error"), NGX_LOG_ERR },
    { ngx_null_string, 0 }
};


static ngx_command_t  ngx_http_tailgate_commands[] = {

    { ngx_string("tailgate"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_tailgate_loc_conf_t, enable),
      NULL },

    { ngx_string("tailgate_keys"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_tailgate_keys,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("tailgate_jwt_key"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE23,
      ngx_tailgate_jwt_key_directive,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("tailgate_jwt_issuer"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_tailgate_loc_conf_t, jwt_issuer),
      NULL },

    { ngx_string("tailgate_jwt_audience"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_tailgate_loc_conf_t, jwt_audience),
      NULL },

    { ngx_string("tailgate_jwt_leeway"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_tailgate_loc_conf_t, jwt_leeway),
      NULL },

    { ngx_string("tailgate_jwt_claims"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_tailgate_jwt_claims_directive,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("tailgate_jwt_cache"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_tailgate_lru_size,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_tailgate_main_conf_t, jwt_cache_size),
      NULL },

    { ngx_string("tailgate_cors_origins"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_tailgate_cors_directive,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("tailgate_policyd"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_tailgate_policyd,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("tailgate_policyd_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_tailgate_loc_conf_t, timeout),
      NULL },

    { ngx_string("tailgate_policyd_connections"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_tailgate_main_conf_t, connections),
      &ngx_http_tailgate_connections_bounds },

    { ngx_string("tailgate_policyd_buffer"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_tailgate_main_conf_t, buffer_size),
      &ngx_http_tailgate_buffer_post },

    { ngx_string("tailgate_decision_cache"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_tailgate_lru_size,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_tailgate_main_conf_t, cache_size),
      NULL },

    { ngx_string("tailgate_private_upstream"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_tailgate_private_upstream,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("tailgate_tags"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_tailgate_tags,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("tailgate_reject_log_level"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_tailgate_loc_conf_t, reject_log_level),
      &ngx_http_tailgate_log_levels },

    { ngx_string("tailgate_fallback"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_tailgate_fallback,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_tailgate_loc_conf_t, fallback),
      NULL },

    { ngx_string("tailgate_explain_headers"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_tailgate_loc_conf_t, explain),
      NULL },

    { ngx_string("tailgate_status"),
      NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_tailgate_status,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("tailgate_health"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_tailgate_content,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      ngx_tailgate_health_handler },

    { ngx_string("tailgate_error_page"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_tailgate_content,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      ngx_tailgate_error_page_handler },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_tailgate_module_ctx = {
    ngx_http_tailgate_preconfiguration,    /* preconfiguration */
    ngx_http_tailgate_init,                /* postconfiguration */

    ngx_http_tailgate_create_main_conf,    /* create main configuration */
    ngx_http_tailgate_init_main_conf,      /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_tailgate_create_loc_conf,     /* create location configuration */
    ngx_http_tailgate_merge_loc_conf       /* merge location configuration */
};


ngx_module_t  ngx_http_tailgate_module = {
    NGX_MODULE_V1,
    &ngx_http_tailgate_module_ctx,         /* module context */
    ngx_http_tailgate_commands,            /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_tailgate_init_process,        /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_tailgate_exit_process,        /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


/* paths after the base_url's "/v1/" */

ngx_tailgate_endpoint_t  ngx_tailgate_endpoints[] = {

    { ngx_string("chat/completions"), ngx_string("chat"),
      NGX_HTTP_POST, NGX_TAILGATE_BODY_JSON },

    { ngx_string("embeddings"), ngx_string("embeddings"),
      NGX_HTTP_POST, NGX_TAILGATE_BODY_JSON },

    { ngx_string("audio/speech"), ngx_string("speech"),
      NGX_HTTP_POST, NGX_TAILGATE_BODY_JSON },

    { ngx_string("audio/transcriptions"), ngx_string("transcriptions"),
      NGX_HTTP_POST, NGX_TAILGATE_BODY_MULTIPART },

    { ngx_string("responses"), ngx_string("responses"),
      NGX_HTTP_POST, NGX_TAILGATE_BODY_JSON },

    { ngx_string("models"), ngx_string("models"),
      NGX_HTTP_GET|NGX_HTTP_HEAD, NGX_TAILGATE_BODY_NONE },

    /* models/{id} */
    { ngx_string("models/"), ngx_string("models"),
      NGX_HTTP_GET|NGX_HTTP_HEAD, NGX_TAILGATE_BODY_NONE },

    { ngx_null_string, ngx_null_string, 0, 0 }
};


static ngx_int_t
ngx_http_tailgate_access_handler(ngx_http_request_t *r)
{
    ngx_int_t                      rc;
    const char                    *why;
    ngx_pool_cleanup_t            *cln;
    ngx_tailgate_auth_e            auth;
    ngx_http_tailgate_ctx_t       *ctx;
    ngx_tailgate_identity_t       *id;
    ngx_http_tailgate_loc_conf_t  *tlcf;

    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_tailgate_module);

    if (!tlcf->enable || r != r->main) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_tailgate_get_ctx(r);

    if (ctx) {
        /* back in a tailgate location after an internal redirect */
        return NGX_OK;
    }

    cln = ngx_pool_cleanup_add(r->pool, sizeof(ngx_http_tailgate_ctx_t));
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx = cln->data;
    ngx_memzero(ctx, sizeof(ngx_http_tailgate_ctx_t));

    ctx->request = r;

    /* where the client came in says what it may learn, wherever it goes */
    ctx->explain = tlcf->explain;

    cln->handler = ngx_http_tailgate_cleanup;
    ngx_http_set_ctx(r, ctx, ngx_http_tailgate_module);

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

    case NGX_TAILGATE_AUTH_MISSING:
        ngx_log_error(tlcf->reject_log_level, r->connection->log, 0,
                      "tailgate: no credential sent");

        return ngx_http_tailgate_unauthorized(r, NULL, "missing_api_key",
                   "You didn't provide an API key. Send it as "
                   "\"Authorization: Bearer KEY\" or \"X-Api-Key: KEY\".");

    case NGX_TAILGATE_AUTH_EXPIRED:
        ngx_log_error(tlcf->reject_log_level, r->connection->log, 0,
                      "tailgate: credential rejected: %s", why);

        return ngx_http_tailgate_unauthorized(r, "expired", "expired_api_key",
                   "The API key or token has expired.");

    case NGX_TAILGATE_AUTH_INVALID:
        ngx_log_error(tlcf->reject_log_level, r->connection->log, 0,
                      "tailgate: credential rejected: %s", why);

        return ngx_http_tailgate_unauthorized(r, "invalid", "invalid_api_key",
                   "Incorrect API key or token provided.");

    default:
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "tailgate: authentication failed: %s", why);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* tags only ever add restrictions: the location's, the client's */

    id = ctx->identity;

    if ((tlcf->tags
         && ngx_http_tailgate_add_tags(r, ctx, tlcf->tags->elts,
                                       tlcf->tags->nelts) != NGX_OK)
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
    u_char           *p, *end, *start;
    ngx_str_t        *tags;
    ngx_uint_t        i, n;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    tags = NULL;
    n = 0;

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len != sizeof("X-Tailgate-Tags") - 1
            || ngx_strncasecmp(h[i].key.data, (u_char *) "X-Tailgate-Tags",
                               sizeof("X-Tailgate-Tags") - 1) != 0)
        {
            continue;
        }

        p = h[i].value.data;
        end = p + h[i].value.len;

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
                           ngx_tailgate_send_error_text(r,
                               NGX_HTTP_BAD_REQUEST, "invalid_request_error",
                               "invalid_tags",
                               "X-Tailgate-Tags must list at most 16 tags "
                               "of 1-64 letters, digits and \"_-:.\", "
                               "separated by commas or spaces."));
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

    if (n && ngx_http_tailgate_add_tags(r, ctx, tags, n) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return NGX_OK;
}


/*
 * Tags only ever add restrictions: from the location, the client's
 * identity, the request.  The first set is shared, not copied.
 */

static ngx_int_t
ngx_http_tailgate_add_tags(ngx_http_request_t *r, ngx_http_tailgate_ctx_t *ctx,
    ngx_str_t *tags, ngx_uint_t n)
{
    ngx_str_t   *merged;
    ngx_uint_t   i, j;

    for (i = 0; i < n; i++) {
        if (tags[i].len == 7 && ngx_strncmp(tags[i].data, "private", 7) == 0) {
            ctx->private = 1;
        }
    }

    if (ctx->ntags == 0) {
        ctx->tags = tags;
        ctx->ntags = n;
        return NGX_OK;
    }

    merged = ngx_palloc(r->pool, (ctx->ntags + n) * sizeof(ngx_str_t));
    if (merged == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(merged, ctx->tags, ctx->ntags * sizeof(ngx_str_t));

    for (i = 0; i < n; i++) {
        for (j = 0; j < ctx->ntags; j++) {
            if (merged[j].len == tags[i].len
                && ngx_strncmp(merged[j].data, tags[i].data, tags[i].len)
                   == 0)
            {
                break;
            }
        }

        /* never dropped: up to 16 from each of three sources fit */

        if (j == ctx->ntags) {
            merged[ctx->ntags++] = tags[i];
        }
    }

    ctx->tags = merged;

    return NGX_OK;
}


static ngx_int_t
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

        if (r->internal && ctx->in_fallback) {
            return ngx_http_tailgate_retry(r, ctx);
        }

        return NGX_DECLINED;
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
 * A decision was applied: on to the content phase, proxy_pass.  A decision
 * that may be followed by another when the provider fails is proxied in
 * the fallback location instead, where nginx hands such failures back to
 * the module (proxy_intercept_errors, error_page) rather than to the
 * client.
 */

static ngx_int_t
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

    return NGX_DECLINED;
}


/*
 * The attempt failed before its response started (connect error, timeout,
 * 5xx or 429, intercepted by the fallback location).  It is reported at
 * once, so that its lease ends and policyd learns of the failure; then
 * policyd is asked again with the providers tried so far excluded - if
 * the route allows it for this failure - or the client learns what was
 * tried.
 */

static ngx_int_t
ngx_http_tailgate_retry(ngx_http_request_t *r, ngx_http_tailgate_ctx_t *ctx)
{
    ngx_uint_t               bit, status;
    ngx_msec_t               upstream_ms;
    const char              *outcome;
    ngx_tailgate_attempt_t  *a;

    outcome = ngx_tailgate_outcome(r, ctx, &upstream_ms, &status);

    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "tailgate: attempt %ui of route \"%V\" failed: provider "
                  "\"%V\" %s (%ui)", ctx->attempt, &ctx->route,
                  &ctx->provider, outcome, status);

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

    switch (outcome[0]) {
    case 'c': bit = (outcome[1] == 'o') ? TG_FALLBACK_CONNECT_ERROR : 0; break;
    case 't': bit = TG_FALLBACK_TIMEOUT; break;
    case 's': bit = (outcome[1] == 'e') ? TG_FALLBACK_5XX : 0; break;
    case 'r': bit = TG_FALLBACK_429; break;
    default:  bit = 0;
    }

    if (!(ctx->fallback & bit)) {
        return ngx_http_tailgate_finish(r,
                   ngx_http_tailgate_attempts_failed(r, ctx, 0));
    }

    /* the next decision must not come from, or go to, the cache */

    ctx->cache_key.len = 0;
    ctx->state = NGX_TAILGATE_NEW;

    return ngx_http_tailgate_ask(r, ctx);
}


/*
 * Nothing more will be tried.  After one attempt the client gets the
 * provider's failure as an OpenAI error of the same status; after a
 * fallback, 503 with every attempt listed.  Names of providers and
 * outcomes only: never an address, a key or a provider's own message.
 */

static ngx_int_t
ngx_http_tailgate_attempts_failed(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx, ngx_uint_t retried)
{
    u_char                  *p, *last;
    size_t                   size;
    ngx_str_t                message, type, code, retry;
    ngx_uint_t               i, n, status;
    ngx_table_elt_t         *h;
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

        if (ctx->explain) {
            p = ngx_slprintf(p, last, "%s %V (%s", i ? "," : ":",
                             &a[i].provider, a[i].outcome);
        } else {
            p = ngx_slprintf(p, last, "%s attempt %ui (%s", i ? "," : ":",
                             i + 1, a[i].outcome);
        }

        /* connect errors and timeouts have no status of the provider's */

        if (a[i].outcome[0] == 's' || a[i].outcome[0] == 'r') {
            p = ngx_slprintf(p, last, ", HTTP %ui", a[i].status);
        }

        p = ngx_slprintf(p, last, ")");
    }

    p = ngx_slprintf(p, last, ". Try again later.");
    message.len = p - message.data;

    a = &a[n - 1];

    ngx_str_set(&type, "server_error");

    if (n > 1 || retried) {
        status = NGX_HTTP_SERVICE_UNAVAILABLE;
        ngx_str_set(&code, "no_provider_available");

    } else if (a->outcome[0] == 'r') {
        status = NGX_HTTP_TOO_MANY_REQUESTS;
        ngx_str_set(&type, "rate_limit_error");
        ngx_str_set(&code, "provider_rate_limited");

    } else if (a->outcome[0] == 't') {
        status = NGX_HTTP_GATEWAY_TIME_OUT;
        ngx_str_set(&code, "provider_timeout");

    } else if (a->outcome[0] == 's' && a->status >= 500 && a->status <= 599) {
        status = a->status;
        ngx_str_set(&code, "provider_error");

    } else {
        status = NGX_HTTP_BAD_GATEWAY;
        ngx_str_set(&code, "provider_unreachable");
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

    return ngx_tailgate_send_error(r, status, &type, &code, &message);
}


/*
 * tailgate_status: what policyd knows of the providers and routes, for an
 * operator - a client whose key record or token has the admin role.
 */

static ngx_int_t
ngx_http_tailgate_ask_status(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx)
{
    ngx_int_t                      rc;
    ngx_str_t                      format, allow;
    ngx_tailgate_frame_t           f;
    ngx_http_tailgate_loc_conf_t  *tlcf;
    u_char                         buf[128];

    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_tailgate_module);

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        ngx_str_set(&allow, "GET, HEAD");

        if (ngx_tailgate_add_header(r, "Allow", &allow) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_tailgate_finish(r,
                   ngx_tailgate_send_error_text(r, NGX_HTTP_NOT_ALLOWED,
                       "invalid_request_error", "method_not_allowed",
                       "Use GET or HEAD for the gateway's status."));
    }

    if (!ctx->identity->admin) {
        ngx_log_error(tlcf->reject_log_level, r->connection->log, 0,
                      "tailgate: client \"%V\" asked for the status "
                      "without the admin role", &ctx->identity->client);

        return ngx_http_tailgate_finish(r,
                   ngx_tailgate_send_error_text(r, NGX_HTTP_FORBIDDEN,
                       "permission_error", "admin_required",
                       "The gateway's status is for operators: a key or "
                       "token with the admin role."));
    }

    rc = ngx_http_discard_request_body(r);

    if (rc != NGX_OK) {
        return rc;
    }

    ctx->status = 1;

    if (tlcf->status == NGX_TAILGATE_STATUS_PROMETHEUS) {
        ngx_str_set(&format, "prometheus");
    } else {
        ngx_str_set(&format, "json");
    }

    ngx_tailgate_frame_init(&f, buf, sizeof(buf), TG_MSG_STATUS);
    ngx_tailgate_frame_str(&f, TG_F_FORMAT, &format);

    return ngx_http_tailgate_call(r, ctx, &f, tlcf->timeout);
}


/* never reached: the precontent phase answers a status request */

static ngx_int_t
ngx_http_tailgate_status_handler(ngx_http_request_t *r)
{
    return NGX_HTTP_NOT_FOUND;
}


/*
 * Which endpoint: the part of the URI after the first "/v1/".  NGX_OK, or
 * NGX_DONE when the request got its error response.
 */

static ngx_int_t
ngx_http_tailgate_classify(ngx_http_request_t *r, ngx_http_tailgate_ctx_t *ctx)
{
    u_char                   *p, *end;
    ngx_str_t                 rest, message, type, code;
    ngx_tailgate_endpoint_t  *ep;
    u_char                    text[256];

    end = r->uri.data + r->uri.len;
    rest.len = 0;

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

            /* models/{id}: one non-empty path segment */

            if (rest.len > ep->path.len
                && ngx_strncmp(rest.data, ep->path.data, ep->path.len) == 0
                && ngx_strlchr(rest.data + ep->path.len, end, '/') == NULL)
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
        message.data = text;
        message.len = ngx_snprintf(text, sizeof(text), "Invalid URL (%V %V)",
                                   &r->method_name, &r->uri)
                      - text;

        ngx_str_set(&type, "invalid_request_error");
        ngx_str_set(&code, "unknown_url");

        return ngx_http_tailgate_finish(r,
                   ngx_tailgate_send_error(r, NGX_HTTP_NOT_FOUND, &type,
                                           &code, &message));
    }

    if (!(r->method & ep->method)) {
        message.data = text;
        message.len = ngx_snprintf(text, sizeof(text),
                                   "Method %V is not allowed for %V, use %s",
                                   &r->method_name, &r->uri,
                                   ep->method == NGX_HTTP_POST
                                   ? "POST" : "GET")
                      - text;

        ngx_str_set(&rest, "GET");

        if (ep->method == NGX_HTTP_POST) {
            ngx_str_set(&rest, "POST");
        }

        if (ngx_tailgate_add_header(r, "Allow", &rest) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_str_set(&type, "invalid_request_error");
        ngx_str_set(&code, "method_not_allowed");

        return ngx_http_tailgate_finish(r,
                   ngx_tailgate_send_error(r, NGX_HTTP_NOT_ALLOWED, &type,
                                           &code, &message));
    }

    ctx->endpoint = ep;

    return NGX_OK;
}


static void
ngx_http_tailgate_body_handler(ngx_http_request_t *r)
{
    ngx_int_t                 rc;
    const char               *error;
    ngx_http_tailgate_ctx_t  *ctx;

    ctx = ngx_http_tailgate_get_ctx(r);

    /* error_page and fallback send the same body again */
    r->preserve_body = 1;

    rc = ngx_tailgate_body_classify(r, ctx, &error);

    if (rc == NGX_DECLINED) {
        (void) ngx_http_tailgate_finish(r,
                   ngx_tailgate_send_error_text(r, NGX_HTTP_BAD_REQUEST,
                                                "invalid_request_error", NULL,
                                                error));
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


/*
 * The request got its response: finalize it with the output's result
 * (which may be NGX_AGAIN when the client is slow) and stop the phases.
 */

static ngx_int_t
ngx_http_tailgate_finish(ngx_http_request_t *r, ngx_int_t rc)
{
    ngx_http_tailgate_ctx_t  *ctx;

    ctx = ngx_http_tailgate_get_ctx(r);

    if (ctx) {
        ctx->state = NGX_TAILGATE_DONE;
    }

    ngx_http_finalize_request(r, rc);

    return NGX_DONE;
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

    type = (ctx->endpoint->body == NGX_TAILGATE_BODY_NONE)
           ? TG_MSG_MODELS : TG_MSG_DECIDE;

    if (ctx->facts.model.len > NGX_TAILGATE_MAX_ROUTE_NAME
        || ctx->endpoint_rest.len > NGX_TAILGATE_MAX_ROUTE_NAME)
    {
        return ngx_http_tailgate_finish(r,
                   ngx_http_tailgate_fail(r, NGX_HTTP_NOT_FOUND,
                                          "invalid_request_error",
                                          "model_not_found",
                                          "No matching route found."));
    }

    /*
     * Every fact a decision may depend on comes first: those bytes are the
     * cache key.  Body size and attempt follow; policyd bounds the body
     * size a cached decision is good for.
     */

    id = ctx->identity;

    /* a long allowlist, many tags: a larger frame than the usual few hundred */

    size = sizeof(buf) / 2 + ctx->facts.model.len + ctx->endpoint_rest.len;

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

    for (i = 0; i < ctx->ntags; i++) {
        ngx_tailgate_frame_str(&f, TG_F_TAG, &ctx->tags[i]);
    }

    for (i = 0; i < id->nroutes; i++) {
        ngx_tailgate_frame_str(&f, TG_F_ALLOW_ROUTE, &id->routes[i]);
    }

    if (type == TG_MSG_MODELS) {
        if (ctx->endpoint_rest.len) {
            ngx_tailgate_frame_str(&f, TG_F_MODEL, &ctx->endpoint_rest);
        }

        return ngx_http_tailgate_call(r, ctx, &f, tlcf->timeout);
    }

    ngx_tailgate_frame_str(&f, TG_F_ENDPOINT, &ctx->endpoint->name);
    ngx_tailgate_frame_str(&f, TG_F_MODEL, &ctx->facts.model);
    ngx_tailgate_frame_u8(&f, TG_F_STREAM, ctx->facts.stream);
    ngx_tailgate_frame_u8(&f, TG_F_TOOLS, ctx->facts.tools);

    key = frame + TG_FRAME_HEADER_SIZE;
    key_len = f.pos - key;

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
        return ngx_http_tailgate_call(r, ctx, &f, tlcf->timeout);
    }

    cached = ngx_tailgate_cache_get(key, key_len, ctx->body_len);

    if (cached) {
        ctx->decide_start = ngx_current_msec;
        ctx->decide_time = 0;

        rc = ngx_http_tailgate_apply(r, ctx, cached);

        if (rc != NGX_DECLINED) {
            return ngx_http_tailgate_finish(r, rc);
        }

        ctx->from_cache = 1;

        return NGX_DECLINED;
    }

    /* remembered to cache the answer */

    ctx->cache_key.data = ngx_pnalloc(r->pool, key_len);
    if (ctx->cache_key.data == NULL) {
        return ngx_http_tailgate_finish(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
    }

    ngx_memcpy(ctx->cache_key.data, key, key_len);
    ctx->cache_key.len = key_len;

    return ngx_http_tailgate_call(r, ctx, &f, tlcf->timeout);
}


static ngx_int_t
ngx_http_tailgate_call(ngx_http_request_t *r, ngx_http_tailgate_ctx_t *ctx,
    ngx_tailgate_frame_t *f, ngx_msec_t timeout)
{
    ngx_int_t  rc;

    /* only requests that ask need the call's timer and tree node */

    if (ctx->call == NULL) {
        ctx->call = ngx_pcalloc(r->pool, sizeof(ngx_tailgate_call_t));
        if (ctx->call == NULL) {
            return ngx_http_tailgate_finish(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        }
    }

    ctx->call->handler = ngx_http_tailgate_answered;
    ctx->call->part = ctx->status ? ngx_http_tailgate_status_part : NULL;
    ctx->call->data = ctx;

    rc = ngx_tailgate_call(ctx->call, f, timeout, r->connection->log);

    if (rc == NGX_ERROR) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "tailgate: the request's facts do not fit in a frame");
        return ngx_http_tailgate_finish(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
    }

    if (rc != NGX_OK) {
        return ngx_http_tailgate_finish(r,
                   ngx_http_tailgate_fail(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                          "server_error",
                                          "policy_unavailable",
                                          "The gateway's policy service is "
                                          "unavailable. Try again later."));
    }

    ctx->state = NGX_TAILGATE_WAITING;
    ctx->decide_start = ngx_current_msec;

    /* notice a client that goes away while we wait */
    r->read_event_handler = ngx_http_test_reading;
    r->write_event_handler = ngx_http_request_empty_handler;

    return NGX_AGAIN;
}


/* a status larger than one frame: its parts are kept until the reply */

static void
ngx_http_tailgate_status_part(ngx_tailgate_call_t *call,
    ngx_tailgate_reply_t *reply)
{
    ngx_str_t                *part;
    ngx_http_request_t       *r;
    ngx_http_tailgate_ctx_t  *ctx;

    ctx = call->data;
    r = ctx->request;

    if (ctx->status_lost) {
        return;
    }

    if (ctx->status_parts == NULL) {
        ctx->status_parts = ngx_array_create(r->pool, 4, sizeof(ngx_str_t));
        if (ctx->status_parts == NULL) {
            ctx->status_lost = 1;
            return;
        }
    }

    part = ngx_array_push(ctx->status_parts);
    if (part == NULL) {
        ctx->status_lost = 1;
        return;
    }

    part->data = ngx_pnalloc(r->pool, reply->body.len);
    if (part->data == NULL) {
        ctx->status_lost = 1;
        return;
    }

    part->len = ngx_cpymem(part->data, reply->body.data, reply->body.len)
                - part->data;
}


static ngx_int_t
ngx_http_tailgate_status_send(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx, ngx_tailgate_reply_t *reply)
{
    u_char                        *body, *p;
    size_t                         len;
    ngx_str_t                      type, code, *part;
    ngx_uint_t                     i;
    const char                    *content_type;
    ngx_http_tailgate_loc_conf_t  *tlcf;

    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_tailgate_module);

    if (reply->type != TG_MSG_STATUS_REPLY || reply->status != NGX_HTTP_OK) {
        /* too large even in parts: policyd says where to look */

        ngx_str_set(&type, "server_error");
        ngx_str_set(&code, "status_too_large");

        if (reply->error_message.len == 0) {
            ngx_str_set(&reply->error_message,
                        "policyd could not give the status.");
        }

        return ngx_tailgate_send_error(r, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                       &type, &code, &reply->error_message);
    }

    if (ctx->status_lost) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    len = reply->body.len;
    part = ctx->status_parts ? ctx->status_parts->elts : NULL;

    for (i = 0; part && i < ctx->status_parts->nelts; i++) {
        len += part[i].len;
    }

    body = ngx_pnalloc(r->pool, len);
    if (body == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = body;

    for (i = 0; part && i < ctx->status_parts->nelts; i++) {
        p = ngx_cpymem(p, part[i].data, part[i].len);
    }

    ngx_memcpy(p, reply->body.data, reply->body.len);

    content_type = (tlcf->status == NGX_TAILGATE_STATUS_PROMETHEUS)
                   ? "text/plain; version=0.0.4" : "application/json";

    return ngx_tailgate_send_body(r, NGX_HTTP_OK, body, len, content_type);
}


static void
ngx_http_tailgate_answered(ngx_tailgate_call_t *call,
    ngx_tailgate_call_result_e result, ngx_tailgate_reply_t *reply)
{
    ngx_int_t                 rc;
    ngx_connection_t         *c;
    ngx_http_request_t       *r;
    ngx_http_tailgate_ctx_t  *ctx;

    ctx = call->data;
    r = ctx->request;
    c = r->connection;

    ctx->decide_time = ngx_current_msec - ctx->decide_start;
    r->read_event_handler = ngx_http_block_reading;

    if (result != NGX_TAILGATE_CALL_OK) {
        rc = ngx_http_tailgate_fail(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                    "server_error", "policy_unavailable",
                                    "The gateway's policy service is "
                                    "unavailable. Try again later.");

    } else if (ctx->status) {
        rc = ngx_http_tailgate_status_send(r, ctx, reply);

    } else if (ctx->endpoint->body == NGX_TAILGATE_BODY_NONE) {
        rc = (reply->status == NGX_HTTP_OK)
             ? ngx_tailgate_send_json(r, NGX_HTTP_OK, &reply->body)
             : ngx_http_tailgate_refuse(r, reply);

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

    } else {
        (void) ngx_http_tailgate_finish(r, rc);
    }

    ngx_http_run_posted_requests(c);
}


/*
 * Takes a DECISION for this request: checks it against nginx's own
 * configuration, keeps it in the context for the $tailgate_* variables and
 * rewrites the body's model.  NGX_DECLINED to go on and proxy, like a
 * phase handler; anything else is the request's final status.
 */

static ngx_int_t
ngx_http_tailgate_apply(ngx_http_request_t *r, ngx_http_tailgate_ctx_t *ctx,
    ngx_tailgate_reply_t *reply)
{
    u_char                   *p;
    ngx_str_t                 adjust;
    ngx_uint_t                renamed;
    ngx_tailgate_upstream_t  *up;

    if (reply->status != NGX_HTTP_OK) {
        return ngx_http_tailgate_refuse(r, reply);
    }

    ctx->attempt++;

    up = reply->checked;

    if (up == NULL) {
        up = ngx_http_tailgate_check(r, reply);

        if (up == NULL) {
            ngx_tailgate_report_unused(r, &reply->provider, &reply->route,
                                       reply->lease);

            return ngx_http_tailgate_fail(r, NGX_HTTP_BAD_GATEWAY,
                                          "server_error", "invalid_route",
                                          "The gateway's route for this "
                                          "model is misconfigured.");
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

        ngx_tailgate_report_unused(r, &reply->provider, &reply->route,
                                   reply->lease);

        return ngx_http_tailgate_fail(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                      "server_error", "privacy_violation",
                                      "The gateway refused to send this "
                                      "private request to a provider that "
                                      "is not private.");
    }

    /* the decision is used: its lease is this request's to give back */

    ctx->lease = reply->lease;
    ctx->reported = 0;
    ctx->fallback = reply->fallback;

    /* the reply lives in a read buffer or the cache: keep a copy */

    p = ngx_pnalloc(r->pool, reply->provider.len + reply->route.len
                             + reply->upstream.len + reply->host.len
                             + reply->provider_model.len
                             + reply->authorization.len + reply->reason.len
                             + reply->zone.len + reply->adjust.len
                             + reply->scheme.len + sizeof("://") - 1
                             + reply->upstream.len + reply->path.len);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_http_tailgate_keep(p, &ctx->provider, &reply->provider);
    p = ngx_http_tailgate_keep(p, &ctx->route, &reply->route);
    p = ngx_http_tailgate_keep(p, &ctx->upstream_name, &reply->upstream);
    p = ngx_http_tailgate_keep(p, &ctx->upstream_host, &reply->host);
    p = ngx_http_tailgate_keep(p, &ctx->provider_model,
                               &reply->provider_model);
    p = ngx_http_tailgate_keep(p, &ctx->authorization, &reply->authorization);
    p = ngx_http_tailgate_keep(p, &ctx->reason, &reply->reason);
    p = ngx_http_tailgate_keep(p, &ctx->zone, &reply->zone);
    p = ngx_http_tailgate_keep(p, &adjust, &reply->adjust);

    ctx->upstream_url.data = p;
    p = ngx_cpymem(p, reply->scheme.data, reply->scheme.len);
    p = ngx_cpymem(p, "://", sizeof("://") - 1);
    p = ngx_cpymem(p, reply->upstream.data, reply->upstream.len);
    p = ngx_cpymem(p, reply->path.data, reply->path.len);
    ctx->upstream_url.len = p - ctx->upstream_url.data;

    if (ctx->upstream_host.len == 0) {
        ctx->upstream_host = ctx->upstream_name;
    }

    /*
     * The body for this provider: its model name, its edits.  A fallback
     * starts again from the client's body.
     */

    renamed = ctx->provider_model.len != ctx->facts.model.len
              || ngx_strncmp(ctx->provider_model.data, ctx->facts.model.data,
                             ctx->facts.model.len) != 0;

    ngx_tailgate_body_restore(r, ctx);

    if (adjust.len && ctx->endpoint->body == NGX_TAILGATE_BODY_JSON) {
        if (ngx_tailgate_body_adjust(r, ctx,
                                     renamed ? &ctx->provider_model : NULL,
                                     &adjust)
            != NGX_OK)
        {
            return ngx_http_tailgate_fail(r, NGX_HTTP_BAD_GATEWAY,
                                          "server_error", "invalid_route",
                                          "The gateway's route for this "
                                          "model is misconfigured.");
        }

    } else if (renamed
               && ngx_tailgate_body_rewrite_model(r, ctx,
                                                  &ctx->provider_model)
                  != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_log_debug4(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "tailgate: route \"%V\" -> provider \"%V\" \"%V\" (%V)",
                   &ctx->route, &ctx->provider, &ctx->upstream_url,
                   &ctx->reason);

    return NGX_DECLINED;
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

    if (reply->error_type.len == 0) {
        ngx_str_set(&reply->error_type, "server_error");
    }

    if (reply->error_message.len == 0) {
        ngx_str_set(&reply->error_message, "The request was refused.");
    }

    return ngx_tailgate_send_error(r, status, &reply->error_type,
                                   &reply->error_code, &reply->error_message);
}


/* an error of the gateway's own; 503s say when to come back */

static ngx_int_t
ngx_http_tailgate_fail(ngx_http_request_t *r, ngx_uint_t status,
    const char *type, const char *code, const char *message)
{
    ngx_str_t  retry;

    if (status == NGX_HTTP_SERVICE_UNAVAILABLE) {
        ngx_str_set(&retry, "1");

        if (ngx_tailgate_add_header(r, "Retry-After", &retry) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    return ngx_tailgate_send_error_text(r, status, type, code, message);
}


/* RFC 6750: the challenge says "invalid_token", and no more than that */

static ngx_int_t
ngx_http_tailgate_unauthorized(ngx_http_request_t *r, const char *why,
    const char *code, const char *message)
{
    ngx_str_t  challenge;

    if (why == NULL) {
        ngx_str_set(&challenge, "Bearer realm=\"tailgate\"");

    } else if (why[0] == 'e') {
        ngx_str_set(&challenge, "Bearer realm=\"tailgate\", "
                    "error=\"invalid_token\", error_description=\"expired\"");

    } else {
        ngx_str_set(&challenge, "Bearer realm=\"tailgate\", "
                    "error=\"invalid_token\"");
    }

    if (ngx_tailgate_add_header(r, "WWW-Authenticate", &challenge)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_tailgate_finish(r,
               ngx_http_tailgate_fail(r, NGX_HTTP_UNAUTHORIZED,
                                      "invalid_request_error", code,
                                      message));
}


static ngx_int_t
ngx_http_tailgate_log_handler(ngx_http_request_t *r)
{
    ngx_http_tailgate_ctx_t  *ctx;

    ctx = ngx_http_tailgate_get_ctx(r);

    if (ctx == NULL) {
        return NGX_OK;
    }

    return ngx_tailgate_report(r, ctx);
}


ngx_http_tailgate_ctx_t *
ngx_http_tailgate_get_ctx(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t       *cln;
    ngx_http_tailgate_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_tailgate_module);

    if (ctx || !(r->internal || r->filter_finalize)) {
        return ctx;
    }

    /*
     * an internal redirect (error_page, a named location) cleared the
     * module contexts; ours lives on as the data of its pool cleanup
     */

    for (cln = r->pool->cleanup; cln; cln = cln->next) {
        if (cln->handler == ngx_http_tailgate_cleanup) {
            ctx = cln->data;

            if (ctx->request == r) {
                ngx_http_set_ctx(r, ctx, ngx_http_tailgate_module);
                return ctx;
            }
        }
    }

    return NULL;
}


static void
ngx_http_tailgate_cleanup(void *data)
{
    ngx_http_tailgate_ctx_t  *ctx = data;

    /* a late answer finds no call and gives its lease back */

    if (ctx->call) {
        ngx_tailgate_call_cancel(ctx->call);
    }
}


static ngx_tailgate_upstream_t *
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


static void *
ngx_http_tailgate_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_tailgate_main_conf_t  *tmcf;

    tmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_tailgate_main_conf_t));
    if (tmcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     tmcf->socket = { 0, NULL };
     *     tmcf->addr = NULL;
     *     tmcf->private_names = NULL;
     *     tmcf->enabled = 0;
     */

    tmcf->connections = NGX_CONF_UNSET_UINT;
    tmcf->buffer_size = NGX_CONF_UNSET_SIZE;
    tmcf->cache_size = NGX_CONF_UNSET_UINT;
    tmcf->jwt_cache_size = NGX_CONF_UNSET_UINT;

    if (ngx_array_init(&tmcf->keys, cf->pool, 4,
                       sizeof(ngx_tailgate_keys_t *))
        != NGX_OK
        || ngx_array_init(&tmcf->upstreams, cf->pool, 8,
                          sizeof(ngx_tailgate_upstream_t))
           != NGX_OK)
    {
        return NULL;
    }

    return tmcf;
}


static char *
ngx_http_tailgate_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_tailgate_main_conf_t  *tmcf = conf;

    ngx_conf_init_uint_value(tmcf->connections, 2);
    ngx_conf_init_size_value(tmcf->buffer_size, TG_MAX_FRAME_MIN);
    ngx_conf_init_uint_value(tmcf->cache_size, 1024);
    ngx_conf_init_uint_value(tmcf->jwt_cache_size, 4096);

    return NGX_CONF_OK;
}


static void *
ngx_http_tailgate_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_tailgate_loc_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_http_tailgate_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     conf->tags = NULL;
     *     conf->jwt_issuer = { 0, NULL };
     *     conf->jwt_audience = { 0, NULL };
     *     conf->fallback = { 0, NULL };
     */

    conf->enable = NGX_CONF_UNSET;
    conf->timeout = NGX_CONF_UNSET_MSEC;
    conf->keys = NGX_CONF_UNSET_PTR;
    conf->reject_log_level = NGX_CONF_UNSET_UINT;
    conf->jwt_keys = NGX_CONF_UNSET_PTR;
    conf->jwt_leeway = NGX_CONF_UNSET;
    conf->jwt_claims = NGX_CONF_UNSET_PTR;
    conf->cors_origins = NGX_CONF_UNSET_PTR;
    conf->explain = NGX_CONF_UNSET;

    return conf;
}


static char *
ngx_http_tailgate_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_tailgate_loc_conf_t *prev = parent;
    ngx_http_tailgate_loc_conf_t *conf = child;

    ngx_uint_t                      i, j;
    ngx_str_t                      *tag, *ptag, *t;
    ngx_array_t                    *tags;
    ngx_http_tailgate_main_conf_t  *tmcf;

    ngx_conf_merge_value(conf->enable, prev->enable, 0);
    ngx_conf_merge_msec_value(conf->timeout, prev->timeout, 1000);
    ngx_conf_merge_ptr_value(conf->keys, prev->keys, NULL);
    ngx_conf_merge_uint_value(conf->reject_log_level, prev->reject_log_level,
                              NGX_LOG_INFO);

    ngx_conf_merge_ptr_value(conf->jwt_keys, prev->jwt_keys, NULL);
    ngx_conf_merge_str_value(conf->jwt_issuer, prev->jwt_issuer, "");
    ngx_conf_merge_str_value(conf->jwt_audience, prev->jwt_audience, "");
    ngx_conf_merge_sec_value(conf->jwt_leeway, prev->jwt_leeway, 30);
    ngx_conf_merge_ptr_value(conf->cors_origins, prev->cors_origins, NULL);
    ngx_conf_merge_ptr_value(conf->jwt_claims, prev->jwt_claims, NULL);
    ngx_conf_merge_str_value(conf->fallback, prev->fallback, "");
    ngx_conf_merge_value(conf->explain, prev->explain, 1);

    if (conf->jwt_claims == NULL) {
        conf->jwt_claims = ngx_pcalloc(cf->pool,
                                       sizeof(ngx_tailgate_jwt_claims_t));
        if (conf->jwt_claims == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_str_set(&conf->jwt_claims->client, "sub");
    }

    /* a location adds to the tags it inherits, it cannot drop any */

    if (conf->tags == NULL) {
        conf->tags = prev->tags;

    } else if (prev->tags) {
        tags = ngx_array_create(cf->pool, prev->tags->nelts
                                          + conf->tags->nelts,
                                sizeof(ngx_str_t));
        if (tags == NULL) {
            return NGX_CONF_ERROR;
        }

        ptag = prev->tags->elts;

        for (i = 0; i < prev->tags->nelts; i++) {
            t = ngx_array_push(tags);
            if (t == NULL) {
                return NGX_CONF_ERROR;
            }

            *t = ptag[i];
        }

        tag = conf->tags->elts;

        for (i = 0; i < conf->tags->nelts; i++) {
            for (j = 0; j < prev->tags->nelts; j++) {
                if (ptag[j].len == tag[i].len
                    && ngx_strncmp(ptag[j].data, tag[i].data, tag[i].len)
                       == 0)
                {
                    break;
                }
            }

            if (j < prev->tags->nelts) {
                continue;
            }

            t = ngx_array_push(tags);
            if (t == NULL) {
                return NGX_CONF_ERROR;
            }

            *t = tag[i];
        }

        conf->tags = tags;
    }

    if (conf->tags && conf->tags->nelts > NGX_TAILGATE_MAX_TAGS) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "more than %d tailgate_tags apply here",
                           NGX_TAILGATE_MAX_TAGS);
        return NGX_CONF_ERROR;
    }

    if (conf->enable) {
        tmcf = ngx_http_conf_get_module_main_conf(cf,
                                                  ngx_http_tailgate_module);
        tmcf->enabled = 1;

        if (conf->keys == NULL && conf->jwt_keys == NULL) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"tailgate on\" needs \"tailgate_keys\" or "
                               "\"tailgate_jwt_key\"");
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_tailgate_preconfiguration(ngx_conf_t *cf)
{
    return ngx_tailgate_add_variables(cf);
}


static ngx_int_t
ngx_http_tailgate_init(ngx_conf_t *cf)
{
    ngx_uint_t                       i;
    ngx_str_t                       *name;
    ngx_http_handler_pt             *h;
    ngx_tailgate_upstream_t         *up;
    ngx_http_core_main_conf_t       *cmcf;
    ngx_http_upstream_srv_conf_t   **uscf;
    ngx_http_upstream_main_conf_t   *umcf;
    ngx_http_tailgate_main_conf_t   *tmcf;

    tmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_tailgate_module);
    umcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_upstream_module);

    /* the upstream{} blocks policyd may choose, and which are private */

    uscf = umcf->upstreams.elts;

    for (i = 0; i < umcf->upstreams.nelts; i++) {

        if (!(uscf[i]->flags & NGX_HTTP_UPSTREAM_CREATE)) {
            continue;
        }

        up = ngx_array_push(&tmcf->upstreams);
        if (up == NULL) {
            return NGX_ERROR;
        }

        up->name = uscf[i]->host;
        up->private = 0;
    }

    if (tmcf->private_names) {
        name = tmcf->private_names->elts;

        for (i = 0; i < tmcf->private_names->nelts; i++) {
            up = ngx_http_tailgate_upstream(tmcf, &name[i]);

            if (up == NULL) {
                ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                              "tailgate_private_upstream \"%V\" names no "
                              "upstream{} block", &name[i]);
                return NGX_ERROR;
            }

            up->private = 1;
        }
    }

    if (!tmcf->enabled) {
        return NGX_OK;
    }

    if (ngx_http_tailgate_check_fallbacks(cf, tmcf) != NGX_OK) {
        return NGX_ERROR;
    }

    if (tmcf->addr == NULL) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"tailgate on\" needs \"tailgate_policyd\"");
        return NGX_ERROR;
    }

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_ACCESS_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_tailgate_access_handler;

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_PRECONTENT_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_tailgate_precontent_handler;

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_LOG_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_tailgate_log_handler;

    return ngx_tailgate_filter_init(cf);
}


/* every tailgate_fallback names a location some server{} has */

static ngx_int_t
ngx_http_tailgate_check_fallbacks(ngx_conf_t *cf,
    ngx_http_tailgate_main_conf_t *tmcf)
{
    ngx_str_t                   *name;
    ngx_uint_t                   i, s;
    ngx_http_core_srv_conf_t   **cscf;
    ngx_http_core_loc_conf_t   **clcf;
    ngx_http_core_main_conf_t   *cmcf;

    if (tmcf->fallbacks == NULL) {
        return NGX_OK;
    }

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);
    cscf = cmcf->servers.elts;
    name = tmcf->fallbacks->elts;

    for (i = 0; i < tmcf->fallbacks->nelts; i++) {

        for (s = 0; s < cmcf->servers.nelts; s++) {
            for (clcf = cscf[s]->named_locations; clcf && *clcf; clcf++) {
                if ((*clcf)->name.len == name[i].len
                    && ngx_strncmp((*clcf)->name.data, name[i].data,
                                   name[i].len) == 0)
                {
                    goto found;
                }
            }
        }

        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "tailgate_fallback \"%V\": no such named location "
                      "(conf/tailgate/locations.conf defines "
                      "@tailgate_fallback)", &name[i]);
        return NGX_ERROR;

    found:

        continue;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_tailgate_init_process(ngx_cycle_t *cycle)
{
    ngx_http_conf_ctx_t            *ctx;
    ngx_http_tailgate_main_conf_t  *tmcf;

    ctx = (ngx_http_conf_ctx_t *) ngx_get_conf(cycle->conf_ctx,
                                               ngx_http_module);
    if (ctx == NULL) {
        return NGX_OK;
    }

    tmcf = ctx->main_conf[ngx_http_tailgate_module.ctx_index];

    if (!tmcf->enabled) {
        return NGX_OK;
    }

    if (ngx_tailgate_auth_init_worker(cycle) != NGX_OK
        || ngx_tailgate_cache_init(cycle, tmcf->cache_size) != NGX_OK
        || ngx_tailgate_jwt_init_worker(cycle, tmcf->jwt_cache_size)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_tailgate_report_init_worker(cycle);

    return ngx_tailgate_policyd_init_worker(cycle, tmcf);
}


static void
ngx_http_tailgate_exit_process(ngx_cycle_t *cycle)
{
    ngx_tailgate_policyd_exit_worker();
    ngx_tailgate_jwt_exit_worker();
    ngx_tailgate_auth_exit_worker();
}


static char *
ngx_http_tailgate_policyd(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_tailgate_main_conf_t *tmcf = conf;

    ngx_str_t  *value;
    ngx_url_t   u;

    if (tmcf->addr) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len < sizeof("unix:/") - 1
        || ngx_strncmp(value[1].data, "unix:", sizeof("unix:") - 1) != 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" is not a \"unix:/path\" socket",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&u, sizeof(ngx_url_t));

    u.url = value[1];
    u.no_resolve = 1;

    if (ngx_parse_url(cf->pool, &u) != NGX_OK) {
        if (u.err) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "%s in \"%V\"",
                               u.err, &u.url);
        }

        return NGX_CONF_ERROR;
    }

    tmcf->socket = value[1];
    tmcf->addr = &u.addrs[0];

    return NGX_CONF_OK;
}


static char *
ngx_http_tailgate_keys(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_tailgate_loc_conf_t *tlcf = conf;

    ngx_str_t  *value;

    if (tlcf->keys != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len == 3 && ngx_strncmp(value[1].data, "off", 3) == 0) {
        tlcf->keys = NULL;
        return NGX_CONF_OK;
    }

    if (ngx_conf_full_name(cf->cycle, &value[1], 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return ngx_tailgate_keys_load(cf, &value[1], &tlcf->keys);
}


/* tailgate_decision_cache, tailgate_jwt_cache: a number of entries or off */

static char *
ngx_http_tailgate_lru_size(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_uint_t  *np = (ngx_uint_t *) ((char *) conf + cmd->offset);

    ngx_str_t  *value;
    ngx_int_t   n;

    if (*np != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len == 3 && ngx_strncmp(value[1].data, "off", 3) == 0) {
        *np = 0;
        return NGX_CONF_OK;
    }

    n = ngx_atoi(value[1].data, value[1].len);

    if (n == NGX_ERROR || n < 1 || n > 1048576) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid number of entries \"%V\", expected "
                           "1-1048576 or \"off\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    *np = n;

    return NGX_CONF_OK;
}


static char *
ngx_http_tailgate_private_upstream(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_tailgate_main_conf_t *tmcf = conf;

    ngx_str_t   *value, *name;
    ngx_uint_t   i;

    if (tmcf->private_names == NULL) {
        tmcf->private_names = ngx_array_create(cf->pool, 4, sizeof(ngx_str_t));
        if (tmcf->private_names == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {
        name = ngx_array_push(tmcf->private_names);
        if (name == NULL) {
            return NGX_CONF_ERROR;
        }

        *name = value[i];
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_tailgate_tags(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_tailgate_loc_conf_t *tlcf = conf;

    u_char      *p;
    ngx_str_t   *value, *tag;
    ngx_uint_t   i;

    if (tlcf->tags) {
        return "is duplicate";
    }

    tlcf->tags = ngx_array_create(cf->pool, cf->args->nelts - 1,
                                  sizeof(ngx_str_t));
    if (tlcf->tags == NULL) {
        return NGX_CONF_ERROR;
    }

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {

        if (value[i].len == 0 || value[i].len > NGX_TAILGATE_MAX_TAG) {
            goto invalid;
        }

        for (p = value[i].data; p < value[i].data + value[i].len; p++) {
            if (!(ngx_tailgate_is_name_char(*p) || *p == ':'))
            {
                goto invalid;
            }
        }

        tag = ngx_array_push(tlcf->tags);
        if (tag == NULL) {
            return NGX_CONF_ERROR;
        }

        *tag = value[i];
        ngx_strlow(tag->data, tag->data, tag->len);
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid tag \"%V\": expected 1-%d letters, digits "
                       "and \"_-:.\"", &value[i], NGX_TAILGATE_MAX_TAG);
    return NGX_CONF_ERROR;
}


static char *
ngx_http_tailgate_content(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_tailgate_loc_conf_t *tlcf = conf;

    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->handler) {
        return "is duplicate";
    }

    clcf->handler = (ngx_http_handler_pt) cmd->post;

    /*
     * /health and the error page answer without credentials, even where
     * "tailgate on" is inherited from the server
     */

    if (tlcf->enable == NGX_CONF_UNSET) {
        tlcf->enable = 0;
    }

    return NGX_CONF_OK;
}


/* tailgate_fallback @name | off */

static char *
ngx_http_tailgate_fallback(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_tailgate_loc_conf_t *tlcf = conf;

    ngx_str_t                      *value, *name;
    ngx_http_tailgate_main_conf_t  *tmcf;

    if (tlcf->fallback.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len == 3 && ngx_strncmp(value[1].data, "off", 3) == 0) {
        ngx_str_set(&tlcf->fallback, "");
        return NGX_CONF_OK;
    }

    if (value[1].len < 2 || value[1].data[0] != '@') {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" is not a named location (\"@name\") or "
                           "\"off\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    tlcf->fallback = value[1];

    /* whether it exists is known once every server{} is read */

    tmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_tailgate_module);

    if (tmcf->fallbacks == NULL) {
        tmcf->fallbacks = ngx_array_create(cf->pool, 2, sizeof(ngx_str_t));
        if (tmcf->fallbacks == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    name = ngx_array_push(tmcf->fallbacks);
    if (name == NULL) {
        return NGX_CONF_ERROR;
    }

    *name = value[1];

    return NGX_CONF_OK;
}


/* tailgate_status json | prometheus */

static char *
ngx_http_tailgate_status(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_tailgate_loc_conf_t *tlcf = conf;

    ngx_str_t                 *value;
    ngx_http_core_loc_conf_t  *clcf;

    if (tlcf->status) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len == 4 && ngx_strncmp(value[1].data, "json", 4) == 0) {
        tlcf->status = NGX_TAILGATE_STATUS_JSON;

    } else if (value[1].len == 10
               && ngx_strncmp(value[1].data, "prometheus", 10) == 0)
    {
        tlcf->status = NGX_TAILGATE_STATUS_PROMETHEUS;

    } else {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid format \"%V\", expected \"json\" or "
                           "\"prometheus\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->handler) {
        return "is duplicate";
    }

    clcf->handler = ngx_http_tailgate_status_handler;

    /* operators authenticate like clients: the admin role decides */

    if (tlcf->enable == NGX_CONF_UNSET) {
        tlcf->enable = 1;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_tailgate_buffer_bounds(ngx_conf_t *cf, void *post, void *data)
{
    size_t  *sp = data;

    if (*sp < TG_MAX_FRAME_MIN || *sp > TG_MAX_FRAME_LIMIT) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "must be between %d and %d bytes",
                           TG_MAX_FRAME_MIN, TG_MAX_FRAME_LIMIT);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}
