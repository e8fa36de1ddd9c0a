#!/usr/bin/env bash
# A single-node Slurm cluster on this machine, for bitgrok's cluster test.
#   tests/slurm/cluster.sh start DIR   install Debian's slurm + munge if missing, write a
#                                      minimal config under DIR, start the daemons
#   tests/slurm/cluster.sh stop DIR    stop the daemons started by `start DIR`
# Clients then need SLURM_CONF=DIR/slurm.conf in their environment.
set -euo pipefail
cmd=${1:?usage: cluster.sh start|stop DIR}
dir=${2:?usage: cluster.sh start|stop DIR}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

# Stop a daemon by its pid file and wait (at most 30 s) until it has exited, so
# that its state files can be removed afterwards.
stop_pid() {
    local pidfile=$1 pid
    [ -f "$pidfile" ] || return 0
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 150); do
        # Gone, or a zombie nobody has reaped yet: exited either way.
        [ -r "/proc/$pid/stat" ] && ! grep -q '^[0-9]* ([^)]*) Z' "/proc/$pid/stat" || break
        sleep 0.2
    done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$pidfile"
}

stop() {
    stop_pid "$dir/slurmd.pid"
    stop_pid "$dir/slurmctld.pid"
    if [ -f "$dir/munged.started" ]; then
        stop_pid /run/munge/munged.pid
        rm -f "$dir/munged.started"
    fi
}

if [ "$cmd" = stop ]; then
    stop
    exit 0
fi

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null || ! command -v sbatch >/dev/null; then
    echo "installing Debian's slurm and munge packages" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurmctld slurmd slurm-client munge >/dev/null
fi

mkdir -p /run/munge "$dir/state" "$dir/spool" "$dir/log"
chown munge:munge /run/munge 2>/dev/null || true
if [ ! -S /run/munge/munge.socket.2 ] || ! munge -n >/dev/null 2>&1; then
    [ -f /etc/munge/munge.key ] || { mungekey --create 2>/dev/null || create-munge-key -f; }
    munged --force
    touch "$dir/munged.started"
fi

node=$(slurmd -C | head -n 1)
cat > "$dir/slurm.conf" <<CONF
ClusterName=bitgrok-test
SlurmctldHost=$(hostname)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
MpiDefault=none
$node
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF

export SLURM_CONF=$dir/slurm.conf
slurmctld -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF"
for _ in $(seq 1 60); do
    if sinfo -h -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
        echo "slurm cluster up: SLURM_CONF=$SLURM_CONF" >&2
        exit 0
    fi
    sleep 1
done
echo "slurm cluster did not come up; logs in $dir/log" >&2
stop
exit 1
