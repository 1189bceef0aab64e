
/*
 * Copyright (C) The Tailgate authors
 *
 * nginx's own error pages, on the gateway's URLs, as OpenAI errors.
 *
 * nginx answers a bad request line, a URI too long, headers it refuses
 * (Host or Authorization twice, Content-Length with Transfer-Encoding, an
 * unknown Transfer-Encoding, headers too large), TRACE, a chunked body
 * that does not parse, with an HTML page of its own.  Most of these are
 * found while the headers are read, before a location is chosen: a
 * location's error_page never sees them, and the server's error_page
 * would change the pages of every other location of a server that
 * locations.conf is only included into.  So these filters look at each
 * of nginx's special responses (r->err_status set, no error_page that
 * redirected, a text/html page or none) of a request in one of the
 * gateway's locations - or, when no location was chosen yet, whose URI
 * one of the gateway's locations would take - and put the OpenAI error of
 * that status in the page's place.  The status and the headers stay
 * nginx's (Connection: close, Allow); only the body, its type and its
 * length change, and a HEAD request still gets no body.  An error_page
 * that sends the request elsewhere is the user's choice and stays.
 */


#include "ngx_tailgate_common.h"
#include "ngx_tailgate_ctx.h"
#include "ngx_tailgate_response.h"


/* a prefix or exact location of a server, and whether it is ours */
typedef struct {
    ngx_str_t                    name;
    unsigned                     exact:1;
    unsigned                     gateway:1;
} ngx_tailgate_location_t;


static ngx_int_t ngx_tailgate_special_locations(ngx_conf_t *cf,
    ngx_array_t **locations, ngx_http_location_tree_node_t *node);
static ngx_uint_t ngx_tailgate_special_applies(ngx_http_request_t *r);
static ngx_uint_t ngx_tailgate_special_gateway(ngx_http_core_loc_conf_t *clcf,
    ngx_http_tailgate_loc_conf_t *tlcf);
static ngx_int_t ngx_tailgate_special_header_filter(ngx_http_request_t *r);
static ngx_int_t ngx_tailgate_special_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;


/*
 * The filters, and for each server{} its prefix and exact locations, so
 * that a request refused before its location was chosen can be told to
 * be one for the gateway.  Called after nginx built the location trees.
 */

ngx_int_t
ngx_tailgate_special_init(ngx_conf_t *cf)
{
    ngx_uint_t                     s, i, gateway;
    ngx_array_t                   *locations;
    ngx_tailgate_location_t       *loc;
    ngx_http_core_srv_conf_t     **cscfp;
    ngx_http_core_loc_conf_t      *clcf;
    ngx_http_core_main_conf_t     *cmcf;
    ngx_http_tailgate_loc_conf_t  *tlcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);
    cscfp = cmcf->servers.elts;

    for (s = 0; s < cmcf->servers.nelts; s++) {
        clcf = cscfp[s]->ctx->loc_conf[ngx_http_core_module.ctx_index];
        tlcf = cscfp[s]->ctx->loc_conf[ngx_http_tailgate_module.ctx_index];

        locations = NULL;

        if (ngx_tailgate_special_locations(cf, &locations,
                                           clcf->static_locations)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        /* a server without a location of the gateway's needs no look-up */

        gateway = 0;

        if (locations) {
            loc = locations->elts;

            for (i = 0; i < locations->nelts; i++) {
                gateway |= loc[i].gateway;
            }
        }

        tlcf->locations = gateway ? locations : NULL;
    }

    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_tailgate_special_header_filter;

    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_tailgate_special_body_filter;

    return NGX_OK;
}


/* every location of a static location tree, nested ones too */

