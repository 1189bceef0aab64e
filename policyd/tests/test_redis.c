/*
 * Sharing through Redis, the parts without a socket: the "redis" block
 * and its errors, key names with their hash tags, lease members, the
 * share a node keeps alone, the reconnect backoff and the replies of the
 * scripts (good, wrong shape, NOSCRIPT); the numbered batches of the
 * reconcile (their numbers, markers, the kept list and its bound) and
 * the usage table on their way to Redis (empty, duplicates, full).
 */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <hiredis/read.h>

#include "redis_keys.h"
#include "redis_reconcile.h"
#include "tg_test.h"
#include "usage_pending.h"


#define TG_RD_BASE                                                           \
    "'listen': { 'path': '/x' }, 'providers': { 'p': { 'upstream': 'u',"     \
    " 'zone': 'local', 'endpoints': ['chat'] } }, 'routes': { 'r': {"       \
    " 'steps': [ { 'provider': 'p', 'model': 'm' } ] } }"


static void
test_redis_block(void **unused)
{
    tg_policy  *p;

    (void) unused;

    p = tg_test_policy("{" TG_RD_BASE ", 'redis': { 'address':"
                       " 'unix:/run/redis.sock', 'password':"
                       " '${DEEPSEEK_API_KEY}', 'db': 3, 'key_prefix': 'gw',"
                       " 'node_id': 'node-a', 'timeout_ms': 20,"
                       " 'lease_ttl_ms': 5000, 'nodes': 3,"
                       " 'on_redis_error': 'closed' } }");
    assert_true(p->redis.enabled);
    assert_string_equal(p->redis.unix_path, "/run/redis.sock");
    assert_null(p->redis.host);
    assert_string_equal(p->redis.password, "sk-deep");
    assert_string_equal(p->redis.password_env, "DEEPSEEK_API_KEY");
    assert_int_equal(p->redis.db, 3);
    assert_string_equal(p->redis.key_prefix, "gw");
    assert_string_equal(p->redis.node_id, "node-a");
    assert_int_equal(p->redis.timeout_ms, 20);
    assert_int_equal(p->redis.lease_ttl_ms, 5000);
    assert_int_equal(p->redis.nodes, 3);
    assert_int_equal(p->redis.on_error, TG_REDIS_ON_ERROR_CLOSED);
    tg_policy_free(p);

    /* the defaults, and a TCP address */

    p = tg_test_policy("{" TG_RD_BASE ", 'redis': { 'address':"
                       " '127.0.0.1:6380' } }");
    assert_true(p->redis.enabled);
    assert_null(p->redis.unix_path);
    assert_string_equal(p->redis.host, "127.0.0.1");
    assert_int_equal(p->redis.port, 6380);
    assert_null(p->redis.password);
    assert_int_equal(p->redis.db, 0);
    assert_string_equal(p->redis.key_prefix, "tg");
    assert_non_null(p->redis.node_id);
    assert_int_equal(p->redis.timeout_ms, TG_REDIS_TIMEOUT_MS_DEFAULT);
    assert_int_equal(p->redis.nodes, 2);
    assert_int_equal(p->redis.on_error, TG_REDIS_ON_ERROR_LOCAL);
    tg_policy_free(p);

    /* none: alone */

    p = tg_test_policy("{" TG_RD_BASE "}");
    assert_false(p->redis.enabled);
    tg_policy_free(p);
}


static const tg_test_refusal  refused_redis[] = {

    { "{" TG_RD_BASE ", 'redis': [] }", 1, {
        { "redis", "expected an object" },
      } },

    { "{" TG_RD_BASE ", 'redis': {} }", 1, {
        { "redis.address", "missing required key" },
      } },

    { "{" TG_RD_BASE ", 'redis': { 'address': null } }", 1, {
        { "redis.address", "expected a string" },
      } },

    { "{" TG_RD_BASE ", 'redis': { 'address': '' } }", 1, {
        { "redis.address", "expected \"unix:/path\" or \"host:port\"" },
      } },

    { "{" TG_RD_BASE ", 'redis': { 'address': 'localhost' } }", 1, {
        { "redis.address", "expected \"unix:/path\" or \"host:port\"" },
      } },

    { "{" TG_RD_BASE ", 'redis': { 'address': 'h:0' } }", 1, {
        { "redis.address", "expected \"unix:/path\" or \"host:port\"" },
      } },

    { "{" TG_RD_BASE ", 'redis': { 'address': 'h:65536' } }", 1, {
        { "redis.address", "expected \"unix:/path\" or \"host:port\"" },
      } },

    { "{" TG_RD_BASE ", 'redis': { 'address': 'unix:relative' } }", 1, {
        { "redis.address", "expected \"unix:\" and an absolute socket path "
          "of at most 107 bytes" },
      } },

    { "{" TG_RD_BASE ", 'redis': { 'address': 'h:1', 'pasword': 'x' } }", 1, {
        { "redis.pasword", "unknown key" },
      } },

    { "{" TG_RD_BASE ", 'redis': { 'address': 'h:1',"
      " 'password': '${NOT_SET}' } }", 1, {
        { "redis.password", "environment variable NOT_SET is not set" },
      } },

    { "{" TG_RD_BASE ", 'redis': { 'address': 'h:1',"
      " 'password': '${EMPTY_KEY}' } }", 1, {
        { "redis.password", "environment variable EMPTY_KEY is empty" },
      } },

    { "{" TG_RD_BASE ", 'redis': { 'address': 'h:1',"
      " 'password': 'hunter2' } }", 1, {
        { "redis.password", "expected \"${ENV_VAR}\": the password is read "
          "from the environment, literal ones are not allowed" },
      } },

    { "{" TG_RD_BASE ", 'redis': { 'address': 'h:1', 'timeout_ms': 0,"
      " 'nodes': 0, 'db': -1, 'on_redis_error': 'open',"
      " 'key_prefix': 'a{b}', 'node_id': '' } }", 6, {
        { "redis.on_redis_error", "expected \"local\" or \"closed\"" },
        { "redis.key_prefix", "expected letters, digits, '-', '_' and '.'" },
        { "redis.node_id", "expected 1 to 64 characters" },
      } },
};


static void
test_redis_refusals(void **unused)
{
    (void) unused;

    TG_TEST_REFUSALS(refused_redis);
}


static void
test_redis_keys(void **unused)
{
    char    buf[TG_REDIS_KEY_MAX], small[8];

    (void) unused;

    assert_int_equal(tg_redis_key(buf, sizeof(buf), "tg", "provider",
                                  "local", "leases"), 26);
    assert_string_equal(buf, "{tg:provider:local}:leases");

    /* what one script touches shares the tag: one slot */
    assert_int_equal(tg_redis_key(buf, sizeof(buf), "tg", "provider",
                                  "local", "cool"), 24);
    assert_memory_equal(buf, "{tg:provider:local}", 19);

    assert_int_equal(tg_redis_key(small, sizeof(small), "tg", "provider",
                                  "local", "leases"), 0);

    assert_int_equal(tg_redis_member(buf, sizeof(buf), "node-a", 42), 9);
    assert_string_equal(buf, "node-a/42");
    assert_int_equal(tg_redis_member(small, 4, "node-a", 42), 0);

    assert_int_equal(tg_redis_member_lease("node-a/42", 9, "node-a"), 42);
    assert_int_equal(tg_redis_member_lease("node-a/42", 9, "node-b"), 0);
    assert_int_equal(tg_redis_member_lease("node-ab/42", 10, "node-a"), 0);
    assert_int_equal(tg_redis_member_lease("node-a/", 7, "node-a"), 0);
    assert_int_equal(tg_redis_member_lease("node-a/4x", 9, "node-a"), 0);
    assert_int_equal(tg_redis_member_lease("node-a/99999999999", 18,
                                           "node-a"), 0);
}


static void
test_redis_share(void **unused)
{
    (void) unused;

    assert_int_equal(tg_redis_share(0, 2), 0);      /* no limit */
    assert_int_equal(tg_redis_share(10, 2), 5);
    assert_int_equal(tg_redis_share(10, 3), 3);     /* never over */
    assert_int_equal(tg_redis_share(1, 2), 1);      /* never nothing */
    assert_int_equal(tg_redis_share(7, 1), 7);
    assert_int_equal(tg_redis_share(7, 0), 7);

    assert_int_equal(tg_redis_backoff_ms(0), 100);
    assert_int_equal(tg_redis_backoff_ms(1), 200);
    assert_int_equal(tg_redis_backoff_ms(5), 3200);
    assert_int_equal(tg_redis_backoff_ms(6), 5000);
    assert_int_equal(tg_redis_backoff_ms(1000), 5000);
}


