
/*
 * Copyright (C) The Tailgate authors
 *
 * A validating one-pass JSON scanner for request bodies.  It builds no tree:
 * it checks the whole document and notes where the top-level members the
 * gateway routes on are, so that a 1 MB body costs one linear pass.
 *
 * Keys are compared after unescaping, and a routing key that appears twice
 * is an error: a provider reading {"model":"a","mod\u0065l":"b"} must not
 * see another model than the one the gateway routed on.  Nor must it read
 * a value the gateway read as another type ("stream": "true"): each key
 * the gateway reads must have the type OpenAI wants for it.
 */


#include "ngx_tailgate_scan.h"
#include "ngx_tailgate_plain.h"
#include "ngx_tailgate_names.h"


#define NGX_TAILGATE_JSON_MAX_DEPTH  128
/* longest key decoded: those the gateway reads, and those edits name */
#define NGX_TAILGATE_JSON_MAX_KEY    NGX_TAILGATE_JSON_NAME_MAX


typedef struct {
    u_char      *p;
    u_char      *end;
    ngx_uint_t             depth;
    ngx_tailgate_error_e   error;
} ngx_tailgate_json_t;


/* the top-level members the gateway reads: each once, of one type */

typedef enum {
    NGX_TAILGATE_FACT_MODEL = 0,
    NGX_TAILGATE_FACT_STREAM,
    NGX_TAILGATE_FACT_TOOLS,
    NGX_TAILGATE_FACT_STREAM_OPTIONS,
    NGX_TAILGATE_FACTS
} ngx_tailgate_json_fact_e;


typedef struct {
    ngx_str_t                    name;
    u_char                       type;      /* its first byte; 't': t or f */
    ngx_tailgate_error_e         twice;
    ngx_tailgate_error_e         wrong;
} ngx_tailgate_json_fact_t;


static const ngx_tailgate_json_fact_t  ngx_tailgate_json_facts[] = {
    { ngx_string("model"), '"', NGX_TAILGATE_ERR_MODEL_TWICE,
      NGX_TAILGATE_ERR_MODEL_TYPE },
    { ngx_string("stream"), 't', NGX_TAILGATE_ERR_STREAM_TWICE,
      NGX_TAILGATE_ERR_STREAM_TYPE },
    { ngx_string("tools"), '[', NGX_TAILGATE_ERR_TOOLS_TWICE,
      NGX_TAILGATE_ERR_TOOLS_TYPE },
    { ngx_string("stream_options"), '{',
      NGX_TAILGATE_ERR_STREAM_OPTIONS_TWICE,
      NGX_TAILGATE_ERR_STREAM_OPTIONS_TYPE }
};


static ngx_int_t ngx_tailgate_json_value(ngx_tailgate_json_t *j);
static ngx_int_t ngx_tailgate_json_object(ngx_tailgate_json_t *j);
static ngx_int_t ngx_tailgate_json_array(ngx_tailgate_json_t *j);
static ngx_int_t ngx_tailgate_json_string(ngx_tailgate_json_t *j,
    ngx_uint_t *escaped);
static ngx_int_t ngx_tailgate_json_number(ngx_tailgate_json_t *j);
static ngx_int_t ngx_tailgate_json_literal(ngx_tailgate_json_t *j,
    const char *word, size_t len);
static void ngx_tailgate_json_space(ngx_tailgate_json_t *j);
static ssize_t ngx_tailgate_json_unescape(u_char *p, u_char *end,
    u_char *dst, size_t size);
static ngx_int_t ngx_tailgate_json_hex4(u_char *p, uint32_t *cp);
static u_char *ngx_tailgate_json_nul(u_char *p, u_char *end);
static ngx_uint_t ngx_tailgate_json_key_folds(u_char *name, size_t n);
static ngx_int_t ngx_tailgate_json_fact(ngx_pool_t *pool, u_char *name,
    ssize_t n, u_char *value, u_char *end, ngx_tailgate_facts_t *facts,
    ngx_uint_t *seen, ngx_tailgate_scan_error_t *error);
static ngx_int_t ngx_tailgate_json_stream_options(u_char *p, u_char *end,
    ngx_tailgate_facts_t *facts, ngx_tailgate_scan_error_t *error);
static ngx_uint_t ngx_tailgate_json_key_routes(u_char *name, size_t n);




ngx_int_t
ngx_tailgate_json_scan(ngx_pool_t *pool, u_char *p, u_char *end,
    ngx_tailgate_facts_t *facts, ngx_tailgate_scan_error_t *error)
{
    u_char               *key, *value, *key_end, *nul;
    ssize_t               n;
    ngx_int_t             rc;
    ngx_uint_t            escaped, first, seen;
    ngx_tailgate_json_t   j;
    u_char                name[NGX_TAILGATE_JSON_MAX_KEY];

    j.p = p;
    j.end = end;
    j.depth = 1;
    j.error = NGX_TAILGATE_ERR_JSON_INVALID;

    seen = 0;

    ngx_tailgate_json_space(&j);

    if (j.p == j.end || *j.p != '{') {
        goto failed;
    }

    j.p++;
    first = 1;

    for ( ;; ) {
        ngx_tailgate_json_space(&j);

        if (first && j.p < j.end && *j.p == '}') {
            j.p++;
            break;
        }

        first = 0;

        if (j.p == j.end || *j.p != '"') {
            goto failed;
        }

        key = j.p + 1;

        if (ngx_tailgate_json_string(&j, &escaped) != NGX_OK) {
            goto failed;
        }

        key_end = j.p - 1;

        ngx_tailgate_json_space(&j);

        if (j.p == j.end || *j.p != ':') {
            goto failed;
        }

        j.p++;
        ngx_tailgate_json_space(&j);

        value = j.p;

        if (ngx_tailgate_json_value(&j) != NGX_OK) {
            goto failed;
        }

        if (escaped) {
            /*
             * A parser that keeps keys as C strings reads "model\u0000x"
             * as "model": a second model that the gateway did not route on.
             */

            nul = ngx_tailgate_json_nul(key, key_end);

            n = ngx_tailgate_json_unescape(key, nul ? nul : key_end, name,
                                           sizeof(name));

            if (nul && n > 0 && ngx_tailgate_json_key_routes(name, n)) {
                error->err = NGX_TAILGATE_ERR_KEY_NUL;
                return NGX_DECLINED;
            }

            if (nul) {
                n = -1;
            }

        } else if ((size_t) (key_end - key) <= sizeof(name)) {
            n = key_end - key;
            ngx_memcpy(name, key, n);

        } else {
            n = -1;
        }

        /*
         * Some providers match keys ignoring case (Go's encoding/json takes
         * the last of "model" and "Model"): a key that is a routing key in
         * another case would be a second, unchecked one.
         */

        if (n > 0 && ngx_tailgate_json_key_folds(name, n)) {
            error->err = NGX_TAILGATE_ERR_KEY_CASE;
            return NGX_DECLINED;
        }

        /* which keys the body has, for edits that may have nothing to do */

        if (n > 0) {
            facts->keys |= ngx_tailgate_json_key_bit(name, n);

        } else {
            facts->keys_unknown = 1;
        }

        rc = ngx_tailgate_json_fact(pool, name, n, value, j.p, facts, &seen,
                                    error);
        if (rc != NGX_OK) {
            return rc;
        }

        /* a string "input" is counted only where it is priced: speech */

        if (n == 5 && ngx_strncmp(name, "input", 5) == 0 && *value == '"') {
            facts->input_start = value + 1;
            facts->input_end = j.p - 1;
        }

        ngx_tailgate_json_space(&j);

        if (j.p == j.end) {
            goto failed;
        }

        if (*j.p == ',') {
            j.p++;
            continue;
        }

        if (*j.p == '}') {
            j.p++;
            break;
        }

        goto failed;
    }

    ngx_tailgate_json_space(&j);

    if (j.p != j.end) {
        goto failed;
    }

    if (facts->model_start == NULL) {
        error->err = NGX_TAILGATE_ERR_MISSING_MODEL;
        return NGX_DECLINED;
    }

    return NGX_OK;

failed:

    error->err = j.error;
    return NGX_DECLINED;
}


