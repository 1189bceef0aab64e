/*
 * FNV-1a, 64 bits: the hash of the policy's name tables (policy.c), the
 * usage table's index (usage_pending.c) and the limits state file's check
 * sum (limits_state.c).  Not for anything an attacker must not collide:
 * a table's probes are bounded by its size, the check sum finds a torn
 * file, not a forged one.
 */

#ifndef TG_FNV_H
#define TG_FNV_H

#include <stddef.h>
#include <stdint.h>


#define TG_FNV_OFFSET  0xcbf29ce484222325ull
#define TG_FNV_PRIME   0x100000001b3ull


/* h (TG_FNV_OFFSET to start) on through len bytes of p */

static inline uint64_t
tg_fnv1a(uint64_t h, const void *p, size_t len)
{
    size_t                i;
    const unsigned char  *b = p;

    for (i = 0; i < len; i++) {
        h ^= b[i];
        h *= TG_FNV_PRIME;
    }

    return h;
}


#endif /* TG_FNV_H */
