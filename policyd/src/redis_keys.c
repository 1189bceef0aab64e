/*
 * Key names, lease members, script replies, shares and backoff: the
 * decisions of the Redis client that need no socket.
 */

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "limits_conf.h"
#include "redis_conf.h"
#include "redis_keys.h"


size_t
tg_redis_key(char *buf, size_t cap, const char *prefix, const char *kind,
    const char *name, const char *what)
{
    int  n;

    n = snprintf(buf, cap, "{%s:%s:%s}:%s", prefix, kind, name, what);

    if (n < 0 || (size_t) n >= cap) {
        return 0;
    }

    return (size_t) n;
}


size_t
tg_redis_member(char *buf, size_t cap, const char *node, uint32_t lease)
{
    int  n;

    n = snprintf(buf, cap, "%s/%u", node, lease);

    if (n < 0 || (size_t) n >= cap) {
        return 0;
    }

    return (size_t) n;
}


uint32_t
tg_redis_member_lease(const char *member, size_t len, const char *node)
{
    size_t    i, nlen;
    uint64_t  v;

    nlen = strlen(node);

    if (len < nlen + 2 || memcmp(member, node, nlen) != 0
        || member[nlen] != '/')
    {
        return 0;
    }

    v = 0;

    for (i = nlen + 1; i < len; i++) {
        if (member[i] < '0' || member[i] > '9' || i - nlen > 10) {
            return 0;
        }
        v = v * 10 + (uint64_t) (member[i] - '0');
    }

    return v > UINT32_MAX ? 0 : (uint32_t) v;
}


uint32_t
tg_redis_share(uint32_t limit, uint32_t nodes)
{
    uint32_t  share;

    if (limit == 0) {
        return 0;
    }

    share = nodes > 1 ? limit / nodes : limit;

    return share == 0 ? 1 : share;
}


uint32_t
tg_redis_backoff_ms(uint32_t failures)
{
    uint32_t  ms = 100;

    while (failures-- > 0 && ms < 5000) {
        ms *= 2;
    }

    return ms > 5000 ? 5000 : ms;
}


static bool
tg_redis_is_noscript(const redisReply *r)
{
    return r->type == REDIS_REPLY_ERROR && r->str != NULL
           && strncmp(r->str, "NOSCRIPT", 8) == 0;
}


bool
tg_redis_noscript(const redisReply *r)
{
    return r != NULL && tg_redis_is_noscript(r);
}


int
tg_redis_parse_acquire(const redisReply *r, bool *granted, uint32_t *held,
    bool *noscript)
{
    *noscript = false;

    if (r == NULL) {
        return -1;
    }

    if (tg_redis_is_noscript(r)) {
        *noscript = true;
        return -1;
    }

    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2
        || r->element[0]->type != REDIS_REPLY_INTEGER
        || r->element[1]->type != REDIS_REPLY_INTEGER
        || (r->element[0]->integer != 0 && r->element[0]->integer != 1)
        || r->element[1]->integer < 0
        || r->element[1]->integer > UINT32_MAX)
    {
        return -1;
    }

    *granted = r->element[0]->integer == 1;
    *held = (uint32_t) r->element[1]->integer;

    return 0;
}


int
tg_redis_parse_count(const redisReply *r, uint32_t *held, bool *noscript)
{
    *noscript = false;

    if (r == NULL) {
        return -1;
    }

    if (tg_redis_is_noscript(r)) {
        *noscript = true;
        return -1;
    }

    if (r->type != REDIS_REPLY_INTEGER || r->integer < 0
        || r->integer > UINT32_MAX)
    {
        return -1;
    }

    *held = (uint32_t) r->integer;

    return 0;
}


int
tg_redis_parse_pttl(const redisReply *r, uint32_t *ms)
{
    if (r == NULL || r->type != REDIS_REPLY_INTEGER) {
        return -1;
    }

    /* -2: no key, -1: no expiry (never set so by policyd) */
    *ms = r->integer <= 0 ? 0
          : r->integer > UINT32_MAX ? UINT32_MAX : (uint32_t) r->integer;

    return 0;
}


const char *const  tg_redis_usage_kinds[TG_REDIS_USAGE_KINDS] = {
    "client", "tenant", "route", "provider"
};


static size_t
tg_redis_counter_key(char *buf, size_t cap, const char *prefix,
    const char *what, const char *counter, size_t len)
{
    int     n;
    size_t  i;

    n = snprintf(buf, cap, "{%s:limits}:%s", prefix, what);

    if (n < 0 || (size_t) n >= cap || len >= cap - (size_t) n) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        buf[n + i] = counter[i] == '\037' ? '|' : counter[i];
    }

    buf[n + len] = '\0';

    return (size_t) n + len;
}


