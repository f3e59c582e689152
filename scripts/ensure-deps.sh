#!/usr/bin/env bash
# Installs what `make demo` and `make test` need when it is missing, on Debian/Ubuntu:
# the PostgreSQL server binaries (initdb, pg_ctl, postgres), the OpenSSL headers and CLI (an
# independent verifier in the tests), Python with venv (for the Python oracle), nats-server
# (the event bus; Debian's package has JetStream), SoftHSM2 (the PKCS#11 token of the
# key-store tests), Chromium and npm (the console's browser tests: playwright-core and
# axe-core come from the npm registry into .venv/node).
# Everything else comes from crates.io through cargo. Safe to run repeatedly.
set -euo pipefail

have_pg() {
  [ -n "${MARTY_PG_BIN_DIR:-}" ] && [ -x "$MARTY_PG_BIN_DIR/pg_ctl" ] && return 0
  command -v pg_ctl >/dev/null 2>&1 && command -v initdb >/dev/null 2>&1 && return 0
  ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1
}

have_ssl_headers() {
  command -v pkg-config >/dev/null 2>&1 && pkg-config --exists openssl
}

have_nats() {
  [ -n "${MARTY_NATS_SERVER_BIN:-}" ] && [ -x "$MARTY_NATS_SERVER_BIN" ] && return 0
  command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ]
}

have_softhsm() {
  # SoftHSM2 is the PKCS#11 token the key-store tests initialise; its module is what they load.
  command -v softhsm2-util >/dev/null 2>&1 || return 1
  local module
  for module in /usr/lib/softhsm/libsofthsm2.so /usr/lib/*/softhsm/libsofthsm2.so; do
    [ -e "$module" ] && return 0
  done
  return 1
}

have_python_venv() {
  command -v python3 >/dev/null 2>&1 && python3 -c 'import ensurepip, venv' >/dev/null 2>&1
}

missing=()
have_pg || missing+=(postgresql)
have_ssl_headers || missing+=(libssl-dev pkg-config)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
have_python_venv || missing+=(python3 python3-venv)
have_nats || missing+=(nats-server)
have_softhsm || missing+=(softhsm2)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v npm >/dev/null 2>&1 || missing+=(npm)
command -v cargo >/dev/null 2>&1 || { echo "cargo is not installed: install Rust from https://rustup.rs first" >&2; exit 1; }

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "missing: ${missing[*]}; install them with your package manager (or set MARTY_PG_BIN_DIR to PostgreSQL's bin directory)" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "missing: ${missing[*]}; run as root or install them: apt-get install ${missing[*]}" >&2; exit 1; }
  SUDO=sudo
fi
echo "installing ${missing[*]} (apt-get)"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
