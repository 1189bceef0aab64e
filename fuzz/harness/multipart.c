
/*
 * Copyright (C) The Tailgate authors
 *
 * The module's multipart/form-data field finder (ngx_tailgate_multipart.c)
 * as ngx_tailgate_body_classify() calls it for /v1/audio/transcriptions.
 *
 * The input is the request's Content-Type value, a newline, and the body:
 *
 *     multipart/form-data; boundary=XyZ
 *     --XyZ\r\nContent-Disposition: form-data; name="model"\r\n\r\n...
 *
 * An input without a newline is a body sent without Content-Type.  The
 * value and the body each get a buffer of their own, of exactly their
 * size, so that a read past either is caught.  nginx never gives a header
 * value with NUL, CR or LF in it: such inputs are not tried.
 *
 * The same body is then scanned piece by piece (ngx_tailgate_multipart_
 * feed(), as for a body in a file or in chunks), cut where the input's
 * own bytes say, each piece in a buffer of its own: it must agree with
 * the whole - the same verdict, the same error, the same model at the same
 * offsets - except where it keeps less than the whole scan (a part's
 * headers over 8 KB), and it never keeps more than a model's bytes.
 */


#include "fuzz_ngx.h"
#include "ngx_tailgate_scan.h"

#include <string.h>


static void fuzz_pieces(ngx_http_request_t *r, u_char *body, size_t blen,
    ngx_int_t whole, ngx_tailgate_facts_t *wf, ngx_tailgate_scan_error_t *we);


int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_ngx_init();
    return 0;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    u_char                *nl, *body, *end, *value;
    size_t                 vlen, blen;
    ngx_int_t              rc;
    ngx_pool_t            *pool;
    ngx_table_elt_t        content_type;
    ngx_connection_t       c;
    ngx_http_request_t     r;
    ngx_tailgate_scan_error_t  error;
    ngx_tailgate_facts_t   facts;

    nl = memchr(data, '\n', size);

    if (nl) {
        vlen = nl - data;

        if (memchr(data, '\0', vlen) || memchr(data, '\r', vlen)) {
            return 0;
        }

    } else {
        vlen = 0;
    }

    pool = fuzz_ngx_pool();

    ngx_memzero(&r, sizeof(ngx_http_request_t));
    ngx_memzero(&c, sizeof(ngx_connection_t));
    ngx_memzero(&content_type, sizeof(ngx_table_elt_t));

    c.log = &fuzz_ngx_log;
    c.pool = pool;
    r.connection = &c;
    r.pool = pool;

    value = NULL;

    if (nl) {
        value = malloc(vlen ? vlen : 1);
        FUZZ_CHECK(value != NULL);
        ngx_memcpy(value, data, vlen);

        ngx_str_set(&content_type.key, "Content-Type");
        content_type.value.data = value;
        content_type.value.len = vlen;
        content_type.lowcase_key = (u_char *) "content-type";
        content_type.hash = 1;

        r.headers_in.content_type = &content_type;

        blen = size - vlen - 1;
        body = malloc(blen ? blen : 1);
        FUZZ_CHECK(body != NULL);
        ngx_memcpy(body, nl + 1, blen);

    } else {
        blen = size;
        body = malloc(blen ? blen : 1);
        FUZZ_CHECK(body != NULL);
        ngx_memcpy(body, data, blen);
    }

    end = body + blen;

    ngx_memzero(&facts, sizeof(ngx_tailgate_facts_t));
    error.err = NGX_TAILGATE_ERRS;
    error.arg = NULL;

    rc = ngx_tailgate_multipart_scan(&r, body, end, &facts, &error);

    FUZZ_CHECK(rc == NGX_OK || rc == NGX_DECLINED);

    if (rc == NGX_DECLINED) {
        /* the client is always told why: a row of the error table */
        FUZZ_CHECK(error.err < NGX_TAILGATE_ERRS);

    } else {
        FUZZ_CHECK(facts.model_start != NULL);
        FUZZ_CHECK(facts.model_start >= body && facts.model_end <= end);
        FUZZ_CHECK(facts.model_start <= facts.model_end);
        FUZZ_CHECK(facts.model.data == facts.model_start);
        FUZZ_CHECK(facts.model.len
                   == (size_t) (facts.model_end - facts.model_start));
        FUZZ_CHECK(facts.model.len > 0);

        /* the value ends at a delimiter, "\r\n--" and the boundary */
        FUZZ_CHECK(end - facts.model_end >= 4);
        FUZZ_CHECK(ngx_strncmp(facts.model_end, "\r\n--", 4) == 0);
    }

    fuzz_pieces(&r, body, blen, rc, &facts, &error);

    ngx_destroy_pool(pool);
    free(body);
    free(value);

    return 0;
}


static void
fuzz_pieces(ngx_http_request_t *r, u_char *body, size_t blen, ngx_int_t whole,
    ngx_tailgate_facts_t *wf, ngx_tailgate_scan_error_t *we)
{
    u_char                    *piece;
    size_t                     at, n, seed;
    ngx_int_t                  rc;
    ngx_tailgate_facts_t       facts;
    ngx_tailgate_multipart_t  *mp;
    ngx_tailgate_scan_error_t  error;

    ngx_memzero(&facts, sizeof(ngx_tailgate_facts_t));
    error.err = NGX_TAILGATE_ERRS;
    error.arg = NULL;

    mp = ngx_tailgate_multipart_start(r, &facts, &error, &rc);

    if (mp == NULL) {
        FUZZ_CHECK(rc == NGX_DECLINED && whole == NGX_DECLINED);
        FUZZ_CHECK(error.err == we->err);
        return;
    }

    /* cut points from the body's own bytes: 1 to 64 bytes a piece */

    seed = blen;

    for (at = 0; at < blen && rc == NGX_OK; at += n) {
        seed = seed * 31 + body[at];
        n = ngx_min(1 + seed % 64, blen - at);

        piece = malloc(n);
        FUZZ_CHECK(piece != NULL);
        ngx_memcpy(piece, body + at, n);

        rc = ngx_tailgate_multipart_feed(mp, piece, piece + n);
        free(piece);
    }

    if (rc == NGX_OK) {
        rc = ngx_tailgate_multipart_finish(mp);
    }

    FUZZ_CHECK(rc == NGX_OK || rc == NGX_DECLINED);

    if (rc != whole || (rc == NGX_DECLINED && error.err != we->err)) {
        /* the one bound the whole scan does not have */
        FUZZ_CHECK(rc == NGX_DECLINED
                   && error.err == NGX_TAILGATE_ERR_FORM_HEADER
                   && blen > 8192);
        return;
    }

    if (rc == NGX_OK) {
        FUZZ_CHECK(facts.model_from == wf->model_start - body);
        FUZZ_CHECK(facts.model_to == wf->model_end - body);
        FUZZ_CHECK(facts.stream == wf->stream);

        if (wf->model.len <= 256) {
            FUZZ_CHECK(facts.model.len == wf->model.len);
            FUZZ_CHECK(ngx_strncmp(facts.model.data, wf->model.data,
                                   wf->model.len) == 0);

        } else {
            FUZZ_CHECK(facts.model.len > 256);
        }
    }
}
