/*
 * The daemon's event loop: it starts and stops everything, accepts the
 * workers' connections, reloads on SIGHUP, exits on SIGTERM and SIGINT,
 * and runs the timers that judge the providers and wake those waiting.
 *
 * The files below it (conn.c, frames.c, answer.c, queue.c, sock.c,
 * admin.c, status.c) never call up into this one: they ask for work with
 * tg_soon() (daemon.h), and the hooks set here tell them the rest.
 */

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>

#include "admin.h"
#include "conn.h"
#include "daemon.h"
#include "defer.h"
#include "frames.h"
#include "jwks.h"
#include "model_fetch.h"
#include "limits_admit.h"
#include "limits_state.h"
#include "log.h"
#include "policy.h"
#include "queue.h"
#include "redis.h"
#include "redis_waiting.h"
#include "server.h"
#include "status.h"
#include "usage.h"
#include "version.h"


#define TG_ACCEPT_BATCH       64
#define TG_ACCEPT_RETRY       1.0     /* seconds, after EMFILE */
#define TG_HEALTH_EVERY       0.25    /* seconds between judgements */
#define TG_SWEEP_EVERY_MS     5000    /* idle limits' counters dropped */


static void tg_listen_close(tg_server *srv);
static void tg_accept_cb(struct ev_loop *loop, ev_io *w, int revents);
static void tg_accept_retry_cb(struct ev_loop *loop, ev_timer *w,
    int revents);
static void tg_signal_cb(struct ev_loop *loop, ev_signal *w, int revents);
static void tg_reload(tg_server *srv);
static void tg_invalidate_all(tg_server *srv);
static void tg_shutdown(tg_server *srv);
static void tg_shutdown_drain(tg_server *srv);
static size_t tg_conn_closed(tg_server *srv, tg_conn *c);
static void tg_decide_again(tg_conn *c, const uint8_t *frame,
    const tg_frame_hdr *h);
static char *tg_admin_body(void *data, bool prometheus, size_t *len);
static bool tg_health_check(tg_server *srv);
static void tg_cooldown_arm(tg_server *srv, uint64_t now_ms);
static void tg_soon_cb(struct ev_loop *loop, ev_timer *w, int revents);
static void tg_health_cb(struct ev_loop *loop, ev_timer *w, int revents);
static void tg_probe_done(const tg_probe_answer *a, void *data);
static bool tg_leases_mark(tg_server *srv);
static void tg_leases_unmark(tg_server *srv);
static void tg_limits_persist(void *arg);
static void tg_limits_written(void *arg);
static void tg_limits_persisted_cb(struct ev_loop *loop, ev_async *w,
    int revents);
static const char *tg_limits_state_path(tg_server *srv, const tg_policy *p,
    char *buf, size_t size);


