#!/usr/bin/perl

# Every error a client can meet, each in the OpenAI error shape with the
# right status - and none of them reaching a provider that should not see
# the request.  An error reaches a slow client whole, and a 413 found while
# the body is read is answered wherever "tailgate on" is set.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Time::HiRes qw(sleep);
use JSON::PP ();
use Tailgate::Gateway;

my $t = Tailgate::Gateway->new->skip_unless_built;

my $policy = Tailgate::Gateway::default_policy();
$policy->{providers}{gone} = {
    upstream => 'tg_gone', zone => 'local', endpoints => ['chat'] };
$policy->{routes}{'gone-model'} = {
    steps => [{ provider => 'gone', model => 'm' }] };

# a provider that neither streams nor takes tools, first in its route: a
# request that streams or has tools goes on to local
$policy->{providers}{plain} = {
    upstream => 'tg_ext', zone => 'external', endpoints => ['chat'],
    streaming => JSON::PP::false, tools => JSON::PP::false };
$policy->{routes}{pick} = {
    steps => [{ provider => 'plain', model => 'p' },
              { provider => 'local', model => 'l' }] };

# tg_gone points at a port nobody listens on; the "small" port has a send
# buffer a slow client fills, "h2" speaks HTTP/2
my $key = $t->start_gateway(policy => $policy, mocks => [qw(local ext)],
    http => "upstream tg_gone { server 127.0.0.1:@{[ $t->port('gone') ]}; }",
    server => 'listen 127.0.0.1:%%PORT:small%% sndbuf=4096;'
              . ' listen 127.0.0.1:%%PORT:h2%% http2;');
my $local = $t->mock('local');

sub post {
    my ($path, $body, %headers) = @_;
    return $t->post_json($path, $key, $body, headers => \%headers);
}


# A slow client: $K pipelined copies of $req into a small sndbuf, written
# without reading, then everything read; returns the number of complete
# JSON error bodies received and whether the connection closed after the
# last.  The module's own errors must be finalized like nginx's 404 for an
# unknown URL: every response delivered, none left waiting for a timer.

my $K = 80;
my $auth = "Authorization: Bearer $key\r\n";

