
/*
 * Copyright (C) The Tailgate authors
 *
 * DPoP proofs (RFC 9449).  A request with "Authorization: DPoP TOKEN"
 * carries one "DPoP" header: a JWT the client signed, just now, for this
 * request, with the key its token is bound to.  What is checked, each on
 * its own (docs/architecture.md, "DPoP"):
 *
 *   - the form: three base64url parts, at most 8 KB, JSON objects with no
 *     member given twice and no "\u0000";
 *   - the header: "typ" "dpop+jwt", an "alg" of ES256/384/512 or
 *     RS256/384/512 (never "none", never HS*: a proof proves a private
 *     key), no "crit", and a "jwk" that is a public key and nothing more
 *     (the reader policyd and the JWKS code share, proto/tailgate_jwks.c);
 *   - the signature, by that jwk;
 *   - the claims: "htm" this request's method, "htu" its URL without query
 *     and fragment, "iat" within tailgate_dpop_window of now, "ath" the
 *     base64url SHA-256 of the token, "jti" a string;
 *   - the token's "cnf.jkt" is the RFC 7638 thumbprint of the jwk;
 *   - the jti was not used before within the window, by any worker
 *     (ngx_tailgate_dpop_replay.c).
 *
 * The URL a client signs is the one it addressed: scheme and host are the
 * connection's and the Host header's, or those of a TLS terminator in
 * front (X-Forwarded-Proto and X-Forwarded-Host, believed only from a
 * tailgate_trusted_network address), or tailgate_dpop_public_url.
 *
 * Every step is CPU only: parsing, building the jwk's key, one signature
 * check (RSA 2048 some 17 us, P-256 some 70 us) and a short critical
 * section in shared memory.
 */


#include "ngx_tailgate_common.h"
#include "ngx_tailgate_dpop.h"

#include <cjson/cJSON.h>
#include <openssl/evp.h>

#include "tailgate_jwks.h"


typedef struct {
    const char                  *name;
    const EVP_MD              *(*md)(void);
    size_t                       ec_size;    /* ES*: bytes of r and of s */
} ngx_tailgate_dpop_alg_t;


static const ngx_tailgate_dpop_alg_t  ngx_tailgate_dpop_algs[] = {
    { "ES256", EVP_sha256, 32 },
    { "ES384", EVP_sha384, 48 },
    { "ES512", EVP_sha512, 66 },
    { "RS256", EVP_sha256, 0 },
    { "RS384", EVP_sha384, 0 },
    { "RS512", EVP_sha512, 0 },
    { NULL, NULL, 0 }
};


static ngx_int_t ngx_tailgate_dpop_split(ngx_pool_t *pool, ngx_str_t *text,
    ngx_str_t *header, ngx_str_t *payload, ngx_str_t *sig,
    size_t *signed_len, const char **why);
static cJSON *ngx_tailgate_dpop_object(ngx_str_t *json);
static ngx_int_t ngx_tailgate_dpop_header(cJSON *header,
    const ngx_tailgate_dpop_alg_t **algp, tg_jwk *key, const char **why);
static ngx_int_t ngx_tailgate_dpop_claims(ngx_pool_t *pool, cJSON *claims,
    ngx_tailgate_dpop_proof_t *proof, const char **why);
static ngx_int_t ngx_tailgate_dpop_string(ngx_pool_t *pool, cJSON *obj,
    const char *name, size_t max, ngx_str_t *value);
static ngx_int_t ngx_tailgate_dpop_verify(const ngx_tailgate_dpop_alg_t *alg,
    EVP_PKEY *pkey, u_char *data, size_t len, u_char *sig, size_t sig_len);
static ngx_int_t ngx_tailgate_dpop_thumbprint(tg_jwk *key, u_char *jkt);
static ngx_table_elt_t *ngx_tailgate_dpop_one_header(ngx_http_request_t *r,
    ngx_str_t *name, ngx_uint_t *count);
static ngx_int_t ngx_tailgate_dpop_htu(ngx_http_request_t *r,
    ngx_http_tailgate_loc_conf_t *tlcf, ngx_str_t *htu);
