/*
 * The trace exporter: spans copied by the loop into a bounded queue, sent
 * in batches over OTLP/HTTP (JSON) by a thread of its own with libcurl.
 * The loop holds the lock only to copy a REPORT's spans in; a full queue
 * drops them and counts them.  A collector that is down or slow costs the
 * decisions nothing: only spans, counted as dropped.
 */

#ifndef TG_OTLP_EXPORT_H
#define TG_OTLP_EXPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "otlp_conf.h"
#include "policy.h"
#include "proto.h"
#include "state.h"


typedef struct tg_otlp  tg_otlp;


typedef struct {
    uint64_t        spans;              /* handed to the exporter */
    uint64_t        exported;           /* the collector took them */
    uint64_t        dropped_full;       /* the queue was full */
    uint64_t        dropped_failed;     /* the collector failed or was away */
    uint64_t        exports;            /* POSTs */
    uint64_t        export_errors;      /* of those, failed */
    uint64_t        queued;             /* spans waiting now */
    long            last_status;        /* of the last POST; 0: no answer */
} tg_otlp_stats;


/*
 * The exporter the environment asks for (otlp_conf.h): 0 and *o, NULL
 * when OTLP_ENDPOINT is not set; or -1 with the errors logged.  Warnings
 * (a variable ignored) are logged and do not stop it.
 */
int tg_otlp_from_env(tg_otlp **o);

/* policyd -t: the errors and warnings printed to out: 0, or -1 on errors */
int tg_otlp_check_env(FILE *out);

/* Starts the thread with conf, which it takes (*conf is emptied, also
   when it fails): NULL when out of memory. */
tg_otlp *tg_otlp_start(tg_otlp_conf *conf);

/*
 * The spans of a REPORT frame that carries a trace, into the queue;
 * nothing for an untraced or unsampled one.  _span_end: the request's
 * span of a SPAN_END frame: 0, or -1 when the frame is malformed.
 */
void tg_otlp_report(tg_otlp *o, const tg_policy *policy, const tg_report *r,
    const uint8_t *frame, const tg_frame_hdr *h);
int tg_otlp_span_end(tg_otlp *o, const uint8_t *frame,
    const tg_frame_hdr *h);

/* Copies n spans in (JSON objects joined by ','): 0, or -1 when full. */
int tg_otlp_add(tg_otlp *o, const char *spans, size_t len, unsigned n);

void tg_otlp_stats_get(tg_otlp *o, tg_otlp_stats *st);

/* Sends what waits (briefly), stops the thread, frees o.  NULL is fine. */
void tg_otlp_stop(tg_otlp *o);


#endif /* TG_OTLP_EXPORT_H */
