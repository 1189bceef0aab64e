#!/usr/bin/perl

# A DNS server on loopback for Tailgate's tests: UDP, A and AAAA only.
#
#   perl mock_dns.pl --zone FILE --log FILE --ready FILE [--port P]
#
# It binds 127.0.0.1:P, or a port of the system's choice without --port,
# and writes "pid port" to --ready once it listens.
#
# FILE (--zone) is JSON, read again for every query, so a test changes an
# answer by rewriting it:
#
#   { "provider.test": { "a": ["127.0.0.1"], "aaaa": [], "ttl": 1,
#                        "mode": "ok" } }
#
# mode: "ok" (the addresses; none of the asked type is an empty NOERROR
# answer), "empty" (NOERROR, no record), "servfail", "nxdomain", "drop"
# (no answer at all: the resolver times out).  A name not in the file is
# NXDOMAIN.  Every query is appended to --log as a JSON line
# {"ts","name","type","mode"}.  The answers are encoded by hand (the
# format is small, and no DNS library is needed); nginx's resolver parses
# them.

use strict;
use warnings;

use Getopt::Long qw(GetOptions);
use IO::Socket::INET;
use JSON::PP ();
use Socket qw(inet_pton AF_INET AF_INET6);
use Time::HiRes qw(time);

my ($port, $zone, $log, $ready) = (0);
GetOptions('port=i' => \$port, 'zone=s' => \$zone, 'log=s' => \$log,
           'ready=s' => \$ready)
    && $zone && $log && $ready
    or die "usage: $0 --zone FILE --log FILE --ready FILE [--port P]\n";

my $JSON = JSON::PP->new->canonical->utf8;

my %TYPE = (1 => 'A', 28 => 'AAAA');
my %RCODE = (ok => 0, empty => 0, servfail => 2, nxdomain => 3);

my $sock = IO::Socket::INET->new(
    LocalAddr => '127.0.0.1',
    LocalPort => $port,
    Proto     => 'udp',
) or die "mock dns: cannot bind 127.0.0.1:$port/udp: $!\n";

{
    open my $fh, '>', "$ready.$$" or die "mock dns: $ready: $!\n";
    print $fh "$$ ", $sock->sockport, "\n";
    close $fh;
    rename "$ready.$$", $ready or die "mock dns: rename: $!\n";
}

# the parent (the test) gone: stop
my $parent = getppid();

while (1) {
    my $peer = $sock->recv(my $query, 4096);

    exit 0 if getppid() != $parent;
    next unless defined $peer && length $query >= 12;

    my $answer = eval { answer($query) };
    warn "mock dns: $@" if $@;

    $sock->send($answer, 0, $peer) if defined $answer;
}


sub zone {
    open my $fh, '<:raw', $zone or return {};
    local $/;
    my $text = <$fh>;
    close $fh;
    return eval { $JSON->decode($text) } // {};
}


sub note {
    my (%rec) = @_;
    open my $fh, '>>', $log or return;
    print $fh $JSON->encode({ ts => time, %rec }), "\n";
    close $fh;
}


sub answer {
    my ($query) = @_;

    my ($id, $flags, $qdcount) = unpack 'n n n', $query;

    return undef if $flags & 0x8000;            # a response, not a query
    return undef unless $qdcount == 1;

    # the question: labels, then type and class

    my ($pos, @labels) = (12);

    while (1) {
        die "question runs past the packet\n" if $pos >= length $query;
        my $len = ord substr($query, $pos, 1);
        $pos++;
        last if $len == 0;
        die "compressed or long label in a question\n" if $len > 63;
        push @labels, substr($query, $pos, $len);
        $pos += $len;
    }

    die "question without type and class\n" if $pos + 4 > length $query;

    my ($qtype, $qclass) = unpack 'n n', substr($query, $pos, 4);
    my $question = substr($query, 12, $pos + 4 - 12);
    my $name = lc join '.', @labels;

    my $rec = zone()->{$name};
    my $mode = $rec ? $rec->{mode} // 'ok' : 'nxdomain';

    note(name => $name, type => $TYPE{$qtype} // $qtype, mode => $mode);

    return undef if $mode eq 'drop';

    my $rcode = $RCODE{$mode} // 2;
    my @rdata;

    if ($mode eq 'ok' && $qclass == 1) {
        my ($key, $family, $len) = $qtype == 1  ? ('a', AF_INET, 4)
                                 : $qtype == 28 ? ('aaaa', AF_INET6, 16)
                                 : ();
        if ($key) {
            for my $addr (@{ $rec->{$key} // [] }) {
                my $bin = inet_pton($family, $addr);
                push @rdata, $bin if defined $bin && length $bin == $len;
            }
        }
    }

    my $ttl = $rec ? $rec->{ttl} // 1 : 1;

    # QR, the query's opcode and RD, AA, RA, the code
    my $rflags = 0x8000 | ($flags & 0x7900) | 0x0400 | 0x0080 | $rcode;

    my $packet = pack('n n n n n n', $id, $rflags, 1, scalar @rdata, 0, 0)
                 . $question;

    for my $bin (@rdata) {
        # the name as a pointer to the question's (offset 12)
        $packet .= pack('n n n N n', 0xc00c, $qtype, 1, $ttl, length $bin)
                   . $bin;
    }

    return $packet;
}
