/*
 * Where and how policyd sends its traces, from the environment (the Go
 * gateway's variables, docs/operations.md):
 *
 *   OTLP_ENDPOINT        host:port or an http(s) URL; /v1/traces appended
 *                        when the path does not end in it
 *   OTLP_API_KEY         Basic auth: a Grafana Cloud glc_ token as
 *                        INSTANCE:TOKEN (the instance id read from the
 *                        token), any other key as KEY: (no password)
 *   OTEL_SERVICE_NAME    or OTLP_SERVICE_NAME: service.name (tailgate)
 *   OTEL_RESOURCE_ATTRIBUTES  or OTLP_RESOURCE_ATTRIBUTES: k=v,k=v
 *   OTLP_HEADERS         Name=Value,Name=Value, sent with every export
 *   OTEL_BSP_MAX_QUEUE_SIZE, OTEL_BSP_MAX_EXPORT_BATCH_SIZE,
 *   OTEL_BSP_SCHEDULE_DELAY, OTEL_EXPORTER_OTLP_TIMEOUT: the batching
 *
 * Pure functions: the unit tests and the fuzzer call them directly.
 */

#ifndef TG_OTLP_CONF_H
#define TG_OTLP_CONF_H

#include <stdbool.h>
#include <stddef.h>

#include "errors.h"


#define TG_OTLP_URL_MAX         2048
#define TG_OTLP_URL_TEXT_MAX    2000    /* as given, and as made */
#define TG_OTLP_VALUE_MAX       4096
#define TG_OTLP_PAIRS_MAX       64

#define TG_OTLP_QUEUE_DEFAULT   2048        /* spans waiting, at most */
#define TG_OTLP_BATCH_DEFAULT   512         /* spans in one export */
#define TG_OTLP_DELAY_DEFAULT   1000        /* ms between exports */
#define TG_OTLP_TIMEOUT_DEFAULT 10000       /* ms an export may take */


typedef struct {
    char                *key;
    char                *value;
} tg_otlp_pair;


typedef struct {
    bool                 on;                /* OTLP_ENDPOINT was set */
    char                *url;               /* .../v1/traces */
    char                *authorization;     /* "Basic ...", or NULL */
    char                *service_name;
    tg_otlp_pair        *resource;          /* service.name not among them */
    size_t               nresource;
    tg_otlp_pair        *headers;           /* validated names and values */
    size_t               nheaders;
    unsigned             queue_spans;
    unsigned             batch_spans;
    unsigned             delay_ms;
    unsigned             timeout_ms;
} tg_otlp_conf;


/*
 * Reads the variables through get (getenv, or a test's): 0, or -1 with
 * the errors in errs, each naming its variable and what was expected.
 * Entries of OTEL_RESOURCE_ATTRIBUTES and OTLP_HEADERS that do not parse
 * make the whole variable ignored, as OpenTelemetry's SDKs do: warnings
 * (errs "path" set to the variable, c still good) are in warns.
 */
int tg_otlp_conf_read(tg_otlp_conf *c, const char *(*get)(const char *),
    tg_errors *errs, tg_errors *warns);

void tg_otlp_conf_free(tg_otlp_conf *c);


/* the pure parts, one by one */

/*
 * The export URL of an OTLP_ENDPOINT value into out: 0, or -1 with what
 * was expected in why.  "host:port" is http, or https for port 443.
 */
int tg_otlp_endpoint_url(const char *in, char *out, size_t size,
    const char **why);

/*
 * The Authorization value for OTLP_API_KEY into out ("Basic ..."): 0, or
 * -1 when it does not fit or holds control characters.  *grafana is set
 * when the key was a glc_ token whose instance id was found.
 */
int tg_otlp_authorization(const char *key, char *out, size_t size,
    bool *grafana);

/*
 * The instance id of a Grafana Cloud glc_ token: the "o" member of the
 * JSON the rest of the token encodes in base64 (either alphabet, padding
 * optional).  0, or -1 when it is no such token.
 */
int tg_otlp_glc_instance(const char *token, char *out, size_t size);

/*
 * "k=v,k=v" into at most max pairs (malloc'd; percent-escapes in keys and
 * values decoded, spaces around each trimmed): their count, or -1 with
 * *bad the 1-based entry that did not parse and why.  header: names must
 * be HTTP tokens and values free of control characters.
 */
long tg_otlp_pairs(const char *in, bool header, tg_otlp_pair *pairs,
    size_t max, size_t *bad, const char **why);

void tg_otlp_pairs_free(tg_otlp_pair *pairs, size_t n);

/* base64 of in[0..n) into out, NUL-terminated: its length, or 0. */
size_t tg_base64(const void *in, size_t n, char *out, size_t size);


#endif /* TG_OTLP_CONF_H */
