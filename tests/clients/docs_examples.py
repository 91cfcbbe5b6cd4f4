#!/usr/bin/env python3
"""Every ```python block of docs/*.md and README.md, run against a real hub.

Each block runs as a reader would paste it, in a fresh namespace where `token` is the
researcher's bearer token, with two substitutions: the demo hub's address
`https://127.0.0.1:8443` becomes HUB and `demo-hub/tls/ca.pem` becomes CA. Tracebacks name the
Markdown file and its own line numbers. Run from the repository root.

A block fenced ```python not-run is shown, not run: it needs a hub set up otherwise than the
test hub (its text says which test covers it instead).

Environment: HUB (https://127.0.0.1:PORT), CA (PEM of the hub's CA), TOKEN (a researcher's
bearer token). Prints one line per block, then a summary; exits 1 when a block fails or when
no block is found.
"""

import glob
import os
import sys
import textwrap
import time
import traceback

HUB = os.environ["HUB"].rstrip("/")
CA = os.path.abspath(os.environ["CA"])
TOKEN = os.environ["TOKEN"]

DEMO_HUB = "https://127.0.0.1:8443"
DEMO_FLIGHT = "grpc+tls://127.0.0.1:8444"
FLIGHT = os.environ.get("FLIGHT", DEMO_FLIGHT)
DEMO_CA = ("./demo-hub/tls/ca.pem", "demo-hub/tls/ca.pem")


def python_blocks(path):
    """(first line of code, code) of each ```python block of the Markdown file `path`."""
    blocks = []
    code = None
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            fence = line.strip()
            if code is None:
                if fence.startswith("```") and fence[3:].strip().lower() in ("python", "py"):
                    code, start = [], number + 1
            elif fence.startswith("```"):
                # A block inside a list item is indented with it.
                blocks.append((start, textwrap.dedent("".join(code))))
                code = None
            else:
                code.append(line)
    if code is not None:
        raise SystemExit(f"{path}:{start - 1}: unclosed ```python block")
    return blocks


def localise(code):
    code = code.replace(DEMO_HUB, HUB).replace(DEMO_FLIGHT, FLIGHT)
    for demo in DEMO_CA:
        code = code.replace(demo, CA)
    return code


def main():
    files = sorted(glob.glob("docs/*.md")) + ["README.md"]
    if not files:
        print("no docs/*.md here: run from the repository root")
        return 1
    passed, failures = 0, []
    for path in files:
        for start, code in python_blocks(path):
            where = f"{path}:{start - 1}"
            # Padding keeps the Markdown's line numbers in tracebacks.
            source = "\n" * (start - 1) + localise(code)
            namespace = {"__name__": "__main__", "token": TOKEN}
            began = time.monotonic()
            try:
                exec(compile(source, path, "exec"), namespace)  # noqa: S102 — the docs' own code
            except BaseException:  # noqa: BLE001 — every failure is reported with its block
                failures.append(where)
                print(f"FAIL {where}", flush=True)
                traceback.print_exc(file=sys.stdout, chain=False)
                continue
            passed += 1
            print(f"ok   {where} ({time.monotonic() - began:.2f} s)", flush=True)
    print(f"docs examples: {passed} blocks passed, {len(failures)} failed")
    for where in failures:
        print(f"  failed: {where}")
    if passed + len(failures) == 0:
        print("no ```python block found in docs/*.md")
        return 1
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
