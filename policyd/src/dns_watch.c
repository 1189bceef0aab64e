/*
 * Upstream servers that follow DNS: dns_watch.h says what and why.
 */

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <resolv.h>
#include <signal.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dns_watch.h"
#include "log.h"


#define TG_DNS_ADDR_LEN   (INET6_ADDRSTRLEN + 8)      /* "[...]:65535" */
#define TG_DNS_FILE_MAX   (TG_DNS_ADDRS_MAX * (TG_DNS_ADDR_LEN + 16) + 512)


typedef struct {
    char        *upstream;
    char        *host;
    uint16_t     port;
    char        *text;              /* what its file holds, or NULL */
} tg_dns_entry;


struct tg_dns_watch {
    tg_dns_entry     *entries;
    size_t            n;
    char             *dir;
    char             *nginx_pid;
    char             *nameserver;
    uint16_t          nameserver_port;
    uint32_t          interval_ms;
    uint32_t          timeout_ms;

    pthread_t         thread;
    pthread_mutex_t   lock;
    pthread_cond_t    wake;
    bool              stopping;
    bool              started;
};


static void *tg_dns_thread(void *data);
static void tg_dns_round(tg_dns_watch *w);
static bool tg_dns_stopping(tg_dns_watch *w);
static int tg_dns_resolve(tg_dns_watch *w, res_state rs,
    const tg_dns_entry *e, char addrs[][TG_DNS_ADDR_LEN], size_t *n);
static int tg_dns_query(res_state rs, const char *host, int type,
    uint16_t port, char addrs[][TG_DNS_ADDR_LEN], size_t *n);
static int tg_dns_addr_cmp(const void *a, const void *b);
static int tg_dns_write(tg_dns_watch *w, const tg_dns_entry *e,
    const char *text, const char *servers);
static void tg_dns_reload_nginx(tg_dns_watch *w, size_t changed);
static char *tg_dns_read_small(const char *path);
static void tg_dns_free(tg_dns_watch *w);


tg_dns_watch *
tg_dns_watch_start(const tg_dns_conf *conf)
{
    char          path[TG_DNS_DIR_MAX + 300];
    size_t        i;
    tg_dns_watch *w;

    if (!conf->enabled) {
        return NULL;
    }

    w = calloc(1, sizeof(tg_dns_watch));
    if (w == NULL) {
        goto nomem;
    }

    w->entries = calloc(conf->nnames, sizeof(tg_dns_entry));
    w->dir = strdup(conf->dir);
    w->nginx_pid = conf->nginx_pid ? strdup(conf->nginx_pid) : NULL;
    w->nameserver = conf->nameserver ? strdup(conf->nameserver) : NULL;
    w->nameserver_port = conf->nameserver_port;
    w->interval_ms = conf->interval_ms;
    w->timeout_ms = conf->timeout_ms;

    if (w->entries == NULL || w->dir == NULL
        || (conf->nginx_pid != NULL && w->nginx_pid == NULL)
        || (conf->nameserver != NULL && w->nameserver == NULL))
    {
        goto nomem;
    }

    w->n = conf->nnames;

    for (i = 0; i < w->n; i++) {
        w->entries[i].upstream = strdup(conf->names[i].upstream);
        w->entries[i].host = strdup(conf->names[i].host);
        w->entries[i].port = conf->names[i].port;

        if (w->entries[i].upstream == NULL || w->entries[i].host == NULL) {
            goto nomem;
        }

        /* a file from before (policyd restarted): unchanged, not written */
        snprintf(path, sizeof(path), "%s/%s.conf", w->dir,
                 w->entries[i].upstream);
        w->entries[i].text = tg_dns_read_small(path);
    }

    /* under the unit: a directory of its StateDirectory, made here once */

    if (mkdir(w->dir, 0755) != 0 && errno != EEXIST) {
        tg_log_error("dns.start_failed", "dir reason",
                     "upstream_dns: cannot make %s: %s", w->dir,
                     strerror(errno));
        tg_dns_free(w);
        return NULL;
    }

    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->wake, NULL);

    tg_log_info("dns.watching", "names dir interval_ms",
                "upstream servers from DNS: %zu names, files in %s, every "
                "%u ms", w->n, w->dir, w->interval_ms);

    tg_dns_round(w);

    if (pthread_create(&w->thread, NULL, tg_dns_thread, w) != 0) {
        tg_log_error("dns.start_failed", "",
                     "cannot start the DNS watcher's thread");
        tg_dns_free(w);
        return NULL;
    }

    w->started = true;

    return w;

