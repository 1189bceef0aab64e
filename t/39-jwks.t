#!/usr/bin/perl

# Token keys from an identity provider's JSON Web Key Set: policyd fetches
# it from a mock provider on loopback (t/lib/mock_jwks.pl, which records
# every request), honours its cache headers, writes what it checked to a
# file, and every nginx worker reads that file when it changes - key
# rotation with no reload.  A token whose kid the set lacks makes the
# worker ask policyd for a fresh set, rate-limited, and waits for it
# without blocking; a provider that is down or serves a broken set leaves
# the last good set in force.  A DPoP-bound token of a new kid waits too,
# and its proof is checked (its jti spent) once, after the wait.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use IO::Select;
use POSIX qw(strftime);
use Test::More;
use Time::HiRes qw(time sleep);
use JSON::PP;

use Tailgate::Gateway;
use Tailgate::JWT qw(jwt_keypair jwt_token b64url jwk_thumbprint dpop_proof);
use Tailgate::JWKS qw(jwks_server jwk_of jwks_doc);
use Tailgate::Proto;

my $t = Tailgate::Gateway->new->skip_unless_built;
my $dir = $t->dir;
my $JSON = JSON::PP->new->canonical->utf8;

my %key = (
    a  => jwt_keypair($dir, 'RS256'),
    b  => jwt_keypair($dir, 'ES256'),
    c  => jwt_keypair($dir, 'RS256'),      # rotated in
    d  => jwt_keypair($dir, 'ES384'),
    s1 => jwt_keypair($dir, 'ES256'),      # the static file's
    s2 => jwt_keypair($dir, 'RS256'),
    x  => jwt_keypair($dir, 'ES256'),      # never published
    e  => jwt_keypair($dir, 'ES256'),      # published for the DPoP case
    pk => jwt_keypair($dir, 'ES256'),      # a client's proof key
);

sub jwk { my ($kid, %extra) = @_; jwk_of($key{$kid}, kid => $kid, %extra) }

my $idp = jwks_server($t, 'idp');
$idp->serve('/jwks.json', body => jwks_doc(jwk('a'), jwk('b')),
            etag => '"v1"');

# discovery: the issuer is the mock itself, its set at another path
$idp->serve('/.well-known/openid-configuration',
            body => { issuer => $idp->url,
                      jwks_uri => $idp->url('/disc-jwks.json') });
$idp->serve('/disc-jwks.json', body => jwks_doc(jwk('d')));

my $MIN_REFRESH_MS = 400;

my $policy = Tailgate::Gateway::default_policy();
$policy->{jwks} = {
    idp  => { url => $idp->url('/jwks.json'), file => "$dir/idp.jwks",
              min_refresh_ms => $MIN_REFRESH_MS, refresh_ms => 600000,
              max_bytes => 65536, timeout_ms => 2000 },
    disc => { issuer => $idp->url, file => "$dir/disc.jwks",
              min_refresh_ms => $MIN_REFRESH_MS, refresh_ms => 600000 },
};

# the static file an operator keeps, read with refresh=off
sub write_static {
    my ($doc) = @_;
    my $text = ref $doc ? $JSON->encode($doc) : $doc;
    $t->write_file('static.jwks.tmp', $text);
    rename "$dir/static.jwks.tmp", "$dir/static.jwks" or die "rename: $!";
}

write_static(jwks_doc(jwk('s1')));

my $WORKERS = 2;

$t->start_gateway(
    policy  => $policy,
    workers => $WORKERS,
    http    => "tailgate_jwt_jwks %%DIR%%/idp.jwks;\n"
               . "tailgate_jwt_issuer https://idp.test;",
    server  => q{
        location /disc/v1/ {
            tailgate on;
            tailgate_jwt_jwks %%DIR%%/disc.jwks;
            include tailgate/proxy.conf;
        }

        location /static/v1/ {
            tailgate on;
            tailgate_jwt_jwks %%DIR%%/static.jwks refresh=off;
            include tailgate/proxy.conf;
        }

        location /nowait/v1/ {
            tailgate on;
            tailgate_jwt_jwks %%DIR%%/idp.jwks wait=off;
            include tailgate/proxy.conf;
        }

        location /dpop/v1/ {
            tailgate on;
            tailgate_dpop required;
            include tailgate/proxy.conf;
        }

        location /shortwait/v1/ {
            tailgate on;
            tailgate_jwt_jwks %%DIR%%/short.jwks wait=300ms;
            include tailgate/proxy.conf;
        }
    });

