
/*
 * Copyright (C) The Tailgate authors
 *
 * multipart/form-data bodies (audio transcriptions): finds the "model"
 * and "stream" fields among the parts, whatever their order, and skips
 * file contents with memchr-speed searches for the boundary.
 */


#include "ngx_http_tailgate_module.h"


#define NGX_TAILGATE_MAX_BOUNDARY  70     /* RFC 2046 */


static ngx_int_t ngx_tailgate_multipart_boundary(ngx_http_request_t *r,
    ngx_str_t *boundary);
static u_char *ngx_tailgate_multipart_find(u_char *p, u_char *end,
    ngx_str_t *delimiter);
static ngx_int_t ngx_tailgate_multipart_name(u_char *p, u_char *end,
    ngx_str_t *name);


static const char  ngx_tailgate_multipart_invalid[] =
    "The request body is not valid multipart/form-data.";


ngx_int_t
ngx_tailgate_multipart_scan(ngx_http_request_t *r, u_char *p, u_char *end,
    ngx_tailgate_facts_t *facts, const char **error)
{
    u_char      *next, *eol, *value;
    ngx_str_t    boundary, delimiter, name;
    ngx_uint_t   seen_stream;

    *error = ngx_tailgate_multipart_invalid;

    if (ngx_tailgate_multipart_boundary(r, &boundary) != NGX_OK) {
        *error = "Content-Type must be multipart/form-data with a boundary.";
        return NGX_ERROR;
    }

    /* "\r\n--boundary"; the first delimiter may lack the CRLF */

    delimiter.len = boundary.len + 4;
    delimiter.data = ngx_pnalloc(r->pool, delimiter.len);
    if (delimiter.data == NULL) {
        *error = NULL;
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
            return NGX_ERROR;
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
            return NGX_ERROR;
        }

        p += 2;

        /* part headers */

        name.len = 0;
        name.data = NULL;

        for ( ;; ) {
            eol = ngx_strlchr(p, end, '\n');

            if (eol == NULL || eol == p || eol[-1] != '\r') {
                return NGX_ERROR;
            }

            if (eol - 1 == p) {
                p = eol + 1;
                break;
            }

            if ((size_t) (eol - p) > sizeof("content-disposition:") - 1
                && ngx_strncasecmp(p, (u_char *) "content-disposition:",
                                   sizeof("content-disposition:") - 1) == 0
                && ngx_tailgate_multipart_name(p, eol - 1, &name) != NGX_OK)
            {
                return NGX_ERROR;
            }

            p = eol + 1;
        }

        value = p;

        next = ngx_tailgate_multipart_find(p, end, &delimiter);
        if (next == NULL) {
            return NGX_ERROR;
        }

        if (name.len == 5 && ngx_strncmp(name.data, "model", 5) == 0) {

            if (facts->model_start) {
                *error = "The \"model\" parameter appears more than once.";
                return NGX_ERROR;
            }

            facts->model_start = value;
            facts->model_end = next;
            facts->model.data = value;
            facts->model.len = next - value;

        } else if (name.len == 6 && ngx_strncmp(name.data, "stream", 6) == 0) {

            if (seen_stream++) {
                *error = "The \"stream\" parameter appears more than once.";
                return NGX_ERROR;
            }

            facts->stream = (next - value == 4
                             && ngx_strncmp(value, "true", 4) == 0);
        }

        p = next + delimiter.len;
    }

    if (facts->model_start == NULL || facts->model.len == 0) {
        *error = "You must provide a model parameter.";
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_tailgate_multipart_boundary(ngx_http_request_t *r, ngx_str_t *boundary)
{
    u_char           *p, *end, *start;
    ngx_table_elt_t  *ct;

    ct = r->headers_in.content_type;

    if (ct == NULL
        || ct->value.len < sizeof("multipart/form-data") - 1
        || ngx_strncasecmp(ct->value.data, (u_char *) "multipart/form-data",
                           sizeof("multipart/form-data") - 1) != 0)
    {
        return NGX_ERROR;
    }

    p = ct->value.data + sizeof("multipart/form-data") - 1;
    end = ct->value.data + ct->value.len;

    for ( ;; ) {
        p = ngx_strlcasestrn(p, end, (u_char *) "boundary=",
                             sizeof("boundary=") - 2);
        if (p == NULL) {
            return NGX_ERROR;
        }

        /* a parameter name starts after ';' and spaces */

        start = p;

        while (start > ct->value.data && start[-1] == ' ') {
            start--;
        }

        p += sizeof("boundary=") - 1;

        if (start[-1] == ';') {
            break;
        }
    }

    if (p < end && *p == '"') {
        start = ++p;

        while (p < end && *p != '"') {
            p++;
        }

        if (p == end) {
            return NGX_ERROR;
        }

    } else {
        start = p;

        while (p < end && *p != ';' && *p != ' ') {
            p++;
        }
    }

    boundary->data = start;
    boundary->len = p - start;

    if (boundary->len == 0 || boundary->len > NGX_TAILGATE_MAX_BOUNDARY) {
        return NGX_ERROR;
    }

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


/* name="..." in a Content-Disposition header line [p, end) */

static ngx_int_t
ngx_tailgate_multipart_name(u_char *p, u_char *end, ngx_str_t *name)
{
    u_char  *start;

    for ( ;; ) {
        p = ngx_strlcasestrn(p, end, (u_char *) "name=\"",
                             sizeof("name=\"") - 2);
        if (p == NULL) {
            return NGX_OK;
        }

        /* not the tail of "filename=" */

        if (p[-1] == ' ' || p[-1] == ';') {
            break;
        }

        p += sizeof("name=\"") - 1;
    }

    start = p + sizeof("name=\"") - 1;
    p = start;

    while (p < end && *p != '"') {
        p++;
    }

    if (p == end) {
        return NGX_ERROR;
    }

    name->data = start;
    name->len = p - start;

    return NGX_OK;
}
