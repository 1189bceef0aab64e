
/*
 * Copyright (C) The Tailgate authors
 *
 * Client authentication with static API keys.  The key file holds only
 * SHA-256 digests of the keys; a request's key is hashed and looked up,
 * and the stored digest is compared in constant time.
 *
 * Key file lines:  <64 hex digits: sha256 of the key> <client id>
 * Blank lines and lines starting with '#' are ignored.
 */


#include "ngx_http_tailgate_module.h"

#include <openssl/evp.h>


#define NGX_TAILGATE_MAX_KEY_FILE     (16 * 1024 * 1024)
#define NGX_TAILGATE_MAX_CLIENT_ID    128
#define NGX_TAILGATE_MAX_CREDENTIAL   4096


static char *ngx_tailgate_keys_parse(ngx_conf_t *cf, ngx_tailgate_keys_t *keys,
    u_char *p, u_char *end);
static ngx_int_t ngx_tailgate_keys_insert(ngx_tailgate_keys_t *keys,
    u_char *digest, ngx_str_t *client);
static ngx_int_t ngx_tailgate_hex_digest(u_char *hex, size_t len,
    u_char *digest);
static ngx_inline ngx_uint_t ngx_tailgate_digest_equal(u_char *a, u_char *b);
static ngx_table_elt_t *ngx_tailgate_find_header(ngx_http_request_t *r,
    ngx_str_t *lowcase_name);
static ngx_int_t ngx_tailgate_credential(ngx_http_request_t *r,
    ngx_str_t *credential);


static ngx_str_t  ngx_tailgate_x_api_key = ngx_string("x-api-key");

/*
 * Fetched once per worker: OpenSSL 3's SHA256() looks the algorithm up,
 * under a lock, and allocates a context on every call - three times the
 * cost of the hash itself for a key.
 */
static EVP_MD      *ngx_tailgate_sha256;
static EVP_MD_CTX  *ngx_tailgate_sha256_ctx;


char *
ngx_tailgate_keys_load(ngx_conf_t *cf, ngx_str_t *file,
    ngx_tailgate_keys_t **keysp)
{
    char                           *rv;
    size_t                          size;
    ssize_t                         n;
    ngx_fd_t                        fd;
    ngx_uint_t                      i;
    ngx_file_info_t                 fi;
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

    keys->file = *file;

    fd = ngx_open_file(file->data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           ngx_open_file_n " \"%V\" failed", file);
        return NGX_CONF_ERROR;
    }

    rv = NGX_CONF_ERROR;

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           ngx_fd_info_n " \"%V\" failed", file);
        goto done;
    }

    size = (size_t) ngx_file_size(&fi);

    if (size > NGX_TAILGATE_MAX_KEY_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "key file \"%V\" is larger than %d bytes",
                           file, NGX_TAILGATE_MAX_KEY_FILE);
        goto done;
    }

    {
        u_char  *buf;

        buf = ngx_pnalloc(cf->temp_pool, size + 1);
        if (buf == NULL) {
            goto done;
        }

        n = ngx_read_fd(fd, buf, size);

        if (n == -1 || (size_t) n != size) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                               ngx_read_fd_n " \"%V\" failed", file);
            goto done;
        }

        rv = ngx_tailgate_keys_parse(cf, keys, buf, buf + size);
    }

done:

    if (ngx_close_file(fd) == NGX_FILE_ERROR) {
        ngx_conf_log_error(NGX_LOG_ALERT, cf, ngx_errno,
                           ngx_close_file_n " \"%V\" failed", file);
    }

    if (rv != NGX_CONF_OK) {
        return rv;
    }

    loaded = ngx_array_push(&tmcf->keys);
    if (loaded == NULL) {
        return NGX_CONF_ERROR;
    }

    *loaded = keys;
    *keysp = keys;

    return NGX_CONF_OK;
}


