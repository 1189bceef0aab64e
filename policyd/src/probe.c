/*
 * The probe thread: libcurl's multi interface on a libev loop of its own.
 * curl tells which sockets to watch and when to wake it (the socket and
 * timer callbacks), libev watches them, finished transfers are read off
 * curl_multi_info_read().  The main loop and this thread share only a
 * lock-guarded hand-over: new probe settings one way, raw answers the other,
 * each announced with an ev_async.
 */

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "log.h"
#include "probe.h"
#include "version.h"


#define TG_PROBE_BODY_MAX   (256 * 1024)
#define TG_PROBE_FIRST      0.05        /* seconds after (re)configuring */
#define TG_PROBE_ERROR_MAX  96


/* what the thread needs of a provider, owned by whoever holds it */
typedef struct {
    char               *name;
    char               *url;
    char               *slots_url;      /* NULL: none */
    char               *auth;           /* "Authorization: ...", or NULL */
    uint32_t            interval_ms;
    uint32_t            timeout_ms;
} tg_probe_spec;


typedef struct tg_result  tg_result;

/* an answer on its way to the main loop: its strings are malloc()ed */
struct tg_result {
    tg_result          *next;
    tg_probe_answer     a;
    char                error[TG_PROBE_ERROR_MAX];
};


#define TG_KIND_PROBE       0
#define TG_KIND_FETCH       1

#define TG_FETCH_HEADER_MAX 1024


typedef struct {
    int                 kind;           /* TG_KIND_PROBE: first member */
    tg_prober          *pb;
    tg_probe_spec       spec;
    ev_timer            timer;
    CURL               *easy;           /* the transfer in flight */
    struct curl_slist  *headers;
    bool                slots;          /* it asks llama.cpp's /slots */
    char               *body;
    size_t              len;
    tg_result          *result;         /* being filled */
} tg_target;


/* the headers a fetch keeps, in tg_fetch_answer's order */
enum {
    TG_H_ETAG = 0, TG_H_LAST_MODIFIED, TG_H_CACHE_CONTROL, TG_H_EXPIRES,
    TG_H_DATE, TG_H_AGE, TG_H_COUNT
};

static const char *const  tg_fetch_headers[TG_H_COUNT] = {
    "etag", "last-modified", "cache-control", "expires", "date", "age"
};


typedef struct tg_fetch  tg_fetch;

/* a one-off GET: the thread's from start to finish, then the main loop's */
struct tg_fetch {
    int                 kind;           /* TG_KIND_FETCH: first member */
    tg_fetch           *next;
    tg_prober          *pb;
    uint64_t            id;
    tg_fetch_done_pt    done;
    void               *data;

    char               *url;
    struct curl_slist  *headers;
    uint32_t            timeout_ms;
    size_t              max_bytes;
    CURL               *easy;

    unsigned            status;
    bool                too_large;
    char               *body;
    size_t              len;
    char               *header[TG_H_COUNT];
    char                error[TG_PROBE_ERROR_MAX];
};


typedef struct {
    ev_io               io;
    tg_prober          *pb;
    curl_socket_t       fd;
} tg_probe_sock;


struct tg_prober {
    /* the main loop's side */
    struct ev_loop     *main_loop;
    ev_async            answers_w;
    tg_probe_done_pt    done;
    void               *data;

    /* the hand-over, under lock */
    pthread_mutex_t     lock;
    tg_probe_spec      *specs;          /* new settings, not taken yet */
    size_t              nspecs;
    bool                specs_new;
    bool                stop;
    tg_result          *results;
    tg_result         **results_tail;
    tg_fetch           *fetch_new;      /* not started yet */
    tg_fetch           *fetch_done;     /* for the main loop, reversed */

    /* the thread's side */
    pthread_t           thread;
    struct ev_loop     *loop;
    ev_async            control_w;
    CURLM              *multi;
    ev_timer            wake;           /* when libcurl wants to be called */
    tg_target         **targets;
    size_t              ntargets;
    tg_fetch           *fetching;       /* in flight */
};


