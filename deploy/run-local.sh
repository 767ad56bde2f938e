#!/usr/bin/env bash
# Starts Motcua's intake and projection on this machine, with embedded SQLite
# and a NATS JetStream server of its own. Ctrl-C stops it all. Every file it
# writes lives under ./data (gitignored), the NATS stream included, so
# `rm -rf data` starts over.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: deploy/run-local.sh [--help]

Builds intake and projection (release), starts a NATS JetStream server of
its own storing under ./data/nats, then runs both services in the background
with SQLite databases under ./data, and waits. Ctrl-C (or SIGTERM) stops the
services first, then the NATS server. Everything lives under ./data: stop,
`rm -rf data` and start again to start over.

Environment (defaults in brackets):
  NATS_URL                   [unset]  a NATS server to use instead of starting
                             one (it must have JetStream; a local one that does
                             not answer is started, storing into data/nats).
                             Its stream outlives ./data: to start over, delete
                             the stream too, or use another MOTCUA_STREAM
  MOTCUA_NATS_PORT           [4223]   port of the NATS server started here
  MOTCUA_DATA                [./data] the data folder
  MOTCUA_PROFILE             [release] cargo profile to build: release or debug
  MOTCUA_BIN_DIR             [unset]  run the intake and projection binaries in
                             this folder instead of building them
  INTAKE_LISTEN              [127.0.0.1:50051]   intake gRPC
  PROJECTION_LISTEN          [127.0.0.1:50052]   projection gRPC
  INTAKE_METRICS_LISTEN      [127.0.0.1:9101]    intake Prometheus /metrics
  PROJECTION_METRICS_LISTEN  [127.0.0.1:9102]    projection Prometheus /metrics
  INTAKE_DATABASE_URL        [sqlite://<data>/intake.db]
  PROJECTION_DATABASE_URL    [sqlite://<data>/projection.db]
  RUST_LOG                   [info]

Logs: data/intake.log, data/projection.log, data/nats.log (the previous
run's as *.log.1).
Needs: cargo (rustup.rs) and, unless NATS_URL names a running server,
nats-server (apt-get install nats-server).
EOF
}

case "${1:-}" in
    -h | --help) usage; exit 0 ;;
    "") ;;
    *) echo "run-local.sh: unknown argument: $1 (try --help)" >&2; exit 2 ;;
esac

die() {
    echo "run-local.sh: $*" >&2
    exit 1
}

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
mkdir -p "${MOTCUA_DATA:-$ROOT/data}"
DATA=$(cd "${MOTCUA_DATA:-$ROOT/data}" && pwd)

# Without NATS_URL, a NATS server of our own on its own port, storing under
# $DATA: the stream is part of the data folder, so no other log's stream (the
# machine's NATS, an earlier data folder's) is ever mixed with this one.
own_nats=0
if [[ -z ${NATS_URL:-} ]]; then
    own_nats=1
    NATS_URL=nats://127.0.0.1:${MOTCUA_NATS_PORT:-4223}
