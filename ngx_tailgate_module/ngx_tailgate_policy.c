
/*
 * Copyright (C) The Tailgate authors
 *
 * The worker's side of the policyd protocol: a few persistent connections
 * to policyd's Unix socket, each carrying many calls at once, told apart by
 * frame id.  Nothing here blocks: connects, reads and writes are driven by
 * the event loop, and every call has its own timer.
 */


#include "ngx_tailgate_policy.h"
#include "ngx_tailgate_cache.h"

#include <poll.h>


#define NGX_TAILGATE_OUT_FRAMES  4      /* output buffer, in max frames */

/*
 * Reconnecting to re-announce leases: from this, doubling, up to a quarter
 * second, well inside the lease_recovery_ms of a policyd that restarts.
 */
#define NGX_TAILGATE_RECONNECT_MIN   20      /* ms */
#define NGX_TAILGATE_RECONNECT_MAX   250

/* what a worker that exits gives its last frames to leave */
#define NGX_TAILGATE_EXIT_FLUSH      200     /* ms */


typedef struct {
    ngx_connection_t            *connection;
    ngx_buf_t                   *in;
    ngx_buf_t                   *out;
    ngx_rbtree_t                 calls;
    ngx_rbtree_node_t            sentinel;
    size_t                       peer_max_frame;
    ngx_uint_t                   index;
    const char                  *close_reason;

    unsigned                     connecting:1;
    unsigned                     dispatching:1;
    unsigned                     close:1;
} ngx_tailgate_peer_t;


typedef struct {
    ngx_tailgate_policyd_conf_t    *conf;
    ngx_tailgate_peer_t            *peers;
    ngx_uint_t                      npeers;
    ngx_uint_t                      next_peer;
    uint32_t                        next_id;
    ngx_log_t                      *log;

    ngx_queue_t                     leases;     /* ngx_tailgate_lease_t */
    ngx_uint_t                      orphans;    /* of those, peer NULL */
    ngx_event_t                     reconnect;
    ngx_msec_t                      reconnect_after;

    /* for log lines on state changes only, not on every failed request */
    enum {
        NGX_TAILGATE_POLICYD_UNKNOWN = 0,
        NGX_TAILGATE_POLICYD_UP,
        NGX_TAILGATE_POLICYD_DOWN
    }                               state;
} ngx_tailgate_policyd_t;


static ngx_tailgate_peer_t *ngx_tailgate_peer_pick(void);
static ngx_tailgate_peer_t *ngx_tailgate_peer_open(void);
static ngx_int_t ngx_tailgate_peer_connect(ngx_tailgate_peer_t *peer);
static void ngx_tailgate_peer_close(ngx_tailgate_peer_t *peer,
    const char *reason);
static ngx_int_t ngx_tailgate_peer_queue(ngx_tailgate_peer_t *peer,
    u_char *frame, size_t size);
static void ngx_tailgate_peer_schedule_flush(ngx_tailgate_peer_t *peer);
static void ngx_tailgate_peer_flush(ngx_tailgate_peer_t *peer);
static void ngx_tailgate_peer_read_handler(ngx_event_t *rev);
static void ngx_tailgate_peer_write_handler(ngx_event_t *wev);
static ngx_int_t ngx_tailgate_peer_process(ngx_tailgate_peer_t *peer);
static ngx_int_t ngx_tailgate_peer_dispatch(ngx_tailgate_peer_t *peer,
    u_char *frame, size_t len);
static void ngx_tailgate_peer_unused(ngx_tailgate_peer_t *peer,
    ngx_tailgate_reply_t *reply);
static ngx_tailgate_call_t *ngx_tailgate_call_find(ngx_tailgate_peer_t *peer,
    uint32_t id);
static void ngx_tailgate_call_timeout(ngx_event_t *ev);
static void ngx_tailgate_call_unqueue(ngx_tailgate_call_t *call,
    uint32_t id);
static void ngx_tailgate_policyd_state(ngx_uint_t up, ngx_err_t err);
static void ngx_tailgate_lease_orphan(ngx_tailgate_peer_t *peer);
static void ngx_tailgate_lease_announce(ngx_tailgate_peer_t *peer);
static void ngx_tailgate_reconnect_handler(ngx_event_t *ev);
static void ngx_tailgate_peer_drain(ngx_tailgate_peer_t *peer,
    ngx_msec_t timeout);


static ngx_tailgate_policyd_t  ngx_tailgate_policyd;

ngx_uint_t  ngx_tailgate_policyd_traces;


