/*
 * The daemon's usage: the tallies the status shows and the usage log,
 * kept across reloads.  Called from frames.c for every REPORT and from
 * server.c for reloads and signals.
 */

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "usage.h"


/* closes the log, all it holds written, and keeps its counts */

static void
tg_usage_retire(tg_usage *u)
{
    tg_usage_log_stats  st;

    if (u->log == NULL) {
        return;
    }

    tg_usage_log_close_stats(u->log, &st);
    u->log = NULL;

    u->closed.records += st.records;
    u->closed.written += st.written;
    u->closed.dropped += st.dropped;
    u->closed.write_errors += st.write_errors;
    u->closed.reopened += st.reopened;
}


tg_usage *
tg_usage_new(void)
{
    tg_usage  *u;

    u = calloc(1, sizeof(tg_usage));
    if (u == NULL) {
        return NULL;
    }

    u->line = malloc(TG_USAGE_LINE_MAX);
    if (u->line == NULL) {
        free(u);
        return NULL;
    }

    tg_usage_names_init(&u->routes);
    tg_usage_names_init(&u->providers);
    tg_usage_names_init(&u->clients);

    return u;
}


void
tg_usage_free(tg_usage *u)
{
    tg_usage_log_stats  st;

    if (u == NULL) {
        return;
    }

    tg_usage_retire(u);
    st = u->closed;

    if (u->log_path != NULL) {
        tg_log_info("usage_log.closed_stats",
                    "path records written dropped write_errors",
                    "usage log %s: %llu records, %llu written, %llu dropped, "
                    "%llu lost to write errors", u->log_path,
                    (unsigned long long) st.records,
                    (unsigned long long) st.written,
                    (unsigned long long) st.dropped,
                    (unsigned long long) st.write_errors);
    }

    tg_usage_names_free(&u->routes);
    tg_usage_names_free(&u->providers);
    tg_usage_names_free(&u->clients);
    free(u->log_path);
    free(u->line);
    free(u);
}


int
tg_usage_configure(tg_usage *u, const tg_policy *policy)
{
    char          *path;
    tg_usage_log  *l;
    const char    *want;

    want = policy->usage.log;

    if (want == NULL && u->log == NULL) {
        return 0;
    }

    if (want != NULL && u->log != NULL && strcmp(want, u->log_path) == 0) {
        return 0;
    }

    l = NULL;
    path = NULL;

    if (want != NULL) {
        path = strdup(want);
        l = path != NULL ? tg_usage_log_open(want, policy->usage.buffer_bytes)
                         : NULL;

        if (l == NULL) {
            tg_log_error("usage_log.open_failed", "path error",
                         "usage log %s: cannot open it: %s", want,
                         strerror(errno));
            free(path);
            return -1;
        }

        tg_log_info("usage_log.opened", "path", "usage log %s: open", want);
    }

    /* the old file gets all it was given before the new one takes over */

    if (u->log != NULL) {
        tg_usage_retire(u);
        tg_log_info("usage_log.closed", "path",
                    "usage log %s: closed", u->log_path);
    }

    free(u->log_path);
    u->log = l;
    u->log_path = path;

    return 0;
}


void
tg_usage_account(tg_usage *u, const tg_policy *policy, const tg_state *state,
    const tg_report *r, double now)
{
    size_t           len;
    const char      *name;
    tg_usage_tally  *t;

    if (u == NULL || r->count != 1) {
        /* a tally of plain successes (count): nobody's usage in it */
        return;
    }

    tg_usage_tally_add(&u->total, r);

    if (r->price == NULL) {
        u->unpriced++;
    }

    u->overflows += r->cost_overflow;

    if (r->route != NULL) {
        t = tg_usage_names_get(&u->routes, r->route, strlen(r->route),
                               TG_USAGE_NAMES_MAX);
        tg_usage_tally_add(t, r);
    }

    if (r->provider != NULL && tg_state_find(state, r->provider) != NULL) {
        t = tg_usage_names_get(&u->providers, r->provider,
                               strlen(r->provider), TG_USAGE_NAMES_MAX);
        tg_usage_tally_add(t, r);
    }

    if (r->client.data != NULL && r->client.len != 0) {
        name = r->client.data;
        len = r->client.len;
    } else {
        name = TG_USAGE_NOBODY;
        len = sizeof(TG_USAGE_NOBODY) - 1;
    }

    t = tg_usage_names_get(&u->clients, name, len, policy->usage.max_clients);
    tg_usage_tally_add(t, r);

    if (u->log == NULL) {
        return;
    }

    len = tg_usage_line(r, &policy->usage, now, u->line, TG_USAGE_LINE_MAX);

    if (len == 0) {
        tg_log_warn("usage_log.record_too_long", "request_id max_bytes",
                    "usage record of request \"%.*s\" does not fit in %d "
                    "bytes; not written",
                    (int) (r->request_id.len > 64 ? 64
                                              : r->request_id.len),
                    r->request_id.data ? r->request_id.data : "",
                    TG_USAGE_LINE_MAX);
        return;
    }

    (void) tg_usage_log_write(u->log, u->line, len);
}


void
tg_usage_flush(tg_usage *u)
{
    if (u != NULL && u->log != NULL) {
        tg_usage_log_flush(u->log);
    }
}


void
tg_usage_reopen(tg_usage *u)
{
    if (u != NULL && u->log != NULL) {
        tg_log_info("usage_log.reopening", "path",
                    "usage log %s: opening it again", u->log_path);
        tg_usage_log_reopen(u->log);
    }
}


void
tg_usage_stats(const tg_usage *u, tg_usage_log_stats *st)
{
    tg_usage_log_stats  cur;

    memset(st, 0, sizeof(*st));

    if (u == NULL) {
        return;
    }

    *st = u->closed;

    if (u->log != NULL) {
        tg_usage_log_stats_get(u->log, &cur);
        st->records += cur.records;
        st->written += cur.written;
        st->dropped += cur.dropped;
        st->write_errors += cur.write_errors;
        st->reopened += cur.reopened;
    }
}
