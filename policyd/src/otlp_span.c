/*
 * REPORTs as OTLP spans in JSON (otlp_span.h).  OTLP/JSON writes trace and
 * span ids as hex, 64-bit integers as strings and enums as numbers.
 */

#include <stdio.h>
#include <string.h>

#include "json_out.h"
#include "otlp_span.h"
#include "tailgate_names.h"


#define TG_SPAN_KIND_SERVER   2
#define TG_SPAN_KIND_CLIENT   3
#define TG_STATUS_ERROR       2

/* what is kept back for the closing of a span when strings are long */
#define TG_SPAN_TAIL          160

/* an attribute's value at most, in bytes, as SDKs limit them */
#define TG_SPAN_VALUE_MAX     1024


typedef struct {
    const char  *name;
    const char  *path;
} tg_endpoint_path;

#define TG_ENDPOINT_PATH(id, name, path)  { name, "/v1/" path },

static const tg_endpoint_path  tg_endpoint_paths[] = {
    TG_ENDPOINTS(TG_ENDPOINT_PATH)
    { NULL, NULL }
};


static void tg_span_attempt(tg_jout *j, const tg_report *r,
    const tg_otlp_trace *t, const char *server_address);
static void tg_span_request(tg_jout *j, const tg_report *r,
    const tg_otlp_trace *t, bool after_report);
static void tg_span_head(tg_jout *j, const tg_otlp_trace *t,
    const uint8_t *span, const uint8_t *parent, int kind,
    uint64_t start_ms, uint64_t end_ms);
static void tg_span_name(tg_jout *j, const char *a, size_t alen,
    const char *b, size_t blen);
static void tg_attr_str(tg_jout *j, bool *first, const char *key,
    const char *s, size_t len);
static void tg_attr_int(tg_jout *j, bool *first, const char *key,
    uint64_t v);
static void tg_attr_bool(tg_jout *j, bool *first, const char *key, bool v);
static void tg_span_status(tg_jout *j, const tg_report *r);
static const char *tg_error_type(const tg_report *r, char *buf, size_t size);
static void tg_hex(tg_jout *j, const uint8_t *id, size_t n);
static void tg_nanos(tg_jout *j, uint64_t ms);
static const char *tg_operation(const struct tg_report_str *endpoint);


size_t
tg_otlp_report_spans(const tg_report *r, const tg_otlp_trace *t,
    const char *server_address, char *buf, size_t size, unsigned *spans)
{
    tg_jout  j;

    *spans = 0;

    /* only sampled traces; a REPORT that counts several has no one span */
    if (!t->present || !(t->flags & 0x01) || r->count != 1) {
        return 0;
    }

    tg_jout_init(&j, buf, size);

    /* the request's span gets its half, however long the attempt's is */
    tg_jout_reserve(&j, t->final ? size / 2 : 0);

    tg_span_attempt(&j, r, t, server_address);
    (*spans)++;

    if (t->final && !j.cut) {
        tg_jout_reserve(&j, 0);
        tg_jout_raw(&j, ",", 1);
        tg_span_request(&j, r, t, true);
        (*spans)++;
    }

    if (j.cut) {
        *spans = 0;
        return 0;
    }

    return j.len;
}


size_t
tg_otlp_end_span(const tg_report *r, const tg_otlp_trace *t, char *buf,
    size_t size)
{
    tg_jout  j;

    if (!t->present || !(t->flags & 0x01)) {
        return 0;
    }

    tg_jout_init(&j, buf, size);
    tg_span_request(&j, r, t, false);

    return j.cut ? 0 : j.len;
}


/* an attempt: CLIENT "chat MODEL", from its provider's start to its end */