static void
test_redis_replies(void **unused)
{
    bool         granted, noscript;
    uint32_t     held, ms;
    redisReply   a, b, c, arr, err, str;
    redisReply  *two[2] = { &a, &b };
    redisReply  *mixed[2] = { &a, &str };

    (void) unused;

    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    memset(&c, 0, sizeof(c));
    memset(&arr, 0, sizeof(arr));
    memset(&err, 0, sizeof(err));
    memset(&str, 0, sizeof(str));

    a.type = REDIS_REPLY_INTEGER;
    a.integer = 1;
    b.type = REDIS_REPLY_INTEGER;
    b.integer = 3;
    arr.type = REDIS_REPLY_ARRAY;
    arr.elements = 2;
    arr.element = two;

    assert_int_equal(tg_redis_parse_acquire(&arr, &granted, &held,
                                            &noscript), 0);
    assert_true(granted);
    assert_int_equal(held, 3);

    a.integer = 0;
    assert_int_equal(tg_redis_parse_acquire(&arr, &granted, &held,
                                            &noscript), 0);
    assert_false(granted);

    a.integer = 2;      /* neither yes nor no */
    assert_int_equal(tg_redis_parse_acquire(&arr, &granted, &held,
                                            &noscript), -1);
    a.integer = 1;
    b.integer = -1;
    assert_int_equal(tg_redis_parse_acquire(&arr, &granted, &held,
                                            &noscript), -1);
    b.integer = 3;

    arr.elements = 1;
    assert_int_equal(tg_redis_parse_acquire(&arr, &granted, &held,
                                            &noscript), -1);
    arr.elements = 2;

    str.type = REDIS_REPLY_STRING;
    str.str = "1";
    str.len = 1;
    arr.element = mixed;
    assert_int_equal(tg_redis_parse_acquire(&arr, &granted, &held,
                                            &noscript), -1);
    arr.element = two;

    assert_int_equal(tg_redis_parse_acquire(NULL, &granted, &held,
                                            &noscript), -1);
    assert_false(noscript);

    err.type = REDIS_REPLY_ERROR;
    err.str = "NOSCRIPT No matching script. Please use EVAL.";
    err.len = strlen(err.str);
    assert_int_equal(tg_redis_parse_acquire(&err, &granted, &held,
                                            &noscript), -1);
    assert_true(noscript);
    assert_int_equal(tg_redis_parse_count(&err, &held, &noscript), -1);
    assert_true(noscript);

    err.str = "ERR something else";
    assert_int_equal(tg_redis_parse_acquire(&err, &granted, &held,
                                            &noscript), -1);
    assert_false(noscript);

    /* the sync script: a count */

    c.type = REDIS_REPLY_INTEGER;
    c.integer = 4;
    assert_int_equal(tg_redis_parse_count(&c, &held, &noscript), 0);
    assert_int_equal(held, 4);
    c.integer = -1;
    assert_int_equal(tg_redis_parse_count(&c, &held, &noscript), -1);
    assert_int_equal(tg_redis_parse_count(&str, &held, &noscript), -1);
    assert_int_equal(tg_redis_parse_count(NULL, &held, &noscript), -1);

    /* PTTL: -2 no key, -1 no expiry, else ms */

    c.integer = -2;
    assert_int_equal(tg_redis_parse_pttl(&c, &ms), 0);
    assert_int_equal(ms, 0);
    c.integer = -1;
    assert_int_equal(tg_redis_parse_pttl(&c, &ms), 0);
    assert_int_equal(ms, 0);
    c.integer = 1500;
    assert_int_equal(tg_redis_parse_pttl(&c, &ms), 0);
    assert_int_equal(ms, 1500);
    assert_int_equal(tg_redis_parse_pttl(&str, &ms), -1);
    assert_int_equal(tg_redis_parse_pttl(NULL, &ms), -1);
}


/* a reply as Redis would send it, in RESP; freeReplyObject() it */

static redisReply *
tg_resp(const char *text)
{
    void          *reply = NULL;
    redisReader   *r = redisReaderCreate();

    assert_non_null(r);
    assert_int_equal(redisReaderFeed(r, text, strlen(text)), REDIS_OK);
    assert_int_equal(redisReaderGetReply(r, &reply), REDIS_OK);
    assert_non_null(reply);
    redisReaderFree(r);

    return reply;
}


/* an array of bulk strings, as HGETALL answers: n strings */

static redisReply *
tg_resp_strings(const char *const *v, size_t n)
{
    char        buf[4096], *p = buf;
    size_t      i;

    p += sprintf(p, "*%zu\r\n", n);

    for (i = 0; i < n; i++) {
        p += sprintf(p, "$%zu\r\n%s\r\n", strlen(v[i]), v[i]);
    }

    return tg_resp(buf);
}


static void
test_redis_limit_keys(void **unused)
{
    char    buf[TG_REDIS_KEY_MAX], small[20];
    size_t  n;

    (void) unused;

    /* every limit counter under one hash tag: one script, one slot */

    n = tg_redis_limit_key(buf, sizeof(buf), "tg", "c\037agents\037alice",
                           14);
    assert_string_equal(buf, "{tg:limits}:c|agents|alice");
    assert_int_equal(n, strlen(buf));

    n = tg_redis_limit_key(buf, sizeof(buf), "gw", "p\037deepseek", 10);
    assert_string_equal(buf, "{gw:limits}:p|deepseek");

    /* a client name with the separator's look-alike stays itself */
    n = tg_redis_limit_key(buf, sizeof(buf), "tg", "t\037team\037a:b|c", 13);
    assert_string_equal(buf, "{tg:limits}:t|team|a:b|c");

    /* an empty name, and one that does not fit */
    n = tg_redis_limit_key(buf, sizeof(buf), "tg", "c\037p\037", 4);
    assert_string_equal(buf, "{tg:limits}:c|p|");
    assert_int_equal(tg_redis_limit_key(small, sizeof(small), "tg",
                                        "c\037agents\037alice", 14), 0);
    assert_int_equal(tg_redis_limit_key(small, 12, "tg", "", 0), 0);
    assert_int_equal(tg_redis_limit_key(small, 13, "tg", "", 0), 12);

    /* a counter's slots: the same hash tag, a name no counter has */

    n = tg_redis_slot_key(buf, sizeof(buf), "tg", "c\037agents\037alice",
                          14);
    assert_string_equal(buf, "{tg:limits}:slots:c|agents|alice");
    assert_int_equal(n, strlen(buf));
    n = tg_redis_slot_key(buf, sizeof(buf), "tg", "r\037p\037chat", 8);
    assert_string_equal(buf, "{tg:limits}:slots:r|p|chat");
    assert_int_equal(tg_redis_slot_key(small, sizeof(small), "tg",
                                       "c\037agents\037alice", 14), 0);
    assert_int_equal(tg_redis_slot_key(small, 18, "tg", "", 0), 0);
    assert_int_equal(tg_redis_slot_key(small, 19, "tg", "", 0), 18);

    /* usage: a hash per UTC day and kind, the day in the hash tag */

    n = tg_redis_usage_key(buf, sizeof(buf), "tg", 1764720000 + 86399,
                           "client");
    assert_string_equal(buf, "{tg:usage:2025-12-03}:client");
    assert_int_equal(n, strlen(buf));
    tg_redis_usage_key(buf, sizeof(buf), "tg", 1764720000 + 86400,
                       "provider");
    assert_string_equal(buf, "{tg:usage:2025-12-04}:provider");
    tg_redis_usage_key(buf, sizeof(buf), "tg", -5, "route");
    assert_string_equal(buf, "{tg:usage:1970-01-01}:route");
    assert_int_equal(tg_redis_usage_key(small, sizeof(small), "tg",
                                        1764720000, "client"), 0);

    /* pico to nano: to the nearest, a cost never rounded to nothing */

    assert_int_equal(tg_redis_nano(0), 0);
    assert_int_equal(tg_redis_nano(1), 1);
    assert_int_equal(tg_redis_nano(1499), 1);
    assert_int_equal(tg_redis_nano(1500), 2);
    assert_int_equal(tg_redis_nano(5000000000000ULL), 5000000000ULL);
    assert_int_equal(tg_redis_nano(UINT64_MAX), UINT64_MAX / 1000 + 1);
}


