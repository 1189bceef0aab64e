
/*
 * Copyright (C) The Tailgate authors
 *
 * traceparent: the module's reader of a client's traceparent header
 * (ngx_tailgate_traceparent.c) against policyd's reader of the one a
 * REPORT carries (policyd/src/otlp_trace.c).
 *
 * Input: the header's value, in a buffer of exactly its size.  Checked
 * besides the sanitizers: both sides accept and refuse the same values and
 * read the same ids and flags; an accepted value is 55 bytes or more, its
 * ids not all zero; written back as version 00 it is 55 bytes of
 * lower-case hex and dashes that both read to the same ids again.
 */


#include "fuzz_ngx.h"
#include "ngx_tailgate_traceparent.h"

#include "otlp_span.h"


int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_ngx_init();

    return 0;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    u_char     flags, flags2, *end;
    uint8_t    ptrace[16], pspan[8], pflags;
    ngx_int_t  rc;
    size_t     i;
    u_char     trace[16], span[8], trace2[16], span2[8];
    u_char     out[NGX_TAILGATE_TRACEPARENT_LEN];

    rc = ngx_tailgate_traceparent_parse(data, size, trace, span, &flags);

    FUZZ_CHECK(rc == NGX_OK || rc == NGX_DECLINED);

    /* the two readers agree */

    FUZZ_CHECK((tg_otlp_traceparent((const char *) data, size, ptrace, pspan,
                                    &pflags) == 0) == (rc == NGX_OK));

    if (rc != NGX_OK) {
        return 0;
    }

    FUZZ_CHECK(size >= NGX_TAILGATE_TRACEPARENT_LEN);
    FUZZ_CHECK(memcmp(trace, ptrace, 16) == 0);
    FUZZ_CHECK(memcmp(span, pspan, 8) == 0);
    FUZZ_CHECK(flags == pflags);

    /* what the module sends on is version 00, and reads back the same */

    end = ngx_tailgate_traceparent_write(out, trace, span, flags);
    FUZZ_CHECK(end - out == NGX_TAILGATE_TRACEPARENT_LEN);

    for (i = 0; i < NGX_TAILGATE_TRACEPARENT_LEN; i++) {
        FUZZ_CHECK((out[i] >= '0' && out[i] <= '9')
                   || (out[i] >= 'a' && out[i] <= 'f') || out[i] == '-');
    }

    FUZZ_CHECK(ngx_tailgate_traceparent_parse(out, sizeof(out), trace2, span2,
                                              &flags2) == NGX_OK);
    FUZZ_CHECK(memcmp(trace, trace2, 16) == 0 && memcmp(span, span2, 8) == 0
               && flags == flags2);
    FUZZ_CHECK(tg_otlp_traceparent((const char *) out, sizeof(out), ptrace,
                                   pspan, &pflags) == 0);

    return 0;
}
