/*
 * The policy's "upstream_dns": nginx upstream {} blocks whose servers
 * follow a provider's DNS name (docs/operations.md, "Providers whose
 * addresses change").  Read by policy_dns.c, used by dns_watch.c.
 */

#ifndef TG_DNS_CONF_H
#define TG_DNS_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>


#define TG_DNS_INTERVAL_DEFAULT   30000      /* ms between rounds */
#define TG_DNS_INTERVAL_MIN       100
#define TG_DNS_INTERVAL_MAX       86400000
#define TG_DNS_TIMEOUT_DEFAULT    2000       /* ms one question may take */
#define TG_DNS_TIMEOUT_MAX        30000
#define TG_DNS_NAMES_MAX          64
#define TG_DNS_ADDRS_MAX          32         /* servers of one upstream */
#define TG_DNS_DIR_MAX            200


typedef struct {
    const char  *upstream;          /* the nginx upstream {}: its file */
    const char  *host;              /* the DNS name, or an address */
    uint16_t     port;
} tg_dns_name;


typedef struct {
    bool          enabled;
    const char   *dir;              /* UPSTREAM.conf files go here */
    uint32_t      interval_ms;
    uint32_t      timeout_ms;
    const char   *nameserver;       /* an IPv4 address, or NULL: resolv.conf */
    uint16_t      nameserver_port;
    const char   *nginx_pid;        /* SIGHUP its process; NULL: nobody */
    tg_dns_name  *names;
    size_t        nnames;
} tg_dns_conf;


#endif /* TG_DNS_CONF_H */
