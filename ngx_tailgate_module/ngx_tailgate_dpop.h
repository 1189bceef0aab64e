
/*
 * Copyright (C) The Tailgate authors
 *
 * DPoP (RFC 9449): a token bound to a key the client holds, and a proof,
 * signed with that key, for each request.  ngx_tailgate_dpop.c reads and
 * checks the proof; ngx_tailgate_dpop_replay.c remembers, across the
 * workers, the proofs already used.
 */


#ifndef _NGX_TAILGATE_DPOP_H_INCLUDED_
#define _NGX_TAILGATE_DPOP_H_INCLUDED_


#include "ngx_tailgate_common.h"


#define NGX_TAILGATE_DPOP_MAX         8192   /* bytes of a proof */
#define NGX_TAILGATE_DPOP_MAX_JTI     256
#define NGX_TAILGATE_DPOP_MAX_HTU     4096
#define NGX_TAILGATE_DPOP_MAX_HTM     32
#define NGX_TAILGATE_DPOP_REPLAY_LEN  16     /* bytes of a jti's digest */
#define NGX_TAILGATE_DPOP_REPLAY_PROBE  32   /* slots a digest may be in */

/* what WWW-Authenticate offers and a proof may be signed with */
#define NGX_TAILGATE_DPOP_ALGS  "ES256 ES384 ES512 RS256 RS384 RS512"


/* a proof, read and its signature checked; strings in the request's pool */
typedef struct {
    ngx_str_t                    alg;
    ngx_str_t                    htm;
    ngx_str_t                    htu;
    ngx_str_t                    jti;
    ngx_str_t                    ath;        /* empty: absent */
    time_t                       iat;
    u_char                       jkt[NGX_TAILGATE_JKT_LEN];
} ngx_tailgate_dpop_proof_t;


/*
 * The proof's text into *proof: its form, its header ("typ", "alg", a
 * public "jwk") and claims, and its signature by that jwk.  NGX_OK;
 * NGX_DECLINED with why; NGX_ERROR out of memory or an OpenSSL failure.
 */
ngx_int_t ngx_tailgate_dpop_parse(ngx_pool_t *pool, ngx_str_t *text,
    ngx_tailgate_dpop_proof_t *proof, const char **why);

/*
 * The proof of request r for token (whose "cnf.jkt" is jkt): one DPoP
 * header, parsed, for this method and URL, fresh, for this token, by the
 * token's key, and not seen before.
 */
ngx_tailgate_auth_e ngx_tailgate_dpop_check(ngx_http_request_t *r,
    ngx_http_tailgate_loc_conf_t *tlcf, ngx_str_t *token, ngx_str_t *jkt,
    const char **why);

char *ngx_tailgate_dpop_public_url(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

/* the replay cache, made when a location turns DPoP on */
ngx_int_t ngx_tailgate_dpop_replay_zone(ngx_conf_t *cf,
    ngx_http_tailgate_main_conf_t *tmcf);

/*
 * A proof's jti digest, kept until expires.  NGX_OK: new, and now kept;
 * NGX_DECLINED: seen and not expired; NGX_BUSY: no room for it before
 * older ones expire (it is refused: forgetting one could let it replay).
 */
ngx_int_t ngx_tailgate_dpop_replay_add(ngx_shm_zone_t *zone,
    u_char *digest, time_t expires, time_t now);


/* the replay cache's table, in its shared memory zone */

typedef struct {
    u_char                       digest[NGX_TAILGATE_DPOP_REPLAY_LEN];
    int64_t                      expires;    /* 0: never used */
} ngx_tailgate_replay_entry_t;


typedef struct {
    ngx_uint_t                   nslots;     /* NGX_TAILGATE_DPOP_REPLAY_PROBE
                                                at least */
    ngx_tailgate_replay_entry_t  slots[1];
} ngx_tailgate_replay_sh_t;


/* ngx_tailgate_dpop_replay_add() without the lock: its answers */
ngx_int_t ngx_tailgate_dpop_replay_insert(ngx_tailgate_replay_sh_t *sh,
    u_char *digest, time_t expires, time_t now);


#endif /* _NGX_TAILGATE_DPOP_H_INCLUDED_ */
