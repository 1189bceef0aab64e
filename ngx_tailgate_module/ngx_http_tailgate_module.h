
/*
 * Copyright (C) The Tailgate authors
 */


#ifndef _NGX_HTTP_TAILGATE_MODULE_H_INCLUDED_
#define _NGX_HTTP_TAILGATE_MODULE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_http.h>

#include "tailgate_protocol.h"


#define NGX_TAILGATE_SOFTWARE          "ngx_tailgate/0.1"

#define NGX_TAILGATE_DIGEST_LEN        32    /* SHA-256 */
#define NGX_TAILGATE_MAX_TAGS          16


/* letters, digits and "_-." */
#define ngx_tailgate_is_name_char(c)                                          \
    (((c) >= 'a' && (c) <= 'z') || ((c) >= 'A' && (c) <= 'Z')                \
     || ((c) >= '0' && (c) <= '9') || (c) == '_' || (c) == '-' || (c) == '.')


/* endpoints, in the order of ngx_tailgate_endpoints[] */
typedef enum {
    NGX_TAILGATE_EP_CHAT = 0,
    NGX_TAILGATE_EP_EMBEDDINGS,
    NGX_TAILGATE_EP_SPEECH,
    NGX_TAILGATE_EP_TRANSCRIPTIONS,
    NGX_TAILGATE_EP_RESPONSES,
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
} ngx_tailgate_endpoint_t;


/* who is asking: from a key record or from a token's claims */
typedef struct {
    ngx_str_t                    client;
    ngx_str_t                    tenant;
    ngx_str_t                   *tags;
    ngx_uint_t                   ntags;
    ngx_str_t                   *routes;     /* the routes it may use */
    ngx_uint_t                   nroutes;    /* 0: every route */
    time_t                       expires;    /* 0: never */
    unsigned                     jwt:1;
    unsigned                     admin:1;    /* may read tailgate_status */
} ngx_tailgate_identity_t;


/* one client key record: the SHA-256 of the key, never the key */
typedef struct {
    u_char                       digest[NGX_TAILGATE_DIGEST_LEN];
    ngx_tailgate_identity_t      identity;
} ngx_tailgate_key_t;


typedef struct {
    ngx_str_t                    file;
    ngx_tailgate_key_t          *slots;      /* open addressing */
    ngx_uint_t                   mask;
    ngx_uint_t                   count;
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
} ngx_tailgate_jwt_claims_t;


typedef enum {
    NGX_TAILGATE_AUTH_OK = 0,
    NGX_TAILGATE_AUTH_MISSING,
    NGX_TAILGATE_AUTH_INVALID,
    NGX_TAILGATE_AUTH_EXPIRED,
    NGX_TAILGATE_AUTH_ERROR              /* ours, not the client's */
} ngx_tailgate_auth_e;


typedef struct {
    ngx_str_t                    name;
    ngx_uint_t                   private;    /* unsigned:1 */
} ngx_tailgate_upstream_t;


typedef struct {
    ngx_str_t                    socket;     /* unix:/path as configured */
    ngx_addr_t                  *addr;
    ngx_uint_t                   connections;
    size_t                       buffer_size;
    ngx_uint_t                   cache_size;
    ngx_uint_t                   jwt_cache_size;

    ngx_array_t                 *private_names;  /* ngx_str_t */
    ngx_array_t                 *fallbacks;      /* ngx_str_t: checked */
    ngx_array_t                  upstreams;      /* ngx_tailgate_upstream_t */
    ngx_array_t                  keys;           /* ngx_tailgate_keys_t * */

    ngx_uint_t                   enabled;    /* some location uses tailgate */
} ngx_http_tailgate_main_conf_t;


typedef struct {
    ngx_flag_t                   enable;
    ngx_msec_t                   timeout;
    ngx_tailgate_keys_t         *keys;
    ngx_array_t                 *tags;       /* ngx_str_t */
    ngx_uint_t                   reject_log_level;

    ngx_array_t                 *jwt_keys;   /* ngx_tailgate_jwt_key_t */
    ngx_str_t                    jwt_issuer;
    ngx_str_t                    jwt_audience;
    time_t                       jwt_leeway;
    ngx_tailgate_jwt_claims_t   *jwt_claims;

    ngx_array_t                 *cors_origins;   /* ngx_str_t */

    ngx_str_t                    fallback;   /* @location, or empty */
    ngx_flag_t                   explain;    /* X-Tailgate-* headers */
    ngx_uint_t                   status;     /* NGX_TAILGATE_STATUS_* */
} ngx_http_tailgate_loc_conf_t;


