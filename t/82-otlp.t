#!/usr/bin/perl
#
# OpenTelemetry traces: policyd exports a span per attempt and one per
# request over OTLP/HTTP (JSON) to a mock collector (t/lib/mock_otlp.pl).
# What the collector gets: the path (/v1/traces appended), the Basic auth
# of OTLP_API_KEY (a Grafana Cloud glc_ token's instance id), OTLP_HEADERS,
# the resource (service name, resource attributes), the spans' GenAI
# attributes; the W3C traceparent a client sent continued and passed to
# the provider with the attempt's own span, odd traceparents refused, an
# unsampled trace not exported; each fallback attempt a child span of the
# request's; a collector that refuses, hangs or is away costs only counted
# drops, never a request; no OTLP secret (key, glc_ token, header, the
# endpoint's query) in any log at debug level; without OTLP_ENDPOINT the
# client's traceparent passes untouched.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use JSON::PP ();
use MIME::Base64 qw(encode_base64 decode_base64);
use Test::More;
use Tailgate::Gateway;
use Tailgate::OTLP;

my $t = Tailgate::Gateway->new->skip_unless_built;
my $JSON = JSON::PP->new->canonical->utf8;

my $otlp = Tailgate::OTLP->start($t);

my $admin = $t->dir . '/admin.sock';
my $lenient = { down_after => 100 };

my $policy = {
    providers => {
        local => { upstream => 'tg_local', zone => 'local', host => 'llm.lan',
                   endpoints => [qw(chat embeddings)], health => $lenient },
        lan   => { upstream => 'tg_lan', zone => 'private',
                   endpoints => ['chat'], health => $lenient },
        ext   => { upstream => 'tg_ext', zone => 'external',
                   host => 'api.ext.test', api_key => '${EXT_API_KEY}',
                   endpoints => ['chat'], health => $lenient },
    },
    routes => {
        qwen  => { steps => [{ provider => 'local', model => 'qwen2.5-7b' }] },
        embed => { steps => [{ provider => 'local', model => 'bge-m3' }] },
        chain => { steps => [{ provider => 'local', model => 'm-local' },
                             { provider => 'lan',   model => 'm-lan' },
                             { provider => 'ext',   model => 'm-ext' }],
                   fallback => { on => 'errors' } },
    },
};

# a resource attribute with an escaped comma and '=', odd bytes in a value
my %env = (
    OTLP_ENDPOINT             => $otlp->addr . '/otlp/',
    OTLP_API_KEY              => 'plain-key-1',
    OTEL_SERVICE_NAME         => 'tailgate-test',
    OTEL_RESOURCE_ATTRIBUTES  => ' deployment.environment = test ,'
                                 . 'odd=a%2Cb%3Dc%22%5C%01 ,, ',
    OTLP_HEADERS              => 'X-Scope-OrgID=tenant-7,X-Empty=',
    OTEL_BSP_SCHEDULE_DELAY   => 100,
);

my $locations = $t->conf_text('locations.conf');
$locations =~ s/proxy_read_timeout \d+s/proxy_read_timeout 1s/g;
$locations =~ s/proxy_connect_timeout \d+s/proxy_connect_timeout 1s/g;

my $key = $t->start_gateway(policy => $policy, policyd_env => \%env,
                            private => [qw(tg_local tg_lan)],
                            locations => $locations,
                            policyd_args => ['-a', $admin],
                            http => "include tailgate/log.conf;\n"
                                    . "access_log %%DIR%%/json.log tailgate_json;");

my %mock = map { $_ => $t->mock($_) } qw(local lan ext);

my $CLIENT_TRACE = '0af7651916cd43dd8448eb211c80319c';
my $CLIENT_SPAN  = 'b7ad6b7169203331';

sub traced {
    my ($trace) = @_;
    return sub { [ grep { $_->{traceId} eq $trace } @{ $_[0] } ] };
}

