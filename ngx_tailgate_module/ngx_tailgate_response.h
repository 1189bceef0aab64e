
/*
 * Copyright (C) The Tailgate authors
 */


#ifndef _NGX_TAILGATE_RESPONSE_H_INCLUDED_
#define _NGX_TAILGATE_RESPONSE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


/*
 * The gateway's own errors: X(id, status, type, code, param, message).  The
 * rows before INTERNAL are what the error page says for a status of
 * nginx's own, and INTERNAL for any other.  An empty code or param is
 * null; an empty message is the caller's to write; a message with "%" is
 * a format.
 */

#define NGX_TAILGATE_ERRORS(X)                                                \
    X(BAD_REQUEST, NGX_HTTP_BAD_REQUEST, "invalid_request_error",             \
      "bad_request", "", "The request could not be understood.")              \
    X(UNKNOWN_URL, NGX_HTTP_NOT_FOUND, "invalid_request_error",               \
      "unknown_url", "", "Unknown request URL.")                              \
    X(NOT_ALLOWED, NGX_HTTP_NOT_ALLOWED, "invalid_request_error",             \
      "method_not_allowed", "", "Method not allowed for this URL.")           \
    X(REQUEST_TIMEOUT, NGX_HTTP_REQUEST_TIME_OUT, "invalid_request_error",    \
      "request_timeout", "", "The request body was not received in time.")    \
    X(TOO_LARGE, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE, "invalid_request_error",  \
      "request_too_large", "", "The request body is too large.")              \
    X(FORBIDDEN, NGX_HTTP_FORBIDDEN, "permission_error", "forbidden", "",     \
      "Access to this URL is forbidden.")                                     \
    X(LENGTH_REQUIRED, NGX_HTTP_LENGTH_REQUIRED, "invalid_request_error",     \
      "length_required", "", "The request body needs a Content-Length.")      \
    X(URI_TOO_LONG, NGX_HTTP_REQUEST_URI_TOO_LARGE, "invalid_request_error",  \
      "uri_too_long", "", "The request URI is too long.")                     \
    X(MISDIRECTED, NGX_HTTP_MISDIRECTED_REQUEST, "invalid_request_error",     \
      "misdirected_request", "",                                              \
      "This server does not serve the host the request names.")               \
    X(NOT_IMPLEMENTED, NGX_HTTP_NOT_IMPLEMENTED, "invalid_request_error",     \
      "not_implemented", "", "The request's Transfer-Encoding is not "        \
      "supported: send a Content-Length or chunked.")                         \
    X(VERSION_NOT_SUPPORTED, NGX_HTTP_VERSION_NOT_SUPPORTED,                  \
      "invalid_request_error", "http_version_not_supported", "",              \
      "This HTTP version is not supported.")                                  \
    X(RATE_LIMITED, NGX_HTTP_TOO_MANY_REQUESTS, "rate_limit_error",           \
      "rate_limited", "", "Too many requests.")                               \
    X(PROVIDER_UNREACHABLE, NGX_HTTP_BAD_GATEWAY, "server_error",             \
      "provider_unreachable", "", "The provider could not be reached.")       \
    X(SERVICE_UNAVAILABLE, NGX_HTTP_SERVICE_UNAVAILABLE, "server_error",      \
      "service_unavailable", "", "The service is unavailable.")               \
    X(PROVIDER_TIMEOUT, NGX_HTTP_GATEWAY_TIME_OUT, "server_error",            \
      "provider_timeout", "", "The provider did not answer in time.")         \
    X(INTERNAL, NGX_HTTP_INTERNAL_SERVER_ERROR, "server_error",               \
      "internal_error", "", "The gateway could not process the request.")     \
                                                                              \
    X(INVALID_URL, NGX_HTTP_NOT_FOUND, "invalid_request_error",               \
      "unknown_url", "", "Invalid URL (%V %V)")                               \
    X(METHOD_NOT_ALLOWED, NGX_HTTP_NOT_ALLOWED, "invalid_request_error",      \
      "method_not_allowed", "", "Method %V is not allowed for %V, use %s")    \
    X(INVALID_TAGS, NGX_HTTP_BAD_REQUEST, "invalid_request_error",            \
      "invalid_tags", "", "X-Tailgate-Tags must list at most 16 tags of "     \
      "1-64 letters, digits and \"_-:.\", separated by commas or spaces.")    \
    X(MISSING_API_KEY, NGX_HTTP_UNAUTHORIZED, "invalid_request_error",        \
      "missing_api_key", "", "You didn't provide an API key. Send it as "     \
      "\"Authorization: Bearer KEY\" or \"X-Api-Key: KEY\".")                 \
    X(INVALID_API_KEY, NGX_HTTP_UNAUTHORIZED, "invalid_request_error",        \
      "invalid_api_key", "", "Incorrect API key or token provided.")          \
    X(EXPIRED_API_KEY, NGX_HTTP_UNAUTHORIZED, "invalid_request_error",        \
      "expired_api_key", "", "The API key or token has expired.")             \
    X(INVALID_DPOP_PROOF, NGX_HTTP_UNAUTHORIZED, "invalid_request_error",     \
      "invalid_dpop_proof", "", "The DPoP proof is missing or invalid: send "  \
      "one DPoP header, signed for this request and this token.")            \
    X(DPOP_REQUIRED, NGX_HTTP_UNAUTHORIZED, "invalid_request_error",          \
      "dpop_required", "", "This endpoint takes only DPoP-bound tokens: "     \
      "send \"Authorization: DPoP TOKEN\" and a DPoP proof.")                 \
    X(DPOP_BUSY, NGX_HTTP_SERVICE_UNAVAILABLE, "server_error", "dpop_busy",   \
      "", "The gateway cannot take more DPoP proofs right now. Try again "    \
      "shortly.")                                                             \
    X(CORS_ORIGIN_NOT_ALLOWED, NGX_HTTP_FORBIDDEN, "invalid_request_error",   \
      "cors_origin_not_allowed", "",                                          \
      "This origin may not call the API from a browser.")                     \
    X(MODEL_NOT_FOUND, NGX_HTTP_NOT_FOUND, "invalid_request_error",           \
      "model_not_found", "", "No matching route found.")                      \
    X(POLICY_UNAVAILABLE, NGX_HTTP_SERVICE_UNAVAILABLE, "server_error",       \
      "policy_unavailable", "",                                               \
      "The gateway's policy service is unavailable. Try again later.")        \
    X(INVALID_ROUTE, NGX_HTTP_BAD_GATEWAY, "server_error", "invalid_route",   \
      "", "The gateway's route for this model is misconfigured.")             \
    X(PRIVACY_VIOLATION, NGX_HTTP_SERVICE_UNAVAILABLE, "server_error",        \
      "privacy_violation", "", "The gateway refused to send this private "    \
      "request to a provider that is not private.")                           \
    X(PROVIDER_RATE_LIMITED, NGX_HTTP_TOO_MANY_REQUESTS, "rate_limit_error",  \
      "provider_rate_limited", "", "")                                        \
    X(PROVIDER_ERROR, NGX_HTTP_BAD_GATEWAY, "server_error",                   \
      "provider_error", "", "")                                               \
    X(NO_PROVIDER_AVAILABLE, NGX_HTTP_SERVICE_UNAVAILABLE, "server_error",    \
      "no_provider_available", "", "")                                        \
    X(STATUS_METHOD, NGX_HTTP_NOT_ALLOWED, "invalid_request_error",           \
      "method_not_allowed", "", "Use GET or HEAD for the gateway's status.")  \
    X(ADMIN_REQUIRED, NGX_HTTP_FORBIDDEN, "permission_error",                 \
      "admin_required", "", "The gateway's status is for operators: a key "   \
      "or token with the admin role.")                                        \
    X(STATUS_TOO_LARGE, NGX_HTTP_INTERNAL_SERVER_ERROR, "server_error",       \
      "status_too_large", "", "policyd could not give the status.")           \
                                                                              \
    /* what the body says: ngx_tailgate_json.c, ngx_tailgate_multipart.c */   \
                                                                              \
    X(JSON_INVALID, NGX_HTTP_BAD_REQUEST, "invalid_request_error", "", "",    \
      "We could not parse the JSON body of your request. "                    \
      "The body must be a valid JSON object.")                                \
    X(JSON_TOO_DEEP, NGX_HTTP_BAD_REQUEST, "invalid_request_error", "", "",   \
      "The JSON body is nested too deeply.")                                  \
    X(KEY_CASE, NGX_HTTP_BAD_REQUEST, "invalid_request_error", "", "",        \
      "The request has a key that differs from \"model\", \"stream\" or "     \
      "\"tools\" only in letter case.")                                       \
    X(KEY_NUL, NGX_HTTP_BAD_REQUEST, "invalid_request_error", "", "",         \
      "The request has a key that is \"model\", \"stream\" or "               \
      "\"tools\" up to a NUL character.")                                       \
    X(MISSING_MODEL, NGX_HTTP_BAD_REQUEST, "invalid_request_error", "", "",   \
      "You must provide a model parameter.")                                  \
    X(MODEL_TWICE, NGX_HTTP_BAD_REQUEST, "invalid_request_error", "",         \
      "model", "The \"model\" parameter appears more than once.")             \
    X(MODEL_TYPE, NGX_HTTP_BAD_REQUEST, "invalid_request_error",              \
      "invalid_type", "model",                                                \
      "Invalid type for 'model': expected a string, but got %s instead.")     \
    X(MODEL_EMPTY, NGX_HTTP_BAD_REQUEST, "invalid_request_error",             \
      "invalid_value", "model",                                               \
      "Invalid value for 'model': expected a non-empty string.")              \
    X(STREAM_TWICE, NGX_HTTP_BAD_REQUEST, "invalid_request_error", "",        \
      "stream", "The \"stream\" parameter appears more than once.")           \
    X(STREAM_TYPE, NGX_HTTP_BAD_REQUEST, "invalid_request_error",             \
      "invalid_type", "stream",                                               \
      "Invalid type for 'stream': expected a boolean, but got %s instead.")   \
    X(FORM_STREAM_TYPE, NGX_HTTP_BAD_REQUEST, "invalid_request_error",        \
      "invalid_type", "stream",                                               \
      "Invalid type for 'stream': expected a boolean, \"true\" or "           \
      "\"false\".")                                                           \
    X(TOOLS_TWICE, NGX_HTTP_BAD_REQUEST, "invalid_request_error", "",         \
      "tools", "The \"tools\" parameter appears more than once.")             \
    X(TOOLS_TYPE, NGX_HTTP_BAD_REQUEST, "invalid_request_error",              \
      "invalid_type", "tools",                                                \
      "Invalid type for 'tools': expected an array, but got %s instead.")     \
    X(STREAM_OPTIONS_TWICE, NGX_HTTP_BAD_REQUEST, "invalid_request_error",    \
      "", "stream_options",                                                   \
      "The \"stream_options\" parameter appears more than once.")             \
    X(STREAM_OPTIONS_TYPE, NGX_HTTP_BAD_REQUEST, "invalid_request_error",     \
      "invalid_type", "stream_options", "Invalid type for "                   \
      "'stream_options': expected an object, but got %s instead.")            \
    X(INCLUDE_USAGE_TWICE, NGX_HTTP_BAD_REQUEST, "invalid_request_error",     \
      "", "stream_options.include_usage", "The \"include_usage\" member "     \
      "of \"stream_options\" appears more than once.")                        \
    X(INCLUDE_USAGE_TYPE, NGX_HTTP_BAD_REQUEST, "invalid_request_error",      \
      "invalid_type", "stream_options.include_usage", "Invalid type for "     \
      "'stream_options.include_usage': expected a boolean, but got %s "       \
      "instead.")                                                             \
    X(FORM_CONTENT_TYPE, NGX_HTTP_BAD_REQUEST, "invalid_request_error", "",   \
      "", "Content-Type must be one multipart/form-data header with one "     \
      "boundary of 1-70 characters that RFC 2046 allows.")                    \
    X(FORM_INVALID, NGX_HTTP_BAD_REQUEST, "invalid_request_error", "", "",    \
      "The request body is not valid multipart/form-data.")                   \
    X(FORM_PREAMBLE, NGX_HTTP_BAD_REQUEST, "invalid_request_error", "", "",   \
      "Nothing may come before the first boundary of a multipart body.")      \
    X(FORM_EPILOGUE, NGX_HTTP_BAD_REQUEST, "invalid_request_error", "", "",   \
      "Nothing may follow the closing boundary of a multipart body.")         \
    X(FORM_DELIMITER, NGX_HTTP_BAD_REQUEST, "invalid_request_error", "", "",  \
      "A boundary line must hold the boundary alone, or the boundary and "    \
      "\"--\" to close the body.")                                            \
    X(FORM_BOUNDARY_IN_DATA, NGX_HTTP_BAD_REQUEST, "invalid_request_error",   \
      "", "", "The boundary appears inside a part, not at the start of a "    \
      "line: some parsers would see another part there.")                     \
    X(FORM_HEADER, NGX_HTTP_BAD_REQUEST, "invalid_request_error", "", "",     \
      "A part header must be \"Name: value\" on one line that ends in "       \
      "CRLF, with no space before the colon and no control characters.")      \
    X(FORM_DISPOSITION_TWICE, NGX_HTTP_BAD_REQUEST, "invalid_request_error",  \
      "", "", "A part has more than one Content-Disposition header.")         \
    X(FORM_PARAM, NGX_HTTP_BAD_REQUEST, "invalid_request_error", "", "",      \
      "A Content-Disposition parameter must be name=token or "                \
      "name=\"quoted string\", with no spaces around the \"=\".")             \
    X(FORM_NAME, NGX_HTTP_BAD_REQUEST, "invalid_request_error", "", "",       \
      "A part's name must be the first parameter of its "                     \
      "Content-Disposition, given once, and not as name*.")                   \
    X(FORM_QUOTED, NGX_HTTP_BAD_REQUEST, "invalid_request_error", "", "",     \
      "A quoted Content-Disposition value may not hold \";\", \"\\\" or "     \
      "\"name=\": some parsers would read another parameter there.")          \
    X(FORM_FIELD_NAME, NGX_HTTP_BAD_REQUEST, "invalid_request_error", "", "", \
      "A field name that some parsers read as \"model\" or \"stream\" "       \
      "must be exactly that: not in another case, with spaces, quotes, "      \
      "brackets or percent escapes.")                                         \
    X(FORM_NESTED, NGX_HTTP_BAD_REQUEST, "invalid_request_error", "", "",     \
      "A part of a multipart/form-data body may not be multipart itself.")    \
    X(FORM_ENCODING, NGX_HTTP_BAD_REQUEST, "invalid_request_error", "", "",   \
      "The \"model\" and \"stream\" fields may not have a "                   \
      "Content-Transfer-Encoding.")


