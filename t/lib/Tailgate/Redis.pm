package Tailgate::Redis;

# Several gateway nodes sharing one Redis, for a test: a real redis-server
# on a unix socket in a harness's test dir, and complete nodes (nginx and
# policyd each, Tailgate::Gateway) whose policies point at it, the second
# and later ones proxying to the first one's mock providers.  See the POD
# at the end.

use strict;
use warnings;

use Exporter 'import';
use File::Basename qw(dirname);
use File::Spec ();
use IO::Socket::INET ();
use JSON::PP ();
use Test::More ();
use Time::HiRes qw(sleep time);

our @EXPORT_OK = qw(redis_server skip_unless_redis start_redis kill_redis
                    redis_cli start_node node_status redis_block
                    start_redis_cut redis_cut redis_cuts redis_state
                    wait_state);

my $JSON = JSON::PP->new->canonical->utf8;


sub redis_server {
    for my $dir (split /:/, $ENV{PATH} // '') {
        return "$dir/redis-server" if -x "$dir/redis-server";
    }
    return '/usr/bin/redis-server' if -x '/usr/bin/redis-server';
    return undef;
}

sub skip_unless_redis {
    Test::More::plan(skip_all => 'redis-server is not installed (make deps '
                               . 'installs it: redis-server)')
        unless redis_server();
}

sub _sock { $_[0]->dir . '/redis.sock' }


# start_redis($t): redis-server on DIR/redis.sock, no TCP, nothing saved;
# waits until it answers.  Again after kill_redis: empty, as a restart
# without persistence is.

