
/*
 * Copyright (C) The Tailgate authors
 *
 * What the phases of ngx_http_tailgate_module share: the configuration,
 * who is asking, the request's context, and the concerns they call.  The
 * leaves below them have headers of their own.
 */


#ifndef _NGX_TAILGATE_COMMON_H_INCLUDED_
#define _NGX_TAILGATE_COMMON_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_http.h>

#include "ngx_tailgate_crypto.h"
#include "ngx_tailgate_jwks.h"
#include "ngx_tailgate_policy.h"
#include "ngx_tailgate_scan.h"
#include "ngx_tailgate_trace.h"


/*
 * Endpoints: those a decision is asked for (TG_ENDPOINTS), then those
 * answered by MODELS.  In the order of the endpoint table
 * (ngx_tailgate_decide.c).
 */

typedef enum {
#define NGX_TAILGATE_ENDPOINT_ID(id, name, path)  NGX_TAILGATE_EP_ ## id,
    TG_ENDPOINTS(NGX_TAILGATE_ENDPOINT_ID)
#undef NGX_TAILGATE_ENDPOINT_ID
    NGX_TAILGATE_EP_MODELS,
    NGX_TAILGATE_EP_MODEL
} ngx_tailgate_endpoint_e;


typedef enum {
    NGX_TAILGATE_BODY_NONE = 0,
    NGX_TAILGATE_BODY_JSON,
    NGX_TAILGATE_BODY_MULTIPART
} ngx_tailgate_body_e;


typedef struct {
    ngx_str_t                    path;       /* after the base_url */
    ngx_str_t                    name;       /* on the wire to policyd */
    ngx_uint_t                   method;     /* NGX_HTTP_GET, _POST */
    ngx_tailgate_body_e          body;
    ngx_tailgate_endpoint_e      id;
} ngx_tailgate_endpoint_t;


/* who is asking: from a key record or from a token's claims */
typedef struct {
    ngx_str_t                    client;
    ngx_str_t                    tenant;
    ngx_str_t                    limit;      /* policyd's limit profile */
    ngx_str_t                   *tags;
    ngx_uint_t                   ntags;
    ngx_str_t                   *routes;     /* the routes it may use */
    ngx_uint_t                   nroutes;    /* 0: every route */
    time_t                       expires;    /* 0: never */
    unsigned                     jwt:1;
    unsigned                     network:1;  /* a trusted network's */
    unsigned                     admin:1;    /* may read tailgate_status */
} ngx_tailgate_identity_t;


/* one client key record: the SHA-256 of the key, never the key */
typedef struct {
    u_char                       digest[NGX_TAILGATE_DIGEST_LEN];
    ngx_tailgate_identity_t      identity;
} ngx_tailgate_key_t;


/* one version of a key file, whole */
typedef struct {
    ngx_pool_t                  *pool;       /* NULL: the configuration's */
    ngx_tailgate_key_t          *slots;      /* open addressing */
    ngx_uint_t                   mask;
    ngx_uint_t                   count;
    ngx_uint_t                   refs;       /* requests holding identities */
    unsigned                     retired:1;  /* a newer one replaced it */
} ngx_tailgate_key_table_t;


typedef struct ngx_tailgate_keys_reading_s  ngx_tailgate_keys_reading_t;

/* a key file, and the version of it each worker reads (ngx_tailgate_auth.c) */
typedef struct {
    ngx_str_t                    file;
    ngx_tailgate_key_table_t    *table;
    ngx_tailgate_keys_reading_t *reading;    /* a newer one, in steps */
    ngx_uint_t                   generation;
    ngx_file_info_t              loaded;     /* what the table was read from */
    ngx_file_info_t              refused;    /* a version already logged */
    unsigned                     has_refused:1;
    unsigned                     missing:1;  /* logged as gone */
} ngx_tailgate_keys_t;


/* OpenSSL's objects for a key: apart, so that their address never moves */
typedef struct {
    void                        *pkey;       /* EVP_PKEY *: RS*, ES* */
    void                        *verify;     /* EVP_PKEY_CTX *, per worker */
    void                        *md;         /* EVP_MD *, per worker */
} ngx_tailgate_jwt_crypto_t;


