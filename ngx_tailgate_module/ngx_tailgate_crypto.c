
/*
 * Copyright (C) The Tailgate authors
 *
 * Key material: key files, read whole when nginx reads its configuration,
 * and SHA-256, the digest API keys are known by and tokens remembered by.
 */


#include "ngx_tailgate_crypto.h"

#include <openssl/ecdsa.h>
#include <openssl/evp.h>


/*
 * Fetched once per worker: OpenSSL 3's SHA256() looks the algorithm up,
 * under a lock, and allocates a context on every call - three times the
 * cost of the hash itself for a key.
 */
static EVP_MD      *ngx_tailgate_sha256_md;
static EVP_MD_CTX  *ngx_tailgate_sha256_ctx;


ngx_int_t
ngx_tailgate_crypto_init_worker(ngx_cycle_t *cycle)
{
#if (OPENSSL_VERSION_NUMBER >= 0x30000000L)
    ngx_tailgate_sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
#else
    ngx_tailgate_sha256_md = (EVP_MD *) EVP_sha256();
#endif

    ngx_tailgate_sha256_ctx = EVP_MD_CTX_new();

    if (ngx_tailgate_sha256_md == NULL || ngx_tailgate_sha256_ctx == NULL) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "tailgate: SHA-256 is not available from OpenSSL");
        return NGX_ERROR;
    }

    return NGX_OK;
}


void
ngx_tailgate_crypto_exit_worker(void)
{
    EVP_MD_CTX_free(ngx_tailgate_sha256_ctx);
    ngx_tailgate_sha256_ctx = NULL;

#if (OPENSSL_VERSION_NUMBER >= 0x30000000L)
    EVP_MD_free(ngx_tailgate_sha256_md);
#endif
    ngx_tailgate_sha256_md = NULL;
}


ngx_int_t
ngx_tailgate_sha256(ngx_str_t *data, u_char *digest)
{
    unsigned int  len;

    if (EVP_DigestInit_ex(ngx_tailgate_sha256_ctx, ngx_tailgate_sha256_md,
                          NULL) != 1
        || EVP_DigestUpdate(ngx_tailgate_sha256_ctx, data->data, data->len)
           != 1
        || EVP_DigestFinal_ex(ngx_tailgate_sha256_ctx, digest, &len) != 1
        || len != NGX_TAILGATE_DIGEST_LEN)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * A key file, whole and NUL-terminated, into the pool.  NGX_ERROR once
 * the reason is logged.
 */

ngx_int_t
ngx_tailgate_read_key_file(ngx_conf_t *cf, ngx_str_t *file, size_t max,
    ngx_pool_t *pool, ngx_str_t *content)
{
    u_char           *buf;
    size_t            size;
    ssize_t           n;
    ngx_fd_t          fd;
    ngx_int_t         rc;
    ngx_file_info_t   fi;
    u_char            mode[NGX_TAILGATE_MODE_LEN];

    fd = ngx_open_file(file->data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           ngx_open_file_n " \"%V\" failed", file);
        return NGX_ERROR;
    }

    rc = NGX_ERROR;

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           ngx_fd_info_n " \"%V\" failed", file);
        goto done;
    }

    if (ngx_tailgate_writable_by_all(&fi)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, NGX_TAILGATE_OPEN_KEY_FILE,
                           file, (size_t) NGX_TAILGATE_MODE_LEN,
                           ngx_tailgate_mode_text(mode, &fi), file);
        goto done;
    }

    size = (size_t) ngx_file_size(&fi);

    if (size > max) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "key file \"%V\" is larger than %uz bytes",
                           file, max);
        goto done;
    }

    buf = ngx_pnalloc(pool, size + 1);
    if (buf == NULL) {
        goto done;
    }

    n = ngx_read_fd(fd, buf, size);

    if (n == -1 || (size_t) n != size) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           ngx_read_fd_n " \"%V\" failed", file);
        goto done;
    }

    buf[size] = '\0';

    content->data = buf;
    content->len = size;

    rc = NGX_OK;

done:

    if (ngx_close_file(fd) == NGX_FILE_ERROR) {
        ngx_conf_log_error(NGX_LOG_ALERT, cf, ngx_errno,
                           ngx_close_file_n " \"%V\" failed", file);
    }

    return rc;
}


/* the permission bits as chmod takes them: "0646" */

u_char *
ngx_tailgate_mode_text(u_char *buf, ngx_file_info_t *fi)
{
    ngx_uint_t  i, mode;

    mode = fi->st_mode & 07777;

    for (i = NGX_TAILGATE_MODE_LEN; i > 0; i--) {
        buf[i - 1] = (u_char) ('0' + (mode & 7));
        mode >>= 3;
    }

    return buf;
}


/*
 * A JWS ECDSA signature (r || s, each ec_size bytes) as the ASN.1
 * ECDSA-Sig-Value OpenSSL verifies, in *der (OPENSSL_free() it).
 * NGX_DECLINED: not the size of one; NGX_ERROR: out of memory.
 */

ngx_int_t
ngx_tailgate_ecdsa_der(u_char *sig, size_t sig_len, size_t ec_size,
    u_char **der, size_t *der_len)
{
    int         n;
    u_char     *q;
    BIGNUM     *bn_r, *bn_s;
    ECDSA_SIG  *ecdsa;

    *der = NULL;

    if (sig_len != 2 * ec_size) {
        return NGX_DECLINED;
    }

    ecdsa = ECDSA_SIG_new();
    bn_r = BN_bin2bn(sig, (int) ec_size, NULL);
    bn_s = BN_bin2bn(sig + ec_size, (int) ec_size, NULL);

    if (ecdsa == NULL || bn_r == NULL || bn_s == NULL
        || ECDSA_SIG_set0(ecdsa, bn_r, bn_s) != 1)
    {
        ECDSA_SIG_free(ecdsa);
        BN_free(bn_r);
        BN_free(bn_s);
        return NGX_ERROR;
    }

    n = i2d_ECDSA_SIG(ecdsa, NULL);
    *der = (n > 0) ? OPENSSL_malloc(n) : NULL;

    if (*der == NULL) {
        ECDSA_SIG_free(ecdsa);
        return NGX_ERROR;
    }

    q = *der;
    *der_len = (size_t) i2d_ECDSA_SIG(ecdsa, &q);

    ECDSA_SIG_free(ecdsa);

    return NGX_OK;
}
