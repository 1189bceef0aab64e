/*
 * Limits at run time (docs/policy.md, "Limits").
 *
 *   the window   rpm and tpm are GCRA windows (the generic cell rate
 *                algorithm, in its leaky-bucket form): a counter owes
 *                "debt" that drains at the limit's rate, and a request fits
 *                while what it adds keeps the debt within one period's
 *                worth.  Pure functions of a window and the time.
 *   the store    where the counters live, behind tg_limit_store_ops: one
 *                call takes every window of a decision at once, all or
 *                nothing, so that a store shared by several nodes can do
 *                it in one script.  limits_store.c keeps them in memory.
 *   admission    limits_admit.c: which counters a decision touches, the
 *                429 when one is full, the x-ratelimit-* text, and the
 *                hold a lease keeps until its REPORT corrects the tokens
 *                and gives the concurrency slot back.
 *
 * Time is in milliseconds of policyd's monotonic clock.
 */

#ifndef TG_LIMITS_STORE_H
#define TG_LIMITS_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "limits_conf.h"


/*
 * A window of a limit of N per period P (ms).  "debt" is in units of
 * 1/P: a request (or token) adds P, and N drain away every millisecond,
 * so that the limit's N are what one period holds.  Kept independent of N
 * so that a reload that changes the limit keeps what was used.
 */
typedef struct {
    uint64_t    debt;
    uint64_t    at_ms;                  /* debt is as of then */
    uint32_t    limit;                  /* that it was charged with last */
} tg_window;

#define TG_WAIT_NEVER  UINT64_MAX       /* a cost larger than the limit */

/* the debt now */
uint64_t tg_window_level(const tg_window *w, uint32_t limit, uint64_t now_ms);

/* Whether cost more fits now; else *wait_ms until it would (or NEVER). */
bool tg_window_fits(const tg_window *w, uint32_t limit, uint64_t cost,
    uint64_t now_ms, uint64_t *wait_ms);

/* Adds cost (a negative one gives back, never below empty). */
void tg_window_charge(tg_window *w, uint32_t limit, int64_t cost,
    uint64_t now_ms);

/* How many of cost 1 still fit now; ms until the window is empty again. */
uint32_t tg_window_remaining(const tg_window *w, uint32_t limit,
    uint64_t now_ms);
uint64_t tg_window_reset_ms(const tg_window *w, uint32_t limit,
    uint64_t now_ms);


/* budgets: spend per UTC day and month, in pico-units */
typedef struct {
    uint64_t    day_spent;
    uint64_t    month_spent;
    uint32_t    day;                    /* days since 1970, UTC */
    uint32_t    month;                  /* months since 1970 */
} tg_budget;

/* brings the periods up to now (wall clock, seconds): a new day is empty */
void tg_budget_roll(tg_budget *b, int64_t now_s);
void tg_budget_spend(tg_budget *b, uint64_t cost, int64_t now_s);
/* seconds until the period that is over its amount ends; 0: none is */
uint32_t tg_budget_over(const tg_budget *b, const tg_limit_profile *lp,
    int64_t now_s, bool *monthly);


/* what one counter holds: one client, tenant, route or provider */
typedef struct tg_counter {
    char               *key;            /* "c\037PROFILE\037CLIENT" ... */
    size_t              key_len;
    tg_window           requests;
    tg_window           tokens;
    tg_budget           budget;

    /*
     * With Redis (the store's nodes != 0), requests, tokens and budget
     * above are Redis's view, learned from each script's answer and
     * charged here between answers; these are this node's own takes
     * alone, at its share of each limit, for when Redis is away.
     */
    tg_window           own_requests;
    tg_window           own_tokens;
    tg_budget           own_budget;

    /*
     * What this node took and spent while Redis was away (Redis never
     * saw it), sent to Redis when it answers again (tg_counter_reconcile)
     * and then cleared.  The windows drain at the whole limit's rate, as
     * Redis's would have: what they hold is what Redis would still owe.
     */
    tg_window           away_requests;
    tg_window           away_tokens;
    tg_budget           away_budget;

    uint64_t            cooldown_until_ms;  /* a provider: left alone */
    uint32_t            in_flight;      /* concurrency slots held here */

    /*
     * With Redis: the slots its set held across the nodes when Redis last
     * refused one (tg_counter_learn_slots), counted instead of in_flight
     * when larger until slots_until_ms, so that the decision decided
     * again is refused as Redis refused it.
     */
    uint32_t            slots_held;
    uint64_t            slots_until_ms;
    uint32_t            refs;           /* holds that point at it */
    struct tg_counter  *next;           /* hash chain */
} tg_counter;


