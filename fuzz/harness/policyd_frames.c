/*
 * What an nginx worker sends policyd, served as policyd serves it: a
 * connection's bytes through tg_frames_serve() (frames.c), the read
 * callback's work after the read().  So every frame goes through the
 * framing (tg_conn_frame(), tg_frame_header()), and, by its type, the
 * field readers of HELLO, REPORT and STATUS (tg_handle_*), the facts of
 * DECIDE and MODELS (tg_read_facts(), answer.c), and the decision, the
 * lease, the queue (a DECIDE that waits), the model list, the status,
 * CANCEL, and the ERRORs of frames that do not parse.
 *
 * The input is the stream of bytes on the socket, HELLO first or not.  It
 * arrives in pieces, as reads do: all at once, or 1, 7, 64 or 4096 bytes
 * at a time, by its length (size % 5), into the connection's buffer as
 * tg_conn_read() reads (at most what the buffer has room for).  No socket:
 * the connection's fd is -1, its replies stay in its write buffer, and the
 * harness reads them there as the worker would.  Every reply must be one
 * whole frame of a type policyd sends, its fields all inside it, and no
 * larger than the peer said it takes (HELLO's max_frame).
 *
 * Every input gets a new connection and a new state (leases, counts,
 * health) against one policy, fuzz/policyd/policy.json, so that it
 * replays the same way.  The event loop never runs; what its timers would
 * do is done here: after each read, the work the frames asked for "soon"
 * (server.c's tg_soon_cb(): judging the providers, waking those queued
 * when a slot came free), and at the end the wait of the oldest request
 * still queued runs out (queue.c's budget timer).  A request answered
 * there is sent at once (tg_conn_flush()): with no socket that fails, and
 * the connection closes, as a worker that went away would make it.
 *
 * TAILGATE_FUZZ_DUMP=DIR writes every reply into DIR, one file each: the
 * seeds of the frame harness (fuzz/README.md).
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ev.h>

#include "conn.h"
#include "daemon.h"
#include "errors.h"
#include "frames.h"
#include "log.h"
#include "policy.h"
#include "queue.h"
#include "state.h"

#include "fuzz_check.h"


#define FUZZ_RBUF_INITIAL  16384     /* conn.c's TG_RBUF_INITIAL */


static tg_server    fuzz_srv;
static const char  *fuzz_dump;


static const char *
fuzz_getenv(const char *name)
{
    if (strcmp(name, "FUZZ_DEEPSEEK_KEY") == 0) {
        return "sk-fuzz-deepseek-0000";
    }

    if (strcmp(name, "FUZZ_OPENROUTER_KEY") == 0) {
        return "sk-fuzz-openrouter-0000";
    }

    return NULL;
}


/* what server.c does when a connection closes */

static size_t
fuzz_conn_closed(tg_server *srv, tg_conn *c)
{
    size_t  n;

    tg_queue_drop_conn(srv, c);

    n = tg_state_release_owner(srv->state, c->id);

    if (n != 0) {
        tg_soon(srv, true, true);
    }

    return n;
}


static void
fuzz_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void) loop;
    (void) w;
    (void) revents;
}


static void
fuzz_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void) loop;
    (void) w;
    (void) revents;
}


int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char            path[4096];
    const char     *file;
    tg_errors       errs;
    tg_policy_opts  opts;

    (void) argc;
    (void) argv;

    file = getenv("TAILGATE_FUZZ_POLICY");

    if (file == NULL) {
        snprintf(path, sizeof(path), "%s/policyd/policy.json", FUZZ_DIR);
        file = path;
    }

    memset(&opts, 0, sizeof(opts));
    opts.getenv = fuzz_getenv;

    tg_errors_init(&errs);

    memset(&fuzz_srv, 0, sizeof(fuzz_srv));

    fuzz_srv.policy = tg_policy_load(file, &opts, &errs);

    if (fuzz_srv.policy == NULL) {
        fprintf(stderr, "fuzz: %s: %zu errors\n", file, errs.count);
        abort();
    }

    tg_errors_free(&errs);

    /* every line formatted; libFuzzer's -close_fd_mask=2 keeps them quiet */
    tg_log_set_level(TG_LOG_DEBUG);

    fuzz_srv.file = file;
    fuzz_srv.listener.fd = -1;
    fuzz_srv.next_conn_id = 1;
    fuzz_srv.conn_closed = fuzz_conn_closed;

    fuzz_srv.loop = ev_loop_new(EVFLAG_AUTO);
    FUZZ_CHECK(fuzz_srv.loop != NULL);

    fuzz_srv.out_cap = TG_MAX_FRAME_LIMIT + TG_FRAME_LEN_SIZE;
    fuzz_srv.out = malloc(fuzz_srv.out_cap);
    FUZZ_CHECK(fuzz_srv.out != NULL);

    ev_timer_init(&fuzz_srv.health_w, fuzz_timer_cb, 0, 0);
    ev_timer_init(&fuzz_srv.cooldown_w, fuzz_timer_cb, 0, 0);
    ev_timer_init(&fuzz_srv.soon_w, fuzz_timer_cb, 0, 0);
    fuzz_srv.started = ev_now(fuzz_srv.loop);

    fuzz_dump = getenv("TAILGATE_FUZZ_DUMP");

    return 0;
}


