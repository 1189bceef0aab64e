/*
 * The budgets' spend across a restart (limits_state.h has the file).
 *
 * Only budgets are kept: a window of rpm or tpm drains within a minute,
 * about as long as a restart takes, while a day's budget would start
 * again at 0.  A counter keeps its spend of Redis's view ("budget"), the
 * node's own ("own_budget", counted when Redis is away) and its away
 * tally ("away_budget").  Only the away tally is ever sent to Redis, by
 * the reconcile, which writes the file with it cleared before its batch
 * leaves; so a restored spend does not count twice there (docs/policy.md,
 * "Across a restart").
 */

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fnv.h"
#include "limits_admit.h"
#include "limits_state.h"
#include "log.h"
#include "policy.h"
#include "redis_waiting.h"


#define TG_STATE_MAGIC     "tailgate-limits 2\n"
#define TG_STATE_MAGIC_1   "tailgate-limits 1\n"   /* budgets only: read */
#define TG_WAITING_KINDS   3            /* tg_batch_kind */
/* more than a counter's key (TG_LIMIT_KEY_MAX): an older policyd cut
   names at 1200 bytes, and its file is read too */
#define TG_STATE_KEY_MAX   1200
#define TG_SAVE_EVERY_MS   1000
/* saved_mark when the file may not hold the spends: the next tick writes */
#define TG_SAVER_UNKNOWN   UINT64_MAX


/* a growing text */

typedef struct {
    char    *p;
    size_t   len;
    size_t   cap;
    bool     oom;
    size_t   lines;
} tg_text;


static char *
tg_text_room(tg_text *t, size_t n)
{
    char    *p;
    size_t   cap;

    if (t->oom) {
        return NULL;
    }

    if (t->len + n > t->cap) {
        cap = t->cap != 0 ? t->cap : 4096;

        while (cap < t->len + n) {
            cap *= 2;
        }

        p = realloc(t->p, cap);
        if (p == NULL) {
            t->oom = true;
            return NULL;
        }

        t->p = p;
        t->cap = cap;
    }

    return t->p + t->len;
}


/*
 * A snapshot: what the loop copies (a memcpy a counter), for the saver
 * thread to format, so that the loop does not spend the milliseconds that
 * formatting 10000 counters takes.
 */

typedef struct {
    tg_budget   budget;
    tg_budget   own;
    tg_budget   away;
    size_t      key_off;
    size_t      key_len;
} tg_state_item;

/* tg_budget_roll() to a day and month known already: no gmtime a counter */

static void
tg_roll_to(tg_budget *b, const tg_budget *now)
{
    if (b->day != now->day) {
        b->day = now->day;
        b->day_spent = 0;
    }

    if (b->month != now->month) {
        b->month = now->month;
        b->month_spent = 0;
    }
}


struct tg_state_snap {
    tg_state_item  *items;
    size_t          n;
    size_t          cap;
    char           *keys;
    size_t          keys_len;
    size_t          keys_cap;
    bool            oom;
    tg_budget       now;                /* this day and month */
    tg_waiting      waiting;            /* for Redis, copied */
    uint64_t        gen;                /* the flushes asked before it */
};


static void
tg_snap_counter(tg_counter *c, void *arg)
{
    void           *p;
    size_t          cap;
    tg_budget       b = c->budget, own = c->own_budget, away = c->away_budget;
    tg_state_snap  *sn = arg;
    tg_state_item  *it;

    if (sn->oom) {
        return;
    }

    tg_roll_to(&b, &sn->now);
    tg_roll_to(&own, &sn->now);
    tg_roll_to(&away, &sn->now);

    if (b.day_spent == 0 && b.month_spent == 0 && own.day_spent == 0
        && own.month_spent == 0 && away.day_spent == 0
        && away.month_spent == 0)
    {
        return;
    }

    if (sn->n == sn->cap) {
        cap = sn->cap != 0 ? sn->cap * 2 : 64;
        p = realloc(sn->items, cap * sizeof(tg_state_item));
        if (p == NULL) {
            sn->oom = true;
            return;
        }
        sn->items = p;
        sn->cap = cap;
    }

    if (sn->keys_len + c->key_len > sn->keys_cap) {
        cap = sn->keys_cap != 0 ? sn->keys_cap : 4096;
        while (cap < sn->keys_len + c->key_len) {
            cap *= 2;
        }
        p = realloc(sn->keys, cap);
        if (p == NULL) {
            sn->oom = true;
            return;
        }
        sn->keys = p;
        sn->keys_cap = cap;
    }

    it = &sn->items[sn->n++];
    it->budget = b;
    it->own = own;
    it->away = away;
    it->key_off = sn->keys_len;
    it->key_len = c->key_len;
    memcpy(sn->keys + sn->keys_len, c->key, c->key_len);
    sn->keys_len += c->key_len;
}


