/*
 * Key sets, the parts without a socket: the JWKS reader both programs
 * share (proto/tailgate_jwks.c) on good, partly odd and refused sets; the
 * text policyd writes; cache headers into a freshness; the URLs that may
 * be fetched; discovery documents; when to fetch again; the "jwks" block
 * of a policy and its errors.
 */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "jwks_cache.h"
#include "tailgate_jwks.h"
#include "tg_test.h"


/* a real RSA 2048 key and real points of P-256 and P-521 */

#define TG_N  "0vdv1pORSacYyOiTMERJM6QCTqm8wuOFM133uOtN16lsoB1WLc_zyhUSi5m9"  \
    "Hv_kPbjrjonf_D7RngCy_g-I1OJBMJdaBkYD-erreEd1KbFhlOo5o9DdhmWpNQlEljuXoo"  \
    "oZeLmL-pkOoFvi9D3sQgVhuykAtqLW-WXGYchoelWFQB6UPY5YNUGXmcPvCOvBlMH6ZZbH"  \
    "6fBGGQjbN_3DKuf532DNLX0smB8rNQyfMTjcssuckiA1rT9Afero3n-tXSqBLdkU-8dhTw"  \
    "ekJpcdmNTQEE2SxkawBUCCoy5d3SaFzOhNoG3ph41BVjV7aOYIiMVCDALmU-SiF_9jpnfH"  \
    "cw"
#define TG_X  "VC4iOCqeKtyGkUsgvlpDeC3zn1qTNwlRsPIvaVwIIDI"
#define TG_Y  "m8b2ilJYcC4-PlZz7p93CZMR88tKxEETDpIIeP6cs2Y"
#define TG_X5 "AMlSS6Lh5iHzCEpnXzSoQbMWgfNOkRYUfd34aPXsmrHTwfoY6gScuctbfA"   \
    "Ov_IMAhE2ePP74dE-UYWLgEBooLsjZ"
#define TG_Y5 "AZPxLSV4GKVaYIjSioOUxDhKvISSf_lKpj6jtVGftGbPUqBiP3U938dJQge"   \
    "9Ic5wika0PlZoaFAz-wcNldJLonsk"

#define TG_RSA(kid)  "{\"kty\":\"RSA\",\"kid\":\"" kid "\",\"n\":\"" TG_N     \
                     "\",\"e\":\"AQAB\"}"
#define TG_EC(kid)   "{\"kty\":\"EC\",\"kid\":\"" kid "\",\"crv\":\"P-256\"," \
                     "\"x\":\"" TG_X "\",\"y\":\"" TG_Y "\"}"


static int
tg_parse(const char *text, tg_jwks *set, char *err)
{
    return tg_jwks_parse(text, strlen(text), set, err, TG_JWKS_WHY_MAX);
}


static void
test_jwks_good(void **unused)
{
    char     err[TG_JWKS_WHY_MAX], *text;
    size_t   len;
    tg_jwks  set, back;

    (void) unused;

    assert_int_equal(tg_parse("{\"keys\":[" TG_RSA("r1") "," TG_EC("e1")
                              ",{\"kty\":\"EC\",\"crv\":\"P-521\",\"use\":"
                              "\"sig\",\"key_ops\":[\"verify\"],\"x\":\""
                              TG_X5 "\",\"y\":\"" TG_Y5 "\",\"x5c\":[\"MII\"]}"
                              "],\"other\":{\"deep\":[1,2,{}]}}", &set, err),
                     0);
    assert_int_equal(set.nkeys, 3);
    assert_int_equal(set.skipped, 0);

    assert_int_equal(set.keys[0].kty, TG_JWK_RSA);
    assert_string_equal(set.keys[0].kid, "r1");
    assert_string_equal(set.keys[0].alg, "RS256");     /* none given */
    assert_int_equal(set.keys[0].n.len, 256);
    assert_int_equal(set.keys[0].e.len, 3);
    assert_non_null(set.keys[0].pkey);

    assert_int_equal(set.keys[1].kty, TG_JWK_EC);
    assert_string_equal(set.keys[1].alg, "ES256");
    assert_string_equal(set.keys[1].crv, "P-256");
    assert_int_equal(set.keys[1].x.len, 32);

    assert_false(set.keys[2].has_kid);
    assert_string_equal(set.keys[2].alg, "ES512");
    assert_int_equal(set.keys[2].x.len, 66);

    assert_ptr_equal(tg_jwks_find(&set, "e1", 2), &set.keys[1]);
    assert_ptr_equal(tg_jwks_find(&set, NULL, 0), &set.keys[2]);
    assert_null(tg_jwks_find(&set, "e", 1));
    assert_null(tg_jwks_find(&set, "e1x", 3));

    /* what policyd writes: the usable members only, read back the same */

    text = tg_jwks_text(&set, &len);
    assert_non_null(text);
    assert_null(strstr(text, "x5c"));
    assert_null(strstr(text, "other"));
    assert_non_null(strstr(text, "\"alg\":\"RS256\""));

    assert_int_equal(tg_jwks_parse(text, len, &back, err, sizeof(err)), 0);
    assert_int_equal(back.nkeys, 3);
    assert_string_equal(back.keys[1].kid, "e1");

    free(text);
    tg_jwks_free(&back);
    tg_jwks_free(&set);
}


