#!/usr/bin/env bash
# End to end over HTTPS on loopback: POST /v1/query through the whole server (TLS, token
# validation, policy plan, secure session, DataFusion, durable audit trail, encoding).
#
#   (1) small queries as the researcher `chercheuse-diabete` (habilitation projet-diabete):
#       latency (p50/p99) at a fixed rate, then throughput at saturation, with oha (HTTP/1.1,
#       keep-alive). Two queries: HTTP_SQL, which the Parquet statistics answer without reading
#       a data page (the gateway's fixed cost plus planning), and HTTP_SQL_ROWS, which reads and
#       returns a few rows.
#   (2) exports of HTTP_EXPORT_ROWS (10 000 000) rows as CSV and as Arrow IPC stream with curl,
#       body to /dev/null: wall time, rows/s, MB/s, and the server's RSS before and peak RSS
#       during each export (peak reset with `echo 5 > /proc/$PID/clear_refs`, read from
#       VmHWM), and the anonymous part of it (RssAnon: VmRSS also counts the binary's code
#       pages, tens of MB that the first queries fault in), before and at its peak, sampled
#       every 50 ms. The row count of a streamed answer is not in its headers (docs/api.md), so it is
#       read from the audit trail's outcome record of the request (`"stage": "outcome"`), and a cut answer
#       would end the transfer with an error: the script fails unless curl succeeds and the
#       record says exactly HTTP_EXPORT_ROWS rows, not truncated.
#
# Does everything from a clean checkout: builds the server (`bench` profile) and installs oha
# (outside the repository) when missing, generates the hub when absent, starts `passerelle
# demo` on 127.0.0.1:HTTP_PORT, fetches tokens from the development issuer, checks every query
# answers 200 before timing it, runs the loads and exports, prints a table, stops the server.
#
#   bash benches/http.sh
#
# Settings (environment): HTTP_HUB (hub folder, default $TARGET/http-hub), HTTP_ROWS (stays,
# default 10500000; sante.sejours has exactly HTTP_ROWS rows), HTTP_SEED, HTTP_PORT (8444),
# HTTP_RATE (fixed-rate run, req/s, 200), HTTP_DURATION (per oha run, 20s), HTTP_CONNECTIONS
# (saturation runs, 32), HTTP_SQL, HTTP_SQL_ROWS (the two small queries), HTTP_EXPORT_ROWS
# (10000000), HTTP_EXPORT_SQL (default `SELECT * FROM sante.sejours LIMIT $HTTP_EXPORT_ROWS`),
# HTTP_EXPORT_PERSONA and HTTP_EXPORT_HABILITATION (chercheur-emploi and projet-emploi, see
# below), HTTP_EXPORTS (formats, "csv arrow"), HTTP_CURL_HTTP (curl's protocol flag for the
# exports: --http1.1 like oha, or --http2), HTTP_AUDIT_DIR (the audit trail, default
# $TARGET/http-bench/audit, emptied at each run; point it at a tmpfs to see what the trail's
# fsyncs cost), PASSERELLE_BIN, OHA, HTTP_TOOLS (where oha is installed when missing). Outputs
# (oha JSON, curl timings, server log) go to $TARGET/http-bench. Figures and what limits them:
# docs/benchmarks.md, "End to end over HTTPS".
#
# Exports run as `chercheur-emploi` (habilitation projet-emploi: every region, `nir`
# pseudonymised, `nom` hidden): projet-diabete keeps only region 84 (about 12 % of the stays),
# so 10 M of its rows would need 84 M stays, over the generator's 50 M cap. The server runs
# with its default limits except the three an export of 10 M rows needs:
# PASSERELLE_LIMITS__MAX_RESULT_ROWS (2 × HTTP_EXPORT_ROWS), ..._MAX_RESULT_BYTES (16 GiB),
# ..._QUERY_TIMEOUT_SECS (600), and PASSERELLE_AUDIT__DIR; and, since oha is one researcher
# on 32 connections, the shares and the cheap lane's slots are opened wide
# (..._QUERIES_PER_PRINCIPAL, ..._QUERIES_PER_HABILITATION 256, ..._CHEAP_QUERY_SLOTS 64): the
# figures measure the request path, not admission (benches/soak.sh measures that).
# Everything runs on this machine: the load generator shares the server's cores.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
HUB=${HTTP_HUB:-$TARGET/http-hub}
ROWS=${HTTP_ROWS:-10500000}
SEED=${HTTP_SEED:-20240101}
PORT=${HTTP_PORT:-8444}
RATE=${HTTP_RATE:-200}
DURATION=${HTTP_DURATION:-20s}
CONNECTIONS=${HTTP_CONNECTIONS:-32}
PERSONA=chercheuse-diabete
HABILITATION=projet-diabete
SQL=${HTTP_SQL:-"SELECT count(*) AS n FROM sante.sejours WHERE date_entree < DATE '2022-01-01'"}
SQL_ROWS=${HTTP_SQL_ROWS:-"SELECT id_sejour, diagnostic, date_entree, cout FROM sante.sejours LIMIT 10"}
EXPORT_ROWS=${HTTP_EXPORT_ROWS:-10000000}
EXPORT_SQL=${HTTP_EXPORT_SQL:-"SELECT * FROM sante.sejours LIMIT $EXPORT_ROWS"}
EXPORT_PERSONA=${HTTP_EXPORT_PERSONA:-chercheur-emploi}
EXPORT_HABILITATION=${HTTP_EXPORT_HABILITATION:-projet-emploi}
EXPORTS=${HTTP_EXPORTS:-csv arrow}
CURL_HTTP=${HTTP_CURL_HTTP:---http1.1}
TOOLS=${HTTP_TOOLS:-/var/cache/passerelle/tools}
BIN=${PASSERELLE_BIN:-$TARGET/release/passerelle}
OUT=$TARGET/http-bench
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
AUDIT=${HTTP_AUDIT_DIR:-$OUT/audit}
mkdir -p "$OUT"

