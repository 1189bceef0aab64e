#!/usr/bin/env bash
#
# Runs the harnesses built in $OUT (fuzz/Makefile calls it):
#
#   run.sh regress NAME:FLAGS ...   each harness on every file of
#                                   regressions/NAME/, once
#   run.sh fuzz NAME:FLAGS ...      each harness for FUZZ_SECONDS, from its
#                                   seeds (corpus/NAME/) and what earlier
#                                   runs found ($WORK/NAME/corpus/)
#
# FLAGS are extra libFuzzer flags of that harness (quoted, may be empty).
# Environment: OUT (the harnesses), WORK (default $OUT/work), FUZZ_SECONDS
# (60), FUZZ_RSS_MB (2048), FUZZ_JOBS (harnesses at once, 1), FUZZ_NICE
# (nice level, 10).  A line per harness says what it did; the exit status
# is 1 when any harness crashed, leaked, timed out, ran out of memory or
# made any sanitizer report.

set -u

here=$(cd "$(dirname "$0")" && pwd)
mode=${1:?usage: run.sh regress|fuzz NAME:FLAGS ...}
shift

OUT=${OUT:-$here/../build/fuzz}
OUT=$(cd "$OUT" && pwd)
WORK=${WORK:-$OUT/work}
FUZZ_SECONDS=${FUZZ_SECONDS:-60}
FUZZ_RSS_MB=${FUZZ_RSS_MB:-2048}
FUZZ_JOBS=${FUZZ_JOBS:-1}
FUZZ_NICE=${FUZZ_NICE:-10}

mkdir -p "$WORK"

status=0

report_failure() {
    local name=$1 log=$2
    echo "fuzz: $name FAILED, the end of $log:"
    grep -v '^#[0-9]' "$log" | tail -40 | sed 's/^/    /'
}


# a report of any sanitizer, even one that did not stop the run
sanitizer_report() {
    grep -q -E '^SUMMARY: [A-Za-z]*Sanitizer|^==[0-9]+==ERROR:' "$1"
}


regress_one() {
    local name=$1 flags=$2 dir="$here/regressions/$1" log
    local files=()

    [ -d "$dir" ] && mapfile -t files < <(find "$dir" -type f ! -name '*.md' | sort)

    if [ ${#files[@]} -eq 0 ]; then
        printf '%-16s no regression inputs\n' "$name"
        return 0
    fi

    log="$WORK/$name.regress.log"
    mkdir -p "$WORK"

    # shellcheck disable=SC2086
    if nice -n "$FUZZ_NICE" "$OUT/$name" $flags -rss_limit_mb="$FUZZ_RSS_MB" \
            -timeout=25 "${files[@]}" > "$log" 2>&1 \
       && ! sanitizer_report "$log"
    then
        printf '%-16s %d regression inputs: ok\n' "$name" ${#files[@]}
        return 0
    fi

    report_failure "$name" "$log"
    return 1
}


fuzz_one() {
    local name=$1 flags=$2 dir="$WORK/$1" log rc last execs cov ft corp secs
    local artifacts

    mkdir -p "$dir/corpus" "$dir/artifacts"
    rm -f "$dir"/artifacts/*
    log="$dir/fuzz.log"

    # shellcheck disable=SC2086
    nice -n "$FUZZ_NICE" "$OUT/$name" $flags \
        -max_total_time="$FUZZ_SECONDS" -rss_limit_mb="$FUZZ_RSS_MB" \
        -timeout=25 -print_final_stats=1 \
        -artifact_prefix="$dir/artifacts/" \
        "$dir/corpus" "$here/corpus/$name" > "$log" 2>&1
    rc=$?

    last=$(grep -E '^#[0-9]+[[:space:]]+(INITED|NEW|REDUCE|pulse|DONE)' "$log" \
           | tail -1)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<< "$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<< "$last")
    corp=$(sed -n 's/.* corp: \([0-9]*\/[0-9]*[a-zA-Z]*\) .*/\1/p' <<< "$last")
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    secs=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" \
           | tail -1)

    artifacts=$(find "$dir/artifacts" -type f | wc -l)

    printf '%-16s %4ss  execs %10s  cov %5s  ft %6s  corpus %s\n' \
        "$name" "${secs:-?}" "${execs:-?}" "${cov:-?}" "${ft:-?}" \
        "${corp:-?}"

    if [ "$rc" -ne 0 ] || [ "$artifacts" -ne 0 ] \
       || sanitizer_report "$log"
    then
        report_failure "$name" "$log"
        find "$dir/artifacts" -type f | sed 's/^/    artifact: /'
        return 1
    fi

    return 0
}


run_all() {
    local fn=$1 spec name flags running=0
    shift

    for spec in "$@"; do
        name=${spec%%:*}
        flags=${spec#*:}

        if [ ! -x "$OUT/$name" ]; then
            echo "fuzz: $OUT/$name is not built"
            status=1
            continue
        fi

        if [ "$FUZZ_JOBS" -le 1 ]; then
            $fn "$name" "$flags" || status=1
            continue
        fi

        $fn "$name" "$flags" > "$WORK/$name.out" 2>&1 &
        eval "job_$running=\$!; jobname_$running=\$name"
        running=$((running + 1))

        if [ "$running" -ge "$FUZZ_JOBS" ]; then
            wait_all
            running=0
        fi
    done

    wait_all
}


# the background harnesses of run_all, waited for in order
wait_all() {
    local i=0 pid name

    while eval "[ -n \"\${job_$i:-}\" ]"; do
        eval "pid=\$job_$i; name=\$jobname_$i; unset job_$i jobname_$i"
        wait "$pid" || status=1
        cat "$WORK/$name.out"
        i=$((i + 1))
    done
}


case "$mode" in
regress) run_all regress_one "$@" ;;
fuzz)    run_all fuzz_one "$@" ;;
*)       echo "usage: run.sh regress|fuzz NAME:FLAGS ..."; exit 2 ;;
esac

exit $status
