/*
 * policyd explain: where would this request go, and why.
 *
 *   policyd explain -c FILE [options] MODEL   the policy as written, every
 *                                             provider up and idle
 *   policyd explain -s SOCKET [options] MODEL ask the running policyd: its
 *                                             live view of health and
 *                                             capacity
 *
 * Nothing is sent to a provider, and a running policyd takes no lease and
 * counts nothing for the question (the DECIDE carries dry_run).  Provider
 * keys are never printed: offline they are not even read.
 */

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "decide.h"
#include "explain.h"
#include "policy.h"
#include "proto.h"
#include "sock.h"


#define TG_EXPLAIN_LIST_MAX  64
#define TG_EXPLAIN_TIMEOUT   5      /* seconds, for a running policyd */


/* the answer, from tg_decide() or from a DECISION frame */
typedef struct {
    unsigned     status;
    char         error_type[64];
    char         error_code[64];
    char         message[TG_MESSAGE_MAX];
    uint32_t     retry_after;
    char         provider[TG_PROVIDER_NAME_MAX + 1];
    char         route[TG_ROUTE_NAME_MAX + 1];
    char         upstream[TG_UPSTREAM_NAME_MAX + 1];
    char         scheme[8];
    char         host[TG_HOST_MAX + 1];
    char         path[TG_BASE_PATH_MAX + 64];
    char         provider_model[TG_MODEL_NAME_MAX + TG_ROUTE_NAME_MAX + 1];
    char         zone[16];
    char         reason[TG_REASON_MAX];
    char         adjust[TG_ADJUST_MAX];
    uint32_t     fallback;
    uint32_t     cache_ms;
    uint32_t     cache_max_bytes;
    uint32_t     wait_ms;           /* 202: waits for a slot this long */
    bool         translate;         /* responses sent as chat */
    uint32_t     connect_ms;        /* the attempt's timeouts, 0: nginx's */
    uint32_t     first_byte_ms;
    uint32_t     idle_ms;
    char         drop_headers[4096];    /* not sent to the provider */
    char         user_agent[257];       /* sent instead of the client's */
} tg_answer;


typedef struct {
    const char  *items[TG_EXPLAIN_LIST_MAX];
    size_t       n;
} tg_list;


/* one "provider:why" of a decision's reason; why is NULL without ":" */
typedef struct {
    const char  *provider;
    int          provider_len;
    const char  *why;
    int          why_len;
} tg_step_why;


static int tg_explain_offline(const char *file, const tg_facts *facts,
    tg_answer *a);
static int tg_explain_live(const char *sock, const tg_facts *facts,
    tg_answer *a);
static void tg_print_text(const tg_facts *facts, const tg_answer *a,
    bool live);
static int tg_print_json(const tg_facts *facts, const tg_answer *a,
    bool live);
static bool tg_next_step(const char **p, tg_step_why *s);
static bool tg_next_line(const char **p, const char **line, int *len);
static const char *tg_why_text(const char *why, int len);
static void tg_copy_field(char *dst, size_t size, const tg_field *f);
static void tg_copy_cstr(char *dst, size_t size, const char *s);
static void tg_explain_usage(FILE *out);


