
/*
 * Tailgate: upstream{} addresses that follow DNS.
 *
 * nginx 1.22 resolves the names of an upstream{} block's servers once,
 * when it reads its configuration; a hosted provider that moves breaks
 * that route until a reload.  tailgate_upstream_resolve takes the place
 * of the block's server lines: each worker asks nginx's own non-blocking
 * resolver (the http{} level "resolver") again when the answer's TTL runs
 * out (bounded by 1s and interval=), and balances over the addresses with
 * nginx's round robin (max_fails, fail_timeout, TLS session reuse).
 *
 * An address set is a round robin peer list in a pool of its own.  A
 * request holds the set it started with until its pool goes, so a new
 * answer never pulls peers from under a request (nor $upstream_addr from
 * under the log phase); the set that is replaced is freed by the last
 * request that used it.  A lookup that fails or answers nothing keeps the
 * set the worker has.  keepalive, declared after this directive, wraps
 * the balancer and matches its cached connections by address: those to an
 * address that left the answer are never chosen again and age out.
 *
 * This is an nginx module of its own in the same shared object, as the
 * keepalive module is one beside the round robin: it has an upstream{}
 * directive, per-upstream configuration and per-worker timers, and shares
 * nothing with ngx_http_tailgate_module but the file it ships in.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


#define NGX_TAILGATE_RESOLVE_MIN_DELAY      1          /* s */
#define NGX_TAILGATE_RESOLVE_RETRY          5          /* s, at most */
#define NGX_TAILGATE_RESOLVE_MAX_INTERVAL   86400      /* s */
#define NGX_TAILGATE_RESOLVE_MAX_ADDRESSES  64
#define NGX_TAILGATE_RESOLVE_LIST_LEN       512        /* logged addresses */

/* the state of the last answer that was not a usable address set */
#define NGX_TAILGATE_RESOLVE_OK             0
#define NGX_TAILGATE_RESOLVE_EMPTY          (-1)
#define NGX_TAILGATE_RESOLVE_UNSET          (-2)


typedef struct ngx_tailgate_resolve_conf_s  ngx_tailgate_resolve_conf_t;


typedef struct {
    ngx_pool_t                       *pool;   /* NULL: the configuration's */
    ngx_uint_t                        refs;
    ngx_tailgate_resolve_conf_t      *conf;
    ngx_http_upstream_rr_peers_t      peers;
} ngx_tailgate_resolve_set_t;


struct ngx_tailgate_resolve_conf_s {
    ngx_str_t                         server;        /* host:port, as given */
    ngx_str_t                         host;
    in_port_t                         port;
    time_t                            interval;
    ngx_uint_t                        max_addresses;
    ngx_uint_t                        max_fails;
    time_t                            fail_timeout;

    ngx_http_upstream_srv_conf_t     *upstream;
    ngx_http_core_loc_conf_t         *http_clcf;     /* the http{} resolver */

    /* each worker's own, after fork */
    ngx_tailgate_resolve_set_t       *current;
    ngx_resolver_ctx_t               *ctx;
    ngx_event_t                       timer;
    ngx_int_t                         failing;
};


typedef struct {
    ngx_array_t                       upstreams;
} ngx_tailgate_resolve_main_conf_t;


typedef struct {
    struct sockaddr                  *sockaddr;
    socklen_t                         socklen;
} ngx_tailgate_resolve_addr_t;


static ngx_int_t ngx_tailgate_resolve_init_upstream(ngx_conf_t *cf,
    ngx_http_upstream_srv_conf_t *us);
static ngx_int_t ngx_tailgate_resolve_init_peer(ngx_http_request_t *r,
    ngx_http_upstream_srv_conf_t *us);
static ngx_int_t ngx_tailgate_resolve_get_none(ngx_peer_connection_t *pc,
    void *data);
static void ngx_tailgate_resolve_free_none(ngx_peer_connection_t *pc,
    void *data, ngx_uint_t state);