static void
tg_span_attempt(tg_jout *j, const tg_report *r, const tg_otlp_trace *t,
    const char *server_address)
{
    bool         first;
    char         etype[16];
    size_t       kept;
    uint64_t     end, start;
    const char  *op, *e;

    end = t->start_ms + r->total_ms;
    start = (r->upstream_ms < r->total_ms) ? end - r->upstream_ms
                                           : t->start_ms;

    op = tg_operation(&r->endpoint);

    tg_span_head(j, t, t->span_id, t->parent_span, TG_SPAN_KIND_CLIENT,
                 start, end);

    tg_jout_lit(j, ",\"name\":");
    tg_span_name(j, op, strlen(op), r->provider_model.data,
                 r->provider_model.len);

    /* the attributes: strings are cut so that the span still closes */

    if (j->cut) {
        return;
    }

    kept = j->reserve;
    j->reserve = kept + TG_SPAN_TAIL;
    tg_jout_lit(j, ",\"attributes\":[");
    first = true;

    if (j->cut) {
        /* no room for even the list: the whole span does not fit */
        j->reserve = kept;
        return;
    }

    tg_attr_str(j, &first, "gen_ai.operation.name", op, strlen(op));

    if (r->provider_model.data != NULL) {
        tg_attr_str(j, &first, "gen_ai.request.model", r->provider_model.data,
                    r->provider_model.len);
    }

    if (r->response_model.data != NULL) {
        tg_attr_str(j, &first, "gen_ai.response.model",
                    r->response_model.data, r->response_model.len);
    }

    if (r->provider != NULL) {
        tg_attr_str(j, &first, "gen_ai.provider.name", r->provider,
                    strlen(r->provider));
    }

    if (r->tokens) {
        tg_attr_int(j, &first, "gen_ai.usage.input_tokens", r->prompt_tokens);
        tg_attr_int(j, &first, "gen_ai.usage.output_tokens",
                    r->completion_tokens);

        if (r->estimated) {
            tg_attr_bool(j, &first, "tailgate.tokens_estimated", true);
        }
    }

    if (server_address != NULL && server_address[0] != '\0') {
        tg_attr_str(j, &first, "server.address", server_address,
                    strlen(server_address));
    }

    if (r->http_status != 0) {
        tg_attr_int(j, &first, "http.response.status_code", r->http_status);
    }

    e = tg_error_type(r, etype, sizeof(etype));

    if (e != NULL) {
        tg_attr_str(j, &first, "error.type", e, strlen(e));
    }

    if (r->route != NULL) {
        tg_attr_str(j, &first, "tailgate.route", r->route, strlen(r->route));
    }

    tg_attr_int(j, &first, "tailgate.attempt", r->attempt ? r->attempt : 1);

    e = tg_outcome_name(r->outcome);
    tg_attr_str(j, &first, "tailgate.outcome", e, strlen(e));

    if (r->request_id.data != NULL) {
        tg_attr_str(j, &first, "tailgate.request_id", r->request_id.data,
                    r->request_id.len);
    }

    j->cut = false;
    j->reserve = kept;
    tg_jout_lit(j, "]");

    tg_span_status(j, r);
    tg_jout_lit(j, "}");
}


/* the request: SERVER "POST /v1/...", from its start to its last REPORT */

static void
tg_span_request(tg_jout *j, const tg_report *r, const tg_otlp_trace *t,
    bool after_report)
{
    bool                     first;
    char                     etype[16];
    size_t                   kept;
    const char              *e, *path;
    const tg_endpoint_path  *ep;

    tg_span_head(j, t, t->parent_span,
                 t->has_client ? t->client_span : NULL, TG_SPAN_KIND_SERVER,
                 t->start_ms, t->start_ms + r->total_ms);

    path = NULL;

    for (ep = tg_endpoint_paths; ep->name != NULL && r->endpoint.data; ep++) {
        if (strlen(ep->name) == r->endpoint.len
            && memcmp(ep->name, r->endpoint.data, r->endpoint.len) == 0)
        {
            path = ep->path;
        }
    }

    tg_jout_lit(j, ",\"name\":");
    tg_span_name(j, "POST", 4, path, path ? strlen(path) : 0);

    if (j->cut) {
        return;
    }

    kept = j->reserve;
    j->reserve = kept + TG_SPAN_TAIL;
    tg_jout_lit(j, ",\"attributes\":[");
    first = true;

    if (j->cut) {
        /* no room for even the list: the whole span does not fit */
        j->reserve = kept;
        return;
    }

    tg_attr_str(j, &first, "http.request.method", "POST", 4);

    if (path != NULL) {
        tg_attr_str(j, &first, "url.path", path, strlen(path));
    }

    if (r->http_status != 0) {
        tg_attr_int(j, &first, "http.response.status_code", r->http_status);
    }

    if (r->route != NULL) {
        tg_attr_str(j, &first, "gen_ai.request.model", r->route,
                    strlen(r->route));
        tg_attr_str(j, &first, "tailgate.route", r->route, strlen(r->route));
    }

    tg_attr_int(j, &first, "tailgate.attempts", r->attempt ? r->attempt : 1);

    if (after_report) {
        e = tg_outcome_name(r->outcome);
        tg_attr_str(j, &first, "tailgate.outcome", e, strlen(e));

        e = tg_error_type(r, etype, sizeof(etype));

        if (e != NULL) {
            tg_attr_str(j, &first, "error.type", e, strlen(e));
        }
    }

    if (r->client.data != NULL) {
        tg_attr_str(j, &first, "tailgate.client", r->client.data,
                    r->client.len);
    }

    if (r->tenant.data != NULL) {
        tg_attr_str(j, &first, "tailgate.tenant", r->tenant.data,
                    r->tenant.len);
    }

    if (r->request_id.data != NULL) {
        tg_attr_str(j, &first, "tailgate.request_id", r->request_id.data,
                    r->request_id.len);
    }

    j->cut = false;
    j->reserve = kept;
    tg_jout_lit(j, "]");

    if (after_report) {
        tg_span_status(j, r);
    } else if (r->http_status >= 500) {
        tg_jout_lit(j, ",\"status\":{\"code\":2}");
    }

    tg_jout_lit(j, "}");
}


