
/*
 * Copyright (C) The Tailgate authors
 *
 * A chat completions answer turned into a Responses API answer as its
 * bytes pass (a leaf: bytes in, bytes out).
 *
 * One resumable JSON reader serves both shapes: a chat completion (one
 * document) and a chat stream (one document per event).  It keeps a stack
 * of what each open container is (the choices, a message or delta, a tool
 * call, the usage) and hands the strings that matter to the writer as
 * their bytes arrive: a text delta goes out in the read that brought it.
 * Strings are passed on as the provider escaped them (control characters
 * a broken provider might send raw are escaped, so they can neither break
 * the JSON nor start an event of their own).
 *
 * The Responses stream repeats each item's whole text when it is done
 * (output_text.done, content_part.done, output_item.done and the output
 * of response.completed), so a stream's text and arguments are kept, up
 * to NGX_TAILGATE_XLAT_TEXT_MAX, and the four repeats point at the same
 * bytes.  A chat completion needs nothing kept: its object is written as
 * it is read, with what comes at the end - status, usage - at the end.
 */


#include "ngx_tailgate_translate.h"


#define NGX_TAILGATE_XLAT_DEPTH   32
#define NGX_TAILGATE_XLAT_BUF     4096
#define NGX_TAILGATE_XLAT_CHUNK   4096


/* what a container or a value is, by where it is */
typedef enum {
    NGX_TAILGATE_XK_OTHER = 0,
    NGX_TAILGATE_XK_ROOT,
    NGX_TAILGATE_XK_CHOICES,
    NGX_TAILGATE_XK_CHOICE,
    NGX_TAILGATE_XK_MESSAGE,
    NGX_TAILGATE_XK_TOOL_CALLS,
    NGX_TAILGATE_XK_TOOL_CALL,
    NGX_TAILGATE_XK_FUNCTION,
    NGX_TAILGATE_XK_USAGE,
    NGX_TAILGATE_XK_PROMPT_DETAILS,
    NGX_TAILGATE_XK_COMPLETION_DETAILS,
    NGX_TAILGATE_XK_ERROR,

    /* values */
    NGX_TAILGATE_XK_CONTENT,
    NGX_TAILGATE_XK_REFUSAL,
    NGX_TAILGATE_XK_CALL_ID,
    NGX_TAILGATE_XK_CALL_NAME,
    NGX_TAILGATE_XK_CALL_ARGS,
    NGX_TAILGATE_XK_CALL_INDEX,
    NGX_TAILGATE_XK_FINISH,
    NGX_TAILGATE_XK_CREATED,
    NGX_TAILGATE_XK_PROMPT,
    NGX_TAILGATE_XK_COMPLETION,
    NGX_TAILGATE_XK_TOTAL,
    NGX_TAILGATE_XK_CACHED,
    NGX_TAILGATE_XK_REASONING
} ngx_tailgate_xk_e;


typedef enum {
    NGX_TAILGATE_XJ_VALUE = 0,
    NGX_TAILGATE_XJ_MEMBER,          /* after '{' or ',': a key or '}' */
    NGX_TAILGATE_XJ_KEY,
    NGX_TAILGATE_XJ_KEY_ESCAPE,
    NGX_TAILGATE_XJ_COLON,
    NGX_TAILGATE_XJ_AFTER,
    NGX_TAILGATE_XJ_STRING,
    NGX_TAILGATE_XJ_STRING_ESCAPE,
    NGX_TAILGATE_XJ_SCALAR,
    NGX_TAILGATE_XJ_SKIP,            /* a value nested too deep to read */
    NGX_TAILGATE_XJ_SKIP_STRING,
    NGX_TAILGATE_XJ_SKIP_ESCAPE,
    NGX_TAILGATE_XJ_DONE,            /* the document ended */
    NGX_TAILGATE_XJ_IGNORE           /* not a document we read */
} ngx_tailgate_xj_e;


typedef enum {
    NGX_TAILGATE_XF_NONE = 0,
    NGX_TAILGATE_XF_STOP,
    NGX_TAILGATE_XF_LENGTH,
    NGX_TAILGATE_XF_FILTER
} ngx_tailgate_xf_e;


typedef struct ngx_tailgate_xchunk_s  ngx_tailgate_xchunk_t;

struct ngx_tailgate_xchunk_s {
    ngx_tailgate_xchunk_t       *next;
    u_char                      *last;
    u_char                      *end;
    u_char                       data[1];
};


/* an output item: a message, or a function call */
typedef struct {
    ngx_uint_t                   call;       /* unsigned:1 */
    ngx_int_t                    chat_index; /* the call's, -1: none */
    ngx_tailgate_xchunk_t       *first;      /* the text, the arguments */
    ngx_tailgate_xchunk_t       *last;
    size_t                       len;
    size_t                       id_len;
    size_t                       name_len;
    u_char                       id[NGX_TAILGATE_XLAT_NAME];
    u_char                       name[NGX_TAILGATE_XLAT_NAME];
    unsigned                     added:1;
    unsigned                     done:1;
} ngx_tailgate_xitem_t;


struct ngx_tailgate_xlat_s {
    ngx_pool_t                  *pool;
    ngx_buf_tag_t                tag;
    ngx_chain_t                 *free;
    ngx_chain_t                 *busy;

    /* what is being written */
    ngx_chain_t               ***ll;
    ngx_buf_t                   *buf;

    u_char                       id[NGX_TAILGATE_XLAT_ID];
    size_t                       id_len;
    ngx_str_t                    model;      /* JSON-escaped */
    time_t                       created;
    uint64_t                     seq;
    size_t                       stored;

    /* the JSON reader */
    ngx_tailgate_xj_e            state;
    ngx_uint_t                   depth;
    ngx_tailgate_xk_e            kind;       /* of the value being read */
    uint64_t                     skip;       /* levels of it still open */
    uint64_t                     number;
    ngx_uint_t                   number_done;    /* unsigned:1 */
    size_t                       key_len;
    u_char                       key[24];
    u_char                       stack[NGX_TAILGATE_XLAT_DEPTH];
    u_char                       object[NGX_TAILGATE_XLAT_DEPTH];
    uint32_t                     elements[NGX_TAILGATE_XLAT_DEPTH];

    /* the event stream's lines */
    size_t                       field_len;
    u_char                       field[8];
    unsigned                     line_start:1;
    unsigned                     after_cr:1;
    unsigned                     in_field:1;
    unsigned                     in_data:1;
    unsigned                     data_space:1;
    unsigned                     skip_line:1;
    unsigned                     event_data:1;
    unsigned                     done_event:1;   /* data: [DONE] */
    unsigned                     error_event:1;  /* data: {"error":...} */

    /* what the answer said */
    ngx_tailgate_xitem_t        *items;
    ngx_uint_t                   nitems;
    ngx_tailgate_xitem_t        *current;    /* open, not done */
    ngx_tailgate_xf_e            finish;
    uint64_t                     usage[5];   /* prompt ... reasoning */
    unsigned                     usage_seen:1;

    /* the tool call object being read */
    ngx_int_t                    call_index;
    ngx_tailgate_xitem_t        *call;
    size_t                       call_id_len;
    size_t                       call_name_len;
    u_char                       call_id[NGX_TAILGATE_XLAT_NAME];
    u_char                       call_name[NGX_TAILGATE_XLAT_NAME];

    /* the string being passed on */
    ngx_tailgate_xitem_t        *string_item;
    unsigned                     string_open:1;  /* its event is started */
    unsigned                     string_keep:1;  /* its bytes are kept */
    unsigned                     string_send:1;  /* ... and sent */

    unsigned                     sse:1;
    unsigned                     started:1;
    unsigned                     ended:1;    /* completed or failed */
    unsigned                     failed:1;
    unsigned                     too_much:1;
    unsigned                     json_args:1;    /* the call's, written */
    unsigned                     json_root:1;    /* the response begun */
    unsigned                     json_call:1;    /* a call item open */
    ngx_uint_t                   json_hex;       /* of a \uXXXX, to come */
    ngx_uint_t                   json_items;     /* a JSON answer's */
};


static ngx_int_t ngx_tailgate_xlat_read(ngx_tailgate_xlat_t *x, u_char *p,
    u_char *end);
static void ngx_tailgate_xlat_reset(ngx_tailgate_xlat_t *x);
static ngx_tailgate_xk_e ngx_tailgate_xlat_classify(ngx_tailgate_xlat_t *x);
static ngx_int_t ngx_tailgate_xlat_open(ngx_tailgate_xlat_t *x,
    ngx_tailgate_xk_e kind);
static ngx_int_t ngx_tailgate_xlat_close(ngx_tailgate_xlat_t *x,
    ngx_tailgate_xk_e kind);
static ngx_int_t ngx_tailgate_xlat_string(ngx_tailgate_xlat_t *x,
    ngx_tailgate_xk_e kind);
