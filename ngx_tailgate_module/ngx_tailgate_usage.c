
/*
 * Copyright (C) The Tailgate authors
 *
 * Usage read from a provider's answer as its bytes pass through the body
 * filter: a resumable reader that keeps a few bytes of state, copies
 * nothing and holds nothing back, and reads JSON just well enough to know
 * where it is - which member of which object - without building anything.
 *
 * What it takes: "usage" at the top of a JSON answer or of a chat stream's
 * event, or of the "response" of a Responses stream's events (the
 * response.completed event carries it), with its input, output, total,
 * cached and reasoning tokens and a transcription's seconds; the model the
 * answer names; and, for an estimate when no usage comes, the bytes of the
 * answer's text.  For a chat stream it also tells the filter which event is
 * the usage-only chunk (empty "choices", a "usage" object) that the gateway
 * asked for and the client did not.
 *
 * Malformed JSON is not an error here: the reader stops reading that event
 * or document and waits for the next; the client gets the bytes anyway.
 */


#include "ngx_tailgate_usage.h"
#include "ngx_tailgate_plain.h"


/* where the reader is in the JSON */
#define NGX_TAILGATE_U_VALUE      0
#define NGX_TAILGATE_U_KEY        1
#define NGX_TAILGATE_U_COLON      2
#define NGX_TAILGATE_U_AFTER      3
#define NGX_TAILGATE_U_STRING     4
#define NGX_TAILGATE_U_KEYSTR     5
#define NGX_TAILGATE_U_NUMBER     6
#define NGX_TAILGATE_U_LITERAL    7
#define NGX_TAILGATE_U_DEEP       8     /* below the depth followed */
#define NGX_TAILGATE_U_DEEPSTR    9
#define NGX_TAILGATE_U_DONE       10    /* the top-level value ended */
#define NGX_TAILGATE_U_BAD        11    /* not JSON: ignored to the end */


/* the member names that matter */
enum {
    NGX_TAILGATE_K_OTHER = 0,
    NGX_TAILGATE_K_USAGE,
    NGX_TAILGATE_K_RESPONSE,
    NGX_TAILGATE_K_MODEL,
    NGX_TAILGATE_K_CHOICES,
    NGX_TAILGATE_K_INPUT,
    NGX_TAILGATE_K_OUTPUT,
    NGX_TAILGATE_K_TOTAL,
    NGX_TAILGATE_K_CACHED,
    NGX_TAILGATE_K_REASONING,
    NGX_TAILGATE_K_INPUT_DETAILS,
    NGX_TAILGATE_K_OUTPUT_DETAILS,
    NGX_TAILGATE_K_SECONDS,
    NGX_TAILGATE_K_TEXT,
    NGX_TAILGATE_K_DELTA
};


typedef struct {
    ngx_str_t                    name;
    ngx_uint_t                   key;
} ngx_tailgate_usage_key_t;


static ngx_tailgate_usage_key_t  ngx_tailgate_usage_keys[] = {
    { ngx_string("usage"), NGX_TAILGATE_K_USAGE },
    { ngx_string("response"), NGX_TAILGATE_K_RESPONSE },
    { ngx_string("model"), NGX_TAILGATE_K_MODEL },
    { ngx_string("choices"), NGX_TAILGATE_K_CHOICES },
    { ngx_string("prompt_tokens"), NGX_TAILGATE_K_INPUT },
    { ngx_string("input_tokens"), NGX_TAILGATE_K_INPUT },
    { ngx_string("completion_tokens"), NGX_TAILGATE_K_OUTPUT },
    { ngx_string("output_tokens"), NGX_TAILGATE_K_OUTPUT },
    { ngx_string("total_tokens"), NGX_TAILGATE_K_TOTAL },
    { ngx_string("cached_tokens"), NGX_TAILGATE_K_CACHED },
    { ngx_string("reasoning_tokens"), NGX_TAILGATE_K_REASONING },
    { ngx_string("prompt_tokens_details"), NGX_TAILGATE_K_INPUT_DETAILS },
    { ngx_string("input_tokens_details"), NGX_TAILGATE_K_INPUT_DETAILS },
    { ngx_string("completion_tokens_details"),
      NGX_TAILGATE_K_OUTPUT_DETAILS },
    { ngx_string("output_tokens_details"), NGX_TAILGATE_K_OUTPUT_DETAILS },
    { ngx_string("seconds"), NGX_TAILGATE_K_SECONDS },
    { ngx_string("content"), NGX_TAILGATE_K_TEXT },
    { ngx_string("reasoning_content"), NGX_TAILGATE_K_TEXT },
    { ngx_string("refusal"), NGX_TAILGATE_K_TEXT },
    { ngx_string("arguments"), NGX_TAILGATE_K_TEXT },
    { ngx_string("text"), NGX_TAILGATE_K_TEXT },
    { ngx_string("delta"), NGX_TAILGATE_K_DELTA },
    { ngx_null_string, 0 }
};


