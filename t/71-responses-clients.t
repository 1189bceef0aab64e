#!/usr/bin/perl

# Real clients of the Responses API through the gateway to a provider of
# chat completions only: the Codex CLI (`codex exec`, npm @openai/codex)
# and the Vercel AI SDK's default model, openai(model) (npm ai and
# @ai-sdk/openai), both installed from npm by this test.  Each answers,
# calls a function and gets its result back through the translation, and
# shows the gateway's own message when a stream breaks off - translated or
# from a provider of the Responses API itself.
#
# Skipped, saying why, when node or npm is missing or the npm registry
# cannot be reached.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use JSON::PP;
use File::Copy qw(copy);
use Tailgate::Gateway;

my $t = Tailgate::Gateway->new->skip_unless_built;
my $JSON = JSON::PP->new->canonical;
my $dir = $t->dir;
my $true = JSON::PP::true;

for my $tool (qw(node npm)) {
    next if grep { -x "$_/$tool" } split /:/, $ENV{PATH};
    plan skip_all => "$tool is not installed: the real clients come from npm";
}

my $npm = "$dir/npm";
mkdir $npm or die "$npm: $!\n";

{
    my $ping = `timeout 30 npm view \@openai/codex version --registry=https://registry.npmjs.org/ 2>&1`;
    if ($? != 0) {
        my $rc = $? >> 8;
        $ping =~ s/\s+/ /g;
        $ping = $rc == 124 ? 'npm view gave no answer in 30 s'
                           : "npm view exited $rc" if $ping !~ /\S/;
        plan skip_all => "the npm registry cannot be reached: " . substr($ping, 0, 200);
    }

    my $log = `cd $npm && timeout 600 npm install --no-audit --no-fund --loglevel=error --prefix $npm \@openai/codex ai \@ai-sdk/openai 2>&1`;
    if ($? != 0 || !-x "$npm/node_modules/.bin/codex") {
        $log =~ s/\s+/ /g;
        plan skip_all => "npm could not install the clients: " . substr($log, 0, 300);
    }

    copy("$FindBin::Bin/lib/ai_sdk_client.mjs", "$npm/ai_sdk_client.mjs")
        or die "copy: $!\n";
}

my $versions = join ', ', map {
    my $p = eval { decode_json($t->read_file("$npm/node_modules/$_/package.json")) };
    "$_ " . ($p ? $p->{version} : '?');
} qw(@openai/codex ai @ai-sdk/openai);
note("clients: $versions");

my $policy = {
    providers => {
        chatonly => { upstream => 'tg_chatonly', zone => 'local', endpoints => ['chat'],
                      health => { down_after => 100 } },
        native   => { upstream => 'tg_native', zone => 'local',
                      endpoints => [qw(chat responses)], health => { down_after => 100 } },
    },
    routes => {
        cm  => { steps => [{ provider => 'chatonly', model => 'chat-model' }] },
        nat => { steps => [{ provider => 'native', model => 'native-model' }] },
    },
};

my $key = $t->start_gateway(policy => $policy, private => [],
    http => q{
        log_format cl '$tailgate_route $status failed="$tailgate_failures"';
    },
    server => 'access_log %%DIR%%/cl.log cl;');
$t->allow_log(qr/broke off its event stream/, qr/refused for translation/);

my %mock = map { $_ => $t->mock($_) } qw(chatonly native);
my $base = 'http://127.0.0.1:' . $t->port('nginx') . '/v1';

