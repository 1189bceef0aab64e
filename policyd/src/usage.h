/*
 * Usage and cost (docs/policy.md, "Usage and cost"): what each REPORT
 * says an attempt used, its cost from the prices of its provider model,
 * counted per route, provider and client for the status, and written as
 * one JSON line to the usage log.
 *
 * The loop only formats a line and copies it into the log's buffer
 * (usage_log.c); a thread of the log's own writes it.  Nothing here waits
 * for a disk.
 */

#ifndef TG_USAGE_H
#define TG_USAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "policy.h"
#include "proto.h"
#include "state.h"


/* the label of the clients beyond usage.max_clients, and of no client */
#define TG_USAGE_OTHER      "_other"
#define TG_USAGE_NOBODY     "_none"

/* routes and providers counted by name at most (beyond: "_other") */
#define TG_USAGE_NAMES_MAX  4096

/* one record's line at most; a longer one is cut to its numbers */
#define TG_USAGE_LINE_MAX   8192


/* what a set of requests used */
typedef struct {
    uint64_t        requests;
    uint64_t        input;
    uint64_t        cached;
    uint64_t        output;
    uint64_t        reasoning;
    uint64_t        estimated;          /* requests with estimated tokens */
    uint64_t        cost;               /* pico-units */
} tg_usage_tally;


typedef struct {
    char            *name;
    tg_usage_tally   tally;
} tg_usage_entry;


/* tallies by name, at most max names; the others in one "_other" entry */
typedef struct {
    tg_usage_entry  *entries;           /* in order of first use */
    size_t           n;
    size_t           cap;
    uint32_t        *table;             /* open addressing: index + 1 */
    size_t           mask;
    tg_usage_tally   other;
    uint64_t         folded;            /* requests counted in other */
} tg_usage_names;


typedef struct tg_usage_log  tg_usage_log;

typedef struct {
    uint64_t        records;            /* lines handed to the writer */
    uint64_t        written;            /* of those, written */
    uint64_t        dropped;            /* the buffer was full */
    uint64_t        write_errors;
    uint64_t        reopened;
} tg_usage_log_stats;


typedef struct tg_usage {
    tg_usage_names   routes;
    tg_usage_names   providers;
    tg_usage_names   clients;
    tg_usage_tally   total;
    uint64_t         unpriced;          /* requests of models without a
                                           price */
    uint64_t         overflows;         /* costs beyond 64 bits */

    tg_usage_log    *log;               /* NULL: no usage log */
    tg_usage_log_stats  closed;         /* of the logs closed before */
    char            *log_path;
    char            *line;              /* TG_USAGE_LINE_MAX */
} tg_usage;


/* Reads one REPORT field of usage into r: 1, 0 when it is none, -1 bad */
int tg_usage_field(tg_report *r, const tg_field *f);

/* Sets r->price, r->cost and r->cost_overflow from the policy's prices. */
void tg_usage_cost(const tg_policy *policy, tg_report *r);

/*
 * The usage record of r as one JSON line, '\n' included, into buf: its
 * length, or 0 when it does not fit.  now: seconds since the epoch.
 */
size_t tg_usage_line(const tg_report *r, const tg_usage_conf *conf,
    double now, char *buf, size_t size);

/* A tally of names (routes, clients ...): the entry of name, or NULL. */
void tg_usage_names_init(tg_usage_names *t);
void tg_usage_names_free(tg_usage_names *t);
tg_usage_tally *tg_usage_names_get(tg_usage_names *t, const char *name,
    size_t len, size_t max);
void tg_usage_tally_add(tg_usage_tally *t, const tg_report *r);


/* the daemon's: server.c and frames.c */

tg_usage *tg_usage_new(void);

/* Closes the log after writing all it holds, and frees u.  NULL is fine. */
void tg_usage_free(tg_usage *u);

/*
 * Opens the policy's usage log, or reopens it when the path changed (and
 * closes it when the policy has none): 0, or -1 with the error logged
 * (then the log stays as it was).
 */
int tg_usage_configure(tg_usage *u, const tg_policy *policy);

/* Counts r, and writes its record when there is a usage log. */
void tg_usage_account(tg_usage *u, const tg_policy *policy,
    const tg_state *state, const tg_report *r, double now);

/* SIGHUP: write what waits now; SIGUSR1: the same, then open it again */
void tg_usage_flush(tg_usage *u);
void tg_usage_reopen(tg_usage *u);

void tg_usage_stats(const tg_usage *u, tg_usage_log_stats *st);


/* usage_log.c: a file written by a thread of its own, never waited for */

/* Opens path for appending and starts the writer: NULL, errno set. */
tg_usage_log *tg_usage_log_open(const char *path, size_t buffer_bytes);

/* Copies a line in: 0, or -1 when the buffer is full (counted: dropped). */
int tg_usage_log_write(tg_usage_log *l, const char *line, size_t len);

void tg_usage_log_flush(tg_usage_log *l);
void tg_usage_log_reopen(tg_usage_log *l);

/* Writes everything, stops the writer, closes the file; _stats: and says
   what it counted. */
void tg_usage_log_close(tg_usage_log *l);
void tg_usage_log_close_stats(tg_usage_log *l, tg_usage_log_stats *st);

void tg_usage_log_stats_get(tg_usage_log *l, tg_usage_log_stats *st);


#endif /* TG_USAGE_H */
