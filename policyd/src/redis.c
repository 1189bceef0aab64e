/*
 * The connection to the shared Redis and what goes through it.
 *
 *   connection   hiredis's async context on libev; connected again after
 *                a backoff (redis_keys.c) whenever it drops or does not
 *                come up within timeout_ms; AUTH and SELECT first, then a
 *                PING whose answer says it is up.  One log line per state
 *                change.
 *   leases       a sorted set per provider, "{P:provider:NAME}:leases",
 *                of "node/lease" members scored by when they expire.  A
 *                decision's lease is taken by the acquire script, atomic:
 *                expired members go, then it is added if the set holds
 *                fewer than max_concurrency.  Every tick (and at once when
 *                Redis comes up) the sync script puts this node's members
 *                to what it holds - renewing them, dropping the ones it
 *                no longer knows (a restarted node does not count twice),
 *                re-adding those granted while Redis was away - and says
 *                how many the set holds: the others' count, for capacity.
 *   cooldowns    "{P:provider:NAME}:cool", set with the 429's time as its
 *                TTL; read (PTTL) every tick by every node.
 *   limits       rate windows, budgets and concurrency slots of clients,
 *                tenants and routes: taken by the take script, all or
 *                nothing; the slots then kept by redis_slots.c (given back,
 *                renewed, put back when Redis answers again).
 *   faults       a decision waits at most timeout_ms for its lease; then,
 *                and while Redis is down, on_redis_error: "local" grants
 *                within this node's share of max_concurrency
 *                (tg_redis_share), "closed" answers 503.
 *   reconcile    when Redis answers again, what this node took and spent
 *                alone (the counters' away tallies) is added to Redis's
 *                windows and budgets, and the day's usage counters are
 *                added to, in numbered batches kept until Redis answers
 *                them (redis_reconcile.c); so are a REPORT's corrections of
 *                takes Redis made, whether Redis is up or away then.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hiredis/async.h>
#include <hiredis/adapters/libev.h>

#include "limits_admit.h"
#include "log.h"
#include "redis.h"
#include "redis_keys.h"
#include "redis_slots.h"
#include "redis_lua.h"
#include "redis_reconcile.h"


#define TG_REDIS_TICK_S         0.1
#define TG_REDIS_SYNC_ARGS      4096    /* leases per provider in one sync */
#define TG_REDIS_TIMEOUTS_DOWN  3       /* in a row: the connection is bad */


typedef enum {
    TG_REDIS_CONNECTING = 0,
    TG_REDIS_UP,
    TG_REDIS_DOWN
} tg_redis_state;


typedef struct tg_pending {
    struct tg_pending  *prev;
    struct tg_pending  *next;
    tg_redis           *rd;
    tg_conn            *conn;
    uint32_t            id;
    uint32_t            lease;
    tg_pstate          *ps;
    tg_frame_hdr        h;
    uint8_t            *frame;          /* the DECIDE, to decide again */
    uint8_t            *answer;         /* the DECISION to send */
    size_t              answer_len;
    ev_timer            timer;
    bool                done;           /* answered; the reply only frees */
    bool                retried;        /* sent again as EVAL */
    bool                limits;         /* waits for the take script */
    bool                then_limits;    /* waits for ps's lease, then for
                                           the take script */
} tg_pending;


/* per provider record (by its slot in the state) */
typedef struct {
    bool                syncing;        /* a sync is unanswered */
    bool                polling;        /* a PTTL is unanswered */
    uint64_t            synced_ms;
    uint64_t            cool_until_ms;  /* the cooldown known here */
} tg_shared;


typedef struct {
    tg_redis           *rd;
    tg_pstate          *ps;
    size_t              slot;
    uint32_t            mine;           /* members sent */
} tg_sync_req;


struct tg_redis {
    tg_server          *srv;
    redisAsyncContext  *ac;
    tg_redis_state      state;
    bool                logged_down;
    double              since;
    uint32_t            failures;       /* connects in a row */
    uint32_t            timeouts_run;

    /* the policy's block, copied: the policy may be reloaded */
    char               *unix_path;
    char               *host;
    uint16_t            port;
    char               *password;
    uint32_t            db;
    char               *prefix;
    char               *node;
    char               *node_member;    /* "node/" */
    char                address[300];   /* for logs */
    uint32_t            timeout_ms;
    uint32_t            lease_ttl_ms;
    uint32_t            nodes;
    tg_redis_on_error   on_error;

    char                acquire_sha[41];
    char                sync_sha[41];
    char                take_sha[41];

    /* the numbered batches: the reconcile and the day's usage */
    tg_reconcile       *reconcile;

    /* the concurrency slots of client, tenant and route limits */
    tg_redis_slots      slots;

    /* today's usage counters, read back every second for the status */
    uint32_t            usage_ticks;
    uint32_t            usage_reading;  /* HGETALLs unanswered */
    tg_redis_usage      usage;

    ev_timer            retry_w;
    ev_timer            connect_w;
    ev_timer            tick_w;

    tg_pending         *pending;
    tg_shared          *shared;
    size_t              nshared;

    uint64_t            timeouts;
    uint64_t            errors;

    bool                quitting;       /* a clean stop writes its last */
};


/*
 * The scripts take the time from Redis itself (TIME), so that nodes whose
 * clocks differ agree on when a lease expires.
 */

static const char  tg_acquire_lua[] =
    TG_LUA_NOW
    "local ttl = tonumber(ARGV[3])\n"
    "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)\n"
    "local n = redis.call('ZCARD', KEYS[1])\n"
    "if redis.call('ZSCORE', KEYS[1], ARGV[2]) then\n"
    "  redis.call('ZADD', KEYS[1], now + ttl, ARGV[2])\n"
    "  return {1, n}\n"
    "end\n"
    "if n >= tonumber(ARGV[1]) then return {0, n} end\n"
    "redis.call('ZADD', KEYS[1], now + ttl, ARGV[2])\n"
    "redis.call('PEXPIRE', KEYS[1], ttl)\n"
    "return {1, n + 1}\n";

static const char  tg_sync_lua[] =
    TG_LUA_NOW
    "local ttl = tonumber(ARGV[1])\n"
    "local p = ARGV[2]\n"
    "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)\n"
    "local mine = {}\n"
    "for i = 3, #ARGV do mine[ARGV[i]] = true end\n"
    "for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do\n"
    "  if string.sub(m, 1, #p) == p and not mine[m] then\n"
    "    redis.call('ZREM', KEYS[1], m)\n"
    "  end\n"
    "end\n"
    "for i = 3, #ARGV do redis.call('ZADD', KEYS[1], now + ttl, ARGV[i]) end\n"
    "if #ARGV > 2 then redis.call('PEXPIRE', KEYS[1], ttl) end\n"
    "return redis.call('ZCARD', KEYS[1])\n";


/*
 * The limits of a decision (docs/policy.md, "Several nodes"): one GCRA
 * window per counter and kind, kept as a hash of debt and the time it is
 * as of (rd ra for requests, td ta for tokens), and the spend of a UTC
 * day and month in nano-units (d ds, m ms).  KEYS: the n counters'
 * hashes, then their n slot sets (redis_keys.h), so that all it touches
 * is declared.  ARGV: the slot's member ("node/lease") and its TTL, then
 * 8 per key: rpm tpm requests tokens enforce budget_day budget_month
 * concurrent (0: takes no slot).  Every item is checked first - a slot
 * after its set's expired members went, this decision's own member not
 * counted - then all are charged and their slots taken, or none.  The
 * reply: the refused item (1-based, 0: none), its tg_limit_kind, the wait
 * in ms, then per key its requests' and tokens' debt after, the day's and
 * month's spend, and the slots its set holds after (0 without a slot).
 */

static const char  tg_take_lua[] =
    TG_LUA_CLOCK
    "local n = #KEYS / 2\n"
    "local mem, sttl = ARGV[1], tonumber(ARGV[2])\n"
    "local lv = {}\n"
    "local refused, kind, wait = 0, 0, 0\n"
    "for i = 1, n do\n"
    "  local a = 2 + (i - 1) * 8\n"
    "  local rpm, tpm = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])\n"
    "  local req, tok = tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])\n"
    "  local enf = ARGV[a + 5] == '1'\n"
    "  local bd, bm = tonumber(ARGV[a + 6]), tonumber(ARGV[a + 7])\n"
    "  local con = tonumber(ARGV[a + 8])\n"
    "  local h = redis.call('HMGET', KEYS[i], 'rd', 'ra', 'td', 'ta', 'd',"
    " 'ds', 'm', 'ms')\n"
    "  local v = { level(h[1], h[2], rpm), level(h[3], h[4], tpm), 0, 0,"
    " 0 }\n"
    "  if tonumber(h[5]) == day then v[3] = tonumber(h[6]) or 0 end\n"
    "  if tonumber(h[7]) == month then v[4] = tonumber(h[8]) or 0 end\n"
    "  if con > 0 then\n"
    "    redis.call('ZREMRANGEBYSCORE', KEYS[n + i], '-inf', now)\n"
    "    v[5] = redis.call('ZCARD', KEYS[n + i])\n"
    "    if redis.call('ZSCORE', KEYS[n + i], mem) then v[5] = v[5] - 1 end\n"
    "  end\n"
    "  lv[i] = v\n"
    "  if enf and refused == 0 then\n"
    "    if con > 0 and v[5] >= con then\n"
    "      refused, kind, wait = i, 3, 1000\n"
    "    elseif rpm > 0 and req > 0 and v[1] > (rpm - req) * P then\n"
    "      refused, kind = i, 1\n"
    "      wait = math.ceil((v[1] - (rpm - req) * P) / rpm)\n"
    "    elseif tpm > 0 and tok > tpm then\n"
    "      refused, kind, wait = i, 4, P\n"
    "    elseif tpm > 0 and tok > 0 and v[2] > (tpm - tok) * P then\n"
    "      refused, kind = i, 2\n"
    "      wait = math.ceil((v[2] - (tpm - tok) * P) / tpm)\n"
    "    elseif (bm > 0 and v[4] >= bm) or (bd > 0 and v[3] >= bd) then\n"
    "      refused, kind = i, 5\n"
    "    end\n"
    "  end\n"
    "end\n"
    "if refused == 0 then\n"
    "  for i = 1, n do\n"
    "    local a = 2 + (i - 1) * 8\n"
    "    local rpm, tpm = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])\n"
    "    local v = lv[i]\n"
    "    if rpm > 0 then v[1] = v[1] + tonumber(ARGV[a + 3]) * P end\n"
    "    if tpm > 0 then v[2] = v[2] + tonumber(ARGV[a + 4]) * P end\n"
    "    redis.call('HSET', KEYS[i], 'rd', v[1], 'ra', now, 'td', v[2],"
    " 'ta', now)\n"
    "    keep(KEYS[i], tonumber(ARGV[a + 6]), tonumber(ARGV[a + 7]))\n"
    "    if tonumber(ARGV[a + 8]) > 0 then\n"
    "      redis.call('ZADD', KEYS[n + i], now + sttl, mem)\n"
    "      v[5] = v[5] + 1\n"
    "      if redis.call('PTTL', KEYS[n + i]) < sttl then"
    " redis.call('PEXPIRE', KEYS[n + i], sttl) end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "local out = { refused, kind, wait }\n"
    "for i = 1, n do\n"
    "  for k = 1, 5 do out[#out + 1] = lv[i][k] end\n"
    "end\n"
    "return out\n";

