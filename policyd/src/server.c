/*
 * The daemon's event loop: the listening socket, the connections of nginx
 * workers, the frames they send and the signals.
 *
 * A connection reads into a buffer that grows up to the largest frame it
 * accepts, handles every complete frame in it in order, and queues the
 * replies in a bounded write buffer.  A frame that breaks the framing gets an
 * ERROR and closes that one connection; nothing a peer sends stops the
 * daemon.  Nothing keeps a pointer into the policy between two events, so a
 * reload can free the old policy at once.
 */

#include <errno.h>
#include <grp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <unistd.h>

#include <ev.h>

#include "decide.h"
#include "log.h"
#include "policy.h"
#include "proto.h"
#include "server.h"
#include "server_int.h"
#include "status.h"
#include "state.h"


#define TG_LISTEN_BACKLOG     511
#define TG_RBUF_INITIAL       16384
#define TG_WBUF_MAX           (TG_MAX_FRAME_LIMIT + TG_MAX_FRAME_MIN)
#define TG_ACCEPT_BATCH       64
#define TG_ACCEPT_RETRY       1.0     /* seconds, after EMFILE */
#define TG_LINGER             2.0     /* seconds to flush a final ERROR */
#define TG_LOG_STR_MAX        256     /* bytes of a peer's string in logs */
#define TG_HEALTH_EVERY       0.25    /* seconds between judgements */

/* DECISION and MODEL_LIST fit in this with room to spare */
#define TG_REPLY_OVERHEAD     64

/* a status goes out in parts all at once: it must fit the write buffer */
#define TG_STATUS_MAX         (TG_MAX_FRAME_LIMIT / 2)


static void tg_listen_close(tg_server *srv);
static void tg_accept_cb(struct ev_loop *loop, ev_io *w, int revents);
static void tg_accept_retry_cb(struct ev_loop *loop, ev_timer *w,
    int revents);
static void tg_signal_cb(struct ev_loop *loop, ev_signal *w, int revents);
static void tg_reload(tg_server *srv);
static void tg_shutdown(tg_server *srv);

static void tg_conn_new(tg_server *srv, int fd);
static void tg_conn_close(tg_conn *c);
static void tg_conn_read_cb(struct ev_loop *loop, ev_io *w, int revents);
static void tg_conn_write_cb(struct ev_loop *loop, ev_io *w, int revents);
static void tg_conn_linger_cb(struct ev_loop *loop, ev_timer *w,
    int revents);