typedef enum {
    TG_LIMIT_NONE = 0,
    TG_LIMIT_REQUESTS,
    TG_LIMIT_TOKENS,
    TG_LIMIT_CONCURRENT,
    TG_LIMIT_TOO_LARGE,                 /* more tokens than the whole tpm */
    TG_LIMIT_BUDGET
} tg_limit_kind;


/* one counter's part of a decision */
typedef struct {
    tg_counter     *counter;
    uint32_t        rpm;                /* its limits; 0: none */
    uint32_t        tpm;
    uint32_t        concurrent;         /* own: this node's share */
    bool            enforce;            /* false: counted, never refused */
    bool            own;                /* Redis is away: this node's own
                                           windows, rpm, tpm and concurrent
                                           its share */
    uint32_t        requests;           /* to add: 0 or 1 */
    uint32_t        tokens;
    const tg_limit_profile *budget;     /* NULL: no budget */

    /* when it does not fit */
    tg_limit_kind   refused;
    uint64_t        wait_ms;
    bool            monthly;            /* a budget: the month's is spent */
} tg_limit_take;


typedef struct tg_limit_store  tg_limit_store;

struct tg_waiting;

/*
 * What a store does.  take() checks every item and adds to all of them, or
 * to none when one does not fit (its "refused" and "wait_ms" then say why:
 * the index is returned).  A store shared by several nodes must do that
 * atomically, in one round trip.  Every operation works at the store's
 * clock (tg_limit_store_clock()), the time of the event being handled.
 */
typedef struct {
    /* the counter of a key, made on first use, with a reference; NULL:
       out of memory */
    tg_counter   *(*counter)(tg_limit_store *s, const char *key, size_t len);
    void          (*unref)(tg_limit_store *s, tg_counter *c);

    /* the counter of a key as it is, NULL when there is none */
    const tg_counter *(*peek)(const tg_limit_store *s, const char *key,
                          size_t len);

    /* SIZE_MAX when all were taken, else the index of the one refused */
    size_t        (*take)(tg_limit_store *s, tg_limit_take *items, size_t n);

    void          (*tokens)(tg_limit_store *s, tg_counter *c, uint32_t tpm,
                      int64_t delta, bool own);
    /* a take that was not granted after all (Redis refused it) */
    void          (*give_back)(tg_limit_store *s, tg_counter *c,
                      uint32_t rpm, uint32_t requests, uint32_t tpm,
                      uint32_t tokens, bool own);
    void          (*spend)(tg_limit_store *s, tg_counter *c, uint64_t cost);
    void          (*release)(tg_limit_store *s, tg_counter *c);

    /* a provider asked to be left alone this long from now */
    void          (*cool)(tg_limit_store *s, tg_counter *c, uint32_t ms);

    /* drops the idle counters and those keep() says no to */
    void          (*sweep)(tg_limit_store *s,
                      bool (*keep)(const tg_counter *c, void *arg),
                      void *arg);
    size_t        (*count)(const tg_limit_store *s);
    /* every counter, in no order; fn must not add or drop counters */
    void          (*each)(tg_limit_store *s,
                      void (*fn)(tg_counter *c, void *arg), void *arg);
    void          (*free)(tg_limit_store *s);
} tg_limit_store_ops;

struct tg_limit_store {
    const tg_limit_store_ops  *ops;
    uint64_t                   now_ms;  /* monotonic */
    int64_t                    wall_s;  /* UTC, for budget days */
    uint64_t                   swept_ms;    /* the last sweep */
    uint64_t                   cool_until_ms;   /* the last cooldown's end */
    uint64_t                   spends;  /* budget spends so far: the state
                                           file is saved when it moved */