static ngx_int_t ngx_tailgate_dpop_forwarded(ngx_http_request_t *r,
    ngx_str_t *name, ngx_str_t *value);
static ngx_uint_t ngx_tailgate_dpop_same_host(ngx_str_t *scheme,
    ngx_str_t *a, ngx_str_t *b);
static void ngx_tailgate_dpop_strip_port(ngx_str_t *scheme, ngx_str_t *host);
static ngx_uint_t ngx_tailgate_dpop_equal(u_char *a, u_char *b, size_t len);


static ngx_str_t  ngx_tailgate_dpop_header_name = ngx_string("dpop");
static ngx_str_t  ngx_tailgate_forwarded_proto =
    ngx_string("x-forwarded-proto");
static ngx_str_t  ngx_tailgate_forwarded_host =
    ngx_string("x-forwarded-host");


ngx_tailgate_auth_e
ngx_tailgate_dpop_check(ngx_http_request_t *r,
    ngx_http_tailgate_loc_conf_t *tlcf, ngx_str_t *token, ngx_str_t *jkt,
    const char **why)
{
    time_t                          now;
    ngx_int_t                       rc;
    ngx_str_t                       ath, bytes;
    ngx_uint_t                      count;
    ngx_table_elt_t                *h;
    ngx_tailgate_dpop_proof_t       proof;
    ngx_http_tailgate_main_conf_t  *tmcf;
    u_char                          digest[NGX_TAILGATE_DIGEST_LEN];
    u_char                          hash[NGX_TAILGATE_JKT_LEN];

    h = ngx_tailgate_dpop_one_header(r, &ngx_tailgate_dpop_header_name,
                                     &count);

    if (count == 0) {
        *why = "no DPoP proof was sent";
        return NGX_TAILGATE_AUTH_DPOP_INVALID;
    }

    if (count > 1) {
        *why = "more than one DPoP header";
        return NGX_TAILGATE_AUTH_DPOP_INVALID;
    }

    rc = ngx_tailgate_dpop_parse(r->pool, &h->value, &proof, why);

    /* read: it travels no further than the key it was checked with */

    h->value.len = 0;

    if (rc == NGX_ERROR) {
        return NGX_TAILGATE_AUTH_ERROR;
    }

    if (rc != NGX_OK) {
        return NGX_TAILGATE_AUTH_DPOP_INVALID;
    }

    /* for this request */

    if (proof.htm.len != r->method_name.len
        || ngx_strncmp(proof.htm.data, r->method_name.data, proof.htm.len)
           != 0)
    {
        *why = "the proof's htm is not the request's method";
        return NGX_TAILGATE_AUTH_DPOP_INVALID;
    }

    rc = ngx_tailgate_dpop_htu(r, tlcf, &proof.htu);

    if (rc == NGX_ERROR) {
        return NGX_TAILGATE_AUTH_ERROR;
    }

    if (rc != NGX_OK) {
        *why = "the proof's htu is not the URL of the request";
        return NGX_TAILGATE_AUTH_DPOP_INVALID;
    }

    /* just now */

    now = ngx_time();

    if (proof.iat < now - tlcf->dpop_window) {
        *why = "the proof is older than tailgate_dpop_window (iat)";
        return NGX_TAILGATE_AUTH_DPOP_INVALID;
    }

    if (proof.iat > now + tlcf->dpop_window) {
        *why = "the proof was made in the future (iat)";
        return NGX_TAILGATE_AUTH_DPOP_INVALID;
    }

    /* for this token, and by the key the token is bound to */

    if (ngx_tailgate_sha256(token, digest) != NGX_OK) {
        *why = "SHA-256 failed";
        return NGX_TAILGATE_AUTH_ERROR;
    }

    bytes.data = digest;
    bytes.len = sizeof(digest);
    ath.data = hash;
    ngx_encode_base64url(&ath, &bytes);

    if (proof.ath.len != ath.len
        || !ngx_tailgate_dpop_equal(proof.ath.data, ath.data, ath.len))
    {
        *why = proof.ath.len ? "the proof's ath is not the token's hash"
                             : "the proof has no ath";
        return NGX_TAILGATE_AUTH_DPOP_INVALID;
    }

    if (jkt->len != NGX_TAILGATE_JKT_LEN
        || !ngx_tailgate_dpop_equal(jkt->data, proof.jkt,
                                    NGX_TAILGATE_JKT_LEN))
    {
        *why = "the proof's key is not the one the token is bound to";
        return NGX_TAILGATE_AUTH_DPOP_INVALID;
    }

    /* and never before: last, so that only a proof good in all else counts */

    if (ngx_tailgate_sha256(&proof.jti, digest) != NGX_OK) {
        *why = "SHA-256 failed";
        return NGX_TAILGATE_AUTH_ERROR;
    }

    tmcf = ngx_http_get_module_main_conf(r, ngx_http_tailgate_module);

    rc = ngx_tailgate_dpop_replay_add(tmcf->dpop_replay, digest,
                                      proof.iat + tlcf->dpop_window + 1, now);

    if (rc == NGX_DECLINED) {
        *why = "the proof's jti was used before";
        return NGX_TAILGATE_AUTH_DPOP_INVALID;
    }

    if (rc == NGX_BUSY) {
        *why = "the DPoP replay cache is full: tailgate_dpop_replay_cache "
               "is too small for the proofs of tailgate_dpop_window";
        return NGX_TAILGATE_AUTH_DPOP_BUSY;
    }

    return NGX_TAILGATE_AUTH_OK;
}