static void ngx_tailgate_resolve_release(void *data);
static void ngx_tailgate_resolve_destroy(ngx_tailgate_resolve_set_t *set);
static void ngx_tailgate_resolve_refresh(ngx_event_t *ev);
static void ngx_tailgate_resolve_handler(ngx_resolver_ctx_t *ctx);
static void ngx_tailgate_resolve_retry(ngx_tailgate_resolve_conf_t *rc);
static void ngx_tailgate_resolve_failed(ngx_tailgate_resolve_conf_t *rc,
    ngx_int_t state, ngx_log_t *log);
static ngx_int_t ngx_tailgate_resolve_install(ngx_tailgate_resolve_conf_t *rc,
    ngx_tailgate_resolve_addr_t *addrs, ngx_uint_t n, ngx_pool_t *cpool,
    ngx_uint_t own, ngx_log_t *log);
static ngx_int_t ngx_tailgate_resolve_cmp(const void *one, const void *two);
static ngx_int_t ngx_tailgate_resolve_host_ok(ngx_str_t *host);
static ngx_int_t ngx_tailgate_resolve_init_process(ngx_cycle_t *cycle);
static void ngx_tailgate_resolve_exit_process(ngx_cycle_t *cycle);
static ngx_int_t ngx_tailgate_resolve_postconfiguration(ngx_conf_t *cf);
static void *ngx_tailgate_resolve_create_main_conf(ngx_conf_t *cf);
static void *ngx_tailgate_resolve_create_srv_conf(ngx_conf_t *cf);
static char *ngx_tailgate_resolve(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);


static ngx_command_t  ngx_tailgate_resolve_commands[] = {

    { ngx_string("tailgate_upstream_resolve"),
      NGX_HTTP_UPS_CONF|NGX_CONF_1MORE,
      ngx_tailgate_resolve,
      NGX_HTTP_SRV_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_tailgate_resolve_module_ctx = {
    NULL,                                  /* preconfiguration */
    ngx_tailgate_resolve_postconfiguration, /* postconfiguration */

    ngx_tailgate_resolve_create_main_conf, /* create main configuration */
    NULL,                                  /* init main configuration */

    ngx_tailgate_resolve_create_srv_conf,  /* create server configuration */
    NULL,                                  /* merge server configuration */

    NULL,                                  /* create location configuration */
    NULL                                   /* merge location configuration */
};


ngx_module_t  ngx_http_tailgate_upstream_resolve_module = {
    NGX_MODULE_V1,
    &ngx_tailgate_resolve_module_ctx,      /* module context */
    ngx_tailgate_resolve_commands,         /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_tailgate_resolve_init_process,     /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_tailgate_resolve_exit_process,     /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_int_t
ngx_tailgate_resolve_init_upstream(ngx_conf_t *cf,
    ngx_http_upstream_srv_conf_t *us)
{
    ngx_url_t                     u;
    ngx_uint_t                    i;
    ngx_http_core_loc_conf_t     *clcf;
    ngx_tailgate_resolve_addr_t  *addrs;
    ngx_tailgate_resolve_conf_t  *rc;

    rc = ngx_http_conf_upstream_srv_conf(us,
                                    ngx_http_tailgate_upstream_resolve_module);

    if (us->servers->nelts != 1) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "upstream \"%V\" in %s:%ui has \"server\" lines: "
                      "\"tailgate_upstream_resolve\" takes their place",
                      &us->host, us->file_name, us->line);
        return NGX_ERROR;
    }

    if (us->shm_zone) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "upstream \"%V\" in %s:%ui has a \"zone\": "
                      "\"tailgate_upstream_resolve\" keeps its addresses "
                      "per worker, remove the zone",
                      &us->host, us->file_name, us->line);
        return NGX_ERROR;
    }

    /* cf->ctx is the http{} block's here: its resolver, not a server's */

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->resolver == NULL) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "upstream \"%V\" in %s:%ui: "
                      "\"tailgate_upstream_resolve\" needs a \"resolver\" "
                      "at the http{} level, "
                      "e.g. \"resolver 127.0.0.53 valid=30s;\"",
                      &us->host, us->file_name, us->line);
        return NGX_ERROR;
    }

    rc->http_clcf = clcf;
    rc->failing = NGX_TAILGATE_RESOLVE_UNSET;

    us->peer.init = ngx_tailgate_resolve_init_peer;

    /*
     * nginx resolves an upstream server's name here, with the system's
     * resolver, and so does this, as a start: the workers begin with an
     * address set instead of failing requests until their first answer.
     * Unlike a server line, a name that does not resolve yet is no error.
     */

    ngx_memzero(&u, sizeof(ngx_url_t));

    u.url = rc->server;

    if (ngx_parse_url(cf->pool, &u) != NGX_OK || u.naddrs == 0) {
        ngx_log_error(NGX_LOG_WARN, cf->log, 0,
                      "upstream \"%V\": %V did not resolve at start (%s); "
                      "the workers ask the resolver",
                      &us->host, &rc->host,
                      u.err ? u.err : "no address");
        return NGX_OK;
    }

    addrs = ngx_palloc(cf->pool,
                       u.naddrs * sizeof(ngx_tailgate_resolve_addr_t));
    if (addrs == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < u.naddrs; i++) {
        addrs[i].sockaddr = u.addrs[i].sockaddr;
        addrs[i].socklen = u.addrs[i].socklen;
    }

    return ngx_tailgate_resolve_install(rc, addrs, u.naddrs, cf->pool, 0,
                                        cf->log);
}