int
tg_server_run(const char *file, const tg_policy_opts *opts,
    tg_policy *policy)
{
    int         rc;
    tg_conn    *c;
    tg_server   srv;
    tg_waiting  waiting;

    memset(&srv, 0, sizeof(srv));
    memset(&waiting, 0, sizeof(waiting));

    srv.file = file;
    srv.opts = *opts;
    srv.policy = policy;
    srv.listener.fd = -1;
    srv.next_conn_id = 1;
    srv.conn_closed = tg_conn_closed;
    srv.decide_again = tg_decide_again;

    rc = 1;

    srv.loop = ev_default_loop(EVFLAG_AUTO);
    if (srv.loop == NULL) {
        tg_log_error("start.failed", "", "cannot start the event loop");
        goto done;
    }

    srv.state = tg_state_new();
    if (srv.state == NULL || tg_state_bind(srv.state, policy) != 0) {
        tg_log_error("start.no_memory", "", "out of memory");
        goto done;
    }

    /*
     * Lease ids from a random start: a lease a worker re-announces from
     * the last policyd is then unlikely to have the id of a new one.
     */

    if (getrandom(&srv.state->next_lease, sizeof(uint32_t), GRND_NONBLOCK)
        != (ssize_t) sizeof(uint32_t))
    {
        srv.state->next_lease = (uint32_t) getpid() * 2654435761u
                                ^ (uint32_t) time(NULL);
    }

    if (srv.state->next_lease == 0) {
        srv.state->next_lease = 1;
    }

    srv.out_cap = TG_MAX_FRAME_LIMIT + TG_FRAME_LEN_SIZE;
    srv.out = malloc(srv.out_cap);
    if (srv.out == NULL) {
        tg_log_error("start.no_memory", "", "out of memory");
        goto done;
    }

    srv.usage = tg_usage_new();
    if (srv.usage == NULL) {
        tg_log_error("start.no_memory", "", "out of memory");
        goto done;
    }

    if (tg_usage_configure(srv.usage, policy) != 0) {
        goto done;
    }

    /* traces, when OTLP_ENDPOINT asks for them: a thread of their own */
    if (tg_otlp_from_env(&srv.otlp) != 0) {
        tg_log_error("start.failed", "", "cannot start: the environment's "
                     "OTLP settings have errors");
        goto done;
    }

    if (tg_sock_open(&srv.listener, &srv.policy->listen) != 0) {
        goto done;
    }

    ev_io_init(&srv.accept_w, tg_accept_cb, srv.listener.fd, EV_READ);
    srv.accept_w.data = &srv;
    ev_io_start(srv.loop, &srv.accept_w);

    ev_init(&srv.accept_retry, tg_accept_retry_cb);
    srv.accept_retry.data = &srv;

    ev_signal_init(&srv.sighup, tg_signal_cb, SIGHUP);
    ev_signal_init(&srv.sigterm, tg_signal_cb, SIGTERM);
    ev_signal_init(&srv.sigint, tg_signal_cb, SIGINT);
    ev_signal_init(&srv.sigusr1, tg_signal_cb, SIGUSR1);
    srv.sigusr1.data = &srv;
    srv.sighup.data = &srv;
    srv.sigterm.data = &srv;
    srv.sigint.data = &srv;
    ev_signal_start(srv.loop, &srv.sighup);
    ev_signal_start(srv.loop, &srv.sigterm);
    ev_signal_start(srv.loop, &srv.sigint);
    ev_signal_start(srv.loop, &srv.sigusr1);

    srv.started = ev_now(srv.loop);

    srv.prober = tg_prober_new(srv.loop, tg_probe_done, &srv);
    if (srv.prober == NULL || tg_prober_configure(srv.prober, policy) != 0) {
        tg_log_error("start.failed", "", "cannot start the health probes");
        goto done;
    }

    srv.jwks = tg_jwks_keeper_new(&srv);
    if (srv.jwks == NULL || tg_jwks_configure(srv.jwks, policy) != 0) {
        tg_log_error("jwks.no_memory", "", "out of memory for the key sets");
        goto done;
    }

    srv.model_lists = tg_model_fetcher_new(&srv);
    if (srv.model_lists == NULL
        || tg_model_fetcher_configure(srv.model_lists, policy) != 0)
    {
        tg_log_error("models.no_memory", "",
                     "out of memory for the model lists");
        goto done;
    }

    ev_timer_init(&srv.health_w, tg_health_cb, TG_HEALTH_EVERY,
                  TG_HEALTH_EVERY);
    srv.health_w.data = &srv;
    ev_timer_start(srv.loop, &srv.health_w);

    ev_timer_init(&srv.cooldown_w, tg_health_cb, 0, 0);
    srv.cooldown_w.data = &srv;

    ev_timer_init(&srv.soon_w, tg_soon_cb, 0, 0);
    srv.soon_w.data = &srv;

    tg_defer_init(&srv, tg_leases_mark(&srv) ? policy->lease_recovery_ms
                                             : 0);

    /*
     * The budgets spent before a restart, and what waited for Redis then,
     * before the first decision
     */
    {
        char  path[4200];

        tg_limits_state_path(&srv, policy, path, sizeof(path));
        tg_limits_state_load(srv.state->limits, policy, path, &waiting);

        srv.limits_saver = tg_limits_saver_new(path);
        if (srv.limits_saver == NULL) {
            tg_log_error("start.no_memory", "",
                         "out of memory for the limits' state");
            goto done;
        }

        srv.state->limits->persist = tg_limits_persist;
        srv.state->limits->persist_arg = &srv;

        ev_async_init(&srv.persisted_w, tg_limits_persisted_cb);
        srv.persisted_w.data = &srv;
        ev_async_start(srv.loop, &srv.persisted_w);
    }

    if (policy->redis.enabled) {
        srv.redis = tg_redis_start(&srv, policy, &waiting);
        tg_waiting_free(&waiting);
        if (srv.redis == NULL) {
            tg_log_error("start.no_memory", "",
                         "out of memory for the redis client");
            goto done;
        }
    }

    if (policy->admin.path != NULL) {
        srv.admin = tg_admin_open(srv.loop, &policy->admin, tg_admin_body,
                                  &srv);
        if (srv.admin == NULL) {
            goto done;
        }
    }

    tg_log_info("start.listening",
                "software path mode max_frame providers routes",
                "%s listening on %s (mode %04o, max_frame %u): "
                "%zu providers, %zu routes", TG_SOFTWARE, srv.listener.path,
                (unsigned) policy->listen.mode, policy->max_frame,
                policy->nproviders, policy->nroutes);

    ev_run(srv.loop, 0);

    rc = 0;

done:

    while (srv.conns != NULL) {
        c = srv.conns;
        snprintf(c->reason, sizeof(c->reason), "policyd is stopping");
        tg_conn_close(c);
    }

    if (srv.loop != NULL) {
        tg_defer_stop(&srv);
    }

    /*
     * The slots and leases the connections gave back as they closed, and
     * what else waits for Redis, written before policyd ends: on the loop,
     * timeout_ms at most, with nothing else of the loop's running.
     */
    if (srv.loop != NULL) {
        ev_timer_stop(srv.loop, &srv.health_w);
        ev_timer_stop(srv.loop, &srv.cooldown_w);
        ev_timer_stop(srv.loop, &srv.soon_w);
    }

    tg_redis_quit(srv.redis);

    /*
     * The budgets as they are at a clean stop, and what still waits for
     * Redis (its kept batches, with their numbers; the corrections and
     * usage it did not get): sent again after the next start.
     */
    tg_limits_saver_free(srv.limits_saver,
                         srv.state != NULL ? srv.state->limits : NULL);
    srv.limits_saver = NULL;

    if (srv.loop != NULL) {
        ev_async_stop(srv.loop, &srv.persisted_w);
    }

    tg_redis_stop(srv.redis);
    srv.redis = NULL;

    tg_listen_close(&srv);
    tg_admin_close(srv.admin);
    tg_jwks_keeper_free(srv.jwks);
    tg_model_fetcher_free(srv.model_lists);
    tg_prober_free(srv.prober);

    if (srv.loop != NULL) {
        ev_timer_stop(srv.loop, &srv.health_w);
        ev_timer_stop(srv.loop, &srv.cooldown_w);
        ev_timer_stop(srv.loop, &srv.soon_w);
        ev_signal_stop(srv.loop, &srv.sighup);
        ev_signal_stop(srv.loop, &srv.sigterm);
        ev_signal_stop(srv.loop, &srv.sigint);
        ev_signal_stop(srv.loop, &srv.sigusr1);
        ev_timer_stop(srv.loop, &srv.accept_retry);
        ev_loop_destroy(srv.loop);
    }

    /* every record it was given is written before policyd ends */
    tg_usage_free(srv.usage);

    /* the spans waiting get one try, a short one */
    tg_otlp_stop(srv.otlp);

    tg_waiting_free(&waiting);
    tg_policy_free(srv.policy);
    tg_state_free(srv.state);
    free(srv.out);
    free(srv.json);
    free(srv.tags.items);
    free(srv.allow.items);
    free(srv.exclude.items);

    return rc;
}


