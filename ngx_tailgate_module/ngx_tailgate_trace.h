
/*
 * Copyright (C) The Tailgate authors
 *
 * W3C Trace Context for a policyd that exports traces: the client's
 * traceparent continued, or a trace started; each attempt a span of its
 * own, child of the request's; what REPORT says of them.
 */


#ifndef _NGX_TAILGATE_TRACE_H_INCLUDED_
#define _NGX_TAILGATE_TRACE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_tailgate_proto.h"
#include "ngx_tailgate_traceparent.h"


typedef struct {
    u_char                       trace_id[16];
    u_char                       request_span[8];
    u_char                       client_span[8];     /* its parent */
    u_char                       span[8];            /* the attempt's */
    ngx_uint_t                   span_attempt;       /* span is for it */

    /*
     * The client's traceparent (the first) and how many it sent, as the
     * access phase's walk of the request headers saw them: known is
     * cleared when a scrub puts another list in their place.
     */
    ngx_table_elt_t             *client;
    ngx_uint_t                   nclient;

    u_char                       flags;
    unsigned                     client_known:1;
    unsigned                     started:1;
    unsigned                     span_made:1;
    unsigned                     has_client:1;
    unsigned                     open:1;     /* an attempt was reported */
    unsigned                     closed:1;   /* the request's span ended */
} ngx_tailgate_trace_t;


/*
 * $tailgate_traceparent: this attempt's traceparent when policyd exports
 * traces; else the client's own, untouched (proxy.conf sets the header
 * from it either way).  NGX_DECLINED when there is none.
 */
ngx_int_t ngx_tailgate_trace_header(ngx_http_request_t *r,
    ngx_tailgate_trace_t *t, ngx_uint_t attempt, ngx_str_t *value);

/*
 * The trace fields of this attempt's REPORT (or a SPAN_END), when policyd
 * exports traces; final: no attempt follows, the request's span ends.
 */
void ngx_tailgate_trace_fields(ngx_http_request_t *r,
    ngx_tailgate_trace_t *t, ngx_uint_t attempt, ngx_uint_t final,
    ngx_tailgate_frame_t *f);

/* Whether a SPAN_END is owed: an attempt reported, the request's not. */
#define ngx_tailgate_trace_owed(t)  ((t)->open && !(t)->closed)


#endif /* _NGX_TAILGATE_TRACE_H_INCLUDED_ */
