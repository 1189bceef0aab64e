/*
 * Key names, lease members, script replies, shares and backoff: the
 * decisions of the Redis client that need no socket.
 */

#include <stdio.h>
#include <string.h>

#include "redis_keys.h"


size_t
tg_redis_key(char *buf, size_t cap, const char *prefix, const char *kind,
    const char *name, const char *what)
{
    int  n;

    n = snprintf(buf, cap, "{%s:%s:%s}:%s", prefix, kind, name, what);

    if (n < 0 || (size_t) n >= cap) {
        return 0;
    }

    return (size_t) n;
}


size_t
tg_redis_member(char *buf, size_t cap, const char *node, uint32_t lease)
{
    int  n;

    n = snprintf(buf, cap, "%s/%u", node, lease);

    if (n < 0 || (size_t) n >= cap) {
        return 0;
    }

    return (size_t) n;
}


uint32_t
tg_redis_member_lease(const char *member, size_t len, const char *node)
{
    size_t    i, nlen;
    uint64_t  v;

    nlen = strlen(node);

    if (len < nlen + 2 || memcmp(member, node, nlen) != 0
        || member[nlen] != '/')
    {
        return 0;
    }

    v = 0;

    for (i = nlen + 1; i < len; i++) {
        if (member[i] < '0' || member[i] > '9' || i - nlen > 10) {
            return 0;
        }
        v = v * 10 + (uint64_t) (member[i] - '0');
    }

    return v > UINT32_MAX ? 0 : (uint32_t) v;
}


uint32_t
tg_redis_share(uint32_t limit, uint32_t nodes)
{
    uint32_t  share;

    if (limit == 0) {
        return 0;
    }

    share = nodes > 1 ? limit / nodes : limit;

    return share == 0 ? 1 : share;
}


uint32_t
tg_redis_backoff_ms(uint32_t failures)
{
    uint32_t  ms = 100;

    while (failures-- > 0 && ms < 5000) {
        ms *= 2;
    }

    return ms > 5000 ? 5000 : ms;
}


static bool
tg_redis_is_noscript(const redisReply *r)
{
    return r->type == REDIS_REPLY_ERROR && r->str != NULL
           && strncmp(r->str, "NOSCRIPT", 8) == 0;
}


int
tg_redis_parse_acquire(const redisReply *r, bool *granted, uint32_t *held,
    bool *noscript)
{
    *noscript = false;

    if (r == NULL) {
        return -1;
    }

    if (tg_redis_is_noscript(r)) {
        *noscript = true;
        return -1;
    }

    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2
        || r->element[0]->type != REDIS_REPLY_INTEGER
        || r->element[1]->type != REDIS_REPLY_INTEGER
        || (r->element[0]->integer != 0 && r->element[0]->integer != 1)
        || r->element[1]->integer < 0
        || r->element[1]->integer > UINT32_MAX)
    {
        return -1;
    }

    *granted = r->element[0]->integer == 1;
    *held = (uint32_t) r->element[1]->integer;

    return 0;
}


int
tg_redis_parse_count(const redisReply *r, uint32_t *held, bool *noscript)
{
    *noscript = false;

    if (r == NULL) {
        return -1;
    }

    if (tg_redis_is_noscript(r)) {
        *noscript = true;
        return -1;
    }

    if (r->type != REDIS_REPLY_INTEGER || r->integer < 0
        || r->integer > UINT32_MAX)
    {
        return -1;
    }

    *held = (uint32_t) r->integer;

    return 0;
}


int
tg_redis_parse_pttl(const redisReply *r, uint32_t *ms)
{
    if (r == NULL || r->type != REDIS_REPLY_INTEGER) {
        return -1;
    }

    /* -2: no key, -1: no expiry (never set so by policyd) */
    *ms = r->integer <= 0 ? 0
          : r->integer > UINT32_MAX ? UINT32_MAX : (uint32_t) r->integer;

    return 0;
}
