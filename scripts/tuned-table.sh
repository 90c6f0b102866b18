#!/usr/bin/env bash
# The README pipeline table's "tuned" column (issue 11): tunes the input scales of the table's
# files with the default budget (`llvq finetune`, 16,384 tokens, KL to the f32 model) and
# evaluates the tuned file on WikiText-2 test (ctx 512, all 589 windows), like the untuned row.
# Needs data/table/NAME.llvq from scripts/pipeline-table.sh. Writes
# docs/pipeline/NAME-tuned.finetune.json (`llvq finetune --json`, with its wall time and
# tokens/s) and NAME-tuned.ppl.json, and NAME.ppl.json for the untuned file where it is missing;
# a step whose report exists is skipped.
# About 30-40 minutes per method on 2 cores (tuning ~10-15, evaluation ~17-23).
set -euo pipefail
cd "$(dirname "$0")/.."
llvq=target/release/llvq
out=docs/pipeline
ppl() { # file report
  [ -f "$2" ] && return
  $llvq eval ppl --model "$1" --dense --json > "$2.tmp"
  mv "$2.tmp" "$2"
}
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(sg1-both gptq-input e8p12-both ss-both)
for n in "${names[@]}"; do
  file=data/table/$n.llvq
  [ -f "$file" ] || { echo "missing $file: run scripts/pipeline-table.sh first" >&2; exit 1; }
  tuned=data/table/$n-tuned.llvq
  if [ ! -f "$out/$n-tuned.finetune.json" ]; then
    resume=(); [ -f "$tuned.finetune" ] && resume=(--resume)
    $llvq finetune "$file" --out "$tuned" --json "${resume[@]}" > "$out/$n-tuned.finetune.json.tmp"
    mv "$out/$n-tuned.finetune.json.tmp" "$out/$n-tuned.finetune.json"
  fi
  ppl "$tuned" "$out/$n-tuned.ppl.json"
  ppl "$file" "$out/$n.ppl.json"
done
