/*
 * A usage record read back.  The line is JSON as usage_record.c writes
 * it, but a file may hold anything (a line cut by a full disk, a hand
 * edit): every field is checked, and a line that is not a record is
 * said to be none - never half counted.
 */

#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "price.h"
#include "usage_read.h"


#define TG_JSON_INT_MAX  9007199254740992.0     /* 2^53 */


static int tg_row_str(const cJSON *obj, const char *key, char *out);
static int tg_row_uint(const cJSON *obj, const char *key, uint64_t *out);
static int tg_digits(const char *s, size_t n, int *out);


int
tg_usage_row_parse(const char *line, size_t len, tg_usage_row *row)
{
    int            rc;
    time_t         secs;
    cJSON         *root;
    struct tm      tm;
    const cJSON   *v, *tokens;

    memset(row, 0, sizeof(*row));

    root = cJSON_ParseWithLength(line, len);
    if (root == NULL) {
        return -1;
    }

    rc = -1;

    if (!cJSON_IsObject(root)) {
        goto done;
    }

    v = cJSON_GetObjectItemCaseSensitive(root, "time");
    if (!cJSON_IsString(v) || v->valuestring == NULL
        || tg_usage_time_parse(v->valuestring, strlen(v->valuestring),
                               &row->time_ms) != 0)
    {
        goto done;
    }

    secs = (time_t) (row->time_ms >= 0 ? row->time_ms / 1000
                                       : (row->time_ms - 999) / 1000);

    if (gmtime_r(&secs, &tm) == NULL || tm.tm_year + 1900 > 9999
        || tm.tm_year + 1900 < 0)
    {
        goto done;
    }

    strftime(row->day, sizeof(row->day), "%Y-%m-%d", &tm);

    if (tg_row_str(root, "client", row->client) != 0
        || tg_row_str(root, "tenant", row->tenant) != 0
        || tg_row_str(root, "route", row->route) != 0
        || tg_row_str(root, "provider", row->provider) != 0
        || tg_row_str(root, "provider_model", row->model) != 0
        || tg_row_str(root, "currency", row->currency) != 0)
    {
        goto done;
    }

    tokens = cJSON_GetObjectItemCaseSensitive(root, "tokens");
    if (!cJSON_IsObject(tokens)
        || tg_row_uint(tokens, "input", &row->input) != 0
        || tg_row_uint(tokens, "cached", &row->cached) != 0
        || tg_row_uint(tokens, "output", &row->output) != 0
        || tg_row_uint(tokens, "reasoning", &row->reasoning) != 0)
    {
        goto done;
    }

    v = cJSON_GetObjectItemCaseSensitive(root, "estimated");
    if (v != NULL && !cJSON_IsBool(v)) {
        goto done;
    }
    row->estimated = cJSON_IsTrue(v);

    /* the cost is exact text: a JSON number would pass through a double */

    v = cJSON_GetObjectItemCaseSensitive(root, "cost");
    if (v != NULL && !cJSON_IsNull(v)) {
        if (!cJSON_IsString(v) || v->valuestring == NULL
            || tg_money_parse(v->valuestring, strlen(v->valuestring),
                              &row->cost) != 0)
        {
            goto done;
        }
        row->priced = true;
    }

    rc = 0;

done:

    cJSON_Delete(root);

    return rc;
}


/* a string or null (or absent: ""); -1 for anything else */

static int
tg_row_str(const cJSON *obj, const char *key, char *out)
{
    size_t        n;
    const cJSON  *v;

    out[0] = '\0';

    v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (v == NULL || cJSON_IsNull(v)) {
        return 0;
    }

    if (!cJSON_IsString(v) || v->valuestring == NULL) {
        return -1;
    }

    n = strlen(v->valuestring);
    if (n > TG_USAGE_FIELD_MAX) {
        return -1;
    }

    memcpy(out, v->valuestring, n + 1);

    return 0;
}