/*
 * A top-level member the gateway reads, of the type OpenAI accepts for it
 * (a provider could read "stream": "true" as true where the gateway read
 * false), and once.  null is as if absent.  The model is kept as its
 * token in the body (for the rewrite) and decoded.
 */

static ngx_int_t
ngx_tailgate_json_fact(ngx_pool_t *pool, u_char *name, ssize_t n,
    u_char *value, u_char *end, ngx_tailgate_facts_t *facts,
    ngx_uint_t *seen, ngx_tailgate_scan_error_t *error)
{
    ngx_uint_t                      i;
    const ngx_tailgate_json_fact_t  *f;

    for (i = 0; i < NGX_TAILGATE_FACTS; i++) {
        f = &ngx_tailgate_json_facts[i];

        if ((size_t) n == f->name.len
            && ngx_strncmp(name, f->name.data, n) == 0)
        {
            break;
        }
    }

    if (i == NGX_TAILGATE_FACTS) {
        return NGX_OK;
    }

    if (*seen & (1 << i)) {
        error->err = f->twice;
        return NGX_DECLINED;
    }

    *seen |= 1 << i;

    if (*value == 'n') {
        return NGX_OK;
    }

    if (*value != f->type && !(f->type == 't' && *value == 'f')) {
        error->err = f->wrong;
        error->arg = ngx_tailgate_json_type(*value);
        return NGX_DECLINED;
    }

    switch (i) {

    case NGX_TAILGATE_FACT_MODEL:

        if (end - value == 2) {
            error->err = NGX_TAILGATE_ERR_MODEL_EMPTY;
            return NGX_DECLINED;
        }

        facts->model_start = value;
        facts->model_end = end;

        /* most names have no escapes: then the body's bytes will do */

        if (memchr(value + 1, '\\', end - value - 2) == NULL) {
            facts->model.data = value + 1;
            facts->model.len = end - value - 2;
            return NGX_OK;
        }

        facts->model.data = ngx_pnalloc(pool, end - value);
        if (facts->model.data == NULL) {
            return NGX_ERROR;
        }

        n = ngx_tailgate_json_unescape(value + 1, end - 1, facts->model.data,
                                       end - value);
        if (n < 0) {
            error->err = NGX_TAILGATE_ERR_JSON_INVALID;
            return NGX_DECLINED;
        }

        facts->model.len = n;
        return NGX_OK;

    case NGX_TAILGATE_FACT_STREAM:
        facts->stream = (*value == 't');
        return NGX_OK;

    case NGX_TAILGATE_FACT_TOOLS:

        /* validated already: a ']' comes before end */
        do { value++; } while (*value == ' ' || *value == '\n'
                               || *value == '\r' || *value == '\t');

        facts->tools = (*value != ']');
        return NGX_OK;

    default: /* NGX_TAILGATE_FACT_STREAM_OPTIONS */
        return ngx_tailgate_json_stream_options(value, end, facts, error);
    }
}


/* {"include_usage": true}: a boolean (or null), once; whether it asks */

static ngx_int_t
ngx_tailgate_json_stream_options(u_char *p, u_char *end,
    ngx_tailgate_facts_t *facts, ngx_tailgate_scan_error_t *error)
{
    ngx_int_t                    rc;
    ngx_uint_t                   seen;
    ngx_tailgate_json_iter_t     it;
    ngx_tailgate_json_member_t   m;

    error->arg = NULL;
    error->err = NGX_TAILGATE_ERR_JSON_INVALID;

    if (ngx_tailgate_json_members(&it, p, end) != NGX_OK) {
        return NGX_DECLINED;
    }

    for (seen = 0; /* void */; /* void */) {
        rc = ngx_tailgate_json_member(&it, &m);

        if (rc == NGX_DONE) {
            return NGX_OK;
        }

        if (rc != NGX_OK) {
            return NGX_DECLINED;
        }

        if (m.name_len != 13
            || ngx_strncmp(m.name, "include_usage", 13) != 0)
        {
            continue;
        }

        if (seen++) {
            error->err = NGX_TAILGATE_ERR_INCLUDE_USAGE_TWICE;
            return NGX_DECLINED;
        }

        if (*m.value_start != 't' && *m.value_start != 'f'
            && *m.value_start != 'n')
        {
            error->err = NGX_TAILGATE_ERR_INCLUDE_USAGE_TYPE;
            error->arg = ngx_tailgate_json_type(*m.value_start);
            return NGX_DECLINED;
        }

        facts->include_usage = (*m.value_start == 't');
    }
}


/* what a value is, for a message: by its first byte, once validated */

const char *
ngx_tailgate_json_type(u_char c)
{
    switch (c) {
    case '"':
        return "a string";
    case '{':
        return "an object";
    case '[':
        return "an array";
    case 't':
    case 'f':
        return "a boolean";
    case 'n':
        return "null";
    default:
        return "a number";
    }
}


/* a JSON array of strings (a claim's value), decoded into the pool */

ngx_int_t
ngx_tailgate_json_strings(ngx_pool_t *pool, u_char *p, u_char *end,
    ngx_array_t **strings)
{
    u_char               *start;
    ssize_t               n;
    ngx_str_t            *s;
    ngx_uint_t            escaped;
    ngx_tailgate_json_t   j;

    *strings = ngx_array_create(pool, 4, sizeof(ngx_str_t));
    if (*strings == NULL) {
        return NGX_ERROR;
    }

    j.p = p;
    j.end = end;
    j.depth = 1;

    ngx_tailgate_json_space(&j);

    if (j.p == j.end || *j.p++ != '[') {
        return NGX_ERROR;
    }

    ngx_tailgate_json_space(&j);

    if (j.p < j.end && *j.p == ']') {
        j.p++;
        goto done;
    }

    for ( ;; ) {
        ngx_tailgate_json_space(&j);

        if (j.p == j.end || *j.p != '"') {
            return NGX_ERROR;
        }

        start = j.p + 1;

        if (ngx_tailgate_json_string(&j, &escaped) != NGX_OK) {
            return NGX_ERROR;
        }

        s = ngx_array_push(*strings);
        if (s == NULL) {
            return NGX_ERROR;
        }

        /* decoded, a string is never longer than written, plus room */

        s->data = ngx_pnalloc(pool, j.p - start + 4);
        if (s->data == NULL) {
            return NGX_ERROR;
        }

        n = ngx_tailgate_json_unescape(start, j.p - 1, s->data,
                                       j.p - start + 4);
        if (n < 0) {
            return NGX_ERROR;
        }

        s->len = n;

        ngx_tailgate_json_space(&j);

        if (j.p == j.end) {
            return NGX_ERROR;
        }

        if (*j.p == ',') {
            j.p++;
            continue;
        }

        if (*j.p++ == ']') {
            break;
        }

        return NGX_ERROR;
    }

done:

    ngx_tailgate_json_space(&j);

    return (j.p == j.end) ? NGX_OK : NGX_ERROR;
}


/*
 * The members of the object at p (an already validated body, or an object
 * inside one), one at a time: where each key starts, where its value
 * starts and ends, and the key decoded when it is short enough to be one
 * the policy edits.  Nothing is kept per member, so a body of many small
 * members costs no more memory than a body of a few.
 */

