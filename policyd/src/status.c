/*
 * The operators' view: JSON for people and scripts, Prometheus text for
 * scrapers.  Both are built from the same records; nothing here changes
 * state.  Provider keys are never part of it, and a probe URL is shown
 * without its user and password.
 */

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "limits_admit.h"
#include "redis_keys.h"
#include "status.h"
#include "usage_status.h"
#include "version.h"


typedef struct {
    char    *data;
    size_t   len;
    size_t   cap;
    bool     failed;
} tg_text;


static const char *tg_state_shown(const tg_pstate *ps);
static void tg_url_shown(const char *url, char *buf, size_t size);
static void tg_text_add(tg_text *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void tg_text_label(tg_text *t, const char *value);
static const char *tg_outcome_at(size_t k);
static const char *tg_decided_at(size_t k);
static void tg_json_counts(cJSON *x, const uint64_t *counts, size_t n,
    const char *(*name)(size_t k));
static void tg_text_counts(tg_text *t, const char *metric, const char *by,
    const char *who, const char *label, const uint64_t *counts, size_t n,
    const char *(*name)(size_t k));


static const char  *tg_decided_names[6] = {
    "200", "400", "403", "404", "429", "other"
};


/* at capacity shows as busy: it is not a state decisions are cached on */

static const char *
tg_state_shown(const tg_pstate *ps)
{
    if (ps->health == TG_HEALTH_UP && tg_health_at_capacity(ps)) {
        return tg_health_name(TG_HEALTH_BUSY);
    }

    return tg_health_name(ps->health);
}


/* a provider's plan and cooldown: "limits", null when it has neither */

static void
tg_status_limits(cJSON *p, const tg_state *st, const tg_provider *pr)
{
    cJSON                    *x;
    tg_limits_provider_view   lv;

    tg_limits_provider_seen(st->limits, pr, tg_limit_clock_ms(), &lv);

    if (pr->rpm == 0 && pr->tpm == 0 && lv.cooldown_ms == 0) {
        cJSON_AddNullToObject(p, "limits");
        return;
    }

    x = cJSON_AddObjectToObject(p, "limits");
    if (x == NULL) {
        return;
    }

    if (pr->rpm != 0) {
        cJSON_AddNumberToObject(x, "rpm", pr->rpm);
        cJSON_AddNumberToObject(x, "requests_left", lv.requests_left);
    }

    if (pr->tpm != 0) {
        cJSON_AddNumberToObject(x, "tpm", pr->tpm);
        cJSON_AddNumberToObject(x, "tokens_left", lv.tokens_left);
    }

    cJSON_AddNumberToObject(x, "cooldown_ms", (double) lv.cooldown_ms);
}


/*
 * The day's usage counters of every node, read back from Redis: by kind,
 * then name, its requests, tokens and cost (in the prices' currency).
 */

/* policyd.redis.reconcile: the numbered batches (docs/policy.md) */

static void
tg_status_redis_reconcile(cJSON *r, const tg_reconcile_view *rc)
{
    cJSON  *o = cJSON_AddObjectToObject(r, "reconcile");

    if (o == NULL) {
        return;
    }

    cJSON_AddNumberToObject(o, "sent", (double) rc->sent);
    cJSON_AddNumberToObject(o, "resent", (double) rc->resent);
    cJSON_AddNumberToObject(o, "applied", (double) rc->applied);
    cJSON_AddNumberToObject(o, "skipped", (double) rc->skipped);
    cJSON_AddNumberToObject(o, "pending", (double) rc->pending);
    cJSON_AddNumberToObject(o, "dropped", (double) rc->dropped);
    cJSON_AddNumberToObject(o, "usage_pending", (double) rc->usage_pending);
    cJSON_AddNumberToObject(o, "usage_dropped", (double) rc->usage_dropped);

    /* of them, the REPORTs' corrections' batches; their counters waiting */

    o = cJSON_AddObjectToObject(o, "corrections");

    if (o == NULL) {
        return;
    }

    cJSON_AddNumberToObject(o, "sent", (double) rc->corr_sent);
    cJSON_AddNumberToObject(o, "resent", (double) rc->corr_resent);
    cJSON_AddNumberToObject(o, "applied", (double) rc->corr_applied);
    cJSON_AddNumberToObject(o, "skipped", (double) rc->corr_skipped);
    cJSON_AddNumberToObject(o, "waiting", (double) rc->corr_waiting);
    cJSON_AddNumberToObject(o, "dropped", (double) rc->corr_dropped);
}


static void
tg_status_redis_usage(cJSON *r, const tg_redis_view *rv)
{
    size_t                      k, i;
    cJSON                      *u, *kind, *e;
    const tg_redis_usage       *us = rv->usage;
    const tg_redis_usage_entry *en;

    if (us == NULL || !us->read) {
        cJSON_AddNullToObject(r, "usage");
        return;
    }

    u = cJSON_AddObjectToObject(r, "usage");
    if (u == NULL) {
        return;
    }

    cJSON_AddStringToObject(u, "day", us->day);
    cJSON_AddNumberToObject(u, "age_s", (double) (long) (rv->now - us->at));

    for (k = 0; k < TG_REDIS_USAGE_KINDS; k++) {
        kind = cJSON_AddObjectToObject(u, tg_redis_usage_kinds[k]);

        for (i = 0; kind != NULL && i <= us->kinds[k].n; i++) {
            if (i == us->kinds[k].n) {
                if (!us->kinds[k].has_other) {
                    break;
                }
                en = &us->kinds[k].other;
            } else {
                en = &us->kinds[k].entries[i];
            }

            e = cJSON_AddObjectToObject(kind, en->name);
            if (e == NULL) {
                continue;
            }

            cJSON_AddNumberToObject(e, "requests", (double) en->requests);
            cJSON_AddNumberToObject(e, "tokens", (double) en->tokens);
            cJSON_AddNumberToObject(e, "cost", (double) en->cost_nano / 1e9);
        }
    }
}


char *
tg_status_json(const tg_status_view *v, size_t *len)
{
    char              *text, buf[TG_HEALTH_URL_MAX + 1], when[32];
    size_t             i, k;
    cJSON             *root, *o, *list, *p, *x, *arr, *r;
    uint64_t           now;
    time_t             t;
    struct tm          tm;
    const tg_state    *st = v->state;
    const tg_rstate   *rs;
    const tg_pstate   *ps;
    const tg_route    *rt;
    const tg_provider *pr;
    const tg_recent_error  *e;

    now = v->now_ms;

    root = cJSON_CreateObject();
    if (root == NULL) {
        return NULL;
    }

    o = cJSON_AddObjectToObject(root, "policyd");

    t = v->policy->loaded_at;
    gmtime_r(&t, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);

    cJSON_AddStringToObject(o, "software", TG_SOFTWARE);
    cJSON_AddNumberToObject(o, "pid", (double) getpid());
    cJSON_AddNumberToObject(o, "uptime_s",
                            (double) (long) v->uptime);
    cJSON_AddStringToObject(o, "policy_loaded", when);
    cJSON_AddNumberToObject(o, "connections", (double) v->connections);
    cJSON_AddNumberToObject(o, "leases", (double) st->nleases);
    cJSON_AddNumberToObject(o, "queued", (double) v->queued);
    cJSON_AddNumberToObject(o, "decisions", (double) st->decisions);

    if (v->has_redis) {
        r = cJSON_AddObjectToObject(o, "redis");
        cJSON_AddStringToObject(r, "state", v->redis_view.state);
        cJSON_AddNumberToObject(r, "since_s", (double) (long)
                                v->redis_view.since_s);
        cJSON_AddStringToObject(r, "node", v->redis_view.node);
        cJSON_AddStringToObject(r, "on_redis_error", v->redis_view.on_error);
        cJSON_AddNumberToObject(r, "timeouts", (double) v->redis_view.timeouts);
        cJSON_AddNumberToObject(r, "errors", (double) v->redis_view.errors);
        tg_status_redis_usage(r, &v->redis_view);
        tg_status_redis_reconcile(r, &v->redis_view.reconcile);
    }

    if (v->has_otlp) {
        const tg_otlp_stats  *ot = &v->otlp_view;

        r = cJSON_AddObjectToObject(o, "traces");
        cJSON_AddNumberToObject(r, "spans", (double) ot->spans);
        cJSON_AddNumberToObject(r, "exported", (double) ot->exported);
        cJSON_AddNumberToObject(r, "queued", (double) ot->queued);
        cJSON_AddNumberToObject(r, "dropped_queue_full",
                                (double) ot->dropped_full);
        cJSON_AddNumberToObject(r, "dropped_export_failed",
                                (double) ot->dropped_failed);
        cJSON_AddNumberToObject(r, "exports", (double) ot->exports);
        cJSON_AddNumberToObject(r, "export_errors",
                                (double) ot->export_errors);
        cJSON_AddNumberToObject(r, "last_status", (double) ot->last_status);
    }

    list = cJSON_AddArrayToObject(root, "providers");

    for (i = 0; list != NULL && i < v->policy->nproviders; i++) {
        pr = &v->policy->providers[i];
        ps = tg_state_provider(st, i);

        if (ps == NULL || (p = cJSON_CreateObject()) == NULL) {
            continue;
        }

        cJSON_AddItemToArray(list, p);

        cJSON_AddStringToObject(p, "name", pr->name);
        cJSON_AddStringToObject(p, "zone", tg_zone_name(pr->zone));
        cJSON_AddStringToObject(p, "upstream", pr->upstream);
        cJSON_AddStringToObject(p, "state", tg_state_shown(ps));
        cJSON_AddNumberToObject(p, "since_s", ps->health_since_ms
                                ? (double) ((now - ps->health_since_ms) / 1000)
                                : (double) (long) v->uptime);
        cJSON_AddStringToObject(p, "why", ps->why[0] ? ps->why
                                                     : "no failures seen");
        cJSON_AddNumberToObject(p, "in_flight", ps->in_flight);
        if (v->has_redis && ps->max_concurrency != 0) {
            cJSON_AddNumberToObject(p, "in_flight_other_nodes", ps->others);
        }

        if (ps->max_concurrency) {
            cJSON_AddNumberToObject(p, "max_concurrency", ps->max_concurrency);
        } else {
            cJSON_AddNullToObject(p, "max_concurrency");
        }

        cJSON_AddNumberToObject(p, "queued", ps->queued);
        cJSON_AddNumberToObject(p, "oldest_request_ms",
                                (double) ps->oldest_lease_ms);
        cJSON_AddNumberToObject(p, "decisions", (double) ps->decisions);
        tg_status_limits(p, st, pr);

        if (pr->health.url != NULL) {
            x = cJSON_AddObjectToObject(p, "probe");
            tg_url_shown(pr->health.url, buf, sizeof(buf));
            cJSON_AddStringToObject(x, "url", buf);

            if (ps->probe_at_ms != 0) {
                cJSON_AddBoolToObject(x, "ok", ps->probe.ok);
                cJSON_AddNumberToObject(x, "status", ps->probe.status);
                cJSON_AddNumberToObject(x, "ms", ps->probe.ms);
                cJSON_AddNumberToObject(x, "age_ms",
                                        (double) (now - ps->probe_at_ms));
                cJSON_AddStringToObject(x, "note", ps->probe.note);
                cJSON_AddNumberToObject(x, "failures_in_a_row",
                                        ps->probe_fail_run);

                if (ps->probe.slots_total >= 0) {
                    cJSON_AddNumberToObject(x, "slots", ps->probe.slots_total);
                    cJSON_AddNumberToObject(x, "slots_busy",
                                            ps->probe.slots_busy);
                }

                if (ps->probe.running >= 0) {
                    cJSON_AddNumberToObject(x, "running", ps->probe.running);
                }

                if (ps->probe.waiting >= 0) {
                    cJSON_AddNumberToObject(x, "waiting", ps->probe.waiting);
                }
            }
        } else {
            cJSON_AddNullToObject(p, "probe");
        }

        x = cJSON_AddObjectToObject(p, "requests");
        tg_json_counts(x, ps->reports, TG_OUTCOME_COUNT, tg_outcome_at);

        cJSON_AddNumberToObject(p, "failures_in_a_row", ps->fail_run);

        x = cJSON_AddObjectToObject(p, "latency_ms");
        cJSON_AddNumberToObject(x, "samples", (double) ps->nlatencies);
        cJSON_AddNumberToObject(x, "p50", tg_health_latency(ps, 50));
        cJSON_AddNumberToObject(x, "p95", tg_health_latency(ps, 95));

        arr = cJSON_AddArrayToObject(p, "recent_errors");

        /* newest first */

        for (k = 0; arr != NULL && k < ps->nerrors; k++) {
            e = &ps->errors[(ps->error_pos + TG_RECENT_ERRORS - 1 - k)
                            % TG_RECENT_ERRORS];

            x = cJSON_CreateObject();
            if (x == NULL) {
                break;
            }

            cJSON_AddItemToArray(arr, x);
            cJSON_AddNumberToObject(x, "age_s",
                                    (double) ((now - e->at_ms) / 1000));
            cJSON_AddStringToObject(x, "outcome", tg_outcome_name(e->outcome));
            cJSON_AddNumberToObject(x, "status", e->status);
        }
    }

    list = cJSON_AddArrayToObject(root, "routes");

    for (i = 0; list != NULL && i < v->policy->nroutes; i++) {
        rt = &v->policy->routes[i];
        rs = tg_state_route_find(st, rt->name);

        if ((p = cJSON_CreateObject()) == NULL) {
            break;
        }

        cJSON_AddItemToArray(list, p);
        cJSON_AddStringToObject(p, "name", rt->name);

        x = cJSON_AddObjectToObject(p, "decisions");

        if (rs != NULL) {
            tg_json_counts(x, rs->decided, 6, tg_decided_at);
        }

        x = cJSON_AddObjectToObject(p, "requests");

        if (rs != NULL) {
            tg_json_counts(x, rs->reports, TG_OUTCOME_COUNT, tg_outcome_at);
        }
    }

    tg_usage_status_json(root, v);

    text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);

    if (text == NULL) {
        return NULL;
    }

    *len = strlen(text);

    return text;
}


