/*
 * Worker connections.  A connection reads into a buffer that grows up to
 * the largest frame it accepts, hands every complete frame in it over in
 * order, and queues the replies in a bounded write buffer.  A frame that
 * breaks the framing gets an ERROR and closes that one connection; nothing
 * a peer sends stops the daemon.
 */

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#include <ev.h>

#include "conn.h"
#include "log.h"


#define TG_RBUF_INITIAL       16384
#define TG_WBUF_MAX           (TG_MAX_FRAME_LIMIT + TG_MAX_FRAME_MIN)
#define TG_LINGER             2.0     /* seconds to flush a final ERROR */
#define TG_LOG_STR_MAX        256     /* bytes of a peer's string in logs */


static void tg_conn_write_cb(struct ev_loop *loop, ev_io *w, int revents);
static void tg_conn_linger_cb(struct ev_loop *loop, ev_timer *w,
    int revents);
static int tg_conn_reserve(tg_conn *c, size_t need);
static void tg_conn_fail(tg_conn *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));


static const char  *tg_error_names[] = {
    "", "version", "too_large", "malformed", "unknown_type",
    "missing_field", "internal"
};


/* connections */

void
tg_conn_new(tg_server *srv, int fd,
    void (*read_cb)(struct ev_loop *loop, ev_io *w, int revents))
{
    tg_conn        *c;
    socklen_t       len;
    struct ucred    cred;

    c = calloc(1, sizeof(tg_conn));
    if (c == NULL) {
        tg_log_error("connection.no_memory", "",
                     "out of memory for a new connection");
        close(fd);
        return;
    }

    c->rcap = TG_RBUF_INITIAL;
    c->rbuf = malloc(c->rcap);
    if (c->rbuf == NULL) {
        tg_log_error("connection.no_memory", "",
                     "out of memory for a new connection");
        free(c);
        close(fd);
        return;
    }

    c->srv = srv;
    c->fd = fd;
    c->id = srv->next_conn_id++;
    c->max_frame = srv->policy->max_frame;
    c->peer_max = TG_MAX_FRAME_MIN;

    ev_io_init(&c->rw, read_cb, fd, EV_READ);
    ev_io_init(&c->ww, tg_conn_write_cb, fd, EV_WRITE);
    ev_init(&c->linger, tg_conn_linger_cb);
    c->rw.data = c;
    c->ww.data = c;
    c->linger.data = c;

    c->next = srv->conns;
    if (srv->conns != NULL) {
        srv->conns->prev = c;
    }
    srv->conns = c;
    srv->nconns++;

    ev_io_start(srv->loop, &c->rw);

    len = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
        tg_log_debug("connection.accepted", "connection peer_pid peer_uid",
                     "connection %llu: accepted from pid %ld uid %ld",
                     (unsigned long long) c->id, (long) cred.pid,
                     (long) cred.uid);
    } else {
        tg_log_debug("connection.accepted", "connection",
                     "connection %llu: accepted",
                     (unsigned long long) c->id);
    }
}


void
tg_conn_close(tg_conn *c)
{
    size_t      n;
    tg_server  *srv = c->srv;

    ev_io_stop(srv->loop, &c->rw);
    ev_io_stop(srv->loop, &c->ww);
    ev_timer_stop(srv->loop, &c->linger);

    close(c->fd);

    /* what waits and what is leased for it: the daemon's to give back */
    n = srv->conn_closed(srv, c);

    tg_log_info("connection.closed", "connection reason frames leases_released",
                "connection %llu closed: %s (%llu frames, %zu leases "
                "released)", (unsigned long long) c->id,
                c->reason[0] ? c->reason : "closed",
                (unsigned long long) c->frames, n);

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


int
tg_conn_read(tg_conn *c)
{
    ssize_t   n;

    if (c->rlen == c->rcap) {
        /* cannot happen: a frame in progress always fits; be safe */
        tg_conn_fail(c, "read buffer full");
        tg_conn_finish(c);
        return 0;
    }

    n = read(c->fd, c->rbuf + c->rlen, c->rcap - c->rlen);

    if (n == -1) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
            return 0;
        }

        tg_conn_fail(c, "read error: %s", strerror(errno));
        tg_conn_finish(c);
        return 0;
    }

    if (n == 0) {
        if (c->rlen > 0) {
            tg_conn_fail(c, "peer closed the connection in the middle of a "
                         "frame (%zu bytes unread)", c->rlen);
        } else {
            tg_conn_fail(c, "peer closed the connection");
        }

        /* replies already queued still go out if they can */
        tg_conn_flush(c);
        c->state = TG_CONN_CLOSE_NOW;
        tg_conn_finish(c);
        return 0;
    }

    c->rlen += (size_t) n;

    return 1;
}