ngx_int_t
ngx_tailgate_json_members(ngx_tailgate_json_iter_t *it, u_char *p,
    u_char *end)
{
    ngx_tailgate_json_t  j;

    j.p = p;
    j.end = end;
    j.depth = 1;

    ngx_tailgate_json_space(&j);

    if (j.p == j.end || *j.p != '{') {
        return NGX_DECLINED;
    }

    it->p = j.p + 1;
    it->end = end;
    it->first = 1;

    return NGX_OK;
}


/* NGX_OK: *m is the next member; NGX_DONE: no more; NGX_ERROR: not JSON */

ngx_int_t
ngx_tailgate_json_member(ngx_tailgate_json_iter_t *it,
    ngx_tailgate_json_member_t *m)
{
    u_char               *key, *nul;
    ngx_uint_t            escaped;
    ngx_tailgate_json_t   j;

    j.p = it->p;
    j.end = it->end;
    j.depth = 1;

    ngx_tailgate_json_space(&j);

    if (j.p == j.end) {
        return NGX_ERROR;
    }

    if (*j.p == '}') {
        return NGX_DONE;
    }

    if (!it->first) {
        if (*j.p++ != ',') {
            return NGX_ERROR;
        }

        ngx_tailgate_json_space(&j);
    }

    if (j.p == j.end || *j.p != '"') {
        return NGX_ERROR;
    }

    m->key_start = j.p;
    key = j.p + 1;

    if (ngx_tailgate_json_string(&j, &escaped) != NGX_OK) {
        return NGX_ERROR;
    }

    /* the name up to a NUL, as a parser of C strings reads it */

    nul = escaped ? ngx_tailgate_json_nul(key, j.p - 1) : NULL;

    m->name_len = ngx_tailgate_json_unescape(key, nul ? nul : j.p - 1,
                                             m->name, sizeof(m->name));

    ngx_tailgate_json_space(&j);

    if (j.p == j.end || *j.p++ != ':') {
        return NGX_ERROR;
    }

    ngx_tailgate_json_space(&j);

    m->value_start = j.p;

    if (ngx_tailgate_json_value(&j) != NGX_OK) {
        return NGX_ERROR;
    }

    m->value_end = j.p;

    it->p = j.p;
    it->first = 0;

    return NGX_OK;
}


/*
 * The elements of the array at p (validated, like the members above), one
 * at a time: where each value starts and ends.
 */

ngx_int_t
ngx_tailgate_json_elements(ngx_tailgate_json_iter_t *it, u_char *p,
    u_char *end)
{
    ngx_tailgate_json_t  j;

    j.p = p;
    j.end = end;
    j.depth = 1;

    ngx_tailgate_json_space(&j);

    if (j.p == j.end || *j.p != '[') {
        return NGX_DECLINED;
    }

    it->p = j.p + 1;
    it->end = end;
    it->first = 1;

    return NGX_OK;
}


/* NGX_OK: [*start, *last) is the next element; NGX_DONE: no more */

ngx_int_t
ngx_tailgate_json_element(ngx_tailgate_json_iter_t *it, u_char **start,
    u_char **last)
{
    ngx_tailgate_json_t  j;

    j.p = it->p;
    j.end = it->end;
    j.depth = 1;

    ngx_tailgate_json_space(&j);

    if (j.p == j.end) {
        return NGX_ERROR;
    }

    if (*j.p == ']') {
        return NGX_DONE;
    }

    if (!it->first) {
        if (*j.p++ != ',') {
            return NGX_ERROR;
        }

        ngx_tailgate_json_space(&j);
    }

    *start = j.p;

    if (ngx_tailgate_json_value(&j) != NGX_OK) {
        return NGX_ERROR;
    }

    *last = j.p;

    it->p = j.p;
    it->first = 0;

    return NGX_OK;
}


/*
 * The characters of a JSON string's text (its raw bytes between the
 * quotes): UTF-8 sequences and escapes count one each.
 */

size_t
ngx_tailgate_json_chars(u_char *p, u_char *end)
{
    size_t  n;

    for (n = 0; p < end; p++) {

        if (*p == '\\' && p + 1 < end) {
            p += (p[1] == 'u') ? 5 : 1;

        } else if ((*p & 0xc0) == 0x80) {
            continue;
        }

        n++;
    }

    return n;
}


/*
 * "Model", "STREAM"...: a key the gateway routes on, in another case.  Not
 * "Stream_Options": a step's edits replace it with the key they set.
 */

static ngx_uint_t
ngx_tailgate_json_key_folds(u_char *name, size_t n)
{
    u_char                         *p, *end;
    size_t                          len;
    ngx_uint_t                      i, unicode;
    const ngx_tailgate_json_fact_t  *f;
    u_char                          folded[NGX_TAILGATE_JSON_MAX_KEY];

    /*
     * Go's encoding/json folds keys the Unicode way: there U+017F "long s"
     * is "s" and U+212A "Kelvin" is "k", so "\u017ftream" is "stream".
     */

    unicode = 0;
    len = 0;
    end = name + n;

    /* a name of ASCII only, as nearly all are, folds as it is */

    for (p = name; p < end && *p < 0x80; p++) {
        /* void */
    }

    if (p < end) {

        for (p = name; p < end && len < sizeof(folded); p++) {

            if (end - p >= 2 && p[0] == 0xc5 && p[1] == 0xbf) {
                folded[len++] = 's';
                p += 1;
                unicode = 1;

            } else if (end - p >= 3 && p[0] == 0xe2 && p[1] == 0x84
                       && p[2] == 0xaa)
            {
                folded[len++] = 'k';
                p += 2;
                unicode = 1;

            } else {
                folded[len++] = *p;
            }
        }
    }

    for (i = 0; i < NGX_TAILGATE_FACT_STREAM_OPTIONS; i++) {
        f = &ngx_tailgate_json_facts[i];

        if (ngx_tailgate_key_folds(name, n, &f->name)
            || (unicode && p == end
                && ngx_tailgate_key_is(folded, len, &f->name)))
        {
            return 1;
        }
    }

    return 0;
}


/* a routing key, in any letter case */

static ngx_uint_t
ngx_tailgate_json_key_routes(u_char *name, size_t n)
{
    ngx_uint_t  i;

    for (i = 0; i < NGX_TAILGATE_FACT_STREAM_OPTIONS; i++) {
        if (ngx_tailgate_key_is(name, n, &ngx_tailgate_json_facts[i].name)) {
            return 1;
        }
    }

    return 0;
}


/* the first "\u0000" in the contents of a validated string, or NULL */

static u_char *
ngx_tailgate_json_nul(u_char *p, u_char *end)
{
    for ( /* void */ ; p < end; p++) {

        if (*p != '\\') {
            continue;
        }

        if (end - p >= 6 && ngx_strncmp(p + 1, "u0000", 5) == 0) {
            return p;
        }

        /* the escaped character: \uXXXX's digits are no backslashes */
        p++;
    }

    return NULL;
}


/* "value" as JSON text, with the quotes: for putting a model back */

