/*
 * The policy: providers and routes read from the policy file (docs/policy.md).
 *
 * A loaded tg_policy is immutable.  Everything it holds lives in its own
 * arena; tg_policy_free() releases it at once.  Providers and routes keep the
 * order of the file; look-ups by name go through small hash tables.
 */

#ifndef TG_POLICY_H
#define TG_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "arena.h"
#include "errors.h"
#include "jwks_conf.h"
#include "limits_conf.h"
#include "redis_conf.h"
#include "log.h"
#include "price.h"
#include "tailgate_names.h"


#define TG_ROUTE_NAME_MAX        256
#define TG_PROVIDER_NAME_MAX     64
#define TG_UPSTREAM_NAME_MAX     256
#define TG_HOST_MAX              255
#define TG_BASE_PATH_MAX         256
#define TG_MODEL_NAME_MAX        256
#define TG_LISTEN_PATH_MAX       107    /* sizeof(sun_path) - 1 */
#define TG_REGION_MAX            32
#define TG_ADJUST_PATH_MAX       64
#define TG_ADJUST_MAX            2048   /* the edits of one step, as text */
#define TG_ATTEMPTS_MAX          8
#define TG_CONTEXT_TOKENS_MAX    100000000
#define TG_CONCURRENCY_MAX       100000
#define TG_QUEUE_MAX             10000
#define TG_QUEUE_WAIT_MAX        600000
#define TG_TIMEOUT_MAX           3600000
#define TG_MAX_FRAME_DEFAULT     65536
#define TG_LISTEN_MODE_DEFAULT   0660
#define TG_ADMIN_MODE_DEFAULT    0600


/* the wire's names (proto/tailgate_names.h), as enums of their own */

#define TG_X(id, name, path)  TG_EP_ ## id,
typedef enum { TG_ENDPOINTS(TG_X) TG_EP_COUNT } tg_endpoint;
#undef TG_X

/* an endpoint the request did not name or that policyd does not know */
#define TG_EP_NONE  TG_EP_COUNT

#define TG_EP_BIT(ep)  (1u << (ep))


#define TG_X(id, name)  TG_ZONE_ ## id,
typedef enum { TG_ZONES(TG_X) TG_ZONE_COUNT } tg_zone;
#undef TG_X


/* how a provider's health is probed and judged (docs/policy.md) */
typedef enum {
    TG_PROBE_HTTP = 0,              /* any 2xx */
    TG_PROBE_OPENAI,                /* GET .../models: the models loaded */
    TG_PROBE_LLAMACPP,              /* llama.cpp /health, and its /slots */
    TG_PROBE_VLLM                   /* vLLM /metrics: running and waiting */
} tg_probe_kind;


#define TG_HEALTH_URL_MAX        512


typedef struct {
    const char     *url;            /* NULL: passive health only */
    const char     *slots_url;      /* llama.cpp: NULL, or where /slots is */
    tg_probe_kind   kind;
    uint32_t        interval_ms;
    uint32_t        timeout_ms;
    uint32_t        down_after;     /* failures in a row: down */
    uint32_t        up_after;       /* good probes in a row: up again */
    uint32_t        cooldown_ms;    /* passive down: tried again after */
    uint32_t        stuck_after_ms; /* a lease this old: stuck; 0: never */
    uint32_t        lease_ttl_ms;   /* a lease never reported ends then */
    bool            send_key;       /* probes carry the provider's key */
} tg_health_conf;


/* what a provider must not learn of the client (policy_scrub.c) */
typedef struct {
    const char *const  *headers;    /* lowercase; "x-a-*": a prefix */
    size_t         nheaders;
    const char *const  *body;       /* top-level keys or "key.member" */
    size_t         nbody;
    const char    *user_agent;      /* sent instead of the client's; NULL */
} tg_scrub;


typedef struct tg_provider {
    const char    *name;
    size_t         name_len;
    size_t         index;           /* position in tg_policy.providers */

    const char    *upstream;        /* nginx upstream {} block */
    const char    *scheme;          /* "http" or "https" */
    const char    *host;
    const char    *base_path;       /* "" or "/v1" ... */
    const char    *api_key_env;     /* NAME from "${NAME}", or NULL */
    const char    *authorization;   /* "Bearer <key>", or NULL; SECRET */
    tg_zone        zone;
    unsigned       endpoints;       /* TG_EP_BIT set */

    const char   **models;          /* NULL: any model */
    size_t         nmodels;

    const char    *paths[TG_EP_COUNT];  /* base_path + endpoint suffix */

    /* what a request must fit; 0 and NULL mean "no limit" / "none" */
    uint32_t       max_concurrency;
    uint32_t       context_tokens;
    const char    *region;          /* lowercase; NULL: serves no region */
    bool           tools;           /* accepts "tools" */
    bool           streaming;       /* accepts "stream": true */
    bool           usage_passive;   /* "usage": "passive": never asked for
                                       a stream's usage */
    bool           translate_responses;    /* responses served as chat,
                                              translated by the module */

    /* timeouts of an attempt, in ms; 0: nginx's own (the location's) */
    uint32_t       connect_ms;
    uint32_t       first_byte_ms;
    uint32_t       idle_ms;

    /* its plan: requests and tokens per minute; 0: none (limits.c) */
    uint32_t       rpm;
    uint32_t       tpm;

    tg_health_conf health;

    /* its zone's scrub, changed by its own; the headers as "name\n" */
    tg_scrub       scrub;
    const char    *scrub_headers;
} tg_provider;


