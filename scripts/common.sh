# Shared helpers for the local service scripts. Sourced, not run.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${CRONSTREAM_CACHE_DIR:-$ROOT/.cache}"
mkdir -p "$CACHE"

# die MESSAGE: one clear line on stderr, non-zero exit.
die() {
  echo "error: $*" >&2
  exit 1
}

say() { echo "$*" >&2; }

# port_open PORT: true when something accepts TCP connections on 127.0.0.1:PORT.
port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# pid_alive FILE: true when FILE holds the pid of a live process.
pid_alive() {
  [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

# report_status NAME FILE WHAT: one line on whether the process in FILE runs; 1 if not.
report_status() {
  if pid_alive "$2"; then
    echo "$1: running (pid $(cat "$2"), $3)"
  else
    echo "$1: stopped"
    return 1
  fi
}

# stop_pid FILE NAME TIMEOUT: SIGTERM, wait up to TIMEOUT seconds, then SIGKILL.
stop_pid() {
  local file=$1 name=$2 timeout=$3 pid
  if ! pid_alive "$file"; then
    rm -f "$file"
    say "$name: not running"
    return 0
  fi
  pid=$(cat "$file")
  kill -TERM "$pid" 2>/dev/null || true  # it may have exited since
  for _ in $(seq $((timeout * 10))); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    say "$name: did not stop within ${timeout}s, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$file"
  say "$name: stopped"
}

# await_ready NAME PIDFILE LOG WHERE PROBE...: run the readiness PROBE of the process just
# started; if it fails, show the log's tail, stop the process and fail in one line.
await_ready() {
  local name=$1 pidfile=$2 log=$3 where=$4
  shift 4
  if ! "$@"; then
    tail -n 20 "$log" >&2
    stop_pid "$pidfile" "$name" 30
    die "$name did not become ready on $where (full log: $log)"
  fi
  say "$name: ready on $where"
}

# python_bin: the project's virtualenv interpreter (make venv creates it).
python_bin() {
  local py="${PYTHON:-$ROOT/.venv/bin/python}"
  [ -x "$py" ] || die "no Python environment at $py: run 'make venv' first"
  echo "$py"
}

# require_java WHAT: a JDK 17 or newer on PATH, or one line saying how to get one.
require_java() {
  command -v java >/dev/null \
    || die "java not found: install a JDK 17 or newer (apt-get install openjdk-17-jre-headless)"
  local major
  major=$(java -XshowSettings:properties -version 2>&1 | sed -n 's/.*java.specification.version = \([0-9]*\).*/\1/p')
  [ "${major:-0}" -ge 17 ] || die "java $major found, $1 needs 17 or newer"
}

# fetch_jars POM LIBS WHAT LOG: the runtime jars of POM from Maven Central into LIBS,
# once (a .complete marker says they all arrived).
fetch_jars() {
  local pom=$1 libs=$2 what=$3 log=$4
  [ -f "$libs/.complete" ] && return 0
  command -v mvn >/dev/null \
    || die "mvn not found and the $what jars are not cached yet: install Maven (apt-get install maven)"
  say "fetching the $what jars from Maven Central into $libs"
  rm -rf "$libs"
  mvn -q -B -f "$pom" dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$libs" >"$log" 2>&1 \
    || die "mvn could not fetch the $what jars (see $log)"
  touch "$libs/.complete"
}
