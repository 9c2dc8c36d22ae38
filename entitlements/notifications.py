"""The "new movie" e-mail: when a movie becomes ready, tell every subscriber
whose plan includes it, once.

Runs as its own consumer group ("notifications") next to the projection
listener ("entitlements"). Both read the same events independently, so this
listener may see a movie before the projection has joined it to its plans.
It therefore brings a projection that is behind up to this event itself,
with the very same idempotent `service.project_movie_event`, in the
transaction that then looks for recipients (see `ensure_projected`).

Exactly one mail per user and movie, even on redelivery, is the job of the
`movie_notifications` table: for each recipient, one transaction inserts the
(user, movie) row (the claim), sends the mail and commits. A failed send rolls
the claim back, so a retry of the event sends it then; a row that is already
there (another delivery got there first, or is sending right now: the
insert waits for its commit) means nothing to do. One window remains: if the
process dies after the SMTP server accepted the mail but before the commit,
the retry sends that one mail again (at least once, never zero). The
Message-ID is the same for every attempt, which lets mail clients fold such a
duplicate away.
"""

from __future__ import annotations

import datetime as dt
import html
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from typing import Any

from sqlalchemy import and_, exists, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from entitlements import service
from entitlements.models import (
    ENTITLING_STATUSES,
    CatalogMovie,
    MovieNotification,
    PlanMovie,
    Subscription,
    User,
)
from reelgate.config import Settings
from reelgate.db import Database, utcnow
from reelgate.events import Event
from reelgate.mail import Mailer

log = logging.getLogger("reelgate.entitlements.notifications")

DESCRIPTION_CHARS = 280
Invalidate = Callable[..., Awaitable[None]]


class NotificationsFailed(RuntimeError):
    """Some notices of an event were not sent; the event is retried for them."""


@dataclass(frozen=True)
class Recipient:
    user_id: uuid.UUID
    email: str
    name: str


@dataclass(frozen=True)
class MovieNotice:
    movie_id: uuid.UUID
    title: str
    description: str
    link: str


def announces_ready_movie(event: Event) -> bool:
    """A movie became watchable: its media is in, or it was created ready."""
    if event.type == "movie.media_ready":
        return True
    return event.type == "movie.created" and event.data.get("status") == "ready"


class MovieNotifier:
    """Consumer-group handler. Idempotent per (user, movie)."""

    def __init__(
        self,
        db: Database,
        mailer: Mailer,
        settings: Settings,
        *,
        invalidate: Invalidate | None = None,
    ) -> None:
        self.db = db
        self.mailer = mailer
        self.sender = settings.mail_from
        self.public_url = settings.public_url.rstrip("/")
        self.message_id_domain = _domain_of(settings.mail_from)
        self.invalidate = invalidate

    async def handle(self, event: Event) -> None:
        if not announces_ready_movie(event):
            return
        movie_id = uuid.UUID(str(event.data["id"]))
        notice, recipients = await self._prepare(event, movie_id)
        if notice is None:
            return
        failed: list[BaseException] = []
        for recipient in recipients:
            try:
                await self._notify(recipient, notice)
            except Exception as exc:  # one bad address must not hold up the others
                log.warning(
                    "new-movie mail for movie %s to user %s failed: %s",
                    movie_id, recipient.user_id, type(exc).__name__,
                )
                failed.append(exc)
        if failed:
            raise NotificationsFailed(
                f"{len(failed)} of {len(recipients)} new-movie mails for {movie_id} not sent"
            ) from failed[0]

    async def _prepare(
        self, event: Event, movie_id: uuid.UUID
    ) -> tuple[MovieNotice | None, list[Recipient]]:
        try:
            return await self._prepare_once(event, movie_id)
        except IntegrityError:
            # The projection listener inserted the same movie or plan joins at
            # the same moment; they are there now, so one more read settles it.
            return await self._prepare_once(event, movie_id)

    async def _prepare_once(
        self, event: Event, movie_id: uuid.UUID
    ) -> tuple[MovieNotice | None, list[Recipient]]:
        async with self.db.transaction() as session:
            movie, projected = await ensure_projected(session, event, movie_id)
            if movie.deleted or movie.status != "ready":
                return None, []
            recipients = await recipients_of(session, movie_id, utcnow())
        if projected and self.invalidate is not None:
            await self.invalidate(movies=[movie_id])
        title = str(event.data.get("title") or movie.title)
        description = event.data.get("description")
        notice = MovieNotice(
            movie_id=movie_id,
            title=_one_line(title),
            description=_shorten(description if isinstance(description, str) else ""),
            link=f"{self.public_url}/#/movies/{movie_id}",
        )
        return notice, recipients

    async def _notify(self, recipient: Recipient, notice: MovieNotice) -> bool:
        """Claim, send, commit. Returns False when someone else already did."""
        async with self.db.transaction() as session:
            claim = _insert_ignoring_duplicates(
                session, user_id=recipient.user_id, movie_id=notice.movie_id
            )
            claimed = await session.scalar(claim)
            if claimed is None:
                return False
            await self.mailer.send(self.message(recipient, notice))
        log.info("new-movie mail for movie %s sent to user %s", notice.movie_id, recipient.user_id)
        return True

    def message(self, recipient: Recipient, notice: MovieNotice) -> EmailMessage:
        message = EmailMessage()
        message["Subject"] = f"New on Reelgate: {notice.title}"
        message["From"] = self.sender
        message["To"] = Address(display_name=_one_line(recipient.name), addr_spec=recipient.email)
        message["Date"] = format_datetime(utcnow())
        # The same id on every attempt: a duplicate from the at-least-once
        # window is recognisable as one.
        message["Message-ID"] = (
            f"<movie-{notice.movie_id}.user-{recipient.user_id}@{self.message_id_domain}>"
        )
        message.set_content(_text_body(recipient, notice))
        message.add_alternative(_html_body(recipient, notice), subtype="html")
        return message


