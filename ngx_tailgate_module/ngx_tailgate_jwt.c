
/*
 * Copyright (C) The Tailgate authors
 *
 * JSON Web Tokens.  Keys are parsed once, when nginx reads its
 * configuration, into OpenSSL objects: libjwt 1.10's jwt_decode() parses
 * the PEM key again for every token, ~300 us, while a verify with a
 * parsed key is 15-45 us.  So OpenSSL checks the signature and libjwt
 * reads the verified header and claims.  A verified token is remembered
 * (by the SHA-256 of the token) until it expires.
 *
 * What is refused: "alg" none, any "alg" other than the one its key is
 * configured for (so an HS256 token "signed" with an RSA public key gets
 * nowhere), an unknown "kid", "crit" headers, tokens over 8 KB, bad
 * base64url or JSON, a missing or non-integer "exp", "nbf" and "iat" in
 * the future, the wrong "iss" or "aud", a missing client id claim.
 */


#include "ngx_tailgate_common.h"
#include "ngx_tailgate_lru.h"
#include "ngx_tailgate_names.h"

#include <jwt.h>
#include <cjson/cJSON.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>


#define NGX_TAILGATE_JWT_MAX          8192
#define NGX_TAILGATE_JWT_MAX_TTL      86400      /* s, in the cache */
#define NGX_TAILGATE_JWT_MAX_NAME     128


typedef struct {
    time_t                       exp;
    ngx_uint_t                   generation;     /* of its key set */
    size_t                       jkt_len;    /* 0: not bound to a key */
    u_char                       jkt[NGX_TAILGATE_JKT_LEN];
    ngx_tailgate_identity_t      identity;   /* strings follow */
} ngx_tailgate_jwt_cached_t;


static ngx_tailgate_auth_e ngx_tailgate_jwt_check(ngx_http_request_t *r,
    ngx_http_tailgate_loc_conf_t *tlcf, ngx_str_t *token, jwt_t *jwt,
    ngx_tailgate_identity_t *id, time_t *exp, ngx_str_t *jkt,
    const char **why);
static ngx_int_t ngx_tailgate_jwt_confirmation(jwt_t *jwt, ngx_str_t *jkt,
    ngx_pool_t *pool);
static ngx_tailgate_jwt_key_t *ngx_tailgate_jwt_select_key(ngx_array_t *keys,
    const char *kid);
static ngx_int_t ngx_tailgate_jwt_verify(ngx_tailgate_jwt_key_t *key,
    u_char *data, size_t len, u_char *sig, size_t sig_len);
static ngx_int_t ngx_tailgate_jwt_verify_init(ngx_tailgate_jwt_key_t *key);
static ngx_int_t ngx_tailgate_jwt_decode(ngx_pool_t *pool, u_char *start,
    u_char *end, ngx_uint_t text, ngx_str_t *out);
static ngx_int_t ngx_tailgate_jwt_int(jwt_t *jwt, const char *name,
    time_t *value);
static ngx_int_t ngx_tailgate_jwt_string(jwt_t *jwt, ngx_uint_t header,
    const char *name, const char **value);
static ngx_int_t ngx_tailgate_jwt_names(ngx_pool_t *pool, jwt_t *jwt,
    const char *name, ngx_uint_t max, ngx_uint_t route, ngx_str_t **names,
    ngx_uint_t *n);
static ngx_int_t ngx_tailgate_jwt_audience(jwt_t *jwt, ngx_str_t *audience,
    ngx_pool_t *pool);
static ngx_int_t ngx_tailgate_jwt_visible(const char *s, size_t max);
static ngx_uint_t ngx_tailgate_jwt_null(const char *json);
static size_t ngx_tailgate_identity_size(ngx_tailgate_identity_t *id);
static void ngx_tailgate_identity_copy(ngx_tailgate_identity_t *dst,
    ngx_tailgate_identity_t *src, u_char *p);


static ngx_tailgate_lru_t  *ngx_tailgate_jwt_cache;





ngx_int_t
ngx_tailgate_jwt_init_worker(ngx_cycle_t *cycle, ngx_uint_t cache_size)
{
    ngx_tailgate_jwt_cache = ngx_tailgate_lru_create(cycle->pool, cache_size);

    return ngx_tailgate_jwt_cache ? NGX_OK : NGX_ERROR;
}