/* the listening socket */

static void
tg_listen_close(tg_server *srv)
{
    if (srv->listener.fd != -1 && srv->loop != NULL) {
        ev_io_stop(srv->loop, &srv->accept_w);
    }

    tg_sock_close(&srv->listener);
}


static void
tg_accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    int         fd, i;
    tg_server  *srv = w->data;

    (void) revents;

    for (i = 0; i < TG_ACCEPT_BATCH; i++) {
        fd = accept4(srv->listener.fd, NULL, NULL,
                     SOCK_NONBLOCK | SOCK_CLOEXEC);

        if (fd != -1) {
            tg_conn_new(srv, fd, tg_frames_read_cb);
            continue;
        }

        switch (errno) {

        case EAGAIN:
#if EAGAIN != EWOULDBLOCK
        case EWOULDBLOCK:
#endif
            return;

        case EINTR:
        case ECONNABORTED:
        case EPROTO:
            continue;

        case EMFILE:
        case ENFILE:
        case ENOBUFS:
        case ENOMEM:
            tg_log_error("accept.failed", "error pause_s connections",
                         "accept() failed: %s; pausing accepts for %.0f s "
                         "(%zu connections open)", strerror(errno),
                         TG_ACCEPT_RETRY, srv->nconns);
            ev_io_stop(loop, &srv->accept_w);
            ev_timer_set(&srv->accept_retry, TG_ACCEPT_RETRY, 0.);
            ev_timer_start(loop, &srv->accept_retry);
            return;

        default:
            tg_log_error("accept.failed", "error",
                         "accept() failed: %s", strerror(errno));
            return;
        }
    }
}


