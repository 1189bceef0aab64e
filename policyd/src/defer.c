/*
 * DECIDEs answered a little later.
 *
 * Capacity is counted in leases, and a lease ends with a REPORT.  A worker
 * sends a lease's REPORT on the connection the lease came on, and its
 * client's next DECIDE may leave on another: both can be read in the same
 * pass of the loop, the DECIDE first.  So a decision that a provider at
 * capacity changed is taken again once every frame read in this pass is
 * handled - from an ev_check watcher of the lowest priority, which libev
 * runs after every I/O callback of the pass.  It is taken again once only.
 *
 * A policyd that starts after one that may have left leases behind (it was
 * killed, or stopped while workers held leases) knows none of them until
 * the workers re-announce them (HOLD).  For lease_recovery_ms, decisions
 * that need a lease or that capacity changed wait, and the worker is told
 * so (QUEUED); then they are taken in the order they came.
 */

#include <stdlib.h>
#include <string.h>

#include "answer.h"
#include "defer.h"
#include "log.h"
#include "queue.h"


struct tg_deferred {
    tg_deferred     *prev;
    tg_deferred     *next;
    tg_conn         *conn;
    uint32_t         id;
    bool             recovery;
    tg_frame_hdr     h;
    uint8_t         *frame;         /* a copy, to decide again from */
};


static void tg_defer_check_cb(struct ev_loop *loop, ev_check *w,
    int revents);
static void tg_defer_recovered_cb(struct ev_loop *loop, ev_timer *w,
    int revents);
static void tg_defer_run(tg_server *srv, bool recovery);
static void tg_defer_unlink(tg_server *srv, tg_deferred *e);
static void tg_defer_remove(tg_server *srv, tg_deferred *e);


void
tg_defer_init(tg_server *srv, uint32_t recovery_ms)
{
    ev_check_init(&srv->defer_w, tg_defer_check_cb);
    ev_set_priority(&srv->defer_w, EV_MINPRI);
    srv->defer_w.data = srv;

    ev_timer_init(&srv->recovery_w, tg_defer_recovered_cb,
                  recovery_ms / 1e3, 0);
    srv->recovery_w.data = srv;

    srv->recover_until_ms = 0;

    if (recovery_ms != 0) {
        srv->recover_until_ms = tg_now_ms(srv) + recovery_ms;
        ev_timer_start(srv->loop, &srv->recovery_w);

        tg_log_info("lease.recovery_started", "recovery_ms",
                    "recovering leases: decisions that need a lease wait "
                    "%u ms for workers to re-announce the ones they hold",
                    recovery_ms);
    }
}


void
tg_defer(tg_conn *c, const uint8_t *frame, const tg_frame_hdr *h,
    const tg_decision *d, bool recovery)
{
    long          len;
    size_t        size;
    uint64_t      now;
    tg_server    *srv = c->srv;
    tg_builder    b;
    tg_deferred  *e;

    size = (size_t) h->length + TG_FRAME_LEN_SIZE;

    e = calloc(1, sizeof(tg_deferred));

    if (e == NULL || (e->frame = malloc(size)) == NULL) {
        free(e);
        tg_conn_error(c, h->id, TG_ERR_INTERNAL, false,
                      "cannot defer the request");
        return;
    }

    memcpy(e->frame, frame, size);
    e->h = *h;
    e->conn = c;
    e->id = h->id;
    e->recovery = recovery;

    e->prev = srv->deferred_tail;
    if (srv->deferred_tail != NULL) {
        srv->deferred_tail->next = e;
    } else {
        srv->deferred = e;
    }
    srv->deferred_tail = e;

    if (!recovery) {
        if (!ev_is_active(&srv->defer_w)) {
            ev_check_start(srv->loop, &srv->defer_w);
        }
        return;
    }

    /* the worker waits this long, and its own timeout, for the answer */

    now = tg_now_ms(srv);

    tg_builder_start(c, &b, TG_MSG_QUEUED, h->id);
    tg_build_u32(&b, TG_F_WAIT_MS, (uint32_t) (srv->recover_until_ms > now
                                               ? srv->recover_until_ms - now
                                               : 0));
    tg_build_cstr(&b, TG_F_PROVIDER, d->provider != NULL
                                     ? d->provider->name : "");

    len = tg_build_end(&b);
    if (len > 0) {
        tg_conn_send(c, srv->out, (size_t) len);
    }

    tg_log_debug("decide.awaits_recovery", "connection frame",
                 "connection %llu: DECIDE %u waits for the leases of the "
                 "last policyd", (unsigned long long) c->id, h->id);
}


