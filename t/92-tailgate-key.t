#!/usr/bin/perl

# bin/tailgate-key: the key it prints, the record it writes (and never the
# key), listing, revoking, and every input it refuses without touching the
# file.  Needs only perl; the last subtest also runs `nginx -t` when nginx
# and the module are built.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use File::Temp qw(tempdir);
use Digest::SHA qw(sha256_hex);
use POSIX ();

my $SCRIPT = "$FindBin::Bin/../bin/tailgate-key";
my $dir = tempdir('tailgate-key-XXXXXXXX', TMPDIR => 1, CLEANUP => 1);
my $KEY_RE = qr/tg-[A-Za-z0-9_-]{43}/;
my $n = 0;

umask 022;

# runs tailgate-key; returns { rc, out, err }
sub tk {
    my (@args) = @_;

    my ($out, $err) = map { "$dir/run.$$.$_" } qw(out err);
    my $pid = fork // die "fork: $!";

    if ($pid == 0) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>', $out;
        open STDERR, '>', $err;
        { no warnings 'exec'; exec $^X, $SCRIPT, @args }
        POSIX::_exit(127);
    }

    waitpid $pid, 0;

    return { rc => $? >> 8, sig => $? & 127, out => slurp($out), err => slurp($err) };
}

sub slurp {
    open my $fh, '<:raw', $_[0] or return undef;
    local $/;
    return scalar(<$fh>) // '';
}

sub spew {
    my ($path, $bytes, $mode) = @_;

    open my $fh, '>:raw', $path or die "$path: $!";
    print {$fh} $bytes;
    close $fh;
    chmod $mode // 0600, $path;
    return $path;
}

sub mode { (stat $_[0])[2] & 07777 }

sub newfile { "$dir/keys" . ++$n }

sub digest_of { sha256_hex($_[0]) }


subtest 'help and usage' => sub {
    my $r = tk('--help');
    is($r->{rc}, 0, '--help: exit 0');
    like($r->{out}, qr/tailgate-key add .*tailgate-key list .*tailgate-key revoke.*tailgate-key expire/s,
         '--help: the four commands');
    like($r->{out}, qr/expires=YYYY-MM-DDTHH:MM:SSZ/, '--help: the file format');

    is(tk('add', '--help')->{rc}, 0, 'add --help: exit 0');

    $r = tk();
    is($r->{rc}, 2, 'no command: exit 2');
    like($r->{err}, qr/^usage:/m, 'no command: usage');

    $r = tk('frobnicate');
    is($r->{rc}, 2, 'unknown command: exit 2');
    like($r->{err}, qr/unknown command 'frobnicate'/, 'unknown command: named');
};


my $file = newfile();
my ($key1, $key2);

subtest 'add: prints the key once, stores its digest' => sub {
    my $r = tk('add', '-f', $file, '-c', 'alice');

    is($r->{rc}, 0, 'exit 0');
    like($r->{out}, qr/\A$KEY_RE\n\z/, 'stdout is exactly one key line');
    ($key1) = $r->{out} =~ /\A(\S+)/;

    like($r->{err}, qr/\A[^\n]*the key is shown once; \Q$file\E holds only its SHA-256\n\z/,
         'one note on stderr');
    unlike($r->{err}, qr/\Q$key1\E/, 'the note has no key');

    is(slurp($file), digest_of($key1) . " alice\n", 'the file: digest and client, nothing else');
    unlike(slurp($file), qr/\Q$key1\E|\Q@{[substr $key1, 3]}\E/, 'the file does not hold the key');
    is(mode($file), 0600, 'created with mode 0600 (umask 022)');

    $r = tk('add', '-f', $file, '-c', 'bob@example.com', '-t', 'acme',
            '--tags', 'private,beta', '--routes', 'smart,gpt-4o', '--expires', '2031-02-03');
    is($r->{rc}, 0, 'second add: exit 0') or diag($r->{err});
    ($key2) = $r->{out} =~ /\A($KEY_RE)\n\z/;
    ok($key2, 'second add: a key line');
    isnt($key2, $key1, 'a different key');

    is(slurp($file),
       digest_of($key1) . " alice\n"
       . digest_of($key2) . " bob\@example.com tenant=acme tags=private,beta"
       . " routes=smart,gpt-4o expires=2031-02-03T00:00:00Z\n",
       'appended, attributes in order, the date normalized');
    is(mode($file), 0600, 'mode still 0600');
};

