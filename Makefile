# Skiff — the two front doors are `make scenario NAME=failover` and `make test`.
# Every target installs what it needs (Go modules; Debian packages for the
# netns environment and the report check), so both work on a fresh clone.

SHELL := /bin/bash
.DEFAULT_GOAL := help

GO        ?= go
BIN       := bin
NAME      ?= failover
ENV       ?= local
SCENARIO_FLAGS ?=
BENCH_FLAGS    ?=
# The proxy is built static: a dynamically linked libc costs ~1.3 MB of
# resident memory in every sidecar.
BUILD_ENV := CGO_ENABLED=0
BUILD_FLAGS := -trimpath
LINT := $(GO) tool -modfile=tools/go.mod golangci-lint

.PHONY: help
help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: deps
deps: ## Download Go modules and install the Debian packages tests use (root only)
	@$(GO) mod download
	@./ci/install-packages.sh

.PHONY: build
build: ## Build skiff, skiff-proxy and skiff-demo into bin/
	@$(GO) mod download
	$(BUILD_ENV) $(GO) build $(BUILD_FLAGS) -o $(BIN)/ ./cmd/...

.PHONY: test
test: deps ## Unit and end-to-end tests with -race (a few minutes)
	$(GO) test -race -count=1 -timeout 15m ./...

.PHONY: test-short
test-short: ## Tests without -race, for a quick local check
	$(GO) test -count=1 ./...

.PHONY: test-kube
# The tests against a real control plane: kube-apiserver, etcd and
# kube-controller-manager built from source by ci/kube/build.sh into
# ~/.cache/skiff/k8s-<version>/bin (about 22 min of 2 cores cold, then
# cached; docs/kubernetes.md, "The test API server"). Elsewhere these
# tests skip when the binaries are missing; here they must run.
KUBE_TEST_PKGS = ./internal/kubetest ./mesh/discovery/kube ./mesh/control/identity/tokenreview \
	./mesh/install ./mesh/control/injector ./mesh/cli
test-kube: ## Tests against a real API server, etcd and controller-manager (builds them once: ~22 min cold)
	GO='$(GO)' ./ci/kube/build.sh
	SKIFF_KUBE_REQUIRED=1 $(GO) test -count=1 -timeout 20m -v -run '^TestAPIServer' $(KUBE_TEST_PKGS)

.PHONY: lint
lint: ## go vet, gofmt and golangci-lint (config in .golangci.yml)
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(LINT) run ./...

.PHONY: generate
generate: ## Regenerate mesh/api's Go code from its .proto files (pinned buf, protoc-gen-go, protoc-gen-go-grpc)
	$(GO) generate ./mesh/api

.PHONY: fuzz
fuzz: ## Run every fuzzer (found, not listed) for FUZZTIME each: 20s; nightly: make fuzz FUZZTIME=10m
	FUZZTIME='$(or $(FUZZTIME),20s)' FUZZ='$(FUZZ)' GO='$(GO)' ./ci/fuzz.sh

.PHONY: bench
bench: build ## Measure the proxy: direct vs one vs two proxies at 500 req/s (text table + bench.json)
	$(BIN)/skiff bench --rate 500 --trials 6 --json bench.json $(BENCH_FLAGS)

.PHONY: bench-gate
bench-gate: build ## The claims alone: two proxies add <= 0.5 ms p50 and <= 1 ms p99 at 500 req/s, every VmHWM <= 9 MB (no mTLS; p50/p99 fail on 2 cores today: issue 12)
	$(BIN)/skiff bench --gate --rate 500 --trials 6 --duration 5s $(BENCH_FLAGS)

.PHONY: bench-peers
bench-peers: build ## Measure the proxy beside nginx and haproxy, one hop each, interleaved (installs them as root; text table + bench-peers.json)
	$(BIN)/skiff bench --peers nginx,haproxy --rate 500 --trials 6 --json bench-peers.json $(BENCH_FLAGS)

