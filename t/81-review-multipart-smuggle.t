#!/usr/bin/perl

# Review finding: the multipart scanner (ngx_tailgate_multipart.c) does not
# read multipart/form-data the way RFC-conforming parsers do, so a client
# can send a transcription request whose "model" the gateway routes on (and
# rewrites) is not the "model" the provider reads.  The provider then runs a
# model of the client's choosing with the gateway's provider key, whatever
# the policy says.
#
#   1. Content-Disposition parameters may be tokens (RFC 2183/7578):
#      name=model is a "model" field for the provider (Go's mime, the mock
#      below), invisible to the scanner, which only knows name="...".
#   2. The boundary is looked up with a substring search in Content-Type,
#      so "boundary=" inside a quoted parameter value wins over the real
#      boundary parameter.  The scanner then parses a fake multipart
#      structure hidden in the file's bytes; the provider parses the real
#      one (Node's undici and Python's email agree: boundary=real).
#
# The expected behaviour: either a 400, or every "model" field the provider
# can read carries the provider model policyd chose.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Tailgate::Gateway;

my $t = Tailgate::Gateway->new->skip_unless_built;
my $key = $t->start_gateway;
my $local = $t->mock('local');

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

sub transcribe {
    my ($ct, $body) = @_;

    $local->clear;

    my $res = $t->http('POST', '/v1/audio/transcriptions',
        headers => { Authorization => "Bearer $key", 'Content-Type' => $ct },
        body => $body);

    return ($res, $local->requests->[-1]);
}


subtest 'name=model as a token' => sub {
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

subtest 'boundary= inside a quoted Content-Type parameter' => sub {
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

$t->done_testing;
