# The two commands: `make demo` and `make test`. Each creates .venv and installs what it needs,
# pinned by constraints.txt so an upstream release cannot change what CI runs.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q
PIN    := -c constraints.txt

.PHONY: demo test test-frameworks bench prices docs chromium node clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(VENV)/.demo-installed: $(PY) pyproject.toml constraints.txt
	$(PIP) install $(PIN) -e '.[demo,server]'
	touch $@

$(VENV)/.test-installed: $(PY) pyproject.toml constraints.txt
	$(PIP) install $(PIN) -e '.[test,demo,docs]'
	touch $@ $(VENV)/.demo-installed

$(VENV)/.bench-installed: $(VENV)/.test-installed
	$(PIP) install $(PIN) -e '.[test,demo,bench]'
	touch $@

# The optional C reader: `pip install -e .` compiles it (hatch_build.py); this rule compiles it again after
# the .c (or the hook) changes. A failed compile (no compiler) prints the compiler's message and goes on in
# pure Python; under CI=true the tests then fail (tests/adapters/test_fastread_safety.py). No rule while the
# .c does not exist; EXT_SUFFIX is the venv's interpreter's (the one it is made from, before it exists).
FASTREAD_C  := $(wildcard src/tokentrail/adapters/_fastread.c)
FASTREAD_SO := $(if $(FASTREAD_C),src/tokentrail/adapters/_fastread$(shell $(if $(wildcard $(PY)),$(PY),$(PYTHON)) \
	-c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))'))

ifneq ($(FASTREAD_SO),)
$(FASTREAD_SO): $(FASTREAD_C) hatch_build.py | $(PY)
	@$(PY) hatch_build.py || echo "WARNING: the compiled reader was not built; tokentrail reads usage in pure Python"
endif

demo: $(VENV)/.demo-installed $(FASTREAD_SO)
	$(PY) -m tokentrail.demo
	@echo; echo '$$ tokentrail report --store sqlite:///demo.db --by agent,model'
	@COLUMNS=110 $(VENV)/bin/tokentrail report --store sqlite:///demo.db --by agent,model
	@echo; echo '$$ tokentrail session demo-session-1 --store sqlite:///demo.db'
	@COLUMNS=110 $(VENV)/bin/tokentrail session demo-session-1 --store sqlite:///demo.db
	@echo; echo 'The demo run in the dashboard (sessions, run tree, timeline, live):'
	@echo '  $(VENV)/bin/tokentrail serve --store sqlite:///demo.db   then open http://127.0.0.1:8000/sessions/demo-session-1'

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

# JavaScript clients the tests drive (Node openai, the Vercel AI SDK, the OTel JS exporter, axe-core),
# installed exactly as locked in tests/node/package-lock.json.
NODE_DIR := tests/node
$(NODE_DIR)/node_modules/.installed: $(NODE_DIR)/package.json $(NODE_DIR)/package-lock.json
	npm ci --prefix $(NODE_DIR) --no-audit --no-fund --loglevel=error
	touch $@

node: $(NODE_DIR)/node_modules/.installed

test: $(VENV)/.test-installed $(FASTREAD_SO) chromium node
	$(PY) -m ruff check src tests benchmarks scripts examples
	$(PY) -m ruff format --check src tests benchmarks scripts examples
	$(PY) -m mypy
	$(PY) -m mkdocs build --strict --quiet -d /tmp/tokentrail-site
	$(PY) -m pytest --ignore=tests/frameworks/test_llama_index.py --ignore=tests/frameworks/test_crewai.py
	$(MAKE) --no-print-directory test-frameworks

# LlamaIndex and CrewAI pin openai<3 (.venv has openai 3): their integrations are tested in their own
# environment, pinned by constraints-frameworks.txt, and type-checked there (mypy excludes them in .venv).
# (llama-index-llms-anthropic 0.12 is left out: it fails on anthropic 2.x, `MessageParam(...)` is a Union there.)
FVENV := .venv-frameworks
FPY   := $(FVENV)/bin/python
FPIP  := $(FPY) -m pip --disable-pip-version-check -q
FRAMEWORK_PACKAGES := llama-index-core llama-index-llms-openai crewai \
	pytest pytest-timeout mypy ruff

$(FPY):
	$(PYTHON) -m venv $(FVENV)

$(FVENV)/.installed: $(FPY) pyproject.toml constraints-frameworks.txt
	$(FPIP) install -c constraints-frameworks.txt -e . $(FRAMEWORK_PACKAGES)
	touch $@

test-frameworks: $(FVENV)/.installed
	$(FPY) -m mypy --cache-dir $(FVENV)/.mypy_cache src/tokentrail/integrations/llama_index.py src/tokentrail/integrations/crewai.py
	TOKENTRAIL_FRAMEWORKS_ENV=1 CREWAI_DISABLE_TELEMETRY=true CREWAI_TRACING_ENABLED=false OTEL_SDK_DISABLED=true \
	  $(FPY) -m pytest -p no:cacheprovider tests/frameworks/test_llama_index.py tests/frameworks/test_crewai.py

docs: $(VENV)/.test-installed
	$(PY) -m mkdocs build --strict -d site

bench: $(VENV)/.bench-installed
	$(PY) benchmarks/run.py

# Rebuild the price snapshot from the pinned genai-prices (run after bumping its pin).
prices: $(VENV)/.test-installed
	$(PY) scripts/build_price_snapshot.py

clean:
	rm -rf $(VENV) $(FVENV) .pytest_cache .mypy_cache .ruff_cache
	rm -f src/tokentrail/adapters/_fastread*.so src/tokentrail/adapters/_fastread*.pyd
