/*
 * Reading the policy's JSON: every problem is reported with its key path
 * ("routes.chat.steps[1].model") and what was expected, and loading goes
 * on, so that one run of "policyd -t" shows them all.
 */

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy_json.h"


static uint32_t *tg_table_new(tg_loader *ld, size_t n, size_t *mask);
static void tg_table_insert(uint32_t *table, size_t mask, const char *name,
    size_t len, uint32_t value, const tg_named_kind *kind,
    const char *children);


void
tg_load_error(tg_loader *ld, const char *path, const char *fmt, ...)
{
    char     msg[1024];
    size_t   i;
    va_list  ap;

    /* the problem with such a value was its variable, said already */

    for (i = 0; path != NULL && i < ld->nenv_failed; i++) {
        if (strcmp(ld->env_failed[i], path) == 0) {
            return;
        }
    }

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);

    tg_errors_add(ld->errs, path, "%s", msg);
}


void
tg_key_path(char *buf, const char *parent, const char *key)
{
    int  n;

    if (parent[0] == '\0') {
        n = snprintf(buf, TG_PATH_LEN, "%s", key);
    } else {
        n = snprintf(buf, TG_PATH_LEN, "%s.%s", parent, key);
    }

    if (n >= TG_PATH_LEN) {
        memcpy(buf + TG_PATH_LEN - 4, "...", 4);
    }
}


void
tg_index_path(char *buf, const char *parent, size_t i)
{
    int  n;

    n = snprintf(buf, TG_PATH_LEN, "%s[%zu]", parent, i);

    if (n >= TG_PATH_LEN) {
        memcpy(buf + TG_PATH_LEN - 4, "...", 4);
    }
}


const cJSON *
tg_member(const cJSON *obj, const char *key)
{
    const cJSON  *c;

    for (c = obj->child; c != NULL; c = c->next) {
        if (c->string != NULL && strcmp(c->string, key) == 0) {
            return c;
        }
    }

    return NULL;
}



typedef struct {
    const char  *name;
    size_t       pos;
} tg_key_at;


/* keys by name, equal names by their place in the object */

static int
tg_key_order(const void *a, const void *b)
{
    int               rc;
    const tg_key_at  *x = a, *y = b;

    rc = strcmp(x->name, y->name);

    if (rc != 0) {
        return rc;
    }

    return (x->pos < y->pos) ? -1 : (x->pos > y->pos);
}


void
tg_check_keys(tg_loader *ld, const cJSON *obj, const char *path,
    const char *const *known)
{
    char                path_buf[TG_PATH_LEN];
    bool               *dup;
    size_t              n, i;
    tg_key_at          *keys;
    const cJSON        *c;
    const char *const  *k;

    /*
     * Duplicates found by sorting, not by comparing each key with those
     * before it: an object of 100k routes took 45 s that way.  Of equal
     * keys the first in the object is kept, the others are errors.
     */

    n = 0;

    for (c = obj->child; c != NULL; c = c->next) {
        n++;
    }

    keys = malloc((n ? n : 1) * sizeof(*keys));
    dup = calloc(n ? n : 1, sizeof(*dup));

    if (keys == NULL || dup == NULL) {
        free(keys);
        free(dup);
        tg_load_error(ld, path, "out of memory");
        return;
    }

    for (c = obj->child, i = 0; c != NULL; c = c->next, i++) {
        keys[i].name = c->string != NULL ? c->string : "";
        keys[i].pos = i;
    }

    qsort(keys, n, sizeof(*keys), tg_key_order);

    for (i = 1; i < n; i++) {
        if (strcmp(keys[i - 1].name, keys[i].name) == 0) {
            dup[keys[i].pos] = true;
        }
    }

    for (c = obj->child, i = 0; c != NULL; c = c->next, i++) {
        tg_key_path(path_buf, path, c->string != NULL ? c->string : "");

        if (dup[i]) {
            tg_load_error(ld, path_buf, "duplicate key");
            continue;
        }

        if (known == NULL) {
            continue;
        }

        for (k = known; *k != NULL; k++) {
            if (strcmp(*k, c->string) == 0) {
                break;
            }
        }

        if (*k == NULL) {
            tg_load_error(ld, path_buf, "unknown key");
        }
    }

    free(keys);
    free(dup);
}


int
tg_member_string(tg_loader *ld, const cJSON *obj, const char *key,
    const char *path, bool required, const char **out)
{
    char          path_buf[TG_PATH_LEN];
    const cJSON  *v;

    tg_key_path(path_buf, path, key);

    v = tg_member(obj, key);

    if (v == NULL) {
        if (required) {
            tg_load_error(ld, path_buf, "missing required key");
            return -1;
        }
        return 0;
    }

    if (!cJSON_IsString(v) || v->valuestring == NULL) {
        tg_load_error(ld, path_buf, "expected a string");
        return -1;
    }

    *out = v->valuestring;

    return 1;
}


