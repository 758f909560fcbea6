#!/usr/bin/env bash
# Apache Kafka beside Rivulet, from Maven Central jars (no tarball, no Docker).
#
# Usage: tools/apache-kafka/kafka.sh COMMAND [ARGS]
#   classpath        print the classpath of the pinned Kafka (pom.xml), resolving it with
#                    `mvn dependency:build-classpath` the first time (jars cached in ~/.m2, the
#                    classpath in tools/apache-kafka/target/classpath.txt)
#   start [1|3]      format KRaft storage (first start only) and start one node, or three, each
#                    a combined broker+controller; waits until every broker port accepts
#                    connections and prints the bootstrap string
#   stop             SIGTERM every node through its pid file, wait for it to exit
#   kill9 N          SIGKILL node N (failover measurements)
#   status           which nodes run and whether their ports answer
#   clean            stop, then delete the run directory (data, logs, pid files)
#   pid N            print node N's pid (empty when it is not running)
#   run CLASS ARGS   run a main class from the same jars (what the bin/*.sh wrappers do)
#   connect-classpath  print the classpath of Kafka Connect (connect/pom.xml: connect-runtime,
#                    connect-json, connect-file), resolved and cached as `classpath` does
#   connect PROPS    run a distributed Kafka Connect worker (ConnectDistributed) in the
#                    foreground with the worker config PROPS (bin/connect-distributed.sh)
#
# Node N listens for clients on 127.0.0.1:(APACHE_KAFKA_PORT + N - 1) and for its controller
# quorum on 127.0.0.1:(APACHE_KAFKA_CONTROLLER_PORT + N - 1); its config, data, log and pid file
# are in $APACHE_KAFKA_DIR/nodeN.
#
# Environment:
#   APACHE_KAFKA_DIR              run directory (default tools/apache-kafka/run)
#   APACHE_KAFKA_PORT             client port of node 1 (default 29092)
#   APACHE_KAFKA_CONTROLLER_PORT  controller port of node 1 (default 29192)
#   APACHE_KAFKA_PROPS            extra server properties, one `key=value` per word or line,
#                                 appended to every node's config at start (for example
#                                 "log.flush.interval.messages=1")
#   KAFKA_HEAP_OPTS               broker heap (default -Xmx1G -Xms1G, as kafka-server-start.sh)
#   KAFKA_TOOL_OPTS               JVM options of the tools (default: small heap, fast start-up)
#   JAVA                          the java executable (default: java on the PATH; Java 17+)
#   START_TIMEOUT                 seconds to wait for each broker port (default 90)
#   KAFKA_CONNECT_HEAP_OPTS       a Connect worker's heap (default -Xmx512M)
#   KAFKA_CONNECT_LOG4J           a Connect worker's log4j2 config (default connect-log4j2.properties)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DIR="${APACHE_KAFKA_DIR:-$HERE/run}"
case "$DIR" in /*) ;; *) DIR="$PWD/$DIR" ;; esac
PORT="${APACHE_KAFKA_PORT:-29092}"
CONTROLLER_PORT="${APACHE_KAFKA_CONTROLLER_PORT:-29192}"
START_TIMEOUT="${START_TIMEOUT:-90}"
JAVA="${JAVA:-java}"
HOST=127.0.0.1
# Pinned here for the dependency plugin itself, so a fresh ~/.m2 resolves the same plugin.
DEPENDENCY_PLUGIN=org.apache.maven.plugins:maven-dependency-plugin:3.8.1

say() { printf '%s\n' "$*"; }
die() { printf 'kafka.sh: %s\n' "$*" >&2; exit 1; }

require() {
  command -v "$JAVA" >/dev/null 2>&1 ||
    die "java not found: install a Java 17+ runtime (Debian: apt-get install openjdk-17-jre-headless)"
}

# The classpath of the pom in directory $1 is rebuilt when the pom changes or a jar vanished
# from ~/.m2.
classpath_stale() {
  local file="$1/target/classpath.txt"
  [ -s "$file" ] || return 0
  [ "$1/pom.xml" -nt "$file" ] && return 0
  local jar
  local IFS=:
  for jar in $(cat "$file"); do [ -f "$jar" ] || return 0; done
  return 1
}

# Prints the runtime classpath of the pom in directory $1 (Kafka's, or Connect's in connect/).
classpath_of() {
  local dir="$1" file="$1/target/classpath.txt"
  if classpath_stale "$dir"; then
    command -v mvn >/dev/null 2>&1 ||
      die "mvn not found: install Maven (Debian: apt-get install maven) to fetch Apache Kafka's jars from Maven Central"
    mkdir -p "$dir/target"
    local tmp="$file.tmp.$$" log="$dir/target/mvn.log"
    say "resolving the jars of $dir/pom.xml with mvn (log: $log)" >&2
    if ! (cd "$dir" && mvn -B -q "$DEPENDENCY_PLUGIN:build-classpath" \
      -Dmdep.outputFile="$tmp" -Dmdep.includeScope=runtime) >"$log" 2>&1 </dev/null; then
      tail -n 30 "$log" >&2
      rm -f "$tmp"
      die "mvn could not resolve $dir/pom.xml (see $log)"
    fi
    mv "$tmp" "$file"
  fi
  cat "$file"
}

cmd_classpath() { classpath_of "$HERE"; }
cmd_connect_classpath() { classpath_of "$HERE/connect"; }

# A distributed Kafka Connect worker in the foreground (exec: the caller's pid is the JVM's,
# so a SIGKILL reaches the worker itself), as Kafka's connect-distributed.sh runs it.
cmd_connect() {
  [ $# -eq 1 ] || die "usage: kafka.sh connect WORKER_PROPERTIES"
  [ -f "$1" ] || die "no worker config at $1 (see tools/apache-kafka/connect/worker.properties)"
  require
  local cp
  cp="$(cmd_connect_classpath)"
  # shellcheck disable=SC2086 # the options are words
  exec "$JAVA" ${KAFKA_CONNECT_HEAP_OPTS:--Xmx512M} -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="${KAFKA_CONNECT_LOG4J:-$HERE/connect/connect-log4j2.properties}" \
    -cp "$cp" org.apache.kafka.connect.cli.ConnectDistributed "$1"
}

# Runs a main class from Kafka's jars in the foreground, as kafka-run-class.sh does.
cmd_run() {
  [ $# -ge 1 ] || die "usage: kafka.sh run MAIN_CLASS [ARGS]"
  require
  local class="$1" cp opts
  shift
  cp="$(cmd_classpath)"
  case "$class" in
    # The perf tools measure the client, so they get the JIT's full optimiser and a larger heap.
    *Performance) opts="${KAFKA_TOOL_OPTS:--Xmx512M -XX:+UseG1GC}" ;;
    # Everything else runs for a second or two: C1 only and the serial GC start fastest.
    *) opts="${KAFKA_TOOL_OPTS:--Xmx256M -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xshare:auto}" ;;
  esac
  # shellcheck disable=SC2086 # the options are words
  exec "$JAVA" $opts -Dlog4j2.configurationFile="$HERE/tools-log4j2.properties" \
    -cp "$cp" "$class" "$@"
}

client_port() { echo $((PORT + $1 - 1)); }
quorum_port() { echo $((CONTROLLER_PORT + $1 - 1)); }
node_dir() { echo "$DIR/node$1"; }
pid_file() { echo "$DIR/node$1/pid"; }
log_file() { echo "$DIR/node$1/server.log"; }

port_open() {
  (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null
}

running_pid() {
  local f pid
  f="$(pid_file "$1")"
  [ -f "$f" ] || return 0
  pid="$(cat "$f")"
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then echo "$pid"; fi
}

# How many nodes the run directory was formatted for (0 when never started).
node_count() {
  if [ -f "$DIR/nodes" ]; then cat "$DIR/nodes"; else echo 0; fi
}

write_config() {
  local n="$1" nodes="$2" voters="" m rf isr
  for m in $(seq 1 "$nodes"); do voters="${voters:+$voters,}$m@$HOST:$(quorum_port "$m")"; done
  rf="$nodes"
  isr=$((nodes > 1 ? 2 : 1))
  cat >"$(node_dir "$n")/server.properties" <<EOF
# Written by tools/apache-kafka/kafka.sh: a combined broker+controller on loopback.
process.roles=broker,controller
node.id=$n
controller.quorum.voters=$voters
listeners=PLAINTEXT://$HOST:$(client_port "$n"),CONTROLLER://$HOST:$(quorum_port "$n")
advertised.listeners=PLAINTEXT://$HOST:$(client_port "$n")
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$(node_dir "$n")/data
num.partitions=1
default.replication.factor=$rf
offsets.topic.replication.factor=$rf
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$isr
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$isr
group.initial.rebalance.delay.ms=0
EOF
  # Three nodes: acks=all survives one failure (min ISR 2), as Rivulet's RF=3 benchmarks use.
  if [ "$nodes" -gt 1 ]; then
    echo "min.insync.replicas=$isr" >>"$(node_dir "$n")/server.properties"
  fi
  if [ -n "${APACHE_KAFKA_PROPS:-}" ]; then
    printf '# APACHE_KAFKA_PROPS\n' >>"$(node_dir "$n")/server.properties"
    printf '%s\n' ${APACHE_KAFKA_PROPS} >>"$(node_dir "$n")/server.properties"
  fi
}

start_node() {
  local n="$1" cp="$2" dir
  dir="$(node_dir "$n")"
  printf '\n=== %s: starting node %s ===\n' "$(date '+%Y-%m-%d %H:%M:%S')" "$n" >>"$(log_file "$n")"
  local detach=setsid
  command -v setsid >/dev/null || detach="nohup"
  (
    cd "$dir"
    # kafka-server-start.sh's defaults: 1 GiB heap, G1 with short pauses.
    # shellcheck disable=SC2016,SC2086 # $$, $0 and $@ are the child shell's; options are words
    "$detach" sh -c 'echo $$ > "$0"; exec "$@"' "$(pid_file "$n")" \
      "$JAVA" ${KAFKA_HEAP_OPTS:--Xmx1G -Xms1G} \
      -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
      -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true \
      -Dkafka.logs.dir="$dir" -Dlog4j2.configurationFile="$HERE/server-log4j2.properties" \
      -cp "$cp" kafka.Kafka "$dir/server.properties" \
      >>"$(log_file "$n")" 2>&1 </dev/null &
  )
}

cmd_start() {
  require
  local nodes="${1:-1}" formatted n pid cp cluster_id
  case "$nodes" in 1 | 3) ;; *) die "start takes 1 or 3 (nodes), not '$nodes'" ;; esac
  formatted="$(node_count)"
  if [ "$formatted" -ne 0 ] && [ "$formatted" -ne "$nodes" ]; then
    die "$DIR holds a $formatted-node cluster; \`$0 clean\` first to start $nodes"
  fi
  cp="$(cmd_classpath)"
  mkdir -p "$DIR"
  if [ "$formatted" -eq 0 ]; then
    cluster_id="$("$JAVA" -cp "$cp" -Dlog4j2.configurationFile="$HERE/tools-log4j2.properties" \
      kafka.tools.StorageTool random-uuid)"
    for n in $(seq 1 "$nodes"); do
      mkdir -p "$(node_dir "$n")"
      write_config "$n" "$nodes"
      "$JAVA" -cp "$cp" -Dlog4j2.configurationFile="$HERE/tools-log4j2.properties" \
        kafka.tools.StorageTool format -t "$cluster_id" -c "$(node_dir "$n")/server.properties" \
        >>"$(log_file "$n")" 2>&1 || die "formatting node $n failed (see $(log_file "$n"))"
    done
    echo "$nodes" >"$DIR/nodes"
    say "formatted $nodes node(s), cluster id $cluster_id, in $DIR"
  fi
  local started=()
  for n in $(seq 1 "$nodes"); do
    pid="$(running_pid "$n")"
    if [ -n "$pid" ]; then
      say "node $n: already running (pid $pid)"
      continue
    fi
    if port_open "$(client_port "$n")"; then
      die "port $HOST:$(client_port "$n") is taken by another process; set APACHE_KAFKA_PORT"
    fi
    rm -f "$(pid_file "$n")"
    start_node "$n" "$cp"
    started+=("$n")
  done
  local failed=0 deadline
  for n in "${started[@]}"; do
    deadline=$((SECONDS + START_TIMEOUT))
    while [ ! -s "$(pid_file "$n")" ] && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
    pid="$(cat "$(pid_file "$n")" 2>/dev/null || true)"
    while :; do
      if port_open "$(client_port "$n")"; then
        say "node $n: up (pid $pid, $HOST:$(client_port "$n"))"
        break
      fi
      if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; then
        say "node $n: exited during startup; last lines of $(log_file "$n"):" >&2
        tail -n 20 "$(log_file "$n")" | sed 's/^/    /' >&2
        failed=1
        break
      fi
      if [ "$SECONDS" -ge "$deadline" ]; then
        say "node $n: port $(client_port "$n") closed after ${START_TIMEOUT}s (see $(log_file "$n"))" >&2
        failed=1
        break
      fi
      sleep 0.2
    done
  done
  [ "$failed" -eq 0 ] || die "not every node started; \`$0 stop\` stops the rest"
  say "bootstrap: $(bootstrap "$nodes")"
}

bootstrap() {
  local n out=""
  for n in $(seq 1 "$1"); do out="${out:+$out,}$HOST:$(client_port "$n")"; done
  echo "$out"
}

cmd_stop() {
  local nodes n pid pids=() stuck=0
  nodes="$(node_count)"
  for n in $(seq 1 "$nodes"); do
    pid="$(running_pid "$n")"
    if [ -z "$pid" ]; then
      say "node $n: not running"
      continue
    fi
    kill -TERM "$pid"
    pids+=("$n:$pid")
  done
  local entry waited
  for entry in "${pids[@]}"; do
    n="${entry%%:*}"
    pid="${entry#*:}"
    waited=0
    # A controlled shutdown of the last node of a quorum can wait for the others: 30 s.
    while kill -0 "$pid" 2>/dev/null && [ "$waited" -lt 300 ]; do
      sleep 0.1
      waited=$((waited + 1))
    done
    if kill -0 "$pid" 2>/dev/null; then
      say "node $n: pid $pid ignored SIGTERM for 30s; sending SIGKILL" >&2
      kill -KILL "$pid" 2>/dev/null || true
      stuck=1
    fi
    rm -f "$(pid_file "$n")"
    say "node $n: stopped"
  done
  [ "$stuck" -eq 0 ]
}

cmd_kill9() {
  local n="${1:?usage: kafka.sh kill9 N}" pid
  pid="$(running_pid "$n")"
  [ -n "$pid" ] || die "node $n is not running"
  kill -KILL "$pid"
  rm -f "$(pid_file "$n")"
  say "node $n: SIGKILL sent to pid $pid"
}

cmd_status() {
  local nodes n pid any=0 state
  nodes="$(node_count)"
  for n in $(seq 1 "$nodes"); do
    pid="$(running_pid "$n")"
    if [ -n "$pid" ]; then
      any=1
      if port_open "$(client_port "$n")"; then state="accepting connections"; else state="port not open"; fi
      say "node $n: running (pid $pid), $HOST:$(client_port "$n") $state"
    else
      say "node $n: stopped"
    fi
  done
  [ "$any" -eq 1 ]
}

cmd_clean() {
  cmd_stop || true
  rm -rf "$DIR"
  say "deleted $DIR"
}

case "${1:-}" in
  classpath) cmd_classpath ;;
  connect-classpath) cmd_connect_classpath ;;
  connect) shift && cmd_connect "$@" ;;
  run) shift && cmd_run "$@" ;;
  start) shift && cmd_start "$@" ;;
  stop) cmd_stop ;;
  kill9) shift && cmd_kill9 "$@" ;;
  pid) running_pid "${2:?usage: kafka.sh pid N}" ;;
  status) cmd_status ;;
  clean) cmd_clean ;;
  -h | --help | help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}" ;;
  *) die "usage: kafka.sh classpath|start [1|3]|stop|kill9 N|status|clean|pid N|run CLASS ARGS|connect-classpath|connect PROPS (see --help)" ;;
esac
