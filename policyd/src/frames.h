/*
 * What a worker's frames ask, answered: HELLO, DECIDE, MODELS, REPORT,
 * STATUS and CANCEL.
 */

#ifndef TG_FRAMES_H
#define TG_FRAMES_H

#include <ev.h>

#include "daemon.h"


/* The read callback of every worker connection (tg_conn_new()). */
void tg_frames_read_cb(struct ev_loop *loop, ev_io *w, int revents);

/*
 * Every whole frame read into c's buffer, answered in order: the read
 * callback's work after tg_conn_read(), without I/O (the replies are
 * queued, not sent).  The fuzz harness feeds a connection with it.
 */
void tg_frames_serve(tg_conn *c);


#endif /* TG_FRAMES_H */
