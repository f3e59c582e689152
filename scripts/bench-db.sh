#!/usr/bin/env bash
# Figures for docs/PERFORMANCE.md: `marty db` end to end against a fresh private PostgreSQL.
# Every figure of one run comes from the same machine state, so compare ratios, not seconds.
# Usage: scripts/bench-db.sh [rounds]   (needs `cargo build -p marty-cli` first)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-7}
marty=$PWD/target/debug/marty
state=$(mktemp -d /tmp/marty-bench-XXXXXX)
chmod 755 "$state"
export MARTY_STATE_DIR=$state MARTY_ENV=development
unset DB_HOST DB_PORT MARTY_ADMIN_DATABASE_URL DB_USER DB_PASSWORD
trap '$marty dev postgres stop >/dev/null 2>&1 || true; rm -rf "$state"' EXIT

ms() { local s e; s=$(date +%s%N); "$@" >/dev/null; e=$(date +%s%N); echo $(( (e - s) / 1000000 )); }
median() { tr ' ' '\n' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

$marty dev postgres start >/dev/null
cold_setup=$(ms $marty db setup)
cold_migrate=$(ms $marty db migrate)
noop=(); seq=(); conc=()
for _ in $(seq "$rounds"); do
  noop+=("$(ms $marty db setup)")
  # Alternate so that machine noise hits both variants alike.
  seq+=("$(ms $marty db verify --concurrency 1)")
  conc+=("$(ms $marty db verify)")
done
noop_m=$(echo "${noop[@]}" | median)
seq_m=$(echo "${seq[@]}" | median)
conc_m=$(echo "${conc[@]}" | median)
cat <<TABLE
| operation (4 services + marty_dev) | time (ms) |
|---|---|
| \`db setup\`, cold (creates 12 roles, 5 databases) | $cold_setup |
| \`db setup\`, no-op (median of $rounds) | $noop_m |
| \`db migrate\`, cold (4 initial migrations) | $cold_migrate |
| \`db verify\`, 60 cells sequential (\`--concurrency 1\`, median) | $seq_m |
| \`db verify\`, 60 cells concurrent (default 16, median) | $conc_m |

verify speed-up, concurrent vs sequential (same run): $(awk "BEGIN {printf \"%.2f\", $seq_m / $conc_m}")x
no-op setup vs cold setup: $(awk "BEGIN {printf \"%.2f\", $noop_m / $cold_setup}")
TABLE
