/*
 * "redis": { "address", "password", "db", "key_prefix", "node_id",
 * "timeout_ms", "lease_ttl_ms", "nodes", "on_redis_error" }: the Redis that
 * the policyds of several gateway nodes share (docs/policy.md, "Several
 * nodes").  Absent: every counter stays in this policyd's memory.
 */

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "policy_json.h"


static void tg_load_redis_address(tg_loader *ld, tg_redis_conf *rc,
    const char *s);
static void tg_load_redis_password(tg_loader *ld, tg_redis_conf *rc,
    const char *s);
static const char *tg_load_redis_name(tg_loader *ld, const cJSON *obj,
    const char *key, const char *dflt);


static const char *const  tg_redis_keys[] = {
    "address", "password", "db", "key_prefix", "node_id", "timeout_ms",
    "lease_ttl_ms", "nodes", "on_redis_error", NULL
};


void
tg_load_redis(tg_loader *ld, const cJSON *root)
{
    char            host[TG_REDIS_NAME_MAX + 1];
    const char     *s;
    const cJSON    *obj;
    tg_redis_conf  *rc = &ld->p->redis;

    rc->timeout_ms = TG_REDIS_TIMEOUT_MS_DEFAULT;
    rc->lease_ttl_ms = TG_REDIS_LEASE_TTL_DEFAULT;
    rc->nodes = 2;
    rc->on_error = TG_REDIS_ON_ERROR_LOCAL;

    obj = tg_member(root, "redis");

    if (obj == NULL) {
        return;
    }

    if (!cJSON_IsObject(obj)) {
        tg_load_error(ld, "redis", "expected an object");
        return;
    }

    rc->enabled = true;

    tg_check_keys(ld, obj, "redis", tg_redis_keys);

    if (tg_member_string(ld, obj, "address", "redis", true, &s) == 1) {
        tg_load_redis_address(ld, rc, s);
    }

    if (tg_member_string(ld, obj, "password", "redis", false, &s) == 1) {
        tg_load_redis_password(ld, rc, s);
    }

    (void) tg_member_uint(ld, obj, "db", "redis", 0, 65535, &rc->db);
    (void) tg_member_uint(ld, obj, "timeout_ms", "redis", 1,
                          TG_REDIS_TIMEOUT_MS_MAX, &rc->timeout_ms);
    (void) tg_member_uint(ld, obj, "lease_ttl_ms", "redis",
                          TG_REDIS_LEASE_TTL_MIN, TG_REDIS_LEASE_TTL_MAX,
                          &rc->lease_ttl_ms);
    (void) tg_member_uint(ld, obj, "nodes", "redis", 1, TG_REDIS_NODES_MAX,
                          &rc->nodes);

    if (tg_member_string(ld, obj, "on_redis_error", "redis", false, &s) == 1)
    {
        if (strcmp(s, "local") == 0) {
            rc->on_error = TG_REDIS_ON_ERROR_LOCAL;
        } else if (strcmp(s, "closed") == 0) {
            rc->on_error = TG_REDIS_ON_ERROR_CLOSED;
        } else {
            tg_load_error(ld, "redis.on_redis_error",
                          "expected \"local\" or \"closed\"");
        }
    }

    rc->key_prefix = tg_load_redis_name(ld, obj, "key_prefix", "tg");

    /* the host's name by default: a restarted node finds its own leases */

    if (gethostname(host, sizeof(host)) != 0) {
        strcpy(host, "node");
    }
    host[sizeof(host) - 1] = '\0';

    for (s = host; *s != '\0'; s++) {
        if (!tg_is_name_char((unsigned char) *s)) {
            strcpy(host, "node");
            break;
        }
    }

    rc->node_id = tg_load_redis_name(ld, obj, "node_id", host);
}


static const char *
tg_load_redis_name(tg_loader *ld, const cJSON *obj, const char *key,
    const char *dflt)
{
    char         path[TG_PATH_LEN];
    size_t       i, len;
    const char  *s;

    tg_key_path(path, "redis", key);

    s = dflt;

    if (tg_member_string(ld, obj, key, "redis", false, &s) == -1) {
        return NULL;
    }

    len = strlen(s);

    if (len == 0 || len > TG_REDIS_NAME_MAX) {
        tg_load_error(ld, path, "expected 1 to %d characters",
                      TG_REDIS_NAME_MAX);
        return NULL;
    }

    for (i = 0; i < len; i++) {
        if (!tg_is_name_char((unsigned char) s[i]) || s[i] == '{'
            || s[i] == '}' || s[i] == ':')
        {
            tg_load_error(ld, path, "expected letters, digits, '-', '_' "
                          "and '.'");
            return NULL;
        }
    }

    return tg_copy(ld, s);
}


/* "unix:/path/redis.sock" or "host:port" */

static void
tg_load_redis_address(tg_loader *ld, tg_redis_conf *rc, const char *s)
{
    char         *end;
    size_t        hlen;
    const char   *colon;
    unsigned long port;

    if (strncmp(s, "unix:", 5) == 0) {
        if (s[5] != '/' || strlen(s + 5) > 107 || tg_has_control(s)) {
            tg_load_error(ld, "redis.address", "expected \"unix:\" and an "
                          "absolute socket path of at most 107 bytes");
            return;
        }

        rc->unix_path = tg_copy(ld, s + 5);
        return;
    }

    colon = strrchr(s, ':');

    if (colon == NULL || colon == s || tg_has_control(s)) {
        goto bad;
    }

    port = strtoul(colon + 1, &end, 10);

    if (colon[1] == '\0' || *end != '\0' || port == 0 || port > 65535) {
        goto bad;
    }

    hlen = (size_t) (colon - s);

    if (hlen > 255) {
        goto bad;
    }

    rc->host = tg_arena_strndup(&ld->p->arena, s, hlen);
    if (rc->host == NULL) {
        ld->oom = true;
        return;
    }

    rc->port = (uint16_t) port;

    return;

bad:

    tg_load_error(ld, "redis.address", "expected \"unix:/path\" or "
                  "\"host:port\"");
}


/* "${VAR}": like api_key, never a literal in the file */

static void
tg_load_redis_password(tg_loader *ld, tg_redis_conf *rc, const char *s)
{
    const char  *value;

    value = tg_env_secret(ld, s, "redis.password", "expected \"${ENV_VAR}\": "
                          "the password is read from the environment, "
                          "literal ones are not allowed", &rc->password_env);
    if (value != NULL) {
        rc->password = tg_copy(ld, value);
    }
}