tg_state_snap *
tg_limits_state_snap(tg_limit_store *s, int64_t wall_s)
{
    tg_state_snap  *sn;

    sn = calloc(1, sizeof(tg_state_snap));
    if (sn == NULL) {
        return NULL;
    }

    tg_budget_roll(&sn->now, wall_s);

    /* room for every counter at once: no realloc on the way */
    sn->cap = s->ops->count(s);
    sn->keys_cap = sn->cap * 32;

    if (sn->cap != 0) {
        sn->items = malloc(sn->cap * sizeof(tg_state_item));
        sn->keys = malloc(sn->keys_cap);

        if (sn->items == NULL || sn->keys == NULL) {
            tg_limits_state_snap_free(sn);
            return NULL;
        }
    }

    s->ops->each(s, tg_snap_counter, sn);

    if (sn->oom
        || (s->waiting != NULL && s->waiting(s->waiting_arg, &sn->waiting)
                                  != 0))
    {
        tg_limits_state_snap_free(sn);
        return NULL;
    }

    return sn;
}


void
tg_limits_state_snap_free(tg_state_snap *sn)
{
    if (sn != NULL) {
        free(sn->items);
        free(sn->keys);
        tg_waiting_free(&sn->waiting);
        free(sn);
    }
}


/* bytes in hex ("-": none) */

static char *
tg_hex_out(char *p, const char *data, size_t len)
{
    size_t             k;
    static const char  hex[] = "0123456789abcdef";

    if (len == 0) {
        *p++ = '-';
        return p;
    }

    for (k = 0; k < len; k++) {
        *p++ = hex[(unsigned char) data[k] >> 4];
        *p++ = hex[(unsigned char) data[k] & 15];
    }

    return p;
}


/* the lines of what waits for Redis: k (a batch), c, u */

static void
tg_text_waiting(tg_text *t, const tg_waiting *w)
{
    int                            n;
    char                          *p;
    size_t                         i, k, room, len;
    const char                    *a;
    const tg_correction           *c;
    const tg_waiting_batch        *b;
    const tg_usage_pending_entry  *e;

    for (i = 0; i < w->nbatches; i++) {
        b = &w->batches[i];
        room = 48 + 2 * b->len + 2 * (size_t) b->argc;

        if ((p = tg_text_room(t, room)) == NULL) {
            return;
        }

        n = snprintf(p, 48, "k %u %u", b->kind, b->argc);
        p += n;

        for (a = b->args, k = 0; k < b->argc; k++, a += len + 1) {
            len = strlen(a);
            *p++ = ' ';
            p = tg_hex_out(p, a, len);
        }

        *p++ = '\n';
        t->len = (size_t) (p - t->p);
        t->lines++;
    }

    for (i = 0; i < w->ncorr; i++) {
        c = &w->corr[i];
        len = strnlen(c->key, sizeof(c->key));

        if ((p = tg_text_room(t, 8 * 24 + 2 * len + 4)) == NULL) {
            return;
        }

        n = snprintf(p, 8 * 24, "c %u %lld %llu %u %u %llu %llu ", c->tpm,
                     (long long) c->tokens,
                     (unsigned long long) c->cost_nano, c->day, c->month,
                     (unsigned long long) c->budget_day_nano,
                     (unsigned long long) c->budget_month_nano);
        p = tg_hex_out(p + n, c->key, len);
        *p++ = '\n';
        t->len = (size_t) (p - t->p);
        t->lines++;
    }

    for (i = 0; i < w->nusage; i++) {
        e = &w->usage[i];

        if ((p = tg_text_room(t, 6 * 24 + 2 * (size_t) e->len + 4)) == NULL)
        {
            return;
        }

        n = snprintf(p, 6 * 24, "u %lld %u %llu %llu %llu ",
                     (long long) e->day, e->kind,
                     (unsigned long long) e->requests,
                     (unsigned long long) e->tokens,
                     (unsigned long long) e->cost_nano);
        p = tg_hex_out(p + n, e->name, e->len);
        *p++ = '\n';
        t->len = (size_t) (p - t->p);
        t->lines++;
    }
}


int
tg_limits_state_text(const tg_state_snap *sn, char **text, size_t *len)
{
    int             n;
    char           *p;
    size_t          i;
    tg_text         t;
    const char     *key;
    const tg_state_item  *it;

    memset(&t, 0, sizeof(t));

    p = tg_text_room(&t, sizeof(TG_STATE_MAGIC));
    if (p != NULL) {
        memcpy(p, TG_STATE_MAGIC, sizeof(TG_STATE_MAGIC) - 1);
        t.len += sizeof(TG_STATE_MAGIC) - 1;
    }

    for (i = 0; i < sn->n; i++) {
        it = &sn->items[i];

        p = tg_text_room(&t, 14 * 21 + 2 * it->key_len + 2);
        if (p == NULL) {
            break;
        }

        n = snprintf(p, 14 * 21, "b %u %llu %u %llu %u %llu %u %llu "
                     "%u %llu %u %llu ",
                     it->budget.day,
                     (unsigned long long) it->budget.day_spent,
                     it->budget.month,
                     (unsigned long long) it->budget.month_spent,
                     it->own.day, (unsigned long long) it->own.day_spent,
                     it->own.month,
                     (unsigned long long) it->own.month_spent,
                     it->away.day, (unsigned long long) it->away.day_spent,
                     it->away.month,
                     (unsigned long long) it->away.month_spent);
        key = sn->keys + it->key_off;
        p = tg_hex_out(p + n, key, it->key_len);
        *p++ = '\n';
        t.len = (size_t) (p - t.p);
        t.lines++;
    }

    tg_text_waiting(&t, &sn->waiting);

    p = tg_text_room(&t, 64);
    if (p == NULL) {
        free(t.p);
        return -1;
    }

    n = snprintf(p, 64, "end %zu %016llx\n", t.lines,
                 (unsigned long long) tg_fnv1a(TG_FNV_OFFSET, t.p, t.len));
    t.len += (size_t) n;

    *text = t.p;
    *len = t.len;

    return 0;
}


