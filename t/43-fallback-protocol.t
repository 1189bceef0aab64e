#!/usr/bin/perl
#
# Fallback as the module speaks it, against a scripted policyd: the second
# DECIDE carries attempt 2, the provider tried in "exclude" and the
# client's own allowlist and tags; the failed attempt is REPORTed at once
# with its lease; a second attempt's decision is never reused; a refusal
# after a failure lists the attempt; bad edits from policyd are refused.
# Each attempt is REPORTed with its own outcome: stream_broken for a
# stream that ends early, not_sent for a decision the module refused.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Tailgate::Gateway;

my $t = Tailgate::Gateway->new->skip_unless_built;

my %local = (provider => 'local', upstream => 'tg_local', scheme => 'http',
             host => 'local', path => '/v1/chat/completions', zone => 'local',
             provider_model => 'm-local');
my %lan = (provider => 'lan', upstream => 'tg_lan', scheme => 'http',
           host => 'lan', path => '/v1/chat/completions', zone => 'private',
           provider_model => 'm-lan');

my $carol = $t->new_key;

my $locations = $t->conf_text('locations.conf');

$t->start_gateway(
    mocks => [qw(local lan)],
    private => [qw(tg_local tg_lan)],
    locations => $locations,
    keys => [ carol => { key => $carol, routes => ['chain', 'solo', 'leased',
                                                   'bad', 'worse'],
                         tags => ['team:x'] } ],
    fake_policyd => {
        decision => { %local, fallback => 15, cache_ms => 60000 },
        decisions => {
            'chain#2'  => { %lan, fallback => 0 },
            'leased'   => { lease => 77 },
            'leased#2' => { %lan, lease => 78, fallback => 0 },
            'solo#2'   => { status => 503, error_type => 'server_error',
                            error_code => 'no_provider_available',
                            error_message => 'nothing left', retry_after => 1 },
            'bad'      => { fallback => 0, adjust => "drop model\n" },
            'worse'    => { fallback => 0, adjust => "rename x y\n" },
        },
    },
    server => q{
        location /nofb/v1/ {
            tailgate on;
            include tailgate/proxy.conf;
        }
    });

my %mock = map { $_ => $t->mock($_) } qw(local lan);
$mock{local}->set(mode => 'status', status => 500);

sub frames { $t->fake_frames(@_) }

# three requests of the same facts: the first decision is reused, the
# second attempt's never is

for my $i (1 .. 3) {
    my $res = $t->chat('chain', key => $carol);
    is($res->{status}, 200, "request $i answered");
    is($res->{headers}{'x-tailgate-provider'}, 'lan', "request $i by lan");
    is($res->{headers}{'x-tailgate-attempts'}, 2, "request $i: 2 attempts");
}

is(scalar @{ $mock{local}->requests }, 3, 'local was tried every time');
is(scalar @{ frames('DECIDE', model => 'chain', attempt => 1) }, 1,
   'the first decision came from policyd once, then from the cache');

my $second = frames('DECIDE', model => 'chain', attempt => 2);
is(scalar @$second, 3, 'every fallback asked policyd');
is_deeply($second->[0]{fields}{exclude}, ['local'], 'excluding local');
is_deeply($second->[0]{fields}{allow_route},
          ['chain', 'solo', 'leased', 'bad', 'worse'],
          'with the client\'s allowlist');
is_deeply($second->[0]{fields}{tag}, ['team:x'], 'and its tags');
is($second->[0]{fields}{endpoint}, 'chat', 'and endpoint');

$t->wait_for(sub { @{ frames('REPORT', route => 'chain', outcome => 'server_error') } >= 3 });
my $failed = frames('REPORT', route => 'chain', outcome => 'server_error');
is(scalar @$failed, 3, 'each failed attempt is reported');
is($failed->[0]{fields}{provider}, 'local', 'as local\'s');
is($failed->[0]{fields}{http_status}, 500, 'with its status');

# a lease ends with the failed attempt, and the next one has its own

{
    my $res = $t->chat('leased', key => $carol);
    is($res->{headers}{'x-tailgate-provider'}, 'lan', 'leased: by lan');

    $t->wait_for(sub { @{ frames('REPORT', lease => 78) } });
    is_deeply([map { "$_->{fields}{provider}:$_->{fields}{outcome}" }
               @{ frames('REPORT', lease => 77) }],
              ['local:server_error'], 'lease 77 ended by the failure');
    is_deeply([map { "$_->{fields}{provider}:$_->{fields}{outcome}" }
               @{ frames('REPORT', lease => 78) }],
              ['lan:ok'], 'lease 78 by the answer');
}

