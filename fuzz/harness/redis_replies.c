
/*
 * Copyright (C) The Tailgate authors
 *
 * redis_replies: what policyd reads from Redis's answers (redis_keys.c) -
 * the take script's reply (tg_redis_parse_take), an HGETALL of a day's
 * usage counters (tg_redis_parse_usage), the lease scripts' and
 * PTTL's replies, and the numbered batches' (tg_redis_parse_batch: the
 * reconcile's, the usage's and the REPORTs' corrections').
 * A misbehaving or hostile Redis can answer anything.
 *
 * Input: one byte (its low 3 bits: how many keys the take was sent for,
 * 0 ... 7, beyond the 4 it ever sends), then RESP bytes, read by hiredis's
 * own reader with policyd's limit on arrays (tg_redis_reader_limit), as
 * policyd's connection reads them.  Every reply it yields
 * goes through every parser.  Checked besides the sanitizers: an accepted
 * take has exactly the parts asked for and a refusal within them; a usage
 * has at most its names, each NUL-terminated and of a name's length.
 */


#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/read.h>

#include "fuzz_check.h"
#include "redis_keys.h"


static void
fuzz_reply(const redisReply *r, size_t nkeys)
{
    bool                  noscript, granted, applied;
    size_t                i;
    uint32_t              held, ms;
    tg_redis_take_reply   t;
    tg_redis_usage_kind   u;

    if (tg_redis_parse_take(r, nkeys, &t, &noscript) == 0) {
        FUZZ_CHECK(nkeys >= 1 && nkeys <= TG_REDIS_TAKE_PARTS);
        FUZZ_CHECK(t.n == nkeys);
        FUZZ_CHECK(t.refused <= t.n);
        FUZZ_CHECK((t.refused == 0) == (t.kind == 0));
        /* refused for a slot: its set holds one at least */
        FUZZ_CHECK(t.kind != 3 || t.parts[t.refused - 1].slots >= 1);
        FUZZ_CHECK(!noscript);
    }

    if (noscript) {
        FUZZ_CHECK(tg_redis_noscript(r));
    }

    if (tg_redis_parse_usage(r, &u) == 0) {
        FUZZ_CHECK(u.n <= TG_REDIS_USAGE_NAMES);

        for (i = 0; i < u.n; i++) {
            FUZZ_CHECK(memchr(u.entries[i].name, '\0',
                              TG_REDIS_USAGE_NAME + 1) != NULL);
            FUZZ_CHECK(u.entries[i].name[0] != '\0');
        }

        FUZZ_CHECK(!u.has_other || strcmp(u.other.name, "_other") == 0);
    }

    if (tg_redis_parse_acquire(r, &granted, &held, &noscript) == 0) {
        FUZZ_CHECK(r->type == REDIS_REPLY_ARRAY && r->elements == 2);
    }

    if (tg_redis_parse_batch(r, &applied) == 0) {
        FUZZ_CHECK(r->type == REDIS_REPLY_ARRAY && r->elements == 2);
        FUZZ_CHECK(applied == (r->element[0]->integer == 1));
    }

    (void) tg_redis_parse_count(r, &held, &noscript);
    (void) tg_redis_parse_pttl(r, &ms);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int           n;
    void         *reply;
    size_t        nkeys;
    redisReader  *rd;

    if (size < 1) {
        return 0;
    }

    nkeys = data[0] & 7;

    rd = redisReaderCreate();
    if (rd == NULL) {
        return 0;
    }

    tg_redis_reader_limit(rd);

    if (redisReaderFeed(rd, (const char *) data + 1, size - 1) != REDIS_OK) {
        redisReaderFree(rd);
        return 0;
    }

    /* every reply in the bytes, as a connection reads them in turn */

    for (n = 0; n < 64; n++) {
        reply = NULL;

        if (redisReaderGetReply(rd, &reply) != REDIS_OK || reply == NULL) {
            break;
        }

        fuzz_reply(reply, nkeys);
        freeReplyObject(reply);
    }

    redisReaderFree(rd);

    return 0;
}