ngx_int_t
ngx_tailgate_dpop_parse(ngx_pool_t *pool, ngx_str_t *text,
    ngx_tailgate_dpop_proof_t *proof, const char **why)
{
    size_t                          signed_len;
    cJSON                          *header, *claims;
    tg_jwk                          key;
    ngx_int_t                       rc;
    ngx_str_t                       h, p, sig;
    const ngx_tailgate_dpop_alg_t  *alg;

    ngx_memzero(proof, sizeof(ngx_tailgate_dpop_proof_t));
    ngx_memzero(&key, sizeof(tg_jwk));

    rc = ngx_tailgate_dpop_split(pool, text, &h, &p, &sig, &signed_len, why);

    if (rc != NGX_OK) {
        return rc;
    }

    header = ngx_tailgate_dpop_object(&h);
    claims = ngx_tailgate_dpop_object(&p);

    rc = NGX_DECLINED;

    if (header == NULL) {
        *why = "the proof's header is not a JSON object of distinct members";
        goto done;
    }

    if (claims == NULL) {
        *why = "the proof's claims are not a JSON object of distinct members";
        goto done;
    }

    rc = ngx_tailgate_dpop_header(header, &alg, &key, why);

    if (rc != NGX_OK) {
        goto done;
    }

    rc = ngx_tailgate_dpop_verify(alg, key.pkey, text->data, signed_len,
                                  sig.data, sig.len);

    if (rc != NGX_OK) {
        *why = "the proof's signature is not by its jwk";
        goto done;
    }

    rc = ngx_tailgate_dpop_claims(pool, claims, proof, why);

    if (rc != NGX_OK) {
        goto done;
    }

    proof->alg.data = (u_char *) alg->name;
    proof->alg.len = ngx_strlen(alg->name);

    rc = ngx_tailgate_dpop_thumbprint(&key, proof->jkt);

done:

    tg_jwk_free(&key);
    cJSON_Delete(header);
    cJSON_Delete(claims);

    return rc;
}


/*
 * Three base64url parts, none empty, decoded; *signed_len: the bytes the
 * signature is of, up to the second dot.
 */

