#!/usr/bin/perl

# Review finding: conf/tailgate/proxy.conf lets the provider's response
# steer nginx.  nginx honours X-Accel-Redirect (and X-Accel-Limit-Rate,
# -Buffering, -Charset, -Expires) from any proxied response unless
# proxy_ignore_headers says otherwise, so a provider - an external one
# like OpenRouter, or anything on its path - can send
# "X-Accel-Redirect: /some/location" and nginx runs an internal redirect:
# it serves internal locations to the client, or proxies the request to an
# upstream policyd never chose.  The module's promise "a bad decision can
# never send traffic to an arbitrary host" holds for policyd but not for
# the provider it chose.
#
# Expected: the provider's X-Accel-* headers have no effect (proxy.conf:
# proxy_ignore_headers X-Accel-Redirect X-Accel-Expires X-Accel-Limit-Rate
# X-Accel-Buffering X-Accel-Charset;).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Tailgate::Gateway;

my $t = Tailgate::Gateway->new->skip_unless_built;

# "internal" stands for anything else this server does: another proxied
# backend (here the ext mock, which policyd never chooses for qwen)
my $key = $t->start_gateway(server => <<'EOF');
        location /internal/ {
            internal;
            proxy_pass http://%%MOCK:ext%%/v1/chat/completions;
        }
EOF

my $local = $t->mock('local');
my $ext = $t->mock('ext');

$local->set(headers => { 'X-Accel-Redirect' => '/internal/x' });
$ext->clear;

my $res = $t->chat('qwen');

is($res->{headers}{'x-mock-provider'}, 'local',
   'the client gets the response of the provider policyd chose')
    or diag("answered by: " . ($res->{headers}{'x-mock-provider'} // '?'));
is(scalar @{ $ext->requests }, 0,
   'and no request went to an upstream policyd did not choose');

$local->set(headers => { 'X-Accel-Redirect' => '/health' });
$res = $t->chat('qwen');
unlike($res->{body}, qr/"policyd"/, 'the provider cannot make nginx serve /health');

$local->set;
$t->done_testing;