ngx_int_t
ngx_tailgate_policyd_init_worker(ngx_cycle_t *cycle,
    ngx_tailgate_policyd_conf_t *conf)
{
    size_t                 out_size;
    ngx_uint_t             i;
    ngx_tailgate_peer_t   *peer;

    ngx_tailgate_policyd.conf = conf;
    ngx_tailgate_policyd.log = cycle->log;
    ngx_tailgate_policyd.npeers = conf->connections;
    ngx_tailgate_policyd.next_id = 1;

    ngx_queue_init(&ngx_tailgate_policyd.leases);

    ngx_tailgate_policyd.reconnect.handler = ngx_tailgate_reconnect_handler;
    ngx_tailgate_policyd.reconnect.log = cycle->log;
    ngx_tailgate_policyd.reconnect.data = &ngx_tailgate_policyd;

    /* a worker that exits has nobody left to re-announce leases for */
    ngx_tailgate_policyd.reconnect.cancelable = 1;

    ngx_tailgate_policyd.peers = ngx_pcalloc(cycle->pool,
                                   conf->connections
                                   * sizeof(ngx_tailgate_peer_t));
    if (ngx_tailgate_policyd.peers == NULL) {
        return NGX_ERROR;
    }

    out_size = NGX_TAILGATE_OUT_FRAMES * conf->buffer_size;

    for (i = 0; i < conf->connections; i++) {
        peer = &ngx_tailgate_policyd.peers[i];

        peer->index = i;

        peer->in = ngx_create_temp_buf(cycle->pool,
                                       TG_FRAME_LEN_SIZE + conf->buffer_size);
        peer->out = ngx_create_temp_buf(cycle->pool, out_size);

        if (peer->in == NULL || peer->out == NULL) {
            return NGX_ERROR;
        }

        ngx_rbtree_init(&peer->calls, &peer->sentinel,
                        ngx_rbtree_insert_value);
    }

    return NGX_OK;
}


/*
 * The worker exits: what its connections still have to say (the last
 * REPORTs and counts) leaves before they close, waiting a little for it:
 * no request is left to be held up.
 */

void
ngx_tailgate_policyd_exit_worker(void)
{
    ngx_uint_t            i;
    ngx_tailgate_peer_t  *peer;

    for (i = 0; i < ngx_tailgate_policyd.npeers; i++) {
        peer = &ngx_tailgate_policyd.peers[i];

        if (peer->connection) {
            ngx_tailgate_peer_drain(peer, NGX_TAILGATE_EXIT_FLUSH);
            ngx_tailgate_peer_close(peer, NULL);
        }
    }
}


static void
ngx_tailgate_peer_drain(ngx_tailgate_peer_t *peer, ngx_msec_t timeout)
{
    int                n;
    ssize_t            sent;
    ngx_buf_t         *out;
    ngx_msec_t         start, left;
    struct pollfd      pfd;
    ngx_connection_t  *c;

    c = peer->connection;
    out = peer->out;
    start = ngx_current_msec;
    left = timeout;

    while (out->pos < out->last) {

        if (!peer->connecting) {
            sent = send(c->fd, out->pos, out->last - out->pos, 0);

            if (sent > 0) {
                out->pos += sent;
                continue;
            }

            if (sent == -1 && ngx_socket_errno != NGX_EAGAIN
                && ngx_socket_errno != NGX_EINTR)
            {
                break;
            }
        }

        pfd.fd = c->fd;
        pfd.events = POLLOUT;
        pfd.revents = 0;

        n = poll(&pfd, 1, (int) left);

        ngx_time_update();
        left = timeout - ngx_min(timeout, ngx_current_msec - start);

        if (n <= 0 || left == 0 || (pfd.revents & (POLLERR|POLLHUP))) {
            break;
        }

        peer->connecting = 0;
    }

    if (out->pos < out->last) {
        ngx_log_error(NGX_LOG_WARN, ngx_tailgate_policyd.log, 0,
                      "tailgate: policyd connection #%ui: %uz bytes of "
                      "reports not sent at exit", peer->index,
                      (size_t) (out->last - out->pos));
    }
}


/*
 * Sends the frame and arms the call's timer.  NGX_DECLINED: policyd cannot
 * be reached or cannot take more work now; NGX_ERROR: the frame is too
 * large.  The handler is called exactly once unless the call is cancelled.
 */

ngx_int_t
ngx_tailgate_call(ngx_tailgate_call_t *call, ngx_tailgate_frame_t *frame,
    ngx_msec_t timeout, ngx_log_t *log)
{
    size_t                size;
    uint32_t              id;
    ngx_tailgate_peer_t  *peer;

    if (ngx_tailgate_frame_finish(frame) != NGX_OK) {
        return NGX_ERROR;
    }

    peer = ngx_tailgate_peer_pick();
    if (peer == NULL) {
        return NGX_DECLINED;
    }

    size = frame->pos - frame->start;

    if (size > TG_FRAME_LEN_SIZE + peer->peer_max_frame) {
        return NGX_ERROR;
    }

    id = ngx_tailgate_policyd.next_id++;

    if (ngx_tailgate_policyd.next_id == 0) {
        ngx_tailgate_policyd.next_id = 1;
    }

    ngx_tailgate_frame_set_id(frame->start, id);

    if (ngx_tailgate_peer_queue(peer, frame->start, size) != NGX_OK) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "tailgate: policyd connection #%ui is backed up, "
                      "request refused", peer->index);
        return NGX_DECLINED;
    }

    call->node.key = id;
    call->peer = peer;
    call->pending = 1;
    call->queued = 0;
    ngx_rbtree_insert(&peer->calls, &call->node);

    call->timeout = timeout;
    call->timer.handler = ngx_tailgate_call_timeout;
    call->timer.data = call;
    call->timer.log = log;
    ngx_add_timer(&call->timer, timeout);

    return NGX_OK;
}


