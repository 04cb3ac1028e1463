#!/usr/bin/perl
# cpu_sample.pl SECONDS SQL PSQL...
# Every second runs SQL (returning "pid|label" rows) with the psql command
# line PSQL..., and reads the CPU time of those processes (/proc/PID/schedstat).
# A process present at the start counts from its first sample, one that
# appears later from zero. Prints "label<TAB>cpu_seconds<TAB>processes" per
# label and "total<TAB>cpu_seconds<TAB>percent_of_one_core".
use strict;
use warnings;
use POSIX qw(sysconf);
use Time::HiRes qw(time sleep);

my ($seconds, $sql, @psql) = @ARGV;
my $hz = sysconf(POSIX::_SC_CLK_TCK()) || 100;
my (%first, %last, %label);

# CPU time of a process in seconds: /proc/PID/schedstat (nanoseconds on
# the CPU) where the kernel has it, else utime + stime of /proc/PID/stat in
# clock ticks (10 ms: a process idle for a minute shows 0 or 1 of them)
sub cpu_seconds {
    my ($pid) = @_;
    if (open(my $fh, '<', "/proc/$pid/schedstat")) {
        my $s = <$fh>;
        close $fh;
        return $1 / 1e9 if defined $s && $s =~ /^(\d+)\s/;
    }
    open(my $fh, '<', "/proc/$pid/stat") or return undef;
    my $s = <$fh>;
    close $fh;
    $s =~ s/^.*\)\s+//s;    # fields after "(comm)"
    my @f = split /\s+/, $s;
    return ($f[11] + $f[12]) / $hz;  # utime, stime (fields 14, 15)
}

sub sample {
    my ($initial) = @_;
    open(my $ph, '-|', @psql, '-c', $sql) or die "psql: $!";
    while (my $line = <$ph>) {
        chomp $line;
        my ($pid, $lab) = split /\|/, $line, 2;
        next unless $pid;
        my $t = cpu_seconds($pid);
        next unless defined $t;
        if (!exists $first{$pid}) {
            $first{$pid} = $initial ? $t : 0;
            $label{$pid} = $lab;
        }
        $last{$pid} = $t;
    }
    close $ph;
    # processes already known but not listed any more (e.g. exited): keep last
    for my $pid (keys %first) {
        my $t = cpu_seconds($pid);
        $last{$pid} = $t if defined $t && $t >= ($last{$pid} // 0);
    }
}

my $t0 = time;
sample(1);
my $n = 1;
while (1) {
    my $next = $t0 + $n;
    last if $next > $t0 + $seconds;
    my $d = $next - time;
    sleep($d) if $d > 0;
    sample(0);
    $n++;
}
my $elapsed = time - $t0;
my (%by, %np);
my $total = 0;
for my $pid (keys %first) {
    my $d = $last{$pid} - $first{$pid};
    $by{$label{$pid}} += $d;
    $np{$label{$pid}}++;
    $total += $d;
}
printf "%s\t%.3f\t%d\n", $_, $by{$_}, $np{$_} for sort keys %by;
printf "total\t%.3f\t%.3f\n", $total, 100 * $total / $elapsed;
