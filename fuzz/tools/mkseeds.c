
/*
 * Copyright (C) The Tailgate authors
 *
 * The binary seeds of the harnesses, made with the real builders:
 *
 *   corpus/policyd_frames/   what a worker sends policyd, frame after frame,
 *                            built with the module's ngx_tailgate_frame_*()
 *                            with the fields the module puts in them
 *                            (ngx_tailgate_decide.c, _report.c, _policy.c,
 *                            _status.c), and a few that break the framing
 *   corpus/frame/            INVALIDATE, built with policyd's tg_build_*();
 *                            the other replies come from policyd itself:
 *                            "make seeds" runs the policyd_frames harness
 *                            over its seeds with TAILGATE_FUZZ_DUMP
 *   corpus/jwt/              whole tokens signed with fuzz/jwt/hs256.key
 *
 *   mkseeds FUZZ_DIR         writes into FUZZ_DIR/corpus/
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_tailgate_proto.h"
#include "proto.h"              /* policyd's builders */

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>


typedef struct {
    u_char      buf[1 << 20];
    size_t      len;
} stream_t;


static const char  *out_dir;
static uint32_t     next_id = 1;


static void
die(const char *what)
{
    fprintf(stderr, "mkseeds: %s\n", what);
    exit(1);
}


static void
write_file(const char *dir, const char *name, const u_char *p, size_t len)
{
    FILE  *f;
    char   path[4096];

    snprintf(path, sizeof(path), "%s/corpus/%s/%s", out_dir, dir, name);

    f = fopen(path, "wb");
    if (f == NULL || fwrite(p, 1, len, f) != len || fclose(f) != 0) {
        die(path);
    }
}


static ngx_str_t
str(const char *s)
{
    ngx_str_t  v;

    v.data = (u_char *) s;
    v.len = strlen(s);

    return v;
}


/* frames of the module, into a stream */

static ngx_tailgate_frame_t  f;
static u_char                fbuf[65536];


static void
begin(ngx_uint_t type)
{
    ngx_tailgate_frame_init(&f, fbuf, sizeof(fbuf), type);
}


static void
s_(ngx_uint_t key, const char *value)
{
    ngx_str_t  v = str(value);

    ngx_tailgate_frame_str(&f, key, &v);
}


static void
end(stream_t *st, uint32_t id)
{
    size_t  len;

    if (ngx_tailgate_frame_finish(&f) != NGX_OK) {
        die("a frame does not fit");
    }

    ngx_tailgate_frame_set_id(f.start, id);

    len = f.pos - f.start;

    if (st->len + len > sizeof(st->buf)) {
        die("a stream does not fit");
    }

    memcpy(st->buf + st->len, f.start, len);
    st->len += len;
}


static void
hello(stream_t *st, uint32_t max_frame)
{
    begin(TG_MSG_HELLO);
    ngx_tailgate_frame_u32(&f, TG_F_MAX_FRAME, max_frame);
    ngx_tailgate_frame_u32(&f, TG_F_PID, 4242);
    s_(TG_F_SOFTWARE, "ngx_tailgate/0.1");
    end(st, 0);
}


typedef struct {
    const char   *endpoint;
    const char   *model;
    const char   *client;
    const char   *tenant;
    const char   *tags[4];
    const char   *routes[4];
    const char   *exclude[3];
    ngx_uint_t    stream;
    ngx_uint_t    tools;
    uint32_t      body_bytes;
    uint32_t      attempt;
    ngx_uint_t    dry_run;
} facts_t;


/* DECIDE as ngx_http_tailgate_decide() builds it */

