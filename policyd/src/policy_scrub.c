/*
 * "scrub": what a provider must not learn of the client - request headers
 * that name its software, machine, session or user, and body fields of
 * metadata - per zone ("scrub": { "external": {...} }) and per provider
 * ("scrub" in a provider).  External providers lose a default list; local
 * and private ones get the request as it was sent unless the policy says
 * otherwise.  Each provider's result is kept whole: its header names as
 * the decision's text, its body fields as drops merged into every step's
 * edits (policy_route.c).
 */

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "policy_json.h"


#define TG_SCRUB_HEADERS_MAX   64
#define TG_SCRUB_BODY_MAX      16
#define TG_SCRUB_NAME_MAX      64
#define TG_USER_AGENT_MAX      256


static const char *const  tg_scrub_keys[] = {
    "headers", "add_headers", "keep_headers", "body", "add_body",
    "keep_body", "user_agent", NULL
};


/*
 * What reaches an external provider only when the policy lets it: the
 * client program and its platform (User-Agent, the OpenAI SDKs'
 * x-stainless-*, Codex's x-codex-* and originator), its sessions and
 * threads, its account and installation, cookies, where a browser page is
 * (Origin, Referer, client hints) and tracing context.
 */

static const char *const  tg_scrub_default_headers[] = {
    "user-agent", "cookie", "x-stainless-*", "x-codex-*", "originator",
    "session-id", "session_id", "thread-id", "thread_id", "conversation-id",
    "conversation_id", "chatgpt-account-id", "x-client-request-id",
    "x-session-id", "x-user-id", "origin", "referer", "sec-ch-ua*",
    "sec-fetch-*", "accept-language", "traceparent", "tracestate", "baggage",
    NULL
};

static const char *const  tg_scrub_default_body[] = {
    "user", "metadata", "client_metadata", "safety_identifier", NULL
};

#define TG_USER_AGENT_DEFAULT  "Tailgate"


static void tg_scrub_apply(tg_loader *ld, const tg_scrub *base,
    const cJSON *obj, const char *path, tg_scrub *out);
static void tg_scrub_list(tg_loader *ld, const cJSON *obj, const char *path,
    const char *replace, const char *add, const char *keep, bool headers,
    const char *const *base, size_t nbase, const char *const **out,
    size_t *nout);
static bool tg_scrub_header_ok(const char *s);
static bool tg_scrub_field_ok(const char *s);
static char *tg_scrub_text(tg_loader *ld, const tg_scrub *sc);


/* the top level's "scrub": { ZONE: {...} }, before the providers */

void
tg_load_scrub(tg_loader *ld, const cJSON *root)
{
    int           z;
    char          path[TG_PATH_LEN], sub[TG_PATH_LEN];
    tg_scrub      base;
    const cJSON  *v, *c;
    tg_policy    *p = ld->p;

    v = tg_member(root, "scrub");

    if (v != NULL && !cJSON_IsObject(v)) {
        tg_load_error(ld, "scrub", "expected an object of zone: "
                      "{ \"headers\", \"body\", \"user_agent\", ... }");
        v = NULL;
    }

    for (c = v ? v->child : NULL; c != NULL; c = c->next) {
        tg_key_path(path, "scrub", c->string);

        if (tg_zone_parse(c->string) == TG_ZONE_COUNT) {
            tg_load_error(ld, path, "expected a zone: %s", tg_zone_list);
        }
    }

    for (z = 0; z < TG_ZONE_COUNT; z++) {
        memset(&base, 0, sizeof(base));

        if (z == TG_ZONE_EXTERNAL) {
            base.headers = tg_scrub_default_headers;
            base.nheaders = sizeof(tg_scrub_default_headers)
                            / sizeof(tg_scrub_default_headers[0]) - 1;
            base.body = tg_scrub_default_body;
            base.nbody = sizeof(tg_scrub_default_body)
                         / sizeof(tg_scrub_default_body[0]) - 1;
            base.user_agent = TG_USER_AGENT_DEFAULT;
        }

        tg_key_path(sub, "scrub", tg_zone_name((tg_zone) z));

        tg_scrub_apply(ld, &base, v ? tg_member(v, tg_zone_name((tg_zone) z))
                                    : NULL,
                       sub, &p->scrub[z]);
    }
}


