"""Two gateways side by side on small queries (see benches/small_pair.sh).

Usage: small_pair.py CA NAME,BASE,TOKEN,PID[,CA] [NAME,BASE,TOKEN,PID[,CA] ...]

Each server gets one keep-alive HTTPS connection (Python `requests`, its defaults but for the CA);
rounds of N sequential queries alternate between the servers, so that a noisy neighbour slows
both alike. Per server: the median over the rounds of each round's p50 latency, and of the
server's CPU time per request (user + system, from /proc/PID/stat, all its threads).
"""

import os
import statistics
import sys
import time

import requests

CA = sys.argv[1]
SERVERS = [spec.split(",") for spec in sys.argv[2:]]
N = int(os.environ.get("PAIR_N", "400"))
ROUNDS = int(os.environ.get("PAIR_ROUNDS", "6"))
SQL = os.environ.get(
    "PAIR_SQL",
    "SELECT count(*) AS n FROM sante.sejours WHERE date_entree < DATE '2022-01-01'",
)
HABILITATION = os.environ.get("PAIR_HABILITATION", "projet-diabete")
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


body = {"sql": SQL, "habilitation": HABILITATION}
sessions = {}
for name, base, token, pid, *own_ca in SERVERS:
    s = requests.Session()
    s.verify = own_ca[0] if own_ca else CA
    s.trust_env = False  # REQUESTS_CA_BUNDLE would override `verify`
    s.headers["Authorization"] = f"Bearer {token}"
    for _ in range(100):  # warm-up: connection, caches, extracts already built
        r = s.post(f"{base}/v1/query", json=body)
        if r.status_code != 200:
            sys.exit(f"{name}: {r.status_code} {r.text[:300]}")
    sessions[name] = s

results = {name: ([], []) for name, *_ in SERVERS}
for _ in range(ROUNDS):
    for name, base, _token, pid, *_ca in SERVERS:
        s = sessions[name]
        times = []
        start = cpu_seconds(int(pid))
        for _ in range(N):
            t = time.perf_counter()
            r = s.post(f"{base}/v1/query", json=body)
            r.content
            times.append(time.perf_counter() - t)
            if r.status_code != 200:
                sys.exit(f"{name}: {r.status_code}")
        used = cpu_seconds(int(pid)) - start
        times.sort()
        results[name][0].append(1e3 * times[N // 2])
        results[name][1].append(1e3 * used / N)

print(f"query: {SQL}  ({ROUNDS} rounds of {N} per server)")
print("| server | p50 (median of rounds) | server CPU/request (median) | rounds: p50 / CPU |")
print("|---|---:|---:|---|")
for name, (p50s, cpus) in results.items():
    each = ", ".join(f"{a:.2f}/{b:.2f}" for a, b in zip(p50s, cpus))
    print(
        f"| {name} | {statistics.median(p50s):.2f} ms | {statistics.median(cpus):.2f} ms | {each} |"
    )
