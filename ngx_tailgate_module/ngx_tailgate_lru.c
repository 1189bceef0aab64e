
/*
 * Copyright (C) The Tailgate authors
 *
 * A small per-worker store: byte keys to values with an expiry, the least
 * recently used out first when full.  Values are opaque blocks the caller
 * fills; they are wiped when they leave, since they may hold secrets (a
 * provider's Authorization, a client's identity).
 */


#include "ngx_tailgate_lru.h"


typedef struct ngx_tailgate_lru_entry_s  ngx_tailgate_lru_entry_t;

struct ngx_tailgate_lru_entry_s {
    ngx_tailgate_lru_entry_t    *next;       /* in its bucket */
    ngx_queue_t                  queue;
    uint32_t                     hash;
    ngx_msec_t                   expires;
    size_t                       key_len;
    size_t                       value_size;
    /* the value, then the key */
};


struct ngx_tailgate_lru_s {
    ngx_tailgate_lru_entry_t   **buckets;
    ngx_uint_t                   mask;
    ngx_uint_t                   count;
    ngx_uint_t                   capacity;
    ngx_queue_t                  queue;      /* most recent first */
};


#define ngx_tailgate_lru_value(e)  ((void *) ((e) + 1))
#define ngx_tailgate_lru_key(e)                                               \
    ((u_char *) ((e) + 1) + (e)->value_size)


static ngx_tailgate_lru_entry_t *ngx_tailgate_lru_find(ngx_tailgate_lru_t *lru,
    uint32_t hash, u_char *key, size_t len);
static void ngx_tailgate_lru_remove(ngx_tailgate_lru_t *lru,
    ngx_tailgate_lru_entry_t *e);


/* capacity 0 makes a store that keeps nothing */

ngx_tailgate_lru_t *
ngx_tailgate_lru_create(ngx_pool_t *pool, ngx_uint_t capacity)
{
    ngx_uint_t           size;
    ngx_tailgate_lru_t  *lru;

    lru = ngx_pcalloc(pool, sizeof(ngx_tailgate_lru_t));
    if (lru == NULL) {
        return NULL;
    }

    lru->capacity = capacity;
    ngx_queue_init(&lru->queue);

    for (size = 16; size < 2 * capacity; size <<= 1) { /* void */ }

    lru->buckets = ngx_pcalloc(pool, size * sizeof(ngx_tailgate_lru_entry_t *));
    if (lru->buckets == NULL) {
        return NULL;
    }

    lru->mask = size - 1;

    return lru;
}


/* the value stored for key, or NULL when there is none or it expired */

void *
ngx_tailgate_lru_get(ngx_tailgate_lru_t *lru, u_char *key, size_t len)
{
    uint32_t                   hash;
    ngx_tailgate_lru_entry_t  *e;

    if (lru == NULL || lru->count == 0) {
        return NULL;
    }

    hash = ngx_murmur_hash2(key, len);

    e = ngx_tailgate_lru_find(lru, hash, key, len);
    if (e == NULL) {
        return NULL;
    }

    if ((ngx_msec_int_t) (e->expires - ngx_current_msec) <= 0) {
        ngx_tailgate_lru_remove(lru, e);
        return NULL;
    }

    ngx_queue_remove(&e->queue);
    ngx_queue_insert_head(&lru->queue, &e->queue);

    return ngx_tailgate_lru_value(e);
}


/*
 * Room for a value of value_size under key, replacing any value it had;
 * the caller fills it.  NULL when the store is off or memory ran out.
 */

void *
ngx_tailgate_lru_put(ngx_tailgate_lru_t *lru, u_char *key, size_t len,
    size_t value_size, ngx_msec_t ttl, ngx_log_t *log)
{
    uint32_t                   hash;
    ngx_queue_t               *q;
    ngx_tailgate_lru_entry_t  *e, **bucket;

    if (lru == NULL || lru->capacity == 0 || ttl == 0) {
        return NULL;
    }

    hash = ngx_murmur_hash2(key, len);

    e = ngx_tailgate_lru_find(lru, hash, key, len);
    if (e) {
        ngx_tailgate_lru_remove(lru, e);
    }

    if (lru->count >= lru->capacity) {
        q = ngx_queue_last(&lru->queue);
        ngx_tailgate_lru_remove(lru,
                        ngx_queue_data(q, ngx_tailgate_lru_entry_t, queue));
    }

    /* the value first: it keeps the alignment of the entry */

    value_size = ngx_align(value_size, sizeof(void *));

    e = ngx_alloc(sizeof(ngx_tailgate_lru_entry_t) + value_size + len, log);
    if (e == NULL) {
        return NULL;
    }

    e->hash = hash;
    e->expires = ngx_current_msec + ttl;
    e->key_len = len;
    e->value_size = value_size;
    ngx_memcpy(ngx_tailgate_lru_key(e), key, len);

    bucket = &lru->buckets[hash & lru->mask];
    e->next = *bucket;
    *bucket = e;

    ngx_queue_insert_head(&lru->queue, &e->queue);
    lru->count++;

    return ngx_tailgate_lru_value(e);
}


void
ngx_tailgate_lru_flush(ngx_tailgate_lru_t *lru)
{
    ngx_queue_t  *q;

    if (lru == NULL) {
        return;
    }

    while (!ngx_queue_empty(&lru->queue)) {
        q = ngx_queue_head(&lru->queue);
        ngx_tailgate_lru_remove(lru,
                        ngx_queue_data(q, ngx_tailgate_lru_entry_t, queue));
    }
}


static ngx_tailgate_lru_entry_t *
ngx_tailgate_lru_find(ngx_tailgate_lru_t *lru, uint32_t hash, u_char *key,
    size_t len)
{
    ngx_tailgate_lru_entry_t  *e;

    for (e = lru->buckets[hash & lru->mask]; e; e = e->next) {
        if (e->hash == hash && e->key_len == len
            && ngx_memcmp(ngx_tailgate_lru_key(e), key, len) == 0)
        {
            return e;
        }
    }

    return NULL;
}


static void
ngx_tailgate_lru_remove(ngx_tailgate_lru_t *lru, ngx_tailgate_lru_entry_t *e)
{
    ngx_tailgate_lru_entry_t  **pe;

    pe = &lru->buckets[e->hash & lru->mask];

    while (*pe != e) {
        pe = &(*pe)->next;
    }

    *pe = e->next;

    ngx_queue_remove(&e->queue);
    lru->count--;

    ngx_explicit_memzero(ngx_tailgate_lru_value(e), e->value_size);
    ngx_free(e);
}
