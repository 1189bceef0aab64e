#!/usr/bin/perl

# The libFuzzer harnesses of fuzz/ (fuzz/README.md): built with clang,
# each run once on every crash input kept in fuzz/regressions/NAME/, then
# for TAILGATE_FUZZ_SECONDS (default 30) from its seeds in fuzz/corpus/NAME/,
# two at a time, in a fresh work directory.  Every harness must exit 0,
# leave no crash, leak, timeout or out-of-memory artifact and print no
# sanitizer report.  Skipped without clang and its libFuzzer runtime
# (Debian: clang, libclang-rt-14-dev; "make deps" installs them), or with
# TAILGATE_FUZZ_SECONDS=0.

use strict;
use warnings;

use File::Temp qw(tempdir);
use FindBin;
use Test::More;

my $root = "$FindBin::Bin/..";
my $seconds = $ENV{TAILGATE_FUZZ_SECONDS} // 30;

plan skip_all => 'TAILGATE_FUZZ_SECONDS=0' if $seconds eq '0';

plan skip_all => "TAILGATE_FUZZ_SECONDS is not a number of seconds"
    unless $seconds =~ /^\d+$/;

my $tmp = tempdir(CLEANUP => 1);

# clang with libFuzzer and the sanitizers: a target that does nothing
{
    open(my $fh, '>', "$tmp/probe.c") or die "$tmp/probe.c: $!";
    print $fh "#include <stddef.h>\n#include <stdint.h>\n"
              . "int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)\n"
              . "{ (void) d; (void) n; return 0; }\n";
    close($fh);

    my $clang = $ENV{CLANG} // 'clang';
    my $rc = system("$clang -fsanitize=fuzzer,address,undefined "
                    . "-o $tmp/probe $tmp/probe.c > $tmp/probe.log 2>&1");

    if ($rc != 0) {
        my $why = do { local (@ARGV, $/) = ("$tmp/probe.log"); <> } // '';
        $why =~ s/\s+/ /g;
        plan skip_all => "no clang with libFuzzer (Debian: clang "
                         . "libclang-rt-14-dev): " . substr($why, 0, 200);
    }
}

# the harnesses, as fuzz/Makefile lists them
my @names = map { /^(\w+):/ ? $1 : () }
            `make -s --no-print-directory -C $root/fuzz specs 2>/dev/null`;

ok(@names >= 5, 'fuzz/Makefile lists the harnesses: ' . join(' ', @names));

my $work = "$tmp/work";
mkdir $work or die "$work: $!";

# builds them (SANITIZE=1 in the environment: into build-asan/fuzz), then
# fuzz/run.sh runs the regressions and each harness
my $log = "$tmp/fuzz.log";
my $rc = system("cd $root && WORK=$work make -s --no-print-directory fuzz "
                . "FUZZ_SECONDS=$seconds FUZZ_JOBS=2 > $log 2>&1");

my @lines = do { open(my $fh, '<', $log) or die "$log: $!"; <$fh> };
chomp @lines;

ok($rc == 0, "make fuzz FUZZ_SECONDS=$seconds exited with status 0")
    or diag(join("\n", grep { !/^\s*#\d+\s/ } (@lines > 60 ? @lines[-60 .. -1] : @lines)));

for my $name (@names) {
    my ($regress) = grep { /^\Q$name\E\s+(\d+ regression inputs: ok|no regression inputs)/ }
                    @lines;
    ok($regress, "$name: regression inputs replayed")
        or diag(join("\n", grep { /\Q$name\E/ || /^    / } @lines));

    my ($run) = grep { /^\Q$name\E\s+\d+s\s+execs\s+\d+/ } @lines;
    ok($run, "$name: fuzzed for about $seconds s") or next;

    my ($execs, $cov, $ft) = $run =~ /execs\s+(\d+)\s+cov\s+(\d+)\s+ft\s+(\d+)/;
    ok(($execs // 0) > 0, "$name: $execs executions, cov $cov, ft $ft");

    ok(!grep({ /^fuzz: \Q$name\E FAILED/ } @lines), "$name: no failure")
        or diag(join("\n", grep { /\Q$name\E/ || /^    / } @lines));

    my @artifacts = glob("$work/$name/artifacts/*");
    ok(!@artifacts, "$name: no crash artifact")
        or diag("artifacts: @artifacts");
}

done_testing();
