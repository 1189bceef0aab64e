/*
 * The frames of a worker, answered in the order they came.  Nothing keeps a
 * pointer into the policy between two events, so a reload can free the old
 * policy at once.  Work that may close other connections (judging the
 * providers, deciding again for those waiting) is asked for with tg_soon(),
 * never done here.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ev.h>

#include "answer.h"
#include "conn.h"
#include "defer.h"
#include "frames.h"
#include "jwks.h"
#include "log.h"
#include "queue.h"
#include "status.h"
#include "usage.h"
#include "version.h"


/* DECISION and MODEL_LIST fit in this with room to spare */
#define TG_REPLY_OVERHEAD     64

/* a status goes out in parts all at once: it must fit the write buffer */
#define TG_STATUS_MAX         (TG_MAX_FRAME_LIMIT / 2)


static void tg_frame(tg_conn *c, const uint8_t *frame, const tg_frame_hdr *h);
static void tg_handle_hello(tg_conn *c, const uint8_t *frame,
    const tg_frame_hdr *h);
static void tg_handle_decide(tg_conn *c, const uint8_t *frame,
    const tg_frame_hdr *h);
static void tg_handle_models(tg_conn *c, const uint8_t *frame,
    const tg_frame_hdr *h);
static void tg_handle_report(tg_conn *c, const uint8_t *frame,
    const tg_frame_hdr *h);
static void tg_build_cursor(tg_builder *b, const tg_route *rt,
    const char *rest);
static void tg_handle_status(tg_conn *c, const uint8_t *frame,
    const tg_frame_hdr *h);
static void tg_handle_hold(tg_conn *c, const uint8_t *frame,
    const tg_frame_hdr *h);


void
tg_frames_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    tg_conn  *c = w->data;

    (void) loop;
    (void) revents;

    if (tg_conn_read(c) == 0) {
        return;
    }

    tg_frames_serve(c);

    if (c->state == TG_CONN_OPEN || c->state == TG_CONN_CLOSE_AFTER_FLUSH) {
        tg_conn_flush(c);
    }

    tg_conn_finish(c);
}


void
tg_frames_serve(tg_conn *c)
{
    tg_frame_hdr    h;
    const uint8_t  *frame = NULL;

    while (tg_conn_frame(c, &frame, &h) == 1) {
        tg_frame(c, frame, &h);
    }
}


static void
tg_frame(tg_conn *c, const uint8_t *frame, const tg_frame_hdr *h)
{
    switch (h->type) {

    case TG_MSG_HELLO:
        tg_handle_hello(c, frame, h);
        break;

    case TG_MSG_DECIDE:
        tg_handle_decide(c, frame, h);
        break;

    case TG_MSG_MODELS:
        tg_handle_models(c, frame, h);
        break;

    case TG_MSG_STATUS:
        tg_handle_status(c, frame, h);
        break;

    case TG_MSG_CANCEL:
        /* a waiting DECIDE of this connection, given up: no reply */
        tg_queue_cancel(c, h->id);
        tg_defer_cancel(c, h->id);
        break;

    case TG_MSG_HOLD:
        tg_handle_hold(c, frame, h);
        break;

    case TG_MSG_REPORT:
        tg_handle_report(c, frame, h);
        break;

    case TG_MSG_JWKS_REFRESH:
        tg_jwks_refresh(c->srv->jwks, c, frame, h);
        break;

    default:
        tg_conn_error(c, h->id, TG_ERR_UNKNOWN_TYPE, false,
                      "unknown frame type");
        break;
    }
}


