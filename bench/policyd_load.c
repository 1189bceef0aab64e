/*
 * policyd_load: how many decisions per second policyd makes, and how long
 * each takes, over its real Unix socket protocol.
 *
 *   policyd_load -s SOCKET [-c CONNECTIONS] [-w WINDOW] [-d SECONDS]
 *                [-m MODEL] [-e ENDPOINT] [-l LIMIT] [-r]
 *
 * Each connection keeps WINDOW DECIDE frames in flight; every reply is
 * timed from the moment its frame was written.  -r: every DECISION is
 * followed by the REPORT a worker sends when its request is done, with
 * usage, and with trace context when policyd's HELLO_OK says it exports
 * traces (the decision rate with export on); the REPORT carries the
 * DECISION's lease, as the module's does, so that it ends.  -l: every
 * DECIDE names that limit profile, as a key record's limit= does, and the
 * DECISIONs that carry x-ratelimit levels are counted (limited=): proof
 * that the limit was met by every decision.  Prints one line:
 *   decisions=N seconds=S rate=R/s p50_us=.. p99_us=.. errors=E ...
 * Exits 1 if any answer was not a 200 DECISION.
 */

#define _GNU_SOURCE

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "tailgate_protocol.h"


#define MAX_CONNS    64
#define MAX_WINDOW   256
#define MAX_SAMPLES  (4 * 1024 * 1024)


typedef struct {
    int        fd;
    uint32_t   next_id;
    double     sent_at[MAX_WINDOW];
    uint8_t    in[1 << 16];
    size_t     in_len;
} conn_t;


static double   *samples;
static size_t    nsamples;
static int       reports;           /* -r */
static int       traced;            /* HELLO_OK said trace */
static uint64_t  report_seq;
static const char *limit;           /* -l */
static uint64_t  limited;           /* DECISIONs with ratelimit levels */


static double
now(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}


static void
put_u32(uint8_t *p, uint32_t v)
{
    p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = v;
}


static uint32_t
get_u32(const uint8_t *p)
{
    return (uint32_t) p[0] << 24 | (uint32_t) p[1] << 16
           | (uint32_t) p[2] << 8 | p[3];
}


static size_t
field(uint8_t *p, uint8_t key, const void *value, uint32_t len)
{
    p[0] = key;
    put_u32(p + 1, len);
    memcpy(p + TG_FIELD_HEADER_SIZE, value, len);
    return TG_FIELD_HEADER_SIZE + len;
}


/* a DECIDE frame for the given id */
static size_t
decide_frame(uint8_t *buf, uint32_t id, const char *endpoint,
    const char *model)
{
    size_t    n;
    uint8_t   stream = 0;
    uint32_t  bytes, attempt;

    n = TG_FRAME_HEADER_SIZE;
    n += field(buf + n, TG_F_CLIENT, "bench", 5);
    n += field(buf + n, TG_F_ENDPOINT, endpoint, strlen(endpoint));
    n += field(buf + n, TG_F_MODEL, model, strlen(model));
    n += field(buf + n, TG_F_STREAM, &stream, 1);
    put_u32((uint8_t *) &bytes, 1024);
    n += field(buf + n, TG_F_BODY_BYTES, &bytes, 4);
    put_u32((uint8_t *) &attempt, 1);
    n += field(buf + n, TG_F_ATTEMPT, &attempt, 4);

    if (limit != NULL) {
        n += field(buf + n, TG_F_LIMIT, limit, strlen(limit));
    }

    put_u32(buf, (uint32_t) (n - TG_FRAME_LEN_SIZE));
    buf[4] = TG_PROTO_VERSION;
    buf[5] = TG_MSG_DECIDE;
    put_u32(buf + 6, id);

    return n;
}


/*
 * The REPORT of a request the DECISION at d (a whole frame) decided: its
 * provider and route, usage, and trace fields for a policyd that traces.
 */
