#!/usr/bin/env bash
# Figures for docs/PERFORMANCE.md (issue 9), all from one run on one private PostgreSQL and
# nats-server with `marty serve all` (release build):
#   1. issuance and verification throughput (`marty bench`) against pgbench insert-only TPS at
#      the same concurrency on the same cluster, rounds interleaved;
#   2. warm verification against `openssl speed`'s single-verify rate for the DSC's algorithm
#      (ECDSA P-256), interleaved;
#   3. resident memory of each service idle and at its peak under load;
#   4. issuance with ~0 and with 1 million stored passports, each against pgbench in the same
#      rounds (the million inserted by SQL as copies of a real passport row, EF.SOD made
#      unique per row, DG2 left out: 1.5 GB instead of 9);
#   5. `marty pkd import-ldif` of a 30,000-DSC synthetic download (plus the German master
#      list) against the limit `openssl speed` (both cores) and `COPY` of the same rows imply,
#      and the second import of the same file.
# Usage: scripts/bench-platform.sh [rounds] [seconds per side] [concurrency] [dscs]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}; seconds=${2:-5}; concurrency=${3:-8}; dscs=${4:-30000}
cargo build -q --release -p marty-cli
marty=$PWD/target/release/marty
vectors=$(cd .. && pwd)/shared/vectors
state=$(mktemp -d /tmp/marty-bench-platform-XXXXXX)
chmod 755 "$state"
export MARTY_STATE_DIR=$state MARTY_ENV=development MARTY_CONFIG_DIR=$PWD/config
unset DB_HOST DB_PORT MARTY_ADMIN_DATABASE_URL DB_USER DB_PASSWORD MARTY_NATS_URL RUST_LOG
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
declare -A http
for s in CSCA DOCUMENT_SIGNER PASSPORT_ENGINE PKD; do
  export "MARTY_${s}_GRPC_PORT=$(free_port)"
  http[$s]=$(free_port); export "MARTY_${s}_HTTP_PORT=${http[$s]}"
done
serve=
cleanup() {
  [ -n "$serve" ] && kill -TERM "$serve" 2>/dev/null && wait "$serve" 2>/dev/null || true
  $marty dev nats stop >/dev/null 2>&1 || true
  $marty dev postgres stop >/dev/null 2>&1 || true
  rm -rf "$state"
}
trap cleanup EXIT
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
range() { tr ' ' '\n' | grep -v '^$' | sort -g | awk 'NR==1 {lo=$1} {hi=$1} END {printf "%s–%s", lo, hi}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", a / b}'; }

$marty dev postgres start >/dev/null
$marty dev nats start >/dev/null
$marty db setup >/dev/null
$marty db migrate >/dev/null
eval "$(python3 -c 'import json,sys; c=json.load(open(sys.argv[1])); print("export PGHOST=%s PGPORT=%s PGUSER=%s PGPASSWORD=%s" % (c["host"], c["port"], c["admin_user"], c["admin_password"]))' "$state/postgres/cluster.json")"
export PGDATABASE=postgres
$marty serve all --log-format json 2>"$state/serve.log" &
serve=$!
for s in "${!http[@]}"; do
  for _ in $(seq 150); do curl -sf "http://127.0.0.1:${http[$s]}/readyz" >/dev/null && break; sleep 0.2; done