#define NGX_TAILGATE_STATUS_JSON        1
#define NGX_TAILGATE_STATUS_PROMETHEUS  2


/* a reply frame, parsed in place; valid only inside the call handler */
typedef struct {
    ngx_uint_t                   type;
    ngx_uint_t                   status;
    ngx_uint_t                   retry_after;
    uint32_t                     lease;
    ngx_msec_t                   cache_ms;
    size_t                       cache_max_bytes;
    ngx_uint_t                   fallback;   /* TG_FALLBACK_* */
    ngx_msec_t                   wait_ms;    /* QUEUED */

    /* set once the decision passed the module's checks */
    ngx_tailgate_upstream_t     *checked;

    ngx_str_t                    error_type;
    ngx_str_t                    error_code;
    ngx_str_t                    error_message;
    ngx_str_t                    provider;
    ngx_str_t                    route;
    ngx_str_t                    upstream;
    ngx_str_t                    scheme;
    ngx_str_t                    host;
    ngx_str_t                    path;
    ngx_str_t                    provider_model;
    ngx_str_t                    authorization;
    ngx_str_t                    reason;
    ngx_str_t                    zone;
    ngx_str_t                    adjust;
    ngx_str_t                    body;
} ngx_tailgate_reply_t;


typedef enum {
    NGX_TAILGATE_CALL_OK = 0,
    NGX_TAILGATE_CALL_TIMEOUT,
    NGX_TAILGATE_CALL_UNAVAILABLE,   /* connection failed or closed */
    NGX_TAILGATE_CALL_REFUSED        /* policyd answered ERROR */
} ngx_tailgate_call_result_e;


typedef struct ngx_tailgate_call_s  ngx_tailgate_call_t;

typedef void (*ngx_tailgate_call_handler_pt)(ngx_tailgate_call_t *call,
    ngx_tailgate_call_result_e result, ngx_tailgate_reply_t *reply);
typedef void (*ngx_tailgate_call_part_pt)(ngx_tailgate_call_t *call,
    ngx_tailgate_reply_t *reply);


/* one outstanding request to policyd */
struct ngx_tailgate_call_s {
    ngx_rbtree_node_t            node;       /* key: frame id */
    void                        *peer;
    ngx_event_t                  timer;
    ngx_msec_t                   timeout;
    ngx_tailgate_call_handler_pt handler;
    ngx_tailgate_call_part_pt    part;       /* STATUS_PART, if expected */
    void                        *data;
    ngx_tailgate_call_t         *next;       /* while failing calls */
    unsigned                     pending:1;
    unsigned                     queued:1;   /* policyd said QUEUED */
};


/* a frame being built in a caller's buffer */
typedef struct {
    u_char                      *start;
    u_char                      *pos;
    u_char                      *end;
    unsigned                     overflow:1;
} ngx_tailgate_frame_t;


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
    const char                  *outcome;
    ngx_uint_t                   status;     /* the provider's, or 0 */
} ngx_tailgate_attempt_t;


/* what the body says */
typedef struct {
    ngx_str_t                    model;      /* decoded */
    u_char                      *model_start;    /* raw token in the body */
    u_char                      *model_end;
    ngx_uint_t                   stream;     /* unsigned:1 */
    ngx_uint_t                   tools;      /* unsigned:1 */
} ngx_tailgate_facts_t;


typedef struct {
    ngx_tailgate_state_e         state;
    ngx_http_request_t          *request;
    ngx_tailgate_endpoint_t     *endpoint;
    ngx_str_t                    endpoint_rest;  /* id in /models/{id} */

    ngx_tailgate_identity_t     *identity;
    ngx_str_t                   *tags;       /* shared, never written */
    ngx_uint_t                   ntags;
    ngx_str_t                    cors_origin;    /* an allowed Origin */
    unsigned                     private:1;

    u_char                      *body;       /* contiguous copy or view */
    size_t                       body_len;
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
    uint32_t                     lease;
    ngx_uint_t                   attempt;    /* decisions applied */
    ngx_uint_t                   fallback;   /* TG_FALLBACK_*: may retry */

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
} ngx_http_tailgate_ctx_t;


extern ngx_module_t  ngx_http_tailgate_module;
extern ngx_tailgate_endpoint_t  ngx_tailgate_endpoints[];


ngx_http_tailgate_ctx_t *ngx_http_tailgate_get_ctx(ngx_http_request_t *r);

/* ngx_tailgate_auth.c */
char *ngx_tailgate_keys_load(ngx_conf_t *cf, ngx_str_t *file,
    ngx_tailgate_keys_t **keys);
