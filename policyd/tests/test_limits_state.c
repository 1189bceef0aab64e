/*
 * The limits' state file (limits_state.c): the budgets written and read
 * back, and every way a file is refused whole (missing, empty, truncated
 * at every byte, a foreign version, numbers too large, a key twice), a
 * day or month that is over, counters of profiles the policy lost, the
 * atomic write, and how long a save of 10000 counters takes.
 */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "fnv.h"
#include "limits_admit.h"
#include "limits_state.h"
#include "policy.h"
#include "tg_test.h"


#define DAY_S  86400
#define Z8  " 0 0 0 0 0 0 0 0"        /* own_budget, away_budget: none */
#define PEEK(s, k)  (s)->ops->peek((s), (k), sizeof(k) - 1)
/* 2026-12-04 12:00 UTC: a day and month away from their ends */
#define NOW_S  ((int64_t) 1796385600)

static const char  tg_state_policy[] =
    "{ 'listen': { 'path': '/x' },"
    "  'providers': { 'p': { 'upstream': 'u', 'zone': 'local',"
    "    'endpoints': ['chat'] } },"
    "  'routes': { 'r': { 'steps': [ { 'provider': 'p', 'model': 'm' } ] } },"
    "  'limits': { 'profiles': {"
    "    'agents': { 'budget': { 'day': 1, 'month': 10 } } } } }";


static tg_counter *
spend(tg_limit_store *s, const char *key, uint64_t cost, int64_t wall_s)
{
    tg_counter  *c;

    c = s->ops->counter(s, key, strlen(key));
    assert_non_null(c);
    s->wall_s = wall_s;
    s->ops->spend(s, c, cost);
    s->ops->unref(s, c);

    return c;
}


/* a file of these lines, with a right end line */

static char *
file_of(const char *body, size_t lines)
{
    char    *t;
    size_t   n = strlen(body);

    t = malloc(n + 64);
    assert_non_null(t);
    memcpy(t, body, n);
    snprintf(t + n, 64, "end %zu %016llx\n", lines,
             (unsigned long long) tg_fnv1a(TG_FNV_OFFSET, body, n));

    return t;
}


static int
parse(tg_limit_store *s, const tg_policy *p, const char *t, size_t len,
    char *why)
{
    size_t  restored;

    return tg_limits_state_parse(s, p, t, len, NOW_S, NULL, &restored, why,
                                 160);
}


static void
test_state_round_trip(void **unused)
{
    char             *text, why[160];
    size_t            len, restored;
    tg_policy        *p;
    tg_limit_store   *a, *b;
    const tg_counter *c;

    (void) unused;

    p = tg_test_policy(tg_state_policy);
    a = tg_limit_store_memory();
    b = tg_limit_store_memory();

    spend(a, "c\037agents\037alice", 700000000000ull, NOW_S);
    spend(a, "c\037agents\037bob", 5, NOW_S - DAY_S);  /* yesterday */
    spend(a, "c\037gone\037carol", 9, NOW_S);           /* no profile */
    spend(a, "p\037p", 11, NOW_S);                      /* a provider */
    (void) a->ops->counter(a, "c\037agents\037idle", 13);

    assert_int_equal(tg_limits_state_format(a, NOW_S, &text, &len), 0);
    assert_int_equal(tg_limits_state_parse(b, p, text, len, NOW_S, NULL,
                                           &restored, why, sizeof(why)), 0);

    /* idle is not written; carol's profile is gone */
    assert_int_equal(restored, 3);
    assert_int_equal(b->ops->count(b), 3);
    assert_null(PEEK(b, "c\037gone\037carol"));
    assert_null(PEEK(b, "c\037agents\037idle"));

    c = PEEK(b, "c\037agents\037alice");
    assert_non_null(c);
    assert_int_equal(c->budget.day_spent, 700000000000ull);
    assert_int_equal(c->budget.month_spent, 700000000000ull);

    /* yesterday's spend is over; the month's stays */
    c = PEEK(b, "c\037agents\037bob");
    assert_non_null(c);
    assert_int_equal(c->budget.day_spent, 0);
    assert_int_equal(c->budget.month_spent, 5);

    c = PEEK(b, "p\037p");
    assert_non_null(c);
    assert_int_equal(c->budget.month_spent, 11);

    /* a month later nothing is restored */
    b->ops->free(b);
    b = tg_limit_store_memory();
    assert_int_equal(tg_limits_state_parse(b, p, text, len,
                                           NOW_S + 40 * DAY_S, NULL,
                                           &restored, why, sizeof(why)), 0);
    assert_int_equal(restored, 0);
    assert_int_equal(b->ops->count(b), 0);

    free(text);
    a->ops->free(a);
    b->ops->free(b);
    tg_policy_free(p);
}


