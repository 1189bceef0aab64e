/*
 * The "jwks" block of a policy (docs/policy.md, "Token keys from a JWKS"):
 * the key sets of identity providers that policyd fetches and writes to a
 * file for nginx's workers.  Part of an immutable tg_policy;
 * policy_jwks.c reads it, jwks.c acts on it.
 */

#ifndef TG_JWKS_CONF_H
#define TG_JWKS_CONF_H

#include <stdbool.h>
#include <stdint.h>


#define TG_JWKS_NAME_MAX              64
#define TG_JWKS_URL_MAX               2048
#define TG_JWKS_FILE_MAX              4096
#define TG_JWKS_REFRESH_MS_DEFAULT    3600000     /* 1 h */
#define TG_JWKS_REFRESH_MS_MAX        604800000   /* a week */
#define TG_JWKS_MIN_REFRESH_MS_DEFAULT  30000
#define TG_JWKS_MIN_REFRESH_MS_MIN    100
#define TG_JWKS_TIMEOUT_MS_DEFAULT    5000
#define TG_JWKS_TIMEOUT_MS_MAX        60000
#define TG_JWKS_MAX_BYTES_DEFAULT     (512 * 1024)
#define TG_JWKS_MAX_BYTES_MIN         1024
#define TG_JWKS_MAX_BYTES_MAX         (4 * 1024 * 1024)

#define TG_DISCOVERY_PATH             "/.well-known/openid-configuration"


typedef struct {
    const char     *name;
    const char     *url;            /* the set itself, or NULL: discovery */
    const char     *issuer;         /* discovery: NULL, or the issuer */
    const char     *discovery_url;  /* issuer + TG_DISCOVERY_PATH */
    const char     *file;           /* where the set is written: absolute */
    uint32_t        refresh_ms;     /* the longest a set is kept unasked */
    uint32_t        min_refresh_ms; /* the shortest time between fetches */
    uint32_t        timeout_ms;
    uint32_t        max_bytes;      /* of an answer */
    bool            insecure_http;  /* http:// to hosts not on loopback */
} tg_jwks_conf;


#endif /* TG_JWKS_CONF_H */
