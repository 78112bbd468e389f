# The two commands: `make demo` and `make test`. Each creates .venv and installs what it needs,
# pinned by constraints.txt so an upstream release cannot change what CI runs.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q
PIN    := -c constraints.txt

.PHONY: demo test bench prices clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(VENV)/.demo-installed: $(PY) pyproject.toml constraints.txt
	$(PIP) install $(PIN) -e '.[demo]'
	touch $@

$(VENV)/.test-installed: $(PY) pyproject.toml constraints.txt
	$(PIP) install $(PIN) -e '.[test,demo]'
	touch $@ $(VENV)/.demo-installed

$(VENV)/.bench-installed: $(VENV)/.test-installed
	$(PIP) install $(PIN) -e '.[test,demo,bench]'
	touch $@

demo: $(VENV)/.demo-installed
	$(PY) -m tokentrail.demo

test: $(VENV)/.test-installed
	$(PY) -m ruff check src tests benchmarks scripts
	$(PY) -m ruff format --check src tests benchmarks scripts
	$(PY) -m mypy
	$(PY) -m pytest

bench: $(VENV)/.bench-installed
	$(PY) benchmarks/run.py

# Rebuild the price snapshot from the pinned genai-prices (run after bumping its pin).
prices: $(VENV)/.test-installed
	$(PY) scripts/build_price_snapshot.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
