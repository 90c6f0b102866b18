#!/usr/bin/env bash
# SDBA on and off on the same Hessians (issue 12): `llvq calibrate` sums the default model's
# full-precision Hessians once, then `llvq quantize --hessians --mode full` quantizes all layers
# with `glvq:d=8,ldlq=1,mu=0` and SDBA on or off, for each rotation given, and the relative
# proxy loss tr(ΔW H ΔWᵀ)/tr(W H Wᵀ) of every linear (the files' `stats`) is compared. Every
# linear sees the same H in both runs (full mode: no quantized predecessors), so the ratio
# isolates the bit allocation. Usage: scripts/glvq-sdba.sh [LLVQ] [WORK] [ROTATIONS...]
set -euo pipefail
cd "$(dirname "$0")/.."
B=${1:-target/release/llvq}
W=${2:-data/glvq-sdba}
shift 2 || true
ROTS=${*:-none output both}
mkdir -p "$W"
[ -d "$W/hessians" ] || $B calibrate --out "$W/hessians"
for rot in $ROTS; do
  for s in 1 0; do
    f=$W/$rot-sdba$s.llvq
    [ -f "$f" ] || $B quantize --hessians "$W/hessians" --mode full \
      --method "glvq:d=8,ldlq=1,mu=0,sdba=$s" --rotate "$rot" --out "$f" --json > /dev/null
  done
  $B inspect "$W/$rot-sdba1.llvq" | grep -o '[0-9]* groups:.*bits/weight' | sed "s/^/$rot: /"
done
python3 - "$W" $ROTS <<'EOF'
import json, math, struct, sys

def stats(path):
    """{linear: proxy_rel} from a file's header (safetensors layout, metadata key `llvq`)."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        meta = json.loads(json.loads(f.read(n))["__metadata__"]["llvq"])
    return {s["name"]: s["proxy_rel"] for s in meta["stats"]}

geo = lambda v: math.exp(sum(map(math.log, v)) / len(v))
print("| rotation | proxy, SDBA on | SDBA off | on/off (geometric mean) | linears better / worse / same | worst linear on / off |")
print("| --- | ---: | ---: | ---: | ---: | ---: |")
for rot in sys.argv[2:]:
    on, off = stats(f"{sys.argv[1]}/{rot}-sdba1.llvq"), stats(f"{sys.argv[1]}/{rot}-sdba0.llvq")
    r = [on[k] / off[k] for k in on]
    better, worse = sum(x < 1 for x in r), sum(x > 1 for x in r)
    print(f"| {rot} | {geo(list(on.values())):.4f} | {geo(list(off.values())):.4f} | {geo(r):.3f} | "
          f"{better} / {worse} / {len(r) - better - worse} | {max(on.values()):.3f} / {max(off.values()):.3f} |")
EOF
