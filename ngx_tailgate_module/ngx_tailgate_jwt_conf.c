
/*
 * Copyright (C) The Tailgate authors
 *
 * The JWT directives: tailgate_jwt_key parses a key once, when nginx reads
 * its configuration, into the OpenSSL objects that verify tokens
 * (ngx_tailgate_jwt.c); tailgate_jwt_claims names the claims an identity
 * is read from.
 */


#include "ngx_tailgate_common.h"
#include "ngx_tailgate_crypto.h"
#include "ngx_tailgate_names.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>


#define NGX_TAILGATE_JWT_MAX_KEY_FILE 65536


typedef struct {
    const char                  *name;
    const EVP_MD              *(*md)(void);
    int                          type;       /* EVP_PKEY_RSA, _EC, 0: HMAC */
    int                          bits;       /* EC curve, min RSA size */
    size_t                       min_secret;
} ngx_tailgate_jwt_alg_t;


static void ngx_tailgate_jwt_key_cleanup(void *data);


static ngx_tailgate_jwt_alg_t  ngx_tailgate_jwt_algs[] = {
    { "HS256", EVP_sha256, 0, 0, 32 },
    { "HS384", EVP_sha384, 0, 0, 48 },
    { "HS512", EVP_sha512, 0, 0, 64 },
    { "RS256", EVP_sha256, EVP_PKEY_RSA, 2048, 0 },
    { "RS384", EVP_sha384, EVP_PKEY_RSA, 2048, 0 },
    { "RS512", EVP_sha512, EVP_PKEY_RSA, 2048, 0 },
    { "ES256", EVP_sha256, EVP_PKEY_EC, 256, 0 },
    { "ES384", EVP_sha384, EVP_PKEY_EC, 384, 0 },
    { "ES512", EVP_sha512, EVP_PKEY_EC, 521, 0 },
    { NULL, NULL, 0, 0, 0 }
};


/* tailgate_jwt_key ALG FILE [kid=KID] */

char *
ngx_tailgate_jwt_key_directive(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_tailgate_loc_conf_t *tlcf = conf;

    u_char                  *buf;
    size_t                   size;
    BIO                     *bio;
    X509                    *cert;
    EVP_PKEY                *pkey;
    ngx_str_t               *value, file, content;
    ngx_uint_t               i;
    ngx_pool_cleanup_t      *cln;
    ngx_tailgate_jwt_alg_t  *alg;
    ngx_tailgate_jwt_key_t  *key, *other;

    value = cf->args->elts;

    for (alg = ngx_tailgate_jwt_algs; alg->name; alg++) {
        if (value[1].len == ngx_strlen(alg->name)
            && ngx_strncmp(value[1].data, alg->name, value[1].len) == 0)
        {
            break;
        }
    }

    if (alg->name == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "unknown algorithm \"%V\": expected HS256, HS384, "
                           "HS512, RS256, RS384, RS512, ES256, ES384 or "
                           "ES512", &value[1]);
        return NGX_CONF_ERROR;
    }

    if (tlcf->jwt_keys == NGX_CONF_UNSET_PTR) {
        tlcf->jwt_keys = ngx_array_create(cf->pool, 2,
                                          sizeof(ngx_tailgate_jwt_key_t));
        if (tlcf->jwt_keys == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    key = ngx_array_push(tlcf->jwt_keys);
    if (key == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(key, sizeof(ngx_tailgate_jwt_key_t));

    key->alg.data = (u_char *) alg->name;
    key->alg.len = ngx_strlen(alg->name);
    key->md = (void *) alg->md();

    if (cf->args->nelts == 4) {
        if (value[3].len <= 4 || ngx_strncmp(value[3].data, "kid=", 4) != 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\", expected kid=ID",
                               &value[3]);
            return NGX_CONF_ERROR;
        }

        key->kid.data = value[3].data + 4;
        key->kid.len = value[3].len - 4;
    }

    /* one key per kid, one default key without one */

    other = tlcf->jwt_keys->elts;

    for (i = 0; i + 1 < tlcf->jwt_keys->nelts; i++) {
        if (other[i].kid.len == key->kid.len
            && ngx_strncmp(other[i].kid.data, key->kid.data, key->kid.len)
               == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               key->kid.len ? "kid \"%V\" is given twice"
                                            : "only one key may have no kid",
                               &key->kid);
            return NGX_CONF_ERROR;
        }
    }

    file = value[2];

    if (ngx_conf_full_name(cf->cycle, &file, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    /* an HMAC secret stays in the pool with the configuration */

    if (ngx_tailgate_read_key_file(cf, &file, NGX_TAILGATE_JWT_MAX_KEY_FILE,
                                   cf->pool, &content)
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    buf = content.data;
    size = content.len;

    if (alg->type == 0) {

        /* an HMAC secret: the file's bytes, a final newline aside */

        if (size && buf[size - 1] == '\n') {
            size--;
        }

        if (size && buf[size - 1] == '\r') {
            size--;
        }

        if (size < alg->min_secret) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "the %s secret in \"%V\" is %uz bytes, it "
                               "must have at least %uz", alg->name, &file,
                               size, alg->min_secret);
            return NGX_CONF_ERROR;
        }

        key->secret.data = buf;
        key->secret.len = size;

        return NGX_CONF_OK;
    }

    /* a public key, or a certificate that holds one; never a private key */

    bio = BIO_new_mem_buf(buf, (int) size);
    if (bio == NULL) {
        return NGX_CONF_ERROR;
    }

    pkey = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);

    if (pkey == NULL) {
        (void) BIO_reset(bio);
        cert = PEM_read_bio_X509(bio, NULL, NULL, NULL);

        if (cert) {
            pkey = X509_get_pubkey(cert);
            X509_free(cert);
        }
    }

    BIO_free(bio);

    if (pkey == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" holds no PEM public key or certificate",
                           &file);
        return NGX_CONF_ERROR;
    }

    cln = ngx_pool_cleanup_add(cf->pool, sizeof(ngx_tailgate_jwt_crypto_t));
    if (cln == NULL) {
        EVP_PKEY_free(pkey);
        return NGX_CONF_ERROR;
    }

    key->crypto = cln->data;
    ngx_memzero(key->crypto, sizeof(ngx_tailgate_jwt_crypto_t));
    key->crypto->pkey = pkey;

    cln->handler = ngx_tailgate_jwt_key_cleanup;

    if (EVP_PKEY_base_id(pkey) != alg->type
        || (alg->type == EVP_PKEY_RSA && EVP_PKEY_bits(pkey) < alg->bits)
        || (alg->type == EVP_PKEY_EC && EVP_PKEY_bits(pkey) != alg->bits))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "the key in \"%V\" is not a key for %s (%s)",
                           &file, alg->name,
                           alg->type == EVP_PKEY_RSA
                           ? "an RSA key of 2048 bits or more"
                           : "an EC key on the matching NIST curve");
        return NGX_CONF_ERROR;
    }

    if (alg->type == EVP_PKEY_EC) {
        key->ec_size = (alg->bits + 7) / 8;
    }

    return NGX_CONF_OK;
}


