# Reelgate: every set-up step lives here, so a fresh clone needs only `make test`
# (or `make demo`). See README.md.
.PHONY: test demo cluster venv system-deps bench lint clean

VENV := .venv
PYTEST_ARGS ?=

venv:
	@bash scripts/bootstrap-venv.sh

system-deps:
	@bash scripts/install-system-deps.sh

test: system-deps venv
	$(VENV)/bin/pytest $(PYTEST_ARGS)

# The whole system in one process on port 8080 (REELGATE_PORT), seeded with demo data.
demo: system-deps venv
	$(VENV)/bin/reelgate demo

# Every node as a process behind nginx; needs REELGATE_DATABASE_URL and REELGATE_REDIS_URL.
cluster: system-deps venv
	$(VENV)/bin/reelgate migrate && $(VENV)/bin/reelgate cluster

bench: system-deps venv
	$(VENV)/bin/python -m benchmarks.entitlement_check

lint: venv
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis tests/artifacts