void
ngx_tailgate_call_cancel(ngx_tailgate_call_t *call)
{
    uint32_t              id;
    ngx_tailgate_peer_t  *peer;

    if (!call->pending) {
        return;
    }

    peer = call->peer;
    id = (uint32_t) call->node.key;    /* ngx_rbtree_delete() clears it */

    ngx_rbtree_delete(&peer->calls, &call->node);
    call->pending = 0;

    if (call->timer.timer_set) {
        ngx_del_timer(&call->timer);
    }

    ngx_tailgate_call_unqueue(call, id);
}


/* a call waiting in policyd's queue gives up its place there */

static void
ngx_tailgate_call_unqueue(ngx_tailgate_call_t *call, uint32_t id)
{
    u_char                buf[TG_FRAME_HEADER_SIZE];
    ngx_tailgate_frame_t  f;
    ngx_tailgate_peer_t  *peer;

    peer = call->peer;

    if (!call->queued || peer->connection == NULL) {
        return;
    }

    call->queued = 0;

    ngx_tailgate_frame_init(&f, buf, sizeof(buf), TG_MSG_CANCEL);

    if (ngx_tailgate_frame_finish(&f) == NGX_OK) {
        ngx_tailgate_frame_set_id(f.start, id);
        (void) ngx_tailgate_peer_queue(peer, f.start, f.pos - f.start);
    }
}


/* a one-way frame (REPORT); lost when no connection is open */

void
ngx_tailgate_notify_on(void *peer, ngx_tailgate_frame_t *frame,
    ngx_log_t *log)
{
    ngx_tailgate_peer_t  *p = peer;

    /*
     * A lease's REPORT goes where its decision came from: a connection
     * with leases must not be the one whose REPORT waits behind another.
     */

    if (p == NULL || p->connection == NULL) {
        ngx_tailgate_notify(frame, log);
        return;
    }

    if (ngx_tailgate_frame_finish(frame) != NGX_OK) {
        return;
    }

    if (ngx_tailgate_peer_queue(p, frame->start, frame->pos - frame->start)
        != NGX_OK)
    {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "tailgate: policyd connection #%ui is backed up, "
                      "report dropped (policyd ends the lease later)",
                      p->index);
    }
}


void
ngx_tailgate_notify(ngx_tailgate_frame_t *frame, ngx_log_t *log)
{
    if (ngx_tailgate_frame_finish(frame) != NGX_OK) {
        return;
    }

    ngx_tailgate_notify_frames(frame->start, frame->pos - frame->start, log);
}


/* one-way frames, one after another in frames, on any open connection */

void
ngx_tailgate_notify_frames(u_char *frames, size_t len, ngx_log_t *log)
{
    ngx_tailgate_peer_t  *peer;

    peer = ngx_tailgate_peer_open();

    if (peer == NULL) {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, log, 0,
                       "tailgate: no policyd connection, %uz bytes of "
                       "reports dropped", len);
        return;
    }

    if (ngx_tailgate_peer_queue(peer, frames, len) != NGX_OK) {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "tailgate: policyd connection #%ui is backed up, "
                      "report dropped", peer->index);
    }
}


ngx_uint_t
ngx_tailgate_policyd_up(void)
{
    /* no "tailgate on" anywhere: this worker has no connections at all */

    if (ngx_tailgate_policyd.npeers == 0) {
        return 0;
    }

    return ngx_tailgate_peer_pick() != NULL;
}


/*
 * Round robin over the connections; a closed one is reopened on demand.
 * When policyd cannot be reached, every request fails at once: connect()
 * to a Unix socket answers immediately, so there is nothing to wait for.
 */

static ngx_tailgate_peer_t *
ngx_tailgate_peer_pick(void)
{
    ngx_uint_t            n;
    ngx_tailgate_peer_t  *peer;

    n = ngx_tailgate_policyd.npeers;
    peer = &ngx_tailgate_policyd.peers[ngx_tailgate_policyd.next_peer++ % n];

    if (peer->connection) {
        return peer;
    }

    if (ngx_tailgate_peer_connect(peer) == NGX_OK) {
        return peer;
    }

    return ngx_tailgate_peer_open();
}


