#!/usr/bin/perl

# make bench: Tailgate against bare nginx proxying, on this machine, now.
#
# Layout on two cores: the gateway nginx (one worker) and policyd share
# CPU0 - policyd's cost is part of Tailgate's; wrk (-t1) and the fake
# provider (a second nginx answering a fixed completion) share CPU1.
# One nginx serves both configurations from the same binary and config:
#   A  bare proxying: proxy_pass to the provider's upstream, same keepalive,
#      HTTP/1.1, buffering, body buffers, timeouts and access log setting
#   B  Tailgate: conf/tailgate/locations.conf (key auth, body scan,
#      decision, model rewrite, proxy)
# A and B alternate in rounds after a discarded warm-up; ratios are the
# medians of per-round ratios.  A run with socket errors or non-2xx answers
# is rejected.  The last line is ratio_vs_nginx_proxy=<B/A RPS at -c32>
# ratio_100k_c8=<B/A RPS with 100 KB bodies at -c8>.
#
# BENCH_QUICK=1     fewer rounds and shorter runs (about 2 minutes)
# BENCH_SECONDS     seconds per wrk run (5; quick 2)
# BENCH_ROUNDS      measured rounds (5; quick 2)
# BENCH_MILLION     requests for the RSS check (1000000; quick 200000)
# BENCH_VS=TREE     also a second gateway (V) with the build of another
#                   checkout (TREE/build, TREE/conf/tailgate, its own
#                   policyd), measured in the same rounds as A and B: a
#                   change's before/after in one run
# BENCH_ONLY=vs     with BENCH_VS: only the 1 KB and side-by-side sections
# BENCH_ONLY=streams  only the two streaming sections (chat; Responses
#                   translated to chat against a native Responses provider)
# BENCH_STREAMS     streams timed per kind in those sections (30; quick 10;
#                   BENCH_STREAMS=2 BENCH_ONLY=streams: a check that they
#                   run, in seconds)
# BENCH_ONLY=scale  only the keys and routes curves
# BENCH_ONLY=files  only the body in a file (a 3 MB upload)
# BENCH_ONLY=bodies only the body sizes (1 KB to 1 MB, -c1 and -c8)
# BENCH_ONLY=auth   only the credentials (API key, JWT, DPoP)
# BENCH_ONLY=limits only the limits: policyd alone and the gateway with a
#                   client limit profile, in memory and with a redis-server
#                   the bench starts on CPU1 on a unix socket in build/bench
#                   (its rows skipped when there is none)
# BENCH_PORT_BASE   the first of the seven loopback ports the bench listens
#                   on (19101; 19101-19107)
# BENCH_MALLOC=glibc  glibc's malloc as it comes; by default every process
#                   the bench starts has the GLIBC_TUNABLES of the package's
#                   nginx.service drop-in (packaging/systemd/nginx-tailgate.conf:
#                   freed body buffers are kept, not given back), A and B alike

use strict;
use warnings;

use Cwd qw(abs_path);
use Digest::SHA qw(sha256_hex);
use File::Basename qw(dirname);
use File::Path qw(make_path remove_tree);
use IO::Socket::INET;
use IO::Select;
use JSON::PP;
use POSIX qw(:sys_wait_h floor);
use Time::HiRes qw(time sleep);

$| = 1;

