#!/usr/bin/perl

# The body that reaches the provider names the provider's model, carries a
# correct Content-Length and is otherwise the client's body byte for byte.
# No other key a provider could take for "model" gets there with it.

use strict;
use warnings;
use utf8;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Tailgate::Gateway;

my $t = Tailgate::Gateway->new->skip_unless_built;

my $policy = Tailgate::Gateway::default_policy();
$policy->{routes}{'café/ü "q"'} = {
    steps => [{ provider => 'local', model => "m\x{2603}\"\\x" }] };
$policy->{routes}{'to-unicode'} = {
    steps => [{ provider => 'local', model => "snow\x{2603}man" }] };

# what each request sent its provider, all of it: nothing after the body
my $key = $t->start_gateway(policy => $policy,
    http   => q{log_format upstream_sent '$upstream_bytes_sent';},
    server => 'access_log %%DIR%%/upstream_sent.log upstream_sent;');
my $local = $t->mock('local');


# send a raw body; return what the provider received
sub through {
    my ($body, %opt) = @_;

    my $res = $t->post_json('/v1/chat/completions', $key, $body,
                            headers => $opt{headers} // {},
                            %{ $opt{http} // {} });

    return ($res, $local->requests->[-1]);
}

sub expect_body {
    my ($got, $body, $name) = @_;

    ok($got->{body} eq $body, "$name: body is exactly the expected bytes")
        or diag("got: " . substr($got->{body}, 0, 300));
    is($got->{headers}{'content-length'}, length $got->{body},
       "$name: Content-Length matches");
}


subtest 'the model is replaced in place, nothing else moves' => sub {
    my $body = qq({"messages":[{"role":"user","content":"a \\"model\\": \\"x\\""}],)
             . qq( "model" : "qwen" , "temperature":0.2});
    (my $want = $body) =~ s/"qwen"/"qwen2.5-7b-instruct"/;

    my ($res, $got) = through($body);
    is($res->{status}, 200, 'status 200');
    expect_body($got, $want, 'model in the middle');
};

# a body in several reads: $head_bytes of it with the headers, the rest in
# $pieces writes a moment apart; what the provider received
sub in_pieces {
    my ($body, $head_bytes, $pieces) = @_;

    my $c = $t->raw_connect;
    my $req = "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
            . "Authorization: Bearer $key\r\n"
            . "Content-Type: application/json\r\n"
            . "Content-Length: " . length($body) . "\r\n\r\n";

    $c->write_bytes($req . substr($body, 0, $head_bytes));
    my $rest = substr($body, $head_bytes);
    my $size = int(length($rest) / $pieces) + 1;

    for (my $off = 0; $off < length $rest; $off += $size) {
        select(undef, undef, undef, 0.05);
        $c->write_bytes(substr($rest, $off, $size));
    }

    my ($status) = $c->read_response(10);
    $c->close;

    return ($status, $local->requests->[-1]);
}

subtest 'a body in several reads reaches the provider whole' => sub {
    my $filler = 'z' x (300 * 1024);

    for my $case ([0, 'headers alone first'], [700, 'some body with the headers'])
    {
        my ($head_bytes, $how) = @$case;

        for my $where ('start', 'end') {
            # qwen is renamed for its provider; same keeps its name, so the
            # client's own chain of buffers is what goes
            for my $model ('qwen', 'same') {
                my $body = $where eq 'start'
                    ? qq({"model":"$model","messages":[{"role":"user","content":"$filler"}]})
                    : qq({"messages":[{"role":"user","content":"$filler"}],"model":"$model"});
                (my $want = $body) =~ s/"qwen"/"qwen2.5-7b-instruct"/;

                my ($status, $got) = in_pieces($body, $head_bytes, 4);
                my $name = "$how, $model at the $where";
                is($status, 200, "$name: 200");
                expect_body($got, $want, $name);

                my ($sent) = (split /\n/, $t->read_file('upstream_sent.log'))[-1];
                # the request line and headers: well under 2 KB here
                cmp_ok($sent, '<=', length($want) + 2048,
                       "$name: no more than the request went upstream");
            }
        }
    }
};

subtest 'a model at the end of a 1 MB body' => sub {
    my $filler = 'x' x (1024 * 1024);
    my $body = qq({"messages":[{"role":"user","content":"$filler"}],"model":"qwen"});
    (my $want = $body) =~ s/"qwen"\}$/"qwen2.5-7b-instruct"}/;

    my ($res, $got) = through($body);
    is($res->{status}, 200, 'status 200');
    expect_body($got, $want, '1 MB body');
};