say() { printf '[http.sh] %s\n' "$*" >&2; }
die() { say "FAILED: $*"; exit 1; }

command -v curl >/dev/null || die "curl is needed"
command -v python3 >/dev/null || die "python3 is needed (standard library only)"
[[ -w /proc/self/clear_refs ]] || die "/proc/PID/clear_refs is not writable (peak RSS cannot be reset)"
((ROWS >= EXPORT_ROWS)) || die "HTTP_ROWS=$ROWS stays cannot give $EXPORT_ROWS rows"

# --- tools -----------------------------------------------------------------------------------
if [[ -z ${PASSERELLE_BIN:-} ]]; then
    # The `bench` profile (release without LTO, see Cargo.toml) lands in target/release too;
    # a no-op when the binary is current.
    say "building the server (bench profile; several minutes on two cores when stale)"
    (cd "$ROOT" && cargo build --profile bench --bin passerelle)
fi
[[ -x $BIN ]] || die "no server binary at $BIN"
OHA=${OHA:-$(command -v oha || echo "$TOOLS/bin/oha")}
if [[ ! -x $OHA ]]; then
    say "installing oha into $TOOLS"
    cargo install oha --locked --root "$TOOLS"
    OHA=$TOOLS/bin/oha
fi

# --- hub ---------------------------------------------------------------------------------------
# `demo --generate-only` reuses the folder when its rows and seed match (see src/demo/hub.rs).
say "hub $HUB ($ROWS stays, seed $SEED)"
"$BIN" demo --generate-only --dir "$HUB" --rows "$ROWS" --seed "$SEED"
CA=$HUB/tls/ca.pem
BASE=https://127.0.0.1:$PORT
# The exports should not measure the disk: bring the stays file into the page cache.
cat "$HUB/data/sante/sejours.parquet" >/dev/null

# A fresh trail per run (the default one only): the server scans the whole trail at start.
if [[ -z ${HTTP_AUDIT_DIR:-} ]]; then
    rm -rf "$AUDIT"
fi
mkdir -p "$AUDIT"
# Absolute: the server resolves a relative path against the hub folder, not against ours.
AUDIT=$(cd "$AUDIT" && pwd)

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
PASSERELLE_LIMITS__MAX_RESULT_ROWS=$((2 * EXPORT_ROWS)) \
    PASSERELLE_LIMITS__MAX_RESULT_BYTES=$((16 * 1024 * 1024 * 1024)) \
    PASSERELLE_LIMITS__QUERY_TIMEOUT_SECS=600 \
    PASSERELLE_LIMITS__QUERIES_PER_PRINCIPAL=256 \
    PASSERELLE_LIMITS__QUERIES_PER_HABILITATION=256 \
    PASSERELLE_LIMITS__CHEAP_QUERY_SLOTS=64 \
    PASSERELLE_AUDIT__DIR="$AUDIT" \
    "$BIN" --log-format json demo --dir "$HUB" --rows "$ROWS" --seed "$SEED" \
    --listen "127.0.0.1:$PORT" >"$OUT/server.out" 2>"$OUT/server.err" &
