#!/usr/bin/perl

# DPoP (RFC 9449): "Authorization: DPoP TOKEN" with a proof in a DPoP
# header, checked in the nginx worker.  The happy path with RSA and EC
# proof keys; each check failing on its own; every header member and claim
# of a proof absent, empty, null, mistyped, huge and repeated; a jti replayed
# on another worker; a DPoP-bound token used as a bearer token; Bearer
# where DPoP is required; the URL behind a TLS terminator.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Digest::SHA qw(sha256);
use JSON::PP;
use Tailgate::Gateway;
use Tailgate::JWT qw(jwt_keypair jwt_token b64url jwk_thumbprint dpop_proof);
use Tailgate::JWKS qw(jwk_of);

my $t = Tailgate::Gateway->new->skip_unless_built;

my $JSON = JSON::PP->new->canonical;

my $issuer = jwt_keypair($t->dir, 'RS256');
my %key = (ec => jwt_keypair($t->dir, 'ES256'),
           rsa => jwt_keypair($t->dir, 'RS256'),
           other => jwt_keypair($t->dir, 'ES256'));
my %jwk = map { $_ => jwk_of($key{$_}) } keys %key;

my %decision = (provider => 'local', upstream => 'tg_local', scheme => 'http',
                host => 'local', zone => 'local', path => '/v1/chat/completions');

$t->start_gateway(
    workers => 2,
    fake_policyd => { decision => \%decision },
    http => qq{
        tailgate_jwt_key RS256 $issuer->{public_pem};
        tailgate_jwt_issuer https://idp.test;
        tailgate_jwt_audience tailgate;
        tailgate_dpop on;
        tailgate_dpop_window 60s;
        large_client_header_buffers 4 64k;

        # the least there is: some 170 slots, filled by the last subtest
        tailgate_dpop_replay_cache 8k;

        # new connections spread over the two workers, which say who they are
        server {
            listen 127.0.0.1:%%PORT:edge%% reuseport;
            add_header X-Worker \$pid always;
            add_header X-Auth \$tailgate_auth always;

            location /v1/ {
                tailgate on;
                include tailgate/proxy.conf;
            }
        }
    },
    server => q{
        location /strict/v1/ {
            tailgate on;
            tailgate_dpop required;
            include tailgate/proxy.conf;
        }

        location /off/v1/ {
            tailgate on;
            tailgate_dpop off;
            include tailgate/proxy.conf;
        }

        location /public/v1/ {
            tailgate on;
            tailgate_dpop_public_url https://API.example.com:443/;
            include tailgate/proxy.conf;
        }

        # a TLS terminator on 127.0.0.1 (and a keyless network: harmless)
        location /behind/v1/ {
            tailgate on;
            tailgate_trusted_network 127.0.0.1/32 client=edge-lb;
            include tailgate/proxy.conf;
        }
    });

my $local = $t->mock('local');
my $CHAT = '/v1/chat/completions';
my $BODY = '{"model":"qwen","messages":[]}';

