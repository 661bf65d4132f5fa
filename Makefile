# Corral: the two commands of the README are `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
DEGREE ?= 14
SIZE   ?= 400

.PHONY: demo test venv dev-venv rig lint typecheck clean

$(VENV)/.corral-installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[examples]"
	touch $@

$(VENV)/.corral-dev: pyproject.toml $(VENV)/.corral-installed
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

venv: $(VENV)/.corral-installed
dev-venv: $(VENV)/.corral-dev

## demo: run the Littlewood pipeline locally (SQLite state in out/demo/.corral) and show the image path
demo: venv
	mkdir -p out/demo
	$(VENV)/bin/corral run examples/littlewood/pipeline.py --workdir out/demo -j 2 \
		--degree $(DEGREE) --size $(SIZE) --out littlewood.png
	@echo "image: $(CURDIR)/out/demo/littlewood.png"

## rig: install system packages and start SLURM, Grid Engine, PostgreSQL and sshd on loopback
rig:
	bash scripts/rig/up.sh

## test: install everything the tests need (system packages included) and run them
test: dev-venv rig
	set -a; [ -f /run/corral-rig/env ] && . /run/corral-rig/env; set +a; \
	$(VENV)/bin/pytest -q -p no:cacheprovider tests

## check: ruff and mypy (strict)
check: lint typecheck

lint: dev-venv
	$(VENV)/bin/ruff check src tests bench examples

typecheck: dev-venv
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy bench
	$(VENV)/bin/mypy --explicit-package-bases tests
	for d in examples/*/; do $(VENV)/bin/mypy "$$d" || exit 1; done

clean:
	rm -rf out .corral