static void
test_state_truncated_everywhere(void **unused)
{
    char            *text, why[160];
    size_t           len, k;
    tg_policy       *p;
    tg_limit_store  *a, *b;

    (void) unused;

    p = tg_test_policy(tg_state_policy);
    a = tg_limit_store_memory();
    spend(a, "c\037agents\037alice", 1000, NOW_S);
    spend(a, "c\037agents\037bob", 2000, NOW_S);
    assert_int_equal(tg_limits_state_format(a, NOW_S, &text, &len), 0);

    for (k = 0; k < len; k++) {
        b = tg_limit_store_memory();
        assert_int_equal(parse(b, p, text, k, why), -1);
        assert_int_equal(b->ops->count(b), 0);
        b->ops->free(b);
    }

    /* a byte changed anywhere: refused too */
    for (k = 0; k < len; k++) {
        text[k] ^= 1;
        b = tg_limit_store_memory();
        assert_int_equal(parse(b, p, text, len, why), -1);
        assert_int_equal(b->ops->count(b), 0);
        b->ops->free(b);
        text[k] ^= 1;
    }

    b = tg_limit_store_memory();
    assert_int_equal(parse(b, p, text, len, why), 0);
    assert_int_equal(b->ops->count(b), 2);
    b->ops->free(b);

    free(text);
    a->ops->free(a);
    tg_policy_free(p);
}


static void
test_state_refused(void **unused)
{
    char            *t, why[160];
    tg_policy       *p;
    tg_limit_store  *b;
    /* c\037agents\037alice */
    static const char  key[] = "631f6167656e74731f616c696365";
    char             line[512];

    (void) unused;

    p = tg_test_policy(tg_state_policy);
    b = tg_limit_store_memory();

    assert_int_equal(parse(b, p, "", 0, why), -1);
    assert_string_equal(why, "empty");

    t = file_of("tailgate-limits 3\n", 0);
    assert_int_equal(parse(b, p, t, strlen(t), why), -1);
    assert_string_equal(why, "not a tailgate limits state file of "
                        "version 1 or 2");
    free(t);

    assert_int_equal(parse(b, p, "{\"json\": 1}\n", 12, why), -1);
    assert_string_equal(why, "not a tailgate limits state file of "
                        "version 1 or 2");

    /* 2^64: one more than a u64 */
    snprintf(line, sizeof(line), "tailgate-limits 1\nb 20791 "
             "18446744073709551616 683 1 0 0 0 0 0 0 0 0 %s\n", key);
    t = file_of(line, 1);
    assert_int_equal(parse(b, p, t, strlen(t), why), -1);
    assert_string_equal(why, "line 2: a malformed number");
    free(t);

    /* a day of more than 32 bits */
    snprintf(line, sizeof(line), "tailgate-limits 1\nb 4294967296 1 683 1 "
             "0 0 0 0 0 0 0 0 %s\n", key);
    t = file_of(line, 1);
    assert_int_equal(parse(b, p, t, strlen(t), why), -1);
    free(t);

    /* signs and leading zeros are not what the writer writes */
    snprintf(line, sizeof(line), "tailgate-limits 1\nb 20791 -1 683 01 0 0 "
             "0 0 0 0 0 0 %s\n", key);
    t = file_of(line, 1);
    assert_int_equal(parse(b, p, t, strlen(t), why), -1);
    free(t);

    /* a key twice */
    snprintf(line, sizeof(line), "tailgate-limits 1\nb 20791 1 683 1" Z8
             " %s\nb 20791 2 683 2" Z8 " %s\n", key, key);
    t = file_of(line, 2);
    assert_int_equal(parse(b, p, t, strlen(t), why), -1);
    assert_string_equal(why, "line 3: a key twice");
    free(t);

    /* a count that is off */
    snprintf(line, sizeof(line), "tailgate-limits 1\nb 20791 1 683 1" Z8
             " %s\n", key);
    t = file_of(line, 2);
    assert_int_equal(parse(b, p, t, strlen(t), why), -1);
    assert_string_equal(why, "1 lines where its end says 2");
    free(t);

    /* an odd or non-hex key */
    snprintf(line, sizeof(line), "tailgate-limits 1\nb 20791 1 683 1" Z8
             " 6g\n");
    t = file_of(line, 1);
    assert_int_equal(parse(b, p, t, strlen(t), why), -1);
    assert_string_equal(why, "line 2: a malformed key");
    free(t);

    assert_int_equal(b->ops->count(b), 0);

    /* the largest numbers are fine: a budget spent to the end */
    snprintf(line, sizeof(line), "tailgate-limits 1\nb 20791 "
             "18446744073709551615 683 18446744073709551615" Z8 " %s\n",
             key);
    t = file_of(line, 1);
    assert_int_equal(parse(b, p, t, strlen(t), why), 0);
    assert_int_equal(b->ops->count(b), 1);
    assert_int_equal(PEEK(b, "c\037agents\037alice")
                         ->budget.day_spent, UINT64_MAX);
    free(t);

    b->ops->free(b);
    tg_policy_free(p);
}


