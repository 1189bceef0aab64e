package Tailgate::Gateway;

# A whole gateway for a test: mock providers, a policy naming them,
# policyd, a key file and nginx with the module and conf/tailgate/'s
# includes, as an operator would set it up.  A Tailgate::Test with a few
# conveniences on top; see the POD at the end.

use strict;
use warnings;

use parent 'Tailgate::Test';

use JSON::PP ();


my $JSON = JSON::PP->new->canonical->utf8;

our $PROVIDER_KEY = 'sk-provider-' . join('', map { sprintf '%02x', int rand 256 } 1 .. 16);

my @ALL_ENDPOINTS = qw(chat embeddings speech transcriptions responses);


# The providers and routes most tests use: a local model server serving
# everything, an external provider for chat with a key.

sub default_policy {
    return {
        providers => {
            local => {
                upstream  => 'tg_local',
                zone      => 'local',
                endpoints => [@ALL_ENDPOINTS],
            },
            ext => {
                upstream  => 'tg_ext',
                scheme    => 'http',
                host      => 'api.ext.test',
                api_key   => '${EXT_API_KEY}',
                zone      => 'external',
                endpoints => [qw(chat embeddings responses)],
            },
        },
        routes => {
            qwen  => { steps => [{ provider => 'local', model => 'qwen2.5-7b-instruct' }] },
            same  => { steps => [{ provider => 'local', model => 'same' }] },
            smart => { steps => [{ provider => 'ext', model => 'deepseek-chat' }] },
        },
    };
}


# start_gateway(%opt):
#   policy   => \%policy        (default_policy)
#   mocks    => [names]         (every provider's upstream "tg_NAME")
#   private  => [upstreams]     (tailgate_private_upstream; tg_local)
#   server   => $text           (more inside server {})
#   http     => $text           (more at the http level)
#   timeout  => '1s'            (tailgate_policyd_timeout)
#   main     => $text           (nginx's main level: thread_pool...)
#   fake_policyd => \%config    (a scriptable fake instead of policyd)
#   locations => $text          (instead of include tailgate/locations.conf)
#   workers  => N
#   keys     => [client => key or record, ...]  (besides alice; write_keys)
#   policyd_args => [...]       (more arguments for policyd, e.g. '-v')
#   policyd_env => {...}        (more of policyd's environment: ${NAME}s)
# Returns the client key of client "alice" (also $t->{key}).

