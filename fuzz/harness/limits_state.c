
/*
 * Copyright (C) The Tailgate authors
 *
 * limits_state: the budgets' state file policyd reads at start,
 * tg_limits_state_parse() (limits_state.c, into limits_store.c's store).
 *
 * Input: the file, in a buffer of exactly its size.  Checked besides the
 * sanitizers: a refused file restores nothing; an accepted one restores
 * only counters of the policy's profiles and providers, with spend of this
 * UTC day and month only, and written again and read back it gives the
 * same counters with the same spend.  Read again with a policy that has
 * Redis, what waited for Redis (kept batches, corrections, usage) is kept
 * within its bounds, and written again and read back it is the same.
 */


#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"
#include "limits_admit.h"
#include "limits_state.h"
#include "policy.h"


#define FUZZ_NOW  ((int64_t) 1796385600)    /* 2026-12-04 12:00 UTC */


static const char  fuzz_policy_text[] =
    "{ \"listen\": { \"path\": \"/run/fuzz.sock\" },"
    "  \"providers\": { \"p\": { \"upstream\": \"u\", \"zone\": \"local\","
    "    \"endpoints\": [\"chat\"] } },"
    "  \"routes\": { \"r\": { \"steps\": [ { \"provider\": \"p\","
    "    \"model\": \"m\" } ] } },"
    "  \"limits\": { \"profiles\": {"
    "    \"agents\": { \"budget\": { \"day\": 1, \"month\": 10 } },"
    "    \"a\": { \"rpm\": 1 } } } }";

static const char  fuzz_redis_policy_text[] =
    "{ \"listen\": { \"path\": \"/run/fuzz.sock\" },"
    "  \"providers\": { \"p\": { \"upstream\": \"u\", \"zone\": \"local\","
    "    \"endpoints\": [\"chat\"] } },"
    "  \"routes\": { \"r\": { \"steps\": [ { \"provider\": \"p\","
    "    \"model\": \"m\" } ] } },"
    "  \"redis\": { \"address\": \"127.0.0.1:6379\" },"
    "  \"limits\": { \"profiles\": {"
    "    \"agents\": { \"budget\": { \"day\": 1, \"month\": 10 } } } } }";

static tg_policy       *fuzz_policy;
static tg_policy       *fuzz_redis_policy;
static tg_budget        fuzz_today;


typedef struct {
    tg_limit_store  *other;
    size_t           n;
} fuzz_cmp;


static void
fuzz_check_counter(tg_counter *c, void *arg)
{
    fuzz_cmp          *cmp = arg;
    const tg_counter  *o;

    FUZZ_CHECK(c->key_len > 0 && c->key_len <= 1200);
    FUZZ_CHECK(tg_limits_keep(c, fuzz_policy));
    FUZZ_CHECK(c->refs == 0);

    /* nothing of an older day or month */
    FUZZ_CHECK(c->budget.day == fuzz_today.day || c->budget.day_spent == 0);
    FUZZ_CHECK(c->budget.month == fuzz_today.month
               || c->budget.month_spent == 0);
    FUZZ_CHECK(c->own_budget.day == fuzz_today.day
               || c->own_budget.day_spent == 0);
    FUZZ_CHECK(c->own_budget.month == fuzz_today.month
               || c->own_budget.month_spent == 0);

    /* the policy has no Redis: no away tally */
    FUZZ_CHECK(c->away_budget.day_spent == 0
               && c->away_budget.month_spent == 0);

    if (cmp->other != NULL) {
        o = cmp->other->ops->peek(cmp->other, c->key, c->key_len);
        FUZZ_CHECK(o != NULL);
        FUZZ_CHECK(o->budget.day_spent == c->budget.day_spent);
        FUZZ_CHECK(o->budget.month_spent == c->budget.month_spent);
        FUZZ_CHECK(o->own_budget.day_spent == c->own_budget.day_spent);
        FUZZ_CHECK(o->own_budget.month_spent == c->own_budget.month_spent);
    }

    cmp->n++;
}


