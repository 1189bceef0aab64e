/*
 * A decision under the limits (docs/policy.md, "Limits"): after
 * tg_decide() chose a step, the counters of the client (its profile), its
 * tenant, the route and the provider are taken at once, or the decision
 * becomes a 429.  What was taken is kept in a hold on the decision's
 * lease, so that its REPORT can correct the tokens to what was used and
 * give the concurrency slot back.  Pure functions of the policy, the facts
 * and the store (at the store's clock): no I/O.
 */

#ifndef TG_LIMITS_ADMIT_H
#define TG_LIMITS_ADMIT_H

#include <stdbool.h>
#include <stdint.h>

#include "decide.h"
#include "limits_store.h"
#include "state.h"


#define TG_HOLD_PARTS  4                /* client, tenant, route, provider */


/* where a hold's concurrency slots are in Redis (redis.c, redis_slots.c) */
#define TG_HOLD_SLOTS_NONE    0         /* not there: none, or taken alone */
#define TG_HOLD_SLOTS_TAKING  1         /* the take script was sent */
#define TG_HOLD_SLOTS_HELD    2         /* there, renewed by the sync */

typedef struct tg_limit_hold {
    size_t          n;
    int             redis_slots;        /* TG_HOLD_SLOTS_* */
    struct {
        tg_counter *counter;
        uint32_t    rpm;                /* its limits when charged */
        uint32_t    tpm;
        uint32_t    requests;           /* charged: 0 or 1 */
        uint32_t    tokens;             /* charged: the estimate */
        uint32_t    concurrent;         /* its limit when charged */
        uint64_t    budget_day;         /* its budget then (pico-units) */
        uint64_t    budget_month;
        bool        enforce;            /* false: counted, never refused */
        bool        own;                /* taken while Redis was away */
        bool        slot;               /* holds a concurrency slot */
        bool        budget;             /* spends the request's cost */
    } parts[TG_HOLD_PARTS];
} tg_limit_hold;


#define TG_ADMIT_OK        0    /* *hold: NULL when nothing is to be kept */
#define TG_ADMIT_REFUSED   1    /* d is now the refusal */
#define TG_ADMIT_BUSY      2    /* the same, for a concurrency slot: a REPORT
                                   read in this pass may free one */
#define TG_ADMIT_ERROR    (-1)  /* out of memory */

/*
 * For a decision of status 200.  Later attempts of a request (attempt > 1)
 * are counted (tokens, slots) but never refused, and no request again.
 * Sets d->ratelimit and, when any limit applies, d->client_limited (such a
 * decision is not reused by workers).
 */
int tg_limits_admit(tg_limit_store *s, const tg_policy *policy,
    const tg_facts *facts, tg_decision *d, tg_limit_hold **hold);

/*
 * For a decision refused for another reason: d->ratelimit as the client's
 * windows are, when it has limits; nothing is taken.
 */
void tg_limits_peek(const tg_limit_store *s, const tg_policy *policy,
    const tg_facts *facts, tg_decision *d);

/*
 * Whether provider pr's own rpm and tpm take a request of tokens now, and
 * its cooldown has passed; else how long until they would (ms, at least
 * 1).  0: it fits.
 */
uint64_t tg_limits_provider_wait(const tg_limit_store *s,
    const tg_provider *pr, uint32_t tokens);

/* a provider's plan and cooldown as they are at now_ms, for the status */
typedef struct {
    uint32_t    requests_left;          /* of its rpm; 0 without one */
    uint32_t    tokens_left;
    uint64_t    cooldown_ms;            /* left of it; 0: none */
} tg_limits_provider_view;

void tg_limits_provider_seen(const tg_limit_store *s, const tg_provider *pr,
    uint64_t now_ms, tg_limits_provider_view *v);

/* A REPORT of the hold's lease: tokens corrected to those it used. */
void tg_limits_settle(tg_limit_store *s, tg_limit_hold *h,
    const tg_report *r);

/* The request's cost (pico-units) spent from the hold's budgets. */
void tg_limits_spend(tg_limit_store *s, tg_limit_hold *h, uint64_t cost);

/*
 * Whether Redis must take the hold's windows, budgets and concurrency
 * slots too (or, while it is away, on_redis_error says what happens): the
 * store is shared and the hold counts a window, a budget or a slot.
 */
bool tg_limits_shared(const tg_limit_store *s, const tg_limit_hold *h);

/* whether the hold holds a concurrency slot (of a client, tenant, route) */
bool tg_limits_has_slot(const tg_limit_hold *h);

/*
 * Redis did not take what the hold took here (refused, or did not answer):
 * its requests and tokens given back.  The hold stays, for its release.
 */
void tg_limits_untake(tg_limit_store *s, tg_limit_hold *h);

/* x-ratelimit-* of a hold as its counters are now (the DECISION's) */
void tg_limits_hold_text(const tg_limit_store *s, const tg_limit_hold *h,
    char *buf, size_t size);

/* The lease ended: slots given back, the hold freed.  NULL is fine. */
void tg_limits_release(tg_limit_store *s, tg_limit_hold *h);

/* A 429 that asked for time: provider name is left alone that long. */
void tg_limits_cooldown(tg_limit_store *s, const char *provider,
    uint32_t ms);

/* After a reload: the counters of profiles and providers gone are
   dropped, and the idle ones. */
void tg_limits_sweep(tg_limit_store *s, const tg_policy *policy);

/* whether a counter's profile or provider is in the policy (arg) */
bool tg_limits_keep(const tg_counter *c, void *arg);


#endif /* TG_LIMITS_ADMIT_H */
