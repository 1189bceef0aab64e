/*
 * The key sets policyd keeps (jwks.h).  Each set is kept by its name, so
 * that what it learned (the set, its ETag, the jwks_uri discovery found)
 * survives a reload that leaves its URL and file alone.  Nothing here
 * waits: fetches run on the probe thread and come back through
 * tg_prober_fetch()'s callback; the file is a few kilobytes, written and
 * renamed on the loop.
 */

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conn.h"
#include "jwks.h"
#include "jwks_cache.h"
#include "log.h"
#include "tailgate_jwks.h"


#define TG_JWKS_WAITERS_MAX   1024      /* JWKS_REFRESH waiting, per set */
#define TG_JWKS_KIDS_LOGGED   200       /* bytes of kids in a log line */


typedef struct {
    uint64_t            conn;           /* the connection's id */
    uint32_t            id;             /* the frame's */
} tg_keep_waiter;


typedef struct tg_keep  tg_keep;

/* one set: its settings (copied from the policy) and what it learned */
struct tg_keep {
    tg_keep            *next;
    tg_jwks_keeper     *k;

    char               *name;
    char               *url;            /* NULL: by discovery */
    char               *discovery_url;
    char               *issuer;
    char               *file;
    uint32_t            refresh_ms;
    uint32_t            min_refresh_ms;
    uint32_t            timeout_ms;
    uint32_t            max_bytes;
    bool                insecure_http;

    ev_timer            timer;          /* the next fetch */
    uint64_t            fetch_id;       /* in flight; 0: none */
    bool                discovering;
    bool                seen;           /* in the policy being applied */

    char               *jwks_uri;       /* what discovery found */
    char               *etag;
    char               *last_modified;
    char               *text;           /* the set in force, as written */
    tg_jwks             set;
    uint64_t            fetched_ms;     /* the last fetch started; 0 never */
    uint32_t            failures;

    tg_keep_waiter     *waiters;
    size_t              nwaiters;
};


struct tg_jwks_keeper {
    tg_server          *srv;
    tg_keep            *keeps;
    uint64_t            next_fetch;
};


static tg_keep *tg_keep_new(tg_jwks_keeper *k, const tg_jwks_conf *jc);
static bool tg_keep_same(const tg_keep *kp, const tg_jwks_conf *jc);
static void tg_keep_settings(tg_keep *kp, const tg_jwks_conf *jc);
static void tg_keep_read_file(tg_keep *kp);
static void tg_keep_forget(tg_keep *kp);
static void tg_keep_free(tg_keep *kp);
static void tg_keep_timer_cb(struct ev_loop *loop, ev_timer *w,
    int revents);