static void
tg_handle_hello(tg_conn *c, const uint8_t *frame, const tg_frame_hdr *h)
{
    int             rc;
    long            len;
    uint32_t        v, peer_max, pid;
    tg_field        f;
    tg_builder      b;
    tg_field_iter   it;
    const char     *sw;
    size_t          sw_len;

    peer_max = TG_MAX_FRAME_MIN;
    pid = 0;
    sw = "";
    sw_len = 0;

    tg_fields_init(&it, frame, h);

    while ((rc = tg_fields_next(&it, &f)) == 1) {
        switch (f.key) {

        case TG_F_MAX_FRAME:
            if (tg_field_u32(&f, &v) != 0) {
                tg_conn_malformed(c, h, "max_frame is not a u32");
                return;
            }
            peer_max = v;
            break;

        case TG_F_PID:
            if (tg_field_u32(&f, &pid) != 0) {
                tg_conn_malformed(c, h, "pid is not a u32");
                return;
            }
            break;

        case TG_F_SOFTWARE:
            sw = (const char *) f.value;
            sw_len = f.len;
            break;
        }
    }

    if (rc < 0) {
        tg_conn_malformed(c, h, "a field runs past the end of the frame");
        return;
    }

    if (peer_max < TG_MAX_FRAME_MIN) {
        peer_max = TG_MAX_FRAME_MIN;
    }

    if (peer_max > TG_MAX_FRAME_LIMIT) {
        peer_max = TG_MAX_FRAME_LIMIT;
    }

    c->peer_max = peer_max;

    tg_log_info("connection %llu: HELLO from pid %u, \"%.*s\", "
                "max_frame %u", (unsigned long long) c->id, pid,
                tg_log_len(sw_len), sw, peer_max);

    tg_builder_start(c, &b, TG_MSG_HELLO_OK, h->id);
    tg_build_u32(&b, TG_F_MAX_FRAME, c->max_frame);
    tg_build_u32(&b, TG_F_PID, (uint32_t) getpid());
    tg_build_cstr(&b, TG_F_SOFTWARE, TG_SOFTWARE);

    len = tg_build_end(&b);
    if (len > 0) {
        tg_conn_send(c, c->srv->out, (size_t) len);
    }
}


static void
tg_handle_decide(tg_conn *c, const uint8_t *frame, const tg_frame_hdr *h)
{
    bool          has_endpoint;
    tg_facts      facts;
    tg_decision   d;

    if (tg_read_facts(c, frame, h, &facts, &has_endpoint) != 0) {
        return;
    }

    if (!has_endpoint || facts.model.data == NULL) {
        tg_conn_error(c, h->id, TG_ERR_MISSING_FIELD, false,
                      "DECIDE needs endpoint and model");
        return;
    }

    switch (tg_answer_decide(c, h->id, &facts, &d)) {

    case TG_ANSWER_QUEUE:
        tg_queue_park(c, frame, h, &d);
        break;

    case TG_ANSWER_DEFER:
        tg_defer(c, frame, h, &d, false);
        break;

    case TG_ANSWER_RECOVER:
        tg_defer(c, frame, h, &d, true);
        break;

    default: /* TG_ANSWER_SENT */
        break;
    }
}


