# Quickstart: `make demo` then `make test`. Everything installs from this repo's pinned files.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
CLI := $(VENV)/bin/pm-accounting
export PM_ACCOUNTING_DATA ?= $(CURDIR)/data
export DAGSTER_HOME ?= $(PM_ACCOUNTING_DATA)/dagster_home
export UV_PYTHON_DOWNLOADS := never

.PHONY: install demo test dev bench chaos lint fmt clean lock

$(VENV)/.installed: pyproject.toml requirements.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --disable-pip-version-check uv==0.13.9
	@echo "installing pinned dependencies from requirements.lock ..."
	@$(UV) pip install --quiet --compile-bytecode --python $(PY) -r requirements.lock
	@$(UV) pip install --quiet --python $(PY) --no-deps -e .
	@touch $@

install: $(VENV)/.installed

demo: install
	@mkdir -p $(DAGSTER_HOME)
	$(CLI) demo

test: install
	$(PY) -m pytest -n 2 --dist loadfile

dev: install
	@test -f $(PM_ACCOUNTING_DATA)/mapping.yaml || echo "no demo data yet: run 'make demo' first to see partitions filled"
	@mkdir -p $(DAGSTER_HOME)
	env --default-signal=INT,TERM $(VENV)/bin/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

bench: install
	$(PY) -m pm_accounting_pipeline.bench $(BENCH_ARGS)

chaos: install
	$(PY) -m pm_accounting_pipeline.posting.chaos --seeds 1000

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

fmt: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# requirements.lock is what `make install` installs; uv.lock (universal), pylock.toml (PEP 751) and
# requirements.txt (plain pip) are exports of the same resolution; a test checks they agree.
lock:
	$(UV) pip compile pyproject.toml --extra dev -o requirements.lock --python-version 3.11
	$(UV) lock --python 3.11
	$(UV) export --frozen --extra dev --no-emit-project --format pylock.toml -o pylock.toml
	$(UV) export --frozen --extra dev --no-emit-project --no-hashes --format requirements-txt -o requirements.txt

clean:
	rm -rf $(PM_ACCOUNTING_DATA) .pytest_cache .ruff_cache