subtest 'add: the other ways to give attributes' => sub {
    my $f = newfile();
    my $r = tk('add', '-f', $f, '--client', 'svc:batch.1', '--tenant', 't-1',
               '--tag', 'a', '--tags', 'b,c', '--tag', 'd:e',
               '--route', "caf\xc3\xa9", '--routes', 'x(1),y=2',
               '--limit', 'gold:1', '--expires', '2030-06-30T23:59:59Z');
    is($r->{rc}, 0, 'exit 0') or diag($r->{err});
    my ($key) = $r->{out} =~ /($KEY_RE)/;

    is(slurp($f), digest_of($key) . " svc:batch.1 tenant=t-1 tags=b,c,a,d:e"
                  . " routes=x(1),y=2,caf\xc3\xa9 limit=gold:1"
                  . " expires=2030-06-30T23:59:59Z\n",
       '--tag/--route add to --tags/--routes; UTF-8 route names are fine');

    $r = tk('add', '-f', $f, '-c', 'ops', '--admin');
    is($r->{rc}, 0, '--admin: exit 0') or diag($r->{err});
    like(slurp($f), qr/^[0-9a-f]{64} ops role=admin\n\z/m,
         '--admin: role=admin');
    like(tk('list', '-f', $f)->{out}, qr/^ops role=admin digest=/m,
         'list shows the role');

    my %limits = (
        client => ['-c', 'c' x 128],
        tenant => ['-c', 'x', '-t', 't' x 64],
        '16 tags of 64' => ['-c', 'x', '--tags', join(',', map { sprintf('%02d', $_) x 32 } 1 .. 16)],
        '256 routes of 256 bytes' => ['-c', 'x', '--routes', join(',', map { sprintf('%03d', $_) x 85 . 'r' } 1 .. 256)],
        'leap day' => ['-c', 'x', '--expires', '2028-02-29T12:00:00Z'],
    );

    for my $name (sort keys %limits) {
        my $r = tk('add', '-f', $f, @{ $limits{$name} });
        is($r->{rc}, 0, "at the limit: $name") or diag($r->{err});
    }
};

subtest 'add: an existing file keeps its mode; a lax one is refused' => sub {
    my $f = spew(newfile(), "# keys\n", 0640);
    is(tk('add', '-f', $f, '-c', 'alice')->{rc}, 0, '0640 file: exit 0');
    is(mode($f), 0640, 'still 0640');

    for my $mode (0660, 0620, 0602, 0666) {
        my $before = "# keys\n" . digest_of('x') . " alice\n";
        my $f = spew(newfile(), $before, $mode);
        my $r = tk('add', '-f', $f, '-c', 'bob');

        is($r->{rc}, 2, sprintf('mode %04o: exit 2', $mode));
        is($r->{out}, '', 'no key printed');
        like($r->{err}, qr/writable by its group or by others/, 'says why');
        is(slurp($f), $before, 'the file is byte-identical');
        is(mode($f), $mode, 'and its mode unchanged');
    }

    my $r = tk('add', '-f', $dir, '-c', 'bob');
    is($r->{rc}, 2, 'a directory: exit 2');
};

subtest 'add: a last line without a newline' => sub {
    my $f = spew(newfile(), '# no newline at the end');
    my $r = tk('add', '-f', $f, '-c', 'alice');
    my ($key) = $r->{out} =~ /($KEY_RE)/;

    is(slurp($f), "# no newline at the end\n" . digest_of($key) . " alice\n",
       'a newline is added before the record');
};