int
tg_limits_state_format(tg_limit_store *s, int64_t wall_s, char **text,
    size_t *len)
{
    int             rc;
    tg_state_snap  *sn;

    sn = tg_limits_state_snap(s, wall_s);
    if (sn == NULL) {
        return -1;
    }

    rc = tg_limits_state_text(sn, text, len);
    tg_limits_state_snap_free(sn);

    return rc;
}


/* the reader: strict, every byte accounted for */

typedef struct {
    const char  *p;
    const char  *end;
} tg_cursor;


static bool
tg_read_u64(tg_cursor *cu, uint64_t max, uint64_t *out)
{
    uint64_t  v = 0, d;
    const char *start = cu->p;

    while (cu->p < cu->end && *cu->p >= '0' && *cu->p <= '9') {
        d = (uint64_t) (*cu->p - '0');

        if (d > max || v > (max - d) / 10) {
            return false;
        }

        v = v * 10 + d;
        cu->p++;
    }

    /* no sign, no leading zero but for 0 itself, at most 20 digits */
    if (cu->p == start || cu->p - start > 20
        || (*start == '0' && cu->p - start > 1))
    {
        return false;
    }

    *out = v;

    return true;
}


static bool
tg_read_char(tg_cursor *cu, char ch)
{
    if (cu->p >= cu->end || *cu->p != ch) {
        return false;
    }

    cu->p++;

    return true;
}


static int
tg_hex_digit(char ch)
{
    if (ch >= '0' && ch <= '9') {
        return ch - '0';
    }

    if (ch >= 'a' && ch <= 'f') {
        return ch - 'a' + 10;
    }

    return -1;
}


typedef struct {
    tg_limit_store  *into;
    tg_limit_store  *from;
    const struct tg_policy *policy;
    int64_t          wall_s;
    size_t           restored;
    bool             oom;
} tg_move;


static void
tg_move_counter(tg_counter *c, void *arg)
{
    tg_move     *mv = arg;
    tg_budget    b = c->budget, own = c->own_budget, away = c->away_budget;
    tg_counter  *to;

    /* an older day or month is over: its spend is not restored */
    tg_budget_roll(&b, mv->wall_s);
    tg_budget_roll(&own, mv->wall_s);
    tg_budget_roll(&away, mv->wall_s);

    /* an away tally is Redis's to hear of: none without Redis */
    if (mv->policy != NULL && !mv->policy->redis.enabled) {
        memset(&away, 0, sizeof(away));
    }

    if (b.day_spent == 0 && b.month_spent == 0 && own.day_spent == 0
        && own.month_spent == 0 && away.day_spent == 0
        && away.month_spent == 0)
    {
        return;
    }

    if (mv->policy != NULL && !tg_limits_keep(c, (void *) mv->policy)) {
        return;
    }

    to = mv->into->ops->counter(mv->into, c->key, c->key_len);
    if (to == NULL) {
        mv->oom = true;
        return;
    }

    to->budget = b;
    to->own_budget = own;
    to->away_budget = away;
    mv->into->ops->unref(mv->into, to);
    mv->restored++;
}


static void
tg_why(char *why, size_t len, const char *fmt, size_t line)
{
    snprintf(why, len, fmt, line);
}


/* a signed decimal: "-" and at most INT64_MAX */

static bool
tg_read_i64(tg_cursor *cu, int64_t *out)
{
    bool      neg;
    uint64_t  v;

    neg = tg_read_char(cu, '-');

    if (!tg_read_u64(cu, INT64_MAX, &v) || (neg && v == 0)) {
        return false;
    }

    *out = neg ? -(int64_t) v : (int64_t) v;

    return true;
}


/* bytes in hex up to a space or the line's end, "-" for none; no NUL */

static bool
tg_read_hex(tg_cursor *cu, char *out, size_t max, size_t *len)
{
    int     hi, lo;
    size_t  n;

    if (cu->p < cu->end && *cu->p == '-') {
        cu->p++;
        *len = 0;
        return cu->p == cu->end || *cu->p == ' ';
    }

    for (n = 0; cu->p < cu->end && *cu->p != ' '; n++, cu->p += 2) {
        if (n == max || cu->end - cu->p < 2) {
            return false;
        }

        hi = tg_hex_digit(cu->p[0]);
        lo = tg_hex_digit(cu->p[1]);

        if (hi < 0 || lo < 0 || (hi | lo) == 0) {
            return false;
        }

        out[n] = (char) (hi << 4 | lo);
    }

    *len = n;

    return n != 0;
}


/* a whole decimal string, as the batches' numbers are */

static bool
tg_decimal(const char *p, size_t len, uint64_t max, uint64_t *v)
{
    tg_cursor  cu;

    cu.p = p;
    cu.end = p + len;

    return tg_read_u64(&cu, max, v) && cu.p == cu.end;
}


/* the waiting records, read into a tg_waiting of their own */

static void *
tg_grow(void *p, size_t n, size_t size)
{
    /* room for n + 1, doubling at powers of two */
    if (n != 0 && (n & (n - 1)) != 0) {
        return p;
    }

    return realloc(p, (n != 0 ? n * 2 : 1) * size);
}


