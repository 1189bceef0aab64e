/*
 * The OTLP exporter's settings from the environment (otlp_conf.h).  Error
 * messages name the variable and what was expected, never a value: keys
 * and header values are secrets.
 */

#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>

#include "otlp_conf.h"


#define TG_OTLP_SERVICE_DEFAULT  "tailgate"


static const char *tg_otlp_env(const char *(*get)(const char *),
    const char *a, const char *b, const char **which);
static void tg_otlp_number(const char *(*get)(const char *),
    const char *name, unsigned min, unsigned max, unsigned *out,
    tg_errors *warns);
static long tg_otlp_read_pairs(const char *(*get)(const char *),
    const char *a, const char *b, bool header, tg_otlp_pair *pairs,
    tg_errors *warns);
static size_t tg_trim(const char **s, size_t n);
static int tg_hex(int c);
static int tg_percent_decode(const char *s, size_t n, char **out,
    size_t *len);
static size_t tg_base64_decode(const char *in, size_t n, unsigned char *out,
    size_t size);


int
tg_otlp_conf_read(tg_otlp_conf *c, const char *(*get)(const char *),
    tg_errors *errs, tg_errors *warns)
{
    char          url[TG_OTLP_URL_MAX], auth[TG_OTLP_VALUE_MAX];
    bool          grafana;
    long          n;
    size_t        i, before;
    const char   *v, *why, *which;
    tg_otlp_pair  pairs[TG_OTLP_PAIRS_MAX];

    memset(c, 0, sizeof(*c));
    c->queue_spans = TG_OTLP_QUEUE_DEFAULT;
    c->batch_spans = TG_OTLP_BATCH_DEFAULT;
    c->delay_ms = TG_OTLP_DELAY_DEFAULT;
    c->timeout_ms = TG_OTLP_TIMEOUT_DEFAULT;

    v = get("OTLP_ENDPOINT");

    if (v == NULL || v[0] == '\0') {
        return 0;
    }

    before = errs->count;

    if (tg_otlp_endpoint_url(v, url, sizeof(url), &why) != 0) {
        tg_errors_add(errs, "OTLP_ENDPOINT", "%s", why);
    } else {
        c->url = strdup(url);
    }

    v = get("OTLP_API_KEY");

    if (v != NULL && v[0] != '\0') {
        if (tg_otlp_authorization(v, auth, sizeof(auth), &grafana) != 0) {
            tg_errors_add(errs, "OTLP_API_KEY", "expected a key of printable "
                          "characters, at most %d bytes",
                          TG_OTLP_VALUE_MAX / 2);
        } else {
            c->authorization = strdup(auth);
        }
    }

    /* the service's name: its own variable first, as OpenTelemetry says */

    v = tg_otlp_env(get, "OTEL_SERVICE_NAME", "OTLP_SERVICE_NAME", &which);

    if (v != NULL) {
        c->service_name = strdup(v);
    }

    n = tg_otlp_read_pairs(get, "OTEL_RESOURCE_ATTRIBUTES",
                           "OTLP_RESOURCE_ATTRIBUTES", false, pairs, warns);

    if (n > 0) {
        c->resource = calloc((size_t) n, sizeof(tg_otlp_pair));

        for (i = 0; i < (size_t) n && c->resource != NULL; i++) {
            if (strcmp(pairs[i].key, "service.name") == 0) {
                if (c->service_name == NULL) {
                    c->service_name = pairs[i].value;
                    pairs[i].value = NULL;
                }
                free(pairs[i].key);
                free(pairs[i].value);
                continue;
            }

            c->resource[c->nresource++] = pairs[i];
        }

        if (c->resource == NULL) {
            tg_otlp_pairs_free(pairs, (size_t) n);
        }
    }

    if (c->service_name == NULL) {
        c->service_name = strdup(TG_OTLP_SERVICE_DEFAULT);
    }

    n = tg_otlp_read_pairs(get, "OTLP_HEADERS", NULL, true, pairs, warns);

    if (n > 0) {
        c->headers = malloc((size_t) n * sizeof(tg_otlp_pair));

        if (c->headers == NULL) {
            tg_otlp_pairs_free(pairs, (size_t) n);
        } else {
            memcpy(c->headers, pairs, (size_t) n * sizeof(tg_otlp_pair));
            c->nheaders = (size_t) n;
        }
    }

    tg_otlp_number(get, "OTEL_BSP_MAX_QUEUE_SIZE", 1, 1000000,
                   &c->queue_spans, warns);
    tg_otlp_number(get, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 1, 100000,
                   &c->batch_spans, warns);
    tg_otlp_number(get, "OTEL_BSP_SCHEDULE_DELAY", 1, 600000,
                   &c->delay_ms, warns);
    tg_otlp_number(get, "OTEL_EXPORTER_OTLP_TIMEOUT", 1, 600000,
                   &c->timeout_ms, warns);

    if (c->batch_spans > c->queue_spans) {
        c->batch_spans = c->queue_spans;
    }

    if (errs->count > before) {
        tg_otlp_conf_free(c);
        return -1;
    }

    if (c->url == NULL || c->service_name == NULL
        || (c->resource == NULL && c->nresource))
    {
        tg_errors_add(errs, "OTLP_ENDPOINT", "out of memory");
        tg_otlp_conf_free(c);
        return -1;
    }

    c->on = true;

    return 0;
}


