
/*
 * Copyright (C) The Tailgate authors
 *
 * multipart/form-data bodies (audio transcriptions): finds the "model"
 * and "stream" fields among the parts, whatever their order, and skips
 * file contents with memchr-speed searches for the boundary.
 *
 * The gateway routes on the model it finds and the provider runs the model
 * it finds: both must read the same body the same way.  Parameters are
 * parsed as RFC 2045 and 7578 say (tokens or quoted strings, names matched
 * exactly), and whatever two parsers could read differently is refused:
 * a parameter given twice, "name*", folded header lines, a second
 * Content-Disposition, a field name that is "model" in another case.
 */


#include "ngx_tailgate_scan.h"


#define NGX_TAILGATE_MAX_BOUNDARY  70     /* RFC 2046 */


typedef struct {
    ngx_str_t                    name;
    ngx_str_t                    value;     /* unquoted */
} ngx_tailgate_param_t;


static ngx_int_t ngx_tailgate_multipart_boundary(ngx_http_request_t *r,
    ngx_str_t *boundary);
static ngx_int_t ngx_tailgate_multipart_part(ngx_pool_t *pool, u_char **pp,
    u_char *end, ngx_str_t *name);
static ngx_int_t ngx_tailgate_multipart_param(ngx_pool_t *pool, u_char **pp,
    u_char *end, ngx_tailgate_param_t *param);
static u_char *ngx_tailgate_multipart_find(u_char *p, u_char *end,
    ngx_str_t *delimiter);
static ngx_uint_t ngx_tailgate_is_tchar(u_char c);


static ngx_str_t  ngx_tailgate_model = ngx_string("model");
static ngx_str_t  ngx_tailgate_stream = ngx_string("stream");