int
tg_explain_main(int argc, char **argv)
{
    int               ch, rc;
    bool              json;
    char             *end;
    tg_str            tags[TG_EXPLAIN_LIST_MAX], allow[TG_EXPLAIN_LIST_MAX];
    tg_str            exclude[TG_EXPLAIN_LIST_MAX];
    tg_facts          facts;
    tg_answer         a;
    const char       *file, *sock;
    unsigned long     n;

    static const struct option  options[] = {
        { "endpoint", required_argument, NULL, 'e' },
        { "tag", required_argument, NULL, 'T' },
        { "client", required_argument, NULL, 'u' },
        { "tenant", required_argument, NULL, 'n' },
        { "allow", required_argument, NULL, 'r' },
        { "exclude", required_argument, NULL, 'x' },
        { "attempt", required_argument, NULL, 'a' },
        { "prompt-tokens", required_argument, NULL, 'p' },
        { "body-bytes", required_argument, NULL, 'b' },
        { "tools", no_argument, NULL, 'o' },
        { "stream", no_argument, NULL, 'S' },
        { "json", no_argument, NULL, 'j' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 }
    };

    memset(&facts, 0, sizeof(facts));
    facts.endpoint = TG_EP_CHAT;
    facts.attempt = 1;
    facts.tags = tags;
    facts.allow = allow;
    facts.exclude = exclude;
    facts.dry_run = true;

    file = NULL;
    sock = NULL;
    json = false;

    optind = 1;
    opterr = 0;

    while ((ch = getopt_long(argc, argv, "c:s:e:T:u:n:r:x:a:p:b:oSjh",
                             options, NULL))
           != -1)
    {
        switch (ch) {

        case 'c':
            file = optarg;
            break;

        case 's':
            sock = optarg;
            break;

        case 'e':
            facts.endpoint = tg_endpoint_parse(optarg, strlen(optarg));

            if (facts.endpoint == TG_EP_NONE) {
                fprintf(stderr, "policyd explain: unknown endpoint \"%s\": "
                        "expected chat, embeddings, speech, transcriptions "
                        "or responses\n", optarg);
                return 2;
            }
            break;

        case 'T':
        case 'r':
        case 'x':
            /* the gateway lowercases tags: so does the question */
            if (ch == 'T') {
                for (end = optarg; *end != '\0'; end++) {
                    *end = (char) tolower((unsigned char) *end);
                }
            }

            {
                tg_str  *list = ch == 'T' ? tags : ch == 'r' ? allow : exclude;
                size_t  *count = ch == 'T' ? &facts.ntags
                                 : ch == 'r' ? &facts.nallow
                                 : &facts.nexclude;

                if (*count == TG_EXPLAIN_LIST_MAX) {
                    fprintf(stderr, "policyd explain: at most %d of -%c\n",
                            TG_EXPLAIN_LIST_MAX, ch);
                    return 2;
                }

                list[*count].data = optarg;
                list[(*count)++].len = strlen(optarg);
            }
            break;

        case 'u':
            facts.client.data = optarg;
            facts.client.len = strlen(optarg);
            break;

        case 'n':
            facts.tenant.data = optarg;
            facts.tenant.len = strlen(optarg);
            break;

        case 'a':
        case 'p':
        case 'b':
            errno = 0;
            n = strtoul(optarg, &end, 10);

            if (errno != 0 || end == optarg || *end != '\0'
                || n > UINT32_MAX || (ch == 'a' && n == 0))
            {
                fprintf(stderr, "policyd explain: -%c needs a number, not "
                        "\"%s\"\n", ch, optarg);
                return 2;
            }

            if (ch == 'a') {
                facts.attempt = (uint32_t) n;

            } else if (ch == 'p') {
                facts.prompt_estimate = (uint32_t) n;

            } else {
                /* as the module estimates it */
                facts.body_bytes = (uint32_t) n;
                facts.prompt_estimate = (uint32_t) (n / 4);
            }
            break;

        case 'o':
            facts.tools = true;
            break;

        case 'S':
            facts.stream = true;
            break;

        case 'j':
            json = true;
            break;

        case 'h':
            tg_explain_usage(stdout);
            return 0;

        default:
            fprintf(stderr, "policyd explain: unknown or incomplete option "
                    "\"%s\"\n", argv[optind - 1]);
            tg_explain_usage(stderr);
            return 2;
        }
    }

    if (optind != argc - 1 || (file == NULL) == (sock == NULL)) {
        tg_explain_usage(stderr);
        return 2;
    }

    facts.model.data = argv[optind];
    facts.model.len = strlen(argv[optind]);

    memset(&a, 0, sizeof(a));

    rc = file ? tg_explain_offline(file, &facts, &a)
              : tg_explain_live(sock, &facts, &a);

    if (rc != 0) {
        return 2;
    }

    if (json) {
        if (tg_print_json(&facts, &a, sock != NULL) != 0) {
            fprintf(stderr, "policyd explain: out of memory\n");
            return 2;
        }

    } else {
        tg_print_text(&facts, &a, sock != NULL);
    }

    return a.status == 200 || a.status == 202 ? 0 : 1;
}


