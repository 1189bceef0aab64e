/*
 * What waits for Redis (redis_reconcile.h), as the limits' state file
 * keeps it across a restart (limits_state.h): the kept batches, each with
 * its epoch and number; the REPORTs' corrections waiting in their table;
 * the usage table (usage_pending.h).  A copy, taken on the loop for the
 * saver, or read from the file at start for the reconcile to take over.
 */

#ifndef TG_REDIS_WAITING_H
#define TG_REDIS_WAITING_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "redis_keys.h"
#include "usage_pending.h"


#define TG_RECONCILE_KEPT       256     /* batches kept, at most */
#define TG_RECONCILE_CORRECTIONS 4096   /* counters' corrections waiting */
#define TG_WAITING_ARGS_MAX     1024    /* a kept batch's arguments */
#define TG_WAITING_ARG_MAX      4096    /* an argument's bytes */


/* a REPORT's correction of one counter that Redis took */
typedef struct {
    char            key[TG_REDIS_KEY_MAX];  /* the counter's hash */
    uint32_t        tpm;                /* 0: no tokens' change */
    int64_t         tokens;             /* the change: used - estimated */
    uint64_t        cost_nano;          /* spent from its budget */
    uint32_t        day;                /* the node's, when spent */
    uint32_t        month;
    uint64_t        budget_day_nano;    /* for how long its hash lives */
    uint64_t        budget_month_nano;
} tg_correction;


/*
 * A kept batch: its kind (tg_batch_kind) and its script's arguments after
 * the script itself - numkeys, the marker (its epoch), the keys, its
 * number, the rest - as argc strings, each ended by a NUL, in args.
 */
typedef struct {
    uint32_t        kind;
    uint32_t        argc;
    size_t          len;
    char           *args;
} tg_waiting_batch;


typedef struct tg_waiting {
    tg_waiting_batch        *batches;   /* in their order */
    size_t                   nbatches;
    tg_correction           *corr;
    size_t                   ncorr;
    tg_usage_pending_entry  *usage;
    size_t                   nusage;
} tg_waiting;


/* what it holds freed, and it emptied (inline: both sides use it) */

static inline void
tg_waiting_free(tg_waiting *w)
{
    size_t  i;

    for (i = 0; i < w->nbatches; i++) {
        free(w->batches[i].args);
    }

    free(w->batches);
    free(w->corr);
    free(w->usage);
    memset(w, 0, sizeof(tg_waiting));
}


#endif /* TG_REDIS_WAITING_H */
