
/*
 * Copyright (C) The Tailgate authors
 *
 * Names a client or a configuration gives: tags, which are compared
 * exactly and so kept in lowercase, and route names.
 */


#include "ngx_tailgate_names.h"


/*
 * A tag is 1-NGX_TAILGATE_MAX_TAG letters, digits and "_-:."; a route
 * name 1-NGX_TAILGATE_MAX_ROUTE_NAME visible characters but commas.
 */

ngx_int_t
ngx_tailgate_check_name(u_char *p, u_char *end, ngx_uint_t route)
{
    if (p == end
        || end - p > (route ? NGX_TAILGATE_MAX_ROUTE_NAME
                            : NGX_TAILGATE_MAX_TAG))
    {
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


/* names one by one (a token's list): checked, and tags in lowercase */

ngx_int_t
ngx_tailgate_check_names(ngx_str_t *names, ngx_uint_t n, ngx_uint_t route)
{
    ngx_uint_t  i;

    for (i = 0; i < n; i++) {
        if (ngx_tailgate_check_name(names[i].data,
                                    names[i].data + names[i].len, route)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        /* tags are compared exactly: one spelling, lowercase */
        if (!route) {
            ngx_strlow(names[i].data, names[i].data, names[i].len);
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

        name = &(*names)[(*n)++];
        name->len = p - start;
        name->data = ngx_pnalloc(pool, name->len);

        if (name->data == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(name->data, start, name->len);

        if (p == end) {
            return ngx_tailgate_check_names(*names, *n, route);
        }

        p++;
    }
}


/*
 * Tags only ever add restrictions: *tags becomes the union of *tags and
 * add, those first.  Neither set is written: the first set is shared
 * when it is alone, else the union is new.
 */

ngx_int_t
ngx_tailgate_tags_union(ngx_pool_t *pool, ngx_str_t **tags, ngx_uint_t *n,
    ngx_str_t *add, ngx_uint_t nadd)
{
    ngx_str_t   *merged;
    ngx_uint_t   i, j, count;

    if (nadd == 0) {
        return NGX_OK;
    }

    if (*n == 0) {
        *tags = add;
        *n = nadd;
        return NGX_OK;
    }

    merged = ngx_palloc(pool, (*n + nadd) * sizeof(ngx_str_t));
    if (merged == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(merged, *tags, *n * sizeof(ngx_str_t));
    count = *n;

    for (i = 0; i < nadd; i++) {
        for (j = 0; j < count; j++) {
            if (merged[j].len == add[i].len
                && ngx_strncmp(merged[j].data, add[i].data, add[i].len) == 0)
            {
                break;
            }
        }

        if (j == count) {
            merged[count++] = add[i];
        }
    }

    *tags = merged;
    *n = count;

    return NGX_OK;
}
