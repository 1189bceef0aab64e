#!/usr/bin/perl
#
# Faults under load, of the daemons: policyd killed, stopped and
# continued, restarted, given a broken policy; an nginx worker killed,
# nginx reloaded - each while a few clients make requests of every kind
# (fallback routes, streams, private requests by header and by entrance,
# leases, a queue, uploads).  After each: no request hung, no lease held and
# nobody waiting, policyd's counts agree with what the clients saw, no
# private request reached the external provider, and the gateway serves
# and counts as before.  Tailgate::Faults has the load and the checks;
# t/57-provider-faults.t and t/58-client-faults.t have the faults of
# providers and clients.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Tailgate::Faults;

my $t = Tailgate::Faults->new->skip_unless_built;
$t->start_faults;

# a worker killed with SIGKILL: the master says so
$t->allow_log(qr/worker process \d+ exited on signal 9/);

sub since { my ($ctx) = @_; return Time::HiRes::time() - $ctx->{load}{start} }

# requests that began in [$from, $to) seconds into the load
sub between {
    my ($records, $from, $to) = @_;
    return grep { $_->{t0} >= $from && (!defined $to || $_->{t0} < $to) } @$records;
}

sub served { scalar grep { ($_->{status} // 0) == 200 } @_ }


$t->row('no fault: the checks hold for a healthy gateway',
    check => sub {
        my ($t, $records) = @_;
        my @bad = Tailgate::Faults::unhealthy(@$records);
        is(scalar @bad, 0, 'every request answered as a healthy gateway answers')
            or diag(JSON::PP->new->encode([ @bad[0 .. ($#bad < 4 ? $#bad : 4)] ]));
    });


# Killed, and started again half a second later.  What the old policyd
# counted is gone with it: the new one counts what it was told - every
# attempt of the requests that began once it was up, and some of the
# attempts of those that began before (reported to it after it came up;
# the worker re-announces the leases they hold).  So the counts lie
# between the two, and the exact check afterwards shows it counts as
# before.

$t->row('policyd SIGKILL under load',
    steps => [
        [0.8, sub { $_[0]->kill_policyd }],
        [1.3, sub {
            my ($t, $ctx) = @_;
            $t->restart_policyd;
            $ctx->{fresh_since} = since($ctx);
        }],
    ],
    check => sub {
        my ($t, $records, $ctx) = @_;
        my @after = between($records, $ctx->{fresh_since});
        cmp_ok(served(@after), '>', 0,
               'requests made after the restart were served ('
               . served(@after) . ' of ' . scalar(@after) . ')');
    });


# Stopped for three seconds, longer than the module waits for a decision
# (tailgate_policyd_timeout 2s): those requests fail closed with 503, and
# when policyd goes on it decides them all, each decision answered with
# REPORT not_sent for its provider and route (protocol.md, "REPORT
# outcomes").  Nothing is lost: the same process counts throughout, so
# every decision of each route is reported once.

$t->row('policyd SIGSTOP, then SIGCONT, under load',
    seconds => 5.5,
    steps => [
        [0.8, sub { $_[0]->signal('policyd', 'STOP') }],
        [3.8, sub { $_[0]->signal('policyd', 'CONT') }],
    ],
    check => sub {
        my ($t, $records) = @_;
        my @closed = grep { ($_->{code} // '') eq 'policy_unavailable' } @$records;
        cmp_ok(scalar @closed, '>', 0, 'requests that waited for a stopped '
               . 'policyd failed closed (' . scalar(@closed) . ')');
        cmp_ok(served(between($records, 4)), '>', 0,
               'requests after SIGCONT were served');
    });


# Stopped cleanly (SIGTERM) while workers hold leases, started again: the
# new policyd waits for the leases to be re-announced before it grants
# any (gpu never has two at once).  Counted as after SIGKILL.

$t->row('policyd restart (stop, start) under load',
    steps => [
        [0.8, sub { $_[0]->stop_policyd }],
        [1.2, sub {
            my ($t, $ctx) = @_;
            $t->restart_policyd;
            $ctx->{fresh_since} = since($ctx);
        }],
    ],
    check => sub {
        my ($t, $records, $ctx) = @_;
        cmp_ok(served(between($records, $ctx->{fresh_since})), '>', 0,
               'requests made after the restart were served');
    });


# A broken file, then a valid one that is not a policy, each with SIGHUP:
# policyd logs why, keeps its policy and serves on; then the good file
# again.  The same process throughout: counted exactly.

{
    my $good = $t->read_file('policy.json');
    my %mark;

    my $reload = sub {
        my ($t, $text, $re, $what) = @_;
        my $from = $t->log_size('policyd');
        $t->write_file('policy.json', $text);
        $t->reload_policyd;
        $mark{$what} = $t->wait_log('policyd', $re, from => $from, timeout => 10);
    };

    my $bad_step = $good =~ s/"provider" : "gpu"/"provider" : "nosuch"/r;

    $t->row('a broken policy reload under load',
        steps => [
            [0.8, sub { $reload->($_[0], "{ \"providers\": { oops",
                                  qr/reload failed, keeping the old policy/,
                                  'invalid JSON') }],
            [1.6, sub { $reload->($_[0], $bad_step,
                                  qr/reload failed, keeping the old policy/,
                                  'a step of no provider') }],
            [2.4, sub { $reload->($_[0], $good, qr/policy reloaded/, 'good') }],
        ],
        check => sub {
            my ($t, $records) = @_;
            ok($mark{'invalid JSON'}, 'invalid JSON: the reload failed, logged');
            ok($mark{'a step of no provider'},
               'a step of no provider: the reload failed, logged');
            ok($mark{good}, 'the good file again: reloaded');
            like($t->policyd_log, qr/routes\.line\.steps\[0\]\.provider/,
                 'the log names the key that is wrong');
            my @during = between($records, 0.8, 2.4);
            my @bad = Tailgate::Faults::unhealthy(@during);
            is(scalar @bad, 0, 'meanwhile every request ('
                               . scalar(@during) . ') was served by the old policy')
                or diag(JSON::PP->new->encode([ @bad[0 .. ($#bad < 4 ? $#bad : 4)] ]));
        });
}


# One of the two workers killed: its requests break off (their clients
# see the connection close), policyd ends the leases of its connections,
# the master starts another.  The plain successes it had counted in the
# last 250 ms and not yet sent are lost with it: for routes that have
# them (an external step without leases) only "never more than the
# clients saw" holds; requests with leases are reported at once.

$t->row('nginx worker SIGKILL under load',
    counts => { exact_decisions => 0, lost_worker => 1 },
    gpu_one => 0,
    allow => [qr/worker process \d+ exited on signal 9/],
    steps => [
        [1.0, sub {
            my ($t, $ctx) = @_;
            my @w = $t->nginx_worker_pids;
            $ctx->{killed} = $w[0];
            kill 'KILL', $w[0];
            $ctx->{replaced} = $t->wait_for(sub {
                my @now = $t->nginx_worker_pids;
                @now == 2 && !grep { $_ == $w[0] } @now;
            }, timeout => 10);
            $ctx->{replaced_at} = since($ctx);
        }],
    ],
    check => sub {
        my ($t, $records, $ctx) = @_;
        ok($ctx->{replaced}, "worker $ctx->{killed} killed, the master "
                             . 'started another');
        cmp_ok(served(between($records, $ctx->{replaced_at})), '>', 0,
               'requests after the kill were served');
    });


# Three reloads: the old workers finish what they serve and send what
# they counted before they exit - every request counted once.

$t->row('nginx reload under load',
    steps => [ map { my $at = $_; [$at, sub { $_[0]->reload_nginx(undef, wait_old => 0) }] }
               0.6, 1.3, 2.0 ],
    check => sub {
        my ($t, $records) = @_;
        my @bad = Tailgate::Faults::unhealthy(@$records);
        is(scalar @bad, 0, 'every request answered as a healthy gateway answers')
            or diag(JSON::PP->new->encode([ @bad[0 .. ($#bad < 4 ? $#bad : 4)] ]));
    });

$t->done_testing;