nomem:

    tg_log_error("dns.no_memory", "", "out of memory for upstream_dns");
    tg_dns_free(w);

    return NULL;
}


void
tg_dns_watch_stop(tg_dns_watch *w)
{
    if (w == NULL) {
        return;
    }

    if (w->started) {
        pthread_mutex_lock(&w->lock);
        w->stopping = true;
        pthread_cond_signal(&w->wake);
        pthread_mutex_unlock(&w->lock);

        pthread_join(w->thread, NULL);
    }

    tg_dns_free(w);
}


static void *
tg_dns_thread(void *data)
{
    tg_dns_watch     *w = data;
    struct timespec   until;

    for ( ;; ) {
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += w->interval_ms / 1000;
        until.tv_nsec += (long) (w->interval_ms % 1000) * 1000000;

        if (until.tv_nsec >= 1000000000) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000;
        }

        pthread_mutex_lock(&w->lock);

        while (!w->stopping
               && pthread_cond_timedwait(&w->wake, &w->lock, &until) == 0)
        {
            /* woken early without a stop: wait on */
        }

        if (w->stopping) {
            pthread_mutex_unlock(&w->lock);
            return NULL;
        }

        pthread_mutex_unlock(&w->lock);

        tg_dns_round(w);
    }
}


/* a stop waits for one name's questions at most, not a whole round */

static bool
tg_dns_stopping(tg_dns_watch *w)
{
    bool  stopping;

    pthread_mutex_lock(&w->lock);
    stopping = w->stopping;
    pthread_mutex_unlock(&w->lock);

    return stopping;
}


/* every name once; nginx reloaded once if any set changed */

static void
tg_dns_round(tg_dns_watch *w)
{
    char                 addrs[TG_DNS_ADDRS_MAX][TG_DNS_ADDR_LEN];
    char                *text, *p, *end, *servers, *q;
    size_t               i, j, n, changed;
    struct __res_state   rs;

    memset(&rs, 0, sizeof(rs));

    if (res_ninit(&rs) != 0) {
        tg_log_warn("dns.failed", "reason", "upstream servers from DNS: %s",
                    "the resolver's settings cannot be read");
        return;
    }

    /* one try per question, bounded: the round must come back */

    rs.retrans = (int) (w->timeout_ms + 999) / 1000;
    rs.retry = 1;

    if (w->nameserver != NULL) {
        rs.nscount = 1;
        rs.nsaddr_list[0].sin_family = AF_INET;
        rs.nsaddr_list[0].sin_port = htons(w->nameserver_port);
        inet_pton(AF_INET, w->nameserver, &rs.nsaddr_list[0].sin_addr);
    }

    changed = 0;

    text = malloc(TG_DNS_FILE_MAX);
    servers = malloc(TG_DNS_ADDRS_MAX * (TG_DNS_ADDR_LEN + 1) + 1);

    if (text == NULL || servers == NULL) {
        free(text);
        free(servers);
        res_nclose(&rs);
        tg_log_error("dns.no_memory", "", "out of memory for upstream_dns");
        return;
    }

    for (i = 0; i < w->n && !tg_dns_stopping(w); i++) {
        tg_dns_entry  *e = &w->entries[i];

        if (tg_dns_resolve(w, &rs, e, addrs, &n) != 0) {
            continue;
        }

        p = text;
        end = text + TG_DNS_FILE_MAX;

        p += snprintf(p, (size_t) (end - p), "# policyd (upstream_dns): %s, "
                      "port %u\n", e->host, (unsigned) e->port);

        q = servers;

        for (j = 0; j < n; j++) {
            p += snprintf(p, (size_t) (end - p), "server %s;\n", addrs[j]);
            q += sprintf(q, "%s%s", j ? " " : "", addrs[j]);
        }

        if (e->text != NULL && strcmp(e->text, text) == 0) {
            continue;
        }

        if (tg_dns_write(w, e, text, servers) != 0) {
            continue;
        }

        free(e->text);
        e->text = strdup(text);

        changed++;
    }

    free(text);
    free(servers);
    res_nclose(&rs);

    if (changed > 0) {
        tg_dns_reload_nginx(w, changed);
    }
}


