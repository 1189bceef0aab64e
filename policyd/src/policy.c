/*
 * The policy loader: reads the file, strips comments, parses it with cJSON
 * and checks every key against docs/policy.md.  It collects every problem
 * with its key path and goes on, so that one run of "policyd -t" shows them
 * all.  It never prints and never exits.
 */

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "policy.h"
#include "tailgate_protocol.h"


#define TG_POLICY_FILE_MAX  (64 * 1024 * 1024)
#define TG_PATH_LEN         1024


typedef struct {
    tg_policy             *p;
    tg_errors             *errs;
    const tg_policy_opts  *opts;
    size_t                 errors_before;
    bool                   oom;
} tg_loader;


static void tg_load_error(tg_loader *ld, const char *path, const char *fmt,
    ...) __attribute__((format(printf, 3, 4)));
static void tg_key_path(char *buf, const char *parent, const char *key);
static void tg_index_path(char *buf, const char *parent, size_t i);
static const cJSON *tg_member(const cJSON *obj, const char *key);
static void tg_check_keys(tg_loader *ld, const cJSON *obj, const char *path,
    const char *const *known);
static int tg_member_string(tg_loader *ld, const cJSON *obj, const char *key,
    const char *path, bool required, const char **out);
static int tg_member_uint(tg_loader *ld, const cJSON *obj, const char *key,
    const char *path, uint32_t min, uint32_t max, uint32_t *out);
static int tg_member_bool(tg_loader *ld, const cJSON *obj, const char *key,
    const char *path, bool *out);
static char *tg_copy(tg_loader *ld, const char *s);
static void tg_load_top(tg_loader *ld, const cJSON *root);
static void tg_load_listen(tg_loader *ld, const cJSON *root, const char *key,
    const char *override, tg_listen *l);
static void tg_load_providers(tg_loader *ld, const cJSON *root);
static void tg_load_provider(tg_loader *ld, tg_provider *pr,
    const cJSON *item, const char *path);
static void tg_load_endpoints(tg_loader *ld, tg_provider *pr,
    const cJSON *obj, const char *path);
static void tg_load_models(tg_loader *ld, tg_provider *pr, const cJSON *obj,
    const char *path);
static void tg_load_api_key(tg_loader *ld, tg_provider *pr, const char *value,
    const char *path);
static void tg_load_routes(tg_loader *ld, const cJSON *root);
static void tg_load_route(tg_loader *ld, tg_route *rt, const cJSON *item,
    const char *path);
static void tg_load_route_tenants(tg_loader *ld, tg_route *rt,
    const cJSON *item, const char *path);
static void tg_load_route_fallback(tg_loader *ld, tg_route *rt,
    const cJSON *item, const char *path);
static void tg_load_route_queue(tg_loader *ld, tg_route *rt,
    const cJSON *item, const char *path);
static void tg_load_health(tg_loader *ld, tg_provider *pr, const cJSON *item,
    const char *path);
static void tg_load_step(tg_loader *ld, tg_route *rt, tg_step *st,
    const cJSON *item, const char *path);
static void tg_load_adjust(tg_loader *ld, tg_step *st, const cJSON *item,
    const char *path);
static uint32_t tg_hash(const char *s, size_t len);
static uint32_t *tg_table_new(tg_loader *ld, size_t n, size_t *mask);
static int tg_table_insert(uint32_t *table, size_t mask, const char *name,
    size_t len, uint32_t value, const char *(*name_of)(const tg_policy *,
    uint32_t, size_t *), const tg_policy *p);
static const char *tg_provider_name_of(const tg_policy *p, uint32_t i,
    size_t *len);
static const char *tg_route_name_of(const tg_policy *p, uint32_t i,
    size_t *len);
static bool tg_is_name_char(int c);
static bool tg_valid_host(const char *s);
static bool tg_valid_base_path(const char *s);
static bool tg_has_control(const char *s);
static bool tg_valid_url(const char *s);


#define TG_X(id, name, path)  name,
static const char *const  tg_endpoint_names[TG_EP_COUNT] = {
    TG_ENDPOINTS(TG_X)
};
#undef TG_X

#define TG_X(id, name, path)  "/" path,
static const char *const  tg_endpoint_suffixes[TG_EP_COUNT] = {
    TG_ENDPOINTS(TG_X)
};
#undef TG_X

#define TG_X(id, name)  name,
static const char *const  tg_zone_names[TG_ZONE_COUNT] = { TG_ZONES(TG_X) };
#undef TG_X

static const struct {
    unsigned     bit;
    const char  *name;
} tg_fallback_classes[] = {
#define TG_X(bit, name)  { bit, name },
    TG_FALLBACK_CLASSES(TG_X)
#undef TG_X
};

/* each name as ", \"name\"", less the first ", " */
#define TG_X(id, name, ...)  ", \"" name "\""
const char *const  tg_endpoint_list = TG_ENDPOINTS(TG_X) + 2;
const char *const  tg_zone_list = TG_ZONES(TG_X) + 2;
#undef TG_X
#define TG_X(bit, name)  ", \"" name "\""
const char *const  tg_fallback_class_list = TG_FALLBACK_CLASSES(TG_X) + 2;
#undef TG_X

static const char *const  tg_top_keys[] = {
    "listen", "admin_listen", "max_frame", "decision_cache_ms", "log_level",
    "providers", "routes", NULL
};

static const char *const  tg_listen_keys[] = {
    "path", "mode", "group", NULL
};

static const char *const  tg_provider_keys[] = {
    "upstream", "scheme", "host", "base_path", "api_key", "zone",
    "endpoints", "models", "region", "context_tokens", "tools", "streaming",
    "max_concurrency", "health", NULL
};

static const char *const  tg_health_keys[] = {
    "url", "kind", "slots_url", "interval_ms", "timeout_ms", "down_after",
    "up_after", "cooldown_ms", "stuck_after_ms", "lease_ttl_ms", "send_key",
    NULL
};

static const char *const  tg_queue_keys[] = {
    "max_length", "max_wait_ms", NULL
};

static const char *const  tg_route_keys[] = {
    "steps", "tenants", "fallback", "queue", NULL
};

static const char *const  tg_fallback_keys[] = {
    "on", "outcomes", "max_attempts", NULL
};

static const char *const  tg_step_keys[] = {
    "provider", "model", "adjust", NULL
};

static const char *const  tg_adjust_keys[] = { "when", "drop", "set", NULL };

const char *
tg_endpoint_name(tg_endpoint ep)
{
    return ep < TG_EP_COUNT ? tg_endpoint_names[ep] : "unknown";
}


const char *
tg_endpoint_suffix(tg_endpoint ep)
{
    return ep < TG_EP_COUNT ? tg_endpoint_suffixes[ep] : "";
}


tg_endpoint
tg_endpoint_parse(const char *s, size_t len)
{
    int  i;

    for (i = 0; i < TG_EP_COUNT; i++) {
        if (strlen(tg_endpoint_names[i]) == len
            && memcmp(tg_endpoint_names[i], s, len) == 0)
        {
            return (tg_endpoint) i;
        }
    }

    return TG_EP_NONE;
}


const char *
tg_zone_name(tg_zone zone)
{
    return (unsigned) zone < TG_ZONE_COUNT ? tg_zone_names[zone] : "unknown";
}


tg_zone
tg_zone_parse(const char *s)
{
    int  i;

    for (i = 0; i < TG_ZONE_COUNT; i++) {
        if (strcmp(s, tg_zone_names[i]) == 0) {
            break;
        }
    }

    return (tg_zone) i;
}


const char *
tg_fallback_class_name(unsigned bit)
{
    size_t  i;

    for (i = 0; i < sizeof(tg_fallback_classes) / sizeof(tg_fallback_classes[0]);
         i++)
    {
        if (tg_fallback_classes[i].bit == bit) {
            return tg_fallback_classes[i].name;
        }
    }

    return NULL;
}


unsigned
tg_fallback_class_parse(const char *s)
{
    size_t  i;

    for (i = 0; i < sizeof(tg_fallback_classes) / sizeof(tg_fallback_classes[0]);
         i++)
    {
        if (strcmp(s, tg_fallback_classes[i].name) == 0) {
            return tg_fallback_classes[i].bit;
        }
    }

    return 0;
}


