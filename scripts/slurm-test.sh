#!/bin/bash
# Tests scripts/slurm/ for real (issue 14): installs a single-node Slurm from Debian packages
# (slurmctld, slurmd, munge), starts the daemons, submits the whole chain on the default model
# (2 calibration shards, 2 layer-range jobs), waits, and compares the merged file with a
# single-process `llvq quantize --mode full` file, byte for byte.
# Usage (as root, from the repository): scripts/slurm-test.sh [REFERENCE.llvq]
# Environment: LLVQ (default target/release/llvq), WORK (default data/slurm-test), LLVQ_ARGS,
# QUANT_ARGS (as for submit.sh; the reference run gets the same flags).
set -euo pipefail
LLVQ=$(realpath "${LLVQ:-target/release/llvq}")
WORK=$(realpath -m "${WORK:-data/slurm-test}")
REF=${1:-}
mkdir -p "$WORK"
t0=$(date +%s)
if ! command -v slurmctld >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurmctld slurmd munge >/dev/null
fi
cpus=$(nproc)
mem=$(( $(grep MemTotal /proc/meminfo | awk '{print $2}') / 1024 - 1024 ))
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge /var/lib/munge
cat > /etc/slurm/slurm.conf <<CONF
ClusterName=llvq
SlurmctldHost=localhost
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
SlurmUser=root
SlurmdUser=root
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
NodeName=localhost CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=main Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
[ -f /etc/munge/munge.key ] || { mkdir -p /etc/munge; dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 2>/dev/null; }
chown -R munge:munge /etc/munge /run/munge /var/lib/munge 2>/dev/null || true
chmod 700 /etc/munge; chmod 400 /etc/munge/munge.key
pgrep -x munged >/dev/null || munged --force
pgrep -x slurmctld >/dev/null || slurmctld
pgrep -x slurmd >/dev/null || slurmd
for _ in $(seq 30); do sinfo -h -o %T 2>/dev/null | grep -qE 'idle|mixed' && break; sleep 1; done
sinfo
t1=$(date +%s)
OUT=$WORK/slurm.llvq
rm -rf "$OUT" "$WORK/run"
ids=$(WORK=$WORK/run LLVQ=$LLVQ SBATCH_ARGS="--cpus-per-task=$cpus --mem=0" scripts/slurm/submit.sh data/SmolLM2-135M-Instruct.Q4_1.gguf "$OUT" 2 2)
echo "submitted: $ids"
last=${ids##* }
while squeue -h -j "${ids// /,}" 2>/dev/null | grep -q .; do
  if squeue -h -j "${ids// /,}" -o %r | grep -q DependencyNeverSatisfied; then
    scancel ${ids}; echo "FAIL: a job failed; logs in $WORK/run/logs"; tail -n 5 "$WORK"/run/logs/*.out; exit 1
  fi
  sleep 10
done
t2=$(date +%s)
echo "eval of $OUT (job $last):"; cat "$WORK"/run/logs/llvq-eval-*.out || true
[ -f "$OUT" ] || { echo "FAIL: no merged file; logs in $WORK/run/logs"; tail -n 5 "$WORK"/run/logs/*.out; exit 1; }
if [ -z "$REF" ]; then
  REF=$WORK/single.llvq
  rm -f "$REF"
  "$LLVQ" quantize --mode full --out "$REF" ${LLVQ_ARGS:-} ${QUANT_ARGS:-} >/dev/null
fi
echo "slurm chain: $((t2 - t1)) s (setup $((t1 - t0)) s)"
if cmp "$OUT" "$REF"; then echo "IDENTICAL: $OUT == $REF"; else echo "FAIL: $OUT differs from $REF"; exit 1; fi
