/*
 * A REPORT's usage: its fields, its cost, its record as a JSON line, and
 * the tallies of the status.  Pure: no I/O, no clock (the time is given).
 */

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "json_out.h"
#include "tailgate_protocol.h"
#include "usage.h"


typedef struct {
    char    *p;
    char    *end;
    bool     full;
} tg_line;


static void tg_line_add(tg_line *l, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void tg_line_str(tg_line *l, const char *key, const char *s,
    size_t len);
static void tg_line_bytes(tg_line *l, const char *s, size_t len);


int
tg_usage_field(tg_report *r, const tg_field *f)
{
    uint8_t                 u8;
    uint32_t                v, *num;
    struct tg_report_str   *str;

    str = NULL;
    num = NULL;

    switch (f->key) {

    case TG_F_REQUEST_ID:       str = &r->request_id; break;
    case TG_F_CLIENT:           str = &r->client; break;
    case TG_F_TENANT:           str = &r->tenant; break;
    case TG_F_ENDPOINT:         str = &r->endpoint; break;
    case TG_F_PROVIDER_MODEL:   str = &r->provider_model; break;
    case TG_F_RESPONSE_MODEL:   str = &r->response_model; break;

    case TG_F_ATTEMPT:          num = &r->attempt; break;
    case TG_F_TTFB_MS:          num = &r->ttfb_ms; r->has_ttfb = true; break;
    case TG_F_PROMPT_TOKENS:    num = &r->prompt_tokens; break;
    case TG_F_COMPLETION_TOKENS: num = &r->completion_tokens; break;
    case TG_F_TOTAL_TOKENS:     num = &r->total_tokens; break;
    case TG_F_CACHED_TOKENS:    num = &r->cached_tokens; break;
    case TG_F_REASONING_TOKENS: num = &r->reasoning_tokens; break;
    case TG_F_AUDIO_MS:         num = &r->audio_ms; break;
    case TG_F_CHARACTERS:       num = &r->characters; break;

    case TG_F_STREAM:
    case TG_F_ESTIMATED:
        if (tg_field_u8(f, &u8) != 0) {
            return -1;
        }

        if (f->key == TG_F_STREAM) {
            r->stream = u8 != 0;
        } else {
            r->estimated = u8 != 0;
        }
        return 1;

    default:
        return 0;
    }

    if (str != NULL) {
        str->data = (const char *) f->value;
        str->len = f->len;
        return 1;
    }

    if (tg_field_u32(f, &v) != 0) {
        return -1;
    }

    *num = v;

    switch (f->key) {
    case TG_F_PROMPT_TOKENS:
    case TG_F_COMPLETION_TOKENS:
    case TG_F_TOTAL_TOKENS:
    case TG_F_CACHED_TOKENS:
    case TG_F_REASONING_TOKENS:
    case TG_F_AUDIO_MS:
    case TG_F_CHARACTERS:
        r->tokens = true;
        break;
    }

    return 1;
}


void
tg_usage_cost(const tg_policy *policy, tg_report *r)
{
    tg_price_usage  u;

    r->cost = 0;
    r->cost_overflow = false;
    r->price = NULL;

    if (r->provider == NULL || r->provider_model.data == NULL) {
        return;
    }

    r->price = tg_policy_price(policy, r->provider, strlen(r->provider),
                               r->provider_model.data, r->provider_model.len);

    if (r->price == NULL) {
        return;
    }

    u.input = r->prompt_tokens;
    u.cached = r->cached_tokens;
    u.output = r->completion_tokens;
    u.audio_ms = r->audio_ms;
    u.characters = r->characters;

    r->cost_overflow = tg_price_cost(&r->price->price, &u, &r->cost) != 0;
}


size_t
tg_usage_line(const tg_report *r, const tg_usage_conf *conf, double now,
    char *buf, size_t size)
{
    char        stamp[80], money[TG_MONEY_TEXT_MAX];
    time_t      secs;
    tg_line     l;
    unsigned    ms;
    struct tm   tm;
    uint32_t    cached, reasoning;

    if (size == 0) {
        return 0;
    }

    secs = (time_t) now;
    ms = (unsigned) ((now - (double) secs) * 1000);
    if (ms > 999) {
        ms = 999;
    }

    if (gmtime_r(&secs, &tm) == NULL) {
        memset(&tm, 0, sizeof(tm));
    }

    snprintf(stamp, sizeof(stamp), "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ",
             tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
             tm.tm_min, tm.tm_sec, ms);

    l.p = buf;
    l.end = buf + size;
    l.full = false;

    cached = r->cached_tokens < r->prompt_tokens ? r->cached_tokens
                                                 : r->prompt_tokens;
    reasoning = r->reasoning_tokens < r->completion_tokens
                ? r->reasoning_tokens : r->completion_tokens;

    tg_line_add(&l, "{\"time\":\"%s\"", stamp);
    tg_line_str(&l, "request_id", r->request_id.data, r->request_id.len);
    tg_line_str(&l, "client", r->client.data, r->client.len);
    tg_line_str(&l, "tenant", r->tenant.data, r->tenant.len);
    tg_line_str(&l, "route", r->route, r->route ? strlen(r->route) : 0);
    tg_line_str(&l, "provider", r->provider,
                r->provider ? strlen(r->provider) : 0);
    tg_line_str(&l, "provider_model", r->provider_model.data,
                r->provider_model.len);
    tg_line_str(&l, "response_model", r->response_model.data,
                r->response_model.len);
    tg_line_str(&l, "endpoint", r->endpoint.data, r->endpoint.len);
    tg_line_add(&l, ",\"stream\":%s,\"outcome\":\"%s\"",
                r->stream ? "true" : "false", tg_outcome_name(r->outcome));

    if (r->http_status != 0) {
        tg_line_add(&l, ",\"status\":%u", r->http_status);
    } else {
        tg_line_add(&l, ",\"status\":null");
    }

    tg_line_add(&l, ",\"attempt\":%u,\"tokens\":{\"input\":%u,\"cached\":%u,"
                "\"output\":%u,\"reasoning\":%u,\"total\":%u}",
                r->attempt ? r->attempt : 1, r->prompt_tokens, cached,
                r->completion_tokens, reasoning, r->total_tokens);

    if (r->audio_ms != 0) {
        tg_line_add(&l, ",\"audio_ms\":%u", r->audio_ms);
    }

    if (r->characters != 0) {
        tg_line_add(&l, ",\"characters\":%u", r->characters);
    }

    tg_line_add(&l, ",\"estimated\":%s", r->estimated ? "true" : "false");

    if (r->price != NULL) {
        tg_money_text(r->cost, money, sizeof(money));
        tg_line_add(&l, ",\"cost\":\"%s\"%s", money,
                    r->cost_overflow ? ",\"cost_overflow\":true" : "");
        tg_line_str(&l, "currency", conf->currency,
                    conf->currency ? strlen(conf->currency) : 0);
        tg_line_str(&l, "price_version", conf->price_version,
                    conf->price_version ? strlen(conf->price_version) : 0);

    } else {
        tg_line_add(&l, ",\"cost\":null,\"currency\":null,"
                    "\"price_version\":null");
    }

    if (r->has_ttfb) {
        tg_line_add(&l, ",\"ttfb_ms\":%u", r->ttfb_ms);
    } else {
        tg_line_add(&l, ",\"ttfb_ms\":null");
    }

    tg_line_add(&l, ",\"total_ms\":%u}\n", r->total_ms);

    if (l.full) {
        return 0;
    }

    return (size_t) (l.p - buf);
}


static void
tg_line_add(tg_line *l, const char *fmt, ...)
{
    int      n;
    va_list  ap;

    if (l->full) {
        return;
    }

    va_start(ap, fmt);
    n = vsnprintf(l->p, (size_t) (l->end - l->p), fmt, ap);
    va_end(ap);

    if (n < 0 || n >= l->end - l->p) {
        l->full = true;
        return;
    }

    l->p += n;
}


/* ,"key":"value" escaped, or ,"key":null when s is NULL */

static void
tg_line_str(tg_line *l, const char *key, const char *s, size_t len)
{
    if (s == NULL) {
        tg_line_add(l, ",\"%s\":null", key);
        return;
    }

    tg_line_add(l, ",\"%s\":\"", key);
    tg_line_bytes(l, s, len);
    tg_line_add(l, "\"");
}


/* JSON string contents: escapes, and U+FFFD for bytes that are not UTF-8 */

static void
tg_line_bytes(tg_line *l, const char *s, size_t len)
{
    size_t                i, n;
    const unsigned char  *u = (const unsigned char *) s;

    for (i = 0; i < len && !l->full; i += n) {
        n = 1;

        if (u[i] == '"' || u[i] == '\\') {
            tg_line_add(l, "\\%c", u[i]);

        } else if (u[i] < 0x20 || u[i] == 0x7f) {
            tg_line_add(l, "\\u%04x", u[i]);

        } else if (u[i] < 0x80) {
            if (l->end - l->p < 2) {
                l->full = true;
                return;
            }
            *l->p++ = (char) u[i];

        } else {
            n = tg_utf8_char_len(u + i, len - i);

            if (n == 0) {
                n = 1;
                tg_line_add(l, "\\ufffd");

            } else if (l->end - l->p <= (long) n) {
                l->full = true;
                return;

            } else {
                memcpy(l->p, u + i, n);
                l->p += n;
            }
        }
    }
}


/* tallies by name */

void
tg_usage_names_init(tg_usage_names *t)
{
    memset(t, 0, sizeof(*t));
}


void
tg_usage_names_free(tg_usage_names *t)
{
    size_t  i;

    for (i = 0; i < t->n; i++) {
        free(t->entries[i].name);
    }

    free(t->entries);
    free(t->table);
    memset(t, 0, sizeof(*t));
}


static uint32_t
tg_usage_hash(const char *s, size_t len)
{
    size_t    i;
    uint32_t  h = 2166136261u;

    for (i = 0; i < len; i++) {
        h ^= (unsigned char) s[i];
        h *= 16777619u;
    }

    return h;
}


static int
tg_usage_names_grow(tg_usage_names *t)
{
    size_t            i, j, ncap, nmask;
    uint32_t         *table;
    tg_usage_entry   *e;

    ncap = t->cap ? t->cap * 2 : 16;

    e = realloc(t->entries, ncap * sizeof(tg_usage_entry));
    if (e == NULL) {
        return -1;
    }
    t->entries = e;

    /* the table at most half full */
    nmask = ncap * 2 - 1;
    table = calloc(nmask + 1, sizeof(uint32_t));
    if (table == NULL) {
        return -1;
    }

    for (i = 0; i < t->n; i++) {
        j = tg_usage_hash(e[i].name, strlen(e[i].name)) & nmask;
        while (table[j] != 0) {
            j = (j + 1) & nmask;
        }
        table[j] = (uint32_t) i + 1;
    }

    free(t->table);
    t->table = table;
    t->mask = nmask;
    t->cap = ncap;

    return 0;
}


tg_usage_tally *
tg_usage_names_get(tg_usage_names *t, const char *name, size_t len,
    size_t max)
{
    char            *copy;
    size_t           i;
    uint32_t         v;
    tg_usage_entry  *e;

    if (t->table != NULL) {
        for (i = tg_usage_hash(name, len) & t->mask;
             (v = t->table[i]) != 0;
             i = (i + 1) & t->mask)
        {
            e = &t->entries[v - 1];
            if (strlen(e->name) == len && memcmp(e->name, name, len) == 0) {
                return &e->tally;
            }
        }
    }

    /* one more name would be past the bound: folded into one */

    if (t->n >= max || memchr(name, '\0', len) != NULL) {
        t->folded++;
        return &t->other;
    }

    if (t->n == t->cap && tg_usage_names_grow(t) != 0) {
        t->folded++;
        return &t->other;
    }

    copy = malloc(len + 1);
    if (copy == NULL) {
        t->folded++;
        return &t->other;
    }

    memcpy(copy, name, len);
    copy[len] = '\0';

    e = &t->entries[t->n];
    e->name = copy;
    memset(&e->tally, 0, sizeof(e->tally));

    for (i = tg_usage_hash(name, len) & t->mask; t->table[i] != 0;
         i = (i + 1) & t->mask)
    {
        /* void */
    }

    t->table[i] = (uint32_t) ++t->n;

    return &e->tally;
}


void
tg_usage_tally_add(tg_usage_tally *t, const tg_report *r)
{
    t->requests++;
    t->input += r->prompt_tokens;
    t->cached += r->cached_tokens < r->prompt_tokens ? r->cached_tokens
                                                     : r->prompt_tokens;
    t->output += r->completion_tokens;
    t->reasoning += r->reasoning_tokens < r->completion_tokens
                    ? r->reasoning_tokens : r->completion_tokens;
    t->estimated += r->estimated;

    /* a sum past 64 bits stays at the most it can say */
    t->cost = t->cost + r->cost < t->cost ? UINT64_MAX : t->cost + r->cost;
}