static ngx_int_t
ngx_tailgate_resolve_init_peer(ngx_http_request_t *r,
    ngx_http_upstream_srv_conf_t *us)
{
    ngx_uint_t                         n;
    ngx_pool_cleanup_t                *cln;
    ngx_http_upstream_t               *u;
    ngx_tailgate_resolve_set_t        *set;
    ngx_tailgate_resolve_conf_t       *rc;
    ngx_http_upstream_rr_peer_data_t  *rrp;

    rc = ngx_http_conf_upstream_srv_conf(us,
                                    ngx_http_tailgate_upstream_resolve_module);
    u = r->upstream;
    set = rc->current;

    if (set == NULL) {
        u->peer.data = rc;
        u->peer.get = ngx_tailgate_resolve_get_none;
        u->peer.free = ngx_tailgate_resolve_free_none;
        u->peer.tries = 1;
        return NGX_OK;
    }

    rrp = ngx_palloc(r->pool, sizeof(ngx_http_upstream_rr_peer_data_t));
    if (rrp == NULL) {
        return NGX_ERROR;
    }

    n = set->peers.number;

    if (n <= 8 * sizeof(uintptr_t)) {
        rrp->tried = &rrp->data;
        rrp->data = 0;

    } else {
        n = (n + (8 * sizeof(uintptr_t) - 1)) / (8 * sizeof(uintptr_t));

        rrp->tried = ngx_pcalloc(r->pool, n * sizeof(uintptr_t));
        if (rrp->tried == NULL) {
            return NGX_ERROR;
        }
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    /* the request keeps its set until its pool goes: past the log phase */

    set->refs++;
    cln->handler = ngx_tailgate_resolve_release;
    cln->data = set;

    rrp->peers = &set->peers;
    rrp->current = NULL;
    rrp->config = 0;

    u->peer.data = rrp;
    u->peer.get = ngx_http_upstream_get_round_robin_peer;
    u->peer.free = ngx_http_upstream_free_round_robin_peer;
    u->peer.tries = set->peers.tries;
#if (NGX_HTTP_SSL)
    u->peer.set_session = ngx_http_upstream_set_round_robin_peer_session;
    u->peer.save_session = ngx_http_upstream_save_round_robin_peer_session;
#endif

    return NGX_OK;
}


static ngx_int_t
ngx_tailgate_resolve_get_none(ngx_peer_connection_t *pc, void *data)
{
    ngx_tailgate_resolve_conf_t  *rc = data;

    ngx_log_error(NGX_LOG_ERR, pc->log, 0,
                  "upstream \"%V\": %V has not resolved to any address yet",
                  &rc->upstream->host, &rc->host);

    pc->name = &rc->upstream->host;

    return NGX_BUSY;
}


static void
ngx_tailgate_resolve_free_none(ngx_peer_connection_t *pc, void *data,
    ngx_uint_t state)
{
    pc->tries = 0;
}


static void
ngx_tailgate_resolve_release(void *data)
{
    ngx_tailgate_resolve_set_t  *set = data;

    if (--set->refs == 0) {
        ngx_tailgate_resolve_destroy(set);
    }
}


static void
ngx_tailgate_resolve_destroy(ngx_tailgate_resolve_set_t *set)
{
#if (NGX_HTTP_SSL)
    ngx_http_upstream_rr_peer_t  *peer;

    for (peer = set->peers.peer; peer; peer = peer->next) {
        if (peer->ssl_session) {
            ngx_ssl_free_session(peer->ssl_session);
            peer->ssl_session = NULL;
        }
    }
#endif

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "tailgate resolve: address set of \"%V\" freed",
                   &set->conf->upstream->host);

    if (set->pool) {
        ngx_destroy_pool(set->pool);
    }
}


