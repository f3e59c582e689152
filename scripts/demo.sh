#!/usr/bin/env bash
# `make demo`: the database part of Marty on this machine, from nothing to a proven isolation.
set -euo pipefail
cd "$(dirname "$0")/.."
marty=target/debug/marty
step() { printf '\n==> %s\n' "$*"; }

step "Starting a private PostgreSQL under .marty/postgres (scram-sha-256, loopback only)"
$marty dev postgres start

step "marty db setup: roles, databases and hardening for csca, document_signer, passport_engine, pkd and marty_dev"
$marty db setup

step "marty db migrate: each service's migrations, run as its owner role"
$marty db migrate

step "marty db status"
$marty db status

step "marty db verify: every role tries every database with its real password"
$marty db verify

cat <<MSG

Done. Where things are:
  .marty/postgres/         the local PostgreSQL (data, socket, log; cluster.json holds its port)
  .marty/secrets.json      generated role passwords (mode 0600)
  config/development.yaml  the configuration in use; see it with: $marty config show

Try: $marty db verify --json | less,  $marty config show --service pkd
Stop the database with: make db-stop-test   (start it again with: make db-setup-test)
MSG
