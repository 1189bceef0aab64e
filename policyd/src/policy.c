/*
 * The policy once loaded: finding a route or a provider by name, the names
 * of endpoints, zones and fallback classes, and freeing it.  Loading is
 * policy_load.c's.
 */

#include <stdint.h>
#include <stdlib.h>
#include <fnmatch.h>
#include <string.h>

#include "fnv.h"
#include "policy.h"
#include "tailgate_protocol.h"


#define TG_X(id, name, path)  name,
static const char *const  tg_endpoint_names[TG_EP_COUNT] = {
    TG_ENDPOINTS(TG_X)
};
#undef TG_X

#define TG_X(id, name, path)  "/" path,
static const char *const  tg_endpoint_suffixes[TG_EP_COUNT] = {
    TG_ENDPOINTS(TG_X)
};
#undef TG_X

#define TG_X(id, name)  name,
static const char *const  tg_zone_names[TG_ZONE_COUNT] = { TG_ZONES(TG_X) };
#undef TG_X

static const struct {
    unsigned     bit;
    const char  *name;
} tg_fallback_classes[] = {
#define TG_X(bit, name)  { bit, name },
    TG_FALLBACK_CLASSES(TG_X)
#undef TG_X
};

/* each name as ", \"name\"", less the first ", " */
#define TG_X(id, name, ...)  ", \"" name "\""
const char *const  tg_endpoint_list = TG_ENDPOINTS(TG_X) + 2;
const char *const  tg_zone_list = TG_ZONES(TG_X) + 2;
#undef TG_X
#define TG_X(bit, name)  ", \"" name "\""
const char *const  tg_fallback_class_list = TG_FALLBACK_CLASSES(TG_X) + 2;
#undef TG_X


const char *
tg_endpoint_name(tg_endpoint ep)
{
    return ep < TG_EP_COUNT ? tg_endpoint_names[ep] : "unknown";
}


const char *
tg_endpoint_suffix(tg_endpoint ep)
{
    return ep < TG_EP_COUNT ? tg_endpoint_suffixes[ep] : "";
}


size_t
tg_name_index(const char *const *names, size_t n, const char *s, size_t len)
{
    size_t  i;

    for (i = 0; i < n; i++) {
        if (strlen(names[i]) == len && memcmp(names[i], s, len) == 0) {
            break;
        }
    }

    return i;
}


tg_endpoint
tg_endpoint_parse(const char *s, size_t len)
{
    /* TG_EP_NONE is TG_EP_COUNT */
    return (tg_endpoint) tg_name_index(tg_endpoint_names, TG_EP_COUNT, s, len);
}


const char *
tg_zone_name(tg_zone zone)
{
    return (unsigned) zone < TG_ZONE_COUNT ? tg_zone_names[zone] : "unknown";
}


tg_zone
tg_zone_parse(const char *s)
{
    return (tg_zone) tg_name_index(tg_zone_names, TG_ZONE_COUNT, s,
                                   strlen(s));
}


const char *
tg_fallback_class_name(unsigned bit)
{
    size_t  i;

    /* not one of "outcomes": only a route's "on" names it */

    if (bit == TG_FALLBACK_AUTH) {
        return "auth";
    }

    for (i = 0; i < sizeof(tg_fallback_classes) / sizeof(tg_fallback_classes[0]);
         i++)
    {
        if (tg_fallback_classes[i].bit == bit) {
            return tg_fallback_classes[i].name;
        }
    }

    return NULL;
}


unsigned
tg_fallback_class_parse(const char *s)
{
    size_t  i;

    for (i = 0; i < sizeof(tg_fallback_classes) / sizeof(tg_fallback_classes[0]);
         i++)
    {
        if (strcmp(s, tg_fallback_classes[i].name) == 0) {
            return tg_fallback_classes[i].bit;
        }
    }

    return 0;
}



void
tg_policy_free(tg_policy *policy)
{
    size_t  i;
    char   *auth;

    if (policy == NULL) {
        return;
    }

    for (i = 0; i < policy->nproviders; i++) {
        auth = (char *) policy->providers[i].authorization;
        if (auth != NULL) {
            explicit_bzero(auth, strlen(auth));
        }
    }

    tg_arena_free(&policy->arena);
    free(policy);
}


const tg_route *
tg_policy_route(const tg_policy *policy, const char *name, size_t len)
{
    size_t       i;
    uint32_t     v;
    const tg_route  *rt;

    if (policy->route_table == NULL) {
        return NULL;
    }

    for (i = tg_name_hash(name, len) & policy->route_mask;
         (v = policy->route_table[i]) != 0;
         i = (i + 1) & policy->route_mask)
    {
        rt = &policy->routes[v - 1];
        if (rt->name_len == len && memcmp(rt->name, name, len) == 0) {
            return rt;
        }
    }

    return NULL;
}


const tg_route *
tg_policy_match(const tg_policy *policy, const char *name, size_t len,
    const char **rest, size_t *rest_len)
{
    size_t           i;
    const tg_route  *rt;

    *rest = name + len;
    *rest_len = 0;

    rt = tg_policy_route(policy, name, len);

    if (rt != NULL && !rt->pattern) {
        return rt;
    }

    for (i = 0; i < policy->npatterns; i++) {
        rt = policy->patterns[i];

        if (len <= rt->prefix_len
            || memcmp(name, rt->name, rt->prefix_len) != 0)
        {
            continue;
        }

        if (!tg_route_pattern_allows(rt, name + rt->prefix_len,
                                     len - rt->prefix_len))
        {
            /* a shorter prefix does not get what a longer one refused */
            return NULL;
        }

        *rest = name + rt->prefix_len;
        *rest_len = len - rt->prefix_len;
        return rt;
    }

    return NULL;
}


bool
tg_route_pattern_allows(const tg_route *rt, const char *rest, size_t len)
{
    char    s[TG_ROUTE_NAME_MAX + 1];
    size_t  i;

    /* the pattern's own name is no model of it */

    if (len == 0 || len > TG_ROUTE_NAME_MAX || (len == 1 && rest[0] == '*')) {
        return false;
    }

    memcpy(s, rest, len);
    s[len] = '\0';

    /* a NUL inside is no model name */
    if (strlen(s) != len) {
        return false;
    }

    for (i = 0; i < rt->ndeny; i++) {
        if (fnmatch(rt->deny[i], s, 0) == 0) {
            return false;
        }
    }

    if (rt->allow == NULL) {
        return true;
    }

    for (i = 0; i < rt->nallow; i++) {
        if (fnmatch(rt->allow[i], s, 0) == 0) {
            return true;
        }
    }

    return false;
}


const tg_provider *
tg_policy_provider(const tg_policy *policy, const char *name, size_t len)
{
    size_t             i;
    uint32_t           v;
    const tg_provider  *pr;

    if (policy->provider_table == NULL) {
        return NULL;
    }

    for (i = tg_name_hash(name, len) & policy->provider_mask;
         (v = policy->provider_table[i]) != 0;
         i = (i + 1) & policy->provider_mask)
    {
        pr = &policy->providers[v - 1];
        if (pr->name_len == len && memcmp(pr->name, name, len) == 0) {
            return pr;
        }
    }

    return NULL;
}


/* the hash of a name in the policy's tables: FNV-1a */

uint32_t
tg_name_hash(const char *s, size_t len)
{
    return (uint32_t) tg_fnv1a(TG_FNV_OFFSET, s, len);
}
