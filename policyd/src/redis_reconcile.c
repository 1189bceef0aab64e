/*
 * Reconciling when Redis answers again (redis_reconcile.h).
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "limits_admit.h"
#include "log.h"
#include "redis_keys.h"
#include "redis_lua.h"
#include "redis_reconcile.h"


#define TG_REDIS_RECONCILE_KEYS 64      /* counters in one reconcile script */


/*
 * What a node counted alone while Redis was away (docs/policy.md, "When
 * Redis comes back"): ARGV has 8 per key: rpm, the requests' debt to add,
 * tpm, the tokens' debt to add (in the window's units, drained already as
 * Redis would have), the node's day and the spend of it, its month and
 * the spend of it (nano-units).  A window is filled at most to full (one
 * period's worth), never lowered: the replay can make the next request
 * wait one period at most.  Spend of a day or month that is not Redis's
 * now is not added.  The reply: how many keys.
 */

const char  tg_reconcile_lua[] =
    TG_LUA_CLOCK
    "for i = 1, #KEYS do\n"
    "  local a = (i - 1) * 8\n"
    "  local rpm, rq = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])\n"
    "  local tpm, tk = tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])\n"
    "  local dy, ds = tonumber(ARGV[a + 5]), tonumber(ARGV[a + 6])\n"
    "  local mo, ms = tonumber(ARGV[a + 7]), tonumber(ARGV[a + 8])\n"
    "  local h = redis.call('HMGET', KEYS[i], 'rd', 'ra', 'td', 'ta', 'd',"
    " 'ds', 'm', 'ms')\n"
    "  if rpm > 0 and rq > 0 then\n"
    "    local l = level(h[1], h[2], rpm)\n"
    "    l = math.min(l + rq, math.max(l, rpm * P))\n"
    "    redis.call('HSET', KEYS[i], 'rd', l, 'ra', now)\n"
    "  end\n"
    "  if tpm > 0 and tk > 0 then\n"
    "    local l = level(h[3], h[4], tpm)\n"
    "    l = math.min(l + tk, math.max(l, tpm * P))\n"
    "    redis.call('HSET', KEYS[i], 'td', l, 'ta', now)\n"
    "  end\n"
    "  if ds > 0 and dy == day then\n"
    "    local was = 0\n"
    "    if tonumber(h[5]) == day then was = tonumber(h[6]) or 0 end\n"
    "    redis.call('HSET', KEYS[i], 'd', day, 'ds', was + ds)\n"
    "  end\n"
    "  if ms > 0 and mo == month then\n"
    "    local was = 0\n"
    "    if tonumber(h[7]) == month then was = tonumber(h[8]) or 0 end\n"
    "    redis.call('HSET', KEYS[i], 'm', month, 'ms', was + ms)\n"
    "  end\n"
    "  keep(KEYS[i], ds, ms)\n"
    "end\n"
    "return #KEYS\n";


/*
 * Redis answers again: what this node took and spent alone goes to it,
 * TG_REDIS_RECONCILE_KEYS counters a script, sent before any decision's
 * take on this connection and waited for by none.  The tallies are
 * cleared once sent; a batch that cannot be sent is dropped (counted).
 */

typedef struct {
    redisAsyncContext  *ac;
    tg_limit_store     *limits;
    const char         *prefix;
    char               *sha;
    redisCallbackFn    *cb;
    size_t          n;
    size_t          counters;           /* sent */
    size_t          dropped;
    uint64_t        requests;           /* whole requests' worth */
    uint64_t        tokens;
    uint64_t        spend_nano;         /* of the day */
    char            keys[TG_REDIS_RECONCILE_KEYS][TG_REDIS_KEY_MAX];
    char            nums[TG_REDIS_RECONCILE_KEYS][8][24];
} tg_reconcile_batch;