subtest 'add: umask does not loosen or tighten a new file' => sub {
    for my $umask (0, 077, 0277) {
        my $f = newfile();
        my $old = umask $umask;
        my $r = tk('add', '-f', $f, '-c', 'alice');
        umask $old;

        is($r->{rc}, 0, sprintf('umask %04o: exit 0', $umask));
        is(mode($f), 0600, sprintf('umask %04o: mode 0600', $umask));
    }
};


subtest 'add: bad input exits 2 and writes nothing' => sub {
    my $before = slurp($file);
    my $missing = "$dir/never-created";

    my @cases = (
        ['no -c'                    => []],
        ['no -f'                    => ['-c', 'x'], 'nofile'],
        ['empty -f'                 => ['-f', '', '-c', 'x'], 'nofile'],
        ['empty client'             => ['-c', '']],
        ['client with a space'      => ['-c', 'al ice']],
        ['client with !'            => ['-c', 'alice!']],
        ['client with a slash'      => ['-c', 'a/b']],
        ['client with a newline'    => ['-c', "alice\nroot"]],
        ['client of 129 chars'      => ['-c', 'c' x 129]],
        ['non-ASCII client'         => ['-c', "j\xc3\xb6rg"]],
        ['empty tenant'             => ['-c', 'x', '-t', '']],
        ['tenant with a comma'      => ['-c', 'x', '-t', 'a,b']],
        ['tenant of 65 chars'       => ['-c', 'x', '-t', 't' x 65]],
        ['empty limit'              => ['-c', 'x', '--limit', '']],
        ['limit with a slash'       => ['-c', 'x', '--limit', 'a/b']],
        ['limit of 65 chars'        => ['-c', 'x', '--limit', 'l' x 65]],
        ['17 tags'                  => ['-c', 'x', '--tags', join(',', 'a' .. 'q')]],
        ['17 tags over options'     => ['-c', 'x', '--tags', join(',', 'a' .. 'p'), '--tag', 'q']],
        ['tag with a slash'         => ['-c', 'x', '--tags', 'a/b']],
        ['tag with @'               => ['-c', 'x', '--tags', 'a@b']],
        ['tag of 65 chars'          => ['-c', 'x', '--tags', 't' x 65]],
        ['empty tag in a list'      => ['-c', 'x', '--tags', 'a,,b']],
        ['trailing comma in tags'   => ['-c', 'x', '--tags', 'a,']],
        ['empty --tags'             => ['-c', 'x', '--tags', '']],
        ['duplicate tag'            => ['-c', 'x', '--tags', 'a,b', '--tag', 'a']],
        ['comma in a route'         => ['-c', 'x', '--route', 'gpt,4']],
        ['space in a route'         => ['-c', 'x', '--routes', 'smart model']],
        ['tab in a route'           => ['-c', 'x', '--routes', "a\tb"]],
        ['newline in a route'       => ['-c', 'x', '--routes', "a\nb"]],
        ['DEL in a route'           => ['-c', 'x', '--routes', "a\x7fb"]],
        ['C1 control in a route'    => ['-c', 'x', '--routes', "a\xc2\x85b"]],
        ['invalid UTF-8 route'      => ['-c', 'x', '--routes', "caf\xe9"]],
        ['empty route in a list'    => ['-c', 'x', '--routes', 'a,,b']],
        ['leading comma in routes'  => ['-c', 'x', '--routes', ',a']],
        ['route of 257 bytes'       => ['-c', 'x', '--routes', 'r' x 257]],
        ['257 routes'               => ['-c', 'x', '--routes', join(',', 1 .. 257)]],
        ['duplicate route'          => ['-c', 'x', '--routes', 'a,b,a']],
        ['month 13'                 => ['-c', 'x', '--expires', '2030-13-01']],
        ['February 30'              => ['-c', 'x', '--expires', '2030-02-30']],
        ['February 29, 2027'        => ['-c', 'x', '--expires', '2027-02-29']],
        ['February 29, 2100'        => ['-c', 'x', '--expires', '2100-02-29']],
        ['day 0'                    => ['-c', 'x', '--expires', '2030-01-00']],
        ['hour 24'                  => ['-c', 'x', '--expires', '2030-01-01T24:00:00Z']],
        ['second 60'                => ['-c', 'x', '--expires', '2030-01-01T23:59:60Z']],
        ['no Z'                     => ['-c', 'x', '--expires', '2030-01-01T00:00:00']],
        ['an offset'                => ['-c', 'x', '--expires', '2030-01-01T00:00:00+02:00']],
        ['fractional seconds'       => ['-c', 'x', '--expires', '2030-01-01T00:00:00.5Z']],
        ['lowercase t and z'        => ['-c', 'x', '--expires', '2030-01-01t00:00:00z']],
        ['single-digit month'       => ['-c', 'x', '--expires', '2030-1-01']],
        ['a word'                   => ['-c', 'x', '--expires', 'tomorrow']],
        ['epoch seconds'            => ['-c', 'x', '--expires', '1893456000']],
        ['year 1969'                => ['-c', 'x', '--expires', '1969-12-31']],
        ['the epoch (nginx: unset)' => ['-c', 'x', '--expires', '1970-01-01']],
        ['unknown option'           => ['-c', 'x', '--bogus']],
        ['option missing its value' => ['-c']],
        ['-c twice'                 => ['-c', 'x', '-c', 'y']],
        ['--expires twice'          => ['-c', 'x', '--expires', '2030-01-01', '--expires', '2031-01-01']],
        ['an extra argument'        => ['-c', 'x', 'extra']],
        ['abbreviated option'       => ['-c', 'x', '--ten', 'acme']],
    );

    for my $case (@cases) {
        my ($name, $args, $nofile) = @$case;
        my $target = $name eq 'no -c' ? $missing : $file;
        my @f = $nofile ? () : ('-f', $target);
        my $r = tk('add', @f, @$args);

        is($r->{rc}, 2, "$name: exit 2");
        is($r->{out}, '', "$name: nothing on stdout");
        like($r->{err}, qr/\Atailgate-key: add: \S.*\n/, "$name: says what is wrong")
            or diag($r->{err});
    }

    is(slurp($file), $before, 'the file is byte-identical after all that');
    ok(!-e $missing, 'and a missing file was not created');
};

