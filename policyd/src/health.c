/*
 * A provider's health: up, busy, stuck or down, from what its probes say
 * and what the module reports (docs/policy.md, "Health").  Pure functions
 * of a provider record and the time: probe.c does the I/O, server.c the
 * timing, and the unit tests call these directly.
 *
 *   down   probes failed down_after times in a row (until up_after good
 *          ones), or down_after requests failed in a row (until a
 *          cooldown has passed: then one request may try again)
 *   stuck  a request has held its lease for stuck_after_ms
 *   busy   the server says it has no capacity left (llama.cpp slots, vLLM
 *          waiting requests); at its max_concurrency counts too, but that
 *          changes with every lease and is not a state of its own
 *   up     anything else
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "state.h"


static bool tg_health_probe_busy(const tg_pstate *ps);
static int tg_uint32_cmp(const void *a, const void *b);
static double tg_metric(const char *body, size_t len, const char *name);


static const char  *tg_health_names[TG_HEALTH_COUNT] = {
    "up", "busy", "stuck", "down"
};


const char *
tg_health_name(tg_health h)
{
    return (unsigned) h < TG_HEALTH_COUNT ? tg_health_names[h] : "unknown";
}


void
tg_health_probed(tg_pstate *ps, const tg_probe_result *r, uint64_t now_ms)
{
    ps->probe = *r;
    ps->probe_at_ms = now_ms;
    ps->probe_own = ps->in_flight;

    if (!r->ok) {
        ps->probe_ok_run = 0;

        if (++ps->probe_fail_run >= ps->conf.down_after) {
            ps->probe_down = true;
        }

        return;
    }

    ps->probe_fail_run = 0;
    ps->probe_ok_run++;

    if (ps->probe_down && ps->probe_ok_run >= ps->conf.up_after) {
        ps->probe_down = false;
    }

    /* it answers again: what requests saw before is history */

    if (!ps->probe_down) {
        ps->passive_down = false;
        ps->fail_run = 0;
    }
}


void
tg_health_reported(tg_pstate *ps, tg_outcome outcome, uint32_t status,
    uint32_t upstream_ms, uint32_t count, uint64_t now_ms)
{
    tg_recent_error  *e;

    if ((unsigned) outcome >= TG_OUTCOME_COUNT || count == 0) {
        return;
    }

    ps->reports[outcome] += count;

    switch (outcome) {

    case TG_OUTCOME_OK:
    case TG_OUTCOME_CLIENT_ERROR:
        ps->fail_run = 0;
        ps->passive_down = false;
        break;

    case TG_OUTCOME_RATE_LIMITED:
        /*
         * Neither a failure nor proof of health: a provider that fails
         * and in between refuses for its rate limit is still failing.
         * Its Retry-After is a cooldown of the limits (state.c).
         */
        break;

    case TG_OUTCOME_CONNECT_ERROR:
    case TG_OUTCOME_TIMEOUT:
    case TG_OUTCOME_SERVER_ERROR:
    case TG_OUTCOME_STREAM_BROKEN:
        ps->fail_run += count;

        /* down, or down again when the try after the cooldown failed */

        if (ps->fail_run >= ps->conf.down_after
            && (!ps->passive_down || now_ms >= ps->down_until_ms))
        {
            ps->passive_down = true;
            ps->down_until_ms = now_ms + ps->conf.cooldown_ms;
        }
        break;

    default:
        /* the client went away, or the decision was not used */
        break;
    }

    if (outcome != TG_OUTCOME_OK && outcome != TG_OUTCOME_CLIENT_ERROR
        && outcome != TG_OUTCOME_CLIENT_ABORT
        && outcome != TG_OUTCOME_NOT_SENT && outcome != TG_OUTCOME_UNKNOWN)
    {
        e = &ps->errors[ps->error_pos];
        e->at_ms = now_ms;
        e->outcome = outcome;
        e->status = status;

        ps->error_pos = (ps->error_pos + 1) % TG_RECENT_ERRORS;
        if (ps->nerrors < TG_RECENT_ERRORS) {
            ps->nerrors++;
        }
    }

    /* how long the provider took, per request */

    if (upstream_ms != 0 && outcome != TG_OUTCOME_CONNECT_ERROR
        && outcome != TG_OUTCOME_NOT_SENT)
    {
        ps->latencies[ps->latency_pos] = upstream_ms / count;

        ps->latency_pos = (ps->latency_pos + 1) % TG_LATENCIES;
        if (ps->nlatencies < TG_LATENCIES) {
            ps->nlatencies++;
        }
    }
}


