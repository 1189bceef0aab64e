#!/usr/bin/perl
#
# Upstream addresses that follow DNS (tailgate_upstream_resolve): a DNS
# server on loopback (t/lib/mock_dns.pl) answers for the provider's name;
# two mock providers listen on one port, on 127.0.0.1 and 127.0.0.2.
# The name moves from the first to the second under steady load, without
# a reload and without a failed request; keepalive connections are reused
# within one address set; a DNS that fails, answers nothing, or is gone
# keeps the last good set (logged once per state); a request in flight
# keeps the set it started with; several addresses are balanced (sorted,
# without duplicates, at most max_addresses) and one that refuses is
# skipped; new workers after a reload resolve for themselves; a name that
# never resolved is the gateway's 502; configuration errors say what was
# expected.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use JSON::PP ();
use Test::More;
use Time::HiRes qw(time sleep);
use Tailgate::Gateway;

my $t = Tailgate::Gateway->new->skip_unless_built;

my $JSON  = JSON::PP->new->canonical->utf8;
my $NAME  = 'provider.tailgate.test';
my $NEVER = 'never.tailgate.test';


# the DNS server and its zone

my $zone_file = $t->dir . '/zone.json';
my $dns_log = $t->dir . '/dns.queries.jsonl';
my %zone;

sub zone {
    my (%set) = @_;
    %zone = (%zone, %set);
    $t->write_file($zone_file, $JSON->encode(\%zone));
}

sub point {
    my ($mode, @a) = @_;
    zone($NAME => { a => [@a], ttl => 1, mode => $mode });
}

