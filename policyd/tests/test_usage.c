/*
 * Usage and cost: prices read from the policy and refused with their key
 * paths, the cost arithmetic the module shares ($tailgate_cost), the
 * record line and its reader, times, the tallies' bound, and the usage
 * log's writer: nothing lost, a full buffer dropped and counted, never a
 * wait; reopened for logrotate.
 */

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <cjson/cJSON.h>

#include "decide.h"
#include "policy.h"
#include "price.h"
#include "tailgate_protocol.h"
#include "tg_test.h"
#include "usage.h"
#include "usage_read.h"


#define TG_LISTEN  "'listen': { 'path': '/tmp/tg-test.sock' }"

#define TG_PROVIDERS                                                          \
    "'providers': {"                                                          \
    "  'local': { 'upstream': 'u_local', 'zone': 'local',"                    \
    "    'endpoints': ['chat', 'speech', 'transcriptions'],"                  \
    "    'models': ['qwen', 'tts', 'whisper'] },"                             \
    "  'ds': { 'upstream': 'u_ds', 'zone': 'external', 'endpoints': ['chat'],"\
    "    'usage': 'passive' } }"

#define TG_ROUTES                                                             \
    "'routes': {"                                                             \
    "  'qwen': { 'steps': [ { 'provider': 'local', 'model': 'qwen' } ] },"    \
    "  'tts': { 'steps': [ { 'provider': 'local', 'model': 'tts' } ] },"      \
    "  'smart': { 'steps': [ { 'provider': 'ds', 'model': 'deepseek-chat' },"\
    "                        { 'provider': 'local', 'model': 'qwen' } ] } }"

#define TG_WITH_USAGE(u)                                                      \
    "{" TG_LISTEN "," TG_PROVIDERS "," TG_ROUTES ", 'usage': {" u "} }"


/* prices in the policy */

static void
test_price_micro(void **unused)
{
    uint64_t  m;

    (void) unused;

    assert_int_equal(tg_price_micro(0.27, &m), 0);
    assert_int_equal(m, 270000);
    assert_int_equal(tg_price_micro(0, &m), 0);
    assert_int_equal(m, 0);
    assert_int_equal(tg_price_micro(0.000001, &m), 0);
    assert_int_equal(m, 1);
    assert_int_equal(tg_price_micro(1.1, &m), 0);
    assert_int_equal(m, 1100000);
    assert_int_equal(tg_price_micro(999999.999999, &m), 0);
    assert_int_equal(m, 999999999999ULL);
    assert_int_equal(tg_price_micro(60, &m), 0);
    assert_int_equal(m, 60000000);

    assert_int_equal(tg_price_micro(0.0000001, &m), -1);
    assert_int_equal(tg_price_micro(0.1234567, &m), -1);
    assert_int_equal(tg_price_micro(-0.01, &m), -1);
    assert_int_equal(tg_price_micro(1000000, &m), -1);
    assert_int_equal(tg_price_micro(NAN, &m), -1);
    assert_int_equal(tg_price_micro(INFINITY, &m), -1);
}


static void
test_prices_loaded(void **unused)
{
    tg_policy             *p;
    const tg_route        *rt;
    const tg_price_entry  *e;

    (void) unused;

    p = tg_test_policy(TG_WITH_USAGE(
        "'log': '/var/log/tailgate/usage.jsonl', 'currency': 'USD',"
        "'max_clients': 3, 'buffer_bytes': 65536,"
        "'prices': { 'ds': { 'deepseek-chat': { 'input': 0.27,"
        "  'cached_input': 0.07, 'output': 1.10 } },"
        "  'local': { 'qwen': { 'input': 0 }, 'tts': { 'characters': 15 },"
        "             'whisper': { 'audio_minute': 0.006 } } }"));

    assert_string_equal(p->usage.log, "/var/log/tailgate/usage.jsonl");
    assert_string_equal(p->usage.currency, "USD");
    assert_int_equal(p->usage.max_clients, 3);
    assert_int_equal(p->usage.buffer_bytes, 65536);
    assert_int_equal(p->usage.nprices, 4);

    /* no version given: one made of the prices */
    assert_non_null(p->usage.price_version);
    assert_memory_equal(p->usage.price_version, "h:", 2);
    assert_int_equal(strlen(p->usage.price_version), 18);

    e = tg_policy_price(p, "ds", 2, "deepseek-chat", 13);
    assert_non_null(e);
    assert_int_equal(e->price.input, 270000);
    assert_int_equal(e->price.cached_input, 70000);
    assert_int_equal(e->price.output, 1100000);
    assert_string_equal(e->text, "270000 70000 1100000 0 0");

    /* no cached_input: a cached token costs what an input token does */
    e = tg_policy_price(p, "local", 5, "tts", 3);
    assert_non_null(e);
    assert_int_equal(e->price.characters, 15000000);
    assert_string_equal(e->text, "0 0 0 0 15000000");

    e = tg_policy_price(p, "local", 5, "whisper", 7);
    assert_string_equal(e->text, "0 0 0 6000 0");

    assert_null(tg_policy_price(p, "local", 5, "deepseek-chat", 13));
    assert_null(tg_policy_price(p, "nobody", 6, "qwen", 4));

    /* each step has its provider model's prices */
    rt = tg_policy_route(p, "smart", 5);
    assert_non_null(rt->steps[0].price);
    assert_string_equal(rt->steps[0].price->model, "deepseek-chat");
    assert_string_equal(rt->steps[1].price->model, "qwen");

    assert_true(p->providers[1].usage_passive);
    assert_false(p->providers[0].usage_passive);

    tg_policy_free(p);

    /* the version given is the version */
    p = tg_test_policy(TG_WITH_USAGE(
        "'currency': 'EUR', 'price_version': '2026-12',"
        "'prices': { 'ds': { 'deepseek-chat': { 'input': 1 } } }"));
    assert_string_equal(p->usage.price_version, "2026-12");
    assert_null(p->usage.log);
    assert_int_equal(p->usage.max_clients, TG_USAGE_MAX_CLIENTS_DEFAULT);
    tg_policy_free(p);

    /* no usage block: no prices, no log */
    p = tg_test_policy("{" TG_LISTEN "," TG_PROVIDERS "," TG_ROUTES "}");
    assert_int_equal(p->usage.nprices, 0);
    assert_null(p->usage.log);
    assert_null(p->usage.currency);
    assert_null(tg_policy_route(p, "qwen", 4)->steps[0].price);
    tg_policy_free(p);
}


