#!/usr/bin/env bash
# Stop the SLURM started by up.sh: cancel every job, then stop each daemon by the pid in its
# pid file. A pid is signalled only if /proc says it is that daemon (pid files outlive their
# process and pids are reused). SIGTERM all at once, wait up to 15 s, SIGKILL stragglers.
# Safe when nothing is up. Logs stay in /var/log/slurm so a failed CI run can print them.
set -uo pipefail

cancel_jobs() {
  [ -s /run/slurmctld.pid ] && command -v squeue >/dev/null || return 0
  local ids
  ids=$(timeout 5 squeue -h -o %A 2>/dev/null | sort -u)
  [ -n "$ids" ] || return 0
  timeout 5 scancel $ids 2>/dev/null
  for _ in $(seq 100); do  # KillWait=2 ends a submitit job in ~4 s
    [ -z "$(timeout 5 squeue -h 2>/dev/null)" ] && return 0
    sleep 0.1
  done
}

# pidfile:comm pairs, dependants first
daemons() {
  for f in /run/slurmd.pid /run/slurmd-*.pid; do [ -e "$f" ] && echo "$f:slurmd"; done
  echo /run/slurmctld.pid:slurmctld /run/slurmdbd.pid:slurmdbd
  echo /run/mysqld/mysqld.pid:mariadbd /run/munge/munged.pid:munged
}

cancel_jobs
signalled=""
for spec in $(daemons); do
  file=${spec%%:*} comm=${spec##*:}
  [ -s "$file" ] || { rm -f "$file"; continue; }
  pid=$(cat "$file")
  if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$comm" ]; then
    kill "$pid" 2>/dev/null && signalled="$signalled $pid"
  fi
  rm -f "$file"
done
for _ in $(seq 150); do
  alive=""
  for pid in $signalled; do [ -d "/proc/$pid" ] && alive="$alive $pid"; done
  [ -z "$alive" ] && break
  sleep 0.1
done
for pid in $signalled; do [ -d "/proc/$pid" ] && kill -9 "$pid" 2>/dev/null; done
exit 0
