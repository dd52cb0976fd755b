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

.PHONY: run test venv system-deps bench schema check clean constraints

run: $(RUN_STAMP)
	$(VENV)/bin/stamp-router demo

test: $(STAMP) system-deps
	$(PY) -m pytest $(PYTEST_ARGS)

venv: $(STAMP)

$(RUN_STAMP): pyproject.toml $(CONSTRAINTS)
	@$(PYTHON) -c 'import venv, ensurepip' 2>/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv python3-pip; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c $(CONSTRAINTS) -e .
	touch $@

$(STAMP): $(RUN_STAMP)
	$(PY) -m pip install -q -c $(CONSTRAINTS) -e '.[test]'
	touch $@

# Re-pin every dependency to the newest versions pyproject.toml allows, in a scratch
# venv: review the diff of constraints.txt, run make test, commit both.
constraints:
	rm -rf .venv-constraints && $(PYTHON) -m venv .venv-constraints
	.venv-constraints/bin/pip install -q '.[test,route53]'
	{ echo "# Pinned versions of every Python package the router, its tests and the container install."; \
	  echo "# Used by make (pip -c) and the Dockerfile. Update: make constraints (docs/operations.md)."; \
	  .venv-constraints/bin/pip freeze --exclude-editable | grep -iv '^stamp[-_]router'; } > $(CONSTRAINTS)
	rm -rf .venv-constraints

# Installs only what is missing, so a warm machine pays nothing.
system-deps:
	@missing=""; for p in $(TEST_DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
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
	$(PY) -m pip install -q -c $(CONSTRAINTS) -e '.[test,bench]'
	$(PY) benchmarks/run.py $(BENCH_ARGS)

schema: $(STAMP)
	$(VENV)/bin/stamp-router schema > config/schema.json

check: $(STAMP)
	$(VENV)/bin/stamp-router check config/demo.toml
	$(VENV)/bin/stamp-router check config/example.toml

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
