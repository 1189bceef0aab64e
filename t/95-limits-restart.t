#!/usr/bin/perl

# Budgets across a policyd restart, end to end: real nginx with the module,
# real policyd, a mock provider.  A client that spent its day's budget is
# still refused with 429 insufficient_quota after policyd stops (SIGTERM:
# saved at the stop) or is killed (SIGKILL: saved within a second of the
# spend).  A state file of yesterday gives back nothing of the day but
# keeps the month's spend; a corrupt one is refused with one log line and
# policyd serves with nothing restored (docs/policy.md, "One node").  With
# Redis (on_redis_error "local"): what a node spent alone while Redis was
# away, restarted during the outage, reaches Redis once it is back, once,
# also after another restart; and so do the REPORTs' corrections and the
# usage waiting for Redis, and the batches kept unanswered (cut before or
# after Redis ran them), after SIGTERM or SIGKILL.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use JSON::PP ();
use Test::More;
use Time::HiRes qw(sleep);
use Tailgate::Gateway;
use Tailgate::Redis qw(redis_server start_redis kill_redis redis_cli
                       start_node node_status wait_state start_redis_cut
                       redis_cut redis_cuts);

my $t = Tailgate::Gateway->new->skip_unless_built;

my $JSON = JSON::PP->new->canonical->utf8;
my $STATE = $t->dir . '/limits.state';

# 4 + 6 tokens at 0.5 a token: 5.0 a request; 10.0 a day, 15.0 a month
my $policy = Tailgate::Gateway::default_policy();
$policy->{lease_recovery_ms} = 0;
$policy->{usage} = { currency => 'USD',
                     prices => { local => { 'qwen2.5-7b-instruct' =>
                                            { input => 500000,
                                              output => 500000 } } } };
$policy->{limits} = {
    profiles   => { cheap => { budget => { day => 10, month => 15 } } },
    state_file => $STATE,
};

my %k = map { $_ => $t->new_key } qw(term kill past fresh);

$t->start_gateway(
    policy => $policy,
    keys => [ map { ($_ => { key => $k{$_}, limit => 'cheap' }) } sort keys %k ],
    timeout => '5s');

$t->allow_log(qr/cannot connect to policyd/, qr/policyd connection #\d+ closed/,
              qr/policyd at "unix:[^"]+" is reachable again/);

my $local = $t->mock('local');
my $used = { 'X-Mock-Control' => $JSON->encode(
    { usage => { prompt_tokens => 4, completion_tokens => 6 } }) };

sub seen { scalar @{ $local->requests } }

# a worker sends its REPORTs within 250 ms: each cost is spent before the
# next request is decided
sub ask {
    my ($who) = @_;
    my $r = $t->chat('qwen', key => $k{$who}, headers => $used);
    select(undef, undef, undef, 0.6);
    return $r;
}

sub restart {
    my ($how) = @_;
    $how eq 'KILL' ? $t->kill_policyd : $t->stop_policyd;
    $t->start_policyd(env => { EXT_API_KEY => $Tailgate::Gateway::PROVIDER_KEY });
}

sub refused_quota {
    my ($r, $name) = @_;
    $t->is_openai_error($r, 429, 'insufficient_quota', $name);
}

subtest 'SIGTERM: the day spent stays spent' => sub {
    is_deeply([ map { ask('term')->{status} } 1 .. 3 ], [200, 200, 429],
              'two, then spent');

    restart('TERM');
    ok(-f $STATE, 'the state file is written at the stop');

    my $n = seen();
    refused_quota(ask('term'), 'after the restart: still 429 insufficient_quota');
    is(seen() - $n, 0, 'and the provider got nothing');
    like($t->policyd_log, qr/\Q$STATE\E: the budgets of \d+ counters restored/,
         'policyd says what it restored');
};

subtest 'SIGKILL after the periodic save: spent still' => sub {
    is_deeply([ map { ask('kill')->{status} } 1 .. 2 ], [200, 200],
              'the day spent to its end');

    # saved at most once a second: 1.5 s is after the save
    select(undef, undef, undef, 1.5);
    restart('KILL');

    my $n = seen();
    refused_quota(ask('kill'), 'after SIGKILL: 429 insufficient_quota');
    is(seen() - $n, 0, 'and the provider got nothing');
};

