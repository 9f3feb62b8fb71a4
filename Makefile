# Two commands set everything up on a fresh machine with Python 3.11, node 20 and npm:
#   make demo   creates .venv, installs, starts a local devnet and runs notebooks/quickstart.ipynb
#   make test   installs what the tests need and runs them all (lint, types, unit, e2e)
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp


.PHONY: install demo lab test lint pytest chromium postgresql devnet-down clean

$(STAMP): pyproject.toml package.json
	npm install --no-audit --no-fund  # JupyterLab builder, esbuild, solc-js, anvil
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade 'pip>=24,<27'
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q 'hatchling>=1.27,<2' 'hatch-jupyter-builder>=0.9,<0.11' 'jupyterlab>=4.4,<5'
	$(BIN)/pip install -q --no-build-isolation -e '.[dev]'
	touch $@

install: $(STAMP)

demo: install
	$(BIN)/python tools/run_notebook.py notebooks/quickstart.ipynb; rc=$$?; \
	$(BIN)/gensyn devnet down; exit $$rc

lab: install
	$(BIN)/jupyter lab --allow-root --LabApp.news_url=None notebooks/quickstart.ipynb

lint: install
	$(BIN)/ruff check gensyn_jupyter tests benchmarks tools
	$(BIN)/ruff format --check gensyn_jupyter tests benchmarks tools
	$(BIN)/mypy

# Browser tests drive Debian's chromium (playwright cannot download browsers here).
chromium:
	@command -v chromium >/dev/null || (apt-get update -q && apt-get install -y -q --no-install-recommends chromium)

# tests/coordinator/test_postgres_replicas.py starts Debian's PostgreSQL server in a temp dir.
postgresql:
	@ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || command -v postgres >/dev/null || (apt-get update -q && apt-get install -y -q --no-install-recommends postgresql)

pytest: install chromium postgresql
	$(BIN)/pytest -n 2 --dist loadgroup --durations=30

test: lint pytest

devnet-down:
	-$(BIN)/gensyn devnet down

clean:
	rm -rf $(VENV) node_modules lib gensyn_jupyter/labextension .pytest_cache .mypy_cache
