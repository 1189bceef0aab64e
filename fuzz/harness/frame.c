
/*
 * Copyright (C) The Tailgate authors
 *
 * The frame parser on both sides of the protocol, on the same bytes.
 *
 * The input is what policyd writes on the socket: frames, each with its
 * length.  Each frame goes, in a buffer of exactly its size, to
 *
 *   - the module's ngx_tailgate_frame_parse() (ngx_tailgate_proto.c), as
 *     ngx_tailgate_peer_dispatch() calls it for a frame read from policyd;
 *   - policyd's tg_frame_header() and tg_fields_next() (policyd/src/proto.c),
 *     the reader of every frame policyd gets.
 *
 * Both must read it the same way (docs/protocol.md): the module refuses
 * exactly the frames whose framing policyd's reader refuses, or whose u32
 * fields the module knows are not 4 bytes long, and it keeps the last
 * value of every field it knows.  A reply parsed is then built again with
 * the module's builders and parsed again: the same reply.
 */


#include "fuzz_ngx.h"
#include "ngx_tailgate_proto.h"

#include "proto.h"              /* policyd's */

#include <string.h>


typedef struct {
    ngx_uint_t    key;
    size_t        offset;       /* in ngx_tailgate_reply_t */
} fuzz_field_t;


#define FUZZ_STR(key, member)                                                 \
    { key, offsetof(ngx_tailgate_reply_t, member) }

static const fuzz_field_t  fuzz_strs[] = {
    FUZZ_STR(TG_F_ERROR_TYPE, error_type),
    FUZZ_STR(TG_F_ERROR_CODE, error_code),
    FUZZ_STR(TG_F_ERROR_MESSAGE, error_message),
    FUZZ_STR(TG_F_PROVIDER, provider),
    FUZZ_STR(TG_F_ROUTE, route),
    FUZZ_STR(TG_F_UPSTREAM, upstream),
    FUZZ_STR(TG_F_SCHEME, scheme),
    FUZZ_STR(TG_F_HOST, host),
    FUZZ_STR(TG_F_PATH, path),
    FUZZ_STR(TG_F_PROVIDER_MODEL, provider_model),
    FUZZ_STR(TG_F_AUTHORIZATION, authorization),
    FUZZ_STR(TG_F_REASON, reason),
    FUZZ_STR(TG_F_ZONE, zone),
    FUZZ_STR(TG_F_ADJUST, adjust),
    FUZZ_STR(TG_F_PRICES, prices),
    FUZZ_STR(TG_F_RATELIMIT, ratelimit),
    FUZZ_STR(TG_F_DROP_HEADERS, drop_headers),
    FUZZ_STR(TG_F_USER_AGENT, user_agent),
    FUZZ_STR(TG_F_NEXT, next),
    FUZZ_STR(TG_F_BODY, body)
};

#define FUZZ_NSTRS  (sizeof(fuzz_strs) / sizeof(fuzz_strs[0]))

/* the u32 fields the module reads from a reply */
static const ngx_uint_t  fuzz_u32s[] = {
    TG_F_STATUS, TG_F_RETRY_AFTER, TG_F_LEASE, TG_F_MAX_FRAME,
    TG_F_CACHE_MS, TG_F_CACHE_MAX_BYTES, TG_F_FALLBACK, TG_F_WAIT_MS,
    TG_F_CONNECT_MS, TG_F_FIRST_BYTE_MS, TG_F_IDLE_MS,
    TG_F_REFRESH_MS
};

#define FUZZ_NU32S  (sizeof(fuzz_u32s) / sizeof(fuzz_u32s[0]))

/* the u8 field the module reads from a reply */
#define FUZZ_U8     TG_F_STREAM_USAGE


static void fuzz_frame(u_char *wire, size_t len);
static uint64_t fuzz_reply_u32(ngx_tailgate_reply_t *reply,
    uint32_t max_frame, ngx_uint_t key);
static void fuzz_rebuild(ngx_tailgate_reply_t *reply, uint32_t id,
    uint32_t max_frame);