void
ngx_tailgate_jwt_exit_worker(void)
{
    ngx_tailgate_lru_flush(ngx_tailgate_jwt_cache);
}


ngx_tailgate_auth_e
ngx_tailgate_jwt_authenticate(ngx_http_request_t *r,
    ngx_http_tailgate_loc_conf_t *tlcf, ngx_str_t *token,
    ngx_tailgate_identity_t **identity, ngx_str_t *jkt, const char **why)
{
    u_char                     *p;
    size_t                      size;
    jwt_t                      *jwt;
    time_t                      exp, now, ttl;
    ngx_str_t                   key;
    ngx_tailgate_auth_e         rc;
    ngx_tailgate_identity_t    *id;
    ngx_tailgate_jwt_cached_t  *cached;
    u_char                      buf[sizeof(void *)
                                    + NGX_TAILGATE_DIGEST_LEN];

    jkt->len = 0;

    if (token->len > NGX_TAILGATE_JWT_MAX) {
        *why = "the token is over 8 KB";
        return NGX_TAILGATE_AUTH_INVALID;
    }

    /*
     * A token is remembered per location: locations may share keys and
     * still differ in issuer, audience, leeway or the claims they map.
     */

    ngx_memcpy(buf, &tlcf, sizeof(void *));

    if (ngx_tailgate_sha256(token, buf + sizeof(void *)) != NGX_OK) {
        *why = "SHA-256 failed";
        return NGX_TAILGATE_AUTH_ERROR;
    }

    key.data = buf;
    key.len = sizeof(buf);

    now = ngx_time();

    cached = ngx_tailgate_lru_get(ngx_tailgate_jwt_cache, key.data, key.len);

    /* a key set that changed may have lost the token's key */

    if (cached && tlcf->jwks
        && cached->generation != ngx_tailgate_jwks_generation(tlcf->jwks))
    {
        cached = NULL;
    }

    if (cached) {
        if (now >= cached->exp + tlcf->jwt_leeway) {
            *why = "the token has expired";
            return NGX_TAILGATE_AUTH_EXPIRED;
        }

        size = ngx_tailgate_identity_size(&cached->identity);

        id = ngx_palloc(r->pool, sizeof(ngx_tailgate_identity_t) + size);
        if (id == NULL) {
            return NGX_TAILGATE_AUTH_ERROR;
        }

        ngx_tailgate_identity_copy(id, &cached->identity, (u_char *) (id + 1));
        *identity = id;

        if (cached->jkt_len) {
            jkt->data = ngx_pnalloc(r->pool, cached->jkt_len);
            if (jkt->data == NULL) {
                return NGX_TAILGATE_AUTH_ERROR;
            }

            jkt->len = cached->jkt_len;
            ngx_memcpy(jkt->data, cached->jkt, jkt->len);
        }

        return NGX_TAILGATE_AUTH_OK;
    }

    id = ngx_pcalloc(r->pool, sizeof(ngx_tailgate_identity_t));
    if (id == NULL || jwt_new(&jwt) != 0) {
        return NGX_TAILGATE_AUTH_ERROR;
    }

    rc = ngx_tailgate_jwt_check(r, tlcf, token, jwt, id, &exp, jkt, why);

    jwt_free(jwt);

    if (rc != NGX_TAILGATE_AUTH_OK) {
        return rc;
    }

    id->jwt = 1;
    *identity = id;

    /* until it expires, and never for long */

    ttl = ngx_min(exp + tlcf->jwt_leeway - now, NGX_TAILGATE_JWT_MAX_TTL);

    if (ttl > 0) {
        size = ngx_tailgate_identity_size(id);

        cached = ngx_tailgate_lru_put(ngx_tailgate_jwt_cache, key.data,
                                      key.len,
                                      sizeof(ngx_tailgate_jwt_cached_t) + size,
                                      (ngx_msec_t) ttl * 1000,
                                      r->connection->log);
        if (cached) {
            cached->exp = exp;
            cached->jkt_len = jkt->len;
            ngx_memcpy(cached->jkt, jkt->data, jkt->len);
            cached->generation =
                tlcf->jwks ? ngx_tailgate_jwks_generation(tlcf->jwks) : 0;
            p = (u_char *) (cached + 1);
            ngx_tailgate_identity_copy(&cached->identity, id, p);
        }
    }

    return NGX_TAILGATE_AUTH_OK;
}


