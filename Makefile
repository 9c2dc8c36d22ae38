# Reelgate: every set-up step lives here, so a fresh clone needs only `make test`
# (or `make demo`). See README.md.
.PHONY: test venv system-deps bench lint clean

VENV := .venv
PYTEST_ARGS ?=

venv:
	@bash scripts/bootstrap-venv.sh

system-deps:
	@bash scripts/install-system-deps.sh

test: system-deps venv
	$(VENV)/bin/pytest $(PYTEST_ARGS)

bench: system-deps venv
	$(VENV)/bin/python -m benchmarks.entitlement_check

lint: venv
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis tests/artifacts