static void tg_redis_connect(tg_redis *rd);
static void tg_redis_retry_cb(struct ev_loop *loop, ev_timer *w, int ev);
static void tg_redis_connect_timeout_cb(struct ev_loop *loop, ev_timer *w,
    int ev);
static void tg_redis_connected_cb(const redisAsyncContext *ac, int status);
static void tg_redis_disconnected_cb(const redisAsyncContext *ac,
    int status);
static void tg_redis_ready_cb(redisAsyncContext *ac, void *r, void *priv);
static void tg_redis_loaded_cb(redisAsyncContext *ac, void *r, void *priv);
static void tg_redis_ignore_cb(redisAsyncContext *ac, void *r, void *priv);
static void tg_redis_gone(tg_redis *rd, const char *why);
static void tg_redis_quit_cb(struct ev_loop *loop, ev_timer *w, int ev);
static void tg_redis_set_state(tg_redis *rd, tg_redis_state s,
    const char *why);
static void tg_redis_alone(tg_redis *rd);
static void tg_redis_tick_cb(struct ev_loop *loop, ev_timer *w, int ev);
static void tg_redis_sync(tg_redis *rd, size_t slot);
static void tg_redis_synced_cb(redisAsyncContext *ac, void *r, void *priv);
static void tg_redis_poll_cool(tg_redis *rd, size_t slot);
static void tg_redis_cool_cb(redisAsyncContext *ac, void *r, void *priv);
static int tg_redis_send_acquire(tg_redis *rd, tg_pending *p);
static void tg_redis_acquired_cb(redisAsyncContext *ac, void *r,
    void *priv);
static void tg_redis_pending_timeout_cb(struct ev_loop *loop, ev_timer *w,
    int ev);
static void tg_redis_pending_unlink(tg_pending *p);
static void tg_redis_pending_free(tg_pending *p);
static void tg_redis_unreachable(tg_redis *rd, tg_conn *c, uint32_t id,
    uint32_t lease, const uint8_t *answer, size_t len);
static void tg_redis_send_unavailable(tg_conn *c, uint32_t id);
static void tg_redis_decide_again(tg_pending *p);
static void tg_redis_lease_ended(void *arg, const tg_lease *l);
static void tg_redis_cooled(void *arg, const tg_pstate *ps, uint32_t ms);
static tg_shared *tg_redis_shared(tg_redis *rd, size_t slot);
static int tg_redis_send_take(tg_redis *rd, tg_pending *p,
    tg_limit_hold *h, redisCallbackFn *cb, void *priv);
static void tg_redis_taken_cb(redisAsyncContext *ac, void *r, void *priv);
static void tg_redis_behind_cb(redisAsyncContext *ac, void *r, void *priv);
static void tg_redis_limits_unreachable(tg_pending *p);
static void tg_redis_send_limits_closed(tg_conn *c, uint32_t id);
static void tg_redis_reported(void *arg, const tg_lease *l,
    const tg_report *r, const int64_t *deltas);
static void tg_redis_usage_of(tg_redis *rd, const tg_lease *l,
    const tg_report *r, uint64_t nano);
static void tg_redis_read_usage(tg_redis *rd);
static void tg_redis_usage_cb(redisAsyncContext *ac, void *r, void *priv);
static void tg_redis_away(tg_redis *rd, bool away);
static int tg_redis_then_limits(tg_redis *rd, tg_pending *p);
static tg_limit_hold *tg_redis_hold(tg_redis *rd, uint32_t lease);
static void tg_redis_lease_back(tg_redis *rd, tg_pending *p);
static void tg_redis_answer_learned(tg_redis *rd, tg_pending *p,
    const tg_limit_hold *h);
static char *tg_redis_strdup(const char *s);


static const char *const  tg_redis_state_names[] = {
    "connecting", "up", "down"
};


/* the state file a reconcile asked for is written: its batches go */

static void
tg_redis_persisted(void *arg)
{
    tg_redis  *rd = arg;

    tg_reconcile_persisted(rd->reconcile, rd->state == TG_REDIS_UP
                                          ? rd->ac : NULL);
}


/* the state file's copy of what waits for Redis (limits_store.h) */

static int
tg_redis_waiting(void *arg, struct tg_waiting *w)
{
    tg_redis  *rd = arg;

    return tg_reconcile_copy(rd->reconcile, w);
}


tg_redis *
tg_redis_start(tg_server *srv, const tg_policy *policy,
    const tg_waiting *restored)
{
    size_t                n;
    tg_redis             *rd;
    const tg_redis_conf  *rc = &policy->redis;

    rd = calloc(1, sizeof(tg_redis));
    if (rd == NULL) {
        return NULL;
    }

    rd->srv = srv;
    rd->port = rc->port;
    rd->db = rc->db;
    rd->timeout_ms = rc->timeout_ms;
    rd->lease_ttl_ms = rc->lease_ttl_ms;
    rd->nodes = rc->nodes;
    rd->on_error = rc->on_error;

    rd->unix_path = tg_redis_strdup(rc->unix_path);
    rd->host = tg_redis_strdup(rc->host);
    rd->password = tg_redis_strdup(rc->password);
    rd->prefix = tg_redis_strdup(rc->key_prefix);
    rd->node = tg_redis_strdup(rc->node_id);

    n = strlen(rc->node_id) + 2;
    rd->node_member = malloc(n);

    if ((rc->unix_path != NULL && rd->unix_path == NULL)
        || (rc->host != NULL && rd->host == NULL)
        || (rc->password != NULL && rd->password == NULL)
        || rd->prefix == NULL || rd->node == NULL || rd->node_member == NULL)
    {
        tg_redis_stop(rd);
        return NULL;
    }

    snprintf(rd->node_member, n, "%s/", rc->node_id);
    tg_redis_slots_init(&rd->slots, rd->prefix, rd->node);

    ev_timer_init(&rd->retry_w, tg_redis_retry_cb, 0, 0);
    rd->retry_w.data = rd;
    ev_timer_init(&rd->connect_w, tg_redis_connect_timeout_cb, 0, 0);
    rd->connect_w.data = rd;
    ev_timer_init(&rd->tick_w, tg_redis_tick_cb, TG_REDIS_TICK_S,
                  TG_REDIS_TICK_S);
    rd->tick_w.data = rd;

    srv->state->lease_ended = tg_redis_lease_ended;
    srv->state->cooled = tg_redis_cooled;
    srv->state->reported = tg_redis_reported;
    srv->state->hook_arg = rd;

    /* the limits' windows and budgets are Redis's from now on */
    srv->state->limits->nodes = rd->nodes != 0 ? rd->nodes : 1;
    tg_redis_away(rd, true);

    rd->state = TG_REDIS_CONNECTING;
    rd->since = ev_now(srv->loop);

    /* until Redis answers, each node keeps to its share */
    tg_redis_alone(rd);

    if (rd->unix_path != NULL) {
        snprintf(rd->address, sizeof(rd->address), "unix:%s", rd->unix_path);
    } else {
        snprintf(rd->address, sizeof(rd->address), "%s:%u", rd->host,
                 (unsigned) rd->port);
    }

    /* its batches' numbers are this process's own: its epoch */
    rd->reconcile = tg_reconcile_new(rd->node, (long) getpid(),
                                     (uint64_t) (ev_time() * 1000),
                                     rd->prefix, rd->address);
    if (rd->reconcile == NULL) {
        tg_redis_stop(rd);
        return NULL;
    }

    /* what waited for Redis before a restart: first in line */
    if (restored != NULL) {
        tg_reconcile_restore(rd->reconcile, restored);
    }

    rd->reconcile->waits = &srv->state->limits->waits;
    srv->state->limits->waiting = tg_redis_waiting;
    srv->state->limits->waiting_arg = rd;
    srv->state->limits->persisted = tg_redis_persisted;
    srv->state->limits->persisted_arg = rd;

    tg_log_info("redis.configured", "node address on_error",
                "redis: node \"%s\" shares leases and cooldowns through "
                "%s, on error \"%s\"", rd->node, rd->address,
                rd->on_error == TG_REDIS_ON_ERROR_LOCAL ? "local" : "closed");

    tg_redis_connect(rd);
    ev_timer_start(srv->loop, &rd->tick_w);

    return rd;
}