/* an away tally is restored for Redis only; the file of 8 numbers refused */

static void
test_state_away(void **unused)
{
    char              line[512], *t, why[160];
    tg_policy        *p, *pr;
    tg_limit_store   *b;
    const tg_counter *c;
    static const char  key[] = "631f6167656e74731f616c696365";

    (void) unused;

    p = tg_test_policy(tg_state_policy);
    pr = tg_test_policy(
        "{ 'listen': { 'path': '/x' },"
        "  'providers': { 'p': { 'upstream': 'u', 'zone': 'local',"
        "    'endpoints': ['chat'] } },"
        "  'routes': { 'r': { 'steps': [ { 'provider': 'p',"
        "    'model': 'm' } ] } },"
        "  'redis': { 'address': '127.0.0.1:6379' },"
        "  'limits': { 'profiles': {"
        "    'agents': { 'budget': { 'day': 1, 'month': 10 } } } } }");

    snprintf(line, sizeof(line), "tailgate-limits 1\nb 20791 1 683 1 20791 2 "
             "683 2 20791 3 683 3 %s\n", key);
    t = file_of(line, 1);

    b = tg_limit_store_memory();
    assert_int_equal(parse(b, pr, t, strlen(t), why), 0);
    c = PEEK(b, "c\037agents\037alice");
    assert_non_null(c);
    assert_int_equal(c->own_budget.day_spent, 2);
    assert_int_equal(c->away_budget.day_spent, 3);
    assert_int_equal(c->away_budget.month_spent, 3);
    b->ops->free(b);

    /* without Redis no one would send it: dropped */
    b = tg_limit_store_memory();
    assert_int_equal(parse(b, p, t, strlen(t), why), 0);
    c = PEEK(b, "c\037agents\037alice");
    assert_non_null(c);
    assert_int_equal(c->budget.day_spent, 1);
    assert_int_equal(c->away_budget.day_spent, 0);
    assert_int_equal(c->away_budget.month_spent, 0);
    b->ops->free(b);
    free(t);

    snprintf(line, sizeof(line), "tailgate-limits 1\nb 20791 1 683 1 0 0 0 0 "
             "%s\n", key);
    t = file_of(line, 1);
    b = tg_limit_store_memory();
    assert_int_equal(parse(b, pr, t, strlen(t), why), -1);
    assert_int_equal(b->ops->count(b), 0);
    b->ops->free(b);
    free(t);

    tg_policy_free(p);
    tg_policy_free(pr);
}


