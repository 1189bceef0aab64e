/*
 * Frame parsing and building: truncated frames, lengths past the end, wrong
 * integer sizes, oversize frames, unknown fields, builder overflow.
 */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "proto.h"


#define MAX  65536


/* a DECIDE written out by hand */
static const uint8_t  tg_decide_frame[] = {
    0, 0, 0, 29,                        /* length: 6 + 9 + 8 + 6 */
    1, TG_MSG_DECIDE,                   /* version, type */
    0, 0, 1, 2,                         /* id 258 */
    TG_F_ENDPOINT, 0, 0, 0, 4, 'c', 'h', 'a', 't',
    TG_F_MODEL, 0, 0, 0, 3, 'q', 'w', 'n',
    TG_F_STREAM, 0, 0, 0, 1, 1,
    0xff, 0xff                          /* not part of the frame */
};


static void
test_header(void **unused)
{
    uint8_t       b[16] = { 0 };
    tg_frame_hdr  h;

    (void) unused;

    /* too short to say anything */
    assert_int_equal(tg_frame_header(b, 0, MAX, &h), TG_FRAME_AGAIN);
    memcpy(b, "\0\0\0", 3);
    assert_int_equal(tg_frame_header(b, 3, MAX, &h), TG_FRAME_AGAIN);

    /* a length below 6 is malformed at once */
    memcpy(b, "\0\0\0\5", 4);
    assert_int_equal(tg_frame_header(b, 4, MAX, &h), -TG_ERR_MALFORMED);
    memcpy(b, "\0\0\0\0", 4);
    assert_int_equal(tg_frame_header(b, 4, MAX, &h), -TG_ERR_MALFORMED);

    /* a length over the maximum is refused from its 4 bytes alone */
    tg_put_u32(b, MAX + 1);
    assert_int_equal(tg_frame_header(b, 4, MAX, &h), -TG_ERR_TOO_LARGE);
    tg_put_u32(b, 0xffffffff);
    assert_int_equal(tg_frame_header(b, 4, MAX, &h), -TG_ERR_TOO_LARGE);
    assert_int_equal(tg_frame_header(b, 4, TG_MAX_FRAME_LIMIT, &h),
                     -TG_ERR_TOO_LARGE);

    /* exactly the maximum is fine; the rest of the header must arrive */
    tg_put_u32(b, MAX);
    assert_int_equal(tg_frame_header(b, 4, MAX, &h), TG_FRAME_AGAIN);
    assert_int_equal(tg_frame_header(b, 9, MAX, &h), TG_FRAME_AGAIN);

    b[4] = 1;
    b[5] = TG_MSG_MODELS;
    tg_put_u32(b + 6, 0xdeadbeef);
    assert_int_equal(tg_frame_header(b, 10, MAX, &h), TG_FRAME_OK);
    assert_int_equal(h.length, MAX);
    assert_int_equal(h.version, 1);
    assert_int_equal(h.type, TG_MSG_MODELS);
    assert_int_equal(h.id, 0xdeadbeef);

    /* the smallest frame */
    tg_put_u32(b, 6);
    assert_int_equal(tg_frame_header(b, 10, MAX, &h), TG_FRAME_OK);
    assert_int_equal(h.length, 6);

    /* a wrong version, the id is still read for the ERROR */
    b[4] = 2;
    assert_int_equal(tg_frame_header(b, 10, MAX, &h), -TG_ERR_VERSION);
    assert_int_equal(h.id, 0xdeadbeef);
    b[4] = 0;
    assert_int_equal(tg_frame_header(b, 10, MAX, &h), -TG_ERR_VERSION);
}


static void
test_fields(void **unused)
{
    int            rc;
    uint8_t        frame[64];
    uint8_t        u8;
    uint32_t       u32;
    tg_field       f;
    tg_frame_hdr   h;
    tg_field_iter  it;

    (void) unused;

    memcpy(frame, tg_decide_frame, sizeof(tg_decide_frame));

    assert_int_equal(tg_frame_header(frame, sizeof(tg_decide_frame), MAX,
                                     &h), TG_FRAME_OK);
    assert_int_equal(h.length, 29);
    assert_int_equal(h.id, 258);

    tg_fields_init(&it, frame, &h);

    assert_int_equal(tg_fields_next(&it, &f), 1);
    assert_int_equal(f.key, TG_F_ENDPOINT);
    assert_int_equal(f.len, 4);
    assert_memory_equal(f.value, "chat", 4);
    assert_int_equal(tg_field_u32(&f, &u32), 0);    /* 4 bytes: a u32 */

    assert_int_equal(tg_fields_next(&it, &f), 1);
    assert_int_equal(f.key, TG_F_MODEL);
    assert_memory_equal(f.value, "qwn", 3);
    assert_int_equal(tg_field_u32(&f, &u32), -1);   /* 3 bytes */
    assert_int_equal(tg_field_u8(&f, &u8), -1);

    assert_int_equal(tg_fields_next(&it, &f), 1);
    assert_int_equal(f.key, TG_F_STREAM);
    assert_int_equal(tg_field_u8(&f, &u8), 0);
    assert_int_equal(u8, 1);

    rc = tg_fields_next(&it, &f);
    assert_int_equal(rc, 0);
    assert_int_equal(tg_fields_next(&it, &f), 0);
}


