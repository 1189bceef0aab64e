#!/usr/bin/perl

# Review finding: ngx_http_tailgate_precontent_handler() answers NGX_AGAIN
# for any state other than NEW and DECIDED ("still reading or waiting").
# When nginx itself redirects the request while the module is in READING -
# error_page 413 for a chunked body over client_max_body_size, which is
# detected while the body is read - and the target location has "tailgate
# on" too, the precontent handler runs again in the target, sees READING
# and parks the request.  Nothing ever wakes it: the client gets no 413.
#
# "tailgate on" at the server level (a documented context) is enough: the
# @tailgate_error location of conf/tailgate/ inherits it.  The same setup
# without the server-level "tailgate on" answers 413 (control).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Tailgate::Gateway;

my $t = Tailgate::Gateway->new->skip_unless_built;

my $key = $t->start_gateway(locations => <<'EOF');
location /v1/ {
    tailgate on;
    client_max_body_size 1k;
    include tailgate/proxy.conf;
    error_page 413 502 503 504 @tailgate_error;
}
location @tailgate_error { tailgate_error_page; }
EOF

sub too_large {
    return $t->http('POST', '/v1/chat/completions',
        headers => { Authorization => "Bearer $key" },
        body => ['{"model":"qwen","x":"', 'a' x 3000, '"}'],
        chunked => 1, timeout => 4);
}

$t->is_openai_error(too_large(), 413, 'request_too_large',
                    'control: chunked body over the limit, tailgate per location');

$t->reload_nginx($t->{nginx_http} =~ s/(server \{)/$1\n        tailgate on;/r);

my $res = too_large();
$t->is_openai_error($res, 413, 'request_too_large',
                    'the same with "tailgate on" at the server level')
    or diag('error: ' . ($res->{error} // 'none'));

$t->done_testing;