static void tg_conn_process(tg_conn *c);
static int tg_conn_reserve(tg_conn *c, size_t need);
static void tg_conn_fail(tg_conn *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void tg_handle_frame(tg_conn *c, const uint8_t *frame,
    const tg_frame_hdr *h);
static void tg_handle_hello(tg_conn *c, const uint8_t *frame,
    const tg_frame_hdr *h);
static void tg_handle_decide(tg_conn *c, const uint8_t *frame,
    const tg_frame_hdr *h);
static void tg_handle_models(tg_conn *c, const uint8_t *frame,
    const tg_frame_hdr *h);
static void tg_handle_status(tg_conn *c, const uint8_t *frame,
    const tg_frame_hdr *h);
static void tg_health_check(tg_server *srv);
static void tg_cooldown_arm(tg_server *srv, uint64_t now_ms);
static void tg_soon(tg_server *srv, bool health, bool wake);
static void tg_soon_cb(struct ev_loop *loop, ev_timer *w, int revents);
static void tg_health_cb(struct ev_loop *loop, ev_timer *w, int revents);
static void tg_probe_done(const tg_probe_answer *a, void *data);
static void tg_handle_report(tg_conn *c, const uint8_t *frame,
    const tg_frame_hdr *h);
static int tg_strv_push(tg_strv *v, const tg_field *f);


static const char  *tg_error_names[] = {
    "", "version", "too_large", "malformed", "unknown_type",
    "missing_field", "internal"
};


int
tg_server_run(const char *file, const tg_policy_opts *opts,
    tg_policy *policy)
{
    int         rc;
    tg_conn    *c;
    tg_server   srv;

    memset(&srv, 0, sizeof(srv));

    srv.file = file;
    srv.opts = *opts;
    srv.policy = policy;
    srv.listener.fd = -1;
    srv.next_conn_id = 1;

    rc = 1;

    srv.loop = ev_default_loop(EVFLAG_AUTO);
    if (srv.loop == NULL) {
        tg_log_error("cannot start the event loop");
        goto done;
    }

    srv.state = tg_state_new();
    if (srv.state == NULL || tg_state_bind(srv.state, policy) != 0) {
        tg_log_error("out of memory");
        goto done;
    }

    srv.out_cap = TG_MAX_FRAME_LIMIT + TG_FRAME_LEN_SIZE;
    srv.out = malloc(srv.out_cap);
    if (srv.out == NULL) {
        tg_log_error("out of memory");
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
    srv.sighup.data = &srv;
    srv.sigterm.data = &srv;
    srv.sigint.data = &srv;
    ev_signal_start(srv.loop, &srv.sighup);
    ev_signal_start(srv.loop, &srv.sigterm);
    ev_signal_start(srv.loop, &srv.sigint);

    srv.started = ev_now(srv.loop);

    srv.prober = tg_prober_new(srv.loop, tg_probe_done, &srv);
    if (srv.prober == NULL || tg_prober_configure(srv.prober, policy) != 0) {
        tg_log_error("cannot start the health probes");
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

    if (tg_admin_open(&srv) != 0) {
        goto done;
    }

    tg_log_info("%s listening on %s (mode %04o, max_frame %u): "
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

    tg_listen_close(&srv);
    tg_admin_close(&srv);
    tg_prober_free(srv.prober);

    if (srv.loop != NULL) {
        ev_timer_stop(srv.loop, &srv.health_w);
        ev_timer_stop(srv.loop, &srv.cooldown_w);
        ev_timer_stop(srv.loop, &srv.soon_w);
        ev_signal_stop(srv.loop, &srv.sighup);
        ev_signal_stop(srv.loop, &srv.sigterm);
        ev_signal_stop(srv.loop, &srv.sigint);
        ev_timer_stop(srv.loop, &srv.accept_retry);
        ev_loop_destroy(srv.loop);
    }

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

/*
 * A listening Unix socket: a stale one left by a dead policyd is replaced,
 * a live one or any other file stops us; it is created owner-only and then
 * given its mode and group.
 */

int
tg_sock_open(tg_sock *s, const tg_listen *l)
{
    int                  fd;
    mode_t               old_umask;
    struct stat          st;
    struct sockaddr_un   sa;

    if (l->path == NULL || strlen(l->path) >= sizeof(sa.sun_path)) {
        tg_log_error("socket path is missing or longer than %zu bytes",
                     sizeof(sa.sun_path) - 1);
        return -1;
    }

    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, l->path, strlen(l->path) + 1);
    memcpy(s->path, l->path, strlen(l->path) + 1);

    /* a file is there: a stale socket goes, anything else stops us */

    if (lstat(l->path, &st) == 0) {

        if (!S_ISSOCK(st.st_mode)) {
            tg_log_error("%s exists and is not a socket; not touching it",
                         l->path);
            return -1;
        }

        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd == -1) {
            tg_log_error("socket() failed: %s", strerror(errno));
            return -1;
        }

        if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) == 0
            || errno == EAGAIN || errno == EINPROGRESS)
        {
            tg_log_error("another process (policyd?) is listening on %s",
                         l->path);
            close(fd);
            return -1;
        }

        if (errno != ECONNREFUSED) {
            tg_log_error("cannot tell whether %s is in use: %s", l->path,
                         strerror(errno));
            close(fd);
            return -1;
        }

        close(fd);

        tg_log_info("removing stale socket %s", l->path);

        if (unlink(l->path) == -1 && errno != ENOENT) {
            tg_log_error("unlink(%s) failed: %s", l->path, strerror(errno));
            return -1;
        }

    } else if (errno != ENOENT) {
        tg_log_error("stat(%s) failed: %s", l->path, strerror(errno));
        return -1;
    }

    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1) {
        tg_log_error("socket() failed: %s", strerror(errno));
        return -1;
    }

    /* created owner-only, opened up by chmod() below */

    old_umask = umask(0177);

    if (bind(fd, (struct sockaddr *) &sa, sizeof(sa)) == -1) {
        umask(old_umask);
        tg_log_error("bind(%s) failed: %s", l->path, strerror(errno));
        close(fd);
        return -1;
    }

    umask(old_umask);

    s->fd = fd;
    s->created = true;

    if (stat(l->path, &st) == 0) {
        s->dev = st.st_dev;
        s->ino = st.st_ino;
    }

    if (chmod(l->path, l->mode) == -1) {
        tg_log_error("chmod(%s, %04o) failed: %s", l->path,
                     (unsigned) l->mode, strerror(errno));
        tg_sock_close(s);
        return -1;
    }

    if (l->group != NULL && chown(l->path, (uid_t) -1, l->gid) == -1) {
        tg_log_error("chown(%s, group %s) failed: %s", l->path, l->group,
                     strerror(errno));
        tg_sock_close(s);
        return -1;
    }

    if (listen(fd, TG_LISTEN_BACKLOG) == -1) {
        tg_log_error("listen(%s) failed: %s", l->path, strerror(errno));
        tg_sock_close(s);
        return -1;
    }

    return 0;
}


static void
tg_listen_close(tg_server *srv)
{
    if (srv->listener.fd != -1 && srv->loop != NULL) {
        ev_io_stop(srv->loop, &srv->accept_w);
    }

    tg_sock_close(&srv->listener);
}


void
tg_sock_close(tg_sock *s)
{
    struct stat  st;

    if (s->fd != -1) {
        close(s->fd);
        s->fd = -1;
    }

    /* remove the socket only if it is still the one we made */

    if (s->created) {
        s->created = false;

        if (lstat(s->path, &st) == 0 && S_ISSOCK(st.st_mode)
            && st.st_dev == s->dev && st.st_ino == s->ino)
        {
            if (unlink(s->path) == -1) {
                tg_log_warn("unlink(%s) failed: %s", s->path,
                            strerror(errno));
            }
        }
    }
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
            tg_conn_new(srv, fd);
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
            tg_log_error("accept() failed: %s; pausing accepts for %.0f s "
                         "(%zu connections open)", strerror(errno),
                         TG_ACCEPT_RETRY, srv->nconns);
            ev_io_stop(loop, &srv->accept_w);
            ev_timer_set(&srv->accept_retry, TG_ACCEPT_RETRY, 0.);
            ev_timer_start(loop, &srv->accept_retry);
            return;

        default:
            tg_log_error("accept() failed: %s", strerror(errno));
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
        return;
    }

    tg_log_info("exiting on %s", w->signum == SIGTERM ? "SIGTERM" : "SIGINT");

    tg_shutdown(srv);
}


