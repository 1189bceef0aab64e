#!/usr/bin/perl
#
# What a provider learns of the client.  Providers are asked for identity
# encoding whatever the client accepts, while nginx's gzip filter may still
# compress towards the client (after the module read the answer, and the
# error event of a broken stream with it).  External providers get neither
# the client's identifying headers nor its metadata fields; local ones get
# the request as it was sent.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Compress::Zlib ();
use JSON::PP ();
use Test::More;
use Tailgate::Gateway;

my $t = Tailgate::Gateway->new->skip_unless_built;
my $JSON = JSON::PP->new->canonical->utf8;

my $policy = Tailgate::Gateway::default_policy();

# the external step first, the local one after it
$policy->{routes}{extfirst} = {
    steps => [ { provider => 'ext', model => 'e' },
               { provider => 'local', model => 'l' } ],
    fallback => { on => 'errors' },
};

my $key = $t->start_gateway(
    policy => $policy,
    server => 'gzip on; gzip_types application/json text/event-stream; '
            . 'gzip_min_length 1;');

my %mock = map { $_ => $t->mock($_) } qw(local ext);


# the gzip stream as far as it goes (a broken one has no trailer)

sub gunzip_partial {
    my ($bytes) = @_;

    my ($z) = Compress::Zlib::inflateInit(
        -WindowBits => Compress::Zlib::MAX_WBITS() + 16);
    my ($out) = $z->inflate($bytes);
    return $out // '';
}


# what the provider received for one request

sub last_request {
    my ($name) = @_;
    return $mock{$name}->requests->[-1];
}


subtest 'providers are asked for identity encoding' => sub {
    for my $ae ('gzip, deflate, br', 'br;q=1.0, gzip;q=0.5', '') {
        my $res = $t->chat('qwen', headers => { 'Accept-Encoding' => $ae });
        is($res->{status}, 200, "answered (Accept-Encoding: '$ae')");
        is(last_request('local')->{headers}{'accept-encoding'}, 'identity',
           'the provider was asked for identity');
    }

    my $res = $t->chat('qwen');
    is(last_request('local')->{headers}{'accept-encoding'}, 'identity',
       'also when the client names no encoding');
};

subtest 'the client still gets gzip from nginx' => sub {
    my $res = $t->chat('qwen', headers => { 'Accept-Encoding' => 'gzip' });
    is($res->{status}, 200, 'answered');
    is($res->{headers}{'content-encoding'}, 'gzip', 'compressed for the client');

    my $doc = eval { $JSON->decode(Compress::Zlib::memGunzip($res->{body})) };
    is($doc->{choices}[0]{message}{content}, 'Hello from local',
       'the answer inside');

    $res = $t->chat('qwen');
    ok(!$res->{headers}{'content-encoding'}, 'not for a client that did not ask');
    is($t->json($res)->{choices}[0]{message}{content}, 'Hello from local',
       'plain');
};