static void
tg_span_head(tg_jout *j, const tg_otlp_trace *t, const uint8_t *span,
    const uint8_t *parent, int kind, uint64_t start_ms, uint64_t end_ms)
{
    tg_jout_lit(j, "{\"traceId\":\"");
    tg_hex(j, t->trace_id, 16);
    tg_jout_lit(j, "\",\"spanId\":\"");
    tg_hex(j, span, 8);
    tg_jout_lit(j, "\"");

    if (parent != NULL) {
        tg_jout_lit(j, ",\"parentSpanId\":\"");
        tg_hex(j, parent, 8);
        tg_jout_lit(j, "\"");
    }

    tg_jout_lit(j, ",\"kind\":");
    tg_jout_u64(j, (uint64_t) kind);
    tg_jout_lit(j, ",\"startTimeUnixNano\":");
    tg_nanos(j, start_ms);
    tg_jout_lit(j, ",\"endTimeUnixNano\":");
    tg_nanos(j, end_ms);
}


/* "A B" quoted, B cut to 128 bytes: a name is for grouping, not a record */

static void
tg_span_name(tg_jout *j, const char *a, size_t alen, const char *b,
    size_t blen)
{
    char    name[160];
    size_t  n;

    n = alen < 24 ? alen : 24;
    memcpy(name, a, n);

    if (b != NULL && blen > 0) {
        name[n++] = ' ';
        blen = blen < 128 ? blen : 128;
        memcpy(name + n, b, blen);
        n += blen;
    }

    tg_jout_str(j, name, n);
}


static void
tg_attr_str(tg_jout *j, bool *first, const char *key, const char *s,
    size_t len)
{
    size_t  save, before;

    if (j->cut) {
        return;
    }

    save = j->len;

    tg_jout_lit(j, *first ? "{\"key\":" : ",{\"key\":");
    tg_jout_cstr(j, key);
    tg_jout_lit(j, ",\"value\":{\"stringValue\":");

    if (j->cut) {
        j->len = save;
        return;
    }

    /* the value may be cut; its closing "}}" must still fit */

    if (len > TG_SPAN_VALUE_MAX) {
        len = TG_SPAN_VALUE_MAX;

        /* not in the middle of a character */
        while (len > 0 && ((unsigned char) s[len] & 0xc0) == 0x80) {
            len--;
        }
    }

    before = j->len;
    j->reserve += 2;
    tg_jout_str(j, s, len);
    j->reserve -= 2;

    if (j->len == before) {
        j->len = save;
        j->cut = true;
        return;
    }

    j->buf[j->len++] = '}';
    j->buf[j->len++] = '}';
    *first = false;
}


static void
tg_attr_int(tg_jout *j, bool *first, const char *key, uint64_t v)
{
    size_t  save = j->len;

    tg_jout_lit(j, *first ? "{\"key\":" : ",{\"key\":");
    tg_jout_cstr(j, key);
    tg_jout_lit(j, ",\"value\":{\"intValue\":\"");
    tg_jout_u64(j, v);
    tg_jout_lit(j, "\"}}");

    if (j->cut) {
        j->len = save;
        return;
    }

    *first = false;
}