sub start_redis {
    my ($t) = @_;

    my $sock = _sock($t);
    unlink $sock;

    $t->spawn('redis', [ redis_server(), '--port', '0', '--unixsocket', $sock,
                         '--unixsocketperm', '700', '--save', '',
                         '--appendonly', 'no', '--dir', $t->dir ],
              log => 'redis.log');

    my $up = $t->wait_for(sub { (redis_cli($t, 'PING') // '') eq 'PONG' },
                          timeout => 10, interval => 0.05);
    die "start_redis: redis-server did not come up\n" unless $up;

    return $sock;
}

sub kill_redis { $_[0]->stop_proc('redis', signal => 'KILL') }


# start_redis_cut($t): a proxy (redis_cut.pl) on a loopback port before
# $t's Redis; its address for a node's "redis" block.  redis_cut($t,
# $line) tells it what to do with the next EVAL ("before SUBSTRING",
# "after SUBSTRING", "down", "pass"); redis_cuts($t) the cuts it made.

my $CUT = File::Spec->rel2abs(dirname(__FILE__) . '/../redis_cut.pl');

sub _cut_file { $_[0]->dir . "/redis_cut.$_[1]" }

sub start_redis_cut {
    my ($t) = @_;

    my $port = $t->port('redis_cut');
    redis_cut($t, 'pass');
    unlink _cut_file($t, 'log');

    $t->spawn('redis_cut', [ $^X, $CUT,
                             '--port', $port, '--redis', _sock($t),
                             '--control', _cut_file($t, 'control'),
                             '--log', _cut_file($t, 'log') ]);

    my $up = $t->wait_for(sub {
        IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                              Proto => 'tcp')
    }, timeout => 10, interval => 0.05);
    die "start_redis_cut: the proxy did not come up\n" unless $up;

    return "127.0.0.1:$port";
}

sub redis_cut {
    my ($t, $line) = @_;
    $t->write_file(_cut_file($t, 'control'), "$line\n");
}

sub redis_cuts {
    my ($t) = @_;
    my $f = _cut_file($t, 'log');
    return () unless -e $f;
    return map { /^cut (\S+)/ ? $1 : () } split /\n/, $t->read_file($f);
}


# redis_cli($t, @command): its answer (trimmed), undef when it fails

sub redis_cli {
    my ($t, @cmd) = @_;

    my $pid = open(my $fh, '-|');
    return undef unless defined $pid;

    if ($pid == 0) {
        open STDERR, '>', '/dev/null';
        open STDIN, '<', '/dev/null';
        alarm 5;
        exec 'redis-cli', '-s', _sock($t), @cmd or POSIX::_exit(127);
    }

    my $out = do { local $/; <$fh> };
    close $fh;
    return undef if $? != 0 || !defined $out;
    $out =~ s/\s+\z//;
    return $out;
}


# redis_block($t, node => 'a', %more): the policy's "redis" for a node

sub redis_block {
    my ($t, %opt) = @_;

    my $node = delete $opt{node};

    return { address => 'unix:' . _sock($t), node_id => $node,
             timeout_ms => 200, lease_ttl_ms => 2000, nodes => 2, %opt };
}


# start_node($redis_t, $node_t, name => 'a', policy => \%p, redis => {..},
#            mocks_of => $first_node_t, workers => N, start => {...}):
# a gateway whose policy shares $redis_t's Redis; with mocks_of, its
# upstreams are that node's mocks.  Its admin socket is DIR/admin.sock.

sub start_node {
    my ($rt, $t, %opt) = @_;

    my $policy = $JSON->decode($JSON->encode($opt{policy}));
    $policy->{redis} = redis_block($rt, node => $opt{name},
                                   %{ $opt{redis} // {} });

    my %start = (policy => $policy, workers => $opt{workers} // 1,
                 policyd_args => ['-a', $t->dir . '/admin.sock'],
                 %{ $opt{start} // {} });

    if (my $first = $opt{mocks_of}) {
        my @names = sort keys %{ $first->{mocks} };
        $start{mocks} = [];
        $start{http} = join '', map {
            "    upstream tg_$_ { server " . $first->mock($_)->addr
            . "; keepalive 4; }\n"
        } @names;
        $start{keys} = $opt{start}{keys} // [];
        $t->{key} = $first->key;
    }

    return $t->start_gateway(%start);
}


# node_status($t): policyd status of a node, decoded; undef when none

sub node_status {
    my ($t) = @_;

    my ($rc, $out) = $t->policyd_cmd('status', '-a', $t->dir . '/admin.sock',
                                     { stderr => 0, timeout => 10 });
    return undef unless $rc == 0;

    my $doc = eval { $JSON->decode($out) };
    return ref $doc eq 'HASH' ? $doc : undef;
}


# redis_state($t): the node's policyd.redis.state ("up", "down",
# "connecting"); '' when it does not answer.  wait_state($t, $state):
# true once it says so (15 s at most).

sub redis_state {
    my $doc = node_status($_[0]) or return '';
    return $doc->{policyd}{redis}{state} // '';
}

sub wait_state {
    my ($t, $state) = @_;
    return $t->wait_for(sub { redis_state($t) eq $state }, timeout => 15,
                        interval => 0.1);
}


1;

__END__

=head1 NAME

Tailgate::Redis - a shared redis-server and several gateway nodes

=head1 SYNOPSIS

    use Tailgate::Redis qw(skip_unless_redis start_redis start_node);

    skip_unless_redis();
    my $a = Tailgate::Gateway->new->skip_unless_built;
    my $b = Tailgate::Gateway->new;
    start_redis($a);
    $a->mock_provider('local', delay_ms => 300);
    start_node($a, $a, name => 'a', policy => $policy);
    start_node($a, $b, name => 'b', policy => $policy, mocks_of => $a);

=head1 DESCRIPTION

=over

=item C<skip_unless_redis()>

Skips the whole test, saying why, when no C<redis-server> is installed.

=item C<start_redis($t)>

Starts C<redis-server> as process C<redis> of harness C<$t>, listening only
on C<DIR/redis.sock>, saving nothing; returns once it answers PING.  Started
again after C<kill_redis($t)> (SIGKILL), it is empty.

=item C<start_redis_cut($t)>

Starts C<t/lib/redis_cut.pl> as process C<redis_cut> of C<$t>: a proxy on a
loopback port before C<$t>'s Redis; returns its C<127.0.0.1:PORT>, for a
node's C<redis =E<gt> { address =E<gt> ... }>.  C<redis_cut($t, $line)>
tells it what to do with the next EVAL: C<before SUBSTRING> (the
connection dropped before Redis gets it), C<after SUBSTRING> (dropped
after Redis ran it, before its reply), C<before-down SUBSTRING> and
C<after-down SUBSTRING> (the same, then C<down>), C<down> (no connection
at all), C<pass>.  C<redis_cuts($t)> lists the cuts made (C<before>, C<after>).

=item C<redis_cli($t, @command)>

Runs C<redis-cli> on that socket; its trimmed output, or undef.

=item C<redis_block($t, node =E<gt> NAME, %more)>

The policy's C<redis> block for a node: the socket, C<node_id>,
C<timeout_ms> 200, C<lease_ttl_ms> 2000, C<nodes> 2, overridden by C<%more>.

=item C<start_node($redis_t, $t, name =E<gt> NAME, policy =E<gt> \%p, ...)>

C<start_gateway> on C<$t> with the policy plus that C<redis> block
(C<redis =E<gt> {...}> adds to it) and an admin socket at
C<DIR/admin.sock>.  C<mocks_of =E<gt> $first> makes its upstreams the
mocks of C<$first> and gives it C<$first>'s client key, so that both nodes
send to the same providers (C<start =E<gt> { keys =E<gt> [...] }> adds
clients to it, as to any node).

=item C<node_status($t)>

C<policyd status> of the node, decoded.

=item C<redis_state($t)>, C<wait_state($t, $state)>

The node's C<policyd.redis.state> (C<''> when its policyd does not
answer); true once it is C<$state>, within 15 s.

=back

=cut