subtest 'a file of yesterday: the day is new, the month is kept' => sub {
    is_deeply([ map { ask('past')->{status} } 1 .. 2 ], [200, 200],
              'the day spent (10 of the 15 of the month)');

    $t->stop_policyd;

    # the days in the file one back: as if written yesterday
    my $text = $t->read_file($STATE);
    my @lines = grep { /^b / } split /\n/, $text;
    ok(@lines >= 3, 'a line for each client that spent') or diag $text;
    s/^b (\d+)/'b ' . ($1 - 1)/e for @lines;
    write_state(@lines);

    $t->start_policyd(env => { EXT_API_KEY => $Tailgate::Gateway::PROVIDER_KEY });

    my $r = ask('past');
    is($r->{status}, 200, "yesterday's spend is not today's: served");
    $r = ask('past');
    refused_quota($r, "but the month's 15 are spent: 429");
    cmp_ok($r->{headers}{'retry-after'}, '>', 86400 - 1,
           'Retry-After: to the next month, not the next day')
        if (gmtime)[3] < 28;
    is(ask('term')->{status}, 200, 'the client that spent the day yesterday '
       . 'is served today');
};

subtest 'a corrupt file: refused with one line, policyd serves' => sub {
    $t->stop_policyd;
    $t->write_file($STATE, "tailgate-limits 1\nb 1 2 3 garbage\n");
    my $mark = $t->log_size('policyd');

    $t->start_policyd(env => { EXT_API_KEY => $Tailgate::Gateway::PROVIDER_KEY });

    my $log = substr($t->policyd_log, $mark);
    my @said = $log =~ /(\Q$STATE\E: not restored: [^\n]*)/g;
    is(scalar @said, 1, 'one log line names the file and what was wrong')
        or diag $log;
    like($said[0] // '', qr/truncated: no end line|malformed|check sum/,
         'it says what was wrong');

    is(ask('term')->{status}, 200, 'nothing restored: the client spent '
       . 'before is served');
    is(ask('fresh')->{status}, 200, 'and a new one');
};

subtest 'Redis: a spend made alone before a restart reaches Redis once' => sub {
    plan skip_all => 'redis-server is not installed' unless redis_server();

    my $r = Tailgate::Gateway->new;
    my $rkey = $r->new_key;
    my $rpolicy = $JSON->decode($JSON->encode($policy));
    # a share of 10.0 a day for each of 2 nodes
    $rpolicy->{limits}{profiles}{cheap} = { budget => { day => 20 } };
    $rpolicy->{limits}{state_file} = $r->dir . '/limits.state';

    start_redis($r);
    $r->mock_provider('local');
    start_node($r, $r, name => 'a', policy => $rpolicy,
               start => { keys => [ rex => { key => $rkey, limit => 'cheap' } ],
                          timeout => '5s' });
    $r->allow_log(qr/cannot connect to policyd/,
                  qr/policyd connection #\d+ closed/,
                  qr/policyd at "unix:[^"]+" is reachable again/);

    my $state = sub {
        my $doc = node_status($r) or return '';
        return $doc->{policyd}{redis}{state} // '';
    };
    my $wait = sub {
        my ($want) = @_;
        $r->wait_for(sub { $state->() eq $want }, timeout => 15,
                     interval => 0.1);
    };
    my $ds = sub {
        redis_cli($r, 'HGET', '{tg:limits}:c|cheap|rex', 'ds') // 0;
    };
    my $restart = sub {
        my ($how) = @_;
        $how eq 'KILL' ? $r->kill_policyd : $r->stop_policyd;
        $r->start_policyd(env => { EXT_API_KEY =>
                                   $Tailgate::Gateway::PROVIDER_KEY },
                          args => ['-a', $r->dir . '/admin.sock']);
    };

    ok($wait->('up'), 'redis is up');
    kill_redis($r);
    ok($wait->('down'), 'then down');

    my $res = $r->chat('qwen', key => $rkey, headers => $used);
    is($res->{status}, 200, 'spent alone: 5.0');
    sleep 1.6;          # its REPORT read while Redis is away, then saved

    $restart->('TERM');
    ok($wait->('down'), 'policyd restarted while Redis is still away');

    start_redis($r);    # empty, as a Redis restarted without its data
    ok($wait->('up'), 'Redis back');
    ok($r->wait_for(sub { $ds->() >= 5e9 }, timeout => 5, interval => 0.1),
       'the spend made before the restart reached Redis')
        or diag 'ds: ' . $ds->();
    sleep 1.5;
    is($ds->(), 5e9, 'once: 5.0');

    # the tallies sent are cleared in the file before they leave
    $restart->('KILL');
    ok($wait->('up'), 'killed and started again with Redis up');
    sleep 1.5;
    is($ds->(), 5e9, 'not sent again after the restart');

    $r->stop_all;
    $r->logs_clean('the Redis node: error.log is clean');
};

