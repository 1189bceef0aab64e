#!/usr/bin/perl
#
# The module <-> policyd protocol spoken from Perl against a real policyd:
# HELLO, DECIDE, MODELS, REPORT, every ERROR of docs/protocol.md, and
# hostile clients (malformed frames, half frames, garbage, many connections,
# a peer that never reads).  After each, policyd must still be running and
# answer a fresh connection.
#
# Needs build/policyd (make -C policyd all) or $TAILGATE_POLICYD (the
# top-level Makefile exports it: build/ or build-asan/).  TAILGATE_KEEP=1
# keeps the test's directory with the policy and policyd's log.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use IO::Socket::UNIX;
use JSON::PP;
use Socket qw(SOCK_STREAM);
use Test::More;
use Time::HiRes qw(sleep time);

use Tailgate::Test;
use Tailgate::Proto;

my $t = Tailgate::Test->new->skip_unless_built('policyd');

my $SECRET = 'sk-test-secret-4711';
my $dir = $t->dir;
my $sock = "$dir/p.sock";
my $log = "$dir/p.log";

$ENV{TG_TEST_DEEPSEEK_KEY} = $SECRET;

my $policy = $t->write_file('policy.json', <<'EOF');
{
  "providers": {
    "local": { "upstream": "tg_local", "zone": "local",
               "endpoints": ["chat", "embeddings"],
               "models": ["qwen2.5", "nomic"] },
    "deepseek": { "upstream": "tg_deepseek", "scheme": "https",
                  "host": "api.deepseek.com", "base_path": "",
                  "api_key": "${TG_TEST_DEEPSEEK_KEY}", "zone": "external",
                  "endpoints": ["chat"] },
    "small": { "upstream": "tg_small", "zone": "local", "endpoints": ["chat"],
               "context_tokens": 1000 },
    "gpu": { "upstream": "tg_gpu", "zone": "local", "endpoints": ["chat"],
             "max_concurrency": 1 }
  },
  "routes": {
    "qwen":  { "steps": [ { "provider": "local", "model": "qwen2.5" } ] },
    "smart": { "steps": [ { "provider": "deepseek", "model": "deepseek-chat" },
                          { "provider": "local", "model": "qwen2.5" } ],
               "fallback": { "on": "errors" } },
    "cloud": { "steps": [ { "provider": "deepseek", "model": "deepseek-chat" } ] },
    "tuned": { "steps": [ { "provider": "small", "model": "phi",
                            "adjust": [ { "when": "tools",
                                          "drop": ["response_format"] } ] } ] },
    "gpu":   { "steps": [ { "provider": "gpu", "model": "big" } ] }
  }
}
EOF

# debug level, so that the test also proves the secret is never logged
my $pid = $t->spawn('policyd', [ $t->policyd_binary, '-c', $policy, '-s', $sock,
                                  '-v' ], log => $log);
ok($t->wait_socket($sock), 'policyd listens') or BAIL_OUT($t->read_file($log));


# the constants agree with the C header

{
    my $h = $t->read_file("$FindBin::Bin/../proto/tailgate_protocol.h");
    my ($n, $bad) = (0, 0);

    while ($h =~ /^#define\s+(TG_(?:PROTO_VERSION|MSG_\w+|F_\w+|ERR_\w+|MAX_FRAME_MIN))\s+(\d+)/mg) {
        my ($name, $value) = ($1, $2);
        $n++;
        my $perl = Tailgate::Proto->can($name);
        unless ($perl && $perl->() == $value) {
            diag("$name is $value in the header");
            $bad++;
        }
    }

    ok($n > 50 && !$bad, "Tailgate::Proto agrees with tailgate_protocol.h ($n constants)");
    is(TG_MAX_FRAME_LIMIT, 4 * 1024 * 1024, 'TG_MAX_FRAME_LIMIT');
}


# HELLO

