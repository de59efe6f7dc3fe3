# tokenwarden: `make dev` runs the whole thing locally, `make test` proves it. `make help` lists targets.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

# Node 24 comes from the npm registry (the `node` package) into node_modules/.bin, so it goes first.
export PATH := $(CURDIR)/node_modules/.bin:$(PATH)
NODE_DEPS := node_modules/.package-lock.json
# The local control plane's folder (state, logs, pids, kubeconfig); `make controlplane-up DEV=/tmp/x`
# runs a second one beside it.
DEV ?= .dev
export TOKENWARDEN_DEV_DIR := $(abspath $(DEV))
DEV_KUBECONFIG := $(DEV)/kubeconfig
# The kubectl built with the local control plane (same version as the API server).
LOCAL_KUBECTL = $$(bash test/controlplane/build.sh)/kubectl
# For `make install`/`run` against an existing cluster: your kubectl and KUBECONFIG.
KUBECTL ?= kubectl

$(NODE_DEPS): package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

.PHONY: help
help: ## List targets.
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-22s %s\n", $$1, $$2}'

##@ Development
.PHONY: dev
dev: $(NODE_DEPS) controlplane-up ## Local control plane, CRDs, samples and the operator (in the background); prints the resources.
	KUBECONFIG=$(DEV_KUBECONFIG) $(LOCAL_KUBECTL) apply --server-side -f crds/ >/dev/null
	KUBECONFIG=$(DEV_KUBECONFIG) $(LOCAL_KUBECTL) wait --for=condition=Established --timeout=60s -f crds/ >/dev/null
	KUBECONFIG=$(DEV_KUBECONFIG) $(LOCAL_KUBECTL) apply --server-side -f access/ >/dev/null
	node tools/dev.ts up

.PHONY: dev-down
dev-down: controlplane-down ## Stop the operator started by `make dev` and the local control plane.

.PHONY: controlplane-build
controlplane-build: ## Build etcd, kube-apiserver, kube-controller-manager and kubectl from source (cached).
	@bash test/controlplane/build.sh >/dev/null

.PHONY: controlplane-up
controlplane-up: $(NODE_DEPS) controlplane-build ## Start the local control plane in the background; writes .dev/kubeconfig.
	node test/controlplane/launcher.ts up

.PHONY: controlplane-down
controlplane-down: $(NODE_DEPS) ## Stop the local control plane (and an operator `make dev` started on it) and remove its state.
	node tools/dev.ts down
	node test/controlplane/launcher.ts down

.PHONY: manifests
manifests: $(NODE_DEPS) ## Generate crds/ and docs/api-reference.md from src/api/, and the chart's copies of crds/, access/ and manifests/.
	node tools/generate.ts

.PHONY: install
install: ## Apply the CRDs and access/ (admission policies proving who asks, user ClusterRoles) to the current cluster.
	$(KUBECTL) apply --server-side -f crds/
	$(KUBECTL) apply --server-side -f access/

.PHONY: uninstall
uninstall: ## Delete access/ and the CRDs (and with them every tokenwarden resource) from the current cluster.
	$(KUBECTL) delete -f access/ --ignore-not-found
	$(KUBECTL) delete -f crds/ --ignore-not-found

.PHONY: samples
samples: ## Apply config/samples to the current cluster.
	$(KUBECTL) apply -k config/samples

.PHONY: run
run: $(NODE_DEPS) ## Run the operator in the foreground against the current KUBECONFIG.
	node src/main.ts

##@ kubectl plugin
.PHONY: plugin
plugin: $(NODE_DEPS) ## Build bin/kubectl-tokenwarden: the kubectl plugin as one executable with Node 24 inside (cached by a hash of its inputs).
	node tools/build-plugin.ts

##@ Deployment
# The image `make deploy` runs is the one in manifests/kustomization.yaml (tokenwarden:dev); for
# another, `cd manifests && kustomize edit set image tokenwarden=$(IMG)` first.
IMG ?= tokenwarden:dev
# Where `make image` writes the OCI archive of the image.
IMAGE_ARCHIVE ?= .cache/image/tokenwarden.oci.tar
export IMG IMAGE_ARCHIVE

.PHONY: image
image: $(NODE_DEPS) ## Build the operator image IMG (default tokenwarden:dev) from scratch with buildah (no Docker, no base image) into IMAGE_ARCHIVE (an OCI archive).
	nice -n 19 ionice -c3 bash tools/image.sh

##@ A real node (root; Debian packages containerd runc containernetworking-plugins buildah iptables)
.PHONY: node-up
node-up: $(NODE_DEPS) ## The local control plane (ready for a node) plus a node: containerd, runc, CNI bridge, kubelet, kube-scheduler.
	@bash test/node/node.sh check
	@nice -n 19 ionice -c3 bash test/controlplane/build.sh --node >/dev/null
	node test/controlplane/launcher.ts up --node
	bash test/node/node.sh up

.PHONY: node-down
node-down: $(NODE_DEPS) ## Stop the node (no process, container, mount, cgroup or iptables rule left) and the control plane.
	bash test/node/node.sh down
	node tools/dev.ts down
	node test/controlplane/launcher.ts down

.PHONY: node-image
node-image: image ## `make image`, then import it into the node's containerd.
	bash test/node/node.sh load $(IMAGE_ARCHIVE) $(IMG)

