/*
 * What a worker's frames ask, answered: HELLO, DECIDE, MODELS, REPORT,
 * STATUS and CANCEL.
 */

#ifndef TG_FRAMES_H
#define TG_FRAMES_H

#include <ev.h>


/* The read callback of every worker connection (tg_conn_new()). */
void tg_frames_read_cb(struct ev_loop *loop, ev_io *w, int revents);


#endif /* TG_FRAMES_H */
