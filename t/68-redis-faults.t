#!/usr/bin/perl
#
# Redis faults with two gateway nodes: Redis SIGKILLed under load (no
# request hangs, each node keeps to its share of max_concurrency, one log
# line per change, status says so), Redis back empty (the leases held are
# put back, counts reconverge), Redis stopped (SIGSTOP: a decision waits
# no longer than timeout_ms), on_redis_error "closed" (503), and the
# redis block's errors at "policyd -t".

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use POSIX ();
use Test::More;
use Time::HiRes qw(sleep time);
use Tailgate::Gateway;
use Tailgate::Redis qw(skip_unless_redis start_redis kill_redis redis_cli
                       start_node node_status redis_block wait_state);

skip_unless_redis();

my $a = Tailgate::Gateway->new->skip_unless_built;
my $b = Tailgate::Gateway->new;

my $policy = {
    decision_cache_ms => 0,
    providers => {
        local => { upstream => 'tg_local', zone => 'local',
                   endpoints => ['chat'], max_concurrency => 2 },
    },
    routes => {
        line => { steps => [{ provider => 'local', model => 'l' }],
                  queue => { max_length => 32, max_wait_ms => 20000 } },
        only => { steps => [{ provider => 'local', model => 'l' }] },
    },
};

# the config first: a password from a variable that is not set

{
    my $p = { %$policy, listen => { path => $a->dir . '/x.sock' },
              redis => redis_block($a, node => 'a',
                                   password => '${TG_NO_SUCH_VAR}') };
    my $file = $a->write_file('bad.json', JSON::PP->new->encode($p));
    my ($rc, $out) = $a->policyd_cmd('-t', '-c', $file);
    isnt($rc, 0, 'policyd -t refuses a password whose variable is unset');
    like($out, qr/\Q$file\E.*redis\.password.*TG_NO_SUCH_VAR is not set/,
         'naming the file, the key path and the variable');
    unlike($out, qr/hunter|sk-/, 'and no secret');
}

start_redis($a);

$a->mock_provider('local', delay_ms => 300);
start_node($a, $a, name => 'a', policy => $policy);
start_node($a, $b, name => 'b', policy => $policy, mocks_of => $a);

my $mock = $a->mock('local');
my %node = (a => $a, b => $b);

ok(wait_state($a, 'up') && wait_state($b, 'up'), 'both nodes: redis is up');

subtest 'Redis SIGKILLed under load: no hang, each node its share' => sub {
    $mock->clear;

    my $killer = fork // die "fork: $!";
    if ($killer == 0) { sleep 0.4; kill 'KILL', $a->pid('redis'); POSIX::_exit(0) }

    my @got = $a->parallel(12, sub {
        my ($i) = @_;
        sleep 0.05 * $i;
        my $t = $i % 2 ? $b : $a;
        my $t0 = time;
        my $res = $t->chat('line');
        return [ $res->{status}, time - $t0 ];
    }, timeout => 60);
    waitpid($killer, 0);

    my @bad = grep { $_->[0] != 200 } @got;
    is(scalar @bad, 0, 'every request was served')
        or diag(join ' ', map { $_->[0] } @got);
    my $slowest = 0;
    $_->[1] > $slowest and $slowest = $_->[1] for @got;
    ok($slowest < 20, sprintf 'none hung (slowest %.1f s)', $slowest);
    ok($mock->max_concurrent_seen <= 2,
       'at most max_concurrency at once (' . $mock->max_concurrent_seen . ')');

    $a->stop_proc('redis');     # reaped

    ok(wait_state($a, 'down') && wait_state($b, 'down'),
       'status: redis down at both nodes');
    my $lines = () = $a->policyd_log =~ /redis: unix:\S+ is down/g;
    is($lines, 1, 'node a logged it going down once');

    # alone, each node allows its share: 2 / 2 nodes = 1
    $mock->clear;
    $mock->set(delay_ms => 400);
    my @alone = $a->parallel(4, sub { $a->answered_by($a->chat('line')) },
                             timeout => 60);
    is_deeply(\@alone, [ ('local') x 4 ], 'node a alone serves its requests');
    is($mock->max_concurrent_seen, 1, 'one at a time: its share');
    $mock->set(delay_ms => 300);
};

subtest 'Redis back, empty: the leases held are put back' => sub {
    $mock->set(delay_ms => 4000);
    $mock->clear;

    my $pid = fork // die "fork: $!";
    if ($pid == 0) { $a->chat('only'); POSIX::_exit(0) }
    ok($a->wait_for(sub { @{ $mock->requests } >= 1 }, timeout => 10,
                    interval => 0.05), 'node a holds a lease while Redis is away');

    start_redis($a);
    ok(wait_state($a, 'up') && wait_state($b, 'up'), 'both nodes: up again');
    my $lines = () = $a->policyd_log =~ /redis: unix:\S+ is up/g;
    is($lines, 2, 'node a logged each time it came up');

    my $card;
    $a->wait_for(sub {
        $card = redis_cli($a, 'ZCARD', '{tg:provider:local}:leases') // -1;
        $card == 1;
    }, timeout => 5, interval => 0.1);
    is($card, 1, 'Redis counts the lease granted while it was away');

    my $doc = node_status($b);
    my ($p) = grep { $_->{name} eq 'local' } @{ $doc->{providers} };
    $b->wait_for(sub {
        $doc = node_status($b);
        ($p) = grep { $_->{name} eq 'local' } @{ $doc->{providers} };
        ($p->{in_flight_other_nodes} // -1) == 1;
    }, timeout => 5, interval => 0.1);
    is($p->{in_flight_other_nodes}, 1, 'node b sees it as the other node\'s');

    waitpid($pid, 0);
    $mock->set(delay_ms => 300);
};

subtest 'Redis stopped: a decision waits no longer than timeout_ms' => sub {
    kill 'STOP', $a->pid('redis');

    my $t0 = time;
    my $res = $a->chat('only');
    my $took = time - $t0;
    is($res->{status}, 200, 'served locally (on_redis_error local)');
    ok($took < 10, sprintf 'without hanging (%.1f s)', $took);

    my $doc = node_status($a);
    ok($doc->{policyd}{redis}{timeouts} >= 1,
       'status counts the timeout (' . $doc->{policyd}{redis}{timeouts} . ')');

    kill 'CONT', $a->pid('redis');
    ok(wait_state($a, 'up'), 'and it is used again');
};

subtest 'on_redis_error "closed": 503' => sub {
    my $p = { %$policy, redis => redis_block($a, node => 'a',
                                             on_redis_error => 'closed') };
    $a->write_policy($p);
    $a->reload_policyd;
    ok($a->wait_log('policyd.log', qr/policy reloaded/, timeout => 10),
       'reloaded');

    kill_redis($a);
    ok(wait_state($a, 'down'), 'redis down');

    my $res = $a->chat('only');
    $a->is_openai_error($res, 503, 'capacity_unavailable',
                        'a shared provider: 503, OpenAI-shaped');
    ok($res->{headers}{'retry-after'}, 'with Retry-After');
    like($a->policyd_log, qr/decisions that need it are refused/,
         'the log says what happens');

    start_redis($a);
    ok(wait_state($a, 'up'), 'redis back');
    is($a->answered_by($a->chat('only')), 'local', 'served again');
};

unlike($a->policyd_log . $b->policyd_log, qr/hunter2/, 'no secret in logs');

$b->stop_and_check('nginx');
done_testing();
