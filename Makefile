# One target per habit. Every target creates the project's virtualenv first if it is missing, so a
# fresh clone needs nothing but Python 3.11+ and make. The `local` extra compiles llama.cpp through
# llama-cpp-python the first time (~6-9 min on 2 cores); pip caches the wheel for later installs.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
LOCAL := $(VENV)/.installed-local
DEV := $(VENV)/.installed-dev

# the browser tests drive Debian's Chromium (no browser is downloaded by a test tool)
CHROMIUM ?= /usr/bin/chromium
# model-written code (the code suite, scorer: code) runs only inside bubblewrap (Debian: bubblewrap)
BWRAP ?= /usr/bin/bwrap
# the team store's tests start a real PostgreSQL server (Debian: postgresql; any version)
PG ?= $(firstword $(wildcard /usr/lib/postgresql/*/bin/postgres) /usr/lib/postgresql/15/bin/postgres)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install demo test check coverage lint fmt bench calibrate clean fuzz screenshots sandbox docs

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(LOCAL): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e '.[local]'
	touch $@

$(DEV): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e '.[dev,local]'
	touch $@ $(LOCAL)

$(CHROMIUM):
	@command -v apt-get >/dev/null || { echo "the browser tests need Chromium at $(CHROMIUM) (Debian/Ubuntu package: chromium)"; exit 1; }
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends chromium >/dev/null

$(BWRAP):
	@command -v apt-get >/dev/null || { echo "the code suite's sandbox needs bubblewrap at $(BWRAP) (Debian/Ubuntu package: bubblewrap)"; exit 1; }
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends bubblewrap >/dev/null

$(PG):
	@command -v apt-get >/dev/null || { echo "the team store's tests need PostgreSQL's server binaries (Debian/Ubuntu package: postgresql)"; exit 1; }
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends postgresql >/dev/null

# the sandbox for model-written code alone (`make test` installs it too)
sandbox: $(BWRAP)

install: $(LOCAL)

# the main job: the local lineup of llama.cpp servers (no API key, no network)
demo: $(LOCAL)
	$(BIN)/bakeoff run

# BAKEOFF_REQUIRE_PG=1 / _RAY=1: a missing PostgreSQL or Ray fails their tests instead of skipping them.
# Two pytest-xdist workers, a test module each at a time (--dist loadfile: a module's servers and
# browser stay in one process): on 2 cores 1056 tests in 12 min 45 s (21-22 min in one process), the
# suite's single-threaded half overlapping the model servers' half. TEST_WORKERS=0: one process.
TEST_WORKERS ?= 2
XDIST = $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)
test: $(DEV) $(CHROMIUM) $(BWRAP) $(PG)
	BAKEOFF_REQUIRE_PG=1 BAKEOFF_REQUIRE_RAY=1 $(BIN)/python -m pytest -q $(XDIST)

# the fast subset for iteration: everything but the modules marked slow in tests/conftest.py
check: $(DEV) $(BWRAP)
	$(BIN)/python -m pytest -q -m "not slow" $(XDIST)

# make test under coverage.py: the line coverage of src/bakeoff by the whole suite (slower than make test)
coverage: $(DEV) $(CHROMIUM) $(BWRAP) $(PG)
	BAKEOFF_REQUIRE_PG=1 BAKEOFF_REQUIRE_RAY=1 $(BIN)/python -m pytest -q $(XDIST) --cov=bakeoff --cov-report=term:skip-covered

lint: $(DEV)
	$(BIN)/ruff format --check src tests bench
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

fmt: $(DEV)
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

fuzz: $(DEV) $(BWRAP)
	HYPOTHESIS_PROFILE=fuzz $(BIN)/python -m pytest -q tests/test_fuzz.py

# docs/CLI.md from every command's --help (tests/test_cli_reference.py checks it)
docs: $(DEV)
	$(BIN)/python -m bakeoff.cli._reference

# refresh the screenshots in docs/ from the browser tests
screenshots: $(DEV) $(CHROMIUM)
	BAKEOFF_SCREENSHOTS=docs/screenshots $(BIN)/python -m pytest -q tests/test_browser.py tests/test_browser_overview.py tests/test_browser_pages.py tests/test_browser_watch.py

# the revision whose wire client `make bench` measures this tree's against (bench/client_overhead.py)
BENCH_AGAINST ?= main

# the fidelity audit's rates on the local ladder at its defaults (docs/FIDELITY.md's table): hours on
# 2 cores; resumable — the same command again re-reads the finished repetitions and goes on
CALIBRATE_DIR ?= $(HOME)/.cache/bakeoff/calibrate
CALIBRATE_ENDPOINTS ?= f16-batch8,f32,f16-torch,f16-torch-load,q8_0,q4_k_m,q3_k_s,q2_k
# and as a user of a hosted reference audits (no scorer: margins from the reference's own top-5),
# budget 100: ~5 min a repetition on 2 cores
HOSTED_ENDPOINTS ?= f16-2t,f32,f16-torch-load,q8_0,q4_k_m,q2_k,sysprompt,mix30-q2k
calibrate: $(DEV)
	$(BIN)/bakeoff calibrate --reps 10 --sampled-budget 0 --endpoints $(CALIBRATE_ENDPOINTS) \
		--keep $(CALIBRATE_DIR) --json $(CALIBRATE_DIR)/results.json
	$(BIN)/bakeoff calibrate --reps 10 --greedy-budget 100 --sampled-budget 0 --scorer top_logprobs \
		--endpoints $(HOSTED_ENDPOINTS) --keep $(CALIBRATE_DIR) --json $(CALIBRATE_DIR)/hosted.json

bench: $(DEV) $(BWRAP)
	$(BIN)/python bench/client_overhead.py
	$(BIN)/python bench/client_overhead.py --against $(BENCH_AGAINST)
	$(BIN)/python bench/long_context.py
	$(BIN)/python bench/ui_scale.py
	$(BIN)/python bench/crash_trials.py
	$(BIN)/python bench/code_sandbox.py
	bash bench/default_run.sh
	# bakeoff watch on the local servers (docs/WATCH.md): ~25 min of CPU to record once, kept in
	# ~/.cache/bakeoff/watch-bench and re-read after; the replay takes seconds
	$(BIN)/python bench/watch_null.py --record-budget 1e9

clean:
	rm -rf build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
