/*
 * Runtime state: provider records by name and the lease table.
 */

#include <stdlib.h>
#include <string.h>

#include "limits_admit.h"
#include "state.h"
#include "tailgate_protocol.h"


#define TG_LEASE_BUCKETS_MIN  64


static int tg_state_grow_buckets(tg_state *st);
static int tg_state_lease_insert(tg_state *st, tg_pstate *ps,
    uint64_t owner, uint64_t now_ms, uint32_t wanted,
    struct tg_limit_hold *hold, uint32_t *lease);
static uint32_t tg_state_alias_take(tg_state *st, uint64_t owner,
    uint32_t announced);
static tg_pstate *tg_state_slot(tg_state *st, const char *name);


#define TG_X(id, name, fallback)  name,
static const char *const  tg_outcome_names[TG_OUTCOME_COUNT] = {
    TG_OUTCOMES(TG_X) "unknown"
};
#undef TG_X

#define TG_X(id, name, fallback)  fallback,
static const unsigned  tg_outcome_classes[TG_OUTCOME_COUNT] = {
    TG_OUTCOMES(TG_X) 0
};
#undef TG_X


tg_outcome
tg_outcome_parse(const char *s, size_t len)
{
    /* "unknown" is not a name the module sends: none is TG_OUTCOME_UNKNOWN */
    return (tg_outcome) tg_name_index(tg_outcome_names, TG_OUTCOME_UNKNOWN, s,
                                      len);
}


const char *
tg_outcome_name(tg_outcome outcome)
{
    return (unsigned) outcome < TG_OUTCOME_COUNT ? tg_outcome_names[outcome]
                                                 : "unknown";
}


unsigned
tg_outcome_fallback(tg_outcome outcome)
{
    return (unsigned) outcome < TG_OUTCOME_COUNT ? tg_outcome_classes[outcome]
                                                 : 0;
}


tg_state *
tg_state_new(void)
{
    tg_state  *st;

    st = calloc(1, sizeof(tg_state));
    if (st == NULL) {
        return NULL;
    }

    st->buckets = calloc(TG_LEASE_BUCKETS_MIN, sizeof(tg_lease *));
    if (st->buckets == NULL) {
        free(st);
        return NULL;
    }

    st->limits = tg_limit_store_memory();
    if (st->limits == NULL) {
        free(st->buckets);
        free(st);
        return NULL;
    }

    st->nbuckets = TG_LEASE_BUCKETS_MIN;
    st->next_lease = 1;

    return st;
}


void
tg_state_free(tg_state *st)
{
    size_t     i;
    tg_lease  *l, *next;

    if (st == NULL) {
        return;
    }

    for (i = 0; i < st->nbuckets; i++) {
        for (l = st->buckets[i]; l != NULL; l = next) {
            next = l->next;
            tg_limits_release(st->limits, l->hold);
            free(l);
        }
    }

    st->limits->ops->free(st->limits);

    for (i = 0; i < st->nslots; i++) {
        free(st->slots[i]->name);
        free(st->slots[i]);
    }

    for (i = 0; i < st->nroutes; i++) {
        free(st->routes[i]->name);
        free(st->routes[i]);
    }

    free(st->routes);
    free(st->buckets);
    free(st->aliases);
    free(st->slots);
    free(st->bound);
    free(st);
}


int
tg_state_bind(tg_state *st, const tg_policy *policy)
{
    size_t      i;
    tg_pstate  **bound, *ps;

    bound = calloc(policy->nproviders ? policy->nproviders : 1,
                   sizeof(tg_pstate *));
    if (bound == NULL) {
        return -1;
    }

    for (i = 0; i < policy->nproviders; i++) {
        bound[i] = tg_state_slot(st, policy->providers[i].name);
        if (bound[i] == NULL) {
            free(bound);
            return -1;
        }
    }

    /* nothing can fail from here on */

    for (i = 0; i < st->nslots; i++) {
        st->slots[i]->in_policy = false;
    }

    for (i = 0; i < policy->nproviders; i++) {
        ps = bound[i];
        ps->in_policy = true;
        ps->max_concurrency = policy->providers[i].max_concurrency;
        ps->conf = policy->providers[i].health;

        /* a provider no longer probed keeps no verdict of its probes */
        if (ps->conf.url == NULL) {
            ps->probe_down = false;
            ps->probe_at_ms = 0;
        }
    }

    free(st->bound);
    st->bound = bound;
    st->nbound = policy->nproviders;

    return 0;
}


