#!/usr/bin/perl
#
# policyd's event loop keeps going whatever its surroundings do: out of
# file descriptors, its admin listener pauses like the worker listener
# instead of spinning; a probe whose host name never resolves holds up no
# DECIDE ("Probes run on policyd's event loop ... and never hold it up",
# docs/policy.md, Health).

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

# EMFILE on the admin socket: a listener left readable would call back at
# once, and policyd would spin writing "accept() failed: Too many open
# files" for as long as the descriptors stay used up.  One `policyd
# status` from a monitoring job while policyd is out of descriptors is
# enough.

{
    $t->write_policy({
        providers => { gpu => { upstream => 'tg_gpu', zone => 'local',
                                endpoints => ['chat'] } },
        routes => { r => { steps => [ { provider => 'gpu', model => 'm' } ] } },
    });

    my $sock = $t->policyd_sock;
    my $admin = $t->dir . '/admin.sock';
    my $policyd = $t->policyd_binary;
    my $conf = $t->dir . '/policy.json';

    # few descriptors: a handful of worker connections use them all up
    $t->spawn('policyd', [ '/bin/sh', '-c',
        "ulimit -n 24 && exec $policyd -c $conf -s $sock -a $admin" ],
        log => 'policyd.log');

    ok($t->wait_for(sub { -S $admin }, timeout => 10), 'policyd listens')
        or BAIL_OUT($t->policyd_log);

    my @conns;
    for (1 .. 40) {
        my $c = IO::Socket::UNIX->new(Peer => $sock, Type => SOCK_STREAM) or last;
        push @conns, $c;
    }
    sleep 0.3;

    like($t->policyd_log, qr/accept\(\) failed: Too many open files; pausing/,
         'policyd ran out of descriptors (its worker listener pauses)');

    my $a = IO::Socket::UNIX->new(Peer => $admin, Type => SOCK_STREAM);
    ok($a, 'an operator connects to the admin socket');
    print $a "status\n" if $a;

    sleep 1;

    my $n = () = $t->policyd_log =~ /admin socket: accept\(\) failed/g;
    cmp_ok($n, '<', 100, "the admin listener does not spin ($n accept "
                         . 'failures logged in a second)');

    close $_ for @conns;
    close $a if $a;
    $t->stop_proc('policyd');
}

# a probe whose host name resolves slowly (a DNS server that does not
# answer) times out after timeout_ms; ending that transfer must not wait
# for the resolver thread (libcurl joins it unless told otherwise), or
# policyd's whole loop stops with it and nginx answers 503
# policy_unavailable once tailgate_policyd_timeout passes.  The slow DNS
# is an LD_PRELOAD getaddrinfo() that sleeps 3 s for one host name; the
# probe's timeout_ms is 200.

SKIP: {
    skip 'policyd built with a sanitizer: LD_PRELOAD would conflict', 4
        if ($ENV{TAILGATE_POLICYD} // '') =~ /asan/;

    my $t2 = Tailgate::Test->new;

    my $cc = $ENV{CC} // 'cc';
    my $dir = $t2->dir;

    $t2->write_file('slowdns.c', <<'EOF');
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

    skip 'no C compiler for the getaddrinfo shim', 4
        unless system("$cc -shared -fPIC -o $dir/slowdns.so $dir/slowdns.c -ldl 2>/dev/null") == 0;

    $t2->write_policy({
        providers => {
            gpu => { upstream => 'tg_gpu', zone => 'local', endpoints => ['chat'],
                     health => { url => 'http://gpu.slowdns.test:9/health',
                                 interval_ms => 1000, timeout_ms => 200,
                                 down_after => 1 } },
        },
        routes => { r => { steps => [ { provider => 'gpu', model => 'm' } ] } },
    });

    $t2->start_policyd(env => { LD_PRELOAD => "$dir/slowdns.so" });

    my $s = tg_connect($t2->policyd_sock);

    # ask every 50 ms for 5 s: how long does the slowest answer take?

    my ($max, $n, $id) = (0, 0, 0);
    my $end = time + 5;

    while (time < $end) {
        my $t0 = time;
        tg_send($s, tg_decide(++$id, 'r'));
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

    like($t2->policyd_log, qr/provider gpu is down/,
         'the probes did fail (the provider is down)');

    $t2->stop_and_check('error.log is clean after the probes that could not resolve');
}

$t->done_testing;
