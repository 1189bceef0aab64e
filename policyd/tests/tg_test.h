/*
 * Helpers shared by the unit tests.  Include after cmocka.h.
 */

#ifndef TG_TEST_H
#define TG_TEST_H

#include "errors.h"
#include "policy.h"


#define TG_TEST_NOW  1790000000


/* A fixed environment: DEEPSEEK_API_KEY=sk-deep, OPENROUTER_API_KEY=sk-or,
 * EMPTY_KEY="", CONTROL_KEY="a\nb", TG_HOST=api.example.com, TG_BASE=/v2,
 * TG_UPSTREAM=tg_up, TG_MODEL=qwen-7b, TG_SOCK=/tmp/tg-env.sock,
 * TG_GROUP=root, TG_ZONE=private, TG_ALL_ENDPOINTS=chat; nothing else. */
const char *tg_test_getenv(const char *name);

/* Options with tg_test_getenv and TG_TEST_NOW. */
tg_policy_opts tg_test_opts(void);

/*
 * In the two functions below, every ' in text is turned into " first, so
 * that policies read well inside C strings; write \u0027 for a real '.
 */

/* Parses text that must be a good policy (fails the test otherwise). */
tg_policy *tg_test_policy(const char *text);

/* Parses text that must be refused; errs gets the errors. */
void tg_test_refuse(const char *text, tg_errors *errs);

/* Fails the test unless errs has path with exactly message. */
void tg_test_has_error(const tg_errors *errs, const char *path,
    const char *message);

/* a policy that must be refused, and errors it must have */
#define TG_TEST_ERRORS_MAX  16

typedef struct {
    const char  *path;                  /* NULL: of the file itself */
    const char  *message;
} tg_test_error;

typedef struct {
    const char     *policy;             /* as for tg_test_refuse() */
    size_t          count;              /* errors in all; 0: not checked */
    tg_test_error   errors[TG_TEST_ERRORS_MAX];     /* to a NULL message */
} tg_test_refusal;

/* tg_test_refuse() and tg_test_has_error() for every row, in order. */
void tg_test_refusals(const tg_test_refusal *rows, size_t n);

#define TG_TEST_REFUSALS(rows)                                                \
    tg_test_refusals(rows, sizeof(rows) / sizeof(rows[0]))


/* Writes content to a new temporary file; returns its malloc'd name. */
char *tg_test_write_file(const void *content, size_t len);


#endif /* TG_TEST_H */
