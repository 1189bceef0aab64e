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
                                     part('form-data; name="model"; filename="x"', 'qwen')],
        'header case'            => ['Multipart/Form-Data; boundary=B',
                                     "--B\r\ncontent-disposition: Form-Data; Name=\"model\"\r\n\r\nqwen\r\n"],
        'tabs between parameters' => ['multipart/form-data; boundary=B',
                                     "--B\r\nContent-Disposition:\tform-data;\tname=\"model\"\r\n\r\nqwen\r\n"],
        'a leading CRLF'         => ['multipart/form-data; boundary=B',
                                     "\r\n" . part('form-data; name="model"', 'qwen')],
        'identity encodings'     => ['multipart/form-data; boundary=B',
                                     part('form-data; name="model"', 'qwen',
                                          'Content-Transfer-Encoding: 8bit')],
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

# Bodies a lenient parser reads as another set of fields than the RFCs
# say (finding the boundary anywhere, reading a preamble or epilogue,
# trimming "Content-Disposition :", splitting parameters at every ";",
# searching for name= anywhere in the header, decoding "%6d", reading
# "model[]" as model): each a 400 that names the problem, none proxied.
# In each, the gateway would read model=qwen and a lenient parser
# model=smart.

subtest 'what a lenient parser reads differently is refused, naming it' => sub {
    my $ct = 'multipart/form-data; boundary=B';
    my $model = part('form-data; name="model"', 'qwen');
    my $smart = "Content-Disposition: form-data; name=\"model\"\r\n\r\nsmart\r\n";

    my @bad = (
        ['the boundary inside a file, not after CRLF', $ct,
         part('form-data; name="file"; filename="a.wav"', "RIFF--B\r\n$smart"
              . 'more audio'), $model, $end, qr/inside a part/],
        ['the boundary inside a field value', $ct,
         part('form-data; name="prompt"', "say--B\r\n$smart"), $model, $end,
         qr/inside a part/],
        ['the boundary in a part header', $ct,
         part('form-data; name="file"', 'RIFF', 'X-Note: --B'), $model, $end,
         qr/inside a part/],
        ['a part in the preamble', $ct,
         $smart, $model, $file, $end, qr/before the first boundary/],
        ['a preamble of text', $ct,
         "This is a preamble.\r\n", $model, $file, $end,
         qr/before the first boundary/],
        ['a part after the closing boundary', $ct,
         $model, $file, $end, "--B\r\n$smart", $end, qr/follow the closing/],
        ['text after the closing boundary', $ct,
         $model, $file, "--B--\r\nepilogue\r\n", qr/follow the closing/],
        ['transport padding after a boundary', $ct,
         $file, "--B \r\n", substr($model, 5), $end, qr/boundary line/],
        ['a boundary that is a prefix of a line in the data', $ct,
         part('form-data; name="file"', "RIFF\r\n--Bx\r\n$smart"), $model, $end,
         qr/boundary line/],
        ['"Content-Disposition :" with a space before the colon', $ct,
         "--B\r\nContent-Disposition : form-data; name=\"model\"\r\n\r\nsmart\r\n",
         $model, $file, $end, qr/no space before the colon/],
        ['a header line ending in a bare LF', $ct,
         "--B\r\nContent-Disposition: form-data; name=\"file\"\n"
         . "Content-Disposition: form-data; name=\"model\"\r\n\r\nsmart\r\n",
         $model, $end, qr/ends in CRLF/],
        ['a lone CR inside a header line', $ct,
         "--B\r\nX-A: 1\rContent-Disposition: form-data; name=\"model\"\r\n"
         . "Content-Disposition: form-data; name=\"file\"\r\n\r\nsmart\r\n",
         $model, $end, qr/control characters/],
        ['a NUL in a field name', $ct,
         part(qq{form-data; name="model\0"}, 'smart'), $model, $end,
         qr/control characters/],
        ['a quoted name holding name=model', $ct,
         part('form-data; name="x;name=model"', 'smart'), $model, $end,
         qr/quoted .* value/],
        ['a filename holding name=model', $ct,
         part('form-data; name="file"; filename="a.wav; name=model"', 'smart'),
         $model, $end, qr/quoted .* value/],
        ['a filename holding name= without ";"', $ct,
         part('form-data; name="file"; filename="a name=model"', 'smart'),
         $model, $end, qr/quoted .* value/],
        ['an escaped quote in a name', $ct,
         part('form-data; name="mo\"del"', 'smart'), $model, $end,
         qr/quoted .* value/],
        ['a filename before the name', $ct,
         part('form-data; filename="model"; name="file"', 'smart'), $model,
         $end, qr/first parameter/],
        ['spaces around "="', $ct,
         part('form-data; name = "file"', 'smart'), $model, $end,
         qr/no spaces around/],
        ['a name in single quotes', $ct,
         part(q{form-data; name='model'}, 'smart'), $model, $end,
         qr/read as "model"/],
        ['a quoted name with spaces around it', $ct,
         part('form-data; name=" model "', 'smart'), $model, $end,
         qr/read as "model"/],
        ['a name with percent escapes', $ct,
         part('form-data; name="%6Dodel"', 'smart'), $model, $end,
         qr/read as "model"/],
        ['model[]', $ct,
         part('form-data; name="model[]"', 'smart'), $model, $end,
         qr/read as "model"/],
        ['a "STREAM" field', $ct,
         $model, part('form-data; name="STREAM"', 'true'), $end,
         qr/read as "model" or "stream"/],
        ['a part that is multipart itself', $ct,
         part('form-data; name="files"', "--C\r\n$smart--C--",
              'Content-Type: multipart/mixed; boundary=C'), $model, $end,
         qr/multipart itself/],
        ['a base64 model', $ct,
         part('form-data; name="model"', 'cXdlbg==',
              'Content-Transfer-Encoding: base64'), $file, $end,
         qr/Content-Transfer-Encoding/],
        ['a boundary with a trailing space', 'multipart/form-data; boundary="B "',
         $model, $end, qr/Content-Type must be/],
        ['a boundary with ";" in quotes', 'multipart/form-data; boundary="B;x"',
         $model, $end, qr/Content-Type must be/],
    );

    $local->clear;

    for my $case (@bad) {
        my ($name, $type, @parts) = @$case;
        my $re = pop @parts;
        my $res = upload($type, @parts);
        $t->is_openai_error($res, 400, undef, $name) or next;
        is($t->error($res)->{type}, 'invalid_request_error', "$name: type");
        like($t->error($res)->{message}, $re, "$name: says why");
    }

    # two Content-Type headers: proxied both, and the last counts for some
    my $body = join '', $model, $file, $end;
    my $c = $t->raw_connect;
    $c->write_bytes("POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\n"
                    . "Authorization: Bearer $key\r\n"
                    . "Content-Type: multipart/form-data; boundary=B\r\n"
                    . "Content-Type: multipart/form-data; boundary=C\r\n"
                    . "Content-Length: " . length($body) . "\r\n\r\n$body");
    my ($status, $raw) = $c->read_response;
    $c->close;
    is($status, 400, 'two Content-Type headers: 400');
    like($raw, qr/Content-Type must be one/, 'which says why');

    is(scalar @{ $local->requests }, 0, 'none reached the provider');
};