char *
tg_status_prometheus(const tg_status_view *v, size_t *len)
{
    int                h;
    size_t             i;
    tg_text            t;
    const tg_state    *st = v->state;
    const tg_rstate   *rs;
    const tg_pstate   *ps;
    const tg_route    *rt;
    const tg_provider *pr;
    const char        *shown;
    char              *usage;
    size_t             ulen;

    memset(&t, 0, sizeof(t));

    tg_text_add(&t, "# HELP tailgate_provider_state The provider's state: 1 "
                "for the one it is in.\n"
                "# TYPE tailgate_provider_state gauge\n");

    for (i = 0; i < v->policy->nproviders; i++) {
        pr = &v->policy->providers[i];
        ps = tg_state_provider(st, i);
        shown = tg_state_shown(ps);

        for (h = 0; h < TG_HEALTH_COUNT; h++) {
            tg_text_add(&t, "tailgate_provider_state{provider=\"");
            tg_text_label(&t, pr->name);
            tg_text_add(&t, "\",state=\"%s\"} %d\n",
                        tg_health_name((tg_health) h),
                        strcmp(shown, tg_health_name((tg_health) h)) == 0);
        }
    }

#define tg_provider_gauge(metric, help, value, when)                          \
    tg_text_add(&t, "# HELP tailgate_provider_" metric " " help "\n"           \
                "# TYPE tailgate_provider_" metric " gauge\n");                \
    for (i = 0; i < v->policy->nproviders; i++) {                          \
        pr = &v->policy->providers[i];                                     \
        ps = tg_state_provider(st, i);                                       \
        if (!(when)) {                                                       \
            continue;                                                        \
        }                                                                    \
        tg_text_add(&t, "tailgate_provider_" metric "{provider=\"");           \
        tg_text_label(&t, pr->name);                                         \
        tg_text_add(&t, "\"} %llu\n", (unsigned long long) (value));         \
    }

    tg_provider_gauge("in_flight", "Requests holding a lease.",
                      ps->in_flight, true)
    tg_provider_gauge("max_concurrency", "The provider's concurrency limit.",
                      ps->max_concurrency, ps->max_concurrency != 0)
    tg_provider_gauge("queued", "Requests waiting for a slot.", ps->queued,
                      true)
    tg_provider_gauge("probe_ok", "Whether the last health probe succeeded.",
                      ps->probe.ok, ps->probe_at_ms != 0)
    tg_provider_gauge("latency_p50_ms", "Median provider time, recent "
                      "requests.", tg_health_latency(ps, 50),
                      ps->nlatencies != 0)
    tg_provider_gauge("latency_p95_ms", "95th percentile provider time, "
                      "recent requests.", tg_health_latency(ps, 95),
                      ps->nlatencies != 0)

#undef tg_provider_gauge

    tg_text_add(&t, "# HELP tailgate_provider_requests_total Requests by "
                "outcome, as the module reported them.\n"
                "# TYPE tailgate_provider_requests_total counter\n");

    for (i = 0; i < v->policy->nproviders; i++) {
        pr = &v->policy->providers[i];
        ps = tg_state_provider(st, i);

        tg_text_counts(&t, "tailgate_provider_requests_total", "provider",
                       pr->name, "outcome", ps->reports, TG_OUTCOME_COUNT,
                       tg_outcome_at);
    }

    tg_text_add(&t, "# HELP tailgate_route_decisions_total Decisions by "
                "status.\n"
                "# TYPE tailgate_route_decisions_total counter\n");

    for (i = 0; i < v->policy->nroutes; i++) {
        rt = &v->policy->routes[i];
        rs = tg_state_route_find(st, rt->name);

        if (rs != NULL) {
            tg_text_counts(&t, "tailgate_route_decisions_total", "route",
                           rt->name, "status", rs->decided, 6, tg_decided_at);
        }
    }

    tg_text_add(&t, "# HELP tailgate_route_requests_total Requests by "
                "outcome.\n"
                "# TYPE tailgate_route_requests_total counter\n");

    for (i = 0; i < v->policy->nroutes; i++) {
        rt = &v->policy->routes[i];
        rs = tg_state_route_find(st, rt->name);

        if (rs != NULL) {
            tg_text_counts(&t, "tailgate_route_requests_total", "route",
                           rt->name, "outcome", rs->reports,
                           TG_OUTCOME_COUNT, tg_outcome_at);
        }
    }

    tg_text_add(&t, "# HELP tailgate_policyd_connections Worker connections."
                "\n# TYPE tailgate_policyd_connections gauge\n"
                "tailgate_policyd_connections %zu\n", v->connections);
    tg_text_add(&t, "# HELP tailgate_policyd_leases Leases held.\n"
                "# TYPE tailgate_policyd_leases gauge\n"
                "tailgate_policyd_leases %zu\n", st->nleases);
    tg_text_add(&t, "# HELP tailgate_policyd_uptime_seconds Since policyd "
                "started.\n# TYPE tailgate_policyd_uptime_seconds gauge\n"
                "tailgate_policyd_uptime_seconds %ld\n",
                (long) v->uptime);

    if (v->has_otlp) {
        const tg_otlp_stats  *ot = &v->otlp_view;

        tg_text_add(&t, "# HELP tailgate_trace_spans_total Spans of traces "
                    "by what became of them.\n"
                    "# TYPE tailgate_trace_spans_total counter\n"
                    "tailgate_trace_spans_total{result=\"exported\"} %llu\n"
                    "tailgate_trace_spans_total{result=\"dropped_queue_full\"}"
                    " %llu\n"
                    "tailgate_trace_spans_total{result="
                    "\"dropped_export_failed\"} %llu\n"
                    "# HELP tailgate_trace_spans_queued Spans waiting to be "
                    "exported.\n"
                    "# TYPE tailgate_trace_spans_queued gauge\n"
                    "tailgate_trace_spans_queued %llu\n"
                    "# HELP tailgate_trace_export_errors_total Exports the "
                    "collector failed or refused.\n"
                    "# TYPE tailgate_trace_export_errors_total counter\n"
                    "tailgate_trace_export_errors_total %llu\n",
                    (unsigned long long) ot->exported,
                    (unsigned long long) ot->dropped_full,
                    (unsigned long long) ot->dropped_failed,
                    (unsigned long long) ot->queued,
                    (unsigned long long) ot->export_errors);
    }

    usage = tg_usage_status_prometheus(v, &ulen);
    if (usage == NULL) {
        t.failed = true;
    } else {
        tg_text_add(&t, "%.*s", (int) ulen, usage);
        free(usage);
    }

    if (t.failed) {
        free(t.data);
        return NULL;
    }

    *len = t.len;

    return t.data;
}


