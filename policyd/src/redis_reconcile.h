/*
 * Reconciling when Redis answers again (redis_reconcile.c): what this
 * node took and spent alone while Redis was away (the limits' counters'
 * away tallies, limits_store.h) is added to Redis's windows and budgets
 * (docs/policy.md, "When Redis comes back").
 */

#ifndef TG_REDIS_RECONCILE_H
#define TG_REDIS_RECONCILE_H

#include <hiredis/async.h>

#include "limits_store.h"


/* the reconcile script (sha: what SCRIPT LOAD gave for it, "" for none) */
extern const char  tg_reconcile_lua[];

/*
 * Sends the tallies of every counter of s on ac, sent before any
 * decision's take on this connection and waited for by none; cb (with
 * sha) reads each script's reply.  address: for the log line.
 */
void tg_redis_reconcile_send(redisAsyncContext *ac, tg_limit_store *s,
    const char *prefix, const char *address, char *sha,
    redisCallbackFn *cb);


#endif /* TG_REDIS_RECONCILE_H */