/* a connection that is open, connected or not yet; NULL: none */

static ngx_tailgate_peer_t *
ngx_tailgate_peer_open(void)
{
    ngx_uint_t  i;

    for (i = 0; i < ngx_tailgate_policyd.npeers; i++) {
        if (ngx_tailgate_policyd.peers[i].connection) {
            return &ngx_tailgate_policyd.peers[i];
        }
    }

    return NULL;
}


static ngx_int_t
ngx_tailgate_peer_connect(ngx_tailgate_peer_t *peer)
{
    u_char                 hello[64];
    ngx_int_t              rc;
    ngx_err_t              err;
    ngx_addr_t            *addr;
    ngx_socket_t           s;
    ngx_connection_t      *c;
    ngx_tailgate_frame_t   f;

    addr = ngx_tailgate_policyd.conf->addr;

    s = ngx_socket(addr->sockaddr->sa_family, SOCK_STREAM, 0);
    if (s == (ngx_socket_t) -1) {
        ngx_log_error(NGX_LOG_ALERT, ngx_tailgate_policyd.log,
                      ngx_socket_errno, ngx_socket_n " failed");
        return NGX_ERROR;
    }

    if (ngx_nonblocking(s) == -1) {
        ngx_log_error(NGX_LOG_ALERT, ngx_tailgate_policyd.log,
                      ngx_socket_errno, ngx_nonblocking_n " failed");
        ngx_close_socket(s);
        return NGX_ERROR;
    }

    rc = connect(s, addr->sockaddr, addr->socklen);

    if (rc == -1) {
        err = ngx_socket_errno;

        if (err != NGX_EINPROGRESS) {
            ngx_close_socket(s);
            ngx_tailgate_policyd_state(0, err);
            return NGX_DECLINED;
        }
    }

    c = ngx_get_connection(s, ngx_tailgate_policyd.log);
    if (c == NULL) {
        ngx_close_socket(s);
        return NGX_ERROR;
    }

    c->recv = ngx_recv;
    c->send = ngx_send;
    c->recv_chain = ngx_recv_chain;
    c->send_chain = ngx_send_chain;
    c->log_error = NGX_ERROR_ERR;
    c->number = ngx_atomic_fetch_add(ngx_connection_counter, 1);
    c->start_time = ngx_current_msec;
    c->data = peer;

    c->read->handler = ngx_tailgate_peer_read_handler;
    c->write->handler = ngx_tailgate_peer_write_handler;
    c->read->log = c->log;
    c->write->log = c->log;

    if (ngx_add_conn) {
        if (ngx_add_conn(c) == NGX_ERROR) {
            ngx_close_connection(c);
            return NGX_ERROR;
        }

    } else if (ngx_add_event(c->read, NGX_READ_EVENT,
                             (ngx_event_flags & NGX_USE_CLEAR_EVENT)
                             ? NGX_CLEAR_EVENT : NGX_LEVEL_EVENT)
               != NGX_OK)
    {
        ngx_close_connection(c);
        return NGX_ERROR;
    }

    peer->connection = c;
    peer->connecting = (rc == -1);
    peer->close = 0;
    peer->peer_max_frame = TG_MAX_FRAME_MIN;
    peer->in->pos = peer->in->last = peer->in->start;
    peer->out->pos = peer->out->last = peer->out->start;

    if (!peer->connecting) {
        c->write->ready = 1;
    }

    /* the first frame; calls may follow without waiting for HELLO_OK */

    ngx_tailgate_frame_init(&f, hello, sizeof(hello), TG_MSG_HELLO);
    ngx_tailgate_frame_u32(&f, TG_F_MAX_FRAME,
                           ngx_tailgate_policyd.conf->buffer_size);
    ngx_tailgate_frame_u32(&f, TG_F_PID, ngx_pid);
    ngx_tailgate_frame_str(&f, TG_F_SOFTWARE,
                           &(ngx_str_t) ngx_string(NGX_TAILGATE_SOFTWARE));
    (void) ngx_tailgate_frame_finish(&f);

    (void) ngx_tailgate_peer_queue(peer, f.start, f.pos - f.start);

    /* before any call on it: the leases this worker holds from before */
    ngx_tailgate_lease_announce(peer);

    if (peer->connecting) {
        /* the write event tells when the connect() is done */
        if (ngx_handle_write_event(c->write, 0) != NGX_OK) {
            ngx_tailgate_peer_close(peer, "cannot watch connect()");
            return NGX_ERROR;
        }
    }

    ngx_tailgate_policyd_state(1, 0);

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, c->log, 0,
                   "tailgate: policyd connection #%ui open, fd:%d",
                   peer->index, s);

    return NGX_OK;
}


