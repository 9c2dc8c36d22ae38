"""`reelgate demo` as a user runs it: one process, seeded, streaming, persistent."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.harness.ports import free_port

ROOT = Path(__file__).resolve().parents[2]


def _request(url: str, method: str = "GET", body: dict | None = None, headers: dict | None = None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if body is not None:
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, dict(response.headers), response.read()


def start_demo(workdir: Path, port: int) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REELGATE_")}
    env["REELGATE_LOG_LEVEL"] = "WARNING"
    process = subprocess.Popen(
        [sys.executable, "-m", "reelgate.cli", "demo", "--port", str(port)],
        cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    deadline = time.monotonic() + 120
    seen = []
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        seen.append(line)
        if line.startswith("Press Ctrl-C"):
            return process
    process.kill()
    raise AssertionError("demo did not come up:\n" + "".join(seen))


def stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=30) == 0


def login(base: str, email: str, password: str) -> str:
    _, _, body = _request(f"{base}/api/auth/login", "POST", {"email": email, "password": password})
    return json.loads(body)["access_token"]


def test_demo_streams_a_seeded_movie_and_keeps_its_data(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    demo = start_demo(tmp_path, port)
    try:
        viewer = login(base, "viewer@reelgate.demo", "demo-viewer-password")
        auth = {"Authorization": f"Bearer {viewer}"}
        _, _, body = _request(f"{base}/api/me/movies", headers=auth)
        movies = json.loads(body)["items"]
        assert len(movies) == 3
        _, _, body = _request(f"{base}/api/playback", "POST", {"movie_id": movies[0]["id"]}, auth)
        stream_url = base + json.loads(body)["stream_url"]
        status, headers, first = _request(stream_url, headers={"Range": "bytes=0-1023"})
        assert status == 206 and len(first) == 1024
        assert headers["Content-Range"].startswith("bytes 0-1023/")
        assert first[4:8] == b"ftyp"  # a real MP4 made by ffmpeg
    finally:
        stop(demo)

    demo = start_demo(tmp_path, port)
    try:
        viewer = login(base, "viewer@reelgate.demo", "demo-viewer-password")
        _, _, body = _request(f"{base}/api/me/movies", headers={"Authorization": f"Bearer {viewer}"})
        assert [m["id"] for m in json.loads(body)["items"]] == [m["id"] for m in movies]
        _, _, body = _request(f"{base}/api/movies")
        assert json.loads(body)["total"] == 3  # not seeded twice
    finally:
        stop(demo)
    assert (tmp_path / "var" / "reelgate.db").exists()
