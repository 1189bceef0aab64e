
/*
 * Copyright (C) The Tailgate authors
 *
 * Client authentication.  A bearer token with the shape of a JWT goes to
 * ngx_tailgate_jwt.c when the location has JWT keys; any other credential
 * is a static API key.  The key file holds only SHA-256 digests of the
 * keys; a request's key is hashed and looked up, and the stored digest is
 * compared in constant time.  A keep-alive connection remembers which
 * key it last sent (ngx_tailgate_key_memo_t), so that the next request
 * with the same key skips the SHA-256.
 *
 * Key file lines:
 *   <64 hex digits: sha256 of the key> <client id> [tenant=T] [tags=a,b]
 *       [routes=r1,r2] [limit=NAME] [expires=YYYY-MM-DD[THH:MM:SSZ]]
 * Blank lines and lines starting with '#' are ignored.  bin/tailgate-key
 * writes them.
 *
 * The file is read when nginx reads its configuration, and again by each
 * worker when its timer sees that the file changed (ngx_tailgate_keys_check):
 * a version that parses whole replaces the table, one that does not is
 * logged once and the last good table stays.  A table that was replaced
 * lives on until the last request holding one of its identities is done.
 */


#include "ngx_tailgate_common.h"
#include "ngx_tailgate_dpop.h"
#include "ngx_tailgate_names.h"
#include "ngx_tailgate_siphash.h"

#include <openssl/rand.h>


#define NGX_TAILGATE_MAX_KEY_FILE     (256 * 1024 * 1024)

/*
 * A worker reads a changed key file in its event loop: up to this much
 * (about 200k keys); a larger one waits for nginx -s reload, which the
 * master reads.  It reads and parses in steps - a read of at most 1 MB, or
 * at most 2048 lines (a few ms) - with the loop's other events between
 * them: 200k keys in one go held every request of the worker for some
 * 300 ms.
 */
#define NGX_TAILGATE_MAX_LIVE_KEY_FILE  (16 * 1024 * 1024)
#define NGX_TAILGATE_KEYS_STEP_BYTES    (1024 * 1024)
#define NGX_TAILGATE_KEYS_STEP_LINES    2048
#define NGX_TAILGATE_KEYS_STEP_GAP      1          /* ms between steps */
#define NGX_TAILGATE_MAX_CLIENT_ID    128
#define NGX_TAILGATE_MAX_CREDENTIAL   8192
#define NGX_TAILGATE_KEYS_CHECK       1000       /* ms between stat()s */


static ngx_int_t ngx_tailgate_keys_parse(ngx_pool_t *pool,
    ngx_tailgate_key_table_t *table, u_char *p, u_char *end,
    ngx_uint_t *line, char **why);
static ngx_int_t ngx_tailgate_keys_table_init(ngx_pool_t *pool,
    ngx_tailgate_key_table_t *table, ngx_uint_t lines);
static ngx_int_t ngx_tailgate_keys_parse_lines(ngx_pool_t *pool,
    ngx_tailgate_key_table_t *table, u_char **pp, u_char *end,
    ngx_uint_t *linep, ngx_uint_t max, char **why);
static void ngx_tailgate_keys_timer_handler(ngx_event_t *ev);
static void ngx_tailgate_keys_step_handler(ngx_event_t *ev);
static ngx_uint_t ngx_tailgate_keys_check(ngx_tailgate_keys_t *keys,
    ngx_log_t *log);
static ngx_int_t ngx_tailgate_keys_reread(ngx_tailgate_keys_t *keys,
    ngx_file_info_t *fi, ngx_log_t *log);
static ngx_int_t ngx_tailgate_keys_step(ngx_tailgate_keys_t *keys,
    ngx_log_t *log);
static void ngx_tailgate_keys_abandon(ngx_tailgate_keys_t *keys);
static void ngx_tailgate_keys_refuse(ngx_tailgate_keys_t *keys,
    ngx_file_info_t *fi);
static ngx_uint_t ngx_tailgate_same_file(ngx_file_info_t *a,
    ngx_file_info_t *b);
static void ngx_tailgate_key_table_release(void *data);
static ngx_int_t ngx_tailgate_keys_insert(ngx_tailgate_key_table_t *table,
    u_char *digest, ngx_tailgate_identity_t *id);
static time_t ngx_tailgate_parse_date(u_char *p, u_char *end);
static ngx_int_t ngx_tailgate_hex_digest(u_char *hex, size_t len,
    u_char *digest);
static ngx_inline ngx_uint_t ngx_tailgate_equal(u_char *a, u_char *b,
    size_t len);
static ngx_int_t ngx_tailgate_credential(ngx_http_request_t *r,
    ngx_str_t *credential, ngx_uint_t *bearer, ngx_uint_t *dpop);
static ngx_tailgate_auth_e ngx_tailgate_token_authenticate(
    ngx_http_request_t *r, ngx_http_tailgate_ctx_t *ctx,
    ngx_http_tailgate_loc_conf_t *tlcf, ngx_str_t *credential,
    const char **why);
static ngx_uint_t ngx_tailgate_looks_like_jwt(ngx_str_t *token);
static ngx_tailgate_auth_e ngx_tailgate_key_find(ngx_http_request_t *r,
    ngx_tailgate_keys_t *keys, ngx_str_t *credential,
    ngx_tailgate_key_t **slotp, const char **why);
static ngx_tailgate_key_t *ngx_tailgate_key_lookup(
    ngx_tailgate_key_table_t *table, u_char *digest);
static void ngx_tailgate_key_memo_cleanup(void *data);


/*
 * Where a digest's search starts: its first 8 bytes, which SHA-256 spreads
 * evenly.  (16 bits were too few past 64k keys: every start was taken and
 * the probes ran long - 7.5 s to load 100k keys.)
 */