/*
 * A clean stop: the ZREMs of the slots and leases its connections' ends
 * gave back, and what else waits for Redis, are written and their replies
 * read, on the loop, for timeout_ms at most.  hiredis's
 * redisAsyncDisconnect refuses new commands, writes those queued and
 * closes once every reply is in (a Redis that answers nothing: the bound).
 * What is still unanswered then is kept by the batches (redis_reconcile.h)
 * or lost (a slot's ZREM: its member stays until lease_ttl_ms).
 */

void
tg_redis_quit(tg_redis *rd)
{
    ev_timer         bound;
    tg_pending      *p;
    struct ev_loop  *loop;

    if (rd == NULL || rd->quitting) {
        return;
    }

    loop = rd->srv->loop;
    rd->quitting = true;

    ev_timer_stop(loop, &rd->retry_w);
    ev_timer_stop(loop, &rd->connect_w);
    ev_timer_stop(loop, &rd->tick_w);

    /* those still waiting are answered by nobody: their workers time out */

    while ((p = rd->pending) != NULL) {
        tg_redis_pending_unlink(p);
    }

    if (rd->ac == NULL || rd->state != TG_REDIS_UP) {
        return;
    }

    /* what waits behind a batch in flight goes now too */
    tg_reconcile_quit(rd->reconcile, rd->ac);

    redisAsyncDisconnect(rd->ac);

    if (rd->ac == NULL) {
        /* nothing was unanswered: closed already */
        tg_reconcile_alone(rd->reconcile);
        return;
    }

    ev_timer_init(&bound, tg_redis_quit_cb, rd->timeout_ms / 1e3, 0);
    bound.data = rd;
    ev_timer_start(loop, &bound);

    /* until the disconnect callback (tg_redis_gone) or the bound */
    ev_run(loop, 0);

    ev_timer_stop(loop, &bound);

    /* what is still waiting now is the state file's to keep */
    tg_reconcile_alone(rd->reconcile);

    if (rd->ac != NULL) {
        tg_log_warn("redis.stop_unanswered", "address timeout_ms",
                    "redis: %s did not answer within %u ms at the stop: "
                    "what it was not sent or did not answer is lost (the "
                    "slots given back stay until lease_ttl_ms)",
                    rd->address, rd->timeout_ms);
    }
}


static void
tg_redis_quit_cb(struct ev_loop *loop, ev_timer *w, int ev)
{
    (void) w;
    (void) ev;

    ev_break(loop, EVBREAK_ONE);
}


void
tg_redis_stop(tg_redis *rd)
{
    tg_pending  *p;

    if (rd == NULL) {
        return;
    }

    if (rd->srv->state != NULL && rd->srv->state->hook_arg == rd) {
        rd->srv->state->lease_ended = NULL;
        rd->srv->state->cooled = NULL;
        rd->srv->state->reported = NULL;
        rd->srv->state->hook_arg = NULL;
    }

    if (rd->srv->state != NULL
        && rd->srv->state->limits->waiting_arg == rd)
    {
        rd->srv->state->limits->waiting = NULL;
        rd->srv->state->limits->waiting_arg = NULL;
        rd->srv->state->limits->persisted = NULL;
        rd->srv->state->limits->persisted_arg = NULL;
    }

    ev_timer_stop(rd->srv->loop, &rd->retry_w);
    ev_timer_stop(rd->srv->loop, &rd->connect_w);
    ev_timer_stop(rd->srv->loop, &rd->tick_w);

    /* those still waiting are answered by nobody: their workers time out */

    while ((p = rd->pending) != NULL) {
        tg_redis_pending_unlink(p);
    }

    if (rd->ac != NULL) {
        /* every callback runs now, with no reply, and frees its own */
        redisAsyncContext  *ac = rd->ac;

        rd->ac = NULL;
        ac->data = NULL;
        redisAsyncFree(ac);
    }

    free(rd->unix_path);
    free(rd->host);
    free(rd->password);
    free(rd->prefix);
    free(rd->node);
    free(rd->node_member);
    free(rd->shared);
    /* after the connection: its callbacks may still find their batch */
    tg_reconcile_free(rd->reconcile);
    free(rd);
}


void
tg_redis_reloaded(tg_redis *rd, const tg_policy *policy)
{
    const tg_redis_conf  *rc = &policy->redis;

    if (rd == NULL) {
        if (rc->enabled) {
            tg_log_warn("redis.reload_ignored", "",
                        "redis: the reloaded policy has a \"redis\" block; "
                        "it takes effect at the next start");
        }
        return;
    }

    if (!rc->enabled) {
        tg_log_warn("redis.reload_ignored", "",
                    "redis: the reloaded policy has no \"redis\" block; "
                    "Redis stays in use until the next start");
        return;
    }

    /* what may change without a new connection */

    rd->timeout_ms = rc->timeout_ms;
    rd->lease_ttl_ms = rc->lease_ttl_ms;
    rd->nodes = rc->nodes;
    rd->on_error = rc->on_error;
    rd->srv->state->limits->nodes = rd->nodes != 0 ? rd->nodes : 1;

    if (rd->state != TG_REDIS_UP) {
        tg_redis_alone(rd);
    }
}


void
tg_redis_view_of(const tg_redis *rd, double now, tg_redis_view *v)
{
    v->state = tg_redis_state_names[rd->state];
    v->node = rd->node;
    v->on_error = rd->on_error == TG_REDIS_ON_ERROR_LOCAL ? "local"
                                                          : "closed";
    v->since_s = now - rd->since;
    v->timeouts = rd->timeouts;
    v->errors = rd->errors + rd->slots.errors;
    v->now = now;
    v->usage = &rd->usage;

    if (rd->reconcile != NULL) {
        tg_reconcile_view_of(rd->reconcile, &v->reconcile);
    }
}


bool
tg_redis_shares(const tg_redis *rd, const tg_pstate *ps)
{
    return rd != NULL && ps != NULL && ps->max_concurrency != 0;
}


/* the connection */

static void
tg_redis_connect(tg_redis *rd)
{
    redisAsyncContext  *ac;

    if (rd->unix_path != NULL) {
        ac = redisAsyncConnectUnix(rd->unix_path);
    } else {
        ac = redisAsyncConnect(rd->host, rd->port);
    }

    if (ac == NULL || ac->err) {
        tg_redis_gone(rd, ac != NULL ? ac->errstr : "out of memory");
        if (ac != NULL) {
            redisAsyncFree(ac);
        }
        return;
    }

    ac->data = rd;
    tg_redis_reader_limit(ac->c.reader);

    if (redisLibevAttach(rd->srv->loop, ac) != REDIS_OK) {
        redisAsyncFree(ac);
        tg_redis_gone(rd, "cannot attach to the event loop");
        return;
    }

    redisAsyncSetConnectCallback(ac, tg_redis_connected_cb);
    redisAsyncSetDisconnectCallback(ac, tg_redis_disconnected_cb);

    rd->ac = ac;

    ev_timer_set(&rd->connect_w, rd->timeout_ms < 1000
                                 ? 1.0 : rd->timeout_ms / 1e3, 0);
    ev_timer_start(rd->srv->loop, &rd->connect_w);

    /* queued until connected: the password, the db, then a PING */

    if (rd->password != NULL) {
        redisAsyncCommand(ac, tg_redis_ignore_cb, NULL, "AUTH %s",
                          rd->password);
    }

    if (rd->db != 0) {
        redisAsyncCommand(ac, tg_redis_ignore_cb, NULL, "SELECT %u",
                          (unsigned) rd->db);
    }

    redisAsyncCommand(ac, tg_redis_ready_cb, NULL, "PING");
}


static void
tg_redis_retry_cb(struct ev_loop *loop, ev_timer *w, int ev)
{
    (void) loop;
    (void) ev;

    tg_redis_connect(w->data);
}


static void
tg_redis_connect_timeout_cb(struct ev_loop *loop, ev_timer *w, int ev)
{
    tg_redis           *rd = w->data;
    redisAsyncContext  *ac = rd->ac;

    (void) loop;
    (void) ev;

    if (ac == NULL || rd->state == TG_REDIS_UP) {
        return;
    }

    /* not up in time: no callback of ours may find it any more */

    rd->ac = NULL;
    ac->data = NULL;
    redisAsyncFree(ac);

    tg_redis_gone(rd, "no answer in time");
}


static void
tg_redis_connected_cb(const redisAsyncContext *ac, int status)
{
    tg_redis  *rd = ac->data;

    if (rd == NULL || status == REDIS_OK) {
        return;
    }

    /* hiredis frees the context after this */

    rd->ac = NULL;
    ev_timer_stop(rd->srv->loop, &rd->connect_w);
    tg_redis_gone(rd, ac->errstr[0] != '\0' ? ac->errstr : "cannot connect");
}


static void
tg_redis_disconnected_cb(const redisAsyncContext *ac, int status)
{
    tg_redis  *rd = ac->data;

    (void) status;

    if (rd == NULL) {
        return;
    }

    rd->ac = NULL;
    ev_timer_stop(rd->srv->loop, &rd->connect_w);
    tg_redis_gone(rd, ac->errstr[0] != '\0' ? ac->errstr
                                            : "connection closed");
}


static void
tg_redis_ignore_cb(redisAsyncContext *ac, void *r, void *priv)
{
    redisReply  *reply = r;
    tg_redis    *rd = ac->data;

    (void) priv;

    if (rd != NULL && reply != NULL && reply->type == REDIS_REPLY_ERROR) {
        rd->errors++;
        /* never the command: AUTH's argument is the password */
        tg_log_error("redis.error", "address message",
                     "redis: %s: %s", rd->address, reply->str);
    }
}


