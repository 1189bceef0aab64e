
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
