# Every target uses the pinned tools under .tools/bin (installed by `make tools`), never whatever
# happens to be on PATH.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
# The system's sbin directories too: a plain user PATH (CI's) lacks them, and the real node's
# harness and tools need iptables, sysctl and the CNI plugins' helpers from there.
export PATH := $(CURDIR)/.tools/bin:$(PATH):/usr/local/sbin:/usr/sbin:/sbin
export NODE_OPTIONS ?=
NPM := npm --no-audit --no-fund --loglevel=error

.PHONY: help tools deps lint format typecheck test test-unit test-integration manifests plugin \
	sandbox-up sandbox-down demo clean ec2-sim bench kustomize e2e-kind native image e2e-node

help: ## List the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

tools: ## Install the pinned toolchain (Node LTS, Kubernetes, etcd, kwok, helm, packet tools)
	bash test/tools/install.sh all

.tools/bin/node:
	bash test/tools/install.sh node

node_modules/.installed: package.json package-lock.json | .tools/bin/node
	$(NPM) ci
	touch $@

# The collector's batch-receive addon (Node-API, C): a C compiler and the node-api-headers package.
# Without a compiler the collector receives with dgram and says so at start.
NATIVE := dist/native/batch-udp.node
$(NATIVE): src/collector/native/batch-udp.c src/collector/native/build.sh node_modules/.installed
	@mkdir -p $(@D)
	@if command -v cc >/dev/null; then bash src/collector/native/build.sh node_modules/node-api-headers/include $@; \
	else echo "no C compiler: $@ not built (the collector will receive with dgram)"; fi

native: $(NATIVE) ## Build the collector's batch-receive addon (dist/native)

deps: node_modules/.installed $(NATIVE) ## Install npm dependencies and build the addon

lint: deps ## Lint and check formatting
	npx eslint -c test/eslint.config.js --max-warnings 0 .
	npx prettier --check .

format: deps ## Rewrite files in the house format
	npx eslint -c test/eslint.config.js --fix .
	npx prettier --write .

typecheck: deps ## Type-check everything
	npx tsc -p tsconfig.json

REPORTS := .vitest-reports
VITEST = npx vitest run --config test/vitest.config.ts --reporter=default --reporter=json

test-unit: deps ## Unit tests (no processes)
	$(VITEST) --outputFile.json=$(REPORTS)/unit.json --project unit

# The real node's tests (make e2e-node) run on a control plane of their own: their operator
# watches every namespace, where the other suites leave policies of their own.
E2E_NODE_TESTS := test/integration/image.test.ts test/integration/real-node.test.ts

test-integration: deps tools ## Integration tests against a real control plane
	$(VITEST) --outputFile.json=$(REPORTS)/integration.json --project integration \
		$(E2E_NODE_TESTS:%=--exclude %)

test: tools deps ## Everything: lint, typecheck, unit and integration tests, the chart on a real node
	rm -rf $(REPORTS)
	$(MAKE) lint
	$(MAKE) typecheck
	$(MAKE) test-unit
	$(MAKE) test-integration
	$(MAKE) e2e-node
	node test/tools/test-summary.ts $(REPORTS)/unit.json $(REPORTS)/integration.json $(REPORTS)/e2e-node.json

sandbox-up: tools deps ## Start a local control plane in the background (.sandbox/kubeconfig)
	node test/harness/cli.ts up

sandbox-down: deps ## Stop the local control plane
	node test/harness/cli.ts down

demo: tools deps ## Run the product's main job on its embedded default (Ctrl-C stops it)
	node test/demo/run.ts $(DEMO_ARGS)

clean: ## Remove build and test state (not the tool cache)
	rm -rf .sandbox coverage dist .vitest-reports

manifests: deps ## Generate the CRDs from src/api (crds/ and the chart's copy)
	node src/api/crd-gen.ts

plugin: deps ## The kubectl plugin as one file, dist/kubectl-trafficmirror (copy it onto PATH), and its krew archive and manifest
	node test/tools/build-plugin.ts

kustomize: deps ## Render the chart into the kustomize bases under config/ (rbac, manager, collector)
	node test/tools/render-config.ts

e2e-kind: tools deps ## End to end on kind with Docker (prints "skipped" without docker/kind)
	bash test/e2e/kind.sh

ec2-sim: deps ## Run the EC2 emulator on 127.0.0.1:4599 (admin API under /_sim/)
	node test/ec2-sim/main.ts --port 4599

bench: tools deps ## Run the benchmarks (see docs/benchmarks.md; the collector one needs root)
	node --expose-gc bench/plan/run.ts 5000 5
	node --expose-gc bench/cache/run.ts 100000
	node bench/harness/run.ts 5
	node bench/operator/coverage.ts 20 5 Eni
	node bench/operator/coverage.ts 20 5 Pod
	node bench/collector/run.ts 2 3

image: ## Build the image with podman from locally made Node bases, no Docker or registry (prints its size)
	bash test/tools/install.sh image
	bash test/image/build.sh

e2e-node: tools deps ## The image, and the chart's pods on a real node beside the kwok nodes (root; else skipped, saying why)
	if [ "$$(id -u)" = 0 ]; then $(MAKE) image; fi
	$(VITEST) --outputFile.json=$(REPORTS)/e2e-node.json --project integration $(E2E_NODE_TESTS)
