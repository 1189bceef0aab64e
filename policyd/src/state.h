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

#include "policy.h"


typedef enum {
    TG_OUTCOME_OK = 0,
    TG_OUTCOME_CLIENT_ERROR,
    TG_OUTCOME_RATE_LIMITED,
    TG_OUTCOME_SERVER_ERROR,
    TG_OUTCOME_CONNECT_ERROR,
    TG_OUTCOME_TIMEOUT,
    TG_OUTCOME_CLIENT_ABORT,
    TG_OUTCOME_STREAM_BROKEN,
    TG_OUTCOME_NOT_SENT,
    TG_OUTCOME_UNKNOWN,         /* absent or not one of the above */
    TG_OUTCOME_COUNT
} tg_outcome;


typedef struct tg_pstate {
    char           *name;
    bool            in_policy;          /* in the policy bound last */
    bool            down;               /* skipped by decisions */
    uint32_t        in_flight;          /* leases held */
    uint32_t        max_concurrency;    /* from the policy bound last */

    uint64_t        decisions;          /* times chosen */
    uint64_t        reports[TG_OUTCOME_COUNT];
} tg_pstate;


typedef struct tg_lease {
    uint32_t         id;
    tg_pstate       *provider;
    uint64_t         owner;             /* connection id */
    uint64_t         granted_ms;
    struct tg_lease  *next;             /* hash chain */
} tg_lease;


typedef struct tg_state {
    tg_pstate      **slots;             /* every provider ever bound */
    size_t           nslots;
    size_t           slots_cap;

    tg_pstate      **bound;             /* policy provider index -> slot */
    size_t           nbound;

    tg_lease       **buckets;
    size_t           nbuckets;          /* a power of two */
    size_t           nleases;
    uint32_t         next_lease;

    uint64_t         decisions;         /* DECISION frames sent */
    uint64_t         refusals;          /* of those, status != 200 */
    uint64_t         reports[TG_OUTCOME_COUNT];
    uint64_t         reports_without_lease;
    uint64_t         leases_dropped;    /* freed by a connection close */
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
const tg_pstate *tg_state_provider(const tg_state *st, size_t i);
tg_pstate *tg_state_find(const tg_state *st, const char *name);

/*
 * A lease on the bound policy's provider i for connection owner, when the
 * provider has max_concurrency; *lease is 0 when none is needed.  Returns 0,
 * or -1 when out of memory or i is not bound.
 */
int tg_state_lease_acquire(tg_state *st, size_t i, uint64_t owner,
    uint64_t now_ms, uint32_t *lease);

const tg_lease *tg_state_lease(const tg_state *st, uint32_t id);

/* Ends a lease: 1, or 0 when there is no such lease. */
int tg_state_lease_release(tg_state *st, uint32_t id);

/* Ends every lease of a connection; returns how many. */
size_t tg_state_release_owner(tg_state *st, uint64_t owner);

/* A REPORT: counts the outcome, ends the lease (0 = none); 1 if it did. */
int tg_state_report(tg_state *st, uint32_t lease, tg_outcome outcome,
    uint32_t count);

/* Counts a DECISION; provider i or SIZE_MAX when none was chosen. */
void tg_state_count_decision(tg_state *st, unsigned status, size_t i);

tg_outcome tg_outcome_parse(const char *s, size_t len);
const char *tg_outcome_name(tg_outcome outcome);


#endif /* TG_STATE_H */