# policyd has nothing left: the client learns what was tried

{
    my $res = $t->chat('solo', key => $carol);
    $t->is_openai_error($res, 503, 'no_provider_available',
                        'refused after a failure: 503');
    like($t->error($res)->{message},
         qr/^Every provider tried for model 'solo' failed: local \(server_error, HTTP 500\)\./,
         'the attempt is listed');
    is($res->{headers}{'retry-after'}, 1, 'Retry-After');
    unlike($res->{body}, qr/nothing left/, 'policyd\'s own words stay inside');
}

# a location without tailgate_fallback: the provider's error as it came

{
    my $res = $t->call('/nofb/v1/chat/completions', 'chain', key => $carol);
    is($res->{status}, 500, 'no fallback location: the provider\'s 500');
    is($t->error($res)->{message}, 'mock local failure', 'its own body');
    like($t->error_log, qr/route "chain" may fall back, but this location has no tailgate_fallback/,
         'the operator is told why');
}

# edits policyd must not ask for

$mock{local}->set();

for my $route (qw(bad worse)) {
    my $before = @{ $mock{local}->requests };
    $t->is_openai_error($t->chat($route, key => $carol), 502, 'invalid_route',
                        "edits \"$route\": refused");
    is(scalar @{ $mock{local}->requests }, $before, 'nothing sent');
}
like($t->error_log, qr/policyd sent request edits that do not parse/,
     'and logged');

# a misspelled fallback location stops nginx -t, not a request at run time

{
    my ($rc, $out) = $t->nginx_check(
        $t->{nginx_http} =~ s#location /nofb/v1/ \{#location /nofb/v1/ { tailgate_fallback \@tailgate_fallbak;#r);
    isnt($rc, 0, 'nginx -t refuses a tailgate_fallback without its location');
    like($out, qr/tailgate_fallback "\@tailgate_fallbak": no such named location/,
         'and says which');
}

# a provider that drops a stream after the response header: the REPORT
# says stream_broken (docs/protocol.md), not ok

{
    $t->set_fake_policyd({ decision => {
        provider => 'local', upstream => 'tg_local', scheme => 'http',
        host => 'local', zone => 'local', lease => 42,
        path => '/v1/chat/completions' } });
    my $seen = @{ $t->fake_policyd_frames };

    $mock{local}->set(mode => 'drop', drop_after => 2);

    my $res = $t->chat('qwen', stream => 1);
    like($res->{body}, qr/"code":"stream_broken"\}\}\n\n\z/,
         'the client sees the stream end early, with an error event')
        or diag("status $res->{status}");
    is($res->{error}, undef, 'in a body that ends properly');

    my $report;
    $t->wait_for(sub {
        ($report) = @{ frames('REPORT', lease => 42, since => $seen) };
        $report;
    }, timeout => 5);

    is($report && $report->{fields}{outcome}, 'stream_broken',
       'the REPORT says stream_broken');

    $t->allow_log(qr/upstream prematurely closed/);
    $mock{local}->set;
    $t->logs_clean('error.log is clean after the broken stream');
}

# a second attempt whose decision the module refuses (no such upstream{};
# a private request to a non-private upstream is the same path): one
# REPORT per attempt, each for the provider of that attempt, and the
# refused one as not_sent

{
    $t->set_fake_policyd({
        decision => { %local, fallback => 15, lease => 77 },
        decisions => {
            'chain#2' => { %local, provider => 'lan', upstream => 'tg_nowhere',
                           fallback => 0, lease => 78 },
        },
    });
    my $seen = @{ $t->fake_policyd_frames };

    $mock{local}->set(mode => 'status', status => 500);

    my $res = $t->chat('chain');
    $t->is_openai_error($res, 502, 'invalid_route', 'the second decision is refused');

    my @reports;
    $t->wait_for(sub {
        @reports = @{ frames('REPORT', since => $seen) };
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

    $mock{local}->set;
    $t->logs_clean('error.log is clean after the refused second decision');
}

done_testing();