int
tg_json_strip_comments(char *text, size_t len, size_t *err_off)
{
    size_t  i, start;

    for (i = 0; i < len; i++) {

        if (text[i] == '"') {
            /* a string: skip it, escapes included */
            for (i++; i < len && text[i] != '"'; i++) {
                if (text[i] == '\\' && i + 1 < len) {
                    i++;
                }
            }
            continue;
        }

        if (text[i] != '/' || i + 1 >= len) {
            continue;
        }

        if (text[i + 1] == '/') {
            for ( /* void */ ; i < len && text[i] != '\n'; i++) {
                text[i] = ' ';
            }
            continue;
        }

        if (text[i + 1] == '*') {
            start = i;
            text[i++] = ' ';
            text[i++] = ' ';

            for ( ;; ) {
                if (i + 1 >= len) {
                    *err_off = start;
                    return -1;
                }

                if (text[i] == '*' && text[i + 1] == '/') {
                    text[i++] = ' ';
                    text[i] = ' ';
                    break;
                }

                if (text[i] != '\n') {
                    text[i] = ' ';
                }

                i++;
            }
        }
    }

    return 0;
}


tg_policy *
tg_policy_load(const char *file, const tg_policy_opts *opts, tg_errors *errs)
{
    int          fd;
    char        *text, *p;
    size_t       len, cap;
    ssize_t      n;
    tg_policy   *policy;
    struct stat  st;

    fd = open(file, O_RDONLY | O_CLOEXEC);
    if (fd == -1) {
        tg_errors_add(errs, NULL, "cannot open: %s", strerror(errno));
        return NULL;
    }

    if (fstat(fd, &st) == -1 || S_ISDIR(st.st_mode)) {
        tg_errors_add(errs, NULL, "cannot read: %s",
                      S_ISDIR(st.st_mode) ? "is a directory"
                                          : strerror(errno));
        close(fd);
        return NULL;
    }

    cap = 65536;
    len = 0;
    text = malloc(cap);
    if (text == NULL) {
        tg_errors_add(errs, NULL, "out of memory");
        close(fd);
        return NULL;
    }

    for ( ;; ) {
        if (len == cap) {
            if (cap >= TG_POLICY_FILE_MAX) {
                tg_errors_add(errs, NULL, "file is larger than %d bytes",
                              TG_POLICY_FILE_MAX);
                free(text);
                close(fd);
                return NULL;
            }

            p = realloc(text, cap * 2);
            if (p == NULL) {
                tg_errors_add(errs, NULL, "out of memory");
                free(text);
                close(fd);
                return NULL;
            }

            text = p;
            cap *= 2;
        }

        n = read(fd, text + len, cap - len);

        if (n == -1) {
            if (errno == EINTR) {
                continue;
            }

            tg_errors_add(errs, NULL, "cannot read: %s", strerror(errno));
            free(text);
            close(fd);
            return NULL;
        }

        if (n == 0) {
            break;
        }

        len += (size_t) n;
    }

    close(fd);

    policy = tg_policy_parse(file, text, len, opts, errs);

    free(text);

    return policy;
}


tg_policy *
tg_policy_parse(const char *file, const char *text, size_t len,
    const tg_policy_opts *opts, tg_errors *errs)
{
    bool                  unterminated;
    char                 *buf, where[64];
    size_t                off, i, line, col;
    cJSON                *root;
    tg_loader             ld;
    tg_policy            *p;
    const char           *end;
    static tg_policy_opts  no_opts;

    if (opts == NULL) {
        opts = &no_opts;
    }

    if (memchr(text, '\0', len) != NULL) {
        tg_errors_add(errs, NULL, "contains a NUL byte; expected JSON text");
        return NULL;
    }

    buf = malloc(len + 1);
    if (buf == NULL) {
        tg_errors_add(errs, NULL, "out of memory");
        return NULL;
    }

    memcpy(buf, text, len);
    buf[len] = '\0';

    unterminated = tg_json_strip_comments(buf, len, &off) != 0;

    if (unterminated) {
        end = buf + off;
        root = NULL;

    } else {
        end = NULL;
        root = cJSON_ParseWithOpts(buf, &end, 1);
        if (root == NULL && end == NULL) {
            end = cJSON_GetErrorPtr();
        }
    }

    if (root == NULL) {
        off = (end != NULL && end >= buf && end <= buf + len)
              ? (size_t) (end - buf) : len;

        line = 1;
        col = 1;
        for (i = 0; i < off; i++) {
            if (buf[i] == '\n') {
                line++;
                col = 1;
            } else {
                col++;
            }
        }

        snprintf(where, sizeof(where), "line %zu, column %zu", line, col);

        if (unterminated) {
            tg_errors_add(errs, where, "unterminated /* comment");

        } else if (off >= len) {
            tg_errors_add(errs, where,
                          "invalid JSON: unexpected end of file");
        } else {
            tg_errors_add(errs, where, "invalid JSON");
        }

        free(buf);
        return NULL;
    }

    free(buf);

    p = calloc(1, sizeof(tg_policy));
    if (p == NULL) {
        cJSON_Delete(root);
        tg_errors_add(errs, NULL, "out of memory");
        return NULL;
    }

    tg_arena_init(&p->arena);

    ld.p = p;
    ld.errs = errs;
    ld.opts = opts;
    ld.errors_before = errs->count;
    ld.oom = false;

    p->file = tg_copy(&ld, file != NULL ? file : "");
    p->max_frame = TG_MAX_FRAME_DEFAULT;
    p->decision_cache_ms = TG_DECISION_CACHE_MS_DEFAULT;
    p->log_level = TG_LOG_INFO;
    p->loaded_at = opts->now ? opts->now : time(NULL);

    if (!cJSON_IsObject(root)) {
        tg_errors_add(errs, NULL, "expected a JSON object at the top level");

    } else {
        tg_load_top(&ld, root);
    }

    cJSON_Delete(root);

    if (ld.oom) {
        tg_errors_add(errs, NULL, "out of memory");
    }

    if (errs->count > ld.errors_before || ld.oom || errs->oom) {
        tg_policy_free(p);
        return NULL;
    }

    return p;
}


void
tg_policy_free(tg_policy *policy)
{
    size_t  i;
    char   *auth;

    if (policy == NULL) {
        return;
    }

    for (i = 0; i < policy->nproviders; i++) {
        auth = (char *) policy->providers[i].authorization;
        if (auth != NULL) {
            explicit_bzero(auth, strlen(auth));
        }
    }

    tg_arena_free(&policy->arena);
    free(policy);
}


const tg_route *
tg_policy_route(const tg_policy *policy, const char *name, size_t len)
{
    size_t       i;
    uint32_t     v;
    const tg_route  *rt;

    if (policy->route_table == NULL) {
        return NULL;
    }

    for (i = tg_hash(name, len) & policy->route_mask;
         (v = policy->route_table[i]) != 0;
         i = (i + 1) & policy->route_mask)
    {
        rt = &policy->routes[v - 1];
        if (rt->name_len == len && memcmp(rt->name, name, len) == 0) {
            return rt;
        }
    }

    return NULL;
}


const tg_provider *
tg_policy_provider(const tg_policy *policy, const char *name, size_t len)
{
    size_t             i;
    uint32_t           v;
    const tg_provider  *pr;

    if (policy->provider_table == NULL) {
        return NULL;
    }

    for (i = tg_hash(name, len) & policy->provider_mask;
         (v = policy->provider_table[i]) != 0;
         i = (i + 1) & policy->provider_mask)
    {
        pr = &policy->providers[v - 1];
        if (pr->name_len == len && memcmp(pr->name, name, len) == 0) {
            return pr;
        }
    }

    return NULL;
}


/* loading */

static void
tg_load_error(tg_loader *ld, const char *path, const char *fmt, ...)
{
    char     msg[1024];
    va_list  ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);

    tg_errors_add(ld->errs, path, "%s", msg);
}


