
/*
 * Copyright (C) The Tailgate authors
 *
 * What a provider must not learn of the client: the request headers the
 * decision names (drop_headers: its software and platform, sessions,
 * cookies, ...), and the User-Agent sent instead of the client's.  Body
 * fields go through the step's edits (ngx_tailgate_adjust.c), which
 * policyd merged the scrub into.
 *
 * nginx's proxy builds the provider's request from r->headers_in.headers.
 * For an attempt that scrubs, that list becomes one of the headers kept
 * (the elements copied, their strings shared), and the client's list is
 * put back when the response starts (the header filter) or before the
 * next attempt's decision is applied: r->headers_in's pointers
 * (user_agent, cookies, ...) never pointed into the copy, so logs and
 * variables still see what the client sent.
 */


#include "ngx_tailgate_common.h"


static ngx_uint_t ngx_tailgate_scrub_match(ngx_table_elt_t *h,
    ngx_str_t *names);


ngx_int_t
ngx_tailgate_scrub_headers(ngx_http_request_t *r, ngx_http_tailgate_ctx_t *ctx,
    ngx_str_t *names, ngx_str_t *user_agent)
{
    ngx_uint_t               n, dropped;
    ngx_list_t               kept;
    ngx_table_elt_t         *h, *copy;
    ngx_tailgate_headers_t   it;

    ngx_tailgate_scrub_restore(r, ctx);

    if (names->len == 0 && user_agent->len == 0) {
        return NGX_OK;
    }

    n = 0;
    ngx_tailgate_headers_init(&it, &r->headers_in.headers);

    while ((h = ngx_tailgate_headers_next(&it)) != NULL) {
        n++;
    }

    if (ngx_list_init(&kept, r->pool, n + 1, sizeof(ngx_table_elt_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    dropped = 0;
    ngx_tailgate_headers_init(&it, &r->headers_in.headers);

    while ((h = ngx_tailgate_headers_next(&it)) != NULL) {

        if (ngx_tailgate_scrub_match(h, names)
            || (user_agent->len
                && h->key.len == sizeof("user-agent") - 1
                && ngx_strncmp(h->lowcase_key, "user-agent",
                               sizeof("user-agent") - 1) == 0))
        {
            dropped++;
            continue;
        }

        copy = ngx_list_push(&kept);
        if (copy == NULL) {
            return NGX_ERROR;
        }

        *copy = *h;
    }

    if (user_agent->len) {
        copy = ngx_list_push(&kept);
        if (copy == NULL) {
            return NGX_ERROR;
        }

        ngx_memzero(copy, sizeof(ngx_table_elt_t));
        ngx_str_set(&copy->key, "User-Agent");
        copy->value = *user_agent;
        copy->lowcase_key = (u_char *) "user-agent";
        copy->hash = ngx_hash_key(copy->lowcase_key, copy->key.len);
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "tailgate: %ui request headers not sent to provider "
                   "\"%V\"", dropped, &ctx->provider);

    ctx->client_headers = r->headers_in.headers;
    ctx->headers_scrubbed = 1;

    /* a traceparent this provider must not see is gone from the list */
    ctx->trace.client_known = 0;

    r->headers_in.headers = kept;

    /* a list of one part ends in itself: at its new address */

    if (r->headers_in.headers.last == &kept.part) {
        r->headers_in.headers.last = &r->headers_in.headers.part;
    }

    return NGX_OK;
}


/* the client's headers again: for logs, the next attempt, the answer */

void
ngx_tailgate_scrub_restore(ngx_http_request_t *r, ngx_http_tailgate_ctx_t *ctx)
{
    if (!ctx->headers_scrubbed) {
        return;
    }

    /* its last part is at home again (or on the heap) */

    r->headers_in.headers = ctx->client_headers;
    ctx->headers_scrubbed = 0;
}


/* "name\n" lines, lowercase; "prefix*\n" matches what starts so */

static ngx_uint_t
ngx_tailgate_scrub_match(ngx_table_elt_t *h, ngx_str_t *names)
{
    u_char  *p, *end, *eol;
    size_t   len;

    p = names->data;
    end = p + names->len;

    while (p < end) {
        eol = ngx_strlchr(p, end, '\n');
        if (eol == NULL) {
            eol = end;
        }

        len = eol - p;

        if (len && p[len - 1] == '*') {
            if (h->key.len >= len - 1
                && ngx_strncmp(h->lowcase_key, p, len - 1) == 0)
            {
                return 1;
            }

        } else if (len == h->key.len
                   && ngx_strncmp(h->lowcase_key, p, len) == 0)
        {
            return 1;
        }

        p = eol + 1;
    }

    return 0;
}