/* a connection as tg_conn_new() makes one, without its fd and watchers */

static tg_conn *
fuzz_conn_new(void)
{
    tg_conn    *c;
    tg_server  *srv = &fuzz_srv;

    c = calloc(1, sizeof(tg_conn));
    FUZZ_CHECK(c != NULL);

    c->rcap = FUZZ_RBUF_INITIAL;
    c->rbuf = malloc(c->rcap);
    FUZZ_CHECK(c->rbuf != NULL);

    c->srv = srv;
    c->fd = -1;
    c->id = srv->next_conn_id++;
    c->max_frame = srv->policy->max_frame;
    c->peer_max = TG_MAX_FRAME_MIN;

    ev_io_init(&c->rw, fuzz_io_cb, -1, EV_READ);
    ev_io_init(&c->ww, fuzz_io_cb, -1, EV_WRITE);
    ev_init(&c->linger, fuzz_timer_cb);
    c->rw.data = c;
    c->ww.data = c;
    c->linger.data = c;

    c->next = srv->conns;
    if (srv->conns != NULL) {
        srv->conns->prev = c;
    }
    srv->conns = c;
    srv->nconns++;

    return c;
}


/* ... and as tg_conn_close() ends it */

static void
fuzz_conn_close(tg_conn *c)
{
    tg_server  *srv = c->srv;

    ev_timer_stop(srv->loop, &c->linger);

    (void) srv->conn_closed(srv, c);

    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        srv->conns = c->next;
    }

    if (c->next != NULL) {
        c->next->prev = c->prev;
    }

    srv->nconns--;

    free(c->rbuf);
    free(c->wbuf);
    free(c);
}


static void
fuzz_dump_frame(const uint8_t *p, size_t len, unsigned type)
{
    FILE      *f;
    char       path[4096];
    size_t     i;
    uint64_t   h;

    h = 14695981039346656037ULL;

    for (i = 0; i < len; i++) {
        h = (h ^ p[i]) * 1099511628211ULL;
    }

    snprintf(path, sizeof(path), "%s/reply-%02u-%016llx", fuzz_dump, type,
             (unsigned long long) h);

    f = fopen(path, "wb");
    FUZZ_CHECK(f != NULL);
    FUZZ_CHECK(fwrite(p, 1, len, f) == len);
    fclose(f);
}


/* the replies queued, read as the worker reads them, then "sent" */