static void
tg_reload(tg_server *srv)
{
    tg_errors          errs;
    tg_policy         *np, *old;
    const tg_listen   *a, *b;

    tg_log_info("reloading %s", srv->file);

    tg_errors_init(&errs);

    np = tg_policy_load(srv->file, &srv->opts, &errs);

    if (np == NULL) {
        tg_log_error("reload failed, keeping the old policy; %zu error%s:",
                     errs.count, errs.count == 1 ? "" : "s");

        tg_print_errors(srv->file, &errs, NULL, true);

        tg_errors_free(&errs);
        return;
    }

    tg_errors_free(&errs);

    /* the probe thread copies what it needs: nothing points into np yet */

    if (tg_prober_configure(srv->prober, np) != 0) {
        tg_log_error("reload failed, keeping the old policy: out of memory "
                     "for the health probes");
        tg_policy_free(np);
        return;
    }

    if (tg_state_bind(srv->state, np) != 0) {
        tg_log_error("reload failed, keeping the old policy: out of memory");
        (void) tg_prober_configure(srv->prober, srv->policy);
        tg_policy_free(np);
        return;
    }

    a = &srv->policy->listen;
    b = &np->listen;

    if (strcmp(a->path, b->path) != 0 || a->mode != b->mode
        || (a->group == NULL) != (b->group == NULL)
        || (a->group != NULL && strcmp(a->group, b->group) != 0))
    {
        tg_log_warn("\"listen\" changed; it takes a restart, keeping %s",
                    srv->listener.path);
    }

    if (np->max_frame != srv->policy->max_frame) {
        tg_log_info("max_frame %u applies to new connections",
                    np->max_frame);
    }

    /* nothing outside this function points into the old policy */

    old = srv->policy;
    srv->policy = np;
    tg_policy_free(old);

    tg_log_set_level(np->log_level);

    /* decisions the workers reuse were made with the old policy */
    tg_invalidate_all(srv);

    /* limits and queues may have changed: those waiting are decided again */
    tg_soon(srv, true, true);

    tg_log_info("policy reloaded: %zu providers, %zu routes",
                np->nproviders, np->nroutes);
}


/* INVALIDATE to every connection: workers forget their cached decisions */

void
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
    tg_admin_close(srv);

    while (srv->conns != NULL) {
        c = srv->conns;
        snprintf(c->reason, sizeof(c->reason), "policyd is stopping");
        tg_conn_close(c);
    }

    ev_break(srv->loop, EVBREAK_ALL);
}


/* connections */

static void
tg_conn_new(tg_server *srv, int fd)
{
    tg_conn        *c;
    socklen_t       len;
    struct ucred    cred;

    c = calloc(1, sizeof(tg_conn));
    if (c == NULL) {
        tg_log_error("out of memory for a new connection");
        close(fd);
        return;
    }

    c->rcap = TG_RBUF_INITIAL;
    c->rbuf = malloc(c->rcap);
    if (c->rbuf == NULL) {
        tg_log_error("out of memory for a new connection");
        free(c);
        close(fd);
        return;
    }

    c->srv = srv;
    c->fd = fd;
    c->id = srv->next_conn_id++;
    c->max_frame = srv->policy->max_frame;
    c->peer_max = TG_MAX_FRAME_MIN;

    ev_io_init(&c->rw, tg_conn_read_cb, fd, EV_READ);
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
        tg_log_debug("connection %llu: accepted from pid %ld uid %ld",
                     (unsigned long long) c->id, (long) cred.pid,
                     (long) cred.uid);
    } else {
        tg_log_debug("connection %llu: accepted",
                     (unsigned long long) c->id);
    }
}


static void
tg_conn_close(tg_conn *c)
{
    size_t      n;
    tg_server  *srv = c->srv;

    ev_io_stop(srv->loop, &c->rw);
    ev_io_stop(srv->loop, &c->ww);
    ev_timer_stop(srv->loop, &c->linger);

    close(c->fd);

    tg_queue_drop_conn(srv, c);

    n = tg_state_release_owner(srv->state, c->id);

    tg_log_info("connection %llu closed: %s (%llu frames, %zu leases "
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

    /* slots of a worker that is gone go to those waiting */

    if (n != 0) {
        tg_soon(srv, true, true);
    }
}


static void
tg_conn_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    ssize_t   n;
    tg_conn  *c = w->data;

    (void) loop;
    (void) revents;

    if (c->rlen == c->rcap) {
        /* cannot happen: a frame in progress always fits; be safe */
        tg_conn_fail(c, "read buffer full");
        tg_conn_finish(c);
        return;
    }

    n = read(c->fd, c->rbuf + c->rlen, c->rcap - c->rlen);

    if (n == -1) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
            return;
        }

        tg_conn_fail(c, "read error: %s", strerror(errno));
        tg_conn_finish(c);
        return;
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
        return;
    }

    c->rlen += (size_t) n;

    tg_conn_process(c);

    if (c->state == TG_CONN_OPEN || c->state == TG_CONN_CLOSE_AFTER_FLUSH) {
        tg_conn_flush(c);
    }

    tg_conn_finish(c);
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


