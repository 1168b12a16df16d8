#!/usr/bin/env bash
# `make bench-kafka`: benches/kafka.rs against the broker named by STREAMS_BOOTSTRAP_SERVERS, else
# one started here from the Maven jars (scripts/kafka.sh) and stopped at the end. Kafka Streams
# runs through tests/reference/run.sh (Java 17+ and Maven).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo bench --bench kafka --no-run
tests/reference/run.sh build
if [ -z "${STREAMS_BOOTSTRAP_SERVERS:-}" ]; then
    dir="$(mktemp -d "${TMPDIR:-/tmp}/streams-kafka.XXXXXX")"
    trap 'scripts/kafka.sh stop "$dir"; rm -rf "$dir"' EXIT
    STREAMS_BOOTSTRAP_SERVERS="$(scripts/kafka.sh start "$dir")"
    export STREAMS_BOOTSTRAP_SERVERS
fi
cargo bench --bench kafka
