/*
 * The JWKS reader that policyd and the nginx workers share
 * (tailgate_jwks.h says what it accepts and why it lives here).
 */

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>

#include "tailgate_jwks.h"


typedef struct {
    const char     *crv;
    const char     *alg;
    int             bits;
    size_t          size;           /* bytes of x and of y */
} tg_jwk_curve;


static const tg_jwk_curve  tg_jwk_curves[] = {
    { "P-256", "ES256", 256, 32 },
    { "P-384", "ES384", 384, 48 },
    { "P-521", "ES512", 521, 66 },
    { NULL, NULL, 0, 0 }
};

static const char *const  tg_jwk_rsa_algs[] = {
    "RS256", "RS384", "RS512", NULL
};

/* the private parts of RSA and EC keys (RFC 7518, 6.2.2 and 6.3.2) */
static const char *const  tg_jwk_private[] = {
    "d", "p", "q", "dp", "dq", "qi", "oth", NULL
};


static int tg_jwk_read(const cJSON *item, size_t i, tg_jwk *key, char *why,
    size_t whylen);
static int tg_jwk_string(const cJSON *obj, const char *name,
    const char **out);
static int tg_jwk_number(const cJSON *obj, const char *name, size_t min,
    size_t max, tg_jwk_num *num);
static bool tg_jwk_twice(const cJSON *obj, const char **name);
static void tg_jwk_clear(tg_jwk *key);
static void *tg_jwk_pkey(const tg_jwk *key);
static bool tg_jwk_modulus_ok(const BIGNUM *n, const BIGNUM *e);
static void tg_jwks_say(char *buf, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void tg_jwks_leave_out(tg_jwks *set, bool *out, size_t n);


int
tg_jwks_parse(const char *text, size_t len, tg_jwks *set, char *err,
    size_t errlen)
{
    int            rc;
    bool          *out;
    size_t         i, j, n, usable;
    cJSON         *root;
    const cJSON   *keys, *item;
    const char    *end, *twice;
    char           why[TG_JWKS_WHY_MAX];

    memset(set, 0, sizeof(tg_jwks));

    /*
     * Raw control characters are not JSON, and a "\u0000" would end a
     * string early in cJSON and in C: a kid could then stand for another.
     */

    for (i = 0; i < len; i++) {
        if ((unsigned char) text[i] < 0x20 && text[i] != '\t'
            && text[i] != '\n' && text[i] != '\r')
        {
            tg_jwks_say(err, errlen, "a control character at byte %zu", i);
            return -1;
        }

        if (text[i] == '\\' && i + 5 < len && text[i + 1] == 'u'
            && text[i + 2] == '0' && text[i + 3] == '0'
            && text[i + 4] == '0' && text[i + 5] == '0')
        {
            tg_jwks_say(err, errlen, "a \\u0000 at byte %zu", i);
            return -1;
        }
    }

    end = NULL;
    root = cJSON_ParseWithLengthOpts(text, len, &end, 0);

    if (root == NULL) {
        tg_jwks_say(err, errlen, "not JSON (at byte %zu)",
                    end != NULL && end >= text ? (size_t) (end - text) : 0);
        return -1;
    }

    for (/* void */; end < text + len; end++) {
        if (*end != ' ' && *end != '\t' && *end != '\n' && *end != '\r') {
            cJSON_Delete(root);
            tg_jwks_say(err, errlen, "text after the JSON document");
            return -1;
        }
    }

    rc = -1;
    out = NULL;

    if (!cJSON_IsObject(root)) {
        tg_jwks_say(err, errlen, "expected a JSON object with \"keys\"");
        goto done;
    }

    if (tg_jwk_twice(root, &twice)) {
        tg_jwks_say(err, errlen, "%.64s: given twice", twice);
        goto done;
    }

    keys = cJSON_GetObjectItemCaseSensitive(root, "keys");

    if (keys == NULL) {
        tg_jwks_say(err, errlen, "keys: missing (expected an array of keys)");
        goto done;
    }

    if (!cJSON_IsArray(keys)) {
        tg_jwks_say(err, errlen, "keys: expected an array of keys");
        goto done;
    }

    n = (size_t) cJSON_GetArraySize(keys);

    if (n == 0) {
        tg_jwks_say(err, errlen, "keys: empty (expected at least one key)");
        goto done;
    }

    if (n > TG_JWKS_KEYS_MAX) {
        tg_jwks_say(err, errlen, "keys: %zu keys, expected at most %d", n,
                    TG_JWKS_KEYS_MAX);
        goto done;
    }

    set->keys = calloc(n, sizeof(tg_jwk));
    out = calloc(n, sizeof(bool));

    if (set->keys == NULL || out == NULL) {
        tg_jwks_say(err, errlen, "out of memory");
        goto done;
    }

    i = 0;

    cJSON_ArrayForEach(item, keys) {
        if (tg_jwk_read(item, i, &set->keys[set->nkeys], why, sizeof(why))
            != 0)
        {
            if (set->skipped++ == 0) {
                memcpy(set->why, why, sizeof(set->why));
            }

        } else {
            set->nkeys++;
        }

        i++;
    }

    /* a kid two keys have names neither; nor may two keys have none */

    for (i = 0; i < set->nkeys; i++) {
        for (j = i + 1; j < set->nkeys; j++) {
            if (set->keys[i].has_kid == set->keys[j].has_kid
                && strcmp(set->keys[i].kid, set->keys[j].kid) == 0)
            {
                if (!out[i] && !out[j] && set->skipped == 0) {
                    if (set->keys[i].has_kid) {
                        tg_jwks_say(set->why, sizeof(set->why),
                                    "keys: kid \"%s\" is given twice",
                                    set->keys[i].kid);
                    } else {
                        tg_jwks_say(set->why, sizeof(set->why),
                                    "keys: two keys without a kid");
                    }
                }

                out[i] = true;
                out[j] = true;
            }
        }
    }

    tg_jwks_leave_out(set, out, set->nkeys);

    usable = set->nkeys;

    if (usable == 0) {
        tg_jwks_say(err, errlen, "no usable key (%s)", set->why);
        goto done;
    }

    rc = 0;

done:

    free(out);
    cJSON_Delete(root);

    if (rc != 0) {
        tg_jwks_free(set);
    }

    return rc;
}


static void
tg_jwks_leave_out(tg_jwks *set, bool *out, size_t n)
{
    size_t  i, kept;

    kept = 0;

    for (i = 0; i < n; i++) {
        if (out[i]) {
            tg_jwk_clear(&set->keys[i]);
            set->skipped++;
            continue;
        }

        if (kept != i) {
            set->keys[kept] = set->keys[i];
        }

        kept++;
    }

    set->nkeys = kept;
}


/* one entry of "keys": 0 usable, -1 left out with why */

static int
tg_jwk_read(const cJSON *item, size_t i, tg_jwk *key, char *why,
    size_t whylen)
{
    size_t               k, len;
    const char          *kty, *use, *alg, *kid, *crv, *twice;
    const cJSON         *ops, *op;
    const tg_jwk_curve  *c;
    bool                 verify;

    memset(key, 0, sizeof(tg_jwk));

    if (!cJSON_IsObject(item)) {
        tg_jwks_say(why, whylen, "keys[%zu]: expected an object", i);
        return -1;
    }

    if (tg_jwk_twice(item, &twice)) {
        tg_jwks_say(why, whylen, "keys[%zu].%.64s: given twice", i, twice);
        return -1;
    }

    for (k = 0; tg_jwk_private[k] != NULL; k++) {
        if (cJSON_GetObjectItemCaseSensitive(item, tg_jwk_private[k])) {
            tg_jwks_say(why, whylen, "keys[%zu].%s: a private key has no "
                        "place in a published set", i, tg_jwk_private[k]);
            return -1;
        }
    }

    if (tg_jwk_string(item, "kty", &kty) != 1) {
        tg_jwks_say(why, whylen, "keys[%zu].kty: expected \"RSA\" or \"EC\"",
                    i);
        return -1;
    }

    if (strcmp(kty, "RSA") == 0) {
        key->kty = TG_JWK_RSA;

    } else if (strcmp(kty, "EC") == 0) {
        key->kty = TG_JWK_EC;

    } else {
        tg_jwks_say(why, whylen, "keys[%zu].kty: \"%.32s\" is not supported "
                    "(expected \"RSA\" or \"EC\")", i, kty);
        return -1;
    }

    switch (tg_jwk_string(item, "use", &use)) {
    case -1:
        tg_jwks_say(why, whylen, "keys[%zu].use: expected a string", i);
        return -1;
    case 1:
        if (strcmp(use, "sig") != 0) {
            tg_jwks_say(why, whylen, "keys[%zu].use: \"%.32s\" is not for "
                        "signatures", i, use);
            return -1;
        }
        break;
    default:
        break;
    }

    ops = cJSON_GetObjectItemCaseSensitive(item, "key_ops");

    if (ops != NULL) {
        verify = false;

        if (!cJSON_IsArray(ops)) {
            tg_jwks_say(why, whylen, "keys[%zu].key_ops: expected an array "
                        "of strings", i);
            return -1;
        }

        cJSON_ArrayForEach(op, ops) {
            if (!cJSON_IsString(op) || op->valuestring == NULL) {
                tg_jwks_say(why, whylen, "keys[%zu].key_ops: expected an "
                            "array of strings", i);
                return -1;
            }

            verify |= strcmp(op->valuestring, "verify") == 0;
        }

        if (!verify) {
            tg_jwks_say(why, whylen, "keys[%zu].key_ops: no \"verify\"", i);
            return -1;
        }
    }

    switch (tg_jwk_string(item, "kid", &kid)) {
    case -1:
        tg_jwks_say(why, whylen, "keys[%zu].kid: expected a string", i);
        return -1;
    case 1:
        len = strlen(kid);

        for (k = 0; k < len; k++) {
            if ((unsigned char) kid[k] <= ' '
                || (unsigned char) kid[k] >= 0x7f)
            {
                break;
            }
        }

        if (len == 0 || len > TG_JWKS_KID_MAX || k < len) {
            tg_jwks_say(why, whylen, "keys[%zu].kid: expected 1 to %d "
                        "visible ASCII characters", i, TG_JWKS_KID_MAX);
            return -1;
        }

        memcpy(key->kid, kid, len + 1);
        key->has_kid = true;
        break;
    default:
        break;
    }

    if (tg_jwk_string(item, "alg", &alg) == -1) {
        tg_jwks_say(why, whylen, "keys[%zu].alg: expected a string", i);
        return -1;
    }

    if (key->kty == TG_JWK_RSA) {
        if (alg == NULL) {
            key->alg = "RS256";

        } else {
            for (k = 0; tg_jwk_rsa_algs[k] != NULL; k++) {
                if (strcmp(alg, tg_jwk_rsa_algs[k]) == 0) {
                    key->alg = tg_jwk_rsa_algs[k];
                }
            }

            if (key->alg == NULL) {
                tg_jwks_say(why, whylen, "keys[%zu].alg: \"%.32s\" is not "
                            "supported for RSA (expected RS256, RS384 or "
                            "RS512)", i, alg);
                return -1;
            }
        }

        if (tg_jwk_number(item, "n", TG_JWKS_RSA_MIN_BYTES,
                          TG_JWKS_RSA_MAX_BYTES, &key->n) != 0)
        {
            tg_jwks_say(why, whylen, "keys[%zu].n: expected the base64url "
                        "modulus of 2048 to 8192 bits", i);
            goto failed;
        }

        if (tg_jwk_number(item, "e", 1, TG_JWKS_E_MAX_BYTES, &key->e) != 0
            || (key->e.data[key->e.len - 1] & 1) == 0
            || (key->e.len == 1 && key->e.data[0] < 3))
        {
            tg_jwks_say(why, whylen, "keys[%zu].e: expected the base64url "
                        "odd public exponent, 3 or more", i);
            goto failed;
        }

        goto build;
    }

    if (tg_jwk_string(item, "crv", &crv) != 1) {
        tg_jwks_say(why, whylen, "keys[%zu].crv: expected \"P-256\", "
                    "\"P-384\" or \"P-521\"", i);
        return -1;
    }

    for (c = tg_jwk_curves; c->crv != NULL; c++) {
        if (strcmp(crv, c->crv) == 0) {
            break;
        }
    }

    if (c->crv == NULL) {
        tg_jwks_say(why, whylen, "keys[%zu].crv: \"%.32s\" is not supported "
                    "(expected \"P-256\", \"P-384\" or \"P-521\")", i, crv);
        return -1;
    }

    if (alg != NULL && strcmp(alg, c->alg) != 0) {
        tg_jwks_say(why, whylen, "keys[%zu].alg: \"%.32s\" does not go with "
                    "%s (expected %s)", i, alg, c->crv, c->alg);
        return -1;
    }

    key->crv = c->crv;
    key->alg = c->alg;
    key->bits = c->bits;

    if (tg_jwk_number(item, "x", c->size, c->size, &key->x) != 0
        || tg_jwk_number(item, "y", c->size, c->size, &key->y) != 0)
    {
        tg_jwks_say(why, whylen, "keys[%zu].%s: expected the base64url "
                    "coordinate of %zu bytes", i,
                    key->x.data == NULL ? "x" : "y", c->size);
        goto failed;
    }

build:

    key->pkey = tg_jwk_pkey(key);

    if (key->pkey == NULL) {
        tg_jwks_say(why, whylen, "keys[%zu]: not a key OpenSSL takes (%s)",
                    i, key->kty == TG_JWK_EC ? "a point off its curve"
                                             : "a modulus it refuses");
        goto failed;
    }

    return 0;

failed:

    tg_jwk_clear(key);

    return -1;
}


int
tg_jwk_from_json(const void *obj, tg_jwk *key, char *why, size_t whylen)
{
    char    text[TG_JWKS_WHY_MAX];
    size_t  skip;

    if (tg_jwk_read(obj, 0, key, text, sizeof(text)) == 0) {
        return 0;
    }

    /* a set's reason names "keys[0]"; this key is just "jwk" */

    skip = strncmp(text, "keys[0]", 7) == 0 ? 7 : 0;

    tg_jwks_say(why, whylen, "jwk%s", text + skip);

    return -1;
}


void
tg_jwk_free(tg_jwk *key)
{
    tg_jwk_clear(key);
}


/* 1: a string, 0: absent or null, -1: another type */

static int
tg_jwk_string(const cJSON *obj, const char *name, const char **out)
{
    const cJSON  *v;

    *out = NULL;

    v = cJSON_GetObjectItemCaseSensitive(obj, name);

    if (v == NULL || cJSON_IsNull(v)) {
        return 0;
    }

    if (!cJSON_IsString(v) || v->valuestring == NULL) {
        return -1;
    }

    *out = v->valuestring;

    return 1;
}


/*
 * A big-endian number in base64url, min to max bytes once leading zeros
 * (which RFC 7518 forbids but some publish) are set aside.
 */

static int
tg_jwk_number(const cJSON *obj, const char *name, size_t min, size_t max,
    tg_jwk_num *num)
{
    long            n;
    size_t          len, skip;
    const char     *s;
    unsigned char  *buf;

    if (tg_jwk_string(obj, name, &s) != 1) {
        return -1;
    }

    len = strlen(s);

    /* generous: leading zeros and a little more */

    if (len == 0 || len > (max + 8) * 4 / 3 + 4) {
        return -1;
    }

    buf = malloc(len * 3 / 4 + 1);
    if (buf == NULL) {
        return -1;
    }

    n = tg_jwks_base64url(s, len, buf);

    for (skip = 0; n > 0 && (size_t) skip + 1 < (size_t) n && buf[skip] == 0;
         skip++)
    {
        /* void */
    }

    /* a coordinate keeps its size: its leading zeros are part of it */

    if (min == max) {
        skip = 0;
    }

    if (n < 0 || (size_t) n - skip < min || (size_t) n - skip > max) {
        free(buf);
        return -1;
    }

    memmove(buf, buf + skip, (size_t) n - skip);

    num->data = buf;
    num->len = (size_t) n - skip;
    num->text = strdup(s);

    if (num->text == NULL) {
        free(buf);
        num->data = NULL;
        return -1;
    }

    return 0;
}


long
tg_jwks_base64url(const char *s, size_t len, unsigned char *out)
{
    int       v;
    size_t    i, n;
    uint32_t  acc;
    unsigned  bits;

    if (len % 4 == 1) {
        return -1;
    }

    acc = 0;
    bits = 0;
    n = 0;

    for (i = 0; i < len; i++) {
        if (s[i] >= 'A' && s[i] <= 'Z') {
            v = s[i] - 'A';
        } else if (s[i] >= 'a' && s[i] <= 'z') {
            v = s[i] - 'a' + 26;
        } else if (s[i] >= '0' && s[i] <= '9') {
            v = s[i] - '0' + 52;
        } else if (s[i] == '-') {
            v = 62;
        } else if (s[i] == '_') {
            v = 63;
        } else {
            return -1;
        }

        acc = (acc << 6) | (uint32_t) v;
        bits += 6;

        if (bits >= 8) {
            bits -= 8;
            out[n++] = (unsigned char) (acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }

    /* the bits left over must be zero: one text for one number */

    if (acc != 0) {
        return -1;
    }

    return (long) n;
}


/* a member given twice: the first such name in *name */

static bool
tg_jwk_twice(const cJSON *obj, const char **name)
{
    const cJSON  *a, *b;

    for (a = obj->child; a != NULL; a = a->next) {
        for (b = a->next; b != NULL; b = b->next) {
            if (a->string != NULL && b->string != NULL
                && strcmp(a->string, b->string) == 0)
            {
                *name = a->string;
                return true;
            }
        }
    }

    return false;
}


const tg_jwk *
tg_jwks_find(const tg_jwks *set, const char *kid, size_t len)
{
    size_t  i;

    for (i = 0; i < set->nkeys; i++) {
        if (kid == NULL) {
            if (!set->keys[i].has_kid) {
                return &set->keys[i];
            }

        } else if (set->keys[i].has_kid
                   && strlen(set->keys[i].kid) == len
                   && memcmp(set->keys[i].kid, kid, len) == 0)
        {
            return &set->keys[i];
        }
    }

    return NULL;
}


char *
tg_jwks_text(const tg_jwks *set, size_t *len)
{
    char          *text;
    size_t         i;
    cJSON         *root, *keys, *k;
    const tg_jwk  *key;
    bool           ok;

    root = cJSON_CreateObject();
    keys = cJSON_AddArrayToObject(root, "keys");

    ok = root != NULL && keys != NULL;

    for (i = 0; ok && i < set->nkeys; i++) {
        key = &set->keys[i];

        k = cJSON_CreateObject();
        ok = k != NULL && cJSON_AddItemToArray(keys, k);

        if (!ok) {
            cJSON_Delete(k);
            break;
        }

        ok = cJSON_AddStringToObject(k, "kty", key->kty == TG_JWK_RSA
                                               ? "RSA" : "EC") != NULL
             && (!key->has_kid
                 || cJSON_AddStringToObject(k, "kid", key->kid) != NULL)
             && cJSON_AddStringToObject(k, "use", "sig") != NULL
             && cJSON_AddStringToObject(k, "alg", key->alg) != NULL;

        if (ok && key->kty == TG_JWK_RSA) {
            ok = cJSON_AddStringToObject(k, "n", key->n.text) != NULL
                 && cJSON_AddStringToObject(k, "e", key->e.text) != NULL;

        } else if (ok) {
            ok = cJSON_AddStringToObject(k, "crv", key->crv) != NULL
                 && cJSON_AddStringToObject(k, "x", key->x.text) != NULL
                 && cJSON_AddStringToObject(k, "y", key->y.text) != NULL;
        }
    }

    text = ok ? cJSON_PrintUnformatted(root) : NULL;

    cJSON_Delete(root);

    if (text != NULL && len != NULL) {
        *len = strlen(text);
    }

    return text;
}


static void
tg_jwk_clear(tg_jwk *key)
{
    tg_jwk_num  *nums[4];
    size_t       i;

    nums[0] = &key->n;
    nums[1] = &key->e;
    nums[2] = &key->x;
    nums[3] = &key->y;

    for (i = 0; i < 4; i++) {
        free(nums[i]->data);
        free(nums[i]->text);
    }

    EVP_PKEY_free(key->pkey);

    memset(key, 0, sizeof(tg_jwk));
}


void
tg_jwks_free(tg_jwks *set)
{
    size_t  i;

    for (i = 0; i < set->nkeys; i++) {
        tg_jwk_clear(&set->keys[i]);
    }

    free(set->keys);

    set->keys = NULL;
    set->nkeys = 0;
}


static void
tg_jwks_say(char *buf, size_t len, const char *fmt, ...)
{
    va_list  ap;

    if (len == 0) {
        return;
    }

    va_start(ap, fmt);
    (void) vsnprintf(buf, len, fmt, ap);
    va_end(ap);
}


/*
 * The EVP_PKEY of the numbers, checked as OpenSSL checks a public key;
 * NULL when it will not have it.
 */

static void *
tg_jwk_pkey(const tg_jwk *key)
{
    size_t           len;
    BIGNUM          *n, *e;
    EVP_PKEY        *pkey;
    OSSL_PARAM      *params;
    EVP_PKEY_CTX    *ctx, *check;
    OSSL_PARAM_BLD  *bld;
    const char      *group;
    unsigned char    point[1 + 2 * 66];
    bool             ok;

    n = NULL;
    e = NULL;
    pkey = NULL;
    params = NULL;
    ctx = NULL;
    check = NULL;
    ok = false;

    bld = OSSL_PARAM_BLD_new();
    if (bld == NULL) {
        return NULL;
    }

    if (key->kty == TG_JWK_RSA) {
        n = BN_bin2bn(key->n.data, (int) key->n.len, NULL);
        e = BN_bin2bn(key->e.data, (int) key->e.len, NULL);

        if (n == NULL || e == NULL
            || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n)
            || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e))
        {
            goto done;
        }

        ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);

    } else {
        group = key->bits == 256 ? "prime256v1"
                : key->bits == 384 ? "secp384r1" : "secp521r1";

        /* an uncompressed point: 04 || x || y */

        len = 1 + key->x.len + key->y.len;

        if (len > sizeof(point)) {
            goto done;
        }

        point[0] = 0x04;
        memcpy(point + 1, key->x.data, key->x.len);
        memcpy(point + 1 + key->x.len, key->y.data, key->y.len);

        if (!OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME,
                                             group, 0)
            || !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY,
                                                 point, len))
        {
            goto done;
        }

        ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    }

    params = OSSL_PARAM_BLD_to_param(bld);

    if (ctx == NULL || params == NULL
        || EVP_PKEY_fromdata_init(ctx) != 1
        || EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
    {
        goto done;
    }

    /*
     * EC: the point is on its curve, of the group's order.  RSA: OpenSSL's
     * own check of a public key tries random bases for primality, so a
     * strange modulus could pass in policyd and fail in a worker; these
     * checks give one answer everywhere.
     */

    if (key->kty == TG_JWK_EC) {
        check = EVP_PKEY_CTX_new(pkey, NULL);
        ok = check != NULL && EVP_PKEY_public_check(check) == 1;

    } else {
        ok = EVP_PKEY_get_bits(pkey) >= 2048 && tg_jwk_modulus_ok(n, e);
    }

done:

    EVP_PKEY_CTX_free(check);
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_free(n);
    BN_free(e);

    if (!ok) {
        EVP_PKEY_free(pkey);
        return NULL;
    }

    return pkey;
}


/* odd, no prime factor below 1000, and more than the exponent */

static bool
tg_jwk_modulus_ok(const BIGNUM *n, const BIGNUM *e)
{
    BN_ULONG  p, d;

    if (!BN_is_odd(n) || BN_cmp(e, n) >= 0) {
        return false;
    }

    for (p = 3; p < 1000; p += 2) {
        for (d = 3; d * d <= p && p % d != 0; d += 2) {
            /* void */
        }

        if (d * d <= p) {
            continue;           /* not a prime */
        }

        if (BN_mod_word(n, p) == 0) {
            return false;
        }
    }

    return true;
}
