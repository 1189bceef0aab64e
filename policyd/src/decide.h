/*
 * The routing decision: a pure function of the policy, the request's facts
 * and a snapshot of the runtime state.  No I/O, no globals, no allocation
 * except inside tg_models_json().  The table it implements is "Decisions" in
 * docs/policy.md.
 */

#ifndef TG_DECIDE_H
#define TG_DECIDE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "policy.h"
#include "state.h"


#define TG_MESSAGE_MAX  512
#define TG_REASON_MAX   1024
#define TG_RATELIMIT_MAX  96


/* bytes that are not NUL-terminated, e.g. a field of a frame */
typedef struct {
    const char  *data;
    size_t       len;
} tg_str;


typedef struct tg_facts {
    tg_endpoint    endpoint;        /* TG_EP_NONE: absent or unknown */
    tg_str         model;           /* the route name asked for */
    tg_str         client;
    tg_str         tenant;

    const tg_str  *tags;
    size_t         ntags;
    const tg_str  *allow;           /* routes the client may use */
    size_t         nallow;          /* 0: every route */
    const tg_str  *exclude;         /* providers already tried */
    size_t         nexclude;

    bool           stream;
    bool           tools;
    bool           dry_run;         /* explain: no lease, not counted */
    bool           waited;          /* waited in a queue already */
    bool           in_queue;        /* decided again from the queue */
    bool           deferred;        /* decided again after a deferral */
    uint32_t       body_bytes;
    uint32_t       attempt;         /* 1 for the first; 0 reads as 1 */
    uint32_t       prompt_estimate;
    tg_str         limit;           /* the identity's limit profile */
    tg_str         cursor;          /* MODELS: the page after this route */
} tg_facts;


/*
 * Why a step was chosen or passed over: the words of a decision's reason,
 * "provider:why" for each step considered.  X(id, word); the first six are
 * the TG_UNFIT_* reasons of decide.c, in the order of their bits.
 */
#define TG_REASONS(X)                                                         \
    X(ENDPOINT,   "endpoint")                                                 \
    X(ZONE,       "zone")                                                     \
    X(REGION,     "region")                                                   \
    X(CONTEXT,    "context")                                                  \
    X(TOOLS,      "tools")                                                    \
    X(STREAMING,  "streaming")                                                \
    X(EXCLUDED,   "excluded")                                                 \
    X(DOWN,       "down")                                                     \
    X(STUCK,      "stuck")                                                    \
    X(BUSY,       "busy")                                                     \
    X(QUEUED,     "queued")                                                   \
    X(LIMITED,    "limited")                                                  \
    X(CHOSEN,     "chosen")

#define TG_X(id, word)  TG_REASON_ ## id,
typedef enum { TG_REASONS(TG_X) TG_REASON_COUNT } tg_reason;
#undef TG_X

/* A reason's word; and a word read back (TG_REASON_COUNT: not one). */
const char *tg_reason_word(tg_reason r);
tg_reason tg_reason_parse(const char *s, size_t len);


/* status of a decision that is to wait for a slot (never sent) */
#define TG_DECISION_QUEUE  1


typedef struct tg_decision {
    unsigned            status;         /* 200, 400, 403, 404, 429, 503,
                                           or TG_DECISION_QUEUE */
    uint32_t            queue_wait_ms;  /* TG_DECISION_QUEUE: how long */

    /* a step's provider at capacity changed the answer */
    bool                capacity_limited;

    /* status != 200 */
    const char         *error_type;     /* "invalid_request_error" ... */
    const char         *error_code;     /* "model_not_found" ... */
    char                message[TG_MESSAGE_MAX];
    uint32_t            retry_after;    /* 0: none */

    /* the route, when one was found (also on most refusals) */
    const tg_route     *route;

    /* status 200: all point into the policy */
    const tg_provider  *provider;
    const tg_step      *step;
    const char         *upstream;
    const char         *scheme;
    const char         *host;
    const char         *path;
    const char         *provider_model;
    const char         *authorization;  /* "" when none; SECRET */
    const char         *zone;

    /* the failures of this attempt after which the module may ask again */
    uint32_t            fallback;       /* TG_FALLBACK_* bits */

    /* the attempt's timeouts in ms, 0: nginx's own */
    uint32_t            connect_ms;
    uint32_t            first_byte_ms;
    uint32_t            idle_ms;

    /* request headers the provider does not get ("name\n" lines, "" for
       none), and the User-Agent it gets instead of the client's (NULL) */
    const char         *drop_headers;
    const char         *user_agent;

    /* edits of the request body for this step: "" for none */
    const char         *adjust;

    /* "IN CACHED OUT MIN CHARS" of the step's provider model, or NULL */
    const char         *prices;
    bool                stream_usage;   /* ask the provider for usage */
    bool                translate;      /* responses -> chat, by the module */

    /*
     * How long a worker may reuse this decision for the same facts, and
     * for bodies up to which size (0: any).
     */
    uint32_t            cache_ms;
    uint32_t            cache_max_bytes;

    /*
     * Limits (limits_admit.c): a step passed over for its provider's
     * rpm, tpm or cooldown; and the client's windows as x-ratelimit-*
     * text, "" when no limit applies.
     */
    bool                provider_limited;
    bool                client_limited;
    char                ratelimit[TG_RATELIMIT_MAX];

    /* a pattern step's provider model, the rest of the name filled in */
    char                model_buf[TG_MODEL_NAME_MAX + 256 + 1];

    /* "deepseek:zone local:chosen": every step considered, and why */
    char                reason[TG_REASON_MAX];
} tg_decision;


void tg_decide(const tg_policy *policy, const tg_facts *facts,
    const tg_state *state, tg_decision *out);

/* Whether the facts carry the tag "private". */
bool tg_facts_private(const tg_facts *facts);

/* Whether the facts' allowlist lets the client use route rt. */
bool tg_facts_allow(const tg_facts *facts, const tg_route *rt);

/*
 * The /v1/models body for these facts (client allowlist, "private" tag and,
 * when facts->endpoint is set, that endpoint) into buf, NUL-terminated.
 * With facts->model set, the body of /v1/models/{model}: that one model
 * object, or TG_MODELS_NOT_FOUND when this client cannot use it.
 * Returns its length, or -1 when it does not fit or memory ran out.
 */
#define TG_MODELS_NOT_FOUND  (-2)

long tg_models_json(const tg_policy *policy, const tg_facts *facts,
    char *buf, size_t size);

/*
 * One page of the /v1/models body into buf (NUL-terminated), for a reply
 * that must fit in a frame: the pages of one list joined are its whole
 * JSON.  cursor NULL or empty: the first page; else the name of the route
 * the last page ended with.  *last is the route this page ends with when
 * more follow, NULL when it is the list's end (or one model, with
 * facts->model); for a pattern route, *last_rest is the listed model it
 * ends with (the cursor is then the route's prefix and it).  Returns the length, TG_MODELS_NOT_FOUND, or -1 when not
 * even one model fits.
 */
long tg_models_page(const tg_policy *policy, const tg_facts *facts,
    const tg_str *cursor, char *buf, size_t size, const struct tg_route **last,
    const char **last_rest);


#endif /* TG_DECIDE_H */
