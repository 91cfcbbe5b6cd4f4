#!/usr/bin/env bash
# Lookup benchmark ("tell us once"): GET /v1/lookup/social.allocataires/{nir} over HTTPS
# (loopback, keep-alive) on a demo hub whose social.allocataires holds 10 million rows.
#
# Does everything from a clean checkout: builds the server (`bench` profile) and installs oha (outside
# the repository) when missing, generates the hub when absent, samples real NIRs from the
# allocataires file, starts `passerelle demo`, fetches the `caf` token from the development
# issuer, waits until the server is idle (a first start builds the statistical secret's
# tables: benches/wait_idle.sh), runs the loads, prints a table, stops the server.
#
#   bash benches/lookup.sh
#
# Settings (environment): LOOKUP_HUB (hub folder, default $TARGET/lookup-hub), LOOKUP_ROWS
# (stays; 44500000 gives 10 000 000 allocataires), LOOKUP_RATE (fixed-rate run, req/s),
# LOOKUP_DURATION (per run), LOOKUP_CONNECTIONS (saturation runs), LOOKUP_KEYS (sampled keys),
# LOOKUP_PORT, PASSERELLE_BIN, OHA, LOOKUP_TOOLS (where oha and a Python venv with pyarrow go).
# Outputs (oha JSON, server log, sampled URLs) go to $TARGET/lookup-bench. Figures and what
# limits them: docs/benchmarks.md, "Lookups".
#
# The rate limiter is opened wide (PASSERELLE_LIMITS__LOOKUP_RATE_FACTOR=100000, i.e.
# 25 000 000 lookups/min for the CAF habilitation) so that it never refuses: this measures the
# lookup path, not the quota. Everything runs on this machine: the load generator shares the
# server's cores.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
HUB=${LOOKUP_HUB:-$TARGET/lookup-hub}
ROWS=${LOOKUP_ROWS:-44500000}
SEED=${LOOKUP_SEED:-20240101}
RATE=${LOOKUP_RATE:-1000}
DURATION=${LOOKUP_DURATION:-20s}
CONNECTIONS=${LOOKUP_CONNECTIONS:-50}
KEYS=${LOOKUP_KEYS:-10000}
PORT=${LOOKUP_PORT:-8443}
TOOLS=${LOOKUP_TOOLS:-/var/cache/passerelle/tools}
BIN=${PASSERELLE_BIN:-$TARGET/release/passerelle}
OUT=$TARGET/lookup-bench
mkdir -p "$OUT"

say() { printf '[lookup.sh] %s\n' "$*" >&2; }

# --- tools -----------------------------------------------------------------------------------
if [[ -z ${PASSERELLE_BIN:-} ]]; then
    # The `bench` profile (release without LTO, see Cargo.toml) lands in target/release too;
    # a no-op when the binary is current.
    say "building the server (bench profile; several minutes on two cores when stale)"
    (cd "$ROOT" && cargo build --profile bench --bin passerelle)
fi
OHA=${OHA:-$(command -v oha || echo "$TOOLS/bin/oha")}
if [[ ! -x $OHA ]]; then
    say "installing oha into $TOOLS"
    cargo install oha --locked --root "$TOOLS"
    OHA=$TOOLS/bin/oha
fi
PYTHON=python3
if ! python3 -c 'import pyarrow' 2>/dev/null; then
    if [[ ! -x $TOOLS/venv/bin/python ]] || ! "$TOOLS/venv/bin/python" -c 'import pyarrow' 2>/dev/null; then
        say "installing pyarrow into $TOOLS/venv (to sample keys)"
        python3 -m venv "$TOOLS/venv"
        "$TOOLS/venv/bin/pip" install -q pyarrow
    fi
    PYTHON=$TOOLS/venv/bin/python
fi

# --- hub ---------------------------------------------------------------------------------------
# `demo --generate-only` reuses the folder when its rows and seed match (see src/demo/hub.rs).
say "hub $HUB ($ROWS stays, seed $SEED)"
"$BIN" demo --generate-only --dir "$HUB" --rows "$ROWS" --seed "$SEED"
CA=$HUB/tls/ca.pem
BASE=https://127.0.0.1:$PORT
QUERY='context=Calcul%20QF&recipient=13000170500016&object=dossier-1'

# --- keys --------------------------------------------------------------------------------------
# KEYS real NIRs drawn uniformly from the file (so requests hit different pages), and KEYS
# NIR-shaped keys (pass the column's pattern) that are in no row (404).
if [[ ! -s $OUT/known.txt || ! -s $OUT/unknown.txt || $OUT/known.txt -ot $HUB/data/social/allocataires.parquet ]]; then
    say "sampling $KEYS known and $KEYS unknown keys"
    "$PYTHON" - "$HUB/data/social/allocataires.parquet" "$KEYS" "$OUT" "$BASE" "$QUERY" <<'EOF'
import random, sys
import pyarrow.compute as pc
import pyarrow.parquet as pq
path, n, out, base, query = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
nir = pq.read_table(path, columns=["nir"]).column("nir")
rng = random.Random(20240101)
known = [nir[i].as_py() for i in rng.sample(range(len(nir)), n)]
candidates = [f"{rng.choice('12')}{rng.randrange(10**12):012d}" for _ in range(2 * n)]
present = pc.is_in(candidates, value_set=nir)
unknown = [c for c, p in zip(candidates, present.to_pylist()) if not p][:n]
for name, keys in (("known", known), ("unknown", unknown)):
    with open(f"{out}/{name}.txt", "w") as f:
        for k in keys:
            f.write(f"{base}/v1/lookup/social.allocataires/{k}?{query}\n")
