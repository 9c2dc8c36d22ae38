"""Prometheus metrics, defined once per process (the demo mounts every app in
one process, so metrics carry a `service` label instead of being redefined).
Names follow `reelgate_<what>_<unit>`."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

HTTP_REQUESTS = Counter(
    "reelgate_http_requests_total",
    "HTTP requests answered, by route template and status",
    ["service", "route", "method", "status"],
)
HTTP_DURATION = Histogram(
    "reelgate_http_request_duration_seconds",
    "Time to produce a response (headers and body for ordinary routes)",
    ["service", "route", "method"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
ENTITLEMENT_DECISIONS = Counter(
    "reelgate_entitlement_decisions_total",
    "Entitlement decisions, by who decided and the reason",
    ["service", "reason"],
)
CACHE_LOOKUPS = Counter(
    "reelgate_cache_lookups_total",
    "Cache lookups by layer (local, redis, origin) and result (hit, miss)",
    ["service", "cache", "layer", "result"],
)
ENTITLEMENT_DEGRADED = Counter(
    "reelgate_entitlement_degraded_total",
    "Checks answered while Redis or the entitlements node was unreachable",
    ["service", "outcome"],  # outcome: stale_served, failed_closed
)
EVENTS_PUBLISHED = Counter(
    "reelgate_events_published_total", "Events written to the event stream", ["service", "type"]
)
EVENTS_HANDLED = Counter(
    "reelgate_events_handled_total",
    "Events handled by a consumer, by outcome (ok, retry, dead_letter)",
    ["service", "group", "type", "outcome"],
)
LOGIN_ATTEMPTS = Counter(
    "reelgate_login_attempts_total", "Login attempts by outcome", ["outcome"]
)
ACTIVE_STREAMS = Gauge(
    "reelgate_active_streams", "Responses currently streaming a body", ["service"]
)
BYTES_SERVED = Counter("reelgate_stream_bytes_total", "Body bytes sent by /stream", ["service"])
RANGE_BYTES = Histogram(
    "reelgate_stream_range_bytes",
    "Size of 206 responses",
    buckets=(1024, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864, 268435456),
)
TIME_TO_FIRST_BYTE = Histogram(
    "reelgate_stream_time_to_first_byte_seconds",
    "From request arrival to the status line being sent",
    ["service", "status"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
