#!/usr/bin/perl
#
# Concurrency leases for a fragile local model: a mock that refuses a second
# concurrent request (503 and "refused" in its record), two nginx workers,
# parallel clients.  At no instant does it see more than its limit, while
# the others fall back, wait in line (in order of arrival, without policyd's
# timeout cutting them short) or get 429 with Retry-After, as the route says.
# A client that hangs up, and a worker killed with SIGKILL, give their
# leases back; a client that hangs up while it waits leaves the line.  A
# slot that comes free goes to the oldest waiting request, also when a
# newcomer arrives in the same write, and a decision that passed over a
# busy step is not reused once that step has room.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use POSIX ();
use Test::More;
use Time::HiRes qw(sleep time);
use Tailgate::Gateway;
use Tailgate::Proto;

my $t = Tailgate::Gateway->new->skip_unless_built;

my $local = { provider => 'local', model => 'l' };
my $ext = { provider => 'ext', model => 'e' };

my $policy = {
    providers => {
        local => { upstream => 'tg_local', zone => 'local',
                   endpoints => ['chat'], max_concurrency => 1 },
        ext   => { upstream => 'tg_ext', zone => 'external',
                   api_key => '${EXT_API_KEY}', endpoints => ['chat'] },
    },
    routes => {
        spill  => { steps => [$local, $ext], fallback => { on => 'busy' } },
        line   => { steps => [$local],
                    queue => { max_length => 8, max_wait_ms => 8000 } },
        short  => { steps => [$local, $ext], fallback => { on => 'busy' },
                    queue => { max_length => 8, max_wait_ms => 300 } },
        one    => { steps => [$local],
                    queue => { max_length => 1, max_wait_ms => 8000 } },
        only   => { steps => [$local] },
    },
};

$t->mock_provider('local', max_concurrency => 1, delay_ms => 400);

my $key = $t->start_gateway(policy => $policy, workers => 2,
                            policyd_args => ['-v']);

my %mock = map { $_ => $t->mock($_) } qw(local ext);

sub seen { scalar @{ $mock{$_[0]}->requests } }

