# roam: build, test and CI entry points. `make test` is what CI runs.
#
#   make deps    install the Debian packages behind the real servers the tests
#                start (as root; otherwise it only lists what is missing)
#   make test    deps, go vet, then every test with the race detector
#   make bench   every benchmark, once
#   make fuzz    each Fuzz target for FUZZTIME
#   make cover   tests with a coverage profile and its total
#   make chaos   the long seeded chaos suite (see below)

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

GO           ?= go
PKGS         ?= ./...
# Per test binary. The slowest packages start real clusters and crash them.
TEST_TIMEOUT ?= 10m
FUZZTIME     ?= 30s
BENCHTIME    ?= 1s
COVERPROFILE ?= coverage.out

# binary:Debian package, for everything the tests, `roam bench` and the
# browser tests run as a real process. postgres is looked for in
# /usr/lib/postgresql/*/bin, where Debian keeps it off PATH.
DEPS := \
	redis-server:redis-server \
	redis-sentinel:redis-sentinel \
	redis-cli:redis-tools \
	memcached:memcached \
	mariadbd:mariadb-server \
	postgres:postgresql \
	chromium:chromium \
	chromedriver:chromium-driver \
	haproxy:haproxy \
	nginx:nginx \
	wrk:wrk \
	systemd-analyze:systemd

.PHONY: all build deps vet test bench bench-peers fuzz cover chaos

all: test

build:
	$(GO) build $(PKGS)

# Quiet when everything is present. When something is missing and we are
# root: one apt-get update, then one apt-get install of what is missing.
# policy-rc.d (unless one exists already) keeps the packages' system
# services (redis on 6379, mariadb, postgresql, nginx, haproxy) from
# starting: the tests start their own on free ports.
deps:
	@have() { \
	  if [ "$$1" = postgres ] && compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null; then return 0; fi; \
	  if command -v "$$1" >/dev/null 2>&1; then return 0; fi; \
	  for d in /usr/sbin /usr/local/sbin /sbin; do if [ -x "$$d/$$1" ]; then return 0; fi; done; \
	  return 1; \
	}; \
	missing=""; \
	for pair in $(DEPS); do \
	  if ! have "$${pair%%:*}"; then missing="$$missing $${pair#*:}"; fi; \
	done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ]; then \
	  echo "make deps: missing Debian packages:$$missing" >&2; \
	  echo "make deps: not root, so not installing; run: sudo apt-get install -y$$missing" >&2; \
	  echo "make deps: until then the tests that need them skip (and fail under CI=true)" >&2; \
	  exit 0; \
	fi; \
	echo "make deps: installing$$missing"; \
	if [ ! -e /usr/sbin/policy-rc.d ]; then \
	  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; \
	  trap 'rm -f /usr/sbin/policy-rc.d' EXIT; \
	fi; \
	export DEBIAN_FRONTEND=noninteractive; \
	apt-get update -qq; \
	apt-get install -y -qq $$missing >/dev/null; \
	for pair in $(DEPS); do \
	  if ! have "$${pair%%:*}"; then echo "make deps: $${pair%%:*} still missing after installing $${pair#*:}" >&2; exit 1; fi; \
	done

vet:
	$(GO) vet $(PKGS)

# The cluster package runs alone, after everything else: its tests bound
# failure detection, pauses and leases in seconds, and the other packages'
# servers starving its nodes of CPU would test the machine, not the code.
# (Starvation once made its crash tests lose an acknowledged write; fixed in
# 5eeebc7, and TestCrashUnderLoadLosesNothing passes 6 of 6 with three busy
# loops on the two cores.) Every test and assertion runs on every make test.
ALONE := github.com/roamsession/roam/cluster

# Modules of their own beside the main one: they hold what the main module
# must not depend on (scs for same-run comparisons, routers for examples).
SUBMODULES := $(patsubst %/go.mod,%,$(wildcard bench/peers/go.mod examples/go.mod))

