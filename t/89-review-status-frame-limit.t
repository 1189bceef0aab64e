#!/usr/bin/perl
#
# Review: tailgate_status relays policyd's whole status in one STATUS_REPLY
# frame, which must fit in what the worker accepts (tailgate_policyd_buffer,
# 64k by default).  The status lists every provider and every route, so a
# policy of a thousand routes or so (or a few dozen routes with traffic, in
# Prometheus text) no longer fits: tg_handle_status() answers ERROR
# internal "the status does not fit in a frame", the module takes that for
# policyd being down and the operator gets 503 policy_unavailable - while
# policyd is fine and `policyd status` on the admin socket prints the same
# report.  Neither docs/directives.md (tailgate_status,
# tailgate_policyd_buffer) nor protocol.md (Status) mentions a limit.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use JSON::PP ();
use Test::More;
use Tailgate::Gateway;

my $t = Tailgate::Gateway->new->skip_unless_built;
my $JSON = JSON::PP->new->canonical->utf8;

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

my $direct = `$t->{policyd} status -a $admin_sock`;
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
$t->done_testing;
