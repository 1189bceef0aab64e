#!/usr/bin/perl
#
# Two complete gateway nodes (nginx and policyd each) sharing one real
# redis-server: a provider with max_concurrency 1 never sees two requests
# at once whichever node they come through; a provider's 429 with
# Retry-After seen by node A sends node B's requests to the next step too;
# a node SIGKILLed while it holds a lease gives the capacity back within
# the lease TTL, and a policyd restarted while its worker holds a lease
# does not count it twice.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Time::HiRes qw(sleep time);
use Tailgate::Gateway;
use Tailgate::Redis qw(skip_unless_redis start_redis redis_cli start_node
                       node_status);

skip_unless_redis();

my $a = Tailgate::Gateway->new->skip_unless_built;
my $b = Tailgate::Gateway->new;

my $fallback = { on => 'errors', outcomes => ['5xx', '429'] };

my $policy = {
    decision_cache_ms => 0,
    providers => {
        local => { upstream => 'tg_local', zone => 'local',
                   endpoints => ['chat'], max_concurrency => 1 },
        cool  => { upstream => 'tg_cool', zone => 'external',
                   endpoints => ['chat'] },
        ext   => { upstream => 'tg_ext', zone => 'external',
                   api_key => '${EXT_API_KEY}', endpoints => ['chat'] },
    },
    routes => {
        line   => { steps => [{ provider => 'local', model => 'l' }],
                    queue => { max_length => 32, max_wait_ms => 25000 } },
        only   => { steps => [{ provider => 'local', model => 'l' }] },
        cooled => { steps => [{ provider => 'cool', model => 'c' },
                              { provider => 'ext', model => 'e' }],
                    fallback => $fallback },
    },
};

start_redis($a);

$a->mock_provider('local', max_concurrency => 1, delay_ms => 150);
start_node($a, $a, name => 'a', policy => $policy, workers => 2);
start_node($a, $b, name => 'b', policy => $policy, mocks_of => $a,
           workers => 2);

my %mock = map { $_ => $a->mock($_) } qw(local cool ext);
my %node = (a => $a, b => $b);

sub by { my ($t, $route) = @_; $t->answered_by($t->chat($route)) }

sub provider_status {
    my ($t, $name) = @_;
    my $doc = node_status($t) or return undef;
    my ($p) = grep { $_->{name} eq $name } @{ $doc->{providers} };
    return $p;
}

for my $n (qw(a b)) {
    my $up = $node{$n}->wait_for(sub {
        my $doc = node_status($node{$n});
        $doc && $doc->{policyd}{redis} && $doc->{policyd}{redis}{state} eq 'up';
    }, timeout => 10, interval => 0.1);
    ok($up, "node $n: policyd status says redis is up");
}

is(node_status($b)->{policyd}{redis}{node}, 'b', 'status names the node');

subtest 'max_concurrency 1 across both nodes' => sub {
    $mock{local}->clear;

    my @got = $a->parallel(20, sub {
        my ($i) = @_;
        my $t = $i % 2 ? $b : $a;
        return $t->answered_by($t->chat('line'));
    }, timeout => 60);

    is(scalar(grep { $_ eq 'local' } @got), 20,
       'all 20 served by local, through both nodes')
        or diag("answers: @got");
    is($mock{local}->max_concurrent_seen, 1,
       'the mock never saw two at once');
    is(scalar(grep { $_->{refused} } @{ $mock{local}->requests }), 0,
       'it refused none');
    is(scalar @{ $mock{local}->requests }, 20, 'it got each once');

    my $left = $a->wait_for(sub {
        (redis_cli($a, 'ZCARD', '{tg:provider:local}:leases') // -1) == 0
    }, timeout => 10, interval => 0.1);
    ok($left, 'no lease left in Redis once they are done');
};

subtest "a 429 with Retry-After seen by node A cools the provider for B" => sub {
    $mock{cool}->set(mode => 'status', status => 429, retry_after => 4);

    my $n = scalar @{ $mock{cool}->requests };
    is(by($a, 'cooled'), 'ext', 'node A: the 429 falls back');
    $mock{cool}->set(mode => 'ok');

    my $pttl = redis_cli($a, 'PTTL', '{tg:provider:cool}:cool') // -2;
    ok($pttl > 0 && $pttl <= 4000, "Redis holds the cooldown ($pttl ms)");

    my $seen = $b->wait_for(sub {
        my $p = provider_status($b, 'cool');
        $p && $p->{limits} && ($p->{limits}{cooldown_ms} // 0) > 0;
    }, timeout => 5, interval => 0.05);
    ok($seen, 'node B knows of the cooldown');

    is_deeply([ map { by($b, 'cooled') } 1 .. 3 ], [qw(ext ext ext)],
              'node B: the next step at once');
    is(scalar @{ $mock{cool}->requests } - $n, 1, 'cool got only the first');

    my $back = $b->wait_for(sub { by($b, 'cooled') eq 'cool' },
                            timeout => 15, interval => 0.25);
    ok($back, 'once the time passed, node B goes back to it');
};

subtest 'a restarted policyd does not count its leases twice' => sub {
    $mock{local}->set(delay_ms => 3000);
    $mock{local}->clear;

    my $pid = fork // die "fork: $!";
    if ($pid == 0) { $a->chat('only'); POSIX::_exit(0) }

    ok($a->wait_for(sub { scalar @{ $mock{local}->requests } >= 1 },
                    timeout => 10, interval => 0.05), 'a request holds local');

    $a->kill_policyd;
    $a->start_policyd(env => { EXT_API_KEY => 'x' },
                      args => ['-a', $a->dir . '/admin.sock']);

    my $one = $a->wait_for(sub {
        my $p = provider_status($a, 'local');
        $p && $p->{in_flight} == 1;
    }, timeout => 10, interval => 0.1);
    ok($one, "the worker re-announced its lease to the new policyd");

    my $card;
    $a->wait_for(sub {
        $card = redis_cli($a, 'ZCARD', '{tg:provider:local}:leases') // -1;
        $card == 1;
    }, timeout => 5, interval => 0.1);
    is($card, 1, 'Redis counts it once');

    is(by($b, 'only'), 429, 'node B: local is at capacity');

    waitpid($pid, 0);
};

subtest 'a node SIGKILLed holding a lease: capacity back within the TTL' => sub {
    $mock{local}->set(delay_ms => 20000);
    $mock{local}->clear;

    my $pid = fork // die "fork: $!";
    if ($pid == 0) { $a->chat('only', timeout => 30); POSIX::_exit(0) }

    ok($a->wait_for(sub { scalar @{ $mock{local}->requests } >= 1 },
                    timeout => 10, interval => 0.05), 'node A holds local');

    my $held = $b->wait_for(sub { by($b, 'only') eq '429' },
                            timeout => 5, interval => 0.1);
    ok($held, 'node B: at capacity while A holds it');

    $mock{local}->set(delay_ms => 10);

    # policyd first: a worker that goes would end its leases
    my $t0 = time;
    $a->kill_policyd;
    $a->stop_proc('nginx', signal => 'KILL', group => 1);

    is(by($b, 'only'), 429, 'node B: still held right after');

    my $back = $b->wait_for(sub { by($b, 'only') eq 'local' },
                            timeout => 15, interval => 0.1);
    ok($back, 'node B gets the slot once the dead node\'s lease expired');
    note(sprintf 'back %.1f s after the kill (lease_ttl_ms 2000)',
                 time - $t0);

    kill 'KILL', $pid;
    waitpid($pid, 0);
};

$b->stop_and_check('nginx');
done_testing();
