
/*
 * Copyright (C) The Tailgate authors
 *
 * The few functions of nginx's core that the module's leaf files call,
 * written for the fuzz harnesses (fuzz/README.md says why): the module's
 * files are compiled against nginx's own headers, and link against these
 * instead of nginx's objects, which Debian's nginx-dev does not ship.
 *
 * Each one does what nginx documents for it.  The pool is the one place
 * that differs on purpose: every allocation is a malloc() of its own, so
 * that AddressSanitizer knows the bounds of each, where nginx's pool
 * would hand out neighbouring pieces of one block and hide an overflow.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include <stdio.h>
#include <stdlib.h>

#include "fuzz_ngx.h"


static ngx_time_t   fuzz_ngx_time;

volatile ngx_time_t   *ngx_cached_time = &fuzz_ngx_time;
volatile ngx_msec_t    ngx_current_msec;
ngx_uint_t             ngx_pagesize = 4096;


void
fuzz_ngx_set_time(time_t now)
{
    fuzz_ngx_time.sec = now;
    fuzz_ngx_time.msec = 0;
    fuzz_ngx_time.gmtoff = 0;
    ngx_current_msec = (ngx_msec_t) now * 1000;
}


/* memory */

void *
ngx_alloc(size_t size, ngx_log_t *log)
{
    void  *p;

    p = malloc(size ? size : 1);

    if (p == NULL && log) {
        ngx_log_error(NGX_LOG_EMERG, log, ngx_errno,
                      "malloc(%uz) failed", size);
    }

    return p;
}


void *
ngx_calloc(size_t size, ngx_log_t *log)
{
    void  *p;

    p = ngx_alloc(size, log);

    if (p) {
        ngx_memzero(p, size);
    }

    return p;
}


ngx_pool_t *
ngx_create_pool(size_t size, ngx_log_t *log)
{
    ngx_pool_t  *pool;

    pool = calloc(1, sizeof(ngx_pool_t));
    if (pool == NULL) {
        return NULL;
    }

    pool->max = size;
    pool->current = pool;
    pool->log = log;

    return pool;
}


static void
fuzz_ngx_free_large(ngx_pool_t *pool)
{
    ngx_pool_large_t  *l, *next;

    for (l = pool->large; l; l = next) {
        next = l->next;
        free(l->alloc);
        free(l);
    }

    pool->large = NULL;
}


void
ngx_destroy_pool(ngx_pool_t *pool)
{
    ngx_pool_cleanup_t  *c;

    /* the cleanups live in the pool: run them before it goes */

    for (c = pool->cleanup; c; c = c->next) {
        if (c->handler) {
            c->handler(c->data);
        }
    }

    fuzz_ngx_free_large(pool);
    free(pool);
}


void
ngx_reset_pool(ngx_pool_t *pool)
{
    fuzz_ngx_free_large(pool);
    pool->cleanup = NULL;
}


static void *
fuzz_ngx_pool_alloc(ngx_pool_t *pool, size_t size, size_t alignment)
{
    void              *p;
    ngx_pool_large_t  *l;

    l = malloc(sizeof(ngx_pool_large_t));
    if (l == NULL) {
        return NULL;
    }

    if (alignment) {
        size = (size + alignment - 1) & ~(alignment - 1);
        p = aligned_alloc(alignment, size ? size : alignment);

    } else {
        p = malloc(size ? size : 1);
    }

    if (p == NULL) {
        free(l);
        return NULL;
    }

    l->alloc = p;
    l->next = pool->large;
    pool->large = l;

    return p;
}


void *
ngx_palloc(ngx_pool_t *pool, size_t size)
{
    return fuzz_ngx_pool_alloc(pool, size, 0);
}


void *
ngx_pnalloc(ngx_pool_t *pool, size_t size)
{
    return fuzz_ngx_pool_alloc(pool, size, 0);
}


void *
ngx_pcalloc(ngx_pool_t *pool, size_t size)
{
    void  *p;

    p = fuzz_ngx_pool_alloc(pool, size, 0);

    if (p) {
        ngx_memzero(p, size);
    }

    return p;
}


void *
ngx_pmemalign(ngx_pool_t *pool, size_t size, size_t alignment)
{
    return fuzz_ngx_pool_alloc(pool, size, alignment);
}


ngx_int_t
ngx_pfree(ngx_pool_t *pool, void *p)
{
    ngx_pool_large_t  **l, *found;

    for (l = &pool->large; *l; l = &(*l)->next) {
        if ((*l)->alloc == p) {
            found = *l;
            *l = found->next;
            free(found->alloc);
            free(found);
            return NGX_OK;
        }
    }

    return NGX_DECLINED;
}