static int tg_keep_fetch(tg_keep *kp);
static void tg_keep_fetched(const tg_fetch_answer *a, void *data);
static void tg_keep_got_set(tg_keep *kp, const tg_fetch_answer *a);
static void tg_keep_done(tg_keep *kp, unsigned status, int64_t fresh_ms);
static void tg_keep_failed(tg_keep *kp, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int tg_keep_write(tg_keep *kp, const char *text, size_t len,
    char *why, size_t whylen);
static void tg_keep_answer_all(tg_keep *kp, unsigned status);
static void tg_keep_answer(tg_keep *kp, tg_conn *c, uint32_t id,
    unsigned status);
static uint32_t tg_keep_wait_ms(const tg_keep *kp);
static void tg_keep_kids(const tg_jwks *set, char *buf, size_t len);
static int tg_replace(char **dst, const char *src);


tg_jwks_keeper *
tg_jwks_keeper_new(tg_server *srv)
{
    tg_jwks_keeper  *k;

    k = calloc(1, sizeof(tg_jwks_keeper));
    if (k == NULL) {
        return NULL;
    }

    k->srv = srv;

    return k;
}


void
tg_jwks_keeper_free(tg_jwks_keeper *k)
{
    tg_keep  *kp, *next;

    if (k == NULL) {
        return;
    }

    for (kp = k->keeps; kp != NULL; kp = next) {
        next = kp->next;
        tg_keep_free(kp);
    }

    free(k);
}


int
tg_jwks_configure(tg_jwks_keeper *k, const tg_policy *policy)
{
    size_t               i;
    tg_keep             *kp, **pp;
    const tg_jwks_conf  *jc;

    for (kp = k->keeps; kp != NULL; kp = kp->next) {
        kp->seen = false;
    }

    for (i = 0; i < policy->njwks; i++) {
        jc = &policy->jwks[i];

        for (kp = k->keeps; kp != NULL; kp = kp->next) {
            if (strcmp(kp->name, jc->name) == 0) {
                break;
            }
        }

        if (kp != NULL && tg_keep_same(kp, jc)) {
            tg_keep_settings(kp, jc);
            kp->seen = true;
            continue;
        }

        if (kp != NULL) {
            /* another URL or file: what it learned does not apply */
            kp->name[0] = '\0';
        }

        kp = tg_keep_new(k, jc);
        if (kp == NULL) {
            return -1;
        }

        kp->seen = true;
    }

    /* sets gone from the policy: their waiters learn it */

    for (pp = &k->keeps; *pp != NULL; /* void */) {
        kp = *pp;

        if (kp->seen) {
            pp = &kp->next;
            continue;
        }

        *pp = kp->next;

        tg_keep_answer_all(kp, 404);
        tg_keep_free(kp);
    }

    return 0;
}


static tg_keep *
tg_keep_new(tg_jwks_keeper *k, const tg_jwks_conf *jc)
{
    tg_keep  *kp;

    kp = calloc(1, sizeof(tg_keep));
    if (kp == NULL) {
        return NULL;
    }

    kp->k = k;

    if (tg_replace(&kp->name, jc->name) != 0
        || tg_replace(&kp->url, jc->url) != 0
        || tg_replace(&kp->discovery_url, jc->discovery_url) != 0
        || tg_replace(&kp->issuer, jc->issuer) != 0
        || tg_replace(&kp->file, jc->file) != 0)
    {
        tg_keep_free(kp);
        return NULL;
    }

    tg_keep_settings(kp, jc);

    ev_init(&kp->timer, tg_keep_timer_cb);
    kp->timer.data = kp;

    /* what the last run wrote stays in force until a fetch says better */
    tg_keep_read_file(kp);

    kp->next = k->keeps;
    k->keeps = kp;

    /* the first fetch at once, off the loop's way */
    ev_timer_set(&kp->timer, 0., 0.);
    ev_timer_start(k->srv->loop, &kp->timer);

    return kp;
}


static bool
tg_keep_same(const tg_keep *kp, const tg_jwks_conf *jc)
{
#define TG_SAME(a, b)  (((a) == NULL && (b) == NULL)                          \
                        || ((a) != NULL && (b) != NULL && strcmp(a, b) == 0))

    return TG_SAME(kp->url, jc->url) && TG_SAME(kp->issuer, jc->issuer)
           && TG_SAME(kp->file, jc->file)
           && kp->insecure_http == jc->insecure_http;

#undef TG_SAME
}


static void
tg_keep_settings(tg_keep *kp, const tg_jwks_conf *jc)
{
    kp->refresh_ms = jc->refresh_ms;
    kp->min_refresh_ms = jc->min_refresh_ms;
    kp->timeout_ms = jc->timeout_ms;
    kp->max_bytes = jc->max_bytes;
    kp->insecure_http = jc->insecure_http;
}


/* the set a former run wrote, so that kids it has are known at once */

static void
tg_keep_read_file(tg_keep *kp)
{
    int          fd;
    char        *buf, err[TG_JWKS_WHY_MAX];
    ssize_t      n;
    struct stat  st;

    fd = open(kp->file, O_RDONLY | O_CLOEXEC);

    if (fd < 0) {
        return;
    }

    buf = NULL;

    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size <= 0
        || st.st_size > TG_JWKS_MAX_BYTES_MAX
        || (buf = malloc((size_t) st.st_size + 1)) == NULL)
    {
        goto done;
    }

    n = read(fd, buf, (size_t) st.st_size);

    if (n != (ssize_t) st.st_size
        || tg_jwks_parse(buf, (size_t) n, &kp->set, err, sizeof(err)) != 0)
    {
        tg_log_warn("jwks.file_unusable", "jwks file",
                    "jwks %s: %s holds no usable key set; it is replaced "
                    "by the first good fetch", kp->name, kp->file);
        goto done;
    }

    kp->text = tg_jwks_text(&kp->set, NULL);

    if (kp->text == NULL) {
        tg_jwks_free(&kp->set);
    }