static ngx_tailgate_auth_e
ngx_tailgate_jwt_check(ngx_http_request_t *r,
    ngx_http_tailgate_loc_conf_t *tlcf, ngx_str_t *token, jwt_t *jwt,
    ngx_tailgate_identity_t *id, time_t *exp, ngx_str_t *jkt,
    const char **why)
{
    u_char                     *p, *dot1, *dot2, *end;
    time_t                      nbf, iat, now;
    ngx_int_t                   rc;
    ngx_str_t                   header, payload, sig, *roles;
    ngx_uint_t                  i, nroles;
    const char                 *alg, *kid, *typ, *s;
    ngx_tailgate_jwt_key_t     *key;
    ngx_tailgate_jwt_claims_t  *claims;

    /* three parts of base64url characters */

    end = token->data + token->len;
    dot1 = NULL;
    dot2 = NULL;

    for (p = token->data; p < end; p++) {
        if (*p == '.') {
            if (dot1 == NULL) {
                dot1 = p;

            } else {
                dot2 = p;
            }

            continue;
        }

        if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z')
              || (*p >= '0' && *p <= '9') || *p == '-' || *p == '_'))
        {
            *why = "the token is not base64url";
            return NGX_TAILGATE_AUTH_INVALID;
        }
    }

    if (dot1 == token->data || dot2 == dot1 + 1 || dot2 + 1 == end) {
        *why = "a part of the token is empty";
        return NGX_TAILGATE_AUTH_INVALID;
    }

    if (ngx_tailgate_jwt_decode(r->pool, token->data, dot1, 1, &header)
        != NGX_OK
        || ngx_tailgate_jwt_decode(r->pool, dot1 + 1, dot2, 1, &payload)
           != NGX_OK
        || ngx_tailgate_jwt_decode(r->pool, dot2 + 1, end, 0, &sig)
           != NGX_OK)
    {
        *why = "the token is not base64url";
        return NGX_TAILGATE_AUTH_INVALID;
    }


    /* the header: which key, which algorithm */

    if (jwt_add_headers_json(jwt, (char *) header.data) != 0) {
        *why = "the token's header is not a JSON object";
        return NGX_TAILGATE_AUTH_INVALID;
    }

    if (ngx_tailgate_jwt_string(jwt, 1, "alg", &alg) != NGX_OK
        || alg == NULL)
    {
        *why = "the token has no alg";
        return NGX_TAILGATE_AUTH_INVALID;
    }

    if (ngx_tailgate_jwt_string(jwt, 1, "kid", &kid) != NGX_OK
        || ngx_tailgate_jwt_string(jwt, 1, "typ", &typ) != NGX_OK
        || (typ && ngx_strcasecmp((u_char *) typ, (u_char *) "JWT") != 0
            && ngx_strcasecmp((u_char *) typ, (u_char *) "at+jwt") != 0))
    {
        *why = "the token's kid or typ is wrong";
        return NGX_TAILGATE_AUTH_INVALID;
    }

    s = jwt_get_headers_json(jwt, "crit");

    if (s) {
        free((void *) s);
        *why = "the token has critical extensions";
        return NGX_TAILGATE_AUTH_INVALID;
    }

    key = ngx_tailgate_jwt_select_key(tlcf->jwt_keys, kid);

    if (key == NULL && tlcf->jwks) {
        key = ngx_tailgate_jwks_key(tlcf->jwks, kid);

        if (key == NULL
            && ngx_tailgate_jwks_wait(r, tlcf->jwks, tlcf->jwks_wait, kid)
               == NGX_AGAIN)
        {
            *why = "the key set is fetched again for the token's kid";
            return NGX_TAILGATE_AUTH_AGAIN;
        }
    }

    if (key == NULL) {
        *why = "no key for the token's kid";
        return NGX_TAILGATE_AUTH_INVALID;
    }

    /* the key decides the algorithm, not the token: no "none", no mix */

    if (ngx_strlen(alg) != key->alg.len
        || ngx_strncmp(alg, key->alg.data, key->alg.len) != 0)
    {
        *why = "the token's alg is not its key's";
        return NGX_TAILGATE_AUTH_INVALID;
    }

    rc = ngx_tailgate_jwt_verify(key, token->data, dot2 - token->data,
                                 sig.data, sig.len);

    if (rc == NGX_ERROR) {
        *why = "the signature could not be checked";
        return NGX_TAILGATE_AUTH_ERROR;
    }

    if (rc != NGX_OK) {
        *why = "bad signature";
        return NGX_TAILGATE_AUTH_INVALID;
    }

    /* the claims */

    if (jwt_add_grants_json(jwt, (char *) payload.data) != 0) {
        *why = "the token's claims are not a JSON object";
        return NGX_TAILGATE_AUTH_INVALID;
    }

    claims = tlcf->jwt_claims;

    now = ngx_time();

    if (ngx_tailgate_jwt_int(jwt, "exp", exp) != NGX_OK) {
        *why = "the token has no integer exp";
        return NGX_TAILGATE_AUTH_INVALID;
    }

    if (now >= *exp + tlcf->jwt_leeway) {
        *why = "the token has expired";
        return NGX_TAILGATE_AUTH_EXPIRED;
    }

    rc = ngx_tailgate_jwt_int(jwt, "nbf", &nbf);

    if (rc == NGX_ERROR || (rc == NGX_OK && now + tlcf->jwt_leeway < nbf)) {
        *why = "the token is not valid yet (nbf)";
        return NGX_TAILGATE_AUTH_INVALID;
    }

    rc = ngx_tailgate_jwt_int(jwt, "iat", &iat);

    if (rc == NGX_ERROR || (rc == NGX_OK && iat > now + tlcf->jwt_leeway)) {
        *why = "the token was issued in the future (iat)";
        return NGX_TAILGATE_AUTH_INVALID;
    }

    if (tlcf->jwt_issuer.len) {
        if (ngx_tailgate_jwt_string(jwt, 0, "iss", &s) != NGX_OK
            || s == NULL
            || ngx_strlen(s) != tlcf->jwt_issuer.len
            || ngx_strncmp(s, tlcf->jwt_issuer.data, tlcf->jwt_issuer.len)
               != 0)
        {
            *why = "the token's issuer is not the expected one";
            return NGX_TAILGATE_AUTH_INVALID;
        }
    }

    if (tlcf->jwt_audience.len) {
        rc = ngx_tailgate_jwt_audience(jwt, &tlcf->jwt_audience, r->pool);

        if (rc != NGX_OK) {
            *why = "the token is not for this audience";
            return rc == NGX_ERROR ? NGX_TAILGATE_AUTH_ERROR
                                   : NGX_TAILGATE_AUTH_INVALID;
        }
    }

    /* bound to a proof's key, or to nothing */

    rc = ngx_tailgate_jwt_confirmation(jwt, jkt, r->pool);

    if (rc != NGX_OK) {
        *why = "the token's cnf is not an object with a SHA-256 jkt";
        return rc == NGX_ERROR ? NGX_TAILGATE_AUTH_ERROR
                               : NGX_TAILGATE_AUTH_INVALID;
    }

    /* who it is */

    if (ngx_tailgate_jwt_string(jwt, 0, (char *) claims->client.data, &s)
        != NGX_OK
        || s == NULL
        || ngx_tailgate_jwt_visible(s, NGX_TAILGATE_JWT_MAX_NAME) != NGX_OK)
    {
        *why = "the token has no usable client id claim";
        return NGX_TAILGATE_AUTH_INVALID;
    }

    id->client.data = (u_char *) s;
    id->client.len = ngx_strlen(s);

    /* the tenant is optional: absent, null or "" is none */

    if (claims->tenant.len) {
        if (ngx_tailgate_jwt_string(jwt, 0, (char *) claims->tenant.data,
                                    &s)
            != NGX_OK
            || (s && *s && ngx_tailgate_jwt_visible(s, NGX_TAILGATE_MAX_TENANT)
                     != NGX_OK))
        {
            *why = "the token's tenant claim is not a short string";
            return NGX_TAILGATE_AUTH_INVALID;
        }

        if (s && *s) {
            id->tenant.data = (u_char *) s;
            id->tenant.len = ngx_strlen(s);
        }
    }

    if ((claims->tags.len
         && ngx_tailgate_jwt_names(r->pool, jwt, (char *) claims->tags.data,
                                   NGX_TAILGATE_MAX_TAGS, 0, &id->tags,
                                   &id->ntags) != NGX_OK)
        || (claims->routes.len
            && ngx_tailgate_jwt_names(r->pool, jwt,
                                      (char *) claims->routes.data,
                                      NGX_TAILGATE_MAX_ROUTES, 1,
                                      &id->routes, &id->nroutes) != NGX_OK))
    {
        *why = "the token's tags or routes claim is not a list of names";
        return NGX_TAILGATE_AUTH_INVALID;
    }

    /* "roles": a list of names (or one string); "admin" makes an operator */

    if (claims->roles.len) {
        if (ngx_tailgate_jwt_names(r->pool, jwt, (char *) claims->roles.data,
                                   NGX_TAILGATE_MAX_TAGS, 0, &roles, &nroles)
            != NGX_OK)
        {
            *why = "the token's roles claim is not a list of names";
            return NGX_TAILGATE_AUTH_INVALID;
        }

        for (i = 0; i < nroles; i++) {
            if (roles[i].len == 5
                && ngx_strncmp(roles[i].data, "admin", 5) == 0)
            {
                id->admin = 1;
            }
        }
    }

    /* "limit": the name of a limit profile of the policy, optional */

    if (claims->limit.len) {
        if (ngx_tailgate_jwt_string(jwt, 0, (char *) claims->limit.data, &s)
            != NGX_OK
            || (s && *s
                && ngx_tailgate_check_name((u_char *) s,
                                           (u_char *) s + ngx_strlen(s), 0)
                   != NGX_OK))
        {
            *why = "the token's limit claim is not a name";
            return NGX_TAILGATE_AUTH_INVALID;
        }

        if (s && *s) {
            id->limit.data = (u_char *) s;
            id->limit.len = ngx_strlen(s);
        }
    }

    /* the strings belong to the jwt, which goes: keep copies */

    p = ngx_pnalloc(r->pool, id->client.len + id->tenant.len + id->limit.len);
    if (p == NULL) {
        return NGX_TAILGATE_AUTH_ERROR;
    }

    ngx_memcpy(p, id->client.data, id->client.len);
    id->client.data = p;
    p += id->client.len;

    if (id->tenant.len) {
        ngx_memcpy(p, id->tenant.data, id->tenant.len);
        id->tenant.data = p;
        p += id->tenant.len;
    }

    if (id->limit.len) {
        ngx_memcpy(p, id->limit.data, id->limit.len);
        id->limit.data = p;
    }

    return NGX_TAILGATE_AUTH_OK;
}


