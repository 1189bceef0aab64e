
/*
 * Copyright (C) The Tailgate authors
 *
 * The worker's decision cache.  policyd says, decision by decision, whether
 * and for how long the same request facts may reuse it (cache_ms), and
 * tells every worker to forget them all when anything that could change a
 * decision changes (INVALIDATE: a reload, a provider's health).  A hit
 * saves the round trip to policyd and, on a busy shared core, the context
 * switches it costs.  Decisions with a lease are never cached; fallbacks
 * never use the cache; the module's own checks run on every request.
 */


#include "ngx_http_tailgate_module.h"


typedef struct ngx_tailgate_cached_s  ngx_tailgate_cached_t;

struct ngx_tailgate_cached_s {
    ngx_tailgate_cached_t       *next;       /* in its bucket */
    ngx_queue_t                  lru;
    uint32_t                     hash;
    ngx_msec_t                   expires;
    size_t                       max_bytes;  /* 0: any body */
    ngx_str_t                    key;
    ngx_tailgate_reply_t         reply;      /* strings point after key */
};


typedef struct {
    ngx_tailgate_cached_t      **buckets;
    ngx_uint_t                   mask;
    ngx_uint_t                   count;
    ngx_uint_t                   capacity;
    ngx_queue_t                  lru;        /* most recent first */
} ngx_tailgate_cache_t;


static void ngx_tailgate_cache_remove(ngx_tailgate_cached_t *e);
static size_t ngx_tailgate_reply_strings(ngx_tailgate_reply_t *reply,
    ngx_str_t **strings);


static ngx_tailgate_cache_t  ngx_tailgate_cache;


ngx_int_t
ngx_tailgate_cache_init(ngx_cycle_t *cycle, ngx_uint_t capacity)
{
    ngx_uint_t  size;

    ngx_tailgate_cache.capacity = capacity;
    ngx_queue_init(&ngx_tailgate_cache.lru);

    if (capacity == 0) {
        return NGX_OK;
    }

    for (size = 16; size < 2 * capacity; size <<= 1) { /* void */ }

    ngx_tailgate_cache.buckets = ngx_pcalloc(cycle->pool,
                                       size * sizeof(ngx_tailgate_cached_t *));
    if (ngx_tailgate_cache.buckets == NULL) {
        return NGX_ERROR;
    }

    ngx_tailgate_cache.mask = size - 1;

    return NGX_OK;
}


/* a decision for these facts, or NULL */

ngx_tailgate_reply_t *
ngx_tailgate_cache_get(u_char *key, size_t len, size_t body_len)
{
    uint32_t                hash;
    ngx_tailgate_cached_t  *e;

    if (ngx_tailgate_cache.count == 0) {
        return NULL;
    }

    hash = ngx_murmur_hash2(key, len);

    for (e = ngx_tailgate_cache.buckets[hash & ngx_tailgate_cache.mask];
         e;
         e = e->next)
    {
        if (e->hash != hash || e->key.len != len
            || ngx_memcmp(e->key.data, key, len) != 0)
        {
            continue;
        }

        if ((ngx_msec_int_t) (e->expires - ngx_current_msec) <= 0) {
            ngx_tailgate_cache_remove(e);
            return NULL;
        }

        if (e->max_bytes && body_len > e->max_bytes) {
            return NULL;
        }

        ngx_queue_remove(&e->lru);
        ngx_queue_insert_head(&ngx_tailgate_cache.lru, &e->lru);

        return &e->reply;
    }

    return NULL;
}


void
ngx_tailgate_cache_put(u_char *key, size_t len, ngx_tailgate_reply_t *reply,
    ngx_log_t *log)
{
    u_char                 *p;
    size_t                  size;
    uint32_t                hash;
    ngx_uint_t              i, n;
    ngx_str_t              *from[16], *to[16];
    ngx_queue_t            *q;
    ngx_tailgate_cached_t  *e, **bucket;

    if (ngx_tailgate_cache.capacity == 0 || reply->cache_ms == 0
        || reply->lease)
    {
        return;
    }

    hash = ngx_murmur_hash2(key, len);
    bucket = &ngx_tailgate_cache.buckets[hash & ngx_tailgate_cache.mask];

    /* a fresher answer for the same facts replaces the old one */

    for (e = *bucket; e; e = e->next) {
        if (e->hash == hash && e->key.len == len
            && ngx_memcmp(e->key.data, key, len) == 0)
        {
            ngx_tailgate_cache_remove(e);
            break;
        }
    }

    if (ngx_tailgate_cache.count >= ngx_tailgate_cache.capacity) {
        q = ngx_queue_last(&ngx_tailgate_cache.lru);
        ngx_tailgate_cache_remove(ngx_queue_data(q, ngx_tailgate_cached_t,
                                                 lru));
    }

    n = ngx_tailgate_reply_strings(reply, from);

    size = sizeof(ngx_tailgate_cached_t) + len;

    for (i = 0; i < n; i++) {
        size += from[i]->len;
    }

    e = ngx_alloc(size, log);
    if (e == NULL) {
        return;
    }

    e->hash = hash;
    e->expires = ngx_current_msec + reply->cache_ms;
    e->max_bytes = reply->cache_max_bytes;
    e->reply = *reply;

    p = (u_char *) (e + 1);

    e->key.data = p;
    e->key.len = len;
    p = ngx_cpymem(p, key, len);

    (void) ngx_tailgate_reply_strings(&e->reply, to);

    for (i = 0; i < n; i++) {
        to[i]->data = p;

        if (from[i]->len) {
            p = ngx_cpymem(p, from[i]->data, from[i]->len);
        }
    }

    e->next = *bucket;
    *bucket = e;
    ngx_queue_insert_head(&ngx_tailgate_cache.lru, &e->lru);
    ngx_tailgate_cache.count++;
}


void
ngx_tailgate_cache_flush(void)
{
    ngx_queue_t  *q;

    while (!ngx_queue_empty(&ngx_tailgate_cache.lru)) {
        q = ngx_queue_head(&ngx_tailgate_cache.lru);
        ngx_tailgate_cache_remove(ngx_queue_data(q, ngx_tailgate_cached_t,
                                                 lru));
    }
}


static void
ngx_tailgate_cache_remove(ngx_tailgate_cached_t *e)
{
    ngx_tailgate_cached_t  **pe;

    pe = &ngx_tailgate_cache.buckets[e->hash & ngx_tailgate_cache.mask];

    while (*pe != e) {
        pe = &(*pe)->next;
    }

    *pe = e->next;

    ngx_queue_remove(&e->lru);
    ngx_tailgate_cache.count--;

    ngx_explicit_memzero(e->reply.authorization.data,
                         e->reply.authorization.len);
    ngx_free(e);
}


/* the reply's strings, which live in the read buffer until copied */

static size_t
ngx_tailgate_reply_strings(ngx_tailgate_reply_t *reply, ngx_str_t **strings)
{
    size_t  n;

    n = 0;

    strings[n++] = &reply->error_type;
    strings[n++] = &reply->error_code;
    strings[n++] = &reply->error_message;
    strings[n++] = &reply->provider;
    strings[n++] = &reply->route;
    strings[n++] = &reply->upstream;
    strings[n++] = &reply->scheme;
    strings[n++] = &reply->host;
    strings[n++] = &reply->path;
    strings[n++] = &reply->provider_model;
    strings[n++] = &reply->authorization;
    strings[n++] = &reply->reason;
    strings[n++] = &reply->zone;

    return n;
}
