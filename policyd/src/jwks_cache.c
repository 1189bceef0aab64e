/*
 * HTTP caching, URLs and discovery for key sets: pure functions
 * (jwks_cache.h).
 */

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>

#include "jwks_cache.h"


static void tg_say(char *buf, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static bool tg_loopback(const char *host, size_t len);


static const char *const  tg_months[] = {
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct",
    "Nov", "Dec"
};


time_t
tg_http_date(const char *s)
{
    int        day, year, hour, min, sec, n, i;
    char       wday[4], mon[4];
    struct tm  tm;

    if (s == NULL) {
        return -1;
    }

    n = 0;

    if (sscanf(s, "%3[A-Za-z], %2d %3[A-Za-z] %4d %2d:%2d:%2d GMT%n", wday,
               &day, mon, &year, &hour, &min, &sec, &n) != 7
        || n == 0 || s[n] != '\0')
    {
        return -1;
    }

    for (i = 0; i < 12; i++) {
        if (strcmp(mon, tg_months[i]) == 0) {
            break;
        }
    }

    if (i == 12 || day < 1 || day > 31 || year < 1970 || hour > 23
        || min > 59 || sec > 60)
    {
        return -1;
    }

    memset(&tm, 0, sizeof(tm));
    tm.tm_year = year - 1900;
    tm.tm_mon = i;
    tm.tm_mday = day;
    tm.tm_hour = hour;
    tm.tm_min = min;
    tm.tm_sec = sec;

    return timegm(&tm);
}


/* a number of seconds: digits only, saturating; -1 when it is none */

static int64_t
tg_seconds(const char *p, size_t len)
{
    size_t   i;
    int64_t  v;

    if (len == 0) {
        return -1;
    }

    v = 0;

    for (i = 0; i < len; i++) {
        if (!isdigit((unsigned char) p[i])) {
            return -1;
        }

        if (v < (int64_t) 1 << 40) {
            v = v * 10 + (p[i] - '0');
        }
    }

    return v;
}


int64_t
tg_http_freshness_ms(const char *cache_control, const char *expires,
    const char *date, const char *age, time_t now)
{
    size_t       len, nlen;
    int64_t      max_age, seconds, age_s;
    time_t       when, base;
    const char  *p, *end, *eq, *v;

    max_age = -1;

    for (p = cache_control; p != NULL && *p != '\0'; p = end) {
        while (*p == ' ' || *p == '\t' || *p == ',') {
            p++;
        }

        end = p + strcspn(p, ",");
        len = (size_t) (end - p);

        while (len && (p[len - 1] == ' ' || p[len - 1] == '\t')) {
            len--;
        }

        if (len == 0) {
            continue;
        }

        eq = memchr(p, '=', len);
        nlen = eq ? (size_t) (eq - p) : len;

        if ((nlen == 8 && strncasecmp(p, "no-store", 8) == 0)
            || (nlen == 8 && strncasecmp(p, "no-cache", 8) == 0))
        {
            return 0;
        }

        if (nlen == 7 && strncasecmp(p, "max-age", 7) == 0 && eq != NULL) {
            v = eq + 1;
            len -= nlen + 1;

            if (len >= 2 && v[0] == '"' && v[len - 1] == '"') {
                v++;
                len -= 2;
            }

            seconds = tg_seconds(v, len);

            /* a max-age that is no number: stale, as RFC 9111 says */
            max_age = seconds < 0 ? 0 : seconds;
        }
    }

    age_s = age ? tg_seconds(age, strlen(age)) : -1;

    if (max_age >= 0) {
        if (age_s > 0) {
            max_age = age_s >= max_age ? 0 : max_age - age_s;
        }

        return max_age * 1000;
    }

    if (expires == NULL) {
        return -1;
    }

    when = tg_http_date(expires);

    if (when < 0) {
        return 0;
    }

    base = tg_http_date(date);

    if (base < 0) {
        base = now;
    }

    return when > base ? (int64_t) (when - base) * 1000 : 0;
}


int
tg_jwks_url_check(const char *url, bool insecure, char *why, size_t whylen)
{
    bool         https;
    size_t       len, hlen, i;
    const char  *host, *end, *colon;

    len = strlen(url);

    if (len > TG_JWKS_URL_MAX) {
        tg_say(why, whylen, "expected a URL of at most %d bytes",
               TG_JWKS_URL_MAX);
        return -1;
    }

    for (i = 0; i < len; i++) {
        if ((unsigned char) url[i] <= ' ' || (unsigned char) url[i] >= 0x7f) {
            tg_say(why, whylen, "expected a URL without spaces, control or "
                   "non-ASCII characters");
            return -1;
        }
    }

    if (strncasecmp(url, "https://", 8) == 0) {
        https = true;
        host = url + 8;

    } else if (strncasecmp(url, "http://", 7) == 0) {
        https = false;
        host = url + 7;

    } else {
        tg_say(why, whylen, "expected an https:// URL");
        return -1;
    }

    end = host + strcspn(host, "/?#");

    if (memchr(host, '@', (size_t) (end - host)) != NULL) {
        tg_say(why, whylen, "expected a URL without credentials");
        return -1;
    }

    /* the host without its port */

    if (*host == '[') {
        colon = memchr(host, ']', (size_t) (end - host));

        if (colon == NULL) {
            tg_say(why, whylen, "expected a URL with a host");
            return -1;
        }

        hlen = (size_t) (colon + 1 - host);
        colon++;

    } else {
        colon = memchr(host, ':', (size_t) (end - host));
        hlen = (size_t) ((colon ? colon : end) - host);
    }

    if (hlen == 0) {
        tg_say(why, whylen, "expected a URL with a host");
        return -1;
    }

    if (colon != NULL && colon < end) {
        if (*colon != ':' || colon + 1 == end) {
            tg_say(why, whylen, "expected host:port in the URL");
            return -1;
        }

        for (i = 1; colon + i < end; i++) {
            if (!isdigit((unsigned char) colon[i]) || i > 5) {
                tg_say(why, whylen, "expected host:port in the URL");
                return -1;
            }
        }
    }

    if (!https && !insecure && !tg_loopback(host, hlen)) {
        tg_say(why, whylen, "expected an https:// URL (http:// only to "
               "127.0.0.1, [::1] or localhost, or with \"insecure_http\": "
               "true)");
        return -1;
    }

    return 0;
}


static bool
tg_loopback(const char *host, size_t len)
{
    size_t  i, dots;

    if ((len == 9 && strncasecmp(host, "localhost", 9) == 0)
        || (len == 5 && memcmp(host, "[::1]", 5) == 0))
    {
        return true;
    }

    if (len < 7 || len > 15 || memcmp(host, "127.", 4) != 0) {
        return false;
    }

    dots = 0;

    for (i = 0; i < len; i++) {
        if (host[i] == '.') {
            dots++;
        } else if (!isdigit((unsigned char) host[i])) {
            return false;
        }
    }

    return dots == 3;
}


int
tg_discovery_jwks_uri(const char *text, size_t len, const char *issuer,
    bool insecure, char **uri, char *why, size_t whylen)
{
    int           rc;
    char          url_why[160];
    cJSON        *root;
    const cJSON  *iss, *jwks;

    *uri = NULL;

    root = cJSON_ParseWithLength(text, len);

    if (root == NULL || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        tg_say(why, whylen, "the discovery document is not a JSON object");
        return -1;
    }

    rc = -1;

    iss = cJSON_GetObjectItemCaseSensitive(root, "issuer");
    jwks = cJSON_GetObjectItemCaseSensitive(root, "jwks_uri");

    if (!cJSON_IsString(iss) || iss->valuestring == NULL
        || strcmp(iss->valuestring, issuer) != 0)
    {
        tg_say(why, whylen, "the discovery document's \"issuer\" is not "
               "%.200s", issuer);

    } else if (!cJSON_IsString(jwks) || jwks->valuestring == NULL) {
        tg_say(why, whylen, "the discovery document has no \"jwks_uri\" "
               "string");

    } else if (tg_jwks_url_check(jwks->valuestring, insecure, url_why,
                                 sizeof(url_why)) != 0)
    {
        tg_say(why, whylen, "the discovery document's \"jwks_uri\": %s",
               url_why);

    } else {
        *uri = strdup(jwks->valuestring);

        if (*uri == NULL) {
            tg_say(why, whylen, "out of memory");
        } else {
            rc = 0;
        }
    }

    cJSON_Delete(root);

    return rc;
}


uint32_t
tg_jwks_next_ms(const tg_jwks_conf *conf, int64_t fresh_ms,
    uint32_t failures)
{
    uint64_t  ms;

    if (failures > 0) {
        ms = conf->min_refresh_ms;

        while (--failures > 0 && ms < conf->refresh_ms) {
            ms *= 2;
        }

        return ms > conf->refresh_ms ? conf->refresh_ms : (uint32_t) ms;
    }

    if (fresh_ms < 0 || fresh_ms > (int64_t) conf->refresh_ms) {
        return conf->refresh_ms;
    }

    if (fresh_ms < (int64_t) conf->min_refresh_ms) {
        return conf->min_refresh_ms;
    }

    return (uint32_t) fresh_ms;
}


static void
tg_say(char *buf, size_t len, const char *fmt, ...)
{
    va_list  ap;

    if (len == 0) {
        return;
    }

    va_start(ap, fmt);
    (void) vsnprintf(buf, len, fmt, ap);
    va_end(ap);
}
