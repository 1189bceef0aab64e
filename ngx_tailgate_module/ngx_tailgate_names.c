
/*
 * Copyright (C) The Tailgate authors
 *
 * Names a client or a configuration gives: tags, which are compared
 * exactly and so kept in lowercase, and route names.
 */


#include "ngx_tailgate_names.h"


/*
 * A tag is 1-64 letters, digits and "_-:."; a route name 1-256 visible
 * characters but commas.
 */

ngx_int_t
ngx_tailgate_check_name(u_char *p, u_char *end, ngx_uint_t route)
{
    if (p == end || end - p > (route ? 256 : 64)) {
        return NGX_ERROR;
    }

    for ( /* void */ ; p < end; p++) {
        if (route ? (*p <= ' ' || *p == ',' || *p == 0x7f)
                  : !(ngx_tailgate_is_name_char(*p) || *p == ':'))
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/* "a,b,c" into an array of names from the pool */

ngx_int_t
ngx_tailgate_parse_names(ngx_pool_t *pool, u_char *p, u_char *end,
    ngx_uint_t max, ngx_uint_t route, ngx_str_t **names, ngx_uint_t *n)
{
    u_char      *start;
    ngx_str_t   *name;
    ngx_uint_t   count;

    count = 1;

    for (start = p; start < end; start++) {
        if (*start == ',') {
            count++;
        }
    }

    if (count > max) {
        return NGX_ERROR;
    }

    *names = ngx_palloc(pool, count * sizeof(ngx_str_t));
    if (*names == NULL) {
        return NGX_ERROR;
    }

    *n = 0;

    for ( ;; ) {
        start = p;

        while (p < end && *p != ',') {
            p++;
        }

        if (ngx_tailgate_check_name(start, p, route) != NGX_OK) {
            return NGX_ERROR;
        }

        name = &(*names)[(*n)++];
        name->len = p - start;
        name->data = ngx_pnalloc(pool, name->len);

        if (name->data == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(name->data, start, name->len);

        /* tags are compared exactly: one spelling, lowercase */
        if (!route) {
            ngx_strlow(name->data, name->data, name->len);
        }

        if (p == end) {
            return NGX_OK;
        }

        p++;
    }
}
