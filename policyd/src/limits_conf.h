/*
 * The "limits" of a policy (docs/policy.md, "Limits"): named profiles of
 * rpm, tpm, concurrent and budget, and what they are attached to.  Part of
 * an immutable tg_policy; limits_policy.c reads them.
 */

#ifndef TG_LIMITS_CONF_H
#define TG_LIMITS_CONF_H

#include <stddef.h>
#include <stdint.h>


#define TG_LIMIT_NAME_MAX       64      /* as the module's limit= allows */

/*
 * A counter's key at most ("c\037agents\037alice", limits_admit.c): a
 * longer name is cut.  So long that every Redis key made of it - its
 * hash, and the longest, its slot set "{PREFIX:limits}:slots:KEY" with
 * the longest key_prefix - fits TG_REDIS_KEY_MAX (redis_keys.c checks).
 */
#define TG_LIMIT_KEY_MAX        431
#define TG_LIMIT_RATE_MAX       1000000000
#define TG_LIMIT_CONCURRENT_MAX 100000
#define TG_LIMIT_PERIOD_MS      60000   /* rpm and tpm: per minute */

/* money in pico-units of the prices' currency, as usage costs are:
   1.0 = 10^12; a budget of at most 10^7 */
#define TG_BUDGET_UNIT          1e12
#define TG_BUDGET_MAX_AMOUNT    10000000


typedef struct {
    const char     *name;
    size_t          name_len;
    uint32_t        rpm;                /* 0: no limit of that kind */
    uint32_t        tpm;
    uint32_t        concurrent;
    uint64_t        budget_day;         /* pico-units; 0: none */
    uint64_t        budget_month;
} tg_limit_profile;


/* a tenant's or a route's profile, counted for all its requests together */
typedef struct {
    const char              *name;
    const tg_limit_profile  *profile;
} tg_limit_binding;


typedef struct {
    tg_limit_profile        *profiles;
    size_t                   nprofiles;

    /* the clients whose identity names no profile */
    const tg_limit_profile  *default_profile;   /* NULL: none */

    tg_limit_binding        *tenants;
    size_t                   ntenants;

    /* by route index: NULL for a route without one */
    const tg_limit_profile **routes;

    /* the budgets' spend across restarts; NULL: SOCKET.limits */
    const char              *state_file;
} tg_limits_conf;


#endif /* TG_LIMITS_CONF_H */
