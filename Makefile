# Two commands do all the set-up on a fresh Debian machine (as root):
#   make run    the demo: three local stamps behind the router
#   make test   installs everything the tests need, then runs them
VENV        ?= .venv
PYTHON      ?= python3
PY          := $(VENV)/bin/python
STAMP       := $(VENV)/.installed-stamp
# What the demo needs, no more: `make run` does not install the test dependencies.
RUN_STAMP   := $(VENV)/.installed-run
# Every Python dependency pinned (pip -c): the same versions here and in the Dockerfile.
CONSTRAINTS := constraints.txt
# Real DNS servers for the updater's provider tests (see docs/dns.md); etcd for the etcd
# config source and the updater's lock (docs/control-plane.md).
TEST_DEBS   := bind9 bind9-utils knot knot-dnsutils pdns-server pdns-backend-sqlite3 sqlite3 etcd-server etcd-client openssl
BENCH_DEBS  := wrk haproxy nginx-light strace
# The compiled data path (setup.py) needs a C compiler and Python's headers; `make test`
# installs them when missing, `make run` compiles only where they already are.
COMPILER_DEBS := gcc libc6-dev python3-dev
# What the compiled build is made from: a change rebuilds it (pip install -e recompiles the
# changed modules only).
BUILD_INPUTS := setup.py router/build.py $(shell $(PYTHON) router/build.py sources) $(wildcard router/*/*.pxd)
# Build requirements (pyproject.toml [build-system]), installed pinned into the venv so the
# build uses constraints.txt's Cython and needs no isolated environment per install.
BUILD_REQS  := setuptools Cython
PIP_INSTALL := $(PY) -m pip install -q -c $(CONSTRAINTS) --no-build-isolation
# The data-path tests, run a second time against the interpreted build.
PURE_TESTS  ?= tests/proxy tests/core tests/test_build.py

.PHONY: run test venv system-deps compiler bench schema check clean constraints

run: $(RUN_STAMP)
	$(VENV)/bin/stamp-router demo

# The whole suite against the compiled build, then the data-path tests against the
# interpreted one (STAMP_ROUTER_PURE=1); STAMP_ROUTER_EXPECT_BUILD makes a silent fallback
# to the other build fail (tests/test_build.py).
test: system-deps $(STAMP)
	STAMP_ROUTER_EXPECT_BUILD=compiled $(PY) -m pytest $(PYTEST_ARGS)
	$(if $(strip $(PURE_TESTS)),STAMP_ROUTER_PURE=1 STAMP_ROUTER_EXPECT_BUILD=pure $(PY) -m pytest -q $(PURE_TESTS))

venv: $(STAMP)

$(PY):
	@$(PYTHON) -c 'import venv, ensurepip' 2>/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv python3-pip; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# Each install says which build it made (compiled, or pure Python and why).
$(RUN_STAMP): pyproject.toml $(CONSTRAINTS) $(BUILD_INPUTS) | $(PY)
	$(PY) -m pip install -q -c $(CONSTRAINTS) $(BUILD_REQS)
	$(PIP_INSTALL) -e .
	$(VENV)/bin/stamp-router --version
	touch $@

$(STAMP): pyproject.toml $(CONSTRAINTS) $(BUILD_INPUTS) | $(PY) compiler
	$(PY) -m pip install -q -c $(CONSTRAINTS) $(BUILD_REQS)
	$(PIP_INSTALL) -e '.[test]'
	$(VENV)/bin/stamp-router --version
	touch $@ $(RUN_STAMP)

# Re-pin every dependency to the newest versions pyproject.toml allows, in a scratch
# venv: review the diff of constraints.txt, run make test, commit both.
constraints:
	rm -rf .venv-constraints && $(PYTHON) -m venv .venv-constraints
	.venv-constraints/bin/pip install -q $(BUILD_REQS) '.[test,route53]'
	{ echo "# Pinned versions of every Python package the router, its build, its tests and the container install."; \
	  echo "# Used by make (pip -c) and the Dockerfile. Update: make constraints (docs/operations.md)."; \
	  .venv-constraints/bin/pip freeze --all --exclude-editable | grep -iv -e '^stamp[-_]router' -e '^pip=='; } > $(CONSTRAINTS)
	rm -rf .venv-constraints

# Prints COMPILER_DEBS when no C compiler builds against this Python's headers.
NEED_COMPILER = command -v cc >/dev/null && $(PYTHON) -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' || echo $(COMPILER_DEBS)

compiler:
	@missing="$$($(NEED_COMPILER))"; if [ -n "$$missing" ]; then \
	  echo "installing Debian packages: $$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

# Installs only what is missing, so a warm machine pays nothing.
system-deps:
	@missing="$$($(NEED_COMPILER))"; for p in $(TEST_DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

# Router vs HAProxy vs nginx, same routing, one run (benchmarks/README.md); ~10 minutes.
# More rounds, longer or fewer scenarios: make bench BENCH_ARGS="--rounds 9 --duration 10 --scenarios header,jwt"
bench: $(STAMP)
	@missing=""; for p in $(BENCH_DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; fi
	$(PIP_INSTALL) -e '.[test,bench]'
	$(PY) benchmarks/run.py $(BENCH_ARGS)

schema: $(STAMP)
	$(VENV)/bin/stamp-router schema > config/schema.json

check: $(STAMP)
	$(VENV)/bin/stamp-router check config/demo.toml
	$(VENV)/bin/stamp-router check config/example.toml

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