# what local saw since $from: requests, the most at once, refusals
sub local_since {
    my ($from) = @_;
    my $all = $mock{local}->requests;
    my @r = @$all[$from .. $#$all];
    my $max = 0;
    $max = $_->{concurrent} > $max ? $_->{concurrent} : $max for @r;
    return (scalar @r, $max, scalar grep { $_->{refused} } @r);
}

sub provider { $t->answered_by($_[0]) }

# fall back when busy

{
    my $from = seen('local');
    my @got = $t->parallel(6, sub { provider($t->chat('spill')) });
    my ($n, $max, $refused) = local_since($from);

    is($max, 1, 'spill: local never saw two at once');
    is($refused, 0, 'spill: it refused nothing');
    ok($n >= 1, "spill: local served $n");
    is(scalar(grep { $_ eq 'local' } @got), $n, 'spill: all it got were answered');
    is(scalar(grep { $_ eq 'ext' } @got), 6 - $n, 'spill: the rest went to ext');
}

# wait in line: every request is served by local, one at a time, in order;
# the last waits longer than tailgate_policyd_timeout (1s)

{
    my $from = seen('local');
    my @got = $t->parallel(5, sub {
        my ($i) = @_;
        sleep 0.1 * $i;     # arrive in this order
        my $res = $t->chat('line', body => { user => "client-$i" },
                           timeout => 15);
        return [provider($res), $res->{elapsed_s}];
    }, timeout => 30);

    my ($n, $max, $refused) = local_since($from);

    is_deeply([map { $_->[0] } @got], [('local') x 5], 'line: all by local');
    is($max, 1, 'line: never two at once');
    is($refused, 0, 'line: nothing refused');
    my $all = $mock{local}->requests;
    is_deeply([map { $_->{json}{user} } @$all[$from .. $#$all]],
              [map { "client-$_" } 0 .. 4], 'line: served in order of arrival');
    cmp_ok($got[4][1], '>', 1, 'line: the last one waited past policyd\'s '
                               . 'timeout, and was still served');
    like($t->policyd_log, qr/waits for a slot of local/, 'policyd queued them');
}

# the wait runs out: on to the next step

{
    $mock{local}->update(delay_ms => 1500);
    my @got = $t->parallel(3, sub {
        my ($i) = @_;
        sleep 0.1 * $i;
        return provider($t->chat('short', timeout => 15));
    }, timeout => 30);

    is($got[0], 'local', 'short: the first gets local');
    is_deeply([@got[1, 2]], ['ext', 'ext'],
              'short: after 300 ms of waiting, the others fall back');
    $mock{local}->update(delay_ms => 400);
}

# a bounded line: the one that finds it full gets 429

{
    my @got = $t->parallel(3, sub {
        my ($i) = @_;
        sleep 0.1 * $i;
        my $res = $t->chat('one', timeout => 15);
        return [$res->{status}, $res->{headers}{'retry-after'},
                ($t->error($res) // {})->{code}];
    }, timeout => 30);

    is_deeply([map { $_->[0] } @got], [200, 200, 429],
              'one: served, waited and served, refused');
    is_deeply($got[2], [429, 1, 'provider_busy'],
              'one: 429 provider_busy with Retry-After');
}

# no queue, no fallback: 429 at once

{
    my $from = seen('local');
    my @got = $t->parallel(4, sub {
        my $res = $t->chat('only');
        return [$res->{status}, $res->{headers}{'retry-after'}];
    });
    my ($n, $max) = local_since($from);

    is(scalar(grep { $_->[0] == 200 } @got), $n, 'only: local served some');
    is(scalar(grep { $_->[0] == 429 && $_->[1] == 1 } @got), 4 - $n,
       'only: the others got 429 with Retry-After: 1');
    is($max, 1, 'only: never two at once');
}

# a client that hangs up mid-stream gives its lease back

$mock{local}->update(delay_ms => 0, stream_gate => 'gate');

sub hold_stream {
    my $c = $t->open_post('/v1/chat/completions',
        '{"model":"only","stream":true,'
        . '"messages":[{"role":"user","content":"hi"}]}');
    ok($c->read_until(qr/data: \{/, 5), 'a stream holds the lease');
    return $c;
}

{
    my $c = hold_stream();

    is($t->chat('only')->{status}, 429, 'meanwhile local is busy');

    $c->close;

    ok($t->wait_log('policyd.log', qr/REPORT \d+: 1 x client_abort/),
       'the abort is reported');
    is(provider($t->chat('only')), 'local', 'and local is free again');
}

# a worker killed with SIGKILL gives its leases back

{
    my $c = hold_stream();
    is($t->chat('only')->{status}, 429, 'local is busy');

    my $before = $t->log_size('policyd');
    my @workers = $t->nginx_worker_pids;
    kill 'KILL', @workers;
    $c->close;

    ok($t->wait_log('policyd', qr/\([1-9]\d* frames, [1-9]\d* leases released\)/,
                    from => $before),
       'policyd freed the dead worker\'s leases')
        or diag(substr($t->policyd_log, $before));
    ok($t->wait_for(sub { my @w = $t->nginx_worker_pids;
                          @w == 2 && !grep({ my $o = $_; grep { $_ == $o } @workers } @w) }),
       'nginx started new workers');
    is(provider($t->chat('only')), 'local', 'local is free again');
}

$t->allow_log(qr/exited on signal 9/);

# policyd restarts - stopped cleanly, then killed - while a stream holds
# local's only slot: the worker re-announces its lease to the new policyd,
# which waits for leases before it grants any, so local never sees two
# requests at once, and the slot comes back when the stream ends

for my $how (qw(TERM KILL)) {
    $mock{local}->update(delay_ms => 0, stream_gate => "gate-$how");
    my $from = seen('local');

    my $c = hold_stream();
    my $before = $t->log_size('policyd');

    $how eq 'KILL' ? $t->kill_policyd : $t->stop_policyd;
    $t->start_policyd(args => ['-v'],
                      env => { EXT_API_KEY => $Tailgate::Gateway::PROVIDER_KEY });

    is($t->chat('only')->{status}, 429,
       "after policyd's restart (SIG$how): local is still busy");
    is(provider($t->chat('spill')), 'ext', 'and the next step takes the spill');

    ok($t->wait_log('policyd', qr/lease \d+ of provider "local" is held by the worker/,
                    from => $before),
       'the worker re-announced its lease');

    $t->write_file("gate-$how", '');
    ok($c->read_until(qr/\[DONE\]/, 10), 'the stream ends');

    ok($t->wait_for(sub { (provider($t->chat('only')) // '') eq 'local' }, timeout => 5),
       'then local is free again');

    my (undef, $max, $refused) = local_since($from);
    is($max, 1, 'local never had two requests at once');
    is($refused, 0, 'and refused none');
}

$mock{local}->update(delay_ms => 0, stream_gate => 'gate');
$t->allow_log(qr/policyd connection #\d+ closed/, qr/cannot connect to policyd/);

# a client that hangs up while its request waits in line leaves the line:
# a line "full" of requests whose clients are gone must not turn real ones
# away with 429 provider_busy ("one": a line of one)

{
    my $open = sub {
        my ($stream) = @_;
        return $t->open_post('/v1/chat/completions',
            '{"model":"one",' . ($stream ? '"stream":true,' : '')
            . '"messages":[{"role":"user","content":"hi"}]}');
    };

    # a stream holds local's only slot

    my $holder = $open->(1);
    ok($holder->read_until(qr/data: \{/, 5), 'a stream holds the only slot');

    # a second request waits in line, and its client gives up

    my $mark = $t->log_size('policyd');
    my $gone = $open->(0);
    ok($t->wait_log('policyd', qr/DECIDE \d+ waits for a slot of local/,
                    from => $mark),
       'a request waits in line');
    $gone->close;     # its client hung up
    sleep 0.5;

    # a third request: the line has room, nobody is in it

    my $res = $t->chat('one', timeout => 2);
    isnt($res->{status}, 429,
         'a new request is not refused for a line that only its ghost fills')
        or diag(($t->error($res) // {})->{code} // $res->{body});

    $holder->close;
    $t->logs_clean('error.log is clean after the client that left the line');
}

# the rest has gateways of its own
$t->stop_all;

# a slot that comes free goes to the oldest waiting request.  When a lease
# ends, policyd schedules the wake of the line; a DECIDE handled before
# that (the next frame of the same read: the module sends REPORT and the
# next DECIDE in one write when both are queued in one loop iteration)
# must not take the slot past the one that waited.  Raw protocol against a
# policyd of its own.

{
    my $t2 = Tailgate::Test->new;

    $t2->write_policy({
        providers => {
            gpu => { upstream => 'tg_gpu', zone => 'local', endpoints => ['chat'],
                     max_concurrency => 1 },
        },
        routes => {
            line => { steps => [ { provider => 'gpu', model => 'big' } ],
                      queue => { max_length => 8, max_wait_ms => 3000 } },
        },
    });

    $t2->start_policyd(args => ['-v']);

    my $s = tg_connect($t2->policyd_sock);

    my $decide = sub { tg_decide($_[0], 'line') };

    # read frames for up to $secs; by id
    my $frames = sub {
        my ($secs) = @_;
        my %by;
        my $end = time + $secs;
        while (time < $end) {
            my $f = tg_read_frame($s, $end - time) or last;
            push @{ $by{$f->{id}} }, $f;
        }
        return \%by;
    };

    tg_send($s, tg_frame(TG_MSG_HELLO, 0, [TG_F_MAX_FRAME, 'u32', 65536])
                . $decide->(1));

    my $got = $frames->(0.5);
    my ($d1) = grep { $_->{type} == TG_MSG_DECISION } @{ $got->{1} // [] };
    ok($d1 && tg_field($d1, TG_F_STATUS) == 200, 'request 1 gets the slot');
    my $lease = $d1 ? tg_field($d1, TG_F_LEASE) : 0;
    ok($lease, "with lease $lease");

    tg_send($s, $decide->(2));
    $got = $frames->(0.5);
    is(($got->{2}[0] // {})->{type}, TG_MSG_QUEUED, 'request 2 waits in line');

    # request 1 ends; request 3 arrives in the same write (as the module
    # batches frames of one event loop iteration)

    tg_send($s, tg_frame(TG_MSG_REPORT, 0, [TG_F_LEASE, 'u32', $lease],
                         [TG_F_PROVIDER, 'str', 'gpu'], [TG_F_ROUTE, 'str', 'line'],
                         [TG_F_OUTCOME, 'str', 'ok'])
                . $decide->(3));

    $got = $frames->(1);

    my ($d2) = grep { $_->{type} == TG_MSG_DECISION } @{ $got->{2} // [] };
    my ($d3) = grep { $_->{type} == TG_MSG_DECISION } @{ $got->{3} // [] };
    my ($q3) = grep { $_->{type} == TG_MSG_QUEUED } @{ $got->{3} // [] };

    ok($d2 && tg_field($d2, TG_F_STATUS) == 200,
       'the slot goes to request 2, which waited')
        or diag('request 2 got: '
                . ($d2 ? 'DECISION ' . tg_field($d2, TG_F_STATUS) : 'nothing yet'));
    ok(!$d3 && $q3, 'request 3, the newcomer, waits behind it')
        or diag('request 3 got: '
                . ($d3 ? 'DECISION ' . tg_field($d3, TG_F_STATUS)
                         . ' lease ' . (tg_field($d3, TG_F_LEASE) // 0)
                       : 'no decision'));

    close $s;

    $t2->stop_and_check('error.log is clean after the line kept its order');
}

# A lease's REPORT and the next DECIDE on two connections, read in the same
# pass of policyd's loop (policyd is stopped while both are written): the
# DECIDE must find the slot the REPORT gave back, whichever connection
# policyd's loop happens to serve first.  Five rounds, raw protocol.

{
    my $t2 = Tailgate::Test->new;

    $t2->write_policy({
        providers => {
            gpu => { upstream => 'tg_gpu', zone => 'local', endpoints => ['chat'],
                     max_concurrency => 1 },
            ext => { upstream => 'tg_ext', zone => 'external', endpoints => ['chat'] },
        },
        routes => {
            spill => { steps => [ { provider => 'gpu', model => 'big' },
                                  { provider => 'ext', model => 'e' } ],
                       fallback => { on => 'busy' } },
        },
    });

    $t2->start_policyd(args => ['-v']);

    my @conn = map { tg_connect($t2->policyd_sock) } 1 .. 2;
    tg_send($_, tg_frame(TG_MSG_HELLO, 0, [TG_F_MAX_FRAME, 'u32', 65536])) for @conn;
    tg_read_frame($_, 2) for @conn;

    my $decision = sub {
        my ($s, $id) = @_;
        my $end = time + 3;
        while (time < $end) {
            my $f = tg_read_frame($s, $end - time) or return undef;
            return $f if $f->{type} == TG_MSG_DECISION && $f->{id} == $id;
        }
        return undef;
    };

    my $pid = $t2->policyd_pid;
    my $lease;
    my @answer;

    my $d = (tg_send($conn[0], tg_decide(1, 'spill')) && $decision->($conn[0], 1));
    $lease = $d ? tg_field($d, TG_F_LEASE) : 0;
    ok($lease, "the first request holds gpu's only slot (lease $lease)");

    for my $round (1 .. 5) {
        my $id = 100 + $round;

        kill 'STOP', $pid;
        tg_send($conn[0], tg_frame(TG_MSG_REPORT, 0, [TG_F_LEASE, 'u32', $lease],
                                   [TG_F_PROVIDER, 'str', 'gpu'],
                                   [TG_F_ROUTE, 'str', 'spill'],
                                   [TG_F_OUTCOME, 'str', 'ok']));
        tg_send($conn[1], tg_decide($id, 'spill'));
        kill 'CONT', $pid;

        my $next = $decision->($conn[1], $id);
        push @answer, $next ? tg_field($next, TG_F_PROVIDER) : 'none';
        $lease = $next ? tg_field($next, TG_F_LEASE) // 0 : 0;

        # the new holder's REPORT goes on the first connection next round
        last unless $lease;
    }

    is_deeply(\@answer, [('gpu') x 5],
              'every DECIDE read beside the REPORT that freed the slot gets it')
        or diag("answers: @answer");

    close $_ for @conn;

    $t2->stop_and_check('error.log is clean after REPORT and DECIDE in one pass');
}

# a decision that passed over a step because its provider was at capacity
# (fallback on busy) is not reused once that provider has room again -
# "local first, when the task fits" - although decisions are reused for
# 30 s here

{
    my $t2 = Tailgate::Gateway->new;

    my $policy = {
        decision_cache_ms => 30000,
        providers => {
            local => { upstream => 'tg_local', zone => 'local',
                       endpoints => ['chat'], max_concurrency => 1 },
            ext   => { upstream => 'tg_ext', zone => 'external',
                       endpoints => ['chat'], api_key => '${EXT_API_KEY}' },
        },
        routes => {
            b => { steps => [ { provider => 'local', model => 'l' },
                              { provider => 'ext', model => 'e' } ],
                   fallback => { on => 'busy' } },
        },
    };

    $t2->start_gateway(policy => $policy);

    my %mock = map { $_ => $t2->mock($_) } qw(local ext);

    # one slow request holds local's only slot

    $mock{local}->set(delay_ms => 1500);

    my $pid = fork;
    die "fork: $!\n" unless defined $pid;

    if ($pid == 0) {
        $t2->chat('b', timeout => 10);
        POSIX::_exit(0);
    }

    ok($mock{local}->wait_requests(1, timeout => 5), 'local is busy');

    my $res = $t2->chat('b');
    is($res->{headers}{'x-tailgate-provider'}, 'ext',
       'while local is busy: the next step');

    waitpid $pid, 0;
    $mock{local}->set();

    # the lease is given back (REPORT) when the slow request ends; on a
    # loaded machine that may take a moment, but a reused decision would
    # send every request to ext for the whole 30 s
    ok($t2->wait_for(sub { ($t2->chat('b')->{headers}{'x-tailgate-provider'} // '')
                           eq 'local' }, timeout => 5),
       'local gets requests again once it has room');

    for my $i (1 .. 3) {
        $res = $t2->chat('b');
        is($res->{headers}{'x-tailgate-provider'}, 'local',
           "request $i after local has room again goes to local");
    }

    $t2->stop_and_check('error.log is clean after the busy step had room again');
}

done_testing();
