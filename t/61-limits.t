#!/usr/bin/perl

# The module's part of client limits: the limit profile a key record or a
# token names goes to policyd with every DECIDE; policyd's word on what is
# left becomes OpenAI's x-ratelimit-* headers on the client's answers and
# refusals (the provider account's own are never shown); and a provider's
# 429 tells policyd how long that provider asked to be left alone.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Tailgate::Gateway;
use Tailgate::JWT qw(jwt_keypair jwt_token);

my $t = Tailgate::Gateway->new->skip_unless_built;

my $gold = $t->new_key;
my $kp = jwt_keypair($t->dir, 'ES256');

my %base = (provider => 'local', upstream => 'tg_local', scheme => 'http',
            host => 'local', zone => 'local', path => '/v1/chat/completions');

$t->start_gateway(
    keys => [ gold => { key => $gold, limit => 'gold' } ],
    fake_policyd => {
        decision  => \%base,
        decisions => {
            limited => { ratelimit => '100 99 60000 10000 9990 1500' },
            tokens  => { ratelimit => '- - - 5000 0 123500' },
            full    => { status => 429, error_type => 'rate_limit_error',
                         error_code => 'rate_limit_exceeded',
                         error_message => 'Rate limit reached for requests',
                         retry_after => 20, ratelimit => '10 0 20000 - - -' },
        },
    },
    http => qq{
        tailgate_jwt_key ES256 $kp->{public_pem} kid=k1;
    },
    server => q{
        location /jwt/v1/ {
            tailgate on;
            tailgate_keys off;
            tailgate_jwt_claims client=sub limit=plan;
            include tailgate/proxy.conf;
        }
    });

my $local = $t->mock('local');

sub last_decide { ($t->fake_frames('DECIDE'))->[-1]{fields} }

subtest 'the limit profile goes with the DECIDE' => sub {
    $t->chat('qwen', key => $gold);
    is(last_decide()->{limit}, 'gold', 'from the key record');

    $t->chat('qwen');
    ok(!defined last_decide()->{limit}, 'a key without one sends none');

    my $tok = jwt_token(alg => 'ES256', key => $kp, kid => 'k1',
                        claims => { sub => 'svc', exp => time + 600, plan => 'silver' });
    my $res = $t->post_json('/jwt/v1/chat/completions', $tok,
                            { model => 'qwen', messages => [] });
    is($res->{status}, 200, 'a token');
    is(last_decide()->{limit}, 'silver', 'from its claim');

    for my $bad (['a number', 7], ['not a name', 'a b'], ['an object', {}]) {
        $tok = jwt_token(alg => 'ES256', key => $kp, kid => 'k1',
                         claims => { sub => 'svc', exp => time + 600, plan => $bad->[1] });
        $res = $t->post_json('/jwt/v1/chat/completions', $tok,
                             { model => 'qwen', messages => [] });
        $t->is_openai_error($res, 401, 'invalid_api_key', "a limit claim that is $bad->[0]: 401");
    }
};

subtest "x-ratelimit-* from policyd's word" => sub {
    $local->update(headers => { 'x-ratelimit-limit-requests' => '5000',
                                'x-ratelimit-remaining-requests' => '4999' });
    my $res = $t->chat('limited');
    $local->update(headers => {});

    is($res->{status}, 200, 'the answer is 200');
    my $h = $res->{headers};
    is($h->{'x-ratelimit-limit-requests'}, '100', 'limit-requests, the client\'s');
    is($h->{'x-ratelimit-remaining-requests'}, '99', 'remaining-requests');
    is($h->{'x-ratelimit-reset-requests'}, '1m0s', 'reset-requests as OpenAI writes it');
    is($h->{'x-ratelimit-limit-tokens'}, '10000', 'limit-tokens');
    is($h->{'x-ratelimit-remaining-tokens'}, '9990', 'remaining-tokens');
    is($h->{'x-ratelimit-reset-tokens'}, '1.5s', 'reset-tokens');

    $res = $t->chat('tokens');
    ok(!exists $res->{headers}{'x-ratelimit-limit-requests'}, 'a kind without a limit: no header');
    is($res->{headers}{'x-ratelimit-reset-tokens'}, '2m3.5s', 'minutes and seconds');

    $res = $t->chat('qwen');
    ok(!grep({ /^x-ratelimit/ } keys %{ $res->{headers} }),
       "a client without limits sees none, not the provider account's");
};

subtest 'over a limit: 429, Retry-After and the headers' => sub {
    my $n = @{ $local->requests };
    my $res = $t->chat('full');
    $t->is_openai_error($res, 429, 'rate_limit_exceeded', '429 rate_limit_exceeded');
    is($res->{headers}{'retry-after'}, '20', 'Retry-After');
    is($res->{headers}{'x-ratelimit-remaining-requests'}, '0', 'nothing left');
    is($res->{headers}{'x-ratelimit-reset-requests'}, '20s', 'until when');
    is(scalar @{ $local->requests }, $n, 'the provider got nothing');
};

subtest "a provider's 429 says how long to leave it alone" => sub {
    my @cases = (
        [ { retry_after => 7 }, 7000, 'Retry-After in seconds' ],
        [ { 'x-ratelimit-reset-requests' => '2m3.5s',
            'x-ratelimit-reset-tokens' => '20ms' }, 123500,
          'the later of its x-ratelimit-reset-*' ],
        [ {}, 0, 'nothing said: 0' ],
        [ { retry_after => 'soon' }, 0, 'a Retry-After that is neither' ],
    );

    for my $c (@cases) {
        my $mark = scalar @{ $t->fake_policyd_frames };
        my %h = %{ $c->[0] };
        my $ra = delete $h{retry_after} // '';
        $local->update(mode => 'status', status => 429, headers => \%h,
                       retry_after => $ra);
        $t->chat('qwen');
        my $r;
        $t->wait_for(sub { ($r) = @{ $t->fake_frames('REPORT', since => $mark,
                                                     outcome => 'rate_limited') };
                           $r }, timeout => 5);
        is($r && $r->{fields}{outcome}, 'rate_limited', "$c->[2]: rate_limited");
        is($r && $r->{fields}{cooldown_ms}, $c->[1], "$c->[2]: cooldown $c->[1] ms");
    }

    $local->update(mode => 'ok', headers => {});
};

$t->done_testing;
