
/*
 * Copyright (C) The Tailgate authors
 */


#ifndef _NGX_TAILGATE_CRYPTO_H_INCLUDED_
#define _NGX_TAILGATE_CRYPTO_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


#define NGX_TAILGATE_DIGEST_LEN        32    /* SHA-256 */


ngx_int_t ngx_tailgate_crypto_init_worker(ngx_cycle_t *cycle);
void ngx_tailgate_crypto_exit_worker(void);
ngx_int_t ngx_tailgate_sha256(ngx_str_t *data, u_char *digest);
ngx_int_t ngx_tailgate_read_key_file(ngx_conf_t *cf, ngx_str_t *file,
    size_t max, ngx_pool_t *pool, ngx_str_t *content);


#endif /* _NGX_TAILGATE_CRYPTO_H_INCLUDED_ */
