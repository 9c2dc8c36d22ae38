"""The media node's hot path: shared descriptors (OpenFiles) and the eager sendfile.

The cache is tested on its own (sharing, LRU eviction, in-use protection, shutdown, idle
expiry, replaced files), then send_object with both options on, over a real server, for
what the eager path could get wrong: byte order after headers and multipart preambles,
ranges larger than the socket buffer (eager send partial, loop.sendfile sends the rest), the
rest copied when loop.sendfile is unavailable, short files, and client aborts.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientPayloadError, web
from aiohttp.test_utils import TestClient

from server import file_response
from server.open_files import OpenFiles
from tests.server.test_file_response import (
    LM,
    Served,
    get,
    make_app,
    open_fds,
    parse_multipart,
    running,
    wait_for,
    write_file,
)

Client = TestClient[web.Request, web.Application]
ClientFactory = Callable[..., Awaitable[Client]]


def is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


@pytest.fixture
def files(tmp_path: Path) -> list[Path]:
    paths = []
    for index in range(4):
        path = tmp_path / f"object-{index}"
        path.write_bytes(bytes([index]) * (1000 + index))
        paths.append(path)
    return paths


# --- OpenFiles ---------------------------------------------------------------------------------


async def test_one_descriptor_is_shared_and_kept_after_release(files: list[Path]) -> None:
    cache = OpenFiles()
    first = await cache.acquire(files[0])
    second = await cache.acquire(files[0], 1000)
    assert first is second and first.refs == 2 and first.size == 1000
    cache.release(first)
    cache.release(second)
    assert len(cache) == 1 and is_open(first.file.fileno())
    assert await cache.acquire(files[0]) is first  # no new open


async def test_lru_eviction_closes_idle_descriptors_only(files: list[Path]) -> None:
    cache = OpenFiles(max_open=2)
    in_use = await cache.acquire(files[0])
    fd_in_use = in_use.file.fileno()
    idle = await cache.acquire(files[1])
    cache.release(idle)
    await cache.acquire(files[2])  # evicts files[0] (least recently used), still in use
    assert len(cache) == 2 and is_open(fd_in_use)
    cache.release(in_use)  # the last user of an evicted entry closes it
    assert in_use.file.closed
    await cache.acquire(files[3])  # evicts files[1], idle: closed at once
    assert idle.file.closed and len(cache) == 2


async def test_close_at_shutdown_waits_for_users(files: list[Path]) -> None:
    cache = OpenFiles()
    idle = await cache.acquire(files[0])
    cache.release(idle)
    busy = await cache.acquire(files[1])
    cache.close()
    assert idle.file.closed and not busy.file.closed and len(cache) == 0
    cache.release(busy)
    assert busy.file.closed
    late = await cache.acquire(files[2])  # a response still starting during shutdown
    cache.release(late)
    assert late.file.closed and len(cache) == 0


async def test_idle_descriptors_expire(files: list[Path]) -> None:
    cache = OpenFiles(max_idle_s=0.05)
    old = await cache.acquire(files[0])
    cache.release(old)
    await asyncio.sleep(0.1)
    fresh = await cache.acquire(files[1])
    cache.release(fresh)  # a release sweeps what has been idle for too long
    assert old.file.closed and not fresh.file.closed and len(cache) == 1


async def test_a_replaced_file_is_opened_again(files: list[Path]) -> None:
    cache = OpenFiles()
    before = await cache.acquire(files[0])
    cache.release(before)
    files[0].unlink()
    files[0].write_bytes(b"x" * 5000)
    after = await cache.acquire(files[0], 5000)
    assert after is not before and after.size == 5000 and before.file.closed


async def test_missing_files_raise_and_are_not_cached(tmp_path: Path) -> None:
    cache = OpenFiles()
    with pytest.raises(FileNotFoundError):
        await cache.acquire(tmp_path / "missing")
    assert len(cache) == 0


async def test_concurrent_cold_opens_share_one_entry(files: list[Path]) -> None:
    cache = OpenFiles()
    before = open_fds()
    entries = await asyncio.gather(*(cache.acquire(files[0]) for _ in range(5)))
    assert all(entry is entries[0] for entry in entries) and entries[0].refs == 5
    assert open_fds() == before + 1  # the duplicates were closed


# --- send_object with shared descriptors and the eager sendfile --------------------------------


BIG = 8 * 2**20  # far more than a loopback socket buffer takes at once


@pytest.fixture
def big(tmp_path: Path) -> tuple[Path, bytes]:
    content = os.urandom(BIG)
    return write_file(tmp_path / "big.mp4", content), content


def hot(served: Served, cache: OpenFiles) -> Served:
    """The options the media node passes to send_object."""
    served.kwargs.update(open_files=cache, eager_sendfile=True)
    return served


@pytest.fixture
def sendfile_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Bytes taken by every os.sendfile call: the eager one first, then asyncio's own."""
    calls: list[int] = []
    real = os.sendfile

    def spy(out_fd: int, in_fd: int, offset: int, count: int) -> int:
        sent = real(out_fd, in_fd, offset, count)
        calls.append(sent)
        return sent

    monkeypatch.setattr(file_response.os, "sendfile", spy)
    return calls


