/*
 * A JSON Web Key Set (RFC 7517) read into the keys that may verify tokens.
 *
 * policyd fetches an identity provider's set and writes what passes here
 * to a file; every nginx worker reads that file (or one an operator
 * wrote) with the same code.  The file is a contract between the two
 * programs like the wire protocol, so its reader lives here, next to the
 * protocol's numbers, and neither side can read a key the other refused.
 * Plain C11 on cJSON and OpenSSL's libcrypto; no I/O.
 *
 * What a usable key is (docs/policy.md, "Token keys from a JWKS"):
 *   - an object with "kty" "RSA" or "EC"; "oct" (a shared secret) never;
 *   - "use", when given, "sig"; "key_ops", when given, holds "verify";
 *   - "alg", when given, RS256/RS384/RS512 for RSA, the curve's ES* for
 *     EC; an RSA key without one verifies RS256 tokens;
 *   - "kid", when given, 1 to 128 visible ASCII characters; a kid that two
 *     usable keys have leaves both out, and so do two keys without one;
 *   - RSA: "n" of 2048 to 8192 bits and "e" odd, at least 3, at most 8
 *     bytes; EC: "crv" P-256, P-384 or P-521 and "x", "y" of its size;
 *     every number unpadded base64url;
 *   - no private part ("d", "p", "q", ...), no member given twice;
 *   - a key OpenSSL 3 builds from those numbers and checks (an EC point
 *     on its curve): policyd writes no key a worker would refuse.
 * Other keys are left out, counted, and the first one's reason kept.
 * The document itself must be an object whose "keys" is an array of at
 * most TG_JWKS_KEYS_MAX entries, with one usable key at least.
 */

#ifndef TAILGATE_JWKS_H
#define TAILGATE_JWKS_H

#include <stdbool.h>
#include <stddef.h>


#define TG_JWKS_KEYS_MAX        100
#define TG_JWKS_KID_MAX         128
#define TG_JWKS_WHY_MAX         192
#define TG_JWKS_RSA_MIN_BYTES   256     /* 2048 bits */
#define TG_JWKS_RSA_MAX_BYTES   1024    /* 8192 bits */
#define TG_JWKS_E_MAX_BYTES     8


typedef enum {
    TG_JWK_RSA = 1,
    TG_JWK_EC
} tg_jwk_kty;


typedef struct {
    unsigned char  *data;           /* decoded, malloc()ed */
    size_t          len;
    char           *text;           /* the base64url text, malloc()ed */
} tg_jwk_num;


typedef struct {
    tg_jwk_kty      kty;
    char            kid[TG_JWKS_KID_MAX + 1];   /* "" with has_kid false */
    bool            has_kid;
    const char     *alg;            /* "RS256", ..., "ES512": static */
    const char     *crv;            /* EC: "P-256", ...; RSA: NULL */
    int             bits;           /* EC: 256, 384, 521 */

    tg_jwk_num      n, e;           /* RSA: modulus and exponent */
    tg_jwk_num      x, y;           /* EC: the point */

    void           *pkey;           /* EVP_PKEY *: the key, built; whoever
                                       takes it sets this NULL */
} tg_jwk;


typedef struct {
    tg_jwk         *keys;
    size_t          nkeys;
    size_t          skipped;        /* entries left out */
    char            why[TG_JWKS_WHY_MAX];   /* the first one's reason */
} tg_jwks;


/*
 * Reads text (len bytes, NUL not needed).  0: *set holds the usable keys
 * (free it with tg_jwks_free()); -1: the document is refused, err says
 * why with its key path ("keys: expected an array"), *set is empty.
 */
int tg_jwks_parse(const char *text, size_t len, tg_jwks *set, char *err,
    size_t errlen);

void tg_jwks_free(tg_jwks *set);

/* The key of this kid (kid NULL: the key without one), or NULL. */
const tg_jwk *tg_jwks_find(const tg_jwks *set, const char *kid, size_t len);

/*
 * The set as a JWKS of its usable keys only, and only the members that
 * make them: the text policyd writes.  malloc()ed, NUL-terminated; NULL
 * when out of memory.
 */
char *tg_jwks_text(const tg_jwks *set, size_t *len);

/*
 * One JWK outside a set: a DPoP proof's "jwk" header (RFC 9449), with
 * the rules of a set's key above.  obj is a cJSON object (struct cJSON *,
 * so that this header needs no cJSON).  0: *key is usable (free it with
 * tg_jwk_free()); -1: why says what is wrong, as "jwk.crv: ...".
 */
int tg_jwk_from_json(const void *obj, tg_jwk *key, char *why, size_t whylen);

void tg_jwk_free(tg_jwk *key);

/* base64url without padding into out (room for len * 3 / 4 + 1): -1 bad */
long tg_jwks_base64url(const char *s, size_t len, unsigned char *out);


#endif /* TAILGATE_JWKS_H */
