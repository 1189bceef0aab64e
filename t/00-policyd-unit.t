#!/usr/bin/perl
#
# Runs policyd's cmocka unit tests (built by "make -C policyd tests" into
# build/tests/, or beside $TAILGATE_POLICYD) and relays their results to
# prove.
#
# cmocka 1.1.5's TAP output is one "1..N" plan per test group, numbering
# that restarts in each group, "# ..." lines after a failure and a
# "# ok - group" summary, so it cannot be passed through as it is.  Each
# "ok"/"not ok" line becomes one Test::More result here instead.  A binary
# that exits non-zero, crashes, prints no result, fewer results than its
# plans announced, or a sanitizer report (when built with -fsanitize) fails
# too.

use strict;
use warnings;

use FindBin;
use Test::More;

# next to the policyd that the top-level Makefile exports, or build/tests
my $dir = $ENV{TAILGATE_POLICYD}
          ? ($ENV{TAILGATE_POLICYD} =~ s{[^/]*$}{}r) . 'tests'
          : "$FindBin::Bin/../build/tests";
my @bins = sort grep { -f $_ && -x _ } glob("$dir/test_*");

plan skip_all => "no unit test binaries in $dir: run make -C policyd tests"
    unless @bins;

my $timeout = 120;

for my $bin (@bins) {
    (my $name = $bin) =~ s{.*/}{};
    run_binary($bin, $name);
}

done_testing();


sub run_binary {
    my ($bin, $name) = @_;

    local $ENV{CMOCKA_MESSAGE_OUTPUT} = 'TAP';

    my $pid = open(my $fh, '-|');
    die "fork: $!" unless defined $pid;

    if ($pid == 0) {
        open(STDERR, '>&', \*STDOUT) or die "dup: $!";
        exec($bin) or die "exec $bin: $!";
    }

    my ($planned, $results, @other) = (0, 0);
    my $last_failed;

    eval {
        local $SIG{ALRM} = sub { die "timeout\n" };
        alarm $timeout;

        while (my $line = <$fh>) {
            chomp $line;

            if ($line =~ /^1\.\.(\d+)/) {
                $planned += $1;

            } elsif ($line =~ /^(not )?ok\b\s*\d*\s*(?:-\s*)?(.*)$/) {
                my ($not, $desc) = ($1, $2);
                $results++;

                if ($desc =~ s/\s*#\s*skip\b\s*(.*)$//i) {
                    SKIP: { skip("$name: $desc $1", 1) }
                    next;
                }

                ok(!$not, "$name: $desc");
                $last_failed = $not;

            } elsif ($line =~ /^#\s?(.*)$/) {
                my $comment = $1;
                next if $comment =~ /^(?:not )?ok - /;      # group summary
                diag("$name: $comment") if $last_failed;

            } else {
                push @other, $line;
            }
        }

        alarm 0;
    };

    if ($@) {
        kill 'KILL', $pid;
        fail("$name: finished within $timeout s");
    }

    close($fh);
    my $status = $?;

    my $clean = $status == 0;
    ok($clean, "$name: exited with status 0")
        or diag("$name: wait status $status"
                 . ($status & 127 ? ", signal " . ($status & 127) : ""));

    ok($results > 0 && $results >= $planned,
       "$name: ran $results of $planned planned tests");

    my @reports = grep { /runtime error:|AddressSanitizer|LeakSanitizer/ }
                  @other;
    ok(!@reports, "$name: no sanitizer report") or $clean = 0;

    if (!$clean || $results == 0) {
        diag("$name: $_") for @other;
    }
}
