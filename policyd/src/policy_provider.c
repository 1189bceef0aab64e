/*
 * "providers": { "name": { "upstream", "zone", "endpoints", ... } }: where
 * requests can go, what each provider takes, and how its health is told.
 */

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "policy_json.h"


static void tg_load_provider(tg_loader *ld, void *child, size_t i,
    const char *name, const cJSON *item, const char *path);
static void tg_load_endpoints(tg_loader *ld, tg_provider *pr,
    const cJSON *obj, const char *path);
static void tg_load_translate(tg_loader *ld, tg_provider *pr,
    const cJSON *obj, const char *path);
static void tg_load_models(tg_loader *ld, tg_provider *pr, const cJSON *obj,
    const char *path);
static void tg_load_api_key(tg_loader *ld, tg_provider *pr, const char *value,
    const char *path);
static void tg_load_health(tg_loader *ld, tg_provider *pr, const cJSON *item,
    const char *path);
static bool tg_provider_name_ok(const char *name, size_t len);
static const char *tg_provider_name_of(const void *child, size_t *len);
static bool tg_valid_host(const char *s);
static bool tg_valid_base_path(const char *s);
static bool tg_valid_url(const char *s);


static const char *const  tg_provider_keys[] = {
    "upstream", "scheme", "host", "base_path", "api_key", "zone",
    "endpoints", "models", "region", "context_tokens", "tools", "streaming",
    "max_concurrency", "health", "rpm", "tpm", "usage", "connect_ms",
    "first_byte_ms", "idle_ms", "scrub", "translate_responses", NULL
};

static const char *const  tg_health_keys[] = {
    "url", "kind", "slots_url", "interval_ms", "timeout_ms", "down_after",
    "up_after", "cooldown_ms", "stuck_after_ms", "lease_ttl_ms", "send_key",
    NULL
};


static const tg_named_kind  tg_providers = {
    "providers", "expected at least one provider", tg_provider_name_ok,
    "provider names are 1 to " TG_STR(TG_PROVIDER_NAME_MAX) " letters, "
    "digits, \"_\", \".\" or \"-\"",
    sizeof(tg_provider), tg_load_provider, tg_provider_name_of
};


void
tg_load_providers(tg_loader *ld, const cJSON *root)
{
    tg_policy  *p = ld->p;

    p->providers = tg_load_named(ld, root, &tg_providers, &p->nproviders,
                                 &p->provider_table, &p->provider_mask);
}


