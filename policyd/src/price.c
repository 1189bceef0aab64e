/*
 * Price arithmetic: integers only, 128 bits inside so that an overflow is
 * seen rather than wrapped.
 */

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "price.h"


#define TG_PICO  1000000000000ULL


int
tg_price_cost(const tg_price *p, const tg_price_usage *u, uint64_t *cost)
{
    uint32_t            cached;
    unsigned __int128   sum, audio;

    cached = u->cached < u->input ? u->cached : u->input;

    sum = (unsigned __int128) (u->input - cached) * p->input
          + (unsigned __int128) cached * p->cached_input
          + (unsigned __int128) u->output * p->output
          + (unsigned __int128) u->characters * p->characters;

    /* ms * micro per minute * 1e6 / 60000, to the nearest pico-unit */
    audio = ((unsigned __int128) u->audio_ms * p->audio_minute * 100 + 3) / 6;

    sum += audio;

    if (sum > UINT64_MAX) {
        *cost = UINT64_MAX;
        return -1;
    }

    *cost = (uint64_t) sum;
    return 0;
}


int
tg_price_micro(double v, uint64_t *micro)
{
    char        six[64], nine[64];
    uint64_t    n;
    size_t      len;
    const char *s;

    if (!isfinite(v) || v < 0 || v >= 1000000.0) {
        return -1;
    }

    /*
     * The decimal the file wrote, to 6 places and to 9: the same digits
     * then three zeros when it had no more than 6 decimals.
     */

    snprintf(six, sizeof(six), "%.6f", v);
    snprintf(nine, sizeof(nine), "%.9f", v);

    len = strlen(six);

    if (strncmp(six, nine, len) != 0 || strcmp(nine + len, "000") != 0) {
        return -1;
    }

    n = 0;

    for (s = six; *s != '\0'; s++) {
        if (*s != '.') {
            n = n * 10 + (uint64_t) (*s - '0');
        }
    }

    if (n > TG_PRICE_MICRO_MAX) {
        return -1;
    }

    *micro = n;
    return 0;
}


void
tg_price_text(const tg_price *p, char *buf, size_t size)
{
    snprintf(buf, size, "%llu %llu %llu %llu %llu",
             (unsigned long long) p->input,
             (unsigned long long) p->cached_input,
             (unsigned long long) p->output,
             (unsigned long long) p->audio_minute,
             (unsigned long long) p->characters);
}


size_t
tg_money_text(uint64_t pico, char *buf, size_t size)
{
    int     n;
    size_t  len;

    n = snprintf(buf, size, "%llu.%012llu",
                 (unsigned long long) (pico / TG_PICO),
                 (unsigned long long) (pico % TG_PICO));

    if (n < 0 || (size_t) n >= size) {
        if (size > 0) {
            buf[0] = '\0';
        }
        return 0;
    }

    len = (size_t) n;

    while (buf[len - 1] == '0') {
        len--;
    }

    if (buf[len - 1] == '.') {
        len--;
    }

    buf[len] = '\0';

    return len;
}


int
tg_money_parse(const char *s, size_t len, uint64_t *pico)
{
    size_t              i, decimals;
    bool                point;
    unsigned __int128   n;

    if (len == 0 || s[0] == '.' || s[len - 1] == '.') {
        return -1;
    }

    n = 0;
    point = false;
    decimals = 0;

    for (i = 0; i < len; i++) {
        if (s[i] == '.') {
            if (point) {
                return -1;
            }
            point = true;
            continue;
        }

        if (s[i] < '0' || s[i] > '9') {
            return -1;
        }

        if (point && ++decimals > 12) {
            return -1;
        }

        n = n * 10 + (unsigned) (s[i] - '0');

        if (n > UINT64_MAX) {
            return -1;
        }
    }

    for ( /* void */ ; decimals < 12; decimals++) {
        n *= 10;

        if (n > UINT64_MAX) {
            return -1;
        }
    }

    *pico = (uint64_t) n;
    return 0;
}