static void *tg_probe_thread(void *arg);
static void tg_probe_control_cb(struct ev_loop *loop, ev_async *w,
    int revents);
static void tg_probe_answers_cb(struct ev_loop *loop, ev_async *w,
    int revents);
static void tg_probe_apply(tg_prober *pb, tg_probe_spec *specs, size_t n);
static int tg_probe_socket_cb(CURL *easy, curl_socket_t fd, int what,
    void *userp, void *socketp);
static int tg_probe_timer_cb(CURLM *multi, long timeout_ms, void *userp);
static void tg_probe_io_cb(struct ev_loop *loop, ev_io *w, int revents);
static void tg_probe_wake_cb(struct ev_loop *loop, ev_timer *w, int revents);
static void tg_probe_interval_cb(struct ev_loop *loop, ev_timer *w,
    int revents);
static void tg_probe_finished(tg_prober *pb);
static int tg_probe_start(tg_target *t, bool slots);
static void tg_probe_deliver(tg_target *t);
static size_t tg_probe_write_cb(char *data, size_t size, size_t n,
    void *userp);
static void tg_target_free(tg_prober *pb, tg_target *t);
static void tg_spec_clear(tg_probe_spec *sp);
static void tg_specs_free(tg_probe_spec *specs, size_t n);
static void tg_results_free(tg_result *r);
static void tg_fetch_start(tg_prober *pb, tg_fetch *f);
static void tg_fetch_finished(tg_prober *pb, tg_fetch *f, CURLcode res,
    long code);
static size_t tg_fetch_write_cb(char *data, size_t size, size_t n,
    void *userp);
static size_t tg_fetch_header_cb(char *data, size_t size, size_t n,
    void *userp);
static void tg_fetches_free(tg_fetch *f);


tg_prober *
tg_prober_new(struct ev_loop *main_loop, tg_probe_done_pt done, void *data)
{
    tg_prober  *pb;

    pb = calloc(1, sizeof(tg_prober));
    if (pb == NULL) {
        return NULL;
    }

    pb->main_loop = main_loop;
    pb->done = done;
    pb->data = data;
    pb->results_tail = &pb->results;

    pb->loop = ev_loop_new(EVFLAG_AUTO);
    pb->multi = curl_multi_init();

    if (pb->loop == NULL || pb->multi == NULL
        || pthread_mutex_init(&pb->lock, NULL) != 0)
    {
        goto failed;
    }

    curl_multi_setopt(pb->multi, CURLMOPT_SOCKETFUNCTION, tg_probe_socket_cb);
    curl_multi_setopt(pb->multi, CURLMOPT_SOCKETDATA, pb);
    curl_multi_setopt(pb->multi, CURLMOPT_TIMERFUNCTION, tg_probe_timer_cb);
    curl_multi_setopt(pb->multi, CURLMOPT_TIMERDATA, pb);

    ev_init(&pb->wake, tg_probe_wake_cb);
    pb->wake.data = pb;

    ev_async_init(&pb->control_w, tg_probe_control_cb);
    pb->control_w.data = pb;
    ev_async_start(pb->loop, &pb->control_w);

    ev_async_init(&pb->answers_w, tg_probe_answers_cb);
    pb->answers_w.data = pb;
    ev_async_start(main_loop, &pb->answers_w);

    if (pthread_create(&pb->thread, NULL, tg_probe_thread, pb) != 0) {
        ev_async_stop(main_loop, &pb->answers_w);
        pthread_mutex_destroy(&pb->lock);
        goto failed;
    }

    return pb;

failed:

    if (pb->multi != NULL) {
        curl_multi_cleanup(pb->multi);
    }

    if (pb->loop != NULL) {
        ev_loop_destroy(pb->loop);
    }

    free(pb);

    return NULL;
}


