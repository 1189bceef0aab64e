/*
 * The limits' counters of one node, in memory: a hash table of counters by
 * key.  A counter lives while a hold points at it or it still owes
 * something; sweep() drops the idle ones and those of profiles a reload
 * took away, so that the table is as large as the clients active in the
 * last minute (and the budgets of the day), not as all clients ever seen.
 */

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "limits_store.h"
#include "policy.h"


#define TG_STORE_BUCKETS_MIN  64


typedef struct {
    tg_limit_store   base;
    tg_counter     **buckets;
    size_t           nbuckets;          /* a power of two */
    size_t           n;
} tg_memory_store;


static tg_counter *tg_mem_find(const tg_memory_store *m, const char *key,
    size_t len);
static int tg_mem_grow(tg_memory_store *m);


static tg_counter *
tg_mem_counter(tg_limit_store *s, const char *key, size_t len)
{
    size_t            b;
    tg_counter       *c;
    tg_memory_store  *m = (tg_memory_store *) s;

    c = tg_mem_find(m, key, len);

    if (c == NULL) {
        if (m->n >= m->nbuckets && tg_mem_grow(m) != 0) {
            return NULL;
        }

        c = calloc(1, sizeof(tg_counter));
        if (c == NULL) {
            return NULL;
        }

        c->key = malloc(len + 1);
        if (c->key == NULL) {
            free(c);
            return NULL;
        }

        memcpy(c->key, key, len);
        c->key[len] = '\0';
        c->key_len = len;

        b = tg_name_hash(key, len) & (m->nbuckets - 1);
        c->next = m->buckets[b];
        m->buckets[b] = c;
        m->n++;
    }

    c->refs++;

    return c;
}


static void
tg_mem_unref(tg_limit_store *s, tg_counter *c)
{
    (void) s;

    if (c->refs > 0) {
        c->refs--;
    }
}


static bool
tg_mem_fits(const tg_limit_store *s, tg_limit_take *t)
{
    bool               monthly;
    uint32_t           secs, held;
    tg_budget          b;
    tg_counter        *c = t->counter;
    tg_limit_profile   share;
    const tg_window   *requests, *tokens;
    const tg_limit_profile *lp;

    t->refused = TG_LIMIT_NONE;
    t->wait_ms = 0;

    if (!t->enforce) {
        return true;
    }

    if (t->concurrent != 0) {
        held = c->in_flight;

        /* Redis refused one just now: as many are held across the nodes */
        if (!t->own && s->nodes != 0 && s->now_ms < c->slots_until_ms
            && c->slots_held > held)
        {
            held = c->slots_held;
        }

        if (held >= t->concurrent) {
            t->refused = TG_LIMIT_CONCURRENT;
            t->wait_ms = 1000;
            return false;
        }
    }

    requests = t->own ? &c->own_requests : &c->requests;
    tokens = t->own ? &c->own_tokens : &c->tokens;

    if (t->requests != 0
        && !tg_window_fits(requests, t->rpm, t->requests, s->now_ms,
                           &t->wait_ms))
    {
        t->refused = TG_LIMIT_REQUESTS;
        return false;
    }

    if (t->tpm != 0
        && !tg_window_fits(tokens, t->tpm, t->tokens, s->now_ms,
                           &t->wait_ms))
    {
        t->refused = t->wait_ms == TG_WAIT_NEVER ? TG_LIMIT_TOO_LARGE
                                                 : TG_LIMIT_TOKENS;
        return false;
    }

    if (t->budget != NULL) {
        lp = t->budget;
        b = c->budget;

        if (t->own) {
            /* alone, a node spends its share of what the budget allows */
            share = *lp;
            share.budget_day = tg_limit_share64(lp->budget_day, s->nodes);
            share.budget_month = tg_limit_share64(lp->budget_month,
                                                  s->nodes);
            lp = &share;
            b = c->own_budget;
        }

        tg_budget_roll(&b, s->wall_s);

        secs = tg_budget_over(&b, lp, s->wall_s, &monthly);

        if (secs != 0) {
            t->refused = TG_LIMIT_BUDGET;
            t->wait_ms = (uint64_t) secs * 1000;
            t->monthly = monthly;
            return false;
        }
    }

    return true;
}


/* charged to Redis's view, and to this node's own at its share */