SERVER_PID=$!
ISSUER=
for _ in $(seq 1 600); do
    ISSUER=$(sed -n 's/^development issuer (demo only, loopback): //p' "$OUT/server.out" | head -n1)
    [[ -n $ISSUER ]] && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$OUT/server.err" >&2; die "the server stopped"; }
    sleep 0.5
done
[[ -n $ISSUER ]] || die "server did not start"
grep -q "listening" "$OUT/server.err" || die "server not listening (see $OUT/server.err)"
rss() { awk -v k="$1:" '$1 == k {print $2}' "/proc/$SERVER_PID/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$SERVER_PID/stat"; }
TICK=$(getconf CLK_TCK)
RSS_START=$(rss VmRSS)
INDEX_MB=$(sed -n 's/.*"lookup index built".*"memory_bytes":\([0-9]*\).*/\1/p' "$OUT/server.err" |
    awk '{s += $1} END {printf "%.1f", s / 1e6}')
token() {
    local t
    t=$(curl -sf "$ISSUER/token/$1" | sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p')
    [[ -n $t ]] || die "no token for $1 from $ISSUER"
    printf '%s' "$t"
}
TOKEN=$(token "$PERSONA")
EXPORT_TOKEN=$(token "$EXPORT_PERSONA")

# JSON request bodies (python3 quotes the SQL).
body() { python3 -c 'import json, sys; print(json.dumps({"sql": sys.argv[1], "habilitation": sys.argv[2]}))' "$1" "$2"; }
BODY_SMALL=$(body "$SQL" "$HABILITATION")
BODY_ROWS=$(body "$SQL_ROWS" "$HABILITATION")
BODY_EXPORT=$(body "$EXPORT_SQL" "$EXPORT_HABILITATION")

# Every query answers 200 with a whole answer before it is timed.
check_small() { # name body
    local status
    status=$(curl -s -o "$OUT/$1.answer.json" -D "$OUT/$1.answer.headers" -w '%{http_code}' \
        --cacert "$CA" -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
        -d "$2" "$BASE/v1/query") || true
    [[ $status == 200 ]] || die "$1 answered $status: $(cat "$OUT/$1.answer.json")"
    grep -qi '^passerelle-truncated: false' "$OUT/$1.answer.headers" || die "$1: answer truncated or streamed"
    say "$1 answers: $(cat "$OUT/$1.answer.json")"
}
check_small small "$BODY_SMALL"
check_small rows "$BODY_ROWS"

# Steady state: the first query of each habilitation on sante.sejours starts the build of its
# pseudonymised extract in the background (docs/operations.md); wait for those builds, so that
# no figure below includes one. (The export persona's extract is started here too.)
curl -s -o /dev/null --cacert "$CA" -H "Authorization: Bearer $EXPORT_TOKEN" \
    -H 'Content-Type: application/json' \
    -d "$(body "SELECT count(*) AS n FROM sante.sejours WHERE nir IS NULL" "$EXPORT_HABILITATION")" \
    "$BASE/v1/query" || true
EXTRACTS_STARTED=$(date +%s)
quiet=0
while ((quiet < 3)); do
    if compgen -G "$HUB/extracts/*.tmp-*" >/dev/null; then quiet=0; else quiet=$((quiet + 1)); fi
    sleep 1
done
say "pseudonymised extracts ready after $(($(date +%s) - EXTRACTS_STARTED)) s: $(ls "$HUB/extracts" 2>/dev/null | tr '\n' ' ')"
# And the other background builds of a first start (the statistical secret's tables).
source "$ROOT/benches/wait_idle.sh"
say "$(wait_idle "$SERVER_PID")"

# --- exports -----------------------------------------------------------------------------------
# First, on the freshly started server: "RSS before" is then the idle server (mostly the lookup
# indexes built at start), not what the allocator kept from the query loads.
for format in $EXPORTS; do
    case $format in
        csv) accept=text/csv ;;
        arrow) accept=application/vnd.apache.arrow.stream ;;
        ndjson) accept=application/x-ndjson ;;
        json) accept=application/json ;;
        parquet) accept=application/vnd.apache.parquet ;;
        *) die "unknown export format $format" ;;
    esac
    id="http-bench-$format-$(date +%s%N)"
    sleep 2 # let the allocator settle after the previous run
    rss_before=$(rss VmRSS)
    anon_before=$(rss RssAnon)
    # The kernel keeps no peak of the anonymous part (heap, not the binary's code pages that
    # the first queries fault in, which VmRSS and VmHWM count): sampled every 50 ms.
    echo "$anon_before" >"$OUT/export-$format.anon-peak"
    (
        max=$anon_before
        while kill -0 "$SERVER_PID" 2>/dev/null; do
            v=$(rss RssAnon)
            if ((v > max)); then max=$v; echo "$max" >"$OUT/export-$format.anon-peak"; fi
            sleep 0.05
        done
    ) &
    SAMPLER_PID=$!
    echo 5 >"/proc/$SERVER_PID/clear_refs"
    hwm_reset=$(rss VmHWM)
    cpu_before=$(cpu_ticks)
    say "export of $EXPORT_ROWS rows as $format ($accept), $EXPORT_PERSONA"
    rc=0
    curl -sS "$CURL_HTTP" -o /dev/null -D "$OUT/export-$format.headers" --cacert "$CA" \
        -H "Authorization: Bearer $EXPORT_TOKEN" -H 'Content-Type: application/json' \
        -H "Accept: $accept" -H "X-Request-ID: $id" -d "$BODY_EXPORT" \
        -w '{"status": %{http_code}, "bytes": %{size_download}, "first_byte": %{time_starttransfer}, "total": %{time_total}, "http": "%{http_version}"}\n' \
        "$BASE/v1/query" >"$OUT/export-$format.curl.json" 2>"$OUT/export-$format.curl.err" || rc=$?
    peak=$(rss VmHWM)
    cpu_after=$(cpu_ticks)
    kill "$SAMPLER_PID" 2>/dev/null || true
    wait "$SAMPLER_PID" 2>/dev/null || true
    anon_peak=$(cat "$OUT/export-$format.anon-peak")
    [[ $rc == 0 ]] || die "curl failed ($rc) exporting $format: $(cat "$OUT/export-$format.curl.err")"
    # The audit record that closes the answer (the last one with this client's request id).
    record=$(grep -h "\"client_request_id\":\"$id\"" "$AUDIT"/audit-*.jsonl | tail -n1) || true
    [[ -n $record ]] || die "no audit record for $id"
    python3 - "$OUT/export-$format.curl.json" "$EXPORT_ROWS" "$format" "$rss_before" "$hwm_reset" \
        "$peak" "$(((cpu_after - cpu_before) * 1000 / TICK))" "$record" "$anon_before" "$anon_peak" \
        >"$OUT/export-$format.json" <<'EOF'
