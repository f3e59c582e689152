#!/usr/bin/env bash
# Figures for docs/PERFORMANCE.md (issue 4): relay throughput against raw JetStream
# publish-with-ack from the same client, and commit-to-consumer latency at a steady rate.
# Uses a release build, a fresh private PostgreSQL and a fresh private nats-server.
# Usage: scripts/bench-events.sh [events] [rate] [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
events=${1:-10000}; rate=${2:-200}; seconds=${3:-15}
cargo build -q --release -p marty-cli
marty=$PWD/target/release/marty
state=$(mktemp -d /tmp/marty-bench-events-XXXXXX)
chmod 755 "$state"
export MARTY_STATE_DIR=$state MARTY_ENV=development
unset DB_HOST DB_PORT MARTY_ADMIN_DATABASE_URL DB_USER DB_PASSWORD MARTY_NATS_URL
trap '$marty dev nats stop >/dev/null 2>&1 || true; $marty dev postgres stop >/dev/null 2>&1 || true; rm -rf "$state"' EXIT
$marty dev postgres start >/dev/null
$marty dev nats start >/dev/null
$marty db setup >/dev/null
$marty db migrate >/dev/null
$marty events bench --events "$events" --rate "$rate" --seconds "$seconds"
