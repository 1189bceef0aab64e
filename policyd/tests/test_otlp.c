/*
 * The exporter's pure parts: OTLP_ENDPOINT made a URL, OTLP_API_KEY made
 * Basic auth (a Grafana Cloud glc_ token's instance id), k=v lists of
 * resource attributes and headers with odd input, the settings read from
 * an environment, traceparents, and REPORTs made spans that parse.
 */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <cjson/cJSON.h>

#include "json_out.h"
#include "otlp_conf.h"
#include "otlp_span.h"
#include "proto.h"


/* the endpoint */

static void
test_endpoint_good(void **unused)
{
    char         out[TG_OTLP_URL_MAX];
    size_t       i;
    const char  *why;

    static const struct {
        const char  *in;
        const char  *url;
    } rows[] = {
        { "localhost:4318", "http://localhost:4318/v1/traces" },
        { "collector", "http://collector/v1/traces" },
        { "otlp.example.com:443", "https://otlp.example.com:443/v1/traces" },
        { "[::1]:4318", "http://[::1]:4318/v1/traces" },
        { "localhost:4318/otlp", "http://localhost:4318/otlp/v1/traces" },
        { "https://otlp-gateway.example.com/otlp",
          "https://otlp-gateway.example.com/otlp/v1/traces" },
        { "https://x.example/otlp/", "https://x.example/otlp/v1/traces" },
        { "http://x:4318/v1/traces", "http://x:4318/v1/traces" },
        { "http://x:4318/v1/traces/", "http://x:4318/v1/traces" },
        { "http://x:4318/", "http://x:4318/v1/traces" },
        { "http://x:4318", "http://x:4318/v1/traces" },
        { "HTTPS://X.Example:8443", "https://X.Example:8443/v1/traces" },
        { "http://x/p?tenant=a", "http://x/p/v1/traces?tenant=a" },
        { "http://x?a=b", "http://x/v1/traces?a=b" },
        { "  http://x:1  ", "http://x:1/v1/traces" },
        { "\thttp://x:65535\t", "http://x:65535/v1/traces" },
        { "http://x/v1/traces/v1/traces", "http://x/v1/traces/v1/traces" },
        { "http://x/v1/tracesX", "http://x/v1/tracesX/v1/traces" },
        { "http://[2001:db8::1]:4318/a", "http://[2001:db8::1]:4318/a/v1/traces" },
    };

    (void) unused;

    for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        assert_int_equal(tg_otlp_endpoint_url(rows[i].in, out, sizeof(out),
                                              &why), 0);
        assert_string_equal(out, rows[i].url);
    }
}


static void
test_endpoint_bad(void **unused)
{
    char         out[TG_OTLP_URL_MAX], again[TG_OTLP_URL_MAX], *huge;
    size_t       i;
    const char  *why;

    static const struct {
        const char  *in;
        const char  *why;
    } rows[] = {
        { "", "expected host:port" },
        { "   ", "expected host:port" },
        { "ftp://x", "expected the scheme" },
        { "grpc://x:4317", "expected the scheme" },
        { "http://", "expected a host name" },
        { "http://:4318", "expected a host name" },
        { "http:///path", "expected a host name" },
        { "http://user:pass@x", "expected no user:password@" },
        { "http://x@y/", "expected no user:password@" },
        { "x:0", "expected a port" },
        { "x:65536", "expected a port" },
        { "x:999999", "expected a port" },
        { "x:", "expected a port" },
        { "x:12a", "expected a port" },
        { "x:-1", "expected a port" },
        { "http://x/#frag", "expected a URL without a #fragment" },
        { "http://x y/", "expected a URL without spaces" },
        { "http://x\x01/", "expected a URL without spaces" },
        { "http://\xc3\xa9.example/", "expected a URL without spaces" },
        { "http://x\r\nHost: evil/", "expected a URL without spaces" },
        { "[zz]:1", "expected an IPv6" },
        { "[]:1", "expected an IPv6" },
        { "[::1]x", "expected :port after" },
        { "[::1", "expected an IPv6" },
        { "x_y!:1", "expected a host name of" },
    };

    (void) unused;

    for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        why = NULL;
        assert_int_equal(tg_otlp_endpoint_url(rows[i].in, out, sizeof(out),
                                              &why), -1);
        assert_non_null(why);
        assert_non_null(strstr(why, rows[i].why));
    }

    huge = malloc(5000);
    assert_non_null(huge);
    memcpy(huge, "http://x/", 9);
    memset(huge + 9, 'a', 4990);
    huge[4999] = '\0';
    assert_int_equal(tg_otlp_endpoint_url(huge, out, sizeof(out), &why), -1);
    assert_non_null(strstr(why, "at most"));

    /* 2000 bytes as given, more once made a URL: refused, so that what is
     * taken always reads back as itself */
    memcpy(huge, "x/", 2);
    memset(huge + 2, 'a', 1998);
    huge[2000] = '\0';
    assert_int_equal(tg_otlp_endpoint_url(huge, out, sizeof(out), &why), -1);
    assert_non_null(strstr(why, "with its scheme"));

    /* the longest that fits: 2000 bytes made */
    memcpy(huge, "http://x/", 9);
    memset(huge + 9, 'a', 2000 - 9 - 10);
    memcpy(huge + 2000 - 10, "/v1/traces", 11);
    assert_int_equal(tg_otlp_endpoint_url(huge, out, sizeof(out), &why), 0);
    assert_int_equal(strlen(out), 2000);
    assert_int_equal(tg_otlp_endpoint_url(out, again, sizeof(again), &why),
                     0);
    assert_string_equal(out, again);
    free(huge);

    /* a buffer too small is an error, not a cut URL */
    assert_int_equal(tg_otlp_endpoint_url("http://collector:4318", out, 20,
                                          &why), -1);
}


