
/*
 * Copyright (C) The Tailgate authors
 *
 * traceparent = version "-" trace-id "-" parent-id "-" trace-flags, in
 * lower-case hex (W3C Trace Context, level 1).
 */


#include "ngx_tailgate_traceparent.h"


static ngx_int_t ngx_tailgate_unhex(const u_char *p, size_t len,
    u_char *out);
static ngx_uint_t ngx_tailgate_all_zero(const u_char *p, size_t len);
static u_char *ngx_tailgate_hex(u_char *p, const u_char *bytes, size_t n);


ngx_int_t
ngx_tailgate_traceparent_parse(const u_char *p, size_t len, u_char *trace_id,
    u_char *span_id, u_char *flags)
{
    u_char  version;

    if (len < NGX_TAILGATE_TRACEPARENT_LEN
        || p[2] != '-' || p[35] != '-' || p[52] != '-')
    {
        return NGX_DECLINED;
    }

    if (ngx_tailgate_unhex(p, 2, &version) != NGX_OK || version == 0xff) {
        return NGX_DECLINED;
    }

    /* a later version may say more, after a '-' */

    if ((version == 0 && len != NGX_TAILGATE_TRACEPARENT_LEN)
        || (len > NGX_TAILGATE_TRACEPARENT_LEN
            && p[NGX_TAILGATE_TRACEPARENT_LEN] != '-'))
    {
        return NGX_DECLINED;
    }

    if (ngx_tailgate_unhex(p + 3, 32, trace_id) != NGX_OK
        || ngx_tailgate_unhex(p + 36, 16, span_id) != NGX_OK
        || ngx_tailgate_unhex(p + 53, 2, flags) != NGX_OK
        || ngx_tailgate_all_zero(trace_id, 16)
        || ngx_tailgate_all_zero(span_id, 8))
    {
        return NGX_DECLINED;
    }

    return NGX_OK;
}


u_char *
ngx_tailgate_traceparent_write(u_char *p, const u_char *trace_id,
    const u_char *span_id, u_char flags)
{
    p = ngx_cpymem(p, "00-", 3);
    p = ngx_tailgate_hex(p, trace_id, 16);
    *p++ = '-';
    p = ngx_tailgate_hex(p, span_id, 8);
    *p++ = '-';

    return ngx_tailgate_hex(p, &flags, 1);
}


/* lower-case, as W3C Trace Context writes it */

static u_char *
ngx_tailgate_hex(u_char *p, const u_char *bytes, size_t n)
{
    size_t  i;

    static const u_char  digits[] = "0123456789abcdef";

    for (i = 0; i < n; i++) {
        *p++ = digits[bytes[i] >> 4];
        *p++ = digits[bytes[i] & 0x0f];
    }

    return p;
}


static ngx_int_t
ngx_tailgate_unhex(const u_char *p, size_t len, u_char *out)
{
    size_t      i;
    ngx_uint_t  hi, lo;

    for (i = 0; i < len; i += 2) {

        if (p[i] >= '0' && p[i] <= '9') {
            hi = p[i] - '0';
        } else if (p[i] >= 'a' && p[i] <= 'f') {
            hi = p[i] - 'a' + 10;
        } else {
            return NGX_DECLINED;
        }

        if (p[i + 1] >= '0' && p[i + 1] <= '9') {
            lo = p[i + 1] - '0';
        } else if (p[i + 1] >= 'a' && p[i + 1] <= 'f') {
            lo = p[i + 1] - 'a' + 10;
        } else {
            return NGX_DECLINED;
        }

        out[i / 2] = (u_char) (hi << 4 | lo);
    }

    return NGX_OK;
}


static ngx_uint_t
ngx_tailgate_all_zero(const u_char *p, size_t len)
{
    size_t  i;

    for (i = 0; i < len; i++) {
        if (p[i] != 0) {
            return 0;
        }
    }

    return 1;
}