subtest 'add: a past expiry is accepted with a warning' => sub {
    my $f = newfile();
    my $r = tk('add', '-f', $f, '-c', 'old', '--expires', '2020-01-01T00:00:00Z');

    is($r->{rc}, 0, 'exit 0');
    like($r->{out}, qr/\A$KEY_RE\n\z/, 'the key');
    like($r->{err}, qr/warning: the key expired already at 2020-01-01T00:00:00Z/, 'a warning');
};


subtest 'list' => sub {
    my $old = tk('add', '-f', $file, '-c', 'carol', '--expires', '2001-09-09T01:46:40Z');
    my ($key3) = $old->{out} =~ /($KEY_RE)/;

    my $r = tk('list', '-f', $file);
    is($r->{rc}, 0, 'exit 0') or diag($r->{err});
    is($r->{err}, '', 'nothing on stderr');

    my @d = map { digest_of($_) } $key1, $key2, $key3;
    is($r->{out},
       "alice digest=" . substr($d[0], 0, 12) . "\n"
       . "bob\@example.com tenant=acme tags=private,beta routes=smart,gpt-4o"
       . " expires=2031-02-03T00:00:00Z digest=" . substr($d[1], 0, 12) . "\n"
       . "carol expires=2001-09-09T01:46:40Z digest=" . substr($d[2], 0, 12)
       . " (expired)\n",
       'one line per record, the expired one flagged');

    for my $i (0 .. 2) {
        my $key = ($key1, $key2, $key3)[$i];
        unlike($r->{out}, qr/\Q$key\E|\Q@{[substr $key, 3, 12]}\E/, "no key $i");
        unlike($r->{out}, qr/\Q@{[substr $d[$i], 0, 13]}\E/, "no more than 12 digits of digest $i");
    }

    my $f = spew(newfile(), "# only comments\n\n   # and blanks\n");
    $r = tk('list', '-f', $f);
    is_deeply([$r->{rc}, $r->{out}], [0, ''], 'a file of comments: nothing, exit 0');

    $f = spew(newfile(), digest_of('a') . " alice\nnot-a-digest bob\n"
                         . digest_of('c') . " carol color=blue\n", 0644);
    $r = tk('list', '-f', $f);
    is($r->{rc}, 2, 'malformed lines: exit 2');
    like($r->{err}, qr/line 2: expected the SHA-256/, 'line 2 reported');
    like($r->{err}, qr/line 3: unknown attribute 'color=blue'/, 'line 3 reported');
    like($r->{out}, qr/\Aalice digest=\w{12}\ncarol digest=\w{12}\n\z/,
         'the records that parse are listed');

    # what nginx accepts, list accepts: the short date, repeated names, any
    # bytes above the space in a route
    $f = spew(newfile(), digest_of('a') . "\talice  expires=2030-01-02 tags=a,a"
                         . " routes=x,x,caf\xe9 tenant=t\r\n");
    $r = tk('list', '-f', $f);
    is($r->{rc}, 0, 'a hand-written record nginx accepts: exit 0') or diag($r->{err});
    is($r->{out}, "alice tenant=t tags=a,a routes=x,x,caf\xe9 expires=2030-01-02T00:00:00Z"
                  . " digest=" . substr(digest_of('a'), 0, 12) . "\n",
       'listed in the usual order, the date in the long form');

    $f = spew(newfile(), digest_of('a') . " alice expires=2030-02-31\n"
                         . digest_of('b') . " bob tags=a,,b\n"
                         . digest_of('c') . " carol tenant=a tenant=b\n");
    $r = tk('list', '-f', $f);
    is($r->{rc}, 2, 'bad attributes: exit 2');
    like($r->{err}, qr/line 1: the expiry '2030-02-31' is not a valid date/, 'February 31');
    like($r->{err}, qr/line 2: an empty tag/, 'an empty tag');
    like($r->{err}, qr/line 3: tenant given twice/, 'tenant twice');

    $r = tk('list', '-f', "$dir/nope");
    is($r->{rc}, 2, 'a missing file: exit 2');
    like($r->{err}, qr/does not exist/, 'says so');
};


