/*
 * A pattern route's model list from its provider (model_fetch.h).  The
 * list is kept here, by route name; the route in the policy in force
 * points at it.  Nothing here runs on a decision's path: a fetch is a
 * probe-thread GET whose answer comes back on the main loop.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "model_fetch.h"
#include "model_list.h"
#include "probe.h"


#define TG_MODELS_MAX_BYTES   (16 * 1024 * 1024)
#define TG_MODELS_RETRY_MS    5000      /* after a failure, doubled */


typedef struct tg_model_keep  tg_model_keep;

struct tg_model_keep {
    tg_model_keep      *next;
    tg_model_fetcher   *mf;

    char               *route;
    char               *url;
    char               *authorization;  /* SECRET; NULL: none sent */
    uint32_t            refresh_ms;
    uint32_t            timeout_ms;

    ev_timer            timer;
    uint64_t            fetch_id;       /* in flight; 0: none */
    uint32_t            failures;
    bool                seen;

    const char        **names;          /* NULL: none came yet */
    size_t              nnames;
};


struct tg_model_fetcher {
    tg_server          *srv;
    tg_model_keep      *keeps;
    uint64_t            next_fetch;
};


typedef struct {
    const tg_policy    *policy;
    const tg_route     *rt;
} tg_model_keep_ctx;


static void tg_model_keep_free(tg_model_keep *kp);
static void tg_model_timer_cb(struct ev_loop *loop, ev_timer *w,
    int revents);
static void tg_model_fetched(const tg_fetch_answer *a, void *data);
static void tg_model_again(tg_model_keep *kp, uint32_t ms);
static void tg_model_attach(tg_model_keep *kp, tg_policy *policy);


tg_model_fetcher *
tg_model_fetcher_new(tg_server *srv)
{
    tg_model_fetcher  *mf;

    mf = calloc(1, sizeof(tg_model_fetcher));
    if (mf != NULL) {
        mf->srv = srv;
    }

    return mf;
}


static bool
tg_str_same(const char *a, const char *b)
{
    return (a == NULL && b == NULL)
           || (a != NULL && b != NULL && strcmp(a, b) == 0);
}


int
tg_model_fetcher_configure(tg_model_fetcher *mf, tg_policy *policy)
{
    int             rc;
    size_t          i;
    const char     *auth;
    tg_route       *rt;
    tg_model_keep  *kp, **pp;

    rc = 0;

    for (kp = mf->keeps; kp != NULL; kp = kp->next) {
        kp->seen = false;
    }

    for (i = 0; i < policy->nroutes; i++) {
        rt = &policy->routes[i];

        if (rt->models_url == NULL) {
            continue;
        }

        auth = rt->models_send_key && rt->nsteps > 0
               && rt->steps[0].provider != NULL
               ? rt->steps[0].provider->authorization : NULL;

        for (kp = mf->keeps; kp != NULL; kp = kp->next) {
            if (strcmp(kp->route, rt->name) == 0) {
                break;
            }
        }

        /* another URL or key: the list it had is not this one's */

        if (kp != NULL && (strcmp(kp->url, rt->models_url) != 0
                           || !tg_str_same(kp->authorization, auth)))
        {
            kp->seen = false;
            kp = NULL;
        }

        if (kp == NULL) {
            kp = calloc(1, sizeof(tg_model_keep));
            if (kp == NULL) {
                rc = -1;
                continue;
            }

            kp->mf = mf;
            kp->route = strdup(rt->name);
            kp->url = strdup(rt->models_url);
            kp->authorization = auth ? strdup(auth) : NULL;

            if (kp->route == NULL || kp->url == NULL
                || (auth != NULL && kp->authorization == NULL))
            {
                tg_model_keep_free(kp);
                rc = -1;
                continue;
            }

            ev_init(&kp->timer, tg_model_timer_cb);
            kp->timer.data = kp;

            kp->next = mf->keeps;
            mf->keeps = kp;

            tg_model_again(kp, 0);
        }

        kp->seen = true;
        kp->refresh_ms = rt->models_refresh_ms;
        kp->timeout_ms = rt->models_timeout_ms;

        tg_model_attach(kp, policy);
    }

    /* the lists of routes gone, or whose URL changed */

    for (pp = &mf->keeps; *pp != NULL; /* void */) {
        kp = *pp;

        if (kp->seen) {
            pp = &kp->next;
            continue;
        }

        *pp = kp->next;
        ev_timer_stop(mf->srv->loop, &kp->timer);
        tg_model_keep_free(kp);
    }

    return rc;
}


void
tg_model_fetcher_free(tg_model_fetcher *mf)
{
    tg_model_keep  *kp, *next;

    if (mf == NULL) {
        return;
    }

    for (kp = mf->keeps; kp != NULL; kp = next) {
        next = kp->next;
        ev_timer_stop(mf->srv->loop, &kp->timer);
        tg_model_keep_free(kp);
    }

    free(mf);
}


