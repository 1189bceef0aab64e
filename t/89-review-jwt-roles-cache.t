#!/usr/bin/perl
#
# Review: the admin role from a token's roles claim (tailgate_jwt_claims
# ... roles=CLAIM, context http, server, location) and the verified-token
# cache.  ngx_tailgate_jwt_identity() keys the cache on the location's
# tailgate_jwt_key list (a pointer every location inherits) and the token,
# not on the claims mapping - although its own comment says "a token is
# remembered per JWT configuration: locations may differ".  An operator
# who maps roles only where the status is served
#
#     location = /tailgate/status {
#         tailgate_jwt_claims client=sub roles=roles;
#         tailgate_status json;
#     }
#
# gets 403 admin_required for any token already used on /v1/ (cached
# there with admin = 0), and 200 for the same token when the status is the
# first thing it asks.  (The reverse direction - tags= or routes= mapped
# in one location and not another - lets a token's restrictions depend on
# where it was seen first.)

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Tailgate::Gateway;
use Tailgate::JWT qw(jwt_keypair jwt_token);

my $t = Tailgate::Gateway->new->skip_unless_built;

my $kp = jwt_keypair($t->dir, 'ES256');

$t->start_gateway(
    http => qq{
        tailgate_jwt_key ES256 $kp->{public_pem} kid=k1;
        tailgate_jwt_issuer https://idp.test;
        tailgate_jwt_audience tailgate;
        tailgate_jwt_claims client=sub;
    },
    server => q{
        location = /tailgate/status {
            tailgate_jwt_claims client=sub roles=roles;
            tailgate_status json;
        }
    });

sub token {
    my ($sub) = @_;
    return jwt_token(alg => 'ES256', key => $kp, kid => 'k1',
                     claims => { sub => $sub, iss => 'https://idp.test',
                                 aud => 'tailgate', exp => time + 600,
                                 iat => time - 10, roles => ['admin'] });
}

sub status_with {
    my ($token) = @_;
    return $t->http('GET', '/tailgate/status',
                    headers => { Authorization => "Bearer $token" })->{status};
}

# a token whose first use is the status: the roles claim is read

is(status_with(token('ops-1')), 200, 'an admin token, status first: 200');

# the same kind of token, first used on the API

my $tok = token('ops-2');
my $res = $t->http('GET', '/v1/models',
                   headers => { Authorization => "Bearer $tok" });
is($res->{status}, 200, 'the token works on /v1/models');

is(status_with($tok), 200,
   'and then on the status location, which maps its roles claim: 200');

$t->done_testing;
