"""Load tests against the balancer (locust).

- `locustfile.py`: the simulated clients (viewers, catalog browsers, a few
  admins) and the streaming figures (time to first byte, throughput) with the
  pass/fail verdict;
- `system.py`: starts a throwaway system to test (the cluster with its own
  PostgreSQL and Redis, or the demo) and seeds a movie library into it;
- `run.py`: `make loadtest` (`python -m loadtests.run`).

Reports land in `loadtests/reports/` (git-ignored).
"""
