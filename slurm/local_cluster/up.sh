#!/usr/bin/env bash
# A real, throw-away SLURM on this machine for the slurm test tier and CI (Debian 12, root,
# no systemd): munged, MariaDB + slurmdbd (accounting), slurmctld and slurmd on localhost.
#
#   bash slurm/local_cluster/up.sh        # ~3 s with the packages present, ~10-40 s first time
#   bash slurm/local_cluster/down.sh      # ~3 s
#
# Idempotent: installs what is missing, stops whatever an earlier run left, wipes job state
# and the accounting database, writes the config, starts the daemons, waits until the node
# is idle. Why each piece is there:
#   - slurmdbd: submitit reads job states only from sacct; without accounting a cancelled or
#     killed job never reads as done and waiting on it hangs forever.
#   - FirstJobId from the clock: wiping the state restarts job ids, and submitit trusts any
#     result pickle it finds under a reused id.
#   - the scheduler knobs make an array start in one pass, a requeue restart in ~7 s instead
#     of ~2 min, and scancel end a submitit job in ~4 s instead of 30 s.
#
# Knobs (environment):
#   LOCAL_SLURM_CPUS=8          CPUs the node advertises (more than the machine has is fine)
#   LOCAL_SLURM_GPUS=0          N fake GPUs (gres/gpu on char devices): real --gpus/--gres
#                               scheduling and CUDA_VISIBLE_DEVICES, no CUDA
#   LOCAL_SLURM_NODES=1         N>1 emulates nodes n1..nN on 127.0.0.1 (one slurmd each)
#   LOCAL_SLURM_ACCOUNTING=1    0 = no MariaDB/slurmdbd (sacct fails; only for experiments)
#   LOCAL_SLURM_MAX_ARRAY=1001  MaxArraySize (SLURM's default)
set -euo pipefail

CPUS=${LOCAL_SLURM_CPUS:-8}
GPUS=${LOCAL_SLURM_GPUS:-0}
NODES=${LOCAL_SLURM_NODES:-1}
ACCOUNTING=${LOCAL_SLURM_ACCOUNTING:-1}
MAX_ARRAY=${LOCAL_SLURM_MAX_ARRAY:-1001}
HERE=$(cd "$(dirname "$0")" && pwd)
CONF=/etc/slurm
STATE=/var/lib/slurm
LOGS=/var/log/slurm
START=$(date +%s.%N)

say() { awk -v t0="$START" -v t1="$(date +%s.%N)" -v m="$*" 'BEGIN { printf "[local-slurm %5.1fs] %s\n", t1 - t0, m }'; }

# until SECONDS CMD...: retry CMD every 0.1 s until it succeeds, or fail after SECONDS.
until_ok() {
  local tries=$(($1 * 10))
  shift
  for _ in $(seq "$tries"); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "local-slurm: gave up waiting for: $*" >&2
  return 1
}

install_missing() {
  local wanted="munge slurmctld slurmd slurm-client" missing=""
  [ "$ACCOUNTING" = 1 ] && wanted="$wanted slurmdbd mariadb-server"
  for pkg in $wanted; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || missing="$missing $pkg"
  done
  [ -z "$missing" ] && return 0
  echo "[local-slurm] installing:$missing"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
}

