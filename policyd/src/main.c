/*
 * policyd: the Tailgate policy daemon.
 *
 *   policyd -c FILE [-t] [-s SOCKET_PATH] [-a ADMIN_SOCKET] [-e ENV_FILE] [-v]
 *           [-j]
 *   policyd explain (-c FILE | -s SOCKET) [options] MODEL
 *   policyd status -a ADMIN_SOCKET [--prometheus]
 *   policyd usage -f FILE [--since T] [--until T] [--by KEY] [--json|--csv]
 *
 * -t checks the policy and exits; otherwise policyd serves the module on
 * the policy's Unix socket, in the foreground, logging to stderr.
 * "explain" says where a request would go and why (explain.c); "status"
 * asks a running policyd on its admin socket (admin.c) how the providers
 * fare; "usage" totals usage logs (usage_cli.c).
 */

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <curl/curl.h>

#include "explain.h"
#include "file_mode.h"
#include "usage_cli.h"
#include "log.h"
#include "otlp_export.h"
#include "policy.h"
#include "server.h"
#include "sock.h"


static void tg_usage(FILE *out);
static int tg_status_main(int argc, char **argv);


int
main(int argc, char **argv)
{
    int              ch;
    bool             test, verbose;
    tg_errors        errs;
    tg_policy       *policy;
    char             msg[TG_FILE_MODE_MSG_LEN];
    const char      *file, *env_file;
    tg_policy_opts   opts;

    if (argc > 1 && strcmp(argv[1], "explain") == 0) {
        return tg_explain_main(argc - 1, argv + 1);
    }

    if (argc > 1 && strcmp(argv[1], "status") == 0) {
        return tg_status_main(argc - 1, argv + 1);
    }

    if (argc > 1 && strcmp(argv[1], "usage") == 0) {
        return tg_usage_main(argc - 1, argv + 1);
    }

    file = NULL;
    env_file = NULL;
    test = false;
    verbose = false;
    memset(&opts, 0, sizeof(opts));
    opts.private_file = true;

    opterr = 0;

    while ((ch = getopt(argc, argv, "c:ts:a:e:vjh")) != -1) {
        switch (ch) {

        case 'c':
            file = optarg;
            break;

        case 't':
            test = true;
            break;

        case 's':
            opts.listen_path = optarg;
            break;

        case 'a':
            opts.admin_path = optarg;
            break;

        case 'e':
            env_file = optarg;
            break;

        case 'v':
            verbose = true;
            break;

        case 'j':
            tg_log_force_json(true);
            break;

        case 'h':
            tg_usage(stdout);
            return 0;

        default:
            if (optopt == 'c' || optopt == 's' || optopt == 'a'
                || optopt == 'e')
            {
                fprintf(stderr, "policyd: option -%c needs an argument\n",
                        optopt);
            } else {
                fprintf(stderr, "policyd: unknown option -%c\n", optopt);
            }
            tg_usage(stderr);
            return 1;
        }
    }

    if (optind < argc) {
        fprintf(stderr, "policyd: unexpected argument \"%s\"\n", argv[optind]);
        tg_usage(stderr);
        return 1;
    }

    if (file == NULL) {
        fprintf(stderr, "policyd: -c FILE is required\n");
        tg_usage(stderr);
        return 1;
    }

    tg_log_force_debug(verbose);

    tg_errors_init(&errs);

    /* the provider keys' file, read by systemd: checked, never read here */

    if (env_file != NULL
        && tg_file_mode_check(env_file, msg, sizeof(msg)) != 0)
    {
        tg_errors_add(&errs, env_file, "%s", msg);
    }

    policy = tg_policy_load(file, &opts, &errs);

    if (policy != NULL && errs.count > 0) {
        tg_policy_free(policy);
        policy = NULL;
    }

    if (test) {
        if (policy == NULL) {
            tg_print_errors(file, &errs, stderr, false);
            tg_errors_free(&errs);
            return 1;
        }

        /* the environment's OTLP settings are checked too */
        if (tg_otlp_check_env(stderr) != 0) {
            tg_policy_free(policy);
            tg_errors_free(&errs);
            return 1;
        }

        printf("%s: ok: %zu providers, %zu routes\n", file,
               policy->nproviders, policy->nroutes);

        tg_policy_free(policy);
        tg_errors_free(&errs);
        return 0;
    }

    if (policy == NULL) {
        tg_print_errors(file, &errs, stderr, true);
        tg_log_error("start.failed", "", "cannot start: the policy has errors");
        tg_errors_free(&errs);
        return 1;
    }

    tg_errors_free(&errs);

    tg_log_set_level(policy->log_level);
    tg_log_set_format(policy->log_format);

    signal(SIGPIPE, SIG_IGN);

    /* the health probes' HTTP client, once for the process */

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        tg_log_error("start.failed", "",
                     "cannot start: libcurl failed to initialize");
        tg_policy_free(policy);
        return 1;
    }

    return tg_server_run(file, &opts, policy);
}


