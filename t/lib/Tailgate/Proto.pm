package Tailgate::Proto;

# The module <-> policyd wire protocol for Perl tests: build frames, read and
# decode them.  docs/protocol.md is the reference; the numbers mirror
# proto/tailgate_protocol.h (t/02-policyd-protocol.t checks
# that they agree).  Core modules only.

use strict;
use warnings;

use Exporter qw(import);
use IO::Select;
use IO::Socket::UNIX;
use Socket qw(SOCK_STREAM);
use Time::HiRes qw(time);

our $VERSION = '0.1';

use constant {
    TG_PROTO_VERSION       => 1,
    TG_FRAME_HEADER_SIZE   => 10,
    TG_FIELD_HEADER_SIZE   => 5,
    TG_MAX_FRAME_MIN       => 65536,
    TG_MAX_FRAME_LIMIT     => 4 * 1024 * 1024,

    TG_MSG_HELLO           => 1,
    TG_MSG_HELLO_OK        => 2,
    TG_MSG_DECIDE          => 3,
    TG_MSG_DECISION        => 4,
    TG_MSG_MODELS          => 5,
    TG_MSG_MODEL_LIST      => 6,
    TG_MSG_REPORT          => 7,
    TG_MSG_ERROR           => 8,
    TG_MSG_INVALIDATE      => 9,
    TG_MSG_QUEUED          => 10,
    TG_MSG_STATUS          => 11,
    TG_MSG_STATUS_REPLY    => 12,
    TG_MSG_CANCEL          => 13,
    TG_MSG_STATUS_PART     => 14,
    TG_MSG_HOLD            => 15,
    TG_MSG_JWKS_REFRESH    => 16,
    TG_MSG_JWKS_STATE      => 17,

    TG_F_MAX_FRAME         => 1,
    TG_F_PID               => 2,
    TG_F_SOFTWARE          => 3,
    TG_F_ENDPOINT          => 10,
    TG_F_MODEL             => 11,
    TG_F_CLIENT            => 12,
    TG_F_TENANT            => 13,
    TG_F_TAG               => 14,
    TG_F_ALLOW_ROUTE       => 15,
    TG_F_STREAM            => 16,
    TG_F_TOOLS             => 17,
    TG_F_BODY_BYTES        => 18,
    TG_F_ATTEMPT           => 19,
    TG_F_EXCLUDE           => 20,
    TG_F_PROMPT_ESTIMATE   => 21,
    TG_F_DRY_RUN           => 22,
    TG_F_STATUS            => 30,
    TG_F_ERROR_TYPE        => 31,
    TG_F_ERROR_CODE        => 32,
    TG_F_ERROR_MESSAGE     => 33,
    TG_F_RETRY_AFTER       => 34,
    TG_F_PROVIDER          => 35,
    TG_F_ROUTE             => 36,
    TG_F_UPSTREAM          => 37,
    TG_F_SCHEME            => 38,
    TG_F_HOST              => 39,
    TG_F_PATH              => 40,
    TG_F_PROVIDER_MODEL    => 41,
    TG_F_AUTHORIZATION     => 42,
    TG_F_LEASE             => 43,
    TG_F_REASON            => 44,
    TG_F_ZONE              => 45,
    TG_F_BODY              => 46,
    TG_F_CACHE_MS          => 47,
    TG_F_CACHE_MAX_BYTES   => 48,
    TG_F_FALLBACK          => 49,
    TG_F_ADJUST            => 57,
    TG_F_WAIT_MS           => 58,
    TG_F_FORMAT            => 59,
    TG_F_OUTCOME           => 50,
    TG_F_HTTP_STATUS       => 51,
    TG_F_UPSTREAM_MS       => 52,
    TG_F_TOTAL_MS          => 53,
    TG_F_PROMPT_TOKENS     => 54,
    TG_F_COMPLETION_TOKENS => 55,
    TG_F_COUNT             => 56,
    TG_F_REQUEST_ID        => 60,
    TG_F_CACHED_TOKENS     => 61,
    TG_F_REASONING_TOKENS  => 62,
    TG_F_ESTIMATED         => 63,
    TG_F_TTFB_MS           => 64,
    TG_F_AUDIO_MS          => 65,
    TG_F_CHARACTERS        => 66,
    TG_F_RESPONSE_MODEL    => 67,
    TG_F_TOTAL_TOKENS      => 68,
    TG_F_PRICES            => 69,
    TG_F_STREAM_USAGE      => 70,
    TG_F_LIMIT             => 71,
    TG_F_RATELIMIT         => 72,
    TG_F_COOLDOWN_MS       => 73,
    TG_F_CONNECT_MS        => 74,
    TG_F_FIRST_BYTE_MS     => 75,
    TG_F_IDLE_MS           => 76,
    TG_F_DROP_HEADERS      => 77,
    TG_F_USER_AGENT        => 78,
    TG_F_CURSOR            => 79,
    TG_F_JWKS_FILE         => 80,
    TG_F_KID               => 81,
    TG_F_REFRESH_MS        => 82,
    TG_F_NEXT              => 83,
    TG_F_TRANSLATE         => 90,

    TG_ERR_VERSION         => 1,
    TG_ERR_TOO_LARGE       => 2,
    TG_ERR_MALFORMED       => 3,
    TG_ERR_UNKNOWN_TYPE    => 4,
    TG_ERR_MISSING_FIELD   => 5,
    TG_ERR_INTERNAL        => 6,
};

