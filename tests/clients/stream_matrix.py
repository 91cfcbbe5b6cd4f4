#!/usr/bin/env python3
"""Streamed answers of `POST /v1/query`, read whole by real clients.

The matrix: every format (JSON, NDJSON, CSV, Arrow IPC stream, Parquet) x every content-coding
the hub offers (identity, gzip, zstd; br only if the hub answers with it) x HTTP/1.1 and HTTP/2
x a small answer (sent whole, < 256 KiB) and a large one (streamed, >= 50 MB of encoded answer;
Parquet as large as the same rows make it). Clients: Python `requests` over HTTP/1.1 (it decodes
gzip and zstd itself; pyarrow reads Arrow and Parquet), and `curl --compressed` over
`--http1.1` and `--http2`. Each cell checks the exact row count (against the hub's own
`count(*)` of the same query), the `Content-Encoding` (the one asked; identity when none is
asked; never any for Parquet) and that the answer ended cleanly (no transport error, curl exit
code 0, JSON `truncated` false, Arrow end-of-stream marker, Parquet footer).

Environment: HUB (https://127.0.0.1:PORT), CA (PEM of the hub's CA), TOKEN (a researcher's
bearer token). Prints one line per cell with bytes and seconds, then a summary; exits 1 on any
failure. Talks to HUB only, and writes only in a temporary folder.
"""

import csv
import importlib.util
import io
import json
import os
import subprocess
import sys
import tempfile
import time

import pyarrow as pa
import pyarrow.parquet as pq
import requests

HUB = os.environ["HUB"].rstrip("/")
CA = os.environ["CA"]
TOKEN = os.environ["TOKEN"]

# Every stay of the caller's view times itself twice over: the shared test hub shows a
# researcher fewer than 200 stays, and a cross join of three reaches millions of rows.
# `melange` differs on nearly every row, so that compressed answers stay megabytes long and a
# large Parquet answer is streamed too (without it, 600 000 rows make 110 KB of Parquet).
SELECT = (
    "SELECT a.*, b.id_sejour AS autre, a.cout * b.cout / c.cout AS melange "
    "FROM sante.sejours a CROSS JOIN sante.sejours b CROSS JOIN sante.sejours c"
)
SMALL_ROWS = 500  # about 130 KB of JSON: under the 256 KiB that are sent whole
SAMPLE_ROWS = 20_000  # the answer whose bytes per row size the large ones
LARGE_BYTES = 50_000_000  # what a large answer must reach, encoded, before any HTTP coding
LARGE_MARGIN = 1.04  # aim a little above it (row widths vary a little)
WHOLE_LIMIT = 256 * 1024
MAX_RESULT_ROWS = 1_000_000  # the hub's default `limits.max_result_rows`

FORMATS = {
    "json": "application/json",
    "ndjson": "application/x-ndjson",
    "csv": "text/csv",
    "arrow": "application/vnd.apache.arrow.stream",
    "parquet": "application/vnd.apache.parquet",
}
ARROW_EOS = b"\xff\xff\xff\xff\x00\x00\x00\x00"
CLIENTS = ("requests-http1.1", "curl-http1.1", "curl-http2")


class CellFailure(Exception):
    """A check of one cell that did not hold."""


def check(condition, message):
    if not condition:
        raise CellFailure(message)


class Tap(io.RawIOBase):
    """A readable stream over `read(n)`, counting the bytes and keeping the last few."""

    def __init__(self, read):
        self._read = read
        self.bytes = 0
        self.tail = b""

    def readable(self):
        return True

    def readinto(self, buffer):
        data = self._read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self.bytes += n
        self.tail = (self.tail + data)[-len(ARROW_EOS):]
        return n


def chunks_reader(chunks):
    """`read(n)` over an iterator of byte chunks (such as `Response.iter_content`)."""
    pending = bytearray()
    iterator = iter(chunks)

    def read(n):
        while len(pending) < n:
            chunk = next(iterator, None)
            if chunk is None:
                break
            pending.extend(chunk)
        data = bytes(pending[:n])
        del pending[:n]
        return data

    return read


def count_rows(fmt, stream):
    """Rows of one decoded answer read from the binary file `stream`, checking its end."""
    if fmt == "json":
        text = io.TextIOWrapper(stream, encoding="utf-8")
        body = json.load(text)
        text.detach()  # leaves `stream` open
        rows = len(body["rows"])
        check(body["row_count"] == rows, f"row_count {body['row_count']} but {rows} rows")
        check(body["truncated"] is False, f"truncated is {body['truncated']!r}")
        return rows
    if fmt == "ndjson":
        rows = 0
        for line in stream:
            if line.strip():
                json.loads(line)
                rows += 1
        return rows
    if fmt == "csv":
        text = io.TextIOWrapper(stream, encoding="utf-8", newline="")
        reader = csv.reader(text)
        header = next(reader)
        check(header[0] == "id_sejour", f"unexpected CSV header {header}")
        rows = sum(1 for _ in reader)
        text.detach()  # leaves `stream` open
        return rows
    if fmt == "arrow":
        rows = sum(batch.num_rows for batch in pa.ipc.open_stream(stream))
        check(stream.read() == b"", "bytes after the Arrow end-of-stream marker")
        return rows
    if fmt == "parquet":
        data = stream.read()
        file = pq.ParquetFile(pa.BufferReader(data))
        meta = file.metadata.metadata or {}
        check(meta.get(b"passerelle.truncated") == b"false",
              f"footer passerelle.truncated = {meta.get(b'passerelle.truncated')!r}")
        footer_rows = int(meta.get(b"passerelle.row_count", b"-1"))
        rows = file.read().num_rows
        check(footer_rows == rows, f"footer passerelle.row_count {footer_rows} but {rows} rows")
        check(file.metadata.num_rows == rows, "Parquet metadata disagrees with its rows")
        return rows
    raise ValueError(fmt)