/* the key */

static char *
tg_glc(const char *json, bool url_safe, bool padded)
{
    char    b64[1024], *t;
    size_t  n, i;

    n = tg_base64(json, strlen(json), b64, sizeof(b64));
    assert_true(n > 0);

    for (i = 0; url_safe && i < n; i++) {
        b64[i] = b64[i] == '+' ? '-' : b64[i] == '/' ? '_' : b64[i];
    }

    while (!padded && n > 0 && b64[n - 1] == '=') {
        b64[--n] = '\0';
    }

    t = malloc(n + 5);
    assert_non_null(t);
    sprintf(t, "glc_%s", b64);

    return t;
}


static void
tg_assert_basic(const char *auth, const char *plain)
{
    char  want[8192];

    memcpy(want, "Basic ", 6);
    assert_true(tg_base64(plain, strlen(plain), want + 6, sizeof(want) - 6)
                > 0);
    assert_string_equal(auth, want);
}


static void
test_glc_token(void **unused)
{
    char   id[64], auth[8192], plain[4096], *t;
    bool   grafana;

    (void) unused;

    /* "o" as a string, as Grafana Cloud writes it */
    t = tg_glc("{\"o\":\"1234567\",\"n\":\"stack-1-otlp\",\"k\":\"K?>~\","
               "\"m\":{\"r\":\"prod-eu-west-2\"}}", false, true);
    assert_int_equal(tg_otlp_glc_instance(t, id, sizeof(id)), 0);
    assert_string_equal(id, "1234567");

    assert_int_equal(tg_otlp_authorization(t, auth, sizeof(auth), &grafana),
                     0);
    assert_true(grafana);
    snprintf(plain, sizeof(plain), "1234567:%s", t);
    tg_assert_basic(auth, plain);
    free(t);

    /* a number; the URL-safe alphabet; no padding */
    t = tg_glc("{\"k\":\"\xfb\xff\",\"o\":98765}", true, false);
    assert_int_equal(tg_otlp_glc_instance(t, id, sizeof(id)), 0);
    assert_string_equal(id, "98765");
    free(t);

    /* tokens with no instance id in them: KEY: */

    static const char  *no_id[] = {
        "{\"n\":\"x\"}", "{\"o\":\"\"}", "{\"o\":\"12:34\"}",
        "{\"o\":\"1 2\"}", "{\"o\":1.5}", "{\"o\":-1}", "{\"o\":null}",
        "{\"o\":[1]}", "[\"o\",1]", "\"o\"", "{\"o\":\"1\"", "",
        "{\"o\":\"\x01\"}", "{\"o\":1e300}",
    };

    for (size_t i = 0; i < sizeof(no_id) / sizeof(no_id[0]); i++) {
        t = no_id[i][0] ? tg_glc(no_id[i], false, true) : strdup("glc_");
        assert_int_equal(tg_otlp_glc_instance(t, id, sizeof(id)), -1);
        assert_int_equal(tg_otlp_authorization(t, auth, sizeof(auth),
                                               &grafana), 0);
        assert_false(grafana);
        snprintf(plain, sizeof(plain), "%s:", t);
        tg_assert_basic(auth, plain);
        free(t);
    }

    /* not base64 at all, or no glc_ prefix */
    assert_int_equal(tg_otlp_glc_instance("glc_!!!!", id, sizeof(id)), -1);
    assert_int_equal(tg_otlp_glc_instance("glc_a", id, sizeof(id)), -1);
    assert_int_equal(tg_otlp_glc_instance("GLC_eyJvIjoiMSJ9", id, sizeof(id)),
                     -1);
    assert_int_equal(tg_otlp_glc_instance("glc_eyJvIjoiMSJ9", id, sizeof(id)),
                     0);
    assert_string_equal(id, "1");

    /* an id longer than the room for it */
    t = tg_glc("{\"o\":\"12345678901234567890\"}", false, true);
    assert_int_equal(tg_otlp_glc_instance(t, id, 8), -1);
    free(t);
}


