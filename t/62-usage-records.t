#!/usr/bin/perl

# Usage records: the real policyd writes one JSON line per REPORT to the
# usage log of its policy, with the cost from its price table - the same
# cost the module shows in $tailgate_cost - for every endpoint, JSON and
# streams; cached and reasoning tokens; estimates (a broken stream, an
# answer without usage, a provider in "usage": "passive" that is never
# asked for a stream's usage); a fallback's failed attempt, then its
# answer.  The status counts tokens and cost per route, provider and
# client, the clients bounded; "policyd usage" totals the log by group,
# as text, CSV and JSON.  The log is opened again on SIGUSR1, and a
# SIGTERM after load loses no record: lines written = reports sent.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use JSON::PP;
use Test::More;
use Tailgate::Gateway;

my $t = Tailgate::Gateway->new->skip_unless_built;
my $JSON = JSON::PP->new;

my $dir = $t->dir;
my $admin = "$dir/admin.sock";

my %local = (upstream => 'tg_local', zone => 'local',
             endpoints => [qw(chat embeddings speech transcriptions responses)]);

my $policy = {
    providers => {
        local => \%local,
        ext   => { upstream => 'tg_ext', zone => 'external',
                   host => 'api.ext.test', api_key => '${EXT_API_KEY}',
                   endpoints => ['chat'] },
        quiet => { upstream => 'tg_quiet', zone => 'private',
                   endpoints => ['chat'], usage => 'passive' },
    },
    routes => {
        qwen    => { steps => [{ provider => 'local', model => 'qwen' }] },
        emb     => { steps => [{ provider => 'local', model => 'embed' }] },
        tts     => { steps => [{ provider => 'local', model => 'tts' }] },
        stt     => { steps => [{ provider => 'local', model => 'whisper' }] },
        free    => { steps => [{ provider => 'local', model => 'free' }] },
        passive => { steps => [{ provider => 'quiet', model => 'q' }] },
        spill   => { steps => [{ provider => 'ext', model => 'deepseek-chat' },
                               { provider => 'local', model => 'qwen' }],
                     fallback => { on => 'errors' } },
    },
    usage => {
        log => "$dir/usage.jsonl",
        currency => 'USD',
        price_version => '2026-12',
        max_clients => 1,
        prices => {
            local => {
                qwen    => { input => 0.27, cached_input => 0.07, output => 1.10 },
                embed   => { input => 0.02 },
                tts     => { characters => 15 },
                whisper => { audio_minute => 0.006 },
            },
            ext   => { 'deepseek-chat' => { input => 0.5, output => 2 } },
            quiet => { q => { input => 1, output => 3 } },
        },
    },
};

my $bob = $t->new_key;

$t->start_gateway(
    policy => $policy,
    keys => [ bob => $bob ],
    policyd_args => ['-a', $admin],
    http => q{
        log_format rec '$request_id $tailgate_cost $tailgate_tokens_in '
                       '$tailgate_tokens_out $http_x_probe';
    },
    server => 'access_log %%DIR%%/rec.log rec;');

my %mock = map { $_ => $t->mock($_) } qw(local ext quiet);


# the usage log's records, every file given (default: the log)
sub records {
    my @files = @_ ? @_ : ('usage.jsonl');
    my @r;
    for my $f (@files) {
        for my $line (split /\n/, $t->read_file($f)) {
            push @r, $JSON->decode($line);
        }
    }
    return @r;
}

