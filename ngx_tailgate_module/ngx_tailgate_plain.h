
/*
 * Copyright (C) The Tailgate authors
 *
 * A leaf: the plain bytes of a JSON string, and the rest of a line,
 * found fast.
 */


#ifndef _NGX_TAILGATE_PLAIN_H_INCLUDED_
#define _NGX_TAILGATE_PLAIN_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


/*
 * The hot loop of the JSON readers: most bytes of a body or an answer are
 * plain bytes of a string.  Returns where the first byte that is not lies
 * - '"', '\\' or a control character - or end.  Sixteen bytes at a time
 * with SSE2 (every x86-64 has it), eight at a time elsewhere;
 * NGX_TAILGATE_SCALAR builds the second on x86-64 too, so that it is
 * tested there (t/22-json-scalar.t).
 */

#if defined(__SSE2__) && !defined(NGX_TAILGATE_SCALAR)

#include <emmintrin.h>

static ngx_inline u_char *
ngx_tailgate_plain(u_char *p, u_char *end)
{
    int      mask;
    __m128i  v, quote, backslash, below_space;

    quote = _mm_set1_epi8('"');
    backslash = _mm_set1_epi8('\\');
    below_space = _mm_set1_epi8(0x1f);

    while (end - p >= 16) {
        v = _mm_loadu_si128((const __m128i *) p);

        /* a byte <= 0x1f is its own maximum with 0x1f */
        mask = _mm_movemask_epi8(
                   _mm_or_si128(
                       _mm_or_si128(_mm_cmpeq_epi8(v, quote),
                                    _mm_cmpeq_epi8(v, backslash)),
                       _mm_cmpeq_epi8(_mm_max_epu8(v, below_space),
                                      below_space)));

        if (mask) {
            return p + __builtin_ctz(mask);
        }

        p += 16;
    }

    while (p < end && *p >= 0x20 && *p != '"' && *p != '\\') {
        p++;
    }

    return p;
}


/* the first CR or LF, or end: the rest of an event stream's line */

static ngx_inline u_char *
ngx_tailgate_line_end(u_char *p, u_char *end)
{
    int      mask;
    __m128i  v, cr, lf;

    cr = _mm_set1_epi8('\r');
    lf = _mm_set1_epi8('\n');

    while (end - p >= 16) {
        v = _mm_loadu_si128((const __m128i *) p);

        mask = _mm_movemask_epi8(_mm_or_si128(_mm_cmpeq_epi8(v, cr),
                                              _mm_cmpeq_epi8(v, lf)));

        if (mask) {
            return p + __builtin_ctz(mask);
        }

        p += 16;
    }

    while (p < end && *p != '\r' && *p != '\n') {
        p++;
    }

    return p;
}

#else

#define NGX_TAILGATE_ONES   0x0101010101010101ULL
#define NGX_TAILGATE_HIGHS  0x8080808080808080ULL


static ngx_inline u_char *
ngx_tailgate_plain(u_char *p, u_char *end)
{
    uint64_t  w, quote, backslash, control;

    /* the classic zero-byte test, (x - 0x01..) & ~x & 0x80.. per class */

    while (end - p >= 8) {
        ngx_memcpy(&w, p, 8);

        quote = w ^ (NGX_TAILGATE_ONES * '"');
        backslash = w ^ (NGX_TAILGATE_ONES * '\\');

        quote = (quote - NGX_TAILGATE_ONES) & ~quote;
        backslash = (backslash - NGX_TAILGATE_ONES) & ~backslash;
        control = (w - NGX_TAILGATE_ONES * 0x20) & ~w;

        if ((quote | backslash | control) & NGX_TAILGATE_HIGHS) {
            break;
        }

        p += 8;
    }

    while (p < end && *p >= 0x20 && *p != '"' && *p != '\\') {
        p++;
    }

    return p;
}


static ngx_inline u_char *
ngx_tailgate_line_end(u_char *p, u_char *end)
{
    uint64_t  w, cr, lf;

    while (end - p >= 8) {
        ngx_memcpy(&w, p, 8);

        cr = w ^ (NGX_TAILGATE_ONES * '\r');
        lf = w ^ (NGX_TAILGATE_ONES * '\n');

        cr = (cr - NGX_TAILGATE_ONES) & ~cr;
        lf = (lf - NGX_TAILGATE_ONES) & ~lf;

        if ((cr | lf) & NGX_TAILGATE_HIGHS) {
            break;
        }

        p += 8;
    }

    while (p < end && *p != '\r' && *p != '\n') {
        p++;
    }

    return p;
}

#endif


#endif /* _NGX_TAILGATE_PLAIN_H_INCLUDED_ */
