#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine, for tests and for trying
# the slurm profile: munged, slurmctld and slurmd, all in one state directory.
#
#   tests/cluster/slurm.sh start      install if missing, configure, start, wait until idle
#   tests/cluster/slurm.sh status     daemons, node state and queue; exit 0 only if all run
#   tests/cluster/slurm.sh stop       cancel this cluster's jobs, stop the daemons it started
#   tests/cluster/slurm.sh env        print the exports that clients need (use: eval "$(… env)")
#   tests/cluster/slurm.sh check      list missing programs; exit 0 only if none is missing
#   tests/cluster/slurm.sh install    apt-get install them (root + apt only)
#   tests/cluster/slurm.sh configure  write slurm.conf and the munge key, start nothing
#   tests/cluster/slurm.sh profile    write <state dir>/profile: profiles/slurm filled in for
#                                     this cluster (also done by start)
#
# Try the workflow on it (from the project directory):
#   tests/cluster/slurm.sh start && eval "$(tests/cluster/slurm.sh env)"
#   .venv/bin/snakemake --profile /tmp/fmriflow-slurm/profile
#
# Root is needed only to install; the daemons run as the user who starts them
# (SlurmUser), and that user's jobs run on the node. Every command is
# idempotent. Daemons are stopped by the PIDs recorded when they were started
# (state dir run/*.pid), never by name, so a system SLURM or another test's
# cluster is left alone. Nothing outside the state directory is
# written (except by `install`): the cluster has its own munge socket and key,
# and clients find it through SLURM_CONF (plus an srun wrapper for jobs, on
# PATH), which `env` prints.
#
# Settings (environment):
#   FMRIFLOW_SLURM_DIR   state directory            [/tmp/fmriflow-slurm]
#   FMRIFLOW_SLURM_PORT  slurmctld port; slurmd uses the next one   [6817]
#   FMRIFLOW_SLURM_PARTITION  partition name        [debug]
#   FMRIFLOW_SLURM_MEMORY     node RealMemory in MB [what `slurmd -C` reports]
#
# Without slurmdbd there is no accounting database: `sacct` does not work, so
# Snakemake's slurm executor must be told `--slurm-status-command squeue`.
# Finished jobs stay visible to squeue for MinJobAge (1 h here), and every
# finished job is also appended to log/jobcomp.log (JobCompType=jobcomp/filetxt).

set -euo pipefail

DIR="${FMRIFLOW_SLURM_DIR:-/tmp/fmriflow-slurm}"
PORT="${FMRIFLOW_SLURM_PORT:-6817}"
PARTITION="${FMRIFLOW_SLURM_PARTITION:-debug}"
PACKAGES=(slurm-wlm munge)
PROGRAMS=(munged mungekey slurmctld slurmd sbatch srun squeue sinfo scontrol scancel)
DAEMONS=(munged slurmctld slurmd)
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
START_TIMEOUT=60

# Daemons are found in sbin, which is not on every user's PATH.
export PATH="$PATH:/usr/sbin:/sbin"
export SLURM_CONF="$DIR/etc/slurm.conf"

say() { printf 'slurm.sh: %s\n' "$*" >&2; }
die() {
    say "$*"
    exit 1
}

usage() {
    sed -n '2,/^$/s/^# \{0,1\}//p' "$0" >&2
    exit 2
}

missing_programs() {
    local program
    for program in "${PROGRAMS[@]}"; do
        command -v "$program" >/dev/null 2>&1 || printf '%s\n' "$program"
    done
}

cmd_check() {
    local missing
    missing="$(missing_programs)"
    if [[ -n "$missing" ]]; then
        say "missing: ${missing//$'\n'/ }"
        say "install them with: apt-get install -y ${PACKAGES[*]}   (Debian/Ubuntu, as root)"
        return 1
    fi
    say "all of ${PROGRAMS[*]} found"
}

