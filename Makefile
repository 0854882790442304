# tokend — developer tasks. `make` or `make help` lists them.

GO        ?= go
BIN       ?= bin/tokend
# tokend's own tags (v1.2.3), not the verify module's (verify/v0.1.0).
VERSION   ?= $(shell git describe --always --dirty --match 'v[0-9]*' 2>/dev/null || echo dev)
# The one place tokend's build flags are written: `make build`, `make dist`
# and the Dockerfile (which runs `make build`) all use them. A static
# binary (no cgo), no paths of the build machine, no VCS stamp (the
# version is stamped in instead), so that the same source, version and Go
# release give the same bytes wherever they are built.
BUILD_FLAGS := -trimpath -buildvcs=false -ldflags "-X main.version=$(VERSION)"
# make dist: the platforms of a release (GOOS/GOARCH).
DIST_PLATFORMS ?= linux/amd64 linux/arm64 darwin/amd64 darwin/arm64
DIST      ?= dist
FUZZTIME  ?= 10s
COVER_MIN ?= 90
COVERPKG  ?= ./server/...,./store/...
COVERTEST ?= ./server/... ./store/...
COVERFILE ?= coverage.out
PKGS      ?= ./...
# verify/ is a Go module of its own (a resource server imports it without
# the server's dependencies); test, lint and fuzz run it as well.
VERIFY    := verify
STATICCHECK ?= $(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

.PHONY: help run build dist demo test redis-check cover lint fuzz bench baseline floor profile bench-micro verify-tag clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# LOG_FORMAT=text: logs for the person at the terminal (JSON, the
# default, is for log collectors); LOG_FORMAT=json make run overrides it.
run: ## run a dev server: embedded store, ephemeral signing key, text logs
	LOG_FORMAT="$${LOG_FORMAT:-text}" $(GO) run ./cmd/tokend serve --dev

build: ## build bin/tokend, a static binary (version from git describe; GOOS/GOARCH cross-compile)
	CGO_ENABLED=0 $(GO) build $(BUILD_FLAGS) -o $(BIN) ./cmd/tokend

# make demo: tokend --dev and examples/orders following its revocation
# feed (scripts/demo.sh says how); DEMO_ONCE=1 tells the story once and
# stops (the tests), DEMO_TOKEND_ADDR and DEMO_ORDERS_ADDR move them off
# 127.0.0.1:8080 and 127.0.0.1:9090.
demo: build ## tokend --dev and examples/orders: sign in, call orders, log out, 401 at orders, as curl lines (Ctrl-C stops)
	@$(GO) build -o bin/orders ./examples/orders
	@TOKEND_BIN=$(BIN) ORDERS_BIN=bin/orders scripts/demo.sh

# One binary per platform, named tokend-<version>-<os>-<arch>, and
# SHA256SUMS over them (sha256sum's format: `sha256sum -c` and
# `shasum -a 256 -c` check it). Each is `make build` for its GOOS/GOARCH.
dist: ## release binaries for linux and darwin, amd64 and arm64, into dist/ with SHA256SUMS
	rm -rf $(DIST) && mkdir -p $(DIST)
	for p in $(DIST_PLATFORMS); do \
		GOOS="$${p%/*}" GOARCH="$${p#*/}" $(MAKE) --no-print-directory build VERSION=$(VERSION) \
			BIN="$(DIST)/tokend-$(VERSION)-$${p%/*}-$${p#*/}"; \
	done
	cd $(DIST) && if command -v sha256sum >/dev/null; then sha256sum tokend-*; else shasum -a 256 tokend-*; fi > SHA256SUMS
	@cat $(DIST)/SHA256SUMS

test: redis-check ## run every test with the race detector (needs Redis), the verify module's too
	$(GO) test -race -count=1 $(PKGS)
	$(GO) -C $(VERIFY) test -race -count=1 ./...

# Tests need a real Redis: 127.0.0.1:6379, or TOKEND_TEST_REDIS_URL, and
# the redis-server program (Redis >= 7) itself, since the failover, Sentinel
# and Cluster tests start private servers. They fail (not skip) without
# them, so say so up front. Uses redis-cli when installed, else a bash
# /dev/tcp PING with a 3 s timeout.
redis-check:
	@if ! command -v redis-server >/dev/null 2>&1; then \
		echo >&2 "make: the redis-server program is not on PATH; the tests need it (Redis >= 7), not just a reachable Redis:"; \
		echo >&2 "  they start private Redis servers for the failover, Sentinel and Cluster tests."; \
		echo >&2 "  install it:  sudo apt-get install -y redis-server   (Debian/Ubuntu; .ci/run does this)"; \
		exit 1; \
	fi; \
	v="$$(redis-server --version 2>/dev/null | sed -n 's/.* v=\([0-9][0-9]*\)\..*/\1/p')"; \
	if [ "$${v:-0}" -lt 7 ]; then \
		echo >&2 "make: redis-server is version $${v:-unknown}; the tests need Redis >= 7 (redis-server --version)"; \
		exit 1; \
	fi
	@url="$${TOKEND_TEST_REDIS_URL:-redis://127.0.0.1:6379/0}"; \
	hp="$${url#*://}"; hp="$${hp##*@}"; hp="$${hp%%/*}"; hp="$${hp%%\?*}"; \
	if command -v redis-cli >/dev/null 2>&1; then \
		reply="$$(timeout 5 redis-cli -u "$$url" ping 2>/dev/null || true)"; \
		[ "$$reply" != PONG ] || exit 0; \
	else \
		host="$${hp%:*}"; port="$${hp##*:}"; [ "$$port" != "$$hp" ] || port=6379; \
		if timeout 3 bash -c 'exec 3<>"/dev/tcp/$$0/$$1" && printf "PING\r\n" >&3 && IFS= read -r r <&3 && [ "$${r%$$'"'"'\r'"'"'}" = +PONG ]' "$${host:-127.0.0.1}" "$$port" 2>/dev/null; then exit 0; fi; \
	fi; \
	echo >&2 "make: no Redis answers PING at $$hp; the tests fail without one."; \
	echo >&2 "  start one:  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no"; \
	echo >&2 "         or:  docker run -d -p 6379:6379 redis:7-alpine"; \
	echo >&2 "  or point TOKEND_TEST_REDIS_URL at one (redis://host:port/db). .ci/run installs and starts one."; \
	exit 1

cover: redis-check ## test server/ and store/ with coverage; fail under 90% (COVER_MIN)
	$(GO) test -race -count=1 -covermode=atomic -coverpkg=$(COVERPKG) -coverprofile=$(COVERFILE) $(COVERTEST)
	@total="$$($(GO) tool cover -func=$(COVERFILE) | awk '/^total:/ {sub("%", "", $$NF); print $$NF}')"; \
	echo "total statement coverage of $(COVERPKG): $$total% (minimum $(COVER_MIN)%)"; \
	if awk -v t="$$total" -v m="$(COVER_MIN)" 'BEGIN {exit !(t+0 < m+0)}'; then \
		echo >&2 "make: coverage $$total% is under $(COVER_MIN)%"; exit 1; \
	fi

# staticcheck is run at a pinned version through the module proxy, so lint
# needs nothing installed but Go.
lint: ## gofmt, go vet, go mod tidy -diff and staticcheck, for tokend and the verify module
	@unformatted="$$(gofmt -l .)"; \
	if [ -n "$$unformatted" ]; then echo >&2 "make: gofmt needed:"; echo >&2 "$$unformatted"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) -C $(VERIFY) vet ./...
	$(GO) mod tidy -diff
	$(GO) -C $(VERIFY) mod tidy -diff
	$(STATICCHECK) $(PKGS)
	cd $(VERIFY) && $(STATICCHECK) ./...

