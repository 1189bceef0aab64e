/*
 * What policyd knows, for operators: every provider's state, capacity,
 * probes, outcomes and latency, every route's decisions and outcomes; as
 * JSON or as Prometheus text.  Served to the module's tailgate_status
 * handler (STATUS frames) and on the admin socket.
 */

#ifndef TG_STATUS_H
#define TG_STATUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "otlp_export.h"
#include "policy.h"
#include "state.h"


/* the numbered batches of the reconcile, as redis_reconcile.c counts them */
typedef struct {
    uint64_t        sent;           /* batches sent once */
    uint64_t        resent;         /* sent again on a new connection */
    uint64_t        applied;        /* answered: Redis applied them */
    uint64_t        skipped;        /* answered: applied already */
    uint64_t        pending;        /* kept now: not answered yet */
    uint64_t        dropped;        /* refused by Redis, or not kept */
    uint64_t        usage_pending;  /* usage entries waiting */
    uint64_t        usage_dropped;  /* usage entries refused: table full */

    /* of them, the REPORTs' corrections (policyd.redis.reconcile
       .corrections): batches, then counters' corrections */
    uint64_t        corr_sent;
    uint64_t        corr_resent;
    uint64_t        corr_applied;
    uint64_t        corr_skipped;
    uint64_t        corr_waiting;   /* counters' corrections in the table */
    uint64_t        corr_dropped;   /* refused: table full, or the batch */
} tg_reconcile_view;


/* the shared Redis, as redis.c sees it */
typedef struct {
    const char     *state;          /* "up", "down", "connecting" */
    const char     *node;
    const char     *on_error;       /* "local", "closed" */
    double          since_s;        /* in that state for */
    uint64_t        timeouts;       /* decisions that did not wait */
    uint64_t        errors;
    double          now;            /* for the usage's age */
    /* the day's usage counters as last read from Redis (redis.c owns
       them, and outlives every status) */
    const struct tg_redis_usage *usage;
    tg_reconcile_view   reconcile;
} tg_redis_view;


/* what the status is made of: the daemon fills it in (daemon.h) */
typedef struct {
    const tg_policy  *policy;
    const tg_state   *state;
    uint64_t          now_ms;
    double            uptime;           /* seconds since policyd started */
    size_t            connections;      /* of workers */
    size_t            queued;           /* requests waiting for a slot */
    const struct tg_usage  *usage;      /* NULL: none counted */
    bool              has_redis;        /* false: no "redis" block */
    tg_redis_view     redis_view;       /* a copy: the view is passed by value */
    bool              has_otlp;         /* false: traces are not exported */
    tg_otlp_stats     otlp_view;
} tg_status_view;


/* A malloc()ed body and its length in *len, or NULL when out of memory. */
char *tg_status_json(const tg_status_view *v, size_t *len);
char *tg_status_prometheus(const tg_status_view *v, size_t *len);


#endif /* TG_STATUS_H */