async def ensure_projected(
    session: AsyncSession, event: Event, movie_id: uuid.UUID
) -> tuple[CatalogMovie, bool]:
    """The projected movie, brought up to this event if the projection has
    not reached it yet. Returns the movie and whether this call projected it.

    Only a projection that is behind is brought forward, with the projection
    listener's own `service.project_movie_event`:

    - no row yet: the projection has not seen the movie's creation, so this
      event's movie is projected as created first (row and plan joins by genre,
      which commit together), then the event itself;
    - a row that is not ready yet (the `movie.media_ready` is still on its way
      to the projection listener): the event is applied.

    A projection that is already ready (or deleted) is left alone: replaying an
    older event over it could undo a later `movie.updated`.
    """
    movie = await session.get(CatalogMovie, movie_id)
    if movie is not None and (movie.status == "ready" or movie.deleted):
        return movie, False
    if movie is None and event.type != "movie.created":
        await service.project_movie_event(session, "movie.created", event.data)
    await service.project_movie_event(session, event.type, event.data)
    movie = await session.get(CatalogMovie, movie_id)
    assert movie is not None  # project_movie_event creates it
    return movie, True


async def recipients_of(
    session: AsyncSession, movie_id: uuid.UUID, now: dt.datetime
) -> list[Recipient]:
    """Users entitled to the movie by their plan who have not been told yet:
    an active or trialing subscription whose period has not ended, and an
    account that is not deleted (the rules of `service.decide`)."""
    already_told = exists().where(
        MovieNotification.user_id == User.id, MovieNotification.movie_id == movie_id
    )
    rows = await session.execute(
        select(User.id, User.email, User.name)
        .join(Subscription, Subscription.user_id == User.id)
        .join(
            PlanMovie,
            and_(PlanMovie.plan_id == Subscription.plan_id, PlanMovie.movie_id == movie_id),
        )
        .where(
            User.deleted_at.is_(None),
            Subscription.status.in_(ENTITLING_STATUSES),
            Subscription.current_period_end > now,
            ~already_told,
        )
        .distinct()
        .order_by(User.id)
    )
    return [Recipient(user_id=row.id, email=row.email, name=row.name) for row in rows]


def _insert_ignoring_duplicates(session: AsyncSession, **values: Any) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING RETURNING user_id (None when present)."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    return (
        dialect.insert(MovieNotification)
        .values(sent_at=utcnow(), **values)
        .on_conflict_do_nothing()
        .returning(MovieNotification.user_id)
    )


def _domain_of(mail_from: str) -> str:
    address = parseaddr(mail_from)[1]
    return address.rpartition("@")[2] or "reelgate.local"


def _one_line(text: str) -> str:
    """Header-safe: no line breaks, no runs of whitespace."""
    return " ".join(text.split())


def _shorten(text: str) -> str:
    text = " ".join(text.split())
    if len(text) <= DESCRIPTION_CHARS:
        return text
    cut = text[:DESCRIPTION_CHARS].rsplit(" ", 1)[0]
    return re.sub(r"[\s.,;:!?-]+$", "", cut) + "…"


def _text_body(recipient: Recipient, notice: MovieNotice) -> str:
    lines = [
        f"Hello {recipient.name},",
        "",
        f"\"{notice.title}\" is now available on Reelgate.",
        "",
    ]
    if notice.description:
        lines += [notice.description, ""]
    lines += [
        f"Watch it: {notice.link}",
        "",
        "You receive this e-mail because your subscription includes this movie.",
    ]
    return "\n".join(lines) + "\n"


def _html_body(recipient: Recipient, notice: MovieNotice) -> str:
    title = html.escape(notice.title)
    link = html.escape(notice.link, quote=True)
    description = (
        f"<p>{html.escape(notice.description)}</p>\n" if notice.description else ""
    )
    return (
        "<!doctype html>\n<html><body>\n"
        f"<p>Hello {html.escape(recipient.name)},</p>\n"
        f"<p><strong>{title}</strong> is now available on Reelgate.</p>\n"
        f"{description}"
        f'<p><a href="{link}">Watch {title}</a></p>\n'
        "<p><small>You receive this e-mail because your subscription includes this movie."
        "</small></p>\n"
        "</body></html>\n"
    )
