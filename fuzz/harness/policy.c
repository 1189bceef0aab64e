/*
 * The policy file, read as policyd reads it: tg_policy_parse() (policy_load.c
 * and the files it calls: policy_json.c, policy_provider.c, policy_route.c,
 * limits_policy.c).  The input is the file's text, comments and all.
 *
 * Besides the sanitizers it checks what the rest of policyd relies on in a
 * policy it accepted: every route step names a provider of the policy;
 * every limit profile the limits attach (default, tenants, routes) is one
 * of its profiles; names are found again by their look-ups; and a policy
 * that was refused has at least one error, each with its text.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "policy.h"
#include "limits_store.h"

#include "fuzz_check.h"


static const char *
fuzz_getenv(const char *name)
{
    if (strcmp(name, "FUZZ_HOST") == 0) {
        return "api.example.com";
    }

    return strcmp(name, "FUZZ_KEY") == 0 ? "sk-fuzz-0000" : NULL;
}


static int
fuzz_profile_ok(const tg_policy *p, const tg_limit_profile *lp)
{
    size_t  i;

    for (i = 0; i < p->limits.nprofiles; i++) {
        if (lp == &p->limits.profiles[i]) {
            return 1;
        }
    }

    return 0;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t           i, j;
    tg_errors        errs;
    tg_policy       *p;
    tg_policy_opts   opts;
    const tg_route  *rt;

    memset(&opts, 0, sizeof(opts));
    opts.getenv = fuzz_getenv;
    opts.now = 1790000000;
    opts.listen_path = size % 2 ? "/run/tailgate-fuzz/policyd.sock" : NULL;

    tg_errors_init(&errs);

    p = tg_policy_parse("fuzz.json", (const char *) data, size, &opts, &errs);

    if (p == NULL) {
        FUZZ_CHECK(errs.count > 0 || errs.oom);
        tg_errors_free(&errs);
        return 0;
    }

    FUZZ_CHECK(errs.count == 0);
    FUZZ_CHECK(p->nproviders > 0 && p->nroutes > 0);

    for (i = 0; i < p->nroutes; i++) {
        rt = &p->routes[i];
        FUZZ_CHECK(tg_policy_route(p, rt->name, rt->name_len) != NULL);

        for (j = 0; j < rt->nsteps; j++) {
            FUZZ_CHECK(rt->steps[j].provider
                       == &p->providers[rt->steps[j].provider_index]);
        }

        if (p->limits.routes != NULL && p->limits.routes[i] != NULL) {
            FUZZ_CHECK(fuzz_profile_ok(p, p->limits.routes[i]));
        }
    }

    for (i = 0; i < p->limits.nprofiles; i++) {
        FUZZ_CHECK(tg_limits_profile(p, p->limits.profiles[i].name,
                                     p->limits.profiles[i].name_len)
                   == &p->limits.profiles[i]);
        FUZZ_CHECK(p->limits.profiles[i].name_len <= TG_LIMIT_NAME_MAX);
    }

    for (i = 0; i < p->limits.ntenants; i++) {
        FUZZ_CHECK(fuzz_profile_ok(p, p->limits.tenants[i].profile));
    }

    FUZZ_CHECK(p->limits.default_profile == NULL
               || fuzz_profile_ok(p, p->limits.default_profile));

    tg_policy_free(p);
    tg_errors_free(&errs);

    return 0;
}
