
/*
 * Copyright (C) The Tailgate authors
 *
 * Token keys from a JSON Web Key Set file: tailgate_jwt_jwks.  The file is
 * an identity provider's set, written by policyd (which fetches it, with
 * its cache headers, and writes what it checked by rename()) or by an
 * operator.  Keys are built once per version of the file into OpenSSL
 * objects (RSA from n and e, EC from crv, x and y: tailgate_jwks.c, the
 * reader policyd shares), so a token costs what a configured key costs.
 *
 * Each worker looks at the file once a second and reads it again when it
 * changed, like a key file (ngx_tailgate_auth.c): no reload, no lock on
 * the request path, and a torn or refused version never replaces the
 * last good set.  A token whose kid the set lacks makes the worker ask
 * policyd to fetch the set again (JWKS_REFRESH, one question in flight,
 * no sooner than policyd allows); the request waits for the answer
 * without blocking - its access phase returns NGX_AGAIN and runs again -
 * at most wait=, then it is checked once more and refused if the kid is
 * still unknown.
 */


#include "ngx_tailgate_common.h"
#include "ngx_tailgate_jwks.h"

#include "tailgate_jwks.h"

#include <openssl/evp.h>


#define NGX_TAILGATE_JWKS_MAX_FILE    (1024 * 1024)
#define NGX_TAILGATE_JWKS_CHECK       1000       /* ms between stat()s */
#define NGX_TAILGATE_JWKS_WAIT        2000       /* ms, wait= by default */
#define NGX_TAILGATE_JWKS_ASK_TIMEOUT 15000      /* ms for policyd's answer */
#define NGX_TAILGATE_JWKS_UNREACHED   1000       /* ms: policyd away */
#define NGX_TAILGATE_JWKS_NOT_KEPT    60000      /* ms: nobody fetches it */


/* one version of the file: its keys, in a pool of their own */
typedef struct {
    ngx_pool_t                  *pool;
    ngx_array_t                  keys;       /* ngx_tailgate_jwt_key_t */
} ngx_tailgate_jwks_set_t;


struct ngx_tailgate_jwks_s {
    ngx_str_t                    file;       /* NUL-terminated */
    ngx_flag_t                   refresh;    /* ask policyd */

    ngx_tailgate_jwks_set_t     *set;        /* NULL: none yet */
    ngx_uint_t                   generation;
    ngx_file_info_t              loaded;
    ngx_file_info_t              refused;

    /* the worker's */
    ngx_tailgate_call_t          call;
    ngx_msec_t                   next_ask;   /* no question before */
    ngx_queue_t                  waiting;    /* ngx_tailgate_jwks_waiter_t */
    ngx_log_t                   *log;

    unsigned                     has_loaded:1;
    unsigned                     has_refused:1;
    unsigned                     missing:1;
    unsigned                     asking:1;
    unsigned                     not_kept:1;     /* logged once */
};


/* a request waiting for policyd's answer */
typedef struct {
    ngx_queue_t                  queue;
    ngx_http_request_t          *request;
    ngx_tailgate_jwks_t         *jwks;
    ngx_event_t                  timer;
    unsigned                     waiting:1;
} ngx_tailgate_jwks_waiter_t;


static ngx_int_t ngx_tailgate_jwks_read(ngx_tailgate_jwks_t *jwks,
    u_char *buf, size_t len, ngx_log_t *log, ngx_tailgate_jwks_set_t **out,
    char *err, size_t errlen);
static ngx_int_t ngx_tailgate_jwks_build(ngx_pool_t *pool, tg_jwk *jwk,
    ngx_tailgate_jwt_key_t *key);
static void ngx_tailgate_jwks_crypto_cleanup(void *data);
static void ngx_tailgate_jwks_conf_cleanup(void *data);
static void ngx_tailgate_jwks_use(ngx_tailgate_jwks_t *jwks,
    ngx_tailgate_jwks_set_t *set);
static void ngx_tailgate_jwks_timer_handler(ngx_event_t *ev);
static void ngx_tailgate_jwks_check(ngx_tailgate_jwks_t *jwks,
    ngx_log_t *log);