sub lines_in { scalar(() = $t->read_file($_[0] // 'usage.jsonl') =~ /\n/g) }

sub wait_lines {
    my ($n, $file) = @_;
    return $t->wait_for(sub { lines_in($file) >= $n }, timeout => 5);
}

# the access log's line for a request made by $code, once it is there:
# its id, $tailgate_cost, tokens (the client may have its answer before
# nginx writes the line)
my $probes = 0;

sub logged(&) {
    my ($code) = @_;
    my $probe = 'p' . ++$probes;
    {
        local $t->{extra_headers} = { 'X-Probe' => $probe };
        $code->();
    }
    my $req;
    $t->wait_for(sub { $req = last_request($probe) }, timeout => 5);
    return $req // {};
}

# the last line of the requests marked $probe; a line of an earlier
# request may come after the block began
sub last_request {
    my ($probe) = @_;
    my ($line) = grep { / \Q$probe\E$/ } reverse split /\n/,
                 $t->read_file('rec.log');
    return undef unless defined $line;
    my ($id, $cost, $in, $out) = split / /, $line;
    return { id => $id, cost => $cost, in => $in, out => $out };
}

# the records of one request, once $n of them are written
sub records_of {
    my ($id, $n) = @_;
    my @r;
    $t->wait_for(sub {
        @r = grep { ($_->{request_id} // '') eq $id } records();
        @r >= ($n // 1);
    }, timeout => 5);
    return @r;
}

sub stream_of {
    my ($path, $body) = @_;
    my $c = $t->open_post($path, $body);
    $c->read_all(10);
    return $c->raw;
}

sub stream_body {
    my ($model, %extra) = @_;
    return $JSON->encode({ model => $model, stream => JSON::PP::true,
                           messages => [{ role => 'user', content => 'hi' }],
                           %extra });
}

# a record's cost and the module's agree, and the record is this request's
sub same_cost {
    my ($rec, $req, $what) = @_;
    is($rec->{cost}, $req->{cost}, "$what: the cost policyd recorded is "
                                   . "\$tailgate_cost ($req->{cost})");
}

sub transcription_body {
    return "--B\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nstt\r\n"
         . "--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n"
         . "Content-Type: audio/wav\r\n\r\nRIFF....\r\n--B--\r\n";
}


subtest 'chat, JSON: one record, priced as the module shows it' => sub {
    $mock{local}->update(usage => { prompt_tokens => 1000, completion_tokens => 200,
                                    cached_tokens => 400, reasoning_tokens => 50 });
    my $res;
    my $req = logged { $res = $t->chat('qwen') };
    $mock{local}->update(usage => {});
    is($res->{status}, 200, 'answered');

    my ($r) = records_of($req->{id});
    ok($r, 'a record of the request') or return;

    like($r->{time}, qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/, 'its time, RFC 3339 UTC');
    is($r->{client}, 'alice', 'client');
    is($r->{route}, 'qwen', 'route');
    is($r->{provider}, 'local', 'provider');
    is($r->{provider_model}, 'qwen', 'provider model');
    is($r->{response_model}, 'qwen', 'the model that answered');
    is($r->{endpoint}, 'chat', 'endpoint');
    is($r->{outcome}, 'ok', 'outcome');
    is($r->{status}, 200, 'status');
    is($r->{attempt}, 1, 'attempt');
    is_deeply($r->{tokens}, { input => 1000, cached => 400, output => 200,
                              reasoning => 50, total => 1200 },
              'tokens: input, cached, output, reasoning');
    ok(!$r->{estimated}, 'not an estimate');
    # (1000 - 400) x 0.27 + 400 x 0.07 + 200 x 1.10 per 1M tokens
    is($r->{cost}, '0.00041', 'the cost, exactly');
    same_cost($r, $req, 'chat');
    is($r->{currency}, 'USD', 'currency');
    is($r->{price_version}, '2026-12', 'price version');
    ok(defined $r->{ttfb_ms} && defined $r->{total_ms}, 'ttfb and total');
};

subtest 'every endpoint, stream and not: a record each, costs agree' => sub {
    my @cases;

    my $res;

    push @cases, ['chat stream', logged { $t->chat('qwen', stream => 1) }];

    push @cases, ['responses', logged {
        $t->call('/v1/responses', 'qwen', body => { input => 'hi' }) }];

    push @cases, ['responses stream', logged {
        stream_of('/v1/responses', $JSON->encode({ model => 'qwen',
                                                   stream => JSON::PP::true,
                                                   input => 'hi' })) }];

    push @cases, ['embeddings', logged {
        $t->call('/v1/embeddings', 'emb', body => { input => 'hello' }) }];

    push @cases, ['speech', logged {
        $res = $t->post_json('/v1/audio/speech', $t->key,
                             { model => 'tts', input => 'Twenty-one chars here',
                               voice => 'x' }) }];
    is($res->{status}, 200, 'speech answered');

    $mock{local}->update(usage => { seconds => 12.345 });
    push @cases, ['transcription', logged {
        $res = $t->http('POST', '/v1/audio/transcriptions',
                        headers => { Authorization => 'Bearer ' . $t->key,
                                     'Content-Type' => 'multipart/form-data; boundary=B' },
                        body => transcription_body()) }];
    $mock{local}->update(usage => {});
    is($res->{status}, 200, 'transcription answered');

    my %rec;
    for my $c (@cases) {
        my ($what, $req) = @$c;
        my @r = records_of($req->{id});
        is(scalar @r, 1, "$what: one record");
        $rec{$what} = $r[0] // {};
        same_cost($rec{$what}, $req, $what);
        isnt($rec{$what}{cost}, undef, "$what: priced");
    }

    ok($rec{'chat stream'}{stream}, 'the chat stream is a stream');
    is($rec{'chat stream'}{tokens}{output}, 3, 'its usage chunk was read');
    ok(!$rec{'chat stream'}{estimated}, 'not estimated: the gateway asked for it');
    is($rec{'responses stream'}{tokens}{input}, 7, 'response.completed read');
    is($rec{embeddings}{endpoint}, 'embeddings', 'embeddings');
    is($rec{speech}{characters}, 21, 'speech: characters');
    is($rec{speech}{cost}, '0.000315', 'speech: 21 characters at 15 per million');
    is($rec{transcription}{audio_ms}, 12345, 'transcription: audio ms');
    # 12.345 s at 0.006 a minute: 0.0012345
    is($rec{transcription}{cost}, '0.0012345', 'transcription: its minutes priced');
};

subtest 'estimates: a broken stream, an answer without usage' => sub {
    $mock{local}->update(mode => 'drop', drop_after => 2);
    my $broken = logged { stream_of('/v1/chat/completions', stream_body('qwen')) };
    $mock{local}->update(mode => 'ok');

    $mock{local}->update(no_usage => 1);
    my $silent = logged { $t->chat('qwen') };
    $mock{local}->update(no_usage => 0);

    my ($r) = records_of($broken->{id});
    is($r->{outcome}, 'stream_broken', 'the broken stream is recorded as broken');
    ok($r->{estimated}, 'estimated');
    is($r->{tokens}{output}, 3, 'from what it delivered ("tok1 tok2 ")');
    cmp_ok($r->{tokens}{input}, '>', 0, 'and its prompt from the body');
    same_cost($r, $broken, 'broken stream');

    ($r) = records_of($silent->{id});
    is($r->{outcome}, 'ok', 'the answer without usage is ok');
    ok($r->{estimated}, 'and estimated, never a silent zero');
    cmp_ok($r->{tokens}{output}, '>', 0, 'output estimated');
    same_cost($r, $silent, 'no usage');
};

subtest 'a passive provider: never asked for a stream\'s usage' => sub {
    my $req = logged { stream_of('/v1/chat/completions', stream_body('passive')) };

    my $sent = $mock{quiet}->requests->[-1];
    my $body = eval { $JSON->decode($sent->{body}) } // {};
    ok(!exists $body->{stream_options}, 'no stream_options.include_usage added');

    my ($r) = records_of($req->{id});
    ok($r->{estimated}, 'its stream is recorded, estimated');
    is($r->{provider}, 'quiet', 'for the provider');
    same_cost($r, $req, 'passive stream');

    # a stream the client asked usage for still passes it through
    stream_of('/v1/chat/completions',
              stream_body('passive', stream_options => { include_usage => JSON::PP::true }));
    $body = eval { $JSON->decode($mock{quiet}->requests->[-1]{body}) } // {};
    is_deeply($body->{stream_options}, { include_usage => JSON::PP::true },
              "the client's own include_usage goes as it was");

    # an active provider is asked
    $t->chat('qwen', stream => 1);
    $body = eval { $JSON->decode($mock{local}->requests->[-1]{body}) } // {};
    is_deeply($body->{stream_options}, { include_usage => JSON::PP::true },
              'an active provider is asked for it');
};

subtest 'a fallback: the failed attempt, then the answer' => sub {
    $mock{ext}->update(mode => 'status', status => 500);
    my $res;
    my $req = logged { $res = $t->chat('spill') };
    $mock{ext}->update(mode => 'ok');
    is($res->{status}, 200, 'answered by the next step');

    my @r = sort { $a->{attempt} <=> $b->{attempt} } records_of($req->{id}, 2);
    is(scalar @r, 2, 'two records of one request');
    is($r[0]{attempt}, 1, 'attempt 1');
    is($r[0]{provider}, 'ext', 'at ext');
    is($r[0]{outcome}, 'server_error', 'failed');
    is($r[0]{status}, 500, 'with 500');
    is_deeply([@{ $r[0]{tokens} }{qw(input output)}], [0, 0], 'no tokens');
    is($r[0]{cost}, '0', 'nothing to pay');
    is($r[1]{attempt}, 2, 'attempt 2');
    is($r[1]{provider}, 'local', 'at local');
    is($r[1]{outcome}, 'ok', 'answered');
    cmp_ok($r[1]{tokens}{input}, '>', 0, 'with its tokens');
    same_cost($r[1], $req, 'the answering step');
};

subtest 'no price: no cost, said so' => sub {
    my $req = logged { $t->chat('free') };
    is($req->{cost}, '-', '$tailgate_cost: -');
    my ($r) = records_of($req->{id});
    ok(exists $r->{cost} && !defined $r->{cost}, 'the record: cost null');
    cmp_ok($r->{tokens}{input}, '>', 0, 'its tokens all the same');
};

subtest 'the status: tokens and cost per route, provider and client' => sub {
    my $req = logged { $t->chat('qwen', key => $bob) };
    records_of($req->{id});

    my ($rc, $out) = $t->policyd_cmd('status', '-a', $admin, { stderr => 0 });
    is($rc, 0, 'policyd status');
    my $st = eval { $JSON->decode($out) } // {};
    my $u = $st->{usage} // {};
    my @recs = records();

    is($u->{currency}, 'USD', 'currency');
    is($u->{records}, scalar @recs, 'records: every line written');
    is($u->{dropped}, 0, 'none dropped');
    is($u->{total}{requests}, scalar @recs, 'requests counted');

    my $sum = 0;
    $sum += $_->{tokens}{input} for grep { ($_->{route} // '') eq 'qwen' } @recs;
    is($u->{routes}{qwen}{input_tokens}, $sum, 'route qwen: its input tokens');
    ok($u->{providers}{local}{requests}, 'provider local counted');
    ok($u->{clients}{alice}{requests}, 'client alice by name');
    ok(!exists $u->{clients}{bob}, 'bob is past max_clients 1 ...');
    is($u->{clients}{_other}{requests}, 1, '... and counted as _other');

    ($rc, $out) = $t->policyd_cmd('status', '-a', $admin, '--prometheus', { stderr => 0 });
    like($out, qr/^tailgate_tokens_total\{client="alice",kind="input"\} \d+$/m,
         'prometheus: tokens by client and kind');
    like($out, qr/^tailgate_tokens_total\{route="qwen",kind="cached"\} \d+$/m,
         'by route');
    like($out, qr/^tailgate_cost_total\{provider="local",currency="USD"\} [0-9.]+$/m,
         'cost by provider');
    like($out, qr/^tailgate_cost_total\{client="_other",currency="USD"\} [0-9.]+$/m,
         'the folded clients');
    like($out, qr/^tailgate_usage_dropped_total 0$/m, 'dropped records: 0');
};

# exact sums of the records' costs, as integers of pico-units
sub pico {
    my ($s) = @_;
    my ($i, $f) = split /\./, $s // '0';
    $f = substr(($f // '') . ('0' x 12), 0, 12);
    return $i * 10**12 + $f;
}

sub money {
    my ($p) = @_;
    my $s = sprintf '%d.%012d', int($p / 10**12), $p % 10**12;
    $s =~ s/0+$//;
    $s =~ s/\.$//;
    return $s;
}

subtest 'policyd usage: totals, groups, CSV and JSON' => sub {
    my @recs = records();
    my %by;
    for my $r (@recs) {
        my $g = $by{ $r->{client} } //= {};
        $g->{requests}++;
        $g->{$_} += $r->{tokens}{$_} for qw(input cached output reasoning);
        $g->{cost} += pico($r->{cost}) if defined $r->{cost};
    }

    my ($rc, $out) = $t->policyd_cmd('usage', '-f', "$dir/usage.jsonl",
                                     '--by', 'client', '--csv', { stderr => 0 });
    is($rc, 0, 'usage --by client --csv');
    my @rows = split /\n/, $out;
    is($rows[0], 'client,requests,input_tokens,cached_tokens,output_tokens,'
                 . 'reasoning_tokens,estimated,cost,currency', 'the CSV header');
    my %csv = map { my @f = split /,/; ($f[0] => \@f) } @rows[1 .. $#rows];
    is_deeply([sort keys %csv], [sort keys %by], 'a row per client');
    for my $c (sort keys %by) {
        my $g = $by{$c};
        is_deeply([@{ $csv{$c} }[1 .. 5, 7, 8]],
                  [@$g{qw(requests input cached output reasoning)}, money($g->{cost}), 'USD'],
                  "client $c: requests, tokens and the exact cost");
    }

    ($rc, $out) = $t->policyd_cmd('usage', '-f', "$dir/usage.jsonl",
                                  '--by', 'route', '--json', { stderr => 0 });
    is($rc, 0, 'usage --by route --json');
    my $j = eval { $JSON->decode($out) } // {};
    is($j->{by}, 'route', 'by route');
    is($j->{total}{requests}, scalar @recs, 'the total: every record');
    my ($qwen) = grep { $_->{key} eq 'qwen' } @{ $j->{groups} // [] };
    my $n = grep { ($_->{route} // '') eq 'qwen' } @recs;
    is($qwen->{requests}, $n, 'route qwen: its requests');
    my $total = 0;
    $total += pico($_->{cost}) for grep { defined $_->{cost} } @recs;
    is($j->{total}{cost}, money($total), 'the total cost, exact');
    is($j->{total}{unpriced}, scalar(grep { !defined $_->{cost} } @recs),
       'the records without a price are counted apart');

    # by provider, model and day; text
    ($rc, $out) = $t->policyd_cmd('usage', '-f', "$dir/usage.jsonl",
                                  '--by', 'provider', { stderr => 0 });
    like($out, qr/^provider\s+requests\s+input/, 'text: a header');
    like($out, qr/^ext\s+1\s+0\s/m, 'ext: its one failed attempt');
    like($out, qr/^total\s+@{[ scalar @recs ]}\s/m, 'and the total');

    ($rc, $out) = $t->policyd_cmd('usage', '-f', "$dir/usage.jsonl",
                                  '--by', 'day', '--csv', { stderr => 0 });
    my ($day) = $recs[0]{time} =~ /^(\d{4}-\d\d-\d\d)/;
    like($out, qr/^$day,@{[ scalar @recs ]},/m, 'by day (UTC)');

    ($rc, $out) = $t->policyd_cmd('usage', '-f', "$dir/usage.jsonl",
                                  '--by', 'model', '--csv', { stderr => 0 });
    like($out, qr/^deepseek-chat,1,/m, 'by provider model');

    # a period: since a time after everything, until one before
    ($rc, $out) = $t->policyd_cmd('usage', '-f', "$dir/usage.jsonl",
                                  '--since', '@' . (time + 3600), '--json', { stderr => 0 });
    is(eval { $JSON->decode($out)->{total}{requests} }, 0, '--since later: nothing');
    ($rc, $out) = $t->policyd_cmd('usage', '-f', "$dir/usage.jsonl",
                                  '--until', '2000-01-01T00:00:00Z', '--json', { stderr => 0 });
    is(eval { $JSON->decode($out)->{total}{requests} }, 0, '--until 2000: nothing');
    ($rc, $out) = $t->policyd_cmd('usage', '-f', "$dir/usage.jsonl",
                                  '--since', '2000-01-01', '--until', '' . (time + 3600),
                                  '--json', { stderr => 0 });
    is(eval { $JSON->decode($out)->{total}{requests} }, scalar @recs,
       'a period around it all: everything');

    # a line that is no record is skipped, and said so
    $t->write_file('mixed.jsonl', $t->read_file('usage.jsonl')
                                  . "not json\n{\"time\":\"x\"}\n");
    my $err;
    ($rc, $out, $err) = $t->policyd_cmd('usage', '-f', "$dir/mixed.jsonl",
                                        '--json', { stderr => 'apart' });
    is($rc, 0, 'a file with bad lines: 0');
    is(eval { $JSON->decode($out)->{total}{requests} }, scalar @recs, 'its records counted');
    like($err, qr/2 lines that are not usage records skipped/, 'the others said');

    # bad arguments: a usage message and 2
    for my $bad (['--by', 'colour'], ['--since', 'yesterday'], [],
                 ['--until', '2026-12-02T20:00:00'], ['--bogus'],
                 ['--json', '--csv']) {
        ($rc, $out, $err) = $t->policyd_cmd('usage', (@$bad && $bad->[0] eq '--bogus' || !@$bad
                                                       ? () : ('-f', "$dir/usage.jsonl")),
                                            @$bad, { stderr => 'apart' });
        is($rc, 2, "usage @$bad: exit 2");
        like($err, qr/^usage: policyd usage -f FILE/m, '... with the usage message');
    }

    ($rc, $out, $err) = $t->policyd_cmd('usage', '-f', "$dir/none.jsonl",
                                        { stderr => 'apart' });
    is($rc, 1, 'a file that is not there: 1');
    like($err, qr/none\.jsonl: No such file/, 'said');
};

subtest 'SIGUSR1: the log is opened again, for logrotate' => sub {
    my $before = lines_in();
    rename "$dir/usage.jsonl", "$dir/usage.jsonl.1" or die "rename: $!";

    $t->signal('policyd', 'USR1');
    ok($t->wait_log('policyd', qr/usage log .*: opening it again/), 'policyd says so');

    my $req = logged { $t->chat('qwen') };
    ok(wait_lines(1), 'the next record goes to a new file');
    is(lines_in('usage.jsonl.1'), $before, 'the old file keeps what it had');
    is($req->{id}, (records())[-1]{request_id}, 'the new one has the new request');
};

subtest 'price validation: errors name the file and the key path' => sub {
    my $bad = $JSON->encode({
        listen => { path => "$dir/x.sock" },
        providers => { p => { upstream => 'u', zone => 'local', endpoints => ['chat'],
                              usage => 'sometimes' } },
        routes => { r => { steps => [{ provider => 'p', model => 'm' }] } },
        usage => { currency => 'USD', flush => 1,
                   prices => { p => { m => { input => -1, output => 'cheap',
                                             per_token => 1 } },
                               nobody => { m => { input => 1 } } } } });
    $t->write_file('bad.json', $bad);

    my ($rc, $out) = $t->policyd_cmd('-t', '-c', "$dir/bad.json");
    is($rc, 1, 'policyd -t: 1');
    my $f = "$dir/bad.json";
    like($out, qr/^\Q$f\E: usage\.prices\.p\.m\.input: expected a price: a number from 0 to 999999\.999999/m,
         'a negative price');
    like($out, qr/^\Q$f\E: usage\.prices\.p\.m\.output: expected a price/m, 'a price that is no number');
    like($out, qr/^\Q$f\E: usage\.prices\.p\.m\.per_token: unknown key$/m, 'an unknown key');
    like($out, qr/^\Q$f\E: usage\.prices\.nobody: no provider named "nobody"$/m, 'an unknown provider');
    like($out, qr/^\Q$f\E: usage\.flush: unknown key$/m, 'an unknown key of usage');
    like($out, qr/^\Q$f\E: providers\.p\.usage: expected "active" or "passive"$/m,
         'a provider usage mode');

    # a reload with a bad price keeps the good policy and its log
    my $before = lines_in();
    $t->write_file('policy.json.good', $t->read_file('policy.json'));
    my $p = $JSON->decode($t->read_file('policy.json'));
    $p->{usage}{prices}{local}{qwen}{input} = -1;
    $t->write_policy($p);
    my $from = $t->log_size('policyd');
    $t->reload_policyd;
    ok($t->wait_log('policyd', qr/usage\.prices\.local\.qwen\.input: expected a price/,
                    from => $from), 'a reload with a bad price is refused, and says where');
    my $req = logged { $t->chat('qwen') };
    ok(wait_lines($before + 1), 'records go on, to the same log');
    is((records())[-1]{cost}, $req->{cost}, 'priced as before');
    is((records())[-1]{request_id}, $req->{id}, 'its record');
    $t->write_file('policy.json', $t->read_file('policy.json.good'));
};

subtest 'SIGTERM after load: every report sent is a line written' => sub {
    my $before = lines_in();
    my ($n, $each) = (8, 25);

    my @ok = $t->parallel($n, sub {
        my $good = 0;
        for (1 .. $each) {
            my $res = $t->chat('qwen', timeout => 20);
            $good++ if $res->{status} == 200;
        }
        return $good;
    }, timeout => 120);
    my $good = 0;
    $good += $_ // 0 for @ok;
    is($good, $n * $each, "$good requests answered");

    # nginx first: its workers send what they still hold as they exit;
    # then policyd at once, with records still in its buffer
    $t->stop_proc('nginx', signal => 'QUIT', timeout => 20);
    $t->stop_policyd;

    is(lines_in() - $before, $n * $each, 'a line per request, none lost');
    like($t->policyd_log, qr/usage log \S+: (\d+) records, \1 written, 0 dropped/,
         'policyd says it wrote all it was given');

    my $bad = grep { !eval { $JSON->decode($_); 1 } } split /\n/, $t->read_file('usage.jsonl');
    is($bad, 0, 'every line whole JSON');
};

$t->done_testing;