import json, sys
curl = json.load(open(sys.argv[1]))
want, fmt = int(sys.argv[2]), sys.argv[3]
rec = json.loads(sys.argv[8])
problems = []
if curl["status"] != 200:
    problems.append(f"status {curl['status']}")
if rec.get("outcome") != "allowed" or rec.get("reason"):
    problems.append(f"audit outcome {rec.get('outcome')} reason {rec.get('reason')}")
if rec.get("rows") != want:
    problems.append(f"{rec.get('rows')} rows sent, {want} expected")
if rec.get("bytes") != curl["bytes"]:
    problems.append(f"{curl['bytes']} bytes received, the server says {rec.get('bytes')}")
if problems:
    sys.exit(f"export {fmt}: " + "; ".join(problems))
print(json.dumps({"format": fmt, "rows": rec["rows"], "bytes": curl["bytes"],
                  "seconds": curl["total"], "first_byte": curl["first_byte"], "http": curl["http"],
                  "rss_before_kb": int(sys.argv[4]), "hwm_reset_kb": int(sys.argv[5]),
                  "peak_kb": int(sys.argv[6]), "server_cpu_ms": int(sys.argv[7]),
                  "anon_before_kb": int(sys.argv[9]), "anon_peak_kb": int(sys.argv[10]),
                  "action": rec.get("action")}))
