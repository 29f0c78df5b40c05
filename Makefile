# totpd: `make run` serves on the embedded default, `make test` runs everything.
# Both set up what they need on a fresh machine: a virtualenv in .venv with the
# package installed in editable mode (which compiles the C core), PostgreSQL
# from Debian's packages for the store tests, and each client's toolchain deps.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
NATIVE := $(wildcard native/*.c native/*.h) native/build_native.py

.PHONY: all help install run test test-fast test-python test-benchmarks test-clients lint fmt \
        typecheck proto proto-check test-packages bench clean

all: test

## List the targets and what they do.
help:
	@awk '/^## /{doc = doc substr($$0, 4) " "; next} \
	      /^[a-z][a-z-]*:/{if (doc) {split($$0, t, ":"); printf "  %-16s %s\n", t[1], doc}; doc = ""} \
	      !/^## /{doc = ""}' $(MAKEFILE_LIST)

# The Python client comes too, editable: it provides `totpctl` (its console script). A
# second pip run so that replacing an older server install cannot remove that script.
$(STAMP): pyproject.toml setup.py $(NATIVE) clients/python/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,tracing]'
	$(PY) -m pip install --quiet -e './clients/python[cli]'
	touch $(STAMP)

## Set up .venv and compile the C core, without running anything.
install: $(STAMP)

## Serve on 127.0.0.1:50051 with SQLite and a development key under ./var/;
## ARGS="--listen 127.0.0.1:50052" passes options to `totpd serve`.
run: install
	$(VENV)/bin/totpd serve --dev $(ARGS)

## Everything CI checks: lint, types, the proto contract, all test suites.
test: install lint typecheck proto-check test-packages test-python test-benchmarks test-clients

## The inner loop: SQLite only, no sanitizer builds, server processes or client suites.
test-fast: install
	$(PY) -m pytest -q -m "not postgres and not slow" -p no:cacheprovider

## Every Python test (PostgreSQL included).
test-python: install
	$(PY) -m pytest

## The benchmarks' own tests at smoke sizes (no figure judged): the code that
## reports issue 16's targets runs, and its tables add up (~4 minutes).
test-benchmarks: install
	$(PY) -m pytest -q -p no:cacheprovider benchmarks/core
	$(PY) -m pytest -q -p no:cacheprovider benchmarks/service

## The Python, Go, Node and Java client suites against a real server.
test-clients: install
	TOTPD_PYTHON=$(abspath $(PY)) clients/run-tests.sh

## ruff (lint and format check) on every Python tree, the layer contracts
## (lint-imports, [tool.importlinter] in pyproject.toml), then the format check of the
## C core (clang-format 14) and of the Go (gofmt), Node (prettier) and Java
## (google-java-format) clients.
lint: install
	$(VENV)/bin/ruff check server tests benchmarks clients/python
	$(VENV)/bin/ruff format --check server tests benchmarks clients/python
	$(VENV)/bin/lint-imports
	native/format.sh check
	clients/format.sh check

## Rewrite files in the house format: Python (ruff format, ruff's import order),
## C (clang-format), Go (gofmt), Node (prettier) and Java (google-java-format).
fmt: install
	$(VENV)/bin/ruff check --select I --fix server tests benchmarks clients/python
	$(VENV)/bin/ruff format server tests benchmarks clients/python
	native/format.sh write
	clients/format.sh write

## mypy --strict on the server, the service benchmarks and the Python client (with totpctl).
typecheck: install
	$(VENV)/bin/mypy --strict server/totpd
	$(VENV)/bin/mypy --strict -p benchmarks.service
	$(VENV)/bin/mypy --strict benchmarks/capacity.py benchmarks/core/regression.py
	cd clients/python && $(abspath $(VENV))/bin/mypy src

## Regenerate every language's code from proto/ with pinned tools.
proto: install
	PATH=$(abspath $(VENV))/bin:$$PATH proto/generate.sh

## buf lint, regenerated code equals the committed code, buf breaking.
proto-check: install
	PATH=$(abspath $(VENV))/bin:$$PATH proto/check.sh

## Install the Debian packages the tests use (PostgreSQL, zbar, clang, clang-format), if missing.
test-packages:
	tests/ensure-test-packages.sh

## The core and service benchmarks, with their reports (benchmarks/README.md).
bench: install
	$(PY) -m pip install --quiet -e '.[bench]'
	benchmarks/run.sh

## Remove the virtualenv, build outputs and tool caches.
clean:
	rm -rf $(VENV) build server/totpd/_native*.so .pytest_cache .mypy_cache .ruff_cache

# --- Releases: one version, dist/, the install checks (release/; CONTRIBUTING.md) ----------
# Kept in one block: lint and test gain prerequisites here rather than by editing their lines.

.PHONY: version version-check release-lint proto-snapshot cut-release dist release-check \
        clean-dist

## Copy VERSION into every manifest and client README install line; V=X.Y.Z sets it first.
version:
	$(PYTHON) release/version.py set $(or $(V),$(shell cat VERSION))

## Every manifest agrees with VERSION and CHANGELOG.md has its entry (part of make lint).
version-check:
	$(PYTHON) release/version.py check

## ruff, ruff format and mypy --strict on the release scripts; gofmt and go vet on gomodzip.
release-lint: install
	$(VENV)/bin/ruff check release
	$(VENV)/bin/ruff format --check release
	$(VENV)/bin/mypy --strict release/version.py release/check.py release/check_steps.py
	@if command -v go >/dev/null; then \
	  test -z "$$(gofmt -l release)" || { gofmt -l release; echo "gofmt: run gofmt -w release"; exit 1; }; \
	  cd release/gomodzip && go vet ./...; \
	elif [ "$$CI" = true ]; then echo "release-lint: go missing under CI=true"; exit 1; fi

lint: version-check release-lint

## Save the proto of the version in VERSION as proto/releases/vX.Y.Z.binpb (buf breaking's base).
proto-snapshot: install
	PATH=$(abspath $(VENV))/bin:$$PATH proto/snapshot.sh

## Cut release V=X.Y.Z: VERSION and every copy, CHANGELOG's Unreleased entry, the proto snapshot.
cut-release: install
	@test -n "$(V)" || { echo "usage: make cut-release V=X.Y.Z"; exit 2; }
	$(PYTHON) release/version.py cut $(V)
	$(MAKE) proto-snapshot

## Build every release artifact into dist/ (release/dist.sh lists them) with SHA256SUMS.
dist: install
	release/dist.sh

## Install each artifact from dist/ in a clean place and use it against a live server.
release-check: dist
	$(PY) release/check.py

test: release-check

## Remove dist/ and the clients' build outputs (make clean does too).
clean-dist:
	rm -rf dist clients/node/dist clients/java/.flattened-pom.xml

clean: clean-dist
