#!/usr/bin/perl

# JSON Web Tokens, verified in the nginx worker: every algorithm family, the
# claims that become the client's identity, and a table of bad tokens that
# must each end in a 401 without reaching policyd or a provider.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Tailgate::Gateway;
use Tailgate::JWT qw(jwt_keypair jwt_token b64url);
use JSON::PP;

my $t = Tailgate::Gateway->new->skip_unless_built;

my @ALGS = qw(HS256 HS384 HS512 RS256 RS384 RS512 ES256 ES384 ES512);
my %key = map { $_ => jwt_keypair($t->dir, $_) } @ALGS;
my $rotated = jwt_keypair($t->dir, 'ES256');

sub key_directives {
    my (@kids) = @_;
    return join "\n", map {
        my $k = $key{$_};
        my $file = $k->{secret} // ($_ =~ /^RS/ ? $k->{cert_pem} : $k->{public_pem});
        "tailgate_jwt_key $_ $file kid=k-$_;";
    } @kids;
}

# the JWT settings live in an included file, rewritten to rotate keys
sub write_jwt_conf {
    my ($keys) = @_;
    $t->write_file('jwt.conf', qq{
        $keys
        tailgate_jwt_key RS256 $key{RS256}{public_pem};
        tailgate_jwt_issuer https://idp.test;
        tailgate_jwt_audience tailgate;
        tailgate_jwt_leeway 5s;
        tailgate_jwt_claims client=sub tenant=tid tags=groups routes=models;
    });
}

write_jwt_conf(key_directives(@ALGS));

my %decision = (provider => 'local', upstream => 'tg_local', scheme => 'http',
                host => 'local', zone => 'local', path => '/v1/chat/completions');

$t->start_gateway(
    fake_policyd => { decision => \%decision },
    http => "include %%DIR%%/jwt.conf;\nlarge_client_header_buffers 4 128k;",
    server => q{
        location /strict/v1/ {
            tailgate on;
            tailgate_jwt_leeway 0;
            include tailgate/proxy.conf;
        }

        # every claim mapping at once, roles too
        location /claims/v1/ {
            tailgate on;
            tailgate_jwt_claims client=sub tenant=tid tags=groups
                                routes=models roles=roles;
            include tailgate/proxy.conf;
        }

        location = /claims/status {
            tailgate_jwt_claims client=sub tenant=tid tags=groups
                                routes=models roles=roles;
            tailgate_status json;
        }
    });

my $local = $t->mock('local');

sub claims {
    my (%extra) = @_;
    return { sub => 'svc-reports', iss => 'https://idp.test', aud => 'tailgate',
             exp => time + 600, iat => time - 10, tid => 'acme',
             groups => ['team-x', 'eu'], models => ['qwen', 'smart'], %extra };
}