sub start_gateway {
    my ($self, %opt) = @_;

    my $policy = $opt{policy} // default_policy();
    my @mocks = @{ $opt{mocks} // [ _mock_names($policy) ] };

    for my $name (@mocks) {
        $self->mock_provider($name) unless $self->{mocks}{$name};
    }

    $self->{key} //= $self->new_key;
    $self->write_keys(alice => $self->{key}, @{ $opt{keys} // [] });

    if ($opt{fake_policyd}) {
        $self->start_fake_policyd($opt{fake_policyd});
    } else {
        $self->write_policy($policy);
        $self->start_policyd(env => { EXT_API_KEY => $PROVIDER_KEY,
                                      %{ $opt{policyd_env} // {} } },
                             args => $opt{policyd_args});
    }

    my $private = join ' ', @{ $opt{private} // ['tg_local'] };
    my $upstreams = join '', map {
        "    upstream tg_$_ { server %%MOCK:$_%%; keepalive 4; }\n"
    } @mocks;

    my $locations = $opt{locations} // 'include tailgate/locations.conf;';

    $self->start_nginx(<<"EOF", workers => $opt{workers} // 1,
    tailgate_policyd unix:%%POLICYD_SOCK%%;
    tailgate_policyd_timeout @{[ $opt{timeout} // '1s' ]};
    tailgate_keys %%KEYS%%;

$upstreams
    @{[ $private ? "tailgate_private_upstream $private;" : '' ]}

    @{[ $opt{http} // '' ]}

    server {
        listen 127.0.0.1:%%PORT%%;

        $locations
        @{[ $opt{server} // '' ]}
    }
EOF
        main => $opt{main});

    return $self->{key};
}

sub _mock_names {
    my ($policy) = @_;
    my %seen;

    for my $p (values %{ $policy->{providers} }) {
        (my $name = $p->{upstream}) =~ s/^tg_//;
        $seen{$name} = 1;
    }

    return sort keys %seen;
}

sub key { $_[0]{key} }


# chat($model, %opt): POST /v1/chat/completions as alice
#   key => ..., stream => 1, body => \%extra fields, headers => {...}

sub chat {
    my ($self, $model, %opt) = @_;
    return $self->call('/v1/chat/completions', $model, %opt);
}

sub call {
    my ($self, $path, $model, %opt) = @_;

    my %body = (
        model    => $model,
        messages => [{ role => 'user', content => 'Hello' }],
        %{ $opt{body} // {} },
    );
    $body{stream} = JSON::PP::true if $opt{stream};

    return $self->post_json($path, $opt{key} // $self->{key}, \%body,
                            headers => $opt{headers} // {},
                            timeout => $opt{timeout} // 10);
}


# open_post($path, $body, key => ..., headers => {...}): a POST of a JSON
# body (a hash, or the text itself) as alice, as a Tailgate::Conn to read
# bit by bit (a stream to hold open, a request left waiting)

sub open_post {
    my ($self, $path, $body, %opt) = @_;

    return $self->http_open('POST', $path,
        headers => { Authorization => 'Bearer ' . ($opt{key} // $self->{key}),
                     'Content-Type' => 'application/json',
                     %{ $opt{headers} // {} } },
        body => ref $body ? $JSON->encode($body) : $body);
}


# answered_by($res): the provider that answered (X-Tailgate-Provider) when
# the status is 200, else the status

sub answered_by {
    my ($self, $res) = @_;
    return $res->{status} == 200 ? $res->{headers}{'x-tailgate-provider'}
                                 : $res->{status};
}


# error($res): the OpenAI error object of a response, or undef

sub error {
    my ($self, $res) = @_;

    my $doc = eval { $JSON->decode($res->{body}) };
    return undef unless ref $doc eq 'HASH' && ref $doc->{error} eq 'HASH';
    return $doc->{error};
}


# is_openai_error($res, $status, $code, $name): one test of the whole shape

sub is_openai_error {
    my ($self, $res, $status, $code, $name) = @_;

    my $e = $self->error($res);
    my $ok = $res->{status} == $status
        && $e
        && defined $e->{message} && length $e->{message}
        && defined $e->{type}
        && exists $e->{param}
        && (defined $code ? (($e->{code} // '') eq $code) : 1)
        && ($res->{headers}{'content-type'} // '') =~ m{^application/json};

    Test::More::ok($ok, $name)
        or Test::More::diag("status $res->{status}, body: "
                            . substr($res->{body} // '', 0, 400));
    return $ok;
}

1;

__END__

=head1 NAME

Tailgate::Gateway - a complete Tailgate in front of mock providers

=head1 SYNOPSIS

    use Tailgate::Gateway;

    my $t = Tailgate::Gateway->new->skip_unless_built;
    $t->start_gateway;                     # default_policy()
    my $res = $t->chat('qwen');
    is($t->mock('local')->requests->[0]{json}{model}, 'qwen2.5-7b-instruct');

=head1 DESCRIPTION

C<start_gateway> starts a mock provider per upstream named in the policy
(upstream C<tg_NAME> is mock C<NAME>), writes the policy and a key file for
client C<alice>, starts policyd (or the fake) and nginx with
C<include tailgate/locations.conf> in a server on C<%%PORT%%>.

The external provider's key is C<$Tailgate::Gateway::PROVIDER_KEY>,
random per run, given to policyd as C<EXT_API_KEY>; C<policyd_env> adds
to policyd's environment (the policy's C<${NAME}>s).

=cut