my $ROOT = abs_path(dirname(abs_path(__FILE__)) . '/..');
my $DIR = "$ROOT/build/bench";
my $QUICK = $ENV{BENCH_QUICK} ? 1 : 0;
my $SECONDS = $ENV{BENCH_SECONDS} // ($QUICK ? 2 : 5);
my $ROUNDS = $ENV{BENCH_ROUNDS} // ($QUICK ? 2 : 5);
my $MILLION = $ENV{BENCH_MILLION} // ($QUICK ? 200_000 : 1_000_000);
my $NGINX = $ENV{TAILGATE_NGINX} // '/usr/sbin/nginx';
my $MODULE = $ENV{TAILGATE_MODULE} // "$ROOT/build/ngx_tailgate_module.so";
my $POLICYD = $ENV{TAILGATE_POLICYD} // "$ROOT/build/policyd";
my $VS = $ENV{BENCH_VS} ? abs_path($ENV{BENCH_VS}) : undef;
my $ONLY_VS = $VS && ($ENV{BENCH_ONLY} // '') eq 'vs';
my $ONLY_STREAMS = ($ENV{BENCH_ONLY} // '') eq 'streams';
my $STREAMS = $ENV{BENCH_STREAMS} // ($QUICK ? 10 : 30);
my $ONLY_SCALE = ($ENV{BENCH_ONLY} // '') eq 'scale';
my $ONLY_FILES = ($ENV{BENCH_ONLY} // '') eq 'files';
my $ONLY_AUTH = ($ENV{BENCH_ONLY} // '') eq 'auth';
my $ONLY_LIMITS = ($ENV{BENCH_ONLY} // '') eq 'limits';
my $ONLY_BODIES = ($ENV{BENCH_ONLY} // '') eq 'bodies';
my $PORT_BASE = $ENV{BENCH_PORT_BASE} // 19101;
my $REDIS = (grep { -x } map { "$_/redis-server" } split /:/, $ENV{PATH})[0];
my $CLK_TCK = `getconf CLK_TCK` + 0 || 100;
my $KEY = 'tg-bench-' . sha256_hex(time . $$ . rand);

$PORT_BASE =~ /^\d+$/ && $PORT_BASE >= 1024 && $PORT_BASE <= 65529
    or die "BENCH_PORT_BASE=$PORT_BASE: a port from 1024 to 65529\n";

# malloc as nginx runs under the package's unit, unless asked otherwise
my $MALLOC = ($ENV{BENCH_MALLOC} // '') eq 'glibc' ? 'glibc defaults'
             : unit_tunables("$ROOT/packaging/systemd/nginx-tailgate.conf");
$ENV{GLIBC_TUNABLES} = $MALLOC if $MALLOC =~ /^glibc\.malloc/;

my %PORT = (provider => $PORT_BASE, a => $PORT_BASE + 1, b => $PORT_BASE + 2,
            sse => $PORT_BASE + 3, a_sse => $PORT_BASE + 4,
            v => $PORT_BASE + 5, otlp => $PORT_BASE + 6);
my %proc;      # name => pid
my %result;    # everything measured, also written as JSON

$SIG{INT} = $SIG{TERM} = sub { stop_all(); exit 130 };
END { stop_all() if %proc }

check_tools();
setup();

print "Tailgate benchmark: ", machine(), "\n";
print "nginx ", nginx_version(), ", ", openssl_version(), "\n";
print "malloc: $MALLOC\n";
$result{malloc} = $MALLOC;
print "layout: gateway nginx (1 worker) + policyd on CPU0; wrk -t1 and the "
    . "provider on CPU1\n";
print "$ROUNDS rounds of ${SECONDS}s after a warm-up; ratios are medians of "
    . "per-round B/A\n\n";

start_all();

goto SCALE if $ONLY_SCALE;
goto FILES if $ONLY_FILES;
goto AUTH if $ONLY_AUTH;
goto LIMITS if $ONLY_LIMITS;
goto BODIES if $ONLY_BODIES;

my @conns = $QUICK ? (1, 32) : (1, 8, 32, 128);

goto STREAMS if $ONLY_STREAMS;

section('1 KB chat bodies: RPS, latency, CPU per request');
printf "%5s %10s %10s %10s %7s %9s %9s %9s %9s %8s %8s %8s\n",
       '-c', 'direct', 'A rps', 'B rps', 'B/A', 'A p50', 'B p50', 'A p99',
       'B p99', 'A cpu', 'B cpu', '+cpu';

for my $c (@conns) {
    my $r = compare($c, 'body-1k-start.json');
    $r->{direct} = direct_rps($c);
    $result{chat}{$c} = $r;

    printf "%5d %10.0f %10.0f %10.0f %7.3f %7.0fus %7.0fus %7.0fus %7.0fus "
         . "%6.2fus %6.2fus %6.2fus\n",
           $c, $r->{direct}, $r->{a_rps}, $r->{b_rps}, $r->{ratio},
           $r->{a_p50}, $r->{b_p50}, $r->{a_p99}, $r->{b_p99},
           $r->{a_cpu}, $r->{b_cpu}, $r->{b_cpu} - $r->{a_cpu};
}

if (my $r = $result{chat}{1}) {
    printf "added at -c1: p50 %.0f us, p99 %.0f us\n",
           $r->{b_p50} - $r->{a_p50}, $r->{b_p99} - $r->{a_p99};
}

if ($VS) {
    section("this build (B) and $VS (V) in the same rounds, 1 KB");
    printf "%5s %10s %10s %10s %7s %7s %7s %8s %8s %8s\n",
           '-c', 'A rps', 'B rps', 'V rps', 'B/A', 'V/A', 'B/V',
           'A cpu', 'B cpu', 'V cpu';

    for my $c (1, 32) {
        my $r = compare_vs($c, 'body-1k-start.json');
        $result{vs}{$c} = $r;

        printf "%5d %10.0f %10.0f %10.0f %7.3f %7.3f %7.3f %6.2fus "
             . "%6.2fus %6.2fus\n",
               $c, $r->{a_rps}, $r->{b_rps}, $r->{v_rps}, $r->{ratio},
               $r->{v_ratio}, $r->{b_vs_v}, $r->{a_cpu}, $r->{b_cpu},
               $r->{v_cpu};
    }
}

goto DONE if $ONLY_VS;

section('readers alone: CPU per body or answer (bench/json_read.c, usage_read.c)');
for (split /\n/, run_capture("taskset -c 0 $DIR/usage_read; "
                              . "taskset -c 0 $DIR/json_read; "
                              . "taskset -c 0 $DIR/json_read_scalar "
                              . "| sed 's/^json_scan/json_scan_scalar/'")) {
    my ($name, $ns, $bytes) = split ' ';
    $result{readers}{$name} = { ns => $ns, bytes => $bytes };
    printf "%-12s %7d bytes %9.2f us %8.2f GB/s\n", $name, $bytes,
           $ns / 1000, $bytes / $ns;
}

AUTH:

# DPoP: one ES256 token bound to the client's key, remembered like the
# 'ES256, remembered' one, and a new proof on every request (each is taken
# once); +es is what a row adds to that remembered Bearer token
section('authentication at -c8: API key, JWT remembered, JWT verified anew, '
        . 'DPoP');
printf "%-32s %10s %9s %9s %9s %9s\n", 'credential', 'rps', 'p50', 'cpu',
       '+cpu', '+es';

my ($key_run, $es_run);
for my $case (['API key', 'key'],
              ['RS256, remembered', 'rs-same'], ['ES256, remembered', 'es-same'],
              ['RS256, every token new', 'rs-many'],
              ['ES256, every token new', 'es-many'],
              ['DPoP: ES256 proof each request', 'dpop-es', 'es'],
              ['DPoP: RS256 proof each request', 'dpop-rs', 'rs'])
{
    my ($name, $tokens, $proof) = @$case;
    my @runs;
    for (1 .. ($QUICK ? 1 : 3)) {
        push @runs, $proof
            ? dpop_run($proof, @runs ? $runs[-1]{rps}
                                     : $result{auth}{"$proof-many"}{rps},
                       $key_run->{rps})
            : wrk('b', 8, 'body-1k-start.json', 0, tokens => $tokens);
    }
    my $r = { rps => median(map { $_->{rps} } @runs),
              p50 => median(map { $_->{p50} } @runs),
              cpu => median(map { $_->{cpu_us} } @runs) };

    $key_run //= $r;
    $es_run = $r if $tokens eq 'es-same';
    $result{auth}{$tokens} = $r;

    if ($proof) {
        $r->{proofs} = median(map { $_->{proofs} } @runs);
        $r->{added_cpu_over_key} = $r->{cpu} - $key_run->{cpu};
        $r->{added_cpu_over_es_remembered} = $r->{cpu} - $es_run->{cpu};
    }

    printf "%-32s %10.0f %7.0fus %7.2fus %7.2fus %9s\n", $name, $r->{rps},
           $r->{p50}, $r->{cpu}, $r->{cpu} - $key_run->{cpu},
           $es_run && $r != $es_run
           ? sprintf('%7.2fus', $r->{cpu} - $es_run->{cpu}) : '';
}

goto DONE if $ONLY_AUTH;

BODIES:
section('body sizes: model near the start; at -c1 and -c8');
printf "%8s %3s %10s %10s %7s %9s %9s %8s %8s %8s\n",
       'body', '-c', 'A rps', 'B rps', 'B/A', 'A cpu', 'B cpu', '+cpu',
       'A flt', 'B flt';

for my $size ($QUICK ? qw(1k 100k 1m) : qw(1k 10k 100k 200k 500k 1m)) {
    for my $c (1, 8) {
        my $r = compare($c, "body-$size-start.json", rounds => $QUICK ? 1 : 3);
        $result{bodies}{"$size-c$c"} = $r;

        printf "%8s %3d %10.0f %10.0f %7.3f %7.1fus %7.1fus %6.1fus "
             . "%8.1f %8.1f\n",
               $size, $c, $r->{a_rps}, $r->{b_rps}, $r->{ratio},
               $r->{a_cpu}, $r->{b_cpu}, $r->{b_cpu} - $r->{a_cpu},
               $r->{a_faults}, $r->{b_faults};
    }
}

my $end = compare(1, 'body-1m-end.json', rounds => $QUICK ? 1 : 3);
$result{bodies}{'1m-end-c1'} = $end;
printf "1 MB, model at the end, -c1: B/A %.3f, +cpu %.1f us\n",
       $end->{ratio}, $end->{b_cpu} - $end->{a_cpu};

goto DONE if $ONLY_BODIES;

FILES:

# more than client_body_buffer_size (1m for uploads): nginx writes it to a
# temporary file, the module reads it a 64 KB window a turn and rewrites
# the model as file ranges around the new name
section('a body in a file: 3 MB upload, model first, at -c1 and -c8');
printf "%3s %10s %10s %7s %9s %9s %8s %8s %8s\n",
       '-c', 'A rps', 'B rps', 'B/A', 'A cpu', 'B cpu', '+cpu', 'A flt',
       'B flt';

for my $c (1, 8) {
    my $r = compare($c, 'upload-3m.form', rounds => $QUICK ? 1 : 3,
                    path => '/v1/audio/transcriptions',
                    ct => 'multipart/form-data; boundary=bench-b0undary');
    $result{file_body}{"3m-c$c"} = $r;

    printf "%3d %10.0f %10.0f %7.3f %7.1fus %7.1fus %6.1fus %8.1f %8.1f\n",
           $c, $r->{a_rps}, $r->{b_rps}, $r->{ratio}, $r->{a_cpu},
           $r->{b_cpu}, $r->{b_cpu} - $r->{a_cpu}, $r->{a_faults},
           $r->{b_faults};
}

goto DONE if $ONLY_FILES;

section('policyd alone: decisions on one core (CPU0), client on CPU1');
for my $shape ([4, 32, 'pipelined: 4 connections x 32 in flight'],
               [1, 1, 'one at a time'])
{
    my $out = run_capture("taskset -c 1 $DIR/policyd_load -s $DIR/policyd.sock "
                          . "-c $shape->[0] -w $shape->[1] -d "
                          . ($QUICK ? 2 : 5));
    my %v = $out =~ /(\w+)=([\d.]+)/g;
    $result{policyd}{"$shape->[0]x$shape->[1]"} = \%v;
    printf "%-42s %9.0f decisions/s  p50 %6.1f us  p99 %7.1f us\n",
           $shape->[2], $v{rate} // 0, $v{p50_us} // 0, $v{p99_us} // 0;
}

# with each decision's REPORT (usage, as a worker sends it), then the same
# with traces exported: policyd's exporter thread on CPU0 with it, a mock
# OTLP collector (t/lib/mock_otlp.pl) on CPU1
section('policyd alone with REPORTs: decisions with trace export off, on');
for my $export (0, 1) {
    restart_policyd($export);
    my $out = run_capture("taskset -c 1 $DIR/policyd_load -s $DIR/policyd.sock "
                          . "-c 4 -w 32 -r -d " . ($QUICK ? 2 : 5));
    my %v = $out =~ /(\w+)=([\d.]+)/g;
    my $traces = $export ? policyd_traces() : {};
    $result{policyd}{$export ? 'export_on' : 'export_off'} = { %v, %$traces };
    printf "%-42s %9.0f decisions/s  p50 %6.1f us  p99 %7.1f us%s\n",
           $export ? '4 x 32 + REPORT, traces exported'
                   : '4 x 32 + REPORT, no export',
           $v{rate} // 0, $v{p50_us} // 0, $v{p99_us} // 0,
           $export ? sprintf('  spans %d, exported %d, dropped (queue full) %d',
                             $traces->{spans} // 0, $traces->{exported} // 0,
                             $traces->{dropped_queue_full} // 0) : '';
}
restart_policyd(0);

LIMITS:
limits();
goto DONE if $ONLY_LIMITS;

SCALE:
section('client keys: nginx -t, start, requests with a new key each time (-c8)');
printf "%9s %9s %9s %9s %10s %9s %9s %9s\n", 'keys', 'file MB', 'nginx -t',
       '(its cpu)', 'start', 'rps', 'cpu', 'max lat';
for my $n ($QUICK ? (10, 100_000) : (10, 1000, 65_536, 100_000, 1_000_000)) {
    my $k = key_scale($n);
    $result{scale}{keys}{$n} = $k;
    printf "%9d %9.1f %8.2fs %8.2fs %9.2fs %9.0f %7.2fus %7.1fms\n", $n,
           $k->{mb}, $k->{check_s}, $k->{check_cpu_s}, $k->{start_s},
           $k->{rps}, $k->{cpu}, $k->{max_ms};
}
key_scale_done();

my $live = key_reread($QUICK ? 50_000 : 200_000);
$result{scale}{reread} = $live;
printf "a worker reads a changed %d-key file (%.1f MB) by itself: the longest "
     . "wait of a request at -c8 then %.1f ms (%.1f ms without the change)\n",
       $live->{keys}, $live->{mb}, $live->{max_ms}, $live->{base_max_ms};

section('routes: policyd load, decisions, GET /v1/models');
printf "%9s %9s %9s %12s %8s %12s %9s\n", 'routes', 'load', '(its cpu)',
       'decisions/s', 'p50', '/v1/models', 'bytes';
for my $n ($QUICK ? (10, 100_000) : (10, 1000, 10_000, 100_000)) {
    my $r = route_scale($n);
    $result{scale}{routes}{$n} = $r;
    printf "%9d %8.2fs %8.2fs %12.0f %6.1fus %8s %.0fms %9d\n", $n,
           $r->{load_s}, $r->{load_cpu_s}, $r->{rate}, $r->{p50_us}, $r->{models_status}, $r->{models_ms},
           $r->{models_bytes};
}
route_scale_done();

goto DONE if $ONLY_SCALE;

STREAMS:
section('streaming: 20 events 20 ms apart; direct, bare nginx (A), Tailgate (B)');
my $s = streaming($STREAMS);
$result{streaming} = $s;
printf "time to first event: direct %.3f ms, A %.3f ms, B %.3f ms; "
     . "B adds %.3f ms to direct, %.3f ms to A\n",
       $s->{direct_ttfb}, $s->{a_ttfb}, $s->{b_ttfb},
       $s->{b_ttfb} - $s->{direct_ttfb}, $s->{b_ttfb} - $s->{a_ttfb};
printf "gap between events:  direct %.2f ms, B %.2f ms (median); "
     . "largest added %.2f ms\n",
       $s->{direct_gap}, $s->{b_gap}, $s->{max_added_gap};
printf "streams with events missing: %d\n", $s->{held_back};

section('Responses streams through Tailgate: translated from a chat provider (T) '
        . 'against a native Responses provider (N), the same 20 deltas 20 ms apart');
my $x = responses_streaming($STREAMS);
$result{responses_streaming} = $x;
printf "time to first event: N %.3f ms, T %.3f ms; translation adds %.3f ms "
     . "(median of pairs)\n", $x->{n_ttfb}, $x->{t_ttfb}, $x->{added_ttfb};
printf "time to first delta: N %.3f ms, T %.3f ms; translation adds %.3f ms\n",
       $x->{n_first_delta}, $x->{t_first_delta}, $x->{added_first_delta};
printf "gap between deltas:  N %.2f ms, T %.2f ms (median); largest added "
     . "%.2f ms\n", $x->{n_gap}, $x->{t_gap}, $x->{max_added_gap};
printf "streams with deltas missing or events out of order: %d\n",
       $x->{held_back};

goto DONE if $ONLY_STREAMS;

section("memory: RSS before and after $MILLION requests");
my $m = rss_growth($MILLION);
$result{rss} = $m;
printf "nginx worker %d -> %d KB (%+d KB); policyd %d -> %d KB (%+d KB); "
     . "%d requests\n",
       $m->{worker_before}, $m->{worker_after},
       $m->{worker_after} - $m->{worker_before},
       $m->{policyd_before}, $m->{policyd_after},
       $m->{policyd_after} - $m->{policyd_before}, $m->{requests};

section('failure paths at -c32');
my $f = failures();
$result{failures} = $f;
printf "policyd down:            %8.0f rps of 503, p99 %6.0f us\n",
       $f->{down_rps}, $f->{down_p99};
printf "policyd 50 ms per answer: %7.0f rps, p50 %6.1f ms (one worker, "
     . "nothing blocks)\n", $f->{slow_rps}, $f->{slow_p50} / 1000;

DONE:
write_file("$DIR/results.json", JSON::PP->new->canonical->pretty->encode(\%result));
print "\nresults: $DIR/results.json\n";

stop_all();

exit 0 unless $result{chat}{32};

printf "ratio_vs_nginx_proxy=%.3f%s\n", $result{chat}{32}{ratio},
       $result{bodies}{'100k-c8'}
       ? sprintf(' ratio_100k_c8=%.3f', $result{bodies}{'100k-c8'}{ratio}) : '';

exit 0;


# --- measuring ------------------------------------------------------------

# A and B alternating at -c$c with this body: medians of the rounds

sub compare {
    my ($c, $body, %opt) = @_;

    my $rounds = $opt{rounds} // $ROUNDS;
    my %how = map { $_ => $opt{$_} } grep { $opt{$_} } qw(path ct);
    my (@a, @b, @ratio);

    wrk('a', $c, $body, 1, %how);    # warm-up, discarded
    wrk('b', $c, $body, 1, %how);

    for (1 .. $rounds) {
        my $ra = wrk('a', $c, $body, 0, %how);
        my $rb = wrk('b', $c, $body, 0, %how);
        push @a, $ra;
        push @b, $rb;
        push @ratio, $rb->{rps} / $ra->{rps};
    }

    return {
        a_rps => median(map { $_->{rps} } @a),
        b_rps => median(map { $_->{rps} } @b),
        ratio => median(@ratio),
        a_p50 => median(map { $_->{p50} } @a),
        b_p50 => median(map { $_->{p50} } @b),
        a_p99 => median(map { $_->{p99} } @a),
        b_p99 => median(map { $_->{p99} } @b),
        a_cpu => median(map { $_->{cpu_us} } @a),
        b_cpu => median(map { $_->{cpu_us} } @b),
        a_faults => median(map { $_->{faults} } @a),
        b_faults => median(map { $_->{faults} } @b),
        rounds => $rounds,
    };
}

# A, B and V (BENCH_VS) in turn: the ratios of each round, then medians

sub compare_vs {
    my ($c, $body) = @_;

    my (%run, @ratio, @v_ratio, @b_vs_v);

    wrk($_, $c, $body, 1) for qw(a b v);

    for (1 .. $ROUNDS) {
        my %r = map { $_ => wrk($_, $c, $body) } qw(a b v);
        push @{ $run{$_} }, $r{$_} for keys %r;
        push @ratio, $r{b}{rps} / $r{a}{rps};
        push @v_ratio, $r{v}{rps} / $r{a}{rps};
        push @b_vs_v, $r{b}{rps} / $r{v}{rps};
    }

    my %m = (ratio => median(@ratio), v_ratio => median(@v_ratio),
             b_vs_v => median(@b_vs_v), rounds => $ROUNDS);

    for my $w (qw(a b v)) {
        $m{"${w}_rps"} = median(map { $_->{rps} } @{ $run{$w} });
        $m{"${w}_cpu"} = median(map { $_->{cpu_us} } @{ $run{$w} });
    }

    return \%m;
}

# one wrk run against A, B or V; CPU per request of the worker and policyd

sub wrk {
    my ($which, $c, $body, $warmup, %opt) = @_;

    my $port = $PORT{$which};
    my $seconds = $opt{seconds} // ($warmup ? 1 : $SECONDS);
    my $script = $opt{dpop} ? lua_dpop($body, $opt{dpop})
                 : $opt{tokens} ? lua_tokens($body, $opt{tokens})
                 : lua($body, $opt{ct});
    my $path = $opt{path} // '/v1/chat/completions';

    my @pids = $which eq 'v'
               ? (worker_pid('gateway_vs'), $proc{policyd_vs} // ())
               : (worker_pid(), $proc{policyd} // (), $proc{redis} // ());
    my $cpu0 = cpu_ticks(@pids);
    my $flt0 = faults($pids[0]);

    my $out = run_capture("taskset -c 1 wrk -t1 -c$c -d${seconds}s --latency "
                          . "-s $script http://127.0.0.1:$port$path");

    my $cpu1 = cpu_ticks(@pids);
    my $flt1 = faults($pids[0]);

    my ($requests) = $out =~ /(\d+) requests in/;
    my ($rps) = $out =~ /Requests\/sec:\s+([\d.]+)/;

    die "wrk failed against $which:\n$out" unless $requests && $rps;

    if (!$opt{accept_errors}) {
        die "rejected: socket errors against $which at -c$c:\n$out"
            if $out =~ /Socket errors/;
        die "rejected: non-2xx answers from $which at -c$c:\n$out"
            if $out =~ /Non-2xx or 3xx responses/;
    }

    return {
        rps     => $rps,
        p50     => latency($out, '50%'),
        p99     => latency($out, '99%'),
        cpu_us  => ($cpu1 - $cpu0) / $CLK_TCK * 1e6 / $requests,
        faults  => ($flt1 - $flt0) / $requests,
        out     => $out,
    };
}

# one run of DPoP requests at -c8 against B with proofs by the key
# dpop-$proof.key, minted just before so that their iat is well inside
# tailgate_dpop_window.  Each proof goes once, so the run needs more than
# it can send: half again the rate of a run that does less - the row's
# previous run, else the same algorithm's "every token new" (a proof is
# a signature verified and more) - and, should that still run out, the
# run again with enough for the API key's rate.  Minting for a far
# higher rate than the run's would cost (RS256 signs some 4000 a second
# on a core) and fill the disk for nothing.

sub dpop_run {
    my ($proof, $rps, $max_rps) = @_;

    for my $rate ($rps, $max_rps) {
        my $r = dpop_try($proof, int($rate * $SECONDS * 1.5) + 2000);
        return $r if $r;
    }

    die "rejected: DPoP ($proof) ran out of proofs at the API key's rate\n";
}

# undef: the proofs ran out (a request without one was a 401)

sub dpop_try {
    my ($proof, $count) = @_;

    my $file = "$DIR/proofs-dpop-$proof.txt";
    my $mint = "$DIR/jwt_mint proofs $DIR/dpop-$proof.key "
             . "$DIR/token-dpop-$proof.txt "
             . "http://127.0.0.1:$PORT{b}/v1/chat/completions "
             . int(($count + 1) / 2);

    # on both cores: the gateway is idle meanwhile
    unlink $file;
    my $err = run_capture("($mint > $file.0 & $mint > $file.1 & wait) && "
                          . "cat $file.0 $file.1 > $file && "
                          . "rm -f $file.0 $file.1");
    my ($lines) = run_capture("wc -l < $file") =~ /(\d+)/;

    die "cannot mint DPoP proofs ($proof): $err\n"
        unless $lines && $lines >= $count;

    my $r = wrk('b', 8, 'body-1k-start.json', 0, dpop => $proof,
                accept_errors => 1);
    my ($requests) = $r->{out} =~ /(\d+) requests in/;

    if ($requests > $lines) {
        print "  (DPoP $proof: $requests requests, $lines proofs: again "
            . "with more)\n";
        return undef;
    }

    die "rejected: socket errors or non-2xx answers, DPoP ($proof):\n"
        . $r->{out}
        if $r->{out} =~ /Socket errors|Non-2xx or 3xx responses/;

    unlink $file;
    $r->{proofs} = $lines;

    return $r;
}

sub direct_rps {
    my ($c) = @_;

    my $out = run_capture("taskset -c 1 wrk -t1 -c$c -d2s -s " . lua('body-1k-start.json')
                          . " http://127.0.0.1:$PORT{provider}/v1/chat/completions");
    my ($rps) = $out =~ /Requests\/sec:\s+([\d.]+)/;

    return $rps // 0;
}

sub latency {
    my ($out, $pct) = @_;

    my ($v, $unit) = $out =~ /^\s+\Q$pct\E\s+([\d.]+)(us|ms|s)\s*$/m
        or return 0;

    return $v * ($unit eq 's' ? 1e6 : $unit eq 'ms' ? 1e3 : 1);
}

# time to the first event and gaps between events: direct to the provider,
# through bare nginx proxying (A) and through Tailgate (B); every path on a
# kept-alive connection, so that only what lies between is compared

sub streaming {
    my ($n) = @_;

    my $body = encode_json({ model => 'bench-sse', stream => JSON::PP::true,
                             messages => [{ role => 'user', content => 'hi' }] });
    my %path = (direct => $PORT{sse}, a => $PORT{a_sse}, b => $PORT{b});
    my %sock = map { $_ => undef } keys %path;
    my %got = map { $_ => [] } keys %path;

    for (0 .. $n) {
        for my $p (qw(direct a b)) {
            my $r = stream_once(\$sock{$p}, $path{$p}, $body, $p eq 'b');
            push @{ $got{$p} }, $r if $_ > 0;    # the first warms up
        }
    }

    my %s;

    for my $p (keys %got) {
        $s{"${p}_ttfb"} = median(map { $_->{ttfb} } @{ $got{$p} });
        $s{"${p}_gap"} = median(map { @{ $_->{gaps} } } @{ $got{$p} });
    }

    my @added;
    for my $i (0 .. $#{ $got{b} }) {
        for my $k (0 .. $#{ $got{b}[$i]{gaps} }) {
            push @added, $got{b}[$i]{gaps}[$k] - ($got{direct}[$i]{gaps}[$k] // 0);
        }
    }

    $s{max_added_gap} = (sort { $b <=> $a } @added)[0] // 0;
    $s{held_back} = grep { $_->{events} != 21 } map { @$_ } values %got;

    return \%s;
}

# Responses streams, both through Tailgate (B) to the same mock provider:
# translated (route bench-sse: a chat provider) and native (route
# bench-sse-native: the provider's own Responses API), in turn on kept-alive
# connections.  The first event and every output_text.delta are timed; the
# pairs (the same round) are compared.

sub responses_streaming {
    my ($n) = @_;

    my %body = map {
        $_ => encode_json({ model => $_, stream => JSON::PP::true,
                            input => 'hi' })
    } qw(bench-sse bench-sse-native);
    my %sock = (t => undef, n => undef);
    my %got = (t => [], n => []);
    my $delta = qr/^event: response\.output_text\.delta$/m;

    for (0 .. $n) {
        for my $p (qw(n t)) {
            my $r = stream_once(\$sock{$p}, $PORT{b},
                                $body{ $p eq 't' ? 'bench-sse'
                                                 : 'bench-sse-native' },
                                1, '/v1/responses', $delta);
            push @{ $got{$p} }, $r if $_ > 0;    # the first warms up
        }
    }

    my %s;

    for my $p (qw(n t)) {
        $s{"${p}_ttfb"} = median(map { $_->{first} } @{ $got{$p} });
        $s{"${p}_first_delta"} = median(map { $_->{ttfb} } @{ $got{$p} });
        $s{"${p}_gap"} = median(map { @{ $_->{gaps} } } @{ $got{$p} });
    }

    my (@ttfb, @delta1, @added);

    for my $i (0 .. $#{ $got{t} }) {
        push @ttfb, $got{t}[$i]{first} - $got{n}[$i]{first};
        push @delta1, $got{t}[$i]{ttfb} - $got{n}[$i]{ttfb};

        for my $k (0 .. $#{ $got{t}[$i]{gaps} }) {
            push @added, $got{t}[$i]{gaps}[$k] - ($got{n}[$i]{gaps}[$k] // 0);
        }
    }

    $s{added_ttfb} = median(@ttfb);
    $s{added_first_delta} = median(@delta1);
    $s{max_added_gap} = (sort { $b <=> $a } @added)[0] // 0;
    $s{held_back} = grep { $_->{events} != 20 || !$_->{ordered} }
                    map { @$_ } values %got;

    return \%s;
}

# One streaming POST on a kept-alive connection: when its first event and
# each event matching $pattern (default: every data line) arrived

sub stream_once {
    my ($sockref, $port, $body, $auth, $path, $pattern) = @_;

    $path //= '/v1/chat/completions';
    $pattern //= qr/^data: /m;

    $$sockref //= IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port",
                                        Timeout => 5)
        or die "connect $port: $!";

    my $sock = $$sockref;
    my $req = "POST $path HTTP/1.1\r\nHost: bench\r\n"
            . "Content-Type: application/json\r\n"
            . ($auth ? "Authorization: Bearer $KEY\r\n" : '')
            . "Content-Length: " . length($body) . "\r\n\r\n$body";

    my $sel = IO::Select->new($sock);
    my $t0 = time;
    syswrite($sock, $req);

    my ($buf, $seen, $first, @at) = ('', 0);
    my $deadline = $t0 + 10;

    # a chunked response ends with the zero-size chunk
    while ($buf !~ /\r\n0\r\n\r\n$/ && time < $deadline && $sel->can_read(1)) {
        my $n = sysread($sock, my $chunk, 65536) or last;
        my $t = time;
        $buf .= $chunk;

        $first //= $t if $buf =~ /^(?:data|event): /m;

        my $events = () = $buf =~ /$pattern/g;
        push @at, $t for $seen + 1 .. $events;
        $seen = $events;
    }

    # a Responses stream's events numbered in order, none missing
    my @seq = $buf =~ /"sequence_number":(\d+)/g;
    my $ordered = !grep { $seq[$_] != $_ } 0 .. $#seq;

    return {
        ttfb    => @at ? ($at[0] - $t0) * 1000 : 0,
        first   => defined $first ? ($first - $t0) * 1000 : 0,
        gaps    => [ map { ($at[$_] - $at[$_ - 1]) * 1000 } 1 .. $#at ],
        events  => $seen,
        ordered => $ordered,
    };
}

sub rss_growth {
    my ($million) = @_;

    my $w = worker_pid();
    my %m = (worker_before => rss($w), policyd_before => rss($proc{policyd}));

    # a rate from a short run sizes the long one; a machine that slows down
    # meanwhile gets more runs, at most four, until the count is reached
    my $probe = wrk('b', 32, 'body-1k-start.json', 0, seconds => 2);
    $m{requests} = 0;

    for (1 .. 4) {
        my $seconds = int(($million - $m{requests}) / $probe->{rps} * 1.05) + 1;
        my $out = run_capture("taskset -c 1 wrk -t1 -c32 -d${seconds}s -s "
                              . lua('body-1k-start.json') . " http://127.0.0.1:"
                              . "$PORT{b}/v1/chat/completions");
        my ($n) = $out =~ /(\d+) requests in/;

        $m{requests} += $n // 0;
        last if $m{requests} >= $million || !$n;
    }

    $m{worker_after} = rss($w);
    $m{policyd_after} = rss($proc{policyd});

    return \%m;
}

sub failures {
    my %f;

    stop('policyd');
    my $down = wrk('b', 32, 'body-1k-start.json', 0, seconds => 2,
                   accept_errors => 1);
    $f{down_rps} = $down->{rps};
    $f{down_p99} = $down->{p99};

    start_fake_policyd(50);
    my $slow = wrk('b', 32, 'body-1k-start.json', 0, seconds => 3);
    $f{slow_rps} = $slow->{rps};
    $f{slow_p50} = $slow->{p50};
    stop('fake_policyd');

    start_policyd();

    return \%f;
}


# --- scale: keys and routes ------------------------------------------------

# a key file of $n records: the first 1000 with keys the requests use (a
# new one each request, so the per-connection memo never helps), the rest
# digests of random keys; written where the gateway's tailgate_keys points
sub write_keys {
    my ($path, $n) = @_;

    my $used = $n < 1000 ? $n : 1000;
    my @tokens = map { "tg-scale-$_-" . sha256_hex("$KEY $_") } 1 .. $used;

    open(my $fh, '>', "$path.tmp") or die "$path.tmp: $!";
    print $fh sha256_hex($KEY), " bench\n";
    print $fh sha256_hex($tokens[$_ - 1]), " scale$_\n" for 1 .. $used;
    print $fh sha256_hex("$KEY filler $_"), " filler$_\n" for $used + 1 .. $n;
    close($fh) or die "$path.tmp: $!";
    chmod(0640, "$path.tmp");
    rename("$path.tmp", $path) or die "rename $path: $!";

    write_file("$DIR/tokens-scale.txt", join("\n", @tokens) . "\n");
    unlink glob("$DIR/*.scale.lua");

    return (-s $path) / 1e6;
}

sub max_latency_ms {
    my ($out) = @_;
    my ($v, $unit) = $out =~ /Latency\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)\b/;
    return 0 unless defined $v;
    return $unit eq 'us' ? $v / 1000 : $unit eq 's' ? $v * 1000 : $v;
}

# nginx -t and a start with $n keys, then requests at -c8
sub key_scale {
    my ($n) = @_;

    stop('gateway');
    my $mb = write_keys("$DIR/keys", $n);

    my $t0 = time;
    my @c0 = (times)[2, 3];
    run_capture("$NGINX -t -q -p $DIR/gw/ -c $DIR/gw/nginx.conf");
    my @c1 = (times)[2, 3];
    my $check = time - $t0;
    my $check_cpu = $c1[0] + $c1[1] - $c0[0] - $c0[1];

    $t0 = time;
    spawn('gateway', "$DIR/gw/out.log", 'taskset', '-c', '0', $NGINX,
          '-p', "$DIR/gw/", '-c', "$DIR/gw/nginx.conf");
    wait_port($PORT{b});
    wait_for(sub { worker_pid() }, 'the gateway worker');
    my $start = time - $t0;

    wrk('b', 8, 'body-1k-start.json', 1, tokens => 'scale');
    my $r = wrk('b', 8, 'body-1k-start.json', 0, tokens => 'scale');

    return { mb => $mb, check_s => $check, check_cpu_s => $check_cpu,
             start_s => $start,
             rps => $r->{rps}, cpu => $r->{cpu_us},
             max_ms => max_latency_ms($r->{out}) };
}

sub key_scale_done {
    stop('gateway');
    write_file("$DIR/keys", sha256_hex($KEY) . " bench\n");
    spawn('gateway', "$DIR/gw/out.log", 'taskset', '-c', '0', $NGINX,
          '-p', "$DIR/gw/", '-c', "$DIR/gw/nginx.conf");
    wait_port($PORT{b});
    wait_for(sub { worker_pid() }, 'the gateway worker');
}

# the worker reads a changed key file in its event loop: how long do the
# requests in flight wait meanwhile
sub key_reread {
    my ($n) = @_;

    my $mb = write_keys("$DIR/keys", $n);
    my $seconds = $QUICK ? 3 : 5;
    sleep 2;                    # read once (the worker looks every second)

    my $base = wrk('b', 8, 'body-1k-start.json', 0, tokens => 'scale',
                   seconds => $seconds);

    my $pid = fork() // die "fork: $!";
    if ($pid == 0) {
        sleep $seconds / 2;
        write_keys("$DIR/keys", $n);    # the same keys, a new file
        POSIX::_exit(0);                # not END: it would stop everything
    }

    my $r = wrk('b', 8, 'body-1k-start.json', 0, tokens => 'scale',
                seconds => $seconds);
    waitpid($pid, 0);

    write_file("$DIR/keys", sha256_hex($KEY) . " bench\n");
    sleep 2;

    return { keys => $n, mb => $mb, max_ms => max_latency_ms($r->{out}),
             base_max_ms => max_latency_ms($base->{out}) };
}

sub route_policy {
    my ($n) = @_;

    my %routes = map { ("scale-$_" => { steps => [{ provider => 'fake',
                                        model => "scale-model-$_" }] }) }
                 1 .. $n - 1;
    $routes{bench} = { steps => [{ provider => 'fake',
                                   model => 'bench-provider-model' }] };

    return {
        decision_cache_ms => 1000,
        providers => {
            fake => { upstream => 'tg_fake', zone => 'local',
                      endpoints => ['chat'] },
        },
        routes => \%routes,
    };
}

# policyd with $n routes: from start to its socket, decisions for one
# route, and the model list through the gateway
sub route_scale {
    my ($n) = @_;

    stop('policyd');
    write_file("$DIR/policy-scale.json", encode_json(route_policy($n)));

    unlink "$DIR/policyd.sock";
    my $t0 = time;
    spawn('policyd', "$DIR/policyd.log", 'taskset', '-c', '0', $POLICYD,
          '-c', "$DIR/policy-scale.json", '-s', "$DIR/policyd.sock");
    wait_for(sub { -S "$DIR/policyd.sock" }, 'the policyd socket');
    my $load = time - $t0;
    my $load_cpu = cpu_ticks($proc{policyd}) / $CLK_TCK;

    my $out = run_capture("taskset -c 1 $DIR/policyd_load -s $DIR/policyd.sock "
                          . "-c 4 -w 32 -d " . ($QUICK ? 1 : 3));
    my %v = $out =~ /(\w+)=([\d.]+)/g;

    sleep 0.5;                  # the gateway's connections are back
    my ($status, $ms, $bytes) = split ' ', run_capture(
        "curl -s -o /dev/null -m 30 -w '%{http_code} %{time_total} "
        . "%{size_download}' -H 'Authorization: Bearer $KEY' "
        . "http://127.0.0.1:$PORT{b}/v1/models");

    return { load_s => $load, load_cpu_s => $load_cpu, rate => $v{rate} // 0, p50_us => $v{p50_us} // 0,
             models_status => $status // 0, models_ms => ($ms // 0) * 1000,
             models_bytes => $bytes // 0 };
}

sub route_scale_done {
    stop('policyd');
    start_policyd();
    sleep 0.5;
}

# --- limits: a client limit profile met by every decision ------------------

# Every decision of the bench's client meets a limit profile (rpm, tpm and
# concurrent, far above any rate here: nothing is refused, the cost of
# counting is what is measured), its counters in policyd's memory or in a
# redis-server on a unix socket in $DIR (on CPU1 with the client: the
# store is another process, as it would be another machine).  policyd
# alone first, then the gateway, whose key record names the profile
# (limit=) as an operator's would.

sub limits {
    section('limits: a client limit profile met by every decision, in memory '
            . 'and in Redis');
    print "no redis-server in PATH: the Redis rows are skipped (make deps "
        . "installs it)\n" unless $REDIS;

    my @modes = ('memory', $REDIS ? 'redis' : ());
    my %l = (profile => limits_profile(),
             redis => $REDIS ? 'redis-server ' . redis_version()
                             : 'skipped: no redis-server');

    start_redis() if $REDIS;

    print "policyd alone with each decision's REPORT: policyd on CPU0, "
        . "policyd_load and redis-server on CPU1\n";
    printf "%-8s %-42s %12s %9s %9s\n", 'limits', 'shape', 'decisions/s',
           'p50', 'p99';

    for my $mode ('none', @modes) {
        limits_policyd($mode);

        for my $shape ([4, 32, 'pipelined: 4 connections x 32 in flight'],
                       [1, 1, 'one at a time'])
        {
            my $v = limits_load($mode, $shape->[0], $shape->[1]);
            $l{policyd}{$mode}{"$shape->[0]x$shape->[1]"} = $v;
            printf "%-8s %-42s %12.0f %7.1fus %7.1fus\n", $mode, $shape->[2],
                   $v->{rate}, $v->{p50_us}, $v->{p99_us};
        }
    }

    print "the gateway, the bench key's record with limit=: B/A against bare "
        . "nginx, 1 KB bodies; cpu: the worker's, policyd's and "
        . "redis-server's a request\n";
    printf "%5s %-8s %10s %10s %7s %9s %9s %9s %9s %8s %8s\n", '-c',
           'limits', 'A rps', 'B rps', 'B/A', 'A p50', 'B p50', 'A p99',
           'B p99', 'B cpu', '+cpu';

    for my $mode (@modes) {
        limits_policyd($mode);
        limits_key(1);

        for my $c (32, 1) {
            my $r = compare($c, 'body-1k-start.json');
            $l{gateway}{$mode}{$c} = $r;
            printf "%5d %-8s %10.0f %10.0f %7.3f %7.0fus %7.0fus %7.0fus "
                 . "%7.0fus %6.2fus %6.2fus\n",
                   $c, $mode, $r->{a_rps}, $r->{b_rps}, $r->{ratio},
                   $r->{a_p50}, $r->{b_p50}, $r->{a_p99}, $r->{b_p99},
                   $r->{b_cpu}, $r->{b_cpu} - $r->{a_cpu};
        }

        if ($mode eq 'redis') {
            my $st = policyd_status()->{redis} // {};
            $l{redis_status} = { map { $_ => $st->{$_} }
                                 qw(state timeouts errors) };
        }
    }

    if ($REDIS) {
        my ($p, $g) = ($l{policyd}, $l{gateway});
        $l{redis_added_p50_c1_us} = $g->{redis}{1}{b_p50}
                                    - $g->{memory}{1}{b_p50};
        # the same, each mode's B less the A of its own rounds: less moved
        # by a machine that got busier between the two
        $l{redis_added_p50_c1_vs_a_us} =
            ($g->{redis}{1}{b_p50} - $g->{redis}{1}{a_p50})
            - ($g->{memory}{1}{b_p50} - $g->{memory}{1}{a_p50});
        $l{redis_added_p50_policyd_1x1_us} = $p->{redis}{'1x1'}{p50_us}
                                             - $p->{memory}{'1x1'}{p50_us};
        printf "a Redis round trip adds at -c1: p50 %.0f us through the "
             . "gateway (%.0f us over each one's A), %.1f us to policyd "
             . "alone (one at a time); Redis timeouts %d, errors %d\n",
               $l{redis_added_p50_c1_us}, $l{redis_added_p50_c1_vs_a_us},
               $l{redis_added_p50_policyd_1x1_us},
               $l{redis_status}{timeouts} // 0, $l{redis_status}{errors} // 0;
    }

    # back to the bench's key and policy, without limits
    limits_key(0);
    limits_policyd('none');
    limits_key(0);
    stop('redis');

    $result{limits} = \%l;
}

sub limits_profile {
    return { rpm => 1_000_000_000, tpm => 1_000_000_000,
             concurrent => 100_000 };
}

# policyd with the bench's policy (none), or with the limit profile in
# memory or in Redis.  With Redis on_redis_error is "closed": a decision
# that Redis did not answer is a 503 and rejects the run, rather than one
# counted in memory unseen.
sub limits_policyd {
    my ($mode) = @_;

    stop('policyd');

    if ($mode eq 'none') {
        start_policyd();
        sleep 0.5;                  # the gateway's connections are back
        return;
    }

    my $p = decode_json(read_file("$DIR/policy.json"));
    $p->{limits} = { profiles => { 'bench-limit' => limits_profile() } };
    $p->{redis} = { address => "unix:$DIR/redis.sock", node_id => 'bench',
                    nodes => 1, timeout_ms => 1000,
                    on_redis_error => 'closed' } if $mode eq 'redis';

    write_file("$DIR/policy-limits-$mode.json", encode_json($p));
    start_policyd("$DIR/policy-limits-$mode.json", 1);

    wait_for(sub { (policyd_status()->{redis}{state} // '') eq 'up' },
             'policyd to reach Redis') if $mode eq 'redis';
    sleep 0.5;
}

# one policyd_load run; rejected when any answer was not a 200 DECISION or,
# with the profile, a DECISION came without the client's levels (it did not
# meet the limit)
sub limits_load {
    my ($mode, $c, $w) = @_;

    my $out = run_capture("taskset -c 1 $DIR/policyd_load -s $DIR/policyd.sock "
                          . "-c $c -w $w -r -d " . ($QUICK ? 2 : 5)
                          . ($mode eq 'none' ? '' : ' -l bench-limit'));
    my %v = $out =~ /(\w+)=([\d.]+)/g;
    $_ += 0 for values %v;

    die "rejected: policyd_load, limits $mode, ${c}x$w:\n$out"
        if !$v{decisions} || $v{errors}
           || ($mode ne 'none' && $v{limited} != $v{decisions});

    return \%v;
}

# the bench key's record with limit=bench-limit or without; the worker
# reads the file again by itself (every second): until then the probe fails
sub limits_key {
    my ($limited) = @_;

    write_file("$DIR/keys", sha256_hex($KEY) . " bench"
                            . ($limited ? " limit=bench-limit" : '') . "\n");

    wait_for(sub {
        my $h = run_capture("curl -s -o /dev/null -D - -H 'Authorization: "
            . "Bearer $KEY' --data-binary \@$DIR/body-1k-start.json "
            . "http://127.0.0.1:$PORT{b}/v1/chat/completions");
        $h =~ m{^HTTP/\S+ 200}
            && ($h =~ /^x-ratelimit-limit-requests:/mi ? 1 : 0) == $limited;
    }, 'the gateway to answer 200 ' . ($limited ? 'with' : 'without')
       . ' x-ratelimit headers');
}

sub start_redis {
    unlink "$DIR/redis.sock";
    spawn('redis', "$DIR/redis.log", 'taskset', '-c', '1', $REDIS,
          '--port', '0', '--unixsocket', "$DIR/redis.sock",
          '--unixsocketperm', '700', '--save', '', '--appendonly', 'no',
          '--dir', $DIR);
    wait_for(sub { -S "$DIR/redis.sock" }, 'redis-server');
}

sub redis_version {
    my ($v) = `$REDIS --version 2>&1` =~ /v=(\S+)/;
    return $v // '?';
}

# --- the processes ----------------------------------------------------------

sub setup {
    remove_tree($DIR);
    make_path($DIR, map { "$DIR/$_" } qw(gw prov));

    system('gcc', '-std=c11', '-O2', '-Wall', '-Wextra', '-Werror',
           "-I$ROOT/proto", "$ROOT/bench/policyd_load.c",
           '-o', "$DIR/policyd_load") == 0
        or die "cannot build bench/policyd_load.c\n";

    # the usage reader alone, built as the module builds it
    my $ngx = "$ROOT/build/nginx";
    system('gcc', '-std=gnu11', '-O2', '-Wall', '-Wextra', '-Werror',
           '-Wno-unused-parameter',
           (map { "-I$ngx/$_" } qw(src/core src/event src/event/modules
                                   src/os/unix objs)),
           "-I$ROOT/ngx_tailgate_module", "$ROOT/bench/usage_read.c",
           "$ROOT/ngx_tailgate_module/ngx_tailgate_usage.c",
           '-o', "$DIR/usage_read") == 0
        or die "cannot build bench/usage_read.c (make all first)\n";

    # the JSON scanner alone, as built (SSE2) and scalar
    for my $v (['json_read', ''], ['json_read_scalar', '-DNGX_TAILGATE_SCALAR']) {
        system(join ' ', 'gcc -std=gnu11 -O2 -Wall -Wextra -Werror',
               '-Wno-unused-parameter', $v->[1],
               (map { "-I$ngx/$_" } qw(src/core src/event src/event/modules
                                       src/os/unix objs src/http
                                       src/http/modules src/http/v2)),
               (map { "-I$ROOT/$_" } qw(ngx_tailgate_module proto fuzz/ngx
                                        fuzz/harness)),
               "$ROOT/bench/json_read.c",
               "$ROOT/ngx_tailgate_module/ngx_tailgate_json.c",
               "$ROOT/fuzz/ngx/ngx_shim.c", "-o $DIR/$v->[0]") == 0
            or die "cannot build bench/json_read.c\n";
    }

    write_file("$DIR/keys", sha256_hex($KEY) . " bench\n");

    # JWT: an RSA and an EC key; one token each to repeat, and more tokens
    # than the gateway remembers (tailgate_jwt_cache below) to verify anew

    system('gcc', '-std=c11', '-O2', '-Wall', '-Wextra', '-Werror',
           "$ROOT/bench/jwt_mint.c", '-o', "$DIR/jwt_mint", '-lcrypto') == 0
        or die "cannot build bench/jwt_mint.c\n";

    for my $k (['rs', 'RS256', 'RSA -pkeyopt rsa_keygen_bits:2048'],
               ['es', 'ES256', 'EC -pkeyopt ec_paramgen_curve:P-256'])
    {
        my ($name, $alg, $opts) = @$k;

        run_capture("openssl genpkey -algorithm $opts -out $DIR/jwt-$name.key");
        run_capture("openssl pkey -in $DIR/jwt-$name.key -pubout "
                    . "-out $DIR/jwt-$name.pub");
        run_capture("$DIR/jwt_mint $alg $DIR/jwt-$name.key $name 1 "
                    . "> $DIR/tokens-$name-same.txt");
        run_capture("$DIR/jwt_mint $alg $DIR/jwt-$name.key $name "
                    . ($QUICK ? 3000 : 6000) . " > $DIR/tokens-$name-many.txt");
        -s "$DIR/tokens-$name-many.txt" or die "cannot mint $alg tokens\n";
    }

    # DPoP: a client key of each kind, and an ES256 token bound to it
    for my $k (['es', 'EC -pkeyopt ec_paramgen_curve:P-256'],
               ['rs', 'RSA -pkeyopt rsa_keygen_bits:2048'])
    {
        my ($name, $opts) = @$k;

        run_capture("openssl genpkey -algorithm $opts -out $DIR/dpop-$name.key");
        run_capture("$DIR/jwt_mint bound ES256 $DIR/jwt-es.key es "
                    . "$DIR/dpop-$name.key > $DIR/token-dpop-$name.txt");
        -s "$DIR/token-dpop-$name.txt" or die "cannot mint a DPoP token\n";
    }

    write_file("$DIR/tokens-key.txt", "$KEY\n");
    symlink("$ROOT/conf/tailgate", "$DIR/gw/tailgate");

    write_file("$DIR/policy.json", encode_json({
        decision_cache_ms => 1000,
        providers => {
            fake => { upstream => 'tg_fake', zone => 'local',
                      endpoints => ['chat', 'transcriptions'] },
            sse  => { upstream => 'tg_sse', zone => 'local',
                      endpoints => ['chat'] },
            sse_native => { upstream => 'tg_sse', zone => 'local',
                            endpoints => ['chat', 'responses'] },
        },
        routes => {
            bench       => { steps => [{ provider => 'fake',
                                         model => 'bench-provider-model' }] },
            'bench-sse' => { steps => [{ provider => 'sse',
                                         model => 'bench-sse-model' }] },
            'bench-sse-native' => { steps => [{ provider => 'sse_native',
                                                model => 'bench-sse-model' }] },
        },
    }));

    # the provider, as bench/callgrind.sh starts it too
    my $prov = read_file("$ROOT/bench/provider.conf");
    my %fill = (DIR => "$DIR/prov", PORT => $PORT{provider},
                USER => $> == 0 ? 'user root;' : '');
    $prov =~ s/\@(DIR|PORT|USER)\@/$fill{$1}/g;
    write_file("$DIR/prov/nginx.conf", $prov);

    # the same nginx, the same settings: A without the module's directives,
    # with the proxy timeouts of tailgate/locations.conf (long generations)
    my $common = join '', map { "        $_\n" }
                 grep { /\S/ && !/^#/ }
                 split /\n/, read_file("$ROOT/bench/bare.conf");

    write_file("$DIR/gw/nginx.conf", <<"EOF");
load_module $MODULE;
worker_processes 1;
daemon off;
pid $DIR/gw/nginx.pid;
error_log $DIR/gw/error.log warn;
@{[ $> == 0 ? 'user root;' : '' ]}
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $DIR/gw/body;
    proxy_temp_path $DIR/gw/proxy;

    tailgate_policyd unix:$DIR/policyd.sock;
    tailgate_keys $DIR/keys;

    tailgate_jwt_key RS256 $DIR/jwt-rs.pub kid=rs;
    tailgate_jwt_key ES256 $DIR/jwt-es.pub kid=es;
    tailgate_jwt_issuer https://idp.bench;
    tailgate_jwt_audience tailgate;
    tailgate_jwt_cache 1024;

    # every proof the auth section sends stays until its iat and the window
    # are past: some 700000 entries, more than a full run sends
    tailgate_dpop_replay_cache 16m;

    upstream tg_fake {
        server 127.0.0.1:$PORT{provider};
        keepalive 256;
    }

    upstream tg_sse {
        server 127.0.0.1:$PORT{sse};
        keepalive 16;
    }

    tailgate_private_upstream tg_fake tg_sse;

    # A: bare nginx proxying
    server {
        listen 127.0.0.1:$PORT{a} backlog=4096;
        keepalive_requests 1000000;

        location /v1/ {
$common
            proxy_pass http://tg_fake;
        }

        # uploads: the buffers of tailgate/locations.conf's, to a file too
        location = /v1/audio/transcriptions {
            client_max_body_size 25m;
            client_body_buffer_size 1m;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_request_buffering on;
            proxy_pass http://tg_fake;
        }
    }

    # A for streams: the same, to the streaming provider
    server {
        listen 127.0.0.1:$PORT{a_sse};

        location /v1/ {
$common
            proxy_pass http://tg_sse;
        }
    }

    # B: Tailgate
    server {
        listen 127.0.0.1:$PORT{b} backlog=4096;
        keepalive_requests 1000000;

        # long enough for proofs minted a few seconds before their run
        tailgate_dpop on;
        tailgate_dpop_window 300s;

        include tailgate/locations.conf;
    }
}
EOF

    setup_vs() if $VS;

    # request bodies: 1 KB to 1 MB, the model near the start or the end
    my %size = ('1k' => 1024, '10k' => 10_240, '100k' => 102_400,
                '200k' => 204_800, '500k' => 512_000, '1m' => 1_048_576);

    for my $name (keys %size) {
        my $fill = 'x' x ($size{$name} - 80);
        my $msgs = qq("messages":[{"role":"user","content":"$fill"}]);

        write_file("$DIR/body-$name-start.json", qq({"model":"bench",$msgs}));
        write_file("$DIR/body-$name-end.json", qq({$msgs,"model":"bench"}));
    }

    # an upload nginx keeps in a temporary file (over 1m)
    write_file("$DIR/upload-3m.form",
        "--bench-b0undary\r\nContent-Disposition: form-data; name=\"model\""
        . "\r\n\r\nbench\r\n--bench-b0undary\r\nContent-Disposition: "
        . "form-data; name=\"file\"; filename=\"a.wav\"\r\n"
        . "Content-Type: audio/wav\r\n\r\n" . ('RIFF-audio' x 314_573)
        . "\r\n--bench-b0undary--\r\n");
}

# V: the other checkout's module, conf and policyd, on its own port and
# socket, with the same keys, policy and provider

sub setup_vs {
    -f "$VS/build/ngx_tailgate_module.so" && -x "$VS/build/policyd"
        or die "BENCH_VS=$VS: build it first (make -C $VS all)\n";

    make_path("$DIR/gv");
    symlink("$VS/conf/tailgate", "$DIR/gv/tailgate");

    write_file("$DIR/gv/nginx.conf", <<"EOF");
load_module $VS/build/ngx_tailgate_module.so;
worker_processes 1;
daemon off;
pid $DIR/gv/nginx.pid;
error_log $DIR/gv/error.log warn;
@{[ $> == 0 ? 'user root;' : '' ]}
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $DIR/gv/body;
    proxy_temp_path $DIR/gv/proxy;

    tailgate_policyd unix:$DIR/policyd-vs.sock;
    tailgate_keys $DIR/keys;

    upstream tg_fake {
        server 127.0.0.1:$PORT{provider};
        keepalive 256;
    }

    tailgate_private_upstream tg_fake;

    server {
        listen 127.0.0.1:$PORT{v} backlog=4096;
        keepalive_requests 1000000;

        include tailgate/locations.conf;
    }
}
EOF
}

sub start_all {
    spawn('provider', "$DIR/prov/out.log", 'taskset', '-c', '1', $NGINX,
          '-p', "$DIR/prov/", '-c', "$DIR/prov/nginx.conf");
    spawn('sse', "$DIR/sse.log", 'taskset', '-c', '1', $^X,
          "$ROOT/t/lib/mock_provider.pl", '--port', $PORT{sse},
          '--name', 'sse', '--dir', $DIR);
    write_file("$DIR/sse.control.json",
               encode_json({ stream_chunks => 20, stream_interval_ms => 20 }));

    start_policyd();

    spawn('gateway', "$DIR/gw/out.log", 'taskset', '-c', '0', $NGINX,
          '-p', "$DIR/gw/", '-c', "$DIR/gw/nginx.conf");

    if ($VS) {
        unlink "$DIR/policyd-vs.sock";
        spawn('policyd_vs', "$DIR/policyd-vs.log", 'taskset', '-c', '0',
              "$VS/build/policyd", '-c', "$DIR/policy.json",
              '-s', "$DIR/policyd-vs.sock");
        wait_for(sub { -S "$DIR/policyd-vs.sock" }, 'the V policyd socket');
        spawn('gateway_vs', "$DIR/gv/out.log", 'taskset', '-c', '0', $NGINX,
              '-p', "$DIR/gv/", '-c', "$DIR/gv/nginx.conf");
    }

    # the collector (otlp) listens only while its section runs
    wait_port($PORT{$_}) for qw(provider a b sse a_sse), $VS ? 'v' : ();
    wait_for(sub { worker_pid() }, 'the gateway worker');
    wait_for(sub { worker_pid('gateway_vs') }, 'the V gateway worker') if $VS;

    # one request through B proves the whole path before measuring
    my $probe = run_capture("curl -s -o /dev/null -w '%{http_code}' "
        . "-H 'Authorization: Bearer $KEY' --data-binary \@$DIR/body-1k-start.json "
        . "http://127.0.0.1:$PORT{b}/v1/chat/completions");
    die "the gateway does not answer 200 (got $probe); see $DIR/gw/error.log\n"
        unless $probe eq '200';
}

# the bench's policy, or another file of it; -a: its admin socket too
sub start_policyd {
    my ($policy, $admin) = @_;

    unlink "$DIR/policyd.sock";
    spawn('policyd', "$DIR/policyd.log", 'taskset', '-c', '0', $POLICYD,
          '-c', $policy // "$DIR/policy.json", '-s', "$DIR/policyd.sock",
          $admin ? ('-a', "$DIR/policyd-admin.sock") : ());
    wait_for(sub { -S "$DIR/policyd.sock" }, 'the policyd socket');
}

# policyd status through the admin socket, decoded ({} when it says nothing)
sub policyd_status {
    my $out = `$POLICYD status -a $DIR/policyd-admin.sock 2>/dev/null`;
    return (eval { decode_json($out) } // {})->{policyd} // {};
}

# policyd again, exporting traces to a mock collector on CPU1 or not
sub restart_policyd {
    my ($export) = @_;

    stop('policyd');
    stop('otlp');

    if (!$export) {
        start_policyd();
        return;
    }

    unlink "$DIR/otlp.otlp.jsonl";
    spawn('otlp', "$DIR/otlp.log", 'taskset', '-c', '1', $^X,
          "$ROOT/t/lib/mock_otlp.pl", '--port', $PORT{otlp}, '--name', 'otlp',
          '--dir', $DIR);
    wait_port($PORT{otlp});

    local $ENV{OTLP_ENDPOINT} = "127.0.0.1:$PORT{otlp}";
    unlink "$DIR/policyd.sock";
    spawn('policyd', "$DIR/policyd.log", 'taskset', '-c', '0', $POLICYD,
          '-c', "$DIR/policy.json", '-s', "$DIR/policyd.sock",
          '-a', "$DIR/policyd-admin.sock");
    wait_for(sub { -S "$DIR/policyd.sock" }, 'the policyd socket');
}

# the exporter's counts, once its queue is empty (at most 10 s)
sub policyd_traces {
    my $t;
    my $deadline = time + 10;

    do {
        $t = policyd_status()->{traces} // {};
        sleep 0.2 if ($t->{queued} // 0) > 0;
    } while (($t->{queued} // 0) > 0 && time < $deadline);

    return $t;
}

sub start_fake_policyd {
    my ($delay_ms) = @_;

    unlink "$DIR/policyd.sock";
    write_file("$DIR/fake.json", encode_json({
        decision => { provider => 'fake', route => 'bench', upstream => 'tg_fake',
                      scheme => 'http', host => 'tg_fake', zone => 'local',
                      path => '/v1/chat/completions',
                      provider_model => 'bench-provider-model' },
        delay_ms => { '*' => $delay_ms },
    }));
    spawn('fake_policyd', "$DIR/fake_policyd.log", 'taskset', '-c', '0', $^X,
          "$ROOT/t/lib/fake_policyd.pl", '--socket', "$DIR/policyd.sock",
          '--config', "$DIR/fake.json");
    wait_for(sub { -S "$DIR/policyd.sock" }, 'the fake policyd socket');
}

sub spawn {
    my ($name, $log, @cmd) = @_;

    my $pid = fork() // die "fork: $!";

    if ($pid == 0) {
        setpgrp(0, 0);
        open(STDOUT, '>>', $log) or die "$log: $!";
        open(STDERR, '>&', \*STDOUT) or die "stderr: $!";
        exec(@cmd) or die "exec $cmd[0]: $!";
    }

    $proc{$name} = $pid;
    return $pid;
}

sub stop {
    my ($name) = @_;

    my $pid = delete $proc{$name} or return;
    kill 'TERM', -$pid;

    my $deadline = time + 5;
    while (time < $deadline) {
        return if waitpid($pid, WNOHANG) == $pid;
        sleep 0.05;
    }

    kill 'KILL', -$pid;
    waitpid($pid, 0);
}

sub stop_all {
    stop($_) for keys %proc;
}

# the gateway's worker, and with policyd running its pid: for /proc
sub worker_pid {
    my $master = $proc{ $_[0] // 'gateway' } or return;

    # taskset exec()s nginx: the master is that pid
    for my $p (glob '/proc/[0-9]*') {
        my ($pid) = $p =~ /(\d+)$/;
        my $stat = read_file("$p/stat", 1) or next;
        my ($ppid) = $stat =~ /\)\s+\S+\s+(\d+)/ or next;
        next unless $ppid == $master;
        return $pid if read_file("$p/cmdline", 1) =~ /worker process/;
    }

    return;
}


# --- small things -------------------------------------------------------------

sub check_tools {
    for my $tool (qw(wrk taskset curl gcc)) {
        system("command -v $tool >/dev/null") == 0
            or die "$tool is needed (make deps installs it)\n";
    }

    -x $NGINX or die "no nginx at $NGINX\n";
    -f $MODULE && -x $POLICYD or die "build first: make\n";
}

sub section { print "\n== $_[0]\n" }

sub lua {
    my ($body, $ct) = @_;
    $ct //= 'application/json';

    my $file = "$DIR/$body.lua";
    return $file if -f $file;

    write_file($file, <<"EOF");
wrk.method = "POST"
local f = io.open("$DIR/$body", "rb")
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "$ct"
wrk.headers["Authorization"] = "Bearer $KEY"
EOF

    return $file;
}

# a credential per request, round robin from a file of them (one line each)
sub lua_tokens {
    my ($body, $tokens) = @_;

    my $file = "$DIR/$body.$tokens.lua";
    return $file if -f $file;

    write_file($file, <<"EOF");
local tokens = {}
for line in io.lines("$DIR/tokens-$tokens.txt") do tokens[#tokens + 1] = line end
local f = io.open("$DIR/$body", "rb")
wrk.body = f:read("*a")
f:close()
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local i = 0
request = function()
    i = i + 1
    wrk.headers["Authorization"] = "Bearer " .. tokens[i % #tokens + 1]
    return wrk.format()
end
EOF

    return $file;
}

# Authorization: DPoP with the bound token, and a new proof each request
# from a file of them, read as it goes: each line once.  Only with wrk
# -t1: every thread's Lua state would read the file from its start.  wrk
# asks for one request before it starts, to see whether it pipelines,
# and never sends it: that proof is lost, not sent twice.
sub lua_dpop {
    my ($body, $proof) = @_;

    my $file = "$DIR/$body.dpop-$proof.lua";
    return $file if -f $file;

    write_file($file, <<"EOF");
local t = io.open("$DIR/token-dpop-$proof.txt", "r")
local token = t:read("*l")
t:close()
local proofs = io.open("$DIR/proofs-dpop-$proof.txt", "r")
local f = io.open("$DIR/$body", "rb")
wrk.body = f:read("*a")
f:close()
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "DPoP " .. token
request = function()
    wrk.headers["DPoP"] = proofs:read("*l") or ""
    return wrk.format()
end
EOF

    return $file;
}

sub cpu_ticks {
    my $sum = 0;

    for my $pid (@_) {
        my $stat = read_file("/proc/$pid/stat", 1) or next;
        my @f = split ' ', (split /\)\s+/, $stat, 2)[1];
        $sum += $f[11] + $f[12];    # utime, stime
    }

    return $sum;
}

# minor page faults of the process so far: memory touched anew
sub faults {
    my ($pid) = @_;
    my $stat = read_file("/proc/$pid/stat", 1) or return 0;
    return (split ' ', (split /\)\s+/, $stat, 2)[1])[7];
}

sub rss {
    my ($pid) = @_;
    my ($kb) = read_file("/proc/$pid/status", 1) =~ /^VmRSS:\s+(\d+)/m;
    return $kb // 0;
}

sub median {
    my @v = sort { $a <=> $b } grep { defined } @_;
    return 0 unless @v;
    return @v % 2 ? $v[$#v / 2] : ($v[@v / 2 - 1] + $v[@v / 2]) / 2;
}

sub run_capture {
    my ($cmd) = @_;
    my $out = `$cmd 2>&1`;
    return $out;
}

sub wait_port {
    my ($port) = @_;
    wait_for(sub { IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port",
                                         Timeout => 1) }, "port $port");
}

sub wait_for {
    my ($cond, $what) = @_;

    my $deadline = time + 15;
    while (time < $deadline) {
        return 1 if $cond->();
        sleep 0.05;
    }

    die "timed out waiting for $what\n";
}

# the GLIBC_TUNABLES a systemd drop-in sets
sub unit_tunables {
    my ($unit) = @_;
    my ($v) = read_file($unit, 1) =~ /^Environment=GLIBC_TUNABLES=(\S+)$/m;
    return $v // die "$unit sets no GLIBC_TUNABLES\n";
}

sub machine {
    my ($model) = read_file('/proc/cpuinfo', 1) =~ /^model name\s*:\s*(.+)$/m;
    chomp(my $cores = `nproc`);
    return ($model // 'unknown CPU') . ", $cores cores";
}

sub nginx_version {
    my ($v) = `$NGINX -v 2>&1` =~ m{nginx/(\S+)};
    return $v // '?';
}

sub openssl_version {
    my ($v) = `$NGINX -V 2>&1` =~ /(running with OpenSSL [^)]+|built with OpenSSL \S+ \S+)/;
    return $v // 'OpenSSL ?';
}

sub read_file {
    my ($f, $quiet) = @_;
    open(my $fh, '<', $f) or do { return '' if $quiet; die "$f: $!\n" };
    local $/;
    return <$fh> // '';
}

# 0640: policyd refuses a policy file that every user may read
sub write_file {
    my ($f, $text) = @_;
    open(my $fh, '>', $f) or die "$f: $!\n";
    print $fh $text;
    close($fh) or die "$f: $!\n";
    chmod 0640, $f or die "$f: $!\n";
}
