#!/usr/bin/perl

# `make run`: a working Tailgate on 127.0.0.1 in the foreground - nginx with
# the module, policyd with conf/demo/policy.json, and a local demo provider
# (the OpenAI-compatible fake the tests use) - with a sample client key.
# Ctrl-C stops everything.
#
# TAILGATE_PORT (8080) and TAILGATE_DEMO_PROVIDER_PORT (18081) move it.

use strict;
use warnings;

use Cwd qw(abs_path);
use Digest::SHA qw(sha256_hex);
use File::Basename qw(dirname);
use File::Path qw(make_path);
use IO::Socket::INET;
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(sleep time);

my $root = abs_path(dirname(abs_path(__FILE__)) . '/../..');
my $dir = "$root/build/demo";
my $port = $ENV{TAILGATE_PORT} // 8080;
my $provider_port = $ENV{TAILGATE_DEMO_PROVIDER_PORT} // 18081;
my $nginx = $ENV{TAILGATE_NGINX} // '/usr/sbin/nginx';

$| = 1;

my %child;    # pid => name

$SIG{INT} = $SIG{TERM} = sub { stop(0) };

make_path($dir, map { "$dir/$_" } qw(body proxy fastcgi uwsgi scgi));

for my $p ($port, $provider_port) {
    die "port $p on 127.0.0.1 is in use: set TAILGATE_PORT or "
        . "TAILGATE_DEMO_PROVIDER_PORT\n"
        if IO::Socket::INET->new(PeerAddr => "127.0.0.1:$p", Timeout => 1);
}

my $key = sample_key("$dir/sample-key");

write_file("$dir/keys",
           "# written by make run: the SHA-256 of the sample key\n"
           . sha256_hex($key) . " demo-user\n");

symlink("$root/conf/tailgate", "$dir/tailgate") unless -e "$dir/tailgate";

my $conf = read_file("$root/conf/demo/nginx.conf");
my %fill = (
    MODULE        => "$root/build/ngx_tailgate_module.so",
    DIR           => $dir,
    CONF          => $dir,
    PORT          => $port,
    PROVIDER_PORT => $provider_port,
    USER          => $> == 0 ? 'user root;' : '',
);
$conf =~ s/%%(\w+)%%/$fill{$1} \/\/ die "no value for %%$1%%\n"/ge;
write_file("$dir/nginx.conf", $conf);

# policyd refuses a policy every user may read: a copy of its own
my $policy = "$dir/policy.json";
write_file($policy, read_file("$root/conf/demo/policy.json"));
chmod 0640, $policy or die "chmod $policy: $!\n";
system("$root/build/policyd", '-t', '-c', $policy, '-s', "$dir/policyd.sock")
    == 0 or die "the demo policy does not validate\n";

start('policyd', "$dir/policyd.log",
      "$root/build/policyd", '-c', $policy, '-s', "$dir/policyd.sock");
start('demo provider', "$dir/provider.log",
      $^X, "$root/t/lib/mock_provider.pl", '--port', $provider_port,
      '--name', 'demo', '--dir', $dir);
start('nginx', "$dir/nginx.out", $nginx, '-p', $dir, '-c', "$dir/nginx.conf");

wait_ready() or do {
    print STDERR "the gateway did not start; see $dir/error.log:\n",
                 tail("$dir/error.log"), tail("$dir/nginx.out");
    stop(1);
};

print <<"EOF";

Tailgate is running on http://127.0.0.1:$port  (Ctrl-C stops it)
Logs and generated files are in $dir.

export OPENAI_BASE_URL=http://127.0.0.1:$port/v1
export OPENAI_API_KEY=$key

Models: local-chat, local-embed, tts-1, whisper-1.  Try:
  curl \$OPENAI_BASE_URL/chat/completions -H "Authorization: Bearer \$OPENAI_API_KEY" \\
       -H 'Content-Type: application/json' \\
       -d '{"model":"local-chat","messages":[{"role":"user","content":"Hello"}]}'
EOF

# stay in the foreground; if anything dies, take the rest down too

for (;;) {
    my $pid = waitpid(-1, 0);
    next unless $pid > 0 && $child{$pid};

    my $name = delete $child{$pid};
    print STDERR "\n$name exited (status $?), stopping\n";
    stop(1);
}


sub start {
    my ($name, $log, @cmd) = @_;

    my $pid = fork() // die "fork: $!\n";

    if ($pid == 0) {
        open(STDOUT, '>>', $log) or die "$log: $!\n";
        open(STDERR, '>&', \*STDOUT) or die "stderr: $!\n";
        exec(@cmd) or die "exec $cmd[0]: $!\n";
    }

    $child{$pid} = $name;
}

sub stop {
    my ($status) = @_;

    $SIG{INT} = $SIG{TERM} = 'IGNORE';
    kill 'TERM', keys %child;

    my $deadline = time + 5;
    while (%child && time < $deadline) {
        my $pid = waitpid(-1, WNOHANG);
        if ($pid > 0) { delete $child{$pid} } else { sleep 0.05 }
    }

    kill 'KILL', keys %child;
    print "\nTailgate stopped.\n";
    exit $status;
}

sub wait_ready {
    my $deadline = time + 15;

    while (time < $deadline) {
        my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port",
                                      Timeout => 1);
        if ($s) {
            print $s "GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n";
            local $/;
            my $reply = <$s> // '';
            return 1 if $reply =~ /"policyd":"up"/;
        }

        return 0 unless %child == 3;
        sleep 0.1;
    }

    return 0;
}

sub sample_key {
    my ($file) = @_;

    if (-s $file) {
        my $k = read_file($file);
        chomp $k;
        return $k;
    }

    open(my $rnd, '<:raw', '/dev/urandom') or die "/dev/urandom: $!\n";
    read($rnd, my $bytes, 24) == 24 or die "/dev/urandom: short read\n";

    my $k = 'tg-demo-' . unpack('H*', $bytes);

    my $old = umask(077);
    write_file($file, "$k\n");
    umask($old);

    return $k;
}

sub read_file {
    my ($f) = @_;
    open(my $fh, '<', $f) or die "$f: $!\n";
    local $/;
    return <$fh>;
}

sub write_file {
    my ($f, $text) = @_;
    open(my $fh, '>', $f) or die "$f: $!\n";
    print $fh $text;
    close($fh) or die "$f: $!\n";
}

sub tail {
    my ($f) = @_;
    return '' unless -f $f;
    my @lines = split /\n/, read_file($f);
    return join("\n", @lines[($#lines > 20 ? $#lines - 20 : 0) .. $#lines]) . "\n";
}
