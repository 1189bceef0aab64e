#!/usr/bin/perl
#
# Per-step request edits from the policy ("adjust"): applied to that
# step's provider only, to every spelling of a key, with a correct body
# and Content-Length; a fallback sends the client's own body to the next
# step.  And the error event of a broken /v1/responses stream.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use JSON::PP ();
use Test::More;
use Tailgate::Gateway;

my $t = Tailgate::Gateway->new->skip_unless_built;
my $JSON = JSON::PP->new->canonical->utf8;

my $policy = {
    providers => {
        local => { upstream => 'tg_local', zone => 'local',
                   endpoints => [qw(chat responses)] },
        ext   => { upstream => 'tg_ext', zone => 'external',
                   api_key => '${EXT_API_KEY}',
                   endpoints => [qw(chat responses)] },
    },
    routes => {
        tuned => {
            steps => [
                { provider => 'local', model => 'l', adjust => [
                    { when => 'tools', drop => ['response_format'] },
                    { when => 'stream',
                      set => { 'stream_options.include_usage' => JSON::PP::true } },
                    { drop => ['user', 'metadata.secret'],
                      set => { seed => 7, 'metadata.via' => 'tailgate' } },
                  ] },
                { provider => 'ext', model => 'e' },
            ],
            fallback => { on => 'errors' },
        },
        or => { steps => [ { provider => 'ext', model => 'openai/gpt-4o',
                             adjust => [ { drop => [qw(models provider route)] } ] } ] },
    },
};

my $key = $t->start_gateway(policy => $policy);

my %mock = map { $_ => $t->mock($_) } qw(local ext);

# what the provider received for one request, sent as raw JSON text

sub received {
    my ($name, $text, %opt) = @_;

    my $before = @{ $mock{$name}->requests };
    my $res = $t->http('POST', $opt{path} // '/v1/chat/completions',
                       headers => { Authorization => "Bearer $key",
                                    'Content-Type' => 'application/json' },
                       body => $text);
    my $all = $mock{$name}->requests;
    my $r = $all->[$before];

    return ($res, undef) unless $r;

    is($r->{headers}{'content-length'}, length $r->{body},
       "Content-Length of what $name got");

    my $doc = eval { $JSON->decode($r->{body}) };
    ok($doc, "$name got JSON") or diag($r->{body});

    return ($res, $doc, $r->{body});
}

my $messages = '"messages":[{"role":"user","content":"Hi \\"there\\" \\u00e9"}]';

# always: drop user and metadata.secret, set seed and metadata.via

{
    my ($res, $doc, $raw) = received('local', qq({"model":"tuned",$messages,"user":"u-42","seed":1,"Seed":2}));
    is($res->{status}, 200, 'answered');
    is($doc->{model}, 'l', 'model renamed');
    is_deeply($doc->{messages}, [{ role => 'user', content => "Hi \"there\" \x{e9}" }],
              'messages intact');
    ok(!exists $doc->{user}, 'user dropped');
    is($doc->{seed}, 7, 'seed set');
    ok(!exists $doc->{Seed}, 'the other spelling of seed dropped');
    is_deeply($doc->{metadata}, { via => 'tailgate' }, 'metadata added');
    ok(!exists $doc->{response_format}, 'nothing else added');
    unlike($raw, qr/"seed":1/, 'the client\'s seed is gone');
}

{
    my (undef, $doc) = received('local', qq({"model":"tuned",$messages,"metadata":{"secret":"s","keep":1,"SECRET":"t"}}));
    is_deeply($doc->{metadata}, { keep => 1, via => 'tailgate' },
              'metadata: secret dropped in every spelling, via added');

    (undef, $doc) = received('local', qq({"model":"tuned",$messages,"metadata":null}));
    is_deeply($doc->{metadata}, { via => 'tailgate' },
              'metadata that is no object is replaced');
}

# when tools: drop response_format, however it is spelled

{
    my $tools = '"tools":[{"type":"function","function":{"name":"f"}}]';

    for my $rf ('"response_format"', '"Response_Format"', '"respons\u0065_format"') {
        my (undef, $doc) = received('local',
            qq({"model":"tuned",$messages,$tools,$rf:{"type":"json_object"}}));
        ok(!grep(/^response_format$/i, keys %$doc), "tools: $rf dropped");
        is($doc->{tools}[0]{function}{name}, 'f', 'tools kept');
    }

    my (undef, $doc) = received('local',
        qq({"model":"tuned",$messages,"response_format":{"type":"json_object"}}));
    is_deeply($doc->{response_format}, { type => 'json_object' },
              'without tools response_format stays');
}

# when stream: stream_options.include_usage, merged into what is there

{
    my (undef, $doc) = received('local', qq({"model":"tuned",$messages,"stream":true}));
    is_deeply($doc->{stream_options}, { include_usage => JSON::PP::true },
              'stream: stream_options added');

    (undef, $doc) = received('local', qq({"model":"tuned",$messages,"stream":true,"stream_options":{"include_obfuscation":false,"include_usage":false}}));
    is_deeply($doc->{stream_options}, { include_obfuscation => JSON::PP::false,
                                        include_usage => JSON::PP::true },
              'stream: merged into the client\'s stream_options');

    (undef, $doc) = received('local', qq({"model":"tuned",$messages}));
    ok(!exists $doc->{stream_options}, 'no stream: no stream_options');
}

# the same again, decided from the worker's cache

{
    my (undef, $doc) = received('local', qq({"model":"tuned",$messages,"user":"u"}));
    ok(!exists $doc->{user} && $doc->{seed} == 7, 'a cached decision edits too');
}

# a fallback gets the client's body, not the edited one

{
    $mock{local}->set(mode => 'status', status => 500);
    my ($res, $doc) = received('ext', qq({"model":"tuned",$messages,"user":"u-42","tools":[{"type":"function","function":{"name":"f"}}],"response_format":{"type":"text"}}));
    is($res->{headers}{'x-tailgate-provider'}, 'ext', 'fell back to ext');
    is($doc->{model}, 'e', 'with its model');
    is($doc->{user}, 'u-42', 'user is back');
    ok(!exists $doc->{seed} && !exists $doc->{metadata}, 'no edits of local');
    is_deeply($doc->{response_format}, { type => 'text' }, 'response_format kept');
    $mock{local}->set();
}

# OpenRouter's own routing fields cannot steer around the route

{
    my (undef, $doc) = received('ext', qq({"model":"or",$messages,"models":["anthropic/claude"],"provider":{"order":["x"]},"route":"fallback"}));
    is($doc->{model}, 'openai/gpt-4o', 'the route\'s model');
    ok(!exists $doc->{models} && !exists $doc->{provider} && !exists $doc->{route},
       'models, provider and route dropped');
}

# a broken /v1/responses stream ends with the Responses API's error event

{
    $mock{local}->set(mode => 'drop', drop_after => 1);
    my $res = $t->http('POST', '/v1/responses',
                       headers => { Authorization => "Bearer $key",
                                    'Content-Type' => 'application/json' },
                       body => '{"model":"tuned","input":"hi","stream":true}');
    is($res->{status}, 200, 'responses stream started');
    like($res->{body},
         qr/\n\nevent: error\ndata: \{"type":"error","code":"stream_broken","message":"[^"]+","param":null\}\n\n\z/,
         'ended with an error event');
    $mock{local}->set();
}

done_testing();
