#!/usr/bin/perl

# Usage read from the provider's answer as it passes: every endpoint, JSON
# and streams, cached and reasoning tokens; a chat stream's usage asked for
# when the client did not ask, and that usage-only chunk taken out again
# (also when a read splits it), a client's own include_usage passed
# through; an estimate, marked as one, when the provider says nothing or
# the stream breaks; the failed attempt of a fallback reported without
# tokens; $tailgate_tokens_* and $tailgate_cost in the access log.
#
# A scriptable fake policyd records every REPORT the module sends.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use JSON::PP;
use Test::More;
use Tailgate::Gateway;

my $t = Tailgate::Gateway->new->skip_unless_built;

my %base = (provider => 'local', upstream => 'tg_local', scheme => 'http',
            host => 'local', zone => 'local', path => '/v1/chat/completions',
            stream_usage => 1,
            # input, cached input, output per 1M tokens; per minute; per
            # 1M characters: 0.27, 0.07, 1.10, 0.006, 15 in micro-units
            prices => '270000 70000 1100000 6000 15000000');

$t->start_gateway(
    fake_policyd => {
        decision  => \%base,
        decisions => {
            resp    => { path => '/v1/responses' },
            emb     => { path => '/v1/embeddings' },
            tts     => { path => '/v1/audio/speech' },
            stt     => { path => '/v1/audio/transcriptions' },
            passive => { stream_usage => 0 },
            free    => { prices => undef },
            spill   => { fallback => 15 },
            'spill#1' => { provider => 'ext', upstream => 'tg_ext',
                           zone => 'external', host => 'ext' },
        },
    },
    http => q{
        log_format usage '$request_id in=$tailgate_tokens_in '
                         'out=$tailgate_tokens_out '
                         'cached=$tailgate_tokens_cached '
                         'est=$tailgate_tokens_estimated '
                         'cost=$tailgate_cost';
    },
    # speech with a small body buffer: a longer body goes to a file and is
    # scanned in pieces (ngx_tailgate_json_feed())
    server => 'access_log %%DIR%%/usage.log usage;
        location = /v1/audio/speech {
            tailgate on;
            client_max_body_size 1m;
            client_body_buffer_size 1k;
            include tailgate/proxy.conf;
        }');

my %mock = map { $_ => $t->mock($_) } qw(local ext);
my $JSON = JSON::PP->new;

# the REPORTs sent since $mark, once $n of them are there
sub reports {
    my ($mark, $n) = @_;
    my $got = [];
    $t->wait_for(sub { $got = $t->fake_frames('REPORT', since => $mark);
                       @$got >= $n }, timeout => 5);
    return map { $_->{fields} } @$got;
}

# where the frames stand once the REPORTs of earlier requests are in: a
# worker sends them in batches, at the latest 250 ms after the request
sub mark {
    my $n = scalar @{ $t->fake_policyd_frames };

    for (1 .. 10) {
        select(undef, undef, undef, 0.3);
        my $now = scalar @{ $t->fake_policyd_frames };
        return $now if $now == $n;
        $n = $now;
    }

    return $n;
}

sub stream_body {
    my ($model, %extra) = @_;
    return $JSON->encode({ model => $model, stream => JSON::PP::true,
                           messages => [{ role => 'user', content => 'hi' }],
                           %extra });
}

sub stream_of {
    my ($path, $body) = @_;
    my $c = $t->open_post($path, $body);
    $c->read_all(10);
    return $c->raw;
}

sub last_request_json {
    my ($name) = @_;
    my $r = $mock{$name}->requests->[-1] or return {};
    return eval { $JSON->decode($r->{body}) } // {};
}


subtest 'chat completion, JSON: the usage it says' => sub {
    $mock{local}->update(usage => { prompt_tokens => 12, completion_tokens => 5 });
    my $m = mark();

    my $res = $t->chat('qwen');
    is($res->{status}, 200, 'the answer is 200');

    my ($r) = reports($m, 1);
    is($r->{outcome}, 'ok', 'REPORT ok');
    is($r->{prompt_tokens}, 12, 'input tokens');
    is($r->{completion_tokens}, 5, 'output tokens');
    is($r->{total_tokens}, 17, 'total');
    ok(!$r->{estimated}, 'not an estimate');
    is($r->{client}, 'alice', 'whose');
    is($r->{endpoint}, 'chat', 'which endpoint');
    is($r->{provider_model}, 'qwen', 'which model was asked for');
    is($r->{response_model}, 'qwen', 'and which answered');
    is($r->{attempt}, 1, 'attempt 1');
    like($r->{request_id} // '', qr/^[0-9a-f]{32}$/, 'the request id');
    ok(defined $r->{ttfb_ms}, 'time to the first byte');
};

subtest 'cached and reasoning tokens, in both APIs' => sub {
    $mock{local}->update(usage => { prompt_tokens => 100, completion_tokens => 40,
                                    cached_tokens => 64, reasoning_tokens => 30 });
    my $m = mark();

    $t->chat('qwen');
    $t->call('/v1/responses', 'resp', body => { input => 'hi' });

    my @r = reports($m, 2);
    is_deeply([map { [@$_{qw(prompt_tokens cached_tokens completion_tokens reasoning_tokens)}] } @r],
              [[100, 64, 40, 30], [100, 64, 40, 30]],
              'chat (prompt/completion_tokens_details) and responses (input/output_tokens_details)');
    $mock{local}->update(usage => {});
};

subtest 'embeddings, speech, transcriptions' => sub {
    my $m = mark();

    $t->call('/v1/embeddings', 'emb', body => { input => 'hello' });
    my $res = $t->post_json('/v1/audio/speech', $t->key,
                            { model => 'tts', input => 'Twenty-one chars here', voice => 'x' });
    is($res->{status}, 200, 'speech 200');

    $mock{local}->update(usage => { seconds => 12.345 });
    my $body = "--B\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nstt\r\n"
             . "--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n"
             . "Content-Type: audio/wav\r\n\r\nRIFF....\r\n--B--\r\n";
    $res = $t->http('POST', '/v1/audio/transcriptions',
                    headers => { Authorization => 'Bearer ' . $t->key,
                                 'Content-Type' => 'multipart/form-data; boundary=B' },
                    body => $body);
    is($res->{status}, 200, 'transcription 200');
    $mock{local}->update(usage => {});

    my @r = reports($m, 3);
    is($r[0]{prompt_tokens}, 3, 'embeddings: its prompt tokens');
    is($r[1]{characters}, 21, 'speech: the characters of its input');
    ok(!$r[1]{estimated}, 'which are no estimate');
    is($r[2]{audio_ms}, 12345, 'transcription: its seconds, in ms');
};

subtest 'speech whose body was scanned in pieces: the characters' => sub {
    my $m = mark();

    # 1500 + 300 two-byte characters + two escapes, past the 1 KB buffer
    my $input = ('a' x 1500) . ("\xc3\xa9" x 300) . '\\n\\u00e9';
    my $res = $t->http('POST', '/v1/audio/speech',
        headers => { Authorization => 'Bearer ' . $t->key,
                     'Content-Type' => 'application/json' },
        body => qq({"model":"tts","voice":"x","input":"$input"}));
    is($res->{status}, 200, 'speech 200');

    my @r = reports($m, 1);
    is($r[0]{characters}, 1802, 'the characters of its input');
};

subtest 'a chat stream the client did not ask usage for' => sub {
    my $m = mark();
    my $raw = stream_of('/v1/chat/completions', stream_body('qwen'));

    is_deeply(last_request_json('local')->{stream_options},
              { include_usage => JSON::PP::true }, 'the provider is asked for it');
    my @toks = $raw =~ /"content":"(tok\d) "/g;
    is_deeply(\@toks, [qw(tok1 tok2 tok3)], 'the client gets every event');
    unlike($raw, qr/"usage"/, 'but no usage chunk');
    like($raw, qr/data: \[DONE\]\n\n/, 'and [DONE]');
    like($raw, qr/0\r\n\r\n$/, 'a complete chunked response');

    my ($r) = reports($m, 1);
    is($r->{prompt_tokens}, 7, 'the usage is recorded all the same');
    is($r->{completion_tokens}, 3, 'output too');
    ok(!$r->{estimated}, 'no estimate');
};

subtest 'the usage chunk split across reads is taken out too' => sub {
    $mock{local}->update(split_events => 1);
    my $m = mark();
    my $raw = stream_of('/v1/chat/completions', stream_body('qwen'));
    $mock{local}->update(split_events => 0);

    my $body = join '', $raw =~ /\r\n[0-9a-f]+\r\n(.*?)(?=\r\n)/gs;
    my @toks = $raw =~ /"content":"(tok\d) "/g;
    is_deeply(\@toks, [qw(tok1 tok2 tok3)], 'every event, whole, in order');
    unlike($raw, qr/usage/, 'no usage chunk, not even a piece of it');
    like($raw, qr/data: \[DONE\]\n\n\r\n0\r\n\r\n$/, "[DONE], then the end");

    my ($r) = reports($m, 1);
    is($r->{completion_tokens}, 3, 'the usage is recorded');
};

# the body of a chunked answer, its chunks joined
sub dechunk {
    my ($raw) = @_;
    my ($body) = $raw =~ /\r\n\r\n(.*)$/s or return '';
    my $out = '';
    while ($body =~ s/^([0-9a-f]+)\r\n//i) {
        my $n = hex $1;
        last if $n == 0;
        $out .= substr($body, 0, $n, '');
        $body =~ s/^\r\n//;
    }
    return $out;
}

# a chat stream's events framed as a provider may frame them
sub chat_events {
    my ($eol) = @_;
    my $chunk = sub {
        'data: ' . $JSON->canonical->encode({ id => 'c', model => 'qwen', @_ }) . $eol x 2
    };
    return ($chunk->(choices => [{ index => 0, delta => { content => 'tok1 ' } }]),
            $chunk->(choices => [{ index => 0, delta => {}, finish_reason => 'stop' }]),
            $chunk->(choices => [], usage => { prompt_tokens => 7, completion_tokens => 3,
                                               total_tokens => 10 }),
            "data: [DONE]$eol$eol");
}

subtest 'a CRLF-framed stream keeps every CRLF when the usage chunk goes' => sub {
    my @cases;

    for my $eol ("\r\n", "\n", "\r") {
        my @ev = chat_events($eol);
        my $usage_at = length($ev[0]) + length($ev[1]);
        my $done_at = $usage_at + length($ev[2]);

        push @cases, [$eol, 'an event a write', chat_events => \@ev],
                     [$eol, 'one write', chat_events => [join '', @ev]],
                     [$eol, 'events in halves', chat_events => \@ev, split_events => 1],
                     [$eol, 'in 7-byte pieces', chat_events => \@ev,
                      split_body => [(7) x 100]];

        # a read ends at each byte of the line ends around the usage chunk
        for my $at (map { ($_ - 4 .. $_ + 1) } $usage_at, $done_at) {
            push @cases, [$eol, "a read ends at $at", chat_events => \@ev,
                          split_body => [$at]];
        }
    }

    for my $case (@cases) {
        my ($eol, $how, %ctl) = @$case;
        my @ev = chat_events($eol);
        (my $name = $eol) =~ s/\r/CR/g;
        $name =~ s/\n/LF/g;
        $mock{local}->update(%ctl);
        my $m = mark();
        my $body = dechunk(stream_of('/v1/chat/completions', stream_body('qwen')));
        $mock{local}->update(chat_events => undef, split_events => 0, split_body => undef);

        is($body, join('', @ev[0, 1, 3]), "$name, $how: every event but the usage chunk, byte for byte");
        my ($r) = reports($m, 1);
        is($r->{completion_tokens}, 3, "$name, $how: the usage is recorded");
    }
};

# the usage of an answer whatever reads split it: inside a name, inside a
# number, between a backslash and what it escapes, inside "data:", a byte
# a read; each the same as the answer in one read
sub split_cases {
    my ($all, @at) = @_;
    return ([], [(1) x length $all], map { [$_] } @at);
}

subtest 'a JSON answer split at every awkward place reads the same' => sub {
    my $json = '{"id":"x","model":"qwen-split","choices":[{"index":0,"message":'
             . '{"role":"assistant","content":"a \\"quoted\\" word"},"finish_reason":"stop"}],'
             . '"usage":{"prompt_tokens":1234,"completion_tokens":56,"total_tokens":1290,'
             . '"prompt_tokens_details":{"cached_tokens":7},'
             . '"completion_tokens_details":{"reasoning_tokens":50}}}';
    my @at = (index($json, 'prompt_tokens"') + 3,      # inside a name
              index($json, '1234') + 2,                # inside a number
              index($json, '1290') + 4,                # just after one
              index($json, '\\"') + 1,                 # after a backslash
              index($json, 'cached_tokens') + 6);

    for my $split (split_cases($json, @at)) {
        my $how = @$split == 0 ? 'one read'
                : @$split == 1 ? "a read ends at $split->[0]" : 'a byte a read';
        $mock{local}->update(chat_body => $json, split_body => (@$split ? $split : undef));
        my $m = mark();
        my $res = $t->chat('qwen');
        $mock{local}->update(chat_body => undef, split_body => undef);

        is($res->{body}, $json, "$how: the answer, untouched");
        my ($r) = reports($m, 1);
        is_deeply([@$r{qw(prompt_tokens completion_tokens total_tokens cached_tokens
                            reasoning_tokens response_model)}],
                  [1234, 56, 1290, 7, 50, 'qwen-split'], "$how: the same usage");
        ok(!$r->{estimated}, "$how: no estimate");
    }
};

subtest 'a stream split at every awkward place reads and cuts the same' => sub {
    my $chunk = sub { 'data: ' . $JSON->canonical->encode({ id => 'c', model => 'qwen-s', @_ }) . "\n\n" };
    my @ev = ($chunk->(choices => [{ index => 0, delta => { content => "a \"b\" c" } }]),
              $chunk->(choices => [], usage => { prompt_tokens => 1234, completion_tokens => 56,
                                                 total_tokens => 1290 }),
              "data: [DONE]\n\n");
    my $all = join '', @ev;
    my $u = length $ev[0];
    my @at = ($u + 2,                                  # inside "data:"
              $u + 5,                                  # between it and its space
              index($all, 'prompt_tokens') + 4,        # inside a name
              index($all, '1234') + 1,                 # inside a number
              index($all, '\\"') + 1);                 # after a backslash

    for my $split (split_cases($all, @at)) {
        my $how = @$split == 0 ? 'one read'
                : @$split == 1 ? "a read ends at $split->[0]" : 'a byte a read';
        $mock{local}->update(chat_events => \@ev, split_body => (@$split ? $split : undef));
        my $m = mark();
        my $body = dechunk(stream_of('/v1/chat/completions', stream_body('qwen')));
        $mock{local}->update(chat_events => undef, split_body => undef);

        is($body, $ev[0] . $ev[2], "$how: every event but the usage chunk");
        my ($r) = reports($m, 1);
        is_deeply([@$r{qw(prompt_tokens completion_tokens total_tokens response_model)}],
                  [1234, 56, 1290, 'qwen-s'], "$how: the same usage");
    }
};

subtest "a client's own include_usage passes through" => sub {
    my $m = mark();
    my $raw = stream_of('/v1/chat/completions',
                        stream_body('qwen', stream_options => { include_usage => JSON::PP::true }));

    like($raw, qr/"choices":\[\],.*"usage":\{/s, 'the client gets the usage chunk it asked for');
    my ($r) = reports($m, 1);
    is($r->{prompt_tokens}, 7, 'and it is recorded');
};

subtest 'a provider that rejects stream_options: estimated' => sub {
    my $m = mark();
    my $raw = stream_of('/v1/chat/completions', stream_body('passive'));

    ok(!exists last_request_json('local')->{stream_options}, 'it is not asked');
    my ($r) = reports($m, 1);
    is($r->{estimated}, 1, 'the tokens are an estimate');
    # "tok1 tok2 tok3 " is 15 bytes of text: 4 tokens at 4 bytes each
    is($r->{completion_tokens}, 4, 'output from the text that reached the client');
    cmp_ok($r->{prompt_tokens}, '>', 0, 'input from the request body');
};

subtest 'an answer without usage, a broken stream: estimated' => sub {
    $mock{local}->update(no_usage => 1);
    my $m = mark();
    $t->chat('qwen');
    $mock{local}->update(no_usage => 0, mode => 'drop', drop_after => 2);
    stream_of('/v1/chat/completions', stream_body('qwen'));
    $mock{local}->update(mode => 'ok');

    my @r = reports($m, 2);
    is($r[0]{estimated}, 1, 'no usage in the JSON: an estimate');
    is($r[0]{completion_tokens}, 4, 'from its content ("Hello from local", 16 bytes)');
    is($r[1]{outcome}, 'stream_broken', 'the broken stream is reported broken');
    is($r[1]{estimated}, 1, 'with an estimate');
    is($r[1]{completion_tokens}, 3, 'of what it delivered ("tok1 tok2 ", 10 bytes)');
};

subtest 'a Responses stream: the usage of response.completed' => sub {
    my $m = mark();
    my $raw = stream_of('/v1/responses',
                        $JSON->encode({ model => 'resp', stream => JSON::PP::true, input => 'hi' }));
    like($raw, qr/response\.completed/, 'the stream is complete');
    my ($r) = reports($m, 1);
    is($r->{prompt_tokens}, 7, 'its input tokens');
    is($r->{completion_tokens}, 3, 'and output');
    ok(!$r->{estimated}, 'no estimate');
};

subtest 'a fallback: the failed attempt without tokens, the answer with' => sub {
    $mock{ext}->update(mode => 'status', status => 500);
    my $m = mark();
    my $res = $t->chat('spill');
    $mock{ext}->update(mode => 'ok');

    is($res->{status}, 200, 'answered by the next step');
    my @r = reports($m, 2);
    is($r[0]{outcome}, 'server_error', 'attempt 1 failed');
    is($r[0]{attempt}, 1, 'attempt 1');
    ok(!defined $r[0]{prompt_tokens}, 'and used nothing');
    is($r[1]{outcome}, 'ok', 'attempt 2 answered');
    is($r[1]{attempt}, 2, 'attempt 2');
    is($r[1]{prompt_tokens}, 7, 'with its tokens');
    is($r[0]{request_id}, $r[1]{request_id}, 'one request id for both');
};

subtest 'the access log: tokens and cost' => sub {
    $mock{local}->update(usage => { prompt_tokens => 1000, completion_tokens => 200,
                                    cached_tokens => 400 });
    my $count = sub { scalar(my @l = split /\n/, $t->read_file('usage.log')) };
    my $before = $count->();
    $t->chat('qwen');
    $t->chat('free');
    $mock{local}->update(usage => {});

    # nginx writes the access log after the answer has gone
    $t->wait_for(sub { $count->() >= $before + 2 }, timeout => 5);
    my @lines = split /\n/, $t->read_file('usage.log');
    # (1000 - 400) x 0.27 + 400 x 0.07 + 200 x 1.10 per 1M tokens
    like($lines[-2], qr/ in=1000 out=200 cached=400 est=0 cost=0\.00041$/,
         'tokens, and the cost exactly');
    like($lines[-1], qr/ in=1000 .* cost=-$/, 'no prices: no cost');
};

subtest 'the request id: the access log\'s, new for every request' => sub {
    my $m = mark();
    my $lines = sub { my @l = split /\n/, $t->read_file('usage.log'); \@l };
    my $before = @{ $lines->() };
    $t->chat('qwen') for 1 .. 3;

    # nginx writes the access log after the answer has gone
    $t->wait_for(sub { @{ $lines->() } >= $before + 3 }, timeout => 5);
    my @logged = map { (split / /)[0] } @{ $lines->() }[$before .. $before + 2];
    my %seen = map { $_ => 1 } @logged;
    is(scalar keys %seen, 3, 'three requests, three ids');
    like($_, qr/^[0-9a-f]{32}$/, "$_: 32 hex digits") for @logged;

    # the reports of earlier requests may still come after the mark
    my %reported;
    $t->wait_for(sub {
        %reported = map { ($_->{fields}{request_id} // '') => 1 }
                    @{ $t->fake_frames('REPORT', since => $m) };
        !grep { !$reported{$_} } @logged }, timeout => 5);
    is(scalar(grep { $reported{$_} } @logged), 3,
       'each REPORT names its request as the access log does');
};

$t->done_testing;