static void
tg_load_provider(tg_loader *ld, void *child, size_t i, const char *name,
    const cJSON *item, const char *path)
{
    int           ep;
    char          path_buf[TG_PATH_LEN], *s2;
    size_t        blen, slen;
    tg_zone       zone;
    const char   *s;
    tg_provider  *pr = child;

    pr->index = i;
    pr->name = tg_copy(ld, name);
    pr->name_len = strlen(name);

    if (pr->name == NULL) {
        return;
    }

    if (!cJSON_IsObject(item)) {
        tg_load_error(ld, path, "expected an object");
        return;
    }

    tg_check_keys(ld, item, path, tg_provider_keys);

    if (tg_member_string(ld, item, "upstream", path, true, &s) == 1) {
        size_t  j, len = strlen(s);

        for (j = 0; j < len; j++) {
            if (!tg_is_name_char((unsigned char) s[j])) {
                break;
            }
        }

        if (len == 0 || len > TG_UPSTREAM_NAME_MAX || j < len) {
            tg_key_path(path_buf, path, "upstream");
            tg_load_error(ld, path_buf, "expected an upstream name: 1 to %d "
                          "letters, digits, \"_\", \".\" or \"-\"",
                          TG_UPSTREAM_NAME_MAX);
        } else {
            pr->upstream = tg_copy(ld, s);
        }
    }

    pr->scheme = "http";
    if (tg_member_string(ld, item, "scheme", path, false, &s) == 1) {
        if (strcmp(s, "http") == 0) {
            pr->scheme = "http";

        } else if (strcmp(s, "https") == 0) {
            pr->scheme = "https";

        } else {
            tg_key_path(path_buf, path, "scheme");
            tg_load_error(ld, path_buf, "expected one of \"http\", \"https\"");
        }
    }

    pr->host = pr->upstream;
    if (tg_member_string(ld, item, "host", path, false, &s) == 1) {
        if (!tg_valid_host(s)) {
            tg_key_path(path_buf, path, "host");
            tg_load_error(ld, path_buf, "expected a host name or address, "
                          "optionally with \":port\" (at most %d bytes)",
                          TG_HOST_MAX);
        } else {
            pr->host = tg_copy(ld, s);
        }
    }

    pr->base_path = "/v1";
    if (tg_member_string(ld, item, "base_path", path, false, &s) == 1) {
        if (!tg_valid_base_path(s)) {
            tg_key_path(path_buf, path, "base_path");
            tg_load_error(ld, path_buf, "expected \"\" or a path that starts "
                          "with \"/\", has no trailing \"/\", no spaces, "
                          "\"?\" or \"#\" (at most %d bytes)",
                          TG_BASE_PATH_MAX);
        } else {
            pr->base_path = tg_copy(ld, s);
        }
    }

    if (tg_member_string(ld, item, "api_key", path, false, &s) == 1) {
        tg_key_path(path_buf, path, "api_key");
        tg_load_api_key(ld, pr, s, path_buf);
    }

    pr->scrub_headers = "";

    if (tg_member_string(ld, item, "zone", path, true, &s) == 1) {
        zone = tg_zone_parse(s);

        if (zone == TG_ZONE_COUNT) {
            tg_key_path(path_buf, path, "zone");
            tg_load_error(ld, path_buf, "expected one of %s", tg_zone_list);
        } else {
            pr->zone = zone;
            tg_load_provider_scrub(ld, pr, item, path);
        }
    }

    tg_load_endpoints(ld, pr, item, path);
    tg_load_translate(ld, pr, item, path);
    tg_load_models(ld, pr, item, path);

    /* what requests it can take; a region is compared with region: tags */

    if (tg_member_string(ld, item, "region", path, false, &s) == 1) {
        size_t  j, len = strlen(s);

        for (j = 0; j < len; j++) {
            if (!(islower((unsigned char) s[j]) || isdigit((unsigned char) s[j])
                  || s[j] == '-' || s[j] == '_' || s[j] == '.'))
            {
                break;
            }
        }

        if (len == 0 || len > TG_REGION_MAX || j < len) {
            tg_key_path(path_buf, path, "region");
            tg_load_error(ld, path_buf, "expected a region name of 1 to %d "
                          "lowercase letters, digits, \"_\", \".\" or \"-\"",
                          TG_REGION_MAX);
        } else {
            pr->region = tg_copy(ld, s);
        }
    }

    (void) tg_member_uint(ld, item, "context_tokens", path, 1,
                          TG_CONTEXT_TOKENS_MAX, &pr->context_tokens);
    (void) tg_member_uint(ld, item, "connect_ms", path, 1, TG_TIMEOUT_MAX,
                          &pr->connect_ms);
    (void) tg_member_uint(ld, item, "first_byte_ms", path, 1, TG_TIMEOUT_MAX,
                          &pr->first_byte_ms);
    (void) tg_member_uint(ld, item, "idle_ms", path, 1, TG_TIMEOUT_MAX,
                          &pr->idle_ms);
    (void) tg_member_uint(ld, item, "max_concurrency", path, 1,
                          TG_CONCURRENCY_MAX, &pr->max_concurrency);
    (void) tg_member_uint(ld, item, "rpm", path, 1, TG_LIMIT_RATE_MAX,
                          &pr->rpm);
    (void) tg_member_uint(ld, item, "tpm", path, 1, TG_LIMIT_RATE_MAX,
                          &pr->tpm);

    pr->tools = true;
    pr->streaming = true;
    (void) tg_member_bool(ld, item, "tools", path, &pr->tools);
    (void) tg_member_bool(ld, item, "streaming", path, &pr->streaming);

    tg_load_usage_mode(ld, pr, item, path);

    tg_load_health(ld, pr, item, path);

    /* the request path at the provider for every endpoint */

    if (pr->base_path != NULL) {
        blen = strlen(pr->base_path);

        for (ep = 0; ep < TG_EP_COUNT; ep++) {
            slen = strlen(tg_endpoint_suffix((tg_endpoint) ep));

            s2 = tg_arena_alloc(&ld->p->arena, blen + slen + 1);
            if (s2 == NULL) {
                ld->oom = true;
                return;
            }

            memcpy(s2, pr->base_path, blen);
            memcpy(s2 + blen, tg_endpoint_suffix((tg_endpoint) ep), slen + 1);
            pr->paths[ep] = s2;
        }

        /* a translated Responses request goes to the chat endpoint */

        if (pr->translate_responses) {
            pr->paths[TG_EP_RESPONSES] = pr->paths[TG_EP_CHAT];
        }
    }
}