/* when a step's request adjustments apply: bits of facts */
#define TG_WHEN_TOOLS   1u
#define TG_WHEN_STREAM  2u
#define TG_WHEN_COUNT   4u          /* every combination of the bits */


typedef struct tg_step {
    const tg_provider  *provider;
    size_t              provider_index;
    const char         *model;      /* the model name the provider expects */

    /*
     * The request edits for this step, one text per combination of
     * TG_WHEN_* facts: "drop KEY\n" and "set PATH JSON\n" lines, "" for
     * none.  Sent to the module as the decision's "adjust".
     */
    const char         *adjust[TG_WHEN_COUNT];

    /* its provider model's prices (usage.prices), or NULL: none */
    const struct tg_price_entry  *price;

    bool                model_pattern;  /* "*" in model: the rest */

    /* what it serves: its provider's endpoints, narrowed by the route's
       and its own "endpoints" */
    unsigned            endpoints;

    /* the step's timeouts, else its provider's; 0: nginx's own */
    uint32_t            connect_ms;
    uint32_t            first_byte_ms;
    uint32_t            idle_ms;
} tg_step;


#define TG_TENANT_MAX  64


typedef struct tg_route {
    const char    *name;
    size_t         name_len;
    size_t         index;

    tg_step       *steps;
    size_t         nsteps;

    unsigned       endpoints;       /* union of the steps' endpoints */
    unsigned       private_endpoints;   /* same, local/private steps only */
    unsigned       only_endpoints;  /* its "endpoints"; 0: any */

    /*
     * A pattern ("openrouter/" and a star): any model under the prefix,
     * the rest
     * named to its steps; "allow" and "deny" globs on the rest, "models"
     * the rests /v1/models lists.
     */
    bool           pattern;
    size_t         prefix_len;      /* the name less its final "*" */
    const char   **allow;           /* NULL: any */
    size_t         nallow;
    const char   **deny;
    size_t         ndeny;
    const char   **listed;
    size_t         nlisted;

    /*
     * "models_from": the list of models its provider serves, fetched by
     * policyd (model_fetch.c), in place of "listed" once it came.
     */
    const char    *models_url;      /* NULL: none */
    bool           models_send_key; /* with its provider's Authorization */
    uint32_t       models_refresh_ms;
    uint32_t       models_timeout_ms;

    /* in /v1/models: "owned_by" (NULL: "tailgate"), "context_window"
       (0: the largest of its steps' context_tokens, if all have one) */
    const char    *owned_by;
    uint32_t       context_window;

    const char   **tenants;         /* the only tenants that see it */
    size_t         ntenants;        /* 0: every tenant, and none */

    /* fallback: TG_FALLBACK_ON_* and TG_FALLBACK_* outcome bits */
    unsigned       fallback_on;
    unsigned       fallback_outcomes;
    uint32_t       max_attempts;

    /* at capacity: wait for a slot, at most this many, this long */
    uint32_t       queue_max;       /* 0: no queue */
    uint32_t       queue_wait_ms;
} tg_route;


/* what a route falls back on: failed attempts, steps at capacity */
#define TG_FALLBACK_ON_ERRORS  1u
#define TG_FALLBACK_ON_BUSY    2u
#define TG_FALLBACK_ON_AUTH    4u   /* a provider's 401, 402, 403 */


/* usage.prices.PROVIDER.MODEL */
typedef struct tg_price_entry {
    size_t         provider_index;
    const char    *model;
    tg_price       price;
    const char    *text;            /* DECISION's "IN CACHED OUT MIN CHARS" */
} tg_price_entry;


#define TG_USAGE_MAX_CLIENTS_DEFAULT  100
#define TG_USAGE_MAX_CLIENTS_MAX      10000
#define TG_USAGE_BUFFER_DEFAULT       (1024 * 1024)
#define TG_USAGE_BUFFER_MIN           4096
#define TG_USAGE_BUFFER_MAX           (256 * 1024 * 1024)
#define TG_CURRENCY_MAX               16
#define TG_PRICE_VERSION_MAX          64


/* "usage": the usage log, the currency and prices (docs/policy.md) */
typedef struct {
    const char      *log;           /* the usage log's path; NULL: none */
    uint32_t         buffer_bytes;  /* records waiting to be written */
    uint32_t         max_clients;   /* clients the status names */
    const char      *currency;      /* NULL when no prices */
    const char      *price_version; /* given, or a hash of the prices */
    tg_price_entry  *prices;
    size_t           nprices;
} tg_usage_conf;


typedef struct tg_listen {
    const char    *path;            /* NULL when neither file nor -s gave one */
    mode_t         mode;
    const char    *group;           /* NULL: leave the group alone */
    gid_t          gid;
} tg_listen;


