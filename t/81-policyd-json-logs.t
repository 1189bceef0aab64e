#!/usr/bin/perl
#
# policyd's JSON logs: with -j, or "log_format": "json" in the policy, every
# line is one JSON object a strict reader takes - time, level, pid, event,
# fields, msg - also when the values are odd (quotes, control bytes, bytes
# that are not UTF-8, long ones) and at debug level.  Every log call in
# policyd's source names an event and as many fields as its format has
# conversions, so no line is left without them.  A reload may change the
# format; the text format is nginx's error.log shape, as before.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use JSON::PP ();
use Test::More;
use Tailgate::Gateway;
use Tailgate::OTLP;

my $strict = JSON::PP->new->utf8;
my $root = "$FindBin::Bin/..";

# --- every call site, read from the source --------------------------------

my (%events, $calls);

for my $file (sort glob("$root/policyd/src/*.c")) {
    next if $file =~ m{/log(_json)?\.c$};

    my $src = do { local $/; open my $fh, '<', $file or die "$file: $!"; <$fh> };
    (my $short = $file) =~ s{.*/}{};

    while ($src =~ /\btg_log_(error|warn|info|debug)\s*\(/g) {
        my $at = pos($src);
        my $line = 1 + (substr($src, 0, $at) =~ tr/\n//);

        # three arguments of string literals: event, fields, format
        my @args;
        pos($src) = $at;
        for my $n (1 .. 3) {
            my $lit = '';
            while ($src =~ /\G\s*"((?:[^"\\]|\\.)*)"/gc) {
                $lit .= $1;
            }
            push @args, $lit;
            last unless $src =~ /\G\s*,/gc;
        }

        $calls++;
        my ($event, $fields, $fmt) = @args;
        my $where = "$short:$line";

        like($event // '', qr/^[a-z][a-z_]*(\.[a-z][a-z_]*)+$/,
             "$where: an event name (\"$event\")");

        my @names = grep { length } split / /, $fields // '';
        my @conv = ($fmt // '') =~ /%(?!%)[-+ #0]*(?:\*|\d+)?(?:\.(?:\*|\d+))?(?:hh|h|ll|l|z|j|t|L)?[diouxXcspfFeEgGaA]/g;
        my $pct = () = ($fmt // '') =~ /%%/g;

        is(scalar @names, scalar @conv,
           "$where: $event names its " . scalar(@conv) . ' fields')
            or diag("fields \"$fields\", format \"$fmt\"");

        my %seen;
        ok(!grep({ $_ ne '-' && $seen{$_}++ } @names)
           && !grep({ $_ ne '-' && !/^[a-z][a-z0-9_]*$/ } @names),
           "$where: field names are distinct snake_case");

        $events{$event}++;
    }
}

ok($calls >= 80, "$calls log calls in policyd's source");

# --- a gateway whose policyd logs JSON at debug level ----------------------

my $t = Tailgate::Gateway->new->skip_unless_built;

my $otlp_port = $t->port('otlp-away');    # nobody listens there
my $admin = $t->dir . '/admin.sock';

my $policy = Tailgate::Gateway::default_policy();
$policy->{usage} = { log => $t->dir . '/usage.jsonl' };
$policy->{providers}{probed} = {
    upstream => 'tg_local', zone => 'local', endpoints => ['chat'],
    health => { url => 'http://127.0.0.1:' . $t->port('probe-away') . '/h',
                interval_ms => 500, timeout_ms => 200, down_after => 1 },
};

my $key = $t->start_gateway(
    policy => $policy, mocks => [qw(local ext)],
    policyd_args => ['-v', '-j', '-a', $admin],
    policyd_env => { OTLP_ENDPOINT => "127.0.0.1:$otlp_port",
                     OTEL_BSP_SCHEDULE_DELAY => 50 });

# odd values where the client chooses them: the model it asks for (the
# module asks policyd of names up to 256 bytes; longer values, cut, are
# policyd/tests/test_log.c's)
my @odd = ("qu\"ote", "back\\slash", "ctl\x01\x1f\x7f", "nl\nline\r",
           "latin1 \xe9\xff", "utf8 \xc3\xa9 \xe2\x80\xa8", "{\"json\":1}",
           'long ' . ('\\"' x 125));

is($t->answered_by($t->chat('qwen')), 'local', 'a request answers');
is($t->answered_by($t->chat('smart')), 'ext', 'through the external one too');
$t->chat('qwen', stream => 1);
$t->http('GET', '/v1/models', headers => { Authorization => "Bearer $key" });

for my $m (@odd) {
    my $body = '{"model":' . JSON::PP->new->latin1->encode([$m]) =~ s/^\[|\]$//gr
               . ',"messages":[]}';
    my $res = $t->post_json('/v1/chat/completions', $key, $body);
    ok($res->{status} >= 400, 'odd model ' . JSON::PP->new->ascii->encode([$m])
                              . ": $res->{status}");
}

# a reload that fails, one that works, the probe that finds nobody

$t->wait_log('policyd.log', qr/"event":"provider.state"/, timeout => 10);
$t->policyd_cmd('status', '-a', $admin);

$t->write_file('policy.json', "{ \"providers\": {\"x\": 1}, \x01 }");
$t->reload_policyd;
$t->wait_log('policyd.log', qr/"event":"reload.failed"/, timeout => 10);

$t->write_policy($policy);
$t->reload_policyd;
$t->wait_log('policyd.log', qr/"event":"reload.done"/, timeout => 10);

$t->wait_log('policyd.log', qr/"event":"otlp.export_failed"/, timeout => 10);
$t->stop_policyd;

my @lines = split /\n/, $t->policyd_log;
ok(@lines > 20, scalar(@lines) . ' lines from policyd');

my (%seen, @bad, %levels, $longest);
for my $line (@lines) {
    my $o = eval { $strict->decode($line) };

    if (ref $o ne 'HASH') {
        push @bad, $line;
        next;
    }

    push @bad, $line
        unless ($o->{time} // '') =~ /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/
               && ($o->{level} // '') =~ /^(error|warn|info|debug)$/
               && ($o->{pid} // '') =~ /^\d+$/
               && ref $o->{fields} eq 'HASH'
               && defined $o->{msg}
               && $events{ $o->{event} // '' };

    $seen{ $o->{event} }++;
    $levels{ $o->{level} }++;
    $longest = length $line if !$longest || length $line > $longest;
}

is(scalar @bad, 0, 'every line one strict JSON object with time, level, '
                   . 'pid, event (one of the source\'s), fields and msg')
    or diag(join "\n", @bad[0 .. ($#bad < 4 ? $#bad : 4)]);

for my $e (qw(start.listening admin.listening connection.accepted
              connection.hello decide.granted decide.refused report.received
              models.answered probe.result provider.state reload.started
              reload.failed policy.error reload.done usage_log.opened
              otlp.exporting otlp.export_failed stop.signal
              connection.closed usage_log.closed_stats otlp.stopped)) {
    ok($seen{$e}, "event $e logged");
}

ok($levels{debug} && $levels{info} && $levels{warn} && $levels{error},
   'all four levels among them');

# the fields carry the values, as they came (what is not UTF-8: U+FFFD)

my @refused = map { $strict->decode($_) }
              grep { /"event":"decide.refused"/ } @lines;
my %routes = map { ($_->{fields}{route} // '') => 1 } @refused;

for my $m (@odd) {
    (my $want = $m) =~ s/\xe9\xff/\x{fffd}\x{fffd}/;
    utf8::decode($want) if $m =~ /^utf8/;
    ok($routes{$want}, 'the model in fields.route: '
                       . JSON::PP->new->ascii->encode([$want]));
}

my ($granted) = map { $strict->decode($_) }
                grep { /"event":"decide.granted"/ } @lines;
is($granted->{fields}{provider}, 'local', 'decide.granted: fields.provider');
like($granted->{fields}{connection}, qr/^\d+$/, '... a number for connection');
ok(!grep({ /"event":"decide.granted"/ && /"connection":"/ } @lines),
   '... written as a JSON number');

my ($failed) = map { $strict->decode($_) }
               grep { /"event":"reload.failed"/ } @lines;
ok($failed && $failed->{level} eq 'error', 'reload.failed at level error');

# nothing secret: the provider key, the client key

my $all = join "\n", @lines;
ok(index($all, $Tailgate::Gateway::PROVIDER_KEY) < 0, 'no provider key');
ok(index($all, $key) < 0, 'no client key');


# --- the policy's log_format, and a reload that changes it -----------------

{
    my $before = length $t->policyd_log;

    $policy->{log_format} = 'json';
    delete $policy->{providers}{probed};
    $t->write_policy($policy);
    $t->start_policyd(env => { EXT_API_KEY => $Tailgate::Gateway::PROVIDER_KEY },
                      args => ['-a', $admin]);
    $t->chat('qwen');

    $policy->{log_format} = 'text';
    $t->write_policy($policy);
    $t->reload_policyd;
    $t->wait_log('policyd.log', qr/policy reloaded/, timeout => 10);
    $t->chat('qwen');

    $policy->{log_format} = 'yaml';
    $t->write_policy($policy);
    $t->reload_policyd;
    $t->wait_log('policyd.log', qr/log_format: expected "text" or "json"/,
                 timeout => 10);
    $t->stop_policyd;

    my @l = split /\n/, substr($t->policyd_log, $before);
    my @json = grep { /^\{/ } @l;
    my @text = grep { m{^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \[(error|warn|info|debug)\] policyd\[\d+\]: } } @l;

    ok(@json >= 2, '"log_format": "json": JSON lines');
    is(scalar(grep { !eval { $strict->decode($_); 1 } } @json), 0,
       '... each strict JSON');
    ok((grep { /"event":"reload.started"/ } @json), '... up to the reload');
    ok((grep { /policy reloaded/ } @text), 'then "text": nginx\'s shape');
    ok((grep { /log_format: expected "text" or "json"/ } @text),
       'a log_format it does not know: a reload error naming it');
    is(scalar(@json) + scalar(@text), scalar(@l), 'no line of a third shape');
}

my ($rc, $out) = $t->policyd_cmd('-t', '-c', $t->dir . '/policy.json',
                                 '-s', $t->dir . '/check.sock');
is($rc, 1, 'policyd -t refuses log_format "yaml"');

$t->done_testing;
