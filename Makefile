# Warden: `make run` serves the product on an embedded default (SQLite, no Redis);
# `make test` runs lint and the whole test suite. See README.md.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
PORT   ?= 8000
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: run test lint fmt install install-dev migrate bootstrap clean help

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.runtime-installed: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev-installed: requirements.txt requirements-dev.txt sdk/pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt -e ./sdk
	touch $@

install: $(VENV)/.runtime-installed ## Create .venv and install runtime requirements

install-dev: $(VENV)/.dev-installed ## Install runtime, test and lint requirements

migrate: install ## Apply database migrations
	DEBUG=$${DEBUG:-true} $(BIN)/python manage.py migrate --noinput

run: install ## Install, migrate, seed a demo org, run web + worker + beat on 127.0.0.1:$(PORT)
	DEBUG=$${DEBUG:-true} PORT=$(PORT) $(BIN)/python scripts/run_all.py

test: install-dev ## Lint and run the whole test suite (server, then the SDK package)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest
	# The SDK's own tests run in a process of their own: ardenpy, which the server tests
	# drive, patches LangChain's BaseTool process-wide when configured.
	cd sdk && ../$(BIN)/python -m pytest -p no:django -p no:cacheprovider

lint: install-dev ## ruff check + format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

fmt: install-dev ## Apply ruff fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean: ## Remove the virtualenv and local data (var/)
	rm -rf $(VENV) var
