#!/usr/bin/perl

# Self-tests of the harness (t/lib/Tailgate/Test.pm), the mock providers
# (t/lib/mock_provider.pl) and the fake policyd (t/lib/fake_policyd.pl),
# using nginx without the module.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Digest::SHA qw(sha256_hex);
use IO::Socket::INET;
use Time::HiRes qw(time sleep);

use Tailgate::Test;
use Tailgate::Proto;

my $t = Tailgate::Test->new;

plan skip_all => "no nginx at " . $t->nginx_binary unless -x $t->nginx_binary;

my $key = $t->new_key;
my $a = $t->mock_provider('a');
my $b = $t->mock_provider('b', mode => 'status', status => 429);

my $PROXY = <<'EOF';
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_buffering off;
EOF

my $CONF = <<"EOF";
    upstream mock_a {
        server %%MOCK:a%%;
        keepalive 4;
    }

    server {
        listen 127.0.0.1:%%PORT%%;

        location / {
            proxy_pass http://mock_a;
$PROXY
        }

        location /short/ {
            proxy_pass http://mock_a/;
            proxy_read_timeout 1s;
$PROXY
        }

        location /b/ {
            proxy_pass http://%%MOCK:b%%/;
$PROXY
        }

        location /nowhere/ {
            proxy_pass http://127.0.0.1:%%PORT:unused%%/;
        }
    }
EOF


