#!/usr/bin/perl
#
# policyd's command line and policy file from the outside: "policyd -t",
# the listening socket (mode, group, stale and live sockets, files that are
# not sockets), SIGHUP reloads good and bad, SIGTERM.
#
# Needs build/policyd (make -C policyd all) or $TAILGATE_POLICYD (the
# top-level Makefile exports it: build/ or build-asan/).  TAILGATE_KEEP=1
# keeps the test's directory with the policies and policyd's logs.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use IO::Socket::UNIX;
use Socket qw(SOCK_STREAM);
use Test::More;
use Time::HiRes qw(sleep time);

use Tailgate::Test;
use Tailgate::Proto;

my $t = Tailgate::Test->new->skip_unless_built('policyd');
my $dir = $t->dir;

# the api keys of the test policy; the missing ones must really be missing
$ENV{TG_TEST_DEEPSEEK_KEY} = 'sk-test-deepseek';
delete @ENV{qw(TG_TEST_MISSING_A TG_TEST_MISSING_B)};

my $GOOD = <<'EOF';
// a test policy
{
  "log_level": "info",
  "providers": {
    "local": { "upstream": "tg_local", "zone": "local",
               "endpoints": ["chat", "embeddings"] },
    "deepseek": { "upstream": "tg_deepseek", "scheme": "https",
                  "host": "api.deepseek.com", "base_path": "",
                  "api_key": "${TG_TEST_DEEPSEEK_KEY}", "zone": "external",
                  "endpoints": ["chat"] }   /* no models list: any */
  },
  "routes": {
    "qwen":  { "steps": [ { "provider": "local", "model": "qwen2.5" } ] },
    "smart": { "steps": [ { "provider": "deepseek", "model": "deepseek-chat" },
                          { "provider": "local", "model": "qwen2.5" } ] }
  }
}
EOF

