/*
 * The trace exporter (otlp_export.h).  Two buffers of spans: the loop
 * copies a REPORT's spans into the pending one under the lock; the thread
 * swaps the buffers under the lock and sends without it, one POST per
 * batch of at most batch_spans, through one libcurl handle that keeps its
 * connection.  A POST that fails is not tried again: its spans are
 * counted as dropped (the collector's own retry and queue are the place
 * for more).  JSON, not protobuf: no new dependency, and the body is
 * made of the bytes the loop already formatted.
 */

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>

#include "log.h"
#include "otlp_export.h"
#include "otlp_span.h"
#include "usage.h"
#include "version.h"


/* bytes a span may take in the queue, on average, before it is full */
#define TG_OTLP_SPAN_BYTES   2048

/* an export at exit waits at most this long */
#define TG_OTLP_LAST_MS      2000


typedef struct {
    size_t          end;                /* where its spans end */
    unsigned        n;
} tg_otlp_rec;


typedef struct {
    char           *buf;
    size_t          len;
    tg_otlp_rec    *recs;
    size_t          nrecs;
    uint64_t        spans;
} tg_otlp_queue;


struct tg_otlp {
    pthread_t        thread;
    pthread_mutex_t  lock;
    pthread_cond_t   wake;

    tg_otlp_conf     conf;
    char            *head;              /* the body up to the first span */
    size_t           head_len;
    char            *where;             /* the URL for logs: no query */

    size_t           cap;               /* bytes of each queue */
    tg_otlp_queue    pending;           /* the loop's */
    tg_otlp_queue    sending;           /* the thread's */
    char            *body;
    char            *scratch;           /* the loop's: one REPORT's spans */

    bool             stop;
    bool             failing;           /* logged once until it recovers */
    tg_otlp_stats    stats;
};


static void *tg_otlp_run(void *arg);
static void tg_otlp_send(tg_otlp *o, CURL *easy, struct curl_slist *headers,
    bool last);
static bool tg_otlp_post(tg_otlp *o, CURL *easy, struct curl_slist *headers,
    size_t len, unsigned n, bool last);
static size_t tg_otlp_discard(char *p, size_t size, size_t n, void *data);
static const char *tg_otlp_getenv(const char *name);
static bool tg_otlp_full(tg_otlp *o, unsigned n);


int
tg_otlp_from_env(tg_otlp **o)
{
    int           rc;
    tg_errors     errs, warns;
    tg_otlp_conf  conf;

    *o = NULL;

    tg_errors_init(&errs);
    tg_errors_init(&warns);

    size_t        i;

    rc = tg_otlp_conf_read(&conf, tg_otlp_getenv, &errs, &warns);

    for (i = 0; i < warns.count; i++) {
        tg_log_warn("otlp.variable_ignored", "variable message", "%s: %s",
                    warns.items[i].path, warns.items[i].message);
    }

    if (rc != 0) {
        tg_print_errors("environment", &errs, NULL, true);

    } else if (conf.on) {
        *o = tg_otlp_start(&conf);

        if (*o == NULL) {
            tg_log_error("otlp.no_memory", "",
                         "out of memory for the trace exporter");
            rc = -1;
        }
    }

    tg_errors_free(&errs);
    tg_errors_free(&warns);

    return rc;
}


int
tg_otlp_check_env(FILE *out)
{
    int           rc;
    tg_errors     errs, warns;
    tg_otlp_conf  conf;

    tg_errors_init(&errs);
    tg_errors_init(&warns);

    rc = tg_otlp_conf_read(&conf, tg_otlp_getenv, &errs, &warns);

    tg_print_errors("environment (warning)", &warns, out, false);
    tg_print_errors("environment", &errs, out, false);

    if (rc == 0) {
        tg_otlp_conf_free(&conf);
    }

    tg_errors_free(&errs);
    tg_errors_free(&warns);

    return rc;
}


