/*
 * A log call as one JSON object (log_json.h): the fields are read off the
 * call's own format and values, so that a call site says only what its
 * values are called, and the text line and the JSON line never disagree.
 */

#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>

#include "json_out.h"
#include "log_json.h"


/* the closing bytes at most: },"msg":"", then ,"cut":true}\n */
#define TG_LOG_JSON_TAIL    48
#define TG_LOG_JSON_CLOSE   24


typedef enum {
    TG_VAL_NONE = 0,            /* consumed, nothing to say (%n) */
    TG_VAL_NUMBER,              /* text is a JSON number */
    TG_VAL_TEXT,                /* text, as a string */
    TG_VAL_STRING,              /* str[0..len) */
    TG_VAL_NULL
} tg_val_kind;


typedef struct {
    tg_val_kind   kind;
    char          text[64];
    const char   *str;
    size_t        len;
} tg_val;


static const char *tg_conv_next(const char *p, va_list *ap, tg_val *v,
    int *stop);
static const char *tg_field_name(const char **names, size_t *len);
static bool tg_json_number(const char *s);


size_t
tg_log_json_line(char *buf, size_t size, const struct timespec *now,
    const char *level, long pid, const char *event, const char *fields,
    const char *msg, const char *fmt, va_list ap)
{
    int          stop;
    char         stamp[48], argn[16], key[64];
    bool         first, cut;
    size_t       nlen, save, before, n;
    va_list      aq;
    tg_val       v;
    tg_jout      j;
    struct tm    tm;
    const char  *p, *name, *names;

    tg_jout_init(&j, buf, size);
    tg_jout_reserve(&j, TG_LOG_JSON_TAIL);

    gmtime_r(&now->tv_sec, &tm);
    n = strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(stamp + n, sizeof(stamp) - n, ".%03ldZ",
             (long) (now->tv_nsec / 1000000));

    tg_jout_lit(&j, "{\"time\":\"");
    tg_jout_lit(&j, stamp);
    tg_jout_lit(&j, "\",\"level\":");
    tg_jout_cstr(&j, level);
    tg_jout_lit(&j, ",\"pid\":");
    tg_jout_i64(&j, pid);
    tg_jout_lit(&j, ",\"event\":");
    tg_jout_cstr(&j, event);
    tg_jout_lit(&j, ",\"fields\":{");

    /* each field whole or not at all; a string value may be cut short */

    va_copy(aq, ap);

    p = fmt;
    names = fields != NULL ? fields : "";
    first = true;
    stop = 0;

    for (n = 1; !j.cut && !stop; n++) {
        p = tg_conv_next(p, &aq, &v, &stop);

        if (p == NULL) {
            break;
        }

        name = tg_field_name(&names, &nlen);

        if (v.kind == TG_VAL_NONE || (nlen == 1 && name[0] == '-')) {
            continue;
        }

        if (nlen == 0) {
            snprintf(argn, sizeof(argn), "arg%zu", n);
            name = argn;
            nlen = strlen(argn);
        }

        nlen = nlen < sizeof(key) - 1 ? nlen : sizeof(key) - 1;
        memcpy(key, name, nlen);
        key[nlen] = '\0';

        save = j.len;
        tg_jout_key(&j, key, first);
        before = j.len;

        switch (v.kind) {

        case TG_VAL_NUMBER:
            tg_jout_lit(&j, v.text);
            break;

        case TG_VAL_TEXT:
            tg_jout_cstr(&j, v.text);
            break;

        case TG_VAL_STRING:
            tg_jout_str(&j, v.str, v.len);
            break;

        default:
            tg_jout_lit(&j, "null");
            break;
        }

        if (j.len == before || (j.cut && before == save)) {
            j.len = save;
            j.cut = true;
            break;
        }

        first = false;
    }

    va_end(aq);

    cut = j.cut;
    j.cut = false;
    tg_jout_reserve(&j, TG_LOG_JSON_CLOSE);
    tg_jout_lit(&j, "}");

    save = j.len;
    tg_jout_lit(&j, ",\"msg\":");
    before = j.len;
    tg_jout_cstr(&j, msg);

    if (j.len == before) {
        j.len = save;
    }

    cut = cut || j.cut;

    tg_jout_end(&j, cut ? ",\"cut\":true}\n" : "}\n");

    return j.len;
}


