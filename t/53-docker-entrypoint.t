#!/usr/bin/perl
#
# The container, outside a container (no image can be built on the
# machines these tests run on): docker/entrypoint.sh with the container's
# nginx.conf and upstreams, the real binaries, and (as root) as an
# unprivileged user, as the image runs it.  "all" checks the files,
# starts policyd and nginx, serves, reloads both on SIGHUP, stops both on
# SIGTERM with 0, takes nginx down with 1 when policyd dies, and stops
# before starting anything on a bad policy or one every user may read;
# "policyd" and "nginx" each run one of them as the process itself, as
# docker/compose.yaml does.  docker/healthcheck.sh says healthy only when
# what it checks answers.  The Dockerfile and compose.yaml are read for
# what the image promises: two stages, a runtime stage without build
# tools, a user that is not root, health checks; and the compose policy
# passes policyd -t.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Time::HiRes qw(sleep);
use CPAN::Meta::YAML;
use JSON::PP ();
use Tailgate::Gateway;

my $t = Tailgate::Gateway->new->skip_unless_built;
my $root = "$FindBin::Bin/..";
my $dir = $t->dir;

# --- what the image promises, read from its files --------------------------

my $dockerfile = $t->read_file("$root/docker/Dockerfile");
my @stages = split /^(?=FROM )/m, $dockerfile;
shift @stages unless $stages[0] =~ /^FROM /;

is(scalar @stages, 2, 'the Dockerfile has two stages');
like($stages[0], qr/^FROM debian:\$\{DEBIAN\} AS build$/m, 'a build stage');
like($stages[0], qr/make deb NO_BUILD=1/, '  that builds the Debian package');
like($stages[1], qr/^FROM debian:\$\{DEBIAN\} AS runtime$/m, 'a runtime stage');
like($stages[1], qr/^COPY --from=build \/out\/ \/tmp\/deb\/$/m,
     '  that takes the package from the build stage');
like($stages[1], qr/apt-get install -y --no-install-recommends nginx \/tmp\/deb\/\*\.deb/,
     '  and installs nginx and it');

my ($runtime_install) = $stages[1] =~ /apt-get install ([^&]*)/s;
unlike($runtime_install // '', qr/-dev\b|build-essential|\bmake\b|\bgcc\b|\bclang\b|\bgit\b/,
       'the runtime stage installs no build tools');
unlike($stages[1], qr/^RUN .*\bmake\b/m, 'and builds nothing');

