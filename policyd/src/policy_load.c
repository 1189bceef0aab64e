/*
 * The policy loader: reads the file, strips comments, parses it with cJSON
 * and checks every key against docs/policy.md: the top level and the
 * sockets here, providers and routes in policy_provider.c and
 * policy_route.c.  It collects every problem with its key path and goes
 * on, so that one run of "policyd -t" shows them all.  It never prints and
 * never exits.
 */

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "file_mode.h"
#include "policy_json.h"
#include "tailgate_protocol.h"


#define TG_POLICY_FILE_MAX  (64 * 1024 * 1024)


static void tg_load_top(tg_loader *ld, const cJSON *root);
static void tg_load_listen(tg_loader *ld, const cJSON *root, const char *key,
    const char *override, tg_listen *l);


static const char *const  tg_top_keys[] = {
    "listen", "admin_listen", "max_frame", "decision_cache_ms",
    "lease_recovery_ms", "log_level",
    "providers", "routes", "limits", "usage", "redis", "scrub", "jwks", NULL
};

static const char *const  tg_listen_keys[] = {
    "path", "mode", "group", NULL
};


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
    char         msg[TG_FILE_MODE_MSG_LEN];
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

    if (opts != NULL && opts->private_file
        && tg_file_mode_judge(st.st_mode, file, msg, sizeof(msg)) != 0)
    {
        tg_errors_add(errs, NULL, "%s", msg);
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
    ld.nenv_failed = 0;

    p->file = tg_copy(&ld, file != NULL ? file : "");
    p->max_frame = TG_MAX_FRAME_DEFAULT;
    p->decision_cache_ms = TG_DECISION_CACHE_MS_DEFAULT;
    p->lease_recovery_ms = TG_LEASE_RECOVERY_MS_DEFAULT;
    p->log_level = TG_LOG_INFO;
    p->loaded_at = opts->now ? opts->now : time(NULL);

    if (!cJSON_IsObject(root)) {
        tg_errors_add(errs, NULL, "expected a JSON object at the top level");

    } else {
        tg_env_expand_policy(&ld, root);
        tg_load_top(&ld, root);
    }

    cJSON_Delete(root);

    for (i = 0; i < ld.nenv_failed; i++) {
        free(ld.env_failed[i]);
    }

    if (ld.oom) {
        tg_errors_add(errs, NULL, "out of memory");
    }

    if (errs->count > ld.errors_before || ld.oom || errs->oom) {
        tg_policy_free(p);
        return NULL;
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
    (void) tg_member_uint(ld, root, "lease_recovery_ms", "", 0,
                          TG_LEASE_RECOVERY_MS_MAX,
                          &ld->p->lease_recovery_ms);

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

    tg_load_scrub(ld, root);
    tg_load_providers(ld, root);
    tg_load_routes(ld, root);
    tg_load_limits(ld, root);
    tg_load_usage(ld, root);
    tg_load_redis(ld, root);
    tg_load_jwks(ld, root);
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
