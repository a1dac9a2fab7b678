# The two commands of the README: `make run` and `make test`. Both set everything up first.
SHELL := /bin/bash
VENV := .venv/bin
DATABASES := guardian guardian_test

.PHONY: run test bench setup services migrate

setup:
	@bash ops/setup.sh

services: setup
	@bash ops/services.sh $(DATABASES)

migrate: services
	@$(VENV)/guardian db upgrade

run: migrate
	@ulimit -n 65536 2>/dev/null || true; exec $(VENV)/guardian serve

test: services
	@ulimit -n 65536 2>/dev/null || true; $(VENV)/python -m pytest $(PYTEST_ARGS)

bench: migrate
	@ulimit -n 65536 2>/dev/null || true; $(VENV)/python -m load bench $(BENCH_ARGS)
