# boxoffice — the front door. `make run` and `make test` are all a fresh Debian 12
# machine needs (as root, missing packages are installed by scripts/deps.sh).

BUILD      ?= build
ASAN_BUILD ?= build-asan
DATA       ?= data
ADMIN_KEY  ?= demo-admin-key
LISTEN     ?= 127.0.0.1:8080

.PHONY: all build run test test-fast asan bench fuzz lint valgrind clean deps-run deps-test

all: build

deps-run:
	@scripts/deps.sh run

deps-test:
	@scripts/deps.sh test

$(BUILD)/build.ninja:
	meson setup $(BUILD) --buildtype=debugoptimized

build: deps-run $(BUILD)/build.ninja
	ninja -C $(BUILD)
	@echo "binary: $(BUILD)/boxoffice"

$(ASAN_BUILD)/build.ninja:
	meson setup $(ASAN_BUILD) --buildtype=debug -Db_sanitize=address,undefined -Db_lundef=false

asan: $(ASAN_BUILD)/build.ninja
	ninja -C $(ASAN_BUILD)

# Migrates and seeds $(DATA)/boxoffice.db, serves it on $(LISTEN), and prints the
# curl walkthrough once the server listens. Override: make run LISTEN=127.0.0.1:9090
# DATA=/tmp/bx ADMIN_KEY=secret
run: build
	@scripts/run-demo.sh $(BUILD)/boxoffice $(DATA) $(LISTEN) $(ADMIN_KEY)

# Every suite, and all of them again under ASan+UBSan (compiled by the script while
# the plain build's suites run); the last line is the summary.
test: deps-test build $(ASAN_BUILD)/build.ninja
	@scripts/run-tests.sh $(BUILD) $(ASAN_BUILD)

# The plain build only (quicker while developing).
test-fast: deps-test build
	@scripts/run-tests.sh $(BUILD)

# Benchmarks (not part of `make test`): nginx baseline, embedded and scale-out
# boxoffice on loopback, scenarios S1-S5, scale-out with PostgreSQL and Redis behind a
# delaying relay, a frozen PostgreSQL; writes bench/results.json and docs/BENCHMARKS.md.
# BENCH_ONLY=part,... runs a subset (bench/run.sh lists the parts and knobs).
bench: deps-test build
	bench/run.sh $(BUILD)

# Every libFuzzer target for 60 s each (FUZZ_SECONDS=n to change), corpus in tests/fuzz/corpus.
FUZZ_SECONDS ?= 60
fuzz: deps-test
	tests/fuzz/run.sh $(FUZZ_SECONDS) build-fuzz --record

# cppcheck + clang-tidy with the repo's configuration: zero findings or it fails.
lint: deps-test build
	scripts/lint.sh $(BUILD) --record

# The HTTP flow suite with the server under valgrind memcheck (zero errors, zero leaks).
valgrind: deps-test build
	scripts/valgrind-http.sh $(BUILD) --record

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) build-fuzz build-lint