tg_pstate *
tg_state_provider(const tg_state *st, size_t i)
{
    if (st == NULL || i >= st->nbound) {
        return NULL;
    }

    return st->bound[i];
}


tg_pstate *
tg_state_find(const tg_state *st, const char *name)
{
    size_t  i;

    for (i = 0; i < st->nslots; i++) {
        if (strcmp(st->slots[i]->name, name) == 0) {
            return st->slots[i];
        }
    }

    return NULL;
}


int
tg_state_lease_acquire(tg_state *st, size_t i, uint64_t owner,
    uint64_t now_ms, uint32_t *lease)
{
    tg_pstate  *ps;

    *lease = 0;

    if (i >= st->nbound) {
        return -1;
    }

    ps = st->bound[i];

    if (ps->max_concurrency == 0) {
        return 0;
    }

    return tg_state_lease_insert(st, ps, owner, now_ms, 0, NULL, lease);
}


int
tg_state_lease_hold(tg_state *st, size_t i, uint64_t owner, uint64_t now_ms,
    struct tg_limit_hold *hold, uint32_t *lease)
{
    *lease = 0;

    if (hold == NULL) {
        return tg_state_lease_acquire(st, i, owner, now_ms, lease);
    }

    if (i >= st->nbound
        || tg_state_lease_insert(st, st->bound[i], owner, now_ms, 0, hold,
                                 lease) != 0)
    {
        tg_limits_release(st->limits, hold);
        return -1;
    }

    return 0;
}


int
tg_state_lease_adopt(tg_state *st, tg_pstate *ps, uint64_t owner,
    uint64_t now_ms, uint32_t announced)
{
    uint32_t         id;
    tg_lease_alias  *a;

    if (ps->max_concurrency == 0 || announced == 0) {
        return 0;
    }

    if (tg_state_lease_insert(st, ps, owner, now_ms, announced, NULL, &id)
        != 0)
    {
        return -1;
    }

    st->leases_adopted++;

    if (id == announced) {
        return 0;
    }

    if (st->naliases == st->aliases_cap) {
        a = realloc(st->aliases, (st->aliases_cap ? st->aliases_cap * 2 : 8)
                                 * sizeof(tg_lease_alias));
        if (a == NULL) {
            (void) tg_state_lease_release(st, id);
            return -1;
        }

        st->aliases = a;
        st->aliases_cap = st->aliases_cap ? st->aliases_cap * 2 : 8;
    }

    a = &st->aliases[st->naliases++];
    a->owner = owner;
    a->announced = announced;
    a->id = id;

    return 0;
}


/*
 * A new lease of ps: under id wanted when that is free (an adopted one),
 * else the next free id of a u32 counter that skips 0.
 */

static int
tg_state_lease_insert(tg_state *st, tg_pstate *ps, uint64_t owner,
    uint64_t now_ms, uint32_t wanted, struct tg_limit_hold *hold,
    uint32_t *lease)
{
    size_t      b;
    uint32_t    id;
    tg_lease   *l;

    if (st->nleases >= st->nbuckets && tg_state_grow_buckets(st) != 0) {
        return -1;
    }

    l = malloc(sizeof(tg_lease));
    if (l == NULL) {
        return -1;
    }

    id = wanted;

    while (id == 0 || tg_state_lease(st, id) != NULL) {
        id = st->next_lease++;
        if (st->next_lease == 0) {
            st->next_lease = 1;
        }
    }

    l->id = id;
    l->provider = ps;
    l->owner = owner;
    l->granted_ms = now_ms;
    l->hold = hold;

    b = id & (st->nbuckets - 1);
    l->next = st->buckets[b];
    st->buckets[b] = l;
    st->nleases++;

    ps->in_flight++;

    *lease = id;

    return 0;
}


/* the id an owner's REPORT means: its alias taken out, or the id itself */

static uint32_t
tg_state_alias_take(tg_state *st, uint64_t owner, uint32_t announced)
{
    size_t    i;
    uint32_t  id;

    for (i = 0; i < st->naliases; i++) {
        if (st->aliases[i].owner == owner
            && st->aliases[i].announced == announced)
        {
            id = st->aliases[i].id;
            st->aliases[i] = st->aliases[--st->naliases];
            return id;
        }
    }

    return announced;
}


const tg_lease *
tg_state_lease(const tg_state *st, uint32_t id)
{
    const tg_lease  *l;

    for (l = st->buckets[id & (st->nbuckets - 1)]; l != NULL; l = l->next) {
        if (l->id == id) {
            return l;
        }
    }

    return NULL;
}


