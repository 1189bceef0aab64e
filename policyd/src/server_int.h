/*
 * What the files of the daemon's event loop share: the server and its
 * connections (server.c), the queue of requests waiting for a slot
 * (queue.c), the admin socket (admin.c).  Not for the decision or the
 * policy code, which know nothing of sockets.
 */

#ifndef TG_SERVER_INT_H
#define TG_SERVER_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>

#include <ev.h>

#include "decide.h"
#include "policy.h"
#include "probe.h"
#include "proto.h"
#include "state.h"


typedef enum {
    TG_CONN_OPEN = 0,
    TG_CONN_CLOSE_AFTER_FLUSH,      /* a final ERROR is being sent */
    TG_CONN_CLOSE_NOW
} tg_conn_state;


/* a listening Unix socket of ours */
typedef struct {
    int              fd;
    char             path[sizeof(((struct sockaddr_un *) 0)->sun_path)];
    dev_t            dev;
    ino_t            ino;
    bool             created;
} tg_sock;


typedef struct tg_server  tg_server;
typedef struct tg_conn    tg_conn;
typedef struct tg_waiter  tg_waiter;
typedef struct tg_admin   tg_admin;


typedef struct {
    tg_str         *items;
    size_t          n;
    size_t          cap;
} tg_strv;


struct tg_conn {
    ev_io           rw;
    ev_io           ww;
    ev_timer        linger;

    tg_server      *srv;
    int             fd;
    uint64_t        id;
    tg_conn_state   state;
    char            reason[160];    /* why it closes */

    uint8_t        *rbuf;
    size_t          rlen;
    size_t          rcap;

    uint8_t        *wbuf;
    size_t          wpos;
    size_t          wlen;
    size_t          wcap;

    uint32_t        max_frame;      /* what we accept, fixed at accept */
    uint32_t        peer_max;       /* what the peer accepts */
    uint64_t        frames;

    tg_conn        *prev;
    tg_conn        *next;
};


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


    tg_conn         *conns;
    size_t           nconns;
    uint64_t         next_conn_id;

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
    double           started;

    tg_waiter       *waiters;       /* in order of arrival */
    tg_waiter       *waiters_tail;
    size_t           nwaiters;

    tg_admin        *admin;
};


/* a DECIDE waiting for a slot of a provider at capacity (queue.c) */
struct tg_waiter {
    tg_waiter       *prev;
    tg_waiter       *next;
    tg_server       *srv;
    tg_conn         *conn;
    uint32_t         id;
    tg_pstate       *provider;
    ev_timer         budget;
    double           since;
    tg_frame_hdr     h;
    uint8_t         *frame;         /* a copy, to decide again from */
};



void tg_invalidate_all(tg_server *srv);
void tg_conn_finish(tg_conn *c);
void tg_conn_flush(tg_conn *c);
void tg_conn_send(tg_conn *c, const uint8_t *frame, size_t len);
void tg_conn_error(tg_conn *c, uint32_t id, uint32_t err,
    bool fatal, const char *msg);
int tg_read_facts(tg_conn *c, const uint8_t *frame,
    const tg_frame_hdr *h, tg_facts *facts, bool *has_endpoint);
void tg_send_decision(tg_conn *c, uint32_t id, const tg_decision *d,
    uint32_t lease);
void tg_builder_start(tg_conn *c, tg_builder *b, uint8_t type,
    uint32_t id);
int tg_log_len(size_t len);

/*
 * Decides, and unless the decision is to wait for a slot sends it: takes
 * the lease, counts, logs.  Returns 1 (nothing sent) when the request is
 * to wait, d says for whom and how long.
 */
int tg_answer_decide(tg_conn *c, uint32_t id, const tg_facts *facts,
    tg_decision *d);

uint64_t tg_now_ms(tg_server *srv);

int tg_sock_open(tg_sock *s, const tg_listen *l);
void tg_sock_close(tg_sock *s);

/* queue.c */
void tg_queue_park(tg_conn *c, const uint8_t *frame, const tg_frame_hdr *h,
    const tg_decision *d);
void tg_queue_wake(tg_server *srv, tg_pstate *ps);
void tg_queue_wake_all(tg_server *srv);
void tg_queue_drop_conn(tg_server *srv, tg_conn *c);
void tg_queue_cancel(tg_conn *c, uint32_t id);

/* admin.c */
int tg_admin_open(tg_server *srv);
void tg_admin_close(tg_server *srv);


#endif /* TG_SERVER_INT_H */