my ($user) = $stages[1] =~ /^USER (\S+)$/m;
like($user // '', qr/^[1-9]\d*:[1-9]\d*$/, "the runtime runs as a numeric user, not root ($user)");
like($stages[1], qr/useradd --system --uid 990 --gid tailgate --groups www-data/,
     '  the user tailgate, 990, in the socket\'s group www-data');
like($stages[1], qr/^HEALTHCHECK .*\n\s+CMD \["\/usr\/local\/bin\/tailgate-healthcheck"\]$/m,
     'a HEALTHCHECK with docker/healthcheck.sh');
like($stages[1], qr/^ENTRYPOINT \["\/usr\/local\/sbin\/tailgate-entrypoint"\]$/m,
     'the entrypoint');

for my $copy ($stages[1] =~ /^COPY (docker\/\S+) /mg) {
    ok(-f "$root/$copy", "COPY $copy: it is there");
}

# the build stage's packages are the Makefile's (which has the tests' too)
my ($pkgs) = $stages[0] =~ /--no-install-recommends\s*\\\n(.*?)(?:\n\s*&&)/s;
my @build_pkgs = split ' ', ($pkgs // '') =~ s/\\//gr;
my ($mk) = $t->read_file("$root/Makefile") =~ /^DEB_PACKAGES := (.*?)\n\n/ms;
my %mk = map { $_ => 1 } split ' ', ($mk // '') =~ s/\\//gr;
ok(@build_pkgs >= 5, 'the build stage names its packages: @build_pkgs');
is_deeply([ grep { !$mk{$_} } @build_pkgs ], [],
          '  all of them among the Makefile\'s DEB_PACKAGES');

my $yaml = CPAN::Meta::YAML->read_string($t->read_file("$root/docker/compose.yaml"))
    or BAIL_OUT('docker/compose.yaml: ' . CPAN::Meta::YAML->errstr);
my $svc = $yaml->[0]{services} // {};

is_deeply([ sort keys %$svc ], [qw(nginx policyd redis)],
          'compose: nginx, policyd and Redis');
for my $name (sort keys %$svc) {
    my $s = $svc->{$name};
    ok(ref $s->{healthcheck}{test} eq 'ARRAY' && @{ $s->{healthcheck}{test} },
       "compose: $name has a health check");
    like($s->{user} // '', qr/^[1-9]\d*:[1-9]\d*$/, "compose: $name is not root");
    is($s->{read_only}, 'true', "compose: $name on a read-only file system");
    is_deeply($s->{cap_drop}, ['ALL'], "compose: $name without capabilities");
}
is_deeply($svc->{policyd}{healthcheck}{test},
          [qw(CMD /usr/local/bin/tailgate-healthcheck policyd)],
          'compose: policyd\'s health is its admin socket\'s answer');
is_deeply($svc->{nginx}{healthcheck}{test},
          [qw(CMD /usr/local/bin/tailgate-healthcheck all)],
          'compose: nginx\'s is /health with policyd up');
is($svc->{nginx}{depends_on}{policyd}{condition}, 'service_healthy',
   'compose: nginx waits for a healthy policyd');
is($svc->{policyd}{depends_on}{redis}{condition}, 'service_healthy',
   'compose: policyd for a healthy Redis');
is_deeply([ map { [ grep { /:\/run\/tailgate$/ } @{ $svc->{$_}{volumes} } ] } qw(nginx policyd) ],
          [ ['run:/run/tailgate'], ['run:/run/tailgate'] ],
          'compose: nginx and policyd share /run/tailgate (the socket)');
is_deeply($svc->{policyd}{command}, ['policyd'], 'compose: policyd\'s container runs "policyd"');
is_deeply($svc->{nginx}{command}, ['nginx'], 'compose: nginx\'s runs "nginx"');

# the compose policy, with what the compose file gives policyd
{
    my $copy = $t->private_copy("$root/docker/tailgate/policy.json");
    local $ENV{TAILGATE_REDIS_PASSWORD} = 'pw-compose';
    local $ENV{DEEPSEEK_API_KEY} = 'sk-compose';
    local $ENV{TAILGATE_REDIS_ADDRESS} = 'redis:6379';
    my ($rc, $out) = $t->policyd_cmd('-t', '-c', $copy, '-s', "$dir/x.sock",
                                     '-a', "$dir/y.sock");
    if (getgrnam('www-data')) {
        is($rc, 0, 'docker/tailgate/policy.json passes policyd -t') or diag($out);
    } else {
        like($out, qr/no group named "www-data"/, 'docker/tailgate/policy.json: '
             . 'only the group is missing here');
    }
    unlike($out, qr/pw-compose|sk-compose/, '  printing no secret');

    delete local $ENV{TAILGATE_REDIS_PASSWORD};
    ($rc, $out) = $t->policyd_cmd('-t', '-c', $copy, '-s', "$dir/x.sock",
                                  '-a', "$dir/y.sock");
    like($out, qr/redis\.password: environment variable TAILGATE_REDIS_PASSWORD is not set/,
         '  without its password, -t names the variable');
}


# --- the entrypoint, as the image runs it ----------------------------------

# as root: as nobody, in a directory of its own, as the container's user
my @as;
my $c = "$dir/c";
mkdir $c or die "$c: $!";

if ($> == 0 && system('setpriv --version >/dev/null 2>&1') == 0
    && defined getpwnam('nobody'))
{
    my ($uid, $gid) = (getpwnam('nobody'))[2, 3];
    @as = ('setpriv', "--reuid=$uid", "--regid=$gid", '--clear-groups',
           '--no-new-privs');
    chmod 0711, $dir;
    chown $uid, $gid, $c;
}
my $as_uid = @as ? (getpwnam('nobody'))[2] : $>;

sub own {
    my (@files) = @_;
    chown $as_uid, (@as ? (getpwnam('nobody'))[3] : $)), @files if @as;
}

$t->mock_provider('local');

my $policy = Tailgate::Gateway::default_policy();
$policy->{providers}{local}{upstream} = 'tailgate_local';
$policy->{providers}{ext}{upstream} = 'tailgate_deepseek';
$policy->{admin_listen} = { path => "$c/admin.sock" };
my $policy_json = JSON::PP->new->canonical->pretty->encode($policy);

sub write_policy {
    my ($text, $mode) = @_;
    $t->write_file("$c/policy.json", $text);
    chmod $mode // 0640, "$c/policy.json";
    own("$c/policy.json");
}
write_policy($policy_json);

my $key = $t->new_key;
$t->write_file("$c/keys", $t->read_file($t->write_keys(alice => $key)));
chmod 0640, "$c/keys";
own("$c/keys");

# the container's nginx.conf and upstreams, with this test's paths and ports

my $conf = $t->read_file("$root/docker/nginx.conf");
$conf =~ s{^include /etc/nginx/modules-enabled/\*\.conf;$}{load_module $t->{module};}m
    or BAIL_OUT('nginx.conf: no modules-enabled include');
$conf =~ s{^pid .*$}{pid $c/nginx.pid;}m or BAIL_OUT('nginx.conf: no pid');
$conf =~ s{^error_log .*$}{error_log $c/error.log info;}m or BAIL_OUT('no error_log');
$conf =~ s{/tmp/nginx/}{$c/nginx-tmp/}g;
$conf =~ s{access_log /dev/stdout tailgate;}{access_log $c/access.log tailgate;
    tailgate_policyd unix:$c/policyd.sock;
    tailgate_keys $c/keys;} or BAIL_OUT('no access_log');
$conf =~ s{include tailgate/http.conf;}{include tailgate/log.conf;};
$conf =~ s{include /etc/tailgate/upstreams.conf;}{include $c/upstreams.conf;};
$conf =~ s{listen 8080;}{listen 127.0.0.1:@{[ $t->port('nginx') ]};};
unlike($conf, qr/^\s*user\s/m, 'the container\'s nginx.conf has no "user": nginx runs as the container\'s');

my $upstreams = $t->read_file("$root/docker/tailgate/upstreams.conf");
$upstreams =~ s{server host\.docker\.internal:8081}{server 127.0.0.1:@{[ $t->mock('local')->port ]}}
    or BAIL_OUT('upstreams.conf: no local server');
$upstreams =~ s{server api\.deepseek\.com:443}{server 127.0.0.1:9};

$t->write_file("$c/nginx.conf", $conf);
$t->write_file("$c/upstreams.conf", $upstreams);
chmod 0644, "$c/nginx.conf", "$c/upstreams.conf";
symlink("$root/conf/tailgate", "$c/tailgate") unless -e "$c/tailgate";

my %env = (
    TAILGATE_POLICY       => "$c/policy.json",
    TAILGATE_POLICYD_SOCK => "$c/policyd.sock",
    TAILGATE_NGINX_CONF   => "$c/nginx.conf",
    TAILGATE_NGINX_TEMP   => "$c/nginx-tmp",
    TAILGATE_POLICYD      => $t->policyd_binary,
    TAILGATE_NGINX        => $t->nginx_binary,
    TAILGATE_NGINX_ARGS   => "-p $c/ -e $c/error.log",
    EXT_API_KEY           => 'sk-unused',
);

my %health_env = (
    TAILGATE_HEALTH_ADDR => '127.0.0.1:' . $t->port('nginx'),
    TAILGATE_ADMIN_SOCK  => "$c/admin.sock",
    TAILGATE_POLICYD     => $t->policyd_binary,
);

if ($ENV{TAILGATE_NGINX_PRELOAD}) {
    $env{LD_PRELOAD} = $ENV{TAILGATE_NGINX_PRELOAD};
    $env{ASAN_OPTIONS} = 'detect_leaks=0';
    $health_env{ASAN_OPTIONS} = 'detect_leaks=0';
}

sub entry {
    my ($name, @args) = @_;
    $t->spawn($name, [ @as, 'bash', "$root/docker/entrypoint.sh", @args ],
              env => \%env, log => "$name.log");
}

sub start {
    entry('entry', @_);
    return $t->wait_for(sub { $t->http('GET', '/health')->{status} == 200 },
                        timeout => 10);
}

sub health {
    my (@args) = @_;
    local %ENV = (%ENV, %health_env);
    delete local $ENV{LD_PRELOAD};
    return system("bash $root/docker/healthcheck.sh @args 2>/dev/null") >> 8;
}

sub kids {
    my ($pid) = @_;
    return split ' ', `pgrep -P $pid 2>/dev/null` // '';
}

sub uid_of {
    my ($pid) = @_;
    my ($uid) = $t->read_file("/proc/$pid/status") =~ /^Uid:\s+(\d+)/m;
    return $uid // -1;
}

sub cmdline { my $s = $t->read_file("/proc/$_[0]/cmdline"); $s =~ s/\0/ /g; $s }

ok(start(), 'the entrypoint starts a gateway') or diag($t->read_file('entry.log'));

my $res = $t->chat('qwen', key => $key);
is($res->{status}, 200, 'it serves');
is($res->{headers}{'x-tailgate-provider'}, 'local', 'through policyd');

# everything runs as the container's user
{
    my @procs = kids($t->pid('entry'));
    my ($pd) = grep { cmdline($_) =~ /policyd/ } @procs;
    my ($ng) = grep { cmdline($_) =~ /nginx/ } @procs;
    my @workers = $ng ? kids($ng) : ();

    ok($pd && $ng && @workers, 'policyd, the nginx master and its workers run');
    is_deeply([ map { uid_of($_) } grep { defined } $pd, $ng, @workers ],
              [ ($as_uid) x (2 + @workers) ],
              @as ? 'all as nobody, not root' : 'all as this test\'s user');
}

is(health(), 0, 'healthcheck.sh: healthy (/health 200, policyd up)');
is(health('nginx'), 0, 'healthcheck.sh nginx: healthy');
is(health('policyd'), 0, 'healthcheck.sh policyd: its admin socket answers');
is(health('what'), 2, 'healthcheck.sh with an unknown check: 2');

# SIGHUP: both reload

$t->signal('entry', 'HUP');
ok($t->wait_log('entry.log', qr/policy reloaded/), 'SIGHUP reloads policyd');
ok($t->wait_log("$c/error.log", qr/signal 1 \(SIGHUP\) received/), 'and nginx');
is($t->chat('qwen', key => $key)->{status}, 200, 'still serving');

# SIGTERM: both stop, exit 0

$t->signal('entry', 'TERM');
ok($t->wait_for(sub { !$t->running('entry') }, timeout => 10), 'SIGTERM stops it');
is($t->exit_status('entry') >> 8, 0, 'with 0');
ok(!-e "$c/policyd.sock", 'policyd removed its socket');
ok(!$t->wait_for(sub { $t->http('GET', '/health', timeout => 1)->{status} },
                 timeout => 1), 'nginx is gone');
isnt(health(), 0, 'healthcheck.sh: unhealthy with nothing listening');
isnt(health('policyd'), 0, 'healthcheck.sh policyd: unhealthy');

# policyd dies: nginx goes too, exit 1

ok(start(), 'started again');
my ($policyd) = grep { cmdline($_) =~ /policyd/ } kids($t->pid('entry'));
ok($policyd, 'policyd is a child of the entrypoint');
kill 'KILL', $policyd if $policyd;
ok($t->wait_for(sub { !$t->running('entry') }, timeout => 10),
   'the entrypoint exits when policyd dies');
is($t->exit_status('entry') >> 8, 1, 'with 1, for a restart policy');
like($t->read_file('entry.log'), qr/policyd exited; stopping nginx/, 'and says why');
unlink "$c/policyd.sock";

# "policyd" and "nginx": one each, as the process itself (compose)

entry('pd', 'policyd');
ok($t->wait_socket("$c/policyd.sock", timeout => 10), '"policyd": policyd listens')
    or diag($t->read_file('pd.log'));
like(cmdline($t->pid('pd')), qr/^\Q@{[ $t->policyd_binary ]}\E -c /,
     '  as the process itself (exec)');

entry('ng', 'nginx');
ok($t->wait_for(sub { $t->http('GET', '/health')->{status} == 200 }, timeout => 10),
   '"nginx": nginx answers') or diag($t->read_file('ng.log'));
like(cmdline($t->pid('ng')), qr/nginx: master process/, '  as the process itself (exec)');
is($t->chat('qwen', key => $key)->{status}, 200, 'the two serve together');
is(health(), 0, 'healthcheck.sh: healthy');

my $from = $t->log_size("$c/error.log");
$t->signal('ng', 'HUP');
ok($t->wait_log("$c/error.log", qr/signal 1 \(SIGHUP\) received/, from => $from),
   'SIGHUP to "nginx" reloads nginx');

$t->signal('pd', 'TERM');
ok($t->wait_for(sub { !$t->running('pd') }, timeout => 10), 'SIGTERM stops "policyd"');
is($t->exit_status('pd') >> 8, 0, '  with 0');

is($t->chat('qwen', key => $key)->{status}, 503, 'nginx alone: 503, never an answer without policyd');
like($t->http('GET', '/health')->{body}, qr/"policyd":"unreachable"/, '/health says policyd is unreachable');
isnt(health(), 0, 'healthcheck.sh: unhealthy without policyd');
is(health('nginx'), 0, 'healthcheck.sh nginx: nginx itself is');
isnt(health('policyd'), 0, 'healthcheck.sh policyd: unhealthy');

$t->signal('ng', 'TERM');
ok($t->wait_for(sub { !$t->running('ng') }, timeout => 10), 'SIGTERM stops "nginx"');

# an unknown command

entry('bad', 'what');
ok($t->wait_for(sub { !$t->running('bad') }, timeout => 10), 'an unknown command: it exits');
is($t->exit_status('bad') >> 8, 2, '  with 2');
like($t->read_file('bad.log'), qr/unknown command "what": all, policyd or nginx/, '  and says so');

# a bad policy stops it before anything starts

write_policy('{ "providers": {} }');
entry('entry');
ok($t->wait_for(sub { !$t->running('entry') }, timeout => 10), 'a bad policy: it exits');
isnt($t->exit_status('entry') >> 8, 0, 'non-zero');
like($t->read_file('entry.log'), qr/providers: expected at least one provider/,
     'with policyd -t\'s errors');

# a policy that every user may read: the same

write_policy($policy_json, 0644);
entry('entry');
ok($t->wait_for(sub { !$t->running('entry') }, timeout => 10),
   'a policy every user may read: it exits');
isnt($t->exit_status('entry') >> 8, 0, 'non-zero');
like($t->read_file('entry.log'), qr/mode 0644: every user of this machine can read it.*Fix: chmod o-rwx \Q$c\E\/policy\.json/,
     'naming the mode and the fix');
ok(!-e "$c/policyd.sock" && !-e "$c/nginx.pid", 'nothing was started');

$t->allow_log(qr/exited on signal 9/);

done_testing();
