
/*
 * Copyright (C) The Tailgate authors
 *
 * dpop: DPoP proofs through ngx_tailgate_dpop_parse(), the module's reader
 * of a request's DPoP header: base64url, the header ("typ", "alg", "jwk"
 * through the JWK reader of proto/tailgate_jwks.c), the signature by that
 * jwk (OpenSSL), the claims, and the jwk's RFC 7638 thumbprint.
 *
 * A fuzzer does not forge signatures, so the harness signs: an input is
 *
 *   {"typ":"dpop+jwt","alg":"ES256","jwk":{...}}\n{"jti":"...",...}
 *                  a header and claims as JSON, one line each: encoded and
 *                  signed with fuzz/jwt/es256.pem, or rs256.pem when the
 *                  header names no EC algorithm
 *   eyJ0eXAi....eyJqdGki....c2lnbmF0
 *                  a whole proof, its own signature
 *
 * The seeds (corpus/dpop/) carry the public jwks of those two keys, so
 * that signatures verify and the claims are reached.  Checked besides the
 * sanitizers: an accepted proof's fields are within their bounds, its
 * thumbprint is 43 base64url characters, every accepted proof signed by
 * the EC key has that key's one thumbprint (EC coordinates have one
 * text), and reading the proof again gives the same result.
 */


#include "fuzz_ngx.h"
#include "ngx_tailgate_common.h"
#include "ngx_tailgate_dpop.h"

#include <openssl/bn.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <string.h>


static EVP_PKEY   *fuzz_ec_key, *fuzz_rsa_key;
static u_char      fuzz_ec_jkt[NGX_TAILGATE_JKT_LEN];
static ngx_uint_t  fuzz_ec_jkt_known;


static EVP_PKEY *fuzz_dpop_key(const char *name);
static ngx_int_t fuzz_dpop_proof(ngx_pool_t *pool, const uint8_t *data,
    size_t size, ngx_str_t *proof, EVP_PKEY **signer);
static void fuzz_dpop_encode(ngx_pool_t *pool, u_char *p, size_t len,
    ngx_str_t *out);
static void fuzz_dpop_sign(EVP_PKEY *key, u_char *data, size_t len,
    u_char *sig, size_t *sig_len);
static void fuzz_dpop_check(ngx_tailgate_dpop_proof_t *proof);
static ngx_uint_t fuzz_dpop_same(ngx_str_t *a, ngx_str_t *b);


int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    ngx_cycle_t  cycle;

    fuzz_ngx_init();

    ngx_memzero(&cycle, sizeof(ngx_cycle_t));
    cycle.log = &fuzz_ngx_log;

    FUZZ_CHECK(ngx_tailgate_crypto_init_worker(&cycle) == NGX_OK);

    fuzz_ec_key = fuzz_dpop_key("es256.pem");
    fuzz_rsa_key = fuzz_dpop_key("rs256.pem");

    return 0;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ngx_int_t                   rc;
    ngx_str_t                   text;
    EVP_PKEY                   *signer;
    ngx_pool_t                 *pool;
    const char                 *why;
    ngx_tailgate_dpop_proof_t   proof, again;

    pool = fuzz_ngx_pool();

    if (fuzz_dpop_proof(pool, data, size, &text, &signer) != NGX_OK) {
        ngx_destroy_pool(pool);
        return 0;
    }

    why = NULL;
    rc = ngx_tailgate_dpop_parse(pool, &text, &proof, &why);

    FUZZ_CHECK(rc == NGX_OK || rc == NGX_DECLINED);

    if (getenv("TAILGATE_FUZZ_VERBOSE")) {
        fprintf(stderr, "dpop: %s\n", rc == NGX_OK ? "ok" : why);
    }

    if (rc != NGX_OK) {
        /* the operator's log says why */
        FUZZ_CHECK(why != NULL);
        ngx_destroy_pool(pool);
        return 0;
    }

    fuzz_dpop_check(&proof);

    /* only the harness's keys sign: the EC one has one thumbprint */

    FUZZ_CHECK(signer != NULL);

    if (signer == fuzz_ec_key) {
        if (!fuzz_ec_jkt_known) {
            ngx_memcpy(fuzz_ec_jkt, proof.jkt, NGX_TAILGATE_JKT_LEN);
            fuzz_ec_jkt_known = 1;
        }

        FUZZ_CHECK(ngx_memcmp(fuzz_ec_jkt, proof.jkt, NGX_TAILGATE_JKT_LEN)
                   == 0);
    }

    /* the same text, the same proof */

    FUZZ_CHECK(ngx_tailgate_dpop_parse(pool, &text, &again, &why) == NGX_OK);
    FUZZ_CHECK(fuzz_dpop_same(&proof.alg, &again.alg)
               && fuzz_dpop_same(&proof.htm, &again.htm)
               && fuzz_dpop_same(&proof.htu, &again.htu)
               && fuzz_dpop_same(&proof.jti, &again.jti)
               && fuzz_dpop_same(&proof.ath, &again.ath)
               && proof.iat == again.iat
               && ngx_memcmp(proof.jkt, again.jkt, NGX_TAILGATE_JKT_LEN)
                  == 0);

    ngx_destroy_pool(pool);

    return 0;
}


