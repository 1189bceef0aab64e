#!/usr/bin/perl
#
# Where tags come from and what they do: identity, X-Tailgate-Tags (adds,
# never removes), the location - none lost when a key's tags and a
# location's add up past the limit; zones and regions; steps passed over
# for what the request needs; the module's own privacy guard against a
# wrong policy; the X-Tailgate-* headers and "policyd explain".

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use JSON::PP ();
use Test::More;
use Tailgate::Gateway;

my $t = Tailgate::Gateway->new->skip_unless_built;
my $JSON = JSON::PP->new->canonical->utf8;

my $policy = {
    providers => {
        local  => { upstream => 'tg_local', zone => 'local',
                    endpoints => ['chat'], context_tokens => 100,
                    tools => JSON::PP::false },
        lan    => { upstream => 'tg_lan', zone => 'private', region => 'eu',
                    endpoints => ['chat'] },
        ext    => { upstream => 'tg_ext', zone => 'external', region => 'us',
                    api_key => '${EXT_API_KEY}', endpoints => ['chat'] },

        # deliberately wrong: "local", but its upstream is the external one
        sneaky => { upstream => 'tg_ext', zone => 'local',
                    endpoints => ['chat'] },

        gpu    => { upstream => 'tg_local', zone => 'local',
                    endpoints => ['chat'], max_concurrency => 1 },

        us     => { upstream => 'tg_us', zone => 'external', region => 'us',
                    endpoints => ['chat'] },
        eu     => { upstream => 'tg_eu', zone => 'external', region => 'eu',
                    endpoints => ['chat'] },
    },
    routes => {
        cloudfirst => { steps => [ { provider => 'ext', model => 'e' },
                                   { provider => 'local', model => 'l' } ] },
        regional   => { steps => [ { provider => 'ext', model => 'e' },
                                   { provider => 'lan', model => 'n' },
                                   { provider => 'local', model => 'l' } ] },
        fit        => { steps => [ { provider => 'local', model => 'l' },
                                   { provider => 'ext', model => 'e' } ] },
        wrong      => { steps => [ { provider => 'sneaky', model => 's' } ] },
        gpu        => { steps => [ { provider => 'gpu', model => 'g' } ] },
        r          => { steps => [ { provider => 'us', model => 'u' },
                                   { provider => 'eu', model => 'e' } ] },
    },
};

my $bob = $t->new_key;
my $eve = $t->new_key;
my $eu_only = $t->new_key;

my $key = $t->start_gateway(
    policy => $policy,
    private => [qw(tg_local tg_lan)],
    keys => [ bob => { key => $bob, tags => ['private'] },
              eve => { key => $eve, tags => ['region:eu'] },
              dora => { key => $eu_only,
                        tags => [ (map { "team$_" } 1 .. 15), 'region:eu' ] } ],
    http => "include tailgate/log.conf;\n"
            . "access_log %%DIR%%/audit.log tailgate;",
    server => q{
        location /quiet/v1/ {
            tailgate on;
            tailgate_explain_headers off;
            include tailgate/proxy.conf;
            error_page 502 504 @tailgate_error;
        }
        location /private/v1/ {
            tailgate on;
            tailgate_tags private;
            include tailgate/proxy.conf;
        }
        location /office/v1/ {
            tailgate on;
            tailgate_tags office;
            include tailgate/proxy.conf;
        }
    });

my %mock = map { $_ => $t->mock($_) } qw(local lan ext);

sub count { scalar @{ $mock{$_[0]}->requests } }

sub goes {
    my ($model, %opt) = @_;
    my $tags = delete $opt{tags};
    my $path = delete $opt{path} // '/v1/chat/completions';
    $opt{headers} = { 'X-Tailgate-Tags' => $tags } if defined $tags;
    return $t->answered_by($t->call($path, $model, %opt));
}

# tags from the request: add, never remove

is(goes('cloudfirst'), 'ext', 'no tags: the first step');
is(goes('cloudfirst', tags => 'private'), 'local', 'X-Tailgate-Tags: private');
is(goes('cloudfirst', tags => 'PRIVATE'), 'local', 'tags are lowercased');
is(goes('cloudfirst', tags => 'team:blue, private'), 'local',
   'a list, with spaces');