done:

    free(buf);
    close(fd);
}


static void
tg_keep_forget(tg_keep *kp)
{
    free(kp->jwks_uri);
    kp->jwks_uri = NULL;
}


static void
tg_keep_free(tg_keep *kp)
{
    if (kp->k != NULL && ev_is_active(&kp->timer)) {
        ev_timer_stop(kp->k->srv->loop, &kp->timer);
    }

    free(kp->name);
    free(kp->url);
    free(kp->discovery_url);
    free(kp->issuer);
    free(kp->file);
    free(kp->jwks_uri);
    free(kp->etag);
    free(kp->last_modified);
    free(kp->text);
    free(kp->waiters);
    tg_jwks_free(&kp->set);
    free(kp);
}


static void
tg_keep_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    tg_keep  *kp = w->data;

    (void) loop;
    (void) revents;

    if (kp->fetch_id == 0 && tg_keep_fetch(kp) != 0) {
        tg_keep_failed(kp, "out of memory");
    }
}


/* 0: a fetch is on its way (the discovery document first, when needed) */

static int
tg_keep_fetch(tg_keep *kp)
{
    tg_fetch_spec    spec;
    tg_jwks_keeper  *k = kp->k;

    if (kp->fetch_id != 0) {
        return 0;
    }

    memset(&spec, 0, sizeof(spec));

    spec.url = kp->url ? kp->url : kp->jwks_uri;
    kp->discovering = spec.url == NULL;

    if (kp->discovering) {
        spec.url = kp->discovery_url;

    } else if (kp->text != NULL) {
        /* only a set we hold can be "not modified" */
        spec.if_none_match = kp->etag;
        spec.if_modified_since = kp->last_modified;
    }

    spec.timeout_ms = kp->timeout_ms;
    spec.max_bytes = kp->max_bytes;

    if (tg_prober_fetch(k->srv->prober, &spec, ++k->next_fetch,
                        tg_keep_fetched, k) != 0)
    {
        return -1;
    }

    kp->fetch_id = k->next_fetch;
    kp->fetched_ms = tg_now_ms(k->srv);

    ev_timer_stop(k->srv->loop, &kp->timer);

    tg_log_debug("jwks.fetching", "jwks url", "jwks %s: fetching %s",
                 kp->name, spec.url);

    return 0;
}


static void
tg_keep_fetched(const tg_fetch_answer *a, void *data)
{
    char             why[256];
    tg_keep         *kp;
    tg_jwks_keeper  *k = data;

    for (kp = k->keeps; kp != NULL; kp = kp->next) {
        if (kp->fetch_id == a->id) {
            break;
        }
    }

    /* a set the policy no longer has, or that started over */
    if (kp == NULL) {
        return;
    }

    kp->fetch_id = 0;

    if (!kp->discovering) {
        tg_keep_got_set(kp, a);
        return;
    }

    if (a->status == 0) {
        tg_keep_failed(kp, "discovery at %s: %s", kp->discovery_url,
                       a->error);
        return;
    }

    if (a->status != 200) {
        tg_keep_failed(kp, "discovery at %s: HTTP %u", kp->discovery_url,
                       a->status);
        return;
    }

    tg_keep_forget(kp);

    if (tg_discovery_jwks_uri(a->body, a->len, kp->issuer, kp->insecure_http,
                              &kp->jwks_uri, why, sizeof(why)) != 0)
    {
        tg_keep_failed(kp, "discovery at %s: %s", kp->discovery_url, why);
        return;
    }

    tg_log_info("jwks.discovered", "jwks issuer url",
                "jwks %s: the key set of %s is at %s", kp->name, kp->issuer,
                kp->jwks_uri);

    /* the set itself, right behind */

    if (tg_keep_fetch(kp) != 0) {
        tg_keep_failed(kp, "out of memory");
    }
}