static ngx_inline ngx_uint_t
ngx_tailgate_key_slot(ngx_tailgate_key_table_t *table, u_char *digest)
{
    uint64_t  h;

    ngx_memcpy(&h, digest, sizeof(h));

    return (ngx_uint_t) h & table->mask;
}


/*
 * What a connection's last API key turned out to be.  Clients send the
 * same key on every request of a keep-alive connection, and the SHA-256
 * of it was a third of the module's CPU time per request.  The memo holds
 * no key, only a SipHash tag of it under a secret made at worker start:
 * the tag cannot be turned back into the key, and without the secret no
 * other credential can be made to match it.  A connection that carries
 * several clients' requests (a proxy in front) only misses more often.
 */

typedef struct {
    ngx_tailgate_keys_t         *keys;
    ngx_uint_t                   generation;     /* of keys->table */
    ngx_tailgate_key_t          *slot;
    u_char                       tag[NGX_TAILGATE_SIPHASH_LEN];
} ngx_tailgate_key_memo_t;


static ngx_str_t  ngx_tailgate_x_api_key = ngx_string("x-api-key");

static ngx_int_t  ngx_tailgate_month_days[] = {
    31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31
};

static u_char  ngx_tailgate_memo_secret[NGX_TAILGATE_SIPHASH_KEY_LEN];

/* a new version of a key file, read and parsed a step at a time */
struct ngx_tailgate_keys_reading_s {
    ngx_file_info_t              fi;         /* the version being read */
    ngx_fd_t                     fd;
    u_char                      *buf;        /* ngx_alloc()ed: freed after */
    size_t                       size;
    size_t                       done;       /* bytes read so far */
    u_char                      *pos;        /* the next line to parse */
    ngx_uint_t                   lines;      /* counted while read */
    ngx_uint_t                   line;       /* parsed so far */
    ngx_uint_t                   steps;
    ngx_pool_t                  *pool;       /* the new table's */
    ngx_tailgate_key_table_t    *table;
};


static ngx_event_t   ngx_tailgate_keys_timer;
static ngx_event_t   ngx_tailgate_keys_step_event;
static ngx_array_t  *ngx_tailgate_keys_files;    /* ngx_tailgate_keys_t * */


char *
ngx_tailgate_keys_load(ngx_conf_t *cf, ngx_str_t *file,
    ngx_tailgate_keys_t **keysp)
{
    char                           *why;
    ngx_str_t                       content;
    ngx_uint_t                      i, line;
    ngx_tailgate_keys_t            *keys, **loaded;
    ngx_http_tailgate_main_conf_t  *tmcf;

    tmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_tailgate_module);

    /* several locations may share one file: read it once */

    loaded = tmcf->keys.elts;

    for (i = 0; i < tmcf->keys.nelts; i++) {
        if (loaded[i]->file.len == file->len
            && ngx_strncmp(loaded[i]->file.data, file->data, file->len) == 0)
        {
            *keysp = loaded[i];
            return NGX_CONF_OK;
        }
    }

    keys = ngx_pcalloc(cf->pool, sizeof(ngx_tailgate_keys_t));
    if (keys == NULL) {
        return NGX_CONF_ERROR;
    }

    keys->table = ngx_pcalloc(cf->pool, sizeof(ngx_tailgate_key_table_t));
    if (keys->table == NULL) {
        return NGX_CONF_ERROR;
    }

    keys->file = *file;

    /*
     * What the file was before it is read: a change while it is read is
     * seen by the workers' timers, and read again.
     */

    if (ngx_file_info(file->data, &keys->loaded) == NGX_FILE_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           ngx_file_info_n " \"%V\" failed", file);
        return NGX_CONF_ERROR;
    }

    /* the parser keeps copies of what it needs */

    if (ngx_tailgate_read_key_file(cf, file, NGX_TAILGATE_MAX_KEY_FILE,
                                   cf->temp_pool, &content)
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    switch (ngx_tailgate_keys_parse(cf->pool, keys->table, content.data,
                                    content.data + content.len, &line, &why))
    {
    case NGX_OK:
        break;

    case NGX_DECLINED:
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "key file \"%V\", line %ui: %s", file, line, why);
        return NGX_CONF_ERROR;

    default:
        return NGX_CONF_ERROR;
    }

    loaded = ngx_array_push(&tmcf->keys);
    if (loaded == NULL) {
        return NGX_CONF_ERROR;
    }

    *loaded = keys;
    *keysp = keys;

    return NGX_CONF_OK;
}


/*
 * The text of a key file into a table, all or nothing: NGX_OK, NGX_DECLINED
 * with the line and what was expected, NGX_ERROR out of memory.
 */

