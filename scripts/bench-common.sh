# Shared start-up of the database benchmarks (sourced by bench-backup.sh and bench-split.sh):
# a release build, a private state directory with its own PostgreSQL cluster set up and
# migrated, PG* variables for the administrator, and helpers for timing and medians.
# Sets: marty (the binary), state (the directory, removed on exit), bin (PostgreSQL's bin dir).
cargo build -q --release -p marty-cli
marty=$PWD/target/release/marty
state=$(mktemp -d /tmp/marty-bench-XXXXXX)
chmod 755 "$state"
export MARTY_STATE_DIR=$state MARTY_ENV=development MARTY_CONFIG_DIR=$PWD/config
unset DB_HOST DB_PORT MARTY_ADMIN_DATABASE_URL DB_USER DB_PASSWORD MARTY_NATS_URL RUST_LOG
cleanup() { $marty dev postgres stop >/dev/null 2>&1 || true; rm -rf "$state"; }
trap cleanup EXIT
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
range() { tr ' ' '\n' | grep -v '^$' | sort -g | awk 'NR==1 {lo=$1} {hi=$1} END {printf "%s–%s", lo, hi}'; }
# Seconds a command takes (its output discarded; on failure its stderr is shown and we stop).
secs() { local s e; s=$(date +%s%N); "$@" >/dev/null 2>"$state/last.err" || { cat "$state/last.err" >&2; exit 1; }; e=$(date +%s%N); awk -v d=$(( e - s )) 'BEGIN {printf "%.3f", d / 1e9}'; }
# Per-round ratios a[j] / b[j] of two arrays named by $1 and $2.
ratios() { local -n a=$1 b=$2; for j in "${!a[@]}"; do awk -v p="${a[$j]}" -v m="${b[$j]}" 'BEGIN {printf "%.2f ", p / m}'; done; }

$marty dev postgres start >/dev/null
$marty db setup >/dev/null
$marty db migrate >/dev/null
eval "$(python3 -c 'import json,sys; c=json.load(open(sys.argv[1])); print("export PGHOST=%s PGPORT=%s PGUSER=%s PGPASSWORD=%s" % (c["host"], c["port"], c["admin_user"], c["admin_password"]))' "$state/postgres/cluster.json")"
export PGDATABASE=postgres
bin=$(dirname "$(readlink -f "$(command -v pg_ctl 2>/dev/null || ls -d /usr/lib/postgresql/*/bin/pg_ctl | sort -V | tail -1)")")
