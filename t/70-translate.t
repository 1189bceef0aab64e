#!/usr/bin/perl

# The Responses API on a provider of chat completions only: the request is
# sent as a chat request, and the answer comes back as the Responses API
# gives it, JSON and stream, as its bytes arrive.  What cannot be
# translated is refused with a 400 naming it; what a chat provider has no
# place for but changes nothing is dropped.  A stream that breaks off, or
# that the provider ends badly, ends as a failed response, with its body
# ended properly.  The answers are read as real clients read them: every
# event named, numbered and complete.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use JSON::PP;
use Tailgate::Gateway;

my $t = Tailgate::Gateway->new->skip_unless_built;
my $JSON = JSON::PP->new->canonical;
my $dir = $t->dir;

my $true = JSON::PP::true;
my $false = JSON::PP::false;

my $policy = {
    providers => {
        chatonly => { upstream => 'tg_chatonly', zone => 'local',
                      endpoints => ['chat'] },
        native   => { upstream => 'tg_native', zone => 'local',
                      endpoints => [qw(chat responses)],
                      health => { down_after => 100 } },
        breaks   => { upstream => 'tg_breaks', zone => 'local',
                      endpoints => ['chat'], health => { down_after => 100 } },
        forced   => { upstream => 'tg_forced', zone => 'local',
                      endpoints => [qw(chat responses)],
                      translate_responses => $true },
        never    => { upstream => 'tg_never', zone => 'local',
                      endpoints => ['chat'], translate_responses => $false },
        quiet    => { upstream => 'tg_quiet', zone => 'local',
                      endpoints => ['chat'], usage => 'passive' },
        flaky    => { upstream => 'tg_flaky', zone => 'local',
                      endpoints => ['chat'] },
        outside  => { upstream => 'tg_outside', scheme => 'http',
                      host => 'api.outside.test', zone => 'external',
                      endpoints => ['chat'] },
    },
    routes => {
        cm     => { steps => [{ provider => 'chatonly', model => 'chat-model' }] },
        nat    => { steps => [{ provider => 'native', model => 'native-model' }] },
        forced => { steps => [{ provider => 'forced', model => 'f' }] },
        never  => { steps => [{ provider => 'never', model => 'n' }] },
        quiet  => { steps => [{ provider => 'quiet', model => 'q' }] },
        flaky  => { steps => [{ provider => 'flaky', model => 'x' }] },
        br     => { steps => [{ provider => 'breaks', model => 'b' }] },
        out    => { steps => [{ provider => 'outside', model => 'o' }] },
        edited => { steps => [{ provider => 'chatonly', model => 'chat-model',
                                adjust => [{ set => { seed => 42 },
                                             drop => ['top_p'] }] }] },
        spill  => { steps => [{ provider => 'native', model => 'native-model' },
                              { provider => 'chatonly', model => 'chat-model' }],
                    fallback => { on => 'errors' } },
    },
    usage => {
        log      => "$dir/usage.jsonl",
        currency => 'USD',
        prices   => { chatonly => { 'chat-model' => { input => 1, output => 2 } } },
    },
};

my $key = $t->start_gateway(
    policy  => $policy,
    private => [],
    http    => q{
        log_format xl '$tailgate_route $tailgate_provider $status '
                      '$tailgate_tokens_in $tailgate_tokens_out '
                      '$tailgate_cost failed="$tailgate_failures" $request_id';
    },
    server  => 'access_log %%DIR%%/xl.log xl;');

my %mock = map { $_ => $t->mock($_) } qw(chatonly native forced never quiet flaky breaks
                                    outside);

# the provider's own words must never reach a client through the gateway
$t->allow_log(qr/broke off its event stream/, qr/refused for translation/);


# --- helpers --------------------------------------------------------------