ngx_pool_cleanup_t *
ngx_pool_cleanup_add(ngx_pool_t *p, size_t size)
{
    ngx_pool_cleanup_t  *c;

    c = ngx_palloc(p, sizeof(ngx_pool_cleanup_t));
    if (c == NULL) {
        return NULL;
    }

    if (size) {
        c->data = ngx_palloc(p, size);
        if (c->data == NULL) {
            return NULL;
        }

    } else {
        c->data = NULL;
    }

    c->handler = NULL;
    c->next = p->cleanup;
    p->cleanup = c;

    return c;
}


/* arrays: a full one moves to twice the room, the old stays in the pool */

ngx_array_t *
ngx_array_create(ngx_pool_t *p, ngx_uint_t n, size_t size)
{
    ngx_array_t  *a;

    a = ngx_palloc(p, sizeof(ngx_array_t));
    if (a == NULL) {
        return NULL;
    }

    if (ngx_array_init(a, p, n, size) != NGX_OK) {
        return NULL;
    }

    return a;
}


void *
ngx_array_push_n(ngx_array_t *a, ngx_uint_t n)
{
    void        *elts;
    ngx_uint_t   nalloc;

    if (a->nelts + n > a->nalloc) {
        nalloc = 2 * ngx_max(n, a->nalloc);

        elts = ngx_palloc(a->pool, nalloc * a->size);
        if (elts == NULL) {
            return NULL;
        }

        if (a->nelts) {
            ngx_memcpy(elts, a->elts, a->nelts * a->size);
        }

        a->elts = elts;
        a->nalloc = nalloc;
    }

    elts = (u_char *) a->elts + a->size * a->nelts;
    a->nelts += n;

    return elts;
}


void *
ngx_array_push(ngx_array_t *a)
{
    return ngx_array_push_n(a, 1);
}


/* strings */

static ngx_inline u_char
fuzz_ngx_lower(u_char c)
{
    return (c >= 'A' && c <= 'Z') ? (u_char) (c | 0x20) : c;
}


void
ngx_strlow(u_char *dst, u_char *src, size_t n)
{
    while (n--) {
        *dst++ = fuzz_ngx_lower(*src++);
    }
}


/* like strcasecmp(3) for ASCII letters only: stops at the first NUL */

ngx_int_t
ngx_strcasecmp(u_char *s1, u_char *s2)
{
    return ngx_strncasecmp(s1, s2, (size_t) -1);
}


ngx_int_t
ngx_strncasecmp(u_char *s1, u_char *s2, size_t n)
{
    u_char  a, b;

    for ( /* void */ ; n; n--) {
        a = fuzz_ngx_lower(*s1++);
        b = fuzz_ngx_lower(*s2++);

        if (a != b) {
            return a - b;
        }

        if (a == '\0') {
            return 0;
        }
    }

    return 0;
}


void
ngx_explicit_memzero(void *buf, size_t n)
{
    explicit_bzero(buf, n);
}


/* n digits, no sign; NGX_ERROR for none, anything else, or an overflow */

time_t
ngx_atotm(u_char *line, size_t n)
{
    time_t  value, digit;

    if (n == 0) {
        return NGX_ERROR;
    }

    for (value = 0; n--; line++) {
        if (*line < '0' || *line > '9') {
            return NGX_ERROR;
        }

        digit = *line - '0';

        if (value > (NGX_MAX_TIME_T_VALUE - digit) / 10) {
            return NGX_ERROR;
        }

        value = value * 10 + digit;
    }

    return value;
}


ngx_int_t
ngx_hextoi(u_char *line, size_t n)
{
    u_char     c;
    ngx_int_t  value, digit;

    if (n == 0) {
        return NGX_ERROR;
    }

    for (value = 0; n--; line++) {
        c = *line;

        if (c >= '0' && c <= '9') {
            digit = c - '0';

        } else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f') {
            digit = (c | 0x20) - 'a' + 10;

        } else {
            return NGX_ERROR;
        }

        if (value > (NGX_MAX_INT_T_VALUE - digit) / 16) {
            return NGX_ERROR;
        }

        value = value * 16 + digit;
    }

    return value;
}


/*
 * '"', '\\' and the control characters escaped, as nginx's escape=json
 * does: \n \r \t \b \f by name, the others as \u00XX.  Without dst, the
 * number of bytes the escapes add.
 */

