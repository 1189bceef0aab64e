/*
 * The Redis that the policyds of several gateway nodes share (redis.c):
 * one asynchronous hiredis connection on policyd's libev loop, never
 * waited for.  It shares the leases of providers with max_concurrency
 * and the cooldowns a provider's 429 asks for (docs/policy.md, "Several
 * nodes").  Absent (no "redis" block): srv->redis is NULL and nothing
 * here runs.
 */

#ifndef TG_REDIS_H
#define TG_REDIS_H

#include <stdbool.h>
#include <stdint.h>

#include "conn.h"
#include "status.h"


/* Connects (later, without waiting) as the policy's "redis" says. */
/* restored: what waited for Redis before a restart (NULL: nothing) */
tg_redis *tg_redis_start(tg_server *srv, const tg_policy *policy,
    const struct tg_waiting *restored);
void tg_redis_stop(tg_redis *rd);

/*
 * At a clean stop, before tg_redis_stop(): what is queued for Redis (the
 * slots and leases the closed connections gave back, the batches) is
 * written and answered, on the loop, for timeout_ms at most.
 */
void tg_redis_quit(tg_redis *rd);

/* a reloaded policy: its block is compared, the connection kept */
void tg_redis_reloaded(tg_redis *rd, const tg_policy *policy);

void tg_redis_view_of(const tg_redis *rd, double now, tg_redis_view *v);

/* Whether a lease of this provider is shared: it has max_concurrency. */
bool tg_redis_shares(const tg_redis *rd, const tg_pstate *ps);

/*
 * The lease of a decision on a shared provider, granted here, and the
 * DECISION frame that gives it: sent once Redis holds the lease too.  When
 * the provider is full across the nodes, the lease goes and the DECIDE
 * (the frame tg_read_facts() read last) is decided again.  When Redis
 * does not answer within timeout_ms: on_redis_error.
 */
void tg_redis_acquire(tg_redis *rd, tg_conn *c, uint32_t id, tg_pstate *ps,
    uint32_t lease, const uint8_t *answer, size_t len);

/*
 * The same for a decision whose hold (the lease's) counts rate windows or
 * budgets: sent once Redis's take script took them all; when one is full
 * across the nodes, the DECIDE is decided again with what Redis holds
 * learned.  ps: its provider's lease is shared too (after the limits);
 * NULL: not.  Redis away: this node's share ("local") or 503 ("closed").
 */
void tg_redis_limits(tg_redis *rd, tg_conn *c, uint32_t id, tg_pstate *ps,
    uint32_t lease, const uint8_t *answer, size_t len);

/* a connection closes: its decisions waiting for Redis go unanswered */
void tg_redis_drop_conn(tg_redis *rd, tg_conn *c);


#endif /* TG_REDIS_H */