static void
test_jwks_some_left_out(void **unused)
{
    char     err[TG_JWKS_WHY_MAX];
    tg_jwks  set;

    (void) unused;

    assert_int_equal(tg_parse("{\"keys\":[" TG_EC("good")
                              ",{\"kty\":\"oct\",\"k\":\"c2VjcmV0\"}"
                              ",\"text\",null,7"
                              "," TG_RSA("") "]}", &set, err), 0);
    assert_int_equal(set.nkeys, 1);
    assert_int_equal(set.skipped, 5);
    assert_string_equal(set.why, "keys[1].kty: \"oct\" is not supported "
                        "(expected \"RSA\" or \"EC\")");
    tg_jwks_free(&set);

    /* a kid twice: both out, the rest stays */

    assert_int_equal(tg_parse("{\"keys\":[" TG_EC("a") "," TG_RSA("a") ","
                              TG_EC("b") "]}", &set, err), 0);
    assert_int_equal(set.nkeys, 1);
    assert_string_equal(set.keys[0].kid, "b");
    assert_string_equal(set.why, "keys: kid \"a\" is given twice");
    tg_jwks_free(&set);
}


static void
test_jwks_refused(void **unused)
{
    size_t         i;
    char           err[TG_JWKS_WHY_MAX];
    tg_jwks        set;

    static const struct {
        const char  *text;
        const char  *err;
    } rows[] = {
        { "", "not JSON (at byte 0)" },
        { "{\"keys\":[", "not JSON (at byte 8)" },
        { "[]", "expected a JSON object with \"keys\"" },
        { "{}", "keys: missing (expected an array of keys)" },
        { "{\"keys\":null}", "keys: expected an array of keys" },
        { "{\"keys\":{}}", "keys: expected an array of keys" },
        { "{\"keys\":[]}", "keys: empty (expected at least one key)" },
        { "{\"keys\":[]} x", "text after the JSON document" },
        { "{\"keys\":[],\"keys\":[]}", "keys: given twice" },
        { "{\"keys\":[\"\x01\"]}", "a control character at byte 10" },
        { "{\"keys\":[{\"kid\":\"a\\u0000b\"}]}", "a \\u0000 at byte 18" },
        { "{\"keys\":[{\"kty\":\"RSA\",\"n\":\"" TG_N "\",\"e\":\"AAAB\"}]}",
          "no usable key (keys[0].e: expected the base64url odd public "
          "exponent, 3 or more)" },
        { "{\"keys\":[{\"kty\":\"RSA\",\"n\":\"AQAB\",\"e\":\"AQAB\"}]}",
          "no usable key (keys[0].n: expected the base64url modulus of 2048 "
          "to 8192 bits)" },
        { "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"" TG_X "\","
          "\"y\":\"" TG_X "\"}]}",
          "no usable key (keys[0]: not a key OpenSSL takes (a point off its "
          "curve))" },
        { "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"" TG_X "=\","
          "\"y\":\"" TG_Y "\"}]}",
          "no usable key (keys[0].x: expected the base64url coordinate of 32 "
          "bytes)" },
        { "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-192\",\"x\":\"" TG_X "\","
          "\"y\":\"" TG_Y "\"}]}",
          "no usable key (keys[0].crv: \"P-192\" is not supported (expected "
          "\"P-256\", \"P-384\" or \"P-521\"))" },
        { "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"alg\":\"ES512\","
          "\"x\":\"" TG_X "\",\"y\":\"" TG_Y "\"}]}",
          "no usable key (keys[0].alg: \"ES512\" does not go with P-256 "
          "(expected ES256))" },
        { "{\"keys\":[{\"kty\":\"RSA\",\"alg\":\"PS256\",\"n\":\"" TG_N "\","
          "\"e\":\"AQAB\"}]}",
          "no usable key (keys[0].alg: \"PS256\" is not supported for RSA "
          "(expected RS256, RS384 or RS512))" },
        { "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"use\":\"enc\","
          "\"x\":\"" TG_X "\",\"y\":\"" TG_Y "\"}]}",
          "no usable key (keys[0].use: \"enc\" is not for signatures)" },
        { "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"key_ops\":"
          "[\"sign\"],\"x\":\"" TG_X "\",\"y\":\"" TG_Y "\"}]}",
          "no usable key (keys[0].key_ops: no \"verify\")" },
        { "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"d\":\"AAAA\","
          "\"x\":\"" TG_X "\",\"y\":\"" TG_Y "\"}]}",
          "no usable key (keys[0].d: a private key has no place in a "
          "published set)" },
        { "{\"keys\":[{\"kty\":\"EC\",\"kty\":\"EC\"}]}",
          "no usable key (keys[0].kty: given twice)" },
        { "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"kid\":\"a b\","
          "\"x\":\"" TG_X "\",\"y\":\"" TG_Y "\"}]}",
          "no usable key (keys[0].kid: expected 1 to 128 visible ASCII "
          "characters)" },
        { "{\"keys\":[" TG_EC("") "]}",
          "no usable key (keys[0].kid: expected 1 to 128 visible ASCII "
          "characters)" },
        { "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"" TG_X "\","
          "\"y\":\"" TG_Y "\"},{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\""
          TG_X "\",\"y\":\"" TG_Y "\"}]}",
          "no usable key (keys: two keys without a kid)" },
    };

    (void) unused;

    for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        err[0] = '\0';
        assert_int_equal(tg_parse(rows[i].text, &set, err), -1);
        assert_string_equal(err, rows[i].err);
        assert_int_equal(set.nkeys, 0);
        assert_null(set.keys);
    }
}


