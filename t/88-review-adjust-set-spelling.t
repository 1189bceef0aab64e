#!/usr/bin/perl
#
# Review: "set" must leave the provider with the key the policy names.
#
# docs/policy.md: "set: key -> value, replacing what is there or adding it
# ... keys match whatever their letter case or JSON escapes ... and every
# other spelling of a key that is set is removed."
#
# 1. When the client's body has the key only in another letter case
#    ("Seed", "Stream_Options"), ngx_tailgate_adjust_object() keeps the
#    client's spelling and writes the new value under it: the provider gets
#    "Seed":7 and no "seed" at all, so a case-sensitive provider (most are)
#    never sees what the policy set.
#
# 2. Two "set" edits of members below the same key in different letter
#    case ("metadata.a", "Metadata.b") pass policyd's check (which compares
#    case-sensitively) while the module matches keys ignoring case; for a
#    body without that key the module writes two keys that differ only in
#    case - exactly what the module refuses from clients for "model".

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
        s => { steps => [ { provider => 'local', model => 'l', adjust => [
                   { set => { seed => 7,
                              'stream_options.include_usage' => JSON::PP::true } },
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

($doc, $raw) = sent('{"model":"s","messages":[],"Seed":3}');
is($doc->{seed}, 7, '"seed" is set although the client wrote "Seed"')
    or diag($raw);
ok(!exists $doc->{Seed}, 'the other spelling "Seed" is gone') or diag($raw);

($doc, $raw) = sent('{"model":"s","messages":[],"Stream_Options":{"a":1}}');
is(ref $doc->{stream_options} eq 'HASH'
   && $doc->{stream_options}{include_usage} ? 1 : 0, 1,
   'stream_options.include_usage reaches the provider') or diag($raw);
ok(!exists $doc->{Stream_Options}, 'no "Stream_Options" left') or diag($raw);

# two sets below one key, spelled in two cases: refused by policyd -t, or
# written under one key

{
    my $dir = $t->dir;
    my $p = {
        providers => { local => { upstream => 'tg_local', zone => 'local',
                                  endpoints => [qw(chat)] } },
        routes => { c => { steps => [ { provider => 'local', model => 'l',
            adjust => [ { set => { 'metadata.a' => 1, 'Metadata.b' => 2 } } ] } ] } },
    };

    $t->write_file('case.json', $JSON->encode($p));
    my $out = `$t->{policyd} -t -c $dir/case.json -s $dir/unused.sock 2>&1`;
    my $accepted = $? == 0;

    SKIP: {
        skip 'policyd refuses the policy: fine', 3 unless $accepted;

        # the running policyd loads the same policy on a reload
        $t->write_policy({ %$policy, routes => { %{ $policy->{routes} },
                                                 %{ $p->{routes} } } });
        $t->reload_policyd;
        $t->wait_log('policyd.log', qr/policy reloaded/);

        ($doc, $raw) = sent('{"model":"c","messages":[]}');
        my @meta = grep { lc $_ eq 'metadata' } keys %$doc;
        is(scalar @meta, 1, 'one "metadata" key, not two spellings')
            or diag($raw);
    }
}

$t->done_testing;
