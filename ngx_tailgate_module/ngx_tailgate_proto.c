
/*
 * Copyright (C) The Tailgate authors
 *
 * Frames of the policyd protocol (docs/protocol.md): built into a caller's
 * buffer, parsed in place.  No I/O here.
 */


#include "ngx_tailgate_proto.h"


static uint32_t ngx_tailgate_get_u32(u_char *p);


const ngx_tailgate_outcome_t  ngx_tailgate_outcomes[] = {
#define NGX_TAILGATE_OUTCOME(id, name, fallback)                              \
    { ngx_string(name), fallback },
    TG_OUTCOMES(NGX_TAILGATE_OUTCOME)
#undef NGX_TAILGATE_OUTCOME
};


void
ngx_tailgate_frame_init(ngx_tailgate_frame_t *f, u_char *buf, size_t size,
    ngx_uint_t type)
{
    f->start = buf;
    f->end = buf + size;
    f->overflow = (size < TG_FRAME_HEADER_SIZE);

    if (f->overflow) {
        f->pos = buf;
        return;
    }

    /* the length and the id are filled in later */
    ngx_memzero(buf, TG_FRAME_HEADER_SIZE);
    buf[4] = TG_PROTO_VERSION;
    buf[5] = (u_char) type;

    f->pos = buf + TG_FRAME_HEADER_SIZE;
}


ngx_int_t
ngx_tailgate_frame_finish(ngx_tailgate_frame_t *f)
{
    if (f->overflow) {
        return NGX_ERROR;
    }

    ngx_tailgate_put_u32(f->start,
                         (uint32_t) (f->pos - f->start - TG_FRAME_LEN_SIZE));

    return NGX_OK;
}


void
ngx_tailgate_frame_set_id(u_char *frame, uint32_t id)
{
    ngx_tailgate_put_u32(frame + 6, id);
}


/*
 * p points past the length field, len is that field's value (already
 * checked against our maximum).  Strings in the reply point into p.
 */

ngx_int_t
ngx_tailgate_frame_parse(u_char *p, size_t len, uint32_t *id,
    ngx_tailgate_reply_t *reply, uint32_t *max_frame)
{
    u_char     *end, *value;
    uint32_t    vlen, v;
    ngx_str_t  *s;
    ngx_uint_t  key;

    if (len < TG_FRAME_BODY_HEADER_SIZE || p[0] != TG_PROTO_VERSION) {
        return NGX_ERROR;
    }

    ngx_memzero(reply, sizeof(ngx_tailgate_reply_t));

    reply->type = p[1];
    *id = ngx_tailgate_get_u32(p + 2);

    end = p + len;
    p += TG_FRAME_BODY_HEADER_SIZE;

    while (p < end) {

        if ((size_t) (end - p) < TG_FIELD_HEADER_SIZE) {
            return NGX_ERROR;
        }

        key = p[0];
        vlen = ngx_tailgate_get_u32(p + 1);
        value = p + TG_FIELD_HEADER_SIZE;

        if (vlen > (size_t) (end - value)) {
            return NGX_ERROR;
        }

        p = value + vlen;
        s = NULL;

        switch (key) {

        case TG_F_STATUS:
        case TG_F_RETRY_AFTER:
        case TG_F_LEASE:
        case TG_F_MAX_FRAME:
        case TG_F_CACHE_MS:
        case TG_F_CACHE_MAX_BYTES:
        case TG_F_FALLBACK:
        case TG_F_WAIT_MS:
        case TG_F_CONNECT_MS:
        case TG_F_FIRST_BYTE_MS:
        case TG_F_IDLE_MS:
        case TG_F_REFRESH_MS:
            if (vlen != 4) {
                return NGX_ERROR;
            }

            v = ngx_tailgate_get_u32(value);

            switch (key) {
            case TG_F_STATUS:          reply->status = v; break;
            case TG_F_RETRY_AFTER:     reply->retry_after = v; break;
            case TG_F_LEASE:           reply->lease = v; break;
            case TG_F_CACHE_MS:        reply->cache_ms = v; break;
            case TG_F_CACHE_MAX_BYTES: reply->cache_max_bytes = v; break;
            case TG_F_FALLBACK:        reply->fallback = v; break;
            case TG_F_WAIT_MS:         reply->wait_ms = v; break;
            case TG_F_CONNECT_MS:      reply->connect_ms = v; break;
            case TG_F_FIRST_BYTE_MS:   reply->first_byte_ms = v; break;
            case TG_F_IDLE_MS:         reply->idle_ms = v; break;
            case TG_F_REFRESH_MS:      reply->refresh_ms = v; break;
            default:                   *max_frame = v;
            }

            continue;

        case TG_F_ERROR_TYPE:      s = &reply->error_type; break;
        case TG_F_ERROR_CODE:      s = &reply->error_code; break;
        case TG_F_ERROR_MESSAGE:   s = &reply->error_message; break;
        case TG_F_PROVIDER:        s = &reply->provider; break;
        case TG_F_ROUTE:           s = &reply->route; break;
        case TG_F_UPSTREAM:        s = &reply->upstream; break;
        case TG_F_SCHEME:          s = &reply->scheme; break;
        case TG_F_HOST:            s = &reply->host; break;
        case TG_F_PATH:            s = &reply->path; break;
        case TG_F_PROVIDER_MODEL:  s = &reply->provider_model; break;
        case TG_F_AUTHORIZATION:   s = &reply->authorization; break;
        case TG_F_REASON:          s = &reply->reason; break;
        case TG_F_ZONE:            s = &reply->zone; break;
        case TG_F_ADJUST:          s = &reply->adjust; break;
        case TG_F_PRICES:          s = &reply->prices; break;
        case TG_F_RATELIMIT:       s = &reply->ratelimit; break;
        case TG_F_DROP_HEADERS:    s = &reply->drop_headers; break;
        case TG_F_USER_AGENT:      s = &reply->user_agent; break;
        case TG_F_NEXT:            s = &reply->next; break;
        case TG_F_BODY:            s = &reply->body; break;

        case TG_F_STREAM_USAGE:
        case TG_F_TRACE:
            if (vlen != 1) {
                return NGX_ERROR;
            }

            if (key == TG_F_TRACE) {
                reply->trace = value[0];
            } else {
                reply->stream_usage = value[0];
            }
            continue;

        case TG_F_TRANSLATE:
            if (vlen != 1) {
                return NGX_ERROR;
            }

            reply->translate = value[0];
            continue;

        default:
            /* unknown fields are skipped: peers may add new ones */
            continue;
        }

        s->len = vlen;
        s->data = value;
    }

    return NGX_OK;
}


static uint32_t
ngx_tailgate_get_u32(u_char *p)
{
    return ((uint32_t) p[0] << 24) | ((uint32_t) p[1] << 16)
           | ((uint32_t) p[2] << 8) | (uint32_t) p[3];
}