static ngx_int_t ngx_tailgate_jwks_reread(ngx_tailgate_jwks_t *jwks,
    ngx_file_info_t *fi, ngx_log_t *log);
static ngx_uint_t ngx_tailgate_jwks_same_file(ngx_file_info_t *a,
    ngx_file_info_t *b);
static ngx_int_t ngx_tailgate_jwks_ask(ngx_tailgate_jwks_t *jwks,
    const char *kid, ngx_log_t *log);
static void ngx_tailgate_jwks_answered(ngx_tailgate_call_t *call,
    ngx_tailgate_call_result_e result, ngx_tailgate_reply_t *reply);
static void ngx_tailgate_jwks_waited(ngx_event_t *ev);
static void ngx_tailgate_jwks_resume(ngx_tailgate_jwks_waiter_t *w);
static void ngx_tailgate_jwks_waiter_cleanup(void *data);


static ngx_event_t   ngx_tailgate_jwks_timer;
static ngx_array_t  *ngx_tailgate_jwks_sets;    /* ngx_tailgate_jwks_t * */


/* tailgate_jwt_jwks FILE [wait=TIME|off] [refresh=on|off] */

char *
ngx_tailgate_jwks_directive(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_tailgate_loc_conf_t *tlcf = conf;

    char                            err[TG_JWKS_WHY_MAX];
    ngx_str_t                      *value, file, content, s;
    ngx_msec_t                      wait;
    ngx_flag_t                      refresh;
    ngx_uint_t                      i;
    ngx_file_info_t                 fi;
    ngx_pool_cleanup_t             *cln;
    ngx_tailgate_jwks_t            *jwks, **sets;
    ngx_tailgate_jwks_set_t        *set;
    ngx_http_tailgate_main_conf_t  *tmcf;

    if (tlcf->jwks != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    wait = NGX_TAILGATE_JWKS_WAIT;
    refresh = 1;

    for (i = 2; i < cf->args->nelts; i++) {

        if (value[i].len > 5 && ngx_strncmp(value[i].data, "wait=", 5) == 0) {
            s.data = value[i].data + 5;
            s.len = value[i].len - 5;

            if (s.len == 3 && ngx_strncmp(s.data, "off", 3) == 0) {
                wait = 0;
                continue;
            }

            wait = ngx_parse_time(&s, 0);

            if (wait == (ngx_msec_t) NGX_ERROR || wait > 60000) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid \"%V\", expected wait=TIME of "
                                   "at most 60s, or wait=off", &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (value[i].len == 11
            && ngx_strncmp(value[i].data, "refresh=off", 11) == 0)
        {
            refresh = 0;
            continue;
        }

        if (value[i].len == 10
            && ngx_strncmp(value[i].data, "refresh=on", 10) == 0)
        {
            refresh = 1;
            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\", expected wait=TIME, "
                           "wait=off, refresh=on or refresh=off", &value[i]);
        return NGX_CONF_ERROR;
    }

    file = value[1];

    if (ngx_conf_full_name(cf->cycle, &file, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    /* one set per file, whichever locations read it */

    tmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_tailgate_module);

    sets = tmcf->jwks.elts;

    for (i = 0; i < tmcf->jwks.nelts; i++) {
        if (sets[i]->file.len == file.len
            && ngx_strncmp(sets[i]->file.data, file.data, file.len) == 0)
        {
            if (sets[i]->refresh != refresh) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "key set \"%V\" is read elsewhere with "
                                   "another refresh=", &file);
                return NGX_CONF_ERROR;
            }

            tlcf->jwks = sets[i];
            tlcf->jwks_wait = wait;
            return NGX_CONF_OK;
        }
    }

    jwks = ngx_pcalloc(cf->pool, sizeof(ngx_tailgate_jwks_t));
    if (jwks == NULL) {
        return NGX_CONF_ERROR;
    }

    jwks->file = file;
    jwks->refresh = refresh;

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        return NGX_CONF_ERROR;
    }

    cln->handler = ngx_tailgate_jwks_conf_cleanup;
    cln->data = jwks;

    sets = ngx_array_push(&tmcf->jwks);
    if (sets == NULL) {
        return NGX_CONF_ERROR;
    }

    *sets = jwks;
    tlcf->jwks = jwks;
    tlcf->jwks_wait = wait;

    /* policyd may not have written it yet: the workers will see it come */

    if (ngx_file_info(file.data, &fi) == NGX_FILE_ERROR
        && ngx_errno == NGX_ENOENT)
    {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "key set \"%V\" is not there yet: tokens are "
                           "refused until it is", &file);
        jwks->missing = 1;
        return NGX_CONF_OK;
    }

    if (ngx_tailgate_read_key_file(cf, &file, NGX_TAILGATE_JWKS_MAX_FILE,
                                   cf->temp_pool, &content)
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    switch (ngx_tailgate_jwks_read(jwks, content.data, content.len, cf->log,
                                   &set, err, sizeof(err)))
    {
    case NGX_OK:
        break;

    case NGX_DECLINED:
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "key set \"%V\": %s",
                           &file, err);
        return NGX_CONF_ERROR;

    default:
        return NGX_CONF_ERROR;
    }

    if (ngx_file_info(file.data, &jwks->loaded) != NGX_FILE_ERROR) {
        jwks->has_loaded = 1;
    }

    ngx_tailgate_jwks_use(jwks, set);

    return NGX_CONF_OK;
}


