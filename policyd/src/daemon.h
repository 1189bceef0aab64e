/*
 * The daemon's record: what the files of its event loop share.  server.c
 * owns it and runs the loop; conn.c, answer.c, frames.c and queue.c work on
 * it below, and never call back up into server.c.  What they need of the
 * loop is here: the time, a way to ask for work "soon", which server.c's
 * timer then does, and the hook server.c sets for a connection that closes.
 */

#ifndef TG_DAEMON_H
#define TG_DAEMON_H

#include <stdbool.h>
#include <stdint.h>

#include <ev.h>

#include "decide.h"
#include "policy.h"
#include "probe.h"
#include "proto.h"
#include "sock.h"
#include "state.h"
#include "status.h"


typedef struct tg_server  tg_server;
typedef struct tg_conn    tg_conn;
typedef struct tg_waiter  tg_waiter;
typedef struct tg_admin   tg_admin;
typedef struct tg_deferred  tg_deferred;
typedef struct tg_redis  tg_redis;
typedef struct tg_jwks_keeper  tg_jwks_keeper;
typedef struct tg_model_fetcher  tg_model_fetcher;

/* redis.c, for the status */
void tg_redis_view_of(const tg_redis *rd, double now, tg_redis_view *v);


typedef struct {
    tg_str         *items;
    size_t          n;
    size_t          cap;
} tg_strv;


struct tg_server {
    struct ev_loop  *loop;

    const char      *file;
    tg_policy_opts   opts;
    tg_policy       *policy;
    tg_state        *state;

    tg_sock          listener;
    ev_io            accept_w;
    ev_timer         accept_retry;
    ev_signal        sighup;
    ev_signal        sigterm;
    ev_signal        sigint;
    ev_signal        sigusr1;       /* the usage log, opened again */


    tg_conn         *conns;
    size_t           nconns;
    uint64_t         next_conn_id;

    /* a connection closes: its queue and leases go; returns the leases */
    size_t         (*conn_closed)(tg_server *srv, tg_conn *c);

    /* a DECIDE that Redis found no room for, decided again (defer.c) */
    void           (*decide_again)(tg_conn *c, const uint8_t *frame,
                       const tg_frame_hdr *h);

    uint8_t         *out;           /* a reply frame is built here */
    size_t           out_cap;
    char            *json;          /* the /v1/models body */
    size_t           json_cap;

    tg_strv          tags;
    tg_strv          allow;
    tg_strv          exclude;

    tg_prober       *prober;
    ev_timer         health_w;      /* re-judges every provider */
    ev_timer         soon_w;        /* runs what frames asked for, after */
    ev_timer         cooldown_w;    /* re-judges when a cooldown ends */
    bool             health_due;
    bool             wake_due;
    bool             invalidate_due;    /* INVALIDATE every worker */
    double           started;

    tg_deferred     *deferred;      /* in order of arrival (defer.c) */
    tg_deferred     *deferred_tail;
    ev_check         defer_w;       /* after every frame of a loop pass */
    ev_timer         recovery_w;    /* the end of the lease recovery */
    uint64_t         recover_until_ms;  /* 0: not recovering */

    tg_waiter       *waiters;       /* in order of arrival */
    tg_waiter       *waiters_tail;
    size_t           nwaiters;

    tg_admin        *admin;

    struct tg_usage *usage;         /* usage.h: tallies and the usage log */
    struct tg_limits_saver *limits_saver;   /* limits_state.h: budgets
                                               kept across restarts */
    ev_async         persisted_w;   /* its thread wrote a flush */
    tg_redis        *redis;         /* redis.c; NULL: this node alone */
    struct tg_otlp  *otlp;          /* otlp_export.c; NULL: no traces */
    tg_jwks_keeper  *jwks;          /* jwks.c: the key sets it keeps */
    tg_model_fetcher *model_lists;  /* model_fetch.c: providers' lists */

    /* the DECIDE tg_read_facts() read last, for redis.c to decide again */
    const uint8_t   *facts_frame;
    tg_frame_hdr     facts_hdr;
};


static inline uint64_t
tg_now_ms(const tg_server *srv)
{
    return (uint64_t) (ev_now(srv->loop) * 1000);
}


/*
 * Work for when no connection's callback is running, since answering
 * others may close connections: judging the providers again (health),
 * deciding again for those waiting (wake).  server.c's soon_w does it.
 */

static inline void
tg_soon(tg_server *srv, bool health, bool wake)
{
    srv->health_due |= health;
    srv->wake_due |= wake;

    if ((srv->health_due || srv->wake_due) && !ev_is_active(&srv->soon_w)) {
        ev_timer_start(srv->loop, &srv->soon_w);
    }
}


/* what the status shows of the daemon, now */

static inline tg_status_view
tg_status_view_of(const tg_server *srv)
{
    tg_status_view  v;

    v.policy = srv->policy;
    v.state = srv->state;
    v.now_ms = tg_now_ms(srv);
    v.uptime = ev_now(srv->loop) - srv->started;
    v.connections = srv->nconns;
    v.queued = srv->nwaiters;
    v.usage = srv->usage;
    v.has_redis = false;
    v.has_otlp = false;

    if (srv->otlp != NULL) {
        tg_otlp_stats_get(srv->otlp, &v.otlp_view);
        v.has_otlp = true;
    }

    if (srv->redis != NULL) {
        tg_redis_view_of(srv->redis, ev_now(srv->loop), &v.redis_view);
        v.has_redis = true;
    }

    return v;
}


#endif /* TG_DAEMON_H */
