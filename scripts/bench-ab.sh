#!/usr/bin/env bash
# A/B benchmark: the working tree against a git ref, on the same machine, rounds interleaved.
#   scripts/bench-ab.sh REF [FILTER] [ROUNDS] [SECONDS]
# e.g. scripts/bench-ab.sh efd5588 pa/ 5 3 — Passive Authentication before and after a change.
# Builds the criterion benches of both (REF in a temporary git worktree with its own target
# directory), then runs old, new, old, new, … ROUNDS times with SECONDS of measurement each,
# and prints per benchmark the median time of each side and the median ratio new/old with its
# range. Shared machines drift by 1.5× within minutes; interleaving makes both sides see the
# same drift, and the ratio, not the absolute figure, is what to read.
set -euo pipefail
cd "$(dirname "$0")/.."
ref=${1:?usage: scripts/bench-ab.sh REF [FILTER] [ROUNDS] [SECONDS]}
filter=${2:-pa/}
rounds=${3:-5}
secs=${4:-3}
work=$(mktemp -d)
trap 'git worktree remove --force "$work/old" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
git worktree add --detach "$work/old" "$ref" >/dev/null
# The old tree reads the test vectors beside itself.
ln -s "$(cd .. && pwd)/shared" "$work/shared"
# The old side builds into a target directory of its own that is kept, so a second comparison
# against the same ref does not build it again.
old_target="$PWD/target/bench-ab/$(git rev-parse --short "$ref")"
echo "building benches of $ref and of the working tree (release)…" >&2
(cd "$work/old" && CARGO_TARGET_DIR="$old_target" cargo bench -q -p marty-bench --no-run >/dev/null 2>&1)
cargo bench -q -p marty-bench --no-run >/dev/null 2>&1
run() { # side dir target
  (cd "$2" && CARGO_TARGET_DIR="$3" cargo bench -q -p marty-bench -- --warm-up-time 1 --measurement-time "$secs" "$filter" >/dev/null 2>&1)
  python3 - "$3/criterion" "$work/$1.jsonl" <<'PY'
import json, pathlib, sys
root, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
rows = {}
for est in root.glob("*/*/new/estimates.json"):
    rows[f"{est.parts[-4]}/{est.parts[-3]}"] = json.loads(est.read_text())["median"]["point_estimate"]
with out.open("a") as f:
    f.write(json.dumps(rows) + "\n")
PY
}
for i in $(seq 1 "$rounds"); do
  echo "round $i/$rounds" >&2
  run old "$work/old" "$old_target"
  run new "$PWD" "$PWD/target"
done
python3 - "$work/old.jsonl" "$work/new.jsonl" "$filter" <<'PY'
import json, statistics, sys
old = [json.loads(l) for l in open(sys.argv[1])]
new = [json.loads(l) for l in open(sys.argv[2])]
print(f"| benchmark ({len(old)} interleaved rounds) | before (µs, median) | after (µs, median) | ratio after/before: median (range) |")
print("|---|---|---|---|")
for name in sorted(old[0]):
    if not name.startswith(sys.argv[3].rstrip("/")):
        continue
    ratios = [n[name] / o[name] for o, n in zip(old, new) if name in n]
    print(f"| {name} | {statistics.median(o[name] for o in old) / 1e3:.1f} | "
          f"{statistics.median(n[name] for n in new) / 1e3:.1f} | "
          f"{statistics.median(ratios):.2f} ({min(ratios):.2f}–{max(ratios):.2f}) |")
PY