static void
tg_key_path(char *buf, const char *parent, const char *key)
{
    int  n;

    if (parent[0] == '\0') {
        n = snprintf(buf, TG_PATH_LEN, "%s", key);
    } else {
        n = snprintf(buf, TG_PATH_LEN, "%s.%s", parent, key);
    }

    if (n >= TG_PATH_LEN) {
        memcpy(buf + TG_PATH_LEN - 4, "...", 4);
    }
}


static void
tg_index_path(char *buf, const char *parent, size_t i)
{
    int  n;

    n = snprintf(buf, TG_PATH_LEN, "%s[%zu]", parent, i);

    if (n >= TG_PATH_LEN) {
        memcpy(buf + TG_PATH_LEN - 4, "...", 4);
    }
}


static const cJSON *
tg_member(const cJSON *obj, const char *key)
{
    const cJSON  *c;

    for (c = obj->child; c != NULL; c = c->next) {
        if (c->string != NULL && strcmp(c->string, key) == 0) {
            return c;
        }
    }

    return NULL;
}


static void
tg_check_keys(tg_loader *ld, const cJSON *obj, const char *path,
    const char *const *known)
{
    char                path_buf[TG_PATH_LEN];
    const cJSON        *c, *prev;
    const char *const  *k;

    for (c = obj->child; c != NULL; c = c->next) {
        tg_key_path(path_buf, path, c->string != NULL ? c->string : "");

        for (prev = obj->child; prev != c; prev = prev->next) {
            if (strcmp(prev->string, c->string) == 0) {
                break;
            }
        }

        if (prev != c) {
            tg_load_error(ld, path_buf, "duplicate key");
            continue;
        }

        if (known == NULL) {
            continue;
        }

        for (k = known; *k != NULL; k++) {
            if (strcmp(*k, c->string) == 0) {
                break;
            }
        }

        if (*k == NULL) {
            tg_load_error(ld, path_buf, "unknown key");
        }
    }
}


/* 1: a string in *out, 0: absent, -1: wrong type or missing (reported) */

static int
tg_member_string(tg_loader *ld, const cJSON *obj, const char *key,
    const char *path, bool required, const char **out)
{
    char          path_buf[TG_PATH_LEN];
    const cJSON  *v;

    tg_key_path(path_buf, path, key);

    v = tg_member(obj, key);

    if (v == NULL) {
        if (required) {
            tg_load_error(ld, path_buf, "missing required key");
            return -1;
        }
        return 0;
    }

    if (!cJSON_IsString(v) || v->valuestring == NULL) {
        tg_load_error(ld, path_buf, "expected a string");
        return -1;
    }

    *out = v->valuestring;

    return 1;
}


/* 1: an integer from min to max in *out, 0: absent, -1: wrong (reported) */

static int
tg_member_uint(tg_loader *ld, const cJSON *obj, const char *key,
    const char *path, uint32_t min, uint32_t max, uint32_t *out)
{
    char          path_buf[TG_PATH_LEN];
    double        d;
    const cJSON  *v;

    v = tg_member(obj, key);

    if (v == NULL) {
        return 0;
    }

    d = cJSON_IsNumber(v) ? v->valuedouble : -1;

    if (d < min || d > max || d != (double) (uint32_t) d) {
        tg_key_path(path_buf, path, key);
        tg_load_error(ld, path_buf, "expected an integer from %u to %u",
                      min, max);
        return -1;
    }

    *out = (uint32_t) d;

    return 1;
}


static int
tg_member_bool(tg_loader *ld, const cJSON *obj, const char *key,
    const char *path, bool *out)
{
    char          path_buf[TG_PATH_LEN];
    const cJSON  *v;

    v = tg_member(obj, key);

    if (v == NULL) {
        return 0;
    }

    if (!cJSON_IsBool(v)) {
        tg_key_path(path_buf, path, key);
        tg_load_error(ld, path_buf, "expected true or false");
        return -1;
    }

    *out = cJSON_IsTrue(v);

    return 1;
}


static char *
tg_copy(tg_loader *ld, const char *s)
{
    char  *p;

    p = tg_arena_strdup(&ld->p->arena, s);
    if (p == NULL) {
        ld->oom = true;
    }

    return p;
}


static void
tg_load_top(tg_loader *ld, const cJSON *root)
{
    tg_log_level   level;
    const cJSON   *v;

    tg_check_keys(ld, root, "", tg_top_keys);

    tg_load_listen(ld, root, "listen", ld->opts->listen_path, &ld->p->listen);
    tg_load_listen(ld, root, "admin_listen", ld->opts->admin_path,
                   &ld->p->admin);

    (void) tg_member_uint(ld, root, "max_frame", "", TG_MAX_FRAME_MIN,
                          TG_MAX_FRAME_LIMIT, &ld->p->max_frame);
    (void) tg_member_uint(ld, root, "decision_cache_ms", "", 0,
                          TG_DECISION_CACHE_MS_MAX,
                          &ld->p->decision_cache_ms);

    v = tg_member(root, "log_level");
    if (v != NULL) {
        if (!cJSON_IsString(v) || v->valuestring == NULL
            || tg_log_level_parse(v->valuestring, &level) != 0)
        {
            tg_load_error(ld, "log_level", "expected one of \"error\", "
                          "\"warn\", \"info\", \"debug\"");
        } else {
            ld->p->log_level = level;
        }
    }

    tg_load_providers(ld, root);
    tg_load_routes(ld, root);
}


/* "listen" and "admin_listen": path, mode, group */

static void
tg_load_listen(tg_loader *ld, const cJSON *root, const char *key,
    const char *override, tg_listen *l)
{
    char           *end, path[TG_PATH_LEN];
    const char     *s;
    unsigned long   mode;
    const cJSON    *listen;
    struct group   *gr;
    bool            required;

    required = strcmp(key, "listen") == 0;

    l->mode = required ? TG_LISTEN_MODE_DEFAULT : TG_ADMIN_MODE_DEFAULT;

    if (override != NULL) {
        if (override[0] == '\0' || strlen(override) > TG_LISTEN_PATH_MAX) {
            tg_load_error(ld, required ? "-s" : "-a",
                          "expected a socket path of 1 to %d bytes",
                          TG_LISTEN_PATH_MAX);
        } else {
            l->path = tg_copy(ld, override);
        }
    }

    listen = tg_member(root, key);

    if (listen == NULL) {
        if (override == NULL && required) {
            tg_load_error(ld, key, "missing required key (or give -s PATH)");
        }
        return;
    }

    if (!cJSON_IsObject(listen)) {
        tg_load_error(ld, key, "expected an object");
        return;
    }

    tg_check_keys(ld, listen, key, tg_listen_keys);

    if (tg_member_string(ld, listen, "path", key, override == NULL, &s)
        == 1 && override == NULL)
    {
        if (s[0] == '\0' || strlen(s) > TG_LISTEN_PATH_MAX) {
            tg_key_path(path, key, "path");
            tg_load_error(ld, path, "expected a socket path of 1 to %d bytes",
                          TG_LISTEN_PATH_MAX);
        } else {
            l->path = tg_copy(ld, s);
        }
    }

    if (tg_member_string(ld, listen, "mode", key, false, &s) == 1) {
        errno = 0;
        mode = strtoul(s, &end, 8);

        if (strlen(s) < 3 || strlen(s) > 4 || *end != '\0' || errno != 0
            || !isdigit((unsigned char) s[0]) || mode > 0777)
        {
            tg_key_path(path, key, "mode");
            tg_load_error(ld, path,
                          "expected an octal mode string such as \"0660\"");
        } else {
            l->mode = (mode_t) mode;
        }
    }

    if (tg_member_string(ld, listen, "group", key, false, &s) == 1) {
        gr = s[0] != '\0' ? getgrnam(s) : NULL;

        if (gr == NULL) {
            tg_key_path(path, key, "group");
            tg_load_error(ld, path, "no group named \"%s\"", s);
        } else {
            l->group = tg_copy(ld, s);
            l->gid = gr->gr_gid;
        }
    }
}


