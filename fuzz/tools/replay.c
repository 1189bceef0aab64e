
/*
 * Copyright (C) The Tailgate authors
 *
 * A harness without libFuzzer: each file named on the command line is one
 * input, and "-strings" adds inputs made here - JSON bodies whose string
 * holds a byte that ends a run of plain bytes ('"', '\\', a control byte)
 * or one that does not, at every offset from 0 to 80, so that every lane
 * of the 16- and 8-byte scans and every tail meets each kind of byte.
 * With the JSON harness it prints, for each made input, what the scanner
 * says of it ("accept MODEL" or "refuse"), the harness's checks run too.
 * t/22-json-scalar.t builds it twice, SIMD and NGX_TAILGATE_SCALAR, under
 * the sanitizers, and holds both to what each body is.
 *
 *   replay [-strings] [FILE...]
 */


#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_ngx.h"
#include "ngx_tailgate_scan.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));


static const unsigned char  replay_bytes[] = {
    '"', '\\', '\n', '\r', '\t', 0x00, 0x01, 0x1f, 0x20, 0x7f, 0x80, 0xff,
    'a'
};


static int
replay_file(const char *name)
{
    long    size;
    FILE   *f;
    char   *buf;

    f = fopen(name, "rb");
    if (f == NULL) {
        perror(name);
        return -1;
    }

    fseek(f, 0, SEEK_END);
    size = ftell(f);
    fseek(f, 0, SEEK_SET);

    buf = malloc(size ? size : 1);
    if (buf == NULL || fread(buf, 1, size, f) != (size_t) size) {
        fprintf(stderr, "%s: cannot read\n", name);
        fclose(f);
        free(buf);
        return -1;
    }

    fclose(f);

    /* a copy of its own size: the sanitizers see a read past its end */
    LLVMFuzzerTestOneInput((uint8_t *) buf, size);
    free(buf);

    return 0;
}


/* what the scanner says of a body, a line */

static void
replay_scan(u_char *body, size_t len)
{
    size_t                     i;
    ngx_int_t                  rc;
    ngx_pool_t                *pool;
    ngx_tailgate_facts_t       facts;
    ngx_tailgate_scan_error_t  error;

    pool = fuzz_ngx_pool();
    ngx_memzero(&facts, sizeof(facts));

    rc = ngx_tailgate_json_scan(pool, body, body + len, &facts, &error);

    if (rc == NGX_OK) {
        /* in hex: a model may hold any byte */
        printf("accept ");

        for (i = 0; i < facts.model.len; i++) {
            printf("%02x", facts.model.data[i]);
        }

        printf("\n");

    } else {
        printf("refuse\n");
    }

    ngx_destroy_pool(pool);
}


static void
replay_strings(void)
{
    char      *buf;
    size_t     i, off, len, where, n;
    const char *head[] = {
        "{\"model\":\"", "{\"messages\":[{\"role\":\"user\",\"content\":\""
    };
    const char *tail[] = {
        "\",\"messages\":[]}", "\"}],\"model\":\"m\"}"
    };

    buf = malloc(4096);
    if (buf == NULL) {
        abort();
    }

    n = 0;

    for (where = 0; where < 2; where++) {
        for (i = 0; i < sizeof(replay_bytes); i++) {
            for (off = 0; off <= 80; off++) {
                len = strlen(head[where]);
                memcpy(buf, head[where], len);
                memset(buf + len, 'x', off);
                len += off;
                buf[len++] = (char) replay_bytes[i];

                /* a backslash escapes something; then more plain bytes */
                if (replay_bytes[i] == '\\') {
                    buf[len++] = 'n';
                }

                memset(buf + len, 'y', 37);
                len += 37;
                memcpy(buf + len, tail[where], strlen(tail[where]));
                len += strlen(tail[where]);

                LLVMFuzzerTestOneInput((uint8_t *) buf, len);
                replay_scan((u_char *) buf, len);
                n++;
            }
        }
    }

    free(buf);
    printf("replay: %zu made inputs\n", n);
}


int
main(int argc, char **argv)
{
    int  i, files;

    if (LLVMFuzzerInitialize) {
        LLVMFuzzerInitialize(&argc, &argv);
    }

    files = 0;

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-strings") == 0) {
            replay_strings();
            continue;
        }

        if (replay_file(argv[i]) != 0) {
            return 1;
        }

        files++;
    }

    printf("replay: %d files\n", files);

    return 0;
}
