#!/usr/bin/env bash
# The same hub served from local files and from an S3 bucket (issue #24), side by side in one
# run: the bucket is moto in server mode on loopback (tests/clients/requirements.txt), which
# keeps objects in memory and answers from Python, so the figures show what the gateway adds
# on a bucket (a version check a second, range reads over HTTP, local copies for lookups), not
# what a real S3 service costs (add its network round trips: a few ms per range read).
#
#   bash benches/object_storage.sh
#
# For each side in turn (never both at once): starts `passerelle demo` on the hub (the bucket
# side with PASSERELLE_DATA__URL, a credentials file and an empty local working folder),
# checks that each request answers 200, then sends it OS_REQUESTS times one after the other
# with oha (one connection, after 3 to warm up): (1) a count that the Parquet statistics
# answer, (2) ten rows, (3) a grouping over every stay (a whole scan), (4) one lookup by NIR
# (the CAF). Extracts are off on both sides (OS_EXTRACTS=true: on, both sides; each side then
# waits after its first query until its extracts are built: on the bucket, from a local copy
# of the object's version). Prints p50 and p99 per request and side, the ratio bucket/local,
# and how many requests the bucket served per request (from moto's log).
#
# Settings: OS_HUB (default $TARGET/os-hub), OS_ROWS (1000000 stays: moto holds the bucket in
# memory), OS_SEED, OS_REQUESTS (30), OS_PORT (8451), OS_MOTO_PORT (8452), OS_EXTRACTS
# (false), PASSERELLE_BIN (default the bench profile's binary, built when missing), OHA.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
HUB=${OS_HUB:-$TARGET/os-hub}
ROWS=${OS_ROWS:-1000000}
SEED=${OS_SEED:-20240101}
REQUESTS=${OS_REQUESTS:-30}
PORT=${OS_PORT:-8451}
MOTO_PORT=${OS_MOTO_PORT:-8452}
EXTRACTS=${OS_EXTRACTS:-false}
BIN=${PASSERELLE_BIN:-$TARGET/release/passerelle}
TOOLS=${OS_TOOLS:-/var/cache/passerelle/tools}
OUT=$TARGET/os-bench
mkdir -p "$OUT"

say() { printf '[object_storage.sh] %s\n' "$*" >&2; }
die() { say "FAILED: $*"; exit 1; }

command -v moto_server >/dev/null || die "moto_server is needed: pip install -r tests/clients/requirements.txt"
if [[ -z ${PASSERELLE_BIN:-} ]]; then
    say "building the server (bench profile)"
    (cd "$ROOT" && cargo build --profile bench --bin passerelle)
fi
OHA=${OHA:-$(command -v oha || echo "$TOOLS/bin/oha")}
[[ -x $OHA ]] || die "oha is needed (cargo install oha --locked --root $TOOLS)"

say "hub $HUB ($ROWS stays, seed $SEED)"
"$BIN" demo --generate-only --dir "$HUB" --rows "$ROWS" --seed "$SEED"
CA=$HUB/tls/ca.pem
BASE=https://127.0.0.1:$PORT

# --- the bucket ---------------------------------------------------------------------------
MOTO_PID=
SERVER_PID=
stop_server() {
    if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID"
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    SERVER_PID=
}
stop_all() {
    stop_server
    [[ -n $MOTO_PID ]] && kill "$MOTO_PID" 2>/dev/null || true
}
trap stop_all EXIT
moto_server -H 127.0.0.1 -p "$MOTO_PORT" >"$OUT/moto.log" 2>&1 &
MOTO_PID=$!
ENDPOINT=http://127.0.0.1:$MOTO_PORT
for _ in $(seq 1 100); do curl -s -o /dev/null "$ENDPOINT" && break; sleep 0.2; done
# The bucket and the data files, with boto3 (installed with moto).
python3 - "$ENDPOINT" "$HUB/data" <<'EOF' || die "cannot fill the bucket"
import pathlib, sys, boto3
endpoint, data = sys.argv[1], pathlib.Path(sys.argv[2])
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                  aws_access_key_id="bench", aws_secret_access_key="bench")
s3.create_bucket(Bucket="bench")
for path in sorted(data.rglob("*.parquet")):
    key = path.relative_to(data).as_posix()
    if not key.startswith("."):
        s3.upload_file(str(path), "bench", f"data/{key}")
EOF
CREDENTIALS=$OUT/s3-credentials
rm -f "$CREDENTIALS"
(umask 077 && printf 'AWS_ENDPOINT_URL=%s\nAWS_REGION=us-east-1\nAWS_ACCESS_KEY_ID=bench\nAWS_SECRET_ACCESS_KEY=bench\n' \
    "$ENDPOINT" >"$CREDENTIALS")
WORK=$OUT/bucket-work
rm -rf "$WORK" && mkdir -p "$WORK"

# --- one side ---------------------------------------------------------------------------------
NIR=$(python3 - "$HUB/data/social/allocataires.parquet" <<'EOF'
import sys, pyarrow.parquet as pq
print(pq.read_table(sys.argv[1], columns=["nir"]).column(0)[12345].as_py())
EOF
)
TRACE="context=Calcul%20du%20quotient%20familial&recipient=13000170500016&object=dossier-2026-0042"
body() { python3 -c 'import json, sys; print(json.dumps({"sql": sys.argv[1], "habilitation": "projet-emploi"}))' "$1"; }
declare -A SQL=(
    [count]="SELECT count(*) AS n FROM sante.sejours WHERE date_entree < DATE '2022-01-01'"
    [rows]="SELECT id_sejour, diagnostic, date_entree, cout FROM sante.sejours LIMIT 10"
    [scan]="SELECT region, count(*) AS n, avg(cout) AS cout FROM sante.sejours GROUP BY region"
)
NAMES="count rows scan lookup"