/* Judges the provider now; true when its state changed. */

bool
tg_health_evaluate(tg_pstate *ps, uint64_t now_ms)
{
    char       why[TG_NOTE_MAX];
    tg_health  h;

    if (ps->probe_down) {
        h = TG_HEALTH_DOWN;
        snprintf(why, sizeof(why), "%u probes failed: %.64s",
                 ps->probe_fail_run,
                 ps->probe.note);

    } else if (ps->passive_down && now_ms < ps->down_until_ms) {
        h = TG_HEALTH_DOWN;
        snprintf(why, sizeof(why), "%u requests failed in a row; tried "
                 "again in %llu ms", ps->fail_run,
                 (unsigned long long) (ps->down_until_ms - now_ms));

    } else if (ps->conf.stuck_after_ms != 0
               && ps->oldest_lease_ms >= ps->conf.stuck_after_ms)
    {
        h = TG_HEALTH_STUCK;
        snprintf(why, sizeof(why), "a request has run for %llu ms",
                 (unsigned long long) ps->oldest_lease_ms);

    } else if (tg_health_probe_busy(ps)) {
        h = TG_HEALTH_BUSY;
        snprintf(why, sizeof(why), "%s", ps->probe.note);

    } else {
        h = TG_HEALTH_UP;
        snprintf(why, sizeof(why), "%s",
                 ps->probe_at_ms != 0 ? ps->probe.note
                 : ps->passive_down ? "trying again after failures"
                 : "no failures seen");
    }

    memcpy(ps->why, why, sizeof(why));

    if (h == ps->health) {
        return false;
    }

    ps->health = h;
    ps->health_since_ms = now_ms;

    return true;
}


/*
 * The server says it is full.  Full of our own requests, it says nothing
 * our leases do not say better: those end the moment a request does, a
 * probe only says how it was an interval ago.  So the probe counts only
 * when more is running there than we sent.
 */

static bool
tg_health_probe_busy(const tg_pstate *ps)
{
    int64_t  theirs;

    if (ps->probe_at_ms == 0 || !ps->probe.ok || !ps->probe.busy) {
        return false;
    }

    if (ps->probe_own == 0) {
        return true;
    }

    if (ps->probe.slots_total >= 0) {
        theirs = ps->probe.slots_busy;

    } else if (ps->probe.running >= 0) {
        theirs = (int64_t) ps->probe.running
                 + (ps->probe.waiting > 0 ? ps->probe.waiting : 0);

    } else {
        return false;
    }

    return theirs > (int64_t) ps->probe_own;
}


/* down and stuck providers are not sent new requests */

bool
tg_health_unavailable(const tg_pstate *ps)
{
    return ps != NULL
           && (ps->health == TG_HEALTH_DOWN || ps->health == TG_HEALTH_STUCK);
}


bool
tg_health_at_capacity(const tg_pstate *ps)
{
    return ps != NULL
           && (ps->health == TG_HEALTH_BUSY
               || (ps->max_concurrency != 0
                   && ps->in_flight + ps->others >= ps->max_concurrency));
}


/* the given percentile of the recent upstream times, 0 when none */

uint32_t
tg_health_latency(const tg_pstate *ps, unsigned percent)
{
    size_t    i;
    uint32_t  sorted[TG_LATENCIES];

    if (ps->nlatencies == 0) {
        return 0;
    }

    memcpy(sorted, ps->latencies, ps->nlatencies * sizeof(uint32_t));
    qsort(sorted, ps->nlatencies, sizeof(uint32_t), tg_uint32_cmp);

    i = (ps->nlatencies * percent + 99) / 100;

    return sorted[i > 0 ? i - 1 : 0];
}


/*
 * What a probe's answer means, by kind.  For llama.cpp the answer of its
 * /slots (slots true) only adds how many slots are busy.
 */

