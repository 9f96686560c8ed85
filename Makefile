# make test   installs and starts what the tests need, then vets and runs every
#             test with the race detector; a missing component fails the run.
# make bench  runs the benchmarks against their anchors and prints ratio lines.
SHELL := /bin/bash
GO ?= go
BENCH ?= .
BENCHTIME ?= 1x

.PHONY: test bench vet fmt

test:
	@set -euo pipefail; \
	trap 'scripts/testenv.sh stop' EXIT; \
	eval "$$(scripts/testenv.sh start)"; \
	export VMM_TEST_REQUIRE=1; \
	$(GO) vet ./...; \
	$(GO) test -race -timeout 25m ./...

bench:
	@set -euo pipefail; \
	trap 'scripts/testenv.sh stop' EXIT; \
	export VMM_TEST_BENCH_HOSTS=$${VMM_TEST_BENCH_HOSTS:-10000}; \
	eval "$$(scripts/testenv.sh start)"; \
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchtime $(BENCHTIME) -timeout 60m ./... | tee bench.out; \
	grep -h 'ratio' bench.out || true

vet:
	$(GO) vet ./...

fmt:
	gofmt -l -w .