/*
 * The text of a version of the file into a set of keys OpenSSL can use.
 * NGX_OK, NGX_DECLINED with err (the document's key path and what was
 * expected), NGX_ERROR (memory).  A key OpenSSL will not build is left
 * out, as those tg_jwks_parse() refused are; none left refuses the set.
 */

static ngx_int_t
ngx_tailgate_jwks_read(ngx_tailgate_jwks_t *jwks, u_char *buf, size_t len,
    ngx_log_t *log, ngx_tailgate_jwks_set_t **out, char *err, size_t errlen)
{
    ngx_int_t                 rc;
    ngx_uint_t                i, unbuilt;
    ngx_pool_t               *pool;
    tg_jwks                   parsed;
    ngx_tailgate_jwt_key_t   *key;
    ngx_tailgate_jwks_set_t  *set;

    if (tg_jwks_parse((const char *) buf, len, &parsed, err, errlen) != 0) {
        return NGX_DECLINED;
    }

    rc = NGX_ERROR;

    pool = ngx_create_pool(NGX_DEFAULT_POOL_SIZE, log);
    if (pool == NULL) {
        goto done;
    }

    set = ngx_pcalloc(pool, sizeof(ngx_tailgate_jwks_set_t));

    if (set == NULL
        || ngx_array_init(&set->keys, pool, parsed.nkeys,
                          sizeof(ngx_tailgate_jwt_key_t))
           != NGX_OK)
    {
        goto failed;
    }

    set->pool = pool;
    unbuilt = 0;

    for (i = 0; i < parsed.nkeys; i++) {
        key = ngx_array_push(&set->keys);
        if (key == NULL) {
            goto failed;
        }

        rc = ngx_tailgate_jwks_build(pool, &parsed.keys[i], key);

        if (rc == NGX_ERROR) {
            goto failed;
        }

        if (rc == NGX_DECLINED) {
            set->keys.nelts--;

            if (unbuilt++ == 0) {
                ngx_log_error(NGX_LOG_WARN, log, 0,
                              "tailgate: key set \"%V\": keys[%ui] (kid "
                              "\"%s\") is not a key OpenSSL accepts; left "
                              "out", &jwks->file, i, parsed.keys[i].kid);
            }
        }
    }

    if (parsed.skipped) {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "tailgate: key set \"%V\": %uz of its keys left out, "
                      "the first: %s", &jwks->file, parsed.skipped,
                      parsed.why);
    }

    if (set->keys.nelts == 0) {
        ngx_cpystrn((u_char *) err, (u_char *) "no key OpenSSL accepts",
                    errlen);
        rc = NGX_DECLINED;
        goto failed;
    }

    *out = set;
    rc = NGX_OK;

    goto done;

failed:

    ngx_destroy_pool(pool);

    if (rc == NGX_OK) {
        rc = NGX_ERROR;
    }

done:

    tg_jwks_free(&parsed);

    return rc;
}


