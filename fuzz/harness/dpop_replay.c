
/*
 * Copyright (C) The Tailgate authors
 *
 * dpop_replay: the DPoP replay cache's table,
 * ngx_tailgate_dpop_replay_insert() (ngx_tailgate_dpop_replay.c), as the
 * workers use it under the zone's lock, against a model of what it must
 * remember.
 *
 * Input: operations of 3 bytes - a jti (its digest's first byte; the
 * others zero, so that digests crowd the same slots), how many seconds the
 * clock moves on (0-7, the low bits), and the proof's lifetime (1-64 s) -
 * on a table of 64 slots, so that runs fill up.
 *
 * Checked: a jti the table took and that has not expired is always
 * refused again (the table never forgets inside a window); a jti the model
 * does not hold is taken or, only when 32 or more live jtis are held,
 * refused for want of room (NGX_BUSY), never taken for a replay.
 */


#include "fuzz_ngx.h"
#include "ngx_tailgate_common.h"
#include "ngx_tailgate_dpop.h"

#include <stdlib.h>


#define FUZZ_SLOTS  64


int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_ngx_init();

    return 0;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t                     i;
    time_t                     now, expires, held[256];
    ngx_int_t                  rc;
    ngx_uint_t                 j, live;
    ngx_tailgate_replay_sh_t  *sh;
    u_char                     digest[NGX_TAILGATE_DPOP_REPLAY_LEN];

    sh = calloc(1, sizeof(ngx_tailgate_replay_sh_t)
                   + FUZZ_SLOTS * sizeof(ngx_tailgate_replay_entry_t));
    FUZZ_CHECK(sh != NULL);

    sh->nslots = FUZZ_SLOTS;

    ngx_memzero(held, sizeof(held));
    now = FUZZ_NOW;

    for (i = 0; i + 3 <= size; i += 3) {
        now += data[i + 1] & 7;
        expires = now + 1 + (data[i + 2] & 63);

        ngx_memzero(digest, sizeof(digest));
        digest[0] = data[i];

        for (live = 0, j = 0; j < 256; j++) {
            live += (held[j] > now);
        }

        rc = ngx_tailgate_dpop_replay_insert(sh, digest, expires, now);

        if (held[data[i]] > now) {
            FUZZ_CHECK(rc == NGX_DECLINED);
            continue;
        }

        FUZZ_CHECK(rc == NGX_OK || rc == NGX_BUSY);

        if (rc == NGX_BUSY) {
            FUZZ_CHECK(live >= NGX_TAILGATE_DPOP_REPLAY_PROBE);
            continue;
        }

        held[data[i]] = expires;
    }

    free(sh);

    return 0;
}


/* the zone's side of ngx_tailgate_dpop_replay.c: t/38-dpop.t runs it */

ngx_module_t  ngx_http_tailgate_module;
ngx_uint_t    ngx_pagesize_shift;


ngx_shm_zone_t *
ngx_shared_memory_add(ngx_conf_t *cf, ngx_str_t *name, size_t size,
    void *tag)
{
    abort();
}


void *
ngx_slab_alloc(ngx_slab_pool_t *pool, size_t size)
{
    abort();
}


void
ngx_shmtx_lock(ngx_shmtx_t *mtx)
{
    abort();
}


void
ngx_shmtx_unlock(ngx_shmtx_t *mtx)
{
    abort();
}