{
    my $s = tg_connect($sock);
    tg_send($s, tg_frame(TG_MSG_HELLO, 0,
                         [TG_F_MAX_FRAME, 'u32', 1048576],
                         [TG_F_PID, 'u32', $$],
                         [TG_F_SOFTWARE, 'str', 'tailgate-test/1']));
    my $f = tg_read_frame($s, 5);

    ok($f, 'HELLO is answered') or diag($Tailgate::Proto::ERROR);
    is($f->{type}, TG_MSG_HELLO_OK, 'with HELLO_OK');
    is($f->{version}, 1, 'version 1');
    is($f->{id}, 0, 'id 0');
    is(tg_field($f, TG_F_MAX_FRAME), 65536, 'max_frame is the policy default');
    is(tg_field($f, TG_F_PID), $pid, 'pid is policyd\'s');
    is(tg_field($f, TG_F_SOFTWARE), 'policyd/0.1', 'software');

    # DECIDE right behind the HELLO, in one write, as the module does
    tg_send($s, tg_frame(TG_MSG_HELLO, 0, [TG_F_MAX_FRAME, 'u32', 65536])
                . tg_decide(5, 'qwen'));
    $f = tg_read_frame($s, 5);
    is($f->{type}, TG_MSG_HELLO_OK, 'a second HELLO is answered too');
    $f = tg_read_frame($s, 5);
    is($f->{type}, TG_MSG_DECISION, 'and the DECIDE behind it');
    is($f->{id}, 5, 'with its id');
}


# DECIDE