cmd_install() {
    [[ -z "$(missing_programs)" ]] && return 0
    if [[ "$(id -u)" != 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
        cmd_check || true
        die "cannot install: this needs root and apt-get (running as $(id -un))"
    fi
    say "installing ${PACKAGES[*]} with apt-get"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${PACKAGES[@]}" \
        >"${TMPDIR:-/tmp}/fmriflow-slurm-apt.log" 2>&1; then
        apt-get update -qq >>"${TMPDIR:-/tmp}/fmriflow-slurm-apt.log" 2>&1 || true
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${PACKAGES[@]}" \
            >>"${TMPDIR:-/tmp}/fmriflow-slurm-apt.log" 2>&1 ||
            die "apt-get install failed; see ${TMPDIR:-/tmp}/fmriflow-slurm-apt.log"
    fi
    cmd_check
}

# --- processes we started ----------------------------------------------------

pid_of() {
    local file="$DIR/run/$1.pid" pid
    [[ -f "$file" ]] || return 1
    pid="$(<"$file")"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    # Alive, and still the program we started (a PID can be reused).
    [[ -r "/proc/$pid/comm" && "$(<"/proc/$pid/comm")" == "$1" ]] || return 1
    printf '%s\n' "$pid"
}

running() { pid_of "$1" >/dev/null; }

# Start a daemon in the foreground mode of its own, detached into its own
# session with every stream redirected, and record its PID.
launch() {
    local name="$1"
    shift
    setsid "$@" </dev/null >>"$DIR/log/$name.out" 2>&1 &
    echo $! >"$DIR/run/$name.pid"
}

stop_daemon() {
    local name="$1" pid
    if ! pid="$(pid_of "$name")"; then
        rm -f "$DIR/run/$name.pid"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do
        [[ -d "/proc/$pid" ]] || break
        sleep 0.1
    done
    if [[ -d "/proc/$pid" ]]; then
        say "$name ($pid) did not stop on SIGTERM; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$DIR/run/$name.pid"
    say "stopped $name ($pid)"
}

# --- configuration -----------------------------------------------------------

node_line() {
    # CPUs and memory as slurmd sees them, under the node name "localhost".
    local detected memory
    detected="$(slurmd -C | head -1)"
    memory="$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$detected")"
    memory="${FMRIFLOW_SLURM_MEMORY:-$memory}"
    sed -e 's/^NodeName=[^ ]*/NodeName=localhost NodeAddr=127.0.0.1/' \
        -e "s/RealMemory=[0-9]*/RealMemory=$memory/" <<<"$detected"
}

cmd_configure() {
    [[ -z "$(missing_programs)" ]] || {
        cmd_check || true
        die "cannot configure: SLURM or munge is not installed (run: $0 install)"
    }
    local user
    user="$(id -un)"
    mkdir -p "$DIR"/{etc,run,log,ctld,spool}
    install -d -m 0700 "$DIR/munge"
    if [[ ! -s "$DIR/munge/munge.key" ]]; then
        mungekey --create --keyfile="$DIR/munge/munge.key" 2>/dev/null ||
            dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none
        chmod 0600 "$DIR/munge/munge.key"
    fi
    # Inside a job, Snakemake's slurm-jobstep plugin runs `srun` with every
    # SLURM_* variable removed, SLURM_CONF included, so srun would look for
    # /etc/slurm/slurm.conf. This srun, first on the PATH that `env` prints,
    # points it back at this cluster (sbatch --export=ALL passes PATH on).
    mkdir -p "$DIR/bin"
    local srun="" dir dirs
    IFS=: read -ra dirs <<<"$PATH"
    for dir in "${dirs[@]}"; do
        [[ "$dir" != "$DIR/bin" && -x "$dir/srun" ]] && srun="$dir/srun" && break
    done
    printf '#!/bin/sh\nSLURM_CONF=%q exec %q "$@"\n' "$SLURM_CONF" "$srun" >"$DIR/bin/srun"
    chmod 0755 "$DIR/bin/srun"
    local conf="$DIR/etc/slurm.conf.new"
    cat >"$conf" <<EOF
# Written by tests/cluster/slurm.sh: a single-node test cluster. Do not edit;
# change the script (or its FMRIFLOW_SLURM_* variables) and run it again.
ClusterName=fmriflow
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
SlurmUser=$user
SlurmdUser=$user
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$DIR/munge/munge.socket
StateSaveLocation=$DIR/ctld
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pidfile
SlurmdPidFile=$DIR/run/slurmd.pidfile
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
MpiDefault=none
SwitchType=switch/none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
# Memory is enforced as on a real cluster: a job above its --mem is killed.
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=task=2
JobAcctGatherParams=OverMemoryKill
# No slurmdbd: no sacct. Finished jobs stay in squeue for an hour and are
# logged, one line each, in the job completion file.
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/log/jobcomp.log
MinJobAge=3600
ReturnToService=2
InactiveLimit=0
KillWait=5
SlurmdTimeout=60
$(node_line) State=UNKNOWN
PartitionName=$PARTITION Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
    if [[ -f "$DIR/etc/slurm.conf" ]] && cmp -s "$conf" "$DIR/etc/slurm.conf"; then
        rm -f "$conf"
    else
        mv "$conf" "$DIR/etc/slurm.conf"
        if running slurmctld || running slurmd; then
            say "slurm.conf changed while the cluster runs: run '$0 stop' then '$0 start'"
        fi
    fi
}

# --- start / stop / status ---------------------------------------------------

port_in_use() {
    # Someone else's daemon on our port would make ours fail obscurely.
    command -v ss >/dev/null 2>&1 || return 1
    ss -Hltn "sport = :$1" 2>/dev/null | grep -q .
}

wait_for() {
    local what="$1" seconds="$2"
    shift 2
    for _ in $(seq $((seconds * 10))); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    say "timed out after ${seconds}s waiting for $what"
    return 1
}

no_active_jobs() { [[ -z "$(squeue -h -t R,CG,S -o %i 2>/dev/null)" ]]; }

node_state() { sinfo -h -N -n localhost -o '%t' 2>/dev/null | head -1; }
node_idle() { [[ "$(node_state)" =~ ^(idle|mix|alloc)$ ]]; }

show_logs() {
    local log
    for log in "$DIR"/log/*.log "$DIR"/log/*.out; do
        [[ -f "$log" && "$log" != */jobcomp.log ]] || continue
        say "--- tail of $log"
        tail -n 15 "$log" >&2
    done
}