static void
tg_accept_retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    tg_server  *srv = w->data;

    (void) revents;

    if (srv->listener.fd != -1) {
        ev_io_start(loop, &srv->accept_w);
    }
}


/* signals */

static void
tg_signal_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    tg_server  *srv = w->data;

    (void) loop;
    (void) revents;

    if (w->signum == SIGHUP) {
        tg_reload(srv);
        tg_usage_flush(srv->usage);
        tg_limit_store_clock(srv->state->limits);
        tg_limits_saver_tick(srv->limits_saver, srv->state->limits, true);
        return;
    }

    if (w->signum == SIGUSR1) {
        tg_usage_reopen(srv->usage);
        return;
    }

    tg_log_info("stop.signal", "signal",
                "exiting on %s", w->signum == SIGTERM ? "SIGTERM" : "SIGINT");

    tg_shutdown(srv);
}


static void
tg_reload(tg_server *srv)
{
    tg_errors          errs;
    tg_policy         *np, *old;
    const tg_listen   *a, *b;

    tg_log_info("reload.started", "file", "reloading %s", srv->file);

    tg_errors_init(&errs);

    np = tg_policy_load(srv->file, &srv->opts, &errs);

    if (np == NULL) {
        tg_log_error("reload.failed", "errors -",
                     "reload failed, keeping the old policy; %zu error%s:",
                     errs.count, errs.count == 1 ? "" : "s");

        tg_print_errors(srv->file, &errs, NULL, true);

        tg_errors_free(&errs);
        return;
    }

    tg_errors_free(&errs);

    /* the probe thread copies what it needs: nothing points into np yet */

    if (tg_prober_configure(srv->prober, np) != 0) {
        tg_log_error("reload.failed", "",
                     "reload failed, keeping the old policy: out of memory "
                     "for the health probes");
        tg_policy_free(np);
        return;
    }

    if (tg_state_bind(srv->state, np) != 0) {
        tg_log_error("reload.failed", "",
                     "reload failed, keeping the old policy: out of memory");
        (void) tg_prober_configure(srv->prober, srv->policy);
        tg_policy_free(np);
        return;
    }

    if (tg_usage_configure(srv->usage, np) != 0) {
        tg_log_warn("reload.usage_log_kept", "",
                    "the usage log stays as it was");
    }
    tg_redis_reloaded(srv->redis, np);

    a = &srv->policy->listen;
    b = &np->listen;

    if (strcmp(a->path, b->path) != 0 || a->mode != b->mode
        || (a->group == NULL) != (b->group == NULL)
        || (a->group != NULL && strcmp(a->group, b->group) != 0))
    {
        tg_log_warn("reload.listen_kept", "path",
                    "\"listen\" changed; it takes a restart, keeping %s",
                    srv->listener.path);
    }

    if (np->max_frame != srv->policy->max_frame) {
        tg_log_info("reload.max_frame", "max_frame",
                    "max_frame %u applies to new connections",
                    np->max_frame);
    }

    /* nothing outside this function points into the old policy */

    old = srv->policy;
    srv->policy = np;
    tg_policy_free(old);

    if (tg_jwks_configure(srv->jwks, np) != 0) {
        tg_log_error("jwks.no_memory", "",
                     "out of memory for the key sets: some keep their "
                     "former settings");
    }

    if (tg_model_fetcher_configure(srv->model_lists, np) != 0) {
        tg_log_error("models.no_memory", "",
                     "out of memory for the model lists: some routes list "
                     "their \"models\" only");
    }

    /* the counters of profiles and providers still there are kept */
    tg_limit_store_clock(srv->state->limits);
    tg_limits_sweep(srv->state->limits, np);

    /* the file the new policy names (SIGHUP saves to it at once) */
    {
        char  path[4200];

        tg_limits_saver_path(srv->limits_saver,
                             tg_limits_state_path(srv, np, path,
                                                  sizeof(path)));
    }

    tg_log_set_level(np->log_level);
    tg_log_set_format(np->log_format);

    /* decisions the workers reuse were made with the old policy */
    tg_invalidate_all(srv);

    /* limits and queues may have changed: those waiting are decided again */
    tg_soon(srv, true, true);

    tg_log_info("reload.done", "providers routes",
                "policy reloaded: %zu providers, %zu routes",
                np->nproviders, np->nroutes);
}


