#!/usr/bin/perl
#
# Review: a probe's "busy" outlives the request that made it busy.
#
# With llama.cpp's /slots (kind llama.cpp + slots_url) and max_concurrency
# equal to the slots - the setup README.md and conf/policy.example.json
# recommend - every probe taken while our own request runs says "all slots
# busy", and the provider's state becomes busy.  When that request ends, its
# lease ends and policyd wakes the queue, but tg_health_at_capacity() still
# sees health == BUSY from the stale probe, so the waiting request stays
# where it is, and new ones are queued or refused (429), until the next
# probe - up to interval_ms (5 s by default) later - finds the slot idle.
# policyd knows better (no lease is held), but the active verdict wins.
# A saturated local model then serves about one request per probe interval
# instead of back to back, and on a route without a queue (conf/
# policy.example.json: "qwen", "embed", ...) one client's *next* request
# after a long one gets 429 provider_busy from an idle server.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use POSIX ();
use Test::More;
use Time::HiRes qw(sleep time);
use Tailgate::Gateway;

my $t = Tailgate::Gateway->new->skip_unless_built;

my $interval = 2.0;

my $policy = {
    providers => {
        local => { upstream => 'tg_local', zone => 'local',
                   endpoints => ['chat'], max_concurrency => 1,
                   health => { kind => 'llama.cpp',
                               url => 'http://%%MOCK:local%%/health',
                               slots_url => 'http://%%MOCK:local%%/slots',
                               interval_ms => $interval * 1000,
                               timeout_ms => 300 } },
    },
    routes => {
        line => { steps => [ { provider => 'local', model => 'l' } ],
                  queue => { max_length => 4, max_wait_ms => 10000 } },
        only => { steps => [ { provider => 'local', model => 'l' } ] },
    },
};

$t->mock_provider('local', slots => 1);
$t->start_gateway(policy => $policy, policyd_args => ['-v'], timeout => '1s');

my $local = $t->mock('local');

sub nprobes { scalar @{ $local->probes } }

# right after a probe, start A, which runs a little longer than an interval:
# the next probe sees its slot busy

my $n = nprobes();
ok($t->wait_for(sub { nprobes() > $n && nprobes() % 2 == 0 }, timeout => 10),
   'a probe (health + slots) just ran');

my $hold = $interval + 0.6;
$local->update(delay_ms => int($hold * 1000));

my @kids;
sub bg {
    my ($user) = @_;
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        $t->chat('line', body => { user => $user }, timeout => 20);
        POSIX::_exit(0);
    }
    push @kids, $pid;
}

bg('A');
ok($local->wait_requests(1, timeout => 5), 'A runs on local');
ok($t->wait_log('policyd.log', qr/probe busy .*all 1 slots busy/,
                timeout => 5),
   'a probe during A finds every slot busy');
unlike($t->read_file('policyd.log'), qr/provider local is busy/,
   'that busy slot is our own lease: local is not judged busy');

$local->update(delay_ms => 0);
bg('B');
ok($t->wait_log('policyd.log', qr/waits for a slot of local/, timeout => 5),
   'B waits in line for A\'s slot');

waitpid $_, 0 for @kids;

my %at = map { ($_->{json}{user} // '') => $_->{ts} } @{ $local->requests };
my $a_end = $at{A} + $hold;
my $gap = defined $at{B} ? $at{B} - $a_end : 999;

cmp_ok($gap, '<', 0.5,
       sprintf('B goes to local as soon as A is done (%.2f s later)', $gap));

# one client, one request after another, on a route without a queue

$n = nprobes();
ok($t->wait_for(sub { nprobes() > $n && nprobes() % 2 == 0 }, timeout => 10),
   'a probe just ran');
$local->update(delay_ms => int($hold * 1000));
my $first = $t->chat('only', timeout => 20);
is($first->{status}, 200, 'a long request on a route without a queue');
$local->update(delay_ms => 0);

my $next = $t->chat('only');
is($next->{status}, 200, 'the same client\'s next request, local idle: 200')
    or diag(($t->error($next) // {})->{code});

$t->done_testing;
