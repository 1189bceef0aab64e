#!/usr/bin/perl
#
# Concurrency leases for a fragile local model: a mock that refuses a second
# concurrent request (503 and "refused" in its record), two nginx workers,
# parallel clients.  At no instant does it see more than its limit, while
# the others fall back, wait in line (in order of arrival, without policyd's
# timeout cutting them short) or get 429 with Retry-After, as the route says.
# A client that hangs up, and a worker killed with SIGKILL, give their
# leases back.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use POSIX ();
use Test::More;
use Time::HiRes qw(sleep time);
use Tailgate::Gateway;

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

sub provider { $_[0]{status} == 200 ? $_[0]{headers}{'x-tailgate-provider'}
                                    : $_[0]{status} }

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
    my $c = $t->http_open('POST', '/v1/chat/completions',
        headers => { Authorization => "Bearer $key",
                     'Content-Type' => 'application/json' },
        body => '{"model":"only","stream":true,'
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

    my $before = $t->policyd_log;
    my @workers = $t->nginx_worker_pids;
    kill 'KILL', @workers;
    $c->close;

    ok($t->wait_for(sub { $t->policyd_log =~ /\([1-9]\d* frames, [1-9]\d* leases released\)/ }),
       'policyd freed the dead worker\'s leases')
        or diag(substr($t->policyd_log, length $before));
    ok($t->wait_for(sub { my @w = $t->nginx_worker_pids;
                          @w == 2 && !grep({ my $o = $_; grep { $_ == $o } @workers } @w) }),
       'nginx started new workers');
    is(provider($t->chat('only')), 'local', 'local is free again');
}

$t->allow_log(qr/exited on signal 9/);

done_testing();
