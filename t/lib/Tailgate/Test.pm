package Tailgate::Test;

# The test harness every t/*.t uses: a temp dir per test, nginx with the
# module, policyd (or a scriptable fake), mock providers, an HTTP client,
# and a teardown that stops everything whatever happens. POD at the end.

use strict;
use warnings;

use Test::More ();
use IO::Socket::INET;
use IO::Socket::UNIX;
use POSIX qw(:sys_wait_h);
use Socket qw(SOCK_STREAM SOL_SOCKET SO_RCVBUF pack_sockaddr_in inet_aton);
use Time::HiRes qw(time sleep);
use File::Temp qw(tempdir);
use File::Spec;
use File::Basename qw(dirname);
use File::Path qw(remove_tree);
use Cwd qw(abs_path);
use Fcntl qw(:flock);
use JSON::PP ();
use Digest::SHA qw(sha256_hex);
use Scalar::Util qw(weaken);

our $VERSION = '0.1';

my $ROOT = abs_path(File::Spec->catdir(
    dirname(File::Spec->rel2abs(__FILE__)), File::Spec->updir,
    File::Spec->updir, File::Spec->updir));

my $JSON = JSON::PP->new->canonical->utf8->allow_nonref;

my @LOG_PROBLEM = (
    qr/\[(?:alert|crit|emerg)\]/,
    qr/AddressSanitizer|LeakSanitizer|runtime error:/,
);
my $SANITIZER = qr/AddressSanitizer|LeakSanitizer|runtime error:/;

# policyd refuses a policy file that every user may read (the files of a
# test are the test's own: its processes run as the same user)
umask 027;

my @INSTANCES;      # weak references to every live harness of this process
my $OWNER = $$;     # the test process; forked children never tear down

my ($WD_PID, $WD_FH);   # the watchdog, see _watchdog()


# construction

sub new {
    my ($class, %opt) = @_;

    my $keep = $ENV{TAILGATE_KEEP} ? 1 : 0;
    my $dir = tempdir('tailgate-XXXXXXXX', TMPDIR => 1, CLEANUP => 0);
    $dir = abs_path($dir);

    my $self = bless {
        dir      => $dir,
        root     => $ROOT,
        keep     => $keep,
        owner    => $$,
        nginx    => $ENV{TAILGATE_NGINX} // '/usr/sbin/nginx',
        module   => $ENV{TAILGATE_MODULE} // "$ROOT/build/ngx_tailgate_module.so",
        policyd  => $ENV{TAILGATE_POLICYD} // "$ROOT/build/policyd",
        ports    => {},
        used     => {},
        procs    => {},
        mocks    => {},
        allow    => [],
        finished => 0,
        checked  => 0,
        %opt,
    }, $class;

    _install_signals();
    _watchdog();
    _wd_send("D $dir") unless $self->{keep};

    push @INSTANCES, $self;
    weaken($INSTANCES[-1]);

    Test::More::diag("TAILGATE_KEEP: test dir $dir") if $self->{keep};

    return $self;
}

sub dir  { $_[0]{dir} }
sub root { $_[0]{root} }

sub nginx_binary   { $_[0]{nginx} }
sub module_path    { $_[0]{module} }
sub policyd_binary { $_[0]{policyd} }
sub policyd_sock   { "$_[0]{dir}/policyd.sock" }
sub debugging      { $ENV{TAILGATE_DEBUG} ? 1 : 0 }


sub skip_unless_built {
    my ($self, @what) = @_;

    @what = qw(module policyd) unless @what;

    my @missing;

    for my $w (@what) {
        if ($w eq 'module') {
            push @missing, "nginx ($self->{nginx})" unless -x $self->{nginx};
            push @missing, "module ($self->{module})" unless -f $self->{module};
        } elsif ($w eq 'policyd') {
            push @missing, "policyd ($self->{policyd})" unless -x $self->{policyd};
        } else {
            die "skip_unless_built: unknown component '$w'\n";
        }
    }

    Test::More::plan(skip_all => 'not built: ' . join(', ', @missing))
        if @missing;

    return $self;
}


# files

sub write_file {
    my ($self, $name, $content) = @_;

    my $path = $name =~ m{^/} ? $name : "$self->{dir}/$name";
    my $tmp = "$path.tmp.$$";

    open my $fh, '>:raw', $tmp or die "write $tmp: $!\n";
    print $fh $content;
    close $fh or die "write $tmp: $!\n";
    rename $tmp, $path or die "rename $tmp: $!\n";

    return $path;
}

sub read_file {
    my ($self, $name) = @_;

    my $path = $name =~ m{^/} ? $name : "$self->{dir}/$name";
    open my $fh, '<:raw', $path or return '';
    local $/;
    my $text = <$fh>;
    return $text // '';
}

sub error_log   { $_[0]->read_file('error.log') }
sub access_log  { $_[0]->read_file('access.log') }
sub policyd_log { $_[0]->read_file('policyd.log') }

# private_copy($file): a copy in the test dir that only its owner and group
# may read, as policyd wants its policy (a git checkout's files are 0644)
sub private_copy {
    my ($self, $file) = @_;

    (my $name = $file) =~ s{.*/}{};
    my $path = $self->write_file("copy-$name", $self->read_file($file));
    chmod 0640, $path or die "chmod $path: $!\n";

    return $path;
}

# conf_text($name): a file of conf/tailgate/ as shipped, e.g. locations.conf
sub conf_text { $_[0]->read_file("$_[0]{root}/conf/tailgate/$_[1]") }


sub write_policy {
    my ($self, $policy) = @_;

    my $text = ref $policy
        ? JSON::PP->new->canonical->utf8->pretty->encode($policy)
        : $policy;

    # "http://%%MOCK:local%%/health" and the like
    return $self->write_file('policy.json', $self->_subst($text));
}


sub new_key {
    my $bytes = '';

    if (open my $fh, '<:raw', '/dev/urandom') {
        read $fh, $bytes, 16;
        close $fh;
    }
    $bytes = join '', map { chr int rand 256 } 1 .. 16
        unless length $bytes == 16;

    return 'tg-test-' . unpack('H*', $bytes);
}


# write_keys(client => 'key', client2 => { key => 'k', tenant => 'acme',
#            tags => [...], routes => [...], expires => '2030-01-01' }, ...)

sub write_keys {
    my ($self, @pairs) = @_;

    die "write_keys: expects client_id => key pairs\n" if @pairs % 2;

    my $text = "# Tailgate client keys: <sha256 hex of the key> <client id> "
             . "[attributes]\n";

    while (my ($client, $rec) = splice @pairs, 0, 2) {
        die "write_keys: bad client id '$client'\n" if $client =~ /\s/;

        $rec = { key => $rec } unless ref $rec;

        $text .= sha256_hex($rec->{key}) . " $client";
        $text .= " tenant=$rec->{tenant}" if defined $rec->{tenant};
        $text .= ' tags=' . join(',', @{ $rec->{tags} }) if $rec->{tags};
        $text .= ' routes=' . join(',', @{ $rec->{routes} }) if $rec->{routes};
        $text .= " limit=$rec->{limit}" if defined $rec->{limit};
        $text .= " expires=$rec->{expires}" if defined $rec->{expires};
        $text .= " role=$rec->{role}" if defined $rec->{role};
        $text .= "\n";
    }

    return $self->write_file('keys', $text);
}


# ports

sub port {
    my ($self, $name) = @_;

    $name //= 'nginx';
    return $self->{ports}{$name} if $self->{ports}{$name};

    for (1 .. 50) {
        my $s = IO::Socket::INET->new(
            LocalAddr => '127.0.0.1',
            LocalPort => 0,
            Proto     => 'tcp',
            Listen    => 1,
        ) or die "port: cannot bind 127.0.0.1:0: $!\n";

        my $p = $s->sockport;
        close $s;

        next if $self->{used}{$p};

        $self->{used}{$p} = $name;
        return $self->{ports}{$name} = $p;
    }

    die "port: no free port for '$name'\n";
}


# processes: each in its own process group, watched by the watchdog

