/*
 * Reconciling with Redis in numbered batches (redis_reconcile.h).
 *
 * Why EVAL and not EVALSHA with SCRIPT LOAD, for these scripts alone:
 * a kept batch is resent to a Redis that may have restarted empty, and
 * then an EVALSHA answers NOSCRIPT.  Sent again as EVAL after that, it
 * would run after the batches pipelined behind it, so a newer number of
 * its hash tag would be applied first and it then skipped as not newer:
 * lost.  EVAL keeps every batch in its place in one pass, and costs only
 * the script's text on the wire, once a batch (a reconcile is rare; a
 * usage batch carries up to TG_RECONCILE_USAGE REPORTs).
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "limits_admit.h"
#include "log.h"
#include "redis_keys.h"
#include "redis_lua.h"
#include "redis_reconcile.h"


/* a marker's and a usage hash's life: 8 days, in the Lua as in the C */
#define TG_RECONCILE_TTL_S      691200
#define TG_STR(x)               #x
#define TG_XSTR(x)              TG_STR(x)


/*
 * Every batch's script begins so: KEYS[1] is the marker of its epoch and
 * hash tag (tg_redis_batch_key), ARGV[1] its number.  Not newer than the
 * marker: skipped, {0, 0}.  Else the marker is set first (a script that
 * fails half-way is not undone by Redis either: its batch is dropped).
 */

#define TG_LUA_BATCH \
    "local seq = tonumber(ARGV[1])\n" \
    "if seq <= (tonumber(redis.call('GET', KEYS[1])) or 0) then\n" \
    "  return {0, 0}\n" \
    "end\n" \
    "redis.call('SET', KEYS[1], ARGV[1], 'EX', " \
    TG_XSTR(TG_RECONCILE_TTL_S) ")\n"


/*
 * What a node counted alone while Redis was away (docs/policy.md, "When
 * Redis comes back"): KEYS[2...] the counters; ARGV from 2 has 8 per key:
 * rpm, the requests' debt to add, tpm, the tokens' debt to add (in the
 * window's units, drained already as Redis would have), the node's day
 * and the spend of it, its month and the spend of it (nano-units).  A
 * window is filled at most to full (one period's worth), never lowered:
 * the replay can make the next request wait one period at most.  Spend
 * of a day or month that is not Redis's now is not added.  The reply:
 * {1, how many keys}.
 */

static const char  tg_reconcile_lua[] =
    TG_LUA_CLOCK
    TG_LUA_BATCH
    "for i = 2, #KEYS do\n"
    "  local a = (i - 2) * 8 + 1\n"
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
    "return {1, #KEYS - 1}\n";

/*
 * The day's usage counters: KEYS[2...5] the client's, tenant's, route's
 * and provider's hashes of one day (one hash tag); ARGV[2] their TTL in
 * seconds, then 5 per name: its kind (1 ... 4), the name, requests,
 * tokens, cost in nano-units.  The reply: {1, how many names}.
 */

static const char  tg_usage_lua[] =
    TG_LUA_BATCH
    "local n = 0\n"
    "for a = 3, #ARGV, 5 do\n"
    "  local k, nm = KEYS[1 + tonumber(ARGV[a])], ARGV[a + 1]\n"
    "  if ARGV[a + 2] ~= '0' then redis.call('HINCRBY', k, 'requests:' .."
    " nm, ARGV[a + 2]) end\n"
    "  if ARGV[a + 3] ~= '0' then redis.call('HINCRBY', k, 'tokens:' .."
    " nm, ARGV[a + 3]) end\n"
    "  if ARGV[a + 4] ~= '0' then redis.call('HINCRBY', k, 'cost:' .."
    " nm, ARGV[a + 4]) end\n"
    "  redis.call('EXPIRE', k, ARGV[2])\n"
    "  n = n + 1\n"
    "end\n"
    "return {1, n}\n";


/*
 * A REPORT's corrections of takes Redis saw: KEYS[2...] the counters;
 * ARGV from 2 has 7 per key: tpm, the tokens' change (negative: given
 * back; the window never goes below empty), the spend in nano-units, the
 * node's day and month of it, budget_day and budget_month (for how long
 * the key must live).  The spend counts in Redis's day (month) unless
 * the node's is older: a day that ended while Redis was away is not
 * added to the next (a node's clock ahead of Redis's counts now).  The
 * reply: {1, how many keys}.
 */