static char *
ngx_tailgate_keys_parse(ngx_conf_t *cf, ngx_tailgate_keys_t *keys, u_char *p,
    u_char *end)
{
    u_char      *eol, *field, *last;
    ngx_str_t    client;
    ngx_uint_t   line, lines, size;
    u_char       digest[NGX_TAILGATE_DIGEST_LEN];

    /* size the table for at most half full: count the lines first */

    lines = 0;

    for (field = p; field < end; field++) {
        if (*field == '\n') {
            lines++;
        }
    }

    for (size = 8; size < 2 * (lines + 1); size <<= 1) { /* void */ }

    keys->slots = ngx_pcalloc(cf->pool, size * sizeof(ngx_tailgate_key_t));
    if (keys->slots == NULL) {
        return NGX_CONF_ERROR;
    }

    keys->mask = size - 1;

    for (line = 1; p < end; line++, p = eol + 1) {

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
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "key file \"%V\", line %ui: expected the "
                               "SHA-256 of a key as 64 hex digits",
                               &keys->file, line);
            return NGX_CONF_ERROR;
        }

        while (p < last && (*p == ' ' || *p == '\t')) {
            p++;
        }

        client.data = p;

        while (p < last && *p != ' ' && *p != '\t') {
            if (!(ngx_tailgate_is_name_char(*p) || *p == '@' || *p == ':'))
            {
                break;
            }

            p++;
        }

        client.len = p - client.data;

        if (client.len == 0 || client.len > NGX_TAILGATE_MAX_CLIENT_ID
            || p != last)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "key file \"%V\", line %ui: expected a client "
                               "id of letters, digits and \"_-.@:\" "
                               "after the digest", &keys->file, line);
            return NGX_CONF_ERROR;
        }

        client.data = ngx_pstrdup(cf->pool, &client);
        if (client.data == NULL) {
            return NGX_CONF_ERROR;
        }

        if (ngx_tailgate_keys_insert(keys, digest, &client) != NGX_OK) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "key file \"%V\", line %ui: the same key "
                               "digest appears twice", &keys->file, line);
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


/* the digest is uniformly distributed already: its first bytes index */

static ngx_int_t
ngx_tailgate_keys_insert(ngx_tailgate_keys_t *keys, u_char *digest,
    ngx_str_t *client)
{
    ngx_uint_t           i;
    ngx_tailgate_key_t  *slot;

    i = ((ngx_uint_t) digest[0] << 8 | digest[1]) & keys->mask;

    for ( ;; ) {
        slot = &keys->slots[i];

        if (slot->client.len == 0) {
            break;
        }

        if (ngx_memcmp(slot->digest, digest, NGX_TAILGATE_DIGEST_LEN) == 0) {
            return NGX_DECLINED;
        }

        i = (i + 1) & keys->mask;
    }

    ngx_memcpy(slot->digest, digest, NGX_TAILGATE_DIGEST_LEN);
    slot->client = *client;
    keys->count++;

    return NGX_OK;
}


ngx_int_t
ngx_tailgate_auth_init_worker(ngx_cycle_t *cycle)
{
#if (OPENSSL_VERSION_NUMBER >= 0x30000000L)
    ngx_tailgate_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
#else
    ngx_tailgate_sha256 = (EVP_MD *) EVP_sha256();
#endif

    ngx_tailgate_sha256_ctx = EVP_MD_CTX_new();

    if (ngx_tailgate_sha256 == NULL || ngx_tailgate_sha256_ctx == NULL) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "tailgate: SHA-256 is not available from OpenSSL");
        return NGX_ERROR;
    }

    return NGX_OK;
}


void
ngx_tailgate_auth_exit_worker(void)
{
    EVP_MD_CTX_free(ngx_tailgate_sha256_ctx);
    ngx_tailgate_sha256_ctx = NULL;

#if (OPENSSL_VERSION_NUMBER >= 0x30000000L)
    EVP_MD_free(ngx_tailgate_sha256);
#endif
    ngx_tailgate_sha256 = NULL;
}


