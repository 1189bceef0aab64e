/*
 * The names both programs say on the wire, once: each list is an X-macro,
 * so that the module and policyd build their own enums and tables from the
 * same rows and can never disagree on a spelling or an order.
 *
 *     #define TG_X(id, name, ...)  TG_EP_ ## id,
 *     enum { TG_ENDPOINTS(TG_X) TG_EP_COUNT };
 *
 * Plain C, no code; docs/protocol.md explains every name.
 */

#ifndef TAILGATE_NAMES_H
#define TAILGATE_NAMES_H


/*
 * Endpoints a decision is asked for: X(id, wire name, path after the
 * base_url's "/v1/", the provider path's suffix).  GET /v1/models is
 * answered by MODELS, not DECIDE, and is not among them.
 */

#define TG_ENDPOINTS(X)                                                       \
    X(CHAT,           "chat",           "chat/completions")                   \
    X(EMBEDDINGS,     "embeddings",     "embeddings")                         \
    X(SPEECH,         "speech",         "audio/speech")                       \
    X(TRANSCRIPTIONS, "transcriptions", "audio/transcriptions")               \
    X(RESPONSES,      "responses",      "responses")


/* where a provider runs: X(id, name); only LOCAL and PRIVATE take private */

#define TG_ZONES(X)                                                           \
    X(LOCAL,    "local")                                                      \
    X(PRIVATE,  "private")                                                    \
    X(EXTERNAL, "external")


/*
 * What became of an attempt, in REPORT's TG_F_OUTCOME: X(id, name, the
 * TG_FALLBACK_* class a route's fallback may follow, or 0 for none).
 * An absent or unknown name is counted as "unknown" by policyd.
 */

#define TG_OUTCOMES(X)                                                        \
    X(OK,            "ok",            0)                                      \
    X(CLIENT_ERROR,  "client_error",  0)                                      \
    X(RATE_LIMITED,  "rate_limited",  TG_FALLBACK_429)                        \
    X(SERVER_ERROR,  "server_error",  TG_FALLBACK_5XX)                        \
    X(CONNECT_ERROR, "connect_error", TG_FALLBACK_CONNECT_ERROR)              \
    X(TIMEOUT,       "timeout",       TG_FALLBACK_TIMEOUT)                    \
    X(CLIENT_ABORT,  "client_abort",  0)                                      \
    X(STREAM_BROKEN, "stream_broken", 0)                                      \
    X(NOT_SENT,      "not_sent",      0)


/*
 * The failure classes a route's "fallback.outcomes" may name, in the order
 * of their TG_FALLBACK_* bits: X(bit, name in the policy).
 */

#define TG_FALLBACK_CLASSES(X)                                                \
    X(TG_FALLBACK_CONNECT_ERROR, "connect_error")                             \
    X(TG_FALLBACK_TIMEOUT,       "timeout")                                   \
    X(TG_FALLBACK_5XX,           "5xx")                                       \
    X(TG_FALLBACK_429,           "429")


#endif /* TAILGATE_NAMES_H */