/*
 * The next conversion of a printf format from p: its value taken from ap
 * into v; returns where the format goes on, NULL when it has no more.
 * *stop is set for a conversion this does not know (the values after it
 * cannot be found).
 */

static const char *
tg_conv_next(const char *p, va_list *ap, tg_val *v, int *stop)
{
    int          prec;
    char         spec[48], conv, lenmod[3];
    size_t       sl;
    const char  *digits;

    v->kind = TG_VAL_NONE;

    for ( ;; ) {
        p = strchr(p, '%');

        if (p == NULL) {
            return NULL;
        }

        if (p[1] == '%') {
            p += 2;
            continue;
        }

        break;
    }

    p++;
    sl = 0;
    spec[sl++] = '%';

    while (*p != '\0' && strchr("-+ #0", *p) != NULL) {
        if (sl < 8) {
            spec[sl++] = *p;
        }
        p++;
    }

    if (*p == '*') {
        sl += (size_t) snprintf(spec + sl, 12, "%d", va_arg(*ap, int));
        p++;
    } else {
        for (digits = p; *p >= '0' && *p <= '9'; p++) {
            if (p - digits < 6) {
                spec[sl++] = *p;
            }
        }
    }

    prec = -1;

    if (*p == '.') {
        spec[sl++] = *p++;

        if (*p == '*') {
            prec = va_arg(*ap, int);
            sl += (size_t) snprintf(spec + sl, 12, "%d", prec);
            p++;
        } else {
            prec = 0;

            for (digits = p; *p >= '0' && *p <= '9'; p++) {
                if (p - digits < 6) {
                    prec = prec * 10 + (*p - '0');
                    spec[sl++] = *p;
                }
            }
        }
    }

    memset(lenmod, 0, sizeof(lenmod));

    if ((p[0] == 'h' && p[1] == 'h') || (p[0] == 'l' && p[1] == 'l')) {
        lenmod[0] = p[0];
        lenmod[1] = p[1];
        p += 2;
    } else if (*p != '\0' && strchr("hlzjtL", *p) != NULL) {
        lenmod[0] = *p++;
    }

    spec[sl] = '\0';
    strcat(spec, lenmod);
    sl = strlen(spec);

    conv = *p;

    if (conv == '\0') {
        return NULL;
    }

    p++;
    spec[sl++] = conv;
    spec[sl] = '\0';

    switch (conv) {

    case 'd':
    case 'i':
        v->kind = TG_VAL_NUMBER;

        if (lenmod[0] == 'l' && lenmod[1] == 'l') {
            snprintf(v->text, sizeof(v->text), spec, va_arg(*ap, long long));
        } else if (lenmod[0] == 'l') {
            snprintf(v->text, sizeof(v->text), spec, va_arg(*ap, long));
        } else if (lenmod[0] == 'z') {
            snprintf(v->text, sizeof(v->text), spec, va_arg(*ap, ssize_t));
        } else if (lenmod[0] == 'j') {
            snprintf(v->text, sizeof(v->text), spec, va_arg(*ap, intmax_t));
        } else if (lenmod[0] == 't') {
            snprintf(v->text, sizeof(v->text), spec, va_arg(*ap, ptrdiff_t));
        } else {
            snprintf(v->text, sizeof(v->text), spec, va_arg(*ap, int));
        }

        break;

    case 'u':
    case 'x':
    case 'X':
    case 'o':
        v->kind = (conv == 'u') ? TG_VAL_NUMBER : TG_VAL_TEXT;

        if (lenmod[0] == 'l' && lenmod[1] == 'l') {
            snprintf(v->text, sizeof(v->text), spec,
                     va_arg(*ap, unsigned long long));
        } else if (lenmod[0] == 'l') {
            snprintf(v->text, sizeof(v->text), spec,
                     va_arg(*ap, unsigned long));
        } else if (lenmod[0] == 'z') {
            snprintf(v->text, sizeof(v->text), spec, va_arg(*ap, size_t));
        } else if (lenmod[0] == 'j') {
            snprintf(v->text, sizeof(v->text), spec, va_arg(*ap, uintmax_t));
        } else if (lenmod[0] == 't') {
            snprintf(v->text, sizeof(v->text), spec, va_arg(*ap, ptrdiff_t));
        } else {
            snprintf(v->text, sizeof(v->text), spec, va_arg(*ap, unsigned));
        }
        break;

    case 'c':
        v->kind = TG_VAL_STRING;
        v->text[0] = (char) va_arg(*ap, int);
        v->str = v->text;
        v->len = 1;
        break;

    case 's':
        v->str = va_arg(*ap, const char *);

        if (v->str == NULL) {
            v->kind = TG_VAL_NULL;
            break;
        }

        v->kind = TG_VAL_STRING;
        v->len = (prec >= 0) ? strnlen(v->str, (size_t) prec) : strlen(v->str);
        break;

    case 'p':
        v->kind = TG_VAL_TEXT;
        snprintf(v->text, sizeof(v->text), "%p", va_arg(*ap, void *));
        break;

    case 'f':
    case 'F':
    case 'e':
    case 'E':
    case 'g':
    case 'G':
    case 'a':
    case 'A':
        {
            double  d;

            /* long double is not used in policyd: its bits are the same */
            d = (lenmod[0] == 'L') ? (double) va_arg(*ap, long double)
                                   : va_arg(*ap, double);

            v->kind = (isfinite(d) && conv != 'a' && conv != 'A')
                      ? TG_VAL_NUMBER : TG_VAL_TEXT;

            if (lenmod[0] == 'L') {
                /* formatted as a double: spec has its L taken out */
                char  *l = strchr(spec, 'L');

                memmove(l, l + 1, strlen(l));
            }

            snprintf(v->text, sizeof(v->text), spec, d);

        }
        break;

    case 'n':
        (void) va_arg(*ap, void *);
        break;

    case 'm':
        /* glibc's strerror(errno): no value */
        break;

    default:
        *stop = 1;
        break;
    }

    /* a width pads with spaces; "+1", "007", "1." are no JSON numbers */

    if (v->kind == TG_VAL_NUMBER) {
        size_t  sp = strspn(v->text, " ");

        memmove(v->text, v->text + sp, strlen(v->text + sp) + 1);

        if (!tg_json_number(v->text)) {
            v->kind = TG_VAL_TEXT;
        }
    }

    return p;
}


/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */

static bool
tg_json_number(const char *s)
{
    if (*s == '-') {
        s++;
    }

    if (*s == '0') {
        s++;
    } else if (*s >= '1' && *s <= '9') {
        while (*s >= '0' && *s <= '9') {
            s++;
        }
    } else {
        return false;
    }

    if (*s == '.') {
        s++;

        if (*s < '0' || *s > '9') {
            return false;
        }

        while (*s >= '0' && *s <= '9') {
            s++;
        }
    }

    if (*s == 'e' || *s == 'E') {
        s++;

        if (*s == '+' || *s == '-') {
            s++;
        }

        if (*s < '0' || *s > '9') {
            return false;
        }

        while (*s >= '0' && *s <= '9') {
            s++;
        }
    }

    return *s == '\0';
}


/* the next space-separated word of *names (len 0 when there is none) */

static const char *
tg_field_name(const char **names, size_t *len)
{
    const char  *p = *names, *start;

    while (*p == ' ') {
        p++;
    }

    start = p;

    while (*p != '\0' && *p != ' ') {
        p++;
    }

    *len = (size_t) (p - start);
    *names = p;

    return start;
}