static void
tg_load_providers(tg_loader *ld, const cJSON *root)
{
    int            n;
    char           path[TG_PATH_LEN];
    size_t         i, len;
    const cJSON   *providers, *c;
    const char    *name;
    tg_policy     *p = ld->p;
    tg_provider   *pr;

    providers = tg_member(root, "providers");

    if (providers == NULL) {
        tg_load_error(ld, "providers", "missing required key");
        return;
    }

    if (!cJSON_IsObject(providers)) {
        tg_load_error(ld, "providers", "expected an object");
        return;
    }

    n = cJSON_GetArraySize(providers);
    if (n == 0) {
        tg_load_error(ld, "providers", "expected at least one provider");
        return;
    }

    tg_check_keys(ld, providers, "providers", NULL);

    p->providers = tg_arena_alloc(&p->arena, (size_t) n * sizeof(tg_provider));
    p->provider_table = tg_table_new(ld, (size_t) n, &p->provider_mask);

    if (p->providers == NULL || p->provider_table == NULL) {
        ld->oom = true;
        return;
    }

    i = 0;
    for (c = providers->child; c != NULL; c = c->next, i++) {
        name = c->string;
        len = strlen(name);

        tg_key_path(path, "providers", name);

        pr = &p->providers[i];
        pr->index = i;
        p->nproviders = i + 1;
        pr->name = tg_copy(ld, name);
        pr->name_len = len;

        if (pr->name == NULL) {
            return;
        }

        if (len == 0 || len > TG_PROVIDER_NAME_MAX) {
            tg_load_error(ld, path, "provider names are 1 to %d letters, "
                          "digits, \"_\", \".\" or \"-\"",
                          TG_PROVIDER_NAME_MAX);
        } else {
            size_t  j;

            for (j = 0; j < len; j++) {
                if (!tg_is_name_char((unsigned char) name[j])) {
                    tg_load_error(ld, path, "provider names are 1 to %d "
                                  "letters, digits, \"_\", \".\" or \"-\"",
                                  TG_PROVIDER_NAME_MAX);
                    break;
                }
            }
        }

        /* a duplicate was reported by tg_check_keys(); the first one wins */
        (void) tg_table_insert(p->provider_table, p->provider_mask, name, len,
                               (uint32_t) i + 1, tg_provider_name_of, p);

        tg_load_provider(ld, pr, c, path);
    }
}


static void
tg_load_provider(tg_loader *ld, tg_provider *pr, const cJSON *item,
    const char *path)
{
    int          i;
    char         path_buf[TG_PATH_LEN], *s2;
    size_t       blen, slen;
    tg_zone      zone;
    const char  *s;

    if (!cJSON_IsObject(item)) {
        tg_load_error(ld, path, "expected an object");
        return;
    }

    tg_check_keys(ld, item, path, tg_provider_keys);

    if (tg_member_string(ld, item, "upstream", path, true, &s) == 1) {
        size_t  j, len = strlen(s);

        for (j = 0; j < len; j++) {
            if (!tg_is_name_char((unsigned char) s[j])) {
                break;
            }
        }

        if (len == 0 || len > TG_UPSTREAM_NAME_MAX || j < len) {
            tg_key_path(path_buf, path, "upstream");
            tg_load_error(ld, path_buf, "expected an upstream name: 1 to %d "
                          "letters, digits, \"_\", \".\" or \"-\"",
                          TG_UPSTREAM_NAME_MAX);
        } else {
            pr->upstream = tg_copy(ld, s);
        }
    }

    pr->scheme = "http";
    if (tg_member_string(ld, item, "scheme", path, false, &s) == 1) {
        if (strcmp(s, "http") == 0) {
            pr->scheme = "http";

        } else if (strcmp(s, "https") == 0) {
            pr->scheme = "https";

        } else {
            tg_key_path(path_buf, path, "scheme");
            tg_load_error(ld, path_buf, "expected one of \"http\", \"https\"");
        }
    }

    pr->host = pr->upstream;
    if (tg_member_string(ld, item, "host", path, false, &s) == 1) {
        if (!tg_valid_host(s)) {
            tg_key_path(path_buf, path, "host");
            tg_load_error(ld, path_buf, "expected a host name or address, "
                          "optionally with \":port\" (at most %d bytes)",
                          TG_HOST_MAX);
        } else {
            pr->host = tg_copy(ld, s);
        }
    }

    pr->base_path = "/v1";
    if (tg_member_string(ld, item, "base_path", path, false, &s) == 1) {
        if (!tg_valid_base_path(s)) {
            tg_key_path(path_buf, path, "base_path");
            tg_load_error(ld, path_buf, "expected \"\" or a path that starts "
                          "with \"/\", has no trailing \"/\", no spaces, "
                          "\"?\" or \"#\" (at most %d bytes)",
                          TG_BASE_PATH_MAX);
        } else {
            pr->base_path = tg_copy(ld, s);
        }
    }

    if (tg_member_string(ld, item, "api_key", path, false, &s) == 1) {
        tg_key_path(path_buf, path, "api_key");
        tg_load_api_key(ld, pr, s, path_buf);
    }

    if (tg_member_string(ld, item, "zone", path, true, &s) == 1) {
        zone = tg_zone_parse(s);

        if (zone == TG_ZONE_COUNT) {
            tg_key_path(path_buf, path, "zone");
            tg_load_error(ld, path_buf, "expected one of %s", tg_zone_list);
        } else {
            pr->zone = zone;
        }
    }

    tg_load_endpoints(ld, pr, item, path);
    tg_load_models(ld, pr, item, path);

    /* what requests it can take; a region is compared with region: tags */

    if (tg_member_string(ld, item, "region", path, false, &s) == 1) {
        size_t  j, len = strlen(s);

        for (j = 0; j < len; j++) {
            if (!(islower((unsigned char) s[j]) || isdigit((unsigned char) s[j])
                  || s[j] == '-' || s[j] == '_' || s[j] == '.'))
            {
                break;
            }
        }

        if (len == 0 || len > TG_REGION_MAX || j < len) {
            tg_key_path(path_buf, path, "region");
            tg_load_error(ld, path_buf, "expected a region name of 1 to %d "
                          "lowercase letters, digits, \"_\", \".\" or \"-\"",
                          TG_REGION_MAX);
        } else {
            pr->region = tg_copy(ld, s);
        }
    }

    (void) tg_member_uint(ld, item, "context_tokens", path, 1,
                          TG_CONTEXT_TOKENS_MAX, &pr->context_tokens);
    (void) tg_member_uint(ld, item, "max_concurrency", path, 1,
                          TG_CONCURRENCY_MAX, &pr->max_concurrency);

    pr->tools = true;
    pr->streaming = true;
    (void) tg_member_bool(ld, item, "tools", path, &pr->tools);
    (void) tg_member_bool(ld, item, "streaming", path, &pr->streaming);

    tg_load_health(ld, pr, item, path);

    /* the request path at the provider for every endpoint */

    if (pr->base_path != NULL) {
        blen = strlen(pr->base_path);

        for (i = 0; i < TG_EP_COUNT; i++) {
            slen = strlen(tg_endpoint_suffixes[i]);

            s2 = tg_arena_alloc(&ld->p->arena, blen + slen + 1);
            if (s2 == NULL) {
                ld->oom = true;
                return;
            }

            memcpy(s2, pr->base_path, blen);
            memcpy(s2 + blen, tg_endpoint_suffixes[i], slen + 1);
            pr->paths[i] = s2;
        }
    }
}


static void
tg_load_endpoints(tg_loader *ld, tg_provider *pr, const cJSON *obj,
    const char *path)
{
    char          path_buf[TG_PATH_LEN], item_path[TG_PATH_LEN];
    size_t        i;
    tg_endpoint   ep;
    const cJSON  *v, *c;

    tg_key_path(path_buf, path, "endpoints");

    v = tg_member(obj, "endpoints");

    if (v == NULL) {
        tg_load_error(ld, path_buf, "missing required key");
        return;
    }

    if (!cJSON_IsArray(v)) {
        tg_load_error(ld, path_buf, "expected an array of endpoint names");
        return;
    }

    if (v->child == NULL) {
        tg_load_error(ld, path_buf, "expected at least one endpoint");
        return;
    }

    i = 0;
    for (c = v->child; c != NULL; c = c->next, i++) {
        tg_index_path(item_path, path_buf, i);

        ep = cJSON_IsString(c) && c->valuestring != NULL
             ? tg_endpoint_parse(c->valuestring, strlen(c->valuestring))
             : TG_EP_NONE;

        if (ep == TG_EP_NONE) {
            tg_load_error(ld, item_path, "expected one of %s",
                          tg_endpoint_list);
            continue;
        }

        if (pr->endpoints & TG_EP_BIT(ep)) {
            tg_load_error(ld, item_path, "duplicate \"%s\"",
                          tg_endpoint_names[ep]);
            continue;
        }

        pr->endpoints |= TG_EP_BIT(ep);
    }
}


