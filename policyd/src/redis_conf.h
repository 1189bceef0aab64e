/*
 * The "redis" block of a policy (docs/policy.md, "Several nodes"): where
 * the Redis that several policyds share is, and what a node does when it
 * cannot reach it.  Part of an immutable tg_policy; policy_redis.c reads
 * it, redis.c uses it.
 */

#ifndef TG_REDIS_CONF_H
#define TG_REDIS_CONF_H

#include <stdbool.h>
#include <stdint.h>


#define TG_REDIS_NAME_MAX           64      /* key_prefix and node_id */
#define TG_REDIS_TIMEOUT_MS_DEFAULT 50
#define TG_REDIS_TIMEOUT_MS_MAX     10000
#define TG_REDIS_LEASE_TTL_DEFAULT  10000
#define TG_REDIS_LEASE_TTL_MIN      1000
#define TG_REDIS_LEASE_TTL_MAX      600000
#define TG_REDIS_NODES_MAX          1000


typedef enum {
    TG_REDIS_ON_ERROR_LOCAL = 0,        /* each node enforces its share */
    TG_REDIS_ON_ERROR_CLOSED            /* 503 */
} tg_redis_on_error;


typedef struct {
    bool                enabled;        /* the block is there */

    const char         *unix_path;      /* "unix:/path", or NULL */
    const char         *host;           /* "host:port" */
    uint16_t            port;

    const char         *password;       /* SECRET, from ${VAR}; NULL: none */
    const char         *password_env;   /* the variable's name */
    uint32_t            db;
    const char         *key_prefix;     /* "tg" */
    const char         *node_id;        /* this node's name in leases */
    uint32_t            timeout_ms;
    uint32_t            lease_ttl_ms;   /* a dead node's leases last */
    uint32_t            nodes;          /* how many share the limits */
    tg_redis_on_error   on_error;
} tg_redis_conf;


#endif /* TG_REDIS_CONF_H */