/* the store's hook: a copy of what was read */

static int
fuzz_waiting_copy(void *arg, struct tg_waiting *out)
{
    size_t             i;
    const tg_waiting  *w = arg;

    memset(out, 0, sizeof(*out));

    out->batches = calloc(w->nbatches + 1, sizeof(tg_waiting_batch));
    out->corr = malloc((w->ncorr + 1) * sizeof(tg_correction));
    out->usage = malloc((w->nusage + 1) * sizeof(tg_usage_pending_entry));
    FUZZ_CHECK(out->batches && out->corr && out->usage);

    for (i = 0; i < w->nbatches; i++) {
        out->batches[i] = w->batches[i];
        out->batches[i].args = malloc(w->batches[i].len + 1);
        FUZZ_CHECK(out->batches[i].args != NULL);
        memcpy(out->batches[i].args, w->batches[i].args, w->batches[i].len);
        out->nbatches++;
    }

    /* none read: NULL, not for memcpy */
    if (w->ncorr != 0) {
        memcpy(out->corr, w->corr, w->ncorr * sizeof(tg_correction));
    }
    out->ncorr = w->ncorr;
    if (w->nusage != 0) {
        memcpy(out->usage, w->usage,
               w->nusage * sizeof(tg_usage_pending_entry));
    }
    out->nusage = w->nusage;

    return 0;
}


