/*
 * "jwks": { "NAME": { "url" or "issuer", "file", "refresh_ms",
 * "min_refresh_ms", "timeout_ms", "max_bytes", "insecure_http" }, ... }:
 * the key sets of identity providers that policyd keeps for the workers
 * (docs/policy.md, "Token keys from a JWKS").  Absent: none.
 */

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "jwks_cache.h"
#include "policy_json.h"


static void tg_load_jwks_set(tg_loader *ld, tg_jwks_conf *jc,
    const char *name, const cJSON *obj, const char *path);
static void tg_load_jwks_file(tg_loader *ld, tg_jwks_conf *jc,
    const char *s, const char *path);


static const char *const  tg_jwks_keys[] = {
    "url", "issuer", "file", "refresh_ms", "min_refresh_ms", "timeout_ms",
    "max_bytes", "insecure_http", NULL
};


void
tg_load_jwks(tg_loader *ld, const cJSON *root)
{
    char           path[TG_PATH_LEN], file_path[TG_PATH_LEN];
    size_t         i, j, n, len;
    const cJSON   *obj, *item;
    tg_jwks_conf  *sets;

    obj = tg_member(root, "jwks");

    if (obj == NULL) {
        return;
    }

    if (!cJSON_IsObject(obj)) {
        tg_load_error(ld, "jwks", "expected an object of named key sets");
        return;
    }

    tg_check_keys(ld, obj, "jwks", NULL);

    n = (size_t) cJSON_GetArraySize(obj);

    if (n == 0) {
        return;
    }

    sets = tg_arena_alloc(&ld->p->arena, n * sizeof(tg_jwks_conf));
    if (sets == NULL) {
        ld->oom = true;
        return;
    }

    memset(sets, 0, n * sizeof(tg_jwks_conf));

    ld->p->jwks = sets;

    i = 0;

    cJSON_ArrayForEach(item, obj) {
        tg_key_path(path, "jwks", item->string);

        len = strlen(item->string);

        for (j = 0; j < len && tg_is_name_char((unsigned char)
                                                item->string[j]); j++)
        {
            /* void */
        }

        if (len == 0 || len > TG_JWKS_NAME_MAX || j < len) {
            tg_load_error(ld, path, "expected a name of 1 to %d letters, "
                          "digits, '-', '_' or '.'", TG_JWKS_NAME_MAX);
            continue;
        }

        if (!cJSON_IsObject(item)) {
            tg_load_error(ld, path, "expected an object");
            continue;
        }

        tg_load_jwks_set(ld, &sets[i], item->string, item, path);

        /* a name given twice was reported: the first one is kept */

        for (j = 0; j < i; j++) {
            if (strcmp(sets[j].name, item->string) == 0) {
                break;
            }
        }

        if (j < i) {
            continue;
        }

        for (j = 0; j < i; j++) {
            if (sets[i].file != NULL && sets[j].file != NULL
                && strcmp(sets[j].file, sets[i].file) == 0)
            {
                tg_key_path(file_path, path, "file");
                tg_load_error(ld, file_path, "expected a file of its own "
                              "(jwks.%s writes it too)", sets[j].name);
            }
        }

        i++;
    }

    ld->p->njwks = i;
}