static ngx_int_t ngx_tailgate_xlat_bytes(ngx_tailgate_xlat_t *x, u_char *p,
    size_t n);
static ngx_int_t ngx_tailgate_xlat_string_end(ngx_tailgate_xlat_t *x);
static ngx_int_t ngx_tailgate_xlat_string_cut(ngx_tailgate_xlat_t *x);
static ngx_int_t ngx_tailgate_xlat_json_call_end(ngx_tailgate_xlat_t *x);
static ngx_int_t ngx_tailgate_xlat_json_fail(ngx_tailgate_xlat_t *x,
    const char *code, const char *message);
static void ngx_tailgate_xlat_scalar(ngx_tailgate_xlat_t *x);
static ngx_int_t ngx_tailgate_xlat_event_end(ngx_tailgate_xlat_t *x);
static ngx_int_t ngx_tailgate_xlat_start(ngx_tailgate_xlat_t *x);
static ngx_int_t ngx_tailgate_xlat_finish(ngx_tailgate_xlat_t *x);
static ngx_int_t ngx_tailgate_xlat_message(ngx_tailgate_xlat_t *x);
static ngx_tailgate_xitem_t *ngx_tailgate_xlat_resolve(
    ngx_tailgate_xlat_t *x);
static ngx_int_t ngx_tailgate_xlat_added(ngx_tailgate_xlat_t *x,
    ngx_tailgate_xitem_t *it);
static ngx_int_t ngx_tailgate_xlat_item_done(ngx_tailgate_xlat_t *x,
    ngx_tailgate_xitem_t *it);
static ngx_tailgate_xitem_t *ngx_tailgate_xlat_item(ngx_tailgate_xlat_t *x,
    ngx_uint_t call);
static ngx_int_t ngx_tailgate_xlat_response(ngx_tailgate_xlat_t *x,
    const char *status, ngx_uint_t full);
static ngx_int_t ngx_tailgate_xlat_item_json(ngx_tailgate_xlat_t *x,
    ngx_tailgate_xitem_t *it, ngx_uint_t done);
static ngx_int_t ngx_tailgate_xlat_usage(ngx_tailgate_xlat_t *x);
static ngx_int_t ngx_tailgate_xlat_item_id(ngx_tailgate_xlat_t *x,
    ngx_tailgate_xitem_t *it);
static ngx_int_t ngx_tailgate_xlat_event(ngx_tailgate_xlat_t *x,
    const char *type);
static ngx_int_t ngx_tailgate_xlat_text(ngx_tailgate_xlat_t *x,
    ngx_tailgate_xitem_t *it);
static ngx_int_t ngx_tailgate_xlat_keep(ngx_tailgate_xlat_t *x,
    ngx_tailgate_xitem_t *it, u_char *p, size_t n);
static ngx_int_t ngx_tailgate_xlat_escaped(ngx_tailgate_xlat_t *x,
    ngx_tailgate_xitem_t *keep, u_char *p, size_t n, ngx_uint_t send);
static ngx_int_t ngx_tailgate_xlat_write(ngx_tailgate_xlat_t *x, u_char *p,
    size_t n);
static ngx_int_t ngx_tailgate_xlat_printf(ngx_tailgate_xlat_t *x,
    const char *fmt, ...);
static ngx_int_t ngx_tailgate_xlat_ref(ngx_tailgate_xlat_t *x, u_char *p,
    size_t n);

#define ngx_tailgate_xlat_literal(x, s)                                       \
    ngx_tailgate_xlat_write(x, (u_char *) s, sizeof(s) - 1)


ngx_tailgate_xlat_t *
ngx_tailgate_xlat_create(ngx_pool_t *pool, ngx_uint_t sse, ngx_str_t *id,
    ngx_str_t *model, time_t created, ngx_buf_tag_t tag)
{
    size_t                len;
    ngx_tailgate_xlat_t  *x;

    x = ngx_pcalloc(pool, sizeof(ngx_tailgate_xlat_t));
    if (x == NULL) {
        return NULL;
    }

    x->items = ngx_palloc(pool, NGX_TAILGATE_XLAT_ITEMS
                                * sizeof(ngx_tailgate_xitem_t));
    if (x->items == NULL) {
        return NULL;
    }

    x->pool = pool;
    x->tag = tag;
    x->sse = sse ? 1 : 0;
    x->created = created;
    x->line_start = 1;
    x->call_index = -1;

    x->id_len = ngx_min(id->len, NGX_TAILGATE_XLAT_ID);
    ngx_memcpy(x->id, id->data, x->id_len);

    len = ngx_escape_json(NULL, model->data, model->len) + model->len;

    x->model.data = ngx_pnalloc(pool, len ? len : 1);
    if (x->model.data == NULL) {
        return NULL;
    }

    x->model.len = (u_char *) ngx_escape_json(x->model.data, model->data,
                                              model->len)
                   - x->model.data;

    return x;
}


ngx_int_t
ngx_tailgate_xlat_feed(ngx_tailgate_xlat_t *x, u_char *p, u_char *end,
    ngx_chain_t ***ll)
{
    u_char     c;
    ngx_int_t  rc;

    x->ll = ll;
    x->buf = NULL;

    if (x->sse && !x->started && ngx_tailgate_xlat_start(x) != NGX_OK) {
        return NGX_ERROR;
    }

    if (!x->sse) {
        rc = ngx_tailgate_xlat_read(x, p, end);
        x->ll = NULL;
        return rc;
    }

    /* the event stream's lines: data goes to the reader, the rest not */

    while (p < end && !x->ended) {
        c = *p;

        if (x->after_cr) {
            x->after_cr = 0;

            if (c == '\n') {
                p++;
                continue;
            }
        }

        if (x->in_data) {
            u_char  *start = p;

            if (x->data_space) {
                x->data_space = 0;

                if (c == ' ') {
                    p++;
                    continue;
                }
            }

            while (p < end && *p != '\n' && *p != '\r') {
                p++;
            }

            if (p > start && ngx_tailgate_xlat_read(x, start, p) != NGX_OK) {
                return NGX_ERROR;
            }

            if (p == end) {
                break;
            }

            x->in_data = 0;
            x->line_start = 1;
            x->after_cr = (*p == '\r');
            p++;
            continue;
        }

        if (c == '\n' || c == '\r') {
            x->after_cr = (c == '\r');
            p++;

            if (x->line_start) {
                if (x->event_data
                    && ngx_tailgate_xlat_event_end(x) != NGX_OK)
                {
                    return NGX_ERROR;
                }

                continue;
            }

            x->line_start = 1;
            x->in_field = 0;
            x->skip_line = 0;
            continue;
        }

        p++;

        if (x->skip_line) {
            continue;
        }

        if (x->line_start) {
            x->line_start = 0;
            x->in_field = 1;
            x->field_len = 0;
        }

        if (!x->in_field) {
            continue;
        }

        if (c == ':') {
            x->in_field = 0;

            if (x->field_len == 4 && ngx_strncmp(x->field, "data", 4) == 0) {
                if (x->event_data) {
                    /* lines of one event's data are joined by a newline */
                    if (ngx_tailgate_xlat_read(x, (u_char *) "\n",
                                               (u_char *) "\n" + 1)
                        != NGX_OK)
                    {
                        return NGX_ERROR;
                    }
                }

                x->in_data = 1;
                x->data_space = 1;
                x->event_data = 1;

            } else {
                x->skip_line = 1;
            }

            continue;
        }

        if (x->field_len == sizeof(x->field)) {
            x->skip_line = 1;
            continue;
        }

        x->field[x->field_len++] = c;
    }

    x->ll = NULL;

    return NGX_OK;
}


ngx_int_t
ngx_tailgate_xlat_end(ngx_tailgate_xlat_t *x, ngx_chain_t ***ll)
{
    ngx_int_t  rc;

    if (x->ended) {
        return NGX_OK;
    }

    if (!x->sse) {
        return ngx_tailgate_xlat_fail(x, "invalid_provider_response",
                         "The provider's answer ended before it was "
                         "complete, or was not a chat completion.", ll);
    }

    x->ll = ll;
    x->buf = NULL;

    /* an event the stream did not end with a blank line still counts */

    if (x->event_data && ngx_tailgate_xlat_event_end(x) != NGX_OK) {
        return NGX_ERROR;
    }

    if (x->ended) {
        rc = NGX_OK;

    } else if (x->finish != NGX_TAILGATE_XF_NONE) {
        rc = ngx_tailgate_xlat_finish(x);

    } else {
        x->ll = NULL;
        return ngx_tailgate_xlat_fail(x, "stream_broken",
                         "The provider's stream ended before the response "
                         "was complete.", ll);
    }

    x->ll = NULL;

    return rc;
}