sub pipelined {
    my ($req) = @_;

    my $last = $req =~ s/\r\nHost: x\r\n/\r\nHost: x\r\nConnection: close\r\n/r;
    my $all = ($req x ($K - 1)) . $last;

    my $c = $t->raw_connect(port => 'small', rcvbuf => 2048);
    $c->write_bytes($all, 5);

    sleep 0.5;

    $c->read_all(4);
    my $eof = $c->eof;
    $c->close;

    my $bodies = () = $c->raw =~ m{"\}\}\n|null\}\}\n}g;
    return ($bodies, $eof);
}


subtest 'malformed JSON and a missing or bad model are 400s' => sub {
    $local->clear;

    my %cases = (
        'empty body'          => '',
        'not JSON'            => 'model=qwen',
        'truncated'           => '{"model":"qwen",',
        'an array'            => '[{"model":"qwen"}]',
        'trailing garbage'    => '{"model":"qwen"} x',
        'bad escape'          => '{"model":"q\x"}',
        'control character'   => qq({"model":"q\x01"}),
        'lone surrogate'      => '{"model":"\ud800"}',
        'bad number'          => '{"model":"qwen","temperature":01}',
        'single quotes'       => q({'model':'qwen'}),
        'nested too deeply'   => '{"model":"qwen","x":' . ('[' x 200) . (']' x 200) . '}',
        'no model'            => '{"messages":[]}',
        'model is a number'   => '{"model":7}',
        'model is null'       => '{"model":null}',
        'model twice'         => '{"model":"qwen","model":"smart"}',
        'model twice, escaped'=> '{"model":"qwen","mod\u0065l":"smart"}',
        'stream twice'        => '{"model":"qwen","stream":false,"stream":true}',
    );

    for my $name (sort keys %cases) {
        my $res = post('/v1/chat/completions', $cases{$name});
        $t->is_openai_error($res, 400, undef, $name);
        is($t->error($res)->{type}, 'invalid_request_error', "$name: type");
    }

    like($t->error(post('/v1/chat/completions', '{"messages":[]}'))->{message},
         qr/model/, 'a missing model says so');
    like($t->error(post('/v1/chat/completions', '{"model":"a","model":"b"}'))->{message},
         qr/more than once/, 'a duplicate says so');

    is(scalar @{ $local->requests }, 0, 'no provider saw any of them');
};

# Every member the gateway reads must have the type OpenAI wants, or a
# provider could read it otherwise: "stream": "true" is not streaming to
# the gateway, which would pick a step that does not stream, and may be
# streaming to the provider.  OpenAI's answer: 400 invalid_type naming the
# parameter.  null is as if absent; each member at most once.

subtest 'a member of the wrong type is a 400 invalid_type naming it' => sub {
    my $big = '"' . ('t' x (1024 * 1024)) . '"';
    my $many = '[' . join(',', ('{"type":"function","function":{"name":"f"}}') x 5000) . ']';

    my %want = (model => 'a string', stream => 'a boolean', tools => 'an array',
                stream_options => 'an object',
                'stream_options.include_usage' => 'a boolean');
    my %got = ('"true"' => 'a string', '""' => 'a string', '1' => 'a number',
               '-0.5e3' => 'a number', '{}' => 'an object', '[]' => 'an array',
               'true' => 'a boolean', $big => 'a string', '1e999999' => 'a number');

    my %wrong = (
        model          => ['1', '{}', '[]', 'true', '-0.5e3'],
        stream         => ['"true"', '""', '1', '{}', '[]', $big, '1e999999'],
        tools          => ['"true"', '""', '1', '{}', 'true', $big],
        stream_options => ['"true"', '""', '1', '[]', 'true', $big],
        'stream_options.include_usage' => ['"true"', '""', '1', '{}', '[]', $big],
    );

    $local->clear;
    $t->mock('ext')->clear;

    for my $param (sort keys %wrong) {
        for my $value (@{ $wrong{$param} }) {
            my $member = $param =~ /^stream_options\.(.*)/
                       ? qq{"stream":true,"stream_options":{"$1":$value}}
                       : qq{"$param":$value};
            my $body = $param eq 'model' ? qq({$member,"messages":[]})
                                         : qq({"model":"pick",$member,"messages":[]});
            my $name = "$param: " . (length $value > 20 ? 'a 1 MB value' : $value);

            my $res = post('/v1/chat/completions', $body);
            $t->is_openai_error($res, 400, 'invalid_type', $name) or next;

            my $e = $t->error($res);
            is($e->{param}, $param, "$name: param");
            is($e->{type}, 'invalid_request_error', "$name: type");
            is($e->{message}, "Invalid type for '$param': expected $want{$param}, "
                              . "but got $got{$value} instead.", "$name: message");
        }
    }

    my %twice = (
        model => '{"model":"pick","model":"pick"}',
        stream => '{"model":"pick","stream":true,"stream":true}',
        tools => '{"model":"pick","tools":[],"tools":null}',
        stream_options => '{"model":"pick","stream_options":null,"stream_options":{}}',
        'stream_options.include_usage' =>
            '{"model":"pick","stream":true,"stream_options":{"include_usage":true,"include_usage":false}}',
    );

    for my $param (sort keys %twice) {
        my $res = post('/v1/chat/completions', $twice{$param});
        $t->is_openai_error($res, 400, undef, "$param twice") or next;
        is($t->error($res)->{param}, $param, "$param twice: param");
        like($t->error($res)->{message}, qr/more than once/, "$param twice: message");
    }

    my $res = post('/v1/chat/completions', '{"model":"","messages":[]}');
    $t->is_openai_error($res, 400, 'invalid_value', 'an empty model')
        and is($t->error($res)->{param}, 'model', 'an empty model: param');

    for my $body ('{"model":null}', '{"messages":[]}') {
        $res = post('/v1/chat/completions', $body);
        $t->is_openai_error($res, 400, undef, "no model: $body")
            and like($t->error($res)->{message}, qr/must provide a model/,
                     "$body: says so");
    }

    is(scalar @{ $local->requests } + scalar @{ $t->mock('ext')->requests }, 0,
       'no provider saw any of them');

    # the right types, null as absent, and a huge array of tools
    my %ok = (
        'stream true'            => ['{"model":"pick","stream":true}', 'local'],
        'stream false'           => ['{"model":"pick","stream":false}', 'plain'],
        'stream null'            => ['{"model":"pick","stream":null}', 'plain'],
        'tools'                  => ['{"model":"pick","tools":[{"type":"function"}]}', 'local'],
        'tools []'               => ['{"model":"pick","tools":[]}', 'plain'],
        'tools null'             => ['{"model":"pick","tools":null}', 'plain'],
        '5000 tools'             => [qq({"model":"pick","tools":$many}), 'local'],
        'stream_options'         => ['{"model":"pick","stream":true,'
                                     . '"stream_options":{"include_usage":true}}', 'local'],
        'stream_options null'    => ['{"model":"pick","stream_options":null}', 'plain'],
        'include_usage null'     => ['{"model":"pick","stream_options":{"include_usage":null}}',
                                     'plain'],
        'other stream_options'   => ['{"model":"pick","stream_options":{"x":"y"}}', 'plain'],
    );

    for my $name (sort keys %ok) {
        my ($body, $provider) = @{ $ok{$name} };
        my $res = post('/v1/chat/completions', $body);
        is($t->answered_by($res), $provider, "$name: answered by $provider");
    }
};

subtest 'a transcription without a model or not multipart is a 400' => sub {
    my $b = 'XyZ';
    my $res = post('/v1/audio/transcriptions',
        "--$b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a\"\r\n\r\nabc\r\n--$b--\r\n",
        'Content-Type' => "multipart/form-data; boundary=$b");
    $t->is_openai_error($res, 400, undef, 'no model part');

    $res = post('/v1/audio/transcriptions', '{"model":"qwen"}');
    $t->is_openai_error($res, 400, undef, 'JSON instead of multipart');

    $res = post('/v1/audio/transcriptions', "--$b\r\nbroken",
                'Content-Type' => "multipart/form-data; boundary=$b");
    $t->is_openai_error($res, 400, undef, 'broken multipart');
};

subtest 'an unknown model is a 404 model_not_found' => sub {
    my $res = post('/v1/chat/completions', '{"model":"gpt-9","messages":[]}');
    $t->is_openai_error($res, 404, 'model_not_found', 'unknown route');
    like($t->error($res)->{message}, qr/No matching route found/, 'the message');

    $res = post('/v1/chat/completions', '{"model":"' . ('m' x 300) . '"}');
    $t->is_openai_error($res, 404, 'model_not_found', 'a 300-byte model name');

    $res = post('/v1/audio/speech', '{"model":"smart","input":"x"}');
    $t->is_openai_error($res, 404, 'model_not_found',
                        'a route whose providers do not serve the endpoint');
};

subtest 'a body over the limit is a 413' => sub {
    my $res = post('/v1/chat/completions',
                   '{"model":"qwen","x":"' . ('a' x (4 * 1024 * 1024)) . '"}');
    $t->is_openai_error($res, 413, 'request_too_large', 'JSON over 4m');

    $res = $t->http('POST', '/v1/chat/completions',
        headers => { Authorization => "Bearer $key" },
        body => '{"model":"qwen","x":"' . ('a' x (4 * 1024 * 1024)) . '"}',
        chunked => 1);
    $t->is_openai_error($res, 413, 'request_too_large', 'chunked over 4m');
};

subtest 'a provider that cannot be reached is a 502' => sub {
    my $res = post('/v1/chat/completions', '{"model":"gone-model"}');
    $t->is_openai_error($res, 502, 'provider_unreachable', 'connection refused');
    like($t->error($res)->{message}, qr/"gone"/, 'naming the provider');
    $t->allow_log(qr/connect\(\) failed \(111: Connection refused\)/);
};

subtest "a provider's own errors pass through with their status" => sub {
    $local->set(mode => 'status', status => 500);
    my $res = post('/v1/chat/completions', '{"model":"qwen"}');
    is($res->{status}, 500, 'status 500');
    is($t->error($res)->{message}, 'mock local failure', "the provider's body");

    $local->set(mode => 'status', status => 400);
    is(post('/v1/chat/completions', '{"model":"qwen"}')->{status}, 400, 'a 400 too');

    $local->set(mode => 'status', status => 429, retry_after => 2);
    $res = post('/v1/chat/completions', '{"model":"qwen"}');
    is($res->{status}, 429, 'status 429');
    is($res->{headers}{'retry-after'}, 2, 'Retry-After passes');
    is($t->error($res)->{code}, 'mock_failure', "the provider's error code");

    # it asked for 2 s: policyd keeps requests off it that long (policy.md,
    # "Limits"), and this route has no other step
    $local->set(mode => 'ok');
    my $n = @{ $local->requests };
    $res = post('/v1/chat/completions', '{"model":"qwen"}');
    $t->is_openai_error($res, 429, 'provider_rate_limited', 'then 429 from policyd');
    ok($res->{headers}{'retry-after'} >= 1 && $res->{headers}{'retry-after'} <= 2,
       'with the Retry-After left');
    is(scalar @{ $local->requests }, $n, 'the provider is not asked');
    ok($t->wait_for(sub { post('/v1/chat/completions', '{"model":"qwen"}')->{status} == 200 },
                    timeout => 10, interval => 0.2),
       'and afterwards served again');
};

# errors the module sends itself reach a slow client whole

{
    my $long = 'm' x 300;
    my $json = qq({"model":"$long","messages":[]});

    my ($n, $eof) = pipelined("POST /v1/nope HTTP/1.1\r\nHost: x\r\n$auth"
                              . "Content-Length: 2\r\n\r\n{}");
    is($n, $K, "control: $K pipelined 404 unknown_url, all delivered");
    ok($eof, 'control: and the connection closed after the last');

    ($n, $eof) = pipelined("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n$auth"
                           . "Content-Type: application/json\r\n"
                           . "Content-Length: " . length($json) . "\r\n\r\n$json");
    is($n, $K, "$K pipelined chat requests with a 300-byte model: all 404s delivered");
    ok($eof, 'and the connection closed after the last');

    ($n, $eof) = pipelined("GET /v1/models/$long HTTP/1.1\r\nHost: x\r\n$auth\r\n");
    is($n, $K, "$K pipelined GET /v1/models/{300 bytes}: all 404s delivered");
    ok($eof, 'and the connection closed after the last');

    # the same with one HTTP/2 request and a client whose stream window (50
    # bytes) is smaller than the error body: after the first DATA frame the
    # rest must follow the WINDOW_UPDATE (POST), and the phase handler must
    # not run again and send a second header (GET).  Needs node for an
    # HTTP/2 client.

    my $H2 = <<'JS';
const http2 = require('http2');
const [port, path, key, method, body] = process.argv.slice(1);
const c = http2.connect('http://127.0.0.1:' + port,
                        { settings: { initialWindowSize: 50 } });
c.on('error', () => {});
const h = { ':path': path, ':method': method, authorization: 'Bearer ' + key };
if (body) h['content-type'] = 'application/json';
const r = c.request(h);
let data = '', status = 0, done = false;
r.on('response', x => { status = x[':status']; });
r.on('data', d => { data += d; });
r.on('error', () => {});
r.on('end', () => { done = true; });
if (body) r.end(body); else r.end();
setTimeout(() => { console.log(JSON.stringify({ status, done, data }));
                   process.exit(0); }, 2000);
JS

    SKIP: {
        skip 'node is needed for an HTTP/2 client', 3
            unless system('node -e 1 >/dev/null 2>&1') == 0;

        my $h2 = sub {
            my @args = ($t->port('h2'), @_);
            my $out = do {
                open my $fh, '-|', 'node', '-e', $H2, @args or die "node: $!\n";
                local $/; <$fh>;
            };
            return JSON::PP->new->decode($out || '{}');
        };

        my $r = $h2->('/v1/nope', $key, 'POST', '{}');
        ok($r->{done} && $r->{data} =~ /\}\}\n$/,
           'HTTP/2, window 50, control: the whole 404 unknown_url arrives');

        $r = $h2->('/v1/chat/completions', $key, 'POST', $json);
        ok($r->{done} && $r->{data} =~ /\}\}\n$/,
           'HTTP/2, window 50: the whole 404 for a 300-byte model arrives')
            or diag("got $r->{status}, " . length($r->{data}) . " bytes, "
                    . ($r->{done} ? 'ended' : 'never ended'));

        $r = $h2->("/v1/models/$long", $key, 'GET');
        ok($r->{done} && $r->{data} =~ /\}\}\n$/,
           'HTTP/2, window 50: the whole 404 for /v1/models/{300 bytes} arrives')
            or diag("got $r->{status}, " . length($r->{data}) . " bytes, "
                    . ($r->{done} ? 'ended' : 'never ended'));
    }

    $t->logs_clean('error.log is clean after the errors sent to slow clients');
}

