#!/usr/bin/perl
#
# Timeouts of a provider or a step (connect_ms, first_byte_ms, idle_ms)
# instead of the location's ten minutes: a hung local model falls back
# within seconds, a provider whose connection never opens too, and a
# stream that stops mid-way ends with the error event.  A provider's 401,
# 402 or 403 is followed by the next step only where the route falls back
# on "auth".  The bounds on time are generous: the location would wait
# 600 s, the hung mock 30 s.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use IO::Socket::INET;
use Socket qw(PF_INET SOCK_STREAM IPPROTO_TCP pack_sockaddr_in
              unpack_sockaddr_in inet_aton);
use Time::HiRes qw(time sleep);
use JSON::PP ();
use Test::More;
use Tailgate::Gateway;

my $t = Tailgate::Gateway->new->skip_unless_built;

# a port that listens but never accepts, its queue full: connects to it
# hang (the kernel drops their SYN) until the gateway gives up

socket(my $hole, PF_INET, SOCK_STREAM, IPPROTO_TCP) or die "socket: $!";
bind($hole, pack_sockaddr_in(0, inet_aton('127.0.0.1'))) or die "bind: $!";
listen($hole, 0) or die "listen: $!";
my ($hole_port) = unpack_sockaddr_in(getsockname($hole));

my @fillers;
for (1 .. 8) {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                  PeerPort => $hole_port,
                                  Proto => 'tcp', Blocking => 0);
    push @fillers, $s if $s;
}
sleep 0.2;

my $policy = {
    providers => {
        slow  => { upstream => 'tg_slow', zone => 'local',
                   endpoints => [qw(chat)], first_byte_ms => 400 },
        spare => { upstream => 'tg_spare', zone => 'local',
                   endpoints => [qw(chat)] },
        hole  => { upstream => 'tg_hole', zone => 'local',
                   endpoints => [qw(chat)], connect_ms => 300 },
        keyed => { upstream => 'tg_keyed', zone => 'external',
                   api_key => '${EXT_API_KEY}', endpoints => [qw(chat)] },
    },
    routes => {
        hung   => { steps => [ { provider => 'slow', model => 's' },
                               { provider => 'spare', model => 'p' } ],
                    fallback => { on => 'errors' } },
        # the step's own first_byte_ms wins over its provider's
        patient => { steps => [ { provider => 'slow', model => 's',
                                  first_byte_ms => 3000 },
                                { provider => 'spare', model => 'p' } ],
                     fallback => { on => 'errors' } },
        lone   => { steps => [ { provider => 'slow', model => 's' } ] },
        idle   => { steps => [ { provider => 'spare', model => 'p',
                                 idle_ms => 500 } ] },
        closed => { steps => [ { provider => 'hole', model => 'h' },
                               { provider => 'spare', model => 'p' } ],
                    fallback => { on => 'errors' } },
        auth   => { steps => [ { provider => 'keyed', model => 'k' },
                               { provider => 'spare', model => 'p' } ],
                    fallback => { on => [qw(errors auth)] } },
        authonly => { steps => [ { provider => 'keyed', model => 'k' },
                                 { provider => 'spare', model => 'p' } ],
                      fallback => { on => ['auth'] } },
        noauth => { steps => [ { provider => 'keyed', model => 'k' },
                               { provider => 'spare', model => 'p' } ],
                    fallback => { on => 'errors' } },
        plain  => { steps => [ { provider => 'keyed', model => 'k' } ] },
    },
};

my $key = $t->start_gateway(
    policy => $policy,
    mocks  => [qw(slow spare keyed)],
    http   => "upstream tg_hole { server 127.0.0.1:$hole_port; }\n"
              . "include tailgate/log.conf;\n"
              . "access_log %%DIR%%/audit.log tailgate;",
    private => [qw(tg_slow tg_spare tg_hole)]);

my %mock = map { $_ => $t->mock($_) } qw(slow spare keyed);

