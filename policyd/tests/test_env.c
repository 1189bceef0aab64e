/*
 * "${NAME}" references in one string (env.c), without a policy: values,
 * defaults, literals, every kind of malformed reference, unset variables
 * all reported, control characters and the bound on the result.
 */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "env.h"


#define ENV_PROBLEMS_MAX  8

typedef struct {
    size_t  n;
    char    msg[ENV_PROBLEMS_MAX][TG_ENV_MSG_LEN * 2];
} env_problems;


static char  env_long[40001];


static const char *
env_get(const char *name)
{
    static const char *const  vars[][2] = {
        { "HOST", "api.example.com" },
        { "PORT", "8443" },
        { "EMPTY", "" },
        { "NL", "a\nb" },
        { "DEL", "a\177b" },
        { "DOLLAR", "${HOST}" },
        { "_under_1", "u" },
    };

    if (strcmp(name, "LONG") == 0) {
        return env_long;
    }

    for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++) {
        if (strcmp(name, vars[i][0]) == 0) {
            return vars[i][1];
        }
    }

    return NULL;
}


static void
env_problem(void *data, const char *msg)
{
    env_problems  *p = data;

    assert_true(p->n < ENV_PROBLEMS_MAX);
    snprintf(p->msg[p->n++], sizeof(p->msg[0]), "%s", msg);
}


/* s expands to want (NULL: s holds no reference) with no problem */

static void
expands_to(const char *s, const char *want)
{
    int           rc;
    char         *out;
    tg_env        env;
    env_problems  probs;

    memset(&probs, 0, sizeof(probs));
    env.getenv = env_get;
    env.problem = env_problem;
    env.data = &probs;
    out = NULL;

    rc = tg_env_expand(&env, s, &out);

    if (probs.n > 0) {
        print_message("%s: %s\n", s, probs.msg[0]);
    }

    assert_int_equal(probs.n, 0);

    if (want == NULL) {
        assert_int_equal(rc, 0);
        assert_null(out);
        return;
    }

    assert_int_equal(rc, 1);
    assert_non_null(out);
    assert_string_equal(out, want);
    free(out);
}


/* s is refused with exactly these problems (up to a NULL) */

static void
refused(const char *s, ...)
{
    int           rc;
    char         *out;
    size_t        n;
    va_list       ap;
    tg_env        env;
    const char   *want;
    env_problems  probs;

    memset(&probs, 0, sizeof(probs));
    env.getenv = env_get;
    env.problem = env_problem;
    env.data = &probs;
    out = NULL;

    rc = tg_env_expand(&env, s, &out);

    assert_int_equal(rc, -1);
    assert_null(out);

    va_start(ap, s);

    for (n = 0; (want = va_arg(ap, const char *)) != NULL; n++) {
        assert_true(n < probs.n);
        assert_string_equal(probs.msg[n], want);
    }

    va_end(ap);

    assert_int_equal(probs.n, n);
}


static void
test_values(void **unused)
{
    (void) unused;

    expands_to("api.example.com", NULL);
    expands_to("", NULL);
    expands_to("$HOST", NULL);
    expands_to("a$b$", NULL);
    expands_to("$$", NULL);
    expands_to("{HOST}", NULL);

    expands_to("${HOST}", "api.example.com");
    expands_to("${HOST}:${PORT}", "api.example.com:8443");
    expands_to("https://${HOST}/v1", "https://api.example.com/v1");
    expands_to("${_under_1}", "u");
    expands_to("$${HOST}", "${HOST}");
    expands_to("a$${b", "a${b");
    expands_to("$${HOST} is ${HOST}", "${HOST} is api.example.com");
    expands_to("$$${HOST}", "$${HOST}");

    /* an empty value is a value; a value is never expanded again */
    expands_to("[${EMPTY}]", "[]");
    expands_to("${DOLLAR}", "${HOST}");
}


static void
test_defaults(void **unused)
{
    (void) unused;

    expands_to("${NOPE:-fallback.example}", "fallback.example");
    expands_to("${EMPTY:-was empty}", "was empty");
    expands_to("${HOST:-unused}", "api.example.com");
    expands_to("${NOPE:-}", "");
    expands_to("${NOPE:-a:b-c $ d}", "a:b-c $ d");
    expands_to("x${NOPE:-1}y${PORT:-2}z", "x1y8443z");
}


