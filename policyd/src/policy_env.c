/*
 * "${NAME}" in the policy (env.h): the file's tree is walked once, before
 * anything is read from it, and every string value that holds a reference
 * is replaced by its expansion.  So every key that takes a string takes
 * references the same way — hosts, paths, URLs, groups, models, edits —
 * and every problem is reported with the key path of its string: one run
 * of "policyd -t" lists every variable that is missing.
 *
 * Secrets are the exception: a provider's api_key and redis.password are
 * one "${NAME}" and nothing else, so that no secret is ever written in the
 * file; the walk leaves them alone and their loaders read them with
 * tg_env_secret().  Object keys (provider and route names) are names, not
 * values, and are never expanded.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "env.h"
#include "errors.h"
#include "policy_json.h"


typedef enum {
    TG_ENV_AT_ROOT,
    TG_ENV_AT_PROVIDERS,
    TG_ENV_AT_PROVIDER,
    TG_ENV_AT_REDIS,
    TG_ENV_AT_OTHER
} tg_env_at;


typedef struct {
    tg_loader   *ld;
    tg_env       env;
    bool         failed;        /* the string being expanded */
    char         path[TG_PATH_LEN];
} tg_env_walk;


static void tg_env_walk_node(tg_env_walk *w, cJSON *node, tg_env_at at);
static void tg_env_walk_string(tg_env_walk *w, cJSON *node);
static size_t tg_env_path_push(tg_env_walk *w, const char *key, size_t i);
static void tg_env_report(void *data, const char *msg);
static bool tg_env_is_secret(tg_env_at at, const char *key);


void
tg_env_expand_policy(tg_loader *ld, cJSON *root)
{
    tg_env_walk  w;

    w.ld = ld;
    w.env.getenv = ld->opts->getenv;
    w.env.problem = tg_env_report;
    w.env.data = &w;
    w.path[0] = '\0';

    tg_env_walk_node(&w, root, TG_ENV_AT_ROOT);
}


const char *
tg_env_secret(tg_loader *ld, const char *value, const char *path,
    const char *literal, const char **name_out)
{
    char         name[TG_ENV_NAME_MAX + 1];
    tg_env       env;
    const char  *secret;

    if (!tg_env_is_reference(value, name)) {
        tg_load_error(ld, path, "%s", literal);
        return NULL;
    }

    *name_out = tg_copy(ld, name);
    if (*name_out == NULL) {
        return NULL;
    }

    /* policyd explain -c: the decision needs no secret, so none is read */

    if (ld->opts->secrets_unread) {
        return "not-read-by-explain";
    }

    env.getenv = ld->opts->getenv;
    env.problem = NULL;
    env.data = NULL;

    secret = tg_env_get(&env, name);

    if (secret == NULL || secret[0] == '\0') {
        tg_load_error(ld, path, "environment variable %s is %s", name,
                      secret == NULL ? "not set" : "empty");
        return NULL;
    }

    if (tg_has_control(secret)) {
        tg_load_error(ld, path, "environment variable %s contains control "
                      "characters", name);
        return NULL;
    }

    return secret;
}


static void
tg_env_walk_node(tg_env_walk *w, cJSON *node, tg_env_at at)
{
    size_t     len, i;
    cJSON     *c;
    tg_env_at  next;

    if (cJSON_IsString(node)) {
        tg_env_walk_string(w, node);
        return;
    }

    if (!cJSON_IsObject(node) && !cJSON_IsArray(node)) {
        return;
    }

    for (c = node->child, i = 0; c != NULL; c = c->next, i++) {

        next = TG_ENV_AT_OTHER;

        if (cJSON_IsObject(node)) {
            if (c->string == NULL || tg_env_is_secret(at, c->string)) {
                continue;
            }

            if (at == TG_ENV_AT_ROOT && strcmp(c->string, "providers") == 0) {
                next = TG_ENV_AT_PROVIDERS;

            } else if (at == TG_ENV_AT_ROOT
                       && strcmp(c->string, "redis") == 0)
            {
                next = TG_ENV_AT_REDIS;

            } else if (at == TG_ENV_AT_PROVIDERS) {
                next = TG_ENV_AT_PROVIDER;
            }
        }

        len = tg_env_path_push(w, cJSON_IsObject(node) ? c->string : NULL, i);
        tg_env_walk_node(w, c, next);
        w->path[len] = '\0';
    }
}


static bool
tg_env_is_secret(tg_env_at at, const char *key)
{
    return (at == TG_ENV_AT_PROVIDER && strcmp(key, "api_key") == 0)
           || (at == TG_ENV_AT_REDIS && strcmp(key, "password") == 0);
}


static void
tg_env_walk_string(tg_env_walk *w, cJSON *node)
{
    int    rc;
    char  *expanded, *copy;

    if (node->valuestring == NULL) {
        return;
    }

    w->failed = false;

    rc = tg_env_expand(&w->env, node->valuestring, &expanded);

    if (rc != 1) {
        return;
    }

    /* the tree's strings are cJSON's to free */

    copy = cJSON_malloc(strlen(expanded) + 1);
    if (copy == NULL) {
        free(expanded);
        w->ld->oom = true;
        return;
    }

    strcpy(copy, expanded);
    free(expanded);

    cJSON_free(node->valuestring);
    node->valuestring = copy;
}


/* ".key" or "[i]" after the path; returns the length before it */

static size_t
tg_env_path_push(tg_env_walk *w, const char *key, size_t i)
{
    int     n;
    size_t  len, room;

    len = strlen(w->path);
    room = TG_PATH_LEN - len;

    if (key == NULL) {
        n = snprintf(w->path + len, room, "[%zu]", i);
    } else if (len == 0) {
        n = snprintf(w->path + len, room, "%s", key);
    } else {
        n = snprintf(w->path + len, room, ".%s", key);
    }

    if (n < 0 || (size_t) n >= room) {
        memcpy(w->path + TG_PATH_LEN - 4, "...", 4);
    }

    return len;
}


static void
tg_env_report(void *data, const char *msg)
{
    char         *path;
    tg_env_walk  *w = data;
    tg_loader    *ld = w->ld;

    if (strcmp(msg, "out of memory") == 0) {
        ld->oom = true;
        return;
    }

    tg_errors_add(ld->errs, w->path, "%s", msg);

    /* what the loader would say of the value as it stands is noise */

    if (!w->failed && ld->nenv_failed < TG_ENV_FAILED_MAX) {
        path = strdup(w->path);
        if (path == NULL) {
            ld->oom = true;
            return;
        }

        ld->env_failed[ld->nenv_failed++] = path;
    }

    w->failed = true;
}
