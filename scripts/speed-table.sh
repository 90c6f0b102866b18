#!/usr/bin/env bash
# The README's compressed-runtime speed table (issue 9): `llvq eval speed --compare` (the
# compressed file and its dense twin alternated in each round, medians) for the main job's file
# with each activation / head option and thread count, for the E8P12 and GPTQ files, the memory
# bandwidth, the peak RSS of `llvq generate` both ways, and 20-window perplexity both ways.
# Needs data/table/{sg1-both,e8p12-both,gptq-input}.llvq (scripts/pipeline-table.sh) and a
# release build; run it on a quiet machine (about 6 minutes). Writes docs/speed/.
set -euo pipefail
cd "$(dirname "$0")/.."
L=${LLVQ:-target/release/llvq}
F=data/table/sg1-both.llvq
out=docs/speed
mkdir -p "$out"
speed() { # NAME FILE ARGS...
    local name=$1 file=$2
    shift 2
    "$L" eval speed --model "$file" --compare --json "$@" >"$out/$name.json.tmp"
    mv "$out/$name.json.tmp" "$out/$name.json"
}
speed sg1-both.i16.t2 "$F" --threads 2 --reps 15
speed sg1-both.f32.t2 "$F" --threads 2 --reps 5 --act f32
speed sg1-both.i8.t2 "$F" --threads 2 --reps 5 --act i8
speed sg1-both.q8head.t2 "$F" --threads 2 --reps 5 --head q8
speed sg1-both.i16.t1 "$F" --threads 1 --reps 5
speed e8p12-both.i16.t2 data/table/e8p12-both.llvq --threads 2 --reps 5
speed gptq-input.i16.t2 data/table/gptq-input.llvq --threads 2 --reps 5
"$L" bench memory --threads 2 >"$out/memory.t2.txt"
"$L" bench memory --threads 1 >"$out/memory.t1.txt"
for d in "" "--dense"; do
    /usr/bin/time -v "$L" generate --model "$F" --prompt "The history of" -n 32 --threads 2 $d 2>&1 |
        grep -E "Maximum resident|tokens/s"
done >"$out/rss.txt"
for d in "" "--dense"; do
    "$L" eval ppl --model "$F" --max-windows 20 --threads 2 --json $d
done >"$out/ppl20.jsonl"