static const char *
tg_otlp_getenv(const char *name)
{
    return getenv(name);
}


tg_otlp *
tg_otlp_start(tg_otlp_conf *conf)
{
    char     *q;
    size_t    recs;
    tg_otlp  *o;

    o = calloc(1, sizeof(tg_otlp));
    if (o == NULL) {
        tg_otlp_conf_free(conf);
        return NULL;
    }

    /* the conf is the exporter's now: the caller's copy is emptied */
    o->conf = *conf;
    memset(conf, 0, sizeof(*conf));

    o->cap = (size_t) o->conf.queue_spans * TG_OTLP_SPAN_BYTES;
    recs = o->conf.queue_spans;

    o->head = malloc(TG_OTLP_URL_MAX + 64 * TG_OTLP_VALUE_MAX);
    o->pending.buf = malloc(o->cap);
    o->sending.buf = malloc(o->cap);
    o->pending.recs = malloc(recs * sizeof(tg_otlp_rec));
    o->sending.recs = malloc(recs * sizeof(tg_otlp_rec));
    o->scratch = malloc(TG_OTLP_SPANS_MAX);
    o->where = strdup(o->conf.url);

    if (o->head == NULL || o->pending.buf == NULL || o->sending.buf == NULL
        || o->pending.recs == NULL || o->sending.recs == NULL
        || o->scratch == NULL || o->where == NULL)
    {
        goto failed;
    }

    q = strchr(o->where, '?');
    if (q != NULL) {
        *q = '\0';
    }

    o->head_len = tg_otlp_payload_head(&o->conf, TG_VERSION, o->head,
                                       TG_OTLP_URL_MAX + 64 * TG_OTLP_VALUE_MAX);
    o->body = malloc(o->head_len + o->cap + recs
                     + sizeof(TG_OTLP_PAYLOAD_TAIL));

    if (o->head_len == 0 || o->body == NULL) {
        goto failed;
    }

    memcpy(o->body, o->head, o->head_len);

    pthread_mutex_init(&o->lock, NULL);
    pthread_cond_init(&o->wake, NULL);

    if (pthread_create(&o->thread, NULL, tg_otlp_run, o) != 0) {
        pthread_mutex_destroy(&o->lock);
        pthread_cond_destroy(&o->wake);
        goto failed;
    }

    tg_log_info("otlp.exporting", "url batch_spans queue_spans delay_ms",
                "traces to %s: batches of %u spans, at most %u waiting, "
                "every %u ms", o->where, o->conf.batch_spans,
                o->conf.queue_spans, o->conf.delay_ms);

    return o;

failed:

    free(o->head);
    free(o->pending.buf);
    free(o->sending.buf);
    free(o->pending.recs);
    free(o->sending.recs);
    free(o->scratch);
    free(o->where);
    free(o->body);
    tg_otlp_conf_free(&o->conf);
    free(o);

    return NULL;
}


void
tg_otlp_report(tg_otlp *o, const tg_policy *policy, const tg_report *r,
    const uint8_t *frame, const tg_frame_hdr *h)
{
    size_t              len;
    unsigned            n;
    tg_otlp_trace       t;
    const tg_provider  *pr;

    if (tg_otlp_trace_read(&t, frame, h) != 0 || !t.present) {
        return;
    }

    /* a full queue: counted as dropped without making the spans first */

    n = t.final ? 2 : 1;

    if ((t.flags & 0x01) && r->count == 1 && tg_otlp_full(o, n)) {
        return;
    }

    pr = (r->provider != NULL)
         ? tg_policy_provider(policy, r->provider, strlen(r->provider))
         : NULL;

    len = tg_otlp_report_spans(r, &t, pr ? pr->host : NULL, o->scratch,
                               TG_OTLP_SPANS_MAX, &n);

    if (len > 0) {
        (void) tg_otlp_add(o, o->scratch, len, n);
    }
}