sub spawn {
    my ($self, $name, $argv, %opt) = @_;

    die "spawn: '$name' is already running\n" if $self->running($name);

    my $log = $opt{log} // "$self->{dir}/$name.log";
    $log = "$self->{dir}/$log" unless $log =~ m{^/};

    my $pid = fork;
    die "spawn $name: fork: $!\n" unless defined $pid;

    if ($pid == 0) {
        eval {
            POSIX::setpgid(0, 0);
            $SIG{$_} = 'DEFAULT' for qw(PIPE INT TERM HUP QUIT CHLD ALRM USR1 USR2);

            my $env = $opt{env} // {};
            for my $k (keys %$env) {
                if (defined $env->{$k}) {
                    $ENV{$k} = $env->{$k};
                } else {
                    delete $ENV{$k};
                }
            }

            open STDIN, '<', '/dev/null' or die "stdin: $!";
            open STDOUT, '>>', $log or die "$log: $!";
            open STDERR, '>&', \*STDOUT or die "stderr: $!";
            chdir($opt{cwd} // $self->{dir});

            exec { $argv->[0] } @$argv or die "exec $argv->[0]: $!";
        };
        print STDERR "spawn $name: $@";
        POSIX::_exit(127);
    }

    POSIX::setpgid($pid, $pid);
    _wd_send("+ $pid");

    $self->{procs}{$name} = { pid => $pid, argv => $argv, log => $log };

    return $pid;
}


sub pid {
    my ($self, $name) = @_;
    my $p = $self->{procs}{$name} or return undef;
    return exists $p->{status} ? undef : $p->{pid};
}


sub running {
    my ($self, $name) = @_;

    my $p = $self->{procs}{$name} or return 0;
    return 0 if exists $p->{status};

    my $r = waitpid($p->{pid}, WNOHANG);
    return 1 if $r == 0;

    $p->{status} = $r == $p->{pid} ? $? : -1;
    return 0;
}


sub exit_status {
    my ($self, $name) = @_;
    my $p = $self->{procs}{$name} or return undef;
    $self->running($name);
    return $p->{status};
}


# wait_exit($name, $timeout): waits (5 s) until that process exits; its
# exit code, -1 when a signal ended it, undef when it still runs

sub wait_exit {
    my ($self, $name, $timeout) = @_;

    $self->wait_for(sub { !$self->running($name) }, timeout => $timeout // 5)
        or return undef;

    my $status = $self->exit_status($name);
    return $status == -1 || $status & 127 ? -1 : $status >> 8;
}


sub signal {
    my ($self, $name, $sig) = @_;
    my $pid = $self->pid($name) or return 0;
    return kill $sig, $pid;
}


sub stop_proc {
    my ($self, $name, %opt) = @_;

    my $p = $self->{procs}{$name} or return undef;
    my $pid = $p->{pid};
    die "stop_proc $name: bad pid\n" unless $pid && $pid > 1;
    my $sig = $opt{signal} // 'TERM';
    my $timeout = $opt{timeout} // 5;

    if ($self->running($name)) {
        kill $sig, ($opt{group} ? -$pid : $pid);

        my $deadline = time + $timeout;
        while ($self->running($name) && time < $deadline) {
            sleep 0.01;
        }

        if ($self->running($name)) {
            kill 'KILL', -$pid;
            kill 'KILL', $pid;
            $deadline = time + 5;
            while ($self->running($name) && time < $deadline) {
                sleep 0.01;
            }
        }
    }

    # whatever is left of its process group (orphaned workers, children)

    if (kill 0, -$pid) {
        kill 'TERM', -$pid;
        my $deadline = time + 1;
        sleep 0.01 while kill(0, -$pid) && time < $deadline;
        kill 'KILL', -$pid if kill 0, -$pid;
    }

    _wd_send("- $pid");

    return $p->{status};
}


# mock providers

sub mock_provider {
    my ($self, $name, %control) = @_;

    die "mock_provider: bad name '$name'\n" unless $name =~ /^[\w.-]+$/;

    my $m = $self->{mocks}{$name}
        //= Tailgate::Mock->_new($self, $name, $self->port("mock:$name"));

    die "mock_provider: '$name' is already running\n" if $m->running;

    $m->set(%control);

    # a port taken by someone else between allocation and bind: a mock that
    # never ran may move to another port (nothing refers to it yet)
    for my $try (1 .. 3) {
        last if eval { $m->start; 1 };
        die $@ if $m->{started} || $try == 3 || $@ !~ /Address already in use/;
        delete $self->{ports}{"mock:$name"};
        $m->{port} = $self->port("mock:$name");
    }

    $m->{started} = 1;

    return $m;
}

sub mock { $_[0]{mocks}{$_[1]} }


# mock_provider_at($name, $addr, $port, %control): a mock on another
# loopback address and a port chosen by the caller (two mocks on one port,
# 127.0.0.1 and 127.0.0.2, behind one DNS name)

sub mock_provider_at {
    my ($self, $name, $addr, $port, %control) = @_;

    die "mock_provider_at: bad name '$name'\n" unless $name =~ /^[\w.-]+$/;
    die "mock_provider_at: '$name' exists\n" if $self->{mocks}{$name};

    my $m = $self->{mocks}{$name}
        = Tailgate::Mock->_new($self, $name, $port, $addr);

    $m->set(%control);
    $m->start;
    $m->{started} = 1;

    return $m;
}


# policyd

sub start_policyd {
    my ($self, %opt) = @_;

    my $conf = $opt{config} // "$self->{dir}/policy.json";
    die "start_policyd: no policy file $conf (write_policy first)\n"
        unless -f $conf;

    $self->_check_sock;

    $self->spawn('policyd',
        [ $self->{policyd}, '-c', $conf, '-s', $self->policyd_sock,
          @{ $opt{args} // [] } ],
        env => $opt{env}, log => 'policyd.log');

    $self->_wait_policyd($opt{timeout} // 10, 'policyd');

    return $self->pid('policyd');
}


sub start_fake_policyd {
    my ($self, $config, %opt) = @_;

    $self->_check_sock;
    $self->write_file('fake_policyd.json', $JSON->encode($config // {}));

    $self->spawn('policyd',
        [ $^X, "$ROOT/t/lib/fake_policyd.pl",
          '--socket', $self->policyd_sock,
          '--config', "$self->{dir}/fake_policyd.json",
          '--log', "$self->{dir}/fake_policyd.jsonl" ],
        env => $opt{env}, log => 'policyd.log');

    $self->_wait_policyd($opt{timeout} // 10, 'fake policyd');

    return $self->pid('policyd');
}


sub set_fake_policyd {
    my ($self, $config, %opt) = @_;

    my $before = grep { ($_->{event} // '') eq 'reload' } $self->_fake_log;

    $self->write_file('fake_policyd.json', $JSON->encode($config // {}));
    $self->reload_policyd or die "set_fake_policyd: fake policyd is not running\n";

    $self->wait_for(sub {
        $before < grep { ($_->{event} // '') eq 'reload' } $self->_fake_log;
    }, timeout => $opt{timeout} // 5)
        or die "set_fake_policyd: no reload within the timeout\n";

    return 1;
}


sub fake_policyd_frames {
    my ($self) = @_;
    return [ grep { defined $_->{type} } $self->_fake_log ];
}


# fake_frames($type, field => value, ..., since => $n): the frames of that
# type (DECIDE, REPORT, ...) whose fields have those values (as strings),
# of those received after the first $n (a count taken before)

sub fake_frames {
    my ($self, $type, %match) = @_;

    my $since = delete $match{since} // 0;
    my @all = @{ $self->fake_policyd_frames };

    return [ grep {
        my $f = $_;
        $f->{type_name} eq $type
        && !grep { ($f->{fields}{$_} // '') ne $match{$_} } keys %match
    } @all[$since .. $#all] ];
}


sub _fake_log {
    my ($self) = @_;
    return map { my $d = eval { $JSON->decode($_) }; $d ? ($d) : () }
           grep { /\}$/ } split /\n/, $self->read_file('fake_policyd.jsonl');
}


sub _check_sock {
    my ($self) = @_;
    my $sock = $self->policyd_sock;
    die "policyd socket path too long (" . length($sock) . " > 107): $sock\n"
        if length $sock > 107;
}


# wait_socket($path, timeout => 5): true once the Unix socket accepts a
# connection

sub wait_socket {
    my ($self, $path, %opt) = @_;
    return $self->wait_for(sub { _unix_accepts($path) },
                           timeout => $opt{timeout} // 5) ? 1 : 0;
}

sub _unix_accepts {
    my ($path) = @_;
    my $s = IO::Socket::UNIX->new(Type => SOCK_STREAM, Peer => $path)
        or return 0;
    close $s;
    return 1;
}


sub _wait_policyd {
    my ($self, $timeout, $what) = @_;

    my $sock = $self->policyd_sock;

    my $ok = $self->wait_for(sub {
        return -1 unless $self->running('policyd');
        return _unix_accepts($sock);
    }, timeout => $timeout);

    return if $ok && $ok > 0;

    my $status = $self->stop_proc('policyd');
    die "$what did not start"
        . (defined $status && $status != -1 ? " (exit status $status)" : '')
        . ":\n" . _tail($self->policyd_log);
}

sub policyd_pid    { $_[0]->pid('policyd') }
sub stop_policyd   { $_[0]->stop_proc('policyd') }
sub kill_policyd   { $_[0]->stop_proc('policyd', signal => 'KILL') }
sub reload_policyd { $_[0]->signal('policyd', 'HUP') }


# policyd_cmd(@args, {timeout => 30, stderr => 1}): runs the policyd binary
# to completion (policyd -t, explain, status); returns (exit code, stdout
# and stderr) - stdout only with stderr => 0, (exit code, stdout, stderr)
# with stderr => 'apart'.  The exit code is -1 when it died of a signal,
# e.g. past the timeout.

sub policyd_cmd {
    my ($self, @args) = @_;

    my $opt = ref $args[-1] eq 'HASH' ? pop @args : {};
    my $timeout = $opt->{timeout} // 30;
    my $stderr = $opt->{stderr} // 1;
    my $errfile = "$self->{dir}/policyd_cmd.stderr";

    my $pid = open(my $fh, '-|');
    die "policyd_cmd: fork: $!\n" unless defined $pid;

    if ($pid == 0) {
        if ($stderr eq 'apart') {
            open STDERR, '>', $errfile;
        } elsif ($stderr) {
            open STDERR, '>&', \*STDOUT;
        }
        open STDIN, '<', '/dev/null';
        alarm $timeout;         # survives exec: a hung command is killed
        exec { $self->{policyd} } $self->{policyd}, @args
            or POSIX::_exit(127);
    }

    my $out = do { local $/; <$fh> } // '';
    close $fh;
    my $rc = $? & 127 ? -1 : $? >> 8;

    return ($rc, $out) unless $stderr eq 'apart';

    my $err = $self->read_file($errfile);
    unlink $errfile;
    return ($rc, $out, $err);
}


# nginx

sub _subst {
    my ($self, $text) = @_;

    $text =~ s{%%([A-Za-z_]+)(?::([^%\s]*))?%%}{$self->_placeholder($1, $2)}ge;

    return $text;
}

sub _placeholder {
    my ($self, $what, $arg) = @_;

    if (!defined $arg) {
        return $self->{dir}       if $what eq 'DIR';
        return $self->{root}      if $what eq 'ROOT';
        return $self->port('nginx') if $what eq 'PORT';
        return $self->policyd_sock  if $what eq 'POLICYD_SOCK';
        return "$self->{dir}/keys"  if $what eq 'KEYS';

    } elsif ($what eq 'PORT' && length $arg) {
        return $self->port($arg);

    } elsif ($what eq 'MOCK' && length $arg) {
        my $m = $self->{mocks}{$arg}
            or die "placeholder %%MOCK:$arg%%: no mock provider '$arg'"
                 . " (start it before nginx, or use %%PORT:mock:$arg%%)\n";
        return '127.0.0.1:' . $m->port;
    }

    die "unknown placeholder %%$what" . (defined $arg ? ":$arg" : '') . "%%\n";
}


sub nginx_conf {
    my ($self, $http, %opt) = @_;

    my $dir = $self->{dir};
    my $level = $ENV{TAILGATE_DEBUG} ? 'debug' : ($opt{log_level} // 'info');

    # "include tailgate/locations.conf" as in production: the conf prefix
    # is this directory
    symlink("$self->{root}/conf/tailgate", "$dir/tailgate")
        unless -e "$dir/tailgate";
    my $workers = $opt{workers} // 1;

    my $conf = '';
    $conf .= "load_module $self->{module};\n" unless $opt{no_module};
    $conf .= "daemon off;\nmaster_process on;\nworker_processes $workers;\n";
    $conf .= "user root;\n" if $> == 0;
    $conf .= "pid $dir/nginx.pid;\nerror_log $dir/error.log $level;\n";
    $conf .= $self->_subst($opt{main}) . "\n" if defined $opt{main};
    $conf .= "\nevents {\n    worker_connections 1024;\n}\n\n";
    $conf .= "http {\n";
    $conf .= "    access_log $dir/access.log;\n";
    $conf .= "    client_body_temp_path $dir/body;\n";
    $conf .= "    proxy_temp_path $dir/proxy;\n";
    $conf .= "    fastcgi_temp_path $dir/fastcgi;\n";
    $conf .= "    uwsgi_temp_path $dir/uwsgi;\n";
    $conf .= "    scgi_temp_path $dir/scgi;\n\n";
    $conf .= $self->_subst($http) . "\n}\n";

    return $conf;
}


sub start_nginx {
    my ($self, $http, %opt) = @_;

    die "start_nginx: nginx is already running\n" if $self->running('nginx');

    $self->{nginx_http} = $http;
    $self->{nginx_opt} = { %opt };
    $self->write_file('nginx.conf', $self->nginx_conf($http, %opt));

    my $dir = $self->{dir};
    unlink "$dir/nginx.pid";

    # a module built with a sanitizer needs its runtime loaded first into
    # Debian's nginx, which was not built with one (make SANITIZE=1 test)
    my %env = %{ $opt{env} // {} };

    if ($ENV{TAILGATE_NGINX_PRELOAD}) {
        $env{LD_PRELOAD} = $ENV{TAILGATE_NGINX_PRELOAD};
        $env{ASAN_OPTIONS} //= 'detect_leaks=0:abort_on_error=0';
    }

    $self->spawn('nginx',
        [ $self->{nginx}, '-p', "$dir/", '-c', "$dir/nginx.conf",
          '-e', "$dir/error.log" ],
        env => \%env, log => 'nginx.stderr');

    my $wait = exists $opt{wait} ? $opt{wait} : 'nginx';
    my $timeout = $opt{timeout} // 10;

    my $ok = $self->wait_for(sub {
        return -1 unless $self->running('nginx');
        return 0 unless -s "$dir/nginx.pid";
        return 1 unless $wait;
        return _tcp_accepts($self->port($wait)) ? 1 : 0;
    }, timeout => $timeout);

    # the port accepts as soon as the master listens; wait for the workers
    my $workers = $opt{workers} // 1;
    $ok = $self->wait_for(sub { my @w = $self->nginx_worker_pids;
                                @w >= $workers },
                          timeout => $timeout)
        if $ok && $ok > 0 && !$opt{no_module};

    return $self->pid('nginx') if $ok && $ok > 0;

    my $status = $self->stop_proc('nginx');
    die "nginx did not start"
        . (defined $status && $status != -1 ? " (exit status $status)" : '')
        . ":\n" . _tail($self->read_file('nginx.stderr'))
        . _tail($self->error_log);
}


# nginx_check($http, %opt): `nginx -t` of a configuration, not started;
# returns (exit status, output)

sub nginx_check {
    my ($self, $http, %opt) = @_;

    my $conf = $self->write_file('check.conf', $self->nginx_conf($http, %opt));
    my $dir = $self->{dir};

    local $ENV{LD_PRELOAD} = $ENV{TAILGATE_NGINX_PRELOAD}
        if $ENV{TAILGATE_NGINX_PRELOAD};
    local $ENV{ASAN_OPTIONS} = 'detect_leaks=0';

    my $out = `$self->{nginx} -t -p $dir/ -c $conf 2>&1`;

    return ($? >> 8, $out);
}


sub nginx_pid  { $_[0]->pid('nginx') }
sub stop_nginx { $_[0]->stop_proc('nginx', timeout => 10) }


sub nginx_worker_pids {
    my ($self) = @_;

    my $master = $self->pid('nginx') or return ();
    my @pids;

    opendir my $dh, '/proc' or return ();

    for my $p (readdir $dh) {
        next unless $p =~ /^\d+$/;

        my $stat = $self->read_file("/proc/$p/stat");
        my ($state, $ppid) = $stat =~ /\)\s+(\S+)\s+(\d+)/ or next;
        next unless $ppid == $master && $state ne 'Z';

        next unless $self->read_file("/proc/$p/cmdline") =~ /worker process/;
        push @pids, $p;
    }

    closedir $dh;

    return sort { $a <=> $b } @pids;
}


sub _shutting_down {
    my ($self, $pid) = @_;
    return $self->read_file("/proc/$pid/cmdline") =~ /shutting down/;
}


sub reload_nginx {
    my ($self, $http, %opt) = @_;

    my $master = $self->pid('nginx') or die "reload_nginx: nginx is not running\n";

    if (defined $http) {
        $self->{nginx_http} = $http;
        $self->{nginx_opt} = { %{ $self->{nginx_opt} }, %opt };
        $self->write_file('nginx.conf',
                          $self->nginx_conf($http, %{ $self->{nginx_opt} }));
    }

    my %old = map { $_ => 1 } $self->nginx_worker_pids;
    my $want = $self->{nginx_opt}{workers} // 1;
    my $wait_old = $opt{wait_old} // 1;

    kill 'HUP', $master;

    my $ok = $self->wait_for(sub {
        my @now = $self->nginx_worker_pids;
        my @new = grep { !$old{$_} && !$self->_shutting_down($_) } @now;
        my @left = grep { $old{$_} } @now;
        return @new >= $want && (!$wait_old || !@left);
    }, timeout => $opt{timeout} // 10);

    die "reload_nginx: no new workers"
        . ($wait_old ? ' or old workers still running' : '')
        . ":\n" . _tail($self->error_log)
        unless $ok;

    return 1;
}


# waiting

sub wait_for {
    my ($self, $code, %opt) = @_;

    my $deadline = time + ($opt{timeout} // 5);
    my $interval = $opt{interval} // 0.02;

    for (;;) {
        my $r = $code->();
        return $r if $r;
        return undef if time >= $deadline;
        sleep $interval;
    }
}


my %LOG_FILE = (error => 'error.log', access => 'access.log',
                policyd => 'policyd.log');

sub wait_log {
    my ($self, $which, $re, %opt) = @_;

    my $file = $LOG_FILE{$which} // $which;
    my $from = $opt{from} // 0;

    return $self->wait_for(sub {
        my $text = $self->read_file($file);
        return length $text > $from && substr($text, $from) =~ $re ? 1 : 0;
    }, timeout => $opt{timeout} // 5);
}


# log_size($which): how long a log is now, for wait_log(..., from => ...)

sub log_size {
    my ($self, $which) = @_;
    return length $self->read_file($LOG_FILE{$which} // $which);
}


sub _tcp_accepts {
    my ($port) = @_;

    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                  Proto => 'tcp', Timeout => 1)
        or return 0;
    close $s;
    return 1;
}


sub _tail {
    my ($text, $n) = @_;
    my @l = split /\n/, $text // '';
    $n //= 40;
    @l = @l[-$n .. -1] if @l > $n;
    return join '', map { "  $_\n" } @l;
}


# HTTP client
#
# $self->{extra_headers}, when set (local it), goes with every request:
# a test that must find its own request's log line marks it so.

sub http {
    my ($self, $method, $path, %opt) = @_;
    return $self->_http($method, $path, 0, %opt);
}

# http_open($method, $path, headers => {}, body => $bytes): sends a request
# and returns a Tailgate::Conn to read the answer bit by bit, for tests that
# act between two chunks (open a gate, hang up mid-stream).

sub http_open {
    my ($self, $method, $path, %opt) = @_;

    my $conn = $self->raw_connect(port => $opt{port});

    my $body = $opt{body} // '';
    my %h = (Host => 'localhost', Connection => 'close',
             %{ $self->{extra_headers} // {} }, %{ $opt{headers} // {} });
    $h{'Content-Length'} = length $body if length $body || $method eq 'POST';

    my $req = "$method $path HTTP/1.1\r\n"
            . join('', map { "$_: $h{$_}\r\n" } sort keys %h)
            . "\r\n" . $body;

    $conn->write_bytes($req) == length $req or die "http_open: write: $!\n";

    return $conn;
}


# raw_connect(port => $port or name, rcvbuf => $bytes): a connection to the
# gateway (or that port) as a Tailgate::Conn, for requests written by hand:
# several on one keep-alive connection, pipelined, or a client that does
# not read (a small SO_RCVBUF, set before connecting).

sub raw_connect {
    my ($self, %opt) = @_;

    my $port = $opt{port} // 'nginx';
    $port = $self->port($port) unless $port =~ /^\d+$/;

    my $sock = IO::Socket::INET->new(Proto => 'tcp')
        or die "raw_connect: socket: $!\n";

    if ($opt{rcvbuf}) {
        setsockopt($sock, SOL_SOCKET, SO_RCVBUF, $opt{rcvbuf})
            or die "raw_connect: SO_RCVBUF: $!\n";
    }

    $sock->connect(pack_sockaddr_in($port, inet_aton('127.0.0.1')))
        or die "raw_connect: connect to 127.0.0.1:$port: $!\n";

    binmode $sock;
    $sock->blocking(0);

    return Tailgate::Conn->new($sock);
}

sub http_stream {
    my ($self, $method, $path, %opt) = @_;
    return $self->_http($method, $path, 1, %opt);
}


sub post_json {
    my ($self, $path, $key, $data, %opt) = @_;

    my %h = (
        'Content-Type' => 'application/json',
        (defined $key ? (Authorization => "Bearer $key") : ()),
        %{ $opt{headers} // {} },
    );

    my $body = ref $data ? $JSON->encode($data) : $data;
    my $stream = delete $opt{stream};

    return $self->_http('POST', $path, $stream ? 1 : 0,
                        %opt, headers => \%h, body => $body);
}


sub json {
    my ($self, $res) = @_;

    my $body = $res->{body} // '';
    my $data = eval { JSON::PP->new->utf8->allow_nonref->decode($body) };

    return $data if defined $data;

    $body = substr($body, 0, 2000) . '...' if length $body > 2000;
    die "response is not JSON (status " . ($res->{status} // '?')
        . ($res->{error} ? ", $res->{error}" : '') . "): $body\n";
}


sub _http {
    my ($self, $method, $path, $stream, %opt) = @_;

    my $timeout = $opt{timeout} // 10;
    my $port = $opt{port} // $self->port('nginx');
    my $t0 = time;
    my $deadline = $t0 + $timeout;

    my %res = (status => 0, headers => {}, body => '');
    $res{chunks} = [] if $stream;

    # local_addr: another loopback address to come from, 127.0.0.2
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                  Proto => 'tcp', Timeout => $timeout,
                                  ($opt{local_addr}
                                   ? (LocalAddr => $opt{local_addr}) : ()));
    if (!$s) {
        $res{error} = "connect: $!";
        return \%res;
    }

    # the request

    my @parts;

    if (defined $opt{raw}) {
        @parts = ($opt{raw});

    } else {
        my $h = { %{ $self->{extra_headers} // {} },
                  %{ $opt{headers} // {} } };
        my %has = map { lc($_) => 1 } keys %$h;
        my @body = ref $opt{body} eq 'ARRAY' ? @{ $opt{body} }
                 : defined $opt{body} ? ($opt{body}) : ();
        my $len = 0;
        $len += length for @body;

        my $head = "$method $path HTTP/1.1\r\n";
        $head .= "Host: 127.0.0.1:$port\r\n" unless $has{host};
        $head .= "Connection: close\r\n" unless $has{connection};

        for my $k (sort keys %$h) {
            for my $v (ref $h->{$k} eq 'ARRAY' ? @{ $h->{$k} } : $h->{$k}) {
                $head .= "$k: $v\r\n";
            }
        }

        if ($opt{chunked}) {
            $head .= "Transfer-Encoding: chunked\r\n"
                unless $has{'transfer-encoding'};
            @body = map { sprintf("%x\r\n", length) . "$_\r\n" }
                    grep { length } @body;
            push @body, "0\r\n\r\n";

        } elsif (!$has{'content-length'} && !$has{'transfer-encoding'}
                 && (@body || $method =~ /^(?:POST|PUT|PATCH)$/))
        {
            $head .= "Content-Length: $len\r\n";
        }

        @parts = ("$head\r\n", @body);
    }

    # with part_delay_ms the headers and each body part go separately

    if ($opt{part_delay_ms} && @parts > 1) {
        for my $i (0 .. $#parts) {
            sleep $opt{part_delay_ms} / 1000 if $i > 0;
            if (!_write_all($s, $parts[$i], $deadline)) {
                $res{error} = time >= $deadline ? 'timeout' : "write: $!";
                last;
            }
        }
    } elsif (!_write_all($s, join('', @parts), $deadline)) {
        $res{error} = time >= $deadline ? 'timeout' : "write: $!";
    }

    my $sent = time;

    # the response

    my $buf = '';
    my $state = 'head';
    my ($mode, $left);
    my %ch = (state => 'size', pending => '');

    while (!$res{error}) {
        my $wait = $deadline - time;
        if ($wait <= 0) {
            $res{error} = 'timeout';
            last;
        }

        my $rin = '';
        vec($rin, fileno($s), 1) = 1;
        my $n = select(my $rout = $rin, undef, undef, $wait);
        next if $n <= 0;

        my $data;
        my $got = sysread($s, $data, 65536);
        my $now = time - $sent;

        if (!defined $got) {
            next if $!{EINTR} || $!{EAGAIN};
            $res{error} = $!{ECONNRESET} ? 'reset' : "read: $!";
            last;
        }

        if ($got == 0) {
            if ($state eq 'head') {
                $res{error} = 'closed';
            } elsif ($mode eq 'close') {
                $state = 'done';
            } else {
                $res{error} = 'truncated';
            }
            last;
        }

        my $decoded = '';

        if ($state eq 'head') {
            $buf .= $data;

            for (;;) {
                my $end = index($buf, "\r\n\r\n");
                last if $end < 0;

                my $head = substr($buf, 0, $end);
                substr($buf, 0, $end + 4, '');

                my ($line, @lines) = split /\r\n/, $head;
                my ($ver, $status, $reason) =
                    ($line // '') =~ m{^HTTP/(\d\.\d) (\d{3})(?: (.*))?$};

                if (!$status) {
                    $res{error} = "bad status line: " . ($line // '');
                    last;
                }

                next if $status >= 100 && $status < 200;

                my %h;
                for my $l (@lines) {
                    my ($k, $v) = $l =~ /^([^:\s]+):\s*(.*?)\s*$/ or next;
                    $k = lc $k;
                    $h{$k} = exists $h{$k} ? "$h{$k}, $v" : $v;
                }

                @res{qw(status reason http_version headers headers_s)} =
                    ($status + 0, $reason // '', $ver, \%h, $now);

                if ($method eq 'HEAD' || $status == 204 || $status == 304) {
                    $mode = 'none';
                } elsif (($h{'transfer-encoding'} // '') =~ /chunked/i) {
                    $mode = 'chunked';
                } elsif (defined $h{'content-length'}) {
                    $mode = 'length';
                    $left = $h{'content-length'};
                } else {
                    $mode = 'close';
                }

                $state = 'body';
                $data = $buf;
                $buf = '';
                last;
            }

            last if $res{error};
            next if $state eq 'head';
        }

        if ($mode eq 'chunked') {
            $decoded = _dechunk(\%ch, $data);
            if ($ch{error}) {
                $res{error} = $ch{error};
            }
            $state = 'done' if $ch{done};

        } elsif ($mode eq 'length') {
            $decoded = substr($data, 0, $left);
            $left -= length $decoded;
            $state = 'done' if $left <= 0;

        } elsif ($mode eq 'close') {
            $decoded = $data;
        }

        if (length $decoded) {
            $res{body} .= $decoded;
            $res{first_byte_s} //= $now;
            push @{ $res{chunks} }, [ $now, $decoded ] if $stream;
        }

        $state = 'done' if $mode eq 'none';

        if ($state eq 'done') {
            $res{total_s} = $now;
            last;
        }
    }

    close $s;

    $res{total_s} //= time - $sent;
    $res{elapsed_s} = time - $t0;

    if ($res{error} && $res{error} eq 'timeout') {
        $res{got_status} = $res{status};
        $res{status} = 0;
    }

    return \%res;
}


sub _write_all {
    my ($s, $data, $deadline) = @_;

    my $off = 0;

    while ($off < length $data) {
        my $wait = $deadline - time;
        return 0 if $wait <= 0;

        my $win = '';
        vec($win, fileno($s), 1) = 1;
        my $n = select(undef, my $wout = $win, undef, $wait);
        next if $n <= 0;

        my $w = syswrite($s, $data, length($data) - $off, $off);
        if (!defined $w) {
            next if $!{EINTR} || $!{EAGAIN};
            return 0;
        }
        $off += $w;
    }

    return 1;
}


# incremental chunked decoding; returns the data bytes found in $in

sub _dechunk {
    my ($st, $in) = @_;

    $st->{pending} .= $in;
    my $out = '';

    for (;;) {
        my $p = \$st->{pending};

        if ($st->{state} eq 'size') {
            my $eol = index($$p, "\r\n");
            return $out if $eol < 0;

            my ($size) = substr($$p, 0, $eol) =~ /^([0-9a-fA-F]+)/;
            if (!defined $size) {
                $st->{error} = 'bad chunk size';
                return $out;
            }

            substr($$p, 0, $eol + 2, '');
            $st->{need} = hex $size;
            $st->{state} = $st->{need} ? 'data' : 'trailer';

        } elsif ($st->{state} eq 'data') {
            return $out unless length $$p;

            my $take = substr($$p, 0, $st->{need}, '');
            $out .= $take;
            $st->{need} -= length $take;
            $st->{state} = 'crlf' unless $st->{need};

        } elsif ($st->{state} eq 'crlf') {
            return $out if length $$p < 2;

            if (substr($$p, 0, 2) ne "\r\n") {
                $st->{error} = 'bad chunk end';
                return $out;
            }
            substr($$p, 0, 2, '');
            $st->{state} = 'size';

        } elsif ($st->{state} eq 'trailer') {
            if (substr($$p, 0, 2) eq "\r\n") {
                $st->{done} = 1;
                return $out;
            }

            my $end = index($$p, "\r\n\r\n");
            return $out if $end < 0;
            $st->{done} = 1;
            return $out;

        } else {
            return $out;
        }
    }
}


# parallel clients

sub parallel {
    my ($self, $n, $code, %opt) = @_;

    my $timeout = $opt{timeout} // 30;

    pipe(my $go_r, my $go_w) or die "parallel: pipe: $!\n";

    my (@pids, @readers);

    for my $i (0 .. $n - 1) {
        pipe(my $r, my $w) or die "parallel: pipe: $!\n";

        my $pid = fork;
        die "parallel: fork: $!\n" unless defined $pid;

        if ($pid == 0) {
            $SIG{$_} = sub { POSIX::_exit(1) } for qw(INT TERM HUP);
            close $go_w;
            close $_ for @readers, $r;

            # start together: wait until the parent closes the go pipe
            my $rin = '';
            vec($rin, fileno($go_r), 1) = 1;
            select(my $rout = $rin, undef, undef, $timeout);

            my $out = eval { $JSON->encode([ 1, scalar $code->($i) ]) }
                // $JSON->encode([ 0, "$@" ]);

            syswrite $w, $out;
            close $w;
            POSIX::_exit(0);
        }

        close $w;
        push @pids, $pid;
        push @readers, $r;
    }

    close $go_r;
    close $go_w;

    my %buf = map { $_ => '' } 0 .. $n - 1;
    my %open = map { fileno($readers[$_]) => $_ } 0 .. $n - 1;
    my $deadline = time + $timeout;

    while (%open && time < $deadline) {
        my $rin = '';
        vec($rin, $_, 1) = 1 for keys %open;
        my $nfound = select(my $rout = $rin, undef, undef, $deadline - time);
        next if $nfound <= 0;

        for my $fd (keys %open) {
            next unless vec($rout, $fd, 1);
            my $i = $open{$fd};
            my $got = sysread($readers[$i], $buf{$i}, 65536, length $buf{$i});
            next if !defined $got && ($!{EINTR} || $!{EAGAIN});
            delete $open{$fd} unless $got;
        }
    }

    kill 'KILL', @pids if %open;

    for my $pid (@pids) {
        my $until = time + 5;
        sleep 0.01 while waitpid($pid, WNOHANG) == 0 && time < $until;
    }

    close $_ for @readers;

    die "parallel: " . scalar(keys %open) . " of $n children did not finish"
        . " within $timeout s\n" if %open;

    my @out;

    for my $i (0 .. $n - 1) {
        my $r = eval { $JSON->decode($buf{$i}) };
        die "parallel: child $i returned nothing\n" unless ref $r eq 'ARRAY';
        die "parallel: child $i died: $r->[1]" unless $r->[0];
        push @out, $r->[1];
    }

    return @out;
}


# error.log checks

sub allow_log {
    my ($self, @re) = @_;
    push @{ $self->{allow} }, @re;
    return $self;
}


sub log_problems {
    my ($self) = @_;

    my @out;

    for my $f ([ 'error.log', \@LOG_PROBLEM ], [ 'nginx.stderr', \@LOG_PROBLEM ],
               [ 'policyd.log', [ $SANITIZER ] ])
    {
        my ($file, $res) = @$f;

        LINE: for my $line (split /\n/, $self->read_file($file)) {
            next unless grep { $line =~ $_ } @$res;
            for my $ok (@{ $self->{allow} }) {
                next LINE if $line =~ $ok;
            }
            push @out, "$file: $line";
        }
    }

    return @out;
}


sub log_has_no {
    my ($self, $string) = @_;

    for my $f (qw(error.log access.log policyd.log)) {
        return 0 if index($self->read_file($f), $string) >= 0;
    }

    return 1;
}


sub plan {
    my ($self, $n) = @_;
    $self->{emit_check} = 1;
    Test::More::plan(tests => $n + 1);
    return $self;
}


sub done_testing {
    my ($self) = @_;
    $self->stop_all;
    $self->_check_logs(1);
    Test::More::done_testing();
}


# logs_clean($name): the error.log check as a test, now: at the end of one
# part of a file that shares its gateway with others (the check at
# teardown still runs)

sub logs_clean {
    my ($self, $name) = @_;

    my @bad = $self->log_problems;

    my $tb = Test::More->builder;
    $tb->ok(!@bad, $name // 'error.log is clean');
    $tb->diag(join "\n", 'offending log lines:', @bad) if @bad;

    return !@bad;
}


# stop_and_check($name): for a second harness in a file: stops everything
# it started and runs its error.log check as a test now, not at teardown

sub stop_and_check {
    my ($self, $name) = @_;
    $self->stop_all;
    $self->_check_logs(1, $name);
}


sub _check_logs {
    my ($self, $emit, $name) = @_;

    return if $self->{checked}++;

    my @bad = $self->log_problems;

    return unless @bad || $emit;

    $self->logs_clean($name);
}


# teardown

sub stop_all {
    my ($self) = @_;

    return if $$ != $self->{owner};

    $self->stop_proc('nginx', timeout => 10) if $self->{procs}{nginx};
    $self->stop_proc('policyd') if $self->{procs}{policyd};

    for my $m (values %{ $self->{mocks} }) {
        $m->stop;
    }

    for my $name (sort keys %{ $self->{procs} }) {
        $self->stop_proc($name, group => 1);
    }
}


sub finish {
    my ($self) = @_;

    return if $$ != $self->{owner} || $self->{finished}++;

    local ($?, $!, $@);

    $self->stop_all;

    my $tb = Test::More->builder;
    $self->_check_logs($self->{emit_check})
        if $tb->current_test > 0 || $self->{emit_check};

    if (!$self->{keep}) {
        remove_tree($self->{dir});
        _wd_send("d $self->{dir}");
    }
}


sub DESTROY {
    my ($self) = @_;
    local ($?, $!, $@);
    $self->finish;
}


sub _finish_all {
    for my $t (@INSTANCES) {
        $t->finish if $t;
    }
    @INSTANCES = ();

    if ($WD_FH && $$ == $OWNER) {
        close $WD_FH;
        undef $WD_FH;
        my $until = time + 5;
        sleep 0.01 while waitpid($WD_PID, WNOHANG) == 0 && time < $until;
    }
}


END {
    local ($?, $!, $@);
    _finish_all() if $$ == $OWNER;
}


my $signals_installed;

sub _install_signals {
    return if $signals_installed++;

    $SIG{PIPE} = 'IGNORE';

    for my $sig (qw(INT TERM HUP QUIT)) {
        $SIG{$sig} = sub {
            POSIX::_exit(1) if $$ != $OWNER;
            Test::More->builder->diag("caught SIG$sig, stopping everything");
            _finish_all();
            $SIG{$sig} = 'DEFAULT';
            kill $sig, $$;
            POSIX::_exit(1);
        };
    }
}


# The watchdog: a small process in its own process group that holds the read
# end of a pipe from the test. When the test ends in any way, even SIGKILL,
# the pipe reaches EOF and the watchdog kills every process group still
# registered and removes the temp dirs.
# Messages: "+ PGID", "- PGID", "D DIR" (remove on EOF), "d DIR" (done).

sub _watchdog {
    return if $WD_FH || $$ != $OWNER;

    pipe(my $r, my $w) or die "watchdog: pipe: $!\n";

    my $pid = fork;
    die "watchdog: fork: $!\n" unless defined $pid;

    if ($pid == 0) {
        POSIX::setpgid(0, 0);
        $SIG{$_} = 'IGNORE' for qw(INT TERM HUP QUIT PIPE);

        my $keep = fileno $r;
        for my $fd (0 .. 1023) {
            POSIX::close($fd) unless $fd == $keep;
        }
        open STDIN, '<', '/dev/null';
        open STDOUT, '>', '/dev/null';
        open STDERR, '>', '/dev/null';

        my (%groups, %dirs);

        while (defined(my $line = <$r>)) {
            my ($op, $arg) = $line =~ /^(\S) (.+)$/ or next;
            $groups{$arg} = 1 if $op eq '+';
            delete $groups{$arg} if $op eq '-';
            $dirs{$arg} = 1 if $op eq 'D';
            delete $dirs{$arg} if $op eq 'd';
        }

        my @g = grep { /^\d+$/ && kill 0, -$_ } keys %groups;

        if (@g) {
            kill 'TERM', map { -$_ } @g;
            my $until = time + 3;
            while (time < $until && grep { kill 0, -$_ } @g) {
                sleep 0.05;
            }
            kill 'KILL', map { -$_ } grep { kill 0, -$_ } @g;
        }

        remove_tree($_) for keys %dirs;

        POSIX::_exit(0);
    }

    close $r;
    $w->autoflush(1);
    ($WD_PID, $WD_FH) = ($pid, $w);
}


sub _wd_send {
    my ($msg) = @_;
    return unless $WD_FH && $$ == $OWNER;
    syswrite $WD_FH, "$msg\n";
}


package Tailgate::Mock;

use strict;
use warnings;

use Time::HiRes qw(time sleep);
use Fcntl qw(:flock);
use MIME::Base64 qw(decode_base64);
use JSON::PP ();
use Scalar::Util qw(weaken);

my $MJSON = JSON::PP->new->canonical->utf8->allow_nonref;

sub _new {
    my ($class, $t, $name, $port, $host) = @_;

    my $self = bless {
        t    => $t,
        name => $name,
        port => $port,
        host => $host // '127.0.0.1',
        dir  => $t->dir,
        proc => "mock:$name",
    }, $class;

    weaken($self->{t});

    return $self;
}

sub name { $_[0]{name} }
sub port { $_[0]{port} }
sub host { $_[0]{host} }
sub addr { "$_[0]{host}:$_[0]{port}" }
sub url  { "http://$_[0]{host}:$_[0]{port}" }
sub pid  { $_[0]{t}->pid($_[0]{proc}) }

sub running {
    my ($self) = @_;
    return $self->{t} && $self->{t}->running($self->{proc});
}

sub _file { "$_[0]{dir}/$_[0]{name}.$_[1]" }


sub start {
    my ($self, %opt) = @_;

    my $t = $self->{t};
    unlink $self->_file('ready');

    my $pid = $t->spawn($self->{proc},
        [ $^X, $t->root . '/t/lib/mock_provider.pl', '--port', $self->{port},
          '--name', $self->{name}, '--dir', $self->{dir},
          '--addr', $self->{host} ],
        log => "$self->{name}.mock.log");

    my $ok = $t->wait_for(sub {
        return -1 unless $t->running($self->{proc});
        my ($p) = $t->read_file($self->_file('ready')) =~ /^(\d+) /;
        return $p && $p == $pid ? 1 : 0;
    }, timeout => $opt{timeout} // 10);

    return $self if $ok && $ok > 0;

    $t->stop_proc($self->{proc}, group => 1);
    die "mock provider $self->{name} did not start on port $self->{port}:\n"
        . Tailgate::Test::_tail($t->read_file("$self->{name}.mock.log"));
}


sub stop {
    my ($self) = @_;
    return unless $self->{t};
    $self->{t}->stop_proc($self->{proc}, group => 1);
}


sub kill {
    my ($self) = @_;
    return unless $self->{t};
    $self->{t}->stop_proc($self->{proc}, group => 1, signal => 'KILL');
}


sub set {
    my ($self, %control) = @_;
    $self->{control} = { %control };
    $self->{t}->write_file($self->_file('control.json'),
                           $MJSON->encode($self->{control}));
    return $self;
}

sub update {
    my ($self, %control) = @_;
    return $self->set(%{ $self->{control} // {} }, %control);
}

sub control { return +{ %{ $_[0]{control} // {} } } }


# the health probes it got: [{ts, path, mode, authorization}], oldest first

sub probes {
    my ($self) = @_;

    open my $fh, '<:raw', $self->_file('probes.jsonl') or return [];
    flock($fh, LOCK_SH);
    my @list = map { eval { $MJSON->decode($_) } // () } <$fh>;
    close $fh;

    return \@list;
}

sub requests {
    my ($self) = @_;

    my $file = $self->_file('requests.jsonl');
    my $cache = $self->{requests_cache} //= { offset => 0, list => [] };
    my $text = '';

    # only the lines added since the last call are parsed

    if (open my $fh, '<:raw', $file) {
        flock($fh, LOCK_SH);
        seek($fh, $cache->{offset}, 0);
        local $/;
        $text = <$fh> // '';
        close $fh;
    }

    my $end = rindex($text, "\n") + 1;
    $cache->{offset} += $end;

    for my $line (split /\n/, substr($text, 0, $end)) {

        # the base64 body is cut out before decoding: JSON::PP is slow on
        # megabytes, base64 needs no JSON unescaping
        my $b64 = $line =~ s/,"body_b64":"([^"]*)"\}$/}/ ? $1 : '';
        my $r = eval { $MJSON->decode($line) } or next;
        my $body = decode_base64($b64);

        push @{ $cache->{list} }, {
            ts         => $r->{ts},
            method     => $r->{method},
            path       => $r->{path},
            headers    => $r->{headers} // {},
            body       => $body,
            json       => length $body <= 65536
                          ? scalar eval { $MJSON->decode($body) } : undef,
            concurrent => $r->{concurrent},
            refused    => $r->{refused},
            conn       => $r->{conn},
        };
    }

    return [ @{ $cache->{list} } ];
}


sub clear {
    my ($self) = @_;

    my $file = $self->_file('requests.jsonl');

    if (open my $fh, '+<', $file) {
        flock($fh, LOCK_EX);
        truncate $fh, 0;
        close $fh;
    }

    delete $self->{requests_cache};

    return $self;
}


sub max_concurrent_seen {
    my ($self) = @_;
    my $max = 0;
    for my $r (@{ $self->requests }) {
        $max = $r->{concurrent} if ($r->{concurrent} // 0) > $max;
    }
    return $max;
}


sub in_progress {
    my ($self) = @_;

    opendir my $dh, $self->_file('active') or return 0;
    my $n = grep { /^(\d+)$/ && CORE::kill(0, $1) } readdir $dh;
    closedir $dh;

    return $n;
}


sub wait_requests {
    my ($self, $n, %opt) = @_;
    return $self->{t}->wait_for(sub { @{ $self->requests } >= $n },
                                timeout => $opt{timeout} // 5);
}


package Tailgate::Conn;

# One client connection read incrementally; raw() is everything received,
# headers and chunk framing included.

use strict;
use warnings;

use IO::Select;
use Time::HiRes qw(time);

sub new {
    my ($class, $sock) = @_;
    return bless { sock => $sock, raw => '', eof => 0, pos => 0 }, $class;
}

sub raw { $_[0]{raw} }
sub eof { $_[0]{eof} }

# read until $re matches what arrived so far; false on timeout or EOF first
sub read_until {
    my ($self, $re, $timeout) = @_;

    my $deadline = time + ($timeout // 5);

    for (;;) {
        return 1 if $self->{raw} =~ $re;
        return 0 if $self->{eof};

        my $left = $deadline - time;
        return 0 if $left <= 0;

        $self->_read($left);
    }
}

# read until the server closes; false on timeout
sub read_all {
    my ($self, $timeout) = @_;

    my $deadline = time + ($timeout // 10);

    until ($self->{eof}) {
        my $left = $deadline - time;
        return 0 if $left <= 0;
        $self->_read($left);
    }

    return 1;
}

sub status {
    my ($self) = @_;
    return $self->{raw} =~ m{^HTTP/1\.[01] (\d{3})} ? $1 : undef;
}

sub close {
    my ($self) = @_;
    close $self->{sock} if $self->{sock};
    $self->{sock} = undef;
    $self->{eof} = 1;
}

# write_bytes($bytes, $timeout): writes what the peer takes within $timeout
# (5 s); returns how many bytes that was

sub write_bytes {
    my ($self, $bytes, $timeout) = @_;

    my $deadline = time + ($timeout // 5);
    my $sel = IO::Select->new($self->{sock});
    my $off = 0;

    while ($off < length $bytes) {
        my $left = $deadline - time;
        last if $left <= 0;
        next unless $sel->can_write($left > 0.2 ? 0.2 : $left);

        my $n = syswrite($self->{sock}, $bytes, length($bytes) - $off, $off);
        if (!defined $n) {
            next if $!{EAGAIN} || $!{EINTR};
            last;
        }
        $off += $n;
    }

    return $off;
}

# read_response($timeout): the next whole response on a keep-alive
# connection (Content-Length bodies); returns (status, its bytes).  Dies
# if the connection closes or $timeout (10 s) passes first.

sub read_response {
    my ($self, $timeout) = @_;

    $timeout //= 10;
    my $deadline = time + $timeout;
    my $need;

    for (;;) {
        my $rest = substr($self->{raw}, $self->{pos});

        if (!defined $need && (my $end = index($rest, "\r\n\r\n")) >= 0) {
            my $head = substr($rest, 0, $end + 4);
            my ($len) = $head =~ /^Content-Length:\s*(\d+)/mi;
            die "read_response: no Content-Length in: $head\n" unless defined $len;
            $need = length($head) + $len;
        }

        if (defined $need && length $rest >= $need) {
            $self->{pos} += $need;
            my $res = substr($rest, 0, $need);
            my ($status) = $res =~ m{^HTTP/1\.[01] (\d{3})};
            return ($status, $res);
        }

        die "read_response: connection closed\n" if $self->{eof};
        die "read_response: no complete response within $timeout s\n"
            if time >= $deadline;

        $self->_read($deadline - time);
    }
}

sub _read {
    my ($self, $left) = @_;

    my $sel = IO::Select->new($self->{sock});
    return unless $sel->can_read($left > 0.2 ? 0.2 : $left);

    my $n = sysread($self->{sock}, my $buf, 65536);

    if (!defined $n && ($!{EAGAIN} || $!{EINTR})) {
        return;
    }

    if (!$n) {
        $self->{eof} = 1;
        return;
    }

    $self->{raw} .= $buf;
}


1;

__END__

=head1 NAME

Tailgate::Test - harness for Tailgate's nginx + policyd integration tests

=head1 SYNOPSIS

    use lib 't/lib';
    use Test::More;
    use Tailgate::Test;

    my $t = Tailgate::Test->new->skip_unless_built;

    my $a = $t->mock_provider('a', stream_interval_ms => 100);
    my $key = $t->new_key;
    $t->write_keys(alice => $key);
    $t->write_policy({ providers => { ... }, routes => { ... } });
    $t->start_policyd;

    $t->start_nginx(<<'EOF');
        upstream tailgate_a { server %%MOCK:a%%; keepalive 8; }
        server {
            listen 127.0.0.1:%%PORT%%;
            location /v1/ { tailgate on; tailgate_keys %%KEYS%%; ... }
        }
    EOF

    my $r = $t->post_json('/v1/chat/completions', $key,
                          { model => 'qwen', messages => [] });
    is($r->{status}, 200, 'chat');
    is($t->json($r)->{model}, 'qwen', 'model');
    is($a->requests->[0]{json}{model}, 'qwen2.5-7b-instruct', 'rewritten');

    $t->done_testing;     # stops everything, checks error.log, done_testing

=head1 DESCRIPTION

Every test gets a fresh temp dir (C<< $t->dir >>) holding its nginx.conf,
logs, sockets, policy, keys and the mocks' files. Every process the harness
starts runs in its own process group and is stopped at the end whatever
happens: by C<finish> (called from DESTROY and an END block), by the
handlers for SIGINT/SIGTERM/SIGHUP/SIGQUIT, and, should the test itself be
killed with SIGKILL, by a watchdog process that sees its pipe from the test
close and kills every process group still registered. The mock providers and
the fake policyd also exit on their own when their parent goes away.

Everything listens on 127.0.0.1 or on Unix sockets in the temp dir. Every
wait is bounded in time.

Files in the temp dir: F<nginx.conf>, F<nginx.pid>, F<error.log>,
F<access.log>, F<nginx.stderr>, F<policy.json>, F<policyd.sock>,
F<policyd.log> (the real or the fake policyd's output), F<keys>,
F<fake_policyd.json>, F<fake_policyd.jsonl> (frames the fake received),
and per mock F<NAME.control.json>, F<NAME.requests.jsonl>,
F<NAME.mock.log> (its stderr), F<NAME.active/>, F<NAME.lock>,
F<NAME.ready>.

=head2 Environment

=over

=item TAILGATE_NGINX - nginx binary, default F</usr/sbin/nginx>

=item TAILGATE_MODULE - module, default F<ROOT/build/ngx_tailgate_module.so>

=item TAILGATE_POLICYD - policyd binary, default F<ROOT/build/policyd>

=item TAILGATE_KEEP=1 - keep the temp dir (its path is printed as a diag)

=item TAILGATE_DEBUG=1 - nginx error_log level C<debug>

=back

ROOT is the repository root, found from this file's path
(F<t/lib/Tailgate/../../..>).

=head1 METHODS

=head2 Setup

=over

=item C<< Tailgate::Test->new(%opt) >>

Creates the temp dir. Returns the harness. C<%opt> may override
C<nginx>, C<module> and C<policyd> (paths) and C<keep> (0|1), taking
precedence over the environment.

=item C<< $t->skip_unless_built(@what) >>

C<plan skip_all> unless nginx, the module and policyd exist. C<@what> may
narrow the check to C<'module'> (nginx and the module) and/or
C<'policyd'>. Returns C<$t>.

=item C<< $t->dir >>, C<< $t->root >>, C<< $t->nginx_binary >>,
C<< $t->module_path >>, C<< $t->policyd_binary >>, C<< $t->policyd_sock >>

Paths. The policyd socket is always F<DIR/policyd.sock>.

=item C<< $t->debugging >>

True when TAILGATE_DEBUG is set. nginx's debug log shows request headers,
keys included, so secret checks (C<log_has_no>) should be skipped then.

=item C<< $t->port($name) >>

A free loopback TCP port (bind 127.0.0.1:0, read it, close), memoized per
name; distinct names get distinct ports. C<$name> defaults to C<nginx>,
the gateway's port. Mock providers use C<mock:NAME>.

=item C<< $t->write_file($name, $bytes) >> / C<< $t->read_file($name) >>

Write (atomically) or read a file in the temp dir (or an absolute path).
C<write_file> returns the path; C<read_file> returns C<''> for a missing file.

=item C<< $t->private_copy($file) >>

A copy of C<$file> as F<DIR/copy-NAME>, mode 0640, for policyd, which
refuses a policy file that every user may read (a checkout's F<conf/>
files are 0644). Returns the path. The harness sets C<umask 027>, so the
files a test writes are such already.

=item C<< $t->conf_text($name) >>

A file of F<conf/tailgate/> as shipped (e.g. C<locations.conf>), to pass
as is or edited.

=item C<< $t->write_policy(\%policy | $text) >>

Writes F<DIR/policy.json> (a hash is encoded as JSON; a string is written
as is, e.g. to test comments or bad files). Returns the path.

=item C<< $t->write_keys(client_id => 'plaintext key', ...) >>

Writes F<DIR/keys>: a comment line, then one line per pair,
C<< <sha256 hex of key> <client_id> >>. Lines beginning with C<#> are
comments. Returns the path.

=item C<< $t->new_key >>

A random fake key C<tg-test-E<lt>32 hexE<gt>>.

=back

=head2 Mock providers

=over

=item C<< $t->mock_provider($name, %control) >>

Starts F<t/lib/mock_provider.pl> on C<< $t->port("mock:$name") >> with
C<%control> as its control, waits until it listens, and returns a
L</Tailgate::Mock>. A stopped mock of the same name can be restarted with
C<< $m->start >> (same port) or by calling C<mock_provider> again.

=item C<< $t->mock_provider_at($name, $addr, $port, %control) >>

A mock listening on C<$addr> (another loopback address, e.g.
C<127.0.0.2>) and C<$port> chosen by the caller: two providers on one
port, told apart only by address, as behind one DNS name.

=item C<< $t->mock($name) >>

The mock object of that name, or undef.

=back

=head2 policyd

=over

=item C<< $t->start_policyd(%opt) >>

Runs C<policyd -c DIR/policy.json -s DIR/policyd.sock> with stdout and
stderr appended to F<DIR/policyd.log>, and waits (default 10 s) until the
socket accepts a connection; dies with the log if it does not. Options:
C<< env => {NAME => value} >> (added to the environment; undef deletes),
C<< args => [...] >> (more arguments), C<< config => $path >>,
C<< timeout => $s >>. Returns the pid.

=item C<< $t->policyd_pid >>, C<< $t->stop_policyd >> (SIGTERM, wait),
C<< $t->kill_policyd >> (SIGKILL, wait), C<< $t->reload_policyd >> (SIGHUP),
C<< $t->policyd_log >> (contents of F<DIR/policyd.log>)

These work for the real and the fake policyd alike. C<stop_policyd> and
C<kill_policyd> return the wait status (C<$?> style).

=item C<< $t->start_fake_policyd(\%config, %opt) >>

Runs F<t/lib/fake_policyd.pl> on the same socket path instead (see that
file for the config keys: C<decision>, C<decisions>, C<delay_ms>,
C<misbehave>, C<max_frame>, C<models_body>). Returns the pid.

=item C<< $t->set_fake_policyd(\%config) >>

Rewrites the fake's config, sends SIGHUP and waits until it has reloaded.

=item C<< $t->fake_policyd_frames >>

Arrayref of the frames the fake received, oldest first:
C<< {ts, conn, type, type_name, id, len, fields => {name => value}} >>
plus C<model> (DECIDE) for convenience. Repeatable fields (tag,
allow_route, exclude) are arrays; unknown keys appear as C<key_N>.

=item C<< $t->fake_frames($type_name, field => $value, ..., since => $n) >>

Arrayref of the frames of that type (C<DECIDE>, C<REPORT>, ...) whose
fields have those values (compared as strings), among those received after
the first C<$n> (C<< scalar @{ $t->fake_policyd_frames } >> taken before).

=item C<< $t->policyd_cmd(@args, { timeout => 30, stderr => 1 }) >>

Runs the policyd binary with C<@args> to completion (C<-t>, C<explain>,
C<status>) and returns C<(exit code, stdout and stderr)>: stdout only with
C<< stderr => 0 >> (stderr is then the test's), C<(exit code, stdout,
stderr)> with C<< stderr => 'apart' >>. The exit code is -1 when it died
of a signal (it is killed after C<timeout> seconds).

=back

=head2 nginx

=over

=item C<< $t->start_nginx($http_body, %opt) >>

Writes F<DIR/nginx.conf> (see C<nginx_conf>) and starts
C<nginx -p DIR/ -c DIR/nginx.conf -e DIR/error.log> (stdout and stderr to
F<DIR/nginx.stderr>); waits (C<timeout>, default 10 s) until the pid file
exists and 127.0.0.1:C<< $t->port('nginx') >> accepts a connection. Dies
with F<nginx.stderr> and the tail of error.log if it does not start.
Options: C<< workers => N >> (1), C<< log_level => 'info' >>,
C<< no_module => 1 >>, C<< main => $text >> (extra main-context directives,
placeholders substituted), C<< env => {...} >>,
C<< wait => $port_name >> (port to wait for; 0 waits only for the pid
file). Returns the master pid.

Placeholders in C<$http_body>: C<%%DIR%%>, C<%%ROOT%%>, C<%%PORT%%> (the
gateway's port), C<%%PORT:name%%>, C<%%MOCK:name%%> (C<127.0.0.1:port> of
a started mock), C<%%POLICYD_SOCK%%>, C<%%KEYS%%> (F<DIR/keys>). An unknown
placeholder dies.

=item C<< $t->nginx_conf($http_body, %opt) >>

The config text C<start_nginx> would write.

=item C<< $t->reload_nginx($new_http_body?, %opt) >>

Optionally rewrites the config (options merged with those of
C<start_nginx>), sends SIGHUP and waits (C<timeout>, 10 s) until the
configured number of new workers run and, unless C<< wait_old => 0 >>, the
old workers are gone. Dies with the error.log tail otherwise.

=item C<< $t->stop_nginx >>, C<< $t->nginx_pid >>

SIGTERM and wait (SIGKILL to the group after 10 s).

=item C<< $t->nginx_worker_pids >>

Sorted pids of the master's worker processes (from F</proc>), including
workers that are shutting down.

=item C<< $t->error_log >>, C<< $t->access_log >>

File contents.

=back

=head2 HTTP client

=over

=item C<< $t->http($method, $path, %opt) >>

One HTTP/1.1 request over a new connection with C<Connection: close>.
Options: C<< headers => {name => value | [values]} >>,
C<< body => $bytes | [parts] >>, C<< timeout => $s >> (10),
C<< port => $port >> (default the gateway's), C<< chunked => 1 >> (send the
body with chunked encoding, one chunk per part), C<< part_delay_ms => N >>
(send the headers and each body part separately with a pause between),
C<< raw => $bytes >> (send exactly these bytes as the request).
Content-Length is added for a body (or an empty POST/PUT/PATCH) unless the
headers already carry Content-Length or Transfer-Encoding.

Returns C<< {status, reason, http_version, headers => {lc name => value},
body, error, headers_s, first_byte_s, total_s, elapsed_s} >>. Repeated
headers are joined with C<", ">. Bodies delimited by Content-Length,
chunked encoding or connection close are decoded. C<error> is undef on
success, or C<'timeout'> (then C<status> is 0 and C<got_status> holds any
status already received), C<'closed'> (closed before a response),
C<'truncated'> (closed before the body was complete), C<'reset'>,
C<"connect: ...">, C<"read: ...">, C<"write: ...">, or a parse error.
It never waits past C<timeout>.

=item C<< $t->http_stream($method, $path, %opt) >>

Like C<http>, plus C<< chunks => [[seconds since request sent, bytes], ...] >>:
one entry per read() from the socket that produced body bytes (chunked
encoding already removed). C<first_byte_s> is the time of the first body
byte, C<total_s> the time the body was complete.

=item C<< $t->post_json($path, $key, \%json | $raw_body, %opt) >>

POST with C<Authorization: Bearer $key> (omitted when C<$key> is undef) and
C<Content-Type: application/json>; C<< headers => {...} >> adds or
overrides. C<< stream => 1 >> uses C<http_stream>. Other options as
C<http>.

=item C<< $t->http_open($method, $path, headers => {...}, body => $bytes, port => $port) >>

Sends one request (C<Connection: close>, C<Content-Length> for a body or a
POST) and returns its connection as a L</Tailgate::Conn>, to read the
answer bit by bit.

=item C<< $t->raw_connect(port => $port | $name, rcvbuf => $bytes) >>

A connection to 127.0.0.1 (the gateway's port by default) as a
L</Tailgate::Conn>, for requests written by hand: several on one
keep-alive connection, pipelined, or a client that does not read
(C<rcvbuf> sets SO_RCVBUF before connecting).

=item C<< $t->json($response) >>

The decoded body; dies showing the status and body when it is not JSON.

=item C<< $t->parallel($n, sub { my $i = shift; ...; return $scalar }, timeout => 30) >>

Forks C<$n> children (C<$i> = 0 .. C<$n>-1), releases them at once, and
returns the list of their return values in order of C<$i> (passed back as
JSON, so return plain data). Dies if a child dies or the timeout passes
(remaining children are killed). Do not call Test::More functions in the
children.

=back

=head2 Waiting

=over

=item C<< $t->wait_for(sub { ... }, timeout => 5, interval => 0.02) >>

Polls until the sub returns true; returns that value, or undef on timeout.

=item C<< $t->wait_log('error' | 'access' | 'policyd' | $file, qr/.../, timeout => 5, from => $offset) >>

Waits until the log matches (only what follows the first C<$offset> bytes
with C<from>). True on success.

=item C<< $t->log_size('error' | 'access' | 'policyd' | $file) >>

The log's length now: C<from> for a later C<wait_log> that must see a new
line, not one an earlier part of the test wrote.

=back

=head2 Processes

=over

=item C<< $t->spawn($name, [argv], env => {...}, log => $file, cwd => $dir) >>

Starts any other daemon (e.g. Redis) under the same guarantees: own
process group, stdin from /dev/null, stdout and stderr appended to
C<log> (default F<DIR/NAME.log>), stopped at teardown. Returns the pid.

=item C<< $t->wait_exit($name, $timeout) >>

Waits (5 s) until that process exits; returns its exit code, -1 when a
signal ended it, undef when it still runs.

=item C<< $t->wait_socket($path, timeout => 5) >>

True once the Unix socket C<$path> accepts a connection (a policyd started
with C<spawn> on a socket of its own).

=item C<< $t->pid($name) >>, C<< $t->running($name) >>, C<< $t->exit_status($name) >>,
C<< $t->signal($name, $sig) >>, C<< $t->stop_proc($name, signal => 'TERM', timeout => 5, group => 0) >>

Process names: C<nginx>, C<policyd>, C<mock:NAME>, or those given to
C<spawn>. C<stop_proc> signals the process (or its whole group with
C<< group => 1 >>), waits, escalates to SIGKILL of the group, kills any
leftovers of the group, and returns the wait status.

=back

=head2 Logs and teardown

=over

=item C<< $t->allow_log(qr/.../, ...) >>

Lines matching are not reported by the error.log check.

=item C<< $t->log_problems >>

The offending lines now: C<[alert]>, C<[crit]>, C<[emerg]>,
C<AddressSanitizer>, C<LeakSanitizer>, C<runtime error:> in
F<error.log> and F<nginx.stderr>, and the sanitizer patterns in
F<policyd.log>; each prefixed with its file name.

=item C<< $t->log_has_no($string) >>

True when none of error.log, access.log and policyd.log contains C<$string>
(for secrets).

=item C<< $t->logs_clean($name) >>

The error.log check as a test named C<$name>, now: at the end of one part
of a file whose gateway serves several parts. The check at teardown still
runs.

=item C<< $t->stop_and_check($name) >>

For a second harness in one file: C<stop_all>, then its error.log check as
a test named C<$name> (instead of at teardown).

=item C<< $t->plan($n) >>

C<plan tests =E<gt> $n + 1>; the extra test is the error.log check run at
teardown.

=item C<< $t->done_testing >>

Stops everything, runs the error.log check as a test named
C<error.log is clean>, then C<Test::More::done_testing>.

=item C<< $t->stop_all >>

Stops nginx, policyd, the mocks and every other process started.

=item C<< $t->finish >>

Teardown, idempotent, called from DESTROY and END: C<stop_all>; then, if
tests ran and the check was not done, the error.log check, which adds a
failing test C<error.log is clean> (with the lines as diag) only when it
finds something (or always after C<< $t->plan >>); then the temp dir is
removed unless TAILGATE_KEEP is set.

=back

=head1 Tailgate::Mock

Returned by C<< $t->mock_provider >>.

=over

=item C<< $m->name >>, C<< $m->port >>, C<< $m->host >>, C<< $m->addr >> (C<127.0.0.1:port>),
C<< $m->url >> (C<http://127.0.0.1:port>), C<< $m->pid >>, C<< $m->running >>

=item C<< $m->set(%control) >>

Replaces the whole control (keys not given return to their defaults) by
rewriting F<DIR/NAME.control.json>; the next request uses it.
C<< $m->update(%control) >> merges into the current control instead;
C<< $m->control >> returns a copy of it.

=item C<< $m->requests >>

Arrayref of recorded requests, oldest first:
C<< {method, path (with query), headers => {lc name => value}, body (raw
bytes), json (decoded body or undef), concurrent, refused (0|1), conn, ts} >>.
C<concurrent> counts the requests in progress at the mock, this one
included, when it arrived. C<conn> identifies the TCP connection (the pid
of the mock's child serving it): equal values prove keep-alive reuse.

=item C<< $m->clear >>

Forgets the recorded requests.

=item C<< $m->max_concurrent_seen >>

Largest C<concurrent> among the records (0 when none).

=item C<< $m->in_progress >>

Requests being handled right now.

=item C<< $m->wait_requests($n, timeout => 5) >>

Waits until at least C<$n> requests are recorded. True on success.

=item C<< $m->start >>, C<< $m->stop >> (SIGTERM to its process group,
wait), C<< $m->kill >> (SIGKILL to its process group, wait)

=back

=head2 Control keys

Read by the mock on every request from its control file, merged with a JSON
object in the request header C<X-Mock-Control> (which passes through nginx).

=over

=item C<mode> - C<ok> (default), C<status>, C<hang>, C<reset>, C<drop>

A mode applies to every request, C</health> and C<.../models> included,
unless C<match_path> narrows it.

C<status>: answer C<status> (default 500) with
C<{"error":{"message":"mock NAME failure","type":"server_error","param":null,"code":"mock_failure"}}>;
a 429 also sends C<Retry-After: 1> (or C<retry_after>).
C<hang>: read the request, send nothing, close after C<hang_s> (30) or
when the peer closes. C<reset>: close with RST (SO_LINGER 0).
C<drop>: for a stream, the response headers and C<drop_after> (2) SSE
events, then close without the terminating chunk; for a non-stream request,
a Content-Length body cut in half, then close.

=item C<delay_ms> - wait before answering (any mode)

=item C<stream_chunks> (3), C<stream_interval_ms> (0) - SSE events and the pause between them

=item C<max_concurrency> - a request arriving while that many are in
progress gets 503 (C<code: mock_busy>) and is recorded with C<refused: 1>

=item C<match_path> - a regex; C<mode> and C<delay_ms> apply only to
matching paths, others are answered normally

=item C<headers> - extra response headers C<{name => value}>

=item C<usage> - C<{prompt_tokens, completion_tokens}> override (7 and 3)

=item C<content> - assistant text (default C<Hello from NAME>)

=item C<tool_calls> - C<[{id, name, arguments}]>: a chat answer calls these
functions (C<message.tool_calls>, C<finish_reason: "tool_calls">); a stream
sends each call's id and name first, then its arguments in three pieces,
then a chunk with the finish reason. Text deltas come first only when
C<content> is set. With C<tool_calls_once>, a request whose last message is
a tool's result (C<role: "tool">) is answered with text instead.

=item C<finish_reason> - a chat answer's (default C<stop>); a stream sends a
last chunk with it only when set (or with C<tool_calls>)

=item C<chat_events> - a chat stream sends these texts verbatim, each a chunk
of its own (then C<0\r\n\r\n>); with C<mode: drop>, the first C<drop_after>

=item C<chat_body> - a chat JSON answer is this text verbatim

=item C<models> - ids listed by C<GET .../models> (C<["mock-model"]>)

=back

Responses: every one has C<X-Mock-Provider: NAME>. POST C<.../chat/completions>
(C<chat.completion>, or with C<"stream": true> SSE chunks C<tok1 > ... then
a usage chunk when C<stream_options.include_usage>, then C<data: [DONE]>),
C<.../embeddings>, C<.../audio/speech> (4096 bytes of C<audio/mpeg>: 0..255
sixteen times), C<.../audio/transcriptions> (multipart; answers the C<model>
field), C<.../responses> (also streamed, as the API streams, every event
with C<sequence_number>: C<response.created>, C<response.in_progress>,
C<response.output_item.added> and C<response.content_part.added> with the
first C<response.output_text.delta>, then the other deltas, then
C<output_text.done>, C<content_part.done>, C<output_item.done> and
C<response.completed> in one chunk); GET C<.../models>, GET C</health>;
anything else 404. A JSON endpoint whose body is not a JSON object gets 400
C<invalid_json>.

=head1 Tailgate::Conn

Returned by C<< $t->http_open >> and C<< $t->raw_connect >>; the socket is
non-blocking and every read and write is bounded in time.

=over

=item C<< $c->write_bytes($bytes, $timeout) >>

Writes what the peer takes within C<$timeout> (5 s); returns how many
bytes that was.

=item C<< $c->read_until(qr/.../, $timeout) >>, C<< $c->read_all($timeout) >>

Reads until what arrived matches (false on timeout or EOF first), or until
the peer closes (false on timeout).

=item C<< $c->read_response($timeout) >>

The next whole response of a keep-alive connection (bodies with
Content-Length): C<(status, its bytes)>. Dies when the connection closes or
C<$timeout> (10 s) passes first.

=item C<< $c->raw >>, C<< $c->eof >>, C<< $c->status >>, C<< $c->close >>

Everything received (headers and chunk framing included), whether the peer
closed, the status of the first response, and closing it.

=back

=cut
