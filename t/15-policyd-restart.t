#!/usr/bin/perl

# policyd killed mid-run: requests fail closed at once (not after the
# decision timeout), requests that were waiting for an answer fail too, and
# once policyd is back the same nginx workers serve again - no reload.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Time::HiRes qw(time);
use Tailgate::Gateway;

my $t = Tailgate::Gateway->new->skip_unless_built;

# a long timeout: a 503 that comes fast did not wait for it
my $key = $t->start_gateway(timeout => '10s');
my $local = $t->mock('local');

$t->allow_log(qr/cannot connect to policyd/, qr/policyd connection #\d+ closed/);

my @workers = $t->nginx_worker_pids;

is($t->chat('qwen')->{status}, 200, 'served while policyd runs');

subtest 'SIGKILL: every request fails closed, at once' => sub {
    $t->kill_policyd;
    $local->clear;

    my ($ok, $slowest) = (0, 0);

    for (1 .. 20) {
        my $res = $t->chat('qwen');
        $ok++ if $res->{status} == 503
                 && ($t->error($res)->{code} // '') eq 'policy_unavailable';
        $slowest = $res->{total_s} if $res->{total_s} > $slowest;
    }

    is($ok, 20, '20 requests, 20 OpenAI-shaped 503s');
    cmp_ok($slowest, '<', 5, 'none waited for the 10 s decision timeout');
    is(scalar @{ $local->requests }, 0, 'none reached a provider');
};

subtest 'policyd back on the same socket: served again, no nginx reload' => sub {
    $t->start_policyd(env => { EXT_API_KEY => $Tailgate::Gateway::PROVIDER_KEY });

    my $res = $t->chat('qwen');
    is($res->{status}, 200, 'the first request after the restart is served');
    is($t->chat('smart')->{status}, 200, 'and the next ones');

    is_deeply([$t->nginx_worker_pids], \@workers, 'by the same nginx workers');
    like($t->error_log, qr/policyd at "unix:[^"]+" is reachable again/,
         'error.log says it is back');
};

subtest 'requests waiting for a decision fail when policyd dies' => sub {
    $t->stop_policyd;
    $t->start_fake_policyd({
        decision => { provider => 'local', upstream => 'tg_local',
                      scheme => 'http', host => 'local', zone => 'local',
                      path => '/v1/chat/completions' },
        delay_ms => { 'slow' => 8000 },
    });

    my @conns = map {
        $t->open_post('/v1/chat/completions', '{"model":"slow"}')
    } 1 .. 3;

    ok($t->wait_for(sub { 3 == @{ $t->fake_frames('DECIDE') } }, timeout => 5),
       'three requests are waiting for their decision');

    my $start = time;
    $t->kill_policyd;

    for my $c (@conns) {
        $c->read_all(5);
        is($c->status, 503, 'a waiting request fails closed');
    }

    cmp_ok(time - $start, '<', 4, 'as soon as the connection dropped');
};

$t->done_testing;