/*
 * "cnf": absent or null, the token is a bearer token (jkt->len 0); else
 * an object whose "jkt" is 43 base64url characters.  A confirmation of
 * another kind (a certificate's "x5t#S256") is one the gateway cannot
 * check, so such a token is refused rather than taken as a bearer token.
 * NGX_DECLINED: wrong; NGX_ERROR: out of memory.
 */

static ngx_int_t
ngx_tailgate_jwt_confirmation(jwt_t *jwt, ngx_str_t *jkt, ngx_pool_t *pool)
{
    char          *json;
    size_t         len, i;
    cJSON         *cnf;
    ngx_int_t      rc;
    const char    *s;
    const cJSON   *v;

    jkt->len = 0;

    json = jwt_get_grants_json(jwt, "cnf");

    if (json == NULL || ngx_tailgate_jwt_null(json)) {
        free(json);
        return NGX_OK;
    }

    cnf = cJSON_Parse(json);
    free(json);

    rc = NGX_DECLINED;

    v = cJSON_IsObject(cnf) ? cJSON_GetObjectItemCaseSensitive(cnf, "jkt")
                            : NULL;

    if (cJSON_IsString(v) && v->valuestring != NULL) {
        s = v->valuestring;
        len = ngx_strlen(s);

        for (i = 0; i < len; i++) {
            if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' && s[i] <= 'z')
                  || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'
                  || s[i] == '_'))
            {
                break;
            }
        }

        if (len == NGX_TAILGATE_JKT_LEN && i == len) {
            jkt->data = ngx_pnalloc(pool, len);

            if (jkt->data == NULL) {
                rc = NGX_ERROR;

            } else {
                ngx_memcpy(jkt->data, s, len);
                jkt->len = len;
                rc = NGX_OK;
            }
        }
    }

    cJSON_Delete(cnf);

    return rc;
}