# the same with one more route
(my $GOOD2 = $GOOD) =~ s|"routes": \{|"routes": {
    "fresh": { "steps": [ { "provider": "local", "model": "fresh-model" } ] },|;

my $BAD = <<'EOF';
{
  "listen": { "path": "/tmp/never.sock" },
  "providers": {
    "a": { "upstream": "tg_a", "zone": "external", "endpoints": ["chat"],
           "api_key": "${TG_TEST_MISSING_A}" },
    "b": { "upstream": "tg_b", "zone": "outside", "endpoints": ["chat"],
           "api_key": "${TG_TEST_MISSING_B}", "zonee": "local" }
  },
  "routes": {
    "smart": { "steps": [ { "provider": "a", "model": "m" },
                          { "provider": "openai", "model": "gpt-4o" } ] }
  }
}
EOF


# policyd -t

{
    my $file = $t->write_file('good.json', $GOOD);
    my ($rc, $out, $err) = run_t('-t', '-c', $file, '-s', "$dir/x.sock");
    is($rc, 0, '-t on a good file exits 0');
    is($out, "$file: ok: 2 providers, 2 routes\n", '-t prints a summary');
    is($err, '', '-t on a good file prints no error');

    # without -s the file must say where to listen
    ($rc, $out, $err) = run_t('-t', '-c', $file);
    is($rc, 1, '-t without listen and without -s exits 1');
    is($err, "$file: listen: missing required key (or give -s PATH)\n",
       '-t names the missing listen');
}

{
    my $file = $t->write_file('bad.json', $BAD);
    my ($rc, $out, $err) = run_t('-t', '-c', $file);
    is($rc, 1, '-t on a bad file exits 1');
    is($out, '', '-t on a bad file prints nothing on stdout');

    my @lines = split /\n/, $err;
    for my $want (
        "$file: providers.a.api_key: environment variable TG_TEST_MISSING_A "
            . "is not set",
        "$file: providers.b.api_key: environment variable TG_TEST_MISSING_B "
            . "is not set",
        "$file: providers.b.zone: expected one of \"local\", \"private\", "
            . "\"external\"",
        "$file: providers.b.zonee: unknown key",
        "$file: routes.smart.steps[1].provider: no provider named \"openai\"",
    ) {
        ok((grep { $_ eq $want } @lines), "-t prints: $want")
            or diag("got:\n$err");
    }
    is(scalar(@lines), 5, '-t prints one line per error and nothing else')
        or diag($err);
}

{
    my ($rc, $out, $err) = run_t('-t', '-c', "$dir/nonexistent.json");
    is($rc, 1, '-t on a missing file exits 1');
    is($err, "$dir/nonexistent.json: cannot open: No such file or "
             . "directory\n", 'and says why');

    ($rc, $out, $err) = run_t('-t');
    is($rc, 1, 'no -c exits 1');
    like($err, qr/-c FILE is required/, 'and says so');

    ($rc, $out, $err) = run_t('-c', "$dir/good.json", '-x');
    is($rc, 1, 'an unknown option exits 1');
}

{
    # not -t: a bad policy stops the start with every error logged
    my $file = "$dir/bad.json";
    my ($rc, $out, $err) = run_t('-c', $file, '-s', "$dir/bad.sock");
    is($rc, 1, 'starting with a bad policy exits 1');
    like($err, qr{^\d{4}/\d\d/\d\d\ \d\d:\d\d:\d\d\ \[error\]\ policyd\[\d+\]:\ 
                  \Q$file: providers.b.zonee: unknown key\E$}mx,
         'the errors are logged in the nginx format');
    ok(!-e "$dir/bad.sock", 'no socket was created');
}


# the socket

my $good = "$dir/good.json";
my $sock = "$dir/p.sock";
my $log = "$dir/p.log";

my $pid = start_policyd('policyd', $log, '-c', $good, '-s', $sock);
ok($t->wait_socket($sock), 'policyd listens') or diag($t->read_file($log));

ok(-S $sock, 'the socket is a socket');
is((stat $sock)[2] & 07777, 0660, 'with mode 0660 by default');
like($t->read_file($log), qr{^\d{4}/\d\d/\d\d\ \d\d:\d\d:\d\d\ \[info\]\ policyd\[$pid\]:\ 
                      policyd/0\.1\ listening\ on\ \Q$sock\E}mx,
     'the start is logged in the nginx format');

is(decide($sock, 'smart'), 'deepseek', 'it decides');
is(decide($sock, 'fresh'), 404, 'the route added later is not there yet');

{
    # a second policyd on the live socket refuses to start
    my $log2 = "$dir/second.log";
    my $pid2 = start_policyd('second', $log2, '-c', $good, '-s', $sock);
    is($t->wait_exit('second'), 1, 'a second policyd on a live socket exits 1');
    like($t->read_file($log2), qr/another process \(policyd\?\) is listening on \Q$sock\E/,
         'and says why');
    is(decide($sock, 'smart'), 'deepseek', 'the first one still answers');
}

# SIGHUP with a good, changed file

$t->write_file('good.json', $GOOD2);
kill 'HUP', $pid;
ok($t->wait_log($log, qr/policy reloaded: 2 providers, 3 routes/),
   'SIGHUP reloads');
is(decide($sock, 'fresh'), 'local', 'the new route answers after SIGHUP');
is(decide($sock, 'smart'), 'deepseek', 'the old ones too');

# SIGHUP with a broken file

$t->write_file('good.json', $GOOD2 =~ s/"provider": "local", "model": "fresh-model"/"provider": "nope", "model": "fresh-model"/r);
kill 'HUP', $pid;
ok($t->wait_log($log, qr/reload failed, keeping the old policy; 1 error:/),
   'a broken file is refused');
ok($t->wait_log($log, qr/\[error\] policyd\[\d+\]: \Q$good: routes.fresh.steps[0].provider: no provider named "nope"\E/),
   'the log names the error with its key path');
is(decide($sock, 'fresh'), 'local', 'the old policy still answers');

$t->write_file('good.json', "{ not json");
kill 'HUP', $pid;
ok($t->wait_log($log, qr/\Q$good: line 1, column \E\d+: invalid JSON/),
   'a file that is not JSON is refused too');
is(decide($sock, 'smart'), 'deepseek', 'and the old policy still answers');
ok(kill(0, $pid), 'policyd is still running');

# SIGTERM

kill 'TERM', $pid;
is($t->wait_exit('policyd'), 0, 'SIGTERM exits 0');
ok(!-e $sock, 'and removes the socket');
like($t->read_file($log), qr/exiting on SIGTERM/, 'and says so');

$t->write_file('good.json', $GOOD);

{
    # a stale socket left by a dead process is replaced
    my $stale = "$dir/stale.sock";
    my $l = IO::Socket::UNIX->new(Local => $stale, Listen => 1,
                                  Type => SOCK_STREAM) or die "bind: $!";
    close($l);
    ok(-S $stale, 'a stale socket file is there');

    my $slog = "$dir/stale.log";
    my $spid = start_policyd('stale', $slog, '-c', $good, '-s', $stale);
    ok($t->wait_socket($stale), 'policyd starts on a stale socket')
        or diag($t->read_file($slog));
    like($t->read_file($slog), qr/removing stale socket \Q$stale\E/,
         'and says it removed it');
    is(decide($stale, 'qwen'), 'local', 'and answers');

    kill 'INT', $spid;
    is($t->wait_exit('stale'), 0, 'SIGINT exits 0');
    ok(!-e $stale, 'and removes the socket');
}

{
    # a file that is not a socket is left alone
    my $path = $t->write_file('not-a-socket', "precious\n");
    my $nlog = "$dir/notsock.log";
    my $npid = start_policyd('notsock', $nlog, '-c', $good, '-s', $path);
    is($t->wait_exit('notsock'), 1, 'a path that is not a socket: exit 1');
    like($t->read_file($nlog), qr/\Q$path\E exists and is not a socket; not touching it/,
         'and says why');
    is($t->read_file($path), "precious\n", 'the file is untouched');
}

{
    # mode and group from the file
    my $gname = getgrgid($) + 0) // 'root';
    my $gid = (getgrnam($gname))[2];
    my $msock = "$dir/m.sock";
    my $mfile = $t->write_file('mode.json', $GOOD =~ s|^\{\n|{
  "listen": { "path": "$msock", "mode": "0600", "group": "$gname" },
|mr);
    my $mlog = "$dir/m.log";
    my $mpid = start_policyd('mode', $mlog, '-c', $mfile);
    ok($t->wait_socket($msock), 'policyd listens on listen.path')
        or diag($t->read_file($mlog));
    is((stat $msock)[2] & 07777, 0600, 'with the configured mode 0600');
    is((stat $msock)[5], $gid, "and group $gname");

    # a reload that changes "listen" keeps the socket and warns
    $t->write_file('mode.json', $t->read_file($mfile) =~ s/"0600"/"0666"/r);
    kill 'HUP', $mpid;
    ok($t->wait_log($mlog, qr/\[warn\] .*"listen" changed; it takes a restart/),
       'changing listen on reload warns');
    is((stat $msock)[2] & 07777, 0600, 'and keeps the socket as it was');

    kill 'TERM', $mpid;
    is($t->wait_exit('mode'), 0, 'SIGTERM exits 0');
}

# the example policy operators copy is a good one

{
    local $ENV{DEEPSEEK_API_KEY} = 'sk-example';
    local $ENV{OPENROUTER_API_KEY} = 'sk-example';
    my ($rc, $out, $err) = run_t('-t', '-c',
        $t->private_copy("$FindBin::Bin/../conf/policy.example.json"));

    if (!getgrnam('www-data')) {
        like($err, qr/listen\.group: no group named "www-data"/,
             'conf/policy.example.json: only the group is missing here');
    } else {
        is($rc, 0, 'conf/policy.example.json passes -t') or diag($err);
        like($out, qr/ok: 3 providers, 9 routes/, 'all of it');
    }
}

for my $l (glob("$dir/*.log")) {
    unlike($t->read_file($l), qr/\[alert\]|\[crit\]|AddressSanitizer|runtime error:|LeakSanitizer/,
           "no alert or sanitizer report in " . ($l =~ s{.*/}{}r));
}

done_testing();


# helpers

# starts policyd as $name with its output appended to $log; returns the pid
sub start_policyd {
    my ($name, $log, @args) = @_;
    return $t->spawn($name, [ $t->policyd_binary, @args ], log => $log);
}

# runs policyd to completion (bounded); returns exit code, stdout, stderr
sub run_t { $t->policyd_cmd(@_, { stderr => 'apart' }) }

# the chosen provider for route $model, or the status when refused
sub decide {
    my ($path, $model) = @_;

    my $s = eval { tg_connect($path) } or return "connect: $@";

    tg_send($s, tg_decide(1, $model)) or return 'send failed';

    my $f = tg_read_frame($s, 5)
        or return "no answer: $Tailgate::Proto::ERROR";

    return "frame type $f->{type}" unless $f->{type} == TG_MSG_DECISION;

    my $status = tg_field($f, TG_F_STATUS);
    return $status == 200 ? tg_field($f, TG_F_PROVIDER) : $status;
}
