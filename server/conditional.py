"""Conditional requests (RFC 9110 §8.8, §13): validators and precondition evaluation, no I/O.

Choices made where the RFC leaves room (each is marked "CHOICE" below):

* A syntactically invalid entity-tag list fails *safe*: If-Match is treated as matching
  nothing (412 - never act on a condition we cannot read), If-None-Match is treated as
  matching nothing (the full response is sent - a 304 is only an optimisation).
* Last-Modified has one-second resolution: the mtime is floored to whole seconds everywhere
  (header, comparisons), and a future mtime is replaced by "now" (§8.8.2.1).
* An If-Range date only counts as a strong validator (§8.8.2.2, §13.1.5) when it equals
  Last-Modified exactly *and* that second is over, so the representation cannot change again
  within the second the client saw.
"""

from __future__ import annotations

import calendar
import functools
import hashlib
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import formatdate
from http import HTTPStatus

__all__ = [
    "EntityTag",
    "effective_last_modified",
    "evaluate_preconditions",
    "format_http_date",
    "if_range_allows_partial",
    "make_etag",
    "parse_entity_tag",
    "parse_entity_tag_list",
    "parse_http_date",
]

NOT_MODIFIED = int(HTTPStatus.NOT_MODIFIED)
PRECONDITION_FAILED = int(HTTPStatus.PRECONDITION_FAILED)

_OWS = " \t"
_SAFE_METHODS = frozenset({"GET", "HEAD"})


# --- entity tags (RFC 9110 §8.8.3) ---------------------------------------------------------

# entity-tag = [ weak ] opaque-tag ; weak = %s"W/" ; opaque-tag = DQUOTE *etagc DQUOTE
# etagc = %x21 / %x23-7E / obs-text. Commas are legal inside the quotes.
_ETAG_RE = re.compile(r'(W/)?("[\x21\x23-\x7e\x80-\xff]*")')


@dataclass(frozen=True, slots=True)
class EntityTag:
    opaque: str  # including the double quotes
    weak: bool = False

    def strong_match(self, other: EntityTag) -> bool:
        # §8.8.3.2: "both entity tags are not weak and their opaque-tags match".
        return not self.weak and not other.weak and self.opaque == other.opaque

    def weak_match(self, other: EntityTag) -> bool:
        # §8.8.3.2: "their opaque-tags match character-by-character, regardless of either or
        # both being tagged as weak".
        return self.opaque == other.opaque

    def __str__(self) -> str:
        return ("W/" if self.weak else "") + self.opaque


def make_etag(key_or_sha256: str, size: int, mtime: float) -> str:
    """A strong, quoted entity-tag for one stored object.

    Strong means byte-for-byte identity (§8.8.1). Objects are content-addressed (the key
    derives from the SHA-256), and size and mtime are mixed in as well so that a file
    replaced in place under the same name still gets a new tag. Only hex digits are used,
    which are valid etagc.
    """
    mtime_us = round(mtime * 1_000_000)
    material = f"{key_or_sha256}\x00{size}\x00{mtime_us}".encode("utf-8", "surrogatepass")
    return '"' + hashlib.sha256(material).hexdigest()[:32] + '"'


def parse_entity_tag(value: str) -> EntityTag | None:
    """One entity-tag (surrounding OWS allowed), or None when it is not valid."""
    match = _ETAG_RE.fullmatch(value.strip(_OWS))
    if match is None:
        return None
    return EntityTag(match.group(2), weak=match.group(1) is not None)


def parse_entity_tag_list(value: str) -> list[EntityTag] | None:
    """The ``#entity-tag`` alternative of If-Match / If-None-Match (§13.1.1, §13.1.2).

    None for invalid syntax (including a "*" mixed into a list; a lone "*" is handled by
    the callers first). Empty list elements are accepted (§5.6.1), so "" gives [].
    """
    tags: list[EntityTag] = []
    pos, end = 0, len(value)
    while True:
        pos = _skip(value, pos, _OWS + ",")
        if pos >= end:
            return tags
        match = _ETAG_RE.match(value, pos)
        if match is None:
            return None
        tags.append(EntityTag(match.group(2), weak=match.group(1) is not None))
        pos = _skip(value, match.end(), _OWS)
        if pos < end and value[pos] != ",":
            return None  # e.g. '"a" "b"' or '"a"junk'


def _skip(text: str, pos: int, chars: str) -> int:
    while pos < len(text) and text[pos] in chars:
        pos += 1
    return pos


def _is_star(value: str) -> bool:
    return value.strip(_OWS) == "*"