/* by kid; a token without one gets the key configured without one */

static ngx_tailgate_jwt_key_t *
ngx_tailgate_jwt_select_key(ngx_array_t *keys, const char *kid)
{
    size_t                   len;
    ngx_uint_t               i;
    ngx_tailgate_jwt_key_t  *key;

    if (keys == NULL) {
        return NULL;
    }

    key = keys->elts;
    len = kid ? ngx_strlen(kid) : 0;

    for (i = 0; i < keys->nelts; i++) {
        if (key[i].kid.len == len
            && (len == 0 || ngx_strncmp(key[i].kid.data, kid, len) == 0))
        {
            return &key[i];
        }
    }

    return NULL;
}


/* NGX_OK: a good signature; NGX_DECLINED: a bad one; NGX_ERROR: ours */

static ngx_int_t
ngx_tailgate_jwt_verify(ngx_tailgate_jwt_key_t *key, u_char *data, size_t len,
    u_char *sig, size_t sig_len)
{
    int             rc;
    u_char         *der;
    ngx_int_t       result;
    unsigned int    mac_len, digest_len;
    ngx_tailgate_jwt_crypto_t  *c;
    u_char          mac[EVP_MAX_MD_SIZE], digest[EVP_MAX_MD_SIZE];

    if (key->secret.len) {
        if (HMAC(key->md, key->secret.data, (int) key->secret.len, data, len,
                 mac, &mac_len) == NULL)
        {
            return NGX_ERROR;
        }

        return (sig_len == mac_len && CRYPTO_memcmp(mac, sig, mac_len) == 0)
               ? NGX_OK : NGX_DECLINED;
    }

    der = NULL;

    if (key->ec_size) {
        result = ngx_tailgate_ecdsa_der(sig, sig_len, key->ec_size, &der,
                                        &sig_len);
        if (result != NGX_OK) {
            return result;
        }

        sig = der;
    }

    result = NGX_ERROR;

    c = key->crypto;

    if (c->verify == NULL && ngx_tailgate_jwt_verify_init(key) != NGX_OK) {
        goto done;
    }

    if (EVP_Digest(data, len, digest, &digest_len, c->md, NULL) == 1) {
        rc = EVP_PKEY_verify(c->verify, sig, sig_len, digest, digest_len);
        result = (rc == 1) ? NGX_OK : NGX_DECLINED;
    }

done:

    OPENSSL_free(der);

    return result;
}


