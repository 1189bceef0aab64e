/*
 * The budgets' spend across a restart (docs/policy.md, "One node"): a
 * small state file, written atomically off the event loop, read once at
 * start before the first decision.
 *
 *   the file     "tailgate-limits 2\n", then one line per counter with a
 *                budget spent this day or month,
 *                "b DAY DS MONTH MS OWN_DAY OWN_DS OWN_MONTH OWN_MS
 *                AWAY_DAY AWAY_DS AWAY_MONTH AWAY_MS KEY\n" (the
 *                counter's budget, own_budget and away_budget; numbers in
 *                decimal, the key in hex), then what waits for Redis
 *                (redis_waiting.h): a kept batch, in their order,
 *                "k KIND ARGC ARG...\n" (its script's arguments after
 *                the script, each in hex, "-" for an empty one: numkeys,
 *                the marker with its epoch, the keys, its number, ...);
 *                a correction, "c TPM TOKENS COST DAY MONTH BUDGET_DAY
 *                BUDGET_MONTH KEY\n"; a usage entry, "u DAY KIND
 *                REQUESTS TOKENS COST NAME\n"; then
 *                "end N CHECK\n": N lines, CHECK the FNV-1a 64 of every
 *                byte before "end" in hex.  A file without its end, or
 *                whose check or count is off, or with a line of none of
 *                these shapes, is refused whole.  A file of version 1
 *                (budgets only) is read too.
 *   the saver    a thread that writes what the loop snapshotted: temp
 *                file, fsync, rename, so that the loop never waits on
 *                the disk (but for tg_limits_saver_flush()); a reconcile
 *                asks with tg_limits_saver_flush_async() and holds its
 *                batches until the thread says it is written.  A write
 *                that failed is made again at the next tick, once a
 *                second.
 */

#ifndef TG_LIMITS_STATE_H
#define TG_LIMITS_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "limits_store.h"
#include "redis_waiting.h"

struct tg_policy;

#define TG_LIMITS_STATE_MAX  (64u * 1024 * 1024)    /* larger: refused */
#define TG_LIMITS_STATE_MAX_TEXT  "64 MB"

/*
 * A snapshot of the store's budgets (copied, no formatting: cheap on the
 * loop), its text for the file, and both at once.  NULL, -1: out of memory.
 */
typedef struct tg_state_snap  tg_state_snap;

tg_state_snap *tg_limits_state_snap(tg_limit_store *s, int64_t wall_s);
void tg_limits_state_snap_free(tg_state_snap *sn);
int tg_limits_state_text(const tg_state_snap *sn, char **text, size_t *len);

int tg_limits_state_format(tg_limit_store *s, int64_t wall_s, char **text,
    size_t *len);

/*
 * Puts the budgets of a state text into the store: those of this UTC day
 * and month, of counters whose profile or provider the policy still has;
 * and what waited for Redis (its "k", "c" and "u" lines) into waiting,
 * emptied first, when the policy has a "redis" block (NULL: dropped).
 * All or nothing: -1 with why set when the text is refused.
 */
int tg_limits_state_parse(tg_limit_store *s, const struct tg_policy *policy,
    const char *text, size_t len, int64_t wall_s, struct tg_waiting *waiting,
    size_t *restored, char *why, size_t why_len);

/*
 * Reads path into the store, and what waited for Redis into waiting
 * (NULL: dropped), logging what it restored or why not.
 */
void tg_limits_state_load(tg_limit_store *s, const struct tg_policy *policy,
    const char *path, struct tg_waiting *waiting);

/* temp file, fsync, rename; -1 with err set */
int tg_limits_state_write(const char *path, const char *text, size_t len,
    char *err, size_t err_len);


typedef struct tg_limits_saver  tg_limits_saver;

tg_limits_saver *tg_limits_saver_new(const char *path);

/* a reload may name another file */
void tg_limits_saver_path(tg_limits_saver *sv, const char *path);

/*
 * Hands the thread a snapshot when something was spent since the last
 * one and a second has passed (force: at once, for SIGHUP).  Logs what
 * the thread could not write.
 */
void tg_limits_saver_tick(tg_limits_saver *sv, tg_limit_store *s,
    bool force);

/*
 * A snapshot written before it returns, whatever was spent: the loop waits
 * for the disk, so only for what must be on it before the loop goes on.
 */
void tg_limits_saver_flush(tg_limits_saver *sv, tg_limit_store *s);

/*
 * A snapshot of now handed to the thread, whatever was spent, without
 * waiting: once it (or a newer one) is written - or failed, logged at the
 * next tick - the thread calls written(arg), from the thread (it may only
 * wake the loop: ev_async_send).  tg_limits_saver_flushed() then says
 * whether every flush asked so far is written (a reconcile's batches wait
 * for that before they leave).
 */
void tg_limits_saver_flush_async(tg_limits_saver *sv, tg_limit_store *s,
    void (*written)(void *arg), void *arg);
bool tg_limits_saver_flushed(tg_limits_saver *sv);

/* the last save, written before it returns; NULL is fine */
void tg_limits_saver_free(tg_limits_saver *sv, tg_limit_store *s);

#endif /* TG_LIMITS_STATE_H */