# the value type of every known field
our %FIELD_TYPE = (
    1  => 'u32', 2  => 'u32', 3  => 'str',
    10 => 'str', 11 => 'str', 12 => 'str', 13 => 'str', 14 => 'str',
    15 => 'str', 16 => 'u8',  17 => 'u8',  18 => 'u32', 19 => 'u32',
    20 => 'str', 21 => 'u32', 22 => 'u8',
    30 => 'u32', 31 => 'str', 32 => 'str', 33 => 'str', 34 => 'u32',
    35 => 'str', 36 => 'str', 37 => 'str', 38 => 'str', 39 => 'str',
    40 => 'str', 41 => 'str', 42 => 'str', 43 => 'u32', 44 => 'str',
    45 => 'str', 46 => 'str', 47 => 'u32', 48 => 'u32', 49 => 'u32',
    50 => 'str', 51 => 'u32', 52 => 'u32', 53 => 'u32', 54 => 'u32',
    55 => 'u32', 56 => 'u32', 57 => 'str', 58 => 'u32', 59 => 'str',
    60 => 'str', 61 => 'u32', 62 => 'u32', 63 => 'u8',  64 => 'u32',
    65 => 'u32', 66 => 'u32', 67 => 'str', 68 => 'u32', 69 => 'str',
    70 => 'u8',  71 => 'str', 72 => 'str', 73 => 'u32', 74 => 'u32',
    75 => 'u32', 76 => 'u32', 77 => 'str', 78 => 'str', 79 => 'str',
    80 => 'str', 81 => 'str', 82 => 'u32', 83 => 'str',
);

# why the last tg_read_frame() returned undef: eof, timeout, malformed, ...
our $ERROR = '';