static void
test_jwks_too_many(void **unused)
{
    char     err[TG_JWKS_WHY_MAX], *text, *p;
    size_t   i, size;
    tg_jwks  set;

    (void) unused;

    size = 16 + (TG_JWKS_KEYS_MAX + 1) * (sizeof(TG_EC("k000")) + 1);
    text = malloc(size);
    assert_non_null(text);

    p = text + sprintf(text, "{\"keys\":[");

    for (i = 0; i <= TG_JWKS_KEYS_MAX; i++) {
        p += sprintf(p, "%s{\"kty\":\"EC\",\"kid\":\"k%03zu\",\"crv\":"
                     "\"P-256\",\"x\":\"" TG_X "\",\"y\":\"" TG_Y "\"}",
                     i ? "," : "", i);
    }

    strcpy(p, "]}");

    assert_int_equal(tg_parse(text, &set, err), -1);
    assert_string_equal(err, "keys: 101 keys, expected at most 100");

    /* one fewer is fine */

    p = strrchr(text, '{');
    strcpy(p - 1, "]}");

    assert_int_equal(tg_parse(text, &set, err), 0);
    assert_int_equal(set.nkeys, TG_JWKS_KEYS_MAX);
    tg_jwks_free(&set);

    free(text);
}


static void
test_base64url(void **unused)
{
    unsigned char  out[8];

    (void) unused;

    assert_int_equal(tg_jwks_base64url("AQAB", 4, out), 3);
    assert_memory_equal(out, "\x01\x00\x01", 3);
    assert_int_equal(tg_jwks_base64url("_-8", 3, out), 2);
    assert_int_equal(tg_jwks_base64url("", 0, out), 0);
    assert_int_equal(tg_jwks_base64url("A", 1, out), -1);      /* 6 bits */
    assert_int_equal(tg_jwks_base64url("AQ==", 4, out), -1);   /* padding */
    assert_int_equal(tg_jwks_base64url("A+B/", 4, out), -1);   /* base64 */
    assert_int_equal(tg_jwks_base64url("AR", 2, out), -1);     /* bits left */
}