class Matrix:
    def __init__(self, workdir):
        self.workdir = workdir
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {TOKEN}"
        self.counts = {}
        self.passed = 0
        self.failures = []
        self.auth_header = os.path.join(workdir, "authorization")
        with open(self.auth_header, "w", encoding="utf-8") as f:
            f.write(f"Authorization: Bearer {TOKEN}\n")

    def post(self, sql, accept, coding, stream=True):
        # `verify=` on each call: requests lets REQUESTS_CA_BUNDLE override a session's.
        return self.session.post(
            f"{HUB}/v1/query",
            json={"sql": sql},
            headers={"Accept": accept, "Accept-Encoding": coding},
            verify=CA,
            stream=stream,
        )

    def expected_rows(self, limit):
        """The hub's own count of the query's rows."""
        if limit not in self.counts:
            sql = f"SELECT count(*) AS n FROM ({SELECT} LIMIT {limit}) q"
            r = self.post(sql, "application/json", "identity", stream=False)
            r.raise_for_status()
            self.counts[limit] = r.json()["rows"][0]["n"]
        return self.counts[limit]

    def offered_codings(self):
        """identity, gzip, zstd, and br when the hub answers a br request with br."""
        r = self.post(f"{SELECT} LIMIT {SMALL_ROWS}", FORMATS["json"], "br")
        coding = r.headers.get("Content-Encoding")
        r.raw.read()
        r.close()
        codings = ["identity", "gzip", "zstd"]
        if coding == "br":
            check(importlib.util.find_spec("brotli") is not None,
                  "the hub answers br: add brotli to tests/clients/requirements.txt")
            codings.append("br")
            print("br: offered by the hub, in the matrix")
        else:
            check(coding is None, f"asked for br only, got Content-Encoding {coding!r}")
            print("br: not offered by the hub (asked `Accept-Encoding: br`, answered "
                  "identity); not in the matrix")
        return codings

    def large_limit(self, fmt):
        """Rows that make at least LARGE_BYTES of `fmt`, from a sample's bytes per row."""
        r = self.post(f"{SELECT} LIMIT {SAMPLE_ROWS}", FORMATS[fmt], "identity", stream=False)
        r.raise_for_status()
        per_row = len(r.content) / SAMPLE_ROWS
        limit = int(LARGE_BYTES * LARGE_MARGIN / per_row) + 1
        check(limit < MAX_RESULT_ROWS,
              f"{fmt}: {limit} rows needed for {LARGE_BYTES} bytes, over max_result_rows")
        return limit

    def run_cell(self, fmt, size, limit, coding, client):
        expected = self.expected_rows(limit)
        sql = f"{SELECT} LIMIT {limit}"
        want_coding = None if coding == "identity" or fmt == "parquet" else coding
        started = time.monotonic()
        if client == "requests-http1.1":
            rows, decoded, wire, headers = self.read_with_requests(fmt, sql, coding)
        else:
            rows, decoded, wire, headers = self.read_with_curl(fmt, sql, coding, client)
        seconds = time.monotonic() - started
        got_coding = headers.get("content-encoding")
        check(got_coding == want_coding,
              f"Content-Encoding {got_coding!r}, expected {want_coding!r}")
        check(rows == expected, f"{rows} rows, the hub counts {expected}")
        whole = "passerelle-row-count" in headers
        if size == "small":
            check(decoded < WHOLE_LIMIT, f"small answer of {decoded} bytes")
            check(whole, "small answer not sent whole (no Passerelle-Row-Count)")
            check(headers["passerelle-row-count"] == str(expected),
                  f"Passerelle-Row-Count {headers['passerelle-row-count']}")
            check(headers.get("passerelle-truncated") == "false", "Passerelle-Truncated")
        else:
            check(not whole, "large answer sent whole, not streamed")
            if fmt != "parquet":
                check(decoded >= LARGE_BYTES, f"large answer of only {decoded} bytes")
        return rows, decoded, wire, seconds

    def read_with_requests(self, fmt, sql, coding):
        with self.post(sql, FORMATS[fmt], coding) as r:
            if r.status_code != 200:  # (not through `check`: r.text would read the body)
                raise CellFailure(f"status {r.status_code}: {r.text[:300]}")
            check(r.raw.version == 11, f"HTTP version {r.raw.version}")
            headers = {k.lower(): v for k, v in r.headers.items()}
            if fmt == "arrow":
                # As in docs/api.md: pyarrow reads the urllib3 response, decoded.
                r.raw.decode_content = True
                tap = Tap(r.raw.read)
            else:
                tap = Tap(chunks_reader(r.iter_content(chunk_size=1 << 16)))
            stream = io.BufferedReader(tap, buffer_size=1 << 16)
            rows = count_rows(fmt, stream)
            check(stream.read() == b"", "bytes after the end of the answer")
            if fmt == "arrow":
                check(tap.tail == ARROW_EOS, "no Arrow end-of-stream marker")
            # urllib3 counts the bytes off the wire only when it is not reading chunks.
            return rows, tap.bytes, r.raw.tell() or None, headers

    def read_with_curl(self, fmt, sql, coding, client):
        version = {"curl-http1.1": "--http1.1", "curl-http2": "--http2"}[client]
        out = os.path.join(self.workdir, "answer")
        head = os.path.join(self.workdir, "headers")
        command = [
            "curl", "--silent", "--show-error", "--compressed", version,
            "--cacert", CA, "-H", f"@{self.auth_header}",
            "-H", "Content-Type: application/json", "-H", f"Accept: {FORMATS[fmt]}",
            # Identity: no Accept-Encoding at all (curl's own is removed; requests asks for
            # `identity` explicitly, so both ways of not asking are covered).
            "-H", "Accept-Encoding:" if coding == "identity" else f"Accept-Encoding: {coding}",
            "--data-binary", json.dumps({"sql": sql}),
            "-o", out, "-D", head, "-w", "%{http_code} %{http_version} %{size_download}",
            f"{HUB}/v1/query",
        ]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=300)
            check(done.returncode == 0,
                  f"curl exit code {done.returncode}: {done.stderr.strip()}")
            status, http_version, wire = done.stdout.split()
            check(status == "200", f"status {status}")
            want_version = "2" if client == "curl-http2" else "1.1"
            check(http_version == want_version, f"HTTP version {http_version}")
            headers = {}
            with open(head, encoding="latin-1") as f:
                for line in f:
                    name, sep, value = line.partition(":")
                    if sep:
                        headers[name.strip().lower()] = value.strip()
            with open(out, "rb") as f:
                rows = count_rows(fmt, f)
            if fmt == "arrow":
                with open(out, "rb") as f:
                    f.seek(-len(ARROW_EOS), os.SEEK_END)
                    check(f.read() == ARROW_EOS, "no Arrow end-of-stream marker")
            return rows, os.path.getsize(out), int(wire), headers
        finally:
            for path in (out, head):
                if os.path.exists(path):
                    os.remove(path)


