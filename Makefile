# The two commands: `make demo` (train the embedded default, print and plot the result)
# and `make test` (lint + the whole test suite). Both install what they need first.
#
# Two environments, because verl 0.9 and TRL 1.x cannot share one (with TRL importable,
# verl's FSDP engine imports a class TRL 1.x removed):
#   .venv       maspo + test tools + TRL: the core suite and the TRL tests
#   .venv-verl  maspo + test tools + verl (no TRL): the verl tests (tests/integrations/test_verl_*)
# `make demo` needs neither: it installs core maspo only into .venv.
VENV ?= .venv
VERL_VENV ?= .venv-verl
BIN := $(VENV)/bin
VERL_BIN := $(VERL_VENV)/bin

.PHONY: install install-verl install-core demo test test-main test-verl lint bench

install-core:
	VENV=$(VENV) bash scripts/install.sh ""

install:
	VENV=$(VENV) bash scripts/install.sh test,trl,trackers

install-verl:
	VENV=$(VERL_VENV) bash scripts/install.sh test,verl

demo: install-core
	$(BIN)/maspo demo

lint: install
	$(BIN)/ruff check maspo tests bench

# Each environment collects only its own integration's test files: the other package is
# absent there on purpose (and MASPO_REQUIRE_INTEGRATIONS=1 turns a missing one into a failure).
VERL_TESTS := tests/integrations/test_verl_*.py

test-main: install
	$(BIN)/python -m pytest -q --ignore-glob='$(VERL_TESTS)'

test-verl: install-verl
	$(VERL_BIN)/python -m pytest -q $(VERL_TESTS)

test: lint test-main test-verl

bench: install
	$(BIN)/python bench/objectives.py