static void
ngx_tailgate_resolve_refresh(ngx_event_t *ev)
{
    ngx_resolver_ctx_t           *ctx;
    ngx_tailgate_resolve_conf_t  *rc = ev->data;

    if (ngx_exiting || ngx_quit || ngx_terminate) {
        return;
    }

    ctx = ngx_resolve_start(rc->http_clcf->resolver, NULL);

    if (ctx == NULL || ctx == NGX_NO_RESOLVER) {
        ngx_log_error(NGX_LOG_ERR, ev->log, 0,
                      "upstream \"%V\": cannot start resolving %V",
                      &rc->upstream->host, &rc->host);
        ngx_tailgate_resolve_retry(rc);
        return;
    }

    ctx->name = rc->host;
    ctx->handler = ngx_tailgate_resolve_handler;
    ctx->data = rc;
    ctx->timeout = rc->http_clcf->resolver_timeout;
    ctx->cancelable = 1;

    rc->ctx = ctx;

    /* the handler may run before this returns: an answer still cached */

    if (ngx_resolve_name(ctx) != NGX_OK) {
        rc->ctx = NULL;
        ngx_log_error(NGX_LOG_ERR, ev->log, 0,
                      "upstream \"%V\": cannot resolve %V",
                      &rc->upstream->host, &rc->host);
        ngx_tailgate_resolve_retry(rc);
    }
}


static void
ngx_tailgate_resolve_retry(ngx_tailgate_resolve_conf_t *rc)
{
    time_t  delay;

    delay = ngx_min(rc->interval, NGX_TAILGATE_RESOLVE_RETRY);

    ngx_add_timer(&rc->timer, (ngx_msec_t) delay * 1000);
}


static void
ngx_tailgate_resolve_handler(ngx_resolver_ctx_t *ctx)
{
    time_t                        delay;
    ngx_uint_t                    i, n;
    ngx_pool_t                   *pool;
    ngx_tailgate_resolve_addr_t  *addrs;
    ngx_tailgate_resolve_conf_t  *rc = ctx->data;

    rc->ctx = NULL;

    delay = ngx_min(rc->interval, NGX_TAILGATE_RESOLVE_RETRY);

    if (ctx->state != NGX_OK || ctx->naddrs == 0) {
        ngx_tailgate_resolve_failed(rc, ctx->state ? ctx->state
                                        : NGX_TAILGATE_RESOLVE_EMPTY,
                                    rc->timer.log);
        goto next;
    }

    /* the answer's TTL (or the resolver's valid=), within bounds */

    delay = ctx->valid - ngx_time();
    delay = ngx_max(delay, NGX_TAILGATE_RESOLVE_MIN_DELAY);
    delay = ngx_min(delay, rc->interval);

    n = ctx->naddrs;

    pool = ngx_create_pool(1024, rc->timer.log);
    if (pool == NULL) {
        goto next;
    }

    addrs = ngx_palloc(pool, n * sizeof(ngx_tailgate_resolve_addr_t));
    if (addrs == NULL) {
        ngx_destroy_pool(pool);
        goto next;
    }

    for (i = 0; i < n; i++) {
        addrs[i].sockaddr = ctx->addrs[i].sockaddr;
        addrs[i].socklen = ctx->addrs[i].socklen;
    }

    if (rc->failing != NGX_TAILGATE_RESOLVE_OK
        && rc->failing != NGX_TAILGATE_RESOLVE_UNSET)
    {
        ngx_log_error(NGX_LOG_NOTICE, rc->timer.log, 0,
                      "upstream \"%V\": %V resolves again",
                      &rc->upstream->host, &rc->host);
    }

    rc->failing = NGX_TAILGATE_RESOLVE_OK;

    /* the pool is the new set's, or destroyed when nothing changed */

    (void) ngx_tailgate_resolve_install(rc, addrs, n, pool, 1,
                                        rc->timer.log);

next:

    ngx_resolve_name_done(ctx);

    if (!ngx_exiting && !ngx_quit && !ngx_terminate) {
        ngx_add_timer(&rc->timer, (ngx_msec_t) delay * 1000);
    }
}