subtest 'revoke by client' => sub {
    my $f = spew(newfile(), "# header comment\n", 0640);
    my @keys = map { (tk('add', '-f', $f, '-c', $_)->{out} =~ /($KEY_RE)/)[0] }
               qw(alice bob alice);
    spew($f, slurp($f) . "  # an indented comment\r\n", 0640);
    my $before = slurp($f);

    my $r = tk('revoke', '-f', $f, '-c', 'alice');
    is($r->{rc}, 0, 'exit 0') or diag($r->{err});
    is($r->{out}, "removed 2 records from $f\n", 'says how many');
    is(slurp($f), "# header comment\n" . digest_of($keys[1]) . " bob\n"
                  . "  # an indented comment\r\n",
       'both alice records gone; the rest byte for byte');
    is(mode($f), 0640, 'mode kept');
    opendir my $dh, $dir or die "$dir: $!";
    is_deeply([grep { /^\.keys/ } readdir $dh], [], 'no temp file left');
    closedir $dh;

    $before = slurp($f);
    $r = tk('revoke', '-f', $f, '-c', 'alice');
    is($r->{rc}, 1, 'again: nothing matched, exit 1');
    like($r->{err}, qr/no record is for client alice/, 'says so');
    is(slurp($f), $before, 'file unchanged');

    $r = tk('revoke', '-f', $f, '-c', 'bob');
    is($r->{out}, "removed 1 record from $f\n", 'the last record');
    is(slurp($f), "# header comment\n  # an indented comment\r\n", 'only comments left');
};