# Parsed once per object rather than per request; a ValueError is not cached, so an invalid
# tag fails every time.
@functools.lru_cache(maxsize=1024)
def _current_tag(etag: str) -> EntityTag:
    tag = parse_entity_tag(etag)
    if tag is None:
        raise ValueError(f"not a valid entity-tag: {etag!r}")
    return tag


# --- HTTP-date (RFC 9110 §5.6.7) -----------------------------------------------------------

_MONTHS = {
    name: index
    for index, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"),
        start=1,
    )
}
_DAY = r"(?:mon|tue|wed|thu|fri|sat|sun)"
_LONG_DAY = r"(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday)"
_TIME = r"(\d\d):(\d\d):(\d\d)"
# "Sun, 06 Nov 1994 08:49:37 GMT"  (IMF-fixdate, the only format we generate)
_IMF_FIXDATE = re.compile(
    rf"{_DAY}, (\d\d) ([a-z]{{3}}) (\d{{4}}) {_TIME} GMT", re.IGNORECASE | re.ASCII
)
# "Sunday, 06-Nov-94 08:49:37 GMT"  (obsolete RFC 850 format)
_RFC850 = re.compile(
    rf"{_LONG_DAY}, (\d\d)-([a-z]{{3}})-(\d\d) {_TIME} GMT", re.IGNORECASE | re.ASCII
)
# "Sun Nov  6 08:49:37 1994"  (obsolete asctime() format; day padded with a space)
_ASCTIME = re.compile(rf"{_DAY} ([a-z]{{3}}) ([ \d]\d) {_TIME} (\d{{4}})", re.IGNORECASE | re.ASCII)


def format_http_date(timestamp: float) -> str:
    """IMF-fixdate for a POSIX timestamp, floored to the second (§5.6.7)."""
    return _format_second(math.floor(timestamp))


# A media node formats the same few Last-Modified seconds on every response; formatdate()
# costs more than the rest of the validator headers together (py-spy, docs/benchmarks.md).
@functools.lru_cache(maxsize=1024)
def _format_second(second: int) -> str:
    return formatdate(second, usegmt=True)


def parse_http_date(value: str | None) -> int | None:
    """Seconds since the epoch, or None when ``value`` is not exactly one valid HTTP-date.

    §5.6.7: "A recipient that parses a timestamp value in an HTTP field MUST accept all
    three HTTP-date formats". Names are matched case-insensitively ("encouraged to be
    robust"); anything else - lists of dates, trailing junk, impossible dates - is invalid.
    """
    if value is None:
        return None
    text = value.strip(_OWS)
    if match := _IMF_FIXDATE.fullmatch(text):
        day, month, year, hh, mm, ss = match.groups()
        return _to_timestamp(int(year), month, int(day), hh, mm, ss)
    if match := _RFC850.fullmatch(text):
        day, month, yy, hh, mm, ss = match.groups()
        return _to_timestamp(_rfc850_year(int(yy)), month, int(day), hh, mm, ss)
    if match := _ASCTIME.fullmatch(text):
        month, day, hh, mm, ss, year = match.groups()
        return _to_timestamp(int(year), month, int(day.strip()), hh, mm, ss)
    return None


def _rfc850_year(two_digits: int) -> int:
    # §5.6.7: "interpret a timestamp that appears to be more than 50 years in the future as
    # representing the most recent year in the past that had the same last two digits".
    this_year = datetime.now(UTC).year
    year = this_year - this_year % 100 + two_digits
    return year - 100 if year > this_year + 50 else year


def _to_timestamp(year: int, month_name: str, day: int, hh: str, mm: str, ss: str) -> int | None:
    month = _MONTHS.get(month_name.lower())
    if month is None:
        return None
    # second = 2DIGIT allows 60 (leap second); fold it onto 59 rather than reject it.
    second = 59 if ss == "60" else int(ss)
    try:
        moment = datetime(year, month, day, int(hh), int(mm), second, tzinfo=UTC)
    except ValueError:
        return None  # 31 Feb, hour 24, second 61, ...
    return calendar.timegm(moment.utctimetuple())


def effective_last_modified(mtime: float, now: float | None = None) -> int:
    """Last-Modified in whole seconds, never later than now.

    §8.8.2.1: "An origin server with a clock MUST NOT generate a Last-Modified date that is
    later than the server's time of message origination (Date)." and if metadata says
    otherwise it "MUST replace that value with the message origination date".
    """
    current = time.time() if now is None else now
    return math.floor(min(mtime, current))


# --- precondition evaluation (RFC 9110 §13.2.2) --------------------------------------------


