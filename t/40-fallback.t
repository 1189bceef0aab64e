#!/usr/bin/perl
#
# Privacy tags x provider zones x failure modes over a route of three steps
# (local, private, external), with the real policyd and conf/tailgate's
# locations: which mock got each request, what the client saw, and that
# the external mock never saw anything private.
#
#   failure of the first step(s)   not private            private
#   500, 429, refused, timeout     the next step answers  the next step, never
#                                  (the body re-sent with external: 503 with
#                                  its model and key)     the attempts listed
#   hang or drop after the         not retried: the client gets the stream
#   response started               and an error event

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use JSON::PP ();
use Test::More;
use Tailgate::Gateway;

my $t = Tailgate::Gateway->new->skip_unless_built;
my $JSON = JSON::PP->new->canonical->utf8;

# failures here are the test's own: they must not make a provider "down"
# (t/51-health.t is about that)
my %lenient = (health => { down_after => 100 });

my %steps = (
    local => { upstream => 'tg_local', zone => 'local',
               endpoints => [qw(chat responses)], %lenient },
    lan   => { upstream => 'tg_lan', zone => 'private',
               endpoints => [qw(chat responses)], %lenient },
    ext   => { upstream => 'tg_ext', zone => 'external', %lenient,
               api_key => '${EXT_API_KEY}', endpoints => [qw(chat responses)] },
);

my @chain = map { { provider => $_, model => "m-$_" } } qw(local lan ext);

my $policy = {
    providers => \%steps,
    routes => {
        chain   => { steps => \@chain, fallback => { on => 'errors' } },
        never   => { steps => \@chain },
        only5xx => { steps => \@chain,
                     fallback => { on => 'errors', outcomes => ['5xx'] } },
        two     => { steps => \@chain,
                     fallback => { on => 'errors', max_attempts => 2 } },
    },
};

# the shipped locations, with timeouts a test can wait for

my $locations = $t->conf_text('locations.conf');
$locations =~ s/proxy_read_timeout \d+s/proxy_read_timeout 1s/g;
$locations =~ s/proxy_connect_timeout \d+s/proxy_connect_timeout 1s/g;

my $key = $t->start_gateway(policy => $policy, private => [qw(tg_local tg_lan)],
                            locations => $locations, policyd_args => ['-v'],
                            http => "include tailgate/log.conf;\n"
                                    . "access_log %%DIR%%/audit.log tailgate;");

my %mock = map { $_ => $t->mock($_) } qw(local lan ext);

sub counts { return { map { $_ => scalar @{ $mock{$_}->requests } } keys %mock } }

# the REPORTs of a 429 policyd has read so far
sub rate_limited_reports {
    return scalar(() = $t->policyd_log =~ /REPORT \d+: 1 x rate_limited, status 429/g);
}

