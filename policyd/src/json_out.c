/*
 * JSON text into a bounded buffer (json_out.h).
 */

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "json_out.h"


void
tg_jout_init(tg_jout *j, char *buf, size_t cap)
{
    j->buf = buf;
    j->len = 0;
    j->cap = cap;
    j->reserve = 0;
    j->cut = false;
}


void
tg_jout_reserve(tg_jout *j, size_t n)
{
    j->reserve = n < j->cap ? n : j->cap;
}


static size_t
tg_jout_room(const tg_jout *j)
{
    return (j->len + j->reserve < j->cap) ? j->cap - j->reserve - j->len : 0;
}


bool
tg_jout_raw(tg_jout *j, const char *s, size_t n)
{
    if (j->cut || n > tg_jout_room(j)) {
        j->cut = true;
        return false;
    }

    memcpy(j->buf + j->len, s, n);
    j->len += n;

    return true;
}


bool
tg_jout_end(tg_jout *j, const char *s)
{
    size_t  n = strlen(s);

    j->reserve = 0;

    if (n > j->cap - j->len) {
        return false;
    }

    memcpy(j->buf + j->len, s, n);
    j->len += n;

    return true;
}


bool
tg_jout_lit(tg_jout *j, const char *s)
{
    return tg_jout_raw(j, s, strlen(s));
}


void
tg_jout_escaped(tg_jout *j, const void *s, size_t n)
{
    char                  esc[8];
    size_t                i, k, run;
    const unsigned char  *u = s;

    for (i = 0; i < n && !j->cut; i += k) {

        /* a run of plain ASCII at once */

        for (run = i;
             run < n && u[run] >= 0x20 && u[run] < 0x7f
             && u[run] != '"' && u[run] != '\\';
             run++)
        {
            /* void */
        }

        if (run > i) {
            size_t  room = tg_jout_room(j);

            if (run - i > room) {
                tg_jout_raw(j, (const char *) u + i, room);
                j->cut = true;
                return;
            }

            tg_jout_raw(j, (const char *) u + i, run - i);
            k = run - i;
            continue;
        }

        k = 1;

        if (u[i] == '"' || u[i] == '\\') {
            esc[0] = '\\';
            esc[1] = (char) u[i];
            tg_jout_raw(j, esc, 2);

        } else if (u[i] < 0x20 || u[i] == 0x7f) {
            snprintf(esc, sizeof(esc), "\\u%04x", u[i]);
            tg_jout_raw(j, esc, 6);

        } else {
            k = tg_utf8_char_len(u + i, n - i);

            if (k == 0) {
                k = 1;
                tg_jout_raw(j, "\\ufffd", 6);

            } else if (k == 3 && u[i] == 0xe2 && u[i + 1] == 0x80
                       && (u[i + 2] == 0xa8 || u[i + 2] == 0xa9))
            {
                tg_jout_raw(j, u[i + 2] == 0xa8 ? "\\u2028" : "\\u2029", 6);

            } else {
                tg_jout_raw(j, (const char *) u + i, k);
            }
        }
    }
}


void
tg_jout_str(tg_jout *j, const void *s, size_t n)
{
    if (s == NULL) {
        tg_jout_lit(j, "null");
        return;
    }

    /* both quotes or nothing; the closing one kept back meanwhile */

    if (j->cut || tg_jout_room(j) < 2) {
        j->cut = true;
        return;
    }

    j->buf[j->len++] = '"';

    j->reserve++;
    tg_jout_escaped(j, s, n);
    j->reserve--;

    /* the byte kept back is there whatever was cut */
    j->buf[j->len++] = '"';
}


void
tg_jout_cstr(tg_jout *j, const char *s)
{
    tg_jout_str(j, s, s ? strlen(s) : 0);
}


void
tg_jout_u64(tg_jout *j, uint64_t v)
{
    char  num[24];
    int   n;

    n = snprintf(num, sizeof(num), "%" PRIu64, v);
    tg_jout_raw(j, num, (size_t) n);
}


void
tg_jout_i64(tg_jout *j, int64_t v)
{
    char  num[24];
    int   n;

    n = snprintf(num, sizeof(num), "%" PRId64, v);
    tg_jout_raw(j, num, (size_t) n);
}


void
tg_jout_key(tg_jout *j, const char *key, bool first)
{
    if (!first) {
        tg_jout_raw(j, ",", 1);
    }

    tg_jout_str(j, key, strlen(key));
    tg_jout_raw(j, ":", 1);
}


size_t
tg_utf8_char_len(const unsigned char *s, size_t n)
{
    size_t    len, i;
    uint32_t  c;

    if (n == 0) {
        return 0;
    }

    if (s[0] < 0x80) {
        return 1;
    } else if (s[0] >= 0xc2 && s[0] <= 0xdf) {
        len = 2;
        c = s[0] & 0x1f;
    } else if (s[0] >= 0xe0 && s[0] <= 0xef) {
        len = 3;
        c = s[0] & 0x0f;
    } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
        len = 4;
        c = s[0] & 0x07;
    } else {
        return 0;
    }

    if (n < len) {
        return 0;
    }

    for (i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) {
            return 0;
        }
        c = (c << 6) | (s[i] & 0x3f);
    }

    if ((len == 3 && (c < 0x800 || (c >= 0xd800 && c <= 0xdfff)))
        || (len == 4 && (c < 0x10000 || c > 0x10ffff)))
    {
        return 0;
    }

    return len;
}
