/*
 * A region allocator: everything a loaded policy owns lives in one arena and
 * is freed at once, so a policy can be swapped out on reload without walking
 * its structures.
 */

#ifndef TG_ARENA_H
#define TG_ARENA_H

#include <stddef.h>


typedef struct tg_arena_chunk  tg_arena_chunk;

typedef struct {
    tg_arena_chunk  *chunks;
} tg_arena;


void tg_arena_init(tg_arena *a);
void tg_arena_free(tg_arena *a);

/* Zeroed memory, aligned for any type; NULL when out of memory. */
void *tg_arena_alloc(tg_arena *a, size_t size);

/* A NUL-terminated copy of len bytes of s. */
char *tg_arena_strndup(tg_arena *a, const char *s, size_t len);
char *tg_arena_strdup(tg_arena *a, const char *s);


#endif /* TG_ARENA_H */