static ngx_int_t
ngx_tailgate_keys_parse(ngx_pool_t *pool, ngx_tailgate_key_table_t *table,
    u_char *p, u_char *end, ngx_uint_t *linep, char **why)
{
    u_char      *q;
    ngx_uint_t   lines;

    lines = 0;

    for (q = p; q < end; q++) {
        if (*q == '\n') {
            lines++;
        }
    }

    *linep = 0;

    if (ngx_tailgate_keys_table_init(pool, table, lines) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_tailgate_keys_parse_lines(pool, table, &p, end, linep,
                                         NGX_MAX_UINT32_VALUE, why);
}


/* room for every line of the file at most half full */

static ngx_int_t
ngx_tailgate_keys_table_init(ngx_pool_t *pool, ngx_tailgate_key_table_t *table,
    ngx_uint_t lines)
{
    ngx_uint_t  size;

    for (size = 8; size < 2 * (lines + 1); size <<= 1) { /* void */ }

    table->slots = ngx_pcalloc(pool, size * sizeof(ngx_tailgate_key_t));
    if (table->slots == NULL) {
        return NGX_ERROR;
    }

    table->mask = size - 1;

    return NGX_OK;
}


/*
 * At most max lines from *pp on: NGX_OK at the end, NGX_AGAIN with *pp and
 * *linep where the next step goes on, NGX_DECLINED with the line and what
 * was expected, NGX_ERROR out of memory.
 */

static ngx_int_t
ngx_tailgate_keys_parse_lines(ngx_pool_t *pool,
    ngx_tailgate_key_table_t *table, u_char **pp, u_char *end,
    ngx_uint_t *linep, ngx_uint_t max, char **why)
{
    char                     *rv;
    u_char                   *p, *eol, *field, *last;
    ngx_uint_t                line;
    ngx_tailgate_identity_t   id;
    u_char                    digest[NGX_TAILGATE_DIGEST_LEN];

    p = *pp;
    line = *linep;

    for ( /* void */ ; p < end && max; max--, p = eol + 1) {

        *linep = ++line;

        eol = ngx_strlchr(p, end, '\n');
        if (eol == NULL) {
            eol = end;
        }

        last = eol;

        while (last > p && (last[-1] == '\r' || last[-1] == ' '
                            || last[-1] == '\t'))
        {
            last--;
        }

        while (p < last && (*p == ' ' || *p == '\t')) {
            p++;
        }

        if (p == last || *p == '#') {
            continue;
        }

        field = p;

        while (p < last && *p != ' ' && *p != '\t') {
            p++;
        }

        if (ngx_tailgate_hex_digest(field, p - field, digest) != NGX_OK) {
            *why = "expected the SHA-256 of a key as 64 hex digits";
            return NGX_DECLINED;
        }

        while (p < last && (*p == ' ' || *p == '\t')) {
            p++;
        }

        ngx_memzero(&id, sizeof(ngx_tailgate_identity_t));

        id.client.data = p;

        while (p < last && (ngx_tailgate_is_name_char(*p) || *p == '@'
                            || *p == ':'))
        {
            p++;
        }

        id.client.len = p - id.client.data;

        if (id.client.len == 0 || id.client.len > NGX_TAILGATE_MAX_CLIENT_ID
            || (p < last && *p != ' ' && *p != '\t'))
        {
            *why = "expected a client id of 1-128 letters, digits and "
                   "\"_-.@:\" after the digest";
            return NGX_DECLINED;
        }

        /* name=value attributes */

        for ( ;; ) {
            while (p < last && (*p == ' ' || *p == '\t')) {
                p++;
            }

            if (p == last) {
                break;
            }

            field = p;

            while (p < last && *p != ' ' && *p != '\t') {
                p++;
            }

            rv = ngx_tailgate_identity_attribute(pool, &id, field, p);

            if (rv == NGX_CONF_ERROR) {
                return NGX_ERROR;
            }

            if (rv != NGX_CONF_OK) {
                *why = rv;
                return NGX_DECLINED;
            }
        }

        id.client.data = ngx_pstrdup(pool, &id.client);
        if (id.client.data == NULL) {
            return NGX_ERROR;
        }

        if (ngx_tailgate_keys_insert(table, digest, &id) != NGX_OK) {
            *why = "the same key digest appears twice";
            return NGX_DECLINED;
        }
    }

    *pp = ngx_min(p, end);

    return (p < end) ? NGX_AGAIN : NGX_OK;
}


/*
 * One "name=value" of a key record or a trusted network: NGX_CONF_OK,
 * NGX_CONF_ERROR when out of memory, or the reason it is wrong.
 */

char *
ngx_tailgate_identity_attribute(ngx_pool_t *pool, ngx_tailgate_identity_t *id,
    u_char *p, u_char *end)
{
    u_char     *v, *q;
    ngx_str_t   value;

    v = ngx_strlchr(p, end, '=');

    if (v == NULL || v + 1 == end) {
        return "expected name=value after the client id";
    }

    value.data = v + 1;
    value.len = end - value.data;

#define ngx_tailgate_is(name)                                                 \
    ((size_t) (v - p) == sizeof(name) - 1                                     \
     && ngx_strncmp(p, name, sizeof(name) - 1) == 0)

    if (ngx_tailgate_is("tenant")) {

        if (id->tenant.len) {
            return "tenant= appears twice";
        }

        for (q = value.data; q < end; q++) {
            if (!(ngx_tailgate_is_name_char(*q) || *q == '@' || *q == ':')) {
                break;
            }
        }

        if (q != end || value.len > NGX_TAILGATE_MAX_TENANT) {
            return "expected tenant= of 1-64 letters, digits and \"_-.@:\"";
        }

        id->tenant.data = ngx_pstrdup(pool, &value);
        id->tenant.len = value.len;

        return id->tenant.data ? NGX_CONF_OK : NGX_CONF_ERROR;
    }

    if (ngx_tailgate_is("role")) {

        /* the only role: operators, who may read tailgate_status */

        if (id->admin || value.len != 5
            || ngx_strncmp(value.data, "admin", 5) != 0)
        {
            return "expected role=admin, once";
        }

        id->admin = 1;

        return NGX_CONF_OK;
    }

    if (ngx_tailgate_is("tags")) {

        if (id->tags
            || ngx_tailgate_parse_names(pool, value.data, end,
                                        NGX_TAILGATE_MAX_TAGS, 0,
                                        &id->tags, &id->ntags) != NGX_OK)
        {
            return "expected tags=a,b: at most 16 tags of 1-64 letters, "
                   "digits and \"_-:.\", once";
        }

        return NGX_CONF_OK;
    }

    if (ngx_tailgate_is("routes")) {

        if (id->routes
            || ngx_tailgate_parse_names(pool, value.data, end,
                                        NGX_TAILGATE_MAX_ROUTES, 1,
                                        &id->routes, &id->nroutes) != NGX_OK)
        {
            return "expected routes=r1,r2: at most 256 route names without "
                   "spaces or commas, once";
        }

        return NGX_CONF_OK;
    }

    if (ngx_tailgate_is("limit")) {

        /* a limit profile of the policy: policyd knows what it allows */

        if (id->limit.len
            || ngx_tailgate_check_name(value.data, end, 0) != NGX_OK)
        {
            return "expected limit= of 1-64 letters, digits and \"_-:.\", "
                   "once";
        }

        id->limit.data = ngx_pstrdup(pool, &value);
        id->limit.len = value.len;

        return id->limit.data ? NGX_CONF_OK : NGX_CONF_ERROR;
    }

    if (ngx_tailgate_is("expires")) {

        id->expires = ngx_tailgate_parse_date(value.data, end);

        if (id->expires <= 0) {
            return "expected expires=YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ";
        }

        return NGX_CONF_OK;
    }

#undef ngx_tailgate_is

    return "unknown attribute: expected tenant=, tags=, routes=, limit=, "
           "expires= or role=";
}


/* YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ, UTC; -1 when it is neither */

static time_t
ngx_tailgate_parse_date(u_char *p, u_char *end)
{
    ngx_int_t  year, month, day, hour, min, sec, era, yoe, doy, doe;

    if (end - p != 10 && end - p != 20) {
        return -1;
    }

    year = ngx_atoi(p, 4);
    month = ngx_atoi(p + 5, 2);
    day = ngx_atoi(p + 8, 2);
    hour = min = sec = 0;

    if (p[4] != '-' || p[7] != '-') {
        return -1;
    }

    if (end - p == 20) {
        if (p[10] != 'T' || p[13] != ':' || p[16] != ':' || p[19] != 'Z') {
            return -1;
        }

        hour = ngx_atoi(p + 11, 2);
        min = ngx_atoi(p + 14, 2);
        sec = ngx_atoi(p + 17, 2);
    }

    if (year < 1970 || month < 1 || month > 12 || day < 1
        || day > ngx_tailgate_month_days[month - 1]
                 + (month == 2 && year % 4 == 0
                    && (year % 100 != 0 || year % 400 == 0))
        || hour < 0 || hour > 23 || min < 0 || min > 59 || sec < 0
        || sec > 59)
    {
        return -1;
    }

    /* days since 1970-01-01 of a proleptic Gregorian date */

    year -= (month <= 2);
    era = year / 400;
    yoe = year - era * 400;
    doy = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;

    return ((time_t) (era * 146097 + doe - 719468)) * 86400
           + hour * 3600 + min * 60 + sec;
}


/* the digest is uniformly distributed already: its first bytes index */

static ngx_int_t
ngx_tailgate_keys_insert(ngx_tailgate_key_table_t *table, u_char *digest,
    ngx_tailgate_identity_t *id)
{
    ngx_uint_t           i;
    ngx_tailgate_key_t  *slot;

    i = ngx_tailgate_key_slot(table, digest);

    for ( ;; ) {
        slot = &table->slots[i];

        if (slot->identity.client.len == 0) {
            break;
        }

        if (ngx_memcmp(slot->digest, digest, NGX_TAILGATE_DIGEST_LEN) == 0) {
            return NGX_DECLINED;
        }

        i = (i + 1) & table->mask;
    }

    ngx_memcpy(slot->digest, digest, NGX_TAILGATE_DIGEST_LEN);
    slot->identity = *id;
    table->count++;

    return NGX_OK;
}


ngx_int_t
ngx_tailgate_auth_init_worker(ngx_cycle_t *cycle, ngx_array_t *keys)
{
    if (RAND_bytes(ngx_tailgate_memo_secret, sizeof(ngx_tailgate_memo_secret))
        != 1)
    {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "tailgate: no random bytes from OpenSSL");
        return NGX_ERROR;
    }

    if (keys->nelts == 0) {
        return NGX_OK;
    }

    /*
     * Each worker looks at its key files once a second: one stat() each,
     * and a read only when the file changed.
     */

    ngx_tailgate_keys_files = keys;

    ngx_tailgate_keys_timer.handler = ngx_tailgate_keys_timer_handler;
    ngx_tailgate_keys_timer.log = cycle->log;
    ngx_tailgate_keys_timer.data = keys;
    ngx_tailgate_keys_timer.cancelable = 1;

    ngx_tailgate_keys_step_event.handler = ngx_tailgate_keys_step_handler;
    ngx_tailgate_keys_step_event.log = cycle->log;
    ngx_tailgate_keys_step_event.cancelable = 1;

    ngx_add_timer(&ngx_tailgate_keys_timer, NGX_TAILGATE_KEYS_CHECK);

    return NGX_OK;
}