{
    my $s = tg_connect($sock);

    my $d = ask($s, tg_decide(7, 'smart'));
    is($d->{type}, TG_MSG_DECISION, 'DECIDE gets a DECISION');
    is($d->{id}, 7, 'with the request id');
    is(tg_field($d, TG_F_STATUS), 200, 'status 200');
    is(tg_field($d, TG_F_PROVIDER), 'deepseek', 'provider');
    is(tg_field($d, TG_F_ROUTE), 'smart', 'route');
    is(tg_field($d, TG_F_UPSTREAM), 'tg_deepseek', 'upstream');
    is(tg_field($d, TG_F_SCHEME), 'https', 'scheme');
    is(tg_field($d, TG_F_HOST), 'api.deepseek.com', 'host');
    is(tg_field($d, TG_F_PATH), '/chat/completions', 'path with base_path ""');
    is(tg_field($d, TG_F_PROVIDER_MODEL), 'deepseek-chat', 'provider_model');
    is(tg_field($d, TG_F_AUTHORIZATION), "Bearer $SECRET",
       'authorization from the environment');
    is(tg_field($d, TG_F_ZONE), 'external', 'zone');
    is(tg_field($d, TG_F_REASON), 'deepseek:chosen', 'reason');
    is(tg_field($d, TG_F_LEASE), undef, 'no lease without max_concurrency');
    is(tg_field($d, TG_F_ERROR_TYPE), undef, 'no error fields');

    # private: the local step
    $d = ask($s, tg_decide(8, 'smart', [TG_F_TAG, 'str', 'team:blue'],
                              [TG_F_TAG, 'str', 'private'],
                              [TG_F_STREAM, 'u8', 1],
                              [TG_F_TOOLS, 'u8', 0],
                              [TG_F_BODY_BYTES, 'u32', 1234],
                              [TG_F_ATTEMPT, 'u32', 1],
                              [TG_F_PROMPT_ESTIMATE, 'u32', 308],
                              [TG_F_CLIENT, 'str', 'alice'],
                              [TG_F_TENANT, 'str', 'acme']));
    is(tg_field($d, TG_F_STATUS), 200, 'private DECIDE: 200');
    is(tg_field($d, TG_F_PROVIDER), 'local', 'from the local provider');
    is(tg_field($d, TG_F_PATH), '/v1/chat/completions', 'path');
    is(tg_field($d, TG_F_UPSTREAM), 'tg_local', 'upstream');
    is(tg_field($d, TG_F_HOST), 'tg_local', 'host defaults to the upstream');
    is(tg_field($d, TG_F_PROVIDER_MODEL), 'qwen2.5', 'provider_model');
    is(tg_field($d, TG_F_AUTHORIZATION), undef, 'no authorization');
    is(tg_field($d, TG_F_ZONE), 'local', 'zone');
    is(tg_field($d, TG_F_REASON), 'deepseek:zone local:chosen', 'reason');

    # unknown model
    $d = ask($s, tg_decide(9, 'gpt-4o'));
    is(tg_field($d, TG_F_STATUS), 404, 'unknown model: 404');
    is(tg_field($d, TG_F_ERROR_TYPE), 'invalid_request_error', 'error_type');
    is(tg_field($d, TG_F_ERROR_CODE), 'model_not_found', 'error_code');
    is(tg_field($d, TG_F_ERROR_MESSAGE), 'No matching route found',
       'error_message');
    is(tg_field($d, TG_F_RETRY_AFTER), undef, 'no retry_after');
    is(tg_field($d, TG_F_PROVIDER), undef, 'no provider');

    # not in the allowlist
    $d = ask($s, tg_decide(10, 'smart', [TG_F_ALLOW_ROUTE, 'str', 'qwen'],
                              [TG_F_ALLOW_ROUTE, 'str', 'cloud']));
    is(tg_field($d, TG_F_STATUS), 404, 'a route not in allow_route: 404');
    is(tg_field($d, TG_F_ERROR_MESSAGE), 'No matching route found',
       'the same message as an unknown one');

    # endpoint not served
    $d = ask($s, tg_decide(11, 'cloud', [TG_F_ENDPOINT, 'str', 'embeddings']));
    is(tg_field($d, TG_F_STATUS), 404, 'endpoint not served: 404');
    is(tg_field($d, TG_F_ERROR_MESSAGE),
       "Route 'cloud' does not serve /v1/embeddings", 'message');

    # what a worker needs for fallback, edits and its cache
    is(tg_field($d, TG_F_FALLBACK), undef, 'no fallback for a route without');
    $d = ask($s, tg_decide(20, 'smart', [TG_F_ATTEMPT, 'u32', 1]));
    is(tg_field($d, TG_F_FALLBACK), 15, 'fallback: every outcome');
    is(tg_field($d, TG_F_CACHE_MS), 1000, 'cache_ms');
    is(tg_field($d, TG_F_CACHE_MAX_BYTES), undef, 'no size limit');
    $d = ask($s, tg_decide(21, 'smart', [TG_F_ATTEMPT, 'u32', 2],
                              [TG_F_EXCLUDE, 'str', 'deepseek']));
    is(tg_field($d, TG_F_PROVIDER), 'local', 'attempt 2: the next step');
    is(tg_field($d, TG_F_FALLBACK), undef, '... and the last');

    $d = ask($s, tg_decide(22, 'tuned', [TG_F_TOOLS, 'u8', 1],
                              [TG_F_PROMPT_ESTIMATE, 'u32', 10]));
    is(tg_field($d, TG_F_ADJUST), "drop response_format\n", 'adjust');
    is(tg_field($d, TG_F_CACHE_MAX_BYTES), 4003, 'cache_max_bytes');
    $d = ask($s, tg_decide(23, 'tuned', [TG_F_TOOLS, 'u8', 0]));
    is(tg_field($d, TG_F_ADJUST), undef, 'no adjust without tools');

    # explain: no lease is taken, no key is given
    for my $id (24, 25) {
        $d = ask($s, tg_decide($id, 'gpu', [TG_F_DRY_RUN, 'u8', 1]));
        is(tg_field($d, TG_F_STATUS), 200, "dry run $id: 200");
        is(tg_field($d, TG_F_LEASE), undef, 'without a lease');
    }
    $d = ask($s, tg_decide(26, 'smart', [TG_F_DRY_RUN, 'u8', 1]));
    is(tg_field($d, TG_F_PROVIDER), 'deepseek', 'dry run: provider');
    is(tg_field($d, TG_F_AUTHORIZATION), undef, 'dry run: no key');
    $d = ask($s, tg_decide(27, 'gpu'));
    ok(tg_field($d, TG_F_LEASE), 'a real DECIDE gets the lease');
    $d = ask($s, tg_decide(28, 'gpu'));
    is(tg_field($d, TG_F_STATUS), 429, 'the second is busy: 429');
    is(tg_field($d, TG_F_ERROR_CODE), 'provider_busy', 'provider_busy');
    is(tg_field($d, TG_F_RETRY_AFTER), 1, 'retry_after');

    # an endpoint policyd does not know
    $d = ask($s, tg_decide(12, 'qwen', [TG_F_ENDPOINT, 'str', 'images']));
    is(tg_field($d, TG_F_STATUS), 404, 'unknown endpoint: 404');

    # privacy
    $d = ask($s, tg_decide(13, 'cloud', [TG_F_TAG, 'str', 'private']));
    is(tg_field($d, TG_F_STATUS), 403, 'private on an external route: 403');
    is(tg_field($d, TG_F_ERROR_TYPE), 'permission_error', 'error_type');
    is(tg_field($d, TG_F_ERROR_CODE), 'privacy_restricted', 'error_code');

    # everything excluded
    $d = ask($s, tg_decide(14, 'smart', [TG_F_EXCLUDE, 'str', 'deepseek'],
                              [TG_F_EXCLUDE, 'str', 'local'],
                              [TG_F_ATTEMPT, 'u32', 2]));
    is(tg_field($d, TG_F_STATUS), 503, 'all excluded: 503');
    is(tg_field($d, TG_F_ERROR_TYPE), 'server_error', 'error_type');
    is(tg_field($d, TG_F_ERROR_CODE), 'no_provider_available', 'error_code');
    is(tg_field($d, TG_F_RETRY_AFTER), 1, 'retry_after 1');
    is(tg_field($d, TG_F_REASON), 'deepseek:excluded local:excluded',
       'reason');

    # unknown fields are skipped; a repeated field keeps its last value
    $d = ask($s, tg_frame(TG_MSG_DECIDE, 15,
                          [200, 'str', 'from the future'],
                          [TG_F_MODEL, 'str', 'gpt-4o'],
                          [TG_F_ENDPOINT, 'str', 'chat'],
                          [TG_F_MODEL, 'str', 'qwen'],
                          [99, 'u32', 7]));
    is(tg_field($d, TG_F_STATUS), 200, 'unknown fields are skipped');
    is(tg_field($d, TG_F_PROVIDER), 'local', 'the last model counts');

    # pipelined: many frames in one write, answered in order
    my $batch = join('', map { tg_decide(100 + $_, $_ % 2 ? 'qwen' : 'smart') }
                         1 .. 50);
    ok(tg_send($s, $batch), '50 DECIDEs in one write');
    my $good = 0;
    for my $i (1 .. 50) {
        my $f = tg_read_frame($s, 5) or last;
        $good++ if $f->{id} == 100 + $i
                   && tg_field($f, TG_F_PROVIDER) eq ($i % 2 ? 'local' : 'deepseek');
    }
    is($good, 50, 'all answered, with their ids');

    # the same read as a byte stream and cut into frames
    tg_send($s, join('', map { tg_decide(200 + $_, 'qwen') } 1 .. 3));
    my ($buf, @ids) = ('');
    my $deadline = time() + 5;
    while (@ids < 3 && time() < $deadline) {
        my $n = sysread($s, $buf, 65536, length($buf));
        sleep(0.01) unless $n;
        while (my $f = tg_take_frame(\$buf)) { push @ids, $f->{id} }
    }
    is("@ids", '201 202 203', 'tg_take_frame cuts a byte stream into frames');

    # a frame written one byte at a time
    my $slow = tg_decide(16, 'qwen');
    for my $byte (split //, $slow) {
        syswrite($s, $byte);
        sleep(0.001);
    }
    $d = tg_read_frame($s, 5);
    is($d && $d->{id}, 16, 'a frame that arrives byte by byte');
}