/*
 * A name's key: every member name of an answer is looked up, most of them
 * none of ours ("id", "object", "index", "role").  A table of 64 slots by
 * a hash of the length and the first and last bytes - the names here fall
 * in slots of their own, so a lookup is one slot and one comparison; a
 * name added that does not goes to the next free slot.
 */

#define NGX_TAILGATE_USAGE_SLOTS  64

#define ngx_tailgate_usage_slot(name, len)                                    \
    (((len) + (name)[0] * 6 + (name)[(len) - 1] * 11)                         \
     & (NGX_TAILGATE_USAGE_SLOTS - 1))


/* each slot: the index of a name in ngx_tailgate_usage_keys[], + 1 */
static u_char  ngx_tailgate_usage_slots[NGX_TAILGATE_USAGE_SLOTS];


#if !(NGX_TAILGATE_USAGE_BYTEWISE)
static u_char *ngx_tailgate_usage_tokens(ngx_tailgate_usage_t *u, u_char *p,
    u_char *end, ngx_uint_t *kept);
static ngx_inline u_char *ngx_tailgate_usage_name(ngx_tailgate_usage_t *u,
    u_char *p, u_char *end);
static ngx_inline u_char *ngx_tailgate_usage_string(ngx_tailgate_usage_t *u,
    u_char *p, u_char *end);
#endif
static ngx_uint_t ngx_tailgate_usage_json(ngx_tailgate_usage_t *u,
    u_char c);
static ngx_uint_t ngx_tailgate_usage_open(ngx_tailgate_usage_t *u,
    ngx_uint_t object);
static ngx_uint_t ngx_tailgate_usage_close(ngx_tailgate_usage_t *u,
    ngx_uint_t object);
static ngx_uint_t ngx_tailgate_usage_value(ngx_tailgate_usage_t *u);
static void ngx_tailgate_usage_number(ngx_tailgate_usage_t *u);
static void ngx_tailgate_usage_index(void);
static ngx_uint_t ngx_tailgate_usage_key(u_char *name, size_t len);
static ngx_inline ngx_uint_t ngx_tailgate_usage_same(u_char *a, u_char *b,
    size_t len);
static void ngx_tailgate_usage_reset(ngx_tailgate_usage_t *u);


void
ngx_tailgate_usage_init(ngx_tailgate_usage_t *u, ngx_uint_t sse,
    ngx_uint_t deltas, ngx_uint_t watch)
{
    static ngx_uint_t  indexed;

    if (!indexed) {
        ngx_tailgate_usage_index();
        indexed = 1;
    }

    ngx_memzero(u, sizeof(ngx_tailgate_usage_t));

    u->sse = sse ? 1 : 0;
    u->deltas = deltas ? 1 : 0;
    u->watch = (sse && watch) ? 1 : 0;
    u->line_start = 1;
}