/* scheme://host/path: no user, password, query or fragment of the URL */

static void
tg_url_shown(const char *url, char *buf, size_t size)
{
    size_t       scheme;
    const char  *host, *at, *slash;

    host = strstr(url, "://");
    scheme = host ? (size_t) (host + 3 - url) : 0;
    host = url + scheme;

    slash = strchr(host, '/');
    at = strchr(host, '@');

    if (at != NULL && (slash == NULL || at < slash)) {
        host = at + 1;
    }

    /* a token in the query is as secret as a password */

    snprintf(buf, size, "%.*s%.*s", (int) scheme, url,
             (int) strcspn(host, "?#"), host);
}



static void
tg_text_add(tg_text *t, const char *fmt, ...)
{
    int       n;
    char     *p;
    size_t    cap;
    va_list   ap;

    if (t->failed) {
        return;
    }

    for ( ;; ) {
        va_start(ap, fmt);
        n = vsnprintf(t->data ? t->data + t->len : NULL,
                      t->data ? t->cap - t->len : 0, fmt, ap);
        va_end(ap);

        if (n < 0) {
            t->failed = true;
            return;
        }

        if (t->data != NULL && t->len + (size_t) n < t->cap) {
            t->len += (size_t) n;
            return;
        }

        cap = t->cap ? t->cap * 2 : 4096;
        while (cap <= t->len + (size_t) n) {
            cap *= 2;
        }

        p = realloc(t->data, cap);
        if (p == NULL) {
            t->failed = true;
            return;
        }

        t->data = p;
        t->cap = cap;
    }
}


