#!/usr/bin/perl

# Client limits, end to end: real nginx with the module, real policyd, a
# mock provider.  A client's limit profile (named by its key record or its
# token, or the policy's default) gives it rpm, tpm and concurrent; a
# tenant's and a route's profile count all their clients together.  Over a
# limit the client gets 429 rate_limit_exceeded the way OpenAI writes it,
# with Retry-After and x-ratelimit-*, and the provider gets nothing; every
# answer to a limited client carries x-ratelimit-*.  Tokens are estimated
# at decision and corrected by the REPORT; a reload keeps the counters of
# the profiles still there.  Profile names that are absent, empty,
# unknown, too long or named twice each get a defined answer.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use JSON::PP ();
use Test::More;
use Tailgate::Gateway;
use Tailgate::JWT qw(jwt_keypair jwt_token);
use Tailgate::Proto;

my $t = Tailgate::Gateway->new->skip_unless_built;

my $JSON = JSON::PP->new->canonical->utf8;

my $policy = Tailgate::Gateway::default_policy();
$policy->{routes}{capped} = { steps => [{ provider => 'local', model => 'c' }] };
$policy->{limits} = {
    profiles => {
        rpm3   => { rpm => 3 },
        tok    => { tpm => 1000 },
        conc   => { concurrent => 2 },
        team   => { rpm => 2 },
        route4 => { rpm => 4 },
        std    => { rpm => 1000, tpm => 1000000 },
    },
    default => 'std',
    tenants => { acme => 'team' },
    routes  => { capped => 'route4' },
};

# Budgets are spent by the cost of each REPORT, from the policy's prices
# (policy.md, "Usage and cost"): with a policyd that reads prices, a
# profile with a budget and a price for the local model.
my $usage = { currency => 'USD',
              prices => { local => { 'qwen2.5-7b-instruct' =>
                                     { input => 500000, output => 500000 } } } };
my $has_prices = do {
    my $p = Tailgate::Gateway::default_policy();
    $p->{listen} = { path => $t->dir . '/probe.sock' };
    $p->{usage} = $usage;
    my $file = $t->write_file('prices-probe.json', $JSON->encode($p));
    local $ENV{EXT_API_KEY} = 'sk-probe';
    my ($rc) = $t->policyd_cmd('-t', '-c', $file, { stderr => 0 });
    $rc == 0;
};

if ($has_prices) {
    $policy->{usage} = $usage;
    $policy->{limits}{profiles}{cheap} = { budget => { day => 10 } };
}

my %k = map { $_ => $t->new_key } qw(r3 tok conc a1 a2 c1 c2 unknown cheap);

my $kp = jwt_keypair($t->dir, 'ES256');

