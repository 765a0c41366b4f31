#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine, for the `slurm` tests and CI.
#
#   tests/slurm/cluster.sh start    install what is missing, start, wait until the node is idle
#   tests/slurm/cluster.sh status   exit 0 when every daemon runs and the node takes jobs
#   tests/slurm/cluster.sh stop     stop what `start` started, by its pid files
#
# Partitions: `cpu` (default) and `gpu`, both on node `localhost`, which holds one fake
# GPU gres (gres.conf points it at /dev/null, so `--gpus=1` jobs run and see
# CUDA_VISIBLE_DEVICES=0). Accounting goes through slurmdbd + a private MariaDB, so
# `sacct` answers: it is the plugin's default status command on real clusters, and the
# tests read each job's partition and GPU request from it.
#
# Everything lives under $LINEAGE_SLURM_DIR (default /tmp/lineage-slurm). The snakemake
# SLURM plugin strips SLURM_* variables inside its job step, so the config must be found
# at /etc/slurm/slurm.conf: we symlink it (and gres.conf, slurmdbd.conf beside it) there,
# and refuse to replace a slurm.conf we did not write. Needs root (it is root here and in CI).
set -euo pipefail

DIR="${LINEAGE_SLURM_DIR:-/tmp/lineage-slurm}"
CLUSTER=lineage
ACCOUNT=lineage          # the account the test profile submits with (`-A lineage`)
DB_PORT=3307             # private MariaDB; 3306 stays free for a system one
DB_USER=slurm
DB_PASS=slurm-test-only
ETC=/etc/slurm
RUN="$DIR/run"
LOG="$DIR/log"

say() { echo "[cluster] $*"; }
die() { echo "[cluster] error: $*" >&2; exit 1; }
# sacctmgr drops into its interactive prompt on a bad command: never let it read stdin.
acct() { timeout 30 sacctmgr "$@" </dev/null; }
show_log() { tail -n 20 "$1" >&2 2>/dev/null || true; }

