/*
 * One log line as a JSON object (log.h shows its shape): pure, for log.c,
 * the unit tests and the fuzzer.
 */

#ifndef TG_LOG_JSON_H
#define TG_LOG_JSON_H

#include <stdarg.h>
#include <stddef.h>
#include <time.h>


/* a line at most, '\n' included: longer values are cut, "cut":true said */
#define TG_LOG_JSON_MAX  8192

/*
 * Writes the line of one log call into buf (size at least 256): its length,
 * '\n' included.  msg is the formatted text; fmt and ap (the call's format
 * and values) give the fields, named in order by the space-separated words
 * of fields ("-" skips one; a conversion without a name is "argN").
 * Whole-number conversions (%d, %u, %zu ...) are JSON numbers, %f and the
 * like too when finite; the rest are strings, a NULL %s is null.
 */
size_t tg_log_json_line(char *buf, size_t size, const struct timespec *now,
    const char *level, long pid, const char *event, const char *fields,
    const char *msg, const char *fmt, va_list ap);


#endif /* TG_LOG_JSON_H */
