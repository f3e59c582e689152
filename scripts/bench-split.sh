#!/usr/bin/env bash
# split-legacy throughput for docs/PERFORMANCE.md (issue 10): `marty db split-legacy` (batched
# keyset COPY into each service database, one transaction per batch, then per-table count and
# checksum on both sides) against plain `COPY … TO STDOUT | COPY … FROM STDIN` of every table
# between the same databases — rounds interleaved on one private PostgreSQL (release build).
# Usage: scripts/bench-split.sh [rounds] [rows]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}; rows=${2:-1000000}
. scripts/bench-common.sh
echo "building the legacy database with $rows rows…" >&2
$marty db legacy-fixture --rows "$rows" >/dev/null 2>&1
services="csca document_signer passport_engine pkd"
# Loop variables are not named s/e: secs' locals of those names are visible to what it runs.
empty_services() {
  for svc in $services; do
    psql -q -d "marty_$svc" -v ON_ERROR_STOP=1 -c "set client_min_messages = warning; do \$\$ declare t text; begin
      for t in select tablename from pg_tables where schemaname = 'public'
               and tablename not in ('_sqlx_migrations', 'marty_backup_history', 'marty_isolation_probe') loop
        execute format('truncate table public.%I restart identity cascade', t);
      end loop; end \$\$"
  done
}
plain_copy() {
  for svc in $services; do
    for tbl in $(psql -Atd marty_dev -c "select tablename from pg_tables where schemaname = '$svc' and tablename <> '_sqlx_migrations'"); do
      psql -d marty_dev -Atc "copy $svc.$tbl to stdout" | psql -q -d "marty_$svc" -c "copy public.$tbl from stdin"
    done
  done
}
plain=(); split=()
for i in $(seq "$rounds"); do
  empty_services
  t=$(secs plain_copy); plain+=("$t")
  empty_services
  t2=$(secs $marty db split-legacy); split+=("$t2")
  echo "  round $i: COPY pipes ${t}s, split-legacy ${t2}s" >&2
done
r=$(ratios plain split)
rps() { awk -v n="$rows" -v s="$1" 'BEGIN {printf "%.0f", n / s}'; }
echo
echo "| $rounds interleaved rounds, $rows rows | COPY TO/FROM (rows/s, median) | split-legacy (rows/s, median) | ratio split/COPY: median (range) | goal |"
echo "|---|---|---|---|---|"
echo "| split-legacy | $(rps "$(echo "${plain[@]}" | median)") | $(rps "$(echo "${split[@]}" | median)") | $(echo "$r" | median) ($(echo "$r" | range)) | ≥ 0.5 |"