static void
tg_conn_write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    tg_conn  *c = w->data;

    (void) loop;
    (void) revents;

    tg_conn_flush(c);
    tg_conn_finish(c);
}


static void
tg_conn_linger_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    tg_conn  *c = w->data;

    (void) loop;
    (void) revents;

    c->state = TG_CONN_CLOSE_NOW;
    tg_conn_finish(c);
}


/* Closes the connection when its state says so; the end of every callback. */

void
tg_conn_finish(tg_conn *c)
{
    tg_server  *srv = c->srv;

    switch (c->state) {

    case TG_CONN_OPEN:
        return;

    case TG_CONN_CLOSE_AFTER_FLUSH:
        if (c->wpos < c->wlen) {
            ev_io_stop(srv->loop, &c->rw);

            if (!ev_is_active(&c->linger)) {
                ev_timer_set(&c->linger, TG_LINGER, 0.);
                ev_timer_start(srv->loop, &c->linger);
            }
            return;
        }
        break;

    case TG_CONN_CLOSE_NOW:
        break;
    }

    tg_conn_close(c);
}


int
tg_conn_refuse(tg_conn *c, size_t off, int rc, const tg_frame_hdr *h)
{
    switch (-rc) {

    case TG_ERR_TOO_LARGE:
        tg_conn_error(c, 0, TG_ERR_TOO_LARGE, true,
                      "frame larger than max_frame");
        tg_conn_fail(c, "frame of %u bytes is over max_frame %u",
                     tg_get_u32(c->rbuf + off), c->max_frame);
        break;

    case TG_ERR_VERSION:
        tg_conn_error(c, h->id, TG_ERR_VERSION, true,
                      "unsupported protocol version");
        tg_conn_fail(c, "protocol version %u, expected %u",
                     h->version, TG_PROTO_VERSION);
        break;

    default:
        tg_conn_error(c, 0, TG_ERR_MALFORMED, true,
                      "frame length below 6");
        tg_conn_fail(c, "malformed frame: length %u is below 6",
                     tg_get_u32(c->rbuf + off));
        break;
    }

    c->state = TG_CONN_CLOSE_AFTER_FLUSH;

    return 0;
}


/* the frames before off were handled: keep the incomplete rest */

void
tg_conn_keep(tg_conn *c, size_t off)
{
    size_t  need;

    if (off > 0) {
        memmove(c->rbuf, c->rbuf + off, c->rlen - off);
        c->rlen -= off;
    }

    if (c->rlen == 0 && c->rcap > TG_MAX_FRAME_MIN) {
        /* done with a big frame: give the memory back */
        uint8_t  *p = malloc(TG_RBUF_INITIAL);

        if (p != NULL) {
            free(c->rbuf);
            c->rbuf = p;
            c->rcap = TG_RBUF_INITIAL;
        }
        return;
    }

    /* make room for the whole frame in progress */

    if (c->rlen >= TG_FRAME_LEN_SIZE) {
        need = (size_t) tg_get_u32(c->rbuf) + TG_FRAME_LEN_SIZE;

        if (need > c->rcap && tg_conn_reserve(c, need) != 0) {
            tg_conn_fail(c, "out of memory for a frame of %zu bytes", need);
            c->state = TG_CONN_CLOSE_NOW;
        }
    }
}


static int
tg_conn_reserve(tg_conn *c, size_t need)
{
    size_t    cap;
    uint8_t  *p;

    cap = c->rcap;
    while (cap < need) {
        cap *= 2;
    }

    if (cap > (size_t) c->max_frame + TG_FRAME_LEN_SIZE) {
        cap = (size_t) c->max_frame + TG_FRAME_LEN_SIZE;
    }

    if (cap < need) {
        return -1;
    }

    p = realloc(c->rbuf, cap);
    if (p == NULL) {
        return -1;
    }

    c->rbuf = p;
    c->rcap = cap;

    return 0;
}


