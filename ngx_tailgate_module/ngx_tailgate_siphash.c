
/*
 * Copyright (C) The Tailgate authors
 *
 * SipHash-2-4 with a 128-bit result (Aumasson and Bernstein, 2012): a
 * keyed hash that nobody without the key can predict or collide on
 * purpose, at a fraction of the cost of SHA-256 for short inputs.  Used
 * to remember a connection's API key without keeping the key.
 *
 * Plain C on purpose, with no nginx headers: t/34-siphash.t builds this
 * file alone and checks it against the reference test vectors.
 */


#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "ngx_tailgate_siphash.h"


#define ngx_tailgate_rotl(x, b)  (((x) << (b)) | ((x) >> (64 - (b))))

#define ngx_tailgate_sipround(v)                                              \
    v[0] += v[1]; v[1] = ngx_tailgate_rotl(v[1], 13); v[1] ^= v[0];           \
    v[0] = ngx_tailgate_rotl(v[0], 32);                                       \
    v[2] += v[3]; v[3] = ngx_tailgate_rotl(v[3], 16); v[3] ^= v[2];           \
    v[0] += v[3]; v[3] = ngx_tailgate_rotl(v[3], 21); v[3] ^= v[0];           \
    v[2] += v[1]; v[1] = ngx_tailgate_rotl(v[1], 17); v[1] ^= v[2];           \
    v[2] = ngx_tailgate_rotl(v[2], 32)


/* the first n < 8 bytes at p as a little-endian number */

static inline uint64_t
ngx_tailgate_le64_tail(const unsigned char *p, size_t n)
{
    uint64_t  w;

    w = 0;

    switch (n) {
    case 7:
        w |= (uint64_t) p[6] << 48;
        /* fall through */
    case 6:
        w |= (uint64_t) p[5] << 40;
        /* fall through */
    case 5:
        w |= (uint64_t) p[4] << 32;
        /* fall through */
    case 4:
        w |= (uint64_t) p[3] << 24;
        /* fall through */
    case 3:
        w |= (uint64_t) p[2] << 16;
        /* fall through */
    case 2:
        w |= (uint64_t) p[1] << 8;
        /* fall through */
    case 1:
        w |= (uint64_t) p[0];
    }

    return w;
}


static inline uint64_t
ngx_tailgate_le64(const unsigned char *p)
{
    uint64_t  w;

    memcpy(&w, p, sizeof(uint64_t));

#if (__BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__)
    w = __builtin_bswap64(w);
#endif

    return w;
}


static inline void
ngx_tailgate_put_le64(unsigned char *p, uint64_t w)
{
#if (__BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__)
    w = __builtin_bswap64(w);
#endif

    memcpy(p, &w, sizeof(uint64_t));
}


static inline void
ngx_tailgate_sip_block(uint64_t *v, uint64_t m)
{
    v[3] ^= m;
    ngx_tailgate_sipround(v);
    ngx_tailgate_sipround(v);
    v[0] ^= m;
}


void
ngx_tailgate_siphash128(const unsigned char *key, const unsigned char *data,
    size_t len, unsigned char *out)
{
    size_t    left;
    uint64_t  k0, k1, v[4];

    k0 = ngx_tailgate_le64(key);
    k1 = ngx_tailgate_le64(key + 8);

    v[0] = k0 ^ 0x736f6d6570736575ULL;
    v[1] = k1 ^ 0x646f72616e646f6dULL ^ 0xee;
    v[2] = k0 ^ 0x6c7967656e657261ULL;
    v[3] = k1 ^ 0x7465646279746573ULL;

    for (left = len; left >= 8; left -= 8, data += 8) {
        ngx_tailgate_sip_block(v, ngx_tailgate_le64(data));
    }

    /* the last block carries the length in its top byte */
    ngx_tailgate_sip_block(v, ngx_tailgate_le64_tail(data, left)
                              | (uint64_t) len << 56);

    v[2] ^= 0xee;
    ngx_tailgate_sipround(v);
    ngx_tailgate_sipround(v);
    ngx_tailgate_sipround(v);
    ngx_tailgate_sipround(v);
    ngx_tailgate_put_le64(out, v[0] ^ v[1] ^ v[2] ^ v[3]);

    v[1] ^= 0xdd;
    ngx_tailgate_sipround(v);
    ngx_tailgate_sipround(v);
    ngx_tailgate_sipround(v);
    ngx_tailgate_sipround(v);
    ngx_tailgate_put_le64(out + 8, v[0] ^ v[1] ^ v[2] ^ v[3]);
}
