#!/usr/bin/env bash
# A single-node SLURM cluster on this machine, for tests and demos of `hydra/launcher=slurm`.
#
#   scripts/slurm-local.sh start    # munged + slurmctld + slurmd, partition "debug" (idempotent)
#   scripts/slurm-local.sh status   # exit 0 when the cluster accepts jobs
#   scripts/slurm-local.sh stop     # stop the daemons and delete the state folder
#
# Needs the Debian packages slurm-wlm and munge (scripts/install-services.sh) and root: the
# daemons run as root and so do the jobs. Everything lives in $SLURM_LOCAL_DIR (default
# /tmp/makemore-slurm): config, munge key and socket, spool, logs. Client commands (sbatch,
# squeue, ...) find the config through /etc/slurm/slurm.conf, which `start` links to ours when
# the machine has none of its own; otherwise export the SLURM_CONF that `start` prints.
#
# Tuned for quick tests, not for production: a requeued job may start again after 10 s (not
# 120), jobs get 5 s between SIGTERM and SIGKILL (slurmctld checks time limits every 30 s), there is no accounting
# database (sacct answers nothing; submitit then learns of finished jobs from their result files).
set -euo pipefail

STATE_DIR=${SLURM_LOCAL_DIR:-${TMPDIR:-/tmp}/makemore-slurm}
CONF=$STATE_DIR/slurm.conf
SYSTEM_CONF=/etc/slurm/slurm.conf
PARTITION=${SLURM_LOCAL_PARTITION:-debug}
NODE=$(hostname -s)
MUNGE_SOCKET=$STATE_DIR/munge/munge.socket.2

die() { echo "slurm-local: $*" >&2; exit 1; }
say() { echo "slurm-local: $*"; }

