/*
 * policyd usage -f FILE [-f FILE ...] [--since T] [--until T]
 *               [--by client|tenant|route|provider|model|day] [--json|--csv]
 *
 * Totals of usage logs: requests, tokens by kind, estimated requests and
 * cost, for one group or per client, tenant, route, provider, provider
 * model or day (UTC).  --since is inclusive, --until exclusive; T is RFC
 * 3339, a day, or seconds since the epoch (usage_read.h).  Exits 0, 1
 * when a file cannot be read, 2 for bad arguments.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "price.h"
#include "usage_cli.h"
#include "usage_read.h"


#define TG_USAGE_FILES_MAX  64
#define TG_USAGE_LINE_READ  (1024 * 1024)


typedef enum {
    TG_BY_NONE = 0, TG_BY_CLIENT, TG_BY_TENANT, TG_BY_ROUTE, TG_BY_PROVIDER,
    TG_BY_MODEL, TG_BY_DAY
} tg_by;

static const char *const  tg_by_names[] = {
    "total", "client", "tenant", "route", "provider", "model", "day", NULL
};


typedef struct {
    char       *key;
    uint64_t    requests;
    uint64_t    input;
    uint64_t    cached;
    uint64_t    output;
    uint64_t    reasoning;
    uint64_t    estimated;
    uint64_t    unpriced;
    uint64_t    cost;
    bool        cost_overflow;
} tg_group;


typedef struct {
    tg_group   *groups;
    size_t      n;
    size_t      cap;
    tg_group    total;
    char        currency[TG_USAGE_FIELD_MAX + 1];
    bool        mixed;              /* more than one currency */
    uint64_t    skipped;            /* lines that are no record */
} tg_totals;


static void tg_usage_help(FILE *out);
static int tg_usage_read(const char *file, tg_totals *tt, tg_by by,
    bool since_set, int64_t since, bool until_set, int64_t until);
static int tg_usage_add(tg_totals *tt, tg_by by, const tg_usage_row *row);
static void tg_group_add(tg_group *g, const tg_usage_row *row);
static int tg_group_cmp(const void *a, const void *b);
static void tg_print_text(const tg_totals *tt, tg_by by);
static void tg_print_csv(const tg_totals *tt, tg_by by);
static int tg_print_json(const tg_totals *tt, tg_by by);
static void tg_csv_field(const char *s);
static void tg_cost_text(const tg_group *g, char *buf, size_t size);


