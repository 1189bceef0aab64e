#!/usr/bin/perl

# An OpenAI-compatible mock provider for Tailgate's tests.
#
#   perl mock_provider.pl --port P --name NAME --dir DIR [--addr 127.0.0.2]
#
# Listens on 127.0.0.1:P (or --addr: another loopback address, for two
# providers on one port behind one DNS name) and forks one child per TCP connection, so that a
# hanging request never holds up another. Every request is recorded, and its
# answer is steered by DIR/NAME.control.json (read on every request) merged
# with an optional per-request header "X-Mock-Control: {json}".
# Tailgate::Test (t/lib/Tailgate/Test.pm) starts it and documents the
# control keys; they are also listed in %DEFAULTS below.
#
# Files in DIR, all named after the mock:
#   NAME.control.json     control (written by the harness; missing = defaults)
#   NAME.requests.jsonl   one JSON line per request, appended under flock
#   NAME.active/          one file per request in progress (named by pid)
#   NAME.lock             flock for NAME.active/
#   NAME.ready            written once listening: "pid port\n"

use strict;
use warnings;

use Getopt::Long qw(GetOptions);
use IO::Socket::INET;
use IO::Select;
use POSIX qw(:sys_wait_h);
use Socket qw(SOL_SOCKET SO_LINGER IPPROTO_TCP TCP_NODELAY);
use Time::HiRes qw(time sleep);
use Fcntl qw(:flock O_WRONLY O_APPEND O_CREAT O_RDONLY);
use JSON::PP ();
use MIME::Base64 qw(encode_base64);

my %DEFAULTS = (
    mode               => 'ok',   # ok | status | hang | reset | drop
    status             => 500,    # for mode status
    retry_after        => undef,  # seconds; default 1 on a 429, '' for none
    hang_s             => 30,     # for mode hang
    drop_after         => 2,      # SSE events sent before mode drop closes
    delay_ms           => 0,      # before answering
    stream_chunks      => 3,
    stream_interval_ms => 0,
    stream_gate        => undef,  # after the first event, wait for DIR/<this>
    max_concurrency    => undef,  # refuse (503) above this many in progress
    match_path         => undef,  # regex: mode/delay apply only to these paths
    headers            => {},     # extra response headers
    usage              => {},     # prompt_tokens, completion_tokens,
                                  # cached_tokens, reasoning_tokens, seconds
    no_usage           => 0,      # answers say nothing of their usage
    split_events       => 0,      # write each SSE event in two halves
    split_body         => undef,  # [N, ...]: the body (a stream's events
                                  # joined) in pieces of these sizes, then
                                  # the rest, each a write of its own
    content            => undef,  # assistant text, default "Hello from NAME"
                                  # (JSON null in a chat answer: "" here
                                  # with tool_calls)
    tool_calls         => undef,  # chat: [{id, name, arguments}] the
                                  # answer calls (a stream sends each
                                  # call's arguments in three pieces)
    tool_calls_once    => 0,      # ... unless the request ends with a
                                  # tool's result: then answer content
    finish_reason      => undef,  # chat: a stream's last chunk says it;
                                  # default "stop" ("tool_calls" with
                                  # tool_calls), none in a stream unless set
    chat_events        => undef,  # chat stream: these SSE texts verbatim,
                                  # each a chunk of its own, instead
    chat_body          => undef,  # chat JSON answer: this text verbatim
    models             => ['mock-model'],   # ids listed by GET .../models

    # health probes (GET .../health, /slots, /metrics, /models): never
    # counted as requests; they follow probe_mode, or mode when that is
    # hang, status or reset
    probe_mode         => undef,  # ok | status | hang | reset
    loading            => 0,      # /health: 503 "Loading model"
    slots              => 1,      # llama.cpp /slots: this many, busy as
                                  # many as requests are in progress
    waiting            => 0,      # vLLM /metrics: num_requests_waiting
);

my %REASON = (
    200 => 'OK', 400 => 'Bad Request', 401 => 'Unauthorized',
    403 => 'Forbidden', 404 => 'Not Found', 408 => 'Request Timeout',
    413 => 'Payload Too Large', 429 => 'Too Many Requests',
    500 => 'Internal Server Error', 502 => 'Bad Gateway',
    503 => 'Service Unavailable', 504 => 'Gateway Timeout',
);

my $IDLE_S   = 60;          # keep-alive idle limit per connection
my $READ_S   = 30;          # limit for one request's headers and body
my $MAX_HEAD = 64 * 1024;
my $MAX_BODY = 64 * 1024 * 1024;

my ($port, $name, $dir);
my $addr = '127.0.0.1';
GetOptions('port=i' => \$port, 'name=s' => \$name, 'dir=s' => \$dir,
           'addr=s' => \$addr)
    && $port && defined $name && $name =~ /^[\w.-]+$/ && defined $dir && -d $dir
    or die "usage: $0 --port P --name NAME --dir DIR\n";