static void
ngx_tailgate_peer_close(ngx_tailgate_peer_t *peer, const char *reason)
{
    ngx_rbtree_node_t    *node, *root, *sentinel;
    ngx_tailgate_call_t  *call, *failed;

    if (peer->dispatching) {
        /* a call handler is running on our buffers: close afterwards */
        peer->close = 1;
        peer->close_reason = reason;
        return;
    }

    if (reason) {
        ngx_log_error(NGX_LOG_ERR, ngx_tailgate_policyd.log, 0,
                      "tailgate: policyd connection #%ui closed: %s",
                      peer->index, reason);
    }

    ngx_close_connection(peer->connection);
    peer->connection = NULL;
    peer->connecting = 0;
    peer->close = 0;

    ngx_tailgate_lease_orphan(peer);

    /* a policyd that comes back may have another policy */
    ngx_tailgate_cache_flush();

    /*
     * Take every waiting call out first: their handlers may start new
     * calls, which may reopen this very connection.
     */

    failed = NULL;
    sentinel = peer->calls.sentinel;

    for ( ;; ) {
        root = peer->calls.root;

        if (root == sentinel) {
            break;
        }

        node = ngx_rbtree_min(root, sentinel);
        ngx_rbtree_delete(&peer->calls, node);

        call = (ngx_tailgate_call_t *) node;
        call->pending = 0;

        if (call->timer.timer_set) {
            ngx_del_timer(&call->timer);
        }

        call->next = failed;
        failed = call;
    }

    while (failed) {
        call = failed;
        failed = call->next;

        call->handler(call, NGX_TAILGATE_CALL_UNAVAILABLE, NULL);
    }
}


static ngx_int_t
ngx_tailgate_peer_queue(ngx_tailgate_peer_t *peer, u_char *frame, size_t size)
{
    size_t      pending;
    ngx_buf_t  *out;

    out = peer->out;

    if ((size_t) (out->end - out->last) < size) {
        pending = out->last - out->pos;

        if ((size_t) (out->end - out->start) - pending < size) {
            return NGX_DECLINED;
        }

        ngx_memmove(out->start, out->pos, pending);
        out->pos = out->start;
        out->last = out->start + pending;
    }

    out->last = ngx_cpymem(out->last, frame, size);

    ngx_tailgate_peer_schedule_flush(peer);

    return NGX_OK;
}


/*
 * Frames queued while one event is handled leave in one write at the end
 * of this event loop iteration, so busy workers make few system calls.
 */

static void
ngx_tailgate_peer_schedule_flush(ngx_tailgate_peer_t *peer)
{
    ngx_event_t  *wev;

    wev = peer->connection->write;

    if (!peer->connecting && !wev->posted) {
        ngx_post_event(wev, &ngx_posted_events);
    }
}


static void
ngx_tailgate_peer_flush(ngx_tailgate_peer_t *peer)
{
    ssize_t            n;
    ngx_buf_t         *out;
    ngx_connection_t  *c;

    c = peer->connection;
    out = peer->out;

    while (out->pos < out->last) {
        n = c->send(c, out->pos, out->last - out->pos);

        if (n == NGX_ERROR) {
            ngx_tailgate_peer_close(peer, "send() failed");
            return;
        }

        if (n == NGX_AGAIN) {
            if (ngx_handle_write_event(c->write, 0) != NGX_OK) {
                ngx_tailgate_peer_close(peer, "cannot watch writes");
            }

            return;
        }

        out->pos += n;
    }

    out->pos = out->start;
    out->last = out->start;
}


static void
ngx_tailgate_peer_write_handler(ngx_event_t *wev)
{
    int                   err;
    socklen_t             len;
    ngx_connection_t     *c;
    ngx_tailgate_peer_t  *peer;

    c = wev->data;
    peer = c->data;

    if (peer->connecting) {
        err = 0;
        len = sizeof(int);

        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, (void *) &err, &len)
            == -1)
        {
            err = ngx_socket_errno;
        }

        if (err) {
            ngx_tailgate_policyd_state(0, err);
            ngx_tailgate_peer_close(peer, NULL);
            return;
        }

        peer->connecting = 0;
    }

    ngx_tailgate_peer_flush(peer);
}


static void
ngx_tailgate_peer_read_handler(ngx_event_t *rev)
{
    ssize_t               n;
    ngx_buf_t            *in;
    ngx_connection_t     *c;
    ngx_tailgate_peer_t  *peer;

    c = rev->data;
    peer = c->data;
    in = peer->in;

    do {
        n = c->recv(c, in->last, in->end - in->last);

        if (n == NGX_AGAIN) {
            break;
        }

        if (n == 0) {
            ngx_tailgate_peer_close(peer, "policyd closed the connection");
            return;
        }

        if (n == NGX_ERROR) {
            ngx_tailgate_peer_close(peer, "recv() failed");
            return;
        }

        in->last += n;

        switch (ngx_tailgate_peer_process(peer)) {

        case NGX_OK:
            break;

        case NGX_DONE:
            /* closed, maybe already reopened: c is not ours any more */
            return;

        default:
            ngx_tailgate_peer_close(peer, "bad frame from policyd");
            return;
        }

    } while (rev->ready);

    if (ngx_handle_read_event(rev, 0) != NGX_OK) {
        ngx_tailgate_peer_close(peer, "cannot watch reads");
    }
}