void
tg_otlp_conf_free(tg_otlp_conf *c)
{
    free(c->url);
    free(c->authorization);
    free(c->service_name);
    tg_otlp_pairs_free(c->resource, c->nresource);
    free(c->resource);
    tg_otlp_pairs_free(c->headers, c->nheaders);
    free(c->headers);
    memset(c, 0, sizeof(*c));
}


/* the first of two variables that is set and not empty */

static const char *
tg_otlp_env(const char *(*get)(const char *), const char *a, const char *b,
    const char **which)
{
    const char  *v;

    v = get(a);
    *which = a;

    if ((v == NULL || v[0] == '\0') && b != NULL) {
        v = get(b);
        *which = b;
    }

    return (v != NULL && v[0] != '\0') ? v : NULL;
}


static void
tg_otlp_number(const char *(*get)(const char *), const char *name,
    unsigned min, unsigned max, unsigned *out, tg_errors *warns)
{
    char          *end;
    const char    *v;
    unsigned long  n;

    v = get(name);

    if (v == NULL || v[0] == '\0') {
        return;
    }

    errno = 0;
    n = strtoul(v, &end, 10);

    if (errno != 0 || *end != '\0' || !isdigit((unsigned char) v[0])
        || n < min || n > max)
    {
        tg_errors_add(warns, name, "expected a whole number from %u to %u; "
                      "%u is used", min, max, *out);
        return;
    }

    *out = (unsigned) n;
}


static long
tg_otlp_read_pairs(const char *(*get)(const char *), const char *a,
    const char *b, bool header, tg_otlp_pair *pairs, tg_errors *warns)
{
    long         n;
    size_t       bad;
    const char  *v, *which, *why;

    v = tg_otlp_env(get, a, b, &which);

    if (v == NULL) {
        return 0;
    }

    n = tg_otlp_pairs(v, header, pairs, TG_OTLP_PAIRS_MAX, &bad, &why);

    if (n < 0) {
        tg_errors_add(warns, which, "entry %zu: %s; the variable is ignored",
                      bad, why);
    }

    return n;
}


