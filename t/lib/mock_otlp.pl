#!/usr/bin/perl

# A mock OTLP/HTTP collector for Tailgate's tests.
#
#   perl mock_otlp.pl --port P --name NAME --dir DIR
#
# Listens on 127.0.0.1:P, forks one child per TCP connection (keep-alive),
# and records every request: one JSON line in DIR/NAME.otlp.jsonl, under
# flock, with its method, path, headers (lower-case names) and body.  How
# it answers comes from DIR/NAME.control.json, read on every request:
#
#   { "status": 200,        the answer's status
#     "hang_s": 0 }         wait this long before answering (a slow one)
#
# DIR/NAME.ready gets "pid port\n" once it listens.  Tailgate::OTLP
# (t/lib/Tailgate/OTLP.pm) starts it and reads what it recorded.

use strict;
use warnings;

use Fcntl qw(:flock O_WRONLY O_APPEND O_CREAT);
use Getopt::Long qw(GetOptions);
use IO::Socket::INET;
use JSON::PP ();
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(time sleep);

my $JSON = JSON::PP->new->canonical->utf8;

my $MAX_HEAD = 64 * 1024;
my $MAX_BODY = 16 * 1024 * 1024;
my $IDLE_S   = 30;

my ($port, $name, $dir);
GetOptions('port=i' => \$port, 'name=s' => \$name, 'dir=s' => \$dir)
    && $port && defined $name && $name =~ /^[\w.-]+$/ && defined $dir
    && -d $dir
    or die "usage: $0 --port P --name NAME --dir DIR\n";

my $listen = IO::Socket::INET->new(
    LocalAddr => '127.0.0.1', LocalPort => $port, Proto => 'tcp',
    Listen => 64, ReuseAddr => 1,
) or die "mock_otlp: listen on $port: $!\n";

$SIG{CHLD} = sub { 1 while waitpid(-1, WNOHANG) > 0 };
$SIG{TERM} = sub { exit 0 };

{
    open my $fh, '>', "$dir/$name.ready.tmp" or die "ready: $!";
    print $fh "$$ $port\n";
    close $fh;
    rename "$dir/$name.ready.tmp", "$dir/$name.ready" or die "ready: $!";
}

while (1) {
    my $c = $listen->accept or next;
    my $pid = fork;

    if (!defined $pid) {
        close $c;
        next;
    }

    if ($pid == 0) {
        close $listen;
        serve($c);
        exit 0;
    }

    close $c;
}


sub control {
    open my $fh, '<', "$dir/$name.control.json" or return {};
    local $/;
    my $c = eval { $JSON->decode(<$fh> // '{}') };
    return ref $c eq 'HASH' ? $c : {};
}


sub serve {
    my ($c) = @_;

    my $buf = '';

    while (1) {
        my ($head, $rest) = read_head($c, \$buf) or return;

        my ($line, @lines) = split /\r\n/, $head;
        my ($method, $path) = $line =~ m{^(\S+) (\S+) HTTP/1\.[01]$}
            or return answer($c, 400, 'bad request line', 1);

        my %h;
        for (@lines) {
            my ($k, $v) = /^([^:]+):\s*(.*?)\s*$/ or next;
            $h{lc $k} = exists $h{lc $k} ? "$h{lc $k}, $v" : $v;
        }

        my $len = $h{'content-length'} // 0;
        return answer($c, 413, 'too large', 1)
            if $len !~ /^\d+$/ || $len > $MAX_BODY;

        my $body = $rest;
        while (length $body < $len) {
            my $n = sysread($c, my $chunk, 65536);
            return unless $n;
            $body .= $chunk;
        }
        $buf = substr($body, $len);
        $body = substr($body, 0, $len);

        my $ctl = control();

        record({ ts => time, method => $method, path => $path,
                 headers => \%h, body => $body });

        sleep($ctl->{hang_s}) if $ctl->{hang_s};

        answer($c, $ctl->{status} // 200, '{}', 0) or return;
    }
}


sub read_head {
    my ($c, $buf) = @_;

    my $deadline = time + $IDLE_S;

    while ($$buf !~ /\r\n\r\n/) {
        return if length $$buf > $MAX_HEAD || time > $deadline;
        my $n = sysread($c, my $chunk, 65536);
        return unless $n;
        $$buf .= $chunk;
    }

    my ($head, $rest) = split /\r\n\r\n/, $$buf, 2;
    $$buf = '';

    return ($head, $rest // '');
}


sub answer {
    my ($c, $status, $body, $close) = @_;

    my $text = "HTTP/1.1 $status X\r\nContent-Type: application/json\r\n"
               . "Content-Length: " . length($body) . "\r\n"
               . ($close ? "Connection: close\r\n" : '') . "\r\n" . $body;

    return syswrite($c, $text) && !$close;
}


sub record {
    my ($r) = @_;

    sysopen(my $fh, "$dir/$name.otlp.jsonl", O_WRONLY | O_APPEND | O_CREAT)
        or die "record: $!";
    flock($fh, LOCK_EX);
    syswrite($fh, JSON::PP->new->canonical->encode($r) . "\n");
    close $fh;
}