static void
test_redis_take_replies(void **unused)
{
    bool                  noscript;
    redisReply           *r;
    tg_redis_take_reply   t;

    (void) unused;

    /* all taken: 0 0 0, then per key its five numbers (slots last) */

    r = tg_resp("*13\r\n:0\r\n:0\r\n:0\r\n"
                ":60000\r\n:0\r\n:5\r\n:7\r\n:2\r\n"
                ":120000\r\n:3000000\r\n:0\r\n:0\r\n:0\r\n");
    assert_int_equal(tg_redis_parse_take(r, 2, &t, &noscript), 0);
    assert_int_equal(t.refused, 0);
    assert_int_equal(t.n, 2);
    assert_int_equal(t.parts[0].requests_debt, 60000);
    assert_int_equal(t.parts[0].day_nano, 5);
    assert_int_equal(t.parts[0].month_nano, 7);
    assert_int_equal(t.parts[0].slots, 2);
    assert_int_equal(t.parts[1].tokens_debt, 3000000);
    assert_int_equal(t.parts[1].slots, 0);

    /* for another number of keys than were sent: not that */
    assert_int_equal(tg_redis_parse_take(r, 1, &t, &noscript), -1);
    assert_int_equal(tg_redis_parse_take(r, 3, &t, &noscript), -1);
    assert_int_equal(tg_redis_parse_take(r, 0, &t, &noscript), -1);
    assert_int_equal(tg_redis_parse_take(r, 5, &t, &noscript), -1);
    freeReplyObject(r);

    /* the old shape, four numbers a key (a script of another version) */

    r = tg_resp("*11\r\n:0\r\n:0\r\n:0\r\n"
                ":60000\r\n:0\r\n:5\r\n:7\r\n"
                ":120000\r\n:3000000\r\n:0\r\n:0\r\n");
    assert_int_equal(tg_redis_parse_take(r, 2, &t, &noscript), -1);
    freeReplyObject(r);

    /* refused: the second key, rpm, in 1500 ms */

    r = tg_resp("*13\r\n:2\r\n:1\r\n:1500\r\n"
                ":0\r\n:0\r\n:0\r\n:0\r\n:0\r\n"
                ":600000\r\n:0\r\n:0\r\n:0\r\n:0\r\n");
    assert_int_equal(tg_redis_parse_take(r, 2, &t, &noscript), 0);
    assert_int_equal(t.refused, 2);
    assert_int_equal(t.kind, 1);
    assert_int_equal(t.wait_ms, 1500);
    freeReplyObject(r);

    /* refused for a slot: the first key's set holds its 2 */

    r = tg_resp("*8\r\n:1\r\n:3\r\n:1000\r\n"
                ":0\r\n:0\r\n:0\r\n:0\r\n:2\r\n");
    assert_int_equal(tg_redis_parse_take(r, 1, &t, &noscript), 0);
    assert_int_equal(t.refused, 1);
    assert_int_equal(t.kind, 3);
    assert_int_equal(t.parts[0].slots, 2);
    freeReplyObject(r);

    /* ... but a refusal for a slot of a set that holds none: not so */

    r = tg_resp("*8\r\n:1\r\n:3\r\n:1000\r\n"
                ":0\r\n:0\r\n:0\r\n:0\r\n:0\r\n");
    assert_int_equal(tg_redis_parse_take(r, 1, &t, &noscript), -1);
    freeReplyObject(r);

    /* slots beyond 32 bits, negative, nil, a string, an array */

    r = tg_resp("*8\r\n:0\r\n:0\r\n:0\r\n"
                ":0\r\n:0\r\n:0\r\n:0\r\n:4294967296\r\n");
    assert_int_equal(tg_redis_parse_take(r, 1, &t, &noscript), -1);
    freeReplyObject(r);
    r = tg_resp("*8\r\n:0\r\n:0\r\n:0\r\n"
                ":0\r\n:0\r\n:0\r\n:0\r\n:4294967295\r\n");
    assert_int_equal(tg_redis_parse_take(r, 1, &t, &noscript), 0);
    assert_int_equal(t.parts[0].slots, UINT32_MAX);
    freeReplyObject(r);
    r = tg_resp("*8\r\n:0\r\n:0\r\n:0\r\n"
                ":0\r\n:0\r\n:0\r\n:0\r\n:-1\r\n");
    assert_int_equal(tg_redis_parse_take(r, 1, &t, &noscript), -1);
    freeReplyObject(r);
    r = tg_resp("*8\r\n:0\r\n:0\r\n:0\r\n"
                ":0\r\n:0\r\n:0\r\n:0\r\n$-1\r\n");
    assert_int_equal(tg_redis_parse_take(r, 1, &t, &noscript), -1);
    freeReplyObject(r);
    r = tg_resp("*8\r\n:0\r\n:0\r\n:0\r\n"
                ":0\r\n:0\r\n:0\r\n:0\r\n$1\r\n2\r\n");
    assert_int_equal(tg_redis_parse_take(r, 1, &t, &noscript), -1);
    freeReplyObject(r);
    r = tg_resp("*8\r\n:0\r\n:0\r\n:0\r\n"
                ":0\r\n:0\r\n:0\r\n:0\r\n*1\r\n:2\r\n");
    assert_int_equal(tg_redis_parse_take(r, 1, &t, &noscript), -1);
    freeReplyObject(r);

    /* short: one number missing, or only the head */

    r = tg_resp("*7\r\n:0\r\n:0\r\n:0\r\n:0\r\n:0\r\n:0\r\n:0\r\n");
    assert_int_equal(tg_redis_parse_take(r, 1, &t, &noscript), -1);
    freeReplyObject(r);
    r = tg_resp("*3\r\n:0\r\n:0\r\n:0\r\n");
    assert_int_equal(tg_redis_parse_take(r, 1, &t, &noscript), -1);
    freeReplyObject(r);

    /* a refusal past the keys, one without a kind, a kind unknown */

    r = tg_resp("*8\r\n:2\r\n:1\r\n:0\r\n:0\r\n:0\r\n:0\r\n:0\r\n:0\r\n");
    assert_int_equal(tg_redis_parse_take(r, 1, &t, &noscript), -1);
    freeReplyObject(r);
    r = tg_resp("*8\r\n:1\r\n:0\r\n:0\r\n:0\r\n:0\r\n:0\r\n:0\r\n:0\r\n");
    assert_int_equal(tg_redis_parse_take(r, 1, &t, &noscript), -1);
    freeReplyObject(r);
    r = tg_resp("*8\r\n:0\r\n:3\r\n:0\r\n:0\r\n:0\r\n:0\r\n:0\r\n:0\r\n");
    assert_int_equal(tg_redis_parse_take(r, 1, &t, &noscript), -1);
    freeReplyObject(r);
    r = tg_resp("*8\r\n:1\r\n:6\r\n:0\r\n:0\r\n:0\r\n:0\r\n:0\r\n:0\r\n");
    assert_int_equal(tg_redis_parse_take(r, 1, &t, &noscript), -1);
    freeReplyObject(r);

    /* negative, a string, a nil, a nested array where a number goes */

    r = tg_resp("*8\r\n:0\r\n:0\r\n:0\r\n:-1\r\n:0\r\n:0\r\n:0\r\n:0\r\n");
    assert_int_equal(tg_redis_parse_take(r, 1, &t, &noscript), -1);
    freeReplyObject(r);
    r = tg_resp("*8\r\n:0\r\n:0\r\n:0\r\n$1\r\n5\r\n:0\r\n:0\r\n:0\r\n"
                ":0\r\n");
    assert_int_equal(tg_redis_parse_take(r, 1, &t, &noscript), -1);
    freeReplyObject(r);
    r = tg_resp("*8\r\n:0\r\n:0\r\n:0\r\n$-1\r\n:0\r\n:0\r\n:0\r\n:0\r\n");
    assert_int_equal(tg_redis_parse_take(r, 1, &t, &noscript), -1);
    freeReplyObject(r);
    r = tg_resp("*8\r\n:0\r\n:0\r\n:0\r\n*0\r\n:0\r\n:0\r\n:0\r\n:0\r\n");
    assert_int_equal(tg_redis_parse_take(r, 1, &t, &noscript), -1);
    freeReplyObject(r);

    /* not an array, an empty one, a nil, NOSCRIPT, another error, none */

    r = tg_resp(":0\r\n");
    assert_int_equal(tg_redis_parse_take(r, 1, &t, &noscript), -1);
    freeReplyObject(r);
    r = tg_resp("*0\r\n");
    assert_int_equal(tg_redis_parse_take(r, 1, &t, &noscript), -1);
    freeReplyObject(r);
    r = tg_resp("*-1\r\n");
    assert_int_equal(tg_redis_parse_take(r, 1, &t, &noscript), -1);
    freeReplyObject(r);
    r = tg_resp("$-1\r\n");
    assert_int_equal(tg_redis_parse_take(r, 1, &t, &noscript), -1);
    freeReplyObject(r);
    r = tg_resp("-NOSCRIPT No matching script. Please use EVAL.\r\n");
    assert_int_equal(tg_redis_parse_take(r, 1, &t, &noscript), -1);
    assert_true(noscript);
    assert_true(tg_redis_noscript(r));
    freeReplyObject(r);
    r = tg_resp("-ERR user_script:1: Script attempted to access key\r\n");
    assert_int_equal(tg_redis_parse_take(r, 1, &t, &noscript), -1);
    assert_false(noscript);
    assert_false(tg_redis_noscript(r));
    freeReplyObject(r);
    assert_int_equal(tg_redis_parse_take(NULL, 1, &t, &noscript), -1);
    assert_false(tg_redis_noscript(NULL));
}


