#!/bin/bash
# Peak RSS (VmHWM) of the streaming path on synthetic checkpoints of one width and different
# depths (issue 14): `llvq synth` writes SmolLM2-360M-shaped layers (960 wide, FFN 2560) with a
# small vocabulary, `llvq calibrate` sums the Hessians, `llvq quantize --hessians` quantizes every
# layer in one job. Usage: scripts/depth-rss.sh [LLVQ] [WORK] [DEPTHS...]
set -euo pipefail
B=${1:-target/release/llvq}
W=${2:-data/depth-rss}
shift 2 || true
DEPTHS=${*:-4 16}
mkdir -p "$W"
rss() { grep -o '"peak_rss":[0-9]*' "$1" | cut -d: -f2; }
for L in $DEPTHS; do
  M=$W/synth-$L
  [ -d "$M" ] || "$B" synth --like smollm2-360m --layers "$L" --vocab 8192 --out "$M" >/dev/null
  rm -f "$W/q-$L.llvq"
  # The sums are deterministic: kept from an earlier run (remove $W/h-$L to measure calibrate again).
  [ -d "$W/h-$L" ] || "$B" calibrate --model "$M" --calib data/calib.txt --calib-seqs 4 --calib-ctx 256 --out "$W/h-$L" --json > "$W/cal-$L.json"
  "$B" quantize --model "$M" --calib data/calib.txt --calib-seqs 4 --calib-ctx 256 --mode full --method gptq \
    --hessians "$W/h-$L" --out "$W/q-$L.llvq" --json > "$W/q-$L.json"
  F32=$(( $(du -sb "$M" | cut -f1) * 2 ))
  echo "layers $L: f32 model $((F32 / 1000000)) MB; calibrate peak $(( $(rss "$W/cal-$L.json") / 1000000 )) MB;" \
       "quantize peak $(( $(rss "$W/q-$L.json") / 1000000 )) MB (estimate $(( $(grep -o '"needs_bytes":[0-9]*' "$W/q-$L.json" | cut -d: -f2) / 1000000 )) MB)"
done
