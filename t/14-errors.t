#!/usr/bin/perl

# Every error a client can meet, each in the OpenAI error shape with the
# right status - and none of them reaching a provider that should not see
# the request.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Tailgate::Gateway;

my $t = Tailgate::Gateway->new->skip_unless_built;

my $policy = Tailgate::Gateway::default_policy();
$policy->{providers}{gone} = {
    upstream => 'tg_gone', zone => 'local', endpoints => ['chat'] };
$policy->{routes}{'gone-model'} = {
    steps => [{ provider => 'gone', model => 'm' }] };

# tg_gone points at a port nobody listens on
my $key = $t->start_gateway(policy => $policy, mocks => [qw(local ext)],
    http => "upstream tg_gone { server 127.0.0.1:@{[ $t->port('gone') ]}; }");
my $local = $t->mock('local');

sub post {
    my ($path, $body, %headers) = @_;

    return $t->http('POST', $path,
        headers => { Authorization => "Bearer $key",
                     'Content-Type' => 'application/json', %headers },
        body => $body);
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

    $local->set(mode => 'status', status => 429, retry_after => 7);
    $res = post('/v1/chat/completions', '{"model":"qwen"}');
    is($res->{status}, 429, 'status 429');
    is($res->{headers}{'retry-after'}, 7, 'Retry-After passes');
    is($t->error($res)->{code}, 'mock_failure', "the provider's error code");

    $local->set(mode => 'status', status => 400);
    is(post('/v1/chat/completions', '{"model":"qwen"}')->{status}, 400, 'a 400 too');

    $local->set(mode => 'ok');
};

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

$t->done_testing;