/* unlinks *pl, the lease it points to, and frees it */

static void
tg_state_lease_unlink(tg_state *st, tg_lease **pl)
{
    tg_lease  *l = *pl;

    *pl = l->next;

    if (l->provider->in_flight > 0) {
        l->provider->in_flight--;
    }

    if (st->lease_ended != NULL) {
        st->lease_ended(st->hook_arg, l);
    }

    /* a lease that ends any way gives its limits' slots back */
    tg_limits_release(st->limits, l->hold);

    st->nleases--;
    free(l);
}


int
tg_state_lease_release(tg_state *st, uint32_t id)
{
    tg_lease  **pl;

    if (id == 0) {
        return 0;
    }

    for (pl = &st->buckets[id & (st->nbuckets - 1)]; *pl != NULL;
         pl = &(*pl)->next)
    {
        if ((*pl)->id == id) {
            tg_state_lease_unlink(st, pl);
            return 1;
        }
    }

    return 0;
}


size_t
tg_state_release_owner(tg_state *st, uint64_t owner)
{
    size_t     i, n;
    tg_lease  **pl, *l;

    for (i = 0; i < st->naliases; /* void */) {
        if (st->aliases[i].owner == owner) {
            st->aliases[i] = st->aliases[--st->naliases];
        } else {
            i++;
        }
    }

    if (st->nleases == 0) {
        return 0;
    }

    n = 0;

    for (i = 0; i < st->nbuckets; i++) {
        pl = &st->buckets[i];

        while (*pl != NULL) {
            l = *pl;

            if (l->owner != owner) {
                pl = &l->next;
                continue;
            }

            tg_state_lease_unlink(st, pl);
            n++;
        }
    }

    st->leases_dropped += n;

    return n;
}


tg_pstate *
tg_state_report(tg_state *st, const tg_report *r, uint64_t now_ms)
{
    size_t           k;
    int64_t          deltas[TG_HOLD_PARTS];
    uint32_t         id, ms;
    tg_outcome       outcome;
    tg_pstate       *ps, *freed;
    tg_rstate       *rs;
    const tg_lease  *l;

    outcome = (unsigned) r->outcome < TG_OUTCOME_COUNT ? r->outcome
                                                       : TG_OUTCOME_UNKNOWN;

    st->reports[outcome] += r->count;

    id = (r->lease != 0 && st->naliases != 0)
         ? tg_state_alias_take(st, r->owner, r->lease) : r->lease;

    l = id != 0 ? tg_state_lease(st, id) : NULL;

    /* the lease knows its provider for certain; the name is the module's */

    ps = l != NULL ? l->provider
         : r->provider != NULL ? tg_state_find(st, r->provider) : NULL;

    if (ps != NULL) {
        tg_health_reported(ps, outcome, r->http_status, r->upstream_ms,
                           r->count, now_ms);

        /* the provider asked for time: the next requests go elsewhere */

        if (outcome == TG_OUTCOME_RATE_LIMITED && r->cooldown_ms != 0) {
            ms = r->cooldown_ms > TG_COOLDOWN_MAX_MS
                 ? TG_COOLDOWN_MAX_MS : r->cooldown_ms;

            tg_limits_cooldown(st->limits, ps->name, ms);

            if (st->cooled != NULL) {
                st->cooled(st->hook_arg, ps, ms);
            }
        }
    }

    memset(deltas, 0, sizeof(deltas));

    if (l != NULL && l->hold != NULL) {
        for (k = 0; k < l->hold->n; k++) {
            deltas[k] = -(int64_t) l->hold->parts[k].tokens;
        }

        tg_limits_settle(st->limits, l->hold, r);
        tg_limits_spend(st->limits, l->hold, r->cost);

        for (k = 0; k < l->hold->n; k++) {
            deltas[k] += (int64_t) l->hold->parts[k].tokens;
        }
    }

    if (st->reported != NULL) {
        st->reported(st->hook_arg, l, r, deltas);
    }

    if (r->route != NULL) {
        rs = tg_state_route(st, r->route);

        if (rs != NULL) {
            rs->reports[outcome] += r->count;
        }
    }

    if (l == NULL) {
        st->reports_without_lease += r->count;
        return NULL;
    }

    freed = l->provider;

    return tg_state_lease_release(st, id) ? freed : NULL;
}