sub new_requests {
    my ($before, $name) = @_;
    my $all = $mock{$name}->requests;
    return [ @$all[$before->{$name} .. $#$all] ];
}

# one failure mode on a mock

sub failure {
    my ($name, $how) = @_;
    my $m = $mock{$name};

    $m->start unless $m->running;

    if    ($how eq 'ok')      { $m->set() }
    elsif ($how eq '500')     { $m->set(mode => 'status', status => 500) }
    # a 429 that says how long would keep the provider off for that long
    # (t/65-provider-limits.t): these cells are about this request's fallback
    elsif ($how eq '429')     { $m->set(mode => 'status', status => 429,
                                        retry_after => '') }
    elsif ($how eq '429-wait') { $m->set(mode => 'status', status => 429,
                                         retry_after => 1) }
    elsif ($how eq 'timeout') { $m->set(mode => 'hang', hang_s => 3) }
    elsif ($how eq 'hang')    { $m->set(stream_gate => 'never-opens') }
    elsif ($how eq 'drop')    { $m->set(mode => 'drop', drop_after => 1) }
    elsif ($how eq 'refused') { $m->stop }
    else  { die "fail: $how\n" }
}

my %outcome = (500 => 'server_error', 429 => 'rate_limited',
               refused => 'connect_error', timeout => 'timeout');

my $messages = [{ role => 'user', content => "Tell me about \x{e9}t\x{e9}" }];

for my $tags ('', 'private') {
    for my $how (qw(500 429 refused timeout)) {
        for my $depth (1, 2) {
            my $cell = "[tags '$tags', $how x$depth]";

            failure('local', $how);
            failure('lan', $depth == 2 ? $how : 'ok');
            failure('ext', 'ok');

            my $before = counts();
            my $res = $t->chat('chain',
                               headers => $tags ? { 'X-Tailgate-Tags' => $tags }
                                                : {},
                               body => { messages => $messages });

            my $to = $depth == 1 ? 'lan' : $tags ? undef : 'ext';
            my $got = { map { $_ => new_requests($before, $_) } keys %mock };

            # a refused connection reaches no mock
            my $tried = $how eq 'refused' ? 0 : 1;

            is(scalar @{ $got->{local} }, $tried, "$cell local tried once");
            is(scalar @{ $got->{lan} }, $depth == 2 ? $tried : 1,
               "$cell lan tried once");

            if ($to) {
                is($res->{status}, 200, "$cell answered")
                    or diag($res->{body});
                is($res->{headers}{'x-tailgate-provider'}, $to,
                   "$cell by $to");
                is($res->{headers}{'x-tailgate-attempts'}, $depth + 1,
                   "$cell after $depth failed");
                is($res->{headers}{'x-tailgate-route'}, 'chain', "$cell route");

                # the body went again, whole, with the next provider's name
                my $r = $got->{$to}[0];
                is($r->{json}{model}, "m-$to", "$cell model for $to");
                is_deeply($r->{json}{messages}, $messages,
                          "$cell the same messages");
                is($r->{headers}{'content-length'}, length $r->{body},
                   "$cell Content-Length");
            } else {
                $t->is_openai_error($res, 503, 'no_provider_available',
                                    "$cell 503 when nothing private is left");
                my $e = $t->error($res);
                like($e->{message}, qr/local \($outcome{$how}.*lan \($outcome{$how}/,
                     "$cell the attempts are listed");
                is($res->{headers}{'retry-after'}, 1, "$cell Retry-After");
                is($res->{headers}{'x-tailgate-attempts'}, 2, "$cell attempts");
            }

            is(scalar @{ $got->{ext} }, ($to // '') eq 'ext' ? 1 : 0,
               "$cell the external provider got " . (($to // '') eq 'ext'
                                                     ? 'it' : 'nothing'));

            if (($to // '') eq 'ext') {
                is($got->{ext}[0]{headers}{authorization},
                   "Bearer $Tailgate::Gateway::PROVIDER_KEY",
                   "$cell with its own key");
            }
            for my $name (qw(local lan)) {
                ok(!grep({ defined $_->{headers}{authorization} }
                         @{ $got->{$name} }),
                   "$cell no key for $name");
            }
        }
    }

    # after the response started: never retried, and the client is told

    for my $how (qw(hang drop)) {
        my $cell = "[tags '$tags', $how]";

        failure('local', $how);
        failure('lan', 'ok');
        failure('ext', 'ok');

        my $before = counts();
        my $res = $t->chat('chain', stream => 1,
                           headers => $tags ? { 'X-Tailgate-Tags' => $tags }
                                            : {},
                           timeout => 10);
        my $got = { map { $_ => new_requests($before, $_) } keys %mock };

        is($res->{status}, 200, "$cell the stream started");
        is(scalar @{ $got->{local} }, 1, "$cell local got it");
        is(scalar @{ $got->{lan} } + scalar @{ $got->{ext} }, 0,
           "$cell nobody else did");
        like($res->{body}, qr/^data: \{"id"/, "$cell the first event");
        like($res->{body},
             qr/\n\ndata: \{"error":\{"message":"[^"]+","type":"server_error","param":null,"code":"stream_broken"\}\}\n\n\z/,
             "$cell ends with an error event");
        unlike($res->{body}, qr/\[DONE\]/, "$cell not with [DONE]");
        is($res->{error}, undef,
           "$cell and the body's proper end: the client reads an ended answer");
    }
}

# fallback disabled: the provider's own error, untouched

{
    failure('local', '500');
    failure('lan', 'ok');
    my $before = counts();
    my $res = $t->chat('never');
    my $got = { map { $_ => new_requests($before, $_) } keys %mock };

    is($res->{status}, 500, 'no fallback: the provider\'s status');
    is($t->error($res)->{message}, 'mock local failure',
       'no fallback: the provider\'s own error body');
    is($res->{headers}{'x-tailgate-provider'}, 'local', 'from local');
    is(scalar @{ $got->{lan} }, 0, 'no fallback: lan got nothing');
}

# a failure the route does not fall back on: the provider's status, its
# Retry-After, the attempt named

{
    failure('local', '429-wait');
    my $before = counts();
    my $limited_before = rate_limited_reports();
    my $res = $t->chat('only5xx');

    $t->is_openai_error($res, 429, 'provider_rate_limited',
                        '429 on a route that falls back on 5xx only');
    is($res->{headers}{'retry-after'}, 1, 'with the provider\'s Retry-After');
    like($t->error($res)->{message}, qr/local \(rate_limited, HTTP 429\)/,
         'the attempt is named');
    is(scalar @{ new_requests($before, 'lan') }, 0, 'lan got nothing');

    # the cooldown starts when policyd reads the 429's REPORT, which may
    # come after the client has its answer: wait for it, so that a request
    # sent before it is not taken for one after the second passed
    ok($t->wait_for(sub { rate_limited_reports() > $limited_before },
                    timeout => 10, interval => 0.05),
       'policyd read the 429\'s REPORT');

    # it asked for a second: back to it once that has passed
    failure('local', 'ok');
    ok($t->wait_for(sub { ($t->chat('only5xx')->{headers}{'x-tailgate-provider'} // '')
                          eq 'local' }, timeout => 10, interval => 0.2),
       'local serves again after its Retry-After');

    failure('local', '500');
    $res = $t->chat('only5xx');
    is($res->{headers}{'x-tailgate-provider'}, 'lan', '... but a 500 does');
}

# max_attempts: two providers at most

{
    failure('local', '500');
    failure('lan', '500');
    failure('ext', 'ok');
    my $before = counts();
    my $res = $t->chat('two');

    $t->is_openai_error($res, 503, 'no_provider_available',
                        'max_attempts 2: 503 after two');
    is(scalar @{ new_requests($before, 'ext') }, 0, 'the third step is not tried');
}

# every provider down

{
    failure($_, 'refused') for qw(local lan ext);
    my $res = $t->chat('chain');

    $t->is_openai_error($res, 503, 'no_provider_available', 'all down: 503');
    like($t->error($res)->{message},
         qr/^Every provider tried for model 'chain' failed: local \(connect_error\), lan \(connect_error\), ext \(connect_error\)\. /,
         'all three attempts listed');
    unlike($res->{body}, qr/127\.0\.0\.1|tg_|Bearer|\Q$Tailgate::Gateway::PROVIDER_KEY\E/,
           'no address, upstream or key in it');
    failure($_, 'ok') for qw(local lan ext);
}

# the audit line and the reports

{
    $t->wait_log('audit.log', qr/failed="local:connect_error:502 lan:connect_error:502 ext:connect_error:502"/)
        or diag($t->read_file('audit.log'));
    like($t->read_file('audit.log'), qr/route=chain provider=lan attempts=2 failed="local:server_error:500" reason="local:excluded lan:chosen"/,
         'the access log has the attempts, failures and reasons');
    like($t->error_log, qr/attempt 1 of route "chain" failed: provider "local" server_error \(500\)/,
         'each failed attempt is logged');

    # each failed attempt was reported on its own, at once
    my @failed = $t->policyd_log =~ /REPORT \d+: 1 x (server_error|rate_limited|connect_error|timeout), status (\d+)/g;
    my %n;
    $n{"$failed[$_ * 2]/$failed[$_ * 2 + 1]"}++ for 0 .. $#failed / 2;
    cmp_ok($n{'server_error/500'} // 0, '>=', 10, 'policyd got the 500s');
    cmp_ok($n{'timeout/504'} // 0, '>=', 6, 'and the timeouts');
    cmp_ok($n{'connect_error/502'} // 0, '>=', 9, 'and the refusals');
    like($t->policyd_log, qr/REPORT \d+: 1 x stream_broken/,
         'a broken stream is reported as such');
}

done_testing();
