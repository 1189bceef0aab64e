/*
 * A DECIDE's answer: its facts read from the frame, the decision taken,
 * its lease, counted, logged and sent as DECISION.  For a DECIDE as it
 * comes (frames.c) and again from the queue (queue.c).
 */

#ifndef TG_ANSWER_H
#define TG_ANSWER_H

#include <stdbool.h>
#include <stdint.h>

#include "conn.h"
#include "decide.h"


/*
 * The facts of a DECIDE or MODELS.  Strings point into the frame; the
 * repeatable ones are collected in the server's reusable arrays.  Returns 0,
 * or -1 after answering a malformed frame.
 */
int tg_read_facts(tg_conn *c, const uint8_t *frame,
    const tg_frame_hdr *h, tg_facts *facts, bool *has_endpoint);

/*
 * Decides, and unless the decision is to wait for a slot sends it: takes
 * the lease, counts, logs.  Returns 1 (nothing sent) when the request is
 * to wait, d says for whom and how long.
 */
int tg_answer_decide(tg_conn *c, uint32_t id, const tg_facts *facts,
    tg_decision *d);


#endif /* TG_ANSWER_H */
