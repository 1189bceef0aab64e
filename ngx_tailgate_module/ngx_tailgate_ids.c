
/*
 * Copyright (C) The Tailgate authors
 *
 * Ids from SipHash-128 of a counter under a random key of this worker.
 * nginx's own $request_id takes RAND_bytes() for each request, which in
 * OpenSSL 3 costs more than all of the module's work on a small request;
 * this costs a hash of 16 bytes.
 */


#include "ngx_tailgate_ids.h"
#include "ngx_tailgate_siphash.h"

#include <openssl/rand.h>

#if defined(__SSE2__) && !defined(NGX_TAILGATE_SCALAR)
#include <emmintrin.h>
#endif


ngx_int_t
ngx_tailgate_id(u_char *out)
{
    uint64_t  seq[2];

    static uint64_t   counter;
    static u_char     key[NGX_TAILGATE_SIPHASH_KEY_LEN];
    static ngx_pid_t  keyed_in;

    if (keyed_in != ngx_pid) {
        /* a key for each worker, made in it: a fork shares no key */
        if (RAND_bytes(key, sizeof(key)) != 1) {
            return NGX_ERROR;
        }

        keyed_in = ngx_pid;
        counter = 0;
    }

    seq[0] = ++counter;
    seq[1] = (uint64_t) ngx_pid;

    ngx_tailgate_siphash128(key, (u_char *) seq, sizeof(seq), out);

    return NGX_OK;
}


/*
 * An id in lower-case hex, on every request: with SSE2 (every x86-64 has
 * it) all 32 digits at once, the nibbles spread out and each made a digit
 * or a letter; elsewhere two digits a byte from a table of all 256 pairs
 * (ngx_hex_dump() takes a nibble at a time).
 */

#if defined(__SSE2__) && !defined(NGX_TAILGATE_SCALAR)

static void
ngx_tailgate_id_hex(u_char *out, u_char *id)
{
    __m128i  v, hi, lo, nibble, nine, zero, letter;

    nibble = _mm_set1_epi8(0x0f);
    nine = _mm_set1_epi8(9);
    zero = _mm_set1_epi8('0');
    letter = _mm_set1_epi8('a' - '0' - 10);

    v = _mm_loadu_si128((const __m128i *) id);

    lo = _mm_and_si128(v, nibble);
    hi = _mm_and_si128(_mm_srli_epi16(v, 4), nibble);

    /* the high nibble of each byte first */

    v = _mm_unpacklo_epi8(hi, lo);
    v = _mm_add_epi8(_mm_add_epi8(v, zero),
                     _mm_and_si128(_mm_cmpgt_epi8(v, nine), letter));
    _mm_storeu_si128((__m128i *) out, v);

    v = _mm_unpackhi_epi8(hi, lo);
    v = _mm_add_epi8(_mm_add_epi8(v, zero),
                     _mm_and_si128(_mm_cmpgt_epi8(v, nine), letter));
    _mm_storeu_si128((__m128i *) (out + 16), v);
}

#else

static void
ngx_tailgate_id_hex(u_char *out, u_char *id)
{
    ngx_uint_t  i;

    static u_char  pairs[512];
    static u_char  filled;
    static u_char  hex[] = "0123456789abcdef";

    if (!filled) {
        for (i = 0; i < 256; i++) {
            pairs[2 * i] = hex[i >> 4];
            pairs[2 * i + 1] = hex[i & 0xf];
        }

        filled = 1;
    }

    for (i = 0; i < NGX_TAILGATE_ID_LEN; i++) {
        ngx_memcpy(out + 2 * i, &pairs[2 * id[i]], 2);
    }
}

#endif


/* whatever reads $request_id later (the access log) reads the same value */

ngx_http_variable_value_t *
ngx_tailgate_request_id(ngx_http_request_t *r, ngx_int_t index)
{
    u_char                     *id;
    ngx_http_variable_value_t  *v;
    u_char                      hash[NGX_TAILGATE_ID_LEN];

    v = &r->variables[index];

    if (v->valid || v->not_found) {
        return v;
    }

    if (ngx_tailgate_id(hash) != NGX_OK) {
        return ngx_http_get_indexed_variable(r, index);
    }

    id = ngx_pnalloc(r->pool, 2 * NGX_TAILGATE_ID_LEN);
    if (id == NULL) {
        return NULL;
    }

    ngx_tailgate_id_hex(id, hash);

    v->data = id;
    v->len = 2 * NGX_TAILGATE_ID_LEN;
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;

    return v;
}
