#!/usr/bin/perl
#
# Review: "Probes run on policyd's event loop ... and never hold it up"
# (docs/policy.md, Health; probe.c: "Nothing here blocks; name resolution
# is libcurl's threaded resolver").
#
# A probe whose host name resolves slowly (a DNS server that does not
# answer) times out after timeout_ms; libcurl then ends the transfer
# (multi_done -> Curl_resolver_kill), and the threaded resolver *joins* the
# resolver thread unless CURLOPT_QUICK_EXIT is set: curl_multi_socket_action()
# does not return until getaddrinfo() does.  policyd's whole loop stops
# with it - every DECIDE of every worker waits, and nginx answers
# 503 policy_unavailable once tailgate_policyd_timeout passes.  The same
# happens when a SIGHUP reload removes or restarts a probe that is still
# resolving (curl_multi_remove_handle).
#
# The slow DNS is simulated with an LD_PRELOAD getaddrinfo() that sleeps
# 3 s for one host name; the probe's timeout_ms is 200.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use IO::Socket::UNIX;
use Socket qw(SOCK_STREAM);
use Test::More;
use Time::HiRes qw(time sleep);

use Tailgate::Test;
use Tailgate::Proto;

my $t = Tailgate::Test->new->skip_unless_built('policyd');

plan skip_all => 'policyd built with a sanitizer: LD_PRELOAD would conflict'
    if ($ENV{TAILGATE_POLICYD} // '') =~ /asan/;

my $cc = $ENV{CC} // 'cc';
my $dir = $t->dir;

$t->write_file('slowdns.c', <<'EOF');
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netdb.h>
#include <string.h>
#include <unistd.h>

int
getaddrinfo(const char *node, const char *service,
    const struct addrinfo *hints, struct addrinfo **res)
{
    static int (*real)(const char *, const char *, const struct addrinfo *,
                       struct addrinfo **);

    if (real == NULL) {
        real = (int (*)(const char *, const char *, const struct addrinfo *,
                        struct addrinfo **)) dlsym(RTLD_NEXT, "getaddrinfo");
    }

    if (node != NULL && strstr(node, "slowdns") != NULL) {
        sleep(3);               /* a resolver that does not answer */
        return EAI_AGAIN;
    }

    return real(node, service, hints, res);
}
EOF

system("$cc -shared -fPIC -o $dir/slowdns.so $dir/slowdns.c -ldl 2>/dev/null") == 0
    or plan skip_all => 'no C compiler for the getaddrinfo shim';

$t->write_policy({
    providers => {
        gpu => { upstream => 'tg_gpu', zone => 'local', endpoints => ['chat'],
                 health => { url => 'http://gpu.slowdns.test:9/health',
                             interval_ms => 1000, timeout_ms => 200,
                             down_after => 1 } },
    },
    routes => { r => { steps => [ { provider => 'gpu', model => 'm' } ] } },
});

$t->start_policyd(env => { LD_PRELOAD => "$dir/slowdns.so" });

my $s = IO::Socket::UNIX->new(Peer => $t->policyd_sock, Type => SOCK_STREAM)
    or die "connect: $!";
$s->blocking(0);

# ask every 50 ms for 5 s: how long does the slowest answer take?

my ($max, $n, $id) = (0, 0, 0);
my $end = time + 5;

while (time < $end) {
    my $t0 = time;
    tg_send($s, tg_frame(TG_MSG_DECIDE, ++$id, [TG_F_ENDPOINT, 'str', 'chat'],
                         [TG_F_MODEL, 'str', 'r']));
    my $f = tg_read_frame($s, 10);
    my $dt = time - $t0;
    $n++ if $f;
    $max = $dt if $dt > $max;
    sleep 0.05;
}

ok($n > 10, "policyd answered $n DECIDEs");
cmp_ok($max, '<', 0.5,
       sprintf('no DECIDE waited long while a probe could not resolve its '
               . 'host (slowest: %.2f s)', $max));

like($t->policyd_log, qr/provider gpu is down/,
     'the probes did fail (the provider is down)');

$t->done_testing;
