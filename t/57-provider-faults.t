#!/usr/bin/perl
#
# Faults under load, of providers: the external provider (ext) and the
# private one (lan) answer 500, answer 429, reset the connection, hang
# past the read timeout, drop their responses half way, or are slow - for
# two seconds while clients make requests of every kind; local stays
# healthy, the last step of the fallback routes.  After each: no request
# hung, no lease held and nobody waiting, policyd's counts agree with what
# the clients saw, no private request reached ext (a private request whose
# lan step failed falls back past ext, never to it), and the gateway
# serves and counts as before.  Tailgate::Faults has the load and the
# checks; t/56-faults.t has the faults of the daemons.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use JSON::PP ();
use Test::More;
use Tailgate::Faults;

my $t = Tailgate::Faults->new->skip_unless_built;
$t->start_faults;

my $JSON = JSON::PP->new->canonical;

sub show { $JSON->encode([ @_[0 .. ($#_ < 4 ? $#_ : 4)] ]) }

# requests of the routes that fall back, local last: always answered
sub fallback_answers {
    my ($records) = @_;
    my @bad = grep { $_->{route} =~ /^(?:smart|chain)$/ && $_->{status} != 200 }
              @$records;
    is(scalar @bad, 0, 'every request of a route that falls back was '
                       . 'answered: local took what ext and lan failed')
        or diag(show(@bad));

    my @far = grep { $_->{route} =~ /^(?:smart|chain)$/ && ($_->{attempts} // 0) > 1 }
              @$records;
    cmp_ok(scalar @far, '>', 0, 'some of them after a failed attempt ('
                                . scalar(@far) . ')');
}

# what the route without fallback gave its clients: 200, or one of the
# failures given - and a failure at least once (the provider's own, or
# policyd's 503 for a provider down after failures in a row)
sub direct_answers {
    my ($records, $what, @fail) = @_;
    my %ok = map { $_ => 1 } 200, @fail;
    my @direct = grep { $_->{kind} eq 'direct' } @$records;
    my @bad = grep { !$ok{ $_->{status} } } @direct;
    is(scalar @bad, 0, "direct (ext only): $what") or diag(show(@bad));
    my $seen = grep { $_->{status} != 200 } @direct;
    cmp_ok($seen, '>', 0, "direct: the fault reached its clients ($seen of "
                          . scalar(@direct) . ')');
}

# the fault on ext and lan from 0.6 s into the load until a second before
# its end; four clients with the whole mix, one that asks for ext only
# (behind two timeouts of a fallback, it might miss the fault)
sub provider_row {
    my ($name, $control, $check, %opt) = @_;

    my $seconds = $opt{seconds} // 3.5;

    $t->row($name,
        seconds => $seconds,
        mixes => [ (\@Tailgate::Faults::MIX) x 4,
                   ['direct'] ],
        steps => [
            [0.6, sub { $_[0]->mock($_)->set(%$control) for qw(ext lan) }],
            [$seconds - 1, sub { $_[0]->heal }],
        ],
        check => $check);
}


provider_row('provider 500 under load', { mode => 'status', status => 500 },
    sub {
        my ($t, $records) = @_;
        fallback_answers($records);
        # a provider that failed three times in a row is down for 500 ms:
        # then policyd answers 503 provider_unavailable itself
        direct_answers($records, 'its 500, or 503 while it is down',
                       500, 503);
    });

provider_row('provider 429 under load',
    { mode => 'status', status => 429, retry_after => 3 },
    sub {
        my ($t, $records) = @_;
        fallback_answers($records);
        direct_answers($records, 'its 429', 429);
    });

provider_row('provider resets the connection under load', { mode => 'reset' },
    sub {
        my ($t, $records) = @_;
        fallback_answers($records);
        direct_answers($records, '502, or 503 while it is down', 502, 503);
    });

# no answer within proxy_read_timeout (2 s): a timeout, then the next step
provider_row('provider hangs (times out) under load',
    { mode => 'hang', hang_s => 10 },
    sub {
        my ($t, $records) = @_;
        fallback_answers($records);
        direct_answers($records, '504, or 503 while it is down', 504, 503);
    }, seconds => 5);

# the response started, then the provider is gone: never retried, and a
# stream ends with the gateway's error event, not silently
provider_row('provider drops mid-stream under load',
    { mode => 'drop', drop_after => 1 },
    sub {
        my ($t, $records) = @_;
        my @streams = grep { $_->{status} == 200 && $_->{sse} } @$records;
        my @cut = grep { $_->{sse} eq 'cut' } @streams;
        is(scalar @cut, 0, scalar(@streams) . ' streams answered, each ended with '
                           . '[DONE] or an error event') or diag(show(@cut));
        my @broken = grep { $_->{sse} eq 'error' } @streams;
        cmp_ok(scalar @broken, '>', 0,
               'streams that broke off said so (' . scalar(@broken) . ')');
        my @half = grep { $_->{kind} eq 'direct' && ($_->{error} // '') eq 'truncated' }
                   @$records;
        cmp_ok(scalar @half, '>', 0, 'direct: an answer cut off reached the '
                                     . 'client cut off (' . scalar(@half) . ')');
    });

# slow but within the timeouts: everything answered, every stream whole
provider_row('slow providers under load',
    { delay_ms => 300, stream_chunks => 5, stream_interval_ms => 100 },
    sub {
        my ($t, $records) = @_;
        my @bad = Tailgate::Faults::unhealthy(@$records);
        is(scalar @bad, 0, 'every request answered as a healthy gateway answers')
            or diag(show(@bad));
        my @cut = grep { ($_->{sse} // 'done') ne 'done' } @$records;
        is(scalar @cut, 0, 'every stream whole') or diag(show(@cut));
    });

$t->done_testing;
