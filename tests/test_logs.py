"""Log redaction: the cheap pre-check must never let a secret through.

`redact` skips its regex substitutions when `_may_hold_secret` says a line cannot hold a
secret; so every text any of the patterns matches must pass that check, including the
Unicode characters `re.IGNORECASE` equates with ASCII letters (Kelvin sign, long s).
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reelgate.logs import _SECRETS, _may_hold_secret, redact

ACCESS_LINE = "media GET /stream/f65791de-e7ad-49e2-a6d0-99ca36f029b2 206 1.2ms rid=396f480a"
JWT = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiIxMjM0NTY3ODkw.c2lnbmF0dXJl"


@pytest.mark.parametrize(
    ("line", "secret"),
    [
        ("GET /stream/x?token=abc123", "abc123"),
        ("GET /stream/x?TOKEN=abc123", "abc123"),
        ("GET /stream/x?to\u212aen=abc123", "abc123"),  # Kelvin sign: IGNORECASE's "k"
        ("Authorization: Bearer abc.def", "abc.def"),
        ('{"password": "hunter22"}', "hunter22"),
        ('{"pa\u017f\u017fword": "hunter22"}', "hunter22"),  # long s: IGNORECASE's "s"
        ("refresh_token=r3fr3sh", "r3fr3sh"),
        (f"token in a message {JWT}", JWT),
    ],
)
def test_secrets_are_redacted(line: str, secret: str) -> None:
    assert secret not in redact(line)


def test_plain_lines_are_returned_as_they_are() -> None:
    assert not _may_hold_secret(ACCESS_LINE)
    assert redact(ACCESS_LINE) is ACCESS_LINE


PIECES = ["token=", "bearer ", "password", "eyJ", "to\u212aen=", "pa\u017f\u017fword=", "TOKEN"]


@given(st.lists(st.one_of(st.sampled_from(PIECES), st.text(max_size=12)), max_size=6))
def test_the_pre_check_covers_every_pattern(parts: list[str]) -> None:
    text = "".join(parts)
    if any(pattern.search(text) for pattern, _ in _SECRETS):
        assert _may_hold_secret(text)