static uint32_t
decide(stream_t *st, const facts_t *a)
{
    ngx_uint_t  i;

    begin(TG_MSG_DECIDE);
    s_(TG_F_CLIENT, a->client ? a->client : "client-1");

    if (a->tenant) {
        s_(TG_F_TENANT, a->tenant);
    }

    for (i = 0; i < 4 && a->tags[i]; i++) {
        s_(TG_F_TAG, a->tags[i]);
    }

    for (i = 0; i < 4 && a->routes[i]; i++) {
        s_(TG_F_ALLOW_ROUTE, a->routes[i]);
    }

    s_(TG_F_ENDPOINT, a->endpoint ? a->endpoint : "chat");
    s_(TG_F_MODEL, a->model);
    ngx_tailgate_frame_u8(&f, TG_F_STREAM, a->stream);
    ngx_tailgate_frame_u8(&f, TG_F_TOOLS, a->tools);
    ngx_tailgate_frame_u32(&f, TG_F_BODY_BYTES, a->body_bytes);
    ngx_tailgate_frame_u32(&f, TG_F_PROMPT_ESTIMATE, a->body_bytes / 4);
    ngx_tailgate_frame_u32(&f, TG_F_ATTEMPT, a->attempt ? a->attempt : 1);

    for (i = 0; i < 3 && a->exclude[i]; i++) {
        s_(TG_F_EXCLUDE, a->exclude[i]);
    }

    if (a->dry_run) {
        ngx_tailgate_frame_u8(&f, TG_F_DRY_RUN, 1);
    }

    end(st, next_id);

    return next_id++;
}


/* MODELS: the identity's facts, and the model of /v1/models/{id} */

static void
models(stream_t *st, const char *model, const char *tag, const char *route)
{
    begin(TG_MSG_MODELS);
    s_(TG_F_CLIENT, "client-1");

    if (tag) {
        s_(TG_F_TAG, tag);
    }

    if (route) {
        s_(TG_F_ALLOW_ROUTE, route);
    }

    if (model) {
        s_(TG_F_MODEL, model);
    }

    end(st, next_id++);
}


/* REPORT as ngx_tailgate_report_send() builds it */

static void
report(stream_t *st, uint32_t lease, const char *provider, const char *route,
    const char *outcome, uint32_t status, uint32_t count)
{
    begin(TG_MSG_REPORT);

    if (lease) {
        ngx_tailgate_frame_u32(&f, TG_F_LEASE, lease);
    }

    s_(TG_F_PROVIDER, provider);
    s_(TG_F_ROUTE, route);
    s_(TG_F_OUTCOME, outcome);

    if (status) {
        ngx_tailgate_frame_u32(&f, TG_F_HTTP_STATUS, status);
    }

    if (count != 1) {
        ngx_tailgate_frame_u32(&f, TG_F_COUNT, count);
    }

    ngx_tailgate_frame_u32(&f, TG_F_UPSTREAM_MS, 120);
    ngx_tailgate_frame_u32(&f, TG_F_TOTAL_MS, 135);
    end(st, 0);
}


static void
status(stream_t *st, const char *format)
{
    begin(TG_MSG_STATUS);
    s_(TG_F_FORMAT, format);
    end(st, next_id++);
}


static void
cancel(stream_t *st, uint32_t id)
{
    begin(TG_MSG_CANCEL);
    end(st, id);
}


static void
raw(stream_t *st, const void *p, size_t len)
{
    memcpy(st->buf + st->len, p, len);
    st->len += len;
}


static void
save(const char *name, stream_t *st)
{
    write_file("policyd_frames", name, st->buf, st->len);
    st->len = 0;
    next_id = 1;
}