static void
test_state_file(void **unused)
{
    int              fd;
    char             dir[] = "/tmp/tg-state-XXXXXX", path[128], err[256];
    char            *text;
    size_t           len;
    tg_policy       *p;
    tg_limit_store  *a, *b;

    (void) unused;

    p = tg_test_policy(tg_state_policy);
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/limits.state", dir);

    /* missing: nothing, quietly */
    b = tg_limit_store_memory();
    tg_limits_state_load(b, p, path, NULL);
    assert_int_equal(b->ops->count(b), 0);

    /* empty: refused, policyd goes on */
    fd = open(path, O_WRONLY | O_CREAT, 0600);
    assert_true(fd >= 0);
    close(fd);
    tg_limits_state_load(b, p, path, NULL);
    assert_int_equal(b->ops->count(b), 0);

    a = tg_limit_store_memory();
    tg_limit_store_clock(a);
    spend(a, "c\037agents\037alice", 42, a->wall_s);
    assert_int_equal(tg_limits_state_format(a, a->wall_s, &text, &len), 0);
    assert_int_equal(tg_limits_state_write(path, text, len, err,
                                           sizeof(err)), 0);
    free(text);

    tg_limits_state_load(b, p, path, NULL);
    assert_int_equal(b->ops->count(b), 1);
    assert_int_equal(PEEK(b, "c\037agents\037alice")
                         ->budget.month_spent, 42);

    /* no temp file is left */
    snprintf(err, sizeof(err), "%s.tmp", path);
    assert_int_equal(access(err, F_OK), -1);

    /* a directory that is not there: an error, not a crash */
    snprintf(err, sizeof(err), "%s/none/limits.state", dir);
    assert_int_equal(tg_limits_state_write(err, "x", 1, path,
                                           sizeof(path)), -1);

    snprintf(path, sizeof(path), "%s/limits.state", dir);
    unlink(path);
    rmdir(dir);

    a->ops->free(a);
    b->ops->free(b);
    tg_policy_free(p);
}


/* the saver's thread tells of a flush written: counted */

static pthread_mutex_t  tg_written_mu = PTHREAD_MUTEX_INITIALIZER;
static int              tg_written_n;


static void
count_written(void *arg)
{
    (void) arg;

    pthread_mutex_lock(&tg_written_mu);
    tg_written_n++;
    pthread_mutex_unlock(&tg_written_mu);
}


static int
written_n(void)
{
    int  n;

    pthread_mutex_lock(&tg_written_mu);
    n = tg_written_n;
    pthread_mutex_unlock(&tg_written_mu);

    return n;
}


/*
 * The saver: a snapshot at most once a second, at once when forced
 * (SIGHUP), and the last spend written at the stop even within the second.
 */

static uint64_t
month_in(const char *path, tg_policy *p)
{
    uint64_t          v;
    tg_limit_store   *b;
    const tg_counter *c;

    b = tg_limit_store_memory();
    tg_limits_state_load(b, p, path, NULL);
    c = PEEK(b, "c\037agents\037alice");
    v = c != NULL ? c->budget.month_spent : 0;
    b->ops->free(b);

    return v;
}


static void
test_state_saver(void **unused)
{
    int               i;
    char              dir[] = "/tmp/tg-saver-XXXXXX", path[128];
    tg_policy        *p;
    tg_limit_store   *a;
    tg_limits_saver  *sv;

    (void) unused;

    p = tg_test_policy(tg_state_policy);
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/limits.state", dir);

    a = tg_limit_store_memory();
    tg_limit_store_clock(a);
    a->now_ms += 10000;
    sv = tg_limits_saver_new(path);
    assert_non_null(sv);

    /* nothing spent: nothing written */
    tg_limits_saver_tick(sv, a, true);
    tg_limits_saver_free(sv, a);
    assert_int_equal(access(path, F_OK), -1);

    sv = tg_limits_saver_new(path);
    spend(a, "c\037agents\037alice", 1, a->wall_s);
    tg_limits_saver_tick(sv, a, false);

    /* within the second: not handed over; forced (SIGHUP): at once */
    spend(a, "c\037agents\037alice", 2, a->wall_s);
    tg_limits_saver_tick(sv, a, false);
    spend(a, "c\037agents\037alice", 4, a->wall_s);
    tg_limits_saver_tick(sv, a, true);

    /* and the stop writes the last one, however soon */
    spend(a, "c\037agents\037alice", 8, a->wall_s);
    tg_limits_saver_free(sv, a);
    assert_int_equal(month_in(path, p), 15);

    /*
     * A reconcile's write, off the loop: handed over without waiting, the
     * thread says when it is written; until then (and for a newer one
     * asked meanwhile) the flushes are not all written.
     */
    sv = tg_limits_saver_new(path);
    assert_true(tg_limits_saver_flushed(sv));
    spend(a, "c\037agents\037alice", 3, a->wall_s);
    tg_limits_saver_flush_async(sv, a, count_written, NULL);
    spend(a, "c\037agents\037alice", 4, a->wall_s);
    tg_limits_saver_flush_async(sv, a, count_written, NULL);

    for (i = 0; i < 500 && !tg_limits_saver_flushed(sv); i++) {
        usleep(10000);
    }

    /* written, the second (the newer) at least: told once or twice */
    assert_true(tg_limits_saver_flushed(sv));
    assert_true(written_n() >= 1);
    assert_int_equal(month_in(path, p), 22);
    tg_limits_saver_free(sv, NULL);

    unlink(path);
    rmdir(dir);
    a->ops->free(a);
    tg_policy_free(p);
}


