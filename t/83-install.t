#!/usr/bin/perl
#
# make install: the tree it writes (every file, its mode, nothing else),
# the systemd unit's hardening and its systemd-analyze score (the one
# docs/operations.md records), the installed binaries and includes serving
# a request, and the refusals that keep secrets and keys safe: policyd's
# of a policy or environment file that every user may read, the module's
# of a key file that every user may write (at nginx -t and when a worker
# reads it again).  As root, policyd run as an unprivileged user gives its
# socket to the group nginx's workers are in, and no one else connects.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use File::Find;
use File::Compare qw(compare);
use IO::Socket::UNIX;
use Digest::SHA ();
use JSON::PP ();
use Tailgate::Gateway;
use Tailgate::JWT qw(jwt_keypair);

my $t = Tailgate::Gateway->new->skip_unless_built;
my $root = $t->root;
my $dir = $t->dir;

# make install of the build under test, never building anything
sub make_install {
    my (@vars) = @_;

    local $ENV{MAKEFLAGS};
    local $ENV{MAKELEVEL};
    local $ENV{MFLAGS};
    delete @ENV{qw(MAKEFLAGS MAKELEVEL MFLAGS)};

    my $cmd = join ' ', 'make', '--no-print-directory', '-C', $root,
        'install', 'NO_BUILD=1', "MODULE=$t->{module}",
        "POLICYD=$t->{policyd}", @vars;
    my $out = `$cmd 2>&1`;

    return ($? >> 8, $out);
}

sub mode_of { my @st = stat $_[0]; return @st ? $st[2] & 07777 : -1 }

