/*
 * Requests waiting for a slot of a provider at capacity, for routes with a
 * "queue".  One list in order of arrival, whichever worker sent them: a
 * slot that comes free goes to the oldest request waiting for that
 * provider.  A waiting request is decided again from its DECIDE when a slot
 * comes free, when its provider's state changes, and when its wait budget
 * runs out (then it is passed over as busy: the next step if the route
 * falls back on busy, else 429).  The module learns it waits (QUEUED) so
 * that it waits that long, without blocking, instead of giving up.
 */

#include <stdlib.h>
#include <string.h>

#include "answer.h"
#include "log.h"
#include "queue.h"


static void tg_queue_budget_cb(struct ev_loop *loop, ev_timer *w,
    int revents);
static int tg_queue_decide(tg_waiter *w, bool waited);
static void tg_queue_remove(tg_waiter *w);


void
tg_queue_park(tg_conn *c, const uint8_t *frame, const tg_frame_hdr *h,
    const tg_decision *d)
{
    long         len;
    size_t       size;
    tg_server   *srv = c->srv;
    tg_builder   b;
    tg_waiter   *w;
    tg_pstate   *ps;

    ps = tg_state_provider(srv->state, d->provider->index);
    size = (size_t) h->length + TG_FRAME_LEN_SIZE;

    w = calloc(1, sizeof(tg_waiter));

    if (ps == NULL || w == NULL || (w->frame = malloc(size)) == NULL) {
        free(w);
        tg_conn_error(c, h->id, TG_ERR_INTERNAL, false,
                      "cannot queue the request");
        return;
    }

    memcpy(w->frame, frame, size);
    w->h = *h;
    w->srv = srv;
    w->conn = c;
    w->id = h->id;
    w->provider = ps;
    w->since = ev_now(srv->loop);

    ev_timer_init(&w->budget, tg_queue_budget_cb, d->queue_wait_ms / 1e3, 0);
    w->budget.data = w;
    ev_timer_start(srv->loop, &w->budget);

    w->prev = srv->waiters_tail;
    if (srv->waiters_tail != NULL) {
        srv->waiters_tail->next = w;
    } else {
        srv->waiters = w;
    }
    srv->waiters_tail = w;
    srv->nwaiters++;

    ps->queued++;

    /* the worker waits this long, and its own timeout, for the answer */

    tg_builder_start(c, &b, TG_MSG_QUEUED, h->id);
    tg_build_u32(&b, TG_F_WAIT_MS, d->queue_wait_ms);
    tg_build_cstr(&b, TG_F_PROVIDER, d->provider->name);

    len = tg_build_end(&b);
    if (len > 0) {
        tg_conn_send(c, srv->out, (size_t) len);
    }

    tg_log_debug("queue.waiting", "connection frame provider queued wait_ms",
                 "connection %llu: DECIDE %u waits for a slot of %s "
                 "(%u queued, at most %u ms)", (unsigned long long) c->id,
                 h->id, ps->name, ps->queued, d->queue_wait_ms);
}


/* a slot of ps came free, or its state changed: the oldest go first */

void
tg_queue_wake(tg_server *srv, tg_pstate *ps)
{
    tg_waiter  *w;

    /*
     * From the head every time: answering may close a connection, and
     * with it the requests it had waiting.
     */

    for ( ;; ) {
        for (w = srv->waiters; w != NULL && w->provider != ps; w = w->next) {
            /* void */
        }

        if (w == NULL || tg_queue_decide(w, false) != 0) {
            /* none left, or still no room: those behind it wait too */
            return;
        }
    }
}


void
tg_queue_wake_all(tg_server *srv)
{
    size_t      i;
    tg_pstate  *ps;

    for (i = 0; i < srv->state->nslots && srv->nwaiters > 0; i++) {
        ps = srv->state->slots[i];

        if (ps->queued != 0) {
            tg_queue_wake(srv, ps);
        }
    }
}


/* the worker stopped waiting (its client went, its timer ran out) */

void
tg_queue_cancel(tg_conn *c, uint32_t id)
{
    tg_waiter  *w;

    for (w = c->srv->waiters; w != NULL; w = w->next) {
        if (w->conn == c && w->id == id) {
            tg_log_debug("queue.cancelled", "connection frame provider",
                         "connection %llu: DECIDE %u no longer waits for %s",
                         (unsigned long long) c->id, id, w->provider->name);
            tg_queue_remove(w);
            return;
        }
    }
}


/* the connection closes: nobody will read the answers */

void
tg_queue_drop_conn(tg_server *srv, tg_conn *c)
{
    tg_waiter  *w, *next;

    for (w = srv->waiters; w != NULL; w = next) {
        next = w->next;

        if (w->conn == c) {
            tg_queue_remove(w);
        }
    }
}


static void
tg_queue_budget_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    tg_waiter  *wt = w->data;

    (void) loop;
    (void) revents;

    tg_log_debug("queue.timed_out", "connection frame waited_ms provider",
                 "connection %llu: DECIDE %u waited %.0f ms for %s: no slot",
                 (unsigned long long) wt->conn->id, wt->id,
                 (ev_now(wt->srv->loop) - wt->since) * 1e3,
                 wt->provider->name);

    (void) tg_queue_decide(wt, true);
}


/*
 * Decides again; 1 when the request is to wait on (it stays queued), 0 when
 * it got its answer and left the queue.  After its budget (waited) it is
 * never queued again.
 */

static int
tg_queue_decide(tg_waiter *w, bool waited)
{
    bool          has_endpoint;
    tg_conn      *c = w->conn;
    tg_facts      facts;
    tg_pstate    *ps;
    tg_decision   d;

    if (tg_read_facts(c, w->frame, &w->h, &facts, &has_endpoint) != 0) {
        tg_queue_remove(w);
        return 0;
    }

    /* its own place counts as free when it decides again */

    w->provider->queued--;
    facts.waited = waited;
    facts.in_queue = true;

    if (tg_answer_decide(c, w->id, &facts, &d) == 1) {

        /* still waiting: for this provider, or now for another step's */

        ps = tg_state_provider(w->srv->state, d.provider->index);

        if (ps != NULL) {
            w->provider = ps;
        }

        w->provider->queued++;
        return 1;
    }

    w->provider->queued++;
    tg_queue_remove(w);

    /* answered outside the connection's own callbacks: send it now */

    if (c->state == TG_CONN_OPEN) {
        tg_conn_flush(c);
    }

    tg_conn_finish(c);

    return 0;
}


static void
tg_queue_remove(tg_waiter *w)
{
    tg_server  *srv = w->srv;

    ev_timer_stop(srv->loop, &w->budget);

    if (w->prev != NULL) {
        w->prev->next = w->next;
    } else {
        srv->waiters = w->next;
    }

    if (w->next != NULL) {
        w->next->prev = w->prev;
    } else {
        srv->waiters_tail = w->prev;
    }

    srv->nwaiters--;

    if (w->provider->queued > 0) {
        w->provider->queued--;
    }

    free(w->frame);
    free(w);
}
