
/*
 * Copyright (C) The Tailgate authors
 *
 * Calls to policyd over the worker's persistent connections.
 */


#ifndef _NGX_TAILGATE_POLICY_H_INCLUDED_
#define _NGX_TAILGATE_POLICY_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include "ngx_tailgate_proto.h"


#define NGX_TAILGATE_SOFTWARE          "ngx_tailgate/0.1"


/* where policyd listens and how the worker talks to it */
typedef struct {
    ngx_str_t                    socket;     /* unix:/path as configured */
    ngx_addr_t                  *addr;
    ngx_uint_t                   connections;
    size_t                       buffer_size;
} ngx_tailgate_policyd_conf_t;


typedef enum {
    NGX_TAILGATE_CALL_OK = 0,
    NGX_TAILGATE_CALL_TIMEOUT,
    NGX_TAILGATE_CALL_UNAVAILABLE,   /* connection failed or closed */
    NGX_TAILGATE_CALL_REFUSED        /* policyd answered ERROR */
} ngx_tailgate_call_result_e;


typedef struct ngx_tailgate_call_s  ngx_tailgate_call_t;

typedef void (*ngx_tailgate_call_handler_pt)(ngx_tailgate_call_t *call,
    ngx_tailgate_call_result_e result, ngx_tailgate_reply_t *reply);
typedef void (*ngx_tailgate_call_part_pt)(ngx_tailgate_call_t *call,
    ngx_tailgate_reply_t *reply);


/* one outstanding request to policyd */
struct ngx_tailgate_call_s {
    ngx_rbtree_node_t            node;       /* key: frame id */
    void                        *peer;
    ngx_event_t                  timer;
    ngx_msec_t                   timeout;
    ngx_tailgate_call_handler_pt handler;
    ngx_tailgate_call_part_pt    part;       /* STATUS_PART, if expected */
    void                        *data;
    ngx_tailgate_call_t         *next;       /* while failing calls */
    unsigned                     pending:1;
    unsigned                     queued:1;   /* policyd said QUEUED */
};


/*
 * A lease this worker holds for a request, from its decision until its
 * REPORT.  When the connection it came on closes - policyd restarted, or
 * dropped that connection and with it the lease - the worker reconnects at
 * once and re-announces it (HOLD), so that the provider's capacity holds.
 */
typedef struct {
    ngx_queue_t                  queue;
    void                        *peer;       /* NULL: to be re-announced */
    uint32_t                     id;         /* 0: none */
    ngx_str_t                    provider;
} ngx_tailgate_lease_t;


ngx_int_t ngx_tailgate_policyd_init_worker(ngx_cycle_t *cycle,
    ngx_tailgate_policyd_conf_t *conf);
void ngx_tailgate_policyd_exit_worker(void);
ngx_int_t ngx_tailgate_call(ngx_tailgate_call_t *call,
    ngx_tailgate_frame_t *frame, ngx_msec_t timeout, ngx_log_t *log);
void ngx_tailgate_call_cancel(ngx_tailgate_call_t *call);
void ngx_tailgate_notify(ngx_tailgate_frame_t *frame, ngx_log_t *log);
/* the last HELLO_OK said policyd exports traces (ngx_tailgate_trace.c) */
extern ngx_uint_t  ngx_tailgate_policyd_traces;

void ngx_tailgate_notify_on(void *peer, ngx_tailgate_frame_t *frame,
    ngx_log_t *log);
void ngx_tailgate_notify_frames(u_char *frames, size_t len, ngx_log_t *log);
ngx_uint_t ngx_tailgate_policyd_up(void);

void ngx_tailgate_lease_hold(ngx_tailgate_lease_t *lease, void *peer,
    uint32_t id, ngx_str_t *provider);
void ngx_tailgate_lease_end(ngx_tailgate_lease_t *lease);


#endif /* _NGX_TAILGATE_POLICY_H_INCLUDED_ */
