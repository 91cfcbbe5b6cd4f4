#!/usr/bin/env bash
# Two server binaries side by side on small queries, to measure one change before and after it
# in one run (these machines are noisy: rounds alternate between the two servers).
#
#   bash benches/small_pair.sh BIN_BEFORE BIN_AFTER
#
# Builds nothing: give it two `passerelle` binaries (e.g. `cargo build --profile bench` of two
# commits, each copied aside). Generates the hub when absent (PAIR_HUB, default
# $CARGO_TARGET_DIR/pair-hub: PAIR_ROWS stays, 3 000 000), starts both on loopback
# (127.0.0.1:8471 and :8472, each with its own fresh audit trail on the same disk), takes a
# token of `chercheuse-diabete` from each development issuer, waits until the pseudonymised
# extracts the warm-up queries start are built, then runs benches/small_pair.py (PAIR_SQL,
# PAIR_N, PAIR_ROUNDS, PAIR_HABILITATION) and stops both. Figures: docs/benchmarks.md.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
HUB=${PAIR_HUB:-$TARGET/pair-hub}
ROWS=${PAIR_ROWS:-3000000}
SEED=20240101
OUT=$TARGET/pair-bench
A=$1
B=$2
mkdir -p "$OUT"
"$A" demo --generate-only --dir "$HUB" --rows "$ROWS" --seed "$SEED" >/dev/null

PIDS=()
stop() { kill -TERM "${PIDS[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap stop EXIT
specs=()
for side in A B; do
    bin=${!side}
    port=$([[ $side == A ]] && echo 8471 || echo 8472)
    dir=$OUT/$side
    rm -rf "$dir"
    mkdir -p "$dir/audit"
    PASSERELLE_LIMITS__QUERIES_PER_PRINCIPAL=256 PASSERELLE_LIMITS__QUERIES_PER_HABILITATION=256 \
        PASSERELLE_LIMITS__CHEAP_QUERY_SLOTS=64 PASSERELLE_AUDIT__DIR="$dir/audit" \
        "$bin" --log-format json demo --dir "$HUB" --rows "$ROWS" --seed "$SEED" \
        --listen "127.0.0.1:$port" >"$dir/server.out" 2>"$dir/server.err" &
    PIDS+=($!)
    issuer=
    for _ in $(seq 1 600); do
        issuer=$(sed -n 's/^development issuer (demo only, loopback): //p' "$dir/server.out" | head -n1)
        [[ -n $issuer ]] && break
        sleep 0.5
    done
    [[ -n $issuer ]] || { cat "$dir/server.err" >&2; exit 1; }
    token=$(curl -sf "$issuer/token/chercheuse-diabete" | sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p')
    curl -sf -o /dev/null --cacert "$HUB/tls/ca.pem" -H "Authorization: Bearer $token" \
        -H 'Content-Type: application/json' \
        -d '{"sql": "SELECT count(*) FROM sante.sejours WHERE nir IS NULL", "habilitation": "projet-diabete"}' \
        "https://127.0.0.1:$port/v1/query"
    specs+=("$side,https://127.0.0.1:$port,$token,${PIDS[-1]}")
done
quiet=0
while ((quiet < 3)); do
    if compgen -G "$HUB/extracts/*.tmp-*" >/dev/null; then quiet=0; else quiet=$((quiet + 1)); fi
    sleep 1
done
echo "machine: $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg); A=$A B=$B"
python3 "$ROOT/benches/small_pair.py" "$HUB/tls/ca.pem" "${specs[@]}"