# policyd with the sanitizer's runtime as the suite runs it
sub policyd_out {
    my (%opt) = @_;

    local %ENV = (%ENV, %{ $opt{env} // {} });
    my $cmd = join ' ', map { "'$_'" } @{ $opt{argv} };
    my $out = `$cmd 2>&1`;

    return ($? >> 8, $out);
}


# --- the tree, staged under DESTDIR --------------------------------------

my $dest = "$dir/dest";
my ($rc, $out) = make_install("DESTDIR=$dest");
is($rc, 0, 'make install DESTDIR=... succeeds') or diag($out);
like($out, qr/as root, next: sh packaging\/install-setup\.sh/,
     'and says what is left to do as root (nothing outside DESTDIR)');

my $p = '/usr/local';
my %want = (
    "$p/lib/nginx/modules/ngx_http_tailgate_module.so"       => 0644,
    "$p/sbin/policyd"                                         => 0755,
    "$p/bin/tailgate-key"                                     => 0755,
    "$p/share/nginx/modules-available/mod-http-tailgate.conf" => 0644,
    "$p/lib/systemd/system/tailgate-policyd.service"          => 0644,
    "$p/lib/systemd/system/nginx.service.d/tailgate.conf"     => 0644,
    "$p/lib/sysusers.d/tailgate.conf"                         => 0644,
    "$p/share/tailgate/keys"                                  => 0644,
    "$p/share/man/man8/policyd.8"                             => 0644,
    "$p/share/man/man1/tailgate-key.1"                        => 0644,
    '/etc/logrotate.d/tailgate'                               => 0644,
    '/etc/tailgate/policy.json'                               => 0640,
    '/etc/tailgate/policyd.env'                               => 0600,
    '/etc/tailgate/keys'                                      => 0640,
    (map { ("/etc/nginx/tailgate/$_" => 0644) }
         qw(http.conf locations.conf log.conf proxy.conf
            upstreams.conf.example)),
    (map { ("$p/share/doc/tailgate/$_" => 0644) }
         'README.md', map { s{.*/}{}r } glob("$root/docs/*.md")),
    (map { ("$p/share/doc/tailgate/examples/$_" => 0644) }
         qw(policy.example.json nginx-tls.example.conf upstreams.conf.example
            policyd.env.example two-nodes/README.md two-nodes/policy.json)),
);

ok(-f "$root/docs/operations.md" && $want{"$p/share/doc/tailgate/operations.md"},
   'docs/operations.md is among the docs');

my %got;
find({ no_chdir => 1, wanted => sub {
    return if -d $_;
    (my $rel = $_) =~ s{^\Q$dest\E}{};
    $got{$rel} = mode_of($_);
} }, $dest);

for my $f (sort keys %want) {
    is(sprintf('%04o', $got{$f} // -1), sprintf('%04o', $want{$f}),
       "$f: mode " . sprintf('%04o', $want{$f}));
}

is_deeply([ sort grep { !exists $want{$_} } keys %got ], [],
          'nothing else is installed');

my @open = ();
find({ no_chdir => 1, wanted => sub {
    push @open, $_ if mode_of($_) & 022;
} }, $dest);
is_deeply(\@open, [], 'nothing installed is writable by its group or others');

is(mode_of("$dest/etc/tailgate"), 0755,
   '/etc/tailgate: 0755, so that policyd and nginx\'s workers reach their files');

is(compare("$dest$p/sbin/policyd", $t->{policyd}), 0, 'policyd is the build');
is(compare("$dest$p/lib/nginx/modules/ngx_http_tailgate_module.so",
           $t->{module}), 0, 'the module is the build');
is(compare("$dest/etc/tailgate/policy.json", "$root/conf/policy.example.json"),
   0, '/etc/tailgate/policy.json starts as the example policy');

for my $f (qw(http.conf locations.conf log.conf proxy.conf)) {
    is(compare("$dest/etc/nginx/tailgate/$f", "$root/conf/tailgate/$f"), 0,
       "/etc/nginx/tailgate/$f is conf/tailgate/$f (SYSCONFDIR is /etc)");
}

is($t->read_file("$dest$p/share/nginx/modules-available/mod-http-tailgate.conf"),
   "load_module $p/lib/nginx/modules/ngx_http_tailgate_module.so;\n",
   'the modules-available snippet loads the installed module');

like($t->read_file("$dest$p/lib/sysusers.d/tailgate.conf"),
     qr/^u tailgate - .* \/var\/lib\/tailgate /m, 'sysusers.d names the user');

# nginx's drop-in: after policyd, and a malloc that keeps freed body buffers

my $dropin = $t->read_file("$dest$p/lib/systemd/system/nginx.service.d/tailgate.conf");
like($dropin, qr/^After=tailgate-policyd\.service$/m, 'nginx starts after policyd');
my ($tunables) = $dropin =~ /^Environment=GLIBC_TUNABLES=(\S+)$/m;
ok(defined $tunables, 'the drop-in sets GLIBC_TUNABLES for nginx');
my %tunable = map { /^glibc\.malloc\.(\w+)=(\d+)$/ ? ($1 => $2) : ('?' => $_) }
              split /:/, $tunables // '';
ok(!exists $tunable{'?'}, 'every tunable is glibc.malloc.NAME=BYTES')
    or diag($tunables);

# the largest body buffer of the shipped locations
my $largest = 0;
my $locations = $t->read_file("$root/conf/tailgate/locations.conf");
while ($locations =~ /client_body_buffer_size\s+(\d+)([km]?);/g) {
    my $n = $1 * { '' => 1, k => 1024, m => 1024 * 1024 }->{$2};
    $largest = $n if $n > $largest;
}
ok($largest > 0, "the locations' largest body buffer: $largest bytes");
cmp_ok($tunable{mmap_threshold} // 0, '>', $largest,
       'a body buffer of the shipped locations comes from the heap, not mmap()');
cmp_ok($tunable{trim_threshold} // 0, '>=', 8 * $largest,
       'the heap keeps eight such buffers when they are freed');

SKIP: {
    my ($ldso) = grep { -x } '/lib64/ld-linux-x86-64.so.2',
                             glob('/lib/*-linux-gnu/ld-linux*.so.*');
    skip 'no ld.so to list the tunables', 2 unless $ldso;

    my $listed = `GLIBC_TUNABLES='$tunables' $ldso --list-tunables 2>&1`;
    for my $name (qw(mmap_threshold trim_threshold)) {
        my ($hex) = $listed =~ /^glibc\.malloc\.$name: (0x[0-9a-f]+)/m;
        is(defined $hex ? hex($hex) : undef, $tunable{$name},
           "glibc takes malloc.$name as written");
    }
}

my ($docker) = $t->read_file("$root/docker/Dockerfile")
               =~ /^ENV GLIBC_TUNABLES=(\S+)$/m;
is($docker, $tunables, 'the container runs nginx with the same malloc');

# the unit: every hardening setting that applies

my $unit = $t->read_file("$dest$p/lib/systemd/system/tailgate-policyd.service");
my %unit;
for (split /\n/, $unit) {
    next if /^\s*(#|$|\[)/;
    my ($k, $v) = /^(\w+)=(.*)$/ or next;
    push @{ $unit{$k} }, $v;
}

my %hardening = (
    User                    => 'tailgate',
    Group                   => 'tailgate',
    SupplementaryGroups     => 'www-data',
    RuntimeDirectory        => 'tailgate',
    RuntimeDirectoryMode    => '0711',
    StateDirectory          => 'tailgate',
    EnvironmentFile         => '/etc/tailgate/policyd.env',
    ExecStart               => "$p/sbin/policyd -c /etc/tailgate/policy.json "
                               . "-e /etc/tailgate/policyd.env",
    ExecStartPre            => "$p/sbin/policyd -t -c /etc/tailgate/policy.json "
                               . "-e /etc/tailgate/policyd.env",
    CapabilityBoundingSet   => '',
    AmbientCapabilities     => '',
    NoNewPrivileges         => 'yes',
    ProtectSystem           => 'strict',
    ProtectHome             => 'yes',
    PrivateTmp              => 'yes',
    PrivateDevices          => 'yes',
    ProtectKernelTunables   => 'yes',
    ProtectKernelModules    => 'yes',
    ProtectKernelLogs       => 'yes',
    ProtectControlGroups    => 'yes',
    RestrictAddressFamilies => 'AF_UNIX AF_INET AF_INET6',
    SystemCallFilter        => '@system-service',
    SystemCallArchitectures => 'native',
    MemoryDenyWriteExecute  => 'yes',
    LockPersonality         => 'yes',
    RestrictNamespaces      => 'yes',
    RestrictRealtime        => 'yes',
    RestrictSUIDSGID        => 'yes',
    UMask                   => '0027',
);

for my $k (sort keys %hardening) {
    is_deeply($unit{$k}, [ $hardening{$k} ], "the unit: $k=$hardening{$k}");
}

unlike($unit, qr/@[A-Z]+@/, 'every @NAME@ of the template is filled in');

SKIP: {
    skip 'no systemd-analyze here', 2
        unless system('systemd-analyze --version >/dev/null 2>&1') == 0;

    my $sec = `systemd-analyze security --offline=yes $dest$p/lib/systemd/system/tailgate-policyd.service 2>&1`;
    my ($score) = $sec =~ /Overall exposure level for \S+: (\d+\.\d+)/;

    ok(defined $score && $score <= 2.0,
       'systemd-analyze security: ' . ($score // 'no score') . ' (at most 2.0)')
        or diag($sec);

    my $recorded = quotemeta($score // 'none');
    like($t->read_file("$root/docs/operations.md"),
         qr/exposure level[^\n]*\b$recorded\b/i,
         'docs/operations.md records that score');
}

# installing again keeps what the operator wrote

$t->write_file("$dest/etc/tailgate/policy.json", "{ \"mine\": 1 }\n");
chmod 0640, "$dest/etc/tailgate/policy.json";
($rc, $out) = make_install("DESTDIR=$dest");
is($rc, 0, 'make install again');
is($t->read_file("$dest/etc/tailgate/policy.json"), "{ \"mine\": 1 }\n",
   'keeps an edited /etc/tailgate/policy.json');
like($out, qr{kept \Q$dest\E/etc/tailgate/policy\.json}, 'and says so');


# --- a real prefix: the installed programs at work ------------------------

my $pre = "$dir/prefix";
($rc, $out) = make_install("PREFIX=$pre", "SYSCONFDIR=$pre/etc", 'SETUP=no');
is($rc, 0, 'make install PREFIX=... SYSCONFDIR=... SETUP=no') or diag($out);
unlike($out, qr/install-setup/, 'SETUP=no: no word of the setup');

my $unit_file = "$pre/lib/systemd/system/tailgate-policyd.service";
like($t->read_file($unit_file),
     qr{^ExecStart=\Q$pre\E/sbin/policyd -c \Q$pre\E/etc/tailgate/policy\.json -e \Q$pre\E/etc/tailgate/policyd\.env$}m,
     'the unit names the installed paths');
like($t->read_file("$pre/etc/nginx/tailgate/http.conf"),
     qr{^tailgate_keys \Q$pre\E/etc/tailgate/keys;$}m,
     'http.conf names the installed key file');

SKIP: {
    skip 'no systemd-analyze here', 1
        unless system('systemd-analyze --version >/dev/null 2>&1') == 0;

    my $v = `systemd-analyze verify $unit_file 2>&1`;
    is($? >> 8, 0, 'systemd-analyze verify accepts the unit') or diag($v);
}

my $ipolicyd = "$pre/sbin/policyd";
my $ipolicy = "$pre/etc/tailgate/policy.json";
my $ienv = "$pre/etc/tailgate/policyd.env";
my %keys_env = (DEEPSEEK_API_KEY => 'sk-d', OPENROUTER_API_KEY => 'sk-o');

($rc, $out) = policyd_out(argv => [ $ipolicyd, '-t', '-c', $ipolicy,
                                    '-e', $ienv, '-s', "$dir/x.sock",
                                    '-a', "$dir/y.sock" ],
                          env => \%keys_env);
if (getgrnam('www-data')) {
    is($rc, 0, 'the installed policyd -t accepts the installed policy') or diag($out);
} else {
    like($out, qr/no group named "www-data"/, 'the installed policy: only '
         . 'the group www-data is missing here');
}

# policyd's refusals: the policy and the environment file

my %refused = (
    0644 => 'read', 0606 => 'read and write', 0642 => 'write', 0641 => 'open',
);

for my $mode (sort keys %refused) {
    chmod $mode, $ipolicy;
    my $msg = sprintf("%s: mode %04o: every user of this machine can %s it, "
                      . "and it holds or names secrets; refused. Fix: chmod "
                      . "o-rwx %s", $ipolicy, $mode, $refused{$mode}, $ipolicy);

    ($rc, $out) = policyd_out(argv => [ $ipolicyd, '-t', '-c', $ipolicy,
                                        '-s', "$dir/x.sock" ],
                              env => \%keys_env);
    is($rc, 1, sprintf('a policy of mode %04o: -t exits 1', $mode));
    is($out, "$msg\n", '  naming the file, its mode and the fix');
}

chmod 0644, $ipolicy;
($rc, $out) = policyd_out(argv => [ $ipolicyd, '-c', $ipolicy, '-s',
                                    "$dir/x.sock" ], env => \%keys_env);
is($rc, 1, 'policyd does not start with a policy every user may read');
like($out, qr/\Q$ipolicy\E: mode 0644: every user of this machine can read it/,
     'and logs why');
like($out, qr/cannot start: the policy has errors/, 'and that it did not start');
ok(!-e "$dir/x.sock", 'no socket');
chmod 0640, $ipolicy;

for my $mode (0644, 0604, 0660 | 0002) {
    chmod $mode, $ienv;
    ($rc, $out) = policyd_out(argv => [ $ipolicyd, '-t', '-c', $ipolicy,
                                        '-e', $ienv, '-s', "$dir/x.sock",
                                        '-a', "$dir/y.sock" ],
                              env => \%keys_env);
    is($rc, 1, sprintf('an environment file of mode %04o: refused', $mode));
    like($out, qr/^\Q$ipolicy\E: \Q$ienv\E: mode @{[ sprintf '%04o', $mode ]}: every user of this machine can \w+.* Fix: chmod o-rwx \Q$ienv\E$/m,
         '  naming it, its mode and the fix');
}
chmod 0600, $ienv;

($rc, $out) = policyd_out(argv => [ $ipolicyd, '-t', '-c', $ipolicy, '-e',
                                    "$dir/none.env", '-s', "$dir/x.sock" ],
                          env => \%keys_env);
is($rc, 1, 'an environment file that is not there: refused');
like($out, qr/\Q$dir\E\/none\.env: cannot look at its mode: No such file or directory/,
     '  and said so');

# the installed module, includes and policyd serve a request

{
    my $g = Tailgate::Gateway->new(module  => "$pre/lib/nginx/modules/ngx_http_tailgate_module.so",
                                   policyd => $ipolicyd);
    symlink("$pre/etc/nginx/tailgate", $g->dir . '/tailgate')
        or die "symlink: $!";

    $g->write_file('policyd.env', "EXT_API_KEY=unused\n");
    chmod 0600, $g->dir . '/policyd.env';

    my $key = $g->start_gateway(policyd_args => [ '-e', $g->dir . '/policyd.env' ]);
    my $res = $g->chat('qwen', key => $key);
    is($res->{status}, 200, 'the installed module and policyd answer a request');
    is($res->{headers}{'x-tailgate-provider'}, 'local', '  through policyd');

    # a reload refuses what a start refuses, and keeps the policy it has
    my $from = $g->log_size('policyd');
    chmod 0644, $g->dir . '/policy.json';
    $g->reload_policyd;
    ok($g->wait_log('policyd', qr/policy\.json: mode 0644: every user of this machine can read it/,
                    from => $from),
       'SIGHUP with a policy every user may read: refused, and logged');
    is($g->chat('qwen', key => $key)->{status}, 200, '  the policy in force stays');
    chmod 0640, $g->dir . '/policy.json';

    # nginx -t with the modules-available snippet and the installed http.conf
    my ($nrc, $nout) = $g->nginx_check(<<"EOF", no_module => 1,
    include $pre/etc/nginx/tailgate/http.conf;
    server { listen 127.0.0.1:%%PORT%%; include tailgate/locations.conf; }
EOF
        main => "include $pre/share/nginx/modules-available/mod-http-tailgate.conf;");
    is($nrc, 0, 'nginx -t: the snippet loads the module, the includes pass')
        or diag($nout);

    $g->stop_nginx;
    $g->stop_policyd;
}


# --- the module's refusal of key files every user may write --------------

{
    my $g = Tailgate::Gateway->new;
    my $alice = $g->new_key;
    my $bob = $g->new_key;
    my $keys = $g->write_keys(alice => $alice);

    my $http = <<"EOF";
    tailgate_policyd unix:%%POLICYD_SOCK%%;
    tailgate_keys %%KEYS%%;
    server { listen 127.0.0.1:%%PORT%%; location /v1/ { tailgate on; } }
EOF

    for my $mode (0646, 0602, 0666) {
        chmod $mode, $keys;
        my ($nrc, $nout) = $g->nginx_check($http);
        isnt($nrc, 0, sprintf('nginx -t refuses a key file of mode %04o', $mode));
        like($nout, qr/key file "\Q$keys\E" has mode @{[ sprintf '%04o', $mode ]}: every user of this machine can write it, and so add keys of their own; refused\. Fix: chmod o-w \Q$keys\E/,
             '  naming the file, its mode and the fix');
    }

    for my $mode (0644, 0640, 0600) {
        chmod $mode, $keys;
        my ($nrc, $nout) = $g->nginx_check($http);
        is($nrc, 0, sprintf('a key file of mode %04o is fine', $mode))
            or diag($nout);
    }

    my $jwt = jwt_keypair($g->dir, 'ES256');
    chmod 0646, $jwt->{public_pem};
    my ($nrc, $nout) = $g->nginx_check(<<"EOF");
    tailgate_policyd unix:%%POLICYD_SOCK%%;
    tailgate_jwt_key ES256 $jwt->{public_pem};
    server { listen 127.0.0.1:%%PORT%%; location /v1/ { tailgate on; } }
EOF
    isnt($nrc, 0, 'nginx -t refuses a token key file every user may write');
    like($nout, qr/key file "\Q$jwt->{public_pem}\E" has mode 0646: every user of this machine can write it/,
         '  naming it');

    # a worker reads a changed file again by itself: not such a one

    chmod 0640, $keys;
    my $key = $g->start_gateway(keys => []);
    $keys = $g->dir . '/keys';
    is($g->chat('qwen', key => $key)->{status}, 200, 'served with the keys');

    my $text = $g->read_file($keys);
    $text .= Digest::SHA::sha256_hex($bob) . " bob\n";
    $g->write_file("$keys.new", $text);
    chmod 0646, "$keys.new";
    rename "$keys.new", $keys or die "rename: $!";

    ok($g->wait_log('error', qr/\[error\].*tailgate: key file "\Q$keys\E" has mode 0646: every user of this machine can write it, and so add keys of their own; refused\. Fix: chmod o-w \Q$keys\E; the last good keys stay in use/,
                    timeout => 10),
       'a worker refuses the new version every user may write, and says why');
    is($g->chat('qwen', key => $bob)->{status}, 401, 'its new key is not let in');
    is($g->chat('qwen', key => $key)->{status}, 200, 'the last good keys stay');

    chmod 0640, $keys;
    ok($g->wait_for(sub { $g->chat('qwen', key => $bob)->{status} == 200 },
                    timeout => 10),
       'chmod o-w: the worker reads it, and the new key is let in');

    $g->allow_log(qr/has mode 0646/);
}


# --- the socket's group, with policyd as a user of its own (root only) ----

SKIP: {
    skip 'not root: cannot run policyd as another user', 7 if $> != 0;
    skip 'no setpriv', 7 if system('setpriv --version >/dev/null 2>&1') != 0;
    my $gid = getgrnam('www-data');
    skip 'no group www-data', 7 unless defined $gid;
    my ($nobody_uid, $nobody_gid) = (getpwnam('nobody'))[2, 3];
    skip 'no user nobody', 7 unless defined $nobody_uid;

    # a directory the user may use, as systemd's RuntimeDirectory is
    my $run = "$dir/run";
    mkdir $run or die "$run: $!";
    chmod 0711, $dir;
    chown $nobody_uid, $nobody_gid, $run;
    chmod 0711, $run;

    my $policy = Tailgate::Gateway::default_policy();
    $policy->{listen} = { path => "$run/policyd.sock", mode => '0660',
                          group => 'www-data' };
    $t->write_file("$run/policy.json",
                   JSON::PP->new->canonical->encode($policy));
    chown $nobody_uid, $nobody_gid, "$run/policy.json";
    chmod 0640, "$run/policy.json";

    # as the unit runs it: its own user, the socket's group besides, no
    # capability
    $t->spawn('asuser', [ 'setpriv', "--reuid=$nobody_uid",
                          "--regid=$nobody_gid", "--groups=$gid",
                          '--inh-caps=-all', '--bounding-set=-all',
                          '--no-new-privs', $ipolicyd, '-c',
                          "$run/policy.json" ],
              env => { EXT_API_KEY => 'sk-x' });

    ok($t->wait_socket("$run/policyd.sock", timeout => 10),
       'policyd as nobody, with no capability, listens')
        or diag($t->read_file('asuser.log'));

    my @st = stat "$run/policyd.sock";
    is($st[4], $nobody_uid, 'the socket is its user\'s');
    is($st[5], $gid, 'of the group www-data');
    is(sprintf('%04o', $st[2] & 07777), '0660', 'mode 0660');

    # another user than policyd's, as nginx's workers are
    my $other = (getpwnam('daemon'))[2] // 1;
    my $try = sub {
        my ($uid, @groups) = @_;
        my $code = "use IO::Socket::UNIX; IO::Socket::UNIX->new(Peer => "
                 . "'$run/policyd.sock', Type => 1) ? exit 0 : exit 1";
        return system('setpriv', "--reuid=$uid", "--regid=$uid",
                      @groups ? "--groups=" . join(',', @groups)
                              : '--clear-groups',
                      $^X, '-e', $code) == 0;
    };

    ok($try->($other, $gid), 'a user in www-data connects (nginx\'s workers)');
    ok(!$try->($other), 'a user not in it does not');

    $t->stop_proc('asuser');
    ok(!-e "$run/policyd.sock", 'policyd removed its socket on SIGTERM');
}

done_testing();