static const char  tg_correct_lua[] =
    TG_LUA_CLOCK
    TG_LUA_BATCH
    "for i = 2, #KEYS do\n"
    "  local a = (i - 2) * 7 + 1\n"
    "  local tpm, dt = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])\n"
    "  local cost = tonumber(ARGV[a + 3])\n"
    "  local dy, mo = tonumber(ARGV[a + 4]), tonumber(ARGV[a + 5])\n"
    "  if tpm > 0 and dt ~= 0 then\n"
    "    local h = redis.call('HMGET', KEYS[i], 'td', 'ta')\n"
    "    local l = level(h[1], h[2], tpm) + dt * P\n"
    "    if l < 0 then l = 0 end\n"
    "    redis.call('HSET', KEYS[i], 'td', l, 'ta', now)\n"
    "  end\n"
    "  if cost > 0 then\n"
    "    local h = redis.call('HMGET', KEYS[i], 'd', 'ds', 'm', 'ms')\n"
    "    if dy >= day then\n"
    "      local was = 0\n"
    "      if tonumber(h[1]) == day then was = tonumber(h[2]) or 0 end\n"
    "      redis.call('HSET', KEYS[i], 'd', day, 'ds', was + cost)\n"
    "    end\n"
    "    if mo >= month then\n"
    "      local was = 0\n"
    "      if tonumber(h[3]) == month then was = tonumber(h[4]) or 0 end\n"
    "      redis.call('HSET', KEYS[i], 'm', month, 'ms', was + cost)\n"
    "    end\n"
    "  end\n"
    "  keep(KEYS[i], tonumber(ARGV[a + 6]), tonumber(ARGV[a + 7]))\n"
    "end\n"
    "return {1, #KEYS - 1}\n";


static void tg_reconcile_put(tg_reconcile *rc, redisAsyncContext *ac,
    tg_batch *b);
static void tg_reconcile_cb(redisAsyncContext *ac, void *r, void *priv);
static size_t tg_reconcile_flush_usage(tg_reconcile *rc,
    redisAsyncContext *ac, bool all);
static void tg_reconcile_unlink(tg_reconcile *rc, tg_batch *b);
static size_t tg_reconcile_flush_corrections(tg_reconcile *rc,
    redisAsyncContext *ac, bool all);


tg_reconcile *
tg_reconcile_new(const char *node, long pid, uint64_t start_ms,
    const char *prefix, const char *address)
{
    tg_reconcile  *rc;

    rc = calloc(1, sizeof(tg_reconcile));
    if (rc == NULL) {
        return NULL;
    }

    /* a node's name is at most TG_REDIS_NAME_MAX: it always fits */
    snprintf(rc->epoch, sizeof(rc->epoch), "%.100s/%ld.%llu", node, pid,
             (unsigned long long) start_ms);

    rc->prefix = strdup(prefix);
    rc->address = strdup(address);

    if (rc->prefix == NULL || rc->address == NULL
        || tg_usage_pending_init(&rc->usage, TG_USAGE_PENDING_MAX) != 0)
    {
        tg_reconcile_free(rc);
        return NULL;
    }

    return rc;
}


void
tg_reconcile_free(tg_reconcile *rc)
{
    tg_batch  *b, *next;

    if (rc == NULL) {
        return;
    }

    for (b = rc->head; b != NULL; b = next) {
        next = b->next;
        free(b);
    }

    tg_usage_pending_free(&rc->usage);
    free(rc->corr);
    free(rc->prefix);
    free(rc->address);
    free(rc);
}


/* what waits changed: the saver writes the state file again */

static void
tg_reconcile_touch(tg_reconcile *rc)
{
    if (rc->waits != NULL) {
        (*rc->waits)++;
    }
}


/* a batch of argc strings, copied, kept at the end */

