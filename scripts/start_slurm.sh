#!/usr/bin/env bash
# Start a real two-node Slurm cluster on this one machine, for the tests of the sbatch
# wrapper: munged and slurmctld on this host, and one slurmd per compute node, each in its
# own network namespace (own address, via a bridge and veth pairs) and its own UTS
# namespace (own hostname). Anything that wrongly assumes one host (a rendezvous on
# localhost, a kill that reaches one node only) fails here as on a real cluster. The nodes
# share this machine's filesystem, as cluster nodes share their run dir. Where network
# namespaces cannot be made, it falls back to two slurmd on this host (slurmd -N NAME, a
# port each; the two-node tests then skip, as they need a node's own address).
# Needs root; installs Debian's packages if they are missing.
# Idempotent: running it again with everything up only checks that the nodes are idle; a
# node whose slurmd is gone (killed) is started again.
#
#   bash scripts/start_slurm.sh          # install if needed, configure, start, wait for idle
#   bash scripts/start_slurm.sh stop     # stop the daemons this script started
#
# Layout: bridge sgbr0 10.77.0.1/24 (this host, the controller); node1 10.77.0.11 in
# netns slurm-node1, node2 10.77.0.12 in netns slurm-node2; names in /etc/hosts.
set -euo pipefail

CONF_DIR=/etc/slurm
SPOOL=/var/spool/slurm
LOG_DIR=/var/log/slurm
RUN_DIR=/run/slurm
BRIDGE=sgbr0
SUBNET=10.77.0
CONTROLLER_ADDR=$SUBNET.1
NODES=(node1 node2)
HOSTS_MARK="# start_slurm.sh"

log() { echo "start_slurm: $*" >&2; }
node_addr() { echo "$SUBNET.$((10 + ${1#node}))"; }
netns_of() { echo "slurm-$1"; }
slurmd_pidfile() { echo "$RUN_DIR/slurmd-$1.pid"; }
alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

if [ "$(id -u)" -ne 0 ]; then
  log "must run as root (it installs packages, makes network namespaces and starts daemons)"
  exit 1
fi

stop_daemons() {
  local pidfile pid
  for pidfile in "$RUN_DIR"/slurmd*.pid "$RUN_DIR/slurmctld.pid"; do
    [ -f "$pidfile" ] || continue
    pid="$(cat "$pidfile")"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    rm -f "$pidfile"
  done
}

if [ "${1:-}" = "stop" ]; then
  stop_daemons
  if [ -f /run/munge/munged.pid ]; then
    kill "$(cat /run/munge/munged.pid)" 2>/dev/null || true
    rm -f /run/munge/munged.pid
  fi
  exit 0
fi

# 1. Packages (Debian 12: Slurm 22.05).
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v sbatch >/dev/null \
  || ! command -v munged >/dev/null || ! command -v ip >/dev/null || ! command -v nsenter >/dev/null; then
  log "installing slurmctld slurmd slurm-client munge iproute2"
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends slurmctld slurmd slurm-client munge \
    iproute2 util-linux
fi

# 2. munge: a key, its run dir, the daemon as user munge. Its socket is a file, so the
# daemons in the node namespaces reach it too.
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

# 3. The network: a bridge on this host, and per node a namespace with one end of a veth
# pair (the other end on the bridge). Where namespaces cannot be made (no CAP_NET_ADMIN),
# the fallback is two slurmd on this host (slurmd -N NAME, a port each): a real two-node
# Slurm, but the nodes share this host's address and hostname.
make_network() {
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    log "creating bridge $BRIDGE ($CONTROLLER_ADDR/24)"
    ip link add "$BRIDGE" type bridge || return 1
    ip addr add "$CONTROLLER_ADDR/24" dev "$BRIDGE" || return 1
  fi
  ip link set "$BRIDGE" up || return 1
  local node ns
  for node in "${NODES[@]}"; do
    ns="$(netns_of "$node")"
    if ! ip netns list | grep -qw "$ns"; then
      log "creating network namespace $ns ($(node_addr "$node"))"
      ip link del "veth-$node" 2>/dev/null || true
      ip netns add "$ns" || return 1
      ip link add "veth-$node" type veth peer name eth0 netns "$ns" || return 1
      ip link set "veth-$node" master "$BRIDGE" || return 1
      ip -n "$ns" addr add "$(node_addr "$node")/24" dev eth0 || return 1
    fi
    ip link set "veth-$node" up && ip -n "$ns" link set lo up && ip -n "$ns" link set eth0 up || return 1
  done
}
if make_network; then
  netns=1
else
  netns=0
  log "network namespaces are not available here: two slurmd on this host instead (slurmd -N, a port each)"
  node_addr() { echo 127.0.0.1; }
  CONTROLLER_ADDR=127.0.0.1
fi
# Names: every node resolves its own and the others' hostnames to their addresses.
hosts="$(grep -v "$HOSTS_MARK" /etc/hosts || true)"
{
  printf '%s\n' "$hosts"
  for node in "${NODES[@]}"; do printf '%s %s %s\n' "$(node_addr "$node")" "$node" "$HOSTS_MARK"; done
} >/etc/hosts.start_slurm
cat /etc/hosts.start_slurm >/etc/hosts # in place: /etc/hosts may be a bind mount
rm -f /etc/hosts.start_slurm