subtest 'revoke by digest prefix' => sub {
    my $f = newfile();
    my @keys = map { (tk('add', '-f', $f, '-c', $_)->{out} =~ /($KEY_RE)/)[0] }
               qw(alice bob carol);
    my @d = map { digest_of($_) } @keys;

    my $r = tk('revoke', '-f', $f, '-d', substr($d[1], 0, 8));
    is($r->{rc}, 0, '8 digits: exit 0') or diag($r->{err});
    is($r->{out}, "removed 1 record from $f\n", 'one removed');
    is(slurp($f), "$d[0] alice\n$d[2] carol\n", "bob's record gone");

    $r = tk('revoke', '-f', $f, '-d', uc $d[2]);
    is($r->{rc}, 0, 'the whole digest, upper case: exit 0');
    is(slurp($f), "$d[0] alice\n", "carol's record gone");

    # records whose digests share a prefix
    my $x = 'abcdef01' . ('0' x 56);
    my $y = 'abcdef01' . ('1' x 56);
    spew($f, "$x dave\n$y erin\n");
    my $before = slurp($f);

    for my $case (['abcdef01', 2, qr/matches 2 different keys/, 'an ambiguous prefix'],
                  ['abcdef0',  2, qr/not 8 to 64 hex digits/, '7 digits'],
                  ['abcdefgh', 2, qr/not 8 to 64 hex digits/, 'not hex'],
                  ['0' x 65,   2, qr/not 8 to 64 hex digits/, '65 digits'],
                  ['12345678', 1, qr/no record has a digest starting with 12345678/,
                   'no match']) {
        my ($prefix, $rc, $msg, $name) = @$case;
        my $r = tk('revoke', '-f', $f, '-d', $prefix);

        is($r->{rc}, $rc, "$name: exit $rc");
        like($r->{err}, $msg, "$name: says why");
        is(slurp($f), $before, "$name: file unchanged");
    }

    $r = tk('revoke', '-f', $f, '-d', 'abcdef011');
    is($r->{out}, "removed 1 record from $f\n", 'one digit more picks one');
    is(slurp($f), "$x dave\n", 'erin gone');

    # the same digest twice is the same key: both lines go
    spew($f, "$x dave\n$x dave\n");
    $r = tk('revoke', '-f', $f, '-d', 'abcdef01');
    is($r->{out}, "removed 2 records from $f\n", 'a repeated digest: both lines');
};

subtest 'expire: an expiry on existing records' => sub {
    my $f = spew(newfile(), "# header comment\n", 0640);
    my @keys = map { (tk('add', '-f', $f, '-c', $_, '-t', 'acme')->{out} =~ /($KEY_RE)/)[0] }
               qw(alice bob);

    my $r = tk('expire', '-f', $f, '-c', 'alice', '--at', '2031-02-03');
    is($r->{rc}, 0, 'exit 0') or diag($r->{err});
    is($r->{out}, "1 record in $f expire at 2031-02-03T00:00:00Z\n", 'says what');
    is(slurp($f), "# header comment\n"
                  . digest_of($keys[0]) . " alice tenant=acme expires=2031-02-03T00:00:00Z\n"
                  . digest_of($keys[1]) . " bob tenant=acme\n",
       'the attributes kept, the expiry added; the rest byte for byte');
    is(mode($f), 0640, 'mode kept');

    $r = tk('expire', '-f', $f, '-d', substr(digest_of($keys[1]), 0, 10));
    is($r->{rc}, 0, 'by digest, now: exit 0') or diag($r->{err});
    like(tk('list', '-f', $f)->{out}, qr/^bob tenant=acme expires=\S+ digest=\S+ \(expired\)$/m,
         'bob is expired now');

    my $before = slurp($f);
    for my $case ([['-c', 'carol'], 1, 'no such client'],
                  [['-c', 'alice', '--at', '2031-02-30'], 2, 'a bad date'],
                  [['-c', 'alice', '--at', 'soon'], 2, 'not a date'],
                  [[], 2, 'neither -c nor -d']) {
        my ($args, $rc, $name) = @$case;
        is(tk('expire', '-f', $f, @$args)->{rc}, $rc, "$name: exit $rc");
        is(slurp($f), $before, "$name: file unchanged");
    }
};

