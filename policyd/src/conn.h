/*
 * A worker's connection: its buffers, reading and writing, the framing, and
 * the replies queued for it.  What a frame means is frames.c's; the
 * connection only hands the whole ones over, in order.
 */

#ifndef TG_CONN_H
#define TG_CONN_H

#include <stdbool.h>
#include <stdint.h>

#include <ev.h>

#include "daemon.h"
#include "proto.h"


typedef enum {
    TG_CONN_OPEN = 0,
    TG_CONN_CLOSE_AFTER_FLUSH,      /* a final ERROR is being sent */
    TG_CONN_CLOSE_NOW
} tg_conn_state;


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
    size_t          rnext;          /* where the next frame starts */

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


/* A connection of srv on fd, read by read_cb (w->data is the tg_conn). */
void tg_conn_new(tg_server *srv, int fd,
    void (*read_cb)(struct ev_loop *loop, ev_io *w, int revents));

/*
 * The start of read_cb: 1 when bytes came for tg_conn_frame(), 0 when
 * not, the connection then perhaps closed.
 */
int tg_conn_read(tg_conn *c);

/*
 * The next whole frame read: 1 with it in *frame and *h, to be handled
 * before the next call; 0 when none is left (the rest waits for more
 * bytes) or the connection is to close.
 */
static inline int tg_conn_frame(tg_conn *c, const uint8_t **frame,
    tg_frame_hdr *h);

/* tg_conn_frame()'s rare ends: a frame that breaks the framing, and none */
int tg_conn_refuse(tg_conn *c, size_t off, int rc, const tg_frame_hdr *h);
void tg_conn_keep(tg_conn *c, size_t off);

/* Closes the connection when its state says so; the end of every callback. */
void tg_conn_finish(tg_conn *c);
void tg_conn_close(tg_conn *c);

void tg_conn_flush(tg_conn *c);
void tg_conn_send(tg_conn *c, const uint8_t *frame, size_t len);

/* An ERROR frame; a fatal one closes the connection once it is sent. */
void tg_conn_error(tg_conn *c, uint32_t id, uint32_t err,
    bool fatal, const char *msg);

/* A frame that does not parse: a fatal ERROR, and why in the close log. */
void tg_conn_malformed(tg_conn *c, const tg_frame_hdr *h, const char *what);

/* A reply to this peer, built in srv->out: at most what it accepts. */

static inline void
tg_builder_start(tg_conn *c, tg_builder *b, uint8_t type, uint32_t id)
{
    size_t  cap;

    cap = (size_t) c->peer_max + TG_FRAME_LEN_SIZE;

    if (cap > c->srv->out_cap) {
        cap = c->srv->out_cap;
    }

    tg_build_begin(b, c->srv->out, cap, type, id);
}

/* How much of a peer's string a log line shows. */
int tg_log_len(size_t len);


/* inline: it runs for every frame, with the frame loop's registers */

static inline int
tg_conn_frame(tg_conn *c, const uint8_t **frame, tg_frame_hdr *h)
{
    int     rc;
    size_t  off;

    off = c->rnext;
    c->rnext = 0;

    if (c->state != TG_CONN_OPEN) {
        return 0;
    }

    rc = tg_frame_header(c->rbuf + off, c->rlen - off, c->max_frame, h);

    if (rc < 0) {
        return tg_conn_refuse(c, off, rc, h);
    }

    if (rc == TG_FRAME_AGAIN
        || c->rlen - off < (size_t) h->length + TG_FRAME_LEN_SIZE)
    {
        tg_conn_keep(c, off);
        return 0;
    }

    c->frames++;
    c->rnext = off + (size_t) h->length + TG_FRAME_LEN_SIZE;
    *frame = c->rbuf + off;

    return 1;
}


#endif /* TG_CONN_H */
