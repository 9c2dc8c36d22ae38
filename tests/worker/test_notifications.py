"""The new-movie e-mail, end to end: events on the real Redis stream, the
worker's listeners, PostgreSQL, and a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from email.message import EmailMessage

import redis.asyncio as redis_async
from sqlalchemy import select

from entitlements.events import ProjectionListener
from entitlements.models import CatalogMovie, MovieNotification, PlanMovie
from entitlements.notifications import MovieNotifier
from entitlements.worker import NOTIFICATIONS_GROUP, ListenerResources
from reelgate.config import Settings
from reelgate.db import Database, utcnow
from reelgate.events import DEAD_LETTER_STREAM, STREAM, publish
from reelgate.kv import RedisKV
from reelgate.mail import SmtpMailer
from tests.worker.conftest import PUBLIC_URL, StartWorker
from tests.worker.support import (
    SmtpInbox,
    add_plan,
    add_subscriber,
    drained,
    movie_event,
    publish_and_settle,
    publish_raw,
)


def body_of(message: EmailMessage, subtype: str) -> str:
    part = message.get_body(preferencelist=(subtype,))
    assert part is not None and part.get_content_type() == f"text/{subtype}"
    return str(part.get_content())


async def notified(db: Database, movie_id: uuid.UUID) -> set[uuid.UUID]:
    async with db.transaction() as session:
        rows = await session.scalars(
            select(MovieNotification.user_id).where(MovieNotification.movie_id == movie_id)
        )
        return set(rows)


async def test_a_new_ready_movie_mails_each_entitled_subscriber_once(
    worker, smtp: SmtpInbox, db: Database, redis: redis_async.Redis
) -> None:
    drama = await add_plan(db, "Drama", ["drama"])
    comedy = await add_plan(db, "Comedy", ["comedy"])
    active = await add_subscriber(db, drama, name="Ada Active")
    trialing = await add_subscriber(db, drama, status="trialing")
    canceled = await add_subscriber(db, drama, status="canceled")
    unpaid = await add_subscriber(db, drama, status="pending_payment")
    past_due = await add_subscriber(db, drama, status="past_due")
    lapsed = await add_subscriber(db, drama, period_end=utcnow() - dt.timedelta(minutes=1))
    deleted = await add_subscriber(db, drama, deleted=True)
    other_plan = await add_subscriber(db, comedy)

    event = movie_event(genres=["drama"], title="The Long Night",
                        description="A lighthouse keeper and a storm that will not end.")
    movie_id = uuid.UUID(event.data["id"])
    await publish_and_settle(redis, event)

    assert sorted(a for m in smtp.messages for a in m.rcpt_tos) == sorted(
        [active.email, trialing.email]
    )
    assert await notified(db, movie_id) == {active.id, trialing.id}
    for person in (canceled, unpaid, past_due, lapsed, deleted, other_plan):
        assert smtp.to(person.email) == []

    (mail,) = smtp.to(active.email)
    message = mail.message
    assert message.get_content_type() == "multipart/alternative"
    assert message["Subject"] == "New on Reelgate: The Long Night"
    assert message["To"].addresses[0].addr_spec == active.email
    assert message["To"].addresses[0].display_name == "Ada Active"
    assert message["From"] == "Reelgate <noreply@reelgate.local>"
    assert message["Message-ID"] == f"<movie-{movie_id}.user-{active.id}@reelgate.local>"
    link = f"{PUBLIC_URL}/#/movies/{movie_id}"
    text = body_of(message, "plain")
    assert "The Long Night" in text and "lighthouse keeper" in text and link in text
    html = body_of(message, "html")
    assert f'href="{link}"' in html and "lighthouse keeper" in html


async def test_the_same_event_twice_and_a_second_worker_send_nothing_more(
    worker, start_worker: StartWorker, smtp: SmtpInbox, db: Database,
    redis: redis_async.Redis,
) -> None:
    plan = await add_plan(db)
    viewers = [await add_subscriber(db, plan) for _ in range(3)]
    event = movie_event()
    movie_id = uuid.UUID(event.data["id"])

    # At-least-once delivery: the very same envelope, twice.
    await publish_and_settle(redis, event)
    await publish_and_settle(redis, event)
    assert len(smtp.messages) == 3

    # A second worker in the same group is handed every entry again (the
    # group is rewound, as after a lost acknowledgement).
    await worker.stop()
    await redis.xgroup_setid(STREAM, NOTIFICATIONS_GROUP, "0")
    await start_worker()
    last = (await redis.xrevrange(STREAM, count=1))[0][0]
    await drained(redis, NOTIFICATIONS_GROUP, last)

    assert sorted(a for m in smtp.messages for a in m.rcpt_tos) == sorted(v.email for v in viewers)
    assert await notified(db, movie_id) == {v.id for v in viewers}


async def test_a_movie_created_as_draft_is_announced_when_its_media_is_ready(
    worker, smtp: SmtpInbox, db: Database, redis: redis_async.Redis
) -> None:
    plan = await add_plan(db)
    viewer = await add_subscriber(db, plan)
    created = movie_event(status="draft", title="Slow Burn")
    movie_id = uuid.UUID(created.data["id"])
    await publish_and_settle(redis, created)
    assert smtp.messages == []

    ready = movie_event("movie.media_ready", movie_id, status="ready", title="Slow Burn")
    await publish_and_settle(redis, ready)
    await publish_and_settle(redis, ready)  # a second ingest of the same movie: no news
    (mail,) = smtp.messages
    assert mail.rcpt_tos == [viewer.email]
    assert "Slow Burn" in mail.message["Subject"]


async def test_a_temporary_smtp_failure_is_retried_and_mails_once(
    worker, smtp: SmtpInbox, db: Database, redis: redis_async.Redis
) -> None:
    plan = await add_plan(db)
    viewers = [await add_subscriber(db, plan) for _ in range(2)]
    smtp.reject_next(1)  # the first mail of the first delivery gets a 451

    await publish_and_settle(redis, movie_event())

    assert smtp.rejected == 1
    assert sorted(a for m in smtp.messages for a in m.rcpt_tos) == sorted(v.email for v in viewers)
    assert await redis.xlen(DEAD_LETTER_STREAM) == 0


async def test_an_address_the_server_refuses_does_not_hold_up_the_others(
    worker, smtp: SmtpInbox, db: Database, redis: redis_async.Redis
) -> None:
    plan = await add_plan(db)
    # Recipients are mailed in user id order: the refused one comes first.
    refused, second, last = sorted([await add_subscriber(db, plan) for _ in range(3)],
                                   key=lambda person: person.id)
    smtp.refuse(refused.email)
    event = movie_event()
    movie_id = uuid.UUID(event.data["id"])

    entry_id = await publish_and_settle(redis, event)

    # Every delivery mailed whoever was still missing; the refused address
    # failed each time, so the event ends on the dead-letter stream.
    mailed = sorted(a for m in smtp.messages for a in m.rcpt_tos)
    assert mailed == sorted([second.email, last.email])
    assert await notified(db, movie_id) == {second.id, last.id}
    ((_, parked),) = await redis.xrange(DEAD_LETTER_STREAM)
    assert (parked["group"], parked["entry_id"]) == (NOTIFICATIONS_GROUP, entry_id)
    assert "NotificationsFailed" in parked["reason"] and "1 of 1" in parked["reason"]


async def test_a_mailer_that_fails_once_leaves_no_claim_behind(
    start_worker: StartWorker, worker_settings: Settings, smtp: SmtpInbox, db: Database,
    redis: redis_async.Redis,
) -> None:
    class FailsOnce:
        def __init__(self) -> None:
            self.real = SmtpMailer(worker_settings.smtp_url)
            self.calls = 0

        async def send(self, message: EmailMessage) -> None:
            self.calls += 1
            if self.calls == 1:
                raise ConnectionResetError("connection lost mid-message")
            await self.real.send(message)

    mailer = FailsOnce()
    await start_worker(mailer=mailer)
    plan = await add_plan(db)
    viewer = await add_subscriber(db, plan)

    await publish_and_settle(redis, movie_event())

    assert mailer.calls == 2
    assert [m.rcpt_tos for m in smtp.messages] == [[viewer.email]]


async def test_an_event_left_pending_by_a_dead_consumer_is_handled_by_the_worker(
    start_worker: StartWorker, smtp: SmtpInbox, db: Database, redis: redis_async.Redis
) -> None:
    plan = await add_plan(db)
    viewer = await add_subscriber(db, plan)
    for group in ("entitlements", NOTIFICATIONS_GROUP):
        await redis.xgroup_create(STREAM, group, id="$", mkstream=True)
    entry_id = await publish(redis, movie_event())
    # Consumer "doomed" reads the entry in both groups and dies without acknowledging.
    for group in ("entitlements", NOTIFICATIONS_GROUP):
        read = await redis.xreadgroup(group, "doomed", {STREAM: ">"}, count=1)
        assert read[0][1][0][0] == entry_id
    assert (await redis.xpending(STREAM, NOTIFICATIONS_GROUP))["pending"] == 1

    await start_worker()
    await drained(redis, NOTIFICATIONS_GROUP, entry_id)
    await drained(redis, "entitlements", entry_id)

    assert [m.rcpt_tos for m in smtp.messages] == [[viewer.email]]


async def test_the_notifier_projects_a_movie_the_projection_has_not_seen(
    worker_settings: Settings, smtp: SmtpInbox, db: Database, redis_url: str
) -> None:
    """The notifier alone (no projection listener has seen the movie yet)
    still finds the plan's members: it projects the movie itself, plan joins
    included. The projection listener catching up later changes nothing."""
    plan = await add_plan(db, genres=["drama"])
    viewer = await add_subscriber(db, plan)
    notifier = MovieNotifier(db, SmtpMailer(worker_settings.smtp_url), worker_settings)
    created = movie_event(genres=["drama"], status="draft")
    movie_id = uuid.UUID(created.data["id"])
    ready = movie_event("movie.media_ready", movie_id, genres=["drama"], status="ready")

    await notifier.handle(created)  # not ready: no news, nothing projected
    await notifier.handle(ready)
    await notifier.handle(ready)
    assert [m.rcpt_tos for m in smtp.messages] == [[viewer.email]]

    resources = ListenerResources(db=db, kv=RedisKV(redis_url))
    projection = ProjectionListener(resources)  # type: ignore[arg-type]
    await projection.handle(created)
    await projection.handle(ready)
    await resources.kv.close()
    async with db.transaction() as session:
        joins = list(await session.scalars(select(PlanMovie.plan_id)))
        movie = await session.get(CatalogMovie, movie_id)
    assert joins == [plan]
    assert movie is not None and movie.status == "ready"
    await notifier.handle(ready)
    assert len(smtp.messages) == 1


async def test_two_deliveries_at_the_same_time_mail_once(
    worker_settings: Settings, smtp: SmtpInbox, db: Database
) -> None:
    """Two consumers handle the same event at once (a slow handler re-claimed
    by another consumer): the claim row serialises them per user."""

    class SlowMailer:
        def __init__(self) -> None:
            self.real = SmtpMailer(worker_settings.smtp_url)

        async def send(self, message: EmailMessage) -> None:
            await asyncio.sleep(0.2)  # both deliveries are now past the recipient query
            await self.real.send(message)

    plan = await add_plan(db)
    viewers = [await add_subscriber(db, plan) for _ in range(3)]
    event = movie_event()
    other_db = Database(worker_settings.database_url_for("entitlements"))
    try:
        first = MovieNotifier(db, SlowMailer(), worker_settings)
        second = MovieNotifier(other_db, SlowMailer(), worker_settings)
        await asyncio.gather(first.handle(event), second.handle(event))
    finally:
        await other_db.dispose()

    assert sorted(a for m in smtp.messages for a in m.rcpt_tos) == sorted(v.email for v in viewers)


async def test_created_and_ready_back_to_back_mail_once(
    worker, smtp: SmtpInbox, db: Database, redis: redis_async.Redis
) -> None:
    """As `reelgate ingest` does: both events at once, so the two groups race."""
    plan = await add_plan(db, genres=["drama"])
    viewers = [await add_subscriber(db, plan) for _ in range(2)]
    movie_ids = [uuid.uuid4() for _ in range(5)]
    for movie_id in movie_ids:
        await publish(redis, movie_event(movie_id=movie_id, status="draft"))
        await publish(redis, movie_event("movie.media_ready", movie_id))
    last = (await redis.xrevrange(STREAM, count=1))[0][0]
    for group in ("entitlements", NOTIFICATIONS_GROUP):
        await drained(redis, group, last)

    assert len(smtp.messages) == 2 * len(movie_ids)
    for movie_id in movie_ids:
        assert await notified(db, movie_id) == {v.id for v in viewers}
    assert await redis.xlen(DEAD_LETTER_STREAM) == 0
    async with db.transaction() as session:
        statuses = set(await session.scalars(select(CatalogMovie.status)))
    assert statuses == {"ready"}


async def test_poison_events_are_parked_and_the_worker_goes_on(
    worker, smtp: SmtpInbox, db: Database, redis: redis_async.Redis
) -> None:
    plan = await add_plan(db)
    viewer = await add_subscriber(db, plan)
    # A movie event without an id: both listeners fail on it every time.
    broken = movie_event()
    del broken.data["id"]
    broken_id = await publish(redis, broken)
    garbage_id = await publish_raw(redis, {"event": "{not json"})
    good_id = await publish_and_settle(redis, movie_event(title="After The Storm"))

    for group in ("entitlements", NOTIFICATIONS_GROUP):
        await drained(redis, group, good_id)
    dead = await redis.xrange(DEAD_LETTER_STREAM)
    parked = sorted((f["group"], f["entry_id"]) for _, f in dead)
    assert parked == sorted(
        (group, entry) for group in ("entitlements", NOTIFICATIONS_GROUP)
        for entry in (broken_id, garbage_id)
    )
    for _, fields in dead:
        if fields["entry_id"] == broken_id:
            assert "KeyError" in fields["reason"]
            assert json.loads(fields["event"])["id"] == broken.id
        else:
            assert fields["reason"] == "unparseable envelope"
            assert fields["event"] == "{not json"
    assert [m.rcpt_tos for m in smtp.messages] == [[viewer.email]]