subtest 'ports, keys, placeholders, policy' => sub {
    my $p1 = $t->port('x');
    my $p2 = $t->port('y');
    is($t->port('x'), $p1, 'port memoized by name');
    isnt($p1, $p2, 'distinct names, distinct ports');
    ok($p1 > 1024 && $p1 < 65536, "port $p1 in range");
    is($a->port, $t->port('mock:a'), 'mock port is port(mock:NAME)');

    my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $p1,
                                  Listen => 1, ReuseAddr => 1);
    ok($s, 'allocated port is bindable');
    close $s if $s;

    like($key, qr/^tg-test-[0-9a-f]{32}$/, 'new_key format');
    isnt($t->new_key, $key, 'new_key is random');

    my $k2 = $t->new_key;
    my $path = $t->write_keys(alice => $key, bob => $k2);
    is($path, $t->dir . '/keys', 'keys path');

    my @lines = split /\n/, $t->read_file('keys');
    like($lines[0], qr/^#/, 'keys file starts with a comment');
    my @data = grep { !/^#/ } @lines;
    is_deeply(\@data, [ sha256_hex($key) . ' alice', sha256_hex($k2) . ' bob' ],
              'keys lines: sha256 hex of key, client id');
    unlike($t->read_file('keys'), qr/\Q$key\E/, 'plaintext key not stored');

    my $conf = $t->nginx_conf('x %%DIR%% %%ROOT%% %%PORT%% %%PORT:y%% '
                              . '%%MOCK:a%% %%POLICYD_SOCK%% %%KEYS%%');
    my $dir = $t->dir;
    my $root = $t->root;
    like($conf, qr/x \Q$dir\E \Q$root\E ${\ $t->port('nginx')} $p2 127\.0\.0\.1:${\ $a->port} \Q$dir\E\/policyd\.sock \Q$dir\E\/keys/,
         'placeholders substituted');
    like($conf, qr/^load_module \S+ngx_tailgate_module\.so;/m, 'load_module');
    unlike($t->nginx_conf('', no_module => 1), qr/load_module/, 'no_module');
    like($conf, qr/^error_log \Q$dir\E\/error\.log (?:info|debug);/m, 'error_log');

    ok(!eval { $t->nginx_conf('%%NOPE%%'); 1 }, 'unknown placeholder dies');
    like($@, qr/unknown placeholder %%NOPE%%/, '... with its name');
    ok(!eval { $t->nginx_conf('%%MOCK:zz%%'); 1 }, 'unknown mock dies');

    ok(-f "$root/t/lib/Tailgate/Test.pm", 'root detected from module path');

    my $pp = $t->write_policy({ providers => { a => { zone => 'local' } } });
    is(JSON::PP->new->decode($t->read_file($pp))->{providers}{a}{zone},
       'local', 'write_policy writes JSON');
};


subtest 'nginx start failure' => sub {
    my $t2 = Tailgate::Test->new;
    $t2->allow_log(qr/unknown directive "bogus_directive"/);

    my $t0 = time;
    ok(!eval {
        $t2->start_nginx("bogus_directive on;\nserver { listen 127.0.0.1:%%PORT%%; }",
                         no_module => 1, timeout => 5);
        1;
    }, 'bad config: start_nginx dies');
    like($@, qr/nginx did not start.*unknown directive "bogus_directive"/s,
         '... showing error.log');
    ok(time - $t0 < 5, '... at once');
    ok(!$t2->running('nginx'), 'not running');
    is_deeply([ $t2->log_problems ], [], 'allowed line not reported');
    $t2->finish;
    ok(!-d $t2->dir, 'finish removes the dir');
};


$t->start_nginx($CONF, no_module => 1);

my $base = { model => 'gpt-x', messages => [ { role => 'user', content => 'hi' } ] };


subtest 'chat completion and recording' => sub {
    $a->clear;

    my $r = $t->post_json('/v1/chat/completions', $key, $base,
                          headers => { 'X-Test' => 'one' });
    is($r->{status}, 200, 'status');
    is($r->{headers}{'x-mock-provider'}, 'a', 'X-Mock-Provider');
    my $j = $t->json($r);
    is($j->{object}, 'chat.completion', 'object');
    is($j->{model}, 'gpt-x', 'model echoed');
    is($j->{choices}[0]{message}{content}, 'Hello from a', 'content');
    is($j->{choices}[0]{finish_reason}, 'stop', 'finish_reason');
    is_deeply($j->{usage}, { prompt_tokens => 7, completion_tokens => 3,
                             total_tokens => 10 }, 'usage');
    like($r->{body}, qr/^\{"id":"chatcmpl-mock","object":"chat.completion"/,
         'keys in API order');

    my $reqs = $a->requests;
    is(scalar @$reqs, 1, 'one request recorded');
    my $q = $reqs->[0];
    is($q->{method}, 'POST', 'method');
    is($q->{path}, '/v1/chat/completions', 'path');
    is($q->{headers}{authorization}, "Bearer $key", 'authorization header');
    is($q->{headers}{'x-test'}, 'one', 'custom header');
    is($q->{json}{model}, 'gpt-x', 'body json');
    is($q->{body}, JSON::PP->new->canonical->encode($base), 'raw body bytes');
    is($q->{concurrent}, 1, 'concurrent');
    is($q->{refused}, 0, 'not refused');
    ok($q->{ts} > time - 30, 'ts');

    $t->post_json('/v1/chat/completions', $key, $base) for 1 .. 2;
    $reqs = $a->requests;
    is(scalar @$reqs, 3, 'three recorded');
    is($reqs->[1]{conn}, $reqs->[2]{conn}, 'upstream keep-alive reused');

    $a->clear;
    is(scalar @{ $a->requests }, 0, 'clear');
};


subtest 'endpoint shapes' => sub {
    my $r = $t->post_json('/v1/embeddings', $key, { model => 'emb', input => 'x' });
    is($r->{status}, 200, 'embeddings');
    my $j = $t->json($r);
    is($j->{object}, 'list', 'embeddings object');
    is_deeply($j->{data}[0]{embedding}, [ 0.1, 0.2, 0.3 ], 'embedding');
    is($j->{model}, 'emb', 'embeddings model');
    is($j->{usage}{total_tokens}, 3, 'embeddings usage');

    $r = $t->post_json('/v1/audio/speech', $key,
                       { model => 'tts', input => 'x', voice => 'alloy' });
    is($r->{status}, 200, 'speech');
    is($r->{headers}{'content-type'}, 'audio/mpeg', 'speech content type');
    is(length $r->{body}, 4096, 'speech length');
    ok($r->{body} eq join('', map { chr } 0 .. 255) x 16, 'speech bytes');

    my $bd = 'tgBoundary' . int rand 1e6;
    my $file = join('', map { chr } 0 .. 255) . "\r\n--not-$bd\r\n";
    my $mp = "--$bd\r\n"
        . qq{Content-Disposition: form-data; name="file"; filename="a.mp3"\r\n}
        . "Content-Type: audio/mpeg\r\n\r\n$file\r\n"
        . "--$bd\r\n"
        . qq{Content-Disposition: form-data; name="model"\r\n\r\n}
        . "whisper-1\r\n--$bd--\r\n";
    $r = $t->http('POST', '/v1/audio/transcriptions',
                  headers => { 'Content-Type' => "multipart/form-data; boundary=$bd",
                               Authorization => "Bearer $key" },
                  body => $mp);
    is($r->{status}, 200, 'transcriptions');
    is_deeply($t->json($r), { text => 'mock transcription by a',
                              model => 'whisper-1' }, 'multipart model');
    ok($a->requests->[-1]{body} eq $mp, 'multipart body recorded intact');

    $r = $t->http('POST', '/v1/audio/transcriptions',
                  headers => { 'Content-Type' => 'application/json' }, body => '{}');
    is($r->{status}, 400, 'transcriptions need multipart');

    $r = $t->post_json('/v1/responses', $key, { model => 'r1', input => 'hi' });
    $j = $t->json($r);
    is($j->{object}, 'response', 'responses object');
    is($j->{model}, 'r1', 'responses model');
    is($j->{output}[0]{content}[0]{text}, 'Hello from a', 'responses text');
    is($j->{usage}{total_tokens}, 10, 'responses usage');

    $r = $t->post_json('/v1/responses', $key,
                       { model => 'r1', input => 'hi', stream => JSON::PP::true },
                       stream => 1);
    is($r->{status}, 200, 'responses stream');
    my @ev = $r->{body} =~ /^event: (\S+)$/mg;
    is_deeply(\@ev, [ qw(response.created response.in_progress
                         response.output_item.added response.content_part.added),
                      ('response.output_text.delta') x 3,
                      qw(response.output_text.done response.content_part.done
                         response.output_item.done response.completed) ],
              'responses stream events: the whole sequence');
    my @seq = $r->{body} =~ /"sequence_number":(\d+)/g;
    is_deeply(\@seq, [ 0 .. 10 ], 'numbered from 0');
    like($r->{body}, qr/"usage":\{"input_tokens":7/, 'usage in completed');

    $r = $t->http('GET', '/v1/models');
    $j = $t->json($r);
    is($j->{object}, 'list', 'models');
    is($j->{data}[0]{id}, 'mock-model', 'model id');

    $r = $t->http('GET', '/health');
    is_deeply($t->json($r), { status => 'ok' }, 'health');

    $r = $t->http('GET', '/v1/nothing');
    is($r->{status}, 404, 'unknown path 404');
    is($t->json($r)->{error}{code}, 'not_found', 'OpenAI-shaped 404');

    $r = $t->post_json('/v1/chat/completions', $key, '{"model": broken');
    is($r->{status}, 400, 'invalid JSON body 400');
};


subtest 'streaming' => sub {
    $a->set(stream_chunks => 4, stream_interval_ms => 300);

    my $r = $t->post_json('/v1/chat/completions', $key,
        { %$base, stream => JSON::PP::true,
          stream_options => { include_usage => JSON::PP::true } },
        stream => 1);

    is($r->{status}, 200, 'status');
    ok(!$r->{error}, 'complete') or diag $r->{error};
    is($r->{headers}{'content-type'}, 'text/event-stream', 'content type');
    is($r->{headers}{'transfer-encoding'}, 'chunked', 'chunked');

    my @data = $r->{body} =~ /^data: (.*)$/mg;
    is(scalar @data, 6, '4 tokens, usage, DONE');
    is($data[-1], '[DONE]', 'ends with [DONE]');
    my @tok = map { JSON::PP->new->decode($_)->{choices}[0]{delta}{content} }
              @data[0 .. 3];
    is_deeply(\@tok, [ 'tok1 ', 'tok2 ', 'tok3 ', 'tok4 ' ], 'tokens');
    is(JSON::PP->new->decode($data[4])->{usage}{total_tokens}, 10, 'usage chunk');

    ok(@{ $r->{chunks} } >= 4, scalar(@{ $r->{chunks} }) . ' reads');
    ok($r->{first_byte_s} < $r->{total_s} - 0.5,
       sprintf('first byte at %.2fs, last at %.2fs', $r->{first_byte_s},
               $r->{total_s}));
    like($r->{chunks}[0][1], qr/tok1/, 'first chunk has the first token');
    is(join('', map { $_->[1] } @{ $r->{chunks} }), $r->{body}, 'chunks = body');

    $a->set;
};


subtest 'failure modes' => sub {
    $a->set(mode => 'status');
    my $r = $t->post_json('/v1/chat/completions', $key, $base);
    is($r->{status}, 500, 'status mode 500 by default');
    is_deeply($t->json($r), { error => { message => 'mock a failure',
        type => 'server_error', param => undef, code => 'mock_failure' } },
        'OpenAI error body');

    $r = $t->post_json('/b/v1/chat/completions', $key, $base);
    is($r->{status}, 429, 'mock b 429');
    is($r->{headers}{'retry-after'}, '1', 'Retry-After on 429');
    is($r->{headers}{'x-mock-provider'}, 'b', 'from b');

    $a->set(mode => 'status', status => 503, match_path => 'chat');
    is($t->post_json('/v1/chat/completions', $key, $base)->{status}, 503,
       'match_path applies mode');
    is($t->post_json('/v1/embeddings', $key, $base)->{status}, 200,
       'match_path skips others');

    $a->set;
    $r = $t->post_json('/v1/chat/completions', $key, $base,
        headers => { 'X-Mock-Control' => '{"mode":"status","status":502}' });
    is($r->{status}, 502, 'X-Mock-Control header overrides');

    $a->set(mode => 'hang', hang_s => 20);
    my $t0 = time;
    $r = $t->post_json('/short/v1/chat/completions', $key, $base);
    is($r->{status}, 504, 'hang: 504 from proxy_read_timeout');
    ok(time - $t0 < 5, 'hang: no longer than the proxy timeout');
    ok($t->wait_for(sub { $a->in_progress == 0 }, timeout => 3),
       'hang: mock notices nginx closed');

    $a->set(mode => 'hang', hang_s => 10);
    $t0 = time;
    $r = $t->http('GET', '/health', port => $a->port, timeout => 1);
    is($r->{status}, 0, 'client timeout: status 0');
    is($r->{error}, 'timeout', 'client timeout: error');
    ok(time - $t0 < 2, 'client timeout bounded');

    $a->set(mode => 'reset');
    $r = $t->post_json('/v1/chat/completions', $key, $base);
    is($r->{status}, 502, 'reset: 502');
    like($t->error_log, qr/reset by peer/, 'reset: nginx saw a reset');
    $r = $t->http('GET', '/health', port => $a->port);
    like($r->{error}, qr/^(?:reset|closed)$/, "reset direct: $r->{error}");

    $a->set(mode => 'drop', drop_after => 2, stream_interval_ms => 100);
    $r = $t->post_json('/v1/chat/completions', $key,
                       { %$base, stream => JSON::PP::true }, stream => 1);
    is($r->{status}, 200, 'drop: headers went out');
    is($r->{error}, 'truncated', 'drop: stream truncated');
    like($r->{body}, qr/tok2/, 'drop: two events arrived');
    unlike($r->{body}, qr/tok3|DONE/, 'drop: nothing after');

    $r = $t->post_json('/v1/chat/completions', $key, $base);
    is($r->{error}, 'truncated', 'drop non-stream: body cut');

    $a->set(delay_ms => 600);
    $t0 = time;
    $r = $t->post_json('/v1/chat/completions', $key, $base);
    is($r->{status}, 200, 'delay: ok');
    ok(time - $t0 >= 0.55, 'delay: waited');

    $a->set;
    $a->kill;
    ok(!$a->running, 'kill: mock gone');
    is($t->post_json('/v1/chat/completions', $key, $base)->{status}, 502,
       'killed mock: 502');
    $a->start;
    is($t->post_json('/v1/chat/completions', $key, $base)->{status}, 200,
       'restarted on the same port');

    is($t->http('GET', '/nowhere/')->{status}, 502, 'unused port refuses');
};


subtest 'concurrency' => sub {
    $a->clear;
    $a->set(delay_ms => 800);

    my @st = $t->parallel(3, sub {
        $t->post_json('/v1/chat/completions', $key, $base)->{status};
    });
    is_deeply(\@st, [ 200, 200, 200 ], 'three at once');
    is($a->max_concurrent_seen, 3, 'max_concurrent_seen 3');

    $a->clear;
    $a->set(delay_ms => 800, max_concurrency => 1);

    my @res = $t->parallel(3, sub {
        my $r = $t->post_json('/v1/chat/completions', $key, $base);
        return { status => $r->{status}, code => eval { $t->json($r)->{error}{code} } };
    });
    my @ok = grep { $_->{status} == 200 } @res;
    my @busy = grep { $_->{status} == 503 } @res;
    is(scalar @ok, 1, 'one served');
    is(scalar @busy, 2, 'two refused');
    is($busy[0]{code}, 'mock_busy', 'refusal body');
    my $reqs = $a->requests;
    is(scalar(grep { $_->{refused} } @$reqs), 2, 'refused recorded');
    ok($t->wait_for(sub { $a->in_progress == 0 }), 'none left in progress');

    $a->set;

    my @v = $t->parallel(4, sub { my $i = shift; return { i => $i, sq => $i * $i } });
    is_deeply([ map { $_->{sq} } @v ], [ 0, 1, 4, 9 ], 'parallel keeps order');
    ok(!eval { $t->parallel(2, sub { die "boom\n" }); 1 }, 'child death dies');
    like($@, qr/boom/, '... with its message');
};


subtest 'http client' => sub {
    my $r = $t->http('POST', '/v1/embeddings', port => $a->port, chunked => 1,
                     body => [ '{"model":', '"chunky"}' ]);
    is($t->json($r)->{model}, 'chunky', 'chunked request body');
    is($a->requests->[-1]{body}, '{"model":"chunky"}', 'recorded decoded');

    $r = $t->http('POST', '/v1/embeddings', body => [ '{"model"', ':"slow"}' ],
                  part_delay_ms => 200);
    is($t->json($r)->{model}, 'slow', 'body sent in parts');

    $r = $t->http('GET', '/health', raw => "GET /health HTTP/1.0\r\n\r\n");
    is($r->{status}, 200, 'raw request');

    $r = $t->http('HEAD', '/health');
    is($r->{status}, 200, 'HEAD');
    is($r->{body}, '', 'HEAD has no body');

    ok(!eval { $t->json({ status => 200, body => 'not json' }); 1 },
       'json dies on bad body');
    like($@, qr/not json/, '... showing it');

    $r = $t->http('GET', '/', port => $t->port('closed'), timeout => 2);
    like($r->{error}, qr/^connect/, 'connect error');

    my $c = $t->raw_connect;
    my $get = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
    is($c->write_bytes($get x 2), 2 * length $get, 'raw_connect: two requests written');
    my ($s1) = $c->read_response(5);
    my ($s2, $r2) = $c->read_response(5);
    is_deeply([$s1, $s2], [200, 200], 'read_response: one response after the other');
    like($r2, qr{^HTTP/1\.1 200.*\r\n\r\n\{}s, '... each whole');
    ok(!eval { $c->read_response(0.3); 1 }, 'read_response: dies when none comes');
    $c->close;
};


subtest 'logs and reload' => sub {
    my @w = $t->nginx_worker_pids;
    is(scalar @w, 1, 'one worker');

    $t->reload_nginx($CONF, workers => 2);
    my @w2 = $t->nginx_worker_pids;
    is(scalar @w2, 2, 'two workers after reload');
    ok(!grep({ $_ == $w[0] } @w2), 'old worker gone');
    is($t->post_json('/v1/embeddings', $key, $base)->{status}, 200,
       'serves after reload');

    SKIP: {
        skip 'nginx debug logs request headers', 1 if $t->debugging;
        ok($t->log_has_no($key), 'key in no log');
    }
    ok(!$t->log_has_no('/v1/embeddings'), 'log_has_no sees access.log');

    is_deeply([ $t->log_problems ], [], 'no problems so far');

    open my $fh, '>>', $t->dir . '/error.log' or die;
    print $fh "2024/01/01 00:00:00 [alert] 1#1: harness self-test alert\n";
    close $fh;
    my @p = $t->log_problems;
    is(scalar @p, 1, 'alert found');
    like($p[0], qr/^error\.log: .*self-test alert/, 'with its file');
    $t->allow_log(qr/harness self-test alert/);
    is_deeply([ $t->log_problems ], [], 'allow_log whitelists');

    ok($t->wait_log('access', qr/embeddings/), 'wait_log');
    ok(!$t->wait_log('error', qr/never-there/, timeout => 0.2), 'wait_log times out');
    my $mark = $t->log_size('access');
    ok(!$t->wait_log('access', qr/embeddings/, from => $mark, timeout => 0.2),
       'wait_log from: only what came after');
};


# the fake policyd is read with Tailgate::Proto (another engineer's), so that
# two independent implementations of the protocol check each other

sub pread {
    my ($s, $timeout) = @_;
    my $f = tg_read_frame($s, $timeout);
    return { %$f, t => time } if $f;
    return { error => $Tailgate::Proto::ERROR, t => time };
}

sub pconnect { tg_connect($t->policyd_sock) }

sub decide {
    my ($id, $model) = @_;
    return tg_decide($id, $model,
        [ TG_F_CLIENT, 'str', 'alice' ], [ TG_F_TAG, 'str', 'private' ],
        [ TG_F_TAG, 'str', 'region:eu' ], [ TG_F_STREAM, 'u8', 1 ],
        [ TG_F_ATTEMPT, 'u32', 1 ]);
}

sub hello {
    return tg_frame(TG_MSG_HELLO, 0, [ TG_F_MAX_FRAME, 'u32', 65536 ],
                    [ TG_F_SOFTWARE, 'str', 'harness' ]);
}


subtest 'fake policyd' => sub {
    $t->start_fake_policyd({
        decision => { provider => 'a', upstream => 'mock_a', scheme => 'http',
                      host => 'a.test', path => '/v1/chat/completions',
                      zone => 'local', authorization => 'Bearer sk-fake',
                      reason => 'test' },
        delay_ms => { slow => 1000 },
    });
    ok($t->policyd_pid, 'started');

    my $s = pconnect();
    my $t0 = time;
    tg_send($s, hello() . decide(7, 'slow') . decide(8, 'fast'));

    my $h = pread($s, 2);
    is($h->{type}, TG_MSG_HELLO_OK, 'HELLO_OK');
    is(tg_field($h, TG_F_MAX_FRAME), 65536, 'max_frame announced');

    my $d1 = pread($s, 3);
    is($d1->{type}, TG_MSG_DECISION, 'DECISION');
    is($d1->{id}, 8, 'the fast one first');
    ok($d1->{t} - $t0 < 0.5, 'fast answer not delayed by the slow one');
    is(tg_field($d1, TG_F_STATUS), 200, 'status 200');
    is(tg_field($d1, TG_F_PROVIDER), 'a', 'provider');
    is(tg_field($d1, TG_F_ROUTE), 'fast', 'route echoes the model');
    is(tg_field($d1, TG_F_PROVIDER_MODEL), 'fast', 'provider_model echoes the model');
    is(tg_field($d1, TG_F_AUTHORIZATION), 'Bearer sk-fake', 'authorization');

    my $d2 = pread($s, 3);
    is($d2->{id}, 7, 'then the slow one');
    ok($d2->{t} - $t0 >= 0.9, sprintf('after its delay (%.2fs)', $d2->{t} - $t0));

    tg_send($s, tg_frame(TG_MSG_MODELS, 9, [ TG_F_CLIENT, 'str', 'alice' ]));
    my $ml = pread($s, 2);
    is($ml->{type}, TG_MSG_MODEL_LIST, 'MODEL_LIST');
    is(tg_field($ml, TG_F_BODY), '{"object":"list","data":[]}', 'models body');

    tg_send($s, tg_frame(TG_MSG_REPORT, 10, [ TG_F_OUTCOME, 'str', 'ok' ],
                         [ TG_F_LEASE, 'u32', 3 ]));
    tg_send($s, tg_frame(TG_MSG_DECIDE, 11, [ TG_F_ENDPOINT, 'str', 'chat' ]));
    my $err = pread($s, 2);
    is($err->{type}, TG_MSG_ERROR, 'DECIDE without model: ERROR');
    is($err->{id}, 11, '... for that id');
    is(tg_field($err, TG_F_STATUS), TG_ERR_MISSING_FIELD, 'missing_field');

    my $frames = $t->fake_policyd_frames;
    is_deeply([ map { $_->{type_name} } @$frames ],
              [ qw(HELLO DECIDE DECIDE MODELS REPORT DECIDE) ], 'frames logged');
    is_deeply([ map { $_->{id} } @{ $t->fake_frames('DECIDE', model => 'slow') } ],
              [7], 'fake_frames: by type and field');
    is_deeply([ map { $_->{id} } @{ $t->fake_frames('DECIDE', since => 2) } ],
              [8, 11], 'fake_frames: since');
    is($frames->[1]{model}, 'slow', 'model logged');
    is_deeply($frames->[1]{fields}{tag}, [ 'private', 'region:eu' ],
              'repeatable fields logged');
    is($frames->[1]{fields}{stream}, 1, 'u8 field decoded');
    is($frames->[4]{fields}{outcome}, 'ok', 'REPORT logged');

    # misbehaviours

    my %cases = (
        garbage   => sub { ($_[0]{error} // '') =~ /^malformed/
                           || ($_[0]{version} // 0) == 0xEE },
        oversized => sub { ($_[0]{error} // '') =~ /length 4194305\b/ },
        close     => sub { ($_[0]{error} // '') eq 'eof' },
        silent    => sub { ($_[0]{error} // '') eq 'timeout' },
        bad_field => sub {
            $_[0]{type} == TG_MSG_DECISION
            && length(tg_field($_[0], TG_F_STATUS)) == 3
        },
    );

    for my $m (sort keys %cases) {
        $t->set_fake_policyd({ misbehave => $m });
        my $c = pconnect();
        tg_send($c, hello() . decide(1, 'x'));
        is(pread($c, 2)->{type}, TG_MSG_HELLO_OK, "$m: HELLO_OK still normal");
        my $r = pread($c, 0.5);
        ok($cases{$m}->($r), "$m: misbehaves") or diag explain $r;
        close $c;
    }

    $t->set_fake_policyd({ misbehave => { bad => 'close' } });
    my $c = pconnect();
    tg_send($c, hello() . decide(1, 'good'));
    pread($c, 2);
    is(pread($c, 2)->{type}, TG_MSG_DECISION, 'per-model misbehave: others fine');

    tg_send($c, pack('N', 5 * 1024 * 1024) . 'xxxxxx');
    my $tl = pread($c, 2);
    is($tl->{type}, TG_MSG_ERROR, 'oversized frame from the module: ERROR');
    is(tg_field($tl, TG_F_STATUS), TG_ERR_TOO_LARGE, 'too_large');
    is(pread($c, 2)->{error}, 'eof', 'then closed');

    my $pid = $t->policyd_pid;
    $t->kill_policyd;
    ok(!kill(0, $pid), 'kill_policyd');
    $t->start_fake_policyd({});
    ok(pconnect(), 'restarts over a stale socket');
    $t->stop_policyd;
};


# whole test files in a subprocess: teardown whatever happens

sub run_script {
    my ($name, $code, %opt) = @_;

    my $file = $t->write_file("$name.pl", <<"EOF");
use strict; use warnings;
use lib '${\ $t->root }/t/lib';
use Test::More;
use Tailgate::Test;
$code
EOF

    $t->spawn($name, [ $^X, $file ],
              env => { TAILGATE_KEEP => undef, TAILGATE_DEBUG => undef,
                       %{ $opt{env} // {} } });
    return $name;
}

sub script_done {
    my ($name, $timeout) = @_;
    my $done = $t->wait_for(sub { !$t->running($name) }, timeout => $timeout);
    $t->stop_proc($name) unless $done;
    return ($t->exit_status($name), $t->read_file("$name.log"));
}

sub pids_of {
    my ($name) = @_;
    return split ' ', $t->read_file("$name.pids");
}

my $STARTS = <<'EOF';
my $t = Tailgate::Test->new;
my $m = $t->mock_provider('m');
$t->start_nginx("server { listen 127.0.0.1:%%PORT%%; location / { proxy_pass http://%%MOCK:m%%; } }", no_module => 1);
ok($t->http('GET', '/health')->{status} == 200, 'up');
EOF

subtest 'teardown' => sub {
    my $out = $t->dir . '/x';

    # a normal end, with an alert in error.log
    run_script('alert', $STARTS . <<"EOF");
open my \$fh, '>>', \$t->dir . '/error.log';
print \$fh "2024/01/01 00:00:00 [alert] 1#1: planted\\n";
close \$fh;
open my \$o, '>', '$out.alert.pids'; print \$o join(' ', \$t->nginx_pid, \$m->pid, \$t->nginx_worker_pids); close \$o;
done_testing;
EOF
    my ($st, $log) = script_done('alert', 20);
    ok($st, 'alert in error.log fails the file');
    like($log, qr/^not ok 2 - error\.log is clean/m, 'as a failed test');
    like($log, qr/planted/, 'showing the line');
    my @pids = pids_of('x.alert');
    is(scalar @pids, 3, 'master, mock, worker');
    ok(!grep({ kill 0, $_ } @pids), 'all stopped');
    like($log, qr/^ok 1 - up/m, 'ran');

    # a die: END still stops everything
    run_script('die', $STARTS . <<"EOF");
open my \$o, '>', '$out.die.pids'; print \$o join(' ', \$t->nginx_pid, \$m->pid); close \$o;
die "planned death\\n";
EOF
    ($st, $log) = script_done('die', 20);
    ok($st, 'die: failing exit');
    @pids = pids_of('x.die');
    is(scalar @pids, 2, 'die: pids');
    ok(!grep({ kill 0, $_ } @pids), 'die: all stopped');

    # SIGKILL of the test: the watchdog stops everything (its dir written
    # before the pids the wait below looks for)
    run_script('killed', $STARTS . <<"EOF");
my \$d = \$t->dir;
open my \$o, '>', '$out.killed.dir'; print \$o \$d; close \$o;
open \$o, '>', '$out.killed.pids'; print \$o join(' ', \$t->nginx_pid, \$m->pid, \$t->nginx_worker_pids); close \$o;
sleep 60;
EOF
    ok($t->wait_for(sub { $t->read_file('x.killed.pids') =~ /\d+ \d+ \d+/ },
                    timeout => 10), 'killed: started');
    my $d = $t->read_file('x.killed.dir');
    ok(-d $d, 'killed: its dir exists');
    $t->stop_proc('killed', signal => 'KILL');
    @pids = pids_of('x.killed');
    ok($t->wait_for(sub { !grep { kill 0, $_ } @pids }, timeout => 8),
       'killed: watchdog stopped nginx and the mock');
    ok($t->wait_for(sub { !-d $d }, timeout => 5), 'killed: dir removed');

    # SIGTERM: the handler stops everything
    run_script('termed', $STARTS . <<"EOF");
open my \$o, '>', '$out.termed.pids'; print \$o join(' ', \$t->nginx_pid, \$m->pid); close \$o;
sleep 60;
EOF
    ok($t->wait_for(sub { $t->read_file('x.termed.pids') =~ /\d+ \d+/ },
                    timeout => 10), 'termed: started');
    $t->signal('termed', 'TERM');
    ($st, $log) = script_done('termed', 15);
    @pids = pids_of('x.termed');
    ok(!grep({ kill 0, $_ } @pids), 'termed: all stopped');

    # skip_unless_built
    run_script('skip', "Tailgate::Test->new->skip_unless_built;\nok(1);\ndone_testing;\n",
               env => { TAILGATE_MODULE => '/nonexistent/mod.so' });
    ($st, $log) = script_done('skip', 10);
    is($st, 0, 'skip: exit 0');
    like($log, qr/^1\.\.0 # SKIP not built: module \(\/nonexistent\/mod\.so\)/m,
         'skip: skip_all with the reason');

    # TAILGATE_KEEP
    run_script('keep', "my \$t = Tailgate::Test->new; ok(1); done_testing;\n",
               env => { TAILGATE_KEEP => 1 });
    ($st, $log) = script_done('keep', 10);
    my ($kept) = $log =~ /test dir (\S+)/;
    ok($kept && -d $kept, 'keep: dir kept and printed');
    File::Path::remove_tree($kept) if $kept && $kept =~ m{/tailgate-};
};


$t->done_testing;
