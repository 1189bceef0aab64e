
/*
 * Copyright (C) The Tailgate authors
 *
 * usage: the reader of providers' answers (ngx_tailgate_usage.c), as the
 * meter feeds it from the body filter: a JSON answer or an event stream,
 * in the pieces the reads happen to make.
 *
 * Input: one byte of flags (event stream, Responses deltas, watch for the
 * usage-only chunk; the rest of the byte cuts the answer into pieces),
 * then the answer.  Checked besides the sanitizers: every stop is inside
 * the piece; the reader, resumable, comes to the same usage, text bytes and
 * events (and the same usage-only verdicts) whatever the pieces - once
 * whole, once cut; and the numbers stay within what it may keep.
 */


#include "fuzz_ngx.h"
#include "ngx_tailgate_usage.h"


#define FUZZ_USAGE_EVENTS  64


typedef struct {
    ngx_uint_t                   events;
    ngx_uint_t                   keeps;
    u_char                       usage_only[FUZZ_USAGE_EVENTS];
} fuzz_usage_seen_t;


static void fuzz_usage_read(ngx_tailgate_usage_t *u, u_char *p, u_char *end,
    size_t piece, fuzz_usage_seen_t *seen);


int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_ngx_init();
    return 0;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    u_char                *p, *end;
    size_t                 piece;
    ngx_uint_t             sse, deltas, watch;
    fuzz_usage_seen_t      whole, cut;
    ngx_tailgate_usage_t   a, b;

    if (size < 1) {
        return 0;
    }

    sse = data[0] & 1;
    deltas = (data[0] >> 1) & 1;
    watch = (data[0] >> 2) & 1;
    piece = 1 + (data[0] >> 3);

    p = (u_char *) data + 1;
    end = (u_char *) data + size;

    ngx_memzero(&whole, sizeof(whole));
    ngx_memzero(&cut, sizeof(cut));

    ngx_tailgate_usage_init(&a, sse, deltas, watch);
    ngx_tailgate_usage_init(&b, sse, deltas, watch);

    fuzz_usage_read(&a, p, end, (size_t) (end - p), &whole);
    fuzz_usage_read(&b, p, end, piece, &cut);

    FUZZ_CHECK(a.found == b.found);
    FUZZ_CHECK(a.input == b.input && a.output == b.output);
    FUZZ_CHECK(a.total == b.total && a.cached == b.cached);
    FUZZ_CHECK(a.reasoning == b.reasoning && a.audio_ms == b.audio_ms);
    FUZZ_CHECK(a.text_bytes == b.text_bytes);
    FUZZ_CHECK(a.model_len == b.model_len
               && ngx_memcmp(a.model, b.model, a.model_len) == 0);
    FUZZ_CHECK(whole.events == cut.events && whole.keeps == cut.keeps);
    FUZZ_CHECK(ngx_memcmp(whole.usage_only, cut.usage_only,
                          sizeof(whole.usage_only)) == 0);

    FUZZ_CHECK(a.model_len <= NGX_TAILGATE_USAGE_MODEL);
    FUZZ_CHECK(a.text_bytes <= (uint64_t) size);
    FUZZ_CHECK(a.depth <= NGX_TAILGATE_USAGE_DEPTH);

    /* only an event stream that is watched stops early */
    if (!(sse && watch)) {
        FUZZ_CHECK(whole.events == 0 && whole.keeps == 0);
    }

    return 0;
}


/* the answer in pieces of at most piece bytes, each to the end */

static void
fuzz_usage_read(ngx_tailgate_usage_t *u, u_char *p, u_char *end,
    size_t piece, fuzz_usage_seen_t *seen)
{
    u_char                       *last, *q;
    ngx_tailgate_usage_signal_e   signal;

    while (p < end) {
        last = (size_t) (end - p) > piece ? p + piece : end;

        while (p < last) {
            q = ngx_tailgate_usage_scan(u, p, last, &signal);

            FUZZ_CHECK(q > p || (q == p && p == last));
            FUZZ_CHECK(q <= last);
            FUZZ_CHECK(signal == NGX_TAILGATE_USAGE_MORE ? q == last : 1);

            if (signal == NGX_TAILGATE_USAGE_EVENT_END) {
                if (seen->events < FUZZ_USAGE_EVENTS) {
                    seen->usage_only[seen->events] = u->usage_only;
                }

                seen->events++;

            } else if (signal == NGX_TAILGATE_USAGE_KEEP) {
                seen->keeps++;
            }

            p = q;
        }
    }
}
