#!/usr/bin/env bash
# Starts the reference runner: Kafka Streams' TopologyTestDriver reading conformance scenarios on
# stdin and answering on stdout (see Reference.java). Resolves the jars through Maven and compiles
# the sources with javac on first use; both are cached outside the clone, by content.
#
#   tests/reference/run.sh           run (what tests/conformance starts)
#   tests/reference/run.sh build     resolve and compile only
#   tests/reference/run.sh bench ... run a benchmark topology on a broker (Bench.java, make bench-kafka)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
cache="${STREAMS_KAFKA_CACHE:-$HOME/.cache/streams-kafka}/reference"
die() { echo "reference: $*" >&2; exit 1; }

version="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$here/pom.xml")"
broker="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$here/../../scripts/kafka/pom.xml")"
[ "$version" = "$broker" ] || die "Kafka Streams $version here, but the broker is Apache Kafka $broker (scripts/kafka/pom.xml): keep them equal"
command -v java >/dev/null || die "Java 17+ is needed to run Kafka Streams"
command -v javac >/dev/null || die "a JDK (javac) is needed to compile the reference runner"

hash="$(cat "$here/pom.xml" "$here"/src/main/java/streams/reference/*.java | sha256sum | cut -c1-16)"
classes="$cache/classes-$hash"
classpath_file="$cache/classpath-$(sha256sum <"$here/pom.xml" | cut -c1-16).txt"
mkdir -p "$cache"

if [ ! -s "$classpath_file" ] || ! tr ':' '\n' <"$classpath_file" | while read -r jar; do [ -f "$jar" ] || exit 1; done; then
    command -v mvn >/dev/null || die "Maven (mvn) is needed to resolve Kafka Streams $version"
    echo "reference: resolving Kafka Streams $version through Maven" >&2
    mvn -q -B -Dstyle.color=never -f "$here/pom.xml" dependency:build-classpath -Dmdep.outputFile="$classpath_file.tmp" >&2 \
        || die "could not resolve Kafka Streams $version (see Maven's output above)"
    mv "$classpath_file.tmp" "$classpath_file"
fi
classpath="$(cat "$classpath_file")"

if [ ! -f "$classes/.done" ]; then
    echo "reference: compiling the reference runner" >&2
    rm -rf "$classes.tmp"
    mkdir -p "$classes.tmp"
    javac -nowarn -encoding UTF-8 --release 17 -d "$classes.tmp" -cp "$classpath" "$here"/src/main/java/streams/reference/*.java >&2 \
        || die "javac failed"
    touch "$classes.tmp/.done"
    rm -rf "$classes"
    mv "$classes.tmp" "$classes"
fi

[ "${1:-}" = build ] && exit 0
if [ "${1:-}" = bench ]; then
    # A benchmark topology as a KafkaStreams application (Bench.java), on the JVM's defaults.
    shift
    exec java -cp "$classes:$classpath" streams.reference.Bench "$@"
fi
exec java -Xss8m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -cp "$classes:$classpath" streams.reference.Reference