sub responses {
    my ($body, %opt) = @_;
    return $t->post_json('/v1/responses', $key,
                         ref $body ? $JSON->encode($body) : $body,
                         stream => $opt{stream}, timeout => 15,
                         headers => $opt{headers} // {});
}

# the last request a mock received, as JSON (undef: none since $n)
sub sent {
    my ($name, $n) = @_;
    my $r = $mock{$name}->requests;
    return undef if defined $n && @$r <= $n;
    return $r->[-1];
}

sub count { scalar @{ $mock{$_[0]}->requests } }

# a Responses event stream: [event name, data] per event; every event has
# both an event line and a data line, and they agree
sub events {
    my ($body) = @_;
    my @ev;

    for my $block (split /\n\n/, $body) {
        next unless length $block;
        my ($name) = $block =~ /^event: (.*)$/m;
        my @data = $block =~ /^data: ?(.*)$/mg;
        my $data = eval { decode_json(join "\n", @data) };
        push @ev, [ $name, $data, $block ];
    }

    return @ev;
}

sub names { map { $_->[0] // '?' } @_ }

# every event is a named JSON object of its type, numbered from 0 up
sub well_formed {
    my ($what, @ev) = @_;

    my @bad = grep { !defined $_->[0] || ref $_->[1] ne 'HASH'
                     || ($_->[1]{type} // '') ne $_->[0] } @ev;
    ok(!@bad, "$what: every event is named and typed as its data says")
        or diag(join "\n---\n", map { $_->[2] } @bad[0 .. ($#bad < 2 ? $#bad : 2)]);

    my @seq = map { ref $_->[1] eq 'HASH' ? $_->[1]{sequence_number} : undef } @ev;
    is_deeply(\@seq, [0 .. $#ev], "$what: sequence_number 0 .. " . $#ev);
}

sub of_type { my ($type, @ev) = @_; grep { $_->[0] eq $type } @ev }

sub xl_lines { scalar(() = $t->read_file('xl.log') =~ /\n/g) }

# the access log line of the request $code makes
sub logged(&) {
    my ($code) = @_;
    my $n = -e "$dir/xl.log" ? xl_lines() : 0;
    my @r = $code->();
    $t->wait_for(sub { -e "$dir/xl.log" && xl_lines() > $n }, timeout => 5);
    my @l = split /\n/, $t->read_file('xl.log');
    return ($l[-1] // '', @r);
}

sub chat_chunk {
    my (%delta) = @_;
    my $finish = delete $delta{finish};
    return 'data: ' . $JSON->encode({ choices => [{ index => 0,
        delta => \%delta, (defined $finish ? (finish_reason => $finish) : ()) }] })
        . "\n\n";
}


# --- requests ---------------------------------------------------------------

subtest 'a JSON answer through a provider of chat completions only' => sub {
    $mock{chatonly}->set;

    my $res = responses({ model => 'cm', input => 'Say hi',
                          instructions => 'Be brief.', max_output_tokens => 64,
                          temperature => 0.2, top_p => 0.5, store => $true,
                          metadata => { a => 'b' }, user => 'u-1' });

    is($res->{status}, 200, 'status 200');
    like($res->{headers}{'content-type'}, qr{^application/json}, 'JSON');

    my $got = sent('chatonly');
    is($got->{path}, '/v1/chat/completions', 'the provider was asked for a chat completion');
    is_deeply($got->{json}, {
        model => 'chat-model',
        messages => [ { role => 'system', content => 'Be brief.' },
                      { role => 'user', content => 'Say hi' } ],
        max_tokens => 64, temperature => 0.2, top_p => 0.5, user => 'u-1',
    }, 'with the chat request of the same meaning, and nothing else');
    is($got->{headers}{'content-length'}, length $got->{body},
       'its Content-Length is the new body\'s');

    my $r = $t->json($res);
    like($r->{id}, qr/^resp_\w+$/, 'a response id');
    is($r->{object}, 'response', 'object: response');
    is($r->{status}, 'completed', 'status: completed');
    is($r->{model}, 'cm', 'the model the client asked for');
    like($r->{created_at}, qr/^\d+$/, 'created_at');
    is(scalar @{ $r->{output} }, 1, 'one output item');
    my $msg = $r->{output}[0];
    is($msg->{type}, 'message', 'a message');
    is($msg->{role}, 'assistant', 'of the assistant');
    like($msg->{id}, qr/^msg_/, 'with an id');
    is_deeply([ map { [$_->{type}, $_->{text}] } @{ $msg->{content} } ],
              [[ 'output_text', 'Hello from chatonly' ]], 'its text');
    is_deeply($r->{usage}, { input_tokens => 7, output_tokens => 3,
                             total_tokens => 10,
                             input_tokens_details => { cached_tokens => 0 },
                             output_tokens_details => { reasoning_tokens => 0 } },
              'usage in the Responses API\'s names');
    is($r->{error}, undef, 'no error');
};

subtest 'input items: messages, parts, images, function calls and outputs' => sub {
    my $res = responses({ model => 'cm', input => [
        { role => 'developer', content => 'Use tools.' },
        { type => 'message', role => 'user', content => [
            { type => 'input_text', text => 'What is ' },
            { type => 'input_text', text => 'the "weather"?' } ] },
        { type => 'message', role => 'assistant', id => 'msg_0',
          status => 'completed', content => [
            { type => 'output_text', text => 'Let me check.', annotations => [] } ] },
        { type => 'function_call', call_id => 'call_1', name => 'get_weather',
          arguments => '{"city":"Paris"}', id => 'fc_1', status => 'completed' },
        { type => 'function_call', call_id => 'call_2', name => 'get_time',
          arguments => '{}' },
        { type => 'reasoning', id => 'rs_1', summary => [],
          encrypted_content => 'opaque' },
        { type => 'function_call_output', call_id => 'call_1',
          output => '{"temp":21}' },
        { type => 'function_call_output', call_id => 'call_2', output => [
            { type => 'input_text', text => '12:00' } ] },
        { type => 'function_call', call_id => 'call_3', name => 'again',
          arguments => '{}' },
        { type => 'function_call_output', call_id => 'call_3', output => '' },
        { role => 'user', content => [
            { type => 'input_text', text => 'And this?' },
            { type => 'input_image', image_url => 'data:image/png;base64,AAAA',
              detail => 'low' } ] },
        { role => 'system', content => 'Be kind.' },
    ] });

    is($res->{status}, 200, 'status 200') or diag($res->{body});

    is_deeply(sent('chatonly')->{json}{messages}, [
        { role => 'system', content => 'Use tools.' },
        { role => 'user', content => 'What is the "weather"?' },
        { role => 'assistant', content => 'Let me check.', tool_calls => [
            { id => 'call_1', type => 'function',
              function => { name => 'get_weather', arguments => '{"city":"Paris"}' } },
            { id => 'call_2', type => 'function',
              function => { name => 'get_time', arguments => '{}' } } ] },
        { role => 'tool', tool_call_id => 'call_1', content => '{"temp":21}' },
        { role => 'tool', tool_call_id => 'call_2', content => '12:00' },
        { role => 'assistant', content => undef, tool_calls => [
            { id => 'call_3', type => 'function',
              function => { name => 'again', arguments => '{}' } } ] },
        { role => 'tool', tool_call_id => 'call_3', content => '' },
        { role => 'user', content => [
            { type => 'text', text => 'And this?' },
            { type => 'image_url', image_url => {
                url => 'data:image/png;base64,AAAA', detail => 'low' } } ] },
        { role => 'system', content => 'Be kind.' },
    ], 'one chat message each, the calls with the assistant\'s text, '
       . 'text parts joined, an image as chat\'s part, reasoning left out');
};

subtest 'tools, tool_choice, text.format, reasoning, sampling' => sub {
    my $params = { type => 'object', properties => { city => { type => 'string' } },
                   required => ['city'] };
    my $schema = { type => 'object', properties => { t => { type => 'number' } } };

    my $res = responses({ model => 'cm', input => 'hi',
        tools => [ { type => 'function', name => 'get_weather',
                     description => 'The weather', parameters => $params,
                     strict => $true },
                   { type => 'function', name => 'noop' } ],
        tool_choice => 'required', parallel_tool_calls => $false,
        text => { format => { type => 'json_schema', name => 'w',
                              schema => $schema, strict => $true,
                              description => 'a reading' },
                  verbosity => 'low' },
        reasoning => { effort => 'low', summary => 'auto' },
        stream => $false });
    is($res->{status}, 200, 'status 200') or diag($res->{body});

    my $j = sent('chatonly')->{json};
    is_deeply($j->{tools}, [
        { type => 'function', function => { name => 'get_weather',
            description => 'The weather', parameters => $params, strict => $true } },
        { type => 'function', function => { name => 'noop' } } ],
        'function tools in chat\'s shape');
    is($j->{tool_choice}, 'required', 'tool_choice');
    is($j->{parallel_tool_calls}, $false, 'parallel_tool_calls');
    is_deeply($j->{response_format}, { type => 'json_schema', json_schema => {
        name => 'w', schema => $schema, strict => $true,
        description => 'a reading' } }, 'text.format json_schema as response_format');
    is($j->{reasoning_effort}, 'low', 'reasoning.effort as reasoning_effort');
    is($j->{stream}, $false, 'stream: false');
    ok(!exists $j->{text} && !exists $j->{reasoning}, 'nothing of the Responses shape');

    $res = responses({ model => 'cm', input => 'hi',
        tool_choice => { type => 'function', name => 'get_weather' },
        tools => [ { type => 'function', name => 'get_weather' } ],
        text => { format => { type => 'json_object' } } });
    is($res->{status}, 200, 'a named function');
    $j = sent('chatonly')->{json};
    is_deeply($j->{tool_choice}, { type => 'function', function => { name => 'get_weather' } },
              'tool_choice for one function');
    is_deeply($j->{response_format}, { type => 'json_object' }, 'json_object');

    for my $choice (qw(auto none)) {
        $res = responses({ model => 'cm', input => 'hi', tool_choice => $choice,
                           tools => [ { type => 'function', name => 'f' } ],
                           text => { format => { type => 'text' } } });
        is($res->{status}, 200, "tool_choice $choice");
        is(sent('chatonly')->{json}{tool_choice}, $choice, "sent as $choice");
        ok(!exists sent('chatonly')->{json}{response_format}, 'text: no response_format');
    }

    # hosted web search and namespaced groups are not offered to a chat model
    $res = responses({ model => 'cm', input => 'hi', tool_choice => 'auto',
        parallel_tool_calls => $true,
        tools => [ { type => 'web_search', external_web_access => $true },
                   { type => 'function', name => 'f', parameters => $params },
                   { type => 'namespace', name => 'agents', description => 'd',
                     tools => [ { type => 'function', name => 'spawn' } ] },
                   { type => 'web_search_preview' } ] });
    is($res->{status}, 200, 'web_search and namespace tools: 200') or diag($res->{body});
    $j = sent('chatonly')->{json};
    is_deeply($j->{tools}, [ { type => 'function', function => { name => 'f',
                                                    parameters => $params } } ],
              'only the function tool is sent');
    is($j->{tool_choice}, 'auto', 'with the choice');
    is($j->{parallel_tool_calls}, $true, 'and parallel_tool_calls');

    $res = responses({ model => 'cm', input => 'hi', tool_choice => 'auto',
        parallel_tool_calls => $false, tools => [ { type => 'web_search' } ] });
    is($res->{status}, 200, 'nothing but web_search: 200');
    $j = sent('chatonly')->{json};
    ok(!exists $j->{tools} && !exists $j->{tool_choice} && !exists $j->{parallel_tool_calls},
       'no tools, so no tool_choice or parallel_tool_calls either');

    for my $choice ('required', { type => 'function', name => 'spawn' }) {
        $res = responses({ model => 'cm', input => 'hi', tool_choice => $choice,
                           tools => [ { type => 'web_search' } ] });
        $t->is_openai_error($res, 400, 'invalid_value',
                            'tool_choice ' . $JSON->encode($choice) . ' with no function to give: 400');
        is($t->error($res)->{param}, 'tool_choice', 'naming tool_choice');
    }
};

subtest 'step edits apply to the chat request' => sub {
    my $res = responses({ model => 'edited', input => 'hi', top_p => 0.3 });
    is($res->{status}, 200, 'status 200') or diag($res->{body});
    my $j = sent('chatonly')->{json};
    is($j->{seed}, 42, 'set');
    ok(!exists $j->{top_p}, 'drop');
    is($j->{messages}[0]{content}, 'hi', 'the translated request it edited');
};

subtest 'function calls in a JSON answer' => sub {
    $mock{chatonly}->set(tool_calls => [
        { id => 'call_a', name => 'get_weather', arguments => '{"city":"Paris"}' },
        { id => 'call_b', name => 'get_time', arguments => '{}' } ]);

    my $r = $t->json(responses({ model => 'cm', input => 'weather?',
        tools => [ { type => 'function', name => 'get_weather' } ] }));

    is($r->{status}, 'completed', 'completed');
    is_deeply([ map { [ @$_{qw(type call_id name arguments status)} ] } @{ $r->{output} } ],
              [ [ 'function_call', 'call_a', 'get_weather', '{"city":"Paris"}', 'completed' ],
                [ 'function_call', 'call_b', 'get_time', '{}', 'completed' ] ],
              'each call an output item: call_id, name, arguments');
    like($_->{id}, qr/^fc_/, 'with an item id') for @{ $r->{output} };

    $mock{chatonly}->set(content => 'Checking.', tool_calls => [
        { id => 'call_c', name => 'get_weather', arguments => '{}' } ]);
    $r = $t->json(responses({ model => 'cm', input => 'weather?' }));
    is_deeply([ map { $_->{type} } @{ $r->{output} } ], [qw(message function_call)],
              'text, then the call');
    is($r->{output}[0]{content}[0]{text}, 'Checking.', 'the text');
    isnt($r->{output}[0]{id}, $r->{output}[1]{id}, 'items with ids of their own');

    $mock{chatonly}->set;
};


# --- streams ----------------------------------------------------------------

subtest 'a stream: the whole event sequence, numbered, with usage' => sub {
    $mock{chatonly}->set(stream_chunks => 3);

    my $res = responses({ model => 'cm', input => 'hi', stream => $true },
                        stream => 1);
    is($res->{status}, 200, 'status 200');
    like($res->{headers}{'content-type'}, qr{^text/event-stream}, 'an event stream');
    is($res->{error}, undef, 'the body ended properly');

    my $j = sent('chatonly')->{json};
    is($j->{stream}, $true, 'the provider was asked for a stream');
    is_deeply($j->{stream_options}, { include_usage => $true }, 'with its usage');

    my @ev = events($res->{body});
    is_deeply([ names(@ev) ], [ qw(response.created response.in_progress
        response.output_item.added response.content_part.added),
        ('response.output_text.delta') x 3,
        qw(response.output_text.done response.content_part.done
           response.output_item.done response.completed) ],
        'every event real clients read, in order');
    well_formed('text stream', @ev);

    my %d = map { $_->[0] => $_->[1] } @ev;
    my $text = join '', map { $_->[1]{delta} } of_type('response.output_text.delta', @ev);
    is($text, 'tok1 tok2 tok3 ', 'the deltas carry the text');
    is($d{'response.output_text.done'}{text}, $text, 'output_text.done repeats it');
    is($d{'response.content_part.done'}{part}{text}, $text, 'so does content_part.done');
    is($d{'response.output_item.done'}{item}{content}[0]{text}, $text,
       'and output_item.done');
    is($d{'response.output_item.done'}{item}{status}, 'completed', 'item completed');
    is($d{'response.output_item.added'}{item}{status}, 'in_progress', 'added in progress');

    my %ids = map { ($_->[1]{item_id} // $_->[1]{item}{id} // '') => 1 }
              grep { $_->[0] =~ /output_item|content_part|output_text/ } @ev;
    is(scalar keys %ids, 1, 'one item id throughout');
    my ($id) = keys %ids;
    like($id, qr/^msg_/, 'a message\'s');

    my $c = $d{'response.completed'}{response};
    is($c->{status}, 'completed', 'response.completed');
    is($c->{id}, $d{'response.created'}{response}{id}, 'the same response id');
    is($d{'response.created'}{response}{status}, 'in_progress', 'created in progress');
    is($c->{output}[0]{content}[0]{text}, $text, 'with the output');
    is($c->{output}[0]{id}, $id, 'the same item');
    is_deeply([ @{ $c->{usage} }{qw(input_tokens output_tokens total_tokens)} ],
              [ 7, 3, 10 ], 'and usage');
    unlike($res->{body}, qr/\[DONE\]|chat\.completion/, 'nothing of the chat stream shows');
};

subtest 'a stream of function calls' => sub {
    $mock{chatonly}->set(tool_calls => [
        { id => 'call_a', name => 'get_weather', arguments => '{"city":"Paris, France"}' },
        { id => 'call_b', name => 'get_time', arguments => '{"tz":"CET"}' } ]);

    my $res = responses({ model => 'cm', input => 'hi', stream => $true,
        tools => [ { type => 'function', name => 'get_weather' } ] }, stream => 1);
    is($res->{status}, 200, 'status 200');
    my @ev = events($res->{body});
    well_formed('call stream', @ev);

    my @added = of_type('response.output_item.added', @ev);
    is_deeply([ map { [ @{ $_->[1]{item} }{qw(type name call_id status)},
                        $_->[1]{output_index} ] } @added ],
              [ [ 'function_call', 'get_weather', 'call_a', 'in_progress', 0 ],
                [ 'function_call', 'get_time', 'call_b', 'in_progress', 1 ] ],
              'each call announced with its name and call_id');

    for my $i (0, 1) {
        my $item_id = $added[$i][1]{item}{id};
        my $args = join '', map { $_->[1]{delta} }
                   grep { $_->[1]{item_id} eq $item_id }
                   of_type('response.function_call_arguments.delta', @ev);
        my $want = $i ? '{"tz":"CET"}' : '{"city":"Paris, France"}';
        is($args, $want, "call $i: the argument deltas");
        my ($done) = grep { $_->[1]{item_id} eq $item_id }
                     of_type('response.function_call_arguments.done', @ev);
        is($done->[1]{arguments}, $want, "call $i: arguments.done");
        my ($idone) = grep { $_->[1]{item}{id} eq $item_id }
                      of_type('response.output_item.done', @ev);
        is_deeply([ @{ $idone->[1]{item} }{qw(type call_id name arguments status)} ],
                  [ 'function_call', $i ? 'call_b' : 'call_a',
                    $i ? 'get_time' : 'get_weather', $want, 'completed' ],
                  "call $i: output_item.done whole");
    }

    my @n = names(@ev);
    my ($first_done) = grep { $n[$_] eq 'response.output_item.done' } 0 .. $#n;
    my ($second_added) = grep { $n[$_] eq 'response.output_item.added' } reverse 0 .. $#n;
    ok($first_done < $second_added, 'the first call is done before the second starts');

    my ($c) = of_type('response.completed', @ev);
    is_deeply([ map { $_->{call_id} } @{ $c->[1]{response}{output} } ],
              [qw(call_a call_b)], 'response.completed lists both calls');

    # text first, then a call
    $mock{chatonly}->set(content => 'x', stream_chunks => 2, tool_calls => [
        { id => 'call_z', name => 'f', arguments => '{"a":1}' } ]);
    @ev = events(responses({ model => 'cm', input => 'hi', stream => $true },
                           stream => 1)->{body});
    well_formed('text and call', @ev);
    is_deeply([ map { $_->[1]{item}{type} } of_type('response.output_item.done', @ev) ],
              [qw(message function_call)], 'a message item, then the call');
    my ($tdone) = of_type('response.output_text.done', @ev);
    is($tdone->[1]{text}, 'tok1 tok2 ', 'the message\'s text');

    $mock{chatonly}->set;
};

subtest 'a stream is passed on as it comes, not held back' => sub {
    $mock{chatonly}->set(stream_gate => 'gate-70', stream_chunks => 3);

    my $conn = $t->open_post('/v1/responses',
        { model => 'cm', input => 'hi', stream => $true }, key => $key);
    my $first = $conn->read_until(qr/"delta":"tok1 "/, 10);
    my $early = $conn->raw;
    ok($first, 'the first delta reached the client while the provider held the rest');
    unlike($early, qr/tok2|response\.completed/, 'nothing after it yet');

    $t->write_file('gate-70', '');
    ok($conn->read_all(10), 'the stream then ends');
    like($conn->raw, qr/response\.completed.*\r\n0\r\n\r\n$/s, 'completed, a whole chunked body');

    $mock{chatonly}->set;
};


# --- refusals ---------------------------------------------------------------

subtest 'what cannot be translated is refused, naming it' => sub {
    my @cases = (
        [ { previous_response_id => 'resp_1' }, 'previous_response_id',
          qr/keep no conversation state.*whole conversation/ ],
        [ { conversation => 'conv_1' }, 'conversation', qr/conversation/ ],
        [ { conversation => { id => 'conv_1' } }, 'conversation', qr/conversation/ ],
        [ { background => $true }, 'background', qr/background/ ],
        [ { tools => [{ type => 'code_interpreter', container => { type => 'auto' } }] },
          'tools[0].type', qr/only function tools/ ],
        [ { tools => [{ type => 'function', name => 'f' }, { type => 'file_search' }] },
          'tools[1].type', qr/file_search/ ],
        [ { tools => [{ type => 'custom', name => 'apply_patch' }] }, 'tools[0].type', qr/custom/ ],
        [ { tools => [{ type => 'mcp', server_label => 'x' }] }, 'tools[0].type', qr/mcp/ ],
        [ { tools => [{ type => 'function', name => 'f', foo => 1 }] }, 'tools[0].foo',
          qr/'tools\[0\]\.foo'/ ],
        [ { input => [{ type => 'file_search_call', id => 'x' }] }, 'input[0].type',
          qr/file_search_call/ ],
        [ { input => [{ type => 'item_reference', id => 'x' }] }, 'input[0].type',
          qr/item_reference/ ],
        [ { input => [{ role => 'user', content => [{ type => 'input_file', filename => 'f' }] }] },
          'input[0].content[0].filename', qr/filename/ ],
        [ { input => [{ role => 'user', content => [{ type => 'input_audio' }] }] },
          'input[0].content[0].type', qr/input_audio/ ],
        [ { input => [{ role => 'assistant', content => [{ type => 'input_image', image_url => 'x' }] }] },
          'input[0].content[0].type', qr/input_image/ ],
        [ { input => [{ role => 'user', content => [{ type => 'input_image', file_id => 'f' }] }] },
          'input[0].content[0].file_id', qr/file_id/ ],
        [ { input => [{ role => 'user', content => [{ type => 'input_image' }] }] },
          'input[0].content[0].image_url', qr/image_url/ ],
        [ { input => [{ role => 'user', content => 'x', name => 'bob' }] }, 'input[0].name',
          qr/'input\[0\]\.name'/ ],
        [ { input => [{ type => 'function_call_output', call_id => 'c', output => 'o', x => 1 }] },
          'input[0].x', qr/'input\[0\]\.x'/ ],
        [ { include => ['file_search_call.results'] }, 'include[0]', qr/include\[0\]/ ],
        [ { include => ['reasoning.encrypted_content', 'message.output_text.logprobs'] },
          'include[1]', qr/include\[1\]/ ],
        [ { truncation => 'auto' }, 'truncation', qr/disabled/ ],
        [ { top_logprobs => 2 }, 'top_logprobs', qr/top_logprobs/ ],
        [ { max_tool_calls => 3 }, 'max_tool_calls', qr/max_tool_calls/ ],
        [ { prompt => { id => 'pmpt_1' } }, 'prompt', qr/prompt/ ],
        [ { text => { format => { type => 'json_schema', name => 'n', schema => {}, foo => 1 } } },
          'text.format.foo', qr/text\.format\.foo/ ],
        [ { text => { foo => 1 } }, 'text.foo', qr/text\.foo/ ],
        [ { reasoning => { effort => 'low', foo => 1 } }, 'reasoning.foo', qr/reasoning\.foo/ ],
        [ { tool_choice => { type => 'web_search_preview' } }, 'tool_choice', qr/tool_choice/ ],
        [ { tool_choice => { type => 'allowed_tools', tools => [] } }, 'tool_choice', qr/tool_choice/ ],
        [ { frobnicate => 1 }, 'frobnicate', qr/'frobnicate'/ ],
    );

    my $before = count('chatonly');

    for my $c (@cases) {
        my ($extra, $param, $msg) = @$c;
        my $body = { model => 'cm', input => 'hi', %$extra };
        my $res = responses($body);
        my $what = $JSON->encode($extra);
        $t->is_openai_error($res, 400, 'unsupported_parameter', "$what: 400 unsupported_parameter");
        my $e = $t->error($res) // {};
        is($e->{param}, $param, "$what: param $param");
        is($e->{type}, 'invalid_request_error', "$what: invalid_request_error");
        like($e->{message} // '', $msg, "$what: the message says what");
    }

    is(count('chatonly'), $before, 'none of them reached the provider');

    # the same fields go to a provider of the Responses API as they are
    my $res = responses({ model => 'nat', input => 'hi', previous_response_id => 'resp_1',
                          tools => [{ type => 'web_search' }] });
    is($res->{status}, 200, 'a native provider gets them');
    is(sent('native')->{json}{previous_response_id}, 'resp_1', 'untouched');
};

subtest 'what changes nothing is allowed, and left out' => sub {
    my $res = responses({ model => 'cm', input => 'hi', store => $false,
        include => ['reasoning.encrypted_content'], metadata => { k => 'v' },
        prompt_cache_key => 'k1', safety_identifier => 's1', service_tier => 'auto',
        truncation => 'disabled', background => $false, previous_response_id => undef,
        conversation => undef, stream_options => { include_obfuscation => $false },
        text => { verbosity => 'low' }, reasoning => { summary => 'auto' } });
    is($res->{status}, 200, 'status 200') or diag($res->{body});
    is_deeply([ sort keys %{ sent('chatonly')->{json} } ], [qw(messages model)],
              'the chat request holds none of them');

    for my $v ([], undef) {
        $res = responses({ model => 'cm', input => 'hi', include => $v, store => undef });
        is($res->{status}, 200, 'include ' . $JSON->encode($v));
    }
};


# --- odd values: every field read, missing, empty, null, of another type,
# huge, twice --------------------------------------------------------------

subtest 'odd values' => sub {
    my $before = count('chatonly');
    my @refused = (
        # [ raw body, status, code, param ]
        [ '{"model":"cm"}', 'missing_required_parameter', 'input' ],
        [ '{"model":"cm","input":null}', 'invalid_type', 'input' ],
        [ '{"model":"cm","input":5}', 'invalid_type', 'input' ],
        [ '{"model":"cm","input":{}}', 'invalid_type', 'input' ],
        [ '{"model":"cm","input":true}', 'invalid_type', 'input' ],
        [ '{"model":"cm","input":[]}', 'invalid_value', 'input' ],
        [ '{"model":"cm","input":[{"type":"reasoning","summary":[]}]}', 'invalid_value', 'input' ],
        [ '{"model":"cm","input":"a","input":"b"}', undef, 'input' ],
        [ '{"model":"cm","input":[5]}', 'invalid_type', 'input[0]' ],
        [ '{"model":"cm","input":[null]}', 'invalid_type', 'input[0]' ],
        [ '{"model":"cm","input":["hi"]}', 'invalid_type', 'input[0]' ],
        [ '{"model":"cm","input":[{}]}', 'missing_required_parameter', 'input[0].role' ],
        [ '{"model":"cm","input":[{"role":"user"}]}', 'missing_required_parameter', 'input[0].content' ],
        [ '{"model":"cm","input":[{"content":"x"}]}', 'missing_required_parameter', 'input[0].role' ],
        [ '{"model":"cm","input":[{"role":"wizard","content":"x"}]}', 'invalid_value', 'input[0].role' ],
        [ '{"model":"cm","input":[{"role":"","content":"x"}]}', 'invalid_value', 'input[0].role' ],
        [ '{"model":"cm","input":[{"role":5,"content":"x"}]}', 'invalid_type', 'input[0].role' ],
        [ '{"model":"cm","input":[{"role":null,"content":"x"}]}', 'invalid_type', 'input[0].role' ],
        [ '{"model":"cm","input":[{"role":"user","role":"user","content":"x"}]}', undef, 'input[0].role' ],
        [ '{"model":"cm","input":[{"role":"user","content":5}]}', 'invalid_type', 'input[0].content' ],
        [ '{"model":"cm","input":[{"role":"user","content":null}]}', 'invalid_type', 'input[0].content' ],
        [ '{"model":"cm","input":[{"role":"user","content":"a","content":"b"}]}', undef, 'input[0].content' ],
        [ '{"model":"cm","input":[{"role":"user","content":[5]}]}', 'invalid_type', 'input[0].content[0]' ],
        [ '{"model":"cm","input":[{"role":"user","content":[{"text":"x"}]}]}', 'missing_required_parameter', 'input[0].content[0].type' ],
        [ '{"model":"cm","input":[{"role":"user","content":[{"type":5,"text":"x"}]}]}', 'invalid_type', 'input[0].content[0].type' ],
        [ '{"model":"cm","input":[{"role":"user","content":[{"type":"input_text"}]}]}', 'missing_required_parameter', 'input[0].content[0].text' ],
        [ '{"model":"cm","input":[{"role":"user","content":[{"type":"input_text","text":null}]}]}', 'invalid_type', 'input[0].content[0].text' ],
        [ '{"model":"cm","input":[{"role":"user","content":[{"type":"input_text","text":"a","text":"b"}]}]}', undef, 'input[0].content[0].text' ],
        [ '{"model":"cm","input":[{"type":5}]}', 'invalid_type', 'input[0].type' ],
        [ '{"model":"cm","input":[{"type":"message","type":"message","role":"user","content":"x"}]}', undef, 'input[0].type' ],
        [ '{"model":"cm","input":[{"type":""}]}', 'unsupported_parameter', 'input[0].type' ],
        [ '{"model":"cm","input":[{"type":"function_call","name":"f","arguments":"{}"}]}', 'missing_required_parameter', 'input[0].call_id' ],
        [ '{"model":"cm","input":[{"type":"function_call","call_id":"c","arguments":"{}"}]}', 'missing_required_parameter', 'input[0].name' ],
        [ '{"model":"cm","input":[{"type":"function_call","call_id":"c","name":"f"}]}', 'missing_required_parameter', 'input[0].arguments' ],
        [ '{"model":"cm","input":[{"type":"function_call","call_id":"c","name":"f","arguments":{}}]}', 'invalid_type', 'input[0].arguments' ],
        [ '{"model":"cm","input":[{"type":"function_call","call_id":5,"name":"f","arguments":"{}"}]}', 'invalid_type', 'input[0].call_id' ],
        [ '{"model":"cm","input":[{"type":"function_call","call_id":"c","call_id":"d","name":"f","arguments":"{}"}]}', undef, 'input[0].call_id' ],
        [ '{"model":"cm","input":[{"type":"function_call_output","call_id":"c"}]}', 'missing_required_parameter', 'input[0].output' ],
        [ '{"model":"cm","input":[{"type":"function_call_output","output":"o"}]}', 'missing_required_parameter', 'input[0].call_id' ],
        [ '{"model":"cm","input":[{"type":"function_call_output","call_id":"c","output":5}]}', 'invalid_type', 'input[0].output' ],
        [ '{"model":"cm","input":[{"type":"function_call_output","call_id":"c","output":null}]}', 'invalid_type', 'input[0].output' ],
        [ '{"model":"cm","input":"hi","instructions":5}', 'invalid_type', 'instructions' ],
        [ '{"model":"cm","input":"hi","instructions":[]}', 'invalid_type', 'instructions' ],
        [ '{"model":"cm","input":"hi","instructions":"a","instructions":"b"}', undef, 'instructions' ],
        [ '{"model":"cm","input":"hi","max_output_tokens":"5"}', 'invalid_type', 'max_output_tokens' ],
        [ '{"model":"cm","input":"hi","max_output_tokens":-1}', 'invalid_value', 'max_output_tokens' ],
        [ '{"model":"cm","input":"hi","max_output_tokens":1.5}', 'invalid_value', 'max_output_tokens' ],
        [ '{"model":"cm","input":"hi","max_output_tokens":1e3}', 'invalid_value', 'max_output_tokens' ],
        [ '{"model":"cm","input":"hi","max_output_tokens":123456789012}', 'invalid_value', 'max_output_tokens' ],
        [ '{"model":"cm","input":"hi","temperature":"hot"}', 'invalid_type', 'temperature' ],
        [ '{"model":"cm","input":"hi","temperature":true}', 'invalid_type', 'temperature' ],
        [ '{"model":"cm","input":"hi","top_p":{}}', 'invalid_type', 'top_p' ],
        [ '{"model":"cm","input":"hi","temperature":1,"temperature":2}', undef, 'temperature' ],
        [ '{"model":"cm","input":"hi","parallel_tool_calls":"yes"}', 'invalid_type', 'parallel_tool_calls' ],
        [ '{"model":"cm","input":"hi","user":5}', 'invalid_type', 'user' ],
        [ '{"model":"cm","input":"hi","tools":[5]}', 'invalid_type', 'tools[0]' ],
        [ '{"model":"cm","input":"hi","tools":[{}]}', 'missing_required_parameter', 'tools[0].type' ],
        [ '{"model":"cm","input":"hi","tools":[{"type":5}]}', 'invalid_type', 'tools[0].type' ],
        [ '{"model":"cm","input":"hi","tools":[{"type":null}]}', 'invalid_type', 'tools[0].type' ],
        [ '{"model":"cm","input":"hi","tools":[{"type":"function"}]}', 'missing_required_parameter', 'tools[0].name' ],
        [ '{"model":"cm","input":"hi","tools":[{"type":"function","name":5}]}', 'invalid_type', 'tools[0].name' ],
        [ '{"model":"cm","input":"hi","tools":[{"type":"function","name":"f","parameters":"x"}]}', 'invalid_type', 'tools[0].parameters' ],
        [ '{"model":"cm","input":"hi","tools":[{"type":"function","name":"f","strict":"x"}]}', 'invalid_type', 'tools[0].strict' ],
        [ '{"model":"cm","input":"hi","tools":[{"type":"function","name":"f","name":"g"}]}', undef, 'tools[0].name' ],
        [ '{"model":"cm","input":"hi","tools":[{"type":"function","type":"function","name":"f"}]}', undef, 'tools[0].type' ],
        [ '{"model":"cm","input":"hi","tool_choice":"maybe"}', 'invalid_value', 'tool_choice' ],
        [ '{"model":"cm","input":"hi","tool_choice":""}', 'invalid_value', 'tool_choice' ],
        [ '{"model":"cm","input":"hi","tool_choice":5}', 'invalid_type', 'tool_choice' ],
        [ '{"model":"cm","input":"hi","tool_choice":{"type":"function"}}', 'invalid_value', 'tool_choice' ],
        [ '{"model":"cm","input":"hi","tool_choice":"auto","tool_choice":"none"}', undef, 'tool_choice' ],
        [ '{"model":"cm","input":"hi","text":"json"}', 'invalid_type', 'text' ],
        [ '{"model":"cm","input":"hi","text":{"format":"json"}}', 'invalid_type', 'text.format' ],
        [ '{"model":"cm","input":"hi","text":{"format":{}}}', 'missing_required_parameter', 'text.format.type' ],
        [ '{"model":"cm","input":"hi","text":{"format":{"type":"grammar"}}}', 'invalid_value', 'text.format.type' ],
        [ '{"model":"cm","input":"hi","text":{"format":{"type":"json_schema","schema":{}}}}', 'missing_required_parameter', 'text.format.name' ],
        [ '{"model":"cm","input":"hi","text":{"format":{"type":"json_schema","name":"n"}}}', 'missing_required_parameter', 'text.format.schema' ],
        [ '{"model":"cm","input":"hi","text":{"format":{"type":"json_schema","name":"n","schema":"s"}}}', 'invalid_type', 'text.format.schema' ],
        [ '{"model":"cm","input":"hi","text":{"format":{"type":"text"},"format":{"type":"text"}}}', undef, 'text.format' ],
        [ '{"model":"cm","input":"hi","reasoning":"high"}', 'invalid_type', 'reasoning' ],
        [ '{"model":"cm","input":"hi","reasoning":{"effort":5}}', 'invalid_type', 'reasoning.effort' ],
        [ '{"model":"cm","input":"hi","reasoning":{"effort":"low","effort":"high"}}', undef, 'reasoning.effort' ],
        [ '{"model":"cm","input":"hi","include":"reasoning.encrypted_content"}', 'invalid_type', 'include' ],
        [ '{"model":"cm","input":"hi","include":[5]}', 'unsupported_parameter', 'include[0]' ],
        [ '{"model":"cm","input":"hi","store":"yes"}', 'invalid_type', 'store' ],
        [ '{"model":"cm","input":"hi","metadata":"x"}', 'invalid_type', 'metadata' ],
        [ '{"model":"cm","input":"hi","safety_identifier":5}', 'invalid_type', 'safety_identifier' ],
        [ '{"model":"cm","input":"hi","store":true,"store":true}', undef, 'store' ],
        [ '{"model":"cm","input":[{"type":"function_call_output","call_id":"c","output":"a","output":"b"}]}', undef, 'input[0].output' ],
        [ '{"model":"cm","input":[{"role":"user","content":[{"type":"input_text","type":"input_text","text":"a"}]}]}', undef, 'input[0].content[0].type' ],
        [ '{"model":"cm","input":"hi","tools":[{"type":"function","name":"f","parameters":{},"parameters":{}}]}', undef, 'tools[0].parameters' ],
        [ '{"model":"cm","input":"hi","text":{"format":{"type":"text","type":"text"}}}', undef, 'text.format.type' ],
        [ '{"model":"cm","input":"hi","text":{"format":{"type":"json_schema","name":"n","name":"m","schema":{}}}}', undef, 'text.format.name' ],
        [ '{"model":"cm","input":"hi","text":{"format":{"type":"json_schema","name":"n","schema":{},"colour":1}}}', 'unsupported_parameter', 'text.format.colour' ],
        [ '{"model":"cm","input":"hi","reasoning":{"effort":"low","budget":1}}', 'unsupported_parameter', 'reasoning.budget' ],
    );

    for my $c (@refused) {
        my ($body, $code, $param) = @$c;
        my $res = responses($body);
        is($res->{status}, 400, "$body: 400") or diag($res->{body});
        my $e = $t->error($res) // {};
        is($e->{param}, $param, "$body: param $param");
        is($e->{code}, $code, "$body: code " . ($code // 'null')) if defined $code;
        like($e->{message} // '', qr/\Q$param\E/, "$body: the message names it");
        is($e->{message}, "The '$param' parameter appears more than once.",
           "$body: a member given twice is named as such") unless defined $code;
        like($e->{message}, qr/^Unsupported (?:parameter|value)(?: in)?:? '\Q$param\E'/,
             "$body: what has no equivalent is named as such")
            if ($code // '') eq 'unsupported_parameter';
    }
    is(count('chatonly'), $before, 'none of them reached the provider');

    # what is odd but fine
    my @fine = (
        [ '{"model":"cm","input":""}', sub { $_[0]{messages}[0]{content} eq '' }, 'an empty input' ],
        [ '{"model":"cm","input":"hi","instructions":""}',
          sub { $_[0]{messages}[0]{role} eq 'system' && $_[0]{messages}[0]{content} eq '' },
          'empty instructions' ],
        [ '{"model":"cm","input":"hi","instructions":null,"max_output_tokens":null,'
          . '"temperature":null,"top_p":null,"tools":null,"tool_choice":null,'
          . '"text":null,"reasoning":null,"user":null,"parallel_tool_calls":null}',
          sub { join(',', sort keys %{ $_[0] }) eq 'messages,model' }, 'nulls are left out' ],
        [ '{"model":"cm","input":"hi","tools":[]}', sub { !exists $_[0]{tools} }, 'no tools' ],
        [ '{"model":"cm","input":[{"role":"user","content":[]}]}',
          sub { $_[0]{messages}[0]{content} eq '' }, 'no parts' ],
        [ '{"model":"cm","input":[{"role":"user","content":[{"type":"input_text","text":""}]}]}',
          sub { $_[0]{messages}[0]{content} eq '' }, 'an empty part' ],
        [ '{"model":"cm","inp\\u0075t":"esc\\u00e9\\n\\"q\\""}',
          sub { $_[0]{messages}[0]{content} eq "esc\x{e9}\n\"q\"" }, 'escapes, in names too' ],
        [ '{"model":"cm","input":"hi","max_output_tokens":0}',
          sub { $_[0]{max_tokens} == 0 }, 'max_output_tokens 0' ],
        [ '{"model":"cm","input":"hi","temperature":-0.5e1}',
          sub { $_[0]{temperature} == -5 }, 'a number as written' ],
        [ '{"model":"cm","input":[{"type":"message","role":"user","content":"x","id":"m","status":"completed"}]}',
          sub { $_[0]{messages}[0]{content} eq 'x' }, 'an item\'s id and status' ],
        [ '{"model":"cm","reasoning":{"effort":null},"text":{"format":null},"input":"hi"}',
          sub { !exists $_[0]{reasoning_effort} && !exists $_[0]{response_format} },
          'null inside' ],
    );

    for my $c (@fine) {
        my ($body, $check, $what) = @$c;
        my $n = count('chatonly');
        my $res = responses($body);
        is($res->{status}, 200, "$what: 200") or diag($res->{body});
        my $got = sent('chatonly', $n);
        ok($got && $check->($got->{json}), "$what: sent as meant")
            or diag($got ? $got->{body} : 'nothing sent');
    }

    # huge: a long conversation is sent whole
    my $big = 'x' x (512 * 1024);
    my @items = map { { role => $_ % 2 ? 'assistant' : 'user', content => "m$_" } } 0 .. 999;
    my $res = responses({ model => 'cm', input => [ @items, { role => 'user', content => $big } ],
                          instructions => $big });
    is($res->{status}, 200, 'a 1 MB request with 1001 items') or diag(substr $res->{body}, 0, 300);
    my $j = eval { decode_json(sent('chatonly')->{body}) } // { messages => [] };
    is(scalar @{ $j->{messages} }, 1002, 'every item a message');
    is($j->{messages}[-1]{content}, $big, 'the long text whole');
    is($j->{messages}[0]{content}, $big, 'the long instructions whole');

    # a key too long to be a known one
    $res = responses('{"model":"cm","input":"hi","' . ('k' x 300) . '":1}');
    is($res->{status}, 400, 'a very long key: 400');
    like($t->error($res)->{message} // '', qr/key of over/, 'named as such');

    # not JSON, or not an object: the gateway's own refusal
    for my $body ('{"model":"cm","input":"hi"', '[]', '{"model":"cm","input":"hi"} x') {
        $res = responses($body);
        is($res->{status}, 400, "$body: 400");
    }
};


# --- answers ------------------------------------------------------------------

subtest 'the provider\'s errors pass as they are' => sub {
    $mock{flaky}->set(mode => 'status', status => 400);
    my $res = responses({ model => 'flaky', input => 'hi' });
    is($res->{status}, 400, 'status 400');
    is($t->error($res)->{code}, 'mock_failure', 'the provider\'s error object');

    $res = responses({ model => 'flaky', input => 'hi', stream => $true }, stream => 1);
    is($res->{status}, 400, 'also for a stream');
    is($t->error($res)->{code}, 'mock_failure', 'its error object too');

    $mock{flaky}->set(mode => 'status', status => 429, retry_after => '');
    $res = responses({ model => 'flaky', input => 'hi' });
    is($res->{status}, 429, 'a 429');
    is($t->error($res)->{code}, 'mock_failure', 'as the provider said it');
};

subtest 'odd chat answers and streams' => sub {
    # CRLF, comments, other fields, an event's data on two lines, no space
    $mock{chatonly}->set(chat_events => [
        "data: " . $JSON->encode({ choices => [{ index => 0, delta => { role => 'assistant', content => 'a' } }] }) . "\r\n\r\n",
        ": keep-alive\n\n",
        "event: message\nid: 7\nretry: 100\ndata: {\"choices\":[{\"index\":0,\ndata: \"delta\":{\"content\":\"b\\u00e9\\\"\\n\"}}]}\n\n",
        "data:" . $JSON->encode({ choices => [{ index => 0, delta => { content => "c\x{1F600}" } }] }) . "\r\r",
        "data: " . $JSON->encode({ choices => [] , usage => { prompt_tokens => 11, completion_tokens => 5, total_tokens => 16 } }) . "\n\n",
        "data: [DONE]\n\n",
    ]);
    my $res = responses({ model => 'cm', input => 'hi', stream => $true }, stream => 1);
    my @ev = events($res->{body});
    well_formed('odd stream', @ev);
    my ($done) = of_type('response.output_text.done', @ev);
    is($done->[1]{text}, "ab\x{e9}\"\nc\x{1F600}", 'the text, escapes and all');
    my ($c) = of_type('response.completed', @ev);
    is($c->[1]{response}{usage}{input_tokens}, 11, 'the usage chunk read');

    # finish_reason length: incomplete
    $mock{chatonly}->set(finish_reason => 'length', stream_chunks => 1);
    @ev = events(responses({ model => 'cm', input => 'hi', stream => $true }, stream => 1)->{body});
    well_formed('cut by length', @ev);
    is($ev[-1][0], 'response.incomplete', 'ends response.incomplete');
    is($ev[-1][1]{response}{incomplete_details}{reason}, 'max_output_tokens', 'why');
    my $r = $t->json(responses({ model => 'cm', input => 'hi' }));
    is($r->{status}, 'incomplete', 'JSON: incomplete');
    is($r->{incomplete_details}{reason}, 'max_output_tokens', 'JSON: why');

    # raw control characters from a broken provider come out escaped
    $mock{chatonly}->set(chat_body => qq({"choices":[{"index":0,"message":{"role":"assistant","content":"a\x01b\tc"},"finish_reason":"stop"}]}));
    $res = responses({ model => 'cm', input => 'hi' });
    $r = eval { decode_json($res->{body}) };
    ok($r, 'still JSON') or diag($res->{body});
    is($r && $r->{output}[0]{content}[0]{text}, "a\x01b\tc", 'the text');

    # a content of null and no calls: an empty message
    $mock{chatonly}->set(chat_body => '{"choices":[{"index":0,"message":{"role":"assistant","content":null},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":0,"total_tokens":1}}');
    $r = $t->json(responses({ model => 'cm', input => 'hi' }));
    is($r->{status}, 'completed', 'null content: completed');
    is(scalar @{ $r->{output} }, 0, 'nothing to show');

    # a second choice is not the client's
    $mock{chatonly}->set(chat_body => '{"choices":[{"index":0,"message":{"role":"assistant","content":"one"},"finish_reason":"stop"},{"index":1,"message":{"role":"assistant","content":"two"},"finish_reason":"stop"}]}');
    $r = $t->json(responses({ model => 'cm', input => 'hi' }));
    is_deeply([ map { $_->{content}[0]{text} } @{ $r->{output} } ], ['one'], 'the first choice only');

    $mock{chatonly}->set;
};

subtest 'a provider that ends its stream badly: a failed response' => sub {
    # an error in the middle of the stream: its words stay with the gateway
    $mock{breaks}->set(chat_events => [
        chat_chunk(content => 'par'),
        'data: {"error":{"message":"secret internal detail","type":"server_error"}}' . "\n\n",
        chat_chunk(content => 'never shown'),
        "data: [DONE]\n\n" ]);

    my ($line, $res) = logged { responses({ model => 'br', input => 'hi', stream => $true },
                                          stream => 1) };
    is($res->{error}, undef, 'the body ends properly');
    my @ev = events($res->{body});
    well_formed('provider error', @ev);
    is_deeply([ (names(@ev))[-2, -1] ], [qw(response.failed error)],
              'response.failed, then error');
    is($ev[-2][1]{response}{status}, 'failed', 'status failed');
    like($ev[-2][1]{response}{error}{message}, qr/provider reported an error/,
         'response.error.message');
    is($ev[-1][1]{code}, 'provider_error', 'the error event\'s code');
    unlike($res->{body}, qr/secret internal detail|never shown/, 'nothing of the provider\'s words');
    like($line, qr/failed="breaks:stream_broken"/, 'the access log names the break');

    # a stream that stops without saying it is done
    $mock{breaks}->set(chat_events => [ chat_chunk(content => 'a'), chat_chunk(content => 'b') ]);
    ($line, $res) = logged { responses({ model => 'br', input => 'hi', stream => $true }, stream => 1) };
    @ev = events($res->{body});
    well_formed('no end', @ev);
    is($ev[-2][0], 'response.failed', 'a stream without its end failed');
    like($ev[-2][1]{response}{error}{message}, qr/ended before the response was complete/, 'saying so');
    like($line, qr/failed="breaks:stream_broken"/, 'logged as a break');

    # more items than are kept
    $mock{breaks}->set(tool_calls => [ map { { id => "c$_", name => 'f', arguments => '{}' } } 1 .. 70 ]);
    $res = responses({ model => 'br', input => 'hi', stream => $true }, stream => 1);
    @ev = events($res->{body});
    well_formed('too many', @ev);
    is($ev[-1][0], 'error', 'too many items: an error event last');
    is($ev[-1][1]{code}, 'response_too_large', 'saying what');
    is($res->{error}, undef, 'the body ends properly');

    $mock{breaks}->set;
};

subtest 'a translated stream that breaks off' => sub {
    $mock{breaks}->set(mode => 'drop', drop_after => 2);

    my ($line, $res) = logged { responses({ model => 'br', input => 'hi', stream => $true },
                                          stream => 1) };
    is($res->{status}, 200, 'it had started');
    is($res->{error}, undef, 'the chunked body still ends with its last chunk');
    my @ev = events($res->{body});
    well_formed('broken', @ev);
    is_deeply([ names(@ev) ], [ qw(response.created response.in_progress
        response.output_item.added response.content_part.added
        response.output_text.delta response.output_text.delta
        response.failed error) ], 'what was sent, then response.failed and error');
    like($ev[-2][1]{response}{error}{message}, qr/broke off/, 'the gateway\'s message');
    is($ev[-1][1]{code}, 'stream_broken', 'code stream_broken');
    like($line, qr/failed="breaks:stream_broken"/, 'the access log names the break');

    # cut in the middle of a text, an escape begun: the delta is closed first
    $mock{breaks}->set(mode => 'drop', drop_after => 2, chat_events => [
        chat_chunk(content => 'a'),
        'data: {"choices":[{"index":0,"delta":{"content":"H\u00e9llo wor\\u00' ]);
    $res = responses({ model => 'br', input => 'hi', stream => $true }, stream => 1);
    is($res->{error}, undef, 'cut mid-text: the body ends properly');
    @ev = events($res->{body});
    well_formed('cut mid-text', @ev);
    is_deeply([ (names(@ev))[-3 .. -1] ],
              [qw(response.output_text.delta response.failed error)],
              'the delta it was in, closed, then the failure');
    like($ev[-3][1]{delta}, qr/^H\x{e9}llo wor/, 'with what had come of it');

    # a JSON answer cut off: one JSON object all the same, a failed response
    $mock{breaks}->set(mode => 'drop');
    ($line, $res) = logged { responses({ model => 'br', input => 'hi' }) };
    is($res->{status}, 200, 'JSON: it had started');
    is($res->{error}, undef, 'JSON: the body ends properly');
    my $r = eval { decode_json($res->{body}) };
    ok($r, 'JSON: a whole JSON object') or diag($res->{body});
    is($r && $r->{status}, 'failed', 'JSON: a failed response');
    like($r ? $r->{error}{message} : '', qr/broke off/, 'JSON: with the gateway\'s message');
    like($line, qr/failed="breaks:stream_broken"/, 'JSON: logged as a break');

    # a JSON answer that is not one
    $mock{breaks}->set(chat_body => '{"choices":[{"index":0,"message":{"content":"x"}}]');
    ($line, $res) = logged { responses({ model => 'br', input => 'hi' }) };
    $r = eval { decode_json($res->{body}) };
    is($r && $r->{status}, 'failed', 'JSON not complete: a failed response')
        or diag($res->{body});
    like($r ? $r->{error}{message} : '', qr/ended before it was complete/, 'saying so');
    like($line, qr/failed="breaks:stream_broken"/, 'and logged so');
    $mock{breaks}->set;
};

subtest 'a native Responses stream that breaks off ends the same way' => sub {
    $mock{native}->set(mode => 'drop', drop_after => 2);

    my ($line, $res) = logged { responses({ model => 'nat', input => 'hi', stream => $true },
                                          stream => 1) };
    is($res->{error}, undef, 'the chunked body ends with its last chunk');
    my @ev = events($res->{body});
    is_deeply([ names(@ev) ], [ qw(response.created response.in_progress
        response.output_item.added response.content_part.added),
        ('response.output_text.delta') x 2, qw(response.failed error) ],
              'the provider\'s events, then response.failed and error');
    well_formed('native broken', @ev);
    is($ev[-2][1]{response}{status}, 'failed', 'a failed response');
    like($ev[-2][1]{response}{error}{message}, qr/broke off/, 'with the gateway\'s message');
    is($ev[-1][1]{code}, 'stream_broken', 'code');
    like($line, qr/^nat native 200 .*failed="native:stream_broken"/, 'the access log names the break');

    # chat: the error as data, and the end of the body
    ($line, $res) = logged { $t->chat('nat', stream => 1) };
    $res = $t->post_json('/v1/chat/completions', $key,
        { model => 'nat', stream => $true, messages => [] }, stream => 1);
    is($res->{error}, undef, 'a chat stream\'s body ends properly too');
    like($res->{body}, qr/data: \{"error":\{"message":"[^"]*broke off[^"]*","type":"server_error"/,
         'after an error in its own shape');
    $mock{native}->set;
};


# --- the rest of the gateway ------------------------------------------------------

subtest 'usage of translated requests is counted' => sub {
    my ($line) = logged { responses({ model => 'cm', input => 'hi' }) };
    like($line, qr/^cm chatonly 200 7 3 0\.000013 failed="-" /, 'JSON: tokens and cost in the access log');
    my ($json_id) = $line =~ /(\S+)$/;

    ($line) = logged { responses({ model => 'cm', input => 'hi', stream => $true }, stream => 1) };
    like($line, qr/^cm chatonly 200 7 3 0\.000013 failed="-" /, 'stream: the same');
    my ($stream_id) = $line =~ /(\S+)$/;

    my %rec;
    $t->wait_for(sub {
        %rec = map { ($_->{request_id} // '') => $_ }
               map { eval { decode_json($_) } // () }
               split /\n/, (-e "$dir/usage.jsonl" ? $t->read_file('usage.jsonl') : '');
        $rec{$json_id} && $rec{$stream_id};
    }, timeout => 8);

    for my $id ($json_id, $stream_id) {
        my $r = $rec{$id} or do { fail("a usage record for $id"); next };
        my $what = $r->{stream} ? 'stream' : 'JSON';
        is($r->{endpoint}, 'responses', "$what: a record for the responses endpoint");
        is($r->{provider}, 'chatonly', "$what: of the chat provider");
        is_deeply([ @{ $r->{tokens} }{qw(input output total)} ], [7, 3, 10],
                  "$what: with the provider's tokens") or diag($JSON->encode($r));
        ok(!$r->{estimated}, "$what: not estimated");
        is($r->{cost}, '0.000013', "$what: its cost");
        is($r->{outcome}, 'ok', "$what: ok");
    }

    # a passive provider is not asked for a stream's usage
    my $res = responses({ model => 'quiet', input => 'hi', stream => $true }, stream => 1);
    is($res->{status}, 200, 'passive: 200');
    ok(!exists sent('quiet')->{json}{stream_options}, 'passive: no stream_options');
    my @ev = events($res->{body});
    well_formed('passive', @ev);
    is($ev[-1][0], 'response.completed', 'completed all the same');
};

subtest 'fallback from a native provider to a translated one' => sub {
    $mock{native}->set(mode => 'status', status => 500);

    my ($line, $res) = logged { responses({ model => 'spill', input => 'hi' }) };
    is($res->{status}, 200, 'status 200 from the second step');
    my $r = $t->json($res);
    is($r->{object}, 'response', 'a Responses answer');
    is($r->{output}[0]{content}[0]{text}, 'Hello from chatonly', 'from the chat provider');
    like($line, qr/failed="native:server_error:500"/, 'the first attempt logged');
    is(sent('native')->{path}, '/v1/responses', 'the first was asked natively');
    is(sent('chatonly')->{path}, '/v1/chat/completions', 'the second for chat');

    $res = responses({ model => 'spill', input => 'hi', stream => $true }, stream => 1);
    my @ev = events($res->{body});
    well_formed('fallback stream', @ev);
    is($ev[-1][0], 'response.completed', 'a stream too');

    $mock{native}->set;
    $r = $t->json(responses({ model => 'spill', input => 'hi' }));
    is($r->{id}, 'resp_mock', 'a native answer passes untouched');
};

subtest 'an external chat provider learns nothing of the client' => sub {
    my $n = @{ $mock{outside}->requests };
    my $r = $t->post_json('/v1/responses', $key,
        '{"model":"out","input":"hi","user":"alice@example.com",'
        . '"metadata":{"a":"1"},"client_metadata":{"installation_id":"i-1"},'
        . '"safety_identifier":"h-42","temperature":0.5}',
        headers => { 'User-Agent' => 'codex_exec/0.1 (Linux 6.1; x86_64)',
                     'x-stainless-os' => 'Linux', 'session-id' => 's-1',
                     originator => 'codex_exec' });
    is($r->{status}, 200, 'answered') or diag($r->{body});
    is($t->json($r)->{object}, 'response', 'as a response');

    my $got = $mock{outside}->requests->[$n];
    ok($got, 'the provider was asked') or return;
    is($got->{path}, '/v1/chat/completions', 'for chat');
    is($got->{headers}{'user-agent'}, 'Tailgate', "the gateway's User-Agent");
    ok(!exists $got->{headers}{$_}, "no $_")
        for qw(x-stainless-os session-id originator);
    my $doc = eval { decode_json($got->{body}) } // {};
    ok(!exists $doc->{$_}, "no body field $_")
        for qw(user metadata client_metadata safety_identifier);
    unlike($got->{body}, qr/alice|i-1|h-42/, 'nothing of them at all');
    is($doc->{temperature}, 0.5, 'the request itself');
    is($doc->{messages}[-1]{content}, 'hi', 'its input');

    # a local provider gets the user the client sent
    $n = @{ $mock{chatonly}->requests };
    $r = $t->post_json('/v1/responses', $key,
                       { model => 'cm', input => 'hi', user => 'bob' });
    is($r->{status}, 200, 'local: answered');
    $doc = eval { decode_json($mock{chatonly}->requests->[$n]{body}) } // {};
    is($doc->{user}, 'bob', 'local: user as sent');
};

subtest 'translate_responses in the policy' => sub {
    my $res = responses({ model => 'forced', input => 'hi' });
    is($res->{status}, 200, 'true: 200');
    is(sent('forced')->{path}, '/v1/chat/completions', 'true: sent as chat although it serves responses');
    is($t->json($res)->{object}, 'response', 'and answered as a response');

    my $n = count('never');
    $res = responses({ model => 'never', input => 'hi' });
    is($res->{status}, 404, 'false: the route has no responses endpoint');
    is(count('never'), $n, 'nothing sent');

    # chat requests on a chat provider are as they were
    $res = $t->chat('cm');
    is($res->{status}, 200, 'chat: 200');
    is($t->json($res)->{object}, 'chat.completion', 'a chat answer');
    is_deeply(sent('chatonly')->{json}{messages}, [{ role => 'user', content => 'Hello' }],
              'the chat request as it was');
};

$t->done_testing;
