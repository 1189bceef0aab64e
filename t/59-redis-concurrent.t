#!/usr/bin/perl
#
# A limit's "concurrent" (requests in flight) shared by two complete
# gateway nodes (nginx and policyd each) through one real redis-server:
# its slots are a sorted set per client in Redis, taken by the same script
# as the windows.  12 requests at once over both nodes for a client with
# concurrent 2: 2 are served, the rest get 429 rate_limit_exceeded with
# Retry-After, and the provider never sees more than 2.  A slot goes back
# with its REPORT (sequential requests all pass, the set empties long
# before its TTL), slots live past their TTL while renewed, a node
# SIGKILLed gives its slots back within the TTL; with Redis gone
# ("local") each node keeps to its share, and puts the slots it took
# alone into Redis when it comes back; "closed" answers 503.  A node
# stopped with SIGTERM gives its slots back before it exits (the same
# client is served by the other node at once), waiting for a Redis that
# does not answer timeout_ms at most.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use JSON::PP ();
use POSIX ();
use Test::More;
use Time::HiRes qw(sleep time);
use Tailgate::Gateway;
use Tailgate::Redis qw(skip_unless_redis start_redis kill_redis redis_cli
                       start_node node_status redis_block wait_state);

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
            two  => { concurrent => 2 },
            four => { concurrent => 4 },
            one  => { concurrent => 1 },
        },
    },
};

my @clients = (alice => 'two', bob => 'two', hal => 'four', dan => 'four',
               gus => 'four', erin => 'two', ivy => 'one');
my (%key, @records);
while (my ($name, $profile) = splice @clients, 0, 2) {
    $key{$name} = $a->new_key;
    push @records, $name => { key => $key{$name}, limit => $profile };
}

start_redis($a);

$a->mock_provider('local');
start_node($a, $a, name => 'a', policy => $policy,
           start => { keys => [@records] });
start_node($a, $b, name => 'b', policy => $policy, mocks_of => $a,
           start => { keys => [@records] });

my $mock = $a->mock('local');
my %node = (a => $a, b => $b);

sub slow { { 'X-Mock-Control' => $JSON->encode({ delay_ms => $_[0] }) } }

sub slots {
    my ($profile, $client) = @_;
    return redis_cli($a, 'ZCARD', "{tg:limits}:slots:c|$profile|$client")
           // -1;
}

# $n requests at once, alternating nodes: "node:status[:code]" each
sub at_once {
    my ($n, $who, $ms) = @_;
    return $a->parallel($n, sub {
        my ($i) = @_;
        my $t = $i % 2 ? $b : $a;
        my $r = $t->chat('plain', key => $key{$who}, headers => slow($ms),
                         timeout => 20);
        my $e = $t->error($r);
        return ($i % 2 ? 'b' : 'a') . ':' . $r->{status}
               . ($e ? ":$e->{code}" : '')
               . ($r->{status} == 429 && !$r->{headers}{'retry-after'}
                  ? ':no-retry-after' : '');
    }, timeout => 60);
}

ok(wait_state($a, 'up') && wait_state($b, 'up'), 'both nodes: redis is up');

subtest 'concurrent 2 across two nodes: 12 at once, 2 served' => sub {
    $mock->clear;

    my @got = at_once(12, 'alice', 1500);

    is(scalar @got, 12, 'every request answered');
    is(scalar(grep { /:200$/ } @got), 2, 'two served, whichever node')
        or diag "@got";
    is(scalar(grep { /:429:rate_limit_exceeded$/ } @got), 10,
       'the rest 429 rate_limit_exceeded with Retry-After') or diag "@got";
    is($mock->max_concurrent_seen, 2, 'the provider never had more than 2');
    is(scalar @{ $mock->requests }, 2, 'and got two');

    my $r = $b->chat('plain', key => $key{alice}, headers => slow(1500));
    ok($r->{status} == 200, 'then one again: their slots went back');
};