static void
tg_load_models(tg_loader *ld, tg_provider *pr, const cJSON *obj,
    const char *path)
{
    int           n;
    char          path_buf[TG_PATH_LEN], item_path[TG_PATH_LEN];
    size_t        i, j, len;
    const cJSON  *v, *c;

    tg_key_path(path_buf, path, "models");

    v = tg_member(obj, "models");

    if (v == NULL) {
        return;
    }

    if (!cJSON_IsArray(v)) {
        tg_load_error(ld, path_buf, "expected an array of model names");
        return;
    }

    n = cJSON_GetArraySize(v);
    if (n == 0) {
        tg_load_error(ld, path_buf, "expected at least one model "
                      "(leave the key out to accept any model)");
        return;
    }

    pr->models = tg_arena_alloc(&ld->p->arena, (size_t) n * sizeof(char *));
    if (pr->models == NULL) {
        ld->oom = true;
        return;
    }

    i = 0;
    for (c = v->child; c != NULL; c = c->next, i++) {
        tg_index_path(item_path, path_buf, i);

        len = cJSON_IsString(c) && c->valuestring != NULL
              ? strlen(c->valuestring) : 0;

        if (len == 0 || len > TG_MODEL_NAME_MAX
            || tg_has_control(c->valuestring))
        {
            tg_load_error(ld, item_path, "expected a model name of 1 to %d "
                          "bytes", TG_MODEL_NAME_MAX);
            continue;
        }

        for (j = 0; j < pr->nmodels; j++) {
            if (strcmp(pr->models[j], c->valuestring) == 0) {
                break;
            }
        }

        if (j < pr->nmodels) {
            tg_load_error(ld, item_path, "duplicate \"%s\"", c->valuestring);
            continue;
        }

        pr->models[pr->nmodels] = tg_copy(ld, c->valuestring);
        if (pr->models[pr->nmodels] == NULL) {
            return;
        }

        pr->nmodels++;
    }
}


static void
tg_load_api_key(tg_loader *ld, tg_provider *pr, const char *value,
    const char *path)
{
    char         *name, *auth;
    size_t        len, i, klen;
    const char   *key;
    const char *(*get)(const char *);

    len = strlen(value);

    if (len < 4 || value[0] != '$' || value[1] != '{' || value[len - 1] != '}'
        || !(isalpha((unsigned char) value[2]) || value[2] == '_'))
    {
        goto bad;
    }

    for (i = 3; i < len - 1; i++) {
        if (!(isalnum((unsigned char) value[i]) || value[i] == '_')) {
            goto bad;
        }
    }

    name = tg_arena_strndup(&ld->p->arena, value + 2, len - 3);
    if (name == NULL) {
        ld->oom = true;
        return;
    }

    pr->api_key_env = name;

    get = ld->opts->getenv;
    key = get != NULL ? get(name) : getenv(name);

    if (key == NULL) {
        tg_load_error(ld, path, "environment variable %s is not set", name);
        return;
    }

    if (key[0] == '\0') {
        tg_load_error(ld, path, "environment variable %s is empty", name);
        return;
    }

    if (tg_has_control(key)) {
        tg_load_error(ld, path, "environment variable %s contains control "
                      "characters", name);
        return;
    }

    klen = strlen(key);

    auth = tg_arena_alloc(&ld->p->arena, sizeof("Bearer ") + klen);
    if (auth == NULL) {
        ld->oom = true;
        return;
    }

    memcpy(auth, "Bearer ", sizeof("Bearer ") - 1);
    memcpy(auth + sizeof("Bearer ") - 1, key, klen + 1);

    pr->authorization = auth;

    return;

bad:

    tg_load_error(ld, path, "expected \"${ENV_VAR}\": the key is read from "
                  "the environment, literal keys are not allowed");
}


static void
tg_load_routes(tg_loader *ld, const cJSON *root)
{
    int           n;
    char          path[TG_PATH_LEN];
    size_t        i, len;
    tg_route     *rt;
    tg_policy    *p = ld->p;
    const cJSON  *routes, *c;
    const char   *name;

    routes = tg_member(root, "routes");

    if (routes == NULL) {
        tg_load_error(ld, "routes", "missing required key");
        return;
    }

    if (!cJSON_IsObject(routes)) {
        tg_load_error(ld, "routes", "expected an object");
        return;
    }

    n = cJSON_GetArraySize(routes);
    if (n == 0) {
        tg_load_error(ld, "routes", "expected at least one route");
        return;
    }

    tg_check_keys(ld, routes, "routes", NULL);

    p->routes = tg_arena_alloc(&p->arena, (size_t) n * sizeof(tg_route));
    p->route_table = tg_table_new(ld, (size_t) n, &p->route_mask);

    if (p->routes == NULL || p->route_table == NULL) {
        ld->oom = true;
        return;
    }

    i = 0;
    for (c = routes->child; c != NULL; c = c->next, i++) {
        name = c->string;
        len = strlen(name);

        tg_key_path(path, "routes", name);

        rt = &p->routes[i];
        rt->index = i;
        rt->name = tg_copy(ld, name);
        rt->name_len = len;

        if (rt->name == NULL) {
            return;
        }

        if (len == 0 || len > TG_ROUTE_NAME_MAX || tg_has_control(name)) {
            tg_load_error(ld, path, "route names are 1 to %d bytes without "
                          "control characters", TG_ROUTE_NAME_MAX);
        }

        (void) tg_table_insert(p->route_table, p->route_mask, name, len,
                               (uint32_t) i + 1, tg_route_name_of, p);

        tg_load_route(ld, rt, c, path);
    }

    p->nroutes = i;
}


static void
tg_load_route(tg_loader *ld, tg_route *rt, const cJSON *item,
    const char *path)
{
    int           n;
    char          path_buf[TG_PATH_LEN], step_path[TG_PATH_LEN];
    size_t        i;
    const cJSON  *steps, *c;

    if (!cJSON_IsObject(item)) {
        tg_load_error(ld, path, "expected an object");
        return;
    }

    tg_check_keys(ld, item, path, tg_route_keys);

    tg_load_route_tenants(ld, rt, item, path);
    tg_load_route_fallback(ld, rt, item, path);
    tg_load_route_queue(ld, rt, item, path);

    tg_key_path(path_buf, path, "steps");

    steps = tg_member(item, "steps");

    if (steps == NULL) {
        tg_load_error(ld, path_buf, "missing required key");
        return;
    }

    if (!cJSON_IsArray(steps)) {
        tg_load_error(ld, path_buf, "expected an array of steps");
        return;
    }

    n = cJSON_GetArraySize(steps);
    if (n == 0) {
        tg_load_error(ld, path_buf, "expected at least one step");
        return;
    }

    rt->steps = tg_arena_alloc(&ld->p->arena, (size_t) n * sizeof(tg_step));
    if (rt->steps == NULL) {
        ld->oom = true;
        return;
    }

    memset(rt->steps, 0, (size_t) n * sizeof(tg_step));

    i = 0;
    for (c = steps->child; c != NULL; c = c->next, i++) {
        tg_index_path(step_path, path_buf, i);
        tg_load_step(ld, rt, &rt->steps[i], c, step_path);
    }

    rt->nsteps = i;
}


/*
 * "fallback": { "on": "errors", "outcomes": [...], "max_attempts": 3 }.
 * Absent: "never".  A route falls back only when it says so.
 */

