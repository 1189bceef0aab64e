#!/usr/bin/perl
#
# Reconciling after Redis comes back (docs/policy.md, "When Redis comes
# back"): two complete gateway nodes share one real redis-server with
# on_redis_error "local".  While Redis is away each node counts alone at
# its share; when it answers again each node sends what it took and spent
# alone, so that:
#   - a day budget spent on node A while Redis was killed (and restarted
#     empty) is in Redis after, and node B is refused once A's spend
#     alone plus B's reaches the budget;
#   - requests taken on both nodes while Redis was stopped (SIGSTOP) are
#     in Redis's rpm window after SIGCONT: the next request, on either
#     node, is limited by them;
#   - one log line says what was reconciled.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use JSON::PP ();
use Test::More;
use Time::HiRes qw(sleep);
use Tailgate::Gateway;
use Tailgate::Redis qw(skip_unless_redis start_redis kill_redis redis_cli
                       start_node node_status);

skip_unless_redis();

my $a = Tailgate::Gateway->new->skip_unless_built;
my $b = Tailgate::Gateway->new;

my $JSON = JSON::PP->new->canonical->utf8;

my $policy = {
    decision_cache_ms => 0,
    providers => {
        local => { upstream => 'tg_local', zone => 'local',
                   endpoints => ['chat'], models => ['l'] },
    },
    routes => {
        plain => { steps => [{ provider => 'local', model => 'l' }] },
    },
    limits => {
        profiles => {
            cheap => { budget => { day => 10 } },
            four  => { rpm => 4 },
        },
    },
    # 0.5 a token: 4 + 6 tokens cost 5.0
    usage => { currency => 'USD',
               prices => { local => { l => { input => 500000,
                                             output => 500000 } } } },
};

my (%key, @records);
for my $c ([frank => 'cheap'], [rita => 'four'], [sam => 'four']) {
    $key{$c->[0]} = $a->new_key;
    push @records, $c->[0] => { key => $key{$c->[0]}, limit => $c->[1] };
}

start_redis($a);

$a->mock_provider('local');
start_node($a, $a, name => 'a', policy => $policy,
           start => { keys => [@records] });
start_node($a, $b, name => 'b', policy => $policy, mocks_of => $a,
           start => { keys => [@records] });

my $used = { 'X-Mock-Control' => $JSON->encode(
    { usage => { prompt_tokens => 4, completion_tokens => 6 } }) };

sub redis_state {
    my $doc = node_status($_[0]) or return '';
    return $doc->{policyd}{redis}{state} // '';
}

sub wait_state {
    my ($t, $state) = @_;
    return $t->wait_for(sub { redis_state($t) eq $state }, timeout => 15,
                        interval => 0.1);
}

sub limits_field {
    my ($client, $field, $profile) = @_;
    return redis_cli($a, 'HGET', "{tg:limits}:c|$profile|$client", $field);
}

ok(wait_state($a, 'up') && wait_state($b, 'up'), 'both nodes: redis is up');

subtest 'a budget spent on A while Redis was killed counts at B after' => sub {
    kill_redis($a);
    ok(wait_state($a, 'down') && wait_state($b, 'down'), 'both see it down');

    my $r = $a->chat('plain', key => $key{frank}, headers => $used);
    is($r->{status}, 200, 'node A alone: 5.0 of its share (5.0)');
    sleep 0.6;          # its REPORT is read while Redis is still away
    $a->is_openai_error($a->chat('plain', key => $key{frank},
                                 headers => $used),
                        429, 'insufficient_quota', 'node A: its share spent');

    start_redis($a);
    ok(wait_state($a, 'up') && wait_state($b, 'up'), 'both reconnect');

    ok($a->wait_for(sub {
        (limits_field('frank', 'ds', 'cheap') // 0) >= 5e9
    }, timeout => 5, interval => 0.1),
       'Redis, restarted empty, holds what A spent alone (5.0)')
        or diag 'ds: ' . (limits_field('frank', 'ds', 'cheap') // 'none');
    ok((limits_field('frank', 'ms', 'cheap') // 0) >= 5e9, 'and the month');
    my @lines = grep { /reconciled what this node counted alone/ }
                split /\n/, $a->policyd_log;
    is(scalar @lines, 1, 'one log line says what was reconciled');
    like($lines[0] // '', qr/: 1 counters, .*spend 5000000000 nano-units today, 0 dropped/,
         'one counter, the day\'s 5.0')
        or diag $lines[0];
    note $lines[0] // '';

    is($b->chat('plain', key => $key{frank}, headers => $used)->{status}, 200,
       'node B: 5.0 more fits (10.0 in all)');
    ok($b->wait_for(sub {
        (limits_field('frank', 'ds', 'cheap') // 0) >= 10e9
    }, timeout => 5, interval => 0.1), 'Redis holds 10.0');

    my $r2 = $b->chat('plain', key => $key{frank}, headers => $used);
    $b->is_openai_error($r2, 429, 'insufficient_quota',
                        "node B: A's spend alone plus B's is the budget");
};

subtest 'an rpm window taken on both nodes while Redis was stopped' => sub {
    my $pid = $a->pid('redis');
    kill 'STOP', $pid;

    # rpm 4: each node's share is 2
    my @got;
    for my $t ($a, $b, $a, $b) {
        push @got, $t->chat('plain', key => $key{rita})->{status};
    }
    is_deeply(\@got, [200, 200, 200, 200], 'two on each node, alone');
    $a->is_openai_error($a->chat('plain', key => $key{rita}), 429,
                        'rate_limit_exceeded', 'node A: its share taken');

    kill 'CONT', $pid;
    ok(wait_state($a, 'up') && wait_state($b, 'up'), 'redis answers again');

    # the four taken alone are in Redis's window (full: 4 a minute)
    ok($a->wait_for(sub {
        (limits_field('rita', 'rd', 'four') // 0) > 3.5 * 60000
    }, timeout => 10, interval => 0.1), "Redis's window holds the four")
        or diag 'rd: ' . (limits_field('rita', 'rd', 'four') // 'none');
    ok($a->wait_for(sub {
        $a->policyd_log =~ /redis\.limits_back|answers the limits again/
            && $b->policyd_log =~ /answers the limits again/
    }, timeout => 10, interval => 0.1), 'both nodes share the limits again');

    $a->is_openai_error($a->chat('plain', key => $key{rita}), 429,
                        'rate_limit_exceeded', 'node A: the window is full');
    my $r = $b->chat('plain', key => $key{rita});
    $b->is_openai_error($r, 429, 'rate_limit_exceeded',
                        'node B: the window is full');
    is($r->{headers}{'x-ratelimit-limit-requests'}, '4', 'the whole limit');

    # another client, untouched while away: Redis's window as before
    my @res = map { my $t = $_ % 2 ? $b : $a;
                    $t->chat('plain', key => $key{sam})->{status} } 1 .. 5;
    is_deeply(\@res, [200, 200, 200, 200, 429], 'rpm 4 across the nodes');
};

done_testing;