/*
 * Once per key and worker: OpenSSL 3 looks algorithms up under a lock and
 * builds a context in every EVP_DigestVerifyInit(), a few microseconds a
 * token; a verify context of its own lets each token go straight to it.
 */

static ngx_int_t
ngx_tailgate_jwt_verify_init(ngx_tailgate_jwt_key_t *key)
{
    EVP_MD        *md;
    EVP_PKEY_CTX  *ctx;

#if (OPENSSL_VERSION_NUMBER >= 0x30000000L)
    md = EVP_MD_fetch(NULL, EVP_MD_get0_name(key->md), NULL);
#else
    md = (EVP_MD *) key->md;
#endif

    ctx = EVP_PKEY_CTX_new(key->crypto->pkey, NULL);

    if (md == NULL || ctx == NULL
        || EVP_PKEY_verify_init(ctx) != 1
        || (EVP_PKEY_base_id(key->crypto->pkey) == EVP_PKEY_RSA
            && EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) != 1)
        || EVP_PKEY_CTX_set_signature_md(ctx, md) != 1)
    {
        EVP_PKEY_CTX_free(ctx);
#if (OPENSSL_VERSION_NUMBER >= 0x30000000L)
        EVP_MD_free(md);
#endif
        return NGX_ERROR;
    }

    key->crypto->verify = ctx;
    key->crypto->md = md;

    return NGX_OK;
}


