#!/usr/bin/perl
#
# Review: a decision that passed over a step because its provider was at
# capacity ("fallback": {"on": "busy"}) must not be reused once the
# provider has room again - "local first, when the task fits".
#
# tg_decide() gives such a decision cache_ms = decision_cache_ms whenever
# the chosen step's own provider has no max_concurrency: the busy step
# passed over does not count.  policyd sends INVALIDATE only on a reload,
# so workers keep sending the route's later (here: external) provider
# requests that the local one could take, for up to decision_cache_ms
# (60 s at most).  docs/policy.md: "a reload or a change of a provider's
# state makes workers forget them at once".

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use POSIX ();
use Test::More;
use Time::HiRes qw(sleep);
use Tailgate::Gateway;

my $t = Tailgate::Gateway->new->skip_unless_built;

my $policy = {
    decision_cache_ms => 30000,
    providers => {
        local => { upstream => 'tg_local', zone => 'local',
                   endpoints => ['chat'], max_concurrency => 1 },
        ext   => { upstream => 'tg_ext', zone => 'external',
                   endpoints => ['chat'], api_key => '${EXT_API_KEY}' },
    },
    routes => {
        b => { steps => [ { provider => 'local', model => 'l' },
                          { provider => 'ext', model => 'e' } ],
               fallback => { on => 'busy' } },
    },
};

$t->start_gateway(policy => $policy);

my %mock = map { $_ => $t->mock($_) } qw(local ext);

# one slow request holds local's only slot

$mock{local}->set(delay_ms => 1500);

my $pid = fork;
die "fork: $!\n" unless defined $pid;

if ($pid == 0) {
    $t->chat('b', timeout => 10);
    POSIX::_exit(0);
}

ok($mock{local}->wait_requests(1, timeout => 5), 'local is busy');

my $res = $t->chat('b');
is($res->{headers}{'x-tailgate-provider'}, 'ext',
   'while local is busy: the next step');

waitpid $pid, 0;
$mock{local}->set();

# the lease is given back (REPORT) when the slow request ends; on a loaded
# machine that may take a moment, but a reused decision would send every
# request to ext for the whole 30 s
ok($t->wait_for(sub { ($t->chat('b')->{headers}{'x-tailgate-provider'} // '')
                      eq 'local' }, timeout => 5),
   'local gets requests again once it has room');

for my $i (1 .. 3) {
    $res = $t->chat('b');
    is($res->{headers}{'x-tailgate-provider'}, 'local',
       "request $i after local has room again goes to local");
}

$t->done_testing;