subtest 'a broken stream compressed for the client ends with the error event' => sub {
    $mock{local}->set(mode => 'drop', drop_after => 2);

    my $res = $t->chat('qwen', stream => 1,
                       headers => { 'Accept-Encoding' => 'gzip' });
    is($res->{status}, 200, 'the stream started');
    is($res->{headers}{'content-encoding'}, 'gzip', 'compressed');

    my $text = gunzip_partial($res->{body});
    like($text, qr/tok2 /, 'the events the provider sent');
    like($text, qr/\n\ndata: \{"error":\{[^\n]*"code":"stream_broken"/,
         'then the gateway\'s error event, inside the compressed stream');

    $mock{local}->set;
};

subtest 'a provider that compresses anyway is passed through untouched' => sub {
    $mock{local}->set(mode => 'drop', drop_after => 2,
                      headers => { 'Content-Encoding' => 'gzip' });

    my $res = $t->chat('qwen', stream => 1);
    is($res->{headers}{'content-encoding'}, 'gzip', 'the provider\'s encoding');
    like($res->{body}, qr/tok2 /, 'its bytes as it sent them');
    unlike($res->{body}, qr/stream_broken/,
           'nothing spliced into what the gateway cannot read');

    $mock{local}->set;
};


# what Codex, the OpenAI SDKs and a browser send of themselves

my $huge = 'x' x 6000;
my %client_headers = (
    'User-Agent'            => 'codex_cli_rs/0.63.0 (Mac OS 15.1.0; arm64) '
                             . 'iTerm.app/3.5.0',
    'originator'            => 'codex_cli_rs',
    'session-id'            => '0199a7c2-5f1e-7a10-9d1e-3b1c2a4d5e6f',
    'thread-id'             => '0199a7c2-aaaa-bbbb-cccc-3b1c2a4d5e6f',
    'x-codex-turn-metadata' => qq({"installation_id":"i-123","sandbox":"workspace-write","pad":"$huge"}),
    'X-Stainless-Arch'      => 'arm64',
    'x-stainless-os'        => [ 'MacOS', 'MacOS' ],
    'x-stainless-lang'      => '',
    'x-stainless-runtime-version' => 'v22.1.0',
    'Cookie'                => 'sid=abc; theme=dark',
    'Origin'                => 'https://app.example.com',
    'Referer'               => 'https://app.example.com/chat/42',
    'Accept-Language'       => 'de-CH,de;q=0.9',
    'traceparent'           => '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
    'OpenAI-Beta'           => 'responses=experimental',
    'x-stainlessly'         => 'not a stainless header',
);

my @gone = qw(originator session-id thread-id x-codex-turn-metadata
              x-stainless-arch x-stainless-os x-stainless-lang
              x-stainless-runtime-version cookie origin referer
              accept-language traceparent);

my $body = '{"model":"MODEL","messages":[{"role":"user","content":"Hi"}],'
         . '"user":"alice@example.com","metadata":{"a":"1"},'
         . '"client_metadata":{"installation_id":"i-123"},'
         . '"safety_identifier":"h-42","Us\\u0065r":"again",'
         . '"prompt_cache_key":"k","temperature":0.5}';

sub send_as_client {
    my ($model) = @_;
    (my $text = $body) =~ s/MODEL/$model/;
    return $t->post_json('/v1/chat/completions', $key, $text,
                         headers => { %client_headers });
}

subtest 'an external provider learns nothing of the client' => sub {
    my $before = @{ $mock{ext}->requests };
    my $res = send_as_client('smart');
    is($res->{status}, 200, 'answered') or diag($res->{body});

    my $got = $mock{ext}->requests->[$before];
    my $h = $got->{headers};

    is($h->{'user-agent'}, 'Tailgate', 'the gateway\'s User-Agent, once');
    ok(!exists $h->{$_}, "no $_") for @gone;
    is($h->{'openai-beta'}, 'responses=experimental',
       'headers that say nothing of the client pass');
    is($h->{'x-stainlessly'}, 'not a stainless header',
       'a prefix matches only what it says');
    is($h->{authorization}, "Bearer $Tailgate::Gateway::PROVIDER_KEY",
       'the provider\'s key');

    my $doc = eval { $JSON->decode($got->{body}) };
    ok($doc, 'JSON') or diag($got->{body});
    ok(!exists $doc->{$_}, "no body field $_")
        for qw(user metadata client_metadata safety_identifier User Us\u0065r);
    unlike($got->{body}, qr/alice|i-123|h-42|again/, 'nothing of them at all');
    is($doc->{prompt_cache_key}, 'k', 'fields not listed stay');
    is($doc->{temperature}, 0.5, 'and the request itself');
    is($doc->{model}, 'deepseek-chat', 'with the provider\'s model');
    is($h->{'content-length'}, length $got->{body}, 'Content-Length of what it got');

    ok($t->wait_log('access', qr/codex_cli_rs\/0\.63\.0/),
       'the access log still has the client\'s User-Agent')
        or diag($t->access_log);
};

subtest 'a local provider gets the request as it was sent' => sub {
    my $before = @{ $mock{local}->requests };
    my $res = send_as_client('same');
    is($res->{status}, 200, 'answered');

    my $got = $mock{local}->requests->[$before];
    my $h = $got->{headers};

    is($h->{'user-agent'}, $client_headers{'User-Agent'}, 'the client\'s User-Agent');
    is($h->{'x-codex-turn-metadata'}, $client_headers{'x-codex-turn-metadata'},
       'a huge header whole');
    is($h->{'x-stainless-os'}, 'MacOS, MacOS', 'a header sent twice, twice');
    is($h->{'x-stainless-lang'}, '', 'an empty one');
    ok(exists $h->{$_}, "$_ too") for grep { $_ ne 'cookie' } @gone;
    ok(!exists $h->{cookie}, 'but no cookie: tailgate/proxy.conf keeps those '
       . 'from every provider');

    (my $sent = $body) =~ s/MODEL/same/;
    is($got->{body}, $sent, 'the body byte for byte');
};

subtest 'a fallback from an external provider to a local one' => sub {
    $mock{ext}->set(mode => 'status', status => 500);

    my $ext_before = @{ $mock{ext}->requests };
    my $before = @{ $mock{local}->requests };
    my $res = send_as_client('extfirst');
    is($t->answered_by($res), 'local', 'the local step answered');

    my $tried = $mock{ext}->requests->[$ext_before];
    is($tried->{headers}{'user-agent'}, 'Tailgate', 'the external attempt was scrubbed');
    ok(!exists $tried->{headers}{'x-codex-turn-metadata'}, 'of everything');
    unlike($tried->{body}, qr/alice/, 'body too');

    my $got = $mock{local}->requests->[$before];
    is($got->{headers}{'user-agent'}, $client_headers{'User-Agent'},
       'the local one got the client\'s headers back');
    is($got->{headers}{'session-id'}, $client_headers{'session-id'}, 'all of them');
    like($got->{body}, qr/alice\@example\.com/, 'and its body');

    $mock{ext}->set;
};

subtest 'odd headers to an external provider' => sub {
    my $before = @{ $mock{ext}->requests };
    my $res = $t->post_json('/v1/chat/completions', $key,
        { model => 'smart', messages => [] },
        headers => { 'User-Agent' => [ 'a/1', 'b/2' ], 'x-codex-' => 'x',
                     'X-CODEX-SANDBOX' => 'seatbelt', 'Session-Id' => '' });
    is($res->{status}, 200, 'answered');

    my $h = $mock{ext}->requests->[$before]{headers};
    is($h->{'user-agent'}, 'Tailgate', 'two User-Agents: one of the gateway\'s');
    ok(!exists $h->{'x-codex-'}, 'the bare prefix');
    ok(!exists $h->{'x-codex-sandbox'}, 'any letter case');
    ok(!exists $h->{'session-id'}, 'an empty one');

    $before = @{ $mock{ext}->requests };
    $res = $t->post_json('/v1/chat/completions', $key,
        { model => 'smart', messages => [] });
    is($mock{ext}->requests->[$before]{headers}{'user-agent'}, 'Tailgate',
       'a client without a User-Agent: the gateway\'s');
};

subtest 'a body without the fields is not rebuilt for the scrub' => sub {
    my $text = '{ "model" : "smart",  "messages" : [ ],
  "parallel_tool_calls" : true, "temperature":0.5 }';

    my $before = @{ $mock{ext}->requests };
    my $res = $t->post_json('/v1/chat/completions', $key, $text);
    is($res->{status}, 200, 'answered');

    (my $want = $text) =~ s/"smart"/"deepseek-chat"/;
    is($mock{ext}->requests->[$before]{body}, $want,
       'the client\'s bytes, spaces and all, but for the model');

    # a long key, a key in another case or escaped: looked at, and dropped
    for my $extra ('"safety_identifier":"s"', '"USER":"u"', '"us\\u0065r":"u"') {
        ($text = '{ "model":"smart", "messages":[], EXTRA }') =~ s/EXTRA/$extra/;
        $before = @{ $mock{ext}->requests };
        $res = $t->post_json('/v1/chat/completions', $key, $text);
        my $got = $mock{ext}->requests->[$before]{body};
        is($got, '{"model":"deepseek-chat","messages":[]}', "$extra dropped")
            or diag($got);
    }
};

subtest 'policyd explain says what a provider does not get' => sub {
    my ($rc, $out) = $t->policyd_cmd('explain', '-c', $t->dir . '/policy.json',
                                     'smart');
    is($rc, 0, 'explained');
    like($out, qr/^headers:  not sent: user-agent .*x-stainless-\* x-codex-\*/m,
         'the headers');
    like($out, qr/^          User-Agent: Tailgate$/m, 'the User-Agent instead');
    like($out, qr/^edit:     drop client_metadata$/m, 'the body fields');

    ($rc, $out) = $t->policyd_cmd('explain', '-c', $t->dir . '/policy.json',
                                  'qwen');
    unlike($out, qr/^headers:|drop user/m, 'nothing for a local provider');
};

$t->done_testing;