u_char *
ngx_tailgate_usage_scan(ngx_tailgate_usage_t *u, u_char *p, u_char *end,
    ngx_tailgate_usage_signal_e *signal)
{
    u_char      c;
#if !(NGX_TAILGATE_USAGE_BYTEWISE)
    ngx_uint_t  kept;
#endif

    *signal = NGX_TAILGATE_USAGE_MORE;

    if (!u->sse) {

#if (NGX_TAILGATE_USAGE_BYTEWISE)

        /* one document: nothing after its end is read */

        while (p < end && u->state != NGX_TAILGATE_U_DONE
               && u->state != NGX_TAILGATE_U_BAD)
        {
            (void) ngx_tailgate_usage_json(u, *p++);
        }

#else
        (void) ngx_tailgate_usage_tokens(u, p, end, &kept);
#endif

        return end;
    }

    while (p < end) {

#if !(NGX_TAILGATE_USAGE_BYTEWISE)

        /* after_cr implies line_start: both start a line */

        if (u->line_start) {

            /*
             * "data:" at once where the read holds it, as the bytes one by
             * one below take it: a line of the event's data starts
             */

            if (!u->after_cr && end - p >= 5
                && ngx_memcmp(p, "data:", 5) == 0)
            {
                u->line_start = 0;
                u->skip_line = 0;
                u->field_len = 5;
                u->data_line = 1;
                u->data_space = 1;

                /* a second data line continues the first after a LF */

                if (u->event_data) {
                    (void) ngx_tailgate_usage_json(u, '\n');
                }

                u->event_data = 1;

                p += 5;

                if (p < end) {
                    u->data_space = 0;
                    p += (*p == ' ');
                }

                continue;
            }

            /* the bytes one by one below */

        } else if (u->skip_line) {

            /* a line that is not data: nothing in it but its end matters */

            p = ngx_tailgate_line_end(p, end);

            if (p == end) {
                break;
            }

        } else if (u->data_line && !u->data_space) {

            p = ngx_tailgate_usage_tokens(u, p, end, &kept);

            if (kept) {
                u->kept = 1;
                *signal = NGX_TAILGATE_USAGE_KEEP;
                return p;
            }

            if (p == end) {
                break;
            }
        }

#endif

        c = *p++;

        /* a line ends with LF, CR or CRLF */

        if (u->after_cr) {
            u->after_cr = 0;

            if (c == '\n') {
                continue;
            }
        }

        if (c == '\r' || c == '\n') {
            u->after_cr = (c == '\r');

            if (!u->line_start) {
                u->line_start = 1;
                continue;
            }

            /* an empty line ends the event */

            u->usage_only = u->choices_empty && !u->choices_some
                            && u->usage_object;
            u->events += u->event_data;

            ngx_tailgate_usage_reset(u);

            if (u->watch) {
                *signal = NGX_TAILGATE_USAGE_EVENT_END;
                return p;
            }

            continue;
        }

        if (u->line_start) {
            u->line_start = 0;
            u->data_line = 0;
            u->skip_line = 0;
            u->field_len = 0;
        }

        if (u->skip_line) {
            continue;
        }

        if (!u->data_line) {

            /* "data:" starts a line of the event's data; nothing else does */

            if (c != (u_char) "data:"[u->field_len]) {
                u->skip_line = 1;
                continue;
            }

            if (++u->field_len == 5) {
                u->data_line = 1;
                u->data_space = 1;

                /* a second data line continues the first after a LF */

                if (u->event_data) {
                    (void) ngx_tailgate_usage_json(u, '\n');
                }

                u->event_data = 1;
            }

            continue;
        }

        if (u->data_space) {
            u->data_space = 0;

            if (c == ' ') {
                continue;
            }
        }

        if (ngx_tailgate_usage_json(u, c) && u->watch && !u->kept) {
            u->kept = 1;
            *signal = NGX_TAILGATE_USAGE_KEEP;
            return p;
        }
    }

    return p;
}


#if !(NGX_TAILGATE_USAGE_BYTEWISE)

/*
 * JSON a token at a time, where the tokens lie in the buffer: the inside
 * of a string, a run of digits or of letters, whitespace, the bytes of a
 * value below the depth followed are each taken in one loop, and so are
 * the bytes between tokens - a name's quote, the colon, the comma, the
 * first byte of a value, the brackets.  What is left (an escape, a
 * number's fraction, a malformed byte, a line end of an event stream in
 * the middle of a token) goes through ngx_tailgate_usage_json() a byte at
 * a time.  The effect is the one of the bytes one by one (the reader built
 * with -DNGX_TAILGATE_USAGE_BYTEWISE; fuzz/harness/usage.c compares
 * them).  Nothing is kept across calls but the reader's state: a token a
 * read splits goes on in the next.
 *
 * Stops at end; in an event stream also at a line end (the caller's) and,
 * with *kept set, just past the byte that showed the event is kept.
 */