# ./cmd/roam is built once here and named by ROAM_BINARY (see
# internal/testbin), so the packages that run it as a process share one
# build instead of each building it again. The directory goes when the
# recipe ends, whether the tests pass or not. Plain `go test ./...` works
# too: each test binary then builds its own.
test: deps vet
	bindir=$$(mktemp -d "$${TMPDIR:-/tmp}/roam-make-test-XXXXXX"); \
	trap 'rm -rf "$$bindir"' EXIT; \
	$(GO) build -o "$$bindir/roam" ./cmd/roam; \
	ROAM_BINARY="$$bindir/roam" $(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) $$($(GO) list $(PKGS) | grep -vx '$(ALONE)'); \
	if $(GO) list $(PKGS) | grep -qx '$(ALONE)'; then \
	  ROAM_BINARY="$$bindir/roam" $(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) $(ALONE); \
	fi
	@for m in $(SUBMODULES); do \
	  echo "== $$m"; \
	  (cd $$m && $(GO) vet ./... && $(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./...); \
	done

# The peer comparisons: roam beside scs and the bare clients, same run.
bench-peers: deps
	cd bench/peers && $(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) -timeout $(TEST_TIMEOUT) ./...

bench: deps
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) -timeout $(TEST_TIMEOUT) $(PKGS)

# Every Fuzz target, found with `go test -list`, one after another: -fuzz
# takes exactly one target in one package.
fuzz: deps
	@for pkg in $$($(GO) list -f '{{if or .TestGoFiles .XTestGoFiles}}{{.ImportPath}}{{end}}' $(PKGS)); do \
	  for target in $$($(GO) test -list '^Fuzz' "$$pkg" | grep '^Fuzz' || true); do \
	    echo "fuzz: $$pkg $$target for $(FUZZTIME)"; \
	    $(GO) test -run '^$$' -fuzz "^$$target$$" -fuzztime $(FUZZTIME) "$$pkg"; \
	  done; \
	done

cover: deps
	$(GO) test -count=1 -covermode=atomic -coverprofile=$(COVERPROFILE) -timeout $(TEST_TIMEOUT) $(PKGS)
	$(GO) tool cover -func=$(COVERPROFILE) | tail -n 1

# The long chaos suite (package chaos): for each seed in CHAOS_SEEDS, every
# strategy in CHAOS_STRATEGIES under a seeded random schedule of SIGKILLs,
# SIGSTOP/SIGCONT, network partitions (a network namespace per node: run as
# root, or partitions are left out) and store crashes and hangs, against
# three nodes under load, with the invariant checks of package chaos. A
# failed run prints the command that replays its seed and keeps the node
# logs. `make test` runs a short version (backup, kills and freezes only).
CHAOS_SEEDS      ?= 1 2 3
CHAOS_STRATEGIES ?= all,backup,redis-sentinel
CHAOS_DURATION   ?= 40s

chaos: deps
	bindir=$$(mktemp -d "$${TMPDIR:-/tmp}/roam-make-chaos-XXXXXX"); \
	trap 'rm -rf "$$bindir"' EXIT; \
	$(GO) build -o "$$bindir/roam" ./cmd/roam; \
	failed=""; \
	for seed in $(CHAOS_SEEDS); do \
	  echo "== chaos: seed $$seed, $(CHAOS_STRATEGIES)"; \
	  ROAM_BINARY="$$bindir/roam" ROAM_CHAOS=long ROAM_CHAOS_SEED=$$seed \
	  ROAM_CHAOS_STRATEGIES=$(CHAOS_STRATEGIES) ROAM_CHAOS_DURATION=$(CHAOS_DURATION) \
	    $(GO) test -race -count=1 -timeout 30m -v \
	      -run '^(TestChaos|TestLogoutWhilePrimaryIsAwayStaysLoggedOut)$$' ./chaos \
	    || failed="$$failed $$seed"; \
	done; \
	if [ -n "$$failed" ]; then echo "chaos: failed for seeds:$$failed" >&2; exit 1; fi