done
rss() { # name=MB for each service process
  for pid in $(pgrep -P "$serve"); do
    name=$(tr '\0' ' ' </proc/"$pid"/cmdline | awk '{print $3}')
    printf '%s=%s ' "$name" "$(awk '/VmRSS/ {printf "%.1f", $2/1024}' /proc/"$pid"/status)"
  done
  echo
}
peak() { # samples RSS until the file $1 exists; prints the largest value per service
  declare -A max
  while [ ! -e "$1" ]; do
    for kv in $(rss); do
      n=${kv%%=*}; v=${kv##*=}
      if awk -v a="$v" -v b="${max[$n]:-0}" 'BEGIN {exit !(a > b)}'; then max[$n]=$v; fi
    done
    sleep 0.5
  done
  for n in "${!max[@]}"; do printf '%s=%s ' "$n" "${max[$n]}"; done; echo
}
sleep 2
idle=$(rss)
$marty csca create --country UT --key ec:P-256:named >/dev/null
$marty signer activate --key ec:P-256:named >/dev/null
for _ in $(seq 120); do $marty pkd list --country UT >/dev/null 2>&1 && break; sleep 0.5; done

# pgbench: an insert-only script on a table of its own in a database of its own.
psql -q -c 'create database bench_pgbench' >/dev/null
psql -q -d bench_pgbench -c 'create table t (id bigserial primary key, payload text not null, at timestamptz not null default now())'
echo "insert into t (payload) values ('benchmark row');" >"$state/insert.sql"
pgbench_tps() {
  pgbench -n -d bench_pgbench -c "$concurrency" -j 2 -T "$seconds" -f "$state/insert.sql" 2>/dev/null |
    awk '/^tps/ {print $3; exit}'
}
bench_rate() { # issue|verify → calls per second (fails loudly on any error)
  $marty bench "$1" --concurrency "$concurrency" --duration "$seconds" --json 2>/dev/null >"$state/bench.json"
  python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print("%.1f %.1f %.1f %.1f" % (r["per_second"], r["p50_ms"], r["p95_ms"], r["p99_ms"]))' "$state/bench.json"
}
openssl_verify() { # single-process ECDSA P-256 verifications per second
  openssl speed -seconds 2 ecdsap256 2>/dev/null | awk '/256 bits ecdsa \(nistp256\)/ {print $NF; exit}'
}

echo "rounds: $rounds × $seconds s per side, concurrency $concurrency" >&2
touch "$state/go"; rm -f "$state/stop"
peak "$state/stop" >"$state/peak" &
peaker=$!
issue_r=(); verify_r=(); warm_r=(); pg=(); issue_lat=(); verify_lat=()
for i in $(seq "$rounds"); do
  echo "round $i/$rounds" >&2
  p=$(pgbench_tps); pg+=("$p")
  read -r rate p50 p95 p99 < <(bench_rate issue); issue_r+=("$(ratio "$rate" "$p")"); issue_lat+=("$rate/s p50 $p50 p95 $p95 p99 $p99")
  p2=$(pgbench_tps); pg+=("$p2")
  read -r vrate v50 v95 v99 < <(bench_rate verify); verify_r+=("$(ratio "$vrate" "$p2")"); verify_lat+=("$vrate/s p50 $v50 p95 $v95 p99 $v99")
  o=$(openssl_verify); warm_r+=("$(ratio "$vrate" "$o")")
  echo "  pgbench $p / $p2 tps, issue ${issue_lat[-1]}, verify ${verify_lat[-1]}, openssl verify $o/s" >&2
done
touch "$state/stop"; wait "$peaker"

echo
echo "| figure ($rounds interleaved rounds, concurrency $concurrency) | median | range | goal |"
echo "|---|---|---|---|"
echo "| issuance / pgbench insert-only TPS | $(echo "${issue_r[@]}" | median) | $(echo "${issue_r[@]}" | range) | ≥ 0.10 |"
echo "| verification / pgbench insert-only TPS | $(echo "${verify_r[@]}" | median) | $(echo "${verify_r[@]}" | range) | ≥ 0.20 |"
echo "| warm verification through gRPC / openssl speed ecdsap256 verify (1 process) | $(echo "${warm_r[@]}" | median) | $(echo "${warm_r[@]}" | range) | ≥ 0.5 |"
echo
echo "per round: issue ${issue_lat[*]}"
echo "per round: verify ${verify_lat[*]}"
echo "pgbench tps per run: ${pg[*]}"
echo "RSS idle (MB): $idle"
echo "RSS peak under load (MB): $(cat "$state/peak")"

# 4. Issuance with a million stored passports.
base=$(psql -d marty_passport_engine -Atc 'select count(*) from passports')
echo "loading 1,000,000 passports by SQL (copies of a real row; ${base} stored before)…" >&2
t0=$(date +%s)
psql -q -d marty_passport_engine -v passports=1000000 -f scripts/fixtures/passports.sql
echo "loaded in $(( $(date +%s) - t0 )) s" >&2
after_r=(); before_r=("${issue_r[@]}")
for i in $(seq "$rounds"); do
  p=$(pgbench_tps)
  read -r rate _ _ _ < <(bench_rate issue); after_r+=("$(ratio "$rate" "$p")")
  echo "  1M round $i: issue $rate/s, pgbench $p tps" >&2
done
b=$(echo "${before_r[@]}" | median); a=$(echo "${after_r[@]}" | median)
echo
echo "| issuance / pgbench | median | range |"
echo "|---|---|---|"
echo "| ~0 passports stored | $b | $(echo "${before_r[@]}" | range) |"
echo "| 1,000,000 passports stored | $a | $(echo "${after_r[@]}" | range) |"
echo "| with 1M / without (goal within 10%) | $(ratio "$a" "$b") | |"

# 5. The PKD import of a download of the real one's size.
echo "generating the synthetic download ($dscs DSCs)…" >&2
(cd "$state" && $marty pkd make-test-ldif --dscs "$dscs" --include-ml "$vectors/masterlist/DE_ML_2026-05-28-08-28-45.ml" --out pkd.ldif --json >summary.json 2>/dev/null)
roots=(--root "$state/pkd.ldif.root.pem" --root "$vectors/masterlist/DE_ROOT_CA_CSCA07.cer")
secs() { local s e; s=$(date +%s%N); "$@" >/dev/null 2>&1; e=$(date +%s%N); awk -v d=$(( e - s )) 'BEGIN {printf "%.2f", d / 1e9}'; }
reset_pkd() { # forget what the import stored
  psql -q -d marty_pkd <<'SQL'
delete from master_list_entries;
delete from master_lists where direction = 'imported';
delete from crls where source = 'ldif';
delete from certificates where source = 'ldif';
delete from certificates where source = 'master_list';
SQL
}
limit_once() { # seconds openssl speed (2 processes) and COPY imply for the file's work
  python3 - "$state/summary.json" <<'PY'
import json, re, subprocess, sys
names = {"ec:P-256:explicit": "ecdsap256", "ec:P-256:named": "ecdsap256", "rsa:2048": "rsa2048",
         "rsa-pss:2048": "rsa2048", "rsa:3072": "rsa3072", "ec:P-384:explicit": "ecdsap384",
         "ec:brainpoolP256r1:explicit": "ecdsabrp256r1", "ec:brainpoolP384r1:explicit": "ecdsabrp384r1"}
counts = json.load(open(sys.argv[1]))["verifications"]
total = 0.0
for spec, n in counts.items():
    alg = names[spec]
    out = subprocess.run(["openssl", "speed", "-multi", "2", "-seconds", "1", alg],
                         capture_output=True, text=True).stdout
    rows = [l for l in out.splitlines() if re.match(r"^(rsa|\s*\d+ bits ecdsa)", l.strip()) or l.startswith("rsa ")]
    verify = float(rows[-1].split()[-1])
    total += n / verify
print(f"{total:.3f}")
PY
}
copy_once() { # seconds to COPY the stored rows into a scratch table of the same shape
  psql -q -d marty_pkd -c "\\copy (select * from certificates where source in ('ldif', 'master_list')) to '$state/rows.copy'"
  psql -q -d marty_pkd -c 'drop table if exists bench_copy' -c 'create table bench_copy (like certificates including all)'
  secs psql -q -d marty_pkd -c "\\copy bench_copy from '$state/rows.copy'"
  psql -q -d marty_pkd -c 'drop table bench_copy'
}
imp=(); lim=(); r=()
for i in $(seq 3); do
  reset_pkd
  t=$(secs $marty pkd import-ldif "$state/pkd.ldif" "${roots[@]}" --timeout 3600)
  v=$(limit_once); c=$(copy_once)
  l=$(awk -v a="$v" -v b="$c" 'BEGIN {printf "%.2f", a + b}')
  imp+=("$t"); lim+=("$l"); r+=("$(ratio "$l" "$t")")
  echo "  import round $i: $t s; limit $l s (verify $v s + COPY $c s)" >&2
done
again=$(secs $marty pkd import-ldif "$state/pkd.ldif" "${roots[@]}" --timeout 3600)
$marty pkd import-ldif "$state/pkd.ldif" "${roots[@]}" --json 2>/dev/null >"$state/again.json"
python3 - "$state/summary.json" "$state/again.json" <<'PY'
import json, sys
s, a = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
print(f"\nfile: {s['bytes'] / 1048576:.1f} MiB, {s['master_lists']} master lists, {s['cscas']} CSCAs of {s['countries']} countries, "
      f"{s['document_signers']} DSCs, {s['crls']} CRLs; CSCA keys {dict(s['csca_keys'])}")
print(f"second import: added {a['added']}, duplicates {a['duplicates']}, rejected {a['rejected_total']}")
PY
echo
echo "| PKD import (3 rounds) | median | range | goal |"
echo "|---|---|---|---|"
echo "| import-ldif, every signature verified, every item stored (s) | $(echo "${imp[@]}" | median) | $(echo "${imp[@]}" | range) | ≤ 60 |"
echo "| openssl speed + COPY limit / import time | $(echo "${r[@]}" | median) | $(echo "${r[@]}" | range) | ≥ 0.5 |"
echo "| second import of the same file (s) | $again | | fast no-op |"
