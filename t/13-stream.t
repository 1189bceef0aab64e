#!/usr/bin/perl

# Streams flow chunk by chunk.  The mock provider sends its first event and
# then waits for a "gate" file before it sends the rest: the client must
# receive that first event while the provider is still holding the rest
# back.  The proof is by order, not by timing.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use JSON::PP;
use Tailgate::Gateway;

my $t = Tailgate::Gateway->new->skip_unless_built;
my $key = $t->start_gateway;
my $local = $t->mock('local');

my $gate = 0;

sub stream_through_gate {
    my ($path, $body, $first_re, $chunks) = @_;

    my $file = 'gate-' . ++$gate;
    $local->update(stream_gate => $file, stream_chunks => $chunks);

    my $conn = $t->open_post($path, encode_json($body));

    my $first = $conn->read_until($first_re, 5);
    my $early = $conn->raw;

    $t->write_file($file, '');
    my $done = $conn->read_all(10);

    return ($first, $early, $done, $conn);
}


subtest 'chat completion stream' => sub {
    my ($first, $early, $done, $conn) = stream_through_gate(
        '/v1/chat/completions',
        { model => 'qwen', stream => JSON::PP::true, messages => [] },
        qr/tok1 /, 4);

    ok($first, 'the first event reached the client while the provider held the rest');
    unlike($early, qr/tok2|\[DONE\]/, 'and nothing after it had been sent yet');
    like($early, qr{^HTTP/1\.1 200}, 'headers came with it');
    like($early, qr{content-type: text/event-stream}i, 'as an event stream');

    ok($done, 'the stream then ends');
    my @toks = $conn->raw =~ /"content":"(tok\d) "/g;
    is_deeply(\@toks, [qw(tok1 tok2 tok3 tok4)], 'every event, in order');
    like($conn->raw, qr/data: \[DONE\]/, 'and [DONE]');
    like($conn->raw, qr/0\r\n\r\n$/, 'a complete chunked response');
};

subtest 'responses stream' => sub {
    my ($first, $early, $done, $conn) = stream_through_gate(
        '/v1/responses',
        { model => 'qwen', stream => JSON::PP::true, input => 'hi' },
        qr/response\.output_text\.delta/, 3);

    ok($first, 'the first event arrived before the gate opened');
    unlike($early, qr/response\.completed/, 'the end had not been sent');
    ok($done, 'the stream ends');
    like($conn->raw, qr/response\.completed/, 'with response.completed');
};

subtest 'the provider got the stream flag and its own model name' => sub {
    my $got = $local->requests->[-1];
    is($got->{json}{model}, 'qwen2.5-7b-instruct', 'provider model');
    ok($got->{json}{stream}, 'stream: true');
};

subtest 'a slow stream is not cut by the gateway' => sub {
    $local->set(stream_chunks => 4, stream_interval_ms => 700);

    my $res = $t->post_json('/v1/chat/completions', $key,
        encode_json({ model => 'qwen', stream => JSON::PP::true }),
        stream => 1, timeout => 15);

    is($res->{status}, 200, 'status 200');
    like($res->{body}, qr/tok4 .*\[DONE\]/s, 'all events and [DONE] after 2+ s');
    cmp_ok(scalar @{ $res->{chunks} }, '>=', 4, 'delivered in separate reads');
};

$t->done_testing;