int
tg_otlp_endpoint_url(const char *in, char *out, size_t size,
    const char **why)
{
    int          n;
    bool         tls, bare;
    size_t       len, hlen, plen, i;
    const char  *p, *end, *host, *path, *query, *sep, *colon;
    unsigned     port;

    static const char  want[] = "expected host:port or an http:// or "
                                "https:// URL";

    *why = want;

    len = strlen(in);
    p = in;
    len = tg_trim(&p, len);
    end = p + len;

    if (len == 0 || len > TG_OTLP_URL_TEXT_MAX) {
        if (len != 0) {
            *why = "expected a URL of at most 2000 bytes";
        }
        return -1;
    }

    for (i = 0; i < len; i++) {
        if ((unsigned char) p[i] <= 0x20 || (unsigned char) p[i] >= 0x7f) {
            *why = "expected a URL without spaces, control characters or "
                   "bytes beyond ASCII";
            return -1;
        }
    }

    if (memchr(p, '#', len) != NULL) {
        *why = "expected a URL without a #fragment";
        return -1;
    }

    sep = strstr(p, "://");
    bare = (sep == NULL);

    if (bare) {
        tls = false;
        host = p;

    } else if (sep - p == 4 && strncasecmp(p, "http", 4) == 0) {
        tls = false;
        host = sep + 3;

    } else if (sep - p == 5 && strncasecmp(p, "https", 5) == 0) {
        tls = true;
        host = sep + 3;

    } else {
        *why = "expected the scheme http:// or https://";
        return -1;
    }

    /* the authority: host, [v6] host, :port; no user:password@ */

    for (path = host; path < end && *path != '/' && *path != '?'
                      && *path != '#'; path++)
    {
        if (*path == '@') {
            *why = "expected no user:password@ in the URL (the key goes in "
                   "OTLP_API_KEY)";
            return -1;
        }
    }

    hlen = (size_t) (path - host);
    port = 0;

    if (hlen > 0 && host[0] == '[') {
        colon = memchr(host, ']', hlen);

        if (colon == NULL || colon == host + 1) {
            *why = "expected an IPv6 address in [ ]";
            return -1;
        }

        for (i = 1; host + i < colon; i++) {
            if (!isxdigit((unsigned char) host[i]) && host[i] != ':'
                && host[i] != '.')
            {
                *why = "expected an IPv6 address in [ ]";
                return -1;
            }
        }

        colon++;

        if (colon < path && *colon != ':') {
            *why = "expected :port after the IPv6 address";
            return -1;
        }

    } else {
        colon = memchr(host, ':', hlen);

        if (colon == host || hlen == 0) {
            *why = "expected a host name";
            return -1;
        }

        for (i = 0; host + i < (colon ? colon : path); i++) {
            if (!isalnum((unsigned char) host[i]) && host[i] != '.'
                && host[i] != '-' && host[i] != '_')
            {
                *why = "expected a host name of letters, digits, '.', '-' "
                       "and '_'";
                return -1;
            }
        }

        if (colon == NULL) {
            colon = path;
        }
    }

    if (colon < path) {
        /* ":port": 1 to 65535 */
        const char  *d = colon + 1;

        if (d == path || path - d > 5) {
            *why = "expected a port from 1 to 65535";
            return -1;
        }

        for ( ; d < path; d++) {
            if (!isdigit((unsigned char) *d)) {
                *why = "expected a port from 1 to 65535";
                return -1;
            }
            port = port * 10 + (unsigned) (*d - '0');
        }

        if (port == 0 || port > 65535) {
            *why = "expected a port from 1 to 65535";
            return -1;
        }
    }

    /* host:port alone is plain http, unless it is 443 */

    if (bare) {
        tls = (port == 443);
    }

    query = memchr(path, '?', (size_t) (end - path));

    if (query == NULL) {
        query = end;
    }

    plen = (size_t) (query - path);

    while (plen > 0 && path[plen - 1] == '/') {
        plen--;
    }

    n = snprintf(out, size, "%s://%.*s%.*s%s%.*s", tls ? "https" : "http",
                 (int) hlen, host, (int) plen, path,
                 (plen >= 10 && memcmp(path + plen - 10, "/v1/traces", 10)
                  == 0) ? "" : "/v1/traces",
                 (int) (end - query), query);

    /* the URL made is held to the same length, so it reads back as itself */

    if (n < 0 || (size_t) n >= size || n > TG_OTLP_URL_TEXT_MAX) {
        *why = "expected a URL of at most 2000 bytes, with its scheme and "
               "/v1/traces";
        return -1;
    }

    return 0;
}


int
tg_otlp_authorization(const char *key, char *out, size_t size, bool *grafana)
{
    char    id[128], *plain;
    size_t  klen, ilen, n, i;

    *grafana = false;
    klen = strlen(key);

    if (klen == 0 || klen > TG_OTLP_VALUE_MAX / 2) {
        return -1;
    }

    for (i = 0; i < klen; i++) {
        if ((unsigned char) key[i] < 0x21 || (unsigned char) key[i] > 0x7e) {
            return -1;
        }
    }

    ilen = 0;

    if (tg_otlp_glc_instance(key, id, sizeof(id)) == 0) {
        *grafana = true;
        ilen = strlen(id);
    }

    /* INSTANCE:TOKEN for Grafana Cloud, KEY: for any other */

    plain = malloc(klen + ilen + 2);
    if (plain == NULL) {
        return -1;
    }

    if (*grafana) {
        n = (size_t) sprintf(plain, "%s:%s", id, key);
    } else {
        n = (size_t) sprintf(plain, "%s:", key);
    }

    if (size < sizeof("Basic ")) {
        free(plain);
        return -1;
    }

    memcpy(out, "Basic ", 6);

    n = tg_base64(plain, n, out + 6, size - 6);

    /* the key is a secret: no copy of it is left behind */
    memset(plain, 0, klen + ilen + 2);
    free(plain);

    return n ? 0 : -1;
}