static u_char *
ngx_tailgate_usage_tokens(ngx_tailgate_usage_t *u, u_char *p, u_char *end,
    ngx_uint_t *kept)
{
    u_char      c, d;
    uint64_t    n;
    ngx_uint_t  ws, value;

    /* the bytes that end a value below the depth followed, or a line */
    static const u_char  deep[256] = {
        ['"'] = 1, ['{'] = 1, ['['] = 1, ['}'] = 1, [']'] = 1,
        ['\r'] = 1, ['\n'] = 1
    };

    /*
     * whitespace: 1 in JSON and in an event's data line, 2 in JSON only;
     * 4: what may follow a number or a literal and is taken here
     */
    static const u_char  space[256] = {
        [' '] = 1|4, ['\t'] = 1|4, ['\r'] = 2, ['\n'] = 2,
        [','] = 4, ['}'] = 4, [']'] = 4
    };

    *kept = 0;

    /* a line end in an event stream is its caller's */
    ws = u->sse ? 1 : 3;

    /*
     * Escapes matter inside strings only: ngx_tailgate_usage_json() reads
     * the other states alike with or without one pending.
     */

    while (p < end) {

        switch (u->state) {

        /*
         * In the order a member's tokens come: one falls through into the
         * next, "name":"value", and its comma, in one turn of the loop.
         */

        case NGX_TAILGATE_U_AFTER:

            while (p < end && (space[*p] & ws)) {
                p++;
            }

            if (p == end) {
                return p;
            }

            c = *p;

            if (c == '}' || c == ']') {
                p++;
                (void) ngx_tailgate_usage_close(u, c == '}');
                continue;
            }

            if (c != ',') {
                break;
            }

            p++;

            if (!u->is_object[u->depth]) {
                u->state = NGX_TAILGATE_U_VALUE;
                continue;
            }

            u->state = NGX_TAILGATE_U_KEY;

            /* fall through */

        case NGX_TAILGATE_U_KEY:

            while (p < end && (space[*p] & ws)) {
                p++;
            }

            if (p == end) {
                return p;
            }

            c = *p;

            if (c == '}') {
                p++;
                (void) ngx_tailgate_usage_close(u, 1);
                continue;
            }

            if (c != '"') {
                break;
            }

            p++;
            u->state = NGX_TAILGATE_U_KEYSTR;
            u->key_len = 0;
            u->escape = 0;

            /* fall through */

        case NGX_TAILGATE_U_KEYSTR:

            if (u->escape) {
                break;
            }

            p = ngx_tailgate_usage_name(u, p, end);

            if (u->state == NGX_TAILGATE_U_KEYSTR) {
                /* a backslash or a line end: one by one, below */
                break;
            }

            /* the commonest colon, at once */

            if (p == end || *p != ':') {
                continue;
            }

            p++;
            u->state = NGX_TAILGATE_U_VALUE;

            /* fall through */

        case NGX_TAILGATE_U_VALUE:

            while (p < end && (space[*p] & ws)) {
                p++;
            }

            if (p == end) {
                return p;
            }

            /* what ngx_tailgate_usage_json() does with the value's byte */

            c = *p;

            if (c != '"') {

                if ((d = (u_char) (c - '0')) <= 9) {
                    u->state = NGX_TAILGATE_U_NUMBER;
                    u->number = d;
                    u->number_fraction = 0;
                    u->fraction_digits = 0;
                    value = ngx_tailgate_usage_value(u);

                } else if (c == '{' || c == '[') {
                    value = ngx_tailgate_usage_value(u);
                    (void) ngx_tailgate_usage_open(u, c == '{');

                } else if (c == 't' || c == 'f' || c == 'n') {
                    u->state = NGX_TAILGATE_U_LITERAL;
                    u->literal_null = (c == 'n');
                    value = ngx_tailgate_usage_value(u);

                } else {
                    /* a minus, an empty array, or not JSON: below */
                    break;
                }

                p++;

                if (value && u->watch && !u->kept) {
                    *kept = 1;
                    return p;
                }

                continue;
            }

            p++;
            u->state = NGX_TAILGATE_U_STRING;
            u->escape = 0;
            u->hex = 0;

            if (u->keys[u->depth] == NGX_TAILGATE_K_MODEL
                && (u->depth == 1
                    || (u->depth == 2
                        && u->keys[1] == NGX_TAILGATE_K_RESPONSE)))
            {
                u->model_len = 0;
            }

            if (ngx_tailgate_usage_value(u) && u->watch && !u->kept) {
                *kept = 1;
                return p;
            }

            /* fall through */

        case NGX_TAILGATE_U_STRING:

            if (u->escape || u->hex) {
                break;
            }

            p = ngx_tailgate_usage_string(u, p, end);

            if (u->state == NGX_TAILGATE_U_STRING) {
                /* a backslash or a control byte: one by one, below */
                break;
            }

            continue;

        case NGX_TAILGATE_U_COLON:

            while (p < end && (space[*p] & ws)) {
                p++;
            }

            if (p == end) {
                return p;
            }

            if (*p == ':') {
                u->state = NGX_TAILGATE_U_VALUE;
                p++;
                continue;
            }

            break;

        case NGX_TAILGATE_U_DEEPSTR:

            if (u->escape) {
                break;
            }

            p = ngx_tailgate_plain(p, end);

            if (p < end && *p == '"') {
                u->state = NGX_TAILGATE_U_DEEP;
                p++;
                continue;
            }

            break;

        case NGX_TAILGATE_U_NUMBER:

            if (u->number_fraction) {
                break;
            }

            n = u->number;

            while (p < end && (d = (u_char) (*p - '0')) <= 9) {
                /* saturate, never wrap, as ngx_tailgate_usage_json() */
                n = (n < 100000000000000000ULL) ? n * 10 + d : n;
                p++;
            }

            u->number = n;

            if (p == end) {
                return p;
            }

            /* its end, as ngx_tailgate_usage_json() sees it */

            if (space[*p] & 4) {
                ngx_tailgate_usage_number(u);
                u->state = NGX_TAILGATE_U_AFTER;
                continue;
            }

            break;

        case NGX_TAILGATE_U_LITERAL:

            while (p < end && *p >= 'a' && *p <= 'z') {
                p++;
            }

            if (p == end) {
                return p;
            }

            /* "usage": null is a chunk's that the client keeps: below */

            if ((space[*p] & 4)
                && !(u->literal_null && u->depth == 1
                     && u->keys[1] == NGX_TAILGATE_K_USAGE))
            {
                u->state = NGX_TAILGATE_U_AFTER;
                continue;
            }

            break;

        case NGX_TAILGATE_U_DEEP:

            while (p < end && !deep[*p]) {
                p++;
            }

            break;

        default: /* NGX_TAILGATE_U_DONE, NGX_TAILGATE_U_BAD */

            if (!u->sse) {
                return end;
            }

            return ngx_tailgate_line_end(p, end);
        }

        /* the rest one by one */

        if (p == end) {
            return p;
        }

        c = *p;

        if (u->sse && (c == '\r' || c == '\n')) {
            return p;
        }

        p++;

        if (ngx_tailgate_usage_json(u, c) && u->watch && !u->kept) {
            *kept = 1;
            return p;
        }
    }

    return p;
}


