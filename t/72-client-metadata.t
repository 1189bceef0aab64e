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

$t->done_testing;
