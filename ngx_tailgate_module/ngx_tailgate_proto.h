
/*
 * Copyright (C) The Tailgate authors
 *
 * Frames of the policyd protocol and the names said in them: the leaf the
 * rest of the module builds its calls on.  No I/O, no request.
 */


#ifndef _NGX_TAILGATE_PROTO_H_INCLUDED_
#define _NGX_TAILGATE_PROTO_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "tailgate_protocol.h"


/* a frame being built in a caller's buffer */
typedef struct {
    u_char                      *start;
    u_char                      *pos;
    u_char                      *end;
    unsigned                     overflow:1;
} ngx_tailgate_frame_t;


/* a reply frame, parsed in place; valid only inside the call handler */
typedef struct {
    ngx_uint_t                   type;
    ngx_uint_t                   status;
    ngx_uint_t                   retry_after;
    uint32_t                     lease;
    ngx_msec_t                   cache_ms;
    size_t                       cache_max_bytes;
    ngx_uint_t                   fallback;   /* TG_FALLBACK_* */
    ngx_msec_t                   wait_ms;    /* QUEUED */
    ngx_uint_t                   stream_usage;   /* ask for a stream's */
    ngx_uint_t                   trace;      /* HELLO_OK: policyd traces */
    ngx_uint_t                   translate;  /* responses <-> chat */
    ngx_msec_t                   refresh_ms;     /* JWKS_STATE */

    /* this attempt's timeouts; 0: the location's */
    ngx_msec_t                   connect_ms;
    ngx_msec_t                   first_byte_ms;
    ngx_msec_t                   idle_ms;

    /* ngx_tailgate_upstream_t *, once the decision passed our checks */
    void                        *checked;

    ngx_str_t                    error_type;
    ngx_str_t                    error_code;
    ngx_str_t                    error_message;
    ngx_str_t                    provider;
    ngx_str_t                    route;
    ngx_str_t                    upstream;
    ngx_str_t                    scheme;
    ngx_str_t                    host;
    ngx_str_t                    path;
    ngx_str_t                    provider_model;
    ngx_str_t                    authorization;
    ngx_str_t                    reason;
    ngx_str_t                    zone;
    ngx_str_t                    adjust;
    ngx_str_t                    prices;     /* "IN CACHED OUT MIN CHARS" */
    ngx_str_t                    ratelimit;  /* for x-ratelimit-* */
    ngx_str_t                    drop_headers;   /* "name\n" lines */
    ngx_str_t                    user_agent;
    ngx_str_t                    next;       /* MODEL_LIST: more follow */
    ngx_str_t                    body;
} ngx_tailgate_reply_t;


/* what became of an attempt: TG_OUTCOMES, in its order */
typedef enum {
#define NGX_TAILGATE_OUTCOME_ID(id, name, fallback)                           \
    NGX_TAILGATE_OUTCOME_ ## id,
    TG_OUTCOMES(NGX_TAILGATE_OUTCOME_ID)
#undef NGX_TAILGATE_OUTCOME_ID
    NGX_TAILGATE_OUTCOMES
} ngx_tailgate_outcome_e;


typedef struct {
    ngx_str_t                    name;       /* in REPORT */
    ngx_uint_t                   fallback;   /* TG_FALLBACK_*, or 0 */
} ngx_tailgate_outcome_t;


extern const ngx_tailgate_outcome_t  ngx_tailgate_outcomes[];


void ngx_tailgate_frame_init(ngx_tailgate_frame_t *f, u_char *buf,
    size_t size, ngx_uint_t type);
ngx_int_t ngx_tailgate_frame_finish(ngx_tailgate_frame_t *f);
void ngx_tailgate_frame_set_id(u_char *frame, uint32_t id);
ngx_int_t ngx_tailgate_frame_parse(u_char *p, size_t len, uint32_t *id,
    ngx_tailgate_reply_t *reply, uint32_t *max_frame);


/*
 * The field writers, inline: a REPORT is some twenty fields, and a call
 * for each cost more than what each writes.
 */

static ngx_inline void
ngx_tailgate_put_u32(u_char *p, uint32_t v)
{
    p[0] = (u_char) (v >> 24);
    p[1] = (u_char) (v >> 16);
    p[2] = (u_char) (v >> 8);
    p[3] = (u_char) v;
}


/* where the value of a new field goes; NULL once the frame is full */

static ngx_inline u_char *
ngx_tailgate_frame_field(ngx_tailgate_frame_t *f, ngx_uint_t key, size_t len)
{
    u_char  *p;

    if (f->overflow
        || (size_t) (f->end - f->pos) < TG_FIELD_HEADER_SIZE + len)
    {
        f->overflow = 1;
        return NULL;
    }

    p = f->pos;
    p[0] = (u_char) key;
    ngx_tailgate_put_u32(p + 1, (uint32_t) len);

    f->pos = p + TG_FIELD_HEADER_SIZE + len;

    return p + TG_FIELD_HEADER_SIZE;
}


static ngx_inline void
ngx_tailgate_frame_str(ngx_tailgate_frame_t *f, ngx_uint_t key,
    const ngx_str_t *value)
{
    u_char  *p;

    p = ngx_tailgate_frame_field(f, key, value->len);

    /* an empty value may be ngx_null_string: memcpy() takes no NULL */

    if (p != NULL && value->len) {
        ngx_memcpy(p, value->data, value->len);
    }
}


static ngx_inline void
ngx_tailgate_frame_u32(ngx_tailgate_frame_t *f, ngx_uint_t key,
    uint32_t value)
{
    u_char  *p;

    p = ngx_tailgate_frame_field(f, key, 4);

    if (p != NULL) {
        ngx_tailgate_put_u32(p, value);
    }
}


static ngx_inline void
ngx_tailgate_frame_u8(ngx_tailgate_frame_t *f, ngx_uint_t key,
    ngx_uint_t value)
{
    u_char  *p;

    p = ngx_tailgate_frame_field(f, key, 1);

    if (p != NULL) {
        *p = (u_char) value;
    }
}


#endif /* _NGX_TAILGATE_PROTO_H_INCLUDED_ */
