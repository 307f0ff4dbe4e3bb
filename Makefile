# FinePay. `make` alone lists the targets.
SHELL := /bin/bash
MODULES := shared ferry internet-gateway intranet-core sandbox
PKGS := $(addsuffix /...,$(addprefix ./,$(MODULES)))
CERTS ?= certs
GO ?= go

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-z][a-z-]*:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

.PHONY: certs
certs: ## create the development SM2 PKI and the payment channels' keys in ./certs (once; keys are never committed)
	@$(GO) run ./shared/cmd/fpcerts -dir $(CERTS)

.PHONY: build
build: ## build every binary into ./bin
	@mkdir -p bin
	$(GO) build -o bin/ ./internet-gateway/cmd/... ./intranet-core/cmd/... ./ferry/cmd/... ./sandbox/cmd/... ./shared/cmd/...

.PHONY: demo
demo: certs build ## run the whole system on SQLite with in-process caches (no services needed); Ctrl-C stops it
	@./bin/demo -bin bin -certs $(CERTS) -var var/demo

.PHONY: test
test: ## vet, then run every test (needs PostgreSQL, Redis and Chromium: see .ci/services.sh)
	$(GO) vet $(PKGS)
	$(GO) test -count=1 -timeout 30m $(PKGS)

.PHONY: test-short
test-short: ## the unit tests only (skips the end-to-end browser tests)
	$(GO) test -short -count=1 $(PKGS)

.PHONY: bench
bench: ## crypto and ferry benchmarks, the ferry against NATS JetStream; ends with "ferry msgs/s: N" and "ferry/jetstream ratio: R"
	@bash scripts/bench.sh

.PHONY: chaos-ferry
chaos-ferry: ## kill both ferryds and the producers with SIGKILL for 3 minutes (PostgreSQL), then check every message arrived once, in order
	@mkdir -p bin
	$(GO) build -o bin/ ./ferry/cmd/ferryd ./ferry/cmd/chaosferry
	./bin/chaosferry -ferryd bin/ferryd -duration $${CHAOS_DURATION:-3m}

.PHONY: lint
lint: ## gofmt and go vet
	@out=$$(gofmt -l $(MODULES)); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

.PHONY: fuzz
fuzz: ## run each fuzz target for 20 s
	@for spec in "./shared/envelope FuzzEnvelopeRoundTrip" "./ferry/bundle FuzzBundleOpen" "./ferry/spool FuzzManifest" "./internet-gateway/internal/wechat FuzzWeChatNotification" "./internet-gateway/internal/alipay FuzzAlipayNotification" "./internet-gateway/internal/unionpay FuzzUnionPayNotification" "./intranet-core/internal/isp FuzzSubmitRequest" "./intranet-core/internal/isp FuzzOrderNoParam" "./intranet-core/internal/isp FuzzRefundRequest" "./intranet-core/internal/bankpay FuzzDecodeQuery" "./intranet-core/internal/bankpay FuzzDecodePayment" "./intranet-core/internal/bankpay FuzzDecodeRecon" "./intranet-core/internal/bankpay FuzzParseFile" "./intranet-core/internal/bill FuzzDecodeCreate" "./internet-gateway/internal/wechat FuzzWeChatRefundNotification" "./internet-gateway/internal/unionpay FuzzUnionPayRefundNotification" "./shared/envelope FuzzRefundPayload" "./intranet-core/internal/bankrefund FuzzDecodeResult"; do \
		set -- $$spec; $(GO) test -run '^$$' -fuzz "^$$2$$" -fuzztime 20s $$1 || exit 1; done

.PHONY: services
services: ## install and start what the tests need (PostgreSQL, Redis, Chromium), as CI does
	@bash .ci/services.sh

.PHONY: clean
clean: ## remove built binaries and demo state (keeps certs)
	rm -rf bin var