void
tg_conn_flush(tg_conn *c)
{
    ssize_t     n;
    tg_server  *srv = c->srv;

    while (c->wpos < c->wlen) {
        n = send(c->fd, c->wbuf + c->wpos, c->wlen - c->wpos, MSG_NOSIGNAL);

        if (n == -1) {
            if (errno == EINTR) {
                continue;
            }

            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                ev_io_start(srv->loop, &c->ww);
                return;
            }

            if (c->state == TG_CONN_OPEN) {
                tg_conn_fail(c, "write error: %s", strerror(errno));
            }

            c->state = TG_CONN_CLOSE_NOW;
            return;
        }

        c->wpos += (size_t) n;
    }

    c->wpos = 0;
    c->wlen = 0;

    ev_io_stop(srv->loop, &c->ww);

    if (c->wcap > TG_MAX_FRAME_MIN) {
        free(c->wbuf);
        c->wbuf = NULL;
        c->wcap = 0;
    }
}


void
tg_conn_send(tg_conn *c, const uint8_t *frame, size_t len)
{
    size_t    pending, cap;
    uint8_t  *p;

    if (c->state == TG_CONN_CLOSE_NOW) {
        return;
    }

    pending = c->wlen - c->wpos;

    if (pending + len > TG_WBUF_MAX) {
        tg_conn_fail(c, "peer does not read its replies (%zu bytes pending)",
                     pending);
        c->state = TG_CONN_CLOSE_NOW;
        return;
    }

    if (c->wpos > 0) {
        memmove(c->wbuf, c->wbuf + c->wpos, pending);
        c->wpos = 0;
        c->wlen = pending;
    }

    if (c->wlen + len > c->wcap) {
        cap = c->wcap ? c->wcap : 4096;
        while (cap < c->wlen + len) {
            cap *= 2;
        }

        p = realloc(c->wbuf, cap);
        if (p == NULL) {
            tg_conn_fail(c, "out of memory for the write buffer");
            c->state = TG_CONN_CLOSE_NOW;
            return;
        }

        c->wbuf = p;
        c->wcap = cap;
    }

    memcpy(c->wbuf + c->wlen, frame, len);
    c->wlen += len;
}


/* Records why the connection will close (the first reason wins). */

static void
tg_conn_fail(tg_conn *c, const char *fmt, ...)
{
    va_list  ap;

    if (c->reason[0] != '\0') {
        return;
    }

    va_start(ap, fmt);
    vsnprintf(c->reason, sizeof(c->reason), fmt, ap);
    va_end(ap);
}


void
tg_conn_error(tg_conn *c, uint32_t id, uint32_t err, bool fatal,
    const char *msg)
{
    long        len;
    tg_builder  b;

    tg_builder_start(c, &b, TG_MSG_ERROR, id);
    tg_build_u32(&b, TG_F_STATUS, err);
    tg_build_cstr(&b, TG_F_ERROR_MESSAGE, msg);

    len = tg_build_end(&b);
    if (len > 0) {
        tg_conn_send(c, c->srv->out, (size_t) len);
    }

    if (fatal) {
        if (c->state == TG_CONN_OPEN) {
            c->state = TG_CONN_CLOSE_AFTER_FLUSH;
        }
        return;
    }

    tg_log_info("connection.error_sent", "connection error frame message",
                "connection %llu: ERROR %s for frame id %u: %s",
                (unsigned long long) c->id,
                err < sizeof(tg_error_names) / sizeof(tg_error_names[0])
                ? tg_error_names[err] : "?", id, msg);
}


void
tg_conn_malformed(tg_conn *c, const tg_frame_hdr *h, const char *what)
{
    tg_conn_error(c, h->id, TG_ERR_MALFORMED, true, what);
    tg_conn_fail(c, "malformed frame (type %u, id %u): %s", h->type, h->id,
                 what);
}


int
tg_log_len(size_t len)
{
    return len > TG_LOG_STR_MAX ? TG_LOG_STR_MAX : (int) len;
}
