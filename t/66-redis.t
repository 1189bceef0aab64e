#!/usr/bin/perl
#
# The redis block on one node: the two-node example passes policyd -t; a
# Redis that is not there (yet) leaves the node serving within its share
# ("local"), says "down" in status and in the log once however often it
# retries, and comes up without a restart once Redis starts; with
# "closed", providers without max_concurrency are still served while
# requests for a shared one get 503.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Time::HiRes qw(sleep);
use Tailgate::Gateway;
use Tailgate::Redis qw(skip_unless_redis start_redis start_node node_status);

skip_unless_redis();

my $t = Tailgate::Gateway->new->skip_unless_built;

{
    my $two = $t->private_copy("$FindBin::Bin/../conf/two-nodes/policy.json");
    my ($rc, $out) = $t->policyd_cmd('-t', '-c', $two, '-s',
        $t->dir . '/x.sock', '-a', $t->dir . '/y.sock');
    like($out, qr/TAILGATE_REDIS_PASSWORD is not set/,
         'conf/two-nodes: without its variable, -t names it');

    local $ENV{TAILGATE_REDIS_PASSWORD} = 'pw';
    local $ENV{DEEPSEEK_API_KEY} = 'k';
    ($rc, $out) = $t->policyd_cmd('-t', '-c', $two, '-s',
        $t->dir . '/x.sock', '-a', $t->dir . '/y.sock');
    like($out, qr/ok: 2 providers, 2 routes|no group named/,
         'conf/two-nodes/policy.json passes -t (but for its group)')
        or diag($out);
    unlike($out, qr/\bpw\b/, 'the password is never printed');
}

my $policy = {
    decision_cache_ms => 0,
    providers => {
        local => { upstream => 'tg_local', zone => 'local',
                   endpoints => ['chat'], max_concurrency => 4 },
        plain => { upstream => 'tg_plain', zone => 'local',
                   endpoints => ['chat'] },
    },
    routes => {
        shared => { steps => [{ provider => 'local', model => 'l' }],
                    queue => { max_length => 8, max_wait_ms => 20000 } },
        plain  => { steps => [{ provider => 'plain', model => 'p' }] },
    },
};

sub redis_of { my $d = node_status($t); $d ? $d->{policyd}{redis} : undef }

# no redis-server yet: its socket does not exist
$t->mock_provider('local', delay_ms => 300);
start_node($t, $t, name => 'solo', policy => $policy);

ok($t->wait_for(sub { ((redis_of() // {})->{state} // '') eq 'down' },
                timeout => 10, interval => 0.1), 'status: redis down');
is(redis_of()->{on_redis_error}, 'local', 'status: on_redis_error');

my @got = $t->parallel(4, sub { $t->answered_by($t->chat('shared')) },
                       timeout => 60);
is_deeply(\@got, [ ('local') x 4 ], 'served without Redis ("local")');
is($t->mock('local')->max_concurrent_seen, 2,
   'two at a time: its share, 4 / 2 nodes');

sleep 0.5;      # a few reconnect attempts
my $downs = () = $t->policyd_log =~ /redis: unix:\S+ is down/g;
is($downs, 1, 'one log line for going down, however often it retries');

start_redis($t);
ok($t->wait_for(sub { ((redis_of() // {})->{state} // '') eq 'up' },
                timeout => 15, interval => 0.1),
   'up once Redis starts, without a restart');
like($t->policyd_log, qr/redis: unix:\S+ is up/, 'and says so once');

my ($p) = grep { $_->{name} eq 'local' } @{ node_status($t)->{providers} };
is($p->{in_flight_other_nodes}, 0, 'no other node holds a slot');

$t->mock('local')->clear;
@got = $t->parallel(6, sub { $t->answered_by($t->chat('shared')) },
                    timeout => 60);
is_deeply(\@got, [ ('local') x 6 ], 'served through Redis');
ok($t->mock('local')->max_concurrent_seen <= 4, 'within max_concurrency');

# closed: a shared provider refused, the others not
$t->stop_proc('redis', signal => 'KILL');
$policy->{redis} = Tailgate::Redis::redis_block($t, node => 'solo',
                                                on_redis_error => 'closed');
$t->write_policy($policy);
$t->reload_policyd;
ok($t->wait_log('policyd.log', qr/policy reloaded/, timeout => 10), 'reloaded');
ok($t->wait_for(sub { ((redis_of() // {})->{state} // '') eq 'down' },
                timeout => 10, interval => 0.1), 'down again');

$t->is_openai_error($t->chat('shared'), 503, 'capacity_unavailable',
                    '"closed": a provider with max_concurrency gets 503');
is($t->answered_by($t->chat('plain')), 'plain',
   'one without max_concurrency is served');

$t->stop_and_check('nginx');
done_testing();
