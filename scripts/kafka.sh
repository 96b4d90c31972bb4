#!/usr/bin/env bash
# A real Apache Kafka broker on 127.0.0.1 for the tests and for users: one KRaft node that is
# both broker and controller. Kafka comes from Maven Central (it is packaged neither in Debian
# nor elsewhere we can reach), pinned, into a cache outside the work tree.
# It must never touch a process it did not start: stop and crash signal only the pid recorded
# in DIR/kafka.pid, and only while that pid still runs kafka.Kafka on DIR's server.properties.
#
# Usage: scripts/kafka.sh fetch
#        scripts/kafka.sh start  [--dir DIR] [--port 9092]   fetches if needed; prints the address
#        scripts/kafka.sh stop   [--dir DIR]                 SIGTERM, SIGKILL after 30 s
#        scripts/kafka.sh crash  [--dir DIR]                 SIGKILL (start reuses the data)
#        scripts/kafka.sh status [--dir DIR]                 exit 0 if up and accepting
#        scripts/kafka.sh topics [--dir DIR]                 kcat -L against it
# Environment: SAGAD_KAFKA_CACHE (default ~/.cache/sagad/kafka-4.1.1), KAFKA_HEAP_OPTS
# (default -Xms256m -Xmx768m), KAFKA_START_TIMEOUT (seconds, default 90).
set -euo pipefail

readonly KAFKA_VERSION=4.1.1
readonly SCALA_VERSION=2.13
# Kafka's published POM leaves its logging backend out; these are the versions its own
# 4.0/4.1 release build ships in libs/.
readonly LOG4J_VERSION=2.24.3
readonly SLF4J_VERSION=1.7.36
readonly DEPENDENCY_PLUGIN=org.apache.maven.plugins:maven-dependency-plugin:3.8.1
# Any base64url 16-byte UUID; one node formats its storage once with it.
readonly CLUSTER_ID=5L6g3nShT-eMCtK--X86sw

repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${SAGAD_KAFKA_CACHE:-$HOME/.cache/sagad/kafka-$KAFKA_VERSION}
stamp=$cache/.complete

die() {
  echo "kafka: $*" >&2
  exit 1
}

usage() { # usage [EXIT]: 2 for a wrong command line, 0 for help
  sed -n '8,16s/^# \{0,1\}//p' "$0" >&2
  exit "${1:-2}"
}

# --- fetch -------------------------------------------------------------------------------

as_root() {
  if [ "$(id -u)" = 0 ]; then
    "$@"
  elif command -v sudo >/dev/null; then
    sudo "$@"
  else
    die "need root (or sudo) to run: $*"
  fi
}