/*
 * One more of the n items (at most max) of size at *items, zeroed; NULL
 * with *why: full (as the reconcile keeps no more), or out of memory.
 */

static void *
tg_one_more(void **items, size_t n, size_t max, size_t size,
    const char *full, const char **why)
{
    char  *p;

    if (n == max) {
        *why = full;
        return NULL;
    }

    p = tg_grow(*items, n, size);
    if (p == NULL) {
        *why = "out of memory";
        return NULL;
    }

    *items = p;
    memset(p + n * size, 0, size);

    return p + n * size;
}


/* "k KIND ARGC ARG..." : a kept batch, its shape checked */

static const char *
tg_read_batch(tg_cursor *cu, tg_waiting *w)
{
    char              *args, *p;
    void              *items;
    size_t             i, len, room;
    uint64_t           kind, argc, nk, seq;
    const char        *first, *num, *why;
    tg_waiting_batch  *b;

    items = w->batches;
    b = tg_one_more(&items, w->nbatches, TG_RECONCILE_KEPT,
                    sizeof(tg_waiting_batch),
                    "more kept batches than are kept", &why);
    w->batches = items;

    if (b == NULL) {
        return why;
    }

    if (!tg_read_u64(cu, TG_WAITING_KINDS - 1, &kind)
        || !tg_read_char(cu, ' ')
        || !tg_read_u64(cu, TG_WAITING_ARGS_MAX, &argc) || argc < 4)
    {
        return "a malformed batch";
    }

    /* its bytes are at most half its hex, and a NUL an argument */
    room = (size_t) (cu->end - cu->p) / 2 + argc;
    args = malloc(room);

    if (args == NULL) {
        return "out of memory";
    }

    first = NULL;
    num = NULL;
    nk = 0;

    for (p = args, i = 0; i < argc; i++) {
        if (!tg_read_char(cu, ' ')
            || !tg_read_hex(cu, p, TG_WAITING_ARG_MAX, &len))
        {
            free(args);
            return "a malformed batch";
        }

        /* numkeys (the marker and the keys), then after them its number */
        if (i == 0) {
            first = p;
            if (!tg_decimal(p, len, argc - 2, &nk) || nk < 2) {
                free(args);
                return "a malformed batch";
            }
        } else if (i == nk + 1) {
            num = p;
            if (!tg_decimal(p, len, UINT64_MAX, &seq) || seq == 0) {
                free(args);
                return "a malformed batch";
            }
        }

        p[len] = '\0';
        p += len + 1;
    }

    if (cu->p != cu->end || first == NULL || num == NULL) {
        free(args);
        return "a malformed batch";
    }

    w->nbatches++;
    b->kind = (uint32_t) kind;
    b->argc = (uint32_t) argc;
    b->len = (size_t) (p - args);
    b->args = args;

    return NULL;
}


/* "c TPM TOKENS COST DAY MONTH BUDGET_DAY BUDGET_MONTH KEY" */

static const char *
tg_read_correction(tg_cursor *cu, tg_waiting *w)
{
    size_t          len;
    uint64_t        v[6];
    const char     *why;
    tg_correction  *c;
    void           *items;

    items = w->corr;
    c = tg_one_more(&items, w->ncorr, TG_RECONCILE_CORRECTIONS,
                    sizeof(tg_correction), "more corrections than are kept",
                    &why);
    w->corr = items;

    if (c == NULL) {
        return why;
    }

    if (!tg_read_u64(cu, UINT32_MAX, &v[0]) || !tg_read_char(cu, ' ')
        || !tg_read_i64(cu, &c->tokens) || !tg_read_char(cu, ' ')
        || !tg_read_u64(cu, UINT64_MAX, &v[1]) || !tg_read_char(cu, ' ')
        || !tg_read_u64(cu, UINT32_MAX, &v[2]) || !tg_read_char(cu, ' ')
        || !tg_read_u64(cu, UINT32_MAX, &v[3]) || !tg_read_char(cu, ' ')
        || !tg_read_u64(cu, UINT64_MAX, &v[4]) || !tg_read_char(cu, ' ')
        || !tg_read_u64(cu, UINT64_MAX, &v[5]) || !tg_read_char(cu, ' ')
        || !tg_read_hex(cu, c->key, sizeof(c->key) - 1, &len) || len == 0
        || cu->p != cu->end)
    {
        return "a malformed correction";
    }

    c->key[len] = '\0';
    c->tpm = (uint32_t) v[0];
    c->cost_nano = v[1];
    c->day = (uint32_t) v[2];
    c->month = (uint32_t) v[3];
    c->budget_day_nano = v[4];
    c->budget_month_nano = v[5];
    w->ncorr++;

    return NULL;
}


/* "u DAY KIND REQUESTS TOKENS COST NAME" */