fi
export NATS_URL
export INTAKE_LISTEN=${INTAKE_LISTEN:-127.0.0.1:50051}
export PROJECTION_LISTEN=${PROJECTION_LISTEN:-127.0.0.1:50052}
export INTAKE_METRICS_LISTEN=${INTAKE_METRICS_LISTEN:-127.0.0.1:9101}
export PROJECTION_METRICS_LISTEN=${PROJECTION_METRICS_LISTEN:-127.0.0.1:9102}
export INTAKE_DATABASE_URL=${INTAKE_DATABASE_URL:-sqlite://$DATA/intake.db}
export PROJECTION_DATABASE_URL=${PROJECTION_DATABASE_URL:-sqlite://$DATA/projection.db}
# Plain text in the log files, not terminal colour codes.
export NO_COLOR=${NO_COLOR:-1}

# --- helpers -----------------------------------------------------------------

# host:port -> "host port"; a wildcard host is probed on loopback.
split_addr() {
    local addr=$1 host port
    host=${addr%:*}
    port=${addr##*:}
    host=${host#[}
    host=${host%]}
    case $host in 0.0.0.0 | "") host=127.0.0.1 ;; :: ) host=::1 ;; esac
    echo "$host $port"
}

# True when something accepts TCP connections at host port.
answers() {
    timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null
}

# True while the process runs (a zombie, exited but not yet reaped, is not).
alive() {
    local stat
    { read -r stat <"/proc/$1/stat"; } 2>/dev/null || return 1
    stat=${stat##*) }
    [[ ${stat:0:1} != Z ]]
}

# Waits up to $4 seconds for host $2 port $3 to answer while pid $1 lives.
wait_for_port() {
    local pid=$1 host=$2 port=$3 seconds=$4 i
    for ((i = 0; i < seconds * 5; i++)); do
        answers "$host" "$port" && return 0
        alive "$pid" || return 1
        sleep 0.2
    done
    return 1
}

# Runs a command in its own session, so a terminal's Ctrl-C reaches only this
# script, which then stops the children in order (services before NATS).
# The previous run's log is kept as <log>.1.
start_bg() {
    local log=$1
    shift
    [[ -f $log ]] && mv -f "$log" "$log.1"
    if command -v setsid >/dev/null; then
        setsid "$@" >"$log" 2>&1 </dev/null &
    else
        "$@" >"$log" 2>&1 </dev/null &
    fi
}

# Explains why $1 (pid $2) is not listening on $3 after $4 seconds, and quits.
start_failed() {
    local name=$1 pid=$2 addr=$3 seconds=$4 log=$5 why
    if alive "$pid"; then
        why="did not start listening on $addr within $seconds s"
    else
        why="exited during start-up"
    fi
    die "$name $why; last lines of ${log#"$ROOT"/}:
$(tail -n 20 "$log")"
}

# --- shutdown ----------------------------------------------------------------

service_pids=()
service_names=()
nats_pid=""

# Sends SIGTERM to the given pids and reaps them; SIGKILL after $1 seconds.
stop_pids() {
    local grace=$1 i pid running
    shift
    kill -TERM "$@" 2>/dev/null || true
    for ((i = 0; i < grace * 5; i++)); do
        running=0
        for pid in "$@"; do alive "$pid" && running=1; done
        ((running)) || break
        sleep 0.2
    done
    for pid in "$@"; do
        if alive "$pid"; then
            echo "run-local.sh: pid $pid did not stop within ${grace}s; killing it" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    done
}

cleanup() {
    local status=$?
    trap '' INT TERM
    trap - EXIT
    if ((${#service_pids[@]})); then
        echo "Stopping intake and projection…"
        # The services drain for up to MOTCUA_SHUTDOWN_TIMEOUT (10s) themselves.
        stop_pids 20 "${service_pids[@]}"
    fi
    if [[ -n $nats_pid ]]; then
        echo "Stopping nats-server…"
        stop_pids 10 "$nats_pid"
    fi
    ((${#service_pids[@]})) || [[ -n $nats_pid ]] && echo "Stopped."
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- build -------------------------------------------------------------------

[[ -n ${MOTCUA_BIN_DIR:-} ]] || command -v cargo >/dev/null ||
    die "cargo is not on the PATH; install Rust from https://rustup.rs and retry"

if [[ -n ${MOTCUA_BIN_DIR:-} ]]; then
    BIN_DIR=$MOTCUA_BIN_DIR
else
    profile=${MOTCUA_PROFILE:-release}
    case $profile in
        release) build_flags=(--release) ;;
        debug) build_flags=() ;;
        *) die "MOTCUA_PROFILE must be release or debug, not $profile" ;;
    esac
    echo "Building intake and projection ($profile; the first build takes a few minutes)…"
    cargo build "${build_flags[@]}" -p intake -p projection
    BIN_DIR=${CARGO_TARGET_DIR:-$ROOT/target}/$profile
fi
INTAKE_BIN=$BIN_DIR/intake
PROJECTION_BIN=$BIN_DIR/projection
[[ -x $INTAKE_BIN && -x $PROJECTION_BIN ]] ||
    die "the build finished but $INTAKE_BIN or $PROJECTION_BIN is missing"

# --- ports must be free ------------------------------------------------------

read -r intake_host intake_port <<<"$(split_addr "$INTAKE_LISTEN")"
read -r projection_host projection_port <<<"$(split_addr "$PROJECTION_LISTEN")"
for pair in "INTAKE_LISTEN=$INTAKE_LISTEN" "PROJECTION_LISTEN=$PROJECTION_LISTEN" \
    "INTAKE_METRICS_LISTEN=$INTAKE_METRICS_LISTEN" \
    "PROJECTION_METRICS_LISTEN=$PROJECTION_METRICS_LISTEN"; do
    read -r host port <<<"$(split_addr "${pair#*=}")"
    if answers "$host" "$port"; then
        die "something already listens on ${pair#*=} (an earlier run?); stop it or set ${pair%%=*}"
    fi
done

# --- NATS --------------------------------------------------------------------

# nats://[user:pass@]host[:port][,more…] -> host and port of the first server.
nats_first=${NATS_URL%%,*}
nats_first=${nats_first#*://}
nats_first=${nats_first##*@}
nats_first=${nats_first%%/*}
if [[ $nats_first == *:* ]]; then
    nats_host=${nats_first%:*}
    nats_port=${nats_first##*:}
else
    nats_host=$nats_first
    nats_port=4222
fi
[[ $nats_port =~ ^[0-9]+$ ]] || die "cannot read a port from NATS_URL=$NATS_URL"

if ((own_nats)) && answers "$nats_host" "$nats_port"; then
    die "something already listens on 127.0.0.1:$nats_port, where this script starts its own NATS server (an earlier run?); stop it, set MOTCUA_NATS_PORT, or set NATS_URL to use that server"
elif answers "$nats_host" "$nats_port"; then
    echo "Using the NATS server already answering at $NATS_URL."
else
    case $nats_host in
        127.0.0.1 | localhost) ;;
        *) die "no NATS server answers at $NATS_URL, and it is not local, so none can be started for it" ;;
    esac
    command -v nats-server >/dev/null ||
        die "nothing answers at $NATS_URL and nats-server is not on the PATH; install it (apt-get install nats-server) or point NATS_URL at a running server with JetStream"
    echo "Starting nats-server with JetStream on 127.0.0.1:$nats_port (store $DATA/nats, log $DATA/nats.log)…"
    start_bg "$DATA/nats.log" nats-server -js -a 127.0.0.1 -p "$nats_port" -sd "$DATA/nats"
    nats_pid=$!
    wait_for_port "$nats_pid" 127.0.0.1 "$nats_port" 15 ||
        start_failed nats-server "$nats_pid" "127.0.0.1:$nats_port" 15 "$DATA/nats.log"
fi

# --- services ----------------------------------------------------------------

echo "Starting intake and projection…"
start_bg "$DATA/intake.log" "$INTAKE_BIN"
service_pids+=("$!")
service_names+=(intake)
start_bg "$DATA/projection.log" "$PROJECTION_BIN"
service_pids+=("$!")
service_names+=(projection)

wait_for_port "${service_pids[0]}" "$intake_host" "$intake_port" 30 ||
    start_failed intake "${service_pids[0]}" "$INTAKE_LISTEN" 30 "$DATA/intake.log"
wait_for_port "${service_pids[1]}" "$projection_host" "$projection_port" 30 ||
    start_failed projection "${service_pids[1]}" "$PROJECTION_LISTEN" 30 "$DATA/projection.log"

cat <<EOF

Motcua is running.
  intake gRPC      $INTAKE_LISTEN   (desk commands; health and reflection served)
  projection gRPC  $PROJECTION_LISTEN   (reports)
  NATS             $NATS_URL$([[ -n $nats_pid ]] && echo "   (started here, store $DATA/nats)")
  metrics          http://$INTAKE_METRICS_LISTEN/metrics
                   http://$PROJECTION_METRICS_LISTEN/metrics
  data folder      $DATA
  logs             $DATA/{intake,projection$([[ -n $nats_pid ]] && echo ",nats")}.log
Press Ctrl-C to stop.
EOF

# Returns when a child exits by itself, or at once on Ctrl-C / SIGTERM (trap).
all_pids=("${service_pids[@]}")
[[ -n $nats_pid ]] && all_pids+=("$nats_pid")
if ((BASH_VERSINFO[0] > 5 || (BASH_VERSINFO[0] == 5 && BASH_VERSINFO[1] >= 1))); then
    exited=""
    child_status=0
    wait -n -p exited "${all_pids[@]}" || child_status=$?
    name=nats-server
    for i in "${!service_pids[@]}"; do
        [[ ${service_pids[$i]} == "$exited" ]] && name=${service_names[$i]}
    done
    echo "run-local.sh: $name exited by itself (status $child_status); stopping the rest. See $DATA/$( [[ $name == nats-server ]] && echo nats || echo "$name").log" >&2
    exit 1
else
    wait
fi
