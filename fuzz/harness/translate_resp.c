
/*
 * Copyright (C) The Tailgate authors
 *
 * translate_resp: a chat provider's answer turned into a Responses API
 * answer as its bytes pass (ngx_tailgate_translate_resp.c), fed as the
 * body filter feeds it: in the pieces reads make, the client taking each
 * chain before the next read (our buffers come back to be used again),
 * then the answer's end.
 *
 * Input: one byte of flags (bit 0: an event stream, else a JSON answer;
 * the rest cuts the answer into pieces), then the answer.  Checked
 * besides the sanitizers:
 *   - the translator is resumable: the client gets the same bytes whether
 *     the answer comes whole or in pieces;
 *   - a stream is a series of whole events, "event: T\ndata: JSON\n\n",
 *     whose JSON (read with cJSON) is an object of type T, numbered by
 *     sequence_number from 0 without a gap; it starts with
 *     response.created and ends, once, with response.completed or
 *     response.incomplete, or with response.failed then error - and
 *     nothing after that;
 *   - the text an item's deltas carried is the text its done events
 *     repeat (output_text.done, function_call_arguments.done);
 *   - a JSON answer, whatever the provider sent, becomes one JSON object
 *     (to cJSON): a response with an output array, completed, incomplete
 *     or failed (an answer cut off or not JSON ends as a failed one).
 */


#include "fuzz_ngx.h"
#include "ngx_tailgate_translate.h"

#include <cjson/cJSON.h>
#include <string.h>


typedef struct {
    u_char                      *data;
    size_t                       len;
    size_t                       size;
} fuzz_out_t;


#define FUZZ_ITEMS  80

/* an item's id and the text its deltas carried, as cJSON decoded them */
typedef struct {
    char                        *id;
    fuzz_out_t                   text;
} fuzz_item_t;


static void fuzz_item_delta(fuzz_item_t *items, cJSON *doc, ngx_uint_t done);


static ngx_uint_t  fuzz_tag;


static void fuzz_translate(ngx_uint_t sse, u_char *p, u_char *end,
    size_t piece, fuzz_out_t *out);
static void fuzz_take(ngx_tailgate_xlat_t *x, ngx_chain_t *cl,
    fuzz_out_t *out);
static void fuzz_check_events(u_char *p, size_t len);
static void fuzz_check_json(const uint8_t *in, size_t in_len, u_char *p,
    size_t len);


int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_ngx_init();
    return 0;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    u_char      *p, *end;
    size_t       piece;
    ngx_uint_t   sse;
    fuzz_out_t   whole, cut;

    if (size < 1 || size > 256 * 1024) {
        return 0;
    }

    sse = data[0] & 1;
    piece = 1 + (data[0] >> 1);

    p = (u_char *) data + 1;
    end = (u_char *) data + size;

    ngx_memzero(&whole, sizeof(fuzz_out_t));
    ngx_memzero(&cut, sizeof(fuzz_out_t));

    fuzz_translate(sse, p, end, (size_t) (end - p) + 1, &whole);
    fuzz_translate(sse, p, end, piece, &cut);

    FUZZ_CHECK(whole.len == cut.len);
    FUZZ_CHECK(whole.len == 0
               || memcmp(whole.data, cut.data, whole.len) == 0);

    if (sse) {
        fuzz_check_events(whole.data, whole.len);

    } else {
        fuzz_check_json(data + 1, size - 1, whole.data, whole.len);
    }

    free(whole.data);
    free(cut.data);

    return 0;
}


static void
fuzz_translate(ngx_uint_t sse, u_char *p, u_char *end, size_t piece,
    fuzz_out_t *out)
{
    u_char                *last, *copy;
    ngx_str_t              id, model;
    ngx_pool_t            *pool;
    ngx_chain_t           *cl, **ll;
    ngx_tailgate_xlat_t   *x;

    pool = fuzz_ngx_pool();

    ngx_str_set(&id, "0123456789abcdef");
    ngx_str_set(&model, "the \"model\"\n");

    x = ngx_tailgate_xlat_create(pool, sse, &id, &model, FUZZ_NOW,
                                 &fuzz_tag);
    FUZZ_CHECK(x != NULL);

    while (p < end) {
        last = (size_t) (end - p) > piece ? p + piece : end;

        /* a read's buffer of its own: past it is red */
        copy = malloc(last - p);
        FUZZ_CHECK(copy != NULL);
        memcpy(copy, p, last - p);

        cl = NULL;
        ll = &cl;

        FUZZ_CHECK(ngx_tailgate_xlat_feed(x, copy, copy + (last - p), &ll)
                   == NGX_OK);

        /* the translator's output may point into the read: taken now */
        fuzz_take(x, cl, out);
        free(copy);

        p = last;
    }

    cl = NULL;
    ll = &cl;

    FUZZ_CHECK(ngx_tailgate_xlat_end(x, &ll) == NGX_OK);
    fuzz_take(x, cl, out);

    /* once the answer's end is given, the response has ended */
    FUZZ_CHECK(ngx_tailgate_xlat_outcome(x) != NGX_AGAIN);

    ngx_destroy_pool(pool);
}


