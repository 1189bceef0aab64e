/*
 * Spans from REPORTs, as OTLP/HTTP JSON (docs/operations.md, "Traces").
 *
 * Every attempt of a traced request is a CLIENT span "chat MODEL" (its
 * gen_ai.* attributes: OpenTelemetry's GenAI semantic conventions 1.37,
 * where gen_ai.provider.name replaced gen_ai.system), child of the
 * request's SERVER span "POST /v1/...", which ends with the REPORT that
 * says no attempt follows (or SPAN_END).  The request's span is the
 * child of the client's own when the client sent a traceparent.
 *
 * Pure functions: the loop only formats and copies (otlp_export.c sends).
 */

#ifndef TG_OTLP_SPAN_H
#define TG_OTLP_SPAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "otlp_conf.h"
#include "proto.h"
#include "state.h"


#define TG_OTLP_SCHEMA      "https://opentelemetry.io/schemas/1.37.0"

/* the spans of one REPORT at most (longer strings are cut) */
#define TG_OTLP_SPANS_MAX   8192


/* what a REPORT or SPAN_END says of its trace */
typedef struct {
    bool            present;            /* a good traceparent came */
    uint8_t         trace_id[16];
    uint8_t         span_id[8];         /* the attempt's */
    uint8_t         flags;              /* 01: sampled */
    bool            has_parent;
    uint8_t         parent_span[8];     /* the request's */
    bool            has_client;
    uint8_t         client_span[8];     /* the client's, the request's parent */
    uint64_t        start_ms;           /* the request's, Unix ms; 0: none */
    bool            final;
} tg_otlp_trace;


/*
 * A W3C traceparent: version 00 exactly "00-" 32 hex "-" 16 hex "-" 2 hex;
 * a later version may have more after another '-'; ff, all-zero ids and
 * upper-case hex are refused.  0, or -1.
 */
int tg_otlp_traceparent(const char *s, size_t len, uint8_t trace_id[16],
    uint8_t span_id[8], uint8_t *flags);

/* 16 lower-case hex digits into 8 bytes, not all zero: 0, or -1. */
int tg_otlp_span_id(const char *s, size_t len, uint8_t id[8]);

/*
 * The trace fields of a REPORT or SPAN_END frame into t (present false
 * when it has no good traceparent): 0, or -1 when a field is malformed.
 */
int tg_otlp_trace_read(tg_otlp_trace *t, const uint8_t *frame,
    const tg_frame_hdr *h);

/*
 * The spans of one REPORT as JSON objects separated by ',' into buf: the
 * attempt's, and the request's when t->final.  server_address: the
 * provider's host, or NULL.  Returns the length, 0 when there is nothing
 * to export (not sampled, no trace, a counted REPORT) or it did not fit.
 * *spans is how many.
 */
size_t tg_otlp_report_spans(const tg_report *r, const tg_otlp_trace *t,
    const char *server_address, char *buf, size_t size, unsigned *spans);

/* SPAN_END: the request's span alone. */
size_t tg_otlp_end_span(const tg_report *r, const tg_otlp_trace *t,
    char *buf, size_t size);

/*
 * The start of an export's body up to the first span, and its end, for
 * conf: {"resourceSpans":[{"resource":{...},"scopeSpans":[{..."spans":[
 * and ]}]}]}.  The start's length, 0 when it did not fit.
 */
size_t tg_otlp_payload_head(const tg_otlp_conf *conf, const char *version,
    char *buf, size_t size);

#define TG_OTLP_PAYLOAD_TAIL  "]}]}]}"


#endif /* TG_OTLP_SPAN_H */