void
tg_probe_interpret(const tg_provider *pr, bool slots, unsigned status,
    const char *body, size_t len, tg_probe_result *r)
{
    int           n, busy;
    size_t        i;
    cJSON        *doc;
    const cJSON  *item, *v, *data;
    double        running, waiting;

    r->status = status;

    if (slots) {
        if (status != 200 || (doc = cJSON_ParseWithLength(body, len)) == NULL)
        {
            return;
        }

        if (cJSON_IsArray(doc)) {
            n = 0;
            busy = 0;

            cJSON_ArrayForEach(item, doc) {
                n++;

                v = cJSON_GetObjectItemCaseSensitive(item, "is_processing");

                if (cJSON_IsTrue(v)) {
                    busy++;

                } else if (v == NULL) {
                    /* older llama.cpp: "state" 0 is idle */
                    v = cJSON_GetObjectItemCaseSensitive(item, "state");
                    busy += cJSON_IsNumber(v) && v->valuedouble != 0;
                }
            }

            r->slots_total = n;
            r->slots_busy = busy;
            r->busy = n > 0 && busy == n;

            if (r->busy) {
                snprintf(r->note, sizeof(r->note), "all %d slots busy", n);
            }
        }

        cJSON_Delete(doc);
        return;
    }

    r->ok = false;
    r->busy = false;

    if (status == 0) {
        /* the transfer's own error is in the note already */
        return;
    }

    if (status < 200 || status > 299) {
        if (pr->health.kind == TG_PROBE_LLAMACPP && status == 503
            && len > 0 && memmem(body, len, "oading model", 12) != NULL)
        {
            snprintf(r->note, sizeof(r->note), "loading its model");
        } else {
            snprintf(r->note, sizeof(r->note), "HTTP %u", status);
        }

        return;
    }

    switch (pr->health.kind) {

    case TG_PROBE_OPENAI:
        doc = cJSON_ParseWithLength(body, len);
        data = doc ? cJSON_GetObjectItemCaseSensitive(doc, "data") : NULL;

        if (!cJSON_IsArray(data)) {
            snprintf(r->note, sizeof(r->note), "no model list");
            cJSON_Delete(doc);
            return;
        }

        /* reachable is not enough: one of its models must be loaded */

        r->ok = pr->nmodels == 0;

        cJSON_ArrayForEach(item, data) {
            v = cJSON_GetObjectItemCaseSensitive(item, "id");

            for (i = 0; !r->ok && cJSON_IsString(v) && i < pr->nmodels; i++) {
                r->ok = strcmp(v->valuestring, pr->models[i]) == 0;
            }
        }

        snprintf(r->note, sizeof(r->note), "%s",
                 r->ok ? "model list ok" : "none of its models is loaded");
        cJSON_Delete(doc);
        return;

    case TG_PROBE_VLLM:
        running = tg_metric(body, len, "vllm:num_requests_running");
        waiting = tg_metric(body, len, "vllm:num_requests_waiting");

        r->ok = true;
        r->running = running >= 0 ? (int32_t) running : -1;
        r->waiting = waiting >= 0 ? (int32_t) waiting : -1;
        r->busy = waiting > 0;

        if (r->busy) {
            snprintf(r->note, sizeof(r->note), "%d running, %d waiting",
                     r->running, r->waiting);
        } else {
            snprintf(r->note, sizeof(r->note), "metrics ok");
        }
        return;

    default:
        r->ok = true;
        snprintf(r->note, sizeof(r->note), "HTTP %u", status);
    }
}


/* the sum of a Prometheus metric's samples, or -1 when there is none */

static double
tg_metric(const char *body, size_t len, const char *name)
{
    char         num[64];
    size_t       nlen, n;
    double       sum;
    const char  *p, *end, *eol, *sp;

    nlen = strlen(name);
    end = body + len;
    sum = -1;

    for (p = body; p < end; p = eol + 1) {
        eol = memchr(p, '\n', (size_t) (end - p));
        if (eol == NULL) {
            eol = end;
        }

        if ((size_t) (eol - p) <= nlen || memcmp(p, name, nlen) != 0
            || (p[nlen] != '{' && p[nlen] != ' '))
        {
            continue;
        }

        sp = eol;
        while (sp > p && sp[-1] != ' ') {
            sp--;
        }

        n = (size_t) (eol - sp);
        if (n == 0 || n >= sizeof(num)) {
            continue;
        }

        memcpy(num, sp, n);
        num[n] = '\0';

        sum = (sum < 0 ? 0 : sum) + strtod(num, NULL);
    }

    return sum;
}


static int
tg_uint32_cmp(const void *a, const void *b)
{
    uint32_t  x = *(const uint32_t *) a, y = *(const uint32_t *) b;

    return (x > y) - (x < y);
}