int
tg_prober_configure(tg_prober *pb, const tg_policy *policy)
{
    size_t              i, n, len;
    tg_probe_spec      *specs, *sp;
    const tg_provider  *pr;

    n = 0;
    for (i = 0; i < policy->nproviders; i++) {
        n += policy->providers[i].health.url != NULL;
    }

    specs = calloc(n ? n : 1, sizeof(tg_probe_spec));
    if (specs == NULL) {
        return -1;
    }

    n = 0;

    for (i = 0; i < policy->nproviders; i++) {
        pr = &policy->providers[i];

        if (pr->health.url == NULL) {
            continue;
        }

        sp = &specs[n++];
        sp->interval_ms = pr->health.interval_ms;
        sp->timeout_ms = pr->health.timeout_ms;
        sp->name = strdup(pr->name);
        sp->url = strdup(pr->health.url);

        if (sp->name == NULL || sp->url == NULL) {
            goto failed;
        }

        if (pr->health.slots_url != NULL
            && (sp->slots_url = strdup(pr->health.slots_url)) == NULL)
        {
            goto failed;
        }

        if (pr->health.send_key && pr->authorization != NULL) {
            len = sizeof("Authorization: ") + strlen(pr->authorization);

            sp->auth = malloc(len);
            if (sp->auth == NULL) {
                goto failed;
            }

            snprintf(sp->auth, len, "Authorization: %s", pr->authorization);
        }
    }

    pthread_mutex_lock(&pb->lock);

    /* settings the thread never took are simply replaced */

    if (pb->specs_new) {
        tg_specs_free(pb->specs, pb->nspecs);
    }

    pb->specs = specs;
    pb->nspecs = n;
    pb->specs_new = true;

    pthread_mutex_unlock(&pb->lock);

    ev_async_send(pb->loop, &pb->control_w);

    return 0;

failed:

    tg_specs_free(specs, n);

    return -1;
}


void
tg_prober_free(tg_prober *pb)
{
    if (pb == NULL) {
        return;
    }

    pthread_mutex_lock(&pb->lock);
    pb->stop = true;
    pthread_mutex_unlock(&pb->lock);

    ev_async_send(pb->loop, &pb->control_w);

    /* a probe stuck in DNS may keep it a moment: it is the thread's wait */
    pthread_join(pb->thread, NULL);

    ev_async_stop(pb->main_loop, &pb->answers_w);

    if (pb->specs_new) {
        tg_specs_free(pb->specs, pb->nspecs);
    }

    tg_results_free(pb->results);
    tg_fetches_free(pb->fetch_new);
    tg_fetches_free(pb->fetch_done);

    pthread_mutex_destroy(&pb->lock);
    ev_loop_destroy(pb->loop);
    free(pb);
}


/* the thread */

static void *
tg_probe_thread(void *arg)
{
    size_t      i;
    tg_prober  *pb = arg;

    ev_run(pb->loop, 0);

    for (i = 0; i < pb->ntargets; i++) {
        tg_target_free(pb, pb->targets[i]);
    }

    free(pb->targets);
    pb->targets = NULL;
    pb->ntargets = 0;

    tg_fetches_free(pb->fetching);
    pb->fetching = NULL;

    ev_timer_stop(pb->loop, &pb->wake);
    ev_async_stop(pb->loop, &pb->control_w);
    curl_multi_cleanup(pb->multi);

    return NULL;
}