static void
tg_mem_charge(tg_limit_store *s, tg_counter *c, uint32_t rpm,
    int64_t requests, uint32_t tpm, int64_t tokens, bool own)
{
    uint64_t  now_ms = s->now_ms;

    if (own) {
        if (requests != 0 && rpm != 0) {
            tg_window_charge(&c->own_requests, rpm, requests, now_ms);
        }
        if (tokens != 0 && tpm != 0) {
            tg_window_charge(&c->own_tokens, tpm, tokens, now_ms);
        }
        return;
    }

    if (requests != 0 && rpm != 0) {
        tg_window_charge(&c->requests, rpm, requests, now_ms);
    }

    if (tokens != 0 && tpm != 0) {
        tg_window_charge(&c->tokens, tpm, tokens, now_ms);
    }

    if (s->nodes != 0) {
        tg_mem_charge(s, c, tg_limit_share(rpm, s->nodes), requests,
                      tg_limit_share(tpm, s->nodes), tokens, true);
    }
}


static size_t
tg_mem_take(tg_limit_store *s, tg_limit_take *items, size_t n)
{
    size_t          i;
    tg_limit_take  *t;

    for (i = 0; i < n; i++) {
        if (!tg_mem_fits(s, &items[i])) {
            return i;
        }
    }

    for (i = 0; i < n; i++) {
        t = &items[i];

        tg_mem_charge(s, t->counter, t->rpm, t->requests, t->tpm, t->tokens,
                      t->own);

        /* at its share alone: Redis hears of it when it is back */
        if (t->own && s->nodes != 0) {
            tg_counter_away_charge(t->counter, s->nodes, t->rpm, t->requests,
                                   t->tpm, t->tokens, s->now_ms);
        }

        if (t->concurrent != 0) {
            t->counter->in_flight++;
        }
    }

    return SIZE_MAX;
}


static void
tg_mem_tokens(tg_limit_store *s, tg_counter *c, uint32_t tpm, int64_t delta,
    bool own)
{
    tg_mem_charge(s, c, 0, 0, tpm, delta, own);

    if (own && s->nodes != 0) {
        tg_counter_away_charge(c, s->nodes, 0, 0, tpm, delta, s->now_ms);
    }
}


static void
tg_mem_give_back(tg_limit_store *s, tg_counter *c, uint32_t rpm,
    uint32_t requests, uint32_t tpm, uint32_t tokens, bool own)
{
    tg_mem_charge(s, c, rpm, -(int64_t) requests, tpm, -(int64_t) tokens,
                  own);

    if (own && s->nodes != 0) {
        tg_counter_away_charge(c, s->nodes, rpm, -(int64_t) requests, tpm,
                               -(int64_t) tokens, s->now_ms);
    }
}


static void
tg_mem_spend(tg_limit_store *s, tg_counter *c, uint64_t cost)
{
    tg_budget_spend(&c->budget, cost, s->wall_s);
    s->spends++;

    if (s->nodes != 0) {
        tg_budget_spend(&c->own_budget, cost, s->wall_s);
    }
}


static void
tg_mem_release(tg_limit_store *s, tg_counter *c)
{
    (void) s;

    if (c->in_flight > 0) {
        c->in_flight--;
    }
}


static void
tg_mem_cool(tg_limit_store *s, tg_counter *c, uint32_t ms)
{
    uint64_t  until = s->now_ms + ms;

    /* the longest wish wins: a short Retry-After does not cut a long one */

    if (until > c->cooldown_until_ms) {
        c->cooldown_until_ms = until;
    }

    if (until > s->cool_until_ms) {
        s->cool_until_ms = until;
    }
}


/* nothing owed, nothing held: a counter that may go */

static bool
tg_mem_idle(const tg_counter *c, uint64_t now_ms, int64_t wall_s)
{
    tg_budget  b, own, away;

    if (c->refs != 0 || c->in_flight != 0 || c->cooldown_until_ms > now_ms) {
        return false;
    }

    b = c->budget;
    tg_budget_roll(&b, wall_s);
    own = c->own_budget;
    tg_budget_roll(&own, wall_s);
    away = c->away_budget;
    tg_budget_roll(&away, wall_s);

    return tg_window_level(&c->requests, c->requests.limit, now_ms) == 0
           && tg_window_level(&c->tokens, c->tokens.limit, now_ms) == 0
           && tg_window_level(&c->own_requests, c->own_requests.limit,
                              now_ms) == 0
           && tg_window_level(&c->own_tokens, c->own_tokens.limit,
                              now_ms) == 0
           && b.day_spent == 0 && b.month_spent == 0
           && own.day_spent == 0 && own.month_spent == 0
           && tg_window_level(&c->away_requests, c->away_requests.limit,
                              now_ms) == 0
           && tg_window_level(&c->away_tokens, c->away_tokens.limit,
                              now_ms) == 0
           && away.day_spent == 0 && away.month_spent == 0;
}


