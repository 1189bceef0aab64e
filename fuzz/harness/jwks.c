
/*
 * Copyright (C) The Tailgate authors
 *
 * jwks: what an identity provider's server sends policyd - a key set read
 * by tg_jwks_parse() (proto/tailgate_jwks.c, which every nginx worker uses
 * on the file policyd writes), a discovery document
 * (tg_discovery_jwks_uri()) and the cache headers of the answer
 * (tg_http_freshness_ms(), jwks_cache.c).
 *
 * Input: one byte that says which (by its value modulo 3: a key set, a
 * discovery document, cache headers), then the text, in a buffer of
 * exactly its size.  Checked besides the sanitizers: every key of a set
 * read is usable as the header promises (its sizes, its kid, a built key)
 * and no two share a kid; the text policyd would write reads back to the
 * same keys, and writes the same text again; a jwks_uri found passes the
 * URL check; a freshness is -1 or a number of milliseconds not below 0.
 */


#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"
#include "jwks_cache.h"
#include "tailgate_jwks.h"


static void
fuzz_jwks_keys(const tg_jwks *set)
{
    size_t         i, j, len;
    const tg_jwk  *k;

    FUZZ_CHECK(set->nkeys > 0 && set->nkeys <= TG_JWKS_KEYS_MAX);

    for (i = 0; i < set->nkeys; i++) {
        k = &set->keys[i];

        FUZZ_CHECK(k->pkey != NULL && k->alg != NULL);

        len = strlen(k->kid);
        FUZZ_CHECK(k->has_kid ? len > 0 && len <= TG_JWKS_KID_MAX : len == 0);

        for (j = 0; j < len; j++) {
            FUZZ_CHECK(k->kid[j] > ' ' && k->kid[j] < 0x7f);
        }

        if (k->kty == TG_JWK_RSA) {
            FUZZ_CHECK(k->n.len >= TG_JWKS_RSA_MIN_BYTES
                       && k->n.len <= TG_JWKS_RSA_MAX_BYTES);
            FUZZ_CHECK(k->e.len >= 1 && k->e.len <= TG_JWKS_E_MAX_BYTES);
            FUZZ_CHECK(k->e.data[k->e.len - 1] & 1);
            FUZZ_CHECK(k->alg[0] == 'R' && k->crv == NULL);

        } else {
            FUZZ_CHECK(k->kty == TG_JWK_EC && k->crv != NULL);
            FUZZ_CHECK(k->x.len == k->y.len && k->x.len == (size_t)
                       (k->bits + 7) / 8);
            FUZZ_CHECK(k->alg[0] == 'E');
        }

        for (j = i + 1; j < set->nkeys; j++) {
            FUZZ_CHECK(k->has_kid != set->keys[j].has_kid
                       || strcmp(k->kid, set->keys[j].kid) != 0);
        }

        FUZZ_CHECK(tg_jwks_find(set, k->has_kid ? k->kid : NULL,
                                strlen(k->kid)) == k);
    }
}


static void
fuzz_jwks(const char *p, size_t len)
{
    char     err[TG_JWKS_WHY_MAX], *text, *again;
    size_t   i, tlen, alen;
    tg_jwks  set, back;

    if (tg_jwks_parse(p, len, &set, err, sizeof(err)) != 0) {
        FUZZ_CHECK(err[0] != '\0');
        return;
    }

    fuzz_jwks_keys(&set);

    /* what policyd writes is what the workers read */

    text = tg_jwks_text(&set, &tlen);
    FUZZ_CHECK(text != NULL);
    FUZZ_CHECK(tg_jwks_parse(text, tlen, &back, err, sizeof(err)) == 0);
    FUZZ_CHECK(back.nkeys == set.nkeys && back.skipped == 0);

    for (i = 0; i < set.nkeys; i++) {
        FUZZ_CHECK(strcmp(back.keys[i].kid, set.keys[i].kid) == 0);
        FUZZ_CHECK(strcmp(back.keys[i].alg, set.keys[i].alg) == 0);
        FUZZ_CHECK(back.keys[i].n.len == set.keys[i].n.len
                   && back.keys[i].x.len == set.keys[i].x.len);
        FUZZ_CHECK(set.keys[i].n.len == 0
                   || memcmp(back.keys[i].n.data, set.keys[i].n.data,
                             set.keys[i].n.len) == 0);
    }

    again = tg_jwks_text(&back, &alen);
    FUZZ_CHECK(again != NULL && alen == tlen
               && memcmp(again, text, tlen) == 0);

    free(again);
    free(text);
    tg_jwks_free(&back);
    tg_jwks_free(&set);
}


static void
fuzz_discovery(const char *p, size_t len)
{
    char  why[256], *uri;

    if (tg_discovery_jwks_uri(p, len, "https://idp.test", false, &uri, why,
                              sizeof(why)) != 0)
    {
        FUZZ_CHECK(uri == NULL && why[0] != '\0');
        return;
    }

    FUZZ_CHECK(tg_jwks_url_check(uri, false, why, sizeof(why)) == 0);
    free(uri);
}


/* headers: the text cut at NULs into Cache-Control, Expires, Date, Age */

static void
fuzz_freshness(const char *p, size_t len)
{
    char        *copy, *h[4];
    size_t       i, n;
    int64_t      ms;

    copy = malloc(len + 1);
    FUZZ_CHECK(copy != NULL);
    memcpy(copy, p, len);
    copy[len] = '\0';

    h[0] = copy;
    n = 1;

    for (i = 0; i < len && n < 4; i++) {
        if (copy[i] == '\0') {
            h[n++] = copy + i + 1;
        }
    }

    for (i = n; i < 4; i++) {
        h[i] = NULL;
    }

    ms = tg_http_freshness_ms(h[0], h[1], h[2], h[3], 1700000000);
    FUZZ_CHECK(ms >= -1);

    (void) tg_http_date(h[0]);

    free(copy);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char  *p;

    if (size == 0) {
        return 0;
    }

    /* exactly its size: a read past the end is a finding */

    p = malloc(size - 1 ? size - 1 : 1);
    FUZZ_CHECK(p != NULL);
    memcpy(p, data + 1, size - 1);

    switch (data[0] % 3) {
    case 0:
        fuzz_jwks(p, size - 1);
        break;
    case 1:
        fuzz_discovery(p, size - 1);
        break;
    default:
        fuzz_freshness(p, size - 1);
        break;
    }

    free(p);

    return 0;
}
