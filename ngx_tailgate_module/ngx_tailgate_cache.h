
/*
 * Copyright (C) The Tailgate authors
 */


#ifndef _NGX_TAILGATE_CACHE_H_INCLUDED_
#define _NGX_TAILGATE_CACHE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_tailgate_proto.h"


ngx_int_t ngx_tailgate_cache_init(ngx_cycle_t *cycle, ngx_uint_t capacity);
ngx_tailgate_reply_t *ngx_tailgate_cache_get(u_char *key, size_t len,
    size_t body_len);
void ngx_tailgate_cache_put(u_char *key, size_t len,
    ngx_tailgate_reply_t *reply, ngx_log_t *log);
void ngx_tailgate_cache_flush(void);


#endif /* _NGX_TAILGATE_CACHE_H_INCLUDED_ */