/*
 * "translate_responses": whether Responses API requests reach this
 * provider as chat completions, translated both ways by the module.  By
 * default a provider that serves "chat" but not "responses" is given them
 * translated; true translates even where it serves both (its own
 * Responses API falls short), false never.  A translating provider serves
 * "responses": it is chosen, listed and counted for it like any other.
 */

static void
tg_load_translate(tg_loader *ld, tg_provider *pr, const cJSON *obj,
    const char *path)
{
    int    rc;
    bool   translate;
    char   path_buf[TG_PATH_LEN];

    translate = (pr->endpoints & TG_EP_BIT(TG_EP_CHAT)) != 0
                && (pr->endpoints & TG_EP_BIT(TG_EP_RESPONSES)) == 0;

    rc = tg_member_bool(ld, obj, "translate_responses", path, &translate);

    if (rc < 0) {
        return;
    }

    if (rc == 1 && translate
        && (pr->endpoints & TG_EP_BIT(TG_EP_CHAT)) == 0)
    {
        tg_key_path(path_buf, path, "translate_responses");
        tg_load_error(ld, path_buf, "true needs \"chat\" in \"endpoints\": "
                      "Responses requests are translated to chat "
                      "completions");
        return;
    }

    pr->translate_responses = translate;

    if (translate) {
        pr->endpoints |= TG_EP_BIT(TG_EP_RESPONSES);
    }
}


static void
tg_load_endpoints(tg_loader *ld, tg_provider *pr, const cJSON *obj,
    const char *path)
{
    char          path_buf[TG_PATH_LEN], item_path[TG_PATH_LEN];
    size_t        i;
    tg_endpoint   ep;
    const cJSON  *v, *c;

    tg_key_path(path_buf, path, "endpoints");

    v = tg_member(obj, "endpoints");

    if (v == NULL) {
        tg_load_error(ld, path_buf, "missing required key");
        return;
    }

    if (!cJSON_IsArray(v)) {
        tg_load_error(ld, path_buf, "expected an array of endpoint names");
        return;
    }

    if (v->child == NULL) {
        tg_load_error(ld, path_buf, "expected at least one endpoint");
        return;
    }

    i = 0;
    for (c = v->child; c != NULL; c = c->next, i++) {
        tg_index_path(item_path, path_buf, i);

        ep = cJSON_IsString(c) && c->valuestring != NULL
             ? tg_endpoint_parse(c->valuestring, strlen(c->valuestring))
             : TG_EP_NONE;

        if (ep == TG_EP_NONE) {
            tg_load_error(ld, item_path, "expected one of %s",
                          tg_endpoint_list);
            continue;
        }

        if (pr->endpoints & TG_EP_BIT(ep)) {
            tg_load_error(ld, item_path, "duplicate \"%s\"",
                          tg_endpoint_name(ep));
            continue;
        }

        pr->endpoints |= TG_EP_BIT(ep);
    }
}


