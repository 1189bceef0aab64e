/*
 * Active health probes: one HTTP GET per provider that has a health URL,
 * every interval, on policyd's event loop.  libcurl does the HTTP (and the
 * TLS of https:// probes) through its multi interface, driven by libev, so
 * a slow or silent provider never holds the loop up.
 */

#ifndef TG_PROBE_H
#define TG_PROBE_H

#include <ev.h>

#include "policy.h"
#include "state.h"


typedef struct tg_prober  tg_prober;

/* a probe finished: provider by name, what it found */
typedef void (*tg_probe_done_pt)(const char *provider,
    const tg_probe_result *r, void *data);


tg_prober *tg_prober_new(struct ev_loop *loop, tg_probe_done_pt done,
    void *data);

/*
 * Probes the providers of this policy that have a health URL, from now on
 * (after a reload: the new set; probes in flight for providers that are
 * gone are dropped).  0, or -1 when out of memory.
 */
int tg_prober_configure(tg_prober *pb, const tg_policy *policy);

void tg_prober_free(tg_prober *pb);


#endif /* TG_PROBE_H */
