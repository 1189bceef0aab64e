/*
 * policyd's JSON log lines (log_json.c, json_out.c): every line is one
 * JSON object that a strict reader takes - valid UTF-8, no raw control
 * characters - whatever bytes the values hold and however long they are;
 * fields typed by their conversion and named as the call says.
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
#include "log.h"
#include "log_json.h"


static const struct timespec  tg_when = { 1790000000, 123456789 };


static size_t
tg_line(char *buf, size_t size, const char *event, const char *fields,
    const char *fmt, ...)
{
    char     msg[4096];
    size_t   n;
    va_list  ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);

    va_start(ap, fmt);
    n = tg_log_json_line(buf, size, &tg_when, "info", 42, event, fields, msg,
                         fmt, ap);
    va_end(ap);

    return n;
}


/* what a strict reader asks: well-formed UTF-8, no raw control bytes */

static void
tg_assert_strict(const char *s, size_t n)
{
    size_t  i, k;

    for (i = 0; i < n; i += k) {
        k = tg_utf8_char_len((const unsigned char *) s + i, n - i);
        assert_true(k > 0);

        if (k == 1) {
            assert_true((unsigned char) s[i] >= 0x20 || s[i] == '\n');
        }
    }
}


/* the line parses, strictly, ends in exactly one '\n': its object */

static cJSON *
tg_parse(const char *buf, size_t n)
{
    cJSON  *o;

    assert_true(n > 2);
    assert_int_equal(buf[n - 1], '\n');
    assert_null(memchr(buf, '\n', n - 1));

    tg_assert_strict(buf, n);

    o = cJSON_ParseWithLength(buf, n);
    assert_non_null(o);
    assert_true(cJSON_IsObject(o));

    return o;
}


static void
test_shape(void **unused)
{
    char    buf[TG_LOG_JSON_MAX];
    size_t  n;
    cJSON  *o, *f;

    (void) unused;

    n = tg_line(buf, sizeof(buf), "connection.closed",
                "connection reason frames leases_released",
                "connection %llu closed: %s (%llu frames, %zu leases "
                "released)", 7ULL, "peer closed", 12ULL, (size_t) 2);
    o = tg_parse(buf, n);

    assert_string_equal(cJSON_GetObjectItem(o, "time")->valuestring,
                        "2026-09-21T14:13:20.123Z");
    assert_string_equal(cJSON_GetObjectItem(o, "level")->valuestring, "info");
    assert_int_equal(cJSON_GetObjectItem(o, "pid")->valueint, 42);
    assert_string_equal(cJSON_GetObjectItem(o, "event")->valuestring,
                        "connection.closed");
    assert_string_equal(cJSON_GetObjectItem(o, "msg")->valuestring,
                        "connection 7 closed: peer closed (12 frames, "
                        "2 leases released)");
    assert_null(cJSON_GetObjectItem(o, "cut"));

    f = cJSON_GetObjectItem(o, "fields");
    assert_true(cJSON_IsNumber(cJSON_GetObjectItem(f, "connection")));
    assert_int_equal(cJSON_GetObjectItem(f, "connection")->valueint, 7);
    assert_string_equal(cJSON_GetObjectItem(f, "reason")->valuestring,
                        "peer closed");
    assert_int_equal(cJSON_GetObjectItem(f, "frames")->valueint, 12);
    assert_int_equal(cJSON_GetObjectItem(f, "leases_released")->valueint, 2);

    cJSON_Delete(o);
}


static void
test_conversions(void **unused)
{
    char    buf[TG_LOG_JSON_MAX];
    size_t  n;
    cJSON  *o, *f;

    (void) unused;

    /* %.*s, %04o, %.0f, %d, %ld, %+d, %5d, %x, %c, NULL, -, unnamed, %% */

    n = tg_line(buf, sizeof(buf), "e", "model mode ms neg pid plus pad hex "
                "chr none - ",
                "%.*s %04o %.0f 100%% %d %ld %+d %5d %x %c %s %s %u",
                3, "qwen-long", 0660u, 12.6, -5, 1234L, 9, 42, 255u, 'z',
                (char *) NULL, "skipped", 77u);
    o = tg_parse(buf, n);
    f = cJSON_GetObjectItem(o, "fields");

    assert_string_equal(cJSON_GetObjectItem(f, "model")->valuestring, "qwe");
    assert_string_equal(cJSON_GetObjectItem(f, "mode")->valuestring, "0660");
    assert_true(cJSON_IsNumber(cJSON_GetObjectItem(f, "ms")));
    assert_int_equal(cJSON_GetObjectItem(f, "ms")->valueint, 13);
    assert_int_equal(cJSON_GetObjectItem(f, "neg")->valueint, -5);
    assert_int_equal(cJSON_GetObjectItem(f, "pid")->valueint, 1234);
    /* "+9" is no JSON number: text */
    assert_string_equal(cJSON_GetObjectItem(f, "plus")->valuestring, "+9");
    assert_int_equal(cJSON_GetObjectItem(f, "pad")->valueint, 42);
    assert_string_equal(cJSON_GetObjectItem(f, "hex")->valuestring, "ff");
    assert_string_equal(cJSON_GetObjectItem(f, "chr")->valuestring, "z");
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(f, "none")));
    assert_null(cJSON_GetObjectItem(f, "skipped"));
    /* a conversion without a name: by its place */
    assert_int_equal(cJSON_GetObjectItem(f, "arg12")->valueint, 77);
    assert_string_equal(cJSON_GetObjectItem(o, "msg")->valuestring,
                        "qwe 0660 13 100% -5 1234 +9    42 ff z (null) "
                        "skipped 77");

    cJSON_Delete(o);

    /* no conversions, no names: an empty object */

    n = tg_line(buf, sizeof(buf), "start.failed", "", "cannot start");
    o = tg_parse(buf, n);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(o, "fields")), 0);
    cJSON_Delete(o);
}


