# Two commands on a fresh clone: `make serve` and `make test`. Everything else is a step of those.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | cksum | cut -d' ' -f1)
UV_VERSION := 0.13.9
PYTEST_ARGS ?=

.PHONY: install lock serve train test lint format bench bento image actionlint clean

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

test: install
	$(BIN)/pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install
	$(BIN)/python bench/run.py

bento: install
	BENTOML_CONFIG=configuration.yaml $(BIN)/bentoml build -f bentofile.yaml

image: bento  ## needs a container engine (docker or podman); CI's CD job runs it
	$(BIN)/bentoml containerize attrition:latest

actionlint:
	scripts/actionlint.sh

clean:
	rm -rf $(VENV) var reports bench/results .pytest_cache .ruff_cache