ngx_int_t
ngx_tailgate_json_quote(ngx_pool_t *pool, ngx_str_t *value, ngx_str_t *quoted)
{
    size_t   len;
    u_char  *p, *end;

    /* model names rarely need escaping: check that in the fast loop */

    end = value->data + value->len;
    len = value->len + 2;

    if (ngx_tailgate_plain(value->data, end) != end) {
        len += ngx_escape_json(NULL, value->data, value->len);
    }

    p = ngx_pnalloc(pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    quoted->data = p;

    *p++ = '"';

    if (len == value->len + 2) {
        p = ngx_cpymem(p, value->data, value->len);

    } else {
        p = (u_char *) ngx_escape_json(p, value->data, value->len);
    }

    *p++ = '"';

    quoted->len = p - quoted->data;

    return NGX_OK;
}


static ngx_int_t
ngx_tailgate_json_value(ngx_tailgate_json_t *j)
{
    ngx_uint_t  escaped;

    if (j->p == j->end) {
        return NGX_ERROR;
    }

    switch (*j->p) {

    case '{':
        return ngx_tailgate_json_object(j);

    case '[':
        return ngx_tailgate_json_array(j);

    case '"':
        return ngx_tailgate_json_string(j, &escaped);

    case 't':
        return ngx_tailgate_json_literal(j, "true", 4);

    case 'f':
        return ngx_tailgate_json_literal(j, "false", 5);

    case 'n':
        return ngx_tailgate_json_literal(j, "null", 4);

    default:
        return ngx_tailgate_json_number(j);
    }
}


static ngx_int_t
ngx_tailgate_json_object(ngx_tailgate_json_t *j)
{
    ngx_uint_t  escaped;

    if (++j->depth > NGX_TAILGATE_JSON_MAX_DEPTH) {
        j->error = NGX_TAILGATE_ERR_JSON_TOO_DEEP;
        return NGX_ERROR;
    }

    j->p++;
    ngx_tailgate_json_space(j);

    if (j->p < j->end && *j->p == '}') {
        j->p++;
        j->depth--;
        return NGX_OK;
    }

    for ( ;; ) {
        ngx_tailgate_json_space(j);

        if (j->p == j->end || *j->p != '"'
            || ngx_tailgate_json_string(j, &escaped) != NGX_OK)
        {
            return NGX_ERROR;
        }

        ngx_tailgate_json_space(j);

        if (j->p == j->end || *j->p != ':') {
            return NGX_ERROR;
        }

        j->p++;
        ngx_tailgate_json_space(j);

        if (ngx_tailgate_json_value(j) != NGX_OK) {
            return NGX_ERROR;
        }

        ngx_tailgate_json_space(j);

        if (j->p == j->end) {
            return NGX_ERROR;
        }

        if (*j->p == ',') {
            j->p++;
            continue;
        }

        if (*j->p == '}') {
            j->p++;
            j->depth--;
            return NGX_OK;
        }

        return NGX_ERROR;
    }
}


static ngx_int_t
ngx_tailgate_json_array(ngx_tailgate_json_t *j)
{
    if (++j->depth > NGX_TAILGATE_JSON_MAX_DEPTH) {
        j->error = NGX_TAILGATE_ERR_JSON_TOO_DEEP;
        return NGX_ERROR;
    }

    j->p++;
    ngx_tailgate_json_space(j);

    if (j->p < j->end && *j->p == ']') {
        j->p++;
        j->depth--;
        return NGX_OK;
    }

    for ( ;; ) {
        ngx_tailgate_json_space(j);

        if (ngx_tailgate_json_value(j) != NGX_OK) {
            return NGX_ERROR;
        }

        ngx_tailgate_json_space(j);

        if (j->p == j->end) {
            return NGX_ERROR;
        }

        if (*j->p == ',') {
            j->p++;
            continue;
        }

        if (*j->p == ']') {
            j->p++;
            j->depth--;
            return NGX_OK;
        }

        return NGX_ERROR;
    }
}


/* j->p is at the opening quote; leaves it past the closing one */

static ngx_int_t
ngx_tailgate_json_string(ngx_tailgate_json_t *j, ngx_uint_t *escaped)
{
    u_char    *p, *end;
    uint32_t   cp;

    p = j->p + 1;
    end = j->end;
    *escaped = 0;

    for ( ;; ) {

        p = ngx_tailgate_plain(p, end);

        if (p == end || *p < 0x20) {
            return NGX_ERROR;
        }

        if (*p == '"') {
            j->p = p + 1;
            return NGX_OK;
        }

        /* a backslash */

        *escaped = 1;

        if (++p == end) {
            return NGX_ERROR;
        }

        switch (*p) {

        case '"': case '\\': case '/': case 'b': case 'f': case 'n':
        case 'r': case 't':
            p++;
            break;

        case 'u':
            if (end - p < 5 || ngx_tailgate_json_hex4(p + 1, &cp) != NGX_OK) {
                return NGX_ERROR;
            }

            p += 5;
            break;

        default:
            return NGX_ERROR;
        }
    }
}


static ngx_int_t
ngx_tailgate_json_number(ngx_tailgate_json_t *j)
{
    u_char  *p, *end;

    p = j->p;
    end = j->end;

    if (p < end && *p == '-') {
        p++;
    }

    if (p == end || *p < '0' || *p > '9') {
        return NGX_ERROR;
    }

    if (*p == '0') {
        p++;

    } else {
        while (p < end && *p >= '0' && *p <= '9') {
            p++;
        }
    }

    if (p < end && *p == '.') {
        p++;

        if (p == end || *p < '0' || *p > '9') {
            return NGX_ERROR;
        }

        while (p < end && *p >= '0' && *p <= '9') {
            p++;
        }
    }

    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;

        if (p < end && (*p == '+' || *p == '-')) {
            p++;
        }

        if (p == end || *p < '0' || *p > '9') {
            return NGX_ERROR;
        }

        while (p < end && *p >= '0' && *p <= '9') {
            p++;
        }
    }

    j->p = p;

    return NGX_OK;
}


static ngx_int_t
ngx_tailgate_json_literal(ngx_tailgate_json_t *j, const char *word, size_t len)
{
    if ((size_t) (j->end - j->p) < len
        || ngx_strncmp(j->p, word, len) != 0)
    {
        return NGX_ERROR;
    }

    j->p += len;

    return NGX_OK;
}


static void
ngx_tailgate_json_space(ngx_tailgate_json_t *j)
{
    while (j->p < j->end
           && (*j->p == ' ' || *j->p == '\n' || *j->p == '\r'
               || *j->p == '\t'))
    {
        j->p++;
    }
}


/*
 * The contents of an already validated string (without quotes) as UTF-8.
 * -1 when it does not fit in size bytes or has a broken surrogate pair.
 */

static ssize_t
ngx_tailgate_json_unescape(u_char *p, u_char *end, u_char *dst, size_t size)
{
    u_char    *d, *last;
    uint32_t   cp, lo;

    d = dst;
    last = dst + size;

    while (p < end) {

        if (*p != '\\') {
            if (d == last) {
                return -1;
            }

            *d++ = *p++;
            continue;
        }

        p++;

        switch (*p++) {
        case 'b': cp = '\b'; break;
        case 'f': cp = '\f'; break;
        case 'n': cp = '\n'; break;
        case 'r': cp = '\r'; break;
        case 't': cp = '\t'; break;

        case 'u':
            if (end - p < 4 || ngx_tailgate_json_hex4(p, &cp) != NGX_OK) {
                return -1;
            }

            p += 4;

            if (cp >= 0xdc00 && cp <= 0xdfff) {
                return -1;
            }

            if (cp >= 0xd800 && cp <= 0xdbff) {
                if (end - p < 6 || p[0] != '\\' || p[1] != 'u'
                    || ngx_tailgate_json_hex4(p + 2, &lo) != NGX_OK
                    || lo < 0xdc00 || lo > 0xdfff)
                {
                    return -1;
                }

                p += 6;
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            }

            break;

        default:
            /* '"', '\\' and '/' stand for themselves */
            cp = p[-1];
        }

        if (last - d < 4) {
            return -1;
        }

        if (cp < 0x80) {
            *d++ = (u_char) cp;

        } else if (cp < 0x800) {
            *d++ = (u_char) (0xc0 | (cp >> 6));
            *d++ = (u_char) (0x80 | (cp & 0x3f));

        } else if (cp < 0x10000) {
            *d++ = (u_char) (0xe0 | (cp >> 12));
            *d++ = (u_char) (0x80 | ((cp >> 6) & 0x3f));
            *d++ = (u_char) (0x80 | (cp & 0x3f));

        } else {
            *d++ = (u_char) (0xf0 | (cp >> 18));
            *d++ = (u_char) (0x80 | ((cp >> 12) & 0x3f));
            *d++ = (u_char) (0x80 | ((cp >> 6) & 0x3f));
            *d++ = (u_char) (0x80 | (cp & 0x3f));
        }
    }

    return d - dst;
}


