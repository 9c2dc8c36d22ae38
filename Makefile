# Reelgate: every set-up step lives here, so a fresh clone needs only `make test`
# (or `make demo`). See README.md.
.PHONY: test demo cluster venv system-deps bench loadtest lint clean fuzz

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

# Timings only, never pass/fail; see docs/benchmarks.md. benchmarks.media, .balancer and .scaling drive load with
# wrk (Debian package `wrk`), installed here when missing and we are root.
bench: system-deps venv
	@command -v wrk >/dev/null || [ "$$(id -u)" != 0 ] || \
		(apt-get update -q && apt-get install -y -q --no-install-recommends wrk)
	$(VENV)/bin/python -m benchmarks.entitlement_check
	$(VENV)/bin/python -m benchmarks.media
	$(VENV)/bin/python -m benchmarks.balancer
	@mkdir -p var/bench
	$(VENV)/bin/python -m benchmarks.scaling --json var/bench/scaling.json
	$(VENV)/bin/python -m benchmarks.plots scaling var/bench/scaling.json var/bench/scaling.png
	@if [ -f benchmarks/catalog.py ]; then $(VENV)/bin/python -m benchmarks.catalog; fi

# locust, headless, through the balancer: against LOADTEST_HOST, or a throwaway cluster
# (demo if the cluster cannot start). LOADTEST_USERS, LOADTEST_SPAWN_RATE, LOADTEST_DURATION;
# fails past LOADTEST_MAX_FAILURE_RATIO / LOADTEST_MAX_TTFB_P95_MS. Reports: loadtests/reports/.
loadtest: system-deps venv
	$(VENV)/bin/python -m loadtests.run

# Long schema-driven fuzzing of every route of every node (schemathesis, tests/openapi):
# FUZZ_EXAMPLES examples per operation, role and node, new ones on every run
# (`make test` runs the same test with 15, always the same ones).
FUZZ_EXAMPLES ?= 300
fuzz: system-deps venv
	REELGATE_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) REELGATE_FUZZ_RANDOM=1 \
		$(VENV)/bin/pytest tests/openapi/test_fuzz.py -q --timeout=0 $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis tests/artifacts
