#!/usr/bin/perl

# A bench scenario for the lead to run (not part of make bench yet, and
# not run by the suite): policyd's decisions per second with a client
# limit, its windows in memory and in a real redis-server, and what one
# Redis round trip adds to a decision at -c1 (issue 14, item 8).
#
#   perl bench/limits_redis.pl            # 5 s a run
#   BENCH_SECONDS=10 BENCH_CONNS=8 perl bench/limits_redis.pl
#
# Each run starts its own policyd (TAILGATE_POLICYD, else build/policyd)
# on a unix socket in build/bench-limits/; the Redis runs use a
# redis-server on a unix socket there too.  A client talks the wire
# protocol (t/lib/Tailgate/Proto.pm) like a worker: DECIDE, DECISION,
# then the REPORT that ends its lease, one after the other on each of
# BENCH_CONNS connections (1 and that many).  The limit (rpm and tpm of
# 1e9) is never reached: what is measured is the cost of counting.
# Output: one line per run, then memory_dps=, redis_dps=, and
# redis_round_trip_us_c1= (the mean decision time with Redis less the one
# without, at one connection).

use strict;
use warnings;

use Cwd qw(abs_path);
use File::Basename qw(dirname);
use File::Path qw(make_path remove_tree);
use JSON::PP;
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(time sleep);

my $ROOT;
BEGIN { $ROOT = abs_path(dirname(abs_path(__FILE__)) . '/..') }
use lib "$ROOT/t/lib";
use Tailgate::Proto;

my $DIR = "$ROOT/build/bench-limits";
my $SECONDS = $ENV{BENCH_SECONDS} // 5;
my $CONNS = $ENV{BENCH_CONNS} // 8;
my $POLICYD = $ENV{TAILGATE_POLICYD} // "$ROOT/build/policyd";
my $REDIS = (grep { -x } map { "$_/redis-server" } split /:/, $ENV{PATH})[0]
            // '/usr/bin/redis-server';
my %proc;

$SIG{INT} = $SIG{TERM} = sub { stop_all(); exit 130 };
END { stop_all() }

die "no policyd at $POLICYD: make all\n" unless -x $POLICYD;
die "no redis-server: make deps\n" unless -x $REDIS;

remove_tree($DIR);
make_path($DIR);

my $policy = {
    listen => { path => "$DIR/policyd.sock" },
    decision_cache_ms => 0,
    providers => { local => { upstream => 'u', zone => 'local',
                              endpoints => ['chat'] } },
    routes => { bench => { steps => [{ provider => 'local', model => 'm' }] } },
    limits => { profiles => { big => { rpm => 1000000000, tpm => 1000000000 } },
                default => 'big' },
};

my %result;

for my $mode (qw(memory redis)) {
    my $p = JSON::PP->new->decode(JSON::PP->new->encode($policy));

    if ($mode eq 'redis') {
        spawn('redis', [ $REDIS, '--port', '0', '--unixsocket', "$DIR/redis.sock",
                         '--unixsocketperm', '700', '--save', '',
                         '--appendonly', 'no', '--dir', $DIR ]);
        wait_for(sub { -S "$DIR/redis.sock" }, 'redis-server');
        $p->{redis} = { address => "unix:$DIR/redis.sock", node_id => 'bench',
                        nodes => 1, timeout_ms => 1000 };
    }

    open(my $fh, '>', "$DIR/policy.json") or die "$DIR/policy.json: $!";
    print $fh JSON::PP->new->encode($p);
    chmod 0600, "$DIR/policy.json";
    close $fh;

    spawn('policyd', [ $POLICYD, '-c', "$DIR/policy.json" ],
          "$DIR/policyd-$mode.log");
    wait_for(sub { -S "$DIR/policyd.sock" }, 'the policyd socket');
    sleep 0.5;      # Redis up, scripts loaded

    for my $c (1, $CONNS) {
        my ($n, $secs) = run($c);
        my $dps = $n / $secs;
        printf "%-6s -c%-3d %9.0f decisions/s  %7.1f us a decision\n",
               $mode, $c, $dps, 1e6 * $c / ($dps || 1);
        $result{$mode}{$c} = $dps;
    }

    stop('policyd');
    unlink "$DIR/policyd.sock";
    stop('redis') if $mode eq 'redis';
}

printf "memory_dps=%.0f redis_dps=%.0f redis_round_trip_us_c1=%.1f\n",
       $result{memory}{$CONNS}, $result{redis}{$CONNS},
       1e6 / $result{redis}{1} - 1e6 / $result{memory}{1};


# $c connections, each DECIDE, DECISION, REPORT in turn for $SECONDS
sub run {
    my ($c) = @_;
    my @kids;

    for my $k (1 .. $c) {
        pipe(my $r, my $w) or die "pipe: $!";
        my $pid = fork // die "fork: $!";

        if ($pid == 0) {
            close $r;
            my $s = tg_connect("$DIR/policyd.sock") or POSIX::_exit(1);
            tg_send($s, tg_frame(TG_MSG_HELLO, 0, [TG_F_MAX_FRAME, 'u32', 65536]));
            tg_read_frame($s, 5) or POSIX::_exit(1);

            my ($n, $id, $t0) = (0, 0, time);
            while (time - $t0 < $SECONDS) {
                tg_send($s, tg_decide(++$id, 'bench', [TG_F_CLIENT, 'str', "c$k"]));
                my $f = tg_read_frame($s, 5) or last;
                my $lease = tg_field($f, TG_F_LEASE) // 0;
                tg_send($s, tg_frame(TG_MSG_REPORT, ++$id,
                                     [TG_F_LEASE, 'u32', $lease],
                                     [TG_F_OUTCOME, 'str', 'ok'],
                                     [TG_F_HTTP_STATUS, 'u32', 200],
                                     [TG_F_PROMPT_TOKENS, 'u32', 10],
                                     [TG_F_COMPLETION_TOKENS, 'u32', 20]));
                $n++;
            }
            syswrite $w, sprintf("%d %.6f\n", $n, time - $t0);
            POSIX::_exit(0);
        }

        close $w;
        push @kids, [$pid, $r];
    }

    my ($total, $secs) = (0, 0);
    for my $k (@kids) {
        my $line = readline($k->[1]) // "0 1\n";
        waitpid($k->[0], 0);
        my ($n, $s) = split ' ', $line;
        $total += $n;
        $secs = $s if $s > $secs;
    }

    return ($total, $secs || 1);
}

sub spawn {
    my ($name, $argv, $log) = @_;
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>', $log // '/dev/null';
        open STDERR, '>&', \*STDOUT;
        exec @$argv or POSIX::_exit(127);
    }
    $proc{$name} = $pid;
}

sub stop {
    my ($name) = @_;
    my $pid = delete $proc{$name} or return;
    kill 'TERM', $pid;
    for (1 .. 100) { return if waitpid($pid, WNOHANG) == $pid; sleep 0.05 }
    kill 'KILL', $pid;
    waitpid($pid, 0);
}

sub stop_all { stop($_) for keys %proc }

sub wait_for {
    my ($cond, $what) = @_;
    for (1 .. 200) { return if $cond->(); sleep 0.05 }
    die "timed out waiting for $what\n";
}