# what clients send: curl -F, python requests, node's fetch (the openai
# node SDK's FormData), and the openai python SDK's httpx body, with the
# array field it sends for timestamp_granularities

subtest 'uploads of real clients route' => sub {
    my $port = $t->port('nginx');
    my $url = "http://127.0.0.1:$port/v1/audio/transcriptions";
    my $wav = $t->write_file('a.wav', 'RIFF' . join('', map { chr } 0 .. 255) x 64
                                      . "\r\n--\r\n----\r\n");
    $wav = $t->dir . '/a.wav';

    my %clients = (
        'curl -F' => [qw(curl -s -m 10 -o /dev/null -w %{http_code}),
                      -H => "Authorization: Bearer $key",
                      -F => 'model=qwen', -F => "file=\@$wav",
                      -F => 'response_format=json', $url],
        'python requests' => ['python3', '-c', <<'PY', $url, $key, $wav],
import sys, requests
url, key, wav = sys.argv[1:]
r = requests.post(url, headers={'Authorization': 'Bearer ' + key},
                  data={'model': 'qwen'},
                  files={'file': ('a.wav', open(wav, 'rb'), 'audio/wav')})
print(r.status_code, end='')
PY
        'node fetch FormData' => ['node', '-e', <<'JS', $url, $key, $wav],
const [url, key, wav] = process.argv.slice(1);
const fd = new FormData();
fd.append('file', new Blob([require('fs').readFileSync(wav)]), 'a.wav');
fd.append('model', 'qwen');
fd.append('timestamp_granularities[]', 'word');
fetch(url, { method: 'POST', body: fd, headers: { authorization: 'Bearer ' + key } })
  .then(r => process.stdout.write(String(r.status)), () => process.stdout.write('0'));
JS
    );

    for my $name (sort keys %clients) {
        my ($prog) = @{ $clients{$name} };
        my $deps = $name eq 'python requests' ? q{python3 -c 'import requests'}
                 : "$prog --version";

        SKIP: {
            skip "$name: not installed", 2
                if system("$deps >/dev/null 2>&1") != 0;

            $local->clear;
            open my $fh, '-|', @{ $clients{$name} } or die "$name: $!\n";
            my $out = do { local $/; <$fh> };
            close $fh;

            is($out, '200', "$name: 200");
            like($local->requests->[-1]{body} // '', qr/\r\n\r\nqwen2\.5-7b-instruct\r\n/,
                 "$name: the provider's model field was rewritten");
        }
    }

    # the body httpx writes for the openai python SDK
    my $b = join '', map { sprintf '%02x', int rand 256 } 1 .. 16;
    my $res = upload("multipart/form-data; boundary=$b", join '',
        "--$b\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nqwen\r\n",
        "--$b\r\nContent-Disposition: form-data; name=\"timestamp_granularities[]\"\r\n\r\nword\r\n",
        "--$b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n",
        "Content-Type: audio/wav\r\n\r\nRIFF\0\xff--\r\n\r\n--$b--\r\n");
    is($res->{status}, 200, 'the openai python SDK: 200')
        or diag($res->{body});
};

