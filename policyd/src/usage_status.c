/*
 * Usage in the status: tokens and cost per route, provider and client
 * (at most usage.max_clients by name, the rest as "_other"), and what the
 * usage log wrote and dropped.  JSON and Prometheus text.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "usage.h"
#include "usage_status.h"


static void tg_tally_json(cJSON *obj, const char *name,
    const tg_usage_tally *t);
static void tg_names_json(cJSON *obj, const char *key,
    const tg_usage_names *n);
static void tg_names_prom(FILE *f, const char *what, const char *by,
    const tg_usage_names *n, const char *currency);
static void tg_tally_prom(FILE *f, const char *what, const char *by,
    const char *name, const tg_usage_tally *t, const char *currency);
static void tg_label(FILE *f, const char *value);


void
tg_usage_status_json(cJSON *root, const tg_status_view *v)
{
    cJSON               *u, *l;
    tg_usage_log_stats   st;
    const tg_usage      *us = v->usage;
    const tg_usage_conf *conf = &v->policy->usage;

    u = cJSON_AddObjectToObject(root, "usage");
    if (u == NULL) {
        return;
    }

    if (conf->currency != NULL) {
        cJSON_AddStringToObject(u, "currency", conf->currency);
        cJSON_AddStringToObject(u, "price_version", conf->price_version);
    } else {
        cJSON_AddNullToObject(u, "currency");
        cJSON_AddNullToObject(u, "price_version");
    }

    tg_usage_stats(us, &st);

    if (us != NULL && us->log != NULL) {
        l = cJSON_AddObjectToObject(u, "log");
        if (l != NULL) {
            cJSON_AddStringToObject(l, "path", us->log_path);
        }
    } else {
        l = NULL;
        cJSON_AddNullToObject(u, "log");
    }

    cJSON_AddNumberToObject(u, "records", (double) st.records);
    cJSON_AddNumberToObject(u, "written", (double) st.written);
    cJSON_AddNumberToObject(u, "dropped", (double) st.dropped);
    cJSON_AddNumberToObject(u, "write_errors", (double) st.write_errors);
    cJSON_AddNumberToObject(u, "reopened", (double) st.reopened);

    if (us == NULL) {
        return;
    }

    tg_tally_json(u, "total", &us->total);
    cJSON_AddNumberToObject(u, "unpriced", (double) us->unpriced);
    cJSON_AddNumberToObject(u, "cost_overflows", (double) us->overflows);
    cJSON_AddNumberToObject(u, "max_clients", conf->max_clients);
    cJSON_AddNumberToObject(u, "clients_folded",
                            (double) us->clients.folded);

    tg_names_json(u, "routes", &us->routes);
    tg_names_json(u, "providers", &us->providers);
    tg_names_json(u, "clients", &us->clients);
}


static void
tg_tally_json(cJSON *obj, const char *name, const tg_usage_tally *t)
{
    char    money[TG_MONEY_TEXT_MAX];
    cJSON  *x;

    x = cJSON_AddObjectToObject(obj, name);
    if (x == NULL) {
        return;
    }

    tg_money_text(t->cost, money, sizeof(money));

    cJSON_AddNumberToObject(x, "requests", (double) t->requests);
    cJSON_AddNumberToObject(x, "input_tokens", (double) t->input);
    cJSON_AddNumberToObject(x, "cached_tokens", (double) t->cached);
    cJSON_AddNumberToObject(x, "output_tokens", (double) t->output);
    cJSON_AddNumberToObject(x, "reasoning_tokens", (double) t->reasoning);
    cJSON_AddNumberToObject(x, "estimated", (double) t->estimated);
    cJSON_AddStringToObject(x, "cost", money);
}


static void
tg_names_json(cJSON *obj, const char *key, const tg_usage_names *n)
{
    size_t  i;
    cJSON  *x;

    x = cJSON_AddObjectToObject(obj, key);
    if (x == NULL) {
        return;
    }

    for (i = 0; i < n->n; i++) {
        tg_tally_json(x, n->entries[i].name, &n->entries[i].tally);
    }

    if (n->folded != 0) {
        tg_tally_json(x, TG_USAGE_OTHER, &n->other);
    }
}


char *
tg_usage_status_prometheus(const tg_status_view *v, size_t *len)
{
    char                *buf;
    FILE                *f;
    size_t               size;
    tg_usage_log_stats   st;
    const tg_usage      *us = v->usage;
    const char          *currency;

    buf = NULL;
    size = 0;

    f = open_memstream(&buf, &size);
    if (f == NULL) {
        return NULL;
    }

    tg_usage_stats(us, &st);

    fprintf(f, "# HELP tailgate_usage_records_total Usage records given "
            "to the usage log.\n# TYPE tailgate_usage_records_total counter\n"
            "tailgate_usage_records_total %llu\n"
            "# HELP tailgate_usage_dropped_total Usage records dropped: "
            "the log's buffer was full.\n"
            "# TYPE tailgate_usage_dropped_total counter\n"
            "tailgate_usage_dropped_total %llu\n"
            "# HELP tailgate_usage_write_errors_total Usage records lost "
            "to write errors.\n"
            "# TYPE tailgate_usage_write_errors_total counter\n"
            "tailgate_usage_write_errors_total %llu\n",
            (unsigned long long) st.records,
            (unsigned long long) st.dropped,
            (unsigned long long) st.write_errors);

    if (us != NULL) {
        currency = v->policy->usage.currency;

        fprintf(f, "# HELP tailgate_tokens_total Tokens used, by kind "
                "(input, cached, output, reasoning), per route, provider "
                "and client.\n# TYPE tailgate_tokens_total counter\n");
        tg_names_prom(f, "tokens", "route", &us->routes, NULL);
        tg_names_prom(f, "tokens", "provider", &us->providers, NULL);
        tg_names_prom(f, "tokens", "client", &us->clients, NULL);

        fprintf(f, "# HELP tailgate_cost_total What was used cost, in the "
                "policy's currency.\n# TYPE tailgate_cost_total counter\n");
        tg_names_prom(f, "cost", "route", &us->routes, currency);
        tg_names_prom(f, "cost", "provider", &us->providers, currency);
        tg_names_prom(f, "cost", "client", &us->clients, currency);
    }

    if (fclose(f) != 0) {
        free(buf);
        return NULL;
    }

    *len = size;

    return buf;
}


static void
tg_names_prom(FILE *f, const char *what, const char *by,
    const tg_usage_names *n, const char *currency)
{
    size_t  i;

    for (i = 0; i < n->n; i++) {
        tg_tally_prom(f, what, by, n->entries[i].name, &n->entries[i].tally,
                      currency);
    }

    if (n->folded != 0) {
        tg_tally_prom(f, what, by, TG_USAGE_OTHER, &n->other, currency);
    }
}


static void
tg_tally_prom(FILE *f, const char *what, const char *by, const char *name,
    const tg_usage_tally *t, const char *currency)
{
    char             money[TG_MONEY_TEXT_MAX];
    size_t           k;
    uint64_t         counts[4];
    static const char *const  kinds[] = {
        "input", "cached", "output", "reasoning"
    };

    if (strcmp(what, "tokens") == 0) {
        counts[0] = t->input;
        counts[1] = t->cached;
        counts[2] = t->output;
        counts[3] = t->reasoning;

        for (k = 0; k < 4; k++) {
            fprintf(f, "tailgate_tokens_total{%s=\"", by);
            tg_label(f, name);
            fprintf(f, "\",kind=\"%s\"} %llu\n", kinds[k],
                    (unsigned long long) counts[k]);
        }

        return;
    }

    tg_money_text(t->cost, money, sizeof(money));

    fprintf(f, "tailgate_cost_total{%s=\"", by);
    tg_label(f, name);
    fprintf(f, "\",currency=\"%s\"} %s\n", currency ? currency : "", money);
}


static void
tg_label(FILE *f, const char *value)
{
    const char  *p;

    for (p = value; *p != '\0'; p++) {
        if (*p == '\\' || *p == '"') {
            fprintf(f, "\\%c", *p);
        } else if (*p == '\n') {
            fputs("\\n", f);
        } else {
            fputc(*p, f);
        }
    }
}