static int
tg_explain_offline(const char *file, const tg_facts *facts, tg_answer *a)
{
    tg_errors        errs;
    tg_policy       *policy;
    tg_decision      d;
    tg_policy_opts   opts;

    /*
     * keys are not needed to explain, nor a socket to listen on; the
     * other variables are read as policyd would read them
     */

    memset(&opts, 0, sizeof(opts));
    opts.secrets_unread = true;
    opts.listen_path = "/nonexistent/policyd.sock";

    tg_errors_init(&errs);

    policy = tg_policy_load(file, &opts, &errs);

    if (policy == NULL) {
        tg_print_errors(file, &errs, stderr, false);
        tg_errors_free(&errs);
        return -1;
    }

    tg_errors_free(&errs);

    tg_decide(policy, facts, NULL, &d);

    a->status = d.status;
    a->retry_after = d.retry_after;
    a->fallback = d.fallback;
    a->cache_ms = d.cache_ms;
    a->cache_max_bytes = d.cache_max_bytes;
    a->translate = d.translate;

    tg_copy_cstr(a->reason, sizeof(a->reason), d.reason);

    if (d.route != NULL) {
        tg_copy_cstr(a->route, sizeof(a->route), d.route->name);
    }

    if (d.status == 200) {
        tg_copy_cstr(a->provider, sizeof(a->provider), d.provider->name);
        tg_copy_cstr(a->upstream, sizeof(a->upstream), d.upstream);
        tg_copy_cstr(a->scheme, sizeof(a->scheme), d.scheme);
        tg_copy_cstr(a->host, sizeof(a->host), d.host);
        tg_copy_cstr(a->path, sizeof(a->path), d.path);
        tg_copy_cstr(a->provider_model, sizeof(a->provider_model),
                     d.provider_model);
        tg_copy_cstr(a->zone, sizeof(a->zone), d.zone);
        tg_copy_cstr(a->adjust, sizeof(a->adjust), d.adjust);
        tg_copy_cstr(a->drop_headers, sizeof(a->drop_headers),
                     d.drop_headers);
        tg_copy_cstr(a->user_agent, sizeof(a->user_agent),
                     d.user_agent ? d.user_agent : "");
        a->connect_ms = d.connect_ms;
        a->first_byte_ms = d.first_byte_ms;
        a->idle_ms = d.idle_ms;

    } else {
        tg_copy_cstr(a->error_type, sizeof(a->error_type), d.error_type);
        tg_copy_cstr(a->error_code, sizeof(a->error_code), d.error_code);
        tg_copy_cstr(a->message, sizeof(a->message), d.message);
    }

    tg_policy_free(policy);

    return 0;
}


/* one DECIDE with dry_run over the socket, as a worker would ask */