static ngx_int_t
ngx_tailgate_special_locations(ngx_conf_t *cf, ngx_array_t **locations,
    ngx_http_location_tree_node_t *node)
{
    ngx_uint_t                     i;
    ngx_tailgate_location_t       *loc;
    ngx_http_core_loc_conf_t      *clcf[2];
    ngx_http_tailgate_loc_conf_t  *tlcf;

    if (node == NULL) {
        return NGX_OK;
    }

    if (ngx_tailgate_special_locations(cf, locations, node->left) != NGX_OK
        || ngx_tailgate_special_locations(cf, locations, node->right)
           != NGX_OK
        || ngx_tailgate_special_locations(cf, locations, node->tree)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    clcf[0] = node->exact;
    clcf[1] = node->inclusive;

    for (i = 0; i < 2; i++) {
        if (clcf[i] == NULL) {
            continue;
        }

        if (*locations == NULL) {
            *locations = ngx_array_create(cf->pool, 8,
                                          sizeof(ngx_tailgate_location_t));
            if (*locations == NULL) {
                return NGX_ERROR;
            }
        }

        loc = ngx_array_push(*locations);
        if (loc == NULL) {
            return NGX_ERROR;
        }

        tlcf = clcf[i]->loc_conf[ngx_http_tailgate_module.ctx_index];

        loc->name = clcf[i]->name;
        loc->exact = clcf[i]->exact_match;
        loc->gateway = ngx_tailgate_special_gateway(clcf[i], tlcf);
    }

    if (node->inclusive
        && ngx_tailgate_special_locations(cf, locations,
                                          node->inclusive->static_locations)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* a location the gateway answers in: "tailgate on" or one of its own */

static ngx_uint_t
ngx_tailgate_special_gateway(ngx_http_core_loc_conf_t *clcf,
    ngx_http_tailgate_loc_conf_t *tlcf)
{
    return tlcf->enable || tlcf->status
           || clcf->handler == ngx_tailgate_health_handler
           || clcf->handler == ngx_tailgate_error_page_handler;
}


/*
 * Whether the request is the gateway's: its location is, or no location
 * was chosen yet (r->loc_conf is still the server's) and the one nginx
 * would choose for its URI is - the exact one, else the longest prefix.
 * Regular expression locations are not tried.
 */

static ngx_uint_t
ngx_tailgate_special_applies(ngx_http_request_t *r)
{
    u_char                        *end;
    ngx_str_t                      uri;
    ngx_uint_t                     i;
    ngx_tailgate_location_t       *loc, *best;
    ngx_http_core_srv_conf_t      *cscf;
    ngx_http_core_loc_conf_t      *clcf;
    ngx_http_tailgate_loc_conf_t  *tlcf;

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);
    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_tailgate_module);

    if (ngx_tailgate_special_gateway(clcf, tlcf)) {
        return 1;
    }

    cscf = ngx_http_get_module_srv_conf(r, ngx_http_core_module);

    if (tlcf->locations == NULL || r->loc_conf != cscf->ctx->loc_conf) {
        return 0;
    }

    /*
     * The URI as parsed, or when the request line did not parse (or was
     * too long), as far as it came: it still starts like the URI.
     */

    uri = r->uri;

    if (uri.len == 0) {
        if (r->uri_start == NULL || r->header_in == NULL
            || r->uri_start < r->header_in->start
            || r->uri_start >= r->header_in->last)
        {
            return 0;
        }

        end = r->uri_end;

        if (end == NULL || end < r->uri_start || end > r->header_in->last) {
            end = r->header_in->last;
        }

        uri.data = r->uri_start;
        uri.len = end - r->uri_start;
    }

    loc = tlcf->locations->elts;
    best = NULL;

    for (i = 0; i < tlcf->locations->nelts; i++) {

        if (uri.len < loc[i].name.len
            || ngx_strncmp(uri.data, loc[i].name.data, loc[i].name.len) != 0)
        {
            continue;
        }

        if (loc[i].exact) {
            if (uri.len == loc[i].name.len) {
                return loc[i].gateway;
            }

            continue;
        }

        if (best == NULL || loc[i].name.len > best->name.len) {
            best = &loc[i];
        }
    }

    return best ? best->gateway : 0;
}


static ngx_int_t
ngx_tailgate_special_header_filter(ngx_http_request_t *r)
{
    ngx_str_t                *type;
    ngx_uint_t                status;
    ngx_tailgate_error_e      err;
    ngx_http_tailgate_ctx_t  *ctx;

    type = &r->headers_out.content_type;


    /*
     * nginx's page: an error status of its own (ngx_http_send_header()
     * made it headers_out.status too), no error_page that sent the request
     * elsewhere (r->internal), text/html or no type for a status it has
     * no page for.
     */

    if (r != r->main
        || r->err_status < NGX_HTTP_BAD_REQUEST
        || r->internal
        || !(type->len == 0
             || (type->len == sizeof("text/html") - 1
                 && ngx_strncmp(type->data, "text/html", type->len) == 0))
        || !ngx_tailgate_special_applies(r))
    {
        return ngx_http_next_header_filter(r);
    }

    status = r->err_status;
    err = ngx_tailgate_error_of(status);

    if (err == NGX_TAILGATE_ERR_INTERNAL && status < 500) {
        err = NGX_TAILGATE_ERR_BAD_REQUEST;
    }

    ctx = ngx_http_tailgate_get_ctx(r);

    if (ctx == NULL) {
        ctx = ngx_http_tailgate_ctx_create(r);
        if (ctx == NULL) {
            return NGX_ERROR;
        }
    }

    if (ngx_tailgate_error_json(r->pool, err, &ctx->special) != NGX_OK) {
        return NGX_ERROR;
    }

    ctx->special_sent = 0;

    ngx_str_set(type, "application/json");
    r->headers_out.content_type_len = type->len;
    r->headers_out.content_type_lowcase = NULL;
    r->headers_out.content_length_n = ctx->special.len;

    if (r->headers_out.content_length) {
        r->headers_out.content_length->hash = 0;
        r->headers_out.content_length = NULL;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "tailgate: nginx's %ui page as JSON", status);

    return ngx_http_next_header_filter(r);
}


/* the page's buffers go, the JSON goes in their place, once */

static ngx_int_t
ngx_tailgate_special_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    ngx_buf_t                *b;
    ngx_chain_t              *cl, out;
    ngx_http_tailgate_ctx_t  *ctx;

    if (in == NULL || r != r->main) {
        return ngx_http_next_body_filter(r, in);
    }

    ctx = ngx_http_tailgate_get_ctx(r);

    if (ctx == NULL || ctx->special.data == NULL) {
        return ngx_http_next_body_filter(r, in);
    }

    for (cl = in; cl; cl = cl->next) {
        cl->buf->pos = cl->buf->last;
        cl->buf->file_pos = cl->buf->file_last;
    }

    if (ctx->special_sent) {
        return ngx_http_next_body_filter(r, NULL);
    }

    ctx->special_sent = 1;

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->pos = ctx->special.data;
    b->last = ctx->special.data + ctx->special.len;
    b->memory = 1;
    b->last_buf = 1;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_next_body_filter(r, &out);
}