static tg_batch *
tg_batch_new(tg_reconcile *rc, tg_batch_kind kind, uint64_t seq,
    size_t argc, const char *const *argv)
{
    char      *p;
    size_t     i, size, len;
    tg_batch  *b;

    size = sizeof(tg_batch) + argc * (sizeof(char *) + sizeof(size_t));

    for (i = 0; i < argc; i++) {
        size += strlen(argv[i]) + 1;
    }

    b = malloc(size);
    if (b == NULL) {
        return NULL;
    }

    memset(b, 0, sizeof(tg_batch));
    b->rc = rc;
    b->kind = kind;
    b->seq = seq;
    b->argc = (int) argc;
    b->argv = (const char **) (b + 1);
    b->argvlen = (size_t *) (b->argv + argc);
    p = (char *) (b->argvlen + argc);

    for (i = 0; i < argc; i++) {
        len = strlen(argv[i]);
        memcpy(p, argv[i], len + 1);
        b->argv[i] = p;
        b->argvlen[i] = len;
        p += len + 1;
    }

    if (rc->tail != NULL) {
        rc->tail->next = b;
    } else {
        rc->head = b;
    }
    rc->tail = b;
    rc->kept++;
    tg_reconcile_touch(rc);

    return b;
}


tg_batch *
tg_reconcile_batch(tg_reconcile *rc, tg_batch_kind kind, const char *script,
    size_t nkeys, const char *const *keys, size_t nargs,
    const char *const *args)
{
    char          marker[TG_REDIS_KEY_MAX], nk[24], seq[24];
    size_t        i, argc;
    tg_batch     *b;
    const char  **argv;

    if (rc->kept >= TG_RECONCILE_KEPT || nkeys == 0
        || tg_redis_batch_key(marker, sizeof(marker), keys[0], rc->epoch)
           == 0)
    {
        return NULL;
    }

    /* EVAL script numkeys marker keys... seq args... */

    snprintf(nk, sizeof(nk), "%zu", nkeys + 1);
    snprintf(seq, sizeof(seq), "%llu", (unsigned long long) rc->seq + 1);

    argv = malloc((5 + nkeys + nargs) * sizeof(char *));
    if (argv == NULL) {
        return NULL;
    }

    argc = 0;
    argv[argc++] = "EVAL";
    argv[argc++] = script;
    argv[argc++] = nk;
    argv[argc++] = marker;
    for (i = 0; i < nkeys; i++) {
        argv[argc++] = keys[i];
    }
    argv[argc++] = seq;
    for (i = 0; i < nargs; i++) {
        argv[argc++] = args[i];
    }

    b = tg_batch_new(rc, kind, rc->seq + 1, argc, argv);
    free(argv);

    if (b != NULL) {
        rc->seq++;
    }

    return b;
}


static void
tg_reconcile_unlink(tg_reconcile *rc, tg_batch *b)
{
    tg_batch  **pp, *prev;

    prev = NULL;

    for (pp = &rc->head; *pp != NULL; prev = *pp, pp = &(*pp)->next) {
        if (*pp == b) {
            *pp = b->next;
            if (rc->tail == b) {
                rc->tail = prev;
            }
            rc->kept--;
            tg_reconcile_touch(rc);
            return;
        }
    }
}


void
tg_reconcile_done(tg_reconcile *rc, tg_batch *b, bool applied)
{
    if (applied) {
        rc->stats.applied++;
    } else {
        rc->stats.skipped++;
    }

    if (b->kind == TG_BATCH_REPORT) {
        if (applied) {
            rc->stats.corr_applied++;
        } else {
            rc->stats.corr_skipped++;
        }
    }

    tg_reconcile_unlink(rc, b);
    free(b);
}


/*
 * Whether a batch kept before b is not in flight: one whose send failed
 * (out of memory).  b must wait behind it: sent first, a newer number of
 * its hash tag would make Redis skip the older one as not newer.
 */

static bool
tg_reconcile_behind(const tg_reconcile *rc, const tg_batch *b)
{
    const tg_batch  *e;

    for (e = rc->head; e != NULL && e != b; e = e->next) {
        if (!e->inflight) {
            return true;
        }
    }

    return false;
}


static void
tg_reconcile_put(tg_reconcile *rc, redisAsyncContext *ac, tg_batch *b)
{
    if (b->inflight || ac == NULL || rc->holding || tg_reconcile_behind(rc, b)
        || redisAsyncCommandArgv(ac, tg_reconcile_cb, b, b->argc, b->argv,
                                 b->argvlen) != REDIS_OK)
    {
        /* kept: sent again by the tick, or on the next connection */
        return;
    }

    b->inflight = true;

    if (b->sent) {
        rc->stats.resent++;
        rc->stats.corr_resent += b->kind == TG_BATCH_REPORT;
    } else {
        rc->stats.sent++;
        rc->stats.corr_sent += b->kind == TG_BATCH_REPORT;
        b->sent = true;
    }

    if (b->kind == TG_BATCH_USAGE) {
        rc->usage_inflight++;
    } else if (b->kind == TG_BATCH_REPORT) {
        rc->report_inflight++;
    }
}


