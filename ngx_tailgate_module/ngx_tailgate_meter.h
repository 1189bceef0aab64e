
/*
 * Copyright (C) The Tailgate authors
 *
 * What a provider's answer used: read as it passes (ngx_tailgate_meter.c).
 */


#ifndef _NGX_TAILGATE_METER_H_INCLUDED_
#define _NGX_TAILGATE_METER_H_INCLUDED_


#include "ngx_tailgate_common.h"


/* the answer starts (header filter): whether and how to read it */
void ngx_tailgate_meter_start(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx);

/*
 * The body filter's part: reads in; *out is what goes on, in itself or, for
 * a stream that carries a usage chunk the client did not ask for, a chain
 * without it.  ngx_tailgate_meter_sent() after the next filter.
 */
ngx_int_t ngx_tailgate_meter_body(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx, ngx_chain_t *in, ngx_chain_t **out);
void ngx_tailgate_meter_sent(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx, ngx_chain_t *out);

/* the events of a stream that ended so far (a Responses stream numbers
 * them from 0: the next one's sequence_number) */
ngx_uint_t ngx_tailgate_meter_events(ngx_http_tailgate_ctx_t *ctx);

/* the attempt's usage, worked out once: what the provider said or more */
ngx_tailgate_tokens_t *ngx_tailgate_meter_tokens(ngx_http_request_t *r,
    ngx_http_tailgate_ctx_t *ctx);

/* the cost in pico-units of the currency (1e-12); 0 with no prices */
uint64_t ngx_tailgate_meter_cost(ngx_http_tailgate_ctx_t *ctx,
    ngx_tailgate_tokens_t *t);


#endif /* _NGX_TAILGATE_METER_H_INCLUDED_ */
