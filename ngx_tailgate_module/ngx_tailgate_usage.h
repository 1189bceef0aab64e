
/*
 * Copyright (C) The Tailgate authors
 *
 * Usage read from a provider's answer as its bytes pass (a leaf: bytes in,
 * numbers out; ngx_tailgate_filter.c feeds it).
 */


#ifndef _NGX_TAILGATE_USAGE_H_INCLUDED_
#define _NGX_TAILGATE_USAGE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


#define NGX_TAILGATE_USAGE_MODEL     128
#define NGX_TAILGATE_USAGE_DEPTH     16     /* nesting followed */


/* what ngx_tailgate_usage_scan() stopped for */
typedef enum {
    NGX_TAILGATE_USAGE_MORE = 0,    /* the bytes are used up */
    NGX_TAILGATE_USAGE_KEEP,        /* the current event is not usage-only */
    NGX_TAILGATE_USAGE_EVENT_END    /* an event ended; see usage_only */
} ngx_tailgate_usage_signal_e;


typedef struct {
    /* what the answer said, the last it said of each */
    uint64_t                     input;
    uint64_t                     output;
    uint64_t                     total;
    uint64_t                     cached;
    uint64_t                     reasoning;
    uint64_t                     audio_ms;
    uint64_t                     text_bytes;     /* of answer text */
    uint64_t                     events;         /* of a stream, ended */
    size_t                       model_len;
    u_char                       model[NGX_TAILGATE_USAGE_MODEL];

    unsigned                     found:1;        /* a usage with numbers */

    /* how to read */
    unsigned                     sse:1;          /* an event stream */
    unsigned                     deltas:1;       /* text only in "delta" */
    unsigned                     watch:1;        /* signal KEEP/EVENT_END */

    /* the event that ended last (EVENT_END) */
    unsigned                     usage_only:1;

    /* the event stream's lines */
    unsigned                     line_start:1;
    unsigned                     after_cr:1;
    unsigned                     data_line:1;
    unsigned                     skip_line:1;
    unsigned                     data_space:1;   /* one space may follow */
    unsigned                     event_data:1;   /* a data line in it */
    unsigned                     field_len:3;    /* of "data:" read */

    /* the current event or document, as JSON */
    unsigned                     literal_null:1;
    unsigned                     number_fraction:1;
    unsigned                     choices_empty:1;
    unsigned                     choices_some:1;
    unsigned                     usage_object:1;
    unsigned                     usage_null:1;
    unsigned                     kept:1;         /* KEEP said already */

    /* read at every byte: whole bytes, not bits of a shared word */
    u_char                       state;
    u_char                       escape;
    u_char                       hex;            /* of \uXXXX left */

    ngx_uint_t                   depth;
    ngx_uint_t                   usage_level;    /* 0: not in a usage */
    ngx_uint_t                   details_level;
    ngx_uint_t                   details_kind;
    ngx_uint_t                   choices_level;
    ngx_uint_t                   key;            /* of the string read */
    size_t                       key_len;
    uint64_t                     number;
    ngx_uint_t                   fraction_digits;
    ngx_uint_t                   deep;           /* levels below those */
    u_char                       key_text[32];
    u_char                       is_object[NGX_TAILGATE_USAGE_DEPTH + 1];
    u_char                       keys[NGX_TAILGATE_USAGE_DEPTH + 1];
} ngx_tailgate_usage_t;


/*
 * sse: the answer is an event stream; deltas: its text is in top-level
 * "delta" members only (the Responses API's events repeat the whole text
 * in "done" events); watch: stop at each event's end and when an event is
 * known to be more than a usage-only chunk.
 */
void ngx_tailgate_usage_init(ngx_tailgate_usage_t *u, ngx_uint_t sse,
    ngx_uint_t deltas, ngx_uint_t watch);

/*
 * Reads [p, end); returns where it stopped and why in *signal: at end with
 * NGX_TAILGATE_USAGE_MORE, or (watch only) just after an event's last byte
 * or where an event was found to be kept.
 */
u_char *ngx_tailgate_usage_scan(ngx_tailgate_usage_t *u, u_char *p,
    u_char *end, ngx_tailgate_usage_signal_e *signal);


#endif /* _NGX_TAILGATE_USAGE_H_INCLUDED_ */
