/*
 * The admin socket (admin_listen in the policy, or -a PATH): one command
 * per connection, one line each way, for operators and their tools:
 *
 *   status     the status as JSON
 *   metrics    the same as Prometheus text
 *
 * `policyd status -a PATH` and `socat - UNIX:PATH` speak it.  It is a
 * socket of its own, owner-only by default, because the status tells what
 * the providers are and how they fare; nginx workers never use it.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ev.h>

#include "admin.h"
#include "log.h"
#include "sock.h"


#define TG_ADMIN_LINE_MAX    64
#define TG_ADMIN_CONNS_MAX   16
#define TG_ADMIN_TIMEOUT     5.0     /* seconds for a whole exchange */
#define TG_ADMIN_RETRY       1.0     /* seconds, after accept() failed */


typedef struct tg_admin_conn  tg_admin_conn;

struct tg_admin_conn {
    ev_io            rw;
    ev_io            ww;
    ev_timer         timeout;
    tg_admin        *admin;
    int              fd;
    char             line[TG_ADMIN_LINE_MAX];
    size_t           len;
    char            *out;
    size_t           out_len;
    size_t           out_pos;
    tg_admin_conn   *prev;
    tg_admin_conn   *next;
};


struct tg_admin {
    struct ev_loop  *loop;
    tg_admin_body_pt body;
    void            *data;
    tg_sock          sock;
    ev_io            accept_w;
    ev_timer         retry;
    tg_admin_conn   *conns;
    size_t           nconns;
};


static void tg_admin_accept_cb(struct ev_loop *loop, ev_io *w, int revents);
static void tg_admin_retry_cb(struct ev_loop *loop, ev_timer *w, int revents);
static void tg_admin_read_cb(struct ev_loop *loop, ev_io *w, int revents);
static void tg_admin_write_cb(struct ev_loop *loop, ev_io *w, int revents);
static void tg_admin_timeout_cb(struct ev_loop *loop, ev_timer *w,
    int revents);
static void tg_admin_answer(tg_admin_conn *ac);
static void tg_admin_close_conn(tg_admin_conn *ac);


tg_admin *
tg_admin_open(struct ev_loop *loop, const tg_listen *l,
    tg_admin_body_pt body, void *data)
{
    tg_admin  *a;

    a = calloc(1, sizeof(tg_admin));
    if (a == NULL) {
        tg_log_error("admin.no_memory", "",
                     "out of memory for the admin socket");
        return NULL;
    }

    a->loop = loop;
    a->body = body;
    a->data = data;
    a->sock.fd = -1;

    if (tg_sock_open(&a->sock, l) != 0) {
        free(a);
        return NULL;
    }

    ev_io_init(&a->accept_w, tg_admin_accept_cb, a->sock.fd, EV_READ);
    a->accept_w.data = a;
    ev_io_start(loop, &a->accept_w);

    ev_init(&a->retry, tg_admin_retry_cb);
    a->retry.data = a;

    tg_log_info("admin.listening", "path mode",
                "admin socket %s (mode %04o)", a->sock.path,
                (unsigned) l->mode);

    return a;
}


void
tg_admin_close(tg_admin *a)
{
    if (a == NULL) {
        return;
    }

    while (a->conns != NULL) {
        tg_admin_close_conn(a->conns);
    }

    ev_io_stop(a->loop, &a->accept_w);
    ev_timer_stop(a->loop, &a->retry);
    tg_sock_close(&a->sock);

    free(a);
}


static void
tg_admin_accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    int             fd;
    tg_admin       *a = w->data;
    tg_admin_conn  *ac;

    (void) revents;

    fd = accept4(a->sock.fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

    if (fd == -1) {
        if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED) {
            return;
        }

        tg_log_warn("admin.accept_failed", "error retry_s",
                    "admin socket: accept() failed: %s; trying again in "
                    "%.0f s", strerror(errno), TG_ADMIN_RETRY);

        /* out of descriptors: the socket stays readable, do not spin */

        ev_io_stop(loop, &a->accept_w);
        ev_timer_set(&a->retry, TG_ADMIN_RETRY, 0);
        ev_timer_start(loop, &a->retry);
        return;
    }

    if (a->nconns >= TG_ADMIN_CONNS_MAX
        || (ac = calloc(1, sizeof(tg_admin_conn))) == NULL)
    {
        close(fd);
        return;
    }

    ac->admin = a;
    ac->fd = fd;

    ev_io_init(&ac->rw, tg_admin_read_cb, fd, EV_READ);
    ev_io_init(&ac->ww, tg_admin_write_cb, fd, EV_WRITE);
    ev_timer_init(&ac->timeout, tg_admin_timeout_cb, TG_ADMIN_TIMEOUT, 0);
    ac->rw.data = ac;
    ac->ww.data = ac;
    ac->timeout.data = ac;

    ac->next = a->conns;
    if (a->conns != NULL) {
        a->conns->prev = ac;
    }
    a->conns = ac;
    a->nconns++;

    ev_io_start(loop, &ac->rw);
    ev_timer_start(loop, &ac->timeout);
}