int
tg_otlp_span_end(tg_otlp *o, const uint8_t *frame, const tg_frame_hdr *h)
{
    int            rc;
    char           route[TG_ROUTE_NAME_MAX + 1];
    size_t         len;
    uint32_t       v;
    tg_field       f;
    tg_report      r;
    tg_field_iter  it;
    tg_otlp_trace  t;

    if (tg_otlp_trace_read(&t, frame, h) != 0) {
        return -1;
    }

    if (!t.present) {
        return 0;
    }

    memset(&r, 0, sizeof(r));
    r.count = 1;
    r.outcome = TG_OUTCOME_UNKNOWN;

    tg_fields_init(&it, frame, h);

    while ((rc = tg_fields_next(&it, &f)) == 1) {
        switch (f.key) {

        case TG_F_ROUTE:
            if (f.len < sizeof(route) && memchr(f.value, 0, f.len) == NULL) {
                memcpy(route, f.value, f.len);
                route[f.len] = '\0';
                r.route = route;
            }
            break;

        case TG_F_HTTP_STATUS:
        case TG_F_TOTAL_MS:
            if (tg_field_u32(&f, &v) != 0) {
                return -1;
            }

            if (f.key == TG_F_HTTP_STATUS) {
                r.http_status = v;
            } else {
                r.total_ms = v;
            }
            break;

        default:
            /* request id, client, tenant, endpoint, attempt: as a REPORT's */
            if (tg_usage_field(&r, &f) < 0) {
                return -1;
            }
            break;
        }
    }

    if (rc < 0) {
        return -1;
    }

    len = tg_otlp_end_span(&r, &t, o->scratch, TG_OTLP_SPANS_MAX);

    if (len > 0) {
        (void) tg_otlp_add(o, o->scratch, len, 1);
    }

    return 0;
}


/* whether n more spans would find the queue full: then they are counted */

static bool
tg_otlp_full(tg_otlp *o, unsigned n)
{
    bool  full;

    pthread_mutex_lock(&o->lock);

    full = o->pending.spans + n > o->conf.queue_spans
           || o->cap - o->pending.len < TG_OTLP_SPAN_BYTES;

    if (full) {
        o->stats.spans += n;
        o->stats.dropped_full += n;
    }

    pthread_mutex_unlock(&o->lock);

    return full;
}


int
tg_otlp_add(tg_otlp *o, const char *spans, size_t len, unsigned n)
{
    tg_otlp_queue  *q;

    pthread_mutex_lock(&o->lock);

    o->stats.spans += n;
    q = &o->pending;

    if (q->spans + n > o->conf.queue_spans || o->cap - q->len < len) {
        o->stats.dropped_full += n;
        pthread_mutex_unlock(&o->lock);
        return -1;
    }

    memcpy(q->buf + q->len, spans, len);
    q->len += len;
    q->recs[q->nrecs].end = q->len;
    q->recs[q->nrecs].n = n;
    q->nrecs++;

    /* a batch is full: no need to wait for the timer */
    if (q->spans < o->conf.batch_spans && q->spans + n >= o->conf.batch_spans)
    {
        pthread_cond_signal(&o->wake);
    }

    q->spans += n;

    pthread_mutex_unlock(&o->lock);

    return 0;
}


void
tg_otlp_stats_get(tg_otlp *o, tg_otlp_stats *st)
{
    pthread_mutex_lock(&o->lock);
    *st = o->stats;
    st->queued = o->pending.spans + o->sending.spans;
    pthread_mutex_unlock(&o->lock);
}