/* the counters of a batch: its keys but the marker */

static size_t
tg_batch_counters(const tg_batch *b)
{
    unsigned long  n;

    n = b->argc > 2 ? strtoul(b->argv[2], NULL, 10) : 0;

    return n > 1 ? (size_t) n - 1 : 0;
}


static void
tg_reconcile_cb(redisAsyncContext *ac, void *r, void *priv)
{
    bool               applied;
    tg_batch          *b = priv;
    tg_reconcile      *rc = b->rc;
    const redisReply  *reply = r;

    b->inflight = false;

    if (b->kind == TG_BATCH_USAGE && rc->usage_inflight > 0) {
        rc->usage_inflight--;
    } else if (b->kind == TG_BATCH_REPORT && rc->report_inflight > 0) {
        rc->report_inflight--;
    }

    if (reply == NULL) {
        /*
         * The connection went with it, run by Redis or not: kept, and
         * sent again first on the next (its number says if it counts).
         */
        return;
    }

    if (tg_redis_parse_batch(reply, &applied) != 0) {
        rc->stats.dropped++;

        /* its counters' corrections, as a table full drops them: each */
        if (b->kind == TG_BATCH_REPORT) {
            rc->stats.corr_dropped += tg_batch_counters(b);
        }

        tg_log_error("redis.batch_refused", "address batch reply",
                     "redis: %s: batch %llu of the reconcile refused: %s",
                     rc->address, (unsigned long long) b->seq,
                     reply->type == REDIS_REPLY_ERROR ? reply->str
                                                      : "an unexpected reply");
        tg_reconcile_unlink(rc, b);
        free(b);

    } else {
        tg_reconcile_done(rc, b, applied);
    }

    /* what waited behind the usage (the corrections) in flight */

    if (ac->data != NULL && rc->report_inflight == 0) {
        tg_reconcile_flush_corrections(rc, ac, false);
    }

    if (ac->data != NULL && rc->usage_inflight == 0) {
        tg_reconcile_flush_usage(rc, ac, false);
    }
}


/* the limits: each counter's away tallies, 64 counters a batch */

typedef struct {
    tg_reconcile       *rc;
    redisAsyncContext  *ac;
    tg_limit_store     *limits;
    size_t              n;
    size_t              counters;       /* sent */
    size_t              dropped;
    size_t              left;           /* kept full: for the next time */
    uint64_t            requests;       /* whole requests' worth */
    uint64_t            tokens;
    uint64_t            spend_nano;     /* of the day */
    tg_counter         *counters_in[TG_RECONCILE_KEYS];   /* the batch's */
    struct {
        uint64_t        requests;
        uint64_t        tokens;
        uint64_t        spend_nano;
    }                   sum[TG_RECONCILE_KEYS];
    char                keys[TG_RECONCILE_KEYS][TG_REDIS_KEY_MAX];
    char                nums[TG_RECONCILE_KEYS][8][24];
} tg_reconcile_limits;


static void
tg_reconcile_limits_flush(tg_reconcile_limits *l)
{
    size_t       i, k;
    tg_batch    *b;
    const char  *keys[TG_RECONCILE_KEYS];
    const char  *args[TG_RECONCILE_KEYS * 8];

    if (l->n == 0) {
        return;
    }

    for (i = 0; i < l->n; i++) {
        keys[i] = l->keys[i];
        for (k = 0; k < 8; k++) {
            args[i * 8 + k] = l->nums[i][k];
        }
    }

    b = tg_reconcile_batch(l->rc, TG_BATCH_LIMITS, tg_reconcile_lua, l->n,
                           keys, l->n * 8, args);

    if (b == NULL) {
        /* no room for another batch, or out of memory: the tallies stay
           for the next time */
        l->left += l->n;
        l->n = 0;
        return;
    }

    /* in the batch now: cleared, and counted once, by Redis */
    for (i = 0; i < l->n; i++) {
        tg_counter_reconciled(l->counters_in[i]);
        l->requests += l->sum[i].requests;
        l->tokens += l->sum[i].tokens;
        l->spend_nano += l->sum[i].spend_nano;
    }

    tg_reconcile_put(l->rc, l->ac, b);
    l->counters += l->n;
    l->n = 0;
}


