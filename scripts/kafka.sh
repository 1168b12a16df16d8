#!/usr/bin/env bash
# A real Apache Kafka broker (KRaft, one combined broker + controller) on loopback, run from the
# jars that Maven resolves for scripts/kafka/pom.xml. No Docker needed: Java 17+ and Maven.
#
#   scripts/kafka.sh start [DIR]   format DIR once, start the broker, wait until it answers,
#                                  print its bootstrap address
#   scripts/kafka.sh stop [DIR]    controlled shutdown (SIGTERM), waits for the process to end
#   scripts/kafka.sh kill [DIR]    SIGKILL, as a crash (start again resumes on the same data)
#   scripts/kafka.sh status [DIR]  prints the bootstrap address if running, else exits 1
#   scripts/kafka.sh classpath     resolves the jars and prints the classpath
#
# DIR holds the broker's data, config, log, pid and port (default ~/.cache/streams-kafka/broker);
# a restarted broker keeps its port and data. Jars stay in the local Maven repository.
# Broker settings beyond the defaults: only what a single node needs (replication factor 1 for
# internal topics); tests that need more set topic configs themselves.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
pom="$here/kafka/pom.xml"
cache="${STREAMS_KAFKA_CACHE:-$HOME/.cache/streams-kafka}"
version="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$pom")"

die() { echo "kafka.sh: $*" >&2; exit 1; }

classpath() {
    local file="$cache/classpath-$version.txt"
    if [ ! -s "$file" ] || ! tr ':' '\n' <"$file" | while read -r jar; do [ -f "$jar" ] || exit 1; done; then
        command -v mvn >/dev/null || die "Maven (mvn) is needed to resolve Apache Kafka $version"
        mkdir -p "$cache"
        echo "kafka.sh: resolving Apache Kafka $version through Maven" >&2
        mvn -q -B -Dstyle.color=never -f "$pom" dependency:build-classpath -Dmdep.outputFile="$file.tmp" >&2 \
            || die "could not resolve Apache Kafka $version (see Maven's output above)"
        mv "$file.tmp" "$file"
    fi
    cat "$file"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

running() { [ -f "$1/pid" ] && kill -0 "$(cat "$1/pid")" 2>/dev/null; }

answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start() {
    local dir="$1"
    command -v java >/dev/null || die "Java 17+ is needed to run Apache Kafka"
    mkdir -p "$dir"
    dir="$(cd "$dir" && pwd)"
    if running "$dir"; then
        echo "127.0.0.1:$(cat "$dir/port")"
        return
    fi
    local cp
    cp="$(classpath)"
    if [ ! -f "$dir/data/meta.properties" ]; then
        local port controller
        port="$(free_port)"
        controller="$(free_port)"
        echo "$port" >"$dir/port"
        cat >"$dir/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$dir/data
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
EOF
        cat >"$dir/log4j2.properties" <<EOF
rootLogger.level=INFO
rootLogger.appenderRef.file.ref=file
appender.file.type=File
appender.file.name=file
appender.file.fileName=$dir/server.log
appender.file.layout.type=PatternLayout
appender.file.layout.pattern=[%d] %p %m (%c)%n
EOF
        java -cp "$cp" -Dlog4j2.configurationFile="$dir/log4j2.properties" kafka.tools.StorageTool format \
            -t "$(java -cp "$cp" kafka.tools.StorageTool random-uuid 2>/dev/null)" \
            -c "$dir/server.properties" >"$dir/format.log" 2>&1 || { cat "$dir/format.log" >&2; die "format failed"; }
    fi
    local port
    port="$(cat "$dir/port")"
    answers "$port" && die "port $port (kept in $dir/port) is taken by another process"
    [ -f "$dir/server.log" ] && mv "$dir/server.log" "$dir/server.log.1"
    # setsid: the broker outlives the shell that started it and takes no signal meant for it.
    setsid java -Xms256m -Xmx1g -XX:+UseG1GC -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$dir/log4j2.properties" -Dkafka.logs.dir="$dir" \
        -cp "$cp" kafka.Kafka "$dir/server.properties" >"$dir/stdout.log" 2>&1 </dev/null &
    echo $! >"$dir/pid"
    for _ in $(seq 600); do
        if ! running "$dir"; then
            tail -30 "$dir/stdout.log" "$dir/server.log" >&2 2>/dev/null || true
            die "the broker exited while starting (logs in $dir)"
        fi
        if answers "$port" && grep -q "Kafka Server started" "$dir/server.log" 2>/dev/null; then
            echo "127.0.0.1:$port"
            return
        fi
        sleep 0.2
    done
    die "the broker did not start within 120 s (logs in $dir)"
}

stop() {
    local dir="$1" signal="$2"
    running "$dir" || return 0
    local pid
    pid="$(cat "$dir/pid")"
    kill "-$signal" "$pid"
    for _ in $(seq 600); do
        kill -0 "$pid" 2>/dev/null || { rm -f "$dir/pid"; return 0; }
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$dir/pid"
}

command="${1:-}"
dir="${2:-$cache/broker}"
case "$command" in
    start) start "$dir" ;;
    stop) stop "$dir" TERM ;;
    kill) stop "$dir" KILL ;;
    status) running "$dir" && echo "127.0.0.1:$(cat "$dir/port")" ;;
    classpath) classpath ;;
    *) die "usage: kafka.sh start|stop|kill|status [DIR] | classpath" ;;
esac
