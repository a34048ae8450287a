#!/usr/bin/env bash
# Start and stop a real single-node Apache Kafka broker (KRaft mode: one JVM
# that is both broker and controller) on 127.0.0.1, for the integration tests.
#
# Usage: scripts/kafka.sh COMMAND [ARGS]
#
#   install                     fetch the broker jars into the cache (once)
#   start                       install if needed, start a broker, wait until ready
#   stop                        stop the broker, delete its state dir
#   status                      say whether it runs (exit 0) or not (exit 3)
#   create-topic NAME [PARTS]   create a topic (default 3 partitions)
#   bootstrap                   print the bootstrap address, e.g. 127.0.0.1:19092
#
# Environment (all optional):
#   KAFKA_PORT             PLAINTEXT listener port              (19092)
#   KAFKA_CONTROLLER_PORT  KRaft controller listener port       (19093)
#   KAFKA_CACHE            where the jars go   (~/.cache/dovecot-kafka/kafka-VERSION)
#   KAFKA_STATE            state dir: config, data, broker.log  (fresh mktemp dir)
#   KAFKA_RUN              run file with pid and state dir      (/tmp/dovecot-kafka-broker.run)
#   KAFKA_HEAP             JVM heap options                     (-Xmx512m -Xms128m)
#   KAFKA_OPTS             extra JVM options for the broker
#   KAFKA_START_TIMEOUT    seconds to wait for the broker       (90)
#   KAFKA_STOP_TIMEOUT     seconds to wait after SIGTERM        (30)
#   KAFKA_KEEP_STATE=1     stop keeps the state dir
#   JAVA_HOME / JAVA       which java to run                    (java on PATH)
#
# The jars are resolved by Maven from scripts/kafka/pom.xml; the Kafka version
# is the kafka.version property there.

set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
POM="$SCRIPT_DIR/kafka/pom.xml"

# The Kafka version, read from the pom so that it is written down only once.
KAFKA_VERSION=$(sed -n 's:.*<kafka\.version>\(.*\)</kafka\.version>.*:\1:p' "$POM" | head -n 1)
[[ -n "$KAFKA_VERSION" ]] || { echo "kafka: cannot read kafka.version from $POM" >&2; exit 1; }

KAFKA_PORT=${KAFKA_PORT:-19092}
KAFKA_CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-19093}
KAFKA_CACHE=${KAFKA_CACHE:-${HOME:-/tmp}/.cache/dovecot-kafka/kafka-$KAFKA_VERSION}
KAFKA_RUN=${KAFKA_RUN:-/tmp/dovecot-kafka-broker.run}
KAFKA_HEAP=${KAFKA_HEAP:--Xmx512m -Xms128m}
KAFKA_OPTS=${KAFKA_OPTS:-}
KAFKA_START_TIMEOUT=${KAFKA_START_TIMEOUT:-90}
KAFKA_STOP_TIMEOUT=${KAFKA_STOP_TIMEOUT:-30}
KAFKA_KEEP_STATE=${KAFKA_KEEP_STATE:-0}

LIB="$KAFKA_CACHE/lib"
MARKER="$KAFKA_CACHE/.installed"   # written last by install: its presence means lib/ is complete

if [[ -n "${JAVA:-}" ]]; then
    :
