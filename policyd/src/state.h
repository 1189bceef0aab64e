/*
 * Runtime state that survives policy reloads: per provider (by name) the
 * requests in flight, a down flag and counters; the concurrency leases.
 *
 * Provider records are found by name and never move or disappear while the
 * state lives, so a lease points at its provider record, never into a
 * policy.  tg_state_bind() maps a policy's provider indexes to the records;
 * call it for every policy before it is used with this state.
 */

#ifndef TG_STATE_H
#define TG_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "limits_store.h"
#include "policy.h"


/* what became of an attempt, as REPORT said (proto/tailgate_names.h) */
#define TG_X(id, name, fallback)  TG_OUTCOME_ ## id,
typedef enum {
    TG_OUTCOMES(TG_X)
    TG_OUTCOME_UNKNOWN,         /* absent or not one of the above */
    TG_OUTCOME_COUNT
} tg_outcome;
#undef TG_X


/* what policyd knows of a provider (docs/policy.md, "Health") */
typedef enum {
    TG_HEALTH_UP = 0,
    TG_HEALTH_BUSY,                     /* it says it has no capacity */
    TG_HEALTH_STUCK,                    /* a request runs far too long */
    TG_HEALTH_DOWN,
    TG_HEALTH_COUNT
} tg_health;


#define TG_RECENT_ERRORS    8
#define TG_LATENCIES        128
#define TG_NOTE_MAX         96
#define TG_ROUTES_KEPT      4096
#define TG_COOLDOWN_MAX_MS  86400000    /* a 429's Retry-After, at most */


/* one active probe: what the provider said about itself */
typedef struct {
    bool            ok;                 /* reachable and ready */
    bool            busy;               /* reachable, no capacity left */
    unsigned        status;             /* HTTP status, 0: no answer */
    uint32_t        ms;
    int32_t         slots_total;        /* llama.cpp; -1: unknown */
    int32_t         slots_busy;
    int32_t         running;            /* vLLM; -1: unknown */
    int32_t         waiting;
    char            note[TG_NOTE_MAX];  /* "connection refused", ... */
} tg_probe_result;


typedef struct {
    uint64_t        at_ms;
    tg_outcome      outcome;
    uint32_t        status;
} tg_recent_error;


typedef struct tg_pstate {
    char           *name;
    bool            in_policy;          /* in the policy bound last */
    uint32_t        in_flight;          /* leases held */
    uint32_t        others;             /* held by other nodes (redis.c) */
    uint32_t        max_concurrency;    /* from the policy bound last */
    tg_health_conf  conf;               /* likewise */
    uint32_t        queued;             /* requests waiting for a slot */

    /* the state decisions use, as tg_health_eval() set it last */
    tg_health       health;
    uint64_t        health_since_ms;
    char            why[TG_NOTE_MAX];

    /* active probes */
    tg_probe_result probe;
    uint64_t        probe_at_ms;        /* 0: never probed */
    uint32_t        probe_ok_run;
    uint32_t        probe_fail_run;
    uint32_t        probe_own;          /* our leases when it was taken */
    bool            probe_down;

    /* what the module reported */
    uint32_t        fail_run;           /* failures in a row */
    bool            passive_down;
    uint64_t        down_until_ms;      /* then tried again */

    uint64_t        oldest_lease_ms;    /* age, as of the last evaluation */

    uint64_t        decisions;          /* times chosen */
    uint64_t        reports[TG_OUTCOME_COUNT];
    uint32_t        latencies[TG_LATENCIES];    /* upstream ms, a ring */
    size_t          nlatencies;
    size_t          latency_pos;
    tg_recent_error errors[TG_RECENT_ERRORS];   /* a ring */
    size_t          nerrors;
    size_t          error_pos;
} tg_pstate;


/* what the module reported for a route, and how it was decided */
typedef struct tg_rstate {
    char           *name;
    uint64_t        decided[6];         /* 200, 400, 403, 404, 429, other */
    uint64_t        reports[TG_OUTCOME_COUNT];
} tg_rstate;


struct tg_report;

