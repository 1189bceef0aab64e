/*
 * The usage log: lines copied into a bounded buffer by the loop, written
 * by a thread of the log's own.  The loop holds the lock only to copy a
 * line; the writer holds it only to swap buffers, and writes (and opens
 * the file again, for logrotate) without it.  A full buffer drops the
 * line and counts it: the loop never waits for the disk.  The writer
 * writes as soon as something waits, and looks at least every second.
 */

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "usage.h"


struct tg_usage_log {
    pthread_t            thread;
    pthread_mutex_t      lock;
    pthread_cond_t       wake;          /* the writer: something to do */
    pthread_cond_t       done;          /* the loop: a flush finished */

    char                *path;
    int                  fd;            /* the writer's */

    char                *pending;       /* the loop copies lines here */
    size_t               npending;
    size_t               pending_lines;
    char                *writing;       /* the writer writes from here */
    size_t               cap;

    bool                 stop;
    bool                 reopen;
    uint64_t             flushes;       /* buffers taken by the writer */
    uint64_t             flushed;       /* and written */

    tg_usage_log_stats   stats;
};


static void *tg_usage_log_run(void *arg);
static void tg_usage_log_out(tg_usage_log *l, const char *p, size_t n,
    size_t lines);
static int tg_usage_log_file(const char *path);


tg_usage_log *
tg_usage_log_open(const char *path, size_t buffer_bytes)
{
    int            err;
    tg_usage_log  *l;

    l = calloc(1, sizeof(tg_usage_log));
    if (l == NULL) {
        return NULL;
    }

    l->fd = -1;
    l->cap = buffer_bytes;
    l->path = strdup(path);
    l->pending = malloc(buffer_bytes);
    l->writing = malloc(buffer_bytes);

    if (l->path == NULL || l->pending == NULL || l->writing == NULL) {
        err = ENOMEM;
        goto failed;
    }

    l->fd = tg_usage_log_file(path);
    if (l->fd == -1) {
        err = errno;
        goto failed;
    }

    pthread_mutex_init(&l->lock, NULL);
    pthread_cond_init(&l->wake, NULL);
    pthread_cond_init(&l->done, NULL);

    err = pthread_create(&l->thread, NULL, tg_usage_log_run, l);
    if (err != 0) {
        pthread_mutex_destroy(&l->lock);
        pthread_cond_destroy(&l->wake);
        pthread_cond_destroy(&l->done);
        goto failed;
    }

    return l;

failed:

    if (l->fd != -1) {
        close(l->fd);
    }

    free(l->path);
    free(l->pending);
    free(l->writing);
    free(l);
    errno = err;

    return NULL;
}


int
tg_usage_log_write(tg_usage_log *l, const char *line, size_t len)
{
    bool  idle;

    pthread_mutex_lock(&l->lock);

    l->stats.records++;

    if (l->cap - l->npending < len) {
        l->stats.dropped++;
        pthread_mutex_unlock(&l->lock);
        return -1;
    }

    idle = l->npending == 0;

    memcpy(l->pending + l->npending, line, len);
    l->npending += len;
    l->pending_lines++;

    pthread_mutex_unlock(&l->lock);

    /* the writer sleeps only when nothing waits: one wake-up per batch */

    if (idle) {
        pthread_cond_signal(&l->wake);
    }

    return 0;
}


/*
 * What waits now is written before this returns - or a second has gone
 * by (a disk that hangs must not hang a reload).
 */

void
tg_usage_log_flush(tg_usage_log *l)
{
    uint64_t         want;
    struct timespec  until;

    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 1;

    pthread_mutex_lock(&l->lock);

    want = l->flushes + (l->npending != 0 ? 1 : 0);
    pthread_cond_signal(&l->wake);

    while (l->flushed < want) {
        if (pthread_cond_timedwait(&l->done, &l->lock, &until) != 0) {
            break;
        }
    }

    pthread_mutex_unlock(&l->lock);
}