static const char *
tg_read_usage(tg_cursor *cu, tg_waiting *w)
{
    size_t                   len;
    uint64_t                 day, kind;
    const char              *why;
    tg_usage_pending_entry  *e;
    void                    *items;

    items = w->usage;
    e = tg_one_more(&items, w->nusage, TG_USAGE_PENDING_MAX,
                    sizeof(tg_usage_pending_entry),
                    "more usage entries than are kept", &why);
    w->usage = items;

    if (e == NULL) {
        return why;
    }

    if (!tg_read_u64(cu, INT64_MAX, &day) || !tg_read_char(cu, ' ')
        || !tg_read_u64(cu, TG_USAGE_PENDING_KINDS - 1, &kind)
        || !tg_read_char(cu, ' ')
        || !tg_read_u64(cu, UINT64_MAX, &e->requests)
        || !tg_read_char(cu, ' ')
        || !tg_read_u64(cu, UINT64_MAX, &e->tokens) || !tg_read_char(cu, ' ')
        || !tg_read_u64(cu, UINT64_MAX, &e->cost_nano)
        || !tg_read_char(cu, ' ')
        || !tg_read_hex(cu, e->name, TG_USAGE_PENDING_NAME, &len)
        || len == 0 || cu->p != cu->end)
    {
        return "a malformed usage entry";
    }

    e->day = (int64_t) day;
    e->kind = (uint32_t) kind;
    e->len = (uint32_t) len;
    e->name[len] = '\0';
    w->nusage++;

    return NULL;
}


int
tg_limits_state_parse(tg_limit_store *s, const struct tg_policy *policy,
    const char *text, size_t len, int64_t wall_s, tg_waiting *waiting,
    size_t *restored, char *why, size_t why_len)
{
    int              hi, lo, version;
    char             key[TG_STATE_KEY_MAX];
    size_t           i, klen, lines, body;
    uint64_t         v[12], n, check;
    tg_move          mv;
    tg_cursor        cu;
    tg_counter      *c;
    tg_waiting       w;
    const char      *endl, *bad;
    tg_limit_store  *tmp;

    *restored = 0;
    memset(&w, 0, sizeof(w));

    if (len == 0) {
        snprintf(why, why_len, "empty");
        return -1;
    }

    if (len >= sizeof(TG_STATE_MAGIC) - 1
        && memcmp(text, TG_STATE_MAGIC, sizeof(TG_STATE_MAGIC) - 1) == 0)
    {
        version = 2;

    } else if (len >= sizeof(TG_STATE_MAGIC_1) - 1
               && memcmp(text, TG_STATE_MAGIC_1,
                         sizeof(TG_STATE_MAGIC_1) - 1) == 0)
    {
        version = 1;

    } else {
        snprintf(why, why_len, "not a tailgate limits state file of "
                 "version 1 or 2");
        return -1;
    }

    /* the end line: the last one, whole */

    if (text[len - 1] != '\n') {
        snprintf(why, why_len, "truncated: no end line");
        return -1;
    }

    for (body = len - 1; body > 0 && text[body - 1] != '\n'; body--) {
        /* void */
    }

    cu.p = text + body;
    cu.end = text + len - 1;

    if (cu.end - cu.p < 4 || memcmp(cu.p, "end ", 4) != 0) {
        snprintf(why, why_len, "truncated: no end line");
        return -1;
    }

    cu.p += 4;

    if (!tg_read_u64(&cu, SIZE_MAX, &n) || !tg_read_char(&cu, ' ')
        || cu.end - cu.p != 16)
    {
        snprintf(why, why_len, "a malformed end line");
        return -1;
    }

    check = 0;

    for (i = 0; i < 16; i++) {
        if ((hi = tg_hex_digit(cu.p[i])) < 0) {
            snprintf(why, why_len, "a malformed end line");
            return -1;
        }
        check = check << 4 | (uint64_t) hi;
    }

    if (check != tg_fnv1a(TG_FNV_OFFSET, text, body)) {
        snprintf(why, why_len, "its check sum does not match: torn or "
                 "changed");
        return -1;
    }

    /* the counters, into a store of their own first: all or nothing */

    tmp = tg_limit_store_memory();
    if (tmp == NULL) {
        snprintf(why, why_len, "out of memory");
        return -1;
    }

    cu.p = text + sizeof(TG_STATE_MAGIC) - 1;
    lines = 0;

    while (cu.p < text + body) {
        lines++;
        endl = memchr(cu.p, '\n', (size_t) (text + body - cu.p));
        cu.end = endl;

        /* what waits for Redis (version 2): a batch, a correction, usage */

        if (version >= 2 && cu.end - cu.p >= 2 && cu.p[1] == ' '
            && (cu.p[0] == 'k' || cu.p[0] == 'c' || cu.p[0] == 'u'))
        {
            cu.p += 2;
            bad = cu.p[-2] == 'k' ? tg_read_batch(&cu, &w)
                  : cu.p[-2] == 'c' ? tg_read_correction(&cu, &w)
                  : tg_read_usage(&cu, &w);

            if (bad != NULL) {
                snprintf(why, why_len, "line %zu: %s", lines + 1, bad);
                goto failed;
            }

            cu.p = endl + 1;
            continue;
        }

        if (!tg_read_char(&cu, 'b') || !tg_read_char(&cu, ' ')) {
            tg_why(why, why_len, "line %zu: not a budget", lines + 1);
            goto failed;
        }

        for (i = 0; i < 12; i++) {
            if (!tg_read_u64(&cu, i % 2 == 0 ? UINT32_MAX : UINT64_MAX,
                             &v[i])
                || !tg_read_char(&cu, ' '))
            {
                tg_why(why, why_len, "line %zu: a malformed number",
                       lines + 1);
                goto failed;
            }
        }

        klen = (size_t) (cu.end - cu.p);

        if (klen == 0 || klen % 2 != 0 || klen / 2 > TG_STATE_KEY_MAX) {
            tg_why(why, why_len, "line %zu: a malformed key", lines + 1);
            goto failed;
        }

        for (i = 0; i < klen / 2; i++) {
            hi = tg_hex_digit(cu.p[2 * i]);
            lo = tg_hex_digit(cu.p[2 * i + 1]);

            if (hi < 0 || lo < 0) {
                tg_why(why, why_len, "line %zu: a malformed key",
                       lines + 1);
                goto failed;
            }

            key[i] = (char) (hi << 4 | lo);
        }

        if (tmp->ops->peek(tmp, key, klen / 2) != NULL) {
            tg_why(why, why_len, "line %zu: a key twice", lines + 1);
            goto failed;
        }

        c = tmp->ops->counter(tmp, key, klen / 2);
        if (c == NULL) {
            snprintf(why, why_len, "out of memory");
            goto failed;
        }

        c->budget.day = (uint32_t) v[0];
        c->budget.day_spent = v[1];
        c->budget.month = (uint32_t) v[2];
        c->budget.month_spent = v[3];
        c->own_budget.day = (uint32_t) v[4];
        c->own_budget.day_spent = v[5];
        c->own_budget.month = (uint32_t) v[6];
        c->own_budget.month_spent = v[7];
        c->away_budget.day = (uint32_t) v[8];
        c->away_budget.day_spent = v[9];
        c->away_budget.month = (uint32_t) v[10];
        c->away_budget.month_spent = v[11];
        tmp->ops->unref(tmp, c);

        cu.p = endl + 1;
    }

    if (lines != n) {
        snprintf(why, why_len, "%zu lines where its end says %llu", lines,
                 (unsigned long long) n);
        goto failed;
    }

    memset(&mv, 0, sizeof(mv));
    mv.into = s;
    mv.from = tmp;
    mv.policy = policy;
    mv.wall_s = wall_s;

    tmp->ops->each(tmp, tg_move_counter, &mv);
    tmp->ops->free(tmp);

    *restored = mv.restored;

    if (mv.oom) {
        snprintf(why, why_len, "out of memory: %zu restored", mv.restored);
        tg_waiting_free(&w);
        return -1;
    }

    /* what waited for Redis is Redis's to get: none without Redis */

    if (waiting != NULL && (policy == NULL || policy->redis.enabled)) {
        tg_waiting_free(waiting);
        *waiting = w;

    } else {
        tg_waiting_free(&w);
    }

    return 0;

failed:

    tmp->ops->free(tmp);
    tg_waiting_free(&w);

    return -1;
}


