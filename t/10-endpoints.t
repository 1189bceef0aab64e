#!/usr/bin/perl

# Every endpoint end to end: client -> nginx + module -> policyd -> mock
# provider and back, with the provider's model name in what it received.
# The provider's answer cannot steer nginx elsewhere, and /health answers
# in a server without tailgate_policyd.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use JSON::PP;
use Tailgate::Gateway;

my $t = Tailgate::Gateway->new->skip_unless_built;

# "internal" stands for anything else this server does: another proxied
# backend (here the ext mock, which policyd never chooses for qwen)
my $key = $t->start_gateway(server => <<'EOF');
        location /internal/ {
            internal;
            proxy_pass http://%%MOCK:ext%%/v1/chat/completions;
        }
EOF
my $local = $t->mock('local');


subtest 'chat completion' => sub {
    my $res = $t->chat('qwen');

    is($res->{status}, 200, 'status 200');
    is($res->{headers}{'x-mock-provider'}, 'local', 'answered by the local provider');

    my $doc = $t->json($res);
    is($doc->{object}, 'chat.completion', 'a chat.completion');
    is($doc->{choices}[0]{message}{content}, 'Hello from local', 'its content');

    my $got = $local->requests->[-1];
    is($got->{method}, 'POST', 'provider saw a POST');
    is($got->{path}, '/v1/chat/completions', 'at the base path + endpoint');
    is($got->{json}{model}, 'qwen2.5-7b-instruct', 'with the provider model');
    is_deeply($got->{json}{messages}, [{ role => 'user', content => 'Hello' }],
              'messages intact');
};

subtest 'embeddings' => sub {
    my $res = $t->call('/v1/embeddings', 'qwen', body => { input => 'some text' });

    is($res->{status}, 200, 'status 200');
    my $doc = $t->json($res);
    is($doc->{object}, 'list', 'a list');
    is_deeply($doc->{data}[0]{embedding}, [0.1, 0.2, 0.3], 'the embedding');
    is($local->requests->[-1]{path}, '/v1/embeddings', 'provider path');
    is($local->requests->[-1]{json}{input}, 'some text', 'input intact');
};

subtest 'speech is binary and passes byte for byte' => sub {
    my $res = $t->call('/v1/audio/speech', 'qwen',
                       body => { input => 'Hello', voice => 'alloy' });

    is($res->{status}, 200, 'status 200');
    is($res->{headers}{'content-type'}, 'audio/mpeg', 'audio content type');

    my $expected = join '', map { chr } (0 .. 255) x 16;
    ok($res->{body} eq $expected, '4096 bytes including NUL and 0xFF, unchanged');
    is($local->requests->[-1]{path}, '/v1/audio/speech', 'provider path');
};

subtest 'transcription: a multipart upload' => sub {
    my $boundary = 'tailgateBoundary7MA4YWxk';
    my $audio = join '', map { chr(($_ * 7) % 256) } 0 .. 70_000;
    my $body = join '',
        "--$boundary\r\n",
        qq{Content-Disposition: form-data; name="file"; filename="a.wav"\r\n},
        "Content-Type: audio/wav\r\n\r\n", $audio, "\r\n",
        "--$boundary\r\n",
        qq{Content-Disposition: form-data; name="model"\r\n\r\n},
        "qwen\r\n",
        "--$boundary--\r\n";

    my $res = $t->http('POST', '/v1/audio/transcriptions',
        headers => {
            'Authorization' => "Bearer $key",
            'Content-Type'  => "multipart/form-data; boundary=$boundary",
        },
        body => $body);

    is($res->{status}, 200, 'status 200');
    is($t->json($res)->{model}, 'qwen2.5-7b-instruct',
       'provider read the rewritten model field (the part after the file)');

    my $got = $local->requests->[-1];
    is($got->{path}, '/v1/audio/transcriptions', 'provider path');
    ok(index($got->{body}, "\r\n\r\n$audio\r\n--$boundary") > 0,
       'the audio bytes arrived intact');
    is($got->{headers}{'content-length'}, length $got->{body},
       'Content-Length matches the rewritten body');
};

subtest 'responses' => sub {
    my $res = $t->call('/v1/responses', 'qwen', body => { input => 'Hi' });

    is($res->{status}, 200, 'status 200');
    my $doc = $t->json($res);
    is($doc->{object}, 'response', 'a response object');
    is($doc->{output}[0]{content}[0]{text}, 'Hello from local', 'its output');
    is($local->requests->[-1]{path}, '/v1/responses', 'provider path');
};

subtest 'the same endpoints through an external provider with a base path' => sub {
    my $ext = $t->mock('ext');
    my $res = $t->chat('smart');

    is($res->{status}, 200, 'status 200');
    is($res->{headers}{'x-mock-provider'}, 'ext', 'answered by ext');
    is($ext->requests->[-1]{json}{model}, 'deepseek-chat', 'provider model');
    is($ext->requests->[-1]{headers}{host}, 'api.ext.test', 'provider Host header');
};

