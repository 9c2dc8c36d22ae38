"""Validators and precondition evaluation (RFC 9110 §8.8, §13), table-driven."""

from __future__ import annotations

import calendar
import re

import pytest
from multidict import CIMultiDict

from server.conditional import (
    EntityTag,
    effective_last_modified,
    evaluate_preconditions,
    format_http_date,
    if_range_allows_partial,
    make_etag,
    parse_entity_tag,
    parse_entity_tag_list,
    parse_http_date,
)

ETAG = '"abc123"'
OTHER = '"zzz"'
LM = 784111777  # Sun, 06 Nov 1994 08:49:37 GMT
LM_TEXT = "Sun, 06 Nov 1994 08:49:37 GMT"
BEFORE = "Sun, 06 Nov 1994 08:49:36 GMT"
AFTER = "Sun, 06 Nov 1994 08:49:38 GMT"


# --- make_etag -------------------------------------------------------------------------------


def test_make_etag_is_strong_quoted_and_stable() -> None:
    tag = make_etag("a" * 64, 10, 1700000000.5)
    assert re.fullmatch(r'"[0-9a-f]{32}"', tag)
    assert parse_entity_tag(tag) == EntityTag(tag, weak=False)
    assert tag == make_etag("a" * 64, 10, 1700000000.5)


@pytest.mark.parametrize(
    "args",
    [("b" * 64, 10, 1700000000.5), ("a" * 64, 11, 1700000000.5), ("a" * 64, 10, 1700000000.6)],
)
def test_make_etag_changes_with_each_input(args: tuple[str, int, float]) -> None:
    assert make_etag(*args) != make_etag("a" * 64, 10, 1700000000.5)


# --- entity-tag parsing ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('"abc"', EntityTag('"abc"')),
        ('W/"abc"', EntityTag('"abc"', weak=True)),
        ('""', EntityTag('""')),
        (' "a,b" ', EntityTag('"a,b"')),
        ('w/"abc"', None),  # "W/" is case-sensitive (%s"W/")
        ("abc", None),
        ('"abc', None),
        ('"a"b"', None),
        ('"a b"', None),
        ('W/ "abc"', None),
        ("*", None),
    ],
)
def test_parse_entity_tag(text: str, expected: EntityTag | None) -> None:
    assert parse_entity_tag(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('"a"', ['"a"']),
        ('"a", "b"', ['"a"', '"b"']),
        ('"a",W/"b"', ['"a"', 'W/"b"']),
        ('"a,b", "c"', ['"a,b"', '"c"']),  # commas inside quotes are part of the tag
        ('"a",,"b",', ['"a"', '"b"']),  # empty list elements (§5.6.1)
        (" , ", []),
        ("", []),
        ('"a" "b"', None),
        ('"a"junk', None),
        ('"a", junk', None),
        ('*, "a"', None),
        ('"unterminated', None),
        ("W/", None),
    ],
)
def test_parse_entity_tag_list(text: str, expected: list[str] | None) -> None:
    tags = parse_entity_tag_list(text)
    assert (None if tags is None else [str(t) for t in tags]) == expected


def test_entity_tag_comparison_table() -> None:
    # RFC 9110 §8.8.3.2, the example table.
    w1, w2, s1 = EntityTag('"1"', True), EntityTag('"2"', True), EntityTag('"1"')
    assert not w1.strong_match(w1) and w1.weak_match(w1)
    assert not w1.strong_match(w2) and not w1.weak_match(w2)
    assert not w1.strong_match(s1) and w1.weak_match(s1)
    assert s1.strong_match(s1) and s1.weak_match(s1)


# --- HTTP dates --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        LM_TEXT,
        "Sunday, 06-Nov-94 08:49:37 GMT",
        "Sun Nov  6 08:49:37 1994",
        "sun, 06 nov 1994 08:49:37 gmt",
        "  Sun, 06 Nov 1994 08:49:37 GMT\t",
    ],
)
def test_parse_http_date_all_three_formats(text: str) -> None:
    assert parse_http_date(text) == LM


