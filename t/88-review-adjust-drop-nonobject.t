#!/usr/bin/perl
#
# Review: a "drop key.member" edit must only remove that member.  When the
# client's value of "key" is not an object (null, a string, an array) there
# is nothing to drop, and the value must reach the provider as it was sent.
#
# ngx_tailgate_adjust_object() treats every top-level key that edits reach
# below as "nested" and rebuilds its value as an object; for a value that is
# no object it writes "{" + the members *set* below it + "}", so a drop-only
# edit turns "stream_options":null into "stream_options":{} and
# "metadata":"x" into "metadata":{}.  docs/policy.md only allows replacing a
# non-object value for "set".  (A provider that rejects stream_options
# without stream - OpenAI does - then fails a request the client sent
# correctly.)

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use JSON::PP ();
use Test::More;
use Tailgate::Gateway;

my $t = Tailgate::Gateway->new->skip_unless_built;
my $JSON = JSON::PP->new->canonical->utf8;

my $policy = {
    providers => {
        local => { upstream => 'tg_local', zone => 'local',
                   endpoints => [qw(chat)] },
    },
    routes => {
        d => { steps => [ { provider => 'local', model => 'l', adjust => [
                   { drop => ['metadata.secret', 'stream_options.include_usage'] },
               ] } ] },
    },
};

my $key = $t->start_gateway(policy => $policy);
my $mock = $t->mock('local');

sub sent {
    my ($text) = @_;

    my $before = @{ $mock->requests };
    my $res = $t->http('POST', '/v1/chat/completions',
                       headers => { Authorization => "Bearer $key",
                                    'Content-Type' => 'application/json' },
                       body => $text);
    is($res->{status}, 200, 'answered');

    my $r = $mock->requests->[$before] or return undef;
    my $doc = eval { $JSON->decode($r->{body}) };
    ok($doc, 'the provider got JSON') or diag($r->{body});

    return ($doc, $r->{body});
}

my ($doc, $raw);

($doc, $raw) = sent('{"model":"d","messages":[],"stream_options":null}');
ok(exists $doc->{stream_options} && !defined $doc->{stream_options},
   'stream_options: null stays null') or diag($raw);

($doc, $raw) = sent('{"model":"d","messages":[],"metadata":"a string"}');
is($doc->{metadata}, 'a string', 'a string metadata is not replaced')
    or diag($raw);

($doc, $raw) = sent('{"model":"d","messages":[],"metadata":[1,2]}');
is_deeply($doc->{metadata}, [1, 2], 'an array metadata is not replaced')
    or diag($raw);

# the members that are objects still lose what the policy drops

($doc, $raw) = sent('{"model":"d","messages":[],"metadata":{"secret":1,"keep":2}}');
is_deeply($doc->{metadata}, { keep => 2 }, 'metadata.secret dropped')
    or diag($raw);

$t->done_testing;