static void
test_price_version_follows_prices(void **unused)
{
    tg_policy  *a, *b, *c;

    (void) unused;

    a = tg_test_policy(TG_WITH_USAGE("'currency': 'USD', 'prices': { 'ds': "
        "{ 'deepseek-chat': { 'input': 0.27 } } }"));
    b = tg_test_policy(TG_WITH_USAGE("'currency': 'USD', 'prices': { 'ds': "
        "{ 'deepseek-chat': { 'input': 0.27 } } }"));
    c = tg_test_policy(TG_WITH_USAGE("'currency': 'USD', 'prices': { 'ds': "
        "{ 'deepseek-chat': { 'input': 0.28 } } }"));

    assert_string_equal(a->usage.price_version, b->usage.price_version);
    assert_string_not_equal(a->usage.price_version, c->usage.price_version);

    tg_policy_free(a);
    tg_policy_free(b);
    tg_policy_free(c);
}


#define TG_PRICE_ERR \
    "expected a price: a number from 0 to 999999.999999 (at most 6 " \
    "decimals) in the currency"

static const tg_test_refusal  refused_usage[] = {
    { TG_WITH_USAGE("'currency': 'USD', 'prices': { 'ds': {"
                    "'deepseek-chat': { 'input': -0.5, 'output': '1.1',"
                    "  'cached_input': null, 'audio_minute': 0.0000001,"
                    "  'characters': 1000000, 'outptu': 1 } } }"),
      6, {
        { "usage.prices.ds.deepseek-chat.input", TG_PRICE_ERR },
        { "usage.prices.ds.deepseek-chat.output", TG_PRICE_ERR },
        { "usage.prices.ds.deepseek-chat.cached_input", TG_PRICE_ERR },
        { "usage.prices.ds.deepseek-chat.audio_minute", TG_PRICE_ERR },
        { "usage.prices.ds.deepseek-chat.characters", TG_PRICE_ERR },
        { "usage.prices.ds.deepseek-chat.outptu", "unknown key" },
      } },

    { TG_WITH_USAGE("'currency': 'USD', 'prices': {"
                    "'openai': { 'gpt': { 'input': 1 } },"
                    "'local': { 'llama': { 'input': 1 }, 'qwen': 3 },"
                    "'ds': [] }"),
      4, {
        { "usage.prices.openai", "no provider named \"openai\"" },
        { "usage.prices.local.llama",
          "provider \"local\" has no model \"llama\" in its \"models\"" },
        { "usage.prices.local.qwen",
          "expected an object of prices (\"input\", \"cached_input\", "
          "\"output\", \"audio_minute\", \"characters\")" },
        { "usage.prices.ds", "expected an object of models" },
      } },

    { TG_WITH_USAGE("'prices': { 'ds': { 'deepseek-chat': { 'input': 1 },"
                    "'deepseek-chat': { 'input': 2 } } }"),
      2, {
        { "usage.prices.ds.deepseek-chat", "duplicate key" },
        { "usage.currency", "missing required key: prices are in one "
          "currency, which the policy must name" },
      } },

    { TG_WITH_USAGE("'log': 'usage.jsonl', 'currency': 'usd',"
                    "'price_version': 'a b', 'max_clients': -1,"
                    "'buffer_bytes': 100, 'logs': 1"),
      6, {
        { "usage.log", "expected an absolute file path" },
        { "usage.currency", "expected a currency code of 1 to 16 capital "
          "letters, such as \"USD\"" },
        { "usage.price_version", "expected 1 to 64 letters, digits, \"_\", "
          "\".\", \"-\" or \":\"" },
        { "usage.max_clients", "expected an integer from 0 to 10000" },
        { "usage.buffer_bytes",
          "expected an integer from 4096 to 268435456" },
        { "usage.logs", "unknown key" },
      } },

    { "{" TG_LISTEN "," TG_PROVIDERS "," TG_ROUTES ", 'usage': [] }",
      1, { { "usage", "expected an object" } } },

    { TG_WITH_USAGE("'prices': 7"),
      1, { { "usage.prices", "expected an object of providers" } } },

    { "{" TG_LISTEN ", 'providers': { 'p': { 'upstream': 'u',"
      "'zone': 'local', 'endpoints': ['chat'], 'usage': 'quiet' } },"
      "'routes': { 'r': { 'steps': [ { 'provider': 'p', 'model': 'm' } ] } } }",
      1, { { "providers.p.usage", "expected \"active\" or \"passive\"" } } },

    { "{" TG_LISTEN ", 'providers': { 'p': { 'upstream': 'u',"
      "'zone': 'local', 'endpoints': ['chat'], 'usage': true } },"
      "'routes': { 'r': { 'steps': [ { 'provider': 'p', 'model': 'm' } ] } } }",
      1, { { "providers.p.usage", "expected a string" } } },
};