# MODELS

{
    my $s = tg_connect($sock);
    my $m = ask($s, tg_frame(TG_MSG_MODELS, 21, [TG_F_CLIENT, 'str', 'alice']));
    is($m->{type}, TG_MSG_MODEL_LIST, 'MODELS gets a MODEL_LIST');
    is($m->{id}, 21, 'with its id');
    is(tg_field($m, TG_F_STATUS), 200, 'status 200');

    my $body = eval { decode_json(tg_field($m, TG_F_BODY)) };
    ok($body, 'the body is JSON') or diag($@);
    is($body->{object}, 'list', 'a list');
    is_deeply([map { $_->{id} } @{ $body->{data} }], [qw(qwen smart cloud tuned gpu)],
              'every route, in policy order');
    # a provider of chat without responses serves them translated
    is_deeply($body->{data}[0]{endpoints}, [qw(chat embeddings responses)],
              'endpoints, responses translated');
    is($body->{data}[0]{owned_by}, 'tailgate', 'owned_by');
    like($body->{data}[0]{created}, qr/^\d{10}$/, 'created');

    $m = ask($s, tg_frame(TG_MSG_MODELS, 22, [TG_F_TAG, 'str', 'private']));
    $body = decode_json(tg_field($m, TG_F_BODY));
    is_deeply([map { $_->{id} } @{ $body->{data} }], [qw(qwen smart tuned gpu)],
              'private: only routes with a local step');

    $m = ask($s, tg_frame(TG_MSG_MODELS, 23, [TG_F_ALLOW_ROUTE, 'str', 'cloud']));
    $body = decode_json(tg_field($m, TG_F_BODY));
    is_deeply([map { $_->{id} } @{ $body->{data} }], [qw(cloud)],
              'allow_route filters');

    $m = ask($s, tg_frame(TG_MSG_MODELS, 24, [TG_F_ENDPOINT, 'str', 'embeddings']));
    $body = decode_json(tg_field($m, TG_F_BODY));
    is_deeply([map { $_->{id} } @{ $body->{data} }], [qw(qwen smart)],
              'endpoint filters');
}


