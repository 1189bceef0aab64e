/*
 * The admin socket (admin.c): the status for operators, on a socket of its
 * own.
 */

#ifndef TG_ADMIN_H
#define TG_ADMIN_H

#include <stdbool.h>
#include <stddef.h>

#include <ev.h>

#include "policy.h"


typedef struct tg_admin  tg_admin;

/* the status as JSON, or as Prometheus text: malloc()ed, NULL if no memory */
typedef char *(*tg_admin_body_pt)(void *data, bool prometheus, size_t *len);


/*
 * Listens on l (kept only while this runs) and answers every command with
 * body(data, ...).  NULL after logging why it could not.
 */
tg_admin *tg_admin_open(struct ev_loop *loop, const tg_listen *l,
    tg_admin_body_pt body, void *data);

/* Closes the socket and every connection to it.  NULL is fine. */
void tg_admin_close(tg_admin *a);


#endif /* TG_ADMIN_H */