static void
test_usage_refused(void **unused)
{
    (void) unused;

    TG_TEST_REFUSALS(refused_usage);
}


/* the decision carries prices and stream_usage */

static void
test_decision_prices(void **unused)
{
    tg_policy    *p;
    tg_facts      f;
    tg_decision   d;

    (void) unused;

    p = tg_test_policy(TG_WITH_USAGE("'currency': 'USD', 'prices': {"
        "'ds': { 'deepseek-chat': { 'input': 0.27, 'output': 1.1 } } }"));

    memset(&f, 0, sizeof(f));
    f.endpoint = TG_EP_CHAT;
    f.model.data = "smart";
    f.model.len = 5;

    tg_decide(p, &f, NULL, &d);
    assert_int_equal(d.status, 200);
    assert_string_equal(d.prices, "270000 270000 1100000 0 0");
    assert_false(d.stream_usage);       /* not a stream */

    /* ds is passive: never asked for a stream's usage */
    f.stream = true;
    tg_decide(p, &f, NULL, &d);
    assert_false(d.stream_usage);

    /* local is active: asked; qwen has no price */
    f.model.data = "qwen";
    f.model.len = 4;
    tg_decide(p, &f, NULL, &d);
    assert_int_equal(d.status, 200);
    assert_true(d.stream_usage);
    assert_null(d.prices);

    /* only chat streams */
    f.endpoint = TG_EP_SPEECH;
    f.model.data = "tts";
    f.model.len = 3;
    tg_decide(p, &f, NULL, &d);
    assert_int_equal(d.status, 200);
    assert_false(d.stream_usage);

    tg_policy_free(p);
}


/* the cost: exact, as the module's ngx_tailgate_meter_cost() */

static uint64_t
cost_of(const tg_price *p, uint32_t in, uint32_t cached, uint32_t out,
    uint32_t audio_ms, uint32_t chars)
{
    uint64_t        c;
    tg_price_usage  u = { in, cached, out, audio_ms, chars };

    assert_int_equal(tg_price_cost(p, &u, &c), 0);

    return c;
}


static void
test_cost(void **unused)
{
    uint64_t        c;
    tg_price        p;
    tg_price_usage  u;

    (void) unused;

    /* $0.27 / $0.07 / $1.10 per million tokens */
    p = (tg_price) { 270000, 70000, 1100000, 0, 0 };

    assert_int_equal(cost_of(&p, 0, 0, 0, 0, 0), 0);

    /* 1000 in, 400 of them cached, 500 out */
    assert_int_equal(cost_of(&p, 1000, 400, 500, 0, 0),
                     600ULL * 270000 + 400ULL * 70000 + 500ULL * 1100000);

    /* in currency: 0.000162 + 0.000028 + 0.00055 = 0.00074 */
    {
        char  t[TG_MONEY_TEXT_MAX];
        tg_money_text(cost_of(&p, 1000, 400, 500, 0, 0), t, sizeof(t));
        assert_string_equal(t, "0.00074");
    }

    /* cached beyond the input counts as no more than the input */
    assert_int_equal(cost_of(&p, 100, 500, 0, 0, 0), 100ULL * 70000);

    /* reasoning tokens are output tokens: no price of their own */

    /* audio: $0.006 a minute; a minute is 6000 micro-units */
    p = (tg_price) { 0, 0, 0, 6000, 0 };
    assert_int_equal(cost_of(&p, 0, 0, 0, 60000, 0), 6000000000ULL);

    /* 1 ms at 1 micro-unit a minute: 16.67 pico-units, rounded: 17 */
    p.audio_minute = 1;
    assert_int_equal(cost_of(&p, 0, 0, 0, 1, 0), 17);
    /* 2 ms: 33.33 -> 33; 3 ms: 50 exactly */
    assert_int_equal(cost_of(&p, 0, 0, 0, 2, 0), 33);
    assert_int_equal(cost_of(&p, 0, 0, 0, 3, 0), 50);
    /* 0.5 rounds up: 1 ms at 3 micro a minute is 50 pico exactly; and
       1 ms at 0.03 ... 9 ms at 1 micro: 150 */
    assert_int_equal(cost_of(&p, 0, 0, 0, 9, 0), 150);

    /* speech: $15 per million characters = 15 micro-units a character */
    p = (tg_price) { 0, 0, 0, 0, 15000000 };
    assert_int_equal(cost_of(&p, 0, 0, 0, 0, 1234), 1234ULL * 15000000);

    /* every part at once */
    p = (tg_price) { 3, 2, 5, 7, 11 };
    assert_int_equal(cost_of(&p, 10, 4, 6, 5, 8),
                     6 * 3 + 4 * 2 + 6 * 5 + 8 * 11 + (5 * 7 * 100 + 3) / 6);

    /* the bounds: the largest counts at the largest prices overflow */
    p = (tg_price) { TG_PRICE_MICRO_MAX, TG_PRICE_MICRO_MAX,
                     TG_PRICE_MICRO_MAX, TG_PRICE_MICRO_MAX,
                     TG_PRICE_MICRO_MAX };
    u = (tg_price_usage) { UINT32_MAX, 0, UINT32_MAX, UINT32_MAX,
                           UINT32_MAX };
    assert_int_equal(tg_price_cost(&p, &u, &c), -1);
    assert_true(c == UINT64_MAX);

    /*
     * The edge: UINT64_MAX is UINT32_MAX * 4294967297, so that many
     * tokens at that price is the most a cost can be, and one micro-unit
     * more overflows.
     */
    p = (tg_price) { 4294967297ULL, 0, 0, 0, 0 };
    u = (tg_price_usage) { UINT32_MAX, 0, 0, 0, 0 };
    assert_int_equal(tg_price_cost(&p, &u, &c), 0);
    assert_true(c == UINT64_MAX);

    p.input++;
    assert_int_equal(tg_price_cost(&p, &u, &c), -1);
    assert_true(c == UINT64_MAX);

    /* the audio term overflows on its own (ms * price * 100) */
    p = (tg_price) { 0, 0, 0, TG_PRICE_MICRO_MAX, 0 };
    u = (tg_price_usage) { 0, 0, 0, UINT32_MAX, 0 };
    assert_int_equal(tg_price_cost(&p, &u, &c), -1);
}


