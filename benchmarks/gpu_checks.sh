#!/usr/bin/env bash
# Every GPU check and measurement in one call (device time is scarce), each step's log under OUTDIR:
#
#   LNLIB_GIT_COMMIT=$(git rev-parse HEAD) bash benchmarks/gpu_checks.sh OUTDIR [STEP...]
#
# STEP: tests (the GPU tests), sanitize (memcheck and racecheck), variants (benchmarks/experiments/tune_variants.py),
# bench (benchmarks/gpu.py --versions, the JSON the book plots). Default: all four, in that order.
# A device call is limited to 10 minutes: if all four do not fit, run "tests sanitize" in one call and
# "variants" and "bench" in further ones. Copy a new gpu-*.json into lnlib/results to update the book.
set -uo pipefail
out=${1:?usage: gpu_checks.sh OUTDIR [tests sanitize variants bench]}
shift
steps=${*:-tests sanitize variants bench}
mkdir -p "$out"
export LNLIB_GIT_COMMIT=${LNLIB_GIT_COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}
nvidia-smi >"$out/nvidia-smi.txt" 2>&1
status=0
run() {
    local name=$1
    shift
    local start=$(date +%s)
    "$@" >"$out/$name.log" 2>&1
    local rc=$?
    [ $rc -eq 0 ] || status=1
    echo "== $name: rc $rc in $(( $(date +%s) - start )) s: $*"
    tail -n 4 "$out/$name.log"
}
for step in $steps; do
    case $step in
    tests) run tests python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_experiments.py ;;
    sanitize)
        run memcheck compute-sanitizer --tool memcheck --error-exitcode 1 python3 benchmarks/sanitize.py
        run racecheck compute-sanitizer --tool racecheck --error-exitcode 1 python3 benchmarks/sanitize.py ;;
    variants) run variants python3 benchmarks/experiments/tune_variants.py --out "$out" ;;
    bench) run bench python3 benchmarks/gpu.py --versions --out "$out" ;;
    *) echo "unknown step $step" >&2; status=1 ;;
    esac
done
exit $status