static ngx_int_t
ngx_tailgate_peer_process(ngx_tailgate_peer_t *peer)
{
    size_t      avail, len, rest;
    u_char     *frame;
    ngx_int_t   rc;
    ngx_buf_t  *in;

    in = peer->in;
    rc = NGX_OK;

    peer->dispatching = 1;

    for ( ;; ) {
        avail = in->last - in->pos;

        if (avail < TG_FRAME_LEN_SIZE) {
            break;
        }

        len = ((size_t) in->pos[0] << 24) | ((size_t) in->pos[1] << 16)
              | ((size_t) in->pos[2] << 8) | (size_t) in->pos[3];

        if (len < TG_FRAME_BODY_HEADER_SIZE
            || len > ngx_tailgate_policyd.conf->buffer_size)
        {
            ngx_log_error(NGX_LOG_ERR, ngx_tailgate_policyd.log, 0,
                          "tailgate: policyd sent a frame of %uz bytes, "
                          "the limit is %uz", len,
                          ngx_tailgate_policyd.conf->buffer_size);
            rc = NGX_ERROR;
            break;
        }

        if (avail < TG_FRAME_LEN_SIZE + len) {
            break;
        }

        frame = in->pos + TG_FRAME_LEN_SIZE;
        in->pos += TG_FRAME_LEN_SIZE + len;

        rc = ngx_tailgate_peer_dispatch(peer, frame, len);

        if (rc != NGX_OK || peer->close) {
            break;
        }
    }

    peer->dispatching = 0;

    if (peer->close) {
        ngx_tailgate_peer_close(peer, peer->close_reason);
        return NGX_DONE;
    }

    /* keep the start of an incomplete frame at the start of the buffer */

    rest = in->last - in->pos;

    if (rest && in->pos != in->start) {
        ngx_memmove(in->start, in->pos, rest);
    }

    in->pos = in->start;
    in->last = in->start + rest;

    return rc;
}


static ngx_int_t
ngx_tailgate_peer_dispatch(ngx_tailgate_peer_t *peer, u_char *frame,
    size_t len)
{
    uint32_t               id, max_frame;
    ngx_tailgate_call_t   *call;
    ngx_tailgate_reply_t   reply;

    max_frame = 0;

    if (ngx_tailgate_frame_parse(frame, len, &id, &reply, &max_frame)
        != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ERR, ngx_tailgate_policyd.log, 0,
                      "tailgate: policyd sent a malformed frame");
        return NGX_ERROR;
    }

    switch (reply.type) {

    case TG_MSG_HELLO_OK:
        if (max_frame >= TG_MAX_FRAME_MIN && max_frame <= TG_MAX_FRAME_LIMIT) {
            peer->peer_max_frame = max_frame;
        }

        /* the policyd of now says whether it wants trace context */
        ngx_tailgate_policyd_traces = reply.trace ? 1 : 0;

        return NGX_OK;

    case TG_MSG_INVALIDATE:
        ngx_tailgate_cache_flush();
        return NGX_OK;

    case TG_MSG_QUEUED:

        /*
         * The decision waits for a slot of a busy provider: so does the
         * request, that long and its own timeout, without blocking.
         */

        call = ngx_tailgate_call_find(peer, id);

        if (call) {
            call->queued = 1;
            ngx_add_timer(&call->timer, reply.wait_ms + call->timeout);

            ngx_log_debug2(NGX_LOG_DEBUG_HTTP, call->timer.log, 0,
                           "tailgate: waiting up to %ui ms for a slot of "
                           "\"%V\"", reply.wait_ms, &reply.provider);
        }

        return NGX_OK;

    case TG_MSG_STATUS_PART:

        /* a status larger than one frame comes in parts, then the reply */

        call = ngx_tailgate_call_find(peer, id);

        if (call && call->part) {
            call->part(call, &reply);
        }

        return NGX_OK;

    case TG_MSG_DECISION:
    case TG_MSG_MODEL_LIST:
    case TG_MSG_STATUS_REPLY:
    case TG_MSG_JWKS_STATE:
    case TG_MSG_ERROR:
        break;

    default:
        ngx_log_error(NGX_LOG_ERR, ngx_tailgate_policyd.log, 0,
                      "tailgate: policyd sent a frame of unknown type %ui",
                      reply.type);
        return NGX_ERROR;
    }

    if (reply.type == TG_MSG_ERROR) {
        ngx_log_error(NGX_LOG_ERR, ngx_tailgate_policyd.log, 0,
                      "tailgate: policyd refused %s: \"%V\" (error %ui)",
                      id ? "a request" : "the connection",
                      &reply.error_message, reply.status);

        if (id == 0) {
            return NGX_ERROR;
        }
    }

    call = ngx_tailgate_call_find(peer, id);

    if (call == NULL) {
        /*
         * The request stopped waiting: the decision is reported unused, for
         * its route, so that decisions and reports add up - and its lease,
         * if any, ends at once.
         */

        if (reply.type == TG_MSG_DECISION && reply.status == 200) {
            ngx_tailgate_peer_unused(peer, &reply);
        }

        return NGX_OK;
    }

    ngx_rbtree_delete(&peer->calls, &call->node);
    call->pending = 0;

    if (call->timer.timer_set) {
        ngx_del_timer(&call->timer);
    }

    call->handler(call, reply.type == TG_MSG_ERROR
                        ? NGX_TAILGATE_CALL_REFUSED : NGX_TAILGATE_CALL_OK,
                  &reply);

    return NGX_OK;
}


