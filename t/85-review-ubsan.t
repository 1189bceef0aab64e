#!/usr/bin/perl

# Review findings that are undefined behaviour in C: the release build
# (-O2) happens to survive them, `make SANITIZE=1 test` does not (the
# error.log check at the end of this test fails with "runtime error:" or
# an AddressSanitizer FPE).
#
# 1. (fixed in e0c9a85, kept as a regression test) ngx_tailgate_peer_pick()
#    computed next_peer % npeers with npeers == 0 for GET /health in a
#    worker without "tailgate on"/tailgate_policyd: SIGFPE under the
#    sanitizer build, folded into "return NULL" by gcc -O2.
#
# 2. ngx_tailgate_body_collect() (ngx_tailgate_body.c:86) copies every
#    buffer of a body that is in several buffers, including the empty
#    last_buf that nginx's chunked parser appends with pos == NULL:
#    memcpy(p, NULL, 0).  Any chunked upload to /v1/audio/transcriptions
#    (no single buffer there) that arrives in more than one read.
#
# 3. (new in e0c9a85) ngx_http_tailgate_keep() (ngx_http_tailgate_module.c
#    :1091) and ngx_tailgate_cache_put() (ngx_tailgate_cache.c:183) copy
#    reply strings that are absent (data NULL, len 0): memcpy(p, NULL, 0)
#    on every decision without an authorization, reason, error_* ...  This
#    alone makes every end-to-end test (t/10 .. t/19) fail under
#    `make SANITIZE=1 test`.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Tailgate::Gateway;

my $t = Tailgate::Gateway->new->skip_unless_built;
my $key = $t->start_gateway;

# 1: an nginx whose configuration has no tailgate_policyd

my $t2 = Tailgate::Test->new->skip_unless_built;
$t2->start_nginx(<<'EOF');
    server {
        listen 127.0.0.1:%%PORT%%;
        location = /health { tailgate_health; }
    }
EOF

my $res = $t2->http('GET', '/health');
is($res->{status}, 200, '/health without tailgate_policyd answers');
like($res->{body}, qr/"unreachable"/, 'and says policyd is unreachable');
$t2->stop_all;
$t2->{checked} = 1;    # its error.log is checked right here
ok(!grep({ /runtime error|AddressSanitizer|signal 8|exited on signal/ }
         split /\n/, $t2->error_log),
   'the worker did not divide by zero')
    or diag(join "\n", grep { /runtime error|Sanitizer|signal/ }
                       split /\n/, $t2->error_log);

# 2: a chunked transcription upload in several reads

my $b = 'B0undary';
my @parts = (
    "--$b\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nqwen\r\n",
    "--$b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n"
    . "Content-Type: audio/wav\r\n\r\nRIFF....WAVE\r\n",
    "--$b--\r\n");

$res = $t->http('POST', '/v1/audio/transcriptions',
    headers => { Authorization => "Bearer $key",
                 'Content-Type' => "multipart/form-data; boundary=$b" },
    body => \@parts, chunked => 1, part_delay_ms => 50);
is($res->{status}, 200, 'a chunked transcription upload in three reads');
is($t->json($res)->{model}, 'qwen2.5-7b-instruct', 'with the model rewritten');

$t->done_testing;
