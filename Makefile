# The two commands a newcomer needs: `make run` and `make test`. See README.md.
.DEFAULT_GOAL := help
SHELL := /bin/bash

# Django 6 needs Python 3.12+: take the newest interpreter found (PATH, then pyenv), else python3
# (on 3.11 pip installs Django 5.2 LTS, which the code also supports).
PYTHON ?= $(shell for p in python3.14 python3.13 python3.12 $$HOME/.pyenv/versions/3.1[234]*/bin/python3 /root/.pyenv/versions/3.1[234]*/bin/python3 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys, venv; sys.exit(sys.version_info < (3, 11))' 2>/dev/null && { command -v $$p; break; }; done)
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: help install run test lint editor bench-pages bench-broadcast bench-tracking bench-sequences bench-sequence-page bench-automations bench-editor-page bench-api clean

help:
	@echo "make run    start the product (web, worker, beat, mail sink) on embedded or configured services"
	@echo "make test   run the whole test suite against real PostgreSQL and Redis"
	@echo "make lint   ruff check and format check"
	@echo "make editor   rebuild the visual email editor (static/editor/) from frontend/editor/ (needs Node 20+)"
	@echo "make bench-pages   the subscriber pages benchmark (ARGS=\"--subscribers 200000\" for a quick look)"
	@echo "make bench-broadcast   the send pipeline benchmark (ARGS=\"--transport smtp --recipients 100000\")"
	@echo "make bench-tracking   the open/click endpoints and drain benchmark (ARGS=\"--duration 30\")"
	@echo "make bench-sequences   a sequence to N subscribers beside a broadcast (ARGS=\"--subscribers 1000000\")"
	@echo "make bench-sequence-page   the sequence page and its reports at N subscriptions (ARGS=\"--subscriptions 1000000\")"
	@echo "make bench-automations   a bulk tag of N subscribers through a rule and an automation (ARGS=\"--subscribers 20000\")"
	@echo "make bench-api   the v4 API: the subscriber list at 2M beside 20k, creates beside a do-nothing view (ARGS=\"--parts list --subscribers 200000\")"
	@echo "make bench-editor-page   the broadcast editor's load time in Chromium with a visual document (ARGS=\"--blocks 20\")"
	@echo "make clean  delete .venv, .local (embedded databases, captured mail) and staticfiles"
	@echo "Options: make run PORT=8001 MAIL_SINK_PORT=1026; make test ARGS=\"-k import -x\""

$(VENV)/.installed: pyproject.toml
	@test -n "$(PYTHON)" || { echo "Python 3.11+ not found; set PYTHON=/path/to/python3"; exit 1; }
	@echo "Creating $(VENV) with $(PYTHON) ($$($(PYTHON) --version))"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[embedded,dev]"
	@touch $@

install: $(VENV)/.installed

run: install
	$(PY) -m convertkit.dev.devstack run

test: install
	$(PY) -m convertkit.dev.devstack test $(ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# The bundle is committed: `make run` needs only Python. Rebuild it after changing frontend/editor/.
editor:
	cd frontend/editor && npm ci --no-audit --no-fund && npm run build

bench-pages: install
	$(PY) -m convertkit.dev.devstack bench bench/pages.py $(ARGS)

bench-broadcast: install
	$(PY) -m convertkit.dev.devstack bench bench/broadcast.py $(ARGS)

bench-tracking: install
	$(PY) -m convertkit.dev.devstack bench bench/tracking.py $(ARGS)

bench-sequences: install
	$(PY) -m convertkit.dev.devstack bench bench/sequences.py $(ARGS)

bench-sequence-page: install
	$(PY) -m convertkit.dev.devstack bench bench/sequence_page.py $(ARGS)

bench-automations: install
	$(PY) -m convertkit.dev.devstack bench bench/automations.py $(ARGS)

bench-editor-page: install
	$(PY) -m convertkit.dev.devstack bench bench/editor_page.py $(ARGS)

bench-api: install
	$(PY) -m convertkit.dev.devstack bench bench/api.py $(ARGS)

clean:
	rm -rf $(VENV) .local staticfiles