static void
tg_reconcile_one(tg_counter *c, void *arg)
{
    tg_reconcile_limits  *l = arg;
    tg_limit_store       *s = l->limits;
    tg_reconcile_part     part;
    char                (*nums)[24];

    if (!tg_counter_reconcile(c, s->now_ms, s->wall_s, &part)) {
        tg_counter_reconciled(c);
        return;
    }

    if (tg_redis_limit_key(l->keys[l->n], TG_REDIS_KEY_MAX, l->rc->prefix,
                           c->key, c->key_len) == 0)
    {
        /* it can never be sent: dropped */
        tg_counter_reconciled(c);
        l->dropped++;
        return;
    }

    l->counters_in[l->n] = c;

    nums = l->nums[l->n];
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

    l->sum[l->n].requests = part.rpm != 0
                            ? part.requests_debt / TG_LIMIT_PERIOD_MS : 0;
    l->sum[l->n].tokens = part.tpm != 0
                          ? part.tokens_debt / TG_LIMIT_PERIOD_MS : 0;
    l->sum[l->n].spend_nano = part.day_spent != 0
                              ? tg_redis_nano(part.day_spent) : 0;

    if (++l->n == TG_RECONCILE_KEYS) {
        tg_reconcile_limits_flush(l);
    }
}


static size_t
tg_reconcile_tallies(tg_reconcile *rc, redisAsyncContext *ac,
    tg_limit_store *s)
{
    size_t                counters;
    tg_reconcile_limits  *l;

    if (s->nodes == 0 || s->ops->count(s) == 0) {
        return 0;
    }

    l = calloc(1, sizeof(tg_reconcile_limits));

    if (l == NULL) {
        tg_log_error("redis.reconcile_failed", "address",
                     "redis: %s: out of memory to reconcile: what this node "
                     "counted alone stays here until the next time",
                     rc->address);
        return 0;
    }

    l->rc = rc;
    l->ac = ac;
    l->limits = s;
    tg_limit_store_clock(s);

    s->ops->each(s, tg_reconcile_one, l);
    tg_reconcile_limits_flush(l);

    if (l->counters != 0 || l->dropped != 0 || l->left != 0) {
        tg_log_info("redis.reconciled",
                    "address counters requests tokens spend_nano dropped "
                    "left",
                    "redis: %s: reconciled what this node counted alone: "
                    "%zu counters, %llu requests and %llu tokens still in "
                    "their windows, spend %llu nano-units today, %zu dropped"
                    ", %zu left for the next time",
                    rc->address, l->counters,
                    (unsigned long long) l->requests,
                    (unsigned long long) l->tokens,
                    (unsigned long long) l->spend_nano, l->dropped, l->left);
    }

    counters = l->counters;
    free(l);

    return counters;
}


/* the kept batches not in flight: sent, in their order */

static void
tg_reconcile_resend(tg_reconcile *rc, redisAsyncContext *ac)
{
    tg_batch  *b, *next;

    for (b = rc->head; b != NULL; b = next) {
        next = b->next;
        tg_reconcile_put(rc, ac, b);
    }
}


void
tg_reconcile_send(tg_reconcile *rc, redisAsyncContext *ac,
    tg_limit_store *s)
{
    bool    was, connected;
    size_t  tallies, tables;

    if (ac == NULL) {
        return;
    }

    /* first what an earlier connection took with it, in its order */
    tg_reconcile_resend(rc, ac);

    /*
     * The new batches wait: the tallies they send are cleared in the
     * state file too, and the corrections and usage the file kept while
     * there was no connection are batches in it, before they leave - a
     * policyd restarted after Redis applied them sends each batch again
     * with its number, skipped, not its contents anew.  The saver writes
     * it off the loop; tg_reconcile_persisted() lets them go.
     */
    was = rc->holding;
    rc->holding = s->persist != NULL;

    tallies = tg_reconcile_tallies(rc, ac, s);

    connected = rc->connected;
    rc->connected = true;
    tables = tg_reconcile_flush_corrections(rc, ac, true);
    tables += tg_reconcile_flush_usage(rc, ac, true);

    if (rc->holding && (was || tallies != 0 || (tables != 0 && !connected)))
    {
        s->persist(s->persist_arg);
        return;
    }

    /* nothing the file must hold first: they go now */
    rc->holding = false;
    tg_reconcile_resend(rc, ac);
}