subtest 'policyd past its timeout: 503 policy_unavailable, nothing proxied' => sub {
    $t->stop_policyd;
    $t->start_fake_policyd({
        decision => { provider => 'local', upstream => 'tg_local',
                      scheme => 'http', host => 'local', zone => 'local',
                      path => '/v1/chat/completions' },
        misbehave => { 'silent-model' => 'silent' },
    });
    $local->clear;

    my $res = post('/v1/chat/completions', '{"model":"silent-model"}');
    $t->is_openai_error($res, 503, 'policy_unavailable', 'no answer within 1s');
    is($res->{headers}{'retry-after'}, 1, 'Retry-After: 1');
    cmp_ok($res->{total_s}, '>=', 0.9, 'after the timeout, not before');

    is(post('/v1/chat/completions', '{"model":"qwen"}')->{status}, 200,
       'the next request is served');
    is(scalar @{ $local->requests }, 1, 'only that one reached a provider');
    $t->allow_log(qr/policyd did not answer in time/);
};

subtest 'policyd unreachable: 503 at once; /health is still served' => sub {
    $t->stop_policyd;
    $local->clear;

    my $res = post('/v1/chat/completions', '{"model":"qwen"}');
    $t->is_openai_error($res, 503, 'policy_unavailable', 'chat');

    $res = $t->http('GET', '/v1/models', headers => { Authorization => "Bearer $key" });
    $t->is_openai_error($res, 503, 'policy_unavailable', 'models');

    $res = $t->http('GET', '/health');
    is($res->{status}, 200, '/health 200');
    is($t->json($res)->{policyd}, 'unreachable', 'and says policyd is unreachable');

    is(scalar @{ $local->requests }, 0, 'nothing was proxied: fail closed');
    $t->allow_log(qr/cannot connect to policyd/, qr/policyd connection #\d+ closed/);
};

# policyd down: every request is answered 503 from the same place, and a
# slow client gets every one

{
    my $ok = qq({"model":"qwen","messages":[]});
    my ($n, $eof) = pipelined("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n$auth"
                              . "Content-Type: application/json\r\n"
                              . "Content-Length: " . length($ok) . "\r\n\r\n$ok");
    is($n, $K, "policyd down: $K pipelined 503s all delivered");
    ok($eof, 'and the connection closed after the last');
}

# a graceful stop must find no request stuck without a timer

$t->signal('nginx', 'QUIT');
$t->wait_for(sub { !$t->running('nginx') }, timeout => 10);
unlike($t->error_log, qr/open socket #\d+ left/,
       'graceful shutdown: no connection was left behind');

# a 413 that nginx finds while it reads a chunked body sends the request to
# @tailgate_error; with "tailgate on" at the server level (a documented
# context) that location inherits it, and the client must still get its
# 413.  The same setup with "tailgate on" per location is the control.

{
    my $t2 = Tailgate::Gateway->new;

    my $key2 = $t2->start_gateway(locations => <<'EOF');
location /v1/ {
    tailgate on;
    client_max_body_size 1k;
    include tailgate/proxy.conf;
    error_page 413 502 503 504 @tailgate_error;
}
location @tailgate_error { tailgate_error_page; }
EOF

    my $too_large = sub {
        return $t2->http('POST', '/v1/chat/completions',
            headers => { Authorization => "Bearer $key2" },
            body => ['{"model":"qwen","x":"', 'a' x 3000, '"}'],
            chunked => 1, timeout => 4);
    };

    $t2->is_openai_error($too_large->(), 413, 'request_too_large',
                         'control: chunked body over the limit, tailgate per location');

    $t2->reload_nginx($t2->{nginx_http} =~ s/(server \{)/$1\n        tailgate on;/r);

    my $res = $too_large->();
    $t2->is_openai_error($res, 413, 'request_too_large',
                         'the same with "tailgate on" at the server level')
        or diag('error: ' . ($res->{error} // 'none'));

    $t2->stop_and_check('error.log is clean after a 413 found while reading');
}

# nginx's own refusals - most found while it reads the headers, before a
# location is chosen, where no location's error_page applies - are OpenAI
# errors on the gateway's URLs (by its location, or before one is chosen
# by the location nginx would choose for the URI), and stay nginx's HTML
# pages elsewhere in the same server: /plain/ and /v1/plain/ are the
# user's own locations.  Raw requests, one per connection.

{
    my $t3 = Tailgate::Gateway->new;

    my $key3 = $t3->start_gateway(server => <<'EOF');
        large_client_header_buffers 4 1k;
        client_body_timeout 1s;
        location /plain/ { proxy_pass http://%%MOCK:local%%; }
        location /v1/plain/ { proxy_pass http://%%MOCK:local%%; }
EOF
    my $local3 = $t3->mock('local');

    # one request on its own connection, read to the end
    my $exchange = sub {
        my ($bytes, $timeout) = @_;

        my $c = $t3->raw_connect;
        $c->write_bytes($bytes);
        my $closed = $c->read_all($timeout // 5);
        $c->close;

        my ($head, $body) = split /\r\n\r\n/, $c->raw, 2;
        my %h;
        $h{lc $1} = $2 while ($head // '') =~ /^([^:\r\n]+):\s*([^\r\n]*)/mg;
        my ($status) = ($head // '') =~ m{^HTTP/1\.[01] (\d{3})};

        return { status => $status // 0, headers => \%h, body => $body // '',
                 raw => $c->raw, closed => $closed };
    };

    my $auth3 = "Authorization: Bearer $key3\r\n";
    my $long = 'x' x 1500;

    # name => [status, request with PATH for the URI, code]
    my %cases = (
        'bad chunked body' => [400,
            "POST PATH HTTP/1.1\r\nHost: x\r\n$auth3"
            . "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
            'bad_request'],
        'negative Content-Length' => [400,
            "POST PATH HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\nConnection: close\r\n\r\n",
            'bad_request'],
        'two Content-Lengths' => [400,
            "POST PATH HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
            . "Content-Length: 2\r\nConnection: close\r\n\r\n{}", 'bad_request'],
        'Content-Length with Transfer-Encoding' => [400,
            "POST PATH HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
            . "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n",
            'bad_request'],
        'an unknown Transfer-Encoding' => [501,
            "POST PATH HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n"
            . "Connection: close\r\n\r\n", 'not_implemented'],
        'TRACE' => [405,
            "TRACE PATH HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            'method_not_allowed'],
        'headers too large' => [400,
            "GET PATH HTTP/1.1\r\nHost: x\r\nX-Big: $long\r\nConnection: close\r\n\r\n",
            'bad_request'],
        'a URI too long' => [414,
            "GET PATH$long HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            'uri_too_long'],
        'two Authorization headers' => [400,
            "GET PATH HTTP/1.1\r\nHost: x\r\n$auth3${auth3}Connection: close\r\n\r\n",
            'bad_request'],
        'two Host headers' => [400,
            "GET PATH HTTP/1.1\r\nHost: x\r\nHost: y\r\nConnection: close\r\n\r\n",
            'bad_request'],
        'HTTP/1.1 without Host' => [400,
            "GET PATH HTTP/1.1\r\nConnection: close\r\n\r\n", 'bad_request'],
        'a bad request line' => [400,
            "GET PATH HTTP/1.1 junk\r\nHost: x\r\n\r\n", 'bad_request'],
        'HTTP/2.0 in the request line' => [505,
            "GET PATH HTTP/2.0\r\nHost: x\r\n\r\n", 'http_version_not_supported'],
        'a NUL in a header' => [400,
            "GET PATH HTTP/1.1\r\nHost: x\r\nX-A\0: b\r\n\r\n", 'bad_request'],
        'a URI above the root' => [400,
            "GET PATH/" . ('../' x 8) . "x HTTP/1.1\r\nHost: x\r\n\r\n", 'bad_request'],
        'a body over client_max_body_size' => [413,
            "POST PATH HTTP/1.1\r\nHost: x\r\n${auth3}Content-Length: 30000000\r\n"
            . "Connection: close\r\n\r\n", 'request_too_large'],
    );

    my @ours = ('/v1/chat/completions', '/v1/audio/transcriptions', '/v1/nope', '/health');
    my @theirs = ('/plain/x', '/v1/plain/x');

    $local3->clear;

    for my $name (sort keys %cases) {
        my ($status, $req, $code) = @{ $cases{$name} };

        for my $path (@ours) {
            # /health, an exact location: what keeps the URI as it is
            next if $path eq '/health'
                    && $name =~ /chunked|client_max|URI too long|above the root/;

            my $res = $exchange->($req =~ s/PATH/$path/r);
            $t3->is_openai_error($res, $status, $code, "$name, $path: JSON $status")
                or next;
            is($res->{headers}{'content-length'}, length $res->{body},
               "$name, $path: its Content-Length");
        }

        for my $path (@theirs) {
            my $res = $exchange->($req =~ s/PATH/$path/r);
            is($res->{status}, $status, "$name, $path: $status");
            like($res->{headers}{'content-type'} // '', qr{^text/html},
                 "$name, $path: nginx's own page");
        }
    }

    is(scalar @{ $local3->requests }, 0, 'none was proxied');

    # a HEAD request gets the headers of the JSON error, and no body
    my $res = $exchange->("HEAD /v1/models HTTP/1.1\r\nConnection: close\r\n\r\n");
    is($res->{status}, 400, 'HEAD without Host: 400');
    is($res->{headers}{'content-type'}, 'application/json', 'HEAD: JSON headers');
    ok(($res->{headers}{'content-length'} // 0) > 0, 'HEAD: the length of the JSON');
    is($res->{body}, '', 'HEAD: no body');

    # the body is exactly the Content-Length, and nginx's Connection stays
    my $c = $t3->raw_connect;
    $c->write_bytes("TRACE /v1/models HTTP/1.1\r\nHost: x\r\n\r\n");
    my ($st1, $r1) = eval { $c->read_response };
    $c->close;
    is($st1, 405, 'TRACE: 405');
    like($r1 // '', qr/\r\n\r\n\{"error":\{"message":"[^"]+","type":"invalid_request_error","param":null,"code":"method_not_allowed"\}\}\n\z/,
         'an OpenAI error body of exactly its Content-Length');
    like($r1 // '', qr/^Connection: close\r$/m, "and nginx's Connection: close");

    # HTTP/1.0 needs no Host: answered as any request
    $res = $exchange->("GET /v1/models HTTP/1.0\r\n$auth3\r\n");
    is($res->{status}, 200, 'HTTP/1.0 without Host: served');

    # an unknown method is the module's 405, with Allow
    $res = $exchange->("FOO /v1/chat/completions HTTP/1.1\r\nHost: x\r\n$auth3"
                       . "Connection: close\r\n\r\n");
    $t3->is_openai_error($res, 405, 'method_not_allowed', 'an unknown method: 405');
    is($res->{headers}{allow}, 'POST', 'with Allow: POST');

    # a body that stops coming: nginx closes after client_body_timeout and
    # sends nothing - no page, HTML or other
    $c = $t3->raw_connect;
    $c->write_bytes("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n$auth3"
                    . "Content-Length: 100\r\n\r\n{\"model\":");
    ok($c->read_all(4), 'a body that stops: the connection closes');
    is($c->raw, '', 'without a response');
    $c->close;

    $t3->allow_log(qr/client sent|client intended to send too large body/,
                   qr/client timed out/, qr/invalid chunked body/);
    $t3->stop_and_check("error.log is clean after nginx's own refusals");
}

$t->done_testing;
