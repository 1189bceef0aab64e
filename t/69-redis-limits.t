#!/usr/bin/perl
#
# Limits shared by two complete gateway nodes (nginx and policyd each)
# through one real redis-server: a client's rpm holds across both nodes
# (rpm 10: the 11th request, whichever node it reaches, gets 429 with
# x-ratelimit-*); tpm is estimated at decision and corrected by the REPORT
# in Redis, so that the other node sees the correction; a day's budget
# spent through node A is refused at node B; the day's usage counters per
# client, route and provider are in Redis and in both nodes' status; and
# with Redis stopped (SIGSTOP) or killed under load, on_redis_error
# "local" keeps each node to its share of the limit, no request hangs,
# limits are shared again once Redis is back, and "closed" answers 503.

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
        one   => { upstream => 'tg_one', zone => 'local',
                   endpoints => ['chat'], max_concurrency => 1 },
        plan  => { upstream => 'tg_plan', zone => 'local',
                   endpoints => ['chat'], rpm => 3 },
        spare => { upstream => 'tg_spare', zone => 'local',
                   endpoints => ['chat'] },
    },
    routes => {
        plain => { steps => [{ provider => 'local', model => 'l' }] },
        line  => { steps => [{ provider => 'one', model => 'o' }],
                   queue => { max_length => 16, max_wait_ms => 20000 } },
        planned => { steps => [{ provider => 'plan', model => 'p' },
                               { provider => 'spare', model => 's' }],
                     fallback => { on => 'errors' } },
    },
    limits => {
        profiles => {
            ten   => { rpm => 10 },
            tok   => { tpm => 1000 },
            cheap => { budget => { day => 10 } },
            four  => { rpm => 4 },
            two   => { rpm => 2 },
            lots  => { rpm => 1000 },
        },
    },
    # 0.5 a token: 4 + 6 tokens cost 5.0
    usage => { currency => 'USD',
               prices => { local => { l => { input => 500000,
                                             output => 500000 } } } },
};

my @clients = (bob => 'ten', erin => 'tok', frank => 'cheap',
               carol => 'four', hank => 'four', gina => 'two', ivy => 'two',
               dave => 'lots', kim => 'lots', lena => 'four');
my (%key, @records);
while (my ($name, $profile) = splice @clients, 0, 2) {
    $key{$name} = $a->new_key;
    push @records, $name => { key => $key{$name}, limit => $profile };
}

start_redis($a);

$a->mock_provider('local');
$a->mock_provider('one', delay_ms => 100);
$a->mock_provider($_) for qw(plan spare);
start_node($a, $a, name => 'a', policy => $policy,
           start => { keys => [@records] });
start_node($a, $b, name => 'b', policy => $policy, mocks_of => $a,
           start => { keys => [@records] });

my $mock = $a->mock('local');
my %node = (a => $a, b => $b);

sub seen { scalar @{ $mock->requests } }

ok(wait_state($a, 'up') && wait_state($b, 'up'), 'both nodes: redis is up');