static void
tg_redis_reconcile_flush(tg_reconcile_batch *b)
{
    int           argc;
    char          nkeys[24];
    size_t        i, k;
    size_t        argvlen[3 + TG_REDIS_RECONCILE_KEYS * 9];
    const char   *argv[3 + TG_REDIS_RECONCILE_KEYS * 9];

    if (b->n == 0) {
        return;
    }

    argc = 0;

    if (b->sha[0] != '\0') {
        argv[argc++] = "EVALSHA";
        argv[argc++] = b->sha;
    } else {
        argv[argc++] = "EVAL";
        argv[argc++] = tg_reconcile_lua;
    }

    snprintf(nkeys, sizeof(nkeys), "%zu", b->n);
    argv[argc++] = nkeys;

    for (i = 0; i < b->n; i++) {
        argv[argc++] = b->keys[i];
    }

    for (i = 0; i < b->n; i++) {
        for (k = 0; k < 8; k++) {
            argv[argc++] = b->nums[i][k];
        }
    }

    for (i = 0; i < (size_t) argc; i++) {
        argvlen[i] = strlen(argv[i]);
    }

    if (b->ac == NULL
        || redisAsyncCommandArgv(b->ac, b->cb, b->sha, argc, argv, argvlen)
           != REDIS_OK)
    {
        b->dropped += b->n;
    } else {
        b->counters += b->n;
    }

    b->n = 0;
}


static void
tg_redis_reconcile_one(tg_counter *c, void *arg)
{
    tg_reconcile_batch  *b = arg;
    tg_limit_store      *s = b->limits;
    tg_reconcile_part    part;
    char               (*nums)[24];

    if (!tg_counter_reconcile(c, s->now_ms, s->wall_s, &part)) {
        tg_counter_reconciled(c);
        return;
    }

    tg_counter_reconciled(c);

    if (tg_redis_limit_key(b->keys[b->n], TG_REDIS_KEY_MAX, b->prefix,
                           c->key, c->key_len) == 0)
    {
        b->dropped++;
        return;
    }

    nums = b->nums[b->n];
    snprintf(nums[0], 24, "%u", part.rpm);
    snprintf(nums[1], 24, "%llu", (unsigned long long) part.requests_debt);
    snprintf(nums[2], 24, "%u", part.tpm);
    snprintf(nums[3], 24, "%llu", (unsigned long long) part.tokens_debt);
    snprintf(nums[4], 24, "%u", part.day);
    snprintf(nums[5], 24, "%llu", (unsigned long long)
             (part.day_spent != 0 ? tg_redis_nano(part.day_spent) : 0));
    snprintf(nums[6], 24, "%u", part.month);
    snprintf(nums[7], 24, "%llu", (unsigned long long)
             (part.month_spent != 0 ? tg_redis_nano(part.month_spent) : 0));

    b->requests += part.rpm != 0 ? part.requests_debt / TG_LIMIT_PERIOD_MS : 0;
    b->tokens += part.tpm != 0 ? part.tokens_debt / TG_LIMIT_PERIOD_MS : 0;
    b->spend_nano += part.day_spent != 0 ? tg_redis_nano(part.day_spent) : 0;

    if (++b->n == TG_REDIS_RECONCILE_KEYS) {
        tg_redis_reconcile_flush(b);
    }
}


void
tg_redis_reconcile_send(redisAsyncContext *ac, tg_limit_store *s,
    const char *prefix, const char *address, char *sha, redisCallbackFn *cb)
{
    tg_reconcile_batch  *b;

    if (s->nodes == 0 || s->ops->count(s) == 0) {
        return;
    }

    b = calloc(1, sizeof(tg_reconcile_batch));

    if (b == NULL) {
        tg_log_error("redis.reconcile_failed", "address",
                     "redis: %s: out of memory to reconcile: what this node "
                     "counted alone stays here until the next time",
                     address);
        return;
    }

    b->ac = ac;
    b->limits = s;
    b->prefix = prefix;
    b->sha = sha;
    b->cb = cb;
    tg_limit_store_clock(s);

    s->ops->each(s, tg_redis_reconcile_one, b);
    tg_redis_reconcile_flush(b);

    if (b->counters != 0 || b->dropped != 0) {
        tg_log_info("redis.reconciled",
                    "address counters requests tokens spend_nano dropped",
                    "redis: %s: reconciled what this node counted alone: "
                    "%zu counters, %llu requests and %llu tokens still in "
                    "their windows, spend %llu nano-units today, %zu dropped",
                    address, b->counters,
                    (unsigned long long) b->requests,
                    (unsigned long long) b->tokens,
                    (unsigned long long) b->spend_nano, b->dropped);
    }

    free(b);
}

