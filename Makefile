# Two commands matter on a fresh machine:
#   make run   runs the service locally (own PostgreSQL, Luarmor sandbox)
#   make test  runs every test against a throwaway PostgreSQL
SHELL := /bin/bash
GO ?= go
WITH_PG := ./scripts/with-postgres
# Keep the whole suite well inside CI's time on two cores.
TEST_FLAGS ?= -race -count=1 -timeout 20m

.PHONY: run test build vet fmt fuzz bench bench-budget bench-fairness bench-stock bench-burst bench-scale crash-test clean

build:
	$(GO) build -o bin/fulfiller ./cmd/fulfiller

# Stripe's own mock (internal/stripeapi's contract test) is installed once.
STRIPE_MOCK_VERSION ?= v0.183.0
test:
	@PATH="$$($(GO) env GOPATH)/bin:$$PATH" command -v stripe-mock >/dev/null || $(GO) install github.com/stripe/stripe-mock@$(STRIPE_MOCK_VERSION)
	$(WITH_PG) -- $(GO) test $(TEST_FLAGS) ./...

# Each fuzz target for FUZZTIME; a crasher lands in the package's
# testdata/fuzz/<Name>/ and fails `make test` until fixed.
FUZZTIME ?= 10s
fuzz:
	$(GO) test -run='^$$' -fuzz='^FuzzVerifyAndParse$$' -fuzztime=$(FUZZTIME) ./internal/webhook/
	$(GO) test -run='^$$' -fuzz='^FuzzDecodeEvent$$' -fuzztime=$(FUZZTIME) ./internal/jobs/

# golangci-lint (configured in .golangci.yml) is installed once, built from
# source, at the one version pinned here (a different one is replaced).
GOLANGCI_LINT_VERSION ?= v2.15.0
vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt: files above need formatting"; exit 1; }
	@PATH="$$($(GO) env GOPATH)/bin:$$PATH"; \
	  { command -v golangci-lint >/dev/null && golangci-lint version --short 2>/dev/null | grep -qx '$(GOLANGCI_LINT_VERSION:v%=%)'; } \
	  || $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION); \
	  golangci-lint run ./...

# Intake throughput against a baseline handler (three rounds, compared by
# the median), and webhook-to-key latency; about three minutes. Pass options through BENCH_FLAGS (go run ./bench -h).
bench:
	$(WITH_PG) -- $(GO) run ./bench $(BENCH_FLAGS)

# The fleet-wide Luarmor budget: three replicas drain backlogs of key
# creations at 30/3s; about ninety seconds.
bench-budget:
	$(WITH_PG) -- $(GO) run ./bench -scenario budget $(BENCH_FLAGS)

# SIGKILL the real binary again and again while it delivers keys, and
# report the recovery time of each kill; several minutes. Size it through
# CRASH_FLAGS (-crash.kills, -crash.orders, -crash.replicas, -crash.seed).
CRASH_FLAGS ?= -crash.kills=10 -crash.orders=60
crash-test:
	$(WITH_PG) -- $(GO) test -count=1 -timeout 30m -v -run 'TestSurvivesSIGKILL$$' ./internal/e2e/ $(CRASH_FLAGS)

# Fairness between orders: one-unit orders placed behind a 500-unit order
# at the real 60/1m budget; about two minutes.
bench-fairness:
	$(WITH_PG) -- $(GO) run ./bench -scenario fairness $(BENCH_FLAGS)

# A spike of 500 one-unit purchases within 10 s, with a stock of 500 keys
# and without, at 60/6s (60/1m ten times faster); two to three minutes.
bench-stock:
	$(WITH_PG) -- $(GO) run ./bench -scenario stock $(BENCH_FLAGS)

# A product drop: 100 purchases whose webhooks arrive within one second,
# sold from stock and made to order, buyers long-polling, PostgreSQL with
# fsync on (the other benchmarks run with it off), statements counted by
# pg_stat_statements; about a minute.
bench-burst:
	$(WITH_PG) --durable --statements -- $(GO) run ./bench -scenario burst $(BENCH_FLAGS)

# Years of orders: seed a history (1,000,000 orders unless
# BENCH_FLAGS='-orders 10000'), then time every look-up through HTTP, each
# periodic job's query, intake against the same at 10,000 orders, and the
# bytes per order before and after retention, on a server with fsync on;
# about ten minutes at a million.
bench-scale:
	$(WITH_PG) --durable -- $(GO) run ./bench -scenario scale $(BENCH_FLAGS)

run: build
	$(WITH_PG) --data $${DEV_PG_DATA:-.dev/pgdata} --port $${DEV_PG_PORT:-54329} -- ./bin/fulfiller dev

clean:
	rm -rf bin .pg
