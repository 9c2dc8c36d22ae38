"""Byte-range requests (RFC 9110 §14): pure parsing and multipart planning, no I/O.

`parse_range_header` turns a ``Range`` field value into a `RangeDecision`:

* ``FULL``          - ignore the field and send 200 with the whole representation;
* ``UNSATISFIABLE`` - send 416 with ``Content-Range: bytes */<size>``;
* ``PARTIAL``       - send 206 with the sorted, coalesced, clipped `ByteRange` list.

`MultipartPlan` lays out a ``multipart/byteranges`` body (RFC 9110 §14.6) so that the exact
Content-Length is known before the first byte is sent: no chunked encoding, no buffering.

Choices made where the RFC leaves room (each is marked "CHOICE" below):

* An invalid ranges-specifier (bad syntax, ``5-2``, ``+1``, other-range) is ignored as a
  whole, never partially honoured (§14.2 lets a server ignore it; RFC 7233 §2.1 required it).
* Ranges are sorted and then overlapping *and adjacent* ones are coalesced (§14.2 "MAY
  coalesce ... regardless of the order"). §15.3.7.2 asks to keep the request order for the
  parts that remain; we knowingly sort instead (players and browsers send ascending ranges,
  and a sorted body can be produced with one forward pass over the object).
* More than ``max_ranges`` ranges left *after* coalescing: the field is ignored and the whole
  representation is sent (§14.2 "MAY ignore ... a set of many small ranges"; §17.15). Counting
  after coalescing measures what would actually be sent; overlapping specs cannot amplify the
  response because they are merged first.
* Zero-length representation: ``first-pos`` ranges are unsatisfiable (416 ``bytes */0``).
  A suffix range with a non-zero length is *satisfiable* by the letter of §14.1.2, but there
  is no byte to put in a 206 (``Content-Range`` cannot express an empty range), so the field
  is ignored and an empty 200 is sent.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

__all__ = [
    "DEFAULT_MAX_RANGES",
    "ByteRange",
    "IgnoreReason",
    "MultipartPart",
    "MultipartPlan",
    "RangeDecision",
    "RangeOutcome",
    "parse_range_header",
]

DEFAULT_MAX_RANGES = 16

# RFC 9110 §5.6.3: OWS = *( SP / HTAB ). Nothing else counts as whitespace in a field.
_OWS = " \t"
# RFC 9110 §5.6.2: token = 1*tchar.
_TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# RFC 9110 §14.1.1: first-pos / last-pos / suffix-length = 1*DIGIT. ASCII only: int() alone
# would also accept "+5", " 5", "5_0" and non-ASCII digits.
_DIGITS_RE = re.compile(r"[0-9]+")
# Longer digit strings are larger than any object we can hold. Clamping them keeps int()
# away from CPython's 4300-digit conversion limit (a ValueError) on hostile input.
_MAX_DIGITS = 30
_HUGE: int = 10**_MAX_DIGITS


@dataclass(frozen=True, slots=True)
class ByteRange:
    """An inclusive, satisfiable byte range: ``0 <= start <= end < size``."""

    start: int
    end: int

    def __post_init__(self) -> None:
        if self.start < 0 or self.end < self.start:
            raise ValueError(f"invalid byte range {self.start}-{self.end}")

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    def content_range(self, size: int) -> str:
        """RFC 9110 §14.4: ``Content-Range: bytes first-pos "-" last-pos "/" complete-length``."""
        return f"bytes {self.start}-{self.end}/{size}"


class RangeOutcome(enum.Enum):
    FULL = "full"
    PARTIAL = "partial"
    UNSATISFIABLE = "unsatisfiable"


class IgnoreReason(enum.Enum):
    """Why a Range field led to a full 200 (useful for logs, metrics and tests)."""

    ABSENT = "absent"
    INVALID = "invalid"
    UNKNOWN_UNIT = "unknown_unit"
    TOO_MANY = "too_many"
    IF_RANGE_MISMATCH = "if_range_mismatch"  # decided by the caller (RFC 9110 §13.1.5)
    EMPTY_REPRESENTATION = "empty_representation"


@dataclass(frozen=True, slots=True)
class RangeDecision:
    outcome: RangeOutcome
    ranges: tuple[ByteRange, ...] = ()
    reason: IgnoreReason | None = None

    @classmethod
    def full(cls, reason: IgnoreReason) -> RangeDecision:
        return cls(RangeOutcome.FULL, (), reason)

    @classmethod
    def unsatisfiable(cls) -> RangeDecision:
        return cls(RangeOutcome.UNSATISFIABLE)

    @classmethod
    def partial(cls, ranges: Sequence[ByteRange]) -> RangeDecision:
        if not ranges:
            raise ValueError("a partial decision needs at least one range")
        return cls(RangeOutcome.PARTIAL, tuple(ranges))

    @property
    def is_multipart(self) -> bool:
        # §15.3.7: one range -> Content-Range on the response; several -> multipart/byteranges.
        return len(self.ranges) > 1


# A syntactically valid range-spec before it meets the representation size:
# (first, last) for int-range (last None when absent), (None, n) for suffix-range.
_Spec = tuple[int | None, int | None]


def parse_range_header(
    value: str | None, size: int, max_ranges: int = DEFAULT_MAX_RANGES
) -> RangeDecision:
    """Decide how to answer a ``Range`` field for a representation of ``size`` bytes.

    ``value`` is the field value as received (None when the field is absent). The caller is
    responsible for If-Range (RFC 9110 §13.1.5) and for the request method (§14.2).
    """
    if size < 0:
        raise ValueError("size must be >= 0")
    if max_ranges < 1:
        raise ValueError("max_ranges must be >= 1")
    if value is None:
        return RangeDecision.full(IgnoreReason.ABSENT)

    # §14.1.1: ranges-specifier = range-unit "=" range-set  (no OWS around "=").
    unit, eq, range_set = value.strip(_OWS).partition("=")
    if not eq or not _TOKEN_RE.fullmatch(unit):
        return RangeDecision.full(IgnoreReason.INVALID)
    # §14.1: "Range unit names are case-insensitive". §14.2: "An origin server MUST ignore a
    # Range header field that contains a range unit it does not understand."
    if unit.lower() != "bytes":
        return RangeDecision.full(IgnoreReason.UNKNOWN_UNIT)

    specs = _parse_range_set(range_set)
    if specs is None:
        return RangeDecision.full(IgnoreReason.INVALID)

    ranges = _coalesce(_resolve(specs, size))
    if not ranges:
        if size == 0 and any(first is None and n for first, n in specs):
            return RangeDecision.full(IgnoreReason.EMPTY_REPRESENTATION)  # CHOICE, see module doc
        # §14.1.2: no first-pos below the length and no non-zero suffix -> unsatisfiable.
        return RangeDecision.unsatisfiable()
    if len(ranges) > max_ranges:
        return RangeDecision.full(IgnoreReason.TOO_MANY)  # CHOICE, see module doc
    return RangeDecision.partial(ranges)


def _parse_range_set(text: str) -> list[_Spec] | None:
    """``range-set = 1#range-spec``; None when the set is invalid as a whole.

    §5.6.1: list elements are separated by OWS "," OWS, and "a recipient MUST accept lists
    that contain empty list elements" - so ``0-1,,3-4`` and ``, 0-1`` are fine, but at least
    one non-empty element is required.
    """
    specs: list[_Spec] = []
    for element in text.split(","):
        element = element.strip(_OWS)
        if not element:
            continue
        spec = _parse_range_spec(element)
        if spec is None:
            return None
        specs.append(spec)
    return specs or None


def _parse_range_spec(element: str) -> _Spec | None:
    # §14.1.1: range-spec = int-range / suffix-range / other-range; other-range has no meaning
    # for the bytes unit, so it is invalid here.
    first_text, dash, last_text = element.partition("-")
    if not dash:
        return None
    if not first_text:
        # suffix-range = "-" suffix-length
        suffix = _parse_digits(last_text)
        return None if suffix is None else (None, suffix)
    # int-range = first-pos "-" [ last-pos ]
    first = _parse_digits(first_text)
    if first is None:
        return None
    if not last_text:
        return (first, None)
    last = _parse_digits(last_text)
    # §14.1.1: "An int-range is invalid if the last-pos value is present and less than the
    # first-pos."
    if last is None or last < first:
        return None
    return (first, last)


def _parse_digits(text: str) -> int | None:
    if not _DIGITS_RE.fullmatch(text):
        return None
    significant = text.lstrip("0")
    if len(significant) > _MAX_DIGITS:
        return _HUGE
    return int(significant or "0")


def _resolve(specs: Iterable[_Spec], size: int) -> Iterator[ByteRange]:
    """Clip each spec to the representation, dropping the unsatisfiable ones (§14.1.2)."""
    for first, other in specs:
        if first is None:
            # "If the selected representation is shorter than the specified suffix-length,
            # the entire representation is used." A zero suffix-length selects nothing.
            suffix = other or 0
            if suffix and size:
                yield ByteRange(max(0, size - suffix), size - 1)
        elif first < size:
            # "If the last-pos value is absent, or if the value is greater than or equal to
            # the current length of the representation data, the byte range is interpreted
            # as the remainder of the representation".
            last = size - 1 if other is None else min(other, size - 1)
            yield ByteRange(first, last)


def _coalesce(ranges: Iterable[ByteRange]) -> list[ByteRange]:
    """Sort, then merge overlapping and adjacent ranges (§14.2 MAY coalesce; see module doc)."""
    merged: list[ByteRange] = []
    for rng in sorted(ranges, key=lambda r: (r.start, r.end)):
        if merged and rng.start <= merged[-1].end + 1:
            if rng.end > merged[-1].end:
                merged[-1] = ByteRange(merged[-1].start, rng.end)
        else:
            merged.append(rng)
    return merged


# --- multipart/byteranges (RFC 9110 §14.6, RFC 2046 §5.1.1) ---------------------------------

# A boundary must be a valid RFC 2046 boundary (bchars, 1..70) and, because we send it
# unquoted in Content-Type, also an RFC 9110 token: the intersection of both alphabets.
_BOUNDARY_RE = re.compile(r"[0-9A-Za-z'+_.\-]{1,70}")
_CRLF = b"\r\n"


@dataclass(frozen=True, slots=True)
class MultipartPart:
    """Bytes to write before the part's content, then the range of the object to copy."""

    preamble: bytes
    range: ByteRange