$t->allow_log(qr/upstream timed out/, qr/attempt \d+ of route/,
              qr/broke off its event stream/);

sub timed_chat {
    my ($route, %opt) = @_;
    my $start = time;
    my $res = $t->chat($route, timeout => 40, %opt);
    return ($res, time - $start);
}


subtest 'a hung provider falls back within first_byte_ms' => sub {
    $mock{slow}->set(mode => 'hang', hang_s => 30);

    my ($res, $took) = timed_chat('hung');
    is($t->answered_by($res), 'spare', 'the next step answered');
    is($res->{headers}{'x-tailgate-attempts'}, 2, 'after one attempt failed');
    cmp_ok($took, '<', 10, 'long before the location\'s 600 s read timeout')
        or diag("took $took s");
    is($mock{slow}->requests->[-1]{json}{model}, 's',
       'the hung provider had the request');

    ok($t->wait_log('audit.log', qr/route=hung .*failed="slow:timeout:504"/),
       'logged as a timeout of slow') or diag($t->read_file('audit.log'));
};

subtest 'the step\'s own first_byte_ms wins over its provider\'s' => sub {
    $mock{slow}->set(delay_ms => 1200);

    my ($res, $took) = timed_chat('patient');
    is($t->answered_by($res), 'slow',
       'a provider slower than its own 400 ms answers within the step\'s 3 s');
    is($res->{headers}{'x-tailgate-attempts'}, 1, 'at the first attempt');

    ($res, $took) = timed_chat('hung');
    is($t->answered_by($res), 'spare', 'while the route using its 400 ms falls back');

    $mock{slow}->set;
};

subtest 'without fallback the timeout is the client\'s 504' => sub {
    $mock{slow}->set(mode => 'hang', hang_s => 30);

    my ($res, $took) = timed_chat('lone');
    $t->is_openai_error($res, 504, undef, '504 as an OpenAI error');
    cmp_ok($took, '<', 10, 'within seconds') or diag("took $took s");

    $mock{slow}->set;
};