/* the module's arithmetic, as ngx_tailgate_meter.c writes it */

static uint64_t
module_cost(const tg_price *p, uint64_t in, uint64_t cached, uint64_t out,
    uint64_t audio_ms, uint64_t chars)
{
    return (in - cached) * p->input + cached * p->cached_input
           + out * p->output + chars * p->characters
           + (audio_ms * p->audio_minute * 100 + 3) / 6;
}


static void
test_cost_as_the_module(void **unused)
{
    int             i;
    uint32_t        in, cached;
    uint64_t        c;
    tg_price        p;
    tg_price_usage  u;

    (void) unused;

    srand(13);

    for (i = 0; i < 100000; i++) {
        p.input = (uint64_t) rand() % 100000000;
        p.cached_input = (uint64_t) rand() % 100000000;
        p.output = (uint64_t) rand() % 100000000;
        p.audio_minute = (uint64_t) rand() % 1000000;
        p.characters = (uint64_t) rand() % 100000000;

        in = (uint32_t) rand() % 2000000;
        cached = (uint32_t) rand() % (in + 1);

        u = (tg_price_usage) { in, cached, (uint32_t) rand() % 2000000,
                               (uint32_t) rand() % 7200000,
                               (uint32_t) rand() % 100000 };

        assert_int_equal(tg_price_cost(&p, &u, &c), 0);
        assert_true(c == module_cost(&p, u.input, u.cached, u.output,
                                     u.audio_ms, u.characters));
    }
}


static void
test_money(void **unused)
{
    char      t[TG_MONEY_TEXT_MAX];
    uint64_t  v;

    (void) unused;

    tg_money_text(410000000, t, sizeof(t));
    assert_string_equal(t, "0.00041");
    tg_money_text(0, t, sizeof(t));
    assert_string_equal(t, "0");
    tg_money_text(1000000000000ULL, t, sizeof(t));
    assert_string_equal(t, "1");
    tg_money_text(1, t, sizeof(t));
    assert_string_equal(t, "0.000000000001");
    tg_money_text(UINT64_MAX, t, sizeof(t));
    assert_string_equal(t, "18446744.073709551615");

    assert_int_equal(tg_money_parse("0.00041", 7, &v), 0);
    assert_true(v == 410000000);
    assert_int_equal(tg_money_parse("12", 2, &v), 0);
    assert_true(v == 12000000000000ULL);
    assert_int_equal(tg_money_parse("18446744.073709551615", 21, &v), 0);
    assert_true(v == UINT64_MAX);

    assert_int_equal(tg_money_parse("18446744.073709551616", 21, &v), -1);
    assert_int_equal(tg_money_parse("0.0000000000001", 15, &v), -1);
    assert_int_equal(tg_money_parse("", 0, &v), -1);
    assert_int_equal(tg_money_parse(".5", 2, &v), -1);
    assert_int_equal(tg_money_parse("5.", 2, &v), -1);
    assert_int_equal(tg_money_parse("1.2.3", 5, &v), -1);
    assert_int_equal(tg_money_parse("-1", 2, &v), -1);
    assert_int_equal(tg_money_parse("1e3", 3, &v), -1);
}


/* REPORT fields */

static void
test_report_fields(void **unused)
{
    uint8_t     four[4] = { 0, 0, 1, 0 }, one = 1;
    tg_field    f;
    tg_report   r;

    (void) unused;

    memset(&r, 0, sizeof(r));

    f = (tg_field) { TG_F_CACHED_TOKENS, 4, four };
    assert_int_equal(tg_usage_field(&r, &f), 1);
    assert_int_equal(r.cached_tokens, 256);
    assert_true(r.tokens);

    f = (tg_field) { TG_F_TTFB_MS, 4, four };
    assert_int_equal(tg_usage_field(&r, &f), 1);
    assert_true(r.has_ttfb);

    f = (tg_field) { TG_F_ESTIMATED, 1, &one };
    assert_int_equal(tg_usage_field(&r, &f), 1);
    assert_true(r.estimated);

    f = (tg_field) { TG_F_REQUEST_ID, 3, (const uint8_t *) "abc" };
    assert_int_equal(tg_usage_field(&r, &f), 1);
    assert_int_equal(r.request_id.len, 3);

    /* a number of the wrong size, a flag of the wrong size */
    f = (tg_field) { TG_F_PROMPT_TOKENS, 2, four };
    assert_int_equal(tg_usage_field(&r, &f), -1);
    f = (tg_field) { TG_F_ESTIMATED, 4, four };
    assert_int_equal(tg_usage_field(&r, &f), -1);

    /* not a usage field */
    f = (tg_field) { TG_F_LEASE, 4, four };
    assert_int_equal(tg_usage_field(&r, &f), 0);
}


