/*
 * JSON text written into a caller's bounded buffer, for the JSON log lines
 * (log_json.c) and the OTLP spans (otlp_span.c).
 *
 * Strings take any bytes: '"', '\' and control characters are escaped,
 * well-formed UTF-8 passes as it is, and every byte that is not part of
 * well-formed UTF-8 (a stray continuation byte, an overlong form, a
 * surrogate, beyond U+10FFFF, a sequence cut short) becomes U+FFFD, so
 * that the text is valid JSON for the strictest reader.  U+2028 and
 * U+2029 are escaped too, for readers that take JSON as JavaScript.
 *
 * The writer never goes past its end minus what the caller keeps back
 * for closing (tg_jout_reserve): a string that does not fit is cut at a
 * character boundary and the writer remembers that it cut.
 */

#ifndef TG_JSON_OUT_H
#define TG_JSON_OUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>


typedef struct {
    char        *buf;
    size_t       len;
    size_t       cap;
    size_t       reserve;           /* kept back for the closing bytes */
    bool         cut;               /* something did not fit */
} tg_jout;


void tg_jout_init(tg_jout *j, char *buf, size_t cap);

/* Keeps n bytes back from now on (n = 0: the whole buffer again). */
void tg_jout_reserve(tg_jout *j, size_t n);

/* Raw bytes, all or nothing: false (and cut set) when they do not fit. */
bool tg_jout_raw(tg_jout *j, const char *s, size_t n);
bool tg_jout_lit(tg_jout *j, const char *s);

/*
 * The closing bytes, into the space kept back, written even after a cut:
 * false only when they do not fit in the whole buffer.
 */
bool tg_jout_end(tg_jout *j, const char *s);

/* The inside of a JSON string (no quotes): as much as fits. */
void tg_jout_escaped(tg_jout *j, const void *s, size_t n);

/* "s" quoted and escaped; NULL writes null. */
void tg_jout_str(tg_jout *j, const void *s, size_t n);
void tg_jout_cstr(tg_jout *j, const char *s);

void tg_jout_u64(tg_jout *j, uint64_t v);
void tg_jout_i64(tg_jout *j, int64_t v);

/* "key": with the comma before it unless first */
void tg_jout_key(tg_jout *j, const char *key, bool first);

/* The length of the well-formed UTF-8 character at s, 0 when it is not. */
size_t tg_utf8_char_len(const unsigned char *s, size_t n);


#endif /* TG_JSON_OUT_H */