static void
ngx_tailgate_resolve_failed(ngx_tailgate_resolve_conf_t *rc, ngx_int_t state,
    ngx_log_t *log)
{
    ngx_uint_t  have;

    /* logged once per state: a resolver that stays down is one line */

    if (state == rc->failing) {
        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, log, 0,
                       "tailgate resolve: %V still fails (%i)",
                       &rc->host, state);
        return;
    }

    rc->failing = state;
    have = rc->current ? rc->current->peers.number : 0;

    if (state == NGX_TAILGATE_RESOLVE_EMPTY) {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "upstream \"%V\": %V could not be resolved "
                      "(no address); keeping the %ui addresses it had",
                      &rc->upstream->host, &rc->host, have);
        return;
    }

    ngx_log_error(NGX_LOG_WARN, log, 0,
                  "upstream \"%V\": %V could not be resolved (%i: %s); "
                  "keeping the %ui addresses it had",
                  &rc->upstream->host, &rc->host, state,
                  ngx_resolver_strerror(state), have);
}


/*
 * Makes the addresses, sorted, deduplicated and cut to max_addresses, the
 * worker's set, unless they are the set it has.  The set's memory comes
 * from cpool: a pool of its own ("own", destroyed here when nothing
 * changed), or the configuration's at start.
 */