static void
test_report_cost(void **unused)
{
    tg_policy  *p;
    tg_report   r;

    (void) unused;

    p = tg_test_policy(TG_WITH_USAGE("'currency': 'USD', 'prices': {"
        "'ds': { 'deepseek-chat': { 'input': 0.27, 'cached_input': 0.07,"
        "'output': 1.1 } } }"));

    memset(&r, 0, sizeof(r));
    r.provider = "ds";
    r.provider_model = (struct tg_report_str) { "deepseek-chat", 13 };
    r.prompt_tokens = 1000;
    r.cached_tokens = 400;
    r.completion_tokens = 500;
    r.reasoning_tokens = 200;

    tg_usage_cost(p, &r);
    assert_non_null(r.price);
    assert_true(r.cost == 740000000);

    /* a model without a price: no cost, and said so */
    r.provider_model = (struct tg_report_str) { "deepseek-r1", 11 };
    tg_usage_cost(p, &r);
    assert_null(r.price);
    assert_true(r.cost == 0);

    /* a provider the policy does not have; none at all */
    r.provider = "gone";
    tg_usage_cost(p, &r);
    assert_null(r.price);
    r.provider = NULL;
    tg_usage_cost(p, &r);
    assert_null(r.price);

    tg_policy_free(p);
}


/* the record line */

static tg_usage_conf  conf = {
    .currency = "USD", .price_version = "2026-12", .max_clients = 2
};

static tg_price_entry  entry;


static tg_report
a_report(void)
{
    tg_report  r;

    memset(&r, 0, sizeof(r));
    r.count = 1;
    r.outcome = TG_OUTCOME_OK;
    r.http_status = 200;
    r.provider = "ds";
    r.route = "smart";
    r.request_id = (struct tg_report_str) { "0123abcd", 8 };
    r.client = (struct tg_report_str) { "alice", 5 };
    r.endpoint = (struct tg_report_str) { "chat", 4 };
    r.provider_model = (struct tg_report_str) { "deepseek-chat", 13 };
    r.response_model = (struct tg_report_str) { "deepseek-chat-v3", 16 };
    r.stream = true;
    r.attempt = 2;
    r.prompt_tokens = 1000;
    r.cached_tokens = 400;
    r.completion_tokens = 500;
    r.reasoning_tokens = 200;
    r.total_tokens = 1500;
    r.tokens = true;
    r.has_ttfb = true;
    r.ttfb_ms = 12;
    r.total_ms = 340;
    r.price = &entry;
    r.cost = 740000000;

    return r;
}


static void
test_line(void **unused)
{
    char         buf[TG_USAGE_LINE_MAX];
    size_t       n;
    cJSON       *j, *t;
    tg_report    r;

    (void) unused;

    r = a_report();

    /* 2026-12-02T20:00:00.250Z */
    n = tg_usage_line(&r, &conf, 1796241600.25, buf, sizeof(buf));
    assert_true(n > 0);
    assert_int_equal(buf[n - 1], '\n');
    assert_null(memchr(buf, '\n', n - 1));

    j = cJSON_ParseWithLength(buf, n);
    assert_non_null(j);

    assert_string_equal(cJSON_GetObjectItem(j, "time")->valuestring,
                        "2026-12-02T20:00:00.250Z");
    assert_string_equal(cJSON_GetObjectItem(j, "request_id")->valuestring,
                        "0123abcd");
    assert_string_equal(cJSON_GetObjectItem(j, "client")->valuestring,
                        "alice");
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(j, "tenant")));
    assert_string_equal(cJSON_GetObjectItem(j, "route")->valuestring,
                        "smart");
    assert_string_equal(cJSON_GetObjectItem(j, "provider")->valuestring,
                        "ds");
    assert_string_equal(cJSON_GetObjectItem(j, "provider_model")->valuestring,
                        "deepseek-chat");
    assert_string_equal(cJSON_GetObjectItem(j, "response_model")->valuestring,
                        "deepseek-chat-v3");
    assert_string_equal(cJSON_GetObjectItem(j, "endpoint")->valuestring,
                        "chat");
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(j, "stream")));
    assert_string_equal(cJSON_GetObjectItem(j, "outcome")->valuestring, "ok");
    assert_int_equal(cJSON_GetObjectItem(j, "status")->valueint, 200);
    assert_int_equal(cJSON_GetObjectItem(j, "attempt")->valueint, 2);

    t = cJSON_GetObjectItem(j, "tokens");
    assert_int_equal(cJSON_GetObjectItem(t, "input")->valueint, 1000);
    assert_int_equal(cJSON_GetObjectItem(t, "cached")->valueint, 400);
    assert_int_equal(cJSON_GetObjectItem(t, "output")->valueint, 500);
    assert_int_equal(cJSON_GetObjectItem(t, "reasoning")->valueint, 200);
    assert_int_equal(cJSON_GetObjectItem(t, "total")->valueint, 1500);

    assert_true(cJSON_IsFalse(cJSON_GetObjectItem(j, "estimated")));
    assert_string_equal(cJSON_GetObjectItem(j, "cost")->valuestring,
                        "0.00074");
    assert_string_equal(cJSON_GetObjectItem(j, "currency")->valuestring,
                        "USD");
    assert_string_equal(cJSON_GetObjectItem(j, "price_version")->valuestring,
                        "2026-12");
    assert_int_equal(cJSON_GetObjectItem(j, "ttfb_ms")->valueint, 12);
    assert_int_equal(cJSON_GetObjectItem(j, "total_ms")->valueint, 340);
    assert_null(cJSON_GetObjectItem(j, "audio_ms"));

    cJSON_Delete(j);

    /* a failed attempt: no tokens, no status, no ttfb, no price */
    r = a_report();
    r.outcome = TG_OUTCOME_CONNECT_ERROR;
    r.http_status = 0;
    r.has_ttfb = false;
    r.prompt_tokens = r.cached_tokens = r.completion_tokens = 0;
    r.reasoning_tokens = r.total_tokens = 0;
    r.price = NULL;
    r.cost = 0;
    r.response_model = (struct tg_report_str) { NULL, 0 };
    r.audio_ms = 61000;
    r.characters = 7;
    r.estimated = true;

    n = tg_usage_line(&r, &conf, 0, buf, sizeof(buf));
    j = cJSON_ParseWithLength(buf, n);
    assert_non_null(j);
    assert_string_equal(cJSON_GetObjectItem(j, "time")->valuestring,
                        "1970-01-01T00:00:00.000Z");
    assert_string_equal(cJSON_GetObjectItem(j, "outcome")->valuestring,
                        "connect_error");
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(j, "status")));
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(j, "ttfb_ms")));
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(j, "cost")));
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(j, "currency")));
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(j, "response_model")));
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(j, "estimated")));
    assert_int_equal(cJSON_GetObjectItem(j, "audio_ms")->valueint, 61000);
    assert_int_equal(cJSON_GetObjectItem(j, "characters")->valueint, 7);
    cJSON_Delete(j);

    /* too small a buffer: nothing, never a cut line */
    r = a_report();
    assert_int_equal(tg_usage_line(&r, &conf, 0, buf, 100), 0);
    assert_int_equal(tg_usage_line(&r, &conf, 0, buf, 0), 0);
}


