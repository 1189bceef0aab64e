#!/usr/bin/perl

# A provider's own limits, end to end: real nginx with the module, real
# policyd, mock providers.  A provider's plan (rpm, tpm) keeps requests off
# it before it would refuse: the route's next step takes them, or, with no
# next step, the client gets 429 with Retry-After.  A provider's 429 with
# Retry-After cools it down for that long: the next requests go to the
# next step at once, and come back when it has passed.  And a 429 is not
# a success: it does not wipe out the failures counted before it.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use JSON::PP ();
use Test::More;
use Tailgate::Gateway;

my $t = Tailgate::Gateway->new->skip_unless_built;

my $JSON = JSON::PP->new->canonical->utf8;

sub ext {
    my ($name, %more) = @_;
    return { upstream => "tg_$name", zone => 'external', endpoints => ['chat'],
             %more };
}

my $fallback = { on => 'errors', outcomes => ['5xx', '429'] };

my $policy = {
    providers => {
        local => { upstream => 'tg_local', zone => 'local', endpoints => ['chat'] },
        plan  => ext('plan', rpm => 2),
        tplan => ext('tplan', tpm => 1000),
        cool  => ext('cool'),
        flaky => ext('flaky', health => { down_after => 2, cooldown_ms => 600000 }),
    },
    routes => {
        spill  => { steps => [{ provider => 'plan', model => 'p' },
                              { provider => 'local', model => 'l' }],
                    fallback => $fallback },
        only   => { steps => [{ provider => 'plan', model => 'p' }] },
        tokens => { steps => [{ provider => 'tplan', model => 't' },
                              { provider => 'local', model => 'l' }],
                    fallback => $fallback },
        cooled => { steps => [{ provider => 'cool', model => 'c' },
                              { provider => 'local', model => 'l' }],
                    fallback => $fallback },
        flaky  => { steps => [{ provider => 'flaky', model => 'f' },
                              { provider => 'local', model => 'l' }],
                    fallback => $fallback },
    },
};

my $admin = $t->dir . '/admin.sock';
$t->start_gateway(policy => $policy, policyd_args => ['-a', $admin]);

# a provider's "limits" in policyd status
sub limits_of {
    my ($name) = @_;
    my (undef, $out) = $t->policyd_cmd('status', '-a', $admin, { stderr => 0 });
    my $doc = eval { $JSON->decode($out) } or return undef;
    my ($p) = grep { $_->{name} eq $name } @{ $doc->{providers} };
    return $p ? $p->{limits} : undef;
}

my %mock = map { $_ => $t->mock($_) } qw(local plan tplan cool flaky);

sub seen { scalar @{ $mock{$_[0]}->requests } }
sub by { $t->answered_by($t->chat(@_)) }

subtest "a provider's rpm: the next step before it refuses" => sub {
    my $n = seen('plan');

    is_deeply([ map { by('spill') } 1 .. 4 ], [qw(plan plan local local)],
              'rpm 2: two to it, then the next step');
    is(seen('plan') - $n, 2, 'it got exactly two');

    my $res = $t->chat('only');
    $t->is_openai_error($res, 429, 'provider_rate_limited',
                        'no next step: 429 provider_rate_limited');
    ok($res->{headers}{'retry-after'} >= 1 && $res->{headers}{'retry-after'} <= 30,
       "Retry-After: when it has room ($res->{headers}{'retry-after'})");
    ok(!grep({ /^x-ratelimit/ } keys %{ $res->{headers} }),
       "a client without limits sees no x-ratelimit-*, not the provider's");
    is(seen('plan') - $n, 2, 'and it got nothing more');

    my $l = limits_of('plan');
    is($l && $l->{rpm}, 2, 'policyd status: its plan');
    is($l && $l->{requests_left}, 0, 'and what is left of it');
    is(limits_of('local'), undef, 'a provider without a plan or cooldown: null');
};

subtest "a provider's tpm, corrected by what it used" => sub {
    my $pad = 'x' x 2400;           # about 600 tokens estimated
    my $used = sub {
        { 'X-Mock-Control' => $JSON->encode(
            { usage => { prompt_tokens => $_[0], completion_tokens => 0 } }) }
    };
    my $body = { messages => [{ role => 'user', content => $pad }] };

    is(by('tokens', body => $body, headers => $used->(5)), 'tplan',
       'about 600 of 1000: to it (it used 5)');
    # the REPORT comes after the answer: the next decision waits for it
    my $corrected = $t->wait_for(sub {
        my $l = limits_of('tplan');
        $l && defined $l->{tokens_left} && $l->{tokens_left} > 900
    }, timeout => 10, interval => 0.1);
    ok($corrected, 'policyd status: the REPORT gave back what it did not use');
    is(by('tokens', body => $body, headers => $used->(600)), 'tplan',
       'another 600 fits: its REPORT said 5, not 600');
    is(by('tokens', body => $body), 'local',
       'a third does not: the next step');
};

subtest "a provider's 429 with Retry-After: left alone that long" => sub {
    $mock{cool}->set(mode => 'status', status => 429, retry_after => 2);

    my $n = seen('cool');
    is(by('cooled'), 'local', 'its 429: this request falls back');
    is(seen('cool') - $n, 1, 'after one try');

    $mock{cool}->set(mode => 'ok');

    is_deeply([ map { by('cooled') } 1 .. 3 ], [qw(local local local)],
              'the next requests go to the next step at once');
    is(seen('cool') - $n, 1, 'it got none of them');
    my $l = limits_of('cool');
    ok($l && $l->{cooldown_ms} > 0 && $l->{cooldown_ms} <= 2000,
       'policyd status: its cooldown (' . ($l ? $l->{cooldown_ms} : 'none') . ' ms left)');

    my $back = $t->wait_for(sub { by('cooled') eq 'cool' }, timeout => 10, interval => 0.2);
    ok($back, 'when the time has passed, back to it');
    is(by('cooled'), 'cool', 'and it stays there');

    # a 429 that does not say how long: tried again at once
    $mock{cool}->set(mode => 'status', status => 429, retry_after => '');
    is(by('cooled'), 'local', 'a 429 without Retry-After falls back');
    $mock{cool}->set(mode => 'ok');
    is(by('cooled'), 'cool', 'but does not keep it off');
};

subtest 'a 429 does not wipe out the failures before it' => sub {
    my $n = seen('flaky');

    $mock{flaky}->set(mode => 'status', status => 500);
    is(by('flaky'), 'local', 'a 500: falls back (one failure)');

    $mock{flaky}->set(mode => 'status', status => 429, retry_after => '');
    is(by('flaky'), 'local', 'a 429: falls back');

    $mock{flaky}->set(mode => 'status', status => 500);
    is(by('flaky'), 'local', 'a 500 again: two failures in a row, down');
    is(seen('flaky') - $n, 3, 'it was tried three times');

    $mock{flaky}->set(mode => 'ok');
    is(by('flaky'), 'local', 'down: passed over');
    is(seen('flaky') - $n, 3, 'and not tried again');
    like($t->policyd_log, qr/provider flaky is down/, 'policyd says it is down');
};

$t->done_testing;