subtest 'GET /v1/models lists the routes, answered by the gateway' => sub {
    my $before = scalar @{ $local->requests };
    my $res = $t->http('GET', '/v1/models',
                       headers => { Authorization => "Bearer $key" });

    is($res->{status}, 200, 'status 200');
    my $doc = $t->json($res);
    is($doc->{object}, 'list', 'OpenAI list shape');
    is_deeply([sort map { $_->{id} } @{ $doc->{data} }], [qw(qwen same smart)],
              'every route');
    is($_->{object}, 'model', "$_->{id} is a model object") for @{ $doc->{data} };
    is(scalar @{ $local->requests }, $before, 'no provider was asked');

    $res = $t->http('GET', '/v1/models/smart',
                    headers => { Authorization => "Bearer $key" });
    is($res->{status}, 200, 'GET /v1/models/smart');
    is($t->json($res)->{id}, 'smart', 'one model object');

    $res = $t->http('GET', '/v1/models/nope',
                    headers => { Authorization => "Bearer $key" });
    $t->is_openai_error($res, 404, 'model_not_found', 'an unknown model id is a 404');

    $res = $t->http('GET', '/v1/models');
    $t->is_openai_error($res, 401, 'missing_api_key', '/v1/models needs a key');
};

subtest 'GET /health without credentials' => sub {
    my $res = $t->http('GET', '/health');

    is($res->{status}, 200, 'status 200');
    is_deeply($t->json($res), { status => 'ok', policyd => 'up' }, 'body');
};

subtest 'anything else under /v1/ is an OpenAI-shaped 404' => sub {
    for my $path ('/v1/', '/v1/completions', '/v1/chat', '/v1/chat/completions/x',
                  '/v1/files')
    {
        my $res = $t->http('POST', $path,
                           headers => { Authorization => "Bearer $key" },
                           body => '{"model":"qwen"}');
        $t->is_openai_error($res, 404, 'unknown_url', "POST $path");
    }
};

subtest 'a wrong method is a 405 that says which one' => sub {
    my $res = $t->http('GET', '/v1/chat/completions',
                       headers => { Authorization => "Bearer $key" });
    $t->is_openai_error($res, 405, 'method_not_allowed', 'GET chat/completions');
    is($res->{headers}{allow}, 'POST', 'Allow: POST');

    $res = $t->http('POST', '/v1/models',
                    headers => { Authorization => "Bearer $key" }, body => '{}');
    $t->is_openai_error($res, 405, 'method_not_allowed', 'POST models');
    is($res->{headers}{allow}, 'GET', 'Allow: GET');

    # a model id may hold "/" (openrouter/...): its URL is a model's too
    $res = $t->http('POST', '/v1/models/a/b',
                    headers => { Authorization => "Bearer $key" }, body => '{}');
    $t->is_openai_error($res, 405, 'method_not_allowed', 'POST models/a/b');
};

subtest 'no CORS unless configured' => sub {
    my $res = $t->http('OPTIONS', '/v1/chat/completions', headers => {
        Origin => 'https://app.example.com',
        'Access-Control-Request-Method' => 'POST' });

    isnt($res->{status}, 204, 'a preflight is not answered');
    ok(!exists $res->{headers}{'access-control-allow-origin'}, 'no allow header');

    $res = $t->chat('qwen', headers => { Origin => 'https://app.example.com' });
    ok(!exists $res->{headers}{'access-control-allow-origin'},
       'a request from a page gets none either');
};

# the provider's X-Accel-* headers have no effect: no internal redirect to
# a location or an upstream policyd did not choose

{
    my $ext = $t->mock('ext');

    $local->set(headers => { 'X-Accel-Redirect' => '/internal/x' });
    $ext->clear;

    my $res = $t->chat('qwen');

    is($res->{headers}{'x-mock-provider'}, 'local',
       'the client gets the response of the provider policyd chose')
        or diag("answered by: " . ($res->{headers}{'x-mock-provider'} // '?'));
    is(scalar @{ $ext->requests }, 0,
       'and no request went to an upstream policyd did not choose');

    $local->set(headers => { 'X-Accel-Redirect' => '/health' });
    $res = $t->chat('qwen');
    unlike($res->{body}, qr/"policyd"/, 'the provider cannot make nginx serve /health');

    $local->set;
    $t->logs_clean('error.log is clean after the X-Accel-* headers');
}

# /health in an nginx whose configuration has no tailgate_policyd (no
# policyd peer to pick)

{
    my $t2 = Tailgate::Test->new;
    $t2->start_nginx(<<'EOF');
    server {
        listen 127.0.0.1:%%PORT%%;
        location = /health { tailgate_health; }
    }
EOF

    my $res = $t2->http('GET', '/health');
    is($res->{status}, 200, '/health without tailgate_policyd answers');
    like($res->{body}, qr/"unreachable"/, 'and says policyd is unreachable');
    $t2->stop_all;
    $t2->{checked} = 1;    # its error.log is checked right here
    ok(!grep({ /runtime error|AddressSanitizer|signal 8|exited on signal/ }
             split /\n/, $t2->error_log),
       'the worker did not divide by zero')
        or diag(join "\n", grep { /runtime error|Sanitizer|signal/ }
                           split /\n/, $t2->error_log);
}

$t->done_testing;