void
ngx_tailgate_auth_exit_worker(void)
{
    ngx_uint_t            i;
    ngx_tailgate_keys_t **keys;

    ngx_explicit_memzero(ngx_tailgate_memo_secret,
                         sizeof(ngx_tailgate_memo_secret));

    if (ngx_tailgate_keys_timer.timer_set) {
        ngx_del_timer(&ngx_tailgate_keys_timer);
    }

    if (ngx_tailgate_keys_step_event.timer_set) {
        ngx_del_timer(&ngx_tailgate_keys_step_event);
    }

    if (ngx_tailgate_keys_files) {
        keys = ngx_tailgate_keys_files->elts;

        for (i = 0; i < ngx_tailgate_keys_files->nelts; i++) {
            ngx_tailgate_keys_abandon(keys[i]);
        }
    }

    ngx_tailgate_keys_files = NULL;
}


static void
ngx_tailgate_keys_timer_handler(ngx_event_t *ev)
{
    ngx_uint_t            i;
    ngx_tailgate_keys_t **keys;

    if (ngx_exiting || ngx_tailgate_keys_files == NULL) {
        return;
    }

    keys = ngx_tailgate_keys_files->elts;

    for (i = 0; i < ngx_tailgate_keys_files->nelts; i++) {
        if (keys[i]->reading == NULL
            && ngx_tailgate_keys_check(keys[i], ev->log)
            && !ngx_tailgate_keys_step_event.timer_set)
        {
            ngx_add_timer(&ngx_tailgate_keys_step_event,
                          NGX_TAILGATE_KEYS_STEP_GAP);
        }
    }

    ngx_add_timer(ev, NGX_TAILGATE_KEYS_CHECK);
}


