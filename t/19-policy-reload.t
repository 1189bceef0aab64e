#!/usr/bin/perl

# A policy reload takes effect on the very next request, even though
# workers reuse decisions for a minute: policyd tells them to forget.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Tailgate::Gateway;

my $t = Tailgate::Gateway->new->skip_unless_built;

my $policy = Tailgate::Gateway::default_policy();
$policy->{decision_cache_ms} = 60000;

$t->start_gateway(policy => $policy);

is($t->chat('qwen')->{headers}{'x-mock-provider'}, 'local', 'qwen goes local');
is($t->chat('qwen')->{headers}{'x-mock-provider'}, 'local', 'again, decided once');

$policy->{routes}{qwen} = { steps => [{ provider => 'ext', model => 'deepseek-chat' }] };
$t->write_policy($policy);

my $mark = $t->log_size('policyd');
$t->reload_policyd;

ok($t->wait_log('policyd', qr/policy reloaded/, from => $mark, timeout => 5),
   'policyd reloaded the policy');

my $res = $t->chat('qwen');
is($res->{headers}{'x-mock-provider'}, 'ext',
   'the next request follows the new route, not the cached decision');
is($t->mock('ext')->requests->[-1]{json}{model}, 'deepseek-chat',
   'with the new provider model');

$t->done_testing;
