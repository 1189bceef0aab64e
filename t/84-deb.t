#!/usr/bin/perl
#
# make deb: the package's control data (the nginx ABI it was built
# against, the libraries, the conffiles), its files where Debian's nginx
# module packages put theirs, and a smoke check of the package unpacked
# into a throwaway root (dpkg -x): nginx -t loads the packaged module
# through its modules-available snippet, and a request answers through the
# packaged module, includes and policyd.  As root, the maintainer scripts
# run against that root (DPKG_ROOT) with the commands that would change
# this machine (adduser, dpkg-statoverride, deb-systemd-helper) recorded
# instead: install, remove, install again, purge.
#
# Skipped without dpkg-deb, without Debian's nginx-dev (its nginx:abi),
# and in the sanitized pass of "make test": the package ships the normal
# build, and the first pass has checked it already.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Tailgate::Gateway;

my $t = Tailgate::Gateway->new->skip_unless_built;
my $root = $t->root;
my $dir = $t->dir;

plan skip_all => 'the sanitized pass: the package holds the normal build'
    if $ENV{TAILGATE_NGINX_PRELOAD};
plan skip_all => 'no dpkg-deb here (Debian\'s dpkg)'
    if system('dpkg-deb --version >/dev/null 2>&1') != 0;

my $nginx_src = $ENV{NGINX_SRC} // '/usr/share/nginx/src';
my $abi_file = "$nginx_src/debian/libnginx-mod.abisubstvars";
plan skip_all => "no $abi_file: the nginx ABI is Debian's nginx-dev's"
    unless -f $abi_file;

my ($abi) = $t->read_file($abi_file) =~ /^nginx:abi=(\S+)$/m;
ok($abi, "nginx-dev names its ABI: $abi");

# --- the package ----------------------------------------------------------

my $out = do {
    local $ENV{MAKEFLAGS};
    local $ENV{MAKELEVEL};
    delete @ENV{qw(MAKEFLAGS MAKELEVEL MFLAGS)};
    `make --no-print-directory -s -C $root deb NO_BUILD=1 MODULE=$t->{module} POLICYD=$t->{policyd} DEB_DIR=$dir NGINX_SRC=$nginx_src 2>&1`;
};
is($? >> 8, 0, 'make deb succeeds') or diag($out);

my ($deb) = $out =~ m{^(\Q$dir\E/libnginx-mod-http-tailgate_\S+\.deb)$}m;
ok($deb && -f $deb, 'and prints the package\'s path') or BAIL_OUT("no package: $out");

my %field;
for (split /\n/, `dpkg-deb --field $deb`) {
    $field{$1} = $2 if /^([\w-]+): (.*)$/;
}

is($field{Package}, 'libnginx-mod-http-tailgate', 'Package: named as Debian names nginx modules');
is($field{Section}, 'httpd', 'Section: httpd');
like($field{Architecture}, qr/^\S+$/, "Architecture: $field{Architecture}");
like($field{Version}, qr/^0\.1\+git\d+-1$/, "Version: $field{Version}");

my @depends = split /\s*,\s*/, $field{Depends} // '';
is($depends[0], $abi, "Depends on the nginx ABI it was built against ($abi)");
ok((grep { $_ eq $abi } split /\s*,\s*/,
        `dpkg-query -W -f='\${Provides}' nginx 2>/dev/null`),
   'which this machine\'s nginx provides') if `dpkg-query -W -f='\${Status}' nginx 2>/dev/null` =~ /installed/;
for my $lib (qw(libc6 libev4 libcjson1 libcurl4 libhiredis0.14 libjwt0 libssl3)) {
    ok((grep { /^\Q$lib\E\b/ } @depends), "Depends: $lib (dpkg-shlibdeps)");
}
ok((grep { $_ eq 'adduser' } @depends), 'Depends: adduser (postinst)');
ok((grep { $_ eq 'perl' } @depends), 'Depends: perl (tailgate-key)');

my %entry;
for (split /\n/, `dpkg-deb --contents $deb`) {
    my ($mode, $owner, undef, undef, undef, $path) = split ' ', $_, 6;
    $path =~ s{^\./}{/};
    $path =~ s{/$}{} unless $path eq '/';
    $entry{$path} = [ $mode, $owner ];
}