static void
test_redis_usage_replies(void **unused)
{
    char                  resp[64 * 1024], *p;
    size_t                i;
    redisReply           *r;
    tg_redis_usage_kind   u;

    (void) unused;

    static const char *const  good[] = {
        "requests:bob", "10", "tokens:bob", "150", "cost:bob", "5000000000",
        "requests:a:b:c", "1", "weird:x", "9"
    };
    static const char *const  odd[] = {
        "requests:x", "1x", "tokens:x", "", "cost:x",
        "99999999999999999999", "requests:", "4"
    };

    r = tg_resp_strings(good, 10);
    assert_int_equal(tg_redis_parse_usage(r, &u), 0);
    assert_int_equal(u.n, 2);
    assert_string_equal(u.entries[0].name, "bob");
    assert_int_equal(u.entries[0].requests, 10);
    assert_int_equal(u.entries[0].tokens, 150);
    assert_int_equal(u.entries[0].cost_nano, 5000000000ULL);
    assert_string_equal(u.entries[1].name, "a:b:c");    /* the first ':' */
    assert_int_equal(u.entries[1].requests, 1);
    assert_false(u.has_other);
    freeReplyObject(r);

    /* values that are no number, empty, too long: skipped */

    r = tg_resp_strings(odd, 8);
    assert_int_equal(tg_redis_parse_usage(r, &u), 0);
    assert_int_equal(u.n, 0);
    freeReplyObject(r);

    /* an empty hash (no key): nothing, fine */

    r = tg_resp("*0\r\n");
    assert_int_equal(tg_redis_parse_usage(r, &u), 0);
    assert_int_equal(u.n, 0);
    freeReplyObject(r);

    /* not pairs, not strings, not an array */

    r = tg_resp("*1\r\n$10\r\nrequests:x\r\n");
    assert_int_equal(tg_redis_parse_usage(r, &u), -1);
    freeReplyObject(r);
    r = tg_resp("*2\r\n:1\r\n$1\r\n1\r\n");
    assert_int_equal(tg_redis_parse_usage(r, &u), -1);
    freeReplyObject(r);
    r = tg_resp("-WRONGTYPE Operation against a key\r\n");
    assert_int_equal(tg_redis_parse_usage(r, &u), -1);
    freeReplyObject(r);
    assert_int_equal(tg_redis_parse_usage(NULL, &u), -1);

    /* more names than are kept: the rest add up in "_other" */

    p = resp;
    p += sprintf(p, "*%d\r\n", 2 * (TG_REDIS_USAGE_NAMES + 3));
    for (i = 0; i < TG_REDIS_USAGE_NAMES + 3; i++) {
        char  f[32];
        int   n = snprintf(f, sizeof(f), "requests:c%zu", i);
        p += sprintf(p, "$%d\r\n%s\r\n$1\r\n2\r\n", n, f);
    }
    r = tg_resp(resp);
    assert_int_equal(tg_redis_parse_usage(r, &u), 0);
    assert_int_equal(u.n, TG_REDIS_USAGE_NAMES);
    assert_true(u.has_other);
    assert_string_equal(u.other.name, "_other");
    assert_int_equal(u.other.requests, 6);
    freeReplyObject(r);
}


/* the marker's key: the batch's own hash tag, and only a real one */

static void
test_redis_batch_keys(void **unused)
{
    char  buf[64];

    (void) unused;

    assert_int_equal(tg_redis_batch_key(buf, sizeof(buf),
                                        "{tg:limits}:c|a|b", "n/1.2"),
                     strlen("{tg:limits}:batch:n/1.2"));
    assert_string_equal(buf, "{tg:limits}:batch:n/1.2");

    assert_true(tg_redis_batch_key(buf, sizeof(buf),
                                   "{tg:usage:2026-12-04}:client", "e") != 0);
    assert_string_equal(buf, "{tg:usage:2026-12-04}:batch:e");

    /* no tag, an empty one, an open one, too long for buf */
    assert_int_equal(tg_redis_batch_key(buf, sizeof(buf), "tg:limits", "e"),
                     0);
    assert_int_equal(tg_redis_batch_key(buf, sizeof(buf), "{}:x", "e"), 0);
    assert_int_equal(tg_redis_batch_key(buf, sizeof(buf), "{tg:x", "e"), 0);
    assert_int_equal(tg_redis_batch_key(buf, 12, "{tg:limits}:x", "e"), 0);
    assert_int_equal(tg_redis_batch_key(buf, sizeof(buf), "", "e"), 0);
}


static void
test_redis_batch_replies(void **unused)
{
    bool         applied;
    redisReply  *r;

    (void) unused;

    r = tg_resp("*2\r\n:1\r\n:64\r\n");
    applied = false;
    assert_int_equal(tg_redis_parse_batch(r, &applied), 0);
    assert_true(applied);
    freeReplyObject(r);

    r = tg_resp("*2\r\n:0\r\n:0\r\n");
    applied = true;
    assert_int_equal(tg_redis_parse_batch(r, &applied), 0);
    assert_false(applied);
    freeReplyObject(r);

    /* not 0 or 1, negative, wrong arity, wrong types, an error, none */
    r = tg_resp("*2\r\n:2\r\n:0\r\n");
    assert_int_equal(tg_redis_parse_batch(r, &applied), -1);
    freeReplyObject(r);
    r = tg_resp("*2\r\n:1\r\n:-1\r\n");
    assert_int_equal(tg_redis_parse_batch(r, &applied), -1);
    freeReplyObject(r);
    r = tg_resp("*3\r\n:1\r\n:1\r\n:1\r\n");
    assert_int_equal(tg_redis_parse_batch(r, &applied), -1);
    freeReplyObject(r);
    r = tg_resp("*2\r\n$1\r\n1\r\n:1\r\n");
    assert_int_equal(tg_redis_parse_batch(r, &applied), -1);
    freeReplyObject(r);
    r = tg_resp(":1\r\n");
    assert_int_equal(tg_redis_parse_batch(r, &applied), -1);
    freeReplyObject(r);
    r = tg_resp("-ERR Error running script\r\n");
    assert_int_equal(tg_redis_parse_batch(r, &applied), -1);
    freeReplyObject(r);
    assert_int_equal(tg_redis_parse_batch(NULL, &applied), -1);
}


/*
 * The numbers: one process's epoch, a sequence one more a batch; the
 * argv as Redis gets it; kept in order until answered; at most
 * TG_RECONCILE_KEPT; a key without a tag makes no batch.
 */

