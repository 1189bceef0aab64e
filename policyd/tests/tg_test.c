/*
 * Helpers shared by the unit tests.
 */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "tg_test.h"


const char *
tg_test_getenv(const char *name)
{
    if (strcmp(name, "DEEPSEEK_API_KEY") == 0) {
        return "sk-deep";
    }

    if (strcmp(name, "OPENROUTER_API_KEY") == 0) {
        return "sk-or";
    }

    if (strcmp(name, "EMPTY_KEY") == 0) {
        return "";
    }

    if (strcmp(name, "CONTROL_KEY") == 0) {
        return "a\nb";
    }

    /* for "${NAME}" in the other strings */

    static const char *const  vars[][2] = {
        { "TG_HOST", "api.example.com" },
        { "TG_BASE", "/v2" },
        { "TG_UPSTREAM", "tg_up" },
        { "TG_MODEL", "qwen-7b" },
        { "TG_SOCK", "/tmp/tg-env.sock" },
        { "TG_GROUP", "root" },
        { "TG_ZONE", "private" },
        { "TG_ALL_ENDPOINTS", "chat" },
    };

    for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++) {
        if (strcmp(name, vars[i][0]) == 0) {
            return vars[i][1];
        }
    }

    return NULL;
}


tg_policy_opts
tg_test_opts(void)
{
    tg_policy_opts  opts;

    memset(&opts, 0, sizeof(opts));
    opts.getenv = tg_test_getenv;
    opts.now = TG_TEST_NOW;

    return opts;
}


static void
tg_test_print_errors(const tg_errors *errs)
{
    size_t  i;

    for (i = 0; i < errs->count; i++) {
        print_message("policy error: %s: %s\n",
                      errs->items[i].path ? errs->items[i].path : "(file)",
                      errs->items[i].message);
    }
}


static char *
tg_test_quotes(const char *text)
{
    char  *s, *p;

    s = strdup(text);
    assert_non_null(s);

    for (p = s; *p != '\0'; p++) {
        if (*p == '\'') {
            *p = '"';
        }
    }

    return s;
}


tg_policy *
tg_test_policy(const char *text)
{
    tg_errors        errs;
    tg_policy       *p;
    tg_policy_opts   opts = tg_test_opts();

    char            *json = tg_test_quotes(text);

    tg_errors_init(&errs);

    p = tg_policy_parse("test.json", json, strlen(json), &opts, &errs);
    free(json);

    if (p == NULL) {
        tg_test_print_errors(&errs);
    }

    assert_non_null(p);
    assert_int_equal(errs.count, 0);

    tg_errors_free(&errs);

    return p;
}


void
tg_test_refuse(const char *text, tg_errors *errs)
{
    tg_policy       *p;
    tg_policy_opts   opts = tg_test_opts();

    char            *json = tg_test_quotes(text);

    tg_errors_init(errs);

    p = tg_policy_parse("test.json", json, strlen(json), &opts, errs);
    free(json);

    assert_null(p);
    assert_true(errs->count > 0);
}


void
tg_test_has_error(const tg_errors *errs, const char *path,
    const char *message)
{
    size_t  i;

    for (i = 0; i < errs->count; i++) {
        const tg_error  *e = &errs->items[i];

        if (((path == NULL && e->path == NULL)
             || (path != NULL && e->path != NULL
                 && strcmp(path, e->path) == 0))
            && strcmp(message, e->message) == 0)
        {
            return;
        }
    }

    print_message("expected error: %s: %s\n", path ? path : "(file)",
                  message);
    tg_test_print_errors(errs);
    fail();
}


void
tg_test_refusals(const tg_test_refusal *rows, size_t n)
{
    size_t     i, k;
    tg_errors  errs;

    for (i = 0; i < n; i++) {
        tg_test_refuse(rows[i].policy, &errs);

        for (k = 0; k < TG_TEST_ERRORS_MAX && rows[i].errors[k].message != NULL; k++) {
            tg_test_has_error(&errs, rows[i].errors[k].path,
                              rows[i].errors[k].message);
        }

        if (rows[i].count != 0) {
            assert_int_equal(errs.count, rows[i].count);
        }

        tg_errors_free(&errs);
    }
}


char *
tg_test_write_file(const void *content, size_t len)
{
    int    fd;
    char  *name;

    name = strdup("/tmp/tg_test_XXXXXX");
    assert_non_null(name);

    fd = mkstemp(name);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, content, len), (ssize_t) len);
    close(fd);

    return name;
}
