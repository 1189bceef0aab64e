
/*
 * Copyright (C) The Tailgate authors
 *
 * JSON Web Tokens through ngx_tailgate_jwt_authenticate(), the module's
 * whole path for a bearer token that looks like one: base64url, the
 * header, the key by kid and alg, the signature (OpenSSL), the claims
 * (libjwt), times, issuer, audience, and every claim mapped to the
 * identity; then the token cache.
 *
 * A fuzzer does not forge signatures, so the harness signs: the token is
 * checked by the real code, unchanged, with keys it can sign for.  An
 * input is one of
 *
 *   {"alg":"HS256"}\n{"sub":"c1",...}   a header and claims as JSON, one
 *                                       line each: encoded and signed
 *   eyJhbGci....eyJzdWIi...             a header and claims, encoded: signed
 *   eyJhbGci....eyJzdWIi....c2lnbmF0    a whole token, its own signature
 *
 * The harness signs with the key the header's kid names (the default
 * HS256 key without one, or for a kid it does not know), read with
 * libjwt as the module reads it.  The location is configured with four
 * keys (fuzz/jwt/), an issuer, an audience, a leeway, and every claim
 * mapping: client=sub tenant=tid tags=groups routes=models roles=roles.
 *
 * A token the module accepts is asked for again: the identity from the
 * cache must be the one it verified, and so must its DPoP binding
 * (cnf.jkt).
 */


#include "fuzz_ngx.h"
#include "ngx_tailgate_common.h"
#include "ngx_tailgate_names.h"

#include <jwt.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <string.h>


typedef struct {
    const char                  *kid;
    const char                  *alg;
    const char                  *file;
    const EVP_MD              *(*md)(void);
    size_t                       ec_size;
    EVP_PKEY                    *private;    /* RS*, ES*: signs */
    ngx_str_t                    secret;     /* HS* */
} fuzz_jwt_signer_t;


static fuzz_jwt_signer_t  fuzz_signers[] = {
    { "", "HS256", "hs256.key", EVP_sha256, 0, NULL, ngx_null_string },
    { "k-hs384", "HS384", "hs384.key", EVP_sha384, 0, NULL,
      ngx_null_string },
    { "k-es256", "ES256", "es256.pem", EVP_sha256, 32, NULL,
      ngx_null_string },
    { "k-rs256", "RS256", "rs256.pem", EVP_sha256, 0, NULL,
      ngx_null_string },
};

#define FUZZ_NSIGNERS  (sizeof(fuzz_signers) / sizeof(fuzz_signers[0]))


static ngx_cycle_t                    fuzz_cycle;
static ngx_http_tailgate_loc_conf_t   fuzz_tlcf;
static ngx_tailgate_jwt_claims_t      fuzz_claims;


static void fuzz_jwt_keys(ngx_pool_t *pool);
static ngx_int_t fuzz_jwt_token(ngx_pool_t *pool, const uint8_t *data,
    size_t size, ngx_str_t *token);
static ngx_str_t fuzz_jwt_encode(ngx_pool_t *pool, u_char *p, size_t len);
static fuzz_jwt_signer_t *fuzz_jwt_signer(ngx_pool_t *pool, u_char *p,
    u_char *end);
static ngx_int_t fuzz_jwt_sign(fuzz_jwt_signer_t *s, u_char *data,
    size_t len, u_char *sig, size_t *sig_len);
static void fuzz_jwt_same(ngx_tailgate_identity_t *a,
    ngx_tailgate_identity_t *b);
static void fuzz_jwt_identity(ngx_tailgate_identity_t *id);
static ngx_str_t fuzz_read(const char *name);


