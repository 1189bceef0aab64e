
/*
 * Copyright (C) The Tailgate authors
 *
 * multipart/form-data bodies (audio transcriptions): finds the "model"
 * and "stream" fields among the parts, whatever their order, and skips
 * file contents with memchr-speed searches for the boundary.
 *
 * The gateway routes on the model it finds and the provider runs the model
 * it finds: both must read the same body the same way, and providers do
 * not all parse as RFC 2046 and 7578 say.  Some look for the boundary
 * anywhere, not only at the start of a line; some read a part before the
 * first boundary or after the last; some find "name=" wherever it is in a
 * header, trim the header name, split parameters at every ";", decode
 * percent escapes or read "model[]" as "model".  So the gateway reads the
 * body as the RFCs say, and refuses what a lenient parser could read
 * differently: the boundary anywhere but where it delimits a part, a
 * preamble or an epilogue, transport padding, a header line that is not
 * "Name: value" with CRLF and no control characters, folded lines, a
 * second Content-Disposition, a parameter given twice, "name*", a name
 * that is not the first parameter, a quoted value holding ";", "\" or
 * "name=", a field name that is "model" or "stream" to some parser but
 * not exactly, a part that is multipart itself, two Content-Types.  What
 * clients really send (curl -F, the openai SDKs, browsers, requests) has
 * none of these.
 */


#include "ngx_tailgate_scan.h"
#include "ngx_tailgate_names.h"


#define NGX_TAILGATE_MAX_BOUNDARY  70     /* RFC 2046 */


typedef struct {
    ngx_str_t                    name;
    ngx_str_t                    value;     /* unquoted */
    ngx_uint_t                   quoted;    /* unsigned:1 */
    ngx_uint_t                   escaped;   /* unsigned:1 */
} ngx_tailgate_param_t;


typedef struct {
    ngx_str_t                    name;      /* data NULL: none */
    ngx_uint_t                   encoded;   /* Content-Transfer-Encoding */
} ngx_tailgate_part_t;


static ngx_int_t ngx_tailgate_multipart_boundary(ngx_http_request_t *r,
    ngx_str_t *boundary);
static ngx_int_t ngx_tailgate_multipart_headers(ngx_pool_t *pool,
    u_char **pp, u_char *end, ngx_tailgate_part_t *part,
    ngx_tailgate_scan_error_t *error);
static ngx_int_t ngx_tailgate_multipart_disposition(ngx_pool_t *pool,
    u_char *p, u_char *last, ngx_tailgate_part_t *part,
    ngx_tailgate_scan_error_t *error);
static ngx_int_t ngx_tailgate_multipart_param(ngx_pool_t *pool, u_char **pp,
    u_char *end, ngx_tailgate_param_t *param);
static ngx_uint_t ngx_tailgate_multipart_encoded(u_char *p, u_char *last);
static ngx_uint_t ngx_tailgate_multipart_has_name(ngx_str_t *value);
static ngx_int_t ngx_tailgate_multipart_reads_as(ngx_pool_t *pool,
    ngx_str_t *name, ngx_uint_t *folds);
static u_char *ngx_tailgate_multipart_find(u_char *p, u_char *end,
    ngx_str_t *dash);
static ngx_pool_t *ngx_tailgate_multipart_scratch(ngx_http_request_t *r);
static void ngx_tailgate_multipart_scratch_free(void *data);
static ngx_uint_t ngx_tailgate_is_tchar(u_char c);
static ngx_uint_t ngx_tailgate_is_bchar(u_char c);
static ngx_uint_t ngx_tailgate_is_trimmed(u_char c);


static ngx_str_t  ngx_tailgate_model = ngx_string("model");
static ngx_str_t  ngx_tailgate_stream = ngx_string("stream");


