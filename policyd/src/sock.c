/*
 * Unix sockets: listening ones that replace a stale socket of a dead
 * policyd but never a live one or another file, and the client's side.
 */

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"
#include "sock.h"


#define TG_LISTEN_BACKLOG     511


/*
 * A listening Unix socket: a stale one left by a dead policyd is replaced,
 * a live one or any other file stops us; it is created owner-only and then
 * given its mode and group.
 */

int
tg_sock_open(tg_sock *s, const tg_listen *l)
{
    int                  fd;
    mode_t               old_umask;
    struct stat          st;
    struct sockaddr_un   sa;

    if (l->path == NULL || strlen(l->path) >= sizeof(sa.sun_path)) {
        tg_log_error("socket.path_too_long", "max_bytes",
                     "socket path is missing or longer than %zu bytes",
                     sizeof(sa.sun_path) - 1);
        return -1;
    }

    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, l->path, strlen(l->path) + 1);
    memcpy(s->path, l->path, strlen(l->path) + 1);

    /* a file is there: a stale socket goes, anything else stops us */

    if (lstat(l->path, &st) == 0) {

        if (!S_ISSOCK(st.st_mode)) {
            tg_log_error("socket.not_a_socket", "path",
                         "%s exists and is not a socket; not touching it",
                         l->path);
            return -1;
        }

        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd == -1) {
            tg_log_error("socket.failed", "error",
                         "socket() failed: %s", strerror(errno));
            return -1;
        }

        if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) == 0
            || errno == EAGAIN || errno == EINPROGRESS)
        {
            tg_log_error("socket.in_use", "path",
                         "another process (policyd?) is listening on %s",
                         l->path);
            close(fd);
            return -1;
        }

        if (errno != ECONNREFUSED) {
            tg_log_error("socket.probe_failed", "path error",
                         "cannot tell whether %s is in use: %s", l->path,
                         strerror(errno));
            close(fd);
            return -1;
        }

        close(fd);

        tg_log_info("socket.stale_removed", "path",
                    "removing stale socket %s", l->path);

        if (unlink(l->path) == -1 && errno != ENOENT) {
            tg_log_error("socket.unlink_failed", "path error",
                         "unlink(%s) failed: %s", l->path, strerror(errno));
            return -1;
        }

    } else if (errno != ENOENT) {
        tg_log_error("socket.stat_failed", "path error",
                     "stat(%s) failed: %s", l->path, strerror(errno));
        return -1;
    }

    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1) {
        tg_log_error("socket.failed", "error",
                     "socket() failed: %s", strerror(errno));
        return -1;
    }

    /* created owner-only, opened up by chmod() below */

    old_umask = umask(0177);

    if (bind(fd, (struct sockaddr *) &sa, sizeof(sa)) == -1) {
        umask(old_umask);
        tg_log_error("socket.bind_failed", "path error",
                     "bind(%s) failed: %s", l->path, strerror(errno));
        close(fd);
        return -1;
    }

    umask(old_umask);

    s->fd = fd;
    s->created = true;

    if (stat(l->path, &st) == 0) {
        s->dev = st.st_dev;
        s->ino = st.st_ino;
    }

    if (chmod(l->path, l->mode) == -1) {
        tg_log_error("socket.chmod_failed", "path mode error",
                     "chmod(%s, %04o) failed: %s", l->path,
                     (unsigned) l->mode, strerror(errno));
        tg_sock_close(s);
        return -1;
    }

    if (l->group != NULL && chown(l->path, (uid_t) -1, l->gid) == -1) {
        tg_log_error("socket.chown_failed", "path group error",
                     "chown(%s, group %s) failed: %s", l->path, l->group,
                     strerror(errno));
        tg_sock_close(s);
        return -1;
    }

    if (listen(fd, TG_LISTEN_BACKLOG) == -1) {
        tg_log_error("socket.listen_failed", "path error",
                     "listen(%s) failed: %s", l->path, strerror(errno));
        tg_sock_close(s);
        return -1;
    }

    return 0;
}


void
tg_sock_close(tg_sock *s)
{
    struct stat  st;

    if (s->fd != -1) {
        close(s->fd);
        s->fd = -1;
    }

    /* remove the socket only if it is still the one we made */

    if (s->created) {
        s->created = false;

        if (lstat(s->path, &st) == 0 && S_ISSOCK(st.st_mode)
            && st.st_dev == s->dev && st.st_ino == s->ino)
        {
            if (unlink(s->path) == -1) {
                tg_log_warn("socket.unlink_failed", "path error",
                            "unlink(%s) failed: %s", s->path,
                            strerror(errno));
            }
        }
    }
}


int
tg_sock_connect(const char *path, int timeout)
{
    int                  fd, err;
    struct timeval       tv;
    struct sockaddr_un   sa;

    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd == -1) {
        return TG_SOCK_NO_SOCKET;
    }

    tv.tv_sec = timeout;
    tv.tv_usec = 0;
    (void) setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    (void) setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));

    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, path, strlen(path));

    if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) != 0) {
        err = errno;
        close(fd);
        errno = err;
        return TG_SOCK_NO_CONNECT;
    }

    return fd;
}
