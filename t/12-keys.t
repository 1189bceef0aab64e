#!/usr/bin/perl

# Client keys: how they are accepted and refused, and that they go no
# further than nginx.  Provider keys: that they reach the provider and
# nothing else - no client, no log.  Nor can a client pick the provider
# account the gateway's key bills.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Digest::SHA qw(sha256_hex);
use Tailgate::Gateway;

my $t = Tailgate::Gateway->new->skip_unless_built;
my $key = $t->start_gateway;
my $provider_key = $Tailgate::Gateway::PROVIDER_KEY;
my $ext = $t->mock('ext');
my $local = $t->mock('local');

my @responses;    # every response the client saw, for the leak check

sub send_chat {
    my ($model, %headers) = @_;

    my $res = $t->post_json('/v1/chat/completions', undef,
                            qq({"model":"$model","messages":[]}),
                            headers => \%headers);

    push @responses, $res;
    return $res;
}


subtest 'Authorization: Bearer and X-Api-Key are both accepted' => sub {
    is(send_chat('qwen', Authorization => "Bearer $key")->{status}, 200, 'Bearer');
    is(send_chat('qwen', Authorization => "bearer   $key")->{status}, 200,
       'scheme is case-insensitive, spaces tolerated');
    is(send_chat('qwen', 'X-Api-Key' => $key)->{status}, 200, 'X-Api-Key');
};

subtest 'missing and wrong keys are 401s with a challenge' => sub {
    my %cases = (
        'no credentials'       => [],
        'empty bearer'         => [Authorization => 'Bearer '],
        'Basic scheme'         => [Authorization => 'Basic YWxpY2U6cHc='],
    );

    for my $name (sort keys %cases) {
        my $res = send_chat('qwen', @{ $cases{$name} });
        $t->is_openai_error($res, 401, 'missing_api_key', $name);
        is($res->{headers}{'www-authenticate'}, 'Bearer realm="tailgate"',
           "$name: WWW-Authenticate");
    }

    for my $bad ('wrong', "$key-", substr($key, 0, -1), sha256_hex($key), 'x' x 5000) {
        my $res = send_chat('qwen', Authorization => "Bearer $bad");
        $t->is_openai_error($res, 401, 'invalid_api_key',
                            'a wrong key (' . length($bad) . ' bytes)');
        is($res->{headers}{'www-authenticate'},
           'Bearer realm="tailgate", error="invalid_token"',
           'WWW-Authenticate (RFC 6750)');
        unlike($res->{body}, qr/\Q$bad\E/, 'the error does not echo the key')
            if length $bad > 4;
    }
};

subtest "the client's key never reaches a provider" => sub {
    $ext->clear;
    $local->clear;

    send_chat('smart', Authorization => "Bearer $key");
    send_chat('smart', 'X-Api-Key' => $key);
    send_chat('qwen', Authorization => "Bearer $key", 'X-Api-Key' => $key);

    my @got = (@{ $ext->requests }, @{ $local->requests });
    is(scalar @got, 3, 'three requests proxied');

    for my $r (@got) {
        my $all = join "\n", %{ $r->{headers} }, $r->{body};
        unlike($all, qr/\Q$key\E/, "$r->{path}: no trace of the client key");
        ok(!exists $r->{headers}{'x-api-key'}, 'X-Api-Key removed');
    }
};

subtest "the provider's key reaches that provider only" => sub {
    is($ext->requests->[0]{headers}{authorization}, "Bearer $provider_key",
       'external provider gets its key');
    is($ext->requests->[1]{headers}{authorization}, "Bearer $provider_key",
       'also when the client used X-Api-Key');
    ok(!exists $local->requests->[0]{headers}{authorization},
       'a provider without a key gets no Authorization at all');
};

# headers that select the provider's organisation or project (whose
# account and limits apply) do not reach it: that is no client's choice

{
    my $res = $t->chat('smart', headers => {
        'OpenAI-Organization' => 'org-chosen-by-client',
        'OpenAI-Project'      => 'proj-chosen-by-client',
    });
    is($res->{status}, 200, 'proxied to the external provider');

    my $got = $ext->requests->[-1];
    is($got->{headers}{'openai-organization'}, undef,
       'the client cannot pick the provider organisation');
    is($got->{headers}{'openai-project'}, undef,
       'the client cannot pick the provider project');

    $t->logs_clean('error.log is clean after the provider-account headers');
}

subtest "the provider's key never reaches a client or a log" => sub {
    for my $res (@responses) {
        my $all = join "\n", %{ $res->{headers} }, $res->{body};
        unlike($all, qr/\Q$provider_key\E/, "response $res->{status}: no provider key");
    }

    # an error path too: the provider down
    $ext->stop;
    my $res = send_chat('smart', Authorization => "Bearer $key");
    is($res->{status}, 502, 'provider down: 502');
    unlike(join("\n", %{ $res->{headers} }, $res->{body}), qr/\Q$provider_key\E/,
           '502: no provider key');

    SKIP: {
        skip 'the debug log prints headers', 2 if $t->debugging;
        ok($t->log_has_no($provider_key), 'no log has the provider key');
        ok($t->log_has_no($key), 'no log has the client key');
    }
};

subtest 'a key file change takes effect on reload' => sub {
    my $new = $t->new_key;

    $t->write_keys(bob => $new);
    is(send_chat('qwen', Authorization => "Bearer $new")->{status}, 401,
       'not before the reload');

    $t->reload_nginx;
    is(send_chat('qwen', Authorization => "Bearer $new")->{status}, 200,
       'the new key works after it');
    is(send_chat('qwen', Authorization => "Bearer $key")->{status}, 401,
       'the removed key does not');
};

subtest 'the key file holds hashes only: a malformed one is refused' => sub {
    my $bad = $t->write_file('keys.bad', "not-a-hash alice\n");
    my ($status, $out) = $t->nginx_check("tailgate_keys $bad;\n");

    isnt($status, 0, 'nginx -t fails');
    like($out, qr/keys\.bad", line 1: expected the SHA-256 of a key/,
         'nginx -t names the file, the line and what was expected');
};

$t->done_testing;
