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

step "Starting a private nats-server with JetStream under .marty/nats (the event bus)"
$marty dev nats start

step "marty events status: outbox backlog and dead letters per service, stream and consumer lag"
$marty events status

step "marty icao: Passive Authentication of a real passport (France) against its CSCA"
if [ -d ../shared/vectors ]; then
  pa=$(mktemp -d)
  cp ../shared/vectors/sod/EF_SOD_FR.bin ../shared/vectors/dg/EF_DG12_FR.bin ../shared/vectors/dg/EF_DG14_FR.bin "$pa"/
  $marty icao pa "$pa" --trust ../shared/vectors/csca --at 2026-01-15 || true
  rm -rf "$pa"
else
  echo "(../shared/vectors not found: skipped)"
fi

cat <<MSG

Done. Where things are:
  .marty/postgres/         the local PostgreSQL (data, socket, log; cluster.json holds its port)
  .marty/nats/             the local nats-server (JetStream store, log; state.json holds its URL)
  .marty/secrets.json      generated role passwords (mode 0600)
  config/development.yaml  the configuration in use; see it with: $marty config show

Try: $marty db verify --json | less,  $marty config show --service pkd
Stop everything with: make stop   (the database alone: make db-stop-test; start it again: make db-setup-test)
MSG