static void
tg_model_keep_free(tg_model_keep *kp)
{
    if (kp->authorization != NULL) {
        explicit_bzero(kp->authorization, strlen(kp->authorization));
        free(kp->authorization);
    }

    free(kp->route);
    free(kp->url);
    free(kp->names);
    free(kp);
}


/* the route of the policy in force lists what came (or its "models") */

static void
tg_model_attach(tg_model_keep *kp, tg_policy *policy)
{
    tg_route  *rt;

    if (kp->names == NULL) {
        return;
    }

    rt = (tg_route *) tg_policy_route(policy, kp->route, strlen(kp->route));

    if (rt != NULL && rt->models_url != NULL) {
        rt->listed = kp->names;
        rt->nlisted = kp->nnames;
    }
}


static void
tg_model_again(tg_model_keep *kp, uint32_t ms)
{
    struct ev_loop  *loop = kp->mf->srv->loop;

    ev_timer_stop(loop, &kp->timer);
    ev_timer_set(&kp->timer, ms / 1e3, 0.);
    ev_timer_start(loop, &kp->timer);
}


static void
tg_model_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    tg_fetch_spec      spec;
    tg_model_keep     *kp = w->data;
    tg_model_fetcher  *mf = kp->mf;

    (void) loop;
    (void) revents;

    if (kp->fetch_id != 0) {
        return;
    }

    memset(&spec, 0, sizeof(spec));
    spec.url = kp->url;
    spec.authorization = kp->authorization;
    spec.timeout_ms = kp->timeout_ms;
    spec.max_bytes = TG_MODELS_MAX_BYTES;

    if (tg_prober_fetch(mf->srv->prober, &spec, ++mf->next_fetch,
                        tg_model_fetched, mf) != 0)
    {
        tg_log_error("models of route \"%s\": out of memory, next try in "
                     "%u ms", kp->route, TG_MODELS_RETRY_MS);
        tg_model_again(kp, TG_MODELS_RETRY_MS);
        return;
    }

    kp->fetch_id = mf->next_fetch;

    tg_log_debug("models of route \"%s\": fetching %s", kp->route, kp->url);
}


/* a name the route lists: its allow and deny pass it, no other route's */

static bool
tg_model_keep_name(const char *name, size_t len, void *data)
{
    char                id[TG_ROUTE_NAME_MAX + 1];
    size_t              rest_len;
    const char         *rest;
    tg_model_keep_ctx  *kc = data;

    if (kc->rt->prefix_len + len > TG_ROUTE_NAME_MAX) {
        return false;
    }

    memcpy(id, kc->rt->name, kc->rt->prefix_len);
    memcpy(id + kc->rt->prefix_len, name, len);

    return tg_policy_match(kc->policy, id, kc->rt->prefix_len + len, &rest,
                           &rest_len) == kc->rt;
}


static void
tg_model_fetched(const tg_fetch_answer *a, void *data)
{
    char                why[256];
    size_t              n;
    uint32_t            next;
    uint64_t            next64;
    const char        **names;
    tg_route           *rt;
    tg_model_keep      *kp;
    tg_model_fetcher   *mf = data;
    tg_model_keep_ctx   kc;

    for (kp = mf->keeps; kp != NULL; kp = kp->next) {
        if (kp->fetch_id == a->id) {
            break;
        }
    }

    /* a route the policy no longer has, or whose URL changed */
    if (kp == NULL) {
        return;
    }

    kp->fetch_id = 0;

    rt = (tg_route *) tg_policy_route(mf->srv->policy, kp->route,
                                      strlen(kp->route));
    if (rt == NULL) {
        return;
    }

    if (a->status != 200) {
        if (a->status == 0) {
            snprintf(why, sizeof(why), "%s", a->error ? a->error
                                                      : "no answer");
        } else {
            snprintf(why, sizeof(why), "HTTP %u%s", a->status,
                     a->too_large ? " (too large)" : "");
        }
        goto failed;
    }

    kc.policy = mf->srv->policy;
    kc.rt = rt;

    if (tg_model_list_read(a->body, a->len, TG_ROUTE_NAME_MAX - rt->prefix_len,
                           tg_model_keep_name, &kc, &names, &n, why,
                           sizeof(why))
        != 0)
    {
        goto failed;
    }

    free(kp->names);
    kp->names = names;
    kp->nnames = n;
    kp->failures = 0;

    tg_model_attach(kp, mf->srv->policy);

    tg_log_info("models of route \"%s\": %zu from %s, next in %u ms",
                kp->route, n, kp->url, kp->refresh_ms);

    tg_model_again(kp, kp->refresh_ms);

    return;

failed:

    kp->failures++;

    /* 5 s, doubled with each failure, at most refresh_ms */
    next64 = (uint64_t) TG_MODELS_RETRY_MS
             << (kp->failures - 1 < 16 ? kp->failures - 1 : 16);
    next = next64 < kp->refresh_ms ? (uint32_t) next64 : kp->refresh_ms;

    tg_log_warn("models of route \"%s\": %s: %s; %s, next try in %u ms",
                kp->route, kp->url, why,
                kp->names ? "the last list stays"
                          : "its \"models\" are listed",
                next);

    tg_model_again(kp, next);
}
