#!/bin/bash
# Peak RSS (VmHWM) of the streaming paths on synthetic checkpoints of one width and different
# depths (issue 14): `llvq synth` writes SmolLM2-360M-shaped layers (960 wide, FFN 2560) with a
# small vocabulary, `llvq calibrate` sums the Hessians, `llvq quantize --hessians` quantizes every
# layer in one job, and the plain in-process `llvq quantize` (sequential mode, on the first 500 kB
# of the calibration text: tokenizing the whole 4.4 MB text at once would dominate its peak) runs
# the whole pipeline. Usage: scripts/depth-rss.sh [LLVQ] [WORK] [DEPTHS...]
# (PLAIN=0 skips the plain runs, JOBS=0 the calibrate/--hessians ones; MODE=full runs the plain
# quantize in full mode.)
set -euo pipefail
B=${1:-target/release/llvq}
W=${2:-data/depth-rss}
shift 2 || true
DEPTHS=${*:-4 16}
mkdir -p "$W"
rss() { grep -o '"peak_rss":[0-9]*' "$1" | cut -d: -f2; }
PLAIN=${PLAIN:-1}
JOBS=${JOBS:-1}
MODE=${MODE:-sequential}
head -c 500000 data/calib.txt > "$W/calib-500k.txt"
for L in $DEPTHS; do
  M=$W/synth-$L
  [ -d "$M" ] || "$B" synth --like smollm2-360m --layers "$L" --vocab 8192 --out "$M" >/dev/null
  F32=$(( $(du -sb "$M" | cut -f1) * 2 ))
  if [ "$PLAIN" = 1 ]; then
    rm -f "$W/s-$L.llvq"
    "$B" quantize --model "$M" --calib "$W/calib-500k.txt" --calib-seqs 4 --calib-ctx 256 --method gptq \
      --mode "$MODE" --out "$W/s-$L.llvq" --json > "$W/s-$L.json" 2> "$W/s-$L.err"
    NEEDS=$(grep -o 'needs about [0-9.]* GB' "$W/s-$L.err" | head -1)
    echo "layers $L: f32 model $((F32 / 1000000)) MB; plain quantize ($MODE) peak $(( $(rss "$W/s-$L.json") / 1000000 )) MB ($NEEDS)"
  fi
  [ "$JOBS" = 1 ] || continue
  rm -f "$W/q-$L.llvq"
  # The sums are deterministic: kept from an earlier run (remove $W/h-$L to measure calibrate again).
  [ -d "$W/h-$L" ] || "$B" calibrate --model "$M" --calib data/calib.txt --calib-seqs 4 --calib-ctx 256 --out "$W/h-$L" --json > "$W/cal-$L.json"
  "$B" quantize --model "$M" --calib data/calib.txt --calib-seqs 4 --calib-ctx 256 --mode full --method gptq \
    --hessians "$W/h-$L" --out "$W/q-$L.llvq" --json > "$W/q-$L.json"
  echo "layers $L: f32 model $((F32 / 1000000)) MB; calibrate peak $(( $(rss "$W/cal-$L.json") / 1000000 )) MB;" \
       "quantize peak $(( $(rss "$W/q-$L.json") / 1000000 )) MB (estimate $(( $(grep -o '"needs_bytes":[0-9]*' "$W/q-$L.json" | cut -d: -f2) / 1000000 )) MB)"
done
