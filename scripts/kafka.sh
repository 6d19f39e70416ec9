#!/usr/bin/env bash
# Single-node Apache Kafka (KRaft, broker+controller) on 127.0.0.1, without Docker.
# The broker's jars come from Maven Central (scripts/kafka/pom.xml) and are cached
# under .cache/, so only the first start needs the network.
#
# usage: scripts/kafka.sh up|down|status
# env:   CRONSTREAM_KAFKA_PORT (9092), CRONSTREAM_KAFKA_CONTROLLER_PORT (port+1),
#        CRONSTREAM_KAFKA_HEAP (512m), CRONSTREAM_CACHE_DIR (.cache)
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

KAFKA_VERSION=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$ROOT/scripts/kafka/pom.xml")
PORT="${CRONSTREAM_KAFKA_PORT:-9092}"
CONTROLLER_PORT="${CRONSTREAM_KAFKA_CONTROLLER_PORT:-$((PORT + 1))}"
HOME_DIR="$CACHE/kafka"
LIBS="$CACHE/kafka-$KAFKA_VERSION-libs"
DATA="$HOME_DIR/data-$PORT"
PIDFILE="$HOME_DIR/kafka-$PORT.pid"
LOG="$HOME_DIR/kafka-$PORT.log"
CONFIG="$HOME_DIR/server-$PORT.properties"

write_config() {
  cat >"$CONFIG" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$DATA
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
PROPS
}

java_run() {
  java -Xms"${CRONSTREAM_KAFKA_HEAP:-512m}" -Xmx"${CRONSTREAM_KAFKA_HEAP:-512m}" \
    -Dlog4j2.configurationFile="$ROOT/scripts/kafka/log4j2.properties" \
    -cp "$LIBS/*" "$@"
}

up() {
  mkdir -p "$HOME_DIR"
  if pid_alive "$PIDFILE"; then
    say "kafka: already running (pid $(cat "$PIDFILE"), 127.0.0.1:$PORT)"
    return 0
  fi
  for p in "$PORT" "$CONTROLLER_PORT"; do
    port_open "$p" && die "port $p is taken by another process: stop it, or set CRONSTREAM_KAFKA_PORT to a free port"
  done
  require_java "Kafka $KAFKA_VERSION"
  fetch_jars "$ROOT/scripts/kafka/pom.xml" "$LIBS" "Apache Kafka $KAFKA_VERSION" "$HOME_DIR/mvn.log"
  write_config
  local cluster_id_file="$HOME_DIR/cluster-$PORT.id"
  # random-uuid prints log lines before the id; the id is the last line.
  [ -s "$cluster_id_file" ] || java_run kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1 >"$cluster_id_file"
  java_run kafka.tools.StorageTool format -t "$(cat "$cluster_id_file")" -c "$CONFIG" \
      --ignore-formatted >>"$LOG" 2>&1 \
    || die "kafka storage format failed (see $LOG)"
  say "kafka: starting Apache Kafka $KAFKA_VERSION on 127.0.0.1:$PORT (log: $LOG)"
  local python
  python=$(python_bin)  # before the JVM starts: without it, readiness cannot be told
  nohup java -Xms"${CRONSTREAM_KAFKA_HEAP:-512m}" -Xmx"${CRONSTREAM_KAFKA_HEAP:-512m}" \
    -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$ROOT/scripts/kafka/log4j2.properties" \
    -cp "$LIBS/*" kafka.Kafka "$CONFIG" >>"$LOG" 2>&1 </dev/null &
  echo $! >"$PIDFILE"
  # Ready means a client's metadata request succeeds, not merely an open port.
  await_ready kafka "$PIDFILE" "$LOG" "127.0.0.1:$PORT" \
    "$python" "$ROOT/scripts/ready.py" kafka "127.0.0.1:$PORT" "$PIDFILE" 90
}

case "${1:-}" in
  up) up ;;
  down) stop_pid "$PIDFILE" kafka 60 ;;
  status) report_status kafka "$PIDFILE" "Apache Kafka $KAFKA_VERSION, 127.0.0.1:$PORT" ;;
  *) die "usage: scripts/kafka.sh up|down|status" ;;
esac