static void
ngx_tailgate_peer_unused(ngx_tailgate_peer_t *peer,
    ngx_tailgate_reply_t *reply)
{
    u_char                         buf[1024];
    ngx_tailgate_frame_t           f;
    const ngx_tailgate_outcome_t  *not_sent;

    not_sent = &ngx_tailgate_outcomes[NGX_TAILGATE_OUTCOME_NOT_SENT];

    ngx_tailgate_frame_init(&f, buf, sizeof(buf), TG_MSG_REPORT);

    if (reply->lease) {
        ngx_tailgate_frame_u32(&f, TG_F_LEASE, reply->lease);
    }

    ngx_tailgate_frame_str(&f, TG_F_PROVIDER, &reply->provider);
    ngx_tailgate_frame_str(&f, TG_F_ROUTE, &reply->route);
    ngx_tailgate_frame_str(&f, TG_F_OUTCOME, &not_sent->name);

    if (ngx_tailgate_frame_finish(&f) == NGX_OK) {
        (void) ngx_tailgate_peer_queue(peer, f.start, f.pos - f.start);
    }
}


static ngx_tailgate_call_t *
ngx_tailgate_call_find(ngx_tailgate_peer_t *peer, uint32_t id)
{
    ngx_rbtree_node_t  *node, *sentinel;

    node = peer->calls.root;
    sentinel = peer->calls.sentinel;

    while (node != sentinel) {

        if (id < node->key) {
            node = node->left;
            continue;
        }

        if (id > node->key) {
            node = node->right;
            continue;
        }

        return (ngx_tailgate_call_t *) node;
    }

    return NULL;
}


static void
ngx_tailgate_call_timeout(ngx_event_t *ev)
{
    uint32_t              id;
    ngx_tailgate_call_t  *call;
    ngx_tailgate_peer_t  *peer;

    call = ev->data;
    peer = call->peer;
    id = (uint32_t) call->node.key;

    ngx_rbtree_delete(&peer->calls, &call->node);
    call->pending = 0;

    ngx_log_error(NGX_LOG_ERR, ev->log, 0,
                  "tailgate: policyd did not answer in time");

    ngx_tailgate_call_unqueue(call, id);

    call->handler(call, NGX_TAILGATE_CALL_TIMEOUT, NULL);
}


static void
ngx_tailgate_policyd_state(ngx_uint_t up, ngx_err_t err)
{
    ngx_str_t  *name;

    name = &ngx_tailgate_policyd.conf->socket;

    if (up) {
        if (ngx_tailgate_policyd.state == NGX_TAILGATE_POLICYD_DOWN) {
            ngx_log_error(NGX_LOG_NOTICE, ngx_tailgate_policyd.log, 0,
                          "tailgate: policyd at \"%V\" is reachable again",
                          name);
        }

        ngx_tailgate_policyd.state = NGX_TAILGATE_POLICYD_UP;
        return;
    }

    if (ngx_tailgate_policyd.state != NGX_TAILGATE_POLICYD_DOWN) {
        ngx_log_error(NGX_LOG_ERR, ngx_tailgate_policyd.log, err,
                      "tailgate: cannot connect to policyd at \"%V\", "
                      "requests fail until it is back", name);
    }

    ngx_tailgate_policyd.state = NGX_TAILGATE_POLICYD_DOWN;
}


void
ngx_tailgate_lease_hold(ngx_tailgate_lease_t *lease, void *peer, uint32_t id,
    ngx_str_t *provider)
{
    ngx_tailgate_lease_end(lease);

    if (id == 0) {
        return;
    }

    lease->id = id;
    lease->peer = peer;
    lease->provider = *provider;

    ngx_queue_insert_tail(&ngx_tailgate_policyd.leases, &lease->queue);

    if (peer == NULL) {
        ngx_tailgate_policyd.orphans++;
    }
}