ngx_int_t
ngx_tailgate_xlat_fail(ngx_tailgate_xlat_t *x, const char *code,
    const char *message, ngx_chain_t ***ll)
{
    ngx_int_t  rc;

    if (x->ended) {
        return NGX_OK;
    }

    if (ll) {
        x->ll = ll;
        x->buf = NULL;
    }

    if (!x->sse) {
        rc = ngx_tailgate_xlat_json_fail(x, code, message);

        if (ll) {
            x->ll = NULL;
        }

        return rc;
    }

    if (!x->started && ngx_tailgate_xlat_start(x) != NGX_OK) {
        return NGX_ERROR;
    }

    /*
     * A delta event left open by a string cut short is closed first (its
     * escape finished), so that response.failed starts an event of its
     * own.  Nothing more is kept: no event repeats the text now.
     */

    if (x->string_open) {
        x->string_open = 0;

        if (x->state == NGX_TAILGATE_XJ_STRING_ESCAPE
            && ngx_tailgate_xlat_literal(x, "\\") != NGX_OK)
        {
            return NGX_ERROR;
        }

        for ( /* void */ ; x->json_hex; x->json_hex--) {
            if (ngx_tailgate_xlat_literal(x, "0") != NGX_OK) {
                return NGX_ERROR;
            }
        }

        rc = (x->kind == NGX_TAILGATE_XK_CALL_ARGS)
             ? ngx_tailgate_xlat_literal(x, "\"}\n\n")
             : ngx_tailgate_xlat_literal(x, "\",\"logprobs\":[]}\n\n");

        if (rc != NGX_OK) {
            return NGX_ERROR;
        }
    }

    x->ended = 1;
    x->failed = 1;

    if (ngx_tailgate_xlat_event(x, "response.failed") != NGX_OK
        || ngx_tailgate_xlat_literal(x, ",\"response\":") != NGX_OK
        || ngx_tailgate_xlat_response(x, "failed", 0) != NGX_OK
        || ngx_tailgate_xlat_printf(x, ",\"error\":{\"code\":\"%s\","
                                    "\"message\":\"%s\"}}}\n\n", code,
                                    message)
           != NGX_OK
        || ngx_tailgate_xlat_event(x, "error") != NGX_OK
        || ngx_tailgate_xlat_printf(x, ",\"code\":\"%s\",\"message\":\"%s\","
                                    "\"param\":null}\n\n", code, message)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ll) {
        x->ll = NULL;
    }

    return NGX_OK;
}


void
ngx_tailgate_xlat_sent(ngx_tailgate_xlat_t *x, ngx_chain_t *out)
{
    ngx_chain_update_chains(x->pool, &x->free, &x->busy, &out, x->tag);
}


ngx_int_t
ngx_tailgate_xlat_outcome(ngx_tailgate_xlat_t *x)
{
    if (x->failed) {
        return NGX_ERROR;
    }

    if (x->ended || x->done_event || x->finish != NGX_TAILGATE_XF_NONE) {
        return NGX_OK;
    }

    return NGX_AGAIN;
}


/* the JSON reader: resumable at any byte */

static ngx_int_t
ngx_tailgate_xlat_read(ngx_tailgate_xlat_t *x, u_char *p, u_char *end)
{
    u_char              c, *start;
    ngx_tailgate_xk_e   kind;

    while (p < end) {
        c = *p;

        if (x->ended && x->sse) {
            return NGX_OK;
        }

        switch (x->state) {

        case NGX_TAILGATE_XJ_DONE:
        case NGX_TAILGATE_XJ_IGNORE:
            return NGX_OK;

        case NGX_TAILGATE_XJ_STRING:

            /*
             * The four digits of a \uXXXX: what is not one ends it with
             * zeros, so that a broken provider's string stays a string.
             */

            if (x->json_hex) {
                if ((c >= '0' && c <= '9') || ((c | 0x20) >= 'a'
                                               && (c | 0x20) <= 'f'))
                {
                    if (ngx_tailgate_xlat_bytes(x, p, 1) != NGX_OK) {
                        return NGX_ERROR;
                    }

                    p++;
                    x->json_hex--;
                    continue;
                }

                while (x->json_hex) {
                    x->json_hex--;

                    if (ngx_tailgate_xlat_bytes(x, (u_char *) "0", 1)
                        != NGX_OK)
                    {
                        return NGX_ERROR;
                    }
                }
            }

            start = p;

            while (p < end && *p != '"' && *p != '\\') {
                p++;
            }

            if (p < end && *p == '\\') {
                p++;
                x->state = NGX_TAILGATE_XJ_STRING_ESCAPE;
            }

            if (p > start
                && ngx_tailgate_xlat_bytes(x, start, p - start) != NGX_OK)
            {
                return NGX_ERROR;
            }

            if (p < end && *p == '"' && x->state == NGX_TAILGATE_XJ_STRING) {
                p++;
                x->state = NGX_TAILGATE_XJ_AFTER;

                if (ngx_tailgate_xlat_string_end(x) != NGX_OK) {
                    return NGX_ERROR;
                }
            }

            continue;

        case NGX_TAILGATE_XJ_SKIP:
            p++;

            if (c == '"') {
                x->state = NGX_TAILGATE_XJ_SKIP_STRING;

            } else if (c == '{' || c == '[') {
                x->skip++;

            } else if ((c == '}' || c == ']') && --x->skip == 0) {
                x->state = NGX_TAILGATE_XJ_AFTER;
            }

            continue;

        case NGX_TAILGATE_XJ_SKIP_STRING:
            p++;

            if (c == '\\') {
                x->state = NGX_TAILGATE_XJ_SKIP_ESCAPE;

            } else if (c == '"') {
                x->state = NGX_TAILGATE_XJ_SKIP;
            }

            continue;

        case NGX_TAILGATE_XJ_SKIP_ESCAPE:
            p++;
            x->state = NGX_TAILGATE_XJ_SKIP_STRING;
            continue;

        case NGX_TAILGATE_XJ_STRING_ESCAPE:

            /*
             * The escape's next byte.  One JSON has no escape for is the
             * backslash's own: "\\" and the byte, as the text it was.
             */

            if (ngx_strchr("\"\\/bfnrtu", c) == NULL || c == '\0') {
                if (ngx_tailgate_xlat_bytes(x, (u_char *) "\\", 1)
                    != NGX_OK)
                {
                    return NGX_ERROR;
                }

                x->state = NGX_TAILGATE_XJ_STRING;
                continue;
            }

            if (ngx_tailgate_xlat_bytes(x, p, 1) != NGX_OK) {
                return NGX_ERROR;
            }

            x->json_hex = (*p == 'u') ? 4 : 0;
            p++;
            x->state = NGX_TAILGATE_XJ_STRING;
            continue;

        default:
            break;
        }

        p++;

        if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
            if (x->state == NGX_TAILGATE_XJ_SCALAR) {
                ngx_tailgate_xlat_scalar(x);
                x->state = NGX_TAILGATE_XJ_AFTER;
            }

            continue;
        }

        switch (x->state) {

        case NGX_TAILGATE_XJ_KEY:
            if (c == '"') {
                x->state = NGX_TAILGATE_XJ_COLON;

            } else if (c == '\\') {
                x->key_len = sizeof(x->key) + 1;     /* not one we read */
                x->state = NGX_TAILGATE_XJ_KEY_ESCAPE;

            } else if (x->key_len < sizeof(x->key)) {
                x->key[x->key_len++] = c;

            } else {
                x->key_len = sizeof(x->key) + 1;
            }

            continue;

        case NGX_TAILGATE_XJ_KEY_ESCAPE:
            x->state = NGX_TAILGATE_XJ_KEY;
            continue;

        case NGX_TAILGATE_XJ_COLON:
            if (c != ':') {
                x->state = NGX_TAILGATE_XJ_IGNORE;
                return NGX_OK;
            }

            x->state = NGX_TAILGATE_XJ_VALUE;
            continue;

        case NGX_TAILGATE_XJ_MEMBER:
            if (c == '"') {
                x->key_len = 0;
                x->state = NGX_TAILGATE_XJ_KEY;
                continue;
            }

            if (c == '}' && x->elements[x->depth - 1] == 0) {
                goto close;
            }

            x->state = NGX_TAILGATE_XJ_IGNORE;
            return NGX_OK;

        case NGX_TAILGATE_XJ_SCALAR:
            if (c == ',' || c == '}' || c == ']') {
                ngx_tailgate_xlat_scalar(x);
                x->state = NGX_TAILGATE_XJ_AFTER;
                p--;
                continue;
            }

            if (c >= '0' && c <= '9' && !x->number_done) {
                x->number = (x->number < 100000000000000ULL)
                            ? x->number * 10 + (c - '0') : x->number;

            } else {
                x->number_done = 1;
            }

            continue;

        case NGX_TAILGATE_XJ_AFTER:
            if (x->depth == 0) {
                x->state = NGX_TAILGATE_XJ_DONE;
                return NGX_OK;
            }

            if (c == ',') {
                x->elements[x->depth - 1]++;
                x->state = x->object[x->depth - 1] ? NGX_TAILGATE_XJ_MEMBER
                                                   : NGX_TAILGATE_XJ_VALUE;
                continue;
            }

            if ((c == '}' && x->object[x->depth - 1])
                || (c == ']' && !x->object[x->depth - 1]))
            {
                goto close;
            }

            x->state = NGX_TAILGATE_XJ_IGNORE;
            return NGX_OK;

        case NGX_TAILGATE_XJ_VALUE:
            if (c == ']' && x->depth && !x->object[x->depth - 1]
                && x->elements[x->depth - 1] == 0)
            {
                goto close;
            }

            kind = ngx_tailgate_xlat_classify(x);

            if (c == '{' || c == '[') {
                if (x->depth == 0 && c == '[') {
                    /* data: [DONE] */
                    x->done_event = 1;
                    x->state = NGX_TAILGATE_XJ_IGNORE;
                    return NGX_OK;
                }

                if (x->depth == NGX_TAILGATE_XLAT_DEPTH) {
                    /* nothing read lies this deep: passed over whole */
                    x->skip = 1;
                    x->state = NGX_TAILGATE_XJ_SKIP;
                    continue;
                }

                x->stack[x->depth] = (u_char) kind;
                x->object[x->depth] = (c == '{');
                x->elements[x->depth] = 0;
                x->depth++;

                x->state = (c == '{') ? NGX_TAILGATE_XJ_MEMBER
                                      : NGX_TAILGATE_XJ_VALUE;

                if (ngx_tailgate_xlat_open(x, kind) != NGX_OK) {
                    return NGX_ERROR;
                }

                continue;
            }

            if (x->depth == 0) {
                x->state = NGX_TAILGATE_XJ_IGNORE;
                return NGX_OK;
            }

            x->kind = kind;

            if (c == '"') {
                x->state = NGX_TAILGATE_XJ_STRING;

                if (ngx_tailgate_xlat_string(x, kind) != NGX_OK) {
                    return NGX_ERROR;
                }

                continue;
            }

            x->state = NGX_TAILGATE_XJ_SCALAR;
            x->number = (c >= '0' && c <= '9') ? (uint64_t) (c - '0') : 0;
            x->number_done = !(c >= '0' && c <= '9');
            continue;

        default:
            continue;
        }

    close:

        x->depth--;
        kind = (ngx_tailgate_xk_e) x->stack[x->depth];
        x->state = NGX_TAILGATE_XJ_AFTER;

        if (ngx_tailgate_xlat_close(x, kind) != NGX_OK) {
            return NGX_ERROR;
        }

        if (x->depth == 0) {
            x->state = NGX_TAILGATE_XJ_DONE;
        }
    }

    return NGX_OK;
}


