#!/usr/bin/env bash
# Figures for docs/PERFORMANCE.md (issue 3): Marty's SOD signing and Passive Authentication
# against `openssl speed` for the same primitives, measured in one run on this machine, and the
# German master list's parse + verify time. Usage: scripts/bench-icao.sh [seconds per bench]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# openssl first and last, so that both sides see the same machine (the figures use the mean).
speed() { openssl speed -seconds "$secs" ecdsap256 ecdsabrp256r1 ecdsabrp384r1 rsa2048 rsa4096 2>/dev/null; }
speed > "$out/speed1.txt"
cargo bench -q -p marty-bench -- --warm-up-time 2 --measurement-time "$secs" >/dev/null
speed > "$out/speed2.txt"

python3 - "$out" <<'PY'
import json, re, sys, pathlib
out = pathlib.Path(sys.argv[1])
def parse(path):
    t = path.read_text()
    r = {}
    for m in re.finditer(r"rsa (\d+) bits\s+\S+s\s+\S+s\s+([\d.]+)\s+([\d.]+)", t):
        r[f"rsa{m[1]}"] = (float(m[2]), float(m[3]))
    for m in re.finditer(r"ecdsa \((\w+)\)\s+\S+s\s+\S+s\s+([\d.]+)\s+([\d.]+)", t):
        r[m[1]] = (float(m[2]), float(m[3]))
    return r
a, b = parse(out / "speed1.txt"), parse(out / "speed2.txt")
speed = {k: ((a[k][0] + b[k][0]) / 2, (a[k][1] + b[k][1]) / 2) for k in a}
def ns(group, name):
    est = json.loads(pathlib.Path(f"target/criterion/{group}/{name}/new/estimates.json").read_text())
    return est["median"]["point_estimate"]
print("| SOD signing | Marty (SODs/s) | openssl speed sign/s | ratio (goal ≥ 0.7) |")
print("|---|---|---|---|")
for name, key in [("p256", "nistp256"), ("brainpoolP256r1", "brainpoolP256r1"), ("rsa2048", "rsa2048")]:
    marty = 1e9 / ns("sod_sign", name)
    print(f"| {name} | {marty:,.0f} | {speed[key][0]:,.0f} | {marty / speed[key][0]:.2f} |")
print()
print("| Passive Authentication | Marty (PA/s) | limit from openssl speed (2 verifications) | ratio (goal ≥ 0.5) |")
print("|---|---|---|---|")
# SOD signature with the DSC key, then the DSC's signature with the CSCA key.
for country, (dsc, csca) in {"FR": ("rsa2048", "rsa4096"), "AT": ("brainpoolP256r1", "brainpoolP384r1"), "SG": ("rsa2048", "rsa4096")}.items():
    limit = 1 / (1 / speed[dsc][1] + 1 / speed[csca][1])
    marty = 1e9 / ns("pa", country)
    print(f"| EF_SOD_{country} ({dsc} DSC, {csca} CSCA) | {marty:,.0f} | {limit:,.0f} | {marty / limit:.2f} |")
print()
print(f"German master list (588 certificates) parse + verify: {ns('masterlist', 'de_parse_verify') / 1e6:.1f} ms (median)")
PY
