# Every target sets up .venv by itself, so each works on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# Two stamps in one .venv: `make demo` installs only the runtime dependencies (a small, quick
# venv); `make test` and the other tool targets later upgrade the same .venv to everything.
STAMP  := $(VENV)/.installed
RUNTIME_STAMP := $(VENV)/.installed-runtime
# A venv named on the command line or in the environment (VENV=/abs/path/venv) that
# already exists is used as it is: make never installs into a venv it does not own.
ifneq ($(origin VENV),file)
ifneq ($(wildcard $(PY)),)
STAMP :=
RUNTIME_STAMP :=
endif
endif

# Upstream API sources for `make regenerate-stubs` (override on the command line).
CLOUDAPI_URL ?= https://github.com/yandex-cloud/cloudapi
CLOUDAPI_REF ?= 202142637b66396e1dbaab57823ff3db97706efb
CLOUDAPI_DIR ?=
export CLOUDAPI_URL CLOUDAPI_REF CLOUDAPI_DIR

.PHONY: help demo test lint typecheck regenerate-stubs regenerate-stubs-offline check-stubs test-compat bench clean

help:
	@echo "make demo                      stream a completion from the embedded emulator (installs runtime deps only)"
	@echo "make test                      run the test suite"
	@echo "make lint                      ruff + mypy --strict"
	@echo "make regenerate-stubs          clone cloudapi @ CLOUDAPI_REF (or CLOUDAPI_DIR) and regenerate _generated/"
	@echo "make regenerate-stubs-offline  regenerate _generated/ from proto/ as it is"
	@echo "make check-stubs               fail if _generated/ differs from what proto/ generates"
	@echo "make test-compat               the suite on the floor and on the newest dependency versions"
	@echo "make bench                     overhead against hand-written grpcio stub calls; cloud-batch upload of 1 GB"

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,dev,regen]'
	@touch $@ $(RUNTIME_STAMP)

# Runtime dependencies only (no extras, no pip upgrade): what the demo needs.
$(RUNTIME_STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e .
	@touch $@

demo: $(RUNTIME_STAMP)
	$(PY) -m yandexgpt_grpc.demo

test: $(STAMP)
	$(PY) -m pytest -q

LINT_PATHS := src tests scripts $(wildcard bench examples)

lint: $(STAMP)
	$(PY) -m ruff check $(LINT_PATHS)
	$(PY) -m ruff format --check $(LINT_PATHS)
	$(PY) -m mypy

regenerate-stubs: $(STAMP)
	$(PY) scripts/regenerate_stubs.py

regenerate-stubs-offline: $(STAMP)
	$(PY) scripts/regenerate_stubs.py --offline

check-stubs: $(STAMP)
	$(PY) scripts/regenerate_stubs.py --check

test-compat:
	$(PYTHON) scripts/compat.py

bench: $(STAMP)
	$(PY) -m bench
	$(PY) -m bench.cloud_upload --size-mb 1024

clean:
	rm -rf $(VENV) .venv-compat-* .pytest_cache .mypy_cache .ruff_cache
