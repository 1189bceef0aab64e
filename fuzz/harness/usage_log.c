
/*
 * Copyright (C) The Tailgate authors
 *
 * usage_log: what `policyd usage` reads (usage_read.c) - a line of the
 * usage log into a row, and the times --since and --until take.
 *
 * Input: one byte that says which (even: a log line, odd: a time), then
 * the text, in a buffer of exactly its size.  Checked besides the
 * sanitizers: a row's names are terminated within their fields, its day is
 * the UTC day of its time; a time that parses prints back as RFC 3339 and
 * parses to the same instant.
 */


#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fuzz_check.h"
#include "usage_read.h"


static void
fuzz_usage_row(const char *p, size_t len)
{
    time_t        secs;
    struct tm     tm;
    char          day[11];
    tg_usage_row  row;

    if (tg_usage_row_parse(p, len, &row) != 0) {
        return;
    }

    FUZZ_CHECK(memchr(row.client, '\0', sizeof(row.client)) != NULL);
    FUZZ_CHECK(memchr(row.tenant, '\0', sizeof(row.tenant)) != NULL);
    FUZZ_CHECK(memchr(row.route, '\0', sizeof(row.route)) != NULL);
    FUZZ_CHECK(memchr(row.provider, '\0', sizeof(row.provider)) != NULL);
    FUZZ_CHECK(memchr(row.model, '\0', sizeof(row.model)) != NULL);
    FUZZ_CHECK(memchr(row.currency, '\0', sizeof(row.currency)) != NULL);
    FUZZ_CHECK(row.cached <= UINT64_MAX && row.input <= UINT64_MAX);

    secs = (time_t) (row.time_ms >= 0 ? row.time_ms / 1000
                                      : (row.time_ms - 999) / 1000);
    FUZZ_CHECK(gmtime_r(&secs, &tm) != NULL);
    strftime(day, sizeof(day), "%Y-%m-%d", &tm);
    FUZZ_CHECK(strcmp(day, row.day) == 0);
}


static void
fuzz_usage_time(const char *p, size_t len)
{
    int        n;
    char       text[64];
    time_t     secs;
    int64_t    ms, again;
    struct tm  tm;

    if (tg_usage_time_parse(p, len, &ms) != 0) {
        return;
    }

    secs = (time_t) (ms >= 0 ? ms / 1000 : (ms - 999) / 1000);

    if (gmtime_r(&secs, &tm) == NULL || tm.tm_year + 1900 < 0
        || tm.tm_year + 1900 > 9999)
    {
        /* an instant RFC 3339 cannot write: nothing to read back */
        return;
    }

    n = snprintf(text, sizeof(text), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                 tm.tm_min, tm.tm_sec, (int) (ms - (int64_t) secs * 1000));
    FUZZ_CHECK(n > 0 && (size_t) n < sizeof(text));

    FUZZ_CHECK(tg_usage_time_parse(text, (size_t) n, &again) == 0);
    FUZZ_CHECK(again == ms);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char  *text;

    if (size < 1) {
        return 0;
    }

    /* exactly the text's size: a read past it is caught */
    text = malloc(size - 1 ? size - 1 : 1);
    FUZZ_CHECK(text != NULL);
    memcpy(text, data + 1, size - 1);

    if (data[0] & 1) {
        fuzz_usage_time(text, size - 1);

    } else {
        fuzz_usage_row(text, size - 1);
    }

    free(text);

    return 0;
}
