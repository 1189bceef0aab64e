/*
 * The region allocator behind a loaded policy.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"


#define TG_ARENA_CHUNK  8192
#define TG_ARENA_ALIGN  16


struct tg_arena_chunk {
    tg_arena_chunk  *next;
    size_t           size;
    size_t           used;
    _Alignas(TG_ARENA_ALIGN) unsigned char  data[];
};


void
tg_arena_init(tg_arena *a)
{
    a->chunks = NULL;
}


void
tg_arena_free(tg_arena *a)
{
    tg_arena_chunk  *c, *next;

    for (c = a->chunks; c != NULL; c = next) {
        next = c->next;
        free(c);
    }

    a->chunks = NULL;
}


void *
tg_arena_alloc(tg_arena *a, size_t size)
{
    size_t           chunk_size;
    tg_arena_chunk  *c;
    void            *p;

    if (size == 0) {
        size = 1;
    }

    if (size > SIZE_MAX - TG_ARENA_ALIGN - sizeof(tg_arena_chunk)) {
        return NULL;
    }

    size = (size + TG_ARENA_ALIGN - 1) & ~((size_t) TG_ARENA_ALIGN - 1);

    c = a->chunks;

    if (c == NULL || c->size - c->used < size) {
        chunk_size = size > TG_ARENA_CHUNK ? size : TG_ARENA_CHUNK;

        c = malloc(sizeof(tg_arena_chunk) + chunk_size);
        if (c == NULL) {
            return NULL;
        }

        c->size = chunk_size;
        c->used = 0;

        if (a->chunks != NULL && chunk_size > TG_ARENA_CHUNK) {
            /* a big block: keep filling the current chunk afterwards */
            c->next = a->chunks->next;
            a->chunks->next = c;

        } else {
            c->next = a->chunks;
            a->chunks = c;
        }
    }

    p = c->data + c->used;
    c->used += size;

    memset(p, 0, size);

    return p;
}


char *
tg_arena_strndup(tg_arena *a, const char *s, size_t len)
{
    char  *p;

    if (len == SIZE_MAX) {
        return NULL;
    }

    p = tg_arena_alloc(a, len + 1);
    if (p == NULL) {
        return NULL;
    }

    memcpy(p, s, len);
    p[len] = '\0';

    return p;
}


char *
tg_arena_strdup(tg_arena *a, const char *s)
{
    return tg_arena_strndup(a, s, strlen(s));
}
