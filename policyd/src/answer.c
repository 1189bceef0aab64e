/*
 * A DECIDE answered: the facts read from its frame, the decision, the
 * lease it takes, counted and logged, and the DECISION frame.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "answer.h"
#include "limits_admit.h"
#include "log.h"
#include "redis.h"


static void tg_send_decision(tg_conn *c, uint32_t id, const tg_decision *d,
    uint32_t lease);
static long tg_build_decision(tg_conn *c, uint32_t id, const tg_decision *d,
    uint32_t lease);
static int tg_strv_push(tg_strv *v, const tg_field *f);


int
tg_read_facts(tg_conn *c, const uint8_t *frame, const tg_frame_hdr *h,
    tg_facts *facts, bool *has_endpoint)
{
    int             rc;
    uint8_t         u8;
    tg_str         *s;
    tg_field        f;
    tg_server      *srv = c->srv;
    tg_field_iter   it;

    memset(facts, 0, sizeof(*facts));
    facts->endpoint = TG_EP_NONE;
    *has_endpoint = false;

    srv->tags.n = 0;
    srv->allow.n = 0;
    srv->exclude.n = 0;

    srv->facts_frame = frame;
    srv->facts_hdr = *h;

    tg_fields_init(&it, frame, h);

    while ((rc = tg_fields_next(&it, &f)) == 1) {
        s = NULL;

        switch (f.key) {

        case TG_F_ENDPOINT:
            *has_endpoint = true;
            facts->endpoint = tg_endpoint_parse((const char *) f.value,
                                                f.len);
            break;

        case TG_F_MODEL:
            s = &facts->model;
            break;

        case TG_F_CLIENT:
            s = &facts->client;
            break;

        case TG_F_TENANT:
            s = &facts->tenant;
            break;

        case TG_F_LIMIT:
            s = &facts->limit;
            break;

        case TG_F_CURSOR:
            s = &facts->cursor;
            break;

        case TG_F_TAG:
        case TG_F_ALLOW_ROUTE:
        case TG_F_EXCLUDE:
            if (tg_strv_push(f.key == TG_F_TAG ? &srv->tags
                             : f.key == TG_F_ALLOW_ROUTE ? &srv->allow
                             : &srv->exclude, &f) != 0)
            {
                tg_conn_error(c, h->id, TG_ERR_INTERNAL, false,
                              "out of memory");
                return -1;
            }
            break;

        case TG_F_STREAM:
        case TG_F_TOOLS:
        case TG_F_DRY_RUN:
            if (tg_field_u8(&f, &u8) != 0) {
                tg_conn_malformed(c, h, f.key == TG_F_STREAM
                                        ? "stream is not a u8"
                                        : f.key == TG_F_TOOLS
                                        ? "tools is not a u8"
                                        : "dry_run is not a u8");
                return -1;
            }

            if (f.key == TG_F_STREAM) {
                facts->stream = u8 != 0;
            } else if (f.key == TG_F_TOOLS) {
                facts->tools = u8 != 0;
            } else {
                facts->dry_run = u8 != 0;
            }
            break;

        case TG_F_BODY_BYTES:
            if (tg_field_u32(&f, &facts->body_bytes) != 0) {
                tg_conn_malformed(c, h, "body_bytes is not a u32");
                return -1;
            }
            break;

        case TG_F_ATTEMPT:
            if (tg_field_u32(&f, &facts->attempt) != 0) {
                tg_conn_malformed(c, h, "attempt is not a u32");
                return -1;
            }
            break;

        case TG_F_PROMPT_ESTIMATE:
            if (tg_field_u32(&f, &facts->prompt_estimate) != 0) {
                tg_conn_malformed(c, h, "prompt_estimate is not a u32");
                return -1;
            }
            break;
        }

        if (s != NULL) {
            s->data = (const char *) f.value;
            s->len = f.len;
        }
    }

    if (rc < 0) {
        tg_conn_malformed(c, h, "a field runs past the end of the frame");
        return -1;
    }

    facts->tags = srv->tags.items;
    facts->ntags = srv->tags.n;
    facts->allow = srv->allow.items;
    facts->nallow = srv->allow.n;
    facts->exclude = srv->exclude.items;
    facts->nexclude = srv->exclude.n;

    return 0;
}


static int
tg_strv_push(tg_strv *v, const tg_field *f)
{
    size_t   cap;
    tg_str  *items;

    if (v->n == v->cap) {
        cap = v->cap ? v->cap * 2 : 16;

        items = realloc(v->items, cap * sizeof(tg_str));
        if (items == NULL) {
            return -1;
        }

        v->items = items;
        v->cap = cap;
    }

    v->items[v->n].data = (const char *) f->value;
    v->items[v->n].len = f->len;
    v->n++;

    return 0;
}


int
tg_answer_decide(tg_conn *c, uint32_t id, const tg_facts *facts,
    tg_decision *d)
{
    int             rc;
    bool            shared_lease, shared_limits;
    long            len;
    uint32_t        lease;
    tg_server      *srv = c->srv;
    tg_pstate      *ps;
    tg_limit_hold  *hold;

    /* the windows of the limits run on the time of this decision */
    tg_limit_store_clock(srv->state->limits);

    tg_decide(srv->policy, facts, srv->state, d);

    /* "policyd explain" asks like a worker, but changes nothing, gets no key */

    if (facts->dry_run) {
        d->authorization = "";
        tg_send_decision(c, id, d, 0);
        return 0;
    }

    /*
     * Capacity is judged from the leases: a worker's REPORT that ends one
     * may have come on another connection in this same loop pass, and
     * right after a restart the leases of the last policyd may still be
     * on their way back.  Such a decision waits until they are counted.
     */

    if (!facts->deferred && !facts->in_queue) {

        if (tg_now_ms(srv) < srv->recover_until_ms
            && (d->capacity_limited
                || (d->status == 200
                    && tg_state_provider(srv->state, d->provider->index)
                       ->max_concurrency != 0)))
        {
            return TG_ANSWER_RECOVER;
        }

        if (d->capacity_limited) {
            return TG_ANSWER_DEFER;
        }
    }

    if (d->status == TG_DECISION_QUEUE) {
        return TG_ANSWER_QUEUE;
    }

    /*
     * The limits of the client, its tenant, the route and the provider.
     * A refusal for a concurrency slot is decided again once, like one
     * for a provider at capacity: the REPORT that frees it may be in
     * this same pass.
     */

    hold = NULL;

    if (d->status == 200) {
        rc = tg_limits_admit(srv->state->limits, srv->policy, facts, d,
                             &hold);

        if (rc == TG_ADMIT_ERROR) {
            tg_conn_error(c, id, TG_ERR_INTERNAL, false,
                          "out of memory for the limits");
            return 0;
        }

        if (rc == TG_ADMIT_BUSY && !facts->deferred && !facts->in_queue) {
            return TG_ANSWER_DEFER;
        }

    } else {
        /* every answer to a client with limits says what is left */
        tg_limits_peek(srv->state->limits, srv->policy, facts, d);
    }

    lease = 0;

    if (d->status == 200
        && tg_state_lease_hold(srv->state, d->provider->index, c->id,
                               tg_now_ms(srv), hold, &lease) != 0)
    {
        tg_conn_error(c, id, TG_ERR_INTERNAL, false, "cannot grant a lease");
        return 0;
    }

    tg_state_count_decision(srv->state, d->status,
                            d->status == 200 ? d->provider->index : SIZE_MAX,
                            d->route != NULL ? d->route->name : NULL);

    if (d->status == 200) {
        tg_log_debug("connection %llu: DECIDE %u \"%.*s\" %s attempt %u: "
                     "provider %s upstream %s path %s model %s lease %u "
                     "(%s)", (unsigned long long) c->id, id,
                     tg_log_len(facts->model.len), facts->model.data,
                     tg_endpoint_name(facts->endpoint), facts->attempt,
                     d->provider->name, d->upstream, d->path,
                     d->provider_model, lease, d->reason);

    } else if (d->status == 503 || d->status == 429
               || strcmp(d->error_code, "unknown_limit_profile") == 0)
    {
        tg_log_info("connection %llu: DECIDE %u \"%.*s\" %s: %u %s (%s)",
                    (unsigned long long) c->id, id,
                    tg_log_len(facts->model.len), facts->model.data,
                    tg_endpoint_name(facts->endpoint), d->status,
                    d->error_code, d->reason);
    } else {
        tg_log_debug("connection %llu: DECIDE %u \"%.*s\" %s: %u %s (%s)",
                     (unsigned long long) c->id, id,
                     tg_log_len(facts->model.len), facts->model.data,
                     tg_endpoint_name(facts->endpoint), d->status,
                     d->error_code, d->reason);
    }

    /*
     * A lease of a provider shared by several nodes, or one whose limits
     * are: once Redis has it.
     */

    if (lease != 0 && srv->redis != NULL) {
        ps = tg_state_provider(srv->state, d->provider->index);
        shared_lease = tg_redis_shares(srv->redis, ps);
        shared_limits = tg_limits_shared(srv->state->limits, hold);

        if (shared_lease || shared_limits) {
            len = tg_build_decision(c, id, d, lease);

            if (len <= 0) {
                return TG_ANSWER_SENT;
            }

            if (shared_limits) {
                tg_redis_limits(srv->redis, c, id, shared_lease ? ps : NULL,
                                lease, srv->out, (size_t) len);
            } else {
                tg_redis_acquire(srv->redis, c, id, ps, lease, srv->out,
                                 (size_t) len);
            }

            return TG_ANSWER_SENT;
        }
    }

    tg_send_decision(c, id, d, lease);

    return TG_ANSWER_SENT;
}


