/*
 * What policyd knows, for operators: every provider's state, capacity,
 * probes, outcomes and latency, every route's decisions and outcomes; as
 * JSON or as Prometheus text.  Served to the module's tailgate_status
 * handler (STATUS frames) and on the admin socket.
 */

#ifndef TG_STATUS_H
#define TG_STATUS_H

#include <stddef.h>


struct tg_server;

/* A malloc()ed body and its length in *len, or NULL when out of memory. */
char *tg_status_json(struct tg_server *srv, size_t *len);
char *tg_status_prometheus(struct tg_server *srv, size_t *len);


#endif /* TG_STATUS_H */