static int
tg_row_uint(const cJSON *obj, const char *key, uint64_t *out)
{
    const cJSON  *v;

    *out = 0;

    v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (v == NULL) {
        return 0;
    }

    if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0)
        || v->valuedouble > TG_JSON_INT_MAX
        || v->valuedouble != (double) (uint64_t) v->valuedouble)
    {
        return -1;
    }

    *out = (uint64_t) v->valuedouble;

    return 0;
}


int
tg_usage_time_parse(const char *s, size_t len, int64_t *ms)
{
    int        year, mon, day, hour, min, sec, oh, om, frac, digits;
    size_t     i;
    int64_t    t, n;
    struct tm  tm;

    if (len > 0 && s[0] == '@') {
        s++;
        len--;
    }

    /* seconds since the epoch: digits only */

    for (i = 0; i < len && s[i] >= '0' && s[i] <= '9'; i++) { /* void */ }

    if (len > 0 && i == len) {
        if (len > 12) {
            return -1;
        }

        for (n = 0, i = 0; i < len; i++) {
            n = n * 10 + (s[i] - '0');
        }

        *ms = n * 1000;
        return 0;
    }

    if (len < 10 || tg_digits(s, 4, &year) || s[4] != '-'
        || tg_digits(s + 5, 2, &mon) || s[7] != '-'
        || tg_digits(s + 8, 2, &day)
        || year < 1970 || mon < 1 || mon > 12 || day < 1 || day > 31)
    {
        return -1;
    }

    hour = min = sec = 0;
    frac = 0;
    oh = om = 0;
    i = 10;

    if (len > 10) {
        if ((s[10] != 'T' && s[10] != 't' && s[10] != ' ') || len < 20
            || tg_digits(s + 11, 2, &hour) || s[13] != ':'
            || tg_digits(s + 14, 2, &min) || s[16] != ':'
            || tg_digits(s + 17, 2, &sec)
            || hour > 23 || min > 59 || sec > 60)
        {
            return -1;
        }

        i = 19;

        if (s[i] == '.') {
            for (i++, digits = 0; i < len && s[i] >= '0' && s[i] <= '9';
                 i++, digits++)
            {
                if (digits < 3) {
                    frac = frac * 10 + (s[i] - '0');
                }
            }

            if (digits == 0) {
                return -1;
            }

            for ( /* void */ ; digits < 3; digits++) {
                frac *= 10;
            }
        }

        if (i == len) {
            return -1;          /* RFC 3339 names its offset */
        }

        if (s[i] == 'Z' || s[i] == 'z') {
            i++;

        } else if ((s[i] == '+' || s[i] == '-') && len - i == 6
                   && !tg_digits(s + i + 1, 2, &oh) && s[i + 3] == ':'
                   && !tg_digits(s + i + 4, 2, &om) && oh <= 23 && om <= 59)
        {
            if (s[i] == '-') {
                oh = -oh;
                om = -om;
            }
            i += 6;

        } else {
            return -1;
        }
    }

    if (i != len) {
        return -1;
    }

    memset(&tm, 0, sizeof(tm));
    tm.tm_year = year - 1900;
    tm.tm_mon = mon - 1;
    tm.tm_mday = day;
    tm.tm_hour = hour;
    tm.tm_min = min;
    tm.tm_sec = sec;

    t = (int64_t) timegm(&tm);

    /* timegm() takes Feb 30 as Mar 2: a day that is not, is not */
    if (tm.tm_mday != day || tm.tm_mon != mon - 1) {
        return -1;
    }

    t -= (int64_t) oh * 3600 + (int64_t) om * 60;

    /* 1970-01-01 with an offset east of UTC is still 1969 */
    if (t < 0) {
        return -1;
    }

    *ms = t * 1000 + frac;

    return 0;
}


static int
tg_digits(const char *s, size_t n, int *out)
{
    size_t  i;
    int     v;

    for (v = 0, i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return -1;
        }
        v = v * 10 + (s[i] - '0');
    }

    *out = v;

    return 0;
}