apt_install() {
  echo "kafka: installing $*" >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# Prints the major version of the java on PATH, or 0 when there is none.
java_major() {
  local v
  command -v java >/dev/null || {
    echo 0
    return
  }
  v=$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\)[."].*/\1/p' | head -1)
  echo "${v:-0}"
}

ensure_tools() {
  if [ "$(java_major)" -lt 17 ]; then
    apt_install openjdk-17-jre-headless
    [ "$(java_major)" -ge 17 ] || die "Kafka $KAFKA_VERSION needs Java 17+; java on PATH is $(java_major)"
  fi
  command -v mvn >/dev/null || apt_install maven
}

write_pom() {
  cat >"$1" <<POM
<?xml version="1.0" encoding="UTF-8"?>
<!-- Throwaway project whose only purpose is Kafka's runtime classpath (scripts/kafka.sh). -->
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>sagad.local</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_$SCALA_VERSION</artifactId>
      <version>$KAFKA_VERSION</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-api</artifactId>
      <version>$LOG4J_VERSION</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-core</artifactId>
      <version>$LOG4J_VERSION</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>$LOG4J_VERSION</version>
    </dependency>
    <dependency>
      <groupId>org.slf4j</groupId>
      <artifactId>slf4j-api</artifactId>
      <version>$SLF4J_VERSION</version>
    </dependency>
  </dependencies>
</project>
POM
}

cmd_fetch() {
  [ $# -eq 0 ] || usage
  if [ -f "$stamp" ]; then
    return 0
  fi
  ensure_tools
  local work
  work=$(mktemp -d /tmp/sagad-kafka-pomXXXXXX)
  # shellcheck disable=SC2064 # expand now: $work is local
  trap "rm -rf '$work'" EXIT
  write_pom "$work/pom.xml"
  # A half-finished earlier fetch may have left jars behind; start from an empty folder.
  rm -rf "${cache:?}/lib"
  mkdir -p "$cache/lib"
  echo "kafka: fetching Kafka $KAFKA_VERSION (kafka_$SCALA_VERSION) into $cache" >&2
  # Debian's Maven 3.8.7 prints colour resets even in batch mode; strip them (pipefail keeps
  # Maven's exit status).
  (cd "$work" && mvn -B -q "$DEPENDENCY_PLUGIN:copy-dependencies" \
    -DincludeScope=runtime -DoutputDirectory="$cache/lib" 2>&1) |
    sed 's/\x1b\[[0-9;]*m//g' >&2 ||
    die "maven could not fetch Kafka $KAFKA_VERSION (see the messages above)"
  compgen -G "$cache/lib/kafka_$SCALA_VERSION-$KAFKA_VERSION.jar" >/dev/null ||
    die "fetch finished but $cache/lib has no kafka_$SCALA_VERSION-$KAFKA_VERSION.jar"
  # Written last: its presence means the folder is complete.
  echo "kafka_$SCALA_VERSION $KAFKA_VERSION log4j $LOG4J_VERSION slf4j $SLF4J_VERSION" >"$stamp"
  echo "kafka: $(find "$cache/lib" -name '*.jar' | wc -l) jars in $cache/lib" >&2
}

# --- the running broker ------------------------------------------------------------------

dir=$repo/build/kafka
port=9092

parse_opts() {
  local allow_port=$1
  shift
  while [ $# -gt 0 ]; do
    case $1 in
      --dir)
        [ $# -ge 2 ] || usage
        dir=$2
        shift 2
        ;;
      --port)
        if [ "$allow_port" != yes ] || [ $# -lt 2 ]; then usage; fi
        port=$2
        shift 2
        ;;
      *) usage ;;
    esac
  done
  case $port in
    '' | *[!0-9]*) die "--port wants a number, not '$port'" ;;
  esac
  if [ "$port" -lt 1 ] || [ "$port" -gt 65534 ]; then
    die "--port must be in 1..65534 (the controller takes port+1)"
  fi
  # Only start creates DIR; the pid check below needs its absolute path.
  [ "$allow_port" = yes ] && mkdir -p "$dir"
  dir=$(realpath -m "$dir")
}

pidfile() { echo "$dir/kafka.pid"; }

# The port of the broker this DIR was last started with.
recorded_port() {
  [ -f "$dir/server.properties" ] || return 1
  sed -n 's|^listeners=PLAINTEXT://127\.0\.0\.1:\([0-9]*\),.*|\1|p' "$dir/server.properties"
}

# True while PID is a live kafka.Kafka started on this DIR. A recycled pid, a zombie (empty
# cmdline) or another broker never matches, so nothing else is ever signalled.
is_our_broker() {
  local pid=$1 cmd
  [ -r "/proc/$pid/cmdline" ] || return 1
  cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  [[ $cmd == *" kafka.Kafka $dir/server.properties "* ]]
}

# Prints the recorded pid if it is still our broker; drops a stale pid file.
running_pid() {
  local pf pid
  pf=$(pidfile)
  [ -f "$pf" ] || return 1
  pid=$(cat "$pf")
  if [[ $pid =~ ^[0-9]+$ ]] && is_our_broker "$pid"; then
    echo "$pid"
    return 0
  fi
  rm -f "$pf"
  return 1
}

accepts() { # accepts PORT
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# True once PID has fully exited. Its cmdline empties before the kernel closes its sockets, so
# only a zombie (or no process, or a pid already reused by another program) counts as gone:
# a start right after a crash would otherwise still find the old broker's port taken.
exited() {
  local pid=$1 state
  [ -e "/proc/$pid" ] || return 0
  state=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1) || return 0
  case $state in
    '' | Z | X) return 0 ;;
  esac
  [ -s "/proc/$pid/cmdline" ] && ! is_our_broker "$pid"
}

# Waits up to $2 tenths of a second for PID to have exited.
wait_gone() {
  local pid=$1 tenths=$2 i
  for ((i = 0; i < tenths; i++)); do
    exited "$pid" && return 0
    sleep 0.1
  done
  exited "$pid"
}