static void
tg_keep_got_set(tg_keep *kp, const tg_fetch_answer *a)
{
    char         why[640], err[TG_JWKS_WHY_MAX], kids[TG_JWKS_KIDS_LOGGED];
    char        *text;
    size_t       len;
    int64_t      fresh;
    tg_jwks      set;
    const char  *url;

    url = kp->url ? kp->url : kp->jwks_uri;

    fresh = tg_http_freshness_ms(a->cache_control, a->expires, a->date,
                                 a->age, (time_t) ev_now(kp->k->srv->loop));

    if (a->status == 304 && kp->text != NULL) {
        tg_log_debug("jwks.not_modified", "jwks", "jwks %s: not modified",
                     kp->name);
        tg_keep_done(kp, 304, fresh);
        return;
    }

    if (a->status != 200) {
        if (kp->url == NULL) {
            /* the provider may have moved it: discovery again, next time */
            tg_keep_forget(kp);
        }

        if (a->status == 0) {
            tg_keep_failed(kp, "%s: %s", url, a->error);
        } else {
            tg_keep_failed(kp, "%s: HTTP %u", url, a->status);
        }

        return;
    }

    if (tg_jwks_parse(a->body, a->len, &set, err, sizeof(err)) != 0) {
        tg_keep_failed(kp, "%s: not a usable key set: %s", url, err);
        return;
    }

    if (set.skipped) {
        tg_log_warn("jwks.keys_skipped", "jwks url skipped reason",
                    "jwks %s: %s: %zu of its keys left out, the first: %s",
                    kp->name, url, set.skipped, set.why);
    }

    text = tg_jwks_text(&set, &len);

    if (text == NULL) {
        tg_jwks_free(&set);
        tg_keep_failed(kp, "out of memory");
        return;
    }

    if (kp->text != NULL && strcmp(text, kp->text) == 0) {
        free(text);
        tg_jwks_free(&set);

        if (tg_replace(&kp->etag, a->etag) != 0
            || tg_replace(&kp->last_modified, a->last_modified) != 0)
        {
            tg_keep_failed(kp, "out of memory");
            return;
        }

        tg_log_debug("jwks.unchanged", "jwks keys",
                     "jwks %s: the same %zu keys", kp->name, kp->set.nkeys);
        tg_keep_done(kp, 304, fresh);
        return;
    }

    if (tg_keep_write(kp, text, len, why, sizeof(why)) != 0) {
        free(text);
        tg_jwks_free(&set);
        tg_keep_failed(kp, "%s", why);
        return;
    }

    free(kp->text);
    kp->text = text;
    tg_jwks_free(&kp->set);
    kp->set = set;

    if (tg_replace(&kp->etag, a->etag) != 0
        || tg_replace(&kp->last_modified, a->last_modified) != 0)
    {
        /* asked again in full next time: no harm */
        free(kp->etag);
        free(kp->last_modified);
        kp->etag = NULL;
        kp->last_modified = NULL;
    }

    tg_keep_kids(&kp->set, kids, sizeof(kids));

    tg_log_info("jwks.written", "jwks keys kids url file",
                "jwks %s: %zu keys (%s) from %s written to %s", kp->name,
                kp->set.nkeys, kids, url, kp->file);

    tg_keep_done(kp, 200, fresh);
}


/* a good answer: 200 a new set, 304 the same; the next one when fresh */

static void
tg_keep_done(tg_keep *kp, unsigned status, int64_t fresh_ms)
{
    uint32_t  next;

    kp->failures = 0;

    next = tg_jwks_next_ms(&(tg_jwks_conf) {
                               .refresh_ms = kp->refresh_ms,
                               .min_refresh_ms = kp->min_refresh_ms },
                           fresh_ms, 0);

    ev_timer_stop(kp->k->srv->loop, &kp->timer);
    ev_timer_set(&kp->timer, next / 1e3, 0.);
    ev_timer_start(kp->k->srv->loop, &kp->timer);

    tg_keep_answer_all(kp, status);
}