uintptr_t
ngx_escape_json(u_char *dst, u_char *src, size_t size)
{
    u_char                c;
    uintptr_t             extra;
    static const u_char   hex[] = "0123456789abcdef";

    if (dst == NULL) {
        for (extra = 0; size; size--) {
            c = *src++;

            if (c == '"' || c == '\\' || c == '\n' || c == '\r' || c == '\t'
                || c == '\b' || c == '\f')
            {
                extra += 1;

            } else if (c < 0x20) {
                extra += 5;
            }
        }

        return extra;
    }

    for ( /* void */ ; size; size--) {
        c = *src++;

        switch (c) {
        case '"':  *dst++ = '\\'; *dst++ = '"'; continue;
        case '\\': *dst++ = '\\'; *dst++ = '\\'; continue;
        case '\n': *dst++ = '\\'; *dst++ = 'n'; continue;
        case '\r': *dst++ = '\\'; *dst++ = 'r'; continue;
        case '\t': *dst++ = '\\'; *dst++ = 't'; continue;
        case '\b': *dst++ = '\\'; *dst++ = 'b'; continue;
        case '\f': *dst++ = '\\'; *dst++ = 'f'; continue;
        }

        if (c < 0x20) {
            *dst++ = '\\'; *dst++ = 'u'; *dst++ = '0'; *dst++ = '0';
            *dst++ = hex[c >> 4];
            *dst++ = hex[c & 0xf];
            continue;
        }

        *dst++ = c;
    }

    return (uintptr_t) dst;
}


/*
 * nginx's formatted output, the conversions the module's answer and
 * request translation use: %s, %*s (a length, then the bytes), %V, %c,
 * %d, %i, %ui, %l, %uL, %L, %O, %T, %z, %uz, %p, %%, with an optional
 * "0" and a width, and x/X for hex.  Never past last.
 */

static u_char *
fuzz_ngx_number(u_char *buf, u_char *last, uint64_t ui64, u_char zero,
    ngx_uint_t hexadecimal, ngx_uint_t width)
{
    u_char         *p, temp[NGX_INT64_LEN + 1];
    size_t          len;
    static u_char   hex[] = "0123456789abcdef";
    static u_char   HEX[] = "0123456789ABCDEF";

    p = temp + NGX_INT64_LEN;

    do {
        if (hexadecimal) {
            *--p = (hexadecimal == 1 ? hex : HEX)[ui64 & 0xf];
            ui64 >>= 4;

        } else {
            *--p = (u_char) (ui64 % 10 + '0');
            ui64 /= 10;
        }
    } while (ui64 != 0);

    len = (temp + NGX_INT64_LEN) - p;

    while (len++ < width && buf < last) {
        *buf++ = zero;
    }

    len = (temp + NGX_INT64_LEN) - p;

    if (buf + len > last) {
        len = last - buf;
    }

    return ngx_cpymem(buf, p, len);
}


u_char *
ngx_vslprintf(u_char *buf, u_char *last, const char *fmt, va_list args)
{
    u_char      *p, zero;
    size_t       len, slen;
    int64_t      i64;
    uint64_t     ui64;
    ngx_str_t   *v;
    ngx_uint_t   width, sign, hex;

    while (*fmt && buf < last) {

        if (*fmt != '%') {
            *buf++ = *fmt++;
            continue;
        }

        fmt++;

        zero = (u_char) ((*fmt == '0') ? '0' : ' ');
        width = 0;
        sign = 1;
        hex = 0;
        slen = (size_t) -1;
        i64 = 0;
        ui64 = 0;

        while (*fmt >= '0' && *fmt <= '9') {
            width = width * 10 + (*fmt++ - '0');
        }

        for ( ;; ) {
            switch (*fmt) {
            case 'u':
                sign = 0;
                fmt++;
                continue;
            case 'x':
                hex = 1;
                sign = 0;
                fmt++;
                continue;
            case 'X':
                hex = 2;
                sign = 0;
                fmt++;
                continue;
            case '*':
                slen = va_arg(args, size_t);
                fmt++;
                continue;
            default:
                break;
            }

            break;
        }

        switch (*fmt) {

        case 'V':
            v = va_arg(args, ngx_str_t *);
            len = ngx_min((size_t) (last - buf), v->len);
            buf = ngx_cpymem(buf, v->data, len);
            fmt++;
            continue;

        case 's':
            p = va_arg(args, u_char *);
            len = (slen == (size_t) -1) ? ngx_strlen(p) : slen;
            len = ngx_min((size_t) (last - buf), len);
            buf = ngx_cpymem(buf, p, len);
            fmt++;
            continue;

        case 'c':
            *buf++ = (u_char) va_arg(args, int);
            fmt++;
            continue;

        case '%':
            *buf++ = '%';
            fmt++;
            continue;

        case 'd':
            if (sign) {
                i64 = (int64_t) va_arg(args, int);
            } else {
                ui64 = (uint64_t) va_arg(args, u_int);
            }
            break;

        case 'i':
            if (sign) {
                i64 = (int64_t) va_arg(args, ngx_int_t);
            } else {
                ui64 = (uint64_t) va_arg(args, ngx_uint_t);
            }
            break;

        case 'l':
            if (sign) {
                i64 = (int64_t) va_arg(args, long);
            } else {
                ui64 = (uint64_t) va_arg(args, u_long);
            }
            break;

        case 'L':
            if (sign) {
                i64 = va_arg(args, int64_t);
            } else {
                ui64 = va_arg(args, uint64_t);
            }
            break;

        case 'O':
            i64 = (int64_t) va_arg(args, off_t);
            sign = 1;
            break;

        case 'T':
            i64 = (int64_t) va_arg(args, time_t);
            sign = 1;
            break;

        case 'z':
            if (sign) {
                i64 = (int64_t) va_arg(args, ssize_t);
            } else {
                ui64 = (uint64_t) va_arg(args, size_t);
            }
            break;

        case 'p':
            ui64 = (uintptr_t) va_arg(args, void *);
            hex = 2;
            sign = 0;
            zero = '0';
            width = 2 * sizeof(void *);
            break;

        default:
            /* a format this shim does not know: a harness bug */
            fprintf(stderr, "fuzz: ngx_vslprintf: unknown format %%%c\n",
                    *fmt);
            abort();
        }

        fmt++;

        if (sign) {
            if (i64 < 0) {
                *buf++ = '-';
                ui64 = (uint64_t) -i64;

            } else {
                ui64 = (uint64_t) i64;
            }
        }

        buf = fuzz_ngx_number(buf, last, ui64, zero, hex, width);
    }

    return buf;
}