# the queries the server got for $NAME: [{ts, name, type, mode}]
sub queries {
    open my $fh, '<', $dns_log or return [];
    my @q = grep { $_->{name} eq $NAME }
            map { eval { $JSON->decode($_) } // () } <$fh>;
    close $fh;
    return \@q;
}

# until $n more queries were answered in mode $mode (the resolver asked
# again and met what the test set up)
sub wait_queries {
    my ($mode, $n) = @_;
    my $from = @{ queries() };
    return $t->wait_for(sub {
        my $q = queries();
        (grep { $_->{mode} eq $mode } @$q[$from .. $#$q]) >= $n;
    }, timeout => 30, interval => 0.1);
}

point('ok', '127.0.0.1');

# a UDP port of the system's choice: one free for TCP may not be for UDP
$t->spawn('dns', [ $^X, $t->root . '/t/lib/mock_dns.pl',
                   '--zone', $zone_file, '--log', $dns_log,
                   '--ready', $t->dir . '/dns.ready' ]);
my ($dns_port) = $t->wait_for(sub {
    ($t->read_file('dns.ready') // '') =~ /^\d+ (\d+)$/m ? $1 : 0
}, timeout => 10) or BAIL_OUT('mock DNS server did not start: '
                              . $t->read_file('dns.log'));


# configuration errors, each naming what was expected

my $RESOLVER = "resolver 127.0.0.1:$dns_port valid=1s ipv6=off;\n";

sub conf_error {
    my ($what, $http, $expect) = @_;
    my ($status, $out) = $t->nginx_check($http);
    isnt($status, 0, "refused: $what");
    like($out, $expect, "  and the message says what was expected")
        or diag($out);
}

sub ups { "upstream u {\n    $_[0]\n}\n" }

conf_error('no resolver at the http level',
    ups("tailgate_upstream_resolve $NAME:80;"),
    qr/needs a "resolver" at the http\{\} level/);
conf_error('a resolver only in a server{} does not count',
    ups("tailgate_upstream_resolve $NAME:80;")
    . "server { listen 127.0.0.1:%%PORT%%; resolver 127.0.0.1:$dns_port; }",
    qr/needs a "resolver" at the http\{\} level/);
conf_error('port missing', $RESOLVER . ups("tailgate_upstream_resolve $NAME;"),
    qr/"\Q$NAME\E" has no port; expected a host name and a port/);
conf_error('port zero', $RESOLVER . ups("tailgate_upstream_resolve $NAME:0;"),
    qr/expected a host name and a port/);
conf_error('port too big',
    $RESOLVER . ups("tailgate_upstream_resolve $NAME:70000;"),
    qr/expected a host name and a port/);
conf_error('bad host',
    $RESOLVER . ups('tailgate_upstream_resolve "bad!host:80";'),
    qr/"bad!host:80" is not a host name and a port; expected letters/);
conf_error('an empty label',
    $RESOLVER . ups('tailgate_upstream_resolve a..test:80;'),
    qr/is not a host name and a port/);
conf_error('no host', $RESOLVER . ups('tailgate_upstream_resolve :80;'),
    qr/expected a host name and a port/);
conf_error("a path", $RESOLVER . ups("tailgate_upstream_resolve $NAME:80/v1;"),
    qr/"\Q$NAME\E:80\/v1": invalid host; expected a host name and a port/);
conf_error('an address', $RESOLVER . ups('tailgate_upstream_resolve 127.0.0.1:80;'),
    qr/is an address, nothing to resolve; use "server 127\.0\.0\.1:80"/);
conf_error('a unix socket',
    $RESOLVER . ups('tailgate_upstream_resolve unix:/tmp/x.sock;'),
    qr/expected a host name and a port/);
for my $bad ('interval=0', 'interval=abc', 'interval=', 'interval=2d',
             'max_addresses=0', 'max_addresses=65', 'max_addresses=x',
             'max_fails=-1', 'fail_timeout=x') {
    conf_error("odd $bad",
        $RESOLVER . ups("tailgate_upstream_resolve $NAME:80 $bad;"),
        qr/invalid parameter "\Q$bad\E"; expected interval= a time from 1s to 24h/);
}
conf_error('unknown parameter',
    $RESOLVER . ups("tailgate_upstream_resolve $NAME:80 weight=2;"),
    qr/unknown parameter "weight=2"; expected interval=, max_addresses=/);
conf_error('duplicate',
    $RESOLVER . ups("tailgate_upstream_resolve $NAME:80;\n"
                    . "tailgate_upstream_resolve $NAME:81;"),
    qr/"tailgate_upstream_resolve" directive is duplicate/);
conf_error('after keepalive',
    $RESOLVER . ups("keepalive 4;\ntailgate_upstream_resolve $NAME:80;"),
    qr/must come first in upstream\{\}, before "keepalive"/);
conf_error('after a server line',
    $RESOLVER . ups("server 127.0.0.1:80;\ntailgate_upstream_resolve $NAME:80;"),
    qr/takes the place of "server" lines/);
conf_error('before a server line',
    $RESOLVER . ups("tailgate_upstream_resolve $NAME:80;\nserver 127.0.0.1:80;"),
    qr/upstream "u" in .* has "server" lines/);
conf_error('with a zone',
    $RESOLVER . ups("zone u 64k;\ntailgate_upstream_resolve $NAME:80;"),
    qr/has a "zone": "tailgate_upstream_resolve" keeps its addresses per worker/);
conf_error('another balancer after it',
    $RESOLVER . ups("tailgate_upstream_resolve $NAME:80;\nleast_conn;"),
    qr/no servers in upstream|another balancer replaced/);
conf_error('no arguments', $RESOLVER . ups('tailgate_upstream_resolve;'),
    qr/invalid number of arguments/);

{
    my ($status, $out) = $t->nginx_check($RESOLVER
        . ups("tailgate_upstream_resolve $NAME:80 interval=1s max_addresses=64 "
              . "max_fails=0 fail_timeout=5s;\n    keepalive 4;"));
    is($status, 0, 'every parameter at its bound, keepalive after it: accepted')
        or diag($out);
}


# the gateway: two providers on one port behind $NAME, one name that the
# DNS never answers

my $port = $t->port('providers');
my $one = $t->mock_provider_at('one', '127.0.0.1', $port);
my $two = $t->mock_provider_at('two', '127.0.0.2', $port);

my $policy = Tailgate::Gateway::default_policy();
$policy->{providers}{hosted} = {
    upstream => 'tg_hosted', scheme => 'http', host => $NAME,
    zone => 'external', endpoints => ['chat'] };
$policy->{providers}{never} = {
    upstream => 'tg_never', scheme => 'http', host => $NEVER,
    zone => 'external', endpoints => ['chat'] };
$policy->{routes}{hosted} = { steps => [{ provider => 'hosted', model => 'h' }] };
$policy->{routes}{nowhere} = { steps => [{ provider => 'never', model => 'n' }] };
$policy->{providers}{first} = {
    upstream => 'tg_first', scheme => 'http', host => $NAME,
    zone => 'external', endpoints => ['chat'] };
$policy->{routes}{first} = { steps => [{ provider => 'first', model => 'f' }] };

$t->start_gateway(policy => $policy, mocks => ['local'],
    http => <<"EOF");
    resolver 127.0.0.1:$dns_port valid=1s ipv6=off;
    resolver_timeout 1s;

    log_format ups '\$status \$upstream_addr';
    access_log %%DIR%%/ups.log ups;

    upstream tg_hosted {
        tailgate_upstream_resolve $NAME:$port interval=2s;
        keepalive 4;
    }

    upstream tg_first {
        tailgate_upstream_resolve $NAME:$port interval=2s max_addresses=1;
    }

    upstream tg_never {
        tailgate_upstream_resolve $NEVER:$port interval=2s;
        keepalive 4;
    }
EOF

# the system's resolver does not know the test's names: the workers ask
$t->allow_log(qr/did not resolve at start/);

# who answered: the mock's content, "Hello from NAME"
sub who {
    my ($res) = @_;
    return "status $res->{status}" unless $res->{status} == 200;
    my $doc = eval { $JSON->decode($res->{body}) } or return 'not JSON';
    my $text = $doc->{choices}[0]{message}{content} // '';
    return $text =~ /^Hello from (\w+)/ ? $1 : "content '$text'";
}

sub ask { who($t->chat('hosted')) }

sub asks {
    my ($n) = @_;
    my %seen;
    $seen{ ask() }++ for 1 .. $n;
    return \%seen;
}

subtest 'the name points at the first provider: requests reach it' => sub {
    ok($t->wait_for(sub { ask() eq 'one' }, timeout => 10),
       'a request answered by one');
    is_deeply(asks(5), { one => 5 }, 'and five more');
    is(scalar @{ $two->requests }, 0, 'none reached two');
};

subtest 'keepalive: connections reused within one address set' => sub {
    $one->clear;
    is_deeply(asks(10), { one => 10 }, 'ten requests in a row');
    my %conns = map { $_->{conn} => 1 } @{ $one->requests };
    is(scalar keys %conns, 1, 'over one connection to the provider');
};

subtest 'the name moves under steady load: no failed request' => sub {
    $one->clear;
    $two->clear;

    # client 0 moves the name a little into the load; the others ask in a
    # row until they saw two five times (or give up)
    my @runs = $t->parallel(4, sub {
        my ($i) = @_;
        if ($i == 0) {
            sleep 0.8;
            point('ok', '127.0.0.2');
            return [];
        }
        my (@seen, $twos);
        my $deadline = time + 20;
        while (time < $deadline && ($twos // 0) < 5) {
            my $w = ask();
            push @seen, $w;
            $twos++ if $w eq 'two';
        }
        return \@seen;
    }, timeout => 40);

    my @all = map { @$_ } @runs;
    my @bad = grep { $_ ne 'one' && $_ ne 'two' } @all;
    is(scalar @bad, 0, 'every request of ' . scalar(@all) . ' answered 200')
        or diag(join ', ', @bad[0 .. ($#bad < 9 ? $#bad : 9)]);

    for my $i (1 .. 3) {
        my @seen = @{ $runs[$i] };
        my ($first) = grep { $seen[$_] eq 'two' } 0 .. $#seen;
        ok(defined $first, "client $i reached two without a reload");
        next unless defined $first;
        my @back = grep { $_ eq 'one' } @seen[$first .. $#seen];
        is(scalar @back, 0, "  and never went back to one");
    }
    cmp_ok(scalar @{ $one->requests }, '>', 0, 'one served until the move');

    my $accepted = () = $t->error_log
        =~ /"tg_hosted": \S+ resolves to 127\.0\.0\.2:$port\b/g;
    is($accepted, 1, 'the new address set was logged once');
};

subtest 'keepalive within the new set; the old address is left' => sub {
    my $before = @{ $one->requests };
    $two->clear;
    is_deeply(asks(10), { two => 10 }, 'ten requests in a row, all to two');
    my %conns = map { $_->{conn} => 1 } @{ $two->requests };
    is(scalar keys %conns, 1, 'over one connection');
    is(scalar @{ $one->requests }, $before, 'none to one any more');
};

subtest 'a request in flight keeps the set it started with' => sub {
    point('ok', '127.0.0.1');
    ok($t->wait_for(sub { ask() eq 'one' }, timeout => 15),
       'the name is back at one');

    my $slow = $t->open_post('/v1/chat/completions',
        { model => 'hosted', messages => [{ role => 'user', content => 'x' }] },
        headers => { 'X-Mock-Control' => '{"delay_ms":6000}' });
    ok($t->wait_for(sub { $one->in_progress >= 1 }, timeout => 5),
       'a slow request is at one');

    point('ok', '127.0.0.2');
    ok($t->wait_for(sub { ask() eq 'two' }, timeout => 15),
       'meanwhile the name moved to two');

    my $before = $t->read_file('ups.log');
    ok($slow->read_all(20), 'the slow request ended');
    like($slow->raw, qr{^HTTP/1\.1 200 }, '  with 200');
    like($slow->raw, qr/Hello from one/, '  answered by one');
    ok($t->wait_for(sub {
           substr($t->read_file('ups.log'), length $before)
               =~ /^200 127\.0\.0\.1:$port$/m }, timeout => 5),
       '  its $upstream_addr logged from the old set, freed only after it');
};

# the warnings "could not be resolved" so far
sub warnings_now {
    scalar(() = $t->error_log =~ /"tg_hosted": \S+ could not be resolved/g)
}

# nginx's resolver sends a name's query again only every 5 s while it has
# no answer (lookups in between wait on that query): silence is asked twice
for my $case (['SERVFAIL', 'servfail', qr/\(2: Server failure\)/, 3],
              ['an empty answer', 'empty', qr/\(3: Host not found\)/, 3],
              ['no answer at all', 'drop', qr/\(110: Operation timed out\)/, 2],
              ['NXDOMAIN', 'nxdomain', qr/\(3: Host not found\)/, 3]) {
    my ($what, $mode, $logged, $asked) = @$case;

    subtest "DNS answers $what: the last good set is kept" => sub {
        my $warned = warnings_now();
        my $from = $t->log_size('error');

        point($mode, '127.0.0.2');
        ok(wait_queries($mode, $asked),
           "the resolver asked $asked times and met it");
        is_deeply(asks(5), { two => 5 }, 'requests still reach two');
        is(warnings_now() - $warned, 1, 'logged once, not per query');
        ok($t->wait_log('error', $logged, from => $from), '  naming the state');
    };
}

subtest 'the DNS answers again: the set follows it' => sub {
    my $from = $t->log_size('error');
    point('ok', '127.0.0.1');
    ok($t->wait_for(sub { ask() eq 'one' }, timeout => 15),
       'requests reach one again');
    ok($t->wait_log('error', qr/\Q$NAME\E resolves again/, from => $from),
       'and the recovery is logged');
};

subtest 'several addresses are balanced' => sub {
    point('ok', '127.0.0.2', '127.0.0.1', '127.0.0.2');
    ok($t->wait_for(sub { ask() eq 'two' }, timeout => 15),
       'two is in the set again');
    my $seen = asks(20);
    is(($seen->{one} // 0) + ($seen->{two} // 0), 20, 'twenty answered');
    cmp_ok($seen->{one} // 0, '>=', 8, 'one took its share')
        or diag(explain($seen));
    cmp_ok($seen->{two} // 0, '>=', 8, 'two took its share')
        or diag(explain($seen));
};

subtest 'addresses sorted, without duplicates, at most max_addresses' => sub {
    like($t->error_log,
         qr/"tg_hosted": \Q$NAME\E resolves to 127\.0\.0\.1:$port, 127\.0\.0\.2:$port$/m,
         'three records, two addresses, in order');
    my %seen;
    $seen{ who($t->chat('first')) }++ for 1 .. 6;
    is_deeply(\%seen, { one => 6 }, 'max_addresses=1: the first only');
};

subtest 'one address of the set refuses: the other serves' => sub {
    $t->allow_log(qr/connect\(\) failed \(111: Connection refused\)/,
                  qr/upstream server temporarily disabled/);
    $one->stop;
    is_deeply(asks(10), { two => 10 }, 'every request answered by two');
    $one->start;
};

subtest 'after a reload the new workers resolve for themselves' => sub {
    point('ok', '127.0.0.2');
    ok($t->wait_for(sub { ask() eq 'two' }, timeout => 15), 'two serves');
    my @old = $t->nginx_worker_pids;
    $t->reload_nginx;
    isnt(join(',', $t->nginx_worker_pids), join(',', @old), 'new workers');
    ok($t->wait_for(sub { ask() eq 'two' }, timeout => 15),
       'and they reach two');
    is_deeply(asks(5), { two => 5 }, 'five more');
};

subtest 'a name that never resolved: the gateway answers 502' => sub {
    $t->allow_log(qr/has not resolved to any address yet/,
                  qr/no live upstreams/);
    my $res = $t->chat('nowhere');
    $t->is_openai_error($res, 502, undef, 'an OpenAI error with 502');
    ok($t->wait_log('error', qr/\Q$NEVER\E has not resolved to any address yet/),
       'the log says why');
};

$t->done_testing;