static void
tg_keep_failed(tg_keep *kp, const char *fmt, ...)
{
    char      why[768];
    va_list   ap;
    uint32_t  next;

    va_start(ap, fmt);
    (void) vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);

    kp->failures++;

    next = tg_jwks_next_ms(&(tg_jwks_conf) {
                               .refresh_ms = kp->refresh_ms,
                               .min_refresh_ms = kp->min_refresh_ms },
                           -1, kp->failures);

    if (kp->text != NULL) {
        tg_log_warn("jwks.fetch_failed", "jwks reason keys next_ms",
                    "jwks %s: %s; the last good set (%zu keys) stays, next "
                    "try in %u ms", kp->name, why, kp->set.nkeys, next);
    } else {
        tg_log_error("jwks.fetch_failed", "jwks reason next_ms",
                     "jwks %s: %s; no key set yet, next try in %u ms",
                     kp->name, why, next);
    }

    ev_timer_stop(kp->k->srv->loop, &kp->timer);
    ev_timer_set(&kp->timer, next / 1e3, 0.);
    ev_timer_start(kp->k->srv->loop, &kp->timer);

    tg_keep_answer_all(kp, 502);
}


/* whole or not at all: a worker never reads half a set */

static int
tg_keep_write(tg_keep *kp, const char *text, size_t len, char *why,
    size_t whylen)
{
    int      fd, err;
    char     tmp[TG_JWKS_FILE_MAX + 32];
    size_t   off;
    ssize_t  n;

    snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", kp->file, (long) getpid());

    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

    if (fd < 0) {
        snprintf(why, whylen, "cannot write %.200s: %s", tmp,
                 strerror(errno));
        return -1;
    }

    /* public keys only: nginx's workers (another user) read the set even
     * under the unit's UMask=0027 */
    if (fchmod(fd, 0644) != 0) {
        err = errno;
        close(fd);
        unlink(tmp);
        snprintf(why, whylen, "cannot chmod %.200s: %s", tmp, strerror(err));
        return -1;
    }

    for (off = 0; off < len; off += (size_t) n) {
        n = write(fd, text + off, len - off);

        if (n < 0 && errno == EINTR) {
            n = 0;
            continue;
        }

        if (n <= 0) {
            err = errno;
            close(fd);
            unlink(tmp);
            snprintf(why, whylen, "cannot write %.200s: %s", tmp,
                     strerror(err));
            return -1;
        }
    }

    if (write(fd, "\n", 1) != 1 || close(fd) != 0) {
        err = errno;
        unlink(tmp);
        snprintf(why, whylen, "cannot write %.200s: %s", tmp,
                 strerror(err));
        return -1;
    }

    if (rename(tmp, kp->file) != 0) {
        err = errno;
        unlink(tmp);
        snprintf(why, whylen, "cannot rename %.200s to %.200s: %s", tmp,
                 kp->file, strerror(err));
        return -1;
    }

    return 0;
}


void
tg_jwks_refresh(tg_jwks_keeper *k, tg_conn *c, const uint8_t *frame,
    const tg_frame_hdr *h)
{
    int              rc;
    char             file[TG_JWKS_FILE_MAX + 1];
    bool             has_file, has_kid;
    size_t           kid_len;
    uint64_t         now;
    tg_keep         *kp;
    tg_field         f;
    tg_field_iter    it;
    const char      *kid;
    tg_keep_waiter  *w;

    has_file = false;
    has_kid = false;
    kid = NULL;
    kid_len = 0;

    tg_fields_init(&it, frame, h);

    while ((rc = tg_fields_next(&it, &f)) == 1) {
        if (f.key == TG_F_JWKS_FILE && f.len <= TG_JWKS_FILE_MAX) {
            memcpy(file, f.value, f.len);
            file[f.len] = '\0';
            has_file = memchr(file, '\0', f.len) == NULL;

        } else if (f.key == TG_F_KID) {
            kid = (const char *) f.value;
            kid_len = f.len;
            has_kid = true;
        }
    }

    if (rc < 0) {
        tg_conn_malformed(c, h, "a field runs past the end of the frame");
        return;
    }

    if (!has_file) {
        tg_conn_error(c, h->id, TG_ERR_MISSING_FIELD, false,
                      "JWKS_REFRESH needs jwks_file");
        return;
    }

    for (kp = k != NULL ? k->keeps : NULL; kp != NULL; kp = kp->next) {
        if (strcmp(kp->file, file) == 0) {
            break;
        }
    }

    if (kp == NULL) {
        tg_log_warn("jwks.unknown_file", "file",
                    "a worker asked for the key set in %.200s, which no "
                    "\"jwks\" of the policy writes", file);
        tg_keep_answer(NULL, c, h->id, 404);
        return;
    }

    /* the worker has not read what was written yet */

    if (has_kid && tg_jwks_find(&kp->set, kid, kid_len) != NULL) {
        tg_keep_answer(kp, c, h->id, 200);
        return;
    }

    now = tg_now_ms(k->srv);

    if (kp->fetch_id == 0
        && kp->fetched_ms != 0
        && now < kp->fetched_ms + kp->min_refresh_ms)
    {
        tg_log_debug("jwks.refresh_too_soon", "jwks",
                     "jwks %s: asked again within min_refresh_ms",
                     kp->name);
        tg_keep_answer(kp, c, h->id, 429);
        return;
    }

    if (kp->nwaiters == TG_JWKS_WAITERS_MAX) {
        tg_keep_answer(kp, c, h->id, 429);
        return;
    }

    if (kp->fetch_id == 0) {
        if (tg_keep_fetch(kp) != 0) {
            tg_keep_answer(kp, c, h->id, 502);
            return;
        }

        tg_log_info("jwks.refresh", "jwks",
                    "jwks %s: fetched again for a kid it lacks", kp->name);
    }

    w = realloc(kp->waiters, (kp->nwaiters + 1) * sizeof(tg_keep_waiter));
    if (w == NULL) {
        tg_keep_answer(kp, c, h->id, 502);
        return;
    }

    kp->waiters = w;
    w[kp->nwaiters].conn = c->id;
    w[kp->nwaiters].id = h->id;
    kp->nwaiters++;
}