ngx_int_t
ngx_tailgate_multipart_scan(ngx_http_request_t *r, u_char *p, u_char *end,
    ngx_tailgate_facts_t *facts, ngx_tailgate_scan_error_t *error)
{
    u_char               *start, *next, *value;
    ngx_int_t             rc;
    ngx_str_t             boundary, dash;
    ngx_pool_t           *scratch;
    ngx_uint_t            seen_stream, folds;
    ngx_tailgate_part_t   part;

    rc = ngx_tailgate_multipart_boundary(r, &boundary);

    if (rc != NGX_OK) {
        error->err = NGX_TAILGATE_ERR_FORM_CONTENT_TYPE;
        return rc;
    }

    /* "--boundary"; a delimiter is that at the start of a line */

    dash.len = boundary.len + 2;
    dash.data = ngx_pnalloc(r->pool, dash.len);
    scratch = ngx_tailgate_multipart_scratch(r);

    if (dash.data == NULL || scratch == NULL) {
        return NGX_ERROR;
    }

    dash.data[0] = '-';
    dash.data[1] = '-';
    ngx_memcpy(dash.data + 2, boundary.data, boundary.len);

    /* an empty preamble, and the CRLF that ends it, but nothing in it */

    if (end - p >= 2 && p[0] == CR && p[1] == LF) {
        p += 2;
    }

    if ((size_t) (end - p) < dash.len
        || ngx_strncmp(p, dash.data, dash.len) != 0)
    {
        error->err = NGX_TAILGATE_ERR_FORM_PREAMBLE;
        return NGX_DECLINED;
    }

    seen_stream = 0;

    for ( ;; ) {

        /* after a delimiter: "--" closes the body, CRLF starts a part */

        p += dash.len;

        if (end - p >= 2 && p[0] == '-' && p[1] == '-') {
            p += 2;
            break;
        }

        if (end - p < 2 || p[0] != CR || p[1] != LF) {
            error->err = NGX_TAILGATE_ERR_FORM_DELIMITER;
            return NGX_DECLINED;
        }

        p += 2;
        start = p;

        /* what a part's headers need is the part's only */
        ngx_reset_pool(scratch);

        rc = ngx_tailgate_multipart_headers(scratch, &p, end, &part, error);

        if (rc != NGX_OK) {
            return rc;
        }

        /*
         * The next "--boundary" anywhere from the part's first header on
         * must be the next delimiter: a parser that looks for it anywhere
         * would find a part there that the gateway never read.
         */

        next = ngx_tailgate_multipart_find(start, end, &dash);

        if (next == NULL) {
            error->err = NGX_TAILGATE_ERR_FORM_INVALID;
            return NGX_DECLINED;
        }

        if (next - p < 2 || next[-2] != CR || next[-1] != LF) {
            error->err = NGX_TAILGATE_ERR_FORM_BOUNDARY_IN_DATA;
            return NGX_DECLINED;
        }

        value = p;
        p = next;
        next -= 2;

        if (part.name.data == NULL) {
            continue;
        }

        if (part.name.len == 5 && ngx_strncmp(part.name.data, "model", 5) == 0)
        {
            if (facts->model_start) {
                error->err = NGX_TAILGATE_ERR_MODEL_TWICE;
                return NGX_DECLINED;
            }

            facts->model_start = value;
            facts->model_end = next;
            facts->model.data = value;
            facts->model.len = next - value;

        } else if (part.name.len == 6
                   && ngx_strncmp(part.name.data, "stream", 6) == 0)
        {
            if (seen_stream++) {
                error->err = NGX_TAILGATE_ERR_STREAM_TWICE;
                return NGX_DECLINED;
            }

            /* a provider may read "1" or "True" as true, or as false */

            if (next - value == 4 && ngx_strncmp(value, "true", 4) == 0) {
                facts->stream = 1;

            } else if (next - value != 5
                       || ngx_strncmp(value, "false", 5) != 0)
            {
                error->err = NGX_TAILGATE_ERR_FORM_STREAM_TYPE;
                return NGX_DECLINED;
            }

        } else {
            if (ngx_tailgate_multipart_reads_as(scratch, &part.name, &folds)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

            if (folds) {
                error->err = NGX_TAILGATE_ERR_FORM_FIELD_NAME;
                return NGX_DECLINED;
            }

            continue;
        }

        /* a provider might decode base64 where the gateway read bytes */

        if (part.encoded) {
            error->err = NGX_TAILGATE_ERR_FORM_ENCODING;
            return NGX_DECLINED;
        }
    }

    /* the epilogue: nothing, or the CRLF that ends the closing line */

    if (p != end && !(end - p == 2 && p[0] == CR && p[1] == LF)) {
        error->err = NGX_TAILGATE_ERR_FORM_EPILOGUE;
        return NGX_DECLINED;
    }

    if (facts->model_start == NULL) {
        error->err = NGX_TAILGATE_ERR_MISSING_MODEL;
        return NGX_DECLINED;
    }

    if (facts->model.len == 0) {
        error->err = NGX_TAILGATE_ERR_MODEL_EMPTY;
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/*
 * The headers of one part, up to the empty line: the field name from its
 * Content-Disposition, and whether it has a Content-Transfer-Encoding.
 */

static ngx_int_t
ngx_tailgate_multipart_headers(ngx_pool_t *pool, u_char **pp, u_char *end,
    ngx_tailgate_part_t *part, ngx_tailgate_scan_error_t *error)
{
    u_char      *p, *q, *eol, *last, *v;
    size_t       len;
    ngx_int_t    rc;
    ngx_uint_t   disposition;

    p = *pp;
    disposition = 0;
    ngx_memzero(part, sizeof(ngx_tailgate_part_t));

    for ( ;; ) {
        eol = memchr(p, LF, end - p);

        if (eol == NULL) {
            error->err = NGX_TAILGATE_ERR_FORM_INVALID;
            return NGX_DECLINED;
        }

        /* a bare LF ends a line for some parsers only */

        if (eol == p || eol[-1] != CR) {
            error->err = NGX_TAILGATE_ERR_FORM_HEADER;
            return NGX_DECLINED;
        }

        last = eol - 1;

        if (last == p) {
            *pp = eol + 1;
            return NGX_OK;
        }

        /*
         * No control characters but HT: a lone CR ends a line for some, a
         * NUL a name for others.  And no folded line, which continues the
         * previous header (obsolete).
         */

        for (q = p; q < last; q++) {
            if ((*q < 0x20 && *q != '\t') || *q == 0x7f) {
                error->err = NGX_TAILGATE_ERR_FORM_HEADER;
                return NGX_DECLINED;
            }
        }

        if (*p == ' ' || *p == '\t') {
            error->err = NGX_TAILGATE_ERR_FORM_HEADER;
            return NGX_DECLINED;
        }

        /* a token and the colon right after it: some trim "Name :" */

        for (q = p; q < last && ngx_tailgate_is_tchar(*q); q++) {
            /* void */
        }

        if (q == p || q == last || *q != ':') {
            error->err = NGX_TAILGATE_ERR_FORM_HEADER;
            return NGX_DECLINED;
        }

        len = q - p;

        for (v = q + 1; v < last && (*v == ' ' || *v == '\t'); v++) {
            /* void */
        }

        if (len == sizeof("Content-Disposition") - 1
            && ngx_strncasecmp(p, (u_char *) "Content-Disposition", len) == 0)
        {
            if (disposition++) {
                error->err = NGX_TAILGATE_ERR_FORM_DISPOSITION_TWICE;
                return NGX_DECLINED;
            }

            rc = ngx_tailgate_multipart_disposition(pool, v, last, part,
                                                    error);
            if (rc != NGX_OK) {
                return rc;
            }

        } else if (len == sizeof("Content-Type") - 1
                   && ngx_strncasecmp(p, (u_char *) "Content-Type", len) == 0)
        {
            /* a parser that goes into nested parts finds other fields */

            if ((size_t) (last - v) >= sizeof("multipart/") - 1
                && ngx_strncasecmp(v, (u_char *) "multipart/",
                                   sizeof("multipart/") - 1) == 0)
            {
                error->err = NGX_TAILGATE_ERR_FORM_NESTED;
                return NGX_DECLINED;
            }

        } else if (len == sizeof("Content-Transfer-Encoding") - 1
                   && ngx_strncasecmp(p, (u_char *) "Content-Transfer-"
                                      "Encoding", len) == 0)
        {
            part->encoded = ngx_tailgate_multipart_encoded(v, last);
        }

        p = eol + 1;
    }
}


/*
 * "form-data; name=...; filename=...", the value of a Content-Disposition
 * from p (past the spaces after the colon) to last.
 */

static ngx_int_t
ngx_tailgate_multipart_disposition(ngx_pool_t *pool, u_char *p, u_char *last,
    ngx_tailgate_part_t *part, ngx_tailgate_scan_error_t *error)
{
    ngx_int_t             rc;
    ngx_uint_t            first;
    ngx_tailgate_param_t  param;

    if ((size_t) (last - p) < sizeof("form-data") - 1
        || ngx_strncasecmp(p, (u_char *) "form-data", sizeof("form-data") - 1)
           != 0)
    {
        error->err = NGX_TAILGATE_ERR_FORM_INVALID;
        return NGX_DECLINED;
    }

    p += sizeof("form-data") - 1;

    for (first = 1; /* void */; first = 0) {
        rc = ngx_tailgate_multipart_param(pool, &p, last, &param);

        if (rc == NGX_DONE) {
            return NGX_OK;
        }

        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }

        if (rc == NGX_DECLINED) {
            error->err = NGX_TAILGATE_ERR_FORM_PARAM;
            return NGX_DECLINED;
        }

        /*
         * Split at every ";", or searched for "name=" anywhere, a quoted
         * value holds other parameters; unescaped or not, another value.
         */

        if (param.quoted
            && (param.escaped
                || ngx_strlchr(param.value.data,
                               param.value.data + param.value.len, ';')
                || ngx_tailgate_multipart_has_name(&param.value)))
        {
            error->err = NGX_TAILGATE_ERR_FORM_QUOTED;
            return NGX_DECLINED;
        }

        if (param.name.len == 5
            && ngx_strncasecmp(param.name.data, (u_char *) "name*", 5) == 0)
        {
            error->err = NGX_TAILGATE_ERR_FORM_NAME;
            return NGX_DECLINED;
        }

        if (param.name.len != 4
            || ngx_strncasecmp(param.name.data, (u_char *) "name", 4) != 0)
        {
            continue;
        }

        /* first: where a search for "name=" finds it before "filename=" */

        if (part->name.data || !first) {
            error->err = NGX_TAILGATE_ERR_FORM_NAME;
            return NGX_DECLINED;
        }

        part->name = param.value;
    }
}


/*
 * The boundary parameter of the one Content-Type.  NGX_DECLINED: not
 * multipart, a second Content-Type (proxied too, and the last one counts
 * for some), or no single, valid boundary; NGX_ERROR: out of memory.
 */

static ngx_int_t
ngx_tailgate_multipart_boundary(ngx_http_request_t *r, ngx_str_t *boundary)
{
    u_char                *p, *end;
    ngx_int_t              rc;
    ngx_uint_t             i, n;
    ngx_list_part_t       *part;
    ngx_table_elt_t       *ct, *h;
    ngx_tailgate_param_t   param;

    ct = r->headers_in.content_type;

    if (ct == NULL
        || ct->value.len < sizeof("multipart/form-data") - 1
        || ngx_strncasecmp(ct->value.data, (u_char *) "multipart/form-data",
                           sizeof("multipart/form-data") - 1) != 0)
    {
        return NGX_DECLINED;
    }

    n = 0;

    for (part = &r->headers_in.headers.part; part; part = part->next) {
        h = part->elts;

        for (i = 0; i < part->nelts; i++) {
            if (h[i].key.len == sizeof("Content-Type") - 1
                && ngx_strncasecmp(h[i].key.data, (u_char *) "Content-Type",
                                   sizeof("Content-Type") - 1) == 0
                && n++)
            {
                return NGX_DECLINED;
            }
        }
    }

    p = ct->value.data + sizeof("multipart/form-data") - 1;
    end = ct->value.data + ct->value.len;

    boundary->len = 0;
    boundary->data = NULL;

    for ( ;; ) {
        rc = ngx_tailgate_multipart_param(r->pool, &p, end, &param);

        if (rc == NGX_DONE) {
            break;
        }

        if (rc != NGX_OK) {
            return rc;
        }

        if (param.name.len == sizeof("boundary") - 1
            && ngx_strncasecmp(param.name.data, (u_char *) "boundary",
                               sizeof("boundary") - 1) == 0)
        {
            if (boundary->data) {
                return NGX_DECLINED;
            }

            *boundary = param.value;
        }
    }

    if (boundary->data == NULL || boundary->len == 0
        || boundary->len > NGX_TAILGATE_MAX_BOUNDARY
        || boundary->data[boundary->len - 1] == ' ')
    {
        return NGX_DECLINED;
    }

    /* RFC 2046 bchars: a parser that trims or splits sees another */

    for (i = 0; i < boundary->len; i++) {
        if (!ngx_tailgate_is_bchar(boundary->data[i])) {
            return NGX_DECLINED;
        }
    }

    return NGX_OK;
}


/*
 * One "; name=value" parameter starting at *pp, value a token or a quoted
 * string (unquoted into the pool), no spaces around the "=".  NGX_DONE at
 * the end of the header, NGX_DECLINED when it does not parse, NGX_ERROR
 * when out of memory.
 */

static ngx_int_t
ngx_tailgate_multipart_param(ngx_pool_t *pool, u_char **pp, u_char *end,
    ngx_tailgate_param_t *param)
{
    u_char  *p, *q, *start;

    p = *pp;

    while (p < end && (*p == ' ' || *p == '\t')) {
        p++;
    }

    if (p == end) {
        return NGX_DONE;
    }

    if (*p++ != ';') {
        return NGX_DECLINED;
    }

    while (p < end && (*p == ' ' || *p == '\t')) {
        p++;
    }

    start = p;

    while (p < end && ngx_tailgate_is_tchar(*p)) {
        p++;
    }

    param->name.data = start;
    param->name.len = p - start;
    param->quoted = 0;
    param->escaped = 0;

    if (param->name.len == 0 || p == end || *p++ != '=') {
        return NGX_DECLINED;
    }

    if (p < end && *p == '"') {
        p++;

        q = ngx_pnalloc(pool, end - p);
        if (q == NULL) {
            return NGX_ERROR;
        }

        param->value.data = q;
        param->quoted = 1;

        for ( ;; ) {
            if (p == end) {
                return NGX_DECLINED;
            }

            if (*p == '"') {
                p++;
                break;
            }

            if (*p == '\\') {
                param->escaped = 1;

                if (++p == end) {
                    return NGX_DECLINED;
                }
            }

            *q++ = *p++;
        }

        param->value.len = q - param->value.data;

    } else {
        start = p;

        while (p < end && ngx_tailgate_is_tchar(*p)) {
            p++;
        }

        param->value.data = start;
        param->value.len = p - start;

        if (param->value.len == 0) {
            return NGX_DECLINED;
        }
    }

    *pp = p;

    return NGX_OK;
}


/* a Content-Transfer-Encoding that is not the identity */

static ngx_uint_t
ngx_tailgate_multipart_encoded(u_char *p, u_char *last)
{
    size_t  len;

    while (last > p && (last[-1] == ' ' || last[-1] == '\t')) {
        last--;
    }

    len = last - p;

    return !((len == 4 && (ngx_strncasecmp(p, (u_char *) "7bit", 4) == 0
                           || ngx_strncasecmp(p, (u_char *) "8bit", 4) == 0))
             || (len == 6 && ngx_strncasecmp(p, (u_char *) "binary", 6) == 0));
}


/* "name=", "name =", "filename=": what a search for the name finds */

static ngx_uint_t
ngx_tailgate_multipart_has_name(ngx_str_t *value)
{
    u_char  *p, *end;

    end = value->data + value->len;

    for (p = value->data; end - p >= 5; p++) {
        if (ngx_strncasecmp(p, (u_char *) "name", 4) != 0) {
            continue;
        }

        for (p += 4; p < end && (*p == ' ' || *p == '\t'); p++) {
            /* void */
        }

        if (p < end && *p == '=') {
            return 1;
        }

        p--;
    }

    return 0;
}


/*
 * Whether a field name that is not "model" or "stream" is one of them to
 * some parser: in another case, in quotes or spaces (trimmed), with
 * percent escapes (decoded), or as "model[]" (PHP, Rails, qs).
 */

static ngx_int_t
ngx_tailgate_multipart_reads_as(ngx_pool_t *pool, ngx_str_t *name,
    ngx_uint_t *folds)
{
    u_char     *p, *end, *d, *s;
    ngx_int_t   n;

    *folds = 0;

    if (name->len < ngx_tailgate_model.len) {
        return NGX_OK;
    }

    s = ngx_pnalloc(pool, name->len);
    if (s == NULL) {
        return NGX_ERROR;
    }

    d = s;
    end = name->data + name->len;

    for (p = name->data; p < end; p++) {
        if (*p == '%' && end - p >= 3
            && (n = ngx_hextoi(p + 1, 2)) != NGX_ERROR)
        {
            *d++ = (u_char) n;
            p += 2;
            continue;
        }

        *d++ = *p;
    }

    end = d;

    for (p = s; p < end && ngx_tailgate_is_trimmed(*p); p++) {
        /* void */
    }

    /* "model[]", and "model" to a C string */

    for (d = p; d < end && *d != '[' && *d != '\0'; d++) {
        /* void */
    }

    end = d;

    while (end > p && ngx_tailgate_is_trimmed(end[-1])) {
        end--;
    }

    *folds = ngx_tailgate_key_is(p, end - p, &ngx_tailgate_model)
             || ngx_tailgate_key_is(p, end - p, &ngx_tailgate_stream);

    return NGX_OK;
}


/* the first "--boundary" from p on, wherever it is */

static u_char *
ngx_tailgate_multipart_find(u_char *p, u_char *end, ngx_str_t *dash)
{
    u_char  *last;

    if ((size_t) (end - p) < dash->len) {
        return NULL;
    }

    last = end - dash->len + 1;

    for ( ;; ) {
        p = memchr(p, '-', last - p);

        if (p == NULL) {
            return NULL;
        }

        if (ngx_strncmp(p, dash->data, dash->len) == 0) {
            return p;
        }

        p++;
    }
}


/*
 * A pool for what one part's headers need (quoted values, a field name
 * decoded), reset for the next part: a body of many parts costs no more
 * than its largest part.  It goes with the request's pool.
 */

static ngx_pool_t *
ngx_tailgate_multipart_scratch(ngx_http_request_t *r)
{
    ngx_pool_t          *pool;
    ngx_pool_cleanup_t  *cln;

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NULL;
    }

    pool = ngx_create_pool(1024, r->connection->log);
    if (pool == NULL) {
        return NULL;
    }

    cln->handler = ngx_tailgate_multipart_scratch_free;
    cln->data = pool;

    return pool;
}


static void
ngx_tailgate_multipart_scratch_free(void *data)
{
    ngx_destroy_pool(data);
}


/* RFC 9110 token characters */

static ngx_uint_t
ngx_tailgate_is_tchar(u_char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
           || (c >= '0' && c <= '9')
           || (c != '\0' && ngx_strchr("!#$%&'*+-.^_`|~", c) != NULL);
}


/* RFC 2046 boundary characters */

static ngx_uint_t
ngx_tailgate_is_bchar(u_char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
           || (c >= '0' && c <= '9')
           || (c != '\0' && ngx_strchr("'()+_,-./:=? ", c) != NULL);
}


/* what lenient parsers trim off a name */

static ngx_uint_t
ngx_tailgate_is_trimmed(u_char c)
{
    return c == ' ' || c == '\t' || c == '"' || c == '\'';
}


/*
 * The scan above, piece by piece: for a body in a temporary file (read a
 * window at a time) or in several buffers.  It reads the same grammar and
 * refuses the same things with the same errors; what it keeps is bounded:
 * the headers of one part (NGX_TAILGATE_FORM_HEADERS_MAX), the first bytes
 * of a model or stream field (longer models are no route's), the boundary
 * and its search table.  A file's contents go by with memchr and no copy.
 */

#define NGX_TAILGATE_FORM_HEADERS_MAX  8192
#define NGX_TAILGATE_FORM_VALUE_MAX    (NGX_TAILGATE_MAX_ROUTE_NAME + 3)


typedef enum {
    NGX_TAILGATE_MP_PREAMBLE = 0,
    NGX_TAILGATE_MP_DELIMITER,      /* the 2 bytes after a boundary */
    NGX_TAILGATE_MP_HEADERS,
    NGX_TAILGATE_MP_DATA,
    NGX_TAILGATE_MP_EPILOGUE
} ngx_tailgate_mp_state_e;


typedef enum {
    NGX_TAILGATE_MP_OTHER = 0,
    NGX_TAILGATE_MP_MODEL,
    NGX_TAILGATE_MP_STREAM
} ngx_tailgate_mp_field_e;


struct ngx_tailgate_multipart_s {
    ngx_http_request_t          *request;
    ngx_tailgate_facts_t        *facts;
    ngx_tailgate_scan_error_t   *error;

    ngx_str_t                    dash;
    u_char                      *shift;     /* KMP table of dash */

    ngx_tailgate_mp_state_e      state;
    off_t                        offset;    /* of the next byte fed */

    u_char                      *hdr;       /* preamble, delimiter, headers */
    size_t                       hdr_len;
    size_t                       line;      /* where the last line starts */
    ngx_tailgate_part_t          part;
    ngx_tailgate_mp_field_e      field;

    size_t                       match;     /* bytes of dash matched */
    u_char                       before[2]; /* data bytes before those */
    off_t                        data_from;
    off_t                        data_len;

    ngx_pool_t                  *scratch;   /* the part's, reset for each */
    u_char                      *value;     /* a field's first bytes */
    size_t                       value_len;

    ngx_uint_t                   seen_model;
    ngx_uint_t                   seen_stream;
};


static ngx_int_t ngx_tailgate_mp_byte(ngx_tailgate_multipart_t *mp,
    u_char c);
static void ngx_tailgate_mp_data(ngx_tailgate_multipart_t *mp, u_char *p,
    size_t n);
static ngx_int_t ngx_tailgate_mp_part_end(ngx_tailgate_multipart_t *mp);
static ngx_int_t ngx_tailgate_mp_headers_end(ngx_tailgate_multipart_t *mp);
static ngx_int_t ngx_tailgate_mp_refuse(ngx_tailgate_multipart_t *mp,
    ngx_tailgate_error_e err);


ngx_tailgate_multipart_t *
ngx_tailgate_multipart_start(ngx_http_request_t *r,
    ngx_tailgate_facts_t *facts, ngx_tailgate_scan_error_t *error,
    ngx_int_t *rc)
{
    size_t                     i, k;
    ngx_str_t                  boundary;
    ngx_tailgate_multipart_t  *mp;

    *rc = ngx_tailgate_multipart_boundary(r, &boundary);

    if (*rc != NGX_OK) {
        error->err = NGX_TAILGATE_ERR_FORM_CONTENT_TYPE;
        return NULL;
    }

    *rc = NGX_ERROR;

    mp = ngx_pcalloc(r->pool, sizeof(ngx_tailgate_multipart_t));
    if (mp == NULL) {
        return NULL;
    }

    mp->request = r;
    mp->facts = facts;
    mp->error = error;

    mp->dash.len = boundary.len + 2;
    mp->dash.data = ngx_pnalloc(r->pool, 2 * mp->dash.len);
    mp->hdr = ngx_pnalloc(r->pool, NGX_TAILGATE_FORM_HEADERS_MAX);
    mp->value = ngx_pnalloc(r->pool, NGX_TAILGATE_FORM_VALUE_MAX);
    mp->scratch = ngx_tailgate_multipart_scratch(r);

    if (mp->dash.data == NULL || mp->hdr == NULL || mp->value == NULL
        || mp->scratch == NULL)
    {
        return NULL;
    }

    mp->dash.data[0] = '-';
    mp->dash.data[1] = '-';
    ngx_memcpy(mp->dash.data + 2, boundary.data, boundary.len);

    /*
     * shift[i]: the longest proper prefix of dash[0..i] that ends it too,
     * where a search resumes after a mismatch ("---b" for "--b")
     */

    mp->shift = mp->dash.data + mp->dash.len;
    mp->shift[0] = 0;

    for (i = 1, k = 0; i < mp->dash.len; i++) {
        while (k && mp->dash.data[i] != mp->dash.data[k]) {
            k = mp->shift[k - 1];
        }

        if (mp->dash.data[i] == mp->dash.data[k]) {
            k++;
        }

        mp->shift[i] = (u_char) k;
    }

    *rc = NGX_OK;

    return mp;
}


/* NGX_OK: more, please; NGX_DECLINED: refused; NGX_ERROR: no memory */

ngx_int_t
ngx_tailgate_multipart_feed(ngx_tailgate_multipart_t *mp, u_char *p,
    u_char *end)
{
    u_char     *q, c;
    size_t      f;
    ngx_int_t   rc;

    while (p < end) {

        if (mp->state != NGX_TAILGATE_MP_DATA) {
            rc = ngx_tailgate_mp_byte(mp, *p++);
            mp->offset++;

            if (rc != NGX_OK) {
                return rc;
            }

            continue;
        }

        /* a part's contents: to the next "--" at memchr speed */

        if (mp->match == 0) {
            q = memchr(p, '-', end - p);

            if (q == NULL) {
                q = end;
            }

            ngx_tailgate_mp_data(mp, p, q - p);
            mp->offset += q - p;
            p = q;

            if (p == end) {
                break;
            }
        }

        c = *p++;
        mp->offset++;

        while (mp->match && mp->dash.data[mp->match] != c) {
            f = mp->shift[mp->match - 1];

            /* what leaves the candidate was data after all */
            ngx_tailgate_mp_data(mp, mp->dash.data, mp->match - f);
            mp->match = f;
        }

        if (mp->dash.data[mp->match] == c) {
            mp->match++;

        } else {
            ngx_tailgate_mp_data(mp, &c, 1);
        }

        if (mp->match == mp->dash.len) {
            mp->match = 0;

            rc = ngx_tailgate_mp_part_end(mp);
            if (rc != NGX_OK) {
                return rc;
            }

            mp->state = NGX_TAILGATE_MP_DELIMITER;
            mp->hdr_len = 0;
        }
    }

    return NGX_OK;
}


/* the body ended: NGX_OK, or NGX_DECLINED with the error */

ngx_int_t
ngx_tailgate_multipart_finish(ngx_tailgate_multipart_t *mp)
{
    u_char     *p;
    ngx_int_t   rc;

    switch (mp->state) {

    case NGX_TAILGATE_MP_PREAMBLE:
        return ngx_tailgate_mp_refuse(mp, NGX_TAILGATE_ERR_FORM_PREAMBLE);

    case NGX_TAILGATE_MP_DELIMITER:
        return ngx_tailgate_mp_refuse(mp, NGX_TAILGATE_ERR_FORM_DELIMITER);

    case NGX_TAILGATE_MP_HEADERS:

        /* the first bad line, or no end of line: what the whole scan says */

        p = mp->hdr;
        ngx_reset_pool(mp->scratch);
        rc = ngx_tailgate_multipart_headers(mp->scratch, &p,
                                            mp->hdr + mp->hdr_len,
                                            &mp->part, mp->error);
        if (rc != NGX_OK) {
            return rc;
        }

        return ngx_tailgate_mp_refuse(mp, NGX_TAILGATE_ERR_FORM_INVALID);

    case NGX_TAILGATE_MP_DATA:
        return ngx_tailgate_mp_refuse(mp, NGX_TAILGATE_ERR_FORM_INVALID);

    default: /* NGX_TAILGATE_MP_EPILOGUE */

        if (mp->hdr_len != 0
            && !(mp->hdr_len == 2 && mp->hdr[0] == CR && mp->hdr[1] == LF))
        {
            return ngx_tailgate_mp_refuse(mp, NGX_TAILGATE_ERR_FORM_EPILOGUE);
        }
    }

    if (!mp->seen_model) {
        return ngx_tailgate_mp_refuse(mp, NGX_TAILGATE_ERR_MISSING_MODEL);
    }

    if (mp->facts->model.len == 0) {
        return ngx_tailgate_mp_refuse(mp, NGX_TAILGATE_ERR_MODEL_EMPTY);
    }

    return NGX_OK;
}


/* one byte outside a part's contents; they are few */

static ngx_int_t
ngx_tailgate_mp_byte(ngx_tailgate_multipart_t *mp, u_char c)
{
    u_char  *h;
    size_t   want, i;

    h = mp->hdr;

    switch (mp->state) {

    case NGX_TAILGATE_MP_PREAMBLE:

        /* an empty preamble and its CRLF, then the first boundary */

        h[mp->hdr_len++] = c;

        if (mp->hdr_len < 2) {
            return NGX_OK;
        }

        want = (h[0] == CR && h[1] == LF) ? mp->dash.len + 2 : mp->dash.len;

        if (mp->hdr_len < want) {
            return NGX_OK;
        }

        if (ngx_strncmp(h + want - mp->dash.len, mp->dash.data,
                        mp->dash.len)
            != 0)
        {
            return ngx_tailgate_mp_refuse(mp, NGX_TAILGATE_ERR_FORM_PREAMBLE);
        }

        mp->state = NGX_TAILGATE_MP_DELIMITER;
        mp->hdr_len = 0;
        return NGX_OK;

    case NGX_TAILGATE_MP_DELIMITER:

        h[mp->hdr_len++] = c;

        if (mp->hdr_len < 2) {
            return NGX_OK;
        }

        mp->hdr_len = 0;

        if (h[0] == '-' && h[1] == '-') {
            mp->state = NGX_TAILGATE_MP_EPILOGUE;
            return NGX_OK;
        }

        if (h[0] != CR || h[1] != LF) {
            return ngx_tailgate_mp_refuse(mp,
                                          NGX_TAILGATE_ERR_FORM_DELIMITER);
        }

        mp->state = NGX_TAILGATE_MP_HEADERS;
        mp->line = 0;
        return NGX_OK;

    case NGX_TAILGATE_MP_HEADERS:

        if (mp->hdr_len == NGX_TAILGATE_FORM_HEADERS_MAX) {
            return ngx_tailgate_mp_refuse(mp, NGX_TAILGATE_ERR_FORM_HEADER);
        }

        i = mp->hdr_len;
        h[mp->hdr_len++] = c;

        if (c != LF) {
            return NGX_OK;
        }

        /*
         * The block is read when it ends (an empty line), or at a line the
         * whole scan would refuse (a bare LF): then the same first error.
         */

        if (i == mp->line || h[i - 1] != CR || i - mp->line == 1) {
            return ngx_tailgate_mp_headers_end(mp);
        }

        mp->line = i + 1;
        return NGX_OK;

    default: /* NGX_TAILGATE_MP_EPILOGUE */

        if (mp->hdr_len == 2) {
            return ngx_tailgate_mp_refuse(mp, NGX_TAILGATE_ERR_FORM_EPILOGUE);
        }

        h[mp->hdr_len++] = c;
        return NGX_OK;
    }
}


static ngx_int_t
ngx_tailgate_mp_headers_end(ngx_tailgate_multipart_t *mp)
{
    u_char              *p;
    ngx_int_t            rc;
    ngx_tailgate_part_t *part;

    p = mp->hdr;
    part = &mp->part;

    ngx_reset_pool(mp->scratch);

    rc = ngx_tailgate_multipart_headers(mp->scratch, &p,
                                        mp->hdr + mp->hdr_len, part,
                                        mp->error);
    if (rc != NGX_OK) {
        return rc;
    }

    /* "--boundary" in a header: a part there for a lenient parser */

    if (ngx_tailgate_multipart_find(mp->hdr, mp->hdr + mp->hdr_len, &mp->dash))
    {
        return ngx_tailgate_mp_refuse(mp,
                                      NGX_TAILGATE_ERR_FORM_BOUNDARY_IN_DATA);
    }

    mp->field = NGX_TAILGATE_MP_OTHER;

    if (part->name.len == 5 && ngx_strncmp(part->name.data, "model", 5) == 0)
    {
        mp->field = NGX_TAILGATE_MP_MODEL;

    } else if (part->name.len == 6
               && ngx_strncmp(part->name.data, "stream", 6) == 0)
    {
        mp->field = NGX_TAILGATE_MP_STREAM;
    }

    mp->state = NGX_TAILGATE_MP_DATA;
    mp->data_from = mp->offset + 1;
    mp->data_len = 0;
    mp->value_len = 0;
    mp->match = 0;

    return NGX_OK;
}


/* bytes of a part's contents: the last two are kept, and a field's start */

static void
ngx_tailgate_mp_data(ngx_tailgate_multipart_t *mp, u_char *p, size_t n)
{
    size_t  room;

    if (n == 0) {
        return;
    }

    if (mp->field != NGX_TAILGATE_MP_OTHER) {
        room = NGX_TAILGATE_FORM_VALUE_MAX - mp->value_len;
        room = ngx_min(room, n);
        ngx_memcpy(mp->value + mp->value_len, p, room);
        mp->value_len += room;
    }

    if (n >= 2) {
        mp->before[0] = p[n - 2];
        mp->before[1] = p[n - 1];

    } else {
        mp->before[0] = mp->before[1];
        mp->before[1] = p[0];
    }

    mp->data_len += n;
}


/* a boundary after a part's contents: what the whole scan does there */

static ngx_int_t
ngx_tailgate_mp_part_end(ngx_tailgate_multipart_t *mp)
{
    off_t                  len;
    ngx_uint_t             folds;
    ngx_tailgate_facts_t  *facts;

    facts = mp->facts;

    if (mp->data_len < 2 || mp->before[0] != CR || mp->before[1] != LF) {
        return ngx_tailgate_mp_refuse(mp,
                                      NGX_TAILGATE_ERR_FORM_BOUNDARY_IN_DATA);
    }

    len = mp->data_len - 2;

    if (mp->part.name.data == NULL) {
        return NGX_OK;
    }

    switch (mp->field) {

    case NGX_TAILGATE_MP_MODEL:

        if (mp->seen_model++) {
            return ngx_tailgate_mp_refuse(mp, NGX_TAILGATE_ERR_MODEL_TWICE);
        }

        /* a longer one is kept at a length no route has */

        facts->model.data = mp->value;
        facts->model.len = (size_t) ngx_min(len,
                                            NGX_TAILGATE_MAX_ROUTE_NAME + 1);
        facts->model_start = mp->value;
        facts->model_end = mp->value + facts->model.len;
        facts->model_from = mp->data_from;
        facts->model_to = mp->data_from + len;

        /* the next field's bytes go elsewhere */

        mp->value = ngx_pnalloc(mp->request->pool,
                                NGX_TAILGATE_FORM_VALUE_MAX);
        if (mp->value == NULL) {
            return NGX_ERROR;
        }

        break;

    case NGX_TAILGATE_MP_STREAM:

        if (mp->seen_stream++) {
            return ngx_tailgate_mp_refuse(mp, NGX_TAILGATE_ERR_STREAM_TWICE);
        }

        if (len == 4 && ngx_strncmp(mp->value, "true", 4) == 0) {
            facts->stream = 1;

        } else if (len != 5 || ngx_strncmp(mp->value, "false", 5) != 0) {
            return ngx_tailgate_mp_refuse(mp,
                                          NGX_TAILGATE_ERR_FORM_STREAM_TYPE);
        }

        break;

    default:
        if (ngx_tailgate_multipart_reads_as(mp->scratch,
                                            &mp->part.name, &folds)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        if (folds) {
            return ngx_tailgate_mp_refuse(mp,
                                          NGX_TAILGATE_ERR_FORM_FIELD_NAME);
        }

        return NGX_OK;
    }

    if (mp->part.encoded) {
        return ngx_tailgate_mp_refuse(mp, NGX_TAILGATE_ERR_FORM_ENCODING);
    }

    return NGX_OK;
}


static ngx_int_t
ngx_tailgate_mp_refuse(ngx_tailgate_multipart_t *mp, ngx_tailgate_error_e err)
{
    mp->error->err = err;
    return NGX_DECLINED;
}
