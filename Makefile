# The two commands: `make demo` (train the embedded default, print and plot the result)
# and `make test` (lint + the whole test suite). Both install what they need first.
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install demo test lint bench

install:
	bash scripts/install.sh test,verl,trl

demo: install
	$(BIN)/maspo demo

lint: install
	$(BIN)/ruff check maspo tests bench

test: install lint
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python bench/objectives.py