subtest 'rpm 10 across both nodes: the 11th gets 429' => sub {
    my $n = seen();
    my @res = map { my $t = $_ % 2 ? $b : $a; $t->chat('plain', key => $key{bob}) }
              1 .. 12;

    is_deeply([ map { $_->{status} } @res ],
              [ (200) x 10, 429, 429 ], 'ten succeed, alternating nodes; '
              . 'then 429 on either node') or diag explain [ map { $_->{body} } @res ];
    is(seen() - $n, 10, 'the provider got exactly ten');
    is_deeply([ map { $_->{headers}{'x-ratelimit-remaining-requests'} } @res ],
              [ reverse(0 .. 9), 0, 0 ],
              'x-ratelimit-remaining-requests counts down over both nodes');

    my $r = $res[10];
    $a->is_openai_error($r, 429, 'rate_limit_exceeded', 'OpenAI-shaped');
    is($a->error($r)->{type}, 'requests', 'type "requests"');
    ok(($r->{headers}{'retry-after'} // 0) >= 1, 'Retry-After');
    is($r->{headers}{'x-ratelimit-limit-requests'}, '10', 'limit-requests 10');
    is($r->{headers}{'x-ratelimit-remaining-requests'}, '0',
       'remaining-requests 0: what Redis holds, not this node alone');
    is($res[11]{headers}{'x-ratelimit-remaining-requests'}, '0',
       'on the other node too');

    my $debt = redis_cli($a, 'HGET', '{tg:limits}:c|ten|bob', 'rd') // 0;
    ok($debt >= 9 * 60000, "Redis holds the window ($debt)");
    my $ttl = redis_cli($a, 'PTTL', '{tg:limits}:c|ten|bob') // -2;
    ok($ttl > 0 && $ttl <= 120000, "with a TTL ($ttl ms)");

    is($a->chat('plain')->{status}, 200,
       'a client without limits is not affected');
};

subtest 'tpm: the REPORT corrects the shared window' => sub {
    my $pad = sub { 'x' x ($_[0] * 4) };
    my $used = { 'X-Mock-Control' => $JSON->encode(
        { usage => { prompt_tokens => 100, completion_tokens => 50 } }) };

    my $r1 = $a->chat('plain', key => $key{erin}, headers => $used,
                      body => { messages => [{ role => 'user', content => $pad->(500) }] });
    is($r1->{status}, 200, 'node A: about 500 tokens estimated');

    # the REPORT reaches policyd within 250 ms, Redis right after
    ok($a->wait_for(sub {
        my $d = redis_cli($a, 'HGET', '{tg:limits}:c|tok|erin', 'td') // 1e12;
        $d <= 200 * 60000;
    }, timeout => 5, interval => 0.1), 'Redis has the correction (150 used)');

    # 150 used + 800 fits; 500 estimated + 800 would not
    my $r2 = $b->chat('plain', key => $key{erin}, headers => $used,
                      body => { messages => [{ role => 'user', content => $pad->(800) }] });
    is($r2->{status}, 200, 'node B: 800 more fit, as the REPORT gave back');

    sleep 0.6;
    my $r3 = $a->chat('plain', key => $key{erin},
                      body => { messages => [{ role => 'user', content => $pad->(900) }] });
    $a->is_openai_error($r3, 429, 'rate_limit_exceeded',
                        'node A: then the window is full');
    is($a->error($r3)->{type}, 'tokens', 'type "tokens"');
    is($r3->{headers}{'x-ratelimit-limit-tokens'}, '1000', 'limit-tokens');
};

subtest 'a day budget spent through node A is refused at node B' => sub {
    my $used = { 'X-Mock-Control' => $JSON->encode(
        { usage => { prompt_tokens => 4, completion_tokens => 6 } }) };
    my $n = seen();

    my @res;
    for my $t ($a, $a) {
        push @res, $t->chat('plain', key => $key{frank}, headers => $used);
        sleep 0.6;
    }
    is_deeply([ map { $_->{status} } @res ], [200, 200], 'node A: two of 5.0');

    ok($a->wait_for(sub {
        (redis_cli($a, 'HGET', '{tg:limits}:c|cheap|frank', 'ds') // 0)
            >= 10e9
    }, timeout => 5, interval => 0.1), 'Redis holds the spend (10.0)');

    my $r = $b->chat('plain', key => $key{frank}, headers => $used);
    $b->is_openai_error($r, 429, 'insufficient_quota', 'node B: 429 insufficient_quota');
    is($b->error($r)->{type}, 'insufficient_quota', 'type insufficient_quota');
    ok(($r->{headers}{'retry-after'} // 0) >= 1
       && $r->{headers}{'retry-after'} <= 86400, 'Retry-After: to the next UTC day');
    is(seen() - $n, 2, 'the provider got two');
};

subtest "the day's usage counters, in Redis and in both nodes' status" => sub {
    my @t = gmtime;
    my $day = sprintf '%04d-%02d-%02d', $t[5] + 1900, $t[4] + 1, $t[3];
    my $req = redis_cli($a, 'HGET', "{tg:usage:$day}:client", 'requests:bob');
    is($req, 10, 'requests of bob, both nodes together');
    my $cost = redis_cli($a, 'HGET', "{tg:usage:$day}:client", 'cost:frank');
    is($cost, 10e9, 'cost of frank in nano-units');
    my $ttl = redis_cli($a, 'TTL', "{tg:usage:$day}:client") // -2;
    ok($ttl > 86400 && $ttl <= 8 * 86400, "the hash expires ($ttl s)");
    ok((redis_cli($a, 'HGET', "{tg:usage:$day}:route", 'requests:plain') // 0) >= 15,
       'per route');
    ok((redis_cli($a, 'HGET', "{tg:usage:$day}:provider", 'requests:local') // 0) >= 15,
       'per provider');

    for my $n (qw(a b)) {
        my $u;
        my $ok = $node{$n}->wait_for(sub {
            my $doc = node_status($node{$n});
            $u = $doc && $doc->{policyd}{redis}{usage};
            $u && $u->{client}{bob} && $u->{client}{frank}
               && $u->{client}{frank}{cost} == 10;
        }, timeout => 5, interval => 0.2);
        ok($ok, "node $n: policyd status shows them") or diag explain $u;
        is($u->{day}, $day, 'of today');
        is($u->{client}{bob}{requests}, 10, 'bob: 10 requests over both nodes');
        is($u->{client}{frank}{tokens}, 20, 'frank: 20 tokens');
        ok($u->{provider}{local}{requests} >= 15, 'provider local');
    }
};

subtest 'limits and a shared lease in one decision' => sub {
    my $one = $a->mock('one');
    $one->clear;

    my @got = $a->parallel(6, sub {
        my ($i) = @_;
        my $t = $i % 2 ? $b : $a;
        return $t->chat('line', key => $key{lena})->{status};
    }, timeout => 60);

    is(scalar(grep { $_ == 200 } @got), 4, 'rpm 4 of the client, both nodes')
        or diag "@got";
    is(scalar(grep { $_ == 429 } @got), 2, 'the rest 429');
    is($one->max_concurrent_seen, 1, 'max_concurrency 1 held as well');
    ok($a->wait_for(sub {
        (redis_cli($a, 'ZCARD', '{tg:provider:one}:leases') // -1) == 0
    }, timeout => 10, interval => 0.1), 'no lease left in Redis');
};

subtest "a provider's plan (rpm 3) holds across the nodes" => sub {
    my @by = map { my $t = $_ % 2 ? $b : $a;
                   $t->answered_by($t->chat('planned', key => $key{dave})) }
             1 .. 6;
    is_deeply(\@by, [qw(plan plan plan spare spare spare)],
              'three to the plan, alternating nodes; then the next step')
        or diag "@by";
    is(scalar @{ $a->mock('plan')->requests }, 3, 'the plan got three');
};

# Redis gone: each node keeps to its share of a limit (rpm 4 / 2 nodes)

sub per_node {
    my ($who, $each) = @_;
    my @got = $a->parallel(2 * $each, sub {
        my ($i) = @_;
        my $t = $i % 2 ? $b : $a;
        my $r = $t->chat('plain', key => $key{$who}, timeout => 20);
        my $e = $t->error($r);
        return ($i % 2 ? 'b' : 'a') . ':' . $r->{status}
               . ($e ? ":$e->{code}" : '');
    }, timeout => 60);
    return @got;
}

subtest 'Redis stopped (SIGSTOP) under load: each node its share' => sub {
    kill 'STOP', $a->pid('redis');

    my $n = seen();
    my @got = per_node('carol', 4);
    is(scalar @got, 8, 'every request answered: none hangs');
    for my $n (qw(a b)) {
        is(scalar(grep { $_ eq "$n:200" } @got), 2, "node $n: its share, 2")
            or diag "@got";
        is(scalar(grep { $_ eq "$n:429:rate_limit_exceeded" } @got), 2,
           "node $n: the rest 429");
    }
    is(seen() - $n, 4, 'the provider got four');
    ok(node_status($a)->{policyd}{redis}{timeouts} >= 1,
       'status counts the timeouts');
    like($a->policyd_log, qr/keeps to its share of the limits/,
         'the log says so');

    kill 'CONT', $a->pid('redis');
    ok(wait_state($a, 'up') && wait_state($b, 'up'), 'redis is used again');

    my @res = map { my $t = $_ % 2 ? $b : $a;
                    $t->chat('plain', key => $key{gina})->{status} } 1 .. 3;
    is_deeply(\@res, [200, 200, 429], 'rpm 2 holds across the nodes again');
};

subtest 'Redis SIGKILLed under load, back empty' => sub {
    # requests in flight when it goes: their REPORTs find no Redis
    my $slow = { 'X-Mock-Control' => $JSON->encode({ delay_ms => 1000 }) };
    my $load = fork // die "fork: $!";
    if ($load == 0) {
        my @s = $a->parallel(4, sub {
            my ($i) = @_;
            my $t = $i % 2 ? $b : $a;
            return $t->chat('plain', key => $key{kim}, headers => $slow,
                            timeout => 20)->{status};
        }, timeout => 30);
        POSIX::_exit((grep { $_ != 200 } @s) || @s != 4 ? 1 : 0);
    }
    ok($a->wait_for(sub {
        (((node_status($a) // {})->{policyd}{leases}) // 0) >= 2
        && (((node_status($b) // {})->{policyd}{leases}) // 0) >= 2
    }, timeout => 10, interval => 0.05), 'four requests in flight');
    kill_redis($a);
    waitpid($load, 0);
    is($?, 0, 'those in flight all finish with 200');
    ok(wait_state($a, 'down') && wait_state($b, 'down'), 'both see it down');

    my $n = seen();
    my @got = per_node('hank', 4);
    is(scalar @got, 8, 'every request answered');
    for my $n (qw(a b)) {
        is(scalar(grep { $_ eq "$n:200" } @got), 2, "node $n: its share, 2")
            or diag "@got";
    }
    is(seen() - $n, 4, 'the provider got four');

    start_redis($a);
    ok(wait_state($a, 'up') && wait_state($b, 'up'), 'both reconnect');

    my @res = map { my $t = $_ % 2 ? $b : $a;
                    $t->chat('plain', key => $key{ivy})->{status} } 1 .. 3;
    is_deeply(\@res, [200, 200, 429], 'limits are shared again');
};

subtest 'on_redis_error "closed": 503 limits_unavailable' => sub {
    for my $n (qw(a b)) {
        my $p = { %$policy, redis => redis_block($a, node => $n,
                                                 on_redis_error => 'closed') };
        $node{$n}->write_policy($p);
        $node{$n}->reload_policyd;
        ok($node{$n}->wait_log('policyd.log', qr/policy reloaded/, timeout => 10),
           "node $n reloaded");
    }

    is($a->chat('plain', key => $key{dave})->{status}, 200, 'up: served');

    kill 'STOP', $a->pid('redis');
    my $r = $b->chat('plain', key => $key{dave});
    $b->is_openai_error($r, 503, 'limits_unavailable',
                        'Redis stopped: 503, OpenAI-shaped');
    ok($r->{headers}{'retry-after'}, 'with Retry-After');
    kill 'CONT', $a->pid('redis');

    kill_redis($a);
    ok(wait_state($a, 'down'), 'Redis killed: down');
    $r = $a->chat('plain', key => $key{dave});
    $a->is_openai_error($r, 503, 'limits_unavailable', 'down: 503');
    is($a->chat('plain')->{status}, 200, 'a client without limits: served');

    start_redis($a);
    ok(wait_state($a, 'up'), 'redis back');
    is($a->chat('plain', key => $key{dave})->{status}, 200, 'served again');
};

unlike($a->policyd_log . $b->policyd_log, qr/\Q$key{bob}\E/, 'no key in logs');

$b->stop_and_check('nginx');
done_testing();