my @CONSTANTS = sort map { s/^Tailgate::Proto:://r }
    grep { /^Tailgate::Proto::TG_/ } keys %constant::declared;

our @EXPORT = (
    qw(tg_frame tg_send tg_read_frame tg_take_frame tg_decode_frame
       tg_field tg_connect tg_decide),
    @CONSTANTS,
);
our %EXPORT_TAGS = (all => \@EXPORT, constants => \@CONSTANTS);


sub tg_frame {
    my ($type, $id, @fields) = @_;

    my $body = pack('C C N', TG_PROTO_VERSION, $type, $id);

    for my $f (@fields) {
        my ($key, $t, $value) = @$f;

        if ($t eq 'u8') {
            $body .= pack('C N C', $key, 1, $value);
        } elsif ($t eq 'u32') {
            $body .= pack('C N N', $key, 4, $value);
        } elsif ($t eq 'str') {
            $body .= pack('C N a*', $key, length($value), $value);
        } else {
            die "tg_frame: unknown field type '$t' for key $key\n";
        }
    }

    return pack('N', length($body)) . $body;
}


sub tg_send {
    my ($sock, $bytes, $timeout) = @_;

    $timeout //= 5;
    my $deadline = time() + $timeout;
    my $sel = IO::Select->new($sock);
    my $off = 0;

    while ($off < length($bytes)) {
        my $left = $deadline - time();
        return 0 if $left <= 0 || !$sel->can_write($left);

        my $n = syswrite($sock, $bytes, length($bytes) - $off, $off);
        if (!defined $n) {
            next if $!{EINTR} || $!{EAGAIN};
            return 0;
        }
        $off += $n;
    }

    return 1;
}


sub tg_read_frame {
    my ($sock, $timeout) = @_;

    $timeout //= 5;
    my $deadline = time() + $timeout;
    $ERROR = '';

    my $head = _read_exactly($sock, 4, $deadline);
    return undef unless defined $head;

    my $length = unpack('N', $head);

    if ($length < 6 || $length > TG_MAX_FRAME_LIMIT) {
        $ERROR = "malformed: length $length";
        return undef;
    }

    my $body = _read_exactly($sock, $length, $deadline);
    return undef unless defined $body;

    return tg_decode_frame($head . $body);
}


sub tg_take_frame {
    my ($bufref, $max) = @_;

    $max //= TG_MAX_FRAME_LIMIT;
    $ERROR = '';

    return undef if length($$bufref) < 4;

    my $length = unpack('N', $$bufref);

    if ($length < 6 || $length > $max) {
        $ERROR = "malformed: length $length";
        return undef;
    }

    return undef if length($$bufref) < 4 + $length;

    my $bytes = substr($$bufref, 0, 4 + $length, '');

    return tg_decode_frame($bytes);
}


sub tg_decode_frame {
    my ($bytes) = @_;

    if (length($bytes) < TG_FRAME_HEADER_SIZE) {
        $ERROR = 'malformed: short frame';
        return undef;
    }

    my ($length, $version, $type, $id) = unpack('N C C N', $bytes);

    if ($length != length($bytes) - 4) {
        $ERROR = 'malformed: length does not match';
        return undef;
    }

    my %frame = (version => $version, type => $type, id => $id,
                 fields => {}, list => []);
    my $off = TG_FRAME_HEADER_SIZE;
    my $end = length($bytes);

    while ($off < $end) {
        if ($end - $off < TG_FIELD_HEADER_SIZE) {
            $ERROR = 'malformed: field header cut short';
            return undef;
        }

        my ($key, $len) = unpack('C N', substr($bytes, $off, 5));
        $off += 5;

        if ($len > $end - $off) {
            $ERROR = "malformed: field $key runs past the end";
            return undef;
        }

        my $value = substr($bytes, $off, $len);
        $off += $len;

        my $t = $FIELD_TYPE{$key} // 'str';
        if ($t eq 'u8' && $len == 1) {
            $value = unpack('C', $value);
        } elsif ($t eq 'u32' && $len == 4) {
            $value = unpack('N', $value);
        }

        push @{ $frame{fields}{$key} }, $value;
        push @{ $frame{list} }, [$key, $value];
    }

    return \%frame;
}


sub tg_field {
    my ($frame, $key) = @_;

    my $values = $frame->{fields}{$key} or return undef;

    return $values->[-1];
}


sub tg_connect {
    my ($path) = @_;

    my $s = IO::Socket::UNIX->new(Peer => $path, Type => SOCK_STREAM)
        or die "tg_connect $path: $!\n";
    $s->blocking(0);

    return $s;
}


sub tg_decide {
    my ($id, $model, @extra) = @_;

    return tg_frame(TG_MSG_DECIDE, $id,
                    (grep { $_->[0] == TG_F_ENDPOINT } @extra)
                        ? () : ([TG_F_ENDPOINT, 'str', 'chat']),
                    [TG_F_MODEL, 'str', $model],
                    @extra);
}


sub _read_exactly {
    my ($sock, $want, $deadline) = @_;

    my $buf = '';
    my $sel = IO::Select->new($sock);

    while (length($buf) < $want) {
        my $left = $deadline - time();

        if ($left <= 0 || !$sel->can_read($left)) {
            $ERROR = 'timeout';
            return undef;
        }

        my $n = sysread($sock, $buf, $want - length($buf), length($buf));

        if (!defined $n) {
            next if $!{EINTR} || $!{EAGAIN};
            $ERROR = "read error: $!";
            return undef;
        }

        if ($n == 0) {
            $ERROR = length($buf) ? 'eof in the middle of a frame' : 'eof';
            return undef;
        }
    }

    return $buf;
}


1;

__END__

=head1 NAME

Tailgate::Proto - frames of the Tailgate module <-> policyd protocol

=head1 SYNOPSIS

    use lib 't/lib';
    use IO::Socket::UNIX;
    use Tailgate::Proto;

    my $s = IO::Socket::UNIX->new(Peer => $path) or die;

    tg_send($s, tg_frame(TG_MSG_HELLO, 0,
        [TG_F_MAX_FRAME, 'u32', 65536],
        [TG_F_SOFTWARE,  'str', 'test/1']));
    my $ok = tg_read_frame($s, 5) or die $Tailgate::Proto::ERROR;

    tg_send($s, tg_frame(TG_MSG_DECIDE, 7,
        [TG_F_ENDPOINT, 'str', 'chat'],
        [TG_F_MODEL,    'str', 'smart'],
        [TG_F_TAG,      'str', 'private']));
    my $d = tg_read_frame($s, 5);
    print tg_field($d, TG_F_STATUS), ' ', tg_field($d, TG_F_UPSTREAM), "\n";

=head1 DESCRIPTION

Encodes and decodes the binary frames described in F<docs/protocol.md>:
a big-endian u32 length (bytes after itself), a u8 version, a u8 type, a
u32 id, then fields of C<key u8 | length u32 | value>.  It is meant for
tests on both sides: a client that talks to policyd, or a fake policyd that
the nginx module talks to.  It checks nothing about which fields belong in
which frame; that is the peers' business.

=head1 FUNCTIONS

All are exported by default, with every constant.

=over 4

=item tg_frame($type, $id, @fields)

Returns the bytes of one frame.  Each field is C<[$key, $type, $value]>
with C<$type> one of C<u8>, C<u32> (numbers) or C<str> (raw bytes, any
length).  Fields are written in the order given, so a repeatable field is
simply listed several times.  To build a malformed frame, encode the wrong
thing on purpose (e.g. C<[TG_F_ATTEMPT, 'str', "\0\0\1"]> is a u32 field of
3 bytes) or edit the returned string with C<substr>.

=item tg_send($sock, $bytes [, $timeout])

Writes all of C<$bytes>, waiting at most C<$timeout> seconds (default 5).
Returns 1, or 0 on error or timeout.

=item tg_read_frame($sock [, $timeout])

Reads exactly one frame, waiting at most C<$timeout> seconds (default 5) in
total, and returns it decoded (see below).  Returns C<undef> at end of file,
on timeout or on a malformed frame, and sets C<$Tailgate::Proto::ERROR> to
C<eof>, C<timeout>, C<eof in the middle of a frame>, C<read error: ...> or
C<malformed: ...>.  It reads no byte past the frame, so it may be mixed with
other reads of the same socket.

=item tg_take_frame(\$buffer [, $max_frame])

For event loops that read whatever arrived into a buffer (a fake policyd
serving several connections): removes the first complete frame from
C<$buffer> and returns it decoded.  Returns C<undef> with
C<$Tailgate::Proto::ERROR> empty while the frame is incomplete, or with
C<$ERROR> set (C<malformed: ...>) when its length is below 6 or above
C<$max_frame> (default 4 MiB) or it does not parse -- then the connection
should be closed.

    while (my $f = tg_take_frame(\$buf)) { handle($f) }
    close_it() if $Tailgate::Proto::ERROR;

=item tg_decode_frame($bytes)

Decodes one complete frame:

    {
        version => 1,
        type    => TG_MSG_DECISION,
        id      => 7,
        fields  => { 30 => [200], 35 => ['local'], 14 => ['a', 'b'] },
        list    => [ [30, 200], [35, 'local'], ... ],   # in wire order
    }

Known u8 and u32 fields of the right length are numbers; everything else
is the raw bytes.  Returns C<undef> (and sets C<$ERROR>) when the frame
does not parse.

=item tg_connect($path)

A non-blocking connection to the Unix socket C<$path> (policyd's, or the
fake's), for C<tg_send> and C<tg_read_frame>.  Dies when nobody listens.

=item tg_decide($id, $model, @fields)

A DECIDE frame for C<$model>, endpoint C<chat> unless C<@fields> (more
C<[$key, $type, $value]> fields, in that order) has its own endpoint.

=item tg_field($frame, $key)

The last value of field C<$key> (the protocol's rule for a field sent
twice), or C<undef>.  For repeatable fields use C<< $frame->{fields}{$key} >>.

=back

=head1 CONSTANTS

C<TG_PROTO_VERSION>, C<TG_FRAME_HEADER_SIZE>, C<TG_FIELD_HEADER_SIZE>,
C<TG_MAX_FRAME_MIN>, C<TG_MAX_FRAME_LIMIT>; the frame types C<TG_MSG_*>;
the field keys C<TG_F_*>; the ERROR numbers C<TG_ERR_*> -- the same names
and values as in F<proto/tailgate_protocol.h>.
C<%Tailgate::Proto::FIELD_TYPE> maps each known key to C<u8>, C<u32> or
C<str>.

=cut
