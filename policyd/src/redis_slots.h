/*
 * The concurrency slots of clients, tenants and routes in Redis
 * (redis_slots.c; docs/policy.md, "Several nodes").  A limit's
 * "concurrent" is a sorted set per counter, "{P:limits}:slots:c|..."
 * (redis_keys.h), of "node/lease" members scored by when they expire on
 * Redis's clock.  The take script (redis.c) adds a decision's member, all
 * or nothing with the windows and budgets; what is here keeps them true
 * afterwards:
 *
 *   ended     a lease that ends (REPORT, its worker's connection closing,
 *             its lease_ttl_ms) gives its slots back: ZREM, sent on the
 *             loop, waited for by nobody;
 *   renew     every quarter of lease_ttl_ms, this node's live slots get a
 *             new expiry (ZADD XX: a member Redis let expire is not put
 *             back), so a dead node's expire within lease_ttl_ms;
 *   resend    when Redis answers again (connected again, or answering
 *             after a time alone), every live slot of this node is put in
 *             its set, those taken alone meanwhile included.
 *
 * Nothing here waits: a lost command leaves a slot until its TTL at most.
 */

#ifndef TG_REDIS_SLOTS_H
#define TG_REDIS_SLOTS_H

#include <stdint.h>

#include <hiredis/async.h>

#include "state.h"


#define TG_REDIS_SLOTS_BATCH  128       /* slots in one renew script */


typedef struct {
    const char  *prefix;                /* the redis block's, not owned */
    const char  *node;
    uint64_t     renewed_ms;            /* the last renew or resend */
    uint64_t     errors;                /* error replies to its scripts */
} tg_redis_slots;


void tg_redis_slots_init(tg_redis_slots *sl, const char *prefix,
    const char *node);

/* every tick while Redis is up: the renew, when a quarter TTL passed */
void tg_redis_slots_tick(tg_redis_slots *sl, redisAsyncContext *ac,
    tg_state *st, uint32_t ttl_ms, uint64_t now_ms);

/* Redis answers again: every live slot of this node put back */
void tg_redis_slots_resend(tg_redis_slots *sl, redisAsyncContext *ac,
    tg_state *st, uint32_t ttl_ms);

/* a lease ends: its slots that Redis has (or may have) given back */
void tg_redis_slots_ended(tg_redis_slots *sl, redisAsyncContext *ac,
    const tg_lease *l);


#endif /* TG_REDIS_SLOTS_H */