/* INVALIDATE to every connection: workers forget their cached decisions */

static void
tg_invalidate_all(tg_server *srv)
{
    long         len;
    tg_conn     *c, *next;
    tg_builder   b;

    for (c = srv->conns; c != NULL; c = next) {
        next = c->next;

        tg_builder_start(c, &b, TG_MSG_INVALIDATE, 0);

        len = tg_build_end(&b);
        if (len > 0) {
            tg_conn_send(c, srv->out, (size_t) len);
        }

        /* now: a worker with a cache may not write to us for a while */
        if (c->state == TG_CONN_OPEN) {
            tg_conn_flush(c);
        }

        tg_conn_finish(c);
    }
}


static void
tg_shutdown(tg_server *srv)
{
    tg_conn  *c;

    tg_listen_close(srv);
    tg_admin_close(srv->admin);
    srv->admin = NULL;

    /* REPORTs the workers sent already still count, and are recorded */
    tg_shutdown_drain(srv);

    /* before the connections close and take their leases with them */
    tg_leases_unmark(srv);

    while (srv->conns != NULL) {
        c = srv->conns;
        snprintf(c->reason, sizeof(c->reason), "policyd is stopping");
        tg_conn_close(c);
    }

    ev_break(srv->loop, EVBREAK_ALL);
}


/*
 * What the workers wrote before the signal: read and served (REPORTs are
 * what matters), a bounded number of reads per connection.
 */

static void
tg_shutdown_drain(tg_server *srv)
{
    int       i;
    tg_conn  *c, *next;

    for (c = srv->conns; c != NULL; c = next) {
        next = c->next;

        for (i = 0; i < 64 && c->state == TG_CONN_OPEN; i++) {
            if (tg_conn_read(c) == 0) {
                break;          /* nothing more, or closed (c is gone) */
            }

            tg_frames_serve(c);
        }
    }
}


/* a connection closes: those it had waiting go, its slots go to others */

static size_t
tg_conn_closed(tg_server *srv, tg_conn *c)
{
    size_t  n;

    tg_queue_drop_conn(srv, c);
    tg_defer_drop_conn(srv, c);
    tg_redis_drop_conn(srv->redis, c);

    n = tg_state_release_owner(srv->state, c->id);

    if (n != 0) {
        tg_soon(srv, true, true);
    }

    return n;
}


/* once every frame of this pass is handled, like a provider at capacity */

static void
tg_decide_again(tg_conn *c, const uint8_t *frame, const tg_frame_hdr *h)
{
    tg_decision  d;

    memset(&d, 0, sizeof(d));
    tg_defer(c, frame, h, &d, false);
}


/* the admin socket's answer: the status of the moment */

static char *
tg_admin_body(void *data, bool prometheus, size_t *len)
{
    tg_server       *srv = data;
    tg_status_view   view;

    view = tg_status_view_of(srv);

    return prometheus ? tg_status_prometheus(&view, len)
                      : tg_status_json(&view, len);
}


/*
 * Judges every provider again; a change of state is logged, makes workers
 * forget the decisions they reuse, and may let waiting requests go, as may
 * leases that expired.  Returns whether it woke those waiting (once).
 */