ngx_tailgate_auth_e ngx_tailgate_authenticate(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx, ngx_http_tailgate_loc_conf_t *tlcf,
    const char **why);
ngx_int_t ngx_tailgate_sha256(ngx_str_t *data, u_char *digest);
ngx_int_t ngx_tailgate_auth_init_worker(ngx_cycle_t *cycle);
void ngx_tailgate_auth_exit_worker(void);
ngx_table_elt_t *ngx_tailgate_find_header(ngx_list_t *headers,
    ngx_str_t *lowcase_name);
ngx_int_t ngx_tailgate_check_name(u_char *p, u_char *end, ngx_uint_t route);
ngx_int_t ngx_tailgate_parse_names(ngx_pool_t *pool, u_char *p, u_char *end,
    ngx_uint_t max, ngx_uint_t route, ngx_str_t **names, ngx_uint_t *n);

/* ngx_tailgate_jwt.c */
char *ngx_tailgate_jwt_key_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_tailgate_jwt_claims_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_tailgate_jwt_init_worker(ngx_cycle_t *cycle,
    ngx_uint_t cache_size);
void ngx_tailgate_jwt_exit_worker(void);
ngx_tailgate_auth_e ngx_tailgate_jwt_authenticate(ngx_http_request_t *r,
    ngx_http_tailgate_loc_conf_t *tlcf, ngx_str_t *token,
    ngx_tailgate_identity_t **identity, const char **why);

/* ngx_tailgate_cors.c */
char *ngx_tailgate_cors_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_tailgate_cors_preflight(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx, ngx_http_tailgate_loc_conf_t *tlcf);
ngx_int_t ngx_tailgate_cors_headers(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx);

/* ngx_tailgate_body.c */
ngx_int_t ngx_tailgate_body_classify(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx, const char **error);
ngx_int_t ngx_tailgate_body_rewrite_model(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx, ngx_str_t *model);
ngx_int_t ngx_tailgate_body_replace(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx, ngx_str_t *pieces, ngx_uint_t n);
void ngx_tailgate_body_restore(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx);

/* ngx_tailgate_adjust.c */
ngx_int_t ngx_tailgate_body_adjust(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx, ngx_str_t *model, ngx_str_t *spec);

/* ngx_tailgate_filter.c */
ngx_int_t ngx_tailgate_filter_init(ngx_conf_t *cf);

/* ngx_tailgate_stream.c */
void ngx_tailgate_stream_watch(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx);
void ngx_tailgate_stream_track(ngx_http_tailgate_ctx_t *ctx,
    ngx_chain_t *in);

/* ngx_tailgate_json.c */

#define NGX_TAILGATE_JSON_NAME_MAX     64

typedef struct {
    u_char                      *key_start;  /* its opening quote */
    u_char                      *value_start;
    u_char                      *value_end;
    ssize_t                      name_len;   /* -1: too long to be edited */
    u_char                       name[NGX_TAILGATE_JSON_NAME_MAX];
} ngx_tailgate_json_member_t;


typedef struct {
    u_char                      *p;
    u_char                      *end;
    ngx_uint_t                   first;
} ngx_tailgate_json_iter_t;

ngx_int_t ngx_tailgate_json_scan(ngx_pool_t *pool, u_char *p, u_char *end,
    ngx_tailgate_facts_t *facts, const char **error);
ngx_int_t ngx_tailgate_json_quote(ngx_pool_t *pool, ngx_str_t *value,
    ngx_str_t *quoted);
ngx_int_t ngx_tailgate_json_strings(ngx_pool_t *pool, u_char *p, u_char *end,
    ngx_array_t **strings);
ngx_int_t ngx_tailgate_json_members(ngx_tailgate_json_iter_t *it, u_char *p,
    u_char *end);
ngx_int_t ngx_tailgate_json_member(ngx_tailgate_json_iter_t *it,
    ngx_tailgate_json_member_t *m);

/* ngx_tailgate_multipart.c */
ngx_int_t ngx_tailgate_multipart_scan(ngx_http_request_t *r, u_char *p,
    u_char *end, ngx_tailgate_facts_t *facts, const char **error);

/* ngx_tailgate_lru.c */
typedef struct ngx_tailgate_lru_s  ngx_tailgate_lru_t;

ngx_tailgate_lru_t *ngx_tailgate_lru_create(ngx_pool_t *pool,
    ngx_uint_t capacity);