static void
tg_redis_ready_cb(redisAsyncContext *ac, void *r, void *priv)
{
    size_t       i;
    redisReply  *reply = r;
    tg_redis    *rd = ac->data;

    (void) priv;

    if (rd == NULL || reply == NULL) {
        return;
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        rd->errors++;
        tg_log_error("redis.refused", "address message",
                     "redis: %s refuses this node: %s", rd->address,
                     reply->str);
        redisAsyncDisconnect(ac);
        return;
    }

    ev_timer_stop(rd->srv->loop, &rd->connect_w);

    rd->failures = 0;
    rd->timeouts_run = 0;
    rd->acquire_sha[0] = '\0';
    rd->sync_sha[0] = '\0';
    rd->take_sha[0] = '\0';

    redisAsyncCommand(ac, tg_redis_loaded_cb, rd->acquire_sha,
                      "SCRIPT LOAD %s", tg_acquire_lua);
    redisAsyncCommand(ac, tg_redis_loaded_cb, rd->sync_sha,
                      "SCRIPT LOAD %s", tg_sync_lua);
    redisAsyncCommand(ac, tg_redis_loaded_cb, rd->take_sha,
                      "SCRIPT LOAD %s", tg_take_lua);

    tg_redis_set_state(rd, TG_REDIS_UP, NULL);

    /* reconcile: this node's leases as they are, the others' counted */

    for (i = 0; i < rd->srv->state->nslots; i++) {
        if (tg_redis_shared(rd, i) != NULL) {
            rd->shared[i].synced_ms = 0;
        }
        tg_redis_sync(rd, i);
    }

    /* and the slots of its limits, those taken alone too */
    tg_redis_slots_resend(&rd->slots, ac, rd->srv->state, rd->lease_ttl_ms);
    rd->slots.renewed_ms = tg_now_ms(rd->srv);
}


static void
tg_redis_loaded_cb(redisAsyncContext *ac, void *r, void *priv)
{
    char        *sha = priv;
    redisReply  *reply = r;

    (void) ac;

    if (reply != NULL && reply->type == REDIS_REPLY_STRING
        && reply->len == 40)
    {
        memcpy(sha, reply->str, 40);
        sha[40] = '\0';
    }
}


/* the connection went or never came: down, and again after a while */

static void
tg_redis_gone(tg_redis *rd, const char *why)
{
    uint32_t  ms;

    if (rd->quitting) {
        /* the stop's last writes are done (or lost): tg_redis_quit ends */
        ev_break(rd->srv->loop, EVBREAK_ONE);
        return;
    }

    tg_redis_set_state(rd, TG_REDIS_DOWN, why);

    ms = tg_redis_backoff_ms(rd->failures);
    if (rd->failures < 32) {
        rd->failures++;
    }

    ev_timer_stop(rd->srv->loop, &rd->retry_w);
    ev_timer_set(&rd->retry_w, ms / 1e3, 0);
    ev_timer_start(rd->srv->loop, &rd->retry_w);
}


static void
tg_redis_set_state(tg_redis *rd, tg_redis_state s, const char *why)
{
    tg_redis_state  was = rd->state;

    if (s == TG_REDIS_DOWN && was == TG_REDIS_DOWN) {
        return;
    }

    if (s == was) {
        return;
    }

    rd->state = s;
    rd->since = ev_now(rd->srv->loop);

    tg_redis_away(rd, s != TG_REDIS_UP);

    if (s == TG_REDIS_UP) {
        tg_log_info("redis.up", "address", "redis: %s is up", rd->address);
        return;
    }

    /* the corrections and usage waiting are the state file's now */
    tg_reconcile_alone(rd->reconcile);

    tg_log_error("redis.down", "address reason effect",
                 "redis: %s is down (%s): %s", rd->address, why,
                 rd->on_error == TG_REDIS_ON_ERROR_LOCAL
                 ? "each node keeps to its share of max_concurrency and "
                   "of the limits"
                 : "decisions that need it are refused (503)");

    tg_redis_alone(rd);
}


/*
 * Without Redis, a node counts the other nodes' leases as what leaves it
 * its share: at capacity once it holds max_concurrency / nodes.
 */

static void
tg_redis_alone(tg_redis *rd)
{
    size_t      i;
    uint32_t    share;
    tg_pstate  *ps;
    tg_state   *st = rd->srv->state;

    for (i = 0; i < st->nslots; i++) {
        ps = st->slots[i];

        if (ps->max_concurrency == 0) {
            ps->others = 0;
            continue;
        }

        share = tg_redis_share(ps->max_concurrency, rd->nodes);
        ps->others = ps->max_concurrency - share;
    }
}


/* every tick: leases synced where it matters, cooldowns read */

static void
tg_redis_tick_cb(struct ev_loop *loop, ev_timer *w, int ev)
{
    size_t      i;
    uint64_t    now;
    tg_redis   *rd = w->data;
    tg_pstate  *ps;
    tg_shared  *sh;
    tg_state   *st = rd->srv->state;

    (void) loop;
    (void) ev;

    if (rd->state != TG_REDIS_UP || rd->ac == NULL) {
        return;
    }

    now = tg_now_ms(rd->srv);

    if (++rd->usage_ticks >= 10) {
        rd->usage_ticks = 0;
        tg_redis_read_usage(rd);
    }

    tg_redis_slots_tick(&rd->slots, rd->ac, st, rd->lease_ttl_ms, now);

    /* a batch whose send failed, and those held behind it */
    tg_reconcile_retry(rd->reconcile, rd->ac);

    for (i = 0; i < st->nslots; i++) {
        ps = st->slots[i];

        if (!ps->in_policy) {
            continue;
        }

        sh = tg_redis_shared(rd, i);
        if (sh == NULL) {
            return;
        }

        /*
         * Renewed well within the TTL; and at once while the others hold
         * slots or requests wait here, to see a slot come free elsewhere.
         */

        if (ps->max_concurrency != 0
            && (ps->others != 0 || ps->queued != 0
                || now - sh->synced_ms >= rd->lease_ttl_ms / 4))
        {
            tg_redis_sync(rd, i);
        }

        tg_redis_poll_cool(rd, i);
    }
}


static void
tg_redis_sync(tg_redis *rd, size_t slot)
{
    int           argc;
    char         *mem;
    char          key[TG_REDIS_KEY_MAX], ttl[16];
    size_t        i, n, len, *argvlen;
    const char  **argv;
    tg_lease     *l;
    tg_pstate    *ps;
    tg_shared    *sh;
    tg_state     *st = rd->srv->state;
    tg_sync_req  *req;

    ps = st->slots[slot];
    sh = tg_redis_shared(rd, slot);

    if (sh == NULL || sh->syncing || ps->max_concurrency == 0
        || rd->ac == NULL || rd->state != TG_REDIS_UP)
    {
        return;
    }

    if (tg_redis_key(key, sizeof(key), rd->prefix, "provider", ps->name,
                     "leases") == 0)
    {
        return;
    }

    n = ps->in_flight < TG_REDIS_SYNC_ARGS ? ps->in_flight
                                           : TG_REDIS_SYNC_ARGS;

    /* EVALSHA sha 1 key ttl prefix members... */

    argv = malloc((n + 6) * sizeof(char *));
    argvlen = malloc((n + 6) * sizeof(size_t));
    mem = malloc(n * (TG_REDIS_NAME_MAX + 16) + 1);
    req = malloc(sizeof(tg_sync_req));

    if (argv == NULL || argvlen == NULL || mem == NULL || req == NULL) {
        goto done;
    }

    snprintf(ttl, sizeof(ttl), "%u", rd->lease_ttl_ms);

    argc = 0;

    if (rd->sync_sha[0] != '\0') {
        argv[argc++] = "EVALSHA";
        argv[argc++] = rd->sync_sha;
    } else {
        argv[argc++] = "EVAL";
        argv[argc++] = tg_sync_lua;
    }

    argv[argc++] = "1";
    argv[argc++] = key;
    argv[argc++] = ttl;
    argv[argc++] = rd->node_member;

    len = 0;

    for (i = 0; i < st->nbuckets && (size_t) argc < n + 6; i++) {
        for (l = st->buckets[i]; l != NULL && (size_t) argc < n + 6;
             l = l->next)
        {
            if (l->provider != ps) {
                continue;
            }

            argv[argc] = mem + len;
            len += tg_redis_member(mem + len, TG_REDIS_NAME_MAX + 16,
                                   rd->node, l->id) + 1;
            argc++;
        }
    }

    for (i = 0; i < (size_t) argc; i++) {
        argvlen[i] = strlen(argv[i]);
    }

    req->rd = rd;
    req->ps = ps;
    req->slot = slot;
    req->mine = (uint32_t) (argc - 6);

    if (redisAsyncCommandArgv(rd->ac, tg_redis_synced_cb, req, argc, argv,
                              argvlen) == REDIS_OK)
    {
        sh->syncing = true;
        req = NULL;
    }

done:

    free(argv);
    free(argvlen);
    free(mem);
    free(req);
}


static void
tg_redis_synced_cb(redisAsyncContext *ac, void *r, void *priv)
{
    bool          noscript;
    uint32_t      held, others;
    tg_sync_req  *req = priv;
    tg_redis     *rd = ac->data;
    tg_pstate    *ps = req->ps;

    if (rd == NULL) {
        free(req);
        return;
    }

    rd->shared[req->slot].syncing = false;

    if (tg_redis_parse_count(r, &held, &noscript) != 0) {
        if (noscript) {
            rd->sync_sha[0] = '\0';
        } else if (r != NULL) {
            rd->errors++;
        }
        free(req);
        return;
    }

    rd->shared[req->slot].synced_ms = tg_now_ms(rd->srv);

    others = held > req->mine ? held - req->mine : 0;

    if (rd->state == TG_REDIS_UP && others != ps->others) {

        /* a slot came free on another node: those waiting here may go */

        if (others < ps->others && ps->queued != 0) {
            tg_soon(rd->srv, false, true);
        }

        ps->others = others;
    }

    free(req);
}


