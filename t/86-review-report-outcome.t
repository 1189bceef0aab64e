#!/usr/bin/perl

# Review finding (low): ngx_http_tailgate_outcome() never reports
# "stream_broken" (docs/protocol.md: "the provider's response ended early
# after bytes were sent").  A provider that drops a stream after the
# response header is REPORTed as "ok" - policyd counts a failed provider
# as a healthy one.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Tailgate::Gateway;

my $t = Tailgate::Gateway->new->skip_unless_built;

my %decision = (provider => 'local', upstream => 'tg_local', scheme => 'http',
                host => 'local', zone => 'local', lease => 42,
                path => '/v1/chat/completions');

my $key = $t->start_gateway(fake_policyd => { decision => \%decision });
my $local = $t->mock('local');

$local->set(mode => 'drop', drop_after => 2);

my $res = $t->chat('qwen', stream => 1);
ok($res->{error}, 'the client sees the stream end early')
    or diag("status $res->{status}");

my $report;
$t->wait_for(sub {
    ($report) = grep { ($_->{type_name} // '') eq 'REPORT'
                       && ($_->{fields}{lease} // 0) == 42 }
                @{ $t->fake_policyd_frames };
    $report;
}, timeout => 5);

is($report && $report->{fields}{outcome}, 'stream_broken',
   'the REPORT says stream_broken');

$t->allow_log(qr/upstream prematurely closed/);
$local->set;
$t->done_testing;
