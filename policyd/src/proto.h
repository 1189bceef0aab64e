/*
 * Frames of the module <-> policyd protocol (docs/protocol.md): parsing and
 * building on caller-owned byte buffers.  No I/O, no allocation; every
 * length is checked before anything is read.
 */

#ifndef TG_PROTO_H
#define TG_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tailgate_protocol.h"


/* results of tg_frame_header(); negative values are TG_ERR_* numbers */
#define TG_FRAME_OK      0
#define TG_FRAME_AGAIN   1      /* not enough bytes yet */


typedef struct {
    uint32_t        length;     /* bytes after the length field */
    uint8_t         version;
    uint8_t         type;
    uint32_t        id;
} tg_frame_hdr;


typedef struct {
    uint8_t         key;
    uint32_t        len;
    const uint8_t  *value;
} tg_field;


typedef struct {
    const uint8_t  *p;
    const uint8_t  *end;
} tg_field_iter;


typedef struct {
    uint8_t        *buf;
    size_t          cap;
    size_t          len;
    bool            overflow;
} tg_builder;


/*
 * Looks at the start of a frame in buf.  Returns TG_FRAME_AGAIN while fewer
 * than 10 bytes are there (but an oversized or undersized length is reported
 * as soon as its 4 bytes are), TG_FRAME_OK with *h filled, or
 * -TG_ERR_MALFORMED (length < 6), -TG_ERR_TOO_LARGE (length > max_frame; id
 * is then not read), -TG_ERR_VERSION.  Like the length field, max_frame
 * counts the bytes after the length field.
 */
int tg_frame_header(const uint8_t *buf, size_t len, uint32_t max_frame,
    tg_frame_hdr *h);

/* The fields of a frame whose header starts at frame (h->length + 4 bytes). */
void tg_fields_init(tg_field_iter *it, const uint8_t *frame,
    const tg_frame_hdr *h);

/* 1: *f is the next field, 0: no more fields, -1: malformed. */
int tg_fields_next(tg_field_iter *it, tg_field *f);

/* 0 and the value, or -1 when the field is not exactly 1 / 4 bytes. */
int tg_field_u8(const tg_field *f, uint8_t *out);
int tg_field_u32(const tg_field *f, uint32_t *out);


/* Starts a frame at buf: the header, with the length filled in by end. */
void tg_build_begin(tg_builder *b, uint8_t *buf, size_t cap, uint8_t type,
    uint32_t id);
void tg_build_u8(tg_builder *b, uint8_t key, uint8_t value);
void tg_build_u32(tg_builder *b, uint8_t key, uint32_t value);
void tg_build_str(tg_builder *b, uint8_t key, const void *value, size_t len);
void tg_build_cstr(tg_builder *b, uint8_t key, const char *value);

/* The frame's total size in bytes, or -1 if it did not fit in cap. */
long tg_build_end(tg_builder *b);


static inline uint32_t
tg_get_u32(const uint8_t *p)
{
    return ((uint32_t) p[0] << 24) | ((uint32_t) p[1] << 16)
           | ((uint32_t) p[2] << 8) | (uint32_t) p[3];
}


static inline void
tg_put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t) (v >> 24);
    p[1] = (uint8_t) (v >> 16);
    p[2] = (uint8_t) (v >> 8);
    p[3] = (uint8_t) v;
}


#endif /* TG_PROTO_H */