run_side() { # side extra-env...
    local side=$1
    shift
    say "starting the $side side"
    rm -rf "$OUT/extracts-$side"
    env "$@" PASSERELLE_PSEUDONYMISATION__EXTRACTS="$EXTRACTS" \
        PASSERELLE_PSEUDONYMISATION__EXTRACTS_DIR="$OUT/extracts-$side" \
        PASSERELLE_AUDIT__DIR="$OUT/audit-$side" \
        PASSERELLE_LIMITS__QUERIES_PER_PRINCIPAL=256 PASSERELLE_LIMITS__QUERIES_PER_HABILITATION=256 \
        "$BIN" --log-format json demo --dir "$HUB" --rows "$ROWS" --seed "$SEED" \
        --listen "127.0.0.1:$PORT" >"$OUT/server-$side.out" 2>"$OUT/server-$side.err" &
    SERVER_PID=$!
    local issuer=
    for _ in $(seq 1 600); do
        issuer=$(sed -n 's/^development issuer (demo only, loopback): //p' "$OUT/server-$side.out" | head -n1)
        [[ -n $issuer ]] && break
        kill -0 "$SERVER_PID" 2>/dev/null || { cat "$OUT/server-$side.err" >&2; die "the $side server stopped"; }
        sleep 0.5
    done
    [[ -n $issuer ]] || die "the $side server did not start"
    local researcher caf
    researcher=$(curl -sf "$issuer/token/chercheur-emploi" | sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p')
    caf=$(curl -sf "$issuer/token/caf" | sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p')
    for name in $NAMES; do
        local args=()
        if [[ $name == lookup ]]; then
            args=(-H "Authorization: Bearer $caf" "$BASE/v1/lookup/social.allocataires/$NIR?$TRACE")
            status=$(curl -s -o "$OUT/$side-$name.json" -w '%{http_code}' --cacert "$CA" "${args[@]}")
        else
            args=(-m POST -H "Authorization: Bearer $researcher" -H 'Content-Type: application/json'
                -d "$(body "${SQL[$name]}")" "$BASE/v1/query")
            status=$(curl -s -o "$OUT/$side-$name.json" -w '%{http_code}' --cacert "$CA" \
                -H "Authorization: Bearer $researcher" -H 'Content-Type: application/json' \
                -d "$(body "${SQL[$name]}")" "$BASE/v1/query")
        fi
        [[ $status == 200 ]] || die "$side $name answered $status: $(cat "$OUT/$side-$name.json")"
        if [[ $EXTRACTS == true && $name != lookup ]]; then
            # The first query started the extract's build (on the bucket, after its copy).
            for _ in $(seq 1 240); do
                grep -q 'pseudonymised extract built' "$OUT/server-$side.out" "$OUT/server-$side.err" && break
                sleep 0.5
            done
            grep -q 'pseudonymised extract built' "$OUT/server-$side.out" "$OUT/server-$side.err" ||
                die "the $side side built no extract"
        fi
        # Warm: the first requests read footers and (on the bucket) make the lookup's copy.
        "$OHA" --no-tui --output-format json --cacert "$CA" -c 1 -n 3 "${args[@]}" >/dev/null
        local before
        before=$(grep -c '" 20[06] ' "$OUT/moto.log" || true)
        "$OHA" --no-tui --output-format json --cacert "$CA" -c 1 -n "$REQUESTS" "${args[@]}" \
            >"$OUT/$side-$name.oha.json"
        echo $(($(grep -c '" 20[06] ' "$OUT/moto.log" || true) - before)) >"$OUT/$side-$name.store-requests"
    done
    stop_server
}

run_side local
run_side bucket PASSERELLE_DATA__URL=s3://bench/data PASSERELLE_DATA__CREDENTIALS_FILE="$CREDENTIALS" \
    PASSERELLE_DATA__DIR="$WORK"

python3 - "$OUT" $NAMES <<'EOF'
import json, sys
out, names = sys.argv[1], sys.argv[2:]
def figures(side, name):
    d = json.load(open(f"{out}/{side}-{name}.oha.json"))
    p = d["latencyPercentiles"]
    ok = d["statusCodeDistribution"]
    return p["p50"] * 1000, p["p99"] * 1000, ok
print("| request | local p50 | local p99 | bucket p50 | bucket p99 | bucket/local p50 | store requests per request |")
print("|---|---|---|---|---|---|---|")
for name in names:
    l50, l99, lok = figures("local", name)
    b50, b99, bok = figures("bucket", name)
    assert set(lok) == {"200"} and set(bok) == {"200"}, (name, lok, bok)
    n = sum(lok.values())
    store = int(open(f"{out}/bucket-{name}.store-requests").read()) / n
    print(f"| {name} | {l50:.2f} ms | {l99:.2f} ms | {b50:.2f} ms | {b99:.2f} ms | {b50 / l50:.1f} | {store:.1f} |")
EOF