int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_ngx_init();
    return 0;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    u_char    *wire;
    size_t     len;
    uint32_t   n;

    /* frames one after another, as long as they are whole */

    while (size >= TG_FRAME_LEN_SIZE) {
        n = tg_get_u32(data);

        if (n < TG_FRAME_BODY_HEADER_SIZE || n > TG_MAX_FRAME_LIMIT
            || size - TG_FRAME_LEN_SIZE < n)
        {
            /* the module closes the connection before it parses */
            break;
        }

        len = TG_FRAME_LEN_SIZE + n;

        wire = malloc(len);
        FUZZ_CHECK(wire != NULL);
        memcpy(wire, data, len);

        fuzz_frame(wire, len);

        free(wire);

        data += len;
        size -= len;
    }

    return 0;
}


static void
fuzz_frame(u_char *wire, size_t len)
{
    int                    rc, ok;
    size_t                 i, k;
    uint32_t               id, max_frame, v;
    ngx_int_t              mrc;
    ngx_str_t             *s;
    tg_field               f, last;
    tg_frame_hdr           h;
    tg_field_iter          it;
    ngx_tailgate_reply_t   reply;

    /* the module: the bytes after the length */

    max_frame = 0;

    mrc = ngx_tailgate_frame_parse(wire + TG_FRAME_LEN_SIZE,
                                   len - TG_FRAME_LEN_SIZE, &id, &reply,
                                   &max_frame);

    FUZZ_CHECK(mrc == NGX_OK || mrc == NGX_ERROR);

    /* policyd's reader, with room for any frame */

    rc = tg_frame_header(wire, len, TG_MAX_FRAME_LIMIT, &h);

    FUZZ_CHECK(rc == TG_FRAME_OK || rc == -TG_ERR_VERSION);
    FUZZ_CHECK(h.length == len - TG_FRAME_LEN_SIZE);

    ok = (rc == TG_FRAME_OK);

    if (ok) {
        tg_fields_init(&it, wire, &h);

        while ((rc = tg_fields_next(&it, &f)) == 1) {
            FUZZ_CHECK(f.value >= wire && f.value + f.len <= wire + len);

            for (k = 0; k < FUZZ_NU32S; k++) {
                if (f.key == fuzz_u32s[k] && f.len != 4) {
                    ok = 0;
                }
            }

            if (f.key == FUZZ_U8 && f.len != 1) {
                ok = 0;
            }
        }

        FUZZ_CHECK(rc == 0 || rc == -1);

        if (rc < 0) {
            ok = 0;
        }
    }

    /* the same frames refused on both sides */
    FUZZ_CHECK(ok == (mrc == NGX_OK));

    if (mrc != NGX_OK) {
        return;
    }

    FUZZ_CHECK(id == h.id);
    FUZZ_CHECK(reply.type == h.type);

    /* the last value of each field, where policyd's reader sees it */

    for (i = 0; i < FUZZ_NSTRS; i++) {
        s = (ngx_str_t *) ((u_char *) &reply + fuzz_strs[i].offset);

        tg_fields_init(&it, wire, &h);
        last.value = NULL;
        last.len = 0;

        while (tg_fields_next(&it, &f) == 1) {
            if (f.key == fuzz_strs[i].key) {
                last = f;
            }
        }

        FUZZ_CHECK((u_char *) last.value == s->data);
        FUZZ_CHECK(last.len == s->len);
    }

    for (k = 0; k < FUZZ_NU32S; k++) {
        tg_fields_init(&it, wire, &h);
        v = 0;

        while (tg_fields_next(&it, &f) == 1) {
            if (f.key == fuzz_u32s[k]) {
                FUZZ_CHECK(tg_field_u32(&f, &v) == 0);
            }
        }

        FUZZ_CHECK(fuzz_reply_u32(&reply, max_frame, fuzz_u32s[k]) == v);
    }

    tg_fields_init(&it, wire, &h);
    v = 0;

    while (tg_fields_next(&it, &f) == 1) {
        if (f.key == FUZZ_U8) {
            v = f.value[0];
        }
    }

    FUZZ_CHECK(reply.stream_usage == v);

    fuzz_rebuild(&reply, id, max_frame);
}


