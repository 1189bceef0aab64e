/*
 * What policyd calls itself: in HELLO_OK, in the status, in its first log
 * line.
 */

#ifndef TG_VERSION_H
#define TG_VERSION_H


#define TG_SOFTWARE  "policyd/0.1"


#endif /* TG_VERSION_H */