@pytest.mark.parametrize("mode", ["sendfile", "copy"])
async def test_ranges_and_multipart_are_exact(
    aiohttp_client: ClientFactory, big: tuple[Path, bytes], mode: str, sendfile_calls: list[int]
) -> None:
    path, content = big
    cache = OpenFiles()
    client = await aiohttp_client(make_app(hot(Served(path), cache), mode))
    for _ in range(2):  # the second round reuses the cached descriptor
        resp = await get(client, {"Range": "bytes=10-19"})
        assert (resp.status, await resp.read()) == (206, content[10:20])
        resp = await get(client, {"Range": "bytes=0-9,100-199,-5"})
        parts = parse_multipart(await resp.read(), resp.headers["Content-Type"])
        assert [c for _, c in parts] == [content[0:10], content[100:200], content[-5:]]
        resp = await get(client)
        assert await resp.read() == content
    assert len(cache) == 1
    assert bool(sendfile_calls) == (mode == "sendfile")  # never when sendfile is off


async def test_a_range_larger_than_the_socket_buffer_finishes_with_loop_sendfile(
    big: tuple[Path, bytes], sendfile_calls: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, content = big
    loop_calls: list[int] = []
    original = asyncio.get_running_loop().sendfile

    async def spy(transport: Any, file: Any, offset: int = 0, count: int | None = None, **kw: Any):
        loop_calls.append(count or 0)
        return await original(transport, file, offset, count, **kw)

    monkeypatch.setattr(asyncio.get_running_loop(), "sendfile", spy)
    app = make_app(hot(Served(path), OpenFiles()), "sendfile")
    async with running(app, handler_cancellation=False) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /obj HTTP/1.1\r\nHost: x\r\nRange: bytes=1-\r\n\r\n")
        head = await reader.readuntil(b"\r\n\r\n")
        assert b" 206 " in head.split(b"\r\n")[0]
        await asyncio.sleep(0.2)  # a slow reader: the socket buffer fills up
        body = await reader.readexactly(BIG - 1)
        writer.close()
    assert body == content[1:]
    assert sendfile_calls and sendfile_calls[0] < BIG - 1  # the eager send was partial
    assert loop_calls == [BIG - 1 - sendfile_calls[0]]  # and loop.sendfile sent the rest


async def test_the_rest_is_copied_when_loop_sendfile_is_unavailable(
    big: tuple[Path, bytes], sendfile_calls: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, content = big

    async def unavailable(*args: Any, **kw: Any) -> int:
        raise NotImplementedError("no sendfile here")  # e.g. uvloop

    monkeypatch.setattr(asyncio.get_running_loop(), "sendfile", unavailable)
    app = make_app(hot(Served(path), OpenFiles()), "sendfile")
    async with running(app, handler_cancellation=False) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /obj HTTP/1.1\r\nHost: x\r\nRange: bytes=0-9,1000-\r\n\r\n")
        head = await reader.readuntil(b"\r\n\r\n")
        await asyncio.sleep(0.2)
        length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
        body = await reader.readexactly(length)
        writer.close()
    content_type = head.split(b"Content-Type: ")[1].split(b"\r\n")[0].decode()
    parts = parse_multipart(body, content_type)
    assert [c for _, c in parts] == [content[0:10], content[1000:]]
    assert sendfile_calls[0] == 10  # the first part went out eagerly, whole


async def test_file_shorter_than_announced_aborts(
    aiohttp_client: ClientFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_file(tmp_path / "short.mp4", b"x" * 5000)
    served = hot(Served(path, size_delta=1000), OpenFiles())
    client = await aiohttp_client(make_app(served, "sendfile"))
    resp = await client.get("/obj")
    assert resp.status == 200
    with pytest.raises(ClientPayloadError):
        await resp.read()
    await wait_for(lambda: served.finished == served.calls)
    assert [r.name for r in caplog.records if r.levelno >= logging.ERROR] == ["reelgate.media"]


@pytest.mark.parametrize("handler_cancellation", [False, True], ids=["nocancel", "cancel"])
async def test_client_aborts_return_the_descriptor(
    tmp_path: Path, handler_cancellation: bool
) -> None:
    path = tmp_path / "large.bin"
    path.touch()
    os.truncate(path, 64 * 2**20)
    os.utime(path, (LM, LM))
    cache = OpenFiles()
    served = hot(Served(path), cache)
    app = make_app(served, "sendfile")
    async with running(app, handler_cancellation=handler_cancellation) as port:
        baseline = open_fds()
        for _ in range(10):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /obj HTTP/1.1\r\nHost: x\r\n\r\n")
            await reader.readuntil(b"\r\n\r\n")
            await reader.readexactly(200_000)
            writer.close()
            await writer.wait_closed()
        await wait_for(lambda: served.finished == 10)
        await wait_for(lambda: open_fds() <= baseline + 1)  # the one cached descriptor
        entry = await cache.acquire(path)
        assert entry.refs == 1 and len(cache) == 1  # every aborted response released it
        cache.release(entry)
    cache.close()
    assert entry.file.closed