static void
ngx_tailgate_jwt_key_cleanup(void *data)
{
    ngx_tailgate_jwt_crypto_t  *crypto = data;

    EVP_PKEY_CTX_free(crypto->verify);
#if (OPENSSL_VERSION_NUMBER >= 0x30000000L)
    EVP_MD_free(crypto->md);
#endif
    EVP_PKEY_free(crypto->pkey);
}


/*
 * tailgate_jwt_claims client=sub [tenant=NAME] [tags=NAME] [routes=NAME]
 *                     [roles=NAME] [limit=NAME]
 */

char *
ngx_tailgate_jwt_claims_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_tailgate_loc_conf_t *tlcf = conf;

    u_char                     *eq;
    ngx_str_t                  *value, *claim, name;
    ngx_uint_t                  i;
    ngx_tailgate_jwt_claims_t  *claims;

    if (tlcf->jwt_claims != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    claims = ngx_pcalloc(cf->pool, sizeof(ngx_tailgate_jwt_claims_t));
    if (claims == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_str_set(&claims->client, "sub");

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {
        eq = ngx_strlchr(value[i].data, value[i].data + value[i].len, '=');

        if (eq == NULL || eq + 1 == value[i].data + value[i].len) {
            goto invalid;
        }

        name.data = value[i].data;
        name.len = eq - value[i].data;

        if (name.len == 6 && ngx_strncmp(name.data, "client", 6) == 0) {
            claim = &claims->client;

        } else if (name.len == 6 && ngx_strncmp(name.data, "tenant", 6) == 0) {
            claim = &claims->tenant;

        } else if (name.len == 4 && ngx_strncmp(name.data, "tags", 4) == 0) {
            claim = &claims->tags;

        } else if (name.len == 6 && ngx_strncmp(name.data, "routes", 6) == 0) {
            claim = &claims->routes;

        } else if (name.len == 5 && ngx_strncmp(name.data, "roles", 5) == 0) {
            claim = &claims->roles;

        } else if (name.len == 5 && ngx_strncmp(name.data, "limit", 5) == 0) {
            claim = &claims->limit;

        } else {
            goto invalid;
        }

        /* libjwt wants C strings: the configuration's are terminated */
        claim->data = eq + 1;
        claim->len = value[i].data + value[i].len - claim->data;
    }

    tlcf->jwt_claims = claims;

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\", expected client=CLAIM, "
                       "tenant=CLAIM, tags=CLAIM, routes=CLAIM, "
                       "roles=CLAIM or limit=CLAIM", &value[i]);
    return NGX_CONF_ERROR;
}