static void
test_reconcile_batch_numbers(void **unused)
{
    size_t             i;
    tg_batch          *b1, *b2, *b3, *b;
    tg_reconcile      *rc;
    tg_reconcile_view  v;
    const char        *keys[2] = { "{tg:limits}:c|p|a", "{tg:limits}:t|x" };
    const char        *args[3] = { "7", "", "9" };
    const char        *bad[1] = { "no-tag" };

    (void) unused;

    rc = tg_reconcile_new("node-a", 4242, 1733300000123ULL, "tg", "addr");
    assert_non_null(rc);
    assert_string_equal(rc->epoch, "node-a/4242.1733300000123");

    tg_reconcile_view_of(rc, &v);
    assert_int_equal(v.pending, 0);
    assert_int_equal(v.sent, 0);
    assert_int_equal(v.usage_pending, 0);

    b1 = tg_reconcile_batch(rc, TG_BATCH_LIMITS, "return 1", 2, keys, 3,
                            args);
    assert_non_null(b1);
    assert_int_equal(b1->seq, 1);

    /* EVAL script numkeys marker keys... seq args... */
    assert_int_equal(b1->argc, 4 + 2 + 1 + 3);
    assert_string_equal(b1->argv[0], "EVAL");
    assert_string_equal(b1->argv[1], "return 1");
    assert_string_equal(b1->argv[2], "3");
    assert_string_equal(b1->argv[3],
                        "{tg:limits}:batch:node-a/4242.1733300000123");
    assert_string_equal(b1->argv[4], keys[0]);
    assert_string_equal(b1->argv[5], keys[1]);
    assert_string_equal(b1->argv[6], "1");
    assert_string_equal(b1->argv[7], "7");
    assert_string_equal(b1->argv[8], "");      /* an empty arg stays one */
    assert_int_equal(b1->argvlen[8], 0);
    assert_string_equal(b1->argv[9], "9");
    assert_false(b1->inflight);
    assert_false(b1->sent);

    /* a key without a hash tag: no marker, no batch, no number used */
    assert_null(tg_reconcile_batch(rc, TG_BATCH_USAGE, "x", 1, bad, 0,
                                   NULL));
    assert_null(tg_reconcile_batch(rc, TG_BATCH_USAGE, "x", 0, keys, 0,
                                   NULL));

    b2 = tg_reconcile_batch(rc, TG_BATCH_USAGE, "x", 1, keys, 0, NULL);
    b3 = tg_reconcile_batch(rc, TG_BATCH_LIMITS, "x", 1, keys, 0, NULL);
    assert_non_null(b2);
    assert_non_null(b3);
    assert_int_equal(b2->seq, 2);
    assert_int_equal(b3->seq, 3);
    assert_string_equal(b3->argv[5], "3");
    assert_ptr_equal(rc->head, b1);
    assert_ptr_equal(rc->tail, b3);
    assert_int_equal(rc->kept, 3);

    /* answered out of the middle, then the last: the order stays */
    tg_reconcile_done(rc, b2, false);
    assert_ptr_equal(rc->head, b1);
    assert_ptr_equal(b1->next, b3);
    tg_reconcile_done(rc, b3, true);
    assert_ptr_equal(rc->tail, b1);
    assert_null(b1->next);

    tg_reconcile_view_of(rc, &v);
    assert_int_equal(v.pending, 1);
    assert_int_equal(v.applied, 1);
    assert_int_equal(v.skipped, 1);

    /* numbers are never given twice, even after answers */
    b = tg_reconcile_batch(rc, TG_BATCH_LIMITS, "x", 1, keys, 0, NULL);
    assert_int_equal(b->seq, 4);
    assert_ptr_equal(rc->tail, b);

    /* the bound: TG_RECONCILE_KEPT, then none until one is answered */
    for (i = rc->kept; i < TG_RECONCILE_KEPT; i++) {
        assert_non_null(tg_reconcile_batch(rc, TG_BATCH_USAGE, "x", 1, keys,
                                           0, NULL));
    }
    assert_int_equal(rc->kept, TG_RECONCILE_KEPT);
    assert_null(tg_reconcile_batch(rc, TG_BATCH_USAGE, "x", 1, keys, 0,
                                   NULL));
    tg_reconcile_done(rc, b1, true);
    b = tg_reconcile_batch(rc, TG_BATCH_USAGE, "x", 1, keys, 0, NULL);
    assert_non_null(b);
    assert_int_equal(b->seq, 4 + TG_RECONCILE_KEPT - 1);

    tg_reconcile_free(rc);

    /* another process of the same node: another epoch, numbers anew */
    rc = tg_reconcile_new("node-a", 4243, 1733300000123ULL, "tg", "addr");
    assert_string_equal(rc->epoch, "node-a/4243.1733300000123");
    b = tg_reconcile_batch(rc, TG_BATCH_LIMITS, "x", 1, keys, 0, NULL);
    assert_int_equal(b->seq, 1);
    tg_reconcile_free(rc);

    tg_reconcile_free(NULL);
}


/*
 * A context that goes nowhere, not on a loop: commands are queued (into
 * its buffer, their callbacks in its list) until it is freed, which runs
 * each callback with no reply; with REDIS_DISCONNECTING set, as when out
 * of memory, a command is refused.
 */

/*
 * hiredis's own step that runs the callbacks of the replies its reader
 * holds (what redisAsyncHandleRead does after reading the socket): not in
 * its header, exported by the library
 */
void redisProcessCallbacks(redisAsyncContext *ac);


static redisAsyncContext *
test_context(void)
{
    redisAsyncContext  *ac;

    ac = redisAsyncConnectUnix("/nonexistent/tailgate-test.sock");
    assert_non_null(ac);

    return ac;
}


static tg_correction
test_correction(const char *key, uint32_t tpm, int64_t tokens,
    uint64_t cost, uint32_t day);


/*
 * A batch whose send failed holds the newer ones behind it: sent before
 * it, a newer number of its hash tag would have Redis skip it as not
 * newer.  The tick sends it again, then them, in their order.
 */

static void
test_reconcile_send_failed(void **unused)
{
    tg_batch           *b1, *b2;
    tg_reconcile       *rc;
    tg_correction       c;
    redisAsyncContext  *ac;

    (void) unused;

    rc = tg_reconcile_new("node-a", 1, 2, "tg", "addr");
    ac = test_context();

    ac->c.flags |= REDIS_DISCONNECTING;
    c = test_correction("{tg:limits}:c|p|a", 60, 5, 0, 20791);
    assert_int_equal(tg_reconcile_correct(rc, ac, &c), 0);
    ac->c.flags &= ~REDIS_DISCONNECTING;

    b1 = rc->head;
    assert_non_null(b1);
    assert_false(b1->inflight);
    assert_int_equal(rc->report_inflight, 0);

    c = test_correction("{tg:limits}:c|p|b", 60, 7, 0, 20791);
    assert_int_equal(tg_reconcile_correct(rc, ac, &c), 0);
    b2 = rc->tail;
    assert_ptr_not_equal(b1, b2);
    assert_true(b2->seq > b1->seq);
    assert_false(b2->inflight);          /* held behind the first */
    assert_null(ac->replies.head);

    tg_reconcile_retry(rc, ac);
    assert_true(b1->inflight);
    assert_true(b2->inflight);
    assert_ptr_equal(ac->replies.head->privdata, b1);
    assert_ptr_equal(ac->replies.head->next->privdata, b2);

    /* nothing more to send: the tick sends nothing twice */
    tg_reconcile_retry(rc, ac);
    assert_ptr_equal(ac->replies.tail->privdata, b2);

    /* no reply (the connection gone): kept, for the next connection */
    redisAsyncFree(ac);
    assert_false(b1->inflight);
    assert_int_equal(rc->kept, 2);

    tg_reconcile_free(rc);
}


/*
 * A reconcile's batches wait for the state file without their tallies:
 * asked for off the loop, none leaves (nor one made after them) until it
 * is written; a reconcile with nothing for the file sends at once.
 */

static int  tg_persists;

static void
count_persist(void *arg)
{
    (void) arg;
    tg_persists++;
}