typedef enum {
#define NGX_TAILGATE_ERROR_ID(id, status, type, code, param, message)         \
    NGX_TAILGATE_ERR_ ## id,
    NGX_TAILGATE_ERRORS(NGX_TAILGATE_ERROR_ID)
#undef NGX_TAILGATE_ERROR_ID
    NGX_TAILGATE_ERRS
} ngx_tailgate_error_e;


ngx_int_t ngx_tailgate_fail(ngx_http_request_t *r, ngx_tailgate_error_e err,
    const ngx_str_t *message);
ngx_int_t ngx_tailgate_failf(ngx_http_request_t *r, ngx_tailgate_error_e err,
    ...);
ngx_int_t ngx_tailgate_error(ngx_http_request_t *r, ngx_tailgate_error_e err,
    ngx_uint_t status, const ngx_str_t *message);
ngx_tailgate_error_e ngx_tailgate_error_of(ngx_uint_t status);
ngx_int_t ngx_tailgate_error_json(ngx_pool_t *pool, ngx_tailgate_error_e err,
    ngx_str_t *body);
ngx_int_t ngx_tailgate_send_error(ngx_http_request_t *r, ngx_uint_t status,
    const ngx_str_t *type, const ngx_str_t *code, const ngx_str_t *message);
ngx_int_t ngx_tailgate_send_json(ngx_http_request_t *r, ngx_uint_t status,
    ngx_str_t *body);
ngx_int_t ngx_tailgate_send_body(ngx_http_request_t *r, ngx_uint_t status,
    u_char *data, size_t len, const char *type);
ngx_int_t ngx_tailgate_send_pieces(ngx_http_request_t *r, ngx_uint_t status,
    ngx_str_t *pieces, ngx_uint_t n, const char *type);
ngx_int_t ngx_tailgate_ratelimit_headers(ngx_http_request_t *r,
    ngx_str_t *spec);
ngx_int_t ngx_tailgate_add_header_n(ngx_http_request_t *r, const char *name,
    size_t len, const ngx_str_t *value);


/* a response header: a literal name's length is counted when compiled */

static ngx_inline ngx_int_t
ngx_tailgate_add_header(ngx_http_request_t *r, const char *name,
    const ngx_str_t *value)
{
    return ngx_tailgate_add_header_n(r, name, ngx_strlen(name), value);
}


#endif /* _NGX_TAILGATE_RESPONSE_H_INCLUDED_ */