/* a label value: backslash, quote and newline escaped */

static void
tg_text_label(tg_text *t, const char *value)
{
    const char  *p;

    for (p = value; *p != '\0'; p++) {
        if (*p == '\\' || *p == '"') {
            tg_text_add(t, "\\%c", *p);
        } else if (*p == '\n') {
            tg_text_add(t, "\\n");
        } else {
            tg_text_add(t, "%c", *p);
        }
    }
}


/* the counters of one provider or route: those not 0, by name */

static const char *
tg_outcome_at(size_t k)
{
    return tg_outcome_name((tg_outcome) k);
}


static const char *
tg_decided_at(size_t k)
{
    return tg_decided_names[k];
}


static void
tg_json_counts(cJSON *x, const uint64_t *counts, size_t n,
    const char *(*name)(size_t k))
{
    size_t  k;

    for (k = 0; x != NULL && k < n; k++) {
        if (counts[k] != 0) {
            cJSON_AddNumberToObject(x, name(k), (double) counts[k]);
        }
    }
}


/* metric{by="who",label="name"} count */

static void
tg_text_counts(tg_text *t, const char *metric, const char *by,
    const char *who, const char *label, const uint64_t *counts, size_t n,
    const char *(*name)(size_t k))
{
    size_t  k;

    for (k = 0; k < n; k++) {
        if (counts[k] == 0) {
            continue;
        }

        tg_text_add(t, "%s{%s=\"", metric, by);
        tg_text_label(t, who);
        tg_text_add(t, "\",%s=\"%s\"} %llu\n", label, name(k),
                    (unsigned long long) counts[k]);
    }
}
