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
#   - one log line says what was reconciled;
#   - a batch of the reconcile or of the day's usage counters lost with
#     its connection (a proxy, t/lib/redis_cut.pl, drops it right before
#     Redis gets the EVAL, or right after Redis ran it and before its
#     reply) is sent again on the next connection and counts exactly once
#     (docs/policy.md, "Numbered batches"); policyd.redis.reconcile in the
#     status says what happened;
#   - a REPORT's correction of a take Redis made (its tokens used less
#     the decision's estimate, its cost from the budget) is numbered the
#     same way: cut before Redis got it, or after Redis ran it, it counts
#     exactly once; read while Redis is away from the node, it waits and
#     reaches Redis once when it is back (docs/policy.md, "A REPORT's
#     corrections").

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use JSON::PP ();
use Test::More;
use Time::HiRes qw(sleep);
use Tailgate::Gateway;
use Tailgate::Redis qw(skip_unless_redis start_redis kill_redis redis_cli
                       start_node node_status start_redis_cut redis_cut
                       redis_cuts wait_state);

skip_unless_redis();

my $a = Tailgate::Gateway->new->skip_unless_built;
my $b = Tailgate::Gateway->new;
my $c = Tailgate::Gateway->new;     # behind the proxy that cuts

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
            # a token drains in a second: a REPORT's correction of 600
            # tokens stands out from the estimate, once or twice
            tok   => { tpm => 60, budget => { day => 1000 } },
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

# node C reaches the same Redis through the proxy; each case has a client
# of its own, with a day budget of 10 (C's share alone: 5)

my %cut_key;
my @cut_records;
for my $n (qw(cut_before cut_after cut_usage)) {
    $cut_key{$n} = $a->new_key;
    push @cut_records, $n => { key => $cut_key{$n}, limit => 'cheap' };
}
for my $n (qw(rep_before rep_after rep_down)) {
    $cut_key{$n} = $a->new_key;
    push @cut_records, $n => { key => $cut_key{$n}, limit => 'tok' };
}

my $proxy = start_redis_cut($a);
start_node($a, $c, name => 'c', policy => $policy, mocks_of => $a,
           redis => { address => $proxy },
           start => { keys => [@cut_records] });
ok(wait_state($c, 'up'), 'node C: redis is up through the proxy');

sub reconcile_view {
    my $doc = node_status($_[0]) or return {};
    return $doc->{policyd}{redis}{reconcile} // {};
}

my $day = do {
    my @t = gmtime;
    sprintf '%04d-%02d-%02d', $t[5] + 1900, $t[4] + 1, $t[3];
};

sub usage_field {
    my ($kind, $field) = @_;
    return redis_cli($a, 'HGET', "{tg:usage:$day}:$kind", $field);
}

