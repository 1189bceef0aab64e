#!/usr/bin/perl

# The worker never waits for policyd.  One nginx worker; policyd (a
# scriptable fake speaking the real protocol) holds one decision back for a
# second.  While that request waits, other requests on the same worker are
# decided, proxied and answered: proven by the order things happen in, not
# by timing.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Tailgate::Gateway;

my $t = Tailgate::Gateway->new->skip_unless_built;

my $key = $t->start_gateway(
    workers => 1,
    timeout => '5s',
    fake_policyd => {
        decision => { provider => 'local', upstream => 'tg_local',
                      scheme => 'http', host => 'local', zone => 'local',
                      path => '/v1/chat/completions' },
        delay_ms => { slow => 1000 },
    });
my $local = $t->mock('local');

my @workers = $t->nginx_worker_pids;
is(scalar @workers, 1, 'one worker');

my $slow = $t->open_post('/v1/chat/completions',
                          '{"model":"slow","messages":[]}');

ok($t->wait_for(sub { @{ $t->fake_frames('DECIDE', model => 'slow') } },
                timeout => 5),
   'policyd has the slow request');

my @fast = map { $t->chat("fast-$_")->{status} } 1 .. 20;
my @parallel = $t->parallel(8, sub { $t->chat("par-$_[0]")->{status} });

is_deeply(\@fast, [(200) x 20], '20 requests answered one after another');
is_deeply(\@parallel, [(200) x 8], '8 more answered at the same time');

is($slow->raw, '', '... all while the slow request still waited');
ok(!grep({ ($_->{json}{model} // '') eq 'slow' } @{ $local->requests }),
   'and had not reached the provider');

ok($slow->read_all(5), 'then the slow request completes');
is($slow->status, 200, 'with 200');

my @order = map { $_->{json}{model} } @{ $local->requests };
is($order[-1], 'slow', 'and it reached the provider last of all');

$t->done_testing;
