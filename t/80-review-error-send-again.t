#!/usr/bin/perl

# Review finding: an error response that the module sends from
# ngx_http_tailgate_ask() (model name over 256 bytes, /v1/models/{id} over
# 256 bytes, policyd unreachable) returns the output filter's code, and the
# callers take NGX_AGAIN ("the client socket is full right now") for "parked,
# waiting for policyd".  The request is then never finalized: the rest of
# the response is never sent, no timer is armed, and the connection leaks
# until the worker exits ("open socket left").
#
# A full client socket is made with HTTP/1.1 pipelining into a small
# sndbuf while the client does not read - what any slow client over a slow
# link does.  The control case (404 for an unknown URL, which nginx
# finalizes correctly) delivers every response on the same setup.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use IO::Socket::INET;
use Socket qw(SOL_SOCKET SO_RCVBUF pack_sockaddr_in inet_aton);
use Time::HiRes qw(sleep time);
use JSON::PP ();
use Tailgate::Gateway;

my $t = Tailgate::Gateway->new->skip_unless_built;

my $key = $t->start_gateway(
    locations => 'listen 127.0.0.1:%%PORT:small%% sndbuf=4096;'
                 . ' listen 127.0.0.1:%%PORT:h2%% http2;'
                 . ' include tailgate/locations.conf;');

my $port = $t->port('small');
my $K = 80;

# sends $K pipelined copies of $req without reading, waits, then reads
# everything; returns the number of complete JSON error bodies received

sub pipelined {
    my ($req) = @_;

    my $last = $req =~ s/\r\nHost: x\r\n/\r\nHost: x\r\nConnection: close\r\n/r;
    my $all = ($req x ($K - 1)) . $last;

    my $s = IO::Socket::INET->new(Proto => 'tcp') or die "socket: $!\n";
    setsockopt($s, SOL_SOCKET, SO_RCVBUF, 2048) or die "SO_RCVBUF: $!\n";
    $s->connect(pack_sockaddr_in($port, inet_aton('127.0.0.1')))
        or die "connect: $!\n";
    $s->blocking(0);

    my $off = 0;
    my $deadline = time + 5;

    while ($off < length $all && time < $deadline) {
        my $w = syswrite($s, $all, 65536, $off);
        if (defined $w) { $off += $w } else { sleep 0.01 }
    }

    sleep 0.5;

    my ($raw, $eof) = ('', 0);
    $deadline = time + 4;

    while (time < $deadline) {
        my $rin = '';
        vec($rin, fileno($s), 1) = 1;
        next unless select(my $rout = $rin, undef, undef, 0.2);
        my $n = sysread($s, my $buf, 65536);
        if (defined $n && $n == 0) { $eof = 1; last }
        $raw .= $buf if $n;
    }

    close $s;

    my $bodies = () = $raw =~ m{"\}\}\n|null\}\}\n}g;
    return ($bodies, $eof);
}

my $auth = "Authorization: Bearer $key\r\n";
my $long = 'm' x 300;
my $json = qq({"model":"$long","messages":[]});

my ($n, $eof) = pipelined("POST /v1/nope HTTP/1.1\r\nHost: x\r\n$auth"
                          . "Content-Length: 2\r\n\r\n{}");
is($n, $K, "control: $K pipelined 404 unknown_url, all delivered");
ok($eof, 'control: and the connection closed after the last');

($n, $eof) = pipelined("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n$auth"
                       . "Content-Type: application/json\r\n"
                       . "Content-Length: " . length($json) . "\r\n\r\n$json");
is($n, $K, "$K pipelined chat requests with a 300-byte model: all 404s delivered");
ok($eof, 'and the connection closed after the last');

($n, $eof) = pipelined("GET /v1/models/$long HTTP/1.1\r\nHost: x\r\n$auth\r\n");
is($n, $K, "$K pipelined GET /v1/models/{300 bytes}: all 404s delivered");
ok($eof, 'and the connection closed after the last');

# the same with one HTTP/2 request and a client whose stream window (50
# bytes) is smaller than the error body: the first DATA frame leaves, the
# rest waits for a WINDOW_UPDATE that nginx never acts on (POST), or the
# phase handler runs again and sends a second header (GET: "[alert] header
# already sent", stream reset).  Needs node for an HTTP/2 client.

my $H2 = <<'JS';
const http2 = require('http2');
const [port, path, key, method, body] = process.argv.slice(1);
const c = http2.connect('http://127.0.0.1:' + port,
                        { settings: { initialWindowSize: 50 } });
c.on('error', () => {});
const h = { ':path': path, ':method': method, authorization: 'Bearer ' + key };
if (body) h['content-type'] = 'application/json';
const r = c.request(h);
let data = '', status = 0, done = false;
r.on('response', x => { status = x[':status']; });
r.on('data', d => { data += d; });
r.on('error', () => {});
r.on('end', () => { done = true; });
if (body) r.end(body); else r.end();
setTimeout(() => { console.log(JSON.stringify({ status, done, data }));
                   process.exit(0); }, 2000);
JS

SKIP: {
    skip 'node is needed for an HTTP/2 client', 3
        unless system('node -e 1 >/dev/null 2>&1') == 0;

    my $h2 = sub {
        my @args = ($t->port('h2'), @_);
        my $out = do {
            open my $fh, '-|', 'node', '-e', $H2, @args or die "node: $!\n";
            local $/; <$fh>;
        };
        return JSON::PP->new->decode($out || '{}');
    };

    my $r = $h2->('/v1/nope', $key, 'POST', '{}');
    ok($r->{done} && $r->{data} =~ /\}\}\n$/,
       'HTTP/2, window 50, control: the whole 404 unknown_url arrives');

    $r = $h2->('/v1/chat/completions', $key, 'POST', $json);
    ok($r->{done} && $r->{data} =~ /\}\}\n$/,
       'HTTP/2, window 50: the whole 404 for a 300-byte model arrives')
        or diag("got $r->{status}, " . length($r->{data}) . " bytes, "
                . ($r->{done} ? 'ended' : 'never ended'));

    $r = $h2->("/v1/models/$long", $key, 'GET');
    ok($r->{done} && $r->{data} =~ /\}\}\n$/,
       'HTTP/2, window 50: the whole 404 for /v1/models/{300 bytes} arrives')
        or diag("got $r->{status}, " . length($r->{data}) . " bytes, "
                . ($r->{done} ? 'ended' : 'never ended'));
}

# policyd down: every request is answered 503 from the same place
$t->stop_policyd;
$t->allow_log(qr/cannot connect to policyd/, qr/policyd connection #\d+ closed/);

my $ok = qq({"model":"qwen","messages":[]});
($n, $eof) = pipelined("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n$auth"
                       . "Content-Type: application/json\r\n"
                       . "Content-Length: " . length($ok) . "\r\n\r\n$ok");
is($n, $K, "policyd down: $K pipelined 503s all delivered");
ok($eof, 'and the connection closed after the last');

# a graceful stop must find no request stuck without a timer
$t->signal('nginx', 'QUIT');
$t->wait_for(sub { !$t->running('nginx') }, timeout => 10);
unlike($t->error_log, qr/open socket #\d+ left/,
       'graceful shutdown: no connection was left behind');

$t->done_testing;
