/*
 * Leveled logging to stderr in nginx's error.log shape:
 *
 *   2026/11/21 10:00:00 [info] policyd[1234]: message
 *
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

/* One JSON object per line instead of the nginx-like text (-j). */
void tg_log_set_json(bool on);

/* 0 and *out set when name is one of error, warn, info, debug. */
int tg_log_level_parse(const char *name, tg_log_level *out);
const char *tg_log_level_name(tg_log_level level);

void tg_log(tg_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));


#define tg_log_enabled(level)  ((level) <= tg_log_current)

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