static ngx_int_t
ngx_tailgate_dpop_split(ngx_pool_t *pool, ngx_str_t *text, ngx_str_t *header,
    ngx_str_t *payload, ngx_str_t *sig, size_t *signed_len, const char **why)
{
    u_char      *p, *end, *dot[2];
    ngx_str_t    part[3], *out[3];
    ngx_uint_t   i, dots;

    if (text->len > NGX_TAILGATE_DPOP_MAX) {
        *why = "the proof is over 8 KB";
        return NGX_DECLINED;
    }

    end = text->data + text->len;
    dots = 0;

    for (p = text->data; p < end; p++) {
        if (*p == '.') {
            if (dots == 2) {
                *why = "the proof is not three base64url parts";
                return NGX_DECLINED;
            }

            dot[dots++] = p;
            continue;
        }

        if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z')
              || (*p >= '0' && *p <= '9') || *p == '-' || *p == '_'))
        {
            *why = "the proof is not three base64url parts";
            return NGX_DECLINED;
        }
    }

    if (dots != 2 || dot[0] == text->data || dot[1] == dot[0] + 1
        || dot[1] + 1 == end)
    {
        *why = "the proof is not three base64url parts";
        return NGX_DECLINED;
    }

    *signed_len = dot[1] - text->data;

    part[0].data = text->data;
    part[0].len = dot[0] - text->data;
    part[1].data = dot[0] + 1;
    part[1].len = dot[1] - part[1].data;
    part[2].data = dot[1] + 1;
    part[2].len = end - part[2].data;

    out[0] = header;
    out[1] = payload;
    out[2] = sig;

    for (i = 0; i < 3; i++) {
        out[i]->data = ngx_pnalloc(pool,
                                   ngx_base64_decoded_length(part[i].len) + 1);
        if (out[i]->data == NULL) {
            return NGX_ERROR;
        }

        if (ngx_decode_base64url(out[i], &part[i]) != NGX_OK) {
            *why = "the proof is not three base64url parts";
            return NGX_DECLINED;
        }

        out[i]->data[out[i]->len] = '\0';
    }

    return NGX_OK;
}


/*
 * A JSON object, or NULL.  A NUL in it, raw or as "\u0000", would end a
 * string early for cJSON and hide what follows; a member given twice
 * would let two readers see two proofs.
 */

static cJSON *
ngx_tailgate_dpop_object(ngx_str_t *json)
{
    u_char       *p, *end;
    cJSON        *obj;
    const char   *parsed;
    const cJSON  *a, *b;

    end = json->data + json->len;

    if (ngx_strlen(json->data) != json->len) {
        return NULL;
    }

    for (p = json->data; p + 6 <= end; p++) {
        if (p[0] == '\\' && p[1] == 'u' && p[2] == '0' && p[3] == '0'
            && p[4] == '0' && p[5] == '0')
        {
            return NULL;
        }
    }

    parsed = NULL;
    obj = cJSON_ParseWithLengthOpts((const char *) json->data, json->len,
                                    &parsed, 0);

    if (obj == NULL) {
        return NULL;
    }

    for (p = (u_char *) parsed; p && p < end; p++) {
        if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n') {
            goto bad;
        }
    }

    if (!cJSON_IsObject(obj)) {
        goto bad;
    }

    for (a = obj->child; a; a = a->next) {
        for (b = a->next; b; b = b->next) {
            if (a->string && b->string && ngx_strcmp(a->string, b->string) == 0)
            {
                goto bad;
            }
        }
    }

    return obj;

bad:

    cJSON_Delete(obj);

    return NULL;
}