elif [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then
    JAVA="$JAVA_HOME/bin/java"
else
    JAVA=java
fi

say() { echo "kafka: $*"; }
die() { echo "kafka: error: $*" >&2; exit 1; }

# Milliseconds since the epoch (bash 5 has EPOCHREALTIME), for the timings.
now_ms() { local t=${EPOCHREALTIME/[.,]/}; echo $((t / 1000)); }
elapsed() { # $1 = start in ms; prints e.g. "7.3s"
    local ms=$(($(now_ms) - $1))
    printf '%d.%ds' $((ms / 1000)) $((ms % 1000 / 100))
}

# ---------------------------------------------------------------- install

# The marker holds a hash of the pom, so a changed pom (new version or new
# dependency) installs again even into the same cache folder.
pom_hash() { sha256sum "$POM" | cut -d' ' -f1; }

installed() { [[ -f "$MARKER" && "$(cat "$MARKER")" == "$(pom_hash)" ]]; }

cmd_install() {
    if installed; then
        return 0
    fi
    command -v mvn >/dev/null || die "mvn not found (apt-get install maven)"
    mkdir -p "$KAFKA_CACHE"
    # Serialise concurrent installs into the same cache.
    exec 9>"$KAFKA_CACHE/.lock"
    flock 9
    if installed; then # another process finished it while we waited
        exec 9>&-
        return 0
    fi
    say "installing Kafka $KAFKA_VERSION jars into $LIB ..."
    local t0 tmp
    t0=$(now_ms)
    # Resolve into a scratch folder first; a run that dies half way leaves
    # neither a partial lib/ nor the marker behind.
    tmp="$KAFKA_CACHE/lib.tmp.$$"
    rm -rf "$KAFKA_CACHE"/lib.tmp.* # left by an install that was killed
    # Maven's output goes to install.log and is shown only if it fails.
    if ! mvn -B -q -Dstyle.color=never -f "$POM" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$tmp" \
        >"$KAFKA_CACHE/install.log" 2>&1; then
        cat "$KAFKA_CACHE/install.log" >&2
        rm -rf "$tmp"
        die "maven could not resolve the Kafka jars (log above, also in $KAFKA_CACHE/install.log)"
    fi
    ls "$tmp"/kafka_2.13-*.jar >/dev/null 2>&1 || { rm -rf "$tmp"; die "no kafka_2.13 jar was resolved"; }
    rm -f "$MARKER"
    rm -rf "$LIB"
    mv "$tmp" "$LIB"
    pom_hash >"$MARKER.tmp"
    mv "$MARKER.tmp" "$MARKER"
    exec 9>&-
    say "installed $(find "$LIB" -name '*.jar' | wc -l) jars in $(elapsed "$t0")"
}

# ---------------------------------------------------------------- run file

# The run file is a small env file written by start:
#   KAFKA_PID, KAFKA_STATE_DIR, KAFKA_BOOTSTRAP, KAFKA_VERSION_RUNNING
load_run_file() {
    KAFKA_PID="" KAFKA_STATE_DIR="" KAFKA_BOOTSTRAP="" KAFKA_VERSION_RUNNING=""
    [[ -f "$KAFKA_RUN" ]] || return 1
    # shellcheck disable=SC1090
    source "$KAFKA_RUN"
    [[ -n "$KAFKA_PID" ]]
}

write_run_file() { # pid state_dir
    {
        printf 'KAFKA_PID=%q\n' "$1"
        printf 'KAFKA_STATE_DIR=%q\n' "$2"
        printf 'KAFKA_BOOTSTRAP=%q\n' "127.0.0.1:$KAFKA_PORT"
        printf 'KAFKA_VERSION_RUNNING=%q\n' "$KAFKA_VERSION"
    } >"$KAFKA_RUN.tmp"
    mv "$KAFKA_RUN.tmp" "$KAFKA_RUN"
}

# True if $1 is a live process running our broker (guards against a pid that
# the kernel has since given to something else).
is_broker_pid() {
    local pid=$1
    [[ -n "$pid" && -r "/proc/$pid/cmdline" ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q 'kafka\.Kafka'
}

running() { load_run_file && is_broker_pid "$KAFKA_PID"; }

# True if $1 is a state dir made by start (its server.properties carries our
# header), so stop never deletes some other folder named by a bad run file.
is_state_dir() {
    [[ -n "$1" && -f "$1/server.properties" ]] &&
        head -n 1 "$1/server.properties" | grep -q '^# Written by scripts/kafka.sh'
}

# ---------------------------------------------------------------- config

write_configs() { # state_dir
    local state=$1
    cat >"$state/server.properties" <<EOF
# Written by scripts/kafka.sh: a throw-away single-node KRaft cluster.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=$state/data

num.partitions=3
auto.create.topics.enable=true
delete.topic.enable=true

# One node: every replication factor and ISR minimum is 1.
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# Fewer internal partitions than the production default: quicker first use.
offsets.topic.num.partitions=5
transaction.state.log.num.partitions=5

# Consumer groups start at once instead of waiting for more members.
group.initial.rebalance.delay.ms=0
EOF

    # Broker log: everything at INFO goes to stdout, which start sends to
    # $state/broker.log.
    cat >"$state/log4j2.properties" <<'EOF'
status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = OUT
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.statechange.name = state.change.logger
logger.statechange.level = WARN
EOF

    # Command line tools (format, create-topic): warnings only, on stderr.
    cat >"$state/tools-log4j2.properties" <<'EOF'
status = warn
appender.err.type = Console
appender.err.name = ERR
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.err.ref = ERR
EOF
}

# A random Kafka cluster id: 16 random bytes in URL-safe base64, no padding.
# One that starts with "-" would be read as an option, so draw again.
random_cluster_id() {
    local id
    while :; do
        id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
        [[ "$id" == -* ]] || break
    done
    echo "$id"
}

# Run a Kafka tool class with the cached jars; $1 = state dir, rest = class and args.
run_tool() {
    local state=$1
    shift
    "$JAVA" -Xmx256m -cp "$LIB/*" \
        -Dlog4j2.configurationFile="$state/tools-log4j2.properties" "$@"
}

# True if something accepts TCP connections on 127.0.0.1:$1.
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# True once the broker answers a metadata request and lists itself.
broker_answers() {
    local out
    # Cheap check first: nothing to ask while the port is still closed.
    port_in_use "$KAFKA_PORT" || return 1
    if command -v kcat >/dev/null; then
        out=$(kcat -b "127.0.0.1:$KAFKA_PORT" -L -m 2 2>/dev/null) || return 1
        grep -q '1 brokers' <<<"$out"
    else
        run_tool "$1" org.apache.kafka.tools.TopicCommand \
            --bootstrap-server "127.0.0.1:$KAFKA_PORT" --list >/dev/null 2>&1
    fi
}

# ---------------------------------------------------------------- start

cmd_start() {
    if running; then
        say "already running (pid $KAFKA_PID) on $KAFKA_BOOTSTRAP, state $KAFKA_STATE_DIR"
        return 0
    fi
    if [[ -f "$KAFKA_RUN" ]]; then
        say "removing stale run file $KAFKA_RUN"
        stop_quietly
    fi
    cmd_install
    command -v "$JAVA" >/dev/null || die "java not found (need Java 17 or newer)"

    local p
    for p in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT"; do
        if port_in_use "$p"; then
            die "port 127.0.0.1:$p is already in use (another broker? try: $0 stop)"
        fi
    done

    local t0 state
    t0=$(now_ms)
    if [[ -n "${KAFKA_STATE:-}" ]]; then
        state=$KAFKA_STATE
        mkdir -p "$state"
    else
        state=$(mktemp -d /tmp/dovecot-kafka-broker.XXXXXX)
    fi
    state=$(cd "$state" && pwd)
    say "starting Kafka $KAFKA_VERSION on 127.0.0.1:$KAFKA_PORT (controller :$KAFKA_CONTROLLER_PORT), state $state ..."
    write_configs "$state"

    # Format the storage once; a kept state dir (KAFKA_STATE reused after
    # KAFKA_KEEP_STATE=1) is already formatted and is started as it is.
    if [[ ! -f "$state/data/meta.properties" ]]; then
        if ! run_tool "$state" kafka.tools.StorageTool format \
            --config "$state/server.properties" \
            --cluster-id "$(random_cluster_id)" --ignore-formatted \
            >"$state/format.log" 2>&1; then
            cat "$state/format.log" >&2
            die "formatting the storage in $state/data failed"
        fi
    fi

    # Start the broker in its own session (setsid), detached from this shell,
    # stdin closed, all output to broker.log. The inner shell writes its own
    # pid and then becomes java, so the pid file holds the JVM's pid.
    rm -f "$state/broker.pid"
    # shellcheck disable=SC2016,SC2086 # $$ is for the inner shell; KAFKA_HEAP and KAFKA_OPTS are lists of options
    setsid bash -c 'echo $$ >"$0/broker.pid"; exec "$@"' "$state" \
        "$JAVA" $KAFKA_HEAP -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$state/log4j2.properties" \
        -Dkafka.logs.dir="$state" \
        $KAFKA_OPTS \
        -cp "$LIB/*" kafka.Kafka "$state/server.properties" \
        </dev/null >"$state/broker.log" 2>&1 &

    local pid=""
    for _ in $(seq 1 50); do
        [[ -s "$state/broker.pid" ]] && pid=$(cat "$state/broker.pid") && [[ -n "$pid" ]] && break
        sleep 0.1
    done
    [[ -n "$pid" ]] || die "the broker process did not start (see $state/broker.log)"
    write_run_file "$pid" "$state"

    # Wait, bounded, for the broker to answer a metadata request.
    local deadline=$((SECONDS + KAFKA_START_TIMEOUT))
    until broker_answers "$state"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            fail_start "$pid" "$state" "the broker exited during start-up"
        fi
        if ((SECONDS >= deadline)); then
            fail_start "$pid" "$state" "the broker did not answer within ${KAFKA_START_TIMEOUT}s"
        fi
        sleep 0.2
    done
    say "ready in $(elapsed "$t0"): bootstrap 127.0.0.1:$KAFKA_PORT (pid $pid)"
}

# Start-up failed: show the end of the log, kill what runs, keep the state dir
# for a look, and exit non-zero.
fail_start() { # pid state message
    local pid=$1 state=$2 msg=$3
    echo "kafka: error: $msg; last lines of $state/broker.log:" >&2
    tail -n 40 "$state/broker.log" >&2 || true
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$KAFKA_RUN"
    echo "kafka: error: start failed; state left in $state" >&2
    exit 1
}

# ---------------------------------------------------------------- stop

# Stop what the run file names, if anything; print progress unless $1=quiet.
stop_broker() {
    local quiet=${1:-}
    if ! load_run_file; then
        [[ -n "$quiet" ]] || say "not running"
        rm -f "$KAFKA_RUN"
        return 0
    fi
    local pid=$KAFKA_PID state=$KAFKA_STATE_DIR t0
    t0=$(now_ms)
    if is_broker_pid "$pid"; then
        [[ -n "$quiet" ]] || say "stopping broker (pid $pid) ..."
        kill -TERM "$pid" 2>/dev/null || true
        local deadline=$((SECONDS + KAFKA_STOP_TIMEOUT))
        while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
            sleep 0.2
        done
        if kill -0 "$pid" 2>/dev/null; then
            say "broker did not stop within ${KAFKA_STOP_TIMEOUT}s, sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
        fi
        [[ -n "$quiet" ]] || say "stopped in $(elapsed "$t0")"
    else
        [[ -n "$quiet" ]] || say "not running (stale run file)"
    fi
    if [[ "$KAFKA_KEEP_STATE" == 1 ]]; then
        [[ -n "$quiet" ]] || say "state kept in $state"
    elif is_state_dir "$state"; then
        rm -rf "$state"
    elif [[ -n "$state" && -d "$state" ]]; then
        say "not deleting $state: it does not look like a broker state dir"
    fi
    rm -f "$KAFKA_RUN"
}

cmd_stop() { stop_broker; }
stop_quietly() { stop_broker quiet; }

# ---------------------------------------------------------------- status, tools

cmd_status() {
    if running; then
        say "running (pid $KAFKA_PID, Kafka ${KAFKA_VERSION_RUNNING:-?}) bootstrap $KAFKA_BOOTSTRAP, state $KAFKA_STATE_DIR"
        return 0
    fi
    say "not running (bootstrap would be 127.0.0.1:$KAFKA_PORT)"
    return 3
}

cmd_bootstrap() {
    if load_run_file; then echo "$KAFKA_BOOTSTRAP"; else echo "127.0.0.1:$KAFKA_PORT"; fi
}

cmd_create_topic() {
    local name=${1:-} parts=${2:-3}
    [[ -n "$name" ]] || die "usage: $0 create-topic NAME [PARTITIONS]"
    [[ "$parts" =~ ^[0-9]+$ ]] || die "PARTITIONS must be a number, not '$parts'"
    running || die "no broker is running (start it with: $0 start)"
    run_tool "$KAFKA_STATE_DIR" org.apache.kafka.tools.TopicCommand \
        --bootstrap-server "$KAFKA_BOOTSTRAP" --create --if-not-exists \
        --topic "$name" --partitions "$parts" --replication-factor 1 >/dev/null
    say "topic $name ready ($parts partitions)"
}

usage() {
    sed -n '2,/^$/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

main() {
    local cmd=${1:-}
    [[ $# -gt 0 ]] && shift
    case "$cmd" in
        install) cmd_install ;;
        start) cmd_start ;;
        stop) cmd_stop ;;
        status) cmd_status ;;
        bootstrap) cmd_bootstrap ;;
        create-topic) cmd_create_topic "$@" ;;
        -h | --help | help) usage ;;
        *)
            usage >&2
            exit 2
            ;;
    esac
}

main "$@"