@dataclass(frozen=True, slots=True)
class MultipartPlan:
    boundary: str
    parts: tuple[MultipartPart, ...]
    closing: bytes
    content_length: int

    @property
    def content_type(self) -> str:
        return f"multipart/byteranges; boundary={self.boundary}"

    @classmethod
    def build(
        cls, ranges: Sequence[ByteRange], size: int, content_type: str, boundary: str
    ) -> MultipartPlan:
        """Lay out the body; the boundary should be unpredictable (e.g. secrets.token_hex)."""
        if not ranges:
            raise ValueError("a multipart body needs at least one range")
        if not _BOUNDARY_RE.fullmatch(boundary):
            raise ValueError(f"invalid multipart boundary {boundary!r}")
        if any(ch in content_type for ch in "\r\n\0"):
            raise ValueError("content type must not contain CR, LF or NUL")
        if any(r.end >= size for r in ranges):
            raise ValueError("range beyond the end of the representation")

        dash_boundary = b"--" + boundary.encode("ascii")
        parts: list[MultipartPart] = []
        for index, rng in enumerate(ranges):
            # RFC 2046: the CRLF before a delimiter belongs to the delimiter, so every part
            # but the first starts with CRLF; the body itself starts with the dash-boundary.
            lead = b"" if index == 0 else _CRLF
            headers = (
                f"Content-Type: {content_type}\r\nContent-Range: {rng.content_range(size)}\r\n\r\n"
            ).encode("latin-1")
            parts.append(MultipartPart(lead + dash_boundary + _CRLF + headers, rng))
        # close-delimiter = CRLF dash-boundary "--", then a final CRLF as most servers send.
        closing = _CRLF + dash_boundary + b"--" + _CRLF
        length = sum(len(p.preamble) + p.range.length for p in parts) + len(closing)
        return cls(boundary, tuple(parts), closing, length)