static ngx_int_t
ngx_tailgate_dpop_header(cJSON *header, const ngx_tailgate_dpop_alg_t **algp,
    tg_jwk *key, const char **why)
{
    size_t                          len;
    const char                     *s;
    const cJSON                    *typ, *alg, *jwk, *jwk_alg;
    const ngx_tailgate_dpop_alg_t  *a;
    char                            reason[TG_JWKS_WHY_MAX];

    typ = cJSON_GetObjectItemCaseSensitive(header, "typ");

    /* a media type: its case does not matter (RFC 7515, 4.1.9) */

    if (!cJSON_IsString(typ) || typ->valuestring == NULL
        || ngx_strcasecmp((u_char *) typ->valuestring, (u_char *) "dpop+jwt")
           != 0)
    {
        *why = "the proof's typ is not \"dpop+jwt\"";
        return NGX_DECLINED;
    }

    alg = cJSON_GetObjectItemCaseSensitive(header, "alg");

    if (!cJSON_IsString(alg) || alg->valuestring == NULL) {
        *why = "the proof has no alg";
        return NGX_DECLINED;
    }

    for (a = ngx_tailgate_dpop_algs; a->name; a++) {
        if (ngx_strcmp(alg->valuestring, a->name) == 0) {
            break;
        }
    }

    if (a->name == NULL) {
        *why = "the proof's alg is not one of " NGX_TAILGATE_DPOP_ALGS;
        return NGX_DECLINED;
    }

    if (cJSON_GetObjectItemCaseSensitive(header, "crit")) {
        *why = "the proof has critical extensions";
        return NGX_DECLINED;
    }

    jwk = cJSON_GetObjectItemCaseSensitive(header, "jwk");

    if (!cJSON_IsObject(jwk)) {
        *why = "the proof has no jwk object";
        return NGX_DECLINED;
    }

    if (tg_jwk_from_json(jwk, key, reason, sizeof(reason)) != 0) {

        /* *why must be static: the reader's words, in brief */

        *why = ngx_strstr(reason, "a private key") != NULL
               ? "the proof's jwk holds a private key"
               : "the proof's jwk is not a usable public RSA or EC key";
        return NGX_DECLINED;
    }

    /*
     * The key's type and curve decide the family and the hash: ES256 with
     * a P-256 key only.  A jwk naming its "alg" must name this one.
     */

    s = a->name;
    len = ngx_strlen(s);

    if ((key->kty == TG_JWK_EC && ngx_strcmp(key->alg, s) != 0)
        || (key->kty == TG_JWK_RSA && s[0] != 'R'))
    {
        *why = "the proof's alg is not for its jwk";
        return NGX_DECLINED;
    }

    jwk_alg = cJSON_GetObjectItemCaseSensitive(jwk, "alg");

    if (cJSON_IsString(jwk_alg) && jwk_alg->valuestring
        && (ngx_strlen(jwk_alg->valuestring) != len
            || ngx_strncmp(jwk_alg->valuestring, s, len) != 0))
    {
        *why = "the proof's alg is not its jwk's alg";
        return NGX_DECLINED;
    }

    *algp = a;

    return NGX_OK;
}


static ngx_int_t
ngx_tailgate_dpop_claims(ngx_pool_t *pool, cJSON *claims,
    ngx_tailgate_dpop_proof_t *proof, const char **why)
{
    ngx_int_t     rc;
    const cJSON  *iat;

    rc = ngx_tailgate_dpop_string(pool, claims, "jti",
                                  NGX_TAILGATE_DPOP_MAX_JTI, &proof->jti);
    if (rc != NGX_OK) {
        *why = "the proof's jti is not a string of 1-256 bytes";
        return rc;
    }

    rc = ngx_tailgate_dpop_string(pool, claims, "htm",
                                  NGX_TAILGATE_DPOP_MAX_HTM, &proof->htm);
    if (rc != NGX_OK) {
        *why = "the proof's htm is not a method";
        return rc;
    }

    rc = ngx_tailgate_dpop_string(pool, claims, "htu",
                                  NGX_TAILGATE_DPOP_MAX_HTU, &proof->htu);
    if (rc != NGX_OK) {
        *why = "the proof's htu is not a URL of at most 4 KB";
        return rc;
    }

    /* with a token, "ath" must be there: its absence is found by the caller */

    if (cJSON_GetObjectItemCaseSensitive(claims, "ath")) {
        rc = ngx_tailgate_dpop_string(pool, claims, "ath",
                                      NGX_TAILGATE_JKT_LEN, &proof->ath);
        if (rc != NGX_OK) {
            *why = "the proof's ath is not a SHA-256 in base64url";
            return rc;
        }
    }

    /* seconds, a whole number that fits: not 1e300, not "1700000000" */

    iat = cJSON_GetObjectItemCaseSensitive(claims, "iat");

    if (!cJSON_IsNumber(iat)
        || !(iat->valuedouble >= 0 && iat->valuedouble <= 1e12)
        || iat->valuedouble != (double) (int64_t) iat->valuedouble)
    {
        *why = "the proof's iat is not a whole number of seconds";
        return NGX_DECLINED;
    }

    proof->iat = (time_t) iat->valuedouble;

    return NGX_OK;
}