typedef struct tg_lease {
    uint32_t         id;
    tg_pstate       *provider;
    uint64_t         owner;             /* connection id */
    uint64_t         granted_ms;
    struct tg_limit_hold *hold;         /* limits it counts, or NULL */
    struct tg_lease  *next;             /* hash chain */
} tg_lease;


/*
 * A lease a worker re-announced (HOLD) under an id that this policyd had
 * already given to another: kept under a new id, found by the old one on
 * its owner's connection.
 */
typedef struct {
    uint64_t         owner;
    uint32_t         announced;
    uint32_t         id;
} tg_lease_alias;


typedef struct tg_state {
    tg_pstate      **slots;             /* every provider ever bound */
    size_t           nslots;
    size_t           slots_cap;

    tg_pstate      **bound;             /* policy provider index -> slot */
    size_t           nbound;

    tg_rstate      **routes;            /* every route ever reported */
    size_t           nroutes;
    size_t           routes_cap;

    tg_lease       **buckets;
    size_t           nbuckets;          /* a power of two */
    size_t           nleases;
    uint32_t         next_lease;
    tg_lease_alias  *aliases;
    size_t           naliases;
    size_t           aliases_cap;

    uint64_t         decisions;         /* DECISION frames sent */
    uint64_t         refusals;          /* of those, status != 200 */
    uint64_t         reports[TG_OUTCOME_COUNT];
    uint64_t         reports_without_lease;
    uint64_t         leases_dropped;    /* freed by a connection close */
    uint64_t         leases_expired;    /* never reported: lease_ttl_ms */
    uint64_t         leases_adopted;    /* re-announced by a worker */

    tg_limit_store  *limits;            /* limits_store.h: the counters */

    /*
     * Told when a lease ends, any way, and when a provider's 429 asks for
     * time: how redis.c shares them with the other nodes.  NULL: alone.
     */
    void           (*lease_ended)(void *arg, const struct tg_lease *l);
    void           (*cooled)(void *arg, const tg_pstate *ps, uint32_t ms);
    /* every REPORT, after the limits counted it: deltas[i] is what it
       changed part i of l's hold's tokens by (l NULL: no lease) */
    void           (*reported)(void *arg, const struct tg_lease *l,
                       const struct tg_report *r, const int64_t *deltas);
    void            *hook_arg;
} tg_state;


tg_state *tg_state_new(void);
void tg_state_free(tg_state *st);

/*
 * Makes policy's providers the bound ones: finds or creates each record by
 * name and copies max_concurrency.  0, or -1 when out of memory (then the
 * state is bound as before).
 */
int tg_state_bind(tg_state *st, const tg_policy *policy);

/* The record of the bound policy's provider i; NULL if st is NULL. */
tg_pstate *tg_state_provider(const tg_state *st, size_t i);
tg_pstate *tg_state_find(const tg_state *st, const char *name);

/*
 * A lease on the bound policy's provider i for connection owner, when the
 * provider has max_concurrency; *lease is 0 when none is needed.  Returns 0,
 * or -1 when out of memory or i is not bound.
 */
int tg_state_lease_acquire(tg_state *st, size_t i, uint64_t owner,
    uint64_t now_ms, uint32_t *lease);

/*
 * The same for a decision whose limits must be told how it ended: a lease
 * carrying hold (limits_admit.c) even when the provider has no
 * max_concurrency.  The lease owns hold from then on, also on failure.
 */
int tg_state_lease_hold(tg_state *st, size_t i, uint64_t owner,
    uint64_t now_ms, struct tg_limit_hold *hold, uint32_t *lease);

/*
 * A lease a worker still holds, re-announced after its connection (or the
 * policyd that granted it) went: kept for connection owner under the id the
 * worker knows when that id is free, else under a new one that REPORTs of
 * the announced id on that connection find.  0, or -1 when out of memory.
 * A provider without max_concurrency needs no lease: nothing is kept.
 */
int tg_state_lease_adopt(tg_state *st, tg_pstate *ps, uint64_t owner,
    uint64_t now_ms, uint32_t announced);

