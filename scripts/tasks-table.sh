#!/usr/bin/env bash
# The 2-bit zero-shot table: f32 and 2-bit .llvq files scored by `llvq eval tasks` on the
# paper's CSR six at the same --limit. Writes docs/tasks/<name>.tasks.json (and the per-document
# scores as <name>.docs.jsonl); a run whose json exists is skipped. Prints a markdown table
# (acc per task, CSR = mean acc) at the end.
#   scripts/tasks-table.sh [LIMIT] [NAME=FILE...]
# Default files: data/table/<name>.llvq of scripts/pipeline-table.sh for sg1-both, ss-both,
# e8p12-input and gptq-input. A NAME=FILE argument scores any other file under that name.
# Time: about 0.5-1 document/s per model on 2 busy cores (LIMIT 100 = 600 documents).
set -euo pipefail
cd "$(dirname "$0")/.."
limit=${1:-500}; shift || true
specs=("$@")
[ ${#specs[@]} -gt 0 ] || for n in sg1-both ss-both e8p12-input gptq-input; do specs+=("$n=data/table/$n.llvq"); done
llvq=${LLVQ:-target/release/llvq}
[ -n "${LLVQ:-}" ] || cargo build --release -q -p llvq
data=${DATA_DIR:-data}
$llvq fetch-defaults --tasks --data-dir "$data" > /dev/null
out=${OUT:-docs/tasks}
mkdir -p "$out"
score() { # name model
  local json=$out/$1.tasks.json
  [ -f "$json" ] && return
  $llvq eval tasks --model "$2" --data-dir "$data" --limit "$limit" --json --per-doc "$out/$1.docs.jsonl" > "$json.tmp"
  mv "$json.tmp" "$json"
}
names=(f32)
score f32 "$data/SmolLM2-135M-Instruct.Q4_1.gguf"
for s in "${specs[@]}"; do
  n=${s%%=*}; f=${s#*=}
  if [ -f "$f" ]; then score "$n" "$f"; names+=("$n"); else echo "skip $n: $f missing (scripts/pipeline-table.sh)" >&2; fi
done
python3 - "$out" "$limit" "${names[@]}" <<'PY'
import json, os, sys
out, limit, names = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
tasks = ["arc_easy", "arc_challenge", "boolq", "hellaswag", "piqa", "winogrande"]
print("| model | " + " | ".join(tasks) + " | CSR (acc) |")
print("|---" * (len(tasks) + 2) + "|")
for n in names:
    p = os.path.join(out, n + ".tasks.json")
    if not os.path.exists(p):
        continue
    r = json.load(open(p))
    acc = {t["task"]: t["acc"] for t in r["tasks"]}
    print(f"| {n} | " + " | ".join(f"{100 * acc[t]:.1f}" for t in tasks) + f" | {100 * r['average_acc']:.1f} |")
PY