@pytest.mark.parametrize(
    "text",
    [
        None,
        "",
        "yesterday",
        "Sun, 06 Nov 1994 08:49:37",
        "Sun, 06 Nov 1994 08:49:37 UTC",
        "Sun, 06 Nov 1994 08:49:37 +0000",
        "Sun, 31 Feb 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 24:00:00 GMT",
        "Sun, 06 Nov 1994 08:61:00 GMT",
        "Sun, 06 Foo 1994 08:49:37 GMT",
        "Sun, 6 Nov 1994 08:49:37 GMT",
        f"{LM_TEXT}, {LM_TEXT}",  # a list of dates is not a date
        f"{LM_TEXT}x",
        "1994-11-06T08:49:37Z",
        "784111777",
        "Sun, \u0660\u0666 Nov 1994 08:49:37 GMT",  # non-ASCII digits
    ],
)
def test_parse_http_date_rejects(text: str | None) -> None:
    assert parse_http_date(text) is None


def test_parse_http_date_leap_second_and_rfc850_century() -> None:
    assert parse_http_date("Wed, 31 Dec 2008 23:59:60 GMT") == calendar.timegm(
        (2008, 12, 31, 23, 59, 59)
    )
    # §5.6.7: two-digit years more than 50 years ahead belong to the previous century.
    # (This holds from 2044 back to 2000; "06-Nov-94" above means 1994 for the same reason.)
    assert parse_http_date("Saturday, 01-Jan-00 00:00:00 GMT") == calendar.timegm(
        (2000, 1, 1, 0, 0, 0)
    )
    assert parse_http_date("Tuesday, 01-Jan-30 00:00:00 GMT") == calendar.timegm(
        (2030, 1, 1, 0, 0, 0)
    )


@pytest.mark.parametrize("ts", [0, LM, LM + 0.999, 2**32 + 7])
def test_format_http_date_round_trips_floored(ts: float) -> None:
    text = format_http_date(ts)
    assert re.fullmatch(r"[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT", text)
    assert parse_http_date(text) == int(ts)


def test_format_http_date_example() -> None:
    assert format_http_date(LM) == LM_TEXT


def test_effective_last_modified_floors_and_never_exceeds_now() -> None:
    assert effective_last_modified(LM + 0.9, now=LM + 100) == LM
    assert effective_last_modified(LM + 500, now=LM + 100.5) == LM + 100


# --- preconditions (§13.2.2 order) -------------------------------------------------------------

# (method, headers, expected)
PRECONDITIONS: list[tuple[str, dict[str, str], int | None]] = [
    ("GET", {}, None),
    # If-Match: strong comparison, "*", lists, garbage fails closed
    ("GET", {"If-Match": ETAG}, None),
    ("GET", {"If-Match": OTHER}, 412),
    ("GET", {"If-Match": f"{OTHER}, {ETAG}"}, None),
    ("GET", {"If-Match": f"W/{ETAG}"}, 412),
    ("GET", {"If-Match": "*"}, None),
    ("GET", {"If-Match": " * "}, None),
    ("GET", {"If-Match": "garbage"}, 412),
    ("GET", {"If-Match": f"{ETAG} junk"}, 412),
    ("GET", {"If-Match": f"*, {ETAG}"}, 412),
    ("GET", {"If-Match": ""}, 412),
    # If-Unmodified-Since
    ("GET", {"If-Unmodified-Since": LM_TEXT}, None),
    ("GET", {"If-Unmodified-Since": AFTER}, None),
    ("GET", {"If-Unmodified-Since": BEFORE}, 412),
    ("GET", {"If-Unmodified-Since": "not a date"}, None),
    ("GET", {"If-Unmodified-Since": f"{BEFORE}, {BEFORE}"}, None),
    # If-Match present => If-Unmodified-Since ignored (§13.1.4)
    ("GET", {"If-Match": ETAG, "If-Unmodified-Since": BEFORE}, None),
    ("GET", {"If-Match": OTHER, "If-Unmodified-Since": AFTER}, 412),
    ("GET", {"If-Match": "garbage", "If-Unmodified-Since": AFTER}, 412),
    # If-None-Match: weak comparison, "*", garbage -> full response
    ("GET", {"If-None-Match": ETAG}, 304),
    ("HEAD", {"If-None-Match": ETAG}, 304),
    ("GET", {"If-None-Match": f"W/{ETAG}"}, 304),
    ("GET", {"If-None-Match": f"{OTHER}, W/{ETAG}"}, 304),
    ("GET", {"If-None-Match": OTHER}, None),
    ("GET", {"If-None-Match": "*"}, 304),
    ("GET", {"If-None-Match": "garbage"}, None),
    ("GET", {"If-None-Match": ""}, None),
    ("POST", {"If-None-Match": ETAG}, 412),
    ("PUT", {"If-None-Match": "*"}, 412),
    # If-Modified-Since
    ("GET", {"If-Modified-Since": LM_TEXT}, 304),
    ("GET", {"If-Modified-Since": AFTER}, 304),
    ("HEAD", {"If-Modified-Since": LM_TEXT}, 304),
    ("GET", {"If-Modified-Since": BEFORE}, None),
    ("GET", {"If-Modified-Since": "garbage"}, None),
    ("GET", {"If-Modified-Since": f"{LM_TEXT}, {LM_TEXT}"}, None),
    ("POST", {"If-Modified-Since": LM_TEXT}, None),  # GET/HEAD only
    # If-None-Match present => If-Modified-Since ignored (§13.1.3)
    ("GET", {"If-None-Match": OTHER, "If-Modified-Since": AFTER}, None),
    ("GET", {"If-None-Match": "garbage", "If-Modified-Since": AFTER}, None),
    ("GET", {"If-None-Match": ETAG, "If-Modified-Since": BEFORE}, 304),
    # order: 412 from step 1/2 wins over 304 from step 3/4
    ("GET", {"If-Match": OTHER, "If-None-Match": ETAG}, 412),
    ("GET", {"If-Unmodified-Since": BEFORE, "If-Modified-Since": AFTER}, 412),
    ("GET", {"If-Match": ETAG, "If-None-Match": ETAG}, 304),
    ("GET", {"If-Match": ETAG, "If-Modified-Since": LM_TEXT}, 304),
    # field names are case-insensitive
    ("GET", {"if-none-match": ETAG}, 304),
    ("GET", {"IF-MATCH": OTHER}, 412),
]


