# totpd: `make run` serves on the embedded default, `make test` runs everything.
# Both set up what they need on a fresh machine: a virtualenv in .venv with the
# package installed in editable mode (which compiles the C core), PostgreSQL
# from Debian's packages for the store tests, and each client's toolchain deps.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
NATIVE := $(wildcard native/*.c native/*.h) native/build_native.py

.PHONY: all install run test test-python test-clients lint typecheck proto proto-check \
        test-packages bench clean

all: test

$(STAMP): pyproject.toml setup.py $(NATIVE)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## Serve on 127.0.0.1:50051 with SQLite and a development key under ./var/;
## ARGS="--listen 127.0.0.1:50052" passes options to `totpd serve`.
run: install
	$(VENV)/bin/totpd serve --dev $(ARGS)

## Everything CI checks: lint, types, the proto contract, all test suites.
test: install lint typecheck proto-check test-packages test-python test-clients

test-python: install
	$(PY) -m pytest

test-clients: install
	TOTPD_PYTHON=$(abspath $(PY)) clients/run-tests.sh

lint: install
	$(VENV)/bin/ruff check server tests benchmarks clients/python
	$(VENV)/bin/ruff format --check server tests benchmarks clients/python

typecheck: install
	$(VENV)/bin/mypy --strict server/totpd
	$(VENV)/bin/mypy --strict -p benchmarks.service

proto: install
	PATH=$(abspath $(VENV))/bin:$$PATH proto/generate.sh

proto-check: install
	PATH=$(abspath $(VENV))/bin:$$PATH proto/check.sh

test-packages:
	tests/ensure-test-packages.sh

bench: install
	$(PY) -m pip install --quiet -e '.[bench]'
	benchmarks/run.sh

clean:
	rm -rf $(VENV) build server/totpd/_native*.so .pytest_cache .mypy_cache .ruff_cache
