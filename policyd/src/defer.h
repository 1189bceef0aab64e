/*
 * DECIDEs answered a little later (defer.c): those a provider at capacity
 * decided, once every frame already read is handled, and those that need
 * leases while a fresh policyd's workers may still re-announce theirs.
 */

#ifndef TG_DEFER_H
#define TG_DEFER_H

#include <stdbool.h>
#include <stdint.h>

#include "conn.h"
#include "decide.h"


/* Sets up srv's watchers; recovering: for how long after now, 0: not. */
void tg_defer_init(tg_server *srv, uint32_t recovery_ms);

/*
 * Keeps the DECIDE (a copy) to decide again: after the frames of this loop
 * pass, or at the end of the recovery (then the worker is told to wait
 * with QUEUED).  Answers an internal error when out of memory.
 */
void tg_defer(tg_conn *c, const uint8_t *frame, const tg_frame_hdr *h,
    const tg_decision *d, bool recovery);

void tg_defer_cancel(tg_conn *c, uint32_t id);
void tg_defer_drop_conn(tg_server *srv, tg_conn *c);

/* Stops the watchers and forgets every deferred DECIDE, unanswered. */
void tg_defer_stop(tg_server *srv);


#endif /* TG_DEFER_H */