/* one step of each file being read, then the loop's other events */

static void
ngx_tailgate_keys_step_handler(ngx_event_t *ev)
{
    ngx_int_t             rc;
    ngx_uint_t            i, more;
    ngx_tailgate_keys_t **keys;

    if (ngx_exiting || ngx_tailgate_keys_files == NULL) {
        return;
    }

    keys = ngx_tailgate_keys_files->elts;
    more = 0;

    for (i = 0; i < ngx_tailgate_keys_files->nelts; i++) {
        if (keys[i]->reading == NULL) {
            continue;
        }

        rc = ngx_tailgate_keys_step(keys[i], ev->log);

        if (rc == NGX_AGAIN) {
            more = 1;
            continue;
        }

        if (rc == NGX_DECLINED) {
            ngx_tailgate_keys_refuse(keys[i], &keys[i]->reading->fi);
        }

        /* NGX_OK: in use; NGX_ERROR: the next check tries again */
        ngx_tailgate_keys_abandon(keys[i]);
    }

    if (more) {
        ngx_add_timer(ev, NGX_TAILGATE_KEYS_STEP_GAP);
    }
}


/*
 * A changed file starts to be read again (1: the steps have work); a gone
 * or refused one is logged once.
 */

static ngx_uint_t
ngx_tailgate_keys_check(ngx_tailgate_keys_t *keys, ngx_log_t *log)
{
    ngx_file_info_t  fi;

    if (ngx_file_info(keys->file.data, &fi) == NGX_FILE_ERROR) {

        if (!keys->missing) {
            ngx_log_error(NGX_LOG_ERR, log, ngx_errno,
                          "tailgate: key file \"%V\" cannot be read; the "
                          "last good keys stay in use", &keys->file);
            keys->missing = 1;
        }

        return 0;
    }

    keys->missing = 0;

    if (ngx_tailgate_same_file(&fi, &keys->loaded)
        || (keys->has_refused && ngx_tailgate_same_file(&fi, &keys->refused)))
    {
        return 0;
    }

    switch (ngx_tailgate_keys_reread(keys, &fi, log)) {

    case NGX_OK:
        return 1;

    case NGX_DECLINED:
        ngx_tailgate_keys_refuse(keys, &fi);
        return 0;

    default:
        return 0;
    }
}


/*
 * A new version of the file starts to be read: NGX_OK, the steps go on
 * with keys->reading; NGX_DECLINED: refused and logged; NGX_AGAIN: out of
 * memory or gone: the next check tries again.
 */

static ngx_int_t
ngx_tailgate_keys_reread(ngx_tailgate_keys_t *keys, ngx_file_info_t *fi,
    ngx_log_t *log)
{
    size_t                        size;
    ngx_pool_t                   *pool;
    ngx_tailgate_keys_reading_t  *rd;
    u_char                        mode[NGX_TAILGATE_MODE_LEN];

    if (ngx_tailgate_writable_by_all(fi)) {
        ngx_log_error(NGX_LOG_ERR, log, 0, "tailgate: "
                      NGX_TAILGATE_OPEN_KEY_FILE "; the last good keys stay "
                      "in use", &keys->file, (size_t) NGX_TAILGATE_MODE_LEN,
                      ngx_tailgate_mode_text(mode, fi), &keys->file);
        return NGX_DECLINED;
    }

    size = (size_t) ngx_file_size(fi);

    if (size > NGX_TAILGATE_MAX_LIVE_KEY_FILE) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "tailgate: key file \"%V\" is larger than the %uz "
                      "bytes a worker reads again by itself; the last good "
                      "keys stay in use until nginx -s reload", &keys->file,
                      (size_t) NGX_TAILGATE_MAX_LIVE_KEY_FILE);
        return NGX_DECLINED;
    }

    /* a file cut short to nothing is more likely torn than meant */

    if (size == 0) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "tailgate: key file \"%V\" is empty (to revoke every "
                      "key, leave a comment line); the last good keys stay "
                      "in use", &keys->file);
        return NGX_DECLINED;
    }

    pool = ngx_create_pool(NGX_DEFAULT_POOL_SIZE, log);
    if (pool == NULL) {
        return NGX_AGAIN;
    }

    rd = ngx_pcalloc(pool, sizeof(ngx_tailgate_keys_reading_t));
    if (rd == NULL) {
        ngx_destroy_pool(pool);
        return NGX_AGAIN;
    }

    rd->pool = pool;
    rd->fi = *fi;
    rd->size = size;
    rd->fd = NGX_INVALID_FILE;

    /* the text only while it is parsed: the table keeps copies */
    rd->buf = ngx_alloc(size, log);
    rd->table = ngx_pcalloc(pool, sizeof(ngx_tailgate_key_table_t));

    keys->reading = rd;

    if (rd->buf == NULL || rd->table == NULL) {
        ngx_tailgate_keys_abandon(keys);
        return NGX_AGAIN;
    }

    rd->table->pool = pool;

    rd->fd = ngx_open_file(keys->file.data, NGX_FILE_RDONLY, NGX_FILE_OPEN,
                           0);
    if (rd->fd == NGX_INVALID_FILE) {
        ngx_tailgate_keys_abandon(keys);
        return NGX_AGAIN;
    }

    return NGX_OK;
}


/*
 * One step: a read of the file, or some lines of it parsed.  NGX_AGAIN:
 * more steps; NGX_OK: the new table is in use; NGX_DECLINED: refused and
 * logged; NGX_ERROR: it changed while it was read, or memory ran out.
 */