subtest 'a refusal says "in flight", OpenAI-shaped' => sub {
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        $a->parallel(2, sub { $a->chat('plain', key => $key{alice},
                                       headers => slow(3000),
                                       timeout => 20) });
        POSIX::_exit(0);
    }
    ok($a->wait_for(sub { slots('two', 'alice') == 2 }, timeout => 10,
                    interval => 0.05), 'node A holds two slots in Redis');

    my $r = $b->chat('plain', key => $key{alice});
    $b->is_openai_error($r, 429, 'rate_limit_exceeded',
                        'node B: 429, the slots being A\'s');
    is($b->error($r)->{type}, 'requests', 'type "requests"');
    like($b->error($r)->{message}, qr/in flight of this client: Limit 2/,
         'the message: in flight, the whole limit');
    ok(($r->{headers}{'retry-after'} // 0) >= 1, 'Retry-After');
    is($b->chat('plain')->{status}, 200,
       'a client without limits is not affected');

    waitpid($pid, 0);
};

subtest 'slots go back with their REPORT: sequential requests all pass' => sub {
    my @res = map { my $t = $_ % 2 ? $b : $a;
                    $t->chat('plain', key => $key{bob})->{status} } 1 .. 8;
    is_deeply(\@res, [ (200) x 8 ], 'eight in a row over both nodes');

    # lease_ttl_ms is 2000: an empty set within 1 s is the ZREMs, not TTLs
    ok($a->wait_for(sub { slots('two', 'bob') == 0 }, timeout => 1,
                    interval => 0.05), 'the set is empty within 1 s');
};

subtest 'slots live past their TTL while renewed' => sub {
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        $a->chat('plain', key => $key{erin}, headers => slow(4000),
                 timeout => 20);
        POSIX::_exit(0);
    }
    ok($a->wait_for(sub { slots('two', 'erin') == 1 }, timeout => 10,
                    interval => 0.05), 'node A holds one');

    sleep 3;                            # longer than lease_ttl_ms (2000)
    my $pttl = redis_cli($a, 'PTTL', '{tg:limits}:slots:c|two|erin') // -2;
    ok($pttl > 0 && $pttl <= 2000, "the set expires, renewed ($pttl ms)");
    my ($m, $score) = split /\n/,
        redis_cli($a, 'ZRANGE', '{tg:limits}:slots:c|two|erin', 0, -1,
                  'WITHSCORES') // '';
    like($m // '', qr{^a/\d+$}, 'its member is "node/lease"');
    my ($s) = split /\n/, redis_cli($a, 'TIME') // '0';
    ok(($score // 0) > $s * 1000, 'and has not expired, 3 s on');

    my @got = at_once(2, 'erin', 500);
    is(scalar(grep { /:200$/ } @got), 1, 'so one more is served, not two')
        or diag "@got";

    waitpid($pid, 0);
};

# A rolling restart: node A's policyd stopped (SIGTERM) while its nginx
# still serves a request of a client with concurrent 1.  The stop gives
# the slot back before policyd exits, so node B serves that client at
# once, not lease_ttl_ms (2000) later; a stop that finds Redis stopped
# (SIGSTOP) or gone waits for it timeout_ms (200) at most.

$a->allow_log(qr/cannot connect to policyd/, qr/policyd connection #\d+ closed/,
              qr/policyd at "unix:[^"]+" is reachable again/);

sub restart_a {
    $a->start_policyd(env => { EXT_API_KEY => $Tailgate::Gateway::PROVIDER_KEY },
                      args => ['-a', $a->dir . '/admin.sock']);
    return wait_state($a, 'up');
}

# a request of ivy's in flight on node A, in a child, once its slot is in
# Redis: the child's pid
sub hold_ivy {
    my ($ms) = @_;
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        $a->chat('plain', key => $key{ivy}, headers => slow($ms),
                 timeout => 20);
        POSIX::_exit(0);
    }
    ok($a->wait_for(sub { slots('one', 'ivy') == 1 }, timeout => 10,
                    interval => 0.05), 'node A holds the one slot in Redis');
    return $pid;
}

subtest 'a node stopped with SIGTERM gives its slots back at once' => sub {
    my $pid = hold_ivy(5000);
    is($b->chat('plain', key => $key{ivy})->{status}, 429,
       'node B: the client is at its limit');
    # B keeps what Redis refused with for a second (a burst is refused
    # without a round trip each): past it, B asks Redis again
    sleep 1.1;

    my $t0 = time;
    $a->stop_policyd;
    # ZCARD counts a member until a script drops it as expired: 0 is the
    # ZREM, not the TTL
    is(slots('one', 'ivy'), 0, 'policyd A exited: its member is gone');
    is($b->chat('plain', key => $key{ivy})->{status}, 200,
       'node B serves the client at once');
    my $took = time - $t0;
    ok($took < 1.5, sprintf 'far sooner than the TTL (%.2f s, '
       . 'lease_ttl_ms 2000)', $took);
    like($a->policyd_log, qr/exiting on SIGTERM/, 'a clean stop');

    waitpid($pid, 0);
    ok(restart_a(), 'node A started again: redis is up');
};

subtest 'a stop waits for a Redis that does not answer timeout_ms at most' => sub {
    my $pid = hold_ivy(3000);

    my $redis = $a->pid('redis');
    kill 'STOP', $redis;
    my $mark = $a->log_size('policyd');
    my $t0 = time;
    $a->stop_policyd;
    my $took = time - $t0;
    kill 'CONT', $redis;
    ok(!$a->running('policyd'), 'Redis stopped (SIGSTOP): policyd exited');
    ok($took < 0.2 + 1.0, sprintf 'within timeout_ms and a little '
       . '(%.2f s, timeout_ms 200)', $took);
    like(substr($a->policyd_log, $mark),
         qr/did not answer within 200 ms at the stop/, 'and says so');
    waitpid($pid, 0);
    ok(restart_a(), 'node A started again');

    kill_redis($a);
    ok(wait_state($a, 'down'), 'Redis killed: down');
    $t0 = time;
    $a->stop_policyd;
    $took = time - $t0;
    ok($took < 0.2 + 1.0, sprintf 'Redis gone: the stop does not wait '
       . '(%.2f s)', $took);

    start_redis($a);
    ok(restart_a() && wait_state($b, 'up'), 'Redis back, node A again');
};

# Redis gone: concurrent 4 over 2 nodes is 2 each

subtest 'Redis down, "local": each node holds its share' => sub {
    kill_redis($a);
    ok(wait_state($a, 'down') && wait_state($b, 'down'), 'both see it down');

    $mock->clear;
    my @got = at_once(8, 'dan', 1500);
    is(scalar @got, 8, 'every request answered: none hangs');
    for my $n (qw(a b)) {
        is(scalar(grep { $_ eq "$n:200" } @got), 2, "node $n: its share, 2")
            or diag "@got";
        is(scalar(grep { $_ eq "$n:429:rate_limit_exceeded" } @got), 2,
           "node $n: the rest 429");
    }
    is($mock->max_concurrent_seen, 4, 'the provider had 4 at most');
};

subtest 'slots taken alone go to Redis when it comes back' => sub {
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        $a->parallel(2, sub { $a->chat('plain', key => $key{gus},
                                       headers => slow(5000),
                                       timeout => 20) });
        POSIX::_exit(0);
    }
    ok($a->wait_for(sub {
        ((node_status($a) // {})->{policyd}{leases} // 0) >= 2
    }, timeout => 10, interval => 0.05), 'node A holds two, alone');

    start_redis($a);
    ok(wait_state($a, 'up') && wait_state($b, 'up'), 'both reconnect');
    ok($a->wait_for(sub { slots('four', 'gus') == 2 }, timeout => 3,
                    interval => 0.05), 'Redis (back empty) has them');

    my @got = at_once(4, 'gus', 500);
    is(scalar(grep { /:200$/ } @got), 2, 'of concurrent 4, two more')
        or diag "@got";

    waitpid($pid, 0);
};

subtest 'on_redis_error "closed": 503 limits_unavailable' => sub {
    for my $n (qw(a b)) {
        my $p = { %$policy, redis => redis_block($a, node => $n,
                                                 on_redis_error => 'closed') };
        $node{$n}->write_policy($p);
        $node{$n}->reload_policyd;
        ok($node{$n}->wait_log('policyd.log', qr/policy reloaded/,
                               timeout => 10), "node $n reloaded");
    }

    is($a->chat('plain', key => $key{bob})->{status}, 200, 'up: served');

    kill_redis($a);
    ok(wait_state($a, 'down'), 'Redis killed: down');
    my $r = $a->chat('plain', key => $key{bob});
    $a->is_openai_error($r, 503, 'limits_unavailable', 'down: 503');
    ok($r->{headers}{'retry-after'}, 'with Retry-After');
    is($a->chat('plain')->{status}, 200, 'a client without limits: served');

    start_redis($a);
    ok(wait_state($a, 'up') && wait_state($b, 'up'), 'redis back');
    is($b->chat('plain', key => $key{bob})->{status}, 200, 'served again');
};

# concurrent 4: A holds 3, B 1.  B's renewals keep the set alive, so A's
# members must expire by their own scores, not with the set.

subtest 'a node SIGKILLed holding slots: back within the TTL' => sub {
    my @pids;
    for my $t ($a, $a, $a, $b) {
        my $pid = fork // die "fork: $!";
        if ($pid == 0) {
            $t->chat('plain', key => $key{hal}, headers => slow(20000),
                     timeout => 30);
            POSIX::_exit(0);
        }
        push @pids, $pid;
        sleep 0.2;
    }
    ok($a->wait_for(sub { slots('four', 'hal') == 4 }, timeout => 10,
                    interval => 0.05), 'node A holds three slots, B one');
    is($b->chat('plain', key => $key{hal})->{status}, 429,
       'node B: the client is at its limit');

    # policyd first: a worker that goes would end its leases
    my $t0 = time;
    $a->kill_policyd;
    $a->stop_proc('nginx', signal => 'KILL', group => 1);

    is($b->chat('plain', key => $key{hal})->{status}, 429,
       'node B: still held right after');

    my $back = $b->wait_for(sub {
        $b->chat('plain', key => $key{hal})->{status} == 200
    }, timeout => 10, interval => 0.2);
    ok($back, 'node B serves the client once the dead node\'s slots expired');
    my $took = time - $t0;
    ok($took < 2000 / 1000 + 1.5, sprintf 'within the TTL (%.1f s, '
       . 'lease_ttl_ms 2000)', $took);
    ok($b->wait_for(sub { slots('four', 'hal') == 1 }, timeout => 2,
                    interval => 0.05), 'the set holds B\'s one alone now');

    kill 'KILL', @pids;
    waitpid($_, 0) for @pids;
};

unlike($a->policyd_log . $b->policyd_log, qr/\Q$key{alice}\E/,
       'no key in logs');

$b->stop_and_check('nginx');
done_testing();