my $JSON = JSON::PP->new->canonical->utf8;
my $parent = getppid();
my $main_pid = $$;

my $active_dir = "$dir/$name.active";
my $lock_file  = "$dir/$name.lock";
my $rec_file   = "$dir/$name.requests.jsonl";
my $ctl_file   = "$dir/$name.control.json";

mkdir $active_dir unless -d $active_dir;

$SIG{PIPE} = 'IGNORE';

my $listen = IO::Socket::INET->new(
    LocalAddr => $addr,
    LocalPort => $port,
    Proto     => 'tcp',
    Listen    => 128,
    ReuseAddr => 1,
) or die "mock $name: cannot listen on $addr:$port: $!\n";

{
    my $tmp = "$dir/$name.ready.$$";
    open my $fh, '>', $tmp or die "mock $name: $tmp: $!\n";
    print $fh "$$ $port\n";
    close $fh;
    rename $tmp, "$dir/$name.ready" or die "mock $name: rename: $!\n";
}

# per-connection state, used by the forked children only
my $conn;
my $inbuf = '';
my $registered = 0;

END {
    unregister() if $registered;
}

main_loop();
exit 0;


sub main_loop {
    my %kids;
    my $stopping = 0;

    $SIG{TERM} = $SIG{INT} = $SIG{HUP} = sub { $stopping = 1 };

    my $sel = IO::Select->new($listen);

    while (!$stopping) {
        last if getppid() != $parent;

        while ((my $pid = waitpid(-1, WNOHANG)) > 0) {
            delete $kids{$pid};
        }

        my @ready = $sel->can_read(0.2);
        next unless @ready;

        my $c = $listen->accept or next;

        my $pid = fork;
        if (!defined $pid) {
            warn "mock $name: fork: $!\n";
            close $c;
            next;
        }

        if ($pid == 0) {
            $SIG{TERM} = $SIG{INT} = $SIG{HUP} = sub {
                unregister() if $registered;
                POSIX::_exit(0);
            };
            close $listen;
            $conn = $c;
            serve();
            close $conn;
            exit 0;
        }

        $kids{$pid} = 1;
        close $c;
    }

    close $listen;
    unlink "$dir/$name.ready";

    kill 'TERM', keys %kids if %kids;

    for (1 .. 100) {
        while ((my $pid = waitpid(-1, WNOHANG)) > 0) {
            delete $kids{$pid};
        }
        last unless %kids;
        sleep 0.02;
    }

    if (%kids) {
        kill 'KILL', keys %kids;
        for (1 .. 100) {
            while ((my $pid = waitpid(-1, WNOHANG)) > 0) {
                delete $kids{$pid};
            }
            last unless %kids;
            sleep 0.02;
        }
    }
}


# one connection: requests in a row while keep-alive holds

sub serve {
    setsockopt($conn, IPPROTO_TCP, TCP_NODELAY, 1);

    for (1 .. 100000) {
        my $req = read_request() or return;
        handle($req) or return;
    }
}


sub parent_gone {
    POSIX::_exit(0) if getppid() != $main_pid;
}


# waits up to $secs for input, appends it to $inbuf;
# returns 1 when data came, 0 on timeout, undef when the peer closed

sub fill {
    my ($secs) = @_;

    my $deadline = time + $secs;

    for (;;) {
        parent_gone();

        my $left = $deadline - time;
        return 0 if $left <= 0;

        my $rin = '';
        vec($rin, fileno($conn), 1) = 1;
        my $n = select(my $rout = $rin, undef, undef, $left < 0.2 ? $left : 0.2);
        next unless $n && $n > 0;

        my $got = sysread($conn, $inbuf, 65536, length $inbuf);
        next if !defined $got && ($!{EINTR} || $!{EAGAIN});
        return undef unless $got;
        return 1;
    }
}


# sleeps $secs while watching the connection; false when the peer closed

sub pause {
    my ($secs) = @_;

    my $deadline = time + $secs;

    while ((my $left = $deadline - time) > 0) {
        my $r = fill($left);
        return 0 unless defined $r;
    }

    return 1;
}


# a test opens the gate by creating the file: proof by order, not by time

sub wait_gate {
    my ($file) = @_;

    my $deadline = time + 10;

    while (!-e $file) {
        return 0 if time > $deadline;
        pause(0.02) or return 0;
    }

    return 1;
}