ngx_int_t
ngx_tailgate_multipart_scan(ngx_http_request_t *r, u_char *p, u_char *end,
    ngx_tailgate_facts_t *facts, ngx_tailgate_scan_error_t *error)
{
    u_char      *next, *value;
    ngx_int_t    rc;
    ngx_str_t    boundary, delimiter, name;
    ngx_uint_t   seen_stream;

    rc = ngx_tailgate_multipart_boundary(r, &boundary);

    if (rc != NGX_OK) {
        error->err = NGX_TAILGATE_ERR_FORM_CONTENT_TYPE;
        return rc;
    }

    error->err = NGX_TAILGATE_ERR_FORM_INVALID;

    /* "\r\n--boundary"; the first delimiter may lack the CRLF */

    delimiter.len = boundary.len + 4;
    delimiter.data = ngx_pnalloc(r->pool, delimiter.len);
    if (delimiter.data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(delimiter.data, "\r\n--", 4);
    ngx_memcpy(delimiter.data + 4, boundary.data, boundary.len);

    if ((size_t) (end - p) >= delimiter.len - 2
        && ngx_strncmp(p, delimiter.data + 2, delimiter.len - 2) == 0)
    {
        p += delimiter.len - 2;

    } else {
        p = ngx_tailgate_multipart_find(p, end, &delimiter);
        if (p == NULL) {
            return NGX_DECLINED;
        }

        p += delimiter.len;
    }

    seen_stream = 0;

    for ( ;; ) {

        /* after a delimiter: "--" closes the body, CRLF starts a part */

        if (end - p >= 2 && p[0] == '-' && p[1] == '-') {
            break;
        }

        while (p < end && (*p == ' ' || *p == '\t')) {
            p++;
        }

        if (end - p < 2 || p[0] != '\r' || p[1] != '\n') {
            return NGX_DECLINED;
        }

        p += 2;

        rc = ngx_tailgate_multipart_part(r->pool, &p, end, &name);

        if (rc == NGX_DECLINED) {
            error->err = NGX_TAILGATE_ERR_FORM_AMBIGUOUS;
            return NGX_DECLINED;
        }

        if (rc != NGX_OK) {
            return NGX_DECLINED;
        }

        value = p;

        next = ngx_tailgate_multipart_find(p, end, &delimiter);
        if (next == NULL) {
            return NGX_DECLINED;
        }

        if (name.len == 5 && ngx_strncmp(name.data, "model", 5) == 0) {

            if (facts->model_start) {
                error->err = NGX_TAILGATE_ERR_MODEL_TWICE;
                return NGX_DECLINED;
            }

            facts->model_start = value;
            facts->model_end = next;
            facts->model.data = value;
            facts->model.len = next - value;

        } else if (name.len == 6 && ngx_strncmp(name.data, "stream", 6) == 0) {

            if (seen_stream++) {
                error->err = NGX_TAILGATE_ERR_STREAM_TWICE;
                return NGX_DECLINED;
            }

            facts->stream = (next - value == 4
                             && ngx_strncmp(value, "true", 4) == 0);
        }

        p = next + delimiter.len;
    }

    if (facts->model_start == NULL || facts->model.len == 0) {
        error->err = NGX_TAILGATE_ERR_MISSING_MODEL;
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/*
 * The headers of one part, up to the empty line; the field name from its
 * Content-Disposition.  NGX_DECLINED: ambiguous; NGX_ERROR: malformed.
 */

static ngx_int_t
ngx_tailgate_multipart_part(ngx_pool_t *pool, u_char **pp, u_char *end,
    ngx_str_t *name)
{
    u_char                *p, *eol, *last;
    ngx_int_t              rc;
    ngx_uint_t             disposition;
    ngx_tailgate_param_t   param;

    p = *pp;
    disposition = 0;
    name->len = 0;
    name->data = NULL;

    for ( ;; ) {
        eol = ngx_strlchr(p, end, '\n');

        if (eol == NULL || eol == p || eol[-1] != '\r') {
            return NGX_ERROR;
        }

        last = eol - 1;

        if (last == p) {
            *pp = eol + 1;
            break;
        }

        /* a folded line continues the previous header: obsolete, refused */
        if (*p == ' ' || *p == '\t') {
            return NGX_DECLINED;
        }

        if ((size_t) (last - p) < sizeof("content-disposition:") - 1
            || ngx_strncasecmp(p, (u_char *) "content-disposition:",
                               sizeof("content-disposition:") - 1) != 0)
        {
            p = eol + 1;
            continue;
        }

        if (disposition++) {
            return NGX_DECLINED;
        }

        p += sizeof("content-disposition:") - 1;

        while (p < last && (*p == ' ' || *p == '\t')) {
            p++;
        }

        if ((size_t) (last - p) < sizeof("form-data") - 1
            || ngx_strncasecmp(p, (u_char *) "form-data",
                               sizeof("form-data") - 1) != 0)
        {
            return NGX_ERROR;
        }

        p += sizeof("form-data") - 1;

        for ( ;; ) {
            rc = ngx_tailgate_multipart_param(pool, &p, last, &param);

            if (rc == NGX_DONE) {
                break;
            }

            if (rc != NGX_OK) {
                return rc;
            }

            if (param.name.len == 5
                && ngx_strncasecmp(param.name.data, (u_char *) "name*", 5)
                   == 0)
            {
                return NGX_DECLINED;
            }

            if (param.name.len != 4
                || ngx_strncasecmp(param.name.data, (u_char *) "name", 4)
                   != 0)
            {
                continue;
            }

            if (name->data) {
                return NGX_DECLINED;
            }

            *name = param.value;
        }

        p = eol + 1;
    }

    /* "Model" or "STREAM" would be another field for some parsers */

    if (ngx_tailgate_key_folds(name->data, name->len, &ngx_tailgate_model)
        || ngx_tailgate_key_folds(name->data, name->len, &ngx_tailgate_stream))
    {
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/*
 * The boundary parameter of Content-Type.  NGX_DECLINED: not multipart or
 * no single, valid boundary; NGX_ERROR: out of memory.
 */

static ngx_int_t
ngx_tailgate_multipart_boundary(ngx_http_request_t *r, ngx_str_t *boundary)
{
    u_char                *p, *end;
    ngx_int_t              rc;
    ngx_table_elt_t       *ct;
    ngx_tailgate_param_t   param;

    ct = r->headers_in.content_type;

    if (ct == NULL
        || ct->value.len < sizeof("multipart/form-data") - 1
        || ngx_strncasecmp(ct->value.data, (u_char *) "multipart/form-data",
                           sizeof("multipart/form-data") - 1) != 0)
    {
        return NGX_DECLINED;
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
            return rc == NGX_DECLINED ? NGX_DECLINED : NGX_ERROR;
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
        || boundary->len > NGX_TAILGATE_MAX_BOUNDARY)
    {
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/*
 * One "; name=value" parameter starting at *pp, value a token or a quoted
 * string (unquoted into the pool).  NGX_DONE at the end of the header,
 * NGX_DECLINED when it does not parse, NGX_ERROR when out of memory.
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

    while (p < end && (*p == ' ' || *p == '\t')) {
        p++;
    }

    if (param->name.len == 0 || p == end || *p++ != '=') {
        return NGX_DECLINED;
    }

    while (p < end && (*p == ' ' || *p == '\t')) {
        p++;
    }

    if (p < end && *p == '"') {
        p++;

        q = ngx_pnalloc(pool, end - p);
        if (q == NULL) {
            return NGX_ERROR;
        }

        param->value.data = q;

        for ( ;; ) {
            if (p == end) {
                return NGX_DECLINED;
            }

            if (*p == '"') {
                p++;
                break;
            }

            if (*p == '\\') {
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


static u_char *
ngx_tailgate_multipart_find(u_char *p, u_char *end, ngx_str_t *delimiter)
{
    u_char  *last;

    if ((size_t) (end - p) < delimiter->len) {
        return NULL;
    }

    last = end - delimiter->len + 1;

    for ( ;; ) {
        p = memchr(p, '\r', last - p);

        if (p == NULL) {
            return NULL;
        }

        if (ngx_strncmp(p, delimiter->data, delimiter->len) == 0) {
            return p;
        }

        p++;
    }
}


/* RFC 9110 token characters */

static ngx_uint_t
ngx_tailgate_is_tchar(u_char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
           || (c >= '0' && c <= '9')
           || (c != '\0' && ngx_strchr("!#$%&'*+-.^_`|~", c) != NULL);
}