/* cooldowns */

static void
tg_redis_poll_cool(tg_redis *rd, size_t slot)
{
    char        key[TG_REDIS_KEY_MAX];
    tg_pstate  *ps = rd->srv->state->slots[slot];
    tg_shared  *sh = &rd->shared[slot];

    if (sh->polling
        || tg_redis_key(key, sizeof(key), rd->prefix, "provider", ps->name,
                        "cool") == 0)
    {
        return;
    }

    if (redisAsyncCommand(rd->ac, tg_redis_cool_cb, (void *) slot,
                          "PTTL %s", key) == REDIS_OK)
    {
        sh->polling = true;
    }
}


static void
tg_redis_cool_cb(redisAsyncContext *ac, void *r, void *priv)
{
    size_t      slot = (size_t) priv;
    uint32_t    ms;
    uint64_t    now;
    tg_redis   *rd = ac->data;
    tg_state   *st;
    tg_pstate  *ps;

    if (rd == NULL) {
        return;
    }

    rd->shared[slot].polling = false;

    if (tg_redis_parse_pttl(r, &ms) != 0 || ms == 0) {
        return;
    }

    st = rd->srv->state;
    ps = st->slots[slot];
    now = tg_now_ms(rd->srv);

    /* already cooling as long here: nothing new to tell the workers */

    if (now + ms <= rd->shared[slot].cool_until_ms + 100) {
        return;
    }

    rd->shared[slot].cool_until_ms = now + ms;

    tg_limit_store_clock(st->limits);

    tg_log_info("redis.cooldown", "provider cooldown_ms",
                "redis: provider \"%s\" cools down for %u ms, as another "
                "node was asked", ps->name, ms);

    tg_limits_cooldown(st->limits, ps->name, ms);

    rd->srv->invalidate_due = true;
    tg_soon(rd->srv, true, false);
}


static void
tg_redis_cooled(void *arg, const tg_pstate *ps, uint32_t ms)
{
    char        key[TG_REDIS_KEY_MAX];
    size_t      i;
    tg_redis   *rd = arg;
    tg_state   *st = rd->srv->state;
    tg_shared  *sh;

    /* known here: the poll that reads it back is not news */

    for (i = 0; i < st->nslots; i++) {
        if (st->slots[i] == ps && (sh = tg_redis_shared(rd, i)) != NULL) {
            sh->cool_until_ms = tg_now_ms(rd->srv) + ms;
        }
    }

    if (rd->state != TG_REDIS_UP || rd->ac == NULL
        || tg_redis_key(key, sizeof(key), rd->prefix, "provider", ps->name,
                        "cool") == 0)
    {
        return;
    }

    redisAsyncCommand(rd->ac, tg_redis_ignore_cb, NULL, "SET %s %s PX %u",
                      key, rd->node, ms);
}


/* leases */

static void
tg_redis_lease_ended(void *arg, const tg_lease *l)
{
    char       key[TG_REDIS_KEY_MAX], member[TG_REDIS_NAME_MAX + 16];
    tg_redis  *rd = arg;

    if (rd->state != TG_REDIS_UP || rd->ac == NULL) {
        /* a slot Redis had stays there until its TTL (not renewed) */
        return;
    }

    tg_redis_slots_ended(&rd->slots, rd->ac, l);

    if (l->provider->max_concurrency == 0
        || tg_redis_key(key, sizeof(key), rd->prefix, "provider",
                        l->provider->name, "leases") == 0
        || tg_redis_member(member, sizeof(member), rd->node, l->id) == 0)
    {
        /* the next sync after Redis is back drops it, if it was there */
        return;
    }

    redisAsyncCommand(rd->ac, tg_redis_ignore_cb, NULL, "ZREM %s %s", key,
                      member);
}


void
tg_redis_acquire(tg_redis *rd, tg_conn *c, uint32_t id, tg_pstate *ps,
    uint32_t lease, const uint8_t *answer, size_t len)
{
    size_t       size;
    tg_server   *srv = rd->srv;
    tg_pending  *p;

    if (rd->state != TG_REDIS_UP || rd->ac == NULL) {
        tg_redis_unreachable(rd, c, id, lease, answer, len);
        return;
    }

    size = (size_t) srv->facts_hdr.length + TG_FRAME_LEN_SIZE;

    p = calloc(1, sizeof(tg_pending));

    if (p == NULL || (p->frame = malloc(size)) == NULL
        || (p->answer = malloc(len)) == NULL)
    {
        if (p != NULL) {
            free(p->frame);
        }
        free(p);
        tg_state_lease_release(srv->state, lease);
        tg_conn_error(c, id, TG_ERR_INTERNAL, false,
                      "out of memory for a shared lease");
        return;
    }

    memcpy(p->frame, srv->facts_frame, size);
    p->h = srv->facts_hdr;
    memcpy(p->answer, answer, len);
    p->answer_len = len;
    p->rd = rd;
    p->conn = c;
    p->id = id;
    p->lease = lease;
    p->ps = ps;

    if (tg_redis_send_acquire(rd, p) != 0) {
        tg_redis_unreachable(rd, c, id, lease, answer, len);
        tg_redis_pending_free(p);
        return;
    }

    ev_timer_init(&p->timer, tg_redis_pending_timeout_cb,
                  rd->timeout_ms / 1e3, 0);
    p->timer.data = p;
    ev_timer_start(srv->loop, &p->timer);

    p->next = rd->pending;
    if (rd->pending != NULL) {
        rd->pending->prev = p;
    }
    rd->pending = p;
}


static int
tg_redis_send_acquire(tg_redis *rd, tg_pending *p)
{
    int          argc;
    char         key[TG_REDIS_KEY_MAX], member[TG_REDIS_NAME_MAX + 16];
    char         max[16], ttl[16];
    size_t       i, argvlen[8];
    const char  *argv[8];

    if (tg_redis_key(key, sizeof(key), rd->prefix, "provider", p->ps->name,
                     "leases") == 0
        || tg_redis_member(member, sizeof(member), rd->node, p->lease) == 0)
    {
        return -1;
    }

    snprintf(max, sizeof(max), "%u", p->ps->max_concurrency);
    snprintf(ttl, sizeof(ttl), "%u", rd->lease_ttl_ms);

    argc = 0;

    if (rd->acquire_sha[0] != '\0' && !p->retried) {
        argv[argc++] = "EVALSHA";
        argv[argc++] = rd->acquire_sha;
    } else {
        argv[argc++] = "EVAL";
        argv[argc++] = tg_acquire_lua;
    }

    argv[argc++] = "1";
    argv[argc++] = key;
    argv[argc++] = max;
    argv[argc++] = member;
    argv[argc++] = ttl;

    for (i = 0; i < (size_t) argc; i++) {
        argvlen[i] = strlen(argv[i]);
    }

    return redisAsyncCommandArgv(rd->ac, tg_redis_acquired_cb, p, argc,
                                 argv, argvlen) == REDIS_OK ? 0 : -1;
}


static void
tg_redis_acquired_cb(redisAsyncContext *ac, void *r, void *priv)
{
    bool         granted, noscript;
    uint32_t     held;
    tg_redis    *rd = ac->data;
    tg_pending  *p = priv;
    tg_conn     *c;

    if (rd == NULL || p->done) {
        tg_redis_pending_free(p);
        return;
    }

    if (tg_redis_parse_acquire(r, &granted, &held, &noscript) != 0) {

        /* Redis lost its scripts (restarted, SCRIPT FLUSH): EVAL once */

        if (noscript && !p->retried) {
            p->retried = true;
            rd->acquire_sha[0] = '\0';

            if (rd->ac != NULL && tg_redis_send_acquire(rd, p) == 0) {
                return;
            }
        }

        if (r != NULL) {
            rd->errors++;
            tg_log_error("redis.unexpected_answer", "address",
                         "redis: %s: an unexpected answer to a lease",
                         rd->address);
        }

        /* no reply: the connection went, its callback said so */

        tg_redis_pending_unlink(p);

        if (p->then_limits) {
            tg_redis_limits_unreachable(p);
        } else {
            tg_redis_unreachable(rd, p->conn, p->id, p->lease, p->answer,
                                 p->answer_len);
        }
        goto sent;
    }

    rd->timeouts_run = 0;
    tg_redis_pending_unlink(p);

    if (granted && p->then_limits) {
        /* the slot is held across the nodes: now the client's limits */
        if (tg_redis_then_limits(rd, p) == 0) {
            return;
        }
        goto sent;
    }

    if (granted) {
        if (tg_state_lease(rd->srv->state, p->lease) != NULL) {
            tg_conn_send(p->conn, p->answer, p->answer_len);
        }
        goto sent;
    }

    /* full across the nodes: as full as that here, and decided again */

    tg_log_debug("redis.at_capacity", "provider held",
                 "redis: provider \"%s\" is at capacity across the nodes "
                 "(%u held)", p->ps->name, held);

    if (p->then_limits) {
        /* taken here for nothing: the decision again takes them anew */
        tg_limits_untake(rd->srv->state->limits,
                         tg_redis_hold(rd, p->lease));
    }

    tg_state_lease_release(rd->srv->state, p->lease);

    p->ps->others = p->ps->max_concurrency > p->ps->in_flight
                    ? p->ps->max_concurrency - p->ps->in_flight : 0;

    tg_redis_decide_again(p);

sent:

    c = p->conn;
    tg_redis_pending_free(p);

    if (c->state == TG_CONN_OPEN) {
        tg_conn_flush(c);
    }

    tg_conn_finish(c);
}


