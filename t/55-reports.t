#!/usr/bin/perl

# Every request that got a decision is reported to policyd exactly once.
# A worker counts plain successes and sends the counts every 250 ms; a
# worker that exits (nginx -s reload, nginx -s quit) sends what it counted
# before it goes, so policyd's counts equal the requests made across
# reloads under load.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use JSON::PP;
use POSIX ();
use Test::More;
use Time::HiRes qw(sleep time);
use Tailgate::Gateway;

my $t = Tailgate::Gateway->new->skip_unless_built;

my $admin = $t->dir . '/admin.sock';
$t->start_gateway(workers => 2, policyd_args => ['-a', $admin]);

my $JSON = JSON::PP->new;

# the requests policyd counted for a route, by outcome
sub counted {
    my ($route) = @_;
    my (undef, $out) = $t->policyd_cmd('status', '-a', $admin);
    my $doc = eval { $JSON->decode($out) } or return {};
    my ($r) = grep { $_->{name} eq $route } @{ $doc->{routes} };
    return $r ? $r->{requests} : {};
}

sub total { my $n = 0; $n += $_ for values %{ $_[0] }; $n }

# clients that ask for $seconds and write down what they got
sub load {
    my ($clients, $seconds) = @_;
    my @pids;

    for my $i (1 .. $clients) {
        my $pid = fork;
        die "fork: $!\n" unless defined $pid;

        if ($pid == 0) {
            my ($ok, $other) = (0, 0);
            my $end = time + $seconds;
            my $n = 0;
            while (time < $end && $n++ < 20000) {
                my $res = $t->chat('qwen', timeout => 5);
                $res->{status} == 200 ? $ok++ : $other++;
            }
            $t->write_file("load-$i", "$ok $other\n");
            POSIX::_exit(0);
        }

        push @pids, $pid;
    }

    return sub {
        waitpid $_, 0 for @pids;
        my ($ok, $other) = (0, 0);
        for my $i (1 .. $clients) {
            my ($a, $b) = split ' ', $t->read_file("load-$i");
            $ok += $a;
            $other += $b;
        }
        return ($ok, $other);
    };
}

subtest 'counts equal requests across nginx reloads under load' => sub {
    my $done = load(3, 4);

    # a reload now and then: each time both workers exit with counts of
    # their last 250 ms unsent
    for (1 .. 5) {
        sleep 0.6;
        $t->reload_nginx(undef, wait_old => 0);
    }

    my ($ok, $other) = $done->();
    cmp_ok($ok, '>', 100, "clients made $ok requests");
    is($other, 0, 'every one answered 200');

    my $counted;
    ok($t->wait_for(sub { $counted = counted('qwen');
                          total($counted) >= $ok }, timeout => 5),
       'policyd counted them');
    is($counted->{ok}, $ok, 'exactly as many successes as requests')
        or diag($JSON->encode($counted));
    is(total($counted), $ok, 'and nothing else');
};

subtest 'the last counts of a worker that quits' => sub {
    my $before = total(counted('qwen'));

    my $n = 0;
    for (1 .. 30) {
        $n++ if $t->chat('qwen')->{status} == 200;
    }

    # within 250 ms of the last request: its count is not sent yet
    $t->stop_nginx;

    ok($t->wait_for(sub { total(counted('qwen')) >= $before + $n }, timeout => 3),
       'counted after nginx quit');
    is(total(counted('qwen')), $before + $n, "all $n of them, once");
};

$t->done_testing;
