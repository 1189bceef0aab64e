/*
 * The policy's "usage" block - the usage log, the currency, the price of
 * every provider model - and a provider's "usage" mode (docs/policy.md,
 * "Usage and cost").  Loaded after providers and routes: each route step
 * is given its provider model's prices here.
 */

#include <stdio.h>
#include <string.h>

#include "policy_json.h"


static void tg_load_prices(tg_loader *ld, const cJSON *usage);
static void tg_load_price(tg_loader *ld, const cJSON *item, const char *path,
    tg_price *price);
static void tg_price_member(tg_loader *ld, const cJSON *item,
    const char *path, const char *key, uint64_t *out);
static void tg_price_version(tg_loader *ld);


static const char *const  tg_usage_keys[] = {
    "log", "buffer_bytes", "max_clients", "currency", "price_version",
    "prices", NULL
};

static const char *const  tg_price_keys[] = {
    "input", "cached_input", "output", "audio_minute", "characters", NULL
};


void
tg_load_usage_mode(tg_loader *ld, tg_provider *pr, const cJSON *item,
    const char *path)
{
    char         buf[TG_PATH_LEN];
    const char  *s;

    pr->usage_passive = false;

    if (tg_member_string(ld, item, "usage", path, false, &s) != 1) {
        return;
    }

    if (strcmp(s, "passive") == 0) {
        pr->usage_passive = true;

    } else if (strcmp(s, "active") != 0) {
        tg_key_path(buf, path, "usage");
        tg_load_error(ld, buf, "expected \"active\" or \"passive\"");
    }
}


void
tg_load_usage(tg_loader *ld, const cJSON *root)
{
    size_t          i, j, k;
    tg_route       *rt;
    const char     *s;
    const cJSON    *usage;
    tg_usage_conf  *u = &ld->p->usage;

    u->buffer_bytes = TG_USAGE_BUFFER_DEFAULT;
    u->max_clients = TG_USAGE_MAX_CLIENTS_DEFAULT;

    usage = tg_member(root, "usage");
    if (usage == NULL) {
        return;
    }

    if (!cJSON_IsObject(usage)) {
        tg_load_error(ld, "usage", "expected an object");
        return;
    }

    tg_check_keys(ld, usage, "usage", tg_usage_keys);

    if (tg_member_string(ld, usage, "log", "usage", false, &s) == 1) {
        if (s[0] != '/' || tg_has_control(s) || strlen(s) > 4096) {
            tg_load_error(ld, "usage.log", "expected an absolute file path");
        } else {
            u->log = tg_copy(ld, s);
        }
    }

    (void) tg_member_uint(ld, usage, "buffer_bytes", "usage",
                          TG_USAGE_BUFFER_MIN, TG_USAGE_BUFFER_MAX,
                          &u->buffer_bytes);
    (void) tg_member_uint(ld, usage, "max_clients", "usage", 0,
                          TG_USAGE_MAX_CLIENTS_MAX, &u->max_clients);

    if (tg_member_string(ld, usage, "currency", "usage", false, &s) == 1) {
        for (i = 0; s[i] >= 'A' && s[i] <= 'Z'; i++) { /* void */ }

        if (i == 0 || s[i] != '\0' || i > TG_CURRENCY_MAX) {
            tg_load_error(ld, "usage.currency", "expected a currency code "
                          "of 1 to %d capital letters, such as \"USD\"",
                          TG_CURRENCY_MAX);
        } else {
            u->currency = tg_copy(ld, s);
        }
    }

    if (tg_member_string(ld, usage, "price_version", "usage", false, &s)
        == 1)
    {
        for (i = 0; s[i] != '\0' && (tg_is_name_char(s[i]) || s[i] == ':');
             i++)
        {
            /* void */
        }

        if (i == 0 || s[i] != '\0' || i > TG_PRICE_VERSION_MAX) {
            tg_load_error(ld, "usage.price_version", "expected 1 to %d "
                          "letters, digits, \"_\", \".\", \"-\" or \":\"",
                          TG_PRICE_VERSION_MAX);
        } else {
            u->price_version = tg_copy(ld, s);
        }
    }

    tg_load_prices(ld, usage);

    if (u->nprices != 0 && u->currency == NULL
        && tg_member(usage, "currency") == NULL)
    {
        tg_load_error(ld, "usage.currency", "missing required key: prices "
                      "are in one currency, which the policy must name");
    }

    if (u->nprices != 0 && u->price_version == NULL) {
        tg_price_version(ld);
    }

    /* every step gets its provider model's prices */

    for (i = 0; i < ld->p->nroutes; i++) {
        rt = &ld->p->routes[i];

        for (j = 0; j < rt->nsteps; j++) {
            for (k = 0; k < u->nprices; k++) {
                if (u->prices[k].provider_index == rt->steps[j].provider_index
                    && rt->steps[j].model != NULL
                    && strcmp(u->prices[k].model, rt->steps[j].model) == 0)
                {
                    rt->steps[j].price = &u->prices[k];
                    break;
                }
            }
        }
    }

}


/* "prices": { PROVIDER: { MODEL: { "input": 0.27, ... } } } */