static void
tg_usage(FILE *out)
{
    fprintf(out,
            "usage: policyd -c FILE [-t] [-s SOCKET_PATH] [-a ADMIN_SOCKET] "
            "[-v] [-j]\n"
            "       policyd explain (-c FILE | -s SOCKET) [options] MODEL\n"
            "       policyd status -a ADMIN_SOCKET [--prometheus]\n"
            "       policyd usage -f FILE [--since T] [--until T] [--by KEY] "
            "[--json|--csv]\n"
            "  -c FILE   the policy file (JSON with comments)\n"
            "  -t        check the policy, print every error, exit\n"
            "  -s PATH   listen on PATH instead of listen.path\n"
            "  -a PATH   the admin socket, instead of admin_listen.path\n"
            "  -e FILE   the environment file of the provider keys "
            "(systemd's\n"
            "            EnvironmentFile=): refused when every user may "
            "read it\n"
            "  -v        log at debug level\n"
            "  -j        log one JSON object per line (log_format \"json\")\n"
            "  explain   where would a request go, and why (explain -h)\n"
            "  status    providers' states, leases, latency, from a running "
            "policyd\n"
            "  usage     requests, tokens and cost from usage logs (usage -h)\n");
}


/* policyd status -a PATH [--prometheus]: one command on the admin socket */

static int
tg_status_main(int argc, char **argv)
{
    int                  fd, i;
    char                 buf[65536];
    ssize_t              n;
    const char          *path, *cmd;
    struct sockaddr_un   sa;

    path = NULL;
    cmd = "status\n";

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-a") == 0 && i + 1 < argc) {
            path = argv[++i];

        } else if (strcmp(argv[i], "--prometheus") == 0
                   || strcmp(argv[i], "-p") == 0)
        {
            cmd = "metrics\n";

        } else {
            fprintf(stderr, "usage: policyd status -a ADMIN_SOCKET "
                    "[--prometheus]\n");
            return 2;
        }
    }

    if (path == NULL || strlen(path) >= sizeof(sa.sun_path)) {
        fprintf(stderr, "usage: policyd status -a ADMIN_SOCKET "
                "[--prometheus]\n");
        return 2;
    }

    fd = tg_sock_connect(path, 5);

    if (fd == TG_SOCK_NO_SOCKET) {
        fprintf(stderr, "policyd status: socket(): %s\n", strerror(errno));
        return 2;
    }

    if (fd == TG_SOCK_NO_CONNECT
        || send(fd, cmd, strlen(cmd), MSG_NOSIGNAL) != (ssize_t) strlen(cmd))
    {
        fprintf(stderr, "policyd status: cannot ask %s: %s\n", path,
                strerror(errno));

        if (fd >= 0) {
            close(fd);
        }
        return 2;
    }

    while ((n = read(fd, buf, sizeof(buf))) > 0) {
        fwrite(buf, 1, (size_t) n, stdout);
    }

    close(fd);

    if (n < 0) {
        fprintf(stderr, "policyd status: no answer from %s\n", path);
        return 2;
    }

    return 0;
}
