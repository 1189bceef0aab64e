/*
 * Logging to stderr, one write(2) per line: nginx-like text, or JSON
 * (log_json.c).
 */

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "log_json.h"


#define TG_LOG_LINE_MAX  4096


tg_log_level  tg_log_current = TG_LOG_INFO;

static bool   tg_log_forced;
static bool   tg_log_as_json;
static bool   tg_log_json_forced;

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
tg_log_set_format(tg_log_format format)
{
    if (!tg_log_json_forced) {
        tg_log_as_json = (format == TG_LOG_JSON);
    }
}


void
tg_log_force_json(bool on)
{
    tg_log_json_forced = on;

    if (on) {
        tg_log_as_json = true;
    }
}


int
tg_log_format_parse(const char *name, tg_log_format *out)
{
    if (strcmp(name, "text") == 0) {
        *out = TG_LOG_TEXT;
        return 0;
    }

    if (strcmp(name, "json") == 0) {
        *out = TG_LOG_JSON;
        return 0;
    }

    return -1;
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
tg_log(tg_log_level level, const char *event, const char *fields,
    const char *fmt, ...)
{
    int              n, saved_errno;
    char             msg[TG_LOG_LINE_MAX], line[TG_LOG_JSON_MAX];
    size_t           len, i;
    time_t           now;
    va_list          ap;
    struct tm        tm;
    struct timespec  ts;

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
        clock_gettime(CLOCK_REALTIME, &ts);

        va_start(ap, fmt);
        len = tg_log_json_line(line, sizeof(line), &ts,
                               tg_log_level_name(level), (long) getpid(),
                               event, fields, msg, fmt, ap);
        va_end(ap);

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