static int
tg_explain_live(const char *sock, const tg_facts *facts, tg_answer *a)
{
    int                  fd, rc;
    long                 len;
    size_t               i, have;
    ssize_t              n;
    uint8_t             *buf, u8;
    tg_field             f;
    tg_builder           b;
    tg_frame_hdr         h;
    tg_field_iter        it;
    struct sockaddr_un   sun;

    if (strlen(sock) >= sizeof(sun.sun_path)) {
        fprintf(stderr, "policyd explain: socket path too long\n");
        return -1;
    }

    buf = malloc(TG_MAX_FRAME_LIMIT + TG_FRAME_LEN_SIZE);
    if (buf == NULL) {
        fprintf(stderr, "policyd explain: out of memory\n");
        return -1;
    }

    tg_build_begin(&b, buf, TG_MAX_FRAME_MIN, TG_MSG_DECIDE, 1);
    tg_build_cstr(&b, TG_F_ENDPOINT, tg_endpoint_name(facts->endpoint));
    tg_build_str(&b, TG_F_MODEL, facts->model.data, facts->model.len);

    if (facts->client.len) {
        tg_build_str(&b, TG_F_CLIENT, facts->client.data, facts->client.len);
    }

    if (facts->tenant.len) {
        tg_build_str(&b, TG_F_TENANT, facts->tenant.data, facts->tenant.len);
    }

    for (i = 0; i < facts->ntags; i++) {
        tg_build_str(&b, TG_F_TAG, facts->tags[i].data, facts->tags[i].len);
    }

    for (i = 0; i < facts->nallow; i++) {
        tg_build_str(&b, TG_F_ALLOW_ROUTE, facts->allow[i].data,
                     facts->allow[i].len);
    }

    for (i = 0; i < facts->nexclude; i++) {
        tg_build_str(&b, TG_F_EXCLUDE, facts->exclude[i].data,
                     facts->exclude[i].len);
    }

    tg_build_u8(&b, TG_F_STREAM, facts->stream);
    tg_build_u8(&b, TG_F_TOOLS, facts->tools);
    tg_build_u32(&b, TG_F_BODY_BYTES, facts->body_bytes);
    tg_build_u32(&b, TG_F_PROMPT_ESTIMATE, facts->prompt_estimate);
    tg_build_u32(&b, TG_F_ATTEMPT, facts->attempt);
    tg_build_u8(&b, TG_F_DRY_RUN, 1);

    len = tg_build_end(&b);

    if (len < 0) {
        fprintf(stderr, "policyd explain: the question does not fit in a "
                "frame\n");
        goto failed;
    }

    fd = tg_sock_connect(sock, TG_EXPLAIN_TIMEOUT);

    if (fd == TG_SOCK_NO_SOCKET) {
        fprintf(stderr, "policyd explain: socket(): %s\n", strerror(errno));
        goto failed;
    }

    if (fd == TG_SOCK_NO_CONNECT) {
        fprintf(stderr, "policyd explain: cannot connect to %s: %s\n", sock,
                strerror(errno));
        goto failed;
    }

    if (send(fd, buf, (size_t) len, MSG_NOSIGNAL) != len) {
        fprintf(stderr, "policyd explain: cannot send to %s\n", sock);
        goto closed;
    }

    /* read until the whole answer is in: ERROR or DECISION for id 1 */

    have = 0;

    for ( ;; ) {
        rc = tg_frame_header(buf, have, TG_MAX_FRAME_LIMIT, &h);

        if (rc == TG_FRAME_OK && have >= (size_t) h.length + 4) {

            if (h.id == 1) {
                break;
            }

            /* not ours (an INVALIDATE after a reload): next frame */
            have -= (size_t) h.length + 4;
            memmove(buf, buf + h.length + 4, have);
            continue;
        }

        if (rc < 0) {
            fprintf(stderr, "policyd explain: policyd sent a malformed "
                    "frame\n");
            goto closed;
        }

        n = recv(fd, buf + have, TG_MAX_FRAME_LIMIT + 4 - have, 0);

        if (n <= 0) {
            fprintf(stderr, "policyd explain: no answer from %s%s%s\n", sock,
                    n < 0 ? ": " : "", n < 0 ? strerror(errno) : "");
            goto closed;
        }

        have += (size_t) n;
    }

    close(fd);

    if (h.type != TG_MSG_DECISION) {
        tg_fields_init(&it, buf, &h);

        while (tg_fields_next(&it, &f) == 1) {
            if (f.key == TG_F_ERROR_MESSAGE) {
                tg_copy_field(a->message, sizeof(a->message), &f);
            }
        }

        fprintf(stderr, "policyd explain: policyd refused the question: %s\n",
                a->message);
        free(buf);
        return -1;
    }

    tg_fields_init(&it, buf, &h);

    while (tg_fields_next(&it, &f) == 1) {
        switch (f.key) {

        case TG_F_STATUS:
            (void) tg_field_u32(&f, &a->status);
            break;

        case TG_F_RETRY_AFTER:
            (void) tg_field_u32(&f, &a->retry_after);
            break;

        case TG_F_FALLBACK:
            (void) tg_field_u32(&f, &a->fallback);
            break;

        case TG_F_CACHE_MS:
            (void) tg_field_u32(&f, &a->cache_ms);
            break;

        case TG_F_CACHE_MAX_BYTES:
            (void) tg_field_u32(&f, &a->cache_max_bytes);
            break;

        case TG_F_WAIT_MS:
            (void) tg_field_u32(&f, &a->wait_ms);
            break;

        case TG_F_TRANSLATE:
            a->translate = tg_field_u8(&f, &u8) == 0 && u8 != 0;
            break;

        case TG_F_CONNECT_MS:
            (void) tg_field_u32(&f, &a->connect_ms);
            break;

        case TG_F_FIRST_BYTE_MS:
            (void) tg_field_u32(&f, &a->first_byte_ms);
            break;

        case TG_F_IDLE_MS:
            (void) tg_field_u32(&f, &a->idle_ms);
            break;

#define tg_case_str(key, field)                                               \
        case key:                                                             \
            tg_copy_field(a->field, sizeof(a->field), &f);                    \
            break

        tg_case_str(TG_F_ERROR_TYPE, error_type);
        tg_case_str(TG_F_ERROR_CODE, error_code);
        tg_case_str(TG_F_ERROR_MESSAGE, message);
        tg_case_str(TG_F_PROVIDER, provider);
        tg_case_str(TG_F_ROUTE, route);
        tg_case_str(TG_F_UPSTREAM, upstream);
        tg_case_str(TG_F_SCHEME, scheme);
        tg_case_str(TG_F_HOST, host);
        tg_case_str(TG_F_PATH, path);
        tg_case_str(TG_F_PROVIDER_MODEL, provider_model);
        tg_case_str(TG_F_ZONE, zone);
        tg_case_str(TG_F_REASON, reason);
        tg_case_str(TG_F_ADJUST, adjust);
        tg_case_str(TG_F_DROP_HEADERS, drop_headers);
        tg_case_str(TG_F_USER_AGENT, user_agent);

#undef tg_case_str

        default:
            /* the authorization of an older policyd is not ours to show */
            break;
        }
    }

    free(buf);

    return 0;

closed:

    close(fd);

failed:

    free(buf);

    return -1;
}


