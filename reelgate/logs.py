"""Logging set-up: one line per event, and nothing secret in any of them.

Handlers already log paths without query strings; the filter below is the
second line of defence for anything else that might carry a credential
(a token in a URL, an Authorization header, a password field)."""

from __future__ import annotations

import logging
import re

_SECRETS = [
    (re.compile(r"(token=)[^&\s\"']+", re.IGNORECASE), r"\1[redacted]"),
    (re.compile(r"(Bearer\s+)[A-Za-z0-9._~+/=-]+", re.IGNORECASE), r"\1[redacted]"),
    (re.compile(r"(\"?(?:password|refresh_token|access_token)\"?\s*[:=]\s*\"?)[^\"&\s,}]+", re.IGNORECASE), r"\1[redacted]"),
    (re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+"), "[redacted-jwt]"),
]


def redact(text: str) -> str:
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


# Loggers that see request lines or request errors. A filter on a logger runs
# before any handler, so even a handler we did not install (a test runner's, an
# embedding application's) never receives the secret.
REQUEST_LOGGERS = (
    "aiohttp.access", "aiohttp.server", "aiohttp.web", "aiohttp.client",
    "reelgate.access", "reelgate.errors", "reelgate.media",
)


def install_redaction() -> None:
    for name in REQUEST_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) for f in logger.filters):
            logger.addFilter(RedactingFilter())


def setup_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s", "%Y-%m-%dT%H:%M:%S")
    )
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp's own access log would print query strings (tokens): ours replaces it.
    logging.getLogger("aiohttp.access").disabled = True
