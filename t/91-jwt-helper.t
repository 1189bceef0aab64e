#!/usr/bin/perl

# Self-test of t/lib/Tailgate/JWT.pm: the keys it makes are what they claim
# to be, the tokens it mints verify with openssl alone, and tampered ones do
# not.  Needs only perl and the openssl tool, no nginx.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use File::Temp qw(tempdir);
use JSON::PP ();
use Digest::SHA qw(hmac_sha256);
use Time::HiRes qw(time);

use Tailgate::JWT qw(:all);

plan skip_all => 'no openssl tool'
    unless (`$Tailgate::JWT::OPENSSL version 2>/dev/null` // '') =~ /OpenSSL/;

my $START = time;
my $dir = tempdir('tailgate-jwt-XXXXXXXX', TMPDIR => 1, CLEANUP => 1);
my $JSON = JSON::PP->new->canonical;

my @ALGS = qw(HS256 HS384 HS512 RS256 RS384 RS512 ES256 ES384 ES512);
my %SIG_LEN = (HS256 => 32, HS384 => 48, HS512 => 64,
               RS256 => 256, RS384 => 256, RS512 => 256,
               ES256 => 64, ES384 => 96, ES512 => 132);

my %KEY;    # one key pair per alg, made once
sub key { $KEY{ $_[0] } //= jwt_keypair($dir, $_[0]) }

sub slurp {
    open my $fh, '<:raw', $_[0] or die "$_[0]: $!";
    local $/;
    return scalar <$fh>;
}

sub parts { [split /\./, $_[0], -1] }

sub openssl_out { my $cmd = shift; return scalar `$Tailgate::JWT::OPENSSL $cmd 2>&1` }


subtest 'base64url' => sub {
    for my $len (0 .. 12, 47, 48, 49) {
        my $bytes = join '', map { chr int rand 256 } 1 .. $len;
        my $text = b64url($bytes);

        unlike($text, qr/[^A-Za-z0-9_-]/, "$len bytes: URL alphabet, no padding");
        is(b64url_decode($text), $bytes, "$len bytes: round trip");
    }

    is(b64url("\xfb\xff\xbf"), '-_-_', '- and _ replace + and /');
    is(b64url_decode('YQ=='), 'a', 'padding tolerated');

    for my $bad ('a', 'ab$c', 'a+b/', "YQ\n", 'Y Q') {
        is(b64url_decode($bad), undef, "'$bad' is not base64url");
    }
};


subtest 'key pairs' => sub {
    for my $alg (@ALGS) {
        my $k = key($alg);

        is($k->{alg}, $alg, "$alg: alg");

        if ($alg =~ /^HS/) {
            my $text = slurp($k->{secret});

            is($text, $k->{secret_bytes}, "$alg: the file is the secret, exactly");
            like($text, qr/\A[A-Za-z0-9_-]{64}\z/, "$alg: 64 base64url chars, no newline");
            is(length b64url_decode($text), 48, "$alg: 48 random bytes");
            next;
        }

        like(slurp($k->{private_pem}), qr/^-----BEGIN PRIVATE KEY-----$/m,
             "$alg: private key PEM");
        is((stat $k->{private_pem})[2] & 07777, 0600, "$alg: private key mode 0600");
        like(slurp($k->{public_pem}), qr/\A-----BEGIN PUBLIC KEY-----$/m,
             "$alg: public key PEM");
        like(slurp($k->{cert_pem}), qr/\A-----BEGIN CERTIFICATE-----$/m,
             "$alg: certificate PEM");

        is(openssl_out("x509 -in $k->{cert_pem} -noout -pubkey"),
           slurp($k->{public_pem}), "$alg: the certificate holds the public key");

        my $text = openssl_out("pkey -pubin -in $k->{public_pem} -noout -text");

        if ($alg =~ /^RS/) {
            like($text, qr/\(2048 bit\)/, "$alg: RSA 2048");
        } else {
            my $curve = { ES256 => 'P-256', ES384 => 'P-384', ES512 => 'P-521' }->{$alg};
            is($k->{curve}, $curve, "$alg: curve");
            like($text, qr/NIST CURVE: \Q$curve\E/, "$alg: the key is on $curve");
        }
    }

    my $again = jwt_keypair($dir, 'ES256');
    isnt($again->{$_}, key('ES256')->{$_}, "a second ES256 key: new $_")
        for qw(private_pem public_pem cert_pem);
    isnt(slurp($again->{public_pem}), slurp(key('ES256')->{public_pem}),
         'a second ES256 key: a new key');
    isnt(jwt_keypair($dir, 'HS256')->{secret_bytes}, key('HS256')->{secret_bytes},
         'a second HS256 secret: new bytes');

    ok(!eval { jwt_keypair($dir, 'PS256'); 1 }, 'an unknown alg dies');
    ok(!eval { jwt_keypair("$dir/nope", 'RS256'); 1 }, 'a missing dir dies');
};


for my $alg (@ALGS) {
    subtest "$alg tokens" => sub {
        my $k = key($alg);
        my $token = jwt_token(alg => $alg, key => $k, kid => 'k1',
                              claims => { sub => 'alice', exp => 2000000000,
                                          tags => ['a', 'b'] });
        my $p = parts($token);

        is(scalar @$p, 3, 'three parts');
        unlike($token, qr/[^A-Za-z0-9_.-]/, 'only base64url and dots');
        is_deeply($JSON->decode(b64url_decode($p->[0])),
                  { alg => $alg, typ => 'JWT', kid => 'k1' }, 'header');
        is(b64url_decode($p->[1]),
           '{"exp":2000000000,"sub":"alice","tags":["a","b"]}',
           'payload: canonical JSON, numbers as numbers');
        is(length b64url_decode($p->[2]), $SIG_LEN{$alg},
           "signature: $SIG_LEN{$alg} bytes");

        ok(jwt_verify_with_openssl($token, $k), 'verifies with openssl')
            or diag($Tailgate::JWT::ERROR);

        my $forged = b64url('{"exp":2000000000,"sub":"mallory","tags":["a","b"]}');
        ok(!jwt_verify_with_openssl("$p->[0].$forged.$p->[2]", $k),
           'a tampered payload does not');

        my $sig = b64url_decode($p->[2]);
        substr($sig, 10, 1) ^= "\x01";
        ok(!jwt_verify_with_openssl("$p->[0].$p->[1]." . b64url($sig), $k),
           'a tampered signature does not');

        ok(!jwt_verify_with_openssl("$p->[0].$p->[1].", $k), 'no signature does not');

        my $other = jwt_keypair($dir, $alg);
        ok(!jwt_verify_with_openssl($token, $other), 'another key of the same alg does not');
    };
}


subtest 'RSA keys are hash-agnostic' => sub {
    my $rsa = key('RS256');
    my $token = jwt_token(alg => 'RS512', key => $rsa, claims => { a => 1 });

    ok(jwt_verify_with_openssl($token, { %$rsa, alg => 'RS512' }),
       'an RS256 key signs RS512');
    ok(!jwt_verify_with_openssl($token, $rsa), 'not valid as RS256');
};


subtest 'ES256: many signatures, DER conversion edge cases' => sub {
    my $k = key('ES256');
    my ($n, $bad, $high, $short) = (0, 0, 0, 0);

    my $mint = sub {
        my $token = jwt_token(alg => 'ES256', key => $k, claims => { n => $n++ });
        my $sig = b64url_decode(parts($token)->[2]);
        my ($h, $s) = (0, 0);

        for my $int (substr($sig, 0, 32), substr($sig, 32)) {
            $h++ if ord($int) & 0x80;     # DER had a leading 0x00
            $s++ if ord($int) == 0;       # DER was shorter than 32 bytes
        }

        return ($token, $sig, $h, $s);
    };

    for (1 .. 100) {
        my ($token, $sig, $h, $s) = $mint->();

        $high += $h;
        $short += $s;
        $bad++ unless length $sig == 64 && jwt_verify_with_openssl($token, $k);
    }

    is($bad, 0, '100 tokens, all 64-byte signatures that verify');
    ok($high, "$high components had the high bit set");

    # a component shorter than 32 bytes comes about once in 128 signatures:
    # sign more (bounded) until one does, and verify that one
    my $extra = 0;

    while (!$short && $extra++ < 600) {
        my ($token, $sig, $h, $s) = $mint->();
        next unless $s;

        $short += $s;
        $bad++ unless length $sig == 64 && jwt_verify_with_openssl($token, $k);
    }

    SKIP: {
        skip "no short component in $n signatures (p < 1%)", 2 unless $short;
        ok($short, "a component shorter than 32 bytes came up ($n signatures)");
        is($bad, 0, 'and that token verifies');
    }
};


subtest 'DER <-> r||s conversion on crafted values' => sub {
    my $d2j = \&Tailgate::JWT::_der_to_jose;
    my $j2d = \&Tailgate::JWT::_jose_to_der;

    my $r = "\x7f" . ("\x11" x 31);
    my $s = "\x80" . ("\x22" x 31);
    my $der = "\x30\x45" . "\x02\x20$r" . "\x02\x21\x00$s";

    is($d2j->($der, 32), "$r$s", 'high bit: the 0x00 is stripped');
    is($j2d->("$r$s"), $der, 'and put back');

    my $short_r = "\x00\x00\x05" . ("\x33" x 29);
    my $der2 = "\x30\x43" . "\x02\x1e\x05" . ("\x33" x 29) . "\x02\x21\x00$s";

    is($d2j->($der2, 32), "$short_r$s", 'a short r is left-padded');
    is($j2d->("$short_r$s"), $der2, 'and shortened again');

    my $zero = "\x30\x06\x02\x01\x00\x02\x01\x00";
    is($d2j->($zero, 32), "\x00" x 64, 'zeros');
    is($j2d->("\x00" x 64), $zero, 'zeros back');

    # P-521: the SEQUENCE length needs the long form
    my $r66 = "\x01" . ("\xff" x 65);
    my $der3 = "\x30\x81\x88" . ("\x02\x42$r66" x 2);
    is($d2j->($der3, 66), $r66 x 2, 'P-521 with a long-form length');
    is($j2d->($r66 x 2), $der3, 'and back');

    for my $case (['', 'empty'], ["\x31\x06\x02\x01\x01\x02\x01\x01", 'not a SEQUENCE'],
                  ["\x30\x06\x02\x01\x01\x02\x01", 'truncated'],
                  ["\x30\x06\x02\x01\x01\x04\x01\x01", 's not an INTEGER'],
                  ["\x30\x07\x02\x01\x01\x02\x01\x01\x00", 'trailing byte'],
                  ["\x30\x06\x02\x01\x81\x02\x01\x01", 'negative r'],
                  ["\x30\x26\x02\x21\x01" . ("\x00" x 32) . "\x02\x01\x01", 'r too long']) {
        ok(!eval { $d2j->($case->[0], 32); 1 }, "malformed DER dies: $case->[1]");
    }
};


subtest 'tokens broken on purpose' => sub {
    my $rsa = key('RS256');
    my $es = key('ES256');
    my $hs = key('HS256');
    my %claims = (claims => { sub => 'alice' });

    my $t = jwt_token(alg => 'RS256', key => $rsa, %claims, signature => '');
    like($t, qr/\A[^.]+\.[^.]+\.\z/, "signature => '': empty third part");

    $t = jwt_token(alg => 'RS256', %claims, signature => 'xyz');
    is(b64url_decode(parts($t)->[2]), 'xyz', 'signature => bytes, no key needed');

    $t = jwt_token(alg => 'none', %claims);
    is_deeply($JSON->decode(b64url_decode(parts($t)->[0])), { alg => 'none', typ => 'JWT' },
              'alg none: header');
    is(parts($t)->[2], '', 'alg none: no signature');

    $t = jwt_token(alg => 'RS256', key => $rsa, raw_payload => 'not json');
    is(b64url_decode(parts($t)->[1]), 'not json', 'raw_payload verbatim');
    ok(jwt_verify_with_openssl($t, $rsa), 'and correctly signed');

    $t = jwt_token(alg => 'RS256', key => $rsa, raw_header => '{"alg":"RS256","alg":"none"}');
    is(b64url_decode(parts($t)->[0]), '{"alg":"RS256","alg":"none"}', 'raw_header verbatim');

    $t = jwt_token(alg => 'ES256', key => $es, kid => 'k9',
                   header => { typ => undef, x5u => 'http://example.invalid/' }, %claims);
    is_deeply($JSON->decode(b64url_decode(parts($t)->[0])),
              { alg => 'ES256', kid => 'k9', x5u => 'http://example.invalid/' },
              'header: fields added, undef removes one');

    $t = jwt_token(alg => 'RS256', key => $rsa, header => { alg => 'none' }, %claims);
    is($JSON->decode(b64url_decode(parts($t)->[0]))->{alg}, 'none',
       'header => {alg}: the header says none');
    is(length b64url_decode(parts($t)->[2]), 256, 'but alg => RS256 signed it');

    $t = jwt_token(alg => 'HS256', key => $hs, claims => [1, 'two']);
    is(b64url_decode(parts($t)->[1]), '[1,"two"]', 'a payload that is not an object');

    $t = jwt_token(header => { alg => 'HS256', typ => 'at+jwt' }, key => $hs, %claims);
    ok(jwt_verify_with_openssl($t, $hs), 'header alone gives the alg to sign with');

    # the RS/HS confusion: HS256 keyed with the RSA public key's PEM text
    my $pem = slurp($rsa->{public_pem});
    $t = jwt_token(alg => 'HS256', hmac_secret => $pem, %claims);
    my $p = parts($t);
    is(b64url_decode($p->[2]), hmac_sha256("$p->[0].$p->[1]", $pem),
       'HS256 keyed with the public key PEM');
    ok(!jwt_verify_with_openssl($t, $rsa), 'not a valid RS256 token');

    $t = jwt_token(alg => 'RS256', sign_as => 'HS256', key => $hs, %claims);
    is($JSON->decode(b64url_decode(parts($t)->[0]))->{alg}, 'RS256', 'sign_as: header says RS256');
    $p = parts($t);
    is(b64url_decode($p->[2]), hmac_sha256("$p->[0].$p->[1]", $hs->{secret_bytes}),
       'sign_as: signed with HMAC-SHA256 and the HS key');

    $t = jwt_token(alg => 'ES384', key => $es, %claims);
    is(length b64url_decode(parts($t)->[2]), 64, 'ES384 with a P-256 key: 64 bytes');
    ok(!jwt_verify_with_openssl($t, key('ES384')), 'not valid with a P-384 key');

    ok(!eval { jwt_token(alg => 'RS256', key => $hs, %claims); 1 },
       'RS256 with an HS key dies');
    ok(!eval { jwt_token(alg => 'ES256', key => $rsa, %claims); 1 },
       'ES256 with an RSA key dies');
    ok(!eval { jwt_token(alg => 'HS256', key => $rsa, %claims); 1 },
       'HS256 with an RSA key and no hmac_secret dies');
    ok(!eval { jwt_token(alg => 'RS256', key => $rsa, claim => {}); 1 },
       'an unknown option dies');
    ok(!eval { jwt_token(claims => {}); 1 }, 'no alg and no header dies');
};


# RFC 7638, 3.1: the thumbprint of its example RSA key
subtest 'jwk_thumbprint and dpop_proof (DPoP, RFC 9449)' => sub {
    my $n = '0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1'
          . 'RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9'
          . 'yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZg'
          . 'nYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6We'
          . 'Zu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw';
    is(jwk_thumbprint({ kty => 'RSA', e => 'AQAB', n => $n, alg => 'RS256',
                        kid => '2011-04-29' }),
       'NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs',
       'the RFC 7638 example, other members ignored');

    my %ec = (kty => 'EC', crv => 'P-256', x => 'eA', y => 'eQ');
    is(jwk_thumbprint(\%ec),
       b64url(Digest::SHA::sha256('{"crv":"P-256","kty":"EC","x":"eA","y":"eQ"}')),
       'EC: crv, kty, x, y in that order');

    my $es = key('ES256');
    my $jwk = { %ec, x => 'not-checked-here' };
    my $proof = dpop_proof(key => $es, jwk => $jwk, htu => 'https://gw/v1/x',
                           token => 'the-token', iat => 1700000000);
    my $p = parts($proof);
    my $h = $JSON->decode(b64url_decode($p->[0]));
    my $c = $JSON->decode(b64url_decode($p->[1]));

    is_deeply($h, { typ => 'dpop+jwt', alg => 'ES256', jwk => $jwk },
              'the header: typ, alg, jwk');
    is($c->{htm}, 'POST', 'htm POST by default');
    is($c->{htu}, 'https://gw/v1/x', 'htu');
    is($c->{iat}, 1700000000, 'iat');
    is($c->{ath}, b64url(Digest::SHA::sha256('the-token')), 'ath of the token');
    like($c->{jti}, qr/^[A-Za-z0-9_-]{24}$/, 'a random jti');
    isnt(parts(dpop_proof(key => $es, jwk => $jwk, htu => 'x'))->[1], $p->[1],
         'another jti each time');
    ok(jwt_verify_with_openssl($proof, $es), 'signed with the key')
        or diag($Tailgate::JWT::ERROR);

    $p = parts(dpop_proof(key => $es, jwk => $jwk, htu => 'x', alg => 'HS256',
                          header => { typ => undef }, claims => { ath => 1 }));
    $h = $JSON->decode(b64url_decode($p->[0]));
    ok(!exists $h->{typ} && $h->{alg} eq 'HS256', 'members removed and replaced');
    is(length b64url_decode($p->[2]), 64, 'still signed as the key\'s ES256');
};


my $elapsed = time - $START;
cmp_ok($elapsed, '<', 30, sprintf('ran in %.1f s', $elapsed));

done_testing;