/* "300 ms", or "the location's" for none */

static const char *
tg_ms_text(uint32_t ms, char *buf, size_t size)
{
    if (ms == 0) {
        return "the location's";
    }

    snprintf(buf, size, "%u ms", ms);

    return buf;
}


static void
tg_print_text(const tg_facts *facts, const tg_answer *a, bool live)
{
    int           len;
    char          t1[24], t2[24], t3[24];
    size_t        i;
    unsigned      bit;
    const char   *p, *line;
    tg_step_why   sw;

    printf("request:  %s \"%.*s\"", tg_endpoint_name(facts->endpoint),
           (int) facts->model.len, facts->model.data);

    for (i = 0; i < facts->ntags; i++) {
        printf("%s%.*s", i ? "," : " tags=", (int) facts->tags[i].len,
               facts->tags[i].data);
    }

    printf("%s%s", facts->tools ? " tools" : "",
           facts->stream ? " stream" : "");

    if (facts->prompt_estimate) {
        printf(" ~%u tokens", facts->prompt_estimate);
    }

    printf(" attempt %u (%s)\n", facts->attempt,
           live ? "live state of the running policyd"
                : "the policy file; every provider up and idle");

    for (p = a->reason; tg_next_step(&p, &sw); /* void */ ) {
        if (sw.why == NULL) {
            printf("step:     %.*s\n", sw.provider_len, sw.provider);

        } else {
            printf("step:     %-20.*s %s\n", sw.provider_len, sw.provider,
                   tg_why_text(sw.why, sw.why_len));
        }
    }

    if (a->status == 202) {
        printf("answer:   provider \"%s\" is at capacity: the request would "
               "wait up to %u ms for a slot\n", a->provider, a->wait_ms);
        return;
    }

    if (a->status != 200) {
        printf("answer:   %u %s %s: %s\n", a->status, a->error_type,
               a->error_code, a->message);

        if (a->retry_after) {
            printf("          Retry-After: %u\n", a->retry_after);
        }

        return;
    }

    printf("answer:   200 provider \"%s\" (%s), model \"%s\"\n", a->provider,
           a->zone, a->provider_model);
    printf("          %s://%s%s (Host: %s)\n", a->scheme, a->upstream,
           a->path, a->host);

    if (a->translate) {
        printf("          the Responses request is sent as chat completions "
               "and its answer translated back\n");
    }

    if (a->fallback) {
        printf("fallback: after ");

        for (i = 0; tg_fallback_class_name(bit = 1u << i) != NULL; i++) {
            if (a->fallback & bit) {
                printf("%s%s", tg_fallback_class_name(bit),
                       (a->fallback >> (i + 1)) ? ", " : "");
            }
        }

        printf(" the next step is asked for\n");

    } else {
        printf("fallback: none after a failure of this attempt\n");
    }

    for (p = a->adjust; tg_next_line(&p, &line, &len); /* void */ ) {
        printf("edit:     %.*s\n", len, line);
    }

    if (a->drop_headers[0] != '\0') {
        printf("headers:  not sent:");

        for (p = a->drop_headers; tg_next_line(&p, &line, &len); ) {
            printf(" %.*s", len, line);
        }

        printf("\n");
    }

    if (a->user_agent[0] != '\0') {
        printf("          User-Agent: %s\n", a->user_agent);
    }

    if (a->connect_ms || a->first_byte_ms || a->idle_ms) {
        printf("timeouts: connect %s, first byte %s, idle %s\n",
               tg_ms_text(a->connect_ms, t1, sizeof(t1)),
               tg_ms_text(a->first_byte_ms, t2, sizeof(t2)),
               tg_ms_text(a->idle_ms, t3, sizeof(t3)));
    }

    if (a->cache_ms) {
        printf("reuse:    %u ms", a->cache_ms);

        if (a->cache_max_bytes) {
            printf(", for bodies up to %u bytes", a->cache_max_bytes);
        }

        printf("\n");

    } else {
        printf("reuse:    none: every such request asks policyd\n");
    }
}


