#!/usr/bin/perl

# A mock identity provider for Tailgate's key set tests: it serves a JWKS
# and an OpenID discovery document over HTTP/1.1 on 127.0.0.1, as the test
# tells it, and records every request.
#
#   perl mock_jwks.pl --port P --name NAME --dir DIR
#
# Files in DIR, named after the mock:
#   NAME.control.json     what to serve (read on every request), below
#   NAME.requests.jsonl   one JSON line per request: ts, method, path,
#                         headers (lower-case names), answered (status)
#   NAME.ready            written once listening: "pid port\n"
#
# control.json: { "paths": { "/jwks.json": ANSWER, ... }, "mode": "ok" }
#   mode     ok | reset (close every connection at once, answering nothing)
#   ANSWER   { status (200), body (text), etag, cache_control, expires,
#              last_modified, headers {name: value}, delay_ms (0) }
# A request whose If-None-Match is the answer's etag gets 304 with the
# same cache headers and no body.  A path not listed gets 404.
# Tailgate::JWKS (t/lib/Tailgate/JWKS.pm) drives it.

use strict;
use warnings;

use Getopt::Long qw(GetOptions);
use IO::Socket::INET;
use IO::Select;
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(time sleep);
use Fcntl qw(:flock O_WRONLY O_APPEND O_CREAT);
use JSON::PP ();

my $JSON = JSON::PP->new->canonical->utf8;

my %REASON = (200 => 'OK', 304 => 'Not Modified', 404 => 'Not Found',
              500 => 'Internal Server Error', 503 => 'Service Unavailable');

my $IDLE_S   = 10;
my $MAX_HEAD = 64 * 1024;

my ($port, $name, $dir);
GetOptions('port=i' => \$port, 'name=s' => \$name, 'dir=s' => \$dir)
    && $port && defined $name && $name =~ /^[\w.-]+$/ && defined $dir && -d $dir
    or die "usage: $0 --port P --name NAME --dir DIR\n";

my $listen = IO::Socket::INET->new(
    LocalAddr => '127.0.0.1', LocalPort => $port, Listen => 64,
    ReuseAddr => 1, Proto => 'tcp',
) or die "listen 127.0.0.1:$port: $!\n";

$SIG{CHLD} = sub { 1 while waitpid(-1, WNOHANG) > 0 };
$SIG{TERM} = sub { exit 0 };

{
    open my $fh, '>', "$dir/$name.ready.tmp" or die "ready: $!\n";
    print $fh "$$ $port\n";
    close $fh;
    rename "$dir/$name.ready.tmp", "$dir/$name.ready" or die "ready: $!\n";
}

for (;;) {
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
    open my $fh, '<:raw', "$dir/$name.control.json" or return {};
    local $/;
    my $text = <$fh>;
    close $fh;
    return eval { $JSON->decode($text) } // {};
}


sub record {
    my ($r) = @_;
    sysopen(my $fh, "$dir/$name.requests.jsonl", O_WRONLY | O_APPEND | O_CREAT)
        or return;
    flock($fh, LOCK_EX);
    syswrite($fh, $JSON->encode($r) . "\n");
    close $fh;
}


sub serve {
    my ($c) = @_;
    my $sel = IO::Select->new($c);
    my $buf = '';

    for (;;) {
        # one request's head
        while ($buf !~ /\r?\n\r?\n/) {
            return unless $sel->can_read($IDLE_S);
            my $n = sysread($c, $buf, 8192, length $buf);
            return unless $n;
            return if length $buf > $MAX_HEAD;
        }

        $buf =~ s/^(.*?)\r?\n\r?\n//s;
        my ($line, @lines) = split /\r?\n/, $1;
        my ($method, $target) = ($line // '') =~ m{^(\S+) (\S+) HTTP/1\.\d$}
            or return;

        my %h;
        for (@lines) {
            my ($k, $v) = /^([^:]+):\s*(.*?)\s*$/ or next;
            $h{lc $k} = $v;
        }

        my $ctl = control();
        (my $path = $target) =~ s/\?.*//;

        if (($ctl->{mode} // 'ok') eq 'reset') {
            record({ ts => time, method => $method, path => $path,
                     headers => \%h, answered => 0 });
            return;
        }

        my $a = $ctl->{paths}{$path};
        my ($status, $body, @head);

        if (!$a) {
            ($status, $body) = (404, '{"error":"not found"}');
        } else {
            $status = $a->{status} // 200;
            $body = $a->{body} // '';
            push @head, "ETag: $a->{etag}" if defined $a->{etag};
            push @head, "Cache-Control: $a->{cache_control}"
                if defined $a->{cache_control};
            push @head, "Expires: $a->{expires}" if defined $a->{expires};
            push @head, "Last-Modified: $a->{last_modified}"
                if defined $a->{last_modified};
            push @head, "$_: $a->{headers}{$_}"
                for sort keys %{ $a->{headers} // {} };

            if ($status == 200 && defined $a->{etag}
                && defined $h{'if-none-match'}
                && $h{'if-none-match'} eq $a->{etag})
            {
                ($status, $body) = (304, '');
            }

            sleep($a->{delay_ms} / 1000) if $a->{delay_ms};
        }

        record({ ts => time, method => $method, path => $path,
                 headers => \%h, answered => $status });

        my $head = "HTTP/1.1 $status " . ($REASON{$status} // 'Status') . "\r\n"
                 . "Content-Type: application/json\r\n"
                 . ($status == 304 ? '' : "Content-Length: " . length($body) . "\r\n")
                 . join('', map { "$_\r\n" } @head)
                 . "\r\n";

        my $out = $head . ($method eq 'HEAD' || $status == 304 ? '' : $body);

        while (length $out) {
            my $n = syswrite($c, $out);
            return unless $n;
            substr($out, 0, $n, '');
        }
    }
}
