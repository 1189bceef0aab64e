#!/usr/bin/perl
#
# Review: docs/protocol.md - "A request that fell back sends one REPORT per
# attempt, each for the provider of that attempt", and not_sent for "the
# decision was not used".
#
# When the module refuses the decision of a second attempt (no such
# upstream{} block here; a private request to a non-private upstream is the
# same path), ngx_http_tailgate_apply() has already taken the new lease but
# returns before it records the new provider, and ctx->states still counts
# from before the first attempt.  The log phase then reports the second
# lease as provider "local" (the first attempt's), outcome server_error
# (the first attempt's upstream state) - a failure counted twice against a
# provider that was not asked again, and nothing for the one decided.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Time::HiRes qw(sleep);
use Tailgate::Gateway;

my $t = Tailgate::Gateway->new->skip_unless_built;

my %local = (provider => 'local', upstream => 'tg_local', scheme => 'http',
             host => 'local', path => '/v1/chat/completions', zone => 'local',
             provider_model => 'm-local');

my $locations = $t->read_file("$FindBin::Bin/../conf/tailgate/locations.conf");

$t->start_gateway(
    mocks => [qw(local)],
    locations => $locations,
    fake_policyd => {
        decision => { %local, fallback => 15, lease => 77 },
        decisions => {
            'chain#2' => { %local, provider => 'lan', upstream => 'tg_nowhere',
                           fallback => 0, lease => 78 },
        },
    });

$t->mock('local')->set(mode => 'status', status => 500);

my $res = $t->chat('chain');
$t->is_openai_error($res, 502, 'invalid_route', 'the second decision is refused');

my @reports;
$t->wait_for(sub {
    @reports = grep { $_->{type_name} eq 'REPORT' } @{ $t->fake_policyd_frames };
    @reports >= 2;
}, timeout => 5);

my ($first) = grep { ($_->{fields}{lease} // 0) == 77 } @reports;
my ($second) = grep { ($_->{fields}{lease} // 0) == 78 } @reports;

is($first && $first->{fields}{outcome}, 'server_error', 'attempt 1: server_error');
ok($second, 'the second lease is given back');

isnt($second && $second->{fields}{provider}, 'local',
     'the second lease is not reported as the first attempt\'s provider');
is($second && $second->{fields}{outcome}, 'not_sent',
   'the refused decision is reported as not_sent');

$t->done_testing;
