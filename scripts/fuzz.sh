#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (tree build-fuzz/, ASan + UBSan)
# and runs each for FUZZ_SECONDS (default 60) from a copy of its committed
# seed corpus (fuzz/corpus/<target>/). Fails on any crash, leak or
# sanitizer report; prints executions and coverage per target.
#   FUZZ_SECONDS=600 bash scripts/fuzz.sh
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${FUZZ_SECONDS:-60}"
build="${FUZZ_BUILD:-build-fuzz}"
export CCACHE_BASEDIR="$PWD"
if [ ! -f "$build/build.ninja" ]; then
  CC=clang CXX=clang++ cmake -S . -B "$build" -G Ninja \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSPIKESERVE_FUZZ=ON \
    -DSPIKESERVE_BUILD_TESTS=OFF -DSPIKESERVE_BUILD_BENCH=OFF >/dev/null
fi
targets=(gguf tokenizer quant_plan request openai)
cmake --build "$build" --target "${targets[@]/%/_fuzzer}"
status=0
for t in "${targets[@]}"; do
  work="$build/fuzz/work/$t"
  rm -rf "$work" && mkdir -p "$work/corpus" "$work/artifacts"
  cp fuzz/corpus/"$t"/* "$work/corpus/"
  log="$work/log.txt"
  if "$build/fuzz/${t}_fuzzer" -max_total_time="$seconds" -rss_limit_mb=2048 \
       -timeout=10 -artifact_prefix="$work/artifacts/" "$work/corpus" >"$log" 2>&1; then
    echo "fuzz $t: $(grep -E '^#[0-9]+.*DONE' "$log" | tail -1 | sed 's/ *lim:.*rss/ rss/')"
  else
    echo "fuzz $t: FAILED (artifacts in $work/artifacts)"; tail -30 "$log"; status=1
  fi
done
exit $status