/* through the loop's hook: after this pass, as a provider at capacity */

static void
tg_redis_decide_again(tg_pending *p)
{
    tg_server  *srv = p->rd->srv;

    srv->decide_again(p->conn, p->frame, &p->h);
}


static void
tg_redis_pending_timeout_cb(struct ev_loop *loop, ev_timer *w, int ev)
{
    tg_pending  *p = w->data;
    tg_redis    *rd = p->rd;
    tg_conn     *c = p->conn;
    redisAsyncContext  *ac;

    (void) loop;
    (void) ev;

    rd->timeouts++;
    rd->timeouts_run++;

    tg_log_warn("redis.lease_timeout", "address what timeout_ms",
                "redis: %s did not answer %s within %u ms",
                rd->address, p->limits ? "the limits of a decision"
                                       : "a lease", rd->timeout_ms);

    /* the reply, if it ever comes, only frees it */

    tg_redis_pending_unlink(p);

    if (p->limits || p->then_limits) {
        tg_redis_limits_unreachable(p);
    } else {
        tg_redis_unreachable(rd, c, p->id, p->lease, p->answer,
                             p->answer_len);
    }

    if (c->state == TG_CONN_OPEN) {
        tg_conn_flush(c);
    }

    tg_conn_finish(c);

    /*
     * A Redis that answers nothing for several decisions in a row is as
     * good as down: connected again, those still waiting get their answer.
     */

    if (rd->timeouts_run >= TG_REDIS_TIMEOUTS_DOWN && rd->ac != NULL) {
        rd->timeouts_run = 0;
        ac = rd->ac;
        redisAsyncFree(ac);
        rd->ac = NULL;
        tg_redis_gone(rd, "too slow");
    }
}


/* out of the list of those waiting: the reply will only free it */

static void
tg_redis_pending_unlink(tg_pending *p)
{
    if (p->done) {
        return;
    }

    p->done = true;
    ev_timer_stop(p->rd->srv->loop, &p->timer);

    if (p->prev != NULL) {
        p->prev->next = p->next;
    } else {
        p->rd->pending = p->next;
    }

    if (p->next != NULL) {
        p->next->prev = p->prev;
    }

    p->prev = NULL;
    p->next = NULL;
}


static void
tg_redis_pending_free(tg_pending *p)
{
    free(p->frame);
    free(p->answer);
    free(p);
}


void
tg_redis_drop_conn(tg_redis *rd, tg_conn *c)
{
    tg_pending  *p, *next;

    if (rd == NULL) {
        return;
    }

    for (p = rd->pending; p != NULL; p = next) {
        next = p->next;

        if (p->conn == c) {
            tg_redis_pending_unlink(p);
        }
    }
}


static void
tg_redis_unreachable(tg_redis *rd, tg_conn *c, uint32_t id, uint32_t lease,
    const uint8_t *answer, size_t len)
{
    if (rd->on_error == TG_REDIS_ON_ERROR_LOCAL) {
        /* granted within this node's share (tg_redis_alone) */
        if (tg_state_lease(rd->srv->state, lease) != NULL) {
            tg_conn_send(c, answer, len);
        }
        return;
    }

    tg_state_lease_release(rd->srv->state, lease);
    tg_redis_send_unavailable(c, id);
}


static void
tg_redis_send_unavailable(tg_conn *c, uint32_t id)
{
    long        len;
    tg_builder  b;

    tg_builder_start(c, &b, TG_MSG_DECISION, id);
    tg_build_u32(&b, TG_F_STATUS, 503);
    tg_build_cstr(&b, TG_F_ERROR_TYPE, "server_error");
    tg_build_cstr(&b, TG_F_ERROR_CODE, "capacity_unavailable");
    tg_build_cstr(&b, TG_F_ERROR_MESSAGE, "The provider's capacity is "
                  "shared by several gateways and cannot be checked now; "
                  "try again later.");
    tg_build_u32(&b, TG_F_RETRY_AFTER, 1);
    tg_build_cstr(&b, TG_F_REASON, "redis unavailable, on_redis_error "
                  "closed");

    len = tg_build_end(&b);

    if (len > 0) {
        tg_conn_send(c, c->srv->out, (size_t) len);
    }
}


/* the record of a state slot, grown with the state */

static tg_shared *
tg_redis_shared(tg_redis *rd, size_t slot)
{
    size_t      n;
    tg_shared  *sh;

    if (slot < rd->nshared) {
        return &rd->shared[slot];
    }

    n = rd->srv->state->nslots;

    sh = realloc(rd->shared, n * sizeof(tg_shared));
    if (sh == NULL) {
        return NULL;
    }

    memset(sh + rd->nshared, 0, (n - rd->nshared) * sizeof(tg_shared));
    rd->shared = sh;
    rd->nshared = n;

    return slot < n ? &rd->shared[slot] : NULL;
}


static char *
tg_redis_strdup(const char *s)
{
    return s != NULL ? strdup(s) : NULL;
}


/* the limits: rate windows and budgets shared by the nodes */

static void
tg_redis_away(tg_redis *rd, bool away)
{
    tg_limit_store  *s = rd->srv->state->limits;
    bool             was = s->away;

    /* the store takes this node's own windows at its share while away */
    s->away = away;

    if (was && !away && rd->ac != NULL && rd->state == TG_REDIS_UP) {
        tg_reconcile_send(rd->reconcile, rd->ac, s);
    }
}


/*
 * The lease of a decision whose limits Redis did not take: its slot is
 * free again here, and requests waiting for it may go (after this pass).
 */

static void
tg_redis_lease_back(tg_redis *rd, tg_pending *p)
{
    tg_pstate  *ps = tg_state_lease_release(rd->srv->state, p->lease)
                     ? p->ps : NULL;

    if (ps != NULL && ps->queued != 0) {
        tg_soon(rd->srv, false, true);
    }
}


static tg_limit_hold *
tg_redis_hold(tg_redis *rd, uint32_t lease)
{
    const tg_lease  *l = tg_state_lease(rd->srv->state, lease);

    return l != NULL ? l->hold : NULL;
}


void
tg_redis_limits(tg_redis *rd, tg_conn *c, uint32_t id, tg_pstate *ps,
    uint32_t lease, const uint8_t *answer, size_t len)
{
    size_t          size;
    tg_server      *srv = rd->srv;
    tg_pending     *p;
    tg_limit_hold  *h = tg_redis_hold(rd, lease);

    if (srv->state->limits->away || rd->ac == NULL
        || rd->state != TG_REDIS_UP)
    {
        if (rd->on_error == TG_REDIS_ON_ERROR_CLOSED) {
            tg_limits_untake(srv->state->limits, h);
            tg_state_lease_release(srv->state, lease);
            tg_redis_send_limits_closed(c, id);
            return;
        }

        /*
         * Taken here at this node's share (and tallied for the
         * reconcile).  While the connection is up (a decision timed
         * out), Redis is asked too, without waiting: its answer ends the
         * time alone.
         */

        if (rd->ac != NULL && rd->state == TG_REDIS_UP && h != NULL) {
            tg_redis_send_take(rd, NULL, h, tg_redis_behind_cb, rd);
        }

        if (ps != NULL) {
            tg_redis_acquire(rd, c, id, ps, lease, answer, len);
        } else {
            tg_conn_send(c, answer, len);
        }
        return;
    }

    size = (size_t) srv->facts_hdr.length + TG_FRAME_LEN_SIZE;

    p = calloc(1, sizeof(tg_pending));

    if (p == NULL || (p->frame = malloc(size)) == NULL
        || (p->answer = malloc(len)) == NULL)
    {
        if (p != NULL) {
            free(p->frame);
        }
        free(p);
        tg_state_lease_release(srv->state, lease);
        tg_conn_error(c, id, TG_ERR_INTERNAL, false,
                      "out of memory for the shared limits");
        return;
    }

    memcpy(p->frame, srv->facts_frame, size);
    p->h = srv->facts_hdr;
    memcpy(p->answer, answer, len);
    p->answer_len = len;
    p->rd = rd;
    p->conn = c;
    p->id = id;
    p->lease = lease;
    p->ps = ps;

    /*
     * A shared lease first: a request that finds the provider full
     * across the nodes is decided again, and must not have spent its
     * client's rpm in Redis for nothing.
     */

    p->limits = ps == NULL;
    p->then_limits = ps != NULL;

    if ((ps != NULL ? tg_redis_send_acquire(rd, p)
                    : tg_redis_send_take(rd, p, h, tg_redis_taken_cb, p))
        != 0)
    {
        tg_redis_limits_unreachable(p);
        tg_redis_pending_free(p);
        return;
    }

    ev_timer_init(&p->timer, tg_redis_pending_timeout_cb,
                  rd->timeout_ms / 1e3, 0);
    p->timer.data = p;
    ev_timer_start(srv->loop, &p->timer);

    p->next = rd->pending;
    if (rd->pending != NULL) {
        rd->pending->prev = p;
    }
    rd->pending = p;
}


/* after its lease: the take script, waited for as long again */

static int
tg_redis_then_limits(tg_redis *rd, tg_pending *p)
{
    p->then_limits = false;
    p->limits = true;
    p->retried = false;
    p->done = false;

    if (rd->ac == NULL
        || tg_redis_send_take(rd, p, tg_redis_hold(rd, p->lease),
                              tg_redis_taken_cb, p) != 0)
    {
        p->done = true;
        tg_redis_limits_unreachable(p);
        return -1;
    }

    ev_timer_set(&p->timer, rd->timeout_ms / 1e3, 0);
    ev_timer_start(rd->srv->loop, &p->timer);

    p->prev = NULL;
    p->next = rd->pending;
    if (rd->pending != NULL) {
        rd->pending->prev = p;
    }
    rd->pending = p;

    return 0;
}