void
tg_limits_state_load(tg_limit_store *s, const struct tg_policy *policy,
    const char *path, tg_waiting *waiting)
{
    int          fd;
    char        *text, why[160];
    size_t       got, restored;
    ssize_t      n;
    struct stat  st;

    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);

    if (fd == -1) {
        if (errno != ENOENT) {
            tg_log_warn("limits.state_refused", "path error",
                        "%s: not restored: cannot open: %s", path,
                        strerror(errno));
        }
        return;
    }

    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)
        || (uint64_t) st.st_size > TG_LIMITS_STATE_MAX)
    {
        tg_log_warn("limits.state_refused", "path error",
                    "%s: not restored: %s", path,
                    "not a regular file of at most "
                    TG_LIMITS_STATE_MAX_TEXT);
        close(fd);
        return;
    }

    text = malloc((size_t) st.st_size + 1);
    if (text == NULL) {
        tg_log_warn("limits.state_refused", "path error",
                    "%s: not restored: %s", path, "out of memory");
        close(fd);
        return;
    }

    for (got = 0; got < (size_t) st.st_size; got += (size_t) n) {
        n = read(fd, text + got, (size_t) st.st_size - got);

        if (n == -1 && errno == EINTR) {
            n = 0;
            continue;
        }

        if (n <= 0) {
            break;
        }
    }

    close(fd);

    tg_limit_store_clock(s);

    if (tg_limits_state_parse(s, policy, text, got, s->wall_s, waiting,
                              &restored, why, sizeof(why)) != 0)
    {
        tg_log_warn("limits.state_refused", "path error",
                    "%s: not restored: %s", path, why);

    } else if (waiting != NULL && (waiting->nbatches != 0
                                   || waiting->ncorr != 0
                                   || waiting->nusage != 0))
    {
        tg_log_info("limits.state_restored",
                    "path counters batches corrections usage",
                    "%s: the budgets of %zu counters restored, and what "
                    "waited for Redis: %zu kept batches, %zu corrections, "
                    "%zu usage entries", path, restored, waiting->nbatches,
                    waiting->ncorr, waiting->nusage);

    } else {
        tg_log_info("limits.state_restored", "path counters",
                    "%s: the budgets of %zu counters restored", path,
                    restored);
    }

    free(text);
}