static void
fuzz_replies(tg_conn *c, uint32_t peer_max)
{
    int             rc;
    size_t          left, len;
    tg_field        f;
    tg_frame_hdr    h;
    tg_field_iter   it;
    const uint8_t  *p;

    if (c->wlen == c->wpos) {
        return;
    }

    p = c->wbuf + c->wpos;
    left = c->wlen - c->wpos;

    while (left > 0) {
        rc = tg_frame_header(p, left, TG_MAX_FRAME_LIMIT, &h);

        FUZZ_CHECK(rc == TG_FRAME_OK);

        len = (size_t) h.length + TG_FRAME_LEN_SIZE;

        FUZZ_CHECK(len <= left);

        /* never more than the peer takes (64 KiB until it said more) */
        FUZZ_CHECK(h.length <= peer_max);

        FUZZ_CHECK(h.type == TG_MSG_HELLO_OK || h.type == TG_MSG_DECISION
                   || h.type == TG_MSG_MODEL_LIST || h.type == TG_MSG_ERROR
                   || h.type == TG_MSG_QUEUED
                   || h.type == TG_MSG_STATUS_REPLY
                   || h.type == TG_MSG_STATUS_PART);

        tg_fields_init(&it, p, &h);

        while ((rc = tg_fields_next(&it, &f)) == 1) {
            /* the u32 fields a worker reads, 4 bytes each */
            if (f.key == TG_F_STATUS || f.key == TG_F_LEASE
                || f.key == TG_F_RETRY_AFTER || f.key == TG_F_MAX_FRAME
                || f.key == TG_F_CACHE_MS || f.key == TG_F_CACHE_MAX_BYTES
                || f.key == TG_F_FALLBACK || f.key == TG_F_WAIT_MS)
            {
                FUZZ_CHECK(f.len == 4);
            }
        }

        FUZZ_CHECK(rc == 0);

        if (fuzz_dump) {
            fuzz_dump_frame(p, len, h.type);
        }

        p += len;
        left -= len;
    }

    c->wpos = 0;
    c->wlen = 0;
}


/*
 * What server.c's soon_w does once the connection's callback is over: 0
 * when that closed the connection (an answer to a request that was queued
 * could not be sent).
 */

static int
fuzz_soon(tg_conn *c)
{
    bool  health, wake;

    health = fuzz_srv.health_due;
    wake = fuzz_srv.wake_due;
    fuzz_srv.health_due = false;
    fuzz_srv.wake_due = false;
    ev_timer_stop(fuzz_srv.loop, &fuzz_srv.soon_w);

    /* a state that changed would send INVALIDATE, and wake everyone */

    if (health && tg_state_evaluate(fuzz_srv.state, tg_now_ms(&fuzz_srv))) {
        wake = true;
    }

    if (wake) {
        tg_queue_wake_all(&fuzz_srv);
    }

    return fuzz_srv.conns == c;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t            chunk, n;
    tg_conn          *c;
    uint32_t          peer_max;
    static const size_t  chunks[] = { 0, 1, 7, 64, 4096 };

    fuzz_srv.state = tg_state_new();
    FUZZ_CHECK(fuzz_srv.state != NULL);
    FUZZ_CHECK(tg_state_bind(fuzz_srv.state, fuzz_srv.policy) == 0);

    c = fuzz_conn_new();

    chunk = chunks[size % 5];
    if (chunk == 0) {
        chunk = size;
    }

    peer_max = c->peer_max;

    while (size > 0 && c->state == TG_CONN_OPEN) {

        /* tg_conn_read(): a full buffer cannot happen; were it, it closes */
        FUZZ_CHECK(c->rlen < c->rcap);

        n = chunk;

        if (n > size) {
            n = size;
        }

        if (n > c->rcap - c->rlen) {
            n = c->rcap - c->rlen;
        }

        memcpy(c->rbuf + c->rlen, data, n);
        c->rlen += n;
        data += n;
        size -= n;

        tg_frames_serve(c);

        if (c->peer_max > peer_max) {
            peer_max = c->peer_max;
        }

        fuzz_replies(c, peer_max);

        if (!fuzz_soon(c)) {
            /* answering those queued closed it */
            c = NULL;
            break;
        }

        fuzz_replies(c, peer_max);
    }

    /* the oldest request still waiting waited long enough */

    if (c != NULL && c->state == TG_CONN_OPEN && fuzz_srv.waiters != NULL) {
        ev_invoke(fuzz_srv.loop, &fuzz_srv.waiters->budget, EV_TIMER);

        if (fuzz_srv.conns == NULL) {
            c = NULL;
        }
    }

    if (c != NULL) {
        fuzz_conn_close(c);
    }

    /* what a frame asked for "soon" is not done here */
    ev_timer_stop(fuzz_srv.loop, &fuzz_srv.soon_w);
    fuzz_srv.health_due = false;
    fuzz_srv.wake_due = false;

    FUZZ_CHECK(fuzz_srv.nwaiters == 0 && fuzz_srv.waiters == NULL);
    FUZZ_CHECK(fuzz_srv.nconns == 0 && fuzz_srv.conns == NULL);

    tg_state_free(fuzz_srv.state);
    fuzz_srv.state = NULL;

    return 0;
}