# REPORT

{
    my $s = tg_connect($sock);
    ok(tg_send($s, tg_frame(TG_MSG_REPORT, 31,
                            [TG_F_LEASE, 'u32', 0],
                            [TG_F_OUTCOME, 'str', 'ok'],
                            [TG_F_HTTP_STATUS, 'u32', 200],
                            [TG_F_UPSTREAM_MS, 'u32', 120],
                            [TG_F_TOTAL_MS, 'u32', 130],
                            [TG_F_PROMPT_TOKENS, 'u32', 10],
                            [TG_F_COMPLETION_TOKENS, 'u32', 20])
                  . tg_frame(TG_MSG_REPORT, 32, [TG_F_LEASE, 'u32', 999],
                             [TG_F_OUTCOME, 'str', 'whatever'])
                  . tg_decide(33, 'qwen')), 'REPORTs sent');
    my $f = tg_read_frame($s, 5);
    is($f && $f->{id}, 33, 'REPORT gets no reply; the next frame does');
    ok($t->wait_log($log, qr/REPORT 31: 1 x ok, status 200, upstream 120 ms/),
       'the REPORT is logged at debug');
}


# errors that keep the connection

{
    my $s = tg_connect($sock);

    my $e = ask($s, tg_frame(99, 41, [TG_F_MODEL, 'str', 'x']));
    is($e->{type}, TG_MSG_ERROR, 'unknown type: ERROR');
    is($e->{id}, 41, 'with its id');
    is(tg_field($e, TG_F_STATUS), TG_ERR_UNKNOWN_TYPE, 'unknown_type');
    ok(tg_field($e, TG_F_ERROR_MESSAGE), 'with a message');

    $e = ask($s, tg_frame(TG_MSG_DECISION, 42));
    is(tg_field($e, TG_F_STATUS), TG_ERR_UNKNOWN_TYPE,
       'a frame type policyd only sends: unknown_type');

    $e = ask($s, tg_frame(TG_MSG_DECIDE, 43, [TG_F_ENDPOINT, 'str', 'chat']));
    is($e->{type}, TG_MSG_ERROR, 'DECIDE without model: ERROR');
    is($e->{id}, 43, 'with its id');
    is(tg_field($e, TG_F_STATUS), TG_ERR_MISSING_FIELD, 'missing_field');

    $e = ask($s, tg_frame(TG_MSG_DECIDE, 44, [TG_F_MODEL, 'str', 'qwen']));
    is(tg_field($e, TG_F_STATUS), TG_ERR_MISSING_FIELD,
       'DECIDE without endpoint: missing_field');

    my $d = ask($s, tg_decide(45, 'qwen'));
    is(tg_field($d, TG_F_STATUS), 200, 'the connection is still usable');
}


# errors that close the connection

sub expect_fatal {
    my ($name, $bytes, $err, $id) = @_;

    my $s = tg_connect($sock);
    tg_send($s, $bytes);

    my $e = tg_read_frame($s, 5);
    ok($e && $e->{type} == TG_MSG_ERROR, "$name: ERROR")
        or diag($Tailgate::Proto::ERROR);
    is($e && tg_field($e, TG_F_STATUS), $err, "$name: error $err");
    is($e && $e->{id}, $id, "$name: id $id");

    my $more = tg_read_frame($s, 5);
    ok(!$more && $Tailgate::Proto::ERROR eq 'eof', "$name: then closed")
        or diag($Tailgate::Proto::ERROR);

    alive($name);
}