# What waits for Redis across a restart (docs/policy.md, "Across a
# restart"): a node reaches Redis through a proxy (t/lib/redis_cut.pl)
# that can keep it away, or cut a batch; the state file keeps the REPORTs'
# corrections and the usage waiting, and the kept batches with their
# numbers.  In Redis after: exactly what was used, once.

subtest 'Redis: what waits for Redis survives a restart, once' => sub {
    plan skip_all => 'redis-server is not installed' unless redis_server();

    my $w = Tailgate::Gateway->new;
    my %wk = map { $_ => $w->new_key } qw(tom kim cutb cuta);
    my $wpolicy = $JSON->decode($JSON->encode($policy));
    # a share of 50.0 a day for each of 2 nodes: nothing here is refused
    $wpolicy->{limits}{profiles}{cheap} = { budget => { day => 100 } };
    $wpolicy->{limits}{state_file} = $w->dir . '/limits.state';

    start_redis($w);
    my $proxy = start_redis_cut($w);
    $w->mock_provider('local');
    start_node($w, $w, name => 'w', policy => $wpolicy,
               redis => { address => $proxy },
               start => { keys => [ map { ($_ => { key => $wk{$_},
                                                    limit => 'cheap' }) }
                                    sort keys %wk ],
                          timeout => '5s' });
    $w->allow_log(qr/cannot connect to policyd/,
                  qr/policyd connection #\d+ closed/,
                  qr/policyd at "unix:[^"]+" is reachable again/);

    my $day = do {
        my @g = gmtime;
        sprintf '%04d-%02d-%02d', $g[5] + 1900, $g[4] + 1, $g[3];
    };
    my $usage = sub {
        my ($who, $what) = @_;
        return redis_cli($w, 'HGET', "{tg:usage:$day}:client", "$what:$who")
               // 0;
    };
    my $ds = sub {
        redis_cli($w, 'HGET', "{tg:limits}:c|cheap|$_[0]", 'ds') // 0;
    };
    my $view = sub {
        my $doc = node_status($w) or return {};
        return $doc->{policyd}{redis}{reconcile} // {};
    };
    my $ask = sub {
        my $r = $w->chat('qwen', key => $wk{$_[0]}, headers => $used);
        select(undef, undef, undef, 0.6);
        return $r->{status};
    };
    my $restart = sub {
        my ($how) = @_;
        my $mark = $w->log_size('policyd');
        $how eq 'KILL' ? $w->kill_policyd : $w->stop_policyd;
        $w->start_policyd(env => { EXT_API_KEY =>
                                   $Tailgate::Gateway::PROVIDER_KEY },
                          args => ['-a', $w->dir . '/admin.sock']);
        return substr($w->policyd_log, $mark);
    };
    # Redis back for the node: everything kept and waiting answered
    my $back = sub {
        redis_cut($w, 'pass');
        ok(wait_state($w, 'up'), 'Redis is back for the node');
        ok($w->wait_for(sub {
            my $v = $view->();
            ($v->{pending} // 1) == 0 && ($v->{usage_pending} // 1) == 0
                && ($v->{corrections}{waiting} // 1) == 0
        }, timeout => 10, interval => 0.1), 'all it kept went, answered')
            or diag explain $view->();
    };

    ok(wait_state($w, 'up'), 'redis is up');

    # tom: one take through Redis, reported while Redis is away (a
    # correction: 5.0), then two alone (the away tally: 10.0)
    my $slow = { 'X-Mock-Control' => $JSON->encode(
        { delay_ms => 1500,
          usage => { prompt_tokens => 4, completion_tokens => 6 } }) };
    my $conn = $w->open_post('/v1/chat/completions',
        { model => 'qwen', messages => [{ role => 'user', content => 'Hi' }] },
        key => $wk{tom}, headers => $slow);
    sleep 0.7;                          # decided: taken in Redis
    redis_cut($w, 'down');
    ok(wait_state($w, 'down'), 'then Redis is away for the node');
    my ($status) = $conn->read_response(10);
    is($status, 200, 'tom: its answer, the REPORT read while away');
    is_deeply([ map { $ask->('tom') } 1 .. 2 ], [200, 200],
              'tom: two more, alone');
    ok($w->wait_for(sub {
        my $v = $view->();
        ($v->{corrections}{waiting} // 0) == 1
            && ($v->{usage_pending} // 0) >= 3
    }, timeout => 5, interval => 0.1), 'its correction and usage wait')
        or diag explain $view->();

    my $log = $restart->('TERM');
    like($log, qr/what waited for Redis: 0 kept batches, 1 corrections, 3 usage entries/,
         'SIGTERM, started again: the correction and the usage restored');
    ok(wait_state($w, 'down'), 'while Redis is still away');
    $back->();

    is($usage->('tom', 'requests'), 3, 'tom: the usage of its three requests');
    is($usage->('tom', 'tokens'), 30, 'their tokens');
    is($usage->('tom', 'cost'), 15e9, 'their cost');
    is($ds->('tom'), 15e9, 'the day spent: the correction and the tally');

    # kim: after the periodic save, SIGKILL
    redis_cut($w, 'down');
    ok(wait_state($w, 'down'), 'Redis away again');
    is_deeply([ map { $ask->('kim') } 1 .. 2 ], [200, 200],
              'kim: two alone');
    sleep 1.5;                          # saved within a second
    $log = $restart->('KILL');
    like($log, qr/what waited for Redis: 0 kept batches, 0 corrections, 3 usage entries/,
         'SIGKILL after the save: the usage restored');
    $back->();
    is($usage->('kim', 'requests'), 2, 'kim: the usage of its two requests');
    is($usage->('kim', 'cost'), 10e9, 'their cost');
    is($ds->('kim'), 10e9, 'the day spent, once');

    # a cut, then a restart before Redis is back: the kept batches go
    # again with their numbers
    for my $case (['cutb', 'before-down', 1], ['cuta', 'after-down', 2]) {
        my ($who, $mode, $skipped) = @$case;

        redis_cut($w, 'down');
        ok(wait_state($w, 'down'), "$who: Redis away");
        is($ask->($who), 200, "$who: one request alone");
        my $cuts = () = redis_cuts($w);
        redis_cut($w, "$mode {tg:usage:");
        ok($w->wait_for(sub { (() = redis_cuts($w)) > $cuts }, timeout => 20,
                        interval => 0.1), "$who: the usage batch cut ($mode)");
        ok($w->wait_for(sub { ($view->()->{pending} // 0) == 2 },
                        timeout => 10, interval => 0.1),
           "$who: the reconcile's batch and the usage batch kept")
            or diag explain $view->();

        $log = $restart->('TERM');
        like($log, qr/what waited for Redis: 2 kept batches/,
             "$who: restarted: both restored");
        my $was = $view->();
        $back->();
        my $now = $view->();
        is(($now->{skipped} // 0) - ($was->{skipped} // 0), $skipped,
           "$who: $skipped skipped, as Redis had run them");
        is($usage->($who, 'requests'), 1, "$who: the usage, once");
        is($ds->($who), 5e9, "$who: the day spent, once");
    }

    sleep 1.2;
    is($usage->('tom', 'requests') . ' ' . $usage->('kim', 'requests') . ' '
       . $usage->('cutb', 'requests') . ' ' . $usage->('cuta', 'requests'),
       '3 2 1 1', 'and nothing more came since');
    is($ds->('tom') + $ds->('kim'), 25e9, 'nor more spend');

    $w->stop_all;
    $w->logs_clean('the node behind the proxy: error.log is clean');
};

$t->done_testing;


# the file as policyd writes it, with its end line and check sum
sub write_state {
    my (@lines) = @_;
    my $body = join '', "tailgate-limits 1\n", map { "$_\n" } @lines;
    my $h;
    {
        use integer;
        $h = -3750763034362895579;      # 0xcbf29ce484222325
        for my $c (unpack 'C*', $body) {
            $h ^= $c;
            $h *= 1099511628211;        # 0x100000001b3
        }
    }
    $t->write_file($STATE, $body . sprintf("end %d %016x\n", scalar @lines, $h));
}
