/*
 * Active health probes on libcurl's multi interface and libev: curl tells
 * which sockets to watch and when to wake it (the socket and timer
 * callbacks), libev watches them, and finished transfers are read off
 * curl_multi_info_read().  Nothing here blocks; name resolution is
 * libcurl's threaded resolver.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "log.h"
#include "probe.h"
#include "server.h"


#define TG_PROBE_BODY_MAX   (256 * 1024)
#define TG_PROBE_FIRST      0.05        /* seconds after (re)configuring */


typedef struct tg_target  tg_target;

struct tg_target {
    tg_prober          *pb;
    char               *name;
    const tg_provider  *pr;             /* in the policy configured last */
    ev_timer            timer;
    CURL               *easy;           /* the transfer in flight */
    bool                slots;          /* it asks llama.cpp's /slots */
    char               *body;
    size_t              len;
    tg_probe_result     result;
};


typedef struct {
    ev_io               io;
    tg_prober          *pb;
    curl_socket_t       fd;
} tg_probe_sock;


struct tg_prober {
    struct ev_loop     *loop;
    CURLM              *multi;
    ev_timer            wake;           /* when libcurl wants to be called */
    tg_probe_done_pt    done;
    void               *data;
    tg_target         **targets;
    size_t              ntargets;
};


static int tg_probe_socket_cb(CURL *easy, curl_socket_t fd, int what,
    void *userp, void *socketp);
static int tg_probe_timer_cb(CURLM *multi, long timeout_ms, void *userp);
static void tg_probe_io_cb(struct ev_loop *loop, ev_io *w, int revents);
static void tg_probe_wake_cb(struct ev_loop *loop, ev_timer *w, int revents);
static void tg_probe_interval_cb(struct ev_loop *loop, ev_timer *w,
    int revents);
static void tg_probe_finished(tg_prober *pb);
static int tg_probe_start(tg_target *t, bool slots);
static size_t tg_probe_write_cb(char *data, size_t size, size_t n,
    void *userp);
static void tg_target_free(tg_prober *pb, tg_target *t);


tg_prober *
tg_prober_new(struct ev_loop *loop, tg_probe_done_pt done, void *data)
{
    tg_prober  *pb;

    pb = calloc(1, sizeof(tg_prober));
    if (pb == NULL) {
        return NULL;
    }

    pb->multi = curl_multi_init();
    if (pb->multi == NULL) {
        free(pb);
        return NULL;
    }

    pb->loop = loop;
    pb->done = done;
    pb->data = data;

    curl_multi_setopt(pb->multi, CURLMOPT_SOCKETFUNCTION, tg_probe_socket_cb);
    curl_multi_setopt(pb->multi, CURLMOPT_SOCKETDATA, pb);
    curl_multi_setopt(pb->multi, CURLMOPT_TIMERFUNCTION, tg_probe_timer_cb);
    curl_multi_setopt(pb->multi, CURLMOPT_TIMERDATA, pb);

    ev_init(&pb->wake, tg_probe_wake_cb);
    pb->wake.data = pb;

    return pb;
}


int
tg_prober_configure(tg_prober *pb, const tg_policy *policy)
{
    size_t              i, j, n;
    tg_target         **targets, *t;
    const tg_provider  *pr;

    n = 0;
    for (i = 0; i < policy->nproviders; i++) {
        n += policy->providers[i].health.url != NULL;
    }

    targets = calloc(n ? n : 1, sizeof(tg_target *));
    if (targets == NULL) {
        return -1;
    }

    /* keep what is probed already, restarted on its new settings */

    n = 0;

    for (i = 0; i < policy->nproviders; i++) {
        pr = &policy->providers[i];

        if (pr->health.url == NULL) {
            continue;
        }

        t = NULL;

        for (j = 0; j < pb->ntargets; j++) {
            if (pb->targets[j] != NULL
                && strcmp(pb->targets[j]->name, pr->name) == 0)
            {
                t = pb->targets[j];
                pb->targets[j] = NULL;
                break;
            }
        }

        if (t == NULL) {
            t = calloc(1, sizeof(tg_target));
            if (t == NULL || (t->name = strdup(pr->name)) == NULL) {
                free(t);
                goto failed;
            }

            t->pb = pb;
            ev_init(&t->timer, tg_probe_interval_cb);
            t->timer.data = t;

        } else if (t->easy != NULL) {
            curl_multi_remove_handle(pb->multi, t->easy);
            curl_easy_cleanup(t->easy);
            t->easy = NULL;
        }

        t->pr = pr;

        ev_timer_stop(pb->loop, &t->timer);
        ev_timer_set(&t->timer, TG_PROBE_FIRST, pr->health.interval_ms / 1e3);
        ev_timer_start(pb->loop, &t->timer);

        targets[n++] = t;
    }

    /* providers no longer probed */

    for (j = 0; j < pb->ntargets; j++) {
        if (pb->targets[j] != NULL) {
            tg_target_free(pb, pb->targets[j]);
        }
    }

    free(pb->targets);
    pb->targets = targets;
    pb->ntargets = n;

    return 0;

failed:

    /* those moved over go back, nothing changes */

    for (i = 0; i < n; i++) {
        for (j = 0; j < pb->ntargets; j++) {
            if (pb->targets[j] == NULL) {
                pb->targets[j] = targets[i];
                break;
            }
        }

        if (j == pb->ntargets) {
            tg_target_free(pb, targets[i]);
        }
    }

    free(targets);

    return -1;
}