static int
tg_print_json(const tg_facts *facts, const tg_answer *a, bool live)
{
    int           len;
    char         *text;
    cJSON        *root, *steps, *step, *list, *s;
    size_t        i;
    unsigned      bit;
    const char   *p, *line;
    char          buf[TG_REASON_MAX];
    tg_step_why   sw;

    (void) facts;

    root = cJSON_CreateObject();
    if (root == NULL) {
        return -1;
    }

    cJSON_AddStringToObject(root, "source", live ? "policyd" : "file");
    cJSON_AddNumberToObject(root, "status", a->status);

    if (a->route[0] != '\0') {
        cJSON_AddStringToObject(root, "route", a->route);
    }

    steps = cJSON_AddArrayToObject(root, "steps");

    for (p = a->reason; steps != NULL && tg_next_step(&p, &sw); ) {
        step = cJSON_CreateObject();
        if (step == NULL) {
            break;
        }

        cJSON_AddItemToArray(steps, step);

        snprintf(buf, sizeof(buf), "%.*s", sw.provider_len, sw.provider);
        cJSON_AddStringToObject(step, "provider", buf);

        if (sw.why != NULL) {
            snprintf(buf, sizeof(buf), "%.*s", sw.why_len, sw.why);
            cJSON_AddStringToObject(step, "why", buf);
        }
    }

    if (a->status == 202) {
        cJSON_AddStringToObject(root, "provider", a->provider);
        cJSON_AddNumberToObject(root, "wait_ms", a->wait_ms);

    } else if (a->status == 200) {
        cJSON_AddStringToObject(root, "provider", a->provider);
        cJSON_AddStringToObject(root, "provider_model", a->provider_model);
        cJSON_AddStringToObject(root, "zone", a->zone);
        cJSON_AddStringToObject(root, "upstream", a->upstream);
        cJSON_AddStringToObject(root, "scheme", a->scheme);
        cJSON_AddStringToObject(root, "host", a->host);
        cJSON_AddStringToObject(root, "path", a->path);
        cJSON_AddBoolToObject(root, "translate", a->translate);

        list = cJSON_AddArrayToObject(root, "fallback");

        for (i = 0; list != NULL && tg_fallback_class_name(bit = 1u << i);
             i++)
        {
            if (a->fallback & bit) {
                s = cJSON_CreateString(tg_fallback_class_name(bit));
                if (s != NULL) {
                    cJSON_AddItemToArray(list, s);
                }
            }
        }

        list = cJSON_AddArrayToObject(root, "adjust");

        for (p = a->adjust; list != NULL && tg_next_line(&p, &line, &len); )
        {
            snprintf(buf, sizeof(buf), "%.*s", len, line);
            s = cJSON_CreateString(buf);
            if (s != NULL) {
                cJSON_AddItemToArray(list, s);
            }
        }

        list = cJSON_AddArrayToObject(root, "drop_headers");

        for (p = a->drop_headers;
             list != NULL && tg_next_line(&p, &line, &len); )
        {
            snprintf(buf, sizeof(buf), "%.*s", len, line);
            s = cJSON_CreateString(buf);
            if (s != NULL) {
                cJSON_AddItemToArray(list, s);
            }
        }

        if (a->user_agent[0] != '\0') {
            cJSON_AddStringToObject(root, "user_agent", a->user_agent);
        }

        cJSON_AddNumberToObject(root, "connect_ms", a->connect_ms);
        cJSON_AddNumberToObject(root, "first_byte_ms", a->first_byte_ms);
        cJSON_AddNumberToObject(root, "idle_ms", a->idle_ms);
        cJSON_AddNumberToObject(root, "cache_ms", a->cache_ms);
        cJSON_AddNumberToObject(root, "cache_max_bytes", a->cache_max_bytes);

    } else {
        s = cJSON_AddObjectToObject(root, "error");

        if (s != NULL) {
            cJSON_AddStringToObject(s, "type", a->error_type);
            cJSON_AddStringToObject(s, "code", a->error_code);
            cJSON_AddStringToObject(s, "message", a->message);
        }

        if (a->retry_after) {
            cJSON_AddNumberToObject(root, "retry_after", a->retry_after);
        }
    }

    text = cJSON_Print(root);
    cJSON_Delete(root);

    if (text == NULL) {
        return -1;
    }

    printf("%s\n", text);
    cJSON_free(text);

    return 0;
}


