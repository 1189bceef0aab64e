#!/usr/bin/perl
#
# The tailgate_json access log format: every line one JSON object, also
# for odd values (quotes, backslashes, control characters, bytes that are
# not UTF-8 in the model name, the URI and headers); every $tailgate_*
# variable the module defines is in it, except the provider's
# authorization; and no log - the nginx error log, policyd's with -v, the
# access log - carries a configured secret: the provider key, a client
# key, a JWT secret or a token.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use JSON::PP ();
use Test::More;
use Tailgate::Gateway;
use Tailgate::JWT qw(jwt_keypair jwt_token);

# every log at its most talkative: nginx's error log at debug level
$ENV{TAILGATE_DEBUG} = 1;

my $t = Tailgate::Gateway->new->skip_unless_built;

my $hs = jwt_keypair($t->dir, 'HS256');
my $bob = $t->new_key;

my $key = $t->start_gateway(
    keys => [ bob => { key => $bob, tenant => 'acme' } ],
    policyd_args => ['-v'],
    http => "include tailgate/log.conf;\n"
            . "access_log %%DIR%%/json.log tailgate_json;\n"
            . "tailgate_jwt_key HS256 $hs->{secret} kid=hs;\n"
            . "tailgate_jwt_claims client=sub tenant=tid;",
);

my $token = jwt_token(alg => 'HS256', key => $hs, kid => 'hs',
                      claims => { sub => 'jwt-user', tid => 't1',
                                  exp => time + 600 });

# every variable named in the module's table
my $vars_c = do {
    local $/;
    open my $fh, '<', "$FindBin::Bin/../ngx_tailgate_module/ngx_tailgate_variables.c"
        or die "variables.c: $!";
    <$fh>;
};
my @vars = $vars_c =~ /ngx_string\("(tailgate_\w+)"\)/g;
ok(@vars >= 10, scalar(@vars) . ' variables in ngx_tailgate_variables.c');