# the spans of one trace, once $n of them are there
sub trace_spans {
    my ($trace, $n) = @_;
    my $spans = $otlp->wait_spans(sub {
        @{ traced($trace)->($_[0]) } >= $n
    });
    return $spans ? traced($trace)->($spans) : [];
}

sub status {
    my (undef, $out) = $t->policyd_cmd('status', '-a', $admin, { stderr => 0 });
    my $doc = eval { $JSON->decode($out) } // {};
    return $doc->{policyd}{traces} // {};
}

sub last_traceparent {
    my ($name) = @_;
    my $r = $mock{$name}->requests->[-1] // {};
    return $r->{headers}{traceparent};
}


subtest 'the collector gets POST /v1/traces with auth, headers, resource' => sub {
    my $res = $t->chat('qwen');
    is($res->{status}, 200, 'a request answers');

    my $posts;
    ok($t->wait_for(sub { @{ $posts = $otlp->posts } }, timeout => 10),
       'the collector got a POST');
    my $p = $posts->[0];

    is($p->{method}, 'POST', 'POST');
    is($p->{path}, '/otlp/v1/traces', '/v1/traces appended to the path');
    is($p->{headers}{'content-type'}, 'application/json', 'JSON');
    is($p->{headers}{authorization},
       'Basic ' . encode_base64('plain-key-1:', ''),
       'Basic auth "key:" for a plain key');
    is($p->{headers}{'x-scope-orgid'}, 'tenant-7', 'OTLP_HEADERS sent');
    ok(exists $p->{headers}{'x-empty'}, 'an empty header value is sent too');
    ok($p->{json}, 'the body is JSON') or diag($p->{json_error});

    my $rs = $p->{json}{resourceSpans}[0];
    my $res_attr = Tailgate::OTLP::attrs($rs->{resource}{attributes});
    is($res_attr->{'service.name'}, 'tailgate-test', 'OTEL_SERVICE_NAME');
    is($res_attr->{'deployment.environment'}, 'test',
       'a resource attribute, trimmed');
    is($res_attr->{odd}, "a,b=c\"\\\x01", 'percent-escapes decoded');
    is($rs->{scopeSpans}[0]{scope}{name}, 'tailgate.policyd', 'the scope');
    like($rs->{scopeSpans}[0]{schemaUrl}, qr{/schemas/1\.37\.0$},
         'semantic conventions 1.37');
};