/*
 * A save that failed is made again without a new spend, and a file that
 * a reload named anew is written at the next forced save (SIGHUP).
 */

static void
test_state_saver_again(void **unused)
{
    char              dir[] = "/tmp/tg-saver-XXXXXX", sub[128], path[160],
                      other[160];
    tg_policy        *p;
    tg_limit_store   *a;
    tg_limits_saver  *sv;

    (void) unused;

    p = tg_test_policy(tg_state_policy);
    assert_non_null(mkdtemp(dir));
    snprintf(sub, sizeof(sub), "%s/later", dir);
    snprintf(path, sizeof(path), "%s/limits.state", sub);
    snprintf(other, sizeof(other), "%s/other.state", dir);

    a = tg_limit_store_memory();
    tg_limit_store_clock(a);
    a->now_ms += 10000;
    sv = tg_limits_saver_new(path);
    assert_non_null(sv);

    /* its folder is not there yet: the write fails */
    spend(a, "c\037agents\037alice", 3, a->wall_s);
    tg_limits_saver_flush(sv, a);
    assert_int_equal(access(path, F_OK), -1);

    /* there now: a second later it is written, nothing spent since */
    assert_int_equal(mkdir(sub, 0700), 0);
    a->now_ms += 1000;
    tg_limits_saver_tick(sv, a, false);
    tg_limits_saver_free(sv, NULL);
    assert_int_equal(month_in(path, p), 3);

    /* saved; then a reload names another file: SIGHUP's save writes it */
    sv = tg_limits_saver_new(path);
    assert_non_null(sv);
    tg_limits_saver_flush(sv, a);
    tg_limits_saver_path(sv, other);
    tg_limits_saver_tick(sv, a, true);
    tg_limits_saver_free(sv, NULL);
    assert_int_equal(month_in(other, p), 3);

    unlink(path);
    unlink(other);
    rmdir(sub);
    rmdir(dir);
    a->ops->free(a);
    tg_policy_free(p);
}


/* a save is formatted on the loop: how long for 10000 counters */