void *ngx_tailgate_lru_get(ngx_tailgate_lru_t *lru, u_char *key, size_t len);
void *ngx_tailgate_lru_put(ngx_tailgate_lru_t *lru, u_char *key, size_t len,
    size_t value_size, ngx_msec_t ttl, ngx_log_t *log);
void ngx_tailgate_lru_flush(ngx_tailgate_lru_t *lru);

/* ngx_tailgate_cache.c */
ngx_int_t ngx_tailgate_cache_init(ngx_cycle_t *cycle, ngx_uint_t capacity);
ngx_tailgate_reply_t *ngx_tailgate_cache_get(u_char *key, size_t len,
    size_t body_len);
void ngx_tailgate_cache_put(u_char *key, size_t len,
    ngx_tailgate_reply_t *reply, ngx_log_t *log);
void ngx_tailgate_cache_flush(void);

/* ngx_tailgate_proto.c */
void ngx_tailgate_frame_init(ngx_tailgate_frame_t *f, u_char *buf,
    size_t size, ngx_uint_t type);
void ngx_tailgate_frame_str(ngx_tailgate_frame_t *f, ngx_uint_t key,
    ngx_str_t *value);
void ngx_tailgate_frame_u32(ngx_tailgate_frame_t *f, ngx_uint_t key,
    uint32_t value);
void ngx_tailgate_frame_u8(ngx_tailgate_frame_t *f, ngx_uint_t key,
    ngx_uint_t value);
ngx_int_t ngx_tailgate_frame_finish(ngx_tailgate_frame_t *f);
void ngx_tailgate_frame_set_id(u_char *frame, uint32_t id);
ngx_int_t ngx_tailgate_frame_parse(u_char *p, size_t len, uint32_t *id,
    ngx_tailgate_reply_t *reply, uint32_t *max_frame);

/* ngx_tailgate_policy.c */
ngx_int_t ngx_tailgate_policyd_init_worker(ngx_cycle_t *cycle,
    ngx_http_tailgate_main_conf_t *tmcf);
void ngx_tailgate_policyd_exit_worker(void);
ngx_int_t ngx_tailgate_call(ngx_tailgate_call_t *call,
    ngx_tailgate_frame_t *frame, ngx_msec_t timeout, ngx_log_t *log);
void ngx_tailgate_call_cancel(ngx_tailgate_call_t *call);
void ngx_tailgate_notify(ngx_tailgate_frame_t *frame, ngx_log_t *log);
void ngx_tailgate_notify_on(void *peer, ngx_tailgate_frame_t *frame,
    ngx_log_t *log);
ngx_uint_t ngx_tailgate_policyd_up(void);

/* ngx_tailgate_report.c */
void ngx_tailgate_report_init_worker(ngx_cycle_t *cycle);
ngx_int_t ngx_tailgate_report(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx);
const char *ngx_tailgate_outcome(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx, ngx_msec_t *upstream_ms,
    ngx_uint_t *status);
void ngx_tailgate_report_unused(ngx_http_request_t *r, ngx_str_t *provider,
    ngx_str_t *route, uint32_t lease);
void ngx_tailgate_report_attempt(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx, const char *outcome, ngx_uint_t status,
    ngx_msec_t upstream_ms);

/* ngx_tailgate_response.c */
ngx_int_t ngx_tailgate_send_error(ngx_http_request_t *r, ngx_uint_t status,
    ngx_str_t *type, ngx_str_t *code, ngx_str_t *message);
ngx_int_t ngx_tailgate_send_error_text(ngx_http_request_t *r,
    ngx_uint_t status, const char *type, const char *code,
    const char *message);
ngx_int_t ngx_tailgate_send_json(ngx_http_request_t *r, ngx_uint_t status,
    ngx_str_t *body);
ngx_int_t ngx_tailgate_send_copy(ngx_http_request_t *r, ngx_uint_t status,
    ngx_str_t *body, const char *type);
ngx_int_t ngx_tailgate_send_body(ngx_http_request_t *r, ngx_uint_t status,
    u_char *data, size_t len, const char *type);
ngx_int_t ngx_tailgate_add_header(ngx_http_request_t *r, const char *name,
    ngx_str_t *value);
ngx_int_t ngx_tailgate_health_handler(ngx_http_request_t *r);
ngx_int_t ngx_tailgate_error_page_handler(ngx_http_request_t *r);

/* ngx_tailgate_variables.c */
ngx_int_t ngx_tailgate_add_variables(ngx_conf_t *cf);


#endif /* _NGX_HTTP_TAILGATE_MODULE_H_INCLUDED_ */