static void
tg_conn_process(tg_conn *c)
{
    int            rc;
    size_t         off, need;
    tg_frame_hdr   h;

    off = 0;

    while (c->state == TG_CONN_OPEN) {

        rc = tg_frame_header(c->rbuf + off, c->rlen - off, c->max_frame, &h);

        if (rc == TG_FRAME_AGAIN) {
            break;
        }

        if (rc < 0) {
            switch (-rc) {

            case TG_ERR_TOO_LARGE:
                tg_conn_error(c, 0, TG_ERR_TOO_LARGE, true,
                              "frame larger than max_frame");
                tg_conn_fail(c, "frame of %u bytes is over max_frame %u",
                             tg_get_u32(c->rbuf + off), c->max_frame);
                break;

            case TG_ERR_VERSION:
                tg_conn_error(c, h.id, TG_ERR_VERSION, true,
                              "unsupported protocol version");
                tg_conn_fail(c, "protocol version %u, expected %u",
                             h.version, TG_PROTO_VERSION);
                break;

            default:
                tg_conn_error(c, 0, TG_ERR_MALFORMED, true,
                              "frame length below 6");
                tg_conn_fail(c, "malformed frame: length %u is below 6",
                             tg_get_u32(c->rbuf + off));
                break;
            }

            c->state = TG_CONN_CLOSE_AFTER_FLUSH;
            break;
        }

        need = (size_t) h.length + TG_FRAME_LEN_SIZE;

        if (c->rlen - off < need) {
            break;
        }

        c->frames++;

        tg_handle_frame(c, c->rbuf + off, &h);

        off += need;
    }

    if (c->state != TG_CONN_OPEN) {
        return;
    }

    /* keep the incomplete frame at the start of the buffer */

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

    tg_log_info("connection %llu: ERROR %s for frame id %u: %s",
                (unsigned long long) c->id,
                err < sizeof(tg_error_names) / sizeof(tg_error_names[0])
                ? tg_error_names[err] : "?", id, msg);
}


/* frames */

static void
tg_handle_frame(tg_conn *c, const uint8_t *frame, const tg_frame_hdr *h)
{
    switch (h->type) {

    case TG_MSG_HELLO:
        tg_handle_hello(c, frame, h);
        break;

    case TG_MSG_DECIDE:
        tg_handle_decide(c, frame, h);
        break;

    case TG_MSG_MODELS:
        tg_handle_models(c, frame, h);
        break;

    case TG_MSG_STATUS:
        tg_handle_status(c, frame, h);
        break;

    case TG_MSG_CANCEL:
        /* a waiting DECIDE of this connection, given up: no reply */
        tg_queue_cancel(c, h->id);
        break;

    case TG_MSG_REPORT:
        tg_handle_report(c, frame, h);
        break;

    default:
        tg_conn_error(c, h->id, TG_ERR_UNKNOWN_TYPE, false,
                      "unknown frame type");
        break;
    }
}


static void
tg_malformed(tg_conn *c, const tg_frame_hdr *h, const char *what)
{
    tg_conn_error(c, h->id, TG_ERR_MALFORMED, true, what);
    tg_conn_fail(c, "malformed frame (type %u, id %u): %s", h->type, h->id,
                 what);
}


static void
tg_handle_hello(tg_conn *c, const uint8_t *frame, const tg_frame_hdr *h)
{
    int             rc;
    long            len;
    uint32_t        v, peer_max, pid;
    tg_field        f;
    tg_builder      b;
    tg_field_iter   it;
    const char     *sw;
    size_t          sw_len;

    peer_max = TG_MAX_FRAME_MIN;
    pid = 0;
    sw = "";
    sw_len = 0;

    tg_fields_init(&it, frame, h);

    while ((rc = tg_fields_next(&it, &f)) == 1) {
        switch (f.key) {

        case TG_F_MAX_FRAME:
            if (tg_field_u32(&f, &v) != 0) {
                tg_malformed(c, h, "max_frame is not a u32");
                return;
            }
            peer_max = v;
            break;

        case TG_F_PID:
            if (tg_field_u32(&f, &pid) != 0) {
                tg_malformed(c, h, "pid is not a u32");
                return;
            }
            break;

        case TG_F_SOFTWARE:
            sw = (const char *) f.value;
            sw_len = f.len;
            break;
        }
    }

    if (rc < 0) {
        tg_malformed(c, h, "a field runs past the end of the frame");
        return;
    }

    if (peer_max < TG_MAX_FRAME_MIN) {
        peer_max = TG_MAX_FRAME_MIN;
    }

    if (peer_max > TG_MAX_FRAME_LIMIT) {
        peer_max = TG_MAX_FRAME_LIMIT;
    }

    c->peer_max = peer_max;

    tg_log_info("connection %llu: HELLO from pid %u, \"%.*s\", "
                "max_frame %u", (unsigned long long) c->id, pid,
                tg_log_len(sw_len), sw, peer_max);

    tg_builder_start(c, &b, TG_MSG_HELLO_OK, h->id);
    tg_build_u32(&b, TG_F_MAX_FRAME, c->max_frame);
    tg_build_u32(&b, TG_F_PID, (uint32_t) getpid());
    tg_build_cstr(&b, TG_F_SOFTWARE, TG_SOFTWARE);

    len = tg_build_end(&b);
    if (len > 0) {
        tg_conn_send(c, c->srv->out, (size_t) len);
    }
}


static void
tg_handle_decide(tg_conn *c, const uint8_t *frame, const tg_frame_hdr *h)
{
    bool          has_endpoint;
    tg_facts      facts;
    tg_decision   d;

    if (tg_read_facts(c, frame, h, &facts, &has_endpoint) != 0) {
        return;
    }

    if (!has_endpoint || facts.model.data == NULL) {
        tg_conn_error(c, h->id, TG_ERR_MISSING_FIELD, false,
                      "DECIDE needs endpoint and model");
        return;
    }

    if (tg_answer_decide(c, h->id, &facts, &d) == 1) {
        tg_queue_park(c, frame, h, &d);
    }
}


