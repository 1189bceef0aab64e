
/*
 * Copyright (C) The Tailgate authors
 *
 * The DPoP proofs already used, shared by every worker: a table in shared
 * memory (tailgate_dpop_replay_cache, 1m by default) of the first 16 bytes
 * of each jti's SHA-256 and the second after which a proof with that jti
 * would be refused for its age anyway.  Until then the entry stays.
 *
 * Open addressing with a bounded probe: an entry lives in one of the
 * NGX_TAILGATE_DPOP_REPLAY_PROBE slots from where its digest points, so that
 * a look-up is a short scan under the zone's mutex, never a walk of the
 * table.  An expired entry is a free slot.  When every slot of a digest's
 * run holds a live entry the table is full there: the proof is refused
 * (503, ngx_tailgate_access.c) rather than an entry forgotten, since a
 * forgotten jti could be replayed within its window.  Each entry is 24
 * bytes: 1m holds some 43000, about 300 proofs a second for a window of
 * 60 s with a quarter to spare (an entry lives up to twice the window: iat
 * may be ahead of the clock by as much).
 *
 * The table survives a reload of the same size: the proofs seen before it
 * stay seen.
 */


#include "ngx_tailgate_common.h"
#include "ngx_tailgate_dpop.h"


#define NGX_TAILGATE_REPLAY_DEFAULT    (1024 * 1024)


typedef struct {
    ngx_slab_pool_t             *shpool;
    ngx_tailgate_replay_sh_t    *sh;
} ngx_tailgate_replay_t;


static ngx_int_t ngx_tailgate_dpop_replay_init(ngx_shm_zone_t *zone,
    void *data);


static ngx_str_t  ngx_tailgate_replay_name = ngx_string("tailgate_dpop_replay");


ngx_int_t
ngx_tailgate_dpop_replay_zone(ngx_conf_t *cf,
    ngx_http_tailgate_main_conf_t *tmcf)
{
    size_t                  size;
    ngx_shm_zone_t         *zone;
    ngx_tailgate_replay_t  *replay;

    if (tmcf->dpop_replay) {
        return NGX_OK;
    }

    size = tmcf->dpop_replay_size;

    if (size == NGX_CONF_UNSET_SIZE) {
        size = NGX_TAILGATE_REPLAY_DEFAULT;
    }

    replay = ngx_pcalloc(cf->pool, sizeof(ngx_tailgate_replay_t));
    if (replay == NULL) {
        return NGX_ERROR;
    }

    zone = ngx_shared_memory_add(cf, &ngx_tailgate_replay_name, size,
                                 &ngx_http_tailgate_module);
    if (zone == NULL) {
        return NGX_ERROR;
    }

    zone->init = ngx_tailgate_dpop_replay_init;
    zone->data = replay;

    tmcf->dpop_replay = zone;

    return NGX_OK;
}


static ngx_int_t
ngx_tailgate_dpop_replay_init(ngx_shm_zone_t *zone, void *data)
{
    ngx_tailgate_replay_t *old = data;

    size_t                  size;
    ngx_uint_t              n;
    ngx_tailgate_replay_t  *replay;

    replay = zone->data;

    if (old) {
        replay->shpool = old->shpool;
        replay->sh = old->sh;
        return NGX_OK;
    }

    replay->shpool = (ngx_slab_pool_t *) zone->shm.addr;

    /* the whole zone, in pages the slab allocator still has */

    size = replay->shpool->pfree << ngx_pagesize_shift;

    if (size < sizeof(ngx_tailgate_replay_sh_t)
               + NGX_TAILGATE_DPOP_REPLAY_PROBE
                 * sizeof(ngx_tailgate_replay_entry_t))
    {
        ngx_log_error(NGX_LOG_EMERG, zone->shm.log, 0,
                      "tailgate_dpop_replay_cache %uz is too small: "
                      "8k at least", zone->shm.size);
        return NGX_ERROR;
    }

    replay->sh = ngx_slab_alloc(replay->shpool, size);
    if (replay->sh == NULL) {
        return NGX_ERROR;
    }

    n = (size - offsetof(ngx_tailgate_replay_sh_t, slots))
        / sizeof(ngx_tailgate_replay_entry_t);

    ngx_memzero(replay->sh, size);
    replay->sh->nslots = n;

    replay->shpool->log_nomem = 0;

    return NGX_OK;
}


ngx_int_t
ngx_tailgate_dpop_replay_add(ngx_shm_zone_t *zone, u_char *digest,
    time_t expires, time_t now)
{
    ngx_int_t               rc;
    ngx_tailgate_replay_t  *replay;

    replay = zone->data;

    ngx_shmtx_lock(&replay->shpool->mutex);

    rc = ngx_tailgate_dpop_replay_insert(replay->sh, digest, expires, now);

    ngx_shmtx_unlock(&replay->shpool->mutex);

    return rc;
}


/* the table itself, under the caller's lock (and in the dpop harness) */

ngx_int_t
ngx_tailgate_dpop_replay_insert(ngx_tailgate_replay_sh_t *sh, u_char *digest,
    time_t expires, time_t now)
{
    uint64_t                      h;
    ngx_uint_t                    i, k, n;
    ngx_tailgate_replay_entry_t  *e, *free;

    n = sh->nslots;

    ngx_memcpy(&h, digest, sizeof(h));

    i = (ngx_uint_t) (h % n);
    free = NULL;

    /* every slot of the run: the digest may sit past a free one */

    for (k = 0; k < NGX_TAILGATE_DPOP_REPLAY_PROBE; k++) {
        e = &sh->slots[(i + k) % n];

        if (e->expires <= (int64_t) now) {
            if (free == NULL) {
                free = e;
            }

            continue;
        }

        if (ngx_memcmp(e->digest, digest, NGX_TAILGATE_DPOP_REPLAY_LEN) == 0) {
            return NGX_DECLINED;
        }
    }

    if (free == NULL) {
        return NGX_BUSY;
    }

    ngx_memcpy(free->digest, digest, NGX_TAILGATE_DPOP_REPLAY_LEN);
    free->expires = expires;

    return NGX_OK;
}