sub token {
    my ($kid, %opt) = @_;
    my $k = $key{$kid};
    return jwt_token(alg => $opt{alg} // $k->{alg}, key => $k, kid => $kid,
                     claims => { sub => "svc-$kid", iss => 'https://idp.test',
                                 exp => int(time) + 600, iat => int(time) - 5,
                                 %{ $opt{claims} // {} } });
}

sub status_of {
    my ($token, $path) = @_;
    return $t->post_json(($path // '') . '/v1/chat/completions', $token,
                         '{"model":"qwen","messages":[]}')->{status};
}

sub fetches { scalar @{ $idp->requests($_[0] // '/jwks.json') } }

# up to 10 s for a token to be answered $want
sub becomes {
    my ($token, $want, $name, $path) = @_;
    my $ok = $t->wait_for(sub { status_of($token, $path) == $want },
                          timeout => 10, interval => 0.1);
    ok($ok && $ok > 0, $name);
}

# the set policyd wrote, as data
sub written {
    my ($file) = @_;
    my $doc = eval { $JSON->decode($t->read_file($file)) } // {};
    return [ map { $_->{kid} } @{ $doc->{keys} // [] } ];
}

# policyd fetches again for a kid the worker lacks: a bounded wait until it
# may (min_refresh_ms after the last fetch), asked by an unknown kid
sub fetch_now {
    my ($path) = @_;
    my $before = fetches($path);
    my $unknown = token('x');
    $t->wait_for(sub {
        status_of($unknown);
        return fetches($path) > $before;
    }, timeout => 10, interval => 0.1);
    return fetches($path) > $before;
}


subtest 'tokens signed by a key of the set are accepted' => sub {
    ok($t->wait_for(sub { -s "$dir/idp.jwks" }, timeout => 10),
       'policyd wrote the set');
    is_deeply(written('idp.jwks'), [qw(a b)], 'with both keys');
    is(sprintf('%04o', (stat "$dir/idp.jwks")[2] & 07777), '0644',
       'readable by the workers\' user whatever the umask (027 here)');

    becomes(token('a'), 200, 'RS256 key "a" from the set');
    is(status_of(token('b')), 200, 'ES256 key "b" from the set');
    is(status_of(token('b'), '/nowait'), 200, 'and where nothing waits');

    is(status_of(token('a', alg => 'RS384')), 401,
       'an RSA key without "alg" verifies RS256 only');
    is(status_of(jwt_token(alg => 'HS256', hmac_secret => 'k' x 64,
                           kid => 'a', claims => { sub => 'mallory',
                           exp => int(time) + 60 })), 401,
       'an HS256 token naming an RSA kid is refused');

    my $first = $idp->requests('/jwks.json')->[0];
    ok(!defined $first->{headers}{'if-none-match'},
       'the first fetch asks for the whole set');
};


subtest 'a kid the set lacks: the request waits for the new set' => sub {
    my $before = fetches();
    my $log = $t->log_size('error');

    $idp->serve('/jwks.json', body => jwks_doc(jwk('a'), jwk('b'), jwk('c')),
                etag => '"v2"');

    # once the last fetch is min_refresh_ms old, a token waits for the next
    sleep($MIN_REFRESH_MS / 1000 + 0.2);
    is(status_of(token('c')), 200,
       'the first token of the new kid "c" waits and is accepted');

    cmp_ok(fetches(), '>', $before, 'policyd fetched the set again');
    is_deeply(written('idp.jwks'), [qw(a b c)], 'and wrote it');
    ok($t->wait_log('error', qr/has no kid "c": policyd is asked/,
                    from => $log), 'the worker said why it asked');
    like($t->policyd_log, qr/fetched again for a kid it lacks/,
         'policyd said why it fetched');

    # every worker reads the new version, with no reload
    my $all = $t->wait_for(sub {
        my @read = $t->error_log =~ /key set "[^"]*idp\.jwks" read again/g;
        return @read >= $WORKERS;
    }, timeout => 10);
    ok($all, "each of the $WORKERS workers read it again");

    my @got = map { status_of(token('c')) } 1 .. 12;
    is_deeply([ grep { $_ != 200 } @got ], [], 'every worker takes kid "c"');
};


subtest 'rotation: a kid taken out is refused after the refresh' => sub {
    my $old = token('a');

    # on new connections, spread over the workers: each remembers it
    my @got = map { status_of($old) } 1 .. 30;
    is_deeply([ grep { $_ != 200 } @got ], [],
              'kid "a" is accepted (and remembered by the workers)');

    my $before = fetches();
    my $log = $t->log_size('error');

    # "a" leaves; the set says to look again in a second
    $idp->serve('/jwks.json', body => jwks_doc(jwk('b'), jwk('c')),
                etag => '"v3"', cache_control => 'max-age=1');

    ok(fetch_now(), 'policyd fetched the set again');
    ok($t->wait_for(sub { !grep { $_ eq 'a' } @{ written('idp.jwks') } },
                    timeout => 10), 'the set written has no "a" any more');

    becomes($old, 401, 'the token of kid "a" is refused');

    # each worker reads the file within a second of its change
    ok($t->wait_for(sub {
        my @read = substr($t->error_log, $log)
                   =~ /key set "[^"]*idp\.jwks" read again: 2 keys/g;
        return @read >= $WORKERS;
    }, timeout => 10), 'every worker read the set without "a"');

    @got = map { status_of($old) } 1 .. 30;
    is_deeply([ grep { $_ != 401 } @got ], [],
              'by every worker, though they remembered it');
    is(status_of(token('c')), 200, 'kid "c" still is accepted');
    unlike($t->error_log, qr/reconfiguring|signal 1 \(SIGHUP\)/,
           'and no reload');
};


subtest 'cache headers: max-age, then 304 with the ETag' => sub {
    my $from = fetches();

    # max-age=1 (v3): policyd asks again by itself, with If-None-Match
    ok($t->wait_for(sub { fetches() >= $from + 2 }, timeout => 10),
       'policyd asks again when max-age is over, unasked');

    my @since = @{ $idp->requests('/jwks.json') }[$from .. fetches() - 1];
    ok((grep { ($_->{headers}{'if-none-match'} // '') eq '"v3"' } @since),
       'with If-None-Match: "v3"');
    ok((grep { $_->{answered} == 304 } @since), 'and got 304');

    my $ino = (stat "$dir/idp.jwks")[1];
    my $mtime = (stat "$dir/idp.jwks")[9];
    sleep 1.2;
    is((stat "$dir/idp.jwks")[1], $ino, '304: the file is not written again');
    is((stat "$dir/idp.jwks")[9], $mtime, '... nor touched');
    is(status_of(token('b')), 200, 'and its keys still work');

    # no cache headers: refresh_ms (10 minutes) - nothing for a while
    $idp->serve('/jwks.json', body => jwks_doc(jwk('b'), jwk('c')),
                etag => '"v3"');
    my $n0 = fetches();
    ok($t->wait_for(sub { fetches() > $n0 }, timeout => 10),
       'the fetch max-age asked for comes');
    my $quiet = fetches();
    sleep 2.5;
    is(fetches(), $quiet, 'then, without cache headers: no fetch for 2.5 s');

    # Expires a second from now (and no max-age): asked again soon
    my $expires = strftime('%a, %d %b %Y %H:%M:%S GMT', gmtime(time + 1));
    $idp->serve('/jwks.json', body => jwks_doc(jwk('b'), jwk('c')),
                etag => '"v4"', expires => $expires);
    ok(fetch_now(), 'a fetch for an unknown kid picks up the Expires');
    my $n = fetches();
    ok($t->wait_for(sub { fetches() > $n }, timeout => 10),
       'and policyd asks again once it passed');
};


subtest 'an unknown kid: many tokens, few fetches' => sub {
    $idp->serve('/jwks.json', body => jwks_doc(jwk('b'), jwk('c')),
                etag => '"v5"');
    sleep($MIN_REFRESH_MS / 1000 + 0.2);

    # 30 at once: they wait for one answer
    my $before = fetches();
    my $t0 = time;
    my @conns = map {
        $t->open_post('/v1/chat/completions',
                      { model => 'qwen', messages => [] },
                      key => token('x', claims => { jti => "p$_" }))
    } 1 .. 30;

    my @status;
    for my $c (@conns) {
        my ($status) = eval { $c->read_response(10) };
        push @status, $status // 0;
    }

    is_deeply([ grep { $_ != 401 } @status ], [], '30 tokens of kid "x": 401');

    # one for each worker that asked, and one each min_refresh_ms after
    my $most = $WORKERS + int((time - $t0) * 1000 / $MIN_REFRESH_MS) + 1;
    cmp_ok(fetches() - $before, '<=', $most,
           "at most $most fetches for them");

    # one after another for a while: no more than min_refresh_ms allows
    $before = fetches();
    $t0 = time;
    my $n = 0;
    while (time - $t0 < 2) {
        is(status_of(token('x')), 401, 'kid "x" refused') or last
            if ++$n % 10 == 0;
        status_of(token('x')) unless $n % 10 == 0;
    }
    my $elapsed_ms = (time - $t0) * 1000;
    my $bound = 1 + int($elapsed_ms / $MIN_REFRESH_MS) + 1;

    cmp_ok(fetches() - $before, '<=', $bound,
           "$n tokens in ${\ int $elapsed_ms} ms: at most $bound fetches");
    cmp_ok($n, '>', $bound, 'far more tokens than fetches');
};


subtest 'the provider down keeps the last good set' => sub {
    my $ok = token('c');
    is(status_of($ok), 200, 'kid "c" before');

    my $log = $t->log_size('policyd');

    $idp->stop;
    sleep($MIN_REFRESH_MS / 1000 + 0.2);
    status_of(token('x'));

    ok($t->wait_log('policyd', qr/jwks idp: .*the last good set \(2 keys\) stays/,
                    from => $log, timeout => 10),
       'policyd logs the failure and keeps the set');
    is_deeply(written('idp.jwks'), [qw(b c)], 'the file is unchanged');
    is(status_of($ok), 200, 'kid "c" still accepted');

    $idp->start;
    $idp->mode('reset');
    $log = $t->log_size('policyd');

    ok(fetch_now(), 'a provider that drops the connection');
    ok($t->wait_log('policyd', qr/the last good set \(2 keys\) stays/,
                    from => $log, timeout => 10), 'fails just the same');
    is(status_of($ok), 200, 'kid "c" still accepted');

    $idp->mode('ok');
};


subtest 'discovery: the set from the issuer\'s openid-configuration' => sub {
    ok($t->wait_for(sub { -s "$dir/disc.jwks" }, timeout => 10),
       'policyd wrote the discovered set');
    ok(scalar @{ $idp->requests('/.well-known/openid-configuration') },
       'it asked for the discovery document');
    like($t->policyd_log, qr/jwks disc: the key set of \S+ is at \S+disc-jwks\.json/,
         'and logged where the set is');

    becomes(token('d'), 200, 'ES384 key "d" of the discovered set', '/disc');
    is(status_of(token('d')), 401, 'not a key of the other set');
    is(status_of(token('b'), '/disc'), 401, 'nor the other way round');
};


# a document the provider serves, and what must come of it
my $good = jwk('b');
my $goodc = jwk('c');

my @ODD = (
    [ 'keys missing',          {} ],
    [ 'keys null',             { keys => undef } ],
    [ 'keys empty',            { keys => [] } ],
    [ 'keys not an array',     { keys => { kid => 'b' } } ],
    [ 'keys of strings',       { keys => [ 'b', 'c' ] } ],
    [ 'not JSON',              '{"keys":[' ],
    [ 'a JSON array',          '[]' ],
    [ 'text after the JSON',   '{"keys":[]} {}' ],
    [ 'unsupported kty',       { keys => [ { %$good, kty => 'oct', k => 'c2VjcmV0' } ] } ],
    [ 'kty a number',          { keys => [ { %$good, kty => 7 } ] } ],
    [ 'kty missing',           { keys => [ { map { $_ => $good->{$_} } grep { $_ ne 'kty' } keys %$good } ] } ],
    [ 'x empty',               { keys => [ { %$good, x => '' } ] } ],
    [ 'x bad base64',          { keys => [ { %$good, x => '!!' . substr($good->{x}, 2) } ] } ],
    [ 'x padded',              { keys => [ { %$good, x => $good->{x} . '=' } ] } ],
    [ 'x null',                { keys => [ { %$good, x => undef } ] } ],
    [ 'x a number',            { keys => [ { %$good, x => 12 } ] } ],
    [ 'x too short',           { keys => [ { %$good, x => b64url('z' x 31) } ] } ],
    [ 'not on the curve',      { keys => [ { %$good, y => b64url("\x01" x 32) } ] } ],
    [ 'n bad base64',          { keys => [ { %$goodc, n => '*' . $goodc->{n} } ] } ],
    [ 'n of 1024 bits',        { keys => [ { %$goodc, n => b64url("\xc3" x 128) } ] } ],
    [ 'e even',                { keys => [ { %$goodc, e => b64url("\x01\x00\x00") } ] } ],
    [ 'e missing',             { keys => [ { map { $_ => $goodc->{$_} } grep { $_ ne 'e' } keys %$goodc } ] } ],
    [ 'use enc',               { keys => [ { %$good, use => 'enc' } ] } ],
    [ 'alg of another curve',  { keys => [ { %$good, alg => 'ES384' } ] } ],
    [ 'alg none',              { keys => [ { %$goodc, alg => 'none' } ] } ],
    [ 'a private key',         { keys => [ { %$good, d => b64url('z' x 32) } ] } ],
    [ 'kid empty',             { keys => [ { %$good, kid => '' } ] } ],
    [ 'kid a number',          { keys => [ { %$good, kid => 7 } ] } ],
    [ 'kid huge',              { keys => [ { %$good, kid => 'k' x 300 } ] } ],
    [ 'kid given twice',       { keys => [ $good, { %$goodc, kid => 'b' } ] } ],
    [ 'member given twice',    '{"keys":[' . substr($JSON->encode($good), 0, -1) . ',"x":"AAAA"}]}' ],
    [ 'keys given twice',      '{"keys":[' . $JSON->encode($good) . '],"keys":[]}' ],
    [ 'a NUL escaped',         '{"keys":[' . ($JSON->encode({ %$good, kid => 'bXc' }) =~ s/bXc/b\\u0000c/r) . ']}' ],
    [ 'more than 100 keys',    { keys => [ map { { %$good, kid => "k$_" } } 1 .. 101 ] } ],
    [ 'huge (over max_bytes)', { keys => [ $good ], pad => 'p' x 70000 } ],
);

subtest 'odd key sets never replace the last good one' => sub {
    is_deeply(written('idp.jwks'), [qw(b c)], 'the set in force: b, c');

    for my $case (@ODD) {
        my ($name, $doc) = @$case;
        my $log = $t->log_size('policyd');

        $idp->serve('/jwks.json', body => $doc, etag => undef);
        ok(fetch_now(), "$name: fetched");
        ok($t->wait_log('policyd', qr/the last good set \(2 keys\) stays/,
                        from => $log, timeout => 10),
           "$name: refused, the last good set stays")
            or diag(substr($t->policyd_log, $log));
        is_deeply(written('idp.jwks'), [qw(b c)], "$name: the file is as it was");
    }

    is(status_of(token('b')), 200, 'after them all, kid "b" still works');
    is(status_of(token('c')), 200, 'and kid "c"');

    my $text = $t->policyd_log;
    like($text, qr/keys: missing \(expected an array of keys\)/,
         'the reason names the key and what was expected');
    like($text, qr/keys\[0\]\.kty: "oct" is not supported/, 'kty oct');
    like($text, qr/keys\[0\]\.d: a private key/, 'a private key');
    like($text, qr/kid "b" is given twice/, 'a duplicate kid');
    like($text, qr/larger than max_bytes/, 'a huge answer');
    unlike($text, qr/\Q$key{b}{private_pem}\E/, 'no key file path in the log');
};


subtest 'a set with some odd keys keeps its good ones' => sub {
    my $log = $t->log_size('policyd');

    $idp->serve('/jwks.json', etag => '"v9"', body => jwks_doc(
        $good, jwk('c'),
        { %{ jwk('a') }, kty => 'oct' },     # left out
        { %{ jwk('d') }, x => '***' },       # left out
        'not a key',                          # left out
    ));

    ok(fetch_now(), 'fetched');
    ok($t->wait_for(sub { @{ written('idp.jwks') } == 2
                          && $t->policyd_log =~ /3 of its keys left out/ },
                    timeout => 10), 'three entries left out, logged');
    is_deeply(written('idp.jwks'), [qw(b c)], 'the two good ones written');
    is(status_of(token('b')), 200, 'kid "b" works');
    is(status_of(token('d')), 401, 'kid "d" (its x was bad) does not');
};


subtest 'wait=off: refused at once, but the set is fetched' => sub {
    $idp->serve('/jwks.json', body => jwks_doc($good, jwk('c'), jwk('s2')),
                etag => '"v10"');
    sleep($MIN_REFRESH_MS / 1000 + 0.2);

    my $before = fetches();
    my $tok = token('s2');

    is(status_of($tok, '/nowait'), 401, 'the first token of kid "s2": 401');
    ok($t->wait_for(sub { fetches() > $before }, timeout => 10),
       'policyd was asked to fetch');
    becomes($tok, 200, 'then the same token is accepted', '/nowait');
};


subtest 'a set nobody fetches: no wait, no endless asking' => sub {
    # short.jwks is in no "jwks" of the policy: policyd says so (404)
    my $log = $t->log_size('error');

    write_short(jwks_doc(jwk('s1')));
    becomes(token('s1'), 200, 'its keys work', '/shortwait');

    is(status_of(token('x'), '/shortwait'), 401, 'an unknown kid: 401');
    ok($t->wait_log('error', qr/policyd fetches no key set for "[^"]*short\.jwks"/,
                    from => $log), 'the worker learns nobody fetches it');
    is(status_of(token('x'), '/shortwait'), 401, 'and refuses again');
};

sub write_short {
    my ($doc) = @_;
    $t->write_file('short.jwks.tmp', $JSON->encode($doc));
    rename "$dir/short.jwks.tmp", "$dir/short.jwks" or die "rename: $!";
}


subtest 'a static file changes without a reload' => sub {
    becomes(token('s1'), 200, 'kid "s1" of the static file', '/static');

    my $log = $t->log_size('error');
    my $before = fetches();

    is(status_of(token('s2'), '/static'), 401,
       'refresh=off: an unknown kid is refused at once');
    is(fetches(), $before, 'and policyd is not asked');

    write_static(jwks_doc(jwk('s2')));
    becomes(token('s2'), 200, 'the new kid "s2" once the file changed', '/static');
    is(status_of(token('s1'), '/static'), 401, 'the old kid "s1" refused');

    # torn, then huge, then gone: the last good set stays
    write_static('{"keys":[' . substr($JSON->encode(jwk('s1')), 0, 40));
    ok($t->wait_log('error', qr/key set "[^"]*static\.jwks": not JSON.*the last good keys stay/,
                    from => $log, timeout => 10), 'a torn file is logged');
    is(status_of(token('s2'), '/static'), 200, 'and "s2" still works');

    ok($t->wait_for(sub {
        my @n = substr($t->error_log, $log) =~ /static\.jwks": not JSON/g;
        return @n >= $WORKERS;
    }, timeout => 10), 'by each worker');
    my $size = $t->log_size('error');
    sleep 2.2;
    my @again = substr($t->error_log, $size) =~ /static\.jwks": not JSON/g;
    is(scalar @again, 0, 'once, not every second');

    write_static('{"keys":[], "pad":"' . ('p' x (1024 * 1024)) . '"}');
    ok($t->wait_log('error', qr/static\.jwks" is larger than 1 MB/,
                    from => $size, timeout => 10), 'a huge file is refused');

    unlink "$dir/static.jwks";
    ok($t->wait_log('error', qr/static\.jwks" cannot be read; the last good keys stay/,
                    from => $size, timeout => 10), 'a file gone is logged');
    is(status_of(token('s2'), '/static'), 200, '"s2" still works');
};


subtest 'a request that waits and whose client goes' => sub {
    $idp->serve('/jwks.json', body => jwks_doc($good, jwk('c')),
                etag => '"v11"', delay_ms => 800);
    sleep($MIN_REFRESH_MS / 1000 + 0.2);

    my $c = $t->open_post('/v1/chat/completions',
                          { model => 'qwen', messages => [] },
                          key => token('x'));
    sleep 0.2;
    $c->close;

    sleep 1.5;
    is(status_of(token('b')), 200, 'the gateway goes on');
    unlike($t->error_log, qr/\[(alert|crit)\]|signal \d+/, 'no alert, no crash');

    $idp->serve('/jwks.json', body => jwks_doc($good, jwk('c')),
                etag => '"v11"');
};


subtest 'a policyd reload keeps what a set learned; a restart its file' => sub {
    $idp->serve('/jwks.json', body => jwks_doc($good, jwk('c')),
                etag => '"v12"');
    sleep($MIN_REFRESH_MS / 1000 + 0.2);
    ok(fetch_now(), 'the set is fetched');

    my $before = fetches();
    my $log = $t->log_size('policyd');

    $t->reload_policyd;
    ok($t->wait_log('policyd', qr/policy reloaded/, from => $log),
       'policyd reloaded');
    sleep 1;
    is(fetches(), $before, 'the same set, the same URL: no fetch on reload');
    is(status_of(token('b')), 200, 'kid "b" still works');

    # a restart reads the file the last run wrote, and fetches at once
    $idp->stop;
    $t->stop_proc('policyd');
    $log = $t->log_size('policyd');
    $t->start_policyd(env => { EXT_API_KEY => 'x' });

    ok($t->wait_log('policyd', qr/jwks idp: .*Couldn't connect.*the last good set \(2 keys\) stays/,
                    from => $log, timeout => 10),
       'a restarted policyd that cannot fetch keeps the set from its file');
    is_deeply(written('idp.jwks'), [qw(b c)], 'the file is as it was');

    $idp->start;
    becomes(token('c'), 200, 'and the gateway goes on with it');
};


subtest 'a DPoP-bound token of a new kid: the proof is checked after the wait' => sub {
    my $pjwk = jwk_of($key{pk});
    my $url = 'http://127.0.0.1:' . $t->port('nginx') . '/dpop/v1/chat/completions';
    my $bound = sub {
        my ($kid) = @_;
        return token($kid, claims => { cnf => { jkt => jwk_thumbprint($pjwk) } });
    };
    my $call = sub {
        my ($token, $proof) = @_;
        return $t->http('POST', '/dpop/v1/chat/completions',
                        headers => { 'Content-Type' => 'application/json',
                                     Authorization => "DPoP $token",
                                     DPoP => $proof },
                        body => '{"model":"qwen","messages":[]}');
    };
    my $proof = sub {
        dpop_proof(key => $key{pk}, jwk => $pjwk, htu => $url, token => $_[0]);
    };

    $idp->serve('/jwks.json', body => jwks_doc($good, jwk('c'), jwk('e')),
                etag => '"v13"');
    sleep($MIN_REFRESH_MS / 1000 + 0.2);

    my $log = $t->log_size('error');
    my $token = $bound->('e');
    my $p = $proof->($token);

    my $res = $call->($token, $p);
    is($res->{status}, 200, 'the token of the new kid "e" waits, then its proof passes')
        or diag($res->{body});
    ok($t->wait_log('error', qr/has no kid "e": policyd is asked/, from => $log),
       'it did wait for the set');

    $res = $call->($token, $p);
    is($res->{status}, 401, 'the same proof again: refused');
    like($res->{body}, qr/invalid_dpop_proof/, 'as a replayed proof');
    is($call->($token, $proof->($token))->{status}, 200,
       'a new proof with the same token passes');

    # a kid that never comes: refused as a token, whatever the proof
    sleep($MIN_REFRESH_MS / 1000 + 0.2);
    my $unknown = $bound->('x');
    $res = $call->($unknown, $proof->($unknown));
    is($res->{status}, 401, 'a bound token of a kid no set has: 401');
    like($res->{body}, qr/invalid_api_key/, 'for the token, not the proof');
    unlike($t->error_log, qr/\[(alert|crit)\]|signal \d+/, 'no alert, no crash');
};


subtest 'JWKS_REFRESH on the wire' => sub {
    my $s = tg_connect($t->policyd_sock);
    tg_send($s, tg_frame(TG_MSG_HELLO, 0, [TG_F_MAX_FRAME, 'u32', 65536]));
    my $hello = tg_read_frame($s, 5);
    is($hello && $hello->{type}, TG_MSG_HELLO_OK, 'HELLO_OK');

    tg_send($s, tg_frame(TG_MSG_JWKS_REFRESH, 7,
                         [TG_F_JWKS_FILE, 'str', "$dir/nothing.jwks"]));
    my $f = tg_read_frame($s, 5);
    is($f && $f->{type}, TG_MSG_JWKS_STATE, 'a file no set writes: JWKS_STATE');
    is($f && tg_field($f, TG_F_STATUS), 404, 'status 404');
    is($f && $f->{id}, 7, 'with the id asked');

    tg_send($s, tg_frame(TG_MSG_JWKS_REFRESH, 8,
                         [TG_F_JWKS_FILE, 'str', "$dir/idp.jwks"],
                         [TG_F_KID, 'str', 'b']));
    $f = tg_read_frame($s, 5);
    is($f && tg_field($f, TG_F_STATUS), 200, 'a kid the set has: 200 at once');
    ok($f && defined tg_field($f, TG_F_REFRESH_MS), 'with refresh_ms');

    tg_send($s, tg_frame(TG_MSG_JWKS_REFRESH, 9, [TG_F_KID, 'str', 'b']));
    $f = tg_read_frame($s, 5);
    is($f && $f->{type}, TG_MSG_ERROR, 'no jwks_file: ERROR');
    is($f && tg_field($f, TG_F_STATUS), TG_ERR_MISSING_FIELD, 'missing_field');
    close $s;
};


subtest 'policy errors name the file, the key path and what was expected' => sub {
    my @cases = (
        [ { url => 'http://idp.example.com/jwks', file => "$dir/e.jwks" },
          qr/jwks\.e\.url: expected an https:\/\/ URL \(http:\/\/ only to 127\.0\.0\.1/ ],
        [ { url => 'https://idp.example.com/jwks', issuer => 'https://idp.example.com',
            file => "$dir/e.jwks" }, qr/jwks\.e: expected "url" or "issuer", not both/ ],
        [ { file => "$dir/e.jwks" }, qr/jwks\.e: expected "url"/ ],
        [ { url => 'https://idp.example.com/jwks' }, qr/jwks\.e\.file: missing/ ],
        [ { url => 'https://idp.example.com/jwks', file => 'rel.jwks' },
          qr/jwks\.e\.file: expected an absolute file path/ ],
        [ { url => 'https://idp.example.com/jwks', file => "$dir/no/such/e.jwks" },
          qr/jwks\.e\.file: expected a file in a directory that exists/ ],
        [ { url => 'https://idp.example.com/jwks', file => "$dir/e.jwks",
            min_refresh_ms => 5000, refresh_ms => 2000 },
          qr/jwks\.e\.min_refresh_ms: expected at most refresh_ms/ ],
        [ { url => 'https://idp.example.com/jwks', file => "$dir/e.jwks",
            min_refresh_ms => 'soon' }, qr/jwks\.e\.min_refresh_ms: expected/ ],
        [ { url => 'ftp://idp.example.com/jwks', file => "$dir/e.jwks" },
          qr/jwks\.e\.url: expected an https:\/\/ URL/ ],
        [ { url => 'https://user:pw@idp.example.com/jwks', file => "$dir/e.jwks" },
          qr/jwks\.e\.url: expected a URL without credentials/ ],
        [ { url => 'https://idp.example.com/jwks', file => "$dir/e.jwks", colour => 1 },
          qr/jwks\.e\.colour: unknown key/ ],
        [ 'a string', qr/jwks\.e: expected an object/ ],
    );

    for my $case (@cases) {
        my ($set, $re) = @$case;
        my $p = Tailgate::Gateway::default_policy();
        $p->{jwks} = { e => $set };
        $t->write_file('bad-policy.json', $JSON->encode($p));

        local $ENV{EXT_API_KEY} = 'x';
        my ($rc, $out, $err) = $t->policyd_cmd('-t', '-c', "$dir/bad-policy.json",
                                               '-s', "$dir/x.sock",
                                               { stderr => 'apart' });
        isnt($rc, 0, "policyd -t refuses: $re");
        like($err, qr/bad-policy\.json: $re/, 'and says so with the file')
            or diag($err);
    }

    my $p = Tailgate::Gateway::default_policy();
    $p->{jwks} = { e => { url => 'http://idp.example.com/jwks', insecure_http => JSON::PP::true,
                          file => "$dir/e.jwks" } };
    $t->write_file('ok-policy.json', $JSON->encode($p));
    local $ENV{EXT_API_KEY} = 'x';
    my ($rc, $out, $err) = $t->policyd_cmd('-t', '-c', "$dir/ok-policy.json",
                                           '-s', "$dir/x.sock",
                                           { stderr => 'apart' });
    is($rc, 0, 'http:// elsewhere with "insecure_http": true is taken') or diag($err);
};


subtest 'nginx -t: a bad key set file names the file and the key' => sub {
    $t->write_file('bad.jwks', $JSON->encode(jwks_doc({ %$good, y => 'AA' })));
    my ($rc, $out) = $t->nginx_check(
        "tailgate_policyd unix:%%DIR%%/none.sock;\n"
        . "tailgate_jwt_jwks %%DIR%%/bad.jwks;\n"
        . "server { listen 127.0.0.1:%%PORT%%; location / { tailgate on; } }");
    isnt($rc, 0, 'nginx -t fails');
    like($out, qr/key set "[^"]*bad\.jwks": no usable key \(keys\[0\]\.y: expected the base64url coordinate of 32 bytes\)/,
         'naming the file, the key path and what was expected') or diag($out);

    ($rc, $out) = $t->nginx_check(
        "tailgate_policyd unix:%%DIR%%/none.sock;\n"
        . "tailgate_jwt_jwks %%DIR%%/missing.jwks;\n"
        . "server { listen 127.0.0.1:%%PORT%%; location / { tailgate on; } }");
    is($rc, 0, 'a file not there yet is no error') or diag($out);
    like($out, qr/missing\.jwks" is not there yet/, 'but a warning');

    ($rc, $out) = $t->nginx_check(
        "tailgate_policyd unix:%%DIR%%/none.sock;\n"
        . "tailgate_jwt_jwks %%DIR%%/idp.jwks wait=forever;\n"
        . "server { listen 127.0.0.1:%%PORT%%; location / { tailgate on; } }");
    isnt($rc, 0, 'wait=forever is refused');
    like($out, qr/expected wait=TIME of at most 60s, or wait=off/, 'saying what is expected');
};


done_testing;