fuzz: ## run every Fuzz* test (the verify module's too) for FUZZTIME each (default 10s; FUZZTIME=1m make fuzz)
	@for mod in . $(VERIFY); do \
		pkgs='$(PKGS)'; [ "$$mod" = . ] || pkgs=./...; \
		pairs="$$($(GO) -C "$$mod" test -list '^Fuzz' $$pkgs | awk '/^Fuzz/ {names[n++] = $$1; next} /^ok / {for (i = 0; i < n; i++) print $$2, names[i]; n = 0}')"; \
		[ -n "$$pairs" ] || continue; \
		while read -r pkg fn; do \
			echo "== $$pkg $$fn (-fuzztime $(FUZZTIME))"; \
			$(GO) -C "$$mod" test -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) "$$pkg" </dev/null; \
		done <<< "$$pairs"; \
	done

# Load benchmark (docs/performance.md): starts a private redis-server (or uses
# REDIS_URL) and bin/tokend, drives every scenario with cmd/loadgen, then
# runs tokend and the bare go-oauth2 server of ../shared/baseline side by
# side (refresh and client_credentials, alternating, BENCH_ROUNDS rounds),
# prints both tables and writes bench-results/bench.json. BENCH_FLAGS adds
# loadgen flags, e.g. BENCH_FLAGS="-scenario none -rounds 7 -compare-duration 20s"
# (side by side alone, longer) or "-scenario refresh -duration 30s".
BENCH_FLAGS    ?=
BENCH_DURATION ?= 5s
BENCH_ROUNDS   ?= 3
# The baseline lives beside the repository (../shared/baseline); from a git
# worktree, beside the main checkout.
BASELINE_DIR ?= $(firstword $(wildcard $(CURDIR)/../shared/baseline $(abspath $(dir $(abspath $(shell git rev-parse --git-common-dir 2>/dev/null)))/../shared/baseline)))
BASELINE_BIN := bin/gooauth2-baseline
# The floor server (cmd/floor): net/http, one signature and, for a refresh,
# one minimal Redis script; it runs in the side by side too.
FLOOR_BIN    := bin/floor
bench: build baseline floor ## load benchmark, then side by side with go-oauth2 and the floor: CPU µs/request, ratio, p99 (about 3.5 min)
	$(GO) run ./cmd/loadgen -tokend $(BIN) -duration $(BENCH_DURATION) -baseline $(BASELINE_BIN) -floor $(FLOOR_BIN) -rounds $(BENCH_ROUNDS) $(BENCH_FLAGS)

