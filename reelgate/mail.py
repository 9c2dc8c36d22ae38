"""The mail port: send one `EmailMessage`, over SMTP or into a directory.

`SmtpMailer` speaks SMTP through aiosmtplib to the server of
`REELGATE_SMTP_URL`:

- `smtp://host[:port]` (port 25), plain SMTP;
- `smtp://host:587?starttls=true`, upgraded with STARTTLS (required, not
  opportunistic: a server that does not offer it is an error);
- `smtps://host[:port]` (port 465), implicit TLS;
- `user:password@` before the host logs in (percent-encode reserved characters).

`DirectoryMailer` serves the demo (empty `REELGATE_SMTP_URL`): every message
becomes one `.eml` file under `var/mail`, written atomically so a reader never
sees half a message.

The URL may hold a password: it is parsed once, and neither the password nor
the raw URL ever appears in a log line, an exception message or a repr.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
import uuid
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qsl, unquote, urlsplit

import aiosmtplib

from reelgate.config import Settings
from reelgate.db import utcnow

log = logging.getLogger("reelgate.mail")

_DEFAULT_PORTS = {"smtp": 25, "smtps": 465}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class Mailer(Protocol):
    async def send(self, message: EmailMessage) -> None:
        """Hand the message over for delivery; raise if it was not accepted."""
        ...


@dataclass(frozen=True)
class SmtpTarget:
    host: str
    port: int
    use_tls: bool = False
    start_tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    def describe(self) -> str:
        """Where mail goes, for logs: never the credentials."""
        scheme = "smtps" if self.use_tls else "smtp"
        suffix = "?starttls=true" if self.start_tls else ""
        return f"{scheme}://{self.host}:{self.port}{suffix}"


def parse_smtp_url(url: str) -> SmtpTarget:
    """Parse `REELGATE_SMTP_URL`. Errors name the problem, never echo the URL."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise ValueError("REELGATE_SMTP_URL is not a valid URL (check the port)") from None
    if parts.scheme not in _DEFAULT_PORTS:
        raise ValueError("REELGATE_SMTP_URL must start with smtp:// or smtps://")
    if not parts.hostname:
        raise ValueError("REELGATE_SMTP_URL has no host")
    if parts.path not in ("", "/"):
        raise ValueError("REELGATE_SMTP_URL takes no path")
    start_tls = False
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key != "starttls" or value.lower() not in _TRUE | _FALSE:
            raise ValueError("REELGATE_SMTP_URL accepts only the query option starttls=true|false")
        start_tls = value.lower() in _TRUE
    use_tls = parts.scheme == "smtps"
    if use_tls and start_tls:
        raise ValueError("REELGATE_SMTP_URL: smtps:// is already TLS; drop starttls=true")
    return SmtpTarget(
        host=parts.hostname,
        port=port or _DEFAULT_PORTS[parts.scheme],
        use_tls=use_tls,
        start_tls=start_tls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
    )


class SmtpMailer:
    """One SMTP connection per message: notices are rare, and a fresh
    connection never inherits a half-broken session from the last one."""

    def __init__(self, url: str, *, timeout_s: float = 30.0) -> None:
        self.target = parse_smtp_url(url)
        self.timeout_s = timeout_s
        if self.target.username and not (self.target.use_tls or self.target.start_tls):
            log.warning(
                "SMTP credentials for %s would travel unencrypted; use smtps:// or ?starttls=true",
                self.target.describe(),
            )

    def __repr__(self) -> str:
        return f"SmtpMailer({self.target.describe()})"

    async def send(self, message: EmailMessage) -> None:
        target = self.target
        await aiosmtplib.send(
            message,
            hostname=target.host,
            port=target.port,
            username=target.username,
            password=target.password,
            use_tls=target.use_tls,
            start_tls=target.start_tls,
            timeout=self.timeout_s,
        )


class DirectoryMailer:
    """Writes each message to `<path>/<UTC timestamp>-<random>.eml`."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"DirectoryMailer({str(self.path)!r})"

    async def send(self, message: EmailMessage) -> None:
        await asyncio.to_thread(self._write, message.as_bytes())

    def _write(self, raw: bytes) -> Path:
        self.path.mkdir(parents=True, exist_ok=True)
        name = f"{utcnow():%Y%m%dT%H%M%S.%fZ}-{uuid.uuid4().hex[:12]}.eml"
        # Write beside the target, then rename: readers see all of it or nothing.
        fd, temporary = tempfile.mkstemp(dir=self.path, prefix=".", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(raw)
                handle.flush()
                os.fsync(handle.fileno())
            final = self.path / name
            os.replace(temporary, final)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return final


def open_mailer(settings: Settings) -> Mailer:
    """SMTP when `REELGATE_SMTP_URL` is set, else `.eml` files under `var/mail`."""
    if settings.smtp_url.strip():
        mailer: Mailer = SmtpMailer(settings.smtp_url)
    else:
        mailer = DirectoryMailer(settings.resolved_var_dir / "mail")
    log.info("mail goes to %r", mailer)
    return mailer
