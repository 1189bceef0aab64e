#!/usr/bin/perl

# A scriptable stand-in for policyd that speaks the real protocol
# (docs/protocol.md), to prove that the module never blocks and survives a
# misbehaving policyd.
#
#   perl fake_policyd.pl --socket PATH --config FILE [--log FILE]
#
# One process, non-blocking: IO::Select over the listener and every
# connection, plus a timer queue for delayed answers, so that a slow answer
# for one request never delays another.
#
# Config (JSON, re-read on SIGHUP, which also sends INVALIDATE to every
# connection, as policyd does on a reload):
#   {
#     "decision":  { DECISION fields by name: status (default 200), provider,
#                    route, upstream, scheme, host, path, provider_model,
#                    authorization, zone, reason, lease, retry_after,
#                    error_type, error_code, error_message },
#     "decisions": { "<requested model>": { fields merged over "decision" },
#                    "<requested model>#<attempt>": { merged over that } },
#     "delay_ms":  { "<requested model>": 1000, "*": 0 }  (or one number),
#     "misbehave": null | "garbage" | "oversized" | "close" | "silent"
#                  | "bad_field"    (or { "<model>": ..., "*": ... }),
#     "max_frame": 65536,           (announced in HELLO_OK and enforced)
#     "models_body": "{\"object\":\"list\",\"data\":[]}",
#     "models_pages": { "": [BODY, NEXT], "NEXT": [BODY, null] }
#   }
# route and provider_model default to the requested model.
#
# Misbehaviours apply to DECIDE replies, after the delay:
#   garbage    a frame header with a valid length and version 0xEE, then junk
#   oversized  a frame header whose length is 4 MiB + 1, then 64 bytes
#   close      the connection is closed
#   silent     no answer at all
#   bad_field  a DECISION whose status field (u32) is 3 bytes long
#
# --log FILE gets one JSON line per received frame:
#   {"ts","conn","read","type","type_name","id","len","model","fields":{name: value}}
# (repeatable fields are arrays) and {"ts","event":"reload"|"start"} lines.
#
# A private frame encoder is used here on purpose: t/lib/Tailgate/Proto.pm
# (another engineer's) did not exist when this was written, and an
# independent implementation cross-checks it.

use strict;
use warnings;

use Getopt::Long qw(GetOptions);
use IO::Socket::UNIX;
use IO::Select;
use POSIX ();
use Socket qw(SOCK_STREAM);
use Time::HiRes qw(time);
use JSON::PP ();

use constant {
    VERSION      => 1,
    LIMIT        => 4 * 1024 * 1024,

    HELLO        => 1,
    HELLO_OK     => 2,
    DECIDE       => 3,
    DECISION     => 4,
    MODELS       => 5,
    MODEL_LIST   => 6,
    REPORT       => 7,
    ERROR        => 8,
    INVALIDATE   => 9,

    E_VERSION    => 1,
    E_TOO_LARGE  => 2,
    E_MALFORMED  => 3,
    E_UNKNOWN    => 4,
    E_MISSING    => 5,
};

my %TYPE_NAME = (1 => 'HELLO', 2 => 'HELLO_OK', 3 => 'DECIDE',
                 4 => 'DECISION', 5 => 'MODELS', 6 => 'MODEL_LIST',
                 7 => 'REPORT', 8 => 'ERROR', 13 => 'CANCEL', 15 => 'HOLD',
                 16 => 'JWKS_REFRESH');