/* 0 and the sorted addresses; -1 (logged): keep what the file holds */

static int
tg_dns_resolve(tg_dns_watch *w, res_state rs, const tg_dns_entry *e,
    char addrs[][TG_DNS_ADDR_LEN], size_t *n)
{
    int              a, aaaa;
    size_t           i, j;
    struct in_addr   in;

    (void) w;

    *n = 0;

    if (inet_pton(AF_INET, e->host, &in) == 1) {
        snprintf(addrs[0], TG_DNS_ADDR_LEN, "%s:%u", e->host,
                 (unsigned) e->port);
        *n = 1;
        return 0;
    }

    a = tg_dns_query(rs, e->host, ns_t_a, e->port, addrs, n);
    aaaa = tg_dns_query(rs, e->host, ns_t_aaaa, e->port, addrs, n);

    if (*n == 0) {
        tg_log_warn("dns.unresolved", "upstream host reason",
                    "upstream %s: %s did not resolve (%s); its servers stay "
                    "as they were", e->upstream, e->host,
                    a == HOST_NOT_FOUND || aaaa == HOST_NOT_FOUND
                    ? "no such name"
                    : a == TRY_AGAIN || aaaa == TRY_AGAIN
                    ? "no answer from the name server"
                    : a == NO_DATA && aaaa == NO_DATA ? "no address records"
                    : "the name server failed");
        return -1;
    }

    qsort(addrs, *n, TG_DNS_ADDR_LEN, tg_dns_addr_cmp);

    for (i = 1, j = 1; i < *n; i++) {
        if (strcmp(addrs[i], addrs[j - 1]) != 0) {
            memmove(addrs[j++], addrs[i], TG_DNS_ADDR_LEN);
        }
    }

    *n = j;

    return 0;
}


/* 0, or h_errno's kind of failure; the addresses appended to addrs */

static int
tg_dns_query(res_state rs, const char *host, int type, uint16_t port,
    char addrs[][TG_DNS_ADDR_LEN], size_t *n)
{
    int            len, i, count;
    char           ip[INET6_ADDRSTRLEN];
    ns_rr          rr;
    ns_msg         msg;
    unsigned char  answer[NS_PACKETSZ * 4];

    len = res_nquery(rs, host, ns_c_in, type, answer, sizeof(answer));

    if (len < 0) {
        return rs->res_h_errno;
    }

    if (ns_initparse(answer, len, &msg) != 0) {
        return NO_RECOVERY;
    }

    count = ns_msg_count(msg, ns_s_an);

    for (i = 0; i < count && *n < TG_DNS_ADDRS_MAX; i++) {
        if (ns_parserr(&msg, ns_s_an, i, &rr) != 0) {
            return NO_RECOVERY;
        }

        /* a CNAME on the way is followed by the server: only addresses */

        if (ns_rr_class(rr) != ns_c_in || (int) ns_rr_type(rr) != type) {
            continue;
        }

        if (type == ns_t_a && ns_rr_rdlen(rr) == 4) {
            inet_ntop(AF_INET, ns_rr_rdata(rr), ip, sizeof(ip));
            snprintf(addrs[(*n)++], TG_DNS_ADDR_LEN, "%s:%u", ip,
                     (unsigned) port);

        } else if (type == ns_t_aaaa && ns_rr_rdlen(rr) == 16) {
            inet_ntop(AF_INET6, ns_rr_rdata(rr), ip, sizeof(ip));
            snprintf(addrs[(*n)++], TG_DNS_ADDR_LEN, "[%s]:%u", ip,
                     (unsigned) port);
        }
    }

    return 0;
}


static int
tg_dns_addr_cmp(const void *a, const void *b)
{
    return strcmp(a, b);
}


/* the whole file or none of it: a temporary one renamed over it */