/* values of any bytes: quotes, backslashes, controls, bad UTF-8, U+2028 */

static void
test_odd_bytes(void **unused)
{
    char           buf[TG_LOG_JSON_MAX], odd[512];
    size_t         n, i;
    cJSON         *o, *f;
    const char    *v;

    static const char  *cases[] = {
        "qu\"ote", "back\\slash", "ctl\x01\x1f\x7f", "nl\nline\r",
        "latin1 \xe9\xff", "utf8 \xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
        "overlong \xc0\xaf \xe0\x80\xaf", "surrogate \xed\xa0\x80",
        "beyond \xf4\x90\x80\x80", "cut short \xe2\x82", "lone \x80\xbf",
        "sep \xe2\x80\xa8 \xe2\x80\xa9", "{\"json\":1}", "",
    };

    (void) unused;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        n = tg_line(buf, sizeof(buf), "e", "v", "value %s", cases[i]);
        o = tg_parse(buf, n);
        f = cJSON_GetObjectItem(o, "fields");
        v = cJSON_GetObjectItem(f, "v")->valuestring;
        assert_non_null(v);
        cJSON_Delete(o);
    }

    /* what survives as it was, what becomes U+FFFD */

    n = tg_line(buf, sizeof(buf), "e", "v", "%s", "a\"b\\c\x01\xc3\xa9\xff");
    o = tg_parse(buf, n);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(o, "fields"),
                                            "v")->valuestring,
                        "a\"b\\c\x01\xc3\xa9\xef\xbf\xbd");
    cJSON_Delete(o);

    /* every byte value once */

    for (i = 0; i < 255; i++) {
        odd[i] = (char) (i + 1);
    }
    odd[255] = '\0';

    n = tg_line(buf, sizeof(buf), "e\"vent\x01", "v", "%s", odd);
    o = tg_parse(buf, n);
    cJSON_Delete(o);

    /* an odd event or field name is escaped as well */
    n = tg_line(buf, sizeof(buf), "\xff\"", "a\"b\x01", "%d", 1);
    o = tg_parse(buf, n);
    cJSON_Delete(o);
}


/* long values are cut, whole characters, and the line still closes */

static void
test_huge(void **unused)
{
    char    *big, *buf;
    size_t   n, size, i;
    cJSON   *o;

    (void) unused;

    big = malloc(20001);
    buf = malloc(TG_LOG_JSON_MAX);
    assert_non_null(big);
    assert_non_null(buf);

    /* multi-byte characters and escapes all along */

    for (i = 0; i + 3 <= 20000; i += 3) {
        if ((i / 3) % 3 == 0) {
            memcpy(big + i, "\xe2\x82\xac", 3);
        } else if ((i / 3) % 3 == 1) {
            memcpy(big + i, "\"\x01\\", 3);
        } else {
            memcpy(big + i, "ab\xff", 3);
        }
    }
    big[i] = '\0';

    n = tg_line(buf, TG_LOG_JSON_MAX, "e", "a b", "%s %s", big, "after");
    assert_true(n <= TG_LOG_JSON_MAX);
    o = tg_parse(buf, n);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(o, "cut")));
    cJSON_Delete(o);

    /* at every size of buffer, however the cut falls */

    for (size = 256; size < 1200; size++) {
        n = tg_line(buf, size, "connection.closed", "a b c",
                    "%s %d %s", big + (size % 7), (int) size, big);
        assert_true(n <= size);
        o = tg_parse(buf, n);
        cJSON_Delete(o);
    }

    free(big);
    free(buf);
}


static void
test_format_names(void **unused)
{
    tg_log_format  f;

    (void) unused;

    assert_int_equal(tg_log_format_parse("json", &f), 0);
    assert_int_equal(f, TG_LOG_JSON);
    assert_int_equal(tg_log_format_parse("text", &f), 0);
    assert_int_equal(f, TG_LOG_TEXT);
    assert_int_equal(tg_log_format_parse("JSON", &f), -1);
    assert_int_equal(tg_log_format_parse("", &f), -1);
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shape),
        cmocka_unit_test(test_conversions),
        cmocka_unit_test(test_odd_bytes),
        cmocka_unit_test(test_huge),
        cmocka_unit_test(test_format_names),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