static ngx_int_t
ngx_tailgate_json_hex4(u_char *p, uint32_t *cp)
{
    ngx_int_t  n;

    n = ngx_hextoi(p, 4);

    if (n == NGX_ERROR) {
        return NGX_ERROR;
    }

    *cp = (uint32_t) n;

    return NGX_OK;
}


/*
 * The same scan over a body given in pieces, in order, of any size down
 * to a byte: for a body nginx did not keep in one run of memory (a
 * temporary file read a window at a time, chunked pieces).  It accepts
 * and refuses what ngx_tailgate_json_scan() does, for the same reason,
 * and finds the same facts, but keeps none of the body: a byte per level
 * of nesting, the key being read (decoded into NGX_TAILGATE_JSON_MAX_KEY
 * bytes, as the scan decodes it), and the model decoded into the pool.
 * Where the scan points into the body the facts say where instead:
 * model_from and model_to are the model's token in the body, input_chars
 * the characters of a string "input".  A model longer than any route name
 * is kept at NGX_TAILGATE_MAX_ROUTE_NAME + 1 bytes: no route has it either.
 *
 * The rules of the scan, in the order it applies them, are those of
 * ngx_tailgate_json_scan() and ngx_tailgate_json_fact() above: each check
 * of a top-level member is made when its value has been read whole, so
 * that a body broken further on is refused for what comes first in it.
 */


#define NGX_TAILGATE_JSON_MODEL_KEPT  (NGX_TAILGATE_MAX_ROUTE_NAME + 1)


typedef enum {
    NGX_TAILGATE_JF_START = 0,
    NGX_TAILGATE_JF_MEMBER_FIRST,   /* after '{': a key or '}' */
    NGX_TAILGATE_JF_MEMBER,         /* after ',' in an object: a key */
    NGX_TAILGATE_JF_COLON,
    NGX_TAILGATE_JF_VALUE,
    NGX_TAILGATE_JF_ELEMENT_FIRST,  /* after '[': a value or ']' */
    NGX_TAILGATE_JF_AFTER,          /* after a value: ',' or the close */
    NGX_TAILGATE_JF_STRING,
    NGX_TAILGATE_JF_LITERAL,
    NGX_TAILGATE_JF_NUMBER,
    NGX_TAILGATE_JF_DONE,
    NGX_TAILGATE_JF_FAILED
} ngx_tailgate_jf_state_e;


/* where a number is: those marked "may end" are a whole number */

typedef enum {
    NGX_TAILGATE_JF_MINUS = 0,
    NGX_TAILGATE_JF_ZERO,           /* may end */
    NGX_TAILGATE_JF_INT,            /* may end */
    NGX_TAILGATE_JF_DOT,
    NGX_TAILGATE_JF_FRAC,           /* may end */
    NGX_TAILGATE_JF_E,
    NGX_TAILGATE_JF_SIGN,
    NGX_TAILGATE_JF_EXP             /* may end */
} ngx_tailgate_jf_number_e;


/*
 * A string decoded as ngx_tailgate_json_unescape() decodes it into size
 * bytes, as its bytes come: failed where that returns -1 (too long for
 * size, a broken surrogate pair).  "truncate": keeps the first size bytes
 * instead of failing for length.  "at_nul": decodes up to the first
 * \u0000, as the scan reads a key.
 */

typedef struct {
    u_char                      *buf;
    size_t                       size;
    size_t                       len;
    uint32_t                     high;      /* a high surrogate, waiting */
    unsigned                     failed:1;
    unsigned                     truncate:1;
    unsigned                     at_nul:1;
    unsigned                     nul:1;
} ngx_tailgate_json_dec_t;


struct ngx_tailgate_json_feed_s {
    ngx_pool_t                  *pool;
    ngx_tailgate_facts_t        *facts;
    ngx_tailgate_scan_error_t   *error;
    off_t                        at;        /* the bytes fed before these */

    ngx_uint_t                   state;
    ngx_uint_t                   sub;       /* in a string, number, word */
    ngx_uint_t                   key;       /* the string is a key */
    uint32_t                     hex;
    const char                  *word;
    ngx_tailgate_json_dec_t     *dec;       /* the string's decoding */
    ngx_uint_t                   counting;  /* its characters */

    ngx_uint_t                   depth;
    u_char                       object[NGX_TAILGATE_JSON_MAX_DEPTH + 1];

    ngx_uint_t                   seen;

    /* the top-level member being read */
    ngx_tailgate_json_dec_t      name;
    ssize_t                      n;
    ngx_uint_t                   nul_routes;
    ngx_uint_t                   fact;
    ngx_uint_t                   input;
    u_char                       type;      /* its value's first byte */
    u_char                       inner;     /* an array's first inside */
    off_t                        from;
    size_t                       chars;
    ngx_tailgate_json_dec_t     *value;

    ngx_tailgate_json_dec_t      model;

    /* the members of stream_options, while it is read */
    ngx_uint_t                   options;
    ngx_tailgate_json_dec_t      option;
    ssize_t                      option_len;
    ngx_uint_t                   option_seen;
    ngx_uint_t                   include_usage;
    ngx_tailgate_error_e         option_err;
    const char                  *option_arg;

    u_char                       name_buf[NGX_TAILGATE_JSON_MAX_KEY];
    u_char                       option_buf[NGX_TAILGATE_JSON_NAME_MAX];
};


static ngx_int_t ngx_tailgate_json_feed_value(ngx_tailgate_json_feed_t *jf,
    u_char c, off_t at);
static void ngx_tailgate_json_feed_key(ngx_tailgate_json_feed_t *jf);
static ngx_int_t ngx_tailgate_json_feed_close(ngx_tailgate_json_feed_t *jf,
    off_t at);
static ngx_int_t ngx_tailgate_json_feed_done(ngx_tailgate_json_feed_t *jf,
    off_t at);
static ngx_int_t ngx_tailgate_json_feed_member(ngx_tailgate_json_feed_t *jf,
    off_t to);
static ngx_int_t ngx_tailgate_json_feed_refuse(ngx_tailgate_json_feed_t *jf,
    ngx_tailgate_error_e err);
static void ngx_tailgate_json_dec_start(ngx_tailgate_json_dec_t *d,
    u_char *buf, size_t size);
static void ngx_tailgate_json_dec_bytes(ngx_tailgate_json_dec_t *d,
    u_char *p, size_t n);
static void ngx_tailgate_json_dec_escape(ngx_tailgate_json_dec_t *d,
    uint32_t cp, ngx_uint_t u);
static void ngx_tailgate_json_dec_end(ngx_tailgate_json_dec_t *d);


ngx_tailgate_json_feed_t *
ngx_tailgate_json_feed_start(ngx_pool_t *pool, ngx_tailgate_facts_t *facts,
    ngx_tailgate_scan_error_t *error)
{
    ngx_tailgate_json_feed_t  *jf;

    jf = ngx_pcalloc(pool, sizeof(ngx_tailgate_json_feed_t));
    if (jf == NULL) {
        return NULL;
    }

    jf->pool = pool;
    jf->facts = facts;
    jf->error = error;
    jf->state = NGX_TAILGATE_JF_START;
    jf->fact = NGX_TAILGATE_FACTS;

    return jf;
}


