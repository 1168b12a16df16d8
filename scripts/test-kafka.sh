#!/usr/bin/env bash
# Runs the runtime suites against real Apache Kafka: the broker named by
# STREAMS_BOOTSTRAP_SERVERS (e.g. `docker compose up -d` and localhost:9092), else one started
# here from the Maven jars (scripts/kafka.sh) and stopped at the end.
#
# Against a broker started here every exactly-once and multi-member test must run: a test that
# would skip fails instead (STREAMS_REQUIRE_ALL=1). Tests that need a broker of their own
# (killed and restarted mid-stream) start one with scripts/kafka.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

suites=(--test kafka_runtime --test windows_joins_runtime --test failure_handling --test interactive_queries --test metrics --test rebalancing)
# The build first, so that the broker's clock is spent on tests; the service suite runs the
# examples as processes.
cargo test "${suites[@]}" --test resilience --test service --no-run
cargo build --example word_count --example interactive_queries

if [ -z "${STREAMS_BOOTSTRAP_SERVERS:-}" ]; then
    dir="$(mktemp -d "${TMPDIR:-/tmp}/streams-kafka.XXXXXX")"
    trap 'scripts/kafka.sh stop "$dir"; rm -rf "$dir"' EXIT
    STREAMS_BOOTSTRAP_SERVERS="$(scripts/kafka.sh start "$dir")"
    export STREAMS_BOOTSTRAP_SERVERS
    export STREAMS_BROKER="Apache Kafka $(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' scripts/kafka/pom.xml) (scripts/kafka.sh)"
    export STREAMS_REQUIRE_ALL="${STREAMS_REQUIRE_ALL:-1}"
fi
echo "== runtime suites against ${STREAMS_BROKER:-the broker} at $STREAMS_BOOTSTRAP_SERVERS =="
cargo test "${suites[@]}"
cargo test --test service -- --test-threads=1 --nocapture
# One at a time: each runs several instances (some as child processes) on this machine's cores;
# their figures (records, restorations, recovery times) are printed.
cargo test --test resilience -- --test-threads=1 --nocapture