sub url {
    my ($path, $port) = @_;
    return 'http://127.0.0.1:' . $t->port($port // 'nginx') . ($path // $CHAT);
}

# a token from the identity provider, bound to a proof key (jkt => undef:
# to none)
sub token {
    my (%o) = @_;
    my $which = $o{key} // 'ec';
    my $jkt = exists $o{jkt} ? $o{jkt} : jwk_thumbprint($jwk{$which});

    my %claims = (sub => 'svc-dpop', iss => 'https://idp.test',
                  aud => 'tailgate', exp => time + 600, iat => time,
                  (defined $jkt ? (cnf => { jkt => $jkt }) : ()),
                  %{ $o{claims} // {} });

    return jwt_token(alg => 'RS256', key => $issuer, claims => \%claims);
}

# a proof for a token, by the key the token is bound to unless told
sub proof {
    my ($token, %o) = @_;
    my $which = delete $o{key} // 'ec';
    my $path = delete $o{path};
    my $port = delete $o{port};

    return dpop_proof(key => $key{$which}, jwk => $jwk{$which},
                      htu => url($path, $port), token => $token, %o);
}

sub call {
    my ($token, $proof, %o) = @_;

    my %h = ('Content-Type' => 'application/json',
             Authorization => ($o{scheme} // 'DPoP') . " $token",
             %{ $o{headers} // {} });
    $h{DPoP} = $proof if defined $proof;

    return $t->http($o{method} // 'POST', $o{path} // $CHAT,
                    headers => \%h, body => $BODY,
                    ($o{port} ? (port => $t->port($o{port})) : ()),
                    ($o{from} ? (local_addr => $o{from}) : ()));
}

# a 401 in DPoP's terms, with its error, and an OpenAI-shaped body
sub refused {
    my ($res, $error, $name) = @_;

    my $code = $error eq 'invalid_dpop_proof' ? 'invalid_dpop_proof'
             : $error eq 'dpop_required' ? 'dpop_required'
             : 'invalid_api_key';
    my $challenge = $error eq 'dpop_required' ? 'invalid_token' : $error;

    my $ok = $t->is_openai_error($res, 401, $code, $name);
    like($res->{headers}{'www-authenticate'} // '',
         qr/^DPoP algs="ES256 ES384 ES512 RS256 RS384 RS512", error="\Q$challenge\E"/,
         "$name: WWW-Authenticate");

    return $ok;
}

sub proxied { scalar @{ $local->requests } }


subtest 'a DPoP-bound token with its proof: EC and RSA keys' => sub {
    for my $which (qw(ec rsa)) {
        my $token = token(key => $which);
        my $before = proxied();
        my $res = call($token, proof($token, key => $which));

        is($res->{status}, 200, "$which: 200") or diag($res->{body});
        is(proxied(), $before + 1, "$which: the provider got it");
    }

    my $got = $local->requests->[-1];
    is($got->{headers}{dpop} // '', '', 'the proof goes no further');
    unlike($got->{headers}{authorization} // '', qr/DPoP/,
           'nor the DPoP token');

    my ($decide) = @{ $t->fake_frames('DECIDE') }[-1];
    is($decide->{fields}{client}, 'svc-dpop', 'the client is the token\'s sub');
};

subtest 'htu: query and fragment are not compared, default ports are' => sub {
    my $token = token();
    my $p = proof($token, path => "$CHAT?x=1#frag");
    is(call($token, $p, path => "$CHAT?y=2")->{status}, 200,
       'the proof\'s query and the request\'s differ: fine');

    $p = proof($token, htu => 'HTTP://127.0.0.1:' . $t->port('nginx') . $CHAT);
    is(call($token, $p)->{status}, 200, 'the scheme in capitals');
};

subtest 'each check failing on its own: 401 invalid_dpop_proof' => sub {
    my $token = token();
    my $port = $t->port('nginx');
    my $other_secret = 'a-shared-secret-of-thirty-two-bytes!';

    # each with the reason the operator reads in the error log
    my %bad = (
        'wrong htm' => [ proof($token, htm => 'GET'), qr/htm is not/ ],
        'htm in lower case' => [ proof($token, htm => 'post'), qr/htm is not/ ],
        'wrong scheme in htu' =>
            [ proof($token, htu => "https://127.0.0.1:$port$CHAT"), qr/htu is not/ ],
        'wrong host in htu' =>
            [ proof($token, htu => "http://evil.test:$port$CHAT"), qr/htu is not/ ],
        'wrong port in htu' =>
            [ proof($token, htu => 'http://127.0.0.1:1' . $CHAT), qr/htu is not/ ],
        'wrong path in htu' =>
            [ proof($token, path => '/v1/embeddings'), qr/htu is not/ ],
        'path prefix only' => [ proof($token, path => '/v1/'), qr/htu is not/ ],
        'htu without scheme' =>
            [ proof($token, htu => "127.0.0.1:$port$CHAT"), qr/htu is not/ ],
        'old iat' => [ proof($token, iat => time - 120), qr/older than/ ],
        'future iat' => [ proof($token, iat => time + 120), qr/in the future/ ],
        'wrong ath' => [ proof($token, claims => { ath => b64url(sha256('other')) }),
                         qr/ath is not the token's hash/ ],
        'no ath' => [ proof($token, claims => { ath => undef }), qr/has no ath/ ],
        'thumbprint mismatch' =>
            [ proof($token, key => 'other'), qr/key is not the one the token/ ],
        'jwk of another key than the signature' =>
            [ dpop_proof(key => $key{ec}, jwk => $jwk{other}, htu => url(),
                         token => $token), qr/signature is not by its jwk/ ],
        'symmetric alg (HS256)' =>
            [ proof($token, alg => 'HS256', sign_as => 'HS256',
                    hmac_secret => $other_secret), qr/alg is not one of/ ],
        'alg none' => [ proof($token, alg => 'none', signature => 'x' x 64),
                        qr/alg is not one of/ ],
        'alg none, no signature' =>
            [ proof($token, alg => 'none', signature => ''), qr/not three base64url/ ],
        'alg RS256 with an EC key' =>
            [ proof($token, alg => 'RS256'), qr/alg is not for its jwk/ ],
        'alg ES384 with a P-256 key' =>
            [ proof($token, alg => 'ES384'), qr/alg is not for its jwk/ ],
        'alg PS256' => [ proof($token, alg => 'PS256'), qr/alg is not one of/ ],
        'typ JWT' => [ proof($token, header => { typ => 'JWT' }), qr/typ is not/ ],
        'typ at+jwt' => [ proof($token, header => { typ => 'at+jwt' }), qr/typ is not/ ],
        'crit header' =>
            [ proof($token, header => { crit => ['htm'] }), qr/critical extensions/ ],
        'private key in jwk (d)' =>
            [ proof($token, header => { jwk => { %{ $jwk{ec} }, d => $jwk{ec}{x} } }),
              qr/jwk holds a private key/ ],
        'private key in RSA jwk (p)' =>
            [ proof($token, key => 'rsa',
                    header => { jwk => { %{ $jwk{rsa} }, p => $jwk{rsa}{e} } }),
              qr/jwk holds a private key/ ],
        'jwk a string' =>
            [ proof($token, header => { jwk => 'key' }), qr/has no jwk object/ ],
        'jwk of kty oct' =>
            [ proof($token, header => { jwk => { kty => 'oct', k => 'c2VjcmV0' } }),
              qr/jwk is not a usable public/ ],
        'jwk without y' =>
            [ proof($token, header => { jwk => { %{ $jwk{ec} }, y => undef } }),
              qr/jwk is not a usable public/ ],
        'jwk point off its curve' =>
            [ proof($token, header => { jwk => { %{ $jwk{ec} }, y => $jwk{ec}{x} } }),
              qr/jwk is not a usable public/ ],
        'EC jwk alg of another curve' =>
            [ proof($token, header => { jwk => { %{ $jwk{ec} }, alg => 'ES384' } }),
              qr/jwk is not a usable public/ ],
        'RSA jwk alg not the proof\'s' =>
            [ proof($token, key => 'rsa',
                    header => { jwk => { %{ $jwk{rsa} }, alg => 'RS384' } }),
              qr/alg is not its jwk's alg/ ],
        'signature of other bytes' => [ do {
            my @p = split /\./, proof($token);
            my @q = split /\./, proof($token);
            "$p[0].$p[1].$q[2]";
        }, qr/signature is not by its jwk/ ],
        'ES256 signature one byte short' => [ do {
            my $x = proof($token);
            $x =~ s/[^.]{2}$//;
            $x;
        }, qr/signature is not by its jwk/ ],
        'not base64url' =>
            [ do { (my $x = proof($token)) =~ s/^./!/; $x }, qr/not three base64url/ ],
        'four parts' => [ proof($token) . '.e30', qr/not three base64url/ ],
        'empty' => [ '', qr/not three base64url/ ],
        'spaces only' => [ '   ', qr/not three base64url/ ],
        'missing proof' => [ undef, qr/no DPoP proof was sent/ ],
        'two DPoP headers' => [ [ proof($token), proof($token) ],
                                qr/more than one DPoP header/ ],
    );

    my $before = proxied();

    for my $name (sort keys %bad) {
        my ($proof, $why) = @{ $bad{$name} };
        my $from = $t->log_size('error');

        refused(call($token, $proof), 'invalid_dpop_proof', $name);
        like(substr($t->error_log, $from), qr/credential rejected: .*$why/,
             "$name: for its own reason");
    }

    is(proxied(), $before, 'no provider received any of them');
    is(call($token, proof($token))->{status}, 200,
       'the same token with a good proof still passes');
};

subtest 'replayed jti: refused, by the other worker too' => sub {
    my $token = token();
    my $p = proof($token, port => 'edge');

    my $first = call($token, $p, port => 'edge');
    is($first->{status}, 200, 'first use') or diag($first->{body});
    my $pid = $first->{headers}{'x-worker'};
    ok($pid, 'the worker said who it is');
    is($first->{headers}{'x-auth'}, 'dpop', '$tailgate_auth is "dpop"');

    my (%pids, @statuses);

    # new connections: the kernel spreads them over the workers
    for my $i (1 .. 40) {
        my $res = call($token, $p, port => 'edge');
        push @statuses, $res->{status};
        $pids{ $res->{headers}{'x-worker'} // '?' }++;
        last if grep { $_ ne $pid } keys %pids;
    }

    is_deeply([ grep { $_ != 401 } @statuses ], [], 'every replay: 401');
    ok((grep { $_ ne $pid } keys %pids),
       'a replay reached the other worker') or diag(explain \%pids);

    refused(call($token, $p, port => 'edge'), 'invalid_dpop_proof',
            'and still refused');
    like($t->error_log, qr/the proof's jti was used before/, 'logged as a replay');

    my $again = proof($token, port => 'edge');
    is(call($token, $again, port => 'edge')->{status}, 200,
       'a new jti from the same client passes');
};

subtest 'the token itself is wrong: 401 invalid_token' => sub {
    my $unbound = token(jkt => undef);
    refused(call($unbound, proof($unbound)), 'invalid_token',
            'a DPoP token without cnf.jkt');

    for my $cnf ('', 'x' x 42, 'x' x 44, '!' x 43) {
        my $tok = token(jkt => $cnf);
        refused(call($tok, proof($tok)), 'invalid_token',
                'cnf.jkt of ' . length($cnf) . ' bad characters');
    }

    for my $cnf ([ 'null', JSON::PP::null ], [ 'a string', 'abc' ],
                 [ 'x5t#S256 only', { 'x5t#S256' => 'abc' } ],
                 [ 'jkt a number', { jkt => 5 } ])
    {
        my $tok = token(jkt => undef, claims => { cnf => $cnf->[1] });
        my $res = call($tok, proof($tok));

        if ($cnf->[0] eq 'null') {
            refused($res, 'invalid_token', 'cnf null: not bound, not DPoP');
        } else {
            refused($res, 'invalid_token', "cnf $cnf->[0]");
        }
    }

    # cnf and its jkt given twice: the token is refused as a whole
    my $jkt = jwk_thumbprint($jwk{ec});
    my $claims = qq({"sub":"svc-dpop","iss":"https://idp.test","aud":"tailgate",)
               . qq("exp":@{[ time + 600 ]},"cnf":{"jkt":"$jkt"},"cnf":{"jkt":"$jkt"}});
    my $twice = jwt_token(alg => 'RS256', key => $issuer, raw_payload => $claims);
    refused(call($twice, proof($twice)), 'invalid_token', 'cnf twice');

    ($claims = $claims) =~ s/,"cnf":\{"jkt":"[^"]+"\}\}$/}/;
    $claims =~ s/"cnf":\{"jkt":"$jkt"\}/"cnf":{"jkt":"$jkt","jkt":"$jkt"}/;
    $twice = jwt_token(alg => 'RS256', key => $issuer, raw_payload => $claims);
    refused(call($twice, proof($twice)), 'invalid_token', 'jkt twice in cnf');

    my $huge = token(jkt => 'A' x 4000);
    refused(call($huge, proof($huge)), 'invalid_token', 'a huge cnf.jkt');

    my $expired = token(claims => { exp => time - 600 });
    my $res = call($expired, proof($expired));
    is($res->{status}, 401, 'an expired token');
    like($res->{headers}{'www-authenticate'} // '',
         qr/^DPoP .*error="invalid_token", error_description="expired"/,
         'expired, in DPoP terms');

    my $api_key = $t->key;
    refused(call($api_key, proof($api_key)), 'invalid_token',
            'an API key sent as a DPoP token');

    my $res_off = call(token(), proof(token()), path => "/off$CHAT");
    $t->is_openai_error($res_off, 401, 'invalid_api_key',
                        'DPoP where tailgate_dpop is off');
    is($res_off->{headers}{'www-authenticate'} // '',
       'Bearer realm="tailgate", error="invalid_token"',
       'answered with what is on there: Bearer');
};

subtest 'a DPoP-bound token used as a bearer token: refused' => sub {
    my $token = token();

    my $res = call($token, undef, scheme => 'Bearer');
    $t->is_openai_error($res, 401, 'invalid_api_key', 'Bearer with cnf.jkt');
    like($res->{headers}{'www-authenticate'} // '',
         qr/^Bearer realm="tailgate", error="invalid_token"/, 'a Bearer challenge');
    like($res->{headers}{'www-authenticate'} // '', qr/DPoP algs=/,
         'and DPoP offered beside it');

    $res = call($token, proof($token), scheme => 'Bearer');
    is($res->{status}, 401, 'a proof beside it changes nothing');

    $res = call($token, undef, scheme => 'Bearer', path => "/off$CHAT");
    is($res->{status}, 401, 'where DPoP is off too');

    my $plain = token(jkt => undef);
    is(call($plain, undef, scheme => 'Bearer')->{status}, 200,
       'an unbound token as Bearer: fine where DPoP is on');
    like($t->error_log, qr/a DPoP-bound token \(cnf.jkt\) sent as a bearer token/,
         'the operator learns why');
};

subtest 'where DPoP is required, Bearer and API keys are refused' => sub {
    my $plain = token(jkt => undef);
    my $before = proxied();

    refused(call($plain, undef, scheme => 'Bearer', path => "/strict$CHAT"),
            'dpop_required', 'an unbound JWT as Bearer');
    refused(call($t->key, undef, scheme => 'Bearer', path => "/strict$CHAT"),
            'dpop_required', 'an API key as Bearer');

    my $res = $t->http('POST', "/strict$CHAT", body => $BODY,
                       headers => { 'X-Api-Key' => $t->key,
                                    'Content-Type' => 'application/json' });
    refused($res, 'dpop_required', 'an API key as X-Api-Key');

    $res = $t->http('POST', "/strict$CHAT", body => $BODY,
                    headers => { 'Content-Type' => 'application/json' });
    is($res->{status}, 401, 'no credential at all');
    is($res->{headers}{'www-authenticate'} // '',
       'DPoP algs="ES256 ES384 ES512 RS256 RS384 RS512"',
       'only DPoP is offered');

    is(proxied(), $before, 'none reached a provider');

    my $token = token();
    is(call($token, proof($token, path => "/strict$CHAT"),
            path => "/strict$CHAT")->{status}, 200, 'DPoP passes');
};

subtest 'the URL as the client addressed it: public URL, TLS terminator' => sub {
    my $token = token();
    my $path = "/public$CHAT";

    is(call($token, proof($token, htu => "https://api.example.com$path"),
            path => $path)->{status}, 200,
       'tailgate_dpop_public_url: the scheme and host the clients use');
    is(call($token, proof($token, htu => "https://api.example.com:443$path"),
            path => $path)->{status}, 200, 'with its default port');
    refused(call($token, proof($token, path => $path), path => $path),
            'invalid_dpop_proof', 'the gateway\'s own address is not it');

    $path = "/behind$CHAT";
    my %fwd = ('X-Forwarded-Proto' => 'https',
               'X-Forwarded-Host' => 'gw.example.com');

    is(call($token, proof($token, htu => "https://gw.example.com$path"),
            path => $path, headers => \%fwd)->{status}, 200,
       'X-Forwarded-* from a trusted network');
    is(call($token, proof($token, path => $path), path => $path)->{status}, 200,
       'from a trusted network without them: the connection and Host');
    refused(call($token, proof($token, path => $path), path => $path,
                 headers => \%fwd),
            'invalid_dpop_proof', 'with them, the gateway\'s own URL is not it');

    refused(call($token, proof($token, htu => "https://gw.example.com$path"),
                 path => $path, headers => \%fwd, from => '127.0.0.2'),
            'invalid_dpop_proof', 'the same headers from elsewhere: ignored');

    refused(call($token, proof($token, htu => "https://gw.example.com$CHAT"),
                 headers => \%fwd),
            'invalid_dpop_proof', 'nor where no network is trusted');

    refused(call($token, proof($token, htu => "https://gw.example.com$path"),
                 path => $path,
                 headers => { %fwd, 'X-Forwarded-Proto' => [ 'https', 'http' ] }),
            'invalid_dpop_proof', 'X-Forwarded-Proto twice');

    is(call($token, proof($token, htu => "https://gw.example.com$path"),
            path => $path,
            headers => { %fwd, 'X-Forwarded-Host' => 'gw.example.com, inner' })
       ->{status}, 200, 'of a list, the first host is the client\'s');
};

# Every member the module reads, absent, empty, null, mistyped, huge and
# repeated: each a 401, and the worker lives on.

subtest 'every header member and claim absent, empty, null, mistyped, huge, twice' => sub {
    my $token = token();

    my $parts = sub {
        return ({ typ => 'dpop+jwt', alg => 'ES256', jwk => $jwk{ec} },
                { jti => b64url(join '', map { chr int rand 256 } 1 .. 16),
                  htm => 'POST', htu => url(), iat => time,
                  ath => b64url(sha256($token)) });
    };

    # the JSON text of a part with one member changed: undef removes it,
    # \'null' makes it null, \'twice' repeats it
    my $text = sub {
        my ($part, $name, $value) = @_;
        my %p = %$part;
        my $json;

        if (ref $value eq 'SCALAR' && $$value eq 'twice') {
            $json = $JSON->encode(\%p);
            my $one = $JSON->encode({ $name => $p{$name} });
            $one =~ s/^\{|\}$//g;
            $json =~ s/^\{/{$one,/;
        } elsif (ref $value eq 'SCALAR' && $$value eq 'null') {
            $p{$name} = '__null__';
            ($json = $JSON->encode(\%p)) =~ s/"__null__"/null/;
        } else {
            if (defined $value) { $p{$name} = $value } else { delete $p{$name} }
            $json = $JSON->encode(\%p);
        }

        return $json;
    };

    my %variants = (
        absent => undef, empty => '', null => \'null', twice => \'twice',
        number => 12345, array => ['a'], object => { a => 1 },
        huge => 'x' x 6000, long => 'x' x 300, true => JSON::PP::true,
    );

    my ($n, $bad) = (0, 0);

    for my $where (0, 1) {
        my @names = $where ? qw(jti htm htu iat ath) : qw(typ alg jwk);

        for my $name (@names) {
            for my $v (sort keys %variants) {
                my ($h, $c) = $parts->();
                my $header = $where ? $JSON->encode($h)
                                    : $text->($h, $name, $variants{$v});
                my $claims = $where ? $text->($c, $name, $variants{$v})
                                    : $JSON->encode($c);

                my $proof = jwt_token(raw_header => $header,
                                      raw_payload => $claims,
                                      alg => 'ES256', key => $key{ec});
                my $res = call($token, $proof);
                $n++;

                my $ok = $res->{status} == 401
                    && ($res->{headers}{'www-authenticate'} // '')
                       =~ /error="invalid_dpop_proof"/
                    && $t->error($res);
                $bad++ unless $ok;
                ok($ok, "$name $v: 401 invalid_dpop_proof")
                    or diag("status $res->{status}: $res->{body}");
            }
        }
    }

    # an iat as a number the claims allow: fine; as one they do not: not
    my ($h, $c) = $parts->();
    for my $iat ('1.5e9', '-1', '1e300', '"' . time . '"', time . '.5') {
        my $claims = $JSON->encode({ %$c, iat => 0 });
        $claims =~ s/"iat":0/"iat":$iat/;
        my $proof = jwt_token(raw_header => $JSON->encode($h),
                              raw_payload => $claims,
                              alg => 'ES256', key => $key{ec});
        is(call($token, $proof)->{status}, 401, "iat $iat: 401");
    }

    for my $json ('[]', 'null', '"dpop"', '{"typ":"dpop+jwt",', '{} x',
                  '{"typ":"dpop+jwt\u0000x","alg":"ES256"}')
    {
        my $proof = jwt_token(raw_header => $json, raw_payload => $JSON->encode($c),
                              alg => 'ES256', key => $key{ec});
        is(call($token, $proof)->{status}, 401, "header $json: 401");
        $proof = jwt_token(raw_header => $JSON->encode($h), raw_payload => $json,
                           alg => 'ES256', key => $key{ec});
        is(call($token, $proof)->{status}, 401, "claims $json: 401");
    }

    is(call($token, proof($token))->{status}, 200, 'and a good one still passes');
    is(scalar(() = $t->error_log =~ /\[(?:alert|crit|emerg)\]/g), 0,
       'no worker died on them');
};

# Last: it fills the replay cache, which then refuses new proofs for a
# window.  A run of 32 slots full of live jtis comes well before all ~170
# are.

subtest 'a full replay cache refuses new proofs rather than forget old ones' => sub {
    my $token = token();
    my (@taken, $busy);
    my $deadline = time + 120;

    for my $i (1 .. 400) {
        last if time > $deadline;

        my $p = proof($token);
        my $res = call($token, $p);

        if ($res->{status} == 200) {
            push @taken, $p;
            next;
        }

        $busy = $res;
        last;
    }

    ok($busy, 'full after ' . scalar(@taken) . ' more proofs') or return;
    $t->is_openai_error($busy, 503, 'dpop_busy', '503 dpop_busy');
    cmp_ok(scalar @taken, '<', 170, 'before every slot was taken');
    like($t->error_log, qr/\[error\].*DPoP proof refused: the DPoP replay cache is full/,
         'logged as an error, for the operator to size it');

    my @again = map { call($token, $_)->{status} } @taken;
    is_deeply([ grep { $_ != 401 } @again ], [],
              'every proof it took is still refused as a replay: none forgotten');
};

subtest 'configuration errors name what was expected' => sub {
    my $check = sub {
        my ($conf, $http) = @_;
        my ($rc, $out) = $t->nginx_check(qq{
            tailgate_policyd unix:%%POLICYD_SOCK%%;
            tailgate_jwt_key RS256 $issuer->{public_pem};
            @{[ $http // '' ]}
            server { listen 127.0.0.1:%%PORT%%; location /v1/ { tailgate on; $conf } }
        });
        return ($out // '') . ($rc ? '' : ' [test is successful]');
    };

    like($check->('tailgate_dpop on;', 'tailgate_dpop_replay_cache 8k;'),
         qr/test is successful/, 'a replay cache of 8k, the least');
    $t->allow_log(qr/tailgate_dpop_replay_cache 4096 is too small/);
    like($check->('tailgate_dpop on;', 'tailgate_dpop_replay_cache 4k;'),
         qr/tailgate_dpop_replay_cache 4096 is too small: 8k at least/,
         'one of 4k is too small');
    like($check->('tailgate_dpop on;', 'tailgate_dpop_replay_cache 1m; '
                  . 'tailgate_dpop_replay_cache 2m;'),
         qr/is duplicate/, 'given twice');
    like($check->('tailgate_dpop_public_url https://a; '
                  . 'tailgate_dpop_public_url https://b;'),
         qr/is duplicate/, 'a public URL given twice');

    like($check->('tailgate_dpop maybe;'), qr/invalid value "maybe"/, 'tailgate_dpop maybe');
    like($check->('tailgate_dpop_window 2h;'), qr/tailgate_dpop_window.*1s to 1h/,
         'a window of 2 hours');
    like($check->('tailgate_dpop_public_url ftp://x;'), qr/expected https:\/\/HOST/,
         'a public URL of another scheme');
    like($check->('tailgate_dpop_public_url https://x/api;'), qr/no path/,
         'a public URL with a path');
};

$t->done_testing;
