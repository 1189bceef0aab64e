/*
 * The model lists policyd fetches for pattern routes with "models_from"
 * (docs/policy.md, "Routes by pattern"): each fetched on the probe thread
 * at start and every refresh_ms, read by model_list.c, and put in place of
 * the route's "models" in the policy in force.  A failed fetch keeps the
 * last list; a reload keeps it for a route whose URL did not change.
 */

#ifndef TG_MODEL_FETCH_H
#define TG_MODEL_FETCH_H

#include "daemon.h"


typedef struct tg_model_fetcher  tg_model_fetcher;


tg_model_fetcher *tg_model_fetcher_new(tg_server *srv);

/*
 * The lists of this policy (srv->policy, already in force) from now on:
 * new ones are fetched at once, kept ones are listed by its routes again,
 * gone ones are dropped.  0, or -1 when out of memory.
 */
int tg_model_fetcher_configure(tg_model_fetcher *mf, tg_policy *policy);

void tg_model_fetcher_free(tg_model_fetcher *mf);


#endif /* TG_MODEL_FETCH_H */
