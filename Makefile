# The two commands of a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PLUGINS := plugins/chatcore-openai plugins/chatcore-huggingface plugins/chatcore-prometheus plugins/chatcore-redis
STAMP := $(VENV)/.chatcore-installed

.PHONY: demo test venv lint type check clean

$(STAMP): pyproject.toml $(addsuffix /pyproject.toml,$(PLUGINS))
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# core and plugins in one pip call, as editables: pip never fetches chatcore from an index
	$(BIN)/python -m pip install --quiet -e '.[dev]' $(addprefix -e ,$(PLUGINS))
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/chatcore demo

test: $(STAMP)
	$(BIN)/python -m pytest --cov --cov-report=term

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

type: $(STAMP)
	$(BIN)/mypy

check: lint type test

clean:
	rm -rf $(VENV) .tox .pytest_cache .mypy_cache .ruff_cache .coverage htmlcov build dist