int
tg_answer_decide(tg_conn *c, uint32_t id, const tg_facts *facts,
    tg_decision *d)
{
    uint32_t     lease;
    tg_server   *srv = c->srv;

    tg_decide(srv->policy, facts, srv->state, d);

    /* "policyd explain" asks like a worker, but changes nothing, gets no key */

    if (facts->dry_run) {
        d->authorization = "";
        tg_send_decision(c, id, d, 0);
        return 0;
    }

    if (d->status == TG_DECISION_QUEUE) {
        return 1;
    }

    lease = 0;

    if (d->status == 200
        && tg_state_lease_acquire(srv->state, d->provider->index, c->id,
                                  tg_now_ms(srv), &lease) != 0)
    {
        tg_conn_error(c, id, TG_ERR_INTERNAL, false, "cannot grant a lease");
        return 0;
    }

    tg_state_count_decision(srv->state, d->status,
                            d->status == 200 ? d->provider->index : SIZE_MAX,
                            d->route != NULL ? d->route->name : NULL);

    if (d->status == 200) {
        tg_log_debug("connection %llu: DECIDE %u \"%.*s\" %s attempt %u: "
                     "provider %s upstream %s path %s model %s lease %u "
                     "(%s)", (unsigned long long) c->id, id,
                     tg_log_len(facts->model.len), facts->model.data,
                     tg_endpoint_name(facts->endpoint), facts->attempt,
                     d->provider->name, d->upstream, d->path,
                     d->provider_model, lease, d->reason);

    } else if (d->status == 503 || d->status == 429) {
        tg_log_info("connection %llu: DECIDE %u \"%.*s\" %s: %u %s (%s)",
                    (unsigned long long) c->id, id,
                    tg_log_len(facts->model.len), facts->model.data,
                    tg_endpoint_name(facts->endpoint), d->status,
                    d->error_code, d->reason);
    } else {
        tg_log_debug("connection %llu: DECIDE %u \"%.*s\" %s: %u %s (%s)",
                     (unsigned long long) c->id, id,
                     tg_log_len(facts->model.len), facts->model.data,
                     tg_endpoint_name(facts->endpoint), d->status,
                     d->error_code, d->reason);
    }

    tg_send_decision(c, id, d, lease);

    return 0;
}


void
tg_send_decision(tg_conn *c, uint32_t id, const tg_decision *d,
    uint32_t lease)
{
    long        len;
    tg_builder  b;

    tg_builder_start(c, &b, TG_MSG_DECISION, id);

    /* only explain hears of waiting: as 202, with the provider and time */

    if (d->status == TG_DECISION_QUEUE) {
        tg_build_u32(&b, TG_F_STATUS, 202);
        tg_build_cstr(&b, TG_F_PROVIDER, d->provider->name);
        tg_build_cstr(&b, TG_F_ROUTE, d->route->name);
        tg_build_u32(&b, TG_F_WAIT_MS, d->queue_wait_ms);

    } else {
        tg_build_u32(&b, TG_F_STATUS, d->status);
    }

    if (d->status == 200) {
        tg_build_cstr(&b, TG_F_PROVIDER, d->provider->name);
        tg_build_cstr(&b, TG_F_ROUTE, d->route->name);
        tg_build_cstr(&b, TG_F_UPSTREAM, d->upstream);
        tg_build_cstr(&b, TG_F_SCHEME, d->scheme);
        tg_build_cstr(&b, TG_F_HOST, d->host);
        tg_build_cstr(&b, TG_F_PATH, d->path);
        tg_build_cstr(&b, TG_F_PROVIDER_MODEL, d->provider_model);
        tg_build_cstr(&b, TG_F_ZONE, d->zone);

        if (d->authorization[0] != '\0') {
            tg_build_cstr(&b, TG_F_AUTHORIZATION, d->authorization);
        }

        if (d->fallback != 0) {
            tg_build_u32(&b, TG_F_FALLBACK, d->fallback);
        }

        if (d->adjust[0] != '\0') {
            tg_build_cstr(&b, TG_F_ADJUST, d->adjust);
        }

        if (lease != 0) {
            tg_build_u32(&b, TG_F_LEASE, lease);

        } else if (d->cache_ms != 0) {
            tg_build_u32(&b, TG_F_CACHE_MS, d->cache_ms);

            if (d->cache_max_bytes != 0) {
                tg_build_u32(&b, TG_F_CACHE_MAX_BYTES, d->cache_max_bytes);
            }
        }

    } else if (d->status != TG_DECISION_QUEUE) {
        tg_build_cstr(&b, TG_F_ERROR_TYPE, d->error_type);
        tg_build_cstr(&b, TG_F_ERROR_CODE, d->error_code);
        tg_build_cstr(&b, TG_F_ERROR_MESSAGE, d->message);

        if (d->retry_after != 0) {
            tg_build_u32(&b, TG_F_RETRY_AFTER, d->retry_after);
        }

        if (d->route != NULL) {
            tg_build_cstr(&b, TG_F_ROUTE, d->route->name);
        }
    }

    if (d->reason[0] != '\0') {
        tg_build_cstr(&b, TG_F_REASON, d->reason);
    }

    len = tg_build_end(&b);

    if (len < 0) {
        /* only with absurdly long names; the lease must not leak */
        tg_state_lease_release(c->srv->state, lease);
        tg_conn_error(c, id, TG_ERR_INTERNAL, false,
                      "the decision does not fit in a frame");
        return;
    }

    tg_conn_send(c, c->srv->out, (size_t) len);
}