/* the key tailgate_jwks.c built, made a key of a token's */

static ngx_int_t
ngx_tailgate_jwks_build(ngx_pool_t *pool, tg_jwk *jwk,
    ngx_tailgate_jwt_key_t *key)
{
    const EVP_MD        *md;
    ngx_pool_cleanup_t  *cln;

    ngx_memzero(key, sizeof(ngx_tailgate_jwt_key_t));

    if (jwk->pkey == NULL) {
        return NGX_DECLINED;
    }

    switch (jwk->alg[2]) {
    case '2':
        md = EVP_sha256();
        break;
    case '3':
        md = EVP_sha384();
        break;
    default:
        md = EVP_sha512();
        break;
    }

    if (jwk->has_kid) {
        key->kid.len = ngx_strlen(jwk->kid);
        key->kid.data = ngx_pnalloc(pool, key->kid.len);

        if (key->kid.data == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(key->kid.data, jwk->kid, key->kid.len);
    }

    cln = ngx_pool_cleanup_add(pool, sizeof(ngx_tailgate_jwt_crypto_t));
    if (cln == NULL) {
        return NGX_ERROR;
    }

    key->crypto = cln->data;
    ngx_memzero(key->crypto, sizeof(ngx_tailgate_jwt_crypto_t));

    /* the pool's now */
    key->crypto->pkey = jwk->pkey;
    jwk->pkey = NULL;

    cln->handler = ngx_tailgate_jwks_crypto_cleanup;

    key->alg.data = (u_char *) jwk->alg;
    key->alg.len = ngx_strlen(jwk->alg);
    key->md = (void *) md;

    if (jwk->kty == TG_JWK_EC) {
        key->ec_size = jwk->x.len;
    }

    return NGX_OK;
}


static void
ngx_tailgate_jwks_crypto_cleanup(void *data)
{
    ngx_tailgate_jwt_crypto_t  *crypto = data;

    EVP_PKEY_CTX_free(crypto->verify);
#if (OPENSSL_VERSION_NUMBER >= 0x30000000L)
    EVP_MD_free(crypto->md);
#endif
    EVP_PKEY_free(crypto->pkey);
}


/* the configuration goes: so does the set in use */

static void
ngx_tailgate_jwks_conf_cleanup(void *data)
{
    ngx_tailgate_jwks_t  *jwks = data;

    if (jwks->set) {
        ngx_destroy_pool(jwks->set->pool);
        jwks->set = NULL;
    }
}


/* a new set replaces the one in use; tokens it verified are checked again */

static void
ngx_tailgate_jwks_use(ngx_tailgate_jwks_t *jwks, ngx_tailgate_jwks_set_t *set)
{
    if (jwks->set) {
        ngx_destroy_pool(jwks->set->pool);
    }

    jwks->set = set;
    jwks->generation++;
}


ngx_int_t
ngx_tailgate_jwks_init_worker(ngx_cycle_t *cycle, ngx_array_t *sets)
{
    ngx_uint_t             i;
    ngx_tailgate_jwks_t  **jwks;

    if (sets->nelts == 0) {
        return NGX_OK;
    }

    ngx_tailgate_jwks_sets = sets;

    jwks = sets->elts;

    for (i = 0; i < sets->nelts; i++) {
        ngx_queue_init(&jwks[i]->waiting);
        jwks[i]->log = cycle->log;
    }

    ngx_tailgate_jwks_timer.handler = ngx_tailgate_jwks_timer_handler;
    ngx_tailgate_jwks_timer.log = cycle->log;
    ngx_tailgate_jwks_timer.cancelable = 1;

    ngx_add_timer(&ngx_tailgate_jwks_timer, NGX_TAILGATE_JWKS_CHECK);

    return NGX_OK;
}


void
ngx_tailgate_jwks_exit_worker(void)
{
    if (ngx_tailgate_jwks_timer.timer_set) {
        ngx_del_timer(&ngx_tailgate_jwks_timer);
    }

    ngx_tailgate_jwks_sets = NULL;
}


static void
ngx_tailgate_jwks_timer_handler(ngx_event_t *ev)
{
    ngx_uint_t             i;
    ngx_tailgate_jwks_t  **jwks;

    if (ngx_exiting || ngx_tailgate_jwks_sets == NULL) {
        return;
    }

    jwks = ngx_tailgate_jwks_sets->elts;

    for (i = 0; i < ngx_tailgate_jwks_sets->nelts; i++) {
        ngx_tailgate_jwks_check(jwks[i], ev->log);
    }

    ngx_add_timer(ev, NGX_TAILGATE_JWKS_CHECK);
}


/* a changed file is read again; a gone or refused one is logged once */

static void
ngx_tailgate_jwks_check(ngx_tailgate_jwks_t *jwks, ngx_log_t *log)
{
    ngx_file_info_t  fi;

    if (ngx_file_info(jwks->file.data, &fi) == NGX_FILE_ERROR) {

        if (!jwks->missing) {
            ngx_log_error(NGX_LOG_ERR, log, ngx_errno,
                          "tailgate: key set \"%V\" cannot be read; the "
                          "last good keys stay in use", &jwks->file);
            jwks->missing = 1;
        }

        return;
    }

    jwks->missing = 0;

    if ((jwks->has_loaded && ngx_tailgate_jwks_same_file(&fi, &jwks->loaded))
        || (jwks->has_refused
            && ngx_tailgate_jwks_same_file(&fi, &jwks->refused)))
    {
        return;
    }

    if (ngx_tailgate_jwks_reread(jwks, &fi, log) == NGX_DECLINED) {
        jwks->refused = fi;
        jwks->has_refused = 1;
    }
}


/*
 * NGX_OK: the new version is in use; NGX_DECLINED: refused and logged;
 * NGX_AGAIN: it changed while it was read, or memory ran out: next time.
 */

static ngx_int_t
ngx_tailgate_jwks_reread(ngx_tailgate_jwks_t *jwks, ngx_file_info_t *fi,
    ngx_log_t *log)
{
    char                      err[TG_JWKS_WHY_MAX];
    u_char                   *buf;
    size_t                    size;
    ssize_t                   n;
    ngx_fd_t                  fd;
    ngx_int_t                 rc;
    ngx_file_info_t           after;
    ngx_tailgate_jwks_set_t  *set;

    size = (size_t) ngx_file_size(fi);

    if (size == 0 || size > NGX_TAILGATE_JWKS_MAX_FILE) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "tailgate: key set \"%V\" is %s; the last good keys "
                      "stay in use", &jwks->file,
                      size ? "larger than 1 MB" : "empty");
        return NGX_DECLINED;
    }

    buf = ngx_alloc(size + 1, log);
    if (buf == NULL) {
        return NGX_AGAIN;
    }

    rc = NGX_AGAIN;

    fd = ngx_open_file(jwks->file.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        goto done;
    }

    /* one read of at most size + 1 bytes: a file that grew is read later */

    n = ngx_read_fd(fd, buf, size + 1);

    if (n != (ssize_t) size
        || ngx_fd_info(fd, &after) == NGX_FILE_ERROR
        || !ngx_tailgate_jwks_same_file(&after, fi))
    {
        goto done;
    }

    switch (ngx_tailgate_jwks_read(jwks, buf, size, log, &set, err,
                                   sizeof(err)))
    {
    case NGX_OK:
        ngx_tailgate_jwks_use(jwks, set);

        jwks->loaded = *fi;
        jwks->has_loaded = 1;
        jwks->has_refused = 0;

        ngx_log_error(NGX_LOG_NOTICE, log, 0,
                      "tailgate: key set \"%V\" read again: %ui keys",
                      &jwks->file, set->keys.nelts);
        rc = NGX_OK;
        break;

    case NGX_DECLINED:
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "tailgate: key set \"%V\": %s; the last good keys "
                      "stay in use", &jwks->file, err);
        rc = NGX_DECLINED;
        break;

    default:
        break;
    }

