#!/usr/bin/perl
#
# docker/entrypoint.sh, outside a container (no image can be built on the
# machines these tests run on): it checks the files, starts policyd and
# nginx, serves, reloads both on SIGHUP, stops both on SIGTERM with 0, and
# takes nginx down with 1 when policyd dies.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Time::HiRes qw(sleep);
use Tailgate::Gateway;

my $t = Tailgate::Gateway->new->skip_unless_built;
my $root = "$FindBin::Bin/..";
my $dir = $t->dir;

$t->mock_provider('local');
$t->write_policy(Tailgate::Gateway::default_policy());
my $key = $t->new_key;
$t->write_keys(alice => $key);

# the container's nginx.conf, with this test's paths and port

my $conf = $t->read_file("$root/docker/nginx.conf");
$conf =~ s{^load_module .*$}{load_module $t->{module};}m;
$conf =~ s{^user .*$}{$> == 0 ? 'user root;' : ''}me;
$conf =~ s{^pid .*$}{pid $dir/nginx.pid;}m;
$conf =~ s{^error_log .*$}{error_log $dir/error.log info;}m;
$conf =~ s{access_log /dev/stdout tailgate;}{access_log $dir/access.log tailgate;
    client_body_temp_path $dir/body;
    proxy_temp_path $dir/proxy;
    tailgate_policyd unix:$dir/policyd.sock;
    tailgate_keys $dir/keys;};
$conf =~ s{include tailgate/http.conf;}{include tailgate/log.conf;};
$conf =~ s{include /etc/tailgate/upstreams.conf;}{
    upstream tg_local { server 127.0.0.1:@{[ $t->mock('local')->port ]}; }
    upstream tg_ext { server 127.0.0.1:9; }
    tailgate_private_upstream tg_local;};
$conf =~ s{listen 8080;}{listen 127.0.0.1:@{[ $t->port('nginx') ]};};

$t->write_file('nginx.conf', $conf);
symlink("$root/conf/tailgate", "$dir/tailgate") unless -e "$dir/tailgate";

my %env = (
    TAILGATE_POLICY       => "$dir/policy.json",
    TAILGATE_POLICYD_SOCK => "$dir/policyd.sock",
    TAILGATE_NGINX_CONF   => "$dir/nginx.conf",
    TAILGATE_POLICYD      => $t->policyd_binary,
    TAILGATE_NGINX        => $t->nginx_binary,
    TAILGATE_NGINX_ARGS   => "-p $dir/ -e $dir/error.log",
    EXT_API_KEY           => 'sk-unused',
);

if ($ENV{TAILGATE_NGINX_PRELOAD}) {
    $env{LD_PRELOAD} = $ENV{TAILGATE_NGINX_PRELOAD};
    $env{ASAN_OPTIONS} = 'detect_leaks=0';
}

sub start {
    $t->spawn('entry', [ 'bash', "$root/docker/entrypoint.sh" ],
              env => \%env, log => 'entry.log');
    return $t->wait_for(sub { $t->http('GET', '/health')->{status} == 200 },
                        timeout => 10);
}

sub entry_pids {
    my $pid = $t->pid('entry');
    my @kids = split ' ', `pgrep -P $pid 2>/dev/null` // '';
    return @kids;
}

ok(start(), 'the entrypoint starts a gateway') or diag($t->read_file('entry.log'));

my $res = $t->chat('qwen', key => $key);
is($res->{status}, 200, 'it serves');
is($res->{headers}{'x-tailgate-provider'}, 'local', 'through policyd');

# SIGHUP: both reload

$t->signal('entry', 'HUP');
ok($t->wait_log('entry.log', qr/policy reloaded/), 'SIGHUP reloads policyd');
ok($t->wait_log('error', qr/signal 1 \(SIGHUP\) received/), 'and nginx');
is($t->chat('qwen', key => $key)->{status}, 200, 'still serving');

# SIGTERM: both stop, exit 0

$t->signal('entry', 'TERM');
ok($t->wait_for(sub { !$t->running('entry') }, timeout => 10), 'SIGTERM stops it');
is($t->exit_status('entry') >> 8, 0, 'with 0');
ok(!-e "$dir/policyd.sock", 'policyd removed its socket');
ok(!$t->wait_for(sub { $t->http('GET', '/health', timeout => 1)->{status} },
                 timeout => 1), 'nginx is gone');

# policyd dies: nginx goes too, exit 1

ok(start(), 'started again');
my ($policyd) = grep { `cat /proc/$_/cmdline 2>/dev/null` =~ /policyd/ } entry_pids();
ok($policyd, 'policyd is a child of the entrypoint');
kill 'KILL', $policyd if $policyd;
ok($t->wait_for(sub { !$t->running('entry') }, timeout => 10),
   'the entrypoint exits when policyd dies');
is($t->exit_status('entry') >> 8, 1, 'with 1, for a restart policy');
like($t->read_file('entry.log'), qr/policyd exited; stopping nginx/, 'and says why');

# a bad policy stops it before anything starts

$t->write_file('policy.json', '{ "providers": {} }');
$t->spawn('entry', [ 'bash', "$root/docker/entrypoint.sh" ],
          env => \%env, log => 'entry.log');
ok($t->wait_for(sub { !$t->running('entry') }, timeout => 10), 'a bad policy: it exits');
isnt($t->exit_status('entry') >> 8, 0, 'non-zero');
like($t->read_file('entry.log'), qr/providers: expected at least one provider/,
     'with policyd -t\'s errors');

$t->allow_log(qr/exited on signal 9/);

done_testing();
