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
# also after another restart.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use JSON::PP ();
use Test::More;
use Time::HiRes qw(sleep);
use Tailgate::Gateway;
use Tailgate::Redis qw(redis_server start_redis kill_redis redis_cli
                       start_node node_status);

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