print(f"{len(nir)} rows; {len(known)} known, {len(unknown)} unknown keys", file=sys.stderr)
EOF
fi

# --- server ------------------------------------------------------------------------------------
SERVER_PID=
stop() {
    if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID"
        wait "$SERVER_PID" 2>/dev/null || true
    fi
}
trap stop EXIT

say "starting the server on $BASE"
PASSERELLE_LIMITS__LOOKUP_RATE_FACTOR=100000 \
    "$BIN" --log-format json demo --dir "$HUB" --rows "$ROWS" --seed "$SEED" \
    --listen "127.0.0.1:$PORT" >"$OUT/server.out" 2>"$OUT/server.err" &
SERVER_PID=$!
STARTED=$(date +%s.%N)
ISSUER=
for _ in $(seq 1 600); do
    ISSUER=$(sed -n 's/^development issuer (demo only, loopback): //p' "$OUT/server.out" | head -n1)
    [[ -n $ISSUER ]] && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$OUT/server.err" >&2; exit 1; }
    sleep 0.5
done
[[ -n $ISSUER ]] || { say "server did not start"; exit 1; }
READY=$(date +%s.%N)
RSS_START=$(awk '/^VmRSS/ {print $2}' "/proc/$SERVER_PID/status")
TOKEN=$(curl -sf "$ISSUER/token/caf" | sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p')
[[ -n $TOKEN ]] || { say "no token from $ISSUER"; exit 1; }
FIRST=$(head -n1 "$OUT/known.txt")
STATUS=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$CA" -H "Authorization: Bearer $TOKEN" "$FIRST")
[[ $STATUS == 200 ]] || { say "first lookup answered $STATUS"; exit 1; }
# A hub's first start builds its statistical secret's tables in the background (minutes at
# 44.5 M stays, both cores): the loads start once it is done.
source "$ROOT/benches/wait_idle.sh"
say "$(wait_idle "$SERVER_PID")"

# --- loads -------------------------------------------------------------------------------------
# oha keeps connections alive (HTTP/1.1) and draws each request's URL from the file at random.
# Latency is measured from the moment a request is sent (no --latency-correction).
run() { # name urls-file extra-oha-args...
    local name=$1 urls=$2
    shift 2
    "$OHA" --no-tui --output-format json --cacert "$CA" -H "Authorization: Bearer $TOKEN" \
        -z "$DURATION" --urls-from-file "$@" "$urls" >"$OUT/$name.json"
}
say "warm-up (5 s)"
DURATION=5s run warmup "$OUT/known.txt" -c "$CONNECTIONS"
say "fixed rate: $RATE req/s for $DURATION, known keys"
run rate-known "$OUT/known.txt" -q "$RATE" -c 10
say "fixed rate: $RATE req/s for $DURATION, unknown keys"
run rate-unknown "$OUT/unknown.txt" -q "$RATE" -c 10
say "saturation: $CONNECTIONS connections for $DURATION, known keys"
run sat-known "$OUT/known.txt" -c "$CONNECTIONS"
RSS_LOADED=$(awk '/^VmRSS/ {print $2}' "/proc/$SERVER_PID/status")
say "saturation: $CONNECTIONS connections for $DURATION, unknown keys"
run sat-unknown "$OUT/unknown.txt" -c "$CONNECTIONS"
RSS_END=$(awk '/^VmRSS/ {print $2}' "/proc/$SERVER_PID/status")
stop
SERVER_PID=

# --- table -------------------------------------------------------------------------------------
echo
echo "machine: $(nproc) cores, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n1); oha $("$OHA" --version | awk '{print $2}')"
echo "start (process start to serving, incl. index build): $(awk -v a="$STARTED" -v b="$READY" 'BEGIN {printf "%.1f s", b - a}')"
"$PYTHON" - "$OUT/server.err" <<'EOF'
import json, sys
for line in open(sys.argv[1]):
    if "lookup index built" not in line:
        continue
    e = json.loads(line)
    f = e.get("fields", e)
    mib = int(f.get("memory_bytes", 0)) / 2**20
    print(f"index {f.get('dataset')}.{f.get('column')}: {f.get('rows')} rows, "
          f"{mib:.1f} MiB, built in {f.get('build_ms')} ms")
EOF
echo "server RSS: ${RSS_START} kB after start, ${RSS_LOADED} kB after the known-key saturation run, ${RSS_END} kB at the end"
echo
"$PYTHON" - "$OUT" <<'EOF'
import json, sys
out = sys.argv[1]
print(f"{'run':<34} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}  statuses")
for name, label in (("rate-known", "1 fixed rate, known keys"),
                    ("rate-unknown", "1 fixed rate, unknown keys (404)"),
                    ("sat-known", "2 saturation, known keys"),
                    ("sat-unknown", "2 saturation, unknown keys (404)")):
    r = json.load(open(f"{out}/{name}.json"))
    s, p = r["summary"], r["latencyPercentiles"]
    codes = ", ".join(f"{k}: {v}" for k, v in sorted(r.get("statusCodeDistribution", {}).items()))
    for error, n in sorted(r.get("errorDistribution", {}).items()):
        # "aborted due to deadline": requests in flight when the run's time was up.
        codes += f"; {error}: {n}"
    print(f"{label:<34} {s['requestsPerSec']:>8.0f} {p['p50'] * 1e3:>8.2f} {p['p99'] * 1e3:>8.2f} "
          f"{s['slowest'] * 1e3:>8.2f}  {codes}")
EOF