cmd_start() {
    cmd_install
    cmd_configure
    if running munged && running slurmctld && running slurmd && node_idle; then
        say "already running (state dir $DIR)"
        return 0
    fi
    if ! running munged; then
        rm -f "$DIR/munge/munge.socket" "$DIR/munge/munge.socket.lock"
        launch munged munged --foreground --force \
            --key-file="$DIR/munge/munge.key" --socket="$DIR/munge/munge.socket" \
            --pid-file="$DIR/run/munged.pidfile" --log-file="$DIR/log/munged.log" \
            --seed-file="$DIR/munge/munged.seed"
        wait_for "munged" 10 test -S "$DIR/munge/munge.socket" || {
            show_logs
            die "munged did not start"
        }
    fi
    if ! running slurmctld; then
        ! port_in_use "$PORT" || die "port $PORT is in use: set FMRIFLOW_SLURM_PORT"
        launch slurmctld slurmctld -D -f "$SLURM_CONF"
    fi
    if ! running slurmd; then
        ! port_in_use $((PORT + 1)) || die "port $((PORT + 1)) is in use: set FMRIFLOW_SLURM_PORT"
        launch slurmd slurmd -D -N localhost -f "$SLURM_CONF"
    fi
    if ! wait_for "node 'localhost' to be idle" "$START_TIMEOUT" node_idle; then
        say "node state: '$(node_state)'"
        show_logs
        die "the cluster did not come up (state dir $DIR)"
    fi
    local daemon
    for daemon in "${DAEMONS[@]}"; do
        running "$daemon" || {
            show_logs
            die "$daemon exited"
        }
    done
    say "running: munged $(pid_of munged), slurmctld $(pid_of slurmctld)," \
        "slurmd $(pid_of slurmd); partition '$PARTITION'; state dir $DIR"
    cmd_profile || say "no profile written (needs the project's .venv): run '$0 profile' later"
    say "use it with: eval \"\$($0 env)\"; snakemake --profile $DIR/profile"
}

cmd_stop() {
    if running slurmctld; then
        # Jobs of this cluster only (SLURM_CONF points at it); let slurmd end them.
        scancel --user="$(id -un)" >/dev/null 2>&1 || true
        wait_for "jobs to end" 30 no_active_jobs || true
    fi
    stop_daemon slurmd
    stop_daemon slurmctld
    stop_daemon munged
}

cmd_status() {
    local daemon ok=0 pid
    for daemon in "${DAEMONS[@]}"; do
        if pid="$(pid_of "$daemon")"; then
            printf '%-10s running (pid %s)\n' "$daemon" "$pid"
        else
            printf '%-10s not running\n' "$daemon"
            ok=1
        fi
    done
    printf 'state dir  %s\nSLURM_CONF %s\n' "$DIR" "$SLURM_CONF"
    if running slurmctld; then
        sinfo -N -o '%N %P %t %c %m' || ok=1
        squeue -o '%.8i %.10T %.10M %.8m %k' || true
        node_idle || ok=1
    fi
    return $ok
}

cmd_profile() {
    local python="$REPO/.venv/bin/python"
    [[ -x "$python" ]] || python=python3
    "$python" "$REPO/tests/cluster/profile.py" "$DIR/profile" --partition "$PARTITION" >/dev/null
}

cmd_env() {
    printf 'export SLURM_CONF=%q\n' "$SLURM_CONF"
    # shellcheck disable=SC2016  # $PATH is expanded by the shell that evals this
    printf 'export PATH=%q:"$PATH"\n' "$DIR/bin"
}

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    env) cmd_env ;;
    check) cmd_check ;;
    install) cmd_install ;;
    configure) cmd_configure ;;
    profile) cmd_profile ;;
    *) usage ;;
esac
