#!/usr/bin/perl
#
# Every provider's health: up, busy, stuck, down - from active probes that
# ask only what costs nothing (llama.cpp's /health and /slots, vLLM's
# /metrics) and from what the module reports - and the operators' view of
# it: tailgate_status (JSON, Prometheus, admin only) and policyd's admin
# socket.  "Failed in a row" means in a row, although successes are
# reported in batches; a probe that finds our own lease's slot busy does
# not make the provider busy.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use JSON::PP ();
use POSIX ();
use Test::More;
use Time::HiRes qw(sleep time);
use Tailgate::Gateway;

my $t = Tailgate::Gateway->new->skip_unless_built;
my $JSON = JSON::PP->new->canonical->utf8;

my %probe = (interval_ms => 200, timeout_ms => 150, down_after => 2,
             up_after => 1);

my $policy = {
    decision_cache_ms => 60000,
    providers => {
        local => { upstream => 'tg_local', zone => 'local',
                   endpoints => ['chat'], max_concurrency => 1,
                   health => { %probe, kind => 'llama.cpp',
                               url => 'http://%%MOCK:local%%/health',
                               slots_url => 'http://%%MOCK:local%%/slots',
                               stuck_after_ms => 800 } },
        vllm  => { upstream => 'tg_vllm', zone => 'local',
                   endpoints => ['chat'],
                   health => { %probe, kind => 'vllm',
                               url => 'http://%%MOCK:vllm%%/metrics' } },
        ext   => { upstream => 'tg_ext', zone => 'external',
                   api_key => '${EXT_API_KEY}', endpoints => ['chat'],
                   health => { down_after => 3, cooldown_ms => 1000 } },
    },
    routes => {
        chat => { steps => [ { provider => 'local', model => 'l' },
                             { provider => 'ext', model => 'e' } ],
                  fallback => { on => 'both' } },
        vl   => { steps => [ { provider => 'vllm', model => 'v' },
                             { provider => 'ext', model => 'e' } ],
                  fallback => { on => 'busy' } },
        e    => { steps => [ { provider => 'ext', model => 'e' } ] },
        hold => { steps => [ { provider => 'local', model => 'l' } ] },
    },
};

$t->mock_provider($_) for qw(local vllm ext);

my $ops = $t->new_key;
my $admin_sock = $t->dir . '/admin.sock';

my $key = $t->start_gateway(
    policy => $policy,
    keys => [ ops => { key => $ops, role => 'admin' } ],
    policyd_args => ['-v', '-a', $admin_sock],
    server => q{
        location = /tailgate/status  { tailgate_status json; }
        location = /tailgate/metrics { tailgate_status prometheus; }
    });

my %mock = map { $_ => $t->mock($_) } qw(local vllm ext);

sub status {
    my $res = $t->http('GET', '/tailgate/status',
                       headers => { Authorization => "Bearer $ops" });
    return undef unless $res->{status} == 200;
    my $doc = eval { $JSON->decode($res->{body}) } or return undef;
    return { map { $_->{name} => $_ } @{ $doc->{providers} } }, $doc;
}

sub state_of { my ($p) = status(); return $p ? $p->{$_[0]}{state} : '' }

