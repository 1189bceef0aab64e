
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


#include "ngx_tailgate_cache.h"
#include "ngx_tailgate_lru.h"


typedef struct {
    size_t                       max_bytes;  /* 0: any body */
    ngx_tailgate_reply_t         reply;      /* strings follow */
} ngx_tailgate_cached_t;


static size_t ngx_tailgate_reply_strings(ngx_tailgate_reply_t *reply,
    ngx_str_t **strings);


static ngx_tailgate_lru_t  *ngx_tailgate_decisions;


ngx_int_t
ngx_tailgate_cache_init(ngx_cycle_t *cycle, ngx_uint_t capacity)
{
    ngx_tailgate_decisions = ngx_tailgate_lru_create(cycle->pool, capacity);

    return ngx_tailgate_decisions ? NGX_OK : NGX_ERROR;
}


/* a decision for these facts, or NULL */

ngx_tailgate_reply_t *
ngx_tailgate_cache_get(u_char *key, size_t len, size_t body_len)
{
    ngx_tailgate_cached_t  *c;

    c = ngx_tailgate_lru_get(ngx_tailgate_decisions, key, len);

    if (c == NULL || (c->max_bytes && body_len > c->max_bytes)) {
        return NULL;
    }

    return &c->reply;
}


void
ngx_tailgate_cache_put(u_char *key, size_t len, ngx_tailgate_reply_t *reply,
    ngx_log_t *log)
{
    u_char                 *p;
    size_t                  size;
    ngx_uint_t              i, n;
    ngx_str_t              *from[24], *to[24];
    ngx_tailgate_cached_t  *c;

    if (reply->cache_ms == 0 || reply->lease) {
        return;
    }

    n = ngx_tailgate_reply_strings(reply, from);

    size = sizeof(ngx_tailgate_cached_t);

    for (i = 0; i < n; i++) {
        size += from[i]->len;
    }

    c = ngx_tailgate_lru_put(ngx_tailgate_decisions, key, len, size,
                             reply->cache_ms, log);
    if (c == NULL) {
        return;
    }

    c->max_bytes = reply->cache_max_bytes;
    c->reply = *reply;

    p = (u_char *) (c + 1);

    (void) ngx_tailgate_reply_strings(&c->reply, to);

    for (i = 0; i < n; i++) {
        to[i]->data = p;

        if (from[i]->len) {
            p = ngx_cpymem(p, from[i]->data, from[i]->len);
        }
    }
}


void
ngx_tailgate_cache_flush(void)
{
    ngx_tailgate_lru_flush(ngx_tailgate_decisions);
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
    strings[n++] = &reply->adjust;
    strings[n++] = &reply->prices;
    strings[n++] = &reply->ratelimit;
    strings[n++] = &reply->drop_headers;
    strings[n++] = &reply->user_agent;

    return n;
}