subtest 'a client\'s traceparent is continued, the attempt is a child' => sub {
    my $tp = "00-$CLIENT_TRACE-$CLIENT_SPAN-01";
    my $res = $t->chat('qwen', headers => { traceparent => $tp });
    is($res->{status}, 200, 'answered');

    my $sent = last_traceparent('local');
    like($sent // '', qr/^00-$CLIENT_TRACE-([0-9a-f]{16})-01$/,
         'the provider got the same trace, sampled');
    my ($attempt_id) = ($sent // '') =~ /^00-\w+-(\w+)-/;
    isnt($attempt_id, $CLIENT_SPAN, '... with a span of the gateway\'s');

    my $spans = trace_spans($CLIENT_TRACE, 2);
    is(scalar @$spans, 2, 'two spans: the request and its attempt');

    my ($req) = grep { $_->{kind} == 2 } @$spans;
    my ($att) = grep { $_->{kind} == 3 } @$spans;
    ok($req && $att, 'a SERVER and a CLIENT span') or return;

    is($req->{parentSpanId}, $CLIENT_SPAN, 'the request\'s parent: the client\'s');
    ok($req->{spanId} ne $CLIENT_SPAN && $req->{spanId} ne $att->{spanId},
       'three spans of three ids: the client\'s, the request\'s, the attempt\'s');
    is($att->{parentSpanId}, $req->{spanId}, 'the attempt\'s parent: the request');
    is($att->{spanId}, $attempt_id, 'the attempt span is the provider\'s parent');
    is($req->{name}, 'POST /v1/chat/completions', 'the request span\'s name');
    is($att->{name}, 'chat qwen2.5-7b', 'the attempt span\'s name');
    ok($req->{startTimeUnixNano} <= $att->{startTimeUnixNano}
       && $att->{endTimeUnixNano} <= $req->{endTimeUnixNano},
       'the attempt lies within the request');
    like($att->{startTimeUnixNano}, qr/^\d{19}$/, 'times in ns, as strings');
    ok(abs($att->{startTimeUnixNano} / 1e9 - time) < 600,
       'the start time is now');

    my $a = $att->{attr};
    is($a->{'gen_ai.operation.name'}, 'chat', 'gen_ai.operation.name');
    is($a->{'gen_ai.request.model'}, 'qwen2.5-7b', 'gen_ai.request.model');
    is($a->{'gen_ai.response.model'}, 'qwen2.5-7b', 'gen_ai.response.model');
    is($a->{'gen_ai.provider.name'}, 'local', 'gen_ai.provider.name');
    is($a->{'gen_ai.usage.input_tokens'}, 7, 'gen_ai.usage.input_tokens');
    is($a->{'gen_ai.usage.output_tokens'}, 3, 'gen_ai.usage.output_tokens');
    is($a->{'server.address'}, 'llm.lan', 'server.address: the provider host');
    is($a->{'http.response.status_code'}, 200, 'http.response.status_code');
    ok(!exists $a->{'error.type'}, 'no error.type on success');
    is($a->{'tailgate.route'}, 'qwen', 'the route');
    is($a->{'tailgate.attempt'}, 1, 'the attempt');
    is($a->{'tailgate.outcome'}, 'ok', 'the outcome');
    ok(!$att->{status} || !$att->{status}{code}, 'status unset on success');

    is($req->{attr}{'tailgate.attempts'}, 1, 'one attempt');
    is($req->{attr}{'http.response.status_code'}, 200, 'the client\'s status');
    is($req->{attr}{'tailgate.client'}, 'alice', 'the client');
};


subtest 'a trace the gateway starts has $request_id as its id' => sub {
    my $res = $t->chat('embed', body => { input => 'x' });
    my $res2 = $t->call('/v1/embeddings', 'embed', body => { input => 'x' });
    is($res2->{status}, 200, 'an embedding answers');

    my $sent = last_traceparent('local');
    my ($trace) = ($sent // '') =~ /^00-([0-9a-f]{32})-[0-9a-f]{16}-01$/;
    ok($trace, 'the provider got a new trace, sampled') or return;

    my $spans = trace_spans($trace, 2);
    my ($req) = grep { $_->{kind} == 2 } @$spans;
    my ($att) = grep { $_->{kind} == 3 } @$spans;
    ok($req && !exists $req->{parentSpanId}, 'the request span is a root');
    is($att->{attr}{'tailgate.request_id'}, $trace,
       'the trace id is the request id');
    is($att->{attr}{'gen_ai.operation.name'}, 'embeddings',
       'gen_ai.operation.name embeddings');
    is($req->{name}, 'POST /v1/embeddings', 'its path');

    # the access log says it too
    $t->wait_for(sub { $t->read_file('json.log') =~ /\Q$trace\E/ });
    my ($line) = grep { /\Q$trace\E/ } split /\n/, $t->read_file('json.log');
    my $log = eval { JSON::PP->new->latin1->decode($line // '') } // {};
    is($log->{request_id}, $trace, 'the access log\'s request_id');
    like($log->{traceparent} // '', qr/^00-$trace-/,
         '$tailgate_traceparent logged');
};


subtest 'traceparents W3C refuses start a new trace' => sub {
    my $good = "$CLIENT_TRACE-$CLIENT_SPAN";
    my %odd = (
        'upper case'     => '00-' . uc($CLIENT_TRACE) . "-$CLIENT_SPAN-01",
        'version ff'     => "ff-$good-01",
        'zero trace id'  => '00-' . ('0' x 32) . "-$CLIENT_SPAN-01",
        'zero span id'   => "00-$CLIENT_TRACE-" . ('0' x 16) . '-01',
        'too short'      => "00-$good-1",
        'too long'       => "00-$good-01-00",
        'not hex'        => "00-$good-0g",
        'empty'          => '',
        'huge'           => "00-$good-01" . ('x' x 4000),
        'two headers'    => [ "00-$good-01", "00-$good-01" ],
        'control bytes'  => "00-$CLIENT_TRACE\x01-$CLIENT_SPAN-01",
    );

    for my $what (sort keys %odd) {
        my $res = $t->chat('qwen', headers => { traceparent => $odd{$what} });
        is($res->{status}, 200, "$what: answered");
        my $sent = last_traceparent('local') // '';
        like($sent, qr/^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/,
             "$what: the provider got a traceparent of the gateway's");
        unlike($sent, qr/$CLIENT_TRACE/, "$what: not the client's trace");
    }

    # a later version may carry more, after a '-': still understood
    my $res = $t->chat('qwen',
                       headers => { traceparent => "cc-$good-01-future" });
    like(last_traceparent('local') // '', qr/^00-$CLIENT_TRACE-/,
         'version cc with more after it: continued, sent as version 00');
};


subtest 'an unsampled trace is passed on, not exported' => sub {
    my $trace = 'f' x 31 . '1';
    my $before = scalar @{ $otlp->spans };

    my $res = $t->chat('qwen',
                       headers => { traceparent => "00-$trace-$CLIENT_SPAN-00" });
    is($res->{status}, 200, 'answered');
    like(last_traceparent('local') // '', qr/^00-$trace-[0-9a-f]{16}-00$/,
         'the provider got it unsampled');

    # a sampled request after it, to know the exporter has gone past it
    my $tp = "00-" . ('e' x 31) . "1-$CLIENT_SPAN-01";
    $t->chat('qwen', headers => { traceparent => $tp });
    trace_spans('e' x 31 . '1', 2);

    is(scalar @{ traced($trace)->($otlp->spans) }, 0, 'no span of it');
};


subtest 'each fallback attempt is a child span of the request' => sub {
    $mock{local}->set(mode => 'status', status => 500);
    $mock{lan}->set(mode => 'status', status => 429, retry_after => '');
    $mock{ext}->set();

    my $trace = '1' x 32;
    my $res = $t->chat('chain',
                       headers => { traceparent => "00-$trace-$CLIENT_SPAN-01" });
    is($res->{status}, 200, 'the third step answers') or diag($res->{body});
    $mock{$_}->set() for qw(local lan);

    my %sent = map { $_ => last_traceparent($_) // '' } qw(local lan ext);
    my %span = map { $_ => ($sent{$_} =~ /^00-$trace-(\w{16})-01$/)[0] }
               keys %sent;
    ok($span{local} && $span{lan} && $span{ext},
       'every provider got the trace');
    ok($span{local} ne $span{lan} && $span{lan} ne $span{ext},
       '... each with its attempt\'s own span');

    my $spans = trace_spans($trace, 4);
    my ($req) = grep { $_->{kind} == 2 } @$spans;
    my @att = sort { $a->{attr}{'tailgate.attempt'} <=> $b->{attr}{'tailgate.attempt'} }
              grep { $_->{kind} == 3 } @$spans;
    is(scalar @att, 3, 'three attempt spans');
    ok($req, 'and the request\'s') or return;

    is_deeply([ map { $_->{parentSpanId} } @att ], [ ($req->{spanId}) x 3 ],
              'all children of the request span');
    is_deeply([ map { $_->{spanId} } @att ], [ @span{qw(local lan ext)} ],
              'each the span its provider was sent');
    is_deeply([ map { $_->{attr}{'gen_ai.provider.name'} } @att ],
              [qw(local lan ext)], 'in the order tried');
    is_deeply([ map { $_->{attr}{'tailgate.outcome'} } @att ],
              [qw(server_error rate_limited ok)], 'with their outcomes');
    is_deeply([ map { $_->{attr}{'error.type'} // '' } @att ],
              ['500', '429', ''], 'error.type: the provider\'s status');
    is_deeply([ map { ($_->{status} // {})->{code} // 0 } @att ],
              [2, 2, 0], 'status ERROR for the failures');
    is($att[2]{attr}{'server.address'}, 'api.ext.test', 'the external host');
    is($req->{attr}{'tailgate.attempts'}, 3, 'the request: three attempts');
    is($req->{attr}{'http.response.status_code'}, 200, '... and 200');
};


subtest 'a fallback that finds no provider left still ends the request span' => sub {
    # private: the external step is not allowed, the two private ones fail
    $mock{local}->set(mode => 'status', status => 500);
    $mock{lan}->set(mode => 'status', status => 500);

    my $trace = '2' x 32;
    my $res = $t->chat('chain', headers => {
        traceparent => "00-$trace-$CLIENT_SPAN-01",
        'X-Tailgate-Tags' => 'private' });
    is($res->{status}, 503, 'every allowed provider failed: 503');
    $mock{$_}->set() for qw(local lan);

    my $spans = trace_spans($trace, 3);
    my ($req) = grep { $_->{kind} == 2 } @$spans;
    my @att = grep { $_->{kind} == 3 } @$spans;
    is(scalar @att, 2, 'two attempts');
    ok($req, 'the request span is there') or return;
    is($req->{attr}{'http.response.status_code'}, 503, 'with the client\'s 503');
    is($req->{parentSpanId}, $CLIENT_SPAN, 'continuing the client\'s');
    is(scalar(grep { $_->{parentSpanId} eq $req->{spanId} } @att), 2,
       'both attempts its children');
};


# the exporter's counts, and requests that never notice the collector

sub burst {
    my ($n, $what) = @_;
    my $ok = 0;
    for (1 .. $n) {
        $ok++ if $t->chat('qwen')->{status} == 200;
    }
    is($ok, $n, "$what: all $n requests answered 200");
}

subtest 'a collector that refuses: spans dropped and counted' => sub {
    my $before = status();
    ok(($before->{exported} // 0) > 0, 'spans were exported before');

    $otlp->set(status => 503);
    burst(10, 'collector answering 503');

    ok($t->wait_for(sub {
        (status()->{dropped_export_failed} // 0)
            >= ($before->{dropped_export_failed} // 0) + 20 }),
       'dropped_export_failed counts the 20 spans')
        or diag($JSON->encode(status()));
    ok(status()->{export_errors} > 0, 'export_errors counted');
    is(status()->{last_status}, 503, 'last_status 503');

    $otlp->set(status => 200);
};

subtest 'a collector that is away: requests fine, drops counted' => sub {
    $otlp->stop;
    my $before = status();

    burst(10, 'collector down');

    ok($t->wait_for(sub {
        (status()->{dropped_export_failed} // 0)
            >= ($before->{dropped_export_failed} // 0) + 20 }),
       'the spans are counted as dropped')
        or diag($JSON->encode(status()));

    $otlp->restart;
    my $trace = '3' x 32;
    $t->chat('qwen', headers => { traceparent => "00-$trace-$CLIENT_SPAN-01" });
    is(scalar @{ trace_spans($trace, 2) }, 2,
       'back: the next request\'s spans arrive');
};

subtest 'a collector that hangs: a full queue drops, decisions never wait' => sub {
    # a small queue, an export that waits 3 s: past tailgate_policyd_timeout
    $t->stop_policyd;
    $t->start_policyd(env => { %env, EXT_API_KEY => 'x',
                               OTEL_BSP_MAX_QUEUE_SIZE => 4,
                               OTEL_BSP_MAX_EXPORT_BATCH_SIZE => 2,
                               OTEL_EXPORTER_OTLP_TIMEOUT => 3000 },
                      args => ['-a', $admin]);
    $otlp->set(hang_s => 5);

    burst(20, 'collector hanging');

    # the workers send their REPORTs of successes within 250 ms
    my $st;
    ok($t->wait_for(sub { ($st = status())->{spans} >= 40 }),
       'the exporter was handed the 40 spans') or diag($JSON->encode($st));
    ok($st->{dropped_queue_full} > 0, 'the queue filled: '
       . ($st->{dropped_queue_full} // 0) . ' spans dropped')
        or diag($JSON->encode($st));
    ok($st->{queued} <= 2 * 4, 'never more than the queue holds waiting, '
       . 'and the export under way: ' . ($st->{queued} // 0));
    burst(5, 'still, with the queue full');

    $otlp->set(hang_s => 0);
};

subtest 'a Grafana Cloud token: Basic INSTANCE:TOKEN' => sub {
    my $json = '{"o":"1234567","n":"stack-42-otlp","k":"s3cr3t","m":{"r":"eu"}}';
    my $glc = 'glc_' . encode_base64($json, '') =~ tr/=//dr;

    $t->stop_policyd;
    $t->start_policyd(env => { %env, EXT_API_KEY => 'x', OTLP_API_KEY => $glc },
                      args => ['-a', $admin]);

    my $n = scalar @{ $otlp->posts };
    $t->chat('qwen');
    ok($t->wait_for(sub { @{ $otlp->posts } > $n }), 'an export');
    my $auth = $otlp->posts->[-1]{headers}{authorization} // '';
    my ($b64) = $auth =~ /^Basic (.+)$/;
    is(decode_base64($b64 // ''), "1234567:$glc",
       'instance id from the token\'s "o", the whole token as password');

    # OTLP_HEADERS' own Authorization wins
    $t->stop_policyd;
    $t->start_policyd(env => { %env, EXT_API_KEY => 'x', OTLP_API_KEY => $glc,
                               OTLP_HEADERS => 'Authorization=Bearer%20t0k' },
                      args => ['-a', $admin]);
    $n = scalar @{ $otlp->posts };
    $t->chat('qwen');
    ok($t->wait_for(sub { @{ $otlp->posts } > $n }), 'an export');
    is($otlp->posts->[-1]{headers}{authorization}, 'Bearer t0k',
       'OTLP_HEADERS Authorization used as it is');
};

subtest 'no OTLP secret in any log, at debug level, in both formats' => sub {
    my $json = '{"o":987654,"n":"stack-9","k":"k3y-m4t3r14l-9f8e"}';
    my $glc = 'glc_' . encode_base64($json, '') =~ tr/=//dr;
    my %secret = (
        'glc_ token'         => $glc,
        'Basic credentials'  => encode_base64("987654:$glc", ''),
        'secret header value'  => 'hdr-s3cr3t-5a1b',
        'endpoint query secret' => 'qry-s3cr3t-77c0',
        'plain OTLP_API_KEY' => $env{OTLP_API_KEY},
    );
    my %secret_env = (%env, EXT_API_KEY => 'x', OTLP_API_KEY => $glc,
                      OTLP_ENDPOINT => $otlp->addr
                                       . '/v1/traces?token=qry-s3cr3t-77c0',
                      OTLP_HEADERS => 'X-Secret=hdr-s3cr3t-5a1b');

    for my $format ([], ['-j']) {
        my $what = @$format ? 'json' : 'text';
        $t->stop_policyd;
        my $from = length $t->policyd_log;
        my $log = sub { substr($t->policyd_log, $from) };
        $t->start_policyd(env => \%secret_env,
                          args => ['-a', $admin, '-v', @$format]);

        my $n = scalar @{ $otlp->posts };
        burst(3, "$what, debug level");
        ok($t->wait_for(sub { @{ $otlp->posts } > $n }), "$what: an export");
        is($otlp->posts->[-1]{headers}{'x-secret'}, 'hdr-s3cr3t-5a1b',
           "$what: the collector got the header");
        like($otlp->posts->[-1]{path} // '', qr/token=qry-s3cr3t-77c0/,
             "$what: and the query");

        # refused, then back: otlp.export_refused and otlp.recovered logged
        $otlp->set(status => 401);
        burst(3, "$what, collector refusing");
        ok($t->wait_for(sub { $log->() =~ /export_refused|HTTP 401/ }),
           "$what: the refusal is logged");
        $otlp->set(status => 200);
        burst(3, "$what, collector back");
        ok($t->wait_for(sub { $log->() =~ /otlp\.recovered|takes them again/ }),
           "$what: the recovery is logged");
    }

    my (undef, $st) = $t->policyd_cmd('status', '-a', $admin, { stderr => 0 });
    ok(length $st, 'policyd status answers');
    my (undef, $check) = do {
        local %ENV = (%ENV, %secret_env);
        $t->policyd_cmd('-t', '-v', '-c', $t->dir . '/policy.json',
                        '-s', $t->dir . '/check.sock');
    };
    like($t->policyd_log, qr/"event":"otlp.exporting"/,
         'policyd -v -j logged the exporter');

    for my $where ([ 'policyd.log' => $t->policyd_log ],
                   [ 'error.log' => $t->read_file('error.log') ],
                   [ 'policyd status' => $st ],
                   [ 'policyd -t' => $check ]) {
        for my $what (sort keys %secret) {
            ok(index($where->[1], $secret{$what}) < 0,
               "$where->[0] has no $what");
        }
    }
};

subtest 'policyd -t checks the OTLP variables' => sub {
    my @check = ('-t', '-c', $t->dir . '/policy.json',
                 '-s', $t->dir . '/check.sock');

    local %ENV = (%ENV, OTLP_ENDPOINT => 'ftp://collector:4318',
                  EXT_API_KEY => 'x');
    my ($rc, $out) = $t->policyd_cmd(@check);
    is($rc, 1, 'a bad endpoint fails -t');
    like($out, qr/OTLP_ENDPOINT: expected the scheme http/, '... naming it');

    $ENV{OTLP_ENDPOINT} = 'collector:4318';
    $ENV{OTLP_API_KEY} = "sk-secret-\x01key";
    ($rc, $out) = $t->policyd_cmd(@check);
    is($rc, 1, 'a key with a control byte fails -t');
    like($out, qr/OTLP_API_KEY: expected a key of printable/, '... naming it');
    unlike($out, qr/sk-secret/, '... and not showing it');

    $ENV{OTLP_API_KEY} = 'k';
    $ENV{OTEL_RESOURCE_ATTRIBUTES} = 'a=1,novalue,c=%zz';
    ($rc, $out) = $t->policyd_cmd(@check);
    is($rc, 0, 'bad resource attributes: only a warning');
    like($out, qr/OTEL_RESOURCE_ATTRIBUTES: entry 2: expected key=value; the variable is ignored/,
         '... naming the entry');
};

subtest 'without OTLP_ENDPOINT the client\'s traceparent passes untouched' => sub {
    $t->stop_policyd;
    $t->start_policyd(env => { EXT_API_KEY => 'x' }, args => ['-a', $admin]);

    # the workers learn it from the new HELLO_OK
    my $tp = "00-$CLIENT_TRACE-$CLIENT_SPAN-01";
    is($t->chat('qwen', headers => { traceparent => $tp })->{status}, 200,
       'answered');
    is(last_traceparent('local'), $tp, 'the provider got the client\'s own');

    my $odd = 'not-a-traceparent';
    $t->chat('qwen', headers => { traceparent => $odd });
    is(last_traceparent('local'), $odd, '... even one that does not parse');

    $t->chat('qwen');
    ok(!defined last_traceparent('local'), 'and none when it sent none');
    ok(!exists status()->{exported}, 'the status has no traces');
};

$t->done_testing;