static void
test_unset_all_reported(void **unused)
{
    (void) unused;

    refused("${NOPE}", "environment variable NOPE is not set", NULL);
    refused("${A}/${HOST}/${B}/${A}",
            "environment variable A is not set",
            "environment variable B is not set",
            "environment variable A is not set", NULL);
    refused("${NL}", "environment variable NL contains control characters",
            NULL);
    refused("${DEL}:${NOPE}",
            "environment variable DEL contains control characters",
            "environment variable NOPE is not set", NULL);
}


static void
test_malformed(void **unused)
{
    char         name[TG_ENV_NAME_MAX + 2], text[TG_ENV_NAME_MAX + 16];
    const char  *at0, *at2;

    (void) unused;

    at0 = "\"${\" at byte 0 is not a reference: expected ${NAME} or "
          "${NAME:-default} (NAME: a letter or \"_\", then letters, digits "
          "or \"_\", at most 128 bytes), or $${ for a literal ${";
    at2 = "\"${\" at byte 2 is not a reference: expected ${NAME} or "
          "${NAME:-default} (NAME: a letter or \"_\", then letters, digits "
          "or \"_\", at most 128 bytes), or $${ for a literal ${";

    static const char *const  at_zero[] = {
        "${", "${}", "${1A}", "${HOST", "${HOST B}", "${A-B}", "${A:x}",
        "${A:-x", "${A:-${B}}", "${ HOST}", "${HOST }", "${-}", "${é}",
        NULL
    };

    for (const char *const *s = at_zero; *s != NULL; s++) {
        refused(*s, at0, NULL);
    }

    refused("ab${", at2, NULL);

    /* what comes before a malformed one is still reported; nothing after */
    refused("${NOPE}${", "environment variable NOPE is not set",
            "\"${\" at byte 7 is not a reference: expected ${NAME} or "
            "${NAME:-default} (NAME: a letter or \"_\", then letters, digits "
            "or \"_\", at most 128 bytes), or $${ for a literal ${", NULL);
    refused("${ ${NOPE}", at0, NULL);

    /* the longest name, and one byte more */

    memset(name, 'N', TG_ENV_NAME_MAX);
    name[TG_ENV_NAME_MAX] = '\0';
    snprintf(text, sizeof(text), "${%s:-ok}", name);
    expands_to(text, "ok");

    name[TG_ENV_NAME_MAX] = 'N';
    name[TG_ENV_NAME_MAX + 1] = '\0';
    snprintf(text, sizeof(text), "${%s:-ok}", name);
    refused(text, at0, NULL);
}


static void
test_result_bound(void **unused)
{
    (void) unused;

    memset(env_long, 'x', sizeof(env_long) - 1);

    expands_to("${LONG}", env_long);

    refused("${LONG}${LONG}",
            "longer than 65536 bytes once its variables are read", NULL);
}


static void
test_no_problem_callback(void **unused)
{
    char    *out;
    tg_env   env;

    (void) unused;

    env.getenv = env_get;
    env.problem = NULL;
    env.data = NULL;
    out = NULL;

    assert_int_equal(tg_env_expand(&env, "${NOPE}${", &out), -1);
    assert_null(out);
}


static void
test_is_reference(void **unused)
{
    char  name[TG_ENV_NAME_MAX + 1];

    (void) unused;

    assert_true(tg_env_is_reference("${DEEPSEEK_API_KEY}", name));
    assert_string_equal(name, "DEEPSEEK_API_KEY");
    assert_true(tg_env_is_reference("${_}", name));
    assert_string_equal(name, "_");

    static const char *const  not_one[] = {
        "", "$", "${", "${}", "${A", "${A}x", "x${A}", "${A:-d}", "$${A}",
        "${A}${B}", "{A}", "$A", "${1}", NULL
    };

    for (const char *const *s = not_one; *s != NULL; s++) {
        assert_false(tg_env_is_reference(*s, name));
    }
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_values),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_unset_all_reported),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_result_bound),
        cmocka_unit_test(test_no_problem_callback),
        cmocka_unit_test(test_is_reference),
    };

    return cmocka_run_group_tests_name("env", tests, NULL, NULL);
}
