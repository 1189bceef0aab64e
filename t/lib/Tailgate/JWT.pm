package Tailgate::JWT;

# JSON Web Tokens for tests: keys made with the openssl command-line tool,
# tokens signed with it (RS*, ES*) or with Digest::SHA (HS*), and any part
# of a token replaceable to build broken ones.  Core modules and `openssl`
# only.  POD at the end.

use strict;
use warnings;

use Exporter qw(import);
use Carp qw(croak);
use File::Temp ();
use File::Spec;
use Digest::SHA qw(sha256 hmac_sha256 hmac_sha384 hmac_sha512);
use MIME::Base64 qw(encode_base64 decode_base64);
use JSON::PP ();
use POSIX ();

our $VERSION = '0.1';

our @EXPORT_OK = qw(jwt_keypair jwt_token jwt_verify_with_openssl
                    b64url b64url_decode jwk_thumbprint dpop_proof);
our %EXPORT_TAGS = (all => \@EXPORT_OK);

our $OPENSSL = $ENV{TAILGATE_OPENSSL} // 'openssl';
our $ERROR;         # why the last jwt_verify_with_openssl returned 0

my $JSON = JSON::PP->new->canonical->utf8->allow_nonref;

# alg => [family, hash, curve, bytes of r and of s]
my %ALG = (
    HS256 => ['HS', 'sha256'],
    HS384 => ['HS', 'sha384'],
    HS512 => ['HS', 'sha512'],
    RS256 => ['RS', 'sha256'],
    RS384 => ['RS', 'sha384'],
    RS512 => ['RS', 'sha512'],
    ES256 => ['ES', 'sha256', 'P-256', 32],
    ES384 => ['ES', 'sha384', 'P-384', 48],
    ES512 => ['ES', 'sha512', 'P-521', 66],
);

my %CURVE_SIZE = ('P-256' => 32, 'P-384' => 48, 'P-521' => 66);

my %HMAC = (sha256 => \&hmac_sha256, sha384 => \&hmac_sha384,
            sha512 => \&hmac_sha512);

my %TOKEN_OPT = map { $_ => 1 } qw(alg key claims header kid sign_as
    hmac_secret raw_payload raw_header signature);


# base64url without padding

sub b64url {
    my ($bytes) = @_;

    my $s = encode_base64($bytes, '');
    $s =~ tr{+/}{-_};
    $s =~ s/=+\z//;

    return $s;
}

# undef unless $text is base64url (padding tolerated, nothing else)

sub b64url_decode {
    my ($text) = @_;

    return undef unless defined $text;

    (my $s = $text) =~ s/=+\z//;
    return undef if $s =~ /[^A-Za-z0-9_-]/ || length($s) % 4 == 1;

    $s =~ tr{-_}{+/};
    $s .= '=' x ((4 - length($s) % 4) % 4);

    return decode_base64($s);
}


# keys