int
tg_member_uint(tg_loader *ld, const cJSON *obj, const char *key,
    const char *path, uint32_t min, uint32_t max, uint32_t *out)
{
    char          path_buf[TG_PATH_LEN];
    double        d;
    const cJSON  *v;

    v = tg_member(obj, key);

    if (v == NULL) {
        return 0;
    }

    d = cJSON_IsNumber(v) ? v->valuedouble : -1;

    if (d < min || d > max || d != (double) (uint32_t) d) {
        tg_key_path(path_buf, path, key);
        tg_load_error(ld, path_buf, "expected an integer from %u to %u",
                      min, max);
        return -1;
    }

    *out = (uint32_t) d;

    return 1;
}


int
tg_member_bool(tg_loader *ld, const cJSON *obj, const char *key,
    const char *path, bool *out)
{
    char          path_buf[TG_PATH_LEN];
    const cJSON  *v;

    v = tg_member(obj, key);

    if (v == NULL) {
        return 0;
    }

    if (!cJSON_IsBool(v)) {
        tg_key_path(path_buf, path, key);
        tg_load_error(ld, path_buf, "expected true or false");
        return -1;
    }

    *out = cJSON_IsTrue(v);

    return 1;
}


char *
tg_copy(tg_loader *ld, const char *s)
{
    char  *p;

    p = tg_arena_strdup(&ld->p->arena, s);
    if (p == NULL) {
        ld->oom = true;
    }

    return p;
}




void *
tg_load_named(tg_loader *ld, const cJSON *root, const tg_named_kind *kind,
    size_t *n, uint32_t **table, size_t *mask)
{
    int           count;
    char          path[TG_PATH_LEN], *children, *child;
    size_t        i, len;
    const cJSON  *obj, *c;

    obj = tg_member(root, kind->key);

    if (obj == NULL) {
        tg_load_error(ld, kind->key, "missing required key");
        return NULL;
    }

    if (!cJSON_IsObject(obj)) {
        tg_load_error(ld, kind->key, "expected an object");
        return NULL;
    }

    count = cJSON_GetArraySize(obj);
    if (count == 0) {
        tg_load_error(ld, kind->key, "%s", kind->none);
        return NULL;
    }

    tg_check_keys(ld, obj, kind->key, NULL);

    children = tg_arena_alloc(&ld->p->arena, (size_t) count * kind->size);
    *table = tg_table_new(ld, (size_t) count, mask);

    if (children == NULL || *table == NULL) {
        ld->oom = true;
        return NULL;
    }

    i = 0;
    for (c = obj->child; c != NULL; c = c->next, i++) {
        len = strlen(c->string);
        child = children + i * kind->size;

        tg_key_path(path, kind->key, c->string);

        if (!kind->name_ok(c->string, len)) {
            tg_load_error(ld, path, "%s", kind->bad_name);
        }

        *n = i + 1;
        kind->load(ld, child, i, c->string, c, path);

        if (kind->name_of(child, &len) == NULL) {
            /* out of memory for its name */
            return children;
        }

        /* a duplicate was reported by tg_check_keys(); the first one wins */
        tg_table_insert(*table, *mask, c->string, len, (uint32_t) i + 1, kind,
                        children);
    }

    return children;
}


/* hash tables of names: open addressing, linear probing */

static uint32_t *
tg_table_new(tg_loader *ld, size_t n, size_t *mask)
{
    size_t  size;

    for (size = 8; size < n * 2; size *= 2) { /* void */ }

    *mask = size - 1;

    return tg_arena_alloc(&ld->p->arena, size * sizeof(uint32_t));
}


static void
tg_table_insert(uint32_t *table, size_t mask, const char *name, size_t len,
    uint32_t value, const tg_named_kind *kind, const char *children)
{
    size_t       i, l;
    const char  *s;

    for (i = tg_name_hash(name, len) & mask; table[i] != 0;
         i = (i + 1) & mask)
    {
        s = kind->name_of(children + (table[i] - 1) * kind->size, &l);
        if (l == len && memcmp(s, name, len) == 0) {
            return;
        }
    }

    table[i] = value;
}


/* value checks */

bool
tg_is_name_char(int c)
{
    return isalnum(c) || c == '_' || c == '.' || c == '-';
}


bool
tg_has_control(const char *s)
{
    for ( /* void */ ; *s != '\0'; s++) {
        if ((unsigned char) *s < 0x20 || *s == 0x7f) {
            return true;
        }
    }

    return false;
}
