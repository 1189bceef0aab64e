/*
 * The day's usage counters on their way to Redis (usage_pending.c): every
 * REPORT's requests, tokens and cost by UTC day, kind (client, tenant,
 * route, provider) and name, summed here until a numbered batch takes
 * them (redis_reconcile.c).  While Redis is away they wait here; the
 * table is bounded: an entry that finds it full is dropped and counted.
 * No sockets; unit-tested in tests/test_redis.c.
 */

#ifndef TG_USAGE_PENDING_H
#define TG_USAGE_PENDING_H

#include <stddef.h>
#include <stdint.h>


#define TG_USAGE_PENDING_MAX    4096    /* entries: names of a day */
#define TG_USAGE_PENDING_NAME   256     /* a name's bytes at most */
#define TG_USAGE_PENDING_KINDS  4       /* client tenant route provider */


typedef struct {
    int64_t     day;                    /* days since 1970-01-01 (UTC) */
    uint32_t    kind;                   /* < TG_USAGE_PENDING_KINDS */
    uint32_t    len;
    char        name[TG_USAGE_PENDING_NAME + 1];
    uint64_t    requests;
    uint64_t    tokens;
    uint64_t    cost_nano;
} tg_usage_pending_entry;


typedef struct {
    size_t                   cap;
    size_t                   n;
    tg_usage_pending_entry  *entries;   /* n of cap, in no order */
    uint32_t                *index;     /* nindex slots: 0 empty, else
                                           the entry's place + 1 */
    size_t                   nindex;    /* a power of two, >= 2 * cap */
    uint64_t                 dropped;   /* additions refused: full */
} tg_usage_pending;


/* a table of cap entries (at most TG_USAGE_PENDING_MAX); -1: no memory */
int tg_usage_pending_init(tg_usage_pending *t, size_t cap);
void tg_usage_pending_free(tg_usage_pending *t);

/*
 * Adds to the entry of (day, kind, name), a new one if there is none.
 * 0; -1 when the table is full (counted in dropped) or the name is empty,
 * longer than TG_USAGE_PENDING_NAME or the kind unknown (not counted).
 */
int tg_usage_pending_add(tg_usage_pending *t, int64_t day, uint32_t kind,
    const char *name, size_t len, uint64_t requests, uint64_t tokens,
    uint64_t cost_nano);

/*
 * Moves at most max entries, all of one day (the day of the first one
 * kept), out of the table into out; how many (0: the table is empty).
 */
size_t tg_usage_pending_take(tg_usage_pending *t,
    tg_usage_pending_entry *out, size_t max);


#endif /* TG_USAGE_PENDING_H */