static void
fuzz_waiting(const uint8_t *data, size_t size)
{
    int              rc;
    char            *text, *again, why[160];
    size_t           i, k, restored, len, n;
    tg_waiting       w, w2;
    tg_limit_store  *s, *t;
    const char      *a;

    text = malloc(size ? size : 1);
    FUZZ_CHECK(text != NULL);
    memcpy(text, data, size);

    memset(&w, 0, sizeof(w));
    s = tg_limit_store_memory();
    FUZZ_CHECK(s != NULL);

    rc = tg_limits_state_parse(s, fuzz_redis_policy, text, size, FUZZ_NOW,
                               &w, &restored, why, sizeof(why));
    free(text);

    if (rc != 0) {
        FUZZ_CHECK(w.nbatches == 0 && w.ncorr == 0 && w.nusage == 0);
        s->ops->free(s);
        return;
    }

    /* within the reconcile's bounds, every batch's shape whole */
    FUZZ_CHECK(w.nbatches <= TG_RECONCILE_KEPT);
    FUZZ_CHECK(w.ncorr <= TG_RECONCILE_CORRECTIONS);
    FUZZ_CHECK(w.nusage <= TG_USAGE_PENDING_MAX);

    for (i = 0; i < w.nbatches; i++) {
        FUZZ_CHECK(w.batches[i].kind <= 2);
        FUZZ_CHECK(w.batches[i].argc >= 4
                   && w.batches[i].argc <= TG_WAITING_ARGS_MAX);

        for (n = 0, a = w.batches[i].args, k = 0; k < w.batches[i].argc;
             k++)
        {
            FUZZ_CHECK(strlen(a) <= TG_WAITING_ARG_MAX);
            n += strlen(a) + 1;
            a += strlen(a) + 1;
        }
        FUZZ_CHECK(n == w.batches[i].len);
    }

    for (i = 0; i < w.ncorr; i++) {
        FUZZ_CHECK(w.corr[i].key[0] != '\0');
    }

    for (i = 0; i < w.nusage; i++) {
        FUZZ_CHECK(w.usage[i].kind < TG_USAGE_PENDING_KINDS);
        FUZZ_CHECK(w.usage[i].len >= 1
                   && w.usage[i].len <= TG_USAGE_PENDING_NAME);
        FUZZ_CHECK(memchr(w.usage[i].name, '\0', w.usage[i].len) == NULL);
    }

    /* written again and read back: the same */
    s->waiting = fuzz_waiting_copy;
    s->waiting_arg = &w;
    FUZZ_CHECK(tg_limits_state_format(s, FUZZ_NOW, &again, &len) == 0);

    memset(&w2, 0, sizeof(w2));
    t = tg_limit_store_memory();
    FUZZ_CHECK(t != NULL);
    FUZZ_CHECK(tg_limits_state_parse(t, fuzz_redis_policy, again, len,
                                     FUZZ_NOW, &w2, &restored, why,
                                     sizeof(why)) == 0);

    FUZZ_CHECK(w2.nbatches == w.nbatches && w2.ncorr == w.ncorr
               && w2.nusage == w.nusage);

    for (i = 0; i < w.nbatches; i++) {
        FUZZ_CHECK(w2.batches[i].kind == w.batches[i].kind);
        FUZZ_CHECK(w2.batches[i].argc == w.batches[i].argc);
        FUZZ_CHECK(w2.batches[i].len == w.batches[i].len);
        FUZZ_CHECK(memcmp(w2.batches[i].args, w.batches[i].args,
                          w.batches[i].len) == 0);
    }

    FUZZ_CHECK(w.ncorr == 0 || memcmp(w2.corr, w.corr,
                                      w.ncorr * sizeof(tg_correction)) == 0);
    FUZZ_CHECK(w.nusage == 0
               || memcmp(w2.usage, w.usage,
                         w.nusage * sizeof(tg_usage_pending_entry)) == 0);

    free(again);
    tg_waiting_free(&w);
    tg_waiting_free(&w2);
    s->ops->free(s);
    t->ops->free(t);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int              rc;
    char            *text, *again, why[160];
    size_t           restored, len;
    fuzz_cmp         cmp;
    tg_errors        errs;
    tg_limit_store  *s, *t;
    tg_policy_opts   opts;

    if (fuzz_policy == NULL) {
        memset(&opts, 0, sizeof(opts));
        tg_errors_init(&errs);
        fuzz_policy = tg_policy_parse("fuzz.json", fuzz_policy_text,
                                      sizeof(fuzz_policy_text) - 1, &opts,
                                      &errs);
        FUZZ_CHECK(fuzz_policy != NULL);
        tg_errors_free(&errs);
        tg_errors_init(&errs);
        fuzz_redis_policy = tg_policy_parse("fuzz.json",
                                            fuzz_redis_policy_text,
                                            sizeof(fuzz_redis_policy_text)
                                            - 1, &opts, &errs);
        FUZZ_CHECK(fuzz_redis_policy != NULL);
        tg_errors_free(&errs);
        tg_budget_roll(&fuzz_today, FUZZ_NOW);
    }

    /* exactly the file's size: a read past it is caught */
    text = malloc(size ? size : 1);
    FUZZ_CHECK(text != NULL);
    memcpy(text, data, size);

    s = tg_limit_store_memory();
    FUZZ_CHECK(s != NULL);

    why[0] = '\0';
    rc = tg_limits_state_parse(s, fuzz_policy, text, size, FUZZ_NOW, NULL,
                               &restored, why, sizeof(why));
    free(text);

    fuzz_waiting(data, size);

    if (rc != 0) {
        FUZZ_CHECK(why[0] != '\0');
        FUZZ_CHECK(s->ops->count(s) == 0 || strstr(why, "memory") != NULL);
        s->ops->free(s);
        return 0;
    }

    FUZZ_CHECK(s->ops->count(s) == restored);

    memset(&cmp, 0, sizeof(cmp));
    s->ops->each(s, fuzz_check_counter, &cmp);

    /* written again and read back: the same */
    FUZZ_CHECK(tg_limits_state_format(s, FUZZ_NOW, &again, &len) == 0);

    t = tg_limit_store_memory();
    FUZZ_CHECK(t != NULL);
    FUZZ_CHECK(tg_limits_state_parse(t, fuzz_policy, again, len, FUZZ_NOW,
                                     NULL, &restored, why, sizeof(why))
               == 0);
    FUZZ_CHECK(restored == cmp.n);

    cmp.other = s;
    cmp.n = 0;
    t->ops->each(t, fuzz_check_counter, &cmp);

    free(again);
    s->ops->free(s);
    t->ops->free(t);

    return 0;
}
