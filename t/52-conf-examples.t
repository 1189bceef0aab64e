#!/usr/bin/perl
#
# What operators copy from conf/ must work as it is: http.conf,
# upstreams.conf.example and locations.conf together pass nginx -t (with
# the paths and public host names of the examples swapped for this test's,
# since nothing outside loopback resolves here), and the example policy
# passes policyd -t (t/01-policyd-config.t).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Tailgate::Test;

my $t = Tailgate::Test->new->skip_unless_built;

my $http = $t->conf_text('http.conf');
my $upstreams = $t->conf_text('upstreams.conf.example');

like($upstreams, qr/^\s*zone tailgate_local /m,
     'the example upstreams share their passive health (zone)');
like($upstreams, qr/max_fails=\d+ fail_timeout=\d+s/,
     'and use nginx\'s passive checks');

$t->write_keys(alice => $t->new_key);

$http =~ s{unix:/run/tailgate/policyd.sock}{unix:%%DIR%%/policyd.sock};
$http =~ s{/etc/tailgate/keys}{%%KEYS%%};
$upstreams =~ s{\b(?:api\.deepseek\.com|openrouter\.ai|192\.168\.1\.\d+):\d+}{127.0.0.1:9}g;

$t->write_file('upstreams.conf', $upstreams);

my ($rc, $out) = $t->nginx_check(<<"EOF");
$http
    include %%DIR%%/upstreams.conf;
    access_log %%DIR%%/tailgate.log tailgate;

    server {
        listen 127.0.0.1:%%PORT%%;
        include tailgate/locations.conf;
    }
EOF

is($rc, 0, 'nginx -t accepts conf/tailgate as operators include it')
    or diag($out);

done_testing();