static void
tg_handle_models(tg_conn *c, const uint8_t *frame, const tg_frame_hdr *h)
{
    bool         has_endpoint;
    long         len, n;
    char        *p;
    size_t       room;
    tg_facts     facts;
    tg_server   *srv = c->srv;
    tg_builder   b;

    if (tg_read_facts(c, frame, h, &facts, &has_endpoint) != 0) {
        return;
    }

    room = c->peer_max - TG_REPLY_OVERHEAD;

    if (srv->json_cap < room) {
        p = realloc(srv->json, room);
        if (p == NULL) {
            tg_conn_error(c, h->id, TG_ERR_INTERNAL, false, "out of memory");
            return;
        }
        srv->json = p;
        srv->json_cap = room;
    }

    if (has_endpoint && facts.endpoint == TG_EP_NONE) {
        /* an endpoint policyd does not know: no route serves it */
        n = snprintf(srv->json, room, "{\"object\":\"list\",\"data\":[]}");

    } else {
        n = tg_models_json(srv->policy, &facts, srv->json, room);
    }

    if (n == TG_MODELS_NOT_FOUND) {
        tg_builder_start(c, &b, TG_MSG_MODEL_LIST, h->id);
        tg_build_u32(&b, TG_F_STATUS, 404);
        tg_build_cstr(&b, TG_F_ERROR_TYPE, "invalid_request_error");
        tg_build_cstr(&b, TG_F_ERROR_CODE, "model_not_found");
        tg_build_cstr(&b, TG_F_ERROR_MESSAGE, "No matching route found");

    } else if (n < 0) {
        tg_conn_error(c, h->id, TG_ERR_INTERNAL, false,
                      "the model list does not fit in a frame");
        return;

    } else {
        tg_builder_start(c, &b, TG_MSG_MODEL_LIST, h->id);
        tg_build_u32(&b, TG_F_STATUS, 200);
        tg_build_str(&b, TG_F_BODY, srv->json, (size_t) n);
    }

    len = tg_build_end(&b);
    if (len < 0) {
        tg_conn_error(c, h->id, TG_ERR_INTERNAL, false,
                      "the model list does not fit in a frame");
        return;
    }

    tg_log_debug("connection %llu: MODELS %u: %ld bytes",
                 (unsigned long long) c->id, h->id, n);

    tg_conn_send(c, srv->out, (size_t) len);
}


static void
tg_handle_report(tg_conn *c, const uint8_t *frame, const tg_frame_hdr *h)
{
    int             rc;
    char            provider[TG_PROVIDER_NAME_MAX + 1];
    char            route[TG_ROUTE_NAME_MAX + 1];
    uint32_t        total_ms, v;
    tg_field        f;
    tg_report       r;
    bool            fed;
    tg_pstate      *freed;
    tg_server      *srv = c->srv;
    tg_field_iter   it;

    memset(&r, 0, sizeof(r));
    r.count = 1;
    r.outcome = TG_OUTCOME_UNKNOWN;
    total_ms = 0;

    tg_fields_init(&it, frame, h);

    while ((rc = tg_fields_next(&it, &f)) == 1) {
        switch (f.key) {

        case TG_F_LEASE:
            if (tg_field_u32(&f, &r.lease) != 0) {
                tg_malformed(c, h, "lease is not a u32");
                return;
            }
            break;

        case TG_F_OUTCOME:
            r.outcome = tg_outcome_parse((const char *) f.value, f.len);
            break;

        /* names too long to be a provider's or a route's are not kept */

        case TG_F_PROVIDER:
            if (f.len < sizeof(provider)) {
                memcpy(provider, f.value, f.len);
                provider[f.len] = '\0';
                r.provider = provider;
            }
            break;

        case TG_F_ROUTE:
            if (f.len < sizeof(route) && memchr(f.value, 0, f.len) == NULL) {
                memcpy(route, f.value, f.len);
                route[f.len] = '\0';
                r.route = route;
            }
            break;

        case TG_F_HTTP_STATUS:
        case TG_F_UPSTREAM_MS:
        case TG_F_TOTAL_MS:
        case TG_F_PROMPT_TOKENS:
        case TG_F_COMPLETION_TOKENS:
        case TG_F_COUNT:
            if (tg_field_u32(&f, &v) != 0) {
                tg_malformed(c, h, "a REPORT number is not a u32");
                return;
            }

            if (f.key == TG_F_HTTP_STATUS) {
                r.http_status = v;
            } else if (f.key == TG_F_UPSTREAM_MS) {
                r.upstream_ms = v;
            } else if (f.key == TG_F_TOTAL_MS) {
                total_ms = v;
            } else if (f.key == TG_F_COUNT) {
                r.count = v;
            }
            break;
        }
    }

    if (rc < 0) {
        tg_malformed(c, h, "a field runs past the end of the frame");
        return;
    }

    if (r.count == 0 || (r.lease != 0 && r.count != 1)) {
        tg_malformed(c, h, "count must be 1 with a lease and never 0");
        return;
    }

    /* a route the policy does not have is not the module's to create */

    if (r.route != NULL
        && tg_policy_route(srv->policy, r.route, strlen(r.route)) == NULL)
    {
        r.route = NULL;
    }

    freed = tg_state_report(srv->state, &r, tg_now_ms(srv));

    tg_log_debug("connection %llu: REPORT %u: %u x %s, status %u, "
                 "upstream %u ms, total %u ms, lease %u%s",
                 (unsigned long long) c->id, h->id, r.count,
                 tg_outcome_name(r.outcome), r.http_status, r.upstream_ms,
                 total_ms, r.lease,
                 r.lease == 0 || freed != NULL ? "" : " (unknown)");

    /*
     * A failure may have changed the provider's state, a lease that ended
     * lets a waiting request go: both right after this frame's connection
     * is done with, since answering others may close connections.
     */

    fed = freed != NULL
          || (r.provider != NULL && tg_state_find(srv->state, r.provider));

    tg_soon(srv, r.outcome != TG_OUTCOME_OK && fed, freed != NULL);
}