static void
tg_load_jwks_set(tg_loader *ld, tg_jwks_conf *jc, const char *name,
    const cJSON *obj, const char *path)
{
    int          has_url, has_issuer;
    char         kp[TG_PATH_LEN], why[256], *d;
    size_t       len;
    const char  *url, *issuer, *file;

    jc->name = tg_copy(ld, name);
    jc->refresh_ms = TG_JWKS_REFRESH_MS_DEFAULT;
    jc->min_refresh_ms = TG_JWKS_MIN_REFRESH_MS_DEFAULT;
    jc->timeout_ms = TG_JWKS_TIMEOUT_MS_DEFAULT;
    jc->max_bytes = TG_JWKS_MAX_BYTES_DEFAULT;

    tg_check_keys(ld, obj, path, tg_jwks_keys);

    (void) tg_member_bool(ld, obj, "insecure_http", path, &jc->insecure_http);
    (void) tg_member_uint(ld, obj, "refresh_ms", path, 1000,
                          TG_JWKS_REFRESH_MS_MAX, &jc->refresh_ms);
    (void) tg_member_uint(ld, obj, "min_refresh_ms", path,
                          TG_JWKS_MIN_REFRESH_MS_MIN, TG_JWKS_REFRESH_MS_MAX,
                          &jc->min_refresh_ms);
    (void) tg_member_uint(ld, obj, "timeout_ms", path, 1,
                          TG_JWKS_TIMEOUT_MS_MAX, &jc->timeout_ms);
    (void) tg_member_uint(ld, obj, "max_bytes", path, TG_JWKS_MAX_BYTES_MIN,
                          TG_JWKS_MAX_BYTES_MAX, &jc->max_bytes);

    if (jc->min_refresh_ms > jc->refresh_ms) {
        tg_key_path(kp, path, "min_refresh_ms");
        tg_load_error(ld, kp, "expected at most refresh_ms (%u)",
                      (unsigned) jc->refresh_ms);
    }

    has_url = tg_member_string(ld, obj, "url", path, false, &url);
    has_issuer = tg_member_string(ld, obj, "issuer", path, false, &issuer);

    if (has_url == 1 && has_issuer == 1) {
        tg_load_error(ld, path, "expected \"url\" or \"issuer\", not both");

    } else if (has_url == 0 && has_issuer == 0) {
        tg_load_error(ld, path, "expected \"url\" (the key set's) or "
                      "\"issuer\" (to find it by OpenID discovery)");

    } else if (has_url == 1) {
        tg_key_path(kp, path, "url");

        if (tg_jwks_url_check(url, jc->insecure_http, why, sizeof(why)) != 0)
        {
            tg_load_error(ld, kp, "%s", why);
        } else {
            jc->url = tg_copy(ld, url);
        }

    } else if (has_issuer == 1) {
        tg_key_path(kp, path, "issuer");

        len = strlen(issuer);

        if (tg_jwks_url_check(issuer, jc->insecure_http, why, sizeof(why))
            != 0)
        {
            tg_load_error(ld, kp, "%s", why);

        } else if (strchr(issuer, '?') != NULL || strchr(issuer, '#') != NULL
                   || len + sizeof(TG_DISCOVERY_PATH) > TG_JWKS_URL_MAX)
        {
            tg_load_error(ld, kp, "expected an issuer URL without query or "
                          "fragment");

        } else {
            jc->issuer = tg_copy(ld, issuer);

            /* OpenID Discovery 1.0, 4: the issuer's path, then the name */

            d = tg_arena_alloc(&ld->p->arena,
                               len + sizeof(TG_DISCOVERY_PATH));
            if (d == NULL) {
                ld->oom = true;
                return;
            }

            memcpy(d, issuer, len);

            if (len && d[len - 1] == '/') {
                len--;
            }

            memcpy(d + len, TG_DISCOVERY_PATH, sizeof(TG_DISCOVERY_PATH));
            jc->discovery_url = d;
        }
    }

    if (tg_member_string(ld, obj, "file", path, true, &file) == 1) {
        tg_load_jwks_file(ld, jc, file, path);
    }
}


/* an absolute path in a directory that exists: policyd writes it */

static void
tg_load_jwks_file(tg_loader *ld, tg_jwks_conf *jc, const char *s,
    const char *path)
{
    char         kp[TG_PATH_LEN], dir[TG_JWKS_FILE_MAX + 1];
    size_t       len;
    const char  *slash;
    struct stat  st;

    tg_key_path(kp, path, "file");

    len = strlen(s);

    if (s[0] != '/' || len > TG_JWKS_FILE_MAX || s[len - 1] == '/'
        || tg_has_control(s))
    {
        tg_load_error(ld, kp, "expected an absolute file path of at most %d "
                      "bytes", TG_JWKS_FILE_MAX);
        return;
    }

    slash = strrchr(s, '/');
    len = (size_t) (slash - s);

    memcpy(dir, s, len);
    dir[len ? len : 1] = '\0';

    if (len == 0) {
        dir[0] = '/';
    }

    errno = 0;

    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        tg_load_error(ld, kp, "expected a file in a directory that exists "
                      "(%s: %s)", dir,
                      errno ? strerror(errno) : "not a directory");
        return;
    }

    jc->file = tg_copy(ld, s);
}
