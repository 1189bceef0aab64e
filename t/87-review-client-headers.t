#!/usr/bin/perl

# Review finding (low/medium, configuration): conf/tailgate/proxy.conf
# replaces Authorization, X-Api-Key, Cookie and Host, and passes every
# other client header to the provider.  Some of them select the account
# the provider bills and the project/organisation whose limits apply -
# OpenAI's "OpenAI-Organization" and "OpenAI-Project" ("usage from these
# API requests will count as usage for the specified organization and
# project") - so a client chooses the gateway key's organisation/project,
# a routing decision policyd never saw.
#
# Expected: provider-account headers do not reach the provider
# (proxy_set_header OpenAI-Organization ""; proxy_set_header
# OpenAI-Project ""; or an allow-list of forwarded headers).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Tailgate::Gateway;

my $t = Tailgate::Gateway->new->skip_unless_built;
my $key = $t->start_gateway;
my $ext = $t->mock('ext');

my $res = $t->chat('smart', headers => {
    'OpenAI-Organization' => 'org-chosen-by-client',
    'OpenAI-Project'      => 'proj-chosen-by-client',
});
is($res->{status}, 200, 'proxied to the external provider');

my $got = $ext->requests->[-1];
is($got->{headers}{'openai-organization'}, undef,
   'the client cannot pick the provider organisation');
is($got->{headers}{'openai-project'}, undef,
   'the client cannot pick the provider project');

$t->done_testing;
