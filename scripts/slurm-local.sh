#!/usr/bin/env bash
# A real single-node SLURM on this machine, for trying `launch.cluster: slurm` and for the
# tests marked `slurm`. Debian/Ubuntu, run as root:  make slurm-local
#
# Installs the Debian packages (munge, slurmctld, slurmd, slurm-client, and slurmdbd with
# MariaDB so that `sacct` answers: submitit reads job states through it), writes a
# slurm.conf for this host (its real cpus and memory, partition `debug` as default), and
# starts the daemons directly, without systemd or cgroups (proctrack/linuxproc, task/none),
# so it also works inside containers. Re-running when everything is up is quick and exits 0.
# Exits non-zero, saying why, when SLURM cannot be brought up.
set -euo pipefail

CLUSTER=avsf-local
PARTITION=debug
READY_WAIT_S=60               # bound on every wait for a daemon
LOG_DIR=/var/log/slurm
CONF=/etc/slurm/slurm.conf
DBD_CONF=/etc/slurm/slurmdbd.conf
DB_NAME=slurm_acct_db
DB_USER=slurm
PACKAGES=(munge slurmctld slurmd slurm-client slurmdbd mariadb-server)

say() { echo "slurm-local: $*"; }
die() { echo "slurm-local: error: $*" >&2; exit 1; }

[[ $(id -u) -eq 0 ]] || die "must run as root (it installs packages and starts daemons); try: sudo make slurm-local"
command -v apt-get >/dev/null || die "needs a Debian or Ubuntu machine (apt-get not found)"

node_state() {  # compact state of this host's node, empty when the controller does not answer
  timeout 10 sinfo -h -N -n "$(hostname -s)" -o %t 2>/dev/null | head -n1 || true
}

accounting_up() { timeout 10 sacct -n -X -S now >/dev/null 2>&1; }

slurm_up() {  # every daemon answers and the node takes jobs; quick to fail (no sinfo timeout)
  [[ -f $CONF ]] && command -v scontrol >/dev/null || return 1
  timeout 5 scontrol show slurmd >/dev/null 2>&1 || return 1  # this machine's slurmd
  timeout 5 scontrol ping >/dev/null 2>&1 || return 1         # the controller
  [[ $(node_state) =~ ^(idle|mix|alloc|comp)$ ]] || return 1   # the controller's view of the node
  accounting_up                                                # slurmdbd, for sacct
}

start=$SECONDS
if slurm_up; then
  say "already up: node $(hostname -s) is $(node_state) in partition $PARTITION"
  exit 0
fi

# --------------------------------------------------------------------------- packages

missing_packages() {
  local pkg
  for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f '${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || echo "$pkg"
  done
}

install_packages() {
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >"$LOG_DIR/apt.log" 2>&1
}

