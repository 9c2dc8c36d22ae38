"""send_object mounted in a tiny aiohttp app over real files.

Every test runs three ways: local file with sendfile, local file with the read/write
fallback, and the `open_range` streaming path (local_path=None).
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientPayloadError, ClientResponse, ClientSession, web
from aiohttp.test_utils import TestClient, make_mocked_request

from server.conditional import format_http_date, make_etag
from server.file_response import OpenRange, send_object

MODES = ("sendfile", "copy", "stream")
LM = 1_600_000_000  # Sun, 13 Sep 2020 12:26:40 GMT
LM_TEXT = format_http_date(LM)
SIZE = 300_001
CONTENT_TYPE = "video/mp4"
EXTRA = {"Cache-Control": "public, max-age=60", "Content-Disposition": "inline"}

Client = TestClient[web.Request, web.Application]
ClientFactory = Callable[..., Awaitable[Client]]


def file_open_range(path: Path, chunk: int = 50_000) -> OpenRange:
    """A simple storage-like open_range (start, end inclusive) over a local file."""

    async def open_range(start: int, end: int) -> AsyncIterator[bytes]:
        with open(path, "rb") as f:  # noqa: ASYNC230 - a test stand-in for object storage
            f.seek(start)
            remaining = end - start + 1
            while remaining > 0:
                data = f.read(min(chunk, remaining))
                if not data:
                    return
                remaining -= len(data)
                yield data

    return open_range


@dataclass
class Served:
    path: Path
    size_delta: int = 0  # lie about the size (simulates a file that shrank)
    open_range: OpenRange | None = None
    calls: int = 0
    finished: int = 0
    kwargs: dict[str, Any] = field(default_factory=dict)


def make_app(served: Served, mode: str) -> web.Application:
    async def handler(request: web.Request) -> web.StreamResponse:
        served.calls += 1
        try:
            st = served.path.stat()
            size = st.st_size + served.size_delta
            local = mode != "stream"
            return await send_object(
                request,
                size=size,
                mtime=st.st_mtime,
                etag=make_etag(served.path.name, size, st.st_mtime),
                content_type=CONTENT_TYPE,
                local_path=served.path if local else None,
                open_range=None if local else served.open_range or file_open_range(served.path),
                extra_headers=EXTRA,
                use_sendfile=mode == "sendfile",
                max_ranges=int(request.query.get("max_ranges", "16")),
                chunk_size=64 * 1024,
                **served.kwargs,
            )
        finally:
            served.finished += 1

    app = web.Application()
    app.router.add_route("*", "/obj", handler)
    return app


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def data() -> bytes:
    return os.urandom(SIZE)


def write_file(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    os.utime(path, (LM, LM))
    return path


@pytest.fixture
def media(tmp_path: Path, data: bytes) -> Path:
    return write_file(tmp_path / "movie.mp4", data)


@pytest.fixture
async def client(aiohttp_client: ClientFactory, media: Path, mode: str) -> Client:
    return await aiohttp_client(make_app(Served(media), mode))


@pytest.fixture
def etag(media: Path) -> str:
    st = media.stat()
    return make_etag(media.name, st.st_size, st.st_mtime)


async def get(client: Client, headers: dict[str, str] | None = None, **kw: Any) -> ClientResponse:
    resp = await client.get("/obj", headers=headers or {}, **kw)
    await resp.read()
    return resp


def parse_multipart(body: bytes, content_type: str) -> list[tuple[dict[str, str], bytes]]:
    """Strict multipart/byteranges parser (RFC 2046 framing as we generate it)."""
    mime, _, param = content_type.partition("; ")
    assert mime == "multipart/byteranges"
    name, _, boundary = param.partition("=")
    assert name == "boundary" and boundary
    delim = b"--" + boundary.encode()
    assert body.startswith(delim + b"\r\n")
    closing = b"\r\n" + delim + b"--\r\n"
    assert body.endswith(closing)
    inner = body[len(delim) + 2 : -len(closing)]
    parts = []
    for raw in inner.split(b"\r\n" + delim + b"\r\n"):
        head, sep, content = raw.partition(b"\r\n\r\n")
        assert sep
        headers = dict(line.decode().split(": ", 1) for line in head.split(b"\r\n"))
        parts.append((headers, content))
    return parts


def assert_common_headers(resp: ClientResponse, etag: str) -> None:
    assert resp.headers["Accept-Ranges"] == "bytes"
    assert resp.headers["ETag"] == etag
    assert resp.headers["Last-Modified"] == LM_TEXT
    assert "Transfer-Encoding" not in resp.headers


# --- 200 ---------------------------------------------------------------------------------------


async def test_full_get(client: Client, data: bytes, etag: str) -> None:
    resp = await get(client)
    assert resp.status == 200
    assert await resp.read() == data
    assert_common_headers(resp, etag)
    assert resp.headers["Content-Length"] == str(SIZE)
    assert resp.headers["Content-Type"] == CONTENT_TYPE
    assert resp.headers["Cache-Control"] == EXTRA["Cache-Control"]
    assert resp.headers["Content-Disposition"] == "inline"
    assert "Content-Range" not in resp.headers


async def test_keep_alive_connection_is_reused_correctly(client: Client, data: bytes) -> None:
    # Framing must be exact for the next response on the same connection to parse.
    for header in ("bytes=0-9", "bytes=5-6,100-", None, "bytes=-3"):
        resp = await get(client, {"Range": header} if header else None)
        assert resp.status in (200, 206)
    assert (await get(client)).status == 200
    assert await (await get(client)).read() == data


# --- single ranges -----------------------------------------------------------------------------

SINGLE = [
    ("bytes=0-0", 0, 0),
    ("bytes=0-99", 0, 99),
    ("bytes=1000-1999", 1000, 1999),
    ("bytes=200000-", 200000, SIZE - 1),
    ("bytes=0-", 0, SIZE - 1),
    ("bytes=-10", SIZE - 10, SIZE - 1),
    ("bytes=-1", SIZE - 1, SIZE - 1),
    ("bytes=-9999999", 0, SIZE - 1),
    ("bytes=299990-99999999999999999999999", 299990, SIZE - 1),
    ("Bytes=5-9", 5, 9),
    ("BYTES=5-9", 5, 9),
    ("bytes= 5-9 ", 5, 9),
    ("bytes=0-9,10-19,5-15", 0, 19),  # several ranges coalescing into one -> not multipart
    ("bytes=50-59,,", 50, 59),
    ("bytes=999999-,10-11", 10, 11),  # unsatisfiable member dropped
]


@pytest.mark.parametrize(("header", "start", "end"), SINGLE)
async def test_single_range(
    client: Client, data: bytes, etag: str, header: str, start: int, end: int
) -> None:
    resp = await get(client, {"Range": header})
    assert resp.status == 206
    assert_common_headers(resp, etag)
    assert resp.headers["Content-Range"] == f"bytes {start}-{end}/{SIZE}"
    assert resp.headers["Content-Length"] == str(end - start + 1)
    assert resp.headers["Content-Type"] == CONTENT_TYPE
    assert await resp.read() == data[start : end + 1]


# --- multipart ---------------------------------------------------------------------------------

MULTI = [
    ("bytes=0-9,100-199,-5", [(0, 9), (100, 199), (SIZE - 5, SIZE - 1)]),
    ("bytes=100-199,0-9", [(0, 9), (100, 199)]),
    ("bytes=0-9,5-19,100-109,110-119", [(0, 19), (100, 119)]),  # overlap + adjacency
    ("bytes=0-0, 2-2,\t4-4", [(0, 0), (2, 2), (4, 4)]),
    ("bytes=0-65535,65537-200000,250000-", [(0, 65535), (65537, 200000), (250000, SIZE - 1)]),
]


@pytest.mark.parametrize(("header", "expected"), MULTI)
async def test_multi_range(
    client: Client, data: bytes, etag: str, header: str, expected: list[tuple[int, int]]
) -> None:
    resp = await get(client, {"Range": header})
    assert resp.status == 206
    assert_common_headers(resp, etag)
    assert "Content-Range" not in resp.headers
    body = await resp.read()
    assert resp.headers["Content-Length"] == str(len(body))
    parts = parse_multipart(body, resp.headers["Content-Type"])
    assert [(h["Content-Range"], h["Content-Type"]) for h, _ in parts] == [
        (f"bytes {a}-{b}/{SIZE}", CONTENT_TYPE) for a, b in expected
    ]
    assert [content for _, content in parts] == [data[a : b + 1] for a, b in expected]


async def test_too_many_ranges_sends_everything(client: Client, data: bytes) -> None:
    resp = await get(client, {"Range": "bytes=0-0,2-2,4-4"}, params={"max_ranges": "2"})
    assert resp.status == 200
    assert await resp.read() == data
    resp = await get(client, {"Range": "bytes=0-0,2-2"}, params={"max_ranges": "2"})
    assert resp.status == 206


async def test_default_limit_is_16_ranges(client: Client, data: bytes) -> None:
    seventeen = "bytes=" + ",".join(f"{i * 10}-{i * 10}" for i in range(17))
    resp = await get(client, {"Range": seventeen})
    assert resp.status == 200 and await resp.read() == data


# --- 416 / ignored -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header", ["bytes=300001-", "bytes=999999-9999999", "bytes=-0", "bytes=400000-,-0"]
)
async def test_unsatisfiable(client: Client, etag: str, header: str) -> None:
    resp = await get(client, {"Range": header})
    assert resp.status == 416
    assert resp.headers["Content-Range"] == f"bytes */{SIZE}"
    assert resp.headers["Content-Length"] == "0"
    assert_common_headers(resp, etag)
    assert await resp.read() == b""


@pytest.mark.parametrize(
    "header",
    [
        "bytes=5-2",
        "bytes=0-1,5-2",
        "bytes=+1-2",
        "bytes=a-b",
        "bytes",
        "bytes=",
        "items=0-1",
        "seconds=0-1",
        "bytes = 0-1",
    ],
)
async def test_ignored_range_header(client: Client, data: bytes, header: str) -> None:
    resp = await get(client, {"Range": header})
    assert resp.status == 200
    assert "Content-Range" not in resp.headers
    assert await resp.read() == data


async def test_repeated_range_field_is_ignored(client: Client, data: bytes) -> None:
    resp = await client.get("/obj", headers=[("Range", "bytes=0-1"), ("Range", "bytes=2-3")])
    assert resp.status == 200 and await resp.read() == data


# --- If-Range ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("if_range", "partial"),
    [
        ("{etag}", True),
        ('"something-else"', False),
        ("W/{etag}", False),  # weak tags never match
        (LM_TEXT, True),  # exact date
        (format_http_date(LM - 1), False),  # older
        (format_http_date(LM + 1), False),  # newer: not an exact match
        ("not a validator", False),
    ],
)
async def test_if_range(
    client: Client, data: bytes, etag: str, if_range: str, partial: bool
) -> None:
    headers = {"Range": "bytes=10-19", "If-Range": if_range.format(etag=etag)}
    resp = await get(client, headers)
    if partial:
        assert resp.status == 206 and await resp.read() == data[10:20]
    else:
        assert resp.status == 200 and await resp.read() == data


async def test_if_range_without_range_is_ignored(client: Client, data: bytes) -> None:
    resp = await get(client, {"If-Range": '"nope"'})
    assert resp.status == 200 and await resp.read() == data


async def test_if_range_mismatch_beats_unsatisfiable(client: Client, data: bytes) -> None:
    resp = await get(client, {"Range": "bytes=999999-", "If-Range": '"old"'})
    assert resp.status == 200 and await resp.read() == data


# --- preconditions -----------------------------------------------------------------------------

OLDER, NEWER = format_http_date(LM - 10), format_http_date(LM + 10)

# headers (with {etag}), expected status; evaluated in RFC 9110 §13.2.2 order
CONDITIONS = [
    ({"If-Match": "{etag}"}, 200),
    ({"If-Match": '"other"'}, 412),
    ({"If-Match": "W/{etag}"}, 412),
    ({"If-Match": "*"}, 200),
    ({"If-Match": "garbage"}, 412),
    ({"If-Unmodified-Since": LM_TEXT}, 200),
    ({"If-Unmodified-Since": OLDER}, 412),
    ({"If-Unmodified-Since": "garbage"}, 200),
    ({"If-Match": "{etag}", "If-Unmodified-Since": OLDER}, 200),  # If-Match wins
    ({"If-None-Match": "{etag}"}, 304),
    ({"If-None-Match": "W/{etag}"}, 304),  # weak comparison
    ({"If-None-Match": '"a", {etag}'}, 304),
    ({"If-None-Match": "*"}, 304),
    ({"If-None-Match": '"other"'}, 200),
    ({"If-Modified-Since": LM_TEXT}, 304),
    ({"If-Modified-Since": NEWER}, 304),
    ({"If-Modified-Since": OLDER}, 200),
    ({"If-Modified-Since": "garbage"}, 200),
    ({"If-None-Match": '"other"', "If-Modified-Since": NEWER}, 200),  # INM wins
    ({"If-None-Match": "{etag}", "If-Modified-Since": OLDER}, 304),
    ({"If-Match": '"other"', "If-None-Match": "{etag}"}, 412),  # step 1 before step 3
    ({"If-Unmodified-Since": OLDER, "If-Modified-Since": NEWER}, 412),
    ({"If-None-Match": "{etag}", "Range": "bytes=0-1"}, 304),  # step 3 before step 5
    ({"If-Match": '"other"', "Range": "bytes=0-1"}, 412),
    ({"If-Match": "{etag}", "Range": "bytes=0-1"}, 206),
    ({"If-Modified-Since": OLDER, "Range": "bytes=0-1"}, 206),
]


@pytest.mark.parametrize(("headers", "status"), CONDITIONS)
async def test_preconditions(
    client: Client, data: bytes, etag: str, headers: dict[str, str], status: int
) -> None:
    resp = await get(client, {k: v.format(etag=etag) for k, v in headers.items()})
    assert resp.status == status
    assert_common_headers(resp, etag)
    body = await resp.read()
    if status == 200:
        assert body == data
    elif status == 304:
        assert body == b""
        assert "Content-Length" not in resp.headers
        assert resp.headers["Cache-Control"] == EXTRA["Cache-Control"]
        assert "Content-Disposition" not in resp.headers  # §15.4.5: no other metadata
        assert "Content-Range" not in resp.headers
    elif status == 412:
        assert body == b"" and resp.headers["Content-Length"] == "0"


async def test_method_not_allowed(client: Client) -> None:
    resp = await client.post("/obj")
    assert resp.status == 405
    assert resp.headers["Allow"] == "GET,HEAD"


# --- HEAD --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Range": "bytes=0-99"},
        {"Range": "bytes=-5"},
        {"Range": "bytes=0-9,100-199,-5"},
        {"Range": "bytes=999999-"},
        {"Range": "bytes=5-2"},
        {"Range": "bytes=0-9", "If-Range": '"old"'},
        {"If-None-Match": "*"},
        {"If-Match": '"nope"'},
    ],
)
async def test_head_matches_get(client: Client, headers: dict[str, str]) -> None:
    got = await get(client, headers)
    head = await client.head("/obj", headers=headers)
    assert await head.read() == b""
    assert head.status == got.status

    def comparable(resp: ClientResponse) -> dict[str, str]:
        return {k: v for k, v in resp.headers.items() if k != "Date"}

    assert comparable(head) == comparable(got)


# --- sendfile plumbing -------------------------------------------------------------------------


@pytest.fixture
async def sendfile_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """(offset, count) of every loop.sendfile attempt (each must then send all of it)."""
    loop = asyncio.get_running_loop()
    original = loop.sendfile
    calls: list[tuple[int, int]] = []

    async def spy(
        transport: Any, file: Any, offset: int = 0, count: int | None = None, **kw: Any
    ) -> int:
        calls.append((offset, count or 0))
        sent = await original(transport, file, offset, count, **kw)
        assert sent == count
        return sent

    monkeypatch.setattr(loop, "sendfile", spy)
    return calls


async def test_sendfile_used_only_when_enabled(
    client: Client, data: bytes, mode: str, sendfile_calls: list[tuple[int, int]]
) -> None:
    resp = await get(client, {"Range": "bytes=0-9,100-199"})
    assert resp.status == 206
    assert sendfile_calls == ([(0, 10), (100, 100)] if mode == "sendfile" else [])


@pytest.mark.parametrize(
    "error", [NotImplementedError, asyncio.SendfileNotAvailableError, RuntimeError]
)
async def test_falls_back_when_sendfile_is_unavailable(
    aiohttp_client: ClientFactory,
    media: Path,
    data: bytes,
    monkeypatch: pytest.MonkeyPatch,
    error: type[Exception],
) -> None:
    calls = []

    async def unavailable(*args: Any, **kw: Any) -> int:
        calls.append(args)
        raise error("no sendfile here")  # e.g. uvloop, or a transport without it

    monkeypatch.setattr(asyncio.get_running_loop(), "sendfile", unavailable)
    client = await aiohttp_client(make_app(Served(media), "sendfile"))
    resp = await get(client, {"Range": "bytes=0-9,100-199"})
    parts = parse_multipart(await resp.read(), resp.headers["Content-Type"])
    assert [content for _, content in parts] == [data[0:10], data[100:200]]
    assert len(calls) == 1  # not retried for the second part
    assert await (await get(client)).read() == data


def self_signed_context(tmp_path: Path) -> ssl.SSLContext:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return context


async def test_tls_uses_the_copy_fallback(
    tmp_path: Path, media: Path, data: bytes, sendfile_calls: list[tuple[int, int]]
) -> None:
    runner = web.AppRunner(make_app(Served(media), "sendfile"))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=self_signed_context(tmp_path))
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with ClientSession() as session:
            url = f"https://127.0.0.1:{port}/obj"
            async with session.get(url, ssl=False, headers={"Range": "bytes=0-9,-5"}) as resp:
                parts = parse_multipart(await resp.read(), resp.headers["Content-Type"])
            async with session.get(url, ssl=False) as resp:
                assert await resp.read() == data
    finally:
        await runner.cleanup()
    assert [c for _, c in parts] == [data[:10], data[-5:]]
    assert sendfile_calls == []  # TLS needs the bytes in user space


async def test_open_range_delivering_too_much_is_clipped(
    aiohttp_client: ClientFactory, media: Path, data: bytes
) -> None:
    async def sloppy(start: int, end: int) -> AsyncIterator[bytes]:
        yield data[start:]  # ignores `end`: everything up to EOF in one chunk

    client = await aiohttp_client(make_app(Served(media, open_range=sloppy), "stream"))
    for _ in range(2):  # the connection stays usable: framing was exact
        resp = await get(client, {"Range": "bytes=10-19,100-109"})
        parts = parse_multipart(await resp.read(), resp.headers["Content-Type"])
        assert [c for _, c in parts] == [data[10:20], data[100:110]]


# --- edge files --------------------------------------------------------------------------------


async def test_empty_file(aiohttp_client: ClientFactory, tmp_path: Path, mode: str) -> None:
    client = await aiohttp_client(make_app(Served(write_file(tmp_path / "e", b"")), mode))
    resp = await get(client)
    assert (resp.status, resp.headers["Content-Length"], await resp.read()) == (200, "0", b"")
    for header in ("bytes=0-", "bytes=0-0", "bytes=-0"):
        resp = await get(client, {"Range": header})
        assert resp.status == 416 and resp.headers["Content-Range"] == "bytes */0"
    # documented choice: a non-zero suffix on an empty representation -> empty 200
    resp = await get(client, {"Range": "bytes=-5"})
    assert (resp.status, resp.headers["Content-Length"], await resp.read()) == (200, "0", b"")


BIG = 5 * 2**30 + 123
MARKS = {2**32 - 4: b"ABCDEFGH", 2**32 + 100: b"above-4GiB", BIG - 6: b"theEND"}


@pytest.fixture
def big_file(tmp_path: Path) -> Path:
    path = tmp_path / "big.mkv"
    with open(path, "wb") as f:
        os.truncate(f.fileno(), BIG)  # sparse: no disk space used
        for offset, mark in MARKS.items():
            os.pwrite(f.fileno(), mark, offset)
    os.utime(path, (LM, LM))
    return path


async def test_ranges_above_4gib(aiohttp_client: ClientFactory, big_file: Path, mode: str) -> None:
    client = await aiohttp_client(make_app(Served(big_file), mode))
    head = await client.head("/obj")
    assert head.status == 200 and head.headers["Content-Length"] == str(BIG)

    resp = await get(client, {"Range": f"bytes={2**32 - 4}-{2**32 + 3}"})
    assert resp.status == 206
    assert resp.headers["Content-Range"] == f"bytes {2**32 - 4}-{2**32 + 3}/{BIG}"
    assert await resp.read() == b"ABCDEFGH"

    resp = await get(client, {"Range": "bytes=-6"})
    assert resp.headers["Content-Range"] == f"bytes {BIG - 6}-{BIG - 1}/{BIG}"
    assert await resp.read() == b"theEND"

    resp = await get(client, {"Range": f"bytes={2**32 + 100}-{2**32 + 109},{BIG - 6}-"})
    parts = parse_multipart(await resp.read(), resp.headers["Content-Type"])
    assert [c for _, c in parts] == [b"above-4GiB", b"theEND"]
    assert parts[0][0]["Content-Range"] == f"bytes {2**32 + 100}-{2**32 + 109}/{BIG}"

    resp = await get(client, {"Range": f"bytes={BIG}-"})
    assert resp.status == 416 and resp.headers["Content-Range"] == f"bytes */{BIG}"


# --- failures mid-body -------------------------------------------------------------------------


async def test_file_shorter_than_announced_aborts_connection(
    aiohttp_client: ClientFactory, media: Path, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    served = Served(media, size_delta=1000)
    client = await aiohttp_client(make_app(served, mode))
    resp = await client.get("/obj")
    assert resp.status == 200
    with pytest.raises(ClientPayloadError):
        await resp.read()
    await wait_for(lambda: served.finished == served.calls)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.name for r in errors] == ["reelgate.media"]
    assert errors[0].exc_info is not None  # a real server-side failure keeps its traceback


async def test_backend_connection_error_is_not_mistaken_for_client(
    aiohttp_client: ClientFactory, media: Path, caplog: pytest.LogCaptureFixture
) -> None:
    closed = []

    async def flaky(start: int, end: int) -> AsyncIterator[bytes]:
        try:
            yield b"x" * 10
            raise ConnectionResetError("storage hung up")
        finally:
            closed.append(True)

    served = Served(media, open_range=flaky)
    client = await aiohttp_client(make_app(served, "stream"))
    resp = await client.get("/obj")
    with pytest.raises(ClientPayloadError):
        await resp.read()
    await wait_for(lambda: served.finished == served.calls)
    assert closed == [True]
    assert any(r.name == "reelgate.media" and r.levelno == logging.ERROR for r in caplog.records)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def wait_for(predicate: Callable[[], bool], seconds: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not predicate():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


@asynccontextmanager
async def running(app: web.Application, *, handler_cancellation: bool) -> AsyncIterator[int]:
    """A real server (TestServer always enables handler_cancellation; production does not)."""
    runner = web.AppRunner(app, handler_cancellation=handler_cancellation)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("handler_cancellation", [False, True], ids=["nocancel", "cancel"])
@pytest.mark.parametrize("range_header", [None, "bytes=0-1000,2000000-"], ids=["200", "206"])
async def test_client_abort_releases_file_descriptors(
    tmp_path: Path,
    mode: str,
    range_header: str | None,
    handler_cancellation: bool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    path = tmp_path / "large.bin"
    path.touch()
    os.truncate(path, 64 * 2**20)  # sparse; much more than the socket buffers hold
    served = Served(path)
    extra = f"Range: {range_header}\r\n" if range_header else ""
    raw_request = f"GET /obj HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode()

    async with running(make_app(served, mode), handler_cancellation=handler_cancellation) as port:
        baseline = open_fds()
        aborts = 10
        for _ in range(aborts):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(raw_request)
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.split(b" ", 2)[1] == (b"206" if range_header else b"200")
            await reader.readexactly(200_000)  # mid-body
            writer.close()  # unread data pending -> RST
            await writer.wait_closed()

        # Give the server a moment to notice; every handler must finish and release its file.
        await wait_for(lambda: served.finished == aborts)
        await wait_for(lambda: open_fds() <= baseline)

    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert not [r for r in caplog.records if r.exc_info]  # no stack trace for client aborts


# --- argument checks ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"size": -1}, "size"),
        ({"local_path": None, "open_range": None}, "local_path or open_range"),
        ({"extra_headers": {"content-length": "1"}}, "content-length"),
        ({"extra_headers": {"ETag": '"x"'}}, "ETag"),
        ({"chunk_size": 0}, "chunk_size"),
        ({"max_ranges": 0}, "max_ranges"),
    ],
)
async def test_argument_checks(media: Path, kwargs: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {
        "size": 1,
        "mtime": LM,
        "etag": '"x"',
        "content_type": CONTENT_TYPE,
        "local_path": media,
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        await send_object(make_mocked_request("GET", "/obj"), **args)