static void
test_fields_malformed(void **unused)
{
    uint8_t        frame[64];
    tg_field       f;
    tg_frame_hdr   h;
    tg_field_iter  it;

    (void) unused;

    memset(frame, 0, sizeof(frame));
    frame[4] = 1;
    frame[5] = TG_MSG_DECIDE;

    /* no fields at all */
    tg_put_u32(frame, 6);
    assert_int_equal(tg_frame_header(frame, 10, MAX, &h), TG_FRAME_OK);
    tg_fields_init(&it, frame, &h);
    assert_int_equal(tg_fields_next(&it, &f), 0);

    /* a field header cut short: 1 to 4 bytes left */
    for (uint32_t left = 1; left < TG_FIELD_HEADER_SIZE; left++) {
        tg_put_u32(frame, 6 + left);
        assert_int_equal(tg_frame_header(frame, 10, MAX, &h), TG_FRAME_OK);
        tg_fields_init(&it, frame, &h);
        assert_int_equal(tg_fields_next(&it, &f), -1);
    }

    /* a value running one byte past the end */
    tg_put_u32(frame, 6 + 5 + 3);
    frame[10] = TG_F_MODEL;
    tg_put_u32(frame + 11, 4);
    assert_int_equal(tg_frame_header(frame, 10, MAX, &h), TG_FRAME_OK);
    tg_fields_init(&it, frame, &h);
    assert_int_equal(tg_fields_next(&it, &f), -1);

    /* exactly to the end is fine */
    tg_put_u32(frame + 11, 3);
    tg_fields_init(&it, frame, &h);
    assert_int_equal(tg_fields_next(&it, &f), 1);
    assert_int_equal(tg_fields_next(&it, &f), 0);

    /* a huge length must not wrap around */
    tg_put_u32(frame + 11, 0xffffffff);
    tg_fields_init(&it, frame, &h);
    assert_int_equal(tg_fields_next(&it, &f), -1);
    tg_put_u32(frame + 11, 0xfffffffb);
    tg_fields_init(&it, frame, &h);
    assert_int_equal(tg_fields_next(&it, &f), -1);

    /* a good field, then a bad one */
    tg_put_u32(frame, 6 + 5 + 1 + 5 + 2);
    frame[10] = TG_F_STREAM;
    tg_put_u32(frame + 11, 1);
    frame[15] = 1;
    frame[16] = TG_F_ATTEMPT;
    tg_put_u32(frame + 17, 4);
    assert_int_equal(tg_frame_header(frame, 10, MAX, &h), TG_FRAME_OK);
    tg_fields_init(&it, frame, &h);
    assert_int_equal(tg_fields_next(&it, &f), 1);
    assert_int_equal(tg_fields_next(&it, &f), -1);
}


static void
test_unknown_fields_skipped(void **unused)
{
    int            seen;
    long           len;
    uint8_t        buf[256];
    tg_field       f;
    tg_builder     b;
    tg_frame_hdr   h;
    tg_field_iter  it;

    (void) unused;

    tg_build_begin(&b, buf, sizeof(buf), TG_MSG_DECIDE, 9);
    tg_build_str(&b, 200, "future", 6);
    tg_build_cstr(&b, TG_F_MODEL, "qwen");
    tg_build_str(&b, 255, "", 0);
    tg_build_u32(&b, 99, 7);
    tg_build_cstr(&b, TG_F_ENDPOINT, "chat");
    len = tg_build_end(&b);
    assert_true(len > 0);

    assert_int_equal(tg_frame_header(buf, (size_t) len, MAX, &h),
                     TG_FRAME_OK);
    tg_fields_init(&it, buf, &h);

    seen = 0;
    while (tg_fields_next(&it, &f) == 1) {
        switch (f.key) {
        case TG_F_MODEL:
            assert_memory_equal(f.value, "qwen", 4);
            seen |= 1;
            break;
        case TG_F_ENDPOINT:
            assert_memory_equal(f.value, "chat", 4);
            seen |= 2;
            break;
        default:
            /* skipped */
            break;
        }
    }

    assert_int_equal(seen, 3);
    assert_true(it.p == it.end);
}