# C spends 5.0 for $client while Redis is away for C alone, then the
# proxy lets it in and makes the cut; what is in Redis after.
sub spend_alone_then_cut {
    my ($client, $cut) = @_;

    redis_cut($a, 'down');
    ok(wait_state($c, 'down'), "$client: Redis is away for node C");

    is($c->chat('plain', key => $cut_key{$client}, headers => $used)
         ->{status}, 200, "$client: C spends 5.0 alone");
    # client, route, provider (no tenant)
    ok($c->wait_for(sub { (reconcile_view($c)->{usage_pending} // 0) >= 3 },
                    timeout => 5, interval => 0.1),
       "$client: its usage waits in C's table")
        or diag explain reconcile_view($c);

    my $was = reconcile_view($c);
    my $cuts = () = redis_cuts($a);

    redis_cut($a, $cut);
    my ($mode) = split / /, $cut;
    ok($c->wait_for(sub { (() = redis_cuts($a)) > $cuts }, timeout => 20,
                    interval => 0.1), "$client: the proxy cut ($cut)");
    is((redis_cuts($a))[-1], $mode, "$client: $mode the EVAL");

    ok($c->wait_for(sub {
        my $v = reconcile_view($c);
        ($v->{pending} // 1) == 0 && ($v->{usage_pending} // 1) == 0
            && ($v->{resent} // 0) > ($was->{resent} // 0)
    }, timeout => 20, interval => 0.1),
       "$client: the batch lost went again, and was answered")
        or diag explain reconcile_view($c);
    ok(wait_state($c, 'up'), "$client: node C is up again");

    return ($was, reconcile_view($c));
}

subtest 'a reconcile batch cut before Redis got it: sent again, counted once' => sub {
    my ($was, $now) = spend_alone_then_cut('cut_before',
                                           'before {tg:limits}:batch:');

    is(limits_field('cut_before', 'ds', 'cheap') // 0, 5e9,
       "Redis holds C's 5.0 alone, once");
    is(usage_field('client', 'requests:cut_before') // 0, 1,
       'the usage of its one request, once (its batch was cut with it)');
    is(usage_field('client', 'cost:cut_before') // 0, 5e9, 'and its cost');
    is($now->{skipped} - $was->{skipped}, 0, 'none skipped: Redis ran none');
    cmp_ok($now->{resent} - $was->{resent}, '>=', 1, 'resent');
    is($now->{dropped}, 0, 'none dropped');
};

subtest 'a reconcile batch cut after Redis ran it: sent again, skipped' => sub {
    my ($was, $now) = spend_alone_then_cut('cut_after',
                                           'after {tg:limits}:batch:');

    is(limits_field('cut_after', 'ds', 'cheap') // 0, 5e9,
       "Redis holds C's 5.0 alone once, not twice");
    is($now->{skipped} - $was->{skipped}, 1,
       'the resent batch was skipped: applied already');
    is(usage_field('client', 'requests:cut_after') // 0, 1,
       'the usage, once');
};

subtest 'a usage batch cut after Redis ran it: sent again, skipped' => sub {
    my ($was, $now) = spend_alone_then_cut('cut_usage',
                                           'after {tg:usage:');

    is(usage_field('client', 'requests:cut_usage') // 0, 1,
       'the usage of one request counts once');
    is(usage_field('client', 'cost:cut_usage') // 0, 5e9,
       'its cost once');
    # the reconcile's batch went before it on that connection: Redis ran
    # it, and its reply was lost in the same cut
    is($now->{skipped} - $was->{skipped}, 2,
       'both resends were skipped (the reconcile batch before it too)')
        or diag explain [$was, $now];
    is(limits_field('cut_usage', 'ds', 'cheap') // 0, 5e9,
       'the spend alone, once');
};

subtest 'usage while Redis is up goes through the batches too' => sub {
    my $was = reconcile_view($c);
    is($c->chat('plain', key => $cut_key{cut_before}, headers => $used)
         ->{status}, 200, 'cut_before: 5.0 more fits, through Redis');
    ok($c->wait_for(sub {
        (usage_field('client', 'requests:cut_before') // 0) == 2
    }, timeout => 5, interval => 0.1), 'its second request in the usage');
    my $now = reconcile_view($c);
    cmp_ok($now->{applied}, '>', $was->{applied}, 'by a batch applied')
        or diag explain [$was, $now];
    is($now->{usage_dropped}, 0, 'no usage dropped');
    $c->is_openai_error($c->chat('plain', key => $cut_key{cut_before},
                                 headers => $used),
                        429, 'insufficient_quota',
                        'the budget (10.0) spent across the cut');
};

# A REPORT's correction: 4 + 600 tokens used (at 0.5 a token: 302.0 from
# a day budget of 1000), against the decision's estimate of a few.  In
# Redis after: the spend exactly once, and the tokens' debt of the 604
# (drained at tpm 60, a token a second, since the take) - not the
# estimate alone (lost), not twice the correction (doubled).
my $P = 60000;
my $big = { 'X-Mock-Control' => $JSON->encode(
    { usage => { prompt_tokens => 4, completion_tokens => 600 } }) };

sub corrections_view { return reconcile_view($_[0])->{corrections} // {} }

sub tokens_once {
    my ($client, $t0) = @_;
    my $td = limits_field($client, 'td', 'tok') // 0;
    my $ta = limits_field($client, 'ta', 'tok') // 0;
    # drained at 60 units a ms since the take, which was after $t0
    my $drained = 60 * ($ta - int($t0 * 1000));
    ok($td <= 604 * $P && $td >= 604 * $P - $drained,
       "$client: Redis's tokens' debt is the 604 used, once")
        or diag "td $td ta $ta t0 $t0 drained $drained: "
              . sprintf('%.1f tokens', $td / $P);
}

sub report_cut {
    my ($client, $cut) = @_;

    my $was = corrections_view($c);
    my $cuts = () = redis_cuts($a);
    redis_cut($a, $cut);

    my $t0 = Time::HiRes::time();
    is($c->chat('plain', key => $cut_key{$client}, headers => $big)
         ->{status}, 200, "$client: the take through Redis");
    ok($c->wait_for(sub { (() = redis_cuts($a)) > $cuts }, timeout => 20,
                    interval => 0.1), "$client: the proxy cut ($cut)");
    ok($c->wait_for(sub {
        my $v = corrections_view($c);
        ($v->{resent} // 0) > ($was->{resent} // 0)
            && ($v->{waiting} // 1) == 0
            && (reconcile_view($c)->{pending} // 1) == 0
    }, timeout => 20, interval => 0.1),
       "$client: the correction lost went again, and was answered")
        or diag explain [$was, corrections_view($c)];
    ok(wait_state($c, 'up'), "$client: node C is up again");

    is(limits_field($client, 'ds', 'tok') // 0, 302e9,
       "$client: Redis holds the 302.0 spent, once");
    is(limits_field($client, 'ms', 'tok') // 0, 302e9, "$client: the month");
    tokens_once($client, $t0);

    return ($was, corrections_view($c));
}

subtest "a REPORT's correction cut before Redis got it: sent again, once" => sub {
    my ($was, $now) = report_cut('rep_before', 'before if dy >= day');
    is($now->{skipped} - $was->{skipped}, 0, 'none skipped: Redis ran none');
    is($now->{applied} - $was->{applied}, 1, 'the resend applied');
    is($now->{dropped}, 0, 'none dropped');
};

subtest "a REPORT's correction cut after Redis ran it: sent again, skipped" => sub {
    my ($was, $now) = report_cut('rep_after', 'after if dy >= day');
    is($now->{skipped} - $was->{skipped}, 1,
       'the resend was skipped: applied already');
    is($now->{applied} - $was->{applied}, 0, 'none applied after it');
};

subtest "a REPORT read while Redis is away reaches it once, when back" => sub {
    my $was = corrections_view($c);
    my $slow = { 'X-Mock-Control' => $JSON->encode(
        { delay_ms => 3000,
          usage => { prompt_tokens => 4, completion_tokens => 600 } }) };

    my $t0 = Time::HiRes::time();
    my $conn = $c->open_post('/v1/chat/completions',
        { model => 'plain',
          messages => [{ role => 'user', content => 'Hello' }] },
        key => $cut_key{rep_down}, headers => $slow);
    sleep 1;            # decided: its take is in Redis
    ok((limits_field('rep_down', 'td', 'tok') // 0) > 0,
       'the take is in Redis');
    redis_cut($a, 'down');
    ok(wait_state($c, 'down'), 'then Redis is away for node C');

    my ($status) = $conn->read_response(10);
    is($status, 200, 'the answer, its REPORT read while Redis is away');
    ok($c->wait_for(sub { (corrections_view($c)->{waiting} // 0) == 1 },
                    timeout => 5, interval => 0.1),
       'its correction waits at C')
        or diag explain corrections_view($c);
    is(limits_field('rep_down', 'ds', 'tok') || 0, 0,
       'none of it in Redis yet');

    redis_cut($a, 'pass');
    ok(wait_state($c, 'up'), 'Redis is back for node C');
    ok($c->wait_for(sub {
        (corrections_view($c)->{waiting} // 1) == 0
            && (reconcile_view($c)->{pending} // 1) == 0
    }, timeout => 10, interval => 0.1), 'the correction went, answered');

    is(limits_field('rep_down', 'ds', 'tok') // 0, 302e9,
       'Redis holds the 302.0 spent, once');
    tokens_once('rep_down', $t0);
    my $now = corrections_view($c);
    is($now->{applied} - $was->{applied}, 1, 'one correction batch applied');
    is($now->{dropped}, 0, 'none dropped');
};

done_testing;
