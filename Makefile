# The two commands of the README: `make run` and `make test`. Both set everything up first.
SHELL := /bin/bash
VENV := .venv/bin
DATABASES := guardian guardian_test

.PHONY: run test bench soak setup services migrate jurisdictions

setup:
	@bash ops/setup.sh

services: setup
	@bash ops/services.sh $(DATABASES)

migrate: services
	@$(VENV)/guardian db upgrade

# The demo jurisdictions (Taipei City's precincts), so an SOS anywhere in Taipei is routed.
jurisdictions: migrate
	@$(VENV)/guardian jurisdictions demo

run: jurisdictions
	@ulimit -n "$$(ulimit -Hn)" 2>/dev/null || true; exec $(VENV)/guardian serve

test: services
	@ulimit -n "$$(ulimit -Hn)" 2>/dev/null || true; $(VENV)/python -m pytest $(PYTEST_ARGS)

# The benchmark writes millions of rows: it gets a fresh database of its own each run.
BENCH_DATABASE_URL := postgresql+asyncpg://guardian:guardian@127.0.0.1:5432/guardian_bench
# And one with the history unpartitioned (the revision before 0010), for the ping path's cost before and after.
BENCH_FLAT_DATABASE_URL := postgresql+asyncpg://guardian:guardian@127.0.0.1:5432/guardian_bench_flat
BENCH_FLAT_REVISION ?= 0009
bench: services
	@PGPASSWORD=guardian psql -X -q -h 127.0.0.1 -U guardian -d postgres -c "DROP DATABASE IF EXISTS guardian_bench"
	@PGPASSWORD=guardian psql -X -q -h 127.0.0.1 -U guardian -d postgres -c "DROP DATABASE IF EXISTS guardian_bench_flat"
	@bash ops/services.sh guardian_bench guardian_bench_flat
	@GUARDIAN_DATABASE_URL=$(BENCH_DATABASE_URL) $(VENV)/guardian db upgrade
	@GUARDIAN_DATABASE_URL=$(BENCH_DATABASE_URL) $(VENV)/guardian jurisdictions demo
	@GUARDIAN_DATABASE_URL=$(BENCH_FLAT_DATABASE_URL) $(VENV)/guardian db upgrade $(BENCH_FLAT_REVISION)
	@GUARDIAN_DATABASE_URL=$(BENCH_FLAT_DATABASE_URL) $(VENV)/guardian jurisdictions demo
	@ulimit -n "$$(ulimit -Hn)" 2>/dev/null || true; \
	  GUARDIAN_BENCH_DATABASE_URL=$(BENCH_DATABASE_URL) GUARDIAN_BENCH_FLAT_DATABASE_URL=$(BENCH_FLAT_DATABASE_URL) \
	  $(VENV)/python -m load bench $(BENCH_ARGS)

# The fault and fuzz tests, run long: phones with offline buffers through PostgreSQL crashes, killed
# backends and stalled flushes, and the wire fuzzed harder. Prints a `soak ...` line per fault run
# (pings acknowledged, faults injected, lost / gap / duplicate counts).
SOAK_S ?= 120
SOAK_EXAMPLES ?= 2000
soak: services
	@set -o pipefail; ulimit -n "$$(ulimit -Hn)" 2>/dev/null || true; \
	  GUARDIAN_SOAK_S=$(SOAK_S) GUARDIAN_FUZZ_EXAMPLES=$(SOAK_EXAMPLES) $(VENV)/python -m pytest \
	  tests/test_ingest_faults.py tests/test_sos_faults.py tests/test_fuzz.py -s -q --timeout=0 -p no:cacheprovider \
	  | grep -oE '(soak|fuzz) [a-zA-Z].*|[0-9]+ (passed|failed).*'
