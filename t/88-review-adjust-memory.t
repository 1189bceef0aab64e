#!/usr/bin/perl
#
# Review: a step's request edits ("adjust") must not let one client make
# the nginx worker allocate many times the body it sent.
#
# ngx_tailgate_body_adjust() rebuilds the top-level object as one piece per
# member plus one per comma: an ngx_tailgate_json_member_t (~100 bytes) per
# member, an ngx_str_t per piece in a doubling array, then an ngx_buf_t and
# an ngx_chain_t per piece in ngx_tailgate_body_replace(), and the proxy
# module copies every one of those again in create_request.  A 3.8 MB body
# of 330,000 small members (within client_max_body_size 4m) costs ~250 MB
# in the worker, for every attempt; a few such requests at once take
# gigabytes.  The same body on a route without edits costs ~8 MB.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Tailgate::Gateway;

my $t = Tailgate::Gateway->new->skip_unless_built;

plan skip_all => 'needs /proc' unless -r "/proc/$$/status";

my $policy = {
    providers => { local => { upstream => 'tg_local', zone => 'local',
                              endpoints => [qw(chat)] } },
    routes => {
        edited => { steps => [ { provider => 'local', model => 'l',
                                 adjust => [ { drop => ['user'] } ] } ] },
    },
};

my $key = $t->start_gateway(policy => $policy);
my ($worker) = $t->nginx_worker_pids;

sub peak_kb {
    open my $fh, '<', "/proc/$worker/status" or return 0;
    local $/;
    my ($kb) = <$fh> =~ /^VmHWM:\s+(\d+)/m;
    return $kb // 0;
}

my $body = '{"model":"edited","messages":[],"user":"u"'
         . join('', map { ",\"k$_\":0" } 1 .. 330_000) . '}';
cmp_ok(length $body, '<', 4 * 1024 * 1024, 'within client_max_body_size');

my $before = peak_kb();
my $res = $t->http('POST', '/v1/chat/completions',
                   headers => { Authorization => "Bearer $key",
                                'Content-Type' => 'application/json' },
                   body => $body, timeout => 60);
is($res->{status}, 200, 'answered');

my $grown = peak_kb() - $before;
cmp_ok($grown, '<', 64 * 1024,
       'the worker\'s peak memory grew by less than 64 MB for a 3.8 MB body')
    or diag("grew by $grown kB");

$t->done_testing;