static void
worker_seeds(void)
{
    uint32_t         id;
    static stream_t  st;
    static const u_char  short_len[] = { 0, 0, 0, 3, 1, 3, 0 };
    static const u_char  version_2[] = { 0, 0, 0, 6, 2, 3, 0, 0, 0, 9 };
    static const u_char  too_large[] = { 0, 0x40, 0, 1, 1, 3, 0, 0, 0, 9 };
    static const u_char  bad_u8[] = { 0, 0, 0, 13, 1, 3, 0, 0, 0, 5,
                                      16, 0, 0, 0, 2, 1, 1 };
    static const u_char  past_end[] = { 0, 0, 0, 12, 1, 7, 0, 0, 0, 0,
                                        50, 0, 0, 0, 9, 'o' };
    static const u_char  unknown[] = { 0, 0, 0, 6, 1, 99, 0, 0, 0, 7 };

    hello(&st, 65536);
    decide(&st, &(facts_t) { .model = "chat", .body_bytes = 400 });
    save("chat", &st);

    hello(&st, 65536);
    decide(&st, &(facts_t) { .model = "chat", .stream = 1, .tools = 1,
                             .tenant = "acme",
                             .tags = { "private", "region:eu" },
                             .routes = { "chat", "qwen", "claude" },
                             .body_bytes = 9000 });
    save("chat-private-stream-tools", &st);

    /* the module sends its first DECIDE right behind HELLO, or without */
    decide(&st, &(facts_t) { .endpoint = "embeddings", .model = "embed",
                             .body_bytes = 80 });
    decide(&st, &(facts_t) { .endpoint = "speech", .model = "tts-1",
                             .body_bytes = 60 });
    decide(&st, &(facts_t) { .endpoint = "transcriptions",
                             .model = "whisper-1", .body_bytes = 200000 });
    decide(&st, &(facts_t) { .endpoint = "responses", .model = "claude",
                             .tenant = "acme", .body_bytes = 300 });
    save("endpoints", &st);

    hello(&st, 65536);
    decide(&st, &(facts_t) { .model = "claude", .tenant = "other" });
    decide(&st, &(facts_t) { .model = "no-such-route" });
    decide(&st, &(facts_t) { .endpoint = "images", .model = "chat" });
    decide(&st, &(facts_t) { .model = "deepseek", .tags = { "private" } });
    decide(&st, &(facts_t) { .model = "qwen", .tags = { "region:us" } });
    decide(&st, &(facts_t) { .model = "qwen", .body_bytes = 400000 });
    decide(&st, &(facts_t) { .model = "busy", .tools = 1 });
    save("refusals", &st);

    /* the capacity of "local" is 1: a lease, then a wait, then cancel */
    hello(&st, 65536);
    id = decide(&st, &(facts_t) { .endpoint = "transcriptions",
                                  .model = "whisper-1" });
    id = decide(&st, &(facts_t) { .endpoint = "transcriptions",
                                  .model = "whisper-1" });
    cancel(&st, id);
    decide(&st, &(facts_t) { .model = "chat" });
    decide(&st, &(facts_t) { .model = "chat" });
    report(&st, 1, "local", "whisper-1", "ok", 200, 1);
    save("lease-queue-cancel", &st);

    /* a wait that runs out: decided again as busy */
    hello(&st, 65536);
    decide(&st, &(facts_t) { .model = "chat", .stream = 1 });
    decide(&st, &(facts_t) { .model = "chat", .tools = 1 });
    save("queue-wait-runs-out", &st);

    hello(&st, 65536);
    decide(&st, &(facts_t) { .model = "chat", .attempt = 2,
                             .exclude = { "local" } });
    decide(&st, &(facts_t) { .model = "chat", .attempt = 3,
                             .exclude = { "local", "lan" } });
    decide(&st, &(facts_t) { .model = "chat", .attempt = 4,
                             .exclude = { "local", "lan", "deepseek" } });
    decide(&st, &(facts_t) { .model = "busy", .dry_run = 1 });
    save("fallback-attempts", &st);

    hello(&st, 65536);
    report(&st, 0, "deepseek", "deepseek", "ok", 200, 25);
    report(&st, 0, "lan", "chat", "server_error", 502, 1);
    report(&st, 0, "lan", "chat", "connect_error", 0, 1);
    report(&st, 0, "lan", "chat", "timeout", 0, 1);
    report(&st, 7, "local", "chat", "not_sent", 0, 1);
    report(&st, 0, "openrouter", "nobody", "stream_broken", 200, 1);
    report(&st, 0, "ghost", "chat", "something_new", 200, 1);
    decide(&st, &(facts_t) { .model = "busy" });
    save("reports", &st);

    hello(&st, 65536);
    models(&st, NULL, NULL, NULL);
    models(&st, "chat", NULL, NULL);
    models(&st, "claude", NULL, NULL);
    models(&st, NULL, "private", "qwen");
    save("models", &st);

    hello(&st, 4 * 1024 * 1024);
    status(&st, "json");
    status(&st, "prometheus");
    save("status", &st);

    hello(&st, 65536);
    raw(&st, unknown, sizeof(unknown));
    decide(&st, &(facts_t) { .model = "qwen" });
    save("unknown-type", &st);

    hello(&st, 65536);
    raw(&st, bad_u8, sizeof(bad_u8));
    save("bad-u8", &st);

    raw(&st, past_end, sizeof(past_end));
    save("field-past-end", &st);

    raw(&st, short_len, sizeof(short_len));
    save("length-below-6", &st);

    raw(&st, version_2, sizeof(version_2));
    save("version-2", &st);

    hello(&st, 65536);
    raw(&st, too_large, sizeof(too_large));
    save("too-large", &st);

    /* DECIDE without a model: missing_field, the connection stays */
    begin(TG_MSG_DECIDE);
    s_(TG_F_CLIENT, "client-1");
    s_(TG_F_ENDPOINT, "chat");
    end(&st, 3);
    decide(&st, &(facts_t) { .model = "qwen" });
    save("missing-model", &st);
}