static void
tg_probe_control_cb(struct ev_loop *loop, ev_async *w, int revents)
{
    bool            stop, fresh;
    size_t          n;
    tg_fetch       *fetches, *f;
    tg_prober      *pb = w->data;
    tg_probe_spec  *specs;

    (void) revents;

    pthread_mutex_lock(&pb->lock);

    stop = pb->stop;
    fresh = pb->specs_new;
    specs = pb->specs;
    n = pb->nspecs;
    pb->specs_new = false;
    fetches = pb->fetch_new;
    pb->fetch_new = NULL;

    pthread_mutex_unlock(&pb->lock);

    /* on the thread, they are in flight until they finish */

    while (fetches != NULL) {
        f = fetches;
        fetches = f->next;

        f->next = pb->fetching;
        pb->fetching = f;

        tg_fetch_start(pb, f);
    }

    if (stop) {
        if (fresh) {
            tg_specs_free(specs, n);
        }

        ev_break(loop, EVBREAK_ALL);
        return;
    }

    if (fresh) {
        tg_probe_apply(pb, specs, n);
    }
}


/* new settings: every probe starts again on them */

static void
tg_probe_apply(tg_prober *pb, tg_probe_spec *specs, size_t n)
{
    size_t       i;
    tg_target  **targets, *t;

    for (i = 0; i < pb->ntargets; i++) {
        tg_target_free(pb, pb->targets[i]);
    }

    free(pb->targets);
    pb->targets = NULL;
    pb->ntargets = 0;

    targets = calloc(n ? n : 1, sizeof(tg_target *));
    if (targets == NULL) {
        tg_log_error("out of memory for the health probes");
        tg_specs_free(specs, n);
        return;
    }

    /* the strings go to the targets, the array goes */

    for (i = 0; i < n; i++) {
        t = calloc(1, sizeof(tg_target));
        if (t == NULL) {
            tg_log_error("out of memory for the health probe of %s",
                         specs[i].name);
            tg_spec_clear(&specs[i]);
            continue;
        }

        t->pb = pb;
        t->spec = specs[i];

        ev_timer_init(&t->timer, tg_probe_interval_cb, TG_PROBE_FIRST,
                      t->spec.interval_ms / 1e3);
        t->timer.data = t;
        ev_timer_start(pb->loop, &t->timer);

        targets[pb->ntargets++] = t;
    }

    pb->targets = targets;

    free(specs);
}


static void
tg_target_free(tg_prober *pb, tg_target *t)
{
    ev_timer_stop(pb->loop, &t->timer);

    if (t->easy != NULL) {
        curl_multi_remove_handle(pb->multi, t->easy);
        curl_easy_cleanup(t->easy);
    }

    curl_slist_free_all(t->headers);
    tg_results_free(t->result);
    tg_spec_clear(&t->spec);
    free(t->body);
    free(t);
}


static void
tg_probe_interval_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    tg_target  *t = w->data;

    (void) loop;
    (void) revents;

    /* the timeout is shorter than the interval: this is rare */
    if (t->easy != NULL) {
        return;
    }

    tg_results_free(t->result);

    t->result = calloc(1, sizeof(tg_result));

    if (t->result == NULL
        || (t->result->a.provider = strdup(t->spec.name)) == NULL
        || tg_probe_start(t, false) != 0)
    {
        tg_log_error("provider %s: cannot start a health probe", t->spec.name);
    }
}


static int
tg_probe_start(tg_target *t, bool slots)
{
    CURL  *easy;

    easy = curl_easy_init();
    if (easy == NULL) {
        return -1;
    }

    t->slots = slots;
    t->len = 0;

    if (t->spec.auth != NULL && t->headers == NULL) {
        t->headers = curl_slist_append(NULL, t->spec.auth);
    }

    curl_easy_setopt(easy, CURLOPT_URL, slots ? t->spec.slots_url
                                              : t->spec.url);
    curl_easy_setopt(easy, CURLOPT_PRIVATE, t);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, tg_probe_write_cb);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, t);
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long) t->spec.timeout_ms);
    curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS,
                     (long) t->spec.timeout_ms);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(easy, CURLOPT_USERAGENT, TG_SOFTWARE " health probe");

    if (t->headers != NULL) {
        curl_easy_setopt(easy, CURLOPT_HTTPHEADER, t->headers);
    }

    if (curl_multi_add_handle(t->pb->multi, easy) != CURLM_OK) {
        curl_easy_cleanup(easy);
        return -1;
    }

    t->easy = easy;

    return 0;
}