/* the lease is reported or its request is gone; again does nothing */

void
ngx_tailgate_lease_end(ngx_tailgate_lease_t *lease)
{
    if (lease->id == 0) {
        return;
    }

    if (lease->peer == NULL && ngx_tailgate_policyd.orphans) {
        ngx_tailgate_policyd.orphans--;
    }

    ngx_queue_remove(&lease->queue);
    lease->id = 0;
    lease->peer = NULL;
}


/* the peer closed: its leases are to be re-announced, soon */

static void
ngx_tailgate_lease_orphan(ngx_tailgate_peer_t *peer)
{
    ngx_queue_t           *q;
    ngx_tailgate_peer_t   *open;
    ngx_tailgate_lease_t  *lease;

    for (q = ngx_queue_head(&ngx_tailgate_policyd.leases);
         q != ngx_queue_sentinel(&ngx_tailgate_policyd.leases);
         q = ngx_queue_next(q))
    {
        lease = ngx_queue_data(q, ngx_tailgate_lease_t, queue);

        if (lease->peer == peer) {
            lease->peer = NULL;
            ngx_tailgate_policyd.orphans++;
        }
    }

    if (ngx_tailgate_policyd.orphans == 0
        || ngx_exiting || ngx_terminate || ngx_quit)
    {
        return;
    }

    /* another connection is open: they go there now */

    open = ngx_tailgate_peer_open();

    if (open) {
        ngx_tailgate_lease_announce(open);
        return;
    }

    if (!ngx_tailgate_policyd.reconnect.timer_set) {
        ngx_tailgate_policyd.reconnect_after = NGX_TAILGATE_RECONNECT_MIN;
        ngx_add_timer(&ngx_tailgate_policyd.reconnect,
                      NGX_TAILGATE_RECONNECT_MIN);
    }
}


/* HOLD for every lease whose connection is gone, on this one */

static void
ngx_tailgate_lease_announce(ngx_tailgate_peer_t *peer)
{
    u_char                 buf[TG_FRAME_HEADER_SIZE + 2 * TG_FIELD_HEADER_SIZE
                               + 4 + 256];
    ngx_queue_t           *q;
    ngx_tailgate_frame_t   f;
    ngx_tailgate_lease_t  *lease;

    if (ngx_tailgate_policyd.orphans == 0) {
        return;
    }

    for (q = ngx_queue_head(&ngx_tailgate_policyd.leases);
         q != ngx_queue_sentinel(&ngx_tailgate_policyd.leases);
         q = ngx_queue_next(q))
    {
        lease = ngx_queue_data(q, ngx_tailgate_lease_t, queue);

        if (lease->peer != NULL) {
            continue;
        }

        ngx_tailgate_frame_init(&f, buf, sizeof(buf), TG_MSG_HOLD);
        ngx_tailgate_frame_u32(&f, TG_F_LEASE, lease->id);
        ngx_tailgate_frame_str(&f, TG_F_PROVIDER, &lease->provider);

        if (ngx_tailgate_frame_finish(&f) != NGX_OK
            || ngx_tailgate_peer_queue(peer, f.start, f.pos - f.start)
               != NGX_OK)
        {
            /* policyd ends what it does not know of: lease_ttl_ms */
            ngx_log_error(NGX_LOG_WARN, ngx_tailgate_policyd.log, 0,
                          "tailgate: lease %uD of provider \"%V\" could not "
                          "be re-announced", lease->id, &lease->provider);
        }

        lease->peer = peer;
        ngx_tailgate_policyd.orphans--;
    }

    ngx_log_error(NGX_LOG_NOTICE, ngx_tailgate_policyd.log, 0,
                  "tailgate: leases still held re-announced to policyd on "
                  "connection #%ui", peer->index);
}


static void
ngx_tailgate_reconnect_handler(ngx_event_t *ev)
{
    ngx_tailgate_peer_t  *peer;

    if (ngx_tailgate_policyd.orphans == 0) {
        return;
    }

    /* a connection that opens announces them; else try again later */

    peer = ngx_tailgate_peer_open();

    if (peer) {
        ngx_tailgate_lease_announce(peer);

    } else {
        (void) ngx_tailgate_peer_pick();
    }

    if (ngx_tailgate_policyd.orphans == 0) {
        return;
    }

    ngx_tailgate_policyd.reconnect_after =
        ngx_min(ngx_tailgate_policyd.reconnect_after * 2,
                NGX_TAILGATE_RECONNECT_MAX);

    ngx_add_timer(ev, ngx_tailgate_policyd.reconnect_after);
}