int
tg_limits_state_write(const char *path, const char *text, size_t len,
    char *err, size_t err_len)
{
    int      fd;
    char     tmp[4200], dir[4200], *slash;
    size_t   done;
    ssize_t  n;

    if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int) sizeof(tmp)) {
        snprintf(err, err_len, "the path is too long");
        return -1;
    }

    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
              0600);
    if (fd == -1) {
        snprintf(err, err_len, "cannot open %s: %s", tmp, strerror(errno));
        return -1;
    }

    for (done = 0; done < len; done += (size_t) n) {
        n = write(fd, text + done, len - done);

        if (n == -1 && errno == EINTR) {
            n = 0;
            continue;
        }

        if (n <= 0) {
            snprintf(err, err_len, "cannot write %s: %s", tmp,
                     n == 0 ? "no progress" : strerror(errno));
            close(fd);
            (void) unlink(tmp);
            return -1;
        }
    }

    if (fsync(fd) != 0) {
        snprintf(err, err_len, "cannot fsync %s: %s", tmp, strerror(errno));
        close(fd);
        (void) unlink(tmp);
        return -1;
    }

    close(fd);

    if (rename(tmp, path) != 0) {
        snprintf(err, err_len, "cannot rename %s: %s", tmp, strerror(errno));
        (void) unlink(tmp);
        return -1;
    }

    /* the rename itself, durable */

    snprintf(dir, sizeof(dir), "%s", path);
    slash = strrchr(dir, '/');

    if (slash != NULL) {
        *(slash == dir ? slash + 1 : slash) = '\0';

        fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd != -1) {
            (void) fsync(fd);
            close(fd);
        }
    }

    return 0;
}


/* the saver thread */

struct tg_limits_saver {
    pthread_t        thread;
    pthread_mutex_t  mu;
    pthread_cond_t   cv;
    pthread_cond_t   done_cv;           /* the thread wrote what it had */
    bool             stop;
    bool             busy;              /* writing a snapshot */

    char            *path;              /* the loop's */
    char            *next_path;         /* handed: the thread's to take */
    tg_state_snap   *next;              /* to write, NULL: none */

    char             err[4400];         /* the thread's last failure */
    bool             err_new;
    bool             unsaved;           /* the thread's last write failed */
    bool             failing;           /* logged once until it works */

    uint64_t         saved_mark;
    uint64_t         saved_ms;

    /* tg_limits_saver_flush_async(): asked (the loop's), written (the
       thread's, under mu), and who the thread tells */
    uint64_t         flush_asked;
    uint64_t         flush_done;
    void           (*written)(void *arg);
    void            *written_arg;
};


static void *
tg_saver_main(void *arg)
{
    int               rc;
    char             *text, *path, err[4400];
    size_t            len;
    uint64_t          gen;
    tg_state_snap    *sn;
    tg_limits_saver  *sv = arg;

    path = NULL;

    pthread_mutex_lock(&sv->mu);

    for ( ;; ) {
        while (sv->next == NULL && !sv->stop) {
            pthread_cond_wait(&sv->cv, &sv->mu);
        }

        if (sv->next == NULL) {
            break;
        }

        sn = sv->next;
        sv->next = NULL;
        sv->busy = true;

        if (sv->next_path != NULL) {
            free(path);
            path = sv->next_path;
            sv->next_path = NULL;
        }

        pthread_mutex_unlock(&sv->mu);

        rc = 0;

        if (tg_limits_state_text(sn, &text, &len) != 0) {
            snprintf(err, sizeof(err), "out of memory");
            rc = -1;

        } else {
            if (path != NULL) {
                rc = tg_limits_state_write(path, text, len, err,
                                           sizeof(err));
            }
            free(text);
        }

        gen = sn->gen;
        tg_limits_state_snap_free(sn);

        pthread_mutex_lock(&sv->mu);
        sv->busy = false;
        pthread_cond_broadcast(&sv->done_cv);

        /* the flushes asked before it are on the disk (or failed, said) */
        if (gen > sv->flush_done) {
            sv->flush_done = gen;
            if (sv->written != NULL) {
                sv->written(sv->written_arg);
            }
        }

        if (rc != 0) {
            memcpy(sv->err, err, sizeof(err));
            sv->err_new = true;
            sv->unsaved = true;

        } else {
            sv->err[0] = '\0';
            sv->unsaved = false;
        }
    }

    pthread_mutex_unlock(&sv->mu);
    free(path);

    return NULL;
}


tg_limits_saver *
tg_limits_saver_new(const char *path)
{
    tg_limits_saver  *sv;

    sv = calloc(1, sizeof(tg_limits_saver));
    if (sv == NULL) {
        return NULL;
    }

    pthread_mutex_init(&sv->mu, NULL);
    pthread_cond_init(&sv->cv, NULL);
    pthread_cond_init(&sv->done_cv, NULL);

    tg_limits_saver_path(sv, path);

    /* at start the file holds what was loaded: nothing to write yet */
    sv->saved_mark = 0;

    if (sv->path == NULL
        || pthread_create(&sv->thread, NULL, tg_saver_main, sv) != 0)
    {
        free(sv->path);
        free(sv->next_path);
        pthread_mutex_destroy(&sv->mu);
        pthread_cond_destroy(&sv->cv);
        pthread_cond_destroy(&sv->done_cv);
        free(sv);
        return NULL;
    }

    return sv;
}