static size_t
tg_probe_write_cb(char *data, size_t size, size_t n, void *userp)
{
    char       *p;
    size_t      want;
    tg_target  *t = userp;

    n *= size;

    /* what a health answer needs fits; the rest is not kept */

    want = t->len + n > TG_PROBE_BODY_MAX ? TG_PROBE_BODY_MAX - t->len : n;

    if (want > 0) {
        p = realloc(t->body, t->len + want + 1);
        if (p == NULL) {
            return 0;
        }

        t->body = p;
        memcpy(t->body + t->len, data, want);
        t->len += want;
        t->body[t->len] = '\0';
    }

    return n;
}


static int
tg_probe_socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp,
    void *socketp)
{
    int             events;
    tg_prober      *pb = userp;
    tg_probe_sock  *s = socketp;

    (void) easy;

    if (what == CURL_POLL_REMOVE) {
        if (s != NULL) {
            ev_io_stop(pb->loop, &s->io);
            free(s);
        }

        return 0;
    }

    events = ((what & CURL_POLL_IN) ? EV_READ : 0)
             | ((what & CURL_POLL_OUT) ? EV_WRITE : 0);

    if (s == NULL) {
        s = calloc(1, sizeof(tg_probe_sock));
        if (s == NULL) {
            return -1;
        }

        s->pb = pb;
        s->fd = fd;
        ev_init(&s->io, tg_probe_io_cb);
        s->io.data = s;
        curl_multi_assign(pb->multi, fd, s);

    } else {
        ev_io_stop(pb->loop, &s->io);
    }

    ev_io_set(&s->io, fd, events);
    ev_io_start(pb->loop, &s->io);

    return 0;
}


static int
tg_probe_timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    tg_prober  *pb = userp;

    (void) multi;

    ev_timer_stop(pb->loop, &pb->wake);

    if (timeout_ms >= 0) {
        /* 0 means "now": the next loop iteration, never from in here */
        ev_timer_set(&pb->wake, timeout_ms / 1e3, 0);
        ev_timer_start(pb->loop, &pb->wake);
    }

    return 0;
}


static void
tg_probe_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    int             running, flags;
    tg_probe_sock  *s = w->data;
    tg_prober      *pb = s->pb;

    (void) loop;

    flags = ((revents & EV_READ) ? CURL_CSELECT_IN : 0)
            | ((revents & EV_WRITE) ? CURL_CSELECT_OUT : 0);

    curl_multi_socket_action(pb->multi, s->fd, flags, &running);

    tg_probe_finished(pb);
}


static void
tg_probe_wake_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    int         running;
    tg_prober  *pb = w->data;

    (void) loop;
    (void) revents;

    curl_multi_socket_action(pb->multi, CURL_SOCKET_TIMEOUT, 0, &running);

    tg_probe_finished(pb);
}