/* the client takes every byte of the chain; the buffers go back */

static void
fuzz_take(ngx_tailgate_xlat_t *x, ngx_chain_t *cl, fuzz_out_t *out)
{
    size_t        n;
    ngx_chain_t  *c;

    for (c = cl; c; c = c->next) {
        FUZZ_CHECK(c->buf != NULL);
        FUZZ_CHECK(ngx_buf_in_memory(c->buf) || ngx_buf_size(c->buf) == 0);

        n = c->buf->last - c->buf->pos;

        if (out->len + n > out->size) {
            out->size = (out->len + n) * 2 + 64;
            out->data = realloc(out->data, out->size);
            FUZZ_CHECK(out->data != NULL);
        }

        memcpy(out->data + out->len, c->buf->pos, n);
        out->len += n;
        c->buf->pos = c->buf->last;
    }

    ngx_tailgate_xlat_sent(x, cl);
}


/*
 * cJSON refuses a surrogate \u escape without its pair, which JSON's
 * grammar allows (and a provider may send): for the check, each becomes
 * a space.
 */

static void
fuzz_no_surrogates(char *text)
{
    char  *p;

    for (p = text; *p; p++) {
        if (*p != '\\' || p[1] == '\0') {
            continue;
        }

        if (p[1] == 'u' && (p[2] == 'd' || p[2] == 'D') && p[3] != '\0'
            && strchr("89abcdefABCDEF", p[3]) != NULL && p[4] != '\0'
            && p[5] != '\0')
        {
            memcpy(p + 2, "0020", 4);
        }

        p++;
    }
}


static void
fuzz_check_events(u_char *p, size_t len)
{
    u_char      *end, *nl, *data, *data_end, *block_end;
    char        *text;
    cJSON       *doc, *type, *seq;
    size_t       name_len;
    ngx_uint_t   n, terminal, failed;

    fuzz_item_t  items[FUZZ_ITEMS];

    ngx_memzero(items, sizeof(items));

    end = p + len;
    n = 0;
    terminal = 0;
    failed = 0;

    while (p < end) {
        /* nothing follows the end of the response */
        FUZZ_CHECK(!terminal);

        FUZZ_CHECK(end - p > 7 && memcmp(p, "event: ", 7) == 0);
        p += 7;

        nl = memchr(p, '\n', end - p);
        FUZZ_CHECK(nl != NULL);
        name_len = nl - p;

        FUZZ_CHECK(end - nl > 7 && memcmp(nl + 1, "data: ", 6) == 0);
        data = nl + 7;

        data_end = memchr(data, '\n', end - data);
        FUZZ_CHECK(data_end != NULL && end - data_end >= 2
                   && data_end[1] == '\n');
        block_end = data_end + 2;

        text = strndup((char *) data, data_end - data);
        FUZZ_CHECK(text != NULL);
        fuzz_no_surrogates(text);

        doc = cJSON_Parse(text);

        if (doc == NULL) {
            fprintf(stderr, "fuzz: event %u is not JSON: %s\n",
                    (unsigned) n, text);
        }

        FUZZ_CHECK(doc != NULL && cJSON_IsObject(doc));
        free(text);

        type = cJSON_GetObjectItemCaseSensitive(doc, "type");
        seq = cJSON_GetObjectItemCaseSensitive(doc, "sequence_number");

        FUZZ_CHECK(cJSON_IsString(type)
                   && strlen(type->valuestring) == name_len
                   && memcmp(type->valuestring, p, name_len) == 0);
        FUZZ_CHECK(cJSON_IsNumber(seq) && seq->valuedouble == (double) n);

        if (n == 0) {
            FUZZ_CHECK(strcmp(type->valuestring, "response.created") == 0);
        }

        if (failed) {
            /* response.failed: then the error event, and nothing more */
            FUZZ_CHECK(strcmp(type->valuestring, "error") == 0);
            terminal = 1;

        } else if (strcmp(type->valuestring, "response.failed") == 0) {
            failed = 1;

        } else if (strcmp(type->valuestring, "response.completed") == 0
                   || strcmp(type->valuestring, "response.incomplete") == 0)
        {
            terminal = 1;

        } else {
            FUZZ_CHECK(strcmp(type->valuestring, "error") != 0);
        }

        if (strcmp(type->valuestring, "response.output_text.delta") == 0
            || strcmp(type->valuestring,
                      "response.function_call_arguments.delta") == 0)
        {
            fuzz_item_delta(items, doc, 0);

        } else if (strcmp(type->valuestring, "response.output_text.done") == 0
                   || strcmp(type->valuestring,
                             "response.function_call_arguments.done") == 0)
        {
            fuzz_item_delta(items, doc, 1);
        }

        cJSON_Delete(doc);

        n++;
        p = block_end;
    }

    /* the answer's end was given: the response ended */
    FUZZ_CHECK(terminal);

    for (n = 0; n < FUZZ_ITEMS && items[n].id; n++) {
        free(items[n].id);
        free(items[n].text.data);
    }
}


