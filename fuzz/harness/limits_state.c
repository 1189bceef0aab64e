
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
 * same counters with the same spend.
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

static tg_policy       *fuzz_policy;
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
        tg_budget_roll(&fuzz_today, FUZZ_NOW);
    }

    /* exactly the file's size: a read past it is caught */
    text = malloc(size ? size : 1);
    FUZZ_CHECK(text != NULL);
    memcpy(text, data, size);

    s = tg_limit_store_memory();
    FUZZ_CHECK(s != NULL);

    why[0] = '\0';
    rc = tg_limits_state_parse(s, fuzz_policy, text, size, FUZZ_NOW,
                               &restored, why, sizeof(why));
    free(text);

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
                                     &restored, why, sizeof(why)) == 0);
    FUZZ_CHECK(restored == cmp.n);

    cmp.other = s;
    cmp.n = 0;
    t->ops->each(t, fuzz_check_counter, &cmp);

    free(again);
    s->ops->free(s);
    t->ops->free(t);

    return 0;
}