done:

    if (fd != NGX_INVALID_FILE) {
        (void) ngx_close_file(fd);
    }

    ngx_free(buf);

    return rc;
}


static ngx_uint_t
ngx_tailgate_jwks_same_file(ngx_file_info_t *a, ngx_file_info_t *b)
{
    return a->st_dev == b->st_dev
           && a->st_ino == b->st_ino
           && a->st_size == b->st_size
           && a->st_mtim.tv_sec == b->st_mtim.tv_sec
           && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec
           && a->st_ctim.tv_sec == b->st_ctim.tv_sec
           && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}


void *
ngx_tailgate_jwks_key(ngx_tailgate_jwks_t *jwks, const char *kid)
{
    size_t                   len;
    ngx_uint_t               i;
    ngx_tailgate_jwt_key_t  *key;

    if (jwks->set == NULL) {
        return NULL;
    }

    key = jwks->set->keys.elts;
    len = kid ? ngx_strlen(kid) : 0;

    for (i = 0; i < jwks->set->keys.nelts; i++) {
        if (key[i].kid.len == len
            && (len == 0 || ngx_strncmp(key[i].kid.data, kid, len) == 0))
        {
            return &key[i];
        }
    }

    return NULL;
}


ngx_uint_t
ngx_tailgate_jwks_generation(ngx_tailgate_jwks_t *jwks)
{
    return jwks->generation;
}