static size_t
report_frame(uint8_t *buf, const uint8_t *d, size_t dlen, const char *endpoint)
{
    char            id[40], tp[64], parent[20], start[24];
    size_t          n, off;
    uint8_t         zero = 0, one = 1;
    uint32_t        v, flen;
    struct timespec ts;

    n = TG_FRAME_HEADER_SIZE;
    n += field(buf + n, TG_F_OUTCOME, "ok", 2);

    /* the decision's provider, route and model, as the module keeps them */

    for (off = TG_FRAME_HEADER_SIZE; off + TG_FIELD_HEADER_SIZE <= dlen;
         off += TG_FIELD_HEADER_SIZE + flen)
    {
        flen = get_u32(d + off + 1);

        if (off + TG_FIELD_HEADER_SIZE + flen > dlen || flen > 128) {
            break;
        }

        if (d[off] == TG_F_PROVIDER || d[off] == TG_F_ROUTE
            || d[off] == TG_F_PROVIDER_MODEL || d[off] == TG_F_LEASE)
        {
            n += field(buf + n, d[off], d + off + TG_FIELD_HEADER_SIZE, flen);
        }
    }

    report_seq++;
    snprintf(id, sizeof(id), "%016llx%016llx",
             (unsigned long long) report_seq * 0x9e3779b97f4a7c15ULL,
             (unsigned long long) report_seq);

    put_u32((uint8_t *) &v, 200);
    n += field(buf + n, TG_F_HTTP_STATUS, &v, 4);
    put_u32((uint8_t *) &v, 5);
    n += field(buf + n, TG_F_UPSTREAM_MS, &v, 4);
    put_u32((uint8_t *) &v, 6);
    n += field(buf + n, TG_F_TOTAL_MS, &v, 4);
    n += field(buf + n, TG_F_REQUEST_ID, id, 32);
    n += field(buf + n, TG_F_CLIENT, "bench", 5);
    n += field(buf + n, TG_F_ENDPOINT, endpoint, strlen(endpoint));
    n += field(buf + n, TG_F_STREAM, &zero, 1);
    put_u32((uint8_t *) &v, 1);
    n += field(buf + n, TG_F_ATTEMPT, &v, 4);
    put_u32((uint8_t *) &v, 250);
    n += field(buf + n, TG_F_PROMPT_TOKENS, &v, 4);
    put_u32((uint8_t *) &v, 40);
    n += field(buf + n, TG_F_COMPLETION_TOKENS, &v, 4);
    put_u32((uint8_t *) &v, 290);
    n += field(buf + n, TG_F_TOTAL_TOKENS, &v, 4);
    n += field(buf + n, TG_F_RESPONSE_MODEL, "bench-provider-model", 20);

    if (traced) {
        clock_gettime(CLOCK_REALTIME, &ts);
        snprintf(tp, sizeof(tp), "00-%s-%016llx-01", id,
                 (unsigned long long) report_seq * 3 + 1);
        snprintf(parent, sizeof(parent), "%016llx",
                 (unsigned long long) report_seq * 3 + 2);
        snprintf(start, sizeof(start), "%lld",
                 (long long) ts.tv_sec * 1000 + ts.tv_nsec / 1000000 - 6);

        n += field(buf + n, TG_F_TRACEPARENT, tp, 55);
        n += field(buf + n, TG_F_PARENT_SPAN, parent, 16);
        n += field(buf + n, TG_F_START_MS, start, strlen(start));
        n += field(buf + n, TG_F_TRACE_FINAL, &one, 1);
    }

    put_u32(buf, (uint32_t) (n - TG_FRAME_LEN_SIZE));
    buf[4] = TG_PROTO_VERSION;
    buf[5] = TG_MSG_REPORT;
    put_u32(buf + 6, 0);

    return n;
}