int
tg_usage_main(int argc, char **argv)
{
    int          i, rc, format;
    size_t       nfiles, k;
    tg_by        by;
    int64_t      since, until;
    tg_totals    tt;
    const char  *files[TG_USAGE_FILES_MAX], *a;
    bool         since_set, until_set;

    nfiles = 0;
    by = TG_BY_NONE;
    since = until = 0;
    since_set = until_set = false;
    format = 0;                     /* 0 text, 1 json, 2 csv */

    for (i = 1; i < argc; i++) {
        a = argv[i];

        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            tg_usage_help(stdout);
            return 0;
        }

        if ((strcmp(a, "-f") == 0 || strcmp(a, "--file") == 0)
            && i + 1 < argc)
        {
            if (nfiles == TG_USAGE_FILES_MAX) {
                fprintf(stderr, "policyd usage: at most %d files\n",
                        TG_USAGE_FILES_MAX);
                return 2;
            }
            files[nfiles++] = argv[++i];

        } else if ((strcmp(a, "--since") == 0 || strcmp(a, "--until") == 0)
                   && i + 1 < argc)
        {
            if (tg_usage_time_parse(argv[i + 1], strlen(argv[i + 1]),
                                    a[2] == 's' ? &since : &until) != 0)
            {
                fprintf(stderr, "policyd usage: %s: \"%s\" is not a time: "
                        "expected RFC 3339 (2026-12-02T20:00:00Z), a day "
                        "(2026-12-02) or seconds since the epoch\n", a,
                        argv[i + 1]);
                tg_usage_help(stderr);
                return 2;
            }

            if (a[2] == 's') {
                since_set = true;
            } else {
                until_set = true;
            }
            i++;

        } else if (strcmp(a, "--by") == 0 && i + 1 < argc) {
            for (k = 1; tg_by_names[k] != NULL; k++) {
                if (strcmp(argv[i + 1], tg_by_names[k]) == 0) {
                    break;
                }
            }

            if (tg_by_names[k] == NULL) {
                fprintf(stderr, "policyd usage: --by: expected client, "
                        "tenant, route, provider, model or day\n");
                tg_usage_help(stderr);
                return 2;
            }

            by = (tg_by) k;
            i++;

        } else if (strcmp(a, "--json") == 0 && format != 2) {
            format = 1;

        } else if (strcmp(a, "--csv") == 0 && format != 1) {
            format = 2;

        } else {
            fprintf(stderr, "policyd usage: unexpected \"%s\"\n", a);
            tg_usage_help(stderr);
            return 2;
        }
    }

    if (nfiles == 0) {
        fprintf(stderr, "policyd usage: -f FILE is required\n");
        tg_usage_help(stderr);
        return 2;
    }

    memset(&tt, 0, sizeof(tt));
    rc = 0;

    for (k = 0; k < nfiles; k++) {
        if (tg_usage_read(files[k], &tt, by, since_set, since, until_set,
                          until) != 0)
        {
            rc = 1;
        }
    }

    if (rc == 0) {
        if (tt.n > 1) {
            qsort(tt.groups, tt.n, sizeof(tg_group), tg_group_cmp);
        }

        if (tt.skipped != 0) {
            fprintf(stderr, "policyd usage: %llu line%s that are not usage "
                    "records skipped\n", (unsigned long long) tt.skipped,
                    tt.skipped == 1 ? "" : "s");
        }

        if (tt.mixed) {
            fprintf(stderr, "policyd usage: the records are in more than "
                    "one currency; costs are not summed\n");
        }

        if (format == 1) {
            rc = tg_print_json(&tt, by);
        } else if (format == 2) {
            tg_print_csv(&tt, by);
        } else {
            tg_print_text(&tt, by);
        }
    }

    for (k = 0; k < tt.n; k++) {
        free(tt.groups[k].key);
    }
    free(tt.groups);

    if (fflush(stdout) != 0) {
        rc = 1;
    }

    return rc;
}


static void
tg_usage_help(FILE *out)
{
    fprintf(out,
            "usage: policyd usage -f FILE [-f FILE ...] [--since T] "
            "[--until T]\n"
            "                     [--by client|tenant|route|provider|model|"
            "day] [--json|--csv]\n"
            "  totals of usage logs: requests, tokens, cost\n"
            "  T: RFC 3339 (2026-12-02T20:00:00Z, 2026-12-02T21:00:00+01:00),"
            " a day\n"
            "     (2026-12-02, midnight UTC) or seconds since the epoch "
            "(1764705600);\n"
            "     --since is inclusive, --until exclusive\n");
}


static int
tg_usage_read(const char *file, tg_totals *tt, tg_by by, bool since_set,
    int64_t since, bool until_set, int64_t until)
{
    FILE          *f;
    char          *line;
    size_t         cap;
    ssize_t        n;
    tg_usage_row  *row;

    f = strcmp(file, "-") == 0 ? stdin : fopen(file, "r");
    if (f == NULL) {
        fprintf(stderr, "policyd usage: %s: %s\n", file, strerror(errno));
        return -1;
    }

    row = malloc(sizeof(tg_usage_row));
    if (row == NULL) {
        fprintf(stderr, "policyd usage: out of memory\n");
        if (f != stdin) {
            fclose(f);
        }
        return -1;
    }

    line = NULL;
    cap = 0;

    while ((n = getline(&line, &cap, f)) != -1) {
        if (n > 0 && line[n - 1] == '\n') {
            n--;
        }

        if (n == 0) {
            continue;
        }

        if (n > TG_USAGE_LINE_READ
            || tg_usage_row_parse(line, (size_t) n, row) != 0)
        {
            tt->skipped++;
            continue;
        }

        if ((since_set && row->time_ms < since)
            || (until_set && row->time_ms >= until))
        {
            continue;
        }

        if (tg_usage_add(tt, by, row) != 0) {
            fprintf(stderr, "policyd usage: out of memory\n");
            free(line);
            free(row);
            if (f != stdin) {
                fclose(f);
            }
            return -1;
        }
    }

    if (ferror(f)) {
        fprintf(stderr, "policyd usage: %s: %s\n", file, strerror(errno));
        free(line);
        free(row);
        if (f != stdin) {
            fclose(f);
        }
        return -1;
    }

    free(line);
    free(row);

    if (f != stdin) {
        fclose(f);
    }

    return 0;
}