static void
test_authorization(void **unused)
{
    char   auth[8192], *big;
    bool   grafana;

    (void) unused;

    assert_int_equal(tg_otlp_authorization("abc", auth, sizeof(auth),
                                           &grafana), 0);
    assert_false(grafana);
    assert_string_equal(auth, "Basic YWJjOg==");

    assert_int_equal(tg_otlp_authorization("", auth, sizeof(auth), &grafana),
                     -1);
    assert_int_equal(tg_otlp_authorization("a b", auth, sizeof(auth),
                                           &grafana), -1);
    assert_int_equal(tg_otlp_authorization("a\nb", auth, sizeof(auth),
                                           &grafana), -1);
    assert_int_equal(tg_otlp_authorization("k\xc3\xa9", auth, sizeof(auth),
                                           &grafana), -1);

    big = malloc(TG_OTLP_VALUE_MAX + 2);
    assert_non_null(big);
    memset(big, 'k', TG_OTLP_VALUE_MAX + 1);
    big[TG_OTLP_VALUE_MAX + 1] = '\0';
    assert_int_equal(tg_otlp_authorization(big, auth, sizeof(auth), &grafana),
                     -1);
    free(big);

    /* no room */
    assert_int_equal(tg_otlp_authorization("abc", auth, 8, &grafana), -1);
}


/* k=v lists */