static ngx_int_t
ngx_tailgate_keys_step(ngx_tailgate_keys_t *keys, ngx_log_t *log)
{
    char                         *why;
    u_char                       *p, *last;
    size_t                        want;
    ssize_t                       n;
    ngx_int_t                     rc;
    ngx_uint_t                    line;
    ngx_file_info_t               after;
    ngx_tailgate_key_table_t     *old;
    ngx_tailgate_keys_reading_t  *rd;

    rd = keys->reading;
    rd->steps++;

    if (rd->done < rd->size) {
        want = ngx_min(rd->size - rd->done, NGX_TAILGATE_KEYS_STEP_BYTES);

        n = pread(rd->fd, rd->buf + rd->done, want, (off_t) rd->done);

        if (n <= 0) {
            /* cut short while read, or an error: the next check */
            return NGX_ERROR;
        }

        for (p = rd->buf + rd->done, last = p + n; p < last; p++) {
            rd->lines += (*p == '\n');
        }

        rd->done += n;

        if (rd->done < rd->size) {
            return NGX_AGAIN;
        }

        /* whole: the same version from first byte to last */

        if (ngx_fd_info(rd->fd, &after) == NGX_FILE_ERROR
            || !ngx_tailgate_same_file(&after, &rd->fi))
        {
            return NGX_ERROR;
        }

        (void) ngx_close_file(rd->fd);
        rd->fd = NGX_INVALID_FILE;

        /* a writer that is not done yet leaves a last line without its end */

        if (rd->buf[rd->size - 1] != '\n') {
            ngx_log_error(NGX_LOG_ERR, log, 0,
                          "tailgate: key file \"%V\", line %ui: the last "
                          "line has no end of line (still being written?); "
                          "the last good keys stay in use", &keys->file,
                          rd->lines + 1);
            return NGX_DECLINED;
        }

        if (ngx_tailgate_keys_table_init(rd->pool, rd->table, rd->lines)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        rd->pos = rd->buf;

        return NGX_AGAIN;
    }

    line = rd->line;

    rc = ngx_tailgate_keys_parse_lines(rd->pool, rd->table, &rd->pos,
                                       rd->buf + rd->size, &line,
                                       NGX_TAILGATE_KEYS_STEP_LINES, &why);
    rd->line = line;

    switch (rc) {

    case NGX_AGAIN:
        return NGX_AGAIN;

    case NGX_OK:
        break;

    case NGX_DECLINED:
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "tailgate: key file \"%V\", line %ui: %s; the last "
                      "good keys stay in use", &keys->file, line, why);
        return NGX_DECLINED;

    default:
        return NGX_ERROR;
    }

    old = keys->table;
    keys->table = rd->table;
    keys->generation++;
    keys->loaded = rd->fi;
    keys->has_refused = 0;

    /* the new table's pool is its own now, not the reading's */
    rd->table = NULL;
    rd->pool = NULL;

    old->retired = 1;

    if (old->pool && old->refs == 0) {
        ngx_destroy_pool(old->pool);
    }

    ngx_log_error(NGX_LOG_NOTICE, log, 0,
                  "tailgate: key file \"%V\" read again: %ui keys, "
                  "in %ui steps", &keys->file, keys->table->count, rd->steps);

    return NGX_OK;
}


/* a reading ended, done or not: what only it held is freed */

static void
ngx_tailgate_keys_abandon(ngx_tailgate_keys_t *keys)
{
    ngx_tailgate_keys_reading_t  *rd;

    rd = keys->reading;

    if (rd == NULL) {
        return;
    }

    keys->reading = NULL;

    if (rd->fd != NGX_INVALID_FILE) {
        (void) ngx_close_file(rd->fd);
    }

    if (rd->buf) {
        ngx_free(rd->buf);
    }

    /* rd itself lives in a pool: the table's until the table is in use */

    if (rd->pool) {
        ngx_destroy_pool(rd->pool);
    }
}


static void
ngx_tailgate_keys_refuse(ngx_tailgate_keys_t *keys, ngx_file_info_t *fi)
{
    keys->refused = *fi;
    keys->has_refused = 1;
}


/* the same version of a file: a rename or a write changes one of these */

static ngx_uint_t
ngx_tailgate_same_file(ngx_file_info_t *a, ngx_file_info_t *b)
{
    return a->st_dev == b->st_dev
           && a->st_ino == b->st_ino
           && a->st_size == b->st_size
           && a->st_mtim.tv_sec == b->st_mtim.tv_sec
           && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec
           && a->st_ctim.tv_sec == b->st_ctim.tv_sec
           && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}


/* a request that held an identity of the table is done with it */

static void
ngx_tailgate_key_table_release(void *data)
{
    ngx_tailgate_key_table_t  *table = data;

    if (--table->refs == 0 && table->retired) {
        ngx_destroy_pool(table->pool);
    }
}


/*
 * The client's identity into ctx->identity.  why: for the operator's log,
 * never for the client.
 */

