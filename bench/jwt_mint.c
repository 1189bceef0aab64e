/*
 * jwt_mint: many distinct signed JWTs for the benchmark, one per line.
 *
 *   jwt_mint ALG PRIVATE_KEY.pem KID COUNT
 *
 * ALG is RS256 or ES256.  Every token has the claims the benchmark's
 * gateway checks, a unique "jti" and an "exp" an hour away.
 */

#define _GNU_SOURCE

#include <openssl/bn.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>


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


int
main(int argc, char **argv)
{
    int             ec, count, i;
    long            exp;
    char            header[256], claims[512], input[2048], sig64[512];
    size_t          n, siglen;
    FILE           *f;
    EVP_PKEY       *pkey;
    EVP_MD_CTX     *ctx;
    ECDSA_SIG      *es;
    const BIGNUM   *r, *s;
    unsigned char   sig[1024], raw[64];
    const unsigned char  *p;

    if (argc != 5 || (strcmp(argv[1], "RS256") && strcmp(argv[1], "ES256"))) {
        fprintf(stderr, "usage: jwt_mint RS256|ES256 KEY.pem KID COUNT\n");
        return 2;
    }

    ec = (argv[1][0] == 'E');
    count = atoi(argv[4]);

    f = fopen(argv[2], "r");
    pkey = f ? PEM_read_PrivateKey(f, NULL, NULL, NULL) : NULL;

    if (pkey == NULL) {
        fprintf(stderr, "jwt_mint: cannot read %s\n", argv[2]);
        return 1;
    }

    fclose(f);

    ctx = EVP_MD_CTX_new();
    exp = (long) time(NULL) + 3600;

    snprintf(input, sizeof(input), "{\"alg\":\"%s\",\"kid\":\"%s\","
             "\"typ\":\"JWT\"}", argv[1], argv[3]);
    b64url((unsigned char *) input, strlen(input), header);

    for (i = 0; i < count; i++) {
        snprintf(input, sizeof(input), "{\"sub\":\"bench-%d\",\"iss\":"
                 "\"https://idp.bench\",\"aud\":\"tailgate\",\"exp\":%ld,"
                 "\"jti\":\"%d\"}", i % 64, exp, i);
        b64url((unsigned char *) input, strlen(input), claims);

        n = (size_t) snprintf(input, sizeof(input), "%s.%s", header, claims);

        siglen = sizeof(sig);

        if (EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, pkey) != 1
            || EVP_DigestSign(ctx, sig, &siglen, (unsigned char *) input, n)
               != 1)
        {
            fprintf(stderr, "jwt_mint: signing failed\n");
            return 1;
        }

        if (ec) {
            /* DER to the JWS form: r || s, 32 bytes each */

            p = sig;
            es = d2i_ECDSA_SIG(NULL, &p, (long) siglen);
            ECDSA_SIG_get0(es, &r, &s);
            BN_bn2binpad(r, raw, 32);
            BN_bn2binpad(s, raw + 32, 32);
            ECDSA_SIG_free(es);

            memcpy(sig, raw, 64);
            siglen = 64;
        }

        b64url(sig, siglen, sig64);
        printf("%s.%s\n", input, sig64);
    }

    EVP_MD_CTX_free(ctx);
    EVP_PKEY_free(pkey);

    return 0;
}