subtest 'revoke: usage errors and lax files' => sub {
    my $f = spew(newfile(), digest_of('a') . " alice\n", 0600);
    my $before = slurp($f);

    for my $case ([[], 'neither -c nor -d'],
                  [['-c', 'alice', '-d', substr(digest_of('a'), 0, 8)], 'both -c and -d'],
                  [['-c', 'al ice'], 'a bad client id'],
                  [['-c', 'alice', 'extra'], 'an extra argument']) {
        my ($args, $name) = @$case;
        my $r = tk('revoke', '-f', $f, @$args);
        is($r->{rc}, 2, "$name: exit 2");
        is(slurp($f), $before, "$name: file unchanged");
    }

    is(tk('revoke', '-c', 'alice')->{rc}, 2, 'no -f: exit 2');
    is(tk('revoke', '-f', "$dir/nope", '-c', 'alice')->{rc}, 2, 'a missing file: exit 2');

    chmod 0660, $f;
    my $r = tk('revoke', '-f', $f, '-c', 'alice');
    is($r->{rc}, 2, 'group-writable: exit 2');
    like($r->{err}, qr/writable by its group or by others/, 'says why');
    is(slurp($f), $before, 'file unchanged');
    is(mode($f), 0660, 'mode unchanged');
};

subtest 'revoke through a symlink rewrites its target' => sub {
    my $real = spew(newfile(), digest_of('a') . " alice\n" . digest_of('b') . " bob\n", 0640);
    my $link = "$dir/link" . $n;
    symlink $real, $link or die "symlink: $!";

    is(tk('revoke', '-f', $link, '-c', 'alice')->{rc}, 0, 'exit 0');
    ok(-l $link, 'the link is still a link');
    is(slurp($real), digest_of('b') . " bob\n", 'the target rewritten');
    is(mode($real), 0640, 'with its mode');
};


subtest 'revoke keeps the owner and group' => sub {
    plan skip_all => 'needs root to give the file away' unless $> == 0;

    my $f = spew(newfile(), digest_of('a') . " alice\n" . digest_of('b') . " bob\n", 0640);
    chown 65534, 65534, $f or die "chown: $!";

    is(tk('revoke', '-f', $f, '-c', 'alice')->{rc}, 0, 'exit 0');
    is(slurp($f), digest_of('b') . " bob\n", 'rewritten');
    is_deeply([(stat $f)[4, 5]], [65534, 65534], 'owner and group kept');
    is(mode($f), 0640, 'mode kept');
};