void
tg_reconcile_persisted(tg_reconcile *rc, redisAsyncContext *ac)
{
    if (!rc->holding) {
        return;
    }

    rc->holding = false;

    if (ac != NULL) {
        tg_reconcile_resend(rc, ac);
    }
}


void
tg_reconcile_retry(tg_reconcile *rc, redisAsyncContext *ac)
{
    if (ac != NULL && rc->head != NULL && !rc->tail->inflight) {
        tg_reconcile_resend(rc, ac);
    }
}


void
tg_reconcile_quit(tg_reconcile *rc, redisAsyncContext *ac)
{
    if (ac == NULL) {
        return;
    }

    /* the tallies are not sent: the state file keeps them */
    tg_reconcile_resend(rc, ac);
    tg_reconcile_flush_corrections(rc, ac, true);
    tg_reconcile_flush_usage(rc, ac, true);
}


/* the REPORTs' corrections waiting, 64 counters a batch */

tg_batch *
tg_reconcile_corrections(tg_reconcile *rc)
{
    char                  nums[TG_RECONCILE_KEYS][7][24];
    size_t                i, k, n;
    tg_batch             *b;
    const char           *keys[TG_RECONCILE_KEYS];
    const char           *args[TG_RECONCILE_KEYS * 7];
    const tg_correction  *c;

    while (rc->ncorr != 0 && rc->kept < TG_RECONCILE_KEPT) {
        n = rc->ncorr < TG_RECONCILE_KEYS ? rc->ncorr : TG_RECONCILE_KEYS;

        for (i = 0; i < n; i++) {
            c = &rc->corr[i];
            keys[i] = c->key;
            snprintf(nums[i][0], 24, "%u", c->tpm);
            snprintf(nums[i][1], 24, "%lld", (long long) c->tokens);
            snprintf(nums[i][2], 24, "%llu",
                     (unsigned long long) c->cost_nano);
            snprintf(nums[i][3], 24, "%u", c->day);
            snprintf(nums[i][4], 24, "%u", c->month);
            snprintf(nums[i][5], 24, "%llu",
                     (unsigned long long) c->budget_day_nano);
            snprintf(nums[i][6], 24, "%llu",
                     (unsigned long long) c->budget_month_nano);
            for (k = 0; k < 7; k++) {
                args[i * 7 + k] = nums[i][k];
            }
        }

        b = tg_reconcile_batch(rc, TG_BATCH_REPORT, tg_correct_lua, n, keys,
                               n * 7, args);

        /* copied into the batch (or dropped): out of the table */

        rc->ncorr -= n;
        memmove(rc->corr, rc->corr + n, rc->ncorr * sizeof(tg_correction));

        if (b != NULL) {
            return b;
        }

        rc->stats.dropped++;
        rc->stats.corr_dropped += n;
    }

    return NULL;
}


static size_t
tg_reconcile_flush_corrections(tg_reconcile *rc, redisAsyncContext *ac,
    bool all)
{
    size_t     n;
    tg_batch  *b;

    n = 0;

    do {
        b = tg_reconcile_corrections(rc);

        if (b == NULL) {
            break;
        }

        tg_reconcile_put(rc, ac, b);
        n++;

    } while (all);

    return n;
}


int
tg_reconcile_correct(tg_reconcile *rc, redisAsyncContext *ac,
    const tg_correction *c)
{
    size_t          i, cap;
    tg_correction  *e, *corr;

    for (i = 0; i < rc->ncorr; i++) {
        e = &rc->corr[i];

        if (e->day == c->day && e->month == c->month
            && strcmp(e->key, c->key) == 0)
        {
            break;
        }
    }

    if (i == rc->ncorr) {
        if (rc->ncorr == TG_RECONCILE_CORRECTIONS) {
            rc->stats.corr_dropped++;
            return -1;
        }

        if (rc->ncorr == rc->corr_cap) {
            cap = rc->corr_cap != 0 ? rc->corr_cap * 2 : 16;
            corr = realloc(rc->corr, cap * sizeof(tg_correction));
            if (corr == NULL) {
                rc->stats.corr_dropped++;
                return -1;
            }
            rc->corr = corr;
            rc->corr_cap = cap;
        }

        e = &rc->corr[rc->ncorr++];
        *e = *c;

    } else {
        /* the latest limit, the longest life, the sums */
        if (c->tpm != 0) {
            e->tpm = c->tpm;
        }
        e->tokens += c->tokens;
        e->cost_nano += c->cost_nano;
        if (c->budget_day_nano > e->budget_day_nano) {
            e->budget_day_nano = c->budget_day_nano;
        }
        if (c->budget_month_nano > e->budget_month_nano) {
            e->budget_month_nano = c->budget_month_nano;
        }
    }

    if (!rc->connected) {
        tg_reconcile_touch(rc);
    }

    if (ac != NULL && rc->report_inflight == 0) {
        tg_reconcile_flush_corrections(rc, ac, false);
    }

    return 0;
}


