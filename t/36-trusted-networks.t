#!/usr/bin/perl

# Trusted networks: a request without a credential from a listed network
# gets that network's identity.  The address is the one nginx's realip
# module leaves on the connection, so a forwarded-for header counts only
# from the proxy realip trusts.  A request with a key is judged by the key.
# 127.0.0.0/8 is all loopback: clients come from 127.0.0.2 (a trusted
# network), 127.0.0.3 (the trusted proxy) and 127.0.0.1 (neither).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Tailgate::Gateway;

my $t = Tailgate::Gateway->new->skip_unless_built;

$t->start_gateway(
    http => q{
        set_real_ip_from 127.0.0.3;
        real_ip_header X-Forwarded-For;

        tailgate_trusted_network 127.0.0.2/32 client=office tenant=acme
                                 tags=private;
        tailgate_trusted_network 10.9.0.0/16 client=vpn tags=team-v;
        tailgate_trusted_network fd00:77::/32 client=lab6;

        log_format ids '$remote_addr|$tailgate_client|$tailgate_tenant|$tailgate_auth|$status';
    },
    server => 'access_log %%DIR%%/ids.log ids;');

my $body = '{"model":"qwen","messages":[{"role":"user","content":"Hi"}]}';

sub post {
    my (%opt) = @_;
    my %h = ('Content-Type' => 'application/json', %{ $opt{headers} // {} });
    $h{Authorization} = "Bearer $opt{key}" if defined $opt{key};
    return $t->http('POST', '/v1/chat/completions', headers => \%h,
                    body => $opt{body} // $body,
                    ($opt{from} ? (local_addr => $opt{from}) : ()));
}

sub from_proxy {
    my ($xff, %opt) = @_;
    return post(from => '127.0.0.3',
                headers => { 'X-Forwarded-For' => $xff }, %opt);
}


subtest 'a trusted network needs no key' => sub {
    my $res = post(from => '127.0.0.2');
    is($res->{status}, 200, 'keyless from 127.0.0.2: served')
        or diag($res->{body});
    is($t->answered_by($res), 'local', 'by the local provider');

    my $got = $t->mock('local')->requests->[-1];
    ok($got, 'the provider got it');
    unlike($got->{headers}{authorization} // '', qr/tg-test-/,
           'no client key travels on');
};

subtest "the network's tags apply" => sub {
    my $res = post(from => '127.0.0.2',
                   body => '{"model":"smart","messages":[{"role":"user","content":"Hi"}]}');
    isnt($res->{status}, 200, 'private: an external route is refused');
    ok(!grep({ ($_->{path} // '') ne '' } @{ $t->mock('ext')->requests }),
       'and the external provider got nothing');
};

subtest 'an untrusted address still needs a key' => sub {
    my $res = post(from => '127.0.0.1');
    $t->is_openai_error($res, 401, 'missing_api_key', 'keyless from 127.0.0.1');
    like($res->{headers}{'www-authenticate'} // '', qr/^Bearer/, 'challenged');

    $res = post(from => '127.0.0.4');
    $t->is_openai_error($res, 401, 'missing_api_key', 'nor from 127.0.0.4');
};

subtest 'a forwarded-for header from an untrusted address proves nothing' => sub {
    for my $xff ('127.0.0.2', '10.9.1.1', '127.0.0.3, 127.0.0.2',
                 'fd00:77::1', '', 'garbage', '127.0.0.2' x 500)
    {
        my $res = post(from => '127.0.0.1',
                       headers => { 'X-Forwarded-For' => $xff });
        $t->is_openai_error($res, 401, 'missing_api_key',
                            'X-Forwarded-For: ' . substr($xff, 0, 30));
    }

    my $res = post(from => '127.0.0.1',
                   headers => { 'X-Forwarded-For' => ['127.0.0.2', '127.0.0.2'] });
    $t->is_openai_error($res, 401, 'missing_api_key', 'twice');

    $res = post(from => '127.0.0.1', headers => { 'X-Real-IP' => '127.0.0.2' });
    $t->is_openai_error($res, 401, 'missing_api_key', 'X-Real-IP neither');
};

subtest 'through the trusted proxy: the address it vouches for' => sub {
    my $res = from_proxy('10.9.1.1');
    is($res->{status}, 200, 'IPv4 10.9.1.1 is in 10.9.0.0/16');

    $res = from_proxy('fd00:77::5');
    is($res->{status}, 200, 'IPv6 fd00:77::5 is in fd00:77::/32');

    $res = from_proxy('::ffff:10.9.200.7');
    is($res->{status}, 200, 'an IPv4-mapped IPv6 address is its IPv4 one');

    $res = from_proxy('10.10.0.1');
    $t->is_openai_error($res, 401, 'missing_api_key', '10.10.0.1 is outside');

    $res = from_proxy('fd00:78::1');
    $t->is_openai_error($res, 401, 'missing_api_key', 'fd00:78::1 is outside');

    $res = from_proxy('');
    $t->is_openai_error($res, 401, 'missing_api_key',
                        'the proxy itself is no trusted network');
};

subtest 'a key wins over the network' => sub {
    my $res = post(from => '127.0.0.2', key => $t->key);
    is($res->{status}, 200, "alice's key from the trusted network");

    $res = post(from => '127.0.0.2', key => 'tg-test-not-a-key');
    $t->is_openai_error($res, 401, 'invalid_api_key',
                        'a bad key is refused, even there');

    $res = post(from => '127.0.0.2',
                headers => { 'X-Api-Key' => 'tg-test-not-a-key' });
    $t->is_openai_error($res, 401, 'invalid_api_key', 'in X-Api-Key too');

    $res = from_proxy('10.9.1.1', key => 'tg-test-not-a-key');
    $t->is_openai_error($res, 401, 'invalid_api_key', 'and through the proxy');
};

subtest 'who the access log says it was' => sub {
    $t->stop_nginx;
    my @lines = split /\n/, $t->read_file('ids.log');

    ok((grep { $_ eq '127.0.0.2|office|acme|network|200' } @lines),
       'the network identity, auth "network"');
    ok((grep { $_ eq '10.9.1.1|vpn||network|200' } @lines), 'through the proxy');
    ok((grep { $_ eq 'fd00:77::5|lab6||network|200' } @lines), 'IPv6');
    ok((grep { $_ eq '127.0.0.2|alice||key|200' } @lines),
       'a key from a trusted network is the key');
    ok(!(grep { /^127\.0\.0\.1\|[^-]/ } @lines),
       'nothing from 127.0.0.1 had an identity');
};

subtest 'bad directives stop nginx -t with the reason' => sub {
    my %bad = (
        'not an address'      => ['nonsense client=a', qr/not an IPv4 or IPv6/],
        'low bits set'        => ['10.0.0.1/8 client=a', qr/low address bits/],
        'no client'           => ['10.0.0.0/8 tenant=a', qr/needs client=/],
        'an empty client'     => ['10.0.0.0/8 client=', qr/expected client=/],
        'a bad client'        => ['10.0.0.0/8 client=a/b', qr/expected client=/],
        'client twice'        => ['10.0.0.0/8 client=a client=b', qr/client= twice/],
        'an operator network' => ['10.0.0.0/8 client=a role=admin', qr/takes client=/],
        'an expiry'           => ['10.0.0.0/8 client=a expires=2030-01-01', qr/takes client=/],
        'a bad tag'           => ['10.0.0.0/8 client=a tags=a/b', qr/expected tags=/],
        'an unknown word'     => ['10.0.0.0/8 client=a color=blue', qr/unknown attribute/],
        'only a network'      => ['10.0.0.0/8', qr/invalid number of arguments/],
    );

    for my $name (sort keys %bad) {
        my ($args, $re) = @{ $bad{$name} };
        my ($status, $out) = $t->nginx_check(
            "tailgate_trusted_network $args;");
        isnt($status, 0, "$name: refused");
        like($out, qr/$re.*check\.conf:\d+/, "$name: says why, file and line")
            or diag($out);
    }

    my ($status, $out) = $t->nginx_check(q{
        tailgate_policyd unix:/nonexistent.sock;
        tailgate_trusted_network 10.0.0.0/8 client=a;
        server { listen 127.0.0.1:1; location / { tailgate on; } }
    });
    unlike($out, qr/needs "tailgate_keys"/,
           'a trusted network alone is enough for "tailgate on"');
};

$t->done_testing;
