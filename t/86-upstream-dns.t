#!/usr/bin/perl
#
# Upstream servers that follow DNS (the policy's "upstream_dns"): policyd
# asks a name server (a mock on loopback, t/lib/mock_dns.pl) for a
# provider's name, writes the upstream's file of servers that nginx's
# upstream {} includes, and reloads nginx when the set of addresses
# changed - only then: the same set in another order, a name server that is
# away, SERVFAIL, NXDOMAIN or an empty answer keep the servers as they
# were.  A stale pid file never makes policyd signal another program.
# policyd -t names every bad key of "upstream_dns".

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use IO::Socket::INET;
use JSON::PP ();
use Test::More;
use Tailgate::Gateway;
use Tailgate::DNS;

my $t = Tailgate::Gateway->new->skip_unless_built;

# two loopback addresses besides 127.0.0.1 stand for the provider's hosts
for my $ip (qw(127.0.0.2 127.0.0.3)) {
    my $s = IO::Socket::INET->new(LocalAddr => $ip, LocalPort => 0,
                                  Proto => 'tcp', Listen => 1);
    plan skip_all => "cannot listen on $ip: $!" unless $s;
}

my $dns = Tailgate::DNS->start($t);
my $NAME = 'api.provider.test';
$dns->zone(names => { $NAME => ['127.0.0.2'] });

my $port = $t->port('ext_hosts');
my %host = (a => $t->mock_provider_on('ext_a', '127.0.0.2', $port),
            b => $t->mock_provider_on('ext_b', '127.0.0.3', $port));

my $dir = $t->dir . '/upstreams';
# policyd makes the directory
my $file = "$dir/tg_ext.conf";

my $lenient = { down_after => 100 };
my %upstream_dns = (dir => $dir, interval_ms => 200, timeout_ms => 500,
                    nameserver => $dns->addr,
                    nginx_pid => $t->dir . '/nginx.pid',
                    upstreams => { tg_ext => "$NAME:$port" });
my $policy = {
    providers => {
        local => { upstream => 'tg_local', zone => 'local',
                   endpoints => ['chat'], health => $lenient },
        ext   => { upstream => 'tg_ext', zone => 'external',
                   host => $NAME, api_key => '${EXT_API_KEY}',
                   endpoints => ['chat'], health => $lenient },
    },
    routes => {
        qwen  => { steps => [{ provider => 'local', model => 'q' }] },
        smart => { steps => [{ provider => 'ext', model => 'm' }] },
    },
    upstream_dns => \%upstream_dns,
};

$t->start_gateway(policy => $policy, mocks => ['local'],
                  http => "upstream tg_ext { include $file; keepalive 4; }");

sub servers {
    return [ $t->read_file($file) =~ /^server (\S+);$/mg ];
}

sub log_count {
    my ($re) = @_;
    return scalar(() = $t->policyd_log =~ /$re/g);
}

# which host answered the next request
sub answers_from {
    my %before = map { $_ => scalar @{ $host{$_}->requests } } keys %host;
    my $res = $t->chat('smart');
    return "status $res->{status}" unless $res->{status} == 200;
    my @got = grep { @{ $host{$_}->requests } > $before{$_} } sort keys %host;
    return join ',', @got;
}

# the next rounds' questions have been asked: at least two rounds more
sub rounds {
    my ($n) = @_;
    my $before = @{ $dns->queries };
    ok($t->wait_for(sub { @{ $dns->queries } >= $before + 2 * $n }),
       "$n more rounds of questions");
}

my $master = $t->nginx_pid;

subtest 'at start: the file from DNS, before nginx reads it' => sub {
    is_deeply(servers(), ["127.0.0.2:$port"], 'tg_ext.conf has the address');
    my %types = map { ($_->{name} eq $NAME ? $_->{type} : 'other') => 1 }
                @{ $dns->queries };
    ok($types{A} && $types{AAAA}, 'A and AAAA asked of the mock name server');
    is(answers_from(), 'a', 'the provider\'s first host answers');
    is(log_count(qr/dns\.reload\b|nginx \d+ reloads/), 0,
       'nothing to reload: nginx was not running yet') ;
    like($t->read_file($file), qr/^# policyd \(upstream_dns\): \Q$NAME\E, port $port$/m,
         'the file says where it comes from');
};

subtest 'the address changes: the file, one reload, the new host' => sub {
    $dns->zone(names => { $NAME => ['127.0.0.3'] });
    ok($t->wait_for(sub { servers()->[0] eq "127.0.0.3:$port" }),
       'tg_ext.conf follows') or diag($t->read_file($file));
    ok($t->wait_for(sub { log_count(qr/nginx \d+ reloads/) == 1 }),
       'nginx reloaded once');
    my $from = '';
    ok($t->wait_for(sub { ($from = answers_from()) eq 'b' }),
       'the new host answers') or diag($from);
    is($t->nginx_pid, $master, 'the same master: a reload, not a restart');
    like($t->policyd_log, qr/upstream tg_ext: \Q$NAME\E now has its servers from DNS \(127\.0\.0\.3:$port\)/,
         'the change is logged with the servers');
};