expect_fatal('length below 6', pack('N', 3) . 'abc', TG_ERR_MALFORMED, 0);
expect_fatal('length 0', pack('N', 0), TG_ERR_MALFORMED, 0);
expect_fatal('length past max_frame',
             pack('N C C N', 65537, 1, TG_MSG_DECIDE, 51), TG_ERR_TOO_LARGE, 0);
expect_fatal('length 4 GiB', pack('N', 0xffffffff), TG_ERR_TOO_LARGE, 0);

{
    my $f = tg_decide(52, 'qwen');
    substr($f, 4, 1) = chr(2);
    expect_fatal('version 2', $f, TG_ERR_VERSION, 52);
}

# a field whose length runs past the end of the frame
expect_fatal('field past the end',
             pack('N C C N', 6 + 5 + 3, 1, TG_MSG_DECIDE, 53)
             . pack('C N', TG_F_MODEL, 100) . 'abc',
             TG_ERR_MALFORMED, 53);
expect_fatal('field header cut short',
             pack('N C C N', 6 + 3, 1, TG_MSG_DECIDE, 54) . 'abc',
             TG_ERR_MALFORMED, 54);
expect_fatal('u32 field of 3 bytes',
             tg_decide(55, 'qwen', [TG_F_ATTEMPT, 'str', "\0\0\1"]),
             TG_ERR_MALFORMED, 55);
expect_fatal('u8 field of 2 bytes',
             tg_decide(56, 'qwen', [TG_F_STREAM, 'str', "\0\1"]),
             TG_ERR_MALFORMED, 56);
expect_fatal('HELLO max_frame of 8 bytes',
             tg_frame(TG_MSG_HELLO, 0, [TG_F_MAX_FRAME, 'str', "\0" x 8]),
             TG_ERR_MALFORMED, 0);
expect_fatal('REPORT lease of 2 bytes',
             tg_frame(TG_MSG_REPORT, 57, [TG_F_LEASE, 'str', "\0\1"]),
             TG_ERR_MALFORMED, 57);

{
    # replies already queued still go out before the ERROR
    my $s = tg_connect($sock);
    tg_send($s, tg_decide(58, 'qwen') . pack('N', 2));
    my $d = tg_read_frame($s, 5);
    is($d && $d->{id}, 58, 'frames before a bad one are answered');
    my $e = tg_read_frame($s, 5);
    is($e && tg_field($e, TG_F_STATUS), TG_ERR_MALFORMED, 'then the ERROR');
    ok(!tg_read_frame($s, 2), 'then the connection closes');
}


# frames at the size limit

{
    my $s = tg_connect($sock);
    my $f = tg_decide(61, 'qwen');
    my $pad = 65536 - (length($f) - 4) - 5;
    $f = tg_decide(61, 'qwen', [250, 'str', 'x' x $pad]);
    is(length($f) - 4, 65536, 'a frame of exactly max_frame');
    my $d = ask($s, $f);
    is($d && tg_field($d, TG_F_STATUS), 200, 'is accepted');

    $f = tg_decide(62, 'qwen', [250, 'str', 'x' x ($pad + 1)]);
    tg_send($s, $f);
    my $e = tg_read_frame($s, 5);
    is($e && tg_field($e, TG_F_STATUS), TG_ERR_TOO_LARGE,
       'one byte more is too_large');
    alive('after a frame at the limit');
}


# hostile clients

{
    # half a frame, then close
    my $s = tg_connect($sock);
    my $f = tg_decide(71, 'qwen');
    tg_send($s, substr($f, 0, 13));
    close($s);
    ok($t->wait_log($log, qr/closed: peer closed the connection in the middle of a frame \(13 bytes unread\)/),
       'half a frame then close: logged');
    alive('half a frame');

    # half a header
    $s = tg_connect($sock);
    tg_send($s, substr($f, 0, 2));
    close($s);
    alive('half a header');

    # connect and close
    $s = tg_connect($sock);
    close($s);
    alive('connect and close');
}

{
    # garbage
    srand(4711);
    for my $round (1 .. 20) {
        my $s = tg_connect($sock);
        my $junk = join('', map { chr(int(rand(256))) } 1 .. 1 + int(rand(2000)));
        tg_send($s, $junk);
        # whatever comes back, the connection ends or stays; do not wait long
        tg_read_frame($s, 0.2);
        close($s);
    }
    alive('garbage bytes');

    # garbage that looks like frames: valid headers, random fields
    for my $round (1 .. 50) {
        my $s = tg_connect($sock);
        my $fields = join('', map { chr(int(rand(256))) } 1 .. int(rand(64)));
        my $type = 1 + int(rand(9));
        tg_send($s, pack('N C C N', 6 + length($fields), 1, $type, $round)
                    . $fields);
        tg_read_frame($s, 0.2);
        close($s);
    }
    alive('random fields');
}