static void
tg_probe_finished(tg_prober *pb)
{
    int          left;
    long         code;
    CURL        *easy;
    CURLcode     res;
    CURLMsg     *msg;
    tg_target   *t;
    tg_result   *r;
    curl_off_t   us;
    void        *priv;

    while ((msg = curl_multi_info_read(pb->multi, &left)) != NULL) {

        if (msg->msg != CURLMSG_DONE) {
            continue;
        }

        easy = msg->easy_handle;
        res = msg->data.result;

        priv = NULL;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **) &priv);

        code = 0;
        us = 0;
        curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &code);
        curl_easy_getinfo(easy, CURLINFO_TOTAL_TIME_T, &us);

        curl_multi_remove_handle(pb->multi, easy);
        curl_easy_cleanup(easy);

        if (priv != NULL && *(int *) priv == TG_KIND_FETCH) {
            tg_fetch_finished(pb, priv, res, code);
            continue;
        }

        t = priv;

        if (t == NULL || t->result == NULL) {
            continue;
        }

        t->easy = NULL;
        r = t->result;

        if (t->slots) {
            r->a.slots = true;
            r->a.slots_status = res == CURLE_OK ? (unsigned) code : 0;
            r->a.slots_body = t->body;
            r->a.slots_len = t->len;

        } else {
            r->a.status = res == CURLE_OK ? (unsigned) code : 0;
            r->a.ms = (uint32_t) (us / 1000);
            r->a.body = t->body;
            r->a.len = t->len;

            if (res != CURLE_OK) {
                snprintf(r->error, sizeof(r->error), "%s",
                         curl_easy_strerror(res));
            }
        }

        /* the body is the result's now */
        t->body = NULL;
        t->len = 0;

        /* llama.cpp: reachable; then how many of its slots are free */

        if (!t->slots && t->spec.slots_url != NULL
            && r->a.status >= 200 && r->a.status <= 299
            && tg_probe_start(t, true) == 0)
        {
            continue;
        }

        tg_probe_deliver(t);
    }
}


/* to the main loop */

static void
tg_probe_deliver(tg_target *t)
{
    tg_prober  *pb = t->pb;

    pthread_mutex_lock(&pb->lock);

    *pb->results_tail = t->result;
    pb->results_tail = &t->result->next;

    pthread_mutex_unlock(&pb->lock);

    t->result = NULL;

    ev_async_send(pb->main_loop, &pb->answers_w);
}


/* the main loop: every answer, as it came, judged by the server */

static void
tg_probe_answers_cb(struct ev_loop *loop, ev_async *w, int revents)
{
    size_t            i;
    tg_prober        *pb = w->data;
    tg_result        *r, *list;
    tg_fetch         *fetched, *f, *next;
    tg_probe_answer   a;
    tg_fetch_answer   fa;
    const char      **h;

    (void) loop;
    (void) revents;

    pthread_mutex_lock(&pb->lock);

    list = pb->results;
    pb->results = NULL;
    pb->results_tail = &pb->results;

    fetched = pb->fetch_done;
    pb->fetch_done = NULL;

    pthread_mutex_unlock(&pb->lock);

    /* in the order they finished */

    for (f = fetched, fetched = NULL; f != NULL; f = next) {
        next = f->next;
        f->next = fetched;
        fetched = f;
    }

    for (f = fetched; f != NULL; f = f->next) {
        memset(&fa, 0, sizeof(fa));
        fa.id = f->id;
        fa.status = f->status;
        fa.error = f->error;
        fa.too_large = f->too_large;
        fa.body = f->body ? f->body : "";
        fa.len = f->len;

        h = &fa.etag;

        for (i = 0; i < TG_H_COUNT; i++) {
            h[i] = f->header[i];
        }

        f->done(&fa, f->data);
    }

    tg_fetches_free(fetched);

    for (r = list; r != NULL; r = r->next) {
        a = r->a;
        a.error = r->error;
        a.body = a.body ? a.body : "";
        a.slots_body = a.slots_body ? a.slots_body : "";

        pb->done(&a, pb->data);
    }

    tg_results_free(list);
}


static void
tg_spec_clear(tg_probe_spec *sp)
{
    free(sp->name);
    free(sp->url);
    free(sp->slots_url);

    if (sp->auth != NULL) {
        /* a provider's key: not left behind in freed memory */
        explicit_bzero(sp->auth, strlen(sp->auth));
        free(sp->auth);
    }

    memset(sp, 0, sizeof(tg_probe_spec));
}


static void
tg_specs_free(tg_probe_spec *specs, size_t n)
{
    size_t  i;

    for (i = 0; i < n; i++) {
        tg_spec_clear(&specs[i]);
    }

    free(specs);
}