/*
 * NGX_OK: ctx->client is set; NGX_DECLINED: no credential was sent;
 * NGX_ERROR: the credential is not a known key.
 */

ngx_int_t
ngx_tailgate_authenticate(ngx_http_request_t *r, ngx_http_tailgate_ctx_t *ctx,
    ngx_tailgate_keys_t *keys)
{
    ngx_uint_t           i;
    ngx_str_t            credential;
    unsigned int         len;
    ngx_tailgate_key_t  *slot;
    u_char               digest[EVP_MAX_MD_SIZE];

    if (ngx_tailgate_credential(r, &credential) != NGX_OK) {
        return NGX_DECLINED;
    }

    if (keys == NULL || keys->count == 0
        || credential.len > NGX_TAILGATE_MAX_CREDENTIAL)
    {
        return NGX_ERROR;
    }

    if (EVP_DigestInit_ex(ngx_tailgate_sha256_ctx, ngx_tailgate_sha256, NULL)
        != 1
        || EVP_DigestUpdate(ngx_tailgate_sha256_ctx, credential.data,
                            credential.len) != 1
        || EVP_DigestFinal_ex(ngx_tailgate_sha256_ctx, digest, &len) != 1
        || len != NGX_TAILGATE_DIGEST_LEN)
    {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "tailgate: SHA-256 failed");
        return NGX_ERROR;
    }

    i = ((ngx_uint_t) digest[0] << 8 | digest[1]) & keys->mask;

    for ( ;; ) {
        slot = &keys->slots[i];

        if (slot->client.len == 0) {
            return NGX_ERROR;
        }

        if (ngx_tailgate_digest_equal(slot->digest, digest)) {
            ctx->client = slot->client;
            return NGX_OK;
        }

        i = (i + 1) & keys->mask;
    }
}


/*
 * "Authorization: Bearer KEY" or "X-Api-Key: KEY".  Both headers are
 * emptied once read, so that the client's key cannot travel further: not
 * to a provider, not into a log through $http_authorization.
 */

static ngx_int_t
ngx_tailgate_credential(ngx_http_request_t *r, ngx_str_t *credential)
{
    u_char           *p, *last;
    ngx_table_elt_t  *h, *api_key;

    credential->len = 0;

    h = r->headers_in.authorization;
    api_key = ngx_tailgate_find_header(r, &ngx_tailgate_x_api_key);

    if (h && h->value.len > sizeof("Bearer ") - 1
        && ngx_strncasecmp(h->value.data, (u_char *) "Bearer ",
                           sizeof("Bearer ") - 1) == 0)
    {
        p = h->value.data + sizeof("Bearer ") - 1;
        last = h->value.data + h->value.len;

        while (p < last && *p == ' ') {
            p++;
        }

        while (last > p && last[-1] == ' ') {
            last--;
        }

        credential->data = p;
        credential->len = last - p;
    }

    if (credential->len == 0 && api_key && api_key->value.len) {
        *credential = api_key->value;
    }

    if (h) {
        h->value.len = 0;
    }

    if (api_key) {
        api_key->value.len = 0;
    }

    return credential->len ? NGX_OK : NGX_DECLINED;
}


static ngx_table_elt_t *
ngx_tailgate_find_header(ngx_http_request_t *r, ngx_str_t *lowcase_name)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return NULL;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == lowcase_name->len
            && ngx_strncmp(h[i].lowcase_key, lowcase_name->data,
                           lowcase_name->len) == 0)
        {
            return &h[i];
        }
    }
}


/* in constant time: every byte is looked at, whatever differs */

static ngx_inline ngx_uint_t
ngx_tailgate_digest_equal(u_char *a, u_char *b)
{
    uint64_t    x, y, diff;
    ngx_uint_t  i;

    diff = 0;

    for (i = 0; i < NGX_TAILGATE_DIGEST_LEN; i += sizeof(uint64_t)) {
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