@pytest.mark.parametrize(("method", "headers", "expected"), PRECONDITIONS)
def test_evaluate_preconditions(method: str, headers: dict[str, str], expected: int | None) -> None:
    assert evaluate_preconditions(method, headers, ETAG, LM + 0.5) == expected


def test_repeated_list_fields_are_combined() -> None:
    headers = CIMultiDict([("If-None-Match", OTHER), ("If-None-Match", ETAG)])
    assert evaluate_preconditions("GET", headers, ETAG, LM) == 304
    headers = CIMultiDict([("If-Match", OTHER), ("If-Match", ETAG)])
    assert evaluate_preconditions("GET", headers, ETAG, LM) is None


def test_repeated_date_fields_are_ignored() -> None:
    headers = CIMultiDict([("If-Modified-Since", AFTER), ("If-Modified-Since", AFTER)])
    assert evaluate_preconditions("GET", headers, ETAG, LM) is None


def test_current_etag_must_be_valid() -> None:
    with pytest.raises(ValueError):
        evaluate_preconditions("GET", {}, "abc", LM)


# --- If-Range (§13.1.5) ------------------------------------------------------------------------

NOW = LM + 3600.0

IF_RANGE: list[tuple[str | None, bool]] = [
    (None, True),
    (ETAG, True),
    (f" {ETAG} ", True),
    (OTHER, False),
    (f"W/{ETAG}", False),  # weak tags never match
    (f'W/"{OTHER}"', False),
    (f"{ETAG}, {ETAG}", False),
    ("*", False),
    ("", False),
    ("garbage", False),
    (LM_TEXT, True),
    ("Sunday, 06-Nov-94 08:49:37 GMT", True),
    ("Sun Nov  6 08:49:37 1994", True),
    (BEFORE, False),  # older
    (AFTER, False),  # newer: must be an exact match
    (f"{LM_TEXT}, {LM_TEXT}", False),
]


@pytest.mark.parametrize(("value", "expected"), IF_RANGE)
def test_if_range(value: str | None, expected: bool) -> None:
    assert if_range_allows_partial(value, ETAG, LM + 0.25, now=NOW) is expected


def test_if_range_date_is_weak_within_its_own_second() -> None:
    # §8.8.2.2: the date cannot be trusted while the representation could still change
    # again within the same second.
    assert not if_range_allows_partial(LM_TEXT, ETAG, LM, now=LM + 0.5)
    assert if_range_allows_partial(LM_TEXT, ETAG, LM, now=LM + 1.0)


def test_if_range_with_weak_current_etag_never_matches() -> None:
    assert not if_range_allows_partial(f"W/{ETAG}", f"W/{ETAG}", LM, now=NOW)
