/*
 * Refusing files that every user may read or write (file_mode.h).  The
 * bits for "others" are the whole test: the owner and the group are the
 * operator's to choose (root:tailgate 0640 for the policy, root 0600 for
 * an environment file that only systemd reads).
 */

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "file_mode.h"


int
tg_file_mode_check(const char *file, char *msg, size_t len)
{
    struct stat  st;

    if (stat(file, &st) == -1) {
        snprintf(msg, len, "cannot look at its mode: %s", strerror(errno));
        return -1;
    }

    return tg_file_mode_judge(st.st_mode, file, msg, len);
}


int
tg_file_mode_judge(mode_t mode, const char *file, char *msg, size_t len)
{
    const char  *may;

    if ((mode & (S_IROTH | S_IWOTH | S_IXOTH)) == 0) {
        return 0;
    }

    if ((mode & S_IWOTH) && (mode & S_IROTH)) {
        may = "read and write";
    } else if (mode & S_IWOTH) {
        may = "write";
    } else if (mode & S_IROTH) {
        may = "read";
    } else {
        may = "open";
    }

    snprintf(msg, len, "mode %04o: every user of this machine can %s it, "
             "and it holds or names secrets; refused. Fix: chmod o-rwx %s",
             (unsigned) (mode & 07777), may, file);

    return -1;
}