static void
test_pairs(void **unused)
{
    long          n;
    size_t        bad;
    const char   *why;
    tg_otlp_pair  p[TG_OTLP_PAIRS_MAX];

    (void) unused;

    n = tg_otlp_pairs(" a = 1 ,b=x=y,, c=%2C%3d%25 ,d=,", false, p, 64, &bad,
                      &why);
    assert_int_equal(n, 4);
    assert_string_equal(p[0].key, "a");
    assert_string_equal(p[0].value, "1");
    assert_string_equal(p[1].key, "b");
    assert_string_equal(p[1].value, "x=y");
    assert_string_equal(p[2].key, "c");
    assert_string_equal(p[2].value, ",=%");
    assert_string_equal(p[3].key, "d");
    assert_string_equal(p[3].value, "");
    tg_otlp_pairs_free(p, (size_t) n);

    assert_int_equal(tg_otlp_pairs("", false, p, 64, &bad, &why), 0);
    assert_int_equal(tg_otlp_pairs(" , ,", false, p, 64, &bad, &why), 0);

    /* a control byte in a resource value is the JSON writer's to escape */
    n = tg_otlp_pairs("k=%01%ff", false, p, 64, &bad, &why);
    assert_int_equal(n, 1);
    assert_string_equal(p[0].value, "\x01\xff");
    tg_otlp_pairs_free(p, 1);

    static const struct {
        const char  *in;
        bool         header;
        size_t       entry;
        const char  *why;
    } rows[] = {
        { "a=1,novalue,c=3", false, 2, "expected key=value" },
        { "=v", false, 1, "expected a key" },
        { " =v", false, 1, "expected a key" },
        { "a=%", false, 1, "escapes" },
        { "a=%1", false, 1, "escapes" },
        { "a=%zz", false, 1, "escapes" },
        { "%g1=v", false, 1, "escapes" },
        { "a=x%00y", false, 1, "without NUL" },
        { "a b=v", true, 1, "header name" },
        { "a:b=v", true, 1, "header name" },
        { "ok=1,x\x01=v", true, 2, "header name" },
        { "X=a%0d%0aHost: evil", true, 1, "without control" },
        { "X=a%00", true, 1, "without control" },
        { "X=a\x7f", true, 1, "without control" },
        { "content-type=text/plain", true, 1, "other than" },
        { "Content-Length=5", true, 1, "other than" },
        { "HOST=x", true, 1, "other than" },
        { "Transfer-Encoding=chunked", true, 1, "other than" },
    };

    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        why = NULL;
        assert_int_equal(tg_otlp_pairs(rows[i].in, rows[i].header, p, 64,
                                       &bad, &why), -1);
        assert_int_equal(bad, rows[i].entry);
        assert_non_null(strstr(why, rows[i].why));
    }

    /* a tab in a header value is allowed; a percent-escaped name too */
    n = tg_otlp_pairs("X-A=a%09b,X%2DB=c", true, p, 64, &bad, &why);
    assert_int_equal(n, 2);
    assert_string_equal(p[0].value, "a\tb");
    assert_string_equal(p[1].key, "X-B");
    tg_otlp_pairs_free(p, 2);
}


static void
test_pairs_limits(void **unused)
{
    long          n;
    char         *s, *big;
    size_t        bad, i, len;
    const char   *why;
    tg_otlp_pair  p[TG_OTLP_PAIRS_MAX];

    (void) unused;

    /* 64 entries fit, 65 do not */

    s = malloc(65 * 16);
    assert_non_null(s);

    for (len = 0, i = 0; i < 65; i++) {
        len += (size_t) sprintf(s + len, "%sk%zu=v", i ? "," : "", i);

        if (i == 63) {
            n = tg_otlp_pairs(s, false, p, TG_OTLP_PAIRS_MAX, &bad, &why);
            assert_int_equal(n, 64);
            tg_otlp_pairs_free(p, 64);
        }
    }

    assert_int_equal(tg_otlp_pairs(s, false, p, TG_OTLP_PAIRS_MAX, &bad,
                                   &why), -1);
    assert_int_equal(bad, 65);
    free(s);

    /* a value past 4096 bytes */

    big = malloc(TG_OTLP_VALUE_MAX + 8);
    assert_non_null(big);
    memcpy(big, "k=", 2);
    memset(big + 2, 'v', TG_OTLP_VALUE_MAX + 1);
    big[TG_OTLP_VALUE_MAX + 3] = '\0';
    assert_int_equal(tg_otlp_pairs(big, false, p, 64, &bad, &why), -1);
    assert_non_null(strstr(why, "4096"));
    free(big);
}


/* the whole environment */

static const char  *const *tg_env;

static const char *
tg_getenv(const char *name)
{
    size_t  i, n = strlen(name);

    for (i = 0; tg_env[i] != NULL; i++) {
        if (strncmp(tg_env[i], name, n) == 0 && tg_env[i][n] == '=') {
            return tg_env[i] + n + 1;
        }
    }

    return NULL;
}


