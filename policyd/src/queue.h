/*
 * Requests waiting for a slot of a provider at capacity, for routes with a
 * "queue" (queue.c).
 */

#ifndef TG_QUEUE_H
#define TG_QUEUE_H

#include <stdbool.h>
#include <stdint.h>

#include <ev.h>

#include "conn.h"
#include "decide.h"


/* a DECIDE waiting for a slot of a provider at capacity */
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


void tg_queue_park(tg_conn *c, const uint8_t *frame, const tg_frame_hdr *h,
    const tg_decision *d);
void tg_queue_wake(tg_server *srv, tg_pstate *ps);
void tg_queue_wake_all(tg_server *srv);
void tg_queue_drop_conn(tg_server *srv, tg_conn *c);
void tg_queue_cancel(tg_conn *c, uint32_t id);


#endif /* TG_QUEUE_H */
