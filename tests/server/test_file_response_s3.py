"""send_object serving an object from S3 storage (moto server): the open_range path.

The object is a real multipart upload (larger than one 8 MiB part), so ranges also
cross the part boundaries inside the store.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from server.conditional import format_http_date, make_etag
from server.file_response import send_object
from storage import ObjectInfo, S3Storage
from tests.storage.s3_fixtures import *  # noqa: F403  (moto server, bucket, S3 stores)

MiB = 1024 * 1024
PART = 8 * MiB
SIZE = PART + 300_001
CONTENT_TYPE = "video/mp4"

Client = TestClient[web.Request, web.Application]
ClientFactory = Callable[..., Awaitable[Client]]
MakeStore = Callable[..., S3Storage]


async def stream(data: bytes, chunk: int = MiB) -> Any:
    for i in range(0, len(data), chunk):
        yield data[i : i + chunk]


@pytest.fixture(scope="module")
def data() -> bytes:
    return os.urandom(SIZE)


def make_app(store: S3Storage, info: ObjectInfo) -> web.Application:
    async def handler(request: web.Request) -> web.StreamResponse:
        return await send_object(
            request,
            size=info.size,
            mtime=info.mtime,
            etag=make_etag(info.key, info.size, info.mtime),
            content_type=CONTENT_TYPE,
            local_path=store.local_path(info.key),  # None: S3 has no file to sendfile
            open_range=lambda start, end: store.open_range(info.key, start, end),
        )

    app = web.Application()
    app.router.add_route("*", "/obj", handler)
    return app


@pytest.fixture
async def served(make_s3_storage: MakeStore, data: bytes) -> tuple[S3Storage, ObjectInfo]:
    # One pooled connection: a response the server failed to close would block the next.
    store = make_s3_storage(chunk_size=64 * 1024, max_pool_connections=1)
    obj = await store.write_stream(stream(data), suffix=".mp4")
    return store, await store.stat(obj.key)


@pytest.fixture
async def client(aiohttp_client: ClientFactory, served: tuple[S3Storage, ObjectInfo]) -> Client:
    return await aiohttp_client(make_app(*served))


def parse_multipart(body: bytes, content_type: str) -> list[tuple[dict[str, str], bytes]]:
    """Strict multipart/byteranges parser (RFC 2046 framing)."""
    mime, _, param = content_type.partition("; ")
    assert mime == "multipart/byteranges"
    name, _, boundary = param.partition("=")
    assert name == "boundary" and boundary
    delim = b"--" + boundary.encode()
    assert body.startswith(delim + b"\r\n")
    closing = b"\r\n" + delim + b"--\r\n"
    assert body.endswith(closing)
    parts = []
    for raw in body[len(delim) + 2 : -len(closing)].split(b"\r\n" + delim + b"\r\n"):
        head, sep, content = raw.partition(b"\r\n\r\n")
        assert sep
        headers = dict(line.decode().split(": ", 1) for line in head.split(b"\r\n"))
        parts.append((headers, content))
    return parts


def assert_validators(resp: Any, info: ObjectInfo) -> None:
    assert resp.headers["Accept-Ranges"] == "bytes"
    assert resp.headers["ETag"] == make_etag(info.key, info.size, info.mtime)
    assert resp.headers["Last-Modified"] == format_http_date(int(info.mtime))
    assert "Transfer-Encoding" not in resp.headers


async def test_whole_object(
    client: Client, data: bytes, served: tuple[S3Storage, ObjectInfo]
) -> None:
    resp = await client.get("/obj")
    body = await resp.read()
    assert resp.status == 200
    assert resp.headers["Content-Length"] == str(SIZE)
    assert resp.headers["Content-Type"] == CONTENT_TYPE
    assert "Content-Range" not in resp.headers
    assert_validators(resp, served[1])
    assert body == data


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=0-0", 0, 0),
        (f"bytes={PART - 10}-{PART + 9}", PART - 10, PART + 9),  # across the part boundary
        ("bytes=1000-", 1000, SIZE - 1),
        ("bytes=-100", SIZE - 100, SIZE - 1),
    ],
)
async def test_single_range(
    client: Client,
    data: bytes,
    served: tuple[S3Storage, ObjectInfo],
    header: str,
    start: int,
    end: int,
) -> None:
    resp = await client.get("/obj", headers={"Range": header})
    body = await resp.read()
    assert resp.status == 206
    assert resp.headers["Content-Range"] == f"bytes {start}-{end}/{SIZE}"
    assert resp.headers["Content-Length"] == str(end - start + 1)
    assert resp.headers["Content-Type"] == CONTENT_TYPE
    assert_validators(resp, served[1])
    assert body == data[start : end + 1]


async def test_multiple_ranges(
    client: Client, data: bytes, served: tuple[S3Storage, ObjectInfo]
) -> None:
    # Ascending (send_object orders the parts); the third crosses the part boundary.
    ranges = [(0, 99), (5 * MiB, 5 * MiB + 70_000), (PART - 5, PART + 4), (SIZE - 50, SIZE - 1)]
    header = "bytes=0-99," + ",".join(f"{s}-{e}" for s, e in ranges[1:-1]) + ",-50"

    resp = await client.get("/obj", headers={"Range": header})
    body = await resp.read()

    assert resp.status == 206
    assert resp.headers["Content-Length"] == str(len(body))
    assert "Content-Range" not in resp.headers  # only inside the parts
    assert_validators(resp, served[1])
    parts = parse_multipart(body, resp.headers["Content-Type"])
    assert [h["Content-Range"] for h, _ in parts] == [f"bytes {s}-{e}/{SIZE}" for s, e in ranges]
    assert all(h["Content-Type"] == CONTENT_TYPE for h, _ in parts)
    assert [content for _, content in parts] == [data[s : e + 1] for s, e in ranges]


async def test_client_going_away_releases_the_s3_response(client: Client, data: bytes) -> None:
    """A viewer closing the player mid-film: the object-store response must be closed,
    or the store's single pooled connection would be gone for the next viewer."""
    for _ in range(5):
        resp = await client.get("/obj")
        assert resp.status == 200
        assert await resp.content.readexactly(100_000) == data[:100_000]
        resp.close()  # drops the connection with most of the body unsent
    resp = await asyncio.wait_for(client.get("/obj", headers={"Range": "bytes=-10"}), 10)
    assert await asyncio.wait_for(resp.read(), 10) == data[-10:]