static void
tg_send_decision(tg_conn *c, uint32_t id, const tg_decision *d,
    uint32_t lease)
{
    long  len;

    len = tg_build_decision(c, id, d, lease);

    if (len > 0) {
        tg_conn_send(c, c->srv->out, (size_t) len);
    }
}


/* the DECISION frame in the server's out buffer: its length, or -1 */

static long
tg_build_decision(tg_conn *c, uint32_t id, const tg_decision *d,
    uint32_t lease)
{
    long        len;
    tg_builder  b;

    tg_builder_start(c, &b, TG_MSG_DECISION, id);

    /* only explain hears of waiting: as 202, with the provider and time */

    if (d->status == TG_DECISION_QUEUE) {
        tg_build_u32(&b, TG_F_STATUS, 202);
        tg_build_cstr(&b, TG_F_PROVIDER, d->provider->name);
        tg_build_cstr(&b, TG_F_ROUTE, d->route->name);
        tg_build_u32(&b, TG_F_WAIT_MS, d->queue_wait_ms);

    } else {
        tg_build_u32(&b, TG_F_STATUS, d->status);
    }

    if (d->status == 200) {
        tg_build_cstr(&b, TG_F_PROVIDER, d->provider->name);
        tg_build_cstr(&b, TG_F_ROUTE, d->route->name);
        tg_build_cstr(&b, TG_F_UPSTREAM, d->upstream);
        tg_build_cstr(&b, TG_F_SCHEME, d->scheme);
        tg_build_cstr(&b, TG_F_HOST, d->host);
        tg_build_cstr(&b, TG_F_PATH, d->path);
        tg_build_cstr(&b, TG_F_PROVIDER_MODEL, d->provider_model);
        tg_build_cstr(&b, TG_F_ZONE, d->zone);

        if (d->authorization[0] != '\0') {
            tg_build_cstr(&b, TG_F_AUTHORIZATION, d->authorization);
        }

        if (d->fallback != 0) {
            tg_build_u32(&b, TG_F_FALLBACK, d->fallback);
        }

        if (d->adjust[0] != '\0') {
            tg_build_cstr(&b, TG_F_ADJUST, d->adjust);
        }

        if (d->drop_headers[0] != '\0') {
            tg_build_cstr(&b, TG_F_DROP_HEADERS, d->drop_headers);
        }

        if (d->user_agent != NULL) {
            tg_build_cstr(&b, TG_F_USER_AGENT, d->user_agent);
        }

        if (d->connect_ms != 0) {
            tg_build_u32(&b, TG_F_CONNECT_MS, d->connect_ms);
        }

        if (d->first_byte_ms != 0) {
            tg_build_u32(&b, TG_F_FIRST_BYTE_MS, d->first_byte_ms);
        }

        if (d->idle_ms != 0) {
            tg_build_u32(&b, TG_F_IDLE_MS, d->idle_ms);
        }

        if (d->prices != NULL) {
            tg_build_cstr(&b, TG_F_PRICES, d->prices);
        }

        if (d->stream_usage) {
            tg_build_u8(&b, TG_F_STREAM_USAGE, 1);
        }

        if (d->translate) {
            tg_build_u8(&b, TG_F_TRANSLATE, 1);
        }

        if (lease != 0) {
            tg_build_u32(&b, TG_F_LEASE, lease);

        } else if (d->cache_ms != 0 && !d->client_limited) {
            tg_build_u32(&b, TG_F_CACHE_MS, d->cache_ms);

            if (d->cache_max_bytes != 0) {
                tg_build_u32(&b, TG_F_CACHE_MAX_BYTES, d->cache_max_bytes);
            }
        }

    } else if (d->status != TG_DECISION_QUEUE) {
        tg_build_cstr(&b, TG_F_ERROR_TYPE, d->error_type);
        tg_build_cstr(&b, TG_F_ERROR_CODE, d->error_code);
        tg_build_cstr(&b, TG_F_ERROR_MESSAGE, d->message);

        if (d->retry_after != 0) {
            tg_build_u32(&b, TG_F_RETRY_AFTER, d->retry_after);
        }

        if (d->route != NULL) {
            tg_build_cstr(&b, TG_F_ROUTE, d->route->name);
        }
    }

    if (d->ratelimit[0] != '\0') {
        tg_build_cstr(&b, TG_F_RATELIMIT, d->ratelimit);
    }

    if (d->reason[0] != '\0') {
        tg_build_cstr(&b, TG_F_REASON, d->reason);
    }

    len = tg_build_end(&b);

    if (len < 0) {
        /* only with absurdly long names; the lease must not leak */
        tg_state_lease_release(c->srv->state, lease);
        tg_conn_error(c, id, TG_ERR_INTERNAL, false,
                      "the decision does not fit in a frame");
        return -1;
    }

    return len;
}
