#!/usr/bin/env bash
# Puts Prometheus' promtool into .venv/bin (the test suite checks and unit-tests
# deploy/prometheus/alerts.yml with it). Uses one on PATH if there is one; otherwise extracts it
# from Debian's `prometheus` package without installing the server. Safe to run repeatedly.
set -euo pipefail
dest="${1:-.venv/bin}"
mkdir -p "$dest"
[ -x "$dest/promtool" ] && exit 0
if command -v promtool >/dev/null 2>&1; then
  ln -sf "$(command -v promtool)" "$dest/promtool"
  exit 0
fi
command -v apt-get >/dev/null 2>&1 || { echo "promtool is missing: install Prometheus' promtool and put it on PATH" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "fetching promtool (Debian package prometheus, extracted only)"
( cd "$work" && { apt-get download prometheus >/dev/null 2>&1 || { apt-get update -qq && apt-get download prometheus >/dev/null 2>&1; }; } )
dpkg-deb -x "$work"/prometheus_*.deb "$work/x"
install -m 0755 "$work/x/usr/bin/promtool" "$dest/promtool"
"$dest/promtool" --version | head -1