ngx_int_t
ngx_tailgate_jwks_wait(ngx_http_request_t *r, ngx_tailgate_jwks_t *jwks,
    ngx_msec_t wait, const char *kid)
{
    size_t                       len, i;
    ngx_pool_cleanup_t          *cln;
    ngx_tailgate_jwks_waiter_t  *w;

    /* once per request: the second time its phases run, it is refused */

    for (cln = r->pool->cleanup; cln; cln = cln->next) {
        if (cln->handler == ngx_tailgate_jwks_waiter_cleanup) {
            return NGX_DECLINED;
        }
    }

    if (!jwks->refresh || kid == NULL) {
        return NGX_DECLINED;
    }

    /* no set has a kid that is no kid */

    len = ngx_strlen(kid);

    for (i = 0; i < len; i++) {
        if ((u_char) kid[i] <= ' ' || (u_char) kid[i] >= 0x7f) {
            return NGX_DECLINED;
        }
    }

    if (len == 0 || len > TG_JWKS_KID_MAX) {
        return NGX_DECLINED;
    }

    if (ngx_tailgate_jwks_ask(jwks, kid, r->connection->log) != NGX_OK
        || wait == 0)
    {
        return NGX_DECLINED;
    }

    cln = ngx_pool_cleanup_add(r->pool, sizeof(ngx_tailgate_jwks_waiter_t));
    if (cln == NULL) {
        return NGX_DECLINED;
    }

    w = cln->data;
    ngx_memzero(w, sizeof(ngx_tailgate_jwks_waiter_t));

    w->request = r;
    w->jwks = jwks;
    w->timer.handler = ngx_tailgate_jwks_waited;
    w->timer.data = w;
    w->timer.log = r->connection->log;

    ngx_add_timer(&w->timer, wait);

    ngx_queue_insert_tail(&jwks->waiting, &w->queue);
    w->waiting = 1;

    cln->handler = ngx_tailgate_jwks_waiter_cleanup;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "tailgate: waiting up to %M ms for key set \"%V\"",
                   wait, &jwks->file);

    return NGX_AGAIN;
}


/* one question in flight, and none sooner than policyd said */

