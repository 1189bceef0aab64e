package Tailgate::Faults;

# Faults under load: a gateway with a local, a private and an external
# provider, a provider with one slot and a queue, a private entrance; a few
# forked clients that load it while a fault happens; and what every fault
# must leave behind, checked as one subtest per fault (row).  A
# Tailgate::Gateway with these on top; see the POD at the end.

use strict;
use warnings;

use parent 'Tailgate::Gateway';

use JSON::PP ();
use POSIX qw(:sys_wait_h);
use Test::More ();
use Time::HiRes qw(time sleep);


my $JSON = JSON::PP->new->canonical->utf8;


# Routes, and how many attempts (so REPORTs) one request of each may make.
#
#   smart   ext, lan, local     falls back on errors; private: lan, local
#   chain   lan, ext, local     falls back on errors; private: lan, local
#   direct  ext                 a provider's failure goes to the client
#   qwen    local               a lease per request
#   line    gpu                 one slot, a queue
#   whisper local               transcription uploads

our %MAX_ATTEMPTS = (smart => 3, chain => 3, direct => 1, qwen => 1,
                     line => 1, whisper => 1);

# routes with a step whose provider has no max_concurrency: its plain
# successes are counted by the worker and sent every 250 ms, not at once
our %TALLIED = (smart => 1, chain => 1, direct => 1);


sub fault_policy {
    # failures make a provider down (and passed over) for half a second
    my %health = (health => { down_after => 3, cooldown_ms => 500 });

    my %step = (
        local => { provider => 'local', model => 'qwen-local' },
        lan   => { provider => 'lan',   model => 'qwen-lan' },
        ext   => { provider => 'ext',   model => 'deepseek-chat' },
    );

    return {
        # every request asks policyd: its decisions can be counted
        decision_cache_ms => 0,

        providers => {
            local => { upstream => 'tg_local', zone => 'local',
                       endpoints => [qw(chat transcriptions)],
                       max_concurrency => 16, %health },
            lan   => { upstream => 'tg_lan', zone => 'private',
                       endpoints => ['chat'], max_concurrency => 16, %health },
            ext   => { upstream => 'tg_ext', zone => 'external',
                       api_key => '${EXT_API_KEY}', endpoints => ['chat'],
                       %health },
            gpu   => { upstream => 'tg_gpu', zone => 'local',
                       endpoints => ['chat'], max_concurrency => 1 },
        },

        routes => {
            smart   => { steps => [ @step{qw(ext lan local)} ],
                         fallback => { on => 'errors' } },
            chain   => { steps => [ @step{qw(lan ext local)} ],
                         fallback => { on => 'errors' } },
            direct  => { steps => [ $step{ext} ] },
            qwen    => { steps => [ $step{local} ] },
            line    => { steps => [ { provider => 'gpu', model => 'big' } ],
                         queue => { max_length => 16, max_wait_ms => 4000 } },
            whisper => { steps => [ { provider => 'local',
                                      model => 'whisper-1' } ] },
        },
    };
}


# What a client may ask.  private: 'header' (X-Tailgate-Tags) or 'port'
# (the server whose locations have tailgate_tags private).

our %KIND = (
    smart             => { route => 'smart' },
    smart_priv        => { route => 'smart', private => 'header' },
    smart_stream      => { route => 'smart', stream => 1 },
    smart_priv_stream => { route => 'smart', private => 'header', stream => 1 },
    chain             => { route => 'chain' },
    chain_priv        => { route => 'chain', private => 'port' },
    chain_priv_stream => { route => 'chain', private => 'port', stream => 1 },
    direct            => { route => 'direct' },
    direct_priv       => { route => 'direct', private => 'header' },
    qwen              => { route => 'qwen' },
    line              => { route => 'line' },
    whisper           => { route => 'whisper', upload => 1 },

    # clients that go away: after the first event of a stream, half way
    # through an upload, while waiting in line
    abort_stream      => { route => 'smart', stream => 1, abort => 'stream' },
    abort_stream_priv => { route => 'smart', private => 'header', stream => 1,
                           abort => 'stream' },
    abort_stream_lease => { route => 'qwen', stream => 1, abort => 'stream' },
    abort_upload      => { route => 'whisper', upload => 1, abort => 'upload' },
    abort_queued      => { route => 'line', abort => 'queued' },
);

