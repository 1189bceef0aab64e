/*
 * Active health probes: one HTTP GET per provider that has a health URL,
 * every interval; and the other GETs policyd makes (tg_prober_fetch()).
 * They run on a thread of their own, with libcurl (TLS
 * for https:// included) driven by a libev loop of that thread: a probe
 * may wait on DNS, which libcurl cannot always give up on without waiting
 * for it, and the decisions on policyd's main loop must never wait with
 * it.  The thread only fetches; what an answer means is judged on the main
 * loop (tg_probe_interpret() in health.c), with the policy of the moment.
 */

#ifndef TG_PROBE_H
#define TG_PROBE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ev.h>

#include "policy.h"


/* what one probe brought back, before anyone judged it */
typedef struct {
    const char     *provider;
    unsigned        status;         /* HTTP status; 0: no answer */
    const char     *error;          /* why not, when status is 0 */
    uint32_t        ms;
    const char     *body;
    size_t          len;

    bool            slots;          /* llama.cpp's /slots was asked too */
    unsigned        slots_status;
    const char     *slots_body;
    size_t          slots_len;
} tg_probe_answer;


typedef struct tg_prober  tg_prober;

/* on the main loop, for every probe that finished */
typedef void (*tg_probe_done_pt)(const tg_probe_answer *a, void *data);


/* Starts the probe thread; the answers come on main_loop. */
tg_prober *tg_prober_new(struct ev_loop *main_loop, tg_probe_done_pt done,
    void *data);

/*
 * Probes the providers of this policy that have a health URL, from now on;
 * what the thread needs is copied, so the policy may go at once.  0, or -1
 * when out of memory (then the probes go on as before).
 */
int tg_prober_configure(tg_prober *pb, const tg_policy *policy);

/*
 * A one-off GET on the same thread, for what policyd fetches besides
 * probes: an identity provider's key set and its discovery document, a
 * provider's model list.
 * Redirects are not followed; https:// URLs speak only https.
 */
typedef struct {
    const char     *url;
    const char     *if_none_match;      /* an ETag, or NULL */
    const char     *if_modified_since;  /* a Last-Modified, or NULL */
    const char     *authorization;      /* its header's value, or NULL */
    uint32_t        timeout_ms;
    size_t          max_bytes;          /* a longer body is an error */
} tg_fetch_spec;

/* what came back; the strings are NULL when the answer had none */
typedef struct {
    uint64_t        id;
    unsigned        status;             /* HTTP status; 0: no answer */
    const char     *error;              /* why not, when status is 0 */
    bool            too_large;          /* the body passed max_bytes */
    const char     *body;
    size_t          len;
    const char     *etag;
    const char     *last_modified;
    const char     *cache_control;      /* every one, joined by ", " */
    const char     *expires;
    const char     *date;
    const char     *age;
} tg_fetch_answer;

/* on the main loop, once for every fetch */
typedef void (*tg_fetch_done_pt)(const tg_fetch_answer *a, void *data);

/*
 * Starts a fetch: what the thread needs of spec is copied.  done(a, data)
 * comes on the main loop with a->id == id.  0, or -1 (out of memory).
 */
int tg_prober_fetch(tg_prober *pb, const tg_fetch_spec *spec, uint64_t id,
    tg_fetch_done_pt done, void *data);

/* Stops the thread (waiting for it) and frees everything. */
void tg_prober_free(tg_prober *pb);


#endif /* TG_PROBE_H */