.PHONY: deploy
deploy: install ## CRDs and access/, then the operator (manifests/: namespace, RBAC, admission fence, 2-replica Deployment, metrics Service).
	$(KUBECTL) apply --server-side -k manifests

.PHONY: undeploy
undeploy: ## Remove what `make deploy` applied except the CRDs (`make uninstall` removes those).
	$(KUBECTL) delete -k manifests --ignore-not-found
	@echo "undeploy: the operator is gone. Tokens already issued stay valid until they expire: nothing renews or revokes them now."
	@echo "          To revoke them, delete the clients (or the tier namespaces) while the operator still runs."

##@ End to end (a real node; root)
# Its own folder, so a `make dev` control plane in .dev is left alone.
E2E_DEV ?= .e2e

.PHONY: test-e2e
test-e2e: $(NODE_DEPS) ## make image, a node, then helm install and make deploy, each checked by test/e2e through kubectl; everything stopped after.
	@bash test/node/node.sh check
	@$(MAKE) --no-print-directory helm-build
	status=0; { $(MAKE) --no-print-directory node-up DEV=$(E2E_DEV) && $(MAKE) --no-print-directory node-image DEV=$(E2E_DEV) \
	  && TOKENWARDEN_DEV_DIR=$(abspath $(E2E_DEV)) vitest run --project e2e; } || status=$$?; \
	  $(MAKE) --no-print-directory node-down DEV=$(E2E_DEV) || status=$$((status ? status : 1)); exit $$status

##@ Verification
.PHONY: test
test: $(NODE_DEPS) verify-generated typecheck lint chart-check controlplane-build ## Everything: generated files, types, lint, the chart, unit and integration tests.
	vitest run

.PHONY: test-unit
test-unit: $(NODE_DEPS) ## Unit tests only (no cluster).
	vitest run --project unit

.PHONY: test-integration
test-integration: $(NODE_DEPS) controlplane-build ## Integration tests against a real control plane built from source.
	vitest run --project integration

# The oldest Kubernetes with ValidatingAdmissionPolicy GA and the newest the Go module proxy serves
# (test/controlplane/kube-v1.30, kube-v1.37), each built from source and cached like 1.35.
KUBE_VERSIONS ?= kube-v1.30 kube-v1.37
# access/ (who may ask for what, the fence, no Pods in tier namespaces), the CRDs' admission, and one
# client's life: create and Ready, renew (rotation), revoke, delete.
VERSION_TESTS := test/integration/trust.test.ts test/integration/admission.test.ts \
  test/integration/operator/client.test.ts test/integration/operator/rotation.test.ts \
  test/integration/operator/revocation.test.ts test/integration/operator/deletion.test.ts
.PHONY: test-versions
test-versions: $(NODE_DEPS) ## The access/ and client-life integration tests against Kubernetes 1.30 and 1.37 (KUBE_VERSIONS); first run builds each (~10 min).
	for m in $(KUBE_VERSIONS); do \
	  echo "== $$m: $$(awk '/^require k8s.io\/kubernetes/ {print $$3}' test/controlplane/$$m/go.mod)"; \
	  TOKENWARDEN_KUBE_MODULE=$$m nice -n 19 ionice -c3 bash test/controlplane/build.sh >/dev/null; \
	  TOKENWARDEN_KUBE_MODULE=$$m vitest run --project integration $(VERSION_TESTS) || exit 1; \
	done

.PHONY: bench
bench: $(NODE_DEPS) controlplane-build ## Benchmark against the API server's floor (not part of test); BENCH_ARGS="--sizes=100 --quick".
	node bench/run.ts $(BENCH_ARGS)

.PHONY: test-faults
test-faults: $(NODE_DEPS) controlplane-build ## Fault suite: operator SIGKILLs, kube-apiserver/etcd restarts, a writer fighting it (8-12 min on 2 cores).
	vitest run --project faults

HELM = $$(bash test/controlplane/build.sh --helm)/helm
.PHONY: helm-build
helm-build: ## Build helm from Go modules (helm.sh/helm/v4, test/controlplane/helm; cached).
	@nice -n 19 ionice -c3 bash test/controlplane/build.sh --helm >/dev/null

# Every optional object of the chart on, for lint and template.
CHART_ALL := --set serviceMonitor.enabled=true,prometheusRule.enabled=true,podDisruptionBudget.enabled=true,networkPolicy.enabled=true,grafanaDashboard.enabled=true,namespace.create=true
.PHONY: chart-check
chart-check: helm-build ## helm lint --strict and helm template of charts/tokenwarden, with default values and with every option on.
	$(HELM) lint --strict charts/tokenwarden
	$(HELM) lint --strict charts/tokenwarden $(CHART_ALL)
	$(HELM) template tokenwarden charts/tokenwarden --namespace tokenwarden-system >/dev/null
	$(HELM) template tokenwarden charts/tokenwarden --namespace tokenwarden-system $(CHART_ALL) >/dev/null

.PHONY: verify-generated
verify-generated: $(NODE_DEPS) ## Fail when crds/, docs/api-reference.md or the chart's copies are stale.
	node tools/generate.ts --check

.PHONY: typecheck
typecheck: $(NODE_DEPS) ## tsc --noEmit over src, test and tools.
	tsc -p tsconfig.json

.PHONY: lint
lint: $(NODE_DEPS) ## eslint.
	eslint .