/* replies policyd builds outside frames.c */

static void
policyd_seeds(void)
{
    long        len;
    uint8_t     buf[64];
    tg_builder  b;

    tg_build_begin(&b, buf, sizeof(buf), TG_MSG_INVALIDATE, 0);
    len = tg_build_end(&b);

    if (len < 0) {
        die("INVALIDATE");
    }

    write_file("frame", "invalidate", buf, (size_t) len);
}


/* whole tokens: header.payload signed with the harness's HS256 key */

static void
b64url(const u_char *p, size_t len, char *out)
{
    ngx_str_t  src, dst;

    src.data = (u_char *) p;
    src.len = len;
    dst.data = (u_char *) out;

    ngx_encode_base64url(&dst, &src);
    out[dst.len] = '\0';
}


static void
token(const char *name, const char *header, const char *claims, int good)
{
    FILE          *fp;
    char           path[4096], tok[8192], sig[128];
    size_t         n, klen;
    unsigned int   mlen;
    u_char         key[256], mac[EVP_MAX_MD_SIZE];

    snprintf(path, sizeof(path), "%s/jwt/hs256.key", out_dir);

    fp = fopen(path, "rb");
    if (fp == NULL) {
        die(path);
    }

    klen = fread(key, 1, sizeof(key), fp);
    fclose(fp);

    while (klen && (key[klen - 1] == '\n' || key[klen - 1] == '\r')) {
        klen--;
    }

    b64url((u_char *) header, strlen(header), tok);
    n = strlen(tok);
    tok[n++] = '.';
    b64url((u_char *) claims, strlen(claims), tok + n);
    n = strlen(tok);

    if (HMAC(EVP_sha256(), key, (int) klen, (u_char *) tok, n, mac, &mlen)
        == NULL)
    {
        die("HMAC");
    }

    if (!good) {
        mac[0] ^= 1;
    }

    b64url(mac, mlen, sig);
    snprintf(tok + n, sizeof(tok) - n, ".%s", sig);

    write_file("jwt", name, (u_char *) tok, strlen(tok));
}


static void
jwt_seeds(void)
{
    token("token-hs256", "{\"alg\":\"HS256\",\"typ\":\"JWT\"}",
          "{\"sub\":\"client-1\",\"iss\":\"https://idp.test\","
          "\"aud\":\"tailgate\",\"exp\":4102444800,\"iat\":1699990000,"
          "\"tid\":\"acme\",\"groups\":[\"private\",\"region:eu\"],"
          "\"models\":[\"chat\",\"qwen\"],\"roles\":[\"admin\"]}", 1);

    token("token-hs256-bad-signature", "{\"alg\":\"HS256\"}",
          "{\"sub\":\"client-1\",\"iss\":\"https://idp.test\","
          "\"aud\":\"tailgate\",\"exp\":4102444800}", 0);

    token("token-hs256-expired", "{\"alg\":\"HS256\"}",
          "{\"sub\":\"client-1\",\"iss\":\"https://idp.test\","
          "\"aud\":\"tailgate\",\"exp\":1690000000}", 1);
}


int
main(int argc, char **argv)
{
    if (argc != 2) {
        die("usage: mkseeds FUZZ_DIR");
    }

    out_dir = argv[1];

    worker_seeds();
    policyd_seeds();
    jwt_seeds();

    return 0;
}
