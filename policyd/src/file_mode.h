/*
 * Files that hold secrets, or say where secrets go: the policy and the
 * environment file the provider keys come from.  policyd refuses them
 * when every user of the machine may read or write them.
 */

#ifndef TG_FILE_MODE_H
#define TG_FILE_MODE_H

#include <stddef.h>
#include <sys/types.h>


#define TG_FILE_MODE_MSG_LEN  512

/*
 * 0 when no one but the file's owner and group has any access to file;
 * -1 otherwise, or when it cannot be looked at, with a message in msg
 * that names the mode and the fix ("mode 0644: ... chmod o-rwx FILE");
 * the caller names the file.
 */
int tg_file_mode_check(const char *file, char *msg, size_t len);

/* The same for a mode already known (fstat() of an open file). */
int tg_file_mode_judge(mode_t mode, const char *file, char *msg, size_t len);

#endif /* TG_FILE_MODE_H */
