/*
 * Unix sockets, and nothing else of the daemon: the listening ones of the
 * policy ("listen", "admin_listen"), and the client's side that "policyd
 * explain" and "policyd status" use.
 */

#ifndef TG_SOCK_H
#define TG_SOCK_H

#include <stdbool.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>

#include "policy.h"


/* a listening Unix socket of ours */
typedef struct {
    int              fd;
    char             path[sizeof(((struct sockaddr_un *) 0)->sun_path)];
    dev_t            dev;
    ino_t            ino;
    bool             created;
} tg_sock;


/*
 * Listens on l->path, non-blocking, with l's mode and group.  0, or -1
 * after logging why.
 */
int tg_sock_open(tg_sock *s, const tg_listen *l);

/* Closes it, and removes the file if it is still the one we made. */
void tg_sock_close(tg_sock *s);

/*
 * Connects to the socket at path, sends and receives giving up after
 * timeout seconds.  The descriptor, or TG_SOCK_NO_SOCKET when socket()
 * failed, TG_SOCK_NO_CONNECT when connect() did; errno says why.
 */
#define TG_SOCK_NO_SOCKET   (-1)
#define TG_SOCK_NO_CONNECT  (-2)

int tg_sock_connect(const char *path, int timeout);


#endif /* TG_SOCK_H */