/* a key that signs tokens, parsed once when nginx reads its configuration */
typedef struct {
    ngx_str_t                    kid;        /* empty: the default key */
    ngx_str_t                    alg;        /* "RS256", ... */
    void                        *md;         /* const EVP_MD * */
    ngx_tailgate_jwt_crypto_t   *crypto;     /* RS*, ES* */
    ngx_str_t                    secret;     /* HS* */
    size_t                       ec_size;    /* ES*: bytes of r and of s */
} ngx_tailgate_jwt_key_t;


typedef struct {
    ngx_str_t                    client;     /* claim names */
    ngx_str_t                    tenant;
    ngx_str_t                    tags;
    ngx_str_t                    routes;
    ngx_str_t                    roles;      /* "admin" in it: an operator */
    ngx_str_t                    limit;      /* the limit profile's name */
} ngx_tailgate_jwt_claims_t;


typedef enum {
    NGX_TAILGATE_AUTH_OK = 0,
    NGX_TAILGATE_AUTH_MISSING,
    NGX_TAILGATE_AUTH_INVALID,
    NGX_TAILGATE_AUTH_EXPIRED,
    NGX_TAILGATE_AUTH_ERROR,             /* ours, not the client's */
    NGX_TAILGATE_AUTH_AGAIN,             /* waits for its key set */
    NGX_TAILGATE_AUTH_DPOP_INVALID,      /* the DPoP proof is wrong */
    NGX_TAILGATE_AUTH_DPOP_REQUIRED,     /* a bearer credential where
                                            only DPoP will do */
    NGX_TAILGATE_AUTH_DPOP_BUSY          /* the replay cache is full */
} ngx_tailgate_auth_e;


#define NGX_TAILGATE_DPOP_OFF       0
#define NGX_TAILGATE_DPOP_ON        1   /* DPoP or Bearer */
#define NGX_TAILGATE_DPOP_REQUIRED  2   /* DPoP only */


typedef struct {
    ngx_str_t                    name;
    ngx_uint_t                   private;    /* unsigned:1 */
} ngx_tailgate_upstream_t;


/* tailgate_dpop_public_url: what clients put in a proof's "htu" */
typedef struct {
    ngx_str_t                    scheme;     /* "https" */
    ngx_str_t                    host;       /* "api.example.com:8443" */
} ngx_tailgate_dpop_url_t;


typedef struct {
    ngx_tailgate_policyd_conf_t  policyd;
    ngx_uint_t                   cache_size;
    ngx_uint_t                   jwt_cache_size;

    ngx_array_t                 *private_names;  /* ngx_str_t */
    ngx_array_t                 *fallbacks;      /* ngx_str_t: checked */
    ngx_array_t                  upstreams;      /* ngx_tailgate_upstream_t */
    ngx_array_t                  keys;           /* ngx_tailgate_keys_t * */
    ngx_array_t                  jwks;           /* ngx_tailgate_jwks_t * */

    size_t                       dpop_replay_size;
    ngx_shm_zone_t              *dpop_replay;    /* of jtis seen */

    ngx_uint_t                   enabled;    /* some location uses tailgate */
    ngx_int_t                    request_id_var;     /* $request_id */
} ngx_http_tailgate_main_conf_t;


typedef struct {
    ngx_flag_t                   enable;
    ngx_msec_t                   timeout;
    ngx_tailgate_keys_t         *keys;
    ngx_str_t                   *tags;
    ngx_uint_t                   ntags;
    ngx_uint_t                   reject_log_level;

    ngx_array_t                 *jwt_keys;   /* ngx_tailgate_jwt_key_t */
    ngx_str_t                    jwt_issuer;
    ngx_str_t                    jwt_audience;
    time_t                       jwt_leeway;
    ngx_tailgate_jwt_claims_t   *jwt_claims;
    ngx_tailgate_jwks_t         *jwks;       /* tailgate_jwt_jwks */
    ngx_msec_t                   jwks_wait;  /* its wait= here */

    ngx_array_t                 *cors_origins;   /* ngx_str_t */
    ngx_array_t                 *trusted;    /* ngx_tailgate_trusted.c */

    ngx_uint_t                   dpop;       /* NGX_TAILGATE_DPOP_* */
    time_t                       dpop_window;
    ngx_tailgate_dpop_url_t     *dpop_public_url;

    ngx_str_t                    fallback;   /* @location, or empty */
    ngx_flag_t                   explain;    /* X-Tailgate-* headers */
    ngx_uint_t                   status;     /* NGX_TAILGATE_STATUS_* */

    /* a server's: its locations, for errors before one is chosen */
    ngx_array_t                 *locations;  /* ngx_tailgate_special.c */
} ngx_http_tailgate_loc_conf_t;


