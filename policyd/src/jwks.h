/*
 * The key sets policyd keeps for the workers (docs/policy.md, "Token keys
 * from a JWKS"): each fetched on the probe thread, checked, written to its
 * file by rename() when it changed, and fetched again when its HTTP cache
 * headers say, or sooner - at most every min_refresh_ms - when a worker
 * met a token whose kid it lacks (JWKS_REFRESH).  A failed fetch keeps the
 * last good set, on disk and here.
 */

#ifndef TG_JWKS_H
#define TG_JWKS_H

#include <stdint.h>

#include "daemon.h"


typedef struct tg_jwks_keeper  tg_jwks_keeper;


tg_jwks_keeper *tg_jwks_keeper_new(tg_server *srv);

/*
 * The sets of this policy from now on: new ones read their file and are
 * fetched at once, changed ones start over, gone ones are dropped.  0, or
 * -1 when out of memory (then the sets stay as they were).
 */
int tg_jwks_configure(tg_jwks_keeper *k, const tg_policy *policy);

/* JWKS_REFRESH from a worker: answered now, or when the fetch is done */
void tg_jwks_refresh(tg_jwks_keeper *k, tg_conn *c, const uint8_t *frame,
    const tg_frame_hdr *h);

void tg_jwks_keeper_free(tg_jwks_keeper *k);


#endif /* TG_JWKS_H */