static void
tg_load_models(tg_loader *ld, tg_provider *pr, const cJSON *obj,
    const char *path)
{
    int           n;
    char          path_buf[TG_PATH_LEN], item_path[TG_PATH_LEN];
    size_t        i, j, len;
    const cJSON  *v, *c;

    tg_key_path(path_buf, path, "models");

    v = tg_member(obj, "models");

    if (v == NULL) {
        return;
    }

    if (!cJSON_IsArray(v)) {
        tg_load_error(ld, path_buf, "expected an array of model names");
        return;
    }

    n = cJSON_GetArraySize(v);
    if (n == 0) {
        tg_load_error(ld, path_buf, "expected at least one model "
                      "(leave the key out to accept any model)");
        return;
    }

    pr->models = tg_arena_alloc(&ld->p->arena, (size_t) n * sizeof(char *));
    if (pr->models == NULL) {
        ld->oom = true;
        return;
    }

    i = 0;
    for (c = v->child; c != NULL; c = c->next, i++) {
        tg_index_path(item_path, path_buf, i);

        len = cJSON_IsString(c) && c->valuestring != NULL
              ? strlen(c->valuestring) : 0;

        if (len == 0 || len > TG_MODEL_NAME_MAX
            || tg_has_control(c->valuestring))
        {
            tg_load_error(ld, item_path, "expected a model name of 1 to %d "
                          "bytes", TG_MODEL_NAME_MAX);
            continue;
        }

        for (j = 0; j < pr->nmodels; j++) {
            if (strcmp(pr->models[j], c->valuestring) == 0) {
                break;
            }
        }

        if (j < pr->nmodels) {
            tg_load_error(ld, item_path, "duplicate \"%s\"", c->valuestring);
            continue;
        }

        pr->models[pr->nmodels] = tg_copy(ld, c->valuestring);
        if (pr->models[pr->nmodels] == NULL) {
            return;
        }

        pr->nmodels++;
    }
}


static void
tg_load_api_key(tg_loader *ld, tg_provider *pr, const char *value,
    const char *path)
{
    char        *auth;
    size_t       klen;
    const char  *key;

    key = tg_env_secret(ld, value, path, "expected \"${ENV_VAR}\": the key "
                        "is read from the environment, literal keys are not "
                        "allowed", &pr->api_key_env);
    if (key == NULL) {
        return;
    }

    klen = strlen(key);

    auth = tg_arena_alloc(&ld->p->arena, sizeof("Bearer ") + klen);
    if (auth == NULL) {
        ld->oom = true;
        return;
    }

    memcpy(auth, "Bearer ", sizeof("Bearer ") - 1);
    memcpy(auth + sizeof("Bearer ") - 1, key, klen + 1);

    pr->authorization = auth;
}


/*
 * "health": how policyd tells whether the provider is up, busy, stuck or
 * down: active probes of a URL that costs nothing to ask (never a
 * completion), and what the module reports.  Every key is optional.
 */

static void
tg_load_health(tg_loader *ld, tg_provider *pr, const cJSON *item,
    const char *path)
{
    char            path_buf[TG_PATH_LEN], sub[TG_PATH_LEN];
    const char     *s;
    const cJSON    *h;
    tg_health_conf *hc = &pr->health;

    hc->url = NULL;
    hc->slots_url = NULL;
    hc->kind = TG_PROBE_HTTP;
    hc->interval_ms = 5000;
    hc->timeout_ms = 2000;
    hc->down_after = 3;
    hc->up_after = 2;
    hc->cooldown_ms = 10000;
    hc->stuck_after_ms = 300000;
    hc->lease_ttl_ms = 3600000;
    hc->send_key = false;

    h = tg_member(item, "health");

    if (h == NULL) {
        return;
    }

    tg_key_path(path_buf, path, "health");

    if (!cJSON_IsObject(h)) {
        tg_load_error(ld, path_buf, "expected an object");
        return;
    }

    tg_check_keys(ld, h, path_buf, tg_health_keys);

    tg_load_url(ld, h, "url", path_buf, &hc->url);
    tg_load_url(ld, h, "slots_url", path_buf, &hc->slots_url);

    if (tg_member_string(ld, h, "kind", path_buf, false, &s) == 1) {
        if (strcmp(s, "http") == 0) {
            hc->kind = TG_PROBE_HTTP;
        } else if (strcmp(s, "openai") == 0) {
            hc->kind = TG_PROBE_OPENAI;
        } else if (strcmp(s, "llama.cpp") == 0) {
            hc->kind = TG_PROBE_LLAMACPP;
        } else if (strcmp(s, "vllm") == 0) {
            hc->kind = TG_PROBE_VLLM;
        } else {
            tg_key_path(sub, path_buf, "kind");
            tg_load_error(ld, sub, "expected one of \"http\", \"openai\", "
                          "\"llama.cpp\", \"vllm\"");
        }
    }

    (void) tg_member_uint(ld, h, "interval_ms", path_buf, 100, 3600000,
                          &hc->interval_ms);
    (void) tg_member_uint(ld, h, "timeout_ms", path_buf, 50, 60000,
                          &hc->timeout_ms);
    (void) tg_member_uint(ld, h, "down_after", path_buf, 1, 100,
                          &hc->down_after);
    (void) tg_member_uint(ld, h, "up_after", path_buf, 1, 100,
                          &hc->up_after);
    (void) tg_member_uint(ld, h, "cooldown_ms", path_buf, 100, 3600000,
                          &hc->cooldown_ms);
    (void) tg_member_uint(ld, h, "stuck_after_ms", path_buf, 0, 86400000,
                          &hc->stuck_after_ms);
    (void) tg_member_uint(ld, h, "lease_ttl_ms", path_buf, 1000, 86400000,
                          &hc->lease_ttl_ms);
    (void) tg_member_bool(ld, h, "send_key", path_buf, &hc->send_key);

    if (hc->timeout_ms >= hc->interval_ms) {
        tg_key_path(sub, path_buf, "timeout_ms");
        tg_load_error(ld, sub, "expected less than interval_ms (%u)",
                      hc->interval_ms);
    }

    if (hc->url == NULL
        && (tg_member(h, "kind") || tg_member(h, "interval_ms")
            || tg_member(h, "timeout_ms") || tg_member(h, "up_after")
            || tg_member(h, "slots_url") || tg_member(h, "send_key")))
    {
        tg_key_path(sub, path_buf, "url");
        tg_load_error(ld, sub, "missing: the probe settings need a URL");
    }
}