EOF
done
# --- small queries -----------------------------------------------------------------------------
# oha keeps connections alive (HTTP/1.1). Latency is measured from the moment a request is sent
# (no --latency-correction).
run() { # name body extra-oha-args...
    local name=$1 body=$2
    shift 2
    local cpu_before
    cpu_before=$(cpu_ticks)
    "$OHA" --no-tui --output-format json --cacert "$CA" -H "Authorization: Bearer $TOKEN" \
        -H 'Content-Type: application/json' -m POST -d "$body" -z "$DURATION" "$@" \
        "$BASE/v1/query" >"$OUT/$name.json" || die "oha failed ($name)"
    echo $((($(cpu_ticks) - cpu_before) * 1000 / TICK)) >"$OUT/$name.server-cpu-ms"
}
for q in small rows; do
    if [[ $q == small ]]; then b=$BODY_SMALL; else b=$BODY_ROWS; fi
    say "$q query: warm-up (5 s)"
    DURATION=5s run "warmup-$q" "$b" -c "$CONNECTIONS"
    say "$q query: fixed rate $RATE req/s for $DURATION"
    run "rate-$q" "$b" -q "$RATE" -c 10
    say "$q query: saturation, $CONNECTIONS connections for $DURATION"
    run "sat-$q" "$b" -c "$CONNECTIONS"
done

RSS_END=$(rss VmRSS)
stop
SERVER_PID=

# --- table -------------------------------------------------------------------------------------
echo
echo "machine: $(nproc) cores, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n1); load average $LOAD_START at start, $(cut -d' ' -f1-3 /proc/loadavg) at the end; oha $("$OHA" --version | awk '{print $2}'); curl $(curl --version | awk 'NR == 1 {print $2}')"
echo "hub: $ROWS stays; server RSS $((RSS_START / 1000)) MB after start ($INDEX_MB MB of lookup indexes), $((RSS_END / 1000)) MB at the end"
echo "small query:     $SQL"
echo "rows query:      $SQL_ROWS"
echo "(both as $PERSONA, habilitation $HABILITATION)"
echo "exports:         $EXPORT_SQL (as $EXPORT_PERSONA, habilitation $EXPORT_HABILITATION)"
echo
python3 - "$OUT" "$RATE" "$CONNECTIONS" "$EXPORTS" <<'EOF'
import json, sys
out, rate, conns, exports = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4].split()
print(f"{'run':<38} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'srv CPU/req':>11}  statuses")
for name, label in (("rate-small", f"small query, {rate} req/s"),
                    ("sat-small", f"small query, saturation ({conns} conn.)"),
                    ("rate-rows", f"rows query, {rate} req/s"),
                    ("sat-rows", f"rows query, saturation ({conns} conn.)")):
    r = json.load(open(f"{out}/{name}.json"))
    s, p = r["summary"], r["latencyPercentiles"]
    statuses = r.get("statusCodeDistribution", {})
    codes = ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items()))
    for error, n in sorted(r.get("errorDistribution", {}).items()):
        # "aborted due to deadline": requests in flight when the run's time was up.
        codes += f"; {error}: {n}"
    # Server CPU (user + system, all threads) over the run, per answered request.
    cpu = int(open(f"{out}/{name}.server-cpu-ms").read()) / max(1, sum(statuses.values()))
    print(f"{label:<38} {s['requestsPerSec']:>7.0f} {p['p50'] * 1e3:>8.2f} {p['p99'] * 1e3:>8.2f} "
          f"{s['slowest'] * 1e3:>8.2f} {cpu:>8.2f} ms  {codes}")
print()
print(f"{'export':<7} {'rows':>10} {'MB':>7} {'s':>6} {'rows/s':>10} {'MB/s':>6} "
      f"{'RSS before':>10} {'peak RSS':>9} {'peak-before':>11} {'anon before':>11} {'peak anon':>9} "
      f"{'srv CPU s':>9}  http")
for fmt in exports:
    e = json.load(open(f"{out}/export-{fmt}.json"))
    mb, t = e["bytes"] / 1e6, e["seconds"]
    before, peak = e["rss_before_kb"] / 1e3, e["peak_kb"] / 1e3
    print(f"{fmt:<7} {e['rows']:>10} {mb:>7.1f} {t:>6.2f} {e['rows'] / t:>10.0f} {mb / t:>6.1f} "
          f"{before:>10.1f} {peak:>9.1f} {peak - before:>11.1f} {e['anon_before_kb'] / 1e3:>11.1f} "
          f"{e['anon_peak_kb'] / 1e3:>9.1f} {e['server_cpu_ms'] / 1e3:>9.2f}  {e['http']}")
print("(MB = 10^6 bytes; RSS in MB from /proc/PID/status; peak = VmHWM after resetting it to the RSS")
print(" before the request; anon = RssAnon, the heap without the binary's code pages, peak sampled")
print(" every 50 ms; srv CPU = the server's user + system time during the export)")
EOF
