/*
 * "${NAME}" references in the policy's strings (env.h).  One pass over the
 * string: every variable that is not set is reported, not only the first,
 * so that "policyd -t" lists all of them; a malformed reference stops the
 * string there, since what follows it cannot be read with any certainty.
 */

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "env.h"


typedef struct {
    char    *data;
    size_t   len;
    size_t   cap;
    bool     too_long;
    bool     oom;
} tg_env_buf;


static size_t tg_env_name_len(const char *s);
static void tg_env_append(tg_env_buf *b, const char *s, size_t len);
static void tg_env_problem(const tg_env *env, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static bool tg_env_has_control(const char *s);


int
tg_env_expand(const tg_env *env, const char *s, char **out)
{
    bool         failed;
    char         name[TG_ENV_NAME_MAX + 1];
    size_t       i, k, n, start, dlen;
    const char  *value, *dflt, *close;
    tg_env_buf   b;

    if (strstr(s, "${") == NULL) {
        return 0;
    }

    memset(&b, 0, sizeof(b));
    failed = false;
    start = 0;

    for (i = 0; s[i] != '\0'; /* void */ ) {

        if (s[i] != '$') {
            i++;
            continue;
        }

        /* "$${": a literal "${" */

        if (s[i + 1] == '$' && s[i + 2] == '{') {
            tg_env_append(&b, s + start, i - start);
            tg_env_append(&b, "${", 2);
            i += 3;
            start = i;
            continue;
        }

        if (s[i + 1] != '{') {
            i++;
            continue;
        }

        n = tg_env_name_len(s + i + 2);
        dflt = NULL;
        dlen = 0;
        close = NULL;

        if (n > 0 && n <= TG_ENV_NAME_MAX) {
            if (s[i + 2 + n] == '}') {
                close = s + i + 2 + n;

            } else if (s[i + 2 + n] == ':' && s[i + 3 + n] == '-') {
                dflt = s + i + 4 + n;
                dlen = strcspn(dflt, "}");

                if (dflt[dlen] == '}') {
                    close = dflt + dlen;
                }

                /* no reference inside a default: "}" would end it early */

                for (k = 0; close != NULL && k + 1 < dlen; k++) {
                    if (dflt[k] == '$' && dflt[k + 1] == '{') {
                        close = NULL;
                    }
                }
            }
        }

        if (close == NULL) {
            tg_env_problem(env, "\"${\" at byte %zu is not a reference: "
                           "expected ${NAME} or ${NAME:-default} (NAME: a "
                           "letter or \"_\", then letters, digits or \"_\", "
                           "at most %d bytes), or $${ for a literal ${",
                           i, TG_ENV_NAME_MAX);
            failed = true;
            break;
        }

        memcpy(name, s + i + 2, n);
        name[n] = '\0';

        tg_env_append(&b, s + start, i - start);

        value = tg_env_get(env, name);

        if (dflt != NULL && (value == NULL || value[0] == '\0')) {
            tg_env_append(&b, dflt, dlen);

        } else if (value == NULL) {
            tg_env_problem(env, "environment variable %s is not set", name);
            failed = true;

        } else if (tg_env_has_control(value)) {
            tg_env_problem(env, "environment variable %s contains control "
                           "characters", name);
            failed = true;

        } else {
            tg_env_append(&b, value, strlen(value));
        }

        i = (size_t) (close - s) + 1;
        start = i;
    }

    if (!failed) {
        tg_env_append(&b, s + start, strlen(s + start));
        tg_env_append(&b, "", 1);
    }

    if (b.oom) {
        tg_env_problem(env, "out of memory");
        failed = true;

    } else if (b.too_long && !failed) {
        tg_env_problem(env, "longer than %d bytes once its variables are "
                       "read", TG_ENV_RESULT_MAX);
        failed = true;
    }

    if (failed) {
        free(b.data);
        return -1;
    }

    *out = b.data;

    return 1;
}


bool
tg_env_is_reference(const char *s, char *name)
{
    size_t  n;

    if (s[0] != '$' || s[1] != '{') {
        return false;
    }

    n = tg_env_name_len(s + 2);

    if (n == 0 || n > TG_ENV_NAME_MAX || s[2 + n] != '}' || s[3 + n] != '\0')
    {
        return false;
    }

    memcpy(name, s + 2, n);
    name[n] = '\0';

    return true;
}


const char *
tg_env_get(const tg_env *env, const char *name)
{
    return env->getenv != NULL ? env->getenv(name) : getenv(name);
}


/* the length of the NAME that s starts with; 0 if it starts with none */

static size_t
tg_env_name_len(const char *s)
{
    size_t  n;

    if (!(isalpha((unsigned char) s[0]) || s[0] == '_')) {
        return 0;
    }

    for (n = 1; isalnum((unsigned char) s[n]) || s[n] == '_'; n++) {
        if (n > TG_ENV_NAME_MAX) {
            break;
        }
    }

    return n;
}


static void
tg_env_append(tg_env_buf *b, const char *s, size_t len)
{
    char    *p;
    size_t   cap;

    if (b->oom || b->too_long || len == 0) {
        return;
    }

    /* the terminating NUL is appended as one byte too */

    if (b->len + len > TG_ENV_RESULT_MAX + 1) {
        b->too_long = true;
        return;
    }

    if (b->len + len > b->cap) {
        cap = b->cap ? b->cap : 64;

        while (cap < b->len + len) {
            cap *= 2;
        }

        p = realloc(b->data, cap);
        if (p == NULL) {
            b->oom = true;
            return;
        }

        b->data = p;
        b->cap = cap;
    }

    memcpy(b->data + b->len, s, len);
    b->len += len;
}


static void
tg_env_problem(const tg_env *env, const char *fmt, ...)
{
    char     msg[TG_ENV_MSG_LEN + TG_ENV_NAME_MAX];
    va_list  ap;

    if (env->problem == NULL) {
        return;
    }

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);

    env->problem(env->data, msg);
}


static bool
tg_env_has_control(const char *s)
{
    for ( /* void */ ; *s != '\0'; s++) {
        if ((unsigned char) *s < 0x20 || *s == 0x7f) {
            return true;
        }
    }

    return false;
}