#define NGX_TAILGATE_STATUS_JSON        1
#define NGX_TAILGATE_STATUS_PROMETHEUS  2


typedef enum {
    NGX_TAILGATE_NEW = 0,
    NGX_TAILGATE_READING,
    NGX_TAILGATE_WAITING,
    NGX_TAILGATE_DECIDED,
    NGX_TAILGATE_PROXYING,
    NGX_TAILGATE_DONE
} ngx_tailgate_state_e;


/* an attempt that failed before its response started */
typedef struct {
    ngx_str_t                    provider;
    ngx_tailgate_outcome_e       outcome;
    ngx_uint_t                   status;     /* the provider's, or 0 */
} ngx_tailgate_attempt_t;


/* a request's usage as it is reported and logged (ngx_tailgate_meter.c) */
typedef struct {
    uint64_t                     input;
    uint64_t                     output;
    uint64_t                     total;
    uint64_t                     cached;
    uint64_t                     reasoning;
    uint64_t                     audio_ms;
    uint64_t                     characters;
    ngx_str_t                    model;      /* the answer's, if it said */
    unsigned                     known:1;    /* a provider answered */
    unsigned                     estimated:1;
} ngx_tailgate_tokens_t;


typedef struct ngx_tailgate_meter_s  ngx_tailgate_meter_t;

/* a body read in pieces (ngx_tailgate_body.c), and who hears the end */
typedef struct ngx_tailgate_body_reader_s  ngx_tailgate_body_reader_t;
typedef void (*ngx_tailgate_body_done_pt)(ngx_http_request_t *r,
    ngx_int_t rc, ngx_tailgate_scan_error_t *error);


/* a step's prices: pico-units (1e-12) of the currency */
typedef enum {
    NGX_TAILGATE_PRICE_INPUT = 0,        /* per token */
    NGX_TAILGATE_PRICE_CACHED,           /* per token */
    NGX_TAILGATE_PRICE_OUTPUT,           /* per token */
    NGX_TAILGATE_PRICE_MINUTE,           /* micro-units per minute */
    NGX_TAILGATE_PRICE_CHARACTER,        /* per character */
    NGX_TAILGATE_PRICES
} ngx_tailgate_price_e;