write_config() {
  local cport=$((port + 1))
  mkdir -p "$dir/data" "$dir/logs"
  cat >"$dir/server.properties" <<PROPS
# Written by scripts/kafka.sh on every start; edits here are lost.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$dir/data
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=2
# After a crash the controller refuses the restarted broker (DUPLICATE_BROKER_REGISTRATION)
# until the dead incarnation's session expires: 9 s by default, 5 s here.
broker.session.timeout.ms=5000
broker.heartbeat.interval.ms=1000
PROPS
  # One rolling server.log; the chattiest loggers only report problems.
  cat >"$dir/log4j2.properties" <<'LOG'
# Written by scripts/kafka.sh on every start.
status = warn
# Kafka stops on SIGTERM; the appender flushes every line, so no log4j shutdown hook is needed
# (with one, every stop printed "Unable to register Log4j shutdown hook" to kafka.out).
shutdownHook = disable
appender.server.type = RollingFile
appender.server.name = server
appender.server.fileName = ${sys:kafka.logs.dir}/server.log
appender.server.filePattern = ${sys:kafka.logs.dir}/server.log.%i
appender.server.layout.type = PatternLayout
appender.server.layout.pattern = [%d] %p %m (%c)%n
appender.server.policies.type = Policies
appender.server.policies.size.type = SizeBasedTriggeringPolicy
appender.server.policies.size.size = 50MB
appender.server.strategy.type = DefaultRolloverStrategy
appender.server.strategy.max = 2
rootLogger.level = info
rootLogger.appenderRef.server.ref = server
logger.request.name = kafka.request.logger
logger.request.level = warn
logger.netclient.name = org.apache.kafka.clients.NetworkClient
logger.netclient.level = warn
LOG
}

show_log_tail() {
  local f
  for f in "$dir/logs/server.log" "$dir/logs/kafka.out"; do
    [ -s "$f" ] || continue
    echo "--- last lines of $f" >&2
    tail -n 40 "$f" >&2
  done
}

cmd_start() {
  parse_opts yes "$@"
  local pid
  if pid=$(running_pid); then
    port=$(recorded_port)
    accepts "$port" || die "broker pid $pid of $dir runs but 127.0.0.1:$port does not accept connections"
    echo "kafka: already running (pid $pid)" >&2
    echo "127.0.0.1:$port"
    return 0
  fi
  # The first start fetches Kafka; afterwards this is a stamp check.
  cmd_fetch
  if pid=$(find_broker_on_dir); then
    die "pid $pid runs a broker on $dir but $dir/kafka.pid does not record it; end that pid first"
  fi
  accepts "$port" && die "127.0.0.1:$port is already taken by another process"
  accepts $((port + 1)) && die "127.0.0.1:$((port + 1)) (controller) is already taken by another process"
  write_config

  local -a jvm
  read -r -a jvm <<<"${KAFKA_HEAP_OPTS:--Xms256m -Xmx768m}"
  jvm+=(-XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true
    "-Dlog4j2.configurationFile=$dir/log4j2.properties" "-Dkafka.logs.dir=$dir/logs"
    -cp "$cache/lib/*")

  # Storage is formatted once; a restart (after stop or crash) reuses the data folder.
  if [ ! -f "$dir/data/meta.properties" ]; then
    java "${jvm[@]}" kafka.tools.StorageTool format -t "$CLUSTER_ID" \
      -c "$dir/server.properties" --ignore-formatted >"$dir/logs/format.out" 2>&1 || {
      cat "$dir/logs/format.out" >&2
      die "formatting $dir/data failed"
    }
  fi

  # Only what this start logs counts as readiness: server.log survives restarts.
  local from=0
  [ -f "$dir/logs/server.log" ] && from=$(stat -c %s "$dir/logs/server.log")
  nohup java "${jvm[@]}" kafka.Kafka "$dir/server.properties" \
    </dev/null >>"$dir/logs/kafka.out" 2>&1 &
  pid=$!
  echo "$pid" >"$(pidfile)"
  # Until it is ready the broker is ours to clean up: an interrupted or failed start leaves
  # nothing running. We never wait() for it, so its pid cannot be reused meanwhile.
  # shellcheck disable=SC2064 # expand now: $pid is local
  trap "abort_start $pid; exit 130" INT TERM

  local timeout=${KAFKA_START_TIMEOUT:-90} started=$SECONDS
  while ((SECONDS - started < timeout)); do
    # Not is_our_broker: for a moment after the fork the child still runs bash, not java.
    if ! child_alive "$pid"; then
      abort_start "$pid"
      show_log_tail
      die "the broker exited during start (see $dir/logs)"
    fi
    # A rollover of server.log meanwhile restarts it from 0.
    if [ "$(stat -c %s "$dir/logs/server.log" 2>/dev/null || echo 0)" -lt "$from" ]; then
      from=0
    fi
    # grep -c, not -q: -q stops reading at the first match, tail then dies of SIGPIPE and
    # pipefail fails the test whenever server.log is long (any restart on old data).
    if tail -c +$((from + 1)) "$dir/logs/server.log" 2>/dev/null |
      grep -c 'Kafka Server started' >/dev/null && accepts "$port"; then
      trap - INT TERM
      echo "kafka: started pid $pid in $((SECONDS - started)) s, data in $dir/data" >&2
      echo "127.0.0.1:$port"
      return 0
    fi
    sleep 0.2
  done
  abort_start "$pid"
  show_log_tail
  die "the broker did not come up on 127.0.0.1:$port within $timeout s (see $dir/logs)"
}