static void
ngx_tailgate_xlat_reset(ngx_tailgate_xlat_t *x)
{
    x->state = NGX_TAILGATE_XJ_VALUE;
    x->depth = 0;
    x->done_event = 0;
    x->error_event = 0;
    x->event_data = 0;
    x->string_open = 0;
    x->string_keep = 0;
    x->string_send = 0;
    x->json_hex = 0;
}


#define ngx_tailgate_xlat_key_is(x, s)                                        \
    ((x)->key_len == sizeof(s) - 1                                            \
     && ngx_strncmp((x)->key, s, sizeof(s) - 1) == 0)


/* what the value about to be read is, from its container and its key */

static ngx_tailgate_xk_e
ngx_tailgate_xlat_classify(ngx_tailgate_xlat_t *x)
{
    ngx_tailgate_xk_e  parent;

    if (x->depth == 0) {
        return NGX_TAILGATE_XK_ROOT;
    }

    parent = (ngx_tailgate_xk_e) x->stack[x->depth - 1];

    if (!x->object[x->depth - 1]) {
        switch (parent) {
        case NGX_TAILGATE_XK_CHOICES:
            /* the gateway never asks for more than one choice */
            return x->elements[x->depth - 1] == 0 ? NGX_TAILGATE_XK_CHOICE
                                                  : NGX_TAILGATE_XK_OTHER;
        case NGX_TAILGATE_XK_TOOL_CALLS:
            return NGX_TAILGATE_XK_TOOL_CALL;
        default:
            return NGX_TAILGATE_XK_OTHER;
        }
    }

    switch (parent) {

    case NGX_TAILGATE_XK_ROOT:
        if (ngx_tailgate_xlat_key_is(x, "choices")) {
            return NGX_TAILGATE_XK_CHOICES;
        }
        if (ngx_tailgate_xlat_key_is(x, "usage")) {
            return NGX_TAILGATE_XK_USAGE;
        }
        if (ngx_tailgate_xlat_key_is(x, "error")) {
            return NGX_TAILGATE_XK_ERROR;
        }
        if (ngx_tailgate_xlat_key_is(x, "created")) {
            return NGX_TAILGATE_XK_CREATED;
        }
        break;

    case NGX_TAILGATE_XK_CHOICE:
        if (ngx_tailgate_xlat_key_is(x, "delta")
            || ngx_tailgate_xlat_key_is(x, "message"))
        {
            return NGX_TAILGATE_XK_MESSAGE;
        }
        if (ngx_tailgate_xlat_key_is(x, "finish_reason")) {
            return NGX_TAILGATE_XK_FINISH;
        }
        break;

    case NGX_TAILGATE_XK_MESSAGE:
        if (ngx_tailgate_xlat_key_is(x, "content")) {
            return NGX_TAILGATE_XK_CONTENT;
        }
        if (ngx_tailgate_xlat_key_is(x, "refusal")) {
            return NGX_TAILGATE_XK_REFUSAL;
        }
        if (ngx_tailgate_xlat_key_is(x, "tool_calls")) {
            return NGX_TAILGATE_XK_TOOL_CALLS;
        }
        break;

    case NGX_TAILGATE_XK_TOOL_CALL:
        if (ngx_tailgate_xlat_key_is(x, "id")) {
            return NGX_TAILGATE_XK_CALL_ID;
        }
        if (ngx_tailgate_xlat_key_is(x, "index")) {
            return NGX_TAILGATE_XK_CALL_INDEX;
        }
        if (ngx_tailgate_xlat_key_is(x, "function")) {
            return NGX_TAILGATE_XK_FUNCTION;
        }
        break;

    case NGX_TAILGATE_XK_FUNCTION:
        if (ngx_tailgate_xlat_key_is(x, "name")) {
            return NGX_TAILGATE_XK_CALL_NAME;
        }
        if (ngx_tailgate_xlat_key_is(x, "arguments")) {
            return NGX_TAILGATE_XK_CALL_ARGS;
        }
        break;

    case NGX_TAILGATE_XK_USAGE:
        if (ngx_tailgate_xlat_key_is(x, "prompt_tokens")) {
            return NGX_TAILGATE_XK_PROMPT;
        }
        if (ngx_tailgate_xlat_key_is(x, "completion_tokens")) {
            return NGX_TAILGATE_XK_COMPLETION;
        }
        if (ngx_tailgate_xlat_key_is(x, "total_tokens")) {
            return NGX_TAILGATE_XK_TOTAL;
        }
        if (ngx_tailgate_xlat_key_is(x, "prompt_tokens_details")) {
            return NGX_TAILGATE_XK_PROMPT_DETAILS;
        }
        if (ngx_tailgate_xlat_key_is(x, "completion_tokens_details")) {
            return NGX_TAILGATE_XK_COMPLETION_DETAILS;
        }
        break;

    case NGX_TAILGATE_XK_PROMPT_DETAILS:
        if (ngx_tailgate_xlat_key_is(x, "cached_tokens")) {
            return NGX_TAILGATE_XK_CACHED;
        }
        break;

    case NGX_TAILGATE_XK_COMPLETION_DETAILS:
        if (ngx_tailgate_xlat_key_is(x, "reasoning_tokens")) {
            return NGX_TAILGATE_XK_REASONING;
        }
        break;

    default:
        break;
    }

    return NGX_TAILGATE_XK_OTHER;
}


static ngx_int_t
ngx_tailgate_xlat_open(ngx_tailgate_xlat_t *x, ngx_tailgate_xk_e kind)
{
    switch (kind) {

    case NGX_TAILGATE_XK_ROOT:
        if (x->sse) {
            return NGX_OK;
        }

        x->json_root = 1;

        return ngx_tailgate_xlat_printf(x, "{\"id\":\"resp_%*s\","
                                        "\"object\":\"response\","
                                        "\"created_at\":%T,\"output\":[",
                                        x->id_len, x->id, x->created);

    case NGX_TAILGATE_XK_ERROR:
        if (x->depth == 2) {
            x->error_event = 1;
        }

        return NGX_OK;

    case NGX_TAILGATE_XK_USAGE:
        x->usage_seen = 1;
        return NGX_OK;

    case NGX_TAILGATE_XK_TOOL_CALL:
        x->call_index = -1;
        x->call = NULL;
        x->call_id_len = 0;
        x->call_name_len = 0;

        if (x->sse) {
            return NGX_OK;
        }

        /* a JSON answer's call is written as its members come */

        x->json_args = 0;
        x->json_call = 1;
        x->json_items++;

        return ngx_tailgate_xlat_printf(x, "%s{\"type\":\"function_call\","
                                        "\"id\":\"fc_%*s_%ui\","
                                        "\"status\":\"completed\"",
                                        x->json_items > 1 ? "," : "",
                                        x->id_len, x->id, x->json_items);

    default:
        return NGX_OK;
    }
}


