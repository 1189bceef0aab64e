/*
 * What policyd calls itself: in HELLO_OK, in the status, in its first log
 * line.
 */

#ifndef TG_VERSION_H
#define TG_VERSION_H


#define TG_VERSION   "0.1"
#define TG_SOFTWARE  "policyd/" TG_VERSION


#endif /* TG_VERSION_H */
