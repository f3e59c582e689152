# Marty: the two commands are `make demo` and `make test`; the db-* targets are the ones users
# of the reference platform know. SERVICE=<id> limits a db target to one service.

SHELL := /bin/bash
CARGO ?= cargo
MARTY := target/debug/marty
SERVICE ?=
SERVICE_FLAG := $(if $(SERVICE),--service $(SERVICE),)

VENV := .venv
ORACLE_STAMP := $(VENV)/.oracle-installed

.PHONY: demo test lint deps build stop oracle fuzz-smoke bench-db bench-icao bench-events bench-services bench-platform db-setup-test db-stop-test \
        db-test-connections db-upgrade db-migrate db-status db-verify db-setup

deps:
	@scripts/ensure-deps.sh

build: deps
	$(CARGO) build -p marty-cli

## demo: local PostgreSQL and NATS, the four services, a passport issued and verified.
demo: build
	@scripts/demo.sh

## test: formatting, lints, the whole test suite (real PostgreSQL clusters it starts itself,
## the openssl CLI and the Python oracle as independent verifiers) and a fuzzing smoke run.
test: deps lint oracle
	MARTY_PYTHON=$(abspath $(VENV))/bin/python $(CARGO) test --workspace --exclude marty-bench --no-fail-fast
	scripts/fuzz.sh 10

## oracle: the independent verifiers' virtualenv (asn1crypto + cryptography, grpcio, promtool)
## and the browser tools (playwright-core driving Debian's Chromium, axe-core) in .venv/node.
oracle: $(ORACLE_STAMP)

$(ORACLE_STAMP): scripts/oracle-requirements.txt scripts/ensure-promtool.sh scripts/browser-package.json
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r scripts/oracle-requirements.txt
	scripts/ensure-promtool.sh $(VENV)/bin
	mkdir -p $(VENV)/node && cp scripts/browser-package.json $(VENV)/node/package.json
	cd $(VENV)/node && npm install --no-audit --no-fund --silent
	touch $@

## fuzz-smoke: 10 s per fuzz target (FUZZ_SECONDS=300 for a longer run).
FUZZ_SECONDS ?= 10
fuzz-smoke:
	scripts/fuzz.sh $(FUZZ_SECONDS)

bench-db: build
	scripts/bench-db.sh

bench-icao:
	scripts/bench-icao.sh

bench-events: deps
	scripts/bench-events.sh

bench-services: deps
	scripts/bench-services.sh

bench-platform: deps
	scripts/bench-platform.sh

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

## stop: stop everything `make demo` started (PostgreSQL and NATS; their data stays in .marty/).
stop: build
	@if [ -f .marty/serve.pid ] && kill -0 $$(cat .marty/serve.pid) 2>/dev/null; then \
	  echo "stopping the services"; kill -TERM $$(cat .marty/serve.pid); \
	  while kill -0 $$(cat .marty/serve.pid) 2>/dev/null; do sleep 0.2; done; fi; rm -f .marty/serve.pid
	$(MARTY) dev nats stop
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