static ngx_int_t
ngx_tailgate_xlat_close(ngx_tailgate_xlat_t *x, ngx_tailgate_xk_e kind)
{
    ngx_tailgate_xitem_t  *it;

    switch (kind) {

    case NGX_TAILGATE_XK_TOOL_CALL:
        if (!x->sse) {
            return ngx_tailgate_xlat_json_call_end(x);
        }

        it = ngx_tailgate_xlat_resolve(x);

        if (it == NULL) {
            return x->too_much ? NGX_OK : NGX_ERROR;
        }

        if (!it->added && ngx_tailgate_xlat_added(x, it) != NGX_OK) {
            return NGX_ERROR;
        }

        x->call = NULL;
        return NGX_OK;

    case NGX_TAILGATE_XK_ROOT:
        if (x->sse) {
            return NGX_OK;
        }

        x->ended = 1;

        return ngx_tailgate_xlat_response(x, NULL, 0);

    default:
        return NGX_OK;
    }
}


/* a JSON answer's call item ends: what a client needs of it, at least */

static ngx_int_t
ngx_tailgate_xlat_json_call_end(ngx_tailgate_xlat_t *x)
{
    x->json_call = 0;

    if (x->call_id_len == 0
        && ngx_tailgate_xlat_printf(x, ",\"call_id\":\"call_%*s_%ui\"",
                                    x->id_len, x->id, x->json_items)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (x->call_name_len == 0
        && ngx_tailgate_xlat_literal(x, ",\"name\":\"\"") != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (!x->json_args
        && ngx_tailgate_xlat_literal(x, ",\"arguments\":\"\"") != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_tailgate_xlat_literal(x, "}");
}


/*
 * A JSON answer that did not come whole (cut off, or not JSON the reader
 * can follow): what was written is closed where it stands - the string,
 * the call - and the response ends failed, so the client reads one JSON
 * object whatever the provider sent.
 */

static ngx_int_t
ngx_tailgate_xlat_json_fail(ngx_tailgate_xlat_t *x, const char *code,
    const char *message)
{
    ngx_uint_t  in_string;

    if (!x->json_root) {
        x->json_root = 1;

        if (ngx_tailgate_xlat_printf(x, "{\"id\":\"resp_%*s\","
                                     "\"object\":\"response\","
                                     "\"created_at\":%T,\"output\":[",
                                     x->id_len, x->id, x->created)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    in_string = (x->state == NGX_TAILGATE_XJ_STRING
                 || x->state == NGX_TAILGATE_XJ_STRING_ESCAPE)
                && x->string_send;

    if (in_string && ngx_tailgate_xlat_string_cut(x) != NGX_OK) {
        return NGX_ERROR;
    }

    x->ended = 1;
    x->failed = 1;

    if (x->json_call && ngx_tailgate_xlat_json_call_end(x) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_tailgate_xlat_response(x, "failed", 0) != NGX_OK
        || ngx_tailgate_xlat_printf(x, ",\"error\":{\"code\":\"%s\","
                                    "\"message\":\"%s\"}}", code, message)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * A string that stops where it stands (its event or its answer ended): an
 * escape begun is finished - "\\" for a lone backslash, zeros for the
 * digits of a \u - and the string closed.
 */

static ngx_int_t
ngx_tailgate_xlat_string_cut(ngx_tailgate_xlat_t *x)
{
    if (x->state == NGX_TAILGATE_XJ_STRING_ESCAPE
        && ngx_tailgate_xlat_bytes(x, (u_char *) "\\", 1) != NGX_OK)
    {
        return NGX_ERROR;
    }

    while (x->json_hex) {
        x->json_hex--;

        if (ngx_tailgate_xlat_bytes(x, (u_char *) "0", 1) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    x->state = NGX_TAILGATE_XJ_AFTER;

    /* a finish reason cut short says nothing */
    if (x->kind == NGX_TAILGATE_XK_FINISH) {
        x->kind = NGX_TAILGATE_XK_OTHER;
    }

    return ngx_tailgate_xlat_string_end(x);
}


/* a string value starts: kind says what it is */

static ngx_int_t
ngx_tailgate_xlat_string(ngx_tailgate_xlat_t *x, ngx_tailgate_xk_e kind)
{
    ngx_tailgate_xitem_t  *it;

    x->string_item = NULL;
    x->string_open = 0;
    x->string_keep = 0;
    x->string_send = 0;
    x->key_len = 0;

    switch (kind) {

    case NGX_TAILGATE_XK_CONTENT:
    case NGX_TAILGATE_XK_REFUSAL:
        if (!x->sse) {
            x->string_send = 1;
            x->json_items++;

            return ngx_tailgate_xlat_printf(x, "%s{\"type\":\"message\","
                               "\"id\":\"msg_%*s_%ui\",\"status\":"
                               "\"completed\",\"role\":\"assistant\","
                               "\"content\":[{\"type\":\"%s\","
                               "\"annotations\":[],\"logprobs\":[],"
                               "\"%s\":\"",
                               x->json_items > 1 ? "," : "", x->id_len, x->id,
                               x->json_items,
                               kind == NGX_TAILGATE_XK_CONTENT
                               ? "output_text" : "refusal",
                               kind == NGX_TAILGATE_XK_CONTENT
                               ? "text" : "refusal");
        }

        /* the message is opened by its first byte: "" opens nothing */
        x->string_keep = 1;
        x->string_send = 1;
        return NGX_OK;

    case NGX_TAILGATE_XK_CALL_ID:
    case NGX_TAILGATE_XK_CALL_NAME:
        if (!x->sse) {
            x->string_send = 1;

            if (kind == NGX_TAILGATE_XK_CALL_ID) {
                x->call_id_len = 1;
                return ngx_tailgate_xlat_literal(x, ",\"call_id\":\"");
            }

            x->call_name_len = 1;
            return ngx_tailgate_xlat_literal(x, ",\"name\":\"");
        }

        return NGX_OK;

    case NGX_TAILGATE_XK_CALL_ARGS:
        if (!x->sse) {
            x->string_send = 1;
            x->json_args = 1;
            return ngx_tailgate_xlat_literal(x, ",\"arguments\":\"");
        }

        it = ngx_tailgate_xlat_resolve(x);

        if (it == NULL) {
            return x->too_much ? NGX_OK : NGX_ERROR;
        }

        x->string_item = it;
        x->string_keep = 1;

        if (!it->added && (it->name_len || x->call_name_len)) {
            if (ngx_tailgate_xlat_added(x, it) != NGX_OK) {
                return NGX_ERROR;
            }
        }

        x->string_send = it->added;
        return NGX_OK;

    case NGX_TAILGATE_XK_FINISH:
        return NGX_OK;

    default:
        return NGX_OK;
    }
}


static ngx_int_t
ngx_tailgate_xlat_bytes(ngx_tailgate_xlat_t *x, u_char *p, size_t n)
{
    u_char                *kept, *end;
    size_t                 room, *kept_len;
    ngx_tailgate_xitem_t  *it;

    switch (x->kind) {

    case NGX_TAILGATE_XK_CALL_ID:
    case NGX_TAILGATE_XK_CALL_NAME:
        if (!x->sse) {
            return ngx_tailgate_xlat_escaped(x, NULL, p, n, 1);
        }

        if (x->kind == NGX_TAILGATE_XK_CALL_ID) {
            kept = x->call_id;
            kept_len = &x->call_id_len;

        } else {
            kept = x->call_name;
            kept_len = &x->call_name_len;
        }

        /* kept as the JSON string's text: a raw control byte escaped */

        for (end = p + n; p < end; p++) {
            room = NGX_TAILGATE_XLAT_NAME - *kept_len;

            if (*p >= 0x20) {
                if (room < 1) {
                    goto too_much;
                }

                kept[(*kept_len)++] = *p;
                continue;
            }

            if (room < 6) {
                goto too_much;
            }

            (void) ngx_sprintf(kept + *kept_len, "\\u%04xd", (int) *p);
            *kept_len += 6;
        }

        return NGX_OK;

    case NGX_TAILGATE_XK_FINISH:
        if (x->key_len + n > sizeof(x->key)) {
            x->key_len = sizeof(x->key) + 1;
            return NGX_OK;
        }

        ngx_memcpy(x->key + x->key_len, p, n);
        x->key_len += n;
        return NGX_OK;

    case NGX_TAILGATE_XK_CONTENT:
    case NGX_TAILGATE_XK_REFUSAL:
    case NGX_TAILGATE_XK_CALL_ARGS:
        break;

    default:
        return NGX_OK;
    }

    if (!x->sse) {
        return x->string_send ? ngx_tailgate_xlat_escaped(x, NULL, p, n, 1)
                              : NGX_OK;
    }

    if (!x->string_keep) {
        return NGX_OK;
    }

    if (x->kind != NGX_TAILGATE_XK_CALL_ARGS && !x->string_open) {
        if (ngx_tailgate_xlat_message(x) != NGX_OK) {
            return x->too_much ? NGX_OK : NGX_ERROR;
        }

        x->string_item = x->current;
    }

    it = x->string_item;

    if (x->string_send && !x->string_open) {
        x->string_open = 1;

        if (it->call) {
            if (ngx_tailgate_xlat_event(x,
                                   "response.function_call_arguments.delta")
                != NGX_OK
                || ngx_tailgate_xlat_item_id(x, it) != NGX_OK
                || ngx_tailgate_xlat_printf(x, ",\"output_index\":%ui,"
                                            "\"delta\":\"",
                                            (ngx_uint_t) (it - x->items))
                   != NGX_OK)
            {
                return NGX_ERROR;
            }

        } else if (ngx_tailgate_xlat_event(x, "response.output_text.delta")
                   != NGX_OK
                   || ngx_tailgate_xlat_item_id(x, it) != NGX_OK
                   || ngx_tailgate_xlat_printf(x, ",\"output_index\":%ui,"
                                               "\"content_index\":0,"
                                               "\"delta\":\"",
                                               (ngx_uint_t) (it - x->items))
                      != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return ngx_tailgate_xlat_escaped(x, it, p, n, x->string_send);

too_much:

    x->too_much = 1;

    return ngx_tailgate_xlat_fail(x, "response_too_large",
                         "The provider's answer is too large for the "
                         "gateway to translate.", NULL);
}


static ngx_int_t
ngx_tailgate_xlat_string_end(ngx_tailgate_xlat_t *x)
{
    ngx_tailgate_xk_e  kind;

    kind = x->kind;
    x->kind = NGX_TAILGATE_XK_OTHER;

    if (kind == NGX_TAILGATE_XK_FINISH) {
        if (ngx_tailgate_xlat_key_is(x, "length")) {
            x->finish = NGX_TAILGATE_XF_LENGTH;

        } else if (ngx_tailgate_xlat_key_is(x, "content_filter")) {
            x->finish = NGX_TAILGATE_XF_FILTER;

        } else {
            x->finish = NGX_TAILGATE_XF_STOP;
        }

        return NGX_OK;
    }

    if (!x->string_send) {
        return NGX_OK;
    }

    if (!x->sse) {
        switch (kind) {
        case NGX_TAILGATE_XK_CONTENT:
        case NGX_TAILGATE_XK_REFUSAL:
            return ngx_tailgate_xlat_literal(x, "\"}]}");
        default:
            return ngx_tailgate_xlat_literal(x, "\"");
        }
    }

    if (!x->string_open) {
        return NGX_OK;
    }

    x->string_open = 0;

    if (kind == NGX_TAILGATE_XK_CALL_ARGS) {
        return ngx_tailgate_xlat_literal(x, "\"}\n\n");
    }

    return ngx_tailgate_xlat_literal(x, "\",\"logprobs\":[]}\n\n");
}


static void
ngx_tailgate_xlat_scalar(ngx_tailgate_xlat_t *x)
{
    switch (x->kind) {

    case NGX_TAILGATE_XK_CALL_INDEX:
        if (!x->number_done || x->number < 1000000) {
            x->call_index = (ngx_int_t) x->number;
        }
        break;

    case NGX_TAILGATE_XK_PROMPT:
        x->usage[0] = x->number;
        break;

    case NGX_TAILGATE_XK_COMPLETION:
        x->usage[1] = x->number;
        break;

    case NGX_TAILGATE_XK_TOTAL:
        x->usage[2] = x->number;
        break;

    case NGX_TAILGATE_XK_CACHED:
        x->usage[3] = x->number;
        break;

    case NGX_TAILGATE_XK_REASONING:
        x->usage[4] = x->number;
        break;

    default:
        break;
    }

    x->kind = NGX_TAILGATE_XK_OTHER;
}


static ngx_int_t
ngx_tailgate_xlat_event_end(ngx_tailgate_xlat_t *x)
{
    ngx_uint_t  done, error;

    if (x->state == NGX_TAILGATE_XJ_SCALAR) {
        ngx_tailgate_xlat_scalar(x);
    }

    done = x->done_event;
    error = x->error_event;

    if ((x->state == NGX_TAILGATE_XJ_STRING
         || x->state == NGX_TAILGATE_XJ_STRING_ESCAPE)
        && ngx_tailgate_xlat_string_cut(x) != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_tailgate_xlat_reset(x);

    if (error) {
        /* the provider's own words may say more than a client should see */
        return ngx_tailgate_xlat_fail(x, "provider_error",
                             "The provider reported an error in the middle "
                             "of its stream.", NULL);
    }

    if (done) {
        return ngx_tailgate_xlat_finish(x);
    }

    return NGX_OK;
}


/* the first events: response.created and response.in_progress */

static ngx_int_t
ngx_tailgate_xlat_start(ngx_tailgate_xlat_t *x)
{
    x->started = 1;

    if (ngx_tailgate_xlat_event(x, "response.created") != NGX_OK
        || ngx_tailgate_xlat_literal(x, ",\"response\":") != NGX_OK
        || ngx_tailgate_xlat_response(x, "in_progress", 0) != NGX_OK
        || ngx_tailgate_xlat_literal(x, "}}\n\n") != NGX_OK
        || ngx_tailgate_xlat_event(x, "response.in_progress") != NGX_OK
        || ngx_tailgate_xlat_literal(x, ",\"response\":") != NGX_OK
        || ngx_tailgate_xlat_response(x, "in_progress", 0) != NGX_OK
        || ngx_tailgate_xlat_literal(x, "}}\n\n") != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* the last events: the open item done, response.completed */

static ngx_int_t
ngx_tailgate_xlat_finish(ngx_tailgate_xlat_t *x)
{
    const char  *type;

    if (x->ended) {
        return NGX_OK;
    }

    if (x->current && ngx_tailgate_xlat_item_done(x, x->current) != NGX_OK) {
        return NGX_ERROR;
    }

    x->ended = 1;

    type = (x->finish == NGX_TAILGATE_XF_LENGTH
            || x->finish == NGX_TAILGATE_XF_FILTER)
           ? "response.incomplete" : "response.completed";

    if (ngx_tailgate_xlat_event(x, type) != NGX_OK
        || ngx_tailgate_xlat_literal(x, ",\"response\":") != NGX_OK
        || ngx_tailgate_xlat_response(x, NULL, 1) != NGX_OK
        || ngx_tailgate_xlat_literal(x, "}\n\n") != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* the message item that text goes to, opened when it is not */

static ngx_int_t
ngx_tailgate_xlat_message(ngx_tailgate_xlat_t *x)
{
    ngx_tailgate_xitem_t  *it;

    if (x->current && !x->current->call) {
        return NGX_OK;
    }

    it = ngx_tailgate_xlat_item(x, 0);
    if (it == NULL) {
        return NGX_ERROR;
    }

    return ngx_tailgate_xlat_added(x, it);
}


/*
 * The call the tool call object being read belongs to: by its index, or
 * a new one when it has an id and the open call has another.  A new call
 * ends the item before it.
 */

static ngx_tailgate_xitem_t *
ngx_tailgate_xlat_resolve(ngx_tailgate_xlat_t *x)
{
    ngx_uint_t             i;
    ngx_tailgate_xitem_t  *it, *cur;

    it = x->call;

    if (it == NULL) {
        cur = (x->current && x->current->call) ? x->current : NULL;

        if (x->call_index >= 0) {
            if (cur && cur->chat_index == x->call_index) {
                it = cur;

            } else {
                for (i = 0; i < x->nitems; i++) {
                    if (x->items[i].call && !x->items[i].done
                        && x->items[i].chat_index == x->call_index)
                    {
                        it = &x->items[i];
                        break;
                    }
                }
            }

        } else if (cur
                   && (x->call_id_len == 0 || cur->id_len == 0
                       || (cur->id_len == x->call_id_len
                           && ngx_memcmp(cur->id, x->call_id,
                                         x->call_id_len) == 0)))
        {
            it = cur;
        }

        if (it == NULL) {
            it = ngx_tailgate_xlat_item(x, 1);
            if (it == NULL) {
                return NULL;
            }

            it->chat_index = x->call_index;
        }

        x->call = it;
    }

    if (it->id_len == 0 && x->call_id_len) {
        ngx_memcpy(it->id, x->call_id, x->call_id_len);
        it->id_len = x->call_id_len;
    }

    if (it->name_len == 0 && x->call_name_len) {
        ngx_memcpy(it->name, x->call_name, x->call_name_len);
        it->name_len = x->call_name_len;
    }

    return it;
}


static ngx_tailgate_xitem_t *
ngx_tailgate_xlat_item(ngx_tailgate_xlat_t *x, ngx_uint_t call)
{
    ngx_tailgate_xitem_t  *it;

    if (x->current && ngx_tailgate_xlat_item_done(x, x->current) != NGX_OK) {
        return NULL;
    }

    if (x->nitems == NGX_TAILGATE_XLAT_ITEMS) {
        x->too_much = 1;
        (void) ngx_tailgate_xlat_fail(x, "response_too_large",
                             "The provider's answer has more items than the "
                             "gateway translates.", NULL);
        return NULL;
    }

    it = &x->items[x->nitems++];
    ngx_memzero(it, sizeof(ngx_tailgate_xitem_t));

    it->call = call;
    it->chat_index = -1;
    x->current = it;

    return it;
}


/* response.output_item.added, and for a message its content part */

static ngx_int_t
ngx_tailgate_xlat_added(ngx_tailgate_xlat_t *x, ngx_tailgate_xitem_t *it)
{
    ngx_uint_t  index;

    it->added = 1;
    index = it - x->items;

    if (ngx_tailgate_xlat_event(x, "response.output_item.added") != NGX_OK
        || ngx_tailgate_xlat_printf(x, ",\"output_index\":%ui,\"item\":",
                                    index) != NGX_OK
        || ngx_tailgate_xlat_item_json(x, it, 0) != NGX_OK
        || ngx_tailgate_xlat_literal(x, "}\n\n") != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (it->call) {
        /* arguments that came before the call could be announced */

        if (it->len
            && (ngx_tailgate_xlat_event(x,
                                   "response.function_call_arguments.delta")
                != NGX_OK
                || ngx_tailgate_xlat_item_id(x, it) != NGX_OK
                || ngx_tailgate_xlat_printf(x, ",\"output_index\":%ui,"
                                            "\"delta\":\"", index)
                   != NGX_OK
                || ngx_tailgate_xlat_text(x, it) != NGX_OK
                || ngx_tailgate_xlat_literal(x, "\"}\n\n") != NGX_OK))
        {
            return NGX_ERROR;
        }

        return NGX_OK;
    }

    if (ngx_tailgate_xlat_event(x, "response.content_part.added") != NGX_OK
        || ngx_tailgate_xlat_item_id(x, it) != NGX_OK
        || ngx_tailgate_xlat_printf(x, ",\"output_index\":%ui,"
                                    "\"content_index\":0,\"part\":"
                                    "{\"type\":\"output_text\",\"text\":\"\","
                                    "\"annotations\":[],\"logprobs\":[]}}\n\n",
                                    index) != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* the *.done events of an item, each with its whole text */

static ngx_int_t
ngx_tailgate_xlat_item_done(ngx_tailgate_xlat_t *x, ngx_tailgate_xitem_t *it)
{
    ngx_uint_t  index;

    if (it->done) {
        return NGX_OK;
    }

    if (!it->added && ngx_tailgate_xlat_added(x, it) != NGX_OK) {
        return NGX_ERROR;
    }

    it->done = 1;
    index = it - x->items;

    if (x->current == it) {
        x->current = NULL;
    }

    if (it->call) {
        if (ngx_tailgate_xlat_event(x,
                                    "response.function_call_arguments.done")
            != NGX_OK
            || ngx_tailgate_xlat_item_id(x, it) != NGX_OK
            || ngx_tailgate_xlat_printf(x, ",\"output_index\":%ui,"
                                        "\"name\":\"%*s\",\"arguments\":\"",
                                        index, it->name_len, it->name)
               != NGX_OK
            || ngx_tailgate_xlat_text(x, it) != NGX_OK
            || ngx_tailgate_xlat_literal(x, "\"}\n\n") != NGX_OK)
        {
            return NGX_ERROR;
        }

    } else if (ngx_tailgate_xlat_event(x, "response.output_text.done")
               != NGX_OK
               || ngx_tailgate_xlat_item_id(x, it) != NGX_OK
               || ngx_tailgate_xlat_printf(x, ",\"output_index\":%ui,"
                                           "\"content_index\":0,\"text\":\"",
                                           index) != NGX_OK
               || ngx_tailgate_xlat_text(x, it) != NGX_OK
               || ngx_tailgate_xlat_literal(x, "\",\"logprobs\":[]}\n\n")
                  != NGX_OK
               || ngx_tailgate_xlat_event(x, "response.content_part.done")
                  != NGX_OK
               || ngx_tailgate_xlat_item_id(x, it) != NGX_OK
               || ngx_tailgate_xlat_printf(x, ",\"output_index\":%ui,"
                                           "\"content_index\":0,\"part\":"
                                           "{\"type\":\"output_text\","
                                           "\"text\":\"", index) != NGX_OK
               || ngx_tailgate_xlat_text(x, it) != NGX_OK
               || ngx_tailgate_xlat_literal(x, "\",\"annotations\":[],"
                                            "\"logprobs\":[]}}\n\n")
                  != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ngx_tailgate_xlat_event(x, "response.output_item.done") != NGX_OK
        || ngx_tailgate_xlat_printf(x, ",\"output_index\":%ui,\"item\":",
                                    index) != NGX_OK
        || ngx_tailgate_xlat_item_json(x, it, 1) != NGX_OK
        || ngx_tailgate_xlat_literal(x, "}\n\n") != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * The response object.  status NULL: the answer's end (completed or
 * incomplete, with usage); full: its output listed.  It is left open
 * for a failure's error member.
 */

static ngx_int_t
ngx_tailgate_xlat_response(ngx_tailgate_xlat_t *x, const char *status,
    ngx_uint_t full)
{
    ngx_uint_t   i;
    const char  *reason;

    if (x->sse && ngx_tailgate_xlat_printf(x, "{\"id\":\"resp_%*s\","
                                           "\"object\":\"response\","
                                           "\"created_at\":%T,",
                                           x->id_len, x->id, x->created)
                  != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (x->sse && ngx_tailgate_xlat_literal(x, "\"output\":[") != NGX_OK) {
        return NGX_ERROR;
    }

    for (i = 0; full && i < x->nitems; i++) {
        if ((i && ngx_tailgate_xlat_literal(x, ",") != NGX_OK)
            || ngx_tailgate_xlat_item_json(x, &x->items[i], 1) != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    reason = NULL;

    if (status == NULL) {
        switch (x->finish) {
        case NGX_TAILGATE_XF_LENGTH:
            reason = "max_output_tokens";
            break;
        case NGX_TAILGATE_XF_FILTER:
            reason = "content_filter";
            break;
        default:
            break;
        }

        status = reason ? "incomplete" : "completed";
    }

    if (ngx_tailgate_xlat_printf(x, "],\"status\":\"%s\",\"model\":\"",
                                 status) != NGX_OK
        || ngx_tailgate_xlat_write(x, x->model.data, x->model.len) != NGX_OK
        || ngx_tailgate_xlat_literal(x, "\",\"parallel_tool_calls\":true,")
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (reason) {
        if (ngx_tailgate_xlat_printf(x, "\"incomplete_details\":"
                                     "{\"reason\":\"%s\"},", reason)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

    } else if (ngx_tailgate_xlat_literal(x, "\"incomplete_details\":null,")
               != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ngx_strcmp(status, "failed") == 0) {
        return ngx_tailgate_xlat_literal(x, "\"usage\":null");
    }

    if (ngx_strcmp(status, "in_progress") == 0) {
        return ngx_tailgate_xlat_literal(x, "\"usage\":null,\"error\":null");
    }

    if (ngx_tailgate_xlat_usage(x) != NGX_OK
        || ngx_tailgate_xlat_literal(x, ",\"error\":null}") != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_tailgate_xlat_usage(ngx_tailgate_xlat_t *x)
{
    uint64_t  total;

    total = x->usage[2] ? x->usage[2] : x->usage[0] + x->usage[1];

    return ngx_tailgate_xlat_printf(x, "\"usage\":{\"input_tokens\":%uL,"
                                    "\"input_tokens_details\":"
                                    "{\"cached_tokens\":%uL},"
                                    "\"output_tokens\":%uL,"
                                    "\"output_tokens_details\":"
                                    "{\"reasoning_tokens\":%uL},"
                                    "\"total_tokens\":%uL}",
                                    x->usage[0], x->usage[3], x->usage[1],
                                    x->usage[4], total);
}


/* an item as the Responses API shows it; done: with its whole text */

static ngx_int_t
ngx_tailgate_xlat_item_json(ngx_tailgate_xlat_t *x, ngx_tailgate_xitem_t *it,
    ngx_uint_t done)
{
    ngx_uint_t  index;

    index = it - x->items;

    if (it->call) {
        if (ngx_tailgate_xlat_printf(x, "{\"type\":\"function_call\","
                                     "\"id\":\"fc_%*s_%ui\",\"status\":\"%s\","
                                     "\"name\":\"%*s\",\"call_id\":\"",
                                     x->id_len, x->id, index,
                                     done ? "completed" : "in_progress",
                                     it->name_len, it->name) != NGX_OK)
        {
            return NGX_ERROR;
        }

        if (it->id_len) {
            if (ngx_tailgate_xlat_write(x, it->id, it->id_len) != NGX_OK) {
                return NGX_ERROR;
            }

        } else if (ngx_tailgate_xlat_printf(x, "call_%*s_%ui", x->id_len,
                                            x->id, index) != NGX_OK)
        {
            return NGX_ERROR;
        }

        if (ngx_tailgate_xlat_literal(x, "\",\"arguments\":\"") != NGX_OK
            || (done && ngx_tailgate_xlat_text(x, it) != NGX_OK)
            || ngx_tailgate_xlat_literal(x, "\"}") != NGX_OK)
        {
            return NGX_ERROR;
        }

        return NGX_OK;
    }

    if (ngx_tailgate_xlat_printf(x, "{\"type\":\"message\","
                                 "\"id\":\"msg_%*s_%ui\",\"status\":\"%s\","
                                 "\"role\":\"assistant\",\"content\":[",
                                 x->id_len, x->id, index,
                                 done ? "completed" : "in_progress")
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (done
        && (ngx_tailgate_xlat_literal(x, "{\"type\":\"output_text\","
                                      "\"text\":\"") != NGX_OK
            || ngx_tailgate_xlat_text(x, it) != NGX_OK
            || ngx_tailgate_xlat_literal(x, "\",\"annotations\":[],"
                                         "\"logprobs\":[]}") != NGX_OK))
    {
        return NGX_ERROR;
    }

    return ngx_tailgate_xlat_literal(x, "]}");
}


static ngx_int_t
ngx_tailgate_xlat_item_id(ngx_tailgate_xlat_t *x, ngx_tailgate_xitem_t *it)
{
    return ngx_tailgate_xlat_printf(x, ",\"item_id\":\"%s_%*s_%ui\"",
                                    it->call ? "fc" : "msg", x->id_len, x->id,
                                    (ngx_uint_t) (it - x->items));
}


/* "event: TYPE\ndata: {"type":TYPE,"sequence_number":N": left open */

static ngx_int_t
ngx_tailgate_xlat_event(ngx_tailgate_xlat_t *x, const char *type)
{
    return ngx_tailgate_xlat_printf(x, "event: %s\ndata: {\"type\":\"%s\","
                                    "\"sequence_number\":%uL", type, type,
                                    x->seq++);
}


/* an item's kept text, written again: the same bytes, not a copy */

static ngx_int_t
ngx_tailgate_xlat_text(ngx_tailgate_xlat_t *x, ngx_tailgate_xitem_t *it)
{
    ngx_tailgate_xchunk_t  *c;

    for (c = it->first; c; c = c->next) {
        if (c->last > c->data
            && ngx_tailgate_xlat_ref(x, c->data, c->last - c->data) != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_tailgate_xlat_keep(ngx_tailgate_xlat_t *x, ngx_tailgate_xitem_t *it,
    u_char *p, size_t n)
{
    size_t                  size;
    ngx_tailgate_xchunk_t  *c;

    if (x->stored + n > NGX_TAILGATE_XLAT_TEXT_MAX) {
        x->too_much = 1;
        return ngx_tailgate_xlat_fail(x, "response_too_large",
                             "The provider's answer is too large for the "
                             "gateway to translate.", NULL);
    }

    x->stored += n;
    it->len += n;

    while (n) {
        c = it->last;

        if (c == NULL || c->last == c->end) {
            size = NGX_TAILGATE_XLAT_CHUNK;

            c = ngx_palloc(x->pool, offsetof(ngx_tailgate_xchunk_t, data)
                                    + size);
            if (c == NULL) {
                return NGX_ERROR;
            }

            c->next = NULL;
            c->last = c->data;
            c->end = c->data + size;

            if (it->last) {
                it->last->next = c;

            } else {
                it->first = c;
            }

            it->last = c;
        }

        size = ngx_min(n, (size_t) (c->end - c->last));
        c->last = ngx_cpymem(c->last, p, size);
        p += size;
        n -= size;
    }

    return NGX_OK;
}


/*
 * A string's raw bytes, kept for the item (keep) and sent (send); a
 * control character a JSON string may not hold raw is escaped.
 */

static ngx_int_t
ngx_tailgate_xlat_escaped(ngx_tailgate_xlat_t *x, ngx_tailgate_xitem_t *keep,
    u_char *p, size_t n, ngx_uint_t send)
{
    u_char   *end, *start, esc[6];
    ngx_int_t  rc;

    static u_char  hex[] = "0123456789abcdef";

    end = p + n;

    while (p < end) {
        start = p;

        while (p < end && *p >= 0x20) {
            p++;
        }

        if (p > start) {
            if (keep && ngx_tailgate_xlat_keep(x, keep, start, p - start)
                        != NGX_OK)
            {
                return NGX_ERROR;
            }

            if (x->ended) {
                return NGX_OK;
            }

            if (send && ngx_tailgate_xlat_write(x, start, p - start)
                        != NGX_OK)
            {
                return NGX_ERROR;
            }
        }

        if (p == end) {
            break;
        }

        esc[0] = '\\';
        esc[1] = 'u';
        esc[2] = '0';
        esc[3] = '0';
        esc[4] = hex[*p >> 4];
        esc[5] = hex[*p & 0xf];
        p++;

        rc = keep ? ngx_tailgate_xlat_keep(x, keep, esc, 6) : NGX_OK;

        if (rc != NGX_OK) {
            return rc;
        }

        if (x->ended) {
            return NGX_OK;
        }

        if (send && ngx_tailgate_xlat_write(x, esc, 6) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/* bytes for the client: into our buffers, reused once sent */

static ngx_int_t
ngx_tailgate_xlat_write(ngx_tailgate_xlat_t *x, u_char *p, size_t n)
{
    size_t        size;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    if (x->ll == NULL) {
        return NGX_OK;
    }

    while (n) {
        b = x->buf;

        if (b == NULL || b->last == b->end) {
            cl = ngx_chain_get_free_buf(x->pool, &x->free);
            if (cl == NULL) {
                return NGX_ERROR;
            }

            b = cl->buf;

            if (b->start == NULL || b->tag != x->tag) {
                b->start = ngx_palloc(x->pool, NGX_TAILGATE_XLAT_BUF);
                if (b->start == NULL) {
                    return NGX_ERROR;
                }

                b->end = b->start + NGX_TAILGATE_XLAT_BUF;
            }

            b->pos = b->start;
            b->last = b->start;
            b->temporary = 1;
            b->flush = 0;
            b->tag = x->tag;

            **x->ll = cl;
            *x->ll = &cl->next;
            cl->next = NULL;

            x->buf = b;
        }

        size = ngx_min(n, (size_t) (b->end - b->last));
        b->last = ngx_cpymem(b->last, p, size);
        p += size;
        n -= size;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_tailgate_xlat_printf(ngx_tailgate_xlat_t *x, const char *fmt, ...)
{
    u_char   *p, text[NGX_TAILGATE_XLAT_NAME * 2 + 512];
    va_list   args;

    va_start(args, fmt);
    p = ngx_vslprintf(text, text + sizeof(text), fmt, args);
    va_end(args);

    return ngx_tailgate_xlat_write(x, text, p - text);
}


/*
 * Bytes kept elsewhere, linked as they are.  The link goes back to nginx
 * once sent; the buffer, not ours to reuse (its tag is not), stays.
 */

static ngx_int_t
ngx_tailgate_xlat_ref(ngx_tailgate_xlat_t *x, u_char *p, size_t n)
{
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    if (x->ll == NULL) {
        return NGX_OK;
    }

    b = ngx_calloc_buf(x->pool);
    if (b == NULL) {
        return NGX_ERROR;
    }

    cl = ngx_alloc_chain_link(x->pool);
    if (cl == NULL) {
        return NGX_ERROR;
    }

    b->start = p;
    b->pos = p;
    b->last = p + n;
    b->end = p + n;
    b->memory = 1;

    cl->buf = b;
    cl->next = NULL;
    **x->ll = cl;
    *x->ll = &cl->next;

    x->buf = NULL;

    return NGX_OK;
}