#define ngx_tailgate_json_ws(c)                                               \
    ((c) == ' ' || (c) == '\n' || (c) == '\r' || (c) == '\t')


/* NGX_OK: more, please; NGX_DECLINED: refused, *error says why */

ngx_int_t
ngx_tailgate_json_feed(ngx_tailgate_json_feed_t *jf, u_char *p, u_char *end)
{
    u_char     *start, *q, c;
    ngx_int_t   rc, v;

    start = p;

#define ngx_tailgate_jf_at()  (jf->at + (p - start))

    while (p < end) {
        c = *p;

        switch (jf->state) {

        case NGX_TAILGATE_JF_START:

            if (ngx_tailgate_json_ws(c)) {
                p++;
                break;
            }

            if (c != '{') {
                goto failed;
            }

            jf->depth = 1;
            jf->object[1] = 1;
            jf->state = NGX_TAILGATE_JF_MEMBER_FIRST;
            p++;
            break;

        case NGX_TAILGATE_JF_MEMBER_FIRST:
        case NGX_TAILGATE_JF_MEMBER:

            if (ngx_tailgate_json_ws(c)) {
                p++;
                break;
            }

            if (c == '}' && jf->state == NGX_TAILGATE_JF_MEMBER_FIRST) {
                p++;
                rc = ngx_tailgate_json_feed_close(jf, ngx_tailgate_jf_at());
                if (rc != NGX_OK) {
                    return rc;
                }

                break;
            }

            if (c != '"') {
                goto failed;
            }

            /* the keys the scan decodes: top-level ones, stream_options' */

            jf->dec = NULL;

            if (jf->depth == 1) {
                jf->dec = &jf->name;
                ngx_tailgate_json_dec_start(&jf->name, jf->name_buf,
                                            sizeof(jf->name_buf));
                jf->name.at_nul = 1;

            } else if (jf->options && jf->depth == 2) {
                jf->dec = &jf->option;
                ngx_tailgate_json_dec_start(&jf->option, jf->option_buf,
                                            sizeof(jf->option_buf));
                jf->option.at_nul = 1;
            }

            jf->key = 1;
            jf->counting = 0;
            jf->sub = 0;
            jf->state = NGX_TAILGATE_JF_STRING;
            p++;
            break;

        case NGX_TAILGATE_JF_COLON:

            if (ngx_tailgate_json_ws(c)) {
                p++;
                break;
            }

            if (c != ':') {
                goto failed;
            }

            jf->state = NGX_TAILGATE_JF_VALUE;
            p++;
            break;

        case NGX_TAILGATE_JF_VALUE:
        case NGX_TAILGATE_JF_ELEMENT_FIRST:

            if (ngx_tailgate_json_ws(c)) {
                p++;
                break;
            }

            if (jf->state == NGX_TAILGATE_JF_ELEMENT_FIRST) {
                if (jf->depth == 2) {
                    /* a top-level array: whether it is empty ("tools") */
                    jf->inner = c;
                }

                if (c == ']') {
                    p++;
                    rc = ngx_tailgate_json_feed_close(jf,
                                                      ngx_tailgate_jf_at());
                    if (rc != NGX_OK) {
                        return rc;
                    }

                    break;
                }
            }

            rc = ngx_tailgate_json_feed_value(jf, c, ngx_tailgate_jf_at());
            if (rc != NGX_OK) {
                return rc;
            }

            p++;
            break;

        case NGX_TAILGATE_JF_AFTER:

            if (ngx_tailgate_json_ws(c)) {
                p++;
                break;
            }

            if (c == ',') {
                jf->state = jf->object[jf->depth] ? NGX_TAILGATE_JF_MEMBER
                                                  : NGX_TAILGATE_JF_VALUE;
                p++;
                break;
            }

            if (c != (jf->object[jf->depth] ? '}' : ']')) {
                goto failed;
            }

            p++;
            rc = ngx_tailgate_json_feed_close(jf, ngx_tailgate_jf_at());
            if (rc != NGX_OK) {
                return rc;
            }

            break;

        case NGX_TAILGATE_JF_STRING:

            if (jf->sub == 0) {
                q = ngx_tailgate_plain(p, end);

                if (q != p) {
                    if (jf->dec) {
                        ngx_tailgate_json_dec_bytes(jf->dec, p, q - p);
                    }

                    if (jf->counting) {
                        for ( /* void */ ; p < q; p++) {
                            jf->chars += ((*p & 0xc0) != 0x80);
                        }
                    }

                    p = q;

                    if (p == end) {
                        break;
                    }

                    c = *p;
                }

                if (c < 0x20) {
                    goto failed;
                }

                if (c == '"') {
                    p++;

                    if (jf->dec) {
                        ngx_tailgate_json_dec_end(jf->dec);
                    }

                    if (jf->key) {
                        ngx_tailgate_json_feed_key(jf);
                        jf->state = NGX_TAILGATE_JF_COLON;
                        break;
                    }

                    rc = ngx_tailgate_json_feed_done(jf, ngx_tailgate_jf_at());
                    if (rc != NGX_OK) {
                        return rc;
                    }

                    break;
                }

                /* a backslash: an escape is a character */

                jf->chars += jf->counting;
                jf->sub = 1;
                p++;
                break;
            }

            if (jf->sub == 1) {
                p++;

                switch (c) {

                case '"': case '\\': case '/':
                    break;
                case 'b':
                    c = '\b';
                    break;
                case 'f':
                    c = '\f';
                    break;
                case 'n':
                    c = '\n';
                    break;
                case 'r':
                    c = '\r';
                    break;
                case 't':
                    c = '\t';
                    break;

                case 'u':
                    jf->sub = 2;
                    jf->hex = 0;
                    continue;

                default:
                    p--;
                    goto failed;
                }

                if (jf->dec) {
                    ngx_tailgate_json_dec_escape(jf->dec, c, 0);
                }

                jf->sub = 0;
                break;
            }

            /* \u and four hex digits, as ngx_hextoi() reads them */

            if (c >= '0' && c <= '9') {
                v = c - '0';

            } else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f') {
                v = (c | 0x20) - 'a' + 10;

            } else {
                goto failed;
            }

            jf->hex = jf->hex * 16 + v;
            p++;

            if (++jf->sub == 6) {
                if (jf->dec) {
                    ngx_tailgate_json_dec_escape(jf->dec, jf->hex, 1);
                }

                jf->sub = 0;
            }

            break;

        case NGX_TAILGATE_JF_LITERAL:

            if (c != (u_char) jf->word[jf->sub]) {
                goto failed;
            }

            p++;

            if (jf->word[++jf->sub] == '\0') {
                rc = ngx_tailgate_json_feed_done(jf, ngx_tailgate_jf_at());
                if (rc != NGX_OK) {
                    return rc;
                }
            }

            break;

        case NGX_TAILGATE_JF_NUMBER:

            switch (jf->sub) {

            case NGX_TAILGATE_JF_MINUS:
                if (c == '0') {
                    jf->sub = NGX_TAILGATE_JF_ZERO;

                } else if (c >= '1' && c <= '9') {
                    jf->sub = NGX_TAILGATE_JF_INT;

                } else {
                    goto failed;
                }

                p++;
                continue;

            case NGX_TAILGATE_JF_INT:
                if (c >= '0' && c <= '9') {
                    p++;
                    continue;
                }

                /* fall through */

            case NGX_TAILGATE_JF_ZERO:
                if (c == '.') {
                    jf->sub = NGX_TAILGATE_JF_DOT;
                    p++;
                    continue;
                }

                if (c == 'e' || c == 'E') {
                    jf->sub = NGX_TAILGATE_JF_E;
                    p++;
                    continue;
                }

                break;

            case NGX_TAILGATE_JF_DOT:
                if (c < '0' || c > '9') {
                    goto failed;
                }

                jf->sub = NGX_TAILGATE_JF_FRAC;
                p++;
                continue;

            case NGX_TAILGATE_JF_FRAC:
                if (c >= '0' && c <= '9') {
                    p++;
                    continue;
                }

                if (c == 'e' || c == 'E') {
                    jf->sub = NGX_TAILGATE_JF_E;
                    p++;
                    continue;
                }

                break;

            case NGX_TAILGATE_JF_E:
                if (c == '+' || c == '-') {
                    jf->sub = NGX_TAILGATE_JF_SIGN;
                    p++;
                    continue;
                }

                /* fall through */

            case NGX_TAILGATE_JF_SIGN:
                if (c < '0' || c > '9') {
                    goto failed;
                }

                jf->sub = NGX_TAILGATE_JF_EXP;
                p++;
                continue;

            default: /* NGX_TAILGATE_JF_EXP */
                if (c >= '0' && c <= '9') {
                    p++;
                    continue;
                }
            }

            /* the number ended before c, which is read again after it */

            rc = ngx_tailgate_json_feed_done(jf, ngx_tailgate_jf_at());
            if (rc != NGX_OK) {
                return rc;
            }

            break;

        case NGX_TAILGATE_JF_DONE:

            if (!ngx_tailgate_json_ws(c)) {
                goto failed;
            }

            p++;
            break;

        default: /* NGX_TAILGATE_JF_FAILED */
            return NGX_DECLINED;
        }
    }

