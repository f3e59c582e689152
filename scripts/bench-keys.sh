#!/usr/bin/env bash
# Figures for docs/PERFORMANCE.md (issue 11 §6): EF.SOD signing with the Document Signer's key
# in a PKCS#11 token (SoftHSM2) against the envelope store (key in the process), both in the
# same benchmark process, ROUNDS short rounds; prints per key type the median SODs/s of each
# side and the median ratio pkcs11/envelope with its range.
#   scripts/bench-keys.sh [ROUNDS] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
secs=${2:-3}
scripts/ensure-deps.sh
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/tokens"
printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' "$work/tokens" > "$work/softhsm2.conf"
export SOFTHSM2_CONF="$work/softhsm2.conf"
export MARTY_BENCH_PKCS11_TOKEN=marty-bench MARTY_BENCH_PKCS11_PIN=bench-pin-1234
softhsm2-util --init-token --free --label marty-bench --so-pin bench-so-1234 --pin "$MARTY_BENCH_PKCS11_PIN" >/dev/null
echo "building the benchmark (release)…" >&2
cargo bench -q -p marty-bench --bench keys --no-run >/dev/null 2>&1
for i in $(seq 1 "$rounds"); do
  echo "round $i/$rounds" >&2
  cargo bench -q -p marty-bench --bench keys -- --warm-up-time 1 --measurement-time "$secs" >/dev/null 2>&1
  python3 - "$work/rounds.jsonl" <<'PY'
import json, pathlib, sys
rows = {}
for est in pathlib.Path("target/criterion/sod_sign_store").glob("*/new/estimates.json"):
    rows[est.parts[-3]] = json.loads(est.read_text())["median"]["point_estimate"]
with open(sys.argv[1], "a") as f:
    f.write(json.dumps(rows) + "\n")
PY
done
python3 - "$work/rounds.jsonl" <<'PY'
import json, statistics, sys
rounds = [json.loads(l) for l in open(sys.argv[1])]
print(f"| SOD signing ({len(rounds)} rounds) | envelope store (SODs/s, median) | PKCS#11 SoftHSM2 (SODs/s, median) | ratio pkcs11/envelope: median (range) |")
print("|---|---|---|---|")
for key in ("p256", "rsa2048"):
    env = [1e9 / r[f"envelope_{key}"] for r in rounds]
    tok = [1e9 / r[f"pkcs11_{key}"] for r in rounds]
    ratios = [t / e for t, e in zip(tok, env)]
    print(f"| {key} | {statistics.median(env):,.0f} | {statistics.median(tok):,.0f} | "
          f"{statistics.median(ratios):.2f} ({min(ratios):.2f}–{max(ratios):.2f}) |")
PY