/* the usage waiting in the table, in batches of one day */

static size_t
tg_reconcile_flush_usage(tg_reconcile *rc, redisAsyncContext *ac, bool all)
{
    char                     keys[TG_USAGE_PENDING_KINDS][TG_REDIS_KEY_MAX];
    char                     nums[TG_RECONCILE_USAGE][4][24], ttl[24];
    size_t                   i, k, n, made;
    tg_batch                *b;
    const char              *kp[TG_USAGE_PENDING_KINDS];
    const char              *args[1 + TG_RECONCILE_USAGE * 5];
    tg_usage_pending_entry  *e;

    snprintf(ttl, sizeof(ttl), "%d", TG_RECONCILE_TTL_S);
    made = 0;

    do {
        if (rc->kept >= TG_RECONCILE_KEPT || rc->usage.n == 0) {
            break;
        }

        e = rc->take;
        n = tg_usage_pending_take(&rc->usage, e, TG_RECONCILE_USAGE);

        for (k = 0; k < TG_USAGE_PENDING_KINDS; k++) {
            if (tg_redis_usage_key(keys[k], sizeof(keys[k]), rc->prefix,
                                   e[0].day * 86400, tg_redis_usage_kinds[k])
                == 0)
            {
                break;
            }
            kp[k] = keys[k];
        }

        args[0] = ttl;

        for (i = 0; i < n; i++) {
            snprintf(nums[i][0], 24, "%u", e[i].kind + 1);
            snprintf(nums[i][1], 24, "%llu",
                     (unsigned long long) e[i].requests);
            snprintf(nums[i][2], 24, "%llu", (unsigned long long) e[i].tokens);
            snprintf(nums[i][3], 24, "%llu",
                     (unsigned long long) e[i].cost_nano);
            args[1 + i * 5] = nums[i][0];
            args[2 + i * 5] = e[i].name;
            args[3 + i * 5] = nums[i][1];
            args[4 + i * 5] = nums[i][2];
            args[5 + i * 5] = nums[i][3];
        }

        b = k < TG_USAGE_PENDING_KINDS
            ? NULL
            : tg_reconcile_batch(rc, TG_BATCH_USAGE, tg_usage_lua,
                                 TG_USAGE_PENDING_KINDS, kp, 1 + n * 5, args);

        if (b == NULL) {
            rc->stats.usage_dropped += n;
            continue;
        }

        tg_reconcile_put(rc, ac, b);
        made++;

    } while (all);

    return made;
}


void
tg_reconcile_usage(tg_reconcile *rc, redisAsyncContext *ac, int64_t wall_s,
    const char *const *names, uint64_t requests, uint64_t tokens,
    uint64_t cost_nano)
{
    size_t   k;
    int64_t  day = wall_s >= 0 ? wall_s / 86400 : 0;

    for (k = 0; k < TG_USAGE_PENDING_KINDS; k++) {
        if (names[k][0] != '\0') {
            (void) tg_usage_pending_add(&rc->usage, day, (uint32_t) k,
                                        names[k], strlen(names[k]),
                                        requests, tokens, cost_nano);
        }
    }

    if (!rc->connected) {
        tg_reconcile_touch(rc);
    }

    if (ac != NULL && rc->usage_inflight == 0) {
        tg_reconcile_flush_usage(rc, ac, false);
    }
}


void
tg_reconcile_view_of(const tg_reconcile *rc, tg_reconcile_view *v)
{
    *v = rc->stats;
    v->pending = rc->kept;
    v->usage_pending = rc->usage.n;
    v->usage_dropped = rc->stats.usage_dropped + rc->usage.dropped;
    v->corr_waiting = rc->ncorr;
}


/* the state file's part (redis_waiting.h) */

