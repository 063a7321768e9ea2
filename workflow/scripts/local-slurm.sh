#!/usr/bin/env bash
# A single-node SLURM cluster on this machine, from Debian's packages, to run the workflow through
# real sbatch jobs (tests/test_slurm.py, README "SLURM"). Needs root and apt-get. Idempotent.
#
#   bash workflow/scripts/local-slurm.sh up       # install slurm-wlm + munge if needed, start the daemons
#   bash workflow/scripts/local-slurm.sh status   # sinfo, or exit 1 when the cluster is down
#   bash workflow/scripts/local-slurm.sh down     # stop the daemons (packages and config stay)
#
# One node named after `hostname -s` with this machine's CPUs and memory and two fake GPUs (GRES
# gpu of type `fake`, so --gpus=1 and --gpus=fake:1 are accepted and counted; there is no device
# behind them); one
# partition `debug`; no accounting database (so no sacct: run the executor plugin with
# --slurm-status-command squeue), slurmctld and slurmd as root.
set -euo pipefail

CONF=/etc/slurm
SPOOL=/var/spool/slurm-local
LOG=/var/log/slurm-local
NODE=$(hostname -s)

need_root() {
  [ "$(id -u)" = 0 ] || { echo "local-slurm: must run as root" >&2; exit 2; }
}

running() {
  timeout 5 sinfo -h -o %T >/dev/null 2>&1
}

install_packages() {
  if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    command -v apt-get >/dev/null || { echo "local-slurm: apt-get not found; install slurm-wlm and munge yourself" >&2; exit 2; }
    echo "local-slurm: installing slurm-wlm and munge" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
  fi
}

write_config() {
  local cpus mem
  cpus=$(nproc)
  mem=$(( $(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo) - 512 ))  # MB, leaving some for the OS
  mkdir -p "$CONF" "$SPOOL/ctld" "$SPOOL/d" "$LOG"
  cat > "$CONF/slurm.conf" <<EOF
# Written by workflow/scripts/local-slurm.sh: a single-node cluster for local tests.
ClusterName=maln-local
SlurmctldHost=$NODE
AuthType=auth/munge
SlurmUser=root
SlurmdUser=root
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
StateSaveLocation=$SPOOL/ctld
SlurmdSpoolDir=$SPOOL/d
SlurmctldPidFile=/run/slurmctld-local.pid
SlurmdPidFile=/run/slurmd-local.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
SchedulerType=sched/backfill
GresTypes=gpu
NodeName=$NODE CPUs=$cpus RealMemory=$mem Gres=gpu:fake:2 State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
  # Two fake GPUs: placeholder files stand in for the device files slurmd counts; no GPU behind them.
  touch /run/maln-fake-gpu0 /run/maln-fake-gpu1
  cat > "$CONF/gres.conf" <<EOF
NodeName=$NODE Name=gpu Type=fake File=/run/maln-fake-gpu[0-1]
EOF
}

start_munge() {
  if ! pgrep -x munged >/dev/null; then
    mkdir -p /etc/munge /var/lib/munge /var/log/munge /run/munge
    if [ ! -s /etc/munge/munge.key ]; then
      dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    fi
    chown -R munge:munge /etc/munge /var/lib/munge /var/log/munge /run/munge 2>/dev/null || true
    chmod 400 /etc/munge/munge.key
    if id munge >/dev/null 2>&1; then
      runuser -u munge -- /usr/sbin/munged
    else
      /usr/sbin/munged --force
    fi
  fi
}

up() {
  need_root
  if running; then
    echo "local-slurm: already up" >&2
    sinfo
    return 0
  fi
  install_packages
  write_config
  start_munge
  pgrep -x slurmctld >/dev/null || slurmctld
  pgrep -x slurmd >/dev/null || slurmd
  for _ in $(seq 1 60); do
    if running && sinfo -h -o %T | grep -qE "idle|mix|alloc"; then
      sinfo
      return 0
    fi
    sleep 0.5
  done
  echo "local-slurm: the node did not come up; see $LOG/slurmctld.log and $LOG/slurmd.log" >&2
  scontrol update nodename="$NODE" state=resume >/dev/null 2>&1 || true
  exit 1
}

down() {
  need_root
  pkill -x slurmd 2>/dev/null || true
  pkill -x slurmctld 2>/dev/null || true
  pkill -x munged 2>/dev/null || true
  for _ in $(seq 1 20); do
    pgrep -x slurmd >/dev/null || pgrep -x slurmctld >/dev/null || break
    sleep 0.25
  done
  echo "local-slurm: down" >&2
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) running && sinfo ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
