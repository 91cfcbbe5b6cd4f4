#!/usr/bin/env python3
"""Flight SQL beside HTTPS, from one Python client on this machine (benches/flight.sh runs it).

(1) small query: SMALL_REQUESTS sequential requests per door, over one kept connection, in
    alternating blocks of 100: HTTPS `POST /v1/query` with an Arrow IPC stream answer
    (requests.Session) and Flight SQL (pyarrow.flight: GetFlightInfo, then DoGet of its ticket,
    the two round trips every Flight SQL client makes). p50 and p99 of each, and their ratio.
(2) stream: EXPORT_SQL read whole (batches counted, then dropped) over each door, EXPORTS
    times alternating: wall time, rows/s, MB/s of Arrow buffers.

Environment: HUB, FLIGHT, CA, TOKEN (small query), EXPORT_TOKEN, SQL, EXPORT_SQL,
HABILITATION, EXPORT_HABILITATION, SMALL_REQUESTS (2000), EXPORTS (3). Prints a table.
"""

import os
import statistics
import time

import pyarrow as pa
import pyarrow.flight as fl
import pyarrow.ipc
import requests

HUB = os.environ["HUB"].rstrip("/")
FLIGHT = os.environ["FLIGHT"]
CA = os.environ["CA"]
CA_PEM = open(CA, "rb").read()
SMALL_REQUESTS = int(os.environ.get("SMALL_REQUESTS", "2000"))
EXPORTS = int(os.environ.get("EXPORTS", "3"))


def varint(n):
    out = b""
    while True:
        byte, n = n & 0x7F, n >> 7
        out += bytes([byte | (0x80 if n else 0)])
        if not n:
            return out


def field(number, data):
    return bytes([number << 3 | 2]) + varint(len(data)) + data


def statement(sql):
    """CommandStatementQuery { query } in google.protobuf.Any."""
    type_url = b"type.googleapis.com/arrow.flight.protocol.sql.CommandStatementQuery"
    return field(1, type_url) + field(2, field(1, sql.encode()))


class Https:
    name = "HTTPS (Arrow IPC)"

    def __init__(self, token, habilitation):
        self.session = requests.Session()
        self.session.verify = CA
        self.session.headers.update({"Authorization": "Bearer " + token,
                                     "Accept": "application/vnd.apache.arrow.stream"})
        self.habilitation = habilitation

    def run(self, sql):
        # verify per request: a session's own is overridden by REQUESTS_CA_BUNDLE.
        with self.session.post(HUB + "/v1/query", json={"sql": sql, "habilitation": self.habilitation},
                               stream=True, timeout=900, verify=CA) as r:
            r.raise_for_status()
            r.raw.decode_content = True
            reader = pa.ipc.open_stream(r.raw)
            rows = nbytes = 0
            for batch in reader:
                rows += batch.num_rows
                nbytes += batch.nbytes
            return rows, nbytes


class Flight:
    name = "Flight SQL"

    def __init__(self, token, habilitation):
        self.client = fl.FlightClient(FLIGHT, tls_root_certs=CA_PEM)
        self.options = fl.FlightCallOptions(headers=[
            (b"authorization", b"Bearer " + token.encode()),
            (b"x-passerelle-habilitation", habilitation.encode()),
        ], timeout=900)

    def run(self, sql):
        info = self.client.get_flight_info(fl.FlightDescriptor.for_command(statement(sql)), self.options)
        rows = nbytes = 0
        for endpoint in info.endpoints:
            reader = self.client.do_get(endpoint.ticket, self.options)
            for chunk in reader:
                rows += chunk.data.num_rows
                nbytes += chunk.data.nbytes
        return rows, nbytes


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def main():
    sql, export_sql = os.environ["SQL"], os.environ["EXPORT_SQL"]
    small = [Https(os.environ["TOKEN"], os.environ["HABILITATION"]),
             Flight(os.environ["TOKEN"], os.environ["HABILITATION"])]
    for door in small:  # warm-up: connection, plan cache, answers agree
        door.run(sql)
    times = {door.name: [] for door in small}
    for _ in range(max(1, SMALL_REQUESTS // 100)):
        for door in small:
            for _ in range(100):
                start = time.perf_counter()
                door.run(sql)
                times[door.name].append((time.perf_counter() - start) * 1000)
    print(f"small query: {sql}")
    print(f"{'door':<20} {'requests':>8} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8}")
    p50 = {}
    for name, t in times.items():
        p50[name] = percentile(t, 50)
        print(f"{name:<20} {len(t):>8} {p50[name]:>8.2f} {percentile(t, 99):>8.2f} {statistics.mean(t):>8.2f}")
    print(f"Flight / HTTPS p50: {p50['Flight SQL'] / p50['HTTPS (Arrow IPC)']:.3f}")

    big = [Https(os.environ["EXPORT_TOKEN"], os.environ["EXPORT_HABILITATION"]),
           Flight(os.environ["EXPORT_TOKEN"], os.environ["EXPORT_HABILITATION"])]
    print(f"\nstream: {export_sql}")
    print(f"{'door':<20} {'rows':>10} {'s':>7} {'rows/s':>12} {'MB/s':>8}")
    walls = {door.name: [] for door in big}
    for _ in range(EXPORTS):
        for door in big:
            start = time.perf_counter()
            rows, nbytes = door.run(export_sql)
            wall = time.perf_counter() - start
            walls[door.name].append(wall)
            print(f"{door.name:<20} {rows:>10} {wall:>7.2f} {rows / wall:>12,.0f} {nbytes / wall / 1e6:>8.1f}")
    median = {k: statistics.median(v) for k, v in walls.items()}
    print(f"median wall: HTTPS {median['HTTPS (Arrow IPC)']:.2f} s, Flight {median['Flight SQL']:.2f} s; "
          f"Flight / HTTPS: {median['Flight SQL'] / median['HTTPS (Arrow IPC)']:.3f}")


if __name__ == "__main__":
    main()