/* base64url without padding; text is NUL-terminated for libjwt */

static ngx_int_t
ngx_tailgate_jwt_decode(ngx_pool_t *pool, u_char *start, u_char *end,
    ngx_uint_t text, ngx_str_t *out)
{
    ngx_str_t  src;

    src.data = start;
    src.len = end - start;

    out->data = ngx_pnalloc(pool, ngx_base64_decoded_length(src.len) + 1);
    if (out->data == NULL) {
        return NGX_ERROR;
    }

    if (ngx_decode_base64url(out, &src) != NGX_OK) {
        return NGX_ERROR;
    }

    out->data[out->len] = '\0';

    /* a NUL inside JSON would hide the rest of it from libjwt */

    if (text && ngx_strlen(out->data) != out->len) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * A claim that must be an integer: libjwt answers 0 for anything else, so
 * its JSON text is read instead.  NGX_DECLINED: absent; NGX_ERROR: not a
 * (reasonable) integer.
 */

static ngx_int_t
ngx_tailgate_jwt_int(jwt_t *jwt, const char *name, time_t *value)
{
    char       *json;
    size_t      len;
    ngx_int_t   rc;
    ngx_uint_t  negative;

    json = jwt_get_grants_json(jwt, name);

    if (json == NULL) {
        return NGX_DECLINED;
    }

    if (ngx_tailgate_jwt_null(json)) {
        free(json);
        return NGX_DECLINED;
    }

    len = ngx_strlen(json);
    negative = (len && json[0] == '-');

    rc = NGX_ERROR;

    if (len > negative && len - negative <= 12) {
        *value = ngx_atotm((u_char *) json + negative, len - negative);

        if (*value != NGX_ERROR) {
            *value = negative ? -*value : *value;
            rc = NGX_OK;
        }
    }

    free(json);

    return rc;
}


/*
 * A string from the claims, or from the header: *value NULL when absent
 * or null, NGX_ERROR when present but not a string.
 */

static ngx_int_t
ngx_tailgate_jwt_string(jwt_t *jwt, ngx_uint_t header, const char *name,
    const char **value)
{
    char       *json;
    ngx_int_t   rc;

    *value = header ? jwt_get_header(jwt, name) : jwt_get_grant(jwt, name);

    if (*value) {
        return NGX_OK;
    }

    json = header ? jwt_get_headers_json(jwt, name)
                  : jwt_get_grants_json(jwt, name);

    if (json) {
        rc = ngx_tailgate_jwt_null(json) ? NGX_OK : NGX_ERROR;
        free(json);
        return rc;
    }

    return NGX_OK;
}


/*
 * A list of names: a JSON array of strings, or one string "a b" or "a,b";
 * absent, null or empty, it is no names at all.
 */

static ngx_int_t
ngx_tailgate_jwt_names(ngx_pool_t *pool, jwt_t *jwt, const char *name,
    ngx_uint_t max, ngx_uint_t route, ngx_str_t **names, ngx_uint_t *n)
{
    char         *json;
    u_char       *p, *q, *end;
    size_t        len;
    ngx_int_t     rc;
    ngx_array_t  *list;
    const char   *s;

    *names = NULL;
    *n = 0;

    s = jwt_get_grant(jwt, name);

    if (s) {
        len = ngx_strlen(s);

        if (len == 0) {
            return NGX_OK;
        }

        /* the separators of scopes and of lists both do: a copy to edit */

        p = ngx_pnalloc(pool, len);
        if (p == NULL) {
            return NGX_ERROR;
        }

        end = ngx_cpymem(p, s, len);

        for (q = p; q < end; q++) {
            if (*q == ' ') {
                *q = ',';
            }
        }

        return ngx_tailgate_parse_names(pool, p, end, max, route, names, n);
    }

    json = jwt_get_grants_json(jwt, name);

    if (json == NULL || ngx_tailgate_jwt_null(json)) {
        free(json);
        return NGX_OK;
    }

    rc = ngx_tailgate_json_strings(pool, (u_char *) json,
                                   (u_char *) json + ngx_strlen(json), &list);
    free(json);

    if (rc != NGX_OK || list->nelts > max
        || ngx_tailgate_check_names(list->elts, list->nelts, route) != NGX_OK)
    {
        return NGX_ERROR;
    }

    *names = list->elts;
    *n = list->nelts;

    return NGX_OK;
}


/* "aud": a string, or an array that must hold the expected one */

static ngx_int_t
ngx_tailgate_jwt_audience(jwt_t *jwt, ngx_str_t *audience, ngx_pool_t *pool)
{
    char         *json;
    ngx_int_t     rc;
    ngx_str_t    *item;
    ngx_uint_t    i;
    ngx_array_t  *list;
    const char   *s;

    s = jwt_get_grant(jwt, "aud");

    if (s) {
        return (ngx_strlen(s) == audience->len
                && ngx_strncmp(s, audience->data, audience->len) == 0)
               ? NGX_OK : NGX_DECLINED;
    }

    json = jwt_get_grants_json(jwt, "aud");

    if (json == NULL) {
        return NGX_DECLINED;
    }

    rc = ngx_tailgate_json_strings(pool, (u_char *) json,
                                   (u_char *) json + ngx_strlen(json), &list);
    free(json);

    if (rc != NGX_OK) {
        return NGX_DECLINED;
    }

    item = list->elts;

    for (i = 0; i < list->nelts; i++) {
        if (item[i].len == audience->len
            && ngx_strncmp(item[i].data, audience->data, audience->len) == 0)
        {
            return NGX_OK;
        }
    }

    return NGX_DECLINED;
}


/* 1..max visible ASCII characters: logs and frames carry it */

static ngx_int_t
ngx_tailgate_jwt_visible(const char *s, size_t max)
{
    size_t  i;

    for (i = 0; s[i]; i++) {
        if (i == max || (u_char) s[i] <= ' ' || (u_char) s[i] >= 0x7f) {
            return NGX_ERROR;
        }
    }

    return (i > 0) ? NGX_OK : NGX_ERROR;
}


/* libjwt's JSON text of a member whose value is null */

static ngx_uint_t
ngx_tailgate_jwt_null(const char *json)
{
    return ngx_strcmp(json, "null") == 0;
}


/* an identity and its strings as one block, for the cache and back */

static size_t
ngx_tailgate_identity_size(ngx_tailgate_identity_t *id)
{
    size_t      size;
    ngx_uint_t  i;

    size = id->client.len + id->tenant.len + id->limit.len
           + (id->ntags + id->nroutes) * sizeof(ngx_str_t);

    for (i = 0; i < id->ntags; i++) {
        size += id->tags[i].len;
    }

    for (i = 0; i < id->nroutes; i++) {
        size += id->routes[i].len;
    }

    return size;
}


static void
ngx_tailgate_identity_copy(ngx_tailgate_identity_t *dst,
    ngx_tailgate_identity_t *src, u_char *p)
{
    ngx_uint_t  i;
    ngx_str_t  *list;

    *dst = *src;

    list = (ngx_str_t *) p;
    p += (src->ntags + src->nroutes) * sizeof(ngx_str_t);

    dst->tags = src->ntags ? list : NULL;
    dst->routes = src->nroutes ? list + src->ntags : NULL;

    for (i = 0; i < src->ntags; i++) {
        dst->tags[i].data = p;
        dst->tags[i].len = src->tags[i].len;
        p = ngx_cpymem(p, src->tags[i].data, src->tags[i].len);
    }

    for (i = 0; i < src->nroutes; i++) {
        dst->routes[i].data = p;
        dst->routes[i].len = src->routes[i].len;
        p = ngx_cpymem(p, src->routes[i].data, src->routes[i].len);
    }

    dst->client.data = p;
    p = ngx_cpymem(p, src->client.data, src->client.len);

    dst->tenant.data = p;

    if (src->tenant.len) {
        p = ngx_cpymem(p, src->tenant.data, src->tenant.len);
    }

    dst->limit.data = p;

    if (src->limit.len) {
        (void) ngx_cpymem(p, src->limit.data, src->limit.len);
    }
}