sub jwt_keypair {
    my ($dir, $alg) = @_;

    croak "jwt_keypair: no such directory '" . ($dir // 'undef') . "'"
        unless defined $dir && -d $dir;
    croak "jwt_keypair: unknown alg '" . ($alg // 'undef') . "'"
        unless defined $alg && $ALG{$alg};

    $dir = File::Spec->rel2abs($dir);
    my ($family, undef, $curve) = @{ $ALG{$alg} };

    if ($family eq 'HS') {
        my ($fh, $path) = File::Temp::tempfile("jwt-\L$alg\E-XXXXXXXX",
            DIR => $dir, SUFFIX => '.secret', UNLINK => 0);
        my $secret = b64url(_random_bytes(48));

        print {$fh} $secret or croak "jwt_keypair: write $path: $!";
        close $fh or croak "jwt_keypair: close $path: $!";

        return { alg => $alg, dir => $dir, secret => $path,
                 secret_bytes => $secret };
    }

    # the private key's name is reserved by tempfile; the others derive
    # from it, so they are unique as well
    my ($fh, $private) = File::Temp::tempfile("jwt-\L$alg\E-XXXXXXXX",
        DIR => $dir, SUFFIX => '.key.pem', UNLINK => 0);
    close $fh;
    (my $base = $private) =~ s/\.key\.pem\z//;
    my $public = "$base.pub.pem";
    my $cert = "$base.cert.pem";

    _openssl('genpkey', ($family eq 'RS'
                 ? ('-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048')
                 : ('-algorithm', 'EC', '-pkeyopt', "ec_paramgen_curve:$curve",
                    '-pkeyopt', 'ec_param_enc:named_curve')),
             '-out', $private);
    _openssl('pkey', '-in', $private, '-pubout', '-out', $public);
    _openssl('req', '-new', '-x509', '-config', '/dev/null',
             '-key', $private, '-subj', "/CN=tailgate-test-$alg",
             '-days', '3650', '-sha256', '-out', $cert);

    chmod 0644, $public, $cert;

    my $kp = { alg => $alg, dir => $dir, private_pem => $private,
               public_pem => $public, cert_pem => $cert };
    $kp->{curve} = $curve if $curve;

    return $kp;
}


# tokens

sub jwt_token {
    my (%o) = @_;

    for (sort keys %o) {
        croak "jwt_token: unknown option '$_'" unless $TOKEN_OPT{$_};
    }

    croak "jwt_token: 'header' must be a hash reference"
        if defined $o{header} && ref $o{header} ne 'HASH';

    my $alg = $o{alg};
    $alg = $o{header}{alg} if !defined $alg && $o{header};
    croak "jwt_token: 'alg' is required unless 'header' gives one"
        unless defined $alg || $o{header};

    my $header_json;

    if (defined $o{raw_header}) {
        $header_json = $o{raw_header};
    } else {
        my %h = (typ => 'JWT');
        $h{alg} = $o{alg} if defined $o{alg};
        $h{kid} = $o{kid} if defined $o{kid};

        if ($o{header}) {
            while (my ($k, $v) = each %{ $o{header} }) {
                if (defined $v) { $h{$k} = $v } else { delete $h{$k} }
            }
        }

        $header_json = $JSON->encode(\%h);
    }

    my $payload_json = defined $o{raw_payload} ? $o{raw_payload}
                     : $JSON->encode($o{claims} // {});

    my $input = b64url($header_json) . '.' . b64url($payload_json);

    my $sig = $o{signature};

    unless (defined $sig) {
        my $sign_as = $o{sign_as} // $alg;
        $sig = _sign($sign_as, $input, $o{key}, $o{hmac_secret});
    }

    return "$input." . b64url($sig);
}

sub _sign {
    my ($alg, $input, $key, $hmac_secret) = @_;

    return '' if !defined $alg || $alg eq 'none';

    my $spec = $ALG{$alg} or croak "jwt_token: cannot sign as '$alg'";
    my ($family, $hash) = @$spec;

    croak "jwt_token: 'key' must be a hash from jwt_keypair"
        if defined $key && ref $key ne 'HASH';

    if ($family eq 'HS') {
        my $secret = $hmac_secret // ($key ? $key->{secret_bytes} : undef);
        croak "jwt_token: $alg needs 'hmac_secret' or an HS key"
            unless defined $secret;

        return $HMAC{$hash}->($input, $secret);
    }

    croak "jwt_token: $alg needs a 'key' from jwt_keypair" unless $key;

    my $key_alg = $key->{alg} // '?';
    croak "jwt_token: cannot sign $alg with a $key_alg key"
        unless $ALG{$key_alg} && $ALG{$key_alg}[0] eq $family
               && $key->{private_pem};

    my $in = _temp($key, $input);
    my $out = _temp($key, '');

    _openssl('dgst', "-$hash", '-sign', $key->{private_pem},
             '-out', $out->filename, $in->filename);

    my $sig = _slurp($out->filename);

    return $sig if $family eq 'RS';

    # the curve, not the alg, sets the size: ES384 signed with a P-256 key
    # gives 64 bytes, as a confused signer would
    return _der_to_jose($sig, $CURVE_SIZE{ $key->{curve} });
}


# verification, independent of jwt_token: openssl for RS and ES, and for
# HS too (openssl dgst -mac HMAC), so a token made by jwt_token is checked
# by other code than the one that made it

sub jwt_verify_with_openssl {
    my ($token, $key) = @_;

    $ERROR = undef;

    croak "jwt_verify_with_openssl: 'key' must be a hash from jwt_keypair"
        unless ref $key eq 'HASH' && $key->{alg} && $ALG{ $key->{alg} };

    my $alg = $key->{alg};
    my ($family, $hash) = @{ $ALG{$alg} };

    my @parts = split /\./, $token // '', -1;
    return _fail('not three dot-separated parts') unless @parts == 3;

    my $header_json = b64url_decode($parts[0]);
    return _fail('header is not base64url') unless defined $header_json;

    my $header = eval { $JSON->decode($header_json) };
    return _fail('header is not JSON') unless ref $header eq 'HASH';
    return _fail("header alg is not $alg")
        unless defined $header->{alg} && $header->{alg} eq $alg;

    return _fail('payload is not base64url')
        unless defined b64url_decode($parts[1]);

    my $sig = b64url_decode($parts[2]);
    return _fail('signature is not base64url') unless defined $sig;
    return _fail('no signature') unless length $sig;

    my $input = "$parts[0].$parts[1]";
    my $in = _temp($key, $input);

    if ($family eq 'HS') {
        my $out = _temp($key, '');

        _openssl('dgst', "-$hash", '-mac', 'HMAC', '-macopt',
                 'hexkey:' . unpack('H*', $key->{secret_bytes}),
                 '-binary', '-out', $out->filename, $in->filename);

        return _fail('HMAC differs') unless _slurp($out->filename) eq $sig;
        return 1;
    }

    if ($family eq 'ES') {
        my $size = $CURVE_SIZE{ $key->{curve} };
        return _fail('signature is not ' . 2 * $size . ' bytes')
            unless length $sig == 2 * $size;
        $sig = _jose_to_der($sig);
    }

    my $sigf = _temp($key, $sig);
    my ($status, $out) = _run($OPENSSL, 'dgst', "-$hash", '-verify',
        $key->{public_pem}, '-signature', $sigf->filename, $in->filename);

    return 1 if $status == 0 && $out =~ /Verified OK/;
    return _fail('openssl: ' . join(' ', split /\s*\n\s*/, $out));
}

sub _fail { $ERROR = $_[0]; return 0 }


# ECDSA signatures: DER (what openssl writes) <-> JWS r||s (RFC 7518 3.4)

# DER: SEQUENCE { INTEGER r, INTEGER s }.  Each INTEGER is big-endian two's
# complement, minimal: a 0x00 is prepended when the high bit is set, and a
# value with leading zero bytes is shorter than the curve size.
sub _der_to_jose {
    my ($der, $size) = @_;

    my $pos = 0;
    my ($tag, $len);

    my $read_tl = sub {
        croak 'ECDSA DER: truncated' if $pos + 2 > length $der;

        my $t = ord substr($der, $pos++, 1);
        my $l = ord substr($der, $pos++, 1);

        if ($l & 0x80) {
            my $n = $l & 0x7f;
            croak 'ECDSA DER: bad length' if $n == 0 || $n > 2
                                           || $pos + $n > length $der;
            $l = 0;
            $l = ($l << 8) | ord substr($der, $pos++, 1) for 1 .. $n;
        }

        croak 'ECDSA DER: truncated' if $pos + $l > length $der;

        return ($t, $l);
    };

    ($tag, $len) = $read_tl->();
    croak 'ECDSA DER: not a SEQUENCE' unless $tag == 0x30;
    croak 'ECDSA DER: bytes after the SEQUENCE' if $pos + $len != length $der;

    my $out = '';

    for my $name ('r', 's') {
        ($tag, $len) = $read_tl->();
        croak "ECDSA DER: $name is not an INTEGER" unless $tag == 0x02;
        croak "ECDSA DER: $name is empty" unless $len;

        my $int = substr($der, $pos, $len);
        $pos += $len;

        croak "ECDSA DER: $name is negative" if ord($int) & 0x80;
        $int =~ s/\A\x00+//;
        croak "ECDSA DER: $name is longer than $size bytes"
            if length $int > $size;

        $out .= ("\x00" x ($size - length $int)) . $int;
    }

    croak 'ECDSA DER: bytes after s' if $pos != length $der;

    return $out;
}

sub _jose_to_der {
    my ($rs) = @_;

    my $half = length($rs) / 2;
    croak 'ECDSA r||s: odd length' if !$half || $half != int $half;

    my $body = '';

    for my $part (substr($rs, 0, $half), substr($rs, $half)) {
        (my $int = $part) =~ s/\A\x00+//;
        $int = "\x00$int" if $int eq '' || ord($int) & 0x80;
        $body .= "\x02" . _der_len(length $int) . $int;
    }

    return "\x30" . _der_len(length $body) . $body;
}

sub _der_len {
    my ($n) = @_;

    return chr $n if $n < 0x80;
    return "\x81" . chr $n if $n < 0x100;
    return "\x82" . pack('n', $n);
}


# DPoP (RFC 9449)

# RFC 7638: base64url SHA-256 of the key's required members, sorted, no
# whitespace
sub jwk_thumbprint {
    my ($jwk) = @_;

    my @members = $jwk->{kty} eq 'EC' ? qw(crv kty x y) : qw(e kty n);
    my $json = '{' . join(',', map { qq{"$_":"$jwk->{$_}"} } @members) . '}';

    return b64url(sha256($json));
}

my %PROOF_OPT = map { $_ => 1 } qw(key jwk alg htm htu iat jti token
    header claims raw_header raw_payload signature sign_as hmac_secret);

sub dpop_proof {
    my (%o) = @_;

    for (sort keys %o) {
        croak "dpop_proof: unknown option '$_'" unless $PROOF_OPT{$_};
    }
    croak "dpop_proof: 'key' and 'jwk' are required"
        unless $o{key} && $o{jwk};

    my %header = (typ => 'dpop+jwt', alg => $o{alg} // $o{key}{alg},
                  jwk => $o{jwk}, %{ $o{header} // {} });
    my %claims = (jti => b64url(_random_bytes(18)), htm => $o{htm} // 'POST',
                  htu => $o{htu}, iat => $o{iat} // time,
                  (defined $o{token}
                   ? (ath => b64url(sha256($o{token}))) : ()),
                  %{ $o{claims} // {} });

    for my $h (\%header, \%claims) {
        delete $h->{$_} for grep { !defined $h->{$_} } keys %$h;
    }

    # what the header says is not always what it is signed with
    return jwt_token(header => { %header, map { $_ => $header{$_} }
                                              qw(typ alg) },
                     key => $o{key}, claims => \%claims,
                     sign_as => $o{sign_as} // $o{key}{alg},
                     map { defined $o{$_} ? ($_ => $o{$_}) : () }
                         qw(raw_header raw_payload signature hmac_secret));
}


# helpers

sub _random_bytes {
    my ($n) = @_;

    open my $fh, '<:raw', '/dev/urandom' or croak "/dev/urandom: $!";
    my $buf = '';

    while (length $buf < $n) {
        my $got = sysread $fh, $buf, $n - length $buf, length $buf;
        croak "/dev/urandom: " . (defined $got ? 'eof' : $!) unless $got;
    }

    return $buf;
}

# a temp file with $bytes under the key's dir, removed when it goes away
sub _temp {
    my ($key, $bytes) = @_;

    my $tmp = File::Temp->new(TEMPLATE => 'jwt-tmp-XXXXXXXX',
                              DIR => $key->{dir} // File::Spec->tmpdir);
    binmode $tmp;
    print {$tmp} $bytes or croak "write $tmp: $!";
    close $tmp or croak "close $tmp: $!";

    return $tmp;
}

sub _slurp {
    my ($path) = @_;

    open my $fh, '<:raw', $path or croak "$path: $!";
    local $/;
    my $s = <$fh>;

    return $s // '';
}

# runs a command with stdin from /dev/null; returns (exit status, its
# stdout and stderr together)
sub _run {
    my (@cmd) = @_;

    pipe my $r, my $w or croak "pipe: $!";

    my $pid = fork;
    croak "fork: $!" unless defined $pid;

    if ($pid == 0) {
        close $r;
        open STDIN, '<', '/dev/null';
        open STDOUT, '>&', $w;
        open STDERR, '>&', $w;
        { no warnings 'exec'; exec { $cmd[0] } @cmd }
        print STDERR "exec $cmd[0]: $!\n";
        POSIX::_exit(127);
    }

    close $w;
    local $/;
    my $out = <$r> // '';
    close $r;
    waitpid $pid, 0;

    return ($? == 0 ? 0 : ($? >> 8 || 128 + ($? & 127)), $out);
}

sub _openssl {
    my (@args) = @_;

    my ($status, $out) = _run($OPENSSL, @args);
    croak "$OPENSSL @args: exit $status\n$out" if $status;

    return $out;
}

1;

__END__

=head1 NAME

Tailgate::JWT - test keys and JSON Web Tokens, good and broken

=head1 SYNOPSIS

    use lib 't/lib';
    use Tailgate::JWT qw(jwt_keypair jwt_token b64url);

    my $rsa = jwt_keypair($t->dir, 'RS256');
    # $rsa->{public_pem} or $rsa->{cert_pem} go into nginx's configuration

    my $token = jwt_token(alg => 'RS256', key => $rsa, kid => 'k1',
                          claims => { sub => 'alice', exp => time + 60 });
    $t->post_json('/v1/chat/completions', $token, { model => 'qwen' });

    # broken on purpose
    my $hs = jwt_keypair($t->dir, 'HS256');
    jwt_token(alg => 'HS256', key => $hs, claims => {...},
              signature => '');                          # no signature
    jwt_token(alg => 'none', claims => {...});           # alg none
    jwt_token(alg => 'RS256', key => $hs, sign_as => 'HS256',
              claims => {...});                          # claims RS, is HS
    jwt_token(alg => 'HS256', hmac_secret => $public_pem_text,
              claims => {...});                          # key confusion
    jwt_token(alg => 'RS256', key => $rsa, raw_payload => 'not json');

=head1 DESCRIPTION

Keys are made with the C<openssl> command-line tool (OpenSSL 3; override
the program with C<$Tailgate::JWT::OPENSSL> or the C<TAILGATE_OPENSSL>
environment variable).  Tokens are the compact JWS serialization:
C<b64url(header) . b64url(payload) . b64url(signature)>, base64url without
padding.  HS* signatures are computed with L<Digest::SHA>; RS* with
C<openssl dgst -shaN -sign> (RSASSA-PKCS1-v1_5); ES* with the same command,
whose DER ECDSA signature is converted to the JWS form C<r || s>, each
left-padded to the curve's size (RFC 7518 section 3.4).

Every openssl input and output goes through a temp file in the key pair's
directory, removed once used.  Errors (bad arguments, openssl failing) die
with the command and its output.

Key generation costs a few tens of milliseconds for RSA; signing or
verifying forks openssl (a few ms).  Make key pairs once per test file and
reuse them.

=head1 FUNCTIONS

Nothing is exported by default; ask for any of them, or C<:all>.

=over 4

=item jwt_keypair($dir, $alg)

Makes a new key for C<$alg> in the existing directory C<$dir>, under file
names nobody else has (C<jwt-E<lt>algE<gt>-XXXXXXXX.*>), and returns a hash
reference.  All paths are absolute.

For C<RS256>, C<RS384>, C<RS512> (an RSA 2048-bit key) and C<ES256>
(P-256), C<ES384> (P-384), C<ES512> (P-521):

    { alg         => 'ES256',
      dir         => $dir,
      private_pem => '.../jwt-es256-XXXXXXXX.key.pem',  # PKCS#8, mode 0600
      public_pem  => '.../jwt-es256-XXXXXXXX.pub.pem',  # SubjectPublicKeyInfo
      cert_pem    => '.../jwt-es256-XXXXXXXX.cert.pem', # self-signed X.509
      curve       => 'P-256' }                          # EC keys only

C<cert_pem> is a self-signed certificate (C<CN=tailgate-test-ALG>, valid
3650 days) holding the same public key, for checking that a certificate is
accepted where a public key is.  The key is not tied to the hash: an RSA key
made for C<RS256> signs C<RS512> tokens just as well.

For C<HS256>, C<HS384>, C<HS512>:

    { alg          => 'HS256',
      dir          => $dir,
      secret       => '.../jwt-hs256-XXXXXXXX.secret',  # mode 0600
      secret_bytes => 'Vq3...' }

C<secret_bytes> is the HMAC key: 64 printable characters, the base64url
text of 48 random bytes.  The file C<secret> holds exactly these bytes, no
newline.

=item jwt_token(%opt)

Returns the compact token.  Options (any other dies):

=over 4

=item alg

The header's C<alg>, and the algorithm used to sign unless C<sign_as> says
otherwise.  Required unless C<header> is given (then the header's C<alg>, if
any, is used to sign).  C<'none'> signs with nothing (an empty third part).
Any string may be given, e.g. C<'RS1'>, as long as C<sign_as> or
C<signature> says how to sign.

=item key

A hash from C<jwt_keypair>: the private key (RS*, ES*) or secret (HS*)
to sign with.  Signing RS* needs an RSA key, ES* an EC key; an ES
signature's size follows the key's curve, not the alg, so C<sign_as =E<gt>
'ES384'> with a P-256 key gives a 64-byte signature over a SHA-384 hash.

=item claims

The payload, encoded with JSON::PP (canonical: keys sorted; UTF-8).
Default C<{}>.  Any JSON value is accepted (C<[1]> for a payload that is
not an object).  Strings are Perl character strings (encoded to UTF-8 here;
pass decoded text, not UTF-8 bytes).  Numbers stay numbers only if Perl
still sees them as numbers (C<time + 60>, not C<"$exp">).

=item header

A hash merged over the default header C<{alg =E<gt> $alg, typ =E<gt> 'JWT'}>
(plus C<kid> when given): it adds or overrides fields, and a field whose
value is C<undef> is removed (C<header =E<gt> {typ =E<gt> undef}>).  An
C<alg> here changes only what the header says; C<alg> (or C<sign_as>) still
decides the signature, so C<alg =E<gt> 'RS256', key =E<gt> $rsa, header
=E<gt> {alg =E<gt> 'none'}> is an RS256 signature under an "alg": "none"
header.

=item kid

Adds C<kid> to the header.

=item sign_as

The algorithm that actually computes the signature (default C<alg>, or
C<none>).  C<alg =E<gt> 'RS256', sign_as =E<gt> 'HS256', hmac_secret =E<gt>
...> makes a token that claims one algorithm and uses another.

=item hmac_secret

The HMAC key (raw bytes) for HS* signing, overriding the key's.  With the
contents of C<public_pem> this builds the classic RS/HS confusion token.

=item raw_header, raw_payload

Strings used verbatim as the header or payload JSON (before base64url), e.g.
C<'not json'>, C<'[]'>, or JSON with a duplicate key.  C<raw_header>
makes C<header> and C<kid> ignored; C<alg> still chooses the signature.

=item signature

The signature bytes to use instead of signing (C<''> for an empty third
part).  No key is needed then.

=back

=item jwt_verify_with_openssl($token, $key)

For self-tests: checks C<$token> against the key pair C<$key>
independently of C<jwt_token> - C<openssl dgst -verify> with the public
key for RS* and ES* (the ES signature is converted from C<r || s> back to
DER, and must be exactly twice the curve size), and C<openssl dgst -mac
HMAC> for HS*.  The header must be JSON with C<alg> equal to the key's.
Returns 1 if the token is valid, else 0 with the reason in
C<$Tailgate::JWT::ERROR>.  It checks no claims (C<exp> etc.).

=item jwk_thumbprint($jwk)

The RFC 7638 thumbprint of a public JWK (a hash as
C<Tailgate::JWKS::jwk_of> makes): base64url of the SHA-256 of its
required members (C<e kty n>, or C<crv kty x y>) in that order, without
whitespace.  What a token's C<cnf.jkt> holds.

=item dpop_proof(%options)

A DPoP proof (RFC 9449): a JWT with the header C<typ> C<dpop+jwt>, C<alg>
(the key's unless given) and C<jwk>, and the claims C<jti> (random),
C<htm> (C<POST> unless given), C<htu>, C<iat> (now unless given) and,
with C<token>, C<ath> (base64url SHA-256 of it), signed with C<key>
(from C<jwt_keypair>).  C<header> and C<claims> add or replace members
(an undef value removes one); it is signed as the key's algorithm
whatever the header says, unless C<sign_as> (and C<hmac_secret>) say
otherwise; C<raw_header>, C<raw_payload> and C<signature> are passed to
C<jwt_token>.
C<jwk> is required (C<Tailgate::JWKS::jwk_of($key)>, or any hash).

=item b64url($bytes)

Base64url without padding.

=item b64url_decode($text)

The bytes, or C<undef> when C<$text> is not base64url (trailing C<=>
padding is tolerated).

=back

=head1 SEE ALSO

RFC 7515 (JWS), RFC 7518 (JWA), RFC 7519 (JWT); F<t/91-jwt-helper.t>.

=cut