static void
test_reconcile_held(void **unused)
{
    tg_batch           *b1, *b2;
    tg_counter         *c;
    tg_reconcile       *rc;
    tg_correction       corr;
    tg_limit_store     *s;
    redisAsyncContext  *ac;
    static const char   ck[] = "c\037agents\037alice";

    (void) unused;

    rc = tg_reconcile_new("node-a", 1, 2, "tg", "addr");
    s = tg_limit_store_memory();
    s->nodes = 2;
    s->persist = count_persist;
    tg_limit_store_clock(s);
    c = s->ops->counter(s, ck, sizeof(ck) - 1);
    tg_counter_away_spend(c, 2500, s->wall_s);
    s->ops->unref(s, c);

    ac = test_context();
    tg_persists = 0;
    tg_reconcile_send(rc, ac, s);

    assert_int_equal(tg_persists, 1);
    assert_true(rc->holding);
    b1 = rc->head;
    assert_non_null(b1);
    assert_int_equal(b1->kind, TG_BATCH_LIMITS);
    assert_false(b1->inflight);
    assert_null(ac->replies.head);

    /* a REPORT's correction meanwhile: made, held behind */
    corr = test_correction("{tg:limits}:c|p|a", 60, 5, 0, 20791);
    assert_int_equal(tg_reconcile_correct(rc, ac, &corr), 0);
    b2 = rc->tail;
    assert_ptr_not_equal(b1, b2);
    assert_false(b2->inflight);

    /* written: both go, in their order */
    tg_reconcile_persisted(rc, ac);
    assert_false(rc->holding);
    assert_true(b1->inflight && b2->inflight);
    assert_ptr_equal(ac->replies.head->privdata, b1);
    assert_ptr_equal(ac->replies.head->next->privdata, b2);

    /* nothing more for the file: no write asked, nothing held */
    redisAsyncFree(ac);
    ac = test_context();
    tg_reconcile_send(rc, ac, s);
    assert_int_equal(tg_persists, 1);
    assert_false(rc->holding);
    assert_true(b1->inflight);

    redisAsyncFree(ac);
    tg_reconcile_free(rc);
    s->ops->free(s);
}


/*
 * A correction batch Redis refuses (an error reply) is dropped, and the
 * status counts each of its counters' corrections dropped, as a full
 * table counts each it refuses; a batch applied is out of the kept ones.
 */

static void
test_reconcile_refused_counts(void **unused)
{
    size_t              i;
    char                key[64];
    tg_reconcile       *rc;
    tg_correction       c;
    tg_reconcile_view   v;
    redisAsyncContext  *ac;

    (void) unused;

    rc = tg_reconcile_new("node-a", 1, 2, "tg", "addr");
    ac = test_context();

    /* the first goes at once; the next 3 wait behind it, then go as one */
    for (i = 0; i < 4; i++) {
        snprintf(key, sizeof(key), "{tg:limits}:c|p|%zu", i);
        c = test_correction(key, 60, 5, 0, 20791);
        assert_int_equal(tg_reconcile_correct(rc, ac, &c), 0);
    }
    assert_int_equal(rc->kept, 1);
    assert_int_equal(rc->ncorr, 3);

    /* the first answered: applied; the rest go as one batch of 3 */
    ac->data = rc;                      /* its flush after the reply */
    assert_int_equal(redisReaderFeed(ac->c.reader, "*2\r\n:1\r\n:1\r\n",
                                     12), REDIS_OK);
    redisProcessCallbacks(ac);
    assert_int_equal(rc->kept, 1);
    assert_int_equal(rc->ncorr, 0);
    assert_int_equal(rc->stats.corr_applied, 1);

    assert_int_equal(redisReaderFeed(ac->c.reader,
                                     "-ERR Error running script\r\n", 27),
                     REDIS_OK);
    redisProcessCallbacks(ac);

    tg_reconcile_view_of(rc, &v);
    assert_int_equal(v.pending, 0);
    assert_int_equal(v.dropped, 1);
    assert_int_equal(v.corr_dropped, 3);

    ac->data = NULL;
    redisAsyncFree(ac);
    tg_reconcile_free(rc);
}


/*
 * The tallies are cleared when their batch is made, not before: with no
 * room for one (TG_RECONCILE_KEPT kept, as when out of memory) they stay
 * for the next reconcile, whole.
 */

static void
test_reconcile_tallies_kept(void **unused)
{
    size_t              i;
    tg_counter         *c;
    tg_reconcile       *rc;
    tg_limit_store     *s;
    tg_reconcile_part   part;
    redisAsyncContext  *ac;
    const char         *keys[1] = { "{tg:limits}:c|p|a" };
    static const char   ck[] = "c\037agents\037alice";

    (void) unused;

    rc = tg_reconcile_new("node-a", 1, 2, "tg", "addr");
    s = tg_limit_store_memory();
    s->nodes = 2;
    tg_limit_store_clock(s);
    c = s->ops->counter(s, ck, sizeof(ck) - 1);
    tg_counter_away_spend(c, 2500, s->wall_s);
    s->ops->unref(s, c);

    for (i = 0; i < TG_RECONCILE_KEPT; i++) {
        assert_non_null(tg_reconcile_batch(rc, TG_BATCH_USAGE, "x", 1, keys,
                                           0, NULL));
    }

    ac = test_context();
    tg_reconcile_send(rc, ac, s);

    c = s->ops->counter(s, ck, sizeof(ck) - 1);
    assert_true(tg_counter_reconcile(c, s->now_ms, s->wall_s, &part));
    assert_int_equal(part.day_spent, 2500);
    assert_int_equal(rc->kept, TG_RECONCILE_KEPT);

    /* the connection goes (the batches kept, none in flight); room
       again: sent, and cleared then */
    redisAsyncFree(ac);
    tg_reconcile_done(rc, rc->head, true);
    ac = test_context();
    tg_reconcile_send(rc, ac, s);
    assert_false(tg_counter_reconcile(c, s->now_ms, s->wall_s, &part));
    assert_int_equal(rc->tail->kind, TG_BATCH_LIMITS);
    s->ops->unref(s, c);

    redisAsyncFree(ac);
    tg_reconcile_free(rc);
    s->ops->free(s);
}


/*
 * What waits, across a restart (redis_waiting.h): the kept batches copied
 * whole, and restored in a new process first in line, each with its
 * epoch and number (so that one Redis applied is skipped, not counted
 * again), its script named by its kind; the corrections and the usage
 * too, but only while there is no connection (with one they leave within
 * a round trip: a copy of them would count them twice).
 */

static void
test_reconcile_restore(void **unused)
{
    int                i;
    tg_batch          *b, *r;
    tg_waiting         w;
    tg_reconcile      *rc, *rc2;
    tg_correction      c;
    const char        *keys[2] = { "{tg:limits}:c|p|a", "{tg:limits}:t|x" };
    const char        *args[2] = { "7", "" };
    const char        *names[4] = { "alice", "", "r", "p" };
    uint64_t           waits = 0;

    (void) unused;

    rc = tg_reconcile_new("node-a", 4242, 1733300000123ULL, "tg", "addr");
    assert_non_null(rc);
    rc->waits = &waits;

    b = tg_reconcile_batch(rc, TG_BATCH_LIMITS, "return 1", 2, keys, 2,
                           args);
    assert_non_null(b);
    assert_non_null(tg_reconcile_batch(rc, TG_BATCH_REPORT, "x", 1, keys, 0,
                                       NULL));
    assert_true(waits >= 2);

    memset(&c, 0, sizeof(c));
    snprintf(c.key, sizeof(c.key), "{tg:limits}:c|p|a");
    c.tokens = -3;
    c.cost_nano = 7;
    c.day = 20791;
    assert_int_equal(tg_reconcile_correct(rc, NULL, &c), 0);
    tg_reconcile_usage(rc, NULL, 20791 * 86400LL, names, 1, 10, 5);

    assert_int_equal(tg_reconcile_copy(rc, &w), 0);
    assert_int_equal(w.nbatches, 2);
    assert_int_equal(w.batches[0].argc, b->argc - 2);
    assert_int_equal(w.ncorr, 1);
    assert_int_equal(w.nusage, 3);

    /* a new process: its own epoch, the old batches first, as they were */
    rc2 = tg_reconcile_new("node-a", 5151, 1733300999000ULL, "tg", "addr");
    assert_non_null(rc2);
    tg_reconcile_restore(rc2, &w);
    tg_waiting_free(&w);

    assert_int_equal(rc2->kept, 2);
    r = rc2->head;
    assert_int_equal(r->seq, 1);
    assert_int_equal(r->kind, TG_BATCH_LIMITS);
    assert_true(r->sent);
    assert_false(r->inflight);
    assert_int_equal(r->argc, b->argc);
    assert_string_equal(r->argv[0], "EVAL");
    /* the script of its kind, not what the first process was given */
    assert_string_not_equal(r->argv[1], "return 1");
    assert_non_null(strstr(r->argv[1], "redis.call('SET', KEYS[1]"));
    for (i = 2; i < b->argc; i++) {
        assert_string_equal(r->argv[i], b->argv[i]);
        assert_int_equal(r->argvlen[i], b->argvlen[i]);
    }
    assert_string_equal(r->argv[3],
                        "{tg:limits}:batch:node-a/4242.1733300000123");
    assert_int_equal(r->next->seq, 2);
    assert_int_equal(r->next->kind, TG_BATCH_REPORT);

    assert_int_equal(rc2->ncorr, 1);
    assert_int_equal(rc2->corr[0].tokens, -3);
    assert_int_equal(rc2->usage.n, 3);

    /* its own numbers start anew, behind the restored */
    b = tg_reconcile_batch(rc2, TG_BATCH_LIMITS, "x", 1, keys, 0, NULL);
    assert_int_equal(b->seq, 1);
    assert_string_equal(b->argv[3],
                        "{tg:limits}:batch:node-a/5151.1733300999000");
    assert_ptr_equal(rc2->tail, b);

    /* connected: the tables are Redis's, the batches still the file's */
    rc->connected = true;
    assert_int_equal(tg_reconcile_copy(rc, &w), 0);
    assert_int_equal(w.nbatches, 2);
    assert_int_equal(w.ncorr + w.nusage, 0);
    tg_waiting_free(&w);

    waits = 0;
    tg_reconcile_alone(rc);
    assert_false(rc->connected);
    assert_int_equal(waits, 1);
    assert_int_equal(tg_reconcile_copy(rc, &w), 0);
    assert_int_equal(w.ncorr, 1);
    tg_waiting_free(&w);

    /* more than it keeps: dropped and counted */
    memset(&w, 0, sizeof(w));
    tg_reconcile_free(rc2);
    rc2 = tg_reconcile_new("node-a", 5152, 1, "tg", "addr");
    for (i = 0; i < TG_RECONCILE_KEPT; i++) {
        assert_non_null(tg_reconcile_batch(rc2, TG_BATCH_USAGE, "x", 1, keys,
                                           0, NULL));
    }
    assert_int_equal(tg_reconcile_copy(rc, &w), 0);
    tg_reconcile_restore(rc2, &w);
    assert_int_equal(rc2->kept, TG_RECONCILE_KEPT);
    assert_int_equal(rc2->stats.dropped, 2);
    tg_waiting_free(&w);

    tg_reconcile_free(rc);
    tg_reconcile_free(rc2);
}