void
tg_otlp_stop(tg_otlp *o)
{
    if (o == NULL) {
        return;
    }

    pthread_mutex_lock(&o->lock);
    o->stop = true;
    pthread_cond_signal(&o->wake);
    pthread_mutex_unlock(&o->lock);

    pthread_join(o->thread, NULL);

    tg_log_info("otlp.stopped",
                "spans exported dropped_full dropped_failed",
                "traces: %llu spans, %llu exported, %llu dropped with the "
                "queue full, %llu with the collector failing",
                (unsigned long long) o->stats.spans,
                (unsigned long long) o->stats.exported,
                (unsigned long long) o->stats.dropped_full,
                (unsigned long long) o->stats.dropped_failed);

    pthread_mutex_destroy(&o->lock);
    pthread_cond_destroy(&o->wake);

    free(o->head);
    free(o->pending.buf);
    free(o->sending.buf);
    free(o->pending.recs);
    free(o->sending.recs);
    free(o->scratch);
    free(o->where);
    free(o->body);
    tg_otlp_conf_free(&o->conf);
    free(o);
}


static void *
tg_otlp_run(void *arg)
{
    bool                last;
    size_t              i, n;
    char               *line;
    CURL               *easy;
    tg_otlp            *o = arg;
    tg_otlp_queue       swap;
    struct timespec     deadline;
    struct curl_slist  *headers, *more;
    bool                own_auth;

    easy = curl_easy_init();
    headers = curl_slist_append(NULL, "Content-Type: application/json");

    /* no "Expect: 100-continue": one round trip per export */
    more = headers ? curl_slist_append(headers, "Expect:") : NULL;
    headers = more;

    own_auth = false;

    for (i = 0; headers != NULL && i < o->conf.nheaders; i++) {
        n = strlen(o->conf.headers[i].key) + strlen(o->conf.headers[i].value)
            + 3;
        line = malloc(n);

        if (line == NULL) {
            curl_slist_free_all(headers);
            headers = NULL;
            break;
        }

        /* "Name;" is how libcurl sends a header with an empty value */
        if (o->conf.headers[i].value[0] == '\0') {
            snprintf(line, n, "%s;", o->conf.headers[i].key);
        } else {
            snprintf(line, n, "%s: %s", o->conf.headers[i].key,
                     o->conf.headers[i].value);
        }
        own_auth = own_auth
                   || strcasecmp(o->conf.headers[i].key, "authorization") == 0;

        more = curl_slist_append(headers, line);
        memset(line, 0, n);
        free(line);

        if (more == NULL) {
            curl_slist_free_all(headers);
            headers = NULL;
        }
        headers = more;
    }

    /* OTLP_HEADERS' own Authorization wins over OTLP_API_KEY's */

    if (headers != NULL && o->conf.authorization != NULL && !own_auth) {
        n = strlen(o->conf.authorization) + sizeof("Authorization: ");
        line = malloc(n);

        if (line != NULL) {
            snprintf(line, n, "Authorization: %s", o->conf.authorization);
            more = curl_slist_append(headers, line);
            memset(line, 0, n);
            free(line);
        }

        if (line == NULL || more == NULL) {
            curl_slist_free_all(headers);
            headers = NULL;
        }
        headers = more;
    }

    if (easy == NULL || headers == NULL) {
        tg_log_error("otlp.no_memory", "", "out of memory for the trace "
                     "exporter: no traces are sent");
    }

    pthread_mutex_lock(&o->lock);

    for ( ;; ) {
        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_sec += o->conf.delay_ms / 1000;
        deadline.tv_nsec += (long) (o->conf.delay_ms % 1000) * 1000000;

        if (deadline.tv_nsec >= 1000000000) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000;
        }

        while (!o->stop && o->pending.spans < o->conf.batch_spans) {
            if (pthread_cond_timedwait(&o->wake, &o->lock, &deadline)
                == ETIMEDOUT)
            {
                break;
            }
        }

        if (o->pending.spans == 0) {
            if (o->stop) {
                break;
            }
            continue;
        }

        swap = o->sending;
        o->sending = o->pending;
        o->pending = swap;
        o->pending.len = 0;
        o->pending.nrecs = 0;
        o->pending.spans = 0;

        last = o->stop;

        pthread_mutex_unlock(&o->lock);

        if (easy != NULL && headers != NULL) {
            tg_otlp_send(o, easy, headers, last);
        }

        pthread_mutex_lock(&o->lock);

        if (easy == NULL || headers == NULL) {
            o->stats.dropped_failed += o->sending.spans;
        }

        o->sending.spans = 0;
    }

    pthread_mutex_unlock(&o->lock);

    curl_slist_free_all(headers);

    if (easy != NULL) {
        curl_easy_cleanup(easy);
    }

    return NULL;
}


