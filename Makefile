# Two commands on a fresh clone: `make serve` and `make test`. Everything else is a step of those.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | cksum | cut -d' ' -f1)
UV_VERSION := 0.13.9
PYTEST_ARGS ?=

.PHONY: install system-deps lock serve train test lint format bench bench-reads bento image actionlint clean

$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv pip sync --quiet --python $(BIN)/python requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	@rm -f $(VENV)/.installed-*; touch $@

install: $(STAMP)

lock:  ## re-resolve requirements.lock after editing pyproject.toml
	$(BIN)/uv pip compile --quiet pyproject.toml --extra dev --python-version 3.11 -o requirements.lock

train: install
	$(BIN)/attrition train

serve: install
	$(BIN)/attrition serve

# Commands the tests run that PyPI does not ship, as COMMAND:DEBIAN-PACKAGE pairs: promtool
# checks deploy/prometheus (tests/test_monitoring_deploy.py); chromium runs the browser tests
# (tests/browser/, Playwright drives /usr/bin/chromium); wrk loads the server in `make bench`.
# Add a pair to add a tool.
SYSTEM_TOOLS := promtool:prometheus chromium:chromium wrk:wrk

# A no-op when every command is on PATH. Otherwise, as root with apt-get (a Debian or Ubuntu
# machine, CI's), installs the missing packages, updating the package lists only if the install
# fails (they may be stale); as anyone else, says what to install and fails (`sudo make
# system-deps`). Services a package ships are not started where there is no init system or a
# policy-rc.d forbids it (containers); promtool needs none.
system-deps:
	@missing=""; \
	for pair in $(SYSTEM_TOOLS); do \
	  command -v "$${pair%%:*}" >/dev/null 2>&1 || missing="$$missing $${pair#*:}"; \
	done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then \
	  echo "system-deps: missing Debian package(s):$$missing;" \
	    "install them as root (sudo make system-deps, or apt-get install$$missing)" >&2; \
	  exit 1; \
	fi; \
	install="apt-get install -y -q --no-install-recommends$$missing"; \
	export DEBIAN_FRONTEND=noninteractive; \
	echo "$$install"; \
	$$install || { echo "apt-get update -q"; apt-get update -q && $$install; } || exit 1; \
	for pair in $(SYSTEM_TOOLS); do \
	  command -v "$${pair%%:*}" >/dev/null 2>&1 || \
	    { echo "system-deps: $${pair#*:} installed no $${pair%%:*}" >&2; exit 1; }; \
	done

test: system-deps install
	$(BIN)/pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: system-deps install
	$(BIN)/python bench/run.py

bench-reads: install  ## read scaling: every read and page at 100k and 1M stored predictions
	$(BIN)/python -m bench.reads

# The models the Bento carries are those MODELS names (deploy/models.env: the champion, pinned,
# and an optional shadow challenger; the service declares both, so `bentoml build` packs both).
# `make bento MODELS=` builds with the environment as it is (without either variable: the
# store's latest model alone).
MODELS := deploy/models.env

bento: install
	@models="$(if $(MODELS),$$(scripts/models.sh env $(MODELS)))" && set -x && \
	env $$models BENTOML_CONFIG=configuration.yaml $(BIN)/bentoml build -f bentofile.yaml

image: bento  ## needs a container engine (docker or podman); CI's CD job runs it
	$(BIN)/bentoml containerize attrition:latest

actionlint:
	scripts/actionlint.sh

clean:
	rm -rf $(VENV) var reports bench/results .pytest_cache .ruff_cache