/*
 * A REPORT's corrections: summed per counter, day and month while they
 * wait; made into numbered batches of 64 counters, 7 numbers each; the
 * table's bound; a negative tokens' change (given back) kept signed.
 */

static tg_correction
test_correction(const char *key, uint32_t tpm, int64_t tokens,
    uint64_t cost, uint32_t day)
{
    tg_correction  c;

    memset(&c, 0, sizeof(c));
    snprintf(c.key, sizeof(c.key), "%s", key);
    c.tpm = tpm;
    c.tokens = tokens;
    c.cost_nano = cost;
    c.day = day;
    c.month = 683;
    c.budget_day_nano = 10000000000ULL;
    return c;
}


static void
test_reconcile_corrections(void **unused)
{
    size_t             i;
    char               key[64];
    tg_batch          *b;
    tg_reconcile      *rc;
    tg_correction      c;
    tg_reconcile_view  v;

    (void) unused;

    rc = tg_reconcile_new("node-a", 7, 1733300000123ULL, "tg", "addr");
    assert_non_null(rc);

    /* none waiting: no batch, no number used */
    assert_null(tg_reconcile_corrections(rc));

    c = test_correction("{tg:limits}:c|p|a", 60, 600, 302000000000ULL,
                        20791);
    assert_int_equal(tg_reconcile_correct(rc, NULL, &c), 0);
    /* the same counter and day: summed, the longest budget kept */
    c = test_correction("{tg:limits}:c|p|a", 60, -10, 5, 20791);
    c.budget_day_nano = 1;
    c.budget_month_nano = 99;
    assert_int_equal(tg_reconcile_correct(rc, NULL, &c), 0);
    /* another day of it, another counter (no tokens: tpm 0) */
    c = test_correction("{tg:limits}:c|p|a", 60, 1, 1, 20792);
    assert_int_equal(tg_reconcile_correct(rc, NULL, &c), 0);
    c = test_correction("{tg:limits}:t|p|x", 0, 0, 7, 20791);
    assert_int_equal(tg_reconcile_correct(rc, NULL, &c), 0);

    tg_reconcile_view_of(rc, &v);
    assert_int_equal(v.corr_waiting, 3);
    assert_int_equal(v.pending, 0);
    assert_int_equal(v.corr_sent, 0);

    b = tg_reconcile_corrections(rc);
    assert_non_null(b);
    assert_int_equal(b->kind, TG_BATCH_REPORT);
    assert_int_equal(b->seq, 1);

    /* EVAL script numkeys marker keys... seq, 7 per key */
    assert_int_equal(b->argc, 4 + 3 + 1 + 3 * 7);
    assert_string_equal(b->argv[0], "EVAL");
    assert_non_null(strstr(b->argv[1], "if dy >= day"));
    assert_string_equal(b->argv[2], "4");
    assert_string_equal(b->argv[3], "{tg:limits}:batch:node-a/7.1733300000123");
    assert_string_equal(b->argv[4], "{tg:limits}:c|p|a");
    assert_string_equal(b->argv[5], "{tg:limits}:c|p|a");
    assert_string_equal(b->argv[6], "{tg:limits}:t|p|x");
    assert_string_equal(b->argv[7], "1");
    assert_string_equal(b->argv[8], "60");
    assert_string_equal(b->argv[9], "590");            /* 600 - 10 */
    assert_string_equal(b->argv[10], "302000000005");
    assert_string_equal(b->argv[11], "20791");
    assert_string_equal(b->argv[12], "683");
    assert_string_equal(b->argv[13], "10000000000");
    assert_string_equal(b->argv[14], "99");
    assert_string_equal(b->argv[16], "1");             /* the next day */
    assert_string_equal(b->argv[18], "20792");
    assert_string_equal(b->argv[22], "0");             /* no tpm */
    assert_string_equal(b->argv[23], "0");
    assert_string_equal(b->argv[24], "7");

    tg_reconcile_view_of(rc, &v);
    assert_int_equal(v.corr_waiting, 0);
    assert_int_equal(v.pending, 1);
    assert_null(tg_reconcile_corrections(rc));

    /* given back: a negative change stays negative */
    c = test_correction("{tg:limits}:c|p|a", 60, -25, 0, 20791);
    assert_int_equal(tg_reconcile_correct(rc, NULL, &c), 0);

    tg_reconcile_done(rc, b, true);
    tg_reconcile_view_of(rc, &v);
    assert_int_equal(v.corr_applied, 1);
    assert_int_equal(v.applied, 1);

    b = tg_reconcile_corrections(rc);
    assert_int_equal(b->seq, 2);
    assert_string_equal(b->argv[6], "60");
    assert_string_equal(b->argv[7], "-25");
    tg_reconcile_done(rc, b, false);
    tg_reconcile_view_of(rc, &v);
    assert_int_equal(v.corr_skipped, 1);

    /* 65 counters: a batch of 64, then one of the last */
    for (i = 0; i < 65; i++) {
        snprintf(key, sizeof(key), "{tg:limits}:c|p|n%zu", i);
        c = test_correction(key, 0, 0, 1, 20791);
        assert_int_equal(tg_reconcile_correct(rc, NULL, &c), 0);
    }
    b = tg_reconcile_corrections(rc);
    assert_string_equal(b->argv[2], "65");
    assert_string_equal(b->argv[4], "{tg:limits}:c|p|n0");
    tg_reconcile_done(rc, b, true);
    b = tg_reconcile_corrections(rc);
    assert_string_equal(b->argv[2], "2");
    assert_string_equal(b->argv[4], "{tg:limits}:c|p|n64");
    tg_reconcile_done(rc, b, true);

    /* the table's bound: counted, the rest kept */
    for (i = 0; i < TG_RECONCILE_CORRECTIONS; i++) {
        snprintf(key, sizeof(key), "{tg:limits}:c|p|m%zu", i);
        c = test_correction(key, 0, 0, 1, 20791);
        assert_int_equal(tg_reconcile_correct(rc, NULL, &c), 0);
    }
    c = test_correction("{tg:limits}:c|p|one-more", 0, 0, 1, 20791);
    assert_int_equal(tg_reconcile_correct(rc, NULL, &c), -1);
    /* one waiting already still sums */
    c = test_correction("{tg:limits}:c|p|m0", 0, 0, 1, 20791);
    assert_int_equal(tg_reconcile_correct(rc, NULL, &c), 0);
    tg_reconcile_view_of(rc, &v);
    assert_int_equal(v.corr_waiting, TG_RECONCILE_CORRECTIONS);
    assert_int_equal(v.corr_dropped, 1);

    /* a key without a hash tag: no batch; its counters dropped, counted */
    tg_reconcile_free(rc);
    rc = tg_reconcile_new("node-a", 8, 1, "tg", "addr");
    c = test_correction("no-tag", 0, 0, 1, 20791);
    assert_int_equal(tg_reconcile_correct(rc, NULL, &c), 0);
    assert_null(tg_reconcile_corrections(rc));
    tg_reconcile_view_of(rc, &v);
    assert_int_equal(v.corr_waiting, 0);
    assert_int_equal(v.corr_dropped, 1);
    assert_int_equal(v.dropped, 1);

    tg_reconcile_free(rc);
}