static void
tg_handle_models(tg_conn *c, const uint8_t *frame, const tg_frame_hdr *h)
{
    bool         has_endpoint;
    long         len, n;
    char        *p;
    size_t       room;
    tg_facts     facts;
    tg_server   *srv = c->srv;
    tg_builder   b;
    const char      *last_rest;
    const tg_route  *last;

    if (tg_read_facts(c, frame, h, &facts, &has_endpoint) != 0) {
        return;
    }

    room = c->peer_max - TG_REPLY_OVERHEAD;

    if (srv->json_cap < room) {
        p = realloc(srv->json, room);
        if (p == NULL) {
            tg_conn_error(c, h->id, TG_ERR_INTERNAL, false, "out of memory");
            return;
        }
        srv->json = p;
        srv->json_cap = room;
    }

    last = NULL;
    last_rest = NULL;

    if (has_endpoint && facts.endpoint == TG_EP_NONE) {
        /* an endpoint policyd does not know: no route serves it */
        n = snprintf(srv->json, room, "%s]}", facts.cursor.len ? ""
                     : "{\"object\":\"list\",\"data\":[");

    } else {
        /* a page that fits, with room for the cursor of the next */
        n = tg_models_page(srv->policy, &facts, &facts.cursor, srv->json,
                           room - TG_ROUTE_NAME_MAX - TG_REPLY_OVERHEAD,
                           &last, &last_rest);
    }

    if (n == TG_MODELS_NOT_FOUND) {
        tg_builder_start(c, &b, TG_MSG_MODEL_LIST, h->id);
        tg_build_u32(&b, TG_F_STATUS, 404);
        tg_build_cstr(&b, TG_F_ERROR_TYPE, "invalid_request_error");
        tg_build_cstr(&b, TG_F_ERROR_CODE, "model_not_found");
        tg_build_cstr(&b, TG_F_ERROR_MESSAGE, "No matching route found");

    } else if (n < 0) {
        tg_conn_error(c, h->id, TG_ERR_INTERNAL, false,
                      "the model list does not fit in a frame");
        return;

    } else {
        tg_builder_start(c, &b, TG_MSG_MODEL_LIST, h->id);
        tg_build_u32(&b, TG_F_STATUS, 200);
        tg_build_str(&b, TG_F_BODY, srv->json, (size_t) n);

        if (last != NULL && last_rest == NULL) {
            tg_build_str(&b, TG_F_NEXT, last->name, last->name_len);

        } else if (last != NULL) {
            /* a pattern's model: its id, the prefix and the rest */
            tg_build_cursor(&b, last, last_rest);
        }
    }

    len = tg_build_end(&b);
    if (len < 0) {
        tg_conn_error(c, h->id, TG_ERR_INTERNAL, false,
                      "the model list does not fit in a frame");
        return;
    }

    tg_log_debug("connection %llu: MODELS %u after \"%.*s\": %ld bytes, "
                 "next \"%s\"", (unsigned long long) c->id, h->id,
                 (int) facts.cursor.len, facts.cursor.data ? facts.cursor.data
                                                           : "", n,
                 last ? last->name : "");
    (void) last_rest;

    tg_conn_send(c, srv->out, (size_t) len);
}


/* the id of a pattern route's listed model, as MODEL_LIST's next */

static void
tg_build_cursor(tg_builder *b, const tg_route *rt, const char *rest)
{
    char    id[TG_ROUTE_NAME_MAX + 1];
    size_t  len;

    len = strlen(rest);

    if (rt->prefix_len + len > TG_ROUTE_NAME_MAX) {
        return;
    }

    memcpy(id, rt->name, rt->prefix_len);
    memcpy(id + rt->prefix_len, rest, len);

    tg_build_str(b, TG_F_NEXT, id, rt->prefix_len + len);
}