static void
test_line_escapes(void **unused)
{
    char         buf[TG_USAGE_LINE_MAX];
    size_t       n;
    cJSON       *j;
    tg_report    r;
    static const char  odd[] = "a\"b\\c\n\x01\x7f\xc3\xa9\xff\xe2\x82";

    (void) unused;

    r = a_report();
    r.client = (struct tg_report_str) { odd, sizeof(odd) - 1 };
    r.tenant = (struct tg_report_str) { "", 0 };

    n = tg_usage_line(&r, &conf, 1, buf, sizeof(buf));
    assert_true(n > 0);
    assert_null(memchr(buf, '\n', n - 1));

    j = cJSON_ParseWithLength(buf, n);
    assert_non_null(j);
    /* the valid é kept, the stray bytes each U+FFFD */
    assert_string_equal(cJSON_GetObjectItem(j, "client")->valuestring,
                        "a\"b\\c\n\x01\x7f\xc3\xa9\xef\xbf\xbd\xef\xbf\xbd"
                        "\xef\xbf\xbd");
    assert_string_equal(cJSON_GetObjectItem(j, "tenant")->valuestring, "");
    cJSON_Delete(j);

    /* a client of 6000 bytes of quotes does not fit: no line */
    {
        static char  big[6000];
        memset(big, '"', sizeof(big));
        r.client = (struct tg_report_str) { big, sizeof(big) };
        assert_int_equal(tg_usage_line(&r, &conf, 1, buf, sizeof(buf)), 0);
    }
}


/* the line read back, as policyd usage does */

static void
test_row(void **unused)
{
    char           buf[TG_USAGE_LINE_MAX];
    size_t         n;
    tg_report      r;
    tg_usage_row   row;

    (void) unused;

    r = a_report();
    r.tenant = (struct tg_report_str) { "acme", 4 };
    r.estimated = true;

    n = tg_usage_line(&r, &conf, 1796241600.25, buf, sizeof(buf));
    assert_int_equal(tg_usage_row_parse(buf, n - 1, &row), 0);

    assert_true(row.time_ms == 1796241600250LL);
    assert_string_equal(row.day, "2026-12-02");
    assert_string_equal(row.client, "alice");
    assert_string_equal(row.tenant, "acme");
    assert_string_equal(row.route, "smart");
    assert_string_equal(row.provider, "ds");
    assert_string_equal(row.model, "deepseek-chat");
    assert_string_equal(row.currency, "USD");
    assert_true(row.input == 1000 && row.cached == 400 && row.output == 500
                && row.reasoning == 200);
    assert_true(row.estimated);
    assert_true(row.priced);
    assert_true(row.cost == 740000000);

    /* no price: not priced */
    r.price = NULL;
    n = tg_usage_line(&r, &conf, 1, buf, sizeof(buf));
    assert_int_equal(tg_usage_row_parse(buf, n, &row), 0);
    assert_false(row.priced);

    /* lines that are not records */
    assert_int_equal(tg_usage_row_parse("", 0, &row), -1);
    assert_int_equal(tg_usage_row_parse("[]", 2, &row), -1);
    assert_int_equal(tg_usage_row_parse("{\"time\":\"2026-12-02T20:00",
                                        25, &row), -1);
#define ROW(s)  tg_usage_row_parse(s, sizeof(s) - 1, &row)
    assert_int_equal(ROW("{\"tokens\":{}}"), -1);
    assert_int_equal(ROW("{\"time\":\"2026-12-02T20:00:00Z\"}"), -1);
    assert_int_equal(ROW("{\"time\":\"2026-12-02T20:00:00Z\",\"tokens\":{}}"),
                     0);
    assert_int_equal(ROW("{\"time\":5,\"tokens\":{}}"), -1);
    assert_int_equal(ROW("{\"time\":\"2026-12-02T20:00:00Z\","
                         "\"tokens\":{\"input\":-1}}"), -1);
    assert_int_equal(ROW("{\"time\":\"2026-12-02T20:00:00Z\","
                         "\"tokens\":{\"input\":1.5}}"), -1);
    assert_int_equal(ROW("{\"time\":\"2026-12-02T20:00:00Z\","
                         "\"tokens\":{\"input\":\"1\"}}"), -1);
    assert_int_equal(ROW("{\"time\":\"2026-12-02T20:00:00Z\","
                         "\"tokens\":{\"input\":1e300}}"), -1);
    assert_int_equal(ROW("{\"time\":\"2026-12-02T20:00:00Z\","
                         "\"tokens\":{},\"cost\":0.1}"), -1);
    assert_int_equal(ROW("{\"time\":\"2026-12-02T20:00:00Z\","
                         "\"tokens\":{},\"cost\":\"-1\"}"), -1);
    assert_int_equal(ROW("{\"time\":\"2026-12-02T20:00:00Z\","
                         "\"tokens\":{},\"client\":7}"), -1);
    assert_int_equal(ROW("{\"time\":\"2026-12-02T20:00:00Z\","
                         "\"tokens\":{},\"estimated\":1}"), -1);
#undef ROW
}


