# The two commands: `make demo` and `make test`. Each creates .venv and installs what it needs,
# pinned by constraints.txt so an upstream release cannot change what CI runs.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q
PIN    := -c constraints.txt

.PHONY: demo test bench prices docs chromium clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(VENV)/.demo-installed: $(PY) pyproject.toml constraints.txt
	$(PIP) install $(PIN) -e '.[demo]'
	touch $@

$(VENV)/.test-installed: $(PY) pyproject.toml constraints.txt
	$(PIP) install $(PIN) -e '.[test,demo,docs]'
	touch $@ $(VENV)/.demo-installed

$(VENV)/.bench-installed: $(VENV)/.test-installed
	$(PIP) install $(PIN) -e '.[test,demo,bench]'
	touch $@

demo: $(VENV)/.demo-installed
	$(PY) -m tokentrail.demo
	@echo; echo '$$ tokentrail report --store sqlite:///demo.db --by agent,model'
	@COLUMNS=110 $(VENV)/bin/tokentrail report --store sqlite:///demo.db --by agent,model

# The dashboard's browser tests drive Debian's Chromium (not on a fresh machine: installed here once).
# Under CI=true a failed install stops `make test`: CI never runs without the browser tests.
chromium:
	@command -v chromium >/dev/null 2>&1 || test -x /usr/bin/chromium || \
	  (apt-get install -y -q chromium >/dev/null 2>&1 || \
	   (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null)) || \
	  case "$$(printf %s "$${CI:-}" | tr A-Z a-z)" in \
	    true|1|yes) echo "ERROR: CI=true and chromium could not be installed (apt-get install -y chromium)" >&2; exit 1;; \
	    *) echo "WARNING: could not install chromium; the browser tests will skip, loudly (under CI=true they fail)";; \
	  esac

test: $(VENV)/.test-installed chromium
	$(PY) -m ruff check src tests benchmarks scripts examples
	$(PY) -m ruff format --check src tests benchmarks scripts examples
	$(PY) -m mypy
	$(PY) -m mkdocs build --strict --quiet -d /tmp/tokentrail-site
	$(PY) -m pytest

docs: $(VENV)/.test-installed
	$(PY) -m mkdocs build --strict -d site

bench: $(VENV)/.bench-installed
	$(PY) benchmarks/run.py

# Rebuild the price snapshot from the pinned genai-prices (run after bumping its pin).
prices: $(VENV)/.test-installed
	$(PY) scripts/build_price_snapshot.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
