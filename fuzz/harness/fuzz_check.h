
/*
 * Copyright (C) The Tailgate authors
 *
 * What every harness shares: a check that is a finding when it fails.
 */


#ifndef FUZZ_CHECK_H
#define FUZZ_CHECK_H


#include <stdio.h>
#include <stdlib.h>


/* an invariant of the code under test: abort(), so libFuzzer keeps it */
#define FUZZ_CHECK(cond)                                                      \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__,  \
                    #cond);                                                   \
            abort();                                                          \
        }                                                                     \
    } while (0)


#endif /* FUZZ_CHECK_H */