/* the usage table: empty, sums of duplicates, by day, full, odd names */

static void
test_usage_pending_table(void **unused)
{
    size_t                  n, i;
    char                    name[TG_USAGE_PENDING_NAME + 2];
    tg_usage_pending        t;
    tg_usage_pending_entry  out[8];

    (void) unused;

    assert_int_equal(tg_usage_pending_init(&t, 0), -1);
    assert_int_equal(tg_usage_pending_init(&t, TG_USAGE_PENDING_MAX + 1),
                     -1);
    assert_int_equal(tg_usage_pending_init(&t, 4), 0);

    /* empty: nothing to take, and nothing taken from nothing */
    assert_int_equal(tg_usage_pending_take(&t, out, 8), 0);
    assert_int_equal(tg_usage_pending_take(&t, out, 0), 0);

    /* the same name twice is one entry, summed */
    assert_int_equal(tg_usage_pending_add(&t, 20000, 0, "alice", 5, 1, 10,
                                          100), 0);
    assert_int_equal(tg_usage_pending_add(&t, 20000, 0, "alice", 5, 2, 20,
                                          200), 0);
    assert_int_equal(t.n, 1);

    /* another kind, another day, another name of the same prefix */
    assert_int_equal(tg_usage_pending_add(&t, 20000, 3, "alice", 5, 1, 0,
                                          0), 0);
    assert_int_equal(tg_usage_pending_add(&t, 20001, 0, "alice", 5, 1, 0,
                                          0), 0);
    assert_int_equal(tg_usage_pending_add(&t, 20000, 0, "alic", 4, 1, 0, 0),
                     0);
    assert_int_equal(t.n, 4);

    /* full: a new name is dropped and counted; known ones still add */
    assert_int_equal(tg_usage_pending_add(&t, 20000, 1, "bob", 3, 1, 0, 0),
                     -1);
    assert_int_equal(t.dropped, 1);
    assert_int_equal(tg_usage_pending_add(&t, 20000, 0, "alice", 5, 4, 0, 0),
                     0);
    assert_int_equal(t.n, 4);

    /* odd: empty, too long, no name, an unknown kind (not "dropped") */
    memset(name, 'x', sizeof(name));
    assert_int_equal(tg_usage_pending_add(&t, 20000, 0, "", 0, 1, 0, 0), -1);
    assert_int_equal(tg_usage_pending_add(&t, 20000, 0, name,
                                          TG_USAGE_PENDING_NAME + 1, 1, 0,
                                          0), -1);
    assert_int_equal(tg_usage_pending_add(&t, 20000, 0, NULL, 3, 1, 0, 0),
                     -1);
    assert_int_equal(tg_usage_pending_add(&t, 20000, 4, "a", 1, 1, 0, 0),
                     -1);
    assert_int_equal(t.dropped, 1);

    /* taken: one day only (the first's), at most max */
    n = tg_usage_pending_take(&t, out, 2);
    assert_int_equal(n, 2);
    for (i = 0; i < n; i++) {
        assert_int_equal(out[i].day, 20000);
    }
    assert_string_equal(out[0].name, "alice");
    assert_int_equal(out[0].kind, 0);
    assert_int_equal(out[0].requests, 7);
    assert_int_equal(out[0].tokens, 30);
    assert_int_equal(out[0].cost_nano, 300);
    assert_int_equal(t.n, 2);

    /* what stayed is found again: its name adds, not a duplicate */
    assert_int_equal(tg_usage_pending_add(&t, 20001, 0, "alice", 5, 1, 0,
                                          0), 0);
    assert_int_equal(tg_usage_pending_add(&t, 20000, 0, "alic", 4, 1, 0, 0),
                     0);
    assert_int_equal(t.n, 2);

    n = tg_usage_pending_take(&t, out, 8);
    assert_int_equal(n, 1);
    assert_int_equal(out[0].day, 20001);
    assert_int_equal(out[0].requests, 2);
    n = tg_usage_pending_take(&t, out, 8);
    assert_int_equal(n, 1);
    assert_string_equal(out[0].name, "alic");
    assert_int_equal(out[0].requests, 2);
    assert_int_equal(tg_usage_pending_take(&t, out, 8), 0);

    /* room again once taken; the longest name fits, NUL-terminated */
    assert_int_equal(tg_usage_pending_add(&t, 20000, 1, name,
                                          TG_USAGE_PENDING_NAME, 1, 0, 0),
                     0);
    n = tg_usage_pending_take(&t, out, 8);
    assert_int_equal(n, 1);
    assert_int_equal(strlen(out[0].name), TG_USAGE_PENDING_NAME);

    /* sums saturate rather than wrap */
    assert_int_equal(tg_usage_pending_add(&t, 1, 2, "r", 1, UINT64_MAX, 0,
                                          0), 0);
    assert_int_equal(tg_usage_pending_add(&t, 1, 2, "r", 1, 5, 0, 0), 0);
    n = tg_usage_pending_take(&t, out, 8);
    assert_true(out[0].requests == UINT64_MAX);

    tg_usage_pending_free(&t);
    tg_usage_pending_free(&t);          /* twice: harmless */
    assert_int_equal(tg_usage_pending_add(&t, 1, 0, "a", 1, 1, 0, 0), -1);
}


/* the real bound: 4096 names, the next one dropped */

static void
test_usage_pending_full(void **unused)
{
    char              name[32];
    size_t            i;
    tg_usage_pending  t;

    (void) unused;

    assert_int_equal(tg_usage_pending_init(&t, TG_USAGE_PENDING_MAX), 0);

    for (i = 0; i < TG_USAGE_PENDING_MAX; i++) {
        snprintf(name, sizeof(name), "client-%zu", i);
        assert_int_equal(tg_usage_pending_add(&t, 20000, 0, name,
                                              strlen(name), 1, 0, 0), 0);
    }
    assert_int_equal(t.n, TG_USAGE_PENDING_MAX);

    assert_int_equal(tg_usage_pending_add(&t, 20000, 0, "one-more", 8, 1, 0,
                                          0), -1);
    assert_int_equal(t.dropped, 1);

    /* every one of them is still found */
    for (i = 0; i < TG_USAGE_PENDING_MAX; i++) {
        snprintf(name, sizeof(name), "client-%zu", i);
        assert_int_equal(tg_usage_pending_add(&t, 20000, 0, name,
                                              strlen(name), 1, 0, 0), 0);
    }
    assert_int_equal(t.n, TG_USAGE_PENDING_MAX);
    assert_int_equal(t.dropped, 1);

    tg_usage_pending_free(&t);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_redis_block),
        cmocka_unit_test(test_redis_refusals),
        cmocka_unit_test(test_redis_keys),
        cmocka_unit_test(test_redis_share),
        cmocka_unit_test(test_redis_replies),
        cmocka_unit_test(test_redis_limit_keys),
        cmocka_unit_test(test_redis_take_replies),
        cmocka_unit_test(test_redis_usage_replies),
        cmocka_unit_test(test_redis_batch_keys),
        cmocka_unit_test(test_redis_batch_replies),
        cmocka_unit_test(test_reconcile_batch_numbers),
        cmocka_unit_test(test_reconcile_restore),
        cmocka_unit_test(test_reconcile_send_failed),
        cmocka_unit_test(test_reconcile_tallies_kept),
        cmocka_unit_test(test_reconcile_refused_counts),
        cmocka_unit_test(test_reconcile_held),
        cmocka_unit_test(test_reconcile_corrections),
        cmocka_unit_test(test_usage_pending_table),
        cmocka_unit_test(test_usage_pending_full),
    };

    return cmocka_run_group_tests_name("redis", tests, NULL, NULL);
}