subtest 'two addresses; the same set in another order changes nothing' => sub {
    $dns->zone(names => { $NAME => ['127.0.0.3', '127.0.0.2', '127.0.0.3'] });
    ok($t->wait_for(sub { @{ servers() } == 2 }), 'both servers')
        or diag($t->read_file($file));
    is_deeply(servers(), ["127.0.0.2:$port", "127.0.0.3:$port"],
              'sorted, the duplicate once');
    ok($t->wait_for(sub { log_count(qr/nginx \d+ reloads/) == 2 }),
       'nginx reloaded a second time');

    my $mtime = (stat $file)[9];
    $dns->zone(names => { $NAME => ['127.0.0.2', '127.0.0.3'] });
    rounds(3);
    is(log_count(qr/nginx \d+ reloads/), 2, 'no reload for the same set');
    is((stat $file)[9], $mtime, 'the file is not written again');

    my %seen;
    for (1 .. 20) {
        $seen{ answers_from() }++;
        last if $seen{a} && $seen{b};
    }
    ok($seen{a} && $seen{b}, 'both hosts answer: '
       . join(' ', map { "$_=$seen{$_}" } sort keys %seen));
};

subtest 'a name server that fails keeps the servers as they were' => sub {
    my $reloads = log_count(qr/nginx \d+ reloads/);
    my $before = $t->read_file($file);

    for my $case ([ 'away', { silent => 1 }, qr/no answer from the name server/ ],
                  [ 'SERVFAIL', { rcode => 2 }, qr/the name server failed|no answer/ ],
                  [ 'NXDOMAIN', { names => { 'other.test' => ['127.0.0.9'] } },
                    qr/no such name/ ],
                  [ 'no addresses', { names => { $NAME => [] } },
                    qr/no address records/ ]) {
        my ($what, $zone, $why) = @$case;
        my $from = length $t->policyd_log;
        $dns->zone(%$zone);
        ok($t->wait_for(sub { substr($t->policyd_log, $from) =~ $why }),
           "$what: logged") or diag(substr($t->policyd_log, $from));
        rounds(1);
        is($t->read_file($file), $before, "$what: the file is unchanged");
        is(log_count(qr/nginx \d+ reloads/), $reloads, "$what: no reload");
        like(answers_from(), qr/^[ab]$/, "$what: requests still answer");
    }

    like($t->policyd_log, qr/upstream tg_ext: \Q$NAME\E did not resolve/,
         'the log names the upstream and the name');
    $dns->zone(names => { $NAME => ['127.0.0.2', '127.0.0.3'] });
};

subtest 'a pid file that names another program: no signal' => sub {
    # another program, that SIGHUP would end
    $t->spawn('victim', [ $^X, '-e', '$SIG{HUP} = "DEFAULT"; sleep 60' ],
              log => 'victim.log');
    my $victim = $t->pid('victim');
    $t->write_file('stale.pid', "$victim\n");

    $t->stop_policyd;
    $t->write_policy({ %$policy, upstream_dns => {
        %upstream_dns, nginx_pid => $t->dir . '/stale.pid' } });
    my $from = length $t->policyd_log;
    $t->start_policyd(env => { EXT_API_KEY => 'x' });

    $dns->zone(names => { $NAME => ['127.0.0.3'] });
    ok($t->wait_for(sub { substr($t->policyd_log, $from)
                          =~ /stale\.pid: its process is not nginx/ }),
       'refused: its process is not nginx')
        or diag(substr($t->policyd_log, $from));
    is_deeply(servers(), ["127.0.0.3:$port"], 'the file is written still')
        or diag($t->read_file($file));
    rounds(1);
    ok($t->running('victim'), 'the other program still runs');
    $t->stop_proc('victim');
};

subtest 'a dir policyd cannot use' => sub {
    # its parent is missing: policyd does not start, and says why
    $t->stop_policyd;
    $t->write_policy({ %$policy, upstream_dns => {
        %upstream_dns, dir => $t->dir . '/no/such' } });
    my $from = length $t->policyd_log;
    ok(!eval { $t->start_policyd(env => { EXT_API_KEY => 'x' }); 1 },
       'a dir whose parent is missing: policyd does not start');
    my $why = qr{upstream_dns: cannot make \Q$t->{dir}\E/no/such: No such file};
    ok($t->wait_for(sub { substr($t->policyd_log, $from) =~ $why }),
       '... and names the dir') or diag(substr($t->policyd_log, $from));

    # a file where the dir should be: each write fails, logged; decisions go on
    $t->write_file('not-a-dir', "x\n");
    $t->write_policy({ %$policy, upstream_dns => {
        %upstream_dns, dir => $t->dir . '/not-a-dir' } });
    $from = length $t->policyd_log;
    $t->start_policyd(env => { EXT_API_KEY => 'x' });
    $why = qr{upstream tg_ext: cannot write \Q$t->{dir}\E/not-a-dir/tg_ext\.conf: Not a directory};
    ok($t->wait_for(sub { substr($t->policyd_log, $from) =~ $why }),
       'a file in its place: the write fails, logged')
        or diag(substr($t->policyd_log, $from));
    like(answers_from(), qr/^[ab]$/, 'requests still answer');

    $t->stop_policyd;
    $t->write_policy($policy);
    $t->start_policyd(env => { EXT_API_KEY => 'x' });
};