$t->start_gateway(
    policy => $policy,
    keys => [
        r3      => { key => $k{r3}, limit => 'rpm3' },
        tok     => { key => $k{tok}, limit => 'tok' },
        conc    => { key => $k{conc}, limit => 'conc' },
        a1      => { key => $k{a1}, tenant => 'acme' },
        a2      => { key => $k{a2}, tenant => 'acme' },
        c1      => { key => $k{c1}, limit => 'std' },
        c2      => { key => $k{c2}, limit => 'std' },
        unknown => { key => $k{unknown}, limit => 'platinum' },
        cheap   => { key => $k{cheap}, limit => 'cheap' },
    ],
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

sub seen { scalar @{ $local->requests } }

sub rl {
    my ($res) = @_;
    my $h = $res->{headers};
    return join ' ', map { $h->{"x-ratelimit-$_"} // '-' }
        qw(limit-requests remaining-requests reset-requests
           limit-tokens remaining-tokens reset-tokens);
}

subtest 'rpm 3: exactly three in the window, then 429' => sub {
    my $n = seen();
    my @res = map { $t->chat('qwen', key => $k{r3}) } 1 .. 5;

    is_deeply([ map { $_->{status} } @res ], [200, 200, 200, 429, 429],
              'three succeed, the rest are refused');
    is(seen() - $n, 3, 'the provider got exactly three');

    is_deeply([ map { $_->{headers}{'x-ratelimit-remaining-requests'} } @res ],
              [2, 1, 0, 0, 0], 'x-ratelimit-remaining-requests counts down');
    is($_->{headers}{'x-ratelimit-limit-requests'}, '3', 'limit-requests')
        for @res;
    ok(!exists $_->{headers}{'x-ratelimit-limit-tokens'},
       'no tpm in the profile: no token headers') for @res[0, 3];
    like($res[0]{headers}{'x-ratelimit-reset-requests'}, qr/^(19|20)(\.\d+)?s$/,
         'reset-requests: one request drains in 20s');

    my $r = $res[3];
    $t->is_openai_error($r, 429, 'rate_limit_exceeded', '429 rate_limit_exceeded');
    my $e = $t->error($r);
    is($e->{type}, 'requests', 'type "requests", as OpenAI says');
    like($e->{message}, qr/^Rate limit reached for requests per min \(RPM\) of this client: Limit 3\. Please try again in \d+s\.$/,
         'the message');
    like($r->{headers}{'retry-after'}, qr/^(19|20)$/, 'Retry-After: when one fits again');
    is($r->{headers}{'x-ratelimit-remaining-requests'}, '0', 'nothing left');
    unlike($r->{body}, qr/platinum|rpm3|policy\.json/, 'no internals in the body');

    my $nf = $t->chat('no-such-model', key => $k{r3});
    $t->is_openai_error($nf, 404, 'model_not_found', 'another refusal');
    is(rl($nf), '3 0 ' . $nf->{headers}{'x-ratelimit-reset-requests'} . ' - - -',
       'carries the headers too');
    is($t->chat('qwen', key => $k{r3})->{status}, 429, 'and took nothing: still 429');
};

subtest 'the default profile: a key that names none' => sub {
    my $res = $t->chat('qwen');
    is($res->{status}, 200, 'a key naming none: 200');
    like(rl($res), qr/^1000 9\d\d \S+ 1000000 \d+ \S+$/,
         'every answer carries the headers of the default profile');

    $res = $t->chat('qwen', stream => 1);
    is($res->{status}, 200, 'a stream');
    is($res->{headers}{'x-ratelimit-limit-requests'}, '1000', 'a stream carries them too');
};

subtest 'tpm: estimated at decision, corrected by the REPORT' => sub {
    # the module estimates body bytes / 4; the mock says what it used
    my $pad = sub { 'x' x ($_[0] * 4) };
    my $used = { 'X-Mock-Control' => $JSON->encode(
        { usage => { prompt_tokens => 100, completion_tokens => 50 } }) };

    my $n = seen();
    my $r1 = $t->chat('qwen', key => $k{tok}, headers => $used,
                      body => { messages => [{ role => 'user', content => $pad->(500) }] });
    is($r1->{status}, 200, 'about 500 tokens: 200');
    my $left = $r1->{headers}{'x-ratelimit-remaining-tokens'};
    ok($left >= 450 && $left <= 500, "the estimate was taken ($left left)");
    is($r1->{headers}{'x-ratelimit-limit-tokens'}, '1000', 'limit-tokens');
    ok(!exists $r1->{headers}{'x-ratelimit-limit-requests'}, 'no rpm: no request headers');

    # 500 estimated + 800 would not fit; 150 used + 800 does
    my $r2 = $t->chat('qwen', key => $k{tok}, headers => $used,
                      body => { messages => [{ role => 'user', content => $pad->(800) }] });
    is($r2->{status}, 200, 'the REPORT gave back what was not used');

    my $r3 = $t->chat('qwen', key => $k{tok},
                      body => { messages => [{ role => 'user', content => $pad->(800) }] });
    $t->is_openai_error($r3, 429, 'rate_limit_exceeded', 'then the window is full: 429');
    is($t->error($r3)->{type}, 'tokens', 'type "tokens"');
    ok($r3->{headers}{'retry-after'} >= 1, 'Retry-After');
    is(seen() - $n, 2, 'the provider got two');

    my $big = $t->chat('qwen', key => $k{tok},
                       body => { messages => [{ role => 'user', content => $pad->(1200) }] });
    $t->is_openai_error($big, 429, 'rate_limit_exceeded', 'larger than the whole tpm: 429');
    like($t->error($big)->{message}, qr/^Request too large for tokens per min/, 'request too large');
};

subtest 'concurrent 2: parallel slow requests' => sub {
    my $slow = { 'X-Mock-Control' => $JSON->encode({ delay_ms => 1500 }) };
    my $n = seen();

    my @got = $t->parallel(5, sub {
        my $r = $t->chat('qwen', key => $k{conc}, headers => $slow);
        my $e = $t->error($r);
        return join ':', $r->{status}, $e ? ($e->{code}, $e->{type}) : ();
    });

    my $ok = grep { $_ eq '200' } @got;
    my $refused = grep { $_ eq '429:rate_limit_exceeded:requests' } @got;
    is($ok, 2, 'two at once') or diag explain \@got;
    is($refused, 3, 'the others: 429 rate_limit_exceeded');
    is(seen() - $n, 2, 'the provider got two');

    my $res = $t->chat('qwen', key => $k{conc});
    is($res->{status}, 200, 'the slots came back with the REPORTs');
};

subtest "a tenant's profile counts its clients together" => sub {
    my @res = ($t->chat('qwen', key => $k{a1}), $t->chat('qwen', key => $k{a2}),
               $t->chat('qwen', key => $k{a1}), $t->chat('qwen', key => $k{a2}));

    is_deeply([ map { $_->{status} } @res ], [200, 200, 429, 429], 'rpm 2 for both');
    like($t->error($res[2])->{message}, qr/of tenant 'acme'/, 'the tenant is named');
    is($res[1]{headers}{'x-ratelimit-limit-requests'}, '2',
       "the binding window is shown: the tenant's, not the default's");

    is($t->chat('qwen', key => $k{r3})->{status}, 429, 'others keep their own');
};

subtest "a route's profile counts every client of the route" => sub {
    my @res = map { $t->chat('capped', key => $k{$_ % 2 ? 'c1' : 'c2'}) } 1 .. 5;

    is_deeply([ map { $_->{status} } @res ], [200, 200, 200, 200, 429], 'rpm 4 for the route');
    like($t->error($res[4])->{message}, qr/of route 'capped'/, 'the route is named');
    is($t->chat('qwen', key => $k{c1})->{status}, 200, 'other routes are not counted');
};

subtest 'limit profile names: absent, empty, unknown, too long, twice' => sub {
    my $n = seen();

    my $res = $t->chat('qwen', key => $k{unknown});
    $t->is_openai_error($res, 403, 'unknown_limit_profile',
                        'a key naming a profile the policy lacks: 403');
    is($t->error($res)->{type}, 'permission_error', 'permission_error');
    unlike($res->{body}, qr/platinum/, 'the name is not echoed');

    my $tok = sub {
        my (%claims) = @_;
        return jwt_token(alg => 'ES256', key => $kp, kid => 'k1',
                         claims => { sub => 'svc', exp => time + 600, %claims });
    };
    my $jwt = sub {
        $t->post_json('/jwt/v1/chat/completions', $_[0],
                      { model => 'qwen', messages => [] });
    };

    $res = $jwt->($tok->(plan => 'rpm3'));
    is($res->{status}, 200, 'a token naming a profile');
    is($res->{headers}{'x-ratelimit-limit-requests'}, '3', 'its profile');

    $res = $jwt->($tok->());
    is($res->{headers}{'x-ratelimit-limit-requests'}, '1000', 'no claim: the default');

    $res = $jwt->($tok->(plan => ''));
    is($res->{headers}{'x-ratelimit-limit-requests'}, '1000', 'an empty claim: the default');

    $res = $jwt->($tok->(plan => 'platinum'));
    $t->is_openai_error($res, 403, 'unknown_limit_profile', 'an unknown claim: 403');

    $res = $jwt->($tok->(plan => 'p' x 65));
    ok($res->{status} == 401 || $res->{status} == 403,
       "a name longer than any profile's: refused ($res->{status})");
    $res = $jwt->($tok->(plan => 'r' x 5000));
    ok($res->{status} == 401 || $res->{status} == 403,
       "a huge one: refused ($res->{status})");

    $res = $jwt->(jwt_token(alg => 'ES256', key => $kp, kid => 'k1',
                            raw_payload => '{"sub":"svc2","exp":' . (time + 600)
                                           . ',"plan":"std","plan":"rpm3"}'));
    ok($res->{status} == 401 || ($res->{status} == 200
                                 && $res->{headers}{'x-ratelimit-limit-requests'}),
       "a claim named twice: refused, or one of them applies ($res->{status})");

    is(seen() - $n, 3 + ($res->{status} == 200 ? 1 : 0),
       'the refused ones never reached the provider');
};

subtest 'a budget: spent by what each request cost' => sub {
    plan skip_all => 'this policyd has no prices (the usage accounting): '
                   . 'budgets are not spent end to end yet' unless $has_prices;

    # 4 + 6 tokens at 0.5 a token: 5.0 a request, 10.0 a day
    my $used = { 'X-Mock-Control' => $JSON->encode(
        { usage => { prompt_tokens => 4, completion_tokens => 6 } }) };
    my $n = seen();

    # a worker sends its REPORTs within 250 ms: each request's cost is
    # spent before the next one is decided
    my @res = map { my $r = $t->chat('qwen', key => $k{cheap}, headers => $used);
                    select(undef, undef, undef, 0.6);
                    $r } 1 .. 3;
    is_deeply([ map { $_->{status} } @res ], [200, 200, 429], 'two, then spent');
    my $r = $res[2];
    $t->is_openai_error($r, 429, 'insufficient_quota', '429 insufficient_quota');
    is($t->error($r)->{type}, 'insufficient_quota', 'type insufficient_quota, as OpenAI says');
    ok($r->{headers}{'retry-after'} >= 1 && $r->{headers}{'retry-after'} <= 86400,
       'Retry-After: to the next UTC day');
    is(seen() - $n, 2, 'the provider got two');
};

subtest "DECIDE's limit field as policyd reads it" => sub {
    my $s = tg_connect($t->policyd_sock);
    tg_send($s, tg_frame(TG_MSG_HELLO, 0, [TG_F_MAX_FRAME, 'u32', 65536]));
    my $hello = tg_read_frame($s, 5);
    is($hello && $hello->{type}, TG_MSG_HELLO_OK, 'HELLO');

    my $id = 100;
    my $ask = sub {
        tg_send($s, tg_decide(++$id, 'qwen', [TG_F_CLIENT, 'str', 'raw'], @_));
        my $f = tg_read_frame($s, 5) || { fields => {} };
        return (tg_field($f, TG_F_STATUS) // 0, tg_field($f, TG_F_RATELIMIT) // '',
                tg_field($f, TG_F_ERROR_CODE) // '', tg_field($f, TG_F_LEASE) // 0,
                tg_field($f, TG_F_CACHE_MS) // 0);
    };

    my @d = $ask->([TG_F_LIMIT, 'str', 'rpm3']);
    is($d[0], 200, 'a profile: 200');
    like($d[1], qr/^3 2 \d+ - - -$/, 'with ratelimit');
    ok($d[3] > 0, 'and a lease, though the provider has no max_concurrency');
    is($d[4], 0, 'and no cache_ms');

    @d = $ask->([TG_F_LIMIT, 'str', 'platinum'], [TG_F_LIMIT, 'str', 'tok']);
    is($d[0], 200, 'named twice: the last one counts');
    like($d[1], qr/^- - - 1000 \d+ \d+$/, 'the last one\'s windows');

    @d = $ask->([TG_F_LIMIT, 'str', 'tok'], [TG_F_LIMIT, 'str', 'platinum']);
    is("$d[0] $d[2]", '403 unknown_limit_profile', 'the last one unknown: 403');

    @d = $ask->([TG_F_LIMIT, 'str', '']);
    is($d[0], 200, 'empty: the default');
    like($d[1], qr/^1000 /, "the default's windows");

    for my $bad (['huge', 'a' x 60000], ['with a NUL', "rpm3\0"],
                 ['not a name', 'rpm 3'], ['one byte', "\xff"]) {
        @d = $ask->([TG_F_LIMIT, 'str', $bad->[1]]);
        is("$d[0] $d[2]", '403 unknown_limit_profile', "$bad->[0]: 403");
    }

    close $s;
};

subtest 'a reload keeps the counters of the profiles still there' => sub {
    my $mark = $t->log_size('policyd');
    $t->reload_policyd;
    ok($t->wait_log('policyd', qr/policy reloaded/, from => $mark), 'reloaded');

    my $res = $t->chat('qwen', key => $k{r3});
    is($res->{status}, 429, 'rpm3 is still used up after SIGHUP');

    my %p = %$policy;
    $p{limits} = { %{ $policy->{limits} },
                   profiles => { %{ $policy->{limits}{profiles} } } };
    delete $p{limits}{profiles}{rpm3};
    $t->write_policy(\%p);
    $mark = $t->log_size('policyd');
    $t->reload_policyd;
    ok($t->wait_log('policyd', qr/policy reloaded/, from => $mark), 'reloaded without rpm3');

    $res = $t->chat('qwen', key => $k{r3});
    $t->is_openai_error($res, 403, 'unknown_limit_profile', 'its profile gone: 403');

    $p{limits}{profiles}{rpm3} = { rpm => 3 };
    $t->write_policy(\%p);
    $mark = $t->log_size('policyd');
    $t->reload_policyd;
    ok($t->wait_log('policyd', qr/policy reloaded/, from => $mark), 'reloaded with it again');

    $res = $t->chat('qwen', key => $k{r3});
    is($res->{status}, 200, 'a profile of that name again starts afresh');
    is($res->{headers}{'x-ratelimit-remaining-requests'}, '2', 'with its own count');
};

$t->done_testing;