/*
 * A name at once, up to its closing quote (or a backslash or a line end),
 * and looked up where it lies when the read holds all of it; kept in
 * key_text only while a read splits it.  The effect is the one of its
 * bytes one by one.
 */

static ngx_inline u_char *
ngx_tailgate_usage_name(ngx_tailgate_usage_t *u, u_char *p, u_char *end)
{
    u_char  *q;
    size_t   n;

    /* the bytes that end a run: '"', '\\', CR, LF */
    static const u_char  stop[256] = {
        ['"'] = 1, ['\\'] = 1, ['\r'] = 1, ['\n'] = 1
    };

    /* control bytes are a name's too (one by one they are): go on */

    for (q = ngx_tailgate_plain(p, end); q < end && !stop[*q];
         q = ngx_tailgate_plain(q + 1, end))
    {
        /* void */
    }

    n = q - p;

    if (u->key_len == 0 && q < end && *q == '"') {

        /* all of it here: what ngx_tailgate_usage_json() does with '"' */

        u->key_len = ngx_min(n, sizeof(u->key_text) + 1);
        u->keys[u->depth] = (n <= sizeof(u->key_text))
                            ? ngx_tailgate_usage_key(p, n)
                            : NGX_TAILGATE_K_OTHER;
        u->state = NGX_TAILGATE_U_COLON;

        return q + 1;
    }

    /* a name a read splits: kept while it fits, then only known too long */

    if (u->key_len < sizeof(u->key_text)) {
        ngx_memcpy(u->key_text + u->key_len, p,
                   ngx_min(n, sizeof(u->key_text) - u->key_len));
    }
    u->key_len = ngx_min(u->key_len + n, sizeof(u->key_text) + 1);

    if (q < end && *q == '"') {
        u->keys[u->depth] = (u->key_len <= sizeof(u->key_text))
                            ? ngx_tailgate_usage_key(u->key_text,
                                                     u->key_len)
                            : NGX_TAILGATE_K_OTHER;
        u->state = NGX_TAILGATE_U_COLON;
        q++;
    }

    return q;
}


/*
 * The inside of a string at once, up to its next quote or backslash (or a
 * control byte: a line end, which no JSON string holds raw, ends an
 * event's data line): most of an answer's bytes are its text, and a byte
 * at a time through ngx_tailgate_usage_json() costs several times what
 * this does.  The effect is the one of those bytes one by one.
 */

static ngx_inline u_char *
ngx_tailgate_usage_string(ngx_tailgate_usage_t *u, u_char *p, u_char *end)
{
    u_char  *q;
    size_t   n;

    q = ngx_tailgate_plain(p, end);

    n = q - p;

    if ((u->deltas && u->depth == 1
         && u->keys[1] == NGX_TAILGATE_K_DELTA)
        || (!u->deltas && u->keys[u->depth] == NGX_TAILGATE_K_TEXT))
    {
        u->text_bytes += n;
    }

    if (u->keys[u->depth] == NGX_TAILGATE_K_MODEL
        && (u->depth == 1
            || (u->depth == 2 && u->keys[1] == NGX_TAILGATE_K_RESPONSE)))
    {
        n = ngx_min(n, NGX_TAILGATE_USAGE_MODEL - u->model_len);
        ngx_memcpy(u->model + u->model_len, p, n);
        u->model_len += n;
    }

    if (q < end && *q == '"') {
        u->state = NGX_TAILGATE_U_AFTER;
        q++;
    }

    return q;
}

#endif


/* one byte of JSON; 1 when the event is now known to be kept */