# key => [name, type]
my %FIELD = (
    1  => [ max_frame => 'u32' ],       2  => [ pid => 'u32' ],
    3  => [ software => 'str' ],
    10 => [ endpoint => 'str' ],        11 => [ model => 'str' ],
    12 => [ client => 'str' ],          13 => [ tenant => 'str' ],
    14 => [ tag => 'str' ],             15 => [ allow_route => 'str' ],
    16 => [ stream => 'u8' ],           17 => [ tools => 'u8' ],
    18 => [ body_bytes => 'u32' ],      19 => [ attempt => 'u32' ],
    20 => [ exclude => 'str' ],         21 => [ prompt_estimate => 'u32' ],
    22 => [ dry_run => 'u8' ],
    30 => [ status => 'u32' ],          31 => [ error_type => 'str' ],
    32 => [ error_code => 'str' ],      33 => [ error_message => 'str' ],
    34 => [ retry_after => 'u32' ],     35 => [ provider => 'str' ],
    36 => [ route => 'str' ],           37 => [ upstream => 'str' ],
    38 => [ scheme => 'str' ],          39 => [ host => 'str' ],
    40 => [ path => 'str' ],            41 => [ provider_model => 'str' ],
    42 => [ authorization => 'str' ],   43 => [ lease => 'u32' ],
    44 => [ reason => 'str' ],          45 => [ zone => 'str' ],
    46 => [ body => 'str' ],            47 => [ cache_ms => 'u32' ],
    48 => [ cache_max_bytes => 'u32' ], 49 => [ fallback => 'u32' ],
    50 => [ outcome => 'str' ],         57 => [ adjust => 'str' ],
    51 => [ http_status => 'u32' ],     52 => [ upstream_ms => 'u32' ],
    53 => [ total_ms => 'u32' ],        54 => [ prompt_tokens => 'u32' ],
    55 => [ completion_tokens => 'u32' ], 56 => [ count => 'u32' ],
    60 => [ request_id => 'str' ],      61 => [ cached_tokens => 'u32' ],
    62 => [ reasoning_tokens => 'u32' ], 63 => [ estimated => 'u8' ],
    64 => [ ttfb_ms => 'u32' ],         65 => [ audio_ms => 'u32' ],
    66 => [ characters => 'u32' ],      67 => [ response_model => 'str' ],
    68 => [ total_tokens => 'u32' ],    69 => [ prices => 'str' ],
    70 => [ stream_usage => 'u8' ],     71 => [ limit => 'str' ],
    72 => [ ratelimit => 'str' ],       73 => [ cooldown_ms => 'u32' ],
    74 => [ connect_ms => 'u32' ],      75 => [ first_byte_ms => 'u32' ],
    76 => [ idle_ms => 'u32' ],         77 => [ drop_headers => 'str' ],
    78 => [ user_agent => 'str' ],      79 => [ cursor => 'str' ],
    80 => [ jwks_file => 'str' ],       81 => [ kid => 'str' ],
    82 => [ refresh_ms => 'u32' ],      83 => [ next => 'str' ],
    90 => [ translate => 'u8' ],
);
my %KEY = map { $FIELD{$_}[0] => $_ } keys %FIELD;
my %REPEATABLE = map { $_ => 1 } qw(tag allow_route exclude);

my @DECISION_ORDER = qw(status error_type error_code error_message retry_after
                        provider route upstream scheme host path provider_model
                        authorization lease reason zone cache_ms
                        cache_max_bytes);

my ($sock_path, $config_file, $log_file);
GetOptions('socket=s' => \$sock_path, 'config=s' => \$config_file,
           'log=s' => \$log_file)
    && defined $sock_path && defined $config_file
    or die "usage: $0 --socket PATH --config FILE [--log FILE]\n";

my $JSON = JSON::PP->new->canonical->utf8;
my $parent = getppid();

my $cfg = read_config() or die "fake_policyd: bad config $config_file\n";

my $log;
if (defined $log_file) {
    open $log, '>>', $log_file or die "fake_policyd: $log_file: $!\n";
    $log->autoflush(1);
}

$SIG{PIPE} = 'IGNORE';
my ($hup, $term) = (0, 0);
$SIG{HUP} = sub { $hup = 1 };
$SIG{TERM} = $SIG{INT} = sub { $term = 1 };

unlink $sock_path if -S $sock_path;

my $listener = IO::Socket::UNIX->new(Type => SOCK_STREAM, Local => $sock_path,
                                     Listen => 128)
    or die "fake_policyd: listen $sock_path: $!\n";
