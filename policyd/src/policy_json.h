/*
 * What the policy loader's files share (policy_load.c, policy_provider.c,
 * policy_route.c): the loader, its errors with their key paths, readers
 * of JSON members, and the loader of an object of named children.  Not
 * for the rest of policyd, which sees only policy.h.
 */

#ifndef TG_POLICY_JSON_H
#define TG_POLICY_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "policy.h"


#define TG_PATH_LEN         1024

#define TG_STR(x)           TG_STR_(x)
#define TG_STR_(x)          #x


#define TG_ENV_FAILED_MAX   64


typedef struct {
    tg_policy             *p;
    tg_errors             *errs;
    const tg_policy_opts  *opts;
    size_t                 errors_before;
    bool                   oom;

    /* key paths whose "${NAME}" failed: their values are not judged */
    char                  *env_failed[TG_ENV_FAILED_MAX];
    size_t                 nenv_failed;
} tg_loader;


/* Adds an error at path, but not at a path whose variables failed. */
void tg_load_error(tg_loader *ld, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* "parent.key" and "parent[i]" into buf (TG_PATH_LEN), cut with "..." */
void tg_key_path(char *buf, const char *parent, const char *key);
void tg_index_path(char *buf, const char *parent, size_t i);

const cJSON *tg_member(const cJSON *obj, const char *key);

/* Reports each duplicate key, and each not in known (NULL: any name). */
void tg_check_keys(tg_loader *ld, const cJSON *obj, const char *path,
    const char *const *known);

/* 1: a string in *out, 0: absent, -1: wrong type or missing (reported) */
int tg_member_string(tg_loader *ld, const cJSON *obj, const char *key,
    const char *path, bool required, const char **out);

/* 1: an integer from min to max in *out, 0: absent, -1: wrong (reported) */
int tg_member_uint(tg_loader *ld, const cJSON *obj, const char *key,
    const char *path, uint32_t min, uint32_t max, uint32_t *out);

int tg_member_bool(tg_loader *ld, const cJSON *obj, const char *key,
    const char *path, bool *out);

/* An http:// or https:// URL at key, copied to *url (policy_provider.c) */
void tg_load_url(tg_loader *ld, const cJSON *obj, const char *key,
    const char *path, const char **url);

/* A copy in the policy's arena; NULL (and ld->oom) when out of memory. */
char *tg_copy(tg_loader *ld, const char *s);

bool tg_is_name_char(int c);
bool tg_has_control(const char *s);


/*
 * "providers": { "name": { ... }, ... }: a required, non-empty object
 * whose children are found by name, each in a struct of its own kind.
 */
typedef struct {
    const char   *key;              /* "providers" */
    const char   *none;             /* the error when it is empty */
    bool        (*name_ok)(const char *name, size_t len);
    const char   *bad_name;         /* the error when name_ok() says no */
    size_t        size;             /* of one child: sizeof(tg_provider) */

    /* loads child i of the array, and names it (copied, with its index) */
    void        (*load)(tg_loader *ld, void *child, size_t i,
                    const char *name, const cJSON *item, const char *path);

    /* the name that load() gave a child */
    const char *(*name_of)(const void *child, size_t *len);
} tg_named_kind;

/*
 * Checks the object and every name, reports each duplicate (the first of
 * a name is the one found), loads each child in the order of the file and
 * enters it in a hash table of names.  Returns the array, or NULL after
 * an error; *n counts the children loaded so far (all of them, but after
 * running out of memory).
 */
void *tg_load_named(tg_loader *ld, const cJSON *root,
    const tg_named_kind *kind, size_t *n, uint32_t **table, size_t *mask);


/*
 * policy_env.c: every "${NAME}" in the tree's string values replaced, each
 * problem reported at its key path; the secrets (providers' api_key,
 * redis.password) are left for their loaders.
 */
void tg_env_expand_policy(tg_loader *ld, cJSON *root);

/*
 * A secret: value must be one "${NAME}" (else literal is the error), set,
 * not empty, without control characters.  Returns the environment's value
 * (not a copy), or NULL after reporting at path; *name is NAME, copied.
 */
const char *tg_env_secret(tg_loader *ld, const char *value, const char *path,
    const char *literal, const char **name);


/* the parts of a policy, each in its file */
void tg_load_providers(tg_loader *ld, const cJSON *root);
void tg_load_scrub(tg_loader *ld, const cJSON *root);     /* before those */
void tg_load_provider_scrub(tg_loader *ld, tg_provider *pr,
    const cJSON *item, const char *path);
void tg_load_routes(tg_loader *ld, const cJSON *root);
void tg_load_limits(tg_loader *ld, const cJSON *root);    /* after routes */
void tg_load_redis(tg_loader *ld, const cJSON *root);
void tg_load_jwks(tg_loader *ld, const cJSON *root);

/* policy_usage.c: a provider's "usage", then the top level's "usage" */
void tg_load_usage_mode(tg_loader *ld, tg_provider *pr, const cJSON *item,
    const char *path);
void tg_load_usage(tg_loader *ld, const cJSON *root);

#endif /* TG_POLICY_JSON_H */
