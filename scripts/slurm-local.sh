#!/usr/bin/env bash
# A real SLURM controller and node on loopback, state in one folder (the recipe of the tests'
# tests/support/slurm_cluster.rs and ../shared/notes/slurm-local.md), for running sharded
# benchmarks by hand:
#   scripts/slurm-local.sh start DIR     # prints: export SLURM_CONF=DIR/slurm.conf
#   SLURM_CONF=DIR/slurm.conf brainscale bench-whole-brain ... --slurm-shards 4 --wait
#   scripts/slurm-local.sh stop DIR
# Needs slurmctld, slurmd, slurm-client and munge (scripts/install-deps.sh installs them).
set -euo pipefail
cmd=${1:-}
dir=${2:-}
if [[ -z "$cmd" || -z "$dir" ]]; then
  echo "usage: $0 start|stop DIR" >&2
  exit 2
fi
export PATH="$PATH:/usr/sbin:/sbin"

stop() {
  for f in slurmd.pid slurmctld.pid munge/munged.pid; do
    if [[ -f "$dir/$f" ]]; then
      pid=$(cat "$dir/$f")
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 100); do [[ -d /proc/$pid ]] || break; sleep 0.1; done
      rm -f "$dir/$f"
    fi
  done
}

case "$cmd" in
  stop) stop; exit 0 ;;
  start) ;;
  *) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac

for t in munged slurmctld slurmd sbatch squeue sinfo; do
  command -v "$t" >/dev/null || { echo "$t not found: install slurmctld slurmd slurm-client munge" >&2; exit 1; }
done
if [[ -e "$dir/slurmctld.pid" ]]; then
  echo "$dir holds a running cluster ($0 stop $dir first)" >&2
  exit 1
fi
mkdir -p "$dir"/{munge,state,spool,log}
dir=$(cd "$dir" && pwd)
m="$dir/munge"
rm -f "$m/munge.key"
head -c 1024 /dev/urandom > "$m/munge.key"
chmod 400 "$m/munge.key"
chmod 700 "$m"
munged --force --key-file="$m/munge.key" --socket="$m/munge.sock" --pid-file="$m/munged.pid" \
  --log-file="$m/munged.log" --seed-file="$m/munged.seed"

host=$(hostname -s)
user=$(id -un)
port=$((21000 + ($$ % 4000) * 2))
mem=$(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo)
cat > "$dir/slurm.conf" <<EOF
ClusterName=bslocal
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$port
SlurmdPort=$((port + 1))
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$m/munge.sock
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmUser=$user
SlurmdUser=$user
ReturnToService=2
MpiDefault=none
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
NodeName=$host NodeAddr=127.0.0.1 CPUs=$(nproc) RealMemory=$mem State=UNKNOWN
PartitionName=local Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF="$dir/slurm.conf"
slurmctld -c
slurmd
for _ in $(seq 150); do
  [[ "$(sinfo -h -o %T 2>/dev/null)" == idle ]] && { echo "export SLURM_CONF=$SLURM_CONF"; exit 0; }
  sleep 0.2
done
echo "the node never became idle; logs in $dir/log" >&2
stop
exit 1
