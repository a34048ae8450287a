# dovecot-kafka: make targets. `make` alone prints this list.
# Variables can be overridden: make test PKG=./parser/ TESTFLAGS=-v

GO        ?= go
PKG       ?= ./...
TESTFLAGS ?=
BIN       ?= dovecot-kafka
PREFIX    ?= /usr/local
VERSION   ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
KAFKA_BROKERS ?= 127.0.0.1:19092
FUZZTIME  ?= 30s

export CGO_ENABLED = 1

.PHONY: help
help:
	@echo "make build             build ./$(BIN)"
	@echo "make demo              start a local Kafka, publish examples/events.jsonl, print the records"
	@echo "make test              unit tests, Lua tests, then the real-broker and real-Dovecot tests"
	@echo "make test-unit         Go unit tests and Lua script tests only (no services)"
	@echo "make test-race         Go unit tests with the race detector"
	@echo "make test-integration  Go tests against the broker at KAFKA_BROKERS ($(KAFKA_BROKERS))"
	@echo "make test-e2e          real Dovecot + daemon + Kafka, compared with the expected captures"
	@echo "make test-e2e-exporter the same through Dovecot's event exporter (JSON and tab-text)"
	@echo "make test-tools        operator commands: unit tests, then against KAFKA_BROKERS"
	@echo "make test-faults       fault injection against a private broker (short); test-faults-long: 15 minutes"
	@echo "make bench             Go benchmarks and the one-million-line backlog run"
	@echo "make bench-dovecot     IMAP STORE/s and LMTP deliveries/s with and without push-events.lua"
	@echo "make fuzz              run each fuzz test for FUZZTIME ($(FUZZTIME))"
	@echo "make lint              gofmt, go vet, luacheck (and staticcheck if installed)"
	@echo "make tidy-check        go.mod and go.sum are tidy"
	@echo "make install           install the binary into PREFIX/bin"
	@echo "make clean             remove build output"

.PHONY: build
build:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN) .

.PHONY: demo
demo:
	scripts/demo.sh

.PHONY: test-unit
test-unit:
	@echo ">> go unit tests"
	$(GO) test $(TESTFLAGS) $(PKG)
	@echo ">> lua script tests"
	dovecot-conf/test/run.sh

# The full suite needs a broker (scripts/kafka.sh start) and root for the
# private Dovecot instance; .ci/run starts what it needs and calls this.
.PHONY: test
test: lint test-unit test-integration test-tools test-e2e test-e2e-exporter test-faults

.PHONY: test-race
test-race:
	$(GO) test -race $(TESTFLAGS) $(PKG)

.PHONY: test-integration
test-integration:
	@echo ">> integration tests against $(KAFKA_BROKERS)"
	KAFKA_BROKERS=$(KAFKA_BROKERS) $(GO) test -tags integration -count=1 $(TESTFLAGS) ./test/integration/

# Fault injection: the test starts and stops its own broker through
# scripts/kafka.sh on 127.0.0.1:39092 (controller :39093), so it needs java,
# mvn and kcat but no running broker. FAULTS_SEED=N replays a schedule;
# FAULTS_DURATION, FAULTS_RATE, FAULTS_KINDS and FAULTS_KEEP=1 tune it
# (see test/faults/main_test.go).
FAULTS_LONG_DURATION ?= 15m
FAULTS_LONG_RATE     ?= 2000
FAULTS_LONG_TIMEOUT  ?= 45m

.PHONY: test-faults
test-faults:
	@echo ">> fault injection, short run, private broker on 127.0.0.1:39092"
	$(GO) test -tags faults -count=1 -timeout 10m $(TESTFLAGS) ./test/faults/ -v

.PHONY: test-faults-long
test-faults-long:
	@echo ">> fault injection, $(FAULTS_LONG_DURATION) at $(FAULTS_LONG_RATE) events/s, private broker on 127.0.0.1:39092"
	FAULTS_DURATION=$(FAULTS_LONG_DURATION) FAULTS_RATE=$(FAULTS_LONG_RATE) \
		$(GO) test -tags faults -count=1 -timeout $(FAULTS_LONG_TIMEOUT) $(TESTFLAGS) ./test/faults/ -v

.PHONY: test-e2e
test-e2e:
	@echo ">> end-to-end: Dovecot scenario -> daemon -> Kafka"
	KAFKA_BROKERS=$(KAFKA_BROKERS) test/e2e/run.sh

.PHONY: test-e2e-exporter
test-e2e-exporter:
	@echo ">> end-to-end: Dovecot event exporter (log transport) -> daemon -> Kafka"
	KAFKA_BROKERS=$(KAFKA_BROKERS) test/e2e/run-exporter.sh
	EXPORTER_FORMAT=tab-text KAFKA_BROKERS=$(KAFKA_BROKERS) test/e2e/run-exporter.sh

.PHONY: bench
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./parser/ ./mapping/ ./state/ ./exporter/
	lua5.4 dovecot-conf/test/bench.lua dovecot-conf/push-events.lua $$(mktemp -u /tmp/dovecot-kafka-lua-bench.XXXXXX)
	KAFKA_BROKERS=$(KAFKA_BROKERS) scripts/bench-backlog.sh

.PHONY: bench-dovecot
bench-dovecot:
	scripts/bench-dovecot.sh

.PHONY: fuzz
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzParse -fuzztime $(FUZZTIME) ./parser/
	$(GO) test -run '^$$' -fuzz FuzzFromEvent -fuzztime $(FUZZTIME) ./mapping/
	$(GO) test -run '^$$' -fuzz FuzzSource -fuzztime $(FUZZTIME) ./exporter/
	$(GO) test -run '^$$' -fuzz FuzzTranslate -fuzztime $(FUZZTIME) ./exporter/

.PHONY: lint
lint:
	@echo ">> gofmt"
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	@echo ">> go vet"
	$(GO) vet $(PKG)
	$(GO) vet -tags integration ./test/integration/
	@if command -v staticcheck >/dev/null; then echo ">> staticcheck"; staticcheck $(PKG); fi
	@echo ">> luacheck"
	luacheck --config dovecot-conf/.luacheckrc dovecot-conf/

.PHONY: tidy-check
tidy-check:
	$(GO) mod tidy
	git diff --exit-code go.mod go.sum

.PHONY: install
install: build
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/$(BIN)

.PHONY: clean
clean:
	rm -f $(BIN)

# The operator commands (tools/: replay, state, check, import): unit tests,
# then the real-broker tests against KAFKA_BROKERS.
.PHONY: test-tools
test-tools:
	@echo ">> operator tools: unit tests"
	$(GO) test $(TESTFLAGS) ./tools/
	@echo ">> operator tools: against $(KAFKA_BROKERS)"
	KAFKA_BROKERS=$(KAFKA_BROKERS) $(GO) test -tags integration -count=1 $(TESTFLAGS) ./tools/