void
tg_state_count_decision(tg_state *st, unsigned status, size_t i,
    const char *route)
{
    size_t      k;
    tg_rstate  *rs;

    st->decisions++;

    if (status != 200) {
        st->refusals++;
    }

    if (i < st->nbound) {
        st->bound[i]->decisions++;
    }

    if (route == NULL || (rs = tg_state_route(st, route)) == NULL) {
        return;
    }

    switch (status) {
    case 200: k = 0; break;
    case 400: k = 1; break;
    case 403: k = 2; break;
    case 404: k = 3; break;
    case 429: k = 4; break;
    default:  k = 5;
    }

    rs->decided[k]++;
}


/* the record of a route, created on first use; NULL when out of memory */

tg_rstate *
tg_state_route_find(const tg_state *st, const char *name)
{
    size_t  i;

    for (i = 0; i < st->nroutes; i++) {
        if (strcmp(st->routes[i]->name, name) == 0) {
            return st->routes[i];
        }
    }

    return NULL;
}


tg_rstate *
tg_state_route(tg_state *st, const char *name)
{
    size_t      cap;
    tg_rstate  *rs, **routes;

    rs = tg_state_route_find(st, name);
    if (rs != NULL) {
        return rs;
    }

    /* route names come from the module: a bound on how many are kept */

    if (st->nroutes >= TG_ROUTES_KEPT) {
        return NULL;
    }

    if (st->nroutes == st->routes_cap) {
        cap = st->routes_cap ? st->routes_cap * 2 : 8;

        routes = realloc(st->routes, cap * sizeof(tg_rstate *));
        if (routes == NULL) {
            return NULL;
        }

        st->routes = routes;
        st->routes_cap = cap;
    }

    rs = calloc(1, sizeof(tg_rstate));
    if (rs == NULL) {
        return NULL;
    }

    rs->name = strdup(name);
    if (rs->name == NULL) {
        free(rs);
        return NULL;
    }

    st->routes[st->nroutes++] = rs;

    return rs;
}


size_t
tg_state_evaluate(tg_state *st, uint64_t now_ms)
{
    size_t      i, changed;
    uint64_t    age;
    tg_lease  **pl, *l;

    for (i = 0; i < st->nslots; i++) {
        st->slots[i]->oldest_lease_ms = 0;
    }

    for (i = 0; i < st->nbuckets; i++) {
        pl = &st->buckets[i];

        while ((l = *pl) != NULL) {
            age = now_ms > l->granted_ms ? now_ms - l->granted_ms : 0;

            /*
             * A lease nobody reported for far longer than any request runs:
             * its REPORT was lost.  Kept, it would hold a slot for good.
             */

            if (l->provider->conf.lease_ttl_ms != 0
                && age >= l->provider->conf.lease_ttl_ms)
            {
                tg_state_lease_unlink(st, pl);
                st->leases_expired++;
                continue;
            }

            if (age > l->provider->oldest_lease_ms) {
                l->provider->oldest_lease_ms = age;
            }

            pl = &l->next;
        }
    }

    changed = 0;

    for (i = 0; i < st->nslots; i++) {
        if (st->slots[i]->in_policy
            && tg_health_evaluate(st->slots[i], now_ms))
        {
            changed++;
        }
    }

    return changed;
}


static int
tg_state_grow_buckets(tg_state *st)
{
    size_t      i, n, b;
    tg_lease  **buckets, *l, *next;

    n = st->nbuckets * 2;

    buckets = calloc(n, sizeof(tg_lease *));
    if (buckets == NULL) {
        return -1;
    }

    for (i = 0; i < st->nbuckets; i++) {
        for (l = st->buckets[i]; l != NULL; l = next) {
            next = l->next;
            b = l->id & (n - 1);
            l->next = buckets[b];
            buckets[b] = l;
        }
    }

    free(st->buckets);
    st->buckets = buckets;
    st->nbuckets = n;

    return 0;
}


static tg_pstate *
tg_state_slot(tg_state *st, const char *name)
{
    size_t      cap;
    tg_pstate  *ps, **slots;

    ps = tg_state_find(st, name);
    if (ps != NULL) {
        return ps;
    }

    if (st->nslots == st->slots_cap) {
        cap = st->slots_cap ? st->slots_cap * 2 : 8;

        slots = realloc(st->slots, cap * sizeof(tg_pstate *));
        if (slots == NULL) {
            return NULL;
        }

        st->slots = slots;
        st->slots_cap = cap;
    }

    ps = calloc(1, sizeof(tg_pstate));
    if (ps == NULL) {
        return NULL;
    }

    ps->name = strdup(name);
    if (ps->name == NULL) {
        free(ps);
        return NULL;
    }

    st->slots[st->nslots++] = ps;

    return ps;
}
