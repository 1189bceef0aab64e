#!/usr/bin/perl

# A mock DNS server for Tailgate's tests.
#
#   perl mock_dns.pl --port P --name NAME --dir DIR
#
# Answers UDP questions on 127.0.0.1:P from DIR/NAME.zone.json, read on
# every question:
#
#   { "names": { "api.example.test": ["127.0.0.2", "::1"] },
#     "rcode": 0,           answer every question with this code (2: SERVFAIL)
#     "silent": 0 }         1: answer nothing (a name server that is away)
#
# A name in "names" gets its IPv4 addresses for A and its IPv6 ones for
# AAAA (none: an empty answer); any other name NXDOMAIN.  Every question is
# one JSON line in DIR/NAME.queries.jsonl ({"name","type"}).  DIR/NAME.ready
# gets "pid port\n" once it listens.  Tailgate::DNS starts it.

use strict;
use warnings;

use Fcntl qw(:flock O_WRONLY O_APPEND O_CREAT);
use Getopt::Long qw(GetOptions);
use IO::Socket::INET;
use JSON::PP ();
use Socket qw(inet_pton AF_INET AF_INET6);

my $JSON = JSON::PP->new->canonical->utf8;

my ($port, $name, $dir);
GetOptions('port=i' => \$port, 'name=s' => \$name, 'dir=s' => \$dir)
    && $port && defined $name && $name =~ /^[\w.-]+$/ && defined $dir
    && -d $dir
    or die "usage: $0 --port P --name NAME --dir DIR\n";

my $sock = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $port,
                                 Proto => 'udp')
    or die "mock dns $name: cannot bind 127.0.0.1:$port: $!\n";

my $parent = getppid();

{
    open(my $fh, '>', "$dir/$name.ready.tmp") or die "ready: $!";
    print $fh "$$ $port\n";
    close $fh;
    rename "$dir/$name.ready.tmp", "$dir/$name.ready" or die "ready: $!";
}

sub zone {
    open(my $fh, '<', "$dir/$name.zone.json") or return {};
    my $text = do { local $/; <$fh> };
    return eval { $JSON->decode($text) } // {};
}

sub record {
    my ($q) = @_;
    sysopen(my $fh, "$dir/$name.queries.jsonl", O_WRONLY | O_APPEND | O_CREAT)
        or return;
    flock($fh, LOCK_EX);
    syswrite($fh, $JSON->encode($q) . "\n");
    close $fh;
}

# the question's name and where the question ends, or nothing
sub question {
    my ($pkt) = @_;
    my ($pos, @labels) = (12);

    for (1 .. 128) {
        return if $pos >= length $pkt;
        my $len = ord substr($pkt, $pos, 1);
        $pos++;
        last if $len == 0;
        return if $len > 63 || $pos + $len > length $pkt;
        push @labels, substr($pkt, $pos, $len);
        $pos += $len;
    }

    return if $pos + 4 > length $pkt;
    my ($type, $class) = unpack('nn', substr($pkt, $pos, 4));

    return (lc join('.', @labels), $type, $class, $pos + 4);
}

while (1) {
    # bounded: a mock whose test died goes away
    exit 0 if getppid() != $parent;

    my $rin = '';
    vec($rin, fileno($sock), 1) = 1;
    next unless select(my $rout = $rin, undef, undef, 1);

    my $from = $sock->recv(my $pkt, 4096) // next;
    next if length $pkt < 12;

    my ($id, $flags) = unpack('nn', $pkt);
    my ($qname, $type, $class, $end) = question($pkt) or next;

    record({ name => $qname, type => $type == 1 ? 'A'
                                    : $type == 28 ? 'AAAA' : $type });

    my $zone = zone();
    next if $zone->{silent};

    my $rcode = $zone->{rcode} // 0;
    my @answers;

    if ($rcode == 0) {
        my $addrs = $zone->{names}{$qname};

        if (!$addrs) {
            $rcode = 3;
        } else {
            for my $a (@$addrs) {
                my $v4 = inet_pton(AF_INET, $a);
                my $v6 = $v4 ? undef : inet_pton(AF_INET6, $a);
                my $rdata = $type == 1 ? $v4 : $type == 28 ? $v6 : undef;
                next unless defined $rdata;
                push @answers, pack('nnnNn', 0xc00c, $type, 1, 30,
                                    length $rdata) . $rdata;
            }
        }
    }

    # QR, the question's opcode and RD, RA, the code
    my $out_flags = 0x8000 | ($flags & 0x7900) | 0x0080 | $rcode;
    my $reply = pack('nnnnnn', $id, $out_flags, 1, scalar @answers, 0, 0)
                . substr($pkt, 12, $end - 12) . join('', @answers);

    $sock->send($reply, 0, $from);
}