static void
test_times(void **unused)
{
    int64_t  ms;

    (void) unused;

#define T(s)  tg_usage_time_parse(s, strlen(s), &ms)
    assert_int_equal(T("2026-12-02T20:00:00Z"), 0);
    assert_true(ms == 1796241600000LL);
    assert_int_equal(T("2026-12-02t20:00:00.5z"), 0);
    assert_true(ms == 1796241600500LL);
    assert_int_equal(T("2026-12-02 21:00:00.123456+01:00"), 0);
    assert_true(ms == 1796241600123LL);
    assert_int_equal(T("2026-12-02T15:30:00-04:30"), 0);
    assert_true(ms == 1796241600000LL);
    assert_int_equal(T("2026-12-02"), 0);
    assert_true(ms == 1796169600000LL);
    assert_int_equal(T("1796241600"), 0);
    assert_true(ms == 1796241600000LL);
    assert_int_equal(T("@0"), 0);
    assert_true(ms == 0);

    assert_int_equal(T(""), -1);
    assert_int_equal(T("@"), -1);
    assert_int_equal(T("2026-12-02T20:00:00"), -1);      /* no offset */
    assert_int_equal(T("2026-02-30"), -1);
    assert_int_equal(T("2026-13-01"), -1);
    assert_int_equal(T("2026-12-02T24:00:00Z"), -1);
    assert_int_equal(T("2026-12-02T20:00:00.Z"), -1);
    assert_int_equal(T("2026-12-02T20:00:00+0100"), -1);
    assert_int_equal(T("2026-12-02T20:00:00Zjunk"), -1);
    assert_int_equal(T("yesterday"), -1);
    assert_int_equal(T("-5"), -1);
    assert_int_equal(T("9999999999999"), -1);
    assert_int_equal(T("1970-01-01T00:00:00+01:00"), -1);  /* 1969 */
    assert_int_equal(T("1970-01-01T01:00:00+01:00"), 0);
    assert_true(ms == 0);
    assert_int_equal(T("1970-01-01T00:00:00-01:00"), 0);
    assert_true(ms == 3600000);
#undef T
}


/* tallies: bounded names */

static void
test_names_bound(void **unused)
{
    char             name[16];
    int              i;
    tg_report        r;
    tg_usage_names   t;
    tg_usage_tally  *a, *b, *c, *d;

    (void) unused;

    tg_usage_names_init(&t);
    r = a_report();

    a = tg_usage_names_get(&t, "alice", 5, 2);
    b = tg_usage_names_get(&t, "bob", 3, 2);
    c = tg_usage_names_get(&t, "carol", 5, 2);
    d = tg_usage_names_get(&t, "alice", 5, 2);

    assert_ptr_equal(a, d);
    assert_ptr_not_equal(a, b);
    assert_ptr_equal(c, &t.other);
    assert_int_equal(t.n, 2);
    assert_int_equal(t.folded, 1);

    tg_usage_tally_add(a, &r);
    tg_usage_tally_add(a, &r);
    assert_int_equal(a->requests, 2);
    assert_int_equal(a->input, 2000);
    assert_int_equal(a->cached, 800);
    assert_int_equal(a->reasoning, 400);
    assert_true(a->cost == 2 * 740000000ULL);

    /* a sum past 64 bits stays at the most */
    r.cost = UINT64_MAX - 1;
    tg_usage_tally_add(a, &r);
    assert_true(a->cost == UINT64_MAX);

    tg_usage_names_free(&t);

    /* many names: the table grows and finds every one again */
    tg_usage_names_init(&t);

    for (i = 0; i < 3000; i++) {
        snprintf(name, sizeof(name), "c%d", i);
        tg_usage_names_get(&t, name, strlen(name), 10000)->requests = i;
    }

    for (i = 0; i < 3000; i++) {
        snprintf(name, sizeof(name), "c%d", i);
        assert_int_equal(tg_usage_names_get(&t, name, strlen(name),
                                            10000)->requests, i);
    }

    assert_int_equal(t.folded, 0);

    /* max 0: everyone is other */
    assert_ptr_equal(tg_usage_names_get(&t, "zed", 3, 0), &t.other);

    tg_usage_names_free(&t);
}


/* the log's writer */

static size_t
count_lines(const char *path)
{
    int      ch;
    FILE    *f;
    size_t   n = 0;

    f = fopen(path, "r");
    if (f == NULL) {
        return 0;
    }

    while ((ch = fgetc(f)) != EOF) {
        n += ch == '\n';
    }

    fclose(f);

    return n;
}