# 4. slurm.conf for the two nodes. One CPU each: two one-CPU jobs at a time on this
# two-core machine, and a two-node job of one task per node takes both.
host="$(hostname -s)"
memory="$(slurmd -C | sed -n 's/.* RealMemory=\([0-9]*\).*/\1/p' | head -n 1)"
node_memory=$((memory / ${#NODES[@]}))
mkdir -p "$CONF_DIR" "$SPOOL/ctld" "$LOG_DIR" "$RUN_DIR"
for node in "${NODES[@]}"; do mkdir -p "$SPOOL/d-$node"; done
chown -R slurm:slurm "$SPOOL" "$LOG_DIR" "$RUN_DIR"

conf="$(mktemp)"
cat >"$conf" <<EOF
# Written by scripts/start_slurm.sh: a two-node cluster on one machine for stop-and-go's tests.
ClusterName=stopandgo
SlurmctldHost=$host($CONTROLLER_ADDR)
AuthType=auth/munge
CryptoType=crypto/munge
SlurmUser=slurm
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$SPOOL/ctld
# %n: each node's slurmd keeps its own spool, pid file and log.
SlurmdSpoolDir=$SPOOL/d-%n
SlurmctldPidFile=$RUN_DIR/slurmctld.pid
SlurmdPidFile=$RUN_DIR/slurmd-%n.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd-%n.log
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
# cgroup tracking: scancel reaches every process of a step, setsid'd ones included
# (proctrack/linuxproc lets processes that start their own session escape). Debian's
# build keeps each node's cgroups apart (slurm_<node>/...).
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
EOF
for node in "${NODES[@]}"; do
  port=""
  if [ "$netns" = 0 ]; then port=" Port=$((6817 + ${node#node}))"; fi # 6818, 6819 on the one host
  echo "NodeName=$node NodeAddr=$(node_addr "$node") NodeHostname=$node$port CPUs=1 RealMemory=$node_memory State=UNKNOWN" >>"$conf"
done
echo "PartitionName=debug Nodes=$(IFS=,; echo "${NODES[*]}") Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES" >>"$conf"

if ! cmp -s "$conf" "$CONF_DIR/slurm.conf"; then
  # A new layout (or the old single-node one): daemons with the old config must go.
  if [ -f "$CONF_DIR/slurm.conf" ]; then log "slurm.conf changed: restarting the daemons"; fi
  stop_daemons
  mv "$conf" "$CONF_DIR/slurm.conf"
  chmod 644 "$CONF_DIR/slurm.conf"
  fresh_state=1
else
  rm -f "$conf"
  fresh_state=0
fi
cat >"$CONF_DIR/cgroup.conf" <<EOF
CgroupPlugin=cgroup/v1
ConstrainCores=no
ConstrainRAMSpace=no
ConstrainDevices=no
EOF

# 5. The daemons: slurmctld here; each slurmd inside its node's network namespace (nsenter:
# unlike `ip netns exec`, it leaves the mounts, /sys/fs/cgroup included, as they are) with
# its own hostname (unshare --uts), so the jobs it starts see the node's name and address.
if ! alive "$RUN_DIR/slurmctld.pid"; then
  log "starting slurmctld"
  if [ "$fresh_state" = 1 ]; then slurmctld -c; else slurmctld; fi
fi
for node in "${NODES[@]}"; do
  if alive "$(slurmd_pidfile "$node")"; then continue; fi
  # A node that was lost (slurmd and slurmstepd killed) leaves its jobs' cgroups behind:
  # remove the empty ones (rmdir refuses any that still holds a process).
  find /sys/fs/cgroup/*/"slurm_$node" -mindepth 1 -depth -type d -exec rmdir {} \; 2>/dev/null || true
  if [ "$netns" = 1 ]; then
    log "starting slurmd for $node in netns $(netns_of "$node")"
    nsenter --net="/run/netns/$(netns_of "$node")" unshare --uts \
      sh -c "hostname $node && exec slurmd -N $node"
  else
    log "starting slurmd for $node on this host"
    slurmd -N "$node"
  fi
done

# 6. Wait until both nodes are idle, resuming any that came up down or drained.
for i in $(seq 90); do
  ready=0
  for node in "${NODES[@]}"; do
    state="$(sinfo -h -n "$node" -o %T 2>/dev/null | head -n 1 || true)"
    case "$state" in
      idle | mixed | allocated | completing) ready=$((ready + 1)) ;;
      down* | drain* | *drained* | "")
        if [ -n "$state" ]; then scontrol update NodeName="$node" State=RESUME >/dev/null 2>&1 || true; fi
        ;;
    esac
  done
  if [ "$ready" -eq "${#NODES[@]}" ]; then
    log "slurm is up: $(sinfo -h -N -o '%N %T' | tr '\n' ' ')"
    exit 0
  fi
  if [ "$i" -eq 90 ]; then
    log "the nodes did not become idle: $(sinfo -h -N -o '%N %T' 2>&1 | tr '\n' ' '); see $LOG_DIR/"
    tail -n 20 "$LOG_DIR/slurmctld.log" "$LOG_DIR"/slurmd-*.log >&2 || true
    exit 1
  fi
  sleep 0.5
done
