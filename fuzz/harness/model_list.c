
/*
 * Copyright (C) The Tailgate authors
 *
 * A provider's model list (policyd/src/model_list.c), as policyd reads
 * the body of GET .../models for a pattern route with "models_from".  The
 * input is the body, exactly as the fetch gives it.  The keep callback
 * refuses every name ending in "x", as a route's "deny" would.
 *
 * Besides the sanitizers it checks: a read list has at most as many names
 * as the input has bytes, each 1 to max_len bytes without control bytes,
 * "*" or a final "x", none twice; a refused input has a reason and no
 * list.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model_list.h"

#include "fuzz_check.h"


#define FUZZ_MAX_LEN  40


static bool
fuzz_keep(const char *name, size_t len, void *data)
{
    (void) data;
    (void) name;

    return len == 0 || name[len - 1] != 'x';
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int           rc;
    char          why[128];
    size_t        i, j, k, n, len;
    const char  **names;

    why[0] = '\0';

    rc = tg_model_list_read((const char *) data, size, FUZZ_MAX_LEN,
                            fuzz_keep, NULL, &names, &n, why, sizeof(why));

    if (rc != 0) {
        FUZZ_CHECK(rc == -1 && names == NULL && n == 0 && why[0] != '\0');
        return 0;
    }

    FUZZ_CHECK(names != NULL && n <= size);

    for (i = 0; i < n; i++) {
        len = strlen(names[i]);
        FUZZ_CHECK(len >= 1 && len <= FUZZ_MAX_LEN);
        FUZZ_CHECK(names[i][len - 1] != 'x');

        for (k = 0; k < len; k++) {
            FUZZ_CHECK((unsigned char) names[i][k] >= 0x20
                       && names[i][k] != 0x7f && names[i][k] != '*');
        }

        /* the lists are small here: pairs are cheap enough */
        for (j = 0; j < i && j < 64; j++) {
            FUZZ_CHECK(strcmp(names[i], names[j]) != 0);
        }
    }

    free(names);

    return 0;
}
