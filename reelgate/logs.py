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

# Every text the patterns above can match contains one of these words, so a line without
# any of them - nearly every access-log line - is checked with one casefold() and four
# substring tests instead of four regex substitutions (about 50x cheaper; the redaction was
# ~12% of a media node's CPU per request in py-spy, see docs/benchmarks.md). casefold()
# also maps the characters re.IGNORECASE equates with these letters (K for k, ſ for s).
def _may_hold_secret(text: str) -> bool:
    folded = text.casefold()
    return "token" in folded or "bearer" in folded or "password" in folded or "eyj" in folded


def redact(text: str) -> str:
    if not _may_hold_secret(text):
        return text
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


class _Formatter(logging.Formatter):
    """Formats the timestamp once per second, not per record: strftime() on every access-log
    line was a visible share of a media node's request (py-spy). Exact, since the format
    shows whole seconds."""

    _stamp: tuple[int, str] = (-1, "")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        second, text = self._stamp
        if int(record.created) != second:
            text = super().formatTime(record, datefmt)
            self._stamp = (int(record.created), text)  # one assignment: thread-safe
        return text


def setup_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(
        _Formatter("%(asctime)s %(levelname)s %(name)s %(message)s", "%Y-%m-%dT%H:%M:%S")
    )
    # The format shows no thread, process or source line: records need not collect them
    # (logging HOWTO, "Optimization" names these switches). current_thread() and the
    # caller lookup (sys._getframe) were ~4% of a media node's request.
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging._srcfile = None  # type: ignore[attr-defined]
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp's own access log would print query strings (tokens): ours replaces it.
    logging.getLogger("aiohttp.access").disabled = True