/*
 * The facts of a DECIDE or MODELS.  Strings point into the frame; the
 * repeatable ones are collected in the server's reusable arrays.  Returns 0,
 * or -1 after answering a malformed frame.
 */

int
tg_read_facts(tg_conn *c, const uint8_t *frame, const tg_frame_hdr *h,
    tg_facts *facts, bool *has_endpoint)
{
    int             rc;
    uint8_t         u8;
    tg_str         *s;
    tg_field        f;
    tg_server      *srv = c->srv;
    tg_field_iter   it;

    memset(facts, 0, sizeof(*facts));
    facts->endpoint = TG_EP_NONE;
    *has_endpoint = false;

    srv->tags.n = 0;
    srv->allow.n = 0;
    srv->exclude.n = 0;

    tg_fields_init(&it, frame, h);

    while ((rc = tg_fields_next(&it, &f)) == 1) {
        s = NULL;

        switch (f.key) {

        case TG_F_ENDPOINT:
            *has_endpoint = true;
            facts->endpoint = tg_endpoint_parse((const char *) f.value,
                                                f.len);
            break;

        case TG_F_MODEL:
            s = &facts->model;
            break;

        case TG_F_CLIENT:
            s = &facts->client;
            break;

        case TG_F_TENANT:
            s = &facts->tenant;
            break;

        case TG_F_TAG:
        case TG_F_ALLOW_ROUTE:
        case TG_F_EXCLUDE:
            if (tg_strv_push(f.key == TG_F_TAG ? &srv->tags
                             : f.key == TG_F_ALLOW_ROUTE ? &srv->allow
                             : &srv->exclude, &f) != 0)
            {
                tg_conn_error(c, h->id, TG_ERR_INTERNAL, false,
                              "out of memory");
                return -1;
            }
            break;

        case TG_F_STREAM:
        case TG_F_TOOLS:
        case TG_F_DRY_RUN:
            if (tg_field_u8(&f, &u8) != 0) {
                tg_malformed(c, h, f.key == TG_F_STREAM
                                   ? "stream is not a u8"
                                   : f.key == TG_F_TOOLS
                                   ? "tools is not a u8"
                                   : "dry_run is not a u8");
                return -1;
            }

            if (f.key == TG_F_STREAM) {
                facts->stream = u8 != 0;
            } else if (f.key == TG_F_TOOLS) {
                facts->tools = u8 != 0;
            } else {
                facts->dry_run = u8 != 0;
            }
            break;

        case TG_F_BODY_BYTES:
            if (tg_field_u32(&f, &facts->body_bytes) != 0) {
                tg_malformed(c, h, "body_bytes is not a u32");
                return -1;
            }
            break;

        case TG_F_ATTEMPT:
            if (tg_field_u32(&f, &facts->attempt) != 0) {
                tg_malformed(c, h, "attempt is not a u32");
                return -1;
            }
            break;

        case TG_F_PROMPT_ESTIMATE:
            if (tg_field_u32(&f, &facts->prompt_estimate) != 0) {
                tg_malformed(c, h, "prompt_estimate is not a u32");
                return -1;
            }
            break;
        }

        if (s != NULL) {
            s->data = (const char *) f.value;
            s->len = f.len;
        }
    }

    if (rc < 0) {
        tg_malformed(c, h, "a field runs past the end of the frame");
        return -1;
    }

    facts->tags = srv->tags.items;
    facts->ntags = srv->tags.n;
    facts->allow = srv->allow.items;
    facts->nallow = srv->allow.n;
    facts->exclude = srv->exclude.items;
    facts->nexclude = srv->exclude.n;

    return 0;
}


/* A reply to this peer: at most what it accepts. */

void
tg_builder_start(tg_conn *c, tg_builder *b, uint8_t type, uint32_t id)
{
    size_t  cap;

    cap = (size_t) c->peer_max + TG_FRAME_LEN_SIZE;

    if (cap > c->srv->out_cap) {
        cap = c->srv->out_cap;
    }

    tg_build_begin(b, c->srv->out, cap, type, id);
}


static int
tg_strv_push(tg_strv *v, const tg_field *f)
{
    size_t   cap;
    tg_str  *items;

    if (v->n == v->cap) {
        cap = v->cap ? v->cap * 2 : 16;

        items = realloc(v->items, cap * sizeof(tg_str));
        if (items == NULL) {
            return -1;
        }

        v->items = items;
        v->cap = cap;
    }

    v->items[v->n].data = (const char *) f->value;
    v->items[v->n].len = f->len;
    v->n++;

    return 0;
}


int
tg_log_len(size_t len)
{
    return len > TG_LOG_STR_MAX ? TG_LOG_STR_MAX : (int) len;
}