static void
tg_load_route_fallback(tg_loader *ld, tg_route *rt, const cJSON *item,
    const char *path)
{
    int           n;
    char          path_buf[TG_PATH_LEN], sub[TG_PATH_LEN];
    size_t        i;
    uint32_t      max;
    unsigned      bit;
    const char   *on;
    const cJSON  *fb, *v, *c;

    rt->fallback_on = 0;
    rt->fallback_outcomes = 0;
    rt->max_attempts = 1;

    fb = tg_member(item, "fallback");

    if (fb == NULL) {
        return;
    }

    tg_key_path(path_buf, path, "fallback");

    if (!cJSON_IsObject(fb)) {
        tg_load_error(ld, path_buf, "expected an object with \"on\", "
                      "\"outcomes\" and \"max_attempts\"");
        return;
    }

    tg_check_keys(ld, fb, path_buf, tg_fallback_keys);

    if (tg_member_string(ld, fb, "on", path_buf, true, &on) == 1) {
        if (strcmp(on, "never") == 0) {
            rt->fallback_on = 0;

        } else if (strcmp(on, "errors") == 0) {
            rt->fallback_on = TG_FALLBACK_ON_ERRORS;

        } else if (strcmp(on, "busy") == 0) {
            rt->fallback_on = TG_FALLBACK_ON_BUSY;

        } else if (strcmp(on, "both") == 0) {
            rt->fallback_on = TG_FALLBACK_ON_ERRORS | TG_FALLBACK_ON_BUSY;

        } else {
            tg_key_path(sub, path_buf, "on");
            tg_load_error(ld, sub, "expected one of \"never\", \"errors\", "
                          "\"busy\", \"both\"");
        }
    }

    /* every failure counts unless the route names some */

#define TG_X(bit, name)  | bit
    rt->fallback_outcomes = 0 TG_FALLBACK_CLASSES(TG_X);
#undef TG_X

    tg_key_path(sub, path_buf, "outcomes");

    v = tg_member(fb, "outcomes");

    if (v != NULL) {
        n = cJSON_IsArray(v) ? cJSON_GetArraySize(v) : 0;

        if (n == 0) {
            tg_load_error(ld, sub, "expected a non-empty array of %s",
                          tg_fallback_class_list);
        } else {
            rt->fallback_outcomes = 0;

            i = 0;
            for (c = v->child; c != NULL; c = c->next, i++) {
                bit = cJSON_IsString(c)
                      ? tg_fallback_class_parse(c->valuestring) : 0;

                if (bit == 0) {
                    char  item_path[TG_PATH_LEN];

                    tg_index_path(item_path, sub, i);
                    tg_load_error(ld, item_path, "expected one of %s",
                                  tg_fallback_class_list);
                    continue;
                }

                rt->fallback_outcomes |= bit;
            }
        }
    }

    /* every step once, unless the route says fewer */

    v = tg_member(item, "steps");
    n = cJSON_IsArray(v) ? cJSON_GetArraySize(v) : 1;
    max = n > 0 ? (uint32_t) n : 1;

    if (tg_member_uint(ld, fb, "max_attempts", path_buf, 1, TG_ATTEMPTS_MAX,
                       &max) == 0)
    {
        max = max < TG_ATTEMPTS_MAX ? max : TG_ATTEMPTS_MAX;
    }

    rt->max_attempts = (rt->fallback_on & TG_FALLBACK_ON_ERRORS) ? max : 1;
}


/* "tenants": ["acme", ...]: only clients of these tenants see the route */

static void
tg_load_route_tenants(tg_loader *ld, tg_route *rt, const cJSON *item,
    const char *path)
{
    int           n;
    char          path_buf[TG_PATH_LEN], item_path[TG_PATH_LEN];
    size_t        i, j, len;
    const char   *t;
    const cJSON  *v, *c;

    tg_key_path(path_buf, path, "tenants");

    v = tg_member(item, "tenants");

    if (v == NULL) {
        return;
    }

    n = cJSON_IsArray(v) ? cJSON_GetArraySize(v) : 0;

    if (n == 0) {
        tg_load_error(ld, path_buf, "expected a non-empty array of tenant "
                      "names (leave the key out for every tenant)");
        return;
    }

    rt->tenants = tg_arena_alloc(&ld->p->arena, (size_t) n * sizeof(char *));
    if (rt->tenants == NULL) {
        ld->oom = true;
        return;
    }

    i = 0;
    for (c = v->child; c != NULL; c = c->next, i++) {
        tg_index_path(item_path, path_buf, i);

        t = cJSON_IsString(c) ? c->valuestring : NULL;
        len = t ? strlen(t) : 0;

        for (j = 0; j < len; j++) {
            if (!(isalnum((unsigned char) t[j]) || strchr("_-.@:", t[j]))) {
                break;
            }
        }

        if (len == 0 || len > TG_TENANT_MAX || j < len) {
            tg_load_error(ld, item_path, "expected a tenant name of 1 to %d "
                          "letters, digits and \"_-.@:\"", TG_TENANT_MAX);
            continue;
        }

        rt->tenants[rt->ntenants++] = tg_copy(ld, t);
    }
}


static void
tg_load_step(tg_loader *ld, tg_route *rt, tg_step *st, const cJSON *item,
    const char *path)
{
    char                path_buf[TG_PATH_LEN];
    size_t              i, len;
    const char         *prov, *model;
    const tg_provider  *pr;

    if (!cJSON_IsObject(item)) {
        tg_load_error(ld, path, "expected an object with \"provider\" and "
                      "\"model\"");
        return;
    }

    tg_check_keys(ld, item, path, tg_step_keys);

    pr = NULL;

    if (tg_member_string(ld, item, "provider", path, true, &prov) == 1) {
        pr = tg_policy_provider(ld->p, prov, strlen(prov));

        if (pr == NULL) {
            tg_key_path(path_buf, path, "provider");
            tg_load_error(ld, path_buf, "no provider named \"%s\"", prov);
        }
    }

    if (tg_member_string(ld, item, "model", path, true, &model) != 1) {
        return;
    }

    tg_key_path(path_buf, path, "model");

    len = strlen(model);
    if (len == 0 || len > TG_MODEL_NAME_MAX || tg_has_control(model)) {
        tg_load_error(ld, path_buf, "expected a model name of 1 to %d bytes",
                      TG_MODEL_NAME_MAX);
        return;
    }

    st->model = tg_copy(ld, model);

    if (pr == NULL) {
        return;
    }

    st->provider = pr;
    st->provider_index = pr->index;

    tg_load_adjust(ld, st, item, path);

    rt->endpoints |= pr->endpoints;

    if (pr->zone != TG_ZONE_EXTERNAL) {
        rt->private_endpoints |= pr->endpoints;
    }

    if (pr->models == NULL) {
        return;
    }

    for (i = 0; i < pr->nmodels; i++) {
        if (strcmp(pr->models[i], model) == 0) {
            return;
        }
    }

    tg_load_error(ld, path_buf, "\"%s\" is not in providers.%s.models", model,
                  pr->name);
}


/*
 * "queue": { "max_length": 8, "max_wait_ms": 10000 }: a request that finds
 * its step at capacity waits for a slot, in order of arrival, instead of
 * being passed over or refused at once.
 */

static void
tg_load_route_queue(tg_loader *ld, tg_route *rt, const cJSON *item,
    const char *path)
{
    char          path_buf[TG_PATH_LEN];
    const cJSON  *q;

    rt->queue_max = 0;
    rt->queue_wait_ms = 0;

    q = tg_member(item, "queue");

    if (q == NULL) {
        return;
    }

    tg_key_path(path_buf, path, "queue");

    if (!cJSON_IsObject(q)) {
        tg_load_error(ld, path_buf, "expected an object with \"max_length\" "
                      "and \"max_wait_ms\"");
        return;
    }

    tg_check_keys(ld, q, path_buf, tg_queue_keys);

    rt->queue_max = 16;
    rt->queue_wait_ms = 10000;

    (void) tg_member_uint(ld, q, "max_length", path_buf, 1, TG_QUEUE_MAX,
                          &rt->queue_max);
    (void) tg_member_uint(ld, q, "max_wait_ms", path_buf, 1,
                          TG_QUEUE_WAIT_MAX, &rt->queue_wait_ms);
}


