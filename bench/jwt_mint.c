/*
 * jwt_mint: signed JWTs and DPoP proofs for the benchmark, one per line.
 *
 *   jwt_mint ALG KEY.pem KID COUNT
 *       COUNT distinct tokens.  ALG is RS256 or ES256.  Every token has
 *       the claims the benchmark's gateway checks, a unique "jti" and an
 *       "exp" an hour away.
 *
 *   jwt_mint bound ALG KEY.pem KID PROOF_KEY.pem
 *       one such token, bound (RFC 9449 "cnf.jkt") to PROOF_KEY's public
 *       key.
 *
 *   jwt_mint proofs PROOF_KEY.pem TOKEN_FILE HTU COUNT
 *       COUNT DPoP proofs for the token on TOKEN_FILE's first line: POST
 *       to HTU, "iat" now, "ath" the token's hash, each "jti" unique (a
 *       random prefix per run of jwt_mint, then a counter) since the
 *       gateway takes every proof once.  ES256 for a P-256 key, RS256
 *       for an RSA one.
 */

#define _GNU_SOURCE

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>


#define JWT_MAX  8192
#define B64_LEN(n)  (((n) + 2) / 3 * 4 + 1)


typedef struct {
    EVP_PKEY    *pkey;
    EVP_MD_CTX  *md;
    const char  *alg;
    int          ec;
} signer_t;


