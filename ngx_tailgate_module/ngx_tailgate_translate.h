
/*
 * Copyright (C) The Tailgate authors
 *
 * Responses API <-> chat completions.  The request side is a concern of
 * the module (ngx_tailgate_translate_req.c, it answers refusals); the
 * answer's side is a leaf (ngx_tailgate_translate_resp.c): a chat answer's
 * bytes in, a Responses answer's bytes out, as they pass.
 */


#ifndef _NGX_TAILGATE_TRANSLATE_H_INCLUDED_
#define _NGX_TAILGATE_TRANSLATE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


/* the text of one answer kept for the events that repeat it whole */
#define NGX_TAILGATE_XLAT_TEXT_MAX   (4 * 1024 * 1024)
#define NGX_TAILGATE_XLAT_ITEMS      64
#define NGX_TAILGATE_XLAT_NAME       256     /* a call's id, its name */
#define NGX_TAILGATE_XLAT_ID         64


typedef struct ngx_tailgate_xlat_s  ngx_tailgate_xlat_t;


/*
 * sse: a chat event stream becomes a Responses event stream; else a chat
 * completion (JSON) becomes a response object.  id: the response's id
 * after "resp_" (letters and digits), model: the model the client asked
 * for (shown as the response's), created: its time.
 */
ngx_tailgate_xlat_t *ngx_tailgate_xlat_create(ngx_pool_t *pool,
    ngx_uint_t sse, ngx_str_t *id, ngx_str_t *model, time_t created,
    ngx_buf_tag_t tag);

/*
 * The answer's next bytes: what the client gets instead is linked at
 * **ll (ll moves to the new end).  NGX_OK or NGX_ERROR (no memory).
 */
ngx_int_t ngx_tailgate_xlat_feed(ngx_tailgate_xlat_t *x, u_char *p,
    u_char *end, ngx_chain_t ***ll);

/* the provider's answer ended: a stream without its end is a failure */
ngx_int_t ngx_tailgate_xlat_end(ngx_tailgate_xlat_t *x, ngx_chain_t ***ll);

/* a stream that ends here: response.failed, then an error event */
ngx_int_t ngx_tailgate_xlat_fail(ngx_tailgate_xlat_t *x, const char *code,
    const char *message, ngx_chain_t ***ll);

/* our buffers the client has taken, to be used again */
void ngx_tailgate_xlat_sent(ngx_tailgate_xlat_t *x, ngx_chain_t *out);

/*
 * How the answer stands: NGX_OK completed (or will be at its end: the
 * provider said why it finished), NGX_AGAIN not yet, NGX_ERROR failed
 * (the client was or will be told so).
 */
ngx_int_t ngx_tailgate_xlat_outcome(ngx_tailgate_xlat_t *x);


#endif /* _NGX_TAILGATE_TRANSLATE_H_INCLUDED_ */