static void
test_conf_read(void **unused)
{
    tg_errors     errs, warns;
    tg_otlp_conf  c;

    (void) unused;

    /* nothing set: off, no errors */

    static const char  *none[] = { "OTLP_API_KEY=k", NULL };

    tg_env = none;
    tg_errors_init(&errs);
    tg_errors_init(&warns);
    assert_int_equal(tg_otlp_conf_read(&c, tg_getenv, &errs, &warns), 0);
    assert_false(c.on);
    assert_int_equal(errs.count + warns.count, 0);

    /* everything: OTEL_ names win over OTLP_ ones */

    static const char  *all[] = {
        "OTLP_ENDPOINT=collector:4318", "OTLP_API_KEY=k",
        "OTEL_SERVICE_NAME=gw", "OTLP_SERVICE_NAME=other",
        "OTLP_RESOURCE_ATTRIBUTES=ignored=1",
        "OTEL_RESOURCE_ATTRIBUTES=service.name=res,env=prod",
        "OTLP_HEADERS=X-A=1", "OTEL_BSP_MAX_QUEUE_SIZE=10",
        "OTEL_BSP_MAX_EXPORT_BATCH_SIZE=50", "OTEL_BSP_SCHEDULE_DELAY=5",
        "OTEL_EXPORTER_OTLP_TIMEOUT=700", NULL
    };

    tg_env = all;
    assert_int_equal(tg_otlp_conf_read(&c, tg_getenv, &errs, &warns), 0);
    assert_true(c.on);
    assert_string_equal(c.url, "http://collector:4318/v1/traces");
    assert_string_equal(c.authorization, "Basic azo=");
    assert_string_equal(c.service_name, "gw");
    assert_int_equal(c.nresource, 1);
    assert_string_equal(c.resource[0].key, "env");
    assert_int_equal(c.nheaders, 1);
    assert_int_equal(c.queue_spans, 10);
    assert_int_equal(c.batch_spans, 10);         /* not more than the queue */
    assert_int_equal(c.delay_ms, 5);
    assert_int_equal(c.timeout_ms, 700);
    assert_int_equal(errs.count + warns.count, 0);
    tg_otlp_conf_free(&c);

    /* the service's name from the resource, else "tailgate" */

    static const char  *res[] = {
        "OTLP_ENDPOINT=x", "OTLP_SERVICE_NAME=",
        "OTLP_RESOURCE_ATTRIBUTES=service.name=from-res", NULL
    };

    tg_env = res;
    assert_int_equal(tg_otlp_conf_read(&c, tg_getenv, &errs, &warns), 0);
    assert_string_equal(c.service_name, "from-res");
    assert_int_equal(c.nresource, 0);
    assert_null(c.authorization);
    tg_otlp_conf_free(&c);

    /* odd values: warnings, the defaults, the variable ignored */

    static const char  *odd[] = {
        "OTLP_ENDPOINT=x", "OTEL_RESOURCE_ATTRIBUTES=a=1,b",
        "OTLP_HEADERS=Bad Name=1", "OTEL_BSP_MAX_QUEUE_SIZE=0",
        "OTEL_BSP_SCHEDULE_DELAY=-5", "OTEL_EXPORTER_OTLP_TIMEOUT=1e3",
        "OTEL_BSP_MAX_EXPORT_BATCH_SIZE=99999999999999999999", NULL
    };

    tg_env = odd;
    assert_int_equal(tg_otlp_conf_read(&c, tg_getenv, &errs, &warns), 0);
    assert_true(c.on);
    assert_string_equal(c.service_name, "tailgate");
    assert_int_equal(c.nresource, 0);
    assert_int_equal(c.nheaders, 0);
    assert_int_equal(c.queue_spans, TG_OTLP_QUEUE_DEFAULT);
    assert_int_equal(c.delay_ms, TG_OTLP_DELAY_DEFAULT);
    assert_int_equal(c.timeout_ms, TG_OTLP_TIMEOUT_DEFAULT);
    assert_int_equal(c.batch_spans, TG_OTLP_BATCH_DEFAULT);
    assert_int_equal(errs.count, 0);
    assert_int_equal(warns.count, 6);
    assert_non_null(tg_errors_find(&warns, "OTEL_RESOURCE_ATTRIBUTES"));
    assert_non_null(tg_errors_find(&warns, "OTLP_HEADERS"));
    assert_non_null(tg_errors_find(&warns, "OTEL_BSP_MAX_QUEUE_SIZE"));
    tg_otlp_conf_free(&c);
    tg_errors_free(&warns);
    tg_errors_init(&warns);

    /* errors: a bad endpoint, a bad key, never the key in the message */

    static const char  *bad[] = {
        "OTLP_ENDPOINT=ftp://x", "OTLP_API_KEY=sk-secret\x01", NULL
    };

    tg_env = bad;
    assert_int_equal(tg_otlp_conf_read(&c, tg_getenv, &errs, &warns), -1);
    assert_false(c.on);
    assert_null(c.url);
    assert_int_equal(errs.count, 2);
    assert_non_null(tg_errors_find(&errs, "OTLP_ENDPOINT"));
    assert_non_null(tg_errors_find(&errs, "OTLP_API_KEY"));
    assert_null(strstr(tg_errors_find(&errs, "OTLP_API_KEY")->message,
                       "secret"));

    tg_errors_free(&errs);
    tg_errors_free(&warns);
}


