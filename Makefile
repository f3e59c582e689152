# Marty: the two commands are `make demo` and `make test`; the db-* targets are the ones users
# of the reference platform know. SERVICE=<id> limits a db target to one service.

SHELL := /bin/bash
CARGO ?= cargo
MARTY := target/debug/marty
SERVICE ?=
SERVICE_FLAG := $(if $(SERVICE),--service $(SERVICE),)

.PHONY: demo test lint deps build db-setup-test db-stop-test db-test-connections db-upgrade \
        db-migrate db-status db-verify db-setup

deps:
	@scripts/ensure-deps.sh

build: deps
	$(CARGO) build -p marty-cli

## demo: local PostgreSQL, setup, migrate, status and the isolation proof.
demo: build
	@scripts/demo.sh

## test: formatting, lints and the whole test suite (real PostgreSQL clusters it starts itself).
test: deps lint
	$(CARGO) test --workspace

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## db-setup-test: start the local PostgreSQL, then setup and migrate.
db-setup-test: build
	$(MARTY) dev postgres start
	$(MARTY) db setup $(SERVICE_FLAG)
	$(MARTY) db migrate $(SERVICE_FLAG)

## db-stop-test: stop the local PostgreSQL (data kept in .marty/postgres).
db-stop-test: build
	$(MARTY) dev postgres stop

db-setup: build
	$(MARTY) db setup $(SERVICE_FLAG)

db-test-connections: build
	$(MARTY) db test-connections

db-upgrade db-migrate: build
	$(MARTY) db migrate $(SERVICE_FLAG)

db-status: build
	$(MARTY) db status

db-verify: build
	$(MARTY) db verify