static void
test_log_writes_everything(void **unused)
{
    char                 path[] = "/tmp/tg-usage-XXXXXX", line[64];
    int                  fd, i, n;
    tg_usage_log        *l;
    tg_usage_log_stats   st;

    (void) unused;

    fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);

    l = tg_usage_log_open(path, 1024 * 1024);
    assert_non_null(l);

    for (i = 0; i < 20000; i++) {
        n = snprintf(line, sizeof(line), "{\"n\":%d}\n", i);
        assert_int_equal(tg_usage_log_write(l, line, (size_t) n), 0);
    }

    /* close writes what waits, however much */
    tg_usage_log_close_stats(l, &st);

    assert_int_equal(st.records, 20000);
    assert_int_equal(st.written, 20000);
    assert_int_equal(st.dropped, 0);
    assert_int_equal(count_lines(path), 20000);

    unlink(path);

    /* a file it cannot open: NULL, errno */
    errno = 0;
    assert_null(tg_usage_log_open("/nonexistent-dir/usage.jsonl", 4096));
    assert_int_equal(errno, ENOENT);
}


static void
test_log_flush_and_reopen(void **unused)
{
    char                 dir[] = "/tmp/tg-usage-XXXXXX", path[128], old[160];
    tg_usage_log        *l;
    tg_usage_log_stats   st;

    (void) unused;

    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/usage.jsonl", dir);
    snprintf(old, sizeof(old), "%s/usage.jsonl.1", dir);

    l = tg_usage_log_open(path, 4096);
    assert_non_null(l);

    assert_int_equal(tg_usage_log_write(l, "{\"a\":1}\n", 8), 0);
    assert_int_equal(tg_usage_log_write(l, "{\"a\":2}\n", 8), 0);

    /* flushed: on disk when flush returns */
    tg_usage_log_flush(l);
    assert_int_equal(count_lines(path), 2);

    /* logrotate: moved away, then SIGUSR1 */
    assert_int_equal(rename(path, old), 0);
    assert_int_equal(tg_usage_log_write(l, "{\"a\":3}\n", 8), 0);
    tg_usage_log_reopen(l);
    tg_usage_log_flush(l);
    assert_int_equal(tg_usage_log_write(l, "{\"a\":4}\n", 8), 0);

    tg_usage_log_close_stats(l, &st);

    /* what came before the reopen went to the old file */
    assert_int_equal(count_lines(old) + count_lines(path), 4);
    assert_true(count_lines(path) >= 1);
    assert_int_equal(st.reopened, 1);
    assert_int_equal(st.written, 4);

    unlink(old);
    unlink(path);
    rmdir(dir);
}


/* a disk that stops: the buffer fills, lines are dropped, nobody waits */

static void
test_log_full_drops(void **unused)
{
    char                 dir[] = "/tmp/tg-usage-XXXXXX", path[128];
    char                 line[200], sink[65536];
    int                  rfd, i, dropped, status;
    pid_t                pid;
    tg_usage_log        *l;
    tg_usage_log_stats   st;

    (void) unused;

    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/fifo", dir);
    assert_int_equal(mkfifo(path, 0600), 0);

    /* a reader that reads nothing yet: the pipe fills, the writer waits */
    rfd = open(path, O_RDONLY | O_NONBLOCK);
    assert_true(rfd >= 0);

    l = tg_usage_log_open(path, 4096);
    assert_non_null(l);

    memset(line, 'x', sizeof(line));
    line[sizeof(line) - 1] = '\n';

    /* 1 MB into a 64 KB pipe and a 4 KB buffer: this returns, dropping */

    dropped = 0;
    for (i = 0; i < 5000; i++) {
        dropped += tg_usage_log_write(l, line, sizeof(line)) != 0;
    }

    assert_true(dropped > 0);

    tg_usage_log_stats_get(l, &st);
    assert_int_equal(st.dropped, (uint64_t) dropped);
    assert_int_equal(st.records, 5000);

    /* now a reader reads all: the writer writes what it kept, and ends */

    pid = fork();
    assert_true(pid >= 0);

    if (pid == 0) {
        size_t   want, got;
        ssize_t  n;

        /* the child holds the writer's end too: it reads what was kept */
        want = (size_t) (5000 - dropped) * sizeof(line);
        fcntl(rfd, F_SETFL, 0);

        for (got = 0; got < want; got += (size_t) n) {
            n = read(rfd, sink, sizeof(sink));
            if (n <= 0) {
                _exit(1);
            }
        }

        _exit(got == want ? 0 : 1);
    }

    close(rfd);
    tg_usage_log_close_stats(l, &st);

    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_int_equal(st.written + st.dropped, 5000);
    assert_int_equal(st.written, 5000 - dropped);

    unlink(path);
    rmdir(dir);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_price_micro),
        cmocka_unit_test(test_prices_loaded),
        cmocka_unit_test(test_price_version_follows_prices),
        cmocka_unit_test(test_usage_refused),
        cmocka_unit_test(test_decision_prices),
        cmocka_unit_test(test_cost),
        cmocka_unit_test(test_cost_as_the_module),
        cmocka_unit_test(test_money),
        cmocka_unit_test(test_report_fields),
        cmocka_unit_test(test_report_cost),
        cmocka_unit_test(test_line),
        cmocka_unit_test(test_line_escapes),
        cmocka_unit_test(test_row),
        cmocka_unit_test(test_times),
        cmocka_unit_test(test_names_bound),
        cmocka_unit_test(test_log_writes_everything),
        cmocka_unit_test(test_log_flush_and_reopen),
        cmocka_unit_test(test_log_full_drops),
    };

    return cmocka_run_group_tests_name("usage", tests, NULL, NULL);
}
