#!/usr/bin/perl

# Workers reuse policyd's decisions where policyd allows it (cache_ms), and
# forget them the moment anything could change them.  Plain successes are
# reported to policyd as counts; leases and failures at once.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use JSON::PP;
use Tailgate::Gateway;

my $t = Tailgate::Gateway->new->skip_unless_built;

my %decision = (provider => 'local', upstream => 'tg_local', scheme => 'http',
                host => 'local', zone => 'local', path => '/v1/chat/completions');

my $key = $t->start_gateway(
    timeout => '3s',
    mocks => [qw(local ext)],
    fake_policyd => { decision => { %decision, cache_ms => 60000 } },
    server => q{
        location /private/v1/ {
            tailgate on;
            tailgate_tags private;
            include tailgate/proxy.conf;
        }
    });

my $local = $t->mock('local');

sub decides {
    my ($model) = @_;
    return scalar @{ $t->fake_frames('DECIDE',
                                     defined $model ? (model => $model) : ()) };
}

sub reports { @{ $t->fake_frames('REPORT') } }


subtest 'the same facts are decided once while the decision is fresh' => sub {
    is($t->chat('m1')->{status}, 200, "request $_") for 1 .. 10;
    is(decides('m1'), 1, 'policyd was asked once for ten requests');

    $t->chat('m2');
    is(decides('m2'), 1, 'another model is another decision');

    $t->chat('m1', body => { stream => JSON::PP::true });
    is(decides('m1'), 2, 'so is the same model streamed');

    my $bob = $t->new_key;
    $t->write_keys(alice => $key, bob => $bob);
    $t->reload_nginx;
    $t->chat('m1', key => $bob);
    $t->chat('m1', key => $bob);
    is(decides('m1'), 3, 'another client is another decision');
};

subtest 'a reload of policyd makes workers forget at once' => sub {
    $t->set_fake_policyd({ decision => { %decision, cache_ms => 60000,
                                         provider_model => 'after-reload' } });
    $t->chat('m1');
    is($local->requests->[-1]{json}{model}, 'after-reload',
       'the next request is decided again, by the new policy');
};

subtest 'decisions with a lease are never reused' => sub {
    $t->set_fake_policyd({ decision => { %decision, cache_ms => 60000,
                                         lease => 7 } });
    my $before = decides('leased');
    $t->chat('leased') for 1 .. 3;
    is(decides('leased') - $before, 3, 'each request asked');
};

subtest 'a decision bounded by body size is reused only below it' => sub {
    $t->set_fake_policyd({ decision => { %decision, cache_ms => 60000,
                                         cache_max_bytes => 500 } });
    $t->chat('sized') for 1 .. 2;
    is(decides('sized'), 1, 'small bodies share the decision');

    $t->chat('sized', body => { pad => 'x' x 1000 });
    is(decides('sized'), 2, 'a large body is decided on its own');
};

subtest 'the privacy guard still checks every reuse' => sub {
    $t->set_fake_policyd({ decision => { %decision, cache_ms => 60000,
                                         provider => 'ext', upstream => 'tg_ext',
                                         zone => 'external' } });
    my $before = decides('secret');

    for (1 .. 3) {
        my $res = $t->call('/private/v1/chat/completions', 'secret');
        $t->is_openai_error($res, 503, 'privacy_violation', "private request $_ refused");
    }

    is(decides('secret') - $before, 3, 'a refused decision is not kept');
    is(scalar(grep { ($_->{json}{model} // '') eq 'secret' }
                   @{ $t->mock('ext')->requests }), 0,
       'the external provider got nothing');
    $t->allow_log(qr/policy violation/);
};

subtest 'plain successes are reported one by one, sent together; failures at once' => sub {
    $t->set_fake_policyd({ decision => { %decision, cache_ms => 60000 } });
    my $seen = () = reports();

    $t->chat('counted') for 1 .. 5;

    my @ok;
    ok($t->wait_for(sub {
           @ok = grep { ($_->{fields}{route} // '') eq 'counted' }
                 (reports())[$seen .. $#{[ reports() ]}];
           @ok == 5;
       }, timeout => 3),
       'five successes, five REPORTs');

    my %reads = map { $_->{read} => 1 } @ok;
    cmp_ok(scalar keys %reads, '<', 5, 'that came in fewer reads than requests');
    is($ok[0]{fields}{outcome}, 'ok', 'outcome ok');
    ok(!grep({ defined $_->{fields}{count} } @ok), 'each of them one request');

    $local->set(mode => 'status', status => 500);
    $t->chat('failing');
    $local->set(mode => 'ok');

    ok($t->wait_for(sub {
           grep { ($_->{fields}{route} // '') eq 'failing'
                  && ($_->{fields}{outcome} // '') eq 'server_error'
                  && !defined $_->{fields}{count} } reports()
       }, timeout => 3),
       'a failure is reported on its own');
};

subtest 'losing policyd forgets every decision: fail closed' => sub {
    $t->chat('m1');
    $t->kill_policyd;

    my $res = $t->chat('m1');
    $t->is_openai_error($res, 503, 'policy_unavailable',
                        'a decision that was fresh is not used without policyd');
    $t->allow_log(qr/cannot connect to policyd/, qr/policyd connection #\d+ closed/);
};

$t->done_testing;