static int
tg_usage_add(tg_totals *tt, tg_by by, const tg_usage_row *row)
{
    size_t       i;
    tg_group    *g;
    const char  *key;

    if (row->priced) {
        if (tt->currency[0] == '\0') {
            memcpy(tt->currency, row->currency, sizeof(tt->currency));
        } else if (strcmp(tt->currency, row->currency) != 0) {
            tt->mixed = true;
        }
    }

    tg_group_add(&tt->total, row);

    switch (by) {
    case TG_BY_CLIENT:   key = row->client; break;
    case TG_BY_TENANT:   key = row->tenant; break;
    case TG_BY_ROUTE:    key = row->route; break;
    case TG_BY_PROVIDER: key = row->provider; break;
    case TG_BY_MODEL:    key = row->model; break;
    case TG_BY_DAY:      key = row->day; break;
    default:             return 0;
    }

    /* a few hundred groups at most in practice: a list is enough */

    for (i = 0; i < tt->n; i++) {
        if (strcmp(tt->groups[i].key, key) == 0) {
            tg_group_add(&tt->groups[i], row);
            return 0;
        }
    }

    if (tt->n == tt->cap) {
        g = realloc(tt->groups, (tt->cap ? tt->cap * 2 : 16)
                                * sizeof(tg_group));
        if (g == NULL) {
            return -1;
        }
        tt->groups = g;
        tt->cap = tt->cap ? tt->cap * 2 : 16;
    }

    g = &tt->groups[tt->n];
    memset(g, 0, sizeof(*g));

    g->key = strdup(key);
    if (g->key == NULL) {
        return -1;
    }

    tt->n++;
    tg_group_add(g, row);

    return 0;
}


static void
tg_group_add(tg_group *g, const tg_usage_row *row)
{
    g->requests++;
    g->input += row->input;
    g->cached += row->cached;
    g->output += row->output;
    g->reasoning += row->reasoning;
    g->estimated += row->estimated;

    if (!row->priced) {
        g->unpriced++;
        return;
    }

    if (g->cost + row->cost < g->cost) {
        g->cost_overflow = true;
    }

    g->cost += row->cost;
}


static int
tg_group_cmp(const void *a, const void *b)
{
    return strcmp(((const tg_group *) a)->key, ((const tg_group *) b)->key);
}


static void
tg_cost_text(const tg_group *g, char *buf, size_t size)
{
    if (g->cost_overflow) {
        snprintf(buf, size, "overflow");
        return;
    }

    tg_money_text(g->cost, buf, size);
}


static void
tg_print_text(const tg_totals *tt, tg_by by)
{
    char             cost[TG_MONEY_TEXT_MAX];
    size_t           i;
    const tg_group  *g;

    printf("%-24s %10s %12s %12s %12s %12s %9s %s\n",
           tg_by_names[by], "requests", "input", "cached", "output",
           "reasoning", "estimated", tt->currency[0] ? tt->currency : "cost");

    for (i = 0; i <= tt->n; i++) {
        g = i < tt->n ? &tt->groups[i] : &tt->total;

        if (i == tt->n && by != TG_BY_NONE && tt->n == 0) {
            /* nothing in the period: the total line alone says so */
        }

        tg_cost_text(g, cost, sizeof(cost));

        printf("%-24s %10llu %12llu %12llu %12llu %12llu %9llu %s\n",
               i < tt->n ? (g->key[0] ? g->key : "-") : "total",
               (unsigned long long) g->requests,
               (unsigned long long) g->input,
               (unsigned long long) g->cached,
               (unsigned long long) g->output,
               (unsigned long long) g->reasoning,
               (unsigned long long) g->estimated,
               tt->mixed ? "mixed" : cost);
    }
}