/* a provider's: its zone's, changed by its own "scrub" */

void
tg_load_provider_scrub(tg_loader *ld, tg_provider *pr, const cJSON *item,
    const char *path)
{
    char  sub[TG_PATH_LEN];

    tg_key_path(sub, path, "scrub");

    tg_scrub_apply(ld, &ld->p->scrub[pr->zone], tg_member(item, "scrub"), sub,
                   &pr->scrub);

    pr->scrub_headers = tg_scrub_text(ld, &pr->scrub);

    /* a User-Agent of the gateway's only in place of the client's */

    for (size_t i = 0; i < pr->scrub.nheaders; i++) {
        if (strcmp(pr->scrub.headers[i], "user-agent") == 0) {
            return;
        }
    }

    pr->scrub.user_agent = NULL;
}


static void
tg_scrub_apply(tg_loader *ld, const tg_scrub *base, const cJSON *obj,
    const char *path, tg_scrub *out)
{
    char         sub[TG_PATH_LEN];
    size_t       len;
    const cJSON  *v;

    *out = *base;

    if (obj == NULL) {
        return;
    }

    if (!cJSON_IsObject(obj)) {
        tg_load_error(ld, path, "expected an object with \"headers\", "
                      "\"body\", \"user_agent\", ...");
        return;
    }

    tg_check_keys(ld, obj, path, tg_scrub_keys);

    tg_scrub_list(ld, obj, path, "headers", "add_headers", "keep_headers",
                  true, base->headers, base->nheaders, &out->headers,
                  &out->nheaders);
    tg_scrub_list(ld, obj, path, "body", "add_body", "keep_body", false,
                  base->body, base->nbody, &out->body, &out->nbody);

    /* the User-Agent sent instead of the client's; null: none */

    v = tg_member(obj, "user_agent");

    if (v == NULL) {
        return;
    }

    tg_key_path(sub, path, "user_agent");

    if (cJSON_IsNull(v)) {
        out->user_agent = NULL;
        return;
    }

    len = cJSON_IsString(v) ? strlen(v->valuestring) : 0;

    if (len == 0 || len > TG_USER_AGENT_MAX || tg_has_control(v->valuestring))
    {
        tg_load_error(ld, sub, "expected a User-Agent of 1 to %d bytes "
                      "without control characters, or null for none",
                      TG_USER_AGENT_MAX);
        return;
    }

    out->user_agent = tg_copy(ld, v->valuestring);
}


/*
 * One list: "replace" instead of the base, then "add" appended and "keep"
 * taken out (names compared ignoring case).
 */