static void
tg_results_free(tg_result *r)
{
    tg_result  *next;

    for ( /* void */ ; r != NULL; r = next) {
        next = r->next;
        free((char *) r->a.provider);
        free((char *) r->a.body);
        free((char *) r->a.slots_body);
        free(r);
    }
}


/* the main loop: a fetch, handed to the thread */

static int
tg_fetch_header_add(tg_fetch *f, const char *name, const char *value)
{
    char               *line;
    size_t              len;
    struct curl_slist  *list;

    len = strlen(name) + 2 + strlen(value) + 1;

    line = malloc(len);
    if (line == NULL) {
        return -1;
    }

    snprintf(line, len, "%s: %s", name, value);

    list = curl_slist_append(f->headers, line);

    /* an Authorization is a secret: no copy of it left in freed memory */
    explicit_bzero(line, len);
    free(line);

    if (list == NULL) {
        return -1;
    }

    f->headers = list;

    return 0;
}


int
tg_prober_fetch(tg_prober *pb, const tg_fetch_spec *spec, uint64_t id,
    tg_fetch_done_pt done, void *data)
{
    tg_fetch  *f;

    f = calloc(1, sizeof(tg_fetch));
    if (f == NULL) {
        return -1;
    }

    f->kind = TG_KIND_FETCH;
    f->pb = pb;
    f->id = id;
    f->done = done;
    f->data = data;
    f->timeout_ms = spec->timeout_ms;
    f->max_bytes = spec->max_bytes;
    f->url = strdup(spec->url);

    if (f->url == NULL) {
        goto failed;
    }

    if ((spec->if_none_match != NULL
         && tg_fetch_header_add(f, "If-None-Match", spec->if_none_match)
            != 0)
        || (spec->if_modified_since != NULL
            && tg_fetch_header_add(f, "If-Modified-Since",
                                   spec->if_modified_since) != 0)
        || (spec->authorization != NULL
            && tg_fetch_header_add(f, "Authorization", spec->authorization)
               != 0))
    {
        goto failed;
    }

    pthread_mutex_lock(&pb->lock);
    f->next = pb->fetch_new;
    pb->fetch_new = f;
    pthread_mutex_unlock(&pb->lock);

    ev_async_send(pb->loop, &pb->control_w);

    return 0;

failed:

    f->next = NULL;
    tg_fetches_free(f);

    return -1;
}


/* the thread */

static void
tg_fetch_start(tg_prober *pb, tg_fetch *f)
{
    CURL  *easy;
    bool   https;

    easy = curl_easy_init();

    if (easy == NULL) {
        snprintf(f->error, sizeof(f->error), "cannot start a transfer");
        tg_fetch_finished(pb, f, CURLE_FAILED_INIT, 0);
        return;
    }

    https = strncasecmp(f->url, "https:", 6) == 0;

    curl_easy_setopt(easy, CURLOPT_URL, f->url);
    curl_easy_setopt(easy, CURLOPT_PRIVATE, f);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, tg_fetch_write_cb);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, f);
    curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, tg_fetch_header_cb);
    curl_easy_setopt(easy, CURLOPT_HEADERDATA, f);
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long) f->timeout_ms);
    curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, (long) f->timeout_ms);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, https ? "https" : "http");
    curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(easy, CURLOPT_USERAGENT, TG_SOFTWARE);

    if (f->headers != NULL) {
        curl_easy_setopt(easy, CURLOPT_HTTPHEADER, f->headers);
    }

    if (curl_multi_add_handle(pb->multi, easy) != CURLM_OK) {
        curl_easy_cleanup(easy);
        snprintf(f->error, sizeof(f->error), "cannot start a transfer");
        tg_fetch_finished(pb, f, CURLE_FAILED_INIT, 0);
        return;
    }

    f->easy = easy;
}


