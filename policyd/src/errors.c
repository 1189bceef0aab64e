/*
 * The error list used by the policy loader.
 */

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "log.h"


void
tg_errors_init(tg_errors *errs)
{
    memset(errs, 0, sizeof(*errs));
}


void
tg_errors_free(tg_errors *errs)
{
    size_t  i;

    for (i = 0; i < errs->count; i++) {
        free(errs->items[i].path);
        free(errs->items[i].message);
    }

    free(errs->items);
    tg_errors_init(errs);
}


void
tg_errors_add(tg_errors *errs, const char *path, const char *fmt, ...)
{
    int        n;
    char      *msg, *p;
    size_t     cap;
    va_list    ap;
    tg_error  *items;

    if (errs->count == errs->cap) {
        cap = errs->cap ? errs->cap * 2 : 16;
        items = realloc(errs->items, cap * sizeof(tg_error));
        if (items == NULL) {
            errs->oom = 1;
            return;
        }
        errs->items = items;
        errs->cap = cap;
    }

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);

    if (n < 0) {
        errs->oom = 1;
        return;
    }

    msg = malloc((size_t) n + 1);
    if (msg == NULL) {
        errs->oom = 1;
        return;
    }

    va_start(ap, fmt);
    vsnprintf(msg, (size_t) n + 1, fmt, ap);
    va_end(ap);

    p = NULL;
    if (path != NULL) {
        p = strdup(path);
        if (p == NULL) {
            free(msg);
            errs->oom = 1;
            return;
        }
    }

    errs->items[errs->count].path = p;
    errs->items[errs->count].message = msg;
    errs->count++;
}


const tg_error *
tg_errors_find(const tg_errors *errs, const char *path)
{
    size_t  i;

    for (i = 0; i < errs->count; i++) {
        const char  *p = errs->items[i].path;

        if ((p == NULL && path == NULL)
            || (p != NULL && path != NULL && strcmp(p, path) == 0))
        {
            return &errs->items[i];
        }
    }

    return NULL;
}


void
tg_print_errors(const char *file, const tg_errors *errs, FILE *out,
    bool as_log)
{
    size_t           i;
    const tg_error  *e;

    for (i = 0; i < errs->count; i++) {
        e = &errs->items[i];

        if (as_log) {
            if (e->path != NULL) {
                tg_log_error("policy.error", "file path message",
                             "%s: %s: %s", file, e->path, e->message);
            } else {
                tg_log_error("policy.error", "file message",
                             "%s: %s", file, e->message);
            }

        } else if (e->path != NULL) {
            fprintf(out, "%s: %s: %s\n", file, e->path, e->message);

        } else {
            fprintf(out, "%s: %s\n", file, e->message);
        }
    }

    if (errs->oom) {
        if (as_log) {
            tg_log_error("policy.no_memory", "file", "%s: out of memory", file);
        } else {
            fprintf(out, "%s: out of memory\n", file);
        }
    }
}