/*
 * "deepseek:zone local:chosen": the next step of a reason, 0 after the
 * last.  The text and the JSON say the same steps.
 */

static bool
tg_next_step(const char **p, tg_step_why *s)
{
    const char  *end, *colon, *space;

    if (**p == '\0') {
        return false;
    }

    space = strchr(*p, ' ');
    end = space ? space : *p + strlen(*p);
    colon = memchr(*p, ':', (size_t) (end - *p));

    s->provider = *p;
    s->provider_len = (int) ((colon ? colon : end) - *p);
    s->why = colon ? colon + 1 : NULL;
    s->why_len = colon ? (int) (end - colon - 1) : 0;

    *p = space ? space + 1 : end;

    return true;
}


/* the next "drop ..." or "set ..." line of an adjust text, without "\n" */

static bool
tg_next_line(const char **p, const char **line, int *len)
{
    const char  *end;

    end = strchr(*p, '\n');
    if (end == NULL) {
        return false;
    }

    *line = *p;
    *len = (int) (end - *p);
    *p = end + 1;

    return true;
}


/* the words of docs/policy.md for each reason */

static const char *
tg_why_text(const char *why, int len)
{
    static const char *const  texts[TG_REASON_COUNT] = {
        [TG_REASON_CHOSEN] = "chosen",
        [TG_REASON_ENDPOINT] = "passed over: does not serve this endpoint",
        [TG_REASON_ZONE] = "passed over: external, and the request is "
                           "private",
        [TG_REASON_REGION] = "passed over: not in the request's region",
        [TG_REASON_CONTEXT] = "passed over: the prompt is larger than its "
                              "context",
        [TG_REASON_TOOLS] = "passed over: does not support tools",
        [TG_REASON_STREAMING] = "passed over: does not stream",
        [TG_REASON_EXCLUDED] = "passed over: already tried for this request",
        [TG_REASON_DOWN] = "down",
        [TG_REASON_STUCK] = "stuck: a request runs far too long",
        [TG_REASON_BUSY] = "at capacity",
        [TG_REASON_QUEUED] = "at capacity: the request would wait for a slot",
        [TG_REASON_LIMITED] = "passed over: over its own rpm or tpm, or "
                              "asked for time by a 429",
    };

    tg_reason  r;

    r = tg_reason_parse(why, (size_t) len);

    return r < TG_REASON_COUNT ? texts[r] : "?";
}


static void
tg_copy_field(char *dst, size_t size, const tg_field *f)
{
    size_t  len = f->len < size - 1 ? f->len : size - 1;

    memcpy(dst, f->value, len);
    dst[len] = '\0';
}


static void
tg_copy_cstr(char *dst, size_t size, const char *s)
{
    snprintf(dst, size, "%s", s ? s : "");
}


static void
tg_explain_usage(FILE *out)
{
    fprintf(out,
        "usage: policyd explain (-c FILE | -s SOCKET) [options] MODEL\n"
        "  -c FILE              decide from the policy file, every provider\n"
        "                       up and idle\n"
        "  -s SOCKET            ask the running policyd (its live state);\n"
        "                       it takes no lease and counts nothing\n"
        "  -e, --endpoint EP    chat (default), embeddings, speech,\n"
        "                       transcriptions, responses\n"
        "  -T, --tag TAG        a tag of the request, e.g. private,\n"
        "                       region:eu (repeat for more)\n"
        "  -u, --client ID      -n, --tenant NAME\n"
        "  -r, --allow ROUTE    the client may use only these routes\n"
        "  -x, --exclude NAME   providers already tried\n"
        "  -a, --attempt N      1 for the first\n"
        "  -p, --prompt-tokens N, -b, --body-bytes N (tokens = bytes / 4)\n"
        "  -o, --tools          the request has tools\n"
        "  -S, --stream         the request streams\n"
        "  -j, --json           print JSON\n"
        "exit status: 0 the request would be served, 1 it would be refused,\n"
        "2 the question could not be answered\n");
}