    /*
     * Shared through Redis by this many nodes; 0: this node alone.  away:
     * Redis cannot be asked now, so takes go by the node's own windows
     * at its share (tg_limit_share) of every limit.
     */
    uint32_t                   nodes;
    bool                       away;

    /*
     * Has the state file written as it is now (limits_state.h), off the
     * loop: a reconcile calls it once it cleared the away tallies it puts
     * in batches, and holds them until persisted(persisted_arg) says the
     * write is done (on the loop), so that a restart after Redis applied
     * them does not send them again.  NULL: no state file (nothing held).
     */
    void                     (*persist)(void *arg);
    void                      *persist_arg;
    void                     (*persisted)(void *arg);
    void                      *persisted_arg;

    /*
     * What waits for Redis (redis_waiting.h), copied into w for the state
     * file; -1: out of memory.  NULL: nothing waits (no Redis).  waits
     * counts its changes: the file is saved when it moved, as spends.
     */
    int                      (*waiting)(void *arg, struct tg_waiting *w);
    void                      *waiting_arg;
    uint64_t                   waits;
};


/* a node's share of a limit shared by nodes: never below 1; 0: none */
uint32_t tg_limit_share(uint32_t limit, uint32_t nodes);
uint64_t tg_limit_share64(uint64_t amount, uint32_t nodes);

/*
 * What Redis said a counter holds, as of now: debts in the window's
 * units (limits.c), spend in pico-units of this day and month.
 */
void tg_counter_learn(tg_counter *c, uint32_t rpm, uint32_t tpm,
    uint64_t requests_debt, uint64_t tokens_debt, uint64_t day_spent,
    uint64_t month_spent, uint64_t now_ms, int64_t wall_s);


/* what Redis refused a slot with: held across the nodes, as of now */
#define TG_LIMIT_SLOTS_SEEN_MS  1000    /* so long (the 429's Retry-After) */

void tg_counter_learn_slots(tg_counter *c, uint32_t held, uint64_t now_ms);


/*
 * Reconciling (docs/policy.md, "When Redis comes back").  A take, a give
 * back or a tokens' correction made at this node's share while Redis was
 * away (share_rpm, share_tpm: the limits it was charged with) is tallied
 * with tg_counter_away_charge(); a spend Redis did not get with
 * tg_counter_away_spend().
 */
void tg_counter_away_charge(tg_counter *c, uint32_t nodes,
    uint32_t share_rpm, int64_t requests, uint32_t share_tpm,
    int64_t tokens, uint64_t now_ms);
void tg_counter_away_spend(tg_counter *c, uint64_t cost, int64_t wall_s);

/* what a counter's tallies add to Redis's view of it, as of now */
typedef struct {
    uint32_t    rpm;                    /* the window's limit; 0: nothing */
    uint64_t    requests_debt;          /* in the window's units */
    uint32_t    tpm;
    uint64_t    tokens_debt;
    uint32_t    day;                    /* days since 1970 of day_spent */
    uint64_t    day_spent;              /* pico-units */
    uint32_t    month;
    uint64_t    month_spent;
} tg_reconcile_part;

/* false: nothing to send (all drained, nothing spent this day or month) */
bool tg_counter_reconcile(const tg_counter *c, uint64_t now_ms,
    int64_t wall_s, tg_reconcile_part *out);

/* the tallies sent: cleared */
void tg_counter_reconciled(tg_counter *c);


/* limits_store.c: the one-node store */
tg_limit_store *tg_limit_store_memory(void);

/* sets the store's clock to now; the monotonic clock's now, in ms */
void tg_limit_store_clock(tg_limit_store *s);
uint64_t tg_limit_clock_ms(void);


/* limits_policy.c: look-ups in a policy's limits */
struct tg_policy;
const tg_limit_profile *tg_limits_profile(const struct tg_policy *policy,
    const char *name, size_t len);
const tg_limit_profile *tg_limits_tenant(const struct tg_policy *policy,
    const char *name, size_t len);


#endif /* TG_LIMITS_STORE_H */