static void
tg_handle_report(tg_conn *c, const uint8_t *frame, const tg_frame_hdr *h)
{
    int             rc;
    char            provider[TG_PROVIDER_NAME_MAX + 1];
    char            route[TG_ROUTE_NAME_MAX + 1];
    uint32_t        total_ms, v;
    tg_field        f;
    tg_report       r;
    bool            fed;
    tg_pstate      *freed;
    tg_server      *srv = c->srv;
    tg_field_iter   it;

    memset(&r, 0, sizeof(r));
    r.owner = c->id;
    r.count = 1;
    r.outcome = TG_OUTCOME_UNKNOWN;
    total_ms = 0;

    tg_fields_init(&it, frame, h);

    while ((rc = tg_fields_next(&it, &f)) == 1) {
        switch (f.key) {

        case TG_F_LEASE:
            if (tg_field_u32(&f, &r.lease) != 0) {
                tg_conn_malformed(c, h, "lease is not a u32");
                return;
            }
            break;

        case TG_F_OUTCOME:
            r.outcome = tg_outcome_parse((const char *) f.value, f.len);
            break;

        /* names too long to be a provider's or a route's are not kept */

        case TG_F_PROVIDER:
            if (f.len < sizeof(provider)) {
                memcpy(provider, f.value, f.len);
                provider[f.len] = '\0';
                r.provider = provider;
            }
            break;

        case TG_F_ROUTE:
            if (f.len < sizeof(route) && memchr(f.value, 0, f.len) == NULL) {
                memcpy(route, f.value, f.len);
                route[f.len] = '\0';
                r.route = route;
            }
            break;

        case TG_F_HTTP_STATUS:
        case TG_F_UPSTREAM_MS:
        case TG_F_TOTAL_MS:
        case TG_F_COUNT:
        case TG_F_COOLDOWN_MS:
            if (tg_field_u32(&f, &v) != 0) {
                tg_conn_malformed(c, h, "a REPORT number is not a u32");
                return;
            }

            if (f.key == TG_F_HTTP_STATUS) {
                r.http_status = v;
            } else if (f.key == TG_F_UPSTREAM_MS) {
                r.upstream_ms = v;
            } else if (f.key == TG_F_TOTAL_MS) {
                total_ms = v;
                r.total_ms = v;
            } else if (f.key == TG_F_COUNT) {
                r.count = v;
            } else if (f.key == TG_F_COOLDOWN_MS) {
                r.cooldown_ms = v;
            }
            break;

        default:
            /* what it used: usage.c reads those fields */
            if (tg_usage_field(&r, &f) < 0) {
                tg_conn_malformed(c, h, "a REPORT usage field is not "
                                  "of its type");
                return;
            }
            break;
        }
    }

    if (rc < 0) {
        tg_conn_malformed(c, h, "a field runs past the end of the frame");
        return;
    }

    if (r.count == 0 || (r.lease != 0 && r.count != 1)) {
        tg_conn_malformed(c, h, "count must be 1 with a lease and never 0");
        return;
    }

    /* a route the policy does not have is not the module's to create */

    if (r.route != NULL
        && tg_policy_route(srv->policy, r.route, strlen(r.route)) == NULL)
    {
        r.route = NULL;
    }

    tg_limit_store_clock(srv->state->limits);
    tg_usage_cost(srv->policy, &r);

    freed = tg_state_report(srv->state, &r, tg_now_ms(srv));

    tg_usage_account(srv->usage, srv->policy, srv->state, &r,
                     ev_now(srv->loop));

    tg_log_debug("connection %llu: REPORT %u: %u x %s, status %u, "
                 "upstream %u ms, total %u ms, lease %u%s",
                 (unsigned long long) c->id, h->id, r.count,
                 tg_outcome_name(r.outcome), r.http_status, r.upstream_ms,
                 total_ms, r.lease,
                 r.lease == 0 || freed != NULL ? "" : " (unknown)");

    /*
     * A failure may have changed the provider's state, a lease that ended
     * lets a waiting request go: both right after this frame's connection
     * is done with, since answering others may close connections.
     */

    fed = freed != NULL
          || (r.provider != NULL && tg_state_find(srv->state, r.provider));

    /* decisions the workers reuse may send to a provider now left alone */

    if (r.outcome == TG_OUTCOME_RATE_LIMITED && r.cooldown_ms != 0 && fed) {
        srv->invalidate_due = true;
    }

    tg_soon(srv, r.outcome != TG_OUTCOME_OK && fed, freed != NULL);
}


/* STATUS from the module's tailgate_status handler: the report, relayed */