pid_alive() {  # pid_alive PIDFILE: the process named in PIDFILE is running
    [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

port_free() {  # nothing listens on 127.0.0.1:PORT
    ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

free_port() {  # first free port from $1 upwards
    local port=$1
    while ! port_free "$port"; do port=$((port + 1)); done
    echo "$port"
}

require_tools() {
    [[ $(id -u) -eq 0 ]] || die "run as root: the local cluster runs its daemons and jobs as root."
    local tool
    for tool in munged mungekey slurmctld slurmd sbatch sinfo scontrol; do
        command -v "$tool" >/dev/null ||
            die "'$tool' is missing: install slurm-wlm and munge (sudo scripts/install-services.sh slurm)."
    done
}

start_munge() {
    mkdir -p "$STATE_DIR/munge"
    chmod 0755 "$STATE_DIR/munge"  # clients reach the socket; the key inside stays 0600
    if pid_alive "$STATE_DIR/munge/munged.pid"; then return; fi
    [[ -s $STATE_DIR/munge/munge.key ]] || mungekey --create --keyfile="$STATE_DIR/munge/munge.key"
    chmod 0600 "$STATE_DIR/munge/munge.key"
    # --force: munged is wary of running as root and of keys outside /etc/munge; both are
    # what we want for a throwaway cluster.
    munged --force \
        --key-file="$STATE_DIR/munge/munge.key" \
        --socket="$MUNGE_SOCKET" \
        --pid-file="$STATE_DIR/munge/munged.pid" \
        --log-file="$STATE_DIR/munge/munged.log" \
        --seed-file="$STATE_DIR/munge/munged.seed"
}

write_config() {
    # This machine's CPUs and memory as slurmd sees them, so the node is never drained for a
    # mismatch; 1 GiB of memory is left to the system.
    local hardware cpus memory ctld_port slurmd_port
    hardware=$(slurmd -C | head -1)
    cpus=$(sed -n 's/.* CPUs=\([0-9]*\).*/\1/p' <<<"$hardware")
    memory=$(sed -n 's/.* RealMemory=\([0-9]*\).*/\1/p' <<<"$hardware")
    memory=$((memory > 2048 ? memory - 1024 : memory))
    ctld_port=$(free_port "${SLURM_LOCAL_CTLD_PORT:-6817}")
    slurmd_port=$(free_port "$((ctld_port + 1))")
    mkdir -p "$STATE_DIR/ctld" "$STATE_DIR/spool" "$STATE_DIR/log"
    cat >"$CONF" <<EOF
# Written by scripts/slurm-local.sh: a one-node cluster for tests ($STATE_DIR).
ClusterName=makemore-local
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# cred_expire also sets how long a requeued job waits before it may start again (default 120 s).
AuthInfo=socket=$MUNGE_SOCKET,cred_expire=10
CredType=cred/munge
StateSaveLocation=$STATE_DIR/ctld
SlurmdSpoolDir=$STATE_DIR/spool
SlurmctldPidFile=$STATE_DIR/slurmctld.pid
SlurmdPidFile=$STATE_DIR/slurmd.pid
SlurmctldLogFile=$STATE_DIR/log/slurmctld.log
SlurmdLogFile=$STATE_DIR/log/slurmd.log
# No cgroups: this also runs inside containers.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
# Look at pending jobs every few seconds (defaults: 60 s and 30 s), so requeued jobs restart quickly.
SchedulerParameters=sched_interval=3,bf_interval=3
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
GresTypes=gpu
ReturnToService=2
# Jobs may be requeued (submitit does so on timeout and preemption).
JobRequeue=1
# Quick limits: kill 5 s after SIGTERM, no grace beyond the time limit, finished jobs stay
# visible to squeue/scontrol for 5 minutes.
KillWait=5
OverTimeLimit=0
MinJobAge=300
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
}

link_system_conf() {
    if [[ -L $SYSTEM_CONF && $(readlink "$SYSTEM_CONF") == "$CONF" ]]; then return; fi
    if [[ -e $SYSTEM_CONF || -L $SYSTEM_CONF ]]; then
        say "$SYSTEM_CONF belongs to another cluster; leaving it alone."
        return
    fi
    mkdir -p "$(dirname "$SYSTEM_CONF")"
    ln -s "$CONF" "$SYSTEM_CONF"
}

wait_until_idle() {
    local state=""
    for _ in $(seq 60); do
        state=$(SLURM_CONF=$CONF sinfo -h -n "$NODE" -o %T 2>/dev/null | head -1 || true)
        case $state in
            idle* | mixed* | allocated*) return 0 ;;
            down* | drain*) SLURM_CONF=$CONF scontrol update nodename="$NODE" state=resume 2>/dev/null || true ;;
        esac
        sleep 0.5
    done
    die "node $NODE is '${state:-unknown}' after 30 s; see $STATE_DIR/log/slurmctld.log and slurmd.log."
}

cluster_up() {
    pid_alive "$STATE_DIR/munge/munged.pid" && pid_alive "$STATE_DIR/slurmctld.pid" &&
        pid_alive "$STATE_DIR/slurmd.pid" && [[ -f $CONF ]] &&
        SLURM_CONF=$CONF sinfo -h -o %T >/dev/null 2>&1
}

start() {
    require_tools
    if cluster_up; then
        say "already running (partition $PARTITION on $NODE, config $CONF)"
        echo "export SLURM_CONF=$CONF"
        return
    fi
    stop_daemons
    mkdir -p "$STATE_DIR"
    chmod 0755 "$STATE_DIR"
    start_munge
    write_config
    link_system_conf
    # -c: start from a clean job state; this cluster keeps nothing between starts.
    slurmctld -c -f "$CONF"
    slurmd -f "$CONF" -N "$NODE"
    wait_until_idle
    say "running: partition $PARTITION on $NODE, logs in $STATE_DIR/log"
    # Last line: what a shell needs when /etc/slurm/slurm.conf is not ours.
    echo "export SLURM_CONF=$CONF"
}

stop_daemon() {  # stop_daemon PIDFILE
    local pidfile=$1 pid
    pid_alive "$pidfile" || return 0
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
}

stop_daemons() {
    stop_daemon "$STATE_DIR/slurmd.pid"
    stop_daemon "$STATE_DIR/slurmctld.pid"
    stop_daemon "$STATE_DIR/munge/munged.pid"
}

stop() {
    # Jobs still running are cancelled first so that no orphan keeps training.
    if cluster_up; then
        SLURM_CONF=$CONF scancel --full --partition="$PARTITION" 2>/dev/null || true
        for _ in $(seq 30); do
            [[ -z $(SLURM_CONF=$CONF squeue -h -t running,completing 2>/dev/null) ]] && break
            sleep 0.5
        done
    fi
    stop_daemons
    if [[ -L $SYSTEM_CONF && $(readlink "$SYSTEM_CONF") == "$CONF" ]]; then rm -f "$SYSTEM_CONF"; fi
    rm -rf "$STATE_DIR"
    say "stopped"
}

status() {
    if cluster_up; then
        SLURM_CONF=$CONF sinfo
        SLURM_CONF=$CONF squeue
        echo "export SLURM_CONF=$CONF"
    else
        say "not running"
        return 1
    fi
}

case ${1:-} in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) die "usage: $0 start|stop|status" ;;
esac