/*
 * "health": how policyd tells whether the provider is up, busy, stuck or
 * down: active probes of a URL that costs nothing to ask (never a
 * completion), and what the module reports.  Every key is optional.
 */

static void
tg_load_health(tg_loader *ld, tg_provider *pr, const cJSON *item,
    const char *path)
{
    char            path_buf[TG_PATH_LEN], sub[TG_PATH_LEN];
    const char     *s;
    const cJSON    *h;
    tg_health_conf *hc = &pr->health;

    hc->url = NULL;
    hc->slots_url = NULL;
    hc->kind = TG_PROBE_HTTP;
    hc->interval_ms = 5000;
    hc->timeout_ms = 2000;
    hc->down_after = 3;
    hc->up_after = 2;
    hc->cooldown_ms = 10000;
    hc->stuck_after_ms = 300000;
    hc->lease_ttl_ms = 3600000;
    hc->send_key = false;

    h = tg_member(item, "health");

    if (h == NULL) {
        return;
    }

    tg_key_path(path_buf, path, "health");

    if (!cJSON_IsObject(h)) {
        tg_load_error(ld, path_buf, "expected an object");
        return;
    }

    tg_check_keys(ld, h, path_buf, tg_health_keys);

    if (tg_member_string(ld, h, "url", path_buf, false, &s) == 1) {
        if (!tg_valid_url(s)) {
            tg_key_path(sub, path_buf, "url");
            tg_load_error(ld, sub, "expected an http:// or https:// URL "
                          "without spaces (at most %d bytes)",
                          TG_HEALTH_URL_MAX);
        } else {
            hc->url = tg_copy(ld, s);
        }
    }

    if (tg_member_string(ld, h, "slots_url", path_buf, false, &s) == 1) {
        if (!tg_valid_url(s)) {
            tg_key_path(sub, path_buf, "slots_url");
            tg_load_error(ld, sub, "expected an http:// or https:// URL "
                          "without spaces (at most %d bytes)",
                          TG_HEALTH_URL_MAX);
        } else {
            hc->slots_url = tg_copy(ld, s);
        }
    }

    if (tg_member_string(ld, h, "kind", path_buf, false, &s) == 1) {
        if (strcmp(s, "http") == 0) {
            hc->kind = TG_PROBE_HTTP;
        } else if (strcmp(s, "openai") == 0) {
            hc->kind = TG_PROBE_OPENAI;
        } else if (strcmp(s, "llama.cpp") == 0) {
            hc->kind = TG_PROBE_LLAMACPP;
        } else if (strcmp(s, "vllm") == 0) {
            hc->kind = TG_PROBE_VLLM;
        } else {
            tg_key_path(sub, path_buf, "kind");
            tg_load_error(ld, sub, "expected one of \"http\", \"openai\", "
                          "\"llama.cpp\", \"vllm\"");
        }
    }

    (void) tg_member_uint(ld, h, "interval_ms", path_buf, 100, 3600000,
                          &hc->interval_ms);
    (void) tg_member_uint(ld, h, "timeout_ms", path_buf, 50, 60000,
                          &hc->timeout_ms);
    (void) tg_member_uint(ld, h, "down_after", path_buf, 1, 100,
                          &hc->down_after);
    (void) tg_member_uint(ld, h, "up_after", path_buf, 1, 100,
                          &hc->up_after);
    (void) tg_member_uint(ld, h, "cooldown_ms", path_buf, 100, 3600000,
                          &hc->cooldown_ms);
    (void) tg_member_uint(ld, h, "stuck_after_ms", path_buf, 0, 86400000,
                          &hc->stuck_after_ms);
    (void) tg_member_uint(ld, h, "lease_ttl_ms", path_buf, 1000, 86400000,
                          &hc->lease_ttl_ms);
    (void) tg_member_bool(ld, h, "send_key", path_buf, &hc->send_key);

    if (hc->timeout_ms >= hc->interval_ms) {
        tg_key_path(sub, path_buf, "timeout_ms");
        tg_load_error(ld, sub, "expected less than interval_ms (%u)",
                      hc->interval_ms);
    }

    if (hc->url == NULL
        && (tg_member(h, "kind") || tg_member(h, "interval_ms")
            || tg_member(h, "timeout_ms") || tg_member(h, "up_after")
            || tg_member(h, "slots_url") || tg_member(h, "send_key")))
    {
        tg_key_path(sub, path_buf, "url");
        tg_load_error(ld, sub, "missing: the probe settings need a URL");
    }
}


/*
 * "adjust": [ { "when": "tools", "drop": ["response_format"] },
 *             { "when": "stream",
 *               "set": { "stream_options.include_usage": true } } ]
 *
 * Edits of the JSON body for this step only.  Each is kept as a line,
 * "drop PATH" or "set PATH JSON", and the lines are joined once per
 * combination of the facts "when" can name, so that a decision picks its
 * text without building anything.  Two edits may share a top-level key only
 * when both edit different members below it: the module applies them in one
 * pass and must never write a key twice.
 */

#define TG_EDITS_MAX  32

typedef struct {
    unsigned     when;
    bool         drop;
    char         path[TG_ADJUST_PATH_MAX * 2 + 2];
    size_t       top_len;       /* bytes of the first segment */
    char        *value;         /* cJSON_PrintUnformatted(), set only */
} tg_edit;


static bool
tg_adjust_path_ok(const char *path, size_t *top_len)
{
    size_t       seg, segs;
    const char  *p;

    seg = 0;
    segs = 1;
    *top_len = 0;

    for (p = path; *p != '\0'; p++) {
        if (*p == '.') {
            if (seg == 0 || segs == 2) {
                return false;
            }

            *top_len = (size_t) (p - path);
            segs++;
            seg = 0;
            continue;
        }

        if (!(isalnum((unsigned char) *p) || *p == '_' || *p == '-')
            || ++seg > TG_ADJUST_PATH_MAX)
        {
            return false;
        }
    }

    if (seg == 0) {
        return false;
    }

    if (segs == 1) {
        *top_len = (size_t) (p - path);
    }

    /* the keys the gateway routes on are not the policy's to change */

    return !((*top_len == 5 && strncasecmp(path, "model", 5) == 0)
             || (*top_len == 6 && strncasecmp(path, "stream", 6) == 0));
}