static void
test_http_freshness(void **unused)
{
    time_t  now;

    (void) unused;

    now = tg_http_date("Sun, 06 Nov 1994 08:49:37 GMT");
    assert_int_equal(now, 784111777);

    assert_int_equal(tg_http_date("Sunday, 06-Nov-94 08:49:37 GMT"), -1);
    assert_int_equal(tg_http_date("Sun, 06 Nov 1994 08:49:37 GMTx"), -1);
    assert_int_equal(tg_http_date("Sun, 06 Abc 1994 08:49:37 GMT"), -1);
    assert_int_equal(tg_http_date(NULL), -1);

    assert_int_equal(tg_http_freshness_ms(NULL, NULL, NULL, NULL, now), -1);
    assert_int_equal(tg_http_freshness_ms("public, max-age=300", NULL, NULL,
                                          NULL, now), 300000);
    assert_int_equal(tg_http_freshness_ms("MAX-AGE=\"60\"", NULL, NULL, NULL,
                                          now), 60000);
    assert_int_equal(tg_http_freshness_ms("max-age=300", NULL, NULL, "100",
                                          now), 200000);
    assert_int_equal(tg_http_freshness_ms("max-age=300", NULL, NULL, "900",
                                          now), 0);
    assert_int_equal(tg_http_freshness_ms("max-age=soon", NULL, NULL, NULL,
                                          now), 0);
    assert_int_equal(tg_http_freshness_ms("max-age=60, no-cache", NULL, NULL,
                                          NULL, now), 0);
    assert_int_equal(tg_http_freshness_ms("no-store", NULL, NULL, NULL, now),
                     0);
    assert_int_equal(tg_http_freshness_ms("private", NULL, NULL, NULL, now),
                     -1);

    /* max-age wins over Expires; Expires counts from Date, or now */

    assert_int_equal(tg_http_freshness_ms("max-age=5",
                                          "Sun, 06 Nov 1994 09:49:37 GMT",
                                          NULL, NULL, now), 5000);
    assert_int_equal(tg_http_freshness_ms(NULL,
                                          "Sun, 06 Nov 1994 09:49:37 GMT",
                                          NULL, NULL, now), 3600000);
    assert_int_equal(tg_http_freshness_ms(NULL,
                                          "Sun, 06 Nov 1994 09:49:37 GMT",
                                          "Sun, 06 Nov 1994 09:48:37 GMT",
                                          NULL, now), 60000);
    assert_int_equal(tg_http_freshness_ms(NULL, "0", NULL, NULL, now), 0);
    assert_int_equal(tg_http_freshness_ms(NULL,
                                          "Sun, 06 Nov 1994 08:00:00 GMT",
                                          NULL, NULL, now), 0);
}


static void
test_url_check(void **unused)
{
    size_t  i;
    char    why[256];

    static const char *const  good[] = {
        "https://idp.example.com/.well-known/jwks.json",
        "HTTPS://idp.example.com:8443/keys?x=1",
        "http://127.0.0.1:8080/jwks.json",
        "http://127.9.9.9/jwks.json",
        "http://localhost/jwks.json",
        "http://[::1]:9000/jwks.json",
        "https://[2001:db8::1]/jwks.json",
    };

    static const char *const  bad[] = {
        "http://idp.example.com/jwks.json",
        "http://127.0.0.1.example.com/jwks.json",
        "http://128.0.0.1/jwks.json",
        "http://localhostx/jwks.json",
        "ftp://idp.example.com/jwks.json",
        "idp.example.com/jwks.json",
        "https:///jwks.json",
        "https://user:pw@idp.example.com/jwks.json",
        "https://idp.example.com:/jwks.json",
        "https://idp.example.com:99999x/jwks.json",
        "https://idp.example.com/a b",
        "https://[::1/jwks.json",
    };

    (void) unused;

    for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        assert_int_equal(tg_jwks_url_check(good[i], false, why, sizeof(why)),
                         0);
    }

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(tg_jwks_url_check(bad[i], false, why, sizeof(why)),
                         -1);
    }

    assert_int_equal(tg_jwks_url_check("http://idp.example.com/k", true, why,
                                       sizeof(why)), 0);
}


