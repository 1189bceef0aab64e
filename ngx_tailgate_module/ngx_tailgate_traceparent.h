
/*
 * Copyright (C) The Tailgate authors
 *
 * The W3C Trace Context traceparent header, read and written: the leaf
 * ngx_tailgate_trace.c builds on, and the fuzzer calls.
 */


#ifndef _NGX_TAILGATE_TRACEPARENT_H_INCLUDED_
#define _NGX_TAILGATE_TRACEPARENT_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


#define NGX_TAILGATE_TRACEPARENT_LEN  55      /* version 00 */


/*
 * A traceparent's value: NGX_OK with its trace id (16 bytes), parent span
 * id (8) and flags; NGX_DECLINED when W3C Trace Context refuses it:
 * version ff, a version 00 of any length but 55, a later version whose
 * 56th byte is not '-', upper-case or other non-hex digits, an all-zero
 * trace or span id.
 */
ngx_int_t ngx_tailgate_traceparent_parse(const u_char *p, size_t len,
    u_char *trace_id, u_char *span_id, u_char *flags);

/* "00-TRACE-SPAN-FLAGS" into p (55 bytes): the end. */
u_char *ngx_tailgate_traceparent_write(u_char *p, const u_char *trace_id,
    const u_char *span_id, u_char flags);


#endif /* _NGX_TAILGATE_TRACEPARENT_H_INCLUDED_ */
