/*
 * The usage log read back (policyd usage): one record line into a row,
 * and the times --since and --until take.  Pure; usage_cli.c does the
 * files and the totals.
 */

#ifndef TG_USAGE_READ_H
#define TG_USAGE_READ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>


#define TG_USAGE_FIELD_MAX  512         /* a longer name: not a record */


typedef struct {
    int64_t     time_ms;                /* since the epoch, UTC */
    char        day[11];                /* "2026-12-02", UTC */
    char        client[TG_USAGE_FIELD_MAX + 1];
    char        tenant[TG_USAGE_FIELD_MAX + 1];
    char        route[TG_USAGE_FIELD_MAX + 1];
    char        provider[TG_USAGE_FIELD_MAX + 1];
    char        model[TG_USAGE_FIELD_MAX + 1];      /* provider_model */
    char        currency[TG_USAGE_FIELD_MAX + 1];   /* "" when unpriced */
    uint64_t    input;
    uint64_t    cached;
    uint64_t    output;
    uint64_t    reasoning;
    bool        estimated;
    bool        priced;
    uint64_t    cost;                   /* pico-units */
} tg_usage_row;


/* One line of the usage log (no '\n' needed): 0, or -1 when it is none */
int tg_usage_row_parse(const char *line, size_t len, tg_usage_row *row);

/*
 * A time: RFC 3339 ("2026-12-02T20:00:00Z", "2026-12-02T21:00:00.5+01:00"),
 * a day ("2026-12-02", its midnight UTC) or seconds since the epoch
 * ("1764705600", or "@1764705600").  0 and *ms, or -1.
 */
int tg_usage_time_parse(const char *s, size_t len, int64_t *ms);


#endif /* TG_USAGE_READ_H */
