
/*
 * Copyright (C) The Tailgate authors
 */


#ifndef _NGX_TAILGATE_CRYPTO_H_INCLUDED_
#define _NGX_TAILGATE_CRYPTO_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


#define NGX_TAILGATE_DIGEST_LEN        32    /* SHA-256 */

/*
 * A key file that every user of the machine may write lets any of them
 * add a key of their own (or a token key): refused, with its mode as four
 * octal digits (NGX_TAILGATE_MODE_LEN) and the fix.
 */
#define NGX_TAILGATE_MODE_LEN          4

#define ngx_tailgate_writable_by_all(fi)  ((fi)->st_mode & S_IWOTH)

#define NGX_TAILGATE_OPEN_KEY_FILE                                            \
    "key file \"%V\" has mode %*s: every user of this machine can write "     \
    "it, and so add keys of their own; refused. Fix: chmod o-w %V"


ngx_int_t ngx_tailgate_crypto_init_worker(ngx_cycle_t *cycle);
void ngx_tailgate_crypto_exit_worker(void);
ngx_int_t ngx_tailgate_sha256(ngx_str_t *data, u_char *digest);
ngx_int_t ngx_tailgate_read_key_file(ngx_conf_t *cf, ngx_str_t *file,
    size_t max, ngx_pool_t *pool, ngx_str_t *content);
u_char *ngx_tailgate_mode_text(u_char *buf, ngx_file_info_t *fi);
ngx_int_t ngx_tailgate_ecdsa_der(u_char *sig, size_t sig_len, size_t ec_size,
    u_char **der, size_t *der_len);


#endif /* _NGX_TAILGATE_CRYPTO_H_INCLUDED_ */
