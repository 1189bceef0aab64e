/*
 * The module <-> policyd wire protocol: numbers only, no code.
 *
 * Shared by ngx_tailgate_module and policyd so that both sides agree on
 * every constant; neither program owns it. docs/protocol.md explains the framing and each field.
 * Plain C so that it compiles in both programs.
 */

#ifndef TAILGATE_PROTOCOL_H
#define TAILGATE_PROTOCOL_H


#define TG_PROTO_VERSION            1

/* u32 length (bytes after itself) | u8 version | u8 type | u32 id */
#define TG_FRAME_LEN_SIZE           4
#define TG_FRAME_HEADER_SIZE        10
#define TG_FRAME_BODY_HEADER_SIZE   6

/* each field: u8 key | u32 length | value */
#define TG_FIELD_HEADER_SIZE        5

#define TG_MAX_FRAME_MIN            65536   /* every peer accepts this */
#define TG_MAX_FRAME_LIMIT          (4 * 1024 * 1024)


/* frame types */
#define TG_MSG_HELLO                1   /* module -> policyd */
#define TG_MSG_HELLO_OK             2   /* policyd -> module */
#define TG_MSG_DECIDE               3   /* module -> policyd */
#define TG_MSG_DECISION             4   /* policyd -> module */
#define TG_MSG_MODELS               5   /* module -> policyd */
#define TG_MSG_MODEL_LIST           6   /* policyd -> module */
#define TG_MSG_REPORT               7   /* module -> policyd, no reply */
#define TG_MSG_ERROR                8   /* policyd -> module */
#define TG_MSG_INVALIDATE           9   /* policyd -> module, id 0 */
#define TG_MSG_QUEUED               10  /* policyd -> module: DECIDE waits */
#define TG_MSG_STATUS               11  /* module -> policyd */
#define TG_MSG_STATUS_REPLY         12  /* policyd -> module */
#define TG_MSG_CANCEL               13  /* module -> policyd, no reply */
#define TG_MSG_STATUS_PART          14  /* policyd -> module: body so far */
#define TG_MSG_HOLD                 15  /* module -> policyd, no reply:
                                           a lease it still holds */
#define TG_MSG_JWKS_REFRESH         16  /* module -> policyd: a token named
                                           a kid its key set lacks */
#define TG_MSG_JWKS_STATE           17  /* policyd -> module: what came of
                                           JWKS_REFRESH */


/* fields; the comment gives the value type (u8, u32, str) */

/* HELLO, HELLO_OK */
#define TG_F_MAX_FRAME              1   /* u32 largest frame I accept */
#define TG_F_PID                    2   /* u32 */
#define TG_F_SOFTWARE               3   /* str */

/* DECIDE, MODELS: the request's facts */
#define TG_F_ENDPOINT               10  /* str: chat, embeddings, ... */
#define TG_F_MODEL                  11  /* str: model the client asked for */
#define TG_F_CLIENT                 12  /* str */
#define TG_F_TENANT                 13  /* str */
#define TG_F_TAG                    14  /* str, repeatable */
#define TG_F_ALLOW_ROUTE            15  /* str, repeatable; none = all */
#define TG_F_STREAM                 16  /* u8 */
#define TG_F_TOOLS                  17  /* u8 */
#define TG_F_BODY_BYTES             18  /* u32 */
#define TG_F_ATTEMPT                19  /* u32, 1 for the first */
#define TG_F_EXCLUDE                20  /* str, repeatable: provider */
#define TG_F_PROMPT_ESTIMATE        21  /* u32 tokens */
#define TG_F_DRY_RUN                22  /* u8: explain only, no lease */

/* DECISION, MODEL_LIST, ERROR */
#define TG_F_STATUS                 30  /* u32 HTTP status, 200 = go */
#define TG_F_ERROR_TYPE             31  /* str */
#define TG_F_ERROR_CODE             32  /* str */
#define TG_F_ERROR_MESSAGE          33  /* str */
#define TG_F_RETRY_AFTER            34  /* u32 seconds */
#define TG_F_PROVIDER               35  /* str */
#define TG_F_ROUTE                  36  /* str */
#define TG_F_UPSTREAM               37  /* str: nginx upstream{} name */
#define TG_F_SCHEME                 38  /* str: http or https */
#define TG_F_HOST                   39  /* str: Host header, TLS name */
#define TG_F_PATH                   40  /* str: request path at provider */
#define TG_F_PROVIDER_MODEL         41  /* str */
#define TG_F_AUTHORIZATION          42  /* str: header value, secret */
#define TG_F_LEASE                  43  /* u32, 0 = none */
#define TG_F_REASON                 44  /* str */
#define TG_F_ZONE                   45  /* str: local, private, external */
#define TG_F_BODY                   46  /* str: response body (JSON) */
#define TG_F_CACHE_MS               47  /* u32: reuse the decision this long */
#define TG_F_CACHE_MAX_BYTES        48  /* u32: only for bodies this small */
#define TG_F_FALLBACK               49  /* u32: TG_FALLBACK_* outcomes */
#define TG_F_ADJUST                 57  /* str: request edits, see docs */
#define TG_F_WAIT_MS                58  /* u32: QUEUED: at most this long */
#define TG_F_FORMAT                 59  /* str: STATUS: json, prometheus */