void
tg_usage_log_reopen(tg_usage_log *l)
{
    pthread_mutex_lock(&l->lock);
    l->reopen = true;
    pthread_cond_signal(&l->wake);
    pthread_mutex_unlock(&l->lock);
}


void
tg_usage_log_close(tg_usage_log *l)
{
    tg_usage_log_stats  st;

    tg_usage_log_close_stats(l, &st);
}


void
tg_usage_log_close_stats(tg_usage_log *l, tg_usage_log_stats *st)
{
    memset(st, 0, sizeof(*st));

    if (l == NULL) {
        return;
    }

    pthread_mutex_lock(&l->lock);
    l->stop = true;
    pthread_cond_signal(&l->wake);
    pthread_mutex_unlock(&l->lock);

    /* the writer writes all that waits before it ends */
    pthread_join(l->thread, NULL);

    if (l->fd != -1) {
        close(l->fd);
    }

    *st = l->stats;

    pthread_mutex_destroy(&l->lock);
    pthread_cond_destroy(&l->wake);
    pthread_cond_destroy(&l->done);

    free(l->path);
    free(l->pending);
    free(l->writing);
    free(l);
}


void
tg_usage_log_stats_get(tg_usage_log *l, tg_usage_log_stats *st)
{
    pthread_mutex_lock(&l->lock);
    *st = l->stats;
    pthread_mutex_unlock(&l->lock);
}


static void *
tg_usage_log_run(void *arg)
{
    int               fd;
    char             *buf;
    bool              stop, reopen;
    size_t            n, lines;
    tg_usage_log     *l = arg;
    struct timespec   until;

    pthread_mutex_lock(&l->lock);

    for ( ;; ) {
        while (l->npending == 0 && !l->stop && !l->reopen) {
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_sec += 1;
            (void) pthread_cond_timedwait(&l->wake, &l->lock, &until);
        }

        /* take what waits; the loop fills the other buffer meanwhile */

        buf = l->pending;
        n = l->npending;
        lines = l->pending_lines;
        l->pending = l->writing;
        l->writing = buf;
        l->npending = 0;
        l->pending_lines = 0;
        l->flushes += n != 0;

        stop = l->stop;
        reopen = l->reopen;
        l->reopen = false;

        pthread_mutex_unlock(&l->lock);

        if (n != 0) {
            tg_usage_log_out(l, buf, n, lines);
        }

        if (reopen) {
            /* logrotate moved the file away: lines go to a new one */
            fd = tg_usage_log_file(l->path);

            if (fd == -1) {
                tg_log_error("usage_log.reopen_failed", "path error",
                             "usage log %s: cannot open it again: %s; "
                             "writing to the old file", l->path,
                             strerror(errno));
            } else {
                close(l->fd);
                l->fd = fd;
            }
        }

        pthread_mutex_lock(&l->lock);

        l->flushed += n != 0;
        l->stats.reopened += reopen;
        pthread_cond_broadcast(&l->done);

        if (stop && l->npending == 0) {
            break;
        }
    }

    pthread_mutex_unlock(&l->lock);

    return NULL;
}


/* whole lines: a write cut short goes on where it stopped */

static void
tg_usage_log_out(tg_usage_log *l, const char *p, size_t n, size_t lines)
{
    ssize_t  w;
    size_t   left;

    for (left = n; left > 0; ) {
        w = write(l->fd, p, left);

        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }

            tg_log_error("usage_log.write_failed", "path error records_lost",
                         "usage log %s: write failed: %s; %zu records lost",
                         l->path, strerror(errno), lines);

            pthread_mutex_lock(&l->lock);
            l->stats.write_errors += lines;
            pthread_mutex_unlock(&l->lock);
            return;
        }

        p += w;
        left -= (size_t) w;
    }

    pthread_mutex_lock(&l->lock);
    l->stats.written += lines;
    pthread_mutex_unlock(&l->lock);
}


static int
tg_usage_log_file(const char *path)
{
    return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
}