int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    ngx_pool_t  *pool;

    fuzz_ngx_init();

    pool = fuzz_ngx_pool();

    fuzz_cycle.pool = pool;
    fuzz_cycle.log = &fuzz_ngx_log;

    FUZZ_CHECK(ngx_tailgate_crypto_init_worker(&fuzz_cycle) == NGX_OK);
    FUZZ_CHECK(ngx_tailgate_jwt_init_worker(&fuzz_cycle, 64) == NGX_OK);

    fuzz_jwt_keys(pool);

    /* tailgate_jwt_claims client=sub tenant=tid tags=groups ... */
    ngx_str_set(&fuzz_claims.client, "sub");
    ngx_str_set(&fuzz_claims.tenant, "tid");
    ngx_str_set(&fuzz_claims.tags, "groups");
    ngx_str_set(&fuzz_claims.routes, "models");
    ngx_str_set(&fuzz_claims.roles, "roles");

    fuzz_tlcf.jwt_claims = &fuzz_claims;
    ngx_str_set(&fuzz_tlcf.jwt_issuer, "https://idp.test");
    ngx_str_set(&fuzz_tlcf.jwt_audience, "tailgate");
    fuzz_tlcf.jwt_leeway = 5;

    return 0;
}


/* tailgate_jwt_key, as the directive leaves each key */

