
/*
 * Copyright (C) The Tailgate authors
 *
 * Names a client or a configuration gives: tags and route names.
 */


#ifndef _NGX_TAILGATE_NAMES_H_INCLUDED_
#define _NGX_TAILGATE_NAMES_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


#define NGX_TAILGATE_MAX_TAG           64    /* letters of one tag */
#define NGX_TAILGATE_MAX_TAGS          16    /* tags from one source */
#define NGX_TAILGATE_MAX_ROUTE_NAME    256
#define NGX_TAILGATE_MAX_ROUTES        256   /* in one allowlist */
#define NGX_TAILGATE_MAX_TENANT        64


/* letters, digits and "_-." */
#define ngx_tailgate_is_name_char(c)                                          \
    (((c) >= 'a' && (c) <= 'z') || ((c) >= 'A' && (c) <= 'Z')                \
     || ((c) >= '0' && (c) <= '9') || (c) == '_' || (c) == '-' || (c) == '.')


ngx_int_t ngx_tailgate_check_name(u_char *p, u_char *end, ngx_uint_t route);
ngx_int_t ngx_tailgate_check_names(ngx_str_t *names, ngx_uint_t n,
    ngx_uint_t route);
ngx_int_t ngx_tailgate_parse_names(ngx_pool_t *pool, u_char *p, u_char *end,
    ngx_uint_t max, ngx_uint_t route, ngx_str_t **names, ngx_uint_t *n);
ngx_int_t ngx_tailgate_tags_union(ngx_pool_t *pool, ngx_str_t **tags,
    ngx_uint_t *n, ngx_str_t *add, ngx_uint_t nadd);


#endif /* _NGX_TAILGATE_NAMES_H_INCLUDED_ */