static uint64_t
fuzz_reply_u32(ngx_tailgate_reply_t *reply, uint32_t max_frame,
    ngx_uint_t key)
{
    switch (key) {
    case TG_F_STATUS:          return reply->status;
    case TG_F_RETRY_AFTER:     return reply->retry_after;
    case TG_F_LEASE:           return reply->lease;
    case TG_F_MAX_FRAME:       return max_frame;
    case TG_F_CACHE_MS:        return reply->cache_ms;
    case TG_F_CACHE_MAX_BYTES: return reply->cache_max_bytes;
    case TG_F_FALLBACK:        return reply->fallback;
    case TG_F_WAIT_MS:         return reply->wait_ms;
    case TG_F_CONNECT_MS:      return reply->connect_ms;
    case TG_F_FIRST_BYTE_MS:   return reply->first_byte_ms;
    case TG_F_IDLE_MS:         return reply->idle_ms;
    case TG_F_REFRESH_MS:      return reply->refresh_ms;
    }

    FUZZ_CHECK(0);
    return 0;
}


/* the reply built again with the module's builders: parsed, the same */

static void
fuzz_rebuild(ngx_tailgate_reply_t *reply, uint32_t id, uint32_t max_frame)
{
    u_char                *buf;
    size_t                 size, i, k;
    uint32_t               id2, max_frame2;
    ngx_str_t             *s, *s2;
    ngx_tailgate_frame_t   f;
    ngx_tailgate_reply_t   again;

    size = TG_FRAME_HEADER_SIZE + FUZZ_NU32S * (TG_FIELD_HEADER_SIZE + 4)
           + TG_FIELD_HEADER_SIZE + 1;

    for (i = 0; i < FUZZ_NSTRS; i++) {
        s = (ngx_str_t *) ((u_char *) reply + fuzz_strs[i].offset);
        size += TG_FIELD_HEADER_SIZE + s->len;
    }

    buf = malloc(size);
    FUZZ_CHECK(buf != NULL);

    ngx_tailgate_frame_init(&f, buf, size, reply->type);

    for (k = 0; k < FUZZ_NU32S; k++) {
        ngx_tailgate_frame_u32(&f, fuzz_u32s[k],
                               (uint32_t) fuzz_reply_u32(reply, max_frame,
                                                         fuzz_u32s[k]));
    }

    ngx_tailgate_frame_u8(&f, FUZZ_U8, reply->stream_usage);

    for (i = 0; i < FUZZ_NSTRS; i++) {
        s = (ngx_str_t *) ((u_char *) reply + fuzz_strs[i].offset);
        ngx_tailgate_frame_str(&f, fuzz_strs[i].key, s);
    }

    FUZZ_CHECK(ngx_tailgate_frame_finish(&f) == NGX_OK);
    FUZZ_CHECK((size_t) (f.pos - buf) == size);

    ngx_tailgate_frame_set_id(buf, id);

    max_frame2 = 0;

    FUZZ_CHECK(ngx_tailgate_frame_parse(buf + TG_FRAME_LEN_SIZE,
                                        size - TG_FRAME_LEN_SIZE, &id2,
                                        &again, &max_frame2)
               == NGX_OK);

    FUZZ_CHECK(id2 == id && again.type == reply->type);

    for (k = 0; k < FUZZ_NU32S; k++) {
        FUZZ_CHECK(fuzz_reply_u32(&again, max_frame2, fuzz_u32s[k])
                   == fuzz_reply_u32(reply, max_frame, fuzz_u32s[k]));
    }

    FUZZ_CHECK(again.stream_usage == reply->stream_usage);

    for (i = 0; i < FUZZ_NSTRS; i++) {
        s = (ngx_str_t *) ((u_char *) reply + fuzz_strs[i].offset);
        s2 = (ngx_str_t *) ((u_char *) &again + fuzz_strs[i].offset);

        FUZZ_CHECK(s->len == s2->len);
        FUZZ_CHECK(s->len == 0 || ngx_memcmp(s->data, s2->data, s->len) == 0);
    }

    free(buf);
}
