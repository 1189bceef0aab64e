/*
 * "${NAME}" references in a string, replaced by the environment's values:
 * pure, but for the look-up it is given (docs/policy.md, "Environment
 * variables").
 *
 *   ${NAME}            the value of NAME; unset is an error, empty is ""
 *   ${NAME:-default}   the value of NAME, or default when unset or empty
 *   $${                a literal "${"
 *   $                  any other "$" is itself
 *
 * NAME is a letter or "_", then letters, digits and "_", at most
 * TG_ENV_NAME_MAX bytes.  A default holds no "}" and no "${".
 */

#ifndef TG_ENV_H
#define TG_ENV_H

#include <stdbool.h>
#include <stddef.h>


#define TG_ENV_NAME_MAX      128
#define TG_ENV_RESULT_MAX    65536      /* bytes of one string, expanded */
#define TG_ENV_MSG_LEN       256


typedef struct {
    /* the environment; NULL: getenv() */
    const char  *(*getenv)(const char *name);

    /* each problem, as a message such as "environment variable X is not set" */
    void         (*problem)(void *data, const char *msg);
    void          *data;
} tg_env;


/*
 * 0: s has no reference and no "$${" (*out untouched); 1: *out is the
 * expanded string (malloc'd); -1: each problem was given to problem(), or
 * memory ran out (then the only problem is "out of memory").
 */
int tg_env_expand(const tg_env *env, const char *s, char **out);

/*
 * Whether s is one "${NAME}" and nothing else (no default): the form of
 * secrets, which are never written in the file.  The name goes into name
 * (TG_ENV_NAME_MAX + 1 bytes).
 */
bool tg_env_is_reference(const char *s, char *name);

/* The value of a variable by env's look-up; NULL when unset. */
const char *tg_env_get(const tg_env *env, const char *name);

#endif /* TG_ENV_H */
