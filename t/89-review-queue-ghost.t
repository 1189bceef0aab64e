#!/usr/bin/perl
#
# Review: a client that hangs up while its request waits in policyd's
# queue keeps its place in line.  The worker only cancels its own call
# (the pool cleanup); nothing tells policyd, whose waiter stays until its
# max_wait_ms runs out or it reaches the head of the line (then it is given
# a lease that the worker hands back as not_sent).  Meanwhile it counts
# against "max_length": a line "full" of requests whose clients are gone
# turns real ones away with 429 provider_busy, although nobody waits.
# docs/policy.md (queue): "at most max_length (...) waiting for that
# provider".  Clients that give up before max_wait_ms are the normal case
# when a slow local model is saturated.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Time::HiRes qw(sleep);
use Tailgate::Gateway;

my $t = Tailgate::Gateway->new->skip_unless_built;

my $policy = {
    providers => {
        local => { upstream => 'tg_local', zone => 'local',
                   endpoints => ['chat'], max_concurrency => 1 },
    },
    routes => {
        line => { steps => [ { provider => 'local', model => 'l' } ],
                  queue => { max_length => 1, max_wait_ms => 8000 } },
    },
};

$t->mock_provider('local', stream_gate => 'gate');
my $key = $t->start_gateway(policy => $policy, policyd_args => ['-v'],
                            timeout => '1s');

sub open_chat {
    my ($stream) = @_;
    return $t->http_open('POST', '/v1/chat/completions',
        headers => { Authorization => "Bearer $key",
                     'Content-Type' => 'application/json' },
        body => '{"model":"line",' . ($stream ? '"stream":true,' : '')
                . '"messages":[{"role":"user","content":"hi"}]}');
}

# a stream holds local's only slot

my $holder = open_chat(1);
ok($holder->read_until(qr/data: \{/, 5), 'a stream holds the only slot');

# a second request waits in line, and its client gives up

my $gone = open_chat(0);
ok($t->wait_log('policyd.log', qr/DECIDE \d+ waits for a slot of local/),
   'a request waits in line');
$gone->close;     # its client hung up
sleep 0.5;

# a third request: the line has room, nobody is in it

my $res = $t->chat('line', timeout => 2);
isnt($res->{status}, 429,
     'a new request is not refused for a line that only its ghost fills')
    or diag(($t->error($res) // {})->{code} // $res->{body});

$holder->close;
$t->done_testing;
