
/*
 * Copyright (C) The Tailgate authors
 *
 * What a request body says, and the scanners that find it: JSON
 * (ngx_tailgate_json.c) and multipart/form-data (ngx_tailgate_multipart.c).
 */


#ifndef _NGX_TAILGATE_SCAN_H_INCLUDED_
#define _NGX_TAILGATE_SCAN_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_tailgate_response.h"


#define NGX_TAILGATE_JSON_NAME_MAX     64


/* what the body says */
typedef struct {
    ngx_str_t                    model;      /* decoded */
    u_char                      *model_start;    /* raw token in the body */
    u_char                      *model_end;
    ngx_uint_t                   stream;     /* unsigned:1 */
    ngx_uint_t                   tools;      /* unsigned:1 */
    ngx_uint_t                   include_usage;  /* stream_options asks */
    u_char                      *input_start;    /* a string "input" */
    u_char                      *input_end;
    size_t                       input_chars;    /* its characters, when
                                                    scanned in pieces */

    /*
     * The top-level keys, as a 64-bit Bloom filter of their names in
     * lowercase (ngx_tailgate_json_key_bit()): an edit whose key's bit is
     * not set has nothing to do.  keys_unknown: a key too long (or with a
     * NUL) to be decoded, which may be any.
     */
    uint64_t                     keys;
    ngx_uint_t                   keys_unknown;   /* unsigned:1 */

    /*
     * A body scanned in pieces: where the model's token is in it (then
     * model_start and model_end are the decoded model, in the pool).
     */
    off_t                        model_from;
    off_t                        model_to;
} ngx_tailgate_facts_t;


/* a JSON body scanned piece by piece (ngx_tailgate_json.c) */
typedef struct ngx_tailgate_json_feed_s  ngx_tailgate_json_feed_t;

/* a multipart body scanned piece by piece (ngx_tailgate_multipart.c) */
typedef struct ngx_tailgate_multipart_s  ngx_tailgate_multipart_t;


/*
 * Why a body was refused: a row of NGX_TAILGATE_ERRORS, and for a row whose
 * message is a format, what it says ("a string" where a boolean belongs).
 */
typedef struct {
    ngx_tailgate_error_e         err;
    const char                  *arg;
} ngx_tailgate_scan_error_t;


typedef struct {
    u_char                      *key_start;  /* its opening quote */
    u_char                      *value_start;
    u_char                      *value_end;
    ssize_t                      name_len;   /* -1: too long to be edited */
    u_char                       name[NGX_TAILGATE_JSON_NAME_MAX];
} ngx_tailgate_json_member_t;


typedef struct {
    u_char                      *p;
    u_char                      *end;
    ngx_uint_t                   first;
} ngx_tailgate_json_iter_t;


/*
 * Some providers match keys ignoring letter case: name is key for them.
 * And when it is key in another case than key's own, it is a second key
 * that the gateway did not route on.
 */

static ngx_inline ngx_uint_t
ngx_tailgate_key_is(u_char *name, size_t len, const ngx_str_t *key)
{
    return len == key->len && ngx_strncasecmp(name, key->data, len) == 0;
}


static ngx_inline ngx_uint_t
ngx_tailgate_key_folds(u_char *name, size_t len, const ngx_str_t *key)
{
    /* the key itself, as nearly every body has it, is told at once */

    return len == key->len && ngx_memcmp(name, key->data, len) != 0
           && ngx_strncasecmp(name, key->data, len) == 0;
}


/* a key's bit in facts->keys: FNV-1a of its lowercase bytes, mod 64 */

static ngx_inline uint64_t
ngx_tailgate_json_key_bit(u_char *name, size_t len)
{
    uint32_t  h;

    for (h = 2166136261u; len; len--, name++) {
        h = (h ^ ngx_tolower(*name)) * 16777619u;
    }

    return (uint64_t) 1 << (h & 63);
}


/* NGX_OK; NGX_DECLINED: refused, *error says why; NGX_ERROR: no memory */
ngx_int_t ngx_tailgate_json_scan(ngx_pool_t *pool, u_char *p, u_char *end,
    ngx_tailgate_facts_t *facts, ngx_tailgate_scan_error_t *error);
size_t ngx_tailgate_json_chars(u_char *p, u_char *end);
const char *ngx_tailgate_json_type(u_char c);
ngx_int_t ngx_tailgate_json_quote(ngx_pool_t *pool, ngx_str_t *value,
    ngx_str_t *quoted);
ngx_int_t ngx_tailgate_json_strings(ngx_pool_t *pool, u_char *p, u_char *end,
    ngx_array_t **strings);
ngx_int_t ngx_tailgate_json_members(ngx_tailgate_json_iter_t *it, u_char *p,
    u_char *end);
ngx_int_t ngx_tailgate_json_member(ngx_tailgate_json_iter_t *it,
    ngx_tailgate_json_member_t *m);
ngx_int_t ngx_tailgate_json_elements(ngx_tailgate_json_iter_t *it,
    u_char *p, u_char *end);
ngx_int_t ngx_tailgate_json_element(ngx_tailgate_json_iter_t *it,
    u_char **start, u_char **last);

/*
 * The JSON scan over a body given in pieces, in order, of any size: the
 * same answer and facts, with model_from/model_to and input_chars for
 * what the scan points at; what it keeps is bounded by the nesting depth
 * and a key's and a model's length, never by the body.  _feed(): NGX_OK
 * for more, NGX_DECLINED refused (then *error says why), NGX_ERROR.
 */
ngx_tailgate_json_feed_t *ngx_tailgate_json_feed_start(ngx_pool_t *pool,
    ngx_tailgate_facts_t *facts, ngx_tailgate_scan_error_t *error);
ngx_int_t ngx_tailgate_json_feed(ngx_tailgate_json_feed_t *jf, u_char *p,
    u_char *end);
ngx_int_t ngx_tailgate_json_feed_finish(ngx_tailgate_json_feed_t *jf);

ngx_int_t ngx_tailgate_multipart_scan(ngx_http_request_t *r, u_char *p,
    u_char *end, ngx_tailgate_facts_t *facts,
    ngx_tailgate_scan_error_t *error);


/*
 * The same scan over a body given in pieces, in order: what it keeps is
 * bounded (a part's headers, the first bytes of a model or stream field,
 * the boundary), whatever the size of the body or of its files.
 */
ngx_tailgate_multipart_t *ngx_tailgate_multipart_start(ngx_http_request_t *r,
    ngx_tailgate_facts_t *facts, ngx_tailgate_scan_error_t *error,
    ngx_int_t *rc);
ngx_int_t ngx_tailgate_multipart_feed(ngx_tailgate_multipart_t *mp,
    u_char *p, u_char *end);
ngx_int_t ngx_tailgate_multipart_finish(ngx_tailgate_multipart_t *mp);


#endif /* _NGX_TAILGATE_SCAN_H_INCLUDED_ */