int
tg_otlp_glc_instance(const char *token, char *out, size_t size)
{
    int            rc;
    size_t         n, i, len;
    cJSON         *root;
    const cJSON   *o;
    unsigned char *json;

    if (strncmp(token, "glc_", 4) != 0) {
        return -1;
    }

    token += 4;
    len = strlen(token);

    json = malloc(len + 1);
    if (json == NULL) {
        return -1;
    }

    n = tg_base64_decode(token, len, json, len);

    rc = -1;
    root = n ? cJSON_ParseWithLength((const char *) json, n) : NULL;
    o = cJSON_IsObject(root) ? cJSON_GetObjectItemCaseSensitive(root, "o")
                             : NULL;

    if (cJSON_IsString(o) && o->valuestring != NULL) {
        n = strlen(o->valuestring);

        if (n > 0 && n < size) {
            memcpy(out, o->valuestring, n + 1);
            rc = 0;
        }

    } else if (cJSON_IsNumber(o) && o->valuedouble >= 0
               && o->valuedouble < 1e15
               && o->valuedouble == (double) (uint64_t) o->valuedouble)
    {
        n = (size_t) snprintf(out, size, "%llu",
                              (unsigned long long) o->valuedouble);
        rc = (n < size) ? 0 : -1;
    }

    /* an id a Basic user name can be: printable, no ':' */

    for (i = 0; rc == 0 && out[i] != '\0'; i++) {
        if ((unsigned char) out[i] < 0x21 || (unsigned char) out[i] > 0x7e
            || out[i] == ':')
        {
            rc = -1;
        }
    }

    cJSON_Delete(root);
    memset(json, 0, len + 1);
    free(json);

    return rc;
}


long
tg_otlp_pairs(const char *in, bool header, tg_otlp_pair *pairs, size_t max,
    size_t *bad, const char **why)
{
    char        *key, *value;
    size_t       n, entry, klen, vlen, dklen, dvlen, i;
    const char  *p, *comma, *eq, *k, *v;

    n = 0;
    entry = 0;
    p = in;

    for ( ;; ) {
        comma = strchr(p, ',');
        klen = comma ? (size_t) (comma - p) : strlen(p);
        entry++;

        k = p;
        klen = tg_trim(&k, klen);
        p = comma ? comma + 1 : NULL;

        if (klen == 0) {
            /* "a=b,,c=d" and a last comma: nothing there */
            if (p == NULL) {
                break;
            }
            continue;
        }

        *bad = entry;

        eq = memchr(k, '=', klen);

        if (eq == NULL) {
            *why = "expected key=value";
            goto failed;
        }

        v = eq + 1;
        vlen = tg_trim(&v, (size_t) (k + klen - v));
        klen = tg_trim(&k, (size_t) (eq - k));

        if (klen == 0) {
            *why = "expected a key before '='";
            goto failed;
        }

        if (n == max) {
            *why = "expected at most 64 entries";
            goto failed;
        }

        if (klen > TG_OTLP_VALUE_MAX || vlen > TG_OTLP_VALUE_MAX) {
            *why = "expected keys and values of at most 4096 bytes";
            goto failed;
        }

        if (tg_percent_decode(k, klen, &key, &dklen) != 0) {
            *why = "expected %XX escapes of two hex digits in the key";
            goto failed;
        }

        if (tg_percent_decode(v, vlen, &value, &dvlen) != 0) {
            free(key);
            *why = "expected %XX escapes of two hex digits in the value";
            goto failed;
        }

        if (header) {
            for (i = 0; key[i] != '\0'; i++) {
                if (!isalnum((unsigned char) key[i])
                    && strchr("!#$%&'*+-.^_`|~", key[i]) == NULL)
                {
                    break;
                }
            }

            if (i != dklen || dklen == 0) {
                *why = "expected a header name of letters, digits and "
                       "!#$%&'*+-.^_`|~";
                free(key);
                free(value);
                goto failed;
            }

            for (i = 0; value[i] != '\0'; i++) {
                if (((unsigned char) value[i] < 0x20 && value[i] != '\t')
                    || value[i] == 0x7f)
                {
                    break;
                }
            }

            /* NUL, CR, LF or another control character: a forged header */
            if (i != dvlen) {
                *why = "expected a header value without control characters";
                free(key);
                free(value);
                goto failed;
            }

            if (strcasecmp(key, "content-type") == 0
                || strcasecmp(key, "content-length") == 0
                || strcasecmp(key, "transfer-encoding") == 0
                || strcasecmp(key, "host") == 0)
            {
                *why = "expected a header other than Content-Type, "
                       "Content-Length, Transfer-Encoding and Host";
                free(key);
                free(value);
                goto failed;
            }

        } else if (strlen(key) != dklen || strlen(value) != dvlen) {
            *why = "expected keys and values without NUL";
            free(key);
            free(value);
            goto failed;
        }

        pairs[n].key = key;
        pairs[n].value = value;
        n++;

        if (p == NULL) {
            break;
        }
    }

    return (long) n;

failed:

    tg_otlp_pairs_free(pairs, n);

    return -1;
}


