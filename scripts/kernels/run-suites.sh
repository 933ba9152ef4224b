#!/bin/bash
# Runs test suites (cargo test executables) one after the other and records each:
#
#   scripts/kernels/run-suites.sh RESULTS_DIR
#
# RESULTS_DIR/suites.tsv lists "name<TAB>executable" (built by scripts/kernels.sh),
# or "name<TAB>command<TAB>script" for a --script (run with bash, passed when it
# exits 0, counted as one test);
# RESULTS_DIR/run.env sets RUNS (each suite's runs in a row), SUITE_TIMEOUT
# (seconds per run) and the tests' environment. For run i of suite s it writes
# s.i.log (the suite's output) and s.i.result: "name run status passed failed
# seconds" with status pass, fail or hung (killed at SUITE_TIMEOUT). Runs the same
# natively (the machine's kernel) and in a guest (guest.sh).
set -uo pipefail

results="${1:?usage: run-suites.sh RESULTS_DIR}"
# shellcheck source=/dev/null
set -a
source "$results/run.env"
set +a

# What `meshlane precheck` says about this kernel, for the record.
if [[ -n "${MESHLANE_BIN:-}" ]]; then
    "$MESHLANE_BIN" precheck >"$results/precheck.log" 2>&1
    echo "exit $?" >>"$results/precheck.log"
fi

while IFS=$'\t' read -r name exe kind; do
    [[ -n "$name" ]] || continue
    for run in $(seq 1 "$RUNS"); do
        log="$results/$name.$run.log"
        start=$(date +%s.%N)
        # -k: a suite that ignores SIGTERM is killed 10 s later; either way "hung".
        # --show-output: what passing tests print is evidence too (stalls, queues).
        if [[ "${kind:-}" == script ]]; then
            timeout -k 10 "$SUITE_TIMEOUT" bash -c "$exe" </dev/null >"$log" 2>&1
            rc=$?
            passed=$((rc == 0 ? 1 : 0))
            failed=$((rc == 0 ? 0 : 1))
        else
            timeout -k 10 "$SUITE_TIMEOUT" "$exe" --test-threads 1 --show-output >"$log" 2>&1
            rc=$?
            passed=$(grep -cE '^test .* \.\.\. ok$' "$log")
            failed=$(grep -cE '^test .* \.\.\. FAILED$' "$log")
        fi
        seconds=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.0f", b - a }')
        case "$rc" in
        0) status=pass ;;
        124 | 137) status=hung ;;
        *) status=fail ;;
        esac
        # A run that printed no test at all did not test anything.
        if [[ "$status" == pass && "$passed" == 0 ]]; then
            status=fail
        fi
        printf '%s %s %s %s %s %s\n' "$name" "$run" "$status" "$passed" "$failed" "$seconds" \
            | tee "$results/$name.$run.result"
        if [[ "$status" != pass && "${STOP_AT_FIRST_FAILURE:-0}" == 1 ]]; then
            break
        fi
    done
done <"$results/suites.tsv"
