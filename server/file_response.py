"""Send one stored object over HTTP: RFC 9110 conditionals and byte ranges, zero-copy I/O.

`send_object` is the only entry point. It evaluates preconditions (RFC 9110 §13.2.2), then
Range/If-Range (§13.1.5, §14.2), and writes a 200, 206 (single or multipart/byteranges),
304, 412 or 416 response. The body always has an explicit Content-Length (computed up front,
multipart included), so no chunked encoding is ever used.

Body bytes come from one of two sources:

* a local file: ``loop.sendfile`` (zero-copy; headers are flushed first, as in aiohttp's
  FileResponse) with a fallback to positional reads in a worker thread when sendfile is off,
  unavailable (uvloop: NotImplementedError) or impossible (TLS transports). The file is
  opened for the response, or borrowed from an ``OpenFiles`` cache; with ``eager_sendfile``
  one direct ``os.sendfile`` goes first. Both are the media node's hot path (no thread hop
  to open a file, no event-loop round trips for a range that fits in the socket buffer);
* ``open_range(start, end)``: an async iterator over the inclusive range, e.g. an object
  store stream (the same contract as ``storage.base.Storage.open_range``).

Either way at most one chunk is held in memory per stream, and the writer's drain applies
back-pressure, so memory does not grow with the object size.

Failure handling after the status line is out: a client that goes away (ConnectionError,
cancellation) stops the transfer at once, releases the file/iterator and is logged at DEBUG
without a traceback. A server-side failure (short file, storage error) is logged with its
traceback and the connection is aborted - the only honest signal once Content-Length has
been promised.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import secrets
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import IO, Any, Protocol

from aiohttp import web
from multidict import CIMultiDict

from server.conditional import (
    effective_last_modified,
    evaluate_preconditions,
    format_http_date,
    if_range_allows_partial,
)
from server.http_ranges import (
    DEFAULT_MAX_RANGES,
    ByteRange,
    IgnoreReason,
    MultipartPlan,
    RangeDecision,
    RangeOutcome,
    parse_range_header,
)
from server.open_files import OpenFiles

__all__ = ["DEFAULT_CHUNK_SIZE", "OpenRange", "send_object"]

log = logging.getLogger("reelgate.media")

# (start, end) inclusive -> the bytes of that range, in bounded chunks.
OpenRange = Callable[[int, int], AsyncIterator[bytes]]

DEFAULT_CHUNK_SIZE = 256 * 1024

_NO_HEADERS: Mapping[str, str] = MappingProxyType({})

# Fields send_object computes itself; letting callers set them would break the framing.
_RESERVED_FIELDS = frozenset(
    {
        "accept-ranges",
        "content-encoding",
        "content-length",
        "content-range",
        "content-type",
        "etag",
        "last-modified",
        "transfer-encoding",
    }
)
# Caller fields repeated on 304/412/416. §15.4.5: a 304 carries "Content-Location, Date,
# ETag, and Vary; Cache-Control and Expires" and SHOULD NOT carry other representation
# metadata.
_CACHE_FIELDS = frozenset({"cache-control", "content-location", "expires", "vary"})

# Multipart boundaries are derived from (etag, ranges) with a per-process secret: unguessable
# by clients, yet identical for GET and HEAD of the same request, as §9.3.2 wants ("the same
# header fields ... as it would have sent if the request method had been GET"). The content
# is fixed by the strong ETag before the boundary is ever revealed, so it cannot be crafted to
# contain it.
_BOUNDARY_KEY = secrets.token_bytes(32)


class _SourceError(Exception):
    """The object could not deliver the promised bytes (server-side failure)."""


async def send_object(
    request: web.Request,
    *,
    size: int,
    mtime: float,
    etag: str,
    content_type: str,
    local_path: Path | None = None,
    open_range: OpenRange | None = None,
    extra_headers: Mapping[str, str] = _NO_HEADERS,
    use_sendfile: bool = True,
    max_ranges: int = DEFAULT_MAX_RANGES,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    open_files: OpenFiles | None = None,
    eager_sendfile: bool = False,
) -> web.StreamResponse:
    """Answer GET/HEAD for one object of ``size`` bytes; return the (finished) response.

    ``etag`` must be a strong, quoted entity-tag (see ``conditional.make_etag``).
    ``local_path`` is preferred when given; otherwise ``open_range`` must be. Errors opening
    the local file (e.g. FileNotFoundError) propagate before anything is sent.
    ``open_files``, when given, lends the local file's descriptor from that cache instead of
    opening and closing it for this response (see ``server.open_files``).
    ``eager_sendfile`` tries one ``os.sendfile`` on the socket at once and leaves only what
    does not fit in the socket buffer to ``loop.sendfile`` (see ``_LocalFile._sendfile_now``).
    Off by default, so that ``loop.sendfile`` stays the one sendfile entry point for callers
    that hook or replace it; the media node turns it on.
    """
    _check_arguments(size, local_path, open_range, extra_headers, chunk_size, max_ranges)
    if request.method not in ("GET", "HEAD"):
        raise web.HTTPMethodNotAllowed(request.method, ["GET", "HEAD"])

    now = time.time()
    last_modified = effective_last_modified(mtime, now)
    validators = _validator_headers(etag, last_modified)

    status = evaluate_preconditions(request.method, request.headers, etag, last_modified)
    if status is not None:
        return _bodyless_response(status, validators, extra_headers)

    decision = _range_decision(request, size, etag, last_modified, now, max_ranges)
    if decision.outcome is RangeOutcome.UNSATISFIABLE:
        # §15.5.17: a 416 to a byte-range request SHOULD carry "Content-Range: bytes */len".
        validators["Content-Range"] = f"bytes */{size}"
        return _bodyless_response(416, validators, extra_headers)

    body = _plan_body(decision, size, content_type, etag)
    headers = CIMultiDict(extra_headers)
    headers.update(validators)
    headers.update(body.headers)
    response = web.StreamResponse(status=body.status, headers=headers)
    response.content_length = body.length

    # §9.3.2: HEAD gets GET's status and header fields (Content-Length included), no body.
    with_body = request.method == "GET" and body.length > 0
    source = (
        await _open_source(
            local_path,
            open_range,
            open_files,
            size,
            use_sendfile=use_sendfile,
            eager_sendfile=eager_sendfile,
            chunk_size=chunk_size,
        )
        if with_body
        else None
    )
    try:
        await response.prepare(request)
        if source is not None:
            await _write_segments(request, response, body.segments, source)
        await response.write_eof()
    except ConnectionError as exc:
        log.debug("client went away during %s %s: %s", request.method, request.path, exc)
    except Exception:
        log.exception("aborting %s %s: body could not be sent", request.method, request.path)
        _abort_connection(request)
    finally:
        # Runs on cancellation too (handler_cancellation=True): CancelledError propagates.
        if source is not None:
            await source.aclose()
    return response


def _check_arguments(
    size: int,
    local_path: Path | None,
    open_range: OpenRange | None,
    extra_headers: Mapping[str, str],
    chunk_size: int,
    max_ranges: int,
) -> None:
    # Checked up front so that a misconfiguration fails on the first request, not the first
    # request that happens to carry a Range header.
    if size < 0:
        raise ValueError("size must be >= 0")
    if chunk_size <= 0:
        raise ValueError("chunk_size must be > 0")
    if max_ranges < 1:
        raise ValueError("max_ranges must be >= 1")
    if local_path is None and open_range is None:
        raise ValueError("either local_path or open_range is required")
    if not _RESERVED_FIELDS.isdisjoint(map(str.lower, extra_headers)):
        clashes = sorted(name for name in extra_headers if name.lower() in _RESERVED_FIELDS)
        raise ValueError(f"extra_headers must not set {', '.join(clashes)}")


def _validator_headers(etag: str, last_modified: int) -> CIMultiDict[str]:
    return CIMultiDict(
        {
            # §14.3: advertise byte ranges on every response, errors included.
            "Accept-Ranges": "bytes",
            "ETag": etag,
            "Last-Modified": format_http_date(last_modified),
        }
    )


def _bodyless_response(
    status: int, validators: CIMultiDict[str], extra_headers: Mapping[str, str]
) -> web.Response:
    headers = CIMultiDict(
        (name, value) for name, value in extra_headers.items() if name.lower() in _CACHE_FIELDS
    )
    headers.update(validators)
    # Explicit, so that HEAD gets it too (aiohttp omits "0" for HEAD by itself). aiohttp
    # removes it from a 304, where it would describe the selected representation (§8.6).
    headers["Content-Length"] = "0"
    return web.Response(status=status, headers=headers)


def _range_decision(
    request: web.Request,
    size: int,
    etag: str,
    last_modified: int,
    now: float,
    max_ranges: int,
) -> RangeDecision:
    ranges = request.headers.getall("Range", [])
    if not ranges:
        return RangeDecision.full(IgnoreReason.ABSENT)
    # §14.2 defines range handling for GET only; send_object applies it to HEAD as well, so
    # that HEAD shows exactly what GET would send (§9.3.2) - players probe with HEAD + Range.
    # Range is a singleton field: several lines cannot form one valid ranges-specifier.
    if len(ranges) > 1:
        return RangeDecision.full(IgnoreReason.INVALID)
    # §13.1.5: If-Range is evaluated only when Range is present; when false, "the
    # recipient ... MUST ignore the Range header field" and send the whole representation.
    if_range = request.headers.getall("If-Range", [])
    if_range_value = ", ".join(if_range) if if_range else None
    if not if_range_allows_partial(if_range_value, etag, last_modified, now):
        return RangeDecision.full(IgnoreReason.IF_RANGE_MISMATCH)
    return parse_range_header(ranges[0], size, max_ranges)


@dataclass(frozen=True, slots=True)
class _Body:
    status: int
    headers: Mapping[str, str]
    segments: Sequence[bytes | ByteRange]  # literal bytes, or a range of the object
    length: int


def _plan_body(decision: RangeDecision, size: int, content_type: str, etag: str) -> _Body:
    if decision.outcome is RangeOutcome.FULL:
        whole = [ByteRange(0, size - 1)] if size else []
        return _Body(200, {"Content-Type": content_type}, whole, size)
    if not decision.is_multipart:
        # §15.3.7.1: a single part carries Content-Range on the response itself. This also
        # covers several requested ranges that coalesced into one (§15.3.7.2 allows either).
        (rng,) = decision.ranges
        headers = {"Content-Type": content_type, "Content-Range": rng.content_range(size)}
        return _Body(206, headers, [rng], rng.length)
    plan = MultipartPlan.build(
        decision.ranges, size, content_type, _boundary_for(etag, decision.ranges)
    )
    segments: list[bytes | ByteRange] = []
    for part in plan.parts:
        segments += [part.preamble, part.range]
    segments.append(plan.closing)
    # §14.6 / §15.3.7.2: no Content-Range at the top level of a multipart response.
    return _Body(206, {"Content-Type": plan.content_type}, segments, plan.content_length)


def _boundary_for(etag: str, ranges: Sequence[ByteRange]) -> str:
    material = etag + "|" + ",".join(f"{r.start}-{r.end}" for r in ranges)
    return hmac.new(_BOUNDARY_KEY, material.encode(), hashlib.sha256).hexdigest()[:32]


async def _write_segments(
    request: web.Request,
    response: web.StreamResponse,
    segments: Sequence[bytes | ByteRange],
    source: _Source,
) -> None:
    for segment in segments:
        if isinstance(segment, bytes):
            await response.write(segment)
        else:
            await source.send(request, response, segment)


def _abort_connection(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        transport.abort()


# --- body sources ----------------------------------------------------------------------------


class _Source(Protocol):
    async def send(
        self, request: web.Request, response: web.StreamResponse, rng: ByteRange
    ) -> None: ...

    async def aclose(self) -> None: ...


async def _open_source(
    local_path: Path | None,
    open_range: OpenRange | None,
    open_files: OpenFiles | None,
    size: int,
    **options: Any,
) -> _Source:
    if local_path is not None:
        if open_files is not None:
            shared = await open_files.acquire(local_path, size)
            return _LocalFile(shared.file, release=lambda: open_files.release(shared), **options)
        return await _LocalFile.open(local_path, **options)
    assert open_range is not None
    return _StreamedObject(open_range)


class _LocalFile:
    """One open file; sendfile or positional reads; released safely even when cancelled.

    Blocking calls run in the default executor. They are awaited through asyncio.shield so
    that, if the task is cancelled while a worker thread still uses the descriptor, releasing
    waits for that thread - closing a descriptor under a pending read could make it read a
    reused descriptor number. ``release`` closes the file, or hands a shared descriptor back
    to its cache (which closes it once nobody uses it).
    """

    def __init__(
        self,
        file: IO[bytes],
        *,
        release: Callable[[], None] | None = None,
        use_sendfile: bool,
        eager_sendfile: bool,
        chunk_size: int,
    ) -> None:
        self._file = file
        self._release = release or file.close
        self._use_sendfile = use_sendfile
        self._eager_sendfile = eager_sendfile
        self._chunk_size = chunk_size
        self._pending: asyncio.Future[Any] | None = None

    @classmethod
    async def open(cls, path: Path, **options: Any) -> _LocalFile:
        opening = asyncio.get_running_loop().run_in_executor(None, _open_for_reading, path)
        try:
            file = await asyncio.shield(opening)
        except asyncio.CancelledError:
            opening.add_done_callback(_close_opened_file)
            raise
        return cls(file, **options)

    async def send(
        self, request: web.Request, response: web.StreamResponse, rng: ByteRange
    ) -> None:
        if self._use_sendfile and _sendfile_possible(request):
            # An empty write hands any status line/headers aiohttp may still be buffering to
            # the transport (StreamResponse sends them at prepare() today; Response does not).
            await response.write(b"")
            sent = await self._sendfile(request, rng)
            if sent == rng.length:
                return
            self._use_sendfile = False  # not available on this loop/transport; stop trying
            rng = ByteRange(rng.start + sent, rng.end)  # the rest, if the eager send began it
        await self._copy(response, rng)

    async def _sendfile(self, request: web.Request, rng: ByteRange) -> int:
        """Zero-copy send of ``rng``; fewer bytes than asked only when sendfile is
        unavailable (the caller copies the rest). A short file raises _SourceError."""
        transport = request.transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError("connection lost")
        offset, count = rng.start, rng.length
        eager = self._sendfile_now(transport, offset, count) if self._eager_sendfile else 0
        if eager == count:
            return eager
        loop = asyncio.get_running_loop()
        # Headers and multipart preambles went through transport.write(); loop.sendfile
        # waits for that buffer to drain before sending file bytes, so order is kept (this
        # is what aiohttp's FileResponse relies on too). fallback=False: asyncio's own
        # fallback reads in a thread we could not wait for on cancellation; ours can.
        try:
            sent = await loop.sendfile(
                transport, self._file, offset + eager, count - eager, fallback=False
            )
        except (NotImplementedError, asyncio.SendfileNotAvailableError):
            return eager  # uvloop, or os.sendfile refused before sending anything
        except RuntimeError:
            # Raised up front: "Transport is closing" or a transport without native sendfile.
            if transport.is_closing():
                raise ConnectionResetError("connection lost") from None
            return eager
        except ConnectionError:
            raise
        except OSError as exc:
            raise _SourceError(f"sendfile failed: {exc}") from exc
        if eager + sent != count:
            # sendfile stops at end of file: the file shrank below the promised length.
            raise _SourceError(f"file ended after {eager + sent} of {count} bytes")
        return count

    def _sendfile_now(self, transport: asyncio.BaseTransport, offset: int, count: int) -> int:
        """One os.sendfile() on the socket, now; the bytes it took (0 when it cannot).

        loop.sendfile costs several event-loop steps per call (pause and resume reading,
        i.e. two epoll_ctl calls, an fstat, an lseek, a future): a quarter of a 64 KiB
        range's CPU on the media node. When nothing is queued in the transport (so byte
        order is kept) a range that fits in the socket buffer goes out in this one call;
        the socket is non-blocking, so a full buffer just sends less, and loop.sendfile
        sends the rest when the socket is writable again.
        """
        if not isinstance(transport, asyncio.WriteTransport) or transport.get_write_buffer_size():
            return 0
        sock = transport.get_extra_info("socket")
        if sock is None:
            return 0
        try:
            sent = os.sendfile(sock.fileno(), self._file.fileno(), offset, count)
        except BlockingIOError:
            return 0  # socket buffer full: loop.sendfile waits for it
        except (BrokenPipeError, ConnectionResetError):
            raise ConnectionResetError("connection lost") from None
        except OSError:
            return 0  # e.g. a file system without sendfile: loop.sendfile decides
        if sent == 0:
            raise _SourceError(f"file ended at offset {offset}, before {offset + count - 1}")
        return sent

    async def _copy(self, response: web.StreamResponse, rng: ByteRange) -> None:
        offset, remaining = rng.start, rng.length
        while remaining > 0:
            data = await self._pread(min(self._chunk_size, remaining), offset)
            if not data:
                raise _SourceError(f"file ended at offset {offset}, before {rng.end}")
            # aiohttp's write() drains once its buffer passes 64 KiB: back-pressure.
            await response.write(data)
            offset += len(data)
            remaining -= len(data)

    async def _pread(self, count: int, offset: int) -> bytes:
        loop = asyncio.get_running_loop()
        # pread() leaves the shared file position alone, so it cannot race with sendfile.
        self._pending = loop.run_in_executor(None, os.pread, self._file.fileno(), count, offset)
        try:
            data: bytes = await asyncio.shield(self._pending)
        except OSError as exc:
            raise _SourceError(f"read failed: {exc}") from exc
        return data

    async def aclose(self) -> None:
        pending = self._pending
        if pending is not None and not pending.done():
            pending.add_done_callback(lambda _: self._release())
        else:
            self._release()


def _open_for_reading(path: Path) -> IO[bytes]:
    # Unbuffered: we never use Python-level buffering (sendfile / pread go to the fd).
    return open(path, "rb", buffering=0)


def _close_opened_file(opening: asyncio.Future[IO[bytes]]) -> None:
    if not opening.cancelled() and opening.exception() is None:
        opening.result().close()


def _sendfile_possible(request: web.Request) -> bool:
    transport = request.transport
    # TLS needs the bytes in user space; asyncio would only emulate sendfile there.
    return transport is not None and transport.get_extra_info("sslcontext") is None


class _StreamedObject:
    """Bytes from ``open_range``: one iterator per range, always closed."""

    def __init__(self, open_range: OpenRange) -> None:
        self._open_range = open_range

    async def send(
        self, request: web.Request, response: web.StreamResponse, rng: ByteRange
    ) -> None:
        chunks = self._open_range(rng.start, rng.end)
        try:
            await _copy_chunks(chunks, response, rng)
        finally:
            # Release the backend stream (HTTP connection, file) even on cancellation.
            await _close_iterator(chunks)

    async def aclose(self) -> None:
        return None


async def _copy_chunks(
    chunks: AsyncIterator[bytes], response: web.StreamResponse, rng: ByteRange
) -> None:
    remaining = rng.length
    while remaining > 0:
        try:
            chunk = await anext(chunks)
        except StopAsyncIteration:
            raise _SourceError(f"object ended {remaining} bytes before {rng.end}") from None
        except Exception as exc:
            # Wrapped so that a backend ConnectionError is not mistaken for the client's.
            raise _SourceError(f"reading the object failed: {exc!r}") from exc
        if len(chunk) > remaining:
            chunk = chunk[:remaining]  # never send more than Content-Length promised
        if chunk:
            await response.write(chunk)
            remaining -= len(chunk)


async def _close_iterator(chunks: AsyncIterator[bytes]) -> None:
    aclose = getattr(chunks, "aclose", None)
    if aclose is None:
        return
    try:
        await aclose()
    except Exception:
        log.warning("closing an object stream failed", exc_info=True)