/* a counter's longest key, under the longest prefix, in its slot set */
_Static_assert(sizeof("{:limits}:slots:") - 1 + TG_REDIS_NAME_MAX
               + TG_LIMIT_KEY_MAX < TG_REDIS_KEY_MAX,
               "TG_LIMIT_KEY_MAX: a counter's slot key must fit");


size_t
tg_redis_limit_key(char *buf, size_t cap, const char *prefix,
    const char *counter, size_t len)
{
    return tg_redis_counter_key(buf, cap, prefix, "", counter, len);
}


size_t
tg_redis_slot_key(char *buf, size_t cap, const char *prefix,
    const char *counter, size_t len)
{
    return tg_redis_counter_key(buf, cap, prefix, "slots:", counter, len);
}


size_t
tg_redis_usage_key(char *buf, size_t cap, const char *prefix,
    int64_t wall_s, const char *kind)
{
    int        n;
    time_t     t = (time_t) (wall_s > 0 ? wall_s : 0);
    struct tm  tm;

    if (gmtime_r(&t, &tm) == NULL) {
        return 0;
    }

    n = snprintf(buf, cap, "{%s:usage:%04d-%02d-%02d}:%s", prefix,
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, kind);

    if (n < 0 || (size_t) n >= cap) {
        return 0;
    }

    return (size_t) n;
}


size_t
tg_redis_batch_key(char *buf, size_t cap, const char *key,
    const char *epoch)
{
    int          n;
    const char  *end;

    if (key[0] != '{' || (end = strchr(key, '}')) == NULL || end == key + 1) {
        return 0;
    }

    n = snprintf(buf, cap, "%.*s:batch:%s", (int) (end - key + 1), key,
                 epoch);

    if (n < 0 || (size_t) n >= cap) {
        return 0;
    }

    return (size_t) n;
}


int
tg_redis_parse_batch(const redisReply *r, bool *applied)
{
    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 2
        || r->element[0]->type != REDIS_REPLY_INTEGER
        || r->element[1]->type != REDIS_REPLY_INTEGER
        || (r->element[0]->integer != 0 && r->element[0]->integer != 1)
        || r->element[1]->integer < 0)
    {
        return -1;
    }

    *applied = r->element[0]->integer == 1;

    return 0;
}


uint64_t
tg_redis_nano(uint64_t pico)
{
    /* to the nearest; never 0 for a cost that is not */
    uint64_t  nano = pico / 1000 + (pico % 1000 >= 500 ? 1 : 0);

    return nano == 0 && pico != 0 ? 1 : nano;
}


static bool
tg_redis_uint(const redisReply *r, uint64_t *v)
{
    if (r == NULL || r->type != REDIS_REPLY_INTEGER || r->integer < 0) {
        return false;
    }

    *v = (uint64_t) r->integer;

    return true;
}


int
tg_redis_parse_take(const redisReply *r, size_t n, tg_redis_take_reply *out,
    bool *noscript)
{
    size_t    i, k;
    uint64_t  v[TG_REDIS_TAKE_EACH], refused, kind;

    *noscript = false;
    memset(out, 0, sizeof(*out));

    if (r == NULL || n == 0 || n > TG_REDIS_TAKE_PARTS) {
        return -1;
    }

    if (tg_redis_is_noscript(r)) {
        *noscript = true;
        return -1;
    }

    if (r->type != REDIS_REPLY_ARRAY
        || r->elements != 3 + TG_REDIS_TAKE_EACH * n
        || !tg_redis_uint(r->element[0], &refused)
        || !tg_redis_uint(r->element[1], &kind)
        || !tg_redis_uint(r->element[2], &out->wait_ms)
        || refused > n || kind > 5 || (refused != 0) != (kind != 0))
    {
        return -1;
    }

    out->refused = (size_t) refused;
    out->kind = (int) kind;
    out->n = n;

    for (i = 0; i < n; i++) {
        for (k = 0; k < TG_REDIS_TAKE_EACH; k++) {
            if (!tg_redis_uint(r->element[3 + TG_REDIS_TAKE_EACH * i + k],
                               &v[k]))
            {
                return -1;
            }
        }

        /* a count of slots no set can hold is not an answer to trust */
        if (v[4] > UINT32_MAX) {
            return -1;
        }

        out->parts[i].requests_debt = v[0];
        out->parts[i].tokens_debt = v[1];
        out->parts[i].day_nano = v[2];
        out->parts[i].month_nano = v[3];
        out->parts[i].slots = (uint32_t) v[4];
    }

    /* refused for its slots: its set holds at least one (concurrent >= 1) */
    if (kind == 3 && out->parts[refused - 1].slots == 0) {
        return -1;
    }

    return 0;
}