void
tg_defer_cancel(tg_conn *c, uint32_t id)
{
    tg_deferred  *e;

    for (e = c->srv->deferred; e != NULL; e = e->next) {
        if (e->conn == c && e->id == id) {
            tg_defer_remove(c->srv, e);
            return;
        }
    }
}


void
tg_defer_drop_conn(tg_server *srv, tg_conn *c)
{
    tg_deferred  *e, *next;

    for (e = srv->deferred; e != NULL; e = next) {
        next = e->next;

        if (e->conn == c) {
            tg_defer_remove(srv, e);
        }
    }
}


void
tg_defer_stop(tg_server *srv)
{
    ev_check_stop(srv->loop, &srv->defer_w);
    ev_timer_stop(srv->loop, &srv->recovery_w);

    while (srv->deferred != NULL) {
        tg_defer_remove(srv, srv->deferred);
    }
}


static void
tg_defer_check_cb(struct ev_loop *loop, ev_check *w, int revents)
{
    tg_server  *srv = w->data;

    (void) revents;

    ev_check_stop(loop, w);

    tg_defer_run(srv, false);
}


static void
tg_defer_recovered_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    tg_server  *srv = w->data;

    (void) loop;
    (void) revents;

    srv->recover_until_ms = 0;

    tg_log_info("lease.recovery_over", "leases",
                "lease recovery over: %zu leases re-announced",
                srv->state->nleases);

    tg_defer_run(srv, true);
}


/*
 * Decides again, in the order they came, those of one kind; from the head
 * every time, since answering may close a connection and drop its own.
 */

static void
tg_defer_run(tg_server *srv, bool recovery)
{
    int           rc;
    bool          has_endpoint;
    tg_conn      *c;
    tg_facts      facts;
    tg_decision   d;
    tg_deferred  *e;

    for ( ;; ) {
        for (e = srv->deferred; e != NULL && e->recovery != recovery;
             e = e->next)
        {
            /* void */
        }

        if (e == NULL) {
            return;
        }

        /* out of the list first: what follows may close its connection */

        tg_defer_unlink(srv, e);
        c = e->conn;

        if (tg_read_facts(c, e->frame, &e->h, &facts, &has_endpoint) == 0) {
            facts.deferred = true;

            rc = tg_answer_decide(c, e->id, &facts, &d);

            if (rc == TG_ANSWER_QUEUE) {
                tg_queue_park(c, e->frame, &e->h, &d);
            }
        }

        free(e->frame);
        free(e);

        /* answered outside the connection's own callbacks: send it now */

        if (c->state == TG_CONN_OPEN) {
            tg_conn_flush(c);
        }

        tg_conn_finish(c);
    }
}


static void
tg_defer_remove(tg_server *srv, tg_deferred *e)
{
    tg_defer_unlink(srv, e);
    free(e->frame);
    free(e);
}


static void
tg_defer_unlink(tg_server *srv, tg_deferred *e)
{
    if (e->prev != NULL) {
        e->prev->next = e->next;
    } else {
        srv->deferred = e->next;
    }

    if (e->next != NULL) {
        e->next->prev = e->prev;
    } else {
        srv->deferred_tail = e->prev;
    }
}
