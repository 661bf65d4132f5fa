# Corral: the two commands of the README are `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
DEGREE ?= 14
SIZE   ?= 400

.PHONY: demo test venv dev-venv rig lint typecheck clean lock lock-upgrade lock-check

# Installs are locked: requirements/*.txt pin every package (direct and transitive, with hashes),
# pip itself and the build backend included; `make lock` updates them on purpose.
$(VENV)/.corral-installed: pyproject.toml requirements/demo.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --require-hashes --no-deps -r requirements/demo.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	$(PY) -m pip check -q
	touch $@

$(VENV)/.corral-dev: pyproject.toml requirements/dev.txt $(VENV)/.corral-installed
	$(PY) -m pip install -q --require-hashes --no-deps -r requirements/dev.txt
	$(PY) -m pip check -q
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

## lock: update requirements/*.txt after a change to pyproject.toml (keeps every other pin)
## lock-upgrade: move every pin to the newest release; lock-check: fail if the lock is stale
UV_VERSION := 0.13.9
LOCK_VENV  := .venv-lock
UV         := $(LOCK_VENV)/bin/uv
LOCK_FLAGS := --universal --python-version 3.11 --generate-hashes --quiet --no-header
LOCKS      := requirements/dev.txt:dev requirements/demo.txt:examples
# the demo's lock is solved within the dev lock, so that the two agree on every shared pin
LOCK_DEMO  := -c requirements/dev.txt

$(UV):
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install -q uv==$(UV_VERSION)

lock: $(UV)
	for l in $(LOCKS); do $(UV) pip compile pyproject.toml requirements/build.in --extra $${l#*:} \
		$(LOCK_FLAGS) $$([ $${l#*:} = dev ] || echo $(LOCK_DEMO)) -o $${l%:*} || exit 1; done

lock-upgrade: $(UV)
	for l in $(LOCKS); do $(UV) pip compile pyproject.toml requirements/build.in --extra $${l#*:} \
		$(LOCK_FLAGS) $$([ $${l#*:} = dev ] && echo --upgrade || echo $(LOCK_DEMO)) -o $${l%:*} || exit 1; done

lock-check: $(UV)
	tmp=$$(mktemp -d); for l in $(LOCKS); do f=$${l%:*}; cp $$f $$tmp/lock.txt; \
		$(UV) pip compile pyproject.toml requirements/build.in --extra $${l#*:} $(LOCK_FLAGS) \
		$$([ $${l#*:} = dev ] || echo $(LOCK_DEMO)) -o $$tmp/lock.txt && diff -u $$f $$tmp/lock.txt || { echo "$$f is stale: run make lock"; exit 1; }; \
	done; rm -rf $$tmp

clean:
	rm -rf out .corral
