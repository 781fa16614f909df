# Two commands: `make run` serves the pool, `make test` lints (ruff, mypy) and runs the
# suite. Each does the whole set-up on a fresh Debian machine first.
PYTHON := $(shell scripts/find_python.sh)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8888

.PHONY: run cluster test lint bench system install clean

run: install
	$(PY) -m lkpool serve --host $(HOST) --port $(PORT)

# a local redis-server and three nodes on loopback sharing it (README: "A cluster")
cluster: install
	PY=$(PY) scripts/cluster.sh

test: install lint
	$(PY) -m pytest -q $(PYTEST_ARGS)

# style and types first: a test run on code that does not lint is not worth the wait
lint: install
	$(VENV)/bin/ruff check lkpool tests bench
	$(VENV)/bin/mypy

bench: install
	$(PY) -m bench.report

install: system $(STAMP)

system:
	@scripts/install_system.sh

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "no Python >= 3.12 found"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,cef]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
