#!/usr/bin/perl

# Bodies nginx did not keep in one run of memory: uploads it spilled to a
# temporary file (more than client_body_buffer_size), JSON in a location
# with a small buffer, chunked bodies in many pieces.  The gateway reads
# them without blocking the worker - a window at a time, by the thread
# pool where the location has "aio threads" - each byte once, and the
# provider gets exactly the client's bytes with the model rewritten: the
# pieces around the model reference the file, only the new name is new.
# Everything runs twice: without and with aio threads.
#
# A JSON body in pieces is scanned as it comes (ngx_tailgate_json_feed()):
# it is refused exactly as the same body kept in memory is (a second
# server, on port "mem", keeps every body in one buffer), wherever the window
# edges fall, and the worker allocates nothing of the body's size for it
# (its debug_alloc log says what it allocates) - unless the decision needs
# the body as memory: a step's edits, a translation.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use IO::Socket::INET;
use Tailgate::Gateway;

my $want = 'qwen2.5-7b-instruct';    # route qwen -> local, see default_policy
my $ct = 'multipart/form-data; boundary=XyZ-b0undary';

sub part {
    my ($name, $value, @headers) = @_;
    return "--XyZ-b0undary\r\nContent-Disposition: form-data; name=\"$name\""
         . join('', map { "\r\n$_" } @headers) . "\r\n\r\n$value\r\n";
}

my $end = "--XyZ-b0undary--\r\n";

# audio-like bytes: every byte value, dashes and CRLFs, no boundary
sub audio {
    my ($size) = @_;
    my $unit = join('', map { chr } 0 .. 255) . "\r\n--XyZ-b0undar\r\n-\r-";
    my $data = $unit x (int($size / length $unit) + 1);
    return substr($data, 0, $size);
}

sub file_part {
    my ($size) = @_;
    return part('file', audio($size), 'Content-Type: audio/wav')
        =~ s/name="file"/name="file"; filename="a.wav"/r;
}

sub locations {
    my ($aio) = @_;
    my $a = $aio ? 'aio threads=tgpool;' : '';

    return <<"EOF";
    location /v1/ {
        tailgate on;
        client_max_body_size 32m;
        client_body_buffer_size 16k;
        $a
        access_log %%DIR%%/bodies.log bodies;
        error_log %%DIR%%/alloc.log debug_alloc;
        include tailgate/proxy.conf;
    }

    location = /v1/audio/transcriptions {
        tailgate on;
        client_max_body_size 25m;
        client_body_buffer_size 1m;
        $a
        access_log %%DIR%%/bodies.log bodies;
        include tailgate/proxy.conf;
    }
EOF
}

