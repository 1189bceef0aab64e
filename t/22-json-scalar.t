#!/usr/bin/perl

# The JSON readers find plain string bytes sixteen at a time with SSE2,
# eight at a time without (ngx_tailgate_plain.h).  x86-64 always takes the
# first, so the second is built here on purpose (NGX_TAILGATE_SCALAR) and
# both run the JSON harness of fuzz/ - with cJSON as the oracle of what a
# body says - over its seeds, its regressions and bodies whose strings
# hold each kind of byte at every offset, under ASan and UBSan; and the
# harness of the scan in pieces (json_feed) and the usage reader's (which
# skips a stream's other lines with the same helper) over their seeds.

use strict;
use warnings;

use File::Basename qw(dirname);
use File::Temp qw(tempdir);
use FindBin;
use Test::More;

my $root = "$FindBin::Bin/..";
my $module = $ENV{TAILGATE_MODULE} // "$root/build/ngx_tailgate_module.so";
my $ngx = dirname($module) . '/nginx';

plan skip_all => "no configured nginx tree at $ngx (make all first)"
    unless -f "$ngx/objs/ngx_auto_config.h";

my $tmp = tempdir(CLEANUP => 1);
my $cc = $ENV{CC} // 'cc';

my @inc = map { "-I$ngx/$_" } qw(src/core src/event src/event/modules
                                 src/os/unix objs src/http src/http/modules
                                 src/http/v2);
push @inc, map { "-I$root/$_" } qw(ngx_tailgate_module proto fuzz/ngx
                                   fuzz/harness);

my @src = map { "$root/$_" } qw(fuzz/harness/json.c
                                ngx_tailgate_module/ngx_tailgate_json.c
                                fuzz/ngx/ngx_shim.c fuzz/tools/replay.c);

# what each made input is (fuzz/tools/replay.c makes them in this order):
# the byte at every offset in the model, then in a message's content
my @bytes = (0x22, 0x5c, 0x0a, 0x0d, 0x09, 0x00, 0x01, 0x1f, 0x20, 0x7f,
             0x80, 0xff, 0x61);
my @want;

for my $where ('model', 'content') {
    for my $b (@bytes) {
        for my $off (0 .. 80) {
            # the model as the scanner decodes it
            my $text = ('x' x $off)
                     . ($b == 0x5c ? "\n" : chr($b)) . ('y' x 37);

            # a raw quote ends the string early and a control byte may
            # not stand in one: both bodies are not JSON
            if ($b == 0x22 || $b < 0x20) {
                push @want, 'refuse';
            } else {
                push @want, 'accept '
                    . unpack('H*', $where eq 'model' ? $text : 'm');
            }
        }
    }
}

my @inputs = (glob("$root/fuzz/corpus/json/*"),
              glob("$root/fuzz/regressions/json/*"));
ok(@inputs > 5, scalar(@inputs) . ' seeds and regressions');

for my $build (['simd', ''], ['scalar', '-DNGX_TAILGATE_SCALAR']) {
    my ($name, $flag) = @$build;
    my $bin = "$tmp/json-$name";

    my $rc = system("$cc -std=gnu11 -g -O1 -fsanitize=address,undefined "
                    . "-fno-sanitize-recover=undefined -Wno-unused-parameter "
                    . "$flag @inc @src -lcjson -o $bin > $bin.log 2>&1");
    is($rc, 0, "$name: built") or diag(`cat $bin.log`);

    my $out = `ASAN_OPTIONS=detect_leaks=1 $bin -strings @inputs 2>&1`;
    is($?, 0, "$name: every input holds the harness's checks")
        or diag(substr($out, -2000));
    like($out, qr/replay: \d+ made inputs/, "$name: the made inputs ran");

    my @said = grep { /^(accept|refuse)\b/ } split /\n/, $out;
    my @wrong = grep { ($said[$_] // '') ne $want[$_] } 0 .. $#want;
    is(scalar @wrong, 0, "$name: each made body read for what it is")
        or diag(join "\n", map { "input $_: said '" . ($said[$_] // '')
                                  . "', is '$want[$_]'" } @wrong[0 .. 4]);
    like($out, qr/replay: @{[ scalar @inputs ]} files/,
         "$name: every file ran");
    unlike($out, qr/runtime error|AddressSanitizer/,
           "$name: no sanitizer report");

    # the scan in pieces against the scan in one run (fuzz/harness/json_feed.c)
    my @feed = (glob("$root/fuzz/corpus/json_feed/*"),
                glob("$root/fuzz/regressions/json_feed/*"));
    my $feed = "$tmp/json-feed-$name";
    $rc = system("$cc -std=gnu11 -g -O1 -fsanitize=address,undefined "
                 . "-fno-sanitize-recover=undefined -Wno-unused-parameter "
                 . "$flag @inc $root/fuzz/harness/json_feed.c "
                 . "$root/ngx_tailgate_module/ngx_tailgate_json.c "
                 . "$root/fuzz/ngx/ngx_shim.c $root/fuzz/tools/replay.c "
                 . "-o $feed > $feed.log 2>&1");
    is($rc, 0, "$name: the scan in pieces built") or diag(`cat $feed.log`);
    $out = `ASAN_OPTIONS=detect_leaks=1 $feed @feed 2>&1`;
    is($?, 0, "$name: in pieces, every seed read as in one run")
        or diag(substr($out, -2000));
    like($out, qr/replay: @{[ scalar @feed ]} files/,
         "$name: every seed of the scan in pieces ran");
    unlike($out, qr/runtime error|AddressSanitizer/,
           "$name: in pieces, no sanitizer report");

    # the usage reader skips a stream's lines that are not data with the
    # same helper (ngx_tailgate_line_end); its harness compares the reader
    # with the byte-at-a-time one (fuzz/harness/usage.c)
    my @usage = (glob("$root/fuzz/corpus/usage/*"),
                 glob("$root/fuzz/regressions/usage/*"));
    my $cflags = "-std=gnu11 -g -O1 -fsanitize=address,undefined "
               . "-fno-sanitize-recover=undefined -Wno-unused-parameter "
               . "$flag @inc";
    my $usage = "$tmp/usage-$name";
    $rc = system("$cc $cflags -DNGX_TAILGATE_USAGE_BYTEWISE "
                 . "-Dngx_tailgate_usage_init=ngx_tailgate_usage_init_bytewise "
                 . "-Dngx_tailgate_usage_scan=ngx_tailgate_usage_scan_bytewise "
                 . "-c $root/ngx_tailgate_module/ngx_tailgate_usage.c "
                 . "-o $usage-bytewise.o > $usage.log 2>&1")
      || system("$cc $cflags $root/fuzz/harness/usage.c "
                . "$root/ngx_tailgate_module/ngx_tailgate_usage.c "
                . "$root/ngx_tailgate_module/ngx_tailgate_json.c "
                . "$usage-bytewise.o $root/fuzz/ngx/ngx_shim.c "
                . "$root/fuzz/tools/replay.c -o $usage >> $usage.log 2>&1");
    is($rc, 0, "$name: the usage reader built") or diag(`cat $usage.log`);
    $out = `ASAN_OPTIONS=detect_leaks=1 $usage @usage 2>&1`;
    is($?, 0, "$name: every usage seed read as byte by byte")
        or diag(substr($out, -2000));
    like($out, qr/replay: @{[ scalar @usage ]} files/,
         "$name: every usage seed ran");
    unlike($out, qr/runtime error|AddressSanitizer/,
           "$name: usage, no sanitizer report");
}

done_testing;
