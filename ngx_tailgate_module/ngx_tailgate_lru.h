
/*
 * Copyright (C) The Tailgate authors
 */


#ifndef _NGX_TAILGATE_LRU_H_INCLUDED_
#define _NGX_TAILGATE_LRU_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


typedef struct ngx_tailgate_lru_s  ngx_tailgate_lru_t;


ngx_tailgate_lru_t *ngx_tailgate_lru_create(ngx_pool_t *pool,
    ngx_uint_t capacity);
void *ngx_tailgate_lru_get(ngx_tailgate_lru_t *lru, u_char *key, size_t len);
void *ngx_tailgate_lru_put(ngx_tailgate_lru_t *lru, u_char *key, size_t len,
    size_t value_size, ngx_msec_t ttl, ngx_log_t *log);
void ngx_tailgate_lru_flush(ngx_tailgate_lru_t *lru);


#endif /* _NGX_TAILGATE_LRU_H_INCLUDED_ */
