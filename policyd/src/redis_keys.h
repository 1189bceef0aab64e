/*
 * The pure parts of sharing through Redis (redis_keys.c): key names, the
 * members of the lease sets, the replies of the scripts, the share of a
 * limit a node keeps when Redis is away, the reconnect backoff.  No
 * sockets; unit-tested in tests/test_redis.c.
 *
 * Every key carries a hash tag, "{PREFIX:KIND:NAME}", so that what one
 * script touches is in one slot of a Redis Cluster.
 */

#ifndef TG_REDIS_KEYS_H
#define TG_REDIS_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>


#define TG_REDIS_KEY_MAX    512

/*
 * "{prefix:kind:name}:what" into buf; its length, or 0 when it does not
 * fit in cap (TG_REDIS_KEY_MAX is always enough for policy names).
 */
size_t tg_redis_key(char *buf, size_t cap, const char *prefix,
    const char *kind, const char *name, const char *what);

/* a lease's member in its provider's set: "node/lease" */
size_t tg_redis_member(char *buf, size_t cap, const char *node,
    uint32_t lease);

/* the lease of a member of this node, 0 when it is another node's */
uint32_t tg_redis_member_lease(const char *member, size_t len,
    const char *node);

/*
 * What a node allows alone of a limit shared by nodes: its share, never
 * below 1 (a node that allowed nothing would refuse all), 0 for no limit.
 */
uint32_t tg_redis_share(uint32_t limit, uint32_t nodes);

/* the wait before connecting again after attempt failures in a row */
uint32_t tg_redis_backoff_ms(uint32_t failures);

/*
 * The acquire script's reply: {granted, held}.  0, or -1 when it is not
 * that (an error reply, NOSCRIPT included, is -1 with *noscript set).
 */
int tg_redis_parse_acquire(const redisReply *r, bool *granted,
    uint32_t *held, bool *noscript);

/* the sync script's reply: how many leases the set holds; -1: not that */
int tg_redis_parse_count(const redisReply *r, uint32_t *held,
    bool *noscript);

/* a PTTL reply: ms left, 0 when none; -1: not an integer */
int tg_redis_parse_pttl(const redisReply *r, uint32_t *ms);


#endif /* TG_REDIS_KEYS_H */
