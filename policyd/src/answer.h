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

/* what tg_answer_decide() did */
#define TG_ANSWER_SENT       0
#define TG_ANSWER_QUEUE      1  /* to wait for a slot: d says for whom */
#define TG_ANSWER_DEFER      2  /* a provider at capacity decided it: again
                                   once every frame read so far is handled */
#define TG_ANSWER_RECOVER    3  /* needs leases while the leases of the last
                                   policyd may still be re-announced */

/*
 * Decides, and unless the decision is to wait sends it: takes the lease,
 * counts, logs.  TG_ANSWER_SENT, or why nothing was sent.  Facts that come
 * back deferred (facts->deferred) or from the queue are never deferred.
 */
int tg_answer_decide(tg_conn *c, uint32_t id, const tg_facts *facts,
    tg_decision *d);


#endif /* TG_ANSWER_H */
