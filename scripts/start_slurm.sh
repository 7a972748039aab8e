#!/usr/bin/env bash
# Start a real single-node Slurm (munged, slurmctld, slurmd) on this machine, for the tests
# of the sbatch wrapper. Needs root; installs Debian's packages if they are missing.
# Idempotent: running it again with the daemons up only checks that the node is idle.
#
#   bash scripts/start_slurm.sh          # install if needed, configure, start, wait for idle
#   bash scripts/start_slurm.sh stop     # stop the daemons this script started
set -euo pipefail

CONF_DIR=/etc/slurm
SPOOL=/var/spool/slurm
LOG_DIR=/var/log/slurm
RUN_DIR=/run/slurm

log() { echo "start_slurm: $*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
  log "must run as root (it installs packages and starts daemons)"
  exit 1
fi

if [ "${1:-}" = "stop" ]; then
  for pidfile in "$RUN_DIR/slurmd.pid" "$RUN_DIR/slurmctld.pid" /run/munge/munged.pid; do
    if [ -f "$pidfile" ]; then
      kill "$(cat "$pidfile")" 2>/dev/null || true
      rm -f "$pidfile"
    fi
  done
  exit 0
fi

# 1. Packages (Debian 12: Slurm 22.05).
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v sbatch >/dev/null \
  || ! command -v munged >/dev/null; then
  log "installing slurmctld slurmd slurm-client munge"
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends slurmctld slurmd slurm-client munge
fi

# 2. munge: a key, its run dir, the daemon as user munge.
if [ ! -s /etc/munge/munge.key ]; then
  mungekey -c -f -k /etc/munge/munge.key
fi
chown munge:munge /etc/munge/munge.key
chmod 400 /etc/munge/munge.key
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge
chmod 755 /run/munge
if ! pgrep -u munge -x munged >/dev/null; then
  log "starting munged"
  runuser -u munge -- munged --force
fi
for _ in $(seq 50); do
  if munge -n </dev/null | unmunge >/dev/null 2>&1; then break; fi
  sleep 0.1
done
munge -n </dev/null | unmunge >/dev/null

# 3. slurm.conf for this one node, with the CPUs and memory slurmd sees.
host="$(hostname -s)"
node_line="$(slurmd -C | head -n 1)"
cpus="$(sed -n 's/.* CPUs=\([0-9]*\).*/\1/p' <<<"$node_line")"
memory="$(sed -n 's/.* RealMemory=\([0-9]*\).*/\1/p' <<<"$node_line")"
mkdir -p "$CONF_DIR" "$SPOOL/ctld" "$SPOOL/d" "$LOG_DIR" "$RUN_DIR"
chown -R slurm:slurm "$SPOOL" "$LOG_DIR" "$RUN_DIR"

cat >"$CONF_DIR/slurm.conf" <<EOF
# Written by scripts/start_slurm.sh: a single-node cluster for stop-and-go's tests.
ClusterName=stopandgo
SlurmctldHost=$host
AuthType=auth/munge
CryptoType=crypto/munge
SlurmUser=slurm
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$SPOOL/ctld
SlurmdSpoolDir=$SPOOL/d
SlurmctldPidFile=$RUN_DIR/slurmctld.pid
SlurmdPidFile=$RUN_DIR/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
# cgroup tracking: scancel reaches every process of a step, setsid'd ones included
# (proctrack/linuxproc lets processes that start their own session escape).
ProctrackType=proctrack/cgroup
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
MailProg=/bin/true
ReturnToService=2
KillWait=10
MinJobAge=300
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
NodeName=$host CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
EOF
cat >"$CONF_DIR/cgroup.conf" <<EOF
CgroupPlugin=cgroup/v1
ConstrainCores=no
ConstrainRAMSpace=no
ConstrainDevices=no
EOF

# 4. The daemons.
if ! pgrep -x slurmctld >/dev/null; then
  log "starting slurmctld"
  slurmctld
fi
if ! pgrep -x slurmd >/dev/null; then
  log "starting slurmd"
  slurmd
fi

# 5. Wait until the node is idle (a second or two), resuming it if it came up drained.
for i in $(seq 60); do
  state="$(sinfo -h -n "$host" -o %T 2>/dev/null | head -n 1 || true)"
  case "$state" in
    idle | mixed | allocated)
      log "slurm is up: node $host $state"
      exit 0
      ;;
    down* | drain* | *drained*)
      scontrol update NodeName="$host" State=RESUME >/dev/null 2>&1 || true
      ;;
  esac
  if [ "$i" -eq 60 ]; then
    log "node $host did not become idle (state: ${state:-unknown}); see $LOG_DIR/slurmctld.log and $LOG_DIR/slurmd.log"
    tail -n 20 "$LOG_DIR/slurmctld.log" "$LOG_DIR/slurmd.log" >&2 || true
    exit 1
  fi
  sleep 0.5
done