static int
tg_dns_write(tg_dns_watch *w, const tg_dns_entry *e, const char *text,
    const char *servers)
{
    int      fd;
    char     tmp[TG_DNS_DIR_MAX + 300], path[TG_DNS_DIR_MAX + 300];
    size_t   len;
    ssize_t  done;

    snprintf(path, sizeof(path), "%s/%s.conf", w->dir, e->upstream);
    snprintf(tmp, sizeof(tmp), "%s/.%s.conf.tmp", w->dir, e->upstream);

    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd == -1) {
        goto failed;
    }

    /* whatever policyd's umask: nginx's master reads it */
    (void) fchmod(fd, 0644);

    len = strlen(text);
    done = write(fd, text, len);

    if (done != (ssize_t) len || close(fd) != 0) {
        if (done == (ssize_t) len) {
            fd = -1;
        }
        goto failed;
    }

    fd = -1;

    if (rename(tmp, path) != 0) {
        goto failed;
    }

    tg_log_info("dns.changed", "upstream host servers path",
                "upstream %s: %s now has its servers from DNS (%s) in %s",
                e->upstream, e->host, servers, path);

    return 0;

failed:

    tg_log_error("dns.write_failed", "upstream path reason",
                 "upstream %s: cannot write %s: %s", e->upstream, path,
                 strerror(errno));

    if (fd != -1) {
        close(fd);
    }

    unlink(tmp);

    return -1;
}


/* SIGHUP to nginx's master: only a process that is nginx */

static void
tg_dns_reload_nginx(tg_dns_watch *w, size_t changed)
{
    long   pid;
    char  *text, *end, comm[64];
    char  *name;

    if (w->nginx_pid == NULL) {
        tg_log_info("dns.reload_needed", "upstreams",
                    "%zu upstreams changed: reload nginx to use them "
                    "(upstream_dns.nginx_pid does it)", changed);
        return;
    }

    text = tg_dns_read_small(w->nginx_pid);

    if (text == NULL) {
        tg_log_warn("dns.reload_failed", "path reason",
                    "cannot reload nginx: %s: %s", w->nginx_pid,
                    "no such file (is nginx running?)");
        return;
    }

    pid = strtol(text, &end, 10);

    if (pid <= 1 || end == text || (*end != '\n' && *end != '\0')) {
        free(text);
        tg_log_warn("dns.reload_failed", "path reason",
                    "cannot reload nginx: %s: %s", w->nginx_pid,
                    "expected a process id");
        return;
    }

    free(text);

    /* a stale pid file must not make policyd signal another program */

    snprintf(comm, sizeof(comm), "/proc/%ld/comm", pid);
    name = tg_dns_read_small(comm);

    if (name == NULL || strncmp(name, "nginx", 5) != 0) {
        free(name);
        tg_log_warn("dns.reload_failed", "path reason",
                    "cannot reload nginx: %s: %s", w->nginx_pid,
                    "its process is not nginx");
        return;
    }

    free(name);

    if (kill((pid_t) pid, SIGHUP) != 0) {
        tg_log_warn("dns.reload_failed", "path reason",
                    "cannot reload nginx: %s: %s", w->nginx_pid,
                    strerror(errno));
        return;
    }

    tg_log_info("dns.reload", "pid upstreams",
                "nginx %ld reloads: %zu upstreams changed", pid, changed);
}


/* a small file's text (at most TG_DNS_FILE_MAX bytes), or NULL */

static char *
tg_dns_read_small(const char *path)
{
    int       fd;
    char     *buf;
    ssize_t   n;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd == -1) {
        return NULL;
    }

    buf = malloc(TG_DNS_FILE_MAX + 1);
    if (buf == NULL) {
        close(fd);
        return NULL;
    }

    n = read(fd, buf, TG_DNS_FILE_MAX);
    close(fd);

    if (n < 0) {
        free(buf);
        return NULL;
    }

    buf[n] = '\0';

    return buf;
}


static void
tg_dns_free(tg_dns_watch *w)
{
    size_t  i;

    if (w == NULL) {
        return;
    }

    for (i = 0; w->entries != NULL && i < w->n; i++) {
        free(w->entries[i].upstream);
        free(w->entries[i].host);
        free(w->entries[i].text);
    }

    free(w->entries);
    free(w->dir);
    free(w->nginx_pid);
    free(w->nameserver);
    free(w);
}