static void
tg_print_csv(const tg_totals *tt, tg_by by)
{
    char             cost[TG_MONEY_TEXT_MAX];
    size_t           i, n;
    const tg_group  *g;

    printf("%s,requests,input_tokens,cached_tokens,output_tokens,"
           "reasoning_tokens,estimated,cost,currency\n", tg_by_names[by]);

    /* without --by, the one row is the total */

    n = by == TG_BY_NONE ? 1 : tt->n;

    for (i = 0; i < n; i++) {
        g = by == TG_BY_NONE ? &tt->total : &tt->groups[i];

        tg_csv_field(by == TG_BY_NONE ? "total" : g->key);
        tg_cost_text(g, cost, sizeof(cost));

        printf(",%llu,%llu,%llu,%llu,%llu,%llu,%s,",
               (unsigned long long) g->requests,
               (unsigned long long) g->input,
               (unsigned long long) g->cached,
               (unsigned long long) g->output,
               (unsigned long long) g->reasoning,
               (unsigned long long) g->estimated,
               tt->mixed ? "" : cost);
        tg_csv_field(tt->mixed ? "" : tt->currency);
        printf("\n");
    }
}


/*
 * RFC 4180 quoting; and a name a spreadsheet would take for a formula
 * (=, +, -, @ first) is quoted with a leading ' so it stays a name.
 */

static void
tg_csv_field(const char *s)
{
    const char  *p;
    bool         quote, formula;

    formula = s[0] == '=' || s[0] == '+' || s[0] == '-' || s[0] == '@';
    quote = formula || strpbrk(s, ",\"\r\n") != NULL;

    if (!quote) {
        fputs(s, stdout);
        return;
    }

    putchar('"');

    if (formula) {
        putchar('\'');
    }

    for (p = s; *p != '\0'; p++) {
        if (*p == '"') {
            putchar('"');
        }
        putchar(*p);
    }

    putchar('"');
}


static cJSON *
tg_group_json(const tg_totals *tt, const tg_group *g, const char *key)
{
    char    cost[TG_MONEY_TEXT_MAX];
    cJSON  *o, *t;

    o = cJSON_CreateObject();
    if (o == NULL) {
        return NULL;
    }

    if (key != NULL) {
        cJSON_AddStringToObject(o, "key", key);
    }

    cJSON_AddNumberToObject(o, "requests", (double) g->requests);

    t = cJSON_AddObjectToObject(o, "tokens");
    if (t != NULL) {
        cJSON_AddNumberToObject(t, "input", (double) g->input);
        cJSON_AddNumberToObject(t, "cached", (double) g->cached);
        cJSON_AddNumberToObject(t, "output", (double) g->output);
        cJSON_AddNumberToObject(t, "reasoning", (double) g->reasoning);
    }

    cJSON_AddNumberToObject(o, "estimated", (double) g->estimated);
    cJSON_AddNumberToObject(o, "unpriced", (double) g->unpriced);

    if (tt->mixed) {
        cJSON_AddNullToObject(o, "cost");
    } else {
        tg_cost_text(g, cost, sizeof(cost));
        cJSON_AddStringToObject(o, "cost", cost);
    }

    return o;
}


static int
tg_print_json(const tg_totals *tt, tg_by by)
{
    char    *text;
    size_t   i;
    cJSON   *root, *list, *g;

    root = cJSON_CreateObject();
    if (root == NULL) {
        return 1;
    }

    cJSON_AddStringToObject(root, "by", tg_by_names[by]);

    if (tt->currency[0] != '\0' && !tt->mixed) {
        cJSON_AddStringToObject(root, "currency", tt->currency);
    } else {
        cJSON_AddNullToObject(root, "currency");
    }

    cJSON_AddNumberToObject(root, "skipped_lines", (double) tt->skipped);

    list = cJSON_AddArrayToObject(root, "groups");

    for (i = 0; list != NULL && by != TG_BY_NONE && i < tt->n; i++) {
        g = tg_group_json(tt, &tt->groups[i], tt->groups[i].key);
        if (g != NULL) {
            cJSON_AddItemToArray(list, g);
        }
    }

    g = tg_group_json(tt, &tt->total, NULL);
    if (g != NULL) {
        cJSON_AddItemToObject(root, "total", g);
    }

    text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);

    if (text == NULL) {
        return 1;
    }

    printf("%s\n", text);
    free(text);

    return 0;
}