floor: ## build the floor server (cmd/floor) into bin/floor
	$(GO) build -o $(FLOOR_BIN) ./cmd/floor

baseline: ## build the bare go-oauth2 server of ../shared/baseline into bin/gooauth2-baseline
	@if [ -z "$(BASELINE_DIR)" ] || [ ! -f "$(BASELINE_DIR)/gooauth2-server/main.go" ]; then \
		echo >&2 "make: the go-oauth2 baseline was not found: looked for ../shared/baseline/gooauth2-server beside the repository"; \
		echo >&2 "  (and beside the main checkout of a git worktree). Put shared/ there or set BASELINE_DIR=/path/to/shared/baseline."; \
		exit 1; \
	fi
	cd "$(BASELINE_DIR)/gooauth2-server" && $(GO) build -o "$(CURDIR)/$(BASELINE_BIN)" .

# CPU profile of tokend under load: loadgen starts tokend with DEBUG_ADDR,
# fetches /debug/pprof/profile over the measured phase of each scenario,
# writes bench-results/cpu-<scenario>.pprof and prints the top entries.
PROFILE_SCENARIOS ?= refresh,client_credentials
profile: build ## CPU profile (pprof) of tokend under load per scenario; prints the top entries
	$(GO) run ./cmd/loadgen -tokend $(BIN) -scenario $(PROFILE_SCENARIOS) -duration $(BENCH_DURATION) -profile-dir bench-results $(BENCH_FLAGS)

bench-micro: ## go test micro-benchmarks (signer, rotation script, handlers, verify); Redis-backed ones need Redis
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)
	$(GO) -C $(VERIFY) test -run '^$$' -bench . -benchmem ./...

# The verify module lives in verify/, so Go finds its versions in tags
# named verify/vX.Y.Z (https://go.dev/ref/mod#vcs-version). This makes the
# tag, after the module's tests, on the current commit; pushing it is left
# to the person releasing.
VERIFY_VERSION ?=
verify-tag: ## tag a release of the verify module: VERIFY_VERSION=v0.1.0 make verify-tag (then git push origin verify/v0.1.0)
	@case "$(VERIFY_VERSION)" in \
		v0.*.*|v1.*.*) ;; \
		*) echo >&2 "make: set VERIFY_VERSION=vX.Y.Z, X 0 or 1 (a v2 needs the module path .../verify/v2); the tag is verify/vX.Y.Z"; exit 1 ;; \
	esac
	@git diff --quiet HEAD -- $(VERIFY) || { echo >&2 "make: $(VERIFY)/ has uncommitted changes"; exit 1; }
	$(GO) -C $(VERIFY) test -count=1 ./...
	git tag -a "$(VERIFY)/$(VERIFY_VERSION)" -m "verify $(VERIFY_VERSION)"
	@echo "tagged $(VERIFY)/$(VERIFY_VERSION); publish it with: git push origin $(VERIFY)/$(VERIFY_VERSION)"

clean: ## remove build and test output
	rm -rf bin/ $(DIST)/ $(COVERFILE) coverage.html *.test bench-results/
