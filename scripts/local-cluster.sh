#!/usr/bin/env bash
# A 3-node Rivulet cluster as local processes on 127.0.0.1, for people without Docker.
#
# Usage: scripts/local-cluster.sh start|stop|status|restart|clean
#   start    build the release binary if it is missing or older than the sources, start the
#            nodes that are not running (node N: Kafka on 127.0.0.1:1909(1+N), cluster traffic on
#            127.0.0.1:1919(1+N), data in local-cluster/nodeN/data, log in
#            local-cluster/nodeN/node.log), wait until every Kafka port accepts connections and
#            print the bootstrap string
#   stop     SIGTERM every node through its pid file and wait for it to exit
#   status   which nodes run, whether their ports answer, and `rivulet cluster status`
#   restart  stop, then start
#   clean    stop, then delete local-cluster/ (all data and logs)
#
# Environment:
#   RIVULET_LOCAL_DIR     where nodes keep data, logs and pid files  (default ./local-cluster
#                         under the repository root)
#   RIVULET_BIN           the rivulet binary to run; when set, nothing is built
#                         (default target/release/rivulet, built by cargo as needed)
#   RIVULET_LOCAL_KAFKA_PORT    Kafka port of node 1; node N uses this + N - 1  (default 19092)
#   RIVULET_LOCAL_CLUSTER_PORT  cluster port of node 1; node N uses this + N - 1 (default 19192)
#   RIVULET_LOCAL_ADMIN_PORT    admin HTTP port of node 1 (/metrics, /ready); node N uses
#                               this + N - 1 (default 19644)
#   RIVULET_COOKIE        shared secret of the node-to-node protocol (passed on as
#                         RIVULET_CLUSTER__COOKIE when set)
#   START_TIMEOUT         seconds to wait for each node's Kafka port (default 60)
#   other RIVULET_*       passed on to every node as configuration (RIVULET_LOG__RETENTION_MS=...)
#
# Nodes are started with setsid, in their own session: they keep running after this script (and
# the terminal) exits. Stop them with `scripts/local-cluster.sh stop`.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${RIVULET_LOCAL_DIR:-$ROOT/local-cluster}"
NODES=3
KAFKA_PORT="${RIVULET_LOCAL_KAFKA_PORT:-19092}"
CLUSTER_PORT="${RIVULET_LOCAL_CLUSTER_PORT:-19192}"
ADMIN_PORT="${RIVULET_LOCAL_ADMIN_PORT:-19644}"
START_TIMEOUT="${START_TIMEOUT:-60}"
HOST=127.0.0.1
case "$DIR" in /*) ;; *) DIR="$PWD/$DIR" ;; esac

if [ -n "${RIVULET_BIN:-}" ]; then
  BIN="$RIVULET_BIN"
  BUILD=0
else
  BIN="$ROOT/target/release/rivulet"
  BUILD=1
fi

say() { printf '%s\n' "$*"; }
die() { printf 'local-cluster.sh: %s\n' "$*" >&2; exit 1; }

kafka_port() { echo $((KAFKA_PORT + $1 - 1)); }
cluster_port() { echo $((CLUSTER_PORT + $1 - 1)); }
admin_port() { echo $((ADMIN_PORT + $1 - 1)); }
node_dir() { echo "$DIR/node$1"; }
pid_file() { echo "$DIR/node$1/pid"; }
log_file() { echo "$DIR/node$1/node.log"; }

bootstrap() {
  local n out=""
  for n in $(seq 1 "$NODES"); do out="${out:+$out,}$HOST:$(kafka_port "$n")"; done
  echo "$out"
}

# The pid of node N if it is running (and is a rivulet process), else nothing.
running_pid() {
  local f pid
  f="$(pid_file "$1")"
  [ -f "$f" ] || return 0
  pid="$(cat "$f" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 0
  kill -0 "$pid" 2>/dev/null || return 0
  # A recycled pid must not be mistaken for (or killed as) a node.
  if [ -r "/proc/$pid/cmdline" ] && ! tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q 'rivulet.* serve'; then
    return 0
  fi
  echo "$pid"
}

# True when something accepts TCP connections on HOST:$1.
port_open() {
  (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null
}

needs_build() {
  [ -x "$BIN" ] || return 0
  [ -n "$(find "$ROOT/Cargo.toml" "$ROOT/Cargo.lock" "$ROOT"/{storage,actors,cluster,broker} \
            -newer "$BIN" \( -name '*.rs' -o -name 'Cargo.toml' -o -name 'Cargo.lock' \) \
            -print -quit 2>/dev/null)" ]
}

build() {
  if [ "$BUILD" -eq 0 ]; then
    [ -x "$BIN" ] || die "RIVULET_BIN=$BIN is not an executable"
    return
  fi
  if needs_build; then
    say "building: cargo build --release -p rivulet-broker"
    (cd "$ROOT" && cargo build --release -p rivulet-broker) || die "the build failed"
  fi
}

start_node() {
  local n="$1" dir seeds=() m
  dir="$(node_dir "$n")"
  mkdir -p "$dir/data"
  for m in $(seq 1 "$NODES"); do seeds+=(--seed "$m@$HOST:$(cluster_port "$m")"); done
  {
    printf '\n=== %s: starting node %s ===\n' "$(date '+%Y-%m-%d %H:%M:%S')" "$n"
  } >>"$(log_file "$n")"
  # The child shell writes its own pid, then execs the node: the pid file holds the node's pid
  # whether or not setsid had to fork. The node runs in its own directory so that it does not
  # pick up a ./rivulet.toml from wherever this script was started.
  local detach=setsid
  command -v setsid >/dev/null || detach="nohup" # macOS has no setsid
  (
    cd "$dir"
    # `rivulet serve` reads every RIVULET_* variable as configuration and rejects unknown keys:
    # keep this script's own settings (and the client commands' RIVULET_BOOTSTRAP) away from it.
    # Other RIVULET_* settings (RIVULET_LOG__RETENTION_MS=...) reach every node.
    local cookie="${RIVULET_COOKIE:-}"
    unset RIVULET_BIN RIVULET_LOCAL_DIR RIVULET_LOCAL_KAFKA_PORT RIVULET_LOCAL_CLUSTER_PORT \
      RIVULET_LOCAL_ADMIN_PORT \
      RIVULET_COOKIE RIVULET_BOOTSTRAP
    if [ -n "$cookie" ]; then export RIVULET_CLUSTER__COOKIE="$cookie"; fi
    export RUST_LOG="${RUST_LOG:-info}"
    # shellcheck disable=SC2016 # $$, $0 and $@ are the child shell's
    "$detach" sh -c 'echo $$ > "$0"; exec "$@"' "$(pid_file "$n")" \
      "$BIN" serve \
      --node-id "$n" \
      --data-dir "$dir/data" \
      --listen "$HOST:$(kafka_port "$n")" \
      --advertised "$HOST:$(kafka_port "$n")" \
      --cluster-listen "$HOST:$(cluster_port "$n")" \
      --admin-listen "$HOST:$(admin_port "$n")" \
      "${seeds[@]}" \
      >>"$(log_file "$n")" 2>&1 </dev/null &
  )
}

cmd_start() {
  mkdir -p "$DIR"
  build
  local n pid to_start=() started=()
  for n in $(seq 1 "$NODES"); do
    pid="$(running_pid "$n")"
    if [ -n "$pid" ]; then
      say "node $n: already running (pid $pid)"
      continue
    fi
    # Check every port before starting anything, so that a conflict starts no node at all.
    if port_open "$(kafka_port "$n")"; then
      die "port $HOST:$(kafka_port "$n") is taken by another process (not node $n of $DIR);" \
          "stop it, or set RIVULET_LOCAL_KAFKA_PORT"
    fi
    to_start+=("$n")
  done
  for n in "${to_start[@]}"; do
    rm -f "$(pid_file "$n")"
    start_node "$n"
    started+=("$n")
  done

  local failed=0 deadline
  for n in "${started[@]}"; do
    deadline=$((SECONDS + START_TIMEOUT))
    # The pid file appears as soon as the child shell runs.
    while [ ! -s "$(pid_file "$n")" ] && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
    pid="$(cat "$(pid_file "$n")" 2>/dev/null || true)"
    while :; do
      if port_open "$(kafka_port "$n")"; then
        say "node $n: up (pid $pid, kafka $HOST:$(kafka_port "$n"), cluster $HOST:$(cluster_port "$n"))"
        break
      fi
      if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; then
        say "node $n: exited during startup; last lines of $(log_file "$n"):" >&2
        tail -n 15 "$(log_file "$n")" | sed 's/^/    /' >&2
        rm -f "$(pid_file "$n")"
        failed=1
        break
      fi
      if [ "$SECONDS" -ge "$deadline" ]; then
        say "node $n: port $(kafka_port "$n") not accepting connections after ${START_TIMEOUT}s" \
            "(still running as pid $pid; see $(log_file "$n"))" >&2
        failed=1
        break
      fi
      sleep 0.2
    done
  done
  [ "$failed" -eq 0 ] || die "not every node started; \`$0 status\` shows which, \`$0 stop\` stops the rest"

  say ""
  say "bootstrap: $(bootstrap)"
  say "  kcat -L -b $(bootstrap)"
  say "  $BIN cluster status --bootstrap $(bootstrap)"
  say "logs: $DIR/node{1..$NODES}/node.log; stop with: $0 stop"
}

cmd_stop() {
  local n pid pids=() waited
  for n in $(seq 1 "$NODES"); do
    pid="$(running_pid "$n")"
    if [ -z "$pid" ]; then
      [ -f "$(pid_file "$n")" ] && rm -f "$(pid_file "$n")"
      say "node $n: not running"
      continue
    fi
    kill -TERM "$pid"
    say "node $n: SIGTERM sent to pid $pid"
    pids+=("$n:$pid")
  done
  local entry stuck=0
  for entry in "${pids[@]}"; do
    n="${entry%%:*}"
    pid="${entry#*:}"
    waited=0
    while kill -0 "$pid" 2>/dev/null && [ "$waited" -lt 300 ]; do
      sleep 0.1
      waited=$((waited + 1))
    done
    if kill -0 "$pid" 2>/dev/null; then
      say "node $n: pid $pid still running after 30s (kill -9 $pid if it is stuck)" >&2
      stuck=1
    else
      rm -f "$(pid_file "$n")"
      say "node $n: stopped"
    fi
  done
  [ "$stuck" -eq 0 ]
}

cmd_status() {
  local n pid any=0 state
  for n in $(seq 1 "$NODES"); do
    pid="$(running_pid "$n")"
    if [ -n "$pid" ]; then
      any=1
      if port_open "$(kafka_port "$n")"; then state="accepting connections"; else state="port not open"; fi
      say "node $n: running (pid $pid), kafka $HOST:$(kafka_port "$n") $state"
    else
      say "node $n: stopped"
    fi
  done
  if [ "$any" -eq 1 ] && [ -x "$BIN" ]; then
    say ""
    "$BIN" cluster status --bootstrap "$(bootstrap)" || true
  fi
  [ "$any" -eq 1 ]
}

cmd_clean() {
  cmd_stop || die "some nodes did not stop; not deleting $DIR"
  rm -rf "$DIR"
  say "deleted $DIR"
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  restart) cmd_stop && cmd_start ;;
  clean) cmd_clean ;;
  -h|--help|help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}" ;;
  *) echo "usage: $0 start|stop|status|restart|clean  (--help for more)" >&2; exit 2 ;;
esac
