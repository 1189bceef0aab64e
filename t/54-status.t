#!/usr/bin/perl
#
# tailgate_status for operators: the status comes whole however large the
# policy (policyd sends it in parts, each within tailgate_policyd_buffer),
# and a token's admin role is read where the status maps its roles claim,
# wherever that token was seen first.  (Who may read the status and what
# it says about providers: t/51-health.t.)

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use JSON::PP ();
use Test::More;
use Tailgate::Gateway;
use Tailgate::JWT qw(jwt_keypair jwt_token);

my $t = Tailgate::Gateway->new->skip_unless_built;
my $JSON = JSON::PP->new->canonical->utf8;

# a policy of 1200 routes: its status is larger than one frame the worker
# accepts (64k by default), which must not turn into 503
# policy_unavailable while policyd is fine

{
    my %routes = map {
        (sprintf('tenant-%04d-assistant', $_)
            => { steps => [ { provider => 'local', model => 'm' } ] })
    } 1 .. 1200;

    my $policy = {
        providers => {
            local => { upstream => 'tg_local', zone => 'local',
                       endpoints => ['chat'] },
        },
        routes => \%routes,
    };

    my $ops = $t->new_key;
    my $admin_sock = $t->dir . '/admin.sock';

    $t->start_gateway(
        policy => $policy,
        keys => [ ops => { key => $ops, role => 'admin' } ],
        policyd_args => ['-a', $admin_sock],
        server => q{
            location = /tailgate/status  { tailgate_status json; }
        });

    # policyd itself has the report, and it is well-formed

    my (undef, $direct) = $t->policyd_cmd('status', '-a', $admin_sock,
                                          { stderr => 0 });
    my $doc = eval { $JSON->decode($direct) };
    ok($doc && @{ $doc->{routes} } == 1200,
       'policyd status (admin socket): all 1200 routes, '
       . length($direct) . ' bytes');

    my $res = $t->http('GET', '/tailgate/status',
                       headers => { Authorization => "Bearer $ops" });

    is($res->{status}, 200, 'tailgate_status answers the operator')
        or diag("got $res->{status}: $res->{body}");

    my $relayed = eval { $JSON->decode($res->{body}) };
    ok($relayed && @{ $relayed->{routes} } == 1200
       && $relayed->{routes}[1199]{name} eq 'tenant-1200-assistant',
       'the status comes whole, in parts: all 1200 routes, last one intact');

    $t->allow_log(qr/policyd refused a request/);
    $t->stop_all;
}

# the admin role from a token's roles claim, mapped only where the status
# is served.  Verified tokens are remembered per claims mapping: a token
# first used on /v1/ (where roles are not mapped) is still an admin on the
# status location.

{
    my $t2 = Tailgate::Gateway->new;

    my $kp = jwt_keypair($t2->dir, 'ES256');

    $t2->start_gateway(
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

    my $token = sub {
        my ($sub) = @_;
        return jwt_token(alg => 'ES256', key => $kp, kid => 'k1',
                         claims => { sub => $sub, iss => 'https://idp.test',
                                     aud => 'tailgate', exp => time + 600,
                                     iat => time - 10, roles => ['admin'] });
    };

    my $status_with = sub {
        my ($tok) = @_;
        return $t2->http('GET', '/tailgate/status',
                         headers => { Authorization => "Bearer $tok" })->{status};
    };

    # a token whose first use is the status: the roles claim is read

    is($status_with->($token->('ops-1')), 200, 'an admin token, status first: 200');

    # the same kind of token, first used on the API

    my $tok = $token->('ops-2');
    my $res = $t2->http('GET', '/v1/models',
                        headers => { Authorization => "Bearer $tok" });
    is($res->{status}, 200, 'the token works on /v1/models');

    is($status_with->($tok), 200,
       'and then on the status location, which maps its roles claim: 200');

    $t2->stop_and_check('error.log is clean after the admin tokens');
}

$t->done_testing;