subtest 'a model at the start of a 1 MB body' => sub {
    my $filler = 'y' x (1024 * 1024);
    my $body = qq({"model":"qwen","messages":[{"role":"user","content":"$filler"}]});
    (my $want = $body) =~ s/^\{"model":"qwen"/{"model":"qwen2.5-7b-instruct"/;

    my ($res, $got) = through($body);
    is($res->{status}, 200, 'status 200');
    expect_body($got, $want, '1 MB body');
};

subtest 'the same name needs no rewrite: the body is untouched' => sub {
    my $body = qq({ "model":"same",\n "messages" : [] }\n);

    my ($res, $got) = through($body);
    is($res->{status}, 200, 'status 200');
    expect_body($got, $body, 'same model');
};

subtest 'escaped and unicode names are decoded to route and re-escaped' => sub {
    my $body = qq({"model":"caf\\u00e9/\\u00fc \\"q\\"","messages":[]});

    my ($res, $got) = through($body);
    is($res->{status}, 200, 'the escaped route name matched its route');
    is($got->{json}{model}, "m\x{2603}\"\\x", 'provider model decoded correctly');
    like($got->{body}, qr/^\{"model":"m\xe2\x98\x83\\"\\\\x","messages":\[\]\}$/,
         'and written as valid JSON');

    ($res, $got) = through(qq({"model":"to-unicode"}));
    is($got->{json}{model}, "snow\x{2603}man", 'UTF-8 provider model');
};

subtest 'a chunked request body is rewritten with a Content-Length' => sub {
    my $body = qq({"model":"qwen","messages":[{"role":"user","content":"chunks"}]});
    (my $want = $body) =~ s/"qwen"/"qwen2.5-7b-instruct"/;

    my ($res, $got) = through($body, http => { chunked => 1 });
    is($res->{status}, 200, 'status 200');
    expect_body($got, $want, 'chunked');
    ok(!exists $got->{headers}{'transfer-encoding'}, 'sent with a length, not chunked');
};

subtest 'a body that nginx keeps in a temporary file' => sub {
    # 4 MB limit, larger than the in-memory buffer of the transcription
    # location: a JSON body near the limit on a location whose buffer is
    # smaller goes to a file first
    my $filler = 'z' x (3 * 1024 * 1024);
    my $body = qq({"messages":[{"role":"user","content":"$filler"}],"model":"qwen"});
    (my $want = $body) =~ s/"qwen"\}$/"qwen2.5-7b-instruct"}/;

    my ($res, $got) = through($body);
    is($res->{status}, 200, 'status 200');
    expect_body($got, $want, '3 MB body');
};

# a key that equals "model" ignoring case: providers that match keys
# case-insensitively with the last one winning (Go's encoding/json, ASP.NET)
# would run it.  Refused like a duplicate, or at least not passed on.

for my $variant ('Model', 'MODEL', 'mOdEl', 'Mod\u0065l') {
    $local->clear;

    my $body = qq({"model":"qwen","messages":[],"$variant":"client-chosen-model"});
    my ($res) = through($body);

    if ($res->{status} == 400) {
        pass("$variant: refused");
        next;
    }

    my $got = $local->requests->[-1];
    my @keys = grep { lc eq 'model' } keys %{ $got->{json} // {} };

    is_deeply([sort @keys], ['model'],
              "$variant: the provider sees no other key that folds to \"model\"")
        or diag("provider body: $got->{body}");
}

# Go's encoding/json folds keys the Unicode way: U+017F (long s) is "s",
# so "\u017ftream" is "stream" and "tool\u017f" is "tools" there

for my $variant ('\u017ftream', 'tool\u017f', '\u017fTREAM') {
    my $body = qq({"model":"qwen","messages":[],"$variant":true});
    my ($res) = through($body);
    is($res->{status}, 400, "$variant: refused, as a routing key in another case");
}

$t->logs_clean('error.log is clean after the model keys in other cases');

$t->done_testing;
