#!/usr/bin/perl
#
# Keys of a JSON body read as every provider may read them, through the
# real nginx, policyd and a provider.
#
# A key with a NUL: a parser that keeps keys as C strings (cJSON, and any
# C server that does) reads "model\u0000x" as "model".  A body with such
# a key besides the real "model" made the gateway route on one model and
# such a provider run the other, untouched by the model rewrite; "tools"
# the same way passed a request with tools to a step without them.  They
# are refused now, and request edits read every key up to its NUL, so
# "response_format\u0000" is dropped with response_format.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Tailgate::Gateway;

my $t = Tailgate::Gateway->new->skip_unless_built;

my $policy = {
    providers => {
        local => { upstream => 'tg_local', zone => 'local',
                   endpoints => [qw(chat responses)], tools => JSON::PP::false },
    },
    routes => {
        cheap  => { steps => [ { provider => 'local', model => 'small' } ] },
        edited => { steps => [ { provider => 'local', model => 'small',
                                 adjust => [ { drop => ['response_format'] } ] } ] },
    },
};

my $key = $t->start_gateway(policy => $policy);
my $local = $t->mock('local');

my $messages = '"messages":[{"role":"user","content":"Hi"}]';

# the number of requests the provider got during $code

sub provider_got {
    my ($code) = @_;
    my $before = @{ $local->requests };
    my $res = $code->();
    return ($res, @{ $local->requests } - $before);
}

for my $case (
    [ 'a second model behind a NUL',
      qq({"model\\u0000":"huge-model","model":"cheap",$messages}) ],
    [ 'the same, after the routed one, longer than any key',
      qq({"model":"cheap","model\\u0000 and more than sixteen bytes":"huge",$messages}) ],
    [ 'in another case',
      qq({"MoDeL\\u0000x":"huge-model","model":"cheap",$messages}) ],
    [ 'tools behind a NUL, for a step without tools',
      qq({"model":"cheap","tools\\u0000":[{"type":"function","function":{"name":"f"}}],$messages}) ],
    [ 'stream behind a NUL',
      qq({"model":"cheap","stream\\u0000":true,$messages}) ],
) {
    my ($name, $body) = @$case;

    my ($res, $got) = provider_got(sub {
        $t->post_json('/v1/chat/completions', $key, $body)
    });

    $t->is_openai_error($res, 400, undef, "$name: refused with 400");
    like(($t->error($res) // {})->{message} // '', qr/NUL/, "$name: the message says why");
    is($got, 0, "$name: the provider got nothing");
}

# a NUL elsewhere is no key of ours: served as it was

{
    my ($res, $got) = provider_got(sub {
        $t->post_json('/v1/chat/completions', $key,
                      qq({"model":"cheap","user\\u0000":"u","x":"a\\u0000b",$messages}))
    });

    is($res->{status}, 200, 'other keys and values with a NUL: served');
    is($got, 1, 'the provider got it');
    like($local->requests->[-1]{body}, qr/"model":"small"/, 'with its model');
}

# an edit drops every key that a parser could read as the one it names

{
    my ($res, $got) = provider_got(sub {
        $t->post_json('/v1/chat/completions', $key,
                      qq({"model":"edited","response_format\\u0000":{"type":"json_object"},)
                      . qq("Response_Format":{"type":"text"},$messages}))
    });

    is($res->{status}, 200, 'edited: served');
    is($got, 1, 'edited: the provider got it');

    my $sent = $local->requests->[-1]{body} // '';
    unlike($sent, qr/response_format/i, 'response_format behind a NUL dropped too')
        or diag($sent);
    like($sent, qr/"messages"/, 'the rest kept');
}

$t->logs_clean('error.log is clean');

done_testing();
