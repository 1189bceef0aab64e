package Tailgate::JWKS;

# A mock identity provider (t/lib/mock_jwks.pl) for a test, and the JWKs of
# test key pairs; see the POD at the end.

use strict;
use warnings;

use Exporter 'import';
use Fcntl qw(:flock);
use JSON::PP ();
use Scalar::Util qw(weaken);
use Tailgate::JWT qw(b64url);

our @EXPORT_OK = qw(jwks_server jwk_of jwks_doc);

my $JSON = JSON::PP->new->canonical->utf8;


sub jwks_server {
    my ($t, $name) = @_;

    die "jwks_server: bad name '$name'\n" unless $name =~ /^[\w.-]+$/;

    my $self = bless {
        t    => $t,
        name => $name,
        port => $t->port("jwks:$name"),
        proc => "jwks:$name",
        control => { paths => {}, mode => 'ok' },
    }, __PACKAGE__;

    weaken($self->{t});

    $self->_write;
    $self->start;

    return $self;
}

sub port { $_[0]{port} }
sub url  { "http://127.0.0.1:$_[0]{port}" . ($_[1] // '') }
sub _file { $_[0]{t}->dir . "/$_[0]{name}.$_[1]" }


sub start {
    my ($self) = @_;
    my $t = $self->{t};

    unlink $self->_file('ready');

    my $pid = $t->spawn($self->{proc},
        [ $^X, $t->root . '/t/lib/mock_jwks.pl', '--port', $self->{port},
          '--name', $self->{name}, '--dir', $t->dir ],
        log => "$self->{name}.jwks.log");

    my $ok = $t->wait_for(sub {
        return -1 unless $t->running($self->{proc});
        my ($p) = $t->read_file($self->_file('ready')) =~ /^(\d+) /;
        return $p && $p == $pid ? 1 : 0;
    }, timeout => 10);

    die "mock JWKS server $self->{name} did not start:\n"
        . $t->read_file("$self->{name}.jwks.log") unless $ok && $ok > 0;

    return $self;
}

sub stop {
    my ($self) = @_;
    $self->{t}->stop_proc($self->{proc}, group => 1) if $self->{t};
}


# serve($path, body => $text_or_ref, etag => ..., cache_control => ...,
# status => ..., expires => ..., headers => {...}, delay_ms => ...):
# a ref body is encoded as JSON

sub serve {
    my ($self, $path, %answer) = @_;

    $answer{body} = $JSON->encode($answer{body}) if ref $answer{body};
    $self->{control}{paths}{$path} = \%answer;
    $self->_write;

    return $self;
}

sub mode {
    my ($self, $mode) = @_;
    $self->{control}{mode} = $mode;
    $self->_write;
    return $self;
}

sub _write {
    my ($self) = @_;
    $self->{t}->write_file($self->_file('control.json'),
                           $JSON->encode($self->{control}));
}


# requests($path): every request it got (for $path only, when given),
# oldest first: { ts, method, path, headers, answered }

sub requests {
    my ($self, $path) = @_;

    open my $fh, '<:raw', $self->_file('requests.jsonl') or return [];
    flock($fh, LOCK_SH);
    my @all = map { eval { $JSON->decode($_) } // () } <$fh>;
    close $fh;

    return [ grep { !defined $path || $_->{path} eq $path } @all ];
}


# the public JWK of a key pair of Tailgate::JWT::jwt_keypair, with more
# members (kid, alg, use, ...) from %extra; an undef value removes one

sub jwk_of {
    my ($key, %extra) = @_;

    my $openssl = $Tailgate::JWT::OPENSSL;
    my $text = `$openssl pkey -pubin -in '$key->{public_pem}' -text -noout 2>&1`;
    die "openssl pkey: $text" if $?;

    my %jwk;

    if ($key->{alg} =~ /^RS/) {
        my ($hex) = $text =~ /Modulus:\s*\n((?:\s+[0-9a-f:]+\n)+)/
            or die "no modulus in: $text";
        my ($e) = $text =~ /Exponent: (\d+)/ or die "no exponent in: $text";

        $hex =~ s/[\s:]//g;
        $hex =~ s/^(00)+//;

        my $ebytes = '';
        while ($e > 0) {
            $ebytes = chr($e & 0xff) . $ebytes;
            $e >>= 8;
        }

        %jwk = (kty => 'RSA', n => b64url(pack 'H*', $hex),
                e => b64url($ebytes));
    } else {
        my ($hex) = $text =~ /pub:\s*\n((?:\s+[0-9a-f:]+\n)+)/
            or die "no point in: $text";
        $hex =~ s/[\s:]//g;

        my $point = pack 'H*', $hex;
        die "not an uncompressed point" unless substr($point, 0, 1) eq "\x04";

        my $size = (length($point) - 1) / 2;

        %jwk = (kty => 'EC', crv => $key->{curve},
                x => b64url(substr($point, 1, $size)),
                y => b64url(substr($point, 1 + $size, $size)));
    }

    for my $k (keys %extra) {
        if (defined $extra{$k}) {
            $jwk{$k} = $extra{$k};
        } else {
            delete $jwk{$k};
        }
    }

    return \%jwk;
}


# { keys => [ @jwks ] }
sub jwks_doc { return { keys => [ @_ ] } }


1;

__END__

=head1 NAME

Tailgate::JWKS - a mock identity provider serving key sets, and JWKs

=head1 SYNOPSIS

    use Tailgate::JWT qw(jwt_keypair jwt_token);
    use Tailgate::JWKS qw(jwks_server jwk_of jwks_doc);

    my $rsa = jwt_keypair($t->dir, 'RS256');
    my $idp = jwks_server($t, 'idp');

    $idp->serve('/jwks.json', body => jwks_doc(jwk_of($rsa, kid => 'a')),
                etag => '"v1"', cache_control => 'max-age=60');
    $idp->serve('/.well-known/openid-configuration',
                body => { issuer => $idp->url,
                          jwks_uri => $idp->url('/jwks.json') });

    my $n = @{ $idp->requests('/jwks.json') };
    $idp->mode('reset');         # every connection closed, unanswered
    $idp->stop; $idp->start;     # down, and back on the same port

=head1 DESCRIPTION

C<jwks_server($t, $name)> starts C<t/lib/mock_jwks.pl> on a port of the
test's and returns its handle.  C<serve> sets what a path answers (a
reference body is JSON-encoded; C<status>, C<etag>, C<cache_control>,
C<expires>, C<last_modified>, C<headers>, C<delay_ms>); a request whose
C<If-None-Match> is the answer's C<etag> gets 304.  Paths not served get
404.  C<requests($path)> lists what came, oldest first, with lower-case
header names and the status it was C<answered> (0: reset).

C<jwk_of($keypair, %extra)> is the public JWK of a key pair from
C<Tailgate::JWT::jwt_keypair> (C<n> and C<e>, or C<crv>, C<x> and C<y>,
read with C<openssl pkey -text>), with C<%extra> members added (an undef
value removes a member).  C<jwks_doc(@jwks)> is C<< { keys => [@jwks] } >>.

=cut