ngx_tailgate_auth_e
ngx_tailgate_authenticate(ngx_http_request_t *r, ngx_http_tailgate_ctx_t *ctx,
    ngx_http_tailgate_loc_conf_t *tlcf, const char **why)
{
    ngx_uint_t                 bearer, dpop;
    ngx_str_t                  credential;
    ngx_tailgate_key_t        *slot;
    ngx_pool_cleanup_t        *cln;
    ngx_tailgate_keys_t       *keys;
    ngx_tailgate_auth_e        rc;
    ngx_tailgate_identity_t   *id;
    ngx_tailgate_key_table_t  *table;

    *why = "no credential was sent";

    if (ctx->jwks_credential.len) {

        /* a token that waited for its key set: the header is blank now */

        credential = ctx->jwks_credential;
        bearer = 1;
        dpop = ctx->dpop;

    } else if (ngx_tailgate_credential(r, &credential, &bearer, &dpop)
               != NGX_OK)
    {
        /* no credential: a trusted network may vouch for the client */

        id = ngx_tailgate_trusted_identity(r, tlcf);

        if (id == NULL) {
            return NGX_TAILGATE_AUTH_MISSING;
        }

        ctx->identity = id;

        return NGX_TAILGATE_AUTH_OK;
    }

    ctx->dpop = dpop;

    if (credential.len > NGX_TAILGATE_MAX_CREDENTIAL) {
        *why = "the credential is too long";
        return NGX_TAILGATE_AUTH_INVALID;
    }

    /*
     * The scheme: "DPoP" only where it is on, and then with a token bound
     * to a key; "Bearer" and X-Api-Key not where DPoP is required.
     */

    if (dpop) {
        if (tlcf->dpop == NGX_TAILGATE_DPOP_OFF) {
            *why = "a DPoP credential where tailgate_dpop is off";
            return NGX_TAILGATE_AUTH_INVALID;
        }

        if ((tlcf->jwt_keys == NULL && tlcf->jwks == NULL)
            || !ngx_tailgate_looks_like_jwt(&credential))
        {
            *why = "a DPoP credential that is not a JWT";
            return NGX_TAILGATE_AUTH_INVALID;
        }

    } else if (tlcf->dpop == NGX_TAILGATE_DPOP_REQUIRED) {
        *why = "a bearer credential where tailgate_dpop is required";
        return NGX_TAILGATE_AUTH_DPOP_REQUIRED;
    }

    if (bearer && (tlcf->jwt_keys || tlcf->jwks)
        && ngx_tailgate_looks_like_jwt(&credential))
    {
        return ngx_tailgate_token_authenticate(r, ctx, tlcf, &credential,
                                               why);
    }

    *why = "unknown API key";

    keys = tlcf->keys;

    if (keys == NULL || keys->table->count == 0) {
        return NGX_TAILGATE_AUTH_INVALID;
    }

    rc = ngx_tailgate_key_find(r, keys, &credential, &slot, why);

    if (rc != NGX_TAILGATE_AUTH_OK) {
        return rc;
    }

    if (slot->identity.expires && ngx_time() >= slot->identity.expires) {
        *why = "the API key has expired";
        return NGX_TAILGATE_AUTH_EXPIRED;
    }

    /* a table read while running may be replaced before the request ends */

    table = keys->table;

    if (table->pool) {
        cln = ngx_pool_cleanup_add(r->pool, 0);
        if (cln == NULL) {
            *why = "no memory";
            return NGX_TAILGATE_AUTH_ERROR;
        }

        cln->handler = ngx_tailgate_key_table_release;
        cln->data = table;
        table->refs++;
    }

    ctx->identity = &slot->identity;

    return NGX_TAILGATE_AUTH_OK;
}


/*
 * A JWT, and with "Authorization: DPoP" its proof: checked after the
 * token, so that a token that waits for its key set (NGX_TAILGATE_AUTH_AGAIN)
 * has not spent its proof's jti when it comes back.
 */

static ngx_tailgate_auth_e
ngx_tailgate_token_authenticate(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx, ngx_http_tailgate_loc_conf_t *tlcf,
    ngx_str_t *credential, const char **why)
{
    ngx_str_t                 jkt;
    ngx_tailgate_auth_e       rc;
    ngx_tailgate_identity_t  *id;

    rc = ngx_tailgate_jwt_authenticate(r, tlcf, credential, &id, &jkt, why);

    if (rc == NGX_TAILGATE_AUTH_AGAIN) {
        ctx->jwks_credential = *credential;
        return rc;
    }

    if (rc != NGX_TAILGATE_AUTH_OK) {
        return rc;
    }

    if (ctx->dpop) {
        if (jkt.len == 0) {
            *why = "a DPoP credential whose token has no cnf.jkt";
            return NGX_TAILGATE_AUTH_INVALID;
        }

        rc = ngx_tailgate_dpop_check(r, tlcf, credential, &jkt, why);

        if (rc != NGX_TAILGATE_AUTH_OK) {
            return rc;
        }

    } else if (jkt.len) {

        /* RFC 9449, 7.1: a token bound to a key is no bearer token */

        *why = "a DPoP-bound token (cnf.jkt) sent as a bearer token";
        return NGX_TAILGATE_AUTH_INVALID;
    }

    ctx->identity = id;

    return NGX_TAILGATE_AUTH_OK;
}


/* the key's slot, from the connection's memo or by its SHA-256 */

static ngx_tailgate_auth_e
ngx_tailgate_key_find(ngx_http_request_t *r, ngx_tailgate_keys_t *keys,
    ngx_str_t *credential, ngx_tailgate_key_t **slotp, const char **why)
{
    u_char                    tag[NGX_TAILGATE_SIPHASH_LEN];
    u_char                    digest[NGX_TAILGATE_DIGEST_LEN];
    ngx_uint_t                remember;
    ngx_pool_cleanup_t       *cln;
    ngx_tailgate_key_t       *slot;
    ngx_tailgate_key_memo_t  *memo;

    memo = NULL;

    /*
     * An HTTP/2 or HTTP/3 request's connection is its stream, which
     * lives no longer than the request: nothing to remember there.
     */

    remember = (r->http_version < NGX_HTTP_VERSION_20);

    if (remember) {

        for (cln = r->connection->pool->cleanup; cln; cln = cln->next) {
            if (cln->handler == ngx_tailgate_key_memo_cleanup) {
                memo = cln->data;
                break;
            }
        }

        ngx_tailgate_siphash128(ngx_tailgate_memo_secret, credential->data,
                                credential->len, tag);

        if (memo
            && memo->keys == keys
            && memo->generation == keys->generation
            && ngx_tailgate_equal(memo->tag, tag, sizeof(tag)))
        {
            *slotp = memo->slot;
            return NGX_TAILGATE_AUTH_OK;
        }
    }

    if (ngx_tailgate_sha256(credential, digest) != NGX_OK) {
        *why = "SHA-256 failed";
        return NGX_TAILGATE_AUTH_ERROR;
    }

    slot = ngx_tailgate_key_lookup(keys->table, digest);

    if (slot == NULL) {
        return NGX_TAILGATE_AUTH_INVALID;
    }

    *slotp = slot;

    if (!remember) {
        return NGX_TAILGATE_AUTH_OK;
    }

    if (memo == NULL) {
        cln = ngx_pool_cleanup_add(r->connection->pool,
                                   sizeof(ngx_tailgate_key_memo_t));
        if (cln == NULL) {
            return NGX_TAILGATE_AUTH_OK;
        }

        cln->handler = ngx_tailgate_key_memo_cleanup;
        memo = cln->data;
    }

    memo->keys = keys;
    memo->generation = keys->generation;
    memo->slot = slot;
    ngx_memcpy(memo->tag, tag, sizeof(tag));

    return NGX_TAILGATE_AUTH_OK;
}