def main():
    curl = subprocess.run(["curl", "--version"], capture_output=True, text=True, check=True)
    features = curl.stdout.split("Features:")[-1].split()
    for needed in ("HTTP2", "libz", "zstd"):
        if needed not in features:
            print(f"curl lacks {needed}: {curl.stdout.splitlines()[0]}")
            return 1
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="passerelle-clients-") as workdir:
        matrix = Matrix(workdir)
        try:
            codings = matrix.offered_codings()
            limits = {fmt: matrix.large_limit(fmt) for fmt in FORMATS if fmt != "parquet"}
        except (CellFailure, requests.RequestException) as e:
            print(f"FAIL setting up the matrix: {type(e).__name__}: {e}")
            return 1
        # Parquet: the largest of the same rows (the one format with no size of its own).
        limits["parquet"] = max(limits.values())
        print("large answers (rows): " + ", ".join(f"{f} {n}" for f, n in limits.items()))
        # MATRIX=compressed-large: the large answers in two formats, compressed, over both HTTP
        # versions (a gateway whose queries run on a cluster: only where batches come from
        # differs, so the cells that stress streaming are enough).
        subset = os.environ.get("MATRIX") == "compressed-large"
        formats = ("json", "arrow") if subset else tuple(FORMATS)
        clients = ("requests-http1.1", "curl-http2") if subset else CLIENTS
        for fmt in formats:
            sizes = (("small", SMALL_ROWS), ("large", limits[fmt]))
            for size, limit in sizes[1:] if subset else sizes:
                for coding in [c for c in codings if c != "identity"] if subset else codings:
                    for client in clients:
                        cell = f"{fmt:7} {size:5} {coding:8} {client:16}"
                        try:
                            rows, decoded, wire, seconds = matrix.run_cell(
                                fmt, size, limit, coding, client)
                        except Exception as e:  # noqa: BLE001 — every failure is reported
                            matrix.failures.append(cell)
                            print(f"FAIL {cell} {type(e).__name__}: {e}", flush=True)
                            continue
                        matrix.passed += 1
                        wire = "-" if wire is None else f"{wire:,}"
                        print(f"ok   {cell} rows={rows:>7} bytes={decoded:>11,} "
                              f"wire={wire:>11} {seconds:6.2f} s", flush=True)
    elapsed = time.monotonic() - started
    failed = len(matrix.failures)
    print(f"stream matrix: {matrix.passed} cells passed, {failed} failed in {elapsed:.1f} s")
    for cell in matrix.failures:
        print(f"  failed: {cell}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