alive() {  # alive <pidfile>: the process named by the pid file runs
    [[ -s "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

wait_for() {  # wait_for <seconds> <what> <command...>
    local limit=$1 what=$2; shift 2
    local t0=$SECONDS
    until "$@" >/dev/null 2>&1; do
        if (( SECONDS - t0 >= limit )); then
            return 1
        fi
        sleep 0.5
    done
    say "$what ($(( SECONDS - t0 )) s)"
}

install_packages() {
    local missing=()
    command -v slurmctld >/dev/null || missing+=(slurmctld)
    command -v slurmd >/dev/null || missing+=(slurmd)
    command -v sbatch >/dev/null || missing+=(slurm-client)
    command -v munged >/dev/null || missing+=(munge)
    command -v slurmdbd >/dev/null || missing+=(slurmdbd)
    command -v mariadbd >/dev/null || missing+=(mariadb-server)
    command -v mariadb >/dev/null || missing+=(mariadb-client)
    (( ${#missing[@]} == 0 )) && return 0
    # slurm-wlm is the meta package of the three slurm ones; name it for clarity.
    [[ " ${missing[*]} " == *" slurmctld "* ]] && missing+=(slurm-wlm)
    say "installing ${missing[*]}"
    local t0=$SECONDS
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$LOG/apt.log" 2>&1 \
        || { show_log "$LOG/apt.log"; die "apt-get install failed (log: $LOG/apt.log)"; }
    say "installed in $(( SECONDS - t0 )) s"
}

link_config() {  # link_config <name>: /etc/slurm/<name> -> $DIR/etc/<name>
    local target="$DIR/etc/$1" link="$ETC/$1"
    if [[ -e "$link" ]] && [[ "$(readlink -f "$link")" != "$(readlink -f "$target")" ]] \
        && ! grep -q "written by tests/slurm/cluster.sh" "$link" 2>/dev/null; then
        die "$link exists and is not ours; refusing to replace a real SLURM config"
    fi
    # Ours (or a dangling link): point it at this scratch folder.
    ln -sfn "$target" "$link"
}

write_config() {
    mkdir -p "$DIR/etc" "$DIR/state" "$DIR/spool" "$RUN" "$LOG" "$ETC"
    local cpus
    cpus=$(nproc)
    cat >"$DIR/etc/slurm.conf" <<EOF
# written by tests/slurm/cluster.sh: a single-node test cluster, not for production
ClusterName=$CLUSTER
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
ReturnToService=2
# The node advertises 256 GB so the real profile's memory requests (64 GB for extract_logits,
# doubled on retry) are accepted unchanged; config_overrides keeps slurmd from draining the
# node for having less. Nothing enforces memory here (no cgroups): the CPUs are real, and
# they are what limits how many jobs run at once. Jobs that ask for no memory get 1 GB per CPU.
SlurmdParameters=config_overrides
DefMemPerCPU=1024
# Finished jobs stay visible to squeue this long (>= 120 s keeps squeue usable as a status command).
MinJobAge=300
GresTypes=gpu
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
# Record GPU requests and the job comment (the plugin puts rule and wildcards there).
AccountingStorageTRES=gres/gpu
AccountingStoreFlags=job_comment
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
NodeName=localhost CPUs=$cpus RealMemory=256000 Gres=gpu:1 State=UNKNOWN
PartitionName=cpu Nodes=localhost Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=localhost MaxTime=INFINITE State=UP
EOF
    # Without File= slurmd drops the GPU and the node goes INVAL.
    cat >"$DIR/etc/gres.conf" <<EOF
# written by tests/slurm/cluster.sh
Name=gpu File=/dev/null
EOF
    cat >"$DIR/etc/slurmdbd.conf" <<EOF
# written by tests/slurm/cluster.sh
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
PidFile=$RUN/slurmdbd.pid
LogFile=$LOG/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=$DB_USER
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
    chmod 600 "$DIR/etc/slurmdbd.conf"
    link_config slurm.conf
    link_config gres.conf
    link_config slurmdbd.conf
}

start_munge() {
    if alive "$RUN/munged.pid" || munge_answers; then
        return 0  # ours, or a system munged that already answers
    fi
    install -d -o munge -g munge -m 0755 /run/munge
    install -d -o munge -g munge -m 0700 /var/lib/munge /var/log/munge
    [[ -s /etc/munge/munge.key ]] || die "/etc/munge/munge.key is missing (reinstall munge)"
    # --force: a stale socket from a killed munged must not stop a fresh start.
    rm -f /run/munge/munged.pid
    runuser -u munge -- munged --force
    wait_for 10 "munged up" munge_answers || die "munged did not answer"
    # munged (as user munge) writes its pid file under /run/munge; keep a copy beside ours.
    cp /run/munge/munged.pid "$RUN/munged.pid"
}

start_mariadb() {
    alive "$RUN/mariadb.pid" && return 0
    local data="$DIR/mysql" own="$DIR/mysqld"
    if [[ ! -d "$data/mysql" ]]; then
        mkdir -p "$data"
        chown mysql:mysql "$data"
        mariadb-install-db --no-defaults --user=mysql --datadir="$data" \
            --auth-root-authentication-method=socket --skip-test-db >"$LOG/mariadb-install.log" 2>&1 \
            || { show_log "$LOG/mariadb-install.log"; die "mariadb-install-db failed"; }
    fi
    # The server runs as mysql: its socket, pid file and log go in a folder mysql owns.
    install -d -o mysql -g mysql -m 0755 "$own"
    # A private instance: own datadir, socket and port; small buffers (the database is tiny).
    setsid runuser -u mysql -- mariadbd --no-defaults --datadir="$data" --socket="$own/mysql.sock" \
        --port=$DB_PORT --bind-address=127.0.0.1 --pid-file="$own/mariadb.pid" \
        --log-error="$own/mariadb.log" --innodb-buffer-pool-size=32M --skip-name-resolve \
        >/dev/null 2>&1 &
    wait_for 60 "mariadb up" mariadb --no-defaults --socket="$own/mysql.sock" -e "select 1" \
        || { show_log "$own/mariadb.log"; die "mariadb did not start (log: $own/mariadb.log)"; }
    cp "$own/mariadb.pid" "$RUN/mariadb.pid"
    mariadb --no-defaults --socket="$own/mysql.sock" <<EOF
CREATE USER IF NOT EXISTS '$DB_USER'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON slurm_acct_db.* TO '$DB_USER'@'127.0.0.1';
EOF
}

start_slurmdbd() {
    alive "$RUN/slurmdbd.pid" && return 0
    slurmdbd
    wait_for 60 "slurmdbd up" acct -n list cluster \
        || { show_log "$LOG/slurmdbd.log"; die "slurmdbd did not start (log: $LOG/slurmdbd.log)"; }
    if [[ -z "$(acct -n -P list cluster format=cluster where cluster=$CLUSTER)" ]]; then
        acct -i add cluster "$CLUSTER" >/dev/null
    fi
}

start_slurm() {
    if ! alive "$RUN/slurmctld.pid"; then
        slurmctld
        wait_for 30 "slurmctld up" scontrol ping \
            || { show_log "$LOG/slurmctld.log"; die "slurmctld did not start (log: $LOG/slurmctld.log)"; }
    fi
    if ! alive "$RUN/slurmd.pid"; then
        # -N: the node is named localhost in slurm.conf, and the hostname is something else.
        slurmd -N localhost
    fi
    if ! wait_for 60 "node localhost idle" node_takes_jobs; then
        sinfo -N -l >&2 || true
        scontrol show node localhost 2>&1 | grep -i reason >&2 || true
        show_log "$LOG/slurmd.log"
        die "node localhost did not become idle (logs: $LOG/slurmd.log, $LOG/slurmctld.log)"
    fi
}

add_account() {
    if [[ -z "$(acct -n -P list account format=account where name=$ACCOUNT)" ]]; then
        acct -i add account "$ACCOUNT" Cluster="$CLUSTER" Description="logit-lineage tests" \
            Organization=lineage >/dev/null
    fi
    if [[ -z "$(acct -n -P list assoc format=user where user=root account=$ACCOUNT)" ]]; then
        acct -i add user root Account="$ACCOUNT" DefaultAccount="$ACCOUNT" >/dev/null
    fi
}

munge_answers() {
    munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1
}

node_takes_jobs() {
    local state
    state=$(sinfo -h -N -n localhost -o %t 2>/dev/null | head -1)
    [[ "$state" == idle || "$state" == mix || "$state" == alloc ]]
}

all_up() {
    local d
    munge_answers || return 1
    for d in mariadb slurmdbd slurmctld slurmd; do
        alive "$RUN/$d.pid" || return 1
    done
    node_takes_jobs
}

cmd_start() {
    [[ $(id -u) == 0 ]] || die "run as root (installs packages and starts daemons)"
    local t0=$SECONDS
    mkdir -p "$RUN" "$LOG"
    if all_up; then
        add_account
        touch "$DIR/started"
        say "already running (sinfo: $(sinfo -h -o '%P %t' | tr '\n' ' '))"
        return 0
    fi
    install_packages
    write_config
    start_munge
    start_mariadb
    start_slurmdbd
    start_slurm
    add_account
    # Tells the tests that a cluster was meant to be up: they skip without it, fail with it.
    touch "$DIR/started"
    say "cluster up in $(( SECONDS - t0 )) s; partitions: $(sinfo -h -o '%P' | tr '\n' ' ')"
}

stop_pidfile() {  # stop_pidfile <name>: TERM, wait, then KILL
    local pidfile="$RUN/$1.pid" pid i
    [[ -s "$pidfile" ]] || return 0
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid"
        for i in $(seq 1 40); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.25
        done
        if kill -0 "$pid" 2>/dev/null; then
            say "$1 ($pid) ignored TERM; killing"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        say "stopped $1 ($pid)"
    fi
    rm -f "$pidfile"
}

cmd_stop() {
    local d
    rm -f "$DIR/started"
    for d in slurmd slurmctld slurmdbd mariadb munged; do
        stop_pidfile "$d"
    done
}

cmd_status() {
    local d rc=0
    for d in munged mariadb slurmdbd slurmctld slurmd; do
        if alive "$RUN/$d.pid"; then
            echo "$d: running (pid $(cat "$RUN/$d.pid"))"
        else
            echo "$d: not running"
            [[ $d == munged ]] || rc=3
        fi
    done
    if node_takes_jobs; then
        sinfo -o '%P %a %D %t %G'
    else
        echo "node localhost does not take jobs"
        rc=3
    fi
    return $rc
}

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
