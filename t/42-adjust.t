#!/usr/bin/perl
#
# Per-step request edits from the policy ("adjust"): applied to that
# step's provider only, to every spelling of a key, with a correct body
# and Content-Length; a fallback sends the client's own body to the next
# step.  A drop leaves a value that is no object as it was; a set leaves
# the key under the policy's spelling, and one spelling only.  Edits cost
# the worker little more memory than the body.  And the error event of a
# broken /v1/responses stream.

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
        d => { steps => [ { provider => 'local', model => 'l', adjust => [
                   { drop => ['metadata.secret', 'stream_options.include_usage'] },
               ] } ] },
        s => { steps => [ { provider => 'local', model => 'l', adjust => [
                   { set => { seed => 7,
                              'stream_options.include_usage' => JSON::PP::true } },
               ] } ] },
        edited => { steps => [ { provider => 'local', model => 'l',
                                 adjust => [ { drop => ['user'] } ] } ] },
    },
};

my $key = $t->start_gateway(policy => $policy);

my %mock = map { $_ => $t->mock($_) } qw(local ext);

# what the provider received for one request, sent as raw JSON text

sub received {
    my ($name, $text, %opt) = @_;

    my $before = @{ $mock{$name}->requests };
    my $res = $t->post_json($opt{path} // '/v1/chat/completions', $key, $text);
    my $all = $mock{$name}->requests;
    my $r = $all->[$before];

    return ($res, undef) unless $r;

    is($r->{headers}{'content-length'}, length $r->{body},
       "Content-Length of what $name got");

    my $doc = eval { $JSON->decode($r->{body}) };
    ok($doc, "$name got JSON") or diag($r->{body});

    return ($res, $doc, $r->{body});
}

# the same, for local, with the answer checked instead of the length

sub sent {
    my ($text) = @_;

    my $before = @{ $mock{local}->requests };
    my $res = $t->post_json('/v1/chat/completions', $key, $text);
    is($res->{status}, 200, 'answered');

    my $r = $mock{local}->requests->[$before] or return undef;
    my $doc = eval { $JSON->decode($r->{body}) };
    ok($doc, 'the provider got JSON') or diag($r->{body});

    return ($doc, $r->{body});
}

my $messages = '"messages":[{"role":"user","content":"Hi \\"there\\" \\u00e9"}]';

# edits must not let one client make the worker allocate many times the
# body it sent: a 3.8 MB body of 330,000 small members (within
# client_max_body_size 4m), while the worker is fresh.  The same body on a
# route without edits costs ~8 MB.

SKIP: {
    skip 'needs /proc', 3 unless -r "/proc/$$/status";

    my ($worker) = $t->nginx_worker_pids;

    my $peak_kb = sub {
        open my $fh, '<', "/proc/$worker/status" or return 0;
        local $/;
        my ($kb) = <$fh> =~ /^VmHWM:\s+(\d+)/m;
        return $kb // 0;
    };

    my $body = '{"model":"edited","messages":[],"user":"u"'
             . join('', map { ",\"k$_\":0" } 1 .. 330_000) . '}';
    cmp_ok(length $body, '<', 4 * 1024 * 1024, 'within client_max_body_size');

    my $before = $peak_kb->();
    my $res = $t->post_json('/v1/chat/completions', $key, $body, timeout => 60);
    is($res->{status}, 200, 'answered');

    my $grown = $peak_kb->() - $before;
    cmp_ok($grown, '<', 64 * 1024,
           'the worker\'s peak memory grew by less than 64 MB for a 3.8 MB body')
        or diag("grew by $grown kB");
}

$t->logs_clean('error.log is clean after the large edited body');

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

# a drop alone: below a value that is no object (null, a string, an array)
# there is nothing to drop, and the value reaches the provider as it was
# sent (only "set" replaces it; docs/policy.md)

{
    my ($doc, $raw);

    ($doc, $raw) = sent('{"model":"d","messages":[],"stream_options":null}');
    ok(exists $doc->{stream_options} && !defined $doc->{stream_options},
       'stream_options: null stays null') or diag($raw);

    ($doc, $raw) = sent('{"model":"d","messages":[],"metadata":"a string"}');
    is($doc->{metadata}, 'a string', 'a string metadata is not replaced')
        or diag($raw);

    ($doc, $raw) = sent('{"model":"d","messages":[],"metadata":[1,2]}');
    is_deeply($doc->{metadata}, [1, 2], 'an array metadata is not replaced')
        or diag($raw);

    # the members that are objects still lose what the policy drops

    ($doc, $raw) = sent('{"model":"d","messages":[],"metadata":{"secret":1,"keep":2}}');
    is_deeply($doc->{metadata}, { keep => 2 }, 'metadata.secret dropped')
        or diag($raw);

    $t->logs_clean('error.log is clean after the drops below non-objects');
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
    ok(!exists $doc->{user},
       'user: not for an external provider, whose zone scrubs it (t/72)');
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
    my $res = $t->post_json('/v1/responses', $key,
                            '{"model":"tuned","input":"hi","stream":true}');
    is($res->{status}, 200, 'responses stream started');
    like($res->{body},
         qr/\n\nevent: response\.failed\ndata: \{"type":"response\.failed","sequence_number":5,"response":\{[^\n]*"status":"failed","error":\{"code":"stream_broken","message":"[^"]+"\}\}\}\n\nevent: error\ndata: \{"type":"error","sequence_number":6,"code":"stream_broken","message":"[^"]+","param":null\}\n\n\z/,
         'ended with response.failed and an error event, numbered');
    $mock{local}->set();
}

# "set" leaves the provider with the key as the policy spells it: the
# client's other spellings ("Seed", "Stream_Options") are replaced, not
# written to

{
    my ($doc, $raw);

    ($doc, $raw) = sent('{"model":"s","messages":[],"Seed":3}');
    is($doc->{seed}, 7, '"seed" is set although the client wrote "Seed"')
        or diag($raw);
    ok(!exists $doc->{Seed}, 'the other spelling "Seed" is gone') or diag($raw);

    ($doc, $raw) = sent('{"model":"s","messages":[],"Stream_Options":{"a":1}}');
    is(ref $doc->{stream_options} eq 'HASH'
       && $doc->{stream_options}{include_usage} ? 1 : 0, 1,
       'stream_options.include_usage reaches the provider') or diag($raw);
    ok(!exists $doc->{Stream_Options}, 'no "Stream_Options" left') or diag($raw);

    # two sets below one key, spelled in two cases: refused by policyd -t,
    # or written under one key

    my $dir = $t->dir;
    my $p = {
        providers => { local => { upstream => 'tg_local', zone => 'local',
                                  endpoints => [qw(chat)] } },
        routes => { c => { steps => [ { provider => 'local', model => 'l',
            adjust => [ { set => { 'metadata.a' => 1, 'Metadata.b' => 2 } } ] } ] } },
    };

    $t->write_file('case.json', $JSON->encode($p));
    my ($rc) = $t->policyd_cmd('-t', '-c', "$dir/case.json", '-s', "$dir/unused.sock");
    my $accepted = $rc == 0;

    SKIP: {
        skip 'policyd refuses the policy: fine', 3 unless $accepted;

        # the running policyd loads the same policy on a reload
        my $mark = $t->log_size('policyd');
        $t->write_policy({ %$policy, routes => { %{ $policy->{routes} },
                                                 %{ $p->{routes} } } });
        $t->reload_policyd;
        $t->wait_log('policyd', qr/policy reloaded/, from => $mark);

        ($doc, $raw) = sent('{"model":"c","messages":[]}');
        my @meta = grep { lc $_ eq 'metadata' } keys %$doc;
        is(scalar @meta, 1, 'one "metadata" key, not two spellings')
            or diag($raw);
    }

    $t->logs_clean('error.log is clean after the sets in other spellings');
}

done_testing();
