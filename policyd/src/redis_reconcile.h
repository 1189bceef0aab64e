/*
 * Reconciling with Redis (redis_reconcile.c, docs/policy.md, "When Redis
 * comes back"): what this node took and spent alone while Redis was away
 * (the limits' counters' away tallies, limits_store.h), and the day's
 * usage counters (usage_pending.h), go to Redis in numbered batches.
 *
 * A batch is numbered by this process (its epoch: node, pid and start)
 * and kept here until Redis answers it.  A batch lost with its
 * connection, before or after Redis ran it, is sent again first on the
 * next connection; Redis keeps, per hash tag, the number of the last
 * batch of this epoch it applied, and its script applies a batch only
 * when its number is newer: sent twice, it counts once.
 *
 * A REPORT's corrections of takes Redis saw (the tokens used less the
 * decision's estimate, the cost spent from each budget) go the same way:
 * summed per counter in a table while a correction batch is unanswered
 * or Redis is away, then sent as one numbered batch (docs/policy.md,
 * "A REPORT's corrections").
 */

#ifndef TG_REDIS_RECONCILE_H
#define TG_REDIS_RECONCILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hiredis/async.h>

#include "limits_store.h"
#include "redis_keys.h"
#include "redis_waiting.h"
#include "status.h"
#include "usage_pending.h"


#define TG_RECONCILE_KEYS       64      /* counters in one limits batch */
#define TG_RECONCILE_USAGE      128     /* usage entries in one batch */
#define TG_RECONCILE_EPOCH      160     /* an epoch's bytes, at most */


typedef enum {
    TG_BATCH_LIMITS = 0,
    TG_BATCH_USAGE,
    TG_BATCH_REPORT                     /* a REPORT's corrections */
} tg_batch_kind;


typedef struct tg_batch  tg_batch;

struct tg_batch {
    tg_batch               *next;
    struct tg_reconcile    *rc;
    uint64_t                seq;
    tg_batch_kind           kind;
    bool                    inflight;   /* sent; its reply not read */
    bool                    sent;       /* once at least */
    int                     argc;
    const char            **argv;       /* into this allocation */
    size_t                 *argvlen;
};


typedef struct tg_reconcile {
    char                epoch[TG_RECONCILE_EPOCH];
    char               *prefix;
    char               *address;        /* for logs */
    uint64_t            seq;            /* the last number given */

    tg_batch           *head;           /* kept, by number */
    tg_batch           *tail;
    size_t              kept;
    size_t              usage_inflight; /* usage batches in flight */
    size_t              report_inflight; /* correction batches in flight */

    tg_correction      *corr;           /* waiting, summed per counter */
    size_t              ncorr;
    size_t              corr_cap;

    tg_usage_pending    usage;
    tg_usage_pending_entry  take[TG_RECONCILE_USAGE];   /* a batch's */
    tg_reconcile_view   stats;

    /*
     * Connected: the tables are Redis's to get at once, not the state
     * file's (below); waits: the store's count of changes to what waits,
     * for the saver (NULL: none).
     */
    bool                connected;
    uint64_t           *waits;

    /*
     * The batches of a reconcile wait (kept, not sent) until the state
     * file written without their tallies is on the disk, and so do those
     * made after them (tg_reconcile_persisted()).
     */
    bool                holding;
} tg_reconcile;


/*
 * node, pid, start_ms: the epoch ("node/pid.start_ms"), new for every
 * process.  NULL when out of memory.
 */
tg_reconcile *tg_reconcile_new(const char *node, long pid,
    uint64_t start_ms, const char *prefix, const char *address);

/* after the connection is freed: its callbacks have run */
void tg_reconcile_free(tg_reconcile *rc);

/*
 * A new batch of kind, numbered, kept (at the end), its script's argv
 * copied: "EVAL" script numkeys marker keys... seq args....  NULL when
 * TG_RECONCILE_KEPT are kept already or out of memory.
 */
tg_batch *tg_reconcile_batch(tg_reconcile *rc, tg_batch_kind kind,
    const char *script, size_t nkeys, const char *const *keys,
    size_t nargs, const char *const *args);

/* its reply read: applied or skipped, out of the kept list and freed */
void tg_reconcile_done(tg_reconcile *rc, tg_batch *b, bool applied);

/*
 * Redis answers again on ac: the kept batches not in flight first, in
 * their order, then what s's counters tallied alone, then the usage
 * waiting.  Before any decision's take on this connection.
 */
void tg_reconcile_send(tg_reconcile *rc, redisAsyncContext *ac,
    tg_limit_store *s);

/*
 * The state file a reconcile asked for is written: its batches, and those
 * held behind them, sent on ac (NULL: on the next connection).
 */
void tg_reconcile_persisted(tg_reconcile *rc, redisAsyncContext *ac);

/*
 * Every tick while connected: kept batches whose send failed (out of
 * memory), and those held behind them, sent again in their order.
 */
void tg_reconcile_retry(tg_reconcile *rc, redisAsyncContext *ac);

/*
 * A clean stop: the kept batches not in flight, then every correction
 * and usage entry waiting, sent on ac (whatever is in flight), before it
 * is closed.
 */
void tg_reconcile_quit(tg_reconcile *rc, redisAsyncContext *ac);

/*
 * A REPORT's usage, by kind (names[k] "": none), on the day of wall_s;
 * sent at once on ac (NULL: Redis is away) unless a usage batch is in
 * flight: then with the next one, when that is answered.
 */
void tg_reconcile_usage(tg_reconcile *rc, redisAsyncContext *ac,
    int64_t wall_s, const char *const *names, uint64_t requests,
    uint64_t tokens, uint64_t cost_nano);

/*
 * A REPORT's correction of one counter Redis took: added to the one of
 * the same counter, day and month waiting; sent at once on ac (NULL:
 * Redis is away) unless a correction batch is in flight: then with the
 * next one, when that is answered.  -1: the table is full, dropped
 * (counted).
 */
int tg_reconcile_correct(tg_reconcile *rc, redisAsyncContext *ac,
    const tg_correction *c);

/*
 * The next batch of the corrections waiting (up to TG_RECONCILE_KEYS
 * counters, out of the table), numbered and kept, not sent: "EVAL"
 * script numkeys marker keys... seq, then 7 per key: tpm tokens cost_nano
 * day month budget_day_nano budget_month_nano.  NULL: none waiting, or
 * TG_RECONCILE_KEPT kept already.
 */
tg_batch *tg_reconcile_corrections(tg_reconcile *rc);

void tg_reconcile_view_of(const tg_reconcile *rc, tg_reconcile_view *v);

/*
 * What waits for Redis, for the state file: the kept batches always (a
 * restart sends them again, with their epoch and number: one Redis ran
 * counts once); the corrections and the usage waiting only while there is
 * no connection - with one, they leave within a round trip, and the file
 * written before the reconcile's batches left still holding them would
 * count them twice after a restart.  -1: out of memory.
 */
int tg_reconcile_copy(const tg_reconcile *rc, tg_waiting *w);

/*
 * What the state file kept (before the first connection): its batches
 * kept, first in line, its corrections and usage into the tables.  What
 * finds no room is dropped and counted.
 */
void tg_reconcile_restore(tg_reconcile *rc, const tg_waiting *w);

/* the connection went: the tables wait for the next one, in the file */
void tg_reconcile_alone(tg_reconcile *rc);


#endif /* TG_REDIS_RECONCILE_H */
