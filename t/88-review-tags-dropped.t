#!/usr/bin/perl
#
# Review: tags only ever add restrictions; none may be lost on the way.
#
# ngx_http_tailgate_add_tags() merges the location's tags and the client's
# (key record or token) and silently keeps only the first 16.  A key record
# may carry 16 tags and a location adds its own, so the key's last tags are
# dropped without a word - here "region:eu", and the request goes to a
# provider in another region.  (X-Tailgate-Tags over the limit is a 400;
# the key's and the location's tags are not even checked.)

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Tailgate::Gateway;

my $t = Tailgate::Gateway->new->skip_unless_built;

my $policy = {
    providers => {
        us => { upstream => 'tg_us', zone => 'external', region => 'us',
                endpoints => ['chat'] },
        eu => { upstream => 'tg_eu', zone => 'external', region => 'eu',
                endpoints => ['chat'] },
    },
    routes => {
        r => { steps => [ { provider => 'us', model => 'u' },
                          { provider => 'eu', model => 'e' } ] },
    },
};

my $eu_only = $t->new_key;

$t->start_gateway(
    policy => $policy,
    private => [],
    keys => [ bob => { key => $eu_only,
                       tags => [ (map { "team$_" } 1 .. 15), 'region:eu' ] } ],
    server => q{
        location /office/v1/ {
            tailgate on;
            tailgate_tags office;
            include tailgate/proxy.conf;
        }
    });

my %mock = map { $_ => $t->mock($_) } qw(us eu);

my $res = $t->post_json('/v1/chat/completions', $eu_only,
                        { model => 'r', messages => [] });
is($res->{headers}{'x-tailgate-provider'}, 'eu', '/v1/: the key keeps it in eu');

my $before = @{ $mock{us}->requests };

$res = $t->post_json('/office/v1/chat/completions', $eu_only,
                     { model => 'r', messages => [] });

is(scalar @{ $mock{us}->requests } - $before, 0,
   'a location tag does not take the key\'s region:eu away: us got nothing')
    or diag("status $res->{status}, provider "
            . ($res->{headers}{'x-tailgate-provider'} // '-'));

$t->done_testing;
