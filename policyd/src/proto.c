/*
 * Frame parsing and building.
 */

#include <string.h>

#include "proto.h"


int
tg_frame_header(const uint8_t *buf, size_t len, uint32_t max_frame,
    tg_frame_hdr *h)
{
    uint32_t  length;

    if (len < TG_FRAME_LEN_SIZE) {
        return TG_FRAME_AGAIN;
    }

    length = tg_get_u32(buf);

    if (length < TG_FRAME_BODY_HEADER_SIZE) {
        return -TG_ERR_MALFORMED;
    }

    if (length > max_frame) {
        return -TG_ERR_TOO_LARGE;
    }

    if (len < TG_FRAME_HEADER_SIZE) {
        return TG_FRAME_AGAIN;
    }

    h->length = length;
    h->version = buf[4];
    h->type = buf[5];
    h->id = tg_get_u32(buf + 6);

    if (h->version != TG_PROTO_VERSION) {
        return -TG_ERR_VERSION;
    }

    return TG_FRAME_OK;
}


void
tg_fields_init(tg_field_iter *it, const uint8_t *frame, const tg_frame_hdr *h)
{
    it->p = frame + TG_FRAME_HEADER_SIZE;
    it->end = frame + TG_FRAME_LEN_SIZE + h->length;
}


int
tg_fields_next(tg_field_iter *it, tg_field *f)
{
    size_t    left;
    uint32_t  len;

    left = (size_t) (it->end - it->p);

    if (left == 0) {
        return 0;
    }

    if (left < TG_FIELD_HEADER_SIZE) {
        return -1;
    }

    len = tg_get_u32(it->p + 1);

    if (len > left - TG_FIELD_HEADER_SIZE) {
        return -1;
    }

    f->key = it->p[0];
    f->len = len;
    f->value = it->p + TG_FIELD_HEADER_SIZE;

    it->p += TG_FIELD_HEADER_SIZE + len;

    return 1;
}


int
tg_field_u8(const tg_field *f, uint8_t *out)
{
    if (f->len != 1) {
        return -1;
    }

    *out = f->value[0];

    return 0;
}


int
tg_field_u32(const tg_field *f, uint32_t *out)
{
    if (f->len != 4) {
        return -1;
    }

    *out = tg_get_u32(f->value);

    return 0;
}


void
tg_build_begin(tg_builder *b, uint8_t *buf, size_t cap, uint8_t type,
    uint32_t id)
{
    b->buf = buf;
    b->cap = cap;
    b->len = TG_FRAME_HEADER_SIZE;
    b->overflow = cap < TG_FRAME_HEADER_SIZE;

    if (b->overflow) {
        return;
    }

    tg_put_u32(buf, 0);
    buf[4] = TG_PROTO_VERSION;
    buf[5] = type;
    tg_put_u32(buf + 6, id);
}


void
tg_build_str(tg_builder *b, uint8_t key, const void *value, size_t len)
{
    if (b->overflow
        || len > UINT32_MAX
        || b->cap - b->len < TG_FIELD_HEADER_SIZE
        || b->cap - b->len - TG_FIELD_HEADER_SIZE < len)
    {
        b->overflow = true;
        return;
    }

    b->buf[b->len] = key;
    tg_put_u32(b->buf + b->len + 1, (uint32_t) len);

    if (len > 0) {
        memcpy(b->buf + b->len + TG_FIELD_HEADER_SIZE, value, len);
    }

    b->len += TG_FIELD_HEADER_SIZE + len;
}


void
tg_build_cstr(tg_builder *b, uint8_t key, const char *value)
{
    tg_build_str(b, key, value, strlen(value));
}


void
tg_build_u8(tg_builder *b, uint8_t key, uint8_t value)
{
    tg_build_str(b, key, &value, 1);
}


void
tg_build_u32(tg_builder *b, uint8_t key, uint32_t value)
{
    uint8_t  v[4];

    tg_put_u32(v, value);
    tg_build_str(b, key, v, 4);
}


long
tg_build_end(tg_builder *b)
{
    if (b->overflow || b->len - TG_FRAME_LEN_SIZE > UINT32_MAX) {
        return -1;
    }

    tg_put_u32(b->buf, (uint32_t) (b->len - TG_FRAME_LEN_SIZE));

    return (long) b->len;
}
