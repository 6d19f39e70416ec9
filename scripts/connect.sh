#!/usr/bin/env bash
# Kafka Connect (standalone worker) with the Debezium Postgres connector on 127.0.0.1,
# without Docker. Its jars come from Maven Central (scripts/connect/pom.xml) and are
# cached under .cache/, so only the first start needs the network. It starts with no
# connector: create them over REST (POST /connectors); tests/integration/test_debezium.py
# does, one per test.
#
# usage: scripts/connect.sh up|down|status
# env:   CRONSTREAM_CONNECT_PORT (8083, the REST API), CRONSTREAM_KAFKA_BOOTSTRAP
#        (127.0.0.1:9092), CRONSTREAM_CONNECT_HEAP (768m), CRONSTREAM_CACHE_DIR (.cache)
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

POM="$ROOT/scripts/connect/pom.xml"
KAFKA_VERSION=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$POM")
DEBEZIUM_VERSION=$(sed -n 's:.*<debezium.version>\(.*\)</debezium.version>.*:\1:p' "$POM")
PORT="${CRONSTREAM_CONNECT_PORT:-8083}"
BOOTSTRAP="${CRONSTREAM_KAFKA_BOOTSTRAP:-127.0.0.1:9092}"
HEAP="${CRONSTREAM_CONNECT_HEAP:-768m}"
HOME_DIR="$CACHE/connect"
# Both versions in the name: changing either in the pom fetches afresh.
LIBS="$CACHE/connect-$KAFKA_VERSION-debezium-$DEBEZIUM_VERSION-libs"
PIDFILE="$HOME_DIR/connect-$PORT.pid"
LOG="$HOME_DIR/connect-$PORT.log"
CONFIG="$HOME_DIR/worker-$PORT.properties"
URL="http://127.0.0.1:$PORT"

write_config() {
  # The connectors live on the classpath, so no plugin.path; every jar there has
  # ServiceLoader manifests, so no slow classpath scan. Records as plain JSON unless a
  # connector overrides the converters' schemas.enable.
  cat >"$CONFIG" <<PROPS
bootstrap.servers=$BOOTSTRAP
plugin.discovery=service_load
listeners=http://127.0.0.1:$PORT
key.converter=org.apache.kafka.connect.json.JsonConverter
value.converter=org.apache.kafka.connect.json.JsonConverter
key.converter.schemas.enable=false
value.converter.schemas.enable=false
offset.storage.file.filename=$HOME_DIR/offsets-$PORT.dat
offset.flush.interval.ms=1000
PROPS
}

up() {
  mkdir -p "$HOME_DIR"
  if pid_alive "$PIDFILE"; then
    say "connect: already running (pid $(cat "$PIDFILE"), $URL)"
    return 0
  fi
  port_open "$PORT" && die "port $PORT is taken by another process: stop it, or set CRONSTREAM_CONNECT_PORT to a free port"
  require_java "Kafka Connect $KAFKA_VERSION"
  fetch_jars "$POM" "$LIBS" "Kafka Connect $KAFKA_VERSION and Debezium $DEBEZIUM_VERSION" "$HOME_DIR/mvn.log"
  write_config
  say "connect: starting Kafka Connect $KAFKA_VERSION with Debezium $DEBEZIUM_VERSION on $URL, Kafka $BOOTSTRAP (log: $LOG)"
  local python
  python=$(python_bin)  # before the JVM starts: without it, readiness cannot be told
  nohup java -Xmx"$HEAP" -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$ROOT/scripts/connect/log4j2.properties" \
    -cp "$LIBS/*" org.apache.kafka.connect.cli.ConnectStandalone "$CONFIG" >>"$LOG" 2>&1 </dev/null &
  echo $! >"$PIDFILE"
  # Ready means the REST API lists the Debezium connector, not merely an open port.
  await_ready connect "$PIDFILE" "$LOG" "$URL" "$python" "$ROOT/scripts/ready.py" connect "$URL" "$PIDFILE" 120
}

case "${1:-}" in
  up) up ;;
  down) stop_pid "$PIDFILE" connect 60 ;;
  status) report_status connect "$PIDFILE" "Kafka Connect $KAFKA_VERSION, Debezium $DEBEZIUM_VERSION, $URL" ;;
  *) die "usage: scripts/connect.sh up|down|status" ;;
esac
