
/*
 * Copyright (C) The Tailgate authors
 *
 * Token keys from a JSON Web Key Set file (ngx_tailgate_jwks.c): what the
 * JWT checks (ngx_tailgate_jwt.c) ask of it.
 */


#ifndef _NGX_TAILGATE_JWKS_H_INCLUDED_
#define _NGX_TAILGATE_JWKS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


typedef struct ngx_tailgate_jwks_s  ngx_tailgate_jwks_t;


char *ngx_tailgate_jwks_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_tailgate_jwks_init_worker(ngx_cycle_t *cycle,
    ngx_array_t *sets);
void ngx_tailgate_jwks_exit_worker(void);

/* the set's key of this kid (NULL: the key without one), or NULL */
void *ngx_tailgate_jwks_key(ngx_tailgate_jwks_t *jwks, const char *kid);

/* changes whenever the keys of the set change */
ngx_uint_t ngx_tailgate_jwks_generation(ngx_tailgate_jwks_t *jwks);

/*
 * A token named a kid the set lacks: policyd is asked to fetch the set
 * again (rate-limited), and the request waits for its answer, at most the
 * directive's wait=.  NGX_AGAIN: it waits, and its phases run again when
 * the answer or the time comes; NGX_DECLINED: refuse it now (it waited
 * once already, or no refresh may be asked now).
 */
ngx_int_t ngx_tailgate_jwks_wait(ngx_http_request_t *r,
    ngx_tailgate_jwks_t *jwks, ngx_msec_t wait, const char *kid);


#endif /* _NGX_TAILGATE_JWKS_H_INCLUDED_ */