# the light load of every row: each client starts at another place
our @MIX = qw(smart smart_priv chain_priv smart_stream direct qwen
              smart_priv_stream chain line whisper direct_priv
              chain_priv_stream);

# what a request of each kind gets from a healthy gateway
our %HEALTHY = (map({ $_ => 200 } @MIX), direct_priv => 403);

# gpu takes its time: a request that arrives before the one before it could
# have been answered proves two at once (see row's gpu_one)
my $GPU_DELAY_MS = 100;
# the records of requests not answered as a healthy gateway answers
sub unhealthy {
    return grep { ($_->{status} // 0) != ($HEALTHY{ $_->{kind} } // 200) } @_;
}

my %BASE_CONTROL = (gpu => { delay_ms => $GPU_DELAY_MS });


# start_faults(%opt): mocks, policy, policyd with an admin socket, nginx
# with two workers, conf/tailgate's locations with timeouts a test can
# wait for (connect and read: 2 s), and a second server on
# $t->port('private') whose every request is tagged private.
# Options: policyd_args => [...], workers => N.  Returns alice's key.

sub start_faults {
    my ($self, %opt) = @_;

    $self->{admin} = $self->dir . '/admin.sock';

    my $locations = $self->conf_text('locations.conf');
    $locations =~ s/proxy_read_timeout \d+s/proxy_read_timeout 2s/g;
    $locations =~ s/proxy_connect_timeout \d+s/proxy_connect_timeout 2s/g;

    for my $name (qw(local lan ext gpu)) {
        $self->mock_provider($name, %{ $BASE_CONTROL{$name} // {} });
    }

    $self->{policyd_extra} = [ '-a', $self->{admin},
                               @{ $opt{policyd_args} // [] } ];

    return $self->start_gateway(
        policy => fault_policy(),
        private => [qw(tg_local tg_lan tg_gpu)],
        locations => $locations,
        workers => $opt{workers} // 2,
        timeout => '2s',
        policyd_args => $self->{policyd_extra},
        http => "server {\n"
              . "        listen 127.0.0.1:%%PORT:private%%;\n"
              . "        tailgate_tags private;\n"
              . "        $locations\n"
              . "    }\n");
}


# policyd again, as start_faults started it (after a kill or a stop)

sub restart_policyd {
    my ($self) = @_;

    return $self->start_policyd(
        args => $self->{policyd_extra},
        env => { EXT_API_KEY => $Tailgate::Gateway::PROVIDER_KEY });
}


# every mock back to its control of start_faults

sub heal {
    my ($self) = @_;

    for my $name (qw(local lan ext gpu)) {
        $self->mock($name)->set(%{ $BASE_CONTROL{$name} // {} });
    }
}


# the operators' view from policyd's admin socket, decoded; undef when
# policyd does not answer (stopped, killed)

sub status {
    my ($self) = @_;

    my ($rc, $out) = $self->policyd_cmd('status', '-a', $self->{admin},
                                        { stderr => 0, timeout => 10 });
    return undef unless $rc == 0;

    my $doc = eval { $JSON->decode($out) };
    return ref $doc eq 'HASH' ? $doc : undef;
}


# counts(): policyd's pid and, per route, its decisions by status and the
# requests reported by outcome

sub counts {
    my ($self) = @_;

    my $doc = $self->status or return undef;

    return {
        pid    => $doc->{policyd}{pid},
        doc    => $doc,
        routes => { map { $_->{name} => { decided  => $_->{decisions} // {},
                                          requests => $_->{requests} // {} } }
                    @{ $doc->{routes} // [] } },
    };
}


# what is still held: '' when no lease is held and nobody waits, anywhere

sub held {
    my ($self, $doc) = @_;

    $doc //= $self->status or return 'policyd does not answer';

    my @held;
    my $pd = $doc->{policyd} // {};

    push @held, "policyd: $pd->{leases} leases" if $pd->{leases};
    push @held, "policyd: $pd->{queued} queued" if $pd->{queued};

    for my $p (@{ $doc->{providers} // [] }) {
        push @held, "$p->{name}: $p->{in_flight} in flight" if $p->{in_flight};
        push @held, "$p->{name}: $p->{queued} queued" if $p->{queued};
    }

    return join ', ', @held;
}


# settle(timeout => 15): waits until nothing is held and every provider is
# up again (a provider made down by failures is tried again after its
# cooldown); true when it is so

sub settle {
    my ($self, %opt) = @_;

    return $self->wait_for(sub {
        my $doc = $self->status or return 0;
        return 0 if length $self->held($doc);
        return !grep { $_->{state} ne 'up' } @{ $doc->{providers} // [] };
    }, timeout => $opt{timeout} // 15, interval => 0.1);
}


# the body of a transcription upload of about $size bytes

sub upload_body {
    my ($marker, $size) = @_;

    return "--B\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\n"
         . "whisper\r\n"
         . "--B\r\nContent-Disposition: form-data; name=\"user\"\r\n\r\n"
         . "$marker\r\n"
         . "--B\r\nContent-Disposition: form-data; name=\"file\"; "
         . "filename=\"a.wav\"\r\nContent-Type: audio/wav\r\n\r\n"
         . 'RIFF' . ('a' x ($size // 8192)) . "\r\n--B--\r\n";
}


# one_request($kind, $client, $n): one request of that kind; returns its
# record: kind, route, private, marker, t0, t1, status, error, route_hdr
# (X-Tailgate-Route), attempts, provider, mock, code (the OpenAI error
# code), sse (how a stream ended: done, error, cut), aborted (the client
# went away on purpose)

sub one_request {
    my ($self, $kind, $client, $n) = @_;

    my $k = $KIND{$kind} or die "one_request: no kind '$kind'\n";
    my $private = $k->{private} // '';
    my $marker = ($private ? 'private' : 'public') . "-$kind-c$client-n$n";

    my %rec = (kind => $kind, route => $k->{route}, private => $private ? 1 : 0,
               marker => $marker, t0 => time);

    my %h = (Authorization => 'Bearer ' . $self->key);
    $h{'X-Tailgate-Tags'} = 'private' if $private eq 'header';
    my $port = $private eq 'port' ? $self->port('private') : undef;

    my ($path, $body);

    if ($k->{upload}) {
        $path = '/v1/audio/transcriptions';
        $h{'Content-Type'} = 'multipart/form-data; boundary=B';
        $body = upload_body($marker, $k->{abort} ? 600_000 : 8192);
    } else {
        $path = '/v1/chat/completions';
        $h{'Content-Type'} = 'application/json';
        $body = $JSON->encode({
            model => $k->{route}, user => $marker,
            messages => [{ role => 'user', content => "hello $marker" }],
            ($k->{stream} ? (stream => JSON::PP::true) : ()),
        });
    }

    if ($k->{abort}) {
        $self->_gone($k, \%rec, $path, \%h, $body, $port);
    } else {
        my $res = $self->http('POST', $path, headers => \%h, body => $body,
                              timeout => 20, (port => $port) x !!$port);
        _took(\%rec, $res->{status} || $res->{got_status} || 0,
              $res->{headers}, $res->{body});
        $rec{error} = $res->{error} if $res->{error};
    }

    $rec{t1} = time;

    return \%rec;
}


# what a response said: status, where it went, its error code

sub _took {
    my ($rec, $status, $h, $body) = @_;

    $rec->{status} = $status + 0;
    $rec->{route_hdr} = $h->{'x-tailgate-route'};
    $rec->{attempts} = $h->{'x-tailgate-attempts'};
    $rec->{provider} = $h->{'x-tailgate-provider'};
    $rec->{mock} = $h->{'x-mock-provider'};

    # how a stream ended: [DONE], the gateway's error event, or neither
    if (($h->{'content-type'} // '') =~ m{^text/event-stream}) {
        $rec->{sse} = ($body // '') =~ /"code":"stream_broken"/ ? 'error'
                    : ($body // '') =~ /data: \[DONE\]/ ? 'done' : 'cut';
    }

    if (($h->{'content-type'} // '') =~ m{^application/json}) {
        my $doc = eval { $JSON->decode($body // '') };
        $rec->{code} = $doc->{error}{code}
            if ref $doc eq 'HASH' && ref $doc->{error} eq 'HASH';
    }
}

sub _head {
    my ($raw) = @_;

    my $end = index($raw, "\r\n\r\n");
    return () if $end < 0;

    my ($line, @lines) = split /\r\n/, substr($raw, 0, $end);
    my ($status) = ($line // '') =~ m{^HTTP/1\.[01] (\d{3})} or return ();

    my %h;
    for my $l (@lines) {
        my ($k, $v) = $l =~ /^([^:\s]+):\s*(.*?)\s*$/ or next;
        $h{lc $k} = $v;
    }

    return ($status, \%h, substr($raw, $end + 4));
}


# a client that goes away on purpose; the answer it saw, if any, is
# recorded like any other

sub _gone {
    my ($self, $k, $rec, $path, $h, $body, $port) = @_;

    if ($k->{abort} eq 'upload') {

        # the headers and half the body, then the client is gone: nginx
        # is still reading the body, nothing is decided yet
        my $c = $self->raw_connect(port => $port);
        my $req = "POST $path HTTP/1.1\r\nHost: localhost\r\n"
                . join('', map { "$_: $h->{$_}\r\n" } sort keys %$h)
                . 'Content-Length: ' . length($body) . "\r\n\r\n"
                . substr($body, 0, int(length($body) / 2));
        $c->write_bytes($req, 10);
        sleep 0.2;
        my ($status, $hh, $rest) = _head($c->raw);
        $c->close;

        $rec->{aborted} = 1;
        _took($rec, $status, $hh, $rest) if $status;
        return;
    }

    my $c = $self->http_open('POST', $path, headers => $h, body => $body,
                             port => $port);

    if ($k->{abort} eq 'queued') {

        # gone while it waits in line, unless an answer came first
        if (!$c->read_until(qr/\r\n\r\n/, 0.3)) {
            $c->close;
            $rec->{aborted} = 1;
            return;
        }

    } elsif (!$c->read_until(qr/\r\n\r\n/, 20)) {
        $c->close;
        $rec->{error} = $c->eof ? 'closed' : 'timeout';
        return;
    }

    my ($status, $hh) = _head($c->raw);

    if ($k->{abort} eq 'stream' && $status == 200
        && ($hh->{'content-type'} // '') =~ m{^text/event-stream})
    {
        # gone after the first event, unless the stream ended first
        if (!$c->read_until(qr/data: /, 20)) {
            $rec->{error} = $c->eof ? 'truncated' : 'timeout';
        }
        $rec->{aborted} = 1 unless $c->raw =~ /\[DONE\]/;
        $c->close;
        _took($rec, $status, $hh, '');
        return;
    }

    $rec->{error} = 'timeout' unless $c->read_all(20);
    $c->close;

    my (undef, undef, $rest) = _head($c->raw);
    _took($rec, $status, $hh, $rest);
}


# load(clients => 4, seconds => 3, mixes => [[kinds], ...]): forks the
# clients (one per mix when mixes are given, else each with @MIX), which
# make requests one after another for that long (at most 2000 each) and
# write down each one's record.  Returns the load, for finish_load.

sub load {
    my ($self, %opt) = @_;

    my $clients = $opt{clients} // 4;
    my $seconds = $opt{seconds} // 3;
    my @mixes = @{ $opt{mixes} // [ map { \@MIX } 1 .. $clients ] };
    my $tag = ++$self->{loads};
    my $start = time;
    my (@pids, @files);

    for my $c (0 .. $#mixes) {
        my $file = $self->dir . "/load-$tag-$c.jsonl";
        push @files, $file;

        my $pid = fork;
        die "load: fork: $!\n" unless defined $pid;

        if ($pid == 0) {
            $SIG{$_} = 'DEFAULT' for qw(INT TERM HUP PIPE);
            $SIG{PIPE} = 'IGNORE';

            my @mix = @{ $mixes[$c] };
            open my $fh, '>>', $file or POSIX::_exit(1);
            $fh->autoflush(1);

            my $n = 0;

            while (time < $start + $seconds && $n < 2000) {
                my $kind = $mix[($c + $n) % @mix];
                my $rec = eval { $self->one_request($kind, $c, $n) }
                    // { kind => $kind, route => $KIND{$kind}{route},
                         t0 => time, t1 => time, status => 0,
                         error => "client: $@" };
                $rec->{$_} -= $start for qw(t0 t1);
                print $fh $JSON->encode($rec), "\n";
                $n++;
            }

            close $fh;
            POSIX::_exit(0);
        }

        push @pids, $pid;
    }

    return { start => $start, seconds => $seconds, pids => \@pids,
             files => \@files };
}


# finish_load($load, grace => 30): waits for the clients, at most until
# `grace` seconds after the load's end; kills those still running then.
# Returns (the records of every request, how many clients were killed).

sub finish_load {
    my ($self, $load, %opt) = @_;

    my $deadline = $load->{start} + $load->{seconds} + ($opt{grace} // 30);
    my %left = map { $_ => 1 } @{ $load->{pids} };

    while (%left && time < $deadline) {
        for my $pid (keys %left) {
            delete $left{$pid} if waitpid($pid, WNOHANG) != 0;
        }
        sleep 0.05 if %left;
    }

    my $killed = keys %left;

    if ($killed) {
        kill 'KILL', keys %left;
        waitpid $_, 0 for keys %left;
    }

    my @records;

    for my $file (@{ $load->{files} }) {
        for my $line (split /\n/, $self->read_file($file)) {
            my $r = eval { $JSON->decode($line) } or next;
            push @records, $r;
        }
    }

    return (\@records, $killed);
}


# the REPORTs one request makes, as (at least, at most), not counting a
# not_sent (a decision that came after the module stopped waiting).
# Every attempt that got a decision is reported once: X-Tailgate-Attempts
# says how many did; an answer without X-Tailgate-Route got none; a
# request without an answer (its connection broke, its client left) may
# have had any number; an upload cut off half way had none.

sub reports_of {
    my ($r) = @_;

    return (0, 0) if $r->{kind} eq 'abort_upload' && !$r->{status};

    if (defined $r->{route_hdr}) {
        my $n = $r->{attempts} // 1;
        return ($n, $n);
    }

    return (0, 0) if $r->{status} && !$r->{aborted};

    return (0, $MAX_ATTEMPTS{ $r->{route} } // 8);
}


# a decision may come for a request nobody waits for any more: one that
# failed with policy_unavailable, or had no answer
sub may_be_unsent {
    my ($r) = @_;
    return !$r->{status} || $r->{aborted}
           || ($r->{code} // '') eq 'policy_unavailable';
}


sub _sum { my $n = 0; $n += $_ // 0 for values %{ $_[0] // {} }; $n }


# what policyd counted for each route between two counts(); when policyd
# was replaced in between, all the new one counted

sub _delta {
    my ($before, $after, $route) = @_;

    my $b = $before && $after && $before->{pid} == $after->{pid}
            ? $before->{routes}{$route} // {} : {};
    my $a = $after->{routes}{$route} // {};

    my %req = %{ $a->{requests} // {} };
    $req{$_} -= $b->{requests}{$_} // 0 for keys %{ $b->{requests} // {} };

    my $total = _sum(\%req);

    return {
        total    => $total,
        sent     => $total - ($req{not_sent} // 0),
        not_sent => $req{not_sent} // 0,
        decided  => ($a->{decided}{200} // 0) - ($b->{decided}{200} // 0),
        outcomes => \%req,
    };
}


# the expectation for each route from the records:
#   opt fresh_since => $s   policyd was replaced: only requests that began
#                           $s seconds into the load or later are sure to
#                           be counted by the new one
#   opt lost_worker => 1    a worker was killed: the plain successes it had
#                           counted and not yet sent are lost with it

sub _expect {
    my ($records, %opt) = @_;

    my %e = map { $_ => { min => 0, max => 0, unsent_max => 0, requests => 0 } }
            keys %MAX_ATTEMPTS;

    for my $r (@$records) {
        my $e = $e{ $r->{route} } or next;
        my ($min, $max) = reports_of($r);

        $min = 0 if defined $opt{fresh_since} && $r->{t0} < $opt{fresh_since};
        $min = 0 if $opt{lost_worker} && $TALLIED{ $r->{route} };

        $e->{min} += $min;
        $e->{max} += $max;
        $e->{unsent_max}++ if may_be_unsent($r);
        $e->{requests}++;
    }

    return \%e;
}


# check_counts($before, $records, %opt): policyd's counts per route agree
# with what the clients saw (see _expect for the options); with
# exact_decisions (the default) every decision of the row was reported
# once.  Waits (5 s) for the last counts to come.

sub check_counts {
    my ($self, $before, $records, %opt) = @_;

    my $exact = $opt{exact_decisions} // 1;
    my $e = _expect($records, %opt);
    my $after;

    my $agree = sub {
        my ($route) = @_;
        my $d = _delta($before, $after, $route);
        my $x = $e->{$route};
        return $d->{sent} >= $x->{min} && $d->{sent} <= $x->{max}
               && $d->{not_sent} <= $x->{unsent_max}
               && (!$exact || $d->{decided} == $d->{total});
    };

    $self->wait_for(sub {
        $after = $self->counts or return 0;
        return !grep { !$agree->($_) } keys %MAX_ATTEMPTS;
    }, timeout => 5, interval => 0.2);

    Test::More::ok($after, 'policyd answers for its counts') or return;

    my $replaced = $before && $before->{pid} != $after->{pid};

    for my $route (sort keys %MAX_ATTEMPTS) {
        my $d = _delta($before, $after, $route);
        my $x = $e->{$route};
        my $what = "$route: $x->{requests} requests";

        if ($x->{min} == $x->{max}) {
            Test::More::is($d->{sent}, $x->{min},
                "$what, $x->{min} attempts decided: as many reported");
        } else {
            Test::More::ok($d->{sent} >= $x->{min} && $d->{sent} <= $x->{max},
                "$what: $d->{sent} reported, between $x->{min} and $x->{max}");
        }

        Test::More::cmp_ok($d->{not_sent}, '<=', $x->{unsent_max},
            "$route: decisions nobody waited for ($d->{not_sent}) came only "
            . 'for requests that failed without one');

        if ($exact && !$replaced) {
            Test::More::is($d->{decided}, $d->{total},
                "$route: every decision ($d->{decided}) reported once");
        } elsif ($opt{lost_worker}) {
            Test::More::cmp_ok($d->{decided}, '>=', $d->{total},
                "$route: no decision reported twice");
        }

        Test::More::diag("$route: counted " . $JSON->encode($d)
                         . ', expected ' . $JSON->encode($x))
            unless $agree->($route);
    }
}


# check_private($from): no request marked private reached the external
# mock since $from (its count of requests before)

sub check_private {
    my ($self, $from, $records) = @_;

    my $all = $self->mock('ext')->requests;
    my @leak = grep { $_->{body} =~ /private-/ } @$all[$from .. $#$all];

    Test::More::is(scalar @leak, 0,
        'no private request reached the external provider')
        or Test::More::diag(join "\n", map { substr($_->{body}, 0, 200) }
                                       @leak[0 .. ($#leak < 4 ? $#leak : 4)]);

    my $served = grep { $_->{private} && ($_->{status} // 0) == 200 } @$records;
    Test::More::cmp_ok($served, '>', 0,
        "private requests were made and served ($served), elsewhere");
}


# the error.log since $from: nothing at alert level or worse but what
# the row allows, and no policy violation (policyd sending a private
# request to an upstream nginx does not list as private)

sub check_log {
    my ($self, $from, @allow) = @_;

    my $text = substr($self->error_log, $from);
    my @bad = grep {
        my $l = $_;
        ($l =~ /\[(?:alert|crit|emerg)\]|AddressSanitizer|runtime error:/
         && !grep { $l =~ $_ } @allow)
        || $l =~ /policy violation/
    } split /\n/, $text;

    Test::More::is(scalar @bad, 0, 'error.log: no alert, no policy violation')
        or Test::More::diag(join "\n", @bad[0 .. ($#bad < 9 ? $#bad : 9)]);
}


# after(): one request of every kind, one after another, once the fault
# is over: each answered as a healthy gateway answers it, and counted
# exactly

sub check_after {
    my ($self) = @_;

    my $ok = $self->settle;
    Test::More::ok($ok, 'afterwards every provider is up, nothing held')
        or Test::More::diag($self->held || 'a provider is not up');

    my $before = $self->counts;
    my $n = 0;
    my @records = map { $self->one_request($_, 99, $n++) } @MIX;

    Test::More::is_deeply({ map { $_->{kind} => $_->{status} } @records },
                          \%HEALTHY, 'afterwards every kind of request is '
                                     . 'served as before the fault')
        or Test::More::diag($JSON->encode(\@records));

    my $e = _expect(\@records);
    my $after;

    $self->wait_for(sub {
        $after = $self->counts or return 0;
        return !grep { _delta($before, $after, $_)->{total} != $e->{$_}{min} }
                     keys %MAX_ATTEMPTS;
    }, timeout => 5, interval => 0.2);

    Test::More::is_deeply(
        { map { $_ => _delta($before, $after, $_)->{total} } keys %MAX_ATTEMPTS },
        { map { $_ => $e->{$_}{min} } keys %MAX_ATTEMPTS },
        'and counted exactly, per route');
}


# row($name, %spec): one fault under load, as a subtest.
#   steps   => [[$at_seconds, sub { my ($t, $ctx) = @_; ... }], ...]
#              the fault, done that long after the load began (in order;
#              a step may set $ctx->{fresh_since}, seconds into the load)
#   setup   => sub { my ($t) = @_; ... }   before the load (mock controls)
#   clients => 4, seconds => 3, mixes => [[kinds], ...]   the load
#   counts  => { exact_decisions => 0, lost_worker => 1 }   see check_counts
#   allow   => [qr/.../]     error.log lines at alert level this row causes
#   check   => sub { my ($t, $records, $ctx) = @_; ... }   more tests
#   gpu_one => 0             do not check that gpu never had two at once:
#                            a request abandoned at gpu ends there early,
#                            so the next may come sooner than 100 ms after
#                            it (the mock answers after 100 ms; another
#                            request within 100 ms of one before it proves
#                            two at once)

sub row {
    my ($self, $name, %spec) = @_;

    return Test::More::subtest($name => sub { $self->_row(%spec) });
}

sub _row {
    my ($self, %spec) = @_;

    $self->settle or Test::More::diag('not settled before the row: '
                                      . ($self->held || 'a provider is not up'));

    my $before = $self->counts;
    my %seen = map { $_ => scalar @{ $self->mock($_)->requests } }
               qw(local lan ext gpu);
    my $log_from = length $self->error_log;

    $spec{setup}->($self) if $spec{setup};

    my $load = $self->load(clients => $spec{clients}, seconds => $spec{seconds},
                           mixes => $spec{mixes});
    my %ctx = (load => $load);

    for my $step (@{ $spec{steps} // [] }) {
        my ($at, $code) = @$step;
        my $wait = $load->{start} + $at - time;
        sleep $wait if $wait > 0;
        $code->($self, \%ctx);
    }

    my ($records, $killed) = $self->finish_load($load);

    $self->heal;

    # no hung request

    my $bound = $load->{seconds} + 30;
    Test::More::is($killed, 0, "every client finished within $bound s");

    my @hung = grep { ($_->{error} // '') =~ /timeout/ } @$records;
    Test::More::is(scalar @hung, 0, scalar(@$records) . ' requests, none hung:'
                                    . ' each answered or failed within 20 s')
        or Test::More::diag($JSON->encode([ @hung[0 .. ($#hung < 4 ? $#hung : 4)] ]));

    my %by;
    $by{ $_->{status} ? $_->{status} : $_->{aborted} ? 'gone'
         : $_->{error} // 'none' }++ for @$records;
    Test::More::note('answers: ' . $JSON->encode(\%by));

    # leases and queues back to zero

    my $held;
    my $free = $self->wait_for(sub { $held = $self->held; !length $held },
                               timeout => 10, interval => 0.1);
    Test::More::ok($free, 'no lease held, nobody waiting')
        or Test::More::diag("still held: $held");

    # counts

    $self->check_counts($before, $records, %{ $spec{counts} // {} },
                        fresh_since => $ctx{fresh_since});

    # privacy

    $self->check_private($seen{ext}, $records);

    if ($spec{gpu_one} // 1) {
        my $all = $self->mock('gpu')->requests;
        my @ts = sort { $a <=> $b } map { $_->{ts} } @$all[$seen{gpu} .. $#$all];
        my @two = grep { $ts[$_] < $ts[$_ - 1] + $GPU_DELAY_MS / 1000 } 1 .. $#ts;
        Test::More::is(scalar @two, 0, 'gpu never had two requests at once ('
                       . scalar(@ts) . ' requests, none within '
                       . "${GPU_DELAY_MS} ms of the one before)");
    }

    $spec{check}->($self, $records, \%ctx) if $spec{check};

    $self->check_log($log_from, @{ $spec{allow} // [] });

    $self->check_after;
}


1;

__END__

=head1 NAME

Tailgate::Faults - faults under load, and what each must leave behind

=head1 SYNOPSIS

    use Tailgate::Faults;

    my $t = Tailgate::Faults->new->skip_unless_built;
    $t->start_faults;

    $t->row('provider 500' =>
        steps => [ [0.7, sub { $_[0]->mock('ext')->set(mode => 'status') }],
                   [2.2, sub { $_[0]->heal }] ]);

    $t->done_testing;

=head1 DESCRIPTION

C<start_faults> starts mocks C<local>, C<lan> (zone private), C<ext>
(external) and C<gpu> (one slot, 100 ms a request), the policy of C<fault_policy> (routes C<smart>, C<chain>,
C<direct>, C<qwen>, C<line> with a queue, C<whisper>), policyd with an
admin socket, and nginx with two workers, conf/tailgate's locations with
2 s timeouts, and a second server on C<< $t->port('private') >> with
C<tailgate_tags private>.

C<row> runs a light load of forked clients (C<@MIX>: fallback routes,
streams, private requests by header and by entrance, a lease route, the
queue, uploads) while its steps make a fault, then checks:

=over

=item no hung request: every client finished, no request waited out its
20 s;

=item no lease held and nobody waiting in policyd's status;

=item policyd's REPORTs per route equal the attempts the clients saw
decided (C<X-Tailgate-Attempts> of answers that carry
C<X-Tailgate-Route>; bounds for requests without an answer), decisions
nobody waited for came only for requests that failed without one, and
every decision was reported once;

=item no request marked private reached C<ext>, and private requests
were served;

=item gpu never had two requests at once;

=item error.log: no alert, no policy violation;

=item afterwards one request of each kind is served as a healthy gateway
serves it and counted exactly.

=back

Requests carry their marker (C<private-...> or C<public-...>) in C<user>
and in the message, so that what a mock recorded tells them apart
(C<X-Tailgate-Tags> is not passed to providers).

=cut
