#!/usr/bin/perl

# Transcription uploads: the gateway must read a multipart body exactly as
# the provider will, or a client could route on one model and run another.
# Valid forms route; anything two parsers could read differently is a 400
# that never reaches a provider, or reaches it with no "model" but the one
# policyd chose, read as RFC 7578 receivers read it.  A chunked upload in
# several reads is rewritten too.

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

my $want = 'qwen2.5-7b-instruct';    # route qwen -> local, see default_policy


# RFC 2045/2183 parameters: name=token or name="quoted-string"
sub params {
    my ($value) = @_;
    my %p;
    while ($value =~ /;\s*([!#\$%&'*+.^_`|~0-9A-Za-z-]+)\s*=\s*
                      (?:"((?:[^"\\]|\\.)*)"|([!#\$%&'*+.^_`|~0-9A-Za-z-]+))/gx)
    {
        my $v = defined $2 ? $2 =~ s/\\(.)/$1/gr : $3;
        $p{lc $1} //= $v;
    }
    return \%p;
}

# every value of a "model" field, parsed as an RFC 7578 receiver does
sub provider_models {
    my ($req) = @_;

    my $boundary = params($req->{headers}{'content-type'})->{boundary};
    my @parts = split /\r\n--\Q$boundary\E/, "\r\n$req->{body}";
    shift @parts;

    my @models;

    for my $part (@parts) {
        last if $part =~ /^--/;
        $part =~ s/^[ \t]*\r\n// or next;
        my $sep = index($part, "\r\n\r\n");
        next if $sep < 0;
        my ($disp) = substr($part, 0, $sep) =~ /^content-disposition:[^;]*(;.*)$/mi
            or next;
        push @models, substr($part, $sep + 4)
            if (params($disp)->{name} // '') eq 'model';
    }

    return \@models;
}

# a whole body; returns the response and what the provider received
sub transcribe {
    my ($ct, $body) = @_;

    $local->clear;
    my $res = upload($ct, $body);

    return ($res, $local->requests->[-1]);
}


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

# a token name=model, which the provider reads as a model field, before
# the quoted one the gateway routes on

subtest 'a name=model token field cannot carry a second model' => sub {
    my $b = 'B0undary';
    my $body = join '',
        "--$b\r\n", "Content-Disposition: form-data; name=model\r\n\r\n",
        "client-chosen-model\r\n",
        "--$b\r\n", qq{Content-Disposition: form-data; name="file"; filename="a.wav"\r\n},
        "Content-Type: audio/wav\r\n\r\n", "RIFF....WAVE\r\n",
        "--$b\r\n", qq{Content-Disposition: form-data; name="model"\r\n\r\n},
        "qwen\r\n",
        "--$b--\r\n";

    my ($res, $got) = transcribe("multipart/form-data; boundary=$b", $body);

    if ($res->{status} == 400) {
        pass('refused as ambiguous');
        return;
    }

    is($res->{status}, 200, 'proxied');
    is_deeply(provider_models($got), [$want],
              'the provider can read no model but the one policyd chose')
        or diag('the mock answered for model: '
                . ($t->json($res)->{model} // '?'));
};

# "boundary=" inside a quoted Content-Type parameter: the real boundary is
# the boundary parameter, and the multipart structure hidden in the file's
# bytes is only bytes

subtest 'the boundary is the parameter, not "boundary=" inside another' => sub {
    my $ct = 'multipart/form-data; x="a;boundary=fake;"; boundary=real';
    is(params($ct)->{boundary}, 'real', 'an RFC parser reads boundary=real');

    my $body = join '',
        "--real\r\n", qq{Content-Disposition: form-data; name="model"\r\n\r\n},
        "client-chosen-model\r\n",
        "--real\r\n", qq{Content-Disposition: form-data; name="file"; filename="a.wav"\r\n},
        "Content-Type: audio/wav\r\n\r\n",
            # file bytes that look like a multipart body of boundary "fake"
            "RIFF\r\n--fake\r\n",
            qq{Content-Disposition: form-data; name="model"\r\n\r\n},
            "qwen\r\n--fake--\r\n",
        "\r\n--real--\r\n";

    my ($res, $got) = transcribe($ct, $body);

    # reading the real structure, the gateway sees the provider's model:
    # no such route, refused like any unknown model
    if ($res->{status} == 400
        || ($res->{status} == 404
            && ($t->error($res)->{code} // '') eq 'model_not_found'))
    {
        pass("refused ($res->{status})");
        return;
    }

    is($res->{status}, 200, 'proxied');
    is_deeply(provider_models($got), [$want],
              'the provider can read no model but the one policyd chose');
};

$t->logs_clean('error.log is clean after the ambiguous uploads');

# a chunked upload that arrives in several reads (no single buffer)

{
    my $b = 'B0undary';
    my @parts = (
        "--$b\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nqwen\r\n",
        "--$b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n"
        . "Content-Type: audio/wav\r\n\r\nRIFF....WAVE\r\n",
        "--$b--\r\n");

    my $res = $t->http('POST', '/v1/audio/transcriptions',
        headers => { Authorization => "Bearer $key",
                     'Content-Type' => "multipart/form-data; boundary=$b" },
        body => \@parts, chunked => 1, part_delay_ms => 50);
    is($res->{status}, 200, 'a chunked transcription upload in three reads');
    is($t->json($res)->{model}, 'qwen2.5-7b-instruct', 'with the model rewritten');

    $t->logs_clean('error.log is clean after the chunked upload');
}

$t->done_testing;
