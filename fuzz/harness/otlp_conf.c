
/*
 * Copyright (C) The Tailgate authors
 *
 * otlp_conf: what policyd reads of its environment for traces
 * (policyd/src/otlp_conf.c): OTLP_ENDPOINT made a URL, OTLP_API_KEY made
 * Basic auth (a glc_ token's instance id), OTEL_RESOURCE_ATTRIBUTES and
 * OTLP_HEADERS as k=v lists.
 *
 * Input: one byte that says which (0: endpoint, 1: key, 2: resource
 * attributes, 3: headers), then the value, NUL-terminated (as getenv gives
 * it).  Checked besides the sanitizers: a URL is http:// or https://, of
 * printable ASCII, with no user@ in its authority, its path ends in
 * /v1/traces before any query, and made a URL again it stays the same; an Authorization is "Basic " and base64;
 * an instance id is printable without ':'; pairs have keys, header names
 * are tokens and header values hold no control character but tab.
 */


#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"
#include "otlp_conf.h"


static void
fuzz_endpoint(const char *in)
{
    char         url[TG_OTLP_URL_MAX], again[TG_OTLP_URL_MAX];
    const char  *why, *q, *p;
    size_t       i, plen;

    if (tg_otlp_endpoint_url(in, url, sizeof(url), &why) != 0) {
        FUZZ_CHECK(why != NULL && why[0] != '\0');
        return;
    }

    FUZZ_CHECK(strncmp(url, "http://", 7) == 0
               || strncmp(url, "https://", 8) == 0);

    for (i = 0; url[i] != '\0'; i++) {
        FUZZ_CHECK((unsigned char) url[i] > 0x20
                   && (unsigned char) url[i] < 0x7f);
    }

    q = strchr(url, '?');
    plen = q ? (size_t) (q - url) : strlen(url);
    FUZZ_CHECK(plen >= 10 && memcmp(url + plen - 10, "/v1/traces", 10) == 0);

    /* no user:password@ in the authority (the key has its own variable) */
    p = strstr(url, "://") + 3;
    FUZZ_CHECK(memchr(p, '@', strcspn(p, "/?")) == NULL);

    FUZZ_CHECK(tg_otlp_endpoint_url(url, again, sizeof(again), &why) == 0);
    FUZZ_CHECK(strcmp(url, again) == 0);
}


static void
fuzz_key(const char *in)
{
    char    auth[2 * TG_OTLP_VALUE_MAX + 64], id[128];
    bool    grafana;
    size_t  i;

    if (tg_otlp_glc_instance(in, id, sizeof(id)) == 0) {
        FUZZ_CHECK(id[0] != '\0');

        for (i = 0; id[i] != '\0'; i++) {
            FUZZ_CHECK((unsigned char) id[i] > 0x20
                       && (unsigned char) id[i] < 0x7f && id[i] != ':');
        }
    }

    if (tg_otlp_authorization(in, auth, sizeof(auth), &grafana) != 0) {
        return;
    }

    FUZZ_CHECK(strncmp(auth, "Basic ", 6) == 0);

    for (i = 6; auth[i] != '\0'; i++) {
        FUZZ_CHECK((auth[i] >= 'A' && auth[i] <= 'Z')
                   || (auth[i] >= 'a' && auth[i] <= 'z')
                   || (auth[i] >= '0' && auth[i] <= '9')
                   || auth[i] == '+' || auth[i] == '/' || auth[i] == '=');
    }

    FUZZ_CHECK((i - 6) % 4 == 0 && i > 6);
}


static void
fuzz_pairs(const char *in, bool header)
{
    long          n;
    size_t        bad, i, k;
    const char   *why;
    tg_otlp_pair  p[TG_OTLP_PAIRS_MAX];

    n = tg_otlp_pairs(in, header, p, TG_OTLP_PAIRS_MAX, &bad, &why);

    if (n < 0) {
        FUZZ_CHECK(bad >= 1 && why != NULL);
        return;
    }

    FUZZ_CHECK(n <= TG_OTLP_PAIRS_MAX);

    for (i = 0; i < (size_t) n; i++) {
        FUZZ_CHECK(p[i].key[0] != '\0');

        for (k = 0; header && p[i].value[k] != '\0'; k++) {
            FUZZ_CHECK((unsigned char) p[i].value[k] >= 0x20
                       || p[i].value[k] == '\t');
            FUZZ_CHECK(p[i].value[k] != 0x7f);
        }

        for (k = 0; header && p[i].key[k] != '\0'; k++) {
            FUZZ_CHECK((unsigned char) p[i].key[k] > 0x20
                       && (unsigned char) p[i].key[k] < 0x7f
                       && p[i].key[k] != ':');
        }
    }

    tg_otlp_pairs_free(p, (size_t) n);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char  *in;

    if (size == 0) {
        return 0;
    }

    in = malloc(size);
    if (in == NULL) {
        return 0;
    }

    memcpy(in, data + 1, size - 1);
    in[size - 1] = '\0';

    switch (data[0] & 3) {
    case 0:  fuzz_endpoint(in); break;
    case 1:  fuzz_key(in); break;
    case 2:  fuzz_pairs(in, false); break;
    default: fuzz_pairs(in, true); break;
    }

    free(in);

    return 0;
}
