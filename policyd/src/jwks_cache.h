/*
 * What policyd decides about a key set's fetches, as pure functions: how
 * long an answer stays fresh by its HTTP cache headers, which URLs may be
 * fetched, the jwks_uri of a discovery document, and when to ask again.
 * jwks.c acts on them; tests/test_jwks.c checks them without a socket.
 */

#ifndef TG_JWKS_CACHE_H
#define TG_JWKS_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "jwks_conf.h"


/* an IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT"), or -1 */
time_t tg_http_date(const char *s);

/*
 * How long an answer is fresh, in ms, from its Cache-Control (max-age,
 * no-cache, no-store), Expires against its Date (or now) and Age; any may
 * be NULL.  -1: they say nothing.  An Expires that is no date is past.
 */
int64_t tg_http_freshness_ms(const char *cache_control, const char *expires,
    const char *date, const char *age, time_t now);

/*
 * 0 when url may be fetched: https://, or http:// to a loopback host
 * (127.0.0.0/8, [::1], localhost) or with insecure; -1 with why.
 */
int tg_jwks_url_check(const char *url, bool insecure, char *why,
    size_t whylen);

/*
 * The jwks_uri of an OpenID discovery document whose "issuer" is issuer,
 * checked like a configured URL; malloc()ed in *uri.  0, or -1 with why.
 */
int tg_discovery_jwks_uri(const char *text, size_t len, const char *issuer,
    bool insecure, char **uri, char *why, size_t whylen);

/*
 * When to fetch again, in ms from now: after a good answer (failures 0)
 * its freshness (fresh_ms, -1: refresh_ms), held between min_refresh_ms
 * and refresh_ms; after failures, min_refresh_ms doubled each time, at
 * most refresh_ms.
 */
uint32_t tg_jwks_next_ms(const tg_jwks_conf *conf, int64_t fresh_ms,
    uint32_t failures);


#endif /* TG_JWKS_CACHE_H */
