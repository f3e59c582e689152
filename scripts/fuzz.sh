#!/usr/bin/env bash
# Fuzz Marty's parsers with cargo fuzz (libFuzzer + AddressSanitizer).
#   scripts/fuzz.sh [seconds per target] [target ...]
# `make test` runs it for 10 s per target (a smoke run); docs/PERFORMANCE.md records a longer
# run. Installs cargo-fuzz when missing. Seeds come from the real vectors in ../shared/vectors.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(mrz tlv sod certificate masterlist lds ldif)

command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
# cargo fuzz needs nightly-only compiler flags (sanitizers, coverage); this stable toolchain
# accepts them with RUSTC_BOOTSTRAP.
export RUSTC_BOOTSTRAP=1
vectors=../shared/vectors
# fuzz/seeds/<target>: crafted hostile inputs (20,000-deep nesting of every structure type),
# written by `MARTY_WRITE_FUZZ_SEEDS=$PWD/fuzz/seeds cargo test -p marty-icao --test depth`.
seeds() {
  local own=""
  [ -d "fuzz/seeds/$1" ] && own="fuzz/seeds/$1"
  case "$1" in
    mrz) echo "$own" ;;
    tlv|sod) echo "$vectors/sod $vectors/negative $own" ;;
    certificate) echo "$vectors/csca $vectors/crl $own" ;;
    masterlist) echo "$vectors/masterlist $own" ;;
    lds) echo "$vectors/lds-examples $vectors/bsi-reference $vectors/dg $own" ;;
    ldif) echo "$own" ;;
  esac
}
cargo fuzz build --fuzz-dir fuzz -O >/dev/null
total=0
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t"
  log=$(mktemp)
  # shellcheck disable=SC2046
  if ! cargo fuzz run --fuzz-dir fuzz -O "$t" "fuzz/corpus/$t" $(seeds "$t") -- \
      -max_total_time="$seconds" -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
    tail -40 "$log"
    echo "fuzz target $t FAILED (crash or panic above; the input is in fuzz/artifacts/$t)" >&2
    exit 1
  fi
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  echo "fuzz $t: ${runs:-0} executions in ${seconds}s, 0 crashes"
  total=$((total + ${runs:-0}))
  rm -f "$log"
done
echo "fuzz: ${#targets[@]} targets, $total executions, 0 crashes"
