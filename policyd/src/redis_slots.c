/*
 * This node's concurrency slots in Redis after the take script took them:
 * given back when their lease ends, renewed while it lives, put back when
 * Redis answers again (redis_slots.h).
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "limits_admit.h"
#include "log.h"
#include "redis_conf.h"
#include "redis_keys.h"
#include "redis_lua.h"
#include "redis_slots.h"


/*
 * KEYS: slot sets (one a slot: a set may come more than once); ARGV: the
 * TTL, "1" to renew only the members still there (ZADD XX) or "0" to put
 * them back, then the member of each key.  The score is the expiry on
 * Redis's clock, as the take script's.  The reply: how many were renewed
 * or put.
 */

static const char  tg_slots_lua[] =
    TG_LUA_NOW
    "local ttl = tonumber(ARGV[1])\n"
    "local xx = ARGV[2] == '1'\n"
    "local n = 0\n"
    "for i = 1, #KEYS do\n"
    "  if xx then\n"
    "    n = n + redis.call('ZADD', KEYS[i], 'XX', 'CH', now + ttl,"
    " ARGV[2 + i])\n"
    "  else\n"
    "    redis.call('ZADD', KEYS[i], now + ttl, ARGV[2 + i])\n"
    "    n = n + 1\n"
    "  end\n"
    "  if redis.call('PTTL', KEYS[i]) < ttl then"
    " redis.call('PEXPIRE', KEYS[i], ttl) end\n"
    "end\n"
    "return n\n";


#define TG_SLOT_MEMBER_MAX  (TG_REDIS_NAME_MAX + 16)


typedef struct {
    tg_redis_slots     *sl;
    redisAsyncContext  *ac;
    bool                renew;          /* XX: only those still there */
    char                ttl[16];
    size_t              n;
    char                keys[TG_REDIS_SLOTS_BATCH][TG_REDIS_KEY_MAX];
    char                members[TG_REDIS_SLOTS_BATCH][TG_SLOT_MEMBER_MAX];
} tg_slots_batch;


static void tg_slots_put(tg_redis_slots *sl, redisAsyncContext *ac,
    tg_state *st, uint32_t ttl_ms, bool renew);
static void tg_slots_flush(tg_slots_batch *b);
static void tg_slots_cb(redisAsyncContext *ac, void *r, void *priv);


void
tg_redis_slots_init(tg_redis_slots *sl, const char *prefix, const char *node)
{
    memset(sl, 0, sizeof(*sl));
    sl->prefix = prefix;
    sl->node = node;
}


void
tg_redis_slots_tick(tg_redis_slots *sl, redisAsyncContext *ac, tg_state *st,
    uint32_t ttl_ms, uint64_t now_ms)
{
    if (ac == NULL || now_ms - sl->renewed_ms < ttl_ms / 4) {
        return;
    }

    sl->renewed_ms = now_ms;
    tg_slots_put(sl, ac, st, ttl_ms, true);
}


void
tg_redis_slots_resend(tg_redis_slots *sl, redisAsyncContext *ac,
    tg_state *st, uint32_t ttl_ms)
{
    if (ac == NULL) {
        return;
    }

    tg_slots_put(sl, ac, st, ttl_ms, false);
}


void
tg_redis_slots_ended(tg_redis_slots *sl, redisAsyncContext *ac,
    const tg_lease *l)
{
    char                  key[TG_REDIS_KEY_MAX];
    char                  member[TG_SLOT_MEMBER_MAX];
    size_t                i;
    const tg_limit_hold  *h = l->hold;

    /* a hold whose slots Redis never had (refused, or taken alone) */

    if (ac == NULL || h == NULL || h->redis_slots == TG_HOLD_SLOTS_NONE
        || tg_redis_member(member, sizeof(member), sl->node, l->id) == 0)
    {
        return;
    }

    for (i = 0; i < h->n; i++) {
        if (!h->parts[i].slot
            || tg_redis_slot_key(key, sizeof(key), sl->prefix,
                                 h->parts[i].counter->key,
                                 h->parts[i].counter->key_len) == 0)
        {
            continue;
        }

        /* sent after its take on this connection: it runs after it too */
        redisAsyncCommand(ac, tg_slots_cb, sl, "ZREM %s %s", key, member);
    }
}