static ngx_uint_t
ngx_tailgate_usage_json(ngx_tailgate_usage_t *u, u_char c)
{
    ngx_uint_t  kept;

again:

    switch (u->state) {

    case NGX_TAILGATE_U_VALUE:

        switch (c) {

        case ' ': case '\t': case '\n': case '\r':
            return 0;

        case '{':
            kept = ngx_tailgate_usage_value(u);
            return ngx_tailgate_usage_open(u, 1) | kept;

        case '[':
            kept = ngx_tailgate_usage_value(u);
            return ngx_tailgate_usage_open(u, 0) | kept;

        case ']':

            /* an empty array */

            if (u->depth && !u->is_object[u->depth]) {
                return ngx_tailgate_usage_close(u, 0);
            }

            u->state = NGX_TAILGATE_U_BAD;
            return 0;

        case '"':
            u->state = NGX_TAILGATE_U_STRING;
            u->escape = 0;
            u->hex = 0;

            if (u->keys[u->depth] == NGX_TAILGATE_K_MODEL
                && (u->depth == 1
                    || (u->depth == 2
                        && u->keys[1] == NGX_TAILGATE_K_RESPONSE)))
            {
                u->model_len = 0;
            }

            return ngx_tailgate_usage_value(u);

        case 't': case 'f': case 'n':
            u->state = NGX_TAILGATE_U_LITERAL;
            u->literal_null = (c == 'n');
            return ngx_tailgate_usage_value(u);

        default:

            if (c == '-' || (c >= '0' && c <= '9')) {
                u->state = NGX_TAILGATE_U_NUMBER;
                u->number = (c == '-') ? 0 : (uint64_t) (c - '0');
                u->number_fraction = 0;
                u->fraction_digits = 0;
                return ngx_tailgate_usage_value(u);
            }

            u->state = NGX_TAILGATE_U_BAD;
            return 0;
        }

    case NGX_TAILGATE_U_KEY:

        switch (c) {

        case ' ': case '\t': case '\n': case '\r':
            return 0;

        case '"':
            u->state = NGX_TAILGATE_U_KEYSTR;
            u->key_len = 0;
            u->escape = 0;
            return 0;

        case '}':
            return ngx_tailgate_usage_close(u, 1);

        default:
            u->state = NGX_TAILGATE_U_BAD;
            return 0;
        }

    case NGX_TAILGATE_U_KEYSTR:

        if (u->escape) {
            /* a name with escapes is no name the gateway reads */
            u->escape = 0;
            u->key_len = sizeof(u->key_text) + 1;
            return 0;
        }

        if (c == '\\') {
            u->escape = 1;
            return 0;
        }

        if (c == '"') {
            u->keys[u->depth] = (u->key_len <= sizeof(u->key_text))
                                ? ngx_tailgate_usage_key(u->key_text,
                                                         u->key_len)
                                : NGX_TAILGATE_K_OTHER;
            u->state = NGX_TAILGATE_U_COLON;
            return 0;
        }

        if (u->key_len < sizeof(u->key_text)) {
            u->key_text[u->key_len] = c;
        }

        if (u->key_len <= sizeof(u->key_text)) {
            u->key_len++;
        }

        return 0;

    case NGX_TAILGATE_U_COLON:

        if (c == ':') {
            u->state = NGX_TAILGATE_U_VALUE;

        } else if (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
            u->state = NGX_TAILGATE_U_BAD;
        }

        return 0;

    case NGX_TAILGATE_U_AFTER:

        switch (c) {

        case ' ': case '\t': case '\n': case '\r':
            return 0;

        case ',':
            u->state = u->is_object[u->depth] ? NGX_TAILGATE_U_KEY
                                              : NGX_TAILGATE_U_VALUE;
            return 0;

        case '}':
        case ']':
            return ngx_tailgate_usage_close(u, c == '}');

        default:
            u->state = NGX_TAILGATE_U_BAD;
            return 0;
        }

    case NGX_TAILGATE_U_STRING:

        if (u->escape) {
            u->escape = 0;

            if (c == 'u') {
                u->hex = 4;
            }

        } else if (u->hex) {
            u->hex--;

        } else if (c == '\\') {
            u->escape = 1;

        } else if (c == '"') {
            u->state = NGX_TAILGATE_U_AFTER;
            return 0;
        }

        if ((u->deltas && u->depth == 1
             && u->keys[1] == NGX_TAILGATE_K_DELTA)
            || (!u->deltas && u->keys[u->depth] == NGX_TAILGATE_K_TEXT))
        {
            u->text_bytes++;
        }

        if (u->keys[u->depth] == NGX_TAILGATE_K_MODEL
            && u->model_len < NGX_TAILGATE_USAGE_MODEL
            && (u->depth == 1
                || (u->depth == 2 && u->keys[1] == NGX_TAILGATE_K_RESPONSE)))
        {
            u->model[u->model_len++] = c;
        }

        return 0;

    case NGX_TAILGATE_U_NUMBER:

        if (c >= '0' && c <= '9') {

            if (!u->number_fraction) {
                /* no count of tokens comes near: saturate, never wrap */
                u->number = (u->number < 100000000000000000ULL)
                            ? u->number * 10 + (c - '0') : u->number;

            } else if (u->fraction_digits < 3) {
                u->number = u->number * 10 + (c - '0');
                u->fraction_digits++;
            }

            return 0;
        }

        if (c == '.') {
            u->number_fraction = 1;
            return 0;
        }

        if (c == 'e' || c == 'E' || c == '+' || c == '-') {
            return 0;
        }

        ngx_tailgate_usage_number(u);
        u->state = NGX_TAILGATE_U_AFTER;
        goto again;

    case NGX_TAILGATE_U_LITERAL:

        if (c >= 'a' && c <= 'z') {
            return 0;
        }

        u->state = NGX_TAILGATE_U_AFTER;

        if (u->literal_null && u->depth == 1
            && u->keys[1] == NGX_TAILGATE_K_USAGE)
        {
            u->usage_null = 1;

            /* a chunk with "usage": null is an ordinary one */
            kept = 1;

            return ngx_tailgate_usage_json(u, c) | kept;
        }

        goto again;

    case NGX_TAILGATE_U_DEEP:

        if (c == '"') {
            u->state = NGX_TAILGATE_U_DEEPSTR;
            u->escape = 0;

        } else if (c == '{' || c == '[') {
            u->deep++;

        } else if ((c == '}' || c == ']') && --u->deep == 0) {
            u->state = NGX_TAILGATE_U_AFTER;
        }

        return 0;

    case NGX_TAILGATE_U_DEEPSTR:

        if (u->escape) {
            u->escape = 0;

        } else if (c == '\\') {
            u->escape = 1;

        } else if (c == '"') {
            u->state = NGX_TAILGATE_U_DEEP;
        }

        return 0;

    default: /* NGX_TAILGATE_U_DONE, NGX_TAILGATE_U_BAD */
        return 0;
    }
}