static void
tg_attr_bool(tg_jout *j, bool *first, const char *key, bool v)
{
    size_t  save = j->len;

    tg_jout_lit(j, *first ? "{\"key\":" : ",{\"key\":");
    tg_jout_cstr(j, key);
    tg_jout_lit(j, v ? ",\"value\":{\"boolValue\":true}}"
                     : ",\"value\":{\"boolValue\":false}}");

    if (j->cut) {
        j->len = save;
        return;
    }

    *first = false;
}


static void
tg_span_status(tg_jout *j, const tg_report *r)
{
    const char  *name;

    if (r->outcome == TG_OUTCOME_OK) {
        return;
    }

    name = tg_outcome_name(r->outcome);

    tg_jout_lit(j, ",\"status\":{\"code\":2,\"message\":");
    tg_jout_cstr(j, name);
    tg_jout_lit(j, "}");
}


/*
 * error.type: the provider's status for its 4xx and 5xx answers, as the
 * HTTP conventions say; what happened otherwise (timeout, ...); NULL for
 * success.
 */

static const char *
tg_error_type(const tg_report *r, char *buf, size_t size)
{
    switch (r->outcome) {

    case TG_OUTCOME_OK:
        return NULL;

    case TG_OUTCOME_CLIENT_ERROR:
    case TG_OUTCOME_RATE_LIMITED:
    case TG_OUTCOME_SERVER_ERROR:
        if (r->http_status >= 400 && r->http_status <= 999) {
            snprintf(buf, size, "%u", r->http_status);
            return buf;
        }
        break;

    default:
        break;
    }

    return (r->outcome == TG_OUTCOME_UNKNOWN) ? "_OTHER"
                                              : tg_outcome_name(r->outcome);
}


/* gen_ai.operation.name: the conventions' names where they have one */

static const char *
tg_operation(const struct tg_report_str *endpoint)
{
    static const struct {
        const char  *endpoint;
        const char  *operation;
    } ops[] = {
        { "chat", "chat" },
        { "responses", "chat" },
        { "embeddings", "embeddings" },
        { "speech", "speech" },
        { "transcriptions", "transcriptions" },
    };

    size_t  i;

    for (i = 0; endpoint->data != NULL && i < sizeof(ops) / sizeof(ops[0]);
         i++)
    {
        if (strlen(ops[i].endpoint) == endpoint->len
            && memcmp(ops[i].endpoint, endpoint->data, endpoint->len) == 0)
        {
            return ops[i].operation;
        }
    }

    return "chat";
}


static void
tg_hex(tg_jout *j, const uint8_t *id, size_t n)
{
    char    hex[33];
    size_t  i;

    static const char  digits[] = "0123456789abcdef";

    for (i = 0; i < n && i < 16; i++) {
        hex[2 * i] = digits[id[i] >> 4];
        hex[2 * i + 1] = digits[id[i] & 0x0f];
    }

    tg_jout_raw(j, hex, 2 * i);
}


static void
tg_nanos(tg_jout *j, uint64_t ms)
{
    char  num[32];
    int   n;

    /* a string, as proto3 JSON writes 64-bit integers */
    n = snprintf(num, sizeof(num), "\"%llu000000\"", (unsigned long long) ms);
    tg_jout_raw(j, num, (size_t) n);
}


size_t
tg_otlp_payload_head(const tg_otlp_conf *conf, const char *version,
    char *buf, size_t size)
{
    bool     first;
    size_t   i;
    tg_jout  j;

    tg_jout_init(&j, buf, size);

    tg_jout_lit(&j, "{\"resourceSpans\":[{\"resource\":{\"attributes\":[");
    first = true;

    tg_attr_str(&j, &first, "service.name", conf->service_name,
                strlen(conf->service_name));
    tg_attr_str(&j, &first, "service.version", version, strlen(version));
    tg_attr_str(&j, &first, "telemetry.sdk.name", "tailgate", 8);

    for (i = 0; i < conf->nresource; i++) {
        tg_attr_str(&j, &first, conf->resource[i].key,
                    conf->resource[i].value, strlen(conf->resource[i].value));
    }

    tg_jout_lit(&j, "]},\"scopeSpans\":[{\"scope\":{\"name\":"
                    "\"tailgate.policyd\",\"version\":");
    tg_jout_cstr(&j, version);
    tg_jout_lit(&j, "},\"schemaUrl\":\"" TG_OTLP_SCHEMA "\",\"spans\":[");

    return j.cut ? 0 : j.len;
}
