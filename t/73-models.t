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
    },
};

my $key = $t->new_key;
$t->{key} = $key;
my $few = $t->new_key;
my $private = $t->new_key;

$t->start_gateway(policy => $policy,
    keys => [ few => { key => $few, routes => [qw(r-5 r-99999 embed)] },
              priv => { key => $private, tags => ['private'] } ]);

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

# 100k routes: policyd reloads them, the list is whole

my $n = 100_000;
my %routes = %{ $policy->{routes} };
$routes{"r-$_"} = { steps => [ { provider => 'local', model => 'm' } ] } for 1 .. $n;
$t->write_policy({ %$policy, routes => \%routes });

my $from = $t->log_size('policyd');
$t->reload_policyd;
ok($t->wait_log('policyd', qr/100004 routes|reload/i, from => $from, timeout => 30),
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
    is(scalar @ids, $n + 4, 'every route once');
    my %seen = map { $_ => 1 } @ids;
    is(scalar keys %seen, $n + 4, 'no route twice');
    ok($seen{"r-1"} && $seen{"r-$n"} && $seen{"r-54321"}, 'first, last and between');
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
