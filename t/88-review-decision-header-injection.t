#!/usr/bin/perl
#
# Review: docs/architecture.md - "What the module trusts policyd with:
# choices, not nginx ... host, path and Authorization values without
# control characters" (and "no CR/LF anywhere" in the request path).
#
# The decision's provider and route names now become response headers
# (X-Tailgate-Provider, X-Tailgate-Route, added by the header filter), but
# ngx_http_tailgate_check() only checks host, path and authorization: a
# policyd that answers with a CR/LF in either name splits the response
# headers of every client it decides for.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Tailgate::Gateway;

my $t = Tailgate::Gateway->new->skip_unless_built;

my %local = (upstream => 'tg_local', scheme => 'http', host => 'local',
             path => '/v1/chat/completions', zone => 'local',
             provider_model => 'm-local');

$t->start_gateway(
    mocks => [qw(local)],
    fake_policyd => {
        decision => { %local, provider => 'local' },
        decisions => {
            p => { provider => "local\r\nSet-Cookie: injected=1" },
            r => { route => "r\r\nX-Injected: 1" },
        },
    });

for my $model (qw(p r)) {
    my $res = $t->chat($model);

    ok(!defined $res->{headers}{'set-cookie'}
       && !defined $res->{headers}{'x-injected'},
       "[$model] no header injected from the decision")
        or diag("status $res->{status}, headers: "
                . join(', ', map { "$_: $res->{headers}{$_}" }
                             sort keys %{ $res->{headers} }));
}

$t->done_testing;
