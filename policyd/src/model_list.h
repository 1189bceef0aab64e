/*
 * A provider's own model list (GET .../models, OpenAI's shape:
 * {"data":[{"id":"..."},...]}) read into the names a pattern route lists
 * in /v1/models, as a pure function: model_fetch.c fetches and keeps
 * them, tests/test_models.c checks this without a socket.
 */

#ifndef TG_MODEL_LIST_H
#define TG_MODEL_LIST_H

#include <stdbool.h>
#include <stddef.h>


#define TG_MODEL_LIST_MAX   100000      /* names kept of one list */


/* whether the route lists this name (its allow and deny, no other route) */
typedef bool (*tg_model_keep_pt)(const char *name, size_t len, void *data);

/*
 * The ids of the list in text, in its order: each one a string of 1 to
 * max_len bytes without control characters or "*", kept by keep(), and
 * listed once.  *names is one malloc()ed block (free() it alone): *n
 * pointers, then the strings.  0 (*n may be 0), or -1 with why: not such
 * a document, or out of memory.
 */
int tg_model_list_read(const char *text, size_t len, size_t max_len,
    tg_model_keep_pt keep, void *data, const char ***names, size_t *n,
    char *why, size_t whylen);


#endif /* TG_MODEL_LIST_H */
