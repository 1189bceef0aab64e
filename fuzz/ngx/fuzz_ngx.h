
/*
 * Copyright (C) The Tailgate authors
 *
 * The nginx the module's harnesses run in (ngx_shim.c): a clock that
 * stands still, a log that lets every call through, a pool per input.
 */


#ifndef FUZZ_NGX_H
#define FUZZ_NGX_H


#include <ngx_config.h>
#include <ngx_core.h>

#include "fuzz_check.h"


/* the harnesses' "now", 2023-11-14T22:13:20Z: inputs replay the same way */
#define FUZZ_NOW  1700000000


extern ngx_log_t  fuzz_ngx_log;


void fuzz_ngx_init(void);
void fuzz_ngx_set_time(time_t now);
ngx_pool_t *fuzz_ngx_pool(void);


#endif /* FUZZ_NGX_H */