typedef struct {
    ngx_tailgate_state_e         state;
    ngx_http_request_t          *request;
    const ngx_tailgate_endpoint_t  *endpoint;
    ngx_str_t                    endpoint_rest;  /* id in /models/{id} */

    ngx_tailgate_identity_t     *identity;
    ngx_str_t                   *tags;       /* shared, never written */
    ngx_uint_t                   ntags;
    ngx_str_t                    cors_origin;    /* an allowed Origin */
    unsigned                     private:1;

    u_char                      *body;       /* one run, or NULL: pieces */
    size_t                       body_len;
    ngx_tailgate_body_reader_t  *body_reader;    /* while it is read */
    ngx_tailgate_facts_t         facts;

    ngx_tailgate_call_t         *call;       /* while policyd is asked */
    ngx_msec_t                   decide_start;
    ngx_msec_t                   decide_time;
    ngx_str_t                    cache_key;

    /* the decision */
    ngx_str_t                    provider;
    ngx_str_t                    route;
    ngx_str_t                    upstream_url;
    ngx_str_t                    upstream_name;
    ngx_str_t                    upstream_host;
    ngx_str_t                    authorization;
    ngx_str_t                    provider_model;
    ngx_str_t                    reason;
    ngx_str_t                    zone;
    ngx_str_t                    ratelimit;  /* the client's limits, now */
    ngx_tailgate_lease_t         lease;      /* this attempt's */
    ngx_uint_t                   attempt;    /* decisions applied */
    ngx_uint_t                   fallback;   /* TG_FALLBACK_*: may retry */
    ngx_str_t                    adjust;     /* the step's edits */

    /* this attempt's own timeouts, 0: the location's (ngx_tailgate_timeouts.c) */
    ngx_msec_t                   connect_ms;
    ngx_msec_t                   first_byte_ms;
    ngx_msec_t                   idle_ms;
    ngx_http_handler_pt          proxy_handler;  /* the location's content */
    ngx_http_upstream_conf_t    *upstream_conf;  /* the attempt's own copy */
    ngx_msec_t                   read_timeout;   /* the location's */

    /* the client's request headers, while a provider gets fewer */
    ngx_list_t                   client_headers;

    /* fallback: what failed, and the body as the client sent it */
    ngx_array_t                 *failed;     /* ngx_tailgate_attempt_t */
    ngx_uint_t                   states;     /* r->upstream_states before */
    ngx_chain_t                 *client_bufs;
    off_t                        client_length;

    /* a streamed response, watched so that a break is not hidden */
    void                       (*upstream_finalize)(ngx_http_request_t *r,
                                     ngx_int_t rc);
    ngx_uint_t                   sse_newlines;   /* at the end, up to 2 */

    ngx_array_t                 *status_parts;   /* ngx_str_t, copied */

    /* a model list in pages: the one buffer they go out of, the cursor */
    ngx_buf_t                   *models_buf;
    ngx_str_t                    models_cursor;

    /* what the answer used, and what it costs */
    ngx_tailgate_meter_t        *meter;
    ngx_tailgate_tokens_t       *tokens;     /* worked out, this attempt's */
    uint64_t                     prices[NGX_TAILGATE_PRICES];
    ngx_str_t                    special;    /* nginx's error page, as JSON */
    ngx_str_t                    jwks_credential;    /* while it waits */

    ngx_tailgate_trace_t         trace;      /* for a policyd that traces */

    unsigned                     reported:1;
    unsigned                     from_cache:1;
    unsigned                     response_complete:1;
    unsigned                     body_replaced:1;
    unsigned                     in_fallback:1;
    unsigned                     status:1;   /* a tailgate_status request */
    unsigned                     status_lost:1;  /* a part not kept */
    unsigned                     explain:1;  /* may name its providers */
    unsigned                     sse:1;
    unsigned                     stream_broken:1;
    unsigned                     client_gone:1;
    unsigned                     priced:1;   /* the decision had prices */
    unsigned                     stream_usage:1;  /* ask for it (decision) */
    unsigned                     usage_asked:1;  /* this body asks for it */
    unsigned                     special_sent:1;
    unsigned                     headers_scrubbed:1;
    unsigned                     jwks_wait:1;    /* its key set is asked */
    unsigned                     translate:1;    /* responses via chat */
    unsigned                     renamed:1;  /* the provider's model */
    unsigned                     translate_failed:1; /* the client told */
    unsigned                     dpop:1;     /* "Authorization: DPoP" */

    /* the chat answer becoming a Responses answer */
    struct ngx_tailgate_xlat_s  *xlat;
} ngx_http_tailgate_ctx_t;


extern ngx_module_t  ngx_http_tailgate_module;


/*
 * The headers of a list one at a time, across its parts.  A list never
 * initialized (a provider that sent no headers) has none.
 */

typedef struct {
    ngx_list_part_t             *part;
    ngx_uint_t                   i;
} ngx_tailgate_headers_t;


static ngx_inline void
ngx_tailgate_headers_init(ngx_tailgate_headers_t *it, ngx_list_t *headers)
{
    it->part = &headers->part;
    it->i = 0;
}


static ngx_inline ngx_table_elt_t *
ngx_tailgate_headers_next(ngx_tailgate_headers_t *it)
{
    ngx_table_elt_t  *h;

    while (it->i >= it->part->nelts) {
        if (it->part->next == NULL) {
            return NULL;
        }

        it->part = it->part->next;
        it->i = 0;
    }

    h = it->part->elts;

    return &h[it->i++];
}


