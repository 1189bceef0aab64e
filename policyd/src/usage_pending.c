/*
 * The day's usage counters on their way to Redis (usage_pending.h): a
 * dense array of entries and an open-addressed index twice its size, so
 * that a probe always ends at an empty slot.  Taking entries out moves
 * the rest together and builds the index again: that is at most once a
 * batch, over at most cap entries.
 */

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "fnv.h"
#include "usage_pending.h"


static uint64_t
tg_usage_pending_hash(int64_t day, uint32_t kind, const char *name,
    size_t len)
{
    uint64_t  h;

    h = tg_fnv1a(TG_FNV_OFFSET, &day, sizeof(day));
    h = tg_fnv1a(h, &kind, sizeof(kind));

    return tg_fnv1a(h, name, len);
}


/* the index slot of (day, kind, name): its entry's, or the empty one
   where it would go */

static size_t
tg_usage_pending_slot(const tg_usage_pending *t, int64_t day, uint32_t kind,
    const char *name, size_t len)
{
    size_t                         mask = t->nindex - 1, i;
    const tg_usage_pending_entry  *e;

    i = (size_t) tg_usage_pending_hash(day, kind, name, len) & mask;

    for ( ;; ) {
        if (t->index[i] == 0) {
            return i;
        }

        e = &t->entries[t->index[i] - 1];

        if (e->day == day && e->kind == kind && e->len == len
            && memcmp(e->name, name, len) == 0)
        {
            return i;
        }

        i = (i + 1) & mask;
    }
}


int
tg_usage_pending_init(tg_usage_pending *t, size_t cap)
{
    size_t  n;

    memset(t, 0, sizeof(tg_usage_pending));

    if (cap == 0 || cap > TG_USAGE_PENDING_MAX) {
        return -1;
    }

    /* at most half full: every probe ends at an empty slot, soon */
    for (n = 2; n < 2 * cap; n <<= 1) { /* void */ }

    t->entries = calloc(cap, sizeof(tg_usage_pending_entry));
    t->index = calloc(n, sizeof(uint32_t));

    if (t->entries == NULL || t->index == NULL) {
        tg_usage_pending_free(t);
        return -1;
    }

    t->cap = cap;
    t->nindex = n;

    return 0;
}


void
tg_usage_pending_free(tg_usage_pending *t)
{
    free(t->entries);
    free(t->index);
    memset(t, 0, sizeof(tg_usage_pending));
}


int
tg_usage_pending_add(tg_usage_pending *t, int64_t day, uint32_t kind,
    const char *name, size_t len, uint64_t requests, uint64_t tokens,
    uint64_t cost_nano)
{
    size_t                   slot;
    tg_usage_pending_entry  *e;

    if (t->cap == 0 || kind >= TG_USAGE_PENDING_KINDS || name == NULL
        || len == 0 || len > TG_USAGE_PENDING_NAME)
    {
        return -1;
    }

    slot = tg_usage_pending_slot(t, day, kind, name, len);

    if (t->index[slot] == 0) {
        if (t->n == t->cap) {
            t->dropped++;
            return -1;
        }

        e = &t->entries[t->n];
        memset(e, 0, sizeof(tg_usage_pending_entry));
        e->day = day;
        e->kind = kind;
        e->len = (uint32_t) len;
        memcpy(e->name, name, len);
        e->name[len] = '\0';

        t->index[slot] = (uint32_t) ++t->n;

    } else {
        e = &t->entries[t->index[slot] - 1];
    }

    /* a day's sums cannot reach 2^64; saturate rather than wrap anyway */
    e->requests = requests > UINT64_MAX - e->requests ? UINT64_MAX
                                                      : e->requests + requests;
    e->tokens = tokens > UINT64_MAX - e->tokens ? UINT64_MAX
                                                : e->tokens + tokens;
    e->cost_nano = cost_nano > UINT64_MAX - e->cost_nano
                   ? UINT64_MAX : e->cost_nano + cost_nano;

    return 0;
}


size_t
tg_usage_pending_take(tg_usage_pending *t, tg_usage_pending_entry *out,
    size_t max)
{
    size_t   i, kept, taken, slot;
    int64_t  day;

    if (t->n == 0 || max == 0) {
        return 0;
    }

    day = t->entries[0].day;
    kept = 0;
    taken = 0;

    for (i = 0; i < t->n; i++) {
        if (taken < max && t->entries[i].day == day) {
            out[taken++] = t->entries[i];
            continue;
        }

        if (kept != i) {
            t->entries[kept] = t->entries[i];
        }
        kept++;
    }

    t->n = kept;

    memset(t->index, 0, t->nindex * sizeof(uint32_t));

    for (i = 0; i < t->n; i++) {
        slot = tg_usage_pending_slot(t, t->entries[i].day,
                                     t->entries[i].kind, t->entries[i].name,
                                     t->entries[i].len);
        t->index[slot] = (uint32_t) (i + 1);
    }

    return taken;
}