.PHONY: ab-gate
# One bench decides the A/B gate and, as CI does, the absolute gate with its
# known failures (BENCH_KNOWN, below). Five paths make a trial ~26 s; 16
# trials at most (~7 min, as the 24 three-path trials were 6) are what the
# A/B test needs to catch 50 us more CPU per request reliably on a busy
# machine (about 98 % of the time; 91 % with 12), docs/proxy.md.
AB_FLAGS = --max-trials 16 $(BENCH_KNOWN)
ab-gate: build ## This tree's proxy against a base build's in one gated bench (AB_BASE=commit; default: before the last proxy change)
	GO='$(GO)' SKIFF='$(BIN)/skiff' ./ci/ab-gate.sh $(AB_FLAGS) $(BENCH_FLAGS)

.PHONY: gobench
gobench: ## Go benchmarks of the hot path (balancer pick, detection, metrics, forwarding)
	$(GO) test -run='^$$' -bench=. -benchmem ./mesh/proxy/...

.PHONY: plant
plant: ## Build the test binaries with planted defects into bin-plant/ (bin-plant/skiff scenario run NAME --plant DEFECT)
	@$(GO) mod download
	$(BUILD_ENV) $(GO) build $(BUILD_FLAGS) -tags plant -o bin-plant/ ./cmd/...

.PHONY: planted
planted: ## Every catalogue scenario, quick: PASS on the real build, FAIL on its planted defect; checks the table in docs/scenarios.md
	$(GO) test -tags plant -count=1 -timeout 45m -v -run TestPlanted ./scenarios/planted/ $(PLANTED_FLAGS)

.PHONY: planted-update
planted-update: ## As planted, and rewrite the planted-defect table of docs/scenarios.md
	$(MAKE) planted PLANTED_FLAGS=-update

.PHONY: clean
clean: ## Remove build outputs
	rm -rf $(BIN) bin-plant bench.json bench-peers.json

.PHONY: images
images: ## Build the container images skiff-proxy, skiff-init, skiff-controller, skiff-demo (needs Docker; REGISTRY, VERSION)
	@./ci/images.sh

.PHONY: kind-up
kind-up: build ## Create or reuse the kind cluster "skiff", build and load the images, apply skiff install (needs Docker and kubectl)
	@$(BUILD_ENV) $(GO) build $(BUILD_FLAGS) -o $(BIN)/kind-env ./ci/kind
	$(BIN)/kind-env up

.PHONY: kind-down
kind-down: ## Delete the kind cluster "skiff"
	@$(BUILD_ENV) $(GO) build $(BUILD_FLAGS) -o $(BIN)/kind-env ./ci/kind
	$(BIN)/kind-env down

.PHONY: scenario
scenario: build ## Run a scenario: make scenario NAME=failover [ENV=local] [SCENARIO_FLAGS="--quick --seed 7"]
	$(BIN)/skiff scenario run $(NAME) --env $(ENV) $(SCENARIO_FLAGS)

.PHONY: scenarios
scenarios: build ## List the scenarios in the catalogue
	@$(BIN)/skiff scenario list

.PHONY: ci-gate
# The bench gate's limits are the product's claims; two do not hold yet on a
# 2-core CI machine (issue 12). CI still judges and prints them, as known
# failures, and gates on their ceilings so that they cannot get worse.
# make bench-gate judges the claims alone. Keep in step with the known
# failures of scenarios/catalog/baseline.yaml.
BENCH_KNOWN = --known 'added_p50_ms<=0.8: issue 12 (proxy performance): two proxies add 0.49-0.67 ms at p50 on a 2-core CI machine' \
	--known 'added_p99_ms<=2.5: issue 12 (proxy performance): two proxies add 0.6-1.4 ms at p99 on a 2-core CI machine'

# The bench is the A/B bench (ci/ab-gate.sh): this build's proxy against the
# build before the last change to the proxy's binary, interleaved, in
# one run that decides the absolute gate too. 5 paths: 6 trials ~2.7 min,
# at most 16 (~7 min); without a base it gates absolutely, as before.
# The scenarios (baseline and failover among them) are judged by make
# planted, under one rule for every scenario's release run.
ci-gate: build ## CI gate: the proxy bench (absolute gate with known failures held to their ceilings, and the A/B gate)
	GO='$(GO)' SKIFF='$(BIN)/skiff' ./ci/ab-gate.sh $(AB_FLAGS)
