#!/usr/bin/env bash
# The availability soak against an optimised gateway: legitimate queries and lookups at a steady
# rate from two callers, mixed with bad tokens and one researcher flooding the hub with the
# hostile corpus (tests/integration/hostile.rs), for ten minutes, on loopback, with the gateway
# as a child process under a memory ceiling. Prints the legitimate share's success rate and
# p50/p99 per class, the gateway's peak resident size, and the audit records against the
# requests; fails if the gateway dies, passes its ceiling or leaves a request off the trail.
#
#   bash benches/soak.sh
#
# Settings (environment): SOAK_SECS (600), SOAK_RATE (legitimate requests per second, 200),
# SOAK_HOSTILE (concurrent hostile loops, 4), SOAK_BAD_TOKENS (per second, 50), SOAK_CEILING_MB
# (the gateway's limits.process_memory_mb, 2048), PASSERELLE_BIN (an already built gateway).
# The load generator is the integration-test binary (debug build) on the same two cores.
# Figures: docs/benchmarks.md, "Availability soak". CI runs a one-minute form on the debug
# binary that asserts the invariants only (.ci/run).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=${PASSERELLE_BIN:-$TARGET/release/passerelle}

if [[ -z ${PASSERELLE_BIN:-} ]]; then
    # The `bench` profile (release without LTO, see Cargo.toml) lands in target/release.
    echo "soak: building the gateway (bench profile; several minutes on two cores when stale)" >&2
    (cd "$ROOT" && cargo build --profile bench --bin passerelle)
fi

export PASSERELLE_TEST_BIN=$BIN
export SOAK_SECS=${SOAK_SECS:-600}
export SOAK_RATE=${SOAK_RATE:-200}
export SOAK_HOSTILE=${SOAK_HOSTILE:-4}
export SOAK_BAD_TOKENS=${SOAK_BAD_TOKENS:-50}
export SOAK_CEILING_MB=${SOAK_CEILING_MB:-2048}
cd "$ROOT"
cargo test --test integration soak -- --ignored --nocapture 2>&1 | grep --line-buffered -E '^soak:|test result|panicked|FAILED'