static ngx_int_t
ngx_tailgate_resolve_install(ngx_tailgate_resolve_conf_t *rc,
    ngx_tailgate_resolve_addr_t *addrs, ngx_uint_t n, ngx_pool_t *cpool,
    ngx_uint_t own, ngx_log_t *log)
{
    u_char                        *p, *last;
    size_t                         len;
    ngx_uint_t                     i, m;
    struct sockaddr               *sa;
    ngx_tailgate_resolve_set_t    *set, *old;
    ngx_http_upstream_rr_peer_t   *peer, *cur, **link;
    u_char                         list[NGX_TAILGATE_RESOLVE_LIST_LEN];

    /* the resolver's sockaddrs are its own: copy them, with the port */

    for (i = 0; i < n; i++) {
        sa = ngx_palloc(cpool, addrs[i].socklen);
        if (sa == NULL) {
            goto failed;
        }

        ngx_memcpy(sa, addrs[i].sockaddr, addrs[i].socklen);
        ngx_inet_set_port(sa, rc->port);

        if (sa->sa_family == AF_INET) {
            ngx_memzero(((struct sockaddr_in *) sa)->sin_zero,
                        sizeof(((struct sockaddr_in *) sa)->sin_zero));
        }

        addrs[i].sockaddr = sa;
    }

    ngx_sort(addrs, n, sizeof(ngx_tailgate_resolve_addr_t),
             ngx_tailgate_resolve_cmp);

    for (i = 1, m = 1; i < n; i++) {
        if (ngx_tailgate_resolve_cmp(&addrs[m - 1], &addrs[i]) != 0) {
            addrs[m++] = addrs[i];
        }
    }

    n = ngx_min(m, rc->max_addresses);

    old = rc->current;

    if (old && old->peers.number == n) {
        for (i = 0, cur = old->peers.peer; cur; i++, cur = cur->next) {
            if (ngx_memn2cmp((u_char *) cur->sockaddr,
                             (u_char *) addrs[i].sockaddr,
                             cur->socklen, addrs[i].socklen)
                != 0)
            {
                break;
            }
        }

        if (cur == NULL) {
            ngx_log_debug1(NGX_LOG_DEBUG_HTTP, log, 0,
                           "tailgate resolve: %V unchanged", &rc->host);

            if (own) {
                ngx_destroy_pool(cpool);
            }

            return NGX_OK;
        }
    }

    set = ngx_pcalloc(cpool, sizeof(ngx_tailgate_resolve_set_t));
    peer = ngx_pcalloc(cpool, n * sizeof(ngx_http_upstream_rr_peer_t));

    if (set == NULL || peer == NULL) {
        goto failed;
    }

    p = list;
    last = list + sizeof(list);
    link = &set->peers.peer;

    for (i = 0; i < n; i++) {
        peer[i].name.data = ngx_pnalloc(cpool, NGX_SOCKADDR_STRLEN);
        if (peer[i].name.data == NULL) {
            goto failed;
        }

        len = ngx_sock_ntop(addrs[i].sockaddr, addrs[i].socklen,
                            peer[i].name.data, NGX_SOCKADDR_STRLEN, 1);

        peer[i].name.len = len;
        peer[i].sockaddr = addrs[i].sockaddr;
        peer[i].socklen = addrs[i].socklen;
        peer[i].server = rc->server;
        peer[i].weight = 1;
        peer[i].effective_weight = 1;
        peer[i].current_weight = 0;
        peer[i].max_fails = rc->max_fails;
        peer[i].fail_timeout = rc->fail_timeout;

        *link = &peer[i];
        link = &peer[i].next;

        p = ngx_slprintf(p, last, "%s%V", i ? ", " : "", &peer[i].name);
    }

    set->pool = own ? cpool : NULL;
    set->conf = rc;
    set->refs = 1;
    set->peers.number = n;
    set->peers.total_weight = n;
    set->peers.tries = n;
    set->peers.single = (n == 1);
    set->peers.weighted = 0;
    set->peers.name = &rc->upstream->host;

    ngx_log_error(NGX_LOG_NOTICE, log, 0,
                  "upstream \"%V\": %V resolves to %*s",
                  &rc->upstream->host, &rc->host, p - list, list);

    rc->current = set;

    if (old) {
        ngx_tailgate_resolve_release(old);
    }

    return NGX_OK;

failed:

    if (own) {
        ngx_destroy_pool(cpool);
    }

    return NGX_ERROR;
}


static ngx_int_t
ngx_tailgate_resolve_cmp(const void *one, const void *two)
{
    const ngx_tailgate_resolve_addr_t  *a = one, *b = two;

    if (a->socklen != b->socklen) {
        return a->socklen < b->socklen ? -1 : 1;
    }

    return ngx_memcmp(a->sockaddr, b->sockaddr, a->socklen);
}


static ngx_int_t
ngx_tailgate_resolve_init_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                         i;
    ngx_tailgate_resolve_conf_t      **rcp, *rc;
    ngx_tailgate_resolve_main_conf_t  *rmcf;

    rmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                    ngx_http_tailgate_upstream_resolve_module);
    if (rmcf == NULL) {
        return NGX_OK;
    }

    rcp = rmcf->upstreams.elts;

    for (i = 0; i < rmcf->upstreams.nelts; i++) {
        rc = rcp[i];

        rc->timer.handler = ngx_tailgate_resolve_refresh;
        rc->timer.data = rc;
        rc->timer.log = cycle->log;
        rc->timer.cancelable = 1;

        /* at once: the start's answer was the system's, and may be old */

        ngx_add_timer(&rc->timer, 1);
    }

    return NGX_OK;
}


static void
ngx_tailgate_resolve_exit_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                         i;
    ngx_tailgate_resolve_set_t        *set;
    ngx_tailgate_resolve_conf_t      **rcp, *rc;
    ngx_tailgate_resolve_main_conf_t  *rmcf;

    rmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                    ngx_http_tailgate_upstream_resolve_module);
    if (rmcf == NULL) {
        return;
    }

    rcp = rmcf->upstreams.elts;

    for (i = 0; i < rmcf->upstreams.nelts; i++) {
        rc = rcp[i];

        if (rc->ctx) {
            ngx_resolve_name_done(rc->ctx);
            rc->ctx = NULL;
        }

        set = rc->current;
        rc->current = NULL;

        if (set) {
            ngx_tailgate_resolve_release(set);
        }
    }
}


