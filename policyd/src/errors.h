/*
 * A list of errors, each with an optional key path ("routes.smart.steps[1]")
 * and a message.  The policy loader collects every problem it finds here so
 * that the caller decides how to show them; nothing in it prints or exits.
 */

#ifndef TG_ERRORS_H
#define TG_ERRORS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>


typedef struct {
    char       *path;           /* key path, or NULL for the whole file */
    char       *message;
} tg_error;

typedef struct {
    tg_error   *items;
    size_t      count;
    size_t      cap;
    int         oom;            /* an error could not be recorded */
} tg_errors;


void tg_errors_init(tg_errors *errs);
void tg_errors_free(tg_errors *errs);
void tg_errors_add(tg_errors *errs, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The first error whose path equals path (NULL matches path-less ones). */
const tg_error *tg_errors_find(const tg_errors *errs, const char *path);

/*
 * Each error as "file: path: message", to out, or to the log when as_log;
 * "out of memory" too when one could not be recorded.
 */
void tg_print_errors(const char *file, const tg_errors *errs, FILE *out,
    bool as_log);


#endif /* TG_ERRORS_H */