/* traceparents and spans */

static void
test_traceparent(void **unused)
{
    uint8_t  trace[16], span[8], flags;

    (void) unused;

    static const char  *good[] = {
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00",
        "cc-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-what-ever",
        "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-09",
    };

    static const char  *bad[] = {
        "", "00", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0",
        "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
        "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-",
        "cc-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01x",
        "00_0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "0g-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319-cb7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333\x01-01",
    };

    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        assert_int_equal(tg_otlp_traceparent(good[i], strlen(good[i]), trace,
                                             span, &flags), 0);
        assert_int_equal(trace[0], 0x0a);
        assert_int_equal(span[7], 0x31);
    }

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(tg_otlp_traceparent(bad[i], strlen(bad[i]), trace,
                                             span, &flags), -1);
    }
}


/* a REPORT frame of the module's, with trace fields */

static size_t
tg_report_frame(uint8_t *buf, size_t cap, const char *traceparent,
    const char *parent, const char *client, const char *start, int final)
{
    long        n;
    tg_builder  b;

    tg_build_begin(&b, buf, cap, TG_MSG_REPORT, 0);
    tg_build_cstr(&b, TG_F_OUTCOME, "ok");

    if (traceparent) {
        tg_build_cstr(&b, TG_F_TRACEPARENT, traceparent);
    }
    if (parent) {
        tg_build_cstr(&b, TG_F_PARENT_SPAN, parent);
    }
    if (client) {
        tg_build_cstr(&b, TG_F_CLIENT_SPAN, client);
    }
    if (start) {
        tg_build_cstr(&b, TG_F_START_MS, start);
    }
    if (final >= 0) {
        tg_build_u8(&b, TG_F_TRACE_FINAL, (uint8_t) final);
    }

    n = tg_build_end(&b);
    assert_true(n > 0);

    return (size_t) n;
}


static tg_otlp_trace
tg_read(const uint8_t *buf, size_t n)
{
    tg_frame_hdr   h;
    tg_otlp_trace  t;

    assert_int_equal(tg_frame_header(buf, n, 65536, &h), TG_FRAME_OK);
    assert_int_equal(tg_otlp_trace_read(&t, buf, &h), 0);

    return t;
}


#define TP  "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

static void
test_trace_read(void **unused)
{
    size_t         n;
    uint8_t        buf[1024];
    tg_otlp_trace  t;

    (void) unused;

    n = tg_report_frame(buf, sizeof(buf), TP, "1111111111111111",
                        "2222222222222222", "1790000000123", 1);
    t = tg_read(buf, n);
    assert_true(t.present);
    assert_true(t.has_parent && t.has_client && t.final);
    assert_int_equal(t.flags, 1);
    assert_true(t.start_ms == 1790000000123ULL);

    /* no parent, no start, a bad start: nothing to hang it on */

    n = tg_report_frame(buf, sizeof(buf), TP, NULL, NULL, "1", -1);
    assert_false(tg_read(buf, n).present);
    n = tg_report_frame(buf, sizeof(buf), TP, "1111111111111111", NULL, NULL,
                        -1);
    assert_false(tg_read(buf, n).present);
    n = tg_report_frame(buf, sizeof(buf), TP, "1111111111111111", NULL,
                        "12x", -1);
    assert_false(tg_read(buf, n).present);
    n = tg_report_frame(buf, sizeof(buf), TP, "11111111111111", NULL,
                        "12", -1);
    assert_false(tg_read(buf, n).present);
    n = tg_report_frame(buf, sizeof(buf), "junk", "1111111111111111", NULL,
                        "12", -1);
    assert_false(tg_read(buf, n).present);

    /* an odd client span is left out, the rest stands */
    n = tg_report_frame(buf, sizeof(buf), TP, "1111111111111111", "XYZ",
                        "12", 0);
    t = tg_read(buf, n);
    assert_true(t.present);
    assert_false(t.has_client);
    assert_false(t.final);
}