static size_t
b64url(const unsigned char *in, size_t len, char *out)
{
    static const char  tab[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

    size_t  i, n;

    n = 0;

    for (i = 0; i + 2 < len; i += 3) {
        out[n++] = tab[in[i] >> 2];
        out[n++] = tab[((in[i] & 3) << 4) | (in[i + 1] >> 4)];
        out[n++] = tab[((in[i + 1] & 15) << 2) | (in[i + 2] >> 6)];
        out[n++] = tab[in[i + 2] & 63];
    }

    if (i < len) {
        out[n++] = tab[in[i] >> 2];

        if (i + 1 < len) {
            out[n++] = tab[((in[i] & 3) << 4) | (in[i + 1] >> 4)];
            out[n++] = tab[(in[i + 1] & 15) << 2];

        } else {
            out[n++] = tab[(in[i] & 3) << 4];
        }
    }

    out[n] = '\0';

    return n;
}


static void
b64url_text(const char *text, char *out)
{
    b64url((const unsigned char *) text, strlen(text), out);
}


/* base64url of SHA-256: a thumbprint, an "ath" */

static int
sha256_b64url(const char *text, size_t len, char *out)
{
    unsigned int   n;
    unsigned char  md[EVP_MAX_MD_SIZE];

    if (EVP_Digest(text, len, md, &n, EVP_sha256(), NULL) != 1) {
        return -1;
    }

    b64url(md, n, out);

    return 0;
}


static int
signer_open(signer_t *s, const char *path, const char *alg)
{
    FILE  *f;

    f = fopen(path, "r");
    s->pkey = f ? PEM_read_PrivateKey(f, NULL, NULL, NULL) : NULL;

    if (f) {
        fclose(f);
    }

    if (s->pkey == NULL) {
        fprintf(stderr, "jwt_mint: cannot read %s\n", path);
        return -1;
    }

    if (alg == NULL) {
        alg = EVP_PKEY_is_a(s->pkey, "EC") ? "ES256" : "RS256";
    }

    s->alg = alg;
    s->ec = (alg[0] == 'E');

    if (s->ec != EVP_PKEY_is_a(s->pkey, "EC")) {
        fprintf(stderr, "jwt_mint: %s is no key for %s\n", path, alg);
        return -1;
    }

    s->md = EVP_MD_CTX_new();

    return s->md ? 0 : -1;
}


static void
signer_close(signer_t *s)
{
    EVP_MD_CTX_free(s->md);
    EVP_PKEY_free(s->pkey);
}


/* prints "header.claims.signature" and a newline */

static int
sign_and_print(signer_t *s, const char *header64, const char *claims64)
{
    int             n;
    char            input[2 * B64_LEN(JWT_MAX)], sig64[B64_LEN(1024)];
    size_t          siglen;
    ECDSA_SIG      *es;
    const BIGNUM   *r, *sv;
    unsigned char   sig[1024], raw[64];
    const unsigned char  *p;

    n = snprintf(input, sizeof(input), "%s.%s", header64, claims64);

    if (n < 0 || (size_t) n >= sizeof(input)) {
        fprintf(stderr, "jwt_mint: token too long\n");
        return -1;
    }

    siglen = sizeof(sig);

    if (EVP_DigestSignInit(s->md, NULL, EVP_sha256(), NULL, s->pkey) != 1
        || EVP_DigestSign(s->md, sig, &siglen, (unsigned char *) input,
                          (size_t) n)
           != 1)
    {
        fprintf(stderr, "jwt_mint: signing failed\n");
        return -1;
    }

    if (s->ec) {
        /* DER to the JWS form: r || s, 32 bytes each */

        p = sig;
        es = d2i_ECDSA_SIG(NULL, &p, (long) siglen);

        if (es == NULL) {
            fprintf(stderr, "jwt_mint: odd ECDSA signature\n");
            return -1;
        }

        ECDSA_SIG_get0(es, &r, &sv);
        BN_bn2binpad(r, raw, 32);
        BN_bn2binpad(sv, raw + 32, 32);
        ECDSA_SIG_free(es);

        memcpy(sig, raw, 64);
        siglen = 64;
    }

    b64url(sig, siglen, sig64);
    printf("%s.%s\n", input, sig64);

    return 0;
}


static int
bn_param_b64url(EVP_PKEY *pkey, const char *name, int pad, char *out)
{
    int             len;
    BIGNUM         *bn;
    unsigned char   bytes[1024];

    bn = NULL;

    if (EVP_PKEY_get_bn_param(pkey, name, &bn) != 1) {
        return -1;
    }

    len = pad ? pad : BN_num_bytes(bn);

    if (len > (int) sizeof(bytes) || BN_bn2binpad(bn, bytes, len) != len) {
        BN_free(bn);
        return -1;
    }

    BN_free(bn);
    b64url(bytes, (size_t) len, out);

    return 0;
}


/*
 * The public JWK of a key, with its members in the order of RFC 7638, so
 * that the same text is the thumbprint's input too.
 */

static int
public_jwk(EVP_PKEY *pkey, char *jwk, size_t size)
{
    int   n;
    char  a[1400], b[1400];

    if (EVP_PKEY_is_a(pkey, "EC")) {
        if (bn_param_b64url(pkey, OSSL_PKEY_PARAM_EC_PUB_X, 32, a) != 0
            || bn_param_b64url(pkey, OSSL_PKEY_PARAM_EC_PUB_Y, 32, b) != 0)
        {
            return -1;
        }

        n = snprintf(jwk, size, "{\"crv\":\"P-256\",\"kty\":\"EC\","
                     "\"x\":\"%s\",\"y\":\"%s\"}", a, b);

    } else {
        if (bn_param_b64url(pkey, OSSL_PKEY_PARAM_RSA_E, 0, a) != 0
            || bn_param_b64url(pkey, OSSL_PKEY_PARAM_RSA_N, 0, b) != 0)
        {
            return -1;
        }

        n = snprintf(jwk, size, "{\"e\":\"%s\",\"kty\":\"RSA\",\"n\":\"%s\"}",
                     a, b);
    }

    return (n < 0 || (size_t) n >= size) ? -1 : 0;
}


static int
mint_tokens(signer_t *s, const char *kid, int count)
{
    int    i;
    long   exp;
    char   json[1024], header64[B64_LEN(1024)], claims64[B64_LEN(1024)];

    exp = (long) time(NULL) + 3600;

    snprintf(json, sizeof(json), "{\"alg\":\"%s\",\"kid\":\"%s\","
             "\"typ\":\"JWT\"}", s->alg, kid);
    b64url_text(json, header64);

    for (i = 0; i < count; i++) {
        snprintf(json, sizeof(json), "{\"sub\":\"bench-%d\",\"iss\":"
                 "\"https://idp.bench\",\"aud\":\"tailgate\",\"exp\":%ld,"
                 "\"jti\":\"%d\"}", i % 64, exp, i);
        b64url_text(json, claims64);

        if (sign_and_print(s, header64, claims64) != 0) {
            return -1;
        }
    }

    return 0;
}


static int
mint_bound(signer_t *s, const char *kid, const char *proof_key)
{
    int       rc;
    char      jwk[2048], jkt[64], json[1024], header64[B64_LEN(1024)],
              claims64[B64_LEN(1024)];
    signer_t  proof;

    if (signer_open(&proof, proof_key, NULL) != 0) {
        return -1;
    }

    rc = public_jwk(proof.pkey, jwk, sizeof(jwk));
    signer_close(&proof);

    if (rc != 0 || sha256_b64url(jwk, strlen(jwk), jkt) != 0) {
        fprintf(stderr, "jwt_mint: no thumbprint of %s\n", proof_key);
        return -1;
    }

    snprintf(json, sizeof(json), "{\"alg\":\"%s\",\"kid\":\"%s\","
             "\"typ\":\"JWT\"}", s->alg, kid);
    b64url_text(json, header64);

    snprintf(json, sizeof(json), "{\"sub\":\"bench-dpop\",\"iss\":"
             "\"https://idp.bench\",\"aud\":\"tailgate\",\"exp\":%ld,"
             "\"jti\":\"bound\",\"cnf\":{\"jkt\":\"%s\"}}",
             (long) time(NULL) + 3600, jkt);
    b64url_text(json, claims64);

    return sign_and_print(s, header64, claims64);
}


static int
mint_proofs(signer_t *s, const char *token_file, const char *htu, int count)
{
    int             i, n;
    long            iat;
    FILE           *f;
    char            token[JWT_MAX], jwk[2048], json[JWT_MAX], ath[64],
                    prefix[32], header64[B64_LEN(JWT_MAX)],
                    claims64[B64_LEN(JWT_MAX)];
    size_t          len;
    unsigned char   rnd[12];

    f = fopen(token_file, "r");

    if (f == NULL || fgets(token, sizeof(token), f) == NULL) {
        fprintf(stderr, "jwt_mint: no token in %s\n", token_file);
        return -1;
    }

    fclose(f);

    len = strcspn(token, "\r\n");
    token[len] = '\0';

    if (len == 0 || sha256_b64url(token, len, ath) != 0
        || public_jwk(s->pkey, jwk, sizeof(jwk)) != 0
        || RAND_bytes(rnd, sizeof(rnd)) != 1)
    {
        fprintf(stderr, "jwt_mint: cannot make proofs\n");
        return -1;
    }

    b64url(rnd, sizeof(rnd), prefix);

    n = snprintf(json, sizeof(json), "{\"typ\":\"dpop+jwt\",\"alg\":\"%s\","
                 "\"jwk\":%s}", s->alg, jwk);

    if (n < 0 || (size_t) n >= sizeof(json)) {
        fprintf(stderr, "jwt_mint: proof header too long\n");
        return -1;
    }

    b64url_text(json, header64);

    iat = (long) time(NULL);

    for (i = 0; i < count; i++) {
        n = snprintf(json, sizeof(json), "{\"jti\":\"%s-%d\",\"htm\":"
                     "\"POST\",\"htu\":\"%s\",\"iat\":%ld,\"ath\":\"%s\"}",
                     prefix, i, htu, iat, ath);

        if (n < 0 || (size_t) n >= sizeof(json)) {
            fprintf(stderr, "jwt_mint: proof claims too long\n");
            return -1;
        }

        b64url_text(json, claims64);

        if (sign_and_print(s, header64, claims64) != 0) {
            return -1;
        }
    }

    return 0;
}


static int
usage(void)
{
    fprintf(stderr,
            "usage: jwt_mint RS256|ES256 KEY.pem KID COUNT\n"
            "       jwt_mint bound RS256|ES256 KEY.pem KID PROOF_KEY.pem\n"
            "       jwt_mint proofs PROOF_KEY.pem TOKEN_FILE HTU COUNT\n");
    return 2;
}


static int
is_alg(const char *alg)
{
    return strcmp(alg, "RS256") == 0 || strcmp(alg, "ES256") == 0;
}


int
main(int argc, char **argv)
{
    int       rc;
    signer_t  s;

    if (argc == 5 && is_alg(argv[1])) {
        if (signer_open(&s, argv[2], argv[1]) != 0) {
            return 1;
        }

        rc = mint_tokens(&s, argv[3], atoi(argv[4]));

    } else if (argc == 6 && strcmp(argv[1], "bound") == 0
               && is_alg(argv[2]))
    {
        if (signer_open(&s, argv[3], argv[2]) != 0) {
            return 1;
        }

        rc = mint_bound(&s, argv[4], argv[5]);

    } else if (argc == 6 && strcmp(argv[1], "proofs") == 0) {
        if (signer_open(&s, argv[2], NULL) != 0) {
            return 1;
        }

        rc = mint_proofs(&s, argv[3], argv[4], atoi(argv[5]));

    } else {
        return usage();
    }

    signer_close(&s);

    if (rc == 0 && fflush(stdout) != 0) {
        rc = -1;
    }

    return rc == 0 ? 0 : 1;
}
