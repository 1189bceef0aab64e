#!/usr/bin/perl

# Review finding: the JSON scanner refuses a second "model" key, escaped or
# not, "so that a provider must not see another model than the one the
# gateway routed on" (ngx_tailgate_json.c).  But it compares keys
# case-sensitively, and a body with "model" and "Model" (or "MODEL") goes
# to the provider untouched.  Go's encoding/json - Ollama's OpenAI API, Go
# gateways - matches struct tags case-insensitively and the last key wins
# (golang/go#43664: {"dist":"ok","Dist":"KO"} gives "KO"); ASP.NET's web
# defaults are case-insensitive too.  Such a provider runs the model the
# client put in "Model" instead of the one policyd chose, with the
# gateway's credentials.
#
# Expected: a 400 for a key that equals "model" ignoring case (like the
# duplicate check), or at least no such key reaching the provider.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Tailgate::Gateway;

my $t = Tailgate::Gateway->new->skip_unless_built;
my $key = $t->start_gateway;
my $local = $t->mock('local');

for my $variant ('Model', 'MODEL', 'mOdEl', 'Mod\u0065l') {
    $local->clear;

    my $body = qq({"model":"qwen","messages":[],"$variant":"client-chosen-model"});
    my $res = $t->http('POST', '/v1/chat/completions',
        headers => { Authorization => "Bearer $key",
                     'Content-Type' => 'application/json' },
        body => $body);

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

$t->done_testing;