subtest 'concurrent adds and revokes lose nothing' => sub {
    my $f = newfile();
    tk('add', '-f', $f, '-c', 'victim') for 1 .. 3;

    my @pids;
    my @outs;

    for my $i (0 .. 15) {
        my $out = "$dir/par.$i";
        push @outs, $out;

        my $pid = fork // die "fork: $!";
        if ($pid == 0) {
            open STDOUT, '>', $out;
            open STDERR, '>', "$out.err";
            my @args = $i % 4 == 3 ? ('revoke', '-f', $f, '-c', 'victim')
                                   : ('add', '-f', $f, '-c', "c$i");
            { no warnings 'exec'; exec $^X, $SCRIPT, @args }
            POSIX::_exit(127);
        }
        push @pids, $pid;
    }

    my @rc = map { waitpid($_, 0); $? >> 8 } @pids;
    my @adds = grep { $_ % 4 != 3 } 0 .. 15;
    my @revokes = grep { $_ % 4 == 3 } 0 .. 15;

    is_deeply([@rc[@adds]], [(0) x @adds], 'every add: exit 0');
    is(scalar(grep { $_ == 0 } @rc[@revokes]), 1, 'one revoke removed, the others found nothing');

    my $content = slurp($f);
    my $ok = 0;

    for my $i (@adds) {
        my ($key) = slurp($outs[$i]) =~ /\A($KEY_RE)\n\z/ or next;
        $ok++ if $content =~ /^\Q@{[digest_of($key)]}\E c$i\n/m;
    }

    is($ok, scalar @adds, 'every added record is in the file');
    unlike($content, qr/victim/, 'the revoked ones are not');
    is(scalar(() = $content =~ /\n/g), scalar @adds, 'and nothing else');
    is(mode($f), 0600, 'mode 0600');
};


subtest 'nginx -t reads what tailgate-key writes and lists' => sub {
    require Tailgate::Test;

    my $t = Tailgate::Test->new;
    plan skip_all => 'nginx or the module not built'
        unless -x $t->nginx_binary && -f $t->module_path;

    my $check = sub {
        my ($f, $ok, $name) = @_;
        my ($status, $out) = $t->nginx_check("tailgate_keys $f;\n");

        if ($ok) {
            is($status, 0, "$name: nginx -t accepts it") or diag($out);
        } else {
            isnt($status, 0, "$name: nginx -t refuses it");
        }
        is(tk('list', '-f', $f)->{rc}, $ok ? 0 : 2,
           "$name: list " . ($ok ? 'accepts' : 'refuses') . ' it too');
    };

    my $f = newfile();
    tk('add', '-f', $f, '-c', $_) for qw(alice bob@example.com svc:1);
    spew($f, "# made by tailgate-key\n\n" . slurp($f));
    $check->($f, 1, 'records without attributes');

    tk('add', '-f', $f, '-c', 'carol', '-t', 'acme', '--tags', 'private,b:2',
       '--routes', "smart,caf\xc3\xa9,x(1)", '--limit', 'gold',
       '--expires', '2031-01-01');
    tk('add', '-f', $f, '-c', 'dave', '--tags', join(',', 1 .. 16),
       '--routes', join(',', map { "r$_" x 64 } 1 .. 256));
    $check->($f, 1, 'records with every attribute, at the limits');

    $check->(spew(newfile(), digest_of('a') . "\talice  expires=2030-01-02 tags=a,a"
                             . " routes=x,x,caf\xe9 tenant=t\r\n"),
             1, 'a hand-written record');

    my %bad = (
        'an empty tag'     => 'tags=a,,b',
        'tenant twice'     => 'tenant=a tenant=b',
        'limit twice'      => 'limit=a limit=b',
        'a bad limit'      => 'limit=a/b',
        'an unknown name'  => 'color=blue',
        'a bad date'       => 'expires=2030-13-01',
        '17 tags'          => 'tags=' . join(',', 1 .. 17),
        'no value'         => 'tenant=',
        'no tags'          => 'tags=',
        'no routes'        => 'routes=',
        'no date'          => 'expires=',
        'a space in a route' => "routes=a\x{20}b",
    );

    for my $name (sort keys %bad) {
        $check->(spew(newfile(), digest_of('a') . " alice $bad{$name}\n"), 0, $name);
    }

    $t->finish;
};

done_testing;