my $conf = do {
    local $/;
    open my $fh, '<', "$FindBin::Bin/../conf/tailgate/log.conf" or die $!;
    <$fh>;
};
my ($json_format) = $conf =~ /log_format tailgate_json(.*?);\s*$/ms;
ok(defined $json_format, 'log.conf defines tailgate_json');
like($json_format // '', qr/^\s*escape=json/, '... with escape=json');
for my $v (@vars) {
    if ($v eq 'tailgate_upstream_authorization') {
        unlike($json_format, qr/\$\{?$v\b/, "no \$$v: it is a secret");
    } else {
        like($json_format, qr/\$\{?$v\b/, "\$$v is logged");
    }
}
like($json_format, qr/\$upstream_response_time/, 'upstream times are logged');

# requests: plain, streamed, through the external provider (whose key is
# the secret), by JWT, refused, and odd values everywhere

my @odd = ("qu\"ote", "back\\slash", "ctl\x01\x1f\x7f", "nl\nline",
           "latin1 \xe9\xff", "utf8 \xc3\xa9", "{\"json\":1}", '');

sub traffic {
    my ($what) = @_;

    is($t->answered_by($t->chat('qwen')), 'local', "$what: a plain request answers");
    is($t->answered_by($t->chat('smart')), 'ext', 'the external provider answers');
    is($t->answered_by($t->chat('qwen', stream => 1)), 'local', 'a stream answers');
    is($t->answered_by($t->chat('qwen', key => $bob)), 'local', 'bob answers');
    is($t->answered_by($t->chat('qwen', key => $token)), 'local',
       'a JWT answers');
    $t->is_openai_error($t->chat('qwen', key => 'tg-wrong-' . 'x' x 20), 401,
                        undef, 'a wrong key is refused');

    for my $m (@odd) {
        my $res = $t->post_json('/v1/chat/completions', $key,
                                '{"model":' . JSON::PP->new->latin1->encode([$m])
                                =~ s/^\[|\]$//gr . ',"messages":[]}',
                                headers => { 'User-Agent' => $m =~ tr/\n//dr });
        ok($res->{status} >= 200, 'odd model ' . JSON::PP->new->ascii->encode([$m])
                                  . ": answered $res->{status}");
    }

    # a raw, non-UTF-8 byte in the request line itself
    my $raw = $t->http('GET', "/v1/mod\xe9ls\"x", headers => {
        Authorization => "Bearer $key" });
    ok($raw->{status}, "a raw byte in the URI: $raw->{status}");
}

traffic('text logs');

# policyd's log in its other format: one JSON object a line (-j), at debug
# level too, for the same requests

$t->stop_policyd;
my $text_len = length $t->read_file('policyd.log');
$t->start_policyd(env => { EXT_API_KEY => $Tailgate::Gateway::PROVIDER_KEY },
                  args => ['-v', '-j']);
traffic('JSON logs');

$t->stop_all;

# every line of the JSON log parses (leniently as to UTF-8: nginx passes
# a client's bytes through as they came), and the fields are there

my @lines = split /\n/, $t->read_file('json.log');
ok(@lines >= 6 + @odd, scalar(@lines) . ' lines in the JSON log');

my $lenient = JSON::PP->new->latin1;    # any byte is a character
my $strict  = JSON::PP->new->utf8;
my (%seen_model, @parsed);
for my $line (@lines) {
    my $obj = eval { $lenient->decode($line) };
    ok(ref $obj eq 'HASH', 'a JSON object: ' . substr($line, 0, 60))
        or diag($@);
    next unless ref $obj eq 'HASH';
    push @parsed, $obj;
    $seen_model{ $obj->{model} } = 1 if defined $obj->{model};
    if ($line !~ /[\x80-\xff]/) {
        ok(eval { $strict->decode($line); 1 }, '... and strict UTF-8 JSON');
    }
}

for my $m (grep { length } @odd) {
    ok($seen_model{$m}, 'model logged as sent: '
                        . JSON::PP->new->ascii->encode([$m]));
}
my %seen_agent = map { ($_->{user_agent} // '') => 1 } @parsed;
ok($seen_agent{"qu\"ote"} && $seen_agent{"latin1 \xe9\xff"},
   'odd User-Agent values logged as sent');

my ($ext) = grep { ($_->{provider} // '') eq 'ext' } @parsed;
ok($ext, 'the external request is logged');
is($ext->{route}, 'smart', '... with its route') if $ext;
like($ext->{upstream_response_time} // '', qr/^\d/, '... and upstream time')
    if $ext;
my ($jwt) = grep { ($_->{client} // '') eq 'jwt-user' } @parsed;
is($jwt->{auth} // '', 'jwt', 'the JWT client is logged');
my ($b) = grep { ($_->{client} // '') eq 'bob' } @parsed;
is($b->{tenant} // '', 'acme', 'bob\'s tenant is logged');

# no secret anywhere: provider key, client keys, JWT secret and token - in
# policyd's log, in both its formats

my %secret = (
    'provider key' => $Tailgate::Gateway::PROVIDER_KEY,
    'alice\'s key' => $key,
    'bob\'s key'   => $bob,
    'JWT secret'   => $hs->{secret_bytes},
    'JWT token'    => $token,
    'JWT signature' => (split /\./, $token)[2],
);
my $debug_log = $t->read_file('error.log');
ok($text_len > 0, 'policyd -v wrote a log');

my @policyd_json = split /\n/, substr($t->read_file('policyd.log'), $text_len);
ok(@policyd_json > 10, scalar(@policyd_json) . ' lines of policyd -v -j');
my @not_json = grep { !eval { ref $strict->decode($_) eq q(HASH) } } @policyd_json;
is(scalar @not_json, 0, q(every one of them strict JSON))
    or diag(join "\n", @not_json[0 .. ($#not_json < 4 ? $#not_json : 4)]);
ok((grep { /"event":"decide.granted"/ } @policyd_json),
   '... the decisions\' debug lines among them');
# nginx itself, at debug level, dumps the request's and the proxied
# request's headers (Authorization among them): those lines are nginx's,
# not the module's, and are left out here - docs/directives.md says so
my $nginx_dump = qr/http header: "Authorization:|http script var: "Bearer |^Authorization: Bearer /;
ok((grep { /$nginx_dump/ } split /\n/, $debug_log),
   'the error log is at debug level (nginx\'s header dumps are there)');
for my $file (qw(error.log policyd.log access.log json.log nginx.stderr)) {
    my $text = join "\n", grep { !($file eq 'error.log' && /$nginx_dump/) }
                            split /\n/, $t->read_file($file);
    for my $what (sort keys %secret) {
        ok(index($text, $secret{$what}) < 0, "$file has no $what");
    }
}

$t->done_testing;
