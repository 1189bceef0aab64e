
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
 *
 * The reader as built takes whole tokens at a time; the same file built
 * with -DNGX_TAILGATE_USAGE_BYTEWISE (its functions renamed *_bytewise,
 * fuzz/Makefile) takes a byte at a time.  Both read the same pieces and
 * must stop at the same places with the same signals and come to the same
 * state.
 */


#include "fuzz_ngx.h"
#include "ngx_tailgate_usage.h"


#define FUZZ_USAGE_EVENTS  64


typedef u_char *(*fuzz_usage_scan_pt)(ngx_tailgate_usage_t *u, u_char *p,
    u_char *end, ngx_tailgate_usage_signal_e *signal);


typedef struct {
    ngx_uint_t                   events;
    ngx_uint_t                   keeps;
    u_char                       usage_only[FUZZ_USAGE_EVENTS];

    /* where each signal came, and which */
    ngx_uint_t                   stops;
    size_t                       stop_at[FUZZ_USAGE_EVENTS];
    u_char                       stop_signal[FUZZ_USAGE_EVENTS];
} fuzz_usage_seen_t;


/* the byte-at-a-time build of ngx_tailgate_usage.c */
void ngx_tailgate_usage_init_bytewise(ngx_tailgate_usage_t *u,
    ngx_uint_t sse, ngx_uint_t deltas, ngx_uint_t watch);
u_char *ngx_tailgate_usage_scan_bytewise(ngx_tailgate_usage_t *u, u_char *p,
    u_char *end, ngx_tailgate_usage_signal_e *signal);


static void fuzz_usage_read(fuzz_usage_scan_pt scan, ngx_tailgate_usage_t *u,
    u_char *p, u_char *end, size_t piece, fuzz_usage_seen_t *seen);
static void fuzz_usage_same(ngx_tailgate_usage_t *a,
    fuzz_usage_seen_t *sa, ngx_tailgate_usage_t *b, fuzz_usage_seen_t *sb);


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
    fuzz_usage_seen_t      whole, cut, bwhole, bcut;
    ngx_tailgate_usage_t   a, b, c, d;

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
    ngx_memzero(&bwhole, sizeof(bwhole));
    ngx_memzero(&bcut, sizeof(bcut));

    ngx_tailgate_usage_init(&a, sse, deltas, watch);
    ngx_tailgate_usage_init(&b, sse, deltas, watch);
    ngx_tailgate_usage_init_bytewise(&c, sse, deltas, watch);
    ngx_tailgate_usage_init_bytewise(&d, sse, deltas, watch);

    fuzz_usage_read(ngx_tailgate_usage_scan, &a, p, end, (size_t) (end - p),
                    &whole);
    fuzz_usage_read(ngx_tailgate_usage_scan, &b, p, end, piece, &cut);
    fuzz_usage_read(ngx_tailgate_usage_scan_bytewise, &c, p, end,
                    (size_t) (end - p), &bwhole);
    fuzz_usage_read(ngx_tailgate_usage_scan_bytewise, &d, p, end, piece,
                    &bcut);

    /* the fast reader and the bytewise one, read alike */
    fuzz_usage_same(&a, &whole, &c, &bwhole);
    fuzz_usage_same(&b, &cut, &d, &bcut);

    /* whatever the pieces (where the signals come differs) */
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
fuzz_usage_read(fuzz_usage_scan_pt scan, ngx_tailgate_usage_t *u,
    u_char *p, u_char *end, size_t piece, fuzz_usage_seen_t *seen)
{
    u_char                       *start, *last, *q;
    ngx_tailgate_usage_signal_e   signal;

    start = p;

    while (p < end) {
        last = (size_t) (end - p) > piece ? p + piece : end;

        while (p < last) {
            q = scan(u, p, last, &signal);

            if (signal != NGX_TAILGATE_USAGE_MORE) {
                if (seen->stops < FUZZ_USAGE_EVENTS) {
                    seen->stop_at[seen->stops] = q - start;
                    seen->stop_signal[seen->stops] = (u_char) signal;
                }

                seen->stops++;
            }

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


/* two readers of the same bytes in the same pieces: the same in all */

static void
fuzz_usage_same(ngx_tailgate_usage_t *a, fuzz_usage_seen_t *sa,
    ngx_tailgate_usage_t *b, fuzz_usage_seen_t *sb)
{
    FUZZ_CHECK(sa->stops == sb->stops);
    FUZZ_CHECK(ngx_memcmp(sa->stop_at, sb->stop_at, sizeof(sa->stop_at))
               == 0);
    FUZZ_CHECK(ngx_memcmp(sa->stop_signal, sb->stop_signal,
                          sizeof(sa->stop_signal)) == 0);
    FUZZ_CHECK(sa->events == sb->events && sa->keeps == sb->keeps);
    FUZZ_CHECK(ngx_memcmp(sa->usage_only, sb->usage_only,
                          sizeof(sa->usage_only)) == 0);

    FUZZ_CHECK(a->found == b->found);
    FUZZ_CHECK(a->input == b->input && a->output == b->output);
    FUZZ_CHECK(a->total == b->total && a->cached == b->cached);
    FUZZ_CHECK(a->reasoning == b->reasoning && a->audio_ms == b->audio_ms);
    FUZZ_CHECK(a->text_bytes == b->text_bytes && a->events == b->events);
    FUZZ_CHECK(a->model_len == b->model_len
               && ngx_memcmp(a->model, b->model, a->model_len) == 0);

    /* where each is in the JSON and in the lines: the next byte's reading */
    FUZZ_CHECK(a->state == b->state && a->depth == b->depth);
    FUZZ_CHECK(a->escape == b->escape && a->hex == b->hex);
    FUZZ_CHECK(a->number == b->number && a->key_len == b->key_len);
    FUZZ_CHECK(a->deep == b->deep && a->usage_level == b->usage_level);
    FUZZ_CHECK(a->line_start == b->line_start && a->after_cr == b->after_cr);
    FUZZ_CHECK(a->data_line == b->data_line && a->skip_line == b->skip_line);
    FUZZ_CHECK(a->kept == b->kept && a->usage_only == b->usage_only);
}