static void
tg_load_prices(tg_loader *ld, const cJSON *usage)
{
    char                 ppath[TG_PATH_LEN], mpath[TG_PATH_LEN];
    char                 text[TG_PRICE_TEXT_MAX];
    size_t               n, i, m;
    const cJSON         *prices, *prov, *model;
    tg_price_entry      *e;
    const tg_provider   *pr;
    tg_usage_conf       *u = &ld->p->usage;

    prices = tg_member(usage, "prices");
    if (prices == NULL) {
        return;
    }

    if (!cJSON_IsObject(prices)) {
        tg_load_error(ld, "usage.prices", "expected an object of providers");
        return;
    }

    tg_check_keys(ld, prices, "usage.prices", NULL);

    n = 0;
    for (prov = prices->child; prov != NULL; prov = prov->next) {
        if (cJSON_IsObject(prov)) {
            for (model = prov->child; model != NULL; model = model->next) {
                n++;
            }
        }
    }

    if (n == 0) {
        return;
    }

    u->prices = tg_arena_alloc(&ld->p->arena, n * sizeof(tg_price_entry));
    if (u->prices == NULL) {
        ld->oom = true;
        return;
    }

    memset(u->prices, 0, n * sizeof(tg_price_entry));

    for (prov = prices->child; prov != NULL; prov = prov->next) {
        tg_key_path(ppath, "usage.prices", prov->string);

        pr = tg_policy_provider(ld->p, prov->string, strlen(prov->string));

        if (pr == NULL) {
            tg_load_error(ld, ppath, "no provider named \"%s\"",
                          prov->string);
            continue;
        }

        if (!cJSON_IsObject(prov)) {
            tg_load_error(ld, ppath, "expected an object of models");
            continue;
        }

        tg_check_keys(ld, prov, ppath, NULL);

        for (model = prov->child; model != NULL; model = model->next) {
            tg_key_path(mpath, ppath, model->string);

            if (model->string[0] == '\0'
                || strlen(model->string) > TG_MODEL_NAME_MAX)
            {
                tg_load_error(ld, mpath, "expected a model name of 1 to %d "
                              "bytes", TG_MODEL_NAME_MAX);
                continue;
            }

            if (pr->models != NULL
                && tg_name_index(pr->models, pr->nmodels, model->string,
                                 strlen(model->string)) == pr->nmodels)
            {
                tg_load_error(ld, mpath, "provider \"%s\" has no model "
                              "\"%s\" in its \"models\"", pr->name,
                              model->string);
                continue;
            }

            for (i = 0, m = SIZE_MAX; i < u->nprices; i++) {
                if (u->prices[i].provider_index == pr->index
                    && strcmp(u->prices[i].model, model->string) == 0)
                {
                    m = i;
                }
            }

            if (m != SIZE_MAX) {
                continue;       /* a duplicate key: tg_check_keys said so */
            }

            e = &u->prices[u->nprices];
            e->provider_index = pr->index;
            e->model = tg_copy(ld, model->string);

            tg_load_price(ld, model, mpath, &e->price);

            tg_price_text(&e->price, text, sizeof(text));
            e->text = tg_copy(ld, text);

            if (e->model != NULL && e->text != NULL) {
                u->nprices++;
            }
        }
    }
}


static void
tg_load_price(tg_loader *ld, const cJSON *item, const char *path,
    tg_price *price)
{
    if (!cJSON_IsObject(item)) {
        tg_load_error(ld, path, "expected an object of prices (\"input\", "
                      "\"cached_input\", \"output\", \"audio_minute\", "
                      "\"characters\")");
        return;
    }

    tg_check_keys(ld, item, path, tg_price_keys);

    tg_price_member(ld, item, path, "input", &price->input);
    tg_price_member(ld, item, path, "output", &price->output);
    tg_price_member(ld, item, path, "audio_minute", &price->audio_minute);
    tg_price_member(ld, item, path, "characters", &price->characters);

    /* a cache the price list does not mention is no discount */
    price->cached_input = price->input;
    tg_price_member(ld, item, path, "cached_input", &price->cached_input);
}


static void
tg_price_member(tg_loader *ld, const cJSON *item, const char *path,
    const char *key, uint64_t *out)
{
    char          buf[TG_PATH_LEN];
    const cJSON  *v;

    v = tg_member(item, key);
    if (v == NULL) {
        return;
    }

    if (!cJSON_IsNumber(v) || tg_price_micro(v->valuedouble, out) != 0) {
        tg_key_path(buf, path, key);
        tg_load_error(ld, buf, "expected a price: a number from 0 to "
                      "999999.999999 (at most 6 decimals) in the currency");
    }
}


/* no version given: one made of what the prices are (FNV-1a, 64 bits) */

static void
tg_price_version(tg_loader *ld)
{
    char                 buf[24];
    size_t               i;
    uint64_t             h;
    const char          *parts[4];
    const unsigned char *s;
    tg_usage_conf       *u = &ld->p->usage;
    size_t               k;

    h = 14695981039346656037ULL;

    for (i = 0; i < u->nprices; i++) {
        parts[0] = ld->p->providers[u->prices[i].provider_index].name;
        parts[1] = u->prices[i].model;
        parts[2] = u->prices[i].text;
        parts[3] = u->currency != NULL ? u->currency : "";

        for (k = 0; k < 4; k++) {
            for (s = (const unsigned char *) parts[k]; ; s++) {
                h ^= *s;
                h *= 1099511628211ULL;

                if (*s == '\0') {
                    break;
                }
            }
        }
    }

    snprintf(buf, sizeof(buf), "h:%016llx", (unsigned long long) h);
    u->price_version = tg_copy(ld, buf);
}


const tg_price_entry *
tg_policy_price(const tg_policy *policy, const char *provider,
    size_t provider_len, const char *model, size_t model_len)
{
    size_t              i;
    const tg_provider  *pr;
    const tg_price_entry  *e;

    if (policy == NULL || provider == NULL || model == NULL) {
        return NULL;
    }

    pr = tg_policy_provider(policy, provider, provider_len);
    if (pr == NULL) {
        return NULL;
    }

    for (i = 0; i < policy->usage.nprices; i++) {
        e = &policy->usage.prices[i];

        if (e->provider_index == pr->index
            && strlen(e->model) == model_len
            && memcmp(e->model, model, model_len) == 0)
        {
            return e;
        }
    }

    return NULL;
}
