#!/usr/bin/env bash
# The 2-bit zero-shot table: f32 and every .llvq file written by scripts/pipeline-table.sh
# (data/table/<name>.llvq), scored by `llvq eval tasks` on the paper's CSR six at the same
# --limit. Writes docs/tasks/<name>.tasks.json; a run whose json exists is skipped. Prints a
# markdown table (acc per task, CSR = mean acc) at the end.
#   scripts/tasks-table.sh [LIMIT] [NAME...]     (default LIMIT 500; default names below)
# About 10 minutes per model at LIMIT 500 on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
limit=${1:-500}; shift || true
names=("$@"); [ ${#names[@]} -gt 0 ] || names=(sg1-both ss-both e8p12-both gptq-input)
llvq=target/release/llvq
cargo build --release -q -p llvq
$llvq fetch-defaults --tasks > /dev/null
out=docs/tasks
mkdir -p "$out"
score() { # name model
  local json=$out/$1.tasks.json
  [ -f "$json" ] && return
  $llvq eval tasks --model "$2" --limit "$limit" --json > "$json.tmp"
  mv "$json.tmp" "$json"
}
score f32 data/SmolLM2-135M-Instruct.Q4_1.gguf
for n in "${names[@]}"; do
  if [ -f "data/table/$n.llvq" ]; then score "$n" "data/table/$n.llvq"; else echo "skip $n: data/table/$n.llvq missing (scripts/pipeline-table.sh)" >&2; fi
done
python3 - "$out" f32 "${names[@]}" <<'PY'
import json, os, sys
out, names = sys.argv[1], sys.argv[2:]
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