sub becomes {
    my ($name, $state, $what) = @_;
    my $ok = $t->wait_for(sub { state_of($name) eq $state }, timeout => 5);
    ok($ok, "$name is $state: $what")
        or diag($JSON->encode((status())[0]{$name} // {}));
    return $ok;
}

sub provider { $t->answered_by($t->chat(@_)) }

# the status is for operators

{
    my $res = $t->http('GET', '/tailgate/status');
    $t->is_openai_error($res, 401, 'missing_api_key', 'status: no key, 401');

    $res = $t->http('GET', '/tailgate/status',
                    headers => { Authorization => "Bearer $key" });
    $t->is_openai_error($res, 403, 'admin_required',
                        'status: a client key without the admin role, 403');

    $res = $t->http('POST', '/tailgate/status',
                    headers => { Authorization => "Bearer $ops" });
    $t->is_openai_error($res, 405, 'method_not_allowed',
                        'status: GET or HEAD only');
    is($res->{headers}{allow}, 'GET, HEAD', 'status: 405 says which');

    $res = $t->http('HEAD', '/tailgate/status',
                    headers => { Authorization => "Bearer $ops" });
    is($res->{status}, 200, 'status: HEAD');
    is($res->{body}, '', 'status: HEAD has no body');
}

# probes first

ok($t->wait_for(sub { my ($p) = status(); $p && $p->{local}{probe}{ok}
                                             && $p->{vllm}{probe}{ok} }, timeout => 5),
   'probes ran');

{
    my ($p, $doc) = status();
    is($p->{local}{state}, 'up', 'local is up');
    is($p->{local}{probe}{url}, 'http://' . '127.0.0.1:'
       . $mock{local}->port . '/health', 'with its probe URL');
    is($p->{local}{probe}{slots}, 1, 'llama.cpp slots read');
    is($p->{local}{max_concurrency}, 1, 'max_concurrency');
    is($p->{ext}{probe}, undef, 'ext has no probe');
    is($doc->{policyd}{software}, 'policyd/0.1', 'policyd is named');
    ok(!grep({ !/^(?:GET)$/ } map { $_->{path} =~ /^\// ? 'GET' : 'x' }
             @{ $mock{local}->probes }), 'probes are GETs');
    is(scalar @{ $mock{local}->requests }, 0,
       'probes are never requests (no completion was asked for)');
    like(join(' ', map { $_->{path} } @{ $mock{local}->probes }),
         qr{^/health /slots}, 'llama.cpp: /health, then /slots');
    unlike($t->http('GET', '/tailgate/status',
                    headers => { Authorization => "Bearer $ops" })->{body},
           qr/\Q$Tailgate::Gateway::PROVIDER_KEY\E|Bearer/,
           'no provider key in the status');
}

# busy, then stuck: a request that holds local's only slot

$mock{local}->set(stream_gate => 'gate');

my $held = $t->open_post('/v1/chat/completions',
    '{"model":"hold","stream":true,'
    . '"messages":[{"role":"user","content":"hi"}]}');
ok($held->read_until(qr/data: \{/, 5), 'a long request holds local');

becomes('local', 'busy', 'its only slot is taken');
is(provider('chat'), 'ext', 'busy: the route falls back');
{
    my ($p) = status();
    is($p->{local}{in_flight}, 1, 'in_flight 1');
}

becomes('local', 'stuck', 'the request has run past stuck_after_ms');
{
    my ($p) = status();
    like($p->{local}{why}, qr/a request has run for \d+ ms/, 'and why');
}
is(provider('chat'), 'ext', 'stuck: passed over');

# down: probes time out

$mock{local}->update(probe_mode => 'hang', hang_s => 2);
becomes('local', 'down', 'its probes time out');
{
    my ($p) = status();
    like($p->{local}{why}, qr/probes failed: .*[Tt]imeout/, 'why: timeouts');
}
is(provider('chat'), 'ext', 'down: passed over');
like($t->policyd_log, qr/provider local is down \(was \w+\)/,
     'the change is logged');

# up again: the probe answers, the long request ends

$mock{local}->set();
$t->write_file('gate', '');
ok($held->read_all(10), 'the long request ends');

becomes('local', 'up', 'a probe brings it back');
is(provider('chat'), 'local', 'up: local first again');
like($t->policyd_log, qr/provider local is up again/, 'logged');

# llama.cpp loading its model is not up

$mock{local}->set(loading => 1);
becomes('local', 'down', 'loading its model');
{
    my ($p) = status();
    like($p->{local}{why}, qr/loading its model/, 'why: loading');
}
$mock{local}->set();
becomes('local', 'up', 'the model is loaded');

# vLLM says it has requests waiting: busy, without any lease of ours

$mock{vllm}->set(waiting => 3);
becomes('vllm', 'busy', 'vLLM reports waiting requests');
{
    my ($p) = status();
    is($p->{vllm}{probe}{waiting}, 3, 'waiting read from /metrics');
    is($p->{vllm}{in_flight}, 0, 'no lease involved');
}
is(provider('vl'), 'ext', 'vLLM busy: the route falls back');
$mock{vllm}->set();
becomes('vllm', 'up', 'the queue drained');
is(provider('vl'), 'vllm', 'vllm again');

# passive: no probe for ext, but its failures count; a decision that was
# being reused is forgotten at once (decision_cache_ms is 60 s here)

is(provider('e'), 'ext', 'ext answers (and the decision is cached)');

$mock{ext}->stop;

for my $i (1 .. 3) {
    is(provider('e'), 502, "ext refuses connections ($i)");
}

becomes('ext', 'down', 'three failures in a row');
{
    my $res = $t->chat('e');
    $t->is_openai_error($res, 503, 'provider_unavailable',
                        'down: refused without trying, the cache forgot it');
    my ($p) = status();
    like($p->{ext}{why}, qr/3 requests failed in a row/, 'why');
    is($p->{ext}{requests}{connect_error}, 3, 'the failures are counted');
    is($p->{ext}{recent_errors}[0]{outcome}, 'connect_error',
       'and listed');
}

$mock{ext}->start;
sleep 1.1;      # the cooldown: then one request may try again
is(provider('e'), 'ext', 'after the cooldown a request tries, and succeeds');
becomes('ext', 'up', 'a success brings it back');

# Prometheus, and the admin socket

{
    my $res = $t->http('GET', '/tailgate/metrics',
                       headers => { Authorization => "Bearer $ops" });
    is($res->{status}, 200, 'metrics: 200');
    like($res->{headers}{'content-type'}, qr{^text/plain}, 'as text');
    like($res->{body}, qr/^tailgate_provider_state\{provider="local",state="up"\} 1$/m,
         'metrics: local up');
    like($res->{body}, qr/^tailgate_provider_requests_total\{provider="ext",outcome="connect_error"\} 3$/m,
         'metrics: ext failures');
    like($res->{body}, qr/^tailgate_route_decisions_total\{route="chat",status="200"\} \d+$/m,
         'metrics: decisions by route');

    my (undef, $out) = $t->policyd_cmd('status', '-a', $admin_sock);
    my $doc = eval { $JSON->decode($out) };
    ok($doc, 'policyd status: JSON') or diag($out);
    is_deeply([map { "$_->{name}:$_->{state}" } @{ $doc->{providers} }],
              ['ext:up', 'local:up', 'vllm:up'], 'policyd status: every provider');

    (undef, $out) = $t->policyd_cmd('status', '-a', $admin_sock, '--prometheus');
    like($out, qr/^tailgate_policyd_connections \d+$/m,
         'policyd status --prometheus');
    is((stat $admin_sock)[2] & 0777, 0600, 'the admin socket is owner-only');
}

# the rest has gateways of its own
$t->stop_all;

# "down_after ... requests failed in a row": the module reports failures at
# once and successes without a lease as a count every 250 ms, so policyd
# sees the failures of a moment back to back.  A provider that alternates
# ok, 500, ok, 500, ... never failed twice in a row and stays up.

{
    my $t2 = Tailgate::Gateway->new;

    my $policy = {
        providers => {
            ext => { upstream => 'tg_ext', zone => 'external',
                     api_key => '${EXT_API_KEY}', endpoints => ['chat'] },
        },
        routes => { e => { steps => [ { provider => 'ext', model => 'e' } ] } },
    };

    $t2->start_gateway(policy => $policy, policyd_args => ['-v'], private => []);

    my @got;
    for my $i (1 .. 12) {
        my %h = $i % 2 ? () : (headers => { 'X-Mock-Control'
                                            => '{"mode":"status","status":500}' });
        push @got, $t2->chat('e', %h)->{status};
    }

    is_deeply(\@got, [ (200, 500) x 6 ], 'ext answered ok, 500, ok, 500, ...');

    ok($t2->policyd_log !~ /provider ext is down/,
       'no two requests failed in a row: ext is not taken down')
        or diag(join "\n", grep { /provider ext is/ } split /\n/, $t2->policyd_log);

    my $res = $t2->chat('e');
    is($res->{status}, 200, 'and the next request goes to ext')
        or diag(($t2->error($res) // {})->{code});

    $t2->stop_and_check('error.log is clean after the alternating failures');
}

# a probe's "busy" must not outlive the request that made it busy.  With
# llama.cpp's /slots and max_concurrency equal to the slots (the setup
# README.md and conf/policy.example.json recommend), a probe taken while
# our own request runs says "all slots busy"; that slot is our lease, and
# when it ends the waiting request goes at once, not a probe interval
# later - nor does the same client's next request get 429 from an idle
# server.

{
    my $t2 = Tailgate::Gateway->new;

    my $interval = 2.0;

    my $policy = {
        providers => {
            local => { upstream => 'tg_local', zone => 'local',
                       endpoints => ['chat'], max_concurrency => 1,
                       health => { kind => 'llama.cpp',
                                   url => 'http://%%MOCK:local%%/health',
                                   slots_url => 'http://%%MOCK:local%%/slots',
                                   interval_ms => $interval * 1000,
                                   timeout_ms => 300 } },
        },
        routes => {
            line => { steps => [ { provider => 'local', model => 'l' } ],
                      queue => { max_length => 4, max_wait_ms => 10000 } },
            only => { steps => [ { provider => 'local', model => 'l' } ] },
        },
    };

    $t2->mock_provider('local', slots => 1);
    $t2->start_gateway(policy => $policy, policyd_args => ['-v'], timeout => '1s');

    my $local = $t2->mock('local');

    my $nprobes = sub { scalar @{ $local->probes } };

    # right after a probe, start A, which runs a little longer than an
    # interval: the next probe sees its slot busy

    my $n = $nprobes->();
    ok($t2->wait_for(sub { $nprobes->() > $n && $nprobes->() % 2 == 0 }, timeout => 10),
       'a probe (health + slots) just ran');

    my $hold = $interval + 0.6;
    $local->update(delay_ms => int($hold * 1000));

    my @kids;
    my $bg = sub {
        my ($user) = @_;
        my $pid = fork // die "fork: $!";
        if ($pid == 0) {
            $t2->chat('line', body => { user => $user }, timeout => 20);
            POSIX::_exit(0);
        }
        push @kids, $pid;
    };

    $bg->('A');
    ok($local->wait_requests(1, timeout => 5), 'A runs on local');
    ok($t2->wait_log('policyd.log', qr/probe busy .*all 1 slots busy/,
                     timeout => 5),
       'a probe during A finds every slot busy');
    unlike($t2->read_file('policyd.log'), qr/provider local is busy/,
       'that busy slot is our own lease: local is not judged busy');

    $local->update(delay_ms => 0);
    $bg->('B');
    ok($t2->wait_log('policyd.log', qr/waits for a slot of local/, timeout => 5),
       'B waits in line for A\'s slot');

    waitpid $_, 0 for @kids;

    my %at = map { ($_->{json}{user} // '') => $_->{ts} } @{ $local->requests };
    my $a_end = $at{A} + $hold;
    my $gap = defined $at{B} ? $at{B} - $a_end : 999;

    cmp_ok($gap, '<', 0.5,
           sprintf('B goes to local as soon as A is done (%.2f s later)', $gap));

    # one client, one request after another, on a route without a queue

    $n = $nprobes->();
    ok($t2->wait_for(sub { $nprobes->() > $n && $nprobes->() % 2 == 0 }, timeout => 10),
       'a probe just ran');
    $local->update(delay_ms => int($hold * 1000));
    my $first = $t2->chat('only', timeout => 20);
    is($first->{status}, 200, 'a long request on a route without a queue');
    $local->update(delay_ms => 0);

    my $next = $t2->chat('only');
    is($next->{status}, 200, 'the same client\'s next request, local idle: 200')
        or diag(($t2->error($next) // {})->{code});

    $t2->stop_and_check('error.log is clean after the probes of a busy slot');
}

done_testing();