static size_t
tg_fetch_write_cb(char *data, size_t size, size_t n, void *userp)
{
    char      *p;
    tg_fetch  *f = userp;

    n *= size;

    if (f->len + n > f->max_bytes) {
        f->too_large = true;
        return 0;
    }

    p = realloc(f->body, f->len + n + 1);
    if (p == NULL) {
        return 0;
    }

    f->body = p;
    memcpy(f->body + f->len, data, n);
    f->len += n;
    f->body[f->len] = '\0';

    return n;
}


/* the headers jwks.c reads; a new status line starts them over */

static size_t
tg_fetch_header_cb(char *data, size_t size, size_t n, void *userp)
{
    char      *p, *v, *joined;
    size_t     i, len, name, vlen, old;
    tg_fetch  *f = userp;

    len = size * n;

    if (len >= 5 && memcmp(data, "HTTP/", 5) == 0) {
        for (i = 0; i < TG_H_COUNT; i++) {
            free(f->header[i]);
            f->header[i] = NULL;
        }

        return len;
    }

    p = memchr(data, ':', len);

    if (p == NULL) {
        return len;
    }

    name = (size_t) (p - data);

    for (i = 0; i < TG_H_COUNT; i++) {
        if (strlen(tg_fetch_headers[i]) == name
            && strncasecmp(data, tg_fetch_headers[i], name) == 0)
        {
            break;
        }
    }

    if (i == TG_H_COUNT) {
        return len;
    }

    v = p + 1;
    vlen = len - name - 1;

    while (vlen && (*v == ' ' || *v == '\t')) {
        v++;
        vlen--;
    }

    while (vlen && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n'
                    || v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
    {
        vlen--;
    }

    if (vlen > TG_FETCH_HEADER_MAX) {
        return len;
    }

    /* Cache-Control may come in several lines: they add up */

    old = (i == TG_H_CACHE_CONTROL && f->header[i] != NULL)
          ? strlen(f->header[i]) : 0;

    if (old + vlen > 4 * TG_FETCH_HEADER_MAX) {
        return len;
    }

    joined = malloc(old + 2 + vlen + 1);
    if (joined == NULL) {
        return len;
    }

    if (old) {
        memcpy(joined, f->header[i], old);
        memcpy(joined + old, ", ", 2);
        old += 2;
    }

    memcpy(joined + old, v, vlen);
    joined[old + vlen] = '\0';

    free(f->header[i]);
    f->header[i] = joined;

    return len;
}


/* off the thread's list, onto the main loop's */

static void
tg_fetch_finished(tg_prober *pb, tg_fetch *f, CURLcode res, long code)
{
    tg_fetch  **pp;

    for (pp = &pb->fetching; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == f) {
            *pp = f->next;
            break;
        }
    }

    f->easy = NULL;
    f->status = res == CURLE_OK ? (unsigned) code : 0;

    if (res != CURLE_OK && f->error[0] == '\0') {
        snprintf(f->error, sizeof(f->error), "%s",
                 f->too_large ? "the answer is larger than max_bytes"
                              : curl_easy_strerror(res));
    }

    pthread_mutex_lock(&pb->lock);
    f->next = pb->fetch_done;
    pb->fetch_done = f;
    pthread_mutex_unlock(&pb->lock);

    ev_async_send(pb->main_loop, &pb->answers_w);
}


static void
tg_fetches_free(tg_fetch *f)
{
    size_t              i;
    tg_fetch           *next;
    struct curl_slist  *h;

    for ( /* void */ ; f != NULL; f = next) {
        next = f->next;

        if (f->easy != NULL) {
            curl_multi_remove_handle(f->pb->multi, f->easy);
            curl_easy_cleanup(f->easy);
        }

        for (h = f->headers; h != NULL; h = h->next) {
            explicit_bzero(h->data, strlen(h->data));
        }

        curl_slist_free_all(f->headers);
        free(f->url);
        free(f->body);

        for (i = 0; i < TG_H_COUNT; i++) {
            free(f->header[i]);
        }

        free(f);
    }
}