/*
 * EVALSHA take 2n KEYS... ARGV (2, then 8 a key); p NULL: nobody waits,
 * and it takes nothing (its answer only ends the time alone: what was
 * taken here then goes to Redis with the reconcile, once, and its slots
 * with the slots' resend)
 */

static int
tg_redis_send_take(tg_redis *rd, tg_pending *p, tg_limit_hold *h,
    redisCallbackFn *cb, void *priv)
{
    int          argc;
    char         keys[TG_HOLD_PARTS][TG_REDIS_KEY_MAX];
    char         slots[TG_HOLD_PARTS][TG_REDIS_KEY_MAX];
    char         nums[TG_HOLD_PARTS][8][24], nkeys[24], ttl[24];
    char         member[TG_REDIS_NAME_MAX + 16];
    size_t       i, k, argvlen[5 + TG_HOLD_PARTS * 10];
    const char  *argv[5 + TG_HOLD_PARTS * 10];

    if (h == NULL || h->n == 0 || h->n > TG_HOLD_PARTS) {
        return -1;
    }

    argc = 0;

    if (rd->take_sha[0] != '\0' && (p == NULL || !p->retried)) {
        argv[argc++] = "EVALSHA";
        argv[argc++] = rd->take_sha;
    } else {
        argv[argc++] = "EVAL";
        argv[argc++] = tg_take_lua;
    }

    snprintf(nkeys, sizeof(nkeys), "%zu", h->n * 2);
    argv[argc++] = nkeys;

    for (i = 0; i < h->n; i++) {
        if (tg_redis_limit_key(keys[i], sizeof(keys[i]), rd->prefix,
                               h->parts[i].counter->key,
                               h->parts[i].counter->key_len) == 0)
        {
            return -1;
        }
        argv[argc++] = keys[i];
    }

    for (i = 0; i < h->n; i++) {
        if (tg_redis_slot_key(slots[i], sizeof(slots[i]), rd->prefix,
                              h->parts[i].counter->key,
                              h->parts[i].counter->key_len) == 0)
        {
            return -1;
        }
        argv[argc++] = slots[i];
    }

    /* a probe takes no slot: its member is never added */

    if (p == NULL || tg_redis_member(member, sizeof(member), rd->node,
                                     p->lease) == 0)
    {
        snprintf(member, sizeof(member), "-");
    }

    snprintf(ttl, sizeof(ttl), "%u", rd->lease_ttl_ms);
    argv[argc++] = member;
    argv[argc++] = ttl;

    for (i = 0; i < h->n; i++) {
        snprintf(nums[i][0], 24, "%u", h->parts[i].rpm);
        snprintf(nums[i][1], 24, "%u", h->parts[i].tpm);
        /* p NULL: a probe; what it took alone is reconciled instead */
        snprintf(nums[i][2], 24, "%u", p != NULL ? h->parts[i].requests : 0);
        snprintf(nums[i][3], 24, "%u", p != NULL ? h->parts[i].tokens : 0);
        /*
         * A provider's plan is checked by tg_decide() against what this
         * node knows; in Redis it is enforced too, so that a plan full
         * across the nodes sends the request, decided again with that
         * learned, to the route's next step.
         */
        snprintf(nums[i][4], 24, "%d", h->parts[i].enforce
                 || h->parts[i].counter->key[0] == 'p' ? 1 : 0);
        snprintf(nums[i][5], 24, "%llu", (unsigned long long)
                 tg_redis_nano(h->parts[i].budget_day));
        snprintf(nums[i][6], 24, "%llu", (unsigned long long)
                 tg_redis_nano(h->parts[i].budget_month));
        /* the slot's limit: the whole one, across the nodes */
        snprintf(nums[i][7], 24, "%u", p != NULL && h->parts[i].slot
                 ? h->parts[i].concurrent : 0);

        for (k = 0; k < 8; k++) {
            argv[argc++] = nums[i][k];
        }
    }

    for (i = 0; i < (size_t) argc; i++) {
        argvlen[i] = strlen(argv[i]);
    }

    if (redisAsyncCommandArgv(rd->ac, cb, priv, argc, argv, argvlen)
        != REDIS_OK)
    {
        return -1;
    }

    /* from now on the lease's end gives its slots back in Redis too */
    if (p != NULL && tg_limits_has_slot(h)) {
        h->redis_slots = TG_HOLD_SLOTS_TAKING;
    }

    return 0;
}


/* what Redis holds now, for the headers and the next decisions here */

static void
tg_redis_learn(tg_redis *rd, tg_limit_hold *h, const tg_redis_take_reply *t)
{
    size_t           i;
    tg_limit_store  *s = rd->srv->state->limits;

    tg_limit_store_clock(s);

    for (i = 0; i < h->n && i < t->n; i++) {
        tg_counter_learn(h->parts[i].counter, h->parts[i].rpm,
                         h->parts[i].tpm, t->parts[i].requests_debt,
                         t->parts[i].tokens_debt,
                         t->parts[i].day_nano * 1000,
                         t->parts[i].month_nano * 1000, s->now_ms,
                         s->wall_s);

        /* a refusal: its slots as Redis counted them, for the decision
           decided again (a take counts with them anyway) */
        if (t->refused != 0 && h->parts[i].slot) {
            tg_counter_learn_slots(h->parts[i].counter, t->parts[i].slots,
                                   s->now_ms);
        }
    }
}


static void
tg_redis_taken_cb(redisAsyncContext *ac, void *r, void *priv)
{
    bool                  noscript;
    tg_redis             *rd = ac->data;
    tg_pending           *p = priv;
    tg_conn              *c;
    tg_limit_hold        *h;
    tg_redis_take_reply   t;

    if (rd == NULL || p->done) {
        tg_redis_pending_free(p);
        return;
    }

    h = tg_redis_hold(rd, p->lease);

    if (h == NULL) {
        /* the lease went (its connection closed): nothing to answer */
        tg_redis_pending_unlink(p);
        tg_redis_pending_free(p);
        return;
    }

    if (tg_redis_parse_take(r, h->n, &t, &noscript) != 0) {

        if (noscript && !p->retried) {
            p->retried = true;
            rd->take_sha[0] = '\0';

            if (rd->ac != NULL
                && tg_redis_send_take(rd, p, h, tg_redis_taken_cb, p) == 0)
            {
                return;
            }
        }

        if (r != NULL) {
            rd->errors++;
            tg_log_error("redis.limits_unexpected", "address",
                         "redis: %s: an unexpected answer to the limits of "
                         "a decision", rd->address);
        }

        tg_redis_pending_unlink(p);
        tg_redis_limits_unreachable(p);
        goto sent;
    }

    rd->timeouts_run = 0;
    tg_redis_pending_unlink(p);

    if (t.refused != 0) {

        /*
         * Full across the nodes: this node learns what Redis holds and
         * decides again, so that the 429 says what Redis says (its
         * Retry-After and x-ratelimit-*) as a refusal here would.
         */

        tg_log_debug("redis.limits_full", "part kind wait_ms",
                     "redis: the limits of a decision are full across the "
                     "nodes (part %zu, kind %d, %llu ms)", t.refused, t.kind,
                     (unsigned long long) t.wait_ms);

        /* nothing was taken: its end has no slot to give back */
        h->redis_slots = TG_HOLD_SLOTS_NONE;

        tg_limits_untake(rd->srv->state->limits, h);
        tg_redis_learn(rd, h, &t);
        tg_redis_lease_back(rd, p);
        tg_redis_decide_again(p);
        goto sent;
    }

    if (h->redis_slots == TG_HOLD_SLOTS_TAKING) {
        h->redis_slots = TG_HOLD_SLOTS_HELD;
    }

    tg_redis_learn(rd, h, &t);
    tg_redis_answer_learned(rd, p, h);

    tg_conn_send(p->conn, p->answer, p->answer_len);

sent:

    c = p->conn;
    tg_redis_pending_free(p);

    if (c->state == TG_CONN_OPEN) {
        tg_conn_flush(c);
    }

    tg_conn_finish(c);
}


/*
 * The DECISION again with the x-ratelimit-* of what Redis holds: every
 * field as it was, the rate limit's text new.
 */

static void
tg_redis_answer_learned(tg_redis *rd, tg_pending *p, const tg_limit_hold *h)
{
    int             rc;
    bool            had;
    char            text[128];
    long            len;
    uint8_t        *buf;
    tg_field        f;
    tg_builder      b;
    tg_frame_hdr    hdr;
    tg_field_iter   it;

    if (p->answer_len < TG_FRAME_HEADER_SIZE
        || tg_frame_header(p->answer, p->answer_len, UINT32_MAX, &hdr)
           != TG_FRAME_OK
        || (size_t) hdr.length + TG_FRAME_LEN_SIZE != p->answer_len)
    {
        return;
    }

    tg_limits_hold_text(rd->srv->state->limits, h, text, sizeof(text));

    if (text[0] == '\0') {
        return;
    }

    buf = malloc(p->answer_len + sizeof(text) + TG_FIELD_HEADER_SIZE);
    if (buf == NULL) {
        return;
    }

    tg_build_begin(&b, buf, p->answer_len + sizeof(text)
                            + TG_FIELD_HEADER_SIZE, hdr.type, hdr.id);
    tg_fields_init(&it, p->answer, &hdr);

    had = false;

    while ((rc = tg_fields_next(&it, &f)) == 1) {
        if (f.key != TG_F_RATELIMIT) {
            tg_build_str(&b, f.key, f.value, f.len);
        } else {
            had = true;
        }
    }

    tg_build_cstr(&b, TG_F_RATELIMIT, text);
    len = tg_build_end(&b);

    /* only a client with limits hears of them (a provider's plan: not) */

    if (rc != 0 || len <= 0 || !had) {
        free(buf);
        return;
    }

    free(p->answer);
    p->answer = buf;
    p->answer_len = (size_t) len;
}


