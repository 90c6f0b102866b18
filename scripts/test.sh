#!/usr/bin/env bash
# The test command from the README: the whole workspace's tests (optimised test profile), then
# the slow brute-force lattice checks in release mode.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace
cargo test --release -p llvq-lattice --features slow-tests