sub token {
    my ($alg, %opt) = @_;
    my $claims = claims(%{ delete $opt{claims} // {} });
    return jwt_token(alg => $alg, key => $key{$alg}, kid => "k-$alg",
                     claims => $claims, %opt);
}

sub with_token {
    my ($token, $path) = @_;
    return $t->post_json($path // '/v1/chat/completions', $token,
                         '{"model":"qwen","messages":[]}');
}

sub decides { scalar @{ $t->fake_frames('DECIDE') } }


subtest 'a good token of every algorithm' => sub {
    for my $alg (@ALGS) {
        my $res = with_token(token($alg));
        is($res->{status}, 200, "$alg: 200");
    }

    my ($decide) = @{ $t->fake_frames('DECIDE') };
    is($decide->{fields}{client}, 'svc-reports', 'the client id is the sub claim');
    is($decide->{fields}{tenant}, 'acme', 'the tenant comes from tid');
    is_deeply([sort @{ $decide->{fields}{tag} }], [qw(eu team-x)],
              'the tags come from groups');
    is_deeply([sort @{ $decide->{fields}{allow_route} }], [qw(qwen smart)],
              'the allowed routes from models');
};

subtest 'a token without kid uses the key configured without one' => sub {
    my $token = jwt_token(alg => 'RS256', key => $key{RS256}, claims => claims());
    is(with_token($token)->{status}, 200, 'default key');
};

subtest 'a verified token is remembered, not verified again' => sub {
    my $token = token('ES256');
    is(with_token($token)->{status}, 200, 'first use') for 1 .. 3;
};

subtest 'bad tokens: 401, and nothing reaches policyd or a provider' => sub {
    my $rs_pub = do { local $/; open my $fh, '<', $key{RS256}{public_pem} or die; <$fh> };

    my %bad = (
        'expired'             => [ token('RS256', claims => { exp => time - 60 }), 'expired' ],
        'not yet valid (nbf)' => [ token('RS256', claims => { nbf => time + 600 }) ],
        'issued in the future'=> [ token('RS256', claims => { iat => time + 600 }) ],
        'wrong issuer'        => [ token('RS256', claims => { iss => 'https://evil.test' }) ],
        'no issuer'           => [ token('RS256', claims => { iss => undef }) ],
        'wrong audience'      => [ token('RS256', claims => { aud => 'other' }) ],
        'audience list without us' => [ token('RS256', claims => { aud => ['a', 'b'] }) ],
        'bad signature'       => [ do { my $x = token('ES256');
                                        my @p = split /\./, $x;
                                        $p[1] = b64url('{"sub":"admin","exp":9999999999}');
                                        join '.', @p } ],
        'signed by another key' => [ jwt_token(alg => 'ES256', key => $rotated,
                                               kid => 'k-ES256', claims => claims()) ],
        'alg none'            => [ jwt_token(alg => 'none', kid => 'k-RS256',
                                             claims => claims(), signature => '') ],
        'alg none, no kid'    => [ jwt_token(alg => 'none', claims => claims(),
                                             signature => '') ],
        'HS256 with the RSA public key' =>
            [ jwt_token(alg => 'HS256', hmac_secret => $rs_pub, kid => 'k-RS256',
                        claims => claims()) ],
        'HS256 with the RSA public key, no kid' =>
            [ jwt_token(alg => 'HS256', hmac_secret => $rs_pub, claims => claims()) ],
        'alg not the key\'s'  => [ jwt_token(alg => 'RS384', key => $key{RS256},
                                             kid => 'k-RS256', claims => claims()) ],
        'unknown kid'         => [ token('RS256', kid => 'k-nope') ],
        'truncated'           => [ do { my $x = token('RS256'); substr($x, 0, -10) } ],
        'no signature'        => [ do { my $x = token('RS256'); $x =~ s/[^.]+$//; $x } ],
        '64 KB'               => [ token('RS256', claims => { pad => 'x' x 65536 }) ],
        'claims not JSON'     => [ token('RS256', raw_payload => 'not json') ],
        'claims an array'     => [ token('RS256', raw_payload => '[1,2]') ],
        'duplicate claims'    => [ token('RS256', raw_payload =>
                                   '{"sub":"a","sub":"b","exp":' . (time + 600) . '}') ],
        'header not JSON'     => [ token('RS256', raw_header => '{"alg":') ],
        'no sub'              => [ token('RS256', claims => { sub => undef }) ],
        'sub not a string'    => [ token('RS256', claims => { sub => 42 }) ],
        'no exp'              => [ token('RS256', claims => { exp => undef }) ],
        'exp a string'        => [ token('RS256', claims => { exp => '' . (time + 600) }) ],
        'critical header'     => [ token('RS256', header => { crit => ['exp'] }) ],
        'wrong typ'           => [ token('RS256', header => { typ => 'foo' }) ],
        'not base64url'       => [ do { my $x = token('RS256'); $x =~ s/^(.)/!/; $x } ],
        'bad tags claim'      => [ token('RS256', claims => { groups => [1, 2] }) ],
    );

    my ($decides, $proxied) = (decides(), scalar @{ $local->requests });

    for my $name (sort keys %bad) {
        my ($token, $expired) = @{ $bad{$name} };
        my $res = with_token($token);

        $t->is_openai_error($res, 401, $expired ? 'expired_api_key' : 'invalid_api_key',
                            $name);
        like($res->{headers}{'www-authenticate'} // '', qr/error="invalid_token"/,
             "$name: WWW-Authenticate");
        unlike($res->{body}, qr/signature|kid|issuer|audience|alg/i,
               "$name: the body does not say which check failed");
    }

    is(decides(), $decides, 'policyd was asked nothing');
    is(scalar @{ $local->requests }, $proxied, 'no provider received anything');

    SKIP: {
        skip 'the debug log prints headers', 1 if $t->debugging;
        my $one = $bad{'bad signature'}[0];
        ok($t->log_has_no($one), 'no token appears in any log');
    }
    like($t->error_log, qr/credential rejected: bad signature/,
         'the operator learns why, in the error log');
};

subtest 'leeway' => sub {
    is(with_token(token('RS256', claims => { exp => time - 2 }))->{status}, 200,
       'expired 2 s ago, within 5 s of leeway');
    is(with_token(token('RS256', claims => { exp => time - 2 }),
                  '/strict/v1/chat/completions')->{status}, 401,
       'without leeway: expired');
};

subtest 'a remembered token still expires' => sub {
    my $token = token('ES256', claims => { exp => time + 2 });
    is(with_token($token, '/strict/v1/chat/completions')->{status}, 200, 'valid now');
    sleep 3;
    my $res = with_token($token, '/strict/v1/chat/completions');
    $t->is_openai_error($res, 401, 'expired_api_key', 'expired 1 s later, though cached');
};

subtest 'static API keys work beside tokens' => sub {
    is($t->chat('qwen')->{status}, 200, "alice's key");
};

# Every member the module reads, in the header and in the claims, absent,
# empty, null, of the wrong type, too large and named twice: each either
# makes a defined identity or a 401, and never takes the worker down.

subtest 'every claim absent, empty, null, mistyped, huge or repeated' => sub {
    my $JSON = JSON::PP->new->canonical;

    # the claims as JSON text, with one member replaced, removed or repeated
    my $payload = sub {
        my ($name, $value, %o) = @_;
        my %c = %{ claims(roles => ['admin']) };
        delete $c{$name};
        my @members = map { $JSON->encode($_) . ':' . $JSON->encode($c{$_}) } sort keys %c;
        if ($o{twice}) {
            push @members, qq{"$name":} . $JSON->encode($o{twice}[0]),
                           qq{"$name":} . $JSON->encode($o{twice}[1]);
        } elsif (defined $value) {
            push @members, qq{"$name":$value};
        }
        return '{' . join(',', @members) . '}';
    };

    my $with_payload = sub {
        my ($json, $path) = @_;
        my $tok = jwt_token(alg => 'RS256', key => $key{RS256}, kid => 'k-RS256',
                            raw_payload => $json);
        return $t->http($path ? 'GET' : 'POST', $path // '/claims/v1/chat/completions',
            headers => { Authorization => "Bearer $tok",
                         'Content-Type' => 'application/json' },
            $path ? () : (body => '{"model":"qwen","messages":[]}'));
    };

    my $last_decide = sub {
        my ($d) = grep { $_->{type_name} eq 'DECIDE' } reverse @{ $t->fake_policyd_frames };
        return $d->{fields};
    };

    my $huge = '"' . ('x' x 4000) . '"';
    my @tags17 = map { "t$_" } 1 .. 17;

    # [claim, JSON value or undef (absent), expected status, check of the DECIDE]
    my @cases = (
        [ sub => undef, 401 ], [ sub => '""', 401 ], [ sub => 'null', 401 ],
        [ sub => '7', 401 ], [ sub => '{}', 401 ], [ sub => '["a"]', 401 ],
        [ sub => $huge, 401 ], [ sub => '"a b"', 401 ],

        [ tid => undef, 200, sub { ok(!defined $_[0]{tenant}, 'tid absent: no tenant') } ],
        [ tid => '""', 200, sub { ok(!defined $_[0]{tenant}, 'tid empty: no tenant') } ],
        [ tid => 'null', 200, sub { ok(!defined $_[0]{tenant}, 'tid null: no tenant') } ],
        [ tid => '3', 401 ], [ tid => 'true', 401 ], [ tid => '["acme"]', 401 ],
        [ tid => $huge, 401 ],

        [ groups => undef, 200, sub { ok(!$_[0]{tag}, 'groups absent: no tags') } ],
        [ groups => '""', 200, sub { ok(!$_[0]{tag}, 'groups empty: no tags') } ],
        [ groups => 'null', 200, sub { ok(!$_[0]{tag}, 'groups null: no tags') } ],
        [ groups => '[]', 200, sub { ok(!$_[0]{tag}, 'groups []: no tags') } ],
        [ groups => '"eu team-x"', 200,
          sub { is_deeply([sort @{ $_[0]{tag} }], [qw(eu team-x)], 'groups a string: its names') } ],
        [ groups => '5', 401 ], [ groups => '{"a":1}', 401 ], [ groups => '[1]', 401 ],
        [ groups => '[null]', 401 ], [ groups => '["a b"]', 401 ],
        [ groups => $JSON->encode(\@tags17), 401 ], [ groups => $huge, 401 ],

        [ models => undef, 200, sub { ok(!$_[0]{allow_route}, 'models absent: every route') } ],
        [ models => 'null', 200, sub { ok(!$_[0]{allow_route}, 'models null: every route') } ],
        [ models => '""', 200, sub { ok(!$_[0]{allow_route}, 'models empty: every route') } ],
        [ models => 'false', 401 ], [ models => '[{}]', 401 ],

        [ roles => undef, 200 ], [ roles => '""', 200 ], [ roles => 'null', 200 ],
        [ roles => '[]', 200 ], [ roles => '"admin"', 200 ],
        [ roles => '9', 401 ], [ roles => '{"admin":true}', 401 ], [ roles => '[1]', 401 ],
        [ roles => $huge, 401 ],

        [ exp => undef, 401 ], [ exp => 'null', 401 ], [ exp => '""', 401 ],
        [ exp => '"' . (time + 600) . '"', 401 ], [ exp => '1e20', 401 ],
        [ exp => '99999999999999999999', 401 ], [ exp => '[1]', 401 ],

        [ nbf => 'null', 200 ], [ nbf => '"0"', 401 ], [ nbf => '{}', 401 ],
        [ iat => 'null', 200 ], [ iat => '""', 401 ], [ iat => 'true', 401 ],

        [ iss => undef, 401 ], [ iss => 'null', 401 ], [ iss => '""', 401 ],
        [ iss => '1', 401 ], [ iss => '["https://idp.test"]', 401 ],

        [ aud => undef, 401 ], [ aud => 'null', 401 ], [ aud => '""', 401 ],
        [ aud => '[]', 401 ], [ aud => '7', 401 ], [ aud => '[7]', 401 ],
        [ aud => '["x","tailgate"]', 200 ],
    );

    for my $c (@cases) {
        my ($name, $value, $status, $check) = @$c;
        my $what = "$name " . (defined $value ? substr($value, 0, 24) : 'absent');
        my $res = $with_payload->($payload->($name, $value));
        if ($status == 200) {
            is($res->{status}, 200, "$what: 200");
            $check->($last_decide->()) if $check;
        } else {
            $t->is_openai_error($res, 401, 'invalid_api_key', "$what: 401");
        }
    }

    # a claim named twice: whichever reader's choice, refused
    for my $twice ([ sub => ['svc-a', 'svc-b'] ], [ tid => ['acme', 'evil'] ],
                   [ groups => [['private'], []] ], [ models => [['qwen'], ['smart']] ],
                   [ roles => [[], ['admin']] ], [ exp => [time + 600, time + 6000] ],
                   [ iss => ['https://idp.test', 'https://idp.test'] ],
                   [ aud => ['tailgate', 'other'] ])
    {
        my ($name, $values) = @$twice;
        my $res = $with_payload->($payload->($name, undef, twice => $values));
        $t->is_openai_error($res, 401, 'invalid_api_key', "$name twice: 401");
    }

    # libjwt refuses any name twice, even one the gateway does not read
    $t->is_openai_error($with_payload->($payload->('note', undef, twice => ['a', 'b'])),
                        401, 'invalid_api_key', 'an unread claim twice: 401');

    # the roles claim decides the operator, whether present or not
    my $status_of = sub { $with_payload->($payload->('roles', $_[0]), '/claims/status')->{status} };
    is($status_of->(undef), 403, 'no roles claim: not an operator');
    is($status_of->('""'), 403, 'roles empty: not an operator');
    is($status_of->('null'), 403, 'roles null: not an operator');
    isnt($status_of->('["admin"]'), 403, 'roles ["admin"]: an operator');
    isnt($status_of->('"ops admin"'), 403, 'roles "ops admin": an operator');

    # the header's members
    my $with_header = sub {
        my ($header) = @_;
        my $tok = jwt_token(alg => 'RS256', key => $key{RS256}, raw_header => $header,
                            claims => claims());
        return with_token($tok, '/claims/v1/chat/completions');
    };

    is($with_header->('{"alg":"RS256","kid":"k-RS256","typ":null}')->{status}, 200,
       'typ null: as if absent');
    is($with_header->('{"alg":"RS256","kid":null}')->{status}, 200,
       'kid null: the key without a kid');
    for my $bad ('{"alg":null,"kid":"k-RS256"}', '{"alg":"RS256","kid":7}',
                 '{"alg":"RS256","kid":"k-RS256","typ":1}',
                 '{"alg":"RS256","alg":"RS256","kid":"k-RS256"}',
                 '{"alg":"RS256","kid":"k-RS256","kid":"k-HS256"}',
                 '{"alg":"RS256","kid":"k-RS256","crit":null}',
                 '{"alg":"RS256","kid":"k-RS256","typ":"JWT","typ":"x"}')
    {
        $t->is_openai_error($with_header->($bad), 401, 'invalid_api_key', "header $bad: 401");
    }

    $t->logs_clean('no worker died of a claim');
};

subtest 'keys rotate across a reload' => sub {
    my $new = jwt_token(alg => 'ES256', key => $rotated, kid => 'k-new', claims => claims());
    my $old = token('HS256');

    is(with_token($new)->{status}, 401, 'a token of a key not configured yet');

    write_jwt_conf(key_directives('HS256')
                   . "\ntailgate_jwt_key ES256 $rotated->{public_pem} kid=k-new;");
    $t->reload_nginx;
    is(with_token($new)->{status}, 200, 'after adding it: the new key works');
    is(with_token($old)->{status}, 200, 'and the old one still does');

    write_jwt_conf("tailgate_jwt_key ES256 $rotated->{public_pem} kid=k-new;");
    $t->reload_nginx;
    is(with_token($new)->{status}, 200, 'after removing the old key: the new one works');
    is(with_token($old)->{status}, 401, 'tokens of the old key are refused');
};

subtest 'a key of the wrong kind stops nginx -t' => sub {
    my %bad = (
        'an RSA key for ES256'  => "tailgate_jwt_key ES256 $key{RS256}{public_pem};",
        'a P-256 key for ES384' => "tailgate_jwt_key ES384 $key{ES256}{public_pem};",
        'a private key'         => "tailgate_jwt_key RS256 $key{RS256}{private_pem};",
        'a short HS256 secret'  => "tailgate_jwt_key HS256 "
                                   . $t->write_file('short.secret', 'x' x 31) . ';',
        'an unknown algorithm'  => "tailgate_jwt_key PS256 $key{RS256}{public_pem};",
        'two keys without kid'  => "tailgate_jwt_key RS256 $key{RS256}{public_pem};"
                                 . "tailgate_jwt_key RS384 $key{RS384}{public_pem};",
    );

    for my $name (sort keys %bad) {
        my ($status, $out) = $t->nginx_check($bad{$name});
        isnt($status, 0, "$name: refused") or diag($out);
    }
};

$t->done_testing;