{
    # 200 connections at once
    my @socks;
    for my $i (1 .. 200) {
        my $s = IO::Socket::UNIX->new(Peer => $sock, Type => SOCK_STREAM);
        last unless $s;
        push @socks, $s;
    }
    is(scalar(@socks), 200, '200 connections open');

    my $sent = 0;
    for my $i (0 .. $#socks) {
        $sent++ if tg_send($socks[$i],
                           tg_frame(TG_MSG_HELLO, 0, [TG_F_MAX_FRAME, 'u32', 65536])
                           . tg_decide(1000 + $i, $i % 2 ? 'qwen' : 'smart'));
    }
    is($sent, 200, 'each sent HELLO and DECIDE');

    my $answered = 0;
    for my $i (0 .. $#socks) {
        my $h = tg_read_frame($socks[$i], 5);
        my $d = tg_read_frame($socks[$i], 5);
        $answered++ if $h && $h->{type} == TG_MSG_HELLO_OK
                       && $d && $d->{id} == 1000 + $i
                       && tg_field($d, TG_F_STATUS) == 200;
    }
    is($answered, 200, 'all 200 answered');

    close($_) for @socks;
    alive('200 connections');
}

{
    # a peer that sends and never reads: closed when its replies pile up
    my $s = tg_connect($sock);
    my $frame = tg_decide(81, 'smart');
    my $batch = $frame x 1000;
    my $deadline = time() + 30;
    my $closed = 0;
    my $next_look = 0;

    while (time() < $deadline) {
        my $n = syswrite($s, $batch);
        if (!defined $n) {
            if ($!{EAGAIN}) { sleep(0.01) }
            else { $closed = 1; last }
        }
        if (time() > $next_look) {
            $next_look = time() + 0.25;
            if ($t->read_file($log) =~ /peer does not read its replies/) {
                $closed = 1;
                last;
            }
        }
    }

    ok($closed, 'a peer that never reads is cut off');
    ok($t->wait_log($log, qr/closed: peer does not read its replies/),
       'and the reason is logged');
    close($s);
    alive('a peer that never reads');
}

{
    # disconnect reasons
    my $l = $t->read_file($log);
    like($l, qr/closed: malformed frame \(type 3, id 55\): attempt is not a u32/,
         'a malformed frame is logged with its reason');
    like($l, qr/closed: frame of 65537 bytes is over max_frame 65536/,
         'an oversized frame is logged');
    like($l, qr/closed: protocol version 2, expected 1/,
         'a bad version is logged');
    like($l, qr/ERROR unknown_type for frame id 41/,
         'an unknown type is logged');
}


# the end

ok(kill(0, $pid), 'policyd is still running');
unlike($t->read_file($log), qr/\Q$SECRET\E/, 'the api key never appears in the log');

kill 'TERM', $pid;
is($t->wait_exit('policyd', 10), 0, 'SIGTERM exits 0');
ok(!-e $sock, 'the socket is gone');

unlike($t->read_file($log), qr/\[alert\]|\[crit\]|AddressSanitizer|LeakSanitizer|runtime error:/,
       'no alert and no sanitizer report in the log')
    or diag($t->read_file($log) =~ s/\A.*?(?=^==\d+==|^\S+: runtime error)//msr);

done_testing();


# helpers

sub ask {
    my ($s, $frame) = @_;

    tg_send($s, $frame) or return {};
    my $f = tg_read_frame($s, 5);
    diag("no answer: $Tailgate::Proto::ERROR") unless $f;

    return $f || { fields => {} };
}

# policyd is running and a fresh connection gets a right answer
sub alive {
    my ($after) = @_;

    my $s = eval { tg_connect($sock) };
    my $d = $s && ask($s, tg_decide(4242, 'smart'));

    ok(kill(0, $pid) && $d && ($d->{id} // 0) == 4242
       && (tg_field($d, TG_F_PROVIDER) // '') eq 'deepseek',
       "still serving after: $after");
}