/* a delta adds to its item's text; a done event must repeat it all */

static void
fuzz_item_delta(fuzz_item_t *items, cJSON *doc, ngx_uint_t done)
{
    cJSON        *id, *v;
    size_t        n;
    ngx_uint_t    i;
    fuzz_out_t   *t;

    id = cJSON_GetObjectItemCaseSensitive(doc, "item_id");
    FUZZ_CHECK(cJSON_IsString(id));

    for (i = 0; i < FUZZ_ITEMS && items[i].id; i++) {
        if (strcmp(items[i].id, id->valuestring) == 0) {
            break;
        }
    }

    FUZZ_CHECK(i < FUZZ_ITEMS);

    if (items[i].id == NULL) {
        items[i].id = strdup(id->valuestring);
        FUZZ_CHECK(items[i].id != NULL);
    }

    t = &items[i].text;

    if (!done) {
        v = cJSON_GetObjectItemCaseSensitive(doc, "delta");

    } else {
        v = cJSON_GetObjectItemCaseSensitive(doc, "text");

        if (v == NULL) {
            v = cJSON_GetObjectItemCaseSensitive(doc, "arguments");
        }
    }

    FUZZ_CHECK(cJSON_IsString(v));

    /* cJSON's strings end at a NUL (a \u0000 in the text): compared so */
    n = strlen(v->valuestring);

    if (done) {
        FUZZ_CHECK(t->len >= n && memcmp(t->data ? t->data : (u_char *) "",
                                         v->valuestring, n) == 0);
        return;
    }

    if (t->len + n + 1 > t->size) {
        t->size = (t->len + n + 1) * 2;
        t->data = realloc(t->data, t->size);
        FUZZ_CHECK(t->data != NULL);
    }

    memcpy(t->data + t->len, v->valuestring, n);
    t->len += n;
}


/*
 * Whatever the provider sent, the client reads one JSON object: a
 * response, completed, incomplete or failed.
 */

static void
fuzz_check_json(const uint8_t *in, size_t in_len, u_char *p, size_t len)
{
    char   *text;
    cJSON  *doc, *obj, *output, *status;

    FUZZ_CHECK(memchr(p, 0, len) == NULL);

    text = strndup((char *) p, len);
    FUZZ_CHECK(text != NULL);
    fuzz_no_surrogates(text);
    doc = cJSON_Parse(text);

    if (doc == NULL) {
        fprintf(stderr, "fuzz: the response is not JSON: %s\n", text);
    }

    free(text);

    FUZZ_CHECK(doc != NULL && cJSON_IsObject(doc));

    obj = cJSON_GetObjectItemCaseSensitive(doc, "object");
    output = cJSON_GetObjectItemCaseSensitive(doc, "output");

    FUZZ_CHECK(cJSON_IsString(obj)
               && strcmp(obj->valuestring, "response") == 0);
    FUZZ_CHECK(cJSON_IsArray(output));

    status = cJSON_GetObjectItemCaseSensitive(doc, "status");
    FUZZ_CHECK(cJSON_IsString(status)
               && (strcmp(status->valuestring, "completed") == 0
                   || strcmp(status->valuestring, "incomplete") == 0
                   || strcmp(status->valuestring, "failed") == 0));

    cJSON_Delete(doc);
}
