
/*
 * Copyright (C) The Tailgate authors
 *
 * What authentication needs of OpenSSL: SHA-256, the digest API keys are
 * known by and tokens are remembered by.
 */


#include "ngx_tailgate_crypto.h"

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
