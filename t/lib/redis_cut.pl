#!/usr/bin/perl

# A loopback TCP proxy between policyd and a real redis-server, for
# Tailgate's tests of the numbered batches (t/63-redis-reconcile.t), that
# can drop a connection at the moment that matters:
#
#   perl redis_cut.pl --port P --redis SOCKET --control FILE --log FILE
#
# It listens on 127.0.0.1:P and relays every connection to the Redis at
# the unix socket SOCKET.  It reads the commands the client sends (RESP
# arrays of bulk strings); before each EVAL it reads FILE (one line):
#
#   pass               relay it (also: no file, an empty one)
#   before SUBSTRING   an EVAL that holds SUBSTRING is not relayed: the
#                      connection is closed both ways, Redis never ran it
#   after SUBSTRING    it is relayed, nothing more is (neither way); once
#                      Redis had time to run it (0.3 s), the connection
#                      is closed both ways: its reply is lost
#   down               every connection is closed, and every new one at
#                      once: Redis is away for this client alone
#   before-down SUBSTRING, after-down SUBSTRING
#                      the same cut, then "down" (not "pass"): what was
#                      lost is not sent again until the test says so
#
# One cut a line: after it FILE says "pass" (or "down") again, and "cut
# MODE" is appended to --log (so the test knows it happened).  Commands and
# replies are relayed as bytes; only the client's are parsed.

use strict;
use warnings;

use Getopt::Long qw(GetOptions);
use IO::Select;
use IO::Socket::INET;
use IO::Socket::UNIX;
use Time::HiRes qw(sleep time);

my ($port, $redis, $control, $log);
GetOptions('port=i' => \$port, 'redis=s' => \$redis,
           'control=s' => \$control, 'log=s' => \$log)
    && $port && $redis && $control && $log
    or die "usage: $0 --port P --redis SOCKET --control FILE --log FILE\n";

my $listen = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
                                   LocalPort => $port, Proto => 'tcp',
                                   Listen => 16, ReuseAddr => 1)
    or die "redis_cut: cannot listen on 127.0.0.1:$port: $!\n";

# the test's watchdog ends it; this bounds it anyway
my $deadline = time + 600;

my $sel = IO::Select->new($listen);
my %peer;       # fileno => the other socket
my %client;     # fileno of a client socket => { buf => pending bytes }

sub note_cut {
    my ($mode, $then) = @_;
    if (open my $fh, '>>', $log) {
        print $fh "cut $mode\n";
        close $fh;
    }
    if (open my $fh, '>', $control) {
        print $fh "$then\n";
        close $fh;
    }
}

sub mode {
    open my $fh, '<', $control or return ('pass', '');
    my $line = <$fh> // '';
    close $fh;
    chomp $line;
    return ('down', '') if $line eq 'down';
    return ('pass', '') unless $line =~ /^(before|after)(-down)?\s+(.+)$/;
    return ($1, $3, $2 ? 'down' : 'pass');
}

sub close_pair {
    my ($s) = @_;
    my $o = delete $peer{fileno $s};
    for my $x ($s, $o) {
        next unless $x;
        delete $client{fileno $x};
        delete $peer{fileno $x};
        $sel->remove($x);
        close $x;
    }
}

# the length of the first whole command in $buf (0: not whole yet), and
# whether it is an EVAL
sub command_len {
    my ($buf) = @_;
    return (0, 0) unless $buf =~ /\A\*(\d+)\r\n/;
    my ($n, $pos, $eval) = ($1, length($&), 0);
    for my $i (1 .. $n) {
        my $rest = substr($buf, $pos);
        return (0, 0) unless $rest =~ /\A\$(\d+)\r\n/;
        my $len = $1;
        my $start = $pos + length($&);
        return (0, 0) if length($buf) < $start + $len + 2;
        $eval = 1 if $i == 1 && uc(substr($buf, $start, $len)) eq 'EVAL';
        $pos = $start + $len + 2;
    }
    return ($pos, $eval);
}

sub relay_client {
    my ($s, $data) = @_;
    my $c = $client{fileno $s};
    my $r = $peer{fileno $s} or return;
    $c->{buf} .= $data;

    for (;;) {
        my ($len, $eval) = command_len($c->{buf});
        return unless $len;

        my $cmd = substr($c->{buf}, 0, $len, '');

        if ($eval) {
            my ($mode, $what, $then) = mode();
            if ($mode ne 'pass' && $mode ne 'down'
                && index($cmd, $what) >= 0)
            {
                if ($mode eq 'after') {
                    syswrite($r, $cmd);
                    sleep 0.3;
                }
                close_pair($s);
                note_cut($mode, $then);
                return;
            }
        }

        syswrite($r, $cmd);
    }
}

while (time < $deadline) {
    my $down = (mode())[0] eq 'down';

    if ($down) {
        close_pair($_) for grep { $client{fileno $_} } $sel->handles;
    }

    for my $s ($sel->can_read(0.05)) {
        if ($s == $listen) {
            my $c = $listen->accept or next;
            if ($down) {
                close $c;
                next;
            }
            my $r = IO::Socket::UNIX->new(Peer => $redis);
            unless ($r) {
                close $c;
                next;
            }
            $peer{fileno $c} = $r;
            $peer{fileno $r} = $c;
            $client{fileno $c} = { buf => '' };
            $sel->add($c, $r);
            next;
        }

        next unless $peer{fileno $s};

        my $n = sysread($s, my $data, 65536);
        if (!$n) {
            close_pair($s);
            next;
        }

        if ($client{fileno $s}) {
            relay_client($s, $data);
        } else {
            syswrite($peer{fileno $s}, $data);
        }
    }
}