/* the first header of each lowercase name, in one walk for all of them */

static ngx_inline void
ngx_tailgate_find_headers(ngx_list_t *headers, ngx_str_t *names,
    ngx_table_elt_t **found, ngx_uint_t n)
{
    ngx_uint_t               k, left;
    ngx_table_elt_t         *h;
    ngx_tailgate_headers_t   it;

    for (k = 0; k < n; k++) {
        found[k] = NULL;
    }

    left = n;
    ngx_tailgate_headers_init(&it, headers);

    while (left && (h = ngx_tailgate_headers_next(&it)) != NULL) {
        for (k = 0; k < n; k++) {
            if (found[k] == NULL
                && h->key.len == names[k].len
                && ngx_strncmp(h->lowcase_key, names[k].data, names[k].len)
                   == 0)
            {
                found[k] = h;
                left--;
                break;
            }
        }
    }
}


static ngx_inline ngx_table_elt_t *
ngx_tailgate_find_header(ngx_list_t *headers, ngx_str_t *lowcase_name)
{
    ngx_table_elt_t  *h;

    ngx_tailgate_find_headers(headers, lowcase_name, &h, 1);

    return h;
}


/* ngx_tailgate_access.c: who is asking, and with which tags */
ngx_int_t ngx_http_tailgate_access_handler(ngx_http_request_t *r);

/* ngx_tailgate_decide.c: where the request goes */
ngx_int_t ngx_http_tailgate_precontent_handler(ngx_http_request_t *r);
ngx_tailgate_upstream_t *ngx_http_tailgate_upstream(
    ngx_http_tailgate_main_conf_t *tmcf, ngx_str_t *name);

/* ngx_tailgate_fallback.c: when an attempt fails before its response */
ngx_int_t ngx_http_tailgate_proxy(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx);
ngx_int_t ngx_http_tailgate_retry(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx);
ngx_int_t ngx_http_tailgate_attempts_failed(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx, ngx_uint_t retried);

/* ngx_tailgate_status.c: tailgate_status, relayed from policyd */
ngx_int_t ngx_http_tailgate_ask_status(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx);
ngx_int_t ngx_http_tailgate_status_handler(ngx_http_request_t *r);

/* ngx_tailgate_models.c: /v1/models, a page at a time */
ngx_int_t ngx_http_tailgate_ask_models(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx);

/* ngx_tailgate_content.c: locations the gateway answers itself */
ngx_int_t ngx_tailgate_health_handler(ngx_http_request_t *r);
ngx_int_t ngx_tailgate_error_page_handler(ngx_http_request_t *r);

/* ngx_tailgate_report.c: outcomes to policyd */
ngx_int_t ngx_http_tailgate_log_handler(ngx_http_request_t *r);
void ngx_tailgate_report_init_worker(ngx_cycle_t *cycle);
void ngx_tailgate_report_exit_worker(void);
ngx_int_t ngx_tailgate_report(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx);
ngx_tailgate_outcome_e ngx_tailgate_outcome(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx, ngx_msec_t *upstream_ms,
    ngx_uint_t *status);
void ngx_tailgate_report_unused(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx, ngx_tailgate_reply_t *reply);
void ngx_tailgate_report_attempt(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx, ngx_tailgate_outcome_e outcome,
    ngx_uint_t status, ngx_msec_t upstream_ms);

/* ngx_tailgate_auth.c: API keys, and which credential a request sent */
char *ngx_tailgate_keys_load(ngx_conf_t *cf, ngx_str_t *file,
    ngx_tailgate_keys_t **keys);
ngx_tailgate_auth_e ngx_tailgate_authenticate(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx, ngx_http_tailgate_loc_conf_t *tlcf,
    const char **why);
ngx_int_t ngx_tailgate_auth_init_worker(ngx_cycle_t *cycle,
    ngx_array_t *keys);
void ngx_tailgate_auth_exit_worker(void);
char *ngx_tailgate_identity_attribute(ngx_pool_t *pool,
    ngx_tailgate_identity_t *id, u_char *p, u_char *end);