my $doc = '/usr/share/doc/libnginx-mod-http-tailgate';
my %want = (
    '/usr/lib/nginx/modules/ngx_http_tailgate_module.so'       => '-rw-r--r--',
    '/usr/share/nginx/modules-available/mod-http-tailgate.conf' => '-rw-r--r--',
    '/usr/sbin/policyd'                                         => '-rwxr-xr-x',
    '/usr/bin/tailgate-key'                                     => '-rwxr-xr-x',
    '/lib/systemd/system/tailgate-policyd.service'              => '-rw-r--r--',
    '/lib/systemd/system/nginx.service.d/tailgate.conf'         => '-rw-r--r--',
    '/usr/lib/sysusers.d/tailgate.conf'                         => '-rw-r--r--',
    '/usr/share/tailgate/keys'                                  => '-rw-r--r--',
    '/usr/share/man/man8/policyd.8.gz'                          => '-rw-r--r--',
    '/usr/share/man/man1/tailgate-key.1.gz'                     => '-rw-r--r--',
    '/usr/share/lintian/overrides/libnginx-mod-http-tailgate'   => '-rw-r--r--',
    '/etc/nginx/tailgate/http.conf'                             => '-rw-r--r--',
    '/etc/nginx/tailgate/locations.conf'                        => '-rw-r--r--',
    '/etc/tailgate/policy.json'                                 => '-rw-r-----',
    '/etc/tailgate/policyd.env'                                 => '-rw-------',
    '/etc/logrotate.d/tailgate'                                 => '-rw-r--r--',
    "$doc/copyright"                                            => '-rw-r--r--',
    "$doc/changelog.Debian.gz"                                  => '-rw-r--r--',
    "$doc/operations.md"                                        => '-rw-r--r--',
    "$doc/examples/policy.example.json"                         => '-rw-r--r--',
);

for my $f (sort keys %want) {
    is($entry{$f} && "$entry{$f}[0] $entry{$f}[1]", "$want{$f} root/root", "$f");
}

ok(!exists $entry{'/etc/tailgate/keys'},
   'no /etc/tailgate/keys: client keys are data, made once by postinst');
is_deeply([ grep { $entry{$_}[1] ne 'root/root' } sort keys %entry ], [],
          'every file is root\'s');
is_deeply([ grep { $entry{$_}[0] =~ /^.....w|^........w/ } sort keys %entry ], [],
          'none writable by its group or others');

my $conffiles = `dpkg-deb --ctrl-tarfile $deb | tar -xOf - ./conffiles`;
is_deeply([ sort split /\n/, $conffiles ],
          [ sort grep { m{^/etc/} && $entry{$_}[0] =~ /^-/ } keys %entry ],
          'every file under /etc is a conffile');

# --- unpacked into a throwaway root -----------------------------------------

my $tree = "$dir/root";
system('dpkg-deb', '-x', $deb, $tree) == 0 or BAIL_OUT('dpkg-deb -x failed');

my $so = "$tree/usr/lib/nginx/modules/ngx_http_tailgate_module.so";
is($t->read_file("$tree/usr/share/nginx/modules-available/mod-http-tailgate.conf"),
   "load_module /usr/lib/nginx/modules/ngx_http_tailgate_module.so;\n",
   'the snippet loads the module from nginx\'s module directory');

like(`file -b $so $tree/usr/sbin/policyd 2>/dev/null` || 'stripped',
     qr/stripped/, 'the binaries are stripped');

{
    my $g = Tailgate::Gateway->new(module => $so,
                                   policyd => "$tree/usr/sbin/policyd");
    symlink("$tree/etc/nginx/tailgate", $g->dir . '/tailgate') or die "symlink: $!";

    # the snippet as the package has it, pointed into the throwaway root
    my $snippet = $t->read_file("$tree/usr/share/nginx/modules-available/mod-http-tailgate.conf");
    $snippet =~ s{/usr/lib/nginx/modules/}{$tree/usr/lib/nginx/modules/};
    $g->write_file('50-mod-http-tailgate.conf', $snippet);

    $g->write_keys(alice => $g->new_key);
    my ($rc, $nout) = $g->nginx_check(<<"EOF", no_module => 1,
    tailgate_policyd unix:%%POLICYD_SOCK%%;
    tailgate_keys %%KEYS%%;
    include tailgate/log.conf;
    server { listen 127.0.0.1:%%PORT%%; include tailgate/locations.conf; }
EOF
        main => 'include ' . $g->dir . '/50-mod-http-tailgate.conf;');
    is($rc, 0, 'nginx -t loads the packaged module through its snippet')
        or diag($nout);

    my $key = $g->start_gateway;
    my $res = $g->chat('qwen', key => $key);
    is($res->{status}, 200, 'a request answers through the packaged module and policyd');
    is($res->{headers}{'x-tailgate-provider'}, 'local', '  as policyd decided');
    is($g->mock('local')->requests->[-1]{json}{model}, 'qwen2.5-7b-instruct',
       '  and reached the provider');

    $g->stop_nginx;
    $g->stop_policyd;
}

