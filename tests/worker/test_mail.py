"""The mail port: URL parsing, secrets kept out of sight, SMTP delivery to a
real server (aiosmtpd), and the directory mailer of the demo."""

from __future__ import annotations

import email
import email.policy
import logging
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import pytest

from reelgate.config import Settings
from reelgate.mail import DirectoryMailer, SmtpMailer, SmtpTarget, open_mailer, parse_smtp_url
from tests.worker.support import SmtpInbox

SECRET = "s3cret-pa55"


def a_message(to: str = "someone@example.com", subject: str = "Hello") -> EmailMessage:
    message = EmailMessage()
    message["From"] = "Reelgate <noreply@reelgate.local>"
    message["To"] = to
    message["Subject"] = subject
    message.set_content("plain body\n")
    message.add_alternative("<p>html body</p>\n", subtype="html")
    return message


@pytest.mark.parametrize(
    ("url", "target"),
    [
        ("smtp://mail.example.com", SmtpTarget("mail.example.com", 25)),
        ("smtp://127.0.0.1:2525", SmtpTarget("127.0.0.1", 2525)),
        ("smtp://mail.example.com:587?starttls=true",
         SmtpTarget("mail.example.com", 587, start_tls=True)),
        ("smtp://mail.example.com:587?starttls=false", SmtpTarget("mail.example.com", 587)),
        ("smtps://mail.example.com", SmtpTarget("mail.example.com", 465, use_tls=True)),
        ("smtps://bob:pw@mail.example.com:2465",
         SmtpTarget("mail.example.com", 2465, use_tls=True, username="bob", password="pw")),
        ("smtp://bob%40corp:p%40ss%3Aw%2Fd@mail.example.com:587?starttls=true",
         SmtpTarget("mail.example.com", 587, start_tls=True, username="bob@corp",
                    password="p@ss:w/d")),
    ],
)
def test_smtp_urls(url: str, target: SmtpTarget) -> None:
    assert parse_smtp_url(url) == target


@pytest.mark.parametrize(
    "url",
    [
        f"http://bob:{SECRET}@mail.example.com",
        f"smtp://bob:{SECRET}@mail.example.com:notaport",
        f"smtp://bob:{SECRET}@:25",
        f"smtp://bob:{SECRET}@mail.example.com/path",
        f"smtp://bob:{SECRET}@mail.example.com?tls=yes",
        f"smtp://bob:{SECRET}@mail.example.com?starttls=maybe",
        f"smtps://bob:{SECRET}@mail.example.com?starttls=true",
    ],
)
def test_bad_smtp_urls_are_refused_without_echoing_the_password(url: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_smtp_url(url)
    assert SECRET not in str(caught.value)
    assert caught.value.__cause__ is None  # no chained exception carrying the URL


def test_the_password_stays_out_of_reprs_and_logs(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"smtp://bob:{SECRET}@mail.example.com:2525"
    with caplog.at_level(logging.DEBUG, logger="reelgate.mail"):
        mailer = open_mailer(settings.model_copy(update={"smtp_url": url}))
    assert isinstance(mailer, SmtpMailer)
    assert SECRET not in repr(mailer) and SECRET not in repr(mailer.target)
    assert "mail.example.com:2525" in caplog.text
    assert SECRET not in caplog.text


def test_without_an_smtp_url_mail_goes_to_the_var_directory(settings: Settings) -> None:
    mailer = open_mailer(settings.model_copy(update={"smtp_url": ""}))
    assert isinstance(mailer, DirectoryMailer)
    assert mailer.path == settings.resolved_var_dir / "mail"


async def test_directory_mailer_writes_whole_eml_files(tmp_path: Path) -> None:
    mailer = DirectoryMailer(tmp_path / "mail")
    await mailer.send(a_message(subject="first"))
    await mailer.send(a_message(subject="second"))

    files = sorted((tmp_path / "mail").iterdir())
    assert [f.suffix for f in files] == [".eml", ".eml"]  # no temporary files left
    subjects = {
        email.message_from_bytes(f.read_bytes(), policy=email.policy.default)["Subject"]
        for f in files
    }
    assert subjects == {"first", "second"}


@pytest.fixture
def smtp_with_login() -> Iterator[SmtpInbox]:
    inbox = SmtpInbox(credentials=("mailer", "p@ss:word/1"))
    inbox.start()
    try:
        yield inbox
    finally:
        inbox.stop()


async def test_smtp_mailer_delivers_to_a_real_server(smtp: SmtpInbox) -> None:
    await SmtpMailer(smtp.url).send(a_message(to="Viewer <viewer@example.com>"))
    (delivered,) = smtp.messages
    assert delivered.rcpt_tos == ["viewer@example.com"]
    assert delivered.message["Subject"] == "Hello"
    assert delivered.message.get_content_type() == "multipart/alternative"


async def test_smtp_mailer_logs_in_with_the_url_credentials(smtp_with_login: SmtpInbox) -> None:
    url = f"smtp://mailer:p%40ss%3Aword%2F1@127.0.0.1:{smtp_with_login.port}"
    await SmtpMailer(url).send(a_message())
    (delivered,) = smtp_with_login.messages
    assert delivered.login == "mailer"

    wrong = f"smtp://mailer:wrong@127.0.0.1:{smtp_with_login.port}"
    with pytest.raises(aiosmtplib.SMTPAuthenticationError):
        await SmtpMailer(wrong).send(a_message())
    assert len(smtp_with_login.messages) == 1


async def test_smtp_mailer_raises_on_a_temporary_rejection(smtp: SmtpInbox) -> None:
    smtp.reject_next(1)
    with pytest.raises(aiosmtplib.SMTPResponseException) as caught:
        await SmtpMailer(smtp.url).send(a_message())
    assert caught.value.code == 451
    assert smtp.messages == []


async def test_smtp_mailer_raises_when_nobody_listens() -> None:
    from tests.harness.ports import free_port

    with pytest.raises((aiosmtplib.SMTPConnectError, OSError)):
        await SmtpMailer(f"smtp://127.0.0.1:{free_port()}", timeout_s=2).send(a_message())
