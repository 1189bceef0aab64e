
/*
 * Copyright (C) The Tailgate authors
 *
 * Unpredictable ids made cheaply: $request_id, trace and span ids.  Each
 * is SipHash-128 of a counter under a random key of the worker's own.
 */


#ifndef _NGX_TAILGATE_IDS_H_INCLUDED_
#define _NGX_TAILGATE_IDS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


#define NGX_TAILGATE_ID_LEN  16


/* 16 bytes no one can guess: NGX_OK, or NGX_ERROR without a key. */
ngx_int_t ngx_tailgate_id(u_char *out);

/*
 * $request_id (its index), as nginx would make it - 32 hex digits of 128
 * unpredictable bits - when nothing has asked for it yet; NULL when out
 * of memory.
 */
ngx_http_variable_value_t *ngx_tailgate_request_id(ngx_http_request_t *r,
    ngx_int_t index);


#endif /* _NGX_TAILGATE_IDS_H_INCLUDED_ */