/* a value starts: in the top-level "choices", the first makes it not empty */

static ngx_uint_t
ngx_tailgate_usage_value(ngx_tailgate_usage_t *u)
{
    if (u->choices_level && u->depth == u->choices_level && !u->choices_some)
    {
        u->choices_some = 1;
        return 1;
    }

    return 0;
}


static ngx_uint_t
ngx_tailgate_usage_open(ngx_tailgate_usage_t *u, ngx_uint_t object)
{
    ngx_uint_t  parent, key;

    parent = u->depth;
    key = u->keys[parent];

    if (parent == NGX_TAILGATE_USAGE_DEPTH) {
        /* deeper than anything read here: only its end matters */
        u->state = NGX_TAILGATE_U_DEEP;
        u->deep = 1;
        return 0;
    }

    u->depth++;
    u->is_object[u->depth] = object ? 1 : 0;
    u->keys[u->depth] = NGX_TAILGATE_K_OTHER;
    u->state = object ? NGX_TAILGATE_U_KEY : NGX_TAILGATE_U_VALUE;

    if (object && key == NGX_TAILGATE_K_USAGE
        && (parent == 1
            || (parent == 2 && u->keys[1] == NGX_TAILGATE_K_RESPONSE)))
    {
        u->usage_level = u->depth;
        u->usage_object = (parent == 1);

    } else if (object && u->usage_level && parent == u->usage_level
               && (key == NGX_TAILGATE_K_INPUT_DETAILS
                   || key == NGX_TAILGATE_K_OUTPUT_DETAILS))
    {
        u->details_level = u->depth;
        u->details_kind = key;

    } else if (!object && parent == 1 && key == NGX_TAILGATE_K_CHOICES) {
        u->choices_level = u->depth;
    }

    return 0;
}


static ngx_uint_t
ngx_tailgate_usage_close(ngx_tailgate_usage_t *u, ngx_uint_t object)
{
    if (u->depth == 0 || u->is_object[u->depth] != object) {
        u->state = NGX_TAILGATE_U_BAD;
        return 0;
    }

    if (u->depth == u->usage_level) {
        u->usage_level = 0;
    }

    if (u->depth == u->details_level) {
        u->details_level = 0;
    }

    if (u->depth == u->choices_level) {
        u->choices_level = 0;

        if (!u->choices_some) {
            u->choices_empty = 1;
        }
    }

    u->depth--;
    u->state = u->depth ? NGX_TAILGATE_U_AFTER : NGX_TAILGATE_U_DONE;

    return 0;
}


/* a number ended: a count of the usage, or nothing of ours */