static void
fuzz_jwt_keys(ngx_pool_t *pool)
{
    BIO                     *bio;
    u_char                  *der, *q;
    ngx_str_t                text;
    ngx_uint_t               i;
    const u_char            *cq;
    fuzz_jwt_signer_t       *s;
    ngx_tailgate_jwt_key_t  *key;
    int                      n;

    fuzz_tlcf.jwt_keys = ngx_array_create(pool, FUZZ_NSIGNERS,
                                          sizeof(ngx_tailgate_jwt_key_t));
    FUZZ_CHECK(fuzz_tlcf.jwt_keys != NULL);

    for (i = 0; i < FUZZ_NSIGNERS; i++) {
        s = &fuzz_signers[i];

        key = ngx_array_push(fuzz_tlcf.jwt_keys);
        FUZZ_CHECK(key != NULL);
        ngx_memzero(key, sizeof(ngx_tailgate_jwt_key_t));

        key->kid.data = (u_char *) s->kid;
        key->kid.len = strlen(s->kid);
        key->alg.data = (u_char *) s->alg;
        key->alg.len = strlen(s->alg);
        key->md = (void *) s->md();
        key->ec_size = s->ec_size;

        text = fuzz_read(s->file);

        if (s->alg[0] == 'H') {
            /* the file's bytes, a final newline aside */
            while (text.len && (text.data[text.len - 1] == '\n'
                                || text.data[text.len - 1] == '\r'))
            {
                text.len--;
            }

            s->secret = text;
            key->secret = text;
            continue;
        }

        bio = BIO_new_mem_buf(text.data, (int) text.len);
        FUZZ_CHECK(bio != NULL);
        s->private = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
        BIO_free(bio);
        FUZZ_CHECK(s->private != NULL);

        /* the module holds the public key only */

        n = i2d_PUBKEY(s->private, NULL);
        FUZZ_CHECK(n > 0);
        der = malloc(n);
        FUZZ_CHECK(der != NULL);
        q = der;
        i2d_PUBKEY(s->private, &q);
        cq = der;

        key->crypto = ngx_pcalloc(pool, sizeof(ngx_tailgate_jwt_crypto_t));
        FUZZ_CHECK(key->crypto != NULL);
        key->crypto->pkey = d2i_PUBKEY(NULL, &cq, n);
        FUZZ_CHECK(key->crypto->pkey != NULL);

        free(der);
        free(text.data);
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ngx_pool_t               *pool;
    ngx_str_t                 token, jkt, jkt_again;
    ngx_connection_t          c;
    ngx_http_request_t        r;
    ngx_tailgate_auth_e       rc;
    const char               *why;
    ngx_tailgate_identity_t  *id, *again;

    pool = fuzz_ngx_pool();

    if (fuzz_jwt_token(pool, data, size, &token) != NGX_OK) {
        ngx_destroy_pool(pool);
        return 0;
    }

    ngx_memzero(&r, sizeof(ngx_http_request_t));
    ngx_memzero(&c, sizeof(ngx_connection_t));
    c.log = &fuzz_ngx_log;
    c.pool = pool;
    r.connection = &c;
    r.pool = pool;

    id = NULL;
    why = NULL;

    rc = ngx_tailgate_jwt_authenticate(&r, &fuzz_tlcf, &token, &id, &jkt,
                                       &why);

    FUZZ_CHECK(rc == NGX_TAILGATE_AUTH_OK || rc == NGX_TAILGATE_AUTH_INVALID
               || rc == NGX_TAILGATE_AUTH_EXPIRED);

    if (getenv("TAILGATE_FUZZ_VERBOSE")) {
        fprintf(stderr, "jwt: %s%s%.*s\n",
                rc == NGX_TAILGATE_AUTH_OK ? "ok, client " : "refused: ",
                rc == NGX_TAILGATE_AUTH_OK ? "" : why,
                rc == NGX_TAILGATE_AUTH_OK ? (int) id->client.len : 0,
                rc == NGX_TAILGATE_AUTH_OK ? (char *) id->client.data : "");
    }

    if (rc != NGX_TAILGATE_AUTH_OK) {
        /* the operator's log says why */
        FUZZ_CHECK(why != NULL);

    } else {
        FUZZ_CHECK(id != NULL && id->jwt);
        fuzz_jwt_identity(id);

        /* the same token again: from the cache, the same identity */

        again = NULL;

        rc = ngx_tailgate_jwt_authenticate(&r, &fuzz_tlcf, &token, &again,
                                           &jkt_again, &why);

        FUZZ_CHECK(rc == NGX_TAILGATE_AUTH_OK && again != NULL);
        FUZZ_CHECK(again != id);
        fuzz_jwt_same(id, again);

        /* a DPoP binding (cnf.jkt) is remembered with the token */

        FUZZ_CHECK(jkt.len == 0 || jkt.len == NGX_TAILGATE_JKT_LEN);
        FUZZ_CHECK(jkt_again.len == jkt.len
                   && ngx_memcmp(jkt_again.data, jkt.data, jkt.len) == 0);
    }

    /* every input starts with an empty cache */
    ngx_tailgate_jwt_exit_worker();

    ngx_destroy_pool(pool);

    return 0;
}


/* the token for an input, in the pool */

static ngx_int_t
fuzz_jwt_token(ngx_pool_t *pool, const uint8_t *data, size_t size,
    ngx_str_t *token)
{
    u_char             *p, *nl, *dot, *end;
    size_t              dots, sig_len;
    ngx_str_t           header, payload, sig, raw;
    fuzz_jwt_signer_t  *s;
    u_char              mac[1024];

    p = (u_char *) data;
    end = p + size;

    if (size && p[0] == '{') {
        nl = memchr(p, '\n', size);

        if (nl == NULL) {
            return NGX_DECLINED;
        }

        header = fuzz_jwt_encode(pool, p, nl - p);
        payload = fuzz_jwt_encode(pool, nl + 1, end - nl - 1);

        raw.len = header.len + 1 + payload.len;
        raw.data = ngx_pnalloc(pool, raw.len);
        FUZZ_CHECK(raw.data != NULL);

        dot = ngx_cpymem(raw.data, header.data, header.len);
        *dot = '.';
        ngx_memcpy(dot + 1, payload.data, payload.len);

    } else {
        for (dots = 0, dot = p; dot < end; dot++) {
            dots += (*dot == '.');
        }

        if (dots == 2) {
            /* a whole token, as the client sent it: exactly that long */
            token->data = ngx_pnalloc(pool, size);
            FUZZ_CHECK(token->data != NULL);
            ngx_memcpy(token->data, data, size);
            token->len = size;

            return NGX_OK;
        }

        /* the module takes only tokens with two dots (looks_like_jwt) */

        if (dots != 1) {
            return NGX_DECLINED;
        }

        raw.data = p;
        raw.len = size;
    }

    dot = memchr(raw.data, '.', raw.len);

    s = fuzz_jwt_signer(pool, raw.data, dot);

    if (fuzz_jwt_sign(s, raw.data, raw.len, mac, &sig_len) != NGX_OK) {
        return NGX_DECLINED;
    }

    sig = fuzz_jwt_encode(pool, mac, sig_len);

    token->len = raw.len + 1 + sig.len;
    token->data = ngx_pnalloc(pool, token->len);
    FUZZ_CHECK(token->data != NULL);

    p = ngx_cpymem(token->data, raw.data, raw.len);
    *p++ = '.';
    ngx_memcpy(p, sig.data, sig.len);

    return NGX_OK;
}


static ngx_str_t
fuzz_jwt_encode(ngx_pool_t *pool, u_char *p, size_t len)
{
    ngx_str_t  src, dst;

    src.data = p;
    src.len = len;

    dst.data = ngx_pnalloc(pool, ngx_base64_encoded_length(len));
    FUZZ_CHECK(dst.data != NULL);

    ngx_encode_base64url(&dst, &src);

    return dst;
}


/* the key of the header's kid, as libjwt reads the header */

static fuzz_jwt_signer_t *
fuzz_jwt_signer(ngx_pool_t *pool, u_char *p, u_char *end)
{
    jwt_t       *jwt;
    ngx_str_t    src, json;
    ngx_uint_t   i;
    const char  *kid;

    src.data = p;
    src.len = end - p;

    json.data = ngx_pnalloc(pool, ngx_base64_decoded_length(src.len) + 1);
    FUZZ_CHECK(json.data != NULL);

    if (ngx_decode_base64url(&json, &src) != NGX_OK) {
        return &fuzz_signers[0];
    }

    json.data[json.len] = '\0';

    if (jwt_new(&jwt) != 0) {
        return &fuzz_signers[0];
    }

    i = 0;

    if (jwt_add_headers_json(jwt, (char *) json.data) == 0) {
        kid = jwt_get_header(jwt, "kid");

        for (i = FUZZ_NSIGNERS - 1; kid && i > 0; i--) {
            if (strcmp(kid, fuzz_signers[i].kid) == 0) {
                break;
            }
        }

        if (kid == NULL) {
            i = 0;
        }
    }

    jwt_free(jwt);

    return &fuzz_signers[i];
}


/* JWS signatures: HMAC, RSASSA-PKCS1-v1_5, ECDSA as r || s */

static ngx_int_t
fuzz_jwt_sign(fuzz_jwt_signer_t *s, u_char *data, size_t len, u_char *sig,
    size_t *sig_len)
{
    int                   ok;
    size_t                der_len;
    EVP_MD_CTX           *ctx;
    ECDSA_SIG            *ecdsa;
    const BIGNUM         *r, *ss;
    const unsigned char  *q;
    unsigned int          mac_len;
    u_char                der[1024];

    if (s->secret.len) {
        if (HMAC(s->md(), s->secret.data, (int) s->secret.len, data, len,
                 sig, &mac_len) == NULL)
        {
            return NGX_ERROR;
        }

        *sig_len = mac_len;
        return NGX_OK;
    }

    ctx = EVP_MD_CTX_new();
    FUZZ_CHECK(ctx != NULL);

    der_len = sizeof(der);

    ok = EVP_DigestSignInit(ctx, NULL, s->md(), NULL, s->private) == 1
         && EVP_DigestSign(ctx, der, &der_len, data, len) == 1;

    EVP_MD_CTX_free(ctx);
    FUZZ_CHECK(ok);

    if (s->ec_size == 0) {
        ngx_memcpy(sig, der, der_len);
        *sig_len = der_len;
        return NGX_OK;
    }

    q = der;
    ecdsa = d2i_ECDSA_SIG(NULL, &q, (long) der_len);
    FUZZ_CHECK(ecdsa != NULL);

    ECDSA_SIG_get0(ecdsa, &r, &ss);

    FUZZ_CHECK(BN_bn2binpad(r, sig, (int) s->ec_size) == (int) s->ec_size);
    FUZZ_CHECK(BN_bn2binpad(ss, sig + s->ec_size, (int) s->ec_size)
               == (int) s->ec_size);

    ECDSA_SIG_free(ecdsa);

    *sig_len = 2 * s->ec_size;

    return NGX_OK;
}


/* what the rest of the module takes for granted of an identity */

static void
fuzz_jwt_identity(ngx_tailgate_identity_t *id)
{
    size_t      k;
    ngx_uint_t  i;

    /* the client: 1..128 visible ASCII characters */
    FUZZ_CHECK(id->client.len >= 1 && id->client.len <= 128);

    for (k = 0; k < id->client.len; k++) {
        FUZZ_CHECK(id->client.data[k] > ' ' && id->client.data[k] < 0x7f);
    }

    FUZZ_CHECK(id->tenant.len <= NGX_TAILGATE_MAX_TENANT);

    for (k = 0; k < id->tenant.len; k++) {
        FUZZ_CHECK(id->tenant.data[k] > ' ' && id->tenant.data[k] < 0x7f);
    }

    FUZZ_CHECK(id->ntags <= NGX_TAILGATE_MAX_TAGS);
    FUZZ_CHECK(id->nroutes <= NGX_TAILGATE_MAX_ROUTES);
    FUZZ_CHECK(id->ntags == 0 || id->tags != NULL);
    FUZZ_CHECK(id->nroutes == 0 || id->routes != NULL);

    for (i = 0; i < id->ntags; i++) {
        FUZZ_CHECK(ngx_tailgate_check_name(id->tags[i].data,
                                           id->tags[i].data + id->tags[i].len,
                                           0)
                   == NGX_OK);
    }

    for (i = 0; i < id->nroutes; i++) {
        FUZZ_CHECK(ngx_tailgate_check_name(id->routes[i].data,
                                           id->routes[i].data
                                           + id->routes[i].len, 1)
                   == NGX_OK);
    }
}


static void
fuzz_jwt_str_same(ngx_str_t *a, ngx_str_t *b)
{
    FUZZ_CHECK(a->len == b->len);
    FUZZ_CHECK(a->len == 0 || ngx_memcmp(a->data, b->data, a->len) == 0);
}


static void
fuzz_jwt_same(ngx_tailgate_identity_t *a, ngx_tailgate_identity_t *b)
{
    ngx_uint_t  i;

    fuzz_jwt_str_same(&a->client, &b->client);
    fuzz_jwt_str_same(&a->tenant, &b->tenant);

    FUZZ_CHECK(a->ntags == b->ntags && a->nroutes == b->nroutes);

    for (i = 0; i < a->ntags; i++) {
        fuzz_jwt_str_same(&a->tags[i], &b->tags[i]);
    }

    for (i = 0; i < a->nroutes; i++) {
        fuzz_jwt_str_same(&a->routes[i], &b->routes[i]);
    }

    FUZZ_CHECK(a->expires == b->expires);
    FUZZ_CHECK(a->jwt == b->jwt && a->admin == b->admin);
}


static ngx_str_t
fuzz_read(const char *name)
{
    FILE       *f;
    char        path[4096];
    ngx_str_t   s;
    u_char      buf[8192];

    snprintf(path, sizeof(path), "%s/jwt/%s", FUZZ_DIR, name);

    f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "fuzz: cannot open %s\n", path);
        abort();
    }

    s.len = fread(buf, 1, sizeof(buf), f);
    fclose(f);

    s.data = malloc(s.len + 1);
    FUZZ_CHECK(s.data != NULL);
    ngx_memcpy(s.data, buf, s.len);
    s.data[s.len] = '\0';

    return s;
}


/*
 * Key sets (ngx_tailgate_jwks.c) need the worker's policyd connection and
 * its phases; this harness configures none (fuzz_tlcf.jwks is NULL), so
 * the JWT checks never call these.  The set's reader has its own harness,
 * jwks.
 */

void *
ngx_tailgate_jwks_key(ngx_tailgate_jwks_t *jwks, const char *kid)
{
    abort();
}


ngx_uint_t
ngx_tailgate_jwks_generation(ngx_tailgate_jwks_t *jwks)
{
    abort();
}


ngx_int_t
ngx_tailgate_jwks_wait(ngx_http_request_t *r, ngx_tailgate_jwks_t *jwks,
    ngx_msec_t wait, const char *kid)
{
    abort();
}