static void
tg_admin_retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    tg_admin  *a = w->data;

    (void) revents;

    ev_io_start(loop, &a->accept_w);
}


static void
tg_admin_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    char           *eol;
    ssize_t         n;
    tg_admin_conn  *ac = w->data;

    (void) loop;
    (void) revents;

    n = read(ac->fd, ac->line + ac->len, sizeof(ac->line) - 1 - ac->len);

    if (n == -1 && (errno == EAGAIN || errno == EINTR)) {
        return;
    }

    if (n <= 0) {
        tg_admin_close_conn(ac);
        return;
    }

    ac->len += (size_t) n;
    ac->line[ac->len] = '\0';

    eol = strchr(ac->line, '\n');

    if (eol == NULL) {
        if (ac->len == sizeof(ac->line) - 1) {
            tg_admin_close_conn(ac);
        }
        return;
    }

    *eol = '\0';
    if (eol > ac->line && eol[-1] == '\r') {
        eol[-1] = '\0';
    }

    tg_admin_answer(ac);
}


static void
tg_admin_answer(tg_admin_conn *ac)
{
    char        *body;
    size_t       len;
    tg_admin    *a = ac->admin;
    const char  *text;

    ev_io_stop(a->loop, &ac->rw);

    body = NULL;
    text = NULL;

    if (strcmp(ac->line, "status") == 0) {
        body = a->body(a->data, false, &len);

    } else if (strcmp(ac->line, "metrics") == 0) {
        body = a->body(a->data, true, &len);

    } else {
        text = "error: unknown command; try \"status\" or \"metrics\"\n";
    }

    if (body == NULL && text == NULL) {
        text = "error: out of memory\n";
    }

    if (text != NULL) {
        body = strdup(text);
        if (body == NULL) {
            tg_admin_close_conn(ac);
            return;
        }

        len = strlen(body);

    } else if (body[len - 1] != '\n') {
        /* one line, or lines, that end */
        char  *p = realloc(body, len + 1);

        if (p == NULL) {
            free(body);
            tg_admin_close_conn(ac);
            return;
        }

        body = p;
        body[len++] = '\n';
    }

    ac->out = body;
    ac->out_len = len;

    ev_io_start(a->loop, &ac->ww);
}


static void
tg_admin_write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    ssize_t         n;
    tg_admin_conn  *ac = w->data;

    (void) loop;
    (void) revents;

    n = send(ac->fd, ac->out + ac->out_pos, ac->out_len - ac->out_pos,
             MSG_NOSIGNAL);

    if (n == -1 && (errno == EAGAIN || errno == EINTR)) {
        return;
    }

    if (n > 0) {
        ac->out_pos += (size_t) n;
    }

    if (n <= 0 || ac->out_pos == ac->out_len) {
        tg_admin_close_conn(ac);
    }
}


static void
tg_admin_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void) loop;
    (void) revents;

    tg_admin_close_conn(w->data);
}


static void
tg_admin_close_conn(tg_admin_conn *ac)
{
    tg_admin        *a = ac->admin;
    struct ev_loop  *loop = a->loop;

    ev_io_stop(loop, &ac->rw);
    ev_io_stop(loop, &ac->ww);
    ev_timer_stop(loop, &ac->timeout);
    close(ac->fd);

    if (ac->prev != NULL) {
        ac->prev->next = ac->next;
    } else {
        a->conns = ac->next;
    }

    if (ac->next != NULL) {
        ac->next->prev = ac->prev;
    }

    a->nconns--;

    free(ac->out);
    free(ac);
}
