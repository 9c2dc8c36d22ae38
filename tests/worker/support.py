"""Helpers of the worker tests: a real SMTP server, rows, stream waits."""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import email.policy
import logging
import threading
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

import redis.asyncio as redis_async
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from entitlements.models import Plan, Subscription, User
from reelgate.db import Database, utcnow
from reelgate.events import STREAM, Event, publish
from tests.harness.ports import free_port


@dataclass(frozen=True)
class Delivered:
    rcpt_tos: list[str]
    message: EmailMessage
    login: str | None


class SmtpInbox:
    """An aiosmtpd server on a free port that keeps what it accepts.

    `reject_next(n)` answers the next n DATA commands with a 451 (a temporary
    failure, as a greylisting or overloaded server does); `refuse(address)`
    answers RCPT TO for the address with a 550 (no such mailbox)."""

    def __init__(self, credentials: tuple[str, str] | None = None) -> None:
        self._lock = threading.Lock()
        self._messages: list[Delivered] = []
        self._rejections_left = 0
        self._refused: set[str] = set()
        self.rejected = 0
        self.credentials = credentials
        self.port = free_port()
        kwargs: dict[str, Any] = {}
        if credentials is not None:
            kwargs.update(authenticator=self._authenticate, auth_require_tls=False)
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port, **kwargs)
        # aiosmtpd logs each session at INFO from its own thread, sometimes after pytest
        # has closed the captured stream ("Logging error ... I/O operation on closed
        # file" at teardown); its warnings and errors still show.
        logging.getLogger("mail.log").setLevel(logging.WARNING)

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()

    def reject_next(self, count: int) -> None:
        with self._lock:
            self._rejections_left = count

    @property
    def messages(self) -> list[Delivered]:
        with self._lock:
            return list(self._messages)

    def to(self, address: str) -> list[Delivered]:
        return [m for m in self.messages if address in m.rcpt_tos]

    def _authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str,
                      auth_data: Any) -> AuthResult:
        assert self.credentials is not None
        if isinstance(auth_data, LoginPassword):
            login, password = auth_data.login.decode(), auth_data.password.decode()
            if (login, password) == self.credentials:
                return AuthResult(success=True, auth_data=auth_data)
        return AuthResult(success=False, handled=False)

    def refuse(self, address: str) -> None:
        """Answer RCPT TO for this address with a permanent 550."""
        with self._lock:
            self._refused.add(address)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any,  # noqa: N802
                          address: str, rcpt_options: list[str]) -> str:
        with self._lock:
            if address in self._refused:
                return "550 5.1.1 No such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        with self._lock:
            if self._rejections_left > 0:
                self._rejections_left -= 1
                self.rejected += 1
                return "451 4.3.0 Try again later"
            message = email.message_from_bytes(envelope.content, policy=email.policy.default)
            auth = session.auth_data
            login = auth.login.decode() if isinstance(auth, LoginPassword) else None
            delivered = Delivered(list(envelope.rcpt_tos), message, login)  # type: ignore[arg-type]
            self._messages.append(delivered)
        return "250 2.0.0 Message accepted for delivery"


# ---------------------------------------------------------------- rows


async def add_plan(db: Database, name: str = "Drama", genres: list[str] | None = None,
                   *, deleted: bool = False) -> uuid.UUID:
    async with db.transaction() as session:
        plan = Plan(name=name, price_cents=999, currency="EUR", max_streams=2, max_height=1080,
                    genres=genres if genres is not None else ["drama"],
                    deleted_at=utcnow() if deleted else None)
        session.add(plan)
        await session.flush()
        return plan.id


@dataclass(frozen=True)
class Person:
    id: uuid.UUID
    email: str
    name: str


async def add_subscriber(db: Database, plan_id: uuid.UUID, *, status: str = "active",
                         period_end: dt.datetime | None = None, deleted: bool = False,
                         name: str = "Viewer") -> Person:
    """A viewer with one subscription to the plan (paid for 30 days by default)."""
    email_address = f"viewer-{uuid.uuid4().hex[:10]}@example.com"
    async with db.transaction() as session:
        user = User(email=email_address, name=name, role="viewer", password_hash="x",
                    deleted_at=utcnow() if deleted else None)
        session.add(user)
        await session.flush()
        end = period_end if period_end is not None else utcnow() + dt.timedelta(days=30)
        session.add(Subscription(user_id=user.id, plan_id=plan_id, status=status,
                                 current_period_end=None if status == "pending_payment" else end))
        return Person(user.id, email_address, name)


# ---------------------------------------------------------------- events


def movie_event(kind: str = "movie.created", movie_id: uuid.UUID | None = None, *,
                genres: list[str] | None = None, status: str = "ready", title: str = "A Movie",
                description: str = "") -> Event:
    """The event the catalog would publish (its `data` is the movie's JSON)."""
    movie_id = movie_id or uuid.uuid4()
    return Event(type=kind, data={
        "id": str(movie_id), "title": title, "description": description,
        "genres": genres if genres is not None else ["drama"], "status": status,
        "age_rating": "PG", "media": None, "actors": [], "deleted_at": None,
    })


async def publish_raw(client: redis_async.Redis, fields: dict[str, str]) -> str:
    return str(await client.xadd(STREAM, fields))


def _entry_key(entry_id: str) -> tuple[int, int]:
    millis, _, seq = entry_id.partition("-")
    return int(millis), int(seq or 0)


async def wait_for(
    check: Callable[[], Awaitable[bool]], what: str, timeout_s: float = 15.0
) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def drained(client: redis_async.Redis, group: str, entry_id: str,
                  timeout_s: float = 15.0) -> None:
    """Wait until `group` has read up to `entry_id` and settled everything it
    read (acknowledged after handling, or parked on the dead-letter stream)."""

    async def settled() -> bool:
        for info in await client.xinfo_groups(STREAM):
            if info["name"] == group:
                last = str(info["last-delivered-id"])
                return _entry_key(last) >= _entry_key(entry_id) and int(info["pending"]) == 0
        return False

    await wait_for(settled, f"group {group} to settle {entry_id}", timeout_s)


async def publish_and_settle(client: redis_async.Redis, event: Event,
                             groups: tuple[str, ...] = ("entitlements", "notifications")) -> str:
    entry_id = await publish(client, event)
    for group in groups:
        await drained(client, group, entry_id)
    return entry_id
