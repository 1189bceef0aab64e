/*
 * The daemon: a libev loop serving the protocol on the policy's Unix socket,
 * with SIGHUP (reload), SIGTERM and SIGINT (clean exit).
 */

#ifndef TG_SERVER_H
#define TG_SERVER_H

#include "policy.h"


/*
 * Serves until SIGTERM or SIGINT.  Takes ownership of policy (loaded by the
 * caller from file with opts; reloads use the same).  Returns the exit code:
 * 0 after a clean stop, 1 when it could not start.
 */
int tg_server_run(const char *file, const tg_policy_opts *opts,
    tg_policy *policy);


#endif /* TG_SERVER_H */
