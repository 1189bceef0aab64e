#!/usr/bin/perl
#
# Review: the admin socket's accept callback (admin.c tg_admin_accept_cb)
# treats EMFILE/ENFILE like any other error: it logs a warning and returns,
# leaving the connection in the listen queue.  The listening socket stays
# readable, libev calls back at once, and policyd spins at 100% CPU
# writing "admin socket: accept() failed: Too many open files" as fast as
# it can (a million lines a second) for as long as the descriptors stay
# used up - exactly the state the worker listener guards against
# (server.c pauses accepts for a second on EMFILE).  One `policyd status`
# from a monitoring job while policyd is out of descriptors is enough.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use IO::Socket::UNIX;
use Socket qw(SOCK_STREAM);
use Test::More;
use Time::HiRes qw(sleep);

use Tailgate::Test;

my $t = Tailgate::Test->new->skip_unless_built('policyd');

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

$t->done_testing;