static void
test_builder_round_trip(void **unused)
{
    long           len;
    uint8_t        buf[128], u8;
    uint32_t       u32;
    tg_field       f;
    tg_builder     b;
    tg_frame_hdr   h;
    tg_field_iter  it;

    (void) unused;

    tg_build_begin(&b, buf, sizeof(buf), TG_MSG_DECISION, 0x01020304);
    tg_build_u32(&b, TG_F_STATUS, 200);
    tg_build_u8(&b, TG_F_STREAM, 1);
    tg_build_cstr(&b, TG_F_PATH, "/v1/chat/completions");
    tg_build_str(&b, TG_F_REASON, "", 0);
    len = tg_build_end(&b);

    assert_int_equal(len, 10 + 9 + 6 + 25 + 5);
    assert_int_equal(tg_get_u32(buf), (uint32_t) len - 4);
    assert_int_equal(buf[4], TG_PROTO_VERSION);
    assert_int_equal(buf[5], TG_MSG_DECISION);
    assert_memory_equal(buf + 6, "\1\2\3\4", 4);
    assert_memory_equal(buf + 10, "\36\0\0\0\4\0\0\0\310", 9);

    assert_int_equal(tg_frame_header(buf, (size_t) len, MAX, &h),
                     TG_FRAME_OK);
    assert_int_equal(h.id, 0x01020304);

    tg_fields_init(&it, buf, &h);
    assert_int_equal(tg_fields_next(&it, &f), 1);
    assert_int_equal(tg_field_u32(&f, &u32), 0);
    assert_int_equal(u32, 200);
    assert_int_equal(tg_fields_next(&it, &f), 1);
    assert_int_equal(tg_field_u8(&f, &u8), 0);
    assert_int_equal(u8, 1);
    assert_int_equal(tg_fields_next(&it, &f), 1);
    assert_int_equal(f.len, 20);
    assert_int_equal(tg_fields_next(&it, &f), 1);
    assert_int_equal(f.key, TG_F_REASON);
    assert_int_equal(f.len, 0);
    assert_int_equal(tg_fields_next(&it, &f), 0);
}


static void
test_builder_overflow(void **unused)
{
    uint8_t     buf[64];
    tg_builder  b;

    (void) unused;

    /* not even a header */
    tg_build_begin(&b, buf, 9, TG_MSG_HELLO_OK, 0);
    assert_int_equal(tg_build_end(&b), -1);

    /* an empty frame fits in 10 bytes */
    tg_build_begin(&b, buf, 10, TG_MSG_HELLO_OK, 0);
    assert_int_equal(tg_build_end(&b), 10);
    assert_int_equal(tg_get_u32(buf), 6);

    /* a field that fits exactly, then one byte more */
    tg_build_begin(&b, buf, 10 + 5 + 4, TG_MSG_HELLO_OK, 0);
    tg_build_u32(&b, TG_F_PID, 1);
    assert_false(b.overflow);
    assert_int_equal(tg_build_end(&b), 19);

    tg_build_begin(&b, buf, 10 + 5 + 4, TG_MSG_HELLO_OK, 0);
    tg_build_u32(&b, TG_F_PID, 1);
    tg_build_u8(&b, TG_F_STREAM, 1);
    assert_true(b.overflow);
    assert_int_equal(tg_build_end(&b), -1);

    /* a field header that fits but not its value; later small ones too */
    tg_build_begin(&b, buf, 20, TG_MSG_HELLO_OK, 0);
    tg_build_cstr(&b, TG_F_SOFTWARE, "policyd/0.1");
    assert_true(b.overflow);
    tg_build_u8(&b, TG_F_STREAM, 1);
    assert_int_equal(tg_build_end(&b), -1);

    /* a huge length does not wrap */
    tg_build_begin(&b, buf, sizeof(buf), TG_MSG_HELLO_OK, 0);
    tg_build_str(&b, TG_F_SOFTWARE, buf, SIZE_MAX - 2);
    assert_int_equal(tg_build_end(&b), -1);
}


static void
test_u32_helpers(void **unused)
{
    uint8_t  b[4];

    (void) unused;

    tg_put_u32(b, 0x80ff0102);
    assert_memory_equal(b, "\x80\xff\x01\x02", 4);
    assert_int_equal(tg_get_u32(b), 0x80ff0102);
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header),
        cmocka_unit_test(test_fields),
        cmocka_unit_test(test_fields_malformed),
        cmocka_unit_test(test_unknown_fields_skipped),
        cmocka_unit_test(test_builder_round_trip),
        cmocka_unit_test(test_builder_overflow),
        cmocka_unit_test(test_u32_helpers),
    };

    return cmocka_run_group_tests_name("proto", tests, NULL, NULL);
}