/*
 * Every live slot of this node: renew, those Redis has (XX); else all but
 * those whose take is still unanswered (it adds them itself), which Redis
 * has from then on.
 */

static void
tg_slots_put(tg_redis_slots *sl, redisAsyncContext *ac, tg_state *st,
    uint32_t ttl_ms, bool renew)
{
    size_t           i, k;
    tg_lease        *l;
    tg_limit_hold   *h;
    tg_slots_batch  *b;

    b = malloc(sizeof(tg_slots_batch));
    if (b == NULL) {
        return;
    }

    b->sl = sl;
    b->ac = ac;
    b->renew = renew;
    b->n = 0;
    snprintf(b->ttl, sizeof(b->ttl), "%u", ttl_ms);

    for (i = 0; i < st->nbuckets; i++) {
        for (l = st->buckets[i]; l != NULL; l = l->next) {
            h = l->hold;

            if (h == NULL || !tg_limits_has_slot(h)
                || h->redis_slots == TG_HOLD_SLOTS_TAKING
                || (renew && h->redis_slots != TG_HOLD_SLOTS_HELD))
            {
                continue;
            }

            for (k = 0; k < h->n; k++) {
                if (!h->parts[k].slot
                    || tg_redis_slot_key(b->keys[b->n], TG_REDIS_KEY_MAX,
                                         sl->prefix,
                                         h->parts[k].counter->key,
                                         h->parts[k].counter->key_len) == 0
                    || tg_redis_member(b->members[b->n], TG_SLOT_MEMBER_MAX,
                                       sl->node, l->id) == 0)
                {
                    continue;
                }

                if (++b->n == TG_REDIS_SLOTS_BATCH) {
                    tg_slots_flush(b);
                }
            }

            h->redis_slots = TG_HOLD_SLOTS_HELD;
        }
    }

    tg_slots_flush(b);
    free(b);
}


/* EVAL slots n KEYS... ttl xx MEMBERS... */

static void
tg_slots_flush(tg_slots_batch *b)
{
    int           argc;
    char          nkeys[24];
    size_t        i, *argvlen;
    const char  **argv;

    if (b->n == 0) {
        return;
    }

    argv = malloc((5 + 2 * b->n) * sizeof(char *));
    argvlen = malloc((5 + 2 * b->n) * sizeof(size_t));

    if (argv != NULL && argvlen != NULL) {
        snprintf(nkeys, sizeof(nkeys), "%zu", b->n);

        argc = 0;
        argv[argc++] = "EVAL";
        argv[argc++] = tg_slots_lua;
        argv[argc++] = nkeys;

        for (i = 0; i < b->n; i++) {
            argv[argc++] = b->keys[i];
        }

        argv[argc++] = b->ttl;
        argv[argc++] = b->renew ? "1" : "0";

        for (i = 0; i < b->n; i++) {
            argv[argc++] = b->members[i];
        }

        for (i = 0; i < (size_t) argc; i++) {
            argvlen[i] = strlen(argv[i]);
        }

        redisAsyncCommandArgv(b->ac, tg_slots_cb, b->sl, argc, argv,
                              argvlen);
    }

    free(argv);
    free(argvlen);
    b->n = 0;
}


static void
tg_slots_cb(redisAsyncContext *ac, void *r, void *priv)
{
    redisReply      *reply = r;
    tg_redis_slots  *sl = priv;

    /* ac->data NULL: the client is gone, and sl with it */

    if (ac->data == NULL || reply == NULL
        || reply->type != REDIS_REPLY_ERROR)
    {
        return;
    }

    sl->errors++;
    tg_log_error("redis.slots_error", "reply",
                 "redis: the concurrency slots: %s", reply->str);
}