static ngx_tailgate_key_t *
ngx_tailgate_key_lookup(ngx_tailgate_key_table_t *table, u_char *digest)
{
    ngx_uint_t           i;
    ngx_tailgate_key_t  *slot;

    i = ngx_tailgate_key_slot(table, digest);

    for ( ;; ) {
        slot = &table->slots[i];

        if (slot->identity.client.len == 0) {
            return NULL;
        }

        if (ngx_tailgate_equal(slot->digest, digest, NGX_TAILGATE_DIGEST_LEN)) {
            return slot;
        }

        i = (i + 1) & table->mask;
    }
}


static void
ngx_tailgate_key_memo_cleanup(void *data)
{
    ngx_explicit_memzero(data, sizeof(ngx_tailgate_key_memo_t));
}


/*
 * An Authorization header's scheme, in any case (RFC 9110, 11.1), and
 * something after it.  Clients write it as the RFC does: one memcmp()
 * says so, where ngx_strncasecmp() folds byte by byte.
 */

static ngx_inline ngx_uint_t
ngx_tailgate_scheme_is(ngx_str_t *value, const char *scheme, size_t len)
{
    return value->len > len
           && (ngx_memcmp(value->data, scheme, len) == 0
               || ngx_strncasecmp(value->data, (u_char *) scheme, len) == 0);
}


/*
 * "Authorization: Bearer KEY", "Authorization: DPoP TOKEN" or "X-Api-Key:
 * KEY".  The headers are emptied once read, so that the client's key
 * cannot travel further: not to a provider, not into a log through
 * $http_authorization.
 */

static ngx_int_t
ngx_tailgate_credential(ngx_http_request_t *r, ngx_str_t *credential,
    ngx_uint_t *bearer, ngx_uint_t *dpop)
{
    u_char           *p, *last;
    size_t            scheme;
    ngx_table_elt_t  *h, *api_key;

    credential->len = 0;
    *bearer = 0;
    *dpop = 0;

    h = r->headers_in.authorization;
    api_key = ngx_tailgate_find_header(&r->headers_in.headers,
                                       &ngx_tailgate_x_api_key);

    scheme = 0;

    if (h && ngx_tailgate_scheme_is(&h->value, "Bearer ",
                                    sizeof("Bearer ") - 1))
    {
        scheme = sizeof("Bearer ") - 1;

    } else if (h && ngx_tailgate_scheme_is(&h->value, "DPoP ",
                                           sizeof("DPoP ") - 1))
    {
        scheme = sizeof("DPoP ") - 1;
        *dpop = 1;
    }

    if (scheme) {
        p = h->value.data + scheme;
        last = h->value.data + h->value.len;

        while (p < last && *p == ' ') {
            p++;
        }

        while (last > p && last[-1] == ' ') {
            last--;
        }

        credential->data = p;
        credential->len = last - p;
        *bearer = 1;
    }

    if (credential->len == 0 && api_key && api_key->value.len) {
        *credential = api_key->value;
        *bearer = 0;
        *dpop = 0;
    }

    if (h) {
        h->value.len = 0;
    }

    if (api_key) {
        api_key->value.len = 0;
    }

    return credential->len ? NGX_OK : NGX_DECLINED;
}


/* three base64url parts: API keys never have two dots */

static ngx_uint_t
ngx_tailgate_looks_like_jwt(ngx_str_t *token)
{
    u_char  *p, *end;

    /* exactly two dots; memchr() looks at many bytes at a time */

    end = token->data + token->len;

    p = memchr(token->data, '.', token->len);
    if (p == NULL) {
        return 0;
    }

    p = memchr(p + 1, '.', end - p - 1);
    if (p == NULL) {
        return 0;
    }

    return memchr(p + 1, '.', end - p - 1) == NULL;
}


/* in constant time: every byte is looked at, whatever differs */

static ngx_inline ngx_uint_t
ngx_tailgate_equal(u_char *a, u_char *b, size_t len)
{
    size_t    i;
    uint64_t  x, y, diff;

    diff = 0;

    for (i = 0; i < len; i += sizeof(uint64_t)) {
        ngx_memcpy(&x, a + i, sizeof(uint64_t));
        ngx_memcpy(&y, b + i, sizeof(uint64_t));
        diff |= x ^ y;
    }

    return diff == 0;
}


static ngx_int_t
ngx_tailgate_hex_digest(u_char *hex, size_t len, u_char *digest)
{
    ngx_int_t   hi, lo;
    ngx_uint_t  i;

    if (len != 2 * NGX_TAILGATE_DIGEST_LEN) {
        return NGX_ERROR;
    }

    for (i = 0; i < NGX_TAILGATE_DIGEST_LEN; i++) {
        hi = ngx_hextoi(&hex[2 * i], 1);
        lo = ngx_hextoi(&hex[2 * i + 1], 1);

        if (hi == NGX_ERROR || lo == NGX_ERROR) {
            return NGX_ERROR;
        }

        digest[i] = (u_char) (hi << 4 | lo);
    }

    return NGX_OK;
}
