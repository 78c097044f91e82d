# Hodei Jobs. `make help` lists the targets.
SHELL := /bin/bash
GO    ?= go
BIN   ?= bin
PKGS  := ./...
FUZZTIME ?= 30s
DOCKER       ?= docker
AGENT_IMAGE  ?= hodei-agent:dev
SERVER_IMAGE ?= hodei-server:dev
# Builds kube-apiserver + etcd into ~/.cache/hodei/k8s/<sha of its go.sum>/.
K8S_BUILD := tools/k8s-apiserver/build.sh

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## build bin/hodei and a static, stripped bin/hodei-agent (prints its size)
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/hodei ./cmd/hodei
	CGO_ENABLED=0 $(GO) build -tags grpcnotrace -trimpath -ldflags "-s -w" -o $(BIN)/hodei-agent ./cmd/hodei-agent
	@echo "hodei-agent (static, stripped): $$(stat -c %s $(BIN)/hodei-agent) bytes"

.PHONY: image
image: ## build the FROM scratch images AGENT_IMAGE (hodei-agent:dev) and SERVER_IMAGE (hodei-server:dev), offline
	@set -euo pipefail; ctx=$$(mktemp -d); trap 'rm -rf "$$ctx"' EXIT; \
	echo "go build (static) cmd/hodei-agent cmd/hodei"; \
	CGO_ENABLED=0 $(GO) build -tags grpcnotrace -trimpath -ldflags "-s -w" -o "$$ctx/hodei-agent" ./cmd/hodei-agent; \
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w" -o "$$ctx/hodei" ./cmd/hodei; \
	deploy/docker/context.sh agent "$$ctx/hodei-agent" "$$ctx/agent"; \
	deploy/docker/context.sh server "$$ctx/hodei" "$$ctx/server"; \
	echo "$(DOCKER) build $(AGENT_IMAGE) $(SERVER_IMAGE)"; \
	$(DOCKER) build -q -t $(AGENT_IMAGE) "$$ctx/agent" >/dev/null; \
	$(DOCKER) build -q -t $(SERVER_IMAGE) "$$ctx/server" >/dev/null; \
	$(DOCKER) run --rm --network none --entrypoint /bin/sh $(AGENT_IMAGE) -c 'test -w "$$HODEI_WORK_DIR"'; \
	for i in $(AGENT_IMAGE) $(SERVER_IMAGE); do echo "$$i: $$($(DOCKER) image inspect -f '{{.Size}}' $$i) bytes"; done

.PHONY: run
run: build ## start the server with a bbolt store in ./data
	$(BIN)/hodei server

.PHONY: test
test: lint ## vet, format check, all tests, then the short suite under the race detector
	$(GO) test -count=1 -timeout 30m $(PKGS)
	$(GO) test -count=1 -race -short -timeout 30m $(PKGS)

.PHONY: test-short
test-short: ## quick tests only
	$(GO) test -count=1 -short $(PKGS)

.PHONY: lint
lint: ## go vet and gofmt
	$(GO) vet $(PKGS)
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

.PHONY: bench
bench: build ## run the Go benchmarks and `hodei bench store`
	$(GO) test -run '^$$' -bench . -benchtime 2x $(PKGS)
	$(BIN)/hodei bench store -o json

.PHONY: fuzz
fuzz: ## run every fuzz target for FUZZTIME each (default 30s)
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz' || true); do \
	    echo "fuzz $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; done

.PHONY: crash
crash: ## the long bbolt crash-safety soak (200 SIGKILLs)
	HODEI_CRASH_ITERATIONS=200 $(GO) test -count=1 -run Crash -timeout 60m ./eventstore/bolt/

.PHONY: generate
generate: ## regenerate protobuf code (Debian protoc 3.21 + plugins pinned in go.mod)
	tools/protogen.sh generate hwp/hwppb
	tools/protogen.sh generate api/jobpb

.PHONY: check-generate
check-generate: ## fail if committed generated code drifted from the .proto files
	tools/protogen.sh check hwp/hwppb
	tools/protogen.sh check api/jobpb

.PHONY: k8s-bins
k8s-bins: ## build kube-apiserver + etcd once (cached), print their dir for HODEI_K8S_BIN
	@$(K8S_BUILD)

.PHONY: clean
clean: ## remove build output
	rm -rf $(BIN)
