#!/usr/bin/env bash
# Flight SQL beside HTTPS on loopback, read by one Python client (pyarrow.flight and requests +
# pyarrow: benches/flight_vs_https.py): a small query's latency over a kept connection, and a
# large answer streamed whole (HTTPS Arrow IPC stream against Flight DoGet).
#
#   bash benches/flight.sh
#
# Does the set-up itself: builds the server (`bench` profile) unless PASSERELLE_BIN is given,
# generates the hub when absent (FLIGHT_ROWS stays, default 10500000), starts `passerelle demo`
# on 127.0.0.1:FLIGHT_PORT (its Flight SQL listener follows on a free port, read from the
# demo's output), fetches tokens from the development issuer, runs the client, stops the
# server. Settings: FLIGHT_HUB, FLIGHT_ROWS, FLIGHT_SEED, FLIGHT_PORT (8453), FLIGHT_EXPORT_ROWS
# (10000000), SMALL_REQUESTS (2000), EXPORTS (3), PASSERELLE_BIN. Figures:
# docs/benchmarks.md, "Flight SQL beside HTTPS".
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
ROWS=${FLIGHT_ROWS:-10500000}
HUB=${FLIGHT_HUB:-$TARGET/http-hub}
SEED=${FLIGHT_SEED:-20240101}
PORT=${FLIGHT_PORT:-8453}
EXPORT_ROWS=${FLIGHT_EXPORT_ROWS:-10000000}
BIN=${PASSERELLE_BIN:-$TARGET/release/passerelle}
OUT=$TARGET/flight-bench
mkdir -p "$OUT"

say() { printf '[flight.sh] %s\n' "$*" >&2; }
die() { say "FAILED: $*"; exit 1; }
((ROWS >= EXPORT_ROWS)) || die "FLIGHT_ROWS=$ROWS stays cannot give $EXPORT_ROWS rows"
python3 -c "import pyarrow.flight, requests" 2>/dev/null ||
    die "python3 needs pyarrow and requests (pip install -r tests/clients/requirements.txt)"

if [[ -z ${PASSERELLE_BIN:-} ]]; then
    say "building the server (bench profile; several minutes on two cores when stale)"
    (cd "$ROOT" && cargo build --profile bench --bin passerelle)
fi
[[ -x $BIN ]] || die "no server binary at $BIN"

say "hub $HUB ($ROWS stays, seed $SEED)"
"$BIN" demo --generate-only --dir "$HUB" --rows "$ROWS" --seed "$SEED"
cat "$HUB/data/sante/sejours.parquet" >/dev/null
rm -rf "$OUT/audit" && mkdir -p "$OUT/audit"

SERVER_PID=
stop() {
    if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID"
        wait "$SERVER_PID" 2>/dev/null || true
    fi
}
trap stop EXIT

say "starting the server on 127.0.0.1:$PORT"
PASSERELLE_LIMITS__MAX_RESULT_ROWS=$((2 * EXPORT_ROWS)) \
    PASSERELLE_LIMITS__MAX_RESULT_BYTES=$((16 * 1024 * 1024 * 1024)) \
    PASSERELLE_LIMITS__QUERY_TIMEOUT_SECS=900 \
    PASSERELLE_AUDIT__DIR="$OUT/audit" \
    "$BIN" --log-format json demo --dir "$HUB" --rows "$ROWS" --seed "$SEED" \
    --listen "127.0.0.1:$PORT" >"$OUT/server.out" 2>"$OUT/server.err" &
SERVER_PID=$!
ISSUER= FLIGHT=
for _ in $(seq 1 600); do
    ISSUER=$(sed -n 's/^development issuer (demo only, loopback): //p' "$OUT/server.out" | head -n1)
    FLIGHT=$(grep -o "grpc+tls://[0-9.:]*" "$OUT/server.out" | head -n1 || true)
    [[ -n $ISSUER && -n $FLIGHT ]] && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$OUT/server.err" >&2; die "the server stopped"; }
    sleep 0.5
done
[[ -n $ISSUER && -n $FLIGHT ]] || die "server did not start (no issuer or Flight address)"
token() {
    local t
    t=$(curl -sf "$ISSUER/token/$1" | sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p')
    [[ -n $t ]] || die "no token for $1 from $ISSUER"
    printf '%s' "$t"
}
say "HTTPS https://127.0.0.1:$PORT, Flight SQL $FLIGHT"
CA=$HUB/tls/ca.pem
TOKEN=$(token chercheuse-diabete)
EXPORT_TOKEN=$(token chercheur-emploi)
HUB=https://127.0.0.1:$PORT FLIGHT=$FLIGHT CA=$CA TOKEN=$TOKEN HABILITATION=projet-diabete \
    EXPORT_TOKEN=$EXPORT_TOKEN EXPORT_HABILITATION=projet-emploi \
    SQL=${FLIGHT_SQL:-"SELECT count(*) AS n FROM sante.sejours WHERE date_entree < DATE '2022-01-01'"} \
    EXPORT_SQL="SELECT * FROM sante.sejours LIMIT $EXPORT_ROWS" \
    python3 "$ROOT/benches/flight_vs_https.py" | tee "$OUT/result.txt"