static void
tg_load_adjust(tg_loader *ld, tg_step *st, const cJSON *item,
    const char *path)
{
    int           n;
    char          path_buf[TG_PATH_LEN], rule_path[TG_PATH_LEN];
    char          sub[TG_PATH_LEN], one[TG_PATH_LEN];
    char         *text;
    size_t        i, j, k, nedits, len, size;
    unsigned      when, w;
    tg_edit       edits[TG_EDITS_MAX], *e;
    const char   *s;
    const cJSON  *v, *rule, *c;

    for (w = 0; w < TG_WHEN_COUNT; w++) {
        st->adjust[w] = "";
    }

    v = tg_member(item, "adjust");

    if (v == NULL) {
        return;
    }

    tg_key_path(path_buf, path, "adjust");

    n = cJSON_IsArray(v) ? cJSON_GetArraySize(v) : 0;

    if (n == 0) {
        tg_load_error(ld, path_buf, "expected a non-empty array of "
                      "{ \"when\", \"drop\", \"set\" } rules");
        return;
    }

    nedits = 0;

    i = 0;
    for (rule = v->child; rule != NULL; rule = rule->next, i++) {
        tg_index_path(rule_path, path_buf, i);

        if (!cJSON_IsObject(rule)) {
            tg_load_error(ld, rule_path, "expected an object with \"drop\" "
                          "or \"set\", and optionally \"when\"");
            continue;
        }

        tg_check_keys(ld, rule, rule_path, tg_adjust_keys);

        when = 0;

        if (tg_member_string(ld, rule, "when", rule_path, false, &s) == 1) {
            if (strcmp(s, "tools") == 0) {
                when = TG_WHEN_TOOLS;

            } else if (strcmp(s, "stream") == 0) {
                when = TG_WHEN_STREAM;

            } else if (strcmp(s, "always") != 0) {
                tg_key_path(sub, rule_path, "when");
                tg_load_error(ld, sub, "expected one of \"always\", "
                              "\"tools\", \"stream\"");
            }
        }

        if (tg_member(rule, "drop") == NULL && tg_member(rule, "set") == NULL) {
            tg_load_error(ld, rule_path, "expected \"drop\" or \"set\"");
            continue;
        }

        /* "drop": ["key", "a.b"] */

        c = tg_member(rule, "drop");
        tg_key_path(sub, rule_path, "drop");

        if (c != NULL && (!cJSON_IsArray(c) || c->child == NULL)) {
            tg_load_error(ld, sub, "expected a non-empty array of keys");
            c = NULL;
        }

        for (c = c ? c->child : NULL, j = 0; c != NULL; c = c->next, j++) {
            tg_index_path(one, sub, j);

            if (nedits == TG_EDITS_MAX) {
                tg_load_error(ld, one, "more than %d edits in one step",
                              TG_EDITS_MAX);
                break;
            }

            e = &edits[nedits];

            if (!cJSON_IsString(c)
                || strlen(c->valuestring) >= sizeof(e->path)
                || !tg_adjust_path_ok(c->valuestring, &e->top_len))
            {
                tg_load_error(ld, one, "expected a key or \"key.member\" of "
                              "letters, digits, \"_\" and \"-\", not "
                              "\"model\" or \"stream\"");
                continue;
            }

            strcpy(e->path, c->valuestring);
            e->drop = true;
            e->when = when;
            e->value = NULL;
            nedits++;
        }

        /* "set": { "key": JSON, "a.b": JSON } */

        c = tg_member(rule, "set");
        tg_key_path(sub, rule_path, "set");

        if (c != NULL && (!cJSON_IsObject(c) || c->child == NULL)) {
            tg_load_error(ld, sub, "expected a non-empty object of key: "
                          "value");
            c = NULL;
        }

        for (c = c ? c->child : NULL; c != NULL; c = c->next) {
            tg_key_path(one, sub, c->string);

            if (nedits == TG_EDITS_MAX) {
                tg_load_error(ld, one, "more than %d edits in one step",
                              TG_EDITS_MAX);
                break;
            }

            e = &edits[nedits];

            if (strlen(c->string) >= sizeof(e->path)
                || !tg_adjust_path_ok(c->string, &e->top_len))
            {
                tg_load_error(ld, one, "expected a key or \"key.member\" of "
                              "letters, digits, \"_\" and \"-\", not "
                              "\"model\" or \"stream\"");
                continue;
            }

            e->value = cJSON_PrintUnformatted(c);
            if (e->value == NULL) {
                ld->oom = true;
                goto done;
            }

            strcpy(e->path, c->string);
            e->drop = false;
            e->when = when;
            nedits++;
        }
    }

    /* one edit per top-level key, but for sets of different members */

    for (i = 0; i < nedits; i++) {
        for (j = 0; j < i; j++) {
            /* keys match ignoring case in the module: here too */

            if (edits[i].top_len != edits[j].top_len
                || strncasecmp(edits[i].path, edits[j].path,
                               edits[i].top_len) != 0)
            {
                continue;
            }

            if (edits[i].path[edits[i].top_len] == '\0'
                || edits[j].path[edits[j].top_len] == '\0'
                || strcasecmp(edits[i].path, edits[j].path) == 0)
            {
                tg_load_error(ld, path_buf, "\"%s\" and \"%s\" edit the "
                              "same key", edits[j].path, edits[i].path);
                goto done;
            }
        }
    }

    for (w = 0; w < TG_WHEN_COUNT; w++) {
        size = 1;

        for (k = 0; k < nedits; k++) {
            if ((edits[k].when & ~w) == 0) {
                size += sizeof("drop ") + strlen(edits[k].path)
                        + (edits[k].value ? strlen(edits[k].value) + 1 : 0);
            }
        }

        if (size > TG_ADJUST_MAX) {
            tg_load_error(ld, path_buf, "the edits take more than %d bytes",
                          TG_ADJUST_MAX);
            goto done;
        }

        text = tg_arena_alloc(&ld->p->arena, size);
        if (text == NULL) {
            ld->oom = true;
            goto done;
        }

        len = 0;

        for (k = 0; k < nedits; k++) {
            e = &edits[k];

            if ((e->when & ~w) != 0) {
                continue;
            }

            if (e->drop) {
                len += (size_t) snprintf(text + len, size - len, "drop %s\n",
                                         e->path);
            } else {
                len += (size_t) snprintf(text + len, size - len, "set %s %s\n",
                                         e->path, e->value);
            }
        }

        text[len] = '\0';
        st->adjust[w] = text;
    }

done:

    for (k = 0; k < nedits; k++) {
        cJSON_free(edits[k].value);
    }
}


/* hash tables of names: open addressing, linear probing */

static uint32_t
tg_hash(const char *s, size_t len)
{
    size_t    i;
    uint32_t  h = 2166136261u;

    for (i = 0; i < len; i++) {
        h ^= (unsigned char) s[i];
        h *= 16777619u;
    }

    return h;
}


static uint32_t *
tg_table_new(tg_loader *ld, size_t n, size_t *mask)
{
    size_t  size;

    for (size = 8; size < n * 2; size *= 2) { /* void */ }

    *mask = size - 1;

    return tg_arena_alloc(&ld->p->arena, size * sizeof(uint32_t));
}


static int
tg_table_insert(uint32_t *table, size_t mask, const char *name, size_t len,
    uint32_t value, const char *(*name_of)(const tg_policy *, uint32_t,
    size_t *), const tg_policy *p)
{
    size_t       i, l;
    const char  *s;

    for (i = tg_hash(name, len) & mask; table[i] != 0; i = (i + 1) & mask) {
        s = name_of(p, table[i] - 1, &l);
        if (l == len && memcmp(s, name, len) == 0) {
            return -1;
        }
    }

    table[i] = value;

    return 0;
}


static const char *
tg_provider_name_of(const tg_policy *p, uint32_t i, size_t *len)
{
    *len = p->providers[i].name_len;
    return p->providers[i].name;
}


static const char *
tg_route_name_of(const tg_policy *p, uint32_t i, size_t *len)
{
    *len = p->routes[i].name_len;
    return p->routes[i].name;
}


/* value checks */

static bool
tg_is_name_char(int c)
{
    return isalnum(c) || c == '_' || c == '.' || c == '-';
}


static bool
tg_valid_host(const char *s)
{
    size_t  i, len;

    len = strlen(s);

    if (len == 0 || len > TG_HOST_MAX) {
        return false;
    }

    for (i = 0; i < len; i++) {
        if (!(isalnum((unsigned char) s[i]) || strchr("-._:[]", s[i]))) {
            return false;
        }
    }

    return true;
}


static bool
tg_valid_base_path(const char *s)
{
    size_t  i, len;

    len = strlen(s);

    if (len == 0) {
        return true;
    }

    if (len > TG_BASE_PATH_MAX || s[0] != '/' || s[len - 1] == '/') {
        return false;
    }

    for (i = 0; i < len; i++) {
        unsigned char  c = (unsigned char) s[i];

        if (c <= 0x20 || c >= 0x7f || c == '?' || c == '#') {
            return false;
        }
    }

    return true;
}


static bool
tg_has_control(const char *s)
{
    for ( /* void */ ; *s != '\0'; s++) {
        if ((unsigned char) *s < 0x20 || *s == 0x7f) {
            return true;
        }
    }

    return false;
}


/* http:// or https://, a host, visible characters only */

static bool
tg_valid_url(const char *s)
{
    size_t       len;
    const char  *p, *host;

    len = strlen(s);

    if (len > TG_HEALTH_URL_MAX) {
        return false;
    }

    if (strncmp(s, "http://", 7) == 0) {
        host = s + 7;
    } else if (strncmp(s, "https://", 8) == 0) {
        host = s + 8;
    } else {
        return false;
    }

    if (*host == '\0' || *host == '/') {
        return false;
    }

    for (p = s; *p != '\0'; p++) {
        if ((unsigned char) *p <= ' ' || (unsigned char) *p == 0x7f) {
            return false;
        }
    }

    return true;
}