void
tg_prober_free(tg_prober *pb)
{
    size_t  i;

    if (pb == NULL) {
        return;
    }

    for (i = 0; i < pb->ntargets; i++) {
        tg_target_free(pb, pb->targets[i]);
    }

    ev_timer_stop(pb->loop, &pb->wake);
    curl_multi_cleanup(pb->multi);

    free(pb->targets);
    free(pb);
}


static void
tg_target_free(tg_prober *pb, tg_target *t)
{
    ev_timer_stop(pb->loop, &t->timer);

    if (t->easy != NULL) {
        curl_multi_remove_handle(pb->multi, t->easy);
        curl_easy_cleanup(t->easy);
    }

    free(t->body);
    free(t->name);
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

    memset(&t->result, 0, sizeof(t->result));
    t->result.slots_total = -1;
    t->result.slots_busy = -1;
    t->result.running = -1;
    t->result.waiting = -1;

    if (tg_probe_start(t, false) != 0) {
        tg_log_error("provider %s: cannot start a health probe", t->name);
    }
}


static int
tg_probe_start(tg_target *t, bool slots)
{
    CURL                  *easy;
    const tg_health_conf  *hc = &t->pr->health;

    easy = curl_easy_init();
    if (easy == NULL) {
        return -1;
    }

    t->slots = slots;
    t->len = 0;

    curl_easy_setopt(easy, CURLOPT_URL, slots ? hc->slots_url : hc->url);
    curl_easy_setopt(easy, CURLOPT_PRIVATE, t);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, tg_probe_write_cb);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, t);
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long) hc->timeout_ms);
    curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, (long) hc->timeout_ms);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(easy, CURLOPT_USERAGENT, TG_SOFTWARE " health probe");

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
        s->io.data = s;
        ev_init(&s->io, tg_probe_io_cb);
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
    int               left;
    long              code;
    CURL             *easy;
    CURLcode          res;
    CURLMsg          *msg;
    tg_target        *t;
    curl_off_t        us;
    tg_probe_result  *r;

    while ((msg = curl_multi_info_read(pb->multi, &left)) != NULL) {

        if (msg->msg != CURLMSG_DONE) {
            continue;
        }

        easy = msg->easy_handle;
        res = msg->data.result;

        t = NULL;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **) &t);

        code = 0;
        us = 0;
        curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &code);
        curl_easy_getinfo(easy, CURLINFO_TOTAL_TIME_T, &us);

        curl_multi_remove_handle(pb->multi, easy);
        curl_easy_cleanup(easy);

        if (t == NULL) {
            continue;
        }

        t->easy = NULL;
        r = &t->result;

        if (!t->slots) {
            r->ms = (uint32_t) (us / 1000);
        }

        if (res != CURLE_OK) {
            if (!t->slots) {
                r->ok = false;
                r->status = 0;
                snprintf(r->note, sizeof(r->note), "%s",
                         curl_easy_strerror(res));
            }

        } else {
            tg_probe_interpret(t->pr, t->slots, (unsigned) code,
                               t->body ? t->body : "", t->len, r);
        }

        /* llama.cpp: reachable and ready; then how many slots are free */

        if (!t->slots && r->ok && t->pr->health.kind == TG_PROBE_LLAMACPP
            && t->pr->health.slots_url != NULL
            && tg_probe_start(t, true) == 0)
        {
            continue;
        }

        pb->done(t->name, r, pb->data);
    }
}