static bool
tg_health_check(tg_server *srv)
{
    bool        wake;
    size_t      i, n, changed;
    uint64_t    expired, now_ms;
    tg_state   *st = srv->state;
    tg_health   old[64], *before;
    tg_pstate  *ps;

    n = st->nslots;
    now_ms = tg_now_ms(srv);

    before = n <= 64 ? old : malloc(n * sizeof(tg_health));
    if (before == NULL) {
        return false;
    }

    for (i = 0; i < n; i++) {
        before[i] = st->slots[i]->health;
    }

    expired = st->leases_expired;
    wake = false;

    changed = tg_state_evaluate(st, now_ms);
    tg_cooldown_arm(srv, now_ms);

    if (st->leases_expired != expired) {
        tg_log_warn("lease.expired", "leases",
                    "%llu leases expired: their REPORTs never came (a worker "
                    "lost them); their slots are free again",
                    (unsigned long long) (st->leases_expired - expired));
        wake = true;
    }

    if (changed == 0) {
        goto done;
    }

    for (i = 0; i < n; i++) {
        ps = st->slots[i];

        if (ps->health == before[i]) {
            continue;
        }

        if (ps->health == TG_HEALTH_UP) {
            tg_log_info("provider.up", "provider was reason",
                        "provider %s is up again (was %s): %s", ps->name,
                        tg_health_name(before[i]), ps->why);
        } else {
            tg_log_warn("provider.state", "provider state was reason",
                        "provider %s is %s (was %s): %s", ps->name,
                        tg_health_name(ps->health),
                        tg_health_name(before[i]), ps->why);
        }
    }

    tg_invalidate_all(srv);
    wake = true;

done:

    if (wake) {
        tg_queue_wake_all(srv);
    }

    if (before != old) {
        free(before);
    }

    return wake;
}


/*
 * A provider that failed may be tried again when its cooldown ends, not at
 * the next periodic judgement up to TG_HEALTH_EVERY later.
 */

static void
tg_cooldown_arm(tg_server *srv, uint64_t now_ms)
{
    size_t      i;
    uint64_t    next;
    tg_pstate  *ps;

    next = 0;

    for (i = 0; i < srv->state->nslots; i++) {
        ps = srv->state->slots[i];

        if (ps->passive_down && ps->down_until_ms > now_ms
            && (next == 0 || ps->down_until_ms < next))
        {
            next = ps->down_until_ms;
        }
    }

    ev_timer_stop(srv->loop, &srv->cooldown_w);

    if (next != 0) {
        ev_timer_set(&srv->cooldown_w, (double) (next - now_ms) / 1000, 0);
        ev_timer_start(srv->loop, &srv->cooldown_w);
    }
}


static void
tg_health_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    tg_server  *srv = w->data;

    (void) loop;
    (void) revents;

    (void) tg_health_check(srv);

    /* the limits' counters with nothing owed and nothing held go */

    tg_limit_store_clock(srv->state->limits);

    if (srv->state->limits->now_ms - srv->state->limits->swept_ms
        >= TG_SWEEP_EVERY_MS)
    {
        tg_limits_sweep(srv->state->limits, srv->policy);
    }

    /* what was spent, saved at most once a second, off the loop */
    tg_limits_saver_tick(srv->limits_saver, srv->state->limits, false);
}


/* a probe's answer, judged with the policy of the moment */

static void
tg_probe_done(const tg_probe_answer *a, void *data)
{
    tg_server          *srv = data;
    tg_pstate          *ps;
    tg_probe_result     r;
    const tg_provider  *pr;

    pr = tg_policy_provider(srv->policy, a->provider, strlen(a->provider));

    /* a provider the last reload took away or stopped probing */
    if (pr == NULL || pr->health.url == NULL) {
        return;
    }

    ps = tg_state_provider(srv->state, pr->index);
    if (ps == NULL) {
        return;
    }

    memset(&r, 0, sizeof(r));
    r.slots_total = -1;
    r.slots_busy = -1;
    r.running = -1;
    r.waiting = -1;
    r.ms = a->ms;

    if (a->status == 0) {
        snprintf(r.note, sizeof(r.note), "%s", a->error);

    } else {
        tg_probe_interpret(pr, false, a->status, a->body, a->len, &r);
    }

    if (a->slots && r.ok) {
        tg_probe_interpret(pr, true, a->slots_status, a->slots_body,
                           a->slots_len, &r);
    }

    tg_log_debug("probe.result", "provider result ms note",
                 "provider %s: probe %s in %u ms: %s", a->provider,
                 r.ok ? (r.busy ? "busy" : "ok") : "failed", r.ms, r.note);

    tg_health_probed(ps, &r, tg_now_ms(srv));
    (void) tg_health_check(srv);
}


