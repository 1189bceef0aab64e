#!/usr/bin/perl
#
# "${NAME}" in every string of the policy, end to end with the real
# policyd: hosts, base paths, upstream names, models, request edits and a
# literal "$${" reach the provider as the environment says; defaults
# (${NAME:-default}) stand in for what is unset or empty; policyd -t and a
# start list every missing variable, each with the file and its key path,
# and nothing else; a reload reads the same environment; explain reads it
# as policyd would, but never a secret; secrets stay one reference, never
# a default, never printed.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use JSON::PP ();
use Tailgate::Gateway;

my $t = Tailgate::Gateway->new->skip_unless_built;
my $dir = $t->dir;
my $JSON = JSON::PP->new->canonical->pretty;

my %env = (
    TG_LOCAL_UPSTREAM => 'tg_local',
    TG_LOCAL_HOST     => 'models.internal',
    TG_LOCAL_PORT     => '8081',
    TG_MODEL          => 'qwen-from-env',
    TG_EXT_HOST       => 'api.env.test',
    TG_NODE           => 'gw-7',
    TG_EMPTY          => '',
);

sub env_policy {
    my (%change) = @_;

    my $p = {
        providers => {
            local => {
                upstream  => '${TG_LOCAL_UPSTREAM}',
                host      => '${TG_LOCAL_HOST}:${TG_LOCAL_PORT}',
                base_path => '${TG_BASE:-/v1}',
                zone      => '${TG_ZONE:-local}',
                endpoints => ['chat', 'embeddings'],
            },
            ext => {
                upstream  => 'tg_ext',
                host      => '${TG_EXT_HOST}',
                base_path => '/api${TG_EMPTY:-/v2}',
                api_key   => '${EXT_API_KEY}',
                zone      => 'external',
                endpoints => ['chat'],
            },
        },
        routes => {
            qwen   => { steps => [{ provider => 'local', model => '${TG_MODEL}',
                                    adjust => [{ set => { 'metadata.via' => 'tailgate ${TG_NODE}' } }] }] },
            smart  => { steps => [{ provider => 'ext', model => 'deepseek-$${literal}' }] },
        },
        %change,
    };

    return $p;
}

# --- serving: what the variables say reaches the providers -----------------

my $key = $t->start_gateway(policy => env_policy(), policyd_env => \%env,
                            mocks => [qw(local ext)]);

my $res = $t->chat('qwen', key => $key);
is($res->{status}, 200, 'a route whose every string is a variable serves');

my $got = $t->mock('local')->requests->[-1];
is($got->{headers}{host}, 'models.internal:8081',
   'host "${TG_LOCAL_HOST}:${TG_LOCAL_PORT}": the Host the provider gets');
is($got->{path}, '/v1/chat/completions', 'base_path "${TG_BASE:-/v1}", unset: the default');
is($got->{json}{model}, 'qwen-from-env', 'model "${TG_MODEL}": the model it gets');
is_deeply($got->{json}{metadata}, { via => 'tailgate gw-7' },
          'an edit\'s value "tailgate ${TG_NODE}": the value it gets');

$res = $t->chat('smart', key => $key);
is($res->{status}, 200, 'the external route serves');
$got = $t->mock('ext')->requests->[-1];
is($got->{headers}{host}, 'api.env.test', 'host "${TG_EXT_HOST}"');
is($got->{path}, '/api/v2/chat/completions',
   'base_path "/api${TG_EMPTY:-/v2}", empty: the default');
is($got->{json}{model}, 'deepseek-${literal}', 'model "deepseek-$${literal}": a literal "${"');
is($got->{headers}{authorization}, "Bearer $Tailgate::Gateway::PROVIDER_KEY",
   'api_key "${EXT_API_KEY}": the key it gets');

# a reload reads the same environment again

my $p = env_policy();
$p->{routes}{qwen}{steps}[0]{model} = '${TG_MODEL}-v2';
$t->write_policy($p);
$t->reload_policyd;
ok($t->wait_log('policyd', qr/policy reloaded/), 'a reload with variables');
ok($t->wait_for(sub {
    $t->chat('qwen', key => $key)->{status} == 200
        && $t->mock('local')->requests->[-1]{json}{model} eq 'qwen-from-env-v2'
}, timeout => 5), '  reads them from the same environment');

my $from = $t->log_size('policyd');
$p->{providers}{local}{host} = '${TG_RELOAD_HOST}';
$p->{routes}{qwen}{steps}[0]{model} = '${TG_RELOAD_MODEL}';
$t->write_policy($p);
$t->reload_policyd;
ok($t->wait_log('policyd', qr/providers\.local\.host: environment variable TG_RELOAD_HOST is not set/,
                from => $from),
   'a reload naming a variable that is not set: refused, naming its key path');
like(substr($t->policyd_log, $from),
     qr/routes\.qwen\.steps\[0\]\.model: environment variable TG_RELOAD_MODEL is not set/,
     '  and every other one');
$t->chat('qwen', key => $key);
is($t->mock('local')->requests->[-1]{json}{model}, 'qwen-from-env-v2',
   '  the policy in force stays');

$t->stop_nginx;
$t->stop_policyd;

# --- policyd -t and a start: every missing variable, file and key path -----

