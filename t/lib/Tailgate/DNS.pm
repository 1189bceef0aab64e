package Tailgate::DNS;

# A mock DNS server (t/lib/mock_dns.pl) for a Tailgate::Test: UDP on a
# port of the test's, its answers set by zone().
#
#   my $dns = Tailgate::DNS->start($t);
#   $dns->zone(names => { 'api.example.test' => ['127.0.0.2'] });
#   $dns->zone(silent => 1);          # away
#   $dns->zone(rcode => 2);           # SERVFAIL
#   $dns->addr;                       # "127.0.0.1:PORT"
#   $dns->queries;                    # [{name, type}, ...]

use strict;
use warnings;

use JSON::PP ();
use Scalar::Util qw(weaken);

my $JSON = JSON::PP->new->canonical->utf8;

sub start {
    my ($class, $t, %opt) = @_;

    my $name = $opt{name} // 'dns';
    my $self = bless { t => $t, name => $name, dir => $t->dir,
                       proc => "dns:$name", port => $t->port("dns:$name") },
                     $class;
    weaken($self->{t});

    $self->zone(names => {});
    unlink $self->_file('ready');

    my $pid = $t->spawn($self->{proc},
        [ $^X, $t->root . '/t/lib/mock_dns.pl', '--port', $self->{port},
          '--name', $name, '--dir', $self->{dir} ],
        log => "$name.dns.log");

    my $ok = $t->wait_for(sub {
        return -1 unless $t->running($self->{proc});
        my ($p) = $t->read_file($self->_file('ready')) =~ /^(\d+) /;
        return $p && $p == $pid ? 1 : 0;
    }, timeout => 10);

    die "mock DNS server did not start on port $self->{port}\n"
        unless $ok && $ok > 0;

    return $self;
}

sub _file { "$_[0]{dir}/$_[0]{name}.$_[1]" }

sub addr { "127.0.0.1:$_[0]{port}" }
sub stop { $_[0]{t}->stop_proc($_[0]{proc}, group => 1) }

sub zone {
    my ($self, %zone) = @_;
    my $file = $self->_file('zone.json');
    $self->{t}->write_file("$file.tmp", $JSON->encode({ %zone }));
    rename "$file.tmp", $file or die "zone: $!\n";
    return $self;
}

sub queries {
    my ($self) = @_;
    return [ map { eval { $JSON->decode($_) } // () }
             split /\n/, $self->{t}->read_file($self->_file('queries.jsonl')) ];
}

1;