/* from the loop's own callbacks: never inside a connection's */

static void
tg_keep_answer_all(tg_keep *kp, unsigned status)
{
    size_t           i;
    tg_conn         *c;
    tg_keep_waiter  *w;

    w = kp->waiters;

    kp->waiters = NULL;

    for (i = 0; i < kp->nwaiters; i++) {
        for (c = kp->k->srv->conns; c != NULL; c = c->next) {
            if (c->id == w[i].conn) {
                break;
            }
        }

        if (c == NULL || c->state != TG_CONN_OPEN) {
            continue;
        }

        tg_keep_answer(kp, c, w[i].id, status);

        tg_conn_flush(c);
        tg_conn_finish(c);
    }

    kp->nwaiters = 0;
    free(w);
}


static void
tg_keep_answer(tg_keep *kp, tg_conn *c, uint32_t id, unsigned status)
{
    long        len;
    tg_builder  b;

    tg_builder_start(c, &b, TG_MSG_JWKS_STATE, id);
    tg_build_u32(&b, TG_F_STATUS, status);

    if (kp != NULL) {
        tg_build_u32(&b, TG_F_REFRESH_MS, tg_keep_wait_ms(kp));
    }

    len = tg_build_end(&b);

    if (len > 0) {
        tg_conn_send(c, c->srv->out, (size_t) len);
    }
}


/* how long until a worker's ask may fetch again */

static uint32_t
tg_keep_wait_ms(const tg_keep *kp)
{
    uint64_t  now;

    now = tg_now_ms(kp->k->srv);

    if (kp->fetched_ms == 0 || now >= kp->fetched_ms + kp->min_refresh_ms) {
        return 0;
    }

    return (uint32_t) (kp->fetched_ms + kp->min_refresh_ms - now);
}


static void
tg_keep_kids(const tg_jwks *set, char *buf, size_t len)
{
    int     n;
    size_t  i, used;

    used = 0;
    buf[0] = '\0';

    for (i = 0; i < set->nkeys && used < len; i++) {
        n = snprintf(buf + used, len - used, "%s%s", i ? ", " : "kid ",
                     set->keys[i].has_kid ? set->keys[i].kid : "(none)");

        if (n < 0) {
            break;
        }

        used += (size_t) n;
    }

    if (used >= len && len > 4) {
        memcpy(buf + len - 4, "...", 4);
    }
}


static int
tg_replace(char **dst, const char *src)
{
    char  *copy;

    copy = NULL;

    if (src != NULL) {
        copy = strdup(src);
        if (copy == NULL) {
            return -1;
        }
    }

    free(*dst);
    *dst = copy;

    return 0;
}
