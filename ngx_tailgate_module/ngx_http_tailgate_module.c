
/*
 * Copyright (C) The Tailgate authors
 *
 * ngx_http_tailgate_module: an OpenAI-compatible gateway inside nginx.
 * This file is its tables, its configuration and its directives; each
 * phase has a file of its own:
 *
 *   ACCESS      who is asking (ngx_tailgate_access.c)
 *   PRECONTENT  read the body, classify it, ask policyd where it goes, and
 *               fall back when a provider fails (ngx_tailgate_decide.c,
 *               ngx_tailgate_fallback.c, ngx_tailgate_status.c);
 *               proxy_pass $tailgate_upstream_url moves the bytes
 *   CONTENT     /health and the error page (ngx_tailgate_content.c)
 *   LOG         report the outcome to policyd, which ends the lease
 *               (ngx_tailgate_report.c)
 */


#include "ngx_tailgate_common.h"
#include "ngx_tailgate_cache.h"
#include "ngx_tailgate_dpop.h"
#include "ngx_tailgate_names.h"


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
static char *ngx_http_tailgate_buffer_bounds(ngx_conf_t *cf, void *post,
    void *data);


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


static ngx_conf_enum_t  ngx_http_tailgate_dpop_modes[] = {
    { ngx_string("off"), NGX_TAILGATE_DPOP_OFF },
    { ngx_string("on"), NGX_TAILGATE_DPOP_ON },
    { ngx_string("required"), NGX_TAILGATE_DPOP_REQUIRED },
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

    { ngx_string("tailgate_jwt_jwks"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE123,
      ngx_tailgate_jwks_directive,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("tailgate_jwt_cache"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_tailgate_lru_size,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_tailgate_main_conf_t, jwt_cache_size),
      NULL },

    { ngx_string("tailgate_dpop"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_tailgate_loc_conf_t, dpop),
      &ngx_http_tailgate_dpop_modes },

    { ngx_string("tailgate_dpop_window"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_tailgate_loc_conf_t, dpop_window),
      NULL },

    { ngx_string("tailgate_dpop_public_url"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_tailgate_dpop_public_url,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("tailgate_dpop_replay_cache"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_tailgate_main_conf_t, dpop_replay_size),
      NULL },

    { ngx_string("tailgate_trusted_network"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_2MORE,
      ngx_tailgate_trusted_directive,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
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
      offsetof(ngx_http_tailgate_main_conf_t, policyd.connections),
      &ngx_http_tailgate_connections_bounds },

    { ngx_string("tailgate_policyd_buffer"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_tailgate_main_conf_t, policyd.buffer_size),
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
     *     tmcf->policyd.socket = { 0, NULL };
     *     tmcf->policyd.addr = NULL;
     *     tmcf->private_names = NULL;
     *     tmcf->enabled = 0;
     */

    tmcf->policyd.connections = NGX_CONF_UNSET_UINT;
    tmcf->policyd.buffer_size = NGX_CONF_UNSET_SIZE;
    tmcf->cache_size = NGX_CONF_UNSET_UINT;
    tmcf->jwt_cache_size = NGX_CONF_UNSET_UINT;
    tmcf->dpop_replay_size = NGX_CONF_UNSET_SIZE;
    tmcf->request_id_var = NGX_ERROR;

    if (ngx_array_init(&tmcf->jwks, cf->pool, 2,
                       sizeof(ngx_tailgate_jwks_t *))
        != NGX_OK)
    {
        return NULL;
    }

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

    ngx_conf_init_uint_value(tmcf->policyd.connections, 2);
    ngx_conf_init_size_value(tmcf->policyd.buffer_size, TG_MAX_FRAME_MIN);
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
     *     conf->ntags = 0;
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
    conf->jwks = NGX_CONF_UNSET_PTR;
    conf->cors_origins = NGX_CONF_UNSET_PTR;
    conf->trusted = NGX_CONF_UNSET_PTR;
    conf->dpop = NGX_CONF_UNSET_UINT;
    conf->dpop_window = NGX_CONF_UNSET;
    conf->dpop_public_url = NGX_CONF_UNSET_PTR;
    conf->explain = NGX_CONF_UNSET;

    return conf;
}


static char *
ngx_http_tailgate_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_tailgate_loc_conf_t *prev = parent;
    ngx_http_tailgate_loc_conf_t *conf = child;

    ngx_str_t                      *tags;
    ngx_uint_t                      ntags;
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
    ngx_conf_merge_ptr_value(conf->trusted, prev->trusted, NULL);
    ngx_conf_merge_ptr_value(conf->jwt_claims, prev->jwt_claims, NULL);
    if (conf->jwks == NGX_CONF_UNSET_PTR) {
        conf->jwks = prev->jwks == NGX_CONF_UNSET_PTR ? NULL : prev->jwks;
        conf->jwks_wait = prev->jwks_wait;
    }
    ngx_conf_merge_str_value(conf->fallback, prev->fallback, "");
    ngx_conf_merge_value(conf->explain, prev->explain, 1);

    ngx_conf_merge_uint_value(conf->dpop, prev->dpop, NGX_TAILGATE_DPOP_OFF);
    ngx_conf_merge_sec_value(conf->dpop_window, prev->dpop_window, 60);
    ngx_conf_merge_ptr_value(conf->dpop_public_url, prev->dpop_public_url,
                             NULL);

    if (conf->dpop_window < 1 || conf->dpop_window > 3600) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"tailgate_dpop_window\" must be 1s to 1h");
        return NGX_CONF_ERROR;
    }

    tmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_tailgate_module);

    if (conf->dpop != NGX_TAILGATE_DPOP_OFF
        && ngx_tailgate_dpop_replay_zone(cf, tmcf) != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    if (conf->jwt_claims == NULL) {
        conf->jwt_claims = ngx_pcalloc(cf->pool,
                                       sizeof(ngx_tailgate_jwt_claims_t));
        if (conf->jwt_claims == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_str_set(&conf->jwt_claims->client, "sub");
    }

    /* a location adds to the tags it inherits, it cannot drop any */

    tags = prev->tags;
    ntags = prev->ntags;

    if (ngx_tailgate_tags_union(cf->pool, &tags, &ntags, conf->tags,
                                conf->ntags)
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    conf->tags = tags;
    conf->ntags = ntags;

    if (conf->ntags > NGX_TAILGATE_MAX_TAGS) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "more than %d tailgate_tags apply here",
                           NGX_TAILGATE_MAX_TAGS);
        return NGX_CONF_ERROR;
    }

    if (conf->enable) {
        tmcf->enabled = 1;

        if (conf->dpop != NGX_TAILGATE_DPOP_OFF
            && conf->jwt_keys == NULL && conf->jwks == NULL)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"tailgate_dpop\" needs \"tailgate_jwt_key\" "
                               "or \"tailgate_jwt_jwks\": DPoP binds tokens");
            return NGX_CONF_ERROR;
        }

        if (conf->keys == NULL && conf->jwt_keys == NULL
            && conf->jwks == NULL && conf->trusted == NULL)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"tailgate on\" needs \"tailgate_keys\", "
                               "\"tailgate_jwt_key\", \"tailgate_jwt_jwks\" "
                               "or \"tailgate_trusted_network\"");
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

    if (tmcf->policyd.addr == NULL) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"tailgate on\" needs \"tailgate_policyd\"");
        return NGX_ERROR;
    }

    /* usage records name the request as the access log does */

    tmcf->request_id_var = ngx_http_get_variable_index(cf,
                               &(ngx_str_t) ngx_string("request_id"));
    if (tmcf->request_id_var == NGX_ERROR) {
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

    if (ngx_tailgate_crypto_init_worker(cycle) != NGX_OK
        || ngx_tailgate_auth_init_worker(cycle, &tmcf->keys) != NGX_OK
        || ngx_tailgate_cache_init(cycle, tmcf->cache_size) != NGX_OK
        || ngx_tailgate_jwt_init_worker(cycle, tmcf->jwt_cache_size)
           != NGX_OK
        || ngx_tailgate_jwks_init_worker(cycle, &tmcf->jwks) != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_tailgate_report_init_worker(cycle);

    return ngx_tailgate_policyd_init_worker(cycle, &tmcf->policyd);
}


static void
ngx_http_tailgate_exit_process(ngx_cycle_t *cycle)
{
    ngx_tailgate_report_exit_worker();
    ngx_tailgate_policyd_exit_worker();
    ngx_tailgate_jwks_exit_worker();
    ngx_tailgate_jwt_exit_worker();
    ngx_tailgate_auth_exit_worker();
    ngx_tailgate_crypto_exit_worker();
}


static char *
ngx_http_tailgate_policyd(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_tailgate_main_conf_t *tmcf = conf;

    ngx_str_t  *value;
    ngx_url_t   u;

    if (tmcf->policyd.addr) {
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

    tmcf->policyd.socket = value[1];
    tmcf->policyd.addr = &u.addrs[0];

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

    ngx_str_t   *value;
    ngx_uint_t   i;

    if (tlcf->tags) {
        return "is duplicate";
    }

    tlcf->tags = ngx_palloc(cf->pool,
                            (cf->args->nelts - 1) * sizeof(ngx_str_t));
    if (tlcf->tags == NULL) {
        return NGX_CONF_ERROR;
    }

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_tailgate_check_name(value[i].data,
                                    value[i].data + value[i].len, 0)
            != NGX_OK)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid tag \"%V\": expected 1-%d letters, "
                               "digits and \"_-:.\"", &value[i],
                               NGX_TAILGATE_MAX_TAG);
            return NGX_CONF_ERROR;
        }

        /* compared exactly: one spelling, lowercase */
        ngx_strlow(value[i].data, value[i].data, value[i].len);

        tlcf->tags[tlcf->ntags++] = value[i];
    }

    return NGX_CONF_OK;
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