#undef ngx_tailgate_jf_at

    jf->at += end - start;

    return NGX_OK;

failed:

    return ngx_tailgate_json_feed_refuse(jf, NGX_TAILGATE_ERR_JSON_INVALID);
}


/* the body is all there: NGX_OK with the facts, or NGX_DECLINED */

ngx_int_t
ngx_tailgate_json_feed_finish(ngx_tailgate_json_feed_t *jf)
{
    ngx_int_t  rc;

    if (jf->state == NGX_TAILGATE_JF_FAILED) {
        return NGX_DECLINED;
    }

    /* a number the body ends in is whole, and its member checked, first */

    if (jf->state == NGX_TAILGATE_JF_NUMBER
        && (jf->sub == NGX_TAILGATE_JF_ZERO || jf->sub == NGX_TAILGATE_JF_INT
            || jf->sub == NGX_TAILGATE_JF_FRAC
            || jf->sub == NGX_TAILGATE_JF_EXP))
    {
        rc = ngx_tailgate_json_feed_done(jf, jf->at);
        if (rc != NGX_OK) {
            return rc;
        }
    }

    if (jf->state != NGX_TAILGATE_JF_DONE) {
        return ngx_tailgate_json_feed_refuse(jf,
                                             NGX_TAILGATE_ERR_JSON_INVALID);
    }

    if (jf->facts->model_start == NULL) {
        return ngx_tailgate_json_feed_refuse(jf,
                                             NGX_TAILGATE_ERR_MISSING_MODEL);
    }

    return NGX_OK;
}


/* the first byte c of a value, "at" in the body */

static ngx_int_t
ngx_tailgate_json_feed_value(ngx_tailgate_json_feed_t *jf, u_char c, off_t at)
{
    ngx_uint_t  top;

    top = (jf->depth == 1);

    if (top) {
        jf->type = c;
        jf->from = at;
        jf->inner = 0;
        jf->chars = 0;
        jf->value = NULL;

        if (c == '"' && jf->fact == NGX_TAILGATE_FACT_MODEL
            && !(jf->seen & (1 << NGX_TAILGATE_FACT_MODEL)))
        {
            if (jf->model.buf == NULL) {
                jf->model.buf = ngx_pnalloc(jf->pool,
                                            NGX_TAILGATE_JSON_MODEL_KEPT);
                if (jf->model.buf == NULL) {
                    jf->state = NGX_TAILGATE_JF_FAILED;
                    return NGX_ERROR;
                }
            }

            ngx_tailgate_json_dec_start(&jf->model, jf->model.buf,
                                        NGX_TAILGATE_JSON_MODEL_KEPT);
            jf->model.truncate = 1;
            jf->value = &jf->model;
        }

        if (c == '{' && jf->fact == NGX_TAILGATE_FACT_STREAM_OPTIONS
            && !(jf->seen & (1 << NGX_TAILGATE_FACT_STREAM_OPTIONS)))
        {
            jf->options = 1;
            jf->option_seen = 0;
            jf->include_usage = 0;
            jf->option_err = NGX_TAILGATE_ERRS;
            jf->option_arg = NULL;
        }

    } else if (jf->options && jf->depth == 2
               && jf->state == NGX_TAILGATE_JF_VALUE
               && jf->option_err == NGX_TAILGATE_ERRS
               && jf->option_len == 13
               && ngx_strncmp(jf->option_buf, "include_usage", 13) == 0)
    {
        /* as ngx_tailgate_json_stream_options() reads them, in order */

        if (jf->option_seen++) {
            jf->option_err = NGX_TAILGATE_ERR_INCLUDE_USAGE_TWICE;

        } else if (c != 't' && c != 'f' && c != 'n') {
            jf->option_err = NGX_TAILGATE_ERR_INCLUDE_USAGE_TYPE;
            jf->option_arg = ngx_tailgate_json_type(c);

        } else {
            jf->include_usage = (c == 't');
        }
    }

    switch (c) {

    case '{':
    case '[':
        if (jf->depth + 1 > NGX_TAILGATE_JSON_MAX_DEPTH) {
            return ngx_tailgate_json_feed_refuse(jf,
                                             NGX_TAILGATE_ERR_JSON_TOO_DEEP);
        }

        jf->object[++jf->depth] = (c == '{');
        jf->state = (c == '{') ? NGX_TAILGATE_JF_MEMBER_FIRST
                               : NGX_TAILGATE_JF_ELEMENT_FIRST;
        return NGX_OK;

    case '"':
        jf->key = 0;
        jf->dec = top ? jf->value : NULL;
        jf->counting = top && jf->input;
        jf->sub = 0;
        jf->state = NGX_TAILGATE_JF_STRING;
        return NGX_OK;

    case 't':
        jf->word = "true";
        break;

    case 'f':
        jf->word = "false";
        break;

    case 'n':
        jf->word = "null";
        break;

    case '-':
        jf->sub = NGX_TAILGATE_JF_MINUS;
        jf->state = NGX_TAILGATE_JF_NUMBER;
        return NGX_OK;

    default:
        if (c < '0' || c > '9') {
            return ngx_tailgate_json_feed_refuse(jf,
                                                NGX_TAILGATE_ERR_JSON_INVALID);
        }

        jf->sub = (c == '0') ? NGX_TAILGATE_JF_ZERO : NGX_TAILGATE_JF_INT;
        jf->state = NGX_TAILGATE_JF_NUMBER;
        return NGX_OK;
    }

    jf->sub = 1;
    jf->state = NGX_TAILGATE_JF_LITERAL;

    return NGX_OK;
}


/* a key read: what the scan makes of it, as ngx_tailgate_json_scan() */

static void
ngx_tailgate_json_feed_key(ngx_tailgate_json_feed_t *jf)
{
    ssize_t     n;
    ngx_uint_t  i;

    if (jf->dec == &jf->option) {
        jf->option_len = jf->option.failed ? -1 : (ssize_t) jf->option.len;
        return;
    }

    if (jf->dec != &jf->name) {
        return;
    }

    n = jf->name.failed ? -1 : (ssize_t) jf->name.len;

    jf->nul_routes = jf->name.nul && n > 0
                     && ngx_tailgate_json_key_routes(jf->name_buf, n);

    if (jf->name.nul) {
        n = -1;
    }

    jf->n = n;

    for (i = 0; i < NGX_TAILGATE_FACTS; i++) {
        if ((size_t) n == ngx_tailgate_json_facts[i].name.len
            && ngx_strncmp(jf->name_buf, ngx_tailgate_json_facts[i].name.data,
                           n)
               == 0)
        {
            break;
        }
    }

    jf->fact = i;
    jf->input = (n == 5 && ngx_strncmp(jf->name_buf, "input", 5) == 0);
}


