#!/usr/bin/perl

# Transcription uploads: the gateway must read a multipart body exactly as
# the provider will, or a client could route on one model and run another.
# Valid forms route; anything two parsers could read differently is a 400
# that never reaches a provider.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Tailgate::Gateway;

my $t = Tailgate::Gateway->new->skip_unless_built;
my $key = $t->start_gateway;
my $local = $t->mock('local');

sub upload {
    my ($ct, @parts) = @_;

    return $t->http('POST', '/v1/audio/transcriptions',
        headers => { Authorization => "Bearer $key", 'Content-Type' => $ct },
        body => join('', @parts));
}

sub part {
    my ($disposition, $value, @headers) = @_;
    return "--B\r\nContent-Disposition: $disposition\r\n"
         . join('', map { "$_\r\n" } @headers) . "\r\n$value\r\n";
}

my $file = part('form-data; name="file"; filename="a.wav"', 'RIFF', 'Content-Type: audio/wav');
my $end = "--B--\r\n";


subtest 'valid forms route and are rewritten' => sub {
    my %ok = (
        'quoted name'            => ['multipart/form-data; boundary=B',
                                     part('form-data; name="model"', 'qwen')],
        'token name'             => ['multipart/form-data; boundary=B',
                                     part('form-data; name=model', 'qwen')],
        'quoted boundary'        => ['multipart/form-data; boundary="B"',
                                     part('form-data; name="model"', 'qwen')],
        'other parameters first' => ['multipart/form-data; charset=utf-8; BOUNDARY=B',
                                     part('form-data; filename="x"; name="model"', 'qwen')],
        'header case'            => ['Multipart/Form-Data; boundary=B',
                                     "--B\r\ncontent-disposition: Form-Data; Name=\"model\"\r\n\r\nqwen\r\n"],
    );

    for my $name (sort keys %ok) {
        my ($ct, $model) = @{ $ok{$name} };
        my $res = upload($ct, $file, $model, $end);
        is($res->{status}, 200, "$name: 200");
        like($local->requests->[-1]{body}, qr/\r\n\r\nqwen2\.5-7b-instruct\r\n/,
             "$name: the provider's model field was rewritten");
    }
};

subtest 'ambiguous bodies are refused' => sub {
    $local->clear;

    my %bad = (
        'two boundary parameters' =>
            ['multipart/form-data; boundary=B; boundary=C',
             part('form-data; name="model"', 'qwen')],
        'boundary inside another parameter only' =>
            ['multipart/form-data; x="boundary=B"',
             part('form-data; name="model"', 'qwen')],
        'name* parameter' =>
            ['multipart/form-data; boundary=B',
             part(q{form-data; name*=UTF-8''model}, 'qwen')],
        'name given twice' =>
            ['multipart/form-data; boundary=B',
             part('form-data; name="model"; name="file"', 'qwen')],
        'two Content-Disposition headers' =>
            ['multipart/form-data; boundary=B',
             part('form-data; name="file"', 'qwen',
                  'Content-Disposition: form-data; name="model"')],
        'a folded header line' =>
            ['multipart/form-data; boundary=B',
             "--B\r\nContent-Disposition: form-data;\r\n name=\"model\"\r\n\r\nqwen\r\n"],
        'a "Model" field' =>
            ['multipart/form-data; boundary=B',
             part('form-data; name="model"', 'qwen'),
             part('form-data; name="Model"', 'other')],
        'model twice' =>
            ['multipart/form-data; boundary=B',
             part('form-data; name="model"', 'qwen'),
             part('form-data; name=model', 'other')],
        'unterminated quoted name' =>
            ['multipart/form-data; boundary=B',
             part('form-data; name="model', 'qwen')],
        'not form-data' =>
            ['multipart/form-data; boundary=B',
             part('attachment; name="model"', 'qwen')],
    );

    for my $name (sort keys %bad) {
        my ($ct, @parts) = @{ $bad{$name} };
        $t->is_openai_error(upload($ct, @parts, $file, $end), 400, undef, $name);
    }

    is(scalar @{ $local->requests }, 0, 'none reached the provider');
};

$t->done_testing;
