package Tailgate::OTLP;

# A mock OTLP/HTTP collector (t/lib/mock_otlp.pl) for a Tailgate::Test:
# started on a port of the test's, it records every POST; this reads them
# back and takes the spans out of their bodies.  See the POD at the end.

use strict;
use warnings;

use Fcntl qw(:flock);
use JSON::PP ();
use Scalar::Util qw(weaken);

my $JSON  = JSON::PP->new->canonical->utf8;
my $LINES = JSON::PP->new->canonical;


sub start {
    my ($class, $t, %opt) = @_;

    my $name = $opt{name} // 'otlp';
    my $self = bless { t => $t, name => $name, dir => $t->dir,
                       proc => "otlp:$name",
                       port => $t->port("otlp:$name") }, $class;
    weaken($self->{t});

    $self->set(%{ $opt{control} // {} });
    $self->_spawn;

    return $self;
}

sub _file { "$_[0]{dir}/$_[0]{name}.$_[1]" }

sub _spawn {
    my ($self) = @_;

    my $t = $self->{t};
    unlink $self->_file('ready');

    my $pid = $t->spawn($self->{proc},
        [ $^X, $t->root . '/t/lib/mock_otlp.pl', '--port', $self->{port},
          '--name', $self->{name}, '--dir', $self->{dir} ],
        log => "$self->{name}.otlp.log");

    my $ok = $t->wait_for(sub {
        return -1 unless $t->running($self->{proc});
        my ($p) = $t->read_file($self->_file('ready')) =~ /^(\d+) /;
        return $p && $p == $pid ? 1 : 0;
    }, timeout => 10);

    die "mock OTLP collector did not start on port $self->{port}\n"
        unless $ok && $ok > 0;
}

sub port    { $_[0]{port} }
sub addr    { "127.0.0.1:$_[0]{port}" }
sub url     { "http://127.0.0.1:$_[0]{port}" }
sub running { $_[0]{t}->running($_[0]{proc}) }
sub stop    { $_[0]{t}->stop_proc($_[0]{proc}, group => 1) }
sub restart { $_[0]->_spawn }

sub set {
    my ($self, %control) = @_;
    $self->{t}->write_file($self->_file('control.json'),
                           $JSON->encode({ %control }));
    return $self;
}


# every request it got: [{ts, method, path, headers => {lc name => value},
# body (bytes), json (the body decoded, or undef)}], oldest first

sub posts {
    my ($self) = @_;

    open my $fh, '<:raw', $self->_file('otlp.jsonl') or return [];
    flock($fh, LOCK_SH);
    my @lines = <$fh>;
    close $fh;

    my @posts;
    for my $line (@lines) {
        my $p = eval { $LINES->decode($line) } or next;
        $p->{json} = eval { $JSON->decode($p->{body}) };
        $p->{json_error} = $@ unless $p->{json};
        push @posts, $p;
    }

    return \@posts;
}


# every span of every POST, each with its attributes as a hash
# ({key => value}, ints as numbers) in {attr}, its resource's in {resource}
# and the scope in {scope}

sub spans {
    my ($self) = @_;

    my @spans;

    for my $p (@{ $self->posts }) {
        for my $rs (@{ ($p->{json} // {})->{resourceSpans} // [] }) {
            my $res = attrs($rs->{resource}{attributes});
            for my $ss (@{ $rs->{scopeSpans} // [] }) {
                for my $s (@{ $ss->{spans} // [] }) {
                    push @spans, { %$s, attr => attrs($s->{attributes}),
                                   resource => $res, scope => $ss->{scope},
                                   schema => $ss->{schemaUrl} };
                }
            }
        }
    }

    return \@spans;
}

sub attrs {
    my ($list) = @_;
    my %a;
    for my $kv (@{ $list // [] }) {
        my $v = $kv->{value} // {};
        $a{ $kv->{key} } = exists $v->{stringValue} ? $v->{stringValue}
                         : exists $v->{intValue}    ? 0 + $v->{intValue}
                         : exists $v->{boolValue}   ? ($v->{boolValue} ? 1 : 0)
                         : undef;
    }
    return \%a;
}


# wait_spans(sub { ... } or $count, timeout => 10): the spans once the
# condition holds (or $count spans are there); undef after the timeout

sub wait_spans {
    my ($self, $cond, %opt) = @_;

    my $want = ref $cond ? $cond : do { my $n = $cond; sub { @{ $_[0] } >= $n } };
    my $spans;

    $self->{t}->wait_for(sub { $want->($spans = $self->spans) },
                         timeout => $opt{timeout} // 10)
        or return undef;

    return $spans;
}


1;

__END__

=head1 NAME

Tailgate::OTLP - a mock OTLP/HTTP trace collector for the tests

=head1 SYNOPSIS

    my $otlp = Tailgate::OTLP->start($t, control => { status => 200 });
    ... policyd with OTLP_ENDPOINT => $otlp->addr ...
    my $spans = $otlp->wait_spans(2);
    is($spans->[0]{attr}{'gen_ai.request.model'}, 'qwen2.5-7b-instruct');
    $otlp->set(status => 503);       # refuse from now on
    $otlp->set(hang_s => 30);        # answer late
    $otlp->stop;                     # away

=head1 METHODS

C<start($t, name =E<gt> 'otlp', control =E<gt> {...})>, C<addr>, C<url>,
C<set(%control)> (C<status>, C<hang_s>), C<posts> (each request: method,
path, headers, body, json), C<spans> (every span, attributes as a hash),
C<wait_spans($count or sub)>, C<stop>, C<restart>.

=cut
