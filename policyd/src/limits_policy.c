/*
 * "limits": { "profiles": { "agents": { "rpm", "tpm", "concurrent",
 * "budget": { "day", "month" } } }, "default", "tenants", "routes" }:
 * named limit profiles and what they are attached to (docs/policy.md,
 * "Limits").  A provider's own "rpm" and "tpm" are read with the provider
 * (policy_provider.c).  Read after the routes, whose names it checks.
 */

#include <ctype.h>
#include <string.h>

#include "policy_json.h"


static void tg_load_profile(tg_loader *ld, tg_limit_profile *lp,
    const cJSON *item, const char *path);
static void tg_load_budget(tg_loader *ld, tg_limit_profile *lp,
    const cJSON *item, const char *path);
static const tg_limit_profile *tg_profile_named(tg_loader *ld,
    const cJSON *v, const char *path);
static bool tg_limit_name_ok(const char *s, size_t len);


static const char *const  tg_limits_keys[] = {
    "profiles", "default", "tenants", "routes", "state_file", NULL
};

static const char *const  tg_profile_keys[] = {
    "rpm", "tpm", "concurrent", "budget", NULL
};

static const char *const  tg_budget_keys[] = { "day", "month", NULL };


void
tg_load_limits(tg_loader *ld, const cJSON *root)
{
    int              n;
    char             path[TG_PATH_LEN];
    size_t           i, j, len;
    const char      *s;
    const cJSON     *limits, *obj, *c;
    tg_limits_conf  *lc = &ld->p->limits;
    const tg_route  *rt;

    limits = tg_member(root, "limits");

    if (limits == NULL) {
        return;
    }

    if (!cJSON_IsObject(limits)) {
        tg_load_error(ld, "limits", "expected an object");
        return;
    }

    tg_check_keys(ld, limits, "limits", tg_limits_keys);

    /* where the budgets' spend is kept across restarts (limits_state.c) */

    if (tg_member_string(ld, limits, "state_file", "limits", false, &s)
        == 1)
    {
        if (s[0] != '/' || tg_has_control(s) || strlen(s) > 4000) {
            tg_load_error(ld, "limits.state_file", "expected an absolute "
                          "file path");
        } else {
            lc->state_file = tg_copy(ld, s);
        }
    }

    /* the profiles first: everything else names them */

    obj = tg_member(limits, "profiles");

    if (obj != NULL && !cJSON_IsObject(obj)) {
        tg_load_error(ld, "limits.profiles", "expected an object of limit "
                      "profiles by name");

    } else if (obj != NULL && (n = cJSON_GetArraySize(obj)) > 0) {
        tg_check_keys(ld, obj, "limits.profiles", NULL);

        lc->profiles = tg_arena_alloc(&ld->p->arena,
                                      (size_t) n * sizeof(tg_limit_profile));
        if (lc->profiles == NULL) {
            ld->oom = true;
            return;
        }

        for (c = obj->child; c != NULL; c = c->next) {
            tg_key_path(path, "limits.profiles", c->string);
            len = strlen(c->string);

            if (!tg_limit_name_ok(c->string, len)) {
                tg_load_error(ld, path, "limit profile names are 1 to %d "
                              "letters, digits, \"_\", \"-\", \":\" or \".\"",
                              TG_LIMIT_NAME_MAX);
                continue;
            }

            /* a duplicate was reported by tg_check_keys() */

            for (j = 0; j < lc->nprofiles; j++) {
                if (strcmp(lc->profiles[j].name, c->string) == 0) {
                    break;
                }
            }

            if (j < lc->nprofiles) {
                continue;
            }

            lc->profiles[lc->nprofiles].name = tg_copy(ld, c->string);
            lc->profiles[lc->nprofiles].name_len = len;
            tg_load_profile(ld, &lc->profiles[lc->nprofiles], c, path);
            lc->nprofiles++;
        }
    }

    obj = tg_member(limits, "default");

    if (obj != NULL) {
        lc->default_profile = tg_profile_named(ld, obj, "limits.default");
    }

    /* "tenants": { "acme": "team" } */

    obj = tg_member(limits, "tenants");

    if (obj != NULL && !cJSON_IsObject(obj)) {
        tg_load_error(ld, "limits.tenants", "expected an object: tenant "
                      "name to limit profile name");

    } else if (obj != NULL && (n = cJSON_GetArraySize(obj)) > 0) {
        tg_check_keys(ld, obj, "limits.tenants", NULL);

        lc->tenants = tg_arena_alloc(&ld->p->arena,
                                     (size_t) n * sizeof(tg_limit_binding));
        if (lc->tenants == NULL) {
            ld->oom = true;
            return;
        }

        for (c = obj->child; c != NULL; c = c->next) {
            tg_key_path(path, "limits.tenants", c->string);
            len = strlen(c->string);

            for (i = 0; i < len; i++) {
                if (!(isalnum((unsigned char) c->string[i])
                      || strchr("_-.@:", c->string[i])))
                {
                    break;
                }
            }

            if (len == 0 || len > TG_TENANT_MAX || i < len) {
                tg_load_error(ld, path, "expected a tenant name of 1 to %d "
                              "letters, digits and \"_-.@:\"", TG_TENANT_MAX);
                continue;
            }

            lc->tenants[lc->ntenants].name = tg_copy(ld, c->string);
            lc->tenants[lc->ntenants].profile = tg_profile_named(ld, c, path);
            lc->ntenants++;
        }
    }

    /* "routes": { "smart": "team" } */

    obj = tg_member(limits, "routes");

    if (obj != NULL && !cJSON_IsObject(obj)) {
        tg_load_error(ld, "limits.routes", "expected an object: route name "
                      "to limit profile name");
        return;
    }

    if (obj == NULL || obj->child == NULL) {
        return;
    }

    tg_check_keys(ld, obj, "limits.routes", NULL);

    if (ld->p->nroutes == 0) {
        return;                         /* "routes" was reported already */
    }

    lc->routes = tg_arena_alloc(&ld->p->arena,
                                ld->p->nroutes * sizeof(tg_limit_profile *));
    if (lc->routes == NULL) {
        ld->oom = true;
        return;
    }

    for (c = obj->child; c != NULL; c = c->next) {
        tg_key_path(path, "limits.routes", c->string);

        rt = tg_policy_route(ld->p, c->string, strlen(c->string));

        if (rt == NULL) {
            tg_load_error(ld, path, "no route named \"%.64s\" in \"routes\"",
                          c->string);
            continue;
        }

        if (lc->routes[rt->index] == NULL) {
            lc->routes[rt->index] = tg_profile_named(ld, c, path);
        }
    }
}