const tg_lease *tg_state_lease(const tg_state *st, uint32_t id);

/* Ends a lease: 1, or 0 when there is no such lease. */
int tg_state_lease_release(tg_state *st, uint32_t id);

/* Ends every lease of a connection; returns how many. */
size_t tg_state_release_owner(tg_state *st, uint64_t owner);

/* A REPORT, as the module sent it */
typedef struct tg_report {
    uint32_t        lease;              /* 0: none */
    uint64_t        owner;              /* the connection it came on */
    tg_outcome      outcome;
    uint32_t        count;
    uint32_t        http_status;
    uint32_t        upstream_ms;        /* a sum when count > 1 */
    const char     *provider;           /* NUL-terminated, or NULL */
    const char     *route;

    /*
     * What the attempt used (docs/protocol.md, "Usage"), read by usage.c;
     * the limits correct tokens per minute and spend budgets from it.
     * The strings point into the frame: data NULL when absent.
     */
    struct tg_report_str {
        const char     *data;
        size_t          len;
    }               request_id, client, tenant, endpoint, provider_model,
                    response_model;
    bool            stream;
    bool            tokens;             /* the token fields were sent */
    bool            estimated;
    bool            has_ttfb;
    uint32_t        attempt;
    uint32_t        total_ms;
    uint32_t        ttfb_ms;
    uint32_t        prompt_tokens;
    uint32_t        completion_tokens;
    uint32_t        total_tokens;
    uint32_t        cached_tokens;
    uint32_t        reasoning_tokens;
    uint32_t        audio_ms;
    uint32_t        characters;

    /*
     * Its cost in pico-units (1e-12) of the policy's currency, from the
     * prices of its provider model (price.h), 0 when it has none (price
     * NULL); tg_usage_cost() sets it before the REPORT is counted.
     */
    uint64_t                      cost;
    bool                          cost_overflow;
    const struct tg_price_entry  *price;

    /* how long a 429 asked the provider to be left alone (limits) */
    uint32_t                      cooldown_ms;
} tg_report;

/*
 * Counts the outcome for the provider and the route, feeds the provider's
 * health, ends the lease.  Returns the provider whose lease ended (a slot
 * came free), or NULL.
 */
tg_pstate *tg_state_report(tg_state *st, const tg_report *r, uint64_t now_ms);

/* Counts a DECISION; provider i or SIZE_MAX when none was chosen. */
void tg_state_count_decision(tg_state *st, unsigned status, size_t i,
    const char *route);

/* A route's record, created on first use; _find: NULL when there is none. */
tg_rstate *tg_state_route(tg_state *st, const char *name);
tg_rstate *tg_state_route_find(const tg_state *st, const char *name);

/*
 * Brings every provider's health up to date (lease ages, cooldowns):
 * returns how many changed state.  tg_health.c judges each one.
 */
size_t tg_state_evaluate(tg_state *st, uint64_t now_ms);

/* health.c */
void tg_health_probed(tg_pstate *ps, const tg_probe_result *r,
    uint64_t now_ms);
void tg_health_reported(tg_pstate *ps, tg_outcome outcome,
    uint32_t status, uint32_t upstream_ms, uint32_t count, uint64_t now_ms);
bool tg_health_evaluate(tg_pstate *ps, uint64_t now_ms);
bool tg_health_unavailable(const tg_pstate *ps);
bool tg_health_at_capacity(const tg_pstate *ps);
const char *tg_health_name(tg_health h);
void tg_probe_interpret(const tg_provider *pr, bool slots, unsigned status,
    const char *body, size_t len, tg_probe_result *r);
uint32_t tg_health_latency(const tg_pstate *ps, unsigned percent);

/* REPORT's text, read once at the edge; and back, for logs and status */
tg_outcome tg_outcome_parse(const char *s, size_t len);
const char *tg_outcome_name(tg_outcome outcome);

/* the TG_FALLBACK_* class of an outcome, 0 when a route cannot follow it */
unsigned tg_outcome_fallback(tg_outcome outcome);


#endif /* TG_STATE_H */
