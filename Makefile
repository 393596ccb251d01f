# The two commands of a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# chatcore-cost depends on genai-prices, which needs Python 3.11
PY311 := $(shell $(PYTHON) -c 'import sys; print(int(sys.version_info >= (3, 11)))' 2>/dev/null)
PLUGINS := plugins/chatcore-openai plugins/chatcore-huggingface plugins/chatcore-anthropic plugins/chatcore-prometheus plugins/chatcore-redis plugins/chatcore-opentelemetry $(if $(filter 1,$(PY311)),plugins/chatcore-cost)
# plugins installed with their `test` extra (what their tests need, e.g. the OpenTelemetry SDK)
WITH_TEST_EXTRA := plugins/chatcore-opentelemetry
STAMP := $(VENV)/.chatcore-installed

.PHONY: demo test venv lint type check clean mutation

$(STAMP): pyproject.toml $(addsuffix /pyproject.toml,$(PLUGINS))
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# core and plugins in one pip call, as editables: pip never fetches chatcore from an index
	$(BIN)/python -m pip install --quiet -e '.[dev]' \
		$(addprefix -e ,$(filter-out $(WITH_TEST_EXTRA),$(PLUGINS))) \
		$(foreach p,$(WITH_TEST_EXTRA),-e '$(p)[test]')
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/chatcore demo

# The suite on every core (pytest-xdist, -n auto), then the tests that measure rates or
# event-loop gaps in real time (marked `timing`) alone, so no other test skews their clocks;
# coverage of both runs is combined.
test: $(STAMP)
	$(BIN)/python -m pytest -n auto -m "not timing" --cov --cov-report=
	$(BIN)/python -m pytest -m timing --cov --cov-append --cov-report=term

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

type: $(STAMP)
	$(BIN)/mypy

check: lint type test

# Mutation testing (mutmut), module by module; not part of `make test`. A subset:
#   make mutation MODULES="chatcore/_retry.py chatcore/_cache.py"   (JOBS=2 to use 2 cores)
MODULES ?=
JOBS ?= 1
mutation: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[mutation]'
	$(BIN)/python tools/mutation.py --jobs $(JOBS) $(MODULES)

clean:
	rm -rf $(VENV) .tox .pytest_cache .mypy_cache .ruff_cache .coverage htmlcov build dist
