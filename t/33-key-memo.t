#!/usr/bin/perl

# A keep-alive connection remembers which API key it last sent (a SipHash
# tag of it, not the key), so that the next request with the same key skips
# the SHA-256.  What the memo must never do: let another credential through
# on the strength of an earlier one, outlive a key's expiry, or carry a key
# into a location that reads a different key file.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Digest::SHA qw(sha256_hex);
use POSIX qw(strftime);
use Test::More;
use Time::HiRes qw(time sleep);
use Tailgate::Gateway;

my $t = Tailgate::Gateway->new->skip_unless_built;

my %key = map { $_ => $t->new_key } qw(ann ben soon);

# expires a few seconds from now; the key file has second precision
my $expiry = time + 4;
my $soon = strftime('%Y-%m-%dT%H:%M:%SZ', gmtime(int $expiry));

$t->write_file('other.keys', sha256_hex($key{ben}) . " ben-elsewhere\n");

$t->start_gateway(
    keys => [
        ann  => $key{ann},
        ben  => $key{ben},
        soon => { key => $key{soon}, expires => $soon },
    ],
    http => q{
        log_format memo '$connection $connection_requests $tailgate_client '
                        '$status';
        access_log %%DIR%%/memo.log memo;
    },
    server => q{
        location /alt/v1/ {
            tailgate on;
            tailgate_keys %%DIR%%/other.keys;
            include tailgate/proxy.conf;
        }
    });

my $body = '{"model":"qwen","messages":[{"role":"user","content":"hi"}]}';


# one connection, requests in turn: [status, ...] in order

sub on_one_connection {
    my (@steps) = @_;

    my $conn = $t->raw_connect;
    my @status;

    for my $step (@steps) {
        if (ref $step eq 'CODE') {
            $step->();
            next;
        }

        my ($header, $credential, $prefix) = @$step;
        my $req = "POST " . ($prefix // '') . '/v1/chat/completions HTTP/1.1'
                . "\r\nHost: localhost\r\n"
                . "$header: " . ($header eq 'Authorization' ? 'Bearer ' : '')
                . "$credential\r\nContent-Type: application/json\r\n"
                . 'Content-Length: ' . length($body) . "\r\n\r\n$body";

        $conn->write_bytes($req) == length $req or die "write: $!\n";

        my ($status) = $conn->read_response(10);
        push @status, $status;
    }

    $conn->close;
    return @status;
}

# the access log lines of one connection, as "requests client status"
sub connection_log {
    my @lines = split /\n/, ($t->read_file('memo.log') // '');
    my %by;

    for (@lines) {
        my ($conn, $n, $client, $status) = split / /;
        push @{ $by{$conn} }, "$n $client $status";
    }

    return \%by;
}

sub last_connection {
    my $by = connection_log();
    my ($last) = sort { $b <=> $a } keys %$by;
    return $by->{$last};
}


subtest 'the same key again on a connection: the same identity' => sub {
    my @st = on_one_connection(
        ([Authorization => $key{ann}]) x 3);

    is_deeply(\@st, [200, 200, 200], 'three requests answered');

    $t->wait_for(sub { @{ last_connection() // [] } == 3 }, timeout => 5);
    is_deeply(last_connection(), ['1 ann 200', '2 ann 200', '3 ann 200'],
              'all three as ann, on one connection');
};

subtest 'another credential after a good one is judged on its own' => sub {
    my $wrong = $t->new_key;
    my $close = substr($key{ann}, 0, -1)
              . (substr($key{ann}, -1) eq '0' ? '1' : '0');

    my @st = on_one_connection(
        [Authorization => $key{ann}],
        [Authorization => $wrong],
        [Authorization => $close],
        ['X-Api-Key' => $close],
        [Authorization => $key{ben}],
        [Authorization => $key{ann}],
        ['X-Api-Key' => $key{ann}]);

    is_deeply(\@st, [200, 401, 401, 401, 200, 200, 200],
              'unknown and near-miss keys get 401 after a good key');

    $t->wait_for(sub { @{ last_connection() // [] } == 7 }, timeout => 5);
    my @clients = map { (split / /)[1] } @{ last_connection() };
    is_deeply([ @clients[0, 4, 5, 6] ], [qw(ann ben ann ann)],
              'each accepted request has its own key\'s identity');
};

subtest 'a remembered key still expires' => sub {
    my @st = on_one_connection(
        [Authorization => $key{soon}],
        sub { sleep 0.1 while time < $expiry + 1.2 },
        [Authorization => $key{soon}]);

    is($st[0], 200, 'accepted before its expiry');
    is($st[1], 401, 'refused after it, on the same connection');
    like($t->error_log, qr/the API key has expired/,
         'the log says it expired');
};

subtest 'a location with another key file does not take the memo' => sub {
    my @st = on_one_connection(
        [Authorization => $key{ann}],
        [Authorization => $key{ann}, '/alt'],
        [Authorization => $key{ben}],
        [Authorization => $key{ben}, '/alt'],
        [Authorization => $key{ben}]);

    is_deeply(\@st, [200, 401, 200, 200, 200],
              'ann is unknown to the other key file, ben is known to both');

    $t->wait_for(sub { @{ last_connection() // [] } == 5 }, timeout => 5);
    my @clients = map { (split / /)[1] } @{ last_connection() };
    is_deeply([ @clients[0, 2, 3, 4] ], [qw(ann ben ben-elsewhere ben)],
              'each identity comes from the key file of its location');
};

$t->done_testing;
