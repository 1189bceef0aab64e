#!/usr/bin/perl
#
# Review: "A slot that comes free goes to the oldest waiting request"
# (docs/policy.md, queue).  When a lease ends, policyd only *schedules* the
# wake of the queue (tg_soon, a 0 s timer); a DECIDE handled before that
# timer runs - the next frame of the same read, or another worker's frame in
# the same loop iteration - sees in_flight < max_concurrency and takes the
# slot: tg_decide() never looks at ps->queued when the provider has room.
# The newcomer is served, the request that waited in line waits on (and may
# run out of its budget, then 429).
#
# The module sends REPORT and the next DECIDE in one send() whenever both
# are queued in one event loop iteration, so this is the normal case under
# load, not a corner.  Raw protocol against a real policyd.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use IO::Socket::UNIX;
use Socket qw(SOCK_STREAM);
use Test::More;
use Time::HiRes qw(time);

use Tailgate::Test;
use Tailgate::Proto;

my $t = Tailgate::Test->new->skip_unless_built('policyd');

$t->write_policy({
    providers => {
        gpu => { upstream => 'tg_gpu', zone => 'local', endpoints => ['chat'],
                 max_concurrency => 1 },
    },
    routes => {
        line => { steps => [ { provider => 'gpu', model => 'big' } ],
                  queue => { max_length => 8, max_wait_ms => 3000 } },
    },
});

$t->start_policyd(args => ['-v']);

my $s = IO::Socket::UNIX->new(Peer => $t->policyd_sock, Type => SOCK_STREAM)
    or die "connect: $!";
$s->blocking(0);

sub decide {
    my ($id) = @_;
    return tg_frame(TG_MSG_DECIDE, $id, [TG_F_ENDPOINT, 'str', 'chat'],
                    [TG_F_MODEL, 'str', 'line']);
}

# read frames for up to $secs; by id
sub frames {
    my ($secs) = @_;
    my %by;
    my $end = time + $secs;
    while (time < $end) {
        my $f = tg_read_frame($s, $end - time) or last;
        push @{ $by{$f->{id}} }, $f;
    }
    return \%by;
}

tg_send($s, tg_frame(TG_MSG_HELLO, 0, [TG_F_MAX_FRAME, 'u32', 65536])
            . decide(1));

my $got = frames(0.5);
my ($d1) = grep { $_->{type} == TG_MSG_DECISION } @{ $got->{1} // [] };
ok($d1 && tg_field($d1, TG_F_STATUS) == 200, 'request 1 gets the slot');
my $lease = $d1 ? tg_field($d1, TG_F_LEASE) : 0;
ok($lease, "with lease $lease");

tg_send($s, decide(2));
$got = frames(0.5);
is(($got->{2}[0] // {})->{type}, TG_MSG_QUEUED, 'request 2 waits in line');

# request 1 ends; request 3 arrives in the same write (as the module
# batches frames of one event loop iteration)

tg_send($s, tg_frame(TG_MSG_REPORT, 0, [TG_F_LEASE, 'u32', $lease],
                     [TG_F_PROVIDER, 'str', 'gpu'], [TG_F_ROUTE, 'str', 'line'],
                     [TG_F_OUTCOME, 'str', 'ok'])
            . decide(3));

$got = frames(1);

my ($d2) = grep { $_->{type} == TG_MSG_DECISION } @{ $got->{2} // [] };
my ($d3) = grep { $_->{type} == TG_MSG_DECISION } @{ $got->{3} // [] };
my ($q3) = grep { $_->{type} == TG_MSG_QUEUED } @{ $got->{3} // [] };

ok($d2 && tg_field($d2, TG_F_STATUS) == 200,
   'the slot goes to request 2, which waited')
    or diag('request 2 got: '
            . ($d2 ? 'DECISION ' . tg_field($d2, TG_F_STATUS) : 'nothing yet'));
ok(!$d3 && $q3, 'request 3, the newcomer, waits behind it')
    or diag('request 3 got: '
            . ($d3 ? 'DECISION ' . tg_field($d3, TG_F_STATUS)
                     . ' lease ' . (tg_field($d3, TG_F_LEASE) // 0)
                   : 'no decision'));

close $s;

$t->done_testing;