mkdir -p "$LOG_DIR"
mapfile -t missing < <(missing_packages)
if ((${#missing[@]})); then
  say "installing ${missing[*]}"
  # A package's own start-up (systemd or init.d) would race ours: hold it off while installing,
  # unless the machine already has a policy.
  own_policy=""
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    own_policy=/usr/sbin/policy-rc.d
    trap '[[ -n $own_policy ]] && rm -f "$own_policy"' EXIT
  fi
  if ! install_packages "${missing[@]}"; then
    say "package lists may be missing or stale: apt-get update"
    apt-get update -q >"$LOG_DIR/apt-update.log" 2>&1 || die "apt-get update failed (see $LOG_DIR/apt-update.log)"
    install_packages "${missing[@]}" || die "could not install ${missing[*]} (see $LOG_DIR/apt.log)"
  fi
  if [[ -n $own_policy ]]; then rm -f "$own_policy"; own_policy=""; fi
fi

# --------------------------------------------------------------------------- helpers

wait_for() {  # wait_for WHAT COMMAND...: poll COMMAND until it succeeds, at most READY_WAIT_S
  shift  # WHAT only names the wait for the reader
  local deadline=$((SECONDS + READY_WAIT_S))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || return 1
    sleep 0.5
  done
}

pid_alive() { [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

stop_pidfile() {  # stop a daemon this script started, by the pid it wrote
  local pidfile=$1
  if pid_alive "$pidfile"; then
    local pid; pid=$(cat "$pidfile")
    kill "$pid"
    wait_for "pid $pid to exit" bash -c "! kill -0 $pid" || kill -9 "$pid" 2>/dev/null || true
  fi
}

install_if_changed() {  # install_if_changed TARGET MODE OWNER < content; prints "changed" if so
  local target=$1 mode=$2 owner=$3 tmp
  tmp=$(mktemp)
  cat >"$tmp"
  if [[ -f $target ]] && cmp -s "$tmp" "$target"; then
    rm -f "$tmp"
  else
    install -m "$mode" -o "$owner" "$tmp" "$target"
    rm -f "$tmp"
    echo changed
  fi
}

# --------------------------------------------------------------------------- munge

# Debian's package generates a key; a machine where that did not happen gets one here.
if [[ ! -s /etc/munge/munge.key ]]; then
  say "generating a munge key"
  mungekey --create --force --keyfile /etc/munge/munge.key
fi
chown munge:munge /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key
install -d -o munge -g munge -m 0755 /run/munge
install -d -o munge -g munge -m 0700 /var/lib/munge /var/log/munge
munge_up() { munge -n | unmunge; }
if ! munge_up >/dev/null 2>&1; then
  runuser -u munge -- /usr/sbin/munged || die "munged did not start (see /var/log/munge/munged.log)"
  wait_for munged munge_up || die "munged does not answer (see /var/log/munge/munged.log)"
fi

# --------------------------------------------------------------------------- MariaDB + slurmdbd

install -d -o mysql -g root -m 0755 /run/mysqld
db_up() { mariadb-admin --silent ping; }
if ! db_up >/dev/null 2>&1; then
  if [[ ! -d /var/lib/mysql/mysql ]]; then  # the package's set-up normally does this
    mariadb-install-db --user=mysql >"$LOG_DIR/mariadb-install.log" 2>&1 \
      || die "could not initialise MariaDB (see $LOG_DIR/mariadb-install.log)"
  fi
  setsid /usr/sbin/mariadbd --user=mysql >"$LOG_DIR/mariadb.log" 2>&1 </dev/null &
  wait_for mariadb db_up || die "MariaDB did not start (see $LOG_DIR/mariadb.log)"
fi

# The accounting database password only guards a database reachable from this machine alone.
db_pass_file=/etc/slurm/.slurmdbd-db-password
[[ -s $db_pass_file ]] || (umask 077 && head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$db_pass_file")
db_pass=$(cat "$db_pass_file")
mariadb -u root <<SQL || die "could not create the accounting database"
CREATE DATABASE IF NOT EXISTS $DB_NAME;
CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED BY '$db_pass';
ALTER USER '$DB_USER'@'localhost' IDENTIFIED BY '$db_pass';
GRANT ALL ON $DB_NAME.* TO '$DB_USER'@'localhost';
SQL

install -d -o slurm -g slurm -m 0755 "$LOG_DIR" /var/spool/slurmctld /run/slurm
install -d -o root -g root -m 0755 /var/spool/slurmd

dbd_changed=$(install_if_changed "$DBD_CONF" 0600 slurm <<EOF
# Written by scripts/slurm-local.sh
AuthType=auth/munge
DbdHost=localhost
SlurmUser=slurm
PidFile=/run/slurm/slurmdbd.pid
LogFile=$LOG_DIR/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=$DB_USER
StoragePass=$db_pass
StorageLoc=$DB_NAME
EOF
)

# --------------------------------------------------------------------------- slurm.conf

host=$(hostname -s)
# slurmd -C reports this machine as slurmd will see it: CPUs, sockets, cores, threads, memory.
hardware=$(slurmd -C | head -n1 | sed -e "s/^NodeName=[^ ]* //")
[[ $hardware == *CPUs=* && $hardware == *RealMemory=* ]] || die "slurmd -C did not describe this machine: $hardware"
cpus=$(sed -E 's/.*CPUs=([0-9]+).*/\1/' <<<"$hardware")
mem_mb=$(sed -E 's/.*RealMemory=([0-9]+).*/\1/' <<<"$hardware")

conf_changed=$(install_if_changed "$CONF" 0644 root <<EOF
# Written by scripts/slurm-local.sh: one node, this machine, for trying and for tests.
ClusterName=$CLUSTER
SlurmctldHost=$host(127.0.0.1)
SlurmUser=slurm
SlurmdUser=root
AuthType=auth/munge
CryptoType=crypto/munge
MpiDefault=none
# No cgroups: works inside containers.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$((mem_mb / cpus))
ReturnToService=2
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobCompType=jobcomp/none
MailProg=/bin/true
KillWait=5
InactiveLimit=0
MinJobAge=300
NodeName=$host NodeAddr=127.0.0.1 $hardware State=UNKNOWN
PartitionName=$PARTITION Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
)

# --------------------------------------------------------------------------- daemons

if [[ -n $dbd_changed ]]; then stop_pidfile /run/slurm/slurmdbd.pid; fi
if [[ -n $conf_changed ]]; then
  stop_pidfile /run/slurm/slurmd.pid
  stop_pidfile /run/slurm/slurmctld.pid
fi

if ! pid_alive /run/slurm/slurmdbd.pid; then
  slurmdbd || die "slurmdbd did not start (see $LOG_DIR/slurmdbd.log)"
fi
wait_for slurmdbd sacctmgr -n show cluster || die "slurmdbd does not answer (see $LOG_DIR/slurmdbd.log)"
if ! sacctmgr -n -P show cluster format=cluster | grep -qx "$CLUSTER"; then
  sacctmgr -i add cluster "$CLUSTER" >/dev/null || die "could not register cluster $CLUSTER with slurmdbd"
fi

if ! pid_alive /run/slurm/slurmctld.pid; then
  slurmctld || die "slurmctld did not start (see $LOG_DIR/slurmctld.log)"
fi
wait_for slurmctld scontrol ping || die "slurmctld does not answer (see $LOG_DIR/slurmctld.log)"

if ! pid_alive /run/slurm/slurmd.pid; then
  slurmd || die "slurmd did not start (see $LOG_DIR/slurmd.log)"
fi

# A node left drained or down by an earlier run (a changed config, a killed daemon) comes back.
deadline=$((SECONDS + READY_WAIT_S))
while :; do
  state=$(node_state)
  [[ $state =~ ^(idle|mix|alloc)$ ]] && break  # idle on a fresh start; busy if jobs outlived a restart
  if [[ $state =~ ^(drain|drng|down|down\*)$ ]]; then
    scontrol update nodename="$host" state=resume 2>/dev/null || true
  fi
  if ((SECONDS >= deadline)); then
    reason=$(timeout 10 sinfo -h -N -n "$host" -o %E 2>/dev/null || true)
    die "node $host is '${state:-not answering}' after ${READY_WAIT_S}s${reason:+ ($reason)} (see $LOG_DIR/slurmd.log, $LOG_DIR/slurmctld.log)"
  fi
  sleep 0.5
done
wait_for sacct accounting_up || die "sacct does not answer (see $LOG_DIR/slurmdbd.log)"

say "up in $((SECONDS - start))s: node $host $state ($cpus cpus, $mem_mb MB) in partition $PARTITION (default)"
