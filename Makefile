# canarylab: the two commands are `make demo` and `make test`; everything else
# is what they call. All Python work happens in $(VENV).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
# Debian packages (by command name) that `make` installs where missing.
SYSTEM_PACKAGES := haproxy wrk chromium prometheus

.DEFAULT_GOAL := help
.PHONY: help demo demo-bad test lint format unit integration chaos conformance venv system-deps sandbox-build sandbox-up sandbox-down clean

help:
	@echo "make demo   - bring the sandbox up and run the main job (see README)"
	@echo "make demo-bad - the same with a canary failing 20% of requests: gates roll it back"
	@echo "make test   - install what the tests need, lint, type-check and run all tests"
	@echo "make lint   - ruff, ruff format --check, mypy, import-linter"
	@echo "make unit   - fast tests of pure logic only"
	@echo "make chaos  - the fault-injection suite (its own pytest session; CI runs it)"
	@echo "make conformance - build Traefik v3.6.12 (long, once) and check the Gateway API router against it"
	@echo "make sandbox-build - build the sandbox's Go binaries (once; the targets above need them)"

# constraints.txt pins every distribution of .[dev] (tested by tests/unit/test_packaging.py),
# so a fresh machine installs what CI tested.
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	@touch $@

venv: $(VENV)/.installed

system-deps:
	@scripts/system-deps.sh $(SYSTEM_PACKAGES)

# The sandbox's Go binaries (a few minutes on a cold machine, then cached): a
# prerequisite of every target that starts the sandbox, so the build never runs under
# pytest's per-test timeout. Locked: a second command waits for a running build.
sandbox-build: venv system-deps
	$(PY) -W ignore::RuntimeWarning:runpy -m canarylab.sandbox.build

lint: venv
	$(BIN)/ruff check canarylab tests benchmarks
	$(BIN)/ruff format --check canarylab tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

format: venv
	$(BIN)/ruff format canarylab tests benchmarks
	$(BIN)/ruff check --fix canarylab tests benchmarks

unit: venv
	$(BIN)/pytest tests/unit

integration: venv system-deps sandbox-build
	$(BIN)/pytest tests/integration

# Kills the controller and restarts etcd/the API server, so it runs in a session of
# its own (a bare `pytest` deselects it); CANARYLAB_CHAOS_SEED replays a run. `-s`
# shows its progress and the closing `rollouts: …, violations: 0, failed requests: 0` line.
# The control-plane restarts get a fresh sandbox: right after an API-server restart the
# scheduler can sit in watch back-off (RBAC answers 403 until the restarted server's
# caches fill), which would stall the next test's pods.
chaos: venv system-deps sandbox-build
	$(BIN)/pytest -s tests/chaos/test_controller_kills.py tests/chaos/test_invariants.py
	$(BIN)/pytest -s tests/chaos/test_control_plane_restarts.py

# Gateway API conformance of canarylab's router against a real gateway, Traefik v3.6.12.
# Not part of `make test`: Traefik's cold build compiles about five times as many Go
# packages as the control plane (see docs/sandbox.md), which a fresh CI machine cannot
# add to its budget. Its tests skip inside `make test` until Traefik is built.
conformance: venv system-deps sandbox-build
	$(PY) -W ignore::RuntimeWarning:runpy -m canarylab.sandbox.traefik
	$(BIN)/pytest tests/integration/test_gateway_conformance.py

test: venv system-deps lint sandbox-build
	$(BIN)/pytest

demo: venv system-deps sandbox-build
	$(BIN)/canarylab demo

demo-bad: venv system-deps sandbox-build
	$(BIN)/canarylab demo --bad

sandbox-up: venv system-deps sandbox-build
	$(BIN)/canarylab sandbox up

sandbox-down: venv
	$(BIN)/canarylab sandbox down

clean:
	rm -rf $(VENV) out .pytest_cache .mypy_cache .ruff_cache
