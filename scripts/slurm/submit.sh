#!/bin/bash
# Quantize a model on a Slurm cluster with one command (issue 14):
#   calibrate shards (array) → merge Hessians → quantize layer ranges (array) → merge parts → eval.
# Usage: scripts/slurm/submit.sh MODEL OUT [SHARDS] [JOBS]
# Environment: LLVQ (the binary, default `llvq` on PATH), LLVQ_ARGS (calibration flags given to
# calibrate and quantize alike, e.g. "--calib data/calib.txt --calib-seqs 64"), QUANT_ARGS
# (quantize only: --method, --seed, --rotate, --damp, --max-memory), WORK (default OUT.work:
# Hessians and parts, on a shared filesystem), EVAL_TEXT / EVAL_ARGS (eval), SBATCH_ARGS (extra
# sbatch flags: partition, time, memory). Prints the job ids, the eval's last.
set -euo pipefail
[ $# -ge 2 ] || { sed -n 2,10p "$0"; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
export MODEL=$1 OUT=$2 SHARDS=${3:-4} JOBS=${4:-4}
export WORK=${WORK:-$OUT.work} LLVQ=${LLVQ:-llvq} LLVQ_ARGS=${LLVQ_ARGS:-} QUANT_ARGS=${QUANT_ARGS:-}
export EVAL_TEXT=${EVAL_TEXT:-} EVAL_ARGS=${EVAL_ARGS:-}
mkdir -p "$WORK/logs"
sb() { sbatch --parsable --export=ALL --chdir="$PWD" --output="$WORK/logs/%x-%A_%a.out" ${SBATCH_ARGS:-} "$@"; }
c=$(sb --job-name=llvq-calibrate --array=0-$((SHARDS - 1)) "$here/calibrate.sbatch")
m=$(sb --job-name=llvq-merge-h --dependency=afterok:$c "$here/merge-hessians.sbatch")
q=$(sb --job-name=llvq-quantize --dependency=afterok:$m --array=0-$((JOBS - 1)) "$here/quantize.sbatch")
p=$(sb --job-name=llvq-merge --dependency=afterok:$q "$here/merge-parts.sbatch")
e=$(sb --job-name=llvq-eval --dependency=afterok:$p "$here/eval.sbatch")
echo "$c $m $q $p $e"
