
/*
 * Copyright (C) The Tailgate authors
 *
 * make bench: what reading usage costs a request, alone - the module's
 * reader (ngx_tailgate_usage.c) over the answers a request brings back:
 *
 *   json     the completion bench/run.pl's provider answers (a small one)
 *   stream   a chat stream of 20 events and the usage-only chunk, watched
 *            for that chunk as the gateway does when it asked for usage
 *   large    a 64 KB JSON answer, for bytes per second
 *
 * Each is read whole and in 1460-byte pieces (the reads a socket makes);
 * the figure is CPU time per answer, the best of five runs.
 *
 *   usage_read            prints "NAME NS_PER_ANSWER BYTES" lines
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ngx_tailgate_usage.h"


#define BENCH_PIECE  1460
#define BENCH_RUNS   5


static double bench_read(u_char *answer, size_t len, ngx_uint_t sse,
    size_t piece, ngx_uint_t rounds);
static size_t bench_stream(u_char *buf, size_t size);
static size_t bench_large(u_char *buf, size_t size);


static const char  bench_json[] =
    "{\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion\","
    "\"created\":1,\"model\":\"bench\",\"choices\":[{\"index\":0,\"message\":"
    "{\"role\":\"assistant\",\"content\":\"ok\"},\"finish_reason\":\"stop\"}],"
    "\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1,"
    "\"total_tokens\":2}}";


int
main(void)
{
    size_t   len;
    u_char  *buf;

    buf = malloc(128 * 1024);
    if (buf == NULL) {
        return 1;
    }

    len = sizeof(bench_json) - 1;
    memcpy(buf, bench_json, len);
    printf("json %.0f %zu\n", bench_read(buf, len, 0, len, 200000), len);
    printf("json_pieces %.0f %zu\n",
           bench_read(buf, len, 0, BENCH_PIECE, 200000), len);

    len = bench_stream(buf, 128 * 1024);
    printf("stream %.0f %zu\n",
           bench_read(buf, len, 1, BENCH_PIECE, 50000), len);

    len = bench_large(buf, 128 * 1024);
    printf("large %.0f %zu\n",
           bench_read(buf, len, 0, BENCH_PIECE, 2000), len);

    free(buf);

    return 0;
}


/* ns of CPU per answer, the best of BENCH_RUNS runs of rounds answers */

static double
bench_read(u_char *answer, size_t len, ngx_uint_t sse, size_t piece,
    ngx_uint_t rounds)
{
    u_char                       *p, *last, *end;
    double                        ns, best;
    uint64_t                      sink;
    ngx_uint_t                    run, i;
    struct timespec               t0, t1;
    ngx_tailgate_usage_t          u;
    ngx_tailgate_usage_signal_e   signal;

    best = 0;
    sink = 0;

    for (run = 0; run < BENCH_RUNS; run++) {
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t0);

        for (i = 0; i < rounds; i++) {
            ngx_tailgate_usage_init(&u, sse, 0, sse);

            end = answer + len;

            for (p = answer; p < end; /* void */) {
                last = (size_t) (end - p) > piece ? p + piece : end;

                while (p < last) {
                    p = ngx_tailgate_usage_scan(&u, p, last, &signal);
                }
            }

            sink += u.input + u.output + u.text_bytes;
        }

        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t1);

        ns = ((t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec))
             / rounds;

        if (run == 0 || ns < best) {
            best = ns;
        }
    }

    /* what was read must be used, or the reading may be left out */
    if (sink == 0) {
        fprintf(stderr, "usage_read: no usage read\n");
        exit(1);
    }

    return best;
}


static size_t
bench_stream(u_char *buf, size_t size)
{
    int         n;
    size_t      len;
    ngx_uint_t  i;

    len = 0;

    for (i = 0; i < 20; i++) {
        n = snprintf((char *) buf + len, size - len,
                     "data: {\"id\":\"chatcmpl-bench\",\"object\":"
                     "\"chat.completion.chunk\",\"created\":1,\"model\":"
                     "\"bench\",\"choices\":[{\"index\":0,\"delta\":"
                     "{\"content\":\"word%u \"},\"finish_reason\":null}]}"
                     "\n\n", (unsigned) i);
        len += n;
    }

    n = snprintf((char *) buf + len, size - len,
                 "data: {\"id\":\"chatcmpl-bench\",\"object\":"
                 "\"chat.completion.chunk\",\"created\":1,\"model\":\"bench\","
                 "\"choices\":[],\"usage\":{\"prompt_tokens\":9,"
                 "\"completion_tokens\":20,\"total_tokens\":29}}\n\n"
                 "data: [DONE]\n\n");

    return len + n;
}


/* an answer of about 64 KB of text, with its usage at the end */

static size_t
bench_large(u_char *buf, size_t size)
{
    size_t  len, text;

    len = snprintf((char *) buf, size,
                   "{\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion\","
                   "\"created\":1,\"model\":\"bench\",\"choices\":[{\"index\":"
                   "0,\"message\":{\"role\":\"assistant\",\"content\":\"");

    for (text = 0; text < 64 * 1024; text++) {
        buf[len++] = (text % 61 == 60) ? ' ' : 'a' + text % 26;
    }

    len += snprintf((char *) buf + len, size - len,
                    "\"},\"finish_reason\":\"stop\"}],\"usage\":"
                    "{\"prompt_tokens\":1,\"completion_tokens\":16000,"
                    "\"total_tokens\":16001}}");

    return len;
}