void
tg_limits_saver_path(tg_limits_saver *sv, const char *path)
{
    char  *p, *q;

    if (sv == NULL || (sv->path != NULL && strcmp(sv->path, path) == 0)) {
        return;
    }

    p = strdup(path);
    q = strdup(path);

    if (p == NULL || q == NULL) {
        free(p);
        free(q);
        return;
    }

    free(sv->path);
    sv->path = p;

    /* the new file has nothing yet: the next tick writes it */
    sv->saved_mark = TG_SAVER_UNKNOWN;

    pthread_mutex_lock(&sv->mu);
    free(sv->next_path);
    sv->next_path = q;
    pthread_mutex_unlock(&sv->mu);
}


/* what the file must follow: the spends, and what waits for Redis */

static uint64_t
tg_saver_mark(const tg_limit_store *s)
{
    return s->spends + s->waits;
}


/*
 * A snapshot of now, handed to the thread: one waiting at most, a newer
 * one replaces it.  false: out of memory (the next tick tries again).
 */

static bool
tg_saver_hand(tg_limits_saver *sv, tg_limit_store *s)
{
    tg_state_snap  *sn;

    sn = tg_limits_state_snap(s, s->wall_s);
    if (sn == NULL) {
        sv->saved_mark = TG_SAVER_UNKNOWN;
        return false;
    }

    sv->saved_mark = tg_saver_mark(s);
    sv->saved_ms = s->now_ms;

    /* newer than every flush asked so far: it holds what they hold */
    sn->gen = sv->flush_asked;

    pthread_mutex_lock(&sv->mu);
    tg_limits_state_snap_free(sv->next);
    sv->next = sn;
    pthread_cond_signal(&sv->cv);
    pthread_mutex_unlock(&sv->mu);

    return true;
}


void
tg_limits_saver_tick(tg_limits_saver *sv, tg_limit_store *s, bool force)
{
    char            err[sizeof(sv->err)];
    bool            logged;

    if (sv == NULL) {
        return;
    }

    pthread_mutex_lock(&sv->mu);
    logged = sv->err_new;
    sv->err_new = false;
    memcpy(err, sv->err, sizeof(err));

    /* a write that failed is made again, once a second until it works */
    if (sv->unsaved) {
        sv->unsaved = false;
        sv->saved_mark = TG_SAVER_UNKNOWN;
    }

    pthread_mutex_unlock(&sv->mu);

    /* a failure is logged once, and again when it has passed */

    if (logged && !sv->failing) {
        tg_log_warn("limits.state_failed", "path error",
                    "%s: the budgets are not saved: %s", sv->path, err);
        sv->failing = true;

    } else if (!logged && err[0] == '\0' && sv->failing) {
        tg_log_info("limits.state_saved", "path",
                    "%s: the budgets are saved again", sv->path);
        sv->failing = false;
    }

    if (tg_saver_mark(s) == sv->saved_mark
        || (!force && s->now_ms - sv->saved_ms < TG_SAVE_EVERY_MS))
    {
        return;
    }

    (void) tg_saver_hand(sv, s);
}


void
tg_limits_saver_flush(tg_limits_saver *sv, tg_limit_store *s)
{
    if (sv == NULL) {
        return;
    }

    tg_limit_store_clock(s);

    if (!tg_saver_hand(sv, s)) {
        return;
    }

    /* written, and no older snapshot after it */

    pthread_mutex_lock(&sv->mu);

    while (sv->next != NULL || sv->busy) {
        pthread_cond_wait(&sv->done_cv, &sv->mu);
    }

    pthread_mutex_unlock(&sv->mu);
}


void
tg_limits_saver_flush_async(tg_limits_saver *sv, tg_limit_store *s,
    void (*written)(void *arg), void *arg)
{
    if (sv == NULL) {
        return;
    }

    tg_limit_store_clock(s);

    pthread_mutex_lock(&sv->mu);
    sv->written = written;
    sv->written_arg = arg;
    pthread_mutex_unlock(&sv->mu);

    sv->flush_asked++;

    if (!tg_saver_hand(sv, s)) {
        /* no snapshot: none is written, the wait ends now */
        pthread_mutex_lock(&sv->mu);
        sv->flush_done = sv->flush_asked;
        pthread_mutex_unlock(&sv->mu);

        if (written != NULL) {
            written(arg);
        }
    }
}


bool
tg_limits_saver_flushed(tg_limits_saver *sv)
{
    bool  done;

    if (sv == NULL) {
        return true;
    }

    pthread_mutex_lock(&sv->mu);
    done = sv->flush_done >= sv->flush_asked;
    pthread_mutex_unlock(&sv->mu);

    return done;
}


void
tg_limits_saver_free(tg_limits_saver *sv, tg_limit_store *s)
{
    if (sv == NULL) {
        return;
    }

    if (s != NULL) {
        tg_limit_store_clock(s);
        tg_limits_saver_tick(sv, s, true);
    }

    pthread_mutex_lock(&sv->mu);
    sv->stop = true;
    pthread_cond_signal(&sv->cv);
    pthread_mutex_unlock(&sv->mu);

    pthread_join(sv->thread, NULL);

    if (sv->err[0] != '\0') {
        tg_log_warn("limits.state_failed", "path error",
                    "%s: the budgets are not saved: %s", sv->path, sv->err);
    }

    free(sv->path);
    free(sv->next_path);
    tg_limits_state_snap_free(sv->next);
    pthread_mutex_destroy(&sv->mu);
    pthread_cond_destroy(&sv->cv);
    pthread_cond_destroy(&sv->done_cv);
    free(sv);
}