subtest 'a provider whose connection never opens falls back within connect_ms' => sub {
    my ($res, $took) = timed_chat('closed');
    is($t->answered_by($res), 'spare', 'the next step answered');
    cmp_ok($took, '<', 4.5, 'before the location\'s 5 s connect timeout '
                         . 'would end it') or diag("took $took s");
    ok($t->wait_log('audit.log',
                    qr/route=closed .*failed="hole:(connect_error|timeout):/),
       'logged as a failure of hole') or diag($t->read_file('audit.log'));
};

subtest 'a stream that stops mid-way ends after idle_ms' => sub {
    $mock{spare}->set(stream_chunks => 3, stream_interval_ms => 5000);

    my ($res, $took) = timed_chat('idle', stream => 1);
    is($res->{status}, 200, 'the stream started');
    like($res->{body}, qr/tok1 /, 'the first event came');
    unlike($res->{body}, qr/tok2 /, 'the second never did');
    like($res->{body}, qr/"code":"stream_broken"/,
         'the stream ends with the error event');
    cmp_ok($took, '<', 4.5, 'before the provider\'s next event (5 s)')
        or diag("took $took s");

    $mock{spare}->set;
};

subtest 'the location\'s timeouts where the policy gives none' => sub {
    $mock{spare}->set(stream_chunks => 2, stream_interval_ms => 800);

    my $res = $t->chat('hung', stream => 1);
    is($res->{status}, 200, 'answered');
    like($res->{body}, qr/tok2 .*\[DONE\]/s, 'a slow stream of a step without '
         . 'idle_ms runs to its end');

    $mock{spare}->set;
};

subtest 'a provider refusing the gateway: fallback only on "auth"' => sub {
    $mock{keyed}->set(mode => 'status', status => 401,
                      headers => { 'WWW-Authenticate' => 'Bearer realm="ext"' });

    my $res = $t->chat('auth');
    is($t->answered_by($res), 'spare', '401: the next step of a route on '
       . '["errors", "auth"]');
    is($res->{headers}{'x-tailgate-attempts'}, 2, 'two attempts');

    $res = $t->chat('authonly');
    is($t->answered_by($res), 'spare', 'and of a route on ["auth"]');

    for my $status (402, 403) {
        $mock{keyed}->update(status => $status);
        $res = $t->chat('auth');
        is($t->answered_by($res), 'spare', "$status too");
    }

    $mock{keyed}->update(status => 401);

    my $spare_before = @{ $mock{spare}->requests };
    $res = $t->chat('noauth');
    $t->is_openai_error($res, 502, 'provider_error',
        'a route falling back on errors only: the gateway\'s 502');
    ok(!$res->{headers}{'www-authenticate'},
       'without the provider\'s challenge (the client\'s key was fine)');
    like($t->error($res)->{message}, qr/keyed \(client_error, HTTP 401\)/,
         'naming the provider and its status');
    is(scalar @{ $mock{spare}->requests }, $spare_before,
       'spare was not asked for it');

    $res = $t->chat('plain');
    is($res->{status}, 401, 'a route without fallback: the provider\'s own 401');
    like($res->{body}, qr/mock keyed failure/, 'its own body, as before');

    $mock{keyed}->set(mode => 'status', status => 400);
    $res = $t->chat('auth');
    is($res->{status}, 400, 'a 400 is never followed: the client\'s own error')
        or diag($res->{body});

    $mock{keyed}->set;
};

subtest 'policyd explain shows the timeouts of the step it chose' => sub {
    my ($rc, $out) = $t->policyd_cmd('explain', '-c', $t->dir . '/policy.json',
                                     'patient');
    is($rc, 0, 'explained');
    like($out, qr/^timeouts: connect the location's, first byte 3000 ms, idle the location's$/m,
         'the step\'s first_byte_ms');

    ($rc, $out) = $t->policyd_cmd('explain', '-c', $t->dir . '/policy.json',
                                  '--json', 'closed');
    my $j = eval { JSON::PP->new->decode($out) } // {};
    is($j->{connect_ms}, 300, 'JSON: its provider\'s connect_ms');
    is($j->{first_byte_ms}, 0, 'and none of the others');
};

subtest 'policyd -t checks the timeouts' => sub {
    for my $bad (0, -1, 3600001, '"500"', '1.5', 'null') {
        my $file = $t->write_file('bad.json', qq({"listen":{"path":"/tmp/x.sock"},
            "providers":{"l":{"upstream":"u","zone":"local","endpoints":["chat"],
                               "idle_ms":$bad}},
            "routes":{"r":{"steps":[{"provider":"l","model":"m","connect_ms":$bad}]}}}));
        my ($rc, $out) = $t->policyd_cmd('-t', '-c', $file);
        is($rc, 1, "$bad is refused");
        like($out, qr/providers\.l\.idle_ms: expected an integer from 1 to 3600000/,
             'naming the provider\'s key');
        like($out, qr/routes\.r\.steps\[0\]\.connect_ms: expected an integer from 1 to 3600000/,
             'and the step\'s');
    }

    my $file = $t->write_file('bad.json', q({"listen":{"path":"/tmp/x.sock"},
        "providers":{"l":{"upstream":"u","zone":"local","endpoints":["chat"]}},
        "routes":{"r":{"steps":[{"provider":"l","model":"m"}],
                       "fallback":{"on":["errors","sometimes",3]}},
                  "s":{"steps":[{"provider":"l","model":"m"}],
                       "fallback":{"on":[]}}}}));
    my ($rc, $out) = $t->policyd_cmd('-t', '-c', $file);
    like($out, qr/routes\.r\.fallback\.on\[1\]: expected one of "never", "errors", "busy", "both", "auth"/,
         'an unknown word of "on"');
    like($out, qr/routes\.r\.fallback\.on\[2\]: expected one of/, 'a number');
    like($out, qr/routes\.s\.fallback\.on: expected one of .* non-empty array/,
         'an empty array');
};

$t->done_testing;
