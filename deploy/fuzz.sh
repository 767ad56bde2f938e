#!/usr/bin/env bash
# Bounded fuzzing of everything Motcua decodes from outside: every
# cargo-fuzz target of fuzz/ (fuzz/Cargo.toml lists them) runs for
# FUZZ_SECONDS (default 25) on the nightly toolchain. A target that panics
# stops the script with a failing status; libFuzzer leaves the input under
# fuzz/artifacts/<target>/ (reproduce: cargo +nightly fuzz run <target> <file>).
#
# Installs cargo-fuzz (pinned) when missing. The corpus grows in
# fuzz/corpus/ (git-ignored) and is reused by the next run on this machine;
# fuzz/seeds/<target>/ holds hand-made starting inputs, e.g. a valid import
# file, which a fuzzer would take long to find alone.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
seconds=${FUZZ_SECONDS:-25}
CARGO_FUZZ_VERSION=0.13.2

if [ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]; then
  echo "==> cargo install cargo-fuzz $CARGO_FUZZ_VERSION"
  cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION"
fi

cd fuzz
# No sanitizer: the code under test is safe Rust, a panic is what is looked
# for, and the build and each run are about twice as fast without ASan.
# --dev: unoptimised, so a cold build (CI's) takes minutes, not half an
# hour on two cores; a bounded run then executes fewer inputs, with
# overflow checks on. FUZZ_RELEASE=1 builds optimised for longer runs.
fuzz=(cargo +nightly fuzz)
opts=(--sanitizer none)
[ "${FUZZ_RELEASE:-0}" = 1 ] || opts+=(--dev)
echo "==> cargo fuzz build"
"${fuzz[@]}" build "${opts[@]}"
for target in $("${fuzz[@]}" list); do
  echo "==> fuzz $target for ${seconds}s"
  mkdir -p "corpus/$target"
  seeds=()
  [ -d "seeds/$target" ] && seeds=("seeds/$target")
  dict=()
  [ -f "seeds/$target.dict" ] && dict=("-dict=seeds/$target.dict")
  # Only libFuzzer's summary lines are shown; its status is the run's, not
  # grep's (which finds nothing in a quiet run).
  set +e
  "${fuzz[@]}" run "${opts[@]}" "$target" "corpus/$target" "${seeds[@]}" -- \
    -max_total_time="$seconds" -timeout=10 -print_final_stats=1 "${dict[@]}" 2>&1 |
    grep -E '^(#[0-9]+[[:space:]]+DONE|stat::number_of_executed_units|stat::peak_rss_mb|==[0-9]+==|thread .* panicked|SUMMARY|Test unit written|error)'
  status=${PIPESTATUS[0]}
  set -e
  if [ "$status" != 0 ]; then
    echo "fuzz: $target failed (status $status); its input is in fuzz/artifacts/$target/" >&2
    exit 1
  fi
done
echo "fuzz: every target ran ${seconds}s without a panic"