/* whether the frame f (len bytes, header included) has a field key */
static int
has_field(const uint8_t *f, size_t len, uint8_t key)
{
    size_t    off;
    uint32_t  flen;

    for (off = TG_FRAME_HEADER_SIZE; off + TG_FIELD_HEADER_SIZE <= len;
         off += TG_FIELD_HEADER_SIZE + flen)
    {
        flen = get_u32(f + off + 1);

        if (f[off] == key) {
            return 1;
        }
    }

    return 0;
}


static int
write_all(int fd, const uint8_t *p, size_t len)
{
    ssize_t  n;

    while (len) {
        n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -1;
        }
        p += n;
        len -= (size_t) n;
    }

    return 0;
}


static int
cmp_double(const void *a, const void *b)
{
    double  x = *(const double *) a, y = *(const double *) b;

    return x < y ? -1 : x > y;
}


int
main(int argc, char **argv)
{
    int                  opt, i, nconns, window, errors;
    double               seconds, start, t, end;
    size_t               n, off, len;
    uint8_t              frame[512], hello[64], report[1024];
    uint32_t             id, status;
    const char          *sock, *model, *endpoint;
    conn_t              *conns;
    struct pollfd        pfd[MAX_CONNS];
    struct sockaddr_un   sa;

    sock = NULL;
    nconns = 4;
    window = 32;
    seconds = 5;
    model = "bench";
    endpoint = "chat";

    while ((opt = getopt(argc, argv, "s:c:w:d:m:e:l:r")) != -1) {
        switch (opt) {
        case 's': sock = optarg; break;
        case 'c': nconns = atoi(optarg); break;
        case 'w': window = atoi(optarg); break;
        case 'd': seconds = atof(optarg); break;
        case 'm': model = optarg; break;
        case 'e': endpoint = optarg; break;
        case 'l': limit = optarg; break;
        case 'r': reports = 1; break;
        default:
            fprintf(stderr, "usage: policyd_load -s SOCKET [-c N] [-w N] "
                    "[-d SECONDS] [-m MODEL] [-e ENDPOINT] [-l LIMIT] "
                    "[-r]\n");
            return 2;
        }
    }

    if (sock == NULL || nconns < 1 || nconns > MAX_CONNS || window < 1
        || window > MAX_WINDOW || seconds <= 0 || seconds > 600
        || (limit != NULL && strlen(limit) > 64))
    {
        fprintf(stderr, "policyd_load: bad arguments\n");
        return 2;
    }

    samples = malloc(MAX_SAMPLES * sizeof(double));
    conns = calloc((size_t) nconns, sizeof(conn_t));

    if (samples == NULL || conns == NULL) {
        fprintf(stderr, "policyd_load: out of memory\n");
        return 2;
    }

    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);

    /* HELLO, then a full window on every connection */

    n = TG_FRAME_HEADER_SIZE;
    put_u32(frame, 65536);
    n += field(hello + n, TG_F_MAX_FRAME, frame, 4);
    put_u32(hello, (uint32_t) (n - TG_FRAME_LEN_SIZE));
    hello[4] = TG_PROTO_VERSION;
    hello[5] = TG_MSG_HELLO;
    put_u32(hello + 6, 0);

    start = now();

    for (i = 0; i < nconns; i++) {
        conns[i].fd = socket(AF_UNIX, SOCK_STREAM, 0);

        if (conns[i].fd < 0
            || connect(conns[i].fd, (struct sockaddr *) &sa, sizeof(sa)) != 0
            || write_all(conns[i].fd, hello, n) != 0)
        {
            fprintf(stderr, "policyd_load: %s: %s\n", sock, strerror(errno));
            return 2;
        }

        for (id = 1; id <= (uint32_t) window; id++) {
            len = decide_frame(frame, id, endpoint, model);
            conns[i].sent_at[id % window] = now();
            if (write_all(conns[i].fd, frame, len) != 0) {
                return 2;
            }
        }

        conns[i].next_id = window + 1;
        pfd[i].fd = conns[i].fd;
        pfd[i].events = POLLIN;
    }

    errors = 0;
    end = start + seconds;

    while ((t = now()) < end) {

        if (poll(pfd, nconns, 1000) < 0 && errno != EINTR) {
            return 2;
        }

        for (i = 0; i < nconns; i++) {
            conn_t   *c = &conns[i];
            ssize_t   got;

            if (!(pfd[i].revents & (POLLIN | POLLHUP | POLLERR))) {
                continue;
            }

            got = read(c->fd, c->in + c->in_len, sizeof(c->in) - c->in_len);
            if (got <= 0) {
                fprintf(stderr, "policyd_load: connection closed\n");
                return 2;
            }

            c->in_len += (size_t) got;
            off = 0;
            t = now();

            /* every complete reply: time it, send the next frame */

            while (c->in_len - off >= TG_FRAME_LEN_SIZE) {
                len = get_u32(c->in + off);

                if (c->in_len - off < TG_FRAME_LEN_SIZE + len) {
                    break;
                }

                if (c->in[off + 5] == TG_MSG_DECISION) {
                    id = get_u32(c->in + off + 6);
                    status = 0;

                    /* the status field comes first in policyd's replies */
                    if (len >= TG_FRAME_BODY_HEADER_SIZE + 9
                        && c->in[off + TG_FRAME_HEADER_SIZE] == TG_F_STATUS)
                    {
                        status = get_u32(c->in + off + TG_FRAME_HEADER_SIZE
                                         + TG_FIELD_HEADER_SIZE);
                    }

                    if (status != 200) {
                        errors++;
                    }

                    if (limit != NULL
                        && has_field(c->in + off, TG_FRAME_LEN_SIZE + len,
                                     TG_F_RATELIMIT))
                    {
                        limited++;
                    }

                    if (nsamples < MAX_SAMPLES) {
                        samples[nsamples++] = t - c->sent_at[id % window];
                    }

                    /* the request is done: its REPORT, then the next */
                    if (reports) {
                        n = report_frame(report, c->in + off,
                                         TG_FRAME_LEN_SIZE + len, endpoint);
                        if (write_all(c->fd, report, n) != 0) {
                            return 2;
                        }
                    }

                    n = decide_frame(frame, c->next_id, endpoint, model);
                    c->sent_at[c->next_id % window] = now();
                    c->next_id++;

                    if (write_all(c->fd, frame, n) != 0) {
                        return 2;
                    }

                } else if (c->in[off + 5] == TG_MSG_HELLO_OK) {
                    /* trace context only to a policyd that exports it */
                    size_t    f = off + TG_FRAME_HEADER_SIZE;
                    uint32_t  fl;

                    while (f + TG_FIELD_HEADER_SIZE <= off + TG_FRAME_LEN_SIZE
                                                       + len)
                    {
                        fl = get_u32(c->in + f + 1);

                        if (c->in[f] == TG_F_TRACE && fl == 1) {
                            traced = c->in[f + TG_FIELD_HEADER_SIZE];
                        }

                        f += TG_FIELD_HEADER_SIZE + fl;
                    }

                } else {
                    errors++;
                }

                off += TG_FRAME_LEN_SIZE + len;
            }

            memmove(c->in, c->in + off, c->in_len - off);
            c->in_len -= off;
        }
    }

    seconds = now() - start;

    qsort(samples, nsamples, sizeof(double), cmp_double);

    printf("decisions=%zu seconds=%.2f rate=%.0f/s p50_us=%.1f p99_us=%.1f "
           "errors=%d reports=%llu traced=%d limited=%llu\n", nsamples,
           seconds, nsamples / seconds,
           nsamples ? samples[nsamples / 2] * 1e6 : 0,
           nsamples ? samples[nsamples * 99 / 100] * 1e6 : 0, errors,
           (unsigned long long) report_seq, traced,
           (unsigned long long) limited);

    return errors ? 1 : 0;
}
