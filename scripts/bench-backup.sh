#!/usr/bin/env bash
# Backup and restore throughput for docs/PERFORMANCE.md (issue 10): `marty db backup` (pg_dump
# -Fc as the readonly role, the table checksums of the same snapshot, SHA-256 of the stream,
# the manifest) against plain `pg_dump -Fc` of the same database, and `marty db restore`
# (scratch database, pg_restore as the owner, checks, the role model re-applied, rename)
# against replacing a database with the plain tools (drop the old copy, create, `pg_restore`)
# — rounds interleaved on one private
# PostgreSQL (release build).
# Usage: scripts/bench-backup.sh [rounds] [outbox rows]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}; rows=${2:-300000}
. scripts/bench-common.sh
db=marty_passport_engine
echo "loading $rows outbox rows (about 1 KiB of JSON each) into $db…" >&2
psql -q -d $db -v ON_ERROR_STOP=1 <<SQL
insert into outbox (event_type, event_key, payload)
select 'passport_engine.passport.issued', 'passport:' || g,
       jsonb_build_object('passport_id', gen_random_uuid(), 'document_number', 'Z' || lpad(g::text, 8, '0'),
                          'sod_sha256', encode(sha256(int4send(g)), 'hex'), 'signer', repeat(md5(g::text), 24))
  from generate_series(1, $rows) g;
analyze;
SQL
size=$(psql -Atc "select pg_database_size('$db')")
# What replacing a database with the plain tools takes: drop the old copy, create, restore.
# (`marty db restore --force` replaces the service's database too; the copy a round replaces
# is the one the previous round restored, on both sides.)
plain_replace() {
  psql -q -c "drop database if exists plain_restore" -c "create database plain_restore" &&
    "$bin/pg_restore" --no-owner --no-acl --exit-on-error --single-transaction -d plain_restore "$1"
}
# Before round 1 both sides have a full copy to replace.
"$bin/pg_dump" -Fc -d $db -f "$state/plain.dump"; plain_replace "$state/plain.dump" >/dev/null
plain_b=(); marty_b=(); plain_r=(); marty_r=(); bytes=0
for i in $(seq "$rounds"); do
  rm -rf "$state/b"; mkdir -p "$state/b"
  t=$(secs "$bin/pg_dump" -Fc -d $db -f "$state/plain.dump"); plain_b+=("$t")
  t2=$(secs $marty db backup --service passport_engine --out "$state/b"); marty_b+=("$t2")
  bytes=$(stat -c %s "$state/b/passport_engine/$db.dump")
  t3=$(secs plain_replace "$state/plain.dump"); plain_r+=("$t3")
  t4=$(secs $marty db restore --service passport_engine --from "$state/b/passport_engine/$db.dump" --force); marty_r+=("$t4")
  echo "  round $i: backup plain ${t}s marty ${t2}s, restore plain ${t3}s marty ${t4}s" >&2
done
mb() { awk -v b="$1" -v s="$2" 'BEGIN {printf "%.1f", b / s / 1048576}'; }
rb=$(ratios plain_b marty_b); rr=$(ratios plain_r marty_r)
echo
echo "database $db: $(awk -v b="$size" 'BEGIN {printf "%.0f", b / 1048576}') MiB on disk, $rows outbox rows; dump $(awk -v b="$bytes" 'BEGIN {printf "%.1f", b / 1048576}') MiB"
echo
echo "| $rounds interleaved rounds | plain (MB/s of database, median) | marty (MB/s, median) | ratio marty/plain: median (range) | goal |"
echo "|---|---|---|---|---|"
echo "| backup | $(mb "$size" "$(echo "${plain_b[@]}" | median)") | $(mb "$size" "$(echo "${marty_b[@]}" | median)") | $(echo "$rb" | median) ($(echo "$rb" | range)) | ≥ 0.8 |"
echo "| restore | $(mb "$size" "$(echo "${plain_r[@]}" | median)") | $(mb "$size" "$(echo "${marty_r[@]}" | median)") | $(echo "$rr" | median) ($(echo "$rr" | range)) | ≥ 0.8 |"