void
tg_otlp_pairs_free(tg_otlp_pair *pairs, size_t n)
{
    size_t  i;

    for (i = 0; pairs != NULL && i < n; i++) {
        free(pairs[i].key);
        free(pairs[i].value);
    }
}


size_t
tg_base64(const void *in, size_t n, char *out, size_t size)
{
    size_t               i, o;
    uint32_t             v;
    const unsigned char *s = in;

    static const char  tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                               "abcdefghijklmnopqrstuvwxyz0123456789+/";

    if (size <= (n + 2) / 3 * 4) {
        return 0;
    }

    for (i = 0, o = 0; i + 2 < n; i += 3) {
        v = (uint32_t) s[i] << 16 | (uint32_t) s[i + 1] << 8 | s[i + 2];
        out[o++] = tab[v >> 18];
        out[o++] = tab[(v >> 12) & 63];
        out[o++] = tab[(v >> 6) & 63];
        out[o++] = tab[v & 63];
    }

    if (i < n) {
        v = (uint32_t) s[i] << 16 | (i + 1 < n ? (uint32_t) s[i + 1] << 8 : 0);
        out[o++] = tab[v >> 18];
        out[o++] = tab[(v >> 12) & 63];
        out[o++] = (i + 1 < n) ? tab[(v >> 6) & 63] : '=';
        out[o++] = '=';
    }

    out[o] = '\0';

    return o;
}


/* either alphabet, padding optional: the bytes, or 0 when it is not base64 */

static size_t
tg_base64_decode(const char *in, size_t n, unsigned char *out, size_t size)
{
    int       d;
    size_t    i, o, bits;
    uint32_t  acc;

    while (n > 0 && in[n - 1] == '=') {
        n--;
    }

    acc = 0;
    bits = 0;
    o = 0;

    for (i = 0; i < n; i++) {
        unsigned char  c = (unsigned char) in[i];

        if (c >= 'A' && c <= 'Z') {
            d = c - 'A';
        } else if (c >= 'a' && c <= 'z') {
            d = c - 'a' + 26;
        } else if (c >= '0' && c <= '9') {
            d = c - '0' + 52;
        } else if (c == '+' || c == '-') {
            d = 62;
        } else if (c == '/' || c == '_') {
            d = 63;
        } else {
            return 0;
        }

        acc = (acc << 6) | (uint32_t) d;
        bits += 6;

        if (bits >= 8) {
            bits -= 8;

            if (o == size) {
                return 0;
            }

            out[o++] = (unsigned char) (acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }

    /* a lone sixth of a byte is no base64 */
    return (bits >= 6) ? 0 : o;
}


/* s[0..n) without the spaces and tabs around it; *s moved on */

static size_t
tg_trim(const char **s, size_t n)
{
    while (n > 0 && (**s == ' ' || **s == '\t')) {
        (*s)++;
        n--;
    }

    while (n > 0 && ((*s)[n - 1] == ' ' || (*s)[n - 1] == '\t')) {
        n--;
    }

    return n;
}


static int
tg_hex(int c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }

    c = tolower(c);

    return (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
}


/* %XX decoded into a malloc'd string; -1 for a bad escape or no memory */

static int
tg_percent_decode(const char *s, size_t n, char **out, size_t *len)
{
    int     hi, lo;
    char   *d;
    size_t  i, o;

    d = malloc(n + 1);
    if (d == NULL) {
        return -1;
    }

    for (i = 0, o = 0; i < n; i++) {
        if (s[i] != '%') {
            d[o++] = s[i];
            continue;
        }

        hi = (i + 2 < n) ? tg_hex(s[i + 1]) : -1;
        lo = (i + 2 < n) ? tg_hex(s[i + 2]) : -1;

        if (hi < 0 || lo < 0) {
            free(d);
            return -1;
        }

        d[o++] = (char) (hi << 4 | lo);
        i += 2;
    }

    d[o] = '\0';
    *out = d;
    *len = o;

    return 0;
}
