/*
 * "upstream_dns": { "dir", "upstreams": { "UPSTREAM": "host:port" },
 * "interval_ms", "timeout_ms", "nameserver", "nginx_pid" }: nginx upstream
 * {} blocks whose servers policyd keeps in step with DNS (dns_watch.c;
 * docs/operations.md, "Providers whose addresses change").  Absent: nginx
 * resolves its upstreams' names once, at start, as always.
 */

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "policy_json.h"


static void tg_load_dns_names(tg_loader *ld, tg_dns_conf *dc,
    const cJSON *obj);
static int tg_dns_host_port(const char *s, size_t *host_len, uint16_t *port);
static const char *tg_load_dns_path(tg_loader *ld, const cJSON *obj,
    const char *key, bool required);


static const char *const  tg_dns_keys[] = {
    "dir", "upstreams", "interval_ms", "timeout_ms", "nameserver",
    "nginx_pid", NULL
};


void
tg_load_upstream_dns(tg_loader *ld, const cJSON *root)
{
    size_t        hlen;
    uint16_t      port;
    const char   *s;
    const cJSON  *obj;
    tg_dns_conf  *dc = &ld->p->dns;
    char          addr[INET_ADDRSTRLEN];
    struct in_addr  in;

    dc->interval_ms = TG_DNS_INTERVAL_DEFAULT;
    dc->timeout_ms = TG_DNS_TIMEOUT_DEFAULT;

    obj = tg_member(root, "upstream_dns");

    if (obj == NULL) {
        return;
    }

    if (!cJSON_IsObject(obj)) {
        tg_load_error(ld, "upstream_dns", "expected an object");
        return;
    }

    dc->enabled = true;

    tg_check_keys(ld, obj, "upstream_dns", tg_dns_keys);

    dc->dir = tg_load_dns_path(ld, obj, "dir", true);
    dc->nginx_pid = tg_load_dns_path(ld, obj, "nginx_pid", false);

    (void) tg_member_uint(ld, obj, "interval_ms", "upstream_dns",
                          TG_DNS_INTERVAL_MIN, TG_DNS_INTERVAL_MAX,
                          &dc->interval_ms);
    (void) tg_member_uint(ld, obj, "timeout_ms", "upstream_dns", 1,
                          TG_DNS_TIMEOUT_MAX, &dc->timeout_ms);

    if (tg_member_string(ld, obj, "nameserver", "upstream_dns", false, &s)
        == 1)
    {
        /* an address: a name for the name server would need a resolver */

        if (tg_dns_host_port(s, &hlen, &port) != 0
            || hlen >= sizeof(addr))
        {
            goto bad_ns;
        }

        memcpy(addr, s, hlen);
        addr[hlen] = '\0';

        if (inet_pton(AF_INET, addr, &in) != 1) {
            goto bad_ns;
        }

        dc->nameserver = tg_copy(ld, addr);
        dc->nameserver_port = port;
    }

    tg_load_dns_names(ld, dc, tg_member(obj, "upstreams"));

    return;

bad_ns:

    tg_load_error(ld, "upstream_dns.nameserver",
                  "expected an IPv4 address and a port, \"127.0.0.1:53\"");
}


static void
tg_load_dns_names(tg_loader *ld, tg_dns_conf *dc, const cJSON *obj)
{
    char          path[TG_PATH_LEN];
    size_t        i, j, n, len, hlen;
    uint16_t      port;
    const cJSON  *item;

    if (obj == NULL) {
        tg_load_error(ld, "upstream_dns.upstreams", "missing required key");
        return;
    }

    n = (size_t) cJSON_GetArraySize(obj);

    if (!cJSON_IsObject(obj) || n == 0 || n > TG_DNS_NAMES_MAX) {
        tg_load_error(ld, "upstream_dns.upstreams", "expected an object of "
                      "1 to %d upstreams, \"UPSTREAM\": \"host:port\"",
                      TG_DNS_NAMES_MAX);
        return;
    }

    dc->names = tg_arena_alloc(&ld->p->arena, n * sizeof(tg_dns_name));
    if (dc->names == NULL) {
        ld->oom = true;
        return;
    }

    memset(dc->names, 0, n * sizeof(tg_dns_name));

    i = 0;

    cJSON_ArrayForEach(item, obj) {
        tg_key_path(path, "upstream_dns.upstreams", item->string);

        len = strlen(item->string);

        for (j = 0; j < len; j++) {
            if (!tg_is_name_char((unsigned char) item->string[j])) {
                break;
            }
        }

        if (len == 0 || len > TG_UPSTREAM_NAME_MAX || j < len) {
            tg_load_error(ld, path, "expected an upstream name: 1 to %d "
                          "letters, digits, \"_\", \".\" or \"-\"",
                          TG_UPSTREAM_NAME_MAX);
            continue;
        }

        for (j = 0; j < i; j++) {
            if (strcmp(dc->names[j].upstream, item->string) == 0) {
                break;
            }
        }

        if (j < i) {
            tg_load_error(ld, path, "is named twice");
            continue;
        }

        if (!cJSON_IsString(item)
            || tg_dns_host_port(item->valuestring, &hlen, &port) != 0)
        {
            tg_load_error(ld, path, "expected \"host:port\": a DNS name of "
                          "letters, digits, \"-\" and \".\" (or an IPv4 "
                          "address) and a port from 1 to 65535");
            continue;
        }

        dc->names[i].upstream = tg_copy(ld, item->string);
        dc->names[i].host = tg_arena_strndup(&ld->p->arena,
                                             item->valuestring, hlen);
        dc->names[i].port = port;

        if (dc->names[i].host == NULL) {
            ld->oom = true;
            return;
        }

        i++;
    }

    dc->nnames = i;
}


/* "host:port": 0, the host's length and the port */

static int
tg_dns_host_port(const char *s, size_t *host_len, uint16_t *port)
{
    char          *end;
    size_t         i, hlen;
    const char    *colon;
    unsigned long  p;

    colon = strrchr(s, ':');

    if (colon == NULL || colon == s || colon[1] < '0' || colon[1] > '9') {
        return -1;
    }

    p = strtoul(colon + 1, &end, 10);

    if (*end != '\0' || p == 0 || p > 65535) {
        return -1;
    }

    hlen = (size_t) (colon - s);

    if (hlen > 253 || s[0] == '.' || s[0] == '-') {
        return -1;
    }

    for (i = 0; i < hlen; i++) {
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z')
              || (s[i] >= '0' && s[i] <= '9') || s[i] == '-' || s[i] == '.'))
        {
            return -1;
        }
    }

    *host_len = hlen;
    *port = (uint16_t) p;

    return 0;
}


/* an absolute path without control bytes, short enough for "/NAME.conf" */

static const char *
tg_load_dns_path(tg_loader *ld, const cJSON *obj, const char *key,
    bool required)
{
    char         path[TG_PATH_LEN];
    const char  *s;

    if (tg_member_string(ld, obj, key, "upstream_dns", required, &s) != 1) {
        return NULL;
    }

    if (s[0] != '/' || strlen(s) > TG_DNS_DIR_MAX || tg_has_control(s)) {
        tg_key_path(path, "upstream_dns", key);
        tg_load_error(ld, path, "expected an absolute path of at most %d "
                      "bytes", TG_DNS_DIR_MAX);
        return NULL;
    }

    return tg_copy(ld, s);
}