u_char * ngx_cdecl
ngx_sprintf(u_char *buf, const char *fmt, ...)
{
    u_char   *p;
    va_list   args;

    va_start(args, fmt);
    p = ngx_vslprintf(buf, (void *) -1, fmt, args);
    va_end(args);

    return p;
}


/* chains: links kept in the pool's list once freed, as nginx does */

ngx_chain_t *
ngx_alloc_chain_link(ngx_pool_t *pool)
{
    ngx_chain_t  *cl;

    cl = pool->chain;

    if (cl) {
        pool->chain = cl->next;
        return cl;
    }

    return ngx_palloc(pool, sizeof(ngx_chain_t));
}


ngx_chain_t *
ngx_chain_get_free_buf(ngx_pool_t *p, ngx_chain_t **free)
{
    ngx_chain_t  *cl;

    if (*free) {
        cl = *free;
        *free = cl->next;
        cl->next = NULL;
        return cl;
    }

    cl = ngx_alloc_chain_link(p);
    if (cl == NULL) {
        return NULL;
    }

    cl->buf = ngx_calloc_buf(p);
    if (cl->buf == NULL) {
        return NULL;
    }

    cl->next = NULL;

    return cl;
}


void
ngx_chain_update_chains(ngx_pool_t *p, ngx_chain_t **free, ngx_chain_t **busy,
    ngx_chain_t **out, ngx_buf_tag_t tag)
{
    ngx_chain_t  *cl;

    if (*out) {
        if (*busy == NULL) {
            *busy = *out;

        } else {
            for (cl = *busy; cl->next; cl = cl->next) { /* void */ }

            cl->next = *out;
        }

        *out = NULL;
    }

    while (*busy) {
        cl = *busy;

        if (cl->buf->tag != tag) {
            *busy = cl->next;
            ngx_free_chain(p, cl);
            continue;
        }

        if (ngx_buf_size(cl->buf) != 0) {
            break;
        }

        cl->buf->pos = cl->buf->start;
        cl->buf->last = cl->buf->start;

        *busy = cl->next;
        cl->next = *free;
        *free = cl;
    }
}


/* base64url, RFC 4648 section 5, without padding */