sub run_all {
    my ($aio) = @_;
    my $mode = $aio ? 'aio threads' : 'no aio';

    my $t = Tailgate::Gateway->new->skip_unless_built;
    my $policy = Tailgate::Gateway::default_policy();
    $policy->{providers}{chatonly} = { upstream => 'tg_chat', zone => 'local',
                                       endpoints => ['chat'] };
    $policy->{routes}{edited} = { steps => [{ provider => 'local',
        model => 'l', adjust => [{ drop => ['user'] }] }] };
    $policy->{routes}{xl} = { steps => [{ provider => 'chatonly',
                                          model => 'c' }] };
    my $key = $t->start_gateway(
        policy => $policy,
        private => ['tg_local', 'tg_chat'],
        locations => locations($aio),
        http => q{log_format bodies '$request_uri $upstream_bytes_sent $status';}
              . <<'EOF',

    server {
        listen 127.0.0.1:%%PORT:mem%%;

        location /v1/ {
            tailgate on;
            client_max_body_size 32m;
            client_body_buffer_size 32m;
            client_body_in_single_buffer on;
            include tailgate/proxy.conf;
        }
    }
EOF
        ($aio ? (main => 'thread_pool tgpool threads=2;') : ()));
    my $local = $t->mock('local');

    my $upload = sub {
        my ($body, %opt) = @_;
        $local->clear;
        my $res = $t->http('POST', '/v1/audio/transcriptions',
            headers => { Authorization => "Bearer $key",
                         'Content-Type' => $ct },
            body => $body, timeout => 60, %opt);
        return ($res, $local->requests->[-1]);
    };

    my $post_json = sub {
        my ($body, %opt) = @_;
        $local->clear;
        my $res = $t->http('POST', '/v1/chat/completions',
            headers => { Authorization => "Bearer $key",
                         'Content-Type' => 'application/json' },
            body => $body, timeout => 60, %opt);
        return ($res, $local->requests->[-1]);
    };

    subtest "$mode: uploads in a file, model before and after" => sub {
        for my $size (3 * 1024 * 1024, 20 * 1024 * 1024) {
            my $file = file_part($size);
            my $mb = int($size / 1024 / 1024);

            for my $order ('before', 'after') {
                my @parts = $order eq 'before'
                    ? (part('model', 'qwen'), $file)
                    : ($file, part('model', 'qwen'));
                my $body = join '', @parts, part('language', 'en'), $end;
                (my $expect = $body)
                    =~ s/name="model"\r\n\r\nqwen\r\n/name="model"\r\n\r\n$want\r\n/;

                my ($res, $req) = $upload->([$body]);
                is($res->{status}, 200, "$mb MB, model $order: 200");
                ok(defined $req && $req->{body} eq $expect,
                   "$mb MB, model $order: the provider got the body, "
                   . "only the model rewritten")
                    or diag(defined $req ? 'got ' . length($req->{body})
                            . ' bytes, wanted ' . length($expect) : 'nothing');
                is($req && $req->{headers}{'content-length'}, length $expect,
                   "$mb MB, model $order: its Content-Length");
            }
        }
    };

    subtest "$mode: the model and a boundary across 64 KB windows" => sub {
        for my $shift (-7, -3, 0, 2, 5) {
            # the model's value starts $shift bytes from the first window's
            # end; the next boundary crosses the second's
            my $head = "--XyZ-b0undary\r\nContent-Disposition: form-data; "
                     . "name=\"note\"\r\n\r\n";
            my $model_head = "\r\n--XyZ-b0undary\r\nContent-Disposition: "
                           . "form-data; name=\"model\"\r\n\r\n";
            my $note = 'n' x (65536 + $shift - length($head)
                              - length($model_head));
            my $first = $head . $note . $model_head . "qwen\r\n";
            my $pad = part('pad', 'p' x (131072 - 8 - length($first)
                                         - length(part('pad', ''))));
            my $body = $first . $pad
                . part('file', audio(1_200_000)) . $end;
            is(index($body, 'qwen'), 65536 + $shift, "model at 64K$shift");
            (my $expect = $body)
                =~ s/name="model"\r\n\r\nqwen\r\n/name="model"\r\n\r\n$want\r\n/;
            my ($res, $req) = $upload->([$body]);
            is($res->{status}, 200, "64K$shift: answered");
            ok(defined $req && $req->{body} eq $expect,
               "64K$shift: only the model rewritten");
        }
    };

    subtest "$mode: 20 000 parts, then the model" => sub {
        # each part's header state is the part's only: many parts cost no
        # more than one, and still read right
        my $body = join '', (map { part("note$_", 'x' x 60) } 1 .. 20_000),
            file_part(1_000_000), part('model', 'qwen'), $end;
        (my $expect = $body)
            =~ s/name="model"\r\n\r\nqwen\r\n/name="model"\r\n\r\n$want\r\n/;
        my ($res, $req) = $upload->([$body]);
        is($res->{status}, 200, 'answered');
        ok(defined $req && $req->{body} eq $expect, 'only the model rewritten');
    };

    subtest "$mode: odd uploads in a file" => sub {
        my $file = file_part(3 * 1024 * 1024);
        my @odd = (
            ['model missing',       [$file], 400],
            ['model empty',         [$file, part('model', '')], 400],
            ['model twice, around the file',
             [part('model', 'qwen'), $file, part('model', 'qwen')], 400],
            ['a "Model" field after the file',
             [part('model', 'qwen'), $file, part('Model', 'smart')], 400],
            ['stream not a boolean, after the file',
             [part('model', 'qwen'), $file, part('stream', 'yes')], 400],
            ['a huge model after the file',
             [$file, part('model', 'q' x 100_000)], 404],
            ['the boundary inside the file, not after CRLF',
             [part('model', 'qwen'),
              file_part(2 * 1024 * 1024) . 'x--XyZ-b0undary'
              . "\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\n"
              . "smart\r\n"], 400],
            ['no closing boundary', [part('model', 'qwen'), $file, ''], 400,
             'nocl'],
        );

        for my $o (@odd) {
            my ($name, $parts, $status, $noclose) = @$o;
            my $body = join('', @$parts) . ($noclose ? '' : $end);
            my ($res, $req) = $upload->([$body]);
            $t->is_openai_error($res, $status, undef, $name);
            ok(!defined $req, "$name: not proxied");
        }
    };

    subtest "$mode: chunked uploads" => sub {
        # in memory: many small pieces; spilled: 3 MB in 64 KB chunks
        for my $case (['in memory', 100, 1200], ['in a file', 65536, 48]) {
            my ($what, $piece, $count) = @$case;
            my $body = join '', part('model', 'qwen'),
                file_part($piece * $count), $end;
            my @pieces = unpack("(a$piece)*", $body);
            (my $expect = $body)
                =~ s/name="model"\r\n\r\nqwen\r\n/name="model"\r\n\r\n$want\r\n/;

            my ($res, $req) = $upload->(\@pieces, chunked => 1);
            is($res->{status}, 200, "$what: 200");
            ok(defined $req && $req->{body} eq $expect,
               "$what: " . scalar(@pieces) . ' pieces, only the model '
               . 'rewritten');
        }

        # the model's value cut by a chunk boundary
        my $body = join '', file_part(2 * 1024 * 1024), part('model', 'qwen'),
            $end;
        my $at = index($body, "\r\n\r\nqwen") + 6;
        my ($res, $req) = $upload->([substr($body, 0, $at),
                                     substr($body, $at)], chunked => 1);
        is($res->{status}, 200, 'a model cut by a chunk: 200');
        like($req && $req->{body}, qr/\r\n\r\n\Q$want\E\r\n--XyZ/,
             'a model cut by a chunk: rewritten');
    };

    subtest "$mode: JSON bodies nginx spilled to a file" => sub {
        my $filler = '"messages":[' . join(',', map {
            '{"role":"user","content":"' . ('word ' x 200) . "$_\"}"
        } 1 .. 5000) . ']';
        ok(length $filler > 5_000_000, 'a 5 MB body');

        for my $case (['at the start', qq({"model":"qwen",$filler})],
                      ['at the end',   qq({$filler,"model":"qwen"})])
        {
            my ($where, $body) = @$case;
            (my $expect = $body) =~ s/"model":"qwen"/"model":"$want"/;

            my ($res, $req) = $post_json->($body);
            is($res->{status}, 200, "model $where: 200");
            ok(defined $req && $req->{body} eq $expect,
               "model $where: only the model rewritten");
        }

        my @odd = (
            ['model missing',   qq({$filler}),                     400],
            ['model null',      qq({$filler,"model":null}),        400],
            ['model a number',  qq({$filler,"model":7}),           400],
            ['model twice',     qq({"model":"qwen",$filler,"model":"smart"}),
             400],
            ['"Model" too',     qq({"model":"qwen",$filler,"Model":"smart"}),
             400],
            ['not JSON at the end', qq({"model":"qwen",$filler,}), 400],
            ['a huge model',    qq({$filler,"model":") . ('q' x 300_000)
                                . '"}', 404],
        );

        for my $o (@odd) {
            my ($name, $body, $status) = @$o;
            my ($res, $req) = $post_json->($body);
            $t->is_openai_error($res, $status, undef, "JSON, $name");
            ok(!defined $req, "JSON, $name: not proxied");
        }

        # chunked JSON in many pieces, in memory and spilled
        for my $n (300, 5000) {
            my $small = qq({"model":"qwen","messages":[)
                . join(',', map { qq({"role":"user","content":"m$_"}) } 1 .. $n)
                . ']}';
            my @pieces = unpack('(a37)*', $small);
            (my $expect = $small) =~ s/"model":"qwen"/"model":"$want"/;
            my ($res, $req) = $post_json->(\@pieces, chunked => 1);
            is($res->{status}, 200, "chunked JSON, $n messages: 200");
            ok(defined $req && $req->{body} eq $expect,
               "chunked JSON, " . scalar(@pieces) . ' pieces: rewritten');
        }
    };

    # the same JSON body to both servers: spilled here, in memory there
    my $both = sub {
        my ($body) = @_;
        my @res;
        for my $port ('nginx', 'mem') {
            $local->clear;
            my $res = $t->http('POST', '/v1/chat/completions',
                headers => { Authorization => "Bearer $key",
                             'Content-Type' => 'application/json' },
                body => $body, timeout => 60, port => $t->port($port));
            push @res, $res, $local->requests->[-1];
        }
        return @res;
    };

    # the worker's allocations of $min bytes or more while $code runs
    my $alloc_log = "$t->{dir}/alloc.log";
    my $big_allocs = sub {
        my ($min, $code) = @_;
        my $before = -s $alloc_log // 0;
        $code->();
        open my $fh, '<', $alloc_log or die "$alloc_log: $!";
        seek $fh, $before, 0;
        my @big;
        while (<$fh>) {
            push @big, $1 if /(?:malloc|posix_memalign): [0-9A-Fa-fx]+:(\d+)/
                             && $1 >= $min;
        }
        return @big;
    };

    my $words = sub { '"messages":[{"role":"user","content":"'
                      . ('word ' x $_[0]) . '"}]' };

    subtest "$mode: JSON in pieces: the model across a window's edge" => sub {
        for my $shift (-9, -5, -1, 0, 1, 3, 8) {
            for my $model ('"qwen"', '"q\u0077en"') {
                # the model's value starts $shift bytes from 64 KB
                my $head = '{"messages":[{"role":"user","content":"';
                my $tail = '"}],"model":';
                my $body = $head . ('w' x (65536 + $shift - length($head)
                                           - length($tail)))
                         . $tail . $model . ',"input":"' . ('x' x 100_000)
                         . '"}';
                is(index($body, $model), 65536 + $shift,
                   "$model at 64K$shift");
                (my $expect = $body) =~ s/"model":\Q$model\E/"model":"$want"/;
                my ($res, $req) = $post_json->($body);
                is($res->{status}, 200, "$model at 64K$shift: 200");
                ok(defined $req && $req->{body} eq $expect,
                   "$model at 64K$shift: only the model rewritten");
            }
        }

        # the model in the first window, in the last, and after a string of
        # 3 MB (many windows)
        my $big = '"big":"' . ('s' x (3 * 1024 * 1024)) . '"';
        for my $case (['first', qq({"model":"qwen",$big,"n":1})],
                      ['last', qq({$big,"model":"qwen"})],
                      ['after a key given twice',
                       qq({"user":"a",$big,"user":"b","model":"qwen"})]) {
            my ($where, $body) = @$case;
            (my $expect = $body) =~ s/"model":"qwen"/"model":"$want"/;
            my ($res, $req) = $post_json->($body);
            is($res->{status}, 200, "model $where: 200");
            ok(defined $req && $req->{body} eq $expect,
               "model $where: only the model rewritten");
        }
    };

    subtest "$mode: JSON in pieces is refused as in memory, byte for byte"
    => sub {
        my $f = $words->(25_000);    # 125 KB: two windows and more
        my $deep = sub { ('[' x $_[0]) . (']' x $_[0]) };
        my @cases = (
            ['trailing comma',        qq({"model":"qwen",$f,})],
            ['no closing brace',      qq({"model":"qwen",$f)],
            ['an array, not an object', qq([{"model":"qwen",$f}])],
            ['bytes after the object', qq({"model":"qwen",$f} x)],
            ['a string not closed',   qq({"model":"qwen",$f,"a":"x)],
            ['a control byte',        qq({"model":"qwen",$f,"a":"x\ty"})],
            ['a bad escape',          qq({"model":"qwen",$f,"a":"\\x"})],
            ['a bad \\u',             qq({"model":"qwen",$f,"a":"\\u12g4"})],
            ['a bad literal',         qq({"model":"qwen",$f,"a":tru})],
            ['a bad number',          qq({"model":"qwen",$f,"a":01})],
            ['a number cut short',    qq({"model":"qwen",$f,"a":1.})],
            ['a body that ends in a number', qq({$f,"model":1)],
            ['model missing',         qq({$f})],
            ['model null',            qq({$f,"model":null})],
            ['model a number',        qq({$f,"model":7})],
            ['model empty',           qq({$f,"model":""})],
            ['model twice',           qq({"model":"qwen",$f,"model":"smart"})],
            ['"Model" too',           qq({"model":"qwen",$f,"Model":"smart"})],
            ['"model\\u0000x"',       qq({"model":"qwen",$f,"model\\u0000x":1})],
            ['"\\u017ftream"',        qq({"model":"qwen",$f,"\\u017ftream":true})],
            ['a model with a broken surrogate',
             qq({$f,"model":"q\\ud800x"})],
            ['stream a string',       qq({"model":"qwen",$f,"stream":"true"})],
            ['stream twice',
             qq({"stream":false,$f,"stream":true,"model":"qwen"})],
            ['tools an object',       qq({"model":"qwen",$f,"tools":{}})],
            ['tools twice',
             qq({"tools":[],"model":"qwen",$f,"tools":[]})],
            ['stream_options a string',
             qq({"model":"qwen",$f,"stream_options":"x"})],
            ['stream_options twice',
             qq({"stream_options":{},"model":"qwen",$f,"stream_options":{}})],
            ['include_usage a string',
             qq({"model":"qwen",$f,"stream_options":{"include_usage":"y"}})],
            ['include_usage twice',
             qq({"model":"qwen",$f,"stream_options":)
             . qq({"include_usage":true,"include_usage":false}})],
            ['include_usage wrong, then bad JSON',
             qq({"model":"qwen",$f,"stream_options":{"include_usage":1,"x":}})],
            ['nesting over the limit',
             qq({"model":"qwen",$f,"a":) . $deep->(128) . '}'],
            ['nesting at the limit',
             qq({"model":"qwen",$f,"a":) . $deep->(127) . '}'],
            ['a huge model',          qq({$f,"model":") . ('q' x 300_000)
                                      . '"}'],
            ['an unknown model',      qq({$f,"model":"nope"})],
        );

        my %errors;

        for my $c (@cases) {
            my ($name, $body) = @$c;
            ok(length $body > 65536, "$name: more than a window");
            my ($res, $req, $mres, $mreq) = $both->($body);
            # the mock's answers differ in their "created" second only
            my ($got, $want) = map { (my $b = $_->{body})
                                     =~ s/"created":\d+/"created":0/;
                                     $b } $res, $mres;
            ok($res->{status} == $mres->{status} && $got eq $want,
               "$name: $mres->{status}, the same as in memory")
                or diag("in pieces: $res->{status} $res->{body}\n"
                        . "in memory: $mres->{status} $mres->{body}");
            is(defined $req, defined $mreq, "$name: proxied alike");
            $errors{$mres->{body}} = 1 if $mres->{status} != 200;
        }

        # not one error for all: the cases say different things
        ok(keys %errors >= 15, scalar(keys %errors) . ' different errors');
    };

    subtest "$mode: JSON in pieces allocates nothing of its size" => sub {
        for my $mb (1, 3, 8) {
            my $body = qq({"model":"qwen",) . $words->($mb * 1024 * 1024 / 5)
                     . '}';
            my ($res, $req);
            my @big = $big_allocs->(256 * 1024, sub {
                ($res, $req) = $post_json->($body);
            });
            is($res->{status}, 200, "$mb MB: 200");
            ok($req && $req->{body} =~ /^\{"model":"\Q$want\E",/,
               "$mb MB: rewritten");
            is("@big", '', "$mb MB: no allocation of 256 KB or more");
        }

        # a decision that edits the body reads it into memory then
        my $body = qq({"model":"edited","user":"u",) . $words->(600_000)
                 . '}';
        my ($res, $req);
        my @big = $big_allocs->(256 * 1024, sub {
            ($res, $req) = $post_json->($body);
        });
        is($res->{status}, 200, 'edits: 200');
        (my $expect = $body) =~ s/"model":"edited","user":"u",/"model":"l",/;
        ok($req && $req->{body} eq $expect, 'edits: "user" dropped, renamed');
        ok((grep { $_ >= length $body } @big), 'edits: the body was loaded');

        # and a translation
        my $chat = $t->mock('chat');
        $chat->clear;
        my $xl = qq({"model":"xl","instructions":") . ('i' x 3_000_000)
               . qq(","input":"hello"});
        $res = $t->http('POST', '/v1/responses',
            headers => { Authorization => "Bearer $key",
                         'Content-Type' => 'application/json' },
            body => $xl, timeout => 60);
        is($res->{status}, 200, 'translated: 200');
        my $sent = $chat->requests->[-1];
        ok($sent && $sent->{body} =~ /"messages":/
           && $sent->{body} =~ /"hello"/ && length($sent->{body}) > 3_000_000,
           'translated: a chat request with the instructions and the input');
    };

    subtest "$mode: \$upstream_bytes_sent" => sub {
        my $body = join '', part('model', 'qwen'),
            file_part(3 * 1024 * 1024), $end;
        my $log = "$t->{dir}/bodies.log";
        my $before = -s $log // 0;
        my ($res, $req) = $upload->([$body]);
        is($res->{status}, 200, 'answered');

        my $line;
        $t->wait_for(sub {
            open my $fh, '<', $log or return 0;
            seek $fh, $before, 0;
            ($line) = grep { m{^/v1/audio} } <$fh>;
            return defined $line;
        }, timeout => 5);

        my ($sent) = ($line // '') =~ m{^\S+ (\d+)};
        my $len = length($body) - length('qwen') + length($want);
        ok(defined $sent && $sent > $len && $sent < $len + 2048,
           "the body and the headers went upstream ($len + headers)")
            or diag("log: " . ($line // 'none'));
    };

    if (-x '/usr/bin/strace' && $> == 0) {
        subtest "$mode: a file is read once, a window at a time" => sub {
            my $size = 3 * 1024 * 1024;
            my $body = join '', part('model', 'qwen'), file_part($size), $end;
            my ($worker) = $t->nginx_worker_pids;
            my $trace = "$t->{dir}/strace.txt";

            my $pid = fork // die "fork: $!";
            if ($pid == 0) {
                open STDERR, '>', '/dev/null';
                exec '/usr/bin/strace', '-f', '-qq', '-e', 'trace=pread64',
                     '-o', $trace, '-p', $worker;
                exit 127;
            }

            # attached: the worker has a tracer
            my $seen = $t->wait_for(sub {
                open my $st, '<', "/proc/$worker/status" or return 0;
                my ($tracer) = join('', <$st>) =~ /^TracerPid:\s*(\d+)/m;
                return ($tracer // 0) != 0;
            }, timeout => 10);
            ok($seen, 'strace follows the worker');

            my ($res) = $upload->([$body]);
            is($res->{status}, 200, 'answered');
            select undef, undef, undef, 0.3;
            kill 'INT', $pid;
            waitpid $pid, 0;

            open my $fh, "<", $trace or die "$trace: $!";
            my ($windows, $bytes, $biggest) = (0, 0, 0);
            my (%proxy, %tids);
            while (<$fh>) {
                next unless /(\d+) +pread64\(\d+, .*, (\d+), (\d+)\) = (\d+)/;
                my ($tid, $want_n, $off, $got) = ($1, $2, $3, $4);
                # the scan's windows: 64 KB from 0 on, the last one less
                if ($off % 65536 == 0
                    && ($want_n == 65536 || $off + $want_n == length $body))
                {
                    $windows++;
                    $bytes += $got;
                    $tids{$tid}++;
                    $biggest = $got if $got > $biggest;
                } else {
                    $proxy{$off}++;
                }
            }

            is($bytes, length $body,
               'the scan read the file once, every byte');
            ok($windows >= int(length($body) / 65536), "in $windows windows");
            ok($biggest <= 65536, 'none over 64 KB');

            # aio threads: nginx's thread pool reads, not the worker
            my @worker = grep { $_ == $worker } keys %tids;
            if ($aio) {
                ok(!@worker && %tids, 'read by the thread pool: '
                   . join(' ', sort keys %tids));
            } else {
                ok(@worker && keys %tids == 1, 'read by the worker');
            }
            ok(!grep({ $_ > 1 } values %proxy),
               'the proxy read each of its buffers once');
        };
    }

    subtest "$mode: a client that goes away while the file is read" => sub {
        my $body = join '', part('model', 'qwen'),
            file_part(20 * 1024 * 1024), $end;

        for my $i (1 .. 3) {
            my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                          PeerPort => $t->port('nginx'),
                                          Timeout => 10);
            ok($s, "connect $i") or next;
            print $s "POST /v1/audio/transcriptions HTTP/1.1\r\n"
                   . "Host: x\r\nAuthorization: Bearer $key\r\n"
                   . "Content-Type: $ct\r\n"
                   . 'Content-Length: ' . length($body) . "\r\n\r\n$body";
            close $s;
        }

        my ($res) = $upload->([part('model', 'qwen'), file_part(2_000_000),
                               $end]);
        is($res->{status}, 200, 'the gateway serves the next upload');
    };

    $t->stop_and_check;
}

run_all(0);
run_all(1) unless $ENV{ONLY_PLAIN};

done_testing;
