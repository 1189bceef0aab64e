/*
 * Logging to stderr, one write(2) per line.
 */

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"


#define TG_LOG_LINE_MAX  4096


tg_log_level  tg_log_current = TG_LOG_INFO;

static bool   tg_log_forced;
static bool   tg_log_as_json;

static const char  *tg_log_names[] = { "error", "warn", "info", "debug" };


void
tg_log_set_level(tg_log_level level)
{
    if (!tg_log_forced) {
        tg_log_current = level;
    }
}


void
tg_log_force_debug(bool on)
{
    tg_log_forced = on;

    if (on) {
        tg_log_current = TG_LOG_DEBUG;
    }
}


void
tg_log_set_json(bool on)
{
    tg_log_as_json = on;
}


/*
 * Appends s[0..n) to line as the inside of a JSON string: '"', '\' and
 * control characters escaped; other bytes pass as they are, like nginx's
 * escape=json.  Stops short of room for the closing of the line.
 */
static size_t
tg_log_json_append(char *line, size_t len, size_t size, const char *s,
    size_t n)
{
    size_t  i;

    for (i = 0; i < n && len < size - 16; i++) {
        unsigned char  c = (unsigned char) s[i];

        if (c == '"' || c == '\\') {
            line[len++] = '\\';
            line[len++] = (char) c;
        } else if (c < 0x20 || c == 0x7f) {
            len += (size_t) snprintf(line + len, size - len, "\\u%04x", c);
        } else {
            line[len++] = (char) c;
        }
    }

    return len;
}


/*
 * {"time":…,"level":…,"pid":…,"event":…,"fields":{"detail":…}}: the
 * event is the message's lead up to its first ": " (e.g. "admin socket",
 * "connection 7"), the rest its detail; a message without one is all
 * event.
 */
static size_t
tg_log_json_line(char *line, size_t size, tg_log_level level,
    const char *msg)
{
    int         n;
    size_t      len, mlen, elen;
    time_t      now;
    struct tm   tm;
    const char *colon;

    now = time(NULL);
    gmtime_r(&now, &tm);

    len = strftime(line, size, "{\"time\":\"%Y-%m-%dT%H:%M:%SZ\"", &tm);
    n = snprintf(line + len, size - len,
                 ",\"level\":\"%s\",\"pid\":%ld,\"event\":\"",
                 tg_log_level_name(level), (long) getpid());
    if (n > 0) {
        len += (size_t) n;
    }

    mlen = strlen(msg);
    colon = strstr(msg, ": ");
    elen = (colon != NULL && colon - msg <= 64) ? (size_t) (colon - msg)
                                                : mlen;

    len = tg_log_json_append(line, len, size, msg, elen);
    len += (size_t) snprintf(line + len, size - len, "\",\"fields\":{");

    if (elen < mlen) {
        len += (size_t) snprintf(line + len, size - len, "\"detail\":\"");
        len = tg_log_json_append(line, len, size, msg + elen + 2,
                                 mlen - elen - 2);
        line[len++] = '"';
    }

    line[len++] = '}';
    line[len++] = '}';
    line[len++] = '\n';

    return len;
}


int
tg_log_level_parse(const char *name, tg_log_level *out)
{
    int  i;

    for (i = 0; i <= TG_LOG_DEBUG; i++) {
        if (strcmp(name, tg_log_names[i]) == 0) {
            *out = (tg_log_level) i;
            return 0;
        }
    }

    return -1;
}


const char *
tg_log_level_name(tg_log_level level)
{
    if ((int) level < 0 || level > TG_LOG_DEBUG) {
        return "unknown";
    }

    return tg_log_names[level];
}


void
tg_log(tg_log_level level, const char *fmt, ...)
{
    int         n, saved_errno;
    char        msg[TG_LOG_LINE_MAX], line[TG_LOG_LINE_MAX + 128];
    size_t      len, i;
    time_t      now;
    va_list     ap;
    struct tm   tm;

    if (!tg_log_enabled(level)) {
        return;
    }

    saved_errno = errno;

    va_start(ap, fmt);
    n = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);

    if (n < 0) {
        errno = saved_errno;
        return;
    }

    if (tg_log_as_json) {
        len = tg_log_json_line(line, sizeof(line), level, msg);
        if (write(STDERR_FILENO, line, len) < 0) {
            /* nowhere to report it */
        }
        errno = saved_errno;
        return;
    }

    now = time(NULL);
    localtime_r(&now, &tm);

    len = strftime(line, sizeof(line), "%Y/%m/%d %H:%M:%S", &tm);
    n = snprintf(line + len, sizeof(line) - len, " [%s] policyd[%ld]: ",
                 tg_log_level_name(level), (long) getpid());
    if (n > 0) {
        len += (size_t) n;
    }

    /* the message, with control characters escaped; leave room for "\n" */

    for (i = 0; msg[i] != '\0' && len < sizeof(line) - 6; i++) {
        unsigned char  c = (unsigned char) msg[i];

        if (c < 0x20 || c == 0x7f) {
            len += (size_t) snprintf(line + len, sizeof(line) - len,
                                     "\\x%02x", c);
        } else {
            line[len++] = (char) c;
        }
    }

    line[len++] = '\n';

    if (write(STDERR_FILENO, line, len) < 0) {
        /* nowhere to report it */
    }

    errno = saved_errno;
}