/* REPORT */
#define TG_F_OUTCOME                50  /* str: see docs/protocol.md */
#define TG_F_HTTP_STATUS            51  /* u32 */
#define TG_F_UPSTREAM_MS            52  /* u32 */
#define TG_F_TOTAL_MS               53  /* u32 */
#define TG_F_PROMPT_TOKENS          54  /* u32 */
#define TG_F_COMPLETION_TOKENS      55  /* u32 */
#define TG_F_COUNT                  56  /* u32: requests this REPORT counts */

/* REPORT: one request's usage (docs/protocol.md, "Usage") */
#define TG_F_REQUEST_ID             60  /* str: nginx's $request_id */
#define TG_F_CACHED_TOKENS          61  /* u32: of the input, cached */
#define TG_F_REASONING_TOKENS       62  /* u32: of the output, reasoning */
#define TG_F_ESTIMATED              63  /* u8: 1 when tokens are estimated */
#define TG_F_TTFB_MS                64  /* u32: to the provider's first byte */
#define TG_F_AUDIO_MS               65  /* u32: transcribed audio */
#define TG_F_CHARACTERS             66  /* u32: speech: input characters */
#define TG_F_RESPONSE_MODEL         67  /* str: the model that answered */
#define TG_F_TOTAL_TOKENS           68  /* u32: as the provider says */

/* DECISION: the step's prices, for $tailgate_cost */
#define TG_F_PRICES                 69  /* str: "IN CACHED OUT MIN CHARS" */
#define TG_F_STREAM_USAGE           70  /* u8: ask this provider for a
                                           stream's usage */

/* limits (docs/protocol.md, "Limits") */
#define TG_F_LIMIT                  71  /* str: DECIDE: the client's limit
                                           profile, from its identity */
#define TG_F_RATELIMIT              72  /* str: DECISION: "REQ LEFT RESET_MS
                                           TOK LEFT RESET_MS" */
#define TG_F_COOLDOWN_MS            73  /* u32: REPORT: the provider asked
                                           to be left alone this long */

/* DECISION: this attempt's own timeouts (docs/protocol.md, "Timeouts") */
#define TG_F_CONNECT_MS             74  /* u32: to connect to the provider */
#define TG_F_FIRST_BYTE_MS          75  /* u32: from the request sent to
                                           the response's header */
#define TG_F_IDLE_MS                76  /* u32: between two reads of the
                                           response's body */

/* DECISION: what the provider must not learn of the client */
#define TG_F_DROP_HEADERS           77  /* str: lowercase header names, one
                                           per "\n"-ended line; a final
                                           "*" makes a prefix */
#define TG_F_USER_AGENT             78  /* str: the User-Agent sent in place
                                           of the client's */

/* MODELS, MODEL_LIST: a list in pages (docs/protocol.md, "Models") */
#define TG_F_CURSOR                 79  /* str: MODELS: the page after the
                                           route of this name */
#define TG_F_NEXT                   83  /* str: MODEL_LIST: more follow;
                                           the cursor to ask them with */


/* key sets (docs/protocol.md, "Key sets") */
#define TG_F_JWKS_FILE              80  /* str: JWKS_REFRESH: the set's file */
#define TG_F_KID                    81  /* str: JWKS_REFRESH: the kid */
#define TG_F_REFRESH_MS             82  /* u32: JWKS_STATE: no refresh
                                           sooner than this, from now */

/* translation (docs/translation.md) */
#define TG_F_TRANSLATE              90  /* u8: DECISION: a responses request
                                           goes to a chat provider: the
                                           module translates both ways */


/* TG_F_FALLBACK: the failures of this attempt that may be tried again */
#define TG_FALLBACK_CONNECT_ERROR   0x01
#define TG_FALLBACK_TIMEOUT         0x02
#define TG_FALLBACK_5XX             0x04
#define TG_FALLBACK_429             0x08
#define TG_FALLBACK_AUTH            0x10    /* the provider refused the
                                               gateway: 401, 402, 403;
                                               only where a route's "on"
                                               names "auth" */


/* TG_F_STATUS of an ERROR frame */
#define TG_ERR_VERSION              1   /* unsupported protocol version */
#define TG_ERR_TOO_LARGE            2   /* frame over the agreed maximum */
#define TG_ERR_MALFORMED            3   /* field or frame does not parse */
#define TG_ERR_UNKNOWN_TYPE         4   /* frame type not understood */
#define TG_ERR_MISSING_FIELD        5   /* a required field is absent */
#define TG_ERR_INTERNAL             6   /* policyd could not answer */


/* the names on the wire: endpoints, zones, outcomes */
#include "tailgate_names.h"


#endif /* TAILGATE_PROTOCOL_H */