static cJSON *
tg_spans_parse(const char *s, size_t n)
{
    char   *text;
    cJSON  *a;

    text = malloc(n + 3);
    assert_non_null(text);
    text[0] = '[';
    memcpy(text + 1, s, n);
    text[n + 1] = ']';
    text[n + 2] = '\0';

    /* strictly valid UTF-8, no raw control bytes */
    for (size_t i = 0, k; i < n; i += k) {
        k = tg_utf8_char_len((const unsigned char *) s + i, n - i);
        assert_true(k > 0);
        assert_true(k > 1 || (unsigned char) s[i] >= 0x20);
    }

    a = cJSON_Parse(text);
    free(text);
    assert_non_null(a);
    assert_true(cJSON_IsArray(a));

    return a;
}


static const char *
tg_attr(const cJSON *span, const char *key)
{
    const cJSON  *kv, *v;

    cJSON_ArrayForEach(kv, cJSON_GetObjectItem(span, "attributes")) {
        if (strcmp(cJSON_GetObjectItem(kv, "key")->valuestring, key) == 0) {
            v = cJSON_GetObjectItem(kv, "value");
            v = v->child;
            return v->valuestring;
        }
    }

    return NULL;
}


static void
test_spans(void **unused)
{
    char           out[TG_OTLP_SPANS_MAX], *huge;
    size_t         n;
    unsigned       count;
    uint8_t        buf[1024];
    cJSON         *a, *s;
    tg_report      r;
    tg_otlp_trace  t;

    (void) unused;

    n = tg_report_frame(buf, sizeof(buf), TP, "1111111111111111",
                        "2222222222222222", "1790000000123", 1);
    t = tg_read(buf, n);

    memset(&r, 0, sizeof(r));
    r.count = 1;
    r.outcome = TG_OUTCOME_SERVER_ERROR;
    r.http_status = 502;
    r.total_ms = 40;
    r.upstream_ms = 30;
    r.attempt = 2;
    r.provider = "ds";
    r.route = "smart";
    r.endpoint = (struct tg_report_str) { "chat", 4 };
    r.provider_model = (struct tg_report_str) { "qu\"o\\te\x01\xff", 9 };
    r.response_model = (struct tg_report_str) { "\xe2\x80\xa8", 3 };
    r.request_id = (struct tg_report_str) { "abc", 3 };

    n = tg_otlp_report_spans(&r, &t, "api.deepseek.com", out, sizeof(out),
                             &count);
    assert_true(n > 0);
    assert_int_equal(count, 2);

    a = tg_spans_parse(out, n);
    assert_int_equal(cJSON_GetArraySize(a), 2);

    s = cJSON_GetArrayItem(a, 0);
    assert_string_equal(cJSON_GetObjectItem(s, "traceId")->valuestring,
                        "0af7651916cd43dd8448eb211c80319c");
    assert_string_equal(cJSON_GetObjectItem(s, "spanId")->valuestring,
                        "b7ad6b7169203331");
    assert_string_equal(cJSON_GetObjectItem(s, "parentSpanId")->valuestring,
                        "1111111111111111");
    assert_int_equal(cJSON_GetObjectItem(s, "kind")->valueint, 3);
    assert_string_equal(cJSON_GetObjectItem(s, "startTimeUnixNano")
                        ->valuestring, "1790000000133000000");
    assert_string_equal(cJSON_GetObjectItem(s, "endTimeUnixNano")
                        ->valuestring, "1790000000163000000");
    assert_string_equal(tg_attr(s, "gen_ai.request.model"),
                        "qu\"o\\te\x01\xef\xbf\xbd");
    assert_string_equal(tg_attr(s, "gen_ai.provider.name"), "ds");
    assert_string_equal(tg_attr(s, "server.address"), "api.deepseek.com");
    assert_string_equal(tg_attr(s, "error.type"), "502");
    assert_string_equal(tg_attr(s, "http.response.status_code"), "502");
    assert_string_equal(tg_attr(s, "tailgate.attempt"), "2");
    assert_string_equal(tg_attr(s, "tailgate.outcome"), "server_error");
    assert_int_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(s, "status"),
                                         "code")->valueint, 2);

    s = cJSON_GetArrayItem(a, 1);
    assert_int_equal(cJSON_GetObjectItem(s, "kind")->valueint, 2);
    assert_string_equal(cJSON_GetObjectItem(s, "spanId")->valuestring,
                        "1111111111111111");
    assert_string_equal(cJSON_GetObjectItem(s, "parentSpanId")->valuestring,
                        "2222222222222222");
    assert_string_equal(cJSON_GetObjectItem(s, "name")->valuestring,
                        "POST /v1/chat/completions");
    assert_string_equal(tg_attr(s, "tailgate.attempts"), "2");
    cJSON_Delete(a);

    /* a huge model name: cut, still JSON, the span still closed */

    huge = malloc(20000);
    assert_non_null(huge);
    memset(huge, '"', 20000);
    r.provider_model = (struct tg_report_str) { huge, 20000 };

    n = tg_otlp_report_spans(&r, &t, NULL, out, sizeof(out), &count);
    assert_true(n > 0 && n <= sizeof(out));
    a = tg_spans_parse(out, n);
    cJSON_Delete(a);

    /* at any size of buffer: JSON or nothing */
    for (size_t size = 0; size < 3000; size += 7) {
        n = tg_otlp_report_spans(&r, &t, NULL, out, size, &count);
        if (n > 0) {
            cJSON_Delete(tg_spans_parse(out, n));
        } else {
            assert_int_equal(count, 0);
        }
    }
    free(huge);

    /* nothing for the unsampled, the untraced, a REPORT of several */

    t.flags = 0;
    assert_int_equal(tg_otlp_report_spans(&r, &t, NULL, out, sizeof(out),
                                          &count), 0);
    t.flags = 1;
    r.count = 3;
    assert_int_equal(tg_otlp_report_spans(&r, &t, NULL, out, sizeof(out),
                                          &count), 0);
    r.count = 1;
    t.present = false;
    assert_int_equal(tg_otlp_report_spans(&r, &t, NULL, out, sizeof(out),
                                          &count), 0);

    /* not final: the attempt alone */
    t.present = true;
    t.final = false;
    r.provider_model = (struct tg_report_str) { "m", 1 };
    n = tg_otlp_report_spans(&r, &t, NULL, out, sizeof(out), &count);
    assert_int_equal(count, 1);
    cJSON_Delete(tg_spans_parse(out, n));
}