/* what frames asked for, once their connection's callback is done */

static void
tg_soon_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    bool        health, wake;
    tg_server  *srv = w->data;

    (void) loop;
    (void) revents;

    health = srv->health_due;
    wake = srv->wake_due;
    srv->health_due = false;
    srv->wake_due = false;

    /* a judgement that woke those waiting has done the wake asked for */

    if (health && tg_health_check(srv)) {
        wake = false;
    }

    if (srv->invalidate_due) {
        srv->invalidate_due = false;
        tg_invalidate_all(srv);
    }

    if (wake) {
        tg_queue_wake_all(srv);
    }
}


/*
 * A reconcile's state file: written by the saver's thread, the loop told
 * by an ev_async; the reconcile's batches wait for it (limits_store.h)
 */

static void
tg_limits_persist(void *arg)
{
    tg_server  *srv = arg;

    tg_limits_saver_flush_async(srv->limits_saver, srv->state->limits,
                                tg_limits_written, srv);
}


/* on the saver's thread */

static void
tg_limits_written(void *arg)
{
    tg_server  *srv = arg;

    ev_async_send(srv->loop, &srv->persisted_w);
}


static void
tg_limits_persisted_cb(struct ev_loop *loop, ev_async *w, int revents)
{
    tg_server        *srv = w->data;
    tg_limit_store   *s = srv->state->limits;

    (void) loop;
    (void) revents;

    if (tg_limits_saver_flushed(srv->limits_saver) && s->persisted != NULL) {
        s->persisted(s->persisted_arg);
    }
}


/* limits.state_file, else "SOCKET.limits" next to the lease file */

static const char *
tg_limits_state_path(tg_server *srv, const tg_policy *p, char *buf,
    size_t size)
{
    if (p->limits.state_file != NULL) {
        snprintf(buf, size, "%s", p->limits.state_file);

    } else {
        snprintf(buf, size, "%s.limits", srv->listener.path);
    }

    return buf;
}


/*
 * "SOCKET.leases" says a policyd ran here and may have left leases that
 * workers still hold: it is made at start and goes at a clean stop with
 * no lease held.  Returns whether it was there already, so that this
 * policyd waits for the leases to be re-announced.
 */

static bool
tg_leases_mark(tg_server *srv)
{
    int    fd;
    bool   found;
    char   path[sizeof(srv->listener.path) + sizeof(".leases")];
    char   pid[32];
    int    n;

    snprintf(path, sizeof(path), "%s.leases", srv->listener.path);

    found = access(path, F_OK) == 0;

    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
              0600);

    if (fd == -1) {
        tg_log_warn("lease.file_failed", "path error",
                    "cannot write %s: %s; a policyd started after this one "
                    "will not wait for leases held", path, strerror(errno));
        return found;
    }

    n = snprintf(pid, sizeof(pid), "%ld\n", (long) getpid());

    if (write(fd, pid, (size_t) n) != n) {
        tg_log_warn("lease.file_failed", "path error",
                    "cannot write %s: %s", path, strerror(errno));
    }

    close(fd);

    return found;
}


static void
tg_leases_unmark(tg_server *srv)
{
    char  path[sizeof(srv->listener.path) + sizeof(".leases")];

    snprintf(path, sizeof(path), "%s.leases", srv->listener.path);

    if (srv->state->nleases != 0) {
        tg_log_info("stop.leases_held", "leases",
                    "stopping with %zu leases held by workers: the next "
                    "policyd waits for them to be re-announced",
                    srv->state->nleases);
        return;
    }

    if (unlink(path) == -1 && errno != ENOENT) {
        tg_log_warn("lease.file_failed", "path error",
                    "unlink(%s) failed: %s", path, strerror(errno));
    }
}