static bool
tg_redis_decimal(const redisReply *r, uint64_t *v)
{
    size_t    i;
    uint64_t  x;

    if (r->type == REDIS_REPLY_INTEGER) {
        return tg_redis_uint(r, v);
    }

    if (r->type != REDIS_REPLY_STRING || r->len == 0 || r->len > 19) {
        return false;
    }

    x = 0;

    for (i = 0; i < r->len; i++) {
        if (r->str[i] < '0' || r->str[i] > '9') {
            return false;
        }
        x = x * 10 + (uint64_t) (r->str[i] - '0');
    }

    *v = x;

    return true;
}


static void
tg_redis_usage_add(tg_redis_usage_entry *e, int what, uint64_t v)
{
    uint64_t  *to = what == 0 ? &e->requests
                    : what == 1 ? &e->tokens : &e->cost_nano;

    *to = *to > UINT64_MAX - v ? UINT64_MAX : *to + v;
}


int
tg_redis_parse_usage(const redisReply *r, tg_redis_usage_kind *out)
{
    int                    what;
    size_t                 i, k, len, plen;
    uint64_t               v;
    const char            *f, *name;
    const redisReply      *field, *value;
    tg_redis_usage_entry  *e;

    static const char *const  whats[] = { "requests:", "tokens:", "cost:" };

    memset(out, 0, sizeof(*out));

    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements % 2 != 0) {
        return -1;
    }

    for (i = 0; i < r->elements; i += 2) {
        field = r->element[i];
        value = r->element[i + 1];

        if (field == NULL || value == NULL
            || field->type != REDIS_REPLY_STRING)
        {
            return -1;
        }

        f = field->str;
        len = field->len;

        for (what = 0; what < 3; what++) {
            plen = strlen(whats[what]);
            if (len > plen && memcmp(f, whats[what], plen) == 0) {
                break;
            }
        }

        if (what == 3 || !tg_redis_decimal(value, &v)) {
            continue;                   /* not one of ours */
        }

        name = f + plen;
        len -= plen;

        if (len > TG_REDIS_USAGE_NAME || memchr(name, '\0', len) != NULL) {
            continue;
        }

        e = NULL;

        for (k = 0; k < out->n; k++) {
            if (strlen(out->entries[k].name) == len
                && memcmp(out->entries[k].name, name, len) == 0)
            {
                e = &out->entries[k];
                break;
            }
        }

        if (e == NULL && out->n < TG_REDIS_USAGE_NAMES) {
            e = &out->entries[out->n++];
            memcpy(e->name, name, len);
            e->name[len] = '\0';
        }

        if (e == NULL) {
            e = &out->other;
            out->has_other = true;
            snprintf(e->name, sizeof(e->name), "_other");
        }

        tg_redis_usage_add(e, what, v);
    }

    return 0;
}


/* hiredis's own reply functions, with arrays of a bounded size */

#if HIREDIS_MAJOR >= 1
typedef size_t  tg_redis_nelem;         /* hiredis 1.x */
#else
typedef int     tg_redis_nelem;         /* hiredis 0.14 */
#endif

static redisReplyObjectFunctions   tg_redis_fn;
static void *(*tg_redis_create_array)(const redisReadTask *task,
    tg_redis_nelem elements);


static void *
tg_redis_limited_array(const redisReadTask *task, tg_redis_nelem elements)
{
    if ((long long) elements < 0
        || (unsigned long long) elements > TG_REDIS_MAX_ELEMENTS)
    {
        return NULL;                    /* the reader's error: "OOM" */
    }

    return tg_redis_create_array(task, elements);
}


void
tg_redis_reader_limit(redisReader *r)
{
    if (r == NULL || r->fn == NULL || r->fn == &tg_redis_fn) {
        return;
    }

    /* every reader starts with the same defaults: copied once */

    if (tg_redis_create_array == NULL) {
        tg_redis_fn = *r->fn;
        tg_redis_create_array = r->fn->createArray;
        tg_redis_fn.createArray = tg_redis_limited_array;
    }

    if (r->fn->createArray == tg_redis_create_array) {
        r->fn = &tg_redis_fn;
    }
}