uint64_t
tg_now_ms(tg_server *srv)
{
    return (uint64_t) (ev_now(srv->loop) * 1000);
}


/* STATUS from the module's tailgate_status handler: the report, relayed */

static void
tg_handle_status(tg_conn *c, const uint8_t *frame, const tg_frame_hdr *h)
{
    int             rc;
    long            len;
    char           *body, msg[TG_MESSAGE_MAX];
    size_t          blen, part, sent;
    tg_field        f;
    tg_server      *srv = c->srv;
    tg_builder      b;
    tg_field_iter   it;
    bool            prometheus;

    prometheus = false;

    tg_fields_init(&it, frame, h);

    while ((rc = tg_fields_next(&it, &f)) == 1) {
        if (f.key == TG_F_FORMAT) {
            prometheus = f.len == 10 && memcmp(f.value, "prometheus", 10) == 0;
        }
    }

    if (rc < 0) {
        tg_malformed(c, h, "a field runs past the end of the frame");
        return;
    }

    body = prometheus ? tg_status_prometheus(srv, &blen)
                      : tg_status_json(srv, &blen);

    if (body == NULL) {
        tg_conn_error(c, h->id, TG_ERR_INTERNAL, false,
                      "cannot build the status");
        return;
    }

    if (blen > TG_STATUS_MAX) {
        /* too much to relay: say so, and where to look */

        snprintf(msg, sizeof(msg), "The status is %zu bytes, more than "
                 "policyd relays through nginx (%u bytes). Ask policyd "
                 "directly: policyd status -a ADMIN_SOCKET.", blen,
                 (unsigned) TG_STATUS_MAX);

        free(body);

        tg_builder_start(c, &b, TG_MSG_STATUS_REPLY, h->id);
        tg_build_u32(&b, TG_F_STATUS, 413);
        tg_build_cstr(&b, TG_F_ERROR_MESSAGE, msg);

        len = tg_build_end(&b);
        if (len > 0) {
            tg_conn_send(c, srv->out, (size_t) len);
        }

        return;
    }

    /* more than one frame the worker reads: STATUS_PARTs, then the reply */

    part = c->peer_max - TG_REPLY_OVERHEAD;

    for (sent = 0; blen - sent > part; sent += part) {
        tg_builder_start(c, &b, TG_MSG_STATUS_PART, h->id);
        tg_build_str(&b, TG_F_BODY, body + sent, part);

        len = tg_build_end(&b);
        if (len < 0) {
            free(body);
            tg_conn_error(c, h->id, TG_ERR_INTERNAL, false,
                          "the status does not fit in frames");
            return;
        }

        tg_conn_send(c, srv->out, (size_t) len);
    }

    tg_builder_start(c, &b, TG_MSG_STATUS_REPLY, h->id);
    tg_build_u32(&b, TG_F_STATUS, 200);
    tg_build_str(&b, TG_F_BODY, body + sent, blen - sent);

    free(body);

    len = tg_build_end(&b);

    if (len < 0) {
        tg_conn_error(c, h->id, TG_ERR_INTERNAL, false,
                      "the status does not fit in a frame");
        return;
    }

    tg_conn_send(c, srv->out, (size_t) len);
}


/*
 * Judges every provider again; a change of state is logged, makes workers
 * forget the decisions they reuse, and may let waiting requests go.
 */

static void
tg_health_check(tg_server *srv)
{
    size_t      i, n, changed;
    uint64_t    expired, now_ms;
    tg_state   *st = srv->state;
    tg_health   old[64], *before;
    tg_pstate  *ps;

    n = st->nslots;
    now_ms = tg_now_ms(srv);

    before = n <= 64 ? old : malloc(n * sizeof(tg_health));
    if (before == NULL) {
        return;
    }

    for (i = 0; i < n; i++) {
        before[i] = st->slots[i]->health;
    }

    expired = st->leases_expired;

    changed = tg_state_evaluate(st, now_ms);
    tg_cooldown_arm(srv, now_ms);

    if (st->leases_expired != expired) {
        tg_log_warn("%llu leases expired: their REPORTs never came (a worker "
                    "lost them); their slots are free again",
                    (unsigned long long) (st->leases_expired - expired));
        tg_queue_wake_all(srv);
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
            tg_log_info("provider %s is up again (was %s): %s", ps->name,
                        tg_health_name(before[i]), ps->why);
        } else {
            tg_log_warn("provider %s is %s (was %s): %s", ps->name,
                        tg_health_name(ps->health),
                        tg_health_name(before[i]), ps->why);
        }
    }

    tg_invalidate_all(srv);
    tg_queue_wake_all(srv);

done:

    if (before != old) {
        free(before);
    }
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
    (void) loop;
    (void) revents;

    tg_health_check(w->data);
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

    tg_log_debug("provider %s: probe %s in %u ms: %s", a->provider,
                 r.ok ? (r.busy ? "busy" : "ok") : "failed", r.ms, r.note);

    tg_health_probed(ps, &r, tg_now_ms(srv));
    tg_health_check(srv);
}


/* work to do when no connection's callback is running */

static void
tg_soon(tg_server *srv, bool health, bool wake)
{
    srv->health_due |= health;
    srv->wake_due |= wake;

    if ((srv->health_due || srv->wake_due) && !ev_is_active(&srv->soon_w)) {
        ev_timer_start(srv->loop, &srv->soon_w);
    }
}


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

    if (health) {
        tg_health_check(srv);
    }

    if (wake) {
        tg_queue_wake_all(srv);
    }
}
