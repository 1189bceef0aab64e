#!/usr/bin/perl
#
# Faults under load, of clients: clients that go away after the first
# event of a stream, half way through a transcription upload, or while
# their request waits in line for a provider of one slot - beside clients
# that make requests of every kind.  After each: no request hung, no lease
# held and nobody waiting (a client that left the line is not in it), the
# counts agree with what the clients saw, no private request reached the
# external provider, and the gateway serves and counts as before.
# Tailgate::Faults has the load and the checks.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use JSON::PP ();
use Test::More;
use Tailgate::Faults;

my $t = Tailgate::Faults->new->skip_unless_built;
$t->start_faults;

my @MIX = @Tailgate::Faults::MIX;

sub gone { scalar grep { $_->{aborted} } @{ $_[0] } }


# streams of 30 events, 50 ms apart: the client that leaves after the
# first leaves a stream that runs on at the provider; its lease ends when
# nginx notices, and the outcome is client_abort

$t->row('client gone mid-stream under load',
    mixes => [ \@MIX, \@MIX,
               [qw(abort_stream abort_stream_lease abort_stream_priv)],
               [qw(abort_stream_priv abort_stream abort_stream_lease)] ],
    setup => sub {
        my ($t) = @_;
        $t->mock($_)->update(stream_chunks => 30, stream_interval_ms => 50)
            for qw(local lan ext);
    },
    check => sub {
        my ($t, $records) = @_;
        cmp_ok(gone($records), '>', 0,
               'clients went away mid-stream (' . gone($records) . ')');
        my $doc = $t->status;
        my ($qwen) = grep { $_->{name} eq 'qwen' } @{ $doc->{routes} };
        cmp_ok($qwen->{requests}{client_abort} // 0, '>', 0,
               'policyd learnt of client_abort on the lease route');
    });


# 600 kB announced, 300 kB sent, then the client is gone: nginx was still
# reading the body, so nothing was decided (an upload cut off counts for
# no REPORT, see Tailgate::Faults::reports_of) and local saw no part of it

$t->row('client gone mid-upload under load',
    mixes => [ \@MIX, \@MIX, ['abort_upload'], ['abort_upload', 'whisper'] ],
    check => sub {
        my ($t, $records) = @_;
        cmp_ok(gone($records), '>', 0,
               'uploads cut off half way (' . gone($records) . ')');
        my @short = grep { $_->{path} =~ /transcriptions/
                           && $_->{body} !~ /--B--\r\n\z/ }
                    @{ $t->mock('local')->requests };
        is(scalar @short, 0, 'local received only whole uploads');
    });


# gpu has one slot and takes 700 ms a request; clients queue for it on
# route "line", and some give up after 300 ms.  CANCEL takes them out of
# the line; a decision that came as they went is given back (not_sent).

{
    my $max_queued = 0;

    $t->row('client gone while queued under load',
        gpu_one => 0,
        mixes => [ \@MIX, ['line'], ['line'], ['abort_queued'], ['abort_queued'] ],
        seconds => 4,
        setup => sub { $_[0]->mock('gpu')->update(delay_ms => 700) },
        steps => [ map { [$_, sub {
            my $doc = $_[0]->status or return;
            my ($gpu) = grep { $_->{name} eq 'gpu' } @{ $doc->{providers} };
            $max_queued = $gpu->{queued} if $gpu->{queued} > $max_queued;
        }] } 1.0, 1.5, 2.0, 2.5, 3.0 ],
        check => sub {
            my ($t, $records) = @_;
            cmp_ok($max_queued, '>', 0, "requests waited in line for gpu "
                                        . "(up to $max_queued at once)");
            cmp_ok(gone($records), '>', 0,
                   'clients went away while they waited ('
                   . gone($records) . ')');
            my @busy = grep { $_->{route} eq 'line' && ($_->{status} // 0) == 429 }
                       @$records;
            is(scalar @busy, 0, 'no request was turned away for a line '
                                . 'that clients who left filled');
        });
}

$t->done_testing;
