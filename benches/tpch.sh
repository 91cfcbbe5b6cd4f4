#!/bin/sh
# TPC-H side by side: bare DataFusion, passerelle (allow-all and realistic plans), DuckDB.
# Installs DuckDB from PyPI (pip install duckdb) for the python3 on PATH, then runs
# `cargo bench --bench tpch` (`bench` profile: release without LTO). Settings through the environment, e.g.
#
#   TPCH_SF=0.1 TPCH_RUNS=5 benches/tpch.sh
#
# TPCH_SF (default 1), TPCH_RUNS (5), TPCH_THREADS (2), TPCH_QUERIES (all), TPCH_DIR
# (/var/cache/passerelle/tpch-sf<SF>), TPCH_PYTHON (python3), TPCH_OUT (also write the table
# there). See docs/benchmarks.md.
set -eu
cd "$(dirname "$0")/.."
PYTHON="${TPCH_PYTHON:-python3}"
if ! "$PYTHON" -c 'import duckdb' 2>/dev/null; then
    "$PYTHON" -m pip install --quiet duckdb
fi
export TPCH_PYTHON="$PYTHON"
exec cargo bench --bench tpch "$@"
