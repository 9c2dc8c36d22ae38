"""Range header parsing and multipart planning (RFC 9110 §14), table-driven."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.http_ranges import (
    ByteRange,
    IgnoreReason,
    MultipartPlan,
    RangeDecision,
    RangeOutcome,
    parse_range_header,
)

R = ByteRange
FULL = RangeOutcome.FULL
UNSAT = RangeOutcome.UNSATISFIABLE


def partial(*pairs: tuple[int, int]) -> RangeDecision:
    return RangeDecision.partial([R(a, b) for a, b in pairs])


# (header, size, expected decision)
SATISFIABLE = [
    # the three single-range forms
    ("bytes=0-0", 100, partial((0, 0))),
    ("bytes=0-99", 100, partial((0, 99))),
    ("bytes=10-19", 100, partial((10, 19))),
    ("bytes=90-", 100, partial((90, 99))),
    ("bytes=0-", 100, partial((0, 99))),
    ("bytes=-10", 100, partial((90, 99))),
    ("bytes=-1", 100, partial((99, 99))),
    # clipping (§14.1.2)
    ("bytes=50-1000", 100, partial((50, 99))),
    ("bytes=99-99999", 100, partial((99, 99))),
    ("bytes=-1000", 100, partial((0, 99))),
    ("bytes=-100", 100, partial((0, 99))),
    # case-insensitive unit, OWS, empty list elements, leading zeros
    ("Bytes=0-1", 100, partial((0, 1))),
    ("BYTES=0-1", 100, partial((0, 1))),
    (" \tbytes=0-1 \t", 100, partial((0, 1))),
    ("bytes=0-1 , 3-4", 100, partial((0, 1), (3, 4))),
    ("bytes=0-1,\t3-4", 100, partial((0, 1), (3, 4))),
    ("bytes=0-1,,3-4", 100, partial((0, 1), (3, 4))),
    ("bytes=,0-1", 100, partial((0, 1))),
    ("bytes=0-1,", 100, partial((0, 1))),
    ("bytes= 0-1", 100, partial((0, 1))),
    ("bytes=007-008", 100, partial((7, 8))),
    # multiple ranges, sorted
    ("bytes=0-1,5-6", 100, partial((0, 1), (5, 6))),
    ("bytes=50-59,0-9", 100, partial((0, 9), (50, 59))),
    ("bytes=0-0,-1", 100, partial((0, 0), (99, 99))),
    # coalescing: overlapping, adjacent, contained, duplicate, suffix overlapping
    ("bytes=0-10,5-20", 100, partial((0, 20))),
    ("bytes=0-9,10-19", 100, partial((0, 19))),
    ("bytes=10-19,0-9", 100, partial((0, 19))),
    ("bytes=0-50,10-20", 100, partial((0, 50))),
    ("bytes=5-6,5-6,5-6", 100, partial((5, 6))),
    ("bytes=0-,-10", 100, partial((0, 99))),
    ("bytes=0-1,2-3,10-11,12-", 100, partial((0, 3), (10, 99))),
    ("bytes=0-9,11-19", 100, partial((0, 9), (11, 19))),  # 1-byte gap: not adjacent
    # unsatisfiable members are dropped, the rest served (§14.1.2)
    ("bytes=200-300,0-1", 100, partial((0, 1))),
    ("bytes=100-,-5", 100, partial((95, 99))),
    ("bytes=-0,0-1", 100, partial((0, 1))),
    # huge numbers
    ("bytes=0-99999999999999999999999", 100, partial((0, 99))),
    ("bytes=-99999999999999999999999", 100, partial((0, 99))),
    ("bytes=0-" + "9" * 5000, 100, partial((0, 99))),
    ("bytes=" + "0" * 5000 + "1-2", 100, partial((1, 2))),
    # > 4 GiB
    ("bytes=4294967296-4294967299", 5 * 2**30, partial((2**32, 2**32 + 3))),
    ("bytes=-1", 5 * 2**30, partial((5 * 2**30 - 1, 5 * 2**30 - 1))),
]


@pytest.mark.parametrize(("header", "size", "expected"), SATISFIABLE)
def test_satisfiable(header: str, size: int, expected: RangeDecision) -> None:
    assert parse_range_header(header, size) == expected


UNSATISFIABLE = [
    ("bytes=100-", 100),
    ("bytes=100-200", 100),
    ("bytes=-0", 100),
    ("bytes=-0,-0", 100),
    ("bytes=1000-2000,500-", 100),
    ("bytes=" + "9" * 40 + "-", 100),
    ("bytes=0-", 0),
    ("bytes=0-0", 0),
    ("bytes=-0", 0),
]


@pytest.mark.parametrize(("header", "size"), UNSATISFIABLE)
def test_unsatisfiable(header: str, size: int) -> None:
    assert parse_range_header(header, size) == RangeDecision.unsatisfiable()


IGNORED = [
    (None, IgnoreReason.ABSENT),
    # invalid syntax -> ignore the whole field
    ("bytes=5-2", IgnoreReason.INVALID),
    ("bytes=0-1,5-2", IgnoreReason.INVALID),
    ("bytes=", IgnoreReason.INVALID),
    ("bytes=,", IgnoreReason.INVALID),
    ("bytes= , ", IgnoreReason.INVALID),
    ("bytes", IgnoreReason.INVALID),
    ("=0-1", IgnoreReason.INVALID),
    ("", IgnoreReason.INVALID),
    ("bytes =0-1", IgnoreReason.INVALID),
    ("bytes= 0 -1", IgnoreReason.INVALID),
    ("bytes=0- 1", IgnoreReason.INVALID),
    ("bytes=+0-1", IgnoreReason.INVALID),
    ("bytes=0-+1", IgnoreReason.INVALID),
    ("bytes=-+1", IgnoreReason.INVALID),
    ("bytes=--1", IgnoreReason.INVALID),
    ("bytes=0--1", IgnoreReason.INVALID),
    ("bytes=1-2-3", IgnoreReason.INVALID),
    ("bytes=-", IgnoreReason.INVALID),
    ("bytes=a-b", IgnoreReason.INVALID),
    ("bytes=0x10-0x20", IgnoreReason.INVALID),
    ("bytes=1_0-20", IgnoreReason.INVALID),
    ("bytes=\u0661-\u0662", IgnoreReason.INVALID),  # ARABIC-INDIC digits: not DIGIT
    ("bytes=0-1;3-4", IgnoreReason.INVALID),
    ("bytes=0-1\n", IgnoreReason.INVALID),
    ("bytes=0.5-1", IgnoreReason.INVALID),
    ("bytes=0-1, bytes=3-4", IgnoreReason.INVALID),
    ("by tes=0-1", IgnoreReason.INVALID),
    # unknown units
    ("items=0-1", IgnoreReason.UNKNOWN_UNIT),
    ("none=0-1", IgnoreReason.UNKNOWN_UNIT),
    ("byte=0-1", IgnoreReason.UNKNOWN_UNIT),
    ("bytesx=0-1", IgnoreReason.UNKNOWN_UNIT),
]


@pytest.mark.parametrize(("header", "reason"), IGNORED)
def test_ignored(header: str | None, reason: IgnoreReason) -> None:
    assert parse_range_header(header, 100) == RangeDecision.full(reason)


def test_suffix_on_empty_representation_sends_empty_200() -> None:
    # Satisfiable per §14.1.2 but a 206 cannot describe zero bytes: documented choice.
    for header in ("bytes=-1", "bytes=-5,0-0", "bytes=0-,-1"):
        assert parse_range_header(header, 0) == RangeDecision.full(
            IgnoreReason.EMPTY_REPRESENTATION
        )


@pytest.mark.parametrize(
    ("header", "max_ranges", "expected"),
    [
        ("bytes=0-0,2-2,4-4", 3, partial((0, 0), (2, 2), (4, 4))),
        ("bytes=0-0,2-2,4-4,6-6", 3, RangeDecision.full(IgnoreReason.TOO_MANY)),
        # counted after coalescing: many overlapping specs are one range
        ("bytes=" + ",".join(["0-10"] * 100), 3, partial((0, 10))),
        ("bytes=" + ",".join(f"{i}-{i}" for i in range(100)), 1, partial((0, 99))),
        ("bytes=0-0,2-2", 1, RangeDecision.full(IgnoreReason.TOO_MANY)),
    ],
)
def test_max_ranges(header: str, max_ranges: int, expected: RangeDecision) -> None:
    assert parse_range_header(header, 100, max_ranges=max_ranges) == expected


def test_default_max_ranges_is_16() -> None:
    sixteen = "bytes=" + ",".join(f"{2 * i}-{2 * i}" for i in range(16))
    seventeen = "bytes=" + ",".join(f"{2 * i}-{2 * i}" for i in range(17))
    assert len(parse_range_header(sixteen, 100).ranges) == 16
    assert parse_range_header(seventeen, 100) == RangeDecision.full(IgnoreReason.TOO_MANY)


def test_too_many_ranges_is_checked_after_dropping_unsatisfiable() -> None:
    header = "bytes=0-0,200-,300-,400-"
    assert parse_range_header(header, 100, max_ranges=1) == partial((0, 0))


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [({"size": -1}, "size"), ({"size": 10, "max_ranges": 0}, "max_ranges")],
)
def test_argument_checks(kwargs: dict[str, int], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        parse_range_header("bytes=0-1", **kwargs)


def test_byte_range_helpers() -> None:
    assert R(0, 0).length == 1
    assert R(10, 19).content_range(100) == "bytes 10-19/100"
    with pytest.raises(ValueError):
        R(5, 4)
    with pytest.raises(ValueError):
        R(-1, 4)


def test_decision_is_multipart() -> None:
    assert not partial((0, 1)).is_multipart
    assert partial((0, 1), (5, 6)).is_multipart


# --- property: the decision covers exactly the union of the satisfiable requests -------------

_spec = st.one_of(
    st.tuples(st.integers(0, 300), st.integers(0, 300)).map(lambda t: f"{min(t)}-{max(t)}"),
    st.integers(0, 300).map(lambda n: f"{n}-"),
    st.integers(0, 300).map(lambda n: f"-{n}"),
)


def _covered(spec: str, size: int) -> set[int]:
    first, _, last = spec.partition("-")
    if not first:
        return set(range(max(0, size - int(last)), size)) if int(last) else set()
    end = size - 1 if not last else min(int(last), size - 1)
    return set(range(int(first), end + 1))


@given(st.lists(_spec, min_size=1, max_size=12), st.integers(0, 250))
def test_property_union_sorted_disjoint(specs: list[str], size: int) -> None:
    decision = parse_range_header("bytes=" + ",".join(specs), size, max_ranges=1000)
    wanted = set().union(*(_covered(s, size) for s in specs))
    if decision.outcome is FULL:
        assert size == 0 and decision.reason is IgnoreReason.EMPTY_REPRESENTATION
        return
    if decision.outcome is UNSAT:
        assert not wanted
        return
    got: set[int] = set()
    for rng in decision.ranges:
        got |= set(range(rng.start, rng.end + 1))
    assert got == wanted
    for left, right in zip(decision.ranges, decision.ranges[1:], strict=False):
        assert left.end + 1 < right.start  # sorted, no overlap, no adjacency


# --- multipart planning ----------------------------------------------------------------------


def test_multipart_plan_layout_and_length() -> None:
    plan = MultipartPlan.build([R(0, 1), R(5, 9)], 10, "video/mp4", "BOUNDARY")
    assert plan.content_type == "multipart/byteranges; boundary=BOUNDARY"
    assert [p.range for p in plan.parts] == [R(0, 1), R(5, 9)]
    assert plan.parts[0].preamble == (
        b"--BOUNDARY\r\nContent-Type: video/mp4\r\nContent-Range: bytes 0-1/10\r\n\r\n"
    )
    assert plan.parts[1].preamble == (
        b"\r\n--BOUNDARY\r\nContent-Type: video/mp4\r\nContent-Range: bytes 5-9/10\r\n\r\n"
    )
    assert plan.closing == b"\r\n--BOUNDARY--\r\n"
    data = b"0123456789"
    body = b"".join(p.preamble + data[p.range.start : p.range.end + 1] for p in plan.parts)
    body += plan.closing
    assert plan.content_length == len(body)
    assert body == (
        b"--BOUNDARY\r\nContent-Type: video/mp4\r\nContent-Range: bytes 0-1/10\r\n\r\n01"
        b"\r\n--BOUNDARY\r\nContent-Type: video/mp4\r\nContent-Range: bytes 5-9/10\r\n\r\n56789"
        b"\r\n--BOUNDARY--\r\n"
    )


def test_multipart_plan_length_above_4gib() -> None:
    size = 6 * 2**30
    ranges = [R(0, 2**32), R(5 * 2**30, size - 1)]
    plan = MultipartPlan.build(ranges, size, "video/mp4", "b")
    overhead = sum(len(p.preamble) for p in plan.parts) + len(plan.closing)
    assert plan.content_length == overhead + (2**32 + 1) + 2**30


@pytest.mark.parametrize(
    ("ranges", "size", "content_type", "boundary"),
    [
        ([], 10, "video/mp4", "b"),
        ([R(0, 1)], 10, "video/mp4", ""),
        ([R(0, 1)], 10, "video/mp4", "x" * 71),
        ([R(0, 1)], 10, "video/mp4", "has space"),
        ([R(0, 1)], 10, "video/mp4", 'quo"te'),
        ([R(0, 1)], 10, "video/mp4\r\nX-Evil: 1", "b"),
        ([R(0, 10)], 10, "video/mp4", "b"),
    ],
)
def test_multipart_plan_rejects(
    ranges: list[ByteRange], size: int, content_type: str, boundary: str
) -> None:
    with pytest.raises(ValueError):
        MultipartPlan.build(ranges, size, content_type, boundary)