/* a string of 1..max bytes, copied: NGX_DECLINED absent, null or other */

static ngx_int_t
ngx_tailgate_dpop_string(ngx_pool_t *pool, cJSON *obj, const char *name,
    size_t max, ngx_str_t *value)
{
    size_t        len;
    const cJSON  *v;

    v = cJSON_GetObjectItemCaseSensitive(obj, name);

    if (!cJSON_IsString(v) || v->valuestring == NULL) {
        return NGX_DECLINED;
    }

    len = ngx_strlen(v->valuestring);

    if (len == 0 || len > max) {
        return NGX_DECLINED;
    }

    value->data = ngx_pnalloc(pool, len);
    if (value->data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(value->data, v->valuestring, len);
    value->len = len;

    return NGX_OK;
}


/* NGX_OK a good signature; NGX_DECLINED not; NGX_ERROR ours */

static ngx_int_t
ngx_tailgate_dpop_verify(const ngx_tailgate_dpop_alg_t *alg, EVP_PKEY *pkey,
    u_char *data, size_t len, u_char *sig, size_t sig_len)
{
    int          n;
    u_char      *der;
    ngx_int_t    rc;
    EVP_MD_CTX  *md;

    der = NULL;

    if (alg->ec_size) {
        rc = ngx_tailgate_ecdsa_der(sig, sig_len, alg->ec_size, &der,
                                    &sig_len);
        if (rc != NGX_OK) {
            return rc;
        }

        sig = der;
    }

    rc = NGX_ERROR;

    md = EVP_MD_CTX_new();

    if (md != NULL
        && EVP_DigestVerifyInit(md, NULL, alg->md(), NULL, pkey) == 1)
    {
        n = EVP_DigestVerify(md, sig, sig_len, data, len);
        rc = (n == 1) ? NGX_OK : NGX_DECLINED;
    }

    EVP_MD_CTX_free(md);
    OPENSSL_free(der);

    return rc;
}


/*
 * RFC 7638: the SHA-256 of the required members, in lexical order, with
 * no whitespace; the numbers as the jwk gave them (the reader kept their
 * text, which it checked is base64url).
 */

static ngx_int_t
ngx_tailgate_dpop_thumbprint(tg_jwk *key, u_char *jkt)
{
    int        n;
    char       buf[2 * TG_JWKS_RSA_MAX_BYTES + 256];
    ngx_str_t  json, digest, out;
    u_char     hash[NGX_TAILGATE_DIGEST_LEN];

    if (key->kty == TG_JWK_RSA) {
        n = snprintf(buf, sizeof(buf), "{\"e\":\"%s\",\"kty\":\"RSA\","
                     "\"n\":\"%s\"}", key->e.text, key->n.text);

    } else {
        n = snprintf(buf, sizeof(buf), "{\"crv\":\"%s\",\"kty\":\"EC\","
                     "\"x\":\"%s\",\"y\":\"%s\"}", key->crv, key->x.text,
                     key->y.text);
    }

    if (n <= 0 || (size_t) n >= sizeof(buf)) {
        return NGX_ERROR;
    }

    json.data = (u_char *) buf;
    json.len = n;

    if (ngx_tailgate_sha256(&json, hash) != NGX_OK) {
        return NGX_ERROR;
    }

    digest.data = hash;
    digest.len = sizeof(hash);
    out.data = jkt;

    ngx_encode_base64url(&out, &digest);

    return out.len == NGX_TAILGATE_JKT_LEN ? NGX_OK : NGX_ERROR;
}


/* the first header of a name, and how many there are */

static ngx_table_elt_t *
ngx_tailgate_dpop_one_header(ngx_http_request_t *r, ngx_str_t *name,
    ngx_uint_t *count)
{
    ngx_table_elt_t         *h, *found;
    ngx_tailgate_headers_t   it;

    found = NULL;
    *count = 0;

    ngx_tailgate_headers_init(&it, &r->headers_in.headers);

    while ((h = ngx_tailgate_headers_next(&it)) != NULL) {
        if (h->key.len == name->len
            && ngx_strncmp(h->lowcase_key, name->data, name->len) == 0)
        {
            if (found == NULL) {
                found = h;
            }

            (*count)++;
        }
    }

    return found;
}


/*
 * The proof's "htu" against the URL the client addressed: scheme and host
 * without regard to case and with the scheme's default port or without
 * it, the path byte for byte; the proof's query and fragment are not
 * compared (RFC 9449, 4.3).  NGX_OK the same; NGX_DECLINED not.
 */

static ngx_int_t
ngx_tailgate_dpop_htu(ngx_http_request_t *r,
    ngx_http_tailgate_loc_conf_t *tlcf, ngx_str_t *htu)
{
    u_char     *p, *end, *q;
    ngx_str_t   scheme, host, path, want_scheme, want_host, want_path;

    /* the proof's: scheme "://" authority path */

    p = htu->data;
    end = p + htu->len;

    q = ngx_strlchr(p, end, ':');

    if (q == NULL || end - q < 3 || q[1] != '/' || q[2] != '/') {
        return NGX_DECLINED;
    }

    scheme.data = p;
    scheme.len = q - p;

    host.data = q + 3;

    for (p = host.data; p < end && *p != '/' && *p != '?' && *p != '#'; p++) {
        /* void */
    }

    host.len = p - host.data;

    path.data = p;

    while (p < end && *p != '?' && *p != '#') {
        p++;
    }

    path.len = p - path.data;

    if (path.len == 0) {
        ngx_str_set(&path, "/");
    }

    /* the request's */

    if (tlcf->dpop_public_url) {
        want_scheme = tlcf->dpop_public_url->scheme;
        want_host = tlcf->dpop_public_url->host;

    } else {
#if (NGX_HTTP_SSL)
        if (r->connection->ssl) {
            ngx_str_set(&want_scheme, "https");
        } else
#endif
        {
            ngx_str_set(&want_scheme, "http");
        }

        if (r->headers_in.host) {
            want_host = r->headers_in.host->value;

        } else {
            want_host = r->headers_in.server;
        }

        /* a TLS terminator in front says what the client addressed */

        if (ngx_tailgate_trusted_identity(r, tlcf) != NULL
            && (ngx_tailgate_dpop_forwarded(r, &ngx_tailgate_forwarded_proto,
                                            &want_scheme)
                == NGX_DECLINED
                || ngx_tailgate_dpop_forwarded(r,
                                               &ngx_tailgate_forwarded_host,
                                               &want_host)
                   == NGX_DECLINED))
        {
            return NGX_DECLINED;
        }
    }

    want_path = r->unparsed_uri;

    q = ngx_strlchr(want_path.data, want_path.data + want_path.len, '?');

    if (q) {
        want_path.len = q - want_path.data;
    }

    if (scheme.len != want_scheme.len
        || ngx_strncasecmp(scheme.data, want_scheme.data, scheme.len) != 0
        || !ngx_tailgate_dpop_same_host(&want_scheme, &host, &want_host)
        || path.len != want_path.len
        || ngx_strncmp(path.data, want_path.data, path.len) != 0)
    {
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/*
 * A forwarded header, sent once: its value replaces *value.  NGX_OK
 * replaced; NGX_DONE absent; NGX_DECLINED sent twice, or empty.  Of a
 * list ("https, http": proxies behind proxies), the first is the client's.
 */

static ngx_int_t
ngx_tailgate_dpop_forwarded(ngx_http_request_t *r, ngx_str_t *name,
    ngx_str_t *value)
{
    u_char           *p, *end;
    ngx_uint_t        count;
    ngx_table_elt_t  *h;

    h = ngx_tailgate_dpop_one_header(r, name, &count);

    if (count == 0) {
        return NGX_DONE;
    }

    if (count > 1) {
        return NGX_DECLINED;
    }

    p = h->value.data;
    end = p + h->value.len;

    while (p < end && *p != ',' && *p != ' ') {
        p++;
    }

    if (p == h->value.data) {
        return NGX_DECLINED;
    }

    value->data = h->value.data;
    value->len = p - h->value.data;

    return NGX_OK;
}


static ngx_uint_t
ngx_tailgate_dpop_same_host(ngx_str_t *scheme, ngx_str_t *a, ngx_str_t *b)
{
    ngx_str_t  x, y;

    x = *a;
    y = *b;

    ngx_tailgate_dpop_strip_port(scheme, &x);
    ngx_tailgate_dpop_strip_port(scheme, &y);

    return x.len == y.len && x.len > 0
           && ngx_strncasecmp(x.data, y.data, x.len) == 0;
}


/* "host:443" is "host" to https, "host:80" to http */

static void
ngx_tailgate_dpop_strip_port(ngx_str_t *scheme, ngx_str_t *host)
{
    ngx_str_t  port;

    if (scheme->len == 5 && ngx_strncasecmp(scheme->data, (u_char *) "https",
                                            5) == 0)
    {
        ngx_str_set(&port, ":443");

    } else {
        ngx_str_set(&port, ":80");
    }

    if (host->len > port.len
        && ngx_strncmp(host->data + host->len - port.len, port.data,
                       port.len) == 0)
    {
        host->len -= port.len;
    }
}


/* not secrets, but compared as if they were: it costs nothing */

static ngx_uint_t
ngx_tailgate_dpop_equal(u_char *a, u_char *b, size_t len)
{
    size_t  i;
    u_char  diff;

    diff = 0;

    for (i = 0; i < len; i++) {
        diff |= a[i] ^ b[i];
    }

    return diff == 0;
}


/* tailgate_dpop_public_url https://api.example.com[:port] */

char *
ngx_tailgate_dpop_public_url(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_tailgate_loc_conf_t *tlcf = conf;

    u_char                   *p, *end;
    ngx_str_t                *value;
    ngx_tailgate_dpop_url_t  *url;

    if (tlcf->dpop_public_url != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len == 3 && ngx_strncmp(value[1].data, "off", 3) == 0) {
        tlcf->dpop_public_url = NULL;
        return NGX_CONF_OK;
    }

    url = ngx_pcalloc(cf->pool, sizeof(ngx_tailgate_dpop_url_t));
    if (url == NULL) {
        return NGX_CONF_ERROR;
    }

    p = value[1].data;
    end = p + value[1].len;

    if (value[1].len > 8 && ngx_strncasecmp(p, (u_char *) "https://", 8) == 0)
    {
        ngx_str_set(&url->scheme, "https");
        p += 8;

    } else if (value[1].len > 7
               && ngx_strncasecmp(p, (u_char *) "http://", 7) == 0)
    {
        ngx_str_set(&url->scheme, "http");
        p += 7;

    } else {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\": expected https://HOST[:PORT] or "
                           "http://HOST[:PORT]", &value[1]);
        return NGX_CONF_ERROR;
    }

    /* a trailing "/" is no path */

    if (end > p && end[-1] == '/') {
        end--;
    }

    url->host.data = p;
    url->host.len = end - p;

    for ( /* void */ ; p < end; p++) {
        if (*p == '/' || *p == '?' || *p == '#' || *p == '@' || *p <= ' ') {
            break;
        }
    }

    if (url->host.len == 0 || p != end) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\": expected https://HOST[:PORT] or "
                           "http://HOST[:PORT], with no path, query or "
                           "user", &value[1]);
        return NGX_CONF_ERROR;
    }

    tlcf->dpop_public_url = url;

    return NGX_CONF_OK;
}
