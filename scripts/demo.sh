#!/usr/bin/env bash
# `make demo`: Marty on this machine, from nothing to an issued and verified passport.
# Every step checks its result; the script stops with a non-zero exit at the first surprise.
set -euo pipefail
cd "$(dirname "$0")/.."
marty=target/debug/marty
state=${MARTY_STATE_DIR:-.marty}
out=$state/demo
vectors=../shared/vectors
step() { printf '\n==> %s\n' "$*"; }
fail() { printf '\nDEMO FAILED: %s\n' "$*" >&2; exit 1; }
# expect CODE CMD…: runs CMD, prints its output, fails unless it exits with CODE.
expect() {
  local want=$1; shift
  local code=0
  "$@" || code=$?
  [ "$code" = "$want" ] || fail "$* exited with $code, expected $want"
}

step "Starting a private PostgreSQL under $state/postgres (scram-sha-256, loopback only)"
$marty dev postgres start

step "marty db setup: roles, databases and hardening for csca, document_signer, passport_engine, pkd and marty_dev"
$marty db setup

step "marty db migrate: each service's migrations, run as its owner role"
$marty db migrate

step "Starting a private nats-server with JetStream under $state/nats (the event bus)"
$marty dev nats start

step "marty dev certs: a development CA and a certificate per service, operator and verifier (mutual TLS from now on)"
$marty dev certs
tls=$state/tls
# What curl presents to the services' HTTP listeners (the CLI finds the same files itself).
mtls=(--cacert "$tls/ca.crt" --cert "$tls/operator.crt" --key "$tls/operator.key")

step "Starting the four services (marty serve all; log in $state/serve.log)"
if [ -f "$state/serve.pid" ] && kill -0 "$(cat "$state/serve.pid")" 2>/dev/null; then
  echo "stopping the services of an earlier run first"
  kill -TERM "$(cat "$state/serve.pid")"
  while kill -0 "$(cat "$state/serve.pid")" 2>/dev/null; do sleep 0.2; done
fi
$marty serve all >"$state/serve.log" 2>&1 &
echo $! >"$state/serve.pid"
# The HTTP ports the configuration gives (9081, 9082, 9084, 9089 unless MARTY_*_HTTP_PORT say otherwise).
for port in "${MARTY_CSCA_HTTP_PORT:-9081}" "${MARTY_DOCUMENT_SIGNER_HTTP_PORT:-9082}" \
            "${MARTY_PASSPORT_ENGINE_HTTP_PORT:-9084}" "${MARTY_PKD_HTTP_PORT:-9089}"; do
  printf '  waiting for https://127.0.0.1:%s/readyz ' "$port"
  for i in $(seq 150); do
    if curl -sf "${mtls[@]}" "https://127.0.0.1:$port/readyz" >/dev/null; then echo ok; break; fi
    kill -0 "$(cat "$state/serve.pid")" 2>/dev/null || { cat "$state/serve.log" >&2; fail "the services exited (log above)"; }
    [ "$i" = 150 ] && fail "port $port not ready after 30 s (see $state/serve.log)"
    printf '.'; sleep 0.2
  done
done

step "marty csca create: the CSCA of Utopia (UT), key generated and sealed inside the CSCA service"
if [ "$($marty csca list --country UT --type csca --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')" = 0 ]; then
  $marty csca create --country UT --key ec:P-256:named
else
  echo "UT has a CSCA already:"; $marty csca list --country UT --type csca
fi

step "marty signer activate: a Document Signer key, its CSR certified by the CSCA"
$marty signer activate --country UT

step "The PKD learns UT's CSCA and CRL from the CSCA's events"
for i in $(seq 100); do
  if $marty pkd list --country UT >/dev/null 2>&1; then $marty pkd list --country UT; break; fi
  [ "$i" = 100 ] && fail "the PKD did not learn UT's CSCA within 20 s"
  sleep 0.2
done

step "marty passport issue: holder samples/holder.json, photo samples/face.jpg"
rm -rf "$out"
$marty passport issue --holder samples/holder.json --photo samples/face.jpg --out "$out/passport"

step "marty passport verify: Passive Authentication in the engine (expected: VALID)"
expect 0 $marty passport verify "$out/passport"

step "The same passport with one byte of DG1 changed (expected: INVALID, naming DG1)"
cp -r "$out/passport" "$out/tampered"
python3 - "$out/tampered/DG1.bin" <<'PY'
import sys
p = sys.argv[1]; b = bytearray(open(p, "rb").read()); b[-1] ^= 0x01; open(p, "wb").write(b)
PY
report=$($marty passport verify "$out/tampered" --json) && fail "the tampered passport verified"
echo "$report" | python3 -c '
import json, sys
r = json.load(sys.stdin)
dg1 = [d for d in r["data_groups"] if d["number"] == 1]
assert r["verdict"] == "INVALID" and dg1 and dg1[0]["status"] != "match", r
print("INVALID:", r["reason"]); print("  DG1:", dg1[0]["status"])'

if [ -d "$vectors" ]; then
  step "marty pkd import-ml: the real German master list, verified against Germany's root"
  $marty pkd import-ml "$vectors/masterlist/DE_ML_2026-05-28-08-28-45.ml" \
    --root "$vectors/masterlist/DE_ROOT_CA_CSCA07.cer" | head -3

  step "A real German passport (its EF.SOD and DG14) verified through the engine (expected: VALID)"
  mkdir -p "$out/de"
  cp "$vectors/sod/EF_SOD_DE.bin" "$vectors/dg/EF_DG14_DE.bin" "$out/de/"
  expect 0 $marty passport verify "$out/de"
else
  echo "($vectors not found: the German master list and passport are skipped)"
fi

step "marty pkd export-ml: the PKD signs the master list of what it trusts (its Master List Signer certified by UT's CSCA)"
rm -rf "$out/UT.ml" "$out/csca-UT"
$marty pkd export-ml --country UT --out "$out/UT.ml"
$marty csca list --country UT --type csca --out-dir "$out/csca-UT" >/dev/null
roots=()
for f in "$out"/csca-UT/*.der; do roots+=(--root "$f"); done
step "marty icao masterlist verify: the published list checked as a receiving State would (expected: VALID)"
expect 0 $marty icao masterlist verify "$out/UT.ml" "${roots[@]}"

step "marty db verify: every role tries every database with its real password"
$marty db verify --json-file "$state/isolation.json"

cat <<MSG

Done. Where things are:
  $out/passport/      the issued passport: EF_COM.bin, DG1.bin, DG2.bin, EF_SOD.bin
  $out/tampered/      the same with one byte of DG1 changed
  $out/UT.ml           the master list the PKD published (also GET /v1/pkd/masterlist)
  $state/serve.log     the services' log (pid in $state/serve.pid)
  $state/postgres/     the local PostgreSQL;  $state/nats/  the local nats-server
  $state/secrets.json  generated role passwords and key-encryption keys (mode 0600)
  $state/tls/          the development CA and the mutual-TLS certificates (keys 0600)

The operator console: http://${MARTY_CONSOLE_LISTEN:-127.0.0.1:9090}/  (read-only; it reads the services' APIs)
Try: $marty csca list,  $marty signer audit,  $marty passport list,  $marty pkd list --country DE
     curl -s ${mtls[*]} https://127.0.0.1:9084/metrics | head
     (every listener requires a client certificate from $tls/ca.crt: mutual TLS)
Stop everything with: make stop   (services, NATS and PostgreSQL)
MSG