static void
tg_load_profile(tg_loader *ld, tg_limit_profile *lp, const cJSON *item,
    const char *path)
{
    if (!cJSON_IsObject(item)) {
        tg_load_error(ld, path, "expected an object of \"rpm\", \"tpm\", "
                      "\"concurrent\" and \"budget\"");
        return;
    }

    tg_check_keys(ld, item, path, tg_profile_keys);

    (void) tg_member_uint(ld, item, "rpm", path, 1, TG_LIMIT_RATE_MAX,
                          &lp->rpm);
    (void) tg_member_uint(ld, item, "tpm", path, 1, TG_LIMIT_RATE_MAX,
                          &lp->tpm);
    (void) tg_member_uint(ld, item, "concurrent", path, 1,
                          TG_LIMIT_CONCURRENT_MAX, &lp->concurrent);

    tg_load_budget(ld, lp, item, path);

    if (item->child == NULL) {
        tg_load_error(ld, path, "expected at least one of \"rpm\", \"tpm\", "
                      "\"concurrent\", \"budget\"");
    }
}


/* "budget": { "day": 5.0, "month": 50.0 }, in the prices' currency */

static void
tg_load_budget(tg_loader *ld, tg_limit_profile *lp, const cJSON *item,
    const char *path)
{
    char          path_buf[TG_PATH_LEN], key_path[TG_PATH_LEN];
    double        d;
    uint64_t     *out;
    const cJSON  *b, *v;
    const char   *const *k;

    b = tg_member(item, "budget");

    if (b == NULL) {
        return;
    }

    tg_key_path(path_buf, path, "budget");

    if (!cJSON_IsObject(b) || b->child == NULL) {
        tg_load_error(ld, path_buf, "expected an object with \"day\", "
                      "\"month\" or both");
        return;
    }

    tg_check_keys(ld, b, path_buf, tg_budget_keys);

    for (k = tg_budget_keys; *k != NULL; k++) {
        v = tg_member(b, *k);

        if (v == NULL) {
            continue;
        }

        out = strcmp(*k, "day") == 0 ? &lp->budget_day : &lp->budget_month;
        d = cJSON_IsNumber(v) ? v->valuedouble : -1;

        if (!(d > 0) || d > TG_BUDGET_MAX_AMOUNT) {
            tg_key_path(key_path, path_buf, *k);
            tg_load_error(ld, key_path, "expected an amount above 0 and at "
                          "most %d, in the prices' currency",
                          TG_BUDGET_MAX_AMOUNT);
            continue;
        }

        /* at least one pico-unit: a budget is never "none" by rounding */
        *out = (uint64_t) (d * TG_BUDGET_UNIT + 0.5);
        if (*out == 0) {
            *out = 1;
        }
    }
}


/* the profile a string value names; NULL (reported) when none */

static const tg_limit_profile *
tg_profile_named(tg_loader *ld, const cJSON *v, const char *path)
{
    size_t                 i;
    const tg_limits_conf  *lc = &ld->p->limits;

    if (!cJSON_IsString(v) || v->valuestring == NULL) {
        tg_load_error(ld, path, "expected the name of a limit profile of "
                      "\"limits.profiles\"");
        return NULL;
    }

    for (i = 0; i < lc->nprofiles; i++) {
        if (strcmp(lc->profiles[i].name, v->valuestring) == 0) {
            return &lc->profiles[i];
        }
    }

    tg_load_error(ld, path, "no limit profile named \"%.64s\" in "
                  "\"limits.profiles\"", v->valuestring);

    return NULL;
}


static bool
tg_limit_name_ok(const char *s, size_t len)
{
    size_t  i;

    if (len == 0 || len > TG_LIMIT_NAME_MAX) {
        return false;
    }

    for (i = 0; i < len; i++) {
        if (!(isalnum((unsigned char) s[i]) || strchr("_-:.", s[i]))) {
            return false;
        }
    }

    return true;
}


const tg_limit_profile *
tg_limits_profile(const tg_policy *policy, const char *name, size_t len)
{
    size_t                 i;
    const tg_limits_conf  *lc = &policy->limits;

    for (i = 0; i < lc->nprofiles; i++) {
        if (lc->profiles[i].name_len == len
            && memcmp(lc->profiles[i].name, name, len) == 0)
        {
            return &lc->profiles[i];
        }
    }

    return NULL;
}


const tg_limit_profile *
tg_limits_tenant(const tg_policy *policy, const char *name, size_t len)
{
    size_t                 i;
    const tg_limits_conf  *lc = &policy->limits;

    for (i = 0; i < lc->ntenants; i++) {
        if (strlen(lc->tenants[i].name) == len
            && memcmp(lc->tenants[i].name, name, len) == 0)
        {
            return lc->tenants[i].profile;
        }
    }

    return NULL;
}
