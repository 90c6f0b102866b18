#!/usr/bin/env bash
# Regenerates the README's pipeline table: quantizes the default model with every method and
# rotation of the table, then evaluates each file on WikiText-2 test (ctx 512, all windows).
# Writes docs/pipeline/<name>.quant.json (the `llvq quantize --json` report) and
# <name>.ppl.json (`llvq eval ppl --json`); a run whose ppl file exists is skipped.
# Takes about five hours on 2 cores (each evaluation of the 589 windows is 10-18 minutes), plus
# the GLVQ ablation (issue 12): 20-35 minutes a row.
# ONLY=REGEX runs only the rows whose name matches (e.g. ONLY='^glvq').
set -euo pipefail
cd "$(dirname "$0")/.."
llvq=target/release/llvq
cargo build --release -q -p llvq
$llvq fetch-defaults > /dev/null
out=docs/pipeline
mkdir -p "$out" data/table
run() { # name method rotate [extra quantize flags...]
  local name=$1 method=$2 rotate=$3; shift 3
  [ -f "$out/$name.ppl.json" ] && return
  [[ -n "${ONLY:-}" && ! "$name" =~ $ONLY ]] && return
  local file=data/table/$name.llvq
  if [ ! -f "$out/$name.quant.json" ]; then
    resume=(); [ -d "$file.parts" ] && resume=(--resume)
    $llvq quantize --method "$method" --rotate "$rotate" --out "$file" --json "${resume[@]}" "$@" > "$out/$name.quant.json.tmp"
    mv "$out/$name.quant.json.tmp" "$out/$name.quant.json"
  fi
  # GLVQ files run decoded to f32 in the compressed runtime (a lattice per group: no shared
  # grid); for a 589-window perplexity the dense path (same numbers) is the faster one.
  local dense=(); [[ $name == glvq* ]] && dense=(--dense)
  $llvq eval ppl --model "$file" --json "${dense[@]}" > "$out/$name.ppl.json.tmp"
  mv "$out/$name.ppl.json.tmp" "$out/$name.ppl.json"
}
[ -f "$out/f32.ppl.json" ] || { $llvq eval ppl --json > "$out/f32.ppl.json.tmp" && mv "$out/f32.ppl.json.tmp" "$out/f32.ppl.json"; }
run sg1-both      llvq-sg:m=12,gain=1 both
run e8p12-both    e8p12               both
run rtn           rtn                 none
run gptq          gptq                none
run gptq-input    gptq                input
run ss-both       llvq-ss:m=13        both
run sg2-both      llvq-sg:m=11,gain=2 both
run sg1-none      llvq-sg:m=12,gain=1 none
run sg1-both-full llvq-sg:m=12,gain=1 both --mode full
run sg1-input     llvq-sg:m=12,gain=1 input
run sg1-output    llvq-sg:m=12,gain=1 output
run e8p12-none    e8p12               none
run e8p12-input   e8p12               input
run e8p12-output  e8p12               output
# GLVQ (issue 12), same calibration, rotation and seed as sg1-both. The paper's ablation
# around two settings: the pipeline's block-LDLQ feedback (ldlq=1, the better mode here), for
# 8-D and 24-D: µ-law and SDBA on (the paper's method), µ-law off, µ-law and SDBA off; and the
# paper's own optimisation (ldlq=0), at d = 8 with and without µ-law and at d = 24 without (the
# d = 24 µ-law row, last, takes about 55 minutes and is not in the README). With both rotations
# SDBA moves no group (`llvq inspect`: "0 at N−1"), so SDBA off gives the same weights (the
# d = 8 pair checks it end to end); the pair without rotation is where SDBA moves bits
# (scripts/glvq-sdba.sh compares SDBA on and off linear by linear on the same Hessians).
run glvq8-ldlq-mu0         glvq:d=8,ldlq=1,mu=0                     both
run glvq24-ldlq-mu0        glvq:d=24,group=576,ldlq=1,mu=0          both
run glvq8-ldlq-mu0-nosdba  glvq:d=8,ldlq=1,mu=0,sdba=0              both
run glvq8-ldlq             glvq:d=8,ldlq=1                          both
run glvq24-ldlq            glvq:d=24,group=576,ldlq=1               both
run glvq8                  glvq:d=8                                 both
run glvq8-ldlq-mu0-none    glvq:d=8,ldlq=1,mu=0                     none
run glvq8-ldlq-mu0-nosdba-none glvq:d=8,ldlq=1,mu=0,sdba=0          none
run glvq8-mu0              glvq:d=8,mu=0                            both
run glvq24-mu0             glvq:d=24,group=576,mu=0                 both
run glvq24                 glvq:d=24,group=576                      both
