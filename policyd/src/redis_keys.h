/*
 * The pure parts of sharing through Redis (redis_keys.c): key names, the
 * members of the lease sets, the replies of the scripts, the share of a
 * limit a node keeps when Redis is away, the reconnect backoff.  No
 * sockets; unit-tested in tests/test_redis.c.
 *
 * Every key carries a hash tag, "{PREFIX:KIND:NAME}", so that what one
 * script touches is in one slot of a Redis Cluster.
 */

#ifndef TG_REDIS_KEYS_H
#define TG_REDIS_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>


#define TG_REDIS_KEY_MAX    512

/*
 * "{prefix:kind:name}:what" into buf; its length, or 0 when it does not
 * fit in cap (TG_REDIS_KEY_MAX is always enough for policy names).
 */
size_t tg_redis_key(char *buf, size_t cap, const char *prefix,
    const char *kind, const char *name, const char *what);

/* a lease's member in its provider's set: "node/lease" */
size_t tg_redis_member(char *buf, size_t cap, const char *node,
    uint32_t lease);

/* the lease of a member of this node, 0 when it is another node's */
uint32_t tg_redis_member_lease(const char *member, size_t len,
    const char *node);

/*
 * What a node allows alone of a limit shared by nodes: its share, never
 * below 1 (a node that allowed nothing would refuse all), 0 for no limit.
 */
uint32_t tg_redis_share(uint32_t limit, uint32_t nodes);

/* the wait before connecting again after attempt failures in a row */
uint32_t tg_redis_backoff_ms(uint32_t failures);

/*
 * The acquire script's reply: {granted, held}.  0, or -1 when it is not
 * that (an error reply, NOSCRIPT included, is -1 with *noscript set).
 */
int tg_redis_parse_acquire(const redisReply *r, bool *granted,
    uint32_t *held, bool *noscript);

/* the sync script's reply: how many leases the set holds; -1: not that */
int tg_redis_parse_count(const redisReply *r, uint32_t *held,
    bool *noscript);

/*
 * The most elements an array of a reply may announce: hiredis allocates an
 * array's pointers as soon as it reads its header, so "*2000000000" from
 * a broken or hostile Redis would cost 16 GB.  Every reply policyd reads
 * is far smaller (an HGETALL of a busy day's usage is 6 a client).
 */
#define TG_REDIS_MAX_ELEMENTS  (1 << 20)

/* Makes a reader refuse larger arrays (an error: the connection goes). */
void tg_redis_reader_limit(redisReader *r);

/* whether a reply is Redis's NOSCRIPT error (it lost its scripts) */
bool tg_redis_noscript(const redisReply *r);

/* a PTTL reply: ms left, 0 when none; -1: not an integer */
int tg_redis_parse_pttl(const redisReply *r, uint32_t *ms);


/*
 * The limits' counters (rpm, tpm, budgets) of one decision are taken by
 * one script, so their keys share one hash tag: "{prefix:limits}:" and
 * the counter's key (limits_admit.c) with '|' for its separators:
 * "{tg:limits}:c|agents|alice".  0 when it does not fit in cap.
 */
size_t tg_redis_limit_key(char *buf, size_t cap, const char *prefix,
    const char *counter, size_t len);

/*
 * The concurrency slots of the same counter (its client's, tenant's or
 * route's "concurrent"), a sorted set of "node/lease" members scored by
 * when they expire, under the same hash tag, taken by the same script:
 * "{tg:limits}:slots:c|agents|alice".  A counter's key starts with its
 * scope letter and '|', so no counter's hash is ever named so.
 */
size_t tg_redis_slot_key(char *buf, size_t cap, const char *prefix,
    const char *counter, size_t len);

/* the usage counters of a UTC day and a kind (client, tenant, route,
   provider): "{prefix:usage:2026-12-03}:client" */
size_t tg_redis_usage_key(char *buf, size_t cap, const char *prefix,
    int64_t wall_s, const char *kind);

/*
 * Where Redis keeps the number of the last batch of a process (its
 * epoch) that it applied to the keys of one hash tag: that tag, taken
 * from key ("{tg:limits}:c|a|b" gives "{tg:limits}:batch:EPOCH"), so that
 * the script that checks it touches one slot.  0 when key has no tag or
 * it does not fit in cap.
 */
size_t tg_redis_batch_key(char *buf, size_t cap, const char *key,
    const char *epoch);

/*
 * The numbered batches' scripts' reply (redis_reconcile.c): {1, n}
 * applied, {0, 0} skipped, its number not newer than the last applied.
 * -1 when it is not that.
 */
int tg_redis_parse_batch(const redisReply *r, bool *applied);

/* spend in Redis is in nano-units (a 64-bit integer holds 9e9 units) */
uint64_t tg_redis_nano(uint64_t pico);

#define TG_REDIS_TAKE_PARTS  4
#define TG_REDIS_TAKE_EACH   5          /* numbers a part in the reply */

/* the take script's reply (redis.c says what it holds) */
typedef struct {
    size_t      refused;                /* 0: all taken; else 1 + index */
    int         kind;                   /* tg_limit_kind of the refusal */
    uint64_t    wait_ms;
    size_t      n;
    struct {
        uint64_t    requests_debt;
        uint64_t    tokens_debt;
        uint64_t    day_nano;
        uint64_t    month_nano;
        uint32_t    slots;              /* its slots held across the nodes
                                           (with this one's, if taken) */
    } parts[TG_REDIS_TAKE_PARTS];
} tg_redis_take_reply;

/* for n parts; -1 when it is not that (NOSCRIPT: *noscript) */
int tg_redis_parse_take(const redisReply *r, size_t n,
    tg_redis_take_reply *out, bool *noscript);

/* a day's usage of one kind, read back for the status */
#define TG_REDIS_USAGE_NAMES  64
#define TG_REDIS_USAGE_NAME   128

typedef struct {
    char        name[TG_REDIS_USAGE_NAME + 1];
    uint64_t    requests;
    uint64_t    tokens;
    uint64_t    cost_nano;
} tg_redis_usage_entry;

typedef struct {
    size_t                  n;
    tg_redis_usage_entry    entries[TG_REDIS_USAGE_NAMES];
    tg_redis_usage_entry    other;      /* the names beyond those */
    bool                    has_other;
} tg_redis_usage_kind;

/*
 * An HGETALL of a usage hash: fields "requests:NAME", "tokens:NAME",
 * "cost:NAME", values decimal integers.  Fields of another shape are
 * skipped.  -1 when the reply is not an array of pairs of strings.
 */
int tg_redis_parse_usage(const redisReply *r, tg_redis_usage_kind *out);

/* the usage of a day, as last read back, by kind */
#define TG_REDIS_USAGE_KINDS  4         /* client tenant route provider */

extern const char *const  tg_redis_usage_kinds[TG_REDIS_USAGE_KINDS];

typedef struct tg_redis_usage {
    bool                    read;       /* at least once */
    double                  at;         /* when (ev_now) */
    char                    day[16];    /* "2026-12-03" */
    tg_redis_usage_kind     kinds[TG_REDIS_USAGE_KINDS];
} tg_redis_usage;


#endif /* TG_REDIS_KEYS_H */
