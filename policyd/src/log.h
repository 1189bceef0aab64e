/*
 * Leveled logging to stderr, in nginx's error.log shape:
 *
 *   2026/11/21 10:00:00 [info] policyd[1234]: message
 *
 * or, with -j or "log_format": "json", one JSON object per line
 * (log_json.c):
 *
 *   {"time":"2026-11-21T10:00:00.123Z","level":"info","pid":1234,
 *    "event":"connection.closed","fields":{"connection":7,...},
 *    "msg":"connection 7 closed: ..."}
 *
 * Every call names its event and the fields its format's conversions
 * fill, in order, space-separated ("-" for one that is only text):
 *
 *   tg_log_info("connection.closed", "connection reason",
 *               "connection %llu closed: %s", id, why);
 *
 * t/81-policyd-json-logs.t checks every call in the source for that.
 * Control characters in messages are escaped, so a peer's strings cannot
 * forge log lines.  Never pass a secret (the provider authorization) here.
 */

#ifndef TG_LOG_H
#define TG_LOG_H

#include <stdbool.h>


typedef enum {
    TG_LOG_ERROR = 0,
    TG_LOG_WARN,
    TG_LOG_INFO,
    TG_LOG_DEBUG
} tg_log_level;


extern tg_log_level  tg_log_current;


/* Sets the level; ignored while debug is forced (-v). */
void tg_log_set_level(tg_log_level level);
void tg_log_force_debug(bool on);

typedef enum {
    TG_LOG_TEXT = 0,
    TG_LOG_JSON
} tg_log_format;

/* The format; ignored while JSON is forced (-j). */
void tg_log_set_format(tg_log_format format);
void tg_log_force_json(bool on);

/* 0 and *out set when name is "text" or "json". */
int tg_log_format_parse(const char *name, tg_log_format *out);

/* 0 and *out set when name is one of error, warn, info, debug. */
int tg_log_level_parse(const char *name, tg_log_level *out);
const char *tg_log_level_name(tg_log_level level);

void tg_log(tg_log_level level, const char *event, const char *fields,
    const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));


#define tg_log_enabled(level)  ((level) <= tg_log_current)

/* the arguments after the level: event, fields, format, values */
#define tg_log_error(...)  tg_log(TG_LOG_ERROR, __VA_ARGS__)
#define tg_log_warn(...)                                                      \
    do { if (tg_log_enabled(TG_LOG_WARN)) tg_log(TG_LOG_WARN, __VA_ARGS__); } \
    while (0)
#define tg_log_info(...)                                                      \
    do { if (tg_log_enabled(TG_LOG_INFO)) tg_log(TG_LOG_INFO, __VA_ARGS__); } \
    while (0)
#define tg_log_debug(...)                                                     \
    do { if (tg_log_enabled(TG_LOG_DEBUG)) tg_log(TG_LOG_DEBUG, __VA_ARGS__); }\
    while (0)


#endif /* TG_LOG_H */
