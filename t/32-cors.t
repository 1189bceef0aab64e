#!/usr/bin/perl

# CORS: browsers may call the API only from the origins listed.  A
# preflight is answered without credentials; responses to an allowed
# origin, errors included, say so; nothing is allowed by default.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Tailgate::Gateway;

my $t = Tailgate::Gateway->new->skip_unless_built;

my $key = $t->start_gateway(
    http => 'tailgate_cors_origins https://app.example.com http://localhost:5173;',
    server => q{
        location /plain/v1/ {
            tailgate on;
            tailgate_cors_origins https://other.example;
            include tailgate/proxy.conf;
        }
    });

my $local = $t->mock('local');

sub preflight {
    my ($path, $origin, %h) = @_;
    return $t->http('OPTIONS', $path, headers => {
        Origin => $origin,
        'Access-Control-Request-Method' => 'POST',
        'Access-Control-Request-Headers' => 'authorization, content-type, x-stainless-os',
        %h });
}


subtest 'a preflight from an allowed origin' => sub {
    my $res = preflight('/v1/chat/completions', 'https://app.example.com');

    is($res->{status}, 204, '204, without any credentials');
    is($res->{headers}{'access-control-allow-origin'}, 'https://app.example.com',
       'Access-Control-Allow-Origin names the origin');
    like($res->{headers}{'access-control-allow-methods'}, qr/POST/, 'methods');
    like($res->{headers}{'access-control-allow-headers'}, qr/authorization.*x-stainless-os/,
         'the headers the SDK asked for');
    like($res->{headers}{vary}, qr/Origin/, 'Vary: Origin');
    is(scalar @{ $local->requests }, 0, 'no provider involved');
};

subtest 'a preflight from any other origin is refused' => sub {
    for my $origin ('https://evil.example', 'https://app.example.com.evil.example',
                    'http://app.example.com', 'null')
    {
        my $res = preflight('/v1/chat/completions', $origin);
        $t->is_openai_error($res, 403, 'cors_origin_not_allowed', "from $origin");
        ok(!exists $res->{headers}{'access-control-allow-origin'}, 'no allow header');
    }
};

subtest 'actual requests' => sub {
    my $res = $t->chat('qwen', headers => { Origin => 'http://localhost:5173' });
    is($res->{status}, 200, 'proxied');
    is($res->{headers}{'access-control-allow-origin'}, 'http://localhost:5173',
       'the response is readable by the page');
    like($res->{headers}{'access-control-expose-headers'}, qr/Retry-After/,
         'Retry-After is exposed');

    $res = $t->chat('qwen', key => 'wrong', headers => { Origin => 'https://app.example.com' });
    is($res->{status}, 401, 'a 401');
    is($res->{headers}{'access-control-allow-origin'}, 'https://app.example.com',
       'carries CORS headers too, so the page can read the error');

    $res = $t->chat('qwen', headers => { Origin => 'https://evil.example' });
    is($res->{status}, 200, 'a server-side client with any Origin is served');
    ok(!exists $res->{headers}{'access-control-allow-origin'},
       'but a browser would not let the page read it');

    $res = $t->chat('qwen');
    ok(!exists $res->{headers}{'access-control-allow-origin'}, 'no Origin: no CORS headers');
};

subtest 'a location lists its own origins; none by default' => sub {
    my $res = preflight('/plain/v1/chat/completions', 'https://app.example.com');
    is($res->{status}, 403, 'the http-level list does not apply where it is replaced');

    $res = preflight('/plain/v1/chat/completions', 'https://other.example');
    is($res->{status}, 204, 'its own origin is allowed');
};

subtest 'an origin must be scheme://host[:port]' => sub {
    for my $bad ('app.example.com', 'https://app.example.com/', 'ftp://x') {
        my ($status, $out) = $t->nginx_check(
            "tailgate_cors_origins $bad; tailgate_keys %%KEYS%%;");
        isnt($status, 0, "\"$bad\" is refused");
        like($out, qr/invalid origin/, 'with a reason');
    }
};

$t->done_testing;
