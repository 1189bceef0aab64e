
/*
 * Copyright (C) The Tailgate authors
 *
 * Trusted networks: a request from a listed network that sends no
 * credential is admitted with the identity configured for that network.
 * The address is the connection's as nginx sees it when the access phase
 * runs, that is after the realip module replaced it with the one a
 * trusted proxy vouched for; a header alone proves nothing here.  A
 * request that sends a credential is judged by it, wherever it comes
 * from, so that a key's own limits and routes still apply inside a
 * trusted network and a bad key is still refused.
 *
 *   tailgate_trusted_network 10.0.0.0/8 client=office tenant=acme
 *                            tags=private;
 */


#include "ngx_tailgate_common.h"
#include "ngx_tailgate_names.h"


#define NGX_TAILGATE_MAX_CLIENT_ID    128


typedef struct {
    ngx_cidr_t                   cidr;
    ngx_tailgate_identity_t      identity;
} ngx_tailgate_trusted_t;


static ngx_uint_t ngx_tailgate_trusted_match(ngx_cidr_t *cidr,
    struct sockaddr *sa);


/* tailgate_trusted_network CIDR client=NAME [tenant=T] [tags=a,b] ... */

char *
ngx_tailgate_trusted_directive(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_tailgate_loc_conf_t *tlcf = conf;

    char                    *rv;
    u_char                  *p, *end;
    ngx_int_t                rc;
    ngx_str_t               *value;
    ngx_uint_t               i;
    ngx_tailgate_trusted_t  *net;

    if (tlcf->trusted == NGX_CONF_UNSET_PTR) {
        tlcf->trusted = ngx_array_create(cf->pool, 2,
                                         sizeof(ngx_tailgate_trusted_t));
        if (tlcf->trusted == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    net = ngx_array_push(tlcf->trusted);
    if (net == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(net, sizeof(ngx_tailgate_trusted_t));

    value = cf->args->elts;

    rc = ngx_ptocidr(&value[1], &net->cidr);

    if (rc == NGX_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" is not an IPv4 or IPv6 address or "
                           "network (CIDR)", &value[1]);
        return NGX_CONF_ERROR;
    }

    if (rc == NGX_DONE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "low address bits of \"%V\" are meaningless",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    for (i = 2; i < cf->args->nelts; i++) {
        p = value[i].data;
        end = p + value[i].len;

        if (value[i].len >= 7 && ngx_strncmp(p, "client=", 7) == 0) {

            if (net->identity.client.len) {
                return "has client= twice";
            }

            for (p += 7; p < end; p++) {
                if (!(ngx_tailgate_is_name_char(*p) || *p == '@'
                      || *p == ':'))
                {
                    break;
                }
            }

            if (p != end || value[i].len == 7
                || value[i].len - 7 > NGX_TAILGATE_MAX_CLIENT_ID)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "expected client= of 1-%d letters, "
                                   "digits and \"_-.@:\", not \"%V\"",
                                   NGX_TAILGATE_MAX_CLIENT_ID, &value[i]);
                return NGX_CONF_ERROR;
            }

            net->identity.client.data = value[i].data + 7;
            net->identity.client.len = value[i].len - 7;
            continue;
        }

        /* a network is no operator, and does not expire */

        if ((value[i].len >= 5 && ngx_strncmp(p, "role=", 5) == 0)
            || (value[i].len >= 8 && ngx_strncmp(p, "expires=", 8) == 0))
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"%V\": a trusted network takes client=, "
                               "tenant=, tags=, routes= and limit=",
                               &value[i]);
            return NGX_CONF_ERROR;
        }

        rv = ngx_tailgate_identity_attribute(cf->pool, &net->identity, p,
                                             end);
        if (rv == NGX_CONF_ERROR) {
            return rv;
        }

        if (rv != NGX_CONF_OK) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "\"%V\": %s",
                               &value[i], rv);
            return NGX_CONF_ERROR;
        }
    }

    if (net->identity.client.len == 0) {
        return "needs client=NAME: the identity its requests are given";
    }

    net->identity.network = 1;

    return NGX_CONF_OK;
}


/* the identity of the request's network, or NULL */

ngx_tailgate_identity_t *
ngx_tailgate_trusted_identity(ngx_http_request_t *r,
    ngx_http_tailgate_loc_conf_t *tlcf)
{
    ngx_uint_t               i;
    ngx_tailgate_trusted_t  *net;

    if (tlcf->trusted == NULL) {
        return NULL;
    }

    net = tlcf->trusted->elts;

    for (i = 0; i < tlcf->trusted->nelts; i++) {
        if (ngx_tailgate_trusted_match(&net[i].cidr,
                                       r->connection->sockaddr))
        {
            return &net[i].identity;
        }
    }

    return NULL;
}


static ngx_uint_t
ngx_tailgate_trusted_match(ngx_cidr_t *cidr, struct sockaddr *sa)
{
    in_addr_t             addr;
#if (NGX_HAVE_INET6)
    u_char               *p;
    ngx_uint_t            n;
    struct sockaddr_in6  *sin6;
#endif

    switch (sa->sa_family) {

    case AF_INET:
        addr = ((struct sockaddr_in *) sa)->sin_addr.s_addr;
        break;

#if (NGX_HAVE_INET6)
    case AF_INET6:
        sin6 = (struct sockaddr_in6 *) sa;
        p = sin6->sin6_addr.s6_addr;

        if (cidr->family == AF_INET6) {
            for (n = 0; n < 16; n++) {
                if ((p[n] & cidr->u.in6.mask.s6_addr[n])
                    != cidr->u.in6.addr.s6_addr[n])
                {
                    return 0;
                }
            }

            return 1;
        }

        /* ::ffff:10.1.2.3 is 10.1.2.3 to an IPv4 network */

        if (!IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
            return 0;
        }

        addr = htonl((in_addr_t) p[12] << 24 | (in_addr_t) p[13] << 16
                     | (in_addr_t) p[14] << 8 | p[15]);
        break;
#endif

    default:
        /* a unix socket is no network */
        return 0;
    }

    return cidr->family == AF_INET
           && (addr & cidr->u.in.mask) == cidr->u.in.addr;
}