$listener->blocking(0);

log_line({ event => 'start', pid => $$ });

my $reads = 0;
my %conns;          # fileno => { sock, in, out, n, close_after }
my @timers;         # [due, conn n, action]; action: bytes or 'close'
my $next_conn = 0;

main_loop();

close $listener;
unlink $sock_path;
exit 0;


sub read_config {
    my $data = eval {
        open my $fh, '<:raw', $config_file or die "$!\n";
        local $/;
        $JSON->decode(<$fh> // '');
    };

    if (ref $data ne 'HASH') {
        warn "fake_policyd: cannot use $config_file: " . ($@ || "not an object\n");
        return undef;
    }

    return $data;
}


sub log_line {
    my ($rec) = @_;
    return unless $log;
    $rec->{ts} = time;
    print $log $JSON->encode($rec), "\n";
}


sub main_loop {
    while (!$term) {
        last if getppid() != $parent;

        if ($hup) {
            $hup = 0;
            if (my $c = read_config()) {
                $cfg = $c;

                # like policyd: workers forget the decisions they reuse
                send_bytes($_, frame(INVALIDATE, 0)) for keys %conns;

                log_line({ event => 'reload' });
                warn "fake_policyd: config reloaded\n";
            }
        }

        run_timers();

        my $wait = 0.2;
        if (@timers) {
            my $d = $timers[0][0] - time;
            $wait = $d < 0 ? 0 : $d if $d < $wait;
        }

        my ($rin, $win) = ('', '');
        vec($rin, fileno($listener), 1) = 1;
        for my $fd (keys %conns) {
            vec($rin, $fd, 1) = 1;
            vec($win, $fd, 1) = 1 if length $conns{$fd}{out};
        }

        my $n = select(my $rout = $rin, my $wout = $win, undef, $wait);
        next if $n <= 0;

        if (vec($rout, fileno($listener), 1)) {
            while (my $s = $listener->accept) {
                $s->blocking(0);
                $conns{fileno $s} = { sock => $s, in => '', out => '',
                                      n => ++$next_conn };
            }
        }

        for my $fd (keys %conns) {
            my $c = $conns{$fd} or next;

            if (vec($rout, $fd, 1)) {
                my $got = sysread($c->{sock}, $c->{in}, 65536, length $c->{in});
                $reads++;
                if (defined $got && $got == 0
                    || !defined $got && !$!{EAGAIN} && !$!{EINTR})
                {
                    drop_conn($fd);
                    next;
                }
                parse($fd) unless $c->{close_after};
            }

            flush($fd) if $conns{$fd} && vec($wout, $fd, 1);
        }
    }
}


sub drop_conn {
    my ($fd) = @_;
    my $c = delete $conns{$fd} or return;
    close $c->{sock};
}


sub conn_by_n {
    my ($n) = @_;
    for my $fd (keys %conns) {
        return $fd if $conns{$fd}{n} == $n;
    }
    return undef;
}


sub send_bytes {
    my ($fd, $bytes) = @_;
    my $c = $conns{$fd} or return;
    $c->{out} .= $bytes;
    flush($fd);
}


sub flush {
    my ($fd) = @_;

    my $c = $conns{$fd} or return;

    while (length $c->{out}) {
        my $w = syswrite($c->{sock}, $c->{out});
        if (!defined $w) {
            return if $!{EAGAIN} || $!{EINTR};
            drop_conn($fd);
            return;
        }
        substr($c->{out}, 0, $w, '');
    }

    drop_conn($fd) if $c->{close_after};
}


sub run_timers {
    my $now = time;

    while (@timers && $timers[0][0] <= $now) {
        my (undef, $n, $action) = @{ shift @timers };
        my $fd = conn_by_n($n);
        next unless defined $fd;

        if ($action eq 'close') {
            drop_conn($fd);
        } else {
            send_bytes($fd, $action);
        }
    }
}


sub add_timer {
    my ($delay_s, $n, $action) = @_;
    push @timers, [ time + $delay_s, $n, $action ];
    @timers = sort { $a->[0] <=> $b->[0] } @timers;
}


# encoding

sub field {
    my ($key, $type, $value) = @_;

    return pack('C N C', $key, 1, $value) if $type eq 'u8';
    return pack('C N N', $key, 4, $value) if $type eq 'u32';

    utf8::encode($value) if utf8::is_utf8($value);
    return pack('C N', $key, length $value) . $value;
}


sub frame {
    my ($type, $id, @fields) = @_;
    my $body = pack('C C N', VERSION, $type, $id) . join('', @fields);
    return pack('N', length $body) . $body;
}


sub named_field {
    my ($name, $value) = @_;
    my $key = $KEY{$name} or return ();
    return field($key, $FIELD{$key}[1], $value);
}


sub error_frame {
    my ($id, $num, $message) = @_;
    return frame(ERROR, $id, named_field(status => $num),
                 named_field(error_message => $message));
}


sub fail_conn {
    my ($fd, $id, $num, $message) = @_;
    warn "fake_policyd: closing connection: $message\n";
    send_bytes($fd, error_frame($id, $num, $message));
    if (my $c = $conns{$fd}) {
        $c->{close_after} = 1;
        $c->{in} = '';
        flush($fd);
    }
}


# decoding

sub max_frame {
    my $m = $cfg->{max_frame} // 65536;
    return $m > LIMIT ? LIMIT : $m;
}


sub parse {
    my ($fd) = @_;

    while (my $c = $conns{$fd}) {
        return if $c->{close_after};
        return if length $c->{in} < 4;

        my $len = unpack('N', $c->{in});

        if ($len < 6) {
            return fail_conn($fd, 0, E_MALFORMED, "frame length $len below 6");
        }
        if ($len > max_frame()) {
            return fail_conn($fd, 0, E_TOO_LARGE, "frame length $len too large");
        }

        return if length $c->{in} < 4 + $len;

        my $raw = substr($c->{in}, 0, 4 + $len, '');
        my ($ver, $type, $id) = unpack('x4 C C N', $raw);

        if ($ver != VERSION) {
            return fail_conn($fd, $id, E_VERSION, "protocol version $ver");
        }

        my ($fields, $err) = decode_fields(substr($raw, 10));

        if ($err) {
            return fail_conn($fd, $id, E_MALFORMED, $err);
        }

        log_line({
            conn      => $c->{n},
            read      => $reads,      # frames of one read came together
            type      => $type,
            type_name => $TYPE_NAME{$type} // "type_$type",
            id        => $id,
            len       => $len,
            (defined $fields->{model} ? (model => $fields->{model}) : ()),
            fields    => $fields,
        });

        handle($fd, $type, $id, $fields);
    }
}


sub decode_fields {
    my ($data) = @_;

    my %f;
    my $off = 0;

    while ($off < length $data) {
        return (undef, 'truncated field header') if length($data) - $off < 5;

        my ($key, $flen) = unpack('C N', substr($data, $off, 5));
        $off += 5;

        return (undef, "field $key runs past the frame")
            if $flen > length($data) - $off;

        my $v = substr($data, $off, $flen);
        $off += $flen;

        my ($name, $type) = @{ $FIELD{$key} // [ "key_$key", 'str' ] };

        if ($type eq 'u8') {
            return (undef, "field $name: u8 of $flen bytes") if $flen != 1;
            $v = unpack('C', $v);
        } elsif ($type eq 'u32') {
            return (undef, "field $name: u32 of $flen bytes") if $flen != 4;
            $v = unpack('N', $v);
        } else {
            utf8::decode($v);
        }

        if ($REPEATABLE{$name}) {
            push @{ $f{$name} }, $v;
        } else {
            $f{$name} = $v;
        }
    }

    return (\%f, undef);
}


sub per_model {
    my ($v, $model) = @_;
    return $v unless ref $v eq 'HASH';
    return $v->{$model} // $v->{'*'};
}


sub handle {
    my ($fd, $type, $id, $f) = @_;

    my $c = $conns{$fd};

    if ($type == HELLO) {
        send_bytes($fd, frame(HELLO_OK, 0,
            named_field(max_frame => max_frame()),
            named_field(pid => $$),
            named_field(software => 'fake_policyd/0.1')));
        return;
    }

    if ($type == MODELS) {
        # a list in pages: { "CURSOR or empty": [body, next or null] };
        # a cursor it has no page for is left unanswered
        if (my $pages = $cfg->{models_pages}) {
            my $page = $pages->{ $f->{cursor} // '' } or return;
            send_bytes($fd, frame(MODEL_LIST, $id,
                named_field(status => 200),
                named_field(body => $page->[0]),
                defined $page->[1] ? named_field(next => $page->[1]) : ()));
            return;
        }

        send_bytes($fd, frame(MODEL_LIST, $id,
            named_field(status => 200),
            named_field(body => $cfg->{models_body}
                                // '{"object":"list","data":[]}')));
        return;
    }

    # one-way frames: recorded, never answered
    return if $type == REPORT || $type == 13 || $type == 15;

    if ($type != DECIDE) {
        send_bytes($fd, error_frame($id, E_UNKNOWN, "unknown frame type $type"));
        return;
    }

    if (!defined $f->{endpoint} || !defined $f->{model}) {
        send_bytes($fd, error_frame($id, E_MISSING,
                                    'DECIDE needs endpoint and model'));
        return;
    }

    my $model = $f->{model};
    my $delay = (per_model($cfg->{delay_ms}, $model) // 0) / 1000;
    my $mis = per_model($cfg->{misbehave}, $model) // '';

    my $per = ref $cfg->{decisions} eq 'HASH' ? $cfg->{decisions} : {};
    my $attempt = $f->{attempt} // 1;
    my %d = (
        %{ ref $cfg->{decision} eq 'HASH' ? $cfg->{decision} : {} },
        %{ ref $per->{$model} eq 'HASH' ? $per->{$model} : {} },
        %{ ref $per->{"$model#$attempt"} eq 'HASH'
           ? $per->{"$model#$attempt"} : {} },
    );
    $d{status} //= 200;
    if ($d{status} == 200) {
        $d{route} //= $model;
        $d{provider_model} //= $model;
    }

    my @fields;
    my %seen;

    for my $name (@DECISION_ORDER, sort keys %d) {
        next if $seen{$name}++ || !defined $d{$name};

        if (!$KEY{$name}) {
            warn "fake_policyd: unknown decision field '$name' ignored\n";
            next;
        }

        if ($name eq 'status' && $mis eq 'bad_field') {
            push @fields, pack('C N', $KEY{status}, 3)
                          . substr(pack('N', $d{status}), 1);
            next;
        }

        push @fields, named_field($name => $d{$name});
    }

    my $action;

    if ($mis eq 'silent') {
        return;
    } elsif ($mis eq 'close') {
        $action = 'close';
    } elsif ($mis eq 'garbage') {
        my $junk = pack('C C N', 0xEE, 0xEE, $id)
                   . "\xde\xad\xbe\xef garbage \x00\xff\x01\x80";
        $action = pack('N', length $junk) . $junk;
    } elsif ($mis eq 'oversized') {
        $action = pack('N', LIMIT + 1) . pack('C C N', VERSION, DECISION, $id)
                  . ("\0" x 58);
    } else {
        warn "fake_policyd: unknown misbehaviour '$mis' ignored\n"
            if $mis ne '' && $mis ne 'bad_field';
        $action = frame(DECISION, $id, @fields);
    }

    if ($delay > 0) {
        add_timer($delay, $c->{n}, $action);
    } elsif ($action eq 'close') {
        drop_conn($fd);
    } else {
        send_bytes($fd, $action);
    }
}
