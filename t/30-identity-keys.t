#!/usr/bin/perl

# Key records carry an identity: tenant, tags, the routes a client may use,
# an expiry.  A client sees and uses only its routes; a tenant's routes do
# not exist for anyone else - not in /v1/models, not by name.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Tailgate::Gateway;

my $t = Tailgate::Gateway->new->skip_unless_built;

my $policy = Tailgate::Gateway::default_policy();
$policy->{routes}{'acme-model'} = { tenants => ['acme'],
    steps => [{ provider => 'local', model => 'acme-internal' }] };
$policy->{routes}{'globex-model'} = { tenants => ['globex'],
    steps => [{ provider => 'local', model => 'globex-internal' }] };

my %key = map { $_ => $t->new_key } qw(bob carol old future);

$t->start_gateway(
    policy => $policy,
    keys => [
        bob    => { key => $key{bob}, tenant => 'acme', tags => ['team-x'],
                    routes => ['qwen', 'acme-model'] },
        carol  => { key => $key{carol}, tenant => 'globex' },
        old    => { key => $key{old}, expires => '2020-01-01' },
        future => { key => $key{future}, expires => '2099-12-31T23:59:59Z' },
    ],
    http => q{
        log_format ids '$tailgate_client|$tailgate_tenant|$tailgate_auth|$status';
    },
    server => 'access_log %%DIR%%/ids.log ids;');

sub models {
    my ($key) = @_;
    my $res = $t->http('GET', '/v1/models', headers => { Authorization => "Bearer $key" });
    is($res->{status}, 200, 'GET /v1/models');
    return [ sort map { $_->{id} } @{ $t->json($res)->{data} } ];
}

sub status_of {
    my ($key, $model) = @_;
    return $t->chat($model, key => $key)->{status};
}


subtest 'an allowlist: only those routes, listed and usable' => sub {
    is_deeply(models($key{bob}), [qw(acme-model qwen)], 'bob sees his two routes');
    is(status_of($key{bob}, 'qwen'), 200, 'qwen works');
    is(status_of($key{bob}, 'acme-model'), 200, "his tenant's route works");

    my $res = $t->chat('smart', key => $key{bob});
    $t->is_openai_error($res, 404, 'model_not_found',
                        'a route outside the allowlist does not exist for him');
};

subtest "tenants never see each other's routes" => sub {
    is_deeply(models($key{carol}), [qw(globex-model qwen same smart)],
              'carol (globex) sees the shared routes and her own');
    is(status_of($key{carol}, 'globex-model'), 200, 'and can use her own');
    is(status_of($key{carol}, 'acme-model'), 404, "acme's route is unknown to her");

    my $res = $t->http('GET', '/v1/models/acme-model',
                       headers => { Authorization => "Bearer $key{carol}" });
    $t->is_openai_error($res, 404, 'model_not_found',
                        'not even GET /v1/models/acme-model reveals it');

    is_deeply(models($t->key), [qw(qwen same smart)],
              'a client without a tenant sees only shared routes');
    is(status_of($t->key, 'globex-model'), 404, 'and cannot use a tenant route');
};

subtest 'expiry' => sub {
    my $res = $t->chat('qwen', key => $key{old});
    $t->is_openai_error($res, 401, 'expired_api_key', 'an expired key');
    is($res->{headers}{'www-authenticate'},
       'Bearer realm="tailgate", error="invalid_token", error_description="expired"',
       'the challenge says expired, and nothing else');

    is(status_of($key{future}, 'qwen'), 200, 'a key that expires later works');
};

subtest 'the identity reaches the access log' => sub {
    $t->stop_nginx;    # flushes the log
    my @lines = split /\n/, $t->read_file('ids.log');

    ok((grep { $_ eq 'bob|acme|key|200' } @lines), 'client, tenant, auth method');
    ok((grep { $_ eq 'alice||key|200' } @lines), 'no tenant: empty');
    ok((grep { $_ eq '-|-|-|401' } @lines), 'no identity for a refused key');
};

subtest 'a bad key record stops nginx -t with file and line' => sub {
    my %bad = (
        'unknown attribute'  => 'color=blue',
        'a bad date'         => 'expires=2030-13-01',
        'no such day'        => 'expires=2030-02-29',
        'too many tags'      => 'tags=' . join(',', map { "t$_" } 1 .. 17),
        'a bad tenant'       => 'tenant=a/b',
        'tenant twice'       => 'tenant=a tenant=b',
        'an empty route name' => 'routes=a,,b',
        'limit twice'        => 'limit=a limit=b',
        'a bad limit name'   => 'limit=a/b',
        'an empty limit'     => 'limit=',
        'a limit too long'   => 'limit=' . ('x' x 65),
    );

    for my $name (sort keys %bad) {
        my $file = $t->write_file("keys.$name",
            "# ok\n" . ('a' x 64) . " alice $bad{$name}\n");
        my ($status, $out) = $t->nginx_check("tailgate_keys \"$file\";");
        isnt($status, 0, "$name: refused");
        like($out, qr/\Q$file\E", line 2: /, "$name: names the file and line 2")
            or diag($out);
    }
};

subtest 'a key table of 200,000 keys: every key found, no other' => sub {
    my $big = Tailgate::Gateway->new;
    my $n = 200_000;

    $big->start_gateway(
        keys => [ map { ("c$_" => "tg-many-$_") } 0 .. $n - 1 ],
        http => q{log_format who '$tailgate_client|$status';},
        server => 'access_log %%DIR%%/who.log who;');

    for my $i (0, 1, 65_535, 65_536, 123_457, $n - 1) {
        my $res = $big->chat('qwen', key => "tg-many-$i");
        is($res->{status}, 200, "key $i: 200");
    }
    is($big->chat('qwen', key => "tg-many-$n")->{status}, 401,
       'a key not in the file: 401');

    my @who = split /\n/, $big->read_file('who.log');
    is_deeply([@who[0 .. 5]],
              [map { "c$_|200" } 0, 1, 65_535, 65_536, 123_457, $n - 1],
              'each key is its own client');
    $big->stop_and_check;
};

$t->done_testing;