static bool
tg_provider_name_ok(const char *name, size_t len)
{
    size_t  j;

    if (len == 0 || len > TG_PROVIDER_NAME_MAX) {
        return false;
    }

    for (j = 0; j < len; j++) {
        if (!tg_is_name_char((unsigned char) name[j])) {
            return false;
        }
    }

    return true;
}


static const char *
tg_provider_name_of(const void *child, size_t *len)
{
    const tg_provider  *pr = child;

    *len = pr->name_len;
    return pr->name;
}


/* value checks */

static bool
tg_valid_host(const char *s)
{
    size_t  i, len;

    len = strlen(s);

    if (len == 0 || len > TG_HOST_MAX) {
        return false;
    }

    for (i = 0; i < len; i++) {
        if (!(isalnum((unsigned char) s[i]) || strchr("-._:[]", s[i]))) {
            return false;
        }
    }

    return true;
}


static bool
tg_valid_base_path(const char *s)
{
    size_t  i, len;

    len = strlen(s);

    if (len == 0) {
        return true;
    }

    if (len > TG_BASE_PATH_MAX || s[0] != '/' || s[len - 1] == '/') {
        return false;
    }

    for (i = 0; i < len; i++) {
        unsigned char  c = (unsigned char) s[i];

        if (c <= 0x20 || c >= 0x7f || c == '?' || c == '#') {
            return false;
        }
    }

    return true;
}


void
tg_load_url(tg_loader *ld, const cJSON *obj, const char *key,
    const char *path, const char **url)
{
    char         sub[TG_PATH_LEN];
    const char  *s;

    if (tg_member_string(ld, obj, key, path, false, &s) != 1) {
        return;
    }

    if (!tg_valid_url(s)) {
        tg_key_path(sub, path, key);
        tg_load_error(ld, sub, "expected an http:// or https:// URL without "
                      "spaces (at most %d bytes)", TG_HEALTH_URL_MAX);
        return;
    }

    *url = tg_copy(ld, s);
}


/* http:// or https://, a host, visible characters only */

static bool
tg_valid_url(const char *s)
{
    size_t       len;
    const char  *p, *host;

    len = strlen(s);

    if (len > TG_HEALTH_URL_MAX) {
        return false;
    }

    if (strncmp(s, "http://", 7) == 0) {
        host = s + 7;
    } else if (strncmp(s, "https://", 8) == 0) {
        host = s + 8;
    } else {
        return false;
    }

    if (*host == '\0' || *host == '/') {
        return false;
    }

    for (p = s; *p != '\0'; p++) {
        if ((unsigned char) *p <= ' ' || (unsigned char) *p == 0x7f) {
            return false;
        }
    }

    return true;
}
