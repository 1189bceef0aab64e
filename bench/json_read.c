
/*
 * Copyright (C) The Tailgate authors
 *
 * make bench: the JSON scanner alone (ngx_tailgate_json_scan(), what the
 * module runs over every request body) on a 1 MB chat body with its model
 * at the end - the whole body read - in bytes per second of CPU time, the
 * best of five runs.  bench/run.pl builds it twice: as the module is built
 * (SSE2 on x86-64) and with NGX_TAILGATE_SCALAR.
 *
 *   json_read      prints "json_scan NS_PER_BODY BYTES"
 */


#include "fuzz_ngx.h"
#include "ngx_tailgate_scan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>


#define BENCH_BODY    (1024 * 1024)
#define BENCH_ROUNDS  200
#define BENCH_RUNS    5


int
main(void)
{
    u_char                     *body, *p;
    size_t                      len, i;
    double                      ns, best;
    ngx_int_t                   rc;
    ngx_uint_t                  run, k;
    ngx_pool_t                 *pool;
    struct timespec             t0, t1;
    ngx_tailgate_facts_t        facts;
    ngx_tailgate_scan_error_t   error;

    static const char  head[] =
        "{\"messages\":[{\"role\":\"system\",\"content\":\"";
    static const char  tail[] = "\"}],\"stream\":true,\"model\":\"bench\"}";

    fuzz_ngx_init();

    body = malloc(BENCH_BODY + 256);
    if (body == NULL) {
        return 1;
    }

    /* text with a line break every 80 bytes, as agents' prompts have */

    p = ngx_cpymem(body, head, sizeof(head) - 1);

    for (i = 0; i < BENCH_BODY - 128; i++) {
        if (i % 80 == 79) {
            *p++ = '\\';
            *p++ = 'n';
            i++;
            continue;
        }

        *p++ = 'a' + i % 26;
    }

    p = ngx_cpymem(p, tail, sizeof(tail) - 1);
    len = p - body;

    best = 0;

    for (run = 0; run < BENCH_RUNS; run++) {
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t0);

        for (k = 0; k < BENCH_ROUNDS; k++) {
            pool = fuzz_ngx_pool();
            ngx_memzero(&facts, sizeof(facts));

            rc = ngx_tailgate_json_scan(pool, body, body + len, &facts,
                                        &error);
            if (rc != NGX_OK || facts.model.len != 5) {
                fprintf(stderr, "json_read: the body was not read\n");
                return 1;
            }

            ngx_destroy_pool(pool);
        }

        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t1);

        ns = ((t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec))
             / BENCH_ROUNDS;

        if (run == 0 || ns < best) {
            best = ns;
        }
    }

    printf("json_scan %.0f %zu\n", best, len);
    free(body);

    return 0;
}