static void
test_discovery(void **unused)
{
    char        why[256], *uri;
    const char *doc;

    (void) unused;

    doc = "{\"issuer\":\"https://idp.test\",\"jwks_uri\":"
          "\"https://idp.test/keys\",\"token_endpoint\":\"https://x\"}";
    assert_int_equal(tg_discovery_jwks_uri(doc, strlen(doc),
                                           "https://idp.test", false, &uri,
                                           why, sizeof(why)), 0);
    assert_string_equal(uri, "https://idp.test/keys");
    free(uri);

    doc = "{\"issuer\":\"https://evil.test\",\"jwks_uri\":\"https://x/k\"}";
    assert_int_equal(tg_discovery_jwks_uri(doc, strlen(doc),
                                           "https://idp.test", false, &uri,
                                           why, sizeof(why)), -1);
    assert_null(uri);
    assert_string_equal(why, "the discovery document's \"issuer\" is not "
                        "https://idp.test");

    doc = "{\"issuer\":\"https://idp.test\",\"jwks_uri\":7}";
    assert_int_equal(tg_discovery_jwks_uri(doc, strlen(doc),
                                           "https://idp.test", false, &uri,
                                           why, sizeof(why)), -1);
    assert_string_equal(why, "the discovery document has no \"jwks_uri\" "
                        "string");

    doc = "{\"issuer\":\"https://idp.test\",\"jwks_uri\":"
          "\"http://idp.test/keys\"}";
    assert_int_equal(tg_discovery_jwks_uri(doc, strlen(doc),
                                           "https://idp.test", false, &uri,
                                           why, sizeof(why)), -1);
    assert_non_null(strstr(why, "expected an https:// URL"));

    assert_int_equal(tg_discovery_jwks_uri("[]", 2, "https://idp.test",
                                           false, &uri, why, sizeof(why)),
                     -1);
    assert_string_equal(why, "the discovery document is not a JSON object");
}


static void
test_next_fetch(void **unused)
{
    tg_jwks_conf  c;

    (void) unused;

    memset(&c, 0, sizeof(c));
    c.refresh_ms = 3600000;
    c.min_refresh_ms = 30000;

    assert_int_equal(tg_jwks_next_ms(&c, -1, 0), 3600000);
    assert_int_equal(tg_jwks_next_ms(&c, 600000, 0), 600000);
    assert_int_equal(tg_jwks_next_ms(&c, 0, 0), 30000);
    assert_int_equal(tg_jwks_next_ms(&c, 86400000, 0), 3600000);

    /* failures: min_refresh_ms, doubled, at most refresh_ms */

    assert_int_equal(tg_jwks_next_ms(&c, 600000, 1), 30000);
    assert_int_equal(tg_jwks_next_ms(&c, -1, 2), 60000);
    assert_int_equal(tg_jwks_next_ms(&c, -1, 3), 120000);
    assert_int_equal(tg_jwks_next_ms(&c, -1, 12), 3600000);
    assert_int_equal(tg_jwks_next_ms(&c, -1, 4000000000u), 3600000);
}


#define TG_JW_BASE                                                           \
    "'listen': { 'path': '/x' }, 'providers': { 'p': { 'upstream': 'u',"     \
    " 'zone': 'local', 'endpoints': ['chat'] } }, 'routes': { 'r': {"       \
    " 'steps': [ { 'provider': 'p', 'model': 'm' } ] } }"