subtest 'policyd -t names every bad key of upstream_dns' => sub {
    local $ENV{EXT_API_KEY} = 'x';
    my @cases = (
        [ 'not an object', 'x', qr/upstream_dns: expected an object/ ],
        [ 'no dir', { upstreams => { u => 'h.test:1' } },
          qr/upstream_dns\.dir: .*required/ ],
        [ 'relative dir', { dir => 'up', upstreams => { u => 'h.test:1' } },
          qr/upstream_dns\.dir: expected an absolute path/ ],
        [ 'no upstreams', { dir => '/x' },
          qr/upstream_dns\.upstreams: missing required key/ ],
        [ 'empty upstreams', { dir => '/x', upstreams => {} },
          qr/upstream_dns\.upstreams: expected an object of 1 to 64/ ],
        [ 'upstreams a list', { dir => '/x', upstreams => ['h.test:1'] },
          qr/upstream_dns\.upstreams: expected an object/ ],
        [ 'unknown key', { dir => '/x', upstreams => { u => 'h.test:1' },
                           resolver => 1 },
          qr/upstream_dns\.resolver/ ],
        [ 'interval 0', { dir => '/x', upstreams => { u => 'h.test:1' },
                          interval_ms => 0 },
          qr/upstream_dns\.interval_ms/ ],
        [ 'interval a string', { dir => '/x', upstreams => { u => 'h.test:1' },
                                 interval_ms => '5' },
          qr/upstream_dns\.interval_ms/ ],
        [ 'a bad upstream name', { dir => '/x', upstreams => { 'a/b' => 'h.test:1' } },
          qr{upstream_dns\.upstreams\.a/b: expected an upstream name} ],
        [ 'a name server by name', { dir => '/x', upstreams => { u => 'h.test:1' },
                                     nameserver => 'localhost:53' },
          qr/upstream_dns\.nameserver: expected an IPv4 address and a port/ ],
        [ 'a name server without port', { dir => '/x', upstreams => { u => 'h.test:1' },
                                          nameserver => '127.0.0.1' },
          qr/upstream_dns\.nameserver: expected/ ],
        [ 'nginx_pid relative', { dir => '/x', upstreams => { u => 'h.test:1' },
                                  nginx_pid => 'nginx.pid' },
          qr/upstream_dns\.nginx_pid: expected an absolute path/ ],
    );
    for my $bad ('h.test', 'h.test:0', 'h.test:65536', 'h.test:', ':80',
                 'h st:80', '-h.test:80', "h\x01.test:80", 'h.test:80x',
                 'h.test:-1', 'h' x 254 . ':1', '') {
        push @cases, [ 'host:port ' . JSON::PP->new->ascii->encode([$bad]),
                       { dir => '/x', upstreams => { u => $bad } },
                       qr/upstream_dns\.upstreams\.u: expected "host:port"/ ];
    }
    push @cases, [ 'host:port null', { dir => '/x', upstreams => { u => undef } },
                   qr/upstream_dns\.upstreams\.u: expected "host:port"/ ],
                 [ 'host:port a number', { dir => '/x', upstreams => { u => 80 } },
                   qr/upstream_dns\.upstreams\.u: expected "host:port"/ ];

    my $json = JSON::PP->new->canonical->utf8;
    for my $case (@cases) {
        my ($what, $conf, $re) = @$case;
        $t->write_file('bad.json', $json->encode({ %$policy, upstream_dns => $conf }));
        my ($rc, $out) = $t->policyd_cmd('-t', '-c', $t->dir . '/bad.json',
                                         '-s', $t->dir . '/check.sock');
        is($rc, 1, "$what: -t fails");
        like($out, $re, "$what: named") or diag($out);
        like($out, qr/bad\.json/, "$what: with the file");
    }

    $t->write_file('good.json', $json->encode({ %$policy, upstream_dns => {
        dir => '/x', upstreams => { u => '10.0.0.1:443', 'v.w' => 'a-b.test:1' } } }));
    my ($rc, $out) = $t->policyd_cmd('-t', '-c', $t->dir . '/good.json',
                                     '-s', $t->dir . '/check.sock');
    is($rc, 0, 'a good upstream_dns passes -t') or diag($out);
};

$t->done_testing;
