/*
 * Upstream servers that follow DNS (the policy's "upstream_dns"): a thread
 * of its own asks the name server for each name's A and AAAA records every
 * interval_ms, writes an upstream's file of "server ADDRESS:PORT;" lines
 * when its set of addresses changed (by rename(), never half written), and
 * then sends nginx's master SIGHUP once, so that nginx reloads with the new
 * servers and its upstream {} blocks keep their keepalive pools.  A name
 * that does not resolve, or resolves to nothing, keeps its last set.
 *
 * The decision loop never waits for DNS: only start() resolves on the
 * caller's thread, once, before policyd listens, so that nginx finds the
 * files when it starts.  Read at start; a reload keeps it as it was.
 */

#ifndef TG_DNS_WATCH_H
#define TG_DNS_WATCH_H

#include "dns_conf.h"


typedef struct tg_dns_watch  tg_dns_watch;

/* NULL when not enabled, or on a failure it logged */
tg_dns_watch *tg_dns_watch_start(const tg_dns_conf *conf);
void tg_dns_watch_stop(tg_dns_watch *w);


#endif /* TG_DNS_WATCH_H */