static void
test_payload(void **unused)
{
    char           head[65536], body[70000];
    size_t         n;
    cJSON         *o, *attrs;
    tg_otlp_conf   c;
    tg_otlp_pair   res[1] = { { "odd\"key", "v\x01\xff" } };

    (void) unused;

    memset(&c, 0, sizeof(c));
    c.service_name = "svc\n";
    c.resource = res;
    c.nresource = 1;

    n = tg_otlp_payload_head(&c, "0.1", head, sizeof(head));
    assert_true(n > 0);

    /* with no span in it, the body is still an OTLP document */
    memcpy(body, head, n);
    memcpy(body + n, TG_OTLP_PAYLOAD_TAIL, sizeof(TG_OTLP_PAYLOAD_TAIL));

    o = cJSON_Parse(body);
    assert_non_null(o);
    attrs = cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetArrayItem(
                cJSON_GetObjectItem(o, "resourceSpans"), 0), "resource"),
                "attributes");
    assert_int_equal(cJSON_GetArraySize(attrs), 4);
    cJSON_Delete(o);

    /* too little room: 0, never a head cut short */
    assert_int_equal(tg_otlp_payload_head(&c, "0.1", head, 100), 0);
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_endpoint_good),
        cmocka_unit_test(test_endpoint_bad),
        cmocka_unit_test(test_glc_token),
        cmocka_unit_test(test_authorization),
        cmocka_unit_test(test_pairs),
        cmocka_unit_test(test_pairs_limits),
        cmocka_unit_test(test_conf_read),
        cmocka_unit_test(test_traceparent),
        cmocka_unit_test(test_trace_read),
        cmocka_unit_test(test_spans),
        cmocka_unit_test(test_payload),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