static const u_char  fuzz_b64url[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";


void
ngx_encode_base64url(ngx_str_t *dst, ngx_str_t *src)
{
    u_char    *d, *s;
    size_t     n;
    uint32_t   v;

    s = src->data;
    d = dst->data;

    for (n = src->len; n >= 3; n -= 3, s += 3) {
        v = (uint32_t) s[0] << 16 | (uint32_t) s[1] << 8 | s[2];
        *d++ = fuzz_b64url[v >> 18];
        *d++ = fuzz_b64url[(v >> 12) & 0x3f];
        *d++ = fuzz_b64url[(v >> 6) & 0x3f];
        *d++ = fuzz_b64url[v & 0x3f];
    }

    if (n) {
        v = (uint32_t) s[0] << 16 | (n == 2 ? (uint32_t) s[1] << 8 : 0);
        *d++ = fuzz_b64url[v >> 18];
        *d++ = fuzz_b64url[(v >> 12) & 0x3f];

        if (n == 2) {
            *d++ = fuzz_b64url[(v >> 6) & 0x3f];
        }
    }

    dst->len = d - dst->data;
}


static ngx_int_t
fuzz_b64url_value(u_char c)
{
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }

    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 26;
    }

    if (c >= '0' && c <= '9') {
        return c - '0' + 52;
    }

    if (c == '-') {
        return 62;
    }

    if (c == '_') {
        return 63;
    }

    return -1;
}


/*
 * What nginx's decoder does: the text up to the first '=' must be of the
 * alphabet, and not one character more than a multiple of four; the bits
 * left over at the end are dropped.
 */

ngx_int_t
ngx_decode_base64url(ngx_str_t *dst, ngx_str_t *src)
{
    u_char    *d;
    size_t     len, i;
    uint32_t   v;
    ngx_int_t  c;
    ngx_uint_t bits;

    for (len = 0; len < src->len && src->data[len] != '='; len++) {
        if (fuzz_b64url_value(src->data[len]) < 0) {
            return NGX_ERROR;
        }
    }

    if (len % 4 == 1) {
        return NGX_ERROR;
    }

    d = dst->data;
    v = 0;
    bits = 0;

    for (i = 0; i < len; i++) {
        c = fuzz_b64url_value(src->data[i]);
        v = (v << 6) | (uint32_t) c;
        bits += 6;

        if (bits >= 8) {
            bits -= 8;
            *d++ = (u_char) (v >> bits);
            v &= (1u << bits) - 1;
        }
    }

    dst->len = d - dst->data;

    return NGX_OK;
}


/* MurmurHash2, 32 bits, seeded with the length as nginx does */

uint32_t
ngx_murmur_hash2(u_char *data, size_t len)
{
    uint32_t  h, k;

    h = 0 ^ (uint32_t) len;

    while (len >= 4) {
        k = (uint32_t) data[0] | (uint32_t) data[1] << 8
            | (uint32_t) data[2] << 16 | (uint32_t) data[3] << 24;

        k *= 0x5bd1e995;
        k ^= k >> 24;
        k *= 0x5bd1e995;

        h *= 0x5bd1e995;
        h ^= k;

        data += 4;
        len -= 4;
    }

    switch (len) {
    case 3:
        h ^= (uint32_t) data[2] << 16;
        /* fall through */
    case 2:
        h ^= (uint32_t) data[1] << 8;
        /* fall through */
    case 1:
        h ^= data[0];
        h *= 0x5bd1e995;
    }

    h ^= h >> 13;
    h *= 0x5bd1e995;
    h ^= h >> 15;

    return h;
}


/*
 * Logs: the harnesses' log level lets every call through, so its
 * arguments are evaluated; the text is shown with TAILGATE_FUZZ_LOG=1.
 * nginx's formats (%V, %uz) are not printf's: only the format is shown.
 */

void ngx_cdecl
ngx_log_error_core(ngx_uint_t level, ngx_log_t *log, ngx_err_t err,
    const char *fmt, ...)
{
    static int  show = -1;

    if (show == -1) {
        show = getenv("TAILGATE_FUZZ_LOG") != NULL;
    }

    if (show) {
        fprintf(stderr, "ngx log [%u] err %d: %s\n", (unsigned) level,
                (int) err, fmt);
    }
}


/* only configuration-time code calls it, which no harness runs */

void ngx_cdecl
ngx_conf_log_error(ngx_uint_t level, ngx_conf_t *cf, ngx_err_t err,
    const char *fmt, ...)
{
    fprintf(stderr, "fuzz: ngx_conf_log_error called: %s\n", fmt);
    abort();
}


/* for the harnesses */

ngx_log_t  fuzz_ngx_log;


void
fuzz_ngx_init(void)
{
    fuzz_ngx_log.log_level = NGX_LOG_DEBUG_ALL | NGX_LOG_DEBUG;
    fuzz_ngx_set_time(FUZZ_NOW);
}


ngx_pool_t *
fuzz_ngx_pool(void)
{
    ngx_pool_t  *pool;

    pool = ngx_create_pool(NGX_DEFAULT_POOL_SIZE, &fuzz_ngx_log);
    FUZZ_CHECK(pool != NULL);

    return pool;
}
