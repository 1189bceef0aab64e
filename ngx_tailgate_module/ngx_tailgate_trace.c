
/*
 * Copyright (C) The Tailgate authors
 *
 * The request's trace.  A client's valid traceparent is continued: its
 * trace id, its span as the request span's parent, its sampled flag.
 * Otherwise the trace starts here, with $request_id as its trace id, so
 * that the access log and the trace name the request alike.  The request
 * span and each attempt's span get ids of the worker's own
 * (ngx_tailgate_ids.c); the provider is sent the attempt's.  Nothing is
 * made while policyd does not export traces: the client's traceparent
 * then passes as it came.
 */


#include "ngx_tailgate_common.h"
#include "ngx_tailgate_ids.h"
#include "ngx_tailgate_trace.h"


static void ngx_tailgate_trace_start(ngx_http_request_t *r,
    ngx_tailgate_trace_t *t);
static ngx_table_elt_t *ngx_tailgate_trace_client(ngx_http_request_t *r,
    ngx_tailgate_trace_t *t, ngx_uint_t *count);
static void ngx_tailgate_trace_span(ngx_tailgate_trace_t *t,
    ngx_uint_t attempt);
static void ngx_tailgate_span_id(u_char *span);


ngx_int_t
ngx_tailgate_trace_header(ngx_http_request_t *r, ngx_tailgate_trace_t *t,
    ngx_uint_t attempt, ngx_str_t *value)
{
    u_char           *p;
    ngx_uint_t        n;
    ngx_table_elt_t  *h;

    if (!ngx_tailgate_policyd_traces) {
        /* not ours to touch: the client's own, if it sent one */
        h = ngx_tailgate_trace_client(r, t, &n);

        if (h == NULL) {
            return NGX_DECLINED;
        }

        *value = h->value;
        return NGX_OK;
    }

    ngx_tailgate_trace_start(r, t);
    ngx_tailgate_trace_span(t, attempt);

    p = ngx_pnalloc(r->pool, NGX_TAILGATE_TRACEPARENT_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    value->data = p;
    value->len = ngx_tailgate_traceparent_write(p, t->trace_id, t->span,
                                                t->flags) - p;

    return NGX_OK;
}


void
ngx_tailgate_trace_fields(ngx_http_request_t *r, ngx_tailgate_trace_t *t,
    ngx_uint_t attempt, ngx_uint_t final, ngx_tailgate_frame_t *f)
{
    u_char     *p;
    uint64_t    start;
    ngx_str_t   s;
    u_char      buf[NGX_TAILGATE_TRACEPARENT_LEN];
    u_char      num[NGX_INT64_LEN];

    if (!ngx_tailgate_policyd_traces) {
        return;
    }

    ngx_tailgate_trace_start(r, t);
    ngx_tailgate_trace_span(t, attempt);

    s.data = buf;
    s.len = ngx_tailgate_traceparent_write(buf, t->trace_id, t->span,
                                           t->flags) - buf;
    ngx_tailgate_frame_str(f, TG_F_TRACEPARENT, &s);

    s.len = ngx_hex_dump(buf, t->request_span, 8) - buf;
    ngx_tailgate_frame_str(f, TG_F_PARENT_SPAN, &s);

    if (t->has_client) {
        s.len = ngx_hex_dump(buf, t->client_span, 8) - buf;
        ngx_tailgate_frame_str(f, TG_F_CLIENT_SPAN, &s);
    }

    start = (uint64_t) r->start_sec * 1000 + r->start_msec;
    p = ngx_sprintf(num, "%uL", start);
    s.data = num;
    s.len = p - num;
    ngx_tailgate_frame_str(f, TG_F_START_MS, &s);

    if (final) {
        ngx_tailgate_frame_u8(f, TG_F_TRACE_FINAL, 1);
        t->closed = 1;

    } else {
        t->open = 1;
    }
}


static void
ngx_tailgate_trace_start(ngx_http_request_t *r, ngx_tailgate_trace_t *t)
{
    u_char                         *hex;
    ngx_uint_t                      n, i;
    ngx_table_elt_t                *h;
    ngx_http_variable_value_t      *id;
    ngx_http_tailgate_main_conf_t  *tmcf;
    u_char                          fresh[NGX_TAILGATE_ID_LEN];

    if (t->started) {
        return;
    }

    t->started = 1;

    h = ngx_tailgate_trace_client(r, t, &n);

    /* two traceparents say nothing one can trust */

    if (h != NULL && n == 1
        && ngx_tailgate_traceparent_parse(h->value.data, h->value.len,
                                          t->trace_id, t->client_span,
                                          &t->flags)
           == NGX_OK)
    {
        t->has_client = 1;

        /* version 00 knows of "sampled" only; the rest is passed as 0 */
        t->flags &= 0x01;

    } else {
        t->flags = 0x01;

        tmcf = ngx_http_get_module_main_conf(r, ngx_http_tailgate_module);

        id = (tmcf->request_id_var != NGX_ERROR)
             ? ngx_tailgate_request_id(r, tmcf->request_id_var) : NULL;

        hex = (id && !id->not_found && id->len == 32) ? id->data : NULL;

        for (i = 0; hex != NULL && i < 32; i++) {
            if (ngx_hextoi(&hex[i], 1) == NGX_ERROR) {
                hex = NULL;
            }
        }

        if (hex != NULL) {
            for (i = 0; i < 16; i++) {
                t->trace_id[i] = (u_char) ngx_hextoi(&hex[2 * i], 2);
            }

        } else {
            (void) ngx_tailgate_id(fresh);
            ngx_memcpy(t->trace_id, fresh, 16);
        }

        /* an all-zero trace id is no trace id */
        t->trace_id[15] |= (t->trace_id[15] == 0 && t->trace_id[0] == 0);
    }

    ngx_tailgate_span_id(t->request_span);
}


/*
 * The client's traceparent, and how many it sent: as the access phase saw
 * them, else from the headers as they are now.
 */

static ngx_table_elt_t *
ngx_tailgate_trace_client(ngx_http_request_t *r, ngx_tailgate_trace_t *t,
    ngx_uint_t *count)
{
    ngx_table_elt_t         *h, *first;
    ngx_tailgate_headers_t   it;

    if (t->client_known) {
        *count = t->nclient;
        return t->client;
    }

    first = NULL;
    *count = 0;

    ngx_tailgate_headers_init(&it, &r->headers_in.headers);

    while ((h = ngx_tailgate_headers_next(&it)) != NULL) {
        if (h->key.len == sizeof("traceparent") - 1
            && ngx_strncmp(h->lowcase_key, "traceparent",
                           sizeof("traceparent") - 1) == 0)
        {
            first = first ? first : h;
            (*count)++;
        }
    }

    return first;
}


/* the span of this attempt: made once, when it is first asked for */

static void
ngx_tailgate_trace_span(ngx_tailgate_trace_t *t, ngx_uint_t attempt)
{
    if (t->span_made && t->span_attempt == attempt) {
        return;
    }

    ngx_tailgate_span_id(t->span);
    t->span_attempt = attempt;
    t->span_made = 1;
}


static void
ngx_tailgate_span_id(u_char *span)
{
    u_char  fresh[NGX_TAILGATE_ID_LEN];

    if (ngx_tailgate_id(fresh) != NGX_OK) {
        /* no key: still an id, if not an unpredictable one */
        ngx_memzero(fresh, sizeof(fresh));
        fresh[0] = (u_char) ngx_random();
    }

    ngx_memcpy(span, fresh, 8);

    /* never all zero, which W3C reads as none */
    span[7] |= (span[0] == 0);
}