static void
tg_mem_sweep(tg_limit_store *s, bool (*keep)(const tg_counter *c, void *arg),
    void *arg)
{
    size_t            i;
    tg_counter      **pc, *c;
    tg_memory_store  *m = (tg_memory_store *) s;

    for (i = 0; i < m->nbuckets; i++) {
        pc = &m->buckets[i];

        while ((c = *pc) != NULL) {

            /* a hold points at it: it stays until the hold ends */

            if (c->refs != 0
                || ((keep == NULL || keep(c, arg))
                    && !tg_mem_idle(c, s->now_ms, s->wall_s)))
            {
                pc = &c->next;
                continue;
            }

            *pc = c->next;
            free(c->key);
            free(c);
            m->n--;
        }
    }
}


static size_t
tg_mem_count(const tg_limit_store *s)
{
    return ((const tg_memory_store *) s)->n;
}


static void
tg_mem_free(tg_limit_store *s)
{
    size_t            i;
    tg_counter       *c, *next;
    tg_memory_store  *m = (tg_memory_store *) s;

    if (m == NULL) {
        return;
    }

    for (i = 0; i < m->nbuckets; i++) {
        for (c = m->buckets[i]; c != NULL; c = next) {
            next = c->next;
            free(c->key);
            free(c);
        }
    }

    free(m->buckets);
    free(m);
}


static void
tg_mem_each(tg_limit_store *s, void (*fn)(tg_counter *c, void *arg),
    void *arg)
{
    size_t            i;
    tg_counter       *c;
    tg_memory_store  *m = (tg_memory_store *) s;

    for (i = 0; i < m->nbuckets; i++) {
        for (c = m->buckets[i]; c != NULL; c = c->next) {
            fn(c, arg);
        }
    }
}


static const tg_counter *
tg_mem_peek(const tg_limit_store *s, const char *key, size_t len)
{
    return tg_mem_find((const tg_memory_store *) s, key, len);
}


static const tg_limit_store_ops  tg_memory_ops = {
    tg_mem_counter, tg_mem_unref, tg_mem_peek, tg_mem_take, tg_mem_tokens,
    tg_mem_give_back, tg_mem_spend, tg_mem_release, tg_mem_cool,
    tg_mem_sweep, tg_mem_count, tg_mem_each, tg_mem_free
};


tg_limit_store *
tg_limit_store_memory(void)
{
    tg_memory_store  *m;

    m = calloc(1, sizeof(tg_memory_store));
    if (m == NULL) {
        return NULL;
    }

    m->buckets = calloc(TG_STORE_BUCKETS_MIN, sizeof(tg_counter *));
    if (m->buckets == NULL) {
        free(m);
        return NULL;
    }

    m->base.ops = &tg_memory_ops;
    m->nbuckets = TG_STORE_BUCKETS_MIN;

    return &m->base;
}


uint64_t
tg_limit_clock_ms(void)
{
    struct timespec  ts;

    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) {
        return 0;
    }

    return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
}


void
tg_limit_store_clock(tg_limit_store *s)
{
    uint64_t  now = tg_limit_clock_ms();

    /* never backwards, also if the clock cannot be read */
    if (now > s->now_ms) {
        s->now_ms = now;
    }

    s->wall_s = (int64_t) time(NULL);
}


static tg_counter *
tg_mem_find(const tg_memory_store *m, const char *key, size_t len)
{
    tg_counter  *c;

    for (c = m->buckets[tg_name_hash(key, len) & (m->nbuckets - 1)];
         c != NULL; c = c->next)
    {
        if (c->key_len == len && memcmp(c->key, key, len) == 0) {
            return c;
        }
    }

    return NULL;
}


static int
tg_mem_grow(tg_memory_store *m)
{
    size_t       i, n, b;
    tg_counter **buckets, *c, *next;

    n = m->nbuckets * 2;

    buckets = calloc(n, sizeof(tg_counter *));
    if (buckets == NULL) {
        return -1;
    }

    for (i = 0; i < m->nbuckets; i++) {
        for (c = m->buckets[i]; c != NULL; c = next) {
            next = c->next;
            b = tg_name_hash(c->key, c->key_len) & (n - 1);
            c->next = buckets[b];
            buckets[b] = c;
        }
    }

    free(m->buckets);
    m->buckets = buckets;
    m->nbuckets = n;

    return 0;
}
