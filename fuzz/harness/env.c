/*
 * "${NAME}" references in one policy string (policyd/src/env.c), as the
 * policy loader expands every string value of the file.  The input is the
 * string, NUL-terminated here (JSON strings reach it that way); a few
 * variables are set, one of them long, one with a control character.
 *
 * Besides the sanitizers it checks: a string without "${" is left alone;
 * an expanded one is never longer than the bound, and a refused one had
 * at least one problem and gave no result.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "env.h"

#include "fuzz_check.h"


static char  fuzz_long[30000];


static const char *
fuzz_getenv(const char *name)
{
    if (strcmp(name, "A") == 0) {
        return "api.example.com";
    }

    if (strcmp(name, "EMPTY") == 0) {
        return "";
    }

    if (strcmp(name, "NL") == 0) {
        return "x\ny";
    }

    if (strcmp(name, "LONG") == 0) {
        return fuzz_long;
    }

    return NULL;
}


static void
fuzz_problem(void *data, const char *msg)
{
    size_t  *n = data;

    FUZZ_CHECK(msg[0] != '\0');
    (*n)++;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int      rc;
    char    *s, *out;
    size_t   problems;
    tg_env   env;

    if (fuzz_long[0] == '\0') {
        memset(fuzz_long, 'l', sizeof(fuzz_long) - 1);
    }

    s = malloc(size + 1);
    if (s == NULL) {
        return 0;
    }

    memcpy(s, data, size);
    s[size] = '\0';

    problems = 0;
    out = NULL;
    env.getenv = fuzz_getenv;
    env.problem = fuzz_problem;
    env.data = &problems;

    rc = tg_env_expand(&env, s, &out);

    if (strstr(s, "${") == NULL) {
        FUZZ_CHECK(rc == 0 && out == NULL && problems == 0);
    }

    if (rc == 1) {
        FUZZ_CHECK(out != NULL && problems == 0);
        FUZZ_CHECK(strlen(out) <= TG_ENV_RESULT_MAX);
        free(out);

    } else if (rc == -1) {
        FUZZ_CHECK(out == NULL && problems > 0);
    }

    free(s);

    return 0;
}
