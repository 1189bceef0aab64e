
/*
 * Copyright (C) The Tailgate authors
 *
 * The JSON request scan fed in pieces, ngx_tailgate_json_feed_start()/
 * _feed()/_finish() (ngx_tailgate_json.c), as the body reader feeds it a
 * body nginx did not keep in one run of memory (ngx_tailgate_body.c),
 * against the scan of the same body in one run, ngx_tailgate_json_scan().
 *
 * The input: two bytes that say how the body is cut (the first: a byte at
 * a time, pieces of 1 to 16 bytes, of 1 to 4096, or in two at a point the
 * second byte says; the second: the seed of the lengths), then the body.
 * Each piece is a buffer of its own, exactly its size, so that a read
 * past a piece is a sanitizer report.
 *
 * Checked: both accept or both refuse; a refusal has the same error row
 * and the same argument; an acceptance the same facts: the model (up to
 * the NGX_TAILGATE_MAX_ROUTE_NAME + 1 bytes the pieces keep), where its
 * token is in the body, stream, tools, include_usage, the keys' bits,
 * keys_unknown and the characters of a string "input".
 */


#include "fuzz_ngx.h"
#include "ngx_tailgate_scan.h"

#include <string.h>


#define FUZZ_MODEL_KEPT  257


int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_ngx_init();
    return 0;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    u_char                     *p, *end, *piece;
    size_t                      n, len, chars;
    uint32_t                    seed;
    ngx_int_t                   rc, frc;
    ngx_uint_t                  mode;
    ngx_pool_t                 *pool;
    ngx_tailgate_facts_t        facts, ffacts;
    ngx_tailgate_json_feed_t   *jf;
    ngx_tailgate_scan_error_t   error, ferror;

    if (size < 2) {
        return 0;
    }

    mode = data[0] & 3;
    seed = data[1] * 2654435761u + 1;
    data += 2;
    size -= 2;

    pool = fuzz_ngx_pool();

    /* in one run: libFuzzer's copy, exactly size bytes */

    p = (u_char *) data;
    end = p + size;

    ngx_memzero(&facts, sizeof(ngx_tailgate_facts_t));
    error.err = NGX_TAILGATE_ERRS;
    error.arg = NULL;

    rc = ngx_tailgate_json_scan(pool, p, end, &facts, &error);

    /* in pieces */

    ngx_memzero(&ffacts, sizeof(ngx_tailgate_facts_t));
    ferror.err = NGX_TAILGATE_ERRS;
    ferror.arg = NULL;

    jf = ngx_tailgate_json_feed_start(pool, &ffacts, &ferror);
    FUZZ_CHECK(jf != NULL);

    frc = NGX_OK;

    while (p < end && frc == NGX_OK) {
        switch (mode) {
        case 0:
            len = 1;
            break;
        case 1:
            len = 1 + seed % 16;
            break;
        case 2:
            len = 1 + seed % 4096;
            break;
        default:
            len = (p == (u_char *) data) ? data[-1] : size;
        }

        seed = seed * 1103515245u + 12345;
        len = ngx_min(ngx_max(len, 1), (size_t) (end - p));

        piece = malloc(len);
        FUZZ_CHECK(piece != NULL);
        ngx_memcpy(piece, p, len);

        frc = ngx_tailgate_json_feed(jf, piece, piece + len);

        free(piece);
        p += len;
    }

    if (frc == NGX_OK) {
        frc = ngx_tailgate_json_feed_finish(jf);
    }

    FUZZ_CHECK(rc == NGX_OK || rc == NGX_DECLINED);
    FUZZ_CHECK(frc == rc);

    if (rc == NGX_DECLINED) {
        FUZZ_CHECK(ferror.err == error.err);
        FUZZ_CHECK(ferror.arg == error.arg
                   || (ferror.arg && error.arg
                       && strcmp(ferror.arg, error.arg) == 0));

    } else {
        n = ngx_min(facts.model.len, FUZZ_MODEL_KEPT);

        FUZZ_CHECK(ffacts.model.len == n);
        FUZZ_CHECK(ngx_memcmp(ffacts.model.data, facts.model.data, n) == 0);
        FUZZ_CHECK(ffacts.model_start == ffacts.model.data);
        FUZZ_CHECK(ffacts.model_from == facts.model_start - (u_char *) data);
        FUZZ_CHECK(ffacts.model_to == facts.model_end - (u_char *) data);
        FUZZ_CHECK(ffacts.stream == facts.stream);
        FUZZ_CHECK(ffacts.tools == facts.tools);
        FUZZ_CHECK(ffacts.include_usage == facts.include_usage);
        FUZZ_CHECK(ffacts.keys == facts.keys);
        FUZZ_CHECK(ffacts.keys_unknown == facts.keys_unknown);
        FUZZ_CHECK(ffacts.input_start == NULL);

        chars = facts.input_start
                ? ngx_tailgate_json_chars(facts.input_start, facts.input_end)
                : 0;

        FUZZ_CHECK(ffacts.input_chars == chars);
    }

    ngx_destroy_pool(pool);

    return 0;
}