# --- the maintainer scripts, against the throwaway root --------------------

SKIP: {
    skip 'not root: the scripts set owners', 15 if $> != 0;

    my $ctrl = "$dir/control";
    system('dpkg-deb', '-e', $deb, $ctrl) == 0 or die 'dpkg-deb -e';

    for my $s (qw(postinst prerm postrm)) {
        is(system('sh', '-n', "$ctrl/$s"), 0, "$s: sh -n");
    }

    # what would change this machine is recorded, not done
    my $bin = "$dir/stub-bin";
    mkdir $bin;
    my $calls = "$dir/calls.log";
    for my $cmd (qw(adduser dpkg-statoverride deb-systemd-helper
                    deb-systemd-invoke dpkg-trigger systemctl)) {
        $t->write_file("$bin/$cmd", "#!/bin/sh\necho \"$cmd \$*\" >> $calls\n"
                       . ($cmd eq 'dpkg-statoverride' ? "[ \"\$1\" != --list ]\n" : "exit 0\n"));
        chmod 0755, "$bin/$cmd";
    }
    # no user tailgate yet, and the group www-data
    $t->write_file("$bin/getent", "#!/bin/sh\n[ \"\$1 \$2\" = 'group www-data' ]"
                   . " && echo 'www-data:x:33:' && exit 0\nexit 2\n");
    chmod 0755, "$bin/getent";

    my $run = sub {
        my ($script, @args) = @_;
        local $ENV{DPKG_ROOT} = $tree;
        local $ENV{PATH} = "$bin:$ENV{PATH}";
        unlink $calls;
        my $o = `sh $ctrl/$script @args 2>&1`;
        return ($? >> 8, $t->read_file($calls), $o);
    };

    my $link = "$tree/etc/nginx/modules-enabled/50-mod-http-tailgate.conf";

    my ($rc, $log) = $run->('postinst', 'configure', '');
    is($rc, 0, 'postinst configure (a first install) succeeds');
    like($log, qr/^adduser --system --group --home \/var\/lib\/tailgate --no-create-home --quiet tailgate$/m,
         '  creates the system user tailgate');
    like($log, qr/^dpkg-statoverride --update --add root tailgate 0640 \/etc\/tailgate\/policy\.json$/m,
         '  keeps the policy root:tailgate 0640 (dpkg-statoverride)');
    is(readlink($link), '/usr/share/nginx/modules-available/mod-http-tailgate.conf',
       '  enables the module (modules-enabled/50-mod-http-tailgate.conf)');
    my @st = stat "$tree/etc/tailgate/keys";
    is(@st ? sprintf('%04o %d', $st[2] & 07777, $st[5]) : 'none',
       sprintf('0640 %d', scalar getgrnam('www-data') // 0),
       '  makes /etc/tailgate/keys, 0640, group www-data');
    like($log, qr/^deb-systemd-helper enable tailgate-policyd\.service$/m,
         '  enables the unit');

    ($rc, $log) = $run->('prerm', 'remove');
    ok($rc == 0 && !-l $link && -l "$link.removed",
       'prerm remove: the module disabled, not deleted');

    ($rc, $log) = $run->('postinst', 'configure', '0.1+git1-1');
    ok($rc == 0 && -l $link && !-l "$link.removed",
       'postinst after a remove: enabled again');

    $t->write_file("$tree/etc/tailgate/keys", "# mine\n");
    ($rc, $log) = $run->('postinst', 'configure', '0.1+git1-1');
    is($t->read_file("$tree/etc/tailgate/keys"), "# mine\n",
       'an upgrade keeps the client keys');

    ($rc, $log) = $run->('postrm', 'purge');
    is($rc, 0, 'postrm purge succeeds');
    ok(!-l $link && !-l "$link.removed", '  the module link is gone');
    ok(!-e "$tree/etc/tailgate/keys", '  and the client keys');
}

# --- lintian, when it is here ----------------------------------------------

SKIP: {
    skip 'no lintian here (apt-get install lintian)', 1
        if system('lintian --version >/dev/null 2>&1') != 0;

    my $l = `lintian --no-tag-display-limit $deb 2>&1`;
    my @serious = grep { /^[EW]: / } split /\n/, $l;
    is_deeply(\@serious, [], 'lintian: no error, no warning')
        or diag($l);
    note("lintian: $_") for grep { /^[IP]: / } split /\n/, $l;
}

done_testing();
