#!/usr/bin/perl

# Key changes without a reload: bin/tailgate-key adds, revokes and expires
# keys in the file, and every worker picks the change up within a second
# or two, with no nginx -s reload and no failed request from a key that
# stays valid.  A version of the file that is torn, invalid, huge, empty or
# gone never replaces the last good table; each worker logs it once, with
# the file and the line.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Time::HiRes qw(time sleep);
use Tailgate::Gateway;

my $t = Tailgate::Gateway->new->skip_unless_built;

my $WORKERS = 2;
my $TOOL = "$FindBin::Bin/../bin/tailgate-key";

$t->start_gateway(
    workers => $WORKERS,
    http => q{ log_format who '$pid|$tailgate_client|$status|$http_x_probe'; },
    server => 'access_log %%DIR%%/who.log who;');

my $file = $t->dir . '/keys';
my $master = $t->nginx_pid;

# runs tailgate-key; its output (a new key) without the note on stderr
sub tool {
    my ($args) = @_;
    my $out = `$^X $TOOL $args 2>>@{[ $t->dir ]}/tool.stderr`;
    is($? >> 8, 0, "tailgate-key $args") or diag($t->read_file('tool.stderr'));
    chomp $out;
    return $out;
}

sub status_of {
    my ($key, $probe) = @_;
    return $t->chat('qwen', key => $key,
                    headers => { 'X-Probe' => $probe // '-' })->{status};
}

# bounded: up to 20 s for every worker to see a change.  One answer is not
# enough: the workers' timers are not in step, and a worker still reading
# a large file answers from its old table; so each worker's last answer to
# this probe (its pid in who.log) must be the one wanted.  Returns the
# time it took, or 0, and what each worker answered last.
my $probes = 0;

sub seen_everywhere {
    my ($key, $want) = @_;
    my $probe = "p$$-" . ++$probes;
    my @pids = $t->nginx_worker_pids;
    my %last;
    my $ok = $t->wait_for(sub {
        status_of($key, $probe);
        %last = ();
        for (split /\n/, $t->read_file('who.log')) {
            $last{$1} = $2 if /^(\d+)\|[^|]*\|(\d+)\|\Q$probe\E$/;
        }
        @pids == grep { ($last{$_} // 0) == $want } @pids
    }, timeout => 20, interval => 0.05);
    return ($ok && $ok > 0 ? $ok : 0, \%last);
}

sub becomes {
    my ($key, $want, $name) = @_;
    my ($ok, $last) = seen_everywhere($key, $want);
    ok($ok, $name) or diag(explain($last));
}

# 30 requests on new connections, spread over the workers: all $want
sub all_are {
    my ($key, $want, $name) = @_;
    my @got = map { status_of($key) } 1 .. 30;
    is_deeply([ grep { $_ != $want } @got ], [], $name);
}

sub log_count {
    my ($re) = @_;
    return scalar(() = $t->error_log =~ /$re/g);
}

# waits until every worker logged $re, then two more checks: no repeat
sub logged_once_per_worker {
    my ($re, $name) = @_;
    my $ok = $t->wait_for(sub { log_count($re) >= $WORKERS }, timeout => 10,
                          interval => 0.1);
    ok($ok && $ok > 0, "$name: logged") or diag($t->error_log);
    sleep 2.5;
    is(log_count($re), $WORKERS, "$name: once by each worker");
}

sub replace_file {
    my ($text) = @_;
    open my $fh, '>', "$file.new" or die "$file.new: $!";
    print $fh $text;
    close $fh;
    rename "$file.new", $file or die "rename: $!";
}

my $bob;

subtest 'add, then revoke, under load, without a reload' => sub {
    my $flag = $t->dir . '/changes-done';
    my @out = $t->parallel(5, sub {
        my ($i) = @_;

        if ($i == 0) {
            # the operator
            my $k = `$^X $TOOL add -f $file -c bob 2>/dev/null`;
            chomp $k;
            my ($seen) = seen_everywhere($k, 200);
            my @both = map { status_of($k) } 1 .. 20;
            system("$^X $TOOL revoke -f $file -c bob >/dev/null 2>&1");
            my ($gone) = seen_everywhere($k, 401);
            my @after = map { status_of($k) } 1 .. 20;
            open my $fh, '>', $flag; close $fh;
            return { key => $k, seen => $seen, both => \@both,
                     gone => $gone, after => \@after };
        }

        # clients with alice's key, which stays valid throughout
        my (%status, $n);
        for ($n = 0; $n < 3000 && !-e $flag; $n++) {
            $status{ status_of($t->key) }++;
        }
        return \%status;
    }, timeout => 60);

    my $op = shift @out;
    ok($op->{key} =~ /\S/, 'tailgate-key printed a key');
    ok($op->{seen} && $op->{seen} > 0, 'the added key works, no reload');
    is_deeply([ grep { $_ != 200 } @{ $op->{both} } ], [],
              'in every worker (20 new connections)');
    ok($op->{gone} && $op->{gone} > 0, 'the revoked key is refused');
    is_deeply([ grep { $_ != 401 } @{ $op->{after} } ], [],
              'in every worker');

    my %all;
    for my $c (@out) { $all{$_} += $c->{$_} for keys %$c }
    ok(($all{200} // 0) > 0, "alice's requests ran meanwhile: "
                             . join(', ', map { "$_ x$all{$_}" } sort keys %all));
    is_deeply([ grep { $_ != 200 } keys %all ], [],
              'and not one of them failed');

    is($t->nginx_pid, $master, 'the same nginx, never reloaded');
    unlike($t->error_log, qr/reconfiguring|signal 1 \(SIGHUP\)/,
           'no reload in the log');
};

subtest 'every worker served the new key' => sub {
    my $k = tool("add -f $file -c carol");
    becomes($k, 200, 'carol is in');
    all_are($k, 200, 'carol works everywhere');

    my @pids = $t->nginx_worker_pids;
    my $who = '';
    $t->wait_for(sub { $who = $t->read_file('who.log');
                       my %p = map { $_ => 1 } $who =~ /^(\d+)\|carol\|200\|/mg;
                       keys %p >= $WORKERS }, timeout => 5);
    my %p = map { $_ => 1 } $who =~ /^(\d+)\|carol\|200\|/mg;
    is(scalar(keys %p), $WORKERS, "served by each of the $WORKERS workers")
        or diag("workers @pids; log:\n$who");
};

subtest 'tailgate-key expire takes effect' => sub {
    my $k = tool("add -f $file -c dave");
    becomes($k, 200, 'dave is in');
    tool("expire -f $file -c dave");
    my $ok = $t->wait_for(sub {
        my $res = $t->chat('qwen', key => $k);
        $res->{status} == 401
            && (($t->error($res) // {})->{code} // '') eq 'expired_api_key'
    }, timeout => 10, interval => 0.1);
    ok($ok && $ok > 0, 'dave: 401 expired_api_key');
    all_are($k, 401, 'in every worker');
    like($t->read_file($file), qr/^\S+ carol$/m, "carol's line is untouched");
};

# bob is a key in the good table; each bad version below lacks him, so a
# bad version that replaced the table would show as bob refused

$bob = $t->new_key;
require Digest::SHA;
my $good = $t->read_file($file)
         . Digest::SHA::sha256_hex($bob) . " bob tenant=acme\n";
replace_file($good);
becomes($bob, 200, 'bob is in the good table');

my $alice_line = (grep { / alice$/ } split /\n/, $good)[0];

my @bad = (
    [ 'a torn file (half a line, no end)',
      "$alice_line\n" . substr(Digest::SHA::sha256_hex('x'), 0, 40),
      qr/key file "\Q$file\E", line 2: the last line has no end of line/ ],
    [ 'an invalid line',
      "# keys\n$alice_line\nnot-a-digest someone\n",
      qr/key file "\Q$file\E", line 3: expected the SHA-256/ ],
    [ 'a bad attribute',
      "$alice_line tenant=a/b\n",
      qr/key file "\Q$file\E", line 1: expected tenant=/ ],
    [ 'a duplicate key',
      "$alice_line\n$alice_line\n",
      qr/key file "\Q$file\E", line 2: the same key digest appears twice/ ],
    [ 'an invalid line far down, read steps after the first',
      "$alice_line\n" . join('', map { Digest::SHA::sha256_hex("filler $_")
                                       . " filler$_\n" } 1 .. 10_000)
      . "not-a-digest someone\n",
      qr/key file "\Q$file\E", line 10002: expected the SHA-256/ ],
    [ 'a huge file',
      "$alice_line\n" . ("#" . ('x' x 1023) . "\n") x (16 * 1024 + 1),
      qr/key file "\Q$file\E" is larger than the 16777216 bytes a worker reads again/ ],
    [ 'an empty file', '', qr/key file "\Q$file\E" is empty/ ],
    [ 'the file removed', undef, qr/key file "\Q$file\E" cannot be read/ ],
);

for my $case (@bad) {
    my ($name, $text, $re) = @$case;

    subtest $name => sub {
        $t->allow_log($re);
        if (defined $text) { replace_file($text) } else { unlink $file }

        logged_once_per_worker($re, $name);
        all_are($bob, 200, 'the last good table stays: bob still works');
        all_are($t->key, 200, 'and alice');

        replace_file($good);
    };
}

# 150k keys (11 MB): a worker that read and parsed it in one go held
# every request it had for a few hundred ms; it reads it in steps
subtest 'a large file is read in steps, requests answered meanwhile' => sub {
    my $n = 150_000;
    my $big = $good . join('', map { Digest::SHA::sha256_hex("many $_")
                                     . " many$_\n" } 1 .. $n);
    my $want = ($good =~ tr/\n//) - ($good =~ tr/#//) + $n;
    my $flag = $t->dir . '/big-read';

    my @out = $t->parallel(3, sub {
        my ($i) = @_;

        if ($i == 0) {
            replace_file($big);
            my $ok = $t->wait_for(sub {
                log_count(qr/read again: $want keys/) >= $WORKERS
            }, timeout => 20, interval => 0.1);
            open my $fh, '>', $flag; close $fh;
            return { read => $ok };
        }

        my (%status, $k);
        for ($k = 0; $k < 5000 && !-e $flag; $k++) {
            $status{ status_of($i == 1 ? $t->key : $bob) }++;
        }
        return \%status;
    }, timeout => 60);

    my $op = shift @out;
    ok($op->{read} && $op->{read} > 0, 'every worker read the new file');

    my @steps = $t->error_log =~ /read again: (\d+) keys, in (\d+) steps/g;
    my %last;
    while (my ($keys, $steps) = splice(@steps, 0, 2)) {
        $last{$keys} = $steps;
    }
    ok(exists $last{$want}, "$want keys read") or diag(explain(\%last));
    cmp_ok($last{$want} // 0, '>', 11 + $n / 2048,
           'in steps: 1 MB reads, 2048 lines each');

    my %all;
    for my $c (@out) { $all{$_} += $c->{$_} for keys %$c }
    ok(($all{200} // 0) > 0, 'requests ran meanwhile: '
                             . join(', ', map { "$_ x$all{$_}" } sort keys %all));
    is_deeply([ grep { $_ != 200 } keys %all ], [], 'and not one failed');

    my $k = $t->new_key;
    replace_file($big . Digest::SHA::sha256_hex($k) . " eve\n");
    becomes($k, 200, 'a key added to the large file works');
    replace_file($good);
    becomes($k, 401, 'and is gone with the small one');
};

subtest 'after all that, a good version is read again' => sub {
    (my $without_bob = $good) =~ s/^\S+ bob .*\n//m;
    replace_file($without_bob);
    becomes($bob, 401, 'bob revoked');
    all_are($bob, 401, 'in every worker');
    all_are($t->key, 200, 'alice still in');
    like($t->error_log, qr/key file "\Q$file\E" read again: \d+ keys/,
         'the change is logged at notice');
};

$t->done_testing;