my $missing = {
    listen       => { path => '${TG_RUN}/policyd.sock', group => '${TG_SOCK_GROUP}' },
    admin_listen => { path => '${TG_RUN}/admin.sock' },
    providers    => {
        a => { upstream => '${TG_UP_A}', host => '${TG_HOST_A}:${TG_PORT_A}',
               api_key => '${TG_KEY_A}', zone => 'external', endpoints => ['chat'],
               health => { url => 'https://${TG_HOST_A}/health' } },
        b => { upstream => 'tg_b', zone => 'local', endpoints => ['chat'],
               models => ['${TG_MODEL_B}'] },
    },
    routes => {
        r => { steps => [{ provider => 'b', model => '${TG_MODEL_B}' },
                         { provider => 'a', model => 'm' }],
               tenants => ['${TG_TENANT}'] },
    },
    usage => { log => '${TG_STATE}/usage.jsonl' },
    redis => { address => '${TG_REDIS}', password => '${TG_REDIS_PW}' },
};

my $file = $t->write_policy($missing);
my @want = map { "$file: $_" } (
    'listen.path: environment variable TG_RUN is not set',
    'listen.group: environment variable TG_SOCK_GROUP is not set',
    'admin_listen.path: environment variable TG_RUN is not set',
    'providers.a.upstream: environment variable TG_UP_A is not set',
    'providers.a.host: environment variable TG_HOST_A is not set',
    'providers.a.host: environment variable TG_PORT_A is not set',
    'providers.a.health.url: environment variable TG_HOST_A is not set',
    'providers.b.models[0]: environment variable TG_MODEL_B is not set',
    'routes.r.steps[0].model: environment variable TG_MODEL_B is not set',
    'routes.r.tenants[0]: environment variable TG_TENANT is not set',
    'usage.log: environment variable TG_STATE is not set',
    'redis.address: environment variable TG_REDIS is not set',
    'providers.a.api_key: environment variable TG_KEY_A is not set',
    'redis.password: environment variable TG_REDIS_PW is not set',
);

my ($rc, $out) = $t->policyd_cmd('-t', '-c', $file);
is($rc, 1, 'policyd -t with variables missing: exit 1');
is_deeply([ sort split /\n/, $out ], [ sort @want ],
          '  every one, once per string that names it, with the file and '
          . 'key path, and nothing else');

$t->spawn('start', [ $t->policyd_binary, '-c', $file ], log => 'start.log');
ok($t->wait_for(sub { !$t->running('start') }, timeout => 10),
   'policyd with variables missing does not start');
is($t->exit_status('start') >> 8, 1, '  exit 1');
my $log = $t->read_file('start.log');
is(scalar(grep { my $w = $_; $log =~ /\Q$w\E/ } @want), scalar @want,
   '  and logs every missing variable with file and key path');
like($log, qr/cannot start: the policy has errors/, '  and that it did not start');

# set them, and -t is content (the group is one this machine has)

my ($group) = getgrgid($));
{
    local @ENV{qw(TG_RUN TG_SOCK_GROUP TG_UP_A TG_HOST_A TG_PORT_A TG_KEY_A
                  TG_MODEL_B TG_TENANT TG_STATE TG_REDIS TG_REDIS_PW)}
        = ($dir, $group, 'tg_a', 'api.a.test', '443', 'sk-secret-a',
           'model-b', 'acme', '/var/lib/tailgate', '127.0.0.1:6379',
           'pw-secret-r');

    ($rc, $out) = $t->policyd_cmd('-t', '-c', $file);
    is($rc, 0, 'with every variable set, -t passes') or diag($out);
    like($out, qr/ok: 2 providers, 1 routes/, '  all of it');
    unlike($out, qr/sk-secret-a|pw-secret-r/, '  printing no secret');

    # an empty variable is a value: the key judges it
    local $ENV{TG_UP_A} = '';
    ($rc, $out) = $t->policyd_cmd('-t', '-c', $file);
    like($out, qr/^\Q$file\E: providers\.a\.upstream: expected an upstream name/m,
         'an empty variable is a value, judged by its key');
}

# --- secrets: one reference, never a default, never printed ----------------

$p = env_policy();
$p->{providers}{ext}{api_key} = '${EXT_API_KEY:-sk-default}';
$file = $t->write_policy($p);
{
    local @ENV{keys %env} = values %env;
    ($rc, $out) = $t->policyd_cmd('-t', '-c', $file, '-s', "$dir/x.sock");
}
is($rc, 1, 'a secret with a default: refused');
like($out, qr/providers\.ext\.api_key: expected "\$\{ENV_VAR\}": the key is read from the environment, literal keys are not allowed/,
     '  a default would be a key written in the file');

# --- explain: the same variables, no secret --------------------------------

$file = $t->write_policy(env_policy());
{
    local @ENV{keys %env} = values %env;
    delete local $ENV{EXT_API_KEY};

    ($rc, $out) = $t->policyd_cmd('explain', '-c', $file, 'smart');
    is($rc, 0, 'explain -c reads the variables, but needs no secret') or diag($out);
    like($out, qr{http://tg_ext/api/v2/chat/completions \(Host: api\.env\.test\)},
         '  and says where the request would go');
    like($out, qr/model "deepseek-\$\{literal\}"/, '  with what model');

    delete local $ENV{TG_EXT_HOST};
    ($rc, $out) = $t->policyd_cmd('explain', '-c', $file, 'smart');
    is($rc, 2, 'explain -c with a variable missing: it cannot answer (2)');
    like($out, qr/providers\.ext\.host: environment variable TG_EXT_HOST is not set/,
         '  and says which');
}

done_testing();