static void
tg_scrub_list(tg_loader *ld, const cJSON *obj, const char *path,
    const char *replace, const char *add, const char *keep, bool headers,
    const char *const *base, size_t nbase, const char *const **out,
    size_t *nout)
{
    int           pass;
    char          sub[TG_PATH_LEN], one[TG_PATH_LEN], *lower;
    size_t        i, j, n, max;
    const char  **list;
    const char   *key;
    const cJSON  *v, *c;

    max = headers ? TG_SCRUB_HEADERS_MAX : TG_SCRUB_BODY_MAX;

    list = tg_arena_alloc(&ld->p->arena, (max + 1) * sizeof(char *));
    if (list == NULL) {
        ld->oom = true;
        return;
    }

    n = 0;

    if (tg_member(obj, replace) == NULL) {
        for (i = 0; i < nbase && n < max; i++) {
            list[n++] = base[i];
        }
    }

    for (pass = 0; pass < 3; pass++) {
        key = pass == 0 ? replace : pass == 1 ? add : keep;
        v = tg_member(obj, key);

        if (v == NULL) {
            continue;
        }

        tg_key_path(sub, path, key);

        if (!cJSON_IsArray(v)) {
            tg_load_error(ld, sub, "expected an array of %s", headers
                          ? "header names (letters, digits, \"-\" and \"_\", "
                            "a final \"*\" for a prefix)"
                          : "keys or \"key.member\" of letters, digits, \"_\" "
                            "and \"-\"");
            continue;
        }

        i = 0;
        for (c = v->child; c != NULL; c = c->next, i++) {
            tg_index_path(one, sub, i);

            if (!cJSON_IsString(c)
                || !(headers ? tg_scrub_header_ok(c->valuestring)
                             : tg_scrub_field_ok(c->valuestring)))
            {
                tg_load_error(ld, one, "expected %s", headers
                              ? "a header name of 1 to 64 letters, digits, "
                                "\"-\" and \"_\", a final \"*\" for a prefix "
                                "(not one the gateway sets)"
                              : "a key or \"key.member\" of letters, digits, "
                                "\"_\" and \"-\", not \"model\" or "
                                "\"stream\"");
                continue;
            }

            for (j = 0; j < n; j++) {
                if (strcasecmp(list[j], c->valuestring) == 0) {
                    break;
                }
            }

            if (pass == 2) {
                /* keep: out of the list */

                if (j < n) {
                    memmove(&list[j], &list[j + 1],
                            (n - j - 1) * sizeof(char *));
                    n--;
                }

                continue;
            }

            if (j < n) {
                continue;
            }

            if (n == max) {
                tg_load_error(ld, one, "more than %zu names", max);
                break;
            }

            lower = tg_copy(ld, c->valuestring);
            if (lower == NULL) {
                return;
            }

            for (j = 0; headers && lower[j] != '\0'; j++) {
                lower[j] = (char) tolower((unsigned char) lower[j]);
            }

            list[n++] = lower;
        }
    }

    list[n] = NULL;
    *out = list;
    *nout = n;
}


static bool
tg_scrub_header_ok(const char *s)
{
    size_t  i, len;

    len = strlen(s);

    if (len == 0 || len > TG_SCRUB_NAME_MAX || (len == 1 && s[0] == '*')) {
        return false;
    }

    for (i = 0; i < len; i++) {
        if (s[i] == '*' && i == len - 1) {
            continue;
        }

        if (!(isalnum((unsigned char) s[i])
              || s[i] == '-' || s[i] == '_'))
        {
            return false;
        }
    }

    /* what the gateway itself sets towards the provider stays its own */

    return strcasecmp(s, "host") != 0 && strcasecmp(s, "authorization") != 0
           && strcasecmp(s, "content-length") != 0
           && strcasecmp(s, "content-type") != 0
           && strcasecmp(s, "connection") != 0;
}


static bool
tg_scrub_field_ok(const char *s)
{
    size_t  seg, segs, top;

    seg = 0;
    segs = 1;
    top = 0;

    for (const char *p = s; *p != '\0'; p++) {
        if (*p == '.') {
            if (seg == 0 || segs == 2) {
                return false;
            }

            top = (size_t) (p - s);
            segs++;
            seg = 0;
            continue;
        }

        if (!(isalnum((unsigned char) *p) || *p == '_' || *p == '-')
            || ++seg > TG_ADJUST_PATH_MAX)
        {
            return false;
        }
    }

    if (seg == 0) {
        return false;
    }

    if (segs == 1) {
        top = strlen(s);
    }

    return !((top == 5 && strncasecmp(s, "model", 5) == 0)
             || (top == 6 && strncasecmp(s, "stream", 6) == 0));
}


/* "name\n" per header: the decision's drop_headers; "" for none */

static char *
tg_scrub_text(tg_loader *ld, const tg_scrub *sc)
{
    char    *text;
    size_t   i, size, len;

    size = 1;

    for (i = 0; i < sc->nheaders; i++) {
        size += strlen(sc->headers[i]) + 1;
    }

    text = tg_arena_alloc(&ld->p->arena, size);
    if (text == NULL) {
        ld->oom = true;
        return "";
    }

    len = 0;

    for (i = 0; i < sc->nheaders; i++) {
        len += (size_t) snprintf(text + len, size - len, "%s\n",
                                 sc->headers[i]);
    }

    text[len] = '\0';

    return text;
}