static ngx_int_t
ngx_tailgate_resolve_postconfiguration(ngx_conf_t *cf)
{
    ngx_uint_t                         i;
    ngx_tailgate_resolve_conf_t      **rcp;
    ngx_tailgate_resolve_main_conf_t  *rmcf;

    rmcf = ngx_http_conf_get_module_main_conf(cf,
                                    ngx_http_tailgate_upstream_resolve_module);
    rcp = rmcf->upstreams.elts;

    /* a balancer declared after this one took its place */

    for (i = 0; i < rmcf->upstreams.nelts; i++) {
        if (rcp[i]->http_clcf == NULL) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "upstream \"%V\" in %s:%ui: another balancer "
                          "replaced \"tailgate_upstream_resolve\"; only "
                          "\"keepalive\" may follow it",
                          &rcp[i]->upstream->host,
                          rcp[i]->upstream->file_name,
                          rcp[i]->upstream->line);
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static void *
ngx_tailgate_resolve_create_main_conf(ngx_conf_t *cf)
{
    ngx_tailgate_resolve_main_conf_t  *rmcf;

    rmcf = ngx_pcalloc(cf->pool, sizeof(ngx_tailgate_resolve_main_conf_t));
    if (rmcf == NULL) {
        return NULL;
    }

    if (ngx_array_init(&rmcf->upstreams, cf->pool, 4,
                       sizeof(ngx_tailgate_resolve_conf_t *))
        != NGX_OK)
    {
        return NULL;
    }

    return rmcf;
}


static void *
ngx_tailgate_resolve_create_srv_conf(ngx_conf_t *cf)
{
    /*
     * set by ngx_pcalloc():
     *
     *     rc->server = { 0, NULL };  (no tailgate_upstream_resolve)
     *     rc->current = NULL;
     *     rc->ctx = NULL;
     */

    return ngx_pcalloc(cf->pool, sizeof(ngx_tailgate_resolve_conf_t));
}


/* letters, digits, '-' and '_' in labels of 1 to 63, 253 in all */

static ngx_int_t
ngx_tailgate_resolve_host_ok(ngx_str_t *host)
{
    u_char      c;
    ngx_uint_t  i, label;

    if (host->len == 0 || host->len > 253) {
        return NGX_ERROR;
    }

    label = 0;

    for (i = 0; i < host->len; i++) {
        c = host->data[i];

        if (c == '.') {
            if (label == 0) {
                return NGX_ERROR;
            }

            label = 0;
            continue;
        }

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
              || (c >= '0' && c <= '9') || c == '-' || c == '_'))
        {
            return NGX_ERROR;
        }

        if (++label > 63) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static char *
ngx_tailgate_resolve(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_tailgate_resolve_conf_t  *rc = conf;

    time_t                              interval, fail_timeout;
    ngx_int_t                           n, max_addresses, max_fails;
    ngx_str_t                          *value, s;
    ngx_url_t                           u;
    ngx_addr_t                          addr;
    ngx_uint_t                          i;
    ngx_http_upstream_server_t         *server;
    ngx_tailgate_resolve_conf_t       **rcp;
    ngx_http_upstream_srv_conf_t       *uscf;
    ngx_tailgate_resolve_main_conf_t   *rmcf;

    if (rc->server.data) {
        return "is duplicate";
    }

    uscf = ngx_http_conf_get_module_srv_conf(cf, ngx_http_upstream_module);

    if (uscf->peer.init_upstream) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"tailgate_upstream_resolve\" must come first "
                           "in upstream{}, before \"keepalive\", and with "
                           "no other balancer (hash, ip_hash, least_conn, "
                           "random)");
        return NGX_CONF_ERROR;
    }

    if (uscf->servers->nelts) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"tailgate_upstream_resolve\" takes the place "
                           "of \"server\" lines: remove them");
        return NGX_CONF_ERROR;
    }

    value = cf->args->elts;

    ngx_memzero(&u, sizeof(ngx_url_t));

    u.url = value[1];
    u.no_resolve = 1;

    if (ngx_parse_url(cf->pool, &u) != NGX_OK || u.family == AF_UNIX) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\": %s; expected a host name and a port, "
                           "e.g. api.deepseek.com:443", &value[1],
                           u.err ? u.err : "not a host name");
        return NGX_CONF_ERROR;
    }

    if (u.no_port) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" has no port; expected a host name and a "
                           "port, e.g. api.deepseek.com:443", &value[1]);
        return NGX_CONF_ERROR;
    }

    if (ngx_parse_addr(cf->pool, &addr, u.host.data, u.host.len) == NGX_OK
        || (u.host.len && u.host.data[0] == '['))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" is an address, nothing to resolve; use "
                           "\"server %V\" instead", &value[1], &value[1]);
        return NGX_CONF_ERROR;
    }

    if (ngx_tailgate_resolve_host_ok(&u.host) != NGX_OK
        || u.uri.len || u.port == 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" is not a host name and a port; expected "
                           "letters, digits, '-' and '.', then \":\" and a "
                           "port from 1 to 65535, e.g. api.deepseek.com:443",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    interval = 30;
    max_addresses = 8;
    max_fails = 1;
    fail_timeout = 10;

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "interval=", 9) == 0) {
            s.len = value[i].len - 9;
            s.data = &value[i].data[9];

            interval = ngx_parse_time(&s, 1);

            if (interval == (time_t) NGX_ERROR || interval < 1
                || interval > NGX_TAILGATE_RESOLVE_MAX_INTERVAL)
            {
                goto invalid;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "max_addresses=", 14) == 0) {
            n = ngx_atoi(&value[i].data[14], value[i].len - 14);

            if (n < 1 || n > NGX_TAILGATE_RESOLVE_MAX_ADDRESSES) {
                goto invalid;
            }

            max_addresses = n;
            continue;
        }

        if (ngx_strncmp(value[i].data, "max_fails=", 10) == 0) {
            n = ngx_atoi(&value[i].data[10], value[i].len - 10);

            if (n == NGX_ERROR) {
                goto invalid;
            }

            max_fails = n;
            continue;
        }

        if (ngx_strncmp(value[i].data, "fail_timeout=", 13) == 0) {
            s.len = value[i].len - 13;
            s.data = &value[i].data[13];

            fail_timeout = ngx_parse_time(&s, 1);

            if (fail_timeout == (time_t) NGX_ERROR) {
                goto invalid;
            }

            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "unknown parameter \"%V\"; expected interval=, "
                           "max_addresses=, max_fails= or fail_timeout=",
                           &value[i]);
        return NGX_CONF_ERROR;
    }

    rc->server = value[1];
    rc->host = u.host;
    rc->port = u.port;
    rc->interval = interval;
    rc->max_addresses = max_addresses;
    rc->max_fails = max_fails;
    rc->fail_timeout = fail_timeout;
    rc->upstream = uscf;

    /* upstream{} wants a server; this one stands for what DNS answers */

    server = ngx_array_push(uscf->servers);
    if (server == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(server, sizeof(ngx_http_upstream_server_t));

    server->name = value[1];
    server->weight = 1;
    server->max_fails = max_fails;
    server->fail_timeout = fail_timeout;

    uscf->peer.init_upstream = ngx_tailgate_resolve_init_upstream;

    rmcf = ngx_http_conf_get_module_main_conf(cf,
                                    ngx_http_tailgate_upstream_resolve_module);

    rcp = ngx_array_push(&rmcf->upstreams);
    if (rcp == NULL) {
        return NGX_CONF_ERROR;
    }

    *rcp = rc;

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\"; expected interval= a time "
                       "from 1s to 24h, max_addresses= 1 to %d, max_fails= "
                       "a number, fail_timeout= a time",
                       &value[i], NGX_TAILGATE_RESOLVE_MAX_ADDRESSES);
    return NGX_CONF_ERROR;
}