# A child of this shell exists and has not exited (a dead child stays a zombie until reaped).
child_alive() {
  local state
  state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
  [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

# Kills the broker this start launched (our own child) and forgets it.
abort_start() {
  local i
  kill -KILL "$1" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    child_alive "$1" || break
    sleep 0.1
  done
  rm -f "$(pidfile)"
}

# Prints the pid of a broker running on DIR's server.properties, recorded or not.
find_broker_on_dir() {
  local f pid
  for f in /proc/[0-9]*/cmdline; do
    pid=${f#/proc/}
    pid=${pid%/cmdline}
    if is_our_broker "$pid"; then
      echo "$pid"
      return 0
    fi
  done
  return 1
}

cmd_stop() {
  parse_opts no "$@"
  local pid
  pid=$(running_pid) || {
    echo "kafka: not running ($dir)" >&2
    return 0
  }
  # Controlled shutdown moves leadership and flushes; give it 30 s, then force.
  kill -TERM "$pid" 2>/dev/null || true
  if ! wait_gone "$pid" 300; then
    echo "kafka: pid $pid still up after 30 s, sending SIGKILL" >&2
    is_our_broker "$pid" && kill -KILL "$pid" 2>/dev/null
    wait_gone "$pid" 100 || die "pid $pid survived SIGKILL"
  fi
  rm -f "$(pidfile)"
  echo "kafka: stopped pid $pid" >&2
}

cmd_crash() {
  parse_opts no "$@"
  local pid
  pid=$(running_pid) || die "not running ($dir)"
  kill -KILL "$pid"
  wait_gone "$pid" 100 || die "pid $pid survived SIGKILL"
  rm -f "$(pidfile)"
  echo "kafka: killed pid $pid (SIGKILL)" >&2
}

cmd_status() {
  parse_opts no "$@"
  local pid p
  pid=$(running_pid) || {
    echo "kafka: not running ($dir)" >&2
    return 1
  }
  p=$(recorded_port)
  accepts "$p" || {
    echo "kafka: pid $pid runs but 127.0.0.1:$p does not accept connections" >&2
    return 1
  }
  echo "kafka: running, pid $pid, 127.0.0.1:$p" >&2
  echo "127.0.0.1:$p"
}

cmd_topics() {
  parse_opts no "$@"
  local p
  p=$(recorded_port) || die "no broker configured in $dir"
  command -v kcat >/dev/null || die "kcat is missing (scripts/deps.sh test installs it)"
  kcat -b "127.0.0.1:$p" -L -m 10
}

[ $# -ge 1 ] || usage
sub=$1
shift
case $sub in
  fetch) cmd_fetch "$@" ;;
  start) cmd_start "$@" ;;
  stop) cmd_stop "$@" ;;
  crash) cmd_crash "$@" ;;
  status) cmd_status "$@" ;;
  topics) cmd_topics "$@" ;;
  -h | --help | help) usage 0 ;;
  *) usage ;;
esac