sub read_request {
    my $deadline;
    my $first = 1;

    # headers; the idle limit applies until the first byte of a request

    for (;;) {
        my $end = index($inbuf, "\r\n\r\n");
        last if $end >= 0;

        return undef if length $inbuf > $MAX_HEAD;

        my $limit = $first && $inbuf eq '' ? $IDLE_S : $READ_S;
        my $r = fill($limit);
        return undef unless $r;
    }

    my $end = index($inbuf, "\r\n\r\n");
    my $head = substr($inbuf, 0, $end);
    substr($inbuf, 0, $end + 4, '');

    $head =~ s/^(?:\r\n)+//;
    my ($line, @lines) = split /\r\n/, $head;

    my ($method, $target, $version) =
        ($line // '') =~ m{^([A-Z]+) (\S+) HTTP/(\d\.\d)$}
        or return undef;

    my %h;
    for my $l (@lines) {
        my ($k, $v) = $l =~ /^([^:\s]+):\s*(.*?)\s*$/ or next;
        $k = lc $k;
        $h{$k} = exists $h{$k} ? "$h{$k}, $v" : $v;
    }

    if (($h{expect} // '') =~ /100-continue/i) {
        write_all("HTTP/1.1 100 Continue\r\n\r\n") or return undef;
    }

    my $body = '';

    if (($h{'transfer-encoding'} // '') =~ /chunked/i) {
        for (;;) {
            my $eol = index($inbuf, "\r\n");
            if ($eol < 0) {
                fill($READ_S) or return undef;
                next;
            }

            my ($size) = substr($inbuf, 0, $eol) =~ /^([0-9a-fA-F]+)/
                or return undef;
            $size = hex $size;
            return undef if length($body) + $size > $MAX_BODY;

            if ($size == 0) {
                # optional trailers, then an empty line
                for (;;) {
                    my $t = index($inbuf, "\r\n\r\n", $eol);
                    if ($t >= 0) {
                        substr($inbuf, 0, $t + 4, '');
                        last;
                    }
                    return undef if length $inbuf > $MAX_HEAD;
                    fill($READ_S) or return undef;
                }
                last;
            }

            while (length($inbuf) < $eol + 2 + $size + 2) {
                fill($READ_S) or return undef;
            }

            $body .= substr($inbuf, $eol + 2, $size);
            substr($inbuf, 0, $eol + 2 + $size + 2, '');
        }

    } elsif (defined $h{'content-length'}) {
        my $len = $h{'content-length'};
        return undef unless $len =~ /^\d+$/ && $len <= $MAX_BODY;

        while (length($inbuf) < $len) {
            fill($READ_S) or return undef;
        }

        $body = substr($inbuf, 0, $len, '');
    }

    my ($path) = $target =~ m{^([^?]*)};

    my $keep = $version eq '1.1'
        ? (($h{connection} // '') !~ /\bclose\b/i)
        : (($h{connection} // '') =~ /\bkeep-alive\b/i);

    return {
        method  => $method,
        target  => $target,
        path    => $path,
        version => $version,
        headers => \%h,
        body    => $body,
        keep    => $keep,
    };
}


sub write_all {
    my ($data) = @_;

    my $off = 0;
    my $deadline = time + $READ_S;

    while ($off < length $data) {
        parent_gone();
        return 0 if time > $deadline;

        my $win = '';
        vec($win, fileno($conn), 1) = 1;
        my $n = select(undef, my $wout = $win, undef, 0.2);
        next unless $n && $n > 0;

        my $w = syswrite($conn, $data, length($data) - $off, $off);
        if (!defined $w) {
            next if $!{EINTR} || $!{EAGAIN};
            return 0;
        }
        $off += $w;
    }

    return 1;
}


sub control {
    my ($req) = @_;

    my %c = %DEFAULTS;

    if (-e $ctl_file) {
        my $data = eval {
            open my $fh, '<:raw', $ctl_file or die "$!\n";
            local $/;
            my $text = <$fh>;
            $JSON->decode($text);
        };

        if (ref $data eq 'HASH') {
            %c = (%c, %$data);
        } else {
            warn "mock $name: bad $ctl_file: " . ($@ || "not an object\n");
        }
    }

    if (defined(my $hc = $req->{headers}{'x-mock-control'})) {
        my $data = eval { $JSON->decode($hc) };
        if (ref $data eq 'HASH') {
            %c = (%c, %$data);
        } else {
            warn "mock $name: bad X-Mock-Control header: $hc\n";
        }
    }

    if (defined $c{match_path} && $req->{path} !~ /$c{match_path}/) {
        $c{mode} = 'ok';
        $c{delay_ms} = 0;
    }

    return \%c;
}


# requests in progress: one file per pid in NAME.active/, guarded by flock;
# files of dead pids are removed when counting, so a killed child leaks none

sub with_lock {
    my ($code) = @_;

    open my $lk, '>>', $lock_file or die "mock $name: $lock_file: $!\n";
    flock($lk, LOCK_EX) or die "mock $name: flock: $!\n";
    my @r = $code->();
    close $lk;
    return wantarray ? @r : $r[0];
}


sub register {
    return with_lock(sub {
        opendir my $dh, $active_dir or die "mock $name: $active_dir: $!\n";
        my $n = 0;

        for my $f (readdir $dh) {
            next unless $f =~ /^(\d+)$/;
            if ($1 != $$ && !kill(0, $1)) {
                unlink "$active_dir/$f";
                next;
            }
            $n++ if $1 != $$;
        }
        closedir $dh;

        open my $fh, '>', "$active_dir/$$" or die "mock $name: $!\n";
        close $fh;
        $registered = 1;

        return $n + 1;
    });
}


sub unregister {
    return unless $registered;
    $registered = 0;
    unlink "$active_dir/$$";
}


sub record {
    my ($req, $concurrent, $refused) = @_;

    # the body goes in last, outside the JSON encoder: base64 needs no
    # escaping, and JSON::PP is slow on megabytes
    my $line = $JSON->encode({
        ts         => time,
        method     => $req->{method},
        path       => $req->{target},
        headers    => $req->{headers},
        concurrent => $concurrent,
        refused    => $refused ? 1 : 0,
        conn       => $$,
    });
    $line =~ s/\}$/,"body_b64":"/;
    $line .= encode_base64($req->{body}, '') . "\"}\n";

    sysopen my $fh, $rec_file, O_WRONLY | O_APPEND | O_CREAT
        or die "mock $name: $rec_file: $!\n";
    flock($fh, LOCK_EX);
    syswrite($fh, $line);
    close $fh;
}


# JSON with keys in the order given, like the real APIs

sub obj { return bless [@_], 'MockObj' }

sub ojson {
    my ($v) = @_;

    if (ref $v eq 'MockObj') {
        my @kv = @$v;
        my @out;
        while (my ($k, $x) = splice @kv, 0, 2) {
            push @out, $JSON->allow_nonref->encode("$k") . ':' . ojson($x);
        }
        return '{' . join(',', @out) . '}';
    }

    if (ref $v eq 'ARRAY') {
        return '[' . join(',', map { ojson($_) } @$v) . ']';
    }

    return $JSON->allow_nonref->encode($v);
}


sub head {
    my ($req, $ctl, $status, %h) = @_;

    my $out = "HTTP/1.1 $status " . ($REASON{$status} // 'Status') . "\r\n"
        . "Server: tailgate-mock\r\n"
        . "X-Mock-Provider: $name\r\n";

    my %extra = (%{ ref $ctl->{headers} eq 'HASH' ? $ctl->{headers} : {} }, %h);

    for my $k (sort keys %extra) {
        $out .= "$k: $extra{$k}\r\n";
    }

    $out .= "Connection: close\r\n" unless $req->{keep};

    return $out . "\r\n";
}


sub send_body {
    my ($req, $ctl, $status, $type, $body, %h) = @_;

    # done before its last bytes leave: once they have, the gateway may
    # send the next request at once, which must not find this one counted
    unregister();

    my @pieces = $req->{method} eq 'HEAD' ? ('') : pieces($ctl, $body);

    write_all(head($req, $ctl, $status, %h,
                   'Content-Type' => $type,
                   'Content-Length' => length $body)
              . shift @pieces)
        or return 0;

    for my $piece (@pieces) {
        pause(0.02) or return 0;
        write_all($piece) or return 0;
    }

    return $req->{keep};
}


# control split_body: the body in its pieces, the rest last (one piece
# when it is not set)

sub pieces {
    my ($ctl, $body) = @_;

    return ($body) unless ref $ctl->{split_body} eq 'ARRAY';

    my @pieces;
    for my $n (@{ $ctl->{split_body} }) {
        last unless length $body;
        push @pieces, substr($body, 0, $n, '');
    }
    push @pieces, $body if length $body;

    return @pieces;
}


sub error_body {
    my ($message, $type, $code) = @_;

    return ojson(obj(error => obj(
        message => $message,
        type    => $type,
        param   => undef,
        code    => $code,
    )));
}


sub send_error {
    my ($req, $ctl, $status, $message, $type, $code, %h) = @_;

    return send_body($req, $ctl, $status, 'application/json',
                     error_body($message, $type, $code), %h);
}


sub chunk {
    my ($data) = @_;
    return sprintf("%x\r\n", length $data) . $data . "\r\n";
}


sub usage_of {
    my ($ctl) = @_;

    my $u = ref $ctl->{usage} eq 'HASH' ? $ctl->{usage} : {};
    my $p = $u->{prompt_tokens} // 7;
    my $c = $u->{completion_tokens} // 3;

    return ($p, $c, $p + $c);
}


# the usage object of an answer in the API's own names, details included;
# undef (no usage at all) with no_usage

sub usage_obj {
    my ($ctl, $api) = @_;

    return undef if $ctl->{no_usage};

    my $u = ref $ctl->{usage} eq 'HASH' ? $ctl->{usage} : {};
    my ($pt, $ct, $tt) = usage_of($ctl);
    my @in = $api eq 'responses' ? qw(input_tokens output_tokens)
                                 : qw(prompt_tokens completion_tokens);
    my @details = $api eq 'responses'
                  ? qw(input_tokens_details output_tokens_details)
                  : qw(prompt_tokens_details completion_tokens_details);

    return obj($in[0] => $pt, $in[1] => $ct, total_tokens => $tt,
               (defined $u->{cached_tokens}
                ? ($details[0] => obj(cached_tokens => $u->{cached_tokens}))
                : ()),
               (defined $u->{reasoning_tokens}
                ? ($details[1] => obj(reasoning_tokens => $u->{reasoning_tokens}))
                : ()));
}


sub handle {
    my ($req) = @_;

    my $ctl = control($req);

    return probe($req, $ctl) if is_probe($req);

    my $concurrent = register();
    my $max = $ctl->{max_concurrency};
    my $refused = defined $max && $max =~ /^\d+$/ && $concurrent > $max;

    record($req, $concurrent, $refused);

    if ($refused) {
        my $keep = send_error($req, $ctl, 503,
            "mock $name is at capacity (max_concurrency $max)",
            'server_error', 'mock_busy');
        unregister();
        return $keep;
    }

    if ($ctl->{delay_ms} && $ctl->{delay_ms} > 0) {
        pause($ctl->{delay_ms} / 1000) or return 0;
    }

    my $mode = $ctl->{mode} // 'ok';
    my $keep;

    if ($mode eq 'status') {
        my $status = $ctl->{status} // 500;
        my %h;
        my $ra = $ctl->{retry_after} // ($status == 429 ? 1 : undef);
        $h{'Retry-After'} = $ra if defined $ra && $ra ne '';

        $keep = send_error($req, $ctl, $status, "mock $name failure",
                           'server_error', 'mock_failure', %h);

    } elsif ($mode eq 'hang') {
        pause($ctl->{hang_s} // 30);
        $keep = 0;

    } elsif ($mode eq 'reset') {
        setsockopt($conn, SOL_SOCKET, SO_LINGER, pack('ii', 1, 0));
        $keep = 0;

    } elsif ($mode eq 'drop') {
        drop($req, $ctl);
        $keep = 0;

    } else {
        $keep = answer($req, $ctl);
    }

    unregister();
    return $keep;
}


sub is_probe {
    my ($req) = @_;
    return ($req->{method} eq 'GET' || $req->{method} eq 'HEAD')
        && $req->{path} =~ m{(?:^|/)(?:health|slots|metrics|models)$};
}


# a health probe: what a llama.cpp, vLLM or OpenAI-style server says of
# itself; recorded apart, in NAME.probes.jsonl

sub probe {
    my ($req, $ctl) = @_;

    my $mode = $ctl->{probe_mode}
               // (($ctl->{mode} // '') =~ /^(?:hang|status|reset)$/
                   ? $ctl->{mode} : 'ok');
    my $p = $req->{path};

    sysopen my $fh, "$dir/$name.probes.jsonl", O_WRONLY | O_APPEND | O_CREAT
        or die "mock $name: probes: $!\n";
    flock($fh, LOCK_EX);
    syswrite($fh, $JSON->encode({ ts => time, path => $req->{target},
                                  mode => $mode,
                                  authorization =>
                                      $req->{headers}{authorization} })
                  . "\n");
    close $fh;

    if ($mode eq 'hang') {
        pause($ctl->{hang_s} // 30);
        return 0;
    }

    if ($mode eq 'reset') {
        setsockopt($conn, SOL_SOCKET, SO_LINGER, pack('ii', 1, 0));
        return 0;
    }

    if ($mode eq 'status') {
        return send_error($req, $ctl, $ctl->{status} // 500,
                          "mock $name failure", 'server_error',
                          'mock_failure');
    }

    if ($p =~ m{(?:^|/)health$}) {
        return send_body($req, $ctl, 503, 'application/json',
                         ojson(obj(error => obj(code => 503,
                                                message => 'Loading model',
                                                type => 'unavailable_error'))))
            if $ctl->{loading};
        return send_body($req, $ctl, 200, 'application/json',
                         ojson(obj(status => 'ok')));
    }

    if ($p =~ m{(?:^|/)slots$}) {
        my $busy = in_progress();
        return send_body($req, $ctl, 200, 'application/json',
            ojson([ map { obj(id => $_ - 1,
                              is_processing => $_ <= $busy
                                               ? JSON::PP::true
                                               : JSON::PP::false) }
                    1 .. ($ctl->{slots} // 1) ]));
    }

    if ($p =~ m{(?:^|/)metrics$}) {
        my $running = in_progress();
        my $waiting = $ctl->{waiting} // 0;
        return send_body($req, $ctl, 200, 'text/plain; version=0.0.4',
            "# TYPE vllm:num_requests_running gauge\n"
            . "vllm:num_requests_running{model_name=\"m\"} $running.0\n"
            . "# TYPE vllm:num_requests_waiting gauge\n"
            . "vllm:num_requests_waiting{model_name=\"m\"} $waiting.0\n");
    }

    return answer($req, $ctl);
}


# requests in progress now (other children), without counting oneself

sub in_progress {
    return with_lock(sub {
        opendir my $dh, $active_dir or return 0;
        my $n = grep { /^(\d+)$/ && kill(0, $1) } readdir $dh;
        closedir $dh;
        return $n;
    });
}


sub request_json {
    my ($req) = @_;

    my $data = eval { $JSON->decode($req->{body}) };
    return ref $data eq 'HASH' ? $data : undef;
}


sub answer {
    my ($req, $ctl) = @_;

    my $m = $req->{method} eq 'HEAD' ? 'GET' : $req->{method};
    my $p = $req->{path};

    if ($m eq 'GET' && $p =~ m{(?:^|/)health$}) {
        return send_body($req, $ctl, 200, 'application/json',
                         ojson(obj(status => 'ok')));
    }

    if ($m eq 'GET' && $p =~ m{/models$}) {
        my @ids = ref $ctl->{models} eq 'ARRAY' ? @{ $ctl->{models} } : ();
        return send_body($req, $ctl, 200, 'application/json', ojson(obj(
            object => 'list',
            data   => [ map { obj(id => $_, object => 'model',
                                  created => 1700000000, owned_by => $name) }
                        @ids ],
        )));
    }

    if ($m eq 'POST' && $p =~ m{/audio/transcriptions$}) {
        return transcription($req, $ctl);
    }

    my ($kind) = $m eq 'POST'
        && $p =~ m{/(chat/completions|embeddings|audio/speech|responses)$};

    if (!$kind) {
        return send_error($req, $ctl, 404, "mock $name: no route for $m $p",
                          'invalid_request_error', 'not_found');
    }

    my $json = request_json($req);

    if (!$json) {
        return send_error($req, $ctl, 400,
            "mock $name: request body is not a JSON object",
            'invalid_request_error', 'invalid_json');
    }

    my $model = $json->{model};
    my $stream = $json->{stream} ? 1 : 0;

    if ($kind eq 'audio/speech') {
        return send_body($req, $ctl, 200, 'audio/mpeg',
                         join('', map { chr } 0 .. 255) x 16);
    }

    if ($kind eq 'embeddings') {
        return send_body($req, $ctl, 200, 'application/json', ojson(obj(
            object => 'list',
            data   => [ obj(object => 'embedding', index => 0,
                            embedding => [0.1, 0.2, 0.3]) ],
            model  => $model,
            ($ctl->{no_usage} ? () : (usage => obj(prompt_tokens => 3, total_tokens => 3))),
        )));
    }

    if ($stream) {
        return stream($req, $ctl, $kind, $json, $ctl->{stream_chunks} // 3, 1);
    }

    my $content = $ctl->{content} // "Hello from $name";
    my ($pt, $ct, $tt) = usage_of($ctl);

    if ($kind eq 'chat/completions' && defined $ctl->{chat_body}) {
        my $body = $ctl->{chat_body};
        utf8::encode($body);
        return send_body($req, $ctl, 200, 'application/json', $body);
    }

    if ($kind eq 'responses') {
        return send_body($req, $ctl, 200, 'application/json', ojson(obj(
            id     => 'resp_mock',
            object => 'response',
            model  => $model,
            output => [ obj(type => 'message', role => 'assistant',
                            content => [ obj(type => 'output_text',
                                             text => $content) ]) ],
            (usage_obj($ctl, 'responses') ? (usage => usage_obj($ctl, 'responses')) : ()),
        )));
    }

    my @calls = tool_calls($ctl, $json);
    my $message = @calls
        ? obj(role => 'assistant',
              content => (length $content && defined $ctl->{content}
                          ? $content : undef),
              tool_calls => [ map { obj(id => $_->{id}, type => 'function',
                                        function => obj(name => $_->{name},
                                            arguments => $_->{arguments})) }
                              @calls ])
        : obj(role => 'assistant', content => $content);

    return send_body($req, $ctl, 200, 'application/json', ojson(obj(
        id      => 'chatcmpl-mock',
        object  => 'chat.completion',
        created => int(time),
        model   => $model,
        choices => [ obj(index => 0,
                         message => $message,
                         finish_reason => $ctl->{finish_reason}
                                          // (@calls ? 'tool_calls' : 'stop')) ],
        (usage_obj($ctl, 'chat') ? (usage => usage_obj($ctl, 'chat')) : ()),
    )));
}


# SSE events of one stream; $complete adds the closing events

sub events {
    my ($ctl, $kind, $json, $n, $complete) = @_;

    my $model = $json->{model};
    my ($pt, $ct, $tt) = usage_of($ctl);
    my @ev;

    if ($kind eq 'responses') {
        # the event sequence of the API: the opening events go with the
        # first delta (a gate or a drop counts deltas), numbered from 0
        my $seq = 0;
        my $text = join('', map { "tok$_ " } 1 .. $n);
        my $ev = sub {
            my ($type, @kv) = @_;
            return "event: $type\ndata: "
                . ojson(obj(type => $type, sequence_number => $seq++, @kv))
                . "\n\n";
        };
        my $resp = sub {
            my ($status, $output, @more) = @_;
            return obj(id => 'resp_mock', object => 'response',
                       created_at => 1700000000, model => $model,
                       status => $status, output => $output, @more);
        };
        my $msg = sub {
            my ($status, @content) = @_;
            return obj(type => 'message', id => 'msg_mock', status => $status,
                       role => 'assistant', content => [@content]);
        };
        my $part = sub {
            return obj(type => 'output_text', text => $_[0], annotations => []);
        };

        my $lead = $ev->('response.created', response => $resp->('in_progress', []))
            . $ev->('response.in_progress', response => $resp->('in_progress', []))
            . $ev->('response.output_item.added', output_index => 0,
                    item => $msg->('in_progress'))
            . $ev->('response.content_part.added', item_id => 'msg_mock',
                    output_index => 0, content_index => 0, part => $part->(''));

        for my $i (1 .. $n) {
            push @ev, ($i == 1 ? $lead : '')
                . $ev->('response.output_text.delta', item_id => 'msg_mock',
                        output_index => 0, content_index => 0,
                        delta => "tok$i ");
        }

        if ($complete) {
            push @ev, $ev->('response.output_text.done', item_id => 'msg_mock',
                            output_index => 0, content_index => 0, text => $text)
                . $ev->('response.content_part.done', item_id => 'msg_mock',
                        output_index => 0, content_index => 0,
                        part => $part->($text))
                . $ev->('response.output_item.done', output_index => 0,
                        item => $msg->('completed', $part->($text)))
                . $ev->('response.completed', response => $resp->('completed',
                    [ $msg->('completed', $part->($text)) ],
                    (usage_obj($ctl, 'responses')
                     ? (usage => usage_obj($ctl, 'responses')) : ())));
        }

        return @ev;
    }

    if (ref $ctl->{chat_events} eq 'ARRAY') {
        # the control's text, as the UTF-8 bytes it was written in
        my @raw = map { my $b = $_; utf8::encode($b); $b } @{ $ctl->{chat_events} };
        return $complete ? @raw : @raw[0 .. ($n < @raw ? $n : @raw) - 1];
    }

    my @calls = tool_calls($ctl, $json);
    my $chunk = sub {
        return 'data: ' . ojson(obj(
            id      => 'chatcmpl-mock',
            object  => 'chat.completion.chunk',
            model   => $model,
            choices => [ obj(index => 0, @_) ],
        )) . "\n\n";
    };

    if (!@calls || defined $ctl->{content}) {
        for my $i (1 .. $n) {
            push @ev, $chunk->(delta => obj(content => "tok$i "));
        }
    }

    for my $i (0 .. $#calls) {
        my $c = $calls[$i];
        my $args = $c->{arguments} // '';
        my $third = int((length($args) + 2) / 3);

        push @ev, $chunk->(delta => obj(tool_calls => [ obj(
            index => $i, id => $c->{id}, type => 'function',
            function => obj(name => $c->{name}, arguments => '')) ]));

        for my $k (0 .. 2) {
            my $piece = substr($args, $k * $third, $third);
            next unless length $piece;
            push @ev, $chunk->(delta => obj(tool_calls => [ obj(
                index => $i, function => obj(arguments => $piece)) ]));
        }
    }

    if ($complete && (@calls || defined $ctl->{finish_reason})) {
        push @ev, $chunk->(delta => obj(),
                           finish_reason => $ctl->{finish_reason}
                                            // 'tool_calls');
    }

    if ($complete) {
        my $so = $json->{stream_options};
        if (ref $so eq 'HASH' && $so->{include_usage} && !$ctl->{no_usage}) {
            push @ev, 'data: ' . ojson(obj(
                id      => 'chatcmpl-mock',
                object  => 'chat.completion.chunk',
                model   => $model,
                choices => [],
                usage   => usage_obj($ctl, 'chat'),
            )) . "\n\n";
        }

        push @ev, "data: [DONE]\n\n";
    }

    return @ev;
}


# the tool calls a chat answer makes (control tool_calls)

sub tool_calls {
    my ($ctl, $json) = @_;

    return () unless ref $ctl->{tool_calls} eq 'ARRAY';

    if ($ctl->{tool_calls_once} && ref $json eq 'HASH'
        && ref $json->{messages} eq 'ARRAY' && @{ $json->{messages} }
        && ref $json->{messages}[-1] eq 'HASH'
        && ($json->{messages}[-1]{role} // '') eq 'tool')
    {
        return ();
    }
    return grep { ref $_ eq 'HASH' } @{ $ctl->{tool_calls} };
}


sub stream {
    my ($req, $ctl, $kind, $json, $n, $complete) = @_;

    my $interval = ($ctl->{stream_interval_ms} // 0) / 1000;

    write_all(head($req, $ctl, 200,
                   'Content-Type' => 'text/event-stream',
                   'Cache-Control' => 'no-cache',
                   'Transfer-Encoding' => 'chunked'))
        or return 0;

    my @events = events($ctl, $kind, $json, $n, $complete);

    # the events joined, in the pieces asked for: each its own chunk
    @events = pieces($ctl, join '', @events)
        if ref $ctl->{split_body} eq 'ARRAY';

    my $i = 0;
    for my $ev (@events) {
        if ($i == 1 && defined $ctl->{stream_gate}) {
            wait_gate("$dir/$ctl->{stream_gate}") or return 0;
        }
        if ($i++ && $interval > 0) {
            pause($interval) or return 0;
        }
        if ($i > 1 && ref $ctl->{split_body} eq 'ARRAY') {
            # a read of the gateway's for each piece
            pause(0.02) or return 0;
        }
        if ($ctl->{split_events}) {
            # two reads for the gateway: each half a chunk of its own
            my $half = int(length($ev) / 2);
            write_all(chunk(substr($ev, 0, $half))) or return 0;
            pause(0.05) or return 0;
            write_all(chunk(substr($ev, $half))) or return 0;
            next;
        }
        write_all(chunk($ev)) or return 0;
    }

    return 0 unless $complete;

    unregister();    # before the last bytes, as in send_body()
    write_all("0\r\n\r\n") or return 0;

    return $req->{keep};
}


# mode drop: a stream cut after drop_after events, or for a non-stream
# request a Content-Length body cut in half; then the connection closes

sub drop {
    my ($req, $ctl) = @_;

    my $json = request_json($req) // {};
    my ($kind) = $req->{path} =~ m{/(chat/completions|responses)$};

    if ($json->{stream} && $kind) {
        stream($req, $ctl, $kind, $json, $ctl->{drop_after} // 2, 0);
        return;
    }

    my $body = ojson(obj(
        id      => 'chatcmpl-mock',
        object  => 'chat.completion',
        model   => $json->{model},
        choices => [ obj(index => 0,
                         message => obj(role => 'assistant',
                                        content => "Hello from $name"),
                         finish_reason => 'stop') ],
    ));

    write_all(head($req, $ctl, 200, 'Content-Type' => 'application/json',
                   'Content-Length' => length $body)
              . substr($body, 0, int(length($body) / 2)));
}


sub transcription {
    my ($req, $ctl) = @_;

    my $ct = $req->{headers}{'content-type'} // '';
    my ($b1, $b2) = $ct =~ m{^multipart/form-data\s*;.*?\bboundary=(?:"([^"]+)"|([^;\s]+))}i;
    my $boundary = $b1 // $b2;

    if (!defined $boundary) {
        return send_error($req, $ctl, 400,
            "mock $name: transcriptions need multipart/form-data",
            'invalid_request_error', 'invalid_multipart');
    }

    my %fields = multipart_fields($req->{body}, $boundary);

    if (!defined $fields{model}) {
        return send_error($req, $ctl, 400,
            "mock $name: multipart body has no model field",
            'invalid_request_error', 'invalid_multipart');
    }

    my $u = ref $ctl->{usage} eq 'HASH' ? $ctl->{usage} : {};

    return send_body($req, $ctl, 200, 'application/json', ojson(obj(
        text  => "mock transcription by $name",
        model => $fields{model},
        (defined $u->{seconds} && !$ctl->{no_usage}
         ? (usage => obj(type => 'duration', seconds => $u->{seconds})) : ()),
    )));
}


# name => value of each part of a multipart/form-data body (RFC 7578)

sub multipart_fields {
    my ($body, $boundary) = @_;

    my @parts = split /\r\n--\Q$boundary\E/, "\r\n$body";
    shift @parts;   # preamble

    my %f;

    for my $part (@parts) {
        last if $part =~ /^--/;

        $part =~ s/^[ \t]*\r\n// or next;

        my $sep = index($part, "\r\n\r\n");
        next if $sep < 0;

        my $headers = substr($part, 0, $sep);
        my $value = substr($part, $sep + 4);

        my ($disp) = $headers =~ /^content-disposition:\s*(.*)$/mi or next;
        my ($n1, $n2) = $disp =~ /\bname=(?:"([^"]*)"|([^;\s]+))/i;
        my $fname = $n1 // $n2;
        next unless defined $fname;

        $f{$fname} = $value unless exists $f{$fname};
    }

    return %f;
}