static void
test_state_save_time(void **unused)
{
    int              i;
    char             key[64], *text, why[160];
    size_t           len, restored;
    double           ms;
    tg_policy       *p;
    tg_limit_store  *a, *b;
    struct timespec  t0, t1;
    tg_state_snap   *sn;

    (void) unused;

    p = tg_test_policy(tg_state_policy);
    a = tg_limit_store_memory();

    for (i = 0; i < 10000; i++) {
        snprintf(key, sizeof(key), "c\037agents\037client-%d", i);
        spend(a, key, (uint64_t) i + 1, NOW_S);
    }

    /* the loop's part: the snapshot */
    clock_gettime(CLOCK_MONOTONIC, &t0);
    sn = tg_limits_state_snap(a, NOW_S);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_non_null(sn);

    ms = (double) (t1.tv_sec - t0.tv_sec) * 1e3
         + (double) (t1.tv_nsec - t0.tv_nsec) / 1e6;
    printf("# snapshot of 10000 counters on the loop: %.2f ms\n", ms);

    /* the saver thread's: the text */
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(tg_limits_state_text(sn, &text, &len), 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    tg_limits_state_snap_free(sn);

    ms = (double) (t1.tv_sec - t0.tv_sec) * 1e3
         + (double) (t1.tv_nsec - t0.tv_nsec) / 1e6;
    printf("# its text (%zu bytes) on the saver thread: %.2f ms\n", len,
           ms);

    b = tg_limit_store_memory();
    assert_int_equal(tg_limits_state_parse(b, p, text, len, NOW_S, NULL,
                                           &restored, why, sizeof(why)), 0);
    assert_int_equal(restored, 10000);

    free(text);
    a->ops->free(a);
    b->ops->free(b);
    tg_policy_free(p);
}



/*
 * What waits for Redis (redis_waiting.h): a store's hook hands the
 * snapshot a copy of it; the file holds it, and gives it back whole - the
 * batches in their order with every argument (their epoch and number), a
 * correction's negative tokens, a name of any bytes but NUL - to a policy
 * with Redis; without Redis it is dropped, the budgets kept.
 */

static const char  tg_state_redis_policy[] =
    "{ 'listen': { 'path': '/x' },"
    "  'providers': { 'p': { 'upstream': 'u', 'zone': 'local',"
    "    'endpoints': ['chat'] } },"
    "  'routes': { 'r': { 'steps': [ { 'provider': 'p', 'model': 'm' } ] } },"
    "  'redis': { 'address': '127.0.0.1:6379' },"
    "  'limits': { 'profiles': {"
    "    'agents': { 'budget': { 'day': 1, 'month': 10 } } } } }";


/* numkeys, the marker, a key, the number, an empty argument, an argument */
static const char  tg_batch0[] = "2\0{tg:limits}:batch:n/7.1\0{tg:limits}:c|a"
                                 "\0" "41\0\0" "5";
static const char  tg_batch1[] = "2\0{tg:usage:20791}:batch:n/7.1\0"
                                 "{tg:usage:20791}:client\0" "42";


static void
waiting_of(tg_waiting *w)
{
    memset(w, 0, sizeof(*w));

    w->batches = calloc(2, sizeof(tg_waiting_batch));
    w->corr = calloc(2, sizeof(tg_correction));
    w->usage = calloc(2, sizeof(tg_usage_pending_entry));
    assert_true(w->batches && w->corr && w->usage);

    w->nbatches = 2;
    w->batches[0].kind = 0;
    w->batches[0].argc = 6;
    w->batches[0].len = sizeof(tg_batch0);
    w->batches[0].args = malloc(sizeof(tg_batch0));
    memcpy(w->batches[0].args, tg_batch0, sizeof(tg_batch0));
    w->batches[1].kind = 1;
    w->batches[1].argc = 4;
    w->batches[1].len = sizeof(tg_batch1);
    w->batches[1].args = malloc(sizeof(tg_batch1));
    memcpy(w->batches[1].args, tg_batch1, sizeof(tg_batch1));

    w->ncorr = 2;
    snprintf(w->corr[0].key, sizeof(w->corr[0].key), "{tg:limits}:c|a|b");
    w->corr[0].tpm = 60;
    w->corr[0].tokens = -12;
    w->corr[0].cost_nano = 5000000000ull;
    w->corr[0].day = 20791;
    w->corr[0].month = 683;
    w->corr[0].budget_day_nano = 1;
    w->corr[0].budget_month_nano = UINT64_MAX;
    snprintf(w->corr[1].key, sizeof(w->corr[1].key), "{tg:limits}:p|x");
    w->corr[1].tokens = INT64_MAX;

    w->nusage = 2;
    w->usage[0].day = 20791;
    w->usage[0].kind = 3;
    w->usage[0].len = 7;
    memcpy(w->usage[0].name, "a b\n\xff|c", 7);
    w->usage[0].requests = 2;
    w->usage[0].tokens = 20;
    w->usage[0].cost_nano = 10000000000ull;
    w->usage[1].day = 20790;
    w->usage[1].len = 1;
    w->usage[1].name[0] = 'z';
}


static int
hook_waiting(void *arg, struct tg_waiting *w)
{
    (void) arg;
    waiting_of(w);
    return 0;
}


static void
test_state_waiting(void **unused)
{
    char             *text, why[160];
    size_t            len, restored;
    tg_policy        *p, *pr;
    tg_waiting        w, want;
    tg_limit_store   *a, *b;

    (void) unused;

    p = tg_test_policy(tg_state_policy);
    pr = tg_test_policy(tg_state_redis_policy);

    a = tg_limit_store_memory();
    spend(a, "c\037agents\037alice", 300, NOW_S);
    a->waiting = hook_waiting;
    assert_int_equal(tg_limits_state_format(a, NOW_S, &text, &len), 0);
    assert_memory_equal(text, "tailgate-limits 2\n", 18);

    waiting_of(&want);
    memset(&w, 0, sizeof(w));

    b = tg_limit_store_memory();
    if (tg_limits_state_parse(b, pr, text, len, NOW_S, &w, &restored, why,
                              sizeof(why)) != 0)
    {
        fail_msg("refused: %s", why);
    }
    assert_int_equal(restored, 1);

    assert_int_equal(w.nbatches, 2);
    assert_int_equal(w.batches[0].kind, 0);
    assert_int_equal(w.batches[0].argc, 6);
    assert_int_equal(w.batches[0].len, sizeof(tg_batch0));
    assert_memory_equal(w.batches[0].args, tg_batch0, sizeof(tg_batch0));
    assert_int_equal(w.batches[1].kind, 1);
    assert_memory_equal(w.batches[1].args, tg_batch1, sizeof(tg_batch1));

    assert_int_equal(w.ncorr, 2);
    assert_memory_equal(&w.corr[0], &want.corr[0], sizeof(tg_correction));
    assert_memory_equal(&w.corr[1], &want.corr[1], sizeof(tg_correction));

    assert_int_equal(w.nusage, 2);
    assert_memory_equal(&w.usage[0], &want.usage[0],
                        sizeof(tg_usage_pending_entry));
    assert_memory_equal(&w.usage[1], &want.usage[1],
                        sizeof(tg_usage_pending_entry));

    /* read again into the same: emptied first, not added to */
    b->ops->free(b);
    b = tg_limit_store_memory();
    assert_int_equal(tg_limits_state_parse(b, pr, text, len, NOW_S, &w,
                                           &restored, why, sizeof(why)), 0);
    assert_int_equal(w.nbatches, 2);
    assert_int_equal(w.ncorr, 2);
    tg_waiting_free(&w);

    /* without Redis: the budgets alone */
    b->ops->free(b);
    b = tg_limit_store_memory();
    assert_int_equal(tg_limits_state_parse(b, p, text, len, NOW_S, &w,
                                           &restored, why, sizeof(why)), 0);
    assert_int_equal(restored, 1);
    assert_int_equal(w.nbatches + w.ncorr + w.nusage, 0);
    assert_null(w.batches);

    tg_waiting_free(&want);
    free(text);
    a->ops->free(a);
    b->ops->free(b);
    tg_policy_free(p);
    tg_policy_free(pr);
}


/*
 * A waiting line of a wrong shape refuses the whole file (its budget
 * line too), as any other line does; so does one in a file of version 1.
 */

static void
test_state_waiting_refused(void **unused)
{
    char               line[8192], *t, why[160];
    size_t             i, n, restored;
    tg_policy         *pr;
    tg_waiting         w;
    tg_limit_store    *b;
    static const char  budget[] = "b 20791 1 683 1" Z8
                                  " 631f6167656e74731f616c696365\n";
    static const struct {
        const char  *line;
        const char  *why;
    } bad[] = {
        /* kind 3; too few arguments; numkeys past them; numkeys 1 */
        { "k 3 4 32 2d 2d 31", "a malformed batch" },
        { "k 0 3 32 2d 31", "a malformed batch" },
        { "k 0 4 39 2d 2d 31", "a malformed batch" },
        { "k 0 4 31 2d 2d 31", "a malformed batch" },
        /* numkeys not decimal, "02"; the number 0, not decimal */
        { "k 0 4 78 2d 2d 31", "a malformed batch" },
        { "k 0 4 3032 2d 2d 31", "a malformed batch" },
        { "k 0 4 32 2d 2d 30", "a malformed batch" },
        { "k 0 4 32 2d 2d 2d", "a malformed batch" },
        /* odd hex, a NUL, capitals, fewer or more arguments than said */
        { "k 0 4 32 2d 2d 313", "a malformed batch" },
        { "k 0 4 32 2d 00 31", "a malformed batch" },
        { "k 0 4 32 2D 2d 31", "a malformed batch" },
        { "k 0 5 32 2d 2d 31", "a malformed batch" },
        { "k 0 4 32 2d 2d 31 31", "a malformed batch" },
        { "k 0 4 32 2d 2d 31 ", "a malformed batch" },
        { "k 0 4", "a malformed batch" },
        { "k 0 1025 32", "a malformed batch" },
        /* a correction: 7 numbers and a key; tokens signed, "-0" not */
        { "c 1 -0 1 1 1 1 1 6b", "a malformed correction" },
        { "c 1 - 1 1 1 1 1 6b", "a malformed correction" },
        { "c 1 1 1 1 1 1 6b", "a malformed correction" },
        { "c 1 1 1 1 1 1 1 -", "a malformed correction" },
        { "c 4294967296 1 1 1 1 1 1 6b", "a malformed correction" },
        { "c 1 9223372036854775808 1 1 1 1 1 6b",
          "a malformed correction" },
        /* usage: kind 0 ... 3, a name */
        { "u 20791 4 1 1 1 6e", "a malformed usage entry" },
        { "u 20791 0 1 1 1 -", "a malformed usage entry" },
        { "u -1 0 1 1 1 6e", "a malformed usage entry" },
        { "u 20791 0 1 1 6e", "a malformed usage entry" },
        /* another letter */
        { "x 1", "not a budget" },
        { "k", "not a budget" },
    };

    (void) unused;

    pr = tg_test_policy(tg_state_redis_policy);

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(line, sizeof(line), "tailgate-limits 2\n%s%s\n", budget,
                 bad[i].line);
        t = file_of(line, 2);
        b = tg_limit_store_memory();
        memset(&w, 0, sizeof(w));

        if (tg_limits_state_parse(b, pr, t, strlen(t), NOW_S, &w, &restored,
                                  why, sizeof(why)) != -1)
        {
            fail_msg("\"%s\": read", bad[i].line);
        }
        snprintf(line, sizeof(line), "line 3: %s", bad[i].why);
        if (strcmp(why, line) != 0) {
            fail_msg("\"%s\": \"%s\", not \"%s\"", bad[i].line, why, line);
        }
        assert_int_equal(b->ops->count(b), 0);
        assert_null(w.batches);
        assert_null(w.corr);
        assert_null(w.usage);

        b->ops->free(b);
        free(t);
    }

    /* the same lines well formed: read */
    snprintf(line, sizeof(line), "tailgate-limits 2\n%sk 2 4 32 2d 2d 31\n"
             "c 1 -5 1 1 1 1 1 6b\nu 20791 3 1 1 1 6e\n", budget);
    t = file_of(line, 4);
    b = tg_limit_store_memory();
    assert_int_equal(tg_limits_state_parse(b, pr, t, strlen(t), NOW_S, &w,
                                           &restored, why, sizeof(why)), 0);
    assert_int_equal(w.nbatches, 1);
    assert_int_equal(w.corr[0].tokens, -5);
    assert_int_equal(w.usage[0].kind, 3);
    tg_waiting_free(&w);
    b->ops->free(b);
    free(t);

    /* version 1: its budgets read, a waiting line not one of its own */
    snprintf(line, sizeof(line), "tailgate-limits 1\n%s", budget);
    t = file_of(line, 1);
    b = tg_limit_store_memory();
    assert_int_equal(tg_limits_state_parse(b, pr, t, strlen(t), NOW_S, &w,
                                           &restored, why, sizeof(why)), 0);
    assert_int_equal(restored, 1);
    b->ops->free(b);
    free(t);

    snprintf(line, sizeof(line), "tailgate-limits 1\n%su 20791 3 1 1 1 6e\n",
             budget);
    t = file_of(line, 2);
    b = tg_limit_store_memory();
    assert_int_equal(tg_limits_state_parse(b, pr, t, strlen(t), NOW_S, &w,
                                           &restored, why, sizeof(why)), -1);
    assert_string_equal(why, "line 3: not a budget");
    b->ops->free(b);
    free(t);

    /* more kept batches than a reconcile keeps */
    n = snprintf(line, sizeof(line), "tailgate-limits 2\n");
    t = malloc(300 * 20 + 64);
    memcpy(t, line, n);
    for (i = 0; i < TG_RECONCILE_KEPT + 1; i++) {
        n += (size_t) sprintf(t + n, "k 0 4 32 2d 2d 31\n");
    }
    t[n] = '\0';
    {
        char  *f = file_of(t, TG_RECONCILE_KEPT + 1);

        b = tg_limit_store_memory();
        assert_int_equal(tg_limits_state_parse(b, pr, f, strlen(f), NOW_S,
                                               &w, &restored, why,
                                               sizeof(why)), -1);
        assert_string_equal(why, "line 258: more kept batches than are "
                            "kept");
        b->ops->free(b);
        free(f);
    }
    free(t);

    tg_policy_free(pr);
}

int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_state_round_trip),
        cmocka_unit_test(test_state_truncated_everywhere),
        cmocka_unit_test(test_state_refused),
        cmocka_unit_test(test_state_away),
        cmocka_unit_test(test_state_waiting),
        cmocka_unit_test(test_state_waiting_refused),
        cmocka_unit_test(test_state_file),
        cmocka_unit_test(test_state_saver),
        cmocka_unit_test(test_state_saver_again),
        cmocka_unit_test(test_state_save_time),
    };

    return cmocka_run_group_tests_name("limits_state", tests, NULL, NULL);
}
