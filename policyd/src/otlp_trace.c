/*
 * The trace context a REPORT carries (docs/protocol.md, "Traces"): the
 * W3C traceparent and the span ids, read and checked.  Pure: the unit
 * tests and the fuzzer call it.
 */

#include <string.h>

#include "otlp_span.h"


static int tg_unhex(const char *s, size_t len, uint8_t *out);


int
tg_otlp_traceparent(const char *s, size_t len, uint8_t trace_id[16],
    uint8_t span_id[8], uint8_t *flags)
{
    uint8_t  version, f;
    size_t   i;
    bool     zero;

    /* version 00 is exactly 55 bytes; later ones may say more after '-' */

    if (len < 55 || s[2] != '-' || s[35] != '-' || s[52] != '-') {
        return -1;
    }

    if (tg_unhex(s, 2, &version) != 0 || version == 0xff
        || (version == 0 && len != 55) || (len > 55 && s[55] != '-'))
    {
        return -1;
    }

    if (tg_unhex(s + 3, 32, trace_id) != 0
        || tg_otlp_span_id(s + 36, 16, span_id) != 0
        || tg_unhex(s + 53, 2, &f) != 0)
    {
        return -1;
    }

    zero = true;

    for (i = 0; i < 16; i++) {
        zero = zero && trace_id[i] == 0;
    }

    if (zero) {
        return -1;
    }

    *flags = f;

    return 0;
}


int
tg_otlp_span_id(const char *s, size_t len, uint8_t id[8])
{
    size_t  i;
    bool    zero;

    if (len != 16 || tg_unhex(s, 16, id) != 0) {
        return -1;
    }

    zero = true;

    for (i = 0; i < 8; i++) {
        zero = zero && id[i] == 0;
    }

    return zero ? -1 : 0;
}


int
tg_otlp_trace_read(tg_otlp_trace *t, const uint8_t *frame,
    const tg_frame_hdr *h)
{
    int            rc;
    size_t         i;
    uint8_t        u8;
    uint64_t       ms;
    tg_field       f;
    tg_field_iter  it;

    memset(t, 0, sizeof(*t));

    tg_fields_init(&it, frame, h);

    while ((rc = tg_fields_next(&it, &f)) == 1) {
        switch (f.key) {

        case TG_F_TRACEPARENT:
            t->present = tg_otlp_traceparent((const char *) f.value, f.len,
                                             t->trace_id, t->span_id,
                                             &t->flags) == 0;
            break;

        case TG_F_PARENT_SPAN:
            t->has_parent = tg_otlp_span_id((const char *) f.value, f.len,
                                            t->parent_span) == 0;
            break;

        case TG_F_CLIENT_SPAN:
            t->has_client = tg_otlp_span_id((const char *) f.value, f.len,
                                            t->client_span) == 0;
            break;

        case TG_F_START_MS:
            ms = 0;

            for (i = 0; i < f.len && i < 16; i++) {
                if (f.value[i] < '0' || f.value[i] > '9') {
                    break;
                }
                ms = ms * 10 + (uint64_t) (f.value[i] - '0');
            }

            t->start_ms = (i == f.len && f.len > 0) ? ms : 0;
            break;

        case TG_F_TRACE_FINAL:
            if (tg_field_u8(&f, &u8) != 0) {
                return -1;
            }
            t->final = (u8 != 0);
            break;

        default:
            break;
        }
    }

    if (rc < 0) {
        return -1;
    }

    /* without the request's span or its start, there is no tree to hang it */
    if (!t->has_parent || t->start_ms == 0) {
        t->present = false;
    }

    return 0;
}


/* lower-case hex only, as W3C Trace Context says */

static int
tg_unhex(const char *s, size_t len, uint8_t *out)
{
    size_t  i;
    int     d[2];

    for (i = 0; i < len; i += 2) {
        for (int k = 0; k < 2; k++) {
            char  c = s[i + k];

            if (c >= '0' && c <= '9') {
                d[k] = c - '0';
            } else if (c >= 'a' && c <= 'f') {
                d[k] = c - 'a' + 10;
            } else {
                return -1;
            }
        }

        out[i / 2] = (uint8_t) (d[0] << 4 | d[1]);
    }

    return 0;
}