/* a take sent while this node was alone: an answer ends that */

static void
tg_redis_behind_cb(redisAsyncContext *ac, void *r, void *priv)
{
    bool                  noscript;
    tg_redis             *rd = ac->data;
    tg_redis_take_reply   t;
    const redisReply     *reply = r;

    (void) priv;

    if (rd == NULL || reply == NULL) {
        return;
    }

    if (reply->type == REDIS_REPLY_ARRAY
        && reply->elements >= 3 + TG_REDIS_TAKE_EACH
        && tg_redis_parse_take(reply, (reply->elements - 3)
                                      / TG_REDIS_TAKE_EACH, &t,
                               &noscript) == 0)
    {
        rd->timeouts_run = 0;

        if (rd->state == TG_REDIS_UP && rd->srv->state->limits->away) {
            tg_log_info("redis.limits_back", "address",
                        "redis: %s answers the limits again", rd->address);
            tg_redis_away(rd, false);
            /* the slots taken alone meanwhile: into their sets */
            tg_redis_slots_resend(&rd->slots, rd->ac, rd->srv->state,
                                  rd->lease_ttl_ms);
        }
        return;
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        if (tg_redis_noscript(reply)) {
            rd->take_sha[0] = '\0';
        } else {
            rd->errors++;
        }
    }
}


/*
 * Redis did not answer the limits of a decision: what it took here goes
 * back.  "local": this node is alone until Redis answers again, and the
 * DECIDE is decided again, at its share; "closed": 503.
 */

static void
tg_redis_limits_unreachable(tg_pending *p)
{
    tg_redis        *rd = p->rd;
    tg_server       *srv = rd->srv;
    tg_limit_hold   *h = tg_redis_hold(rd, p->lease);

    tg_limits_untake(srv->state->limits, h);
    tg_redis_lease_back(rd, p);

    if (rd->on_error == TG_REDIS_ON_ERROR_CLOSED) {
        tg_redis_send_limits_closed(p->conn, p->id);
        return;
    }

    if (!srv->state->limits->away) {
        tg_log_warn("redis.limits_away", "address",
                    "redis: %s: each node keeps to its share of the limits "
                    "until Redis answers again", rd->address);
        tg_redis_away(rd, true);
    }

    tg_redis_decide_again(p);
}


static void
tg_redis_send_limits_closed(tg_conn *c, uint32_t id)
{
    long        len;
    tg_builder  b;

    tg_builder_start(c, &b, TG_MSG_DECISION, id);
    tg_build_u32(&b, TG_F_STATUS, 503);
    tg_build_cstr(&b, TG_F_ERROR_TYPE, "server_error");
    tg_build_cstr(&b, TG_F_ERROR_CODE, "limits_unavailable");
    tg_build_cstr(&b, TG_F_ERROR_MESSAGE, "The rate limits of this client "
                  "are shared by several gateways and cannot be checked "
                  "now; try again later.");
    tg_build_u32(&b, TG_F_RETRY_AFTER, 1);
    tg_build_cstr(&b, TG_F_REASON, "redis unavailable, on_redis_error "
                  "closed");

    len = tg_build_end(&b);

    if (len > 0) {
        tg_conn_send(c, c->srv->out, (size_t) len);
    }
}


/*
 * REPORTs: tokens corrected and budgets spent in Redis, usage counted
 * (docs/policy.md, "A REPORT's corrections").  Per part of the hold:
 *
 *   taken alone (own), Redis down or away    its tokens' change is in
 *       the counter's away tally already (the store's tokens()); its
 *       spend goes there too: both reach Redis with the reconcile;
 *   taken alone, reported once Redis is back (reconciled already)  the
 *       spend alone is a correction (the tally sent held none of it);
 *   taken by Redis     the tokens' change and the spend are a
 *       correction, whether Redis is up or not.
 *
 * Corrections go through the numbered batches (redis_reconcile.c): kept
 * until Redis answers, resent first on the next connection, applied
 * once.
 */

static void
tg_redis_reported(void *arg, const tg_lease *l, const tg_report *r,
    const int64_t *deltas)
{
    size_t                i;
    bool                  up, alone, own;
    uint64_t              nano;
    tg_budget             when;
    tg_redis             *rd = arg;
    tg_correction         c;
    tg_limit_store       *s = rd->srv->state->limits;
    const tg_limit_hold  *h;

    up = rd->state == TG_REDIS_UP && rd->ac != NULL;
    alone = !up || s->away;
    h = l != NULL ? l->hold : NULL;
    nano = tg_redis_nano(r->cost);

    tg_limit_store_clock(s);
    memset(&when, 0, sizeof(when));
    tg_budget_roll(&when, s->wall_s);

    for (i = 0; h != NULL && i < h->n; i++) {
        own = h->parts[i].own;

        if (own && alone) {
            if (h->parts[i].budget && r->cost != 0 && s->nodes != 0) {
                tg_counter_away_spend(h->parts[i].counter, r->cost,
                                      s->wall_s);
            }
            continue;
        }

        if ((own || h->parts[i].tpm == 0 || deltas[i] == 0)
            && (!h->parts[i].budget || nano == 0))
        {
            continue;
        }

        memset(&c, 0, sizeof(c));

        if (tg_redis_limit_key(c.key, sizeof(c.key), rd->prefix,
                               h->parts[i].counter->key,
                               h->parts[i].counter->key_len) == 0)
        {
            continue;
        }

        c.tpm = own ? 0 : h->parts[i].tpm;
        c.tokens = own ? 0 : deltas[i];
        c.cost_nano = h->parts[i].budget ? nano : 0;
        c.day = when.day;
        c.month = when.month;
        c.budget_day_nano = tg_redis_nano(h->parts[i].budget_day);
        c.budget_month_nano = tg_redis_nano(h->parts[i].budget_month);

        (void) tg_reconcile_correct(rd->reconcile, up ? rd->ac : NULL, &c);
    }

    tg_redis_usage_of(rd, l, r, nano);
}


/*
 * The day's usage counters of a REPORT's client, tenant, route and
 * provider: through the numbered batches, sent now when Redis is up,
 * else kept (a bounded table) until it is (redis_reconcile.c).
 */

static void
tg_redis_usage_of(tg_redis *rd, const tg_lease *l, const tg_report *r,
    uint64_t nano)
{
    char                  names[TG_REDIS_USAGE_KINDS][300];
    uint64_t              tokens;
    const char           *provider, *np[TG_REDIS_USAGE_KINDS];

    provider = l != NULL ? l->provider->name : r->provider;

    snprintf(names[0], sizeof(names[0]), "%.*s",
             r->client.data != NULL ? (int) (r->client.len > 256 ? 256
                                             : r->client.len) : 0,
             r->client.data != NULL ? r->client.data : "");
    snprintf(names[1], sizeof(names[1]), "%.*s",
             r->tenant.data != NULL ? (int) (r->tenant.len > 256 ? 256
                                             : r->tenant.len) : 0,
             r->tenant.data != NULL ? r->tenant.data : "");
    snprintf(names[2], sizeof(names[2]), "%.256s",
             r->route != NULL ? r->route : "");
    snprintf(names[3], sizeof(names[3]), "%.256s",
             provider != NULL ? provider : "");

    np[0] = names[0];
    np[1] = names[1];
    np[2] = names[2];
    np[3] = names[3];

    tg_limit_store_clock(rd->srv->state->limits);

    tokens = r->tokens ? (uint64_t) r->prompt_tokens + r->completion_tokens
                       : 0;

    tg_reconcile_usage(rd->reconcile,
                       rd->state == TG_REDIS_UP ? rd->ac : NULL,
                       rd->srv->state->limits->wall_s, np,
                       r->count != 0 ? r->count : 1, tokens, nano);
}


/* the day's usage, read back every second for the status */

typedef struct {
    tg_redis   *rd;
    size_t      kind;
} tg_usage_req;


static void
tg_redis_read_usage(tg_redis *rd)
{
    char           key[TG_REDIS_KEY_MAX];
    size_t         k;
    time_t         t;
    struct tm      tm;
    tg_usage_req  *req;

    if (rd->usage_reading != 0) {
        return;
    }

    tg_limit_store_clock(rd->srv->state->limits);
    t = (time_t) rd->srv->state->limits->wall_s;

    if (gmtime_r(&t, &tm) != NULL) {
        strftime(rd->usage.day, sizeof(rd->usage.day), "%Y-%m-%d", &tm);
    }

    for (k = 0; k < TG_REDIS_USAGE_KINDS; k++) {
        if (tg_redis_usage_key(key, sizeof(key), rd->prefix, (int64_t) t,
                               tg_redis_usage_kinds[k]) == 0
            || (req = malloc(sizeof(tg_usage_req))) == NULL)
        {
            continue;
        }

        req->rd = rd;
        req->kind = k;

        if (redisAsyncCommand(rd->ac, tg_redis_usage_cb, req, "HGETALL %s",
                              key) != REDIS_OK)
        {
            free(req);
            continue;
        }

        rd->usage_reading++;
    }
}


static void
tg_redis_usage_cb(redisAsyncContext *ac, void *r, void *priv)
{
    tg_usage_req         *req = priv;
    tg_redis             *rd = ac->data;
    tg_redis_usage_kind  *kind;

    if (rd == NULL) {
        free(req);
        return;
    }

    if (rd->usage_reading > 0) {
        rd->usage_reading--;
    }

    kind = malloc(sizeof(tg_redis_usage_kind));

    if (kind != NULL && tg_redis_parse_usage(r, kind) == 0) {
        rd->usage.kinds[req->kind] = *kind;
        rd->usage.read = true;
        rd->usage.at = ev_now(rd->srv->loop);
    }

    free(kind);
    free(req);
}