static void
fuzz_dpop_check(ngx_tailgate_dpop_proof_t *proof)
{
    size_t  i;
    u_char  c;

    FUZZ_CHECK(proof->alg.len == 5);
    FUZZ_CHECK(proof->htm.len >= 1
               && proof->htm.len <= NGX_TAILGATE_DPOP_MAX_HTM);
    FUZZ_CHECK(proof->htu.len >= 1
               && proof->htu.len <= NGX_TAILGATE_DPOP_MAX_HTU);
    FUZZ_CHECK(proof->jti.len >= 1
               && proof->jti.len <= NGX_TAILGATE_DPOP_MAX_JTI);
    FUZZ_CHECK(proof->ath.len <= NGX_TAILGATE_JKT_LEN);
    FUZZ_CHECK(proof->iat >= 0);

    for (i = 0; i < NGX_TAILGATE_JKT_LEN; i++) {
        c = proof->jkt[i];
        FUZZ_CHECK((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
                   || (c >= '0' && c <= '9') || c == '-' || c == '_');
    }
}


static ngx_uint_t
fuzz_dpop_same(ngx_str_t *a, ngx_str_t *b)
{
    return a->len == b->len
           && (a->len == 0 || ngx_memcmp(a->data, b->data, a->len) == 0);
}


/*
 * The proof of an input: two lines are a header and claims to sign, one
 * line a proof as it is.  *signer: the key that signed, or NULL.
 */

static ngx_int_t
fuzz_dpop_proof(ngx_pool_t *pool, const uint8_t *data, size_t size,
    ngx_str_t *proof, EVP_PKEY **signer)
{
    u_char     *nl, *p;
    size_t      sig_len;
    ngx_str_t   header, claims, sig;
    u_char      raw_sig[1024];

    *signer = NULL;

    nl = memchr(data, '\n', size);

    if (nl == NULL) {

        /* libFuzzer's buffer: a read past it is caught */

        proof->data = (u_char *) data;
        proof->len = size;
        return NGX_OK;
    }

    if (size > 16384) {
        return NGX_DECLINED;
    }

    fuzz_dpop_encode(pool, (u_char *) data, nl - (u_char *) data, &header);
    fuzz_dpop_encode(pool, nl + 1, (u_char *) data + size - nl - 1, &claims);

    *signer = (memmem(data, nl - (u_char *) data, "\"ES", 3) != NULL)
              ? fuzz_ec_key : fuzz_rsa_key;

    /* what is signed: header "." claims, then "." and the signature */

    p = ngx_pnalloc(pool, header.len + claims.len + 2
                          + ngx_base64_encoded_length(sizeof(raw_sig)));
    FUZZ_CHECK(p != NULL);

    proof->data = p;
    p = ngx_cpymem(p, header.data, header.len);
    *p++ = '.';
    p = ngx_cpymem(p, claims.data, claims.len);

    fuzz_dpop_sign(*signer, proof->data, p - proof->data, raw_sig, &sig_len);

    *p++ = '.';

    header.data = raw_sig;
    header.len = sig_len;
    sig.data = p;
    ngx_encode_base64url(&sig, &header);

    proof->len = p + sig.len - proof->data;

    return NGX_OK;
}


static void
fuzz_dpop_encode(ngx_pool_t *pool, u_char *p, size_t len, ngx_str_t *out)
{
    ngx_str_t  src;

    src.data = p;
    src.len = len;

    out->data = ngx_pnalloc(pool, ngx_base64_encoded_length(len) + 1);
    FUZZ_CHECK(out->data != NULL);

    ngx_encode_base64url(out, &src);
}


/* RS256 as it is, ES256 as r || s */

static void
fuzz_dpop_sign(EVP_PKEY *key, u_char *data, size_t len, u_char *sig,
    size_t *sig_len)
{
    int                   ok;
    size_t                der_len;
    ECDSA_SIG            *ecdsa;
    EVP_MD_CTX           *ctx;
    const BIGNUM         *r, *s;
    const unsigned char  *q;
    u_char                der[1024];

    ctx = EVP_MD_CTX_new();
    FUZZ_CHECK(ctx != NULL);

    der_len = sizeof(der);

    ok = EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, key) == 1
         && EVP_DigestSign(ctx, der, &der_len, data, len) == 1;

    EVP_MD_CTX_free(ctx);
    FUZZ_CHECK(ok);

    if (key == fuzz_rsa_key) {
        ngx_memcpy(sig, der, der_len);
        *sig_len = der_len;
        return;
    }

    q = der;
    ecdsa = d2i_ECDSA_SIG(NULL, &q, (long) der_len);
    FUZZ_CHECK(ecdsa != NULL);

    ECDSA_SIG_get0(ecdsa, &r, &s);

    FUZZ_CHECK(BN_bn2binpad(r, sig, 32) == 32);
    FUZZ_CHECK(BN_bn2binpad(s, sig + 32, 32) == 32);

    ECDSA_SIG_free(ecdsa);

    *sig_len = 64;
}


static EVP_PKEY *
fuzz_dpop_key(const char *name)
{
    FILE      *f;
    char       path[4096];
    EVP_PKEY  *key;

    snprintf(path, sizeof(path), "%s/jwt/%s", FUZZ_DIR, name);

    f = fopen(path, "rb");
    FUZZ_CHECK(f != NULL);

    key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);

    FUZZ_CHECK(key != NULL);

    return key;
}


/*
 * What ngx_tailgate_dpop_check() calls besides the parser: the request's
 * side (trusted networks, the replay cache, the configuration) has its
 * tests in t/38-dpop.t; this harness reads proofs only.
 */

ngx_module_t  ngx_http_tailgate_module;


ngx_tailgate_identity_t *
ngx_tailgate_trusted_identity(ngx_http_request_t *r,
    ngx_http_tailgate_loc_conf_t *tlcf)
{
    abort();
}


ngx_int_t
ngx_tailgate_dpop_replay_add(ngx_shm_zone_t *zone, u_char *digest,
    time_t expires, time_t now)
{
    abort();
}