# a form's "stream" is "true" or "false": "1", "True" or "yes" would be
# false to the gateway and may be true to a provider

subtest 'stream is "true" or "false", model not empty' => sub {
    my $ct = 'multipart/form-data; boundary=B';
    my $model = part('form-data; name="model"', 'qwen');

    $local->clear;

    for my $value ('', 'True', 'TRUE', '1', '0', 'yes', 'true ', ' true', 'null',
                   '"true"', 't' x (1024 * 1024))
    {
        my $name = 'stream=' . (length $value > 20 ? 'a 1 MB value' : "'$value'");
        my $res = upload($ct, $model, part('form-data; name="stream"', $value),
                         $file, $end);
        $t->is_openai_error($res, 400, 'invalid_type', $name) or next;
        is($t->error($res)->{param}, 'stream', "$name: param");
        like($t->error($res)->{message}, qr/"true" or "false"/, "$name: says what");
    }

    my $res = upload($ct, part('form-data; name="model"', ''), $file, $end);
    $t->is_openai_error($res, 400, 'invalid_value', 'an empty model')
        and is($t->error($res)->{param}, 'model', 'an empty model: param');

    $res = upload($ct, $model, part('form-data; name="stream"', 'true'),
                  part('form-data; name="stream"', 'false'), $file, $end);
    $t->is_openai_error($res, 400, undef, 'stream twice')
        and is($t->error($res)->{param}, 'stream', 'stream twice: param');

    $res = upload($ct, $model, $model, $file, $end);
    $t->is_openai_error($res, 400, undef, 'model twice')
        and is($t->error($res)->{param}, 'model', 'model twice: param');

    is(scalar @{ $local->requests }, 0, 'none reached the provider');

    $res = upload($ct, part('form-data; name="model"', 'm' x 300), $file, $end);
    $t->is_openai_error($res, 404, 'model_not_found', 'a 300-byte model');

    for my $value ('true', 'false') {
        $res = upload($ct, $model, part('form-data; name="stream"', $value), $file, $end);
        is($res->{status}, 200, "stream=$value: 200");
    }
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