is(goes('cloudfirst', headers => { 'X-Tailgate-Tags' => ['team:x', 'private'] }),
   'local', 'two header lines');

is(goes('cloudfirst', key => $bob), 'local', 'identity tag private');
is(goes('cloudfirst', key => $bob, tags => 'public'), 'local',
   'a header cannot lift an identity tag');
is(goes('cloudfirst', key => $bob, tags => ''), 'local', '... nor an empty one');

for my $bad ('!private', 'pri vate!', 'x' x 65, join(',', map { "t$_" } 1 .. 17)) {
    $t->is_openai_error($t->chat('cloudfirst', key => $bob,
                                 headers => { 'X-Tailgate-Tags' => $bad }),
                        400, 'invalid_tags', "bad tags refused: '"
                        . substr($bad, 0, 20) . "'");
}

is(goes('cloudfirst', path => '/private/v1/chat/completions'), 'local',
   'the location\'s tag');

# a key of 16 tags (the most there may be) on a location that adds its
# own: tags only ever add restrictions, none of the key's is dropped

{
    my %m = map { $_ => $t->mock($_) } qw(us eu);

    my $res = $t->post_json('/v1/chat/completions', $eu_only,
                            { model => 'r', messages => [] });
    is($res->{headers}{'x-tailgate-provider'}, 'eu', '/v1/: the key keeps it in eu');

    my $before = @{ $m{us}->requests };

    $res = $t->post_json('/office/v1/chat/completions', $eu_only,
                         { model => 'r', messages => [] });

    is(scalar @{ $m{us}->requests } - $before, 0,
       'a location tag does not take the key\'s region:eu away: us got nothing')
        or diag("status $res->{status}, provider "
                . ($res->{headers}{'x-tailgate-provider'} // '-'));

    $t->logs_clean('error.log is clean after the tags of key and location');
}

{
    my $before = count('ext');
    goes('cloudfirst', tags => 'private');
    goes('cloudfirst', key => $bob, tags => 'public');
    is(count('ext'), $before, 'the external mock got none of them');
    ok(!grep({ exists $_->{headers}{'x-tailgate-tags'} }
             @{ $mock{local}->requests }),
       'X-Tailgate-Tags is not passed on');
}

# regions

is(goes('regional'), 'ext', 'no region: the first step');
is(goes('regional', tags => 'region:eu'), 'lan', 'region:eu: the eu provider');
is(goes('regional', tags => 'region:us'), 'ext', 'region:us');
is(goes('regional', key => $eve), 'lan', 'a region from the identity');
is(goes('regional', key => $eve, tags => 'region:us'), 403,
   'identity eu and header us: no provider is in both');
$t->is_openai_error($t->chat('regional', headers => { 'X-Tailgate-Tags' => 'region:ap' }),
                    403, 'region_restricted', 'no provider in the region: 403');
is(goes('regional', key => $bob, tags => 'region:eu'), 'lan',
   'private and eu: the private eu provider');

# passed over for what the request needs, and why

is(goes('fit'), 'local', 'a small request: local first');
is(goes('fit', body => { messages => [{ role => 'user', content => 'x' x 800 }] }),
   'ext', 'over local\'s context: the next step');
is(goes('fit', body => { tools => [{ type => 'function',
                                     function => { name => 'f' } }] }),
   'ext', 'tools where local has none: the next step');
is(goes('fit', key => $bob,
        body => { messages => [{ role => 'user', content => 'x' x 800 }] }),
   403, 'private and too large for local: refused, not sent outside');

$t->wait_log('audit.log', qr/reason="local:tools ext:chosen"/)
    or diag($t->read_file('audit.log'));
like($t->read_file('audit.log'), qr/route=fit provider=ext attempts=1 failed="-" reason="local:context ext:chosen"/,
     'the audit line says why local was passed over');

# a wrong policy cannot send private work outside

{
    my $before = count('ext');
    my $res = $t->chat('wrong', key => $bob);

    $t->is_openai_error($res, 503, 'privacy_violation',
                        'a "local" provider on an upstream nginx does not '
                        . 'list as private: refused');
    is(count('ext'), $before, 'the external mock got nothing');
    like($t->error_log, qr/policy violation: policyd chose provider "sneaky" \(upstream "tg_ext"\) for a private request/,
         'logged as a policy violation');

    is(goes('wrong'), 'sneaky', 'the same route without private tags goes');
}

# where a request went, in the response

{
    my $res = $t->chat('cloudfirst');
    is($res->{headers}{'x-tailgate-route'}, 'cloudfirst', 'X-Tailgate-Route');
    is($res->{headers}{'x-tailgate-provider'}, 'ext', 'X-Tailgate-Provider');
    is($res->{headers}{'x-tailgate-attempts'}, 1, 'X-Tailgate-Attempts');

    $mock{ext}->set(headers => { 'X-Tailgate-Provider' => 'spoofed' });
    $res = $t->chat('cloudfirst');
    is($res->{headers}{'x-tailgate-provider'}, 'ext',
       'a provider cannot pose as another');
    $mock{ext}->set();

    $res = $t->call('/quiet/v1/chat/completions', 'cloudfirst');
    is($res->{status}, 200, 'tailgate_explain_headers off: answered');
    ok(!grep(/^x-tailgate/, keys %{ $res->{headers} }),
       '... without X-Tailgate-* headers');
}

# where the explain headers are off, errors do not name providers either

{
    $mock{ext}->stop;
    my $res = $t->call('/quiet/v1/chat/completions', 'cloudfirst');
    $t->is_openai_error($res, 502, undef, 'quiet: the provider is unreachable');
    unlike($res->{body}, qr/\bext\b/, 'quiet: the error does not name it');

    $res = $t->chat('cloudfirst');
    like($t->error($res)->{message}, qr/"ext"/, 'elsewhere it does');
    $mock{ext}->start;
}

# policyd explain: from the file, and from the running policyd

{
    my $file = $t->dir . '/policy.json';
    my $sock = $t->policyd_sock;

    my ($rc, $out) = $t->policyd_cmd(qw(explain -c), $file, qw(-T private cloudfirst));
    is($rc, 0, 'explain: exit 0 for a request that would be served');
    like($out, qr/^step:\s+ext\s+passed over: external, and the request is private$/m,
         'explain: why ext is passed over');
    like($out, qr/^answer:\s+200 provider "local" \(local\), model "l"$/m,
         'explain: the answer');

    ($rc, $out) = $t->policyd_cmd(qw(explain -c), $file, qw(-T region:ap regional));
    is($rc, 1, 'explain: exit 1 for a refusal');
    like($out, qr/^answer:\s+403 permission_error region_restricted: /m,
         'explain: the refusal');

    ($rc, $out) = $t->policyd_cmd(qw(explain -s), $sock, qw(--json -T region:eu regional));
    my $doc = eval { $JSON->decode($out) };
    ok($doc, 'explain --json is JSON') or diag($out);
    is($doc->{source}, 'policyd', 'asked the running policyd');
    is($doc->{provider}, 'lan', 'explain -s: the provider');
    is_deeply([map { "$_->{provider}:$_->{why}" } @{ $doc->{steps} }],
              ['ext:region', 'lan:chosen'], 'explain -s: the steps');

    ($rc, $out) = $t->policyd_cmd(qw(explain -s), $sock, 'cloudfirst');
    unlike($out, qr/\Q$Tailgate::Gateway::PROVIDER_KEY\E|Bearer/,
           'explain never shows a provider key');

    # no lease is taken: gpu allows one request at a time
    for my $i (1, 2) {
        ($rc, $out) = $t->policyd_cmd(qw(explain -s), $sock, 'gpu');
        like($out, qr/^answer:\s+200 provider "gpu"/m, "explain gpu ($i)");
    }
    is(goes('gpu'), 'gpu', 'and a real request still gets the provider');

    ($rc, $out) = $t->policyd_cmd(qw(explain -c), $file, qw(-e images cloudfirst));
    is($rc, 2, 'explain: a bad question exits 2');
}

done_testing();