/* ngx_tailgate_trusted.c: networks admitted without a credential */
char *ngx_tailgate_trusted_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_tailgate_identity_t *ngx_tailgate_trusted_identity(ngx_http_request_t *r,
    ngx_http_tailgate_loc_conf_t *tlcf);

/* ngx_tailgate_jwt.c: tokens */
char *ngx_tailgate_jwt_key_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_tailgate_jwt_claims_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_tailgate_jwt_init_worker(ngx_cycle_t *cycle,
    ngx_uint_t cache_size);
void ngx_tailgate_jwt_exit_worker(void);
ngx_tailgate_auth_e ngx_tailgate_jwt_authenticate(ngx_http_request_t *r,
    ngx_http_tailgate_loc_conf_t *tlcf, ngx_str_t *token,
    ngx_tailgate_identity_t **identity, ngx_str_t *jkt, const char **why);

/* the base64url SHA-256 of a JWK (RFC 7638) in a token's "cnf.jkt" */
#define NGX_TAILGATE_JKT_LEN  43

/* ngx_tailgate_cors.c: browsers */
char *ngx_tailgate_cors_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_tailgate_cors_preflight(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx, ngx_http_tailgate_loc_conf_t *tlcf);
ngx_int_t ngx_tailgate_cors_headers(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx);

/* ngx_tailgate_body.c, ngx_tailgate_adjust.c: the body that goes upstream */
ngx_int_t ngx_tailgate_body_classify(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx, ngx_tailgate_body_done_pt done,
    ngx_tailgate_scan_error_t *error);
ngx_int_t ngx_tailgate_body_load(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx, ngx_tailgate_body_done_pt done);
ngx_int_t ngx_tailgate_body_rewrite_model(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx, ngx_str_t *model);
ngx_int_t ngx_tailgate_body_replace(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx, ngx_str_t *pieces, ngx_uint_t n);
void ngx_tailgate_body_restore(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx);
ngx_int_t ngx_tailgate_body_adjust(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx, ngx_str_t *model, ngx_str_t *spec);
ngx_uint_t ngx_tailgate_body_adjust_needed(ngx_http_tailgate_ctx_t *ctx,
    ngx_str_t *spec);

/* ngx_tailgate_scrub.c: what a provider must not learn of the client */
ngx_int_t ngx_tailgate_scrub_headers(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx, ngx_str_t *names, ngx_str_t *user_agent);
void ngx_tailgate_scrub_restore(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx);

/* ngx_tailgate_timeouts.c: an attempt's connect, first byte, idle times */
void ngx_tailgate_timeouts_proxy(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx);
void ngx_tailgate_timeouts_answered(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx);

/* ngx_tailgate_translate_req.c: a responses request for a chat provider */
ngx_int_t ngx_tailgate_translate_request(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx, ngx_str_t *model, ngx_str_t *body,
    ngx_int_t *rc);

/* ngx_tailgate_translate.c: the chat answer to it, on its way */
void ngx_tailgate_translate_start(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx);
ngx_int_t ngx_tailgate_translate_body(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx, ngx_chain_t *in, ngx_chain_t **out);
void ngx_tailgate_translate_sent(ngx_http_tailgate_ctx_t *ctx,
    ngx_chain_t *out);
ngx_int_t ngx_tailgate_translate_broken(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx, const char *message, ngx_chain_t **out);
ngx_uint_t ngx_tailgate_translate_failed(ngx_http_tailgate_ctx_t *ctx);

/* ngx_tailgate_filter.c, ngx_tailgate_stream.c: the response */
ngx_int_t ngx_tailgate_filter_init(ngx_conf_t *cf);
ngx_int_t ngx_tailgate_special_init(ngx_conf_t *cf);
void ngx_tailgate_stream_watch(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx);
void ngx_tailgate_stream_track(ngx_http_tailgate_ctx_t *ctx,
    ngx_chain_t *in);

/* ngx_tailgate_variables.c */
ngx_int_t ngx_tailgate_add_variables(ngx_conf_t *cf);


#endif /* _NGX_TAILGATE_COMMON_H_INCLUDED_ */
