# The project's commands. `make test` is what CI runs.
.PHONY: setup test test-kafka conformance kafka-start kafka-stop bench bench-kafka word-count

setup:
	@scripts/setup.sh

## Runs the whole test suite: unit, semantics and doc tests (benches run once as smoke tests).
test: setup
	cargo test --workspace --all-targets
	cargo test --workspace --doc

## Runs the runtime suites against real Apache Kafka: STREAMS_BOOTSTRAP_SERVERS if set (e.g. after
## `docker compose up -d`), else a broker started from the Maven jars (needs Java 17+ and Maven).
test-kafka: setup
	@scripts/test-kafka.sh

## Runs the catalogue of topologies through Kafka Streams itself and through this project, on SEEDS
## random scenarios each, and compares every output record (needs Java 17+ and Maven; `make test`
## runs it too, with 200 seeds, where Java is installed).
SEEDS ?= 1000
conformance: setup
	CONFORMANCE_SEEDS=$(SEEDS) STREAMS_REQUIRE_JAVA=1 cargo test --test conformance -- --nocapture

## Starts (kafka-start) or stops (kafka-stop) a local Apache Kafka broker; prints its address.
kafka-start:
	@scripts/kafka.sh start
kafka-stop:
	@scripts/kafka.sh stop

## Runs the same topologies through this project and through Kafka Streams (Java) on real Apache
## Kafka, one after the other: records/s, MB/s, CPU s per million records, peak RSS and ratios.
## STREAMS_BOOTSTRAP_SERVERS picks the broker (else one is started from the Maven jars);
## STREAMS_BENCH_SCALE scales the record counts, STREAMS_BENCH_ONLY picks topologies.
bench-kafka: setup
	@scripts/bench-kafka.sh

## Runs the benchmarks without a broker (test driver, RocksDB) and prints records/s and ratios;
## `make bench-kafka` runs the topologies on Apache Kafka, against Kafka Streams.
bench: setup
	cargo bench --bench word_count
	cargo bench --bench windows_joins
	cargo bench --bench rocksdb_memory

## Runs the word count example on an embedded broker until it has counted its sample text; with
## ARGS="--bootstrap-servers host:port" it runs against a real cluster until Ctrl-C.
word-count: setup
	cargo run --example word_count -- $(if $(ARGS),$(ARGS),--until-caught-up)