static ngx_int_t
ngx_tailgate_jwks_ask(ngx_tailgate_jwks_t *jwks, const char *kid,
    ngx_log_t *log)
{
    u_char                *buf;
    size_t                 size;
    ngx_int_t              rc;
    ngx_str_t              k;
    ngx_tailgate_frame_t   f;

    if (jwks->asking) {
        return NGX_OK;
    }

    if ((ngx_msec_int_t) (jwks->next_ask - ngx_current_msec) > 0) {
        return NGX_DECLINED;
    }

    size = TG_FRAME_HEADER_SIZE + 2 * TG_FIELD_HEADER_SIZE + jwks->file.len
           + TG_JWKS_KID_MAX;

    buf = ngx_alloc(size, log);
    if (buf == NULL) {
        return NGX_DECLINED;
    }

    k.data = (u_char *) kid;
    k.len = ngx_strlen(kid);

    ngx_tailgate_frame_init(&f, buf, size, TG_MSG_JWKS_REFRESH);
    ngx_tailgate_frame_str(&f, TG_F_JWKS_FILE, &jwks->file);
    ngx_tailgate_frame_str(&f, TG_F_KID, &k);

    ngx_memzero(&jwks->call, sizeof(ngx_tailgate_call_t));
    jwks->call.handler = ngx_tailgate_jwks_answered;
    jwks->call.data = jwks;

    rc = ngx_tailgate_call(&jwks->call, &f, NGX_TAILGATE_JWKS_ASK_TIMEOUT,
                           jwks->log);

    ngx_free(buf);

    if (rc != NGX_OK) {
        jwks->next_ask = ngx_current_msec + NGX_TAILGATE_JWKS_UNREACHED;
        return NGX_DECLINED;
    }

    jwks->asking = 1;

    ngx_log_error(NGX_LOG_INFO, log, 0,
                  "tailgate: key set \"%V\" has no kid \"%s\": policyd is "
                  "asked to fetch it again", &jwks->file, kid);

    return NGX_OK;
}


static void
ngx_tailgate_jwks_answered(ngx_tailgate_call_t *call,
    ngx_tailgate_call_result_e result, ngx_tailgate_reply_t *reply)
{
    ngx_msec_t             delay;
    ngx_queue_t           *q;
    ngx_tailgate_jwks_t   *jwks = call->data;

    jwks->asking = 0;

    delay = NGX_TAILGATE_JWKS_UNREACHED;

    if (result == NGX_TAILGATE_CALL_OK
        && reply->type == TG_MSG_JWKS_STATE && reply->status != 404)
    {
        delay = reply->refresh_ms;

        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, jwks->log, 0,
                       "tailgate: key set refresh: %ui, next in %M ms",
                       reply->status, delay);

    } else if (result == NGX_TAILGATE_CALL_OK
               || result == NGX_TAILGATE_CALL_REFUSED)
    {
        /* a policyd that keeps no such set, or knows no such frame */

        delay = NGX_TAILGATE_JWKS_NOT_KEPT;

        if (!jwks->not_kept) {
            ngx_log_error(NGX_LOG_WARN, jwks->log, 0,
                          "tailgate: policyd fetches no key set for \"%V\" "
                          "(no \"jwks\" of its policy has this \"file\"); "
                          "tokens of new kids are refused", &jwks->file);
            jwks->not_kept = 1;
        }
    }

    jwks->next_ask = ngx_current_msec + delay;

    /* what policyd wrote, before those waiting look again */

    ngx_tailgate_jwks_check(jwks, jwks->log);

    while (!ngx_queue_empty(&jwks->waiting)) {
        q = ngx_queue_head(&jwks->waiting);
        ngx_tailgate_jwks_resume(
            ngx_queue_data(q, ngx_tailgate_jwks_waiter_t, queue));
    }
}


static void
ngx_tailgate_jwks_waited(ngx_event_t *ev)
{
    ngx_tailgate_jwks_waiter_t  *w = ev->data;

    ngx_log_error(NGX_LOG_INFO, ev->log, 0,
                  "tailgate: no answer about key set \"%V\" in time",
                  &w->jwks->file);

    ngx_tailgate_jwks_check(w->jwks, ev->log);
    ngx_tailgate_jwks_resume(w);
}


/* the request's phases run again: its access phase looks once more */

static void
ngx_tailgate_jwks_resume(ngx_tailgate_jwks_waiter_t *w)
{
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    r = w->request;
    c = r->connection;

    ngx_queue_remove(&w->queue);
    w->waiting = 0;

    if (w->timer.timer_set) {
        ngx_del_timer(&w->timer);
    }

    ngx_http_core_run_phases(r);
    ngx_http_run_posted_requests(c);
}


static void
ngx_tailgate_jwks_waiter_cleanup(void *data)
{
    ngx_tailgate_jwks_waiter_t  *w = data;

    if (w->waiting) {
        ngx_queue_remove(&w->queue);
        w->waiting = 0;
    }

    if (w->timer.timer_set) {
        ngx_del_timer(&w->timer);
    }
}
