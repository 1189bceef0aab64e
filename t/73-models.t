#!/usr/bin/perl
#
# /v1/models tells the truth: a route lists only the endpoints its steps
# serve (and a request for another one is a 404), ids may hold "/", and
# owned_by and context_window come from the policy.  At 100k routes the
# list is whole and valid JSON, relayed a page (a frame) at a time; a page
# policyd cannot give after the answer started cuts the body short
# instead of ending the list early.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use JSON::PP ();
use Test::More;
use Time::HiRes qw(sleep);
use Tailgate::Gateway;

my $t = Tailgate::Gateway->new->skip_unless_built;
my $JSON = JSON::PP->new->canonical->utf8;

my $policy = {
    providers => {
        local => { upstream => 'tg_local', zone => 'local',
                   endpoints => [qw(chat embeddings responses)],
                   context_tokens => 32768 },
        ext   => { upstream => 'tg_ext', zone => 'external',
                   api_key => '${EXT_API_KEY}',
                   endpoints => [qw(chat responses)], context_tokens => 128000 },
    },
    routes => {
        embed => { steps => [ { provider => 'local', model => 'nomic-embed-text',
                                endpoints => ['embeddings'] } ] },
        talk  => { endpoints => [qw(chat responses)],
                   steps => [ { provider => 'local', model => 'qwen' } ] },
        mixed => { steps => [ { provider => 'local', model => 'qwen',
                                endpoints => ['chat'] },
                              { provider => 'ext', model => 'e' } ] },
        'openrouter/openai/gpt-4o' => {
            owned_by => 'openai', context_window => 120000,
            steps => [ { provider => 'ext', model => 'openai/gpt-4o' } ] },
        'or/*' => {
            steps => [ { provider => 'ext', model => '*' } ],
            allow => [qw(openai/* anthropic/* meta-llama/*)],
            deny  => ['*:free', 'openai/o1*'],
            models => [qw(openai/gpt-4o-mini anthropic/claude-3.5-sonnet)],
            owned_by => 'openrouter' },
        'local/*' => { steps => [ { provider => 'local', model => 'gguf/*.Q4' } ] },
    },
};

my $key = $t->new_key;
$t->{key} = $key;
my $few = $t->new_key;
my $one = $t->new_key;
my $private = $t->new_key;

# a provider whose own model list policyd fetches (models_from)
my $cat = $t->mock_provider('cat',
    models => [ 'm-a', 'vendor/m-b', 'm-a', 'x:free', 'taken', 'has*star',
                '', 'z' x 300 ]);

$t->start_gateway(policy => $policy, mocks => [qw(local ext cat)],
    keys => [ few => { key => $few, routes => [qw(r-5 r-99999 embed)] },
              priv => { key => $private, tags => ['private'] },
              one => { key => $one, routes => ['or/openai/gpt-4o-mini'] } ]);

sub get {
    my ($path, %opt) = @_;
    return $t->http($opt{method} // 'GET', $path, timeout => $opt{timeout} // 30,
                    headers => { Authorization => 'Bearer ' . ($opt{key} // $key) });
}

sub listed {
    my ($res) = @_;
    my $doc = eval { $JSON->decode($res->{body}) };
    return undef unless ref $doc eq 'HASH' && ref $doc->{data} eq 'ARRAY';
    return { map { $_->{id} => $_ } @{ $doc->{data} } };
}


subtest 'each route lists the endpoints its steps serve' => sub {
    my $res = get('/v1/models');
    is($res->{status}, 200, 'listed');
    my $m = listed($res) or diag($res->{body});

    is_deeply($m->{embed}{endpoints}, ['embeddings'],
              'an embedding step: embeddings only, though its provider chats');
    is_deeply($m->{talk}{endpoints}, [qw(chat responses)],
              'the route\'s own endpoints narrow its steps');
    is_deeply($m->{mixed}{endpoints}, [qw(chat responses)],
              'the union of what each step serves');

    $res = get('/v1/models', key => $private);
    $m = listed($res);
    is_deeply($m->{mixed}{endpoints}, ['chat'],
              'a private client: what its local steps serve');
    ok(!$m->{'openrouter/openai/gpt-4o'}, 'and no external-only route');
};

subtest 'a request for an endpoint the route does not list is a 404' => sub {
    my $res = $t->chat('embed');
    $t->is_openai_error($res, 404, 'model_not_found', 'chat to the embedding route');
    like($t->error($res)->{message}, qr{does not serve /v1/chat/completions},
         'saying what it does not serve');
    is(scalar @{ $t->mock('local')->requests }, 0, 'nothing was sent');

    $res = $t->post_json('/v1/embeddings', $key,
                         { model => 'embed', input => 'hello' });
    is($res->{status}, 200, 'embeddings to it');
    is($t->mock('local')->requests->[-1]{json}{model}, 'nomic-embed-text',
       'with its model');

    $res = $t->post_json('/v1/embeddings', $key, { model => 'talk', input => 'x' });
    $t->is_openai_error($res, 404, 'model_not_found', 'embeddings to a chat route');

    $res = $t->post_json('/v1/responses', $key, { model => 'mixed', input => 'x' });
    is($t->answered_by($res), 'ext', 'mixed: responses go to the step that serves them');
};

subtest 'ids with "/", owned_by and context_window' => sub {
    my $res = get('/v1/models/openrouter/openai/gpt-4o');
    is($res->{status}, 200, 'GET /v1/models/openrouter/openai/gpt-4o');
    my $doc = eval { $JSON->decode($res->{body}) } // {};
    is($doc->{id}, 'openrouter/openai/gpt-4o', 'its id');
    is($doc->{owned_by}, 'openai', 'owned_by from the policy');
    is($doc->{context_window}, 120000, 'context_window from the policy');

    $res = get('/v1/models/openrouter%2Fopenai%2Fgpt-4o');
    is($res->{status}, 200, 'the same with %2F');

    $res = get('/v1/models/mixed');
    $doc = eval { $JSON->decode($res->{body}) } // {};
    is($doc->{owned_by}, 'tailgate', 'owned_by by default');
    is($doc->{context_window}, 128000,
       'context_window: the largest its steps take, when each says');

    $res = get('/v1/models/openrouter/openai');
    $t->is_openai_error($res, 404, 'model_not_found', 'a prefix of an id is no id');
    $res = get('/v1/models/openrouter/openai/gpt-4o/');
    $t->is_openai_error($res, 404, 'model_not_found', 'nor the id and a "/"');

    my $res2 = $t->chat('openrouter/openai/gpt-4o');
    is($t->answered_by($res2), 'ext', 'the route answers by that name');
};

subtest 'routes by pattern' => sub {
    my $ext = $t->mock('ext');

    my $res = $t->chat('or/openai/gpt-4.1-nano');
    is($t->answered_by($res), 'ext', 'any model the pattern allows, listed or not');
    is($ext->requests->[-1]{json}{model}, 'openai/gpt-4.1-nano',
       'the rest of the name is the provider\'s model');
    is($res->{headers}{'x-tailgate-route'}, 'or/*', 'the route is the pattern');

    $res = $t->chat('local/qwen2.5-7b');
    is($t->mock('local')->requests->[-1]{json}{model}, 'gguf/qwen2.5-7b.Q4',
       'where the step\'s "*" is');

    for my $m ('or/google/gemini-2.0', 'or/meta-llama/llama-3-8b:free',
               'or/openai/o1-preview', 'or/', 'or/*', 'or', 'orx/openai/gpt-4o') {
        $res = $t->chat($m);
        $t->is_openai_error($res, 404, 'model_not_found', "$m: not served");
    }

    $res = get('/v1/models');
    my $m = listed($res);
    ok($m->{'or/openai/gpt-4o-mini'} && $m->{'or/anthropic/claude-3.5-sonnet'},
       'the models a pattern lists are in /v1/models');
    is($m->{'or/openai/gpt-4o-mini'}{owned_by}, 'openrouter', 'as the pattern says');
    is_deeply($m->{'or/openai/gpt-4o-mini'}{endpoints}, [qw(chat responses)],
              'with its endpoints');
    ok(!$m->{'or/*'} && !$m->{'local/*'}, 'the patterns themselves are not');

    $res = get('/v1/models/or/openai/gpt-4.1-nano');
    is($res->{status}, 200, 'an allowed model that is not listed is still a model');
    is(eval { $JSON->decode($res->{body})->{id} }, 'or/openai/gpt-4.1-nano', 'by its id');
    $res = get('/v1/models/or/google/gemini-2.0');
    $t->is_openai_error($res, 404, 'model_not_found', 'a model the pattern does not allow');

    # a client allowed one model of the pattern
    $res = get('/v1/models', key => $one);
    is_deeply([sort keys %{ listed($res) // {} }], ['or/openai/gpt-4o-mini'],
              'a client allowed one model of a pattern lists that one');
    $res = $t->chat('or/openai/gpt-4o-mini', key => $one);
    is($t->answered_by($res), 'ext', 'and may use it');
    $res = $t->chat('or/openai/gpt-4.1-nano', key => $one);
    $t->is_openai_error($res, 404, 'model_not_found', 'but no other');
};

subtest 'policyd -t checks patterns' => sub {
    my $file = $t->write_file('bad.json', $JSON->encode({
        listen => { path => '/tmp/x.sock' },
        providers => { l => { upstream => 'u', zone => 'local', endpoints => ['chat'] },
                       m => { upstream => 'u', zone => 'local', endpoints => ['chat'],
                              models => ['x'] } },
        routes => {
            'a*b' => { steps => [ { provider => 'l', model => 'm' } ] },
            plain => { allow => ['x*'], steps => [ { provider => 'l', model => '*' } ] },
            'p/*' => { allow => [], deny => [7], models => ['x', 'y*', 'z'],
                       steps => [ { provider => 'l', model => '**' },
                                  { provider => 'm', model => '*' } ] },
            'q/*' => { allow => ['a*'], models => ['b'],
                       steps => [ { provider => 'l', model => '*' } ] },
            'q/a' => { steps => [ { provider => 'l', model => 'm' } ] },
            's/*' => { models => ['x'], steps => [ { provider => 'l', model => '*' } ] },
            's/x' => { steps => [ { provider => 'l', model => 'm' } ] },
        } }));

    my ($rc, $out) = $t->policyd_cmd('-t', '-c', $file);
    is($rc, 1, 'refused');
    like($out, qr/routes\.a\*b: a route name may hold "\*" only at its end/, '"*" inside a name');
    like($out, qr/routes\.plain\.allow: only a pattern route/, 'allow on a route by name');
    like($out, qr/routes\.plain\.steps\[0\]\.model: only a step of a pattern route/,
         '"*" in the model of a route by name');
    like($out, qr/routes\.p\/\*\.allow: expected a non-empty array/, 'an empty allow');
    like($out, qr/routes\.p\/\*\.deny\[0\]: expected a glob/, 'a glob that is a number');
    like($out, qr/routes\.p\/\*\.models\[1\]: expected a model name without "\*"/,
         'a listed model with "*"');
    like($out, qr/routes\.p\/\*\.steps\[0\]\.model: only a step of a pattern route may name "\*" \(once\)/,
         'two "*"');
    like($out, qr/routes\.p\/\*\.steps\[1\]\.model: provider "m" takes only the models it lists/,
         'a provider that lists its models');
    like($out, qr/routes\.q\/\*\.models\[0\]: "b" is not let through/,
         'a listed model the pattern does not allow');
    like($out, qr/routes\.s\/\*\.models\[0\]: a route named "s\/x" exists/,
         'a listed model that is a route of its own');
};

subtest 'policyd -t checks endpoints, owned_by and context_window' => sub {
    my $file = $t->write_file('bad.json', $JSON->encode({
        listen => { path => '/tmp/x.sock' },
        providers => { l => { upstream => 'u', zone => 'local',
                              endpoints => ['embeddings'] } },
        routes => {
            a => { steps => [ { provider => 'l', model => 'm',
                                endpoints => ['chat', 'embeddings', 'embeddings', 'pics'] } ] },
            b => { endpoints => ['chat'], owned_by => '', context_window => 0,
                   steps => [ { provider => 'l', model => 'm' } ] },
            c => { endpoints => [], steps => [ { provider => 'l', model => 'm' } ] },
        } }));

    my ($rc, $out) = $t->policyd_cmd('-t', '-c', $file);
    is($rc, 1, 'refused');
    like($out, qr/routes\.a\.steps\[0\]\.endpoints\[0\]: provider "l" does not serve "chat"/,
         'an endpoint its provider does not serve');
    like($out, qr/routes\.a\.steps\[0\]\.endpoints\[2\]: "embeddings" is listed twice/,
         'twice');
    like($out, qr/routes\.a\.steps\[0\]\.endpoints\[3\]: expected one of "chat"/,
         'no endpoint at all');
    like($out, qr/routes\.b\.steps\[0\]: the step serves no endpoint/,
         'a route whose endpoints leave its step nothing');
    like($out, qr/routes\.b\.owned_by: expected a name of 1 to 64 bytes/, 'owned_by');
    like($out, qr/routes\.b\.context_window: expected an integer from 1 to/,
         'context_window');
    like($out, qr/routes\.c\.endpoints: expected a non-empty array/, 'an empty list');
};

subtest 'a pattern lists its provider\'s own models (models_from)' => sub {
    my %p = %$policy;
    $p{providers} = { %{ $policy->{providers} },
        cat => { upstream => 'tg_cat', host => '%%MOCK:cat%%', scheme => 'http',
                 zone => 'external', api_key => '${EXT_API_KEY}',
                 endpoints => ['chat'] } };
    $p{routes} = { %{ $policy->{routes} },
        'cat/*'     => { steps => [ { provider => 'cat', model => '*' } ],
                         deny => ['*:free'], models => ['static-one'],
                         models_from => {} },
        'cat/taken' => { steps => [ { provider => 'cat', model => 'taken' } ] },
        'pub/*'     => { steps => [ { provider => 'cat', model => '*' } ],
                         models_from => { url => 'http://%%MOCK:cat%%/v1/models',
                                          refresh_ms => 10000 } } };
    $t->write_policy(\%p);

    my $from = $t->log_size('policyd');
    $t->reload_policyd;
    ok($t->wait_log('policyd', qr/models of route "cat\/\*": 2 from/,
                    from => $from, timeout => 20),
       'policyd fetched the provider\'s list') or diag(substr($t->policyd_log, -2000));
    ok($t->wait_log('policyd', qr/models of route "pub\/\*": 4 from/,
                    from => $from, timeout => 20), 'and the other one');

    my $m = listed(get('/v1/models'));
    ok($m->{'cat/m-a'} && $m->{'cat/vendor/m-b'}, 'its models, "/" and all');
    ok(!$m->{'cat/static-one'}, 'in place of the route\'s "models"');
    ok(!$m->{'cat/x:free'}, 'but for what "deny" refuses');
    ok($m->{'cat/taken'}, 'a model with a route of its own: that route');
    my @ids = map { $_->{id} } @{ (eval { $JSON->decode(get('/v1/models')->{body}) }
                                   // {})->{data} // [] };
    is(scalar(grep { $_ eq 'cat/m-a' } @ids), 1, 'a repeated id once');
    is(scalar(grep { $_ eq 'cat/taken' } @ids), 1, 'the route\'s model once');
    ok(!grep({ /star|zzzz/ || $_ eq 'cat/' } @ids),
       'no id with "*", empty or too long');
    ok($m->{'pub/x:free'} && $m->{'pub/taken'}, 'a pattern without deny: all of them');

    my @probes = grep { $_->{path} eq '/v1/models' } @{ $cat->probes };
    my @keyed = grep { ($_->{authorization} // '') eq "Bearer $Tailgate::Gateway::PROVIDER_KEY" }
                @probes;
    is(scalar @keyed, 1, 'the provider\'s own URL gets its key');
    is(scalar(grep { !defined $_->{authorization} } @probes), 1,
       'another URL does not');

    my $res = $t->chat('cat/vendor/m-b');
    is($cat->requests->[-1]{json}{model}, 'vendor/m-b', 'a listed model is served');

    # the provider fails: what it listed stays
    $cat->update(probe_mode => 'status', status => 503);
    $from = $t->log_size('policyd');
    $t->reload_policyd;
    ok($t->wait_log('policyd', qr/policy reloaded/, from => $from, timeout => 10),
       'reloaded');
    $m = listed(get('/v1/models'));
    ok($m->{'cat/m-a'}, 'a reload keeps the list of an unchanged URL');
    ok($t->wait_log('policyd', qr/models of route "pub\/\*": .*HTTP 503; the last list stays/,
                    from => $from, timeout => 30),
       'a refresh that fails is logged');
    $m = listed(get('/v1/models'));
    ok($m->{'pub/m-a'}, 'and the last list stays');
    unlike($t->policyd_log, qr/\Q$Tailgate::Gateway::PROVIDER_KEY\E/,
           'the key is in no log');

    $cat->update(probe_mode => 'ok');
};

subtest 'policyd -t checks models_from' => sub {
    my %bad = (
        'routes.p.models_from'            => { steps => [ { provider => 'local', model => 'x' } ],
                                               models_from => {} },
        'routes.q/*.models_from'          => { steps => [ { provider => 'local', model => '*' } ],
                                               models_from => [] },
        'routes.r/*.models_from.url'      => { steps => [ { provider => 'local', model => '*' } ],
                                               models_from => { url => 'ftp://x/models' } },
        'routes.s/*.models_from.refresh_ms' => { steps => [ { provider => 'local', model => '*' } ],
                                               models_from => { refresh_ms => 5 } },
        'routes.v/*.models_from.url'      => { steps => [ { provider => 'local', model => '*' } ],
                                               models_from => { url => 'https://u:p@x/models' } },
        'routes.t/*.models_from.nope'     => { steps => [ { provider => 'local', model => '*' } ],
                                               models_from => { nope => 1 } },
        'routes.u/*.models_from.send_key' => { steps => [ { provider => 'local', model => '*' } ],
                                               models_from => { send_key => 'yes' } },
    );

    for my $where (sort keys %bad) {
        my ($name) = $where =~ /^routes\.(.+?)\.models_from/;
        my $file = $t->write_file('bad-mf.json', $JSON->encode({
            listen => { path => '/tmp/x.sock' },
            providers => { local => $policy->{providers}{local} },
            routes => { $name => $bad{$where} } }));
        my ($rc, $out, $err) = $t->policyd_cmd('-t', '-c', $file);
        isnt($rc, 0, "$where refused");
        like(($out // '') . ($err // ''), qr/\Q$where\E: /, "$where named")
            or diag($out, $err);
    }
};

# 100k routes: policyd reloads them, the list is whole

my $n = 100_000;
my %routes = %{ $policy->{routes} };
$routes{"r-$_"} = { steps => [ { provider => 'local', model => 'm' } ] } for 1 .. $n;

# a pattern listing more models than a page holds: pages go on inside it
$routes{'bulk/*'} = { steps => [ { provider => 'local', model => '*' } ],
                      models => [ map { "m-$_" } 1 .. 2000 ] };
my $total = $n + 2000 + 6;
$t->write_policy({ %$policy, routes => \%routes });

my $from = $t->log_size('policyd');
$t->reload_policyd;
ok($t->wait_log('policyd', qr/policy reloaded: \d+ providers, 100007 routes/,
                from => $from, timeout => 30),
   'policyd reloaded 100k routes') or diag(substr($t->policyd_log, -2000));
sleep 0.5;

subtest '100k routes: the whole list, a frame at a time' => sub {
    my $res = get('/v1/models', timeout => 60);
    is($res->{status}, 200, 'answered') or diag(substr($res->{body} // '', 0, 300));
    ok(!$res->{error}, 'complete') or diag($res->{error});
    is($res->{headers}{'transfer-encoding'}, 'chunked', 'in chunks');
    is($res->{headers}{'content-type'}, 'application/json', 'JSON');

    my $doc = eval { $JSON->decode($res->{body}) };
    ok($doc, 'valid JSON') or diag(substr($res->{body}, -300));
    is($doc->{object}, 'list', 'a list');

    my @ids = map { $_->{id} } @{ $doc->{data} // [] };
    is(scalar @ids, $total, 'every route and listed model once');
    my %seen = map { $_ => 1 } @ids;
    is(scalar keys %seen, $total, 'none twice');
    ok($seen{"r-1"} && $seen{"r-$n"} && $seen{"r-54321"}, 'first, last and between');
    ok($seen{'bulk/m-1'} && $seen{'bulk/m-2000'} && $seen{'bulk/m-777'},
       'and the pattern\'s models');
    cmp_ok(length $res->{body}, '>', 64 * 1024 * 10, 'many frames\' worth');

    $res = get('/v1/models', key => $few, timeout => 60);
    my $m = listed($res);
    is_deeply([sort keys %{ $m // {} }], [qw(embed r-5 r-99999)],
              'a client with three routes sees those three');

    $res = get('/v1/models/r-77777');
    is($res->{status}, 200, 'one model of 100k');
    is(eval { $JSON->decode($res->{body})->{id} }, 'r-77777', 'by its id');

    $res = get('/v1/models', method => 'HEAD');
    is($res->{status}, 200, 'HEAD');
    is($res->{body}, '', 'without a body');
};

subtest 'a client that reads slowly gets it all' => sub {
    my $c = $t->raw_connect(rcvbuf => 4096);
    $c->write_bytes("GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                    . "Authorization: Bearer $key\r\n\r\n");

    # a few short pauses while nginx's send buffer is full, then read on
    for (1 .. 5) {
        $c->read_until(qr/\r\n\r\n/, 1);
        sleep 0.2;
    }

    ok($c->read_all(60), 'the answer ends');
    like($c->raw, qr/"id":"r-$n"/, 'with the last route');
    like($c->raw, qr/\]\}\r\n0\r\n\r\n$/, 'and the end of the list, and of the chunks');
};

$t->logs_clean('error.log is clean after 100k routes');

# pages from a policyd that stops giving them

my $f = Tailgate::Gateway->new;
my $fkey = $f->start_gateway(
    fake_policyd => { models_pages => {
        ''  => [ '{"object":"list","data":[{"id":"a"}', 'a' ],
        'a' => [ ',{"id":"b"}', 'b' ],
        'b' => [ ',{"id":"c"}]}', undef ] } },
    mocks => ['local'], timeout => '500ms');
$f->allow_log(qr/no further page of the model list/);

subtest 'pages are joined in order' => sub {
    my $res = $f->http('GET', '/v1/models', headers => { Authorization => "Bearer $fkey" });
    is($res->{status}, 200, 'answered');
    is($res->{body}, '{"object":"list","data":[{"id":"a"},{"id":"b"},{"id":"c"}]}',
       'the pages, joined');

    my @models = @{ $f->fake_frames('MODELS') };
    is(scalar @models, 3, 'three pages asked for');
    is($models[1]{fields}{cursor}, 'a', 'each after the last one');
    is($models[2]{fields}{cursor}, 'b', 'in turn');
    is($models[1]{fields}{client}, 'alice', 'for the same client');
};

subtest 'a page that never comes cuts the answer short' => sub {
    $f->set_fake_policyd({ models_pages => {
        ''  => [ '{"object":"list","data":[{"id":"a"}', 'a' ] } });

    my $res = $f->http('GET', '/v1/models', headers => { Authorization => "Bearer $fkey" });
    is($res->{status}, 200, 'the answer had started');
    is($res->{error}, 'truncated', 'it ends without its last chunk');
    ok(!eval { $JSON->decode($res->{body}) }, 'a body no client takes for a list');
    ok($f->wait_log('error', qr/no further page of the model list/), 'logged');
};

$f->stop_and_check('error.log of the fake policyd\'s gateway is clean');

$t->done_testing;
