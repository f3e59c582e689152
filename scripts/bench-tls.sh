#!/usr/bin/env bash
# Figures for docs/PERFORMANCE.md (issue 11 §6): what mutual TLS costs against plaintext, in
# one run. Release build, private PostgreSQL and nats-server, the CSCA restarted for every
# side of every round (MARTY_TLS=off, then mutual with `marty dev certs` certificates), and
# `marty bench connect` against it: COUNT health checks on one kept connection (per-call
# overhead) and COUNT on a new connection each (TCP + handshake). Prints per measure the
# median of each side and the median ratio mutual/off with its range.
#   scripts/bench-tls.sh [ROUNDS] [COUNT]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}; count=${2:-1000}
scripts/ensure-deps.sh
cargo build -q --release -p marty-cli
marty=$PWD/target/release/marty
state=$(mktemp -d /tmp/marty-bench-tls-XXXXXX)
chmod 755 "$state"
export MARTY_STATE_DIR=$state MARTY_ENV=development MARTY_CONFIG_DIR=$PWD/config
unset DB_HOST DB_PORT MARTY_ADMIN_DATABASE_URL DB_USER DB_PASSWORD MARTY_NATS_URL RUST_LOG MARTY_TLS MARTY_CSCA_URL
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
export MARTY_CSCA_GRPC_PORT=$(free_port) MARTY_CSCA_HTTP_PORT=$(free_port)
serve=
cleanup() {
  [ -n "$serve" ] && kill -TERM "$serve" 2>/dev/null && wait "$serve" 2>/dev/null || true
  $marty dev nats stop >/dev/null 2>&1 || true
  $marty dev postgres stop >/dev/null 2>&1 || true
  rm -rf "$state"
}
trap cleanup EXIT
$marty dev postgres start >/dev/null
$marty dev nats start >/dev/null
MARTY_TLS=off $marty db setup >/dev/null
MARTY_TLS=off $marty db migrate >/dev/null
$marty dev certs >/dev/null
side() { # mode → one JSON line
  MARTY_TLS=$1 $marty serve csca 2>>"$state/serve.log" &
  serve=$!
  for _ in $(seq 150); do curl -skf "http${2}://127.0.0.1:$MARTY_CSCA_HTTP_PORT/readyz" >/dev/null && break; sleep 0.2; done
  MARTY_TLS=$1 $marty bench connect --service csca --count "$count" --json | python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)))'
  kill -TERM "$serve"; wait "$serve" || true; serve=
}
for i in $(seq 1 "$rounds"); do
  echo "round $i/$rounds" >&2
  side off "" >>"$state/off.jsonl"
  side mutual s >>"$state/mutual.jsonl"
done
python3 - "$state/off.jsonl" "$state/mutual.jsonl" "$count" <<'PY'
import json, statistics, sys
off = [json.loads(l) for l in open(sys.argv[1])]
tls = [json.loads(l) for l in open(sys.argv[2])]
assert all(not r["tls"] for r in off) and all(r["tls"] for r in tls)
print(f"| {len(off)} interleaved rounds, {sys.argv[3]} calls each | plaintext (median) | mutual TLS (median) | ratio TLS/plaintext: median (range) |")
print("|---|---|---|---|")
for key, what in [("kept_p50_us", "health check on a kept connection, p50 (µs)"),
                  ("new_connection_p50_us", "new connection + health check, p50 (µs)")]:
    ratios = [t[key] / o[key] for o, t in zip(off, tls)]
    print(f"| {what} | {statistics.median(o[key] for o in off):,.0f} | {statistics.median(t[key] for t in tls):,.0f} | "
          f"{statistics.median(ratios):.2f} ({min(ratios):.2f}–{max(ratios):.2f}) |")
hs = [t["new_connection_p50_us"] - t["kept_p50_us"] - (o["new_connection_p50_us"] - o["kept_p50_us"]) for o, t in zip(off, tls)]
print(f"\nThe handshake alone (new-connection cost with TLS minus without, per round): median {statistics.median(hs):,.0f} µs (range {min(hs):,.0f}–{max(hs):,.0f})")
PY
