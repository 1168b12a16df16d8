# The project's commands. `make test` is what CI runs.
.PHONY: setup test bench word-count

setup:
	@scripts/setup.sh

## Runs the whole test suite: unit, semantics and doc tests (benches run once as smoke tests).
test: setup
	cargo test --workspace --all-targets
	cargo test --workspace --doc

## Runs the benchmarks and prints records/s and ratios (STREAMS_BOOTSTRAP_SERVERS picks a broker).
bench: setup
	cargo bench --bench word_count
	cargo bench --bench windows_joins
	cargo bench --bench end_to_end

## Runs the word count example on an embedded broker (pass ARGS="--bootstrap-servers host:port" for a real one).
word-count: setup
	cargo run --example word_count -- $(ARGS)
