
/*
 * Copyright (C) The Tailgate authors
 *
 * TEMPLATE: the start of a harness for a parser of the module (README.md,
 * "Adding a harness").  Say here what code it runs, as which caller calls
 * it, what the input is, and what it checks besides the sanitizers.
 *
 * In fuzz/Makefile:
 *
 *   FUZZ_NGX_TARGETS += NAME
 *   NAME_MODULE      := ngx_tailgate_FILE ...
 *
 * For policyd code: FUZZ_POLICYD_TARGETS and NAME_POLICYD, include
 * policyd's headers and "fuzz_check.h" instead (harness/policyd_frames.c).
 */


#include "fuzz_ngx.h"           /* pools, the log, the clock, FUZZ_CHECK */

/* the header that declares the code under test, e.g. */
#include "ngx_tailgate_scan.h"


int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_ngx_init();

    /* configuration the code reads, built once, as its directive would */

    return 0;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    u_char      *p, *end;
    ngx_pool_t  *pool;

    pool = fuzz_ngx_pool();

    /*
     * libFuzzer's copy of the input is exactly size bytes: a read past it
     * is caught.  Parts of an input that the code gets apart (a header
     * and a body) go into buffers of their own, of exactly their size.
     */

    p = (u_char *) data;
    end = p + size;

    /*
     * rc = ngx_tailgate_PARSE(pool, p, end, &result);
     *
     * FUZZ_CHECK() what the callers rely on: results inside the input,
     * lengths within their limits, what an accepted input parses to
     * again after the code rewrote it, ...
     */

    (void) end;

    ngx_destroy_pool(pool);

    return 0;
}