sub count { scalar @{ $mock{$_[0]}->requests } }
sub since { my ($name, $n) = @_; my $r = $mock{$name}->requests; return @$r[$n .. $#$r] }


# --- Codex ------------------------------------------------------------------

my $codex_home = "$dir/codex-home";
my $work = "$dir/work";
mkdir $_ for $codex_home, $work;

$t->write_file("$codex_home/config.toml", <<"EOF");
model_provider = "tailgate"
approval_policy = "never"
sandbox_mode = "danger-full-access"

[model_providers.tailgate]
name = "Tailgate"
base_url = "$base"
env_key = "TAILGATE_TEST_KEY"
wire_api = "responses"
request_max_retries = 0
stream_max_retries = 0
stream_idle_timeout_ms = 20000
EOF

# codex exec --json: its events, its exit status, everything it printed
sub codex {
    my ($model, $prompt) = @_;

    local $ENV{CODEX_HOME} = $codex_home;
    local $ENV{TAILGATE_TEST_KEY} = $key;
    local $ENV{NO_COLOR} = 1;

    my $out = `cd $work && timeout 120 $npm/node_modules/.bin/codex exec --json --skip-git-repo-check -m $model '$prompt' </dev/null 2>&1`;
    my $rc = $? >> 8;
    my @ev = map { eval { decode_json($_) } // () } grep { /^\{/ } split /\n/, $out;

    return ($rc, $out, @ev);
}

sub agent_text {
    join '|', map { $_->{item}{text} }
        grep { ($_->{type} // '') eq 'item.completed'
               && ($_->{item}{type} // '') eq 'agent_message' } @_;
}

sub codex_errors {
    join ' | ', map { $_->{message} // $_->{error}{message} // '' }
        grep { ($_->{type} // '') =~ /^(?:error|turn\.failed)$/ } @_;
}

subtest 'Codex answers through a provider of chat completions only' => sub {
    $mock{chatonly}->set;
    my $n = count('chatonly');

    my ($rc, $out, @ev) = codex('cm', 'Say hi');
    is($rc, 0, 'codex exec succeeded') or diag(substr($out, -2000));
    is(agent_text(@ev), 'tok1 tok2 tok3 ', 'it shows the provider\'s answer');
    my ($done) = grep { ($_->{type} // '') eq 'turn.completed' } @ev;
    is($done && $done->{usage}{input_tokens}, 7, 'with the usage of response.completed');
    is($done && $done->{usage}{output_tokens}, 3, 'its output tokens too');

    my @got = since('chatonly', $n);
    is(scalar @got, 1, 'one request');
    my $j = $got[0] ? $got[0]{json} // eval { decode_json($got[0]{body}) } : {};
    is($got[0] && $got[0]{path}, '/v1/chat/completions', 'to the chat endpoint');
    is($j->{model}, 'chat-model', 'for the provider model');
    is($j->{stream}, $true, 'a stream');
    is_deeply($j->{stream_options}, { include_usage => $true }, 'its usage asked for');
    ok((grep { $_->{role} eq 'user' && ($_->{content} // '') eq 'Say hi' } @{ $j->{messages} }),
       'the prompt as a user message');
    ok((grep { $_->{role} eq 'system' } @{ $j->{messages} }),
       'Codex\'s developer instructions as system messages');
    my @tools = map { $_->{function}{name} } @{ $j->{tools} // [] };
    ok(scalar(grep { $_ eq 'exec_command' } @tools), 'its function tools offered');
    ok(!(grep { ($_->{type} // '') ne 'function' } @{ $j->{tools} // [] }),
       'only function tools');
    ok(!exists $j->{client_metadata} && !exists $j->{prompt_cache_key} && !exists $j->{include},
       'none of the Responses API\'s own fields');
};

subtest 'Codex calls a function and sends its result back' => sub {
    $mock{chatonly}->set(tool_calls_once => 1, tool_calls => [
        { id => 'call_codex_1', name => 'exec_command',
          arguments => $JSON->encode({ cmd => 'echo tailgate-ok' }) } ]);
    my $n = count('chatonly');

    my ($rc, $out, @ev) = codex('cm', 'Run the check');
    is($rc, 0, 'codex exec succeeded') or diag(substr($out, -2000));

    my ($cmd) = grep { ($_->{type} // '') eq 'item.completed'
                       && ($_->{item}{type} // '') eq 'command_execution' } @ev;
    ok($cmd, 'Codex ran the command the provider called for') or diag(substr($out, -2000));
    like($cmd ? $cmd->{item}{command} : '', qr/echo tailgate-ok/, 'that command');
    like($cmd ? $cmd->{item}{aggregated_output} : '', qr/^tailgate-ok$/m, 'its output');

    my @got = since('chatonly', $n);
    is(scalar @got, 2, 'two requests: the call, then its result');
    my $j = $got[1] ? eval { decode_json($got[1]{body}) } // {} : {};
    my @m = @{ $j->{messages} // [] };
    my ($asst) = grep { $_->{role} eq 'assistant' && $_->{tool_calls} } @m;
    is_deeply($asst && [ map { [ $_->{id}, $_->{function}{name} ] } @{ $asst->{tool_calls} } ],
              [[ 'call_codex_1', 'exec_command' ]], 'the call in the history, by its call_id');
    my ($res) = grep { $_->{role} eq 'tool' } @m;
    is($res && $res->{tool_call_id}, 'call_codex_1', 'its result for that call');
    like($res ? $res->{content} : '', qr/tailgate-ok/, 'carrying the command\'s output');
    is($m[-1]{role}, 'tool', 'the result last');
    $mock{chatonly}->set;
};

subtest 'Codex shows the gateway\'s message when a stream breaks' => sub {
    for my $case ([ 'cm', 'chatonly', 'translated' ], [ 'nat', 'native', 'native' ]) {
        my ($model, $name, $what) = @$case;
        $mock{$name}->set(mode => 'drop', drop_after => 2);

        my ($rc, $out, @ev) = codex($model, 'Say hi');
        isnt($rc, 0, "$what: codex exec fails");
        like(codex_errors(@ev), qr/The provider's stream broke off before the response was complete\./,
             "$what: saying what the gateway said") or diag(substr($out, -1500));
        unlike($out, qr/error decoding response body|unexpected EOF|connection closed before message completed/i,
               "$what: not a transport error");
        $mock{$name}->set;
    }

    $mock{chatonly}->set(chat_events => [
        'data: {"choices":[{"index":0,"delta":{"content":"par"}}]}' . "\n\n",
        'data: {"error":{"message":"internal detail","type":"server_error"}}' . "\n\n" ]);
    my ($rc, $out, @ev) = codex('cm', 'Say hi');
    isnt($rc, 0, 'a provider\'s error mid-stream: codex exec fails');
    like(codex_errors(@ev), qr/The provider reported an error in the middle of its stream/,
         'with the gateway\'s message') or diag(substr($out, -1500));
    unlike($out, qr/internal detail/, 'not the provider\'s words');
    $mock{chatonly}->set;
};


# --- the Vercel AI SDK --------------------------------------------------------

sub ai_sdk {
    my ($mode, $model, %env) = @_;

    local $ENV{TG_BASE_URL} = $base;
    local $ENV{TG_KEY} = $key;
    local $ENV{TG_STORE} = $env{store} // '';

    my $out = `cd $npm && timeout 120 node ai_sdk_client.mjs $mode $model 2>&1`;
    my ($line) = grep { /^\{/ } reverse split /\n/, $out;
    my $r = eval { decode_json($line // '') };

    diag("ai_sdk_client $mode: " . substr($out, -1500)) unless $r;
    return $r // {};
}

subtest 'the Vercel AI SDK\'s openai(model) answers through a chat provider' => sub {
    $mock{chatonly}->set;

    my $r = ai_sdk('text', 'cm');
    is($r->{thrown}, undef, 'generateText: no error');
    is($r->{text}, 'Hello from chatonly', 'generateText: the text');
    is($r->{finishReason}, 'stop', 'generateText: finished');
    is($r->{usage}{inputTokens}, 7, 'generateText: input tokens');
    is($r->{usage}{outputTokens}, 3, 'generateText: output tokens');

    $r = ai_sdk('stream', 'cm');
    is($r->{thrown}, undef, 'streamText: no error');
    is_deeply($r->{errors}, [], 'streamText: no error part');
    is($r->{text}, 'tok1 tok2 tok3 ', 'streamText: the text, delta by delta');
    is($r->{finishReason}, 'stop', 'streamText: finished');
    is($r->{usage}{totalTokens}, 10, 'streamText: usage from response.completed');
};

subtest 'the Vercel AI SDK calls a function and sends its result back' => sub {
    for my $mode (qw(tools stream-tools)) {
        $mock{chatonly}->set(tool_calls_once => 1, content => 'It is 21 degrees.',
            tool_calls => [ { id => 'call_sdk_1', name => 'get_weather',
                              arguments => '{"city":"Paris"}' } ]);
        my $n = count('chatonly');

        my $r = ai_sdk($mode, 'cm', store => 'false');
        is($r->{thrown}, undef, "$mode: no error");
        is($r->{executed}, 'Paris', "$mode: the tool ran with the provider's arguments");
        is_deeply($r->{steps}[0]{toolCalls}, [ { id => 'call_sdk_1', name => 'get_weather',
                                                 input => { city => 'Paris' } } ],
                  "$mode: the call as the SDK saw it");
        is($r->{steps}[0]{finishReason}, 'tool-calls', "$mode: the first step ended for the call");

        my @got = since('chatonly', $n);
        is(scalar @got, 2, "$mode: two requests");
        my $j = $got[1] ? eval { decode_json($got[1]{body}) } // {} : {};
        my ($res) = grep { $_->{role} eq 'tool' } @{ $j->{messages} // [] };
        is($res && $res->{tool_call_id}, 'call_sdk_1', "$mode: the result for that call");
        is_deeply($res ? eval { decode_json($res->{content}) } : undef, { city => 'Paris', temp => 21 },
                  "$mode: the tool's output");
        like($r->{text} // '', qr/21 degrees|tok1/, "$mode: then the answer");
    }

    # with the SDK's default store: true, earlier items come as references
    $mock{chatonly}->set(tool_calls_once => 1, content => 'Checking.',
        tool_calls => [ { id => 'call_sdk_2', name => 'get_weather',
                          arguments => '{"city":"Paris"}' } ]);
    my $r = ai_sdk('tools', 'cm');
    like($r->{thrown} // '', qr/item_reference.*keeps no state.*store: false/,
         'a reference to a stored item: the SDK shows why it cannot be served, and what to do');
    $mock{chatonly}->set;
};

subtest 'the Vercel AI SDK shows the gateway\'s message when a stream breaks' => sub {
    for my $case ([ 'cm', 'chatonly', 'translated' ], [ 'nat', 'native', 'native' ]) {
        my ($model, $name, $what) = @$case;
        $mock{$name}->set(mode => 'drop', drop_after => 2);

        my $r = ai_sdk('stream', $model);
        is($r->{finishReason}, 'error', "$what: the stream finished in error");
        ok(@{ $r->{errors} // [] }, "$what: an error part");
        ok(!(grep { !/The provider's stream broke off before the response was complete\./ }
             @{ $r->{errors} // [] }),
           "$what: every error the application sees is the gateway's message")
            or diag($JSON->encode($r->{errors}));
        unlike($JSON->encode($r), qr/Type validation failed|AI_TypeValidationError|terminated|ECONNRESET/,
               "$what: not a validation or transport error");
        $mock{$name}->set;
    }
};

subtest 'the access log names each break' => sub {
    my @l = split /\n/, $t->read_file('cl.log');
    ok((grep { /^cm 200 failed="chatonly:stream_broken"$/ } @l), 'translated');
    ok((grep { /^nat 200 failed="native:stream_broken"$/ } @l), 'native');
};

$t->done_testing;