static void
tg_handle_status(tg_conn *c, const uint8_t *frame, const tg_frame_hdr *h)
{
    int             rc;
    long            len;
    char           *body, msg[TG_MESSAGE_MAX];
    size_t          blen, part, sent;
    tg_field        f;
    tg_server      *srv = c->srv;
    tg_builder      b;
    tg_field_iter   it;
    tg_status_view  view;
    bool            prometheus;

    prometheus = false;

    tg_fields_init(&it, frame, h);

    while ((rc = tg_fields_next(&it, &f)) == 1) {
        if (f.key == TG_F_FORMAT) {
            prometheus = f.len == 10 && memcmp(f.value, "prometheus", 10) == 0;
        }
    }

    if (rc < 0) {
        tg_conn_malformed(c, h, "a field runs past the end of the frame");
        return;
    }

    view = tg_status_view_of(srv);

    body = prometheus ? tg_status_prometheus(&view, &blen)
                      : tg_status_json(&view, &blen);

    if (body == NULL) {
        tg_conn_error(c, h->id, TG_ERR_INTERNAL, false,
                      "cannot build the status");
        return;
    }

    if (blen > TG_STATUS_MAX) {
        /* too much to relay: say so, and where to look */

        snprintf(msg, sizeof(msg), "The status is %zu bytes, more than "
                 "policyd relays through nginx (%u bytes). Ask policyd "
                 "directly: policyd status -a ADMIN_SOCKET.", blen,
                 (unsigned) TG_STATUS_MAX);

        free(body);

        tg_builder_start(c, &b, TG_MSG_STATUS_REPLY, h->id);
        tg_build_u32(&b, TG_F_STATUS, 413);
        tg_build_cstr(&b, TG_F_ERROR_MESSAGE, msg);

        len = tg_build_end(&b);
        if (len > 0) {
            tg_conn_send(c, srv->out, (size_t) len);
        }

        return;
    }

    /* more than one frame the worker reads: STATUS_PARTs, then the reply */

    part = c->peer_max - TG_REPLY_OVERHEAD;

    for (sent = 0; blen - sent > part; sent += part) {
        tg_builder_start(c, &b, TG_MSG_STATUS_PART, h->id);
        tg_build_str(&b, TG_F_BODY, body + sent, part);

        len = tg_build_end(&b);
        if (len < 0) {
            free(body);
            tg_conn_error(c, h->id, TG_ERR_INTERNAL, false,
                          "the status does not fit in frames");
            return;
        }

        tg_conn_send(c, srv->out, (size_t) len);
    }

    tg_builder_start(c, &b, TG_MSG_STATUS_REPLY, h->id);
    tg_build_u32(&b, TG_F_STATUS, 200);
    tg_build_str(&b, TG_F_BODY, body + sent, blen - sent);

    free(body);

    len = tg_build_end(&b);

    if (len < 0) {
        tg_conn_error(c, h->id, TG_ERR_INTERNAL, false,
                      "the status does not fit in a frame");
        return;
    }

    tg_conn_send(c, srv->out, (size_t) len);
}


/*
 * HOLD: a lease the worker still holds, granted on a connection that is
 * gone - or by a policyd that is gone.  It is this connection's now.
 */

static void
tg_handle_hold(tg_conn *c, const uint8_t *frame, const tg_frame_hdr *h)
{
    int             rc;
    char            provider[TG_PROVIDER_NAME_MAX + 1];
    uint32_t        lease;
    tg_field        f;
    tg_pstate      *ps;
    tg_server      *srv = c->srv;
    tg_field_iter   it;

    lease = 0;
    provider[0] = '\0';

    tg_fields_init(&it, frame, h);

    while ((rc = tg_fields_next(&it, &f)) == 1) {
        switch (f.key) {

        case TG_F_LEASE:
            if (tg_field_u32(&f, &lease) != 0) {
                tg_conn_malformed(c, h, "lease is not a u32");
                return;
            }
            break;

        case TG_F_PROVIDER:
            if (f.len < sizeof(provider)
                && memchr(f.value, 0, f.len) == NULL)
            {
                memcpy(provider, f.value, f.len);
                provider[f.len] = '\0';
            }
            break;
        }
    }

    if (rc < 0) {
        tg_conn_malformed(c, h, "a field runs past the end of the frame");
        return;
    }

    ps = provider[0] != '\0' ? tg_state_find(srv->state, provider) : NULL;

    if (ps == NULL || !ps->in_policy || lease == 0) {
        tg_log_debug("connection %llu: HOLD of lease %u of provider \"%s\": "
                     "none needed", (unsigned long long) c->id, lease,
                     provider);
        return;
    }

    if (tg_state_lease_adopt(srv->state, ps, c->id, tg_now_ms(srv), lease)
        != 0)
    {
        tg_log_error("connection %llu: out of memory for a held lease",
                     (unsigned long long) c->id);
        return;
    }

    tg_log_info("connection %llu: lease %u of provider \"%s\" is held by "
                "the worker: %u of %u in use", (unsigned long long) c->id,
                lease, ps->name, ps->in_flight, ps->max_concurrency);
}