static void
test_policy_block(void **unused)
{
    tg_policy  *p;

    (void) unused;

    p = tg_test_policy("{" TG_JW_BASE ", 'jwks': {"
                       " 'idp': { 'url': 'https://idp.example.com/keys',"
                       " 'file': '/tmp/idp.jwks' },"
                       " 'disc': { 'issuer': 'https://login.example.com/t/',"
                       " 'file': '/tmp/disc.jwks', 'refresh_ms': 60000,"
                       " 'min_refresh_ms': 1000, 'timeout_ms': 900,"
                       " 'max_bytes': 2048 } } }");
    assert_int_equal(p->njwks, 2);
    assert_string_equal(p->jwks[0].name, "idp");
    assert_string_equal(p->jwks[0].url, "https://idp.example.com/keys");
    assert_null(p->jwks[0].issuer);
    assert_int_equal(p->jwks[0].refresh_ms, TG_JWKS_REFRESH_MS_DEFAULT);
    assert_int_equal(p->jwks[0].min_refresh_ms,
                     TG_JWKS_MIN_REFRESH_MS_DEFAULT);
    assert_int_equal(p->jwks[0].max_bytes, TG_JWKS_MAX_BYTES_DEFAULT);
    assert_false(p->jwks[0].insecure_http);

    assert_null(p->jwks[1].url);
    assert_string_equal(p->jwks[1].discovery_url,
                        "https://login.example.com/t"
                        "/.well-known/openid-configuration");
    assert_int_equal(p->jwks[1].refresh_ms, 60000);
    assert_int_equal(p->jwks[1].min_refresh_ms, 1000);
    assert_int_equal(p->jwks[1].timeout_ms, 900);
    assert_int_equal(p->jwks[1].max_bytes, 2048);
    tg_policy_free(p);

    p = tg_test_policy("{" TG_JW_BASE ", 'jwks': {} }");
    assert_int_equal(p->njwks, 0);
    tg_policy_free(p);
}


static void
test_policy_refusals(void **unused)
{
    static const tg_test_refusal  rows[] = {
        { "{" TG_JW_BASE ", 'jwks': [] }", 1,
          { { "jwks", "expected an object of named key sets" } } },
        { "{" TG_JW_BASE ", 'jwks': { 'a b': {} } }", 1,
          { { "jwks.a b", "expected a name of 1 to 64 letters, digits, '-',"
              " '_' or '.'" } } },
        { "{" TG_JW_BASE ", 'jwks': { 'i': { 'file': '/tmp/i.jwks',"
          " 'url': 'http://10.0.0.1/keys' } } }", 1,
          { { "jwks.i.url", "expected an https:// URL (http:// only to "
              "127.0.0.1, [::1] or localhost, or with \"insecure_http\": "
              "true)" } } },
        { "{" TG_JW_BASE ", 'jwks': { 'i': { 'file': '/tmp/i.jwks',"
          " 'issuer': 'https://idp.test/?tenant=1' } } }", 1,
          { { "jwks.i.issuer", "expected an issuer URL without query or "
              "fragment" } } },
        { "{" TG_JW_BASE ", 'jwks': { 'i': { 'file': '/tmp/i.jwks',"
          " 'url': 'https://a/k', 'timeout_ms': 0, 'max_bytes': 10 } } }",
          2, { { "jwks.i.timeout_ms", NULL }, { "jwks.i.max_bytes", NULL } } },
        { "{" TG_JW_BASE ", 'jwks': { 'a': { 'file': '/tmp/same.jwks',"
          " 'url': 'https://a/k' }, 'b': { 'file': '/tmp/same.jwks',"
          " 'url': 'https://b/k' } } }", 1,
          { { "jwks.b.file", "expected a file of its own (jwks.a writes it "
              "too)" } } },
        { "{" TG_JW_BASE ", 'jwks': { 'a': { 'file': '/tmp/x/',"
          " 'url': 'https://a/k', 'insecure_http': 'yes' } } }", 2,
          { { "jwks.a.insecure_http", "expected true or false" },
            { "jwks.a.file", "expected an absolute file path of at most 4096"
              " bytes" } } },
    };

    (void) unused;

    TG_TEST_REFUSALS(rows);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_jwks_good),
        cmocka_unit_test(test_jwks_some_left_out),
        cmocka_unit_test(test_jwks_refused),
        cmocka_unit_test(test_jwks_too_many),
        cmocka_unit_test(test_base64url),
        cmocka_unit_test(test_http_freshness),
        cmocka_unit_test(test_url_check),
        cmocka_unit_test(test_discovery),
        cmocka_unit_test(test_next_fetch),
        cmocka_unit_test(test_policy_block),
        cmocka_unit_test(test_policy_refusals),
    };

    return cmocka_run_group_tests_name("jwks", tests, NULL, NULL);
}