/* '}' or ']' read, "at" is past it */

static ngx_int_t
ngx_tailgate_json_feed_close(ngx_tailgate_json_feed_t *jf, off_t at)
{
    if (jf->depth == 1) {
        jf->state = NGX_TAILGATE_JF_DONE;
        return NGX_OK;
    }

    jf->depth--;

    return ngx_tailgate_json_feed_done(jf, at);
}


/* a value read whole, "at" is past it */

static ngx_int_t
ngx_tailgate_json_feed_done(ngx_tailgate_json_feed_t *jf, off_t at)
{
    jf->state = NGX_TAILGATE_JF_AFTER;

    if (jf->depth == 1) {
        return ngx_tailgate_json_feed_member(jf, at);
    }

    return NGX_OK;
}


/* a top-level member read whole: ngx_tailgate_json_scan()'s checks */

static ngx_int_t
ngx_tailgate_json_feed_member(ngx_tailgate_json_feed_t *jf, off_t to)
{
    ssize_t                          n;
    ngx_uint_t                       i;
    ngx_tailgate_facts_t            *facts;
    const ngx_tailgate_json_fact_t  *f;

    facts = jf->facts;
    n = jf->n;
    i = jf->fact;

    jf->options = 0;
    jf->fact = NGX_TAILGATE_FACTS;

    if (jf->nul_routes) {
        return ngx_tailgate_json_feed_refuse(jf, NGX_TAILGATE_ERR_KEY_NUL);
    }

    if (n > 0 && ngx_tailgate_json_key_folds(jf->name_buf, n)) {
        return ngx_tailgate_json_feed_refuse(jf, NGX_TAILGATE_ERR_KEY_CASE);
    }

    if (n > 0) {
        facts->keys |= ngx_tailgate_json_key_bit(jf->name_buf, n);

    } else {
        facts->keys_unknown = 1;
    }

    if (i != NGX_TAILGATE_FACTS) {
        f = &ngx_tailgate_json_facts[i];

        if (jf->seen & (1 << i)) {
            return ngx_tailgate_json_feed_refuse(jf, f->twice);
        }

        jf->seen |= 1 << i;

        if (jf->type == 'n') {
            return NGX_OK;
        }

        if (jf->type != f->type && !(f->type == 't' && jf->type == 'f')) {
            jf->error->arg = ngx_tailgate_json_type(jf->type);
            return ngx_tailgate_json_feed_refuse(jf, f->wrong);
        }

        switch (i) {

        case NGX_TAILGATE_FACT_MODEL:

            if (to - jf->from == 2) {
                return ngx_tailgate_json_feed_refuse(jf,
                                                NGX_TAILGATE_ERR_MODEL_EMPTY);
            }

            if (jf->model.failed) {
                return ngx_tailgate_json_feed_refuse(jf,
                                                NGX_TAILGATE_ERR_JSON_INVALID);
            }

            facts->model.data = jf->model.buf;
            facts->model.len = jf->model.len;
            facts->model_start = jf->model.buf;
            facts->model_end = jf->model.buf + jf->model.len;
            facts->model_from = jf->from;
            facts->model_to = to;
            break;

        case NGX_TAILGATE_FACT_STREAM:
            facts->stream = (jf->type == 't');
            break;

        case NGX_TAILGATE_FACT_TOOLS:
            facts->tools = (jf->inner != ']');
            break;

        default: /* NGX_TAILGATE_FACT_STREAM_OPTIONS */

            if (jf->option_err != NGX_TAILGATE_ERRS) {
                jf->error->arg = jf->option_arg;
                return ngx_tailgate_json_feed_refuse(jf, jf->option_err);
            }

            facts->include_usage = jf->include_usage;
        }
    }

    if (jf->input && jf->type == '"') {
        facts->input_chars = jf->chars;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_tailgate_json_feed_refuse(ngx_tailgate_json_feed_t *jf,
    ngx_tailgate_error_e err)
{
    jf->error->err = err;
    jf->state = NGX_TAILGATE_JF_FAILED;

    return NGX_DECLINED;
}


static void
ngx_tailgate_json_dec_start(ngx_tailgate_json_dec_t *d, u_char *buf,
    size_t size)
{
    ngx_memzero(d, sizeof(ngx_tailgate_json_dec_t));

    d->buf = buf;
    d->size = size;
}


static void
ngx_tailgate_json_dec_bytes(ngx_tailgate_json_dec_t *d, u_char *p, size_t n)
{
    if (d->failed || d->nul) {
        return;
    }

    if (d->high) {
        /* a high surrogate not followed by its low half */
        d->failed = 1;
        return;
    }

    if (n > d->size - d->len) {
        if (!d->truncate) {
            d->failed = 1;
            return;
        }

        n = d->size - d->len;
    }

    ngx_memcpy(d->buf + d->len, p, n);
    d->len += n;
}


/* an escape: \uXXXX's code point (u), or the character another stands for */

static void
ngx_tailgate_json_dec_escape(ngx_tailgate_json_dec_t *d, uint32_t cp,
    ngx_uint_t u)
{
    size_t  n;
    u_char  utf8[4];

    if (d->failed || d->nul) {
        return;
    }

    if (u && cp == 0 && d->at_nul) {
        /* where a parser of C strings stops reading the key */
        d->failed = (d->high != 0);
        d->nul = 1;
        return;
    }

    if (d->high) {
        if (!u || cp < 0xdc00 || cp > 0xdfff) {
            d->failed = 1;
            return;
        }

        cp = 0x10000 + ((d->high - 0xd800) << 10) + (cp - 0xdc00);
        d->high = 0;

    } else if (u && cp >= 0xdc00 && cp <= 0xdfff) {
        d->failed = 1;
        return;

    } else if (u && cp >= 0xd800 && cp <= 0xdbff) {
        d->high = cp;
        return;
    }

    /* ngx_tailgate_json_unescape() wants room for four bytes */

    if (!d->truncate && d->size - d->len < 4) {
        d->failed = 1;
        return;
    }

    if (cp < 0x80) {
        utf8[0] = (u_char) cp;
        n = 1;

    } else if (cp < 0x800) {
        utf8[0] = (u_char) (0xc0 | (cp >> 6));
        utf8[1] = (u_char) (0x80 | (cp & 0x3f));
        n = 2;

    } else if (cp < 0x10000) {
        utf8[0] = (u_char) (0xe0 | (cp >> 12));
        utf8[1] = (u_char) (0x80 | ((cp >> 6) & 0x3f));
        utf8[2] = (u_char) (0x80 | (cp & 0x3f));
        n = 3;

    } else {
        utf8[0] = (u_char) (0xf0 | (cp >> 18));
        utf8[1] = (u_char) (0x80 | ((cp >> 12) & 0x3f));
        utf8[2] = (u_char) (0x80 | ((cp >> 6) & 0x3f));
        utf8[3] = (u_char) (0x80 | (cp & 0x3f));
        n = 4;
    }

    n = ngx_min(n, d->size - d->len);

    ngx_memcpy(d->buf + d->len, utf8, n);
    d->len += n;
}


static void
ngx_tailgate_json_dec_end(ngx_tailgate_json_dec_t *d)
{
    if (d->high && !d->nul) {
        d->failed = 1;
    }
}
