#!/usr/bin/perl

# The module survives whatever policyd sends: garbage, a frame larger than
# it accepts, a field of the wrong size, a closed connection.  Each costs
# the requests on that connection a 503 and nothing more: the worker lives
# on, reconnects, and the next request is served.  A decision nginx cannot
# use is refused, and none of its names can add a response header.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Tailgate::Gateway;

my $t = Tailgate::Gateway->new->skip_unless_built;

my %decision = (provider => 'local', upstream => 'tg_local', scheme => 'http',
                host => 'local', zone => 'local', path => '/v1/chat/completions');

my $key = $t->start_gateway(
    workers => 1,
    timeout => '5s',
    fake_policyd => { decision => \%decision });

$t->allow_log(qr/tailgate: policyd (sent|connection|refused)/);

my @workers = $t->nginx_worker_pids;

my %expect_log = (
    garbage   => qr/policyd sent a malformed frame|connection #\d+ closed: bad frame/,
    oversized => qr/policyd sent a frame of \d+ bytes, the limit is 65536/,
    bad_field => qr/policyd sent a malformed frame/,
    close     => qr/policyd closed the connection/,
);

for my $mode (qw(garbage oversized bad_field close)) {
    subtest $mode => sub {
        $t->set_fake_policyd({ decision => \%decision,
                               misbehave => { "bad-$mode" => $mode } });

        my $res = $t->chat("bad-$mode");
        $t->is_openai_error($res, 503, 'policy_unavailable', 'the request gets a 503');
        cmp_ok($res->{total_s}, '<', 4, 'without waiting for the timeout');

        like($t->error_log, $expect_log{$mode}, 'error.log says what happened');

        is($t->chat('good')->{status}, 200, 'the next request is served');
        is_deeply([$t->nginx_worker_pids], \@workers, 'by the same worker');
    };
}

subtest 'a decision nginx cannot use is refused, not followed' => sub {
    my %cases = (
        'unknown upstream'   => { upstream => 'api.evil.example' },
        'CRLF in the path'   => { path => "/v1/x\r\nX-Injected: 1" },
        'CRLF in the key'    => { authorization => "Bearer k\r\nX-Injected: 1" },
        'relative path'      => { path => 'v1/chat/completions' },
        'bad scheme'         => { scheme => 'gopher' },
    );

    for my $name (sort keys %cases) {
        $t->set_fake_policyd({ decision => { %decision, %{ $cases{$name} } } });
        my $res = $t->chat('qwen');
        $t->is_openai_error($res, 502, 'invalid_route', $name);
    }

    is(scalar(grep { ($_->{headers}{'x-injected'} // '') ne '' }
                   @{ $t->mock('local')->requests }), 0,
       'no header was ever injected');
    $t->allow_log(qr/which nginx cannot use/);
};

# the provider and route names of a decision become response headers
# (X-Tailgate-Provider, X-Tailgate-Route): a CR/LF in either must not split
# the response headers of the client it was decided for

{
    my %local = (upstream => 'tg_local', scheme => 'http', host => 'local',
                 path => '/v1/chat/completions', zone => 'local',
                 provider_model => 'm-local');

    $t->set_fake_policyd({
        decision => { %local, provider => 'local' },
        decisions => {
            p => { provider => "local\r\nSet-Cookie: injected=1" },
            r => { route => "r\r\nX-Injected: 1" },
        },
    });

    for my $model (qw(p r)) {
        my $res = $t->chat($model);

        ok(!defined $res->{headers}{'set-cookie'}
           && !defined $res->{headers}{'x-injected'},
           "[$model] no header injected from the decision")
            or diag("status $res->{status}, headers: "
                    . join(', ', map { "$_: $res->{headers}{$_}" }
                                 sort keys %{ $res->{headers} }));
    }

    $t->logs_clean('error.log is clean after the names with CR/LF');
}

$t->done_testing;