/* the sending queue, in POSTs of at most batch_spans */

static void
tg_otlp_send(tg_otlp *o, CURL *easy, struct curl_slist *headers, bool last)
{
    bool            ok;
    size_t          i, start, len;
    unsigned        n;
    tg_otlp_queue  *q = &o->sending;
    char           *p;

    start = 0;
    i = 0;

    while (i < q->nrecs) {
        p = o->body + o->head_len;
        n = 0;

        /* whole REPORTs: a request's spans travel together */

        do {
            len = q->recs[i].end - start;

            if (n > 0) {
                *p++ = ',';
            }

            memcpy(p, q->buf + start, len);
            p += len;
            start = q->recs[i].end;
            n += q->recs[i].n;
            i++;

        } while (i < q->nrecs && n + q->recs[i].n <= o->conf.batch_spans);

        memcpy(p, TG_OTLP_PAYLOAD_TAIL, sizeof(TG_OTLP_PAYLOAD_TAIL) - 1);
        p += sizeof(TG_OTLP_PAYLOAD_TAIL) - 1;

        ok = tg_otlp_post(o, easy, headers, (size_t) (p - o->body), n, last);

        pthread_mutex_lock(&o->lock);

        o->stats.exports++;

        if (ok) {
            o->stats.exported += n;
        } else {
            o->stats.export_errors++;
            o->stats.dropped_failed += n;
        }

        q->spans -= n;

        pthread_mutex_unlock(&o->lock);
    }
}


static bool
tg_otlp_post(tg_otlp *o, CURL *easy, struct curl_slist *headers, size_t len,
    unsigned n, bool last)
{
    long      status, timeout;
    CURLcode  rc;

    timeout = (long) o->conf.timeout_ms;

    if (last && timeout > TG_OTLP_LAST_MS) {
        timeout = TG_OTLP_LAST_MS;
    }

    curl_easy_setopt(easy, CURLOPT_URL, o->conf.url);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(easy, CURLOPT_POST, 1L);
    curl_easy_setopt(easy, CURLOPT_POSTFIELDS, o->body);
    curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) len);
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, timeout);
    curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, timeout);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, tg_otlp_discard);
    curl_easy_setopt(easy, CURLOPT_USERAGENT, TG_SOFTWARE);

    rc = curl_easy_perform(easy);
    status = 0;

    if (rc == CURLE_OK) {
        curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    }

    pthread_mutex_lock(&o->lock);
    o->stats.last_status = status;
    pthread_mutex_unlock(&o->lock);

    if (status >= 200 && status < 300) {
        if (o->failing) {
            o->failing = false;
            tg_log_info("otlp.recovered", "url", "traces to %s: the "
                        "collector takes them again", o->where);
        }
        return true;
    }

    /* once, until it works again: a collector that is away is not news */

    if (!o->failing) {
        o->failing = true;

        if (rc != CURLE_OK) {
            tg_log_warn("otlp.export_failed", "url error spans",
                        "traces to %s: %s; %u spans dropped (and more until "
                        "it answers)", o->where, curl_easy_strerror(rc), n);
        } else {
            tg_log_warn("otlp.export_refused", "url status spans",
                        "traces to %s: HTTP %ld; %u spans dropped (and more "
                        "until it takes them)", o->where, status, n);
        }
    }

    return false;
}


static size_t
tg_otlp_discard(char *p, size_t size, size_t n, void *data)
{
    (void) p;
    (void) data;

    return size * n;
}