static const char *const  tg_reconcile_scripts[] = {
    tg_reconcile_lua,                   /* TG_BATCH_LIMITS */
    tg_usage_lua,                       /* TG_BATCH_USAGE */
    tg_correct_lua                      /* TG_BATCH_REPORT */
};


int
tg_reconcile_copy(const tg_reconcile *rc, tg_waiting *w)
{
    int                 i;
    char               *p;
    size_t              n;
    const tg_batch     *b;
    tg_waiting_batch   *wb;

    memset(w, 0, sizeof(tg_waiting));

    if (rc->kept != 0) {
        w->batches = calloc(rc->kept, sizeof(tg_waiting_batch));
        if (w->batches == NULL) {
            return -1;
        }
    }

    /* the script itself is not kept: its kind names it */

    for (b = rc->head; b != NULL; b = b->next) {
        wb = &w->batches[w->nbatches];
        wb->kind = (uint32_t) b->kind;
        wb->argc = (uint32_t) (b->argc - 2);

        for (i = 2; i < b->argc; i++) {
            wb->len += b->argvlen[i] + 1;
        }

        wb->args = malloc(wb->len != 0 ? wb->len : 1);
        if (wb->args == NULL) {
            tg_waiting_free(w);
            return -1;
        }

        w->nbatches++;

        for (p = wb->args, i = 2; i < b->argc; i++) {
            memcpy(p, b->argv[i], b->argvlen[i] + 1);
            p += b->argvlen[i] + 1;
        }
    }

    if (rc->connected) {
        return 0;
    }

    if (rc->ncorr != 0) {
        w->corr = malloc(rc->ncorr * sizeof(tg_correction));
        if (w->corr == NULL) {
            tg_waiting_free(w);
            return -1;
        }
        memcpy(w->corr, rc->corr, rc->ncorr * sizeof(tg_correction));
        w->ncorr = rc->ncorr;
    }

    n = rc->usage.n;

    if (n != 0) {
        w->usage = malloc(n * sizeof(tg_usage_pending_entry));
        if (w->usage == NULL) {
            tg_waiting_free(w);
            return -1;
        }
        memcpy(w->usage, rc->usage.entries,
               n * sizeof(tg_usage_pending_entry));
        w->nusage = n;
    }

    return 0;
}


void
tg_reconcile_restore(tg_reconcile *rc, const tg_waiting *w)
{
    size_t                         i, k, nk;
    uint64_t                       seq;
    tg_batch                      *b;
    const char                    *p, *argv[2 + TG_WAITING_ARGS_MAX];
    const tg_waiting_batch        *wb;
    const tg_usage_pending_entry  *e;

    for (i = 0; i < w->nbatches; i++) {
        wb = &w->batches[i];

        /* limits_state.c checked its shape: numkeys, keys, the number */

        if (wb->kind > TG_BATCH_REPORT || wb->argc > TG_WAITING_ARGS_MAX
            || rc->kept >= TG_RECONCILE_KEPT)
        {
            rc->stats.dropped++;
            continue;
        }

        argv[0] = "EVAL";
        argv[1] = tg_reconcile_scripts[wb->kind];

        for (p = wb->args, k = 0; k < wb->argc; k++) {
            argv[2 + k] = p;
            p += strlen(p) + 1;
        }

        /* its number, after numkeys and the keys: kept as it was */
        nk = (size_t) strtoull(argv[2], NULL, 10);
        seq = 2 + nk + 1 < 2 + (size_t) wb->argc
              ? strtoull(argv[2 + nk + 1], NULL, 10) : 0;

        b = tg_batch_new(rc, (tg_batch_kind) wb->kind, seq, 2 + wb->argc,
                         argv);
        if (b == NULL) {
            rc->stats.dropped++;
            continue;
        }

        /* it may have left before the restart: a resend when it goes */
        b->sent = true;
    }

    for (i = 0; i < w->ncorr; i++) {
        (void) tg_reconcile_correct(rc, NULL, &w->corr[i]);
    }

    for (i = 0; i < w->nusage; i++) {
        e = &w->usage[i];
        (void) tg_usage_pending_add(&rc->usage, e->day, e->kind, e->name,
                                    e->len, e->requests, e->tokens,
                                    e->cost_nano);
    }
}


void
tg_reconcile_alone(tg_reconcile *rc)
{
    if (rc->connected) {
        rc->connected = false;
        tg_reconcile_touch(rc);
    }
}
