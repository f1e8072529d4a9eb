# Two entry points: `make up` runs Tokentrail, `make test` runs the checks CI runs.
VENV ?= .venv
PYTHON ?= python3
BIN = $(VENV)/bin

.PHONY: install up test lint typecheck pytest bench corpus-envs clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[server,dev]'
	touch $@

# The third-party waste corpus runs real third-party instrumentations, each environment pinned
# (OpenLIT needs older client libraries than the others, so it has its own).
CORPUS = tests/analysis/thirdparty
corpus-envs: .venv-emitters/.installed .venv-openlit/.installed

.venv-%/.installed: $(CORPUS)/requirements-%.txt
	$(PYTHON) -m venv .venv-$*
	.venv-$*/bin/python -m pip install -q --no-deps -r $<
	touch $@

up: install
	$(BIN)/tokentrail up

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

pytest: install corpus-envs
	$(BIN)/pytest -q -p no:cacheprovider

test: lint typecheck pytest

bench: install
	$(BIN)/python -m bench.ingest

clean:
	rm -rf $(VENV) .venv-emitters .venv-openlit .mypy_cache .ruff_cache .pytest_cache