static void
ngx_tailgate_usage_number(ngx_tailgate_usage_t *u)
{
    uint64_t    n, whole;
    ngx_uint_t  key, i;

    key = u->keys[u->depth];
    n = u->number;

    /* only seconds have a part after the point that counts */

    whole = n;

    for (i = 0; i < u->fraction_digits; i++) {
        whole /= 10;
    }

    if (u->usage_level && u->depth == u->usage_level) {

        switch (key) {

        case NGX_TAILGATE_K_INPUT:
            u->input = whole;
            u->found = 1;
            break;

        case NGX_TAILGATE_K_OUTPUT:
            u->output = whole;
            u->found = 1;
            break;

        case NGX_TAILGATE_K_TOTAL:
            u->total = whole;
            u->found = 1;
            break;

        case NGX_TAILGATE_K_SECONDS:

            /* milliseconds: the three digits after the point, if any */

            for (i = u->fraction_digits; i < 3; i++) {
                n *= 10;
            }

            u->audio_ms = n;
            u->found = 1;
            break;
        }

        return;
    }

    if (u->details_level && u->depth == u->details_level) {

        if (key == NGX_TAILGATE_K_CACHED
            && u->details_kind == NGX_TAILGATE_K_INPUT_DETAILS)
        {
            u->cached = whole;

        } else if (key == NGX_TAILGATE_K_REASONING
                   && u->details_kind == NGX_TAILGATE_K_OUTPUT_DETAILS)
        {
            u->reasoning = whole;
        }
    }
}


/* once in a process, from ngx_tailgate_usage_init() */

static void
ngx_tailgate_usage_index(void)
{
    ngx_uint_t                 i, n;
    ngx_tailgate_usage_key_t  *k;

    for (n = 0; ngx_tailgate_usage_keys[n].name.len; n++) {
        k = &ngx_tailgate_usage_keys[n];

        for (i = ngx_tailgate_usage_slot(k->name.data, k->name.len);
             ngx_tailgate_usage_slots[i];
             i = (i + 1) & (NGX_TAILGATE_USAGE_SLOTS - 1))
        {
            /* void */
        }

        ngx_tailgate_usage_slots[i] = (u_char) (n + 1);
    }
}


/* len: at most the 32 bytes of key_text, as every caller checks */

static ngx_uint_t
ngx_tailgate_usage_key(u_char *name, size_t len)
{
    ngx_uint_t                 i;
    ngx_tailgate_usage_key_t  *k;

    if (len == 0) {
        return NGX_TAILGATE_K_OTHER;
    }

    for (i = ngx_tailgate_usage_slot(name, len);
         ngx_tailgate_usage_slots[i];
         i = (i + 1) & (NGX_TAILGATE_USAGE_SLOTS - 1))
    {
        k = &ngx_tailgate_usage_keys[ngx_tailgate_usage_slots[i] - 1];

        if (k->name.len == len && ngx_tailgate_usage_same(k->name.data, name,
                                                          len))
        {
            return k->key;
        }
    }

    return NGX_TAILGATE_K_OTHER;
}


/*
 * Two names of the same length alike: eight bytes at a time, the last
 * eight (or four) overlapping what was compared, with no call.
 */

static ngx_inline ngx_uint_t
ngx_tailgate_usage_same(u_char *a, u_char *b, size_t len)
{
    uint32_t  x4, y4;
    uint64_t  x, y;

    if (len >= 8) {

        for ( /* void */ ; len > 8; a += 8, b += 8, len -= 8) {
            ngx_memcpy(&x, a, 8);
            ngx_memcpy(&y, b, 8);

            if (x != y) {
                return 0;
            }
        }

        ngx_memcpy(&x, a + len - 8, 8);
        ngx_memcpy(&y, b + len - 8, 8);

        return x == y;
    }

    if (len >= 4) {
        ngx_memcpy(&x4, a, 4);
        ngx_memcpy(&y4, b, 4);

        if (x4 != y4) {
            return 0;
        }

        ngx_memcpy(&x4, a + len - 4, 4);
        ngx_memcpy(&y4, b + len - 4, 4);

        return x4 == y4;
    }

    while (len--) {
        if (*a++ != *b++) {
            return 0;
        }
    }

    return 1;
}


/* the next event starts: its JSON from the top, the counts stay */

static void
ngx_tailgate_usage_reset(ngx_tailgate_usage_t *u)
{
    u->state = NGX_TAILGATE_U_VALUE;
    u->depth = 0;
    u->usage_level = 0;
    u->details_level = 0;
    u->choices_level = 0;
    u->keys[0] = NGX_TAILGATE_K_OTHER;
    u->event_data = 0;
    u->choices_empty = 0;
    u->choices_some = 0;
    u->usage_object = 0;
    u->usage_null = 0;
    u->kept = 0;
}
