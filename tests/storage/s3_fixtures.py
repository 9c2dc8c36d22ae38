"""A real S3-compatible server for the tests: moto in server mode, one per test session.

Import the fixtures with ``from tests.storage.s3_fixtures import *`` (tests/storage's
conftest does; other test packages import them the same way). The server process is
shared by every importer within one pytest process, stopped at the end of the session,
and registered with the test harness' reaper so that it dies with a killed pytest too.

Fixtures:

``moto_server`` (session) -> MotoServer
    The running server; a start failure fails the tests with the server's log.
``s3_session`` (session) -> AioSession with fixed test credentials.
``s3_bucket`` (session) -> str, a bucket created once for the session.
``s3_admin`` (session) -> a raw aiobotocore S3 client, to inspect the bucket.
``make_s3_storage`` -> factory ``(**kwargs) -> S3Storage`` on a fresh, unique prefix;
    the stores are closed and their prefixes emptied afterwards.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession, get_session

from storage.s3 import S3Storage
from tests.harness import services as harness
from tests.harness.ports import free_port

__all__ = [
    "S3_REGION",
    "MotoServer",
    "list_bucket",
    "make_s3_storage",
    "moto_server",
    "s3_admin",
    "s3_bucket",
    "s3_session",
]

S3_REGION = "us-east-1"
_START_TIMEOUT_S = 60.0
_lock = threading.Lock()
_shared: MotoServer | None = None


class MotoServer:
    """`moto_server` on a free loopback port, logging to a file in the harness' runtime dir."""

    def __init__(self, port: int, directory: Path) -> None:
        self.port = port
        self.dir = directory
        self.logfile = directory / "moto.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @classmethod
    def start(cls, attempts: int = 3) -> MotoServer:
        """Start a server; retried on another port if the chosen one was taken meanwhile."""
        errors = []
        for _ in range(attempts):
            directory = harness.runtime_root() / f"moto-{secrets.token_hex(4)}"
            directory.mkdir(mode=0o755)
            server = cls(free_port(), directory)
            try:
                server._launch()
                return server
            except RuntimeError as exc:
                server.stop()
                errors.append(str(exc))
                if "Address already in use" not in str(exc):
                    break
        raise RuntimeError("moto_server did not start:\n" + "\n---\n".join(errors))

    def _launch(self) -> None:
        script = Path(sys.executable).parent / "moto_server"
        if script.exists():
            cmd, expect = [str(script)], "moto_server"
        else:  # moto installed without its console script: run the module
            cmd, expect = [sys.executable, "-m", "moto.server"], Path(sys.executable).name
        cmd += ["-H", "127.0.0.1", "-p", str(self.port)]
        with open(self.logfile, "ab") as log:
            self.proc = subprocess.Popen(
                cmd,
                cwd=str(self.dir),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C in the terminal must not hit it first
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        harness._register(
            self.dir.name,
            {"kind": "moto", "expect": expect, "pid": self.proc.pid, "dir": str(self.dir)},
        )
        harness._track(self)
        deadline = time.monotonic() + _START_TIMEOUT_S
        while not self._answers():
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"moto_server exited with {self.proc.returncode} on port {self.port}:\n"
                    f"{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"moto_server did not answer on port {self.port} within "
                    f"{_START_TIMEOUT_S:.0f}s:\n{self.log_tail()}"
                )
            time.sleep(0.1)

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.endpoint_url}/moto-api/", timeout=1) as r:
                return r.status == 200
        except (OSError, urllib.error.URLError):
            return False

    def log_tail(self, lines: int = 40) -> str:
        try:
            data = self.logfile.read_bytes()[-16384:].decode("utf-8", "replace")
        except OSError:
            return "(no log)"
        return "\n".join(data.splitlines()[-lines:])

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        harness._untrack(self)
        entry = harness.runtime_root() / "services" / f"{self.dir.name}.json"
        entry.unlink(missing_ok=True)

    def __repr__(self) -> str:
        return f"MotoServer({self.endpoint_url})"


@pytest.fixture(scope="session")
def moto_server(request: pytest.FixtureRequest) -> MotoServer:
    global _shared
    with _lock:
        if _shared is None:
            try:
                _shared = MotoServer.start()
            except RuntimeError as exc:
                pytest.fail(f"cannot run the S3 tests: {exc}", pytrace=False)
            request.addfinalizer(_stop_shared)
        return _shared


def _stop_shared() -> None:
    global _shared
    with _lock:
        server, _shared = _shared, None
    if server is not None:
        server.stop()


@pytest.fixture(scope="session")
def s3_session() -> AioSession:
    session = get_session()
    session.set_credentials("reelgate-test", "reelgate-test-secret")
    return session


@pytest.fixture(scope="session")
async def s3_admin(moto_server: MotoServer, s3_session: AioSession) -> AsyncIterator[Any]:
    config = AioConfig(s3={"addressing_style": "path"})
    async with s3_session.create_client(
        "s3", endpoint_url=moto_server.endpoint_url, region_name=S3_REGION, config=config
    ) as client:
        yield client


@pytest.fixture(scope="session")
async def s3_bucket(s3_admin: Any) -> str:
    bucket = f"reelgate-test-{secrets.token_hex(4)}"
    await s3_admin.create_bucket(Bucket=bucket)
    return bucket


async def list_bucket(client: Any, bucket: str, prefix: str = "") -> list[str]:
    """Everything stored under `prefix`, relative to it: object names, then pending
    multipart uploads as `upload:<name>` (they hold data but are not listed as objects)."""
    base = f"{prefix}/" if prefix else ""
    found: list[str] = []
    async for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=base):
        found += [item["Key"][len(base) :] for item in page.get("Contents", [])]
    async for page in client.get_paginator("list_multipart_uploads").paginate(
        Bucket=bucket, Prefix=base
    ):
        found += [f"upload:{u['Key'][len(base) :]}" for u in page.get("Uploads", [])]
    return sorted(found)


async def _empty_prefix(client: Any, bucket: str, prefix: str) -> None:
    base = f"{prefix}/" if prefix else ""
    async for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=base):
        for item in page.get("Contents", []):
            await client.delete_object(Bucket=bucket, Key=item["Key"])
    async for page in client.get_paginator("list_multipart_uploads").paginate(
        Bucket=bucket, Prefix=base
    ):
        for upload in page.get("Uploads", []):
            await client.abort_multipart_upload(
                Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"]
            )


@pytest.fixture
async def make_s3_storage(
    moto_server: MotoServer, s3_session: AioSession, s3_bucket: str, s3_admin: Any
) -> AsyncIterator[Callable[..., S3Storage]]:
    made: list[S3Storage] = []

    def make(**kwargs: Any) -> S3Storage:
        kwargs.setdefault("prefix", f"t-{secrets.token_hex(6)}")
        kwargs.setdefault("endpoint_url", moto_server.endpoint_url)
        kwargs.setdefault("region_name", S3_REGION)
        kwargs.setdefault("session", s3_session)
        store = S3Storage(s3_bucket, **kwargs)
        made.append(store)
        return store

    yield make
    for store in made:
        await store.close()
    for prefix in {store.prefix for store in made}:
        await _empty_prefix(s3_admin, s3_bucket, prefix)