def _collect_fields(headers: Mapping[str, str]) -> dict[str, str]:
    """Lower-cased field names; repeated fields joined with ", " (§5.3).

    Works for plain dicts and for multidicts (whose items() yields every line). For list
    fields (If-Match, If-None-Match) the join is the RFC's own combination rule; for
    singleton fields (dates, If-Range) the joined value no longer parses, which is exactly
    the "more than one member -> ignore / invalid" behaviour the RFC asks for.
    """
    collected: dict[str, list[str]] = {}
    for name, value in headers.items():
        collected.setdefault(name.lower(), []).append(value)
    return {name: ", ".join(values) for name, values in collected.items()}


def evaluate_preconditions(
    method: str, headers: Mapping[str, str], etag: str, last_modified: float
) -> int | None:
    """Return None to proceed, 304 (Not Modified) or 412 (Precondition Failed).

    ``etag`` is the current entity-tag as sent in ETag; ``last_modified`` the value sent in
    Last-Modified (see `effective_last_modified`). Range/If-Range come after this (step 5)
    and are the caller's business (`if_range_allows_partial`).
    """
    fields = _collect_fields(headers)
    current = _current_tag(etag)
    modified = math.floor(last_modified)
    safe = method in _SAFE_METHODS

    # Step 1: If-Match present -> it alone decides; step 2: else If-Unmodified-Since.
    # §13.1.4: "A recipient MUST ignore If-Unmodified-Since if the request contains an
    # If-Match header field".
    if_match = fields.get("if-match")
    if if_match is not None:
        if not _if_match_true(if_match, current):
            return PRECONDITION_FAILED
    else:
        since = parse_http_date(fields.get("if-unmodified-since"))
        # §13.1.4: true "if the selected representation's last modification date is earlier
        # than or equal to the date provided"; invalid dates are ignored.
        if since is not None and modified > since:
            return PRECONDITION_FAILED

    # Step 3: If-None-Match; step 4: else If-Modified-Since, GET/HEAD only.
    # §13.1.3: "A recipient MUST ignore If-Modified-Since if the request contains an
    # If-None-Match header field" or "if the request method is neither GET nor HEAD".
    if_none_match = fields.get("if-none-match")
    if if_none_match is not None:
        if not _if_none_match_true(if_none_match, current):
            return NOT_MODIFIED if safe else PRECONDITION_FAILED
    elif safe:
        since = parse_http_date(fields.get("if-modified-since"))
        # §13.1.3: false "if the selected representation's last modification date is
        # earlier or equal to the date provided in the field value".
        if since is not None and modified <= since:
            return NOT_MODIFIED
    return None


def _if_match_true(value: str, current: EntityTag) -> bool:
    # §13.1.1: "*" is true when a current representation exists (it does: we are serving
    # it); otherwise true only for a *strong* match with one listed tag.
    if _is_star(value):
        return True
    tags = parse_entity_tag_list(value)
    if tags is None:
        return False  # CHOICE: unreadable If-Match fails closed -> 412
    return any(tag.strong_match(current) for tag in tags)


def _if_none_match_true(value: str, current: EntityTag) -> bool:
    # §13.1.2: "*" is false when a current representation exists; otherwise false when any
    # listed tag *weakly* matches.
    if _is_star(value):
        return False
    tags = parse_entity_tag_list(value)
    if tags is None:
        return True  # CHOICE: unreadable If-None-Match -> send the full response
    return not any(tag.weak_match(current) for tag in tags)


def if_range_allows_partial(
    if_range_value: str | None, etag: str, last_modified: float, now: float | None = None
) -> bool:
    """RFC 9110 §13.1.5: may a Range request be answered with 206?

    True when If-Range is absent, or holds a strong entity-tag that strongly matches ETag,
    or an HTTP-date exactly equal to Last-Modified that is a strong validator. A weak tag,
    a different tag or date, several values, or garbage -> False (send 200 with everything).
    """
    if if_range_value is None:
        return True
    value = if_range_value.strip(_OWS)
    # §13.1.5: "A valid entity-tag can be distinguished from a valid HTTP-date by examining
    # the first three characters for a DQUOTE."
    if '"' in value[:3]:
        tag = parse_entity_tag(value)
        # "the condition is false if ... the entity-tag validator provided is not a strong
        # validator ... or does not match" - a weak tag can never pass.
        return tag is not None and tag.strong_match(_current_tag(etag))
    date = parse_http_date(value)
    modified = math.floor(last_modified)
    if date is None or date != modified:
        return False
    return _date_is_strong(modified, now)


def _date_is_strong(modified: int, now: float | None) -> bool:
    # §8.8.2.2: a Last-Modified date is strong only if the server "reliably knows that the
    # associated representation did not change twice during the second covered by the
    # presented validator". CHOICE: require that second to be over.
    current = time.time() if now is None else now
    return modified + 1 <= current