#define TG_DECISION_CACHE_MS_DEFAULT  1000
#define TG_DECISION_CACHE_MS_MAX      60000
#define TG_LEASE_RECOVERY_MS_DEFAULT  1000
#define TG_LEASE_RECOVERY_MS_MAX      60000


typedef struct tg_policy {
    tg_arena       arena;
    const char    *file;

    tg_listen      listen;
    tg_listen      admin;           /* path NULL: no admin socket */
    uint32_t       max_frame;
    uint32_t       decision_cache_ms;   /* how long workers may reuse one */
    uint32_t       lease_recovery_ms;   /* after a start that may find
                                           leases held: wait for them */
    tg_log_level   log_level;

    tg_provider   *providers;
    size_t         nproviders;
    tg_route      *routes;
    size_t         nroutes;

    tg_usage_conf  usage;
    tg_scrub       scrub[TG_ZONE_COUNT];    /* per zone, before providers' */

    uint32_t      *provider_table;  /* open addressing: index + 1, 0 = free */
    size_t         provider_mask;
    uint32_t      *route_table;
    size_t         route_mask;
    const tg_route **patterns;      /* the pattern routes, longest first */
    size_t         npatterns;

    tg_limits_conf limits;          /* limits_policy.c */
    tg_redis_conf  redis;           /* policy_redis.c */

    tg_jwks_conf  *jwks;            /* policy_jwks.c: key sets to keep */
    size_t         njwks;

    time_t         loaded_at;       /* "created" in /v1/models */
} tg_policy;


typedef struct tg_policy_opts {
    /* -s: overrides listen.path; "listen" may then be absent */
    const char    *listen_path;

    /* -a: overrides admin_listen.path */
    const char    *admin_path;

    /* environment look-up for every "${NAME}"; NULL means getenv() */
    const char  *(*getenv)(const char *name);

    /* secrets (api_key, redis.password) are checked, never read */
    bool           secrets_unread;

    /* refuse a policy file that every user may read or write */
    bool           private_file;

    /* load time; 0 means time(NULL) */
    time_t         now;
} tg_policy_opts;


/*
 * Reads and checks a policy file.  Returns the policy, or NULL with every
 * problem found added to errs (never printed).  opts may be NULL.
 */
tg_policy *tg_policy_load(const char *file, const tg_policy_opts *opts,
    tg_errors *errs);

/* The same from text in memory; file names the source in the policy. */
tg_policy *tg_policy_parse(const char *file, const char *text, size_t len,
    const tg_policy_opts *opts, tg_errors *errs);

/* Frees the policy, wiping the authorization values first.  NULL is fine. */
void tg_policy_free(tg_policy *policy);

const tg_route *tg_policy_route(const tg_policy *policy, const char *name,
    size_t len);

/*
 * The route a client's model names: the route of that name, else the
 * pattern route of the longest prefix it starts with, whose "allow" and
 * "deny" let the rest through (*rest: what follows the prefix, empty for
 * a route by name).  NULL: none.
 */
const tg_route *tg_policy_match(const tg_policy *policy, const char *name,
    size_t len, const char **rest, size_t *rest_len);

/* Whether a pattern route's allow and deny let this rest through. */
bool tg_route_pattern_allows(const tg_route *rt, const char *rest,
    size_t len);
const tg_provider *tg_policy_provider(const tg_policy *policy,
    const char *name, size_t len);

/* The prices of a provider's model, or NULL (policy_usage.c). */
const tg_price_entry *tg_policy_price(const tg_policy *policy,
    const char *provider, size_t provider_len, const char *model,
    size_t model_len);

/* the hash of provider_table and route_table, which the loader fills */
uint32_t tg_name_hash(const char *s, size_t len);


/*
 * Blanks // and / * * / comments outside strings with spaces, keeping
 * newlines so that offsets, lines and columns stay those of the file.
 * Returns 0, or -1 with *err_off at an unterminated block comment.
 */
int tg_json_strip_comments(char *text, size_t len, size_t *err_off);


/* The index of s (len bytes) in names[0..n-1], or n when it is none. */
size_t tg_name_index(const char *const *names, size_t n, const char *s,
    size_t len);

const char *tg_endpoint_name(tg_endpoint ep);       /* "chat" */
const char *tg_endpoint_suffix(tg_endpoint ep);     /* "/chat/completions" */
tg_endpoint tg_endpoint_parse(const char *s, size_t len);   /* or TG_EP_NONE */
const char *tg_zone_name(tg_zone zone);
tg_zone tg_zone_parse(const char *s);               /* or TG_ZONE_COUNT */

/*
 * The failure classes of "fallback.outcomes" and TG_F_FALLBACK: the name of
 * one TG_FALLBACK_* bit (NULL for none), and the bit of a name (0 for none).
 */
const char *tg_fallback_class_name(unsigned bit);
unsigned tg_fallback_class_parse(const char *s);

/* "\"a\", \"b\", \"c\"": the names a policy may write, for its errors */
extern const char *const  tg_endpoint_list;
extern const char *const  tg_zone_list;
extern const char *const  tg_fallback_class_list;


#endif /* TG_POLICY_H */