wipe_state() {
  bash "$HERE/down.sh"
  rm -rf "${STATE:?}/slurmctld" "${STATE:?}/slurmd" "$LOGS"/*.log
  mkdir -p "$STATE/slurmctld" "$STATE/slurmd" "$LOGS"
  chown slurm:slurm "$STATE/slurmctld" "$LOGS"
}

# Fake GPUs: gres needs File= entries that are character devices; /dev/null's numbers will do.
gres_lines() {
  rm -f "$CONF/gres.conf"
  [ "$GPUS" -gt 0 ] || return 0
  mkdir -p "$STATE/fakegpu"
  for i in $(seq 0 $((GPUS - 1))); do
    [ -c "$STATE/fakegpu/gpu$i" ] || mknod "$STATE/fakegpu/gpu$i" c 1 3
  done
  echo "Name=gpu File=$STATE/fakegpu/gpu[0-$((GPUS - 1))]" >"$CONF/gres.conf"
  echo "GresTypes=gpu"
}

# The node line(s) and where each slurmd keeps its pid, spool and log.
node_lines() {
  local mem gres=""
  mem=$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
  [ "$GPUS" -gt 0 ] && gres="Gres=gpu:$GPUS "
  if [ "$NODES" -gt 1 ]; then
    for n in $(seq -f 'n%g' 1 "$NODES"); do
      getent hosts "$n" >/dev/null || echo "127.0.0.1 $n" >>/etc/hosts  # MASTER_ADDR must resolve
      mkdir -p "$STATE/slurmd/$n"
    done
    echo "SlurmdPidFile=/run/slurmd-%n.pid"
    echo "SlurmdSpoolDir=$STATE/slurmd/%n"
    echo "SlurmdLogFile=$LOGS/slurmd-%n.log"
    echo "NodeName=n[1-$NODES] NodeHostname=localhost NodeAddr=127.0.0.1 Port=17001-$((17000 + NODES)) ${gres}CPUs=$CPUS RealMemory=$mem State=UNKNOWN"
  else
    echo "SlurmdPidFile=/run/slurmd.pid"
    echo "SlurmdSpoolDir=$STATE/slurmd"
    echo "SlurmdLogFile=$LOGS/slurmd.log"
    echo "NodeName=localhost NodeAddr=127.0.0.1 ${gres}CPUs=$CPUS RealMemory=$mem State=UNKNOWN"
  fi
}

write_slurm_conf() {
  local accounting="AccountingStorageType=accounting_storage/none"
  [ "$ACCOUNTING" = 1 ] && accounting="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost"
  cat >"$CONF/slurm.conf" <<EOF
# Written by slurm/local_cluster/up.sh; rewritten on every bring-up.
ClusterName=interp
SlurmctldHost=localhost
SlurmUser=slurm
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
ReturnToService=2
SlurmctldPidFile=/run/slurmctld.pid
SlurmctldLogFile=$LOGS/slurmctld.log
StateSaveLocation=$STATE/slurmctld
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
$accounting
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MaxArraySize=$MAX_ARRAY
# ids never repeat across bring-ups (the state is wiped; MaxJobId is 67043328)
FirstJobId=$(($(date +%s) % 60000000 + 1))
# fast CI: arrays start in one pass; a begin-time/requeued job is looked at every second
SchedulerParameters=batch_sched_delay=0,sched_interval=1,bf_interval=1
# a requeued job may restart after cred_expire+1 s (default 120)
AuthInfo=cred_expire=5
# submitit ignores SIGTERM, so scancel waits for the SIGKILL that follows KillWait (default 30)
KillWait=2
# advertise more CPUs than the machine has, so small tasks run side by side
SlurmdParameters=config_overrides
$(gres_lines)
$(node_lines)
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
}

start_munge() {
  if [ ! -s /etc/munge/munge.key ]; then
    mungekey --create --keyfile=/etc/munge/munge.key
    chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
  fi
  mkdir -p /run/munge && chown munge:munge /run/munge  # systemd would create it
  su -s /bin/sh munge -c /usr/sbin/munged
  until_ok 10 sh -c 'munge -n | unmunge'
}

# MariaDB on its unix socket only, a fresh accounting database, then slurmdbd.
start_accounting() {
  mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
  [ -d /var/lib/mysql/mysql ] || mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
  setsid /usr/sbin/mariadbd --user=mysql --skip-networking --pid-file=/run/mysqld/mysqld.pid \
    --socket=/run/mysqld/mysqld.sock --log-error="$LOGS/mariadb.log" </dev/null >/dev/null 2>&1 &
  until_ok 30 mariadb-admin ping
  mariadb <<'SQL'
DROP DATABASE IF EXISTS slurm_acct_db;
CREATE DATABASE slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'local-slurm';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
SQL
  cat >"$CONF/slurmdbd.conf" <<EOF
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
SlurmUser=slurm
LogFile=$LOGS/slurmdbd.log
PidFile=/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=local-slurm
StorageLoc=slurm_acct_db
EOF
  chown slurm:slurm "$CONF/slurmdbd.conf" && chmod 600 "$CONF/slurmdbd.conf"
  /usr/sbin/slurmdbd
  until_ok 30 sacctmgr -n list cluster
}

start_slurm() {
  local names=localhost
  [ "$NODES" -gt 1 ] && names=$(seq -f 'n%g' 1 "$NODES")
  /usr/sbin/slurmctld
  for n in $names; do /usr/sbin/slurmd -N "$n"; done
  until_ok 30 sh -c "[ \$(sinfo -h -N -t idle -o %N | wc -l) -eq $NODES ]"
  # slurmctld registers itself with slurmdbd a moment after the node is idle
  if [ "$ACCOUNTING" = 1 ]; then
    until_ok 15 sh -c 'sacctmgr -n -P list cluster format=cluster,controlport | grep -q "^interp|6817"'
  fi
}

[ "$(id -u)" = 0 ] || { echo "local-slurm: run as root (it starts system daemons)" >&2; exit 1; }
install_missing
say "packages present"
wipe_state
write_slurm_conf
start_munge
say "munged up"
if [ "$ACCOUNTING" = 1 ]; then
  start_accounting
  say "mariadb + slurmdbd up"
fi
start_slurm
say "ready: $NODES node(s) x $CPUS CPUs, $GPUS fake GPU(s), MaxArraySize=$MAX_ARRAY"
sinfo
